//! Clustered Samba on top of a local CTDB [`Cluster`]: one `smbd` per node,
//! bound to that node's loopback address, talking to that node's ctdbd, all
//! serving one share directory that stands in for the cluster file system.
//!
//! This is why CTDB exists — several Samba servers acting as one — so these
//! helpers let tests prove a ctdbd end to end with real clients (smbclient,
//! smbtorture, Samba's python bindings): share modes, oplocks, byte-range
//! locks and sessions must be visible across nodes, which only works if
//! ctdbd moves the records of `locking.tdb`, `brlock.tdb`,
//! `smbXsrv_*_global.tdb` between nodes and runs persistent transactions
//! (`passdb.tdb`, written by `smbpasswd -a`).
//!
//! Layout (next to the cluster directory, `<dir>`):
//!
//! ```text
//! <dir>/share/                 the shared directory ([share] on every node)
//! <dir>/smb.<i>/smb.conf       node i's configuration
//! <dir>/smb.<i>/{lock,state,cache,private,pid,ncalrpc}/
//! <dir>/smb.<i>/log.smbd       smbd's log file, log.stdout its stdout/stderr
//! <dir>/holder.py              the open-holding client (see [`Holder`])
//! ```
//!
//! Byte-range and share-mode state is deliberately kept out of the local
//! kernel (`posix locking = no`, `kernel share modes = no`, `kernel oplocks =
//! no`): all nodes share one host file system here, so kernel locks would
//! make cross-node tests pass without ctdb; this way only ctdb can.
//!
//! Needs the Debian packages `samba`, `smbclient`, `python3-samba` and, for
//! the smbtorture tests, `samba-testsuite`; tests skip (and say so) without
//! them.
//!
//! Every process started (smbd, its forked children, samba-dcerpcd, clients)
//! carries `CTDB_SAMBA_TEST=<dir>` in its environment; stopping scans /proc
//! for it and ends every such process by pid.

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::cluster::{CliOutput, Cluster};
use crate::error::{io_err, HarnessError, Result};
use crate::procs;
use crate::sys;

/// Debian's smbd.
pub const SMBD: &str = "/usr/sbin/smbd";
/// Debian's smbclient.
pub const SMBCLIENT: &str = "/usr/bin/smbclient";
/// Debian's smbstatus.
pub const SMBSTATUS: &str = "/usr/bin/smbstatus";
/// Debian's smbpasswd.
pub const SMBPASSWD: &str = "/usr/bin/smbpasswd";
/// Debian's net.
pub const NET: &str = "/usr/bin/net";
/// smbtorture (package samba-testsuite).
pub const SMBTORTURE: &str = "/usr/bin/smbtorture";
/// The system python, which has Samba's bindings (python3-samba).
pub const PYTHON: &str = "/usr/bin/python3";

/// The SMB user the tests log in as (root exists everywhere; smbd runs as
/// root and a tdbsam entry is added for it).
pub const USER: &str = "root";
/// Its SMB password.
pub const PASSWORD: &str = "ctdb-Test-1";
/// Name of the share on every node.
pub const SHARE: &str = "share";
/// All nodes share one machine SID, as a real cluster would (the tdbsam
/// entries live in one clustered passdb.tdb).
const LOCAL_SID: &str = "S-1-5-21-1100-2200-3300";

/// Environment variable marking every process of one Samba cluster.
const TAG_VAR: &str = "CTDB_SAMBA_TEST";

/// True if every program these helpers need is installed.
pub fn tools_available() -> bool {
    [SMBD, SMBCLIENT, SMBSTATUS, SMBPASSWD, NET, PYTHON]
        .iter()
        .all(|p| Path::new(p).exists())
}

/// True if smbtorture is installed.
pub fn smbtorture_available() -> bool {
    Path::new(SMBTORTURE).exists()
}

#[derive(Debug)]
struct SmbNode {
    addr: Ipv4Addr,
    dir: PathBuf,
    conf: PathBuf,
    child: Option<Child>,
}

/// One smbd per node of a CTDB cluster. Dropping it stops every process it
/// started, by pid.
#[derive(Debug)]
pub struct SambaCluster {
    dir: PathBuf,
    share: PathBuf,
    nodes: Vec<SmbNode>,
    ctdbd: PathBuf,
    // After `nodes`: stop_all runs (in Drop) before the taps close.
    taps: Vec<tap::CtdbTap>,
}

/// Run `cmd` with stdout/stderr captured, killing it after `limit`. A
/// timeout is reported in `stderr` (and the status is that of the kill).
pub fn run_bounded(cmd: &mut Command, limit: Duration) -> Result<CliOutput> {
    let program = PathBuf::from(cmd.get_program());
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| HarnessError::Spawn {
            program: program.clone(),
            source,
        })?;
    let mut out = child.stdout.take();
    let mut err = child.stderr.take();
    let t_out = thread::spawn(move || {
        let mut v = Vec::new();
        if let Some(o) = out.as_mut() {
            let _ = o.read_to_end(&mut v);
        }
        v
    });
    let t_err = thread::spawn(move || {
        let mut v = Vec::new();
        if let Some(e) = err.as_mut() {
            let _ = e.read_to_end(&mut v);
        }
        v
    });
    let start = Instant::now();
    let mut timed_out = false;
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break s,
            Ok(None) => {}
            Err(source) => return Err(HarnessError::Spawn { program, source }),
        }
        if start.elapsed() >= limit {
            timed_out = true;
            let _ = child.kill();
            break child
                .wait()
                .map_err(|source| HarnessError::Spawn { program, source })?;
        }
        thread::sleep(Duration::from_millis(10));
    };
    let stdout = String::from_utf8_lossy(&t_out.join().unwrap_or_default()).into_owned();
    let mut stderr = String::from_utf8_lossy(&t_err.join().unwrap_or_default()).into_owned();
    if timed_out {
        stderr.push_str(&format!(
            "\n[ctdb-tests: {} killed after {} ms]\n",
            cmd.get_program().to_string_lossy(),
            limit.as_millis()
        ));
    }
    Ok(CliOutput {
        status,
        stdout,
        stderr,
    })
}

