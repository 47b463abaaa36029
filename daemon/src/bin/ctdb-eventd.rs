//! ctdb-eventd: the CTDB event daemon, a drop-in for upstream 4.17's.
//!
//! ctdbd starts it as `ctdb-eventd -P <ctdbd pid> -S <fd>`; it listens on
//! `rundir/eventd.socket` (`$CTDB_BASE/run/eventd.socket` in test mode),
//! writes four zero bytes to the startup fd once listening, and exits when
//! the watched pid goes away (checked every 5 seconds) or on SIGTERM or
//! SIGINT, removing its socket and pid file. SIGUSR1 re-reads ctdb.conf. Configuration: `[event] debug
//! script` and `[logging]` from ctdb.conf; set CTDB_INTERACTIVE to log to
//! standard error.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use ctdb_config::{Config, LoadOptions, LogLocation, Paths};
use ctdb_daemon::error::DaemonError;
use ctdb_daemon::event::server::Server;
use ctdb_daemon::event::EventRunner;
use ctdb_daemon::logging::{self, DebugLevel, LogTarget};

#[derive(Parser, Debug)]
#[command(name = "ctdb-eventd", about = "CTDB event daemon")]
struct Args {
    /// pid to wait for
    #[arg(short = 'P', long = "pid", value_name = "PID", default_value_t = -1, allow_hyphen_values = true)]
    pid: i32,
    /// file descriptor to notify of successful start
    #[arg(short = 'S', long = "startup-fd", value_name = "FD", default_value_t = -1, allow_hyphen_values = true)]
    startup_fd: i32,
}

fn cleanup(socket: &Path, pidfile: &Path) {
    let _ = std::fs::remove_file(socket);
    let _ = std::fs::remove_file(pidfile);
}

fn notify_startup(fd: i32) -> Result<(), DaemonError> {
    // Write through /proc so no unsafe fd handling is needed here.
    let path = PathBuf::from(format!("/proc/self/fd/{fd}"));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .map_err(|e| DaemonError::path("open startup fd", &path, e))?;
    f.write_all(&0u32.to_ne_bytes())
        .map_err(|e| DaemonError::path("write startup fd", &path, e))
}

/// SIGUSR1: re-read ctdb.conf; only the debug script can change.
fn reload(runner: &EventRunner, etcdir: &Path) {
    match Config::load_with(etcdir, LoadOptions::ctdbd()) {
        Ok(c) => {
            runner.set_debug_script(c.event_debug_script().map(|s| etcdir.join(s)));
            tracing::info!("reconfigure completed successfully");
        }
        Err(e) => tracing::warn!("Configuration reload failed: {}", e),
    }
}

fn run(args: Args) -> Result<u8, DaemonError> {
    let paths = Paths::from_env().map_err(|e| DaemonError::BadOption {
        option: "environment",
        why: e.to_string(),
    })?;
    let config = Config::load_with(&paths.etcdir, LoadOptions::ctdbd()).map_err(|e| {
        DaemonError::BadOption {
            option: "configuration",
            why: e.to_string(),
        }
    })?;

    let interactive = std::env::var_os("CTDB_INTERACTIVE").is_some();
    let target = if interactive {
        LogTarget::Stderr
    } else {
        match config.log_location() {
            LogLocation::Stderr => LogTarget::Stderr,
            LogLocation::File(p) => LogTarget::File(p),
            LogLocation::Syslog(_) => LogTarget::Syslog,
        }
    };
    let _ = logging::init(&target, DebugLevel::Notice);

    let socket = paths.rundir.join("eventd.socket");
    let pidfile = paths.rundir.join("eventd.pid");

    // Signals are taken by a dedicated thread; block them before any
    // thread starts (children get a clean mask from std's spawn).
    let signals = [libc::SIGTERM, libc::SIGINT, libc::SIGHUP, libc::SIGUSR1];
    ctdb_daemon::sys::block_signals(&signals)
        .map_err(|e| DaemonError::path("block signals in", "ctdb-eventd", e))?;

    let runner = Arc::new(EventRunner::from_config(&paths, &config));
    let server = Server::bind(&socket, runner.clone())?;
    std::fs::write(&pidfile, format!("{}\n", std::process::id()))
        .map_err(|e| DaemonError::path("write pid file", &pidfile, e))?;
    tracing::info!("daemon started, pid={}", std::process::id());

    if args.startup_fd >= 0 {
        if let Err(e) = notify_startup(args.startup_fd) {
            tracing::warn!("Failed to write zero to pipe FD: {}", e);
        }
    }
    tracing::info!("startup completed successfully");

    let (done_tx, done_rx) = std::sync::mpsc::channel::<u8>();
    {
        let tx = done_tx.clone();
        let etcdir = paths.etcdir.clone();
        std::thread::spawn(move || loop {
            match ctdb_daemon::sys::wait_signal(&signals) {
                Ok(sig) => {
                    tracing::info!("Received signal {}", sig);
                    if sig == libc::SIGTERM || sig == libc::SIGINT {
                        let _ = tx.send(0);
                        return;
                    }
                    if sig == libc::SIGUSR1 {
                        reload(&runner, &etcdir);
                    }
                }
                Err(_) => {
                    let _ = tx.send(1);
                    return;
                }
            }
        });
    }
    if args.pid > 1 {
        let tx = done_tx.clone();
        let pid = args.pid;
        std::thread::spawn(move || {
            let mut wait = Duration::from_secs(1);
            loop {
                std::thread::sleep(wait);
                wait = Duration::from_secs(5);
                if !Path::new(&format!("/proc/{pid}")).exists() {
                    tracing::error!("PID {} gone away, exiting", pid);
                    let _ = tx.send(libc::ESRCH as u8);
                    return;
                }
            }
        });
    }
    {
        let tx = done_tx;
        let handle = server.spawn();
        std::thread::spawn(move || {
            let r = handle.join();
            tracing::error!("socket closed unexpectedly: {:?}", r.ok());
            let _ = tx.send(1);
        });
    }
    let code = done_rx.recv().unwrap_or(1);
    tracing::info!("Shutting down");
    cleanup(&socket, &pidfile);
    Ok(code)
}

fn main() -> ExitCode {
    let args = match Args::try_parse() {
        Ok(a) => a,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(1);
        }
    };
    match run(args) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("ctdb-eventd: {e}");
            ExitCode::from(1)
        }
    }
}
