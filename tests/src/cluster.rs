//! A local CTDB cluster of N daemons on loopback addresses, set up the way
//! Samba's own `ctdb/tests/local_daemons.sh` does it, so that any ctdbd
//! (Debian's `/usr/sbin/ctdbd` or ours) can be run and compared.
//!
//! Layout of the cluster directory (one `node.<i>` per node):
//!
//! ```text
//! <dir>/nodes                       all node addresses, one a line
//! <dir>/node.<i>/                   $CTDB_BASE of node i
//!     ctdb.conf nodes events/legacy/ run/ var/ db/{volatile,persistent,state}/
//!     run/ctdbd.socket run/ctdbd.pid log.ctdb
//! <dir>/shared/.ctdb/cluster.lock   the (optional) cluster lock file
//! ```
//!
//! Every daemon runs with `CTDB_TEST_MODE=yes` and `CTDB_BASE=<node dir>`:
//! in test mode ctdbd 4.17 puts its run/var directories and sockets under
//! `$CTDB_BASE`, skips real-time scheduling and public IP checks, and shuts
//! down when its standard input (a pipe) is closed. The daemon is started
//! with `--interactive` so it stays our child: its pid is the one spawned,
//! it can be waited for, and its log (stderr) goes to `log.ctdb`.

use std::fs::{self, File, OpenOptions};
use std::io::Read;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use crate::addr::AddrLease;
use crate::error::{io_err, HarnessError, Result};
use crate::procs;
use crate::sys;

/// Debian's ctdbd.
pub const DEBIAN_CTDBD: &str = "/usr/sbin/ctdbd";
/// Debian's ctdb CLI.
pub const DEBIAN_CTDB: &str = "/usr/bin/ctdb";
/// Where Debian installs ctdbd's helpers (eventd, recovery helper, ...).
pub const DEBIAN_HELPER_DIR: &str = "/usr/libexec/ctdb";

/// How a cluster is to be built. Construct with [`ClusterSpec::new`] and
/// adjust the public fields.
#[derive(Debug, Clone)]
pub struct ClusterSpec {
    /// Number of nodes (1..=254).
    pub nodes: usize,
    /// Address of node 0; node i gets this address plus i.
    pub first_addr: Ipv4Addr,
    /// The ctdbd binary to run.
    pub ctdbd: PathBuf,
    /// Directory of the helper programs, exported as CTDB_EVENTD,
    /// CTDB_RECOVERY_HELPER and friends.
    pub helper_dir: PathBuf,
    /// Cluster directory; created (and must not already hold a cluster).
    pub dir: PathBuf,
    /// Configure a cluster lock file under `<dir>/shared/.ctdb`.
    pub cluster_lock: bool,
    /// `[logging] log level`.
    pub log_level: String,
    /// Extra `ctdb.conf` lines as (section, key, value).
    pub extra_conf: Vec<(String, String, String)>,
    /// Extra ctdbd arguments (e.g. our `--cores=3`), after `--interactive`;
    /// by default the words of `$CTDB_TEST_DAEMON_ARGS`, so any test can be
    /// run against daemons with data cores.
    pub daemon_args: Vec<String>,
    /// Extra environment of one node's daemon: (node, name, value).
    pub node_env: Vec<(usize, String, String)>,
    /// Remove the cluster directory when the cluster is dropped (it is kept
    /// anyway if stopping failed or the thread is panicking, for its logs).
    pub remove_dir_on_drop: bool,
    /// How long a daemon gets to exit after its stdin is closed before it
    /// is sent SIGTERM (and as long again before SIGKILL).
    pub shutdown_grace: Duration,
}

/// The ctdbd to test: `$CTDBD` if set, else Debian's.
pub fn ctdbd_from_env() -> PathBuf {
    std::env::var_os("CTDBD")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEBIAN_CTDBD))
}

/// The ctdb CLI to test: `$CTDB` if set, else Debian's.
pub fn cli_from_env() -> PathBuf {
    std::env::var_os("CTDB")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEBIAN_CTDB))
}

