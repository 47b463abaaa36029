//! Shared helpers for the event tests: temporary CTDB_BASE trees, starting
//! an event daemon (ours or Debian's) on it, running Debian's ctdb-event
//! tool, and normalising times in its output.
#![allow(dead_code)]

use std::io::Read;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const DEBIAN_EVENTD: &str = "/usr/libexec/ctdb/ctdb-eventd";
pub const DEBIAN_TOOL: &str = "/usr/libexec/ctdb/ctdb-event";

pub fn ours() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_ctdb-eventd"))
}

/// A temporary CTDB_BASE, removed on drop; processes whose pids scripts
/// recorded in `pids` are killed (by process group) first.
pub struct Base {
    pub dir: PathBuf,
}

impl Base {
    pub fn new(tag: &str) -> Base {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let dir = std::env::temp_dir().join(format!(
            "ctdb-event-{}-{}-{}",
            tag,
            std::process::id(),
            nanos
        ));
        std::fs::create_dir_all(dir.join("run")).unwrap();
        std::fs::create_dir_all(dir.join("events")).unwrap();
        Base { dir }
    }

    pub fn write(&self, rel: &str, text: &str, exec: bool) {
        let p = self.dir.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, text).unwrap();
        let mode = if exec { 0o755 } else { 0o644 };
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    pub fn link(&self, target: &Path, rel: &str) {
        let p = self.dir.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        symlink(target, p).unwrap();
    }

    pub fn mkdir(&self, rel: &str) {
        std::fs::create_dir_all(self.dir.join(rel)).unwrap();
    }

    /// Environment for daemons, tools and scripts: test mode under this
    /// base, scripts' state under it too.
    pub fn env(&self, cmd: &mut Command) {
        cmd.env("CTDB_TEST_MODE", "1")
            .env("CTDB_BASE", &self.dir)
            .env("CTDB_SCRIPT_VARDIR", self.dir.join("var/scripts"))
            .env_remove("CTDB_SOCKET")
            .env_remove("CTDB_EVENT_RUN_ALL");
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.join("run/eventd.socket")
    }

    /// Runs Debian's ctdb-event with `args`; returns a transcript entry
    /// `$ args\n<stdout><stderr>rc=N\n` with times and the base path
    /// normalised.
    pub fn tool(&self, args: &[&str], extra_env: &[(&str, &str)]) -> String {
        let mut cmd = Command::new(DEBIAN_TOOL);
        cmd.args(args).stdin(Stdio::null());
        self.env(&mut cmd);
        for (k, v) in extra_env {
            cmd.env(k, v);
        }
        let out = run_bounded(cmd, Duration::from_secs(30));
        format!("$ {}\n{}", args.join(" "), self.normalise(&out))
    }

    /// Runs Debian's `ctdb` CLI (its `event` and `scriptstatus` commands
    /// run ctdb-event and need no ctdbd).
    pub fn ctdb(&self, args: &[&str]) -> String {
        let mut cmd = Command::new("/usr/bin/ctdb");
        cmd.args(args).stdin(Stdio::null());
        self.env(&mut cmd);
        let out = run_bounded(cmd, Duration::from_secs(30));
        format!("$ ctdb {}\n{}", args.join(" "), self.normalise(&out))
    }

    pub fn normalise(&self, s: &str) -> String {
        normalise(&s.replace(self.dir.to_str().unwrap(), "BASE"))
    }

    /// Kills every process group recorded in `pids`.
    pub fn kill_recorded(&self) {
        if let Ok(s) = std::fs::read_to_string(self.dir.join("pids")) {
            for pid in s.split_whitespace() {
                let _ = Command::new("kill")
                    .args(["-s", "KILL", "--", &format!("-{pid}")])
                    .stderr(Stdio::null())
                    .status();
            }
        }
    }
}

