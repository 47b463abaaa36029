//! Issue 5, membership: the keepalive version rule follows the tunable
//! `AllowMixedVersions` while the daemon runs, as upstream reads it on every
//! keepalive.
//!
//! Node 1 runs as a different minor version (upstream's
//! `CTDB_TEST_SAMBA_VERSION`, as in INTEGRATION simple/cluster.091) with
//! `AllowMixedVersions=1` in its `ctdb.tunables`, and starts after node 0:
//! the cluster forms. Then `ctdb setvar AllowMixedVersions 0` on node 1:
//! at node 0's next keepalive node 1 finds the older node of another version
//! and shuts down (the younger node is the one to go), while node 0 keeps
//! running.

use std::time::{Duration, Instant};

use ctdb_tests::must_show::{cli, ctdb_ok, ctdbd_or_skip, ctdbd_under_test, must, TestCluster};

/// Samba 4.17 in the keepalive's version field.
const OURS: u32 = (4 << 16) | 17;

#[test]
fn mixed_versions_follow_the_tunable_at_run_time() {
    let name = "mixed_versions_follow_the_tunable_at_run_time";
    let ctdbd = ctdbd_or_skip(name).unwrap_or_else(ctdbd_under_test);
    let other = (OURS + 1).to_string();
    let mut c = TestCluster::create(2, &ctdbd, |spec| {
        spec.node_env
            .push((1, "CTDB_TEST_SAMBA_VERSION".into(), other.clone()));
    })
    .expect("create cluster");
    std::fs::write(
        c.base(1).expect("base").join("ctdb.tunables"),
        "AllowMixedVersions=1\n",
    )
    .expect("write node 1's tunables");
    let t0 = Instant::now();
    c.start_node(0).expect("start node 0");
    // Node 1 must be the younger one (uptime in whole seconds).
    std::thread::sleep(Duration::from_secs(2));
    c.start_node(1).expect("start node 1");
    if let Err(e) = c.wait_all_ok(cli(), Duration::from_secs(60)) {
        panic!("{name}: mixed versions with AllowMixedVersions=1 do not form a cluster: {e}");
    }
    let v = must(&c, ctdb_ok(&c, 1, &["getvar", "AllowMixedVersions"]));
    assert!(v.contains("= 1"), "{name}: node 1 says {v:?}");
    eprintln!(
        "{name}: 2 nodes of different versions OK after {:?}",
        t0.elapsed()
    );

    must(&c, ctdb_ok(&c, 1, &["setvar", "AllowMixedVersions", "0"]));
    let t1 = Instant::now();
    let mut gone = false;
    while t1.elapsed() < Duration::from_secs(40) {
        if c.check_running().is_err() {
            gone = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        gone,
        "{name}: node 1 still runs 40 s after AllowMixedVersions=0:\n{}",
        c.log_tail(1, 20)
    );
    let log1 = std::fs::read_to_string(c.log(1).expect("log")).unwrap_or_default();
    assert!(
        log1.contains("Keepalive version mismatch"),
        "{name}: node 1 exited without the version message:\n{}",
        c.log_tail(1, 20)
    );
    // The node that went is node 1; node 0 runs on.
    assert!(c.pid(0).is_some(), "{name}: node 0 exited too");
    c.check_running().expect("node 0 still running");
    eprintln!(
        "{name}: node 1 shut down {:?} after the tunable changed",
        t1.elapsed()
    );
    c.stop_all().expect("stop");
}
