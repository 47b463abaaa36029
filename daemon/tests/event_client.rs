//! Our blocking EventClient against Debian's ctdb-eventd and ours: RUN,
//! STATUS and SCRIPT (the command the ctdb-event tool never sends), bad
//! packets, the -S startup fd and the -P parent watch.

mod event_util;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ctdb_daemon::event::protocol::{encode_request, Request, StatusRequest};
use ctdb_daemon::event::{EventClient, RunResult};
use event_util::*;

fn tree(b: &Base) {
    b.write(
        "events/legacy/01.ok.script",
        "#!/bin/sh\necho \"ok $*\"\n",
        true,
    );
    b.write(
        "events/legacy/02.fail.script",
        "#!/bin/sh\n[ \"$1\" = monitor ] && { echo \"bad $2\"; exit 7; }\nexit 0\n",
        true,
    );
    b.write("events/legacy/03.off.script", "#!/bin/sh\nexit 0\n", false);
}

/// Result without times, for comparing daemons.
fn shape(r: &Result<RunResult, i32>) -> String {
    match r {
        Err(e) => format!("errno {e}"),
        Ok(r) => {
            let mut s = format!("summary {}", r.summary);
            for sc in &r.scripts {
                assert!(sc.end >= sc.begin, "{sc:?}");
                s.push_str(&format!(
                    "; {} {} {:?}",
                    sc.name,
                    sc.result,
                    sc.output.as_deref().map(String::from_utf8_lossy)
                ));
            }
            s
        }
    }
}

