//! Our `ctdb` against Debian's `/usr/bin/ctdb` 4.17, both talking to a
//! 3-node cluster of Debian's ctdbd on loopback: every case must give the
//! same stdout, stderr and exit code (after masking values that change
//! between two runs: times, counters).
//!
//! Read-only cases run once per CLI. State-changing cases run as a
//! scenario — the whole sequence with our CLI, then the same sequence with
//! Debian's — and each step is compared; every scenario ends in the state it
//! started from.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ctdb_tests::{Cluster, DEBIAN_CTDB, DEBIAN_CTDBD};

const OURS: &str = env!("CARGO_BIN_EXE_ctdb");

#[derive(Debug, Clone, PartialEq, Eq)]
struct Run {
    stdout: String,
    stderr: String,
    code: i32,
}

/// Which masking a case needs.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mask {
    None,
    /// Every run of digits becomes "N" (times, counters).
    Digits,
    /// `time=…` of ping.
    PingTime,
    /// Drop `dbid:` lines (the id is a hash of the per-CLI db name).
    NoDbId,
}

fn mask(s: &str, m: Mask) -> String {
    match m {
        Mask::None => s.to_string(),
        Mask::Digits => {
            let mut out = String::new();
            let mut in_digits = false;
            for c in s.chars() {
                if c.is_ascii_digit() {
                    if !in_digits {
                        out.push('N');
                    }
                    in_digits = true;
                } else {
                    in_digits = false;
                    out.push(c);
                }
            }
            out
        }
        Mask::NoDbId => s
            .lines()
            .filter(|l| !l.starts_with("dbid: "))
            .map(|l| format!("{l}\n"))
            .collect(),
        Mask::PingTime => s
            .lines()
            .map(|l| match (l.find("time="), l.find(" sec")) {
                (Some(a), Some(b)) if b > a => format!("{}time=T{}\n", &l[..a], &l[b..]),
                _ => format!("{l}\n"),
            })
            .collect(),
    }
}

struct Env {
    cluster: Cluster,
    /// Extra environment per run (overrides the node's).
    dir: PathBuf,
}

impl Env {
    fn run(&self, cli: &str, node: usize, args: &[&str], extra: &[(&str, String)]) -> Run {
        let mut cmd = Command::new(cli);
        cmd.args(args)
            .env_remove("CTDB_TOOL_SETPGID")
            .env_remove("CTDB_TIMEOUT")
            .envs(self.cluster.env(node).expect("node env"))
            .env("TZ", "UTC")
            .stdin(Stdio::null());
        for (k, v) in extra {
            cmd.env(k, v);
        }
        let out = cmd.output().expect("run cli");
        Run {
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            code: out.status.code().unwrap_or(-1),
        }
    }
}

