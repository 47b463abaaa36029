//! The test programs (Rust versions of upstream's ctdb/tests/src clients)
//! against a real 3-node cluster of Debian's /usr/sbin/ctdbd, run with the
//! arguments upstream's INTEGRATION scripts use, checking the lines those
//! scripts grep for. One cluster serves every program (starting one costs
//! seconds); each program runs on all nodes at once, each copy bounded by
//! a watchdog that kills it by pid. `TESTPROGS_CTDBD=/path/to/ctdbd`
//! runs the same checks against another daemon.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use ctdb_perf::cluster::Cluster;

const NODES: usize = 3;

fn temp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("ctdb-testprogs-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("create temp dir");
    d
}

fn net() -> String {
    let pid = std::process::id();
    format!("127.{}.{}", 200 + pid % 50, (pid / 50) % 250 + 1)
}

fn bin(name: &str) -> PathBuf {
    // Cargo builds every bin of the package for its integration tests.
    let exe = Path::new(env!("CARGO_BIN_EXE_ctdb-perf"));
    exe.with_file_name(name)
}

fn spawn(name: &str, socket: &Path, args: &[&str]) -> Child {
    Command::new(bin(name))
        .args(args)
        .env("CTDB_SOCKET", socket)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {name}: {e}"))
}

/// Waits for `child` at most `limit`; kills it by pid when it overruns.
fn finish(name: &str, mut child: Child, limit: Duration) -> Output {
    let t0 = Instant::now();
    loop {
        match child.try_wait().expect("try_wait") {
            Some(_) => return child.wait_with_output().expect("collect output"),
            None if t0.elapsed() > limit => {
                let _ = child.kill();
                let out = child.wait_with_output().expect("collect output");
                panic!(
                    "{name} overran {limit:?}:\n{}\n{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            None => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

/// Runs `name args` on every node at once; returns each node's stdout,
/// asserting every copy exited 0.
fn on_all(c: &Cluster, name: &str, args: &[&str], limit: Duration) -> Vec<String> {
    let children: Vec<Child> = (0..NODES)
        .map(|i| spawn(name, &c.socket(i), args))
        .collect();
    children
        .into_iter()
        .enumerate()
        .map(|(i, ch)| {
            let out = finish(name, ch, limit);
            let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
            assert!(
                out.status.success(),
                "{name} on node {i} failed ({}):\n{stdout}\n{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
            eprintln!("{name} on node {i}:\n{stdout}");
            stdout
        })
        .collect()
}

fn on_node(c: &Cluster, i: usize, name: &str, args: &[&str]) -> Output {
    finish(
        name,
        spawn(name, &c.socket(i), args),
        Duration::from_secs(60),
    )
}

/// The number in "…PREFIX<number>SUFFIX…" of `line`.
fn number_between(line: &str, prefix: &str, suffix: &str) -> f64 {
    let rest = &line[line.find(prefix).expect(prefix) + prefix.len()..];
    let end = rest.find(suffix).expect(suffix);
    rest[..end]
        .parse()
        .unwrap_or_else(|_| panic!("number in {line:?}"))
}

/// The INTEGRATION scripts' sanity check: every line is "Waiting for
/// cluster" or matches `ok`, and "Waiting for cluster" appears once (node 0).
fn sanity(outputs: &[String], ok: impl Fn(&str) -> bool) {
    let mut waiting = 0;
    for line in outputs.iter().flat_map(|o| o.lines()) {
        if line == "Waiting for cluster" {
            waiting += 1;
        } else {
            assert!(ok(line), "unexpected line {line:?} in {outputs:?}");
        }
    }
    assert_eq!(waiting, 1, "{outputs:?}");
}

fn ctdb(c: &Cluster, i: usize, args: &[&str]) -> String {
    let out = Command::new("/usr/bin/ctdb")
        .args(args)
        .env("CTDB_SOCKET", c.socket(i))
        .output()
        .expect("run ctdb");
    assert!(
        out.status.success(),
        "ctdb {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn check_fetch_ring(c: &Cluster) {
    let n = NODES.to_string();
    let outs = on_all(
        c,
        "fetch_ring",
        &["-n", &n, "-D", "fetch_ring.tdb", "-k", "testkey", "-t", "4"],
        Duration::from_secs(60),
    );
    sanity(&outs, |l| {
        l.starts_with("Fetch[") && l.ends_with(" msgs/sec") && l.contains("]: ")
    });
    for o in &outs {
        let last = o.lines().last().expect("a line");
        let mps = number_between(last, "]: ", " msgs/sec");
        assert!(mps >= 10.0, "fetch_ring too slow: {last}");
    }
    // database/fetch.002.ring-hotkeys.sh: the ring's key is a hot key on
    // every node ("Count:N Key:<hex>").
    let hex: String = b"testkey".iter().map(|b| format!("{b:02x}")).collect();
    for i in 0..NODES {
        let stats = ctdb(c, i, &["dbstatistics", "fetch_ring.tdb"]);
        assert!(
            stats
                .lines()
                .any(|l| l.trim_start().starts_with("Count:") && l.ends_with(&format!("Key:{hex}"))),
            "testkey is no hot key on node {i}:\n{stats}"
        );
    }
}

fn check_message_ring(c: &Cluster) {
    let n = NODES.to_string();
    let outs = on_all(
        c,
        "message_ring",
        &["-n", &n, "-t", "4"],
        Duration::from_secs(60),
    );
    sanity(&outs, |l| {
        l.starts_with("Ring[") && l.contains(" msgs/sec (+ve=") && l.ends_with(')')
    });
    for o in &outs {
        let last = o.lines().last().expect("a line");
        assert!(number_between(last, "]: ", " msgs/sec") >= 10.0, "{last}");
        assert!(number_between(last, "+ve=", " ") >= 10.0, "{last}");
        assert!(number_between(last, "-ve=", ")") >= 10.0, "{last}");
    }
}

fn check_transaction_loop(c: &Cluster, db: &str, kind: &str) {
    ctdb(c, 0, &["attach", db, kind]);
    ctdb(c, 0, &["wipedb", db]);
    let n = NODES.to_string();
    let outs = on_all(
        c,
        "transaction_loop",
        &["-n", &n, "-t", "5", "-D", db, "-T", kind, "-k", "testkey"],
        Duration::from_secs(90),
    );
    sanity(&outs, |l| l.starts_with("Transaction["));
    // Each node's final line has one counter per node; the counters of all
    // nodes are positive (every node committed) in at least one line.
    let mut max = [0u64; NODES];
    for o in &outs {
        let last = o.lines().last().expect("a line");
        let counts: Vec<u64> = last
            .split("]: ")
            .nth(1)
            .expect("counters")
            .split_whitespace()
            .map(|s| s.parse().expect("counter"))
            .collect();
        assert_eq!(counts.len(), NODES, "{last}");
        for (m, v) in max.iter_mut().zip(counts) {
            *m = (*m).max(v);
        }
    }
    assert!(
        max.iter().all(|m| *m > 0),
        "a node never committed: {outs:?}"
    );
}

fn check_update_record_persistent(c: &Cluster) {
    let db = "persistent_test.tdb";
    ctdb(c, 0, &["attach", db, "persistent"]);
    ctdb(c, 0, &["wipedb", db]);
    let args1 = [
        "-D",
        db,
        "-k",
        "Update_Record_Persistent",
        "-v",
        "FirstValue",
    ];
    let out = on_node(c, 0, "update_record_persistent", &args1);
    assert!(out.status.success(), "{out:?}");
    let cat = ctdb(c, 0, &["cattdb", db]);
    assert_eq!(cat.matches("FirstValue").count(), 1, "{cat}");
    let args2 = [
        "-D",
        db,
        "-k",
        "Update_Record_Persistent",
        "-v",
        "SecondValue",
    ];
    let out = on_node(c, 0, "update_record_persistent", &args2);
    assert!(out.status.success(), "{out:?}");
    let cat = ctdb(c, 0, &["cattdb", db]);
    assert_eq!(cat.matches("FirstValue").count(), 0, "{cat}");
    assert_eq!(cat.matches("SecondValue").count(), 1, "{cat}");
    // Missing -v is refused with upstream's message.
    let out = on_node(c, 0, "update_record_persistent", &["-D", db, "-k", "x"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("please specify key value (-v)"),
        "{out:?}"
    );
}

fn ctdb_status(c: &Cluster, i: usize, args: &[&str]) -> bool {
    Command::new("/usr/bin/ctdb")
        .args(args)
        .env("CTDB_SOCKET", c.socket(i))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("run ctdb")
        .success()
}

/// simple/basics.005.process_exists.sh: a dummy_client with a srvid is a
/// live client process the daemon knows, with that srvid and no other.
fn check_dummy_client(c: &Cluster) {
    let srvid = "0xAE00000012345678";
    let child = spawn("dummy_client", &c.socket(1), &["-n", "10", "-S", srvid]);
    let pid = child.id().to_string();
    let t0 = Instant::now();
    while !ctdb_status(c, 1, &["process-exists", &pid]) {
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "pid {pid} never registered"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let with_srvid = ctdb_status(c, 1, &["process-exists", &pid, srvid]);
    let with_pid_as_srvid = ctdb_status(c, 1, &["process-exists", &pid, &pid]);
    // A message for its srvid ends it, with status 0.
    let id = u64::from_str_radix(&srvid[2..], 16).expect("srvid");
    let mut client = ctdb_perf::client::Client::connect(&c.socket(0)).expect("connect");
    client.send_message(1, id, b"bye").expect("send");
    let out = finish("dummy_client", child, Duration::from_secs(20));
    assert!(with_srvid, "process-exists {pid} {srvid} failed");
    assert!(!with_pid_as_srvid, "process-exists {pid} {pid} succeeded");
    assert!(out.status.success(), "{out:?}");
}

fn cattdb_count(c: &Cluster, i: usize, db: &str, pat: &str) -> usize {
    ctdb(c, i, &["cattdb", db]).matches(pat).count()
}

fn no_readonly(c: &Cluster, db: &str) {
    for i in 0..NODES {
        let cat = ctdb(c, i, &["cattdb", db]);
        assert!(
            !cat.contains("RO_HAVE_READONLY") && !cat.contains("RO_HAVE_DELEGATIONS"),
            "node {i} has read-only state:\n{cat}"
        );
    }
}

fn run_ok(c: &Cluster, i: usize, name: &str, args: &[&str]) {
    let out = on_node(c, i, name, args);
    assert!(out.status.success(), "{name} {args:?} on node {i}: {out:?}");
}

/// database/readonly.001.basic.sh: update_record migrates and rewrites;
/// fetch_readonly upgrades to a full fetch while read-only records are
/// off, and takes a read-only copy (delegation on the dmaster) once on.
fn check_readonly(c: &Cluster) {
    let db = "test.tdb";
    let args = ["-D", db, "-k", "testkey"];
    ctdb(c, 0, &["attach", db]);
    for i in 0..NODES {
        run_ok(c, i, "update_record", &args);
    }
    for i in 0..NODES {
        run_ok(c, i, "fetch_readonly", &args);
    }
    no_readonly(c, db);
    for i in 0..NODES {
        ctdb(c, i, &["setdbreadonly", db]);
    }
    run_ok(c, 1, "update_record", &args);
    run_ok(c, 0, "fetch_readonly", &args);
    assert_eq!(cattdb_count(c, 1, db, "RO_HAVE_DELEGATIONS"), 1);
    assert_eq!(cattdb_count(c, 1, db, "RO_HAVE_READONLY"), 0);
    assert_eq!(cattdb_count(c, 0, db, "RO_HAVE_READONLY"), 1);
    assert_eq!(cattdb_count(c, 0, db, "RO_HAVE_DELEGATIONS"), 0);
    // A fetch-lock revokes the delegations.
    run_ok(c, 1, "update_record", &args);
    no_readonly(c, db);
    // The value is the rsn update_record wrote.
    let cat = ctdb(c, 1, &["cattdb", db]);
    let rsn = number_between(&cat, "rsn: ", "\n") as u64;
    let data = &cat[cat.find("data(").expect("data")..];
    let value = data.split('"').nth(1).expect("quoted data");
    // update_record wrote the rsn it stored (old rsn + 10); the daemon may
    // bump the rsn once more when it applies the update.
    let written: u64 = value.parse().unwrap_or_else(|_| panic!("{cat}"));
    assert!(
        written >= 10 && written <= rsn && rsn - written <= 1,
        "{cat}"
    );
}

/// simple/cluster.021.tunnel_ring.sh.
fn check_tunnel_test(c: &Cluster) {
    let n = NODES.to_string();
    let outs = on_all(
        c,
        "tunnel_test",
        &["-t", "4", "-n", &n],
        Duration::from_secs(60),
    );
    sanity(&outs, |l| {
        l.starts_with("pnn[") && l.ends_with(" msgs/sec") && l.contains("] ")
    });
    for o in &outs {
        let last = o.lines().last().expect("a line");
        assert!(number_between(last, "] ", " msgs/sec") >= 10.0, "{last}");
    }
}

/// fetch_loop, fetch_readonly_loop: every node ends with "Locks:N", N > 0.
fn check_fetch_loop(c: &Cluster, prog: &str) {
    let n = NODES.to_string();
    let outs = on_all(c, prog, &["-n", &n, "-t", "3"], Duration::from_secs(60));
    for o in &outs {
        let last = o
            .split(['\r', '\n'])
            .rfind(|l| !l.is_empty())
            .expect("a line");
        let locks: u64 = last
            .strip_prefix("Locks:")
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{o:?}"));
        assert!(locks > 0, "{o:?}");
    }
}

fn db_test(c: &Cluster, i: usize, args: &[&str]) -> Output {
    on_node(c, i, "ctdb-db-test", args)
}

/// ctdb-db-test as the vacuum.*.sh scripts use it.
fn check_db_test(c: &Cluster) {
    let db = "vacuum_test.tdb";
    ctdb(c, 0, &["attach", db]);
    // get-lmaster: the same answer on every node, a node number.
    let lm: Vec<String> = (0..NODES)
        .map(|i| {
            let out = db_test(c, i, &["get-lmaster", "key"]);
            assert!(out.status.success(), "{out:?}");
            String::from_utf8_lossy(&out.stdout).trim().to_string()
        })
        .collect();
    let l: usize = lm[0].parse().expect("lmaster number");
    assert!(l < NODES && lm.iter().all(|x| *x == lm[0]), "{lm:?}");
    // A record made on node 1 reads back locally.
    run_ok(c, 1, "update_record", &["-D", db, "-k", "key"]);
    let out = db_test(c, 1, &["local-read", db, "key"]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{out:?}");
    assert!(text.starts_with("dmaster: 1\nrsn: "), "{text}");
    assert!(text.contains("\nflags: 0x"), "{text}");
    assert!(text.contains("\ndata("), "{text}");
    // local-lock: a holder process that keeps the chain locked.
    let out = db_test(c, 1, &["local-lock", db, "key"]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{out:?}");
    let pid: u32 = text
        .trim()
        .strip_prefix("OK ")
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("{text}"));
    assert!(std::path::Path::new(&format!("/proc/{pid}")).exists());
    ctdb_perf::sys::kill(pid, libc::SIGTERM).expect("kill lock holder");
    let t0 = Instant::now();
    while std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| !s.contains(") Z"))
        .unwrap_or(false)
    {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "holder {pid} lives on"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // fetch-local-delete leaves an empty record.
    let out = db_test(c, 1, &["fetch-local-delete", db, "key"]);
    assert!(out.status.success(), "{out:?}");
    let out = db_test(c, 1, &["local-read", db, "key"]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(text.contains("data(0) = \"\""), "{text}");
    // vacuum, plain and full, on every node.
    for i in 0..NODES {
        let out = db_test(c, i, &["vacuum", db]);
        assert!(out.status.success(), "{out:?}");
        let out = db_test(c, i, &["vacuum", db, "full"]);
        assert!(out.status.success(), "{out:?}");
    }
    // Errors as upstream: unknown database ENOENT, persistent EINVAL.
    let out = db_test(c, 0, &["vacuum", "no_such.tdb"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("No database matching 'no_such.tdb'"));
    let out = db_test(c, 0, &["local-read", "persistent_test.tdb", "x"]);
    assert_eq!(out.status.code(), Some(22), "{out:?}");
}

/// g_lock_loop: every node took the lock; "PNN:N counter:C" with C > 0.
fn check_g_lock_loop(c: &Cluster) {
    let n = NODES.to_string();
    let outs = on_all(
        c,
        "g_lock_loop",
        &["-n", &n, "-t", "3"],
        Duration::from_secs(60),
    );
    sanity(&outs, |l| l.starts_with("PNN:") && l.contains(" counter:"));
    for (i, o) in outs.iter().enumerate() {
        let last = o.lines().last().expect("a line");
        assert!(last.starts_with(&format!("PNN:{i} ")), "{last}");
        let count: u64 = last
            .rsplit(':')
            .next()
            .and_then(|v| v.parse().ok())
            .expect("counter");
        assert!(count > 0, "{last}");
    }
}

/// fetch_loop_key: one copy, "Locks:N" once a second for -t seconds, N
/// growing.
fn check_fetch_loop_key(c: &Cluster) {
    let out = on_node(
        c,
        2,
        "fetch_loop_key",
        &["-D", "fetch_loop_key.tdb", "-k", "k1", "-t", "2"],
    );
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let counts: Vec<u64> = text
        .lines()
        .map(|l| {
            l.strip_prefix("Locks:")
                .and_then(|v| v.parse().ok())
                .expect("Locks:N")
        })
        .collect();
    assert_eq!(counts.len(), 2, "{text}");
    assert!(counts[0] > 0 && counts[1] > counts[0], "{text}");
}

#[test]
fn test_programs_against_debian_ctdbd() {
    let dir = temp_dir("debian");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/local-cluster");
    // TESTPROGS_CTDBD runs the same checks against another daemon (ours).
    let daemon = std::env::var_os("TESTPROGS_CTDBD")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/sbin/ctdbd"));
    let mut cluster = Cluster::start(
        &script,
        &daemon,
        NODES,
        &dir.join("cluster"),
        &net(),
        90,
        &[],
    )
    .unwrap_or_else(|e| {
        let _ = std::fs::remove_dir_all(&dir);
        panic!("start a cluster of {}: {e}", daemon.display())
    });
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        check_message_ring(&cluster);
        check_fetch_ring(&cluster);
        check_tunnel_test(&cluster);
        check_update_record_persistent(&cluster);
        check_transaction_loop(&cluster, "persistent_trans.tdb", "persistent");
        check_transaction_loop(&cluster, "replicated_trans.tdb", "replicated");
        check_dummy_client(&cluster);
        check_readonly(&cluster);
        check_fetch_loop(&cluster, "fetch_loop");
        check_fetch_loop(&cluster, "fetch_readonly_loop");
        check_fetch_loop_key(&cluster);
        check_g_lock_loop(&cluster);
        check_db_test(&cluster);
    }));
    cluster.stop();
    let _ = std::fs::remove_dir_all(&dir);
    if let Err(e) = r {
        std::panic::resume_unwind(e);
    }
}

#[test]
fn bad_arguments_are_refused_by_name() {
    let out = Command::new(bin("fetch_ring"))
        .args(["-k", "x"])
        .env("CTDB_SOCKET", "/nonexistent/ctdbd.socket")
        .output()
        .expect("run fetch_ring");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("Please specify database"));
    let out = Command::new(bin("message_ring"))
        .args(["-n", "zero"])
        .output()
        .expect("run message_ring");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("num-nodes"));
    let out = Command::new(bin("message_ring"))
        .args(["-s", "/nonexistent/ctdbd.socket", "-t", "1"])
        .output()
        .expect("run message_ring");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/ctdbd.socket"));
}
