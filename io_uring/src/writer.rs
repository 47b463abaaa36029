//! Sending packets: [`PacketWriter`] writes one packet at a time for a task
//! that owns the socket; [`SendQueue`] lets many tasks of one core queue
//! packets for a connection, with a writer task draining the queue.
//!
//! Why a direct write first: on the small-message paths (a control and its
//! reply, a message relayed to a client, a record step to another node)
//! the queue is nearly always empty, and handing each reply to the writer
//! task cost a task switch and, worse, delayed the reply behind every other
//! task the executor had ready, so a client woken when its request was read
//! had gone back to sleep before the reply came and had to be woken again
//! (perf/RESULTS.md, run 6). So a packet for an idle queue is written by
//! the sending task itself, with one nonblocking `send`.
//!
//! Why a bounded queue: a slow or stuck peer must not make a core buffer
//! without limit (upstream's queue is unbounded and has taken nodes down by
//! memory). When the queue is full, `send().await` waits, which pushes the
//! back-pressure up to whoever produces the packets.
//!
//! Padding: ctdbd pads every packet it sends to 8 bytes and rewrites the
//! length field; smbd does not. Both writers can do either.

use std::cell::{Cell, RefCell};
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use futures_lite::io::{AsyncWrite, AsyncWriteExt};
use glommio::channels::local_channel::{self, LocalSender};
use glommio::{GlommioError, Task};

use crate::error::IoError;
use crate::frame::{check_outgoing, pad_packet, padded_len, FrameConfig, HEADER_LEN};

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
///
/// Fast path: when nothing is queued and the writer task holds no
/// unfinished bytes, [`SendQueue::send`] and [`SendQueue::try_send`] write
/// the packet to the socket at once (one nonblocking `send`, no task
/// switch), so a reply leaves in the same poll that produced it. Only what
/// the kernel does not take at once (a full socket buffer, or packets
/// behind others) goes through the queue and the writer task; the order
/// of bytes on the stream is the order of the calls either way.
pub struct SendQueue<S> {
    tx: LocalSender<Pending>,
    cfg: SendQueueConfig,
    shared: Rc<Shared<S>>,
    writer: Task<Result<(), IoError>>,
    /// For polling a direct write outside a task (`try_send`): the writer
    /// task re-registers its own waker when it takes over the bytes.
    noop: Waker,
}

/// Bytes the writer task still has to write: a packet, or the rest of one
/// a direct write left half done.
struct Pending {
    bytes: Vec<u8>,
    from: usize,
}

struct Shared<S> {
    stream: RefCell<S>,
    /// Why the writer stopped (a write failed), if it did.
    failure: RefCell<Option<String>>,
    /// The writer task is between taking bytes from the queue and having
    /// written all of them: a direct write now would overtake them.
    busy: Cell<bool>,
    /// Whole packets written, directly or by the writer task.
    packets: Cell<u64>,
}

struct NoopWake;

impl std::task::Wake for NoopWake {
    fn wake(self: std::sync::Arc<Self>) {}
}

/// What a direct write did.
enum Direct {
    /// Every byte is in the kernel.
    Done,
    /// The kernel took `n` bytes (maybe 0); the rest must be queued.
    Partial(usize),
}

