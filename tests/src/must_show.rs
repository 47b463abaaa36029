//! Shared pieces of the multi-node "must show" tests (`tests/cluster_*.rs`):
//! which ctdbd they run, where the test programs are, bounded runs of
//! external programs, and the questions the tests keep asking the stock
//! CLI (who is leader, in what state is a node, what do the statistics
//! say).
//!
//! Why a module of its own: every cluster test must run unchanged against
//! Debian's ctdbd and against ours, so the choice of daemon lives in one
//! function ([`ctdbd_under_test`]) and everything else talks to the daemon
//! only through the stock `ctdb` CLI, the Unix socket and the test
//! programs, never through anything specific to one implementation.

use std::ffi::OsStr;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::addr::AddrLease;
use crate::cluster::{Cluster, ClusterSpec, StatusSummary, DEBIAN_CTDB, DEBIAN_CTDBD};
use crate::error::{HarnessError, Result};

/// Environment variable naming the ctdbd the cluster tests run.
pub const CTDBD_ENV: &str = "CTDB_TEST_CTDBD";

/// Environment variable naming the directory of the test programs
/// (`fetch_ring`, `message_ring`, ... of ctdb-perf).
pub const PERF_BINS_ENV: &str = "CTDB_TEST_PERF_BINS";

/// Samba's ctdbd, which every cluster test also passes against
/// (`CTDB_TEST_CTDBD=/usr/sbin/ctdbd`).
pub const REFERENCE_CTDBD: &str = DEBIAN_CTDBD;

/// The ctdbd under test: `$CTDB_TEST_CTDBD` if set, else ours, next to the
/// running test binary's profile directory (where `cargo build --release`
/// puts it, as for [`perf_bin`]).
pub fn ctdbd_under_test() -> PathBuf {
    if let Some(p) = std::env::var_os(CTDBD_ENV) {
        return PathBuf::from(p);
    }
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent()?.parent().map(|d| d.join("ctdbd")))
        .unwrap_or_else(|| PathBuf::from("target/release/ctdbd"))
}

/// The ctdbd under test. A missing binary fails the test (build it first:
/// the README's test command does), so the cluster tests cannot pass by
/// not running.
pub fn ctdbd_or_skip(test: &str) -> Option<PathBuf> {
    let d = ctdbd_under_test();
    assert!(
        d.is_file(),
        "{test}: no ctdbd at {}: run `cargo build --release --bins` first, \
         or set {CTDBD_ENV} to the daemon to test (e.g. {REFERENCE_CTDBD})",
        d.display()
    );
    eprintln!("{test}: running against {}", d.display());
    Some(d)
}

/// The CLI the cluster tests always use: the stock one.
pub fn cli() -> &'static Path {
    Path::new(DEBIAN_CTDB)
}

/// The test program `name` of ctdb-perf: in `$CTDB_TEST_PERF_BINS`, else
/// next to the running test binary's profile directory
/// (`target/<profile>/deps/<test>` -> `target/<profile>/<name>`), where
/// `cargo build --release -p ctdb-perf --bins` puts it.
pub fn perf_bin(name: &str) -> Result<PathBuf> {
    let dir = match std::env::var_os(PERF_BINS_ENV) {
        Some(d) => PathBuf::from(d),
        None => {
            let exe = std::env::current_exe().map_err(|e| HarnessError::Io {
                what: "find the running test binary",
                path: PathBuf::from("/proc/self/exe"),
                source: e,
            })?;
            exe.parent()
                .and_then(Path::parent)
                .map(Path::to_path_buf)
                .unwrap_or_default()
        }
    };
    let p = dir.join(name);
    if p.is_file() {
        Ok(p)
    } else {
        Err(HarnessError::BadSpec(format!(
            "test program {} not found: build it with \
             `cargo build --release -p ctdb-perf --bins` (same target dir and profile) \
             or set {PERF_BINS_ENV}",
            p.display()
        )))
    }
}

