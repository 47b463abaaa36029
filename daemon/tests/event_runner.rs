//! The in-process EventRunner (what ctdbd can use without an eventd), the
//! old `events.d` layout, process-group kills on timeout and cancellation,
//! output capture limits, and notify.sh notifications.

mod event_util;

use std::path::Path;
use std::time::{Duration, Instant};

use ctdb_daemon::event::notify::{
    run_notification, run_notification_sync, Notification, NotifyOutcome,
};
use ctdb_daemon::event::runner::{CtdbEvent, OUTPUT_LIMIT};
use ctdb_daemon::event::EventRunner;
use event_util::*;

fn gone(pid: &str, limit: Duration) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        // A zombie still has /proc/<pid>; its state is Z.
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Err(_) => return true,
            Ok(s) if s.contains(") Z ") => return true,
            Ok(_) => {}
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

#[test]
fn events_d_layout_is_the_legacy_component() {
    let b = Base::new("eventsd");
    b.write("events.d/00.first", "#!/bin/sh\nexit 0\n", true);
    b.write(
        "events.d/10.second",
        "#!/bin/sh\n[ \"$1\" = monitor ] && { echo \"second $1\"; exit 2; }\nexit 0\n",
        true,
    );
    b.write("events.d/10.second~", "#!/bin/sh\nexit 9\n", true);
    b.write("events.d/20.off", "#!/bin/sh\nexit 0\n", false);
    b.write("events.d/README", "text\n", false);
    let r = EventRunner::new(b.dir.join("events"), None);
    let res = r
        .run("legacy", "monitor", None, Duration::from_secs(10), false)
        .unwrap();
    let names: Vec<_> = res
        .scripts
        .iter()
        .map(|s| (s.name.as_str(), s.result))
        .collect();
    assert_eq!(names, vec![("00.first", 0), ("10.second", 2)]);
    assert_eq!(
        res.scripts[1].output.as_deref(),
        Some(&b"second monitor\n"[..])
    );
    assert_eq!(res.reply_code(), libc::ENOEXEC);
    let res = r
        .run("legacy", "startup", None, Duration::from_secs(10), false)
        .unwrap();
    let names: Vec<_> = res
        .scripts
        .iter()
        .map(|s| (s.name.as_str(), s.result))
        .collect();
    assert_eq!(
        names,
        vec![
            ("00.first", 0),
            ("10.second", 0),
            ("20.off", -libc::ENOEXEC)
        ]
    );
    r.set_enabled(Some("legacy"), Some("20.off"), true).unwrap();
    assert!(r.scripts("legacy").unwrap().iter().all(|s| s.enabled));

    // Through our eventd and Debian's tool: the same names.
    let mut d = Daemon::start(&b, &ours());
    let out = b.tool(&["run", "10", "legacy", "startup"], &[]);
    assert_eq!(out, "$ run 10 legacy startup\nrc=0\n");
    let out = b.tool(&["status", "legacy", "startup"], &[]);
    assert!(out.contains("20.off               OK"), "{out}");
    d.stop();

    // Once events/legacy exists, events.d is ignored.
    b.write("events/legacy/05.new.script", "#!/bin/sh\nexit 0\n", true);
    let r = EventRunner::new(b.dir.join("events"), None);
    let res = r
        .run("legacy", "startup", None, Duration::from_secs(10), false)
        .unwrap();
    assert_eq!(res.scripts.len(), 1);
    assert_eq!(res.scripts[0].name, "05.new");
}

#[test]
fn timeout_kills_the_process_group_and_runs_debug() {
    let b = Base::new("tmo");
    let dir = b.dir.display().to_string();
    b.write(
        "events/legacy/01.hang.script",
        &format!("#!/bin/sh\necho $$ >> {dir}/pids\nsleep 30 &\necho $! > {dir}/child\necho waiting\nwait\n"),
        true,
    );
    b.write(
        "debug.sh",
        &format!("#!/bin/sh\necho \"$1 $2\" > {dir}/debugged\n"),
        true,
    );
    let r = EventRunner::new(b.dir.join("events"), Some(b.dir.join("debug.sh")));
    let start = Instant::now();
    let res = r
        .run("legacy", "monitor", None, Duration::from_secs(1), false)
        .unwrap();
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(950) && took < Duration::from_secs(3),
        "{took:?}"
    );
    assert_eq!(res.summary, -libc::ETIMEDOUT);
    assert_eq!(res.reply_code(), libc::ETIMEDOUT);
    assert_eq!(res.scripts[0].output.as_deref(), Some(&b"waiting\n"[..]));
    let leader = wait_for_file(&b.dir.join("pids"), "\n", Duration::from_secs(5)).unwrap();
    let dbg = wait_for_file(&b.dir.join("debugged"), "monitor", Duration::from_secs(5)).unwrap();
    assert_eq!(dbg.trim(), format!("{} monitor", leader.trim()));
    let child = std::fs::read_to_string(b.dir.join("child")).unwrap();
    assert!(
        gone(child.trim(), Duration::from_secs(5)),
        "background sleep survived"
    );
    assert!(
        gone(leader.trim(), Duration::from_secs(5)),
        "script survived"
    );
    assert_eq!(r.status(Some("legacy"), Some("monitor")).unwrap(), res);
}

