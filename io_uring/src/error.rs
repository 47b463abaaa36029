//! The crate's one error type.
//!
//! Framing errors carry the stream offset of the offending packet so a log
//! line says where in a connection the garbage started; I/O errors carry the
//! operation that failed.

use std::fmt;
use std::io;

/// Why a packet could not be read, written or queued.
#[derive(Debug)]
pub enum IoError {
    /// A packet's length field is below the header size or above the
    /// configured maximum. The stream cannot be resynchronised after this.
    BadLength {
        length: u32,
        min: u32,
        max: u32,
        /// Byte offset of the packet in the stream.
        offset: u64,
    },
    /// The header's magic is not `0x43544442` ("CTDB").
    BadMagic { magic: u32, offset: u64 },
    /// The peer closed the stream in the middle of a packet.
    Truncated {
        /// Bytes of the unfinished packet that did arrive.
        have: usize,
        /// Bytes the packet needed (4 when even the length was incomplete).
        need: usize,
        offset: u64,
    },
    /// A packet handed to a writer is not a well-formed frame: its length
    /// field does not match the bytes given, or it is shorter than a header.
    BadOutgoing {
        length_field: u32,
        actual: usize,
        reason: &'static str,
    },
    /// A socket operation failed.
    Io { op: &'static str, source: io::Error },
    /// A send queue is full (only from `try_send`).
    QueueFull { capacity: usize },
    /// A send queue's writer has stopped; `cause` says why when known.
    QueueClosed { cause: Option<String> },
}

impl IoError {
    pub(crate) fn io(op: &'static str, source: io::Error) -> Self {
        IoError::Io { op, source }
    }

    /// True for errors caused by what the peer sent (as opposed to local
    /// failures): the connection should be dropped, the process kept.
    pub fn is_peer_fault(&self) -> bool {
        matches!(
            self,
            IoError::BadLength { .. } | IoError::BadMagic { .. } | IoError::Truncated { .. }
        )
    }
}

impl fmt::Display for IoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IoError::BadLength {
                length,
                min,
                max,
                offset,
            } => write!(
                f,
                "packet at stream offset {offset}: length {length} outside {min}..={max}"
            ),
            IoError::BadMagic { magic, offset } => write!(
                f,
                "packet at stream offset {offset}: bad magic 0x{magic:08x} (want 0x43544442)"
            ),
            IoError::Truncated { have, need, offset } => write!(
                f,
                "stream closed inside packet at offset {offset}: have {have} of {need} bytes"
            ),
            IoError::BadOutgoing {
                length_field,
                actual,
                reason,
            } => write!(
                f,
                "refusing to send packet of {actual} bytes with length field {length_field}: {reason}"
            ),
            IoError::Io { op, source } => write!(f, "{op}: {source}"),
            IoError::QueueFull { capacity } => {
                write!(f, "send queue full ({capacity} packets)")
            }
            IoError::QueueClosed { cause: Some(c) } => write!(f, "send queue closed: {c}"),
            IoError::QueueClosed { cause: None } => write!(f, "send queue closed"),
        }
    }
}

impl std::error::Error for IoError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            IoError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}