/// A cluster on its own block of loopback addresses; the block is
/// released after the daemons are stopped (fields drop in order).
#[derive(Debug)]
pub struct TestCluster {
    /// The cluster.
    pub cluster: Cluster,
    _lease: AddrLease,
}

impl std::ops::Deref for TestCluster {
    type Target = Cluster;
    fn deref(&self) -> &Cluster {
        &self.cluster
    }
}

impl std::ops::DerefMut for TestCluster {
    fn deref_mut(&mut self) -> &mut Cluster {
        &mut self.cluster
    }
}

impl TestCluster {
    /// Reserve addresses and write (not start) a cluster of `nodes` nodes
    /// running `ctdbd`, after `adjust` had its say on the spec (cluster
    /// lock, tunables, extra configuration).
    pub fn create(
        nodes: usize,
        ctdbd: &Path,
        adjust: impl FnOnce(&mut ClusterSpec),
    ) -> Result<TestCluster> {
        let lease = AddrLease::reserve()?;
        let mut spec = ClusterSpec::new(nodes, lease.first(), ctdbd);
        adjust(&mut spec);
        Ok(TestCluster {
            cluster: Cluster::create(spec)?,
            _lease: lease,
        })
    }

    /// The usual start of a must-show test: the ctdbd under test (a
    /// missing one fails the test), `nodes` nodes in default test-mode
    /// configuration, all OK within 60 s. Also returns when the start
    /// began, for the test's progress lines.
    pub fn start_for(test: &str, nodes: usize) -> (TestCluster, Instant) {
        let t0 = Instant::now();
        let ctdbd = ctdbd_or_skip(test).unwrap_or_else(ctdbd_under_test);
        let c = TestCluster::start(nodes, &ctdbd, Duration::from_secs(60), |_| {})
            .unwrap_or_else(|e| panic!("{test}: cluster of {nodes} does not form: {e}"));
        eprintln!("{test}: cluster OK after {:?}", t0.elapsed());
        (c, t0)
    }

    /// [`TestCluster::start_for`] on daemons of ours with two data cores
    /// each (`--cores=3`: a control core and two data cores, unpinned in
    /// test mode), for the must-show tests that check the data cores' own
    /// node connections. `None` (the test skips) when `CTDB_TEST_CTDBD`
    /// names another daemon: `--cores` is ours.
    pub fn start_with_data_cores(test: &str, nodes: usize) -> Option<(TestCluster, Instant)> {
        if std::env::var_os(CTDBD_ENV).is_some() {
            eprintln!("SKIP {test}: --cores is ours; {CTDBD_ENV} names another ctdbd");
            return None;
        }
        let t0 = Instant::now();
        let ctdbd = ctdbd_under_test();
        let c = TestCluster::start(nodes, &ctdbd, Duration::from_secs(90), |spec| {
            spec.daemon_args = vec!["--cores=3".to_string()];
        })
        .unwrap_or_else(|e| panic!("{test}: cluster with data cores does not form: {e}"));
        eprintln!(
            "{test}: cluster with data cores OK after {:?}",
            t0.elapsed()
        );
        Some((c, t0))
    }

