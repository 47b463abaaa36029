//! Cross-process and cross-core locking: the engine's OFD locks exclude
//! libtdb's POSIX locks both ways, handles of one process exclude each
//! other, closing one handle keeps the others' locks, partitions run in
//! parallel threads, CLEAR_IF_FIRST follows the ACTIVE-lock protocol, and
//! mutex mode interoperates with libtdb's robust mutexes.

mod common;
use common::*;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ctdb_engine::{flags, Database, Error, OpenOptions, StoreFlag};

const MUTEX: u32 = flags::MUTEX_LOCKING | flags::CLEAR_IF_FIRST;

/// python3-tdb tries `lock_all` (which must wait for every chain lock) with
/// a 2 s alarm; returns true if it got the lock.
fn libtdb_can_lock_all(path: &std::path::Path, tflags: u32) -> bool {
    let out = Command::new(PY)
        .arg("-c")
        .arg(
            r#"
import sys, os, signal, tdb
t = tdb.open(sys.argv[1], tdb_flags=int(sys.argv[2]), flags=os.O_RDWR)
signal.alarm(2)
t.lock_all()
print("got", flush=True)
t.unlock_all()
"#,
        )
        .arg(path)
        .arg(tflags.to_string())
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).contains("got")
}

/// python3-tdb running `script` on `path` with `tflags` (its argv 1 and 2),
/// stdin and stdout piped; returns the child, its stdout and the first line
/// it printed (trimmed).
fn spawn_py_on(
    script: &str,
    path: &std::path::Path,
    tflags: u32,
) -> (
    std::process::Child,
    BufReader<std::process::ChildStdout>,
    String,
) {
    let mut child = Command::new(PY)
        .arg("-c")
        .arg(script)
        .arg(path)
        .arg(tflags.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    let first = line.trim().to_string();
    (child, out, first)
}

#[test]
fn engine_chainlock_excludes_libtdb() {
    let td = TempDir::new("lock1");
    for tflags in [0u32, MUTEX] {
        let path = td.path(&format!("l{tflags}.tdb"));
        let db =
            Database::open(&path, &OpenOptions::new().hash_size(17).tdb_flags(tflags)).unwrap();
        assert_eq!(db.uses_mutexes(), tflags != 0);
        let mut h = db.handle().unwrap();
        h.store(b"k", b"v", StoreFlag::Replace).unwrap();
        h.chainlock(b"k").unwrap();
        assert!(
            !libtdb_can_lock_all(&path, tflags),
            "libtdb got lock_all while the engine holds a chain lock"
        );
        // Closing another handle of this process must not drop our lock.
        let other = db.handle().unwrap();
        drop(other);
        assert!(
            !libtdb_can_lock_all(&path, tflags),
            "closing another descriptor dropped the chain lock"
        );
        // Our own whole-file lock from another handle must not get through either.
        let mut other = db.handle().unwrap();
        assert!(
            !other.lockall_nonblock().unwrap(),
            "lockall_nonblock succeeded over a held chain lock"
        );
        h.chainunlock(b"k").unwrap();
        assert!(other.lockall_nonblock().unwrap());
        other.unlockall().unwrap();
        assert!(
            libtdb_can_lock_all(&path, tflags),
            "libtdb cannot lock after the engine unlocked"
        );
    }
}

#[test]
fn libtdb_lockall_blocks_engine_store() {
    let td = TempDir::new("lock2");
    for tflags in [0u32, MUTEX] {
        let path = td.path(&format!("l{tflags}.tdb"));
        let db =
            Database::open(&path, &OpenOptions::new().hash_size(17).tdb_flags(tflags)).unwrap();
        let mut h = db.handle().unwrap();
        let (mut child, _out, line) = spawn_py_on(
            r#"
import sys, os, time, tdb
t = tdb.open(sys.argv[1], tdb_flags=int(sys.argv[2]), flags=os.O_RDWR)
t.lock_all()
print("held", flush=True)
time.sleep(1.0)
t.unlock_all()
"#,
            &path,
            tflags,
        );
        assert_eq!(line, "held");
        let t0 = Instant::now();
        h.store(b"x", b"y", StoreFlag::Replace).unwrap();
        let waited = t0.elapsed();
        let _ = child.kill();
        child.wait().unwrap();
        assert!(
            waited >= Duration::from_millis(700),
            "store did not wait for libtdb's lock_all ({waited:?})"
        );
    }
}

#[test]
fn handles_of_one_process_exclude_each_other() {
    let td = TempDir::new("lock3");
    for tflags in [0u32, MUTEX] {
        let path = td.path(&format!("l{tflags}.tdb"));
        let db =
            Database::open(&path, &OpenOptions::new().hash_size(17).tdb_flags(tflags)).unwrap();
        let mut a = db.handle().unwrap();
        a.chainlock(b"key").unwrap();
        let db2 = db.clone();
        let t = std::thread::spawn(move || {
            let mut b = db2.handle().unwrap();
            let t0 = Instant::now();
            b.store(b"key", b"from b", StoreFlag::Replace).unwrap();
            t0.elapsed()
        });
        std::thread::sleep(Duration::from_millis(500));
        a.store(b"key", b"from a", StoreFlag::Replace).unwrap();
        a.chainunlock(b"key").unwrap();
        let waited = t.join().unwrap();
        assert!(
            waited >= Duration::from_millis(400),
            "second handle did not wait ({waited:?})"
        );
        assert_eq!(a.fetch(b"key").unwrap(), Some(b"from b".to_vec()));
    }
}

#[test]
fn partitions_in_parallel_threads() {
    let td = TempDir::new("parts");
    let seed = seed("partitions_in_parallel_threads");
    for tflags in [
        flags::INCOMPATIBLE_HASH,
        flags::VOLATILE | flags::INCOMPATIBLE_HASH,
        MUTEX,
    ] {
        let path = td.path(&format!("p{tflags}.tdb"));
        let db =
            Database::open(&path, &OpenOptions::new().hash_size(1009).tdb_flags(tflags)).unwrap();
        let ncores = 4;
        let mut threads = Vec::new();
        for core in 0..ncores {
            let db = db.clone();
            threads.push(std::thread::spawn(move || {
                let mut rng = Rng::new(seed ^ core as u64);
                let mut st = db.partition(core, ncores).unwrap();
                let mut model = BTreeMap::new();
                let mut foreign = 0;
                for i in 0..4000u32 {
                    let k = format!("key-{}", rng.below(3000)).into_bytes();
                    if db.owner_of(&k, ncores) != core {
                        assert!(matches!(
                            st.store(&k, b"x", StoreFlag::Replace),
                            Err(Error::NotOwner { .. })
                        ));
                        foreign += 1;
                        continue;
                    }
                    if rng.below(5) == 0 {
                        let _ = st.delete(&k);
                        model.remove(&k);
                    } else {
                        let v = format!("{core}-{i}-")
                            .repeat(rng.below(20) as usize + 1)
                            .into_bytes();
                        st.store(&k, &v, StoreFlag::Replace).unwrap();
                        model.insert(k, v);
                    }
                }
                assert!(foreign > 0);
                let mine: BTreeMap<_, _> = st.entries().unwrap().into_iter().collect();
                assert_eq!(mine, model, "core {core} sees other records");
                model
            }));
        }
        let mut all = BTreeMap::new();
        for t in threads {
            all.extend(t.join().unwrap());
        }
        let mut h = db.handle().unwrap();
        let rep = h.check().unwrap();
        assert_eq!(rep.live as usize, all.len());
        // The partitions' free-space reserves are dead records on their
        // own chains, which tdb_check (ours and libtdb's below) accepts.
        assert!(rep.dead > 0, "no reserve records found");
        drop(h);
        let py: BTreeMap<_, _> = py_dump(&path, tflags).into_iter().collect();
        assert_eq!(py, all, "libtdb sees other records (flags {tflags})");
        tdbtool_check(&path);
    }
}

#[test]
fn clear_if_first_follows_active_lock() {
    let td = TempDir::new("cif");
    for tflags in [flags::CLEAR_IF_FIRST | flags::INCOMPATIBLE_HASH, MUTEX] {
        let path = td.path(&format!("c{tflags}.tdb"));
        {
            let db =
                Database::open(&path, &OpenOptions::new().hash_size(31).tdb_flags(tflags)).unwrap();
            let mut h = db.handle().unwrap();
            h.store(b"kept", b"while open", StoreFlag::Replace).unwrap();
            // libtdb opening with CLEAR_IF_FIRST while we hold it must not wipe.
            let out = python(
                r#"
import sys, os, tdb
t = tdb.open(sys.argv[1], tdb_flags=int(sys.argv[2]), flags=os.O_RDWR)
print(t.get(b"kept"))
t[b"from-py"] = b"1"
t.close()
"#,
                &[path.to_str().unwrap(), &tflags.to_string()],
            );
            assert_eq!(out.trim(), "b'while open'");
            assert_eq!(h.fetch(b"from-py").unwrap(), Some(b"1".to_vec()));
            // A second opener in this process must not wipe either.
            let db2 =
                Database::open(&path, &OpenOptions::new().hash_size(31).tdb_flags(tflags)).unwrap();
            assert_eq!(
                db2.handle().unwrap().fetch(b"kept").unwrap(),
                Some(b"while open".to_vec())
            );
        }
        // Nobody holds it now: the next CLEAR_IF_FIRST opener wipes.
        let db =
            Database::open(&path, &OpenOptions::new().hash_size(31).tdb_flags(tflags)).unwrap();
        let mut h = db.handle().unwrap();
        assert_eq!(h.count().unwrap(), 0);
        h.store(b"again", b"x", StoreFlag::Replace).unwrap();
        // libtdb holding it open protects it from our wipe.
        drop(h);
        drop(db);
        let (mut child, _out, line) = spawn_py_on(
            r#"
import sys, os, time, tdb
t = tdb.open(sys.argv[1], tdb_flags=int(sys.argv[2]), flags=os.O_RDWR)
t[b"py-holds"] = b"1"
print("open", flush=True)
time.sleep(30)
"#,
            &path,
            tflags,
        );
        let r = Database::open(&path, &OpenOptions::new().hash_size(31).tdb_flags(tflags))
            .and_then(|db| db.handle().and_then(|mut h| h.fetch(b"py-holds")));
        let _ = child.kill();
        child.wait().unwrap();
        assert_eq!(line, "open");
        assert_eq!(
            r.unwrap(),
            Some(b"1".to_vec()),
            "engine wiped a database libtdb holds open"
        );
    }
}

#[test]
fn mutex_file_layout_matches_libtdb() {
    let td = TempDir::new("mutexbytes");
    let ours = td.path("ours.tdb");
    let theirs = td.path("theirs.tdb");
    let db = Database::open(&ours, &OpenOptions::new().hash_size(3).tdb_flags(MUTEX)).unwrap();
    let mut h = db.handle().unwrap();
    h.store(b"key", b"value", StoreFlag::Replace).unwrap();
    let a = std::fs::read(&ours).unwrap();
    python(
        r#"
import sys, os, tdb
t = tdb.open(sys.argv[1], hash_size=3, tdb_flags=int(sys.argv[2]), flags=os.O_RDWR|os.O_CREAT)
t[b"key"] = b"value"
open(sys.argv[1] + ".copy", "wb").write(open(sys.argv[1], "rb").read())
t.close()
"#,
        &[theirs.to_str().unwrap(), &MUTEX.to_string()],
    );
    let b = std::fs::read(td.path("theirs.tdb.copy")).unwrap();
    assert_eq!(a.len(), b.len());
    assert_eq!(a.len(), 12288);
    assert_eq!(a[..168], b[..168], "header copy differs");
    assert_eq!(a[4096..], b[4096..], "tdb part differs");
    assert_eq!(a[168..4096], b[168..4096], "mutex area differs");
}

#[test]
fn record_held_by_libtdb_traversal_stays_dead() {
    let td = TempDir::new("travlock");
    let path = td.path("t.tdb");
    let db = Database::open(&path, &OpenOptions::new().hash_size(1)).unwrap();
    let mut h = db.handle().unwrap();
    for k in ["a", "b", "c", "d"] {
        h.store(k.as_bytes(), b"value", StoreFlag::Insert).unwrap();
    }
    let (mut child, mut out, first) = spawn_py_on(
        r#"
import sys, os, tdb
t = tdb.open(sys.argv[1], flags=os.O_RDWR)
k = t.firstkey()
print(k.decode(), flush=True)
sys.stdin.readline()
rest = []
k = t.nextkey(k)
while k is not None:
    rest.append(k.decode())
    k = t.nextkey(k)
print(",".join(rest), flush=True)
"#,
        &path,
        0,
    );
    // libtdb holds a record lock on `first`: deleting it must leave it dead.
    h.delete(first.as_bytes()).unwrap();
    let rep = h.check().unwrap();
    assert_eq!(
        (rep.live, rep.dead),
        (3, 1),
        "record under a libtdb traversal was freed"
    );
    {
        use std::io::Write;
        child.stdin.take().unwrap().write_all(b"go\n").unwrap();
    }
    let mut rest = String::new();
    out.read_line(&mut rest).unwrap();
    let status = child.wait().unwrap();
    assert!(status.success());
    let mut seen: Vec<&str> = rest.trim().split(',').filter(|s| !s.is_empty()).collect();
    seen.sort();
    let mut want: Vec<&str> = ["a", "b", "c", "d"]
        .into_iter()
        .filter(|k| *k != first)
        .collect();
    want.sort();
    assert_eq!(
        seen, want,
        "libtdb's traversal lost its way after the delete"
    );
    // Nobody traverses now: the next delete on the chain frees dead records.
    h.delete(want[0].as_bytes()).unwrap();
    let rep = h.check().unwrap();
    assert_eq!((rep.live, rep.dead), (2, 0));
}

#[test]
fn record_guard_holds_the_chain() {
    let td = TempDir::new("guard");
    let path = td.path("g.tdb");
    let db = Database::open(&path, &OpenOptions::new().hash_size(17)).unwrap();
    let mut h = db.handle().unwrap();
    h.store(b"k", b"v1", StoreFlag::Replace).unwrap();
    {
        let mut g = h.lock_record(b"k").unwrap();
        assert_eq!(g.fetch().unwrap(), Some(b"v1".to_vec()));
        g.store(b"v2").unwrap();
        assert!(
            !libtdb_can_lock_all(&path, 0),
            "guard does not hold the chain lock"
        );
    }
    assert!(
        libtdb_can_lock_all(&path, 0),
        "guard did not release the chain lock"
    );
    assert_eq!(h.fetch(b"k").unwrap(), Some(b"v2".to_vec()));
    let mut g = h.lock_record(b"k").unwrap();
    g.delete().unwrap();
    assert_eq!(g.fetch().unwrap(), None);
}

#[test]
fn engine_transactions_against_libtdb_writers() {
    let td = TempDir::new("txlib");
    for tflags in [
        flags::DISALLOW_NESTING | flags::NOSYNC,
        flags::MUTEX_LOCKING | flags::DISALLOW_NESTING | flags::NOSYNC,
    ] {
        let path = td.path(&format!("t{tflags}.tdb"));
        let db =
            Database::open(&path, &OpenOptions::new().hash_size(31).tdb_flags(tflags)).unwrap();
        let mut h = db.handle().unwrap();
        h.store(b"counter", b"0", StoreFlag::Replace).unwrap();
        // python: 4000 plain stores of its own keys plus 1000 libtdb
        // transactions incrementing a shared counter, while the engine runs
        // 1000 transactions incrementing it too.
        let (mut child, mut out, first) = spawn_py_on(
            r#"
import sys, os, tdb
t = tdb.open(sys.argv[1], tdb_flags=int(sys.argv[2]), flags=os.O_RDWR)
print("ready", flush=True)
for i in range(4000):
    t[b"py-%d" % (i % 40)] = b"%d" % i
    if i % 4 == 0:
        t.transaction_start()
        t[b"counter"] = b"%d" % (int(t[b"counter"]) + 1)
        t.transaction_commit()
print("done", flush=True)
"#,
            &path,
            tflags,
        );
        assert_eq!(first, "ready");
        let mut line = String::new();
        for i in 0..1000u32 {
            h.transaction_start().unwrap();
            let c: u64 = String::from_utf8(h.fetch(b"counter").unwrap().unwrap())
                .unwrap()
                .parse()
                .unwrap();
            h.store(
                b"counter",
                (c + 1).to_string().as_bytes(),
                StoreFlag::Replace,
            )
            .unwrap();
            h.store(
                format!("e-{}", i % 30).as_bytes(),
                &vec![i as u8; 50 + (i % 200) as usize],
                StoreFlag::Replace,
            )
            .unwrap();
            h.transaction_commit().unwrap();
        }
        line.clear();
        out.read_line(&mut line).unwrap();
        let status = child.wait().unwrap();
        assert!(
            status.success() && line.trim() == "done",
            "python writer failed"
        );
        assert_eq!(
            h.fetch(b"counter").unwrap(),
            Some(b"2000".to_vec()),
            "lost a counter increment (flags {tflags})"
        );
        for i in 3960..4000u32 {
            assert_eq!(
                h.fetch(format!("py-{}", i % 40).as_bytes()).unwrap(),
                Some(i.to_string().into_bytes())
            );
        }
        h.check().unwrap();
        drop(h);
        drop(db);
        tdbtool_check(&path);
    }
}

#[test]
fn transaction_start_nonblock_sees_libtdb_transaction() {
    let td = TempDir::new("txnb");
    let path = td.path("t.tdb");
    let db = Database::open(&path, &OpenOptions::new().hash_size(17)).unwrap();
    let mut h = db.handle().unwrap();
    let (mut child, mut out, first) = spawn_py_on(
        r#"
import sys, os, tdb
t = tdb.open(sys.argv[1], flags=os.O_RDWR)
t.transaction_start()
t[b"py"] = b"1"
print("in tx", flush=True)
sys.stdin.readline()
t.transaction_commit()
print("committed", flush=True)
"#,
        &path,
        0,
    );
    assert_eq!(first, "in tx");
    assert!(
        !h.transaction_start_nonblock().unwrap(),
        "got a transaction while libtdb holds one"
    );
    assert!(!h.transaction_active());
    {
        use std::io::Write;
        child.stdin.take().unwrap().write_all(b"go\n").unwrap();
    }
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "committed");
    child.wait().unwrap();
    assert!(h.transaction_start_nonblock().unwrap());
    assert_eq!(h.fetch(b"py").unwrap(), Some(b"1".to_vec()));
    h.store(b"e", b"2", StoreFlag::Insert).unwrap();
    h.transaction_commit().unwrap();
    assert_eq!(h.fetch(b"e").unwrap(), Some(b"2".to_vec()));
}

