//! engine-bench: ctdb-engine against the system libtdb 1.4, same machine,
//! same run, same file parameters.
//!
//! Why: the engine replaces libtdb inside ctdbd, so it must be at least as
//! fast per core, and scale with cores where libtdb cannot (one process,
//! one lock domain). libtdb is loaded at run time with `dlopen
//! ("libtdb.so.1")` so no -dev package is needed.
//!
//! Phases per backend (each runs for `--seconds`, at least one pass; each
//! table is the best of `--repeat` interleaved runs, since the machine may be
//! shared; the one-core tables are timed with the thread's CPU time by
//! default, `--clock wall` for the wall clock):
//! store (REPLACE over the key set), fetch, traverse (records visited),
//! delete (the pass deleting all keys is timed; refilling is not).
//! Output: tables `op | libtdb ops/s | engine ops/s | ratio` for one core
//! with fcntl locks, with `TDB_MUTEX_LOCKING` and with NOLOCK (CTDB volatile
//! flags otherwise: CLEAR_IF_FIRST, NOSYNC, INCOMPATIBLE_HASH), and the
//! engine on one core against all cores (threads pinned, each on its own
//! partition).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use clap::Parser;

#[derive(Parser, Debug, Clone)]
#[command(about = "Benchmark ctdb-engine against libtdb 1.4 (dlopen libtdb.so.1)")]
struct Args {
    /// Number of records in the working set.
    #[arg(long, default_value_t = 100_000)]
    records: u32,
    /// Seconds per phase (store, fetch, traverse, delete) and backend.
    #[arg(long, default_value_t = 1.0)]
    seconds: f64,
    /// Cores for the multi-core engine run (0 = all online CPUs).
    #[arg(long, default_value_t = 0)]
    cores: usize,
    /// Hash chains (ctdbd's DatabaseHashSize default).
    #[arg(long, default_value_t = 100_001)]
    hash_size: u32,
    /// Value size in bytes (24-byte ctdb header + data in ctdbd).
    #[arg(long, default_value_t = 88)]
    value_size: usize,
    /// Runs per table; each figure is the best run (interleaved).
    #[arg(long, default_value_t = 3)]
    repeat: u32,
    /// Directory for the database files (default: the temp dir).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Quick run for CI (~2 s): 5000 records, 0.05 s phases.
    #[arg(long)]
    smoke: bool,
    /// Run only one side (for profiling, e.g. under callgrind): `engine` or
    /// `libtdb` prints that side's rates only; `scaling` only the engine's
    /// one core against `--cores` table for `--locking`.
    #[arg(long, value_parser = ["engine", "libtdb", "scaling"])]
    only: Option<String>,
    /// With `--only`: the locking mode to run (`fcntl`, `mutex`, `nolock`).
    #[arg(long, default_value = "mutex", value_parser = ["fcntl", "mutex", "nolock"])]
    locking: String,
    /// Run exactly this many passes over the key set per phase instead of
    /// `--seconds` (repeatable operation counts for instruction profiles).
    #[arg(long)]
    passes: Option<u32>,
    /// Phases to run after the first (store) phase, comma separated
    /// (`fetch,traverse,delete` by default); skipped phases report 0.
    #[arg(long, value_delimiter = ',', default_values = ["fetch", "traverse", "delete"],
          value_parser = ["fetch", "traverse", "delete"])]
    phases: Vec<String>,
    /// Dead records kept per chain for reuse, on both sides
    /// (`tdb_set_max_dead`; ctdbd sets its DatabaseMaxDead tunable, 5, on
    /// volatile databases). 0: libtdb's default.
    #[arg(long, default_value_t = 0)]
    max_dead: u32,
    /// Clock of the one-core tables: `cpu` (the thread's CPU time, user +
    /// system; time spent preempted by other jobs on a shared machine is not
    /// counted) or `wall`. The scaling tables always use the wall clock.
    #[arg(long, default_value = "cpu", value_parser = ["cpu", "wall"])]
    clock: String,
    /// With `--only engine`: before each store and fetch, call
    /// `CoreStore::prefetch` for the key of the next operation (what a
    /// server with queued requests can do; libtdb has no such call, so this
    /// is not a like-for-like comparison and is refused otherwise).
    #[arg(long)]
    prefetch_next: bool,
}

