//! Becoming a daemon, the PID file, and signals.
//!
//! * Daemonising (unless `-i`): fork, `setsid`, fork again, stdio to
//!   /dev/null (stdin kept in test mode, as upstream). The original process
//!   waits on a pipe until the daemon reports that it is listening, so a
//!   start-up failure shows in `ctdbd`'s exit status and on the terminal.
//! * PID file (`<rundir>/ctdbd.pid`): created and fcntl-locked for the
//!   daemon's lifetime; a held lock means another ctdbd runs, and start-up
//!   stops (exit code 11, as upstream). Removed on clean shutdown.
//! * Signals: SIGTERM and SIGINT ask the runtime to stop, SIGHUP reopens
//!   the log file (logrotate). They are blocked in every thread and taken by
//!   one signal thread with `sigwait`, so no reactor core is ever
//!   interrupted by a handler.
//! * In test mode, when stdin is a pipe, the daemon exits (code EPIPE, 32)
//!   once the pipe closes, as upstream does, so a test harness that dies
//!   takes its daemons with it.

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
                Ok(libc::SIGHUP) => {
                    crate::logging::reopen();
                    tracing::info!("Received SIGHUP, reopening logs");
                }
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

/// Exit code when stdin closed in test mode (upstream: EPIPE).
pub const EXIT_STDIN_CLOSED: i32 = libc::EPIPE;

/// In test mode with stdin a pipe: watch it from a helper thread and ring
/// `stop` when it closes. Returns whether the watch was set up.
pub fn watch_stdin(stop: Ringer, closed: std::sync::Arc<std::sync::atomic::AtomicBool>) -> bool {
    use std::os::unix::fs::FileTypeExt;
    let is_pipe = std::fs::metadata("/proc/self/fd/0")
        .map(|m| m.file_type().is_fifo())
        .unwrap_or(false);
    if !is_pipe {
        tracing::debug!("stdin is not a pipe, not watching it");
        return false;
    }
    let spawned = std::thread::Builder::new()
        .name("ctdb-stdin".into())
        .spawn(move || {
            let mut b = [0u8; 1];
            loop {
                match io::stdin().read(&mut b) {
                    Ok(1) => continue,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    _ => break,
                }
            }
            tracing::error!("stdin closed, exiting");
            closed.store(true, std::sync::atomic::Ordering::SeqCst);
            stop.ring();
        });
    spawned.is_ok()
}
