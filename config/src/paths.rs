//! Where CTDB keeps things, and which environment variables move them.
//!
//! Two different notions of "base directory" exist upstream and must not be
//! confused:
//!
//! * `ctdb_base`: `$CTDB_BASE`, default `/etc/ctdb`. ctdbd reads `nodes`,
//!   `public_addresses`, `notify.sh`, `events/legacy/` and (via the scripts)
//!   `script.options` from here, whether or not test mode is on.
//! * `etcdir`: `/etc/ctdb`, or `$CTDB_BASE` only when `CTDB_TEST_MODE` is
//!   set. `ctdb.conf`, `ctdb.tunables` and the debug scripts named in
//!   `ctdb.conf` are looked up here.
//!
//! In test mode the run, var and data directories also move under
//! `$CTDB_BASE` (`run/`, `var/`, `share/`), exactly as `ctdb-path` prints.
//! `CTDB_SOCKET` overrides the ctdbd socket path in all modes. Upstream
//! honours no `CTDB_VARDIR`/`CTDB_RUNDIR` variables; neither do we. The
//! database directory defaults in `ctdb.conf` are compile-time constants
//! under `/var/lib/ctdb` even in test mode (as upstream).

use std::path::{Path, PathBuf};

use crate::ConfigError;

/// Compile-time `CTDB_ETCDIR` of Debian's build.
pub const ETCDIR: &str = "/etc/ctdb";
/// Compile-time `CTDB_RUNDIR`.
pub const RUNDIR: &str = "/run/ctdb";
/// Compile-time `CTDB_VARDIR`.
pub const VARDIR: &str = "/var/lib/ctdb";
/// Compile-time `CTDB_DATADIR`.
pub const DATADIR: &str = "/usr/share/ctdb";
/// Compile-time `LOGDIR`.
pub const LOGDIR: &str = "/var/log/ctdb";
/// Compile-time `CTDB_HELPER_BINDIR`.
pub const HELPER_BINDIR: &str = "/usr/libexec/ctdb";

/// Name of the ini configuration file.
pub const CONFIG_FILE: &str = "ctdb.conf";
/// Name of the TOML alternative to [`CONFIG_FILE`].
pub const TOML_CONFIG_FILE: &str = "ctdb.toml";

/// All the locations ctdbd uses, resolved once from the environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paths {
    /// `$CTDB_BASE` or `/etc/ctdb`.
    pub ctdb_base: PathBuf,
    /// Directory of `ctdb.conf` and `ctdb.tunables`.
    pub etcdir: PathBuf,
    /// Sockets and pid files.
    pub rundir: PathBuf,
    /// Variable state (upstream `path_vardir()`).
    pub vardir: PathBuf,
    /// Shipped event scripts (`share/events/...`).
    pub datadir: PathBuf,
    /// Helper programs (`ctdb_lock_helper`, `ctdb-eventd`, ...).
    pub helper_bindir: PathBuf,
    /// Whether `CTDB_TEST_MODE` was set.
    pub test_mode: bool,
    /// `CTDB_SOCKET` (or `--socket`) if set.
    pub socket_override: Option<PathBuf>,
    /// `--nlist`: replaces `$CTDB_BASE/nodes`.
    pub nodes_override: Option<PathBuf>,
    /// `--public-addresses`: replaces `$CTDB_BASE/public_addresses`.
    pub public_addresses_override: Option<PathBuf>,
    /// `--event-script-dir`: replaces `$CTDB_BASE/events/legacy`.
    pub event_script_dir_override: Option<PathBuf>,
}

impl Paths {
    /// Resolve from the process environment.
    pub fn from_env() -> Result<Paths, ConfigError> {
        Paths::from_vars(|name| std::env::var_os(name).map(PathBuf::from))
    }

    /// Resolve from a variable lookup function (tests use this to avoid
    /// touching the process environment).
    pub fn from_vars<F>(get: F) -> Result<Paths, ConfigError>
    where
        F: Fn(&str) -> Option<PathBuf>,
    {
        let base_var = get("CTDB_BASE");
        let test_mode = get("CTDB_TEST_MODE").is_some();
        let ctdb_base = base_var.clone().unwrap_or_else(|| PathBuf::from(ETCDIR));
        let (etcdir, rundir, vardir, datadir) = if test_mode {
            let Some(base) = base_var else {
                return Err(ConfigError::Environment {
                    var: "CTDB_BASE".into(),
                    reason: "not set, but CTDB_TEST_MODE is (broken CTDB setup)".into(),
                });
            };
            (
                base.clone(),
                base.join("run"),
                base.join("var"),
                base.join("share"),
            )
        } else {
            (
                PathBuf::from(ETCDIR),
                PathBuf::from(RUNDIR),
                PathBuf::from(VARDIR),
                PathBuf::from(DATADIR),
            )
        };
        Ok(Paths {
            ctdb_base,
            etcdir,
            rundir,
            vardir,
            datadir,
            helper_bindir: PathBuf::from(HELPER_BINDIR),
            test_mode,
            socket_override: get("CTDB_SOCKET"),
            nodes_override: None,
            public_addresses_override: None,
            event_script_dir_override: None,
        })
    }

