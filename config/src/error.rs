//! The single error type of this crate.
//!
//! Every error names the file it came from and, where there is one, the
//! line, so that an operator can go straight to the offending text. The
//! `Display` form is `path:line: reason`, e.g.
//! `/etc/ctdb/ctdb.conf:12: unknown key "foo" in section [cluster]`.

use std::fmt;
use std::path::{Path, PathBuf};

/// What kind of problem a [`ConfigError::Parse`] describes. Lets callers
/// (and tests) match on the cause without parsing the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// A `[section]` that no component defines.
    UnknownSection,
    /// A `key = value` line before any (known) section header.
    OptionOutsideSection,
    /// A key the current section does not define.
    UnknownKey,
    /// `key =` with nothing after the equals sign.
    EmptyValue,
    /// The text cannot be converted to the option's type (integer, boolean,
    /// address, number ...).
    InvalidValue,
    /// The value has the right type but the option's validator rejects it
    /// (missing directory, unsupported transport, ...).
    ValidationFailed,
    /// A line that cannot be parsed at all (unterminated `[section`, empty
    /// key name, bytes that are not UTF-8).
    Syntax,
    /// A value that appears twice where it must be unique (public address).
    Duplicate,
    /// A tunable that exists but is obsolete (rejected in `ctdb.tunables`).
    Obsolete,
}

/// Errors from loading, parsing or validating CTDB configuration.
#[derive(Debug)]
pub enum ConfigError {
    /// A file could not be read (other than "does not exist" where the file
    /// is optional).
    Io {
        /// The file or directory concerned.
        path: PathBuf,
        /// The operating-system error.
        source: std::io::Error,
    },
    /// A problem on one line of a file.
    Parse {
        /// The file.
        path: PathBuf,
        /// 1-based line number (the first physical line of a continued line).
        line: usize,
        /// Category of the problem.
        kind: ErrorKind,
        /// Human-readable reason.
        reason: String,
    },
    /// Both `ctdb.conf` and `ctdb.toml` exist; we refuse to guess which one
    /// the administrator meant.
    BothConfigFiles {
        /// The ini-style file.
        conf: PathBuf,
        /// The TOML file.
        toml: PathBuf,
    },
    /// An environment variable is missing or unusable (e.g. `CTDB_TEST_MODE`
    /// set without `CTDB_BASE`).
    Environment {
        /// The variable.
        var: String,
        /// What is wrong.
        reason: String,
    },
    /// A programmatic get/set named something that does not exist or gave a
    /// value that is not acceptable (no file involved).
    Option {
        /// `[section] -> key` or tunable name.
        name: String,
        /// Category of the problem.
        kind: ErrorKind,
        /// Human-readable reason.
        reason: String,
    },
    /// Several independent problems in one file, in line order. Upstream
    /// reports all of them before giving up, and so do we.
    Several(Vec<ConfigError>),
}

impl ConfigError {
    pub(crate) fn parse(
        path: &Path,
        line: usize,
        kind: ErrorKind,
        reason: impl Into<String>,
    ) -> Self {
        ConfigError::Parse {
            path: path.to_path_buf(),
            line,
            kind,
            reason: reason.into(),
        }
    }

    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        ConfigError::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    /// Turn a list of errors into one: the error itself when there is
    /// exactly one, [`ConfigError::Several`] otherwise. `None` when empty.
    pub(crate) fn collect(mut errors: Vec<ConfigError>) -> Option<ConfigError> {
        match errors.len() {
            0 => None,
            1 => errors.pop(),
            _ => Some(ConfigError::Several(errors)),
        }
    }

    /// The line number, for a single-line error (the first one for
    /// [`ConfigError::Several`]).
    pub fn line(&self) -> Option<usize> {
        match self {
            ConfigError::Parse { line, .. } => Some(*line),
            ConfigError::Several(v) => v.first().and_then(|e| e.line()),
            _ => None,
        }
    }

    /// The kind, for line and option errors (the first one for
    /// [`ConfigError::Several`]).
    pub fn kind(&self) -> Option<ErrorKind> {
        match self {
            ConfigError::Parse { kind, .. } | ConfigError::Option { kind, .. } => Some(*kind),
            ConfigError::Several(v) => v.first().and_then(|e| e.kind()),
            _ => None,
        }
    }

    /// All the single errors contained in this one, in order.
    pub fn errors(&self) -> Vec<&ConfigError> {
        match self {
            ConfigError::Several(v) => v.iter().flat_map(|e| e.errors()).collect(),
            e => vec![e],
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::Io { path, source } => write!(f, "{}: {}", path.display(), source),
            ConfigError::Parse {
                path, line, reason, ..
            } => write!(f, "{}:{}: {}", path.display(), line, reason),
            ConfigError::BothConfigFiles { conf, toml } => write!(
                f,
                "both {} and {} exist; remove one of them",
                conf.display(),
                toml.display()
            ),
            ConfigError::Environment { var, reason } => write!(f, "{}: {}", var, reason),
            ConfigError::Option { name, reason, .. } => write!(f, "{}: {}", name, reason),
            ConfigError::Several(v) => {
                for (i, e) in v.iter().enumerate() {
                    if i > 0 {
                        writeln!(f)?;
                    }
                    write!(f, "{}", e)?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for ConfigError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ConfigError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}
