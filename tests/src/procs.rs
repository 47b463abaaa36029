//! Looking at processes through /proc: is a pid still running, and which
//! processes belong to a cluster directory.
//!
//! ctdbd forks helpers (recovery daemon, event daemon, lock helpers) that
//! are not our children; they inherit `CTDB_BASE`, so scanning every
//! process's environment for the cluster directory finds all of them, which
//! is how `stop` makes sure nothing is left behind.

use std::fs;
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use crate::sys;

/// True if `pid` exists and is not a zombie.
pub fn is_alive(pid: u32) -> bool {
    let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // Field 3 follows the command name, which is in parentheses and may
    // itself contain spaces or parentheses: look after the last ')'.
    match stat.rfind(')') {
        Some(i) => !matches!(stat[i + 1..].trim_start().chars().next(), Some('Z' | 'X')),
        None => false,
    }
}

/// The command line of `pid`, arguments joined by spaces (empty if gone).
pub fn cmdline(pid: u32) -> String {
    fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| {
            b.split(|&c| c == 0)
                .filter(|s| !s.is_empty())
                .map(|s| String::from_utf8_lossy(s).into_owned())
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default()
}

/// Every process id in /proc (whatever state the process is in).
pub fn pids() -> Vec<u32> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()))
        .collect()
}

/// Every live process but this one with an environment variable (`NAME=value`
/// bytes) for which `matches` holds, sorted.
pub fn processes_with_env(matches: impl Fn(&[u8]) -> bool) -> Vec<u32> {
    let me = std::process::id();
    let mut found: Vec<u32> = pids()
        .into_iter()
        .filter(|&pid| pid != me)
        .filter(|&pid| {
            fs::read(format!("/proc/{pid}/environ"))
                .is_ok_and(|env| env.split(|&c| c == 0).any(&matches))
        })
        .filter(|&pid| is_alive(pid))
        .collect();
    found.sort_unstable();
    found
}

/// Every live process whose environment has `CTDB_BASE` inside `dir`.
pub fn processes_under(dir: &Path) -> Vec<u32> {
    let prefix = format!("CTDB_BASE={}", dir.display());
    processes_with_env(|var| {
        var.starts_with(prefix.as_bytes()) && matches!(var.get(prefix.len()), None | Some(b'/'))
    })
}

/// Poll until none of `pids` is alive or `limit` has passed; returns the
/// ones still alive.
pub fn wait_gone(pids: &[u32], limit: Duration) -> Vec<u32> {
    let start = Instant::now();
    loop {
        let alive: Vec<u32> = pids.iter().copied().filter(|&p| is_alive(p)).collect();
        if alive.is_empty() || start.elapsed() >= limit {
            return alive;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// SIGTERM each of `pids`, give them `grace` to go, then SIGKILL the rest
/// and wait for them too. Returns the pids that survived SIGKILL (should
/// never happen).
pub fn terminate(pids: &[u32], grace: Duration) -> Vec<u32> {
    for &p in pids {
        sys::send_signal(p, sys::SIGTERM);
    }
    let left = wait_gone(pids, grace);
    for &p in &left {
        sys::send_signal(p, sys::SIGKILL);
    }
    wait_gone(&left, Duration::from_secs(5))
}

/// Clock ticks per second of the times in `/proc/PID/stat` (USER_HZ). It
/// is 100 on every Linux architecture this project builds for; reading it
/// with sysconf would need `unsafe` here for no gain.
const TICKS_PER_SEC: f64 = 100.0;

/// The parent of `pid` (field 4 of `/proc/PID/stat`).
pub fn parent(pid: u32) -> Option<u32> {
    stat_ppid_ticks(pid).map(|(ppid, _)| ppid)
}

/// Fields 4 (ppid), 14-17 (utime, stime, cutime, cstime) of one
/// `/proc/PID/stat`: the parent and the CPU ticks of the process and of
/// its reaped children.
fn stat_ppid_ticks(pid: u32) -> Option<(u32, u64)> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // After the command name (in parentheses, may hold anything): state is
    // field 3, so the fields after ')' start at 3.
    let rest = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ppid = f.get(1)?.parse().ok()?;
    let ticks = f
        .get(11..15)?
        .iter()
        .map(|v| v.parse::<u64>().ok())
        .sum::<Option<u64>>()?;
    Some((ppid, ticks))
}

/// CPU seconds (user + system) used so far by the children this process
/// has waited for (fields 16-17 of `/proc/self/stat`): the difference of
/// two readings around a `Command::output` is what that command spent.
pub fn reaped_children_cpu_seconds() -> f64 {
    let Ok(stat) = fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    let Some(i) = stat.rfind(')') else {
        return 0.0;
    };
    let f: Vec<&str> = stat[i + 1..].split_whitespace().collect();
    let ticks: u64 = f
        .get(13..15)
        .map_or(0, |v| v.iter().filter_map(|x| x.parse::<u64>().ok()).sum());
    ticks as f64 / TICKS_PER_SEC
}

/// CPU seconds (user + system) used so far by `root` and every live
/// process below it, including what their reaped children used. The
/// difference of two readings is what the tree spent in between (a
/// process that exits unreaped in between is lost, which the daemons'
/// helpers and smbd's connection processes do not do: their parents reap
/// them).
pub fn tree_cpu_seconds(root: u32) -> f64 {
    let procs: Vec<(u32, u32, u64)> = pids()
        .into_iter()
        .filter_map(|pid| stat_ppid_ticks(pid).map(|(ppid, ticks)| (pid, ppid, ticks)))
        .collect();
    let mut tree = vec![root];
    let mut total = 0u64;
    let mut i = 0;
    while i < tree.len() {
        let parent = tree[i];
        for &(pid, ppid, ticks) in &procs {
            if pid == parent {
                total += ticks;
            }
            if ppid == parent && !tree.contains(&pid) {
                tree.push(pid);
            }
        }
        i += 1;
    }
    total as f64 / TICKS_PER_SEC
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::{Command, Stdio};

    #[test]
    fn proc_readers_see_a_real_child() {
        let me = std::process::id();
        assert!(pids().contains(&me));
        assert_eq!(parent(me), Some(std::os::unix::process::parent_id()));
        let tag = format!("CTDB_TESTS_PROCS_TAG={me}");
        let (k, v) = tag.split_once('=').unwrap();
        // A child that burns CPU for a while, then sleeps.
        let mut child = Command::new("sh")
            .args([
                "-c",
                "i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done; sleep 30",
            ])
            .env(k, v)
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let pid = child.id();
        let found = wait_for_env(&tag, pid);
        let before = reaped_children_cpu_seconds();
        // Let it burn, then look at the tree rooted at this process.
        let start = Instant::now();
        while tree_cpu_seconds(pid) < 0.05 && start.elapsed() < Duration::from_secs(20) {
            thread::sleep(Duration::from_millis(20));
        }
        let tree = tree_cpu_seconds(me);
        let own = tree_cpu_seconds(pid);
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(found, "processes_with_env did not find child {pid}");
        assert!(own >= 0.05, "child used {own} s");
        assert!(tree >= own, "tree {tree} < child {own}");
        assert!(reaped_children_cpu_seconds() >= before + own - 0.02);
    }

    fn wait_for_env(tag: &str, pid: u32) -> bool {
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(5) {
            if processes_with_env(|var| var == tag.as_bytes()).contains(&pid) {
                return true;
            }
            thread::sleep(Duration::from_millis(10));
        }
        false
    }
}
