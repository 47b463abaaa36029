//! Vacuuming of volatile databases: the record work of one run, as steps
//! the control core's vacuum driver ([`crate::vacuumer`]) strings together
//! with the exchanges between nodes in between.
//!
//! Why vacuuming exists: a deleted volatile record cannot simply vanish.
//! `ctdb deletekey` and smbd's deletes leave the record as a bare
//! `ctdb_ltdb_header` (dmaster = this node, rsn bumped) and queue the key
//! (SCHEDULE_FOR_DELETION and the store rules in `ltdb.rs`), because other
//! nodes may still hold older copies that a recovery would otherwise bring
//! back. Vacuuming removes such records consistently, as upstream 4.17's
//! `ctdb_vacuum.c`:
//!
//! 1. [`Databases::vacuum_begin`] takes this run's delete queue and fetch
//!    queue (new entries land in fresh queues, for the next run); a *full*
//!    run adds every bare-header record this node is dmaster of, found by
//!    a traverse the driver runs on a thread of its own
//!    ([`scan_empty_records`]: a traverse waits for chain locks).
//! 2. Fetch queue (keys other nodes sent in VACUUM_FETCH because this node
//!    is their lmaster): the driver migrates each record here with
//!    `CTDB_CALL_FLAG_VACUUM_MIGRATION`, and [`Databases::vacuum_fetched`]
//!    queues those that arrived empty for the *next* run.
//! 3. Delete queue ([`Databases::vacuum_delete_queue`]): a record still
//!    empty, still ours, with the queued rsn, is deleted at once when this
//!    node is its lmaster and it never migrated with data; with
//!    MIGRATED_WITH_DATA it joins the delete list; when another node is
//!    lmaster its key goes to that node in VACUUM_FETCH.
//! 4. Delete list: the driver sends the records to every other active node
//!    in TRY_DELETE_RECORDS (handled by `persistent.rs`'s
//!    `try_delete_records`); those that every node deleted are deleted here
//!    ([`Databases::vacuum_delete_record`]) after checking again.
//! 5. [`Databases::vacuum_repack`] past RepackLimit free-list entries.
//!
//! Every step takes chain locks without waiting (a record locked by smbd or
//! `ctdb-db-test local-lock` is skipped and, as upstream, dropped from the
//! queue), so the control core never blocks on a client. [`Databases::vacuum`]
//! is the whole run for one node on its own (tests, and DB_VACUUM served
//! without the driver).

use std::collections::{BTreeMap, HashSet};

use ctdb_engine::ltdb::{LtdbHeader, RecordFlags, LTDB_HEADER_SIZE};
use ctdb_engine::Walk;
use ctdb_protocol::types::{RecBuffer, RecBufferBuilder};
use ctdb_protocol::Wire;

use super::{ControlOutcome, Databases};

/// What a vacuum run did (upstream's vacuum_data counters, summed).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VacuumCounts {
    /// Queued by the full run's traverse.
    pub scheduled: u32,
    /// Deleted here (fast path and delete list).
    pub deleted: u32,
    /// Skipped: changed, migrated away, refilled, or locked.
    pub skipped: u32,
    /// Keys sent to their lmaster (VACUUM_FETCH), or left queued when no
    /// driver sends them ([`Databases::vacuum`]).
    pub remote: u32,
    /// Records migrated here from the fetch queue.
    pub fetched: u32,
    /// Records put on the delete list (TRY_DELETE_RECORDS).
    pub delete_list: u32,
    /// Delete-list records another node could not delete.
    pub remote_failed: u32,
}

/// Why a run cannot start (upstream: EAGAIN or an unknown database).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VacuumRefusal {
    UnknownDb,
    NotVolatile,
    Frozen,
}

impl std::fmt::Display for VacuumRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            VacuumRefusal::UnknownDb => "unknown database",
            VacuumRefusal::NotVolatile => "not a volatile database",
            VacuumRefusal::Frozen => "database frozen",
        })
    }
}

/// The queues one run works on, taken at its start.
#[derive(Debug, Default)]
pub struct VacuumBatch {
    pub db_id: u32,
    pub delete_queue: BTreeMap<Vec<u8>, LtdbHeader>,
    pub fetch_queue: Vec<Vec<u8>>,
    pub counts: VacuumCounts,
}

/// What the delete queue left for the other nodes.
#[derive(Debug, Default)]
pub struct QueueOutcome {
    /// Keys per lmaster (never this node), for VACUUM_FETCH.
    pub fetch_lists: BTreeMap<u32, Vec<Vec<u8>>>,
    /// Empty records this node is lmaster and dmaster of that migrated
    /// with data: deleted once every other active node deleted its copy.
    pub delete_list: Vec<(Vec<u8>, LtdbHeader)>,
}