    /// [`TestCluster::create`], start every node and wait (at most
    /// `limit`) until all are OK.
    pub fn start(
        nodes: usize,
        ctdbd: &Path,
        limit: Duration,
        adjust: impl FnOnce(&mut ClusterSpec),
    ) -> Result<TestCluster> {
        let mut adjust = Some(adjust);
        let mut spec_of_first = None;
        for attempt in 0..3 {
            let mut c = match adjust.take() {
                Some(a) => {
                    let c = TestCluster::create(nodes, ctdbd, a)?;
                    spec_of_first = Some(c.spec().clone());
                    c
                }
                None => {
                    // Same settings on a fresh block of addresses.
                    let lease = AddrLease::reserve()?;
                    let mut spec = spec_of_first.clone().ok_or_else(|| {
                        HarnessError::BadSpec("no cluster description to retry".into())
                    })?;
                    spec.first_addr = lease.first();
                    spec.dir = crate::cluster::unique_dir("cluster");
                    TestCluster {
                        cluster: Cluster::create(spec)?,
                        _lease: lease,
                    }
                }
            };
            c.start_all()?;
            match c.wait_all_ok(cli(), limit) {
                Ok(()) => return Ok(c),
                // Something outside this harness's leases (a cluster
                // started by hand, another tool) holds one of our node
                // addresses: take another block rather than fail.
                Err(HarnessError::DaemonExited { ref log_tail, .. })
                    if attempt < 2 && address_in_use(log_tail) =>
                {
                    eprintln!(
                        "a node address of {} is in use elsewhere; retrying on other addresses",
                        c.dir().display()
                    );
                }
                Err(e) => return Err(e),
            }
        }
        Err(HarnessError::BadSpec(
            "node addresses kept being in use elsewhere".into(),
        ))
    }

    /// The cluster lock file the harness configures when asked to.
    pub fn lock_file(&self) -> PathBuf {
        self.cluster
            .dir()
            .join("shared")
            .join(".ctdb")
            .join("cluster.lock")
    }
}

/// Whether a daemon's last log lines say it could not bind its address.
fn address_in_use(log_tail: &str) -> bool {
    let l = log_tail.to_ascii_lowercase();
    l.contains("address already in use") || l.contains("addrinuse") || l.contains("address in use")
}

/// Output of a program run by [`run_bounded`] / [`Bounded::finish`].
#[derive(Debug, Clone)]
pub struct Ran {
    /// What was run (for messages).
    pub what: String,
    /// Exit code (-1 if killed by a signal).
    pub code: i32,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
    /// True if it overran its limit and was killed.
    pub overran: bool,
    /// How long it ran.
    pub took: Duration,
}

impl Ran {
    /// Exited 0 in time.
    pub fn ok(&self) -> bool {
        self.code == 0 && !self.overran
    }
}

/// A child process with a time limit, killed by pid when it overruns and
/// always reaped.
#[derive(Debug)]
pub struct Bounded {
    what: String,
    child: Option<Child>,
    started: Instant,
    limit: Duration,
}

impl Bounded {
    /// Spawn `cmd` (its stdout and stderr are captured; stdin gets `input`
    /// if given, else nothing).
    pub fn spawn(mut cmd: Command, limit: Duration, input: Option<&[u8]>) -> Result<Bounded> {
        let what = format!("{cmd:?}");
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        cmd.stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        });
        let mut child = cmd.spawn().map_err(|source| HarnessError::Spawn {
            program: PathBuf::from(cmd.get_program()),
            source,
        })?;
        if let (Some(data), Some(mut stdin)) = (input, child.stdin.take()) {
            // A program that exits early closes the pipe: not our error.
            let _ = stdin.write_all(data);
        }
        Ok(Bounded {
            what,
            child: Some(child),
            started: Instant::now(),
            limit,
        })
    }

    /// The pid of the running program.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Wait for the program (killing it by pid at its limit) and collect
    /// its output.
    pub fn finish(mut self) -> Ran {
        let Some(mut child) = self.child.take() else {
            return Ran {
                what: self.what.clone(),
                code: -1,
                stdout: String::new(),
                stderr: "already finished".into(),
                overran: false,
                took: Duration::ZERO,
            };
        };
        // Drain the pipes in threads so a chatty program cannot block.
        let out = child.stdout.take().map(drain);
        let err = child.stderr.take().map(drain);
        let mut overran = false;
        let status = loop {
            match child.try_wait() {
                Ok(Some(s)) => break Some(s),
                Ok(None) if self.started.elapsed() > self.limit => {
                    overran = true;
                    let _ = child.kill();
                    break child.wait().ok();
                }
                Ok(None) => thread::sleep(Duration::from_millis(20)),
                Err(_) => break child.wait().ok(),
            }
        };
        let join = |h: Option<thread::JoinHandle<String>>| {
            h.and_then(|h| h.join().ok()).unwrap_or_default()
        };
        Ran {
            what: self.what.clone(),
            code: status.and_then(|s| s.code()).unwrap_or(-1),
            stdout: join(out),
            stderr: join(err),
            overran,
            took: self.started.elapsed(),
        }
    }
}

