//! The packet-level glue between a client connection and [`Databases`]:
//! one call per decoded client packet that answers database controls,
//! REQ_CALLs and DB_PUSH messages, appending every packet this client
//! must get (the reply, and the REQ_MESSAGEs for srvids it registered, in
//! upstream's order) to its output buffer. The socket code stays free of
//! database details and the database code free of sockets.

use ctdb_protocol::constants::{
    CTDB_BROADCAST_ACTIVE, CTDB_BROADCAST_ALL, CTDB_BROADCAST_CONNECTED, CTDB_CURRENT_NODE,
};
use ctdb_protocol::{Data, Header, Packet, Payload, ReplyCall, ReplyControl, ReqMessage};

use super::{CallOutcome, ControlCtx, Databases, OutControl, OutMessage};

/// What a handled packet left for the caller besides the bytes for this
/// client.
#[derive(Debug, Default)]
pub struct Served {
    /// Messages for srvids this client did not register, or other nodes:
    /// deliver to whoever registered them (upstream's srvid dispatch).
    pub elsewhere: Vec<OutMessage>,
    /// Node-to-node controls to send (NOREPLY).
    pub controls: Vec<OutControl>,
    /// Nothing was answered: keep the packet and hand it in again (a
    /// REQ_CALL on a frozen database after DB_THAW; an attach during
    /// recovery when recovery ends).
    pub deferred: bool,
    /// Set with `deferred` when the cause is a busy chain lock, not a
    /// freeze or recovery: the packet may be handed in again much sooner
    /// (1 ms, growing) than a deferred one.
    pub retry: bool,
}

impl Databases {
    /// Handles one packet from a local client. `None`: not a database
    /// matter (the caller handles it). `base` carries the node state
    /// (recovery, run state, inactive); `from_client` and `srcnode` are
    /// set here. `own_srvid` tells which srvids this client registered.
    /// Packets for this client are appended to `out`.
    pub fn serve_client_packet(
        &mut self,
        packet: &Packet<'_>,
        base: &ControlCtx,
        generation: u32,
        own_srvid: &dyn Fn(u64) -> bool,
        out: &mut Vec<u8>,
    ) -> Option<Served> {
        let pnn = self.pnn();
        match &packet.payload {
            Payload::ReqControl(c) => {
                let dest = packet.header.destnode;
                if dest != CTDB_CURRENT_NODE && dest != pnn && !is_broadcast(dest) {
                    // For another node: the caller forwards it.
                    return None;
                }
                let owned;
                let data: &[u8] = match &c.data {
                    Data::Raw(b) => b,
                    Data::Typed(t) => {
                        let mut v = Vec::new();
                        t.push(&mut v);
                        owned = v;
                        &owned
                    }
                };
                let ctx = ControlCtx {
                    srcnode: packet.header.srcnode,
                    from_client: !base.from_peer,
                    flags: c.flags,
                    ..*base
                };
                let o = self.handle_control(&ctx, c.opcode, data)?;
                let mut served = Served {
                    deferred: o.deferred,
                    controls: o.controls_after,
                    ..Default::default()
                };
                if o.deferred {
                    return Some(served);
                }
                let mut route = |msgs: Vec<OutMessage>, out: &mut Vec<u8>| {
                    for m in msgs {
                        if m.pnn == pnn && own_srvid(m.srvid) {
                            encode_message(pnn, generation, &m, out);
                        } else {
                            served.elsewhere.push(m);
                        }
                    }
                };
                route(o.messages_before, out);
                if !c.noreply() {
                    let errmsg = o.errmsg.as_deref().unwrap_or("").as_bytes();
                    let reply = ReplyControl {
                        status: o.status,
                        data: Data::Raw(&o.data),
                        errmsg,
                    };
                    let hdr =
                        Header::new(generation, packet.header.srcnode, pnn, packet.header.reqid);
                    if let Err(e) = Packet::new(hdr, Payload::ReplyControl(reply)).encode(out) {
                        tracing::error!("cannot encode control reply: {e}");
                    }
                }
                route(o.messages_after, out);
                Some(served)
            }
            Payload::ReqCall(call) => match self.handle_call(call) {
                CallOutcome::Reply { status, data } => {
                    // ctdbd_allocate_pkt leaves destnode 0.
                    let hdr = Header::new(generation, 0, pnn, packet.header.reqid);
                    let reply = ReplyCall {
                        status,
                        data: &data,
                    };
                    if let Err(e) = Packet::new(hdr, Payload::ReplyCall(reply)).encode(out) {
                        tracing::error!("cannot encode call reply: {e}");
                    }
                    Some(Served::default())
                }
                CallOutcome::Defer => Some(Served {
                    deferred: true,
                    ..Default::default()
                }),
                CallOutcome::Retry => Some(Served {
                    deferred: true,
                    retry: true,
                    ..Default::default()
                }),
                CallOutcome::Drop => Some(Served::default()),
            },
            // Records for a DB_PUSH on this node. Addressed to another node
            // (`ctdb restoredb` sends each node its copy) or to a
            // broadcast, the message is routed by the caller.
            Payload::ReqMessage(m)
                if self.is_push_srvid(m.srvid)
                    && matches!(packet.header.destnode, d if d == CTDB_CURRENT_NODE || d == pnn) =>
            {
                let bytes = match &m.data {
                    Data::Raw(b) => b.to_vec(),
                    Data::Typed(t) => {
                        let mut v = Vec::new();
                        t.push(&mut v);
                        v
                    }
                };
                self.push_message(m.srvid, &bytes);
                Some(Served::default())
            }
            _ => None,
        }
    }
}

/// Broadcast destinations reach this node too; with no other node that
/// is all of them (a cluster layer also forwards them to the others).
fn is_broadcast(dest: u32) -> bool {
    matches!(
        dest,
        CTDB_BROADCAST_ALL | CTDB_BROADCAST_ACTIVE | CTDB_BROADCAST_CONNECTED
    )
}

/// A REQ_MESSAGE from this node to its client.
pub fn encode_message(pnn: u32, generation: u32, m: &OutMessage, out: &mut Vec<u8>) {
    // As ctdbd's daemon_message_handler: destnode and reqid 0.
    let hdr = Header::new(generation, 0, pnn, 0);
    let pkt = Packet::new(hdr, Payload::ReqMessage(ReqMessage::raw(m.srvid, &m.data)));
    if let Err(e) = pkt.encode(out) {
        tracing::error!("cannot encode message for srvid 0x{:x}: {e}", m.srvid);
    }
}
