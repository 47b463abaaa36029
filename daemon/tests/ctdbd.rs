//! The real `ctdbd` binary, started as a process and talked to over its
//! Unix socket, by hand-built packets and by Debian's `ctdb` tool.
//!
//! What is proven and how:
//! * PING answers the number of connected clients, GET_PNN 0, GET_PID the
//!   daemon's pid, in REPLY_CONTROL packets padded to 8 bytes that echo the
//!   request id; unknown controls answer -1; NOREPLY controls get nothing;
//! * garbage, short, oversize and truncated-control packets close only
//!   that connection: the daemon keeps answering the others;
//! * a client that floods requests and never reads the replies is stopped
//!   by back-pressure (the daemon stops reading it; its memory stays flat)
//!   while other clients are served;
//! * Debian's `ctdb ping`, `ctdb pnn` and `ctdb getpid` work against it;
//! * a stale socket file is replaced, the socket is mode 0700, SIGTERM
//!   stops the daemon cleanly and removes socket and PID file;
//! * without `-i` it daemonises (the starting process exits 0, the PID file
//!   names a different, live process), reopens its log on SIGHUP, and a
//!   second daemon on the same paths is refused with exit code 11;
//! * in test mode a daemon whose stdin pipe closes exits with EPIPE (32),
//!   as upstream;
//! * with real-time scheduling on, every core thread of the process runs
//!   SCHED_FIFO pinned to one CPU, and the idle daemon uses almost no CPU
//!   (summed schedstat run time of all its threads over one second);
//! * `--mlock` locks the daemon's memory (VmLck);
//! * a too-low RLIMIT_MEMLOCK stops start-up with a message naming the limit
//!   and how to raise it.
//!
//! Every process started here is stopped by its PID.

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ctdb_protocol::constants::{CTDB_CTRL_FLAG_NOREPLY, CTDB_CURRENT_NODE};
use ctdb_protocol::{
    DecodeLimits, Framing, Header, Opcode, Operation, Packet, Payload, ReqControl, CTDB_MAGIC,
};

const PING: u32 = Opcode::Ping as u32;
const GET_PNN: u32 = Opcode::GetPnn as u32;
const GET_PID: u32 = Opcode::GetPid as u32;

const CTDBD: &str = env!("CARGO_BIN_EXE_ctdbd");

/// A fresh test-mode CTDB_BASE under the temp dir: database directories
/// and a ctdb.conf naming them, logging to `$CTDB_BASE/log.ctdb`.
fn base(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("ctdbd-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    for sub in ["volatile", "persistent", "state"] {
        std::fs::create_dir_all(d.join(sub)).unwrap();
    }
    let conf = format!(
        "[logging]\n\tlocation = file:{0}/log.ctdb\n\
         [database]\n\tvolatile database directory = {0}/volatile\n\
         \tpersistent database directory = {0}/persistent\n\
         \tstate database directory = {0}/state\n",
        d.display()
    );
    std::fs::write(d.join("ctdb.conf"), conf).unwrap();
    // A cluster of one on loopback, and an empty event script directory.
    std::fs::write(d.join("nodes"), "127.0.0.1\n").unwrap();
    std::fs::create_dir_all(d.join("events/legacy")).unwrap();
    d
}

fn command(base: &Path, sock: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(CTDBD);
    c.args(args)
        .env("CTDB_TEST_MODE", "1")
        .env("CTDB_BASE", base)
        .env("CTDB_SOCKET", sock)
        .env("CTDB_EVENTD", env!("CARGO_BIN_EXE_ctdb-eventd"))
        .stdin(Stdio::null());
    c
}