/// One delete-list record's local deletion.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeleteStep {
    Deleted,
    Skipped,
    /// Its chain is locked by someone else: try again shortly.
    Busy,
}

/// The header of a record that is exactly a header (an empty record).
fn empty_header(v: Option<&[u8]>) -> Option<LtdbHeader> {
    match v {
        Some(v) if v.len() == LTDB_HEADER_SIZE => LtdbHeader::parse(v),
        _ => None,
    }
}

fn wire_header(h: &LtdbHeader) -> ctdb_protocol::types::LtdbHeader {
    ctdb_protocol::types::LtdbHeader {
        rsn: h.rsn,
        dmaster: h.dmaster,
        reserved1: h.reserved1,
        flags: h.flags.bits(),
    }
}

/// VACUUM_FETCH data: the keys, from node `pnn` (the reqid field), no data.
pub fn vacuum_fetch_data(db_id: u32, pnn: u32, keys: &[Vec<u8>]) -> Vec<u8> {
    let mut b = RecBufferBuilder::new(db_id);
    for k in keys {
        b.add(pnn, None, k, &[]);
    }
    b.into_wire_bytes()
}

/// TRY_DELETE_RECORDS data: each record as its header alone.
pub fn try_delete_data(db_id: u32, list: &[(Vec<u8>, LtdbHeader)]) -> Vec<u8> {
    let mut b = RecBufferBuilder::new(db_id);
    for (k, h) in list {
        b.add(db_id, Some(&wire_header(h)), k, &[]);
    }
    b.into_wire_bytes()
}

/// The keys of a TRY_DELETE_RECORDS reply (the records a node kept).
pub fn kept_keys(reply: &[u8]) -> Result<HashSet<Vec<u8>>, String> {
    let m = RecBuffer::from_bytes(reply)
        .map_err(|e| format!("TRY_DELETE_RECORDS reply is no record buffer: {e}"))?;
    let mut keys = HashSet::new();
    for rec in m.iter() {
        keys.insert(rec.key.to_vec());
    }
    Ok(keys)
}

impl VacuumBatch {
    /// Adds what a full run's traverse found to this run's queue.
    pub fn add_scanned(&mut self, found: Vec<(Vec<u8>, LtdbHeader)>) {
        for (k, h) in found {
            self.delete_queue.insert(k, h);
            self.counts.scheduled += 1;
        }
    }
}

fn empty_records(
    h: &mut ctdb_engine::CoreStore,
    pnn: u32,
) -> Result<Vec<(Vec<u8>, LtdbHeader)>, ctdb_engine::Error> {
    let mut found = Vec::new();
    h.traverse_read(|k, v| {
        if let Some(h) = empty_header(Some(v)) {
            if h.dmaster == pnn {
                found.push((k.to_vec(), h));
            }
        }
        Walk::Continue
    })?;
    Ok(found)
}

/// A full run's traverse (upstream's `vacuum_traverse`) through a handle
/// of its own: every empty record this node (`pnn`) is dmaster of.
pub fn scan_empty_records(
    db: &ctdb_engine::Database,
    pnn: u32,
) -> Result<Vec<(Vec<u8>, LtdbHeader)>, String> {
    let mut h = db.handle().map_err(|e| format!("open handle: {e}"))?;
    empty_records(&mut h, pnn).map_err(|e| format!("traverse: {e}"))
}

impl Databases {
    /// Starts a run: takes the database's delete and fetch queues (fresh
    /// ones collect what arrives meanwhile) and, for a full run, queues
    /// every empty record this node is dmaster of.
    pub fn vacuum_begin(&mut self, db_id: u32, full: bool) -> Result<VacuumBatch, VacuumRefusal> {
        let pnn = self.pnn();
        let db = self.find_mut(db_id).ok_or(VacuumRefusal::UnknownDb)?;
        if !db.volatile() {
            return Err(VacuumRefusal::NotVolatile);
        }
        if db.frozen {
            return Err(VacuumRefusal::Frozen);
        }
        let mut batch = VacuumBatch {
            db_id,
            delete_queue: std::mem::take(&mut db.delete_queue),
            fetch_queue: std::mem::take(&mut db.fetch_queue).into_iter().collect(),
            counts: VacuumCounts::default(),
        };
        if full {
            match empty_records(&mut db.h, pnn) {
                Ok(found) => batch.add_scanned(found),
                Err(e) => tracing::error!("Traverse error in vacuuming '{}': {e}", db.name),
            }
        }
        Ok(batch)
    }

    /// The database file, for a full run's traverse on a thread of its own
    /// ([`scan_empty_records`]): a traverse waits for chain locks, which a
    /// client may hold for long, and the control core must not.
    pub fn vacuum_source(&self, db_id: u32) -> Option<ctdb_engine::Database> {
        self.find(db_id)
            .filter(|d| d.volatile())
            .map(|d| d.tdb.clone())
    }