impl Drop for Bounded {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn drain(mut r: impl std::io::Read + Send + 'static) -> thread::JoinHandle<String> {
    thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = r.read_to_end(&mut buf);
        String::from_utf8_lossy(&buf).into_owned()
    })
}

/// Run `cmd` to completion within `limit` (killed by pid if it overruns).
pub fn run_bounded(cmd: Command, limit: Duration, input: Option<&[u8]>) -> Result<Ran> {
    Ok(Bounded::spawn(cmd, limit, input)?.finish())
}

/// A command for the test program `name` talking to node `i` of `cluster`
/// (its socket and environment).
pub fn perf_command(cluster: &Cluster, i: usize, name: &str) -> Result<Command> {
    let mut cmd = Command::new(perf_bin(name)?);
    cmd.envs(cluster.env(i)?);
    Ok(cmd)
}

/// Run the test program `name args` on every node of `cluster` at once
/// (as upstream's `testprog_onnode -p all`), each copy bounded by `limit`;
/// returns each node's run, in node order.
pub fn perf_on_all(
    cluster: &Cluster,
    name: &str,
    args: &[&str],
    limit: Duration,
) -> Result<Vec<Ran>> {
    let mut running = Vec::new();
    for i in 0..cluster.len() {
        let mut cmd = perf_command(cluster, i, name)?;
        cmd.args(args);
        running.push(Bounded::spawn(cmd, limit, None)?);
    }
    Ok(running.into_iter().map(Bounded::finish).collect())
}

/// Upstream's `sanity_check_output` over the copies' outputs: every line is
/// "Waiting for cluster" or satisfies `ok`, and "Waiting for cluster"
/// appears exactly once (printed by node 0).
pub fn sanity_check(runs: &[Ran], ok: impl Fn(&str) -> bool) -> std::result::Result<(), String> {
    let mut waiting = 0;
    for (i, r) in runs.iter().enumerate() {
        if !r.ok() {
            return Err(format!(
                "copy on node {i} failed: exit {}{}\n{}{}",
                r.code,
                if r.overran { " (overran)" } else { "" },
                r.stdout,
                r.stderr
            ));
        }
        for line in r.stdout.lines() {
            if line == "Waiting for cluster" {
                waiting += 1;
            } else if !ok(line) {
                return Err(format!("node {i}: unexpected line {line:?}"));
            }
        }
    }
    if waiting != 1 {
        return Err(format!("\"Waiting for cluster\" {waiting} times, want 1"));
    }
    Ok(())
}

/// The number in `...PREFIX<number>SUFFIX...` of `line`.
pub fn number_between(line: &str, prefix: &str, suffix: &str) -> Option<f64> {
    let rest = &line[line.find(prefix)? + prefix.len()..];
    rest[..rest.find(suffix)?].trim().parse().ok()
}

/// Run the stock CLI against node `i` with a time limit on the process.
pub fn ctdb_bounded<S: AsRef<OsStr>>(
    cluster: &Cluster,
    i: usize,
    args: &[S],
    limit: Duration,
    input: Option<&[u8]>,
) -> Result<Ran> {
    let mut cmd = Command::new(cli());
    cmd.args(args)
        .env_remove("CTDB_TOOL_SETPGID")
        .envs(cluster.env(i)?);
    run_bounded(cmd, limit, input)
}

