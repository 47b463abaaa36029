//! The control core's side of the other nodes: the transport's packets
//! turned into controls, replies, messages and calls, and the API the rest
//! of the daemon uses to reach other nodes.
//!
//! Why one module: a packet from another node is handled by the same code
//! as a client's (controls go through [`crate::controls`], database work
//! through [`crate::db`]), but replies must go back over TCP, controls this
//! node sends must be matched with their replies and timed out, and
//! messages and broadcasts must fan out to the right nodes. Keeping that in
//! one place leaves `controls.rs` and the recovery driver free of sockets.
//!
//! # Shape
//!
//! * The transport ([`crate::transport`]) runs on every core. With one
//!   core everything arrives here. With data cores, each data core runs
//!   its own side ([`crate::shard_peers`]): record calls on the volatile
//!   databases they serve go between a data core and the nodes on the data
//!   core's own connections; this module gets the rest (controls,
//!   messages, tunnels, calls on read-only and persistent databases) and
//!   whatever a data core hands back ([`handle_packet`]).
//! * Packets leave in the order they were sent ([`send_packet`]), so a
//!   DB_PUSH's records reach a node before its DB_PUSH_CONFIRM and a reply
//!   never overtakes an earlier message: a packet goes straight to the
//!   node's send queue (and, when that is idle, onto the socket) when
//!   nothing waits before it, else through one *outbox* task in order
//!   (packets for this node itself, a full send queue, and what follows
//!   them): [`crate::transport::outbox`], as the data cores' lanes do.
//! * Controls this node sends ([`control`]) get a request id whose top
//!   byte is 0 (the transport's rule for "reply to the control core"), a
//!   slot in the pending table, and a timeout; a node that dies fails its
//!   pending controls at once.
//! * Messages ([`deliver`]) go to local clients that registered the srvid,
//!   to the daemon's own handlers ([`crate::controls::daemon_message`]),
//!   to in-daemon subscribers ([`subscribe`], e.g. the recovery driver
//!   collecting DB_PULL records), and over the wire for other nodes;
//!   broadcasts are expanded here from the node flags.
//!
//! # Invariants
//!
//! * A packet from a node is answered to that node only; the reply keeps
//!   the request's reqid (the peer matches on it).
//! * Call and dmaster packets from another generation, or while this node
//!   is banned, are dropped ([`crate::transport::route::accept_packet`]).
//! * Every pending control ends exactly once: reply, node death, timeout.

use std::cell::{Cell, OnceCell, RefCell};
use std::collections::HashMap;
use std::io;
use std::rc::Rc;
use std::time::Duration;

use ctdb_protocol::constants::{
    CTDB_BROADCAST_ACTIVE, CTDB_BROADCAST_ALL, CTDB_BROADCAST_CONNECTED, CTDB_CTRL_FLAG_NOREPLY,
    CTDB_CURRENT_NODE, CTDB_MULTICAST, NODE_FLAGS_BANNED, NODE_FLAGS_DELETED,
    NODE_FLAGS_DISCONNECTED, NODE_FLAGS_INACTIVE,
};
use ctdb_protocol::types::StatisticsNode;
use ctdb_protocol::{
    Header, Operation, Packet, Payload, RawHeader, ReplyControl, ReqControl, ReqMessage,
};
use glommio::channels::local_channel::{self, LocalReceiver, LocalSender};

use crate::controls::{self, Outcome};
use crate::db::OutMessage;
use crate::error::DaemonError;
use crate::state::Daemon;
use crate::transport::outbox::Outbox;
use crate::transport::route::{accept_packet, ChainShards};
use crate::transport::{mesh, NodeEvent, Received, Transport, TransportConfig};

/// Offsets in the packet header (`ctdb_req_header`).
const OFF_DESTNODE: usize = 20;
const OFF_SRCNODE: usize = 24;
const OFF_REQID: usize = 28;

/// How long a deferred packet from another node waits between attempts.
const DEFER_RETRY: Duration = Duration::from_millis(100);