/// One key-value backend under test.
trait Backend {
    fn store(&mut self, key: &[u8], val: &[u8]) -> Result<(), String>;
    /// Returns the value length (to keep the fetch honest).
    fn fetch(&mut self, key: &[u8]) -> Result<Option<usize>, String>;
    fn delete(&mut self, key: &[u8]) -> Result<(), String>;
    /// Returns the number of records visited.
    fn traverse(&mut self) -> Result<u64, String>;
    /// Hint that `key` comes next (`--prefetch-next`; no-op by default).
    fn prefetch(&mut self, _key: &[u8]) {}
}

fn key_of(i: u32) -> Vec<u8> {
    format!("bench-key-{i:08}").into_bytes()
}

fn value_of(i: u32, size: usize) -> Vec<u8> {
    let mut v = vec![(i % 251) as u8; size];
    if size >= 4 {
        v[..4].copy_from_slice(&i.to_le_bytes());
    }
    v
}

/// ops/s of each phase.
#[derive(Clone, Copy, Debug, Default)]
struct Rates {
    store: f64,
    fetch: f64,
    traverse: f64,
    delete: f64,
}

impl Rates {
    fn add(&mut self, o: &Rates) {
        self.store += o.store;
        self.fetch += o.fetch;
        self.traverse += o.traverse;
        self.delete += o.delete;
    }

    fn max(&mut self, o: &Rates) {
        self.store = self.store.max(o.store);
        self.fetch = self.fetch.max(o.fetch);
        self.traverse = self.traverse.max(o.traverse);
        self.delete = self.delete.max(o.delete);
    }
}

/// Best of `n` runs of the pair (a, b), interleaved so that background load
/// hits both sides alike.
fn best_of(
    n: u32,
    mut a: impl FnMut() -> Result<Rates, String>,
    mut b: impl FnMut() -> Result<Rates, String>,
) -> Result<(Rates, Rates), String> {
    let (mut ra, mut rb) = (Rates::default(), Rates::default());
    for _ in 0..n.max(1) {
        ra.max(&a()?);
        rb.max(&b()?);
    }
    Ok((ra, rb))
}

/// Which clock times the phases.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Clock {
    /// `CLOCK_THREAD_CPUTIME_ID`: CPU time of the measuring thread.
    ThreadCpu,
    /// `Instant` (monotonic wall clock).
    Wall,
}

/// A stopwatch on a [`Clock`].
#[derive(Clone, Copy, Debug)]
struct Stopwatch {
    clock: Clock,
    wall: Instant,
    cpu: Duration,
}

impl Stopwatch {
    fn start(clock: Clock) -> Stopwatch {
        Stopwatch {
            clock,
            wall: Instant::now(),
            cpu: if clock == Clock::ThreadCpu {
                ffi::thread_cpu_time()
            } else {
                Duration::ZERO
            },
        }
    }

    fn elapsed(&self) -> Duration {
        match self.clock {
            Clock::Wall => self.wall.elapsed(),
            Clock::ThreadCpu => ffi::thread_cpu_time().saturating_sub(self.cpu),
        }
    }
}

/// How long each phase runs: for `secs` seconds (at least one pass), or
/// for exactly `passes` passes over the key set.
#[derive(Clone, Copy, Debug)]
struct Budget {
    clock: Clock,
    secs: f64,
    passes: Option<u32>,
    fetch: bool,
    traverse: bool,
    delete: bool,
    prefetch_next: bool,
}

impl Budget {
    fn of(args: &Args) -> Budget {
        Budget {
            clock: if args.clock == "wall" {
                Clock::Wall
            } else {
                Clock::ThreadCpu
            },
            secs: args.seconds,
            passes: args.passes.map(|p| p.max(1)),
            fetch: args.phases.iter().any(|p| p == "fetch"),
            traverse: args.phases.iter().any(|p| p == "traverse"),
            delete: args.phases.iter().any(|p| p == "delete"),
            prefetch_next: args.prefetch_next,
        }
    }

    /// Is the phase over after `done` passes taking `elapsed`?
    fn over(&self, done: u32, elapsed: Duration) -> bool {
        match self.passes {
            Some(p) => done >= p,
            None => elapsed >= Duration::from_secs_f64(self.secs),
        }
    }
}

