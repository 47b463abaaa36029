//! Command-line options of ctdbd, and the settings derived from them.
//!
//! Samba 4.17's ctdbd takes only `-i/--interactive`; everything else moved
//! to `ctdb.conf`. We also accept the long-standing options of the classic
//! ctdbd(1) man page so old start scripts keep working; where both exist
//! the command line wins over the configuration file. `--cores` and
//! `--mlock` are ours (thread-per-core layout and memory locking).

use std::path::{Path, PathBuf};

use clap::Parser;

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

/// The environment ctdbd's paths depend on.
#[derive(Debug, Clone, Default)]
pub struct Env {
    /// `CTDB_BASE` (default /etc/ctdb).
    pub base: Option<PathBuf>,
    /// `CTDB_SOCKET`.
    pub socket: Option<PathBuf>,
    /// `CTDB_TEST_MODE` is set.
    pub test_mode: bool,
}

impl Env {
    pub fn from_process() -> Env {
        let get = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty());
        Env {
            base: get("CTDB_BASE").map(PathBuf::from),
            socket: get("CTDB_SOCKET").map(PathBuf::from),
            test_mode: std::env::var_os("CTDB_TEST_MODE").is_some(),
        }
    }
}

/// Everything the daemon needs to start, after options, environment and
/// (later) the configuration file have been combined.
#[derive(Debug, Clone)]
pub struct Settings {
    pub interactive: bool,
    pub base: PathBuf,
    pub socket: PathBuf,
    pub pidfile: PathBuf,
    pub log_target: LogTarget,
    pub log_level: DebugLevel,
    pub realtime: bool,
    pub mlock: bool,
    pub cores: Option<usize>,
    pub test_mode: bool,
    /// The raw options, for settings not applied yet.
    pub options: Options,
}

/// Upstream's run directory: /run/ctdb, or `$CTDB_BASE/run` in test mode.
fn rundir(env: &Env, base: &Path) -> PathBuf {
    if env.test_mode {
        base.join("run")
    } else {
        PathBuf::from("/run/ctdb")
    }
}

impl Settings {
    pub fn resolve(options: Options, env: &Env) -> Result<Settings, DaemonError> {
        let base = env
            .base
            .clone()
            .unwrap_or_else(|| PathBuf::from("/etc/ctdb"));
        if env.test_mode && env.base.is_none() {
            return Err(DaemonError::BadOption {
                option: "CTDB_BASE",
                why: "must be set when CTDB_TEST_MODE is set".into(),
            });
        }
        let run = rundir(env, &base);
        let socket = options
            .socket
            .clone()
            .or_else(|| env.socket.clone())
            .unwrap_or_else(|| run.join("ctdbd.socket"));
        if socket.as_os_str().len() >= 108 {
            return Err(DaemonError::BadOption {
                option: "socket",
                why: format!(
                    "path {} is longer than a Unix socket address allows (107 bytes)",
                    socket.display()
                ),
            });
        }
        if let Some(t) = &options.transport {
            if t != "tcp" {
                return Err(DaemonError::BadOption {
                    option: "--transport",
                    why: format!("unsupported transport {t:?} (only \"tcp\")"),
                });
            }
        }
        if options.cores == Some(0) {
            return Err(DaemonError::BadOption {
                option: "--cores",
                why: "must be at least 1".into(),
            });
        }
        let log_target = if options.interactive {
            LogTarget::Stderr
        } else if let Some(f) = &options.logfile {
            LogTarget::File(f.clone())
        } else if options.syslog {
            LogTarget::Syslog
        } else if env.test_mode {
            LogTarget::File(base.join("log.ctdb"))
        } else {
            LogTarget::File(PathBuf::from("/var/log/ctdb/log.ctdb"))
        };
        let mut s = Settings {
            interactive: options.interactive,
            pidfile: run.join("ctdbd.pid"),
            socket,
            log_target,
            log_level: options.debug.unwrap_or(DebugLevel::Notice),
            realtime: !options.nosetsched,
            mlock: options.mlock,
            cores: options.cores,
            test_mode: env.test_mode,
            base,
            options,
        };
        apply_config_file(&mut s)?;
        Ok(s)
    }
}

/// Hook for `$CTDB_BASE/ctdb.conf`.
///
/// TODO(config): once ctdb-config exposes its loader, read
/// `$CTDB_BASE/ctdb.conf` here and apply `[logging] location/log level`,
/// `[legacy] realtime scheduling`, `[database] volatile/persistent/state
/// database directory` and the rest, letting explicit command-line options
/// win. Until then only options and environment count.
fn apply_config_file(_s: &mut Settings) -> Result<(), DaemonError> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Options, clap::Error> {
        Options::try_parse_from(std::iter::once("ctdbd").chain(args.iter().copied()))
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
        let env = Env::default();
        let e = Settings::resolve(parse(&["--transport=ib"]).unwrap(), &env).unwrap_err();
        assert!(e.to_string().contains("unsupported transport"), "{e}");
        let e = Settings::resolve(parse(&["--cores=0"]).unwrap(), &env).unwrap_err();
        assert!(e.to_string().contains("--cores"), "{e}");
        let long = format!("--socket=/tmp/{}", "s".repeat(120));
        let e = Settings::resolve(parse(&[&long]).unwrap(), &env).unwrap_err();
        assert!(e.to_string().contains("longer than"), "{e}");
    }

    #[test]
    fn paths_follow_upstream_rules() {
        let env = Env::default();
        let s = Settings::resolve(parse(&[]).unwrap(), &env).unwrap();
        assert_eq!(s.socket, Path::new("/run/ctdb/ctdbd.socket"));
        assert_eq!(s.pidfile, Path::new("/run/ctdb/ctdbd.pid"));
        assert_eq!(
            s.log_target,
            LogTarget::File("/var/log/ctdb/log.ctdb".into())
        );
        assert!(s.realtime);
        assert_eq!(s.log_level, DebugLevel::Notice);

        let env = Env {
            base: Some("/tmp/base".into()),
            socket: Some("/tmp/env.socket".into()),
            test_mode: true,
        };
        let s = Settings::resolve(parse(&["--nosetsched"]).unwrap(), &env).unwrap();
        assert_eq!(s.socket, Path::new("/tmp/env.socket"));
        assert_eq!(s.pidfile, Path::new("/tmp/base/run/ctdbd.pid"));
        assert!(!s.realtime);
        let s =
            Settings::resolve(parse(&["--socket=/tmp/opt.socket", "-i"]).unwrap(), &env).unwrap();
        assert_eq!(s.socket, Path::new("/tmp/opt.socket"));
        assert_eq!(s.log_target, LogTarget::Stderr);
        let env = Env {
            test_mode: true,
            ..Env::default()
        };
        assert!(Settings::resolve(parse(&[]).unwrap(), &env).is_err());
    }
}
