//! Vacuuming of volatile databases, the part that concerns this node's own
//! records: upstream's fast run walks the delete queue (keys stored with
//! empty data while this node was dmaster, see SCHEDULE_FOR_DELETION and
//! the server store rules) and deletes each record that is still a bare
//! header, still has this node as dmaster and the queued rsn, and whose
//! lmaster is this node; a full run first queues every bare-header record
//! this node is dmaster of. Records whose lmaster is another node would go
//! to that node in VACUUM_FETCH, and deletions of records with
//! MIGRATED_WITH_DATA are first confirmed by the other nodes with
//! TRY_DELETE_RECORDS; with no other active node both reduce to the local
//! delete. Without vacuuming, `ctdb deletekey` and smbd's deletes would
//! leave empty records in the file for ever.

use ctdb_engine::ltdb::{LtdbHeader, RecordFlags, LTDB_HEADER_SIZE};
use ctdb_engine::Walk;

use super::{ControlOutcome, Databases};

/// What a vacuum run did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VacuumCounts {
    /// Queued by the full run's traverse.
    pub scheduled: u32,
    pub deleted: u32,
    pub skipped: u32,
    /// Left for another node (lmaster elsewhere).
    pub remote: u32,
}

impl Databases {
    /// One vacuum run over a volatile database (`full`: traverse first).
    /// `None` if there is no such volatile database or it is frozen.
    pub fn vacuum(&mut self, db_id: u32, full: bool) -> Option<VacuumCounts> {
        let (db, env) = self.db_and_env(db_id)?;
        if !db.volatile() || db.frozen {
            return None;
        }
        let start = std::time::Instant::now();
        let pnn = env.pnn;
        let mut counts = VacuumCounts::default();
        if full {
            let mut found = Vec::new();
            let _ = db.h.traverse_read(|k, v| {
                if v.len() == LTDB_HEADER_SIZE {
                    if let Some(h) = LtdbHeader::parse(v) {
                        if h.dmaster == pnn {
                            found.push((k.to_vec(), h));
                        }
                    }
                }
                Walk::Continue
            });
            for (k, h) in found {
                db.delete_queue.insert(k, h);
                counts.scheduled += 1;
            }
        }
        let queue = std::mem::take(&mut db.delete_queue);
        for (key, queued) in queue {
            if env.lmaster(&key) != pnn {
                counts.remote += 1;
                db.delete_queue.insert(key, queued);
                continue;
            }
            match db.h.chainlock_nonblock(&key) {
                Ok(true) => {}
                _ => {
                    // Busy: try again next run.
                    db.delete_queue.insert(key, queued);
                    counts.skipped += 1;
                    continue;
                }
            }
            let cur = db.h.fetch(&key).ok().flatten();
            let deletable = match cur.as_deref() {
                Some(v) if v.len() == LTDB_HEADER_SIZE => match LtdbHeader::parse(v) {
                    Some(h) => {
                        h.dmaster == pnn
                            && h.rsn == queued.rsn
                            && !h.flags.intersects(RecordFlags::RO_FLAGS)
                    }
                    None => false,
                },
                _ => false,
            };
            if deletable && db.h.delete(&key).is_ok() {
                counts.deleted += 1;
            } else {
                counts.skipped += 1;
            }
            let _ = db.h.chainunlock(&key);
        }
        super::stats::update_latency(&mut db.stats.vacuum_latency, start.elapsed().as_secs_f64());
        Some(counts)
    }

    /// DB_VACUUM (from the recovery daemon's vacuuming schedule).
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
}
