//! Packets to other nodes in the order they were made, without waiting.
//!
//! Why: the migration and control code decides what to send in plain
//! (synchronous) steps, while [`Transport::send`] may have to wait (a full
//! send queue, a packet for this node itself, one forwarded through the
//! control core). An [`Outbox`] takes a packet at once: straight onto the
//! node's connection when nothing of ours waits before it
//! ([`Transport::try_send`]), else into a queue drained in order by one
//! task, so a packet never overtakes one sent before it (a DB_PUSH's
//! records reach a node before its DB_PUSH_CONFIRM; a reply never passes
//! an earlier message).

use std::cell::Cell;
use std::rc::Rc;

use glommio::channels::local_channel::{self, LocalReceiver, LocalSender};

use super::{Sent, Transport};

/// One core's ordered way out to the other nodes.
pub struct Outbox {
    t: Rc<Transport>,
    queue: LocalSender<(u32, Vec<u8>)>,
    /// Packets queued or in the draining task's hands: while any, later
    /// packets queue behind them.
    pending: Rc<Cell<usize>>,
}

impl Outbox {
    /// An outbox on `t`, with its draining task on the current core.
    pub fn start(t: Rc<Transport>) -> Outbox {
        let (queue, rx) = local_channel::new_unbounded();
        let pending = Rc::new(Cell::new(0));
        glommio::spawn_local(drain(t.clone(), rx, pending.clone())).detach();
        Outbox { t, queue, pending }
    }

    pub fn transport(&self) -> &Rc<Transport> {
        &self.t
    }

    /// Sends a whole packet to node `pnn` after everything sent before.
    pub fn send(&self, pnn: u32, bytes: Vec<u8>) {
        let bytes = if self.pending.get() == 0 {
            match self.t.try_send(pnn, bytes) {
                Ok(Sent::Dropped) => {
                    tracing::debug!("packet to node {pnn} dropped: not connected");
                    return;
                }
                Ok(_) => return,
                Err(bytes) => bytes,
            }
        } else {
            bytes
        };
        self.pending.set(self.pending.get() + 1);
        if self.queue.try_send((pnn, bytes)).is_err() {
            self.pending.set(self.pending.get() - 1);
            tracing::error!("outbox closed: packet to node {pnn} dropped");
        }
    }
}

async fn drain(t: Rc<Transport>, rx: LocalReceiver<(u32, Vec<u8>)>, pending: Rc<Cell<usize>>) {
    while let Some((pnn, bytes)) = rx.recv().await {
        let r = t.send(pnn, bytes).await;
        pending.set(pending.get().saturating_sub(1));
        match r {
            Ok(Sent::Dropped) => tracing::debug!("packet to node {pnn} dropped: not connected"),
            Ok(_) => {}
            Err(e) => tracing::error!("send to node {pnn}: {e}"),
        }
    }
}
