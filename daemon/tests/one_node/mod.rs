//! One node of our `ctdbd`, started with `-i` in a temporary `$CTDB_BASE`
//! in test mode and driven with Debian's stock `/usr/bin/ctdb`; shared by
//! the end-to-end tests so each does not carry its own copy. The daemon is
//! stopped by its PID (SIGTERM, then SIGKILL after 10 s) on `stop` or drop.

#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const CTDBD: &str = env!("CARGO_BIN_EXE_ctdbd");
pub const CTDB: &str = "/usr/bin/ctdb";

pub struct Node {
    pub base: PathBuf,
    pub sock: PathBuf,
    child: Option<Child>,
}

impl Node {
    /// Starts ctdbd under `$TMP/<dir>-<pid>` on address `127.a.b.<host>`
    /// (a and b from the test process id, so parallel test binaries differ)
    /// with `extra` command-line arguments, and waits until it is RUNNING.
    pub fn start(dir: &str, host: u32, extra: &[&str]) -> Node {
        let base = std::env::temp_dir().join(format!("{dir}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        for sub in [
            "volatile",
            "persistent",
            "state",
            "run",
            "var",
            "events/legacy",
        ] {
            std::fs::create_dir_all(base.join(sub)).unwrap();
        }
        let addr = format!(
            "127.{}.{}.{host}",
            100 + std::process::id() % 100,
            std::process::id() / 100 % 250 + 1,
        );
        std::fs::write(base.join("nodes"), format!("{addr}\n")).unwrap();
        let conf = format!(
            "[logging]\n\tlocation = file:{0}/log.ctdb\n\tlog level = INFO\n\
             [cluster]\n\tnode address = {addr}\n\
             [database]\n\tvolatile database directory = {0}/volatile\n\
             \tpersistent database directory = {0}/persistent\n\
             \tstate database directory = {0}/state\n\
             [legacy]\n\trealtime scheduling = false\n",
            base.display()
        );
        std::fs::write(base.join("ctdb.conf"), conf).unwrap();
        let sock = base.join("run/ctdbd.socket");
        let child = Command::new(CTDBD)
            .args(["-i", "--nosetsched"])
            .args(extra)
            .env("CTDB_TEST_MODE", "1")
            .env("CTDB_BASE", &base)
            .env("CTDB_SOCKET", &sock)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(base.join("ctdbd.stderr")).expect("stderr file"))
            .spawn()
            .expect("start ctdbd");
        let mut n = Node {
            base,
            sock,
            child: Some(child),
        };
        let end = Instant::now() + Duration::from_secs(30);
        loop {
            assert!(
                matches!(n.child.as_mut().unwrap().try_wait(), Ok(None)),
                "ctdbd exited: {}",
                n.log()
            );
            let (ok, out) = n.ctdb(&["runstate"]);
            if ok && out.contains("RUNNING") {
                break;
            }
            assert!(
                Instant::now() < end,
                "ctdbd not RUNNING: {out}\n{}",
                n.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        n
    }

    /// The daemon's log file followed by what it wrote to stderr (with `-i`
    /// some lines go there).
    pub fn log(&self) -> String {
        let read = |f: &str| std::fs::read_to_string(self.base.join(f)).unwrap_or_default();
        format!("{}{}", read("log.ctdb"), read("ctdbd.stderr"))
    }

    /// Runs `ctdb ARGS` against this node, bounded to 30 s: (success, stdout+stderr).
    pub fn ctdb(&self, args: &[&str]) -> (bool, String) {
        let mut child = Command::new(CTDB)
            .args(args)
            .env("CTDB_SOCKET", &self.sock)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run ctdb");
        let start = Instant::now();
        let end = start + Duration::from_secs(30);
        while child.try_wait().unwrap().is_none() {
            if Instant::now() > end {
                let _ = child.kill();
                let _ = child.wait();
                return (false, format!("ctdb {args:?} timed out"));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let o = child.wait_with_output().unwrap();
        eprintln!("ctdb {args:?}: {:?}", start.elapsed());
        (
            o.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            ),
        )
    }

    /// `ctdb ARGS`, which must succeed; its output.
    pub fn ok(&self, args: &[&str]) -> String {
        let (ok, out) = self.ctdb(args);
        assert!(ok, "ctdb {args:?}: {out}\nlog:\n{}", self.log());
        out
    }

    /// Stops the daemon (SIGTERM to its PID, then SIGKILL after 10 s);
    /// whether it ended on SIGTERM.
    pub fn stop(&mut self) -> bool {
        let Some(mut c) = self.child.take() else {
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
}

impl Drop for Node {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.base);
    }
}