struct Case {
    node: usize,
    args: Vec<String>,
    mask: Mask,
    extra: Vec<(&'static str, String)>,
}

fn case(node: usize, args: &str, mask: Mask) -> Case {
    Case {
        node,
        args: args.split_whitespace().map(str::to_string).collect(),
        mask,
        extra: Vec::new(),
    }
}

fn describe(c: &Case) -> String {
    let env: Vec<String> = c.extra.iter().map(|(k, v)| format!("{k}={v} ")).collect();
    format!(
        "[node {}] {}ctdb {}",
        c.node,
        env.join(""),
        c.args.join(" ")
    )
}

#[derive(Default)]
struct Tally {
    compared: usize,
    mismatches: Vec<String>,
}

fn masked(r: &Run, m: Mask) -> Run {
    Run {
        stdout: mask(&r.stdout, m),
        stderr: mask(&r.stderr, m),
        code: r.code,
    }
}

impl Tally {
    fn check(&mut self, c: &Case, ours: &Run, theirs: &Run) {
        self.compared += 1;
        let o = masked(ours, c.mask);
        let t = masked(theirs, c.mask);
        if o != t {
            self.mismatches.push(format!(
                "{}\n--- ours (exit {}):\n{}{}--- debian (exit {}):\n{}{}",
                describe(c),
                o.code,
                o.stdout,
                o.stderr,
                t.code,
                t.stdout,
                t.stderr
            ));
        }
    }
}

fn run_case(env: &Env, cli: &str, c: &Case) -> Run {
    run_case_with(env, cli, c, &[])
}

/// Runs `c` with `{name}` placeholders replaced by `subst` values, and maps
/// the values back to their placeholders in the output, so two runs on
/// different databases compare equal when they behave the same.
fn run_case_with(env: &Env, cli: &str, c: &Case, subst: &[(String, String)]) -> Run {
    let args: Vec<String> = c
        .args
        .iter()
        .map(|a| {
            let mut a = a.clone();
            for (k, v) in subst {
                a = a.replace(k.as_str(), v);
            }
            a
        })
        .collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut r = env.run(cli, c.node, &args, &c.extra);
    // Longest values first, so a path is replaced before the name in it.
    let mut back: Vec<&(String, String)> = subst.iter().collect();
    back.sort_by_key(|(_, v)| std::cmp::Reverse(v.len()));
    for (k, v) in back {
        r.stdout = r.stdout.replace(v.as_str(), k);
        r.stderr = r.stderr.replace(v.as_str(), k);
    }
    r
}

/// Like [`compare_scenario`], each CLI on its own databases and files
/// (placeholders `{v}` volatile db, `{p}` persistent db, `{dir}` scratch
/// directory, `{ppath}` the persistent db's file on node 0, `{s}` a volatile
/// db made readonly and sticky).
fn compare_templated(env: &Env, tally: &mut Tally, steps: &[Case]) {
    let subst = |tag: &str| -> Vec<(String, String)> {
        let p = format!("cmp_p_{tag}.tdb");
        let ppath = env
            .cluster
            .base(0)
            .expect("base")
            .join("db")
            .join("persistent")
            .join(format!("{p}.0"));
        vec![
            ("{v}".to_string(), format!("cmp_v_{tag}.tdb")),
            ("{ppath}".to_string(), ppath.display().to_string()),
            ("{p}".to_string(), p),
            ("{dir}".to_string(), env.dir.join(tag).display().to_string()),
            ("{s}".to_string(), format!("cmp_s_{tag}.tdb")),
        ]
    };
    let (so, st) = (subst("ours"), subst("debian"));
    for s in [&so, &st] {
        std::fs::create_dir_all(&s[3].1).expect("scratch dir");
        std::fs::write(
            format!("{}/ptrans.txt", s[3].1),
            "\"a\" \"1\"\n\"b\" \"0x4243\"\n  \"c\"\t\"\"\nbad line\n\"unterminated\n\"\"  \"x\"\n\"d\" nq\n",
        )
        .expect("ptrans input");
    }
    let ours: Vec<Run> = steps
        .iter()
        .map(|c| run_case_with(env, OURS, c, &so))
        .collect();
    let theirs: Vec<Run> = steps
        .iter()
        .map(|c| run_case_with(env, DEBIAN_CTDB, c, &st))
        .collect();
    for ((c, o), t) in steps.iter().zip(&ours).zip(&theirs) {
        tally.check(c, o, t);
    }
}

/// Record access on volatile and persistent databases, backup/restore and
/// detach, on fresh databases.
fn record_scenario() -> Vec<Case> {
    use Mask::*;
    vec![
        case(0, "attach {v}", None),
        case(0, "attach {p} persistent", None),
        case(0, "writekey {v} key1 value1", None),
        case(0, "readkey {v} key1", None),
        case(1, "readkey {v} key1", None),
        case(0, "cattdb {v}", None),
        case(1, "cattdb {v}", None),
        case(2, "catdb {v}", None),
        case(0, "writekey {v} 0x6b6579 0x0001ff41", None),
        case(2, "readkey {v} key", None),
        case(0, "readkey {v} nosuch readonly", None),
        case(1, "deletekey {v} key1", None),
        case(0, "readkey {v} key1", None),
        case(1, "cattdb {v}", None),
        case(0, "catdb {v}", None),
        case(0, "readkey {v} 0x123", None),
        case(0, "writekey {v} k 0xzz", None),
        case(0, "pstore {p} pkey pvalue", None),
        case(1, "pfetch {p} pkey", None),
        case(0, "pstore {p} 0x01 0x0203", None),
        case(2, "cattdb {p}", None),
        case(0, "getdbseqnum {p}", None),
        case(0, "pdelete {p} pkey", None),
        case(0, "pfetch {p} pkey", None),
        case(0, "pfetch {p} 0x1", None),
        case(0, "ptrans {p} {dir}/ptrans.txt", None),
        case(0, "ptrans {p} {dir}/nonexistent", None),
        case(1, "cattdb {p}", None),
        case(0, "getdbseqnum {p}", None),
        case(0, "catdb {p}", None),
        case(0, "backupdb {p} {dir}/backup", None),
        case(0, "dumpdbbackup {dir}/backup", Digits),
        case(0, "wipedb {p}", None),
        case(0, "cattdb {p}", None),
        case(0, "restoredb {dir}/backup", Digits),
        case(1, "cattdb {p}", None),
        case(0, "restoredb {dir}/ptrans.txt", None),
        case(0, "tfetch {ppath} a", None),
        case(0, "tfetch {ppath} a {dir}/rec", None),
        case(0, "tfetch {ppath} nosuch", None),
        case(0, "tfetch {dir}/nonexistent a", None),
        case(0, "tstore {ppath} tk 0x41 7 2", None),
        case(0, "tfetch {ppath} tk", None),
        case(0, "tstore {ppath} tk2 0xz", None),
        // Debian's ctdbd 4.17 crashes when a readonly/sticky database is
        // detached, so these use a database of their own.
        case(0, "attach {s}", None),
        case(0, "writekey {s} key value", None),
        case(0, "setdbreadonly {s}", None),
        case(0, "setdbsticky {s}", None),
        case(0, "getdbstatus {s}", NoDbId),
        case(1, "readkey {s} key", None),
        case(2, "readkey {s} key readonly", None),
        case(0, "readkey {s} key", None),
        case(0, "setvar AllowClientDBAttach 0", None),
        case(0, "-n 1 setvar AllowClientDBAttach 0", None),
        case(0, "detach {v}", None),
        case(0, "-n 2 setvar AllowClientDBAttach 0", None),
        case(0, "detach {p}", None),
        case(0, "detach {v} nosuch.tdb", None),
        case(0, "getdbstatus {v}", None),
        case(0, "setvar AllowClientDBAttach 1", None),
        case(0, "-n 1 setvar AllowClientDBAttach 1", None),
        case(0, "-n 2 setvar AllowClientDBAttach 1", None),
    ]
}

/// Read-only cases observe a live cluster whose public-IP layout can still
/// move between the two runs (takeover runs after the nodes turn OK), so a
/// mismatch is retried a few times, both CLIs again, before it counts.
fn compare_each(env: &Env, tally: &mut Tally, cases: &[Case]) {
    for c in cases {
        let mut ours = run_case(env, OURS, c);
        let mut theirs = run_case(env, DEBIAN_CTDB, c);
        for _ in 0..3 {
            if masked(&ours, c.mask) == masked(&theirs, c.mask) {
                break;
            }
            std::thread::sleep(Duration::from_secs(2));
            ours = run_case(env, OURS, c);
            theirs = run_case(env, DEBIAN_CTDB, c);
        }
        tally.check(c, &ours, &theirs);
    }
}

fn compare_scenario(env: &Env, tally: &mut Tally, steps: &[Case]) {
    let ours: Vec<Run> = steps.iter().map(|c| run_case(env, OURS, c)).collect();
    let theirs: Vec<Run> = steps
        .iter()
        .map(|c| run_case(env, DEBIAN_CTDB, c))
        .collect();
    for ((c, o), t) in steps.iter().zip(&ours).zip(&theirs) {
        tally.check(c, o, t);
    }
}

fn read_only_cases(db_id: &str, ctdbd_pid: u32, busy_port: u16) -> Vec<Case> {
    use Mask::*;
    let mut v = vec![
        // Start-up, options and usage errors.
        case(0, "", None),
        case(0, "nosuchcommand", None),
        case(0, "-q status", None),
        case(0, "-n x status", None),
        case(0, "-n 4294967296 status", None),
        case(0, "-t", None),
        case(0, "--usage", None),
        case(0, "--help", None),
        case(0, "-? status", None),
        case(0, "--help=1", None),
        case(0, "-x", None),
        case(0, "status extra", None),
        case(0, "getvar", None),
        case(0, "setvar RecoverTimeout", None),
        case(0, "-n 7 status", None),
        case(0, "-n -2 status", None),
        case(0, "-n 1 pnn", None),
        case(0, "-n 0 listnodes", None),
        case(0, "-n 0 version", None),
        case(0, "version", None),
        // Node state.
        case(0, "status", None),
        case(1, "status", None),
        case(0, "-n 2 status", None),
        case(0, "-Y status", None),
        case(0, "-X status", None),
        case(0, "-x : -Y status", None),
        case(2, "nodestatus", None),
        case(0, "nodestatus all", None),
        case(0, "nodestatus 1", None),
        case(0, "nodestatus 0,2", None),
        case(0, "nodestatus 5", None),
        case(0, "nodestatus x", None),
        case(0, "-Y nodestatus all", None),
        case(0, "nodestatus all extra", None),
        case(0, "pnn", None),
        case(2, "pnn", None),
        case(0, "listnodes", None),
        case(0, "-Y listnodes", None),
        case(0, "ping", PingTime),
        case(0, "-n 2 ping", PingTime),
        case(0, "uptime", Digits),
        case(1, "-n 0 uptime", Digits),
        case(0, "runstate", None),
        case(0, "runstate running", None),
        case(0, "runstate setup startup", None),
        case(0, "runstate first_recovery", None),
        case(0, "runstate bogus", None),
        case(0, "leader", None),
        case(1, "leader", None),
        case(0, "getcapabilities", None),
        case(0, "-Y getcapabilities", None),
        case(0, "-n 1 -x ab -Y getcapabilities", None),
        case(0, "getreclock", None),
        case(0, "getdebug", None),
        case(0, "-n 2 getdebug", None),
        case(0, "-n 1 getpid", None),
        case(0, "process-exists 1", None),
        case(0, &format!("process-exists {ctdbd_pid}"), None),
        case(0, "process-exists 1 0x1234", None),
        case(0, "process-exists", None),
        // Tunables.
        case(0, "getvar RecoverTimeout", None),
        case(0, "getvar recovertimeout", None),
        case(0, "getvar NoSuchTunable", None),
        case(0, "-n 1 getvar EnableBans", None),
        case(0, "listvars", None),
        case(0, "listvars extra", None),
        case(0, "setvar NoSuchTunable 1", None),
        // Statistics.
        case(0, "statistics", Digits),
        case(0, "-Y statistics", Digits),
        case(0, "-n 1 statistics", Digits),
        case(0, "stats", Digits),
        case(0, "stats 1", Digits),
        case(0, "-Y stats", Digits),
        case(0, "statistics extra", None),
        // Databases.
        case(0, "getdbmap", None),
        case(1, "getdbmap", None),
        case(0, "-Y getdbmap", None),
        case(0, "getdbstatus cmp_v.tdb", None),
        case(0, &format!("getdbstatus {db_id}"), None),
        case(0, "getdbstatus cmp_p.tdb", None),
        case(0, "getdbstatus nosuch.tdb", None),
        case(0, "getdbstatus 0x12345678", None),
        case(0, "getdbseqnum cmp_p.tdb", None),
        case(0, "getdbseqnum nosuch.tdb", None),
        case(0, "dbstatistics cmp_v.tdb", None),
        case(0, "dbstatistics nosuch.tdb", None),
        case(0, "catdb cmp_v.tdb", None),
        case(0, "catdb cmp_p.tdb", None),
        case(0, "catdb nosuch.tdb", None),
        case(0, "-n 1 catdb cmp_v.tdb", None),
        case(0, "attach x.tdb bogus", None),
        case(0, "setdbreadonly cmp_p.tdb", None),
        case(0, "setdbsticky cmp_p.tdb", None),
        case(0, "setdbsticky nosuch.tdb", None),
        case(0, "pfetch cmp_v.tdb key", None),
        case(0, "pstore nosuch.tdb key value", None),
        case(0, "ptrans cmp_v.tdb", None),
        case(0, "readkey cmp_p.tdb key", None),
        case(0, "writekey cmp_p.tdb key value", None),
        case(0, "deletekey nosuch.tdb key", None),
        case(0, "readkey cmp_v.tdb key bogus", None),
        case(0, "detach", None),
        case(0, "detach cmp_v.tdb", None),
        case(0, "wipedb", None),
        case(0, "wipedb nosuch.tdb", None),
        // Public IPs and interfaces.
        case(0, "ip", None),
        case(1, "ip", None),
        case(0, "ip all", None),
        case(0, "-v ip", None),
        case(0, "-Y ip all", None),
        case(0, "-Y -v ip", None),
        case(0, "ip bogus", None),
        case(0, "ipinfo 192.0.2.1", None),
        case(0, "ipinfo 198.51.100.1", None),
        case(0, "ipinfo not-an-ip", None),
        case(0, "ifaces", None),
        case(0, "-Y ifaces", None),
        case(0, "setifacelink nosuch up", None),
        case(0, "setifacelink lo sideways", None),
        case(0, "setifacelink averyveryverylongname up", None),
        case(0, "gettickles 192.0.2.1", None),
        case(0, "-Y gettickles 192.0.2.1 445", None),
        case(0, "gettickles bogus", None),
        case(0, "addtickle bogus 192.0.2.1:1", None),
        case(0, "addip bogus lo", None),
        case(0, "addip 192.0.2.1/24 lo", None),
        case(0, "delip 198.51.100.1", None),
        case(0, "delip bogus", None),
        case(0, "moveip 192.0.2.1 x", None),
        case(0, "moveip bogus 1", None),
        case(0, "gratarp bogus lo", None),
        // Helpers and local commands.
        case(0, "scriptstatus", None),
        case(0, "scriptstatus startup", None),
        case(0, "scriptstatus a b", None),
        case(0, "event", None),
        case(0, "natgw", None),
        case(0, "lvs", None),
        case(0, "dumpdbbackup /nonexistent/backup", None),
        case(0, "dumpdbbackup", None),
        case(0, "checktcpport", None),
        case(0, "tickle", None),
        case(0, "tickle 127.0.0.1:1 127.0.0.1:2", None),
        case(0, "tickle ::1:5 127.0.0.1:3", None),
        case(0, &format!("checktcpport {busy_port}"), None),
        case(0, "tickle bogus 1.2.3.4:5", None),
        case(0, "setlmasterrole", None),
        case(0, "setlmasterrole maybe", None),
        case(0, "setleaderrole maybe", None),
        case(0, "setdebug bogus", None),
        case(0, "ban", None),
        case(0, "reloadips 9", None),
        case(0, "event status legacy monitor", None),
        case(0, "event script list legacy", None),
        case(0, "event bogus", None),
        case(0, "natgw leader", None),
        case(0, "lvs leader", None),
        case(0, "gratarp 192.0.2.1 lo", None),
        case(0, "-n 1 gettickles 192.0.2.2", None),
    ];
    // Daemon not reachable.
    let mut no_daemon = case(0, "status", None);
    no_daemon
        .extra
        .push(("CTDB_SOCKET", "/nonexistent/ctdbd.socket".to_string()));
    v.push(no_daemon);
    let mut no_nodes = case(0, "pnn", None);
    no_nodes
        .extra
        .push(("CTDB_SOCKET", "/nonexistent/ctdbd.socket".to_string()));
    no_nodes
        .extra
        .push(("CTDB_BASE", "/nonexistent/base".to_string()));
    v.push(no_nodes);
    let mut no_nodes_list = case(0, "listnodes", None);
    no_nodes_list
        .extra
        .push(("CTDB_BASE", "/nonexistent/base".to_string()));
    v.push(no_nodes_list);
    v
}

fn scenarios() -> Vec<Vec<Case>> {
    use Mask::*;
    vec![
        vec![
            case(0, "setvar RecoverTimeout 31", None),
            case(0, "getvar RecoverTimeout", None),
            case(0, "-n 1 setvar RecoverTimeout 0x20", None),
            case(0, "-n 1 getvar RecoverTimeout", None),
            case(0, "setvar RecoverTimeout bogus", None),
            case(0, "setvar RecoverTimeout 30", None),
            case(0, "-n 1 setvar recovertimeout 30", None),
            case(0, "getvar RecoverTimeout", None),
        ],
        vec![
            case(0, "setdebug DEBUG", None),
            case(0, "getdebug", None),
            case(0, "-n 2 setdebug 4", None),
            case(0, "-n 2 getdebug", None),
            case(0, "setdebug INFO", None),
            case(0, "-n 2 setdebug INFO", None),
            case(0, "getdebug", None),
        ],
        vec![
            case(0, "statisticsreset", None),
            case(0, "-n 1 statisticsreset", None),
        ],
        vec![
            case(0, "-n 1 disable", None),
            case(0, "nodestatus all", None),
            case(1, "nodestatus", None),
            case(0, "-n 1 disable", None),
            case(0, "-n 1 enable", None),
            case(0, "-n 1 enable", None),
            case(0, "nodestatus all", None),
        ],
        vec![
            case(2, "stop", None),
            case(0, "-n 2 nodestatus", None),
            case(2, "stop", None),
            case(2, "continue", None),
            case(2, "continue", None),
            case(0, "nodestatus all", None),
        ],
        vec![
            case(0, "-n 1 ban 0", None),
            case(0, "-n 1 ban bogus", None),
            case(0, "-n 1 unban", None),
        ],
        vec![
            case(0, "setifacelink lo down", None),
            // Not `ifaces` / `-v ip` here: right after the link goes down
            // they race the takeover run that moves node 0's address away
            // (one CLI saw it still on node 0, the other already moved).
            // The read-only cases compare both in a steady state.
            case(1, "status", None),
            case(1, "-Y status", None),
            case(0, "nodestatus all", None),
            case(0, "setifacelink lo up", None),
            // References change as the next takeover run moves addresses.
            case(0, "ifaces", Digits),
        ],
        vec![
            case(0, "addtickle 192.0.2.1:445 10.9.8.7:40000", None),
            case(0, "gettickles 192.0.2.1", None),
            case(0, "-Y gettickles 192.0.2.1 445", None),
            case(0, "deltickle 192.0.2.1:445 10.9.8.7:40000", None),
            case(0, "gettickles 192.0.2.1", None),
        ],
        vec![
            case(0, "attach cmp_v.tdb", None),
            case(0, "attach cmp_p.tdb persistent", None),
            case(0, "attach cmp_r.tdb replicated", None),
            case(0, "getdbmap", None),
        ],
        vec![
            case(0, "ipreallocate", None),
            case(0, "sync", None),
            case(0, "ip all", None),
        ],
        vec![
            case(0, "wipedb cmp_v.tdb", None),
            case(0, "catdb cmp_v.tdb", Digits),
        ],
        vec![
            case(0, "reloadnodes", None),
            case(0, "reloadips", None),
            case(0, "reloadips 1,2", None),
            case(0, "recover", None),
            // A recovery picks a new random generation.
            case(0, "status", Digits),
        ],
        vec![
            case(0, "setlmasterrole off", None),
            case(0, "getcapabilities", None),
            case(0, "setlmasterrole on", None),
            case(2, "setleaderrole off", None),
            case(2, "getcapabilities", None),
            case(2, "setleaderrole on", None),
            case(0, "-n 2 getcapabilities", None),
        ],
        vec![
            case(0, "addip 192.0.2.10/24 lo", None),
            case(0, "addip 192.0.2.10/24 lo", None),
            case(0, "delip 192.0.2.10", None),
            case(0, "delip 192.0.2.10", None),
            case(0, "moveip 192.0.2.3 2", None),
            case(0, "moveip 192.0.2.3 7", None),
            case(0, "moveip 203.0.113.1 1", None),
            case(0, "ipinfo 192.0.2.3", None),
        ],
        vec![
            // Long enough that the flag is seen by the 1 s polling.
            case(0, "-n 1 ban 30", None),
            case(0, "-n 1 nodestatus", None),
            case(0, "-n 1 ban 30", None),
            case(0, "-n 1 unban", None),
            case(0, "-n 1 unban", None),
        ],
    ]
}

/// With node 2's daemon frozen (SIGSTOP): controls forwarded to it time out
/// (`-t`), and a CLI connected to it gives up at `-T`; then SIGCONT.
fn compare_frozen(env: &mut Env, tally: &mut Tally) {
    let pid = env.cluster.pid(2).expect("node 2 pid");
    let cases = [
        case(0, "-t 1 -n 2 ping", Mask::None),
        case(1, "-t 1 -n 2 getvar RecoverTimeout", Mask::None),
        case(2, "-T 2 pnn", Mask::None),
    ];
    // The daemon this test started, by its pid.
    let signal = |sig: &str| {
        let st = Command::new("kill")
            .args([sig, &pid.to_string()])
            .status()
            .expect("run kill");
        assert!(st.success(), "kill {sig} {pid}");
    };
    signal("-STOP");
    for c in &cases {
        let ours = run_case(env, OURS, c);
        let theirs = run_case(env, DEBIAN_CTDB, c);
        tally.check(c, &ours, &theirs);
    }
    signal("-CONT");
    env.cluster
        .wait_all_ok(Path::new(DEBIAN_CTDB), Duration::from_secs(90))
        .expect("cluster OK after SIGCONT");
}

/// Waits until node `i`'s daemon has exited (the harness reaps it).
fn wait_exited(env: &mut Env, i: usize, limit: Duration) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if env.cluster.check_running().is_err() || env.cluster.pid(i).is_none() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

/// `shutdown` of the node the CLI is connected to (the tool waits for the
/// connection to close), then what the other nodes' CLIs say about the
/// stopped node; the node is restarted between the two CLIs' runs.
fn compare_shutdown(env: &mut Env, tally: &mut Tally) {
    let steps = [
        case(0, "-n 2 status", Mask::None),
        case(1, "-n 2 ping", Mask::None),
        case(0, "-n 2 listnodes", Mask::None),
    ];
    let shutdown = case(2, "shutdown", Mask::None);
    let mut runs: Vec<(Run, Vec<Run>)> = Vec::new();
    for cli in [OURS, DEBIAN_CTDB] {
        let r = run_case(env, cli, &shutdown);
        assert!(
            wait_exited(env, 2, Duration::from_secs(30)),
            "node 2 did not stop"
        );
        let after: Vec<Run> = steps.iter().map(|c| run_case(env, cli, c)).collect();
        runs.push((r, after));
        env.cluster.start_node(2).expect("restart node 2");
        env.cluster
            .wait_all_ok(Path::new(DEBIAN_CTDB), Duration::from_secs(90))
            .expect("cluster OK after restart");
    }
    tally.check(&shutdown, &runs[0].0, &runs[1].0);
    for (i, c) in steps.iter().enumerate() {
        tally.check(c, &runs[0].1[i], &runs[1].1[i]);
    }
}

fn write_public_addresses(cluster: &Cluster) {
    let text = "192.0.2.1/24 lo\n192.0.2.2/24 lo\n192.0.2.3/24 lo\n";
    for i in 0..cluster.len() {
        let p = cluster.base(i).expect("base").join("public_addresses");
        std::fs::write(&p, text).expect("write public_addresses");
    }
}

#[test]
fn ours_matches_debian_ctdb_against_debian_ctdbd() {
    let started = Instant::now();
    let mut cluster = Cluster::create_on_free_addresses(3, DEBIAN_CTDBD).expect("create cluster");
    write_public_addresses(&cluster);
    cluster.start_all().expect("start daemons");
    cluster
        .wait_all_ok(Path::new(DEBIAN_CTDB), Duration::from_secs(90))
        .expect("cluster OK");
    let dir = cluster.dir().to_path_buf();
    let env = Env { cluster, dir };

    // Databases used by the cases, created with Debian's CLI.
    for args in [
        &["attach", "cmp_v.tdb"][..],
        &["attach", "cmp_p.tdb", "persistent"][..],
        &["attach", "cmp_r.tdb", "replicated"][..],
    ] {
        let r = env.run(DEBIAN_CTDB, 0, args, &[]);
        assert_eq!(r.code, 0, "{args:?}: {}", r.stderr);
    }
    let db_id = {
        let r = env.run(DEBIAN_CTDB, 0, &["getdbstatus", "cmp_v.tdb"], &[]);
        r.stdout
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("dbid: "))
            .expect("dbid line")
            .to_string()
    };
    let pid = env.cluster.pid(0).expect("ctdbd pid");

    let mut tally = Tally::default();
    // A port in use, for checktcpport's failure.
    let busy = std::net::TcpListener::bind("0.0.0.0:0").expect("bind a port");
    let busy_port = busy.local_addr().expect("local addr").port();
    compare_each(&env, &mut tally, &read_only_cases(&db_id, pid, busy_port));
    drop(busy);
    let read_only = tally.compared;
    for s in scenarios() {
        compare_scenario(&env, &mut tally, &s);
    }
    compare_templated(&env, &mut tally, &record_scenario());
    let mut env = env;
    compare_frozen(&mut env, &mut tally);
    compare_shutdown(&mut env, &mut tally);
    eprintln!(
        "compared {} cases ({} read-only, {} in scenarios) in {:?}; {} mismatches; cluster in {}",
        tally.compared,
        read_only,
        tally.compared - read_only,
        started.elapsed(),
        tally.mismatches.len(),
        env.dir.display()
    );
    assert!(
        tally.mismatches.is_empty(),
        "{} of {} cases differ:\n\n{}",
        tally.mismatches.len(),
        tally.compared,
        tally.mismatches.join("\n")
    );
}