static DIR_COUNTER: AtomicU32 = AtomicU32::new(0);

/// A fresh, unique, short directory name under the temp dir (Unix socket
/// paths are limited to 107 bytes, so keep it short) that names nothing
/// yet. Unique per process and call; a name left behind by an earlier
/// process with the same PID (a failed test keeps its directory to be
/// read) is skipped.
pub fn unique_dir(tag: &str) -> PathBuf {
    let pid = std::process::id();
    loop {
        let n = DIR_COUNTER.fetch_add(1, Ordering::Relaxed);
        let p = std::env::temp_dir().join(format!("ctdb-{tag}-{pid}-{n}"));
        if fs::symlink_metadata(&p).is_err() {
            return p;
        }
    }
}

impl ClusterSpec {
    /// `nodes` nodes from `first_addr`, running `ctdbd`, in a fresh
    /// temporary directory, with Debian's helper directory, no cluster lock
    /// and log level INFO.
    pub fn new(nodes: usize, first_addr: Ipv4Addr, ctdbd: impl Into<PathBuf>) -> ClusterSpec {
        ClusterSpec {
            nodes,
            first_addr,
            ctdbd: ctdbd.into(),
            helper_dir: PathBuf::from(DEBIAN_HELPER_DIR),
            dir: unique_dir("cluster"),
            cluster_lock: false,
            log_level: "INFO".to_string(),
            extra_conf: Vec::new(),
            daemon_args: std::env::var("CTDB_TEST_DAEMON_ARGS")
                .map(|a| a.split_whitespace().map(String::from).collect())
                .unwrap_or_default(),
            node_env: Vec::new(),
            remove_dir_on_drop: true,
            shutdown_grace: Duration::from_secs(5),
        }
    }

    /// The address of node `i`.
    pub fn addr(&self, i: usize) -> Result<Ipv4Addr> {
        let base = u32::from(self.first_addr);
        let last_octet = (base & 0xff) as usize + i;
        if last_octet > 254 {
            return Err(HarnessError::BadSpec(format!(
                "node {i} would need address {}+{i}, beyond .254",
                self.first_addr
            )));
        }
        Ok(Ipv4Addr::from(base + i as u32))
    }

    fn check(&self) -> Result<()> {
        if self.nodes == 0 {
            return Err(HarnessError::BadSpec(
                "a cluster needs at least one node".into(),
            ));
        }
        if !self.first_addr.is_loopback() {
            return Err(HarnessError::BadSpec(format!(
                "{} is not a loopback address (tests stay on 127.0.0.0/8)",
                self.first_addr
            )));
        }
        self.addr(self.nodes - 1)?;
        Ok(())
    }
}

/// Captured result of one CLI run.
#[derive(Debug, Clone)]
pub struct CliOutput {
    /// Exit status.
    pub status: ExitStatus,
    /// Standard output, lossily decoded.
    pub stdout: String,
    /// Standard error, lossily decoded.
    pub stderr: String,
}

impl CliOutput {
    /// Exit code, -1 if killed by a signal.
    pub fn code(&self) -> i32 {
        self.status.code().unwrap_or(-1)
    }
}

#[derive(Debug)]
struct Node {
    addr: Ipv4Addr,
    base: PathBuf,
    child: Option<Child>,
    stdin: Option<ChildStdin>,
}

/// A running (or startable) local cluster. Dropping it stops every daemon
/// and every helper process it left, by pid.
#[derive(Debug)]
pub struct Cluster {
    spec: ClusterSpec,
    nodes: Vec<Node>,
    _lease: Option<AddrLease>,
}

/// How a `ctdb status` output judged the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusSummary {
    /// (pnn, address, status words) for every `pnn:` line.
    pub nodes: Vec<(u32, String, String)>,
    /// The `Leader:` value, if shown and not UNKNOWN.
    pub leader: Option<u32>,
    /// Recovery mode is NORMAL.
    pub recovery_normal: bool,
}

