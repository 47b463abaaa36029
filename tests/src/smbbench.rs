//! smbtorture's `smb2.bench` workloads on a two-node cluster of any ctdbd,
//! with the CPU the daemons and the smbds spent on them.
//!
//! Why here: starting clustered smbd (per-node smb.conf, shared directory,
//! state directories, stop by pid) is this crate's Samba harness, and the
//! perf harness must not depend on the test crate. So the `samba-bench`
//! binary of this crate runs the workloads for one daemon and prints one
//! line per workload (see [`Measured::line`]); `ctdb-perf` runs it for
//! each daemon and puts the lines in its table (`smb-*` workloads).
//!
//! * `path-contention-shared`: every connection opens and closes the same
//!   path, so every open updates one share-mode record; with connections on
//!   both nodes the record moves between the nodes.
//! * `oplock1`: each open breaks the previous connection's oplock.

use std::path::Path;
use std::time::Duration;

use crate::procs;
use crate::samba::{BenchResult, SambaCluster};
use crate::{Cluster, HarnessError, Result};

/// Our workload names: (name, smbtorture test, nodes the connections are
/// spread over).
pub const WORKLOADS: [(&str, &str, &[usize]); 4] = [
    (
        "smb-contention-1node",
        "smb2.bench.path-contention-shared",
        &[0],
    ),
    (
        "smb-contention-2nodes",
        "smb2.bench.path-contention-shared",
        &[0, 1],
    ),
    ("smb-oplock1-1node", "smb2.bench.oplock1", &[0]),
    ("smb-oplock1-2nodes", "smb2.bench.oplock1", &[0, 1]),
];

/// One workload's result and what it cost.
#[derive(Debug, Clone, PartialEq)]
pub struct Measured {
    /// Our workload name (`smb-contention-1node`, ...).
    pub name: String,
    /// smbtorture's rates.
    pub result: BenchResult,
    /// Seconds smbtorture ran the workload for.
    pub secs: u32,
    /// CPU seconds of both ctdbd process trees (their helpers included).
    pub ctdb_cpu: f64,
    /// CPU seconds of both smbd process trees (connection processes
    /// included).
    pub smbd_cpu: f64,
    /// CPU seconds of smbtorture (the clients).
    pub client_cpu: f64,
}

impl Measured {
    /// Opens plus closes per second (oplock1 reports opens only).
    pub fn ops_per_sec(&self) -> f64 {
        self.result.opens_per_sec + self.result.closes_per_sec.unwrap_or(0.0)
    }

    /// `NAME ok OPENS CLOSES|- SECS CTDB_CPU SMBD_CPU CLIENT_CPU`: the line
    /// `samba-bench` prints for a result (`NAME failed WHY` for a failure)
    /// and `ctdb-perf` reads (its `smb_rows`).
    pub fn line(&self) -> String {
        format!(
            "{} ok {:.1} {} {} {:.3} {:.3} {:.3}",
            self.name,
            self.result.opens_per_sec,
            self.result
                .closes_per_sec
                .map_or_else(|| "-".to_string(), |c| format!("{c:.1}")),
            self.secs,
            self.ctdb_cpu,
            self.smbd_cpu,
            self.client_cpu
        )
    }
}

/// Runs `names` (of [`WORKLOADS`]; one result each, in their order) for `secs`
/// seconds each with `nprocs` connections on a fresh two-node cluster of
/// `ctdbd`, waiting for it with `cli`; stops everything at the end. With
/// `stats`, each node's `ctdb statistics` for each workload goes to stderr. A
/// failed workload is `Err` with smbtorture's output; the cluster not
/// coming up is the outer `Err`.
pub fn run(
    ctdbd: &Path,
    cli: &Path,
    names: &[String],
    secs: u32,
    nprocs: u32,
    stats: bool,
) -> Result<Vec<std::result::Result<Measured, String>>> {
    let chosen = names
        .iter()
        .map(|n| {
            WORKLOADS.iter().find(|w| w.0 == n).copied().ok_or_else(|| {
                HarnessError::BadSpec(format!(
                    "unknown smb workload '{n}' (known: {})",
                    WORKLOADS.map(|w| w.0).join(", ")
                ))
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let mut cluster = Cluster::create_on_free_addresses(2, ctdbd)?;
    cluster.start_all()?;
    cluster.wait_all_ok(cli, Duration::from_secs(60))?;
    let mut smb = SambaCluster::create(&cluster)?;
    smb.setup(0)?;
    smb.start_all()?;
    let ctdb_pids: Vec<u32> = (0..2).filter_map(|i| cluster.pid(i)).collect();
    let smb_pids: Vec<u32> = (0..2).filter_map(|i| smb.pid(i)).collect();
    let cpu = |pids: &[u32]| -> f64 { pids.iter().map(|&p| procs::tree_cpu_seconds(p)).sum() };
    let mut out = Vec::new();
    for (name, test, nodes) in chosen {
        if stats {
            for i in 0..2 {
                let _ = cluster.ctdb(i, cli, &["statisticsreset"]);
            }
        }
        let (ctdb0, smb0) = (cpu(&ctdb_pids), cpu(&smb_pids));
        let client0 = procs::reaped_children_cpu_seconds();
        let r = smb.bench(test, nodes, nprocs, secs);
        let (ctdb_cpu, smbd_cpu) = (cpu(&ctdb_pids) - ctdb0, cpu(&smb_pids) - smb0);
        let client_cpu = procs::reaped_children_cpu_seconds() - client0;
        if stats {
            for i in 0..2 {
                if let Ok(o) = cluster.ctdb(i, cli, &["statistics"]) {
                    eprintln!("== node {i} after {name}\n{}", o.stdout);
                }
            }
        }
        out.push(match r {
            Ok(result) => Ok(Measured {
                name: name.to_string(),
                result,
                secs,
                ctdb_cpu,
                smbd_cpu,
                client_cpu,
            }),
            Err(e) => {
                smb.save_logs_if_asked(&cluster, "samba_bench");
                Err(format!("{test} on nodes {nodes:?}: {e}"))
            }
        });
    }
    drop(smb);
    drop(cluster);
    Ok(out)
}
