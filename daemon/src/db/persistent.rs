//! Persistent databases and the per-database flag and seqnum controls.
//!
//! TRANS3_COMMIT is how `ctdb ptrans`/`pstore` and smbd commit a persistent
//! transaction: the client holds the g_lock of the database, reads the
//! local file itself, builds a record buffer of `header || data` records
//! with rsn + 1 and `dmaster = its node`, and adds the
//! `__db_sequence_number__` record with the incremented database seqnum
//! itself. The daemon sends the buffer as UPDATE_RECORD to every active
//! node of the vnn map (here: this node) and each applies it atomically in
//! one tdb transaction, refusing a record whose stored rsn is not lower
//! unless the data is identical (upstream's `ctdb_persistent_store`).

use ctdb_engine::ltdb::{LtdbHeader, RecordFlags, LTDB_HEADER_SIZE};
use ctdb_engine::{flags as tdbf, Database};
use ctdb_protocol::constants::CTDB_DB_SEQNUM_KEY;
use ctdb_protocol::types::{
    KeyData, RecBuffer, RecBufferBuilder, DB_FLAGS_READONLY, DB_FLAGS_STICKY,
};
use ctdb_protocol::Wire;

use super::ltdb::Env;
use super::{open_tdb, ControlCtx, ControlOutcome, Databases, Db};

impl Databases {
    pub(crate) fn trans3_commit(&mut self, ctx: &ControlCtx, m: &RecBuffer<'_>) -> ControlOutcome {
        if ctx.recovery_active {
            tracing::info!("rejecting ctdb_control_trans3_commit when recovery active");
            return ControlOutcome::fail();
        }
        if !ctx.from_client {
            tracing::error!("can not match persistent_store to a client. Returning error");
            return ControlOutcome::fail();
        }
        if self.find(m.db_id).is_none() {
            tracing::error!(
                "ctdb_control_trans3_commit: Unknown database db_id[0x{:08x}]",
                m.db_id
            );
            return ControlOutcome::fail();
        }
        // Every active node of the vnn map applies UPDATE_RECORD; this
        // node is the only one here.
        self.apply_update_record(m)
    }

    pub(crate) fn update_record(&mut self, ctx: &ControlCtx, m: &RecBuffer<'_>) -> ControlOutcome {
        if ctx.recovery_active {
            tracing::info!("rejecting ctdb_control_update_record when recovery active");
            return ControlOutcome::fail();
        }
        self.apply_update_record(m)
    }

    fn apply_update_record(&mut self, m: &RecBuffer<'_>) -> ControlOutcome {
        let Some((db, env)) = self.db_and_env(m.db_id) else {
            tracing::error!(
                "Unknown database 0x{:08x} in ctdb_control_update_record",
                m.db_id
            );
            return ControlOutcome::fail();
        };
        if let Some(r) = &db.unhealthy {
            tracing::error!(
                "db({}) unhealty in ctdb_control_update_record: {r}",
                db.name
            );
            return ControlOutcome::fail();
        }
        let replace_only = db.volatile();
        match db.persistent_store(&env, m, replace_only) {
            Ok(()) => ControlOutcome::ok(),
            Err(why) => {
                tracing::error!("Failed to write persistent data: {why}");
                ControlOutcome::fail_msg(why)
            }
        }
    }

    pub(crate) fn get_db_seqnum(&mut self, db_id: u32) -> ControlOutcome {
        let Some((db, env)) = self.db_and_env(db_id) else {
            tracing::error!("Unknown db 0x{db_id:08x}");
            return ControlOutcome::fail();
        };
        if !db.allow_access() {
            return ControlOutcome::fail();
        }
        let key = seqnum_key();
        match db.ltdb_fetch(&env, &key) {
            Ok((_, data)) => {
                let v = if data.len() == 8 {
                    u64::from_ne_bytes(data[..8].try_into().unwrap_or([0; 8]))
                } else {
                    0
                };
                ControlOutcome::data(v.to_bytes())
            }
            Err(e) => ControlOutcome::fail_msg(format!("fetch seqnum record: {e}")),
        }
    }

