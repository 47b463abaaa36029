//! Record migration end to end: three of our `ctdbd` on loopback
//! addresses (data cores as configured by default), driven by the stock
//! `ctdb` tool and the `fetch_ring` / `fetch_loop` test programs.
//!
//! * `ctdb writekey` on one node, `ctdb readkey` on the next: the value
//!   follows the record, the reader becomes its dmaster (its own header
//!   and the lmaster's say so) and the rsn grows with every migration;
//! * `fetch_ring` on every node at once (upstream's database/fetch.001):
//!   every copy reports a rate, and the statistics show the REQ_DMASTER /
//!   REPLY_DMASTER traffic and hop counts;
//! * `fetch_loop` on every node at once: all nodes fight for one record
//!   and every one of them makes progress, and the record is still served
//!   afterwards.
//!
//! The test programs come from ctdb-perf (`cargo build -p ctdb-perf
//! --bins`, or `CTDB_TEST_PERF_BINS`); without them those parts are
//! skipped with a message (the stock-tool part still runs). Bounded well
//! under a minute.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use ctdb_tests::must_show::{
    ctdb_ok, fail_with_logs, hop_count_total, must, number_between, perf_bin, perf_on_all,
    statistic, TestCluster,
};

const NODES: usize = 3;
const DB: &str = "cluster_migrate.tdb";

/// The lmaster of `key`: the vnn map of `ctdb status` indexed by the
/// jenkins hash of the key.
fn lmaster(c: &TestCluster, key: &str) -> usize {
    let status = must(c, ctdb_ok(c, 0, &["status"]));
    let map: Vec<usize> = status
        .lines()
        .filter_map(|l| l.strip_prefix("hash:"))
        .filter_map(|l| l.split("lmaster:").nth(1))
        .filter_map(|v| v.trim().parse().ok())
        .collect();
    if map.len() != NODES {
        fail_with_logs(c, &format!("vnn map of {NODES} nodes expected:\n{status}"));
    }
    map[ctdb_engine::hash::jenkins_hash(key.as_bytes()) as usize % map.len()]
}

/// (dmaster, rsn) of `key` in node `i`'s copy (`ctdb cattdb`).
fn header(c: &TestCluster, i: usize, key: &str) -> Option<(usize, u64)> {
    let out = must(c, ctdb_ok(c, i, &["cattdb", DB]));
    let mut lines = out.lines();
    let want = format!("= \"{key}\"");
    while let Some(l) = lines.next() {
        if l.starts_with("key(") && l.ends_with(&want) {
            let dm = lines
                .next()?
                .strip_prefix("dmaster: ")?
                .trim()
                .parse()
                .ok()?;
            let rsn = lines.next()?.strip_prefix("rsn: ")?.trim().parse().ok()?;
            return Some((dm, rsn));
        }
    }
    None
}

/// Sum over the nodes of REQ_DMASTER + REPLY_DMASTER received and of the
/// hop-count buckets.
fn migration_stats(c: &TestCluster) -> (u64, u64) {
    let (mut dm, mut hops) = (0, 0);
    for i in 0..NODES {
        let text = must(c, ctdb_ok(c, i, &["statistics"]));
        dm += statistic(&text, "node", "req_dmaster").unwrap_or(0)
            + statistic(&text, "node", "reply_dmaster").unwrap_or(0);
        hops += hop_count_total(&text);
    }
    (dm, hops)
}