fn session(exe: &Path, tag: &str) -> String {
    let b = Base::new(tag);
    tree(&b);
    let mut d = Daemon::start(&b, exe);
    let mut c = EventClient::connect(&b.socket()).unwrap();
    c.set_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut t = Vec::new();
    t.push(shape(&c.status("legacy", "monitor").unwrap()));
    t.push(format!(
        "run {}",
        c.run("legacy", "monitor", Some("x y"), 10, false).unwrap()
    ));
    t.push(shape(&c.status("legacy", "monitor").unwrap()));
    t.push(format!(
        "run {}",
        c.run("legacy", "monitor", None, 10, true).unwrap()
    ));
    t.push(shape(&c.status("legacy", "monitor").unwrap()));
    t.push(format!(
        "run {}",
        c.run("legacy", "startup", None, 10, false).unwrap()
    ));
    t.push(shape(&c.status("legacy", "startup").unwrap()));
    t.push(format!(
        "run {}",
        c.run("nope", "startup", None, 10, false).unwrap()
    ));
    t.push(shape(&c.status("nope", "startup").unwrap()));
    // SCRIPT over the socket.
    t.push(format!(
        "disable {}",
        c.script("legacy", "02.fail", false).unwrap()
    ));
    t.push(format!(
        "enable {}",
        c.script("legacy", "03.off.script", true).unwrap()
    ));
    t.push(format!(
        "missing {}",
        c.script("legacy", "09.none", true).unwrap()
    ));
    t.push(format!(
        "nocomp {}",
        c.script("nope", "01.ok", true).unwrap()
    ));
    t.push(format!(
        "run {}",
        c.run("legacy", "monitor", None, 10, false).unwrap()
    ));
    t.push(shape(&c.status("legacy", "monitor").unwrap()));
    let exec = |n: &str| {
        use std::os::unix::fs::PermissionsExt;
        let m = std::fs::metadata(b.dir.join("events/legacy").join(n)).unwrap();
        m.permissions().mode() & 0o777
    };
    t.push(format!(
        "modes {:o} {:o}",
        exec("02.fail.script"),
        exec("03.off.script")
    ));

    // A packet with an unknown command closes the connection.
    let mut s = UnixStream::connect(b.socket()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut bad = encode_request(5, &Request::Status(StatusRequest::default()));
    bad[12..16].copy_from_slice(&77u32.to_ne_bytes());
    s.write_all(&bad).unwrap();
    let mut buf = [0u8; 64];
    t.push(format!(
        "bad command -> read {:?}",
        s.read(&mut buf).map_err(|e| e.kind())
    ));
    // The daemon still serves others.
    t.push(shape(&c.status("legacy", "startup").unwrap()));
    t.push(format!("exit {:?}", d.stop()));
    t.join("\n")
}

#[test]
fn client_sees_the_same_daemon() {
    let theirs = std::thread::spawn(|| session(Path::new(DEBIAN_EVENTD), "cl-deb"));
    let ours = session(&ours(), "cl-ours");
    let theirs = theirs.join().unwrap();
    assert_eq!(theirs, ours);
    assert!(ours.contains("; 02.fail 7 Some(\"bad x\\n\")"), "{ours}");
    assert!(ours.contains("modes 644 755"), "{ours}");
    assert!(ours.contains("bad command -> read Ok(0)"), "{ours}");
}

/// `-S 3` with fd 3 a pipe: the daemon writes four zero bytes once it
/// listens. `-P pid`: it exits with ESRCH once that process is gone.
fn startup_and_parent(exe: &Path, tag: &str) -> (Vec<u8>, Option<i32>, Duration) {
    let b = Base::new(tag);
    tree(&b);
    let mut parent = Command::new("sleep").arg("30").spawn().unwrap();
    let log = std::fs::File::create(b.dir.join("log")).unwrap();
    // The shell puts the pipe on fd 3 (inheritable) and execs the daemon,
    // as ctdbd hands over its pipe; Debian's daemon points its own stdout
    // at /dev/null, so fd 1 would not do.
    let mut cmd = Command::new("/bin/sh");
    b.env(&mut cmd);
    cmd.env("CTDB_INTERACTIVE", "1")
        .arg("-c")
        .arg("exec \"$0\" -P \"$1\" -S 3 3>&1 >/dev/null")
        .arg(exe)
        .arg(parent.id().to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log);
    let mut child = cmd.spawn().unwrap();
    let mut out = child.stdout.take().unwrap();
    let mut zeros = [0xffu8; 4];
    out.read_exact(&mut zeros).unwrap();
    assert!(
        b.socket().exists(),
        "socket exists once startup is signalled"
    );
    let mut c = EventClient::connect(&b.socket()).unwrap();
    assert_eq!(c.run("legacy", "startup", None, 10, false).unwrap(), 0);
    parent.kill().unwrap();
    parent.wait().unwrap();
    let gone = Instant::now();
    let code = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st.code();
        }
        if gone.elapsed() > Duration::from_secs(15) {
            child.kill().unwrap();
            child.wait().unwrap();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let took = gone.elapsed();
    assert!(!b.socket().exists(), "socket removed on exit");
    (zeros.to_vec(), code, took)
}

#[test]
fn startup_fd_and_parent_watch_like_debian() {
    let theirs = std::thread::spawn(|| startup_and_parent(Path::new(DEBIAN_EVENTD), "sp-deb"));
    let ours = startup_and_parent(&ours(), "sp-ours");
    let theirs = theirs.join().unwrap();
    assert_eq!(ours.0, vec![0, 0, 0, 0]);
    assert_eq!(theirs.0, ours.0);
    assert_eq!(theirs.1, ours.1, "exit codes (Debian, ours)");
    assert_eq!(ours.1, Some(libc::ESRCH));
    assert!(
        ours.2 < Duration::from_secs(7),
        "noticed after {:?}",
        ours.2
    );
}

/// ctdbd's way: start the daemon with EventdProcess (pipe on -S, -P our
/// pid), run ctdbd events through EventBackend, notice its death.
fn backend_session(exe: &Path, tag: &str) -> String {
    use ctdb_daemon::event::eventd::{EventBackend, EventdProcess, RunRefused};
    use ctdb_daemon::event::runner::CtdbEvent;
    let b = Base::new(tag);
    tree(&b);
    b.write(
        "events/legacy/04.hang.script",
        "#!/bin/sh\n[ \"$1\" = takeip ] && { echo $$ >> \"$CTDB_BASE/pids\"; sleep 20; }\nexit 0\n",
        true,
    );
    let envs: [(&str, &std::ffi::OsStr); 3] = [
        ("CTDB_TEST_MODE", "1".as_ref()),
        ("CTDB_BASE", b.dir.as_os_str()),
        ("CTDB_INTERACTIVE", "1".as_ref()),
    ];
    let d = EventdProcess::start(exe, std::process::id(), &b.socket(), &envs).unwrap();
    assert!(!d.has_exited());
    let be = EventBackend::Daemon(d.socket().to_path_buf());
    let mut t = Vec::new();
    t.push(format!("{:?}", be.run(CtdbEvent::Startup, None, 10).ok()));
    t.push(format!("{:?}", be.run(CtdbEvent::Monitor, None, 10).ok()));
    // takeip's hung script is ignored by ctdbd: 0.
    t.push(format!(
        "{:?}",
        be.run(CtdbEvent::TakeIp, Some("lo 127.0.0.9 8"), 1).ok()
    ));
    t.push(format!(
        "{:?}",
        matches!(
            be.run(CtdbEvent::TakeIp, Some("lo"), 1),
            Err(RunRefused::BadArguments)
        )
    ));
    let mut c = d.connect().unwrap();
    t.push(format!(
        "{:?}",
        c.status("legacy", "takeip").unwrap().map(|r| r.summary)
    ));
    t.push(format!("exit {:?}", d.stop()));
    t.join("\n")
}

#[test]
fn eventd_process_and_backend_like_debian() {
    let theirs = std::thread::spawn(|| backend_session(Path::new(DEBIAN_EVENTD), "be-deb"));
    let ours = backend_session(&ours(), "be-ours");
    let theirs = theirs.join().unwrap();
    assert_eq!(theirs, ours);
    assert!(
        ours.starts_with("Some(0)\nSome(8)\nSome(0)\ntrue\nOk(-110)"),
        "{ours}"
    );

    // In-process, the same codes.
    use ctdb_daemon::event::eventd::EventBackend;
    use ctdb_daemon::event::runner::CtdbEvent;
    let b = Base::new("be-inproc");
    tree(&b);
    let r = std::sync::Arc::new(ctdb_daemon::event::EventRunner::new(
        b.dir.join("events"),
        None,
    ));
    let be = EventBackend::InProcess(r);
    assert_eq!(be.run(CtdbEvent::Startup, None, 10).ok(), Some(0));
    assert_eq!(
        be.run(CtdbEvent::Monitor, None, 10).ok(),
        Some(libc::ENOEXEC)
    );
}

/// Random and malformed packets on many connections never take our
/// daemon down; it keeps serving.
#[test]
fn hostile_packets_do_not_kill_our_daemon() {
    let b = Base::new("hostile");
    tree(&b);
    let mut d = Daemon::start(&b, &ours());
    let mut seed: u64 = 0x1234_5678_9abc_def0;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for i in 0..200 {
        let mut s = UnixStream::connect(b.socket()).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let n = (next() % 96) as usize;
        let mut p: Vec<u8> = (0..n).map(|_| next() as u8).collect();
        if n >= 4 && i % 2 == 0 {
            p[..4].copy_from_slice(&(n as u32).to_ne_bytes());
        }
        if n >= 16 && i % 4 == 0 {
            p[12..16].copy_from_slice(&(1 + (next() % 3) as u32).to_ne_bytes());
        }
        let _ = s.write_all(&p);
        let _ = s.shutdown(std::net::Shutdown::Write);
        let mut sink = Vec::new();
        let _ = s.read_to_end(&mut sink);
    }
    // A length beyond the limit is refused by closing.
    let mut s = UnixStream::connect(b.socket()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(&u32::MAX.to_ne_bytes()).unwrap();
    let mut buf = [0u8; 8];
    assert_eq!(s.read(&mut buf).unwrap(), 0);
    assert!(d.child.try_wait().unwrap().is_none(), "daemon died");
    let mut c = EventClient::connect(&b.socket()).unwrap();
    assert_eq!(c.run("legacy", "startup", None, 10, false).unwrap(), 0);
    assert_eq!(d.stop(), Some(0));
}

/// SIGUSR1 makes our daemon re-read ctdb.conf: a debug script configured
/// afterwards runs on the next timeout.
#[test]
fn sigusr1_reloads_debug_script() {
    let b = Base::new("usr1");
    let dir = b.dir.display().to_string();
    b.write(
        "events/legacy/01.hang.script",
        &format!("#!/bin/sh\necho $$ >> {dir}/pids\nsleep 20\n"),
        true,
    );
    b.write(
        "debug.sh",
        &format!("#!/bin/sh\necho \"$2\" >> {dir}/debugged\n"),
        true,
    );
    let mut d = Daemon::start(&b, &ours());
    let mut c = EventClient::connect(&b.socket()).unwrap();
    assert_eq!(
        c.run("legacy", "first", None, 1, false).unwrap(),
        libc::ETIMEDOUT
    );
    b.write("ctdb.conf", "[event]\n\tdebug script = debug.sh\n", false);
    Command::new("kill")
        .args(["-s", "USR1", &d.child.id().to_string()])
        .status()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        c.run("legacy", "second", None, 1, false).unwrap(),
        libc::ETIMEDOUT
    );
    let got = wait_for_file(&b.dir.join("debugged"), "second", Duration::from_secs(10));
    assert_eq!(got.as_deref(), Some("second\n"));
    assert_eq!(d.stop(), Some(0));
}
