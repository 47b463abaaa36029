//! Client-side record access, as upstream's client library does it: the
//! tool opens the daemon's local TDB file itself (through `ctdb-engine`,
//! with the flags the daemon reports), takes the record's chain lock, and
//! asks the daemon to migrate the record here (REQ_CALL with
//! `CTDB_IMMEDIATE_MIGRATION`) until this node is its dmaster.
//!
//! Persistent databases are changed in a transaction: a global lock record
//! in `g_lock.tdb` (fetch-locked like any volatile record) serialises
//! writers, changes are collected in a record buffer and committed with
//! TRANS3_COMMIT, which the daemon applies on every node.

use ctdb_engine::{CoreStore, Database, OpenOptions, StoreFlag, Walk};
use ctdb_protocol::types::{GLock, GLockList, KeyData, ServerId};
use ctdb_protocol::Reader;

use crate::client::EPROTO;
use crate::tool::Ctx;
use crate::wire::{
    self, ltdb_value, ControlData, ControlRequest, LtdbHeader, RecBufferBuilder, Wire,
    LTDB_HEADER_SIZE,
};

/// The local file of an attached database.
pub struct LocalDb {
    pub name: String,
    pub db_id: u32,
    pub flags: u8,
    pub store: CoreStore,
}

/// Opens `path` as `tdb_wrap_open(path, 0, tdb_flags, O_RDWR)` would.
pub fn open_tdb(path: &str, tdb_flags: u32) -> Result<CoreStore, ctdb_engine::Error> {
    let opts = OpenOptions::new()
        .hash_size(0)
        .create(false)
        .tdb_flags(tdb_flags);
    Database::open(path, &opts)?.handle()
}

/// A fetch-locked record: chain lock held until [`RecordHandle::release`].
pub struct RecordHandle {
    pub key: Vec<u8>,
    pub header: LtdbHeader,
    /// The whole stored value (header included).
    pub record: Vec<u8>,
    pub readonly: bool,
}

impl RecordHandle {
    pub fn data(&self) -> &[u8] {
        self.record.get(LTDB_HEADER_SIZE..).unwrap_or(&[])
    }

    pub fn release(self, db: &mut LocalDb) {
        if let Err(e) = db.store.chainunlock(&self.key) {
            eprintln!("fetch_lock: {} tdb_chainunlock failed, {e}", db.name);
        }
    }
}

/// Upstream's `ctdb_fetch_lock()`.
pub fn fetch_lock(
    ctx: &mut Ctx,
    db: &mut LocalDb,
    key: &[u8],
    readonly: bool,
) -> Result<RecordHandle, i32> {
    if db.flags & (wire::CTDB_DB_FLAGS_PERSISTENT | wire::CTDB_DB_FLAGS_REPLICATED) != 0 {
        eprintln!("fetch_lock: {} database not volatile", db.name);
        return Err(libc::EINVAL);
    }
    let pnn = ctx.pnn;
    loop {
        if let Err(e) = db.store.chainlock(key) {
            eprintln!("fetch_lock: {} tdb_chainlock failed, {e}", db.name);
            return Err(libc::EIO);
        }
        let rec = match db.store.fetch(key) {
            Ok(r) => r,
            Err(_) => {
                let _ = db.store.chainunlock(key);
                return Err(libc::EIO);
            }
        };
        let mut migrate = true;
        if let Some(rec) = &rec {
            let header = match wire::ltdb_header(rec) {
                Ok(h) => h,
                Err(_) => {
                    let _ = db.store.chainunlock(key);
                    return Err(libc::EMSGSIZE);
                }
            };
            let ro_flags = 0x0200_0000 | 0x0100_0000;
            migrate = if !readonly {
                header.dmaster != pnn || header.flags & 0x0100_0000 != 0
            } else {
                header.dmaster != pnn && header.flags & ro_flags == 0
            };
            if !migrate {
                return Ok(RecordHandle {
                    key: key.to_vec(),
                    header,
                    record: rec.clone(),
                    readonly: header.flags & ro_flags != 0,
                });
            }
        }
        if let Err(e) = db.store.chainunlock(key) {
            eprintln!("fetch_lock: {} tdb_chainunlock failed, {e}", db.name);
            return Err(libc::EIO);
        }
        if migrate {
            let mut flags = wire::CTDB_IMMEDIATE_MIGRATION;
            if readonly {
                flags |= wire::CTDB_WANT_READONLY;
            }
            match ctx.client.call(flags, db.db_id, wire::CTDB_NULL_FUNC, key) {
                Ok(0) => {}
                Ok(_) => return Err(libc::EIO),
                Err(e) => {
                    eprintln!("fetch_lock: {} CALL failed, ret={e}", db.name);
                    return Err(e);
                }
            }
        }
    }
}