/// A control reply: status, data, error message.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ControlReply {
    pub status: i32,
    pub data: Vec<u8>,
    pub errmsg: Vec<u8>,
}

type ReplySlot = LocalSender<Result<ControlReply, DaemonError>>;

struct Pending {
    dest: u32,
    tx: ReplySlot,
}

/// The control core's link to the other nodes.
pub struct Peers {
    transport: Rc<Transport>,
    outbox: Outbox,
    next_seq: Cell<u32>,
    pending: RefCell<HashMap<u32, Pending>>,
}

/// The daemon's peers, once started (`None` on a cluster of one node).
pub type PeersCell = OnceCell<Rc<Peers>>;

fn put_u32(buf: &mut [u8], off: usize, v: u32) {
    if let Some(b) = buf.get_mut(off..off + 4) {
        b.copy_from_slice(&v.to_le_bytes());
    }
}

fn not_connected(pnn: u32) -> DaemonError {
    DaemonError::sys(
        "control to node",
        io::Error::new(
            io::ErrorKind::NotConnected,
            format!("node {pnn} is disconnected"),
        ),
    )
}

/// Starts the transport and the tasks that serve it, when the nodes file
/// names another node. Must run on the control core.
pub async fn start(d: &Rc<Daemon>, port: u16) -> Result<(), DaemonError> {
    let nodes: Vec<Option<std::net::IpAddr>> =
        d.id.nodes
            .borrow()
            .entries
            .iter()
            .map(|e| (!e.deleted).then_some(e.addr))
            .collect();
    let others = nodes
        .iter()
        .enumerate()
        .filter(|(i, a)| a.is_some() && *i as u32 != d.pnn())
        .count();
    if others == 0 {
        tracing::debug!("no other nodes: node-to-node transport not started");
        return Ok(());
    }
    let mut cfg = TransportConfig::new(d.pnn(), nodes);
    cfg.port = port;
    cfg.lanes = false;
    cfg.keepalive_interval =
        Duration::from_secs(u64::from(d.tunable("KeepaliveInterval", 5).max(1)));
    cfg.keepalive_limit = d.tunable("KeepaliveLimit", 5).max(1);
    cfg.allow_mixed_versions = d.tunable("AllowMixedVersions", 0) != 0;
    if let Some(v) = test_samba_version(std::env::var("CTDB_TEST_SAMBA_VERSION").ok().as_deref()) {
        cfg.keepalive_version = v;
    }
    cfg.started = d.start_instant;
    let transport = match d.data_cores.clone() {
        // Every data core gets a seat of the mesh and its own lanes.
        Some(dc) => {
            cfg.lanes = true;
            let mut seats = mesh::mesh(dc.shards() + 1, cfg.mesh_capacity);
            let data_seats = seats.split_off(1);
            let seat = seats.pop().expect("the mesh has a seat for core 0");
            dc.start_lanes(d, &cfg, data_seats).await;
            let t = Transport::start(cfg, seat, dc.routes()).await?;
            glommio::spawn_local(crate::shards::serve_events(d.clone(), dc)).detach();
            t
        }
        None => {
            let seat = mesh::mesh(1, cfg.mesh_capacity)
                .pop()
                .expect("a mesh of one core has one seat");
            let shards = Rc::new(ChainShards {
                shards: 0,
                hash_size: 1,
                control_dbs: Vec::new(),
            });
            Transport::start(cfg, seat, shards).await?
        }
    };
    transport.set_generation(d.generation());
    let peers = Rc::new(Peers {
        transport: transport.clone(),
        outbox: Outbox::start(transport.clone()),
        next_seq: Cell::new(1),
        pending: RefCell::new(HashMap::new()),
    });
    if d.peers.set(peers.clone()).is_err() {
        return Err(DaemonError::sys(
            "start transport",
            io::Error::other("transport started twice"),
        ));
    }
    glommio::spawn_local(receive_task(d.clone(), transport.clone())).detach();
    glommio::spawn_local(event_task(d.clone(), transport.clone())).detach();
    glommio::spawn_local(liveness_task(d.clone(), transport)).detach();
    Ok(())
}

