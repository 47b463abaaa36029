//! Property: libtdb and the engine can write one file at the same time —
//! a python3-tdb process plus several engine cores (threads, each on its own
//! partition) — without losing or tearing any write, and the file stays
//! valid for libtdb.
//!
//! How: for a bounded time (2.5 s per locking mode), python rewrites its own
//! keys `py-i -> "py:<round>"` and increments shared counters inside libtdb
//! transactions; each engine core rewrites its own keys `e-i -> "e<core>:<round>"`
//! and increments the shared counters it owns under `chainlock`. Afterwards
//! every key must hold the last value its writer wrote, every counter the
//! sum of both sides' increments (a lost update shows as a smaller number),
//! seen both through the engine and through a fresh python3-tdb process, and
//! `tdbtool FILE check` must pass. Run once with fcntl locks and once with
//! `TDB_MUTEX_LOCKING`.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ctdb_engine::{flags, Database, OpenOptions, StoreFlag};

const HASH_SIZE: u32 = 257;
const PY_KEYS: usize = 150;
const ENGINE_KEYS: usize = 300;
const SHARED_KEYS: usize = 12;
const CORES: usize = 3;
const RUN: Duration = Duration::from_millis(2500);

const PY_WRITER: &str = r#"
import os, sys, time, tdb
path, hs, flags, secs, nkeys, nshared = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
t = tdb.Tdb(path, hs, flags, os.O_RDWR, 0o600)
print("ready", flush=True)
sys.stdin.readline()
end = time.time() + secs
rounds = 0
while time.time() < end:
    rounds += 1
    v = b"py:%d" % rounds
    for i in range(nkeys):
        t.store(b"py-%d" % i, v, tdb.REPLACE)
    for j in range(nshared):
        k = b"shared-%d" % j
        t.transaction_start()
        cur = t.get(k)
        t.store(k, b"%d" % ((int(cur) if cur else 0) + 1), tdb.REPLACE)
        t.transaction_commit()
t.close()
print("done %d" % rounds, flush=True)
"#;

const PY_DUMP: &str = r#"
import os, sys, tdb
t = tdb.Tdb(sys.argv[1], 0, int(sys.argv[2]), os.O_RDWR, 0o600)
for k in t.keys():
    print(k.hex(), t[k].hex())
t.close()
"#;

struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn temp_dir(name: &str) -> PathBuf {
    let dir =
        std::env::temp_dir().join(format!("ctdb-engine-hammer-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex from python"))
        .collect()
}

/// Every key/value of the file as python3-tdb sees it.
fn python_dump(path: &Path, tdb_flags: u32) -> BTreeMap<Vec<u8>, Vec<u8>> {
    let out = Command::new("/usr/bin/python3")
        .arg("-c")
        .arg(PY_DUMP)
        .arg(path)
        .arg(tdb_flags.to_string())
        .output()
        .expect("run python3 dump");
    assert!(
        out.status.success(),
        "python dump failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let (k, v) = l.split_once(' ').expect("key value line");
            (unhex(k), unhex(v))
        })
        .collect()
}

struct CoreResult {
    core: usize,
    rounds: u64,
    keys: Vec<Vec<u8>>,
    shared: Vec<usize>,
}

fn engine_core(db: Database, core: usize, start: Instant) -> CoreResult {
    let mut st = db.partition(core, CORES).expect("partition");
    let keys: Vec<Vec<u8>> = (0..ENGINE_KEYS)
        .map(|i| format!("e-{i}").into_bytes())
        .filter(|k| db.owner_of(k, CORES) == core)
        .collect();
    let shared: Vec<usize> = (0..SHARED_KEYS)
        .filter(|j| db.owner_of(format!("shared-{j}").as_bytes(), CORES) == core)
        .collect();
    let mut rounds = 0u64;
    while start.elapsed() < RUN {
        rounds += 1;
        let v = format!("e{core}:{rounds}").into_bytes();
        for k in &keys {
            st.store(k, &v, StoreFlag::Replace).expect("engine store");
        }
        for j in &shared {
            let k = format!("shared-{j}").into_bytes();
            st.chainlock(&k).expect("chainlock");
            let cur = st.fetch(&k).expect("fetch shared");
            let n: u64 = cur
                .map(|v| String::from_utf8(v).unwrap().parse().unwrap())
                .unwrap_or(0);
            st.store(&k, (n + 1).to_string().as_bytes(), StoreFlag::Replace)
                .expect("store shared");
            st.chainunlock(&k).expect("chainunlock");
        }
    }
    CoreResult {
        core,
        rounds,
        keys,
        shared,
    }
}

