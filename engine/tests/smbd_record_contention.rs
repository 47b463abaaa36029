//! Property: one hot record of a `TDB_MUTEX_LOCKING` file (smbd's
//! locking.tdb under cross-node contention) stays intact while libtdb
//! processes (flags 0x1c41 as smbd, max_dead 0) and engine handles (as
//! ctdbd: max_dead 5, one whole-file handle per thread) all read it and
//! rewrite it with values of changing length under its chain lock.
//!
//! How: every writer stores a self-describing value (24-byte ltdb header,
//! then `[u32 len][u32 seq][u8 writer]` and `len` pattern bytes); every
//! reader checks the value it finds under the chain lock before writing
//! its own. A torn or shifted value fails the test with its bytes.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ctdb_engine::{flags, Database, OpenOptions, StoreFlag};

const RUN: Duration = Duration::from_millis(3000);
const HASH_SIZE: u32 = 10007;
const KEY: &[u8] = b"\x00\xfe\x00\x00\x00\x00\x00\x00hot-record-key!!";

const PY: &str = r#"
import ctypes, os, sys, random, time
class TDB_DATA(ctypes.Structure):
    _fields_ = [("dptr", ctypes.c_void_p), ("dsize", ctypes.c_size_t)]
lib = ctypes.CDLL("libtdb.so.1")
libc = ctypes.CDLL("libc.so.6")
lib.tdb_open.restype = ctypes.c_void_p
lib.tdb_open.argtypes = [ctypes.c_char_p, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_int]
lib.tdb_fetch.restype = TDB_DATA
lib.tdb_fetch.argtypes = [ctypes.c_void_p, TDB_DATA]
lib.tdb_store.argtypes = [ctypes.c_void_p, TDB_DATA, TDB_DATA, ctypes.c_int]
lib.tdb_delete.argtypes = [ctypes.c_void_p, TDB_DATA]
lib.tdb_chainlock.argtypes = [ctypes.c_void_p, TDB_DATA]
lib.tdb_chainunlock.argtypes = [ctypes.c_void_p, TDB_DATA]
libc.free.argtypes = [ctypes.c_void_p]
path, secs, seed, who, key = sys.argv[1], float(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), bytes.fromhex(sys.argv[5])
db = lib.tdb_open(path.encode(), 0, 0x1c41, os.O_RDWR, 0o600)
if not db:
    print("open failed", flush=True); sys.exit(1)
kb = ctypes.create_string_buffer(key, len(key))
K = TDB_DATA(ctypes.cast(kb, ctypes.c_void_p), len(key))
rng = random.Random(seed)
def check(v):
    if v is None or len(v) == 0:
        return None
    if len(v) < 33:
        return "short value %d" % len(v)
    n = int.from_bytes(v[24:28], "little")
    seq = int.from_bytes(v[28:32], "little")
    if len(v) != 33 + n:
        return "length %d, header says %d" % (len(v), 33 + n)
    for i in range(n):
        if v[33 + i] != (seq + i) & 0xff:
            return "pattern broken at %d" % i
    return None
end = time.time() + secs
n = 0
while time.time() < end:
    lib.tdb_chainlock(db, K)
    d = lib.tdb_fetch(db, K)
    v = None
    if d.dptr:
        v = ctypes.string_at(d.dptr, d.dsize)
        libc.free(d.dptr)
    e = check(v)
    if e:
        print("BAD %s %s" % (e, v.hex()), flush=True)
        lib.tdb_chainunlock(db, K)
        sys.exit(1)
    n += 1
    if rng.random() < 0.05:
        lib.tdb_delete(db, K)
    else:
        ln = rng.choice([0, 8, 40, 120, 200, 330, 400, 700])
        seq = rng.randrange(1 << 32)
        body = bytes((seq + i) & 0xff for i in range(ln))
        val = n.to_bytes(8, "little") + who.to_bytes(4, "little") + bytes(12) + ln.to_bytes(4, "little") + seq.to_bytes(4, "little") + bytes([who]) + body
        vb = ctypes.create_string_buffer(val, len(val))
        lib.tdb_store(db, K, TDB_DATA(ctypes.cast(vb, ctypes.c_void_p), len(val)), 0)
    lib.tdb_chainunlock(db, K)
print("done %d" % n, flush=True)
"#;

struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "ctdb-engine-smbd-contention-{}-{name}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
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

fn check(v: &[u8]) -> Result<(), String> {
    if v.is_empty() {
        return Ok(());
    }
    if v.len() < 33 {
        return Err(format!("short value {}", v.len()));
    }
    let n = u32::from_le_bytes(v[24..28].try_into().unwrap()) as usize;
    let seq = u32::from_le_bytes(v[28..32].try_into().unwrap());
    if v.len() != 33 + n {
        return Err(format!("length {}, header says {}", v.len(), 33 + n));
    }
    for i in 0..n {
        if v[33 + i] != (seq.wrapping_add(i as u32) & 0xff) as u8 {
            return Err(format!("pattern broken at {i}"));
        }
    }
    Ok(())
}

