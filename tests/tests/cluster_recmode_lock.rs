//! Issue 5, leader election under the cluster lock: before a node leaves
//! recovery (SET_RECMODE NORMAL), its daemon tries the cluster lock itself.
//! The leader holds it, so the try must find it contended; a daemon that
//! *gets* it has found a lock that does not exclude (a broken cluster
//! filesystem) and refuses to end the recovery, as upstream's
//! `ctdb_control_set_recmode` does.
//!
//! The broken lock is a real mutex helper (`cluster lock = !HELPER`, the
//! child-process protocol of upstream's helpers) that grants every request.
//! With it, a node's recovery can never finish: the daemon logs upstream's
//! error, and the node stays in recovery mode. With a lock that excludes
//! (the fcntl helper on a file), the same check passes and the node ends
//! up OK, so the test shows both outcomes of the check.

use std::path::Path;
use std::time::{Duration, Instant};

use ctdb_tests::cluster::unique_dir;
use ctdb_tests::must_show::{ctdb_ok, ctdbd_or_skip, ctdbd_under_test, must, TestCluster};

const TAKEN: &str = "Daemon able to take recovery lock";

/// A mutex helper that grants every request ("0"), then holds until it is
/// killed (bounded, in case nobody does).
fn write_granting_helper(dir: &Path) -> std::path::PathBuf {
    std::fs::create_dir_all(dir).expect("helper dir");
    let path = dir.join("grant-always.sh");
    std::fs::write(&path, "#!/bin/sh\nprintf 0\nexec sleep 120\n").expect("write helper");
    let mut perm = std::fs::metadata(&path).expect("helper").permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perm, 0o755);
    std::fs::set_permissions(&path, perm).expect("chmod helper");
    path
}

#[test]
fn recovery_does_not_end_when_the_daemon_can_take_the_cluster_lock() {
    let name = "recovery_does_not_end_when_the_daemon_can_take_the_cluster_lock";
    let ctdbd = ctdbd_or_skip(name).unwrap_or_else(ctdbd_under_test);
    let helper_dir = unique_dir("grant");
    let helper = write_granting_helper(&helper_dir);
    let lock = format!("!{}", helper.display());
    let mut c = TestCluster::create(1, &ctdbd, |spec| {
        spec.extra_conf
            .push(("cluster".into(), "cluster lock".into(), lock.clone()));
    })
    .expect("create cluster");
    c.start_all().expect("start node");
    let t0 = Instant::now();
    let mut seen = false;
    while t0.elapsed() < Duration::from_secs(60) {
        c.check_running().expect("ctdbd running");
        let log = std::fs::read_to_string(c.log(0).expect("log")).unwrap_or_default();
        if log.contains(TAKEN) {
            seen = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    assert!(
        seen,
        "{name}: no {TAKEN:?} in 60 s; log:\n{}",
        c.log_tail(0, 40)
    );
    // The check keeps failing, so the node never leaves recovery.
    std::thread::sleep(Duration::from_secs(3));
    let status = must(&c, ctdb_ok(&c, 0, &["status"]));
    assert!(
        status.contains("Recovery mode:RECOVERY (1)"),
        "{name}: the node left recovery although the lock did not exclude:\n{status}"
    );
    eprintln!(
        "{name}: refused to leave recovery, as upstream ({:?})",
        t0.elapsed()
    );
    c.stop_all().expect("stop");
    let _ = std::fs::remove_dir_all(&helper_dir);

    // The same check with a lock that excludes: the node ends recovery.
    let t1 = Instant::now();
    let mut ok = TestCluster::start(1, &ctdbd, Duration::from_secs(60), |spec| {
        spec.cluster_lock = true;
    })
    .unwrap_or_else(|e| panic!("{name}: node with a file lock does not come up: {e}"));
    let status = must(&ok, ctdb_ok(&ok, 0, &["status"]));
    assert!(
        status.contains("Recovery mode:NORMAL (0)"),
        "{name}: no normal recovery mode with an excluding lock:\n{status}"
    );
    let log = std::fs::read_to_string(ok.log(0).expect("log")).unwrap_or_default();
    assert!(!log.contains(TAKEN), "{name}: {TAKEN} with the fcntl lock");
    ok.stop_all().expect("stop");
    eprintln!("{name}: done in {:?}", t0.elapsed().max(t1.elapsed()));
}