    /// The fetch-queue keys whose record is not already here as dmaster
    /// (those the driver migrates). A key whose chain is locked is
    /// dropped, as upstream.
    pub fn vacuum_fetch_targets(&mut self, db_id: u32, keys: Vec<Vec<u8>>) -> Vec<Vec<u8>> {
        let pnn = self.pnn();
        let Some(db) = self.find_mut(db_id) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for k in keys {
            if !matches!(db.h.chainlock_nonblock(&k), Ok(true)) {
                continue;
            }
            let cur = db.h.fetch(&k).ok().flatten();
            let _ = db.h.chainunlock(&k);
            match cur
                .as_deref()
                .and_then(|v| LtdbHeader::split(v).map(|(h, _)| h))
            {
                Some(h) if h.dmaster != pnn => out.push(k),
                Some(_) => tracing::debug!("vacuum fetch: record already here"),
                None => tracing::debug!("vacuum fetch: no record"),
            }
        }
        out
    }

    /// A record migrated here for vacuuming: queued for deletion (by the
    /// next run) when it arrived empty. True if queued.
    pub fn vacuum_fetched(&mut self, db_id: u32, key: &[u8]) -> bool {
        let Some(db) = self.find_mut(db_id) else {
            return false;
        };
        if db.frozen || !matches!(db.h.chainlock_nonblock(key), Ok(true)) {
            return false;
        }
        let cur = db.h.fetch(key).ok().flatten();
        let _ = db.h.chainunlock(key);
        match empty_header(cur.as_deref()) {
            Some(h) => {
                db.delete_queue.insert(key.to_vec(), h);
                true
            }
            None => false,
        }
    }

    /// The fast path over the run's delete queue (upstream's
    /// `delete_queue_traverse`).
    pub fn vacuum_delete_queue(&mut self, batch: &mut VacuumBatch) -> QueueOutcome {
        let mut out = QueueOutcome::default();
        let queue = std::mem::take(&mut batch.delete_queue);
        let Some((db, env)) = self.db_and_env(batch.db_id) else {
            return out;
        };
        if db.frozen {
            return out;
        }
        let pnn = env.pnn;
        let c = &mut batch.counts;
        for (key, queued) in queue {
            if !matches!(db.h.chainlock_nonblock(&key), Ok(true)) {
                // Locked: dropped from the queue (vacuum.030/033).
                c.skipped += 1;
                continue;
            }
            let cur = empty_header(db.h.fetch(&key).ok().flatten().as_deref());
            let usable = cur.filter(|h| {
                h.dmaster == pnn
                    && h.rsn == queued.rsn
                    && !h.flags.intersects(RecordFlags::RO_FLAGS)
            });
            if usable.is_none() {
                c.skipped += 1;
            } else {
                let lmaster = env.lmaster(&key);
                if lmaster != pnn {
                    out.fetch_lists
                        .entry(lmaster)
                        .or_default()
                        .push(key.clone());
                    c.remote += 1;
                } else if queued.flags.contains(RecordFlags::MIGRATED_WITH_DATA) {
                    out.delete_list.push((key.clone(), queued));
                    c.delete_list += 1;
                } else {
                    match db.h.delete(&key) {
                        Ok(()) => c.deleted += 1,
                        Err(e) => {
                            tracing::error!("vacuum: delete from db[{}] failed: {e}", db.name);
                            c.skipped += 1;
                        }
                    }
                }
            }
            let _ = db.h.chainunlock(&key);
        }
        out
    }

    /// Deletes one delete-list record here, after the other nodes deleted
    /// theirs: only if it is still empty, unchanged, and ours as lmaster
    /// and dmaster (upstream's `delete_record_traverse`).
    pub fn vacuum_delete_record(&mut self, db_id: u32, key: &[u8], hdr: &LtdbHeader) -> DeleteStep {
        let Some((db, env)) = self.db_and_env(db_id) else {
            return DeleteStep::Skipped;
        };
        if db.frozen {
            return DeleteStep::Skipped;
        }
        match db.h.chainlock_nonblock(key) {
            Ok(true) => {}
            Ok(false) => return DeleteStep::Busy,
            Err(e) => {
                tracing::error!("vacuum: chain lock in db[{}]: {e}", db.name);
                return DeleteStep::Skipped;
            }
        }
        let cur = empty_header(db.h.fetch(key).ok().flatten().as_deref());
        let ok = cur.is_some_and(|h| {
            !h.flags.intersects(RecordFlags::RO_FLAGS)
                && h.dmaster == env.pnn
                && h.rsn == hdr.rsn
                && env.lmaster(key) == env.pnn
        });
        let step = if ok && db.h.delete(key).is_ok() {
            DeleteStep::Deleted
        } else {
            DeleteStep::Skipped
        };
        let _ = db.h.chainunlock(key);
        step
    }