/// Run the stock CLI against node `i` and insist on exit status 0; the
/// error message carries the command and its output.
pub fn ctdb_ok<S: AsRef<OsStr> + std::fmt::Debug>(
    cluster: &Cluster,
    i: usize,
    args: &[S],
) -> std::result::Result<String, String> {
    let r = ctdb_bounded(cluster, i, args, Duration::from_secs(60), None)
        .map_err(|e| format!("ctdb {args:?} on node {i}: {e}"))?;
    if r.ok() {
        Ok(r.stdout)
    } else {
        Err(format!(
            "ctdb {args:?} on node {i}: exit {}{}\n{}{}",
            r.code,
            if r.overran { " (overran)" } else { "" },
            r.stdout,
            r.stderr
        ))
    }
}

/// The leader node `i` has heard of (`ctdb -T SECS leader`): `None` when
/// it knows none (UNKNOWN) or the CLI fails.
pub fn leader_seen_by(cluster: &Cluster, i: usize, secs: u32) -> Option<u32> {
    let t = secs.to_string();
    let r = ctdb_bounded(
        cluster,
        i,
        &["-T", t.as_str(), "leader"],
        Duration::from_secs(u64::from(secs) + 10),
        None,
    )
    .ok()?;
    if !r.ok() {
        return None;
    }
    r.stdout.trim().parse().ok()
}

/// Poll `f` every `every` until it gives `Some` or `limit` passes; the
/// error names `what` and the last state `f` described.
pub fn wait_for<T>(
    what: &str,
    limit: Duration,
    every: Duration,
    mut f: impl FnMut() -> std::result::Result<T, String>,
) -> std::result::Result<T, String> {
    let start = Instant::now();
    loop {
        match f() {
            Ok(v) => return Ok(v),
            Err(last) => {
                if start.elapsed() >= limit {
                    return Err(format!(
                        "{what}: not reached after {:?}; last: {last}",
                        start.elapsed()
                    ));
                }
            }
        }
        thread::sleep(every);
    }
}

/// Wait until every node of `nodes` names the same leader, and that leader
/// is one of `candidates`; returns it.
pub fn wait_agreed_leader(
    cluster: &Cluster,
    nodes: &[usize],
    candidates: &[u32],
    limit: Duration,
) -> std::result::Result<u32, String> {
    wait_for(
        &format!("nodes {nodes:?} agreeing on a leader among {candidates:?}"),
        limit,
        Duration::from_millis(300),
        || {
            let seen: Vec<Option<u32>> = nodes
                .iter()
                .map(|&i| leader_seen_by(cluster, i, 3))
                .collect();
            match seen.first().copied().flatten() {
                Some(l) if seen.iter().all(|s| *s == Some(l)) && candidates.contains(&l) => Ok(l),
                _ => Err(format!("leaders seen: {seen:?}")),
            }
        },
    )
}

/// `ctdb status` of node `i`, parsed; `Err` with the output if the CLI
/// failed.
pub fn status_of(cluster: &Cluster, i: usize) -> std::result::Result<StatusSummary, String> {
    let r = ctdb_bounded(
        cluster,
        i,
        &["-T", "5", "status"],
        Duration::from_secs(20),
        None,
    )
    .map_err(|e| e.to_string())?;
    if r.ok() {
        Ok(StatusSummary::parse(&r.stdout))
    } else {
        Err(format!("exit {}: {}{}", r.code, r.stdout, r.stderr))
    }
}

/// The state words node `from` shows for node `pnn` (e.g. `"OK"`,
/// `"STOPPED|INACTIVE"`), without the `(THIS NODE)` marker.
pub fn state_of(cluster: &Cluster, from: usize, pnn: u32) -> std::result::Result<String, String> {
    let s = status_of(cluster, from)?;
    s.nodes
        .iter()
        .find(|(p, _, _)| *p == pnn)
        .map(|(_, _, st)| st.trim_end_matches(" (THIS NODE)").to_string())
        .ok_or_else(|| format!("node {from} does not list pnn {pnn}: {s:?}"))
}

