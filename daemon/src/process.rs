//! Becoming a daemon, the PID file, and signals.
//!
//! * Daemonising (unless `-i`): fork, `setsid`, fork again, stdio to
//!   /dev/null (stdin kept in test mode, as upstream). The original process
//!   waits on a pipe until the daemon reports that it is listening, so a
//!   start-up failure shows in `ctdbd`'s exit status and on the terminal.
//! * PID file (`<rundir>/ctdbd.pid`): created and fcntl-locked for the
//!   daemon's lifetime; a held lock means another ctdbd runs, and start-up
//!   stops (exit code 11, as upstream). Removed on clean shutdown.
//! * Signals: SIGTERM and SIGINT ask the runtime to stop, SIGHUP is logged
//!   (log reopening comes with the configuration work). They are blocked in
//!   every thread and taken by one signal thread with `sigwait`, so no
//!   reactor core is ever interrupted by a handler.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream as StdUnixStream;
use std::path::{Path, PathBuf};

use crate::error::DaemonError;
use crate::runtime::Ringer;
use crate::sys::{self, Forked};

/// The daemon's end of the start-up pipe.
pub struct ReadyPipe(Option<StdUnixStream>);

impl ReadyPipe {
    pub fn none() -> ReadyPipe {
        ReadyPipe(None)
    }

    /// Tells the waiting parent we are up.
    pub fn ready(&mut self) {
        if let Some(mut s) = self.0.take() {
            let _ = s.write_all(b"OK");
        }
    }

    /// Tells the waiting parent why we are not.
    pub fn failed(&mut self, why: &str) {
        if let Some(mut s) = self.0.take() {
            let _ = s.write_all(why.as_bytes());
        }
    }
}

/// Forks into the background. Returns in the daemon process only; the
/// original process exits with the daemon's start-up verdict.
pub fn daemonize(keep_stdin: bool) -> Result<ReadyPipe, DaemonError> {
    let (mut parent_end, child_end) =
        StdUnixStream::pair().map_err(|e| DaemonError::sys("socketpair", e))?;
    match sys::fork().map_err(|e| DaemonError::sys("fork", e))? {
        Forked::Parent(_) => {
            drop(child_end);
            let mut verdict = String::new();
            let _ = parent_end.read_to_string(&mut verdict);
            if verdict == "OK" {
                std::process::exit(0);
            }
            if verdict.is_empty() {
                verdict = "daemon exited during start-up (see its log)".into();
            }
            eprintln!("ctdbd: {verdict}");
            std::process::exit(1);
        }
        Forked::Child => {}
    }
    drop(parent_end);
    sys::setsid().map_err(|e| DaemonError::sys("setsid", e))?;
    match sys::fork().map_err(|e| DaemonError::sys("fork", e))? {
        Forked::Parent(_) => std::process::exit(0),
        Forked::Child => {}
    }
    sys::detach_stdio(keep_stdin).map_err(|e| DaemonError::sys("redirect stdio", e))?;
    Ok(ReadyPipe(Some(child_end)))
}

/// A locked PID file, removed on drop.
pub struct PidFile {
    path: PathBuf,
    _file: File,
}

impl PidFile {
    pub fn create(path: &Path) -> Result<PidFile, DaemonError> {
        if let Some(dir) = path.parent() {
            if !dir.as_os_str().is_empty() {
                std::fs::create_dir_all(dir)
                    .map_err(|e| DaemonError::path("create PID file directory", dir, e))?;
            }
        }
        let mut f = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(|e| DaemonError::path("open PID file", path, e))?;
        match sys::lock_file(&f) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                return Err(DaemonError::AlreadyRunning {
                    what: "holding PID file",
                    path: path.to_path_buf(),
                })
            }
            Err(e) => return Err(DaemonError::path("lock PID file", path, e)),
        }
        f.set_len(0)
            .and_then(|_| f.write_all(format!("{}\n", std::process::id()).as_bytes()))
            .map_err(|e| DaemonError::path("write PID file", path, e))?;
        tracing::info!("Created PID file {}", path.display());
        Ok(PidFile {
            path: path.to_path_buf(),
            _file: f,
        })
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

const SIGNALS: [i32; 3] = [libc::SIGTERM, libc::SIGINT, libc::SIGHUP];

/// Blocks the daemon's signals in this thread and all threads created
/// after; call before starting any thread.
pub fn block_signals() -> Result<(), DaemonError> {
    sys::block_signals(&SIGNALS).map_err(|e| DaemonError::sys("pthread_sigmask", e))
}

/// Starts the signal thread: SIGTERM/SIGINT ring `stop`.
pub fn spawn_signal_thread(stop: Ringer) -> Result<(), DaemonError> {
    std::thread::Builder::new()
        .name("ctdb-signals".into())
        .spawn(move || loop {
            match sys::wait_signal(&SIGNALS) {
                Ok(libc::SIGHUP) => tracing::info!("Received SIGHUP"),
                Ok(sig) => {
                    tracing::info!(
                        "Received {}, shutting down",
                        if sig == libc::SIGTERM {
                            "SIGTERM"
                        } else {
                            "SIGINT"
                        }
                    );
                    stop.ring();
                    return;
                }
                Err(e) => {
                    tracing::error!("sigwait failed: {e}");
                    return;
                }
            }
        })
        .map(|_| ())
        .map_err(|e| DaemonError::sys("spawn signal thread", e))
}
