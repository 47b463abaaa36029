//! The control core's side of the data cores: which client packets a data
//! core serves, and keeping the data cores' shards in step with the
//! database registry.
//!
//! Why this split: the registry (names, flags, freeze and recovery state)
//! lives on the control core, but the hot path, a client's REQ_CALL on a
//! volatile database, only needs the record's chain. With two or more
//! cores, such a call goes to the data core that owns the key's chain
//! ([`Databases::route_call`], the engine's partition), travels as a
//! [`ShardRequest`] over the runtime's bounded channel and comes back as a
//! [`ShardReply`] ([`ControlCore::request`]); the control core only frames
//! the reply. With one core nothing here runs and core 0 serves everything,
//! as before.
//!
//! On a cluster the data cores also run their side of the node transport
//! ([`crate::shard_peers`]): a client's REQ_CALL on a database they serve
//! is handed to the owning core as it is ([`DataCores::forward_call`]) and
//! answered by that core's migrator; this module tells them what they need
//! to know about the node ([`DataCores::sync_env`], after every control
//! and every 100 ms), opens each volatile database on every shard as soon
//! as it exists, collects the node statistics they count, and serves what
//! they send back ([`serve_events`]).
//!
//! What stays on the control core, and why it is safe:
//! * persistent and replicated databases (whole-file transactions), and
//!   volatile databases with read-only delegation (the `.RO` tracking
//!   database is the control core's);
//! * everything that needs the whole database: freeze, recovery
//!   transactions, pull/push, wipe, traverses, vacuuming. A call on a
//!   frozen database is not routed (the control core answers "deferred");
//!   a call already on its way when a freeze starts takes its chain lock
//!   without waiting, so it either finishes before the control core's
//!   whole-database lock is granted or finds the chain busy and is retried.
//!   A shard never holds a lock between two requests and never waits for
//!   the control core while holding one, so the control core's lock wait
//!   always ends.
//!
//! Keeping shards in step: a volatile database is attached on every data
//! core (its partition opened, [`Databases::shard_attach_requests`]) before
//! the first call routed to it; a detach is passed on after the control
//! that did it; statistics and delete queues collected by the shards are
//! merged into the registry before GET_DB_STATISTICS, DB_VACUUM and
//! STATISTICS_RESET look at them.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, HashSet};
use std::rc::Rc;
use std::time::Duration;

use ctdb_protocol::{
    ControlData, Header, Operation, Packet, Payload, RawHeader, ReplyCall, CTDB_PROTOCOL,
};

use ctdb_protocol::constants::{CTDB_RECOVERY_ACTIVE, NODE_FLAGS_BANNED};

use crate::controls::Outcome;
use crate::db::{CallOutcome, Databases, RecordOp, RecordStep, ShardReply, ShardRequest};
use crate::runtime::{ControlCore, ToControl, ToData};
use crate::shard_peers::{CoreEnv, Routes, StartLanes};
use crate::state::Daemon;
use crate::transport::mesh::MeshSeat;
use crate::transport::TransportConfig;

/// How often the control core checks whether the data cores' view of the
/// node ([`CoreEnv`]) is behind (tunables, bans; controls push at once).
const ENV_CHECK: Duration = Duration::from_millis(100);

/// Clients [`DataCores`] remembers data cores waiting for, at most.
const HOLD_WAITING_MAX: usize = 1024;

/// The data cores as the control core uses them.
pub struct DataCores {
    core: Rc<ControlCore>,
    shards: usize,
    /// Volatile databases whose partitions every shard has open.
    attached: RefCell<HashSet<u32>>,
    /// The control core's copy of the shard map (its transport reads
    /// connections too).
    routes: Rc<Routes>,
    /// Whether the data cores run their own side of the transport.
    lanes: Cell<bool>,
    /// The [`CoreEnv`] the data cores were last sent.
    last_env: RefCell<Option<CoreEnv>>,
    /// A [`DataCores::sync_env`] is sending; `resync`: run it again after,
    /// the node changed meanwhile (so no core ends with an older one).
    syncing: Cell<bool>,
    resync: Cell<bool>,
    /// Data cores waiting for a local client's next packet, by client
    /// ([`ToControl::HoldWaiting`]).
    hold_waiting: RefCell<HashMap<u32, Vec<usize>>>,
}

