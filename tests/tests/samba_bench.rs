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
/// A failed run is `Err` (with smbtorture's output), and the logs are saved
/// when `$SAMBA_TEST_LOGS` is set.
fn bench_all(
    mut cluster: Cluster,
    ctdbd: &Path,
    secs: u32,
    nprocs: u32,
) -> Vec<Result<BenchResult, String>> {
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
            let r = smb.bench(test, nodes, nprocs, secs).map_err(|e| {
                smb.save_logs_if_asked(&cluster, "samba_bench");
                format!("[ctdbd {}] {test} on {nodes:?}: {e}", ctdbd.display())
            });
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
    let runs: Vec<(PathBuf, Vec<Result<BenchResult, String>>)> = daemons
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
    let rate = |r: &Result<BenchResult, String>| {
        r.as_ref()
            .map_or(0.0, |r| r.opens_per_sec + r.closes_per_sec.unwrap_or(0.0))
    };
    let mut i = 0;
    for test in WORKLOADS {
        for nodes in NODE_SETS {
            let short = test.trim_start_matches("smb2.bench.");
            print!("{:<36} {:>6}", short, nodes_txt(nodes));
            for (_, rs) in &runs {
                let cell = match &rs[i] {
                    Ok(r) => format!(
                        "{:.0}/{}",
                        r.opens_per_sec,
                        r.closes_per_sec
                            .map_or_else(|| "-".to_string(), |c| format!("{c:.0}"))
                    ),
                    Err(_) => "FAILED".to_string(),
                };
                print!(" {cell:>24}");
            }
            if runs.len() == 2 {
                let base = rate(&runs[0].1[i]);
                let ratio = if base > 0.0 {
                    rate(&runs[1].1[i]) / base
                } else {
                    0.0
                };
                print!(" {ratio:>7.2}x");
            }
            println!();
            i += 1;
        }
    }
    let failed: Vec<&String> = runs
        .iter()
        .flat_map(|(_, rs)| rs.iter().filter_map(|r| r.as_ref().err()))
        .collect();
    for f in &failed {
        println!("{f}");
    }
    assert!(failed.is_empty(), "{} benchmark runs failed", failed.len());
}
