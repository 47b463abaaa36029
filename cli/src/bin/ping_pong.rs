//! `ping_pong`: the fcntl byte-range lock coherence and latency test of
//! Samba 4.17's CTDB toolbox, with the same options, output and exit codes.
//!
//! `ping_pong [-r] [-w] [-m] [-c] FILE NUM_LOCKS` takes a write lock on
//! byte 0, then forever: lock byte `i+1`, optionally read and/or increment
//! byte `i` (through `pread`/`pwrite` or, with `-m`, a shared mapping),
//! unlock byte `i`. Run on several nodes against one file with
//! `NUM_LOCKS` greater than the number of processes, the locks are passed
//! around like a token; once a second the rate is printed as
//! `"%8u locks/sec\r"`. With `-rw` each byte grows by one per process per
//! round, so a process prints `data increment = N` where N is the number
//! of processes; any other value means a write was lost or seen late (the
//! cluster file system's locks and data are not coherent). `-c` checks
//! with `F_GETLK` that nobody else holds the byte we just locked.
//! `ping_pong -l FILE` tests whether byte-range locks work at all.
//!
//! The locks are classic process-owned POSIX locks, as upstream takes, so
//! this tool and Samba's can run against each other.
#![deny(unsafe_code)]

#[path = "../tools/mod.rs"]
mod tools;

use std::ffi::OsString;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::process::ExitCode;
use std::time::Instant;

use tools::getopt::{self, Item, Style};
use tools::sys::{self, LockKind, SharedMap};

#[derive(Debug, Default, Clone, Copy)]
struct Opts {
    reads: bool,
    writes: bool,
    mmap: bool,
    check: bool,
    brl_test: bool,
}

/// Upstream writes everything to stdout and flushes after each line.
fn say(s: &str) {
    let mut o = io::stdout().lock();
    let _ = o.write_all(s.as_bytes());
    let _ = o.flush();
}

fn usage() {
    say("ping_pong -rwmc <file> <num_locks>\n\
ping_pong -l <file>\n\n\
Options\n \
-r    do reads\n \
-w    do writes\n \
-m    use mmap\n \
-c    check locks\n \
-l    test for working byte range locks\n");
}

/// C `atoi`: leading blanks, sign, digits; anything else ends the number
/// (out-of-range values wrap like glibc's `(int)strtol`).
fn atoi(s: &str) -> i32 {
    let t = s.trim_start_matches([' ', '\t', '\n', '\r', '\x0b', '\x0c']);
    let (neg, digits) = match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    let mut v: i64 = 0;
    for b in digits.bytes().take_while(u8::is_ascii_digit) {
        v = v.saturating_mul(10).saturating_add((b - b'0') as i64);
    }
    let v = if neg { -v } else { v };
    v as i32
}

fn lock(f: &File, off: i64, len: i64, wait: bool) -> io::Result<()> {
    sys::posix_lock(f, LockKind::Write, off, len, wait)
}

/// 0: we could lock the byte; 1: somebody holds it (reported); -1: error.
fn check_lock(f: &File, off: i64, len: i64) -> i32 {
    match sys::lock_holder(f, LockKind::Write, off, len) {
        Err(e) => {
            say(&format!(
                "error calling fcntl F_GETLCK: {}\n",
                tools::strerror(&e)
            ));
            -1
        }
        Ok(None) => 0,
        Ok(Some(h)) => {
            say(&format!(
                "check_lock failed: lock held: pid='{}', type='{}', start='{}', len='{}'\n",
                h.pid, h.kind, h.start as i32, h.len as i32
            ));
            1
        }
    }
}