/// Wait until every node of `nodes` shows all of `pnns` as exactly OK, in
/// normal recovery mode.
pub fn wait_nodes_ok(
    cluster: &Cluster,
    nodes: &[usize],
    pnns: &[u32],
    limit: Duration,
) -> std::result::Result<(), String> {
    wait_for(
        &format!("nodes {nodes:?} showing {pnns:?} OK"),
        limit,
        Duration::from_millis(300),
        || {
            for &i in nodes {
                let s = status_of(cluster, i).map_err(|e| format!("node {i}: {e}"))?;
                if !s.recovery_normal {
                    return Err(format!("node {i}: recovery mode not NORMAL: {s:?}"));
                }
                for &p in pnns {
                    let st = s
                        .nodes
                        .iter()
                        .find(|(q, _, _)| *q == p)
                        .map(|(_, _, st)| st.trim_end_matches(" (THIS NODE)"))
                        .unwrap_or("missing");
                    if st != "OK" {
                        return Err(format!("node {i} shows {p} as {st}: {s:?}"));
                    }
                }
            }
            Ok(())
        },
    )
}

/// The value of counter `name` (e.g. `"req_dmaster"`) in `ctdb statistics`
/// output, in the section `section` (`"node"`, `"client"`, or `""` for
/// the top level).
pub fn statistic(text: &str, section: &str, name: &str) -> Option<u64> {
    let mut current = "";
    for line in text.lines() {
        let indent = line.len() - line.trim_start().len();
        let mut words = line.split_whitespace();
        let Some(first) = words.next() else { continue };
        let second = words.next();
        if indent <= 1 {
            if second.is_none() {
                current = first;
                continue;
            }
            current = "";
        }
        if current == section && first == name {
            return second.and_then(|v| v.parse().ok());
        }
    }
    None
}

/// The sum of the `hop_count_buckets:` line of `ctdb statistics` output.
pub fn hop_count_total(text: &str) -> u64 {
    text.lines()
        .find_map(|l| l.trim_start().strip_prefix("hop_count_buckets:"))
        .map(|rest| {
            rest.split_whitespace()
                .filter_map(|w| w.parse::<u64>().ok())
                .sum()
        })
        .unwrap_or(0)
}

/// A latency line of `ctdb statistics`
/// (`call_latency       MIN/AVG/MAX     0.000002/0.000073/0.005437 sec out of 32616`):
/// (min, avg, max, count).
pub fn latency_stat(text: &str, name: &str) -> Option<(f64, f64, f64, u64)> {
    let line = text
        .lines()
        .find(|l| l.split_whitespace().next() == Some(name))?;
    let mut words = line.split_whitespace().skip(2);
    let mut vals = words.next()?.split('/').map(|v| v.parse::<f64>().ok());
    let (min, avg, max) = (vals.next()??, vals.next()??, vals.next()??);
    let count = line.rsplit_once("out of")?.1.trim().parse().ok()?;
    Some((min, avg, max, count))
}

/// The keys `ctdb cattdb` / `ctdb catdb` printed (`key(N) = "..."`), as the
/// CLI escapes them.
pub fn dumped_keys(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| {
            let rest = l.strip_prefix("key(")?;
            let q = rest.find(" = \"")?;
            let k = &rest[q + 4..];
            Some(k.strip_suffix('"').unwrap_or(k).to_string())
        })
        .collect()
}

