//! A small harness for multi-node tests of our `ctdbd`: N daemons on a
//! reserved loopback block 127.61.Y.1..N, each in its own `$CTDB_BASE`
//! (test mode, `-i`, no real-time scheduling), driven with Debian's stock
//! `/usr/bin/ctdb`. Every daemon is stopped by its PID (SIGTERM, SIGKILL
//! after 10 s) when the test ends; their stdin is a pipe, so they also
//! exit if the test process dies.
//!
//! Address blocks are reserved with a directory
//! `$TMP/ctdbd-cluster-lo-61-Y` holding the owner's pid (mkdir is atomic;
//! a block whose owner is gone is taken over), so test binaries running
//! at the same time never share node addresses.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const CTDBD: &str = env!("CARGO_BIN_EXE_ctdbd");
pub const CTDB: &str = "/usr/bin/ctdb";
pub const MUTEX_HELPER: &str = "/usr/libexec/ctdb/ctdb_mutex_fcntl_helper";

/// Second octet of our blocks.
const OCTET2: u32 = 61;

fn alive(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    let state = stat
        .rsplit_once(") ")
        .and_then(|(_, r)| r.chars().next())
        .unwrap_or('X');
    state != 'Z' && state != 'X'
}

/// A reserved block 127.61.Y.0/24, released on drop.
pub struct Lease {
    pub net: String,
    dir: PathBuf,
}

impl Lease {
    pub fn reserve() -> Lease {
        let tmp = std::env::temp_dir();
        let me = std::process::id();
        for k in 0..250 {
            let y = (me + k) % 250 + 1;
            let dir = tmp.join(format!("ctdbd-cluster-lo-{OCTET2}-{y}"));
            let take = |dir: &Path| {
                std::fs::create_dir(dir).is_ok()
                    && std::fs::write(dir.join("pid"), me.to_string()).is_ok()
            };
            if take(&dir) {
                return Lease {
                    net: format!("127.{OCTET2}.{y}"),
                    dir,
                };
            }
            let owner = std::fs::read_to_string(dir.join("pid"))
                .ok()
                .and_then(|s| s.trim().parse::<u32>().ok());
            if owner.is_some_and(|p| p != me && !alive(p)) {
                let _ = std::fs::remove_dir_all(&dir);
                if take(&dir) {
                    return Lease {
                        net: format!("127.{OCTET2}.{y}"),
                        dir,
                    };
                }
            }
        }
        panic!("no free address block 127.{OCTET2}.*.0/24");
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// One `ctdb status` as parsed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Status {
    /// (pnn, state text such as "OK" or "DISCONNECTED|UNHEALTHY").
    pub nodes: Vec<(u32, String)>,
    pub generation: Option<u32>,
    pub normal: bool,
    pub leader: Option<u32>,
}

impl Status {
    pub fn parse(out: &str) -> Status {
        let mut s = Status::default();
        for line in out.lines() {
            if let Some(rest) = line.strip_prefix("pnn:") {
                let mut w = rest.split_whitespace();
                let pnn = w.next().and_then(|p| p.parse().ok()).unwrap_or(u32::MAX);
                let _addr = w.next();
                let state = w.next().unwrap_or("").to_string();
                s.nodes.push((pnn, state));
            } else if let Some(g) = line.strip_prefix("Generation:") {
                s.generation = g.trim().parse().ok();
            } else if line.starts_with("Recovery mode:") {
                s.normal = line.contains("NORMAL");
            } else if let Some(l) = line.strip_prefix("Leader:") {
                s.leader = l.trim().parse().ok();
            }
        }
        s
    }

    /// Every node in `ok` is OK, the others in one of their own states.
    pub fn states(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.1.clone()).collect()
    }

    pub fn all_ok(&self, n: usize) -> bool {
        self.nodes.len() == n
            && self.nodes.iter().all(|(_, st)| st == "OK")
            && self.normal
            && self.leader.is_some()
            && self.generation.is_some_and(|g| g != 1)
    }
}

/// A cluster of our daemons.
pub struct Cluster {
    pub dir: PathBuf,
    pub net: String,
    n: usize,
    children: Vec<Option<Child>>,
    _lease: Lease,
}

