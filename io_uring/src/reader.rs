//! [`PacketReader`]: whole CTDB packets out of a byte stream.
//!
//! Why a buffer of our own rather than glommio's buffered streams: a packet
//! must be handed out as one contiguous `&[u8]` (the protocol crate decodes
//! by borrowing from it), and small packets arrive many to a read. The reader
//! keeps one growable buffer per connection, reads in large chunks, hands out
//! slices into it, and moves leftover bytes to the front only when a packet
//! would not fit behind them. The buffer grows (by doubling) only as the
//! bytes of a large packet actually arrive, so a length field announcing a
//! huge packet costs nothing by itself; after a large packet the buffer is
//! shrunk back, so an idle connection does not pin megabytes.

use futures_lite::io::{AsyncRead, AsyncReadExt};

use crate::error::IoError;
use crate::frame::{length_field, magic_field, FrameConfig, CTDB_MAGIC};

/// Reads whole packets from `S` (a glommio `UnixStream` or `TcpStream`, or
/// anything else that is [`AsyncRead`]).
#[derive(Debug)]
pub struct PacketReader<S> {
    stream: S,
    cfg: FrameConfig,
    buf: Vec<u8>,
    /// Valid, unconsumed bytes are `buf[start..end]`.
    start: usize,
    end: usize,
    /// Size of the packet last handed out; consumed on the next call.
    handed_out: usize,
    /// Stream offset of `buf[start]`.
    offset: u64,
    packets: u64,
}

impl<S: AsyncRead + Unpin> PacketReader<S> {
    pub fn new(stream: S) -> Self {
        Self::with_config(stream, FrameConfig::default())
    }

    pub fn with_config(stream: S, cfg: FrameConfig) -> Self {
        let cfg = FrameConfig {
            read_chunk: cfg.read_chunk.max(64),
            ..cfg
        };
        PacketReader {
            stream,
            buf: vec![0; cfg.read_chunk],
            cfg,
            start: 0,
            end: 0,
            handed_out: 0,
            offset: 0,
            packets: 0,
        }
    }

    /// The next whole packet, or `None` when the peer closed the stream
    /// cleanly between packets. The slice is valid until the next call.
    ///
    /// Errors are final for the stream: after a bad length or magic the
    /// packet boundaries are lost, so the caller should drop the connection.
    pub async fn next_packet(&mut self) -> Result<Option<&[u8]>, IoError> {
        self.consume_handed_out();
        loop {
            let avail = self.end - self.start;
            let mut need = 4usize;
            if avail >= 4 {
                let len = length_field(&self.buf[self.start..self.end]).unwrap_or(0);
                self.cfg.check_length(len, self.offset)?;
                need = len as usize;
            }
            if avail >= 8 && self.cfg.check_magic {
                let magic = magic_field(&self.buf[self.start..self.end]).unwrap_or(0);
                if magic != CTDB_MAGIC {
                    return Err(IoError::BadMagic {
                        magic,
                        offset: self.offset,
                    });
                }
            }
            if avail >= need && avail >= 4 {
                self.handed_out = need;
                self.packets += 1;
                return Ok(Some(&self.buf[self.start..self.start + need]));
            }
            self.make_room(need);
            let n = self
                .stream
                .read(&mut self.buf[self.end..])
                .await
                .map_err(|e| IoError::io("read packet", e))?;
            if n == 0 {
                if avail == 0 {
                    return Ok(None);
                }
                return Err(IoError::Truncated {
                    have: avail,
                    need,
                    offset: self.offset,
                });
            }
            self.end += n;
        }
    }

    fn consume_handed_out(&mut self) {
        if self.handed_out == 0 {
            return;
        }
        self.start += self.handed_out;
        self.offset += self.handed_out as u64;
        self.handed_out = 0;
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
            // Give back memory taken by a large packet once it is done.
            if self.buf.len() > 4 * self.cfg.read_chunk {
                self.buf = vec![0; self.cfg.read_chunk];
            }
        }
    }

    /// Ensures a packet of `need` bytes starting at `start` fits in the
    /// buffer, and that a read has a useful amount of space behind `end`.
    fn make_room(&mut self, need: usize) {
        let tail = self.buf.len() - self.end;
        if self.start > 0 && (self.buf.len() - self.start < need || tail < self.cfg.read_chunk / 4)
        {
            // Move the partial packet to the front.
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.buf.len() < need && self.buf.len() - self.end < self.cfg.read_chunk {
            // Grow by doubling as bytes arrive, not to the announced length
            // at once: a hostile length field costs nothing until the bytes
            // are really sent. `need` was checked against `max_packet`.
            let grown = (self.buf.len() * 2).max(self.end + self.cfg.read_chunk);
            self.buf.resize(grown.min(need), 0);
        }
        debug_assert!(self.end < self.buf.len());
    }

    /// Packets handed out so far.
    pub fn packets(&self) -> u64 {
        self.packets
    }

    /// Bytes received but not yet handed out as packets.
    pub fn buffered(&self) -> usize {
        self.end - self.start - self.handed_out
    }

    /// Current size of the receive buffer (for tests and statistics).
    pub fn capacity(&self) -> usize {
        self.buf.len()
    }

    pub fn get_ref(&self) -> &S {
        &self.stream
    }

    pub fn get_mut(&mut self) -> &mut S {
        &mut self.stream
    }

    pub fn into_inner(self) -> S {
        self.stream
    }
}