impl StatusSummary {
    /// Parse the text output of `ctdb status`.
    pub fn parse(out: &str) -> StatusSummary {
        let mut nodes = Vec::new();
        let mut leader = None;
        let mut recovery_normal = false;
        for line in out.lines() {
            if let Some(rest) = line.strip_prefix("pnn:") {
                let mut words = rest.split_whitespace();
                let pnn = words.next().and_then(|w| w.parse().ok());
                let addr = words.next();
                if let (Some(pnn), Some(addr)) = (pnn, addr) {
                    let state = words.collect::<Vec<_>>().join(" ");
                    nodes.push((pnn, addr.to_string(), state));
                }
            } else if let Some(rest) = line.strip_prefix("Leader:") {
                leader = rest.trim().parse().ok();
            } else if let Some(rest) = line.strip_prefix("Recovery mode:") {
                recovery_normal = rest.trim().starts_with("NORMAL");
            }
        }
        StatusSummary {
            nodes,
            leader,
            recovery_normal,
        }
    }

    /// All of `n` nodes listed and OK, recovery NORMAL, a leader known.
    pub fn all_ok(&self, n: usize) -> bool {
        self.nodes.len() == n
            && self
                .nodes
                .iter()
                .all(|(_, _, s)| s == "OK" || s == "OK (THIS NODE)")
            && self.recovery_normal
            && self.leader.is_some()
    }
}

impl Cluster {
    /// Reserve a free block of loopback addresses, then [`Cluster::create`]
    /// `nodes` nodes running `ctdbd`. The block is released on drop.
    pub fn create_on_free_addresses(nodes: usize, ctdbd: impl Into<PathBuf>) -> Result<Cluster> {
        let lease = AddrLease::reserve()?;
        let spec = ClusterSpec::new(nodes, lease.first(), ctdbd);
        let mut cluster = Cluster::create(spec)?;
        cluster._lease = Some(lease);
        Ok(cluster)
    }

    /// Write the cluster directory: nodes file, and per node its
    /// `$CTDB_BASE` with ctdb.conf, database, run and events directories.
    /// Starts nothing.
    pub fn create(spec: ClusterSpec) -> Result<Cluster> {
        spec.check()?;
        let dir = &spec.dir;
        if dir.join("nodes").exists() {
            return Err(HarnessError::BadSpec(format!(
                "{} already holds a cluster",
                dir.display()
            )));
        }
        fs::create_dir_all(dir).map_err(io_err("create directory", dir))?;
        let mut nodes_file = String::new();
        for i in 0..spec.nodes {
            nodes_file.push_str(&format!("{}\n", spec.addr(i)?));
        }
        let all_nodes = dir.join("nodes");
        fs::write(&all_nodes, &nodes_file).map_err(io_err("write", &all_nodes))?;
        let lock_dir = dir.join("shared").join(".ctdb");
        fs::create_dir_all(&lock_dir).map_err(io_err("create directory", &lock_dir))?;
        let lock_file = lock_dir.join("cluster.lock");

        let mut nodes = Vec::with_capacity(spec.nodes);
        for i in 0..spec.nodes {
            let base = dir.join(format!("node.{i}"));
            let db = base.join("db");
            for sub in [
                base.join("run"),
                base.join("var"),
                base.join("events").join("legacy"),
                db.join("volatile"),
                db.join("persistent"),
                db.join("state"),
            ] {
                fs::create_dir_all(&sub).map_err(io_err("create directory", &sub))?;
            }
            let node_nodes = base.join("nodes");
            fs::write(&node_nodes, &nodes_file).map_err(io_err("write", &node_nodes))?;
            let addr = spec.addr(i)?;
            let mut conf = format!(
                "[logging]\n\tlocation = file:{log}\n\tlog level = {level}\n\
                 [cluster]\n\tnode address = {addr}\n",
                log = base.join("log.ctdb").display(),
                level = spec.log_level,
            );
            if spec.cluster_lock {
                conf.push_str(&format!("\tcluster lock = {}\n", lock_file.display()));
            }
            conf.push_str(&format!(
                "[database]\n\tvolatile database directory = {v}\n\
                 \tpersistent database directory = {p}\n\
                 \tstate database directory = {s}\n\
                 [legacy]\n\trealtime scheduling = false\n",
                v = db.join("volatile").display(),
                p = db.join("persistent").display(),
                s = db.join("state").display(),
            ));
            for (section, key, value) in &spec.extra_conf {
                conf.push_str(&format!("[{section}]\n\t{key} = {value}\n"));
            }
            let conf_path = base.join("ctdb.conf");
            fs::write(&conf_path, conf).map_err(io_err("write", &conf_path))?;
            nodes.push(Node {
                addr,
                base,
                child: None,
                stdin: None,
            });
        }
        Ok(Cluster {
            spec,
            nodes,
            _lease: None,
        })
    }

