//! Must show (issue 5): fetch-ring. Clients on every node take the same
//! keys in turn; each key's value ends as the sum of all increments (no
//! lost update), and the migrations show in `ctdb statistics`.
//!
//! Three parts on one 3-node cluster:
//! 1. upstream's INTEGRATION database/fetch.001.ring: the `fetch_ring`
//!    test program on every node at once, its output sane and >= 10
//!    msgs/sec on every node;
//! 2. a counting ring: one client per node passes a token round the nodes
//!    (messages to a private srvid); the holder fetch-locks key
//!    `hop % KEYS` (migrating it from the node that last wrote it), adds
//!    one to the decimal counter stored in it and passes the token on;
//! 3. contention: two clients per node fetch-lock-increment random keys of
//!    the same set at the same time, for a bounded number of increments.
//!
//! Every increment a client made is counted by that client; at the end the
//! stock CLI reads each key from every node (`ctdb readkey`, which
//! migrates the record there) and the cluster-wide `ctdb catdb`; each must
//! show exactly the total. The statistics of all nodes must show
//! REQ_DMASTER/REPLY_DMASTER traffic at least as large as the migrations
//! the ring's clients made, and non-empty hop-count buckets.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Barrier, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use ctdb_perf::client::{Client, Db};
use ctdb_tests::must_show::{
    ctdb_ok, fail_with_logs, hop_count_total, latency_stat, must, number_between, perf_on_all,
    sanity_check, statistic, TestCluster,
};

const NODES: usize = 3;
const KEYS: usize = 4;
const DB: &str = "must_show_ring.tdb";
const RING_SRVID: u64 = 0x4d53_5f52_494e_4701; // private, outside ctdb's ranges
const RING_HOPS: u64 = 300;
const PER_CLIENT: u64 = 400;
const CLIENTS_PER_NODE: usize = 2;

fn key(k: usize) -> Vec<u8> {
    format!("ring-key-{k}").into_bytes()
}

/// Fetch-lock `key`, add one to its decimal value, store, unlock; returns
/// the migrations it took.
fn increment(c: &mut Client, db: &mut Db, key: &[u8]) -> Result<u32, String> {
    let (rec, m) = c
        .fetch_lock(db, key)
        .map_err(|e| format!("fetch_lock: {e}"))?;
    let text = String::from_utf8_lossy(&rec.data).into_owned();
    let v: u64 = if text.is_empty() {
        0
    } else {
        match text.parse() {
            Ok(v) => v,
            Err(_) => {
                let _ = db.unlock(key);
                return Err(format!("record holds {text:?}, not a counter"));
            }
        }
    };
    let r = db.store_locked(key, &rec.header, (v + 1).to_string().as_bytes());
    db.unlock(key).map_err(|e| format!("unlock: {e}"))?;
    r.map_err(|e| format!("store: {e}"))?;
    Ok(m)
}

/// Sum over all nodes of REQ_DMASTER + REPLY_DMASTER received, and of the
/// hop-count buckets.
fn migration_stats(c: &TestCluster) -> (u64, u64) {
    let mut dm = 0;
    let mut hops = 0;
    for i in 0..NODES {
        let text = must(c, ctdb_ok(c, i, &["statistics"]));
        dm += statistic(&text, "node", "req_dmaster").unwrap_or(0)
            + statistic(&text, "node", "reply_dmaster").unwrap_or(0);
        hops += hop_count_total(&text);
    }
    (dm, hops)
}

