//! Read-only record delegations on three of our daemons (upstream's
//! `ctdb_call.c` read-only handling; INTEGRATION
//! database/readonly.001.basic covers the same ground with the stock
//! tools).
//!
//! 1. Delegations: a database with read-only records enabled
//!    (`ctdb setdbreadonly`); node 0 writes the record (dmaster), the
//!    `fetch_readonly` program on nodes 1 and 2 gives each a read-only
//!    copy. The local TDB files must show it: HAVE_DELEGATIONS on the
//!    dmaster, HAVE_READONLY (rsn two below the dmaster's) on the others,
//!    also as `ctdb cattdb` prints them; a read-only fetch on 1 and 2 is
//!    then served from the local copy without asking the daemon.
//! 2. Revoke: a write on node 1 (fetch-lock + store) revokes both copies
//!    before the record moves; no node keeps a read-only flag and every
//!    node reads the new value. `ctdb statistics` / `ctdb dbstatistics`
//!    count the delegations and the revoke.
//! 3. Concurrent mix: `fetch_readonly_loop` on nodes 0 and 1 while test
//!    readers on the same nodes read the record read-only and a writer on
//!    node 2 stores an incrementing counter: no reader ever reads a value
//!    older than one it already read, and all end with the writer's last
//!    value.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

use ctdb_perf::client::{Client, Db};
use ctdb_tests::must_show::{
    ctdb_ok, fail_with_logs, must, perf_command, run_bounded, statistic, Bounded, TestCluster,
};

const NODES: usize = 3;
const DB: &str = "readonly_delegations.tdb";
const KEY: &[u8] = b"ro-key";
/// The database and key `fetch_readonly_loop` works on.
const LOOP_DB: &str = "fetch_readonly_loop.tdb";
const LOOP_KEY: &[u8] = b"testkey";
/// Increments the writer makes in part 3 (fewer if its time runs out).
const WRITES: u64 = 60;

/// `CTDB_REC_RO_*` record flags.
const RO_HAVE_DELEGATIONS: u32 = 0x0100_0000;
const RO_HAVE_READONLY: u32 = 0x0200_0000;
const RO_FLAGS: u32 = 0x0F00_0000;

fn connect(c: &TestCluster, node: usize, db: &str) -> Result<(Client, Db), String> {
    let sock = c.socket(node).map_err(|e| e.to_string())?;
    let mut cl = Client::connect(&sock).map_err(|e| format!("node {node}: {e}"))?;
    cl.set_timeout(Duration::from_secs(30));
    let db = cl
        .attach(db, false)
        .map_err(|e| format!("node {node}: attach {db}: {e}"))?;
    Ok((cl, db))
}

/// Fetch-lock for writing, store `value`, unlock.
fn write(cl: &mut Client, db: &mut Db, key: &[u8], value: &str) -> Result<(), String> {
    let (rec, _) = cl
        .fetch_lock(db, key)
        .map_err(|e| format!("fetch_lock: {e}"))?;
    let r = db.store_locked(key, &rec.header, value.as_bytes());
    db.unlock(key).map_err(|e| format!("unlock: {e}"))?;
    r.map_err(|e| format!("store: {e}"))
}

/// Read-only fetch-lock: the value and how many calls to the daemon it
/// took (0: served from the local file).
fn read(cl: &mut Client, db: &mut Db, key: &[u8]) -> Result<(String, u32), String> {
    let (rec, calls) = cl
        .fetch_lock_readonly(db, key)
        .map_err(|e| format!("fetch_lock_readonly: {e}"))?;
    db.unlock(key).map_err(|e| format!("unlock: {e}"))?;
    Ok((String::from_utf8_lossy(&rec.data).into_owned(), calls))
}

/// (rsn, dmaster, flags, data) of `key` in a node's local file.
fn local(db: &mut Db, key: &[u8]) -> Result<(u64, u32, u32, String), String> {
    let (h, d) = db.ltdb_fetch(key).map_err(|e| e.to_string())?;
    Ok((
        h.rsn,
        h.dmaster,
        h.flags.0,
        String::from_utf8_lossy(&d).into_owned(),
    ))
}