#[test]
fn records_migrate_between_our_nodes() {
    let started = Instant::now();
    let ctdbd = PathBuf::from(env!("CARGO_BIN_EXE_ctdbd"));
    let c = TestCluster::start(NODES, &ctdbd, Duration::from_secs(40), |_| {})
        .expect("a cluster of three of our ctdbd forms");
    for i in 0..NODES {
        must(&c, ctdb_ok(&c, i, &["attach", DB]));
    }

    // The stock tool: write on one node, read (and so migrate) on the next.
    let key = "migrating-key";
    let lm = lmaster(&c, key);
    let mut last_rsn = 0;
    for round in 0..2 {
        for i in 0..NODES {
            let value = format!("value-{round}-{i}");
            must(&c, ctdb_ok(&c, i, &["writekey", DB, key, &value]));
            let next = (i + 1) % NODES;
            let out = must(&c, ctdb_ok(&c, next, &["readkey", DB, key]));
            if !out.contains(&format!("ptr:[{value}]")) {
                fail_with_logs(&c, &format!("node {next} read {out:?}, not {value}"));
            }
            let Some((dm, rsn)) = header(&c, next, key) else {
                fail_with_logs(&c, &format!("node {next} has no copy of {key}"));
            };
            if dm != next || rsn <= last_rsn {
                fail_with_logs(
                    &c,
                    &format!(
                        "after readkey on node {next}: dmaster {dm}, rsn {rsn} (before {last_rsn})"
                    ),
                );
            }
            last_rsn = rsn;
            match header(&c, lm, key) {
                Some((d, _)) if d == next => {}
                other => fail_with_logs(
                    &c,
                    &format!("lmaster {lm} records {other:?} for {key}, reader was {next}"),
                ),
            }
        }
    }
    let (dm, hops) = migration_stats(&c);
    if dm < 6 || hops < 6 {
        fail_with_logs(
            &c,
            &format!("6 migrations should show: dmaster packets {dm}, hops {hops}"),
        );
    }

    // fetch_ring on every node.
    match perf_bin("fetch_ring") {
        Err(e) => eprintln!("records_migrate_between_our_nodes: fetch_ring skipped: {e}"),
        Ok(_) => {
            let runs = perf_on_all(
                &c,
                "fetch_ring",
                &[
                    "-n",
                    "3",
                    "-t",
                    "4",
                    "-D",
                    "fetch_ring.tdb",
                    "-k",
                    "testkey",
                ],
                Duration::from_secs(30),
            )
            .expect("run fetch_ring");
            let mut rates = Vec::new();
            for (i, r) in runs.iter().enumerate() {
                let rate = r
                    .stdout
                    .lines()
                    .find_map(|l| number_between(l, &format!("Fetch[{i}]: "), " msgs/sec"));
                match rate {
                    Some(rate) if r.ok() && rate >= 10.0 => rates.push(rate),
                    _ => fail_with_logs(
                        &c,
                        &format!(
                            "fetch_ring on node {i}: exit {} {}\n{}",
                            r.code, r.stdout, r.stderr
                        ),
                    ),
                }
            }
            eprintln!("fetch_ring rates (msgs/sec per node): {rates:?}");
            let (dm2, hops2) = migration_stats(&c);
            if dm2 < dm + 40 || hops2 <= hops {
                fail_with_logs(
                    &c,
                    &format!("fetch_ring migrations missing from statistics: {dm} -> {dm2}, hops {hops} -> {hops2}"),
                );
            }
        }
    }

    // fetch_loop: all nodes contend for one record.
    match perf_bin("fetch_loop") {
        Err(e) => eprintln!("records_migrate_between_our_nodes: fetch_loop skipped: {e}"),
        Ok(_) => {
            let runs = perf_on_all(
                &c,
                "fetch_loop",
                &["-n", "3", "-t", "4"],
                Duration::from_secs(30),
            )
            .expect("run fetch_loop");
            for (i, r) in runs.iter().enumerate() {
                let locks = r
                    .stdout
                    .rsplit(['\r', '\n'])
                    .find_map(|l| l.trim().strip_prefix("Locks:"))
                    .and_then(|v| v.parse::<u64>().ok());
                if !r.ok() || locks.is_none_or(|n| n == 0) {
                    fail_with_logs(
                        &c,
                        &format!(
                            "fetch_loop on node {i}: exit {} {:?}\n{}",
                            r.code, r.stdout, r.stderr
                        ),
                    );
                }
            }
            // The record still moves afterwards.
            for i in 0..NODES {
                let out = must(
                    &c,
                    ctdb_ok(&c, i, &["readkey", "fetch_loop.tdb", "testkey"]),
                );
                if !out.contains("size:4") {
                    fail_with_logs(&c, &format!("fetch_loop's counter on node {i}: {out:?}"));
                }
            }
        }
    }
    eprintln!(
        "records_migrate_between_our_nodes: {:.1} s",
        started.elapsed().as_secs_f64()
    );
}
