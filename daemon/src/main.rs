//! `ctdbd`: parse options, daemonise, start the cores, serve clients until
//! SIGTERM. See the crate documentation of `ctdb_daemon` for the layout.

use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use clap::Parser;
use ctdb_daemon::client::{self, DaemonState};
use ctdb_daemon::error::DaemonError;
use ctdb_daemon::logging;
use ctdb_daemon::options::{Options, Settings};
use ctdb_daemon::process::{self, PidFile, ReadyPipe};
use ctdb_daemon::runtime::{self, Runtime, RuntimeConfig};
use ctdb_daemon::sys;

/// Samba release whose behaviour we follow.
const SAMBA_VERSION: &str = "4.17.12";

fn main() {
    let options = Options::parse();
    let settings = match Settings::from_process(options).and_then(|s| {
        s.check_directories()?;
        Ok(s)
    }) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("ctdbd: {e}");
            std::process::exit(1);
        }
    };
    let mut ready = if settings.interactive {
        ReadyPipe::none()
    } else {
        match process::daemonize(settings.test_mode) {
            Ok(r) => r,
            Err(e) => {
                eprintln!("ctdbd: {e}");
                std::process::exit(1);
            }
        }
    };
    if let Err(e) = logging::init(&settings.log_target, settings.log_level) {
        let msg = e.to_string();
        ready.failed(&msg);
        eprintln!("ctdbd: {msg}");
        std::process::exit(1);
    }
    for w in settings.config.warnings() {
        tracing::warn!("{w}");
    }
    let code = match run(&settings, &mut ready) {
        Ok(()) => 0,
        Err((code, e)) => {
            tracing::error!("{e}");
            ready.failed(&e.to_string());
            code
        }
    };
    if code == 0 {
        tracing::info!("CTDB daemon shutting down");
    }
    std::process::exit(code);
}

fn run(settings: &Settings, ready: &mut ReadyPipe) -> Result<(), (i32, DaemonError)> {
    tracing::info!("CTDB starting on node");
    // Before any thread exists, so every thread inherits the mask.
    process::block_signals().map_err(|e| (1, e))?;
    tracing::error!(
        "Starting CTDBD (Version {SAMBA_VERSION}) as PID: {}",
        std::process::id()
    );
    let _pidfile = PidFile::create(&settings.pidfile).map_err(|e| (11, e))?;
    let listener = client::bind_socket(&settings.socket).map_err(|e| (10, e))?;

    let cores = match settings.cores {
        Some(n) => n,
        None => sys::affinity(0).map(|c| c.len().max(1)).unwrap_or(1),
    };
    let cfg = RuntimeConfig {
        cores,
        realtime: settings.realtime,
        mlock: settings.mlock,
        ..RuntimeConfig::default()
    };
    let (accept_ring, accept_end) =
        runtime::bell_pair().map_err(|e| (1, DaemonError::sys("socketpair", e)))?;
    let accepted = client::spawn_accept_thread(listener, accept_ring).map_err(|e| (1, e))?;

    let rt = Runtime::start(cfg, move |core| async move {
        let state = Rc::new(DaemonState::new(0));
        let stop = core.stop_signal();
        match core.ping_all(1).await {
            Ok(p) => tracing::debug!("{} data shard(s) answered: {p:?}", p.len()),
            Err(e) => tracing::error!("data cores not answering: {e}"),
        }
        match runtime::attach_bell(accept_end) {
            Ok(bell) => client::serve(state, accepted, bell, stop).await,
            Err(e) => tracing::error!("cannot attach the accept queue: {e}"),
        }
    })
    .map_err(|e| (1, e))?;
    if settings.realtime {
        tracing::info!("Set real-time scheduler priority");
    }
    for c in rt.cores() {
        tracing::info!(
            "core {} on CPU {}: {:?}{}",
            c.index,
            c.cpu,
            c.role,
            if c.realtime { ", SCHED_FIFO" } else { "" }
        );
    }
    process::spawn_signal_thread(rt.stopper()).map_err(|e| (1, e))?;
    let stdin_closed = Arc::new(AtomicBool::new(false));
    if settings.test_mode {
        process::watch_stdin(rt.stopper(), stdin_closed.clone());
    }
    ready.ready();
    let r = rt.join().map_err(|e| (1, e));
    client::remove_socket(&settings.socket);
    r?;
    if stdin_closed.load(Ordering::SeqCst) {
        return Err((
            process::EXIT_STDIN_CLOSED,
            DaemonError::sys("stdin", std::io::ErrorKind::BrokenPipe.into()),
        ));
    }
    Ok(())
}
