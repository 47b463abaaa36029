//! Sending packets: [`PacketWriter`] writes one packet at a time for a task
//! that owns the socket; [`SendQueue`] lets many tasks of one core queue
//! packets for a connection, with a writer task draining the queue.
//!
//! Why a bounded queue: a slow or stuck peer must not make a core buffer
//! without limit (upstream's queue is unbounded and has taken nodes down by
//! memory). When the queue is full, `send().await` waits, which pushes the
//! back-pressure up to whoever produces the packets.
//!
//! Padding: ctdbd pads every packet it sends to 8 bytes and rewrites the
//! length field; smbd does not. Both writers can do either.

use std::cell::RefCell;
use std::rc::Rc;

use futures_lite::io::{AsyncWrite, AsyncWriteExt};
use glommio::channels::local_channel::{self, LocalSender};
use glommio::{GlommioError, Task};

use crate::error::IoError;
use crate::frame::{check_outgoing, pad_packet, padded_len, FrameConfig};

/// Writes whole packets to `S`, optionally padded as ctdbd does.
#[derive(Debug)]
pub struct PacketWriter<S> {
    stream: S,
    cfg: FrameConfig,
    pad: bool,
    scratch: Vec<u8>,
    packets: u64,
}

impl<S: AsyncWrite + Unpin> PacketWriter<S> {
    /// `pad`: round every packet up to 8 bytes and rewrite its length.
    pub fn new(stream: S, cfg: FrameConfig, pad: bool) -> Self {
        PacketWriter {
            stream,
            cfg,
            pad,
            scratch: Vec::new(),
            packets: 0,
        }
    }

    /// Writes `pkt` completely. Its length field must equal `pkt.len()`.
    pub async fn write_packet(&mut self, pkt: &[u8]) -> Result<(), IoError> {
        check_outgoing(pkt, &self.cfg)?;
        if self.pad && padded_len(pkt.len()) != pkt.len() {
            self.scratch.clear();
            self.scratch.extend_from_slice(pkt);
            pad_packet(&mut self.scratch, &self.cfg)?;
            write_all(&mut self.stream, &self.scratch).await?;
        } else {
            write_all(&mut self.stream, pkt).await?;
        }
        self.packets += 1;
        Ok(())
    }

    /// Packets written so far.
    pub fn packets(&self) -> u64 {
        self.packets
    }

    pub fn get_ref(&self) -> &S {
        &self.stream
    }

    pub fn into_inner(self) -> S {
        self.stream
    }
}

async fn write_all<S: AsyncWrite + Unpin>(stream: &mut S, buf: &[u8]) -> Result<(), IoError> {
    stream
        .write_all(buf)
        .await
        .map_err(|e| IoError::io("write packet", e))
}

/// Settings of a [`SendQueue`].
#[derive(Debug, Clone, Copy)]
pub struct SendQueueConfig {
    pub frame: FrameConfig,
    /// Pad packets to 8 bytes (ctdbd does on node links and client sockets).
    pub pad: bool,
    /// Packets that may wait in the queue; one more may be in the writer's
    /// hands. At least 1.
    pub capacity: usize,
}

impl Default for SendQueueConfig {
    fn default() -> Self {
        SendQueueConfig {
            frame: FrameConfig::default(),
            pad: true,
            capacity: 1024,
        }
    }
}

/// A bounded per-connection send queue drained by a writer task on the
/// current glommio executor. Not `Send`: it belongs to the core that owns
/// the socket. Share it between tasks of that core with `Rc`.
pub struct SendQueue<S> {
    tx: LocalSender<Vec<u8>>,
    cfg: SendQueueConfig,
    failure: Rc<RefCell<Option<String>>>,
    writer: Task<Result<PacketWriter<S>, IoError>>,
}

impl<S: AsyncWrite + Unpin + 'static> SendQueue<S> {
    /// Starts the writer task for `stream` on the current executor. Must be
    /// called from inside a glommio executor.
    pub fn spawn(stream: S, cfg: SendQueueConfig) -> Self {
        let capacity = cfg.capacity.max(1);
        let cfg = SendQueueConfig { capacity, ..cfg };
        let (tx, rx) = local_channel::new_bounded::<Vec<u8>>(capacity);
        let failure = Rc::new(RefCell::new(None));
        let fail = failure.clone();
        let mut writer = PacketWriter::new(stream, cfg.frame, false);
        let writer = glommio::spawn_local(async move {
            while let Some(pkt) = rx.recv().await {
                if let Err(e) = writer.write_packet(&pkt).await {
                    *fail.borrow_mut() = Some(e.to_string());
                    // Dropping `rx` wakes every waiting sender with an error.
                    return Err(e);
                }
            }
            Ok(writer)
        });
        SendQueue {
            tx,
            cfg,
            failure,
            writer,
        }
    }

    fn prepare(&self, mut pkt: Vec<u8>) -> Result<Vec<u8>, IoError> {
        if self.cfg.pad {
            pad_packet(&mut pkt, &self.cfg.frame)?;
        } else {
            check_outgoing(&pkt, &self.cfg.frame)?;
        }
        Ok(pkt)
    }

    fn closed(&self) -> IoError {
        IoError::QueueClosed {
            cause: self.failure.borrow().clone(),
        }
    }

    /// Queues `pkt` (padded first if configured), waiting while the queue
    /// is full. Fails when the writer has stopped.
    pub async fn send(&self, pkt: Vec<u8>) -> Result<(), IoError> {
        let pkt = self.prepare(pkt)?;
        match self.tx.send(pkt).await {
            Ok(()) => Ok(()),
            Err(_) => Err(self.closed()),
        }
    }

    /// Queues `pkt` if there is room now.
    pub fn try_send(&self, pkt: Vec<u8>) -> Result<(), IoError> {
        let pkt = self.prepare(pkt)?;
        match self.tx.try_send(pkt) {
            Ok(()) => Ok(()),
            Err(GlommioError::WouldBlock(_)) => Err(IoError::QueueFull {
                capacity: self.cfg.capacity,
            }),
            Err(_) => Err(self.closed()),
        }
    }

    /// Packets waiting in the queue (not counting one being written).
    pub fn len(&self) -> usize {
        self.tx.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn is_full(&self) -> bool {
        self.tx.is_full()
    }

    pub fn capacity(&self) -> usize {
        self.cfg.capacity
    }

    /// Why the writer stopped, if it failed.
    pub fn failure(&self) -> Option<String> {
        self.failure.borrow().clone()
    }

    /// Stops accepting packets, waits until every queued packet is written
    /// and returns the writer (and with it the stream), or the write error.
    pub async fn close(self) -> Result<PacketWriter<S>, IoError> {
        drop(self.tx);
        self.writer.await
    }
}