impl DataCores {
    /// `None` with a single core (no data core of its own).
    pub fn new(core: Rc<ControlCore>) -> Option<DataCores> {
        if !core.has_data_cores() {
            return None;
        }
        let shards = core.shards();
        Some(DataCores {
            core,
            shards,
            attached: RefCell::new(HashSet::new()),
            routes: Rc::new(Routes::new(shards)),
            lanes: Cell::new(false),
            last_env: RefCell::new(None),
            syncing: Cell::new(false),
            resync: Cell::new(false),
            hold_waiting: RefCell::new(HashMap::new()),
        })
    }

    /// The control core's shard map, for its transport.
    pub fn routes(&self) -> Rc<Routes> {
        self.routes.clone()
    }

    /// The node as the data cores need to know it.
    pub fn env(&self, d: &Daemon) -> CoreEnv {
        let dbs = d.dbs.borrow();
        let routed = if self.lanes.get() {
            dbs.routed(&self.attached.borrow())
        } else {
            Vec::new()
        };
        let mut frozen: Vec<u32> = dbs
            .iter()
            .filter(|db| db.frozen())
            .map(|db| db.id())
            .collect();
        frozen.sort_unstable();
        let node = d.node.borrow();
        CoreEnv {
            pnn: d.pnn(),
            generation: node.vnnmap().generation,
            vnn_map: dbs.vnn_map().to_vec(),
            recovering: node.recmode() == CTDB_RECOVERY_ACTIVE,
            banned: node.membership.own_flags() & NODE_FLAGS_BANNED != 0,
            fetch_collapse: d.tunable("FetchCollapse", 1) == 1,
            sticky: crate::calls::sticky_config(d),
            routed,
            frozen,
        }
    }

    /// Starts the data cores' side of the node transport: one seat of
    /// the mesh each (`seats[shard]` is core `shard + 1`'s). Their
    /// transports start together with the control core's.
    pub async fn start_lanes(&self, d: &Daemon, cfg: &TransportConfig, seats: Vec<MeshSeat>) {
        self.lanes.set(true);
        let env = self.env(d);
        for (shard, seat) in seats.into_iter().enumerate() {
            let start = StartLanes {
                seat,
                cfg: cfg.clone(),
                env: env.clone(),
            };
            if let Err(e) = self
                .core
                .send(shard, ToData::StartLanes(Box::new(start)))
                .await
            {
                tracing::error!("data core {shard}: cannot start its transport: {e}");
            }
        }
        self.routes.set(&env.routed);
        *self.last_env.borrow_mut() = Some(env);
    }

    /// Sends the data cores the node's state when it changed since the
    /// last time (and updates the control core's own shard map).
    pub async fn sync_env(&self, d: &Daemon) {
        if !self.lanes.get() {
            return;
        }
        if self.syncing.get() {
            self.resync.set(true);
            return;
        }
        self.syncing.set(true);
        loop {
            self.resync.set(false);
            self.send_env(d).await;
            if !self.resync.get() {
                break;
            }
        }
        self.syncing.set(false);
    }

    async fn send_env(&self, d: &Daemon) {
        let env = self.env(d);
        if self
            .last_env
            .borrow()
            .as_ref()
            .is_some_and(|old| old.same(&env))
        {
            return;
        }
        self.routes.set(&env.routed);
        *self.last_env.borrow_mut() = Some(env.clone());
        for shard in 0..self.shards {
            if let Err(e) = self
                .core
                .send(shard, ToData::Env(Box::new(env.clone())))
                .await
            {
                tracing::error!("data core {shard}: {e}");
            }
        }
    }