    pub(crate) fn enable_seqnum(&mut self, db_id: u32) -> ControlOutcome {
        let cfg = self.config().clone();
        let Some(db) = self.find_mut(db_id) else {
            tracing::error!("Unknown db_id 0x{db_id:x} in ctdb_ltdb_enable_seqnum");
            return ControlOutcome::fail();
        };
        if db.tdb.tdb_flags() & tdbf::SEQNUM == 0 {
            // The engine fixes a handle's flags at open: reopen with
            // TDB_SEQNUM while the old handle still holds the ACTIVE lock,
            // so the CLEAR_IF_FIRST open does not wipe.
            if db.freeze_tx.is_some() {
                return ControlOutcome::fail_msg(
                    "cannot enable seqnum during a recovery transaction",
                );
            }
            let flags = db.open_flags | tdbf::SEQNUM;
            let (tdb, mut h) = match open_tdb(&db.path, &cfg, flags) {
                Ok(v) => v,
                Err(why) => return ControlOutcome::fail_msg(why),
            };
            if db.frozen {
                if let Err(e) = h.lockall() {
                    return ControlOutcome::fail_msg(format!("relock frozen db: {e}"));
                }
            }
            db.open_flags = flags;
            db.h = h;
            db.tdb = tdb;
        }
        db.seqnum_enabled = true;
        db.seqnum = db.h.seqnum().unwrap_or(0);
        ControlOutcome::ok()
    }

    pub(crate) fn update_seqnum(&mut self, ctx: &ControlCtx, db_id: u32) -> ControlOutcome {
        if ctx.srcnode == self.pnn() {
            return ControlOutcome::ok();
        }
        let Some(db) = self.find_mut(db_id) else {
            tracing::error!("Unknown db_id 0x{db_id:x} in ctdb_ltdb_update_seqnum");
            return ControlOutcome::fail();
        };
        if let Some(r) = &db.unhealthy {
            tracing::error!("db({}) unhealty in ctdb_ltdb_update_seqnum: {r}", db.name);
            return ControlOutcome::fail();
        }
        if db.h.increment_seqnum_now().is_err() {
            return ControlOutcome::fail();
        }
        db.seqnum = db.h.seqnum().unwrap_or(0);
        ControlOutcome::ok()
    }

    /// The databases with seqnum tracking whose tdb seqnum changed since the
    /// last poll (upstream broadcasts UPDATE_SEQNUM for each every
    /// SeqnumInterval ms).
    pub fn poll_seqnums(&mut self) -> Vec<u32> {
        let mut changed = Vec::new();
        for db in self.dbs.iter_mut().filter(|d| d.seqnum_enabled) {
            let now = db.h.seqnum().unwrap_or(db.seqnum);
            if now != db.seqnum {
                changed.push(db.id);
            }
            db.seqnum = now;
        }
        changed
    }

    pub(crate) fn get_health(&mut self, db_id: u32) -> ControlOutcome {
        let Some(name) = self.find(db_id).map(|d| d.name.clone()) else {
            tracing::error!("Unknown db 0x{db_id:x}");
            return ControlOutcome::fail();
        };
        let reason = match self.load_health(&name) {
            Ok(r) => r,
            Err(why) => return ControlOutcome::fail_msg(why),
        };
        if let Some(db) = self.find_mut(db_id) {
            db.unhealthy = reason.clone();
        }
        match reason {
            Some(r) => ControlOutcome::data(super::cstring(&r)),
            None => ControlOutcome::ok(),
        }
    }

    pub(crate) fn set_healthy(&mut self, db_id: u32) -> ControlOutcome {
        let Some(name) = self.find(db_id).map(|d| d.name.clone()) else {
            tracing::error!("Unknown db 0x{db_id:x}");
            return ControlOutcome::fail();
        };
        if let Err(why) = self.update_health(&name, None) {
            tracing::error!("ctdb_update_persistent_health({name}) failed: {why}");
            return ControlOutcome::fail();
        }
        if let Some(db) = self.find_mut(db_id) {
            if db.unhealthy.take().is_some() {
                tracing::info!("Updated db health for db({name}): OK");
            }
        }
        ControlOutcome::ok()
    }

