//! Our ctdb-eventd against Debian's: the same CTDB_BASE tree, the same
//! sequence of Debian `ctdb-event` commands, identical output and exit
//! codes once times and durations are normalised.

mod event_util;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use event_util::*;

const OK: &str = "#!/bin/sh\nexit 0\n";

fn build_tree(b: &Base) {
    b.write(
        "ctdb.conf",
        "[logging]\n\tlog level = NOTICE\n[event]\n\tdebug script = debug.sh\n",
        false,
    );
    b.write(
        "debug.sh",
        "#!/bin/sh\necho \"args: $*\" >> \"$CTDB_BASE/debug.log\"\necho \"debug says hi\"\n",
        true,
    );
    // legacy
    b.write("events/legacy/01.ok.script", OK, true);
    b.write(
        "events/legacy/02.fail.script",
        "#!/bin/sh\ncase \"$1\" in\nmonitor|failure) echo \"failing: $*\"; echo \"to stderr\" >&2; exit 3 ;;\nesac\nexit 0\n",
        true,
    );
    b.write(
        "events/legacy/03.sleep.script",
        "#!/bin/sh\ncase \"$1\" in\ntimeout) echo $$ >> \"$CTDB_BASE/pids\"; echo sleeping; sleep 20 ;;\nesac\nexit 0\n",
        true,
    );
    b.write("events/legacy/04.off.script", OK, false);
    b.write("share/events/legacy/05.linked.script", OK, true);
    b.write("share/events/legacy/06.shared.script", OK, true);
    b.link(
        &b.dir.join("share/events/legacy/05.linked.script"),
        "events/legacy/05.linked.script",
    );
    b.write(
        "events/legacy/08.quirks.script",
        "#!/bin/sh\ncase \"$1\" in\nquirk64) exit 64 ;;\nquirk65) exit 65 ;;\nquirk77) exit 77 ;;\nquirk255) exit 255 ;;\nsig) kill -KILL $$ ;;\nesac\nexit 0\n",
        true,
    );
    b.write("events/legacy/README", "not a script\n", false);
    b.write("events/legacy/README.script", "not a script\n", true);
    b.write("events/legacy/07.notscript", OK, true);
    // other: dangling link and a script without #!
    b.link(&b.dir.join("nowhere"), "events/other/01.dangling.script");
    b.write("events/other/02.noshebang.script", "exit 0\n", true);
    // multi: slow events for cancellation
    b.write(
        "events/multi/01.test.script",
        "#!/bin/sh\ncase \"$1\" in\nmonitor|slow) sleep 2 ;;\nesac\nexit 0\n",
        true,
    );
    b.mkdir("events/empty");
}

fn background(b: &Base, args: &[&str]) -> std::process::Child {
    let mut cmd = Command::new(DEBIAN_TOOL);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    b.env(&mut cmd);
    cmd.spawn().unwrap()
}