/// The keepalive version `CTDB_TEST_SAMBA_VERSION` asks for, as upstream
/// reads it: a positive decimal number (leading digits, like `atoi`);
/// anything else is ignored with a warning and the real version is sent.
fn test_samba_version(value: Option<&str>) -> Option<u32> {
    let t = value?;
    let s = t.trim_start();
    let (sign, digits) = match s.strip_prefix('-') {
        Some(rest) => (-1i64, rest),
        None => (1, s.strip_prefix('+').unwrap_or(s)),
    };
    let end = digits
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(digits.len());
    let v = digits[..end].parse::<i64>().map(|v| v * sign).unwrap_or(0);
    match u32::try_from(v) {
        Ok(v) if v > 0 && v <= i32::MAX as u32 => Some(v),
        _ => {
            tracing::warn!("Failed to parse env var: {t}");
            None
        }
    }
}

impl Peers {
    /// RELOAD_NODES_FILE: the transport's node table becomes `nodes`
    /// ([`Transport::set_nodes`]).
    pub fn set_nodes(&self, nodes: &[Option<std::net::IpAddr>]) -> Result<(), DaemonError> {
        self.transport.set_nodes(nodes)
    }
}

/// Stops the transport (shutdown).
pub fn stop(d: &Daemon) {
    if let Some(p) = d.peers.get() {
        let st = p.transport.stats();
        tracing::info!(
            "core 0 transport: {} packets sent, {} received, {} of them handed to another core, \
             {} dropped",
            st.sent,
            st.received,
            st.rerouted,
            st.dropped
        );
        p.transport.stop();
        for (_, p) in p.pending.borrow_mut().drain() {
            let _ = p.tx.try_send(Err(not_connected(p.dest)));
        }
    }
}

/// The transport keeps its own keepalive accounting; the membership table
/// counts a node as heard from whenever the transport has it connected, so
/// the two never disagree about who is dead.
async fn liveness_task(d: Rc<Daemon>, t: Rc<Transport>) {
    loop {
        glommio::timer::sleep(Duration::from_millis(500)).await;
        if d.shutdown.get() {
            return;
        }
        t.set_generation(d.generation());
        t.set_allow_mixed_versions(d.tunable("AllowMixedVersions", 0) != 0);
        let n = d.id.nodes.borrow().entries.len() as u32;
        let mut node = d.node.borrow_mut();
        for pnn in 0..n {
            if pnn != d.pnn() && t.is_connected(pnn) {
                node.membership.on_rx(pnn);
            }
        }
    }
}

async fn event_task(d: Rc<Daemon>, t: Rc<Transport>) {
    while let Some(ev) = t.next_event().await {
        match ev {
            NodeEvent::Connected(pnn) => {
                tracing::info!("Node {pnn} connected");
                d.node.borrow_mut().membership.on_transport_connected(pnn);
            }
            NodeEvent::Disconnected(pnn) => {
                tracing::error!("Node {pnn} is dead");
                d.node.borrow_mut().membership.node_dead(pnn);
                fail_pending(&d, pnn);
                crate::calls::node_dead(&d, pnn);
            }
            NodeEvent::VersionMismatch { pnn, theirs, ours } => {
                tracing::error!(
                    "Node {pnn} runs an incompatible version ({theirs:?}, ours 0x{ours:x}): shutting down"
                );
                d.shutdown.set(true);
            }
        }
    }
}

fn fail_pending(d: &Daemon, pnn: u32) {
    let Some(p) = d.peers.get() else { return };
    let gone: Vec<u32> = p
        .pending
        .borrow()
        .iter()
        .filter(|(_, v)| v.dest == pnn)
        .map(|(k, _)| *k)
        .collect();
    for reqid in gone {
        if let Some(slot) = p.pending.borrow_mut().remove(&reqid) {
            let _ = slot.tx.try_send(Err(not_connected(pnn)));
        }
    }
}