    /// Marks a database unhealthy (as a failed recovery or check would).
    pub fn mark_unhealthy(&mut self, db_id: u32, reason: &str) -> Result<(), String> {
        let name = self
            .find(db_id)
            .map(|d| d.name.clone())
            .ok_or_else(|| format!("unknown db 0x{db_id:08x}"))?;
        self.update_health(&name, Some(reason))?;
        if let Some(db) = self.find_mut(db_id) {
            db.unhealthy = Some(reason.to_string());
        }
        Ok(())
    }

    pub(crate) fn set_readonly(&mut self, db_id: u32) -> ControlOutcome {
        let hash_size = self.config().hash_size;
        let Some(db) = self.find_mut(db_id) else {
            return ControlOutcome::fail();
        };
        if db.readonly() {
            return ControlOutcome::ok();
        }
        if !db.volatile() {
            tracing::error!("Non-volatile databases do not support readonly flag");
            return ControlOutcome::fail();
        }
        let mut ro = db.path.clone().into_os_string();
        ro.push(".RO");
        let ropath = std::path::PathBuf::from(ro);
        // NOLOCK + CLEAR_IF_FIRST in libtdb always starts empty.
        let _ = std::fs::remove_file(&ropath);
        let opts = ctdb_engine::OpenOptions::new()
            .hash_size(hash_size)
            .tdb_flags(tdbf::NOLOCK | tdbf::CLEAR_IF_FIRST | tdbf::NOSYNC)
            .mode(0o600);
        match Database::open(&ropath, &opts) {
            Ok(t) => {
                tracing::info!("OPENED tracking database : '{}'", ropath.display());
                db.ro_tdb = Some(t);
                db.flags |= DB_FLAGS_READONLY;
                tracing::info!("Readonly property set on DB {}", db.name);
                ControlOutcome::ok()
            }
            Err(e) => {
                tracing::error!(
                    "Failed to open/create the tracking database '{}': {e}",
                    ropath.display()
                );
                ControlOutcome::fail()
            }
        }
    }

    pub(crate) fn set_sticky(&mut self, db_id: u32) -> ControlOutcome {
        let Some(db) = self.find_mut(db_id) else {
            return ControlOutcome::fail();
        };
        if db.sticky() {
            return ControlOutcome::ok();
        }
        if !db.volatile() {
            tracing::error!("Non-volatile databases do not support sticky flag");
            return ControlOutcome::fail();
        }
        db.flags |= DB_FLAGS_STICKY;
        tracing::info!("set db sticky {}", db.name);
        ControlOutcome::ok()
    }

    pub(crate) fn schedule_for_deletion(&mut self, k: &KeyData<'_>) -> ControlOutcome {
        let Some(db) = self.find_mut(k.db_id) else {
            tracing::error!("Unknown db id 0x{:08x}", k.db_id);
            return ControlOutcome::fail();
        };
        let h = LtdbHeader {
            rsn: k.header.rsn,
            dmaster: k.header.dmaster,
            reserved1: k.header.reserved1,
            flags: RecordFlags(k.header.flags),
            pad: 0,
        };
        db.delete_queue.insert(k.key.to_vec(), h);
        ControlOutcome::ok()
    }

    /// Upstream's `ctdb_control_try_delete_records`: deletes each record
    /// (a header-only copy sent by the lmaster's vacuuming) if allowed, and
    /// returns the records it could not delete.
    pub(crate) fn try_delete_records(&mut self, m: &RecBuffer<'_>) -> ControlOutcome {
        let Some((db, env)) = self.db_and_env(m.db_id) else {
            tracing::error!("Unknown db 0x{:08x}", m.db_id);
            return ControlOutcome::fail();
        };
        let mut kept = RecBufferBuilder::new(db.id);
        for rec in m.iter() {
            if rec.data.len() < LTDB_HEADER_SIZE {
                tracing::error!("bad ltdb record in indata");
                return ControlOutcome::fail();
            }
            if !db.delete_tdb_record(&env, rec.key, rec.data) {
                kept.add_rec(&rec);
            }
        }
        ControlOutcome::data(kept.into_wire_bytes())
    }
}

