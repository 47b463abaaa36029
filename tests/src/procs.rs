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

/// Every live process whose environment has `CTDB_BASE` inside `dir`.
pub fn processes_under(dir: &Path) -> Vec<u32> {
    let prefix = format!("CTDB_BASE={}", dir.display());
    let me = std::process::id();
    let mut found = Vec::new();
    let Ok(entries) = fs::read_dir("/proc") else {
        return found;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == me {
            continue;
        }
        let Ok(env) = fs::read(format!("/proc/{pid}/environ")) else {
            continue;
        };
        let hit = env.split(|&c| c == 0).any(|var| {
            var.starts_with(prefix.as_bytes()) && matches!(var.get(prefix.len()), None | Some(b'/'))
        });
        if hit && is_alive(pid) {
            found.push(pid);
        }
    }
    found.sort_unstable();
    found
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
