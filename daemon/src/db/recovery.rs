//! The per-database recovery primitives the recovery helper drives:
//! DB_FREEZE (take the whole-database lock so no client can touch the
//! file), DB_TRANSACTION_START/COMMIT/CANCEL (a tdb transaction under the
//! freeze), WIPE_DATABASE, DB_PULL (stream every record to a srvid in
//! record buffers of at most RecBufferSizeLimit bytes) and
//! DB_PUSH_START / push messages / DB_PUSH_CONFIRM (store records arriving
//! on a srvid), DB_THAW.
//!
//! Upstream keeps the freeze in a lock helper child and runs the
//! transaction with TDB_NOLOCK on its own handle. Here one engine handle
//! both holds the freeze (`lockall`) and runs the transaction: starting the
//! transaction releases the lockall and takes the transaction's own locks
//! (the transaction lock and the allrecord lock), and commit or cancel
//! re-takes the lockall, so the database stays closed to clients for the
//! whole recovery except for that hand-over.

use ctdb_engine::ltdb::{LtdbHeader, RecordFlags, LTDB_HEADER_SIZE};
use ctdb_engine::Walk;
use ctdb_protocol::types::{PullDbExt, RecBuffer, RecBufferBuilder};
use ctdb_protocol::Wire;

use super::{ControlCtx, ControlOutcome, Databases, OutMessage, PushState};

impl Databases {
    pub(crate) fn db_freeze(&mut self, db_id: u32) -> ControlOutcome {
        let Some(db) = self.find_mut(db_id) else {
            tracing::error!("Freeze db for unknown dbid 0x{db_id:08x}");
            return ControlOutcome::fail();
        };
        if db.frozen {
            tracing::error!("Freeze db: {} frozen", db.name);
            return ControlOutcome::ok();
        }
        let start = std::time::Instant::now();
        let r = db.h.lockall();
        db.stats.lock_wait(start.elapsed().as_secs_f64(), r.is_ok());
        match r {
            Ok(()) => {
                db.frozen = true;
                tracing::info!("Freeze db: {} frozen", db.name);
                ControlOutcome::ok()
            }
            Err(e) => {
                tracing::error!("Failed to freeze db {}: {e}", db.name);
                ControlOutcome::fail()
            }
        }
    }

    pub(crate) fn db_thaw(&mut self, db_id: u32) -> ControlOutcome {
        let Some(db) = self.find_mut(db_id) else {
            tracing::error!("Thaw db for unknown dbid 0x{db_id:08x}");
            return ControlOutcome::fail();
        };
        tracing::info!("Thaw db: {} generation {}", db.name, db.generation);
        if db.freeze_tx.take().is_some() {
            let _ = db.h.transaction_cancel();
        } else if db.frozen {
            let _ = db.h.unlockall();
        }
        db.frozen = false;
        db.invalid_records = false;
        db.push = None;
        ControlOutcome::ok()
    }

    /// FREEZE (the node became inactive): every database frozen, volatile
    /// records marked invalid so a DB_PULL from this node sends none.
    /// True when all are frozen.
    pub fn freeze_all(&mut self) -> bool {
        let ids: Vec<u32> = self.dbs.iter().map(|d| d.id).collect();
        let mut all = true;
        for id in ids {
            if let Some(db) = self.find_mut(id) {
                if db.volatile() {
                    db.invalid_records = true;
                }
            }
            all &= self.db_freeze(id).status == 0;
        }
        all
    }

    /// Thaws every database (upstream's `ctdb_control_thaw`).
    pub fn thaw_all(&mut self) {
        let ids: Vec<u32> = self.dbs.iter().map(|d| d.id).collect();
        for id in ids {
            self.db_thaw(id);
        }
    }

    /// True if every database is frozen (STATISTICS' `frozen`).
    pub fn all_frozen(&self) -> bool {
        self.dbs.iter().all(|d| d.frozen)
    }

    pub(crate) fn db_transaction_start(&mut self, db_id: u32, tid: u32) -> ControlOutcome {
        let Some(db) = self.find_mut(db_id) else {
            tracing::error!("Transaction start for unknown dbid 0x{db_id:08x}");
            return ControlOutcome::fail();
        };
        if !db.frozen {
            tracing::error!("Database {} not frozen, cannot start transaction", db.name);
            return ControlOutcome::fail();
        }
        if db.freeze_tx.take().is_some() {
            if let Err(e) = db.h.transaction_cancel() {
                tracing::error!("Failed to cancel transaction for db {}: {e}", db.name);
            }
        } else if let Err(e) = db.h.unlockall() {
            tracing::error!("db {}: release freeze lock: {e}", db.name);
        }
        match db.h.transaction_start() {
            Ok(()) => {
                db.freeze_tx = Some(tid);
                ControlOutcome::ok()
            }
            Err(e) => {
                tracing::error!("Failed to start transaction for db {}: {e}", db.name);
                if db.h.lockall().is_err() {
                    tracing::error!("db {}: lost the freeze lock", db.name);
                    db.frozen = false;
                }
                ControlOutcome::fail()
            }
        }
    }