    /// The spec the cluster was built from.
    pub fn spec(&self) -> &ClusterSpec {
        &self.spec
    }

    /// Number of nodes.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Never true (a cluster has at least one node); for clippy.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// The cluster directory.
    pub fn dir(&self) -> &Path {
        &self.spec.dir
    }

    fn node(&self, i: usize) -> Result<&Node> {
        self.nodes.get(i).ok_or(HarnessError::NoSuchNode {
            node: i,
            nodes: self.nodes.len(),
        })
    }

    /// Address of node `i`.
    pub fn addr(&self, i: usize) -> Result<Ipv4Addr> {
        Ok(self.node(i)?.addr)
    }

    /// `$CTDB_BASE` of node `i`.
    pub fn base(&self, i: usize) -> Result<PathBuf> {
        Ok(self.node(i)?.base.clone())
    }

    /// The ctdbd Unix socket of node `i`.
    pub fn socket(&self, i: usize) -> Result<PathBuf> {
        Ok(self.node(i)?.base.join("run").join("ctdbd.socket"))
    }

    /// The log file of node `i`.
    pub fn log(&self, i: usize) -> Result<PathBuf> {
        Ok(self.node(i)?.base.join("log.ctdb"))
    }

    /// The pid of node `i`'s ctdbd, if it was started and not yet reaped.
    pub fn pid(&self, i: usize) -> Option<u32> {
        self.nodes.get(i)?.child.as_ref().map(Child::id)
    }

    /// The environment a daemon or CLI of node `i` runs with.
    pub fn env(&self, i: usize) -> Result<Vec<(String, String)>> {
        let node = self.node(i)?;
        let h = &self.spec.helper_dir;
        let helper = |name: &str| h.join(name).display().to_string();
        Ok(vec![
            ("CTDB_TEST_MODE".into(), "yes".into()),
            ("CTDB_BASE".into(), node.base.display().to_string()),
            ("CTDB_SOCKET".into(), self.socket(i)?.display().to_string()),
            ("CTDB_EVENTD".into(), helper("ctdb-eventd")),
            ("CTDB_EVENT_HELPER".into(), helper("ctdb-event")),
            ("CTDB_LOCK_HELPER".into(), helper("ctdb_lock_helper")),
            (
                "CTDB_RECOVERY_HELPER".into(),
                helper("ctdb_recovery_helper"),
            ),
            (
                "CTDB_TAKEOVER_HELPER".into(),
                helper("ctdb_takeover_helper"),
            ),
            (
                "CTDB_CLUSTER_MUTEX_HELPER".into(),
                helper("ctdb_mutex_fcntl_helper"),
            ),
        ])
    }

    /// Start every node's daemon (nodes already running are left alone).
    pub fn start_all(&mut self) -> Result<()> {
        for i in 0..self.nodes.len() {
            self.start_node(i)?;
        }
        Ok(())
    }