async fn receive_task(d: Rc<Daemon>, t: Rc<Transport>) {
    while let Some(Received { from, bytes }) = t.recv().await {
        handle_packet(&d, from, bytes);
    }
}

/// A packet from node `from` for the control core: read from its own
/// connections or handed over by a data core.
pub fn handle_packet(d: &Rc<Daemon>, from: u32, bytes: Vec<u8>) {
    let hdr = match RawHeader::parse(&bytes) {
        Ok(h) => h,
        Err(e) => {
            tracing::error!("bad packet from node {from}: {e}");
            return;
        }
    };
    d.node.borrow_mut().membership.on_rx(from);
    let banned = d.node.borrow().membership.own_flags() & NODE_FLAGS_BANNED != 0;
    if !accept_packet(&hdr, d.generation(), banned) {
        tracing::debug!(
            "packet {} from node {from} dropped (generation {} vs ours {}, banned {banned})",
            hdr.operation,
            hdr.generation,
            d.generation()
        );
        return;
    }
    count_node_packet(d, &hdr);
    match hdr.operation() {
        Ok(Operation::ReqControl) => {
            glommio::spawn_local(serve_peer_control(d.clone(), from, bytes)).detach();
        }
        Ok(Operation::ReplyControl) => complete_control(d, from, &bytes),
        Ok(Operation::ReqMessage) => match Packet::decode(&bytes, &d.limits) {
            Ok(Packet {
                payload: Payload::ReqMessage(m),
                ..
            }) => {
                let data = m.data.to_vec();
                deliver_local(
                    d,
                    &OutMessage {
                        pnn: d.pnn(),
                        srvid: m.srvid,
                        data,
                    },
                );
            }
            Ok(_) => {}
            Err(e) => tracing::error!("bad message from node {from}: {e}"),
        },
        Ok(
            Operation::ReqCall
            | Operation::ReplyCall
            | Operation::ReplyError
            | Operation::ReqDmaster
            | Operation::ReplyDmaster,
        ) => crate::calls::peer_packet(d, from, bytes),
        Ok(Operation::ReqTunnel) => crate::calls::peer_tunnel(d, from, bytes),
        Ok(op) => tracing::debug!("{} from node {from} ignored", op.name()),
        Err(_) => tracing::error!(
            "unknown operation {} from node {from} dropped",
            hdr.operation
        ),
    }
}

fn count_node_packet(d: &Daemon, hdr: &RawHeader) {
    let op = hdr.operation().ok();
    d.stats.borrow_mut().count(|s| {
        s.node_packets_recv = s.node_packets_recv.wrapping_add(1);
        count_node_op(&mut s.node, op);
    });
}

/// Counts a packet from another node by type (`ctdb_statistics.node`);
/// the data cores count theirs with the same rule.
pub fn count_node_op(node: &mut StatisticsNode, op: Option<Operation>) {
    let c = match op {
        Some(Operation::ReqCall) => &mut node.req_call,
        Some(Operation::ReplyCall) => &mut node.reply_call,
        Some(Operation::ReqDmaster) => &mut node.req_dmaster,
        Some(Operation::ReplyDmaster) => &mut node.reply_dmaster,
        Some(Operation::ReplyError) => &mut node.reply_error,
        Some(Operation::ReqMessage) => &mut node.req_message,
        Some(Operation::ReqControl) => &mut node.req_control,
        Some(Operation::ReplyControl) => &mut node.reply_control,
        Some(Operation::ReqTunnel) => &mut node.req_tunnel,
        _ => return,
    };
    *c = c.wrapping_add(1);
}

/// A control from another node (or from this node to itself): served by
/// the same code as a client's, retried while deferred, answered to the
/// sender.
async fn serve_peer_control(d: Rc<Daemon>, from: u32, bytes: Vec<u8>) {
    let reply = run_control_locally(&d, &bytes, None).await;
    for p in reply {
        send_packet(&d, from, p);
    }
}