fn hammer(name: &str, tdb_flags: u32) {
    let dir = temp_dir(name);
    let path = dir.join("hammer.tdb");
    let db = Database::open(
        &path,
        &OpenOptions::new().hash_size(HASH_SIZE).tdb_flags(tdb_flags),
    )
    .expect("engine creates the file");

    let mut py = Reaped(
        Command::new("/usr/bin/python3")
            .arg("-c")
            .arg(PY_WRITER)
            .arg(&path)
            .arg(HASH_SIZE.to_string())
            .arg(tdb_flags.to_string())
            .arg(RUN.as_secs_f64().to_string())
            .arg(PY_KEYS.to_string())
            .arg(SHARED_KEYS.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn python3"),
    );
    let mut py_out = BufReader::new(py.0.stdout.take().unwrap());
    let mut line = String::new();
    py_out.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "ready", "python could not open the file");

    // Go: python and the engine cores start together.
    writeln!(py.0.stdin.as_mut().unwrap(), "go").unwrap();
    let start = Instant::now();
    let handles: Vec<_> = (0..CORES)
        .map(|core| {
            let db = db.clone();
            std::thread::spawn(move || engine_core(db, core, start))
        })
        .collect();
    let results: Vec<CoreResult> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    line.clear();
    py_out.read_line(&mut line).unwrap();
    let py_rounds: u64 = line
        .trim()
        .strip_prefix("done ")
        .unwrap_or_else(|| panic!("python writer said {line:?}"))
        .parse()
        .unwrap();
    assert!(py.0.wait().unwrap().success());
    drop(py);
    assert!(py_rounds > 0, "python never ran a round");

    // Expected final contents.
    let mut expect: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
    for i in 0..PY_KEYS {
        expect.insert(
            format!("py-{i}").into_bytes(),
            format!("py:{py_rounds}").into_bytes(),
        );
    }
    let mut shared_total = [py_rounds; SHARED_KEYS];
    for r in &results {
        assert!(r.rounds > 0, "core {} never ran a round", r.core);
        for k in &r.keys {
            expect.insert(k.clone(), format!("e{}:{}", r.core, r.rounds).into_bytes());
        }
        for &j in &r.shared {
            shared_total[j] += r.rounds;
        }
    }
    for (j, total) in shared_total.iter().enumerate() {
        expect.insert(
            format!("shared-{j}").into_bytes(),
            total.to_string().into_bytes(),
        );
    }
    let engine_rounds: Vec<u64> = results.iter().map(|r| r.rounds).collect();
    eprintln!("{name}: python rounds {py_rounds}, engine rounds {engine_rounds:?}");

    // Through the engine (a single handle owning every chain).
    let mut all = db.handle().expect("whole-file handle");
    let mut seen = BTreeMap::new();
    all.traverse_read(|k, v| {
        seen.insert(k.to_vec(), v.to_vec());
        ctdb_engine::Walk::Continue
    })
    .expect("engine traverse");
    assert_eq!(
        seen.len(),
        expect.len(),
        "engine sees a different key count"
    );
    for (k, v) in &expect {
        assert_eq!(
            all.fetch(k).expect("engine fetch").as_deref(),
            Some(&v[..]),
            "engine: key {}",
            String::from_utf8_lossy(k)
        );
    }
    drop(all);

    // Through libtdb, in a fresh process, while we still have it open.
    let py_view = python_dump(&path, tdb_flags);
    assert_eq!(py_view, expect, "libtdb sees different contents");

    drop(db);
    let check = Command::new("tdbtool")
        .arg(&path)
        .arg("check")
        .output()
        .expect("run tdbtool");
    let text = String::from_utf8_lossy(&check.stdout);
    assert!(
        text.contains("Database integrity is OK"),
        "tdbtool check: {text} {}",
        String::from_utf8_lossy(&check.stderr)
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn hammer_fcntl_locks() {
    hammer("fcntl", flags::INCOMPATIBLE_HASH | flags::NOSYNC);
}

#[test]
fn hammer_mutex_locks() {
    hammer(
        "mutex",
        flags::CLEAR_IF_FIRST | flags::INCOMPATIBLE_HASH | flags::NOSYNC | flags::MUTEX_LOCKING,
    );
}

/// Property: a handle whose mapping predates another process's file growth
/// still allocates correctly: libtdb grows the file and merges the new
/// space into the free record at the data start, which then extends beyond
/// our old mapping; our next allocation walks the free list and must remap
/// (as libtdb's `tdb_oob` re-reads the file size before declaring an offset
/// out of bounds) rather than call the file corrupt. This is the
/// deterministic form of a rare `hammer_mutex_locks` failure ("free record
/// extends beyond end of file" at the data start).
#[test]
fn free_record_grown_by_libtdb() {
    let dir = temp_dir("grown");
    let path = dir.join("grown.tdb");
    let tdb_flags = flags::INCOMPATIBLE_HASH | flags::NOSYNC;
    let db = Database::open(
        &path,
        &OpenOptions::new().hash_size(HASH_SIZE).tdb_flags(tdb_flags),
    )
    .unwrap();
    let mut h = db.handle().unwrap();
    h.store(b"first", &[1u8; 100], StoreFlag::Replace).unwrap();
    h.delete(b"first").unwrap();
    let size_before = std::fs::metadata(&path).unwrap().len();
    let out = Command::new("/usr/bin/python3")
        .arg("-c")
        .arg(
            "import os, sys, tdb\n\
             t = tdb.Tdb(sys.argv[1], 0, int(sys.argv[2]), os.O_RDWR, 0o600)\n\
             t.store(b'big', b'x' * 200000, tdb.REPLACE)\n\
             t.delete(b'big')\n\
             t.close()\n",
        )
        .arg(&path)
        .arg(tdb_flags.to_string())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        std::fs::metadata(&path).unwrap().len() > size_before,
        "libtdb did not grow the file"
    );
    h.store(b"second", &[2u8; 200], StoreFlag::Replace)
        .expect("store after libtdb grew the file");
    assert_eq!(
        h.fetch(b"second").unwrap().as_deref(),
        Some(&[2u8; 200][..])
    );
    drop(h);
    drop(db);
    std::fs::remove_dir_all(dir).unwrap();
}