/// smbd's `log level`: `$SAMBA_LOG_LEVEL` (e.g. `10` or `1 dbwrap:10
/// ctdb:10`) when set, else 1.
fn smbd_log_level() -> String {
    std::env::var("SAMBA_LOG_LEVEL")
        .ok()
        .filter(|v| !v.trim().is_empty())
        .unwrap_or_else(|| "1".to_string())
}

fn write(path: &Path, text: &str) -> Result<()> {
    fs::write(path, text).map_err(io_err("write", path))
}

impl SambaCluster {
    /// Write one smbd configuration per node of `cluster` (which need not
    /// be running yet). Starts nothing.
    pub fn create(cluster: &Cluster) -> Result<SambaCluster> {
        SambaCluster::create_inner(cluster, false)
    }

    /// Like [`SambaCluster::create`], but every Samba tool reaches its
    /// node's ctdbd through a [`tap::CtdbTap`] that counts what it sends.
    pub fn create_tapped(cluster: &Cluster) -> Result<SambaCluster> {
        SambaCluster::create_inner(cluster, true)
    }

    /// What the Samba tools of node `i` sent to ctdbd so far (empty unless
    /// created with [`SambaCluster::create_tapped`]).
    pub fn tap_counts(&self, i: usize) -> tap::TapCounts {
        self.taps
            .get(i)
            .map(tap::CtdbTap::counts)
            .unwrap_or_default()
    }

    fn create_inner(cluster: &Cluster, tapped: bool) -> Result<SambaCluster> {
        let mut taps = Vec::new();
        let dir = cluster.dir().to_path_buf();
        let share = dir.join("share");
        fs::create_dir_all(&share).map_err(io_err("create directory", &share))?;
        let holder = dir.join("holder.py");
        write(&holder, HOLDER_PY)?;
        let mut nodes = Vec::new();
        for i in 0..cluster.len() {
            let ndir = dir.join(format!("smb.{i}"));
            for sub in ["lock", "state", "cache", "private", "pid", "ncalrpc"] {
                let p = ndir.join(sub);
                fs::create_dir_all(&p).map_err(io_err("create directory", &p))?;
            }
            let addr = cluster.addr(i)?;
            let mut sock = cluster.socket(i)?;
            if tapped {
                let t = tap::CtdbTap::start(&ndir.join("ctdb.sock"), &sock)?;
                sock = t.path().to_path_buf();
                taps.push(t);
            }
            let conf = ndir.join("smb.conf");
            let d = |s: &str| ndir.join(s).display().to_string();
            let text = format!(
                "[global]\n\
                 \tclustering = yes\n\
                 \tctdbd socket = {sock}\n\
                 \tnetbios name = CTDBTEST\n\
                 \tworkgroup = CTDBTESTS\n\
                 \tserver role = standalone server\n\
                 \tsecurity = user\n\
                 \tpassdb backend = tdbsam\n\
                 \tmap to guest = never\n\
                 \tinterfaces = {addr}/8\n\
                 \tbind interfaces only = yes\n\
                 \tsmb ports = 445\n\
                 \tdisable netbios = yes\n\
                 \tlock directory = {lock}\n\
                 \tstate directory = {state}\n\
                 \tcache directory = {cache}\n\
                 \tprivate dir = {private}\n\
                 \tpid directory = {pid}\n\
                 \tncalrpc dir = {ncalrpc}\n\
                 \tlog file = {log}\n\
                 \tmax log size = 0\n\
                 \tlog level = {log_level}\n\
                 \tkernel oplocks = no\n\
                 \tkernel share modes = no\n\
                 \tposix locking = no\n\
                 \tload printers = no\n\
                 \tprinting = bsd\n\
                 \tprintcap name = /dev/null\n\
                 \tdisable spoolss = yes\n\
                 \tregistry shares = no\n\
                 \tusershare path =\n\
                 \tdns proxy = no\n\
                 [{SHARE}]\n\
                 \tpath = {share}\n\
                 \tread only = no\n\
                 \tguest ok = no\n",
                sock = sock.display(),
                lock = d("lock"),
                state = d("state"),
                cache = d("cache"),
                private = d("private"),
                pid = d("pid"),
                ncalrpc = d("ncalrpc"),
                log = d("log.smbd"),
                share = share.display(),
                log_level = smbd_log_level(),
            );
            write(&conf, &text)?;
            nodes.push(SmbNode {
                addr,
                dir: ndir,
                conf,
                child: None,
            });
        }
        Ok(SambaCluster {
            dir,
            share,
            nodes,
            ctdbd: cluster.spec().ctdbd.clone(),
            taps,
        })
    }

    /// The ctdbd binary of the underlying cluster (for test reports).
    pub fn ctdbd(&self) -> &Path {
        &self.ctdbd
    }

    /// Number of smbd nodes.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Never true; for clippy.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// The shared directory behind `[share]`.
    pub fn share_dir(&self) -> &Path {
        &self.share
    }

    fn node(&self, i: usize) -> Result<&SmbNode> {
        self.nodes.get(i).ok_or(HarnessError::NoSuchNode {
            node: i,
            nodes: self.nodes.len(),
        })
    }

    /// smb.conf of node `i`.
    pub fn conf(&self, i: usize) -> Result<PathBuf> {
        Ok(self.node(i)?.conf.clone())
    }

    /// Address smbd of node `i` listens on.
    pub fn addr(&self, i: usize) -> Result<Ipv4Addr> {
        Ok(self.node(i)?.addr)
    }

    /// `//addr/share` of node `i`.
    pub fn unc(&self, i: usize) -> Result<String> {
        Ok(format!("//{}/{SHARE}", self.addr(i)?))
    }

    /// The pid of node `i`'s main smbd, if running.
    pub fn pid(&self, i: usize) -> Option<u32> {
        self.nodes.get(i)?.child.as_ref().map(Child::id)
    }

    fn tag(&self) -> String {
        self.dir.display().to_string()
    }