    /// A local client's REQ_CALL on a database the data cores serve goes
    /// to the core owning its key, which answers the client through
    /// [`serve_events`]. `false`: not such a call.
    pub async fn forward_call(&self, d: &Daemon, client: u32, pkt: &[u8]) -> bool {
        if !self.lanes.get() {
            return false;
        }
        let Ok(raw) = RawHeader::parse(pkt) else {
            return false;
        };
        if raw.version != CTDB_PROTOCOL || raw.operation != Operation::ReqCall as u32 {
            return false;
        }
        let Some((db_id, key)) = crate::transport::route::call_key(Operation::ReqCall, pkt) else {
            return false;
        };
        let Some(shard) = crate::transport::route::ShardMap::shard_of(&*self.routes, db_id, key)
        else {
            return false;
        };
        d.stats.borrow_mut().count(|s| {
            s.client_packets_recv += 1;
            s.client.req_call += 1;
            s.total_calls += 1;
        });
        let msg = ToData::ClientCall {
            client,
            pkt: pkt.to_vec(),
        };
        if let Err(e) = self.core.send(shard, msg).await {
            tracing::error!("data core {shard}: call from client {client} lost: {e}");
        }
        true
    }

    /// Local client `client` sent a packet: the data cores waiting for
    /// that ([`ToControl::HoldWaiting`]) hear of it.
    pub async fn client_active(&self, client: u32) {
        let shards = match self.hold_waiting.try_borrow_mut() {
            Ok(mut w) if !w.is_empty() => w.remove(&client),
            _ => None,
        };
        for shard in shards.into_iter().flatten() {
            if let Err(e) = self.core.send(shard, ToData::ClientActive { client }).await {
                tracing::error!("data core {shard}: client activity lost: {e}");
            }
        }
    }

    /// Merges the node statistics the data cores' transports counted.
    pub async fn collect_counters(&self, d: &Daemon) {
        if !self.lanes.get() {
            return;
        }
        let (mut pending, mut waits) = (0u32, 0u32);
        for shard in 0..self.shards {
            match self.core.request(shard, ShardRequest::TakeCounters).await {
                Ok(ShardReply::Counters(c)) => {
                    pending = pending.saturating_add(c.pending_calls);
                    waits = waits.saturating_add(c.locks.num_current);
                    d.stats.borrow_mut().count(|s| c.add_to(s));
                }
                Ok(other) => tracing::error!("data core {shard}: counters: {other:?}"),
                Err(e) => tracing::error!("data core {shard}: {e}"),
            }
        }
        // The gauge: the control core's own waiting calls plus theirs.
        let own = crate::calls::pending_calls(d);
        let own_waits = crate::calls::lock_waits(d);
        d.stats.borrow_mut().count(|s| {
            s.pending_calls = own.saturating_add(pending);
            s.locks.num_current = own_waits.saturating_add(waits);
        });
    }

    /// Opens every volatile database on every shard as soon as it exists,
    /// so the data cores serve it from its first call (a database whose
    /// calls started on the control core would have migration state in
    /// two places).
    async fn attach_new(&self, d: &Daemon) {
        if !self.lanes.get() {
            return;
        }
        let new: Vec<u32> = {
            let attached = self.attached.borrow();
            d.dbs
                .borrow()
                .shardable()
                .into_iter()
                .filter(|id| !attached.contains(id))
                .collect()
        };
        for id in new {
            self.ensure_attached(d, id).await;
        }
    }

    pub fn shards(&self) -> usize {
        self.shards
    }

