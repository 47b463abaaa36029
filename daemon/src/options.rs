//! Command-line options of ctdbd, and the settings derived from them.
//!
//! Samba 4.17's ctdbd takes only `-i/--interactive`; everything else moved
//! to `ctdb.conf`. We also accept the long-standing options of the classic
//! ctdbd(1) man page so old start scripts keep working; where both exist
//! the command line wins over the configuration file (applied through
//! `ctdb-config`'s `ConfigOverrides`, so they are validated exactly like
//! the file's values). `--cores` and `--mlock` are ours (thread-per-core
//! layout and memory locking).

use std::path::PathBuf;

use clap::Parser;
use ctdb_config::{Config, ConfigOverrides, LoadOptions, LogLocation, Paths};

use crate::error::DaemonError;
use crate::logging::{DebugLevel, LogTarget};

#[derive(Parser, Debug, Clone, Default, PartialEq, Eq)]
#[command(
    name = "ctdbd",
    about = "The clustered TDB daemon",
    disable_version_flag = true
)]
pub struct Options {
    /// Don't fork, log to stderr.
    #[arg(short = 'i', long)]
    pub interactive: bool,

    /// Debug level: ERROR, WARNING, NOTICE, INFO, DEBUG or 0-10.
    #[arg(short = 'd', long = "debug", value_name = "LEVEL", value_parser = DebugLevel::parse)]
    pub debug: Option<DebugLevel>,

    /// Directory for volatile databases.
    #[arg(long, value_name = "DIRECTORY")]
    pub dbdir: Option<PathBuf>,

    /// Directory for persistent databases.
    #[arg(long = "dbdir-persistent", value_name = "DIRECTORY")]
    pub dbdir_persistent: Option<PathBuf>,

    /// Directory holding the event scripts.
    #[arg(long = "event-script-dir", value_name = "DIRECTORY")]
    pub event_script_dir: Option<PathBuf>,

    /// Address to listen on for node links.
    #[arg(long, value_name = "ADDRESS")]
    pub listen: Option<String>,

    /// Log to this file.
    #[arg(long, value_name = "FILENAME")]
    pub logfile: Option<PathBuf>,

    /// File listing the private addresses of all nodes.
    #[arg(long, value_name = "FILENAME")]
    pub nlist: Option<PathBuf>,

    /// This node never becomes LMASTER.
    #[arg(long = "no-lmaster")]
    pub no_lmaster: bool,

    /// This node never becomes recovery master (leader).
    #[arg(long = "no-recmaster")]
    pub no_recmaster: bool,

    /// Do not use real-time (SCHED_FIFO) scheduling.
    #[arg(long)]
    pub nosetsched: bool,

    /// File listing the public addresses.
    #[arg(long = "public-addresses", value_name = "FILENAME")]
    pub public_addresses: Option<PathBuf>,

    /// Default interface for public addresses.
    #[arg(long = "public-interface", value_name = "INTERFACE")]
    pub public_interface: Option<String>,

    /// Cluster (recovery) lock file.
    #[arg(long, value_name = "FILENAME")]
    pub reclock: Option<String>,

    /// Path of the client socket (overrides CTDB_SOCKET).
    #[arg(long, value_name = "FILENAME")]
    pub socket: Option<PathBuf>,

    /// Start in the DISABLED state.
    #[arg(long = "start-as-disabled")]
    pub start_as_disabled: bool,

    /// Log to syslog.
    #[arg(long)]
    pub syslog: bool,

    /// Debugging aid: randomly perturb timing to shake out races.
    #[arg(long)]
    pub torture: bool,

    /// Transport for node links (only "tcp").
    #[arg(long, value_name = "STRING")]
    pub transport: Option<String>,

    /// Number of cores (pinned executors); default: all CPUs allowed.
    #[arg(long, value_name = "N")]
    pub cores: Option<usize>,

    /// Lock all memory (mlockall) at start-up.
    #[arg(long)]
    pub mlock: bool,
}

/// Everything the daemon needs to start: options, environment and
/// `ctdb.conf` combined, command line winning.
#[derive(Debug, Clone)]
pub struct Settings {
    pub interactive: bool,
    pub socket: PathBuf,
    pub pidfile: PathBuf,
    pub log_target: LogTarget,
    pub log_level: DebugLevel,
    pub realtime: bool,
    pub mlock: bool,
    pub cores: Option<usize>,
    pub test_mode: bool,
    /// Where every configuration file lives (nodes, public_addresses, ...).
    pub paths: Paths,
    /// The loaded `ctdb.conf` (or `ctdb.toml`) with the overrides applied.
    pub config: Config,
    /// The raw options.
    pub options: Options,
}