/// The counting ring: returns (increments per key, migrations counted by
/// the clients).
fn counting_ring(c: &TestCluster) -> Result<([u64; KEYS], u64), String> {
    let ready = Barrier::new(NODES);
    let done = AtomicBool::new(false);
    let counts = Mutex::new([0u64; KEYS]);
    let migrations = Mutex::new(0u64);
    let errors = Mutex::new(Vec::<String>::new());
    let deadline = Instant::now() + Duration::from_secs(40);
    thread::scope(|s| {
        for node in 0..NODES {
            let (ready, done, counts, migrations, errors) =
                (&ready, &done, &counts, &migrations, &errors);
            let sock = c.socket(node).expect("socket");
            s.spawn(move || {
                let setup = (|| -> Result<(Client, Db), String> {
                    let mut cl = Client::connect(&sock).map_err(|e| e.to_string())?;
                    cl.set_timeout(Duration::from_secs(20));
                    cl.register_srvid(RING_SRVID).map_err(|e| e.to_string())?;
                    let db = cl.attach(DB, false).map_err(|e| e.to_string())?;
                    Ok((cl, db))
                })();
                ready.wait();
                let run = |(mut cl, mut db): (Client, Db)| -> Result<(), String> {
                    let next = ((node + 1) % NODES) as u32;
                    let mut mine = [0u64; KEYS];
                    let mut mig = 0u64;
                    let mut hop_on = |cl: &mut Client, db: &mut Db, hop: u64| {
                        let k = (hop % KEYS as u64) as usize;
                        let m = increment(cl, db, &key(k))?;
                        mine[k] += 1;
                        mig += u64::from(m);
                        let next_hop = hop + 1;
                        if next_hop >= RING_HOPS {
                            done.store(true, Ordering::SeqCst);
                            for n in 0..NODES as u32 {
                                if n != node as u32 {
                                    cl.send_message(n, RING_SRVID, &u64::MAX.to_le_bytes())
                                        .map_err(|e| e.to_string())?;
                                }
                            }
                            return Ok::<bool, String>(true);
                        }
                        cl.send_message(next, RING_SRVID, &next_hop.to_le_bytes())
                            .map_err(|e| e.to_string())?;
                        Ok(false)
                    };
                    let mut finished = false;
                    if node == 0 {
                        finished = hop_on(&mut cl, &mut db, 0)?;
                    }
                    while !finished {
                        let msg = cl.recv_message(deadline).map_err(|e| e.to_string())?;
                        let Some((srvid, data)) = msg else {
                            return Err(format!("node {node}: ring stalled (deadline)"));
                        };
                        if srvid != RING_SRVID {
                            continue;
                        }
                        let hop = <[u8; 8]>::try_from(data.as_slice())
                            .map(u64::from_le_bytes)
                            .map_err(|_| format!("bad token {data:?}"))?;
                        if hop == u64::MAX {
                            break;
                        }
                        finished = hop_on(&mut cl, &mut db, hop)?;
                    }
                    if let Ok(mut t) = counts.lock() {
                        for k in 0..KEYS {
                            t[k] += mine[k];
                        }
                    }
                    if let Ok(mut t) = migrations.lock() {
                        *t += mig;
                    }
                    Ok(())
                };
                if let Err(e) = setup.and_then(run) {
                    done.store(true, Ordering::SeqCst);
                    if let Ok(mut v) = errors.lock() {
                        v.push(format!("ring client on node {node}: {e}"));
                    }
                }
            });
        }
    });
    let errors = errors.into_inner().unwrap_or_default();
    if !errors.is_empty() {
        return Err(errors.join("\n"));
    }
    Ok((
        counts.into_inner().unwrap_or_default(),
        migrations.into_inner().unwrap_or_default(),
    ))
}

