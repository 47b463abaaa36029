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
//! Prints one table row per (workload, node set).

use std::time::Duration;

use ctdb_tests::samba::{self, SambaCluster};
use ctdb_tests::{cli_from_env, ctdbd_from_env, Cluster};

fn env_u32(name: &str, default: u32) -> u32 {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} is not a whole number")),
        Err(_) => default,
    }
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
    let ctdbd = ctdbd_from_env();
    let mut cluster = Cluster::create_on_free_addresses(2, &ctdbd).expect("create cluster");
    cluster.start_all().expect("start ctdbd");
    cluster
        .wait_all_ok(&cli_from_env(), Duration::from_secs(60))
        .expect("ctdb cluster OK");
    let mut smb = SambaCluster::create(&cluster).expect("write smb.conf");
    smb.setup(0).expect("setup");
    smb.start_all().expect("start smbd");
    smb.wait_all_ready(Duration::from_secs(60))
        .expect("smbd ready");

    println!(
        "ctdbd: {}  ({secs} s per run, {nprocs} connections)",
        ctdbd.display()
    );
    println!(
        "{:<40} {:>8} {:>12} {:>12}",
        "workload", "nodes", "open/s", "close/s"
    );
    for test in ["smb2.bench.path-contention-shared", "smb2.bench.oplock1"] {
        for nodes in [&[0usize][..], &[0, 1][..]] {
            let r = smb.bench(test, nodes, nprocs, secs).expect("bench");
            let closes = r
                .closes_per_sec
                .map_or_else(|| "-".to_string(), |c| format!("{c:.0}"));
            let nodes_txt = nodes
                .iter()
                .map(|n| n.to_string())
                .collect::<Vec<_>>()
                .join("+");
            println!(
                "{:<40} {:>8} {:>12.0} {:>12}",
                test, nodes_txt, r.opens_per_sec, closes
            );
            assert!(r.opens_per_sec > 0.0, "{test} on {nodes:?}: no opens");
        }
    }
    drop(smb);
    drop(cluster);
}
