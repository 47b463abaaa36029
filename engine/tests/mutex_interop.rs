//! Property: in `TDB_MUTEX_LOCKING` files our `MutexArea` and the system
//! libtdb 1.4 use the *same* robust pthread mutexes with the same protocol,
//! so they exclude each other, and a holder that dies (either side) does not
//! wedge the other.
//!
//! How: a real `/usr/bin/python3` process drives libtdb (`libtdb.so.1`
//! through ctypes, because python3-tdb exposes neither chain locks nor the
//! mutex flag) on a file it creates with `TDB_MUTEX_LOCKING`; this process
//! maps the same file's mutex area and try-locks while python holds chain
//! or allrecord locks, and vice versa. Death: python is SIGKILLed holding a
//! chain; then a child of ours (this test binary re-executed) is SIGKILLed
//! holding one and libtdb must get it.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::Duration;

use ctdb_engine::hash::jenkins_hash;
use ctdb_engine::sys::mutex::{LockKind, MutexArea};

const HASH_SIZE: u32 = 17;
const TIMEOUT: Duration = Duration::from_secs(20);

/// Line-oriented libtdb driver. Commands on stdin, one reply line each.
const PY_DRIVER: &str = r#"
import ctypes, os, sys
class TDB_DATA(ctypes.Structure):
    _fields_ = [("dptr", ctypes.c_void_p), ("dsize", ctypes.c_size_t)]
lib = ctypes.CDLL("libtdb.so.1")
lib.tdb_open.restype = ctypes.c_void_p
lib.tdb_open.argtypes = [ctypes.c_char_p, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_int]
for name in ("tdb_chainlock", "tdb_chainlock_nonblock", "tdb_chainunlock"):
    getattr(lib, name).argtypes = [ctypes.c_void_p, TDB_DATA]
for name in ("tdb_lockall", "tdb_lockall_nonblock", "tdb_unlockall", "tdb_close"):
    getattr(lib, name).argtypes = [ctypes.c_void_p]
TDB_CLEAR_IF_FIRST, TDB_INCOMPATIBLE_HASH, TDB_MUTEX_LOCKING = 1, 2048, 4096
bufs = []
def key(k):
    b = ctypes.create_string_buffer(k, len(k))
    bufs.append(b)
    return TDB_DATA(ctypes.cast(b, ctypes.c_void_p), len(k))
db = None
for line in sys.stdin:
    w = line.split()
    if not w:
        continue
    c = w[0]
    if c == "open":
        flags = TDB_CLEAR_IF_FIRST | TDB_INCOMPATIBLE_HASH | TDB_MUTEX_LOCKING
        db = lib.tdb_open(w[1].encode(), int(w[2]), flags, os.O_RDWR | os.O_CREAT, 0o600)
        r = 0 if db else -1
    elif c in ("tdb_chainlock", "tdb_chainlock_nonblock", "tdb_chainunlock"):
        r = getattr(lib, c)(db, key(w[1].encode()))
    elif c in ("tdb_lockall", "tdb_lockall_nonblock", "tdb_unlockall"):
        r = getattr(lib, c)(db)
    elif c == "exit":
        lib.tdb_close(db)
        print("bye", flush=True)
        break
    else:
        r = "unknown"
    print(r, flush=True)
"#;

/// Kills and reaps the child by PID when dropped.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

struct PyTdb {
    child: Reaped,
    stdin: ChildStdin,
    lines: Receiver<String>,
}

impl PyTdb {
    fn start(path: &Path) -> PyTdb {
        let mut child = Command::new("/usr/bin/python3")
            .arg("-c")
            .arg(PY_DRIVER)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn /usr/bin/python3");
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut py = PyTdb {
            child: Reaped(child),
            stdin,
            lines,
        };
        assert_eq!(py.cmd(&format!("open {} {HASH_SIZE}", path.display())), "0");
        py
    }

    fn cmd(&mut self, line: &str) -> String {
        writeln!(self.stdin, "{line}").expect("write to python");
        self.stdin.flush().unwrap();
        self.lines
            .recv_timeout(TIMEOUT)
            .unwrap_or_else(|_| panic!("python did not answer {line:?}"))
    }