/// The node whose process (ctdbd or one of its helpers, found by
/// `CTDB_BASE`) holds a POSIX lock on `lock_file`, from `/proc/locks`.
pub fn lock_holder(cluster: &Cluster, lock_file: &Path) -> Option<usize> {
    use std::os::unix::fs::MetadataExt;
    let ino = std::fs::metadata(lock_file).ok()?.ino();
    let locks = std::fs::read_to_string("/proc/locks").ok()?;
    for line in locks.lines() {
        // "1: POSIX  ADVISORY  WRITE 1234 00:2a:5678 0 EOF"
        let w: Vec<&str> = line.split_whitespace().collect();
        if w.len() < 6 || w[1] != "POSIX" {
            continue;
        }
        let Some(file_ino) = w[5].rsplit(':').next().and_then(|s| s.parse::<u64>().ok()) else {
            continue;
        };
        if file_ino != ino {
            continue;
        }
        let Ok(pid) = w[4].parse::<u32>() else {
            continue;
        };
        let env = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
        for var in env.split(|&c| c == 0) {
            let Some(base) = var.strip_prefix(b"CTDB_BASE=") else {
                continue;
            };
            let base = String::from_utf8_lossy(base);
            for i in 0..cluster.len() {
                if cluster.base(i).ok()?.display().to_string() == base {
                    return Some(i);
                }
            }
        }
    }
    None
}

/// Assert-style helper: panic with `msg`, then the log tails of every node.
pub fn fail_with_logs(cluster: &Cluster, msg: &str) -> ! {
    let mut text = format!("{msg}\n");
    for i in 0..cluster.len() {
        text.push_str(&format!(
            "--- end of node {i}'s log:\n{}\n",
            cluster.log_tail(i, 25)
        ));
    }
    panic!("{text}")
}

/// Unwrap a `Result<T, String>` or fail with every node's log tail.
pub fn must<T>(cluster: &Cluster, r: std::result::Result<T, String>) -> T {
    match r {
        Ok(v) => v,
        Err(e) => fail_with_logs(cluster, &e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statistics_are_read_by_section() {
        let text = " num_clients                        2\n node\n     req_call                       1\n     req_dmaster                    7\n client\n     req_call                       2\n max_hop_count                      3\n hop_count_buckets: 1 2 0 4\n";
        assert_eq!(statistic(text, "node", "req_call"), Some(1));
        assert_eq!(statistic(text, "client", "req_call"), Some(2));
        assert_eq!(statistic(text, "node", "req_dmaster"), Some(7));
        assert_eq!(statistic(text, "", "num_clients"), Some(2));
        assert_eq!(statistic(text, "", "max_hop_count"), Some(3));
        assert_eq!(statistic(text, "node", "max_hop_count"), None);
        assert_eq!(hop_count_total(text), 7);
    }

    #[test]
    fn bind_failures_are_recognised() {
        assert!(address_in_use(
            "tcp_connect.c:578 Failed to bind() to socket. Address already in use(98)"
        ));
        assert!(!address_in_use(
            "Failed to start listening: Permission denied"
        ));
    }

    #[test]
    fn numbers_are_cut_out_of_lines() {
        let l = "Ring[1]: 123.50 msgs/sec (+ve=10 -ve=11)";
        assert_eq!(number_between(l, "]: ", " msgs/sec"), Some(123.5));
        assert_eq!(number_between(l, "+ve=", " "), Some(10.0));
        assert_eq!(number_between(l, "-ve=", ")"), Some(11.0));
        assert_eq!(number_between(l, "x=", ")"), None);
    }

    #[test]
    fn dumped_keys_are_listed() {
        let text = "key(2) = \"a1\"\ndmaster: 0\nkey(23) = \"__db_sequence_number__\\00\"\n";
        assert_eq!(dumped_keys(text), vec!["a1", "__db_sequence_number__\\00"]);
    }

    #[test]
    fn a_program_that_overruns_is_killed() {
        let mut cmd = Command::new("/bin/sleep");
        cmd.arg("30");
        let r = run_bounded(cmd, Duration::from_millis(200), None).unwrap();
        assert!(r.overran && !r.ok(), "{r:?}");
        assert!(r.took < Duration::from_secs(5));
    }

    #[test]
    fn missing_test_program_is_named() {
        let e = perf_bin("no_such_program_xyz").unwrap_err().to_string();
        assert!(e.contains("no_such_program_xyz"), "{e}");
    }
}