/// Run the four phases over `keys` (the backend's own key set).
fn run_phases(
    b: &mut dyn Backend,
    keys: &[(Vec<u8>, Vec<u8>)],
    budget: Budget,
) -> Result<Rates, String> {
    let mut r = Rates::default();

    // store
    let start = Stopwatch::start(budget.clock);
    let mut ops = 0u64;
    let mut passes = 0u32;
    loop {
        if budget.prefetch_next {
            for (i, (k, v)) in keys.iter().enumerate() {
                if let Some((next, _)) = keys.get(i + 1) {
                    b.prefetch(next);
                }
                b.store(k, v)?;
            }
        } else {
            for (k, v) in keys {
                b.store(k, v)?;
            }
        }
        ops += keys.len() as u64;
        passes += 1;
        if budget.over(passes, start.elapsed()) {
            break;
        }
    }
    r.store = ops as f64 / start.elapsed().as_secs_f64();

    if budget.fetch {
        r.fetch = fetch_phase(b, keys, budget)?;
    }
    if budget.traverse {
        r.traverse = traverse_phase(b, keys, budget)?;
    }
    if budget.delete {
        r.delete = delete_phase(b, keys, budget)?;
    }
    Ok(r)
}

/// Fetch in strided order (consecutive fetches hit different chains).
fn fetch_phase(
    b: &mut dyn Backend,
    keys: &[(Vec<u8>, Vec<u8>)],
    budget: Budget,
) -> Result<f64, String> {
    let start = Stopwatch::start(budget.clock);
    let mut ops = 0u64;
    let n = keys.len();
    let stride = 7919 % n.max(1);
    let stride = if stride == 0 { 1 } else { stride };
    let mut passes = 0u32;
    'outer: loop {
        let mut idx = 0usize;
        for _ in 0..n {
            let (k, v) = &keys[idx];
            let next = (idx + stride) % n;
            if budget.prefetch_next {
                b.prefetch(&keys[next].0);
            }
            match b.fetch(k)? {
                Some(len) if len == v.len() => {}
                other => return Err(format!("fetch of key {idx}: got {other:?}")),
            }
            idx = next;
            ops += 1;
            if budget.passes.is_none() && ops & 4095 == 0 && budget.over(0, start.elapsed()) {
                break 'outer;
            }
        }
        passes += 1;
        if budget.over(passes, start.elapsed()) {
            break;
        }
    }
    Ok(ops as f64 / start.elapsed().as_secs_f64())
}

fn traverse_phase(
    b: &mut dyn Backend,
    keys: &[(Vec<u8>, Vec<u8>)],
    budget: Budget,
) -> Result<f64, String> {
    let start = Stopwatch::start(budget.clock);
    let mut ops = 0u64;
    let mut passes = 0u32;
    loop {
        let seen = b.traverse()?;
        if seen != keys.len() as u64 {
            return Err(format!(
                "traverse saw {seen} records, expected {}",
                keys.len()
            ));
        }
        ops += seen;
        passes += 1;
        if budget.over(passes, start.elapsed()) {
            break;
        }
    }
    Ok(ops as f64 / start.elapsed().as_secs_f64())
}

/// Delete every key (timed), refill (untimed), repeat.
fn delete_phase(
    b: &mut dyn Backend,
    keys: &[(Vec<u8>, Vec<u8>)],
    budget: Budget,
) -> Result<f64, String> {
    let mut timed = Duration::ZERO;
    let mut ops = 0u64;
    let wall = Instant::now();
    let mut passes = 0u32;
    loop {
        let t = Stopwatch::start(budget.clock);
        for (k, _) in keys {
            b.delete(k)?;
        }
        timed += t.elapsed();
        ops += keys.len() as u64;
        passes += 1;
        let over = match budget.passes {
            Some(p) => passes >= p,
            None => {
                let secs = Duration::from_secs_f64(budget.secs);
                wall.elapsed() >= secs * 2 || timed >= secs
            }
        };
        if over {
            break;
        }
        for (k, v) in keys {
            b.store(k, v)?;
        }
    }
    Ok(ops as f64 / timed.as_secs_f64())
}

