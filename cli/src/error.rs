//! The crate's error type, for callers that use the library API rather than
//! the binary (the binary reports upstream's messages and exit codes).

use std::fmt;

#[derive(Debug)]
pub enum CliError {
    /// Connecting to the daemon socket failed with this errno.
    Connect { path: String, errno: i32 },
    /// A control failed: transport errno or daemon status.
    Control { name: &'static str, code: i32 },
    /// A reply or file could not be decoded.
    Decode {
        what: String,
        source: ctdb_protocol::ProtocolError,
    },
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CliError::Connect { path, errno } => {
                write!(f, "cannot connect to {path}: errno {errno}")
            }
            CliError::Control { name, code } => write!(f, "control {name} failed: {code}"),
            CliError::Decode { what, source } => write!(f, "cannot decode {what}: {source}"),
        }
    }
}

impl std::error::Error for CliError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            CliError::Decode { source, .. } => Some(source),
            _ => None,
        }
    }
}