impl Settings {
    /// Resolves settings from `options` and an environment lookup
    /// (`CTDB_BASE`, `CTDB_TEST_MODE`, `CTDB_SOCKET`): paths as upstream's
    /// `path.c`, `$etcdir/ctdb.conf` loaded as ctdbd does (unknown keys
    /// ignored with a warning), then the classic options applied on top.
    pub fn resolve<F>(options: Options, env: F) -> Result<Settings, DaemonError>
    where
        F: Fn(&str) -> Option<PathBuf>,
    {
        if options.cores == Some(0) {
            return Err(DaemonError::BadOption {
                option: "--cores",
                why: "must be at least 1".into(),
            });
        }
        let mut paths = Paths::from_vars(|n| env(n).filter(|v| !v.as_os_str().is_empty()))?;
        let mut config = Config::load_with(&paths.etcdir, LoadOptions::ctdbd())?;
        let overrides = ConfigOverrides {
            dbdir: options.dbdir.clone(),
            dbdir_persistent: options.dbdir_persistent.clone(),
            event_script_dir: options.event_script_dir.clone(),
            listen: options.listen.clone(),
            logfile: options.logfile.clone(),
            nlist: options.nlist.clone(),
            no_lmaster: options.no_lmaster,
            no_recmaster: options.no_recmaster,
            nosetsched: options.nosetsched,
            public_addresses: options.public_addresses.clone(),
            public_interface: options.public_interface.clone(),
            reclock: options.reclock.clone(),
            socket: options.socket.clone(),
            start_as_disabled: options.start_as_disabled,
            syslog: options.syslog,
            transport: options.transport.clone(),
            debug_level: options.debug.map(|d| d.name().to_string()),
            ..ConfigOverrides::default()
        };
        overrides.apply(&mut config, &mut paths)?;

        let socket = paths.ctdbd_socket();
        if socket.as_os_str().len() >= 108 {
            return Err(DaemonError::BadOption {
                option: "socket",
                why: format!(
                    "path {} is longer than a Unix socket address allows (107 bytes)",
                    socket.display()
                ),
            });
        }
        // -i logs to stderr whatever the configuration says, as upstream.
        let log_target = if options.interactive {
            LogTarget::Stderr
        } else {
            match config.log_location() {
                LogLocation::Stderr => LogTarget::Stderr,
                LogLocation::File(p) => LogTarget::File(p),
                LogLocation::Syslog(_) => LogTarget::Syslog,
            }
        };
        let log_level = DebugLevel::parse(&config.log_level().0.to_string()).map_err(|why| {
            DaemonError::BadOption {
                option: "[logging] log level",
                why,
            }
        })?;
        Ok(Settings {
            interactive: options.interactive,
            pidfile: paths.pidfile("ctdbd"),
            socket,
            log_target,
            log_level,
            realtime: config.realtime_scheduling(),
            mlock: options.mlock,
            cores: options.cores,
            test_mode: paths.test_mode,
            paths,
            config,
            options,
        })
    }

    /// Resolves from the process environment.
    pub fn from_process(options: Options) -> Result<Settings, DaemonError> {
        Settings::resolve(options, |n| std::env::var_os(n).map(PathBuf::from))
    }

