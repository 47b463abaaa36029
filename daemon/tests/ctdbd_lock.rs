//! Our ctdbd with a cluster lock: the control core takes it through the
//! cluster mutex helper (Debian's `ctdb_mutex_fcntl_helper`) before it
//! leads, `ctdb getreclock` names it, `ctdb statistics` shows how long
//! taking it took, another taker sees contention, and the helper goes when
//! the daemon does.

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use ctdb_tests::cluster::{Cluster, ClusterSpec};
use ctdb_tests::must_show::latency_stat;
use ctdb_tests::AddrLease;

const CTDB: &str = "/usr/bin/ctdb";
const HELPER: &str = "/usr/libexec/ctdb/ctdb_mutex_fcntl_helper";

/// Runs the fcntl helper on `file` and returns its status byte.
fn try_lock(file: &Path) -> u8 {
    let mut child = Command::new(HELPER)
        .arg(file)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut b = [0u8; 1];
    let r = child.stdout.take().unwrap().read_exact(&mut b);
    let _ = child.kill();
    let _ = child.wait();
    r.map(|_| b[0]).unwrap_or(b'?')
}

#[test]
fn cluster_lock_is_held_by_the_daemon() {
    if !Path::new(CTDB).exists() || !Path::new(HELPER).exists() {
        eprintln!("skipped: Debian's ctdb tools not installed");
        return;
    }
    let lease = AddrLease::reserve().unwrap();
    let mut spec = ClusterSpec::new(1, lease.first(), env!("CARGO_BIN_EXE_ctdbd"));
    spec.cluster_lock = true;
    let mut cluster = Cluster::create(spec).unwrap();
    let lock_file = cluster.dir().join("shared/.ctdb/cluster.lock");
    cluster.start_all().unwrap();
    cluster
        .wait_all_ok(Path::new(CTDB), Duration::from_secs(60))
        .unwrap();
    let out = cluster.ctdb(0, Path::new(CTDB), &["getreclock"]).unwrap();
    assert_eq!(out.stdout.trim(), lock_file.display().to_string());
    assert_eq!(try_lock(&lock_file), b'1', "the daemon holds the lock");
    let log = std::fs::read_to_string(cluster.log(0).unwrap()).unwrap();
    assert!(log.contains("Took cluster lock"), "{log}");
    // The time it took shows in the statistics, as upstream's reclock.recd
    // (`reclock_recd       MIN/AVG/MAX     a/b/c sec out of N`).
    let stats = cluster.ctdb(0, Path::new(CTDB), &["statistics"]).unwrap();
    let (_, _, max, taken) = latency_stat(&stats.stdout, "reclock_recd")
        .unwrap_or_else(|| panic!("no reclock_recd line in:\n{}", stats.stdout));
    assert!(taken >= 1, "the lock was taken, yet:\n{}", stats.stdout);
    assert!(max > 0.0 && max < 60.0, "{}", stats.stdout);
    cluster.stop_all().unwrap();
    assert_eq!(try_lock(&lock_file), b'0', "released with the daemon");
}