    /// A command for a Samba tool, marked as belonging to this cluster.
    fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new(program);
        cmd.env(TAG_VAR, self.tag()).current_dir(&self.dir);
        cmd
    }

    /// One-time setup with node `i`'s configuration (its ctdbd must be
    /// running): set the shared machine SID on every node and add the test
    /// user to the clustered passdb (a persistent-database transaction).
    pub fn setup(&self, i: usize) -> Result<()> {
        for k in 0..self.nodes.len() {
            let out = self.tool(k, NET, &["setlocalsid", LOCAL_SID], Duration::from_secs(30))?;
            if out.code() != 0 {
                return Err(HarnessError::BadSpec(format!(
                    "net setlocalsid on node {k} failed ({}): {}{}",
                    out.code(),
                    out.stdout,
                    out.stderr
                )));
            }
        }
        let out = self.smbpasswd_add(i, USER, PASSWORD)?;
        if out.code() != 0 {
            return Err(HarnessError::BadSpec(format!(
                "smbpasswd -a {USER} on node {i} failed ({}): {}{}",
                out.code(),
                out.stdout,
                out.stderr
            )));
        }
        Ok(())
    }

    /// `smbpasswd -a -s user` with node `i`'s configuration.
    pub fn smbpasswd_add(&self, i: usize, user: &str, pass: &str) -> Result<CliOutput> {
        let conf = self.conf(i)?;
        let program = PathBuf::from(SMBPASSWD);
        let mut child = self
            .command(SMBPASSWD)
            .arg("-c")
            .arg(&conf)
            .args(["-a", "-s", user])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|source| HarnessError::Spawn {
                program: program.clone(),
                source,
            })?;
        if let Some(mut stdin) = child.stdin.take() {
            let _ = write!(stdin, "{pass}\n{pass}\n");
        }
        let pid = child.id();
        let waiter = thread::spawn(move || child.wait_with_output());
        let deadline = Instant::now() + Duration::from_secs(30);
        while !waiter.is_finished() {
            if Instant::now() >= deadline {
                sys::send_signal(pid, sys::SIGKILL);
            }
            thread::sleep(Duration::from_millis(10));
        }
        let out = waiter
            .join()
            .map_err(|_| HarnessError::BadSpec("smbpasswd waiter panicked".into()))?
            .map_err(|source| HarnessError::Spawn { program, source })?;
        Ok(CliOutput {
            status: out.status,
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        })
    }

    /// Run a Samba tool that takes `-s <conf>` with node `i`'s config.
    pub fn tool(
        &self,
        i: usize,
        program: &str,
        args: &[&str],
        limit: Duration,
    ) -> Result<CliOutput> {
        let conf = self.conf(i)?;
        let mut cmd = self.command(program);
        cmd.arg("-s").arg(&conf).args(args);
        run_bounded(&mut cmd, limit)
    }

    /// `smbclient //addr_i/share -U user%pass -c <commands>` (30 s bound).
    pub fn smbclient(&self, i: usize, commands: &str) -> Result<CliOutput> {
        let unc = self.unc(i)?;
        let creds = format!("{USER}%{PASSWORD}");
        self.tool(
            i,
            SMBCLIENT,
            &[&unc, "-U", &creds, "-m", "SMB3", "-c", commands],
            Duration::from_secs(30),
        )
    }

    /// `smbstatus <args>` on node `i` (30 s bound).
    pub fn smbstatus(&self, i: usize, args: &[&str]) -> Result<CliOutput> {
        self.tool(i, SMBSTATUS, args, Duration::from_secs(30))
    }

    /// Run smbtorture `tests`, its connections spread round-robin over
    /// `nodes` (first connection to `nodes[0]`, second to `nodes[1]`...),
    /// with extra `--option`s, killed after `limit`.
    pub fn smbtorture(
        &self,
        nodes: &[usize],
        tests: &[&str],
        options: &[&str],
        limit: Duration,
    ) -> Result<CliOutput> {
        let first = *nodes
            .first()
            .ok_or_else(|| HarnessError::BadSpec("smbtorture needs a node".into()))?;
        let unclist = self.dir.join(format!(
            "unclist-{}",
            nodes
                .iter()
                .map(|n| n.to_string())
                .collect::<Vec<_>>()
                .join("-")
        ));
        let mut text = String::new();
        for &n in nodes {
            text.push_str(&self.unc(n)?);
            text.push('\n');
        }
        write(&unclist, &text)?;
        let creds = format!("{USER}%{PASSWORD}");
        let unc = self.unc(first)?;
        let mut cmd = self.command(SMBTORTURE);
        cmd.arg(&unc)
            .arg("-U")
            .arg(&creds)
            .arg(format!("--unclist={}", unclist.display()))
            .arg("--option=torture:progress=no");
        for o in options {
            cmd.arg(format!("--option={o}"));
        }
        cmd.args(tests);
        run_bounded(&mut cmd, limit)
    }

    /// Start every node's smbd, one after the other: each smbd claims its
    /// version through a cluster-wide g_lock at start-up, and two claims at
    /// the same moment can fail with NT_STATUS_POSSIBLE_DEADLOCK, after
    /// which that smbd refuses to start (seen with Samba's own ctdbd too).
    /// So node i+1 starts only once node i answers.
    pub fn start_all(&mut self) -> Result<()> {
        for i in 0..self.nodes.len() {
            self.start_node(i)?;
            self.wait_ready(i, Duration::from_secs(60))?;
        }
        Ok(())
    }

    /// Start node `i`'s smbd in the foreground, as our child.
    pub fn start_node(&mut self, i: usize) -> Result<()> {
        let tag = self.tag();
        let node = self
            .nodes
            .get_mut(i)
            .ok_or(HarnessError::NoSuchNode { node: i, nodes: 0 })?;
        if let Some(child) = node.child.as_mut() {
            if matches!(child.try_wait(), Ok(None)) {
                return Ok(());
            }
        }
        let log_path = node.dir.join("log.stdout");
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(io_err("open log", &log_path))?;
        let log2 = log
            .try_clone()
            .map_err(io_err("duplicate log", &log_path))?;
        // Without --no-process-group smbd starts its own session: at exit
        // the main smbd sends SIGTERM to its whole process group, which
        // must not be the test's.
        let child = Command::new(SMBD)
            .args(["--foreground", "-s"])
            .arg(&node.conf)
            .env(TAG_VAR, &tag)
            .current_dir(&node.dir)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .spawn()
            .map_err(|source| HarnessError::Spawn {
                program: PathBuf::from(SMBD),
                source,
            })?;
        node.child = Some(child);
        Ok(())
    }

    /// The last `lines` lines of node `i`'s smbd log (and its stdout).
    pub fn log_tail(&self, i: usize, lines: usize) -> String {
        let Ok(node) = self.node(i) else {
            return String::new();
        };
        let mut all = String::new();
        for name in ["log.stdout", "log.smbd"] {
            let text = fs::read_to_string(node.dir.join(name)).unwrap_or_default();
            let v: Vec<&str> = text.lines().collect();
            all.push_str(&format!("--- {name}\n"));
            all.push_str(&v[v.len().saturating_sub(lines)..].join("\n"));
            all.push('\n');
        }
        all
    }

    /// Lines of every node's smbd log that show damage: a record smbd
    /// could not parse, a panic. Empty when all is well.
    pub fn smbd_log_problems(&self) -> Vec<String> {
        const BAD: [&str; 3] = ["Found invalid record", "PANIC", "INTERNAL ERROR"];
        let mut found = Vec::new();
        for (i, node) in self.nodes.iter().enumerate() {
            let text = fs::read_to_string(node.dir.join("log.smbd")).unwrap_or_default();
            for line in text.lines() {
                if BAD.iter().any(|b| line.contains(b)) {
                    found.push(format!("node {i}: {}", line.trim()));
                }
            }
        }
        found
    }

    /// Wait (at most `limit`) until node `i`'s smbd accepts a login and
    /// lists the share. Fails early if smbd exits.
    pub fn wait_ready(&mut self, i: usize, limit: Duration) -> Result<()> {
        let start = Instant::now();
        let addr = SocketAddr::from((self.addr(i)?, 445));
        let mut last;
        loop {
            let exited = match self.nodes[i].child.as_mut() {
                Some(c) => c.try_wait().ok().flatten(),
                None => None,
            };
            if let Some(status) = exited {
                self.nodes[i].child = None;
                return Err(HarnessError::NotHealthy {
                    waited_ms: start.elapsed().as_millis(),
                    last: format!(
                        "smbd of node {i} exited ({status}):\n{}",
                        self.log_tail(i, 30)
                    ),
                });
            }
            if TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_ok() {
                let out = self.smbclient(i, "ls")?;
                if out.code() == 0 {
                    return Ok(());
                }
                last = format!("smbclient ls: {}{}", out.stdout, out.stderr);
            } else {
                last = format!("{addr} not accepting connections");
            }
            if start.elapsed() >= limit {
                return Err(HarnessError::NotHealthy {
                    waited_ms: start.elapsed().as_millis(),
                    last: format!("smbd of node {i}: {last}\n{}", self.log_tail(i, 30)),
                });
            }
            thread::sleep(Duration::from_millis(200));
        }
    }

    /// Wait until every node's smbd is ready.
    pub fn wait_all_ready(&mut self, limit: Duration) -> Result<()> {
        let start = Instant::now();
        for i in 0..self.nodes.len() {
            let left = limit.saturating_sub(start.elapsed());
            self.wait_ready(i, left)?;
        }
        Ok(())
    }

    /// Every live process of this Samba cluster (smbd and its children,
    /// clients started through these helpers).
    pub fn processes(&self) -> Vec<u32> {
        processes_tagged(&self.tag())
    }

    /// Processes of node `i`'s smbd: the main one and everything it forked.
    pub fn node_processes(&self, i: usize) -> Vec<u32> {
        let Some(main) = self.pid(i) else {
            return Vec::new();
        };
        let mut found = vec![main];
        // smbd children keep the tag and have the main smbd as ancestor.
        for pid in processes_tagged(&self.tag()) {
            if pid != main && has_ancestor(pid, main) {
                found.push(pid);
            }
        }
        found
    }

    /// Kill node `i`'s smbd and all its children with SIGKILL (a crash),
    /// reaping the main process.
    pub fn kill_node(&mut self, i: usize) -> Result<()> {
        let pids = self.node_processes(i);
        for &p in &pids {
            sys::send_signal(p, sys::SIGKILL);
        }
        if let Some(mut c) = self.nodes[i].child.take() {
            let _ = c.wait();
        }
        match procs::wait_gone(&pids, Duration::from_secs(5)).first() {
            Some(&pid) => Err(HarnessError::Unkillable { pid }),
            None => Ok(()),
        }
    }

    /// Stop node `i`'s smbd (SIGTERM, then SIGKILL) and its children.
    pub fn stop_node(&mut self, i: usize) -> Result<()> {
        let pids = self.node_processes(i);
        let left = procs::terminate(&pids, Duration::from_secs(5));
        if let Some(mut c) = self.nodes[i].child.take() {
            let _ = c.wait();
        }
        match left.first() {
            Some(&pid) => Err(HarnessError::Unkillable { pid }),
            None => Ok(()),
        }
    }

    /// Stop every smbd and every other process carrying this cluster's tag.
    pub fn stop_all(&mut self) -> Result<()> {
        let mains: Vec<u32> = (0..self.nodes.len()).filter_map(|i| self.pid(i)).collect();
        let mut left = procs::terminate(&mains, Duration::from_secs(5));
        for node in &mut self.nodes {
            if let Some(mut c) = node.child.take() {
                let _ = c.wait();
            }
        }
        left.extend(procs::terminate(&self.processes(), Duration::from_secs(5)));
        match left.first() {
            Some(&pid) => Err(HarnessError::Unkillable { pid }),
            None => Ok(()),
        }
    }

    /// If `$SAMBA_TEST_LOGS` names a directory, copy every smbd log and
    /// every ctdbd log of `cluster` to `$SAMBA_TEST_LOGS/<name>/` (the
    /// cluster directory goes away with the cluster).
    pub fn save_logs_if_asked(&self, cluster: &Cluster, name: &str) {
        let Some(root) = std::env::var_os("SAMBA_TEST_LOGS") else {
            return;
        };
        let dest = PathBuf::from(root).join(name);
        if fs::create_dir_all(&dest).is_err() {
            return;
        }
        for (i, node) in self.nodes.iter().enumerate() {
            for f in ["log.smbd", "log.stdout"] {
                let _ = fs::copy(node.dir.join(f), dest.join(format!("smb.{i}.{f}")));
            }
        }
        for i in 0..cluster.len() {
            if let Ok(log) = cluster.log(i) {
                let _ = fs::copy(log, dest.join(format!("ctdbd.{i}.log")));
            }
        }
    }

    /// Start a [`Holder`] client connected to node `i`.
    pub fn holder(&self, i: usize) -> Result<Holder> {
        Holder::start(self, i)
    }
}

