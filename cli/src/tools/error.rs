//! The tools' error type. The tools print upstream's exact messages for the
//! failures upstream reports; this type carries everything else (and the
//! context needed to make those messages clear) up to `main`.

use std::fmt;
use std::io;

#[derive(Debug)]
pub enum ToolError {
    /// A system call failed; `what` names the operation and the object
    /// (file, command, node).
    Io { what: String, source: io::Error },
    /// The storage engine refused a database file.
    Engine {
        what: String,
        source: ctdb_engine::Error,
    },
    /// Input (arguments, files) that cannot be used.
    Invalid { what: String },
}

impl ToolError {
    pub fn io(what: impl Into<String>, source: io::Error) -> ToolError {
        ToolError::Io {
            what: what.into(),
            source,
        }
    }
    pub fn engine(what: impl Into<String>, source: ctdb_engine::Error) -> ToolError {
        ToolError::Engine {
            what: what.into(),
            source,
        }
    }
    pub fn invalid(what: impl Into<String>) -> ToolError {
        ToolError::Invalid { what: what.into() }
    }
}

impl fmt::Display for ToolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ToolError::Io { what, source } => write!(f, "{what}: {}", super::strerror(source)),
            ToolError::Engine { what, source } => write!(f, "{what}: {source}"),
            ToolError::Invalid { what } => write!(f, "{what}"),
        }
    }
}

impl std::error::Error for ToolError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ToolError::Io { source, .. } => Some(source),
            ToolError::Engine { source, .. } => Some(source),
            ToolError::Invalid { .. } => None,
        }
    }
}