/// Runs a control packet on this node; returns the reply packets.
/// `deadline`: give up waiting on a deferred control then (no reply).
async fn run_control_locally(
    d: &Rc<Daemon>,
    bytes: &[u8],
    deadline: Option<std::time::Instant>,
) -> Vec<Vec<u8>> {
    let deadline = deadline.unwrap_or_else(|| {
        std::time::Instant::now()
            + Duration::from_secs(u64::from(d.tunable("DeferredAttachTimeout", 120)))
    });
    let mut out = Vec::new();
    loop {
        out.clear();
        match controls::serve_client_packet(d, 0, bytes, &mut out).await {
            Ok(Outcome::Done) => break,
            Ok(Outcome::Deferred) => {
                if std::time::Instant::now() > deadline {
                    tracing::error!("deferred control from another node timed out");
                    return Vec::new();
                }
                glommio::timer::sleep(DEFER_RETRY).await;
            }
            Err(why) => {
                tracing::error!("bad control from another node: {why}");
                return Vec::new();
            }
        }
    }
    split_packets(&out)
}

/// The whole packets in a buffer of encoded packets.
pub fn split_packets(buf: &[u8]) -> Vec<Vec<u8>> {
    let mut v = Vec::new();
    let mut off = 0;
    while off + 4 <= buf.len() {
        let len = u32::from_le_bytes([buf[off], buf[off + 1], buf[off + 2], buf[off + 3]]) as usize;
        if len < 4 || off + len > buf.len() {
            break;
        }
        v.push(buf[off..off + len].to_vec());
        off += len;
    }
    v
}

fn complete_control(d: &Daemon, from: u32, bytes: &[u8]) {
    let Some(p) = d.peers.get() else { return };
    let reqid = match RawHeader::parse(bytes) {
        Ok(h) => h.reqid,
        Err(_) => return,
    };
    let slot = p.pending.borrow_mut().remove(&reqid);
    let Some(slot) = slot else {
        tracing::debug!("reply {reqid} from node {from} matches no control (late?)");
        return;
    };
    let r = match Packet::decode(bytes, &d.limits) {
        Ok(Packet {
            payload: Payload::ReplyControl(r),
            ..
        }) => {
            let data = r.data.to_vec();
            Ok(ControlReply {
                status: r.status,
                data,
                errmsg: r.errmsg.to_vec(),
            })
        }
        Ok(_) => return,
        Err(e) => Err(DaemonError::sys(
            "control reply",
            io::Error::new(io::ErrorKind::InvalidData, format!("from node {from}: {e}")),
        )),
    };
    let _ = slot.tx.try_send(r);
}

/// Queues a whole packet for node `pnn` (in order with everything queued
/// before). This node's own pnn is served locally.
pub fn send_packet(d: &Daemon, pnn: u32, bytes: Vec<u8>) {
    match d.peers.get() {
        Some(p) => {
            d.stats.borrow_mut().count(|s| s.node_packets_sent += 1);
            p.outbox.send(pnn, bytes);
        }
        None => tracing::debug!("packet to node {pnn} dropped: no other nodes"),
    }
}

fn next_reqid(p: &Peers) -> u32 {
    loop {
        let seq = p.next_seq.get();
        p.next_seq.set(if seq >= 0x00ff_ffff { 1 } else { seq + 1 });
        if !p.pending.borrow().contains_key(&seq) {
            return seq;
        }
    }
}