impl Drop for SambaCluster {
    fn drop(&mut self) {
        if let Err(e) = self.stop_all() {
            eprintln!("ctdb-tests: stopping smbd of {}: {e}", self.dir.display());
        }
    }
}

/// Live processes whose environment has `TAG_VAR=tag`.
fn processes_tagged(tag: &str) -> Vec<u32> {
    let want = format!("{TAG_VAR}={tag}");
    procs::processes_with_env(|var| var == want.as_bytes())
}

fn has_ancestor(mut pid: u32, ancestor: u32) -> bool {
    for _ in 0..64 {
        match procs::parent(pid) {
            Some(p) if p == ancestor => return true,
            Some(p) if p > 1 => pid = p,
            _ => return false,
        }
    }
    false
}

/// Access mask bits used by tests.
pub mod access {
    /// FILE_READ_DATA.
    pub const READ_DATA: u32 = 0x1;
    /// FILE_WRITE_DATA.
    pub const WRITE_DATA: u32 = 0x2;
    /// DELETE.
    pub const DELETE: u32 = 0x0001_0000;
    /// GENERIC_ALL.
    pub const GENERIC_ALL: u32 = 0x1000_0000;
}

/// Share access bits.
pub mod share {
    /// No sharing: deny everyone else.
    pub const NONE: u32 = 0;
    /// FILE_SHARE_READ.
    pub const READ: u32 = 1;
    /// FILE_SHARE_WRITE.
    pub const WRITE: u32 = 2;
    /// FILE_SHARE_DELETE.
    pub const DELETE: u32 = 4;
}