fn wait_for(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + timeout;
    while !f() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn connect(sock: &Path) -> UnixStream {
    let s = UnixStream::connect(sock).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s
}

/// A daemon child, killed (SIGKILL) by PID if a test fails before stopping it.
struct Daemon {
    child: Option<Child>,
}

impl Daemon {
    fn start(base: &Path, sock: &Path, extra: &[&str]) -> Daemon {
        let mut args = vec!["-i", "--nosetsched"];
        args.extend_from_slice(extra);
        let child = command(base, sock, &args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut d = Daemon { child: Some(child) };
        let sock = sock.to_path_buf();
        wait_for("the daemon socket", Duration::from_secs(10), || {
            if let Some(Ok(Some(st))) = d.child.as_mut().map(|c| c.try_wait()) {
                let mut err = String::new();
                let _ = d
                    .child
                    .as_mut()
                    .unwrap()
                    .stderr
                    .take()
                    .unwrap()
                    .read_to_string(&mut err);
                panic!("ctdbd exited early with {st}: {err}");
            }
            UnixStream::connect(&sock).is_ok()
        });
        d
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    /// SIGTERM by PID, then wait; returns the exit status and stderr.
    fn stop(mut self) -> (std::process::ExitStatus, String) {
        let mut child = self.child.take().unwrap();
        signal(child.id(), "TERM");
        let end = Instant::now() + Duration::from_secs(10);
        let status = loop {
            if let Some(st) = child.try_wait().unwrap() {
                break st;
            }
            if Instant::now() > end {
                let _ = child.kill();
                panic!("ctdbd did not stop on SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut err = String::new();
        let _ = child.stderr.take().unwrap().read_to_string(&mut err);
        (status, err)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn signal(pid: u32, sig: &str) {
    let st = Command::new("kill")
        .args([&format!("-{sig}"), &pid.to_string()])
        .status()
        .unwrap();
    assert!(st.success(), "kill -{sig} {pid}");
}

/// A REQ_CONTROL as the ctdb client library frames it.
fn req_control(reqid: u32, opcode: u32, data: &[u8], flags: u32) -> Vec<u8> {
    let mut pkt = Vec::new();
    Packet::new(
        Header::new(0, CTDB_CURRENT_NODE, 0, reqid),
        Payload::ReqControl(ReqControl::raw(opcode, data).with_flags(flags)),
    )
    .encode_framed(&mut pkt, Framing::Client)
    .unwrap();
    pkt
}

/// Sends a control and reads the reply packet.
fn control(s: &mut UnixStream, reqid: u32, opcode: u32, data: &[u8]) -> Vec<u8> {
    s.write_all(&req_control(reqid, opcode, data, 0)).unwrap();
    read_packet(s).expect("a reply")
}

fn read_packet(s: &mut UnixStream) -> Option<Vec<u8>> {
    let mut len = [0u8; 4];
    match s.read_exact(&mut len) {
        Ok(()) => {}
        Err(_) => return None,
    }
    let n = u32::from_ne_bytes(len) as usize;
    let mut p = vec![0u8; n];
    p[..4].copy_from_slice(&len);
    s.read_exact(&mut p[4..]).unwrap();
    Some(p)
}

fn status(reply: &[u8], reqid: u32) -> i32 {
    let p = Packet::decode(reply, &DecodeLimits::default()).unwrap();
    assert_eq!(p.operation(), Operation::ReplyControl);
    assert_eq!(p.header.reqid, reqid, "reply must echo reqid");
    assert_eq!(reply.len() % 8, 0, "ctdbd pads client packets to 8");
    match p.payload {
        Payload::ReplyControl(r) => r.status,
        other => panic!("not a control reply: {other:?}"),
    }
}

/// The daemon closed this connection (EOF or reset) within the timeout.
fn closed_by_daemon(mut s: UnixStream) -> bool {
    let mut b = [0u8; 64];
    matches!(s.read(&mut b), Ok(0) | Err(_))
}

fn ctdb_tool(sock: &Path, args: &[&str]) -> String {
    let out = Command::new("/usr/bin/ctdb")
        .args(args)
        .env("CTDB_SOCKET", sock)
        .output()
        .expect("run /usr/bin/ctdb (Debian package ctdb)");
    assert!(
        out.status.success(),
        "ctdb {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn answers_controls_and_survives_garbage() {
    let base = base("controls");
    let sock = base.join("ctdbd.socket");
    // A stale socket nobody listens on must be replaced.
    drop(std::os::unix::net::UnixListener::bind(&sock).unwrap());
    let d = Daemon::start(&base, &sock, &["--cores", "1"]);
    let mode = std::fs::metadata(&sock).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o700, "socket mode {mode:o}");

    let mut a = connect(&sock);
    // Start-up probes may still be counted for a moment.
    wait_for("a single client", Duration::from_secs(5), || {
        status(&control(&mut a, 1, PING, &[]), 1) == 1
    });
    let mut b = connect(&sock);
    assert_eq!(status(&control(&mut b, 2, PING, &[]), 2), 2);
    assert_eq!(status(&control(&mut a, 3, GET_PNN, &[]), 3), 0);
    let pid = status(&control(&mut a, 4, GET_PID, &[]), 4);
    assert_eq!(pid as u32, d.pid());
    let r = control(&mut a, 5, PING, &[]);
    assert_eq!(
        r.len(),
        48,
        "REPLY_CONTROL is never shorter than its struct"
    );
    assert_eq!(
        status(&control(&mut a, 6, 9999, &[]), 6),
        -1,
        "unknown control"
    );
    assert_eq!(
        status(&control(&mut a, 7, PING, b"x"), 7),
        -1,
        "PING with data"
    );

    // NOREPLY: no answer; the next reply belongs to the next request.
    let pkt = req_control(8, PING, &[], CTDB_CTRL_FLAG_NOREPLY);
    a.write_all(&pkt).unwrap();
    assert_eq!(status(&control(&mut a, 9, GET_PNN, &[]), 9), 0);

    // Hostile connections, each closed by the daemon.
    let header = |len: u32, magic: u32, op: u32| {
        let mut p = vec![0u8; 32];
        p[0..4].copy_from_slice(&len.to_ne_bytes());
        p[4..8].copy_from_slice(&magic.to_ne_bytes());
        p[8..12].copy_from_slice(&1u32.to_ne_bytes());
        p[16..20].copy_from_slice(&op.to_ne_bytes());
        p
    };
    let hostile: Vec<(&str, Vec<u8>)> = vec![
        ("garbage", b"GET / HTTP/1.0\r\nHost: x\r\n\r\n".to_vec()),
        ("short length", header(16, CTDB_MAGIC, 7)),
        ("zero length", header(0, CTDB_MAGIC, 7)),
        ("huge length", header(0xFFFF_FFF0, CTDB_MAGIC, 7)),
        ("bad magic", header(32, 0x1234_5678, 7)),
        ("truncated control", header(32, CTDB_MAGIC, 7)),
    ];
    for (what, bytes) in hostile {
        let mut h = connect(&sock);
        h.write_all(&bytes).unwrap();
        assert!(
            closed_by_daemon(h),
            "daemon kept the {what} connection open"
        );
    }
    // A clean client that hangs up mid-packet does not hurt either.
    let mut h = connect(&sock);
    h.write_all(&pkt[..40]).unwrap();
    drop(h);

    // Still alive; the hostile clients are gone from the count.
    wait_for("client count back to 2", Duration::from_secs(5), || {
        status(&control(&mut a, 10, PING, &[]), 10) == 2
    });
    drop(b);

    // Debian's ctdb tool talks to us.
    let out = ctdb_tool(&sock, &["ping"]);
    assert!(out.contains("response from 0"), "ctdb ping: {out}");
    assert_eq!(ctdb_tool(&sock, &["pnn"]).trim(), "0");
    assert_eq!(ctdb_tool(&sock, &["getpid"]).trim(), d.pid().to_string());

    let pidfile = base.join("run/ctdbd.pid");
    assert_eq!(
        std::fs::read_to_string(&pidfile).unwrap().trim(),
        d.pid().to_string()
    );
    let (st, err) = d.stop();
    assert!(st.success(), "exit {st}: {err}");
    assert!(err.contains("Received SIGTERM"), "{err}");
    assert!(!sock.exists(), "socket left behind");
    assert!(!pidfile.exists(), "PID file left behind");
    // Upstream's log line format on stderr with -i.
    let line = err
        .lines()
        .find(|l| l.contains("Starting CTDBD"))
        .expect("start line");
    let b = line.as_bytes();
    assert!(
        b[4] == b'/' && b[7] == b'/' && b[10] == b' ' && b[19] == b'.',
        "{line}"
    );
    assert!(
        line[27..].starts_with(&format!("ctdbd[{}]: ", st_pid(&err))),
        "{line}"
    );
    let _ = std::fs::remove_dir_all(&base);
}

/// The pid in the first log line.
fn st_pid(log: &str) -> String {
    let l = log.lines().next().unwrap();
    let open = l.find("ctdbd[").unwrap() + 6;
    let close = l[open..].find(']').unwrap() + open;
    l[open..close].to_string()
}

fn proc_state(pid: u32) -> Option<char> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    s[s.rfind(')')? + 2..].chars().next()
}

#[test]
fn daemonises_and_refuses_a_second_instance() {
    let base = base("daemon");
    let sock = base.join("ctdbd.socket");
    let out = command(&base, &sock, &["--nosetsched", "--cores", "1"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pidfile = base.join("run/ctdbd.pid");
    let pid: u32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // From here on the daemon must be stopped by its PID whatever happens.
    struct Kill(u32);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = Command::new("kill")
                .args(["-KILL", &self.0.to_string()])
                .status();
        }
    }
    let guard = Kill(pid);
    assert!(
        matches!(proc_state(pid), Some('S' | 'R')),
        "daemon {pid} not running"
    );

    let mut s = connect(&sock);
    assert_eq!(status(&control(&mut s, 1, GET_PID, &[]), 1) as u32, pid);
    drop(s);
    let log = std::fs::read_to_string(base.join("log.ctdb")).unwrap();
    assert!(
        log.contains(&format!("ctdbd[{pid}]: Starting CTDBD")),
        "{log}"
    );

    // logrotate: move the log away, SIGHUP, and the daemon writes a new one.
    std::fs::rename(base.join("log.ctdb"), base.join("log.ctdb.1")).unwrap();
    signal(pid, "HUP");
    wait_for("a reopened log file", Duration::from_secs(5), || {
        std::fs::read_to_string(base.join("log.ctdb"))
            .map(|l| l.contains("Received SIGHUP"))
            .unwrap_or(false)
    });

    let second = command(&base, &sock, &["-i", "--nosetsched", "--cores", "1"])
        .output()
        .unwrap();
    assert_eq!(
        second.status.code(),
        Some(11),
        "second daemon must be refused"
    );
    let err = String::from_utf8_lossy(&second.stderr);
    assert!(err.contains("another ctdbd is running"), "{err}");

    signal(pid, "TERM");
    wait_for(
        "the daemon to exit",
        Duration::from_secs(10),
        || !matches!(proc_state(pid), Some(c) if c != 'Z'),
    );
    std::mem::forget(guard);
    assert!(!sock.exists() && !pidfile.exists());
    let _ = std::fs::remove_dir_all(&base);
}

#[test]
fn test_mode_daemon_exits_when_stdin_closes() {
    let base = base("stdin");
    let sock = base.join("ctdbd.socket");
    let mut child = command(&base, &sock, &["-i", "--nosetsched", "--cores", "1"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    struct Kill(u32);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = Command::new("kill")
                .args(["-KILL", &self.0.to_string()])
                .status();
        }
    }
    let guard = Kill(pid);
    wait_for("the daemon socket", Duration::from_secs(10), || {
        UnixStream::connect(&sock).is_ok()
    });
    // Bytes on stdin are ignored; only its closing matters.
    child.stdin.as_mut().unwrap().write_all(b"x").unwrap();
    let mut s = connect(&sock);
    assert_eq!(status(&control(&mut s, 1, GET_PNN, &[]), 1), 0);
    drop(child.stdin.take());
    let end = Instant::now() + Duration::from_secs(10);
    let st = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        assert!(Instant::now() < end, "daemon ignored its stdin closing");
        std::thread::sleep(Duration::from_millis(20));
    };
    std::mem::forget(guard);
    let mut err = String::new();
    let _ = child.stderr.take().unwrap().read_to_string(&mut err);
    assert_eq!(st.code(), Some(32), "exit code EPIPE expected: {err}");
    assert!(err.contains("stdin closed, exiting"), "{err}");
    assert!(!sock.exists());
    let _ = std::fs::remove_dir_all(&base);
}

#[test]
fn core_threads_run_sched_fifo_pinned() {
    let base = base("fifo");
    let sock = base.join("ctdbd.socket");
    let cores = ctdb_daemon::sys::affinity(0)
        .unwrap()
        .len()
        .min(2)
        .to_string();
    let child = command(&base, &sock, &["-i", "--cores", &cores])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut d = Daemon { child: Some(child) };
    let pid = d.pid();
    let started = Instant::now();
    loop {
        if let Ok(Some(_)) = d.child.as_mut().unwrap().try_wait() {
            let mut err = String::new();
            let _ = d
                .child
                .as_mut()
                .unwrap()
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut err);
            if err.contains("Operation not permitted") && err.contains("SCHED_FIFO") {
                eprintln!("SKIP: the kernel refused SCHED_FIFO (EPERM): {err}");
                return;
            }
            panic!("ctdbd exited early: {err}");
        }
        // A control answered means every core is set up.
        if let Ok(mut s) = UnixStream::connect(&sock) {
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            status(&control(&mut s, 1, GET_PNN, &[]), 1);
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "no socket");
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut seen = 0;
    let n: usize = cores.parse().unwrap();
    let reactor_names: Vec<String> = (0..n).map(|i| format!("ctdb-core-{i}")).collect();
    for t in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let t = t.unwrap().path();
        let comm = std::fs::read_to_string(t.join("comm")).unwrap();
        // Reactor threads only ("ctdb-core-N"); their glommio helper
        // threads ("ctdb-core-N-<id>") stay SCHED_OTHER by design.
        if !reactor_names.iter().any(|r| r == comm.trim()) {
            continue;
        }
        seen += 1;
        let stat = std::fs::read_to_string(t.join("stat")).unwrap();
        let policy: i32 = stat[stat.rfind(')').unwrap() + 2..]
            .split_whitespace()
            .nth(41 - 3)
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(policy, libc::SCHED_FIFO, "{} policy", comm.trim());
        let tid: i32 = t.file_name().unwrap().to_str().unwrap().parse().unwrap();
        let cpus = ctdb_daemon::sys::affinity(tid).unwrap();
        assert_eq!(cpus.len(), 1, "{} may run on {cpus:?}", comm.trim());
    }
    assert_eq!(seen.to_string(), cores, "core threads found");

    // Idle, the real-time cores park: the whole process uses almost no CPU.
    std::thread::sleep(Duration::from_millis(200));
    let before = process_cpu_ns(pid);
    assert!(
        before > 0,
        "no CPU time readable for {pid}: the check below would be void"
    );
    std::thread::sleep(Duration::from_secs(1));
    let used = Duration::from_nanos(process_cpu_ns(pid) - before);
    eprintln!("idle ctdbd ({cores} SCHED_FIFO cores) used {used:?} of CPU in 1 s");
    assert!(
        used < Duration::from_millis(50),
        "idle daemon burned {used:?}"
    );

    let (st, err) = d.stop();
    assert!(st.success(), "{err}");
    let _ = std::fs::remove_dir_all(&base);
}

/// CPU time of every thread of `pid` (schedstat, nanoseconds).
fn process_cpu_ns(pid: u32) -> u64 {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

fn vm_rss_kib(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[test]
fn a_client_that_never_reads_replies_cannot_grow_the_daemon() {
    let base = base("flood");
    let sock = base.join("ctdbd.socket");
    let d = Daemon::start(&base, &sock, &["--cores", "1"]);
    let rss_before = vm_rss_kib(d.pid());
    let flood = connect(&sock);
    flood
        .set_write_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let batch: Vec<u8> = (0..1024u32)
        .flat_map(|i| req_control(i, PING, &[], 0))
        .collect();
    let limit = 64usize << 20;
    let mut sent = 0usize;
    while sent < limit {
        match (&flood).write(&batch) {
            Ok(n) => sent += n,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                break
            }
            Err(e) => panic!("flood write: {e}"),
        }
    }
    assert!(
        sent < limit,
        "daemon kept reading {sent} bytes of requests whose replies nobody reads"
    );
    // Everyone else is still served, and the stuck client still counts.
    let mut a = connect(&sock);
    wait_for("two clients", Duration::from_secs(5), || {
        status(&control(&mut a, 1, PING, &[]), 1) == 2
    });
    let grown = vm_rss_kib(d.pid()).saturating_sub(rss_before);
    eprintln!(
        "flooding client was stopped after {sent} bytes of requests; daemon RSS grew {grown} KiB"
    );
    assert!(grown < 32 * 1024, "daemon RSS grew {grown} KiB");
    drop(flood);
    let (st, err) = d.stop();
    assert!(st.success(), "{err}");
    let _ = std::fs::remove_dir_all(&base);
}

#[test]
fn mlock_option_locks_the_daemon_in_memory() {
    let base = base("mlock");
    let sock = base.join("ctdbd.socket");
    let d = Daemon::start(&base, &sock, &["--cores", "1", "--mlock"]);
    // A control answered: the runtime (and mlockall before it) is up.
    let mut s = connect(&sock);
    assert_eq!(status(&control(&mut s, 1, GET_PNN, &[]), 1), 0);
    let proc_status = std::fs::read_to_string(format!("/proc/{}/status", d.pid())).unwrap();
    let locked: u64 = proc_status
        .lines()
        .find_map(|l| l.strip_prefix("VmLck:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    let (st, err) = d.stop();
    assert!(st.success(), "{err}");
    assert!(locked > 1024, "only {locked} kB locked with --mlock");
    assert!(err.contains("locked all memory"), "{err}");
    let _ = std::fs::remove_dir_all(&base);
}

#[test]
fn low_memlock_limit_is_explained() {
    let base = base("memlock");
    let sock = base.join("ctdbd.socket");
    let out = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "ulimit -l 64 && exec {CTDBD} -i --nosetsched --cores 1"
        ))
        .env("CTDB_TEST_MODE", "1")
        .env("CTDB_BASE", &base)
        .env("CTDB_SOCKET", &sock)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("RLIMIT_MEMLOCK is 64 KiB"), "{err}");
    assert!(
        err.contains("ulimit -l") && err.contains("LimitMEMLOCK="),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&base);
}
