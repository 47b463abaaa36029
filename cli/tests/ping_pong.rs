//! `ping_pong` with real processes on a real file: our tool alone, two of
//! ours, ours against Debian's `/usr/bin/ping_pong` (they coordinate only
//! through fcntl locks on the file), the data-increment check catching a
//! write made out of turn, `-l`, `-c`, and usage/errors compared with
//! Debian's. Every process is stopped by its PID (kill + wait) within a
//! few seconds.

mod common;

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use common::TempDir;

const OURS: &str = env!("CARGO_BIN_EXE_ping_pong");
const DEBIAN: &str = "/usr/bin/ping_pong";
const PYTHON: &str = "/usr/bin/python3";

/// A running ping_pong whose stdout is collected; killed on drop.
struct Running {
    child: Option<Child>,
    reader: Option<JoinHandle<()>>,
    out: Arc<Mutex<String>>,
    name: String,
}

impl Running {
    /// Run `bin OPTIONS... FILE NUM_LOCKS`.
    fn start(bin: &str, opts: &[&str], file: &Path, num_locks: &str) -> Running {
        assert!(Path::new(bin).exists(), "{bin} is missing (install ctdb)");
        let mut child = Command::new(bin)
            .arg0("ping_pong")
            .args(opts)
            .arg(file)
            .arg(num_locks)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("start {bin}: {e}"));
        let mut pipe = child.stdout.take().expect("stdout");
        let out = Arc::new(Mutex::new(String::new()));
        let sink = out.clone();
        let reader = thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = pipe.read(&mut buf) {
                if n == 0 {
                    break;
                }
                if let Ok(mut s) = sink.lock() {
                    s.push_str(&String::from_utf8_lossy(&buf[..n]));
                }
            }
        });
        Running {
            child: Some(child),
            reader: Some(reader),
            out,
            name: format!("{bin} {opts:?} {num_locks}"),
        }
    }

    /// The output so far.
    fn output(&self) -> String {
        self.out.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Wait (at most `secs`) until the output satisfies `pred`.
    fn wait_for(&self, secs: u64, pred: impl Fn(&str) -> bool) -> bool {
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(secs) {
            if pred(&self.output()) {
                return true;
            }
            sleep_ms(20);
        }
        pred(&self.output())
    }

    /// Kill (it never exits by itself), reap, and return its output.
    fn stop(mut self) -> String {
        let mut child = self.child.take().expect("child");
        if let Ok(Some(st)) = child.try_wait() {
            panic!("{} exited early: {st}", self.name);
        }
        child.kill().expect("kill ping_pong");
        child.wait().expect("wait ping_pong");
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
        self.output()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The values of the "data increment = N" lines, in order.
fn increments(out: &str) -> Vec<u32> {
    out.split(['\n', '\r'])
        .filter_map(|l| l.strip_prefix("data increment = "))
        .map(|v| v.trim().parse().expect("increment is a number"))
        .collect()
}

/// The "N locks/sec" rates.
fn rates(out: &str) -> Vec<u64> {
    out.split(['\n', '\r'])
        .filter(|l| l.ends_with(" locks/sec"))
        .map(|l| {
            let n = l.trim_end_matches(" locks/sec");
            assert!(n.len() >= 8, "rate not right-aligned in 8 columns: {l:?}");
            n.trim().parse().expect("rate is a number")
        })
        .collect()
}

fn sleep_ms(ms: u64) {
    thread::sleep(Duration::from_millis(ms));
}

#[test]
fn reports_lock_rates_alone() {
    let dir = TempDir::new("ping_pong-alone");
    let f = dir.path("pp.dat");
    let p = Running::start(OURS, &[], &f, "1");
    sleep_ms(2300);
    let out = p.stop();
    let r = rates(&out);
    assert!(!r.is_empty(), "no rate line in {out:?}");
    assert!(r.iter().all(|&x| x > 0), "{r:?}");
    eprintln!("ping_pong alone, 1 lock: {r:?} locks/sec");
    // Without -r nothing is read, so no increment is ever reported.
    assert!(increments(&out).is_empty());
    assert_eq!(std::fs::metadata(&f).map(|m| m.len()).ok(), Some(2));
}

/// Two processes with `-rw` on 3 locks: once both run, each sees every
/// byte grow by 2 per visit; alone (start, end) by 1; nothing else.
fn pair(a: (&str, &[&str]), b: (&str, &[&str]), tag: &str) {
    let locks = "3";
    let dir = TempDir::new(tag);
    let f = dir.path("pp.dat");
    let pa = Running::start(a.0, a.1, &f, locks);
    assert!(
        pa.wait_for(10, |o| increments(o).contains(&1)),
        "{tag}: first process alone never saw increment 1: {:?}",
        pa.output()
    );
    let pb = Running::start(b.0, b.1, &f, locks);
    // Until both have seen each other and printed a rate (bounded).
    let done = |o: &str| increments(o).contains(&2) && !rates(o).is_empty();
    pb.wait_for(15, done);
    pa.wait_for(5, done);
    let ob = pb.stop();
    let oa = pa.stop();
    for (name, out) in [(a.0, &oa), (b.0, &ob)] {
        let inc = increments(out);
        assert!(
            inc.contains(&2),
            "{tag}: {name} never saw the other process's increments: {out:?}"
        );
        assert!(
            inc.iter().all(|&i| i == 1 || i == 2),
            "{tag}: {name} saw an incoherent increment: {inc:?}"
        );
        assert!(!rates(out).is_empty(), "{tag}: {name} printed no rate");
    }
    eprintln!("{tag}: rates {:?} / {:?}", rates(&oa), rates(&ob));
}

#[test]
fn two_of_ours_are_coherent() {
    pair((OURS, &["-rw"]), (OURS, &["-rw"]), "ours-ours");
}

#[test]
fn ours_and_debian_are_coherent_pread_and_mmap() {
    pair((OURS, &["-rw"]), (DEBIAN, &["-rw"]), "ours-debian");
    pair(
        (DEBIAN, &["-rwm"]),
        (OURS, &["-r", "-w", "-m"]),
        "debian-ours-mmap",
    );
}

#[test]
fn check_option_finds_no_foreign_holder_between_ours_and_debian() {
    let dir = TempDir::new("ping_pong-check");
    let f = dir.path("pp.dat");
    let a = Running::start(OURS, &["-c", "-rw"], &f, "4");
    a.wait_for(10, |o| increments(o).contains(&1));
    let b = Running::start(DEBIAN, &["-c", "-rw"], &f, "4");
    let done = |o: &str| increments(o).contains(&2) && !rates(o).is_empty();
    b.wait_for(15, done);
    a.wait_for(5, done);
    let ob = b.stop();
    let oa = a.stop();
    for out in [&oa, &ob] {
        assert!(!out.contains("check_lock failed"), "{out:?}");
        assert!(increments(out).contains(&2), "{out:?}");
    }
}

/// A participant that takes the lock properly but writes a value that is
/// not "what I read + 1" (as a node with stale data would): the byte jumps
/// by 51 between two visits of the running tool, which must report it and
/// then go back to 1.
fn out_of_turn(bin: &str, tag: &str) -> Vec<u32> {
    let dir = TempDir::new(tag);
    let f = dir.path("pp.dat");
    let p = Running::start(bin, &["-rw"], &f, "2");
    assert!(
        p.wait_for(10, |o| increments(o) == [1]),
        "{tag}: no steady increment 1: {:?}",
        p.output()
    );
    let o = Command::new(PYTHON)
        .arg("-c")
        .arg(
            "import fcntl, os, sys\n\
fd = os.open(sys.argv[1], os.O_RDWR)\n\
fcntl.lockf(fd, fcntl.LOCK_EX, 1, 0)\n\
b = os.pread(fd, 1, 0)[0]\n\
os.pwrite(fd, bytes([(b + 50) % 256]), 0)\n\
fcntl.lockf(fd, fcntl.LOCK_UN, 1, 0)\n",
        )
        .arg(&f)
        .output()
        .expect("run python3 writer");
    assert!(
        o.status.success(),
        "writer failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    p.wait_for(10, |o| increments(o).len() >= 3);
    increments(&p.stop())
}

#[test]
fn wrong_increment_is_detected_like_debian() {
    let ours = out_of_turn(OURS, "turn-ours");
    assert_eq!(ours, vec![1, 51, 1], "our ping_pong");
    let deb = out_of_turn(DEBIAN, "turn-debian");
    assert_eq!(deb, ours, "Debian's ping_pong reports the same");
}

/// `-l` holds a whole-file lock until a key is pressed; another `-l`
/// reports the holder's pid. Both directions, ours and Debian's. (Debian's
/// tool does not flush before waiting, so readiness is read from
/// /proc/locks.)
#[test]
fn brl_test_reports_the_other_holder() {
    for (holder, prober) in [(OURS, DEBIAN), (DEBIAN, OURS)] {
        let dir = TempDir::new("ping_pong-brl");
        let f = dir.path("brl.dat");
        let mut h = Command::new(holder)
            .arg0("ping_pong")
            .arg("-l")
            .arg(&f)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start holder");
        let expected = format!(
            "file already locked, calling check_lock to tell us who has it locked:\n\
check_lock failed: lock held: pid='{}', type='1', start='0', len='0'\n\
Working POSIX byte range locks\n",
            h.id()
        );
        // Wait until the kernel lists the holder's lock (probing with
        // another -l could take the lock first and make the holder quit).
        let pid = h.id().to_string();
        let mut held = false;
        for _ in 0..200 {
            let locks = std::fs::read_to_string("/proc/locks").unwrap_or_default();
            if locks
                .lines()
                .any(|l| l.contains("POSIX") && l.split_whitespace().nth(4) == Some(pid.as_str()))
            {
                held = true;
                break;
            }
            sleep_ms(25);
        }
        assert!(held, "{holder} -l never took its lock");
        let probe = Command::new(prober)
            .arg0("ping_pong")
            .arg("-l")
            .arg(&f)
            .stdin(Stdio::null())
            .output()
            .expect("run prober");
        assert_eq!(probe.status.code(), Some(0));
        let seen = String::from_utf8_lossy(&probe.stdout).into_owned();
        drop(h.stdin.take());
        let mut out = String::new();
        h.stdout
            .take()
            .expect("stdout")
            .read_to_string(&mut out)
            .expect("holder output");
        let st = h.wait().expect("wait holder");
        assert_eq!(seen, expected, "{prober} probing {holder}");
        assert_eq!(
            out,
            "Holding lock, press any key to continue...\n\
You should run the same command on another node now.\nGood bye.\n"
        );
        assert_eq!(st.code(), Some(0));
    }
}

#[test]
fn usage_and_errors_match_debian() {
    let dir = TempDir::new("ping_pong-usage");
    let run = |bin: &str, args: &[&str]| {
        let o = Command::new(bin)
            .arg0("ping_pong")
            .args(args)
            .current_dir(&dir.0)
            .stdin(Stdio::null())
            .output()
            .expect("run");
        (
            o.status.code(),
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    let cases: &[&[&str]] = &[
        &[],
        &["-x", "f"],
        &["-?"],
        &["--help"],
        &["f"],
        &["-rw", "f"],
        &["f", "0"],
        &["f", "abc"],
        &["f", "-3"],
        &["-r", "f", "-1"],
    ];
    for args in cases {
        let d = run(DEBIAN, args);
        let o = run(OURS, args);
        assert_eq!(o, d, "ping_pong {args:?}: ours (left) vs Debian");
        assert_eq!(o.0, Some(1));
    }
    // Upstream exits 1 silently when the file cannot be opened; we say why.
    let d = run(DEBIAN, &["/nonexistent-dir/x", "3"]);
    let o = run(OURS, &["/nonexistent-dir/x", "3"]);
    assert_eq!((o.0, &o.1), (d.0, &d.1));
    assert!(o.2.contains("cannot open /nonexistent-dir/x"), "{o:?}");
}