/// NTSTATUS value of a sharing violation.
pub const NT_STATUS_SHARING_VIOLATION: u32 = 0xC000_0043;

/// A long-lived SMB client (Samba's python bindings) that keeps opens for
/// as long as a test needs, driven line by line over a pipe:
/// `open NAME ACCESS SHARE DISPOSITION` answers `ok FNUM` or `err 0xSTATUS`,
/// `close FNUM` answers `ok 0` or `err ...`.
#[derive(Debug)]
pub struct Holder {
    child: Child,
    stdin: ChildStdin,
    lines: std::sync::mpsc::Receiver<String>,
    _reader: thread::JoinHandle<()>,
}

/// Result of a [`Holder`] request: Ok(value) or Err(ntstatus).
pub type SmbResult = std::result::Result<u32, u32>;

impl Holder {
    fn start(samba: &SambaCluster, i: usize) -> Result<Holder> {
        let conf = samba.conf(i)?;
        let script = samba.dir.join("holder.py");
        let mut child = samba
            .command(PYTHON)
            .arg(&script)
            .arg(samba.addr(i)?.to_string())
            .arg(SHARE)
            .arg(&conf)
            .arg(USER)
            .arg(PASSWORD)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|source| HarnessError::Spawn {
                program: PathBuf::from(PYTHON),
                source,
            })?;
        let stdin = child
            .stdin
            .take()
            .ok_or_else(|| HarnessError::BadSpec("holder client has no stdin pipe".into()))?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| HarnessError::BadSpec("holder client has no stdout pipe".into()))?;
        let (tx, rx) = std::sync::mpsc::channel();
        let reader = thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut h = Holder {
            child,
            stdin,
            lines: rx,
            _reader: reader,
        };
        let hello = h.recv(Duration::from_secs(30))?;
        if hello != "ready" {
            return Err(HarnessError::BadSpec(format!(
                "holder client on node {i} did not connect: {hello}"
            )));
        }
        Ok(h)
    }

    /// Pid of the client process.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    fn recv(&mut self, limit: Duration) -> Result<String> {
        self.lines.recv_timeout(limit).map_err(|_| {
            HarnessError::BadSpec(format!(
                "holder client (pid {}) gave no answer within {} ms",
                self.child.id(),
                limit.as_millis()
            ))
        })
    }

    fn request(&mut self, line: &str) -> Result<SmbResult> {
        writeln!(self.stdin, "{line}")
            .and_then(|_| self.stdin.flush())
            .map_err(io_err("write to holder client", "stdin"))?;
        let answer = self.recv(Duration::from_secs(45))?;
        let mut w = answer.split_whitespace();
        let kind = w.next().unwrap_or("");
        let val = w.next().unwrap_or("");
        let num = if let Some(hex) = val.strip_prefix("0x") {
            u32::from_str_radix(hex, 16).ok()
        } else {
            val.parse().ok()
        };
        match (kind, num) {
            ("ok", Some(n)) => Ok(Ok(n)),
            ("err", Some(n)) => Ok(Err(n)),
            _ => Err(HarnessError::BadSpec(format!(
                "holder client answered {answer:?} to {line:?}"
            ))),
        }
    }

    /// Open (create if missing) `name` with `access` and `share` bits.
    pub fn open(&mut self, name: &str, access: u32, share: u32) -> Result<SmbResult> {
        // FILE_OPEN_IF = 3
        self.request(&format!("open {name} {access} {share} 3"))
    }

    /// Close a handle.
    pub fn close(&mut self, fnum: u32) -> Result<SmbResult> {
        self.request(&format!("close {fnum}"))
    }

    /// Kill the client (its TCP connection dies with it) and reap it.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The open-holding client (byte-range locks are not exposed by the python
/// bindings of 4.17; smbtorture covers those).
const HOLDER_PY: &str = r#"import sys
from samba.samba3 import libsmb_samba_internal as libsmb
from samba.samba3 import param as s3param
from samba import credentials, NTSTATUSError

host, share, conf, user, password = sys.argv[1:6]
lp = s3param.get_context()
lp.load(conf)
creds = credentials.Credentials()
creds.guess(lp)
creds.set_username(user)
creds.set_password(password)
try:
    conn = libsmb.Conn(host, share, lp, creds)
except NTSTATUSError as e:
    print("connect-failed 0x%08x" % (e.args[0] & 0xffffffff), flush=True)
    sys.exit(1)