    /// Serves a client's REQ_CALL on the data core owning its key, when it
    /// goes there; `None` for every other packet (the control core handles
    /// it). Counts the packet in the daemon's statistics as the control
    /// core's path does.
    pub async fn serve_call(&self, d: &Daemon, pkt: &[u8], out: &mut Vec<u8>) -> Option<Outcome> {
        let raw = RawHeader::parse(pkt).ok()?;
        if raw.version != CTDB_PROTOCOL || raw.operation != Operation::ReqCall as u32 {
            return None;
        }
        let packet = Packet::decode(pkt, &d.limits).ok()?;
        let Payload::ReqCall(call) = &packet.payload else {
            return None;
        };
        let (shard, req) = {
            let dbs = d.dbs.borrow();
            let db = dbs.find(call.db_id)?;
            if !db.volatile() || db.readonly() || db.frozen() {
                return None;
            }
            dbs.route_call(call, self.shards)?
        };
        if !self.ensure_attached(d, call.db_id).await {
            return None;
        }
        d.stats.borrow_mut().count(|s| {
            s.client_packets_recv += 1;
            s.client.req_call += 1;
            s.total_calls += 1;
        });
        let reply = match self.core.request(shard, req).await {
            Ok(ShardReply::Call(o)) => o,
            Ok(other) => {
                tracing::error!("data core {shard}: unexpected answer to a call: {other:?}");
                CallOutcome::Drop
            }
            Err(e) => {
                tracing::error!("data core {shard}: {e}");
                CallOutcome::Drop
            }
        };
        Some(match reply {
            CallOutcome::Reply { status, data } => {
                // As the control core's path: destnode 0.
                let hdr = Header::new(d.generation(), 0, d.pnn(), packet.header.reqid);
                let r = ReplyCall {
                    status,
                    data: &data,
                };
                match Packet::new(hdr, Payload::ReplyCall(r)).encode(out) {
                    Ok(_) => d.stats.borrow_mut().count(|s| s.client_packets_sent += 1),
                    Err(e) => tracing::error!("cannot encode call reply: {e}"),
                }
                Outcome::Done
            }
            CallOutcome::Defer | CallOutcome::Retry => Outcome::Deferred,
            CallOutcome::Drop => Outcome::Done,
        })
    }

    /// Runs a migration step on the core that owns the record: the data
    /// core owning its key for a volatile database (not read-only, not
    /// frozen), else the control core's handle.
    pub async fn record(&self, d: &Daemon, op: RecordOp) -> RecordStep {
        let shard = {
            let dbs = d.dbs.borrow();
            match dbs.find(op.db_id()) {
                Some(db) if db.frozen() => return RecordStep::Defer,
                _ => dbs.record_shard(&op, self.shards),
            }
        };
        let Some(shard) = shard else {
            return d.dbs.borrow_mut().record_op(&op);
        };
        if !self.ensure_attached(d, op.db_id()).await {
            return d.dbs.borrow_mut().record_op(&op);
        }
        let req = d.dbs.borrow().record_request(op);
        match self.core.request(shard, req).await {
            Ok(ShardReply::Record(step)) => step,
            Ok(other) => {
                tracing::error!("data core {shard}: unexpected answer to a record step: {other:?}");
                RecordStep::Drop
            }
            Err(e) => {
                tracing::error!("data core {shard}: {e}");
                RecordStep::Drop
            }
        }
    }

    /// Opens the database's partition on every shard, once. `false` when a
    /// shard could not (the call is then served on the control core).
    async fn ensure_attached(&self, d: &Daemon, db_id: u32) -> bool {
        if self.attached.borrow().contains(&db_id) {
            return true;
        }
        let reqs = d.dbs.borrow().shard_attach_requests(db_id, self.shards);
        if reqs.is_empty() {
            return false;
        }
        for (shard, req) in reqs.into_iter().enumerate() {
            match self.core.request(shard, req).await {
                Ok(ShardReply::Done) => {}
                Ok(ShardReply::Failed(why)) => {
                    tracing::error!("data core {shard}: attach of 0x{db_id:08x} failed: {why}");
                    return false;
                }
                Ok(other) => {
                    tracing::error!("data core {shard}: unexpected answer to attach: {other:?}");
                    return false;
                }
                Err(e) => {
                    tracing::error!("data core {shard}: {e}");
                    return false;
                }
            }
        }
        self.attached.borrow_mut().insert(db_id);
        tracing::info!(
            "database 0x{db_id:08x} served by {} data core(s)",
            self.shards
        );
        true
    }