    /// Repacks the file when its free list has at least `limit` entries
    /// (RepackLimit; 0 disables). Only when no one holds a lock on it, so
    /// the control core never waits for a client. The free-list length
    /// when it repacked.
    pub fn vacuum_repack(&mut self, db_id: u32, limit: u32) -> Option<u64> {
        if limit == 0 {
            return None;
        }
        let db = self.find_mut(db_id)?;
        if db.frozen {
            return None;
        }
        let n = match db.h.freelist_size() {
            Ok(n) => n,
            Err(e) => {
                tracing::error!("Failed to get freelist size for '{}': {e}", db.name);
                return None;
            }
        };
        if n < u64::from(limit) {
            return None;
        }
        if !matches!(db.h.lockall_nonblock(), Ok(true)) {
            tracing::info!("Repack of {} postponed: database in use", db.name);
            return None;
        }
        let _ = db.h.unlockall();
        tracing::info!("Repacking {} with {n} freelist entries", db.name);
        if let Err(e) = db.h.repack() {
            tracing::error!("Failed to repack '{}': {e}", db.name);
            return None;
        }
        Some(n)
    }

    /// Records a run's duration in the database's statistics.
    pub fn vacuum_latency(&mut self, db_id: u32, secs: f64) {
        if let Some(db) = self.find_mut(db_id) {
            super::stats::update_latency(&mut db.stats.vacuum_latency, secs);
        }
    }

    /// Keys waiting for the next run's fetch step.
    pub fn fetch_queue_len(&self, db_id: u32) -> usize {
        self.find(db_id).map_or(0, |d| d.fetch_queue.len())
    }

    /// One vacuum run with no other node involved: the fast path and the
    /// delete list deleted here at once; keys whose lmaster is another
    /// node stay queued (the driver sends them). `None` if there is no
    /// such volatile database or it is frozen.
    pub fn vacuum(&mut self, db_id: u32, full: bool) -> Option<VacuumCounts> {
        let start = std::time::Instant::now();
        let mut batch = self.vacuum_begin(db_id, full).ok()?;
        let fetch = std::mem::take(&mut batch.fetch_queue);
        let out = self.vacuum_delete_queue(&mut batch);
        let mut counts = batch.counts;
        for (key, hdr) in &out.delete_list {
            match self.vacuum_delete_record(db_id, key, hdr) {
                DeleteStep::Deleted => counts.deleted += 1,
                _ => counts.skipped += 1,
            }
        }
        if let Some(db) = self.find_mut(db_id) {
            db.fetch_queue.extend(fetch);
            for key in out.fetch_lists.into_values().flatten() {
                if let Some(h) = empty_header(db.h.fetch(&key).ok().flatten().as_deref()) {
                    db.delete_queue.insert(key, h);
                }
            }
        }
        self.vacuum_latency(db_id, start.elapsed().as_secs_f64());
        Some(counts)
    }

    /// DB_VACUUM served here, without other nodes (the daemon's driver
    /// answers it in a cluster).
    pub(crate) fn control_db_vacuum(&mut self, db_id: u32, full: bool) -> ControlOutcome {
        let Some(db) = self.find(db_id) else {
            tracing::error!("Unknown db id 0x{db_id:08x}");
            return ControlOutcome::fail();
        };
        if !db.volatile() {
            tracing::error!("Vacuuming is for volatile databases only ({})", db.name);
            return ControlOutcome::fail();
        }
        match self.vacuum(db_id, full) {
            Some(c) => {
                tracing::info!(
                    "vacuum db 0x{db_id:08x}: scheduled {} deleted {} skipped {} remote {}",
                    c.scheduled,
                    c.deleted,
                    c.skipped,
                    c.remote
                );
                ControlOutcome::ok()
            }
            None => ControlOutcome::fail(),
        }
    }

    /// VACUUM_FETCH from another node: keys this node is lmaster of, to
    /// migrate here and vacuum in the next run.
    pub(crate) fn control_vacuum_fetch(&mut self, m: &RecBuffer<'_>) -> ControlOutcome {
        let Some(db) = self.find_mut(m.db_id) else {
            tracing::error!("Unknown db 0x{:08x}", m.db_id);
            return ControlOutcome::fail();
        };
        if !db.volatile() {
            tracing::error!("VACUUM_FETCH for non-volatile database {}", db.name);
            return ControlOutcome::fail();
        }
        for rec in m.iter() {
            db.fetch_queue.insert(rec.key.to_vec());
        }
        ControlOutcome::ok()
    }
}