/// Upstream's `ctdb_store_record()` on a fetch-locked record.
pub fn store_record(db: &mut LocalDb, h: &RecordHandle, data: &[u8]) -> Result<(), i32> {
    if h.readonly {
        return Err(libc::EINVAL);
    }
    // Upstream compares against the whole stored value (header included).
    if h.record == data {
        return Ok(());
    }
    let value = ltdb_value(&h.header, data);
    db.store
        .store(&h.key, &value, StoreFlag::Replace)
        .map_err(|e| {
            eprintln!("store_record: {} tdb_storev failed, {e}", db.name);
            libc::EIO
        })
}

/// Upstream's `ctdb_delete_record()`: keep the header, drop the data, and
/// tell the daemon to schedule the record for deletion.
pub fn delete_record(ctx: &mut Ctx, db: &mut LocalDb, h: &RecordHandle) -> Result<(), i32> {
    if h.readonly {
        eprintln!("fetch_lock delete: {} readonly record", db.name);
        return Err(libc::EINVAL);
    }
    let value = ltdb_value(&h.header, &[]);
    if let Err(e) = db.store.store(&h.key, &value, StoreFlag::Replace) {
        eprintln!("fetch_lock delete: {} tdb_store failed, {e}", db.name);
        return Err(libc::EIO);
    }
    let key = KeyData {
        db_id: db.db_id,
        header: h.header,
        key: &h.key,
    };
    let pnn = ctx.pnn;
    let r = ctx.client.control(
        pnn,
        None,
        &ControlRequest::new(ControlData::ScheduleForDeletion(key)),
    );
    let e = match r {
        Ok(r) if r.status == 0 => return Ok(()),
        Ok(r) => r.status,
        Err(e) => e,
    };
    eprintln!(
        "delete_record: {} SCHEDULE_FOR_DELETION failed, ret={e}",
        db.name
    );
    Err(e)
}

/// `ctdb_ltdb_fetch()`: a missing (or too short) record reads as an empty
/// value with dmaster CTDB_UNKNOWN_PNN.
pub fn ltdb_fetch(db: &mut LocalDb, key: &[u8]) -> Result<(LtdbHeader, Vec<u8>), i32> {
    match db.store.fetch(key) {
        Ok(Some(rec)) if rec.len() >= LTDB_HEADER_SIZE => {
            let h = wire::ltdb_header(&rec).map_err(|_| EPROTO)?;
            Ok((h, rec[LTDB_HEADER_SIZE..].to_vec()))
        }
        Ok(_) => Ok((
            LtdbHeader {
                rsn: 0,
                dmaster: wire::CTDB_UNKNOWN_PNN,
                reserved1: 0,
                flags: 0,
            },
            Vec::new(),
        )),
        Err(_) => Err(libc::EIO),
    }
}

/// The entries of a g_lock record (a partial entry at the end is
/// ignored).
fn parse_glocks(data: &[u8]) -> Result<Vec<GLock>, i32> {
    GLockList::pull(&mut Reader::new(data))
        .map(|l| l.locks)
        .map_err(|_| EPROTO)
}

fn push_glocks(locks: &[GLock]) -> Vec<u8> {
    let mut v = Vec::with_capacity(locks.len() * GLock::SIZE);
    for l in locks {
        l.push(&mut v);
    }
    v
}

/// Fetch-locks the g_lock record `key` (lock `name`) and reads its
/// entries; `what` names the caller in error messages.
fn fetch_glocks(
    ctx: &mut Ctx,
    glock: &mut LocalDb,
    key: &[u8],
    name: &str,
    what: &str,
) -> Result<(RecordHandle, Vec<GLock>), i32> {
    let h = fetch_lock(ctx, glock, key, false).inspect_err(|_| {
        eprintln!("{what}: {name} fetch lock failed");
    })?;
    match parse_glocks(h.data()) {
        Ok(l) => Ok((h, l)),
        Err(e) => {
            eprintln!("{what}: {name} invalid lock data");
            h.release(glock);
            Err(e)
        }
    }
}

/// A transaction on a persistent (or replicated) database.
pub struct Transaction {
    readonly: bool,
    updated: bool,
    sid: GLock,
    lock_name: String,
    /// Collected records: (key, header, data).
    records: Vec<(Vec<u8>, LtdbHeader, Vec<u8>)>,
}

