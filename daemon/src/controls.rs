//! Client packets on the control core: node controls answered here, database
//! controls, calls and record pushes handed to the database layer
//! ([`Databases::serve_client_packet`]), messages delivered to the clients
//! that registered their srvid, and the few messages the daemon itself
//! answers (TAKEOVER_RUN and the other takeover messages go to
//! [`crate::takeover::run`]; public-address controls to
//! [`crate::takeover::node`]). Controls for other nodes, broadcasts
//! and cluster-wide TRANS3_COMMIT go through [`crate::peers`]; REQ_CALLs
//! that need another node through [`crate::calls`].
//!
//! Why here and not in `client.rs`: the socket code only frames packets;
//! what a control does depends on the node state in [`Daemon`].

use ctdb_protocol::constants::{
    CTDB_CAP_LMASTER, CTDB_CAP_RECMASTER, CTDB_CURRENT_NODE, CTDB_RECOVERY_ACTIVE,
    CTDB_RECOVERY_NORMAL, NODE_FLAGS_INACTIVE, NODE_FLAGS_PERMANENTLY_DISABLED,
};
use ctdb_protocol::types::{StatisticsList, TunableList, Uptime, VarList};
use ctdb_protocol::{
    ControlData, ControlReplyData, Header, Opcode, Packet, Payload, RawHeader, ReplyControl,
    ReqControl, Wire, CTDB_PROTOCOL,
};

use crate::cluster::node::{Effect, Handled};
use crate::cluster::{Control, ControlResult, Reply};
use crate::db::{ControlCtx, OutMessage};
use crate::state::{now_timeval, Daemon};

/// What became of a client packet.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Handled; whatever this client gets is in the output buffer.
    Done,
    /// Not answerable now (an attach during recovery, a call on a frozen
    /// database): hand the same packet in again later.
    Deferred,
}

/// Handles one client packet as the client socket does: with data cores,
/// a REQ_CALL on a volatile database is served by the data core owning
/// its key ([`crate::shards`]); everything else by
/// [`handle_client_packet`] on this core. `Err`: the packet is malformed
/// and the connection must go.
pub async fn serve_client_packet(
    d: &std::rc::Rc<Daemon>,
    client: u32,
    pkt: &[u8],
    out: &mut Vec<u8>,
) -> Result<Outcome, String> {
    if client != 0 {
        crate::calls::client_active(d, client);
        if let Some(dc) = d.data_cores.clone() {
            dc.client_active(client).await;
        }
    }
    if client != 0 && forwarded(d, client, pkt) {
        return Ok(Outcome::Done);
    }
    if crate::vacuumer::control(d, client, pkt) {
        return Ok(Outcome::Done);
    }
    if client != 0 && cluster_commit(d, client, pkt) {
        return Ok(Outcome::Done);
    }
    if client != 0 {
        if let Some(dc) = d.data_cores.clone() {
            if dc.forward_call(d, client, pkt).await {
                return Ok(Outcome::Done);
            }
        }
    }
    if client != 0 && crate::calls::client_call(d, client, pkt) {
        return Ok(Outcome::Done);
    }
    if let Some(r) = crate::takeover::node::serve(d, client, pkt, out).await {
        return r;
    }
    let Some(dc) = d.data_cores.clone() else {
        return handle_client_packet(d, client, pkt, out);
    };
    if let Some(o) = dc.serve_call(d, pkt, out).await {
        return Ok(o);
    }
    dc.before_control(d, pkt).await;
    let r = handle_client_packet(d, client, pkt, out);
    dc.after_control(d).await;
    r
}

/// A client's control for another node, or a broadcast one, goes on to
/// those nodes ([`crate::peers::forward_client_control`]); a broadcast
/// that includes this node is also served here (returns `false` then).
fn forwarded(d: &std::rc::Rc<Daemon>, client: u32, pkt: &[u8]) -> bool {
    let Ok(raw) = RawHeader::parse(pkt) else {
        return false;
    };
    if raw.operation() != Ok(ctdb_protocol::Operation::ReqControl) {
        return false;
    }
    let dest = raw.destnode;
    if dest == CTDB_CURRENT_NODE || dest == d.pnn() {
        return false;
    }
    if d.peers.get().is_none()
        || d.id.nodes.borrow().get(dest).is_none() && !crate::state::is_broadcast(dest)
    {
        // No other nodes (or an unknown one): answered below.
        return false;
    }
    if crate::state::is_broadcast(dest) {
        crate::peers::forward_client_control(d, client, pkt);
        return false;
    }
    crate::peers::forward_client_control(d, client, pkt);
    true
}