    pub(crate) fn db_transaction_cancel(&mut self, db_id: u32) -> ControlOutcome {
        let Some(db) = self.find_mut(db_id) else {
            tracing::error!("Transaction cancel for unknown dbid 0x{db_id:08x}");
            return ControlOutcome::fail();
        };
        tracing::error!("Recovery db transaction cancelled for {}", db.name);
        if db.freeze_tx.take().is_some() {
            if let Err(e) = db.h.transaction_cancel() {
                tracing::error!("Failed to cancel transaction for db {}: {e}", db.name);
            }
            if db.frozen && db.h.lockall().is_err() {
                db.frozen = false;
            }
        }
        ControlOutcome::ok()
    }

    pub(crate) fn db_transaction_commit(&mut self, db_id: u32, tid: u32) -> ControlOutcome {
        let (name, persistent) = {
            let Some(db) = self.find_mut(db_id) else {
                tracing::error!("Transaction commit for unknown dbid 0x{db_id:08x}");
                return ControlOutcome::fail();
            };
            if !db.frozen {
                tracing::error!("Database {} not frozen, cannot commit transaction", db.name);
                return ControlOutcome::fail();
            }
            match db.freeze_tx {
                None => {
                    tracing::error!("Transaction not started on {}", db.name);
                    return ControlOutcome::fail();
                }
                Some(t) if t != tid => {
                    tracing::error!(
                        "Incorrect transaction commit id 0x{tid:08x} for {}",
                        db.name
                    );
                    return ControlOutcome::fail();
                }
                Some(_) => {}
            }
            let r = db.h.transaction_commit();
            db.freeze_tx = None;
            if db.h.lockall().is_err() {
                db.frozen = false;
            }
            if let Err(e) = r {
                tracing::error!("Failed to commit transaction for db {}: {e}", db.name);
                return ControlOutcome::fail();
            }
            db.generation = tid;
            (db.name.clone(), db.persistent())
        };
        // This node is healthy: the recovered contents are good.
        let _ = persistent;
        if let Err(why) = self.update_health(&name, None) {
            tracing::error!("Failed to update persistent health for db {name}: {why}");
            return ControlOutcome::fail();
        }
        if let Some(db) = self.find_mut(db_id) {
            db.unhealthy = None;
        }
        ControlOutcome::ok()
    }

    pub(crate) fn wipe_database(&mut self, db_id: u32, tid: u32) -> ControlOutcome {
        let Some(db) = self.find_mut(db_id) else {
            tracing::error!("Unknown db 0x{db_id:x}");
            return ControlOutcome::fail();
        };
        if !db.frozen {
            tracing::error!("Failed transaction_start while not frozen");
            return ControlOutcome::fail();
        }
        match db.freeze_tx {
            None => {
                tracing::error!("transaction not started");
                return ControlOutcome::fail();
            }
            Some(t) if t != tid => {
                tracing::error!("incorrect transaction id 0x{tid:x} in commit");
                return ControlOutcome::fail();
            }
            Some(_) => {}
        }
        if let Err(e) = db.h.wipe() {
            tracing::error!("Failed to wipe database for db '{}': {e}", db.name);
            return ControlOutcome::fail();
        }
        if db.volatile() {
            db.delete_queue.clear();
            db.fetch_queue.clear();
        }
        ControlOutcome::ok()
    }

