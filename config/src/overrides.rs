//! Command-line overrides in the style of the classic ctdbd options.
//!
//! ctdbd 4.17 itself takes only `-i`; everything else moved to
//! `ctdb.conf`. The older options remain handy for tests and for people
//! with old init scripts, so the daemon may parse them and hand them over
//! in a [`ConfigOverrides`]. Options that correspond to a `ctdb.conf` key
//! are applied with [`crate::Config::set`] (validated, and shown as
//! `# temporary` in a dump); the others move files in [`crate::Paths`].

use std::path::PathBuf;

use crate::conf::{Config, Value};
use crate::error::ConfigError;
use crate::paths::Paths;

/// Old-style ctdbd command-line settings; `None`/`false` means "not
/// given".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConfigOverrides {
    /// `--dbdir`: `[database] volatile database directory`.
    pub dbdir: Option<PathBuf>,
    /// `--dbdir-persistent`: `[database] persistent database directory`.
    pub dbdir_persistent: Option<PathBuf>,
    /// `--dbdir-state`: `[database] state database directory`.
    pub dbdir_state: Option<PathBuf>,
    /// `--event-script-dir`: replaces `$CTDB_BASE/events/legacy`.
    pub event_script_dir: Option<PathBuf>,
    /// `--listen`: `[cluster] node address`.
    pub listen: Option<String>,
    /// `--logfile`: `[logging] location = file:PATH`.
    pub logfile: Option<PathBuf>,
    /// `--nlist`: replaces `$CTDB_BASE/nodes`.
    pub nlist: Option<PathBuf>,
    /// `--no-lmaster`: `[legacy] lmaster capability = false`.
    pub no_lmaster: bool,
    /// `--no-recmaster`: `[cluster] leader capability = false`.
    pub no_recmaster: bool,
    /// `--nosetsched`: `[legacy] realtime scheduling = false`.
    pub nosetsched: bool,
    /// `--public-addresses`: replaces `$CTDB_BASE/public_addresses`.
    pub public_addresses: Option<PathBuf>,
    /// `--public-interface`: interface for public address lines without
    /// one (pass to [`crate::PublicAddresses::load_with_default_iface`]).
    pub public_interface: Option<String>,
    /// `--reclock`: `[cluster] cluster lock`.
    pub reclock: Option<String>,
    /// `--socket`: the ctdbd socket path.
    pub socket: Option<PathBuf>,
    /// `--start-as-disabled`: `[legacy] start as disabled = true`.
    pub start_as_disabled: bool,
    /// `--start-as-stopped`: `[legacy] start as stopped = true`.
    pub start_as_stopped: bool,
    /// `--syslog`: `[logging] location = syslog`.
    pub syslog: bool,
    /// `--transport`: `[cluster] transport`.
    pub transport: Option<String>,
    /// `-d/--debug`: `[logging] log level`.
    pub debug_level: Option<String>,
}

impl ConfigOverrides {
    /// Apply to a loaded configuration and the path set. Stops at the first
    /// value the option's validator rejects.
    pub fn apply(&self, config: &mut Config, paths: &mut Paths) -> Result<(), ConfigError> {
        let s = |v: &str| Value::String(Some(v.to_string()));
        let p = |v: &PathBuf| Value::String(Some(v.to_string_lossy().into_owned()));
        if let Some(d) = &self.dbdir {
            config.set("database", "volatile database directory", p(d))?;
        }
        if let Some(d) = &self.dbdir_persistent {
            config.set("database", "persistent database directory", p(d))?;
        }
        if let Some(d) = &self.dbdir_state {
            config.set("database", "state database directory", p(d))?;
        }
        if let Some(a) = &self.listen {
            config.set("cluster", "node address", s(a))?;
        }
        if let Some(f) = &self.logfile {
            config.set(
                "logging",
                "location",
                s(&format!("file:{}", f.to_string_lossy())),
            )?;
        }
        if self.syslog {
            config.set("logging", "location", s("syslog"))?;
        }
        if self.no_lmaster {
            config.set("legacy", "lmaster capability", Value::Boolean(false))?;
        }
        if self.no_recmaster {
            config.set("cluster", "leader capability", Value::Boolean(false))?;
        }
        if self.nosetsched {
            config.set("legacy", "realtime scheduling", Value::Boolean(false))?;
        }
        if self.start_as_disabled {
            config.set("legacy", "start as disabled", Value::Boolean(true))?;
        }
        if self.start_as_stopped {
            config.set("legacy", "start as stopped", Value::Boolean(true))?;
        }
        if let Some(r) = &self.reclock {
            config.set("cluster", "cluster lock", s(r))?;
        }
        if let Some(t) = &self.transport {
            config.set("cluster", "transport", s(t))?;
        }
        if let Some(d) = &self.debug_level {
            config.set("logging", "log level", s(d))?;
        }
        if let Some(sock) = &self.socket {
            paths.socket_override = Some(sock.clone());
        }
        if let Some(n) = &self.nlist {
            paths.nodes_override = Some(n.clone());
        }
        if let Some(pa) = &self.public_addresses {
            paths.public_addresses_override = Some(pa.clone());
        }
        if let Some(e) = &self.event_script_dir {
            paths.event_script_dir_override = Some(e.clone());
        }
        Ok(())
    }
}
