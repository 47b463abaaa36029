//! Must show (issue 5): a deleted volatile record never comes back after a
//! recovery, as upstream's INTEGRATION database/recovery.003.no_resurrect:
//! a record is written on node 0 and read (migrated) on every node, so
//! node 0 keeps an old copy; node 0 is stopped; the record is deleted on
//! node 1 and a recovery is run; the remaining nodes hold no record;
//! node 0 continues (another recovery, now with its old copy) and
//! `ctdb catdb` must not show the key on any node.
//!
//! A second round does the same with `kill -9` of node 0 instead of
//! `ctdb stop`, and a restart instead of `continue`: the restarted node
//! must not bring the old copy back either.

use std::time::{Duration, Instant};

use ctdb_tests::must_show::{
    cli, ctdb_ok, dumped_keys, fail_with_logs, must, state_of, wait_for, wait_nodes_ok, TestCluster,
};
use ctdb_tests::sys;

const NODES: usize = 3;
const ALL: [usize; 3] = [0, 1, 2];
const PNNS: [u32; 3] = [0, 1, 2];
const DB: &str = "rec_test.tdb";

/// Keys `ctdb cattdb` shows on node `i`, not counting `_`-prefixed ones
/// (upstream's db_ctdb_cattdb_count_records).
fn local_keys(c: &TestCluster, i: usize) -> Vec<String> {
    let out = must(c, ctdb_ok(c, i, &["cattdb", DB]));
    dumped_keys(&out)
        .into_iter()
        .filter(|k| !k.starts_with('_'))
        .collect()
}

/// Write `key` on node 0 and read it on every node, so every node held
/// the record and node 0 keeps an older copy.
fn spread(c: &TestCluster, key: &str, value: &str) {
    must(c, ctdb_ok(c, 0, &["writekey", DB, key, value]));
    for i in ALL {
        let out = must(c, ctdb_ok(c, i, &["readkey", DB, key]));
        if !out.contains(&format!("ptr:[{value}]")) {
            fail_with_logs(c, &format!("readkey {key} on node {i}: {out}"));
        }
    }
}

/// Delete `key` on node 1, recover, and check nodes 1 and 2 hold no
/// record.
fn delete_and_recover(c: &TestCluster, key: &str) {
    must(c, ctdb_ok(c, 1, &["deletekey", DB, key]));
    must(c, ctdb_ok(c, 1, &["recover"]));
    let r = wait_for(
        "no record left on nodes 1 and 2 after the recovery",
        Duration::from_secs(30),
        Duration::from_millis(300),
        || {
            let left: Vec<(usize, Vec<String>)> =
                [1, 2].iter().map(|&i| (i, local_keys(c, i))).collect();
            if left.iter().all(|(_, k)| k.is_empty()) {
                Ok(())
            } else {
                Err(format!("{left:?}"))
            }
        },
    );
    must(c, r);
}

/// `ctdb catdb` on every node must not show `key`.
fn not_resurrected(c: &TestCluster, key: &str, round: &str) {
    for i in ALL {
        let out = must(c, ctdb_ok(c, i, &["catdb", DB]));
        let keys = dumped_keys(&out);
        if keys.iter().any(|k| k == key) {
            fail_with_logs(
                c,
                &format!(
                    "{round}: BAD: deleted record {key} resurrected (catdb on node {i}):\n{out}"
                ),
            );
        }
    }
}

#[test]
fn deleted_record_is_not_resurrected_by_recovery() {
    let name = "deleted_record_is_not_resurrected_by_recovery";
    let (c, t0) = TestCluster::start_for(name, NODES);
    no_resurrect(name, c, t0);
}

/// The same on daemons whose records live on two data cores each, which
/// migrate them over their own node connections.
#[test]
fn deleted_record_is_not_resurrected_with_data_cores() {
    let name = "deleted_record_is_not_resurrected_with_data_cores";
    if let Some((c, t0)) = TestCluster::start_with_data_cores(name, NODES) {
        no_resurrect(name, c, t0);
    }
}

fn no_resurrect(name: &str, mut c: TestCluster, t0: Instant) {
    must(&c, ctdb_ok(&c, 0, &["attach", DB]));
    // A fresh cluster: the database starts empty (upstream wipes it first).

    // Round 1: upstream's recovery.003 with `ctdb stop`.
    spread(&c, "test1", "value1");
    must(&c, ctdb_ok(&c, 0, &["stop"]));
    let r = wait_for(
        "node 0 STOPPED",
        Duration::from_secs(30),
        Duration::from_millis(300),
        || match state_of(&c, 1, 0) {
            Ok(s) if s.contains("STOPPED") => Ok(()),
            other => Err(format!("{other:?}")),
        },
    );
    must(&c, r);
    delete_and_recover(&c, "test1");
    must(&c, ctdb_ok(&c, 0, &["continue"]));
    must(&c, wait_nodes_ok(&c, &ALL, &PNNS, Duration::from_secs(60)));
    not_resurrected(&c, "test1", "stop/continue");
    eprintln!("{name}: round 1 (stop/continue) good at {:?}", t0.elapsed());

    // Round 2: the same with kill -9 and a restart.
    spread(&c, "test2", "value2");
    let pid = c.pid(0).expect("node 0 running");
    assert!(sys::send_signal(pid, sys::SIGKILL), "kill -9 {pid}");
    // Reap it (and its helpers) by pid through the harness.
    c.stop_node(0).expect("reap node 0");
    let r = wait_for(
        "node 0 DISCONNECTED",
        Duration::from_secs(30),
        Duration::from_millis(300),
        || match state_of(&c, 1, 0) {
            Ok(s) if s.contains("DISCONNECTED") => Ok(()),
            other => Err(format!("{other:?}")),
        },
    );
    must(&c, r);
    delete_and_recover(&c, "test2");
    c.start_node(0).expect("restart node 0");
    c.wait_all_ok(cli(), Duration::from_secs(60))
        .unwrap_or_else(|e| fail_with_logs(&c, &format!("after restart: {e}")));
    // The restarted node attaches the database again in the recovery.
    not_resurrected(&c, "test2", "kill/restart");
    not_resurrected(&c, "test1", "kill/restart");
    eprintln!("{name}: round 2 (kill/restart) good at {:?}", t0.elapsed());

    c.stop_all().expect("stop daemons");
    eprintln!("{name}: done in {:?}", t0.elapsed());
}
