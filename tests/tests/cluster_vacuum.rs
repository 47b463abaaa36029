//! Must show: vacuuming removes deleted volatile records from every node's
//! TDB file on its own schedule, as upstream's ctdbd does, and nothing it
//! removed comes back.
//!
//! Three daemons with VacuumInterval 1 and VacuumFastPathCount 2 (a full
//! run every third run):
//! 1. records are written on every node and read (migrated) on every node,
//!    so each file holds a copy of each; some are deleted with `ctdb
//!    deletekey` (queued for deletion: the fast path), some with
//!    `ctdb-db-test fetch-local-delete` (fetch-lock, store empty, nothing
//!    queued: only the full run's traverse finds them), from every node;
//!    the scheduled runs (VACUUM_FETCH to the lmaster, its migration,
//!    TRY_DELETE_RECORDS) must remove them from every node's file, counted
//!    with `tdbdump`, while the other records stay;
//! 2. a record deleted while a client (`ctdb-db-test`'s lock holder) holds
//!    its chain lock stays in the file through several runs, full ones
//!    included, and goes once the holder is gone;
//! 3. `ctdb recover`, then `kill -9` of a node and the recovery that
//!    follows, bring none of the deleted records back.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use ctdb_tests::must_show::{
    ctdb_ok, dumped_keys, fail_with_logs, must, perf_command, run_bounded, wait_for, wait_nodes_ok,
    TestCluster,
};
use ctdb_tests::{sys, StatusSummary};

const NODES: usize = 3;
const DB: &str = "vacuum_test.tdb";

/// The file of `DB` on node `i` (`ctdb getdbmap`'s `path:`).
fn db_path(c: &TestCluster, i: usize) -> Result<PathBuf, String> {
    let out = ctdb_ok(c, i, &["getdbmap"])?;
    out.lines()
        .find(|l| l.contains(&format!("name:{DB} ")))
        .and_then(|l| l.split_whitespace().find_map(|w| w.strip_prefix("path:")))
        .map(PathBuf::from)
        .ok_or_else(|| format!("no {DB} in getdbmap of node {i}:\n{out}"))
}

/// The keys in node `i`'s file of `DB`, read with tdbdump.
fn file_keys(c: &TestCluster, i: usize) -> Result<Vec<String>, String> {
    let path = db_path(c, i)?;
    let mut cmd = std::process::Command::new("tdbdump");
    cmd.arg(&path);
    let r = run_bounded(cmd, Duration::from_secs(20), None)
        .map_err(|e| format!("tdbdump {}: {e}", path.display()))?;
    if !r.ok() {
        return Err(format!(
            "tdbdump {}: exit {}: {}",
            path.display(),
            r.code,
            r.stderr
        ));
    }
    Ok(dumped_keys(&r.stdout))
}

/// Runs `ctdb-db-test ARGS` against node `i`; its stdout.
fn db_test(c: &TestCluster, i: usize, args: &[&str]) -> Result<String, String> {
    let mut cmd = perf_command(c, i, "ctdb-db-test").map_err(|e| e.to_string())?;
    cmd.args(args);
    let r = run_bounded(cmd, Duration::from_secs(30), None).map_err(|e| e.to_string())?;
    if r.ok() {
        Ok(r.stdout)
    } else {
        Err(format!(
            "ctdb-db-test {args:?} on node {i}: exit {}: {}{}",
            r.code, r.stdout, r.stderr
        ))
    }
}

/// Every node's file must hold all of `present` and none of `gone`.
fn files_hold(c: &TestCluster, present: &[String], gone: &[String]) -> Result<(), String> {
    let mut bad = Vec::new();
    for i in 0..NODES {
        let keys = file_keys(c, i)?;
        let missing: Vec<&String> = present.iter().filter(|k| !keys.contains(k)).collect();
        let left: Vec<&String> = gone.iter().filter(|k| keys.contains(k)).collect();
        if !missing.is_empty() || !left.is_empty() {
            bad.push(format!(
                "node {i}: missing {missing:?}, still there {left:?}"
            ));
        }
    }
    if bad.is_empty() {
        Ok(())
    } else {
        Err(bad.join("; "))
    }
}

/// `ctdb catdb` on node `i` must show none of `gone`.
fn catdb_lacks(c: &TestCluster, i: usize, gone: &[String]) -> Result<(), String> {
    let out = ctdb_ok(c, i, &["catdb", DB])?;
    let keys = dumped_keys(&out);
    let back: Vec<&String> = gone.iter().filter(|k| keys.contains(k)).collect();
    if back.is_empty() {
        Ok(())
    } else {
        Err(format!("node {i}: deleted records came back: {back:?}"))
    }
}

/// The lock holder of ctdb-db-test (its `local-lock` child), started as
/// our own child so it is stopped by pid and reaped.
struct Holder(Child);