impl Drop for Base {
    fn drop(&mut self) {
        self.kill_recorded();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Runs `cmd` to completion (killed after `limit`), returning stdout then
/// stderr then `rc=N`.
pub fn run_bounded(mut cmd: Command, limit: Duration) -> String {
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn tool");
    finish(&mut child, limit)
}

/// Collects a started child's output (stdout and stderr piped).
pub fn finish(child: &mut Child, limit: Duration) -> String {
    let mut so = child.stdout.take().unwrap();
    let mut se = child.stderr.take().unwrap();
    let t1 = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = so.read_to_string(&mut s);
        s
    });
    let t2 = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = se.read_to_string(&mut s);
        s
    });
    let start = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            break child.wait().unwrap();
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let out = t1.join().unwrap();
    let err = t2.join().unwrap();
    let rc = status
        .code()
        .map(|c| c.to_string())
        .unwrap_or_else(|| "signal".into());
    format!("{out}{err}rc={rc}\n")
}

/// A running event daemon, killed (by pid) and waited for on drop.
pub struct Daemon {
    pub child: Child,
    pub log: PathBuf,
}

impl Daemon {
    pub fn start(base: &Base, exe: &Path) -> Daemon {
        let log = base.dir.join(format!(
            "eventd-{}.log",
            exe.file_name().unwrap().to_string_lossy()
        ));
        let f = std::fs::File::create(&log).unwrap();
        let mut cmd = Command::new(exe);
        base.env(&mut cmd);
        cmd.env("CTDB_INTERACTIVE", "1")
            .stdin(Stdio::null())
            .stdout(f.try_clone().unwrap())
            .stderr(f);
        let child = cmd.spawn().expect("start event daemon");
        let d = Daemon { child, log };
        let start = Instant::now();
        while !base.socket().exists() {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "{} did not create its socket",
                exe.display()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        d
    }

    /// SIGTERM via kill(1), then wait (bounded), then SIGKILL.
    pub fn stop(&mut self) -> Option<i32> {
        let _ = Command::new("kill")
            .args(["-s", "TERM", &self.child.id().to_string()])
            .status();
        let start = Instant::now();
        loop {
            if let Ok(Some(st)) = self.child.try_wait() {
                return st.code();
            }
            if start.elapsed() > Duration::from_secs(5) {
                let _ = self.child.kill();
                let _ = self.child.wait();
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn is_duration(w: &str) -> bool {
    let Some((a, b)) = w.split_once('.') else {
        return false;
    };
    !a.is_empty()
        && a.bytes().all(|c| c.is_ascii_digit())
        && b.len() == 3
        && b.bytes().all(|c| c.is_ascii_digit())
}

/// Replaces `N.NNN` durations with DURATION and trailing ctime dates with
/// DATETIME, as upstream's own unit tests do.
pub fn normalise(s: &str) -> String {
    const DAYS: [&str; 7] = ["Mon ", "Tue ", "Wed ", "Thu ", "Fri ", "Sat ", "Sun "];
    let mut out = String::new();
    for line in s.split_inclusive('\n') {
        let (body, nl) = match line.strip_suffix('\n') {
            Some(b) => (b, "\n"),
            None => (line, ""),
        };
        let mut body = body.to_string();
        // ctime: "Www Mmm dd hh:mm:ss yyyy" at the end of the line.
        if body.len() >= 24 {
            let tail = &body[body.len() - 24..];
            if DAYS.iter().any(|d| tail.starts_with(d)) && tail.as_bytes()[13] == b':' {
                let keep = body.len() - 24;
                body.truncate(keep);
                body.push_str("DATETIME");
            }
        }
        let words: Vec<String> = body
            .split(' ')
            .map(|w| {
                if is_duration(w) {
                    "DURATION".to_string()
                } else {
                    w.to_string()
                }
            })
            .collect();
        out.push_str(&words.join(" "));
        out.push_str(nl);
    }
    out
}

/// Waits until `path` contains `needle` (bounded); returns its text.
pub fn wait_for_file(path: &Path, needle: &str, limit: Duration) -> Option<String> {
    let start = Instant::now();
    loop {
        if let Ok(s) = std::fs::read_to_string(path) {
            if s.contains(needle) {
                return Some(s);
            }
        }
        if start.elapsed() > limit {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Replaces every run of digits with N.
pub fn digits_to_n(s: &str) -> String {
    let mut out = String::new();
    let mut in_num = false;
    for c in s.chars() {
        if c.is_ascii_digit() {
            if !in_num {
                out.push('N');
            }
            in_num = true;
        } else {
            in_num = false;
            out.push(c);
        }
    }
    out
}
