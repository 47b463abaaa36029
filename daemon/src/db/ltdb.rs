//! Reading and writing records the way ctdbd does: every value is a
//! 24-byte `ctdb_ltdb_header` then the user data; a missing record reads as
//! a synthesised header (and is created when this node is its lmaster or
//! the database is persistent); volatile stores follow upstream's
//! `ctdb_ltdb_store_server` (keep or delete, rsn increments, delete-queue
//! bookkeeping). Getting these exactly right is what keeps smbd and the
//! `ctdb` tool, which read the same files directly, in agreement with us.

use ctdb_engine::ltdb::{LtdbHeader, RecordFlags, LTDB_HEADER_SIZE};
use std::collections::BTreeMap;

use ctdb_engine::{CoreStore, StoreFlag};
use ctdb_protocol::types::{DB_FLAGS_PERSISTENT, DB_FLAGS_REPLICATED};

use super::{lmaster_of, Db};

/// What the ltdb rules need to know about the node.
#[derive(Clone, Copy)]
pub(crate) struct Env<'a> {
    pub pnn: u32,
    pub vnn_map: &'a [u32],
}

impl Env<'_> {
    pub fn lmaster(&self, key: &[u8]) -> u32 {
        lmaster_of(self.vnn_map, key)
    }
}

/// One database's record access: its handle (all chains, or one data
/// core's partition), its kind, and its delete queue.
pub(crate) struct Records<'a> {
    pub h: &'a mut CoreStore,
    pub name: &'a str,
    pub flags: u8,
    pub delete_queue: &'a mut BTreeMap<Vec<u8>, LtdbHeader>,
}

impl Db {
    pub(crate) fn records(&mut self) -> Records<'_> {
        Records {
            h: &mut self.h,
            name: &self.name,
            flags: self.flags,
            delete_queue: &mut self.delete_queue,
        }
    }

    pub(crate) fn ltdb_fetch(
        &mut self,
        env: &Env<'_>,
        key: &[u8],
    ) -> Result<(LtdbHeader, Vec<u8>), ctdb_engine::Error> {
        self.records().fetch(env, key)
    }

    pub(crate) fn ltdb_store(
        &mut self,
        env: &Env<'_>,
        key: &[u8],
        header: &mut LtdbHeader,
        data: &[u8],
    ) -> Result<(), ctdb_engine::Error> {
        self.records().store(env, key, header, data)
    }
}

impl Records<'_> {
    fn persistent(&self) -> bool {
        self.flags & DB_FLAGS_PERSISTENT != 0
    }

    fn volatile(&self) -> bool {
        self.flags & (DB_FLAGS_PERSISTENT | DB_FLAGS_REPLICATED) == 0
    }

    /// Upstream's `ctdb_ltdb_fetch` in the daemon: the header and data of
    /// `key`; for a missing (or header-less) record, the initial header
    /// `{rsn 0, dmaster lmaster, AUTOMATIC}`, stored with empty data when
    /// the database is persistent or this node is the lmaster.
    pub(crate) fn fetch(
        &mut self,
        env: &Env<'_>,
        key: &[u8],
    ) -> Result<(LtdbHeader, Vec<u8>), ctdb_engine::Error> {
        if let Some(v) = self.h.fetch(key)? {
            if v.len() >= LTDB_HEADER_SIZE {
                if let Some((hdr, data)) = LtdbHeader::split(&v) {
                    return Ok((hdr, data.to_vec()));
                }
            }
        }
        let mut hdr = LtdbHeader::new(0, env.lmaster(key), RecordFlags::AUTOMATIC);
        if self.persistent() || hdr.dmaster == env.pnn {
            if let Err(e) = self.store(env, key, &mut hdr, &[]) {
                tracing::info!("failed to store initial header: {e}");
            }
        }
        Ok((hdr, Vec::new()))
    }

    /// Upstream's `ctdb_ltdb_store` in the daemon. Volatile databases use
    /// the server rules (which may bump `header.rsn` or delete the record
    /// instead); others store `header || data` as given.
    pub(crate) fn store(
        &mut self,
        env: &Env<'_>,
        key: &[u8],
        header: &mut LtdbHeader,
        data: &[u8],
    ) -> Result<(), ctdb_engine::Error> {
        if !self.volatile() {
            return self
                .h
                .store(key, &header.with_data(data), StoreFlag::Replace);
        }
        self.store_server(env, key, header, data)
    }

    fn store_server(
        &mut self,
        env: &Env<'_>,
        key: &[u8],
        header: &mut LtdbHeader,
        data: &[u8],
    ) -> Result<(), ctdb_engine::Error> {
        let pnn = env.pnn;
        let lmaster = env.lmaster(key);
        let f = header.flags;
        let mut keep = false;
        let mut schedule = false;
        if !data.is_empty() || f.intersects(RecordFlags::RO_FLAGS) {
            keep = true;
        } else if f.contains(RecordFlags::AUTOMATIC) {
            keep = true;
            schedule = true;
        } else if f.contains(RecordFlags::MIGRATED_WITH_DATA) {
            keep = true;
        } else if pnn == lmaster {
            if !f.contains(RecordFlags::VACUUM_MIGRATED) || pnn != header.dmaster {
                keep = true;
            }
        } else if pnn == header.dmaster {
            keep = true;
        }
        let mut unqueue = false;
        if keep {
            if pnn == header.dmaster && !f.intersects(RecordFlags::RO_FLAGS) {
                header.rsn = header.rsn.wrapping_add(1);
                if data.is_empty() {
                    schedule = true;
                }
            }
            unqueue = !schedule;
        }
        header.flags.remove(RecordFlags::VACUUM_MIGRATED);
        header.flags.remove(RecordFlags::AUTOMATIC);
        let r = if keep {
            self.h
                .store(key, &header.with_data(data), StoreFlag::Replace)
        } else {
            match self.h.delete(key) {
                Err(ctdb_engine::Error::NotFound) => {
                    // Nothing to delete is no failure worth a log line, but
                    // upstream still skips the queue bookkeeping.
                    return Ok(());
                }
                other => other,
            }
        };
        if let Err(e) = r {
            tracing::error!(
                "db[{}]: Failed to {} record: {e}",
                self.name,
                if keep { "store" } else { "delete" }
            );
            return Err(e);
        }
        if schedule {
            self.delete_queue.insert(key.to_vec(), *header);
        }
        if unqueue {
            self.delete_queue.remove(key);
        }
        Ok(())
    }
}