#[test]
fn handles_can_move_between_threads() {
    fn assert_send<T: Send>() {}
    fn assert_sync<T: Sync>() {}
    assert_send::<Database>();
    assert_sync::<Database>();
    assert_send::<ctdb_engine::CoreStore>();
    let td = TempDir::new("send");
    let db = Database::open(td.path("s.tdb"), &OpenOptions::new().tdb_flags(MUTEX)).unwrap();
    let mut h = db.handle().unwrap();
    h.store(b"a", b"1", StoreFlag::Replace).unwrap();
    // An idle handle (no locks held) may move to another thread.
    let h = std::thread::spawn(move || {
        let mut h = h;
        h.store(b"b", b"2", StoreFlag::Replace).unwrap();
        h
    })
    .join()
    .unwrap();
    let mut h = h;
    assert_eq!(h.count().unwrap(), 2);
}

/// A `ChainWaiter` blocks while libtdb (python3-tdb, another process) holds
/// the lock, and returns once libtdb lets go, in both locking modes.
#[test]
fn chain_waiter_waits_for_libtdb_to_let_go() {
    use std::io::Write;
    let td = TempDir::new("waiter");
    for tflags in [0u32, MUTEX] {
        let path = td.path(&format!("w{tflags}.tdb"));
        let db =
            Database::open(&path, &OpenOptions::new().hash_size(17).tdb_flags(tflags)).unwrap();
        let mut h = db.handle().unwrap();
        h.store(b"k", b"v", StoreFlag::Replace).unwrap();
        let (mut py, mut out, first) = spawn_py_on(
            r#"
import sys, os, tdb
t = tdb.open(sys.argv[1], tdb_flags=int(sys.argv[2]), flags=os.O_RDWR)
t.lock_all()
print("locked", flush=True)
sys.stdin.readline()
t.unlock_all()
print("released", flush=True)
"#,
            &path,
            tflags,
        );
        assert_eq!(first, "locked", "flags {tflags}");
        let mut line = String::new();
        assert!(
            !h.chainlock_nonblock(b"k").unwrap(),
            "flags {tflags}: chain not busy"
        );

        let waiter = h.chain_waiter(b"k");
        let (tx, rx) = std::sync::mpsc::channel();
        let t = std::thread::spawn(move || {
            let r = waiter.wait();
            let _ = tx.send(r);
        });
        assert!(
            rx.recv_timeout(Duration::from_millis(500)).is_err(),
            "flags {tflags}: the waiter returned while libtdb held the lock"
        );
        writeln!(py.stdin.take().unwrap()).unwrap();
        let r = rx
            .recv_timeout(Duration::from_secs(10))
            .unwrap_or_else(|_| panic!("flags {tflags}: the waiter never returned"));
        r.unwrap();
        t.join().unwrap();
        out.read_line(&mut line).unwrap();
        assert_eq!(line.trim(), "released");
        assert!(py.wait().unwrap().success());
        // The waiter kept nothing: the engine takes the lock at once.
        assert!(h.chainlock_nonblock(b"k").unwrap(), "flags {tflags}");
        h.chainunlock(b"k").unwrap();
    }
}
