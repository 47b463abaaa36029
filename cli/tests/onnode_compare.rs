//! Our `onnode` against Debian's `/usr/bin/onnode` (Samba 4.17's script)
//! in upstream's test mode: `ONNODE_SSH` names a program that runs the
//! command locally (like `local_daemons.sh ssh`) with the node's address in
//! `$NODE_ADDR`, the nodes file lists loopback addresses, and a `ctdb` in
//! `PATH` answers `ctdb -X status` / `ctdb pnn` from files (as upstream's
//! onnode unit-test stub does). Both tools run with the same `$0` so their
//! messages compare equal; stdout, stderr and exit status must match.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const OURS: &str = env!("CARGO_BIN_EXE_onnode");
const DEBIAN: &str = "/usr/bin/onnode";

/// Fake ssh, local mode: `[-n] HOST COMMAND...` runs COMMAND with `sh -c`
/// here, stdin closed with -n, `NODE_ADDR=HOST`.
const LOCAL_SSH: &str = r#"#!/bin/sh
close=false
if [ "$1" = "-n" ]; then close=true; shift; fi
host="$1"; shift
export NODE_ADDR="$host"
if $close; then exec sh -c "$*" </dev/null; else exec sh -c "$*"; fi
"#;

/// Upstream's onnode unit-test ssh stub: prints its arguments.
const ECHO_SSH: &str = "#!/bin/sh\necho \"$*\"\n";

/// Fake ctdb client: `-X status` from $STATUS_FILE (exit $STATUS_RC),
/// `pnn` per node address (127.0.0.1 is "down", 127.0.0.2 answers
/// first).
const FAKE_CTDB: &str = r#"#!/bin/sh
case "$*" in
"-X status") cat "$STATUS_FILE"; exit "${STATUS_RC:-0}" ;;
pnn)
    case "$NODE_ADDR" in
    127.0.0.1) echo "connect() failed, errno=111" >&2; exit 1 ;;
    127.0.0.2) echo 1 ;;
    127.0.0.3) sleep 1.5; echo 3 ;;
    *) sleep 1.5; echo 5 ;;
    esac ;;
*) echo "fake ctdb: $*"; exit 1 ;;
esac
"#;

/// Fake rsync for -P: shows what it was asked to copy and how.
const FAKE_RSYNC: &str = "#!/bin/sh\necho \"rsync $* rsh=${RSYNC_RSH:-}\"\n";

const NODES: &str = "127.0.0.1\n127.0.0.2  # second\n\n127.0.0.3\n#gone\n127.0.0.4\n";

const STATUS: &str = "\
|Node|IP|Disconnected|Banned|Disabled|Unhealthy|Stopped|Inactive|PartiallyOnline|ThisNode|
|0|127.0.0.1|0|0|0|0|0|0|0|Y|
|1|127.0.0.2|1|0|0|0|0|0|0|N|
|3|127.0.0.3|0|0|0|1|0|0|0|N|
|5|127.0.0.4|0|0|0|0|0|0|0|N|
";

struct Env {
    dir: PathBuf,
}

impl Env {
    fn new(tag: &str) -> Env {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let dir = std::env::temp_dir().join(format!("onnode-{tag}-{}-{nanos}", std::process::id()));
        for d in ["stubs", "base", "work"] {
            std::fs::create_dir_all(dir.join(d)).expect("mkdir");
        }
        let e = Env { dir };
        e.script("stubs/ssh", LOCAL_SSH);
        e.script("stubs/echo-ssh", ECHO_SSH);
        e.script("stubs/ctdb", FAKE_CTDB);
        e.script("stubs/rsync", FAKE_RSYNC);
        std::fs::write(e.path("base/nodes"), NODES).expect("nodes");
        std::fs::write(e.path("status.txt"), STATUS).expect("status");
        e
    }

    fn path(&self, p: &str) -> PathBuf {
        self.dir.join(p)
    }