/// The read-only flag names `ctdb cattdb` prints for `key` on node `i`.
fn cattdb_ro_flags(c: &TestCluster, i: usize, key: &str) -> Result<Vec<String>, String> {
    let out = ctdb_ok(c, i, &["cattdb", DB])?;
    let want = format!("key({}) = \"{key}\"", key.len());
    let mut inside = false;
    let mut names = Vec::new();
    for line in out.lines() {
        if line.starts_with("key(") {
            inside = line == want;
            continue;
        }
        if inside {
            for w in line.split(|ch: char| !(ch.is_ascii_alphanumeric() || ch == '_')) {
                if w.starts_with("RO_") {
                    names.push(w.to_string());
                }
            }
        }
    }
    Ok(names)
}

fn stat(c: &TestCluster, i: usize, name: &str) -> u64 {
    let text = must(c, ctdb_ok(c, i, &["statistics"]));
    statistic(&text, "", name).unwrap_or_else(|| {
        fail_with_logs(
            c,
            &format!("no {name} in ctdb statistics of node {i}:\n{text}"),
        )
    })
}

/// `db_ro_delegations` / `db_ro_revokes` of `ctdb dbstatistics DB` on node `i`.
fn db_stat(c: &TestCluster, i: usize, label: &str) -> u64 {
    let text = must(c, ctdb_ok(c, i, &["dbstatistics", DB]));
    text.lines()
        .find_map(|l| l.trim().strip_prefix(label))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| fail_with_logs(c, &format!("no {label:?} in dbstatistics:\n{text}")))
}

fn totals(c: &TestCluster) -> (u64, u64) {
    let mut d = 0;
    let mut r = 0;
    for i in 0..NODES {
        d += stat(c, i, "total_ro_delegations");
        r += stat(c, i, "total_ro_revokes");
    }
    (d, r)
}

/// Parts 1 and 2.
fn delegations_and_revoke(c: &TestCluster) -> Result<(), String> {
    let mut nodes = Vec::new();
    for i in 0..NODES {
        nodes.push(connect(c, i, DB)?);
    }
    // Node 0 becomes the dmaster.
    {
        let (cl, db) = &mut nodes[0];
        write(cl, db, KEY, "value-1")?;
    }
    let d0 = stat(c, 0, "total_ro_delegations");
    let r0 = stat(c, 0, "total_ro_revokes");

    // Upstream's test program on the two other nodes.
    for i in [1, 2] {
        let mut cmd = perf_command(c, i, "fetch_readonly").map_err(|e| e.to_string())?;
        cmd.args(["-D", DB, "-k", "ro-key"]);
        let r = run_bounded(cmd, Duration::from_secs(30), None).map_err(|e| e.to_string())?;
        if !r.ok() {
            return Err(format!(
                "fetch_readonly on node {i}: exit {}\n{}{}",
                r.code, r.stdout, r.stderr
            ));
        }
    }
    let (dm_rsn, dm, dm_flags, dm_data) = local(&mut nodes[0].1, KEY)?;
    if dm != 0 || dm_flags & RO_FLAGS != RO_HAVE_DELEGATIONS || dm_data != "value-1" {
        return Err(format!(
            "dmaster node 0 holds rsn {dm_rsn} dmaster {dm} flags 0x{dm_flags:08x} {dm_data:?}, \
             want dmaster 0, HAVE_DELEGATIONS only, \"value-1\""
        ));
    }
    for i in [1, 2] {
        let (rsn, dmaster, flags, data) = local(&mut nodes[i].1, KEY)?;
        if flags & RO_FLAGS != RO_HAVE_READONLY
            || dmaster != 0
            || rsn + 2 != dm_rsn
            || data != "value-1"
        {
            return Err(format!(
                "node {i} holds rsn {rsn} dmaster {dmaster} flags 0x{flags:08x} {data:?}, want a \
                 read-only copy of dmaster 0's record (rsn {}, HAVE_READONLY, \"value-1\")",
                dm_rsn.saturating_sub(2)
            ));
        }
    }
    // The stock tool sees the same flags in the files.
    if cattdb_ro_flags(c, 0, "ro-key")? != ["RO_HAVE_DELEGATIONS"] {
        return Err(format!(
            "ctdb cattdb on node 0 shows {:?}",
            cattdb_ro_flags(c, 0, "ro-key")?
        ));
    }
    for i in [1, 2] {
        let f = cattdb_ro_flags(c, i, "ro-key")?;
        if f != ["RO_HAVE_READONLY"] {
            return Err(format!("ctdb cattdb on node {i} shows {f:?}"));
        }
    }
    // The copies serve reads without the daemon.
    for i in [1, 2] {
        let (cl, db) = &mut nodes[i];
        let (v, calls) = read(cl, db, KEY)?;
        if v != "value-1" || calls != 0 {
            return Err(format!(
                "read-only fetch on node {i}: {v:?} after {calls} calls, want \"value-1\" \
                 from the local copy"
            ));
        }
    }
    let d1 = stat(c, 0, "total_ro_delegations");
    if d1 != d0 + 2 || db_stat(c, 0, "db_ro_delegations") < 2 {
        return Err(format!("node 0 counted {} delegations, want 2", d1 - d0));
    }
    eprintln!(
        "delegations: node 0 dmaster rsn {dm_rsn}, copies on nodes 1 and 2 (rsn {})",
        dm_rsn - 2
    );

    // 2. A write on node 1 revokes both copies.
    {
        let (cl, db) = &mut nodes[1];
        write(cl, db, KEY, "value-2")?;
    }
    for (i, (_, db)) in nodes.iter_mut().enumerate() {
        let (rsn, dmaster, flags, data) = local(db, KEY)?;
        if flags & RO_FLAGS != 0 {
            return Err(format!(
                "after the write node {i} still holds read-only flags 0x{flags:08x} \
                 (rsn {rsn}, dmaster {dmaster}, {data:?})"
            ));
        }
        let f = cattdb_ro_flags(c, i, "ro-key")?;
        if !f.is_empty() {
            return Err(format!(
                "after the write ctdb cattdb on node {i} shows {f:?}"
            ));
        }
        if i == 1 && (dmaster != 1 || data != "value-2") {
            return Err(format!(
                "writer node 1 holds dmaster {dmaster} {data:?}, want dmaster 1 \"value-2\""
            ));
        }
    }
    let r1 = stat(c, 0, "total_ro_revokes");
    if r1 != r0 + 1 || db_stat(c, 0, "db_ro_revokes") != 1 {
        return Err(format!("node 0 counted {} revokes, want 1", r1 - r0));
    }
    // Every node reads the new value (nodes 0 and 2 through new
    // delegations from node 1).
    let d_before = stat(c, 1, "total_ro_delegations");
    for (i, (cl, db)) in nodes.iter_mut().enumerate() {
        let (v, _) = read(cl, db, KEY)?;
        if v != "value-2" {
            return Err(format!(
                "node {i} reads {v:?} after the write, want \"value-2\""
            ));
        }
    }
    let d_after = stat(c, 1, "total_ro_delegations");
    if d_after != d_before + 2 {
        return Err(format!(
            "node 1 (new dmaster) counted {} delegations for the reads on 0 and 2, want 2",
            d_after - d_before
        ));
    }
    Ok(())
}