/// The pnns a destination stands for: one node, or a broadcast expanded
/// from the node flags (this node included when it qualifies).
pub fn targets(d: &Daemon, dest: u32) -> Vec<u32> {
    let dest = if dest == CTDB_CURRENT_NODE {
        d.pnn()
    } else {
        dest
    };
    let node = d.node.borrow();
    let nodes = node.membership.nodemap();
    let pick = |f: &dyn Fn(u32) -> bool| -> Vec<u32> {
        nodes
            .iter()
            .filter(|(_, fl)| fl & NODE_FLAGS_DELETED == 0 && f(*fl))
            .map(|(p, _)| *p)
            .collect()
    };
    match dest {
        CTDB_BROADCAST_ALL => pick(&|_| true),
        CTDB_BROADCAST_CONNECTED | CTDB_MULTICAST => pick(&|fl| fl & NODE_FLAGS_DISCONNECTED == 0),
        CTDB_BROADCAST_ACTIVE => pick(&|fl| fl & NODE_FLAGS_INACTIVE == 0),
        pnn => vec![pnn],
    }
}

/// Sends a control that wants no reply (`CTDB_CTRL_FLAG_NOREPLY`) to
/// `dest`, a node or a broadcast; this node's own copy (unless
/// `skip_self`) goes through the transport's loopback, so it is served
/// like any other node's.
pub fn send_control_noreply(d: &Daemon, dest: u32, opcode: u32, data: &[u8], skip_self: bool) {
    if d.peers.get().is_none() {
        tracing::debug!("control {opcode} for node {dest} not sent: no other nodes");
        return;
    }
    for pnn in targets(d, dest) {
        if skip_self && pnn == d.pnn() {
            continue;
        }
        let mut req = ReqControl::raw(opcode, data);
        req.flags = CTDB_CTRL_FLAG_NOREPLY;
        let mut pkt = Vec::new();
        if Packet::new(
            Header::new(d.generation(), pnn, d.pnn(), 0),
            Payload::ReqControl(req),
        )
        .encode(&mut pkt)
        .is_ok()
        {
            send_packet(d, pnn, pkt);
        }
    }
}

/// Sends a control to node `dest` (this node included) and waits for its
/// reply, at most `timeout`. A control with `CTDB_CTRL_FLAG_NOREPLY` in
/// `flags` returns at once with status 0.
pub async fn control(
    d: &Rc<Daemon>,
    dest: u32,
    opcode: u32,
    srvid: u64,
    flags: u32,
    data: &[u8],
    timeout: Duration,
) -> Result<ControlReply, DaemonError> {
    let noreply = flags & CTDB_CTRL_FLAG_NOREPLY != 0;
    let local = dest == d.pnn() || dest == CTDB_CURRENT_NODE;
    let mut req = ReqControl::raw(opcode, data);
    req.srvid = srvid;
    req.flags = flags;
    if local {
        let mut pkt = Vec::new();
        Packet::new(
            Header::new(d.generation(), d.pnn(), d.pnn(), 0),
            Payload::ReqControl(req),
        )
        .encode(&mut pkt)
        .map_err(|e| DaemonError::sys("encode control", io::Error::other(e.to_string())))?;
        let deadline = std::time::Instant::now() + timeout;
        let replies = run_control_locally(d, &pkt, Some(deadline)).await;
        if noreply {
            return Ok(ControlReply::default());
        }
        for r in replies {
            if let Ok(Packet {
                payload: Payload::ReplyControl(r),
                ..
            }) = Packet::decode(&r, &d.limits)
            {
                let data = r.data.to_vec();
                return Ok(ControlReply {
                    status: r.status,
                    data,
                    errmsg: r.errmsg.to_vec(),
                });
            }
        }
        return Err(DaemonError::sys(
            "control to this node",
            io::Error::new(
                io::ErrorKind::TimedOut,
                format!("control {opcode}: no reply"),
            ),
        ));
    }
    let Some(p) = d.peers.get().cloned() else {
        return Err(not_connected(dest));
    };
    if !d.node.borrow().membership.is_connected(dest) {
        return Err(not_connected(dest));
    }
    let reqid = if noreply { 0 } else { next_reqid(&p) };
    let mut pkt = Vec::new();
    Packet::new(
        Header::new(d.generation(), dest, d.pnn(), reqid),
        Payload::ReqControl(req),
    )
    .encode(&mut pkt)
    .map_err(|e| DaemonError::sys("encode control", io::Error::other(e.to_string())))?;
    if noreply {
        send_packet(d, dest, pkt);
        return Ok(ControlReply::default());
    }
    let (tx, rx) = local_channel::new_bounded(1);
    p.pending.borrow_mut().insert(reqid, Pending { dest, tx });
    send_packet(d, dest, pkt);
    let r = futures_lite::future::or(async { rx.recv().await }, async {
        glommio::timer::sleep(timeout).await;
        None
    })
    .await;
    p.pending.borrow_mut().remove(&reqid);
    match r {
        Some(r) => r,
        None => Err(DaemonError::sys(
            "control to node",
            io::Error::new(
                io::ErrorKind::TimedOut,
                format!("control {opcode} to node {dest} timed out"),
            ),
        )),
    }
}