/// All FFI of this benchmark: libtdb through dlopen/dlsym, and CPU pinning.
mod ffi {
    use std::ffi::{c_char, c_int, c_uint, c_void, CStr, CString};
    use std::path::Path;

    /// `TDB_DATA`: `{ unsigned char *dptr; size_t dsize; }`, passed by value.
    #[repr(C)]
    #[derive(Clone, Copy)]
    pub struct TdbData {
        pub dptr: *mut u8,
        pub dsize: usize,
    }

    type TraverseFn = unsafe extern "C" fn(*mut c_void, TdbData, TdbData, *mut c_void) -> c_int;
    type OpenFn = unsafe extern "C" fn(*const c_char, c_int, c_int, c_int, c_uint) -> *mut c_void;
    type StoreFn = unsafe extern "C" fn(*mut c_void, TdbData, TdbData, c_int) -> c_int;
    type FetchFn = unsafe extern "C" fn(*mut c_void, TdbData) -> TdbData;
    type DeleteFn = unsafe extern "C" fn(*mut c_void, TdbData) -> c_int;
    type TravFn = unsafe extern "C" fn(*mut c_void, Option<TraverseFn>, *mut c_void) -> c_int;
    type CloseFn = unsafe extern "C" fn(*mut c_void) -> c_int;
    type FreeFn = unsafe extern "C" fn(*mut c_void);
    type MaxDeadFn = unsafe extern "C" fn(*mut c_void, c_int);

    pub const TDB_REPLACE: c_int = 1;

    /// The libtdb entry points.
    pub struct LibTdb {
        open: OpenFn,
        store: StoreFn,
        fetch: FetchFn,
        delete: DeleteFn,
        traverse: TravFn,
        close: CloseFn,
        free: FreeFn,
        set_max_dead: MaxDeadFn,
    }

    fn sym(handle: *mut c_void, name: &CStr) -> Result<*mut c_void, String> {
        // SAFETY: `handle` is a live dlopen handle (never closed) and `name`
        // a NUL-terminated string.
        let p = unsafe { libc::dlsym(handle, name.as_ptr()) };
        if p.is_null() {
            Err(format!("libtdb.so.1 has no symbol {name:?}"))
        } else {
            Ok(p)
        }
    }

    impl LibTdb {
        /// dlopen the system libtdb (kept loaded for the process lifetime).
        pub fn load() -> Result<LibTdb, String> {
            // SAFETY: dlopen with a constant NUL-terminated name; the library
            // is a well-formed system library whose constructors are benign.
            let h = unsafe { libc::dlopen(c"libtdb.so.1".as_ptr(), libc::RTLD_NOW) };
            if h.is_null() {
                return Err("cannot dlopen libtdb.so.1 (install libtdb1)".into());
            }
            let libc_h = {
                // SAFETY: as above, libc is always loadable.
                let p = unsafe { libc::dlopen(c"libc.so.6".as_ptr(), libc::RTLD_NOW) };
                if p.is_null() {
                    return Err("cannot dlopen libc.so.6".into());
                }
                p
            };
            // SAFETY: each symbol is transmuted to the C prototype declared
            // in tdb.h (tdb 1.4 ABI) / stdlib.h; function pointers and data
            // pointers have the same size on this platform.
            unsafe {
                Ok(LibTdb {
                    open: std::mem::transmute::<*mut c_void, OpenFn>(sym(h, c"tdb_open")?),
                    store: std::mem::transmute::<*mut c_void, StoreFn>(sym(h, c"tdb_store")?),
                    fetch: std::mem::transmute::<*mut c_void, FetchFn>(sym(h, c"tdb_fetch")?),
                    delete: std::mem::transmute::<*mut c_void, DeleteFn>(sym(h, c"tdb_delete")?),
                    traverse: std::mem::transmute::<*mut c_void, TravFn>(sym(h, c"tdb_traverse")?),
                    close: std::mem::transmute::<*mut c_void, CloseFn>(sym(h, c"tdb_close")?),
                    free: std::mem::transmute::<*mut c_void, FreeFn>(sym(libc_h, c"free")?),
                    set_max_dead: std::mem::transmute::<*mut c_void, MaxDeadFn>(sym(
                        h,
                        c"tdb_set_max_dead",
                    )?),
                })
            }
        }
    }

