//! Property: a process killed (SIGKILL) at any point while committing
//! engine transactions leaves a file that both the engine and libtdb open
//! at exactly the state before or after the interrupted transaction —
//! never a mix — and that `tdbtool check` accepts.
//!
//! How: a child (this test binary re-executed with `--ignored`) runs
//! transactions in a loop; transaction `c` sets `counter = c` and rewrites
//! a set of derived keys whose presence and values (of varying sizes, so
//! records move and the free list churns) are a function of `c`. After
//! each commit it reports `c` on stdout. The parent kills it after a random
//! delay (seeded; the seed is printed), then reopens the file — alternately
//! the engine first (its recovery) and python3-tdb first (libtdb's
//! recovery) — and checks with both that the counter is the last reported
//! value or the one after, that it never goes backwards, and that all
//! derived keys match the counter. Bounded: 200 kills or 60 s.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::{Duration, Instant};

use ctdb_engine::{flags, Database, OpenOptions, StoreFlag};

const HASH_SIZE: u32 = 31;
const DERIVED: u64 = 24;
const MAX_KILLS: u32 = 200;
const MAX_TIME: Duration = Duration::from_secs(60);
const TDB_FLAGS: u32 = flags::DISALLOW_NESTING;

/// The derived key `j` in the state after transaction `c`: None if absent.
fn derived_value(c: u64, j: u64) -> Option<Vec<u8>> {
    if (c + j).is_multiple_of(5) {
        return None;
    }
    let unit = format!("{c}:{j};");
    Some(unit.repeat(1 + ((c * 7 + j) % 13) as usize).into_bytes())
}

fn derived_key(j: u64) -> Vec<u8> {
    format!("derived-{j}").into_bytes()
}

/// The whole expected key set after transaction `c` (c = 0: empty file).
fn expected_state(c: u64) -> BTreeMap<Vec<u8>, Vec<u8>> {
    let mut m = BTreeMap::new();
    if c == 0 {
        return m;
    }
    m.insert(b"counter".to_vec(), c.to_string().into_bytes());
    for j in 0..DERIVED {
        if let Some(v) = derived_value(c, j) {
            m.insert(derived_key(j), v);
        }
    }
    m
}

/// splitmix64.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// The transaction loop, run in the child process until it is killed.
#[test]
#[ignore = "helper process for kill_during_transactions"]
fn helper_transaction_loop() {
    let Ok(path) = std::env::var("CTDB_CRASH_TEST_PATH") else {
        return;
    };
    let db = Database::open(
        &path,
        &OpenOptions::new()
            .hash_size(HASH_SIZE)
            .tdb_flags(TDB_FLAGS)
            .create(false),
    )
    .expect("child open");
    let mut h = db.handle().expect("child handle");
    let mut out = std::io::stdout().lock();
    loop {
        h.transaction_start().expect("transaction_start");
        let c = match h.fetch(b"counter").expect("fetch counter") {
            Some(v) => String::from_utf8(v).unwrap().parse::<u64>().unwrap(),
            None => 0,
        } + 1;
        h.store(b"counter", c.to_string().as_bytes(), StoreFlag::Replace)
            .expect("store counter");
        for j in 0..DERIVED {
            let k = derived_key(j);
            match derived_value(c, j) {
                Some(v) => h.store(&k, &v, StoreFlag::Replace).expect("store derived"),
                None => match h.delete(&k) {
                    Ok(()) | Err(ctdb_engine::Error::NotFound) => {}
                    Err(e) => panic!("delete derived: {e}"),
                },
            }
        }
        h.transaction_commit().expect("commit");
        writeln!(out, "committed {c}").unwrap();
        out.flush().unwrap();
    }
}

/// Long-lived libtdb reader: on "dump", open the file, print every record
/// as hex, close, print "end".
const PY_READER: &str = r#"
import os, sys, tdb
path = sys.argv[1]
for line in sys.stdin:
    if line.strip() != "dump":
        break
    try:
        t = tdb.Tdb(path, 0, tdb.DISALLOW_NESTING, os.O_RDWR, 0o600)
        for k in t.keys():
            print(k.hex(), t[k].hex())
        t.close()
    except Exception as e:
        print("error", repr(e).encode().hex())
    print("end", flush=True)