print("ready", flush=True)
for line in sys.stdin:
    w = line.split()
    if not w:
        continue
    try:
        if w[0] == "open":
            fnum = conn.create(w[1], DesiredAccess=int(w[2]), ShareAccess=int(w[3]),
                               CreateDisposition=int(w[4]))
            print("ok %d" % fnum, flush=True)
        elif w[0] == "close":
            conn.close(int(w[1]))
            print("ok 0", flush=True)
        else:
            print("err 0", flush=True)
    except NTSTATUSError as e:
        print("err 0x%08x" % (e.args[0] & 0xffffffff), flush=True)
"#;

/// One smbtorture benchmark result.
#[derive(Debug, Clone, PartialEq)]
pub struct BenchResult {
    /// The smbtorture test (`smb2.bench.oplock1`, ...).
    pub test: String,
    /// Nodes the connections were spread over.
    pub nodes: Vec<usize>,
    /// Opens per second (for oplock1: opens, each breaking an oplock).
    pub opens_per_sec: f64,
    /// Closes per second (`None` for oplock1, which reports one rate).
    pub closes_per_sec: Option<f64>,
}

/// The number after `key` in `text` (up to the next non-number character).
fn number_after(text: &str, key: &str) -> Option<f64> {
    let at = text.rfind(key)? + key.len();
    let num: String = text[at..]
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    num.parse().ok()
}

/// Parse the summary smbtorture prints at the end of `smb2.bench.*`:
/// `open[num/s=N,...] close[num/s=M,...]` or `R ops/second`.
pub fn parse_bench(test: &str, nodes: &[usize], output: &str) -> Option<BenchResult> {
    if let (Some(o), Some(c)) = (
        number_after(output, "open[num/s="),
        number_after(output, "close[num/s="),
    ) {
        return Some(BenchResult {
            test: test.to_string(),
            nodes: nodes.to_vec(),
            opens_per_sec: o,
            closes_per_sec: Some(c),
        });
    }
    // "12345.67 ops/second": the number before the last occurrence.
    let end = output.rfind(" ops/second")?;
    let start = output[..end]
        .rfind(|c: char| !(c.is_ascii_digit() || c == '.'))
        .map_or(0, |i| i + 1);
    let rate = output[start..end].parse().ok()?;
    Some(BenchResult {
        test: test.to_string(),
        nodes: nodes.to_vec(),
        opens_per_sec: rate,
        closes_per_sec: None,
    })
}

