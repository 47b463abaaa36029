//! The engine's single error type. Every variant that concerns a file names
//! the file, and corruption errors name the logical offset at fault, so a bad
//! database can be diagnosed from the message alone.

use std::fmt;
use std::io;
use std::path::PathBuf;

#[derive(Debug)]
pub enum Error {
    /// A system call on the database file failed.
    Io {
        path: PathBuf,
        op: &'static str,
        source: io::Error,
    },
    /// The file is not a TDB file this engine can use (magic, version,
    /// hash, feature flags, mutex size...).
    BadHeader { path: PathBuf, what: String },
    /// The file's contents are inconsistent at `offset`.
    Corrupt {
        path: PathBuf,
        offset: u64,
        what: String,
    },
    /// Store with `StoreFlag::Insert` of a key that exists.
    Exists,
    /// Store with `StoreFlag::Modify` (or delete) of a key that is absent.
    NotFound,
    /// The key's hash chain belongs to another core.
    NotOwner {
        chain: u32,
        owner: usize,
        core: usize,
    },
    /// The operation needs a handle that owns every chain.
    NeedsAllChains { op: &'static str },
    /// Write attempted through a read-only handle or inside a read traverse.
    ReadOnly { path: PathBuf },
    /// A lock could not be taken (non-blocking) or lock use was invalid.
    Lock {
        path: PathBuf,
        offset: u64,
        what: String,
    },
    /// API misuse (nested transaction, commit without transaction, ...).
    Invalid { what: String },
    /// The database would exceed the 4 GiB format limit.
    TooBig { path: PathBuf, need: u64 },
}

pub type Result<T> = std::result::Result<T, Error>;

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io { path, op, source } => {
                write!(f, "{}: {op} failed: {source}", path.display())
            }
            Error::BadHeader { path, what } => {
                write!(f, "{}: not a usable TDB file: {what}", path.display())
            }
            Error::Corrupt { path, offset, what } => {
                write!(
                    f,
                    "{}: corrupt database at offset {offset}: {what}",
                    path.display()
                )
            }
            Error::Exists => write!(f, "record exists"),
            Error::NotFound => write!(f, "record not found"),
            Error::NotOwner { chain, owner, core } => {
                write!(
                    f,
                    "hash chain {chain} is owned by core {owner}, not core {core}"
                )
            }
            Error::NeedsAllChains { op } => {
                write!(f, "{op} needs a handle that owns all hash chains")
            }
            Error::ReadOnly { path } => write!(f, "{}: database is read-only here", path.display()),
            Error::Lock { path, offset, what } => {
                write!(f, "{}: lock at {offset}: {what}", path.display())
            }
            Error::Invalid { what } => write!(f, "invalid use: {what}"),
            Error::TooBig { path, need } => {
                write!(
                    f,
                    "{}: database would exceed 4 GiB (needs {need} bytes)",
                    path.display()
                )
            }
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}
