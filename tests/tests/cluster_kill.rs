//! Must show (issue 5): kill -9 of a non-leader and then of the leader
//! under load. The rest recover (the survivors show each other OK and
//! agree on a leader within bounds), no committed persistent transaction
//! is lost, and each killed node rejoins after a restart and reaches OK.
//!
//! Load: on every node a loop of stock `ctdb ptrans` runs (one process per
//! transaction, as any client would), each transaction writing a new key
//! `k-<node>-<seq>` into a persistent database. A transaction counts as
//! committed when `ctdb ptrans` exited 0. A crash kills every process of
//! the node with SIGKILL at once (daemon, recovery daemon, event daemon,
//! lock helper, and the clients talking to it), as a power cut would. The
//! cluster runs with a cluster lock. At the end every node's copy of the
//! database (`ctdb cattdb`) must hold every committed key.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

use ctdb_tests::must_show::{
    cli, ctdb_ok, ctdbd_or_skip, dumped_keys, fail_with_logs, must, wait_agreed_leader, wait_for,
    wait_nodes_ok, Bounded, TestCluster,
};
use ctdb_tests::{procs, sys};

const NODES: usize = 3;
const ALL: [usize; 3] = [0, 1, 2];
const PNNS: [u32; 3] = [0, 1, 2];
const DB: &str = "must_show_kill.tdb";
/// How long the load runs between the steps.
const LOAD: Duration = Duration::from_secs(3);
/// How long survivors get to recover.
const RECOVER_LIMIT: Duration = Duration::from_secs(60);

/// Committed and failed transactions of one node's loop.
#[derive(Debug, Default)]
struct Tally {
    committed: Vec<String>,
    failed: u64,
    /// How the last failed `ctdb ptrans` ended (for messages).
    last_failure: String,
}

fn ptrans_loop(node: usize, env: Vec<(String, String)>, stop: &AtomicBool, tally: &Mutex<Tally>) {
    let mut seq = 0u64;
    while !stop.load(Ordering::SeqCst) {
        let key = format!("k-{node}-{seq}");
        seq += 1;
        let mut cmd = Command::new(cli());
        cmd.args(["-T", "10", "ptrans", DB])
            .env_remove("CTDB_TOOL_SETPGID")
            .envs(env.iter().cloned());
        let input = format!("\"{key}\" \"v{seq}\"\n");
        let (ok, why) = match Bounded::spawn(cmd, Duration::from_secs(30), Some(input.as_bytes())) {
            Ok(b) => {
                let r = b.finish();
                let why = format!(
                    "exit {}{}: {}{}",
                    r.code,
                    if r.overran { " (overran)" } else { "" },
                    r.stdout.trim(),
                    r.stderr.trim()
                );
                (r.ok(), why)
            }
            Err(e) => (false, e.to_string()),
        };
        if let Ok(mut t) = tally.lock() {
            if ok {
                t.committed.push(key);
            } else {
                t.failed += 1;
                t.last_failure = format!("ctdb ptrans on node {node}: {why}");
            }
        }
        if !ok {
            // The node is down or recovering: do not spin.
            thread::sleep(Duration::from_millis(200));
        }
    }
}

fn committed(tallies: &[Mutex<Tally>]) -> usize {
    tallies
        .iter()
        .map(|t| t.lock().map(|t| t.committed.len()).unwrap_or(0))
        .sum()
}

/// Every process of node `i` (daemon, helpers, clients of it) gets
/// SIGKILL at once; then the harness reaps the daemon by pid.
fn crash(c: &mut TestCluster, i: usize) -> Vec<u32> {
    let base: PathBuf = c.base(i).expect("base");
    let pids = procs::processes_under(&base);
    for &p in &pids {
        sys::send_signal(p, sys::SIGKILL);
    }
    c.stop_node(i).expect("reap the killed node");
    pids
}

fn survivors(of: usize) -> (Vec<usize>, Vec<u32>) {
    let n: Vec<usize> = ALL.iter().copied().filter(|&i| i != of).collect();
    let p = n.iter().map(|&i| i as u32).collect();
    (n, p)
}

/// Load goes on: more commits than `before` within `limit`.
fn progress(c: &TestCluster, tallies: &[Mutex<Tally>], before: usize, what: &str) -> usize {
    let r = wait_for(
        &format!("transactions committing {what}"),
        Duration::from_secs(30),
        Duration::from_millis(200),
        || {
            let now = committed(tallies);
            if now > before {
                Ok(now)
            } else {
                let why: Vec<String> = tallies
                    .iter()
                    .filter_map(|t| t.lock().ok().map(|t| t.last_failure.clone()))
                    .filter(|w| !w.is_empty())
                    .collect();
                Err(format!("{now} committed; last failures: {why:?}"))
            }
        },
    );
    must(c, r)
}

