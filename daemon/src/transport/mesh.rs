//! The transport's own bounded channels between cores: every core can send
//! to every other core.
//!
//! Why not the runtime's control↔data links: packets read by a data core
//! may belong to another data core (its key's chain), so data cores must
//! reach each other directly, without a detour through the control core.
//! A full channel makes the sender wait (back-pressure reaches the TCP
//! reader and from there the peer); nothing grows without bound.

use glommio::channels::shared_channel::{self, ConnectedReceiver, ConnectedSender};
use glommio::channels::shared_channel::{SharedReceiver, SharedSender};

/// What cores tell each other.
#[derive(Debug)]
pub enum CoreMsg {
    /// A packet from node `from` for the receiving core (its route).
    /// `epoch`: of the connection it was read on.
    Packet {
        from: u32,
        epoch: u64,
        bytes: Vec<u8>,
    },
    /// Data core → control core: send this on the primary link to `pnn`
    /// (the data core has no lane to it).
    SendFor { pnn: u32, bytes: Vec<u8> },
    /// Data core → control core: a connection from `pnn` was accepted.
    InUp { pnn: u32, epoch: u64 },
    /// Data core → control core: a connection from `pnn` broke.
    InDown { pnn: u32, epoch: u64 },
    /// Control core → data cores: tear down everything to and from `pnn`
    /// (node declared dead); connections of older epochs are stale.
    Restart { pnn: u32, epoch: u64 },
    /// Control core → data cores: `pnn` accepts several connections from
    /// us, open a lane to it.
    Lanes { pnn: u32, epoch: u64 },
    /// Core → core: an incoming connection from `pnn` whose hello named
    /// the receiving core; `fd` is now the receiver's.
    Adopt { pnn: u32, epoch: u64, fd: i32 },
    /// Control core → data cores: the nodes file was reloaded and `pnn`'s
    /// address is now `addr` (`None`: deleted); its lane is closed.
    Addr {
        pnn: u32,
        addr: Option<std::net::SocketAddr>,
    },
}

/// One core's ends of the mesh, created before the executors start and
/// moved to the core (it is `Send`).
pub struct MeshSeat {
    pub(crate) core: usize,
    pub(crate) cores: usize,
    tx: Vec<Option<SharedSender<CoreMsg>>>,
    rx: Vec<Option<SharedReceiver<CoreMsg>>>,
}

/// The connected ends on the core.
pub(crate) struct MeshEnds {
    pub tx: Vec<Option<ConnectedSender<CoreMsg>>>,
    pub rx: Vec<(usize, ConnectedReceiver<CoreMsg>)>,
}

/// Seats for `cores` cores (index = core), each channel holding at most
/// `capacity` messages.
pub fn mesh(cores: usize, capacity: usize) -> Vec<MeshSeat> {
    let cores = cores.max(1);
    let mut seats: Vec<MeshSeat> = (0..cores)
        .map(|core| MeshSeat {
            core,
            cores,
            tx: (0..cores).map(|_| None).collect(),
            rx: (0..cores).map(|_| None).collect(),
        })
        .collect();
    for from in 0..cores {
        for to in 0..cores {
            if from == to {
                continue;
            }
            let (t, r) = shared_channel::new_bounded(capacity.max(1));
            seats[from].tx[to] = Some(t);
            seats[to].rx[from] = Some(r);
        }
    }
    seats
}

impl MeshSeat {
    pub fn core(&self) -> usize {
        self.core
    }

    pub fn cores(&self) -> usize {
        self.cores
    }

    /// Connects every end on the current executor. Every core must do this
    /// for any of them to finish (each connect waits for its peer), so the
    /// ends are connected concurrently.
    pub(crate) async fn connect(self) -> MeshEnds {
        let mut tx_tasks = Vec::new();
        for (i, t) in self.tx.into_iter().enumerate() {
            tx_tasks.push(t.map(|t| (i, glommio::spawn_local(t.connect()))));
        }
        let mut rx_tasks = Vec::new();
        for (i, r) in self.rx.into_iter().enumerate() {
            if let Some(r) = r {
                rx_tasks.push((i, glommio::spawn_local(r.connect())));
            }
        }
        let mut tx = Vec::new();
        for t in tx_tasks {
            match t {
                Some((_, task)) => tx.push(Some(task.await)),
                None => tx.push(None),
            }
        }
        let mut rx = Vec::new();
        for (i, task) in rx_tasks {
            rx.push((i, task.await));
        }
        MeshEnds { tx, rx }
    }
}