/// A client's control for another node (or a broadcast): sent on, and the
/// reply relayed to the client with the client's own request id. Runs in
/// its own task so the client's later packets are not held up.
pub fn forward_client_control(d: &Rc<Daemon>, client: u32, pkt: &[u8]) {
    let Ok(hdr) = RawHeader::parse(pkt) else {
        return;
    };
    let Ok(Packet {
        payload: Payload::ReqControl(c),
        ..
    }) = Packet::decode(pkt, &d.limits)
    else {
        return;
    };
    let opcode = c.opcode;
    let srvid = c.srvid;
    let flags = c.flags;
    let noreply = c.noreply();
    let data = c.data.to_vec();
    let timeout = Duration::from_secs(u64::from(d.tunable("ControlTimeout", 60).max(1)));
    let dests = targets(d, hdr.destnode);
    let broadcast = crate::state::is_broadcast(hdr.destnode);
    for dest in dests {
        if dest == d.pnn() {
            // A broadcast including this node is served by the caller.
            continue;
        }
        let d = d.clone();
        let data = data.clone();
        let (client_reqid, client_pnn) = (hdr.reqid, hdr.srcnode);
        let flags = if broadcast {
            flags | CTDB_CTRL_FLAG_NOREPLY
        } else {
            flags
        };
        glommio::spawn_local(async move {
            let r = control(&d, dest, opcode, srvid, flags, &data, timeout).await;
            if noreply || broadcast {
                if let Err(e) = r {
                    tracing::debug!("control {opcode} to node {dest}: {e}");
                }
                return;
            }
            let reply = match r {
                Ok(r) => r,
                Err(e) => {
                    tracing::error!("control {opcode} to node {dest} failed: {e}");
                    ControlReply {
                        status: -1,
                        data: Vec::new(),
                        errmsg: b"node is disconnected".to_vec(),
                    }
                }
            };
            let mut out = Vec::new();
            let rc = ctdb_protocol::ReplyControl {
                status: reply.status,
                data: ctdb_protocol::Data::Raw(&reply.data),
                errmsg: &reply.errmsg,
            };
            if Packet::new(
                Header::new(d.generation(), client_pnn, dest, client_reqid),
                Payload::ReplyControl(rc),
            )
            .encode(&mut out)
            .is_ok()
            {
                send_to_client(&d, client, out).await;
            }
        })
        .detach();
    }
}

/// Sends a packet to a connected local client, if it is still there.
pub async fn send_to_client(d: &Daemon, client: u32, pkt: Vec<u8>) {
    d.call_answered(client, &pkt);
    let q = d.clients.borrow().get(&client).map(|c| c.queue.clone());
    if let Some(q) = q {
        if let Err(e) = q.send(pkt).await {
            tracing::debug!("reply to client {client} dropped: {e}");
        } else {
            d.stats.borrow_mut().count(|s| s.client_packets_sent += 1);
        }
    }
}