    /// Upstream refuses to start when a database directory is missing.
    pub fn check_directories(&self) -> Result<(), DaemonError> {
        for (what, dir) in [
            ("Volatile", self.config.volatile_db_dir()),
            ("Persistent", self.config.persistent_db_dir()),
            ("State", self.config.state_db_dir()),
        ] {
            if !dir.is_dir() {
                return Err(DaemonError::BadOption {
                    option: "[database]",
                    why: format!("{what} database directory {} does not exist", dir.display()),
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::path::Path;

    fn parse(args: &[&str]) -> Result<Options, clap::Error> {
        Options::try_parse_from(std::iter::once("ctdbd").chain(args.iter().copied()))
    }

    /// A test-mode CTDB_BASE with database directories, and `conf` plus a
    /// `[database]` section naming them as ctdb.conf.
    fn base(name: &str, conf: &str) -> PathBuf {
        let b = std::env::temp_dir().join(format!("ctdbd-opt-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&b);
        for d in ["volatile", "persistent", "state"] {
            std::fs::create_dir_all(b.join(d)).unwrap();
        }
        let db = format!(
            "[database]\n\tvolatile database directory = {0}/volatile\n\
             \tpersistent database directory = {0}/persistent\n\
             \tstate database directory = {0}/state\n",
            b.display()
        );
        std::fs::write(b.join("ctdb.conf"), format!("{conf}{db}")).unwrap();
        b
    }

    fn resolve(args: &[&str], vars: &[(&str, &Path)]) -> Result<Settings, DaemonError> {
        let vars: HashMap<String, PathBuf> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_path_buf()))
            .collect();
        Settings::resolve(parse(args).unwrap(), |n| vars.get(n).cloned())
    }

    #[test]
    fn upstream_and_classic_options_parse() {
        let o = parse(&[
            "-i",
            "-d",
            "DEBUG",
            "--dbdir=/var/lib/ctdb/volatile",
            "--dbdir-persistent",
            "/var/lib/ctdb/persistent",
            "--event-script-dir=/etc/ctdb/events",
            "--listen=10.0.0.1",
            "--logfile=/tmp/x.log",
            "--nlist=/etc/ctdb/nodes",
            "--no-lmaster",
            "--no-recmaster",
            "--nosetsched",
            "--public-addresses=/etc/ctdb/public_addresses",
            "--public-interface=eth0",
            "--reclock=/cluster/lock",
            "--socket=/tmp/ctdbd.socket",
            "--start-as-disabled",
            "--syslog",
            "--torture",
            "--transport=tcp",
            "--cores=2",
            "--mlock",
        ])
        .unwrap();
        assert!(o.interactive && o.no_lmaster && o.no_recmaster && o.nosetsched);
        assert!(o.start_as_disabled && o.syslog && o.torture && o.mlock);
        assert_eq!(o.debug, Some(DebugLevel::Debug));
        assert_eq!(
            o.dbdir_persistent.as_deref(),
            Some(Path::new("/var/lib/ctdb/persistent"))
        );
        assert_eq!(o.listen.as_deref(), Some("10.0.0.1"));
        assert_eq!(o.cores, Some(2));
        let o = parse(&["--debug=3"]).unwrap();
        assert_eq!(o.debug, Some(DebugLevel::Notice));
    }

    #[test]
    fn bad_options_are_named() {
        let e = parse(&["--debug=LOUD"]).unwrap_err().to_string();
        assert!(e.contains("unknown debug level"), "{e}");
        let e = parse(&["--frobnicate"]).unwrap_err().to_string();
        assert!(e.contains("--frobnicate"), "{e}");
        let e = parse(&["extra"]).unwrap_err().to_string();
        assert!(e.contains("extra"), "{e}");
        let b = base("bad", "");
        let vars = [
            ("CTDB_BASE", b.as_path()),
            ("CTDB_TEST_MODE", Path::new("1")),
        ];
        let e = resolve(&["--transport=ib"], &vars).unwrap_err();
        assert!(e.to_string().contains("transport"), "{e}");
        let e = resolve(&["--cores=0"], &vars).unwrap_err();
        assert!(e.to_string().contains("--cores"), "{e}");
        let long = format!("--socket=/tmp/{}", "s".repeat(120));
        let e = resolve(&[&long], &vars).unwrap_err();
        assert!(e.to_string().contains("longer than"), "{e}");
        let e = resolve(&["--dbdir=/nonexistent/ctdb/volatile"], &vars).unwrap_err();
        assert!(e.to_string().contains("/nonexistent/ctdb/volatile"), "{e}");
        // Test mode without CTDB_BASE is a broken setup.
        let e = resolve(&[], &[("CTDB_TEST_MODE", Path::new("1"))]).unwrap_err();
        assert!(e.to_string().contains("CTDB_BASE"), "{e}");
        std::fs::remove_dir_all(&b).unwrap();
    }

    #[test]
    fn paths_and_config_follow_upstream_rules() {
        // Outside test mode: upstream's compiled-in paths.
        let s = resolve(&[], &[]).unwrap();
        assert_eq!(s.socket, Path::new("/run/ctdb/ctdbd.socket"));
        assert_eq!(s.pidfile, Path::new("/run/ctdb/ctdbd.pid"));

        let b = base(
            "paths",
            "[logging]\n\tlocation = file:/tmp/ctdb-test.log\n\tlog level = INFO\n\
             [legacy]\n\trealtime scheduling = false\n[unknown]\n\tkey = ignored\n",
        );
        let vars = [
            ("CTDB_BASE", b.as_path()),
            ("CTDB_TEST_MODE", Path::new("1")),
        ];
        let s = resolve(&[], &vars).unwrap();
        assert_eq!(s.socket, b.join("run/ctdbd.socket"));
        assert_eq!(s.pidfile, b.join("run/ctdbd.pid"));
        assert_eq!(s.log_target, LogTarget::File("/tmp/ctdb-test.log".into()));
        assert_eq!(s.log_level, DebugLevel::Info);
        assert!(!s.realtime, "ctdb.conf turned real-time scheduling off");
        // The unknown section and key are ignored, with warnings, as ctdbd does.
        let w: Vec<String> = s.config.warnings().iter().map(|w| w.to_string()).collect();
        assert!(
            !w.is_empty() && w.iter().any(|w| w.contains("unknown")),
            "{w:?}"
        );

        // The command line wins over the file; CTDB_SOCKET over the default.
        let sock = b.join("env.socket");
        let vars3 = [
            ("CTDB_BASE", b.as_path()),
            ("CTDB_TEST_MODE", Path::new("1")),
            ("CTDB_SOCKET", sock.as_path()),
        ];
        let s = resolve(&["-d", "ERROR", "--logfile=/tmp/other.log"], &vars3).unwrap();
        assert_eq!(s.socket, sock);
        assert_eq!(s.log_level, DebugLevel::Error);
        assert_eq!(s.log_target, LogTarget::File("/tmp/other.log".into()));
        let s = resolve(&["-i", "--socket=/tmp/opt.socket"], &vars3).unwrap();
        assert_eq!(s.socket, Path::new("/tmp/opt.socket"));
        assert_eq!(s.log_target, LogTarget::Stderr, "-i logs to stderr");
        s.check_directories().unwrap();
        std::fs::remove_dir(b.join("state")).unwrap();
        let e = s.check_directories().unwrap_err();
        assert!(e.to_string().contains("State database directory"), "{e}");
        std::fs::remove_dir_all(&b).unwrap();
    }
}