#[test]
fn new_event_cancels_running_monitor_and_kills_it() {
    let b = Base::new("cancel");
    let dir = b.dir.display().to_string();
    b.write(
        "events/legacy/01.slow.script",
        &format!(
            "#!/bin/sh\nif [ \"$1\" = monitor ]; then echo $$ > {dir}/mon; sleep 20; fi\nexit 0\n"
        ),
        true,
    );
    let r = std::sync::Arc::new(EventRunner::new(b.dir.join("events"), None));
    let r2 = r.clone();
    let mon = std::thread::spawn(move || {
        r2.run("legacy", "monitor", None, Duration::from_secs(30), false)
    });
    let pid = wait_for_file(&b.dir.join("mon"), "\n", Duration::from_secs(5)).unwrap();
    let res = r
        .run("legacy", "startup", None, Duration::from_secs(10), false)
        .unwrap();
    assert_eq!(res.summary, 0);
    assert_eq!(mon.join().unwrap(), Err(libc::ECANCELED));
    assert!(gone(pid.trim(), Duration::from_secs(5)));
    // A cancelled monitor leaves no result.
    assert_eq!(r.status(Some("legacy"), Some("monitor")), Err(libc::EINVAL));
    assert_eq!(r.status(Some("nope"), Some("monitor")), Err(libc::ENOENT));
}

#[test]
fn arguments_output_limit_and_event_rules() {
    let b = Base::new("args");
    b.write(
        "events/legacy/01.args.script",
        "#!/bin/sh\necho \"$0|$*\"\n[ \"$1\" = big ] && head -c 2000000 /dev/zero | tr '\\0' a\nexit 0\n",
        true,
    );
    let r = EventRunner::new(b.dir.join("events"), None);
    let ev = CtdbEvent::TakeIp;
    let args = "eth0  10.0.0.1 24";
    assert!(ev.check_args(Some(args)));
    let res = r
        .run(
            "legacy",
            ev.name(),
            Some(args),
            Duration::from_secs(10),
            false,
        )
        .unwrap();
    assert_eq!(res.scripts[0].result, 0);
    // argv[0] is the script name; arguments split on single spaces.
    let out = String::from_utf8(res.scripts[0].output.clone().unwrap()).unwrap();
    // (sh sees the script's path as $0 through the #! line.)
    assert!(
        out.ends_with("/01.args.script|takeip eth0 10.0.0.1 24\n"),
        "{out}"
    );
    let res = r
        .run("legacy", "big", None, Duration::from_secs(10), false)
        .unwrap();
    assert_eq!(res.scripts[0].output.as_ref().unwrap().len(), OUTPUT_LIMIT);
    assert!(CtdbEvent::ReleaseIp.timeout_ignored());
    assert!(!CtdbEvent::Monitor.allowed_during_recovery());
}

#[test]
fn notifications_run_notify_sh() {
    let b = Base::new("notify");
    // Debian's notify.sh, running events/notification/*.script.
    std::fs::copy("/etc/ctdb/notify.sh", b.dir.join("notify.sh")).unwrap();
    b.write(
        "events/notification/01.log.script",
        &format!("#!/bin/sh\necho \"$1\" >> {}/notified\n", b.dir.display()),
        true,
    );
    let script = b.dir.join("notify.sh");
    for n in [
        Notification::Init,
        Notification::Setup,
        Notification::Startup,
        Notification::Healthy,
        Notification::Unhealthy,
    ] {
        assert_eq!(
            run_notification(&script, n).join().unwrap(),
            NotifyOutcome::Ok
        );
    }
    let got = std::fs::read_to_string(b.dir.join("notified")).unwrap();
    assert_eq!(got, "init\nsetup\nstartup\nhealthy\nunhealthy\n");
    b.write(
        "events/notification/02.fail.script",
        "#!/bin/sh\nexit 1\n",
        true,
    );
    assert_eq!(
        run_notification_sync(&script, "healthy"),
        NotifyOutcome::Failed(1)
    );
    let missing = b.dir.join("none.sh");
    assert_eq!(
        run_notification_sync(&missing, "init"),
        NotifyOutcome::Missing(missing.clone())
    );
    b.write("plain.sh", "#!/bin/sh\n", false);
    let plain = b.dir.join("plain.sh");
    assert_eq!(
        run_notification_sync(&plain, "init"),
        NotifyOutcome::NotExecutable(plain.clone())
    );
    assert!(Path::new(&script).exists());
}