    /// An open libtdb database.
    pub struct Tdb<'l> {
        lib: &'l LibTdb,
        ctx: *mut c_void,
    }

    fn data(b: &[u8]) -> TdbData {
        TdbData {
            dptr: b.as_ptr() as *mut u8,
            dsize: b.len(),
        }
    }

    unsafe extern "C" fn count_cb(
        _t: *mut c_void,
        _k: TdbData,
        _d: TdbData,
        state: *mut c_void,
    ) -> c_int {
        // SAFETY: `state` is the `&mut u64` passed by `Tdb::traverse`, alive
        // for the whole tdb_traverse call.
        unsafe { *state.cast::<u64>() += 1 };
        0
    }

    impl<'l> Tdb<'l> {
        pub fn open(
            lib: &'l LibTdb,
            path: &Path,
            hash_size: u32,
            flags: i32,
        ) -> Result<Tdb<'l>, String> {
            let cpath = CString::new(path.as_os_str().as_encoded_bytes())
                .map_err(|_| format!("path {} contains NUL", path.display()))?;
            // SAFETY: valid C string; plain ints; tdb_open returns NULL or an
            // owned context that we close in Drop.
            let ctx = unsafe {
                (lib.open)(
                    cpath.as_ptr(),
                    hash_size as c_int,
                    flags,
                    libc::O_RDWR | libc::O_CREAT,
                    0o600,
                )
            };
            if ctx.is_null() {
                return Err(format!(
                    "tdb_open({}) failed: {}",
                    path.display(),
                    std::io::Error::last_os_error()
                ));
            }
            Ok(Tdb { lib, ctx })
        }

        /// `tdb_set_max_dead`.
        pub fn set_max_dead(&mut self, n: u32) {
            // SAFETY: `ctx` is open; the call only sets a field.
            unsafe { (self.lib.set_max_dead)(self.ctx, n.min(i32::MAX as u32) as c_int) }
        }

        pub fn store(&mut self, k: &[u8], v: &[u8]) -> Result<(), String> {
            // SAFETY: `ctx` is open; key/value point to live slices that
            // libtdb only reads during the call.
            let rc = unsafe { (self.lib.store)(self.ctx, data(k), data(v), TDB_REPLACE) };
            if rc == 0 {
                Ok(())
            } else {
                Err("tdb_store failed".into())
            }
        }

        pub fn fetch(&mut self, k: &[u8]) -> Result<Option<usize>, String> {
            // SAFETY: as in store; the returned buffer is malloc'd by libtdb
            // and freed here exactly once with the C library's free.
            unsafe {
                let d = (self.lib.fetch)(self.ctx, data(k));
                if d.dptr.is_null() {
                    return Ok(None);
                }
                let len = d.dsize;
                (self.lib.free)(d.dptr.cast());
                Ok(Some(len))
            }
        }

        pub fn delete(&mut self, k: &[u8]) -> Result<(), String> {
            // SAFETY: as in store.
            let rc = unsafe { (self.lib.delete)(self.ctx, data(k)) };
            if rc == 0 {
                Ok(())
            } else {
                Err("tdb_delete failed".into())
            }
        }

        pub fn traverse(&mut self) -> Result<u64, String> {
            let mut n = 0u64;
            // SAFETY: the callback matches tdb_traverse_func and only
            // increments the counter behind `state`, which outlives the call.
            let rc = unsafe {
                (self.lib.traverse)(self.ctx, Some(count_cb), (&mut n as *mut u64).cast())
            };
            if rc < 0 {
                Err("tdb_traverse failed".into())
            } else {
                Ok(n)
            }
        }
    }

    impl Drop for Tdb<'_> {
        fn drop(&mut self) {
            // SAFETY: `ctx` came from tdb_open and is closed exactly once.
            unsafe {
                (self.lib.close)(self.ctx);
            }
        }
    }

    /// CPU time (user + system) consumed by the calling thread.
    pub fn thread_cpu_time() -> std::time::Duration {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: `ts` is a valid, writable timespec; the clock id is a
        // constant every Linux kernel supports.
        let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
        if rc != 0 {
            return std::time::Duration::ZERO;
        }
        std::time::Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
    }

    /// Pin the calling thread to `cpu`.
    pub fn pin_to_cpu(cpu: usize) -> Result<(), String> {
        // SAFETY: cpu_set_t is a plain bitmask for which zeroed is valid;
        // CPU_SET writes inside it (cpu is checked against its capacity);
        // sched_setaffinity(0, ..) reads it for the calling thread.
        unsafe {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            if cpu >= 8 * std::mem::size_of::<libc::cpu_set_t>() {
                return Err(format!("cpu {cpu} out of range"));
            }
            libc::CPU_SET(cpu, &mut set);
            if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
                return Err(format!(
                    "sched_setaffinity({cpu}): {}",
                    std::io::Error::last_os_error()
                ));
            }
        }
        Ok(())
    }
}

