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

use std::cell::RefCell;
use std::collections::HashSet;
use std::rc::Rc;

use ctdb_protocol::{
    ControlData, Header, Operation, Packet, Payload, RawHeader, ReplyCall, CTDB_PROTOCOL,
};

use crate::controls::Outcome;
use crate::db::{CallOutcome, Databases, RecordOp, RecordStep, ShardReply, ShardRequest};
use crate::runtime::ControlCore;
use crate::state::Daemon;

/// The data cores as the control core uses them.
pub struct DataCores {
    core: Rc<ControlCore>,
    shards: usize,
    /// Volatile databases whose partitions every shard has open.
    attached: RefCell<HashSet<u32>>,
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
        })
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
            Ok(ControlData::GetDbStatistics(id)) => vec![id],
            Ok(ControlData::DbVacuum(v)) => vec![v.db_id],
            Ok(ControlData::StatisticsReset) => self.attached.borrow().iter().copied().collect(),
            _ => return,
        };
        for id in ids {
            self.collect(d, id).await;
        }
    }

    /// After a control: passes detaches on to the shards.
    pub async fn after_control(&self, d: &Daemon) {
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
