//! Notifications: ctdbd runs `$CTDB_BASE/notify.sh <event>` (which in turn
//! runs `events/notification/*.script`) on `init`, `setup`, `startup`,
//! `healthy` and `unhealthy`.
//!
//! As upstream: in the background (ctdbd never waits), through the shell
//! as `system("<script> <event>\n")`, only if the script exists and is
//! owner-executable; failures are logged, never returned.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread::{self, JoinHandle};

/// Events ctdbd notifies about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Notification {
    Init,
    Setup,
    Startup,
    Healthy,
    Unhealthy,
}

impl Notification {
    /// The argument given to the script.
    pub fn name(self) -> &'static str {
        match self {
            Notification::Init => "init",
            Notification::Setup => "setup",
            Notification::Startup => "startup",
            Notification::Healthy => "healthy",
            Notification::Unhealthy => "unhealthy",
        }
    }
}

/// Why a notification did not run or failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotifyOutcome {
    /// Exit status 0.
    Ok,
    /// The script could not be stat'ed.
    Missing(PathBuf),
    /// Not owner-executable.
    NotExecutable(PathBuf),
    /// Non-zero exit (or -1 when the shell could not run).
    Failed(i32),
}

/// Runs `script event` synchronously and reports the outcome (logged as
/// upstream logs it).
pub fn run_notification_sync(script: &Path, event: &str) -> NotifyOutcome {
    let meta = match std::fs::metadata(script) {
        Ok(m) => m,
        Err(_) => {
            tracing::error!(
                "Could not stat notification script {}. Can not send notifications.",
                script.display()
            );
            return NotifyOutcome::Missing(script.to_path_buf());
        }
    };
    if meta.mode() & 0o100 == 0 {
        tracing::error!(
            "Notification script {} is not executable.",
            script.display()
        );
        return NotifyOutcome::NotExecutable(script.to_path_buf());
    }
    let cmd = format!("{} {}\n", script.display(), event);
    let mut sh = Command::new("/bin/sh");
    sh.arg("-c").arg(&cmd).stdin(Stdio::null());
    crate::sys::unblock_signals_in_child(&mut sh);
    let st = sh.status();
    let code = match st {
        Ok(s) => s.code().unwrap_or(-1),
        Err(_) => -1,
    };
    if code != 0 {
        tracing::error!(
            "Notification script \"{}\" failed with error {}",
            cmd.trim_end(),
            code
        );
        return NotifyOutcome::Failed(code);
    }
    NotifyOutcome::Ok
}

/// Runs the notification in the background; the handle may be dropped.
pub fn run_notification(script: &Path, event: Notification) -> JoinHandle<NotifyOutcome> {
    let script = script.to_path_buf();
    thread::spawn(move || run_notification_sync(&script, event.name()))
}