impl Db {
    /// Upstream's `delete_tdb_record`; true if the record is gone.
    fn delete_tdb_record(&mut self, env: &Env<'_>, key: &[u8], data: &[u8]) -> bool {
        if env.lmaster(key) == env.pnn {
            tracing::info!("Called delete on record where we are lmaster");
            return false;
        }
        if data.len() != LTDB_HEADER_SIZE {
            tracing::error!("Bad record size");
            return false;
        }
        let Some(hdr) = LtdbHeader::parse(data) else {
            return false;
        };
        match self.h.chainlock_nonblock(key) {
            Ok(true) => {}
            _ => return false,
        }
        let r = (|| {
            let cur = match self.h.fetch(key) {
                Ok(Some(v)) => v,
                Ok(None) => return true,
                Err(_) => return false,
            };
            let Some(hdr2) = LtdbHeader::parse(&cur) else {
                let _ = self.h.delete(key);
                tracing::error!("Deleted corrupt record");
                return true;
            };
            if hdr2.rsn > hdr.rsn
                || hdr.flags.intersects(RecordFlags::RO_FLAGS)
                || hdr2.flags.intersects(RecordFlags::RO_FLAGS)
                || hdr2.dmaster == env.pnn
            {
                return false;
            }
            self.h.delete(key).is_ok()
        })();
        let _ = self.h.chainunlock(key);
        r
    }

    /// Upstream's `ctdb_persistent_store`: applies every record of `m` in
    /// one transaction, or none.
    pub(crate) fn persistent_store(
        &mut self,
        env: &Env<'_>,
        m: &RecBuffer<'_>,
        replace_only: bool,
    ) -> Result<(), String> {
        self.h.transaction_start().map_err(|e| {
            format!(
                "Failed to start transaction for db_id 0x{:08x}: {e}",
                self.id
            )
        })?;
        let r = (|| -> Result<(), String> {
            for (i, rec) in m.iter().enumerate() {
                let (hdr, data) = LtdbHeader::split(rec.data).ok_or_else(|| {
                    format!("record {i} for db_id 0x{:08x} has no ltdb header", self.id)
                })?;
                let mut header = hdr;
                if replace_only {
                    match self.h.fetch(rec.key) {
                        Ok(Some(v)) if !v.is_empty() => {}
                        Ok(_) => continue,
                        Err(e) => return Err(format!("fetch: {e}")),
                    }
                }
                let (old, olddata) = self
                    .ltdb_fetch(env, rec.key)
                    .map_err(|e| format!("Failed to fetch old record: {e}"))?;
                if old.rsn >= header.rsn && olddata != data {
                    return Err(format!(
                        "existing header for db_id 0x{:08x} has larger RSN {} than new RSN {} \
                         in ctdb_persistent_store",
                        self.id, old.rsn, header.rsn
                    ));
                }
                self.ltdb_store(env, rec.key, &mut header, data)
                    .map_err(|e| format!("Failed to store record: {e}"))?;
            }
            Ok(())
        })();
        match r {
            Ok(()) => self.h.transaction_commit().map_err(|e| {
                format!(
                    "Failed to commit transaction for db_id 0x{:08x}: {e}",
                    self.id
                )
            }),
            Err(why) => {
                let _ = self.h.transaction_cancel();
                Err(why)
            }
        }
    }
}

/// `CTDB_DB_SEQNUM_KEY` with its NUL, as the key is stored.
pub fn seqnum_key() -> Vec<u8> {
    let mut k = CTDB_DB_SEQNUM_KEY.to_vec();
    k.push(0);
    k
}