fn key_of(name: &str) -> Vec<u8> {
    let mut k = name.as_bytes().to_vec();
    k.push(0);
    k
}

/// `ctdb_g_lock_lock()`.
fn g_lock_lock(ctx: &mut Ctx, glock: &mut LocalDb, name: &str, me: GLock) -> Result<(), i32> {
    let key = key_of(name);
    loop {
        let (h, mut locks) = fetch_glocks(ctx, glock, &key, name, "g_lock_lock")?;
        let mut retry = false;
        let mut i = 0;
        while i < locks.len() {
            let l = locks[i];
            if l.sid == me.sid {
                eprintln!("g_lock_lock: {name} deadlock");
                h.release(glock);
                return Err(libc::EDEADLK);
            }
            if !(l.write || me.write) {
                i += 1;
                continue;
            }
            // Conflict: is the holder still alive?
            let r = ctx.client.control(
                l.sid.vnn,
                None,
                &ControlRequest::new(ControlData::ProcessExists(l.sid.pid as i32)),
            );
            match r {
                Ok(r) if r.status == 0 => {
                    retry = true;
                    break;
                }
                Ok(_) => {
                    // Holder gone: drop its entry (last one moves here).
                    locks.swap_remove(i);
                    let data = push_glocks(&locks);
                    if let Err(e) = store_record(glock, &h, &data) {
                        h.release(glock);
                        return Err(e);
                    }
                }
                Err(e) => {
                    eprintln!("g_lock_lock: {name} PROCESS_EXISTS failed, ret={e}");
                    h.release(glock);
                    return Err(e);
                }
            }
        }
        if retry {
            h.release(glock);
            std::thread::sleep(std::time::Duration::from_millis(1));
            continue;
        }
        locks.push(me);
        let data = push_glocks(&locks);
        let r = store_record(glock, &h, &data);
        h.release(glock);
        return r;
    }
}

/// `ctdb_g_lock_unlock()`.
fn g_lock_unlock(ctx: &mut Ctx, glock: &mut LocalDb, name: &str, me: GLock) -> Result<(), i32> {
    let key = key_of(name);
    let (h, mut locks) = fetch_glocks(ctx, glock, &key, name, "g_lock_unlock")?;
    if let Some(i) = locks.iter().position(|l| l.sid == me.sid) {
        locks.swap_remove(i);
    }
    let r = if locks.is_empty() {
        delete_record(ctx, glock, &h)
            .inspect_err(|e| eprintln!("g_lock_unlock {name} delete record failed, ret={e}"))
    } else {
        store_record(glock, &h, &push_glocks(&locks))
    };
    h.release(glock);
    r
}

impl Transaction {
    /// `ctdb_transaction_start()`.
    pub fn start(
        ctx: &mut Ctx,
        db: &LocalDb,
        glock: &mut LocalDb,
        readonly: bool,
    ) -> Result<Transaction, i32> {
        let pid = std::process::id() as u64;
        let sid = GLock {
            write: !readonly,
            sid: ServerId {
                pid,
                task_id: db.db_id,
                vnn: ctx.pnn,
                unique_id: ((db.db_id as u64) << 32) | pid,
            },
        };
        let lock_name = format!("transaction_db_0x{:08x}", db.db_id);
        if let Err(e) = g_lock_lock(ctx, glock, &lock_name, sid) {
            eprintln!("transaction_start: {} g_lock lock failed, ret={e}", db.name);
            return Err(e);
        }
        Ok(Transaction {
            readonly,
            updated: false,
            sid,
            lock_name,
            records: Vec::new(),
        })
    }

    fn find(&self, key: &[u8]) -> Option<usize> {
        self.records.iter().rposition(|(k, _, _)| k == key)
    }

    /// `ctdb_transaction_fetch_record()`.
    pub fn fetch(&mut self, db: &mut LocalDb, key: &[u8]) -> Result<Vec<u8>, i32> {
        if let Some(i) = self.find(key) {
            return Ok(self.records[i].2.clone());
        }
        let (h, data) = ltdb_fetch(db, key)?;
        self.records.push((key.to_vec(), h, data.clone()));
        Ok(data)
    }