"#;

struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn lines_of(r: impl std::io::Read + Send + 'static) -> Receiver<String> {
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        for line in BufReader::new(r).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

struct PyReader {
    _child: Reaped,
    stdin: ChildStdin,
    lines: Receiver<String>,
}

impl PyReader {
    fn start(path: &Path) -> PyReader {
        let mut child = Command::new("/usr/bin/python3")
            .arg("-c")
            .arg(PY_READER)
            .arg(path)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn python3");
        let stdin = child.stdin.take().unwrap();
        let lines = lines_of(child.stdout.take().unwrap());
        PyReader {
            _child: Reaped(child),
            stdin,
            lines,
        }
    }

    fn dump(&mut self) -> Result<BTreeMap<Vec<u8>, Vec<u8>>, String> {
        writeln!(self.stdin, "dump").unwrap();
        self.stdin.flush().unwrap();
        let mut m = BTreeMap::new();
        loop {
            let line = self
                .lines
                .recv_timeout(Duration::from_secs(20))
                .map_err(|_| "python reader did not answer".to_string())?;
            if line == "end" {
                return Ok(m);
            }
            let (k, v) = line.split_once(' ').ok_or("bad python line")?;
            if k == "error" {
                return Err(format!("libtdb: {}", String::from_utf8_lossy(&unhex(v))));
            }
            m.insert(unhex(k), unhex(v));
        }
    }
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

fn engine_dump(path: &Path) -> Result<BTreeMap<Vec<u8>, Vec<u8>>, String> {
    let db = Database::open(
        path,
        &OpenOptions::new()
            .hash_size(HASH_SIZE)
            .tdb_flags(TDB_FLAGS)
            .create(false),
    )
    .map_err(|e| format!("engine open: {e}"))?;
    let mut h = db.handle().map_err(|e| e.to_string())?;
    let mut m = BTreeMap::new();
    h.traverse_read(|k, v| {
        m.insert(k.to_vec(), v.to_vec());
        ctdb_engine::Walk::Continue
    })
    .map_err(|e| format!("engine traverse: {e}"))?;
    Ok(m)
}

/// True if the file's header points at a recovery record whose magic is
/// valid, i.e. a commit was interrupted after its recovery data was sealed.
fn needs_recovery(path: &Path) -> bool {
    let bytes = std::fs::read(path).expect("read file");
    let word = |off: usize| {
        bytes
            .get(off..off + 4)
            .map(|b| u32::from_le_bytes(b.try_into().unwrap()))
    };
    match word(44) {
        Some(0) | None => false,
        Some(rec) => word(rec as usize + 20) == Some(0xF53B_C0E7),
    }
}

fn counter_of(m: &BTreeMap<Vec<u8>, Vec<u8>>) -> u64 {
    m.get(&b"counter"[..])
        .map(|v| String::from_utf8_lossy(v).parse().unwrap_or(u64::MAX))
        .unwrap_or(0)
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ctdb-engine-crash-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn kill_during_transactions() {
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let mut rng = Rng(seed);
    eprintln!("crash_kill seed {seed:#x}");
    let dir = temp_dir("kill");
    let path = dir.join("persistent.tdb");
    // Transaction 1 is committed here, not in a child: a kill during a
    // file's very first transaction leaves unreferenced space that libtdb's
    // own `tdb_check` rejects (its dead-space scan rereads one byte), and
    // libtdb killed at that point fails `tdbtool check` the same way.
    {
        let db = Database::open(
            &path,
            &OpenOptions::new().hash_size(HASH_SIZE).tdb_flags(TDB_FLAGS),
        )
        .expect("create");
        let mut h = db.handle().expect("handle");
        h.transaction_start().expect("first transaction");
        h.store(b"counter", b"1", StoreFlag::Replace).unwrap();
        for j in 0..DERIVED {
            if let Some(v) = derived_value(1, j) {
                h.store(&derived_key(j), &v, StoreFlag::Replace).unwrap();
            }
        }
        h.transaction_commit().expect("first commit");
    }
    let mut py = PyReader::start(&path);
    let exe = std::env::current_exe().unwrap();
    let started = Instant::now();
    let mut verified = 1u64;
    let mut kills = 0u32;
    let mut in_flight_kills = 0u32; // kills that landed before the child's first commit
    let mut recoveries = 0u32; // kills that left a valid recovery record
    while kills < MAX_KILLS && started.elapsed() < MAX_TIME {
        let mut child = Reaped(
            Command::new(&exe)
                .args([
                    "--exact",
                    "helper_transaction_loop",
                    "--ignored",
                    "--nocapture",
                ])
                .env("CTDB_CRASH_TEST_PATH", &path)
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn child"),
        );
        let lines = lines_of(child.0.stdout.take().unwrap());
        // Let it commit at least once most of the time, then kill it at a
        // random point of a later transaction.
        let mut last_reported = verified;
        let first = lines.recv_timeout(Duration::from_secs(10));
        if let Ok(l) = &first {
            if let Some(c) = l.strip_prefix("committed ") {
                last_reported = c.parse().unwrap();
            }
        } else {
            in_flight_kills += 1;
        }
        let delay_us = rng.next() % 20_000;
        std::thread::sleep(Duration::from_micros(delay_us));
        child.0.kill().unwrap();
        child.0.wait().unwrap();
        drop(child);
        kills += 1;
        // Drain what it reported before dying.
        while let Ok(l) = lines.recv_timeout(Duration::from_millis(200)) {
            if let Some(c) = l.strip_prefix("committed ") {
                last_reported = c.parse().unwrap();
            }
        }

        if needs_recovery(&path) {
            recoveries += 1;
        }
        let ctx = format!("seed {seed:#x}, kill {kills}, delay {delay_us} us, last reported {last_reported}, verified {verified}");
        let (first_view, second_view) = if kills.is_multiple_of(2) {
            let e = engine_dump(&path).unwrap_or_else(|e| panic!("{ctx}: {e}"));
            let p = py.dump().unwrap_or_else(|e| panic!("{ctx}: {e}"));
            (e, p)
        } else {
            let p = py.dump().unwrap_or_else(|e| panic!("{ctx}: {e}"));
            let e = engine_dump(&path).unwrap_or_else(|e| panic!("{ctx}: {e}"));
            (p, e)
        };
        assert_eq!(first_view, second_view, "{ctx}: engine and libtdb disagree");
        let c = counter_of(&first_view);
        assert!(
            c == last_reported || c == last_reported + 1,
            "{ctx}: counter {c} is neither the last reported commit nor the next"
        );
        assert!(c >= verified, "{ctx}: counter went backwards to {c}");
        assert_eq!(
            first_view,
            expected_state(c),
            "{ctx}: torn state at counter {c}"
        );
        verified = c;

        if kills.is_multiple_of(4) {
            let out = Command::new("tdbtool")
                .arg(&path)
                .arg("check")
                .output()
                .expect("tdbtool");
            let text = String::from_utf8_lossy(&out.stdout);
            assert!(
                text.contains("Database integrity is OK"),
                "{ctx}: tdbtool: {text} {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
    eprintln!(
        "crash_kill: {kills} kills in {:.1} s, {verified} transactions committed, \
         {recoveries} kills mid-commit (recovery needed), {in_flight_kills} before any commit",
        started.elapsed().as_secs_f64()
    );
    assert!(
        recoveries > 0,
        "no kill landed inside a commit: the test proved nothing"
    );
    assert!(kills >= 20, "too few kills ({kills}) to mean anything");
    assert!(verified >= 10, "child committed too little ({verified})");
    drop(py);
    std::fs::remove_dir_all(dir).unwrap();
}
