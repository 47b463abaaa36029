//! How ctdbd gets its events run: by starting an event daemon (ours or
//! Debian's) as upstream does, or in-process, behind one interface.
//!
//! Starting follows upstream `ctdb_start_eventd`: remove a stale socket,
//! make a pipe, run `<eventd> -P <ctdbd pid> -S <fd>`, wait (10 s at most)
//! for the four zero bytes that say it listens, then connect. The pipe's
//! read end stays with ctdbd: end of file on it means eventd died
//! ([`EventdProcess::has_exited`]). The binary is `$CTDB_EVENTD` if set,
//! else `helper_bindir/ctdb-eventd`.
//!
//! The write end must reach eventd as an inheritable descriptor other than
//! 0-2 (Debian's eventd points its stdout at /dev/null). Without unsafe
//! code we cannot clear close-on-exec ourselves, so `/bin/sh` does it:
//! `exec <eventd> -P <pid> -S 3 3>&1 >/dev/null` with the pipe as its
//! stdout.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use super::client::EventClient;
use super::runner::{CtdbEvent, EventRunner};
use crate::DaemonError;

/// How long ctdbd waits for eventd to report that it listens.
pub const STARTUP_TIMEOUT: Duration = Duration::from_secs(10);

/// The eventd binary ctdbd would start.
pub fn eventd_path(paths: &ctdb_config::Paths) -> PathBuf {
    match std::env::var_os("CTDB_EVENTD") {
        Some(p) => PathBuf::from(p),
        None => paths.helper_bindir.join("ctdb-eventd"),
    }
}

/// A started event daemon.
pub struct EventdProcess {
    child: Child,
    socket: PathBuf,
    dead: mpsc::Receiver<()>,
}

impl EventdProcess {
    /// Starts `exe` watching `parent_pid`, waits until it listens on
    /// `socket`. The child inherits this process's environment plus
    /// `envs` (CTDB_BASE/CTDB_TEST_MODE decide where its socket is;
    /// `socket` must agree).
    pub fn start(
        exe: &Path,
        parent_pid: u32,
        socket: &Path,
        envs: &[(&str, &std::ffi::OsStr)],
    ) -> Result<EventdProcess, DaemonError> {
        match std::fs::remove_file(socket) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(DaemonError::path("remove stale socket", socket, e)),
        }
        let (mut r, w) =
            std::io::pipe().map_err(|e| DaemonError::path("create pipe for", exe, e))?;
        tracing::info!(
            "Starting event daemon {} -P {} -S 3",
            exe.display(),
            parent_pid
        );
        let mut cmd = Command::new("/bin/sh");
        cmd.arg("-c")
            .arg("exec \"$0\" -P \"$1\" -S 3 3>&1 >/dev/null")
            .arg(exe)
            .arg(parent_pid.to_string())
            .envs(envs.iter().copied())
            .stdin(Stdio::null())
            .stdout(w);
        crate::sys::unblock_signals_in_child(&mut cmd);
        let child = cmd
            .spawn()
            .map_err(|e| DaemonError::path("start", exe, e))?;
        let mut proc = EventdProcess {
            child,
            socket: socket.to_path_buf(),
            dead: mpsc::channel().1,
        };
        let (tx, rx) = mpsc::channel::<Result<[u8; 4], String>>();
        let (dead_tx, dead_rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut b = [0u8; 4];
            let first = match r.read_exact(&mut b) {
                Ok(()) => Ok(b),
                Err(e) => Err(e.to_string()),
            };
            let ok = first.is_ok();
            let _ = tx.send(first);
            if ok {
                // Then wait for end of file: eventd has gone.
                let mut sink = [0u8; 64];
                while matches!(r.read(&mut sink), Ok(n) if n > 0) {}
            }
            let _ = dead_tx.send(());
        });
        proc.dead = dead_rx;
        let why = match rx.recv_timeout(STARTUP_TIMEOUT) {
            Ok(Ok([0, 0, 0, 0])) => return Ok(proc),
            Ok(Ok(other)) => format!("startup status {:?}", u32::from_ne_bytes(other)),
            Ok(Err(e)) => format!("startup pipe: {e}"),
            Err(_) => "no startup status within 10 seconds".to_string(),
        };
        let _ = proc.child.kill();
        let _ = proc.child.wait();
        Err(DaemonError::BadOption {
            option: "event daemon",
            why: format!("Failed to initialize event daemon {}: {why}", exe.display()),
        })
    }

    /// The daemon's pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The socket it listens on.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// A new connection to it.
    pub fn connect(&self) -> Result<EventClient, DaemonError> {
        EventClient::connect(&self.socket)
    }

    /// True once the daemon closed the startup pipe (it exited).
    pub fn has_exited(&self) -> bool {
        self.dead.try_recv().is_ok()
    }

    /// SIGTERM, wait up to 5 seconds, then SIGKILL; returns the exit code.
    pub fn stop(mut self) -> Option<i32> {
        super::runner::kill_pid(self.child.id(), libc::SIGTERM);
        let start = std::time::Instant::now();
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

impl Drop for EventdProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Where ctdbd's events run.
#[derive(Clone)]
pub enum EventBackend {
    /// Scripts run by this process.
    InProcess(Arc<EventRunner>),
    /// Requests sent to an event daemon's socket (one connection per
    /// request, so requests may overlap as upstream's do).
    Daemon(PathBuf),
}

/// Why ctdbd's event did not run.
#[derive(Debug)]
pub enum RunRefused {
    /// Wrong number of arguments for the event ("Bad event script
    /// arguments").
    BadArguments,
    /// Talking to the daemon failed.
    Transport(DaemonError),
}

impl EventBackend {
    /// Runs a ctdbd event in the `legacy` component, as ctdbd does:
    /// arguments checked, timeout `EventScriptTimeout` seconds; returns
    /// the RUN reply code (0, ETIMEDOUT, ENOEXEC, ECANCELED, ENOENT ...),
    /// with ETIMEDOUT turned into 0 for events whose hung scripts ctdbd
    /// ignores (startrecovery, recovered, takeip, releaseip).
    pub fn run(
        &self,
        event: CtdbEvent,
        args: Option<&str>,
        timeout_secs: u32,
    ) -> Result<i32, RunRefused> {
        if !event.check_args(args) {
            tracing::error!(
                "Bad event script arguments '{}' for '{}'",
                args.unwrap_or("(null)"),
                event.name()
            );
            return Err(RunRefused::BadArguments);
        }
        let code = match self {
            EventBackend::InProcess(r) => match r.run(
                "legacy",
                event.name(),
                args,
                Duration::from_secs(u64::from(timeout_secs)),
                false,
            ) {
                Ok(res) => res.reply_code(),
                Err(e) => e,
            },
            EventBackend::Daemon(sock) => {
                let mut c = EventClient::connect(sock).map_err(RunRefused::Transport)?;
                c.run("legacy", event.name(), args, timeout_secs, false)
                    .map_err(RunRefused::Transport)?
            }
        };
        if code == libc::ETIMEDOUT && event.timeout_ignored() {
            tracing::error!("Ignoring hung script for {} event", event.name());
            return Ok(0);
        }
        Ok(code)
    }
}