fn scenario(b: &Base) -> String {
    let mut t = String::new();
    let mut tool = |args: &[&str]| t.push_str(&b.tool(args, &[]));
    tool(&["status", "legacy", "monitor"]);
    tool(&["run", "10", "legacy", "startup"]);
    tool(&["status", "legacy", "startup"]);
    tool(&["run", "10", "legacy", "monitor"]);
    tool(&["status", "legacy", "monitor"]);
    tool(&["run", "10", "legacy", "failure", "with", "some", "args"]);
    tool(&["status", "legacy", "failure"]);
    for ev in ["quirk64", "quirk65", "quirk77", "quirk255", "sig"] {
        tool(&["run", "10", "legacy", ev]);
        tool(&["status", "legacy", ev]);
    }
    // (`run 0` is left out: with an already expired deadline Debian's
    // eventd races the first script's exit against its timer.)
    tool(&["run", "10", "nope", "monitor"]);
    tool(&["status", "nope", "monitor"]);
    tool(&["run", "10", "empty", "monitor"]);
    tool(&["status", "empty", "monitor"]);
    tool(&["run", "10", "other", "monitor"]);
    tool(&["status", "other", "monitor"]);
    tool(&["script", "list", "legacy"]);
    tool(&["script", "list", "other"]);
    tool(&["script", "list", "nope"]);
    tool(&["script", "disable", "legacy", "01.ok"]);
    tool(&["run", "10", "legacy", "startup"]);
    tool(&["status", "legacy", "startup"]);
    tool(&["script", "enable", "legacy", "01.ok"]);
    tool(&["script", "enable", "legacy", "04.off"]);
    tool(&["script", "disable", "legacy", "05.linked"]);
    tool(&["script", "list", "legacy"]);
    tool(&["script", "enable", "legacy", "05.linked"]);
    tool(&["script", "enable", "legacy", "06.shared"]);
    tool(&["script", "list", "legacy"]);
    tool(&["run", "10", "legacy", "startup"]);
    tool(&["status", "legacy", "startup"]);
    tool(&["script", "enable", "legacy", "99.missing"]);
    tool(&["script", "disable", "legacy", "99.missing"]);
    tool(&["script", "disable", "legacy", "README"]);
    tool(&["run", "10", "legacy"]);
    // The ctdb CLI's wrappers around ctdb-event.
    t.push_str(&b.ctdb(&["scriptstatus"]));
    t.push_str(&b.ctdb(&["scriptstatus", "startup"]));
    t.push_str(&b.ctdb(&["event", "run", "10", "legacy", "setup"]));
    t.push_str(&b.ctdb(&["event", "status", "legacy", "setup"]));
    t.push_str(&b.ctdb(&["event", "script", "list", "legacy"]));
    // All scripts despite failures (test-mode only environment switch).
    t.push_str(&b.tool(
        &["run", "10", "legacy", "monitor"],
        &[("CTDB_EVENT_RUN_ALL", "1")],
    ));
    t.push_str(&b.tool(&["status", "legacy", "monitor"], &[]));

    // Timeout, with the debug script.
    t.push_str(&b.tool(&["run", "2", "legacy", "timeout"], &[]));
    t.push_str(&b.tool(&["status", "legacy", "timeout"], &[]));
    let dbg = wait_for_file(&b.dir.join("debug.log"), "timeout", Duration::from_secs(10));
    t.push_str(&format!(
        "debug.log: {}\n",
        digits_to_n(dbg.as_deref().unwrap_or("(none)"))
    ));

    // A new event cancels a running monitor.
    let mut bg = background(b, &["run", "10", "multi", "monitor"]);
    std::thread::sleep(Duration::from_millis(700));
    t.push_str(&b.tool(&["run", "10", "multi", "slow"], &[]));
    t.push_str(&format!(
        "background: {}",
        b.normalise(&finish(&mut bg, Duration::from_secs(20)))
    ));
    t.push_str(&b.tool(&["status", "multi", "monitor"], &[]));
    t.push_str(&b.tool(&["status", "multi", "slow"], &[]));
    // A monitor arriving while another event runs is cancelled at once.
    let mut bg = background(b, &["run", "10", "multi", "slow"]);
    std::thread::sleep(Duration::from_millis(700));
    t.push_str(&b.tool(&["run", "10", "multi", "monitor"], &[]));
    t.push_str(&format!(
        "background: {}",
        b.normalise(&finish(&mut bg, Duration::from_secs(20)))
    ));
    t
}

fn run_with(exe: &Path, tag: &str) -> String {
    let b = Base::new(tag);
    build_tree(&b);
    let mut d = Daemon::start(&b, exe);
    let t = scenario(&b);
    let rc = d.stop();
    format!("{t}daemon exit: {rc:?}\n")
}

#[test]
fn ctdb_event_tool_sees_the_same_daemon() {
    if !Path::new(DEBIAN_EVENTD).exists() || !Path::new(DEBIAN_TOOL).exists() {
        panic!("Debian's ctdb package (ctdb-eventd, ctdb-event) is required");
    }
    let theirs = std::thread::spawn(|| run_with(Path::new(DEBIAN_EVENTD), "deb"));
    let ours = run_with(&ours(), "ours");
    let theirs = theirs.join().unwrap();
    if theirs != ours {
        eprintln!("=== Debian ===\n{theirs}\n=== ours ===\n{ours}");
    }
    assert_eq!(theirs, ours);
    // The transcript really exercised what it claims.
    for needle in [
        "Event monitor has never run in legacy",
        "TIMEDOUT",
        "DISABLED",
        "CANNOT RUN",
        "got cancelled",
        "OUTPUT: failing: failure with some args",
        "Event dir for nope does not exist",
        "args: N timeout",
        "$ ctdb scriptstatus\n01.ok",
    ] {
        assert!(
            ours.contains(needle),
            "transcript lacks {needle:?}:\n{ours}"
        );
    }
}