    pub(crate) fn db_pull(&mut self, ctx: &ControlCtx, p: &PullDbExt) -> ControlOutcome {
        let limit = self.config().rec_buffer_size_limit as usize;
        let Some(db) = self.find_mut(p.db_id) else {
            tracing::error!("Unknown db 0x{:08x}", p.db_id);
            return ControlOutcome::fail();
        };
        if !db.frozen {
            tracing::error!("rejecting ctdb_control_pull_db when not frozen");
            return ControlOutcome::fail();
        }
        if let Some(r) = &db.unhealthy {
            tracing::warn!("db({}) unhealty in ctdb_control_db_pull: {r}", db.name);
        }
        let mut msgs = Vec::new();
        let mut num: u32 = 0;
        if db.invalid_records {
            return ControlOutcome::data(num.to_bytes());
        }
        let mut b = RecBufferBuilder::new(db.id);
        let send = |b: &mut RecBufferBuilder, msgs: &mut Vec<OutMessage>, num: &mut u32| {
            *num = num.wrapping_add(b.count());
            let full = std::mem::replace(b, RecBufferBuilder::new(b.db_id));
            msgs.push(OutMessage {
                pnn: ctx.srcnode,
                srvid: p.srvid,
                data: full.into_wire_bytes(),
            });
        };
        let r = db.h.traverse_read(|k, v| {
            b.add(0, None, k, v);
            if b.wire_len() >= limit {
                send(&mut b, &mut msgs, &mut num);
            }
            Walk::Continue
        });
        if let Err(e) = r {
            tracing::error!("Failed to get traverse db '{}': {e}", db.name);
            return ControlOutcome::fail();
        }
        if !b.is_empty() {
            send(&mut b, &mut msgs, &mut num);
        }
        ControlOutcome {
            data: num.to_bytes(),
            messages_before: msgs,
            ..Default::default()
        }
    }

    pub(crate) fn db_push_start(&mut self, p: &PullDbExt) -> ControlOutcome {
        let Some(db) = self.find_mut(p.db_id) else {
            tracing::error!("Unknown db 0x{:08x}", p.db_id);
            return ControlOutcome::fail();
        };
        if !db.frozen {
            tracing::error!("rejecting ctdb_control_db_push_start when not frozen");
            return ControlOutcome::fail();
        }
        if db.push.is_some() {
            tracing::warn!("DB push already started for {}", db.name);
        }
        db.push = Some(PushState {
            srvid: p.srvid,
            num_records: 0,
            failed: false,
        });
        ControlOutcome::ok()
    }

    pub(crate) fn db_push_confirm(&mut self, db_id: u32) -> ControlOutcome {
        let Some(db) = self.find_mut(db_id) else {
            tracing::error!("Unknown db 0x{db_id:08x}");
            return ControlOutcome::fail();
        };
        if !db.frozen {
            tracing::error!("rejecting ctdb_control_db_push_confirm when not frozen");
            return ControlOutcome::fail();
        }
        let Some(state) = db.push.take() else {
            tracing::error!("DB push not started");
            return ControlOutcome::fail();
        };
        if db.readonly() {
            tracing::error!("Clearing the tracking database for dbid 0x{:x}", db.id);
            let wiped = db
                .ro_tdb
                .as_ref()
                .and_then(|t| t.handle().ok())
                .map(|mut h| h.wipe().is_ok())
                .unwrap_or(false);
            if !wiped {
                tracing::error!(
                    "Failed to wipe tracking database for 0x{:x}. Dropping read-only \
                     delegation support",
                    db.id
                );
                db.ro_tdb = None;
                db.flags &= !ctdb_protocol::types::DB_FLAGS_READONLY;
            }
        }
        ControlOutcome::data(state.num_records.to_bytes())
    }

    /// A REQ_MESSAGE on a DB_PUSH srvid: a record buffer to store. Returns
    /// false if no push waits on `srvid` (the message is someone else's).
    pub fn push_message(&mut self, srvid: u64, data: &[u8]) -> bool {
        let pnn = self.pnn();
        let vnn_map = self.vnn_map.clone();
        let env = super::ltdb::Env {
            pnn,
            vnn_map: &vnn_map,
        };
        let Some(db) = self
            .dbs
            .iter_mut()
            .find(|d| d.push.is_some_and(|p| p.srvid == srvid))
        else {
            return false;
        };
        let Some(mut state) = db.push else {
            return false;
        };
        if state.failed {
            return true;
        }
        let recs = match RecBuffer::from_bytes(data) {
            Ok(r) => r,
            Err(e) => {
                tracing::error!("db push for {}: bad record buffer: {e}", db.name);
                state.failed = true;
                db.push = Some(state);
                return true;
            }
        };
        tracing::info!(
            "starting push of {} records for dbid 0x{:x}",
            recs.count(),
            recs.db_id
        );
        for rec in recs.iter() {
            if rec.data.len() < LTDB_HEADER_SIZE {
                tracing::error!("bad ltdb record");
                state.failed = true;
                break;
            }
            let Some((mut hdr, value)) = LtdbHeader::split(rec.data) else {
                state.failed = true;
                break;
            };
            hdr.flags.remove(RecordFlags::RO_FLAGS);
            if let Err(e) = db.ltdb_store(&env, rec.key, &mut hdr, value) {
                tracing::error!("Unable to store record: {e}");
                state.failed = true;
                break;
            }
        }
        if !state.failed {
            state.num_records = state.num_records.wrapping_add(recs.count());
        }
        db.push = Some(state);
        true
    }
}