fn value(rng: &mut Rng, who: u8, rsn: u64) -> Vec<u8> {
    const LENS: [usize; 8] = [0, 8, 40, 120, 200, 330, 400, 700];
    let ln = LENS[(rng.next() % 8) as usize];
    let seq = rng.next() as u32;
    let mut v = Vec::with_capacity(33 + ln);
    v.extend_from_slice(&rsn.to_le_bytes());
    v.extend_from_slice(&(who as u32).to_le_bytes());
    v.extend_from_slice(&[0u8; 12]);
    v.extend_from_slice(&(ln as u32).to_le_bytes());
    v.extend_from_slice(&seq.to_le_bytes());
    v.push(who);
    v.extend((0..ln).map(|i| (seq.wrapping_add(i as u32) & 0xff) as u8));
    v
}

#[test]
fn hot_record_with_libtdb_and_engine_writers() {
    let seed = std::env::var("CONTENTION_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5EED_C0DE_u64);
    let dir = temp_dir("hot");
    let path = dir.join("locking.tdb.0");
    let tflags = flags::CLEAR_IF_FIRST
        | flags::NOSYNC
        | flags::DISALLOW_NESTING
        | flags::INCOMPATIBLE_HASH
        | flags::MUTEX_LOCKING;
    let db = Database::open(
        &path,
        &OpenOptions::new()
            .hash_size(HASH_SIZE)
            .tdb_flags(tflags)
            .max_dead(5),
    )
    .expect("engine creates the file");
    let keyhex: String = KEY.iter().map(|b| format!("{b:02x}")).collect();
    let pys: Vec<Reaped> = (0..2)
        .map(|i| {
            Reaped(
                Command::new("/usr/bin/python3")
                    .arg("-c")
                    .arg(PY)
                    .arg(&path)
                    .arg(RUN.as_secs_f64().to_string())
                    .arg((seed + i).to_string())
                    .arg((10 + i).to_string())
                    .arg(&keyhex)
                    .stdout(Stdio::piped())
                    .spawn()
                    .expect("spawn python3"),
            )
        })
        .collect();
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let threads: Vec<_> = (0..2u8)
        .map(|t| {
            let db = db.clone();
            let stop = stop.clone();
            std::thread::spawn(move || -> Result<u64, String> {
                let mut h = db.handle().map_err(|e| e.to_string())?;
                let mut rng = Rng(seed ^ (0xABCD + t as u64));
                let mut n = 0u64;
                while start.elapsed() < RUN && !stop.load(Ordering::Relaxed) {
                    // As the daemon: non-blocking lock, retry shortly.
                    if !h.chainlock_nonblock(KEY).map_err(|e| e.to_string())? {
                        std::thread::sleep(Duration::from_micros(50));
                        continue;
                    }
                    let r = (|| -> Result<(), String> {
                        let v = h.fetch(KEY).map_err(|e| e.to_string())?;
                        if let Some(v) = &v {
                            check(v).map_err(|e| {
                                format!("engine thread {t} read a bad value ({e}): {v:02x?}")
                            })?;
                        }
                        n += 1;
                        // become_dmaster + call_local: two stores.
                        for _ in 0..=(rng.next() % 2) {
                            let nv = value(&mut rng, t, n);
                            h.store(KEY, &nv, StoreFlag::Replace)
                                .map_err(|e| e.to_string())?;
                        }
                        if rng.next().is_multiple_of(20) {
                            h.delete(KEY).map_err(|e| e.to_string())?;
                        }
                        Ok(())
                    })();
                    h.chainunlock(KEY).map_err(|e| e.to_string())?;
                    if let Err(e) = r {
                        stop.store(true, Ordering::Relaxed);
                        return Err(e);
                    }
                }
                Ok(n)
            })
        })
        .collect();
    let mut failures = Vec::new();
    let mut counts = Vec::new();
    for t in threads {
        match t.join().unwrap() {
            Ok(n) => counts.push(n),
            Err(e) => failures.push(e),
        }
    }
    for mut p in pys {
        let mut out = String::new();
        BufReader::new(p.0.stdout.take().unwrap())
            .read_line(&mut out)
            .unwrap();
        let _ = p.0.wait();
        if !out.starts_with("done") {
            failures.push(format!("python: {out}"));
        } else {
            counts.push(out.trim()[5..].parse().unwrap_or(0));
        }
    }
    eprintln!("seed {seed:#x}: rounds per writer {counts:?}");
    assert!(failures.is_empty(), "seed {seed:#x}: {failures:#?}");
    drop(db);
    let check = Command::new("tdbtool")
        .arg(&path)
        .arg("check")
        .output()
        .expect("run tdbtool");
    let text = String::from_utf8_lossy(&check.stdout);
    assert!(text.contains("Database integrity is OK"), "tdbtool: {text}");
    std::fs::remove_dir_all(dir).unwrap();
}