/// Part 3: returns (reads per reader, the writer's last value).
fn concurrent_mix(c: &TestCluster) -> Result<(Vec<u64>, u64), String> {
    let (mut wc, mut wdb) = connect(c, 2, LOOP_DB)?;
    write(&mut wc, &mut wdb, LOOP_KEY, "0")?;
    // Load: upstream's loop program on nodes 0 and 1.
    let mut progs = Vec::new();
    for i in [0, 1] {
        let mut cmd = perf_command(c, i, "fetch_readonly_loop").map_err(|e| e.to_string())?;
        cmd.args(["-n", "2", "-t", "6"]);
        progs.push(Bounded::spawn(cmd, Duration::from_secs(45), None).map_err(|e| e.to_string())?);
    }
    let writer_done = AtomicBool::new(false);
    let last_written = Mutex::new(0u64);
    let reads = Mutex::new(vec![0u64; 2]);
    let errors = Mutex::new(Vec::<String>::new());
    let deadline = Instant::now() + Duration::from_secs(30);
    thread::scope(|s| {
        for (slot, node) in [0usize, 1].into_iter().enumerate() {
            let (writer_done, last_written, reads, errors) =
                (&writer_done, &last_written, &reads, &errors);
            s.spawn(move || {
                let r = (|| -> Result<u64, String> {
                    let (mut cl, mut db) = connect(c, node, LOOP_DB)?;
                    let mut seen = 0u64;
                    let mut n = 0u64;
                    loop {
                        let done = writer_done.load(Ordering::SeqCst);
                        let (v, _) = read(&mut cl, &mut db, LOOP_KEY)?;
                        let v: u64 = v
                            .parse()
                            .map_err(|_| format!("node {node} read {v:?}, not a counter"))?;
                        n += 1;
                        if v < seen {
                            return Err(format!(
                                "STALE READ on node {node}: {v} after {seen} (read {n})"
                            ));
                        }
                        seen = v;
                        if done {
                            let last = *last_written.lock().map_err(|e| e.to_string())?;
                            if seen == last {
                                return Ok(n);
                            }
                        }
                        if Instant::now() > deadline {
                            return Err(format!(
                                "node {node} still reads {seen} at the deadline (writer done: \
                                 {done})"
                            ));
                        }
                        thread::sleep(Duration::from_millis(2));
                    }
                })();
                match r {
                    Ok(n) => {
                        if let Ok(mut v) = reads.lock() {
                            v[slot] = n;
                        }
                    }
                    Err(e) => {
                        if let Ok(mut v) = errors.lock() {
                            v.push(e);
                        }
                    }
                }
            });
        }
        let w = (|| -> Result<(), String> {
            for i in 1..=WRITES {
                if Instant::now() > deadline - Duration::from_secs(10) {
                    break;
                }
                write(&mut wc, &mut wdb, LOOP_KEY, &i.to_string())?;
                *last_written.lock().map_err(|e| e.to_string())? = i;
                thread::sleep(Duration::from_millis(30));
            }
            Ok(())
        })();
        writer_done.store(true, Ordering::SeqCst);
        if let Err(e) = w {
            if let Ok(mut v) = errors.lock() {
                v.push(format!("writer on node 2: {e}"));
            }
        }
    });
    for (i, p) in progs.into_iter().enumerate() {
        let r = p.finish();
        if !r.ok() || !r.stdout.contains("Locks:") {
            if let Ok(mut v) = errors.lock() {
                v.push(format!(
                    "fetch_readonly_loop on node {i}: exit {}{}\n{}{}",
                    r.code,
                    if r.overran { " (overran)" } else { "" },
                    r.stdout,
                    r.stderr
                ));
            }
        } else {
            let last = r.stdout.rsplit("Locks:").next().unwrap_or("").trim();
            eprintln!("fetch_readonly_loop on node {i}: Locks:{last}");
        }
    }
    let errors = errors.into_inner().unwrap_or_default();
    if !errors.is_empty() {
        return Err(errors.join("\n"));
    }
    let last = last_written.into_inner().unwrap_or(0);
    // And every node reads the writer's last value.
    for i in 0..NODES {
        let (mut cl, mut db) = connect(c, i, LOOP_DB)?;
        let (v, _) = read(&mut cl, &mut db, LOOP_KEY)?;
        if v != last.to_string() {
            return Err(format!(
                "node {i} finally reads {v:?}, the writer ended at {last}"
            ));
        }
    }
    Ok((reads.into_inner().unwrap_or_default(), last))
}