impl Cluster {
    /// Lays out `n` nodes (not started). `tunables` go to each node's
    /// `ctdb.tunables`; `lock`: a cluster lock file shared by all nodes.
    pub fn new(tag: &str, n: usize, tunables: &[(&str, u32)], lock: bool) -> Cluster {
        let lease = Lease::reserve();
        let dir = std::env::temp_dir().join(format!("ctdbd-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("shared")).unwrap();
        let nodes: String = (1..=n).map(|i| format!("{}.{i}\n", lease.net)).collect();
        for i in 0..n {
            let base = dir.join(format!("node.{i}"));
            for sub in [
                "db/volatile",
                "db/persistent",
                "db/state",
                "run",
                "var",
                "events/legacy",
            ] {
                std::fs::create_dir_all(base.join(sub)).unwrap();
            }
            std::fs::write(base.join("nodes"), &nodes).unwrap();
            let mut conf = format!(
                "[logging]\n\tlocation = file:{0}/log.ctdb\n\tlog level = INFO\n\
                 [cluster]\n\tnode address = {1}.{2}\n",
                base.display(),
                lease.net,
                i + 1
            );
            if lock {
                conf.push_str(&format!(
                    "\tcluster lock = {}/shared/cluster.lock\n",
                    dir.display()
                ));
            }
            conf.push_str(&format!(
                "[database]\n\tvolatile database directory = {0}/db/volatile\n\
                 \tpersistent database directory = {0}/db/persistent\n\
                 \tstate database directory = {0}/db/state\n\
                 [legacy]\n\trealtime scheduling = false\n",
                base.display()
            ));
            std::fs::write(base.join("ctdb.conf"), conf).unwrap();
            let tun: String = tunables.iter().map(|(k, v)| format!("{k}={v}\n")).collect();
            std::fs::write(base.join("ctdb.tunables"), tun).unwrap();
        }
        Cluster {
            dir,
            net: lease.net.clone(),
            n,
            children: (0..n).map(|_| None).collect(),
            _lease: lease,
        }
    }

    pub fn len(&self) -> usize {
        self.n
    }

    pub fn base(&self, i: usize) -> PathBuf {
        self.dir.join(format!("node.{i}"))
    }

    pub fn sock(&self, i: usize) -> PathBuf {
        self.base(i).join("run/ctdbd.socket")
    }

    /// Starts node `i`.
    pub fn start(&mut self, i: usize) {
        assert!(self.children[i].is_none(), "node {i} already running");
        let base = self.base(i);
        let _ = std::fs::remove_file(self.sock(i));
        let child = Command::new(CTDBD)
            .args(["-i", "--nosetsched"])
            .env("CTDB_TEST_MODE", "1")
            .env("CTDB_BASE", &base)
            .env("CTDB_SOCKET", self.sock(i))
            .env("CTDB_CLUSTER_MUTEX_HELPER", MUTEX_HELPER)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(base.join("ctdbd.stderr"))
                    .expect("stderr file"),
            )
            .spawn()
            .expect("start ctdbd");
        self.children[i] = Some(child);
    }

    pub fn start_all(&mut self) {
        for i in 0..self.n {
            self.start(i);
        }
    }

    pub fn pid(&self, i: usize) -> Option<u32> {
        self.children[i].as_ref().map(|c| c.id())
    }

    /// kill -9 of node `i` and of its helpers (eventd, lock helper), as a
    /// crash of the machine would end them, then reaping it. Killing only
    /// ctdbd left its eventd alive for up to 5 s, and a node restarted
    /// within that time could not start its own.
    pub fn kill9(&mut self, i: usize) {
        if let Some(mut c) = self.children[i].take() {
            let helpers = descendants(c.id());
            let _ = c.kill();
            for p in helpers {
                let _ = Command::new("kill")
                    .args(["-KILL", &p.to_string()])
                    .status();
            }
            let _ = c.wait();
        }
    }

    /// SIGTERM, then SIGKILL after 10 s; whether it ended on SIGTERM.
    pub fn stop(&mut self, i: usize) -> bool {
        let Some(mut c) = self.children[i].take() else {
            return false;
        };
        let _ = Command::new("kill")
            .args(["-TERM", &c.id().to_string()])
            .status();
        let end = Instant::now() + Duration::from_secs(10);
        while matches!(c.try_wait(), Ok(None)) && Instant::now() < end {
            std::thread::sleep(Duration::from_millis(20));
        }
        let clean = matches!(c.try_wait(), Ok(Some(_)));
        let _ = c.kill();
        let _ = c.wait();
        clean
    }

    /// Whether node `i`'s process still runs.
    pub fn running(&mut self, i: usize) -> bool {
        self.children[i]
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// `ctdb ARGS` against node `i`, bounded to `secs`: (success, output).
    pub fn ctdb_t(&self, i: usize, secs: u64, args: &[&str]) -> (bool, String) {
        let mut child = Command::new(CTDB)
            .args(args)
            .env("CTDB_SOCKET", self.sock(i))
            .env("CTDB_BASE", self.base(i))
            // Test mode makes the tool put itself in its own process
            // group: on timeout it SIGTERMs its group, not this test.
            .env("CTDB_TEST_MODE", "1")
            .env_remove("CTDB_TOOL_SETPGID")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run ctdb");
        let end = Instant::now() + Duration::from_secs(secs);
        while matches!(child.try_wait(), Ok(None)) {
            if Instant::now() > end {
                let _ = child.kill();
                let _ = child.wait();
                return (false, format!("ctdb {args:?} on node {i} timed out"));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let o = child.wait_with_output().expect("ctdb output");
        (
            o.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            ),
        )
    }

    pub fn ctdb(&self, i: usize, args: &[&str]) -> (bool, String) {
        self.ctdb_t(i, 20, args)
    }

    /// `ctdb ARGS` that must succeed.
    pub fn ok(&self, i: usize, args: &[&str]) -> String {
        let (ok, out) = self.ctdb(i, args);
        assert!(ok, "ctdb {args:?} on node {i}: {out}\n{}", self.logs());
        out
    }

    /// `ctdb status` of node `i`, parsed (empty if it failed).
    pub fn status(&self, i: usize) -> Status {
        let (ok, out) = self.ctdb_t(i, 10, &["-T", "3", "status"]);
        if ok {
            Status::parse(&out)
        } else {
            Status::default()
        }
    }

    /// Waits until `f` holds, at most `secs`; panics with the logs if not.
    pub fn wait(&self, what: &str, secs: u64, mut f: impl FnMut(&Cluster) -> bool) {
        let end = Instant::now() + Duration::from_secs(secs);
        let start = Instant::now();
        loop {
            if f(self) {
                eprintln!("{what}: after {:.1} s", start.elapsed().as_secs_f64());
                return;
            }
            assert!(
                Instant::now() < end,
                "timed out ({secs} s) waiting for {what}\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// Waits until the nodes in `up` all report every node of `up` OK,
    /// the others in a state containing `other`, recovery mode NORMAL,
    /// and agree on one leader (in `up`) and one generation. Returns
    /// (leader, generation).
    pub fn wait_agreed(&self, what: &str, up: &[usize], other: &str, secs: u64) -> (u32, u32) {
        let mut res = (0, 0);
        self.wait(what, secs, |c| {
            let mut seen: Option<(u32, u32)> = None;
            for &i in up {
                let s = c.status(i);
                if s.nodes.len() != c.n || !s.normal {
                    return false;
                }
                for (pnn, st) in &s.nodes {
                    let want_ok = up.contains(&(*pnn as usize));
                    if want_ok && st != "OK" || !want_ok && !st.contains(other) {
                        return false;
                    }
                }
                let (Some(l), Some(g)) = (s.leader, s.generation) else {
                    return false;
                };
                if !up.contains(&(l as usize)) || g == 1 {
                    return false;
                }
                match seen {
                    None => seen = Some((l, g)),
                    Some(x) if x != (l, g) => return false,
                    Some(_) => {}
                }
            }
            res = seen.unwrap_or_default();
            seen.is_some()
        });
        res
    }

    /// Every node's log (last 150 lines each), for failure reports.
    pub fn logs(&self) -> String {
        let mut s = String::new();
        for i in 0..self.n {
            let log = std::fs::read_to_string(self.base(i).join("log.ctdb")).unwrap_or_default();
            let err =
                std::fs::read_to_string(self.base(i).join("ctdbd.stderr")).unwrap_or_default();
            let lines: Vec<&str> = log.lines().collect();
            let tail = &lines[lines.len().saturating_sub(150)..];
            s.push_str(&format!(
                "==== node {i} log (last {} lines)\n{}\n---- stderr\n{err}\n",
                tail.len(),
                tail.join("\n")
            ));
        }
        s
    }

    pub fn log(&self, i: usize) -> String {
        std::fs::read_to_string(self.base(i).join("log.ctdb")).unwrap_or_default()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // SIGTERM to all first: each takes a few seconds to exit.
        for c in self.children.iter().flatten() {
            let _ = Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .status();
        }
        for i in 0..self.n {
            self.stop(i);
        }
        if std::thread::panicking() {
            eprintln!("cluster files kept in {}", self.dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// Every process below `pid` (children, their children, ...), from /proc.
fn descendants(pid: u32) -> Vec<u32> {
    let mut parent_of = Vec::new();
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for e in dir.flatten() {
            let Some(p) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
                continue;
            };
            // /proc/PID/stat: "pid (comm) state ppid ..."; comm may hold spaces.
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{p}/stat")) else {
                continue;
            };
            let ppid = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(1))
                .and_then(|v| v.parse::<u32>().ok());
            if let Some(pp) = ppid {
                parent_of.push((p, pp));
            }
        }
    }
    let mut out = Vec::new();
    let mut frontier = vec![pid];
    while let Some(cur) = frontier.pop() {
        for &(p, pp) in &parent_of {
            if pp == cur && !out.contains(&p) {
                out.push(p);
                frontier.push(p);
            }
        }
    }
    out
}
