//! Must show (issue 5): a 3-node cluster forms with every node OK and one
//! leader all nodes agree on; `ctdb stop` of the leader and `ctdb ban` of
//! the leader each make another node leader (as upstream's INTEGRATION
//! simple/cluster.001.stop_leader_yield and cluster.002.ban_leader_yield,
//! with and without a cluster lock); the node comes back OK after
//! `continue` / `unban`. With the lock, the leader is always the node whose
//! mutex helper holds the lock file (read from /proc/locks).
//!
//! Runs against `ctdb_tests::must_show::ctdbd_under_test()` (Debian's
//! ctdbd unless `CTDB_TEST_CTDBD` names another), always with the stock
//! CLI.

use std::time::{Duration, Instant};

use ctdb_tests::must_show::{
    ctdb_ok, ctdbd_or_skip, fail_with_logs, lock_holder, must, state_of, status_of,
    wait_agreed_leader, wait_for, wait_nodes_ok, TestCluster,
};

const ALL: [usize; 3] = [0, 1, 2];
const PNNS: [u32; 3] = [0, 1, 2];

fn check_lock(c: &TestCluster, lock: bool, leader: u32) {
    if !lock {
        return;
    }
    let file = c.lock_file();
    // The leader announces itself only once it holds the lock, so this is
    // immediate; allow a moment for /proc/locks to be read consistently.
    let r = wait_for(
        "the leader holding the cluster lock",
        Duration::from_secs(5),
        Duration::from_millis(100),
        || match lock_holder(c, &file) {
            Some(h) if h as u32 == leader => Ok(()),
            other => Err(format!("lock held by node {other:?}, leader is {leader}")),
        },
    );
    must(c, r);
}

fn others(of: u32) -> (Vec<usize>, Vec<u32>) {
    let nodes: Vec<usize> = ALL.iter().copied().filter(|&i| i as u32 != of).collect();
    let pnns = nodes.iter().map(|&i| i as u32).collect();
    (nodes, pnns)
}

fn leader_yields(name: &str, lock: bool) {
    let Some(ctdbd) = ctdbd_or_skip(name) else {
        return;
    };
    let t0 = Instant::now();
    let c = TestCluster::start(3, &ctdbd, Duration::from_secs(60), |s| {
        s.cluster_lock = lock;
    })
    .expect("cluster of 3 forms");

    // Every node: 3 nodes OK, NORMAL, the same leader in `status` and in
    // `ctdb leader`.
    let leader = must(
        &c,
        wait_agreed_leader(&c, &ALL, &PNNS, Duration::from_secs(30)),
    );
    for i in ALL {
        let s = must(&c, status_of(&c, i));
        if !s.all_ok(3) || s.leader != Some(leader) {
            fail_with_logs(
                &c,
                &format!("node {i}: status {s:?}, expected all OK, leader {leader}"),
            );
        }
    }
    check_lock(&c, lock, leader);
    eprintln!("{name}: formed, leader {leader} after {:?}", t0.elapsed());

    // `ctdb stop` of the leader, asked from another node.
    let (rest, rest_pnns) = others(leader);
    let asker = rest[0];
    must(&c, ctdb_ok(&c, asker, &["stop", "-n", &leader.to_string()]));
    must(
        &c,
        wait_for(
            "leader STOPPED",
            Duration::from_secs(30),
            Duration::from_millis(300),
            || match state_of(&c, asker, leader) {
                Ok(s) if s.contains("STOPPED") => Ok(()),
                other => Err(format!("{other:?}")),
            },
        ),
    );
    let after_stop = must(
        &c,
        wait_agreed_leader(&c, &rest, &rest_pnns, Duration::from_secs(60)),
    );
    assert_ne!(after_stop, leader);
    check_lock(&c, lock, after_stop);
    eprintln!(
        "{name}: leader {leader} stopped, new leader {after_stop} at {:?}",
        t0.elapsed()
    );
    must(
        &c,
        ctdb_ok(&c, asker, &["continue", "-n", &leader.to_string()]),
    );
    must(&c, wait_nodes_ok(&c, &ALL, &PNNS, Duration::from_secs(60)));
    let leader2 = must(
        &c,
        wait_agreed_leader(&c, &ALL, &PNNS, Duration::from_secs(30)),
    );
    check_lock(&c, lock, leader2);

    // `ctdb ban` of the (current) leader.
    let (rest, rest_pnns) = others(leader2);
    let asker = rest[0];
    must(
        &c,
        ctdb_ok(&c, asker, &["ban", "60", "-n", &leader2.to_string()]),
    );
    must(
        &c,
        wait_for(
            "leader BANNED",
            Duration::from_secs(30),
            Duration::from_millis(300),
            || match state_of(&c, asker, leader2) {
                Ok(s) if s.contains("BANNED") => Ok(()),
                other => Err(format!("{other:?}")),
            },
        ),
    );
    let after_ban = must(
        &c,
        wait_agreed_leader(&c, &rest, &rest_pnns, Duration::from_secs(60)),
    );
    assert_ne!(after_ban, leader2);
    check_lock(&c, lock, after_ban);
    eprintln!(
        "{name}: leader {leader2} banned, new leader {after_ban} at {:?}",
        t0.elapsed()
    );
    must(
        &c,
        ctdb_ok(&c, asker, &["unban", "-n", &leader2.to_string()]),
    );
    must(&c, wait_nodes_ok(&c, &ALL, &PNNS, Duration::from_secs(60)));
    let last = must(
        &c,
        wait_agreed_leader(&c, &ALL, &PNNS, Duration::from_secs(30)),
    );
    check_lock(&c, lock, last);

    let mut c = c;
    c.stop_all().expect("stop every daemon");
    assert!(c.processes().is_empty(), "left: {:?}", c.processes());
    eprintln!("{name}: done in {:?}", t0.elapsed());
}

#[test]
fn cluster_forms_and_leader_yields_with_cluster_lock() {
    leader_yields("cluster_forms_and_leader_yields_with_cluster_lock", true);
}

#[test]
fn cluster_forms_and_leader_yields_without_cluster_lock() {
    leader_yields(
        "cluster_forms_and_leader_yields_without_cluster_lock",
        false,
    );
}