    fn script(&self, p: &str, text: &str) {
        let path = self.path(p);
        std::fs::write(&path, text).expect("write script");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }

    fn command(&self, bin: &str, args: &[&str], vars: &[(&str, &str)]) -> Command {
        assert!(Path::new(bin).exists(), "{bin} is missing (install ctdb)");
        let path = format!(
            "{}:{}",
            self.path("stubs").display(),
            std::env::var("PATH").unwrap_or_else(|_| "/usr/bin:/bin".into())
        );
        let mut c = Command::new(bin);
        c.arg0(DEBIAN)
            .args(args)
            .current_dir(self.path("work"))
            .env("PATH", path)
            .env("CTDB_BASE", self.path("base"))
            .env("ONNODE_SSH", self.path("stubs/ssh"))
            .env("STATUS_FILE", self.path("status.txt"))
            .env("PWD", self.path("work"))
            .env_remove("STATUS_RC");
        for (k, v) in vars {
            if v.is_empty() {
                c.env_remove(k);
            } else {
                c.env(k, v);
            }
        }
        c
    }

    fn run(&self, bin: &str, args: &[&str], vars: &[(&str, &str)], input: Option<&str>) -> Out {
        let mut c = self.command(bin, args, vars);
        c.stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        let mut child = c.spawn().expect("spawn onnode");
        if let Some(text) = input {
            let mut si = child.stdin.take().expect("stdin");
            let _ = si.write_all(text.as_bytes());
        }
        let o = child.wait_with_output().expect("wait onnode");
        Out {
            code: o.status.code(),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }

    /// Run both; `sorted` compares stdout line-sorted (parallel runs).
    fn compare(
        &self,
        args: &[&str],
        vars: &[(&str, &str)],
        input: Option<&str>,
        sorted: bool,
    ) -> Out {
        let mut d = self.run(DEBIAN, args, vars, input);
        let mut o = self.run(OURS, args, vars, input);
        if sorted {
            for x in [&mut d, &mut o] {
                let mut l: Vec<&str> = x.stdout.lines().collect();
                l.sort_unstable();
                x.stdout = l.join("\n");
            }
        }
        assert_eq!(
            o, d,
            "onnode {args:?} {vars:?}: ours (left) vs Debian (right)"
        );
        o
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[derive(Debug, PartialEq, Eq)]
struct Out {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

#[test]
fn serial_runs_match_debian() {
    let e = Env::new("serial");
    let cases: &[(&[&str], i32)] = &[
        (&["all", "echo $NODE_ADDR"], 0),
        (&["0", "echo $NODE_ADDR; exit 3"], 3),
        (&["-v", "0", "hostname >/dev/null; echo ok"], 0),
        (&["1,3", "echo out; echo err >&2"], 0),
        (&["5-5,0", "echo $NODE_ADDR"], 0),
        (&["0,0", "echo $NODE_ADDR"], 0),
        (&["3-1", "true"], 0),
        (&["", "true"], 0),
        (&["2", "true"], 1),
        (&["9", "true"], 1),
        (&["0,9", "echo must not run"], 1),
        (&["1-4", "echo must not run"], 1),
        (&["x", "true"], 1),
        (&["1-2-3", "true"], 1),
        (&["0,,1", "true"], 1),
        (&["0004", "true"], 1),
        (&["-n", "somehost,1", "echo $NODE_ADDR"], 0),
        (&["-n", "0,,1", "echo $NODE_ADDR"], 0),
        (&["-q", "all", "echo $NODE_ADDR"], 0),
        (&["-q", "-v", "all", "echo $NODE_ADDR"], 0),
        (&["all", "exit 2"], 2),
        (&["all", "[ $NODE_ADDR = 127.0.0.3 ] && exit 7; exit 0"], 7),
        (&["-c", "0", "pwd"], 0),
        (&["0", "echo", "several", "words"], 0),
        (&["--", "0", "echo dashdash"], 0),
        (&["-f", "nodes", "5", "echo $NODE_ADDR"], 0),
        (&["-f", "missing", "0", "true"], 1),
        (&["-x", "0", "true"], 1),
        (&["-f"], 1),
        (&["-h"], 1),
        (&["--help"], 1),
        (&["all"], 1),
        (&[], 1),
    ];
    for (args, code) in cases {
        let o = e.compare(args, &[], None, false);
        assert_eq!(o.code, Some(*code), "onnode {args:?}: {o:?}");
    }
    // The header format, exactly.
    let o = e.compare(&["1,3", "echo $NODE_ADDR"], &[], None, false);
    assert_eq!(o.stdout, "127.0.0.2\n127.0.0.3\n");
    assert_eq!(
        o.stderr,
        "\n>> NODE: 127.0.0.2 <<\n\n>> NODE: 127.0.0.3 <<\n"
    );
    // A nodes file given by absolute path.
    let nodes = e.path("base/nodes");
    let abs = nodes.to_str().unwrap_or_default();
    e.compare(&["-f", abs, "all", "echo $NODE_ADDR"], &[], None, false);
}

#[test]
fn arguments_passed_to_ssh_match_debian() {
    let e = Env::new("echo-ssh");
    let ssh = e.path("stubs/echo-ssh");
    let ssh = ssh.to_str().unwrap_or_default();
    let with_opt = format!("{ssh} -o BatchMode=yes");
    for (args, sorted) in [
        (&["all", "hostname"][..], false),
        (&["-i", "all", "hostname"][..], false),
        (&["-p", "all", "hostname"][..], true),
        (&["-pq", "all", "hostname"][..], true),
        (&["-pi", "0,1", "hostname"][..], true),
        (&["-c", "3", "ls -l"][..], false),
    ] {
        let o = e.compare(args, &[("ONNODE_SSH", ssh)], None, sorted);
        assert!(o.stdout.contains("127.0.0."), "{o:?}");
    }
    let o = e.compare(
        &["0", "hostname"],
        &[("ONNODE_SSH", &with_opt)],
        None,
        false,
    );
    assert_eq!(o.stdout, "-o BatchMode=yes -n 127.0.0.1 hostname\n");
    // ONNODE_SSH from $CTDB_BASE/onnode.conf.
    std::fs::write(
        e.path("base/onnode.conf"),
        format!("ONNODE_SSH=\"{ssh} -o FromConf=1\"\n"),
    )
    .expect("conf");
    let o = e.compare(&["1", "uptime"], &[("ONNODE_SSH", "")], None, false);
    assert_eq!(o.stdout, "-o FromConf=1 -n 127.0.0.2 uptime\n");
}

#[test]
fn parallel_runs_match_debian() {
    let e = Env::new("parallel");
    let cases: &[(&[&str], i32)] = &[
        (&["-p", "all", "echo $NODE_ADDR; echo err >&2"], 0),
        (&["-pq", "all", "echo $NODE_ADDR"], 0),
        (&["-p", "0", "echo $NODE_ADDR; exit 4"], 4),
        (&["-pv", "1", "echo $NODE_ADDR"], 0),
        (&["-p", "all", "exit $(echo $NODE_ADDR | cut -d. -f4)"], 4),
        (
            &[
                "-p",
                "0,1",
                "sleep 0.$(echo $NODE_ADDR | cut -d. -f4); echo late $NODE_ADDR",
            ],
            0,
        ),
    ];
    for (args, code) in cases {
        let o = e.compare(args, &[], None, true);
        assert_eq!(o.code, Some(*code), "onnode {args:?}: {o:?}");
    }
    let o = e.compare(&["-p", "1,3", "echo a; echo b >&2"], &[], None, true);
    assert_eq!(
        o.stdout,
        "[127.0.0.2] a\n[127.0.0.2] b\n[127.0.0.3] a\n[127.0.0.3] b"
    );
}

#[test]
fn standard_input_handling_matches_debian() {
    let e = Env::new("stdin");
    for args in [
        &["0", "cat"][..],
        &["-i", "0", "cat"][..],
        &["-i", "0,1", "cat"][..],
        &["-i", "-p", "0", "cat"][..],
    ] {
        e.compare(args, &[], Some("input line\n"), false);
    }
    let o = e.run(OURS, &["-i", "0", "cat"], &[], Some("input line\n"));
    assert_eq!(o.stdout, "input line\n");
}

#[test]
fn status_based_node_selection_matches_debian() {
    let e = Env::new("status");
    // ok: no status bit set (node 5 -> 127.0.0.4... and 0); con: connected.
    let o = e.compare(&["ok", "echo $NODE_ADDR"], &[], None, false);
    assert_eq!(o.stdout, "127.0.0.1\n127.0.0.4\n");
    let o = e.compare(&["con", "echo $NODE_ADDR"], &[], None, false);
    assert_eq!(o.stdout, "127.0.0.1\n127.0.0.3\n127.0.0.4\n");
    e.compare(&["healthy,connected", "echo $NODE_ADDR"], &[], None, false);
    e.compare(&["-p", "ok", "echo $NODE_ADDR"], &[], None, true);
    // `any`: node 0 is down, node 1 answers `ctdb pnn` with 1.
    let o = e.compare(&["any", "echo $NODE_ADDR"], &[], None, false);
    assert_eq!(o.stdout, "127.0.0.2\n");
    // ctdb failing.
    let o = e.compare(&["ok", "true"], &[("STATUS_RC", "3")], None, false);
    assert_eq!(o.code, Some(1));
    assert!(o
        .stderr
        .starts_with("onnode: unable to get status of CTDB nodes\n"));
    // A status line naming a node the nodes file does not have.
    std::fs::write(
        e.path("status.txt"),
        "|Node|IP|Disconnected|\n|0|127.0.0.1|0|\n|9|127.0.0.9|0|\n",
    )
    .expect("status");
    let o = e.compare(&["con", "echo must not run"], &[], None, false);
    assert_eq!(o.code, Some(1));
}

#[test]
fn push_mode_matches_debian() {
    let e = Env::new("push");
    for args in [
        &["-P", "0", "/etc/hostname"][..],
        &["-P", "0,1", "rel/file", "/abs/other"][..],
        &["-P", "-v", "3", "one"][..],
        &["-P", "-p", "all", "f"][..],
    ] {
        e.compare(args, &[], None, args.contains(&"-p"));
    }
    let o = e.compare(
        &["-P", "1", "a"],
        &[("ONNODE_SSH", "myssh -x")],
        None,
        false,
    );
    let work = e.path("work");
    assert_eq!(
        o.stdout,
        format!(
            "rsync {}/a [127.0.0.2]:{}/a rsh=myssh -x\n",
            work.display(),
            work.display()
        )
    );
}

#[test]
fn sigterm_stops_parallel_commands() {
    let e = Env::new("sigterm");
    let mut c = e.command(
        OURS,
        &[
            "-p",
            "all",
            &format!(
                "echo $$ > {}/pid.$NODE_ADDR; exec sleep 30",
                e.path("work").display()
            ),
        ],
        &[],
    );
    let mut child = c
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn onnode");
    let start = Instant::now();
    let pidfiles: Vec<PathBuf> = ["1", "2", "3", "4"]
        .iter()
        .map(|n| e.path(&format!("work/pid.127.0.0.{n}")))
        .collect();
    let mut pids = Vec::new();
    while start.elapsed() < Duration::from_secs(10) {
        pids = pidfiles
            .iter()
            .filter_map(|p| std::fs::read_to_string(p).ok())
            .filter_map(|s| s.trim().parse::<u32>().ok())
            .collect();
        if pids.len() == 4 {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    if pids.len() != 4 {
        let _ = child.kill();
        let _ = child.wait();
        panic!("commands did not start: {pids:?}");
    }
    let st = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .expect("kill");
    assert!(st.success());
    let mut status = None;
    while start.elapsed() < Duration::from_secs(15) {
        if let Some(s) = child.try_wait().expect("try_wait") {
            status = Some(s);
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let Some(status) = status else {
        let _ = child.kill();
        let _ = child.wait();
        panic!("onnode did not finish after SIGTERM");
    };
    // Every command was killed by SIGTERM: status 128 + 15.
    assert_eq!(status.code(), Some(143));
    assert!(start.elapsed() < Duration::from_secs(15));
    for pid in pids {
        assert!(
            !Path::new(&format!("/proc/{pid}")).exists(),
            "command {pid} survived"
        );
    }
}

/// In serial mode the trap has no background job to kill: a SIGTERM to
/// onnode lets the running command finish and the remaining nodes run,
/// for Debian's script and ours alike.
#[test]
fn sigterm_in_serial_mode_behaves_like_debian() {
    let e = Env::new("sigterm-serial");
    let work = e.path("work");
    let cmd = format!(
        "echo start $NODE_ADDR; touch {}/started.$NODE_ADDR; sleep 1; echo end $NODE_ADDR",
        work.display()
    );
    let mut outs = Vec::new();
    for bin in [DEBIAN, OURS] {
        let marker = work.join("started.127.0.0.1");
        let _ = std::fs::remove_file(&marker);
        let _ = std::fs::remove_file(work.join("started.127.0.0.2"));
        let child = e
            .command(bin, &["-q", "0,1", &cmd], &[])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn onnode");
        let start = Instant::now();
        while !marker.exists() && start.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(10));
        }
        let sent = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status()
            .expect("kill");
        let o = child.wait_with_output().expect("wait onnode");
        assert!(
            marker.exists() && sent.success(),
            "{bin}: command never started"
        );
        outs.push((
            o.status.code(),
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        ));
    }
    assert_eq!(outs[1], outs[0], "ours (left) vs Debian (right)");
    assert_eq!(
        outs[1].1,
        "start 127.0.0.1\nend 127.0.0.1\nstart 127.0.0.2\nend 127.0.0.2\n"
    );
}

/// Seeded random node specifications and option sets, each compared with
/// Debian's script (set ONNODE_SEED to replay a failure).
#[test]
fn random_nodespecs_match_debian() {
    fn next(s: &mut u64) -> u64 {
        *s = s.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = *s;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    let seed = std::env::var("ONNODE_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x0417_0012u64);
    eprintln!("onnode random nodespecs, seed {seed}");
    let e = Env::new("random");
    let atoms = [
        "0", "1", "3", "5", "2", "6", "007", "0-1", "3-5", "1-0", "0-3", "all", "ok", "con",
        "healthy", "x", "-1", "", "1 3", "+1", "00",
    ];
    let flags = ["-q", "-v", "-n", "-p", "-pq"];
    let mut s = seed;
    for case in 0..60 {
        let n = 1 + next(&mut s) % 3;
        let spec: Vec<&str> = (0..n)
            .map(|_| atoms[(next(&mut s) % atoms.len() as u64) as usize])
            .collect();
        let spec = spec.join(",");
        let mut args: Vec<&str> = Vec::new();
        for f in flags {
            if next(&mut s) & 3 == 0 {
                args.push(f);
            }
        }
        let parallel = args.iter().any(|a| a.starts_with("-p"));
        args.push(&spec);
        args.push("echo $NODE_ADDR");
        let d = e.run(DEBIAN, &args, &[], None);
        let o = e.run(OURS, &args, &[], None);
        let norm = |x: &Out| {
            let mut l: Vec<String> = x.stdout.lines().map(str::to_string).collect();
            if parallel {
                l.sort();
            }
            (x.code, l, x.stderr.clone())
        };
        assert_eq!(
            norm(&o),
            norm(&d),
            "seed {seed} case {case}: onnode {args:?}: ours (left) vs Debian (right)"
        );
    }
}