    /// Start node `i`'s ctdbd (no-op if it is running).
    pub fn start_node(&mut self, i: usize) -> Result<()> {
        let env = self.env(i)?;
        let ctdbd = self.spec.ctdbd.clone();
        let log_path = self.log(i)?;
        let node = self
            .nodes
            .get_mut(i)
            .ok_or(HarnessError::NoSuchNode { node: i, nodes: 0 })?;
        if let Some(child) = node.child.as_mut() {
            if matches!(child.try_wait(), Ok(None)) {
                return Ok(());
            }
        }
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(io_err("open log", &log_path))?;
        let log2 = log
            .try_clone()
            .map_err(io_err("duplicate log", &log_path))?;
        let mut cmd = Command::new(&ctdbd);
        cmd.arg("--interactive")
            .args(&self.spec.daemon_args)
            .env_remove("CTDB_INTERACTIVE")
            .env_remove("CTDB_TOOL_SETPGID")
            .envs(env)
            .envs(
                self.spec
                    .node_env
                    .iter()
                    .filter(|(n, _, _)| *n == i)
                    .map(|(_, k, v)| (k, v)),
            )
            .current_dir(&node.base)
            .stdin(Stdio::piped())
            .stdout(log)
            .stderr(log2);
        let mut child = cmd.spawn().map_err(|source| HarnessError::Spawn {
            program: ctdbd.clone(),
            source,
        })?;
        node.stdin = child.stdin.take();
        node.child = Some(child);
        Ok(())
    }

    /// Fail if a started daemon has exited.
    pub fn check_running(&mut self) -> Result<()> {
        for i in 0..self.nodes.len() {
            let exited = match self.nodes[i].child.as_mut() {
                Some(child) => child.try_wait().ok().flatten(),
                None => None,
            };
            if let Some(status) = exited {
                self.nodes[i].child = None;
                self.nodes[i].stdin = None;
                return Err(HarnessError::DaemonExited {
                    node: i,
                    status: status.to_string(),
                    log_tail: self.log_tail(i, 20),
                });
            }
        }
        Ok(())
    }

