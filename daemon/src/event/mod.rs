//! Event scripts: our `ctdb-eventd`, its protocol, and an in-process
//! runner, so ctdbd can either spawn an event daemon (ours or Debian's) or
//! run the scripts itself with the same results.
//!
//! Why a separate daemon at all: ctdbd 4.17 does not run event scripts; it
//! starts `ctdb-eventd -P <ctdbd pid> -S <fd>` and sends it RUN requests
//! over `$rundir/eventd.socket`. The stock `ctdb event ...` commands run
//! `ctdb-event`, which talks to that same socket. Speaking the protocol
//! byte for byte ([`protocol`]) keeps both working against us.
//!
//! # Modules
//!
//! * [`protocol`]: packet codec;
//! * [`scripts`]: component directories, script lists, enable/disable;
//! * [`runner`]: runs an event's scripts (timeouts, process groups,
//!   cancellation of monitor, debug script), keeps last results;
//! * [`server`]: the eventd socket server over a [`runner::EventRunner`];
//! * [`client`]: a blocking client for the eventd socket;
//! * [`eventd`]: starting an event daemon as ctdbd does, and
//!   [`eventd::EventBackend`], ctdbd's one way to run an event either
//!   through a daemon or in-process;
//! * [`notify`]: `notify.sh` notifications (init, setup, startup,
//!   healthy, unhealthy).
//!
//! # Use from ctdbd
//!
//! ```no_run
//! use std::sync::Arc;
//! use ctdb_daemon::event::eventd::{eventd_path, EventBackend, EventdProcess};
//! use ctdb_daemon::event::notify::{run_notification, Notification};
//! use ctdb_daemon::event::runner::CtdbEvent;
//! use ctdb_daemon::event::{client, EventRunner};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let paths = ctdb_config::Paths::from_env()?;
//! let config = ctdb_config::Config::load(&paths.etcdir)?;
//! // Either start an event daemon as upstream ctdbd does ...
//! let eventd = EventdProcess::start(
//!     &eventd_path(&paths), std::process::id(), &client::socket_path(&paths), &[])?;
//! let backend = EventBackend::Daemon(eventd.socket().to_path_buf());
//! // ... or run scripts in-process with the same semantics.
//! let _inproc = EventBackend::InProcess(Arc::new(EventRunner::from_config(&paths, &config)));
//! // Per event: argument check, EventScriptTimeout, reply code.
//! let code = backend.run(CtdbEvent::TakeIp, Some("eth0 10.0.0.1 24"), 30);
//! let _ = run_notification(&paths.notification_script(), Notification::Healthy);
//! let _ = (code, eventd.has_exited());
//! # Ok(()) }
//! ```
//!
//! ctdbd's rules that stay with ctdbd: which events may run during
//! recovery ([`runner::CtdbEvent::allowed_during_recovery`]), banning
//! itself when a waited-for event times out
//! ([`runner::CtdbEvent::timeout_bans`]), monitoring every
//! MonitorInterval and turning monitor results into healthy/unhealthy
//! notifications. Timeouts of startrecovery, recovered, takeip and
//! releaseip are already reported as success by [`eventd::EventBackend`].
//!
//! # Layouts
//!
//! Components live in `etcdir/events/<component>/`, scripts are named
//! `NN.name.script` and a script is enabled when it is executable (or is a
//! symlink to an executable, Debian enables stock scripts by linking them
//! from `/usr/share/ctdb/events/legacy`). For the old `events.d/NN.name`
//! layout (CTDB before 4.9): if `etcdir/events/legacy` does not exist but
//! `etcdir/events.d` does, `events.d` is used as the `legacy` component,
//! with script names being the file names (`NN.name`, no suffix, backup
//! files such as `*~`, `*.rpmnew`, `*.dpkg-old` skipped).
//!
//! # Differences from upstream
//!
//! * Our eventd cannot mark the `-S` startup descriptor close-on-exec
//!   (that needs unsafe code outside this module's remit), so scripts
//!   inherit it; a script that outlives a dying eventd delays ctdbd's
//!   notice of the death until the script exits.
//! * Logging goes through the daemon's logger, whose lines carry the
//!   `ctdbd` name.
//! * A script still running when its event times out is sent SIGTERM (to
//!   its process group) once the debug script has finished, or at once if
//!   there is none; upstream leaves it running when no debug script is
//!   configured. It is SIGKILLed if still alive 5 seconds later.
//! * Captured output is capped at [`runner::OUTPUT_LIMIT`] bytes and cut at
//!   the first NUL byte.

pub mod client;
pub mod eventd;
pub mod notify;
pub mod protocol;
pub mod runner;
pub mod scripts;
pub mod server;

use std::io;

pub use client::EventClient;
pub use runner::{EventRunner, RunResult, ScriptResult};

/// Text of an errno value, as `strerror` gives it (without Rust's
/// "(os error N)" suffix).
pub fn strerror(errno: i32) -> String {
    let s = io::Error::from_raw_os_error(errno).to_string();
    match s.rfind(" (os error ") {
        Some(p) => s[..p].to_string(),
        None => s,
    }
}