/// TRANS3_COMMIT on a cluster (upstream's `ctdb_control_trans3_commit`):
/// the record buffer goes as UPDATE_RECORD to every active node of the vnn
/// map, this one included, and the client hears 0 once all applied it, −1
/// if any failed or timed out. `false`: served locally (one node, no vnn
/// map yet, recovery active — the local path answers those).
fn cluster_commit(d: &std::rc::Rc<Daemon>, client: u32, pkt: &[u8]) -> bool {
    let Ok(raw) = RawHeader::parse(pkt) else {
        return false;
    };
    if raw.operation() != Ok(ctdb_protocol::Operation::ReqControl) || d.peers.get().is_none() {
        return false;
    }
    let Ok(Packet {
        payload: Payload::ReqControl(c),
        header,
    }) = Packet::decode(pkt, &d.limits)
    else {
        return false;
    };
    if c.opcode != Opcode::Trans3Commit as u32 {
        return false;
    }
    let nodes: Vec<u32> = {
        let node = d.node.borrow();
        if node.recmode() == CTDB_RECOVERY_ACTIVE {
            return false;
        }
        let mut v: Vec<u32> = node
            .vnnmap()
            .map
            .iter()
            .copied()
            .filter(|p| {
                node.membership
                    .flags(*p)
                    .is_some_and(|f| f & NODE_FLAGS_INACTIVE == 0)
            })
            .collect();
        v.sort_unstable();
        v.dedup();
        v
    };
    if nodes.len() <= 1 {
        return false;
    }
    let data = c.data.to_vec();
    if ctdb_protocol::types::RecBuffer::from_bytes(&data).is_err() {
        // Malformed: the local path reports it.
        return false;
    }
    let noreply = c.noreply();
    let (reqid, srcnode) = (header.reqid, header.srcnode);
    // Every recovery moves the vnn map to a new generation.
    let generation = d.generation();
    let d = d.clone();
    let timeout = std::time::Duration::from_secs(u64::from(d.tunable("ControlTimeout", 60).max(1)));
    glommio::spawn_local(async move {
        // All nodes at once, as upstream sends them.
        let handles: Vec<_> = nodes
            .iter()
            .map(|&pnn| {
                let (d, data) = (d.clone(), data.clone());
                glommio::spawn_local(async move {
                    crate::peers::control(
                        &d,
                        pnn,
                        Opcode::UpdateRecord as u32,
                        0,
                        0,
                        &data,
                        timeout,
                    )
                    .await
                })
            })
            .collect();
        let mut results = Vec::with_capacity(handles.len());
        for h in handles {
            results.push(h.await);
        }
        let mut status = 0;
        for (pnn, r) in nodes.iter().zip(results) {
            match r {
                Ok(r) if r.status == 0 => {}
                Ok(r) => {
                    tracing::error!("UPDATE_RECORD on node {pnn} failed ({})", r.status);
                    status = -1;
                }
                Err(e) => {
                    tracing::error!("UPDATE_RECORD on node {pnn}: {e}");
                    status = -1;
                }
            }
        }
        if status != 0 {
            // As upstream's ctdb_persistent_callback: a node that did not
            // apply the update means the copies differ; a recovery makes
            // them agree again, and the client hears only after it
            // (status 2, "trans3 commit ended by recovery"), so its
            // sequence-number check sees the recovered database.
            status = 2;
            if d.node.borrow().recmode() == CTDB_RECOVERY_NORMAL {
                cluster_control(&d, Control::SetRecmode(CTDB_RECOVERY_ACTIVE));
                d.recovery_wanted.set(true);
            }
        } else if d.generation() != generation || d.node.borrow().recmode() != CTDB_RECOVERY_NORMAL
        {
            // A recovery overlapped the commit: it may have replaced a
            // copy that had the update with one that had not. Upstream
            // ignores replies during a recovery and ends every pending
            // commit at END_RECOVERY with status 2
            // (ctdb_persistent_finish_trans3_commits); the same here.
            tracing::info!("trans3 commit overlapped a recovery: status 2 after it");
            status = 2;
        }
        if status == 2 {
            let limit = std::time::Instant::now() + timeout;
            while d.node.borrow().recmode() != CTDB_RECOVERY_NORMAL
                && std::time::Instant::now() < limit
                && !d.shutdown.get()
            {
                glommio::timer::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
        if !noreply {
            crate::peers::reply_status(&d, client, srcnode, reqid, status).await;
        }
    })
    .detach();
    true
}

/// Handles one client packet on the control core. `Err`: the packet is
/// malformed and the connection must go.
pub fn handle_client_packet(
    d: &Daemon,
    client: u32,
    pkt: &[u8],
    out: &mut Vec<u8>,
) -> Result<Outcome, String> {
    let raw = RawHeader::parse(pkt).map_err(|e| e.to_string())?;
    // As upstream: a wrong version or an unknown operation drops the
    // packet, not the connection (framing is intact).
    if raw.version != CTDB_PROTOCOL {
        tracing::error!("Bad CTDB version 0x{:x} rejected in daemon", raw.version);
        return Ok(Outcome::Done);
    }
    if raw.operation().is_err() {
        tracing::error!("daemon: unrecognized operation {}", raw.operation);
        return Ok(Outcome::Done);
    }
    let packet = Packet::decode(pkt, &d.limits).map_err(|e| e.to_string())?;
    {
        let mut st = d.stats.borrow_mut();
        st.count(|s| s.client_packets_recv += 1);
        match &packet.payload {
            Payload::ReqControl(_) => st.count(|s| s.client.req_control += 1),
            Payload::ReqCall(_) => st.count(|s| {
                s.client.req_call += 1;
                s.total_calls += 1
            }),
            Payload::ReqMessage(_) => st.count(|s| s.client.req_message += 1),
            Payload::ReqTunnel(_) => st.count(|s| s.client.req_tunnel += 1),
            _ => {}
        }
    }
    let before = out.len();
    let r = serve(d, client, &packet, out);
    let sent = count_packets(&out[before..]);
    if sent > 0 {
        d.stats
            .borrow_mut()
            .count(|s| s.client_packets_sent += sent);
    }
    r
}

fn count_packets(buf: &[u8]) -> u32 {
    let mut n = 0;
    let mut off = 0;
    while off + 4 <= buf.len() {
        let len = u32::from_le_bytes([buf[off], buf[off + 1], buf[off + 2], buf[off + 3]]) as usize;
        if len == 0 {
            break;
        }
        off += len;
        n += 1;
    }
    n
}

fn serve(
    d: &Daemon,
    client: u32,
    packet: &Packet<'_>,
    out: &mut Vec<u8>,
) -> Result<Outcome, String> {
    // Node controls first: they need the client (srvids) and node state.
    if let Payload::ReqControl(c) = &packet.payload {
        let dest = packet.header.destnode;
        let for_me = dest == CTDB_CURRENT_NODE || dest == d.pnn();
        if !for_me && !crate::state::is_broadcast(dest) {
            if d.id.nodes.borrow().get(dest).is_none() {
                tracing::error!("control {} for unknown node {dest}", c.opcode);
            } else {
                tracing::error!(
                    "control {} for node {dest} refused: no link to other nodes yet",
                    c.opcode
                );
            }
            if !c.noreply() {
                reply(d, packet, -1, &[], b"node is disconnected", out)?;
            }
            return Ok(Outcome::Done);
        }
        if c.opcode == Opcode::SetRecmode as u32 {
            // SET_RECMODE NORMAL with a cluster lock waits for this
            // daemon's own try of the lock (crate::recmode_lock).
            let v = c.data.to_vec();
            if let Some(b) = v.get(..4).and_then(|b| <[u8; 4]>::try_from(b).ok()) {
                if crate::recmode_lock::must_wait(d, u32::from_le_bytes(b)) {
                    return Ok(Outcome::Deferred);
                }
            }
        }
        if let Some((status, data)) = node_control(d, client, c) {
            if !c.noreply() {
                reply(d, packet, status, &data, b"", out)?;
            }
            return Ok(Outcome::Done);
        }
    }
    let base = {
        let node = d.node.borrow();
        ControlCtx {
            recovery_active: node.recmode() == CTDB_RECOVERY_ACTIVE,
            before_startup: d.runstate.get() < 4,
            node_inactive: node.membership.own_flags() & NODE_FLAGS_INACTIVE != 0,
            // Client id 0: a packet from another node or from the daemon.
            from_peer: client == 0,
            ..Default::default()
        }
    };
    let generation = d.generation();
    let served = {
        let own = |id: u64| d.client_has_srvid(client, id);
        d.dbs
            .borrow_mut()
            .serve_client_packet(packet, &base, generation, &own, out)
    };
    if let Some(s) = served {
        for m in &s.elsewhere {
            d.deliver(m);
        }
        for c in &s.controls {
            if c.opcode == Opcode::DbDetach && d.peers.get().is_none() {
                // A cluster of one has no transport to loop the broadcast
                // back: this node's copy is served here.
                let ctx = ControlCtx {
                    from_peer: true,
                    ..base
                };
                let _ = d
                    .dbs
                    .borrow_mut()
                    .handle_control(&ctx, c.opcode as u32, &c.data);
                continue;
            }
            // A broadcast attach is already done here; a traverse's
            // TRAVERSE_ALL includes this node (served through the loopback).
            let attach = matches!(
                c.opcode,
                Opcode::DbAttach | Opcode::DbAttachPersistent | Opcode::DbAttachReplicated
            );
            crate::peers::send_control_noreply(d, c.destnode, c.opcode as u32, &c.data, attach);
            if matches!(c.opcode, Opcode::TraverseAll | Opcode::TraverseAllExt) {
                // Both layouts start {db_id, reqid}: expect an end marker
                // from each node it really went to.
                if let Some(id) = c.data.get(4..8) {
                    let reqid = u32::from_ne_bytes([id[0], id[1], id[2], id[3]]);
                    let n = crate::peers::targets(d, c.destnode).len() as u32;
                    d.dbs.borrow_mut().traverse_sent_to(reqid, n);
                }
            }
        }
        return Ok(if s.deferred {
            Outcome::Deferred
        } else {
            Outcome::Done
        });
    }
    match &packet.payload {
        Payload::ReqControl(c) => {
            tracing::error!("Unknown CTDB control opcode {}", c.opcode);
            if !c.noreply() {
                reply(d, packet, -1, &[], b"", out)?;
            }
        }
        Payload::ReqMessage(m) => {
            let data = m.data.to_vec();
            let dest = packet.header.destnode;
            let pnn = if dest == CTDB_CURRENT_NODE {
                d.pnn()
            } else {
                dest
            };
            d.deliver(&OutMessage {
                pnn,
                srvid: m.srvid,
                data,
            });
        }
        Payload::ReqTunnel(_) => {
            // As upstream's ctdb_daemon_send_tunnel: the whole packet, from
            // this node, to the node it names (this one included).
            let dest = packet.header.destnode;
            let dest = if dest == CTDB_CURRENT_NODE {
                d.pnn()
            } else {
                dest
            };
            let mut bytes = Vec::new();
            if packet.encode(&mut bytes).is_ok() {
                crate::peers::readdress(&mut bytes, dest, d.pnn(), packet.header.reqid);
                if dest == d.pnn() {
                    crate::calls::deliver_tunnel(d, d.pnn(), bytes);
                } else if crate::state::is_broadcast(dest) {
                    tracing::error!("REQ_TUNNEL to a broadcast address 0x{dest:x} dropped");
                } else {
                    crate::peers::send_packet(d, dest, bytes);
                }
            }
        }
        other => {
            tracing::error!(
                "daemon: operation {} is not accepted from clients",
                other.operation().name()
            );
        }
    }
    Ok(Outcome::Done)
}

fn reply(
    d: &Daemon,
    packet: &Packet<'_>,
    status: i32,
    data: &[u8],
    errmsg: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), String> {
    let hdr = Header::new(
        d.generation(),
        packet.header.srcnode,
        d.pnn(),
        packet.header.reqid,
    );
    let r = ReplyControl {
        status,
        data: ctdb_protocol::Data::Raw(data),
        errmsg,
    };
    Packet::new(hdr, Payload::ReplyControl(r))
        .encode(out)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

fn typed(r: ControlReplyData<'_>) -> Vec<u8> {
    let mut v = Vec::new();
    r.push(&mut v);
    v
}

fn cstring(s: &str) -> Vec<u8> {
    let mut v = s.as_bytes().to_vec();
    v.push(0);
    v
}

const FAIL: Option<(i32, Vec<u8>)> = Some((-1, Vec::new()));

fn ok() -> Option<(i32, Vec<u8>)> {
    Some((0, Vec::new()))
}

/// The controls this module answers: `None` for database controls (and
/// unknown ones), which go on to the database layer.
fn node_control(d: &Daemon, client: u32, c: &ReqControl<'_>) -> Option<(i32, Vec<u8>)> {
    let Some(op) = Opcode::from_u32(c.opcode) else {
        return FAIL;
    };
    if op == Opcode::DisableNode || op == Opcode::EnableNode {
        let disable = op == Opcode::DisableNode;
        let (set, clear) = if disable {
            (NODE_FLAGS_PERMANENTLY_DISABLED, 0)
        } else {
            (0, NODE_FLAGS_PERMANENTLY_DISABLED)
        };
        d.node.borrow_mut().membership.update_own_flags(set, clear);
        tracing::info!(
            "This node has been administratively {}",
            if disable { "disabled" } else { "enabled" }
        );
        return ok();
    }
    if op == Opcode::Ping && !c.data.is_empty() {
        tracing::error!("PING with {} bytes of data, expected none", c.data.len());
        return FAIL;
    }
    let input = match c.decode_data() {
        Ok(v) => v,
        Err(e) => {
            if crate::db::is_db_control(op) {
                return None;
            }
            tracing::error!("control {} with bad data: {e}", op.name());
            return FAIL;
        }
    };
    use ControlData as C;
    match input {
        C::Ping => Some((d.num_clients() as i32, Vec::new())),
        C::GetPnn => Some((d.pnn() as i32, Vec::new())),
        C::GetPid => Some((d.pid, Vec::new())),
        // As upstream: only processes connected as clients "exist".
        C::ProcessExists(pid) => Some((
            if d.pid_is_client(pid) && crate::sys::process_exists(pid) {
                0
            } else {
                -1
            },
            Vec::new(),
        )),
        C::CheckPidSrvid(ps) => Some((
            if crate::sys::process_exists(ps.pid) && d.pid_has_srvid(ps.pid, ps.srvid) {
                0
            } else {
                -1
            },
            Vec::new(),
        )),
        C::RegisterSrvid => {
            if let Some(e) = d.clients.borrow_mut().get_mut(&client) {
                e.srvids.insert(c.srvid);
            }
            ok()
        }
        C::DeregisterSrvid => {
            let removed = d
                .clients
                .borrow_mut()
                .get_mut(&client)
                .is_some_and(|e| e.srvids.remove(&c.srvid));
            if removed {
                ok()
            } else {
                tracing::error!("Failed to deregister srvid 0x{:x}: not registered", c.srvid);
                FAIL
            }
        }
        C::TunnelRegister => {
            // The tunnel id travels in the srvid field.
            if !d.clients.borrow().contains_key(&client) {
                tracing::error!("Bad client_id in ctdb_tunnel_register");
                return FAIL;
            }
            let mut t = d.tunnels.borrow_mut();
            if t.contains_key(&c.srvid) {
                tracing::error!("Tunnel id 0x{:x} already registered", c.srvid);
                return FAIL;
            }
            t.insert(c.srvid, client);
            tracing::info!("Registered tunnel for id 0x{:x}", c.srvid);
            ok()
        }
        C::TunnelDeregister => {
            let mut t = d.tunnels.borrow_mut();
            if t.get(&c.srvid) == Some(&client) {
                t.remove(&c.srvid);
                ok()
            } else {
                tracing::error!("Failed to deregister tunnel id 0x{:x}", c.srvid);
                FAIL
            }
        }
        C::Statistics => {
            let mut s = d.stats.borrow().total;
            s.num_clients = d.num_clients();
            s.frozen = u32::from(d.frozen.get());
            s.recovering = u32::from(d.node.borrow().recmode() == CTDB_RECOVERY_ACTIVE);
            s.statistics_current_time = now_timeval();
            s.memory_used = u32::try_from(crate::memreport::daemon_bytes(d)).unwrap_or(u32::MAX);
            Some((0, typed(ControlReplyData::Statistics(Box::new(s)))))
        }
        C::StatisticsReset => {
            d.stats.borrow_mut().reset();
            d.dbs.borrow_mut().reset_statistics();
            ok()
        }
        C::GetStatHistory => {
            let stats = d.stats.borrow().history.iter().copied().collect();
            Some((
                0,
                typed(ControlReplyData::GetStatHistory(StatisticsList { stats })),
            ))
        }
        C::Uptime => Some((
            0,
            typed(ControlReplyData::Uptime(Uptime {
                current_time: now_timeval(),
                ctdbd_start_time: d.start_time,
                last_recovery_started: d.last_recovery_started.get(),
                last_recovery_finished: d.last_recovery_finished.get(),
            })),
        )),
        C::GetRunstate => Some((0, typed(ControlReplyData::GetRunstate(d.runstate.get())))),
        C::GetNodemap => {
            let node = d.node.borrow();
            let map = d.id.node_map(|pnn| node.membership.flags(pnn).unwrap_or(0));
            Some((0, typed(ControlReplyData::GetNodemap(map))))
        }
        C::GetNodesFile => match crate::nodes_reload::nodes_file_map(d) {
            Ok(map) => Some((0, typed(ControlReplyData::GetNodesFile(map)))),
            Err(why) => {
                tracing::error!("{why}");
                FAIL
            }
        },
        C::ReloadNodesFile => match crate::nodes_reload::reload(d) {
            Ok(()) => ok(),
            Err(why) => {
                tracing::error!("Reload of the nodes file failed: {why}");
                FAIL
            }
        },
        C::Getvnnmap => Some((
            0,
            typed(ControlReplyData::Getvnnmap(
                d.node.borrow().vnnmap().clone(),
            )),
        )),
        C::GetRecmode => Some((d.node.borrow().recmode() as i32, Vec::new())),
        C::SetRecmode(m) => {
            if m == CTDB_RECOVERY_ACTIVE {
                // `ctdb recover`: the recovery daemon notices and recovers.
                cluster_control(d, Control::SetRecmode(m));
                d.recovery_wanted.set(true);
                ok()
            } else {
                // As upstream: back to NORMAL only if every database was
                // recovered under the current generation, and this daemon
                // could not take the cluster lock (the leader holds it).
                let lock = crate::recmode_lock::take_result(d);
                let gen = d.node.borrow().vnnmap().generation;
                let stale = d
                    .dbs
                    .borrow()
                    .generation_mismatch(gen)
                    .map(|(n, g)| format!("{n} ({g})"));
                if let Some(db) = &stale {
                    tracing::error!("Inconsistent DB generation for {db}, vnn map {gen}");
                    tracing::error!("Recovery mode set to ACTIVE");
                }
                if let Err(why) = lock {
                    tracing::error!("SET_RECMODE NORMAL refused: {why}");
                    return FAIL;
                }
                Some(cluster_control_checked(
                    d,
                    Control::SetRecmode(m),
                    stale.is_none(),
                ))
            }
        }
        C::Setvnnmap(m) => Some(cluster_control(d, Control::SetVnnmap(m))),
        C::GetCapabilities => Some((
            0,
            typed(ControlReplyData::GetCapabilities(
                d.node.borrow().membership.capabilities(),
            )),
        )),
        C::SetLmasterrole(on) => {
            set_capability(d, CTDB_CAP_LMASTER, on != 0);
            ok()
        }
        C::SetRecmasterrole(on) => {
            set_capability(d, CTDB_CAP_RECMASTER, on != 0);
            ok()
        }
        C::GetDebug => Some((0, typed(ControlReplyData::GetDebug(d.debug_level.get())))),
        C::SetDebug(level) => {
            d.debug_level.set(level);
            crate::logging::set_level_number(level);
            ok()
        }
        C::GetTunable(name) => {
            let name = String::from_utf8_lossy(name.bytes().unwrap_or_default());
            let name = name.trim_end_matches('\0');
            match d.tunables.borrow().get(name) {
                Some(v) => Some((0, typed(ControlReplyData::GetTunable(v)))),
                None => FAIL,
            }
        }
        C::SetTunable(t) => {
            let name = String::from_utf8_lossy(t.name.bytes().unwrap_or_default());
            let name = name.trim_end_matches('\0').to_string();
            let outcome = d.tunables.borrow_mut().set(&name, t.value);
            match outcome {
                Ok(ctdb_config::tunables::SetOutcome::Set) => {
                    d.dbs.borrow_mut().update_tunables(&d.tunables.borrow());
                    ok()
                }
                Ok(ctdb_config::tunables::SetOutcome::Obsolete) => Some((1, Vec::new())),
                Err(_) => FAIL,
            }
        }
        C::ListTunables => {
            let names = ctdb_config::Tunables::names_string();
            let list = VarList {
                names: names.split(':').collect(),
            };
            Some((0, typed(ControlReplyData::ListTunables(list))))
        }
        C::GetAllTunables => {
            let wire = d.tunables.borrow().to_wire();
            Some((
                0,
                typed(ControlReplyData::GetAllTunables(Box::new(
                    TunableList::from_array(wire),
                ))),
            ))
        }
        C::GetReclockFile => match &d.reclock {
            Some(r) => Some((0, cstring(r))),
            None => ok(),
        },
        C::ModifyFlags(ch) => {
            if ch.pnn == d.pnn() {
                // Upstream lets a node change only others' flags this way;
                // our own come from disable/enable/ban/stop.
                return ok();
            }
            Some(cluster_control(d, Control::ModifyFlags(ch)))
        }
        C::StopNode => {
            let effects = d.node.borrow_mut().stop();
            tracing::error!("Stopping node");
            apply_effects(d, &effects);
            ok()
        }
        C::ContinueNode => {
            d.node.borrow_mut().continue_node();
            tracing::error!("Continue node");
            d.recovery_wanted.set(true);
            ok()
        }
        C::SetBanState(b) => {
            if b.pnn != d.pnn() {
                tracing::error!(
                    "SET_BAN_STATE for node {} refused on node {}",
                    b.pnn,
                    d.pnn()
                );
                return FAIL;
            }
            if b.time == 0 {
                tracing::error!("Unbanning this node");
            } else {
                tracing::error!("Banning this node for {} seconds", b.time);
            }
            let r = cluster_control(d, Control::SetBanState(b));
            if b.time == 0 {
                d.recovery_wanted.set(true);
            }
            Some(r)
        }
        C::GetBanState => Some((
            0,
            typed(ControlReplyData::GetBanState(
                d.node.borrow().ban.get(d.pnn()),
            )),
        )),
        C::Shutdown => {
            tracing::error!("Received SHUTDOWN command.");
            d.shutdown.set(true);
            ok()
        }
        // As upstream: the report's text without its trailing NUL.
        C::DumpMemory => Some((
            0,
            crate::memreport::daemon_report(d, "ctdb_context").into_bytes(),
        )),
        C::RecdPing => ok(),
        C::RecdReclockLatency(secs) => {
            d.reclock_latency(secs);
            ok()
        }
        C::RegisterNotify(_) | C::DeregisterNotify(_) => ok(),
        C::StartRecovery | C::EndRecovery | C::Freeze => {
            let ctl = match input {
                C::StartRecovery => Control::StartRecovery,
                C::EndRecovery => Control::EndRecovery,
                _ => Control::Freeze,
            };
            Some(cluster_control(d, ctl))
        }
        _ => {
            if crate::db::is_db_control(op) {
                None
            } else {
                tracing::error!("Unsupported CTDB control {}", op.name());
                FAIL
            }
        }
    }
}

fn set_capability(d: &Daemon, cap: u32, on: bool) {
    let mut node = d.node.borrow_mut();
    let caps = node.membership.capabilities();
    let caps = if on { caps | cap } else { caps & !cap };
    node.membership.set_capabilities(caps);
}

/// Runs a control through the sans-I/O node machine and applies its
/// effects; the reply status and data.
pub fn cluster_control(d: &Daemon, ctl: Control) -> (i32, Vec<u8>) {
    cluster_control_checked(d, ctl, true)
}

/// [`cluster_control`]; `generations_match`: every database is at the vnn
/// map's generation (SET_RECMODE NORMAL fails otherwise).
fn cluster_control_checked(d: &Daemon, ctl: Control, generations_match: bool) -> (i32, Vec<u8>) {
    let now = d.start_instant.elapsed().as_millis() as u64;
    let o = d
        .node
        .borrow_mut()
        .handle_control(now, &ctl, generations_match);
    apply_effects(d, &o.effects);
    if let (Control::SetVnnmap(m), Handled::Reply(ControlResult::Ok(_))) = (&ctl, &o.handled) {
        // The database layer hashes keys over the same map (lmaster).
        let active = {
            let node = d.node.borrow();
            node.membership
                .nodemap()
                .iter()
                .filter(|(_, f)| f & NODE_FLAGS_INACTIVE == 0)
                .count() as u32
        };
        let mut dbs = d.dbs.borrow_mut();
        dbs.set_vnn_map(m.map.clone());
        dbs.set_generation(m.generation);
        dbs.set_active_nodes(active.max(1));
    }
    match o.handled {
        Handled::Reply(ControlResult::Ok(r)) => match r {
            Reply::Recmode(m) => (m as i32, Vec::new()),
            _ => (0, Vec::new()),
        },
        Handled::Reply(ControlResult::Err) => (-1, Vec::new()),
        // No cluster lock on this node: nothing is ever deferred.
        Handled::Deferred(_) => (0, Vec::new()),
        Handled::NotMine => (-1, Vec::new()),
    }
}

/// Applies the node machine's effects to the databases and events.
pub fn apply_effects(d: &Daemon, effects: &[Effect]) {
    for e in effects {
        match e {
            Effect::FreezeAll | Effect::BecomeInactive => freeze_all(d, true),
            Effect::ThawAll => freeze_all(d, false),
            Effect::RunEvent(ev) => {
                let ev = match ev {
                    crate::cluster::node::ClusterEvent::StartRecovery => {
                        crate::event::runner::CtdbEvent::StartRecovery
                    }
                    crate::cluster::node::ClusterEvent::Recovered => {
                        crate::event::runner::CtdbEvent::Recovered
                    }
                };
                crate::monitor::spawn_event(d, ev);
            }
        }
    }
}

/// FREEZE / THAW of the whole node: DB_FREEZE / DB_THAW on every
/// database. A node-wide freeze happens only when the node goes inactive
/// (or the leader asks for it), so, as upstream's `ctdb_start_freeze`, the
/// records of volatile databases are marked invalid: a recovery pulls none
/// from this node (its copies may be older than a delete done meanwhile;
/// recovery.003.no_resurrect). DB_THAW clears the mark.
pub fn freeze_all(d: &Daemon, freeze: bool) {
    d.frozen.set(freeze);
    let mut dbs = d.dbs.borrow_mut();
    if freeze {
        if !dbs.freeze_all() {
            tracing::error!("not every database could be frozen");
        }
        return;
    }
    let ids: Vec<u32> = dbs
        .iter()
        .filter(|db| db.frozen() != freeze)
        .map(|db| db.id())
        .collect();
    let ctx = ControlCtx {
        srcnode: d.pnn(),
        recovery_active: true,
        ..Default::default()
    };
    let op = if freeze {
        Opcode::DbFreeze
    } else {
        Opcode::DbThaw
    };
    for id in ids {
        if let Some(o) = dbs.handle_control(&ctx, op as u32, &id.to_bytes()) {
            if o.status != 0 {
                tracing::error!("{} of database 0x{id:08x} failed", op.name());
            }
        }
    }
}

/// The messages the daemon answers itself (upstream: its recovery
/// daemon's handlers): the takeover ones ([`crate::takeover::run`]).
pub fn daemon_message(d: &Daemon, m: &OutMessage) {
    crate::takeover::run::daemon_message(d, m);
}