    /// Before a client control: brings the shards' statistics and delete
    /// queues into the registry when the control reads them.
    pub async fn before_control(&self, d: &Daemon, pkt: &[u8]) {
        let Ok(raw) = RawHeader::parse(pkt) else {
            return;
        };
        if raw.version != CTDB_PROTOCOL || raw.operation != Operation::ReqControl as u32 {
            return;
        }
        let Ok(packet) = Packet::decode(pkt, &d.limits) else {
            return;
        };
        let Payload::ReqControl(c) = &packet.payload else {
            return;
        };
        let ids: Vec<u32> = match c.decode_data() {
            Ok(ControlData::Statistics) => {
                self.collect_counters(d).await;
                return;
            }
            Ok(ControlData::GetDbStatistics(id)) => vec![id],
            Ok(ControlData::DbVacuum(v)) => vec![v.db_id],
            Ok(ControlData::StatisticsReset) => self.attached.borrow().iter().copied().collect(),
            _ => return,
        };
        for id in ids {
            self.collect(d, id).await;
        }
    }

    /// After a control: passes detaches on to the shards, opens new
    /// databases there and tells them what changed.
    pub async fn after_control(&self, d: &Daemon) {
        self.after_control_detach(d).await;
        self.attach_new(d).await;
        self.sync_env(d).await;
    }

    async fn after_control_detach(&self, d: &Daemon) {
        let gone = d.dbs.borrow_mut().take_detached();
        for id in gone {
            if !self.attached.borrow_mut().remove(&id) {
                continue;
            }
            for shard in 0..self.shards {
                if let Err(e) = self
                    .core
                    .request(shard, ShardRequest::Detach { db_id: id })
                    .await
                {
                    tracing::error!("data core {shard}: detach of 0x{id:08x}: {e}");
                }
            }
        }
    }

    /// Merges every shard's statistics and delete queue of one database.
    pub async fn collect(&self, d: &Daemon, db_id: u32) {
        if !self.attached.borrow().contains(&db_id) {
            return;
        }
        for shard in 0..self.shards {
            match self
                .core
                .request(shard, ShardRequest::TakeStats { db_id })
                .await
            {
                Ok(ShardReply::Stats {
                    stats,
                    delete_queue,
                }) => merge(&mut d.dbs.borrow_mut(), db_id, &stats, delete_queue),
                Ok(other) => {
                    tracing::error!("data core {shard}: statistics of 0x{db_id:08x}: {other:?}")
                }
                Err(e) => tracing::error!("data core {shard}: {e}"),
            }
        }
    }
}

fn merge(
    dbs: &mut Databases,
    db_id: u32,
    stats: &crate::db::DbStats,
    delete_queue: std::collections::BTreeMap<Vec<u8>, ctdb_engine::ltdb::LtdbHeader>,
) {
    dbs.merge_shard_stats(db_id, stats, delete_queue);
}

/// Serves the data cores' messages for the daemon: replies to local
/// clients, recovery requests, packets they do not serve. Also keeps their
/// view of the node current when it changes outside a control (ban
/// timers, tunables).
pub async fn serve_events(d: Rc<Daemon>, dc: Rc<DataCores>) {
    let Some(rx) = dc.core.take_events() else {
        return;
    };
    let d2 = d.clone();
    let dc2 = dc.clone();
    glommio::spawn_local(async move {
        while !d2.shutdown.get() {
            glommio::timer::sleep(ENV_CHECK).await;
            dc2.sync_env(&d2).await;
        }
    })
    .detach();
    while let Some(ev) = rx.recv().await {
        match ev {
            ToControl::ClientReply { client, pkt } => {
                let d = d.clone();
                glommio::spawn_local(
                    async move { crate::peers::send_to_client(&d, client, pkt).await },
                )
                .detach();
            }
            ToControl::RecoveryWanted => d.recovery_wanted.set(true),
            ToControl::PeerPacket { from, bytes } => crate::peers::handle_packet(&d, from, bytes),
            ToControl::HoldWaiting { shard, client } => {
                let mut w = dc.hold_waiting.borrow_mut();
                // Only hints (each hold also ends on a timer): entries of
                // clients that left are not worth tracking one by one.
                if w.len() >= HOLD_WAITING_MAX {
                    w.clear();
                }
                let shards = w.entry(client).or_default();
                if !shards.contains(&shard) {
                    shards.push(shard);
                }
            }
            other => tracing::debug!("data core message ignored: {other:?}"),
        }
    }
}