    fn pid(&self) -> u32 {
        self.child.0.id()
    }
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "ctdb-engine-mutex-interop-{}-{name}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Map the mutex area of a libtdb-created file, reading hash_size and
/// mutex_size from its header copy at offset 0.
fn map_area(path: &Path) -> MutexArea {
    let mut f = File::options().read(true).write(true).open(path).unwrap();
    let mut hdr = [0u8; 168];
    f.read_exact(&mut hdr).unwrap();
    let u32_at = |o: usize| u32::from_le_bytes(hdr[o..o + 4].try_into().unwrap());
    assert_eq!(u32_at(40), 0x0BAD_1A52, "rwlocks = feature flag magic");
    assert_eq!(u32_at(60), 1, "feature_flags = mutex");
    assert_eq!(u32_at(36), HASH_SIZE);
    MutexArea::map(&f, u32_at(36), u32_at(64)).expect("map mutex area")
}

fn chain_of(key: &str) -> u32 {
    jenkins_hash(key.as_bytes()) % HASH_SIZE
}

fn is_busy(r: std::io::Result<ctdb_engine::sys::mutex::Acquired>) -> bool {
    match r {
        Err(e) => e.kind() == std::io::ErrorKind::WouldBlock,
        Ok(_) => false,
    }
}

#[test]
fn libtdb_and_engine_exclude_each_other() {
    let dir = temp_dir("exclude");
    let path = dir.join("mutex.tdb");
    let mut py = PyTdb::start(&path);
    let area = map_area(&path);
    let chain = chain_of("alpha");
    let other = chain_of("beta");
    assert_ne!(chain, other, "test keys must hash to different chains");

    // libtdb holds a chain: our try-lock fails, other chains are free.
    assert_eq!(py.cmd("tdb_chainlock alpha"), "0");
    assert!(is_busy(area.lock_chain(
        chain,
        LockKind::Write,
        false,
        false
    )));
    assert!(is_busy(area.lock_chain(
        chain,
        LockKind::Read,
        false,
        false
    )));
    assert!(is_busy(area.lock_all(LockKind::Write, false)));
    area.lock_chain(other, LockKind::Write, false, false)
        .unwrap();
    area.unlock_chain(other).unwrap();
    assert_eq!(py.cmd("tdb_chainunlock alpha"), "0");
    area.lock_chain(chain, LockKind::Write, false, false)
        .unwrap();

    // We hold the chain: libtdb's non-blocking chain lock and lockall fail.
    assert_eq!(py.cmd("tdb_chainlock_nonblock alpha"), "-1");
    assert_eq!(py.cmd("tdb_lockall_nonblock"), "-1");
    assert_eq!(py.cmd("tdb_chainlock_nonblock beta"), "0");
    assert_eq!(py.cmd("tdb_chainunlock beta"), "0");
    area.unlock_chain(chain).unwrap();
    assert_eq!(py.cmd("tdb_chainlock_nonblock alpha"), "0");
    assert_eq!(py.cmd("tdb_chainunlock alpha"), "0");

    // libtdb's allrecord lock (tdb_lockall) blocks every chain for us.
    assert_eq!(py.cmd("tdb_lockall"), "0");
    assert_eq!(area.allrecord_state(), Some(LockKind::Write));
    assert!(is_busy(area.lock_chain(
        chain,
        LockKind::Read,
        false,
        false
    )));
    assert!(is_busy(area.lock_chain(
        other,
        LockKind::Write,
        false,
        false
    )));
    assert!(is_busy(area.lock_all(LockKind::Read, false)));
    assert_eq!(py.cmd("tdb_unlockall"), "0");
    area.lock_chain(chain, LockKind::Write, false, false)
        .unwrap();
    area.unlock_chain(chain).unwrap();

    // Our allrecord lock blocks libtdb's chain locks; a blocking chain lock
    // there completes once we release.
    area.lock_all(LockKind::Write, false).unwrap();
    assert_eq!(py.cmd("tdb_chainlock_nonblock beta"), "-1");
    assert_eq!(py.cmd("tdb_lockall_nonblock"), "-1");
    writeln!(py.stdin, "tdb_chainlock beta").unwrap();
    py.stdin.flush().unwrap();
    assert!(
        py.lines.recv_timeout(Duration::from_millis(300)).is_err(),
        "libtdb got a chain lock during our allrecord lock"
    );
    area.unlock_all().unwrap();
    assert_eq!(py.lines.recv_timeout(TIMEOUT).unwrap(), "0");
    assert!(is_busy(area.lock_chain(
        other,
        LockKind::Write,
        false,
        false
    )));
    assert_eq!(py.cmd("tdb_chainunlock beta"), "0");

    assert_eq!(py.cmd("exit"), "bye");
    drop(py);
    drop(area);
    std::fs::remove_dir_all(dir).unwrap();
}

/// Run by `owner_death_both_ways` in a child process (this test binary
/// re-executed with `--ignored`): lock the chain named in the environment,
/// report, and wait to be killed.
#[test]
#[ignore = "helper process for owner_death_both_ways"]
fn helper_child_holds_chain() {
    let (Ok(path), Ok(chain)) = (
        std::env::var("CTDB_MUTEX_TEST_PATH"),
        std::env::var("CTDB_MUTEX_TEST_CHAIN"),
    ) else {
        return;
    };
    let area = map_area(Path::new(&path));
    let chain: u32 = chain.parse().unwrap();
    area.lock_chain(chain, LockKind::Write, true, false)
        .unwrap();
    println!("CHILD-LOCKED");
    std::io::stdout().flush().unwrap();
    std::thread::sleep(TIMEOUT);
    panic!("helper was not killed");
}

#[test]
fn owner_death_both_ways() {
    let dir = temp_dir("death");
    let path = dir.join("mutex.tdb");
    let mut keeper = PyTdb::start(&path); // keeps the file open (ACTIVE lock)
    let area = map_area(&path);
    let chain = chain_of("gamma");

    // A libtdb process dies holding the chain: we get it, flagged.
    let mut victim = PyTdb::start(&path);
    assert_eq!(victim.cmd("tdb_chainlock gamma"), "0");
    assert!(is_busy(area.lock_chain(
        chain,
        LockKind::Write,
        false,
        false
    )));
    let pid = victim.pid();
    let status = Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let _ = victim.child.0.wait();
    drop(victim);
    let got = area
        .lock_chain(chain, LockKind::Write, false, false)
        .unwrap();
    assert!(got.owner_died, "EOWNERDEAD not reported");
    area.unlock_chain(chain).unwrap();
    assert!(
        !area
            .lock_chain(chain, LockKind::Write, false, false)
            .unwrap()
            .owner_died
    );
    area.unlock_chain(chain).unwrap();

    // Our process dies holding the chain: libtdb gets it.
    let mut child = Reaped(
        Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "helper_child_holds_chain",
                "--ignored",
                "--nocapture",
            ])
            .env("CTDB_MUTEX_TEST_PATH", &path)
            .env("CTDB_MUTEX_TEST_CHAIN", chain.to_string())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let out = child.0.stdout.take().unwrap();
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            if line.contains("CHILD-LOCKED") {
                let _ = tx.send(());
            }
        }
    });
    rx.recv_timeout(TIMEOUT).expect("child did not lock");
    assert_eq!(keeper.cmd("tdb_chainlock_nonblock gamma"), "-1");
    assert!(is_busy(area.lock_chain(
        chain,
        LockKind::Write,
        false,
        false
    )));
    child.0.kill().unwrap();
    child.0.wait().unwrap();
    drop(child);
    assert_eq!(keeper.cmd("tdb_chainlock_nonblock gamma"), "0");
    assert!(is_busy(area.lock_chain(
        chain,
        LockKind::Write,
        false,
        false
    )));
    assert_eq!(keeper.cmd("tdb_chainunlock gamma"), "0");
    let got = area
        .lock_chain(chain, LockKind::Write, false, false)
        .unwrap();
    assert!(!got.owner_died, "libtdb should have made it consistent");
    area.unlock_chain(chain).unwrap();

    assert_eq!(keeper.cmd("exit"), "bye");
    drop(keeper);
    drop(area);
    std::fs::remove_dir_all(dir).unwrap();
}