    /// Paths for a daemon whose every file lives under `base` (test-mode
    /// layout without touching the environment).
    pub fn under(base: &Path) -> Paths {
        Paths {
            ctdb_base: base.to_path_buf(),
            etcdir: base.to_path_buf(),
            rundir: base.join("run"),
            vardir: base.join("var"),
            datadir: base.join("share"),
            helper_bindir: PathBuf::from(HELPER_BINDIR),
            test_mode: true,
            socket_override: None,
            nodes_override: None,
            public_addresses_override: None,
            event_script_dir_override: None,
        }
    }

    /// `etcdir/ctdb.conf`.
    pub fn config_file(&self) -> PathBuf {
        self.etcdir.join(CONFIG_FILE)
    }

    /// `etcdir/ctdb.toml`.
    pub fn toml_config_file(&self) -> PathBuf {
        self.etcdir.join(TOML_CONFIG_FILE)
    }

    /// `etcdir/ctdb.tunables`.
    pub fn tunables_file(&self) -> PathBuf {
        self.etcdir.join("ctdb.tunables")
    }

    /// `$CTDB_BASE/nodes` (or the `--nlist` override).
    pub fn nodes_file(&self) -> PathBuf {
        if let Some(p) = &self.nodes_override {
            return p.clone();
        }
        self.ctdb_base.join("nodes")
    }

    /// `$CTDB_BASE/public_addresses` (or the `--public-addresses`
    /// override).
    pub fn public_addresses_file(&self) -> PathBuf {
        if let Some(p) = &self.public_addresses_override {
            return p.clone();
        }
        self.ctdb_base.join("public_addresses")
    }

    /// `$CTDB_BASE/notify.sh`.
    pub fn notification_script(&self) -> PathBuf {
        self.ctdb_base.join("notify.sh")
    }

    /// `$CTDB_BASE/script.options`.
    pub fn script_options_file(&self) -> PathBuf {
        self.ctdb_base.join("script.options")
    }

    /// `$CTDB_BASE/debug_locks.sh`, used when `[database] lock debug
    /// script` is not set.
    pub fn default_lock_debug_script(&self) -> PathBuf {
        self.ctdb_base.join("debug_locks.sh")
    }

    /// `$CTDB_BASE/events/legacy`: the enabled legacy event scripts.
    pub fn event_script_dir(&self) -> PathBuf {
        if let Some(p) = &self.event_script_dir_override {
            return p.clone();
        }
        self.ctdb_base.join("events").join("legacy")
    }

    /// `etcdir/events`: where ctdb-eventd looks for components.
    pub fn eventd_script_dir(&self) -> PathBuf {
        self.etcdir.join("events")
    }

    /// `$CTDB_BASE/events/notification`: scripts run by `notify.sh`.
    pub fn notification_dir(&self) -> PathBuf {
        self.ctdb_base.join("events").join("notification")
    }

    /// `datadir/events/legacy`: scripts shipped but not necessarily enabled.
    pub fn shipped_event_script_dir(&self) -> PathBuf {
        self.datadir.join("events").join("legacy")
    }

    /// Socket of a daemon: `CTDB_SOCKET` for ctdbd if set, else
    /// `rundir/<daemon>.socket`.
    pub fn socket(&self, daemon: &str) -> PathBuf {
        if daemon == "ctdbd" {
            if let Some(s) = &self.socket_override {
                return s.clone();
            }
        }
        self.rundir.join(format!("{daemon}.socket"))
    }

    /// The ctdbd socket (`/run/ctdb/ctdbd.socket` by default).
    pub fn ctdbd_socket(&self) -> PathBuf {
        self.socket("ctdbd")
    }

    /// `rundir/<daemon>.pid`.
    pub fn pidfile(&self, daemon: &str) -> PathBuf {
        self.rundir.join(format!("{daemon}.pid"))
    }

    /// A helper program: `$env_var` if set, else `helper_bindir/name`
    /// (upstream's `ctdb_set_helper()`; e.g. `CTDB_LOCK_HELPER`,
    /// `CTDB_RECOVERY_HELPER`, `CTDB_TAKEOVER_HELPER`, `CTDB_EVENTD`,
    /// `CTDB_CLUSTER_MUTEX_HELPER`).
    pub fn helper(&self, env_var: &str, name: &str) -> PathBuf {
        std::env::var_os(env_var)
            .map(PathBuf::from)
            .unwrap_or_else(|| self.helper_bindir.join(name))
    }
}

/// State of the notification script.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotifyScript {
    /// No such file: notifications are skipped.
    Missing,
    /// Exists but is not a regular file with the user-execute bit.
    NotExecutable(PathBuf),
    /// Ready to run.
    Ready(PathBuf),
}

impl NotifyScript {
    /// Inspect `path` (normally [`Paths::notification_script`]).
    pub fn check(path: &Path) -> NotifyScript {
        match std::fs::metadata(path) {
            Err(_) => NotifyScript::Missing,
            Ok(m) if m.is_file() && is_user_executable(&m) => {
                NotifyScript::Ready(path.to_path_buf())
            }
            Ok(_) => NotifyScript::NotExecutable(path.to_path_buf()),
        }
    }
}

pub(crate) fn is_user_executable(m: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::PermissionsExt;
    m.permissions().mode() & 0o100 != 0
}
