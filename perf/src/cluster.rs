//! Starting, measuring and stopping a local cluster through
//! `scripts/local-cluster`.
//!
//! Why the script: it is the project's one description of how a test
//! cluster is laid out (one `$CTDB_BASE` per node on 127.X.Y.n, test mode,
//! Debian's helpers), shared with developers; the harness only chooses the
//! daemon, the state directory and the network, and reads the pid files the
//! script leaves. Measurements come from `/proc`: CPU time of each daemon's
//! whole process tree and the daemons' peak RSS (`VmHWM`, reset through
//! `clear_refs` before a workload).

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::error::{PerfError, Result};

/// A running local cluster.
pub struct Cluster {
    script: PathBuf,
    dir: PathBuf,
    net: String,
    daemon: PathBuf,
    pub nodes: usize,
    pids: Vec<u32>,
    killed: Vec<bool>,
    stopped: bool,
}

impl Cluster {
    /// `local-cluster start N` with `daemon`; waits (up to `wait_s`) for all
    /// nodes OK, as the script does. `extra_env` reaches every daemon.
    pub fn start(
        script: &Path,
        daemon: &Path,
        nodes: usize,
        dir: &Path,
        net: &str,
        wait_s: u64,
        extra_env: &[(String, String)],
    ) -> Result<Cluster> {
        if dir.join("nodes").exists() {
            // A leftover of an earlier, interrupted run of ours: stop it.
            let _ = run_script(script, dir, net, daemon, &["stop"], &[]);
        }
        fs::create_dir_all(dir)
            .map_err(|e| PerfError::io(format!("mkdir {}", dir.display()), e))?;
        let mut env: Vec<(String, String)> = extra_env.to_vec();
        env.push(("CTDB_LOCAL_WAIT".into(), wait_s.to_string()));
        let out = run_script(
            script,
            dir,
            net,
            daemon,
            &["start", &nodes.to_string()],
            &env,
        );
        let mut c = Cluster {
            script: script.to_path_buf(),
            dir: dir.to_path_buf(),
            net: net.to_string(),
            daemon: daemon.to_path_buf(),
            nodes,
            pids: Vec::new(),
            killed: vec![false; nodes],
            stopped: false,
        };
        // Whatever happened, learn the pids so that stop() can clean up.
        for i in 0..nodes {
            let p = dir.join(format!("node.{i}/ctdbd.pid"));
            let pid = fs::read_to_string(&p)
                .ok()
                .and_then(|s| s.trim().parse::<u32>().ok())
                .unwrap_or(0);
            c.pids.push(pid);
        }
        match out {
            Ok(_) => Ok(c),
            Err(e) => {
                c.stop();
                Err(e)
            }
        }
    }

    /// The client socket of node `i`.
    pub fn socket(&self, i: usize) -> PathBuf {
        self.dir.join(format!("node.{i}/run/ctdbd.socket"))
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The daemon pid of node `i` (0 if unknown).
    pub fn pid(&self, i: usize) -> u32 {
        self.pids.get(i).copied().unwrap_or(0)
    }

    /// SIGKILL the daemon of node `i` (not its helpers), as a crash.
    pub fn kill_node(&mut self, i: usize) -> Result<()> {
        let pid = self.pid(i);
        if pid == 0 {
            return Err(PerfError::Cluster(format!("node {i} has no pid")));
        }
        crate::sys::kill(pid, libc::SIGKILL)
            .map_err(|e| PerfError::io(format!("kill -9 {pid} (node {i})"), e))?;
        self.killed[i] = true;
        Ok(())
    }

    /// CPU seconds (user + system) of every daemon's process tree, over
    /// the nodes not killed.
    pub fn cpu_seconds(&self) -> f64 {
        let procs = proc_table();
        let mut total_ticks = 0u64;
        for (i, &pid) in self.pids.iter().enumerate() {
            if pid == 0 || self.killed[i] {
                continue;
            }
            total_ticks += tree_ticks(&procs, pid);
        }
        total_ticks as f64 / crate::sys::clock_ticks() as f64
    }

    /// Resets the daemons' peak RSS (`echo 5 > /proc/PID/clear_refs`).
    pub fn reset_peak_rss(&self) {
        for (i, &pid) in self.pids.iter().enumerate() {
            if pid != 0 && !self.killed[i] {
                let _ = fs::write(format!("/proc/{pid}/clear_refs"), "5");
            }
        }
    }

    /// Largest `VmHWM` over the live daemons, in KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        let mut max = 0;
        for (i, &pid) in self.pids.iter().enumerate() {
            if pid == 0 || self.killed[i] {
                continue;
            }
            if let Ok(s) = fs::read_to_string(format!("/proc/{pid}/status")) {
                for line in s.lines() {
                    if let Some(v) = line.strip_prefix("VmHWM:") {
                        let kib = v
                            .trim()
                            .trim_end_matches("kB")
                            .trim()
                            .parse::<u64>()
                            .unwrap_or(0);
                        max = max.max(kib);
                    }
                }
            }
        }
        max
    }