/// The status-only reply to a control answered late (after a deferred
/// run): to local client `client`, or with client 0 to node `srcnode`.
pub async fn reply_status(d: &Daemon, client: u32, srcnode: u32, reqid: u32, status: i32) {
    let mut out = Vec::new();
    if let Err(e) = Packet::new(
        Header::new(d.generation(), srcnode, d.pnn(), reqid),
        Payload::ReplyControl(ReplyControl::status(status)),
    )
    .encode(&mut out)
    {
        tracing::error!("cannot encode control reply: {e}");
        return;
    }
    if client != 0 {
        send_to_client(d, client, out).await;
    } else {
        send_packet(d, srcnode, out);
    }
}

/// Delivers a message: to this node's clients and handlers when it is
/// for this node, over the wire to the other nodes it names.
pub fn deliver(d: &Daemon, m: &OutMessage) {
    for pnn in targets(d, m.pnn) {
        if pnn == d.pnn() {
            deliver_local(d, &OutMessage { pnn, ..m.clone() });
            continue;
        }
        if d.peers.get().is_none() {
            tracing::warn!(
                "message for srvid 0x{:x} to node {pnn} dropped: no link to other nodes",
                m.srvid
            );
            continue;
        }
        let mut pkt = Vec::new();
        if Packet::new(
            Header::new(d.generation(), pnn, d.pnn(), 0),
            Payload::ReqMessage(ReqMessage::raw(m.srvid, &m.data)),
        )
        .encode(&mut pkt)
        .is_ok()
        {
            send_packet(d, pnn, pkt);
        }
    }
}

/// A message for this node: the daemon's own handlers, in-daemon
/// subscribers, then every client that registered the srvid.
pub fn deliver_local(d: &Daemon, m: &OutMessage) {
    // Records of a DB_PUSH in progress (upstream's DB_PUSH_START registers
    // a srvid handler in ctdbd), from whichever node pushes them. Messages
    // from one node are handled in arrival order here, before any later
    // control of that node (controls run in tasks spawned after), so the
    // records are stored before DB_PUSH_CONFIRM counts them.
    if d.dbs.borrow().is_push_srvid(m.srvid) {
        if !d.dbs.borrow_mut().push_message(m.srvid, &m.data) {
            tracing::error!(
                "recovery records ({} bytes) for srvid 0x{:x} not stored",
                m.data.len(),
                m.srvid
            );
        }
        return;
    }
    crate::controls::daemon_message(d, m);
    {
        let mut subs = d.subscribers.borrow_mut();
        if let Some(list) = subs.get_mut(&m.srvid) {
            list.retain(|tx| tx.try_send(m.data.clone()).is_ok());
            if list.is_empty() {
                subs.remove(&m.srvid);
            }
        }
    }
    d.deliver_to_clients(m);
}

/// Messages to `srvid` on this node, also handed to the returned receiver
/// until it is dropped (the daemon's own consumers: the recovery driver's
/// DB_PULL records, LEADER and ELECTION messages).
pub fn subscribe(d: &Daemon, srvid: u64) -> LocalReceiver<Vec<u8>> {
    let (tx, rx) = local_channel::new_unbounded();
    d.subscribers
        .borrow_mut()
        .entry(srvid)
        .or_default()
        .push(tx);
    rx
}

/// Rewrites a packet's routing fields (destination, source, request id).
pub fn readdress(pkt: &mut [u8], destnode: u32, srcnode: u32, reqid: u32) {
    put_u32(pkt, OFF_DESTNODE, destnode);
    put_u32(pkt, OFF_SRCNODE, srcnode);
    put_u32(pkt, OFF_REQID, reqid);
}

#[cfg(test)]
mod tests {
    use super::test_samba_version;

    #[test]
    fn test_samba_version_parses_like_atoi() {
        assert_eq!(test_samba_version(None), None);
        assert_eq!(test_samba_version(Some("262161")), Some(262_161));
        assert_eq!(test_samba_version(Some(" 42abc")), Some(42));
        assert_eq!(test_samba_version(Some("0")), None);
        assert_eq!(test_samba_version(Some("-5")), None);
        assert_eq!(test_samba_version(Some("x")), None);
        assert_eq!(test_samba_version(Some("99999999999")), None);
    }
}