impl<S: AsyncWrite + Unpin + 'static> SendQueue<S> {
    /// Starts the writer task for `stream` on the current executor. Must be
    /// called from inside a glommio executor.
    pub fn spawn(stream: S, cfg: SendQueueConfig) -> Self {
        let capacity = cfg.capacity.max(1);
        let cfg = SendQueueConfig { capacity, ..cfg };
        let (tx, rx) = local_channel::new_bounded::<Pending>(capacity);
        let shared = Rc::new(Shared {
            stream: RefCell::new(stream),
            failure: RefCell::new(None),
            busy: Cell::new(false),
            packets: Cell::new(0),
        });
        let sh = shared.clone();
        let writer = glommio::spawn_local(async move {
            while let Some(p) = rx.recv().await {
                sh.busy.set(true);
                let r = write_from(&sh.stream, &p.bytes[p.from..]).await;
                sh.busy.set(false);
                if let Err(e) = r {
                    *sh.failure.borrow_mut() = Some(e.to_string());
                    // Dropping `rx` wakes every waiting sender with an error.
                    return Err(e);
                }
                // Each item ends a packet (a whole one, or the rest of one
                // a direct write began).
                sh.packets.set(sh.packets.get() + 1);
            }
            Ok(())
        });
        SendQueue {
            tx,
            cfg,
            shared,
            writer,
            noop: Waker::from(std::sync::Arc::new(NoopWake)),
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
            cause: self.shared.failure.borrow().clone(),
        }
    }

    /// Whether a direct write now keeps the stream in order: nothing
    /// queued, nothing half written by the writer task, no failure.
    fn may_write_directly(&self) -> bool {
        self.tx.len() == 0 && !self.shared.busy.get() && self.shared.failure.borrow().is_none()
    }

    /// One nonblocking write attempt of `buf` (whole packets), polled
    /// with `waker`. A failure is recorded as the queue's failure.
    fn write_directly(&self, buf: &[u8], packets: u64, waker: &Waker) -> Result<Direct, IoError> {
        let mut cx = Context::from_waker(waker);
        let mut done = 0;
        while done < buf.len() {
            let r =
                Pin::new(&mut *self.shared.stream.borrow_mut()).poll_write(&mut cx, &buf[done..]);
            match r {
                Poll::Ready(Ok(0)) => {
                    return Err(self.fail(IoError::io(
                        "write packet",
                        std::io::ErrorKind::WriteZero.into(),
                    )))
                }
                Poll::Ready(Ok(n)) => done += n,
                Poll::Ready(Err(e)) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Poll::Ready(Err(e)) => return Err(self.fail(IoError::io("write packet", e))),
                Poll::Pending => return Ok(Direct::Partial(done)),
            }
        }
        self.shared.packets.set(self.shared.packets.get() + packets);
        Ok(Direct::Done)
    }

    fn fail(&self, e: IoError) -> IoError {
        *self.shared.failure.borrow_mut() = Some(e.to_string());
        self.closed()
    }

    /// Queues `pkt` (padded first if configured), waiting while the queue
    /// is full. Fails when the writer has stopped.
    pub async fn send(&self, pkt: Vec<u8>) -> Result<(), IoError> {
        let pkt = self.prepare(pkt)?;
        let mut from = 0;
        if self.may_write_directly() {
            // Polled with this task's waker: if the socket is full, the
            // writer task takes over (and its waker replaces ours).
            let waker = std::future::poll_fn(|cx| Poll::Ready(cx.waker().clone())).await;
            match self.write_directly(&pkt, 1, &waker)? {
                Direct::Done => return Ok(()),
                Direct::Partial(n) => from = n,
            }
        }
        match self.tx.send(Pending { bytes: pkt, from }).await {
            Ok(()) => Ok(()),
            Err(_) => Err(self.closed()),
        }
    }

    /// Queues `pkt` if there is room now.
    pub fn try_send(&self, pkt: Vec<u8>) -> Result<(), IoError> {
        let pkt = self.prepare(pkt)?;
        let mut from = 0;
        if self.may_write_directly() {
            match self.write_directly(&pkt, 1, &self.noop)? {
                Direct::Done => return Ok(()),
                Direct::Partial(n) => from = n,
            }
        }
        match self.tx.try_send(Pending { bytes: pkt, from }) {
            Ok(()) => Ok(()),
            Err(GlommioError::WouldBlock(_)) => Err(IoError::QueueFull {
                capacity: self.cfg.capacity,
            }),
            Err(_) => Err(self.closed()),
        }
    }

    /// Sends every packet of `buf`, a run of whole encoded packets back to
    /// back (as a daemon builds its replies), in order: in one write when
    /// they need no padding and nothing is queued, else one by one as
    /// [`SendQueue::send`] does. Waits while the queue is full.
    pub async fn send_all(&self, buf: &[u8]) -> Result<(), IoError> {
        let frames = split_frames(buf, &self.cfg.frame)?;
        let aligned = frames.iter().all(|f| padded_len(f.len()) == f.len());
        if (aligned || !self.cfg.pad) && self.may_write_directly() {
            let waker = std::future::poll_fn(|cx| Poll::Ready(cx.waker().clone())).await;
            match self.write_directly(buf, frames.len() as u64, &waker)? {
                Direct::Done => return Ok(()),
                Direct::Partial(n) => {
                    // Queue the rest, packet by packet, starting inside the
                    // one that was cut.
                    let mut off = 0;
                    for f in frames {
                        let end = off + f.len();
                        if end > n {
                            let from = n.saturating_sub(off);
                            if self
                                .tx
                                .send(Pending {
                                    bytes: f.to_vec(),
                                    from,
                                })
                                .await
                                .is_err()
                            {
                                return Err(self.closed());
                            }
                        } else {
                            self.shared.packets.set(self.shared.packets.get() + 1);
                        }
                        off = end;
                    }
                    return Ok(());
                }
            }
        }
        for f in frames {
            self.send(f.to_vec()).await?;
        }
        Ok(())
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
        self.shared.failure.borrow().clone()
    }

    /// Stops accepting packets, waits until every queued packet is written
    /// and returns the writer (and with it the stream), or the write error.
    pub async fn close(self) -> Result<PacketWriter<S>, IoError> {
        drop(self.tx);
        self.writer.await?;
        if let Some(cause) = self.shared.failure.borrow().clone() {
            return Err(IoError::QueueClosed { cause: Some(cause) });
        }
        let packets = self.shared.packets.get();
        let shared = match Rc::try_unwrap(self.shared) {
            Ok(s) => s,
            Err(_) => unreachable!("the writer task has ended and held the only other handle"),
        };
        let mut w = PacketWriter::new(shared.stream.into_inner(), self.cfg.frame, false);
        w.packets = packets;
        Ok(w)
    }
}

/// Writes all of `buf`, borrowing the stream only while polling it.
async fn write_from<S: AsyncWrite + Unpin>(stream: &RefCell<S>, buf: &[u8]) -> Result<(), IoError> {
    let mut done = 0;
    while done < buf.len() {
        let r = std::future::poll_fn(|cx| {
            Pin::new(&mut *stream.borrow_mut()).poll_write(cx, &buf[done..])
        })
        .await;
        match r {
            Ok(0) => {
                return Err(IoError::io(
                    "write packet",
                    std::io::ErrorKind::WriteZero.into(),
                ))
            }
            Ok(n) => done += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(IoError::io("write packet", e)),
        }
    }
    Ok(())
}

/// The packets of a buffer of whole packets laid back to back, each
/// checked as an outgoing frame.
fn split_frames<'a>(buf: &'a [u8], cfg: &FrameConfig) -> Result<Vec<&'a [u8]>, IoError> {
    let mut v = Vec::new();
    let mut off = 0;
    while off < buf.len() {
        let rest = &buf[off..];
        let len = crate::frame::length_field(rest).unwrap_or(0) as usize;
        if len < HEADER_LEN as usize || len > rest.len() {
            return Err(IoError::BadOutgoing {
                length_field: len as u32,
                actual: rest.len(),
                reason: "not a run of whole packets",
            });
        }
        let f = &rest[..len];
        check_outgoing(f, cfg)?;
        v.push(f);
        off += len;
    }
    Ok(v)
}