#[test]
fn readonly_delegations_are_granted_and_revoked() {
    let name = "readonly_delegations_are_granted_and_revoked";
    let (c, t0) = TestCluster::start_for(name, NODES);

    for db in [DB, LOOP_DB] {
        must(&c, ctdb_ok(&c, 0, &["attach", db]));
        for i in 0..NODES {
            must(&c, ctdb_ok(&c, i, &["setdbreadonly", db]));
        }
    }
    let map = must(&c, ctdb_ok(&c, 2, &["getdbmap"]));
    let line = map.lines().find(|l| l.contains(DB)).unwrap_or("");
    if !line.contains("READONLY") {
        fail_with_logs(&c, &format!("getdbmap does not show {DB} READONLY:\n{map}"));
    }

    let (dt0, rt0) = totals(&c);
    must(&c, delegations_and_revoke(&c));
    eprintln!("{name}: delegations and revoke OK after {:?}", t0.elapsed());

    let (dt1, rt1) = totals(&c);
    let t_mix = Instant::now();
    let (reads, last) = must(&c, concurrent_mix(&c));
    let (dt2, rt2) = totals(&c);
    eprintln!(
        "{name}: concurrent mix: {last} writes, reads per reader {reads:?}, \
         delegations +{}, revokes +{} in {:?}",
        dt2 - dt1,
        rt2 - rt1,
        t_mix.elapsed()
    );
    if dt2 <= dt1 || rt2 <= rt1 {
        fail_with_logs(
            &c,
            &format!(
                "the concurrent mix shows no delegations/revokes: delegations {dt1} -> {dt2}, \
                 revokes {rt1} -> {rt2}"
            ),
        );
    }
    eprintln!("{name}: cluster totals: ro_delegations {dt0} -> {dt2}, ro_revokes {rt0} -> {rt2}");

    let mut c = c;
    c.stop_all().expect("stop daemons");
    eprintln!("{name}: done in {:?}", t0.elapsed());
}