impl SambaCluster {
    /// Run smbtorture's `test` (`smb2.bench.path-contention-shared` or
    /// `smb2.bench.oplock1`) for `secs` seconds with `nprocs` connections
    /// spread round-robin over `nodes`, and return its rates.
    pub fn bench(
        &self,
        test: &str,
        nodes: &[usize],
        nprocs: u32,
        secs: u32,
    ) -> Result<BenchResult> {
        let opts = [
            format!("torture:timelimit={secs}"),
            format!("torture:nprocs={nprocs}"),
        ];
        let opts: Vec<&str> = opts.iter().map(String::as_str).collect();
        let limit = Duration::from_secs(u64::from(secs) + 60);
        let out = self.smbtorture(nodes, &[test], &opts, limit)?;
        let text = format!("{}{}", out.stdout, out.stderr);
        if out.code() != 0 || text.contains("failure: ") {
            return Err(HarnessError::BadSpec(format!(
                "smbtorture {test} on nodes {nodes:?} failed (exit {}):\n{text}",
                out.code()
            )));
        }
        parse_bench(test, nodes, &text).ok_or_else(|| {
            HarnessError::BadSpec(format!(
                "smbtorture {test} printed no rate I understand:\n{text}"
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bench_summaries_parse() {
        let out = "Running for 3 seconds\n\
            1.00 second: open[num/s=9,avslat=0.1] close[num/s=9,avslat=0.1]     \r\
            3.01 second: open[num/s=1234,avslat=0.000800,minlat=0.000100,maxlat=0.01] \
            close[num/s=1233,avslat=0.000700,minlat=0.000100,maxlat=0.02]\n3.02 seconds\n";
        let r = parse_bench("smb2.bench.path-contention-shared", &[0, 1], out).unwrap();
        assert_eq!(r.opens_per_sec, 1234.0);
        assert_eq!(r.closes_per_sec, Some(1233.0));
        let out = "Running for 3 seconds\n10.00 ops/second\r4321.50 ops/second\nsuccess: oplock1\n";
        let r = parse_bench("smb2.bench.oplock1", &[0], out).unwrap();
        assert_eq!(r.opens_per_sec, 4321.5);
        assert_eq!(r.closes_per_sec, None);
        assert!(parse_bench("x", &[0], "nothing here").is_none());
    }
}

/// A recording relay between Samba tools and a ctdbd Unix socket: smbd is
/// pointed at the tap's socket, every packet is forwarded unchanged, and the
/// packets clients send are counted by operation, control opcode, call
/// flags and message srvid class. This shows exactly which parts of the
/// client protocol clustered Samba needs from a ctdbd.
pub mod tap {
    use std::collections::BTreeMap;
    use std::io::{self, Read, Write};
    use std::net::Shutdown;
    use std::os::unix::net::{UnixListener, UnixStream};
    use std::path::{Path, PathBuf};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};
    use std::thread;
    use std::time::Duration;

    use crate::error::{io_err, Result};

    /// Counts of what clients sent through a tap.
    #[derive(Debug, Clone, Default, PartialEq, Eq)]
    pub struct TapCounts {
        /// Client connections accepted.
        pub connections: u64,
        /// Packets by header operation (0 REQ_CALL, 5 REQ_MESSAGE, 7
        /// REQ_CONTROL, 10 REQ_TUNNEL, ...).
        pub operations: BTreeMap<u32, u64>,
        /// REQ_CONTROL packets by control opcode.
        pub controls: BTreeMap<u32, u64>,
        /// REQ_CALL packets by (flags, callid).
        pub calls: BTreeMap<(u32, u32), u64>,
        /// REQ_MESSAGE packets by srvid class (top byte; 0 = a process id).
        pub messages: BTreeMap<u8, u64>,
        /// REGISTER_SRVID requests by srvid class (top byte).
        pub registered: BTreeMap<u8, u64>,
        /// REPLY_CONTROL packets the daemon sent back, by (control opcode
        /// of the request, reply status).
        pub replies: BTreeMap<(u32, i32), u64>,
        /// REPLY_CALL packets by status.
        pub call_replies: BTreeMap<i32, u64>,
    }

    impl TapCounts {
        fn add(&mut self, other: &TapCounts) {
            self.connections += other.connections;
            for (k, v) in &other.operations {
                *self.operations.entry(*k).or_default() += v;
            }
            for (k, v) in &other.controls {
                *self.controls.entry(*k).or_default() += v;
            }
            for (k, v) in &other.calls {
                *self.calls.entry(*k).or_default() += v;
            }
            for (k, v) in &other.messages {
                *self.messages.entry(*k).or_default() += v;
            }
            for (k, v) in &other.registered {
                *self.registered.entry(*k).or_default() += v;
            }
            for (k, v) in &other.replies {
                *self.replies.entry(*k).or_default() += v;
            }
            for (k, v) in &other.call_replies {
                *self.call_replies.entry(*k).or_default() += v;
            }
        }

        /// Sum of several taps' counts.
        pub fn sum<'a>(all: impl IntoIterator<Item = &'a TapCounts>) -> TapCounts {
            let mut t = TapCounts::default();
            for c in all {
                t.add(c);
            }
            t
        }

        /// Control replies with a non-zero status, apart from controls
        /// whose status is a value rather than success or failure
        /// ([`STATUS_IS_A_VALUE`]).
        pub fn failed_controls(&self) -> Vec<((u32, i32), u64)> {
            self.replies
                .iter()
                .filter(|((op, status), _)| *status != 0 && !STATUS_IS_A_VALUE.contains(op))
                .map(|(k, n)| (*k, *n))
                .collect()
        }

        /// A readable table.
        pub fn report(&self) -> String {
            let mut s = format!("client connections: {}\n", self.connections);
            s.push_str("operations:\n");
            for (op, n) in &self.operations {
                s.push_str(&format!("  {:<14} {n}\n", operation_name(*op)));
            }
            s.push_str("controls:\n");
            for (op, n) in &self.controls {
                s.push_str(&format!("  {:<26} ({op:>3}) {n}\n", control_name(*op)));
            }
            s.push_str("calls (flags, callid):\n");
            for ((flags, callid), n) in &self.calls {
                let name = match callid {
                    0xFF00_0001 => "NULL_FUNC",
                    0xFF00_0002 => "FETCH_FUNC",
                    0xFF00_0003 => "FETCH_WITH_HEADER_FUNC",
                    _ => "(other)",
                };
                s.push_str(&format!("  flags 0x{flags:x} {name}: {n}\n"));
            }
            s.push_str("messages by srvid class (top byte):\n");
            for (class, n) in &self.messages {
                s.push_str(&format!("  0x{class:02x}: {n}\n"));
            }
            s.push_str("REGISTER_SRVID by srvid class (top byte):\n");
            for (class, n) in &self.registered {
                s.push_str(&format!("  0x{class:02x}: {n}\n"));
            }
            s.push_str("control replies (opcode, status):\n");
            for ((op, status), n) in &self.replies {
                s.push_str(&format!(
                    "  {:<26} ({op:>3}) status {status}: {n}\n",
                    control_name(*op)
                ));
            }
            s.push_str("call replies by status:\n");
            for (status, n) in &self.call_replies {
                s.push_str(&format!("  status {status}: {n}\n"));
            }
            s
        }
    }

    /// Controls whose reply status is a value, not success or failure.
    pub const STATUS_IS_A_VALUE: &[u32] = &[
        0,   // PROCESS_EXISTS: -1 = no such client process
        3,   // PING: number of clients
        15,  // GET_RECMODE
        30,  // GET_PID
        31,  // GET_RECMASTER
        35,  // GET_PNN
        130, // CHECK_SRVIDS
        151, // CHECK_PID_SRVID: -1 = no such process or srvid
    ];

    /// Name of a packet operation.
    pub fn operation_name(op: u32) -> &'static str {
        match op {
            0 => "REQ_CALL",
            1 => "REPLY_CALL",
            5 => "REQ_MESSAGE",
            7 => "REQ_CONTROL",
            8 => "REPLY_CONTROL",
            10 => "REQ_TUNNEL",
            _ => "other",
        }
    }

    /// Name of the control opcodes a client may plausibly send.
    pub fn control_name(op: u32) -> &'static str {
        const NAMES: &[(u32, &str)] = &[
            (0, "PROCESS_EXISTS"),
            (1, "STATISTICS"),
            (3, "PING"),
            (4, "GETDBPATH"),
            (5, "GETVNNMAP"),
            (9, "GET_DBMAP"),
            (15, "GET_RECMODE"),
            (18, "DB_ATTACH"),
            (20, "TRAVERSE_START"),
            (23, "REGISTER_SRVID"),
            (24, "DEREGISTER_SRVID"),
            (25, "GET_DBNAME"),
            (26, "ENABLE_SEQNUM"),
            (30, "GET_PID"),
            (31, "GET_RECMASTER"),
            (35, "GET_PNN"),
            (44, "TCP_CLIENT"),
            (49, "GET_TUNABLE"),
            (61, "DB_ATTACH_PERSISTENT"),
            (80, "GET_CAPABILITIES"),
            (88, "RELEASE_IP"),
            (90, "GET_PUBLIC_IPS"),
            (91, "GET_NODEMAP"),
            (119, "TRANS3_COMMIT"),
            (120, "GET_DB_SEQNUM"),
            (122, "DB_GET_HEALTH"),
            (128, "SCHEDULE_FOR_DELETION"),
            (130, "CHECK_SRVIDS"),
            (131, "TRAVERSE_START_EXT"),
            (138, "GET_RUNSTATE"),
            (149, "DB_OPEN_FLAGS"),
            (151, "CHECK_PID_SRVID"),
        ];
        NAMES
            .iter()
            .find(|(n, _)| *n == op)
            .map_or("(other)", |(_, name)| name)
    }

    /// A running tap. Dropping it stops accepting; relays end when either
    /// side closes.
    #[derive(Debug)]
    pub struct CtdbTap {
        path: PathBuf,
        stop: Arc<AtomicBool>,
        counts: Arc<Mutex<TapCounts>>,
        accept: Option<thread::JoinHandle<()>>,
    }

    impl CtdbTap {
        /// Listen on `path`, relaying every connection to `target`.
        pub fn start(path: &Path, target: &Path) -> Result<CtdbTap> {
            let _ = std::fs::remove_file(path);
            let listener = UnixListener::bind(path).map_err(io_err("listen on", path))?;
            listener
                .set_nonblocking(true)
                .map_err(io_err("set non-blocking", path))?;
            let stop = Arc::new(AtomicBool::new(false));
            let counts = Arc::new(Mutex::new(TapCounts::default()));
            let (stop2, counts2, target) = (stop.clone(), counts.clone(), target.to_path_buf());
            let accept = thread::spawn(move || {
                while !stop2.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((client, _)) => {
                            let _ = client.set_nonblocking(false);
                            if let Ok(server) = UnixStream::connect(&target) {
                                if let Ok(mut c) = counts2.lock() {
                                    c.connections += 1;
                                }
                                relay(client, server, counts2.clone());
                            }
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                            thread::sleep(Duration::from_millis(5));
                        }
                        Err(_) => thread::sleep(Duration::from_millis(5)),
                    }
                }
            });
            Ok(CtdbTap {
                path: path.to_path_buf(),
                stop,
                counts,
                accept: Some(accept),
            })
        }