#[test]
fn killed_nodes_lose_no_committed_transaction_and_rejoin() {
    let name = "killed_nodes_lose_no_committed_transaction_and_rejoin";
    let Some(ctdbd) = ctdbd_or_skip(name) else {
        return;
    };
    let t0 = Instant::now();
    let mut c = TestCluster::start(NODES, &ctdbd, Duration::from_secs(60), |s| {
        s.cluster_lock = true;
    })
    .expect("cluster of 3 forms");
    must(&c, ctdb_ok(&c, 0, &["attach", DB, "persistent"]));
    let leader0 = must(
        &c,
        wait_agreed_leader(&c, &ALL, &PNNS, Duration::from_secs(30)),
    );
    eprintln!(
        "{name}: cluster OK, leader {leader0}, after {:?}",
        t0.elapsed()
    );

    let envs: Vec<Vec<(String, String)>> = ALL.iter().map(|&i| c.env(i).expect("env")).collect();
    let stop = AtomicBool::new(false);
    let tallies: Vec<Mutex<Tally>> = ALL.iter().map(|_| Mutex::new(Tally::default())).collect();
    let mut timings = Vec::new();
    thread::scope(|s| {
        for node in ALL {
            let (stop, tally, env) = (&stop, &tallies[node], envs[node].clone());
            s.spawn(move || ptrans_loop(node, env, stop, tally));
        }
        // Make sure `stop` is set however this block ends.
        struct StopOnDrop<'a>(&'a AtomicBool);
        impl Drop for StopOnDrop<'_> {
            fn drop(&mut self) {
                self.0.store(true, Ordering::SeqCst);
            }
        }
        let _stop = StopOnDrop(&stop);

        let n = progress(&c, &tallies, 0, "before any crash");
        thread::sleep(LOAD);

        // 1. kill -9 of a non-leader.
        let victim = (leader0 as usize + 1) % NODES;
        let (rest, rest_pnns) = survivors(victim);
        let killed = crash(&mut c, victim);
        let t_kill = Instant::now();
        eprintln!("{name}: killed non-leader {victim} (pids {killed:?}) with {n}+ commits");
        must(&c, wait_nodes_ok(&c, &rest, &rest_pnns, RECOVER_LIMIT));
        let l = must(&c, wait_agreed_leader(&c, &rest, &rest_pnns, RECOVER_LIMIT));
        timings.push(("survivors OK after non-leader kill", t_kill.elapsed()));
        let n = progress(
            &c,
            &tallies,
            committed(&tallies),
            "after the non-leader's crash",
        );
        thread::sleep(LOAD);
        c.start_node(victim).expect("restart the non-leader");
        let t_start = Instant::now();
        c.wait_all_ok(cli(), RECOVER_LIMIT)
            .unwrap_or_else(|e| fail_with_logs(&c, &format!("node {victim} rejoining: {e}")));
        timings.push(("restarted non-leader OK", t_start.elapsed()));
        eprintln!("{name}: node {victim} back, leader {l}, {n}+ commits");

        // 2. kill -9 of the leader.
        let leader1 = must(
            &c,
            wait_agreed_leader(&c, &ALL, &PNNS, Duration::from_secs(30)),
        );
        thread::sleep(LOAD);
        let (rest, rest_pnns) = survivors(leader1 as usize);
        let killed = crash(&mut c, leader1 as usize);
        let t_kill = Instant::now();
        eprintln!("{name}: killed leader {leader1} (pids {killed:?})");
        must(&c, wait_nodes_ok(&c, &rest, &rest_pnns, RECOVER_LIMIT));
        let leader2 = must(&c, wait_agreed_leader(&c, &rest, &rest_pnns, RECOVER_LIMIT));
        assert_ne!(leader2, leader1);
        timings.push((
            "survivors OK with a new leader after leader kill",
            t_kill.elapsed(),
        ));
        let n = progress(
            &c,
            &tallies,
            committed(&tallies),
            "after the leader's crash",
        );
        thread::sleep(LOAD);
        c.start_node(leader1 as usize)
            .expect("restart the old leader");
        let t_start = Instant::now();
        c.wait_all_ok(cli(), RECOVER_LIMIT)
            .unwrap_or_else(|e| fail_with_logs(&c, &format!("node {leader1} rejoining: {e}")));
        timings.push(("restarted old leader OK", t_start.elapsed()));
        eprintln!("{name}: node {leader1} back, leader {leader2}, {n}+ commits");
        stop.store(true, Ordering::SeqCst);
    });

    // Every committed key is in every node's copy.
    let mut all = BTreeSet::new();
    let mut failed = 0;
    for t in &tallies {
        let t = t.lock().expect("tally");
        all.extend(t.committed.iter().cloned());
        failed += t.failed;
    }
    let r = wait_for(
        "every committed key on every node",
        Duration::from_secs(30),
        Duration::from_millis(500),
        || {
            for i in ALL {
                let out = ctdb_ok(&c, i, &["cattdb", DB])?;
                let keys: BTreeSet<String> = dumped_keys(&out).into_iter().collect();
                let missing: Vec<&String> = all.difference(&keys).collect();
                if !missing.is_empty() {
                    return Err(format!(
                        "node {i} lacks {} committed keys, e.g. {:?}",
                        missing.len(),
                        &missing[..missing.len().min(5)]
                    ));
                }
            }
            Ok(())
        },
    );
    if let Err(e) = r {
        fail_with_logs(&c, &format!("LOST COMMITTED TRANSACTION: {e}"));
    }
    for (what, d) in &timings {
        eprintln!("{name}: {what}: {d:?}");
    }
    eprintln!(
        "{name}: {} committed transactions all present on every node ({failed} failed or in doubt)",
        all.len()
    );
    c.stop_all().expect("stop daemons");
    eprintln!("{name}: done in {:?}", t0.elapsed());
}
