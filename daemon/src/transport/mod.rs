//! Node-to-node transport: TCP links between ctdbd nodes, as Samba 4.17's
//! `ctdb/tcp` does them, spread over the daemon's cores.
//!
//! # What upstream does (and we do)
//!
//! * Every node listens on its own node address, port 4379
//!   ([`TransportConfig::port`] for tests), and connects out to every other
//!   node of the nodes file, binding the outgoing socket to its own node
//!   address so the peer can tell who it is from the source address.
//! * An incoming connection is identified by its source address against
//!   the nodes file; unknown sources are refused (closed at once).
//! * Packets are *sent* on the outgoing connection and *received* on the
//!   incoming one. Anything read on an outgoing connection, or its EOF,
//!   means the node is dead; so does EOF, an error or a malformed packet
//!   (length not a multiple of 8, bad magic or version) on an incoming one.
//! * A connect gets one second; a failed or timed-out connect is retried
//!   every second ([`TransportConfig::reconnect_interval`]).
//! * A node is *connected* once both its outgoing and an incoming
//!   connection are up (`ctdb_node_connected`), or when it was heard from
//!   while disconnected at a keepalive round. It is *dead* when a
//!   connection breaks or after `KeepaliveLimit` silent
//!   `KeepaliveInterval`s; then every connection to and from it is torn
//!   down and the outgoing one restarted at once (`ctdb_tcp_restart`).
//! * Keepalives go to every connected node every `KeepaliveInterval`,
//!   carrying the version `(4 << 16) | 17` and the uptime; the
//!   `AllowMixedVersions` rule is checked on each one received
//!   ([`keepalive`]).
//! * Two safeguards of our own: packets still in flight from a connection
//!   torn down meanwhile are dropped (they must not count as a sign of
//!   life of a node just declared dead), and an outgoing connection that
//!   is up while the node never connects back for `KeepaliveLimit`
//!   intervals is restarted (a connect can complete in the backlog of a
//!   listener that is going away). A node heard from while disconnected
//!   becomes connected at the next keepalive round only once our outgoing
//!   connection to it is up, so `Connected` always means we can send.
//! * A packet for a node without an outgoing connection is dropped, as
//!   upstream drops it (`ctdb_tcp_queue_pkt`): callers see
//!   [`Sent::Dropped`].
//!
//! # Thread-per-core
//!
//! [`Transport::start`] runs on *every* core with that core's
//! [`mesh::MeshSeat`]:
//!
//! * Every core listens on the node address with `SO_REUSEPORT`, so the
//!   kernel spreads incoming connections over the cores. Every connection
//!   one of our cores opens starts with a *hello* (a keepalive whose
//!   request id is [`CORE_HELLO`] + the sending core's index); the core
//!   that accepts it reads exactly that packet and hands the connection to
//!   its own core of the same index (a duplicated descriptor through the
//!   mesh), so a lane from a peer's data core is read by the data core that
//!   owns the same keys here, and a peer's primary connection by the
//!   control core. A core reads the connections it holds and passes each
//!   packet to the core that handles it ([`route()`]: by key to the owning
//!   data shard, replies by request id, everything else to the control
//!   core) through the transport's own bounded cross-core channels
//!   ([`mesh`]); with the hello, that is only needed for upstream nodes'
//!   single connections.
//! * The control core (core 0) owns the *primary* outgoing connection to
//!   each node, the node state, keepalives and the node events.
//! * Each data core opens its own outgoing connection (*lane*) to each node
//!   that accepts several connections from us, so it sends without going
//!   through another core. Upstream 4.17 accepts only **one** incoming
//!   connection per node ("Incoming queue active, rejecting connection"),
//!   so lanes are opened only to nodes that announced they take more: our
//!   keepalives carry [`LANES_MARKER`] as request id (upstream sends 0 and
//!   ignores it). Until then, and whenever its lane is down, a data core
//!   hands its packets to the control core, which sends them on the
//!   primary connection.
//! * We accept any number of connections from a known node.
//!
//! # Wiring (what the daemon does)
//!
//! * Build seats with [`mesh::mesh`] before starting the cores, move one
//!   to each core, call [`Transport::start`] there with the same
//!   [`TransportConfig`] and a [`route::ShardMap`] matching the engine's
//!   partition.
//! * On every core, drain [`Transport::recv`] and handle the packets
//!   (apply [`route::accept_packet`] for generation and ban checks, decode
//!   with `ctdb-protocol`); send with [`Transport::send`] from any core.
//! * On core 0, drain [`Transport::next_event`]: `Connected` →
//!   `Membership::on_transport_connected`, `Disconnected` →
//!   `Membership::node_dead` and fail the node's outstanding controls,
//!   `VersionMismatch` → shut down as upstream does. The transport does its
//!   own keepalive accounting, so the daemon must not also act on
//!   `Membership::tick`'s `SendKeepalive`/`RestartTransport`; use
//!   [`Transport::restart_node`] to force a reconnect.
//! * Call [`Transport::set_generation`] when the vnn map changes (the
//!   generation keepalives carry), and [`Transport::stop`] on shutdown.
//!
//! Broadcast destinations (`CTDB_BROADCAST_*`) are the caller's to expand
//! into pnns (it has the node flags); [`Transport::send`] takes one pnn.
//! Log lines name this node's address, as upstream's do.
//!
//! Differences from upstream: receive counting for keepalive accounting
//! happens on the control core, which sees every keepalive, control and
//! message but not call traffic on lanes; packets sent on a lane and on the
//! primary connection are not ordered with respect to each other.

pub mod keepalive;
pub mod mesh;
pub mod outbox;
pub mod route;
pub mod sys;

use std::cell::{Cell, RefCell};
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;
use std::time::{Duration, Instant};