/// TDB open flags (tdb.h).
const TDB_CLEAR_IF_FIRST: i32 = 1;
const TDB_NOLOCK: i32 = 4;
const TDB_NOSYNC: i32 = 64;
const TDB_INCOMPATIBLE_HASH: i32 = 2048;
const TDB_MUTEX_LOCKING: i32 = 4096;

struct LibTdbBackend<'l>(ffi::Tdb<'l>);

impl Backend for LibTdbBackend<'_> {
    fn store(&mut self, key: &[u8], val: &[u8]) -> Result<(), String> {
        self.0.store(key, val)
    }
    fn fetch(&mut self, key: &[u8]) -> Result<Option<usize>, String> {
        self.0.fetch(key)
    }
    fn delete(&mut self, key: &[u8]) -> Result<(), String> {
        self.0.delete(key)
    }
    fn traverse(&mut self) -> Result<u64, String> {
        self.0.traverse()
    }
}

fn fresh_path(dir: &Path, name: &str) -> PathBuf {
    let p = dir.join(name);
    let _ = std::fs::remove_file(&p);
    p
}

/// How both sides lock: the same tdb flags are passed to each.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Locking {
    /// fcntl byte-range locks (libtdb: POSIX, engine: OFD).
    Fcntl,
    /// `TDB_NOLOCK`.
    NoLock,
    /// `TDB_MUTEX_LOCKING` robust mutexes (ctdbd's volatile databases).
    Mutex,
}

impl Locking {
    /// CTDB volatile-database flags plus the locking mode.
    fn tdb_flags(self) -> i32 {
        let base = TDB_CLEAR_IF_FIRST | TDB_NOSYNC | TDB_INCOMPATIBLE_HASH;
        match self {
            Locking::Fcntl => base,
            Locking::NoLock => base | TDB_NOLOCK,
            Locking::Mutex => base | TDB_MUTEX_LOCKING,
        }
    }

    fn file_name(self, who: &str) -> String {
        format!("{who}-{self:?}.tdb").to_lowercase()
    }
}

fn libtdb_rates(
    lib: &ffi::LibTdb,
    args: &Args,
    dir: &Path,
    mode: Locking,
) -> Result<Rates, String> {
    let flags = mode.tdb_flags();
    let path = fresh_path(dir, &mode.file_name("libtdb"));
    let keys: Vec<_> = (0..args.records)
        .map(|i| (key_of(i), value_of(i, args.value_size)))
        .collect();
    let mut b = LibTdbBackend(ffi::Tdb::open(lib, &path, args.hash_size, flags)?);
    if args.max_dead > 0 {
        b.0.set_max_dead(args.max_dead);
    }
    let r = run_phases(&mut b, &keys, Budget::of(args))?;
    drop(b);
    let _ = std::fs::remove_file(&path);
    Ok(r)
}

fn print_table(title: &str, cols: (&str, &str), lib: &Rates, eng: &Rates) {
    println!("{title}");
    println!("| op       | {:>14} | {:>14} | ratio |", cols.0, cols.1);
    println!("|----------|---------------:|---------------:|------:|");
    for (name, a, b) in [
        ("store", lib.store, eng.store),
        ("fetch", lib.fetch, eng.fetch),
        ("delete", lib.delete, eng.delete),
        ("traverse", lib.traverse, eng.traverse),
    ] {
        let ratio = if a > 0.0 { b / a } else { f64::NAN };
        println!("| {name:<8} | {a:>14.0} | {b:>14.0} | {ratio:>5.2} |");
    }
    println!();
}