/// Contention: `CLIENTS_PER_NODE` clients per node, started together, each
/// up to `PER_CLIENT` increments on pseudo-random keys. Returns the
/// increments per key and the migrations the clients needed.
fn contention(c: &TestCluster) -> Result<([u64; KEYS], u64), String> {
    let start = Barrier::new(NODES * CLIENTS_PER_NODE);
    let migrations = Mutex::new(0u64);
    let counts = Mutex::new([0u64; KEYS]);
    let errors = Mutex::new(Vec::<String>::new());
    let deadline = Instant::now() + Duration::from_secs(40);
    thread::scope(|s| {
        for node in 0..NODES {
            for client in 0..CLIENTS_PER_NODE {
                let (counts, errors, start, migrations) = (&counts, &errors, &start, &migrations);
                let sock = c.socket(node).expect("socket");
                s.spawn(move || {
                    let mut mine = [0u64; KEYS];
                    let mut mig = 0u64;
                    let setup = (|| -> Result<(Client, Db), String> {
                        let mut cl = Client::connect(&sock).map_err(|e| e.to_string())?;
                        cl.set_timeout(Duration::from_secs(20));
                        let db = cl.attach(DB, false).map_err(|e| e.to_string())?;
                        Ok((cl, db))
                    })();
                    start.wait();
                    let r = setup.and_then(|(mut cl, mut db)| {
                        // xorshift, seeded per client: the order differs
                        // between clients, so they collide on keys.
                        let mut x = 0x9e37_79b9_7f4a_7c15u64 ^ (node * 31 + client + 1) as u64;
                        for _ in 0..PER_CLIENT {
                            if Instant::now() >= deadline {
                                break;
                            }
                            x ^= x << 13;
                            x ^= x >> 7;
                            x ^= x << 17;
                            let k = (x % KEYS as u64) as usize;
                            mig += u64::from(increment(&mut cl, &mut db, &key(k))?);
                            mine[k] += 1;
                            // Give the other nodes' clients a chance to
                            // take the record away between increments.
                            thread::sleep(Duration::from_micros(300));
                        }
                        Ok(())
                    });
                    if let Ok(mut t) = migrations.lock() {
                        *t += mig;
                    }
                    // Increments made before an error still count: they
                    // were stored.
                    if let Ok(mut t) = counts.lock() {
                        for k in 0..KEYS {
                            t[k] += mine[k];
                        }
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
        return Err(errors.join("\n"));
    }
    Ok((
        counts.into_inner().unwrap_or_default(),
        migrations.into_inner().unwrap_or_default(),
    ))
}

/// The value `ctdb readkey` prints: `Data: size:N ptr:[VALUE]`.
fn readkey_value(out: &str) -> Option<String> {
    let rest = out.split("ptr:[").nth(1)?;
    Some(rest[..rest.rfind(']')?].to_string())
}

#[test]
fn fetch_ring_loses_no_update_and_counts_migrations() {
    let name = "fetch_ring_loses_no_update_and_counts_migrations";
    let (c, t0) = TestCluster::start_for(name, NODES);
    let mut c = fetch_ring(name, c);
    c.stop_all().expect("stop daemons");
    eprintln!("{name}: done in {:?}", t0.elapsed());
}

/// Issue 5's "each data core talks to its peers without going through
/// another core": the same test on daemons with two data cores each
/// (`--cores=3`, unpinned in test mode). Then, from each daemon's own
/// account at shutdown, every data core of every node sent call packets
/// on its own connections to the other nodes, next to none went through
/// the control core, and what the data cores received came on connections
/// they read themselves (next to none handed over by another core).
#[test]
fn fetch_ring_on_data_cores_with_their_own_lanes() {
    let name = "fetch_ring_on_data_cores_with_their_own_lanes";
    let Some((c, t0)) = TestCluster::start_with_data_cores(name, NODES) else {
        return;
    };
    let mut c = fetch_ring(name, c);
    c.stop_all().expect("stop daemons");
    for i in 0..NODES {
        let log = std::fs::read_to_string(c.log(i).expect("log path")).unwrap_or_default();
        let mut lanes = 0u64;
        let mut forwarded = 0u64;
        let mut received = 0u64;
        let mut handed = 0u64;
        for core in 1..=2 {
            let prefix = format!("core {core} transport: ");
            let Some(line) = log.lines().rev().find(|l| l.contains(&prefix)) else {
                panic!(
                    "{name}: node {i} logged no transport account of data core {core}:\n{}",
                    c.log_tail(i, 40)
                );
            };
            let sent = number_between(line, &prefix, " packets sent on its own lanes")
                .unwrap_or(0.0) as u64;
            let via =
                number_between(line, "lanes, ", " through the control core").unwrap_or(0.0) as u64;
            eprintln!(
                "{name}: node {i}: {}",
                line.split("ctdbd").last().unwrap_or(line)
            );
            assert!(
                sent > 0,
                "{name}: node {i} data core {core} sent nothing itself: {line}"
            );
            lanes += sent;
            forwarded += via;
            received += number_between(line, "control core, ", " received").unwrap_or(0.0) as u64;
            handed += number_between(line, "received, ", " of them handed").unwrap_or(0.0) as u64;
        }
        assert!(
            forwarded * 10 <= lanes,
            "{name}: node {i}: {forwarded} packets went through the control core, {lanes} on lanes"
        );
        assert!(
            received > 0 && handed * 10 <= received,
            "{name}: node {i}: data cores read {received} packets, handed {handed} to other cores"
        );
    }
    eprintln!("{name}: done in {:?}", t0.elapsed());
}

/// Upstream's fetch_ring, the counting ring and contention on one running
/// cluster; every key's total checked from every node.
fn fetch_ring(name: &str, c: TestCluster) -> TestCluster {
    // 1. Upstream's fetch.001.ring with the fetch_ring program.
    let n = NODES.to_string();
    let runs = perf_on_all(
        &c,
        "fetch_ring",
        &["-n", &n, "-D", "fetch_ring.tdb", "-k", "testkey", "-t", "4"],
        Duration::from_secs(60),
    )
    .expect("run fetch_ring");
    let r = sanity_check(&runs, |l| {
        l.starts_with("Fetch[") && l.ends_with(" msgs/sec") && l.contains("]: ")
    });
    must(&c, r);
    for (i, r) in runs.iter().enumerate() {
        let last = r.stdout.lines().last().unwrap_or("");
        let mps = number_between(last, "]: ", " msgs/sec").unwrap_or(0.0);
        if mps < 10.0 {
            fail_with_logs(
                &c,
                &format!("fetch_ring on node {i}: {last:?} < 10 msgs/sec"),
            );
        }
        eprintln!("{name}: fetch_ring node {i}: {last}");
    }

    // 2. The counting ring.
    must(&c, ctdb_ok(&c, 0, &["attach", DB]));
    let (dm0, hops0) = migration_stats(&c);
    let t_ring = Instant::now();
    let (ring_counts, ring_migrations) = must(&c, counting_ring(&c));
    let (dm1, hops1) = migration_stats(&c);
    let ring_total: u64 = ring_counts.iter().sum();
    eprintln!(
        "{name}: ring: {ring_total} hops in {:?}, {ring_migrations} migrations by the clients, \
         REQ/REPLY_DMASTER +{}, hop-count buckets +{}",
        t_ring.elapsed(),
        dm1 - dm0,
        hops1.saturating_sub(hops0)
    );
    assert_eq!(ring_total, RING_HOPS);
    if ring_migrations < RING_HOPS / 2 {
        fail_with_logs(
            &c,
            &format!("only {ring_migrations} migrations in {RING_HOPS} ring hops"),
        );
    }
    if dm1 - dm0 < ring_migrations || hops1 <= hops0 {
        fail_with_logs(
            &c,
            &format!(
                "statistics do not show the migrations: REQ/REPLY_DMASTER {dm0} -> {dm1}, \
                 hop buckets {hops0} -> {hops1}, clients migrated {ring_migrations} times"
            ),
        );
    }

    // The clients' calls were timed where they were answered (upstream's
    // call_latency: REQ_CALL in, reply out), and the daemon reports the
    // memory it holds.
    let mut timed = 0;
    for i in 0..NODES {
        let text = must(&c, ctdb_ok(&c, i, &["statistics"]));
        let Some((min, avg, max, n)) = latency_stat(&text, "call_latency") else {
            fail_with_logs(&c, &format!("node {i}: no call_latency line in:\n{text}"));
        };
        if n > 0 && !(0.0 < max && min <= avg && avg <= max && max < 60.0) {
            fail_with_logs(
                &c,
                &format!("node {i}: call_latency {min}/{avg}/{max} out of {n} is not ordered"),
            );
        }
        timed += n;
        if statistic(&text, "", "memory_used").unwrap_or(0) == 0 {
            fail_with_logs(&c, &format!("node {i}: memory_used is 0 in:\n{text}"));
        }
    }
    if timed < ring_migrations {
        fail_with_logs(
            &c,
            &format!(
                "call_latency counts {timed} calls, the clients migrated {ring_migrations} times"
            ),
        );
    }

    // 3. Contention on the same keys.
    let t_cont = Instant::now();
    let (cont_counts, cont_migrations) = must(&c, contention(&c));
    eprintln!(
        "{name}: contention: {} increments, {cont_migrations} migrations, in {:?}",
        cont_counts.iter().sum::<u64>(),
        t_cont.elapsed()
    );

    // Every key holds exactly the sum of all increments, seen from every
    // node by the stock CLI.
    let mut expected = [0u64; KEYS];
    for k in 0..KEYS {
        expected[k] = ring_counts[k] + cont_counts[k];
    }
    for k in 0..KEYS {
        let kname = format!("ring-key-{k}");
        for i in 0..NODES {
            let out = must(&c, ctdb_ok(&c, i, &["readkey", DB, &kname]));
            let got = readkey_value(&out);
            if got.as_deref() != Some(expected[k].to_string().as_str()) {
                fail_with_logs(
                    &c,
                    &format!(
                        "LOST UPDATE: {kname} read on node {i} is {got:?}, \
                         {} increments were made ({} ring + {} contention)",
                        expected[k], ring_counts[k], cont_counts[k]
                    ),
                );
            }
        }
    }
    let cat = must(&c, ctdb_ok(&c, 0, &["catdb", DB]));
    for (k, want_value) in expected.iter().enumerate() {
        let want = format!("key({}) = \"ring-key-{k}\"", format!("ring-key-{k}").len());
        let pos = cat
            .find(&want)
            .unwrap_or_else(|| fail_with_logs(&c, &format!("catdb lacks {want}:\n{cat}")));
        let data = cat[pos..]
            .lines()
            .find(|l| l.starts_with("data("))
            .unwrap_or("");
        let v = data.split('"').nth(1).unwrap_or("");
        if v != want_value.to_string() {
            fail_with_logs(
                &c,
                &format!("catdb shows ring-key-{k} = {v:?}, want {want_value}"),
            );
        }
    }
    eprintln!("{name}: per-key totals {expected:?} confirmed on every node");
    c
}