    /// The last `lines` lines of node `i`'s log.
    pub fn log_tail(&self, i: usize, lines: usize) -> String {
        let Ok(path) = self.log(i) else {
            return String::new();
        };
        let mut text = String::new();
        if let Ok(mut f) = File::open(&path) {
            let _ = f.read_to_string(&mut text);
        }
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Run the CLI `cli` with `args` against node `i` (its environment and
    /// socket), wait for it and capture its output.
    pub fn ctdb<S: AsRef<std::ffi::OsStr>>(
        &self,
        i: usize,
        cli: &Path,
        args: &[S],
    ) -> Result<CliOutput> {
        let out = Command::new(cli)
            .args(args)
            .env_remove("CTDB_TOOL_SETPGID")
            .envs(self.env(i)?)
            .stdin(Stdio::null())
            .output()
            .map_err(|source| HarnessError::Spawn {
                program: cli.to_path_buf(),
                source,
            })?;
        Ok(CliOutput {
            status: out.status,
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        })
    }

    /// Wait (at most `limit`) until `ctdb status` on every node shows all
    /// nodes OK, recovery mode NORMAL and a leader. Fails early if a daemon
    /// exits.
    pub fn wait_all_ok(&mut self, cli: &Path, limit: Duration) -> Result<()> {
        let start = Instant::now();
        let n = self.nodes.len();
        loop {
            self.check_running()?;
            let mut last = String::new();
            let mut ok = true;
            for i in 0..n {
                let out = self.ctdb(i, cli, &["-T", "5", "status"])?;
                let summary = StatusSummary::parse(&out.stdout);
                if out.code() != 0 || !summary.all_ok(n) {
                    ok = false;
                    last = format!(
                        "node {i} (exit {}):\n{}{}",
                        out.code(),
                        out.stdout,
                        out.stderr
                    );
                    break;
                }
            }
            if ok {
                return Ok(());
            }
            if start.elapsed() >= limit {
                return Err(HarnessError::NotHealthy {
                    waited_ms: start.elapsed().as_millis(),
                    last,
                });
            }
            thread::sleep(Duration::from_millis(250));
        }
    }

    /// Every live process started for this cluster (daemons and the helpers
    /// they forked), found by their `CTDB_BASE`.
    pub fn processes(&self) -> Vec<u32> {
        procs::processes_under(&self.spec.dir)
    }

    /// Stop node `i`: close its stdin (test-mode ctdbd then shuts down
    /// cleanly), after `shutdown_grace` SIGTERM its pid, after another
    /// `shutdown_grace` SIGKILL it; reap it. Then terminate any helper of
    /// that node still running.
    pub fn stop_node(&mut self, i: usize) -> Result<()> {
        let base = self.base(i)?;
        let grace = self.spec.shutdown_grace;
        let node = &mut self.nodes[i];
        node.stdin = None;
        if let Some(mut child) = node.child.take() {
            stop_child(&mut child, grace, grace)?;
        }
        let left = procs::processes_under(&base);
        let survivors = procs::terminate(&left, grace);
        match survivors.first() {
            Some(&pid) => Err(HarnessError::Unkillable { pid }),
            None => Ok(()),
        }
    }

    /// Stop every node (concurrently: all are asked to shut down first),
    /// by pid, then any process still carrying this cluster's CTDB_BASE.
    pub fn stop_all(&mut self) -> Result<()> {
        let grace = self.spec.shutdown_grace;
        for node in &mut self.nodes {
            node.stdin = None;
        }
        let mut children: Vec<Child> = self
            .nodes
            .iter_mut()
            .filter_map(|n| n.child.take())
            .collect();
        let deadline = Instant::now() + grace;
        let mut first_err = None;
        for child in &mut children {
            let left = deadline.saturating_duration_since(Instant::now());
            if let Err(e) = stop_child(child, left, grace) {
                first_err.get_or_insert(e);
            }
        }
        let left = self.processes();
        if let Some(&pid) = procs::terminate(&left, grace).first() {
            first_err.get_or_insert(HarnessError::Unkillable { pid });
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

/// Wait up to `first` for `child` to exit by itself, then SIGTERM, wait up
/// to `grace`, then SIGKILL and reap.
fn stop_child(child: &mut Child, first: Duration, grace: Duration) -> Result<()> {
    if wait_child(child, first) {
        return Ok(());
    }
    sys::send_signal(child.id(), sys::SIGTERM);
    if wait_child(child, grace) {
        return Ok(());
    }
    let pid = child.id();
    let _ = child.kill();
    child.wait().map_err(|_| HarnessError::Unkillable { pid })?;
    Ok(())
}

/// Poll `child` until it exits (true) or `limit` passes (false).
fn wait_child(child: &mut Child, limit: Duration) -> bool {
    let start = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(_)) | Err(_) => return true,
            Ok(None) => {}
        }
        if start.elapsed() >= limit {
            return false;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let stopped = self.stop_all();
        if stopped.is_err() {
            eprintln!(
                "ctdb-tests: stopping cluster {}: {stopped:?}",
                self.spec.dir.display()
            );
        }
        if self.spec.remove_dir_on_drop && stopped.is_ok() && !thread::panicking() {
            let _ = fs::remove_dir_all(&self.spec.dir);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Names an earlier process with our PID left behind are skipped: the
    /// next few names the counter would give are taken beforehand.
    #[test]
    fn unique_dir_skips_names_left_behind() {
        let pid = std::process::id();
        let next = DIR_COUNTER.load(Ordering::Relaxed);
        let taken: Vec<PathBuf> = (next..next + 4)
            .map(|n| std::env::temp_dir().join(format!("ctdb-leftover-{pid}-{n}")))
            .collect();
        for t in &taken {
            fs::create_dir_all(t.join("nodes")).expect("create a leftover directory");
        }
        let got = unique_dir("leftover");
        let fresh = fs::symlink_metadata(&got).is_err();
        for t in &taken {
            let _ = fs::remove_dir_all(t);
        }
        assert!(fresh, "{} already exists", got.display());
    }
}
