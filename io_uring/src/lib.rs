//! Packet framing over glommio's io_uring sockets.
//!
//! CTDB speaks length-prefixed packets over Unix stream sockets (clients) and
//! TCP (node links). This crate turns those byte streams into whole packets
//! and back, and nothing more: it knows the length field, the magic and
//! ctdbd's 8-byte padding, and leaves every other header field to
//! `ctdb-protocol`.
//!
//! * [`PacketReader`] reads whole packets into a reused buffer and hands out
//!   `&[u8]` slices of complete packets; bad lengths (below the 32-byte
//!   header or above a configurable maximum), a bad magic and a stream cut
//!   inside a packet are typed errors.
//! * [`PacketWriter`] writes one packet at a time; [`SendQueue`] is a bounded
//!   queue with a writer task, whose `send().await` waits while the queue is
//!   full; a packet for an idle queue is written at once by the sender
//!   (`send_all` writes a run of replies in one call).
//! * [`split`] gives a read half and a write half of one socket to two
//!   tasks of the same core.
//!
//! Everything here is single-core: readers, writers and queues live on the
//! glommio executor that owns the socket, as the daemon's thread-per-core
//! design requires. All I/O goes through glommio's reactor, so an idle
//! connection costs no CPU.

#![forbid(unsafe_code)]

pub mod error;
pub mod frame;
pub mod reader;
pub mod split;
pub mod writer;

pub use error::IoError;
pub use frame::{
    check_outgoing, pad_packet, padded_len, FrameConfig, CTDB_MAGIC, DEFAULT_MAX_PACKET,
    HEADER_LEN, PACKET_ALIGN,
};
pub use reader::PacketReader;
pub use split::{split, ReadHalf, WriteHalf};
pub use writer::{PacketWriter, SendQueue, SendQueueConfig};
