//! Debian's stock `/usr/bin/ctdb` against our ctdbd and against Debian's
//! `/usr/sbin/ctdbd` 4.17, one node each, same layout (the `ctdb-tests`
//! harness: test mode, own CTDB_BASE, own loopback address, `-i`, stopped
//! by pid). Every command runs against both; stdout and exit code are
//! compared after normalising what legitimately differs (pids, times,
//! generations, counters, paths, addresses). The table of matches is
//! printed; commands known to match must keep matching.
//!
//! Also checked here: database contents through `tdbdump` and
//! `ltdbtool dump` on our files, event scripts (failure → UNHEALTHY → OK,
//! timeouts, `scriptstatus` equal to upstream's), the `ctdb.tunables` file
//! applied at start, timed bans, and SHUTDOWN ending the daemon cleanly.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ctdb_tests::cluster::{Cluster, StatusSummary};

const CTDB: &str = "/usr/bin/ctdb";
const DEBIAN_CTDBD: &str = "/usr/sbin/ctdbd";
const OURS: &str = env!("CARGO_BIN_EXE_ctdbd");

/// A monitor script whose result the test steers with files in CTDB_BASE.
const SCRIPT: &str = "#!/bin/sh\n\
case \"$1\" in\n\
monitor)\n\
  [ -e \"$CTDB_BASE/hang\" ] && sleep 30\n\
  if [ -e \"$CTDB_BASE/fail\" ]; then echo \"monitor failing on purpose\"; exit 1; fi\n\
  ;;\n\
esac\n\
exit 0\n";

struct Side {
    name: &'static str,
    cluster: Cluster,
}

impl Side {
    fn start(name: &'static str, ctdbd: &str) -> Side {
        let mut cluster =
            Cluster::create_on_free_addresses(1, ctdbd).expect("create a one-node cluster");
        let base = cluster.base(0).unwrap();
        let script = base.join("events/legacy/01.test.script");
        std::fs::write(&script, SCRIPT).unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        // Notifications land in a file, in order.
        let notify = base.join("notify.sh");
        std::fs::write(
            &notify,
            "#!/bin/sh\necho \"$1\" >> \"$CTDB_BASE/notifications\"\n",
        )
        .unwrap();
        std::fs::set_permissions(&notify, std::fs::Permissions::from_mode(0o755)).unwrap();
        // Applied at start by both daemons.
        std::fs::write(
            base.join("ctdb.tunables"),
            "MonitorInterval=2\nEventScriptTimeout=4\nMonitorTimeoutCount=2\n",
        )
        .unwrap();
        cluster.start_all().expect("start ctdbd");
        Side { name, cluster }
    }

    fn base(&self) -> PathBuf {
        self.cluster.base(0).unwrap()
    }

