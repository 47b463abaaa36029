//! A record migration that finds the record locked waits for the lock, not
//! for a timer (upstream's lock helper; ours: `daemon/src/lockwait.rs`).
//!
//! Two nodes. Node 1 is the record's dmaster and a client there holds the
//! record's chain lock in node 1's local file, as smbd does while it works
//! on a share-mode entry. A client on node 0 fetch-locks the same record,
//! so node 1's daemon has to migrate it away and finds the chain busy. The
//! migration must not complete while the lock is held (1.5 s), must
//! complete after it is released, and node 1 must count the wait as
//! upstream's lock helper does: one lock wait (`locks` / `num_calls` in
//! `ctdb dbstatistics` and daemon-wide in `ctdb statistics`) whose latency
//! (`locks_latency`) is the time the lock was held, not hundreds of busy
//! attempts of 0 s each as a daemon that polls the lock on a timer counts.
//! Passes against Samba's ctdbd too (CTDB_TEST_CTDBD=/usr/sbin/ctdbd).

use std::sync::mpsc;
use std::time::{Duration, Instant};

use ctdb_perf::client::Client;
use ctdb_tests::must_show::{ctdb_ok, fail_with_logs, latency_stat, must, statistic, TestCluster};

const DB: &str = "lock_wait.tdb";
const KEY: &[u8] = b"held-record";
const HOLD: Duration = Duration::from_millis(1500);
/// Busy attempts node 1 may count: the first try, and a few more if the
/// waiter's wake-up races with a client taking the lock again.
const MAX_BUSY: u64 = 5;

fn connect(c: &TestCluster, node: usize) -> Client {
    let sock = must(c, c.socket(node).map_err(|e| e.to_string()));
    let mut cl = must(
        c,
        Client::connect(&sock).map_err(|e| format!("node {node}: {e}")),
    );
    cl.set_timeout(Duration::from_secs(30));
    cl
}

#[test]
fn migration_of_a_locked_record_waits_for_the_lock() {
    let name = "migration_of_a_locked_record_waits_for_the_lock";
    let (c, t0) = TestCluster::start_for(name, 2);

    // The record lives on node 1.
    let mut cl1 = connect(&c, 1);
    let mut db1 = must(&c, cl1.attach(DB, false).map_err(|e| e.to_string()));
    let (rec, _) = must(&c, cl1.fetch_lock(&mut db1, KEY).map_err(|e| e.to_string()));
    must(
        &c,
        db1.store_locked(KEY, &rec.header, b"one")
            .map_err(|e| e.to_string()),
    );
    must(&c, db1.unlock(KEY).map_err(|e| e.to_string()));
    must(&c, ctdb_ok(&c, 1, &["statisticsreset"]));
    let before = must(&c, ctdb_ok(&c, 1, &["dbstatistics", DB]));
    let busy_before = statistic(&before, "locks", "num_calls").unwrap_or_else(|| {
        fail_with_logs(
            &c,
            &format!("no locks/num_calls in dbstatistics:\n{before}"),
        )
    });

    // Hold its chain lock on node 1 (dmaster here: no call to the daemon).
    let (held, calls) = must(&c, cl1.fetch_lock(&mut db1, KEY).map_err(|e| e.to_string()));
    assert_eq!(calls, 0, "{name}: node 1 is not the record's dmaster");
    assert_eq!(held.data, b"one");

    // Node 0 wants the record.
    let sock0 = must(&c, c.socket(0).map_err(|e| e.to_string()));
    let (tx, rx) = mpsc::channel();
    let worker = std::thread::spawn(move || {
        let r = (|| -> Result<Vec<u8>, String> {
            let mut cl0 = Client::connect(&sock0).map_err(|e| format!("node 0: {e}"))?;
            cl0.set_timeout(Duration::from_secs(30));
            let mut db0 = cl0.attach(DB, false).map_err(|e| e.to_string())?;
            let (rec, _) = cl0.fetch_lock(&mut db0, KEY).map_err(|e| e.to_string())?;
            let got = rec.data.clone();
            db0.store_locked(KEY, &rec.header, b"two")
                .map_err(|e| e.to_string())?;
            db0.unlock(KEY).map_err(|e| e.to_string())?;
            Ok(got)
        })();
        let _ = tx.send((Instant::now(), r));
    });

    std::thread::sleep(HOLD);
    if let Ok((_, r)) = rx.try_recv() {
        fail_with_logs(
            &c,
            &format!("{name}: node 0 got the record while node 1 held its lock: {r:?}"),
        );
    }
    let released = Instant::now();
    must(&c, db1.unlock(KEY).map_err(|e| e.to_string()));
    let (done, r) = rx
        .recv_timeout(Duration::from_secs(60))
        .unwrap_or_else(|_| fail_with_logs(&c, &format!("{name}: node 0 never got the record")));
    let _ = worker.join();
    let got = must(&c, r);
    assert_eq!(got, b"one", "{name}: node 0 read {got:?}");

    let after = must(&c, ctdb_ok(&c, 1, &["dbstatistics", DB]));
    let busy = statistic(&after, "locks", "num_calls").unwrap_or(0) - busy_before;
    eprintln!(
        "{name}: migrated {:?} after the release, node 1 found the lock busy {busy} time(s) \
         while it was held for {HOLD:?} (total {:?})",
        done.saturating_duration_since(released),
        t0.elapsed()
    );
    if busy == 0 || busy > MAX_BUSY {
        fail_with_logs(
            &c,
            &format!(
                "{name}: node 1 found the lock busy {busy} times (expected 1..={MAX_BUSY}: \
                 a wait for the lock, not polling):\n{after}"
            ),
        );
    }
    // The wait's latency is the time the lock was held (it started before
    // the sleep, ended after the release), per database and daemon-wide.
    let held_for = HOLD.as_secs_f64() * 0.9;
    let db_latency = latency_stat(&after, "locks_latency");
    if !db_latency.is_some_and(|(_, _, max, n)| n >= 1 && max >= held_for) {
        fail_with_logs(
            &c,
            &format!("{name}: dbstatistics shows no lock wait of {held_for} s:\n{after}"),
        );
    }
    let stats = must(&c, ctdb_ok(&c, 1, &["statistics"]));
    let calls = statistic(&stats, "locks", "num_calls").unwrap_or(0);
    let latency = latency_stat(&stats, "locks_latency");
    let counted = latency.is_some_and(|(_, _, max, n)| n >= 1 && max >= held_for);
    if calls == 0 || calls > MAX_BUSY || !counted {
        fail_with_logs(
            &c,
            &format!("{name}: ctdb statistics does not show the lock wait:\n{stats}"),
        );
    }
    // And node 1 now reads node 0's value through the cluster.
    let (rec, _) = must(&c, cl1.fetch_lock(&mut db1, KEY).map_err(|e| e.to_string()));
    must(&c, db1.unlock(KEY).map_err(|e| e.to_string()));
    assert_eq!(rec.data, b"two", "{name}: node 1 reads {:?}", rec.data);
}