use ctdb_io::{split, FrameConfig, PacketReader, ReadHalf, SendQueue, SendQueueConfig, WriteHalf};
use ctdb_protocol::constants::KEEPALIVE_VERSION_4_17;
use ctdb_protocol::{
    DecodeLimits, Header, Operation, Packet, Payload, RawHeader, ReqKeepalive, CTDB_DS_ALIGNMENT,
};
use futures_lite::io::AsyncReadExt;
use glommio::channels::local_channel::{self, LocalReceiver, LocalSender};
use glommio::channels::shared_channel::ConnectedSender;
use glommio::net::{TcpListener, TcpStream};
use glommio::sync::Semaphore;

use crate::error::DaemonError;
use keepalive::{check_version, Liveness, VersionVerdict};
use mesh::{CoreMsg, MeshSeat};
use route::{route, ShardMap};

/// Request id of our keepalives: "this node accepts several connections
/// from each node" (ASCII "lane"). Upstream sends 0 and never reads it.
pub const LANES_MARKER: u32 = 0x656e_616c;

/// Request id of the keepalive our cores send first on every connection
/// they open: `CORE_HELLO | core`. The node that accepts it hands the
/// connection to its own core of that index, so a lane's packets are read
/// by the core that owns their keys (the shard layout is the same on every
/// node of ours). Upstream reads it as an ordinary keepalive.
pub const CORE_HELLO: u32 = 0x636f_0000;

/// Settings of the transport; the same on every core.
#[derive(Debug, Clone)]
pub struct TransportConfig {
    /// This node's pnn; `nodes[my_pnn]` is the address we listen on and
    /// bind outgoing connections to.
    pub my_pnn: u32,
    /// The nodes file: index = pnn, `None` = deleted node.
    pub nodes: Vec<Option<IpAddr>>,
    /// TCP port of every node (`CTDB_PORT`, 4379).
    pub port: u16,
    /// `KeepaliveInterval`.
    pub keepalive_interval: Duration,
    /// `KeepaliveLimit`.
    pub keepalive_limit: u32,
    /// `AllowMixedVersions`.
    pub allow_mixed_versions: bool,
    /// Version sent in keepalives (`CTDB_TEST_SAMBA_VERSION` upstream).
    pub keepalive_version: u32,
    /// When this ctdbd started (keepalive uptime).
    pub started: Instant,
    /// Pause between connect attempts (upstream: 1 s).
    pub reconnect_interval: Duration,
    /// How long one connect may take (upstream: 1 s).
    pub connect_timeout: Duration,
    /// Packets queued per outgoing connection before senders wait.
    pub send_queue: usize,
    /// Received packets queued per core before readers wait.
    pub inbox: usize,
    /// Messages per cross-core channel (for [`mesh::mesh`]).
    pub mesh_capacity: usize,
    /// Largest packet accepted.
    pub max_packet: u32,
    /// Open per-core lanes to nodes that announce they accept them, and
    /// announce that we do.
    pub lanes: bool,
}

impl TransportConfig {
    /// Upstream defaults: port 4379, keepalive every 5 s, limit 5.
    pub fn new(my_pnn: u32, nodes: Vec<Option<IpAddr>>) -> TransportConfig {
        TransportConfig {
            my_pnn,
            nodes,
            port: ctdb_protocol::constants::CTDB_PORT,
            keepalive_interval: Duration::from_secs(5),
            keepalive_limit: 5,
            allow_mixed_versions: false,
            keepalive_version: KEEPALIVE_VERSION_4_17,
            started: Instant::now(),
            reconnect_interval: Duration::from_secs(1),
            connect_timeout: Duration::from_secs(1),
            send_queue: 1024,
            inbox: 1024,
            mesh_capacity: 1024,
            max_packet: ctdb_io::DEFAULT_MAX_PACKET,
            lanes: true,
        }
    }

    fn my_ip(&self) -> Result<IpAddr, DaemonError> {
        let bad = |why: String| DaemonError::BadOption {
            option: "transport",
            why,
        };
        let Some(slot) = self.nodes.get(self.my_pnn as usize) else {
            return Err(bad(format!(
                "pnn {} is not in the nodes list of {} nodes",
                self.my_pnn,
                self.nodes.len()
            )));
        };
        let Some(ip) = *slot else {
            return Err(bad(format!("pnn {} is a deleted node", self.my_pnn)));
        };
        for (i, a) in self.nodes.iter().enumerate() {
            for (j, b) in self.nodes.iter().enumerate().skip(i + 1) {
                if a.is_some() && a == b {
                    return Err(bad(format!(
                        "nodes {i} and {j} have the same address {}",
                        a.unwrap()
                    )));
                }
            }
        }
        if self.keepalive_interval.is_zero() || self.keepalive_limit == 0 {
            return Err(bad("keepalive interval and limit must be positive".into()));
        }
        Ok(ip)
    }
}

/// A packet received from another node, for this core.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    /// The node whose connection it came on.
    pub from: u32,
    /// The whole packet, header included.
    pub bytes: Vec<u8>,
}

/// Node state changes, reported on the control core.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeEvent {
    Connected(u32),
    Disconnected(u32),
    /// A keepalive broke the version rule: upstream shuts the node down.
    /// `theirs` is `None` for a header-only (pre-4.x) keepalive.
    VersionMismatch {
        pnn: u32,
        theirs: Option<u32>,
        ours: u32,
    },
}

/// What became of a packet given to [`Transport::send`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sent {
    /// Queued on this core's own connection to the node.
    Queued,
    /// Handed to the control core for its primary connection.
    Forwarded,
    /// Addressed to this node: delivered to the core that handles it.
    Loopback,
    /// No connection to the node: dropped, as upstream does.
    Dropped,
}

