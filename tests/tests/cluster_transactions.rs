//! Must show (issue 5): persistent transactions from clients on all nodes
//! serialise correctly (no lost increment).
//!
//! On one 3-node cluster:
//! 1. upstream's INTEGRATION database/transaction.002.loop: the
//!    `transaction_loop` program on every node at once on a persistent
//!    database; output sane, node 0 saw no counter go backwards (the
//!    program fails if it does), every node committed;
//! 2. two clients per node run persistent transactions (g_lock, then
//!    TRANS3_COMMIT, as `ctdb ptrans` does) at the same time, each adding
//!    one to a shared counter and to its own counter in the same
//!    transaction. Afterwards every node's copy, read with the stock CLI
//!    (`ctdb pfetch`), holds the shared counter = the number of
//!    transactions the clients saw committed, and each client's counter =
//!    its own commits; and the database sequence number went up by at
//!    least that many.

use std::sync::{Barrier, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use ctdb_perf::client::Client;
use ctdb_tests::must_show::{
    ctdb_ok, fail_with_logs, must, perf_on_all, sanity_check, TestCluster,
};

const NODES: usize = 3;
const CLIENTS_PER_NODE: usize = 2;
const PER_CLIENT: u64 = 40;
const DB: &str = "must_show_trans.tdb";
const SHARED_KEY: &[u8] = b"shared-counter";

fn own_key(node: usize, client: usize) -> Vec<u8> {
    format!("client-{node}-{client}").into_bytes()
}

fn counter(v: &[u8]) -> Result<u64, String> {
    if v.is_empty() {
        return Ok(0);
    }
    let s = String::from_utf8_lossy(v);
    s.parse()
        .map_err(|_| format!("record holds {s:?}, not a counter"))
}

#[test]
fn persistent_transactions_from_all_nodes_serialise() {
    let name = "persistent_transactions_from_all_nodes_serialise";
    let (c, t0) = TestCluster::start_for(name, NODES);

    // 1. Upstream's transaction.002.loop.
    let loopdb = "persistent_trans.tdb";
    must(&c, ctdb_ok(&c, 0, &["attach", loopdb, "persistent"]));
    // A fresh cluster: the database starts empty (upstream wipes it first).
    let n = NODES.to_string();
    let runs = perf_on_all(
        &c,
        "transaction_loop",
        &[
            "-n",
            &n,
            "-t",
            "5",
            "-D",
            loopdb,
            "-T",
            "persistent",
            "-k",
            "testkey",
        ],
        Duration::from_secs(60),
    )
    .expect("run transaction_loop");
    must(&c, sanity_check(&runs, |l| l.starts_with("Transaction[")));
    let mut max = [0u64; NODES];
    for r in &runs {
        let last = r.stdout.lines().last().unwrap_or("");
        let counts: Vec<u64> = last
            .split("]: ")
            .nth(1)
            .unwrap_or("")
            .split_whitespace()
            .filter_map(|w| w.parse().ok())
            .collect();
        if counts.len() != NODES {
            fail_with_logs(&c, &format!("transaction_loop line {last:?}"));
        }
        for (m, v) in max.iter_mut().zip(counts) {
            *m = (*m).max(v);
        }
        eprintln!("{name}: {last}");
    }
    if max.contains(&0) {
        fail_with_logs(&c, &format!("a node never committed: {max:?}"));
    }

    // 2. Concurrent increments of one shared counter.
    must(&c, ctdb_ok(&c, 0, &["attach", DB, "persistent"]));
    let seq_before = seqnum(&c, 0);
    let start = Barrier::new(NODES * CLIENTS_PER_NODE);
    let commits = Mutex::new(Vec::<(usize, usize, u64)>::new());
    let errors = Mutex::new(Vec::<String>::new());
    let t_tx = Instant::now();
    let deadline = t_tx + Duration::from_secs(60);
    thread::scope(|s| {
        for node in 0..NODES {
            for client in 0..CLIENTS_PER_NODE {
                let (start, commits, errors, c) = (&start, &commits, &errors, &c);
                s.spawn(move || {
                    let setup = (|| {
                        let mut cl = Client::connect(&c.socket(node).expect("socket"))?;
                        cl.set_timeout(Duration::from_secs(30));
                        let db = cl.attach(DB, true)?;
                        let g = cl.attach("g_lock.tdb", false)?;
                        Ok::<_, ctdb_perf::error::PerfError>((cl, db, g))
                    })();
                    start.wait();
                    let mine = own_key(node, client);
                    let mut done = 0u64;
                    let r = setup
                        .map_err(|e| e.to_string())
                        .and_then(|(mut cl, mut db, mut g)| {
                            while done < PER_CLIENT && Instant::now() < deadline {
                                let mut bad = None;
                                cl.transaction(&mut db, &mut g, &[SHARED_KEY, &mine], |k, old| {
                                    match counter(old) {
                                        Ok(v) => {
                                            // Our own counter is only ever
                                            // written by us: it must show
                                            // exactly our commits so far.
                                            if k != SHARED_KEY && v != done {
                                                bad = Some(format!(
                                                    "own counter reads {v}, {done} committed"
                                                ));
                                            }
                                            (v + 1).to_string().into_bytes()
                                        }
                                        Err(e) => {
                                            bad = Some(e);
                                            old.to_vec()
                                        }
                                    }
                                })
                                .map_err(|e| format!("transaction {done}: {e}"))?;
                                if let Some(b) = bad {
                                    return Err(b);
                                }
                                done += 1;
                            }
                            Ok(())
                        });
                    if let Ok(mut v) = commits.lock() {
                        v.push((node, client, done));
                    }
                    if let Err(e) = r {
                        if let Ok(mut v) = errors.lock() {
                            v.push(format!("client {client} on node {node}: {e}"));
                        }
                    }
                });
            }
        }
    });
    let errors = errors.into_inner().unwrap_or_default();
    if !errors.is_empty() {
        fail_with_logs(&c, &errors.join("\n"));
    }
    let commits = commits.into_inner().unwrap_or_default();
    let total: u64 = commits.iter().map(|x| x.2).sum();
    eprintln!(
        "{name}: {total} transactions from {} clients in {:?}",
        commits.len(),
        t_tx.elapsed()
    );
    assert!(total > 0);

    // Every node's copy holds exactly the committed increments.
    for i in 0..NODES {
        let shared = must(&c, ctdb_ok(&c, i, &["pfetch", DB, "shared-counter"]));
        if shared.trim() != total.to_string() {
            fail_with_logs(
                &c,
                &format!(
                    "LOST INCREMENT: node {i} holds shared-counter {:?}, {total} commits",
                    shared.trim()
                ),
            );
        }
        for &(node, client, done) in &commits {
            let k = format!("client-{node}-{client}");
            let v = must(&c, ctdb_ok(&c, i, &["pfetch", DB, &k]));
            if v.trim() != done.to_string() {
                fail_with_logs(
                    &c,
                    &format!("node {i} holds {k} = {:?}, {done} commits", v.trim()),
                );
            }
        }
        let seq = seqnum(&c, i);
        if seq < seq_before + total {
            fail_with_logs(
                &c,
                &format!("node {i}: sequence number {seq_before} -> {seq} for {total} commits"),
            );
        }
    }
    eprintln!("{name}: every node holds shared-counter = {total} and every client's count");
    let mut c = c;
    c.stop_all().expect("stop daemons");
    eprintln!("{name}: done in {:?}", t0.elapsed());
}

/// `ctdb getdbseqnum` of the test database on node `i` (0 before any
/// commit).
fn seqnum(c: &TestCluster, i: usize) -> u64 {
    let out = must(c, ctdb_ok(c, i, &["getdbseqnum", DB]));
    // "Sequence number: 0x..." or a decimal, depending on the version.
    let w = out.split_whitespace().last().unwrap_or("0");
    match w.strip_prefix("0x") {
        Some(h) => u64::from_str_radix(h, 16).unwrap_or(0),
        None => w.parse().unwrap_or(0),
    }
}
