//! The one error type of ctdb-perf.
//!
//! Why: a benchmark run touches sockets, database files, child processes
//! and command lines; every failure must say which of them went wrong (the
//! socket path, the control, the database file) so a broken run can be
//! diagnosed from its one-line message.

use std::fmt;
use std::io;
use std::path::PathBuf;

#[derive(Debug)]
pub enum PerfError {
    /// A system call failed; `what` names the object (socket path, file...).
    Io { what: String, source: io::Error },
    /// Bytes from the daemon did not decode.
    Protocol {
        what: String,
        source: ctdb_protocol::ProtocolError,
    },
    /// A control was answered with a non-zero status.
    Control {
        opcode: &'static str,
        status: i32,
        message: String,
    },
    /// A REQ_CALL failed (REPLY_ERROR or non-zero status).
    Call {
        db: String,
        status: i32,
        message: String,
    },
    /// The local database file could not be used.
    Engine {
        path: PathBuf,
        source: ctdb_engine::Error,
    },
    /// The daemon closed the connection.
    Closed { socket: PathBuf },
    /// A deadline passed.
    Timeout { what: String },
    /// Starting, watching or stopping a cluster failed.
    Cluster(String),
    /// A bad command-line value.
    Args(String),
}

impl fmt::Display for PerfError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PerfError::Io { what, source } => write!(f, "{what}: {source}"),
            PerfError::Protocol { what, source } => write!(f, "{what}: {source}"),
            PerfError::Control {
                opcode,
                status,
                message,
            } => {
                write!(f, "control {opcode} failed with status {status}")?;
                if !message.is_empty() {
                    write!(f, ": {message}")?;
                }
                Ok(())
            }
            PerfError::Call {
                db,
                status,
                message,
            } => write!(f, "REQ_CALL on {db} failed with status {status} {message}"),
            PerfError::Engine { path, source } => {
                write!(f, "database {}: {source}", path.display())
            }
            PerfError::Closed { socket } => {
                write!(f, "ctdbd closed the connection on {}", socket.display())
            }
            PerfError::Timeout { what } => write!(f, "timed out: {what}"),
            PerfError::Cluster(m) => write!(f, "cluster: {m}"),
            PerfError::Args(m) => write!(f, "bad argument: {m}"),
        }
    }
}

impl std::error::Error for PerfError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            PerfError::Io { source, .. } => Some(source),
            PerfError::Protocol { source, .. } => Some(source),
            PerfError::Engine { source, .. } => Some(source),
            _ => None,
        }
    }
}

impl PerfError {
    pub fn io(what: impl Into<String>, source: io::Error) -> PerfError {
        PerfError::Io {
            what: what.into(),
            source,
        }
    }
}

pub type Result<T> = std::result::Result<T, PerfError>;