/// Counters of one core.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TransportStats {
    /// Packets queued on this core's own outgoing connections.
    pub sent: u64,
    /// Packets handed to the control core to send.
    pub forwarded: u64,
    /// Packets dropped for lack of a connection.
    pub dropped: u64,
    /// Packets read from this core's incoming connections.
    pub received: u64,
    /// Packets read here that went to another core.
    pub rerouted: u64,
    pub keepalives_sent: u64,
    pub keepalives_received: u64,
    /// Incoming connections refused (unknown source address).
    pub refused: u64,
    /// Packets dropped because their connection was torn down meanwhile.
    pub stale: u64,
}

struct Peer {
    addr: Option<SocketAddr>,
    epoch: u64,
    kill: Rc<Semaphore>,
    out: Option<Rc<SendQueue<WriteHalf<TcpStream>>>>,
    lanes_ok: bool,
    // Control core only.
    out_up: bool,
    ins: u32,
    live: Liveness,
    /// Keepalive rounds with our connection up but none from the node.
    half_open: u32,
}

/// The transport on one core. Shared between the core's tasks with `Rc`.
pub struct Transport {
    core: usize,
    cores: usize,
    cfg: TransportConfig,
    my_ip: IpAddr,
    shard_map: Rc<dyn ShardMap>,
    peers: RefCell<Vec<Peer>>,
    mesh_tx: Vec<Option<ConnectedSender<CoreMsg>>>,
    inbox_tx: LocalSender<Received>,
    inbox_rx: LocalReceiver<Received>,
    events_tx: LocalSender<NodeEvent>,
    events_rx: LocalReceiver<NodeEvent>,
    stop: Rc<Semaphore>,
    generation: Cell<u32>,
    /// `AllowMixedVersions` as it is now (the tunable can change).
    allow_mixed: Cell<bool>,
    stats: Cell<TransportStats>,
}

impl Peer {
    /// Ends every connection task to and from this node on this core
    /// (they run until `kill` closes) and forgets its outgoing queue.
    fn tear_down(&mut self) {
        self.kill.close();
        self.kill = Rc::new(Semaphore::new(0));
        self.out = None;
        self.lanes_ok = false;
    }

    fn new(addr: Option<SocketAddr>) -> Peer {
        Peer {
            addr,
            epoch: 0,
            kill: Rc::new(Semaphore::new(0)),
            out: None,
            lanes_ok: false,
            out_up: false,
            ins: 0,
            live: Liveness::default(),
            half_open: 0,
        }
    }
}

async fn killed(s: Rc<Semaphore>) {
    // Nobody signals these semaphores: acquire returns only once closed.
    let _ = s.acquire(1).await;
}

/// Runs `fut` on this core until it ends or either semaphore is closed.
fn spawn_until<F>(a: Rc<Semaphore>, b: Option<Rc<Semaphore>>, fut: F)
where
    F: std::future::Future<Output = ()> + 'static,
{
    glommio::spawn_local(async move {
        let f = futures_lite::future::or(fut, killed(a));
        match b {
            Some(b) => futures_lite::future::or(f, killed(b)).await,
            None => f.await,
        }
    })
    .detach();
}

impl Transport {
    /// Starts the transport on the current core. Every core of the runtime
    /// must call it (with its own seat) for any of them to return, since
    /// the cross-core channels connect pairwise.
    pub async fn start(
        cfg: TransportConfig,
        seat: MeshSeat,
        shard_map: Rc<dyn ShardMap>,
    ) -> Result<Rc<Transport>, DaemonError> {
        let my_ip = cfg.my_ip()?;
        let (core, cores) = (seat.core(), seat.cores());
        let ends = seat.connect().await;
        let addr = SocketAddr::new(my_ip, cfg.port);
        // Several cores share the port through SO_REUSEPORT; one core
        // listens alone, with upstream's SO_REUSEADDR.
        let bound = if cores > 1 {
            sys::shared_listener(addr)
        } else {
            sys::exclusive_listener(addr)
        };
        let listener = bound.map_err(|e| {
            DaemonError::sys(
                "listen on the node address",
                io::Error::new(e.kind(), format!("{my_ip}:{}: {e}", cfg.port)),
            )
        })?;
        let (inbox_tx, inbox_rx) = local_channel::new_bounded(cfg.inbox.max(1));
        let (events_tx, events_rx) = local_channel::new_unbounded();
        let peers = cfg
            .nodes
            .iter()
            .map(|a| Peer::new(a.map(|ip| SocketAddr::new(ip, cfg.port))))
            .collect();
        let t = Rc::new(Transport {
            core,
            cores,
            my_ip,
            shard_map,
            peers: RefCell::new(peers),
            mesh_tx: ends.tx,
            inbox_tx,
            inbox_rx,
            events_tx,
            events_rx,
            stop: Rc::new(Semaphore::new(0)),
            generation: Cell::new(ctdb_protocol::constants::INVALID_GENERATION),
            allow_mixed: Cell::new(cfg.allow_mixed_versions),
            stats: Cell::new(TransportStats::default()),
            cfg,
        });
        for (from, rx) in ends.rx {
            let me = t.clone();
            spawn_until(t.stop.clone(), None, async move {
                while let Some(m) = rx.recv().await {
                    me.on_mesh(m).await;
                }
                tracing::debug!(
                    "{}: core {}: mesh link from core {from} closed",
                    me.my_ip,
                    me.core
                );
            });
        }
        let me = t.clone();
        spawn_until(t.stop.clone(), None, async move {
            me.accept_loop(listener).await
        });
        if core == 0 {
            let n = t.peers.borrow().len() as u32;
            for pnn in 0..n {
                if t.is_peer(pnn) {
                    t.spawn_out(pnn, true);
                }
            }
            let me = t.clone();
            spawn_until(
                t.stop.clone(),
                None,
                async move { me.keepalive_loop().await },
            );
        }
        Ok(t)
    }

    /// This core's index.
    pub fn core(&self) -> usize {
        self.core
    }

    pub fn config(&self) -> &TransportConfig {
        &self.cfg
    }

    pub fn stats(&self) -> TransportStats {
        self.stats.get()
    }