impl Holder {
    fn start(c: &TestCluster, i: usize, key: &str) -> Result<Holder, String> {
        let mut cmd = perf_command(c, i, "ctdb-db-test").map_err(|e| e.to_string())?;
        cmd.args(["-t", "60", "__hold-lock", DB, key])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        let mut child = cmd.spawn().map_err(|e| format!("start lock holder: {e}"))?;
        let mut line = String::new();
        if let Some(out) = child.stdout.take() {
            let _ = BufReader::new(out).read_line(&mut line);
        }
        let h = Holder(child);
        if line.trim() != "0" {
            return Err(format!("lock holder on node {i} failed: {line:?}"));
        }
        Ok(h)
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn keys(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}{i}")).collect()
}

#[test]
fn vacuuming_removes_deleted_records_everywhere() {
    let name = "vacuuming_removes_deleted_records_everywhere";
    let (mut c, t0) = TestCluster::start_for(name, NODES);
    // Before the attach: a database's first timer uses the interval then.
    for i in 0..NODES {
        must(&c, ctdb_ok(&c, i, &["setvar", "VacuumInterval", "1"]));
        must(&c, ctdb_ok(&c, i, &["setvar", "VacuumFastPathCount", "2"]));
    }
    must(&c, ctdb_ok(&c, 0, &["attach", DB]));

    // 1. Written and read everywhere, then deleted from every node.
    let by_tool = keys("del", 6);
    let by_client = keys("local", 3);
    let kept = keys("keep", 3);
    let all: Vec<String> = by_tool
        .iter()
        .chain(&by_client)
        .chain(&kept)
        .cloned()
        .collect();
    for (n, k) in all.iter().enumerate() {
        must(
            &c,
            ctdb_ok(&c, n % NODES, &["writekey", DB, k, &format!("v-{k}")]),
        );
        for i in 0..NODES {
            must(&c, ctdb_ok(&c, i, &["readkey", DB, k]));
        }
    }
    must(&c, files_hold(&c, &all, &[]));
    for (n, k) in by_tool.iter().enumerate() {
        must(&c, ctdb_ok(&c, n % NODES, &["deletekey", DB, k]));
    }
    for (n, k) in by_client.iter().enumerate() {
        must(&c, db_test(&c, n % NODES, &["fetch-local-delete", DB, k]));
    }
    let gone: Vec<String> = by_tool.iter().chain(&by_client).cloned().collect();
    let t1 = Instant::now();
    let r = wait_for(
        "deleted records vacuumed from every node's file",
        Duration::from_secs(30),
        Duration::from_millis(300),
        || files_hold(&c, &kept, &gone),
    );
    must(&c, r);
    eprintln!(
        "{name}: {} deleted records vacuumed everywhere in {:?}",
        gone.len(),
        t1.elapsed()
    );
    for k in &kept {
        let out = must(&c, ctdb_ok(&c, 2, &["readkey", DB, k]));
        if !out.contains(&format!("ptr:[v-{k}]")) {
            fail_with_logs(&c, &format!("{k} lost its value: {out}"));
        }
    }

    // 2. Deleted under a client's lock: kept until the lock is released.
    let locked = "locked".to_string();
    must(&c, ctdb_ok(&c, 0, &["writekey", DB, &locked, "x"]));
    for i in 0..NODES {
        must(&c, ctdb_ok(&c, i, &["readkey", DB, &locked]));
    }
    must(&c, ctdb_ok(&c, 1, &["deletekey", DB, &locked]));
    let holder = must(&c, Holder::start(&c, 1, &locked));
    let held = Instant::now();
    // VacuumInterval 1: at least four runs, a full one among them.
    while held.elapsed() < Duration::from_secs(5) {
        let keys = must(&c, file_keys(&c, 1));
        if !keys.contains(&locked) {
            fail_with_logs(&c, "a record locked by a client was vacuumed");
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    drop(holder);
    let r = wait_for(
        "the once-locked record vacuumed from every node's file",
        Duration::from_secs(30),
        Duration::from_millis(300),
        || files_hold(&c, &kept, std::slice::from_ref(&locked)),
    );
    must(&c, r);
    eprintln!("{name}: locked record kept while locked, vacuumed after");

    // 3. Recoveries bring nothing back.
    let mut gone = gone;
    gone.push(locked);
    must(&c, ctdb_ok(&c, 0, &["recover"]));
    must(
        &c,
        wait_nodes_ok(&c, &[0, 1, 2], &[0, 1, 2], Duration::from_secs(30)),
    );
    must(&c, files_hold(&c, &kept, &gone));
    for i in 0..NODES {
        must(&c, catdb_lacks(&c, i, &gone));
    }
    let pid = c.pid(2).expect("node 2 running");
    assert!(sys::send_signal(pid, sys::SIGKILL), "kill -9 {pid}");
    c.stop_node(2).expect("reap node 2");
    // The recovery after the death is done when the vnn map lost node 2
    // (a traverse started before it waits for node 2's end marker).
    let r = wait_for(
        "node 2 DISCONNECTED, recovered without it",
        Duration::from_secs(30),
        Duration::from_millis(300),
        || {
            let out = ctdb_ok(&c, 0, &["status"])?;
            let st = StatusSummary::parse(&out);
            let dead = st
                .nodes
                .iter()
                .any(|(p, _, s)| *p == 2 && s.contains("DISCONNECTED"));
            if dead && st.recovery_normal && out.contains("Size:2") {
                Ok(())
            } else {
                Err(out)
            }
        },
    );
    must(&c, r);
    for i in 0..2 {
        must(&c, catdb_lacks(&c, i, &gone));
        let keys = must(&c, file_keys(&c, i));
        if let Some(k) = gone.iter().find(|k| keys.contains(k)) {
            fail_with_logs(&c, &format!("{k} back in node {i}'s file after kill -9"));
        }
    }
    for k in &kept {
        let out = must(&c, ctdb_ok(&c, 0, &["readkey", DB, k]));
        if !out.contains(&format!("ptr:[v-{k}]")) {
            fail_with_logs(&c, &format!("{k} lost its value after recovery: {out}"));
        }
    }
    c.stop_all().expect("stop daemons");
    eprintln!("{name}: done in {:?}", t0.elapsed());
}
