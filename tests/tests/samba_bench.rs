//! Throughput of clustered Samba on a CTDB cluster: smbtorture's
//! `smb2.bench.path-contention-shared` (every connection opens and closes
//! the same path, so every open updates one share-mode record that moves
//! between nodes) and `smb2.bench.oplock1` (each open breaks the previous
//! connection's oplock), with the connections on one node and spread over
//! two. Ignored by default (it measures, it does not check much):
//!
//! ```text
//! cargo test -p ctdb-tests --test samba_bench -- --ignored --nocapture
//! CTDBD=target/release/ctdbd SAMBA_BENCH_SECS=10 SAMBA_BENCH_NPROCS=4 cargo test ...
//! ```
//!
//! With `$CTDBD` set to another daemon than Debian's, the same workloads run
//! against Debian's ctdbd and against `$CTDBD` in the same run, and the
//! table shows both and their ratio.

use std::path::{Path, PathBuf};
use std::time::Duration;

use ctdb_tests::samba::{self, BenchResult, SambaCluster};
use ctdb_tests::{cli_from_env, ctdbd_from_env, Cluster, DEBIAN_CTDBD};

fn env_u32(name: &str, default: u32) -> u32 {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} is not a whole number")),
        Err(_) => default,
    }
}

const WORKLOADS: [&str; 2] = ["smb2.bench.path-contention-shared", "smb2.bench.oplock1"];
const NODE_SETS: [&[usize]; 2] = [&[0], &[0, 1]];

/// Every (workload, node set) against `cluster`, a fresh two-node cluster
/// of `ctdbd` (stopped at the end).
fn bench_all(mut cluster: Cluster, ctdbd: &Path, secs: u32, nprocs: u32) -> Vec<BenchResult> {
    cluster.start_all().expect("start ctdbd");
    cluster
        .wait_all_ok(&cli_from_env(), Duration::from_secs(60))
        .expect("ctdb cluster OK");
    let mut smb = SambaCluster::create(&cluster).expect("write smb.conf");
    smb.setup(0).expect("setup");
    smb.start_all().expect("start smbd");
    let mut results = Vec::new();
    for test in WORKLOADS {
        for nodes in NODE_SETS {
            let r = smb.bench(test, nodes, nprocs, secs).unwrap_or_else(|e| {
                smb.save_logs_if_asked(&cluster, "samba_bench");
                panic!("[ctdbd {}] {test} on {nodes:?}: {e}", ctdbd.display())
            });
            assert!(r.opens_per_sec > 0.0, "{test} on {nodes:?}: no opens");
            results.push(r);
        }
    }
    drop(smb);
    drop(cluster);
    results
}

fn nodes_txt(nodes: &[usize]) -> String {
    nodes
        .iter()
        .map(|n| n.to_string())
        .collect::<Vec<_>>()
        .join("+")
}

#[test]
#[ignore = "benchmark: run with --ignored"]
fn samba_bench_two_nodes() {
    if !samba::tools_available() || !samba::smbtorture_available() {
        eprintln!("samba_bench: SKIPPED, needs samba, smbclient and samba-testsuite");
        return;
    }
    let secs = env_u32("SAMBA_BENCH_SECS", 5);
    let nprocs = env_u32("SAMBA_BENCH_NPROCS", 4);
    let ours = ctdbd_from_env();
    let debian = PathBuf::from(DEBIAN_CTDBD);
    let mut daemons = vec![debian.clone()];
    if ours != debian {
        daemons.push(ours.clone());
    }
    // All clusters are created first, so each has its own addresses: a
    // daemon must not find the previous one's TIME_WAIT connections on
    // its node port.
    let clusters: Vec<Cluster> = daemons
        .iter()
        .map(|d| Cluster::create_on_free_addresses(2, d).expect("create cluster"))
        .collect();
    let runs: Vec<(PathBuf, Vec<BenchResult>)> = daemons
        .iter()
        .zip(clusters)
        .map(|(d, c)| (d.clone(), bench_all(c, d, secs, nprocs)))
        .collect();

    println!("({secs} s per run, {nprocs} connections, open+close per second)");
    print!("{:<36} {:>6}", "workload", "nodes");
    for (d, _) in &runs {
        let name = d.display().to_string();
        let short = &name[name.len().saturating_sub(22)..];
        print!(" {short:>24}");
    }
    if runs.len() == 2 {
        print!(" {:>8}", "ratio");
    }
    println!();
    for (i, r0) in runs[0].1.iter().enumerate() {
        let test = r0.test.trim_start_matches("smb2.bench.");
        print!("{:<36} {:>6}", test, nodes_txt(&r0.nodes));
        let rate = |r: &BenchResult| r.opens_per_sec + r.closes_per_sec.unwrap_or(0.0);
        for (_, rs) in &runs {
            let r = &rs[i];
            let closes = r
                .closes_per_sec
                .map_or_else(|| "-".to_string(), |c| format!("{c:.0}"));
            print!(" {:>24}", format!("{:.0}/{closes}", r.opens_per_sec));
        }
        if runs.len() == 2 {
            let base = rate(r0);
            let ratio = if base > 0.0 {
                rate(&runs[1].1[i]) / base
            } else {
                0.0
            };
            print!(" {ratio:>7.2}x");
        }
        println!();
    }
}