    /// The vnn map generation put in keepalives.
    pub fn set_generation(&self, generation: u32) {
        self.generation.set(generation);
    }

    /// The tunable `AllowMixedVersions` changed (keepalives are judged by
    /// the new value from now on).
    pub fn set_allow_mixed_versions(&self, allow: bool) {
        if self.allow_mixed.replace(allow) != allow {
            tracing::info!(
                "{}: AllowMixedVersions is now {}",
                self.my_ip,
                u8::from(allow)
            );
        }
    }

    /// Whether `pnn` is connected (control core's view; other cores answer
    /// whether they have their own lane to it).
    pub fn is_connected(&self, pnn: u32) -> bool {
        let peers = self.peers.borrow();
        match peers.get(pnn as usize) {
            Some(p) if self.core == 0 => p.live.connected,
            Some(p) => p.out.is_some(),
            None => false,
        }
    }

    /// Whether this core has its own outgoing connection up to `pnn`.
    pub fn has_link(&self, pnn: u32) -> bool {
        self.peers
            .borrow()
            .get(pnn as usize)
            .is_some_and(|p| p.out.is_some())
    }

    /// The next packet for this core; `None` once stopped.
    pub async fn recv(&self) -> Option<Received> {
        futures_lite::future::or(self.inbox_rx.recv(), async {
            killed(self.stop.clone()).await;
            None
        })
        .await
    }

    /// The next node event (control core only; `None` elsewhere and once
    /// stopped).
    pub async fn next_event(&self) -> Option<NodeEvent> {
        if self.core != 0 {
            return None;
        }
        futures_lite::future::or(self.events_rx.recv(), async {
            killed(self.stop.clone()).await;
            None
        })
        .await
    }

