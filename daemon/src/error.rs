//! The daemon crate's one error type. Every variant names the thing that
//! failed (path, core, CPU, limit, packet field and offset) so a start-up
//! failure tells the operator what to fix and a bad packet where it is bad.

use std::fmt;
use std::io;
use std::path::PathBuf;

#[derive(Debug)]
pub enum DaemonError {
    /// A command-line or configuration value is unusable.
    BadOption { option: &'static str, why: String },
    /// RLIMIT_MEMLOCK is below what glommio's io_uring rings need.
    MemLockLimit { have: u64, need: u64 },
    /// More cores requested than CPUs we may run on.
    NotEnoughCpus { wanted: usize, allowed: Vec<usize> },
    /// A glommio executor could not be built or started.
    Executor {
        core: usize,
        cpu: usize,
        why: String,
    },
    /// `sched_setscheduler(SCHED_FIFO)` was refused on a core.
    Scheduler { core: usize, source: io::Error },
    /// `mlockall` failed.
    MemLock { source: io::Error },
    /// Cores did not report ready in time.
    StartTimeout { core: usize },
    /// Another ctdbd already holds the PID file or answers on the socket.
    AlreadyRunning { what: &'static str, path: PathBuf },
    /// A file-system or socket operation on a path failed.
    Path {
        op: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    /// Any other system call failed.
    Sys { op: &'static str, source: io::Error },
    /// Framing on a connection failed.
    Io(ctdb_io::IoError),
    /// The configuration (ctdb.conf, paths, overrides) is unusable.
    Config(ctdb_config::ConfigError),
    /// An event-daemon packet ended before a field was complete.
    Truncated {
        what: &'static str,
        offset: usize,
        need: usize,
        have: usize,
    },
    /// An event-daemon packet field held a value the protocol does not allow.
    BadValue {
        what: &'static str,
        offset: usize,
        value: String,
    },
    /// An event-daemon packet's length field is unusable.
    BadLength { length: u32, why: &'static str },
    /// The event daemon replied to a different request or command.
    Mismatch {
        what: &'static str,
        expected: u32,
        got: u32,
    },
}

impl DaemonError {
    pub fn path(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        DaemonError::Path {
            op,
            path: path.into(),
            source,
        }
    }

    pub fn sys(op: &'static str, source: io::Error) -> Self {
        DaemonError::Sys { op, source }
    }
}

impl fmt::Display for DaemonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DaemonError::BadOption { option, why } => write!(f, "invalid {option}: {why}"),
            DaemonError::MemLockLimit { have, need } => write!(
                f,
                "RLIMIT_MEMLOCK is {} KiB but io_uring needs at least {} KiB locked memory; \
                 raise it with `ulimit -l {}` (or `ulimit -l unlimited`) in the starting shell, \
                 or LimitMEMLOCK=infinity in the systemd unit",
                have / 1024,
                need / 1024,
                need.div_ceil(1024)
            ),
            DaemonError::NotEnoughCpus { wanted, allowed } => write!(
                f,
                "{wanted} cores requested but this process may only run on CPUs {allowed:?}"
            ),
            DaemonError::Executor { core, cpu, why } => {
                write!(f, "cannot start core {core} on CPU {cpu}: {why}")
            }
            DaemonError::Scheduler { core, source } => write!(
                f,
                "unable to set scheduler to SCHED_FIFO on core {core} ({source}); \
                 set `realtime scheduling = false` in ctdb.conf or pass --nosetsched"
            ),
            DaemonError::MemLock { source } => write!(
                f,
                "mlockall failed ({source}); raise RLIMIT_MEMLOCK (`ulimit -l unlimited`, \
                 LimitMEMLOCK=infinity) or run without memory locking"
            ),
            DaemonError::StartTimeout { core } => {
                write!(
                    f,
                    "core {core} did not report ready within the start-up timeout"
                )
            }
            DaemonError::AlreadyRunning { what, path } => {
                write!(f, "another ctdbd is running ({what} {})", path.display())
            }
            DaemonError::Path { op, path, source } => {
                write!(f, "{op} {}: {source}", path.display())
            }
            DaemonError::Sys { op, source } => write!(f, "{op}: {source}"),
            DaemonError::Io(e) => write!(f, "{e}"),
            DaemonError::Config(e) => write!(f, "{e}"),
            DaemonError::Truncated {
                what,
                offset,
                need,
                have,
            } => write!(
                f,
                "event packet truncated in {what} at offset {offset}: need {need} bytes, have {have}"
            ),
            DaemonError::BadValue {
                what,
                offset,
                value,
            } => write!(f, "event packet has invalid {what} at offset {offset}: {value}"),
            DaemonError::BadLength { length, why } => {
                write!(f, "event packet length {length} is invalid: {why}")
            }
            DaemonError::Mismatch {
                what,
                expected,
                got,
            } => write!(f, "event reply {what} is {got}, expected {expected}"),
        }
    }
}

impl std::error::Error for DaemonError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            DaemonError::Scheduler { source, .. }
            | DaemonError::MemLock { source }
            | DaemonError::Path { source, .. }
            | DaemonError::Sys { source, .. } => Some(source),
            DaemonError::Io(e) => Some(e),
            DaemonError::Config(e) => Some(e),
            _ => None,
        }
    }
}

impl From<ctdb_io::IoError> for DaemonError {
    fn from(e: ctdb_io::IoError) -> Self {
        DaemonError::Io(e)
    }
}

impl From<ctdb_config::ConfigError> for DaemonError {
    fn from(e: ctdb_config::ConfigError) -> Self {
        DaemonError::Config(e)
    }
}