    /// `ctdb_transaction_store_record()` (empty data = delete).
    pub fn store(&mut self, db: &mut LocalDb, key: &[u8], data: &[u8]) -> Result<(), i32> {
        if self.readonly {
            return Err(libc::EINVAL);
        }
        let (mut h, old) = match self.find(key) {
            Some(i) => (self.records[i].1, self.records[i].2.clone()),
            None => ltdb_fetch(db, key)?,
        };
        if old == data {
            return Ok(());
        }
        h.dmaster = self.sid.sid.vnn;
        h.rsn += 1;
        self.records.push((key.to_vec(), h, data.to_vec()));
        self.updated = true;
        Ok(())
    }

    fn recbuf(&self, db_id: u32) -> RecBufferBuilder {
        let mut b = RecBufferBuilder::new(db_id);
        for (k, h, d) in &self.records {
            b.add(0, Some(h), k, d);
        }
        b
    }

    fn db_seqnum(db: &mut LocalDb) -> Result<u64, i32> {
        let (_, data) = ltdb_fetch(db, &key_of("__db_sequence_number__"))?;
        match data.len() {
            0 => Ok(0),
            8 => {
                let mut b = [0u8; 8];
                b.copy_from_slice(&data);
                Ok(u64::from_ne_bytes(b))
            }
            _ => Err(libc::EINVAL),
        }
    }

    /// `ctdb_transaction_commit()`.
    pub fn commit(
        mut self,
        ctx: &mut Ctx,
        db: &mut LocalDb,
        glock: &mut LocalDb,
    ) -> Result<(), i32> {
        if self.readonly || !self.updated {
            return self.cancel(ctx, db, glock);
        }
        let seqnum = Self::db_seqnum(db).inspect_err(|&e| {
            if e != libc::EINVAL {
                eprintln!(
                    "transaction_commit: {} seqnum fetch failed, ret={e}",
                    db.name
                );
            }
        })?;
        self.store(
            db,
            &key_of("__db_sequence_number__"),
            &(seqnum + 1).to_ne_bytes(),
        )?;
        let pnn = ctx.pnn;
        loop {
            let recs = self.recbuf(db.db_id);
            let req = ControlRequest::new(ControlData::Trans3Commit(recs.as_rec_buffer()));
            match ctx.client.control(pnn, None, &req) {
                Err(e) => {
                    eprintln!(
                        "transaction_commit: {} TRANS3_COMMIT failed, ret={e}",
                        db.name
                    );
                    return Err(e);
                }
                Ok(r) if r.status == 0 => break,
                Ok(_) => {
                    let now = Self::db_seqnum(db)?;
                    if now == seqnum {
                        continue;
                    }
                    if now != seqnum + 1 {
                        eprintln!(
                            "transaction_commit: {} seqnum mismatch 0x{now:x} != 0x{seqnum:x} + 1",
                            db.name
                        );
                        return Err(libc::EIO);
                    }
                    break;
                }
            }
        }
        g_lock_unlock(ctx, glock, &self.lock_name, self.sid).inspect_err(|e| {
            eprintln!(
                "transaction_commit: {} g_lock unlock failed, ret={e}",
                db.name
            )
        })
    }

    /// `ctdb_transaction_cancel()`.
    pub fn cancel(self, ctx: &mut Ctx, db: &mut LocalDb, glock: &mut LocalDb) -> Result<(), i32> {
        g_lock_unlock(ctx, glock, &self.lock_name, self.sid).inspect_err(|e| {
            eprintln!(
                "transaction_cancel: {} g_lock unlock failed, ret={e}",
                db.name
            )
        })
    }
}

/// `ctdb_db_traverse_local()` over a read traverse: (key, value) pairs in
/// file order.
pub fn traverse_local(db: &mut LocalDb) -> Result<Vec<crate::format::KeyData>, i32> {
    let mut out = Vec::new();
    db.store
        .traverse_read(|k, v| {
            out.push((k.to_vec(), v.to_vec()));
            Walk::Continue
        })
        .map_err(|_| libc::EIO)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glock_round_trip() {
        let l = GLock {
            write: true,
            sid: ServerId {
                pid: 1234,
                task_id: 0xdeadbeef,
                vnn: 2,
                unique_id: (0xdeadbeef_u64 << 32) | 1234,
            },
        };
        let bytes = push_glocks(&[l, l]);
        assert_eq!(bytes.len(), 64);
        assert_eq!(parse_glocks(&bytes).unwrap(), vec![l, l]);
        let mut bad = bytes.clone();
        bad[0] = 7;
        assert_eq!(parse_glocks(&bad), Err(EPROTO));
        assert_eq!(parse_glocks(&bytes[..40]).unwrap(), vec![l]);
    }
}