    /// Sends a whole packet (length field = its size; it is padded to 8
    /// bytes here) to node `pnn`.
    pub async fn send(self: &Rc<Self>, pnn: u32, bytes: Vec<u8>) -> Result<Sent, DaemonError> {
        if pnn == self.cfg.my_pnn {
            ctdb_io::frame::check_outgoing(&bytes, &self.frame()).map_err(DaemonError::Io)?;
            self.dispatch(pnn, 0, bytes).await;
            return Ok(Sent::Loopback);
        }
        if !self.is_peer(pnn) {
            return Err(DaemonError::sys(
                "send to node",
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("pnn {pnn} is not a node of the nodes file"),
                ),
            ));
        }
        let q = self.peers.borrow()[pnn as usize].out.clone();
        if let Some(q) = q {
            match q.send(bytes).await {
                Ok(()) => {
                    self.count(|s| s.sent += 1);
                    return Ok(Sent::Queued);
                }
                Err(e @ ctdb_io::IoError::QueueClosed { .. }) => {
                    tracing::debug!(
                        "{}: core {}: link to node {pnn} closed: {e}",
                        self.my_ip,
                        self.core
                    );
                    self.count(|s| s.dropped += 1);
                    return Ok(Sent::Dropped);
                }
                Err(e) => return Err(DaemonError::Io(e)),
            }
        }
        if self.core == 0 {
            self.count(|s| s.dropped += 1);
            return Ok(Sent::Dropped);
        }
        ctdb_io::frame::check_outgoing(&bytes, &self.frame()).map_err(DaemonError::Io)?;
        self.mesh_send(0, CoreMsg::SendFor { pnn, bytes }).await;
        self.count(|s| s.forwarded += 1);
        Ok(Sent::Forwarded)
    }

    /// Sends a whole packet to node `pnn` without waiting, when that can
    /// be done at once: this core has its own connection to `pnn` and its
    /// send queue has room (the packet is then written straight to the
    /// socket when nothing is queued before it). Otherwise the packet comes
    /// back untouched for [`Transport::send`] (this node itself, a full
    /// queue, a packet to forward through another core).
    pub fn try_send(&self, pnn: u32, bytes: Vec<u8>) -> Result<Sent, Vec<u8>> {
        if pnn == self.cfg.my_pnn || !self.is_peer(pnn) {
            return Err(bytes);
        }
        let q = self.peers.borrow()[pnn as usize].out.clone();
        let Some(q) = q else {
            if self.core == 0 {
                self.count(|s| s.dropped += 1);
                return Ok(Sent::Dropped);
            }
            return Err(bytes);
        };
        if q.is_full() {
            return Err(bytes);
        }
        match q.try_send(bytes) {
            Ok(()) => {
                self.count(|s| s.sent += 1);
                Ok(Sent::Queued)
            }
            Err(e) => {
                tracing::debug!(
                    "{}: core {}: packet to node {pnn} dropped: {e}",
                    self.my_ip,
                    self.core
                );
                self.count(|s| s.dropped += 1);
                Ok(Sent::Dropped)
            }
        }
    }

    /// RELOAD_NODES_FILE: the node table becomes `nodes` (index = pnn,
    /// `None` = deleted), as upstream's reload: a node whose address is
    /// unchanged keeps its connections; a deleted or changed one is torn
    /// down (reported `Disconnected` if it was connected); a new or
    /// changed one is connected to. This node's own slot is left alone,
    /// and the table never shrinks (pnns stay valid). Control core only;
    /// the data cores learn the new addresses through the mesh (their
    /// lanes to a changed node close, and reopen once the node announces
    /// lanes again).
    pub fn set_nodes(self: &Rc<Self>, nodes: &[Option<IpAddr>]) -> Result<(), DaemonError> {
        if self.core != 0 {
            return Err(DaemonError::sys(
                "reload nodes",
                io::Error::other("only the control core reloads the nodes"),
            ));
        }
        for (i, ip) in nodes.iter().enumerate() {
            let pnn = i as u32;
            if pnn == self.cfg.my_pnn {
                continue;
            }
            let addr = ip.map(|ip| SocketAddr::new(ip, self.cfg.port));
            let old = self.peers.borrow().get(i).map(|p| p.addr);
            if old != Some(addr) {
                self.broadcast(move || CoreMsg::Addr { pnn, addr });
            }
            match old {
                Some(old) if old == addr => {}
                Some(old) => {
                    self.peers.borrow_mut()[i].addr = addr;
                    tracing::info!("{}: node {pnn}: {old:?} -> {addr:?}", self.my_ip);
                    // Tears down; connects again when there is an address.
                    self.node_dead(pnn);
                }
                None => {
                    let mut peers = self.peers.borrow_mut();
                    while peers.len() <= i {
                        peers.push(Peer::new(None));
                    }
                    peers[i].addr = addr;
                    drop(peers);
                    tracing::info!("{}: node {pnn} added: {addr:?}", self.my_ip);
                    self.spawn_out(pnn, true);
                }
            }
        }
        Ok(())
    }

    /// Tears down every connection to and from `pnn` and reconnects
    /// (control core only; elsewhere a no-op).
    pub fn restart_node(self: &Rc<Self>, pnn: u32) {
        if self.core == 0 && self.is_peer(pnn) {
            self.node_dead(pnn);
        }
    }

    /// Stops every task of the transport on this core and closes its
    /// sockets.
    pub fn stop(&self) {
        self.stop.close();
        for p in self.peers.borrow_mut().iter_mut() {
            p.kill.close();
            p.out = None;
        }
    }

    fn frame(&self) -> FrameConfig {
        FrameConfig {
            max_packet: self.cfg.max_packet,
            ..FrameConfig::default()
        }
    }

    fn count(&self, f: impl FnOnce(&mut TransportStats)) {
        let mut s = self.stats.get();
        f(&mut s);
        self.stats.set(s);
    }

    fn is_peer(&self, pnn: u32) -> bool {
        pnn != self.cfg.my_pnn
            && self
                .peers
                .borrow()
                .get(pnn as usize)
                .is_some_and(|p| p.addr.is_some())
    }

    fn pnn_of(&self, ip: IpAddr) -> Option<u32> {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        self.peers
            .borrow()
            .iter()
            .position(|p| p.addr.map(|a| a.ip()) == Some(ip))
            .map(|i| i as u32)
            .filter(|p| *p != self.cfg.my_pnn)
    }

    async fn mesh_send(&self, core: usize, msg: CoreMsg) {
        if let Some(Some(tx)) = self.mesh_tx.get(core) {
            if tx.send(msg).await.is_err() {
                tracing::debug!("{}: core {}: core {core} is gone", self.my_ip, self.core);
            }
        }
    }

    /// Sends `msg` to every data core, from a task of its own.
    fn broadcast(self: &Rc<Self>, make: impl Fn() -> CoreMsg + 'static) {
        if self.cores <= 1 {
            return;
        }
        let me = self.clone();
        spawn_until(self.stop.clone(), None, async move {
            for core in 1..me.cores {
                me.mesh_send(core, make()).await;
            }
        });
    }

    // ---- outgoing connections -------------------------------------------

    async fn connect(&self, peer: SocketAddr) -> io::Result<TcpStream> {
        let fd = sys::bound_socket(self.my_ip)?;
        if !sys::start_connect(&fd, peer)? {
            let deadline = Instant::now() + self.cfg.connect_timeout;
            let mut wait = Duration::from_millis(1);
            while !sys::is_writable(&fd)? {
                if Instant::now() >= deadline {
                    return Err(io::Error::new(io::ErrorKind::TimedOut, "connect timed out"));
                }
                glommio::timer::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_millis(100));
            }
            if let Some(e) = sys::so_error(&fd)? {
                return Err(e);
            }
        }
        if let Err(e) = sys::tune(&fd) {
            tracing::warn!("cannot set SO_KEEPALIVE/TCP_NODELAY towards {peer}: {e}");
        }
        Ok(sys::into_glommio(fd))
    }

    /// Starts the outgoing connection task for `pnn`: the primary link on
    /// the control core, a lane on a data core.
    fn spawn_out(self: &Rc<Self>, pnn: u32, first_now: bool) {
        let (kill, epoch, addr) = {
            let p = &self.peers.borrow()[pnn as usize];
            (p.kill.clone(), p.epoch, p.addr)
        };
        let Some(addr) = addr else { return };
        let me = self.clone();
        spawn_until(self.stop.clone(), Some(kill), async move {
            me.out_link(pnn, epoch, addr, first_now).await
        });
    }

    async fn out_link(self: Rc<Self>, pnn: u32, epoch: u64, addr: SocketAddr, first_now: bool) {
        let primary = self.core == 0;
        let mut now = first_now;
        loop {
            if !now {
                glommio::timer::sleep(self.cfg.reconnect_interval).await;
            }
            now = false;
            let stream = match self.connect(addr).await {
                Ok(s) => s,
                Err(e) => {
                    tracing::debug!(
                        "{}: core {}: connect to node {pnn} ({addr}): {e}",
                        self.my_ip,
                        self.core
                    );
                    continue;
                }
            };
            let (r, w) = split(stream);
            let q = Rc::new(SendQueue::spawn(
                w,
                SendQueueConfig {
                    frame: self.frame(),
                    pad: true,
                    capacity: self.cfg.send_queue.max(1),
                },
            ));
            if self.cfg.lanes {
                // First on the wire: which of our cores sends on it.
                let _ = q
                    .send(self.keepalive(pnn, CORE_HELLO | self.core as u32))
                    .await;
            }
            {
                let mut peers = self.peers.borrow_mut();
                let p = &mut peers[pnn as usize];
                if p.epoch != epoch {
                    return;
                }
                p.out = Some(q);
            }
            tracing::info!(
                "{}: core {}: {} connection to node {pnn} ({addr}) up",
                self.my_ip,
                self.core,
                if primary { "outgoing" } else { "lane" }
            );
            if primary {
                self.note_out_up(pnn);
            }
            wait_closed(r).await;
            {
                let mut peers = self.peers.borrow_mut();
                let p = &mut peers[pnn as usize];
                if p.epoch != epoch {
                    return;
                }
                p.out = None;
            }
            tracing::info!(
                "{}: core {}: connection to node {pnn} ({addr}) closed",
                self.my_ip,
                self.core
            );
            if primary {
                self.node_dead(pnn);
                return;
            }
        }
    }

    // ---- incoming connections -------------------------------------------

    async fn accept_loop(self: Rc<Self>, listener: TcpListener) {
        loop {
            let stream = match listener.accept().await {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(
                        "{}: core {}: accept on the node port: {e}",
                        self.my_ip,
                        self.core
                    );
                    glommio::timer::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let peer = match stream.peer_addr() {
                Ok(a) => a,
                Err(_) => continue,
            };
            let Some(pnn) = self.pnn_of(peer.ip()) else {
                tracing::error!("Refused connection from unknown node {}", peer.ip());
                self.count(|s| s.refused += 1);
                continue;
            };
            let _ = stream.set_nodelay(true);
            if let Err(e) = sys::tune(&stream) {
                tracing::warn!("cannot set SO_KEEPALIVE on connection from {peer}: {e}");
            }
            let (kill, epoch) = {
                let p = &self.peers.borrow()[pnn as usize];
                (p.kill.clone(), p.epoch)
            };
            tracing::info!(
                "{}: core {}: incoming connection from node {pnn} ({peer})",
                self.my_ip,
                self.core
            );
            let me = self.clone();
            spawn_until(self.stop.clone(), Some(kill), async move {
                me.greet(pnn, epoch, stream).await
            });
        }
    }

    /// A new incoming connection: reads its first packet exactly (nothing
    /// beyond it), and when that is our hello naming another core, hands
    /// the connection to that core; otherwise reads it here.
    async fn greet(self: Rc<Self>, pnn: u32, epoch: u64, mut stream: TcpStream) {
        self.report_in(pnn, epoch, true).await;
        let first = match read_one_packet(&mut stream, self.cfg.max_packet).await {
            Ok(p) => p,
            Err(e) => {
                tracing::info!(
                    "{}: core {}: incoming connection from node {pnn} ended: {e}",
                    self.my_ip,
                    self.core
                );
                self.report_in(pnn, epoch, false).await;
                return;
            }
        };
        let hello = RawHeader::parse(&first).ok().and_then(|h| {
            (h.operation == Operation::ReqKeepalive as u32 && h.reqid & 0xffff_0000 == CORE_HELLO)
                .then_some((h.reqid & 0xffff) as usize)
        });
        match hello {
            Some(core) if core != self.core && core < self.cores => {
                use std::os::fd::AsRawFd;
                // The connection moves as a descriptor of its own; this
                // core's handle is closed (close, not shutdown: the socket
                // stays open through the copy).
                match sys::dup_fd(stream.as_raw_fd()) {
                    Ok(fd) => {
                        drop(stream);
                        self.count(|s| s.received += 1);
                        self.mesh_send(core, CoreMsg::Adopt { pnn, epoch, fd })
                            .await;
                    }
                    Err(e) => {
                        tracing::warn!("cannot hand a connection to core {core}: {e}");
                        self.in_link(pnn, epoch, stream, None).await;
                    }
                }
            }
            Some(_) => {
                self.count(|s| s.received += 1);
                self.in_link(pnn, epoch, stream, None).await;
            }
            None => self.in_link(pnn, epoch, stream, Some(first)).await,
        }
    }

    /// Reads an incoming connection until it ends. `first`: a packet
    /// already read from it. The connection was reported up (to the
    /// control core) by whoever accepted it; it is reported down here.
    async fn in_link(
        self: Rc<Self>,
        pnn: u32,
        epoch: u64,
        stream: TcpStream,
        first: Option<Vec<u8>>,
    ) {
        let limits = DecodeLimits {
            max_packet: self.cfg.max_packet,
        };
        let mut first = first;
        let mut reader = PacketReader::with_config(stream, self.frame());
        let why = loop {
            let bytes = match first.take() {
                Some(p) => p,
                None => match reader.next_packet().await {
                    Ok(Some(p)) => p.to_vec(),
                    Ok(None) => break "closed".to_string(),
                    Err(e) => break e.to_string(),
                },
            };
            if bytes.len() % CTDB_DS_ALIGNMENT != 0 {
                break format!("length {:#x} not a multiple of 8", bytes.len());
            }
            if let Err(e) = RawHeader::parse(&bytes).and_then(|h| h.check(&limits)) {
                break e.to_string();
            }
            self.count(|s| s.received += 1);
            self.dispatch(pnn, epoch, bytes).await;
        };
        tracing::info!(
            "{}: core {}: incoming connection from node {pnn} ended: {why}",
            self.my_ip,
            self.core
        );
        self.report_in(pnn, epoch, false).await;
    }

    async fn report_in(self: &Rc<Self>, pnn: u32, epoch: u64, up: bool) {
        if self.core == 0 {
            self.note_in(pnn, epoch, up);
        } else {
            let m = if up {
                CoreMsg::InUp { pnn, epoch }
            } else {
                CoreMsg::InDown { pnn, epoch }
            };
            self.mesh_send(0, m).await;
        }
    }

    /// Hands a packet from `from` to the core that handles it.
    /// `epoch`: of the connection it came on (ignored for loopback).
    async fn dispatch(self: &Rc<Self>, from: u32, epoch: u64, bytes: Vec<u8>) {
        let core = route(&bytes, &*self.shard_map).core(self.cores);
        if core == self.core {
            self.deliver(from, epoch, bytes).await;
        } else {
            self.count(|s| s.rerouted += 1);
            self.mesh_send(core, CoreMsg::Packet { from, epoch, bytes })
                .await;
        }
    }

    async fn deliver(self: &Rc<Self>, from: u32, epoch: u64, bytes: Vec<u8>) {
        if from != self.cfg.my_pnn {
            // A packet read on a connection torn down since (the node was
            // declared dead) is dropped with it, as upstream frees the
            // queue; it must not count as a sign of life either.
            let stale = self
                .peers
                .borrow()
                .get(from as usize)
                .is_some_and(|p| epoch < p.epoch);
            if stale {
                self.count(|s| s.stale += 1);
                return;
            }
        }
        if self.core == 0 && from != self.cfg.my_pnn {
            if let Some(p) = self.peers.borrow_mut().get_mut(from as usize) {
                p.live.on_rx();
            }
            if RawHeader::parse(&bytes).is_ok_and(|h| h.operation == Operation::ReqKeepalive as u32)
            {
                self.on_keepalive(from, &bytes);
                return;
            }
        }
        let _ = self.inbox_tx.send(Received { from, bytes }).await;
    }

    async fn on_mesh(self: &Rc<Self>, m: CoreMsg) {
        match m {
            CoreMsg::Packet { from, epoch, bytes } => self.deliver(from, epoch, bytes).await,
            CoreMsg::SendFor { pnn, bytes } => {
                let q = self
                    .peers
                    .borrow()
                    .get(pnn as usize)
                    .and_then(|p| p.out.clone());
                match q {
                    Some(q) if q.send(bytes).await.is_ok() => self.count(|s| s.sent += 1),
                    _ => self.count(|s| s.dropped += 1),
                }
            }
            CoreMsg::InUp { pnn, epoch } => self.note_in(pnn, epoch, true),
            CoreMsg::InDown { pnn, epoch } => self.note_in(pnn, epoch, false),
            CoreMsg::Restart { pnn, epoch } => {
                let mut peers = self.peers.borrow_mut();
                if let Some(p) = peers.get_mut(pnn as usize) {
                    if epoch > p.epoch {
                        p.epoch = epoch;
                        p.tear_down();
                    }
                }
            }
            CoreMsg::Adopt { pnn, epoch, fd } => {
                use std::os::fd::FromRawFd;
                // SAFETY: `fd` is a connected TCP socket duplicated for this
                // core by the core that accepted it, which closed its own
                // copy; nobody else owns this descriptor.
                let stream = unsafe { TcpStream::from_raw_fd(fd) };
                let kill = self
                    .peers
                    .borrow()
                    .get(pnn as usize)
                    .map(|p| p.kill.clone());
                let Some(kill) = kill else { return };
                tracing::debug!(
                    "{}: core {}: took over a connection from node {pnn}",
                    self.my_ip,
                    self.core
                );
                let me = self.clone();
                spawn_until(self.stop.clone(), Some(kill), async move {
                    me.in_link(pnn, epoch, stream, None).await
                });
            }
            CoreMsg::Addr { pnn, addr } => {
                let mut peers = self.peers.borrow_mut();
                while peers.len() <= pnn as usize {
                    peers.push(Peer::new(None));
                }
                let p = &mut peers[pnn as usize];
                p.addr = addr;
                p.tear_down();
            }
            CoreMsg::Lanes { pnn, epoch } => {
                let start = {
                    let mut peers = self.peers.borrow_mut();
                    match peers.get_mut(pnn as usize) {
                        Some(p) if p.epoch == epoch && !p.lanes_ok => {
                            p.lanes_ok = true;
                            true
                        }
                        _ => false,
                    }
                };
                if start {
                    self.spawn_out(pnn, true);
                }
            }
        }
    }

    // ---- node state (control core) --------------------------------------

    fn emit(&self, e: NodeEvent) {
        tracing::info!("{}: node event: {e:?}", self.my_ip);
        let _ = self.events_tx.try_send(e);
    }

    fn note_out_up(self: &Rc<Self>, pnn: u32) {
        self.peers.borrow_mut()[pnn as usize].out_up = true;
        self.maybe_connected(pnn);
        // Announce ourselves (version, lanes) without waiting a whole
        // interval; an extra keepalive is harmless to upstream.
        let me = self.clone();
        spawn_until(self.stop.clone(), None, async move {
            me.send_keepalive(pnn).await;
        });
    }

    fn note_in(self: &Rc<Self>, pnn: u32, epoch: u64, up: bool) {
        let current = {
            let mut peers = self.peers.borrow_mut();
            let Some(p) = peers.get_mut(pnn as usize) else {
                return;
            };
            if p.epoch != epoch {
                false
            } else {
                if up {
                    p.ins += 1;
                } else {
                    p.ins = p.ins.saturating_sub(1);
                }
                true
            }
        };
        if !current {
            return;
        }
        if up {
            self.maybe_connected(pnn);
        } else {
            self.node_dead(pnn);
        }
    }

    fn maybe_connected(&self, pnn: u32) {
        let now = {
            let mut peers = self.peers.borrow_mut();
            let p = &mut peers[pnn as usize];
            if p.out_up && p.ins > 0 && !p.live.connected {
                p.live.connected = true;
                p.live.dead_count = 0;
                true
            } else {
                false
            }
        };
        if now {
            self.emit(NodeEvent::Connected(pnn));
        }
    }

    /// `ctdb_node_dead`: report, tear down, reconnect.
    fn node_dead(self: &Rc<Self>, pnn: u32) {
        let was = std::mem::take(&mut self.peers.borrow_mut()[pnn as usize].live).connected;
        if was {
            self.emit(NodeEvent::Disconnected(pnn));
        }
        self.restart(pnn);
    }

    fn restart(self: &Rc<Self>, pnn: u32) {
        let epoch = {
            let mut peers = self.peers.borrow_mut();
            let p = &mut peers[pnn as usize];
            p.epoch += 1;
            p.tear_down();
            p.out_up = false;
            p.ins = 0;
            p.half_open = 0;
            p.epoch
        };
        tracing::info!(
            "{}: Tearing down connection to dead node :{pnn}",
            self.my_ip
        );
        self.broadcast(move || CoreMsg::Restart { pnn, epoch });
        self.spawn_out(pnn, true);
    }

    fn on_keepalive(self: &Rc<Self>, from: u32, bytes: &[u8]) {
        self.count(|s| s.keepalives_received += 1);
        let Ok(pkt) = Packet::decode(bytes, &DecodeLimits::default()) else {
            tracing::warn!("malformed keepalive from node {from}");
            return;
        };
        let Payload::ReqKeepalive(ka) = pkt.payload else {
            return;
        };
        let ours = self.cfg.keepalive_version;
        match check_version(ka, ours, self.uptime(), self.allow_mixed.get()) {
            VersionVerdict::Ok => {}
            VersionVerdict::Missing => {
                tracing::error!("Keepalive version missing from node {from}");
                self.emit(NodeEvent::VersionMismatch {
                    pnn: from,
                    theirs: None,
                    ours,
                });
            }
            VersionVerdict::Mismatch { theirs, ours } => {
                tracing::error!(
                    "Keepalive version mismatch {ours:#010x} != {theirs:#010x} from node {from}"
                );
                self.emit(NodeEvent::VersionMismatch {
                    pnn: from,
                    theirs: Some(theirs),
                    ours,
                });
            }
        }
        if self.cfg.lanes && pkt.header.reqid == LANES_MARKER {
            let epoch = {
                let mut peers = self.peers.borrow_mut();
                let p = &mut peers[from as usize];
                if p.lanes_ok {
                    return;
                }
                p.lanes_ok = true;
                p.epoch
            };
            tracing::debug!("{}: node {from} takes lanes", self.my_ip);
            self.broadcast(move || CoreMsg::Lanes { pnn: from, epoch });
        }
    }

    fn uptime(&self) -> u32 {
        self.cfg.started.elapsed().as_secs() as u32
    }

    /// A keepalive for node `pnn` with request id `reqid`.
    fn keepalive(&self, pnn: u32, reqid: u32) -> Vec<u8> {
        let pkt = Packet::new(
            Header::new(self.generation.get(), pnn, self.cfg.my_pnn, reqid),
            Payload::ReqKeepalive(Some(ReqKeepalive {
                version: self.cfg.keepalive_version,
                uptime: self.uptime(),
            })),
        );
        let mut out = Vec::with_capacity(48);
        if let Err(e) = pkt.encode(&mut out) {
            tracing::error!("cannot encode a keepalive: {e}");
        }
        out
    }

    async fn send_keepalive(&self, pnn: u32) {
        let q = self.peers.borrow()[pnn as usize].out.clone();
        let Some(q) = q else { return };
        let reqid = if self.cfg.lanes { LANES_MARKER } else { 0 };
        if q.send(self.keepalive(pnn, reqid)).await.is_ok() {
            self.count(|s| s.keepalives_sent += 1);
        }
    }

    async fn keepalive_loop(self: Rc<Self>) {
        tracing::info!("Keepalive monitoring has been started");
        if self.cfg.allow_mixed_versions {
            tracing::warn!("CTDB cluster with mixed versions configured");
        }
        loop {
            glommio::timer::sleep(self.cfg.keepalive_interval).await;
            let n = self.peers.borrow().len() as u32;
            for pnn in 0..n {
                if !self.is_peer(pnn) {
                    continue;
                }
                let (r, stuck) = {
                    let mut peers = self.peers.borrow_mut();
                    let p = &mut peers[pnn as usize];
                    // Heard from while disconnected makes a node connected
                    // (upstream), but only once we can send to it too.
                    if !p.live.connected && !p.out_up {
                        p.half_open = 0;
                        continue;
                    }
                    let r = p.live.round(self.cfg.keepalive_limit);
                    if !p.live.connected && p.out_up && p.ins == 0 {
                        p.half_open += 1;
                    } else {
                        p.half_open = 0;
                    }
                    (r, p.half_open >= self.cfg.keepalive_limit)
                };
                if stuck && !r.dead {
                    // Our connection is up but the node never connected
                    // back (or it answers nothing at all: a connect can
                    // land in a dying listener's backlog). Start over.
                    tracing::info!(
                        "{}: node {pnn} did not connect back, reconnecting",
                        self.my_ip
                    );
                    self.restart(pnn);
                    continue;
                }
                if r.connected {
                    self.emit(NodeEvent::Connected(pnn));
                }
                if r.dead {
                    tracing::info!("dead count reached for node {pnn}");
                    self.emit(NodeEvent::Disconnected(pnn));
                    self.restart(pnn);
                }
                if r.send_keepalive {
                    self.send_keepalive(pnn).await;
                }
            }
        }
    }
}

/// Waits until the peer closes an outgoing connection, or sends anything
/// on it (which upstream also takes as the end).
async fn wait_closed(mut r: ReadHalf<TcpStream>) {
    let mut buf = [0u8; 64];
    let _ = r.read(&mut buf).await;
}

/// Reads exactly one whole packet (its length, then the rest) and nothing
/// after it, so the connection can change hands between packets.
async fn read_one_packet(stream: &mut TcpStream, max_packet: u32) -> io::Result<Vec<u8>> {
    let mut len = [0u8; 4];
    stream.read_exact(&mut len).await?;
    let n = u32::from_le_bytes(len);
    if n < ctdb_protocol::HEADER_LEN as u32 || n > max_packet {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("first packet length {n} out of range"),
        ));
    }
    let mut pkt = vec![0u8; n as usize];
    pkt[..4].copy_from_slice(&len);
    stream.read_exact(&mut pkt[4..]).await?;
    Ok(pkt)
}
