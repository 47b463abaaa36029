//! The protocol crate's one error type.

use std::fmt;

/// Why a byte string is not a valid CTDB packet or value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProtocolError {
    /// A field needs more bytes than remain.
    Short {
        what: &'static str,
        need: usize,
        have: usize,
    },
    /// A whole-buffer decode left bytes over.
    Trailing { what: &'static str, extra: usize },
    /// The header's magic is not 0x43544442.
    BadMagic(u32),
    /// The header's version is not 1.
    BadVersion(u32),
    /// A packet's length field is below the header size or above the limit.
    BadLength { length: u32, min: u32, max: u32 },
    /// An operation code we do not know.
    UnknownOperation(u32),
    /// A field holds a value outside its domain.
    BadValue { what: &'static str, value: u64 },
    /// A string that must be NUL-terminated is not, or holds an inner NUL.
    BadString { what: &'static str },
    /// A value is too large to encode: a length does not fit its `u32`
    /// field.
    TooLarge { what: &'static str, len: usize },
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProtocolError::Short { what, need, have } => {
                write!(f, "{what}: need {need} bytes, only {have} left")
            }
            ProtocolError::Trailing { what, extra } => {
                write!(f, "{what}: {extra} unexpected trailing bytes")
            }
            ProtocolError::BadMagic(m) => write!(f, "bad packet magic 0x{m:08x}"),
            ProtocolError::BadVersion(v) => write!(f, "unsupported protocol version {v}"),
            ProtocolError::BadLength { length, min, max } => {
                write!(f, "packet length {length} outside {min}..={max}")
            }
            ProtocolError::UnknownOperation(op) => write!(f, "unknown operation {op}"),
            ProtocolError::BadValue { what, value } => write!(f, "{what}: invalid value {value}"),
            ProtocolError::BadString { what } => write!(f, "{what}: malformed string"),
            ProtocolError::TooLarge { what, len } => {
                write!(f, "{what}: {len} bytes do not fit a 32-bit length field")
            }
        }
    }
}

impl std::error::Error for ProtocolError {}