        /// The socket clients should use.
        pub fn path(&self) -> &Path {
            &self.path
        }

        /// What was counted so far.
        pub fn counts(&self) -> TapCounts {
            self.counts.lock().map(|c| c.clone()).unwrap_or_default()
        }
    }

    impl Drop for CtdbTap {
        fn drop(&mut self) {
            self.stop.store(true, Ordering::Relaxed);
            if let Some(t) = self.accept.take() {
                let _ = t.join();
            }
            let _ = std::fs::remove_file(&self.path);
        }
    }

    fn u32_at(b: &[u8], off: usize) -> Option<u32> {
        Some(u32::from_le_bytes(b.get(off..off + 4)?.try_into().ok()?))
    }

    fn u64_at(b: &[u8], off: usize) -> Option<u64> {
        Some(u64::from_le_bytes(b.get(off..off + 8)?.try_into().ok()?))
    }

    /// Request ids of one connection's outstanding controls, to name the
    /// control each reply answers.
    type Pending = Arc<Mutex<std::collections::HashMap<u32, u32>>>;

    /// Count one daemon packet to the client.
    fn count_reply(c: &mut TapCounts, pending: &Pending, p: &[u8]) {
        let (Some(op), Some(reqid), Some(status)) = (u32_at(p, 16), u32_at(p, 28), u32_at(p, 32))
        else {
            return;
        };
        let status = status as i32;
        match op {
            8 => {
                let opcode = pending
                    .lock()
                    .ok()
                    .and_then(|mut m| m.remove(&reqid))
                    .unwrap_or(u32::MAX);
                *c.replies.entry((opcode, status)).or_default() += 1;
            }
            1 => *c.call_replies.entry(status).or_default() += 1,
            _ => {}
        }
    }

    /// Count one client packet (`p` starts with the 32-byte header).
    fn count(c: &mut TapCounts, p: &[u8]) {
        let Some(op) = u32_at(p, 16) else { return };
        *c.operations.entry(op).or_default() += 1;
        match op {
            0 => {
                if let (Some(flags), Some(callid)) = (u32_at(p, 32), u32_at(p, 40)) {
                    *c.calls.entry((flags, callid)).or_default() += 1;
                }
            }
            5 => {
                if let Some(srvid) = u64_at(p, 32) {
                    *c.messages.entry((srvid >> 56) as u8).or_default() += 1;
                }
            }
            7 => {
                if let Some(opcode) = u32_at(p, 32) {
                    *c.controls.entry(opcode).or_default() += 1;
                    if opcode == 23 {
                        if let Some(srvid) = u64_at(p, 40) {
                            *c.registered.entry((srvid >> 56) as u8).or_default() += 1;
                        }
                    }
                }
            }
            _ => {}
        }
    }

    fn relay(client: UnixStream, server: UnixStream, counts: Arc<Mutex<TapCounts>>) {
        let (Ok(mut c_read), Ok(mut s_write)) = (client.try_clone(), server.try_clone()) else {
            return;
        };
        let (mut s_read, mut c_write) = (server, client);
        let pending: Pending = Arc::default();
        let (pending2, counts2) = (pending.clone(), counts.clone());
        // Client to daemon: packet by packet, counted.
        thread::spawn(move || {
            let mut len = [0u8; 4];
            loop {
                if c_read.read_exact(&mut len).is_err() {
                    break;
                }
                let n = u32::from_le_bytes(len) as usize;
                if !(4..=64 * 1024 * 1024).contains(&n) {
                    break;
                }
                let mut p = vec![0u8; n];
                p[..4].copy_from_slice(&len);
                if c_read.read_exact(&mut p[4..]).is_err() {
                    break;
                }
                if let Ok(mut c) = counts.lock() {
                    count(&mut c, &p);
                }
                // A control that wants a reply (flags bit 0 clear).
                if u32_at(&p, 16) == Some(7) && u32_at(&p, 52).is_some_and(|f| f & 1 == 0) {
                    if let (Some(reqid), Some(opcode), Ok(mut m)) =
                        (u32_at(&p, 28), u32_at(&p, 32), pending.lock())
                    {
                        m.insert(reqid, opcode);
                    }
                }
                if s_write.write_all(&p).is_err() {
                    break;
                }
            }
            let _ = s_write.shutdown(Shutdown::Both);
            let _ = c_read.shutdown(Shutdown::Both);
        });
        // Daemon to client: packet by packet, replies counted.
        thread::spawn(move || {
            let mut len = [0u8; 4];
            loop {
                if s_read.read_exact(&mut len).is_err() {
                    break;
                }
                let n = u32::from_le_bytes(len) as usize;
                if !(4..=64 * 1024 * 1024).contains(&n) {
                    break;
                }
                let mut p = vec![0u8; n];
                p[..4].copy_from_slice(&len);
                if s_read.read_exact(&mut p[4..]).is_err() {
                    break;
                }
                if let Ok(mut c) = counts2.lock() {
                    count_reply(&mut c, &pending2, &p);
                }
                if c_write.write_all(&p).is_err() {
                    break;
                }
            }
            let _ = c_write.shutdown(Shutdown::Both);
            let _ = s_read.shutdown(Shutdown::Both);
        });
    }
}