    /// `ctdb ARGS` with optional stdin: (exit code, stdout, stderr).
    fn run(&self, args: &[&str], stdin: Option<&str>) -> (i32, String, String) {
        let mut child = Command::new(CTDB)
            .args(args)
            .env_remove("CTDB_TOOL_SETPGID")
            .envs(self.cluster.env(0).unwrap())
            .current_dir(self.base())
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run /usr/bin/ctdb");
        if let Some(text) = stdin {
            let _ = child.stdin.take().unwrap().write_all(text.as_bytes());
        }
        let start = Instant::now();
        while child.try_wait().unwrap().is_none() {
            if start.elapsed() > Duration::from_secs(60) {
                let _ = child.kill();
                let _ = child.wait();
                panic!("{}: ctdb {args:?} did not finish in 60 s", self.name);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let out = child.wait_with_output().unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    fn status(&self) -> StatusSummary {
        StatusSummary::parse(&self.run(&["-T", "5", "status"], None).1)
    }

    /// Waits until `ctdb status` satisfies `f`.
    fn wait_status(&self, what: &str, limit: Duration, f: impl Fn(&StatusSummary) -> bool) {
        let start = Instant::now();
        loop {
            let s = self.status();
            if f(&s) {
                return;
            }
            if start.elapsed() > limit {
                panic!(
                    "{}: waited {limit:?} for {what}; last status {s:?}\nlog:\n{}",
                    self.name,
                    self.cluster.log_tail(0, 40)
                );
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    fn wait_ok(&self) {
        self.wait_status("all OK", Duration::from_secs(90), |s| s.all_ok(1));
    }

    fn node_state(&self) -> String {
        self.status()
            .nodes
            .first()
            .map(|n| n.2.clone())
            .unwrap_or_default()
    }
}

/// Replaces what differs between two daemons by nature.
fn normalise(text: &str, side: &Side, digits: bool) -> String {
    let base = side.base().display().to_string();
    let dir = side.cluster.dir().display().to_string();
    let addr = side.cluster.addr(0).unwrap().to_string();
    let pid = side
        .cluster
        .pid(0)
        .map(|p| p.to_string())
        .unwrap_or_default();
    let mut t = text.replace(&base, "<BASE>").replace(&dir, "<DIR>");
    t = t.replace(&addr, "<ADDR>");
    if !pid.is_empty() {
        t = t.replace(&pid, "<PID>");
    }
    let mut out = String::new();
    for line in t.lines() {
        let l = if line.starts_with("Generation:") {
            "Generation:<G>".to_string()
        } else if digits {
            squash_digits(line)
        } else {
            line.to_string()
        };
        out.push_str(l.trim_end());
        out.push('\n');
    }
    out
}

/// Every run of digits (and a decimal point inside) becomes `#`, and
/// runs of blanks one blank, so counter widths do not matter.
fn squash_digits(line: &str) -> String {
    let mut s = String::new();
    let mut in_num = false;
    let mut in_space = false;
    for c in line.chars() {
        if c.is_ascii_digit() || (in_num && c == '.') {
            if !in_num {
                s.push('#');
            }
            in_num = true;
            in_space = false;
        } else if c == ' ' || c == '\t' {
            in_num = false;
            if !in_space {
                s.push(' ');
            }
            in_space = true;
        } else {
            in_num = false;
            in_space = false;
            s.push(c);
        }
    }
    s
}

struct Compare {
    debian: Side,
    ours: Side,
    rows: Vec<(String, bool)>,
}

impl Compare {
    /// Runs `args` on both; true when exit codes and normalised stdout
    /// agree.
    fn case(&mut self, args: &[&str], digits: bool) -> bool {
        self.case_in(args, None, digits)
    }

    fn case_in(&mut self, args: &[&str], stdin: Option<&str>, digits: bool) -> bool {
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        let d_args: Vec<String> = args
            .iter()
            .map(|a| a.replace("<BASE>", &self.debian.base().display().to_string()))
            .collect();
        let o_args: Vec<String> = args
            .iter()
            .map(|a| a.replace("<BASE>", &self.ours.base().display().to_string()))
            .collect();
        let d_refs: Vec<&str> = d_args.iter().map(String::as_str).collect();
        let o_refs: Vec<&str> = o_args.iter().map(String::as_str).collect();
        let (dc, dout, derr) = self.debian.run(&d_refs, stdin);
        let (oc, oout, oerr) = self.ours.run(&o_refs, stdin);
        let dn = normalise(&dout, &self.debian, digits);
        let on = normalise(&oout, &self.ours, digits);
        let same = dc == oc && dn == on;
        let name = args.join(" ");
        if !same {
            eprintln!(
                "MISMATCH ctdb {name}\n--- debian (exit {dc}):\n{dn}{derr}--- ours (exit {oc}):\n{on}{oerr}"
            );
        }
        self.rows.push((name, same));
        same
    }

    fn both(&self, f: impl Fn(&Side)) {
        f(&self.debian);
        f(&self.ours);
    }
}

fn have_tools() -> bool {
    [CTDB, DEBIAN_CTDBD, "/usr/bin/ltdbtool", "/usr/bin/tdbdump"]
        .iter()
        .all(|p| Path::new(p).exists())
}

fn dump(tool: &str, args: &[&str], path: &Path) -> String {
    let out = Command::new(tool).args(args).arg(path).output().unwrap();
    assert!(out.status.success(), "{tool} {}", path.display());
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn stock_ctdb_against_ours_and_debian() {
    if !have_tools() {
        eprintln!("skipped: Debian's ctdb, ctdbd, ltdbtool or tdbdump not installed");
        return;
    }
    let debian = Side::start("debian", DEBIAN_CTDBD);
    let ours = Side::start("ours", OURS);
    debian.wait_ok();
    ours.wait_ok();
    let mut c = Compare {
        debian,
        ours,
        rows: Vec::new(),
    };

    // Node identity and simple queries.
    for args in [
        &["pnn"][..],
        &["listnodes"],
        &["status"],
        &["runstate"],
        &["runstate", "RUNNING"],
        &["runstate", "STARTUP"],
        &["getcapabilities"],
        &["getreclock"],
        &["getdebug"],
        &["getdbmap"],
        &["process-exists", "999999"],
        &["process-exists", "abc"],
        &["nosuchcommand"],
        &["getvar", "RecoverTimeout"],
        &["getvar", "recovertimeout"],
        &["getvar", "NoSuchTunable"],
        &["getvar"],
        &["listvars"],
        &["setvar", "NoSuchTunable", "1"],
        &["setvar", "RecoverTimeout"],
        &["setvar", "RecoverTimeout", "31"],
        &["getvar", "RecoverTimeout"],
        &["getvar", "MonitorInterval"],
        &["setdebug", "INFO"],
        &["getdebug"],
        &["setdebug", "NOSUCHLEVEL"],
        &["setdebug", "NOTICE"],
    ] {
        c.case(args, false);
    }
    for args in [
        &["ping"][..],
        &["uptime"],
        &["getpid"],
        &["statistics"],
        &["statisticsreset"],
        &["stats", "3"],
    ] {
        c.case(args, true);
    }
    // process-exists of the daemon itself (pid normalised).
    {
        let dp = c.debian.cluster.pid(0).unwrap().to_string();
        let op = c.ours.cluster.pid(0).unwrap().to_string();
        let (dc, dout, _) = c.debian.run(&["process-exists", &dp], None);
        let (oc, oout, _) = c.ours.run(&["process-exists", &op], None);
        let (dn, on) = (
            normalise(&dout, &c.debian, false),
            normalise(&oout, &c.ours, false),
        );
        let same = dc == oc && dn == on;
        if !same {
            eprintln!("MISMATCH process-exists <daemon pid>: debian {dc} {dn} ours {oc} {on}");
        }
        c.rows.push(("process-exists <daemon pid>".into(), same));
    }

    // Databases.
    for args in [
        &["attach", "test.tdb"][..],
        &["attach", "p.tdb", "persistent"],
        &["attach", "r.tdb", "replicated"],
        &["attach", "x.tdb", "bogus"],
        &["attach"],
        &["getdbmap"],
        &["getdbstatus", "test.tdb"],
        &["getdbstatus", "p.tdb"],
        &["getdbstatus", "nosuch.tdb"],
        &["writekey", "test.tdb", "key1", "value1"],
        &["writekey", "test.tdb", "key2", "value2"],
        &["readkey", "test.tdb", "key1"],
        &["readkey", "test.tdb", "nokey"],
        &["readkey", "nosuch.tdb", "key1"],
        &["catdb", "test.tdb"],
        &["cattdb", "test.tdb"],
        &["deletekey", "test.tdb", "key2"],
        &["catdb", "test.tdb"],
        &["pstore", "p.tdb", "pk1", "pv1"],
        &["pfetch", "p.tdb", "pk1"],
        &["pfetch", "p.tdb", "nokey"],
        &["pstore", "test.tdb", "k", "v"],
        &["getdbseqnum", "p.tdb"],
        &["pdelete", "p.tdb", "pk1"],
        &["pfetch", "p.tdb", "pk1"],
        &["getdbseqnum", "p.tdb"],
        &["getdbseqnum", "nosuch.tdb"],
        &["setdbreadonly", "test.tdb"],
        &["setdbsticky", "test.tdb"],
        &["getdbmap"],
        &["dbstatistics", "test.tdb"],
        &["dbstatistics", "nosuch.tdb"],
    ] {
        c.case(args, args[0] == "dbstatistics");
    }
    c.case_in(
        &["ptrans", "p.tdb"],
        Some("\"pk2\" \"pv2\"\n\"pk3\" \"pv3\"\n"),
        false,
    );
    c.case(&["pfetch", "p.tdb", "pk3"], false);
    c.case(&["getdbseqnum", "p.tdb"], false);
    c.case(&["catdb", "p.tdb"], false);
    c.case(&["backupdb", "p.tdb", "<BASE>/p.backup"], false);
    c.case(&["wipedb", "p.tdb"], false);
    c.case(&["catdb", "p.tdb"], false);
    c.case(&["restoredb", "<BASE>/p.backup"], false);
    c.case(&["pfetch", "p.tdb", "pk3"], false);
    c.case(&["dumpdbbackup", "<BASE>/p.backup"], true);
    c.case(&["wipedb", "test.tdb"], false);
    c.case(&["catdb", "test.tdb"], false);
    c.case(&["detach", "r.tdb"], false);
    c.case(&["setvar", "AllowClientDBAttach", "0"], false);
    c.case(&["detach", "r.tdb"], false);
    c.case(&["setvar", "AllowClientDBAttach", "1"], false);
    c.case(&["getdbmap"], false);

    // Our files, read with Debian's tools.
    let ob = c.ours.base();
    let pfile = ob.join("db/persistent/p.tdb.0");
    let td = dump("/usr/bin/tdbdump", &[], &pfile);
    assert!(td.contains("key(3) = \"pk3\""), "{td}");
    assert!(td.contains("key(3) = \"pk2\""), "{td}");
    let ld = dump("/usr/bin/ltdbtool", &["dump", "-p"], &pfile);
    assert!(ld.contains("__db_sequence_number__"), "{ld}");
    let vfile = ob.join("db/volatile/test.tdb.0");
    assert_eq!(dump("/usr/bin/tdbdump", &[], &vfile), "", "wiped");

    // Roles.
    for args in [
        &["setlmasterrole", "off"][..],
        &["getcapabilities"],
        &["setlmasterrole", "on"],
        &["setleaderrole", "off"],
        &["getcapabilities"],
        &["setleaderrole", "on"],
        &["setlmasterrole", "maybe"],
        &["getcapabilities"],
    ] {
        c.case(args, false);
    }

    // Node states. An inactive (stopped, banned) single node has no leader
    // to answer the takeover run these commands ask for, so those give up
    // after -T on both daemons; the others get their answer.
    c.case(&["-T", "30", "disable"], false);
    c.case(&["nodestatus"], false);
    c.case(&["-T", "30", "enable"], false);
    c.both(|s| s.wait_ok());
    c.case(&["-T", "5", "stop"], false);
    c.case(&["nodestatus"], false);
    c.case(&["-T", "30", "continue"], false);
    c.both(|s| s.wait_ok());
    c.case(&["-T", "5", "ban", "3"], false);
    c.case(&["nodestatus"], false);
    c.case(&["ban", "xyz"], false);
    c.case(&["-T", "30", "unban"], false);
    c.both(|s| s.wait_ok());
    // A timed ban ends by itself.
    c.case(&["-T", "5", "ban", "2"], false);
    c.both(|s| s.wait_ok());

    // Event scripts.
    c.case(&["event", "script", "list", "legacy"], false);
    c.case(&["scriptstatus"], true);
    c.case(&["event", "status", "legacy", "monitor"], true);
    c.both(|s| std::fs::write(s.base().join("fail"), "").unwrap());
    c.both(|s| {
        s.wait_status("UNHEALTHY", Duration::from_secs(30), |st| {
            st.nodes.first().is_some_and(|n| n.2.contains("UNHEALTHY"))
        })
    });
    c.case(&["scriptstatus"], true);
    c.case(&["nodestatus"], false);
    c.both(|s| std::fs::remove_file(s.base().join("fail")).unwrap());
    c.both(|s| s.wait_ok());
    c.both(|s| std::fs::write(s.base().join("hang"), "").unwrap());
    c.both(|s| {
        s.wait_status("UNHEALTHY after timeouts", Duration::from_secs(40), |st| {
            st.nodes.first().is_some_and(|n| n.2.contains("UNHEALTHY"))
        })
    });
    c.case(&["scriptstatus"], true);
    c.both(|s| std::fs::remove_file(s.base().join("hang")).unwrap());
    c.both(|s| s.wait_ok());
    c.case(&["event", "script", "disable", "legacy", "01.test"], false);
    c.case(&["event", "script", "list", "legacy"], false);
    c.case(&["event", "script", "enable", "legacy", "01.test"], false);
    c.case(&["event", "script", "enable", "legacy", "99.nosuch"], false);
    c.case(&["event", "run", "10", "legacy", "monitor"], false);
    c.case(&["event", "run", "10", "legacy", "nosuchevent"], false);
    assert_eq!(c.ours.node_state(), "OK (THIS NODE)");

    // The same notifications in the same order.
    let notes =
        |s: &Side| std::fs::read_to_string(s.base().join("notifications")).unwrap_or_default();
    let (dn, on) = (notes(&c.debian), notes(&c.ours));
    eprintln!("notifications: debian {dn:?} ours {on:?}");
    assert!(on.starts_with("init\nsetup\nstartup\nhealthy\n"), "{on}");
    c.rows.push(("<notify.sh calls>".into(), dn == on));

    // Report.
    let matched = c.rows.iter().filter(|r| r.1).count();
    eprintln!("\nstock ctdb: ours vs Debian's ctdbd 4.17");
    for (name, same) in &c.rows {
        eprintln!(
            "  {} ctdb {name}",
            if *same { "match   " } else { "DIFFERS " }
        );
    }
    eprintln!("{matched} of {} commands match", c.rows.len());

    // Shutdown ends both daemons cleanly.
    let Compare {
        mut debian,
        mut ours,
        rows,
    } = c;
    for side in [&mut debian, &mut ours] {
        let (code, _, _) = side.run(&["shutdown"], None);
        assert_eq!(code, 0, "{}: ctdb shutdown", side.name);
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while ours.cluster.pid(0).is_some_and(ctdb_tests::procs::is_alive) && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(50));
    }
    let pid = ours.cluster.pid(0).unwrap();
    assert!(
        !ctdb_tests::procs::is_alive(pid),
        "our ctdbd still running after shutdown"
    );
    let log = std::fs::read_to_string(ours.cluster.log(0).unwrap()).unwrap_or_default();
    assert!(log.contains("Shutdown sequence complete"), "{log}");
    let _ = debian.cluster.stop_all();
    let _ = ours.cluster.stop_all();

    // Everything matches but these (see the module docs of ctdbd's
    // `monitor` for why).
    let known_different: &[&str] = &[];
    let bad: Vec<&str> = rows
        .iter()
        .filter(|(n, s)| !*s && !known_different.contains(&n.as_str()))
        .map(|(n, _)| n.as_str())
        .collect();
    assert!(bad.is_empty(), "differ from Debian's ctdbd: {bad:?}");
}