fn main() {
    let mut args = Args::parse();
    if args.smoke {
        args.records = args.records.min(5000);
        args.seconds = 0.05;
        args.repeat = 1;
        args.hash_size = args.hash_size.min(10_007);
    }
    if let Err(e) = run(&args) {
        eprintln!("engine-bench: {e}");
        std::process::exit(1);
    }
}

fn run(args: &Args) -> Result<(), String> {
    if args.records == 0 || args.hash_size == 0 || args.seconds.is_nan() || args.seconds <= 0.0 {
        return Err("--records, --hash-size and --seconds must be positive".into());
    }
    if args.prefetch_next && args.only.as_deref() != Some("engine") {
        return Err("--prefetch-next needs --only engine (libtdb has no prefetch)".into());
    }
    let base = args.dir.clone().unwrap_or_else(std::env::temp_dir);
    let dir = base.join(format!("engine-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
    let lib = ffi::LibTdb::load()?;
    if let Some(only) = &args.only {
        let mode = match args.locking.as_str() {
            "fcntl" => Locking::Fcntl,
            "nolock" => Locking::NoLock,
            _ => Locking::Mutex,
        };
        if only == "scaling" {
            let r = scaling_table(args, &dir, mode);
            let _ = std::fs::remove_dir_all(&dir);
            return r;
        }
        let r = if only == "libtdb" {
            libtdb_rates(&lib, args, &dir, mode)
        } else {
            engine::rates(args, &dir, mode)
        };
        let _ = std::fs::remove_dir_all(&dir);
        let r = r?;
        println!("{only}, one core, {mode:?}");
        for (name, v) in [
            ("store", r.store),
            ("fetch", r.fetch),
            ("delete", r.delete),
            ("traverse", r.traverse),
        ] {
            println!("| {name:<8} | {v:>14.0} | {:>8.1} ns/op |", 1e9 / v);
        }
        return Ok(());
    }
    let result = (|| {
        let n = args.repeat;
        let cols = ("libtdb ops/s", "engine ops/s");
        let (lt, en) = best_of(
            n,
            || libtdb_rates(&lib, args, &dir, Locking::Fcntl),
            || engine::rates(args, &dir, Locking::Fcntl),
        )?;
        print_table("one core, fcntl locks", cols, &lt, &en);
        let (lt, en) = best_of(
            n,
            || libtdb_rates(&lib, args, &dir, Locking::Mutex),
            || engine::rates(args, &dir, Locking::Mutex),
        )?;
        print_table("one core, TDB_MUTEX_LOCKING", cols, &lt, &en);
        let (lt, en) = best_of(
            n,
            || libtdb_rates(&lib, args, &dir, Locking::NoLock),
            || engine::rates(args, &dir, Locking::NoLock),
        )?;
        print_table("one core, NOLOCK", cols, &lt, &en);
        for mode in [Locking::Fcntl, Locking::Mutex] {
            scaling_table(args, &dir, mode)?;
        }
        Ok(())
    })();
    let _ = std::fs::remove_dir_all(&dir);
    result
}

/// The engine on one core against `--cores` pinned threads, each on its
/// own partition.
fn scaling_table(args: &Args, dir: &Path, mode: Locking) -> Result<(), String> {
    // Threads that wait for each other or for the kernel must show up in
    // the figures: wall clock, whatever `--clock` says.
    let args = &Args {
        clock: "wall".into(),
        ..args.clone()
    };
    let cores = engine::cores(args);
    let multi_col = format!("{cores} cores ops/s");
    let (single, multi) = best_of(
        args.repeat,
        || engine::rates(args, dir, mode),
        || engine::multi_core_rates(args, dir, cores, mode),
    )?;
    let what = match mode {
        Locking::Fcntl => "fcntl locks",
        Locking::Mutex => "TDB_MUTEX_LOCKING",
        Locking::NoLock => "NOLOCK",
    };
    print_table(
        &format!("engine scaling, {what}, {cores} pinned threads each on its own partition"),
        ("1 core ops/s", &multi_col),
        &single,
        &multi,
    );
    Ok(())
}

mod engine {
    use super::*;
    use ctdb_engine::{CoreStore, Database, OpenOptions, StoreFlag, Walk};

    pub fn cores(args: &Args) -> usize {
        if args.cores > 0 {
            args.cores
        } else {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        }
    }

    struct EngineBackend {
        st: CoreStore,
        buf: Vec<u8>,
    }

    impl Backend for EngineBackend {
        fn store(&mut self, key: &[u8], val: &[u8]) -> Result<(), String> {
            self.st
                .store(key, val, StoreFlag::Replace)
                .map_err(|e| format!("engine store: {e}"))
        }
        fn fetch(&mut self, key: &[u8]) -> Result<Option<usize>, String> {
            match self.st.fetch_into(key, &mut self.buf) {
                Ok(true) => Ok(Some(self.buf.len())),
                Ok(false) => Ok(None),
                Err(e) => Err(format!("engine fetch: {e}")),
            }
        }
        fn delete(&mut self, key: &[u8]) -> Result<(), String> {
            self.st
                .delete(key)
                .map_err(|e| format!("engine delete: {e}"))
        }
        fn prefetch(&mut self, key: &[u8]) {
            self.st.prefetch(key);
        }
        fn traverse(&mut self) -> Result<u64, String> {
            let mut n = 0u64;
            self.st
                .traverse(|_, _, _| {
                    n += 1;
                    Ok(Walk::Continue)
                })
                .map_err(|e| format!("engine traverse: {e}"))?;
            Ok(n)
        }
    }

    fn open(args: &Args, path: &Path, mode: Locking) -> Result<Database, String> {
        let f = mode.tdb_flags() as u32;
        Database::open(
            path,
            &OpenOptions::new()
                .hash_size(args.hash_size)
                .tdb_flags(f)
                .max_dead(args.max_dead),
        )
        .map_err(|e| format!("engine open {}: {e}", path.display()))
    }

    /// One core, one handle owning every chain.
    pub fn rates(args: &Args, dir: &Path, mode: Locking) -> Result<Rates, String> {
        let path = fresh_path(dir, &mode.file_name("engine"));
        let db = open(args, &path, mode)?;
        let keys: Vec<_> = (0..args.records)
            .map(|i| (key_of(i), value_of(i, args.value_size)))
            .collect();
        let st = db.handle().map_err(|e| format!("engine handle: {e}"))?;
        let mut b = EngineBackend {
            st,
            buf: Vec::new(),
        };
        let r = run_phases(&mut b, &keys, Budget::of(args))?;
        drop(b);
        drop(db);
        let _ = std::fs::remove_file(&path);
        Ok(r)
    }

    /// `cores` threads, each pinned to a CPU and working on its own
    /// partition (the keys whose chain it owns); rates are summed.
    pub fn multi_core_rates(
        args: &Args,
        dir: &Path,
        cores: usize,
        mode: Locking,
    ) -> Result<Rates, String> {
        let path = fresh_path(dir, &mode.file_name("engine-multi"));
        let db = open(args, &path, mode)?;
        let ncpu = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1);
        let mut per_core: Vec<Vec<(Vec<u8>, Vec<u8>)>> = vec![Vec::new(); cores];
        for i in 0..args.records {
            let k = key_of(i);
            per_core[db.owner_of(&k, cores)].push((k, value_of(i, args.value_size)));
        }
        let budget = Budget::of(args);
        let handles: Vec<_> = per_core
            .into_iter()
            .enumerate()
            .map(|(core, keys)| {
                let db = db.clone();
                std::thread::spawn(move || -> Result<Rates, String> {
                    ffi::pin_to_cpu(core % ncpu)?;
                    let st = db
                        .partition(core, cores)
                        .map_err(|e| format!("engine partition {core}: {e}"))?;
                    let mut b = EngineBackend {
                        st,
                        buf: Vec::new(),
                    };
                    if keys.is_empty() {
                        return Ok(Rates::default());
                    }
                    run_phases(&mut b, &keys, budget)
                })
            })
            .collect();
        let mut total = Rates::default();
        for h in handles {
            let r = h
                .join()
                .map_err(|_| "engine thread panicked".to_string())??;
            total.add(&r);
        }
        drop(db);
        let _ = std::fs::remove_file(&path);
        Ok(total)
    }
}