    /// True if every daemon not killed is still running.
    pub fn all_alive(&self) -> bool {
        self.pids
            .iter()
            .enumerate()
            .all(|(i, &p)| self.killed[i] || (p != 0 && alive(p)))
    }

    /// `local-cluster stop`: every daemon and helper by pid.
    pub fn stop(&mut self) {
        if self.stopped {
            return;
        }
        self.stopped = true;
        let _ = run_script(
            &self.script,
            &self.dir,
            &self.net,
            &self.daemon,
            &["stop"],
            &[],
        );
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stop();
    }
}

fn run_script(
    script: &Path,
    dir: &Path,
    net: &str,
    daemon: &Path,
    args: &[&str],
    env: &[(String, String)],
) -> Result<String> {
    let mut cmd = Command::new("bash");
    cmd.arg(script)
        .args(args)
        .env("CTDB_LOCAL_DIR", dir)
        .env("CTDB_LOCAL_NET", net)
        .env("CTDBD", daemon)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd
        .output()
        .map_err(|e| PerfError::io(format!("run {}", script.display()), e))?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        return Err(PerfError::Cluster(format!(
            "{} {} failed ({}): {}",
            script.display(),
            args.join(" "),
            out.status,
            stderr.trim()
        )));
    }
    Ok(stdout)
}

fn alive(pid: u32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => match s.rfind(')') {
            Some(i) => !matches!(s[i + 1..].trim_start().chars().next(), Some('Z' | 'X')),
            None => false,
        },
        Err(_) => false,
    }
}

/// pid -> (ppid, utime + stime + cutime + cstime in ticks).
fn proc_table() -> HashMap<u32, (u32, u64)> {
    let mut m = HashMap::new();
    let Ok(rd) = fs::read_dir("/proc") else {
        return m;
    };
    for e in rd.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(s) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        if let Some(v) = parse_stat(&s) {
            m.insert(pid, v);
        }
    }
    m
}

/// (ppid, utime+stime+cutime+cstime) from a `/proc/PID/stat` line.
pub fn parse_stat(s: &str) -> Option<(u32, u64)> {
    let rest = &s[s.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // f[0] = state (field 3); ppid is field 4; utime..cstime are 14..17.
    let ppid = f.get(1)?.parse().ok()?;
    let mut t = 0u64;
    for i in 11..15 {
        t += f.get(i)?.parse::<u64>().ok()?;
    }
    Some((ppid, t))
}

/// Ticks of `root` and all its live descendants. Each process counts its
/// own time plus that of its reaped children, so every CPU tick is counted
/// exactly once.
fn tree_ticks(procs: &HashMap<u32, (u32, u64)>, root: u32) -> u64 {
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    for (&pid, &(ppid, _)) in procs {
        children.entry(ppid).or_default().push(pid);
    }
    let mut total = 0;
    let mut stack = vec![root];
    while let Some(p) = stack.pop() {
        if let Some(&(_, t)) = procs.get(&p) {
            total += t;
        }
        if let Some(c) = children.get(&p) {
            stack.extend(c);
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_line_with_spaces_in_comm() {
        let s = "1234 (ctdb (x) d) S 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17";
        // after ')': S=f0 1=f1(ppid) ... utime=f11
        assert_eq!(parse_stat(s), Some((1, 11 + 12 + 13 + 14)));
        assert_eq!(parse_stat("garbage"), None);
    }
}
