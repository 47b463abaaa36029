//! The one error type of the test harness. Every variant names the file,
//! node or command it is about, so a failing test says what went wrong
//! without having to re-run it under a debugger.

use std::fmt;
use std::io;
use std::path::PathBuf;

/// Everything that can go wrong while setting up, driving or stopping a
/// local cluster.
#[derive(Debug)]
pub enum HarnessError {
    /// A file or directory operation failed.
    Io {
        /// What was being done ("create directory", "write ctdb.conf", ...).
        what: &'static str,
        /// The path it was done to.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// A program could not be started at all.
    Spawn {
        /// The program.
        program: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// The cluster description is unusable (no nodes, address overflow...).
    BadSpec(String),
    /// A node index outside the cluster was used.
    NoSuchNode {
        /// The index asked for.
        node: usize,
        /// How many nodes the cluster has.
        nodes: usize,
    },
    /// A daemon exited while it should have been running.
    DaemonExited {
        /// Node number.
        node: usize,
        /// Exit status as printed by std.
        status: String,
        /// The last lines of the node's log.
        log_tail: String,
    },
    /// The cluster did not become healthy within the time allowed.
    NotHealthy {
        /// How long was waited, in milliseconds.
        waited_ms: u128,
        /// The last `ctdb status` output (or error) seen, per node.
        last: String,
    },
    /// No free block of loopback addresses could be reserved.
    NoAddresses(String),
    /// A process did not go away even after SIGKILL.
    Unkillable {
        /// The process id.
        pid: u32,
    },
}

impl fmt::Display for HarnessError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HarnessError::Io { what, path, source } => {
                write!(f, "{what} {}: {source}", path.display())
            }
            HarnessError::Spawn { program, source } => {
                write!(f, "cannot start {}: {source}", program.display())
            }
            HarnessError::BadSpec(msg) => write!(f, "bad cluster description: {msg}"),
            HarnessError::NoSuchNode { node, nodes } => {
                write!(f, "node {node} does not exist (cluster has {nodes} nodes)")
            }
            HarnessError::DaemonExited {
                node,
                status,
                log_tail,
            } => write!(
                f,
                "ctdbd of node {node} exited ({status}); end of its log:\n{log_tail}"
            ),
            HarnessError::NotHealthy { waited_ms, last } => write!(
                f,
                "cluster not healthy after {waited_ms} ms; last status seen:\n{last}"
            ),
            HarnessError::NoAddresses(msg) => write!(f, "no loopback addresses: {msg}"),
            HarnessError::Unkillable { pid } => {
                write!(f, "process {pid} still exists after SIGKILL")
            }
        }
    }
}

impl std::error::Error for HarnessError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            HarnessError::Io { source, .. } | HarnessError::Spawn { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// Shorthand used throughout the harness.
pub type Result<T> = std::result::Result<T, HarnessError>;

/// Attach a description and a path to an I/O error.
pub(crate) fn io_err(
    what: &'static str,
    path: impl Into<PathBuf>,
) -> impl FnOnce(io::Error) -> HarnessError {
    let path = path.into();
    move |source| HarnessError::Io { what, path, source }
}