fn ping_pong(f: &File, num_locks: usize, o: Opts) {
    if let Err(e) = f.set_len(num_locks as u64 + 1) {
        say(&format!("ftruncate failed: {}\n", tools::strerror(&e)));
        return;
    }
    let map = if o.mmap {
        match SharedMap::new(f, num_locks + 1) {
            Ok(m) => Some(m),
            Err(e) => {
                say(&format!("mmap failed: {}\n", tools::strerror(&e)));
                return;
            }
        }
    } else {
        None
    };
    let mut val: Vec<u8> = Vec::new();
    if val.try_reserve_exact(num_locks + 1).is_err() {
        say("calloc failed\n");
        return;
    }
    val.resize(num_locks + 1, 0);
    let mut count: u64 = 0;
    let mut loops: u64 = 0;
    let mut incr: u8 = 0;
    let mut last_incr: u8 = 0;
    let mut start = Instant::now();

    if let Err(e) = lock(f, 0, 1, true) {
        say(&format!(
            "initial lock at 0 failed! - {}\n",
            tools::strerror(&e)
        ));
        return;
    }
    let mut i = 0usize;
    loop {
        let next = (i + 1) % num_locks;
        if let Err(e) = lock(f, next as i64, 1, true) {
            say(&format!(
                "lock at {next} failed! - {}\n",
                tools::strerror(&e)
            ));
        }
        if o.check && check_lock(f, i as i64, 1) != 0 {
            return;
        }
        if o.reads {
            let mut c = [0u8; 1];
            match &map {
                Some(m) => c[0] = m.get(i),
                None => {
                    if f.read_at(&mut c, i as u64).ok() != Some(1) {
                        say(&format!("read failed at {i}\n"));
                    }
                }
            }
            incr = c[0].wrapping_sub(val[i]);
            val[i] = c[0];
        }
        if o.writes {
            let c = val[i].wrapping_add(1);
            match &map {
                Some(m) => m.set(i, c),
                None => {
                    if f.write_at(&[c], i as u64).ok() != Some(1) {
                        say(&format!("write failed at {i}\n"));
                    }
                }
            }
        }
        if let Err(e) = sys::posix_lock(f, LockKind::Unlock, i as i64, 1, true) {
            say(&format!(
                "unlock at {i} failed! - {}\n",
                tools::strerror(&e)
            ));
        }
        i = next;
        count += 1;
        if loops > num_locks as u64 && incr != last_incr {
            last_incr = incr;
            say(&format!("data increment = {incr}\n"));
        }
        let elapsed = start.elapsed().as_secs_f64();
        if elapsed > 1.0 {
            say(&format!(
                "{:8} locks/sec\r",
                (2.0 * count as f64 / elapsed) as u32
            ));
            start = Instant::now();
            count = 0;
        }
        loops += 1;
    }
}

fn run(args: &[OsString]) -> u8 {
    let prog = tools::argv0(args, "ping_pong");
    let (items, operands) = getopt::parse(args.get(1..).unwrap_or(&[]), "rwmcl", Style::Gnu);
    let mut o = Opts::default();
    for item in items {
        match item {
            Item::Opt('r', _) => o.reads = true,
            Item::Opt('w', _) => o.writes = true,
            Item::Opt('m', _) => o.mmap = true,
            Item::Opt('c', _) => o.check = true,
            Item::Opt('l', _) => o.brl_test = true,
            Item::Unknown(c) => {
                eprintln!("{prog}: invalid option -- '{c}'");
                eprintln!("Unknown option '?'");
                return 1;
            }
            Item::MissingArg(_) | Item::Opt(..) => {
                eprintln!("Unknown option '?'");
                return 1;
            }
        }
    }
    let Some(fname) = operands.first() else {
        usage();
        return 1;
    };
    let f = match OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(fname)
    {
        Ok(f) => f,
        Err(e) => {
            // Upstream exits silently here; say why on stderr.
            eprintln!(
                "{prog}: cannot open {}: {}",
                fname.to_string_lossy(),
                tools::strerror(&e)
            );
            return 1;
        }
    };
    if o.brl_test {
        if lock(&f, 0, 0, false).is_err() {
            say("file already locked, calling check_lock to tell us who has it locked:\n");
            check_lock(&f, 0, 0);
            say("Working POSIX byte range locks\n");
            return 0;
        }
        say("Holding lock, press any key to continue...\n");
        say("You should run the same command on another node now.\n");
        let mut b = [0u8; 1];
        let _ = io::stdin().read(&mut b);
        say("Good bye.\n");
        return 0;
    }
    let Some(n) = operands.get(1) else {
        usage();
        return 1;
    };
    let num_locks = atoi(&n.to_string_lossy());
    if num_locks <= 0 {
        say("num_locks should be > 0\n");
        return 1;
    }
    ping_pong(&f, num_locks as usize, o);
    0
}

fn main() -> ExitCode {
    sys::default_sigpipe();
    let args: Vec<OsString> = std::env::args_os().collect();
    ExitCode::from(run(&args))
}

#[cfg(test)]
mod tests {
    use super::atoi;

    #[test]
    fn atoi_like_c() {
        assert_eq!(atoi("3"), 3);
        assert_eq!(atoi("  12abc"), 12);
        assert_eq!(atoi("x"), 0);
        assert_eq!(atoi("-4"), -4);
        assert_eq!(atoi("+7"), 7);
    }
}
