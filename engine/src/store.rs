//! A per-core handle on a TDB file: its own descriptor (so its own OFD
//! locks), its own mapping, and the subset of hash chains it owns. All record
//! operations of libtdb live here: lookup, store (in place or by
//! reallocation), delete with dead-record trimming, the free list with left
//! merging, file expansion, traversal with record locks, the sequence number.

use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use crate::db::Shared;
use crate::error::{Error, Result};
use crate::format::*;
use crate::sys::map::Map;
use crate::sys::mutex::{LockKind, MutexIndex};
use crate::sys::{self, LockType};
use crate::transaction::Tx;

/// How `store` treats an existing / missing key (tdb.h TDB_REPLACE,
/// TDB_INSERT, TDB_MODIFY).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreFlag {
    /// Create or overwrite.
    Replace,
    /// Fail with [`Error::Exists`] if the key exists.
    Insert,
    /// Fail with [`Error::NotFound`] if the key does not exist.
    Modify,
}

/// What a traverse callback wants next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Walk {
    Continue,
    Stop,
}

#[derive(Clone, Copy, Debug)]
struct NestLock {
    off: u64,
    count: u32,
    ty: LockType,
}

#[derive(Clone, Copy, Debug)]
pub(crate) struct AllRecord {
    pub count: u32,
    pub ty: LockType,
    pub upgradable: bool,
}

/// Tortoise/hare loop detection on a chain (libtdb's chainwalk), plus a
/// hop limit (no list can have more entries than the file has 24-byte
/// slots) so that no corrupt list can make a walk run forever.
pub(crate) struct ChainWalk {
    slow: u32,
    chase: bool,
    hops: u64,
    /// Hop limit, computed at the first hop (0: not yet).
    limit: u64,
}

impl ChainWalk {
    pub(crate) fn new(start: u32) -> ChainWalk {
        ChainWalk {
            slow: start,
            chase: false,
            hops: 0,
            limit: 0,
        }
    }

    /// Count one hop without the tortoise check (lists being modified).
    #[inline]
    pub(crate) fn hop(&mut self, st: &CoreStore, at: u32) -> Result<()> {
        self.hops += 1;
        if self.hops > self.limit {
            // The mapping may have grown since the limit was taken.
            self.limit = st.map_size() / REC_SIZE as u64 + 2;
            if self.hops > self.limit {
                return Err(st.corrupt(at as u64, "list longer than the file allows (loop)"));
            }
        }
        Ok(())
    }

    #[inline]
    pub(crate) fn check(&mut self, st: &mut CoreStore, next: u32) -> Result<()> {
        self.hop(st, next)?;
        if self.chase {
            self.slow = st.read_u32(self.slow)?;
        }
        self.chase = !self.chase;
        if next != 0 && next == self.slow {
            return Err(st.corrupt(next as u64, "circular hash chain"));
        }
        Ok(())
    }
}

/// A handle for one core: owns the hash chains `b` with
/// `chain_owner(b, hash_size, ncores) == core`, a contiguous range (all
/// chains when `ncores == 1`), and the records on
/// them. Operations on a key of another core's chain fail with
/// [`Error::NotOwner`]; [`crate::Database::owner_of`] routes keys.
///
/// A `CoreStore` must stay on one thread while it holds a lock (chain locks
/// may be pthread mutexes, which belong to the locking thread).
pub struct CoreStore {
    pub(crate) sh: Arc<Shared>,
    pub(crate) file: File,
    pub(crate) map: Map,
    nest: Vec<NestLock>,
    pub(crate) allrec: AllRecord,
    traverse_read: u32,
    pub(crate) tx: Option<Box<Tx>>,
    pub(crate) core: usize,
    pub(crate) ncores: usize,
    scratch: Vec<u8>,
    /// Lazily computed reserve chain (None inside: this partition owns no
    /// chain).
    reserve: Option<Option<Reserve>>,
    /// Records parked on the reserve chain by deletes since it was last
    /// trimmed (a heuristic: libtdb may purge the chain meanwhile).
    parked: u32,
}

struct Reserve {
    key: Vec<u8>,
    hash: u32,
    bucket: u32,
}

/// Dead records added to a partition's reserve per free-list visit.
const RESERVE_BATCH: u32 = 8;
/// More dead records than this on the reserve chain are given back.
const RESERVE_MAX: u32 = 32;

impl CoreStore {
    pub(crate) fn new(
        sh: Arc<Shared>,
        file: File,
        core: usize,
        ncores: usize,
    ) -> Result<CoreStore> {
        let mut st = CoreStore {
            sh,
            file,
            map: Map::empty(),
            nest: Vec::new(),
            allrec: AllRecord {
                count: 0,
                ty: LockType::Read,
                upgradable: false,
            },
            traverse_read: 0,
            tx: None,
            core,
            ncores,
            scratch: Vec::new(),
            reserve: None,
            parked: 0,
        };
        st.refresh_map()?;
        Ok(st)
    }

    // ----------------------------------------------------------------- info

    /// Path of the database file.
    pub fn path(&self) -> &Path {
        &self.sh.path
    }

    /// Number of hash chains of the file.
    pub fn hash_size(&self) -> u32 {
        self.sh.hash_size
    }

    /// This handle's core index and the number of partitions.
    pub fn partition(&self) -> (usize, usize) {
        (self.core, self.ncores)
    }

    /// True if this handle owns every hash chain.
    pub fn owns_all(&self) -> bool {
        self.ncores == 1
    }

    /// The chain (bucket) of `key`.
    pub fn chain_of(&self, key: &[u8]) -> u32 {
        self.sh.hash.hash(key) % self.sh.hash_size
    }

    #[inline]
    fn owns(&self, bucket: u32) -> bool {
        self.ncores == 1 || chain_owner(bucket, self.sh.hash_size, self.ncores) == self.core
    }

    #[inline]
    fn bucket_checked(&self, key: &[u8]) -> Result<(u32, u32)> {
        let hash = self.sh.hash.hash(key);
        let bucket = hash % self.sh.hash_size;
        if !self.owns(bucket) {
            return Err(Error::NotOwner {
                chain: bucket,
                owner: chain_owner(bucket, self.sh.hash_size, self.ncores),
                core: self.core,
            });
        }
        if let Some(area) = &self.sh.mutex {
            area.prefetch_chain(bucket);
        }
        // Start loading the chain's first record before the chain lock is
        // taken: its address comes from an unlocked peek at the chain head,
        // so the record miss overlaps the lock instead of following it.
        // Only a hint; `find` re-reads everything under the lock.
        if let Some(first) = self.map.peek_u32(hash_top(bucket) as u64) {
            if first != 0 {
                self.map.prefetch_record(first);
            }
        }
        Ok((hash, bucket))
    }

    pub(crate) fn corrupt(&self, offset: u64, what: impl Into<String>) -> Error {
        Error::Corrupt {
            path: self.sh.path.clone(),
            offset,
            what: what.into(),
        }
    }

    pub(crate) fn io_err(&self, op: &'static str, source: std::io::Error) -> Error {
        Error::Io {
            path: self.sh.path.clone(),
            op,
            source,
        }
    }

    // ------------------------------------------------------------------- io

    /// Logical size of the database as this handle sees it.
    pub(crate) fn map_size(&self) -> u64 {
        match &self.tx {
            Some(tx) => tx.size,
            None => self.map.len(),
        }
    }

    /// Re-read the file size and remap if another handle grew the file
    /// (libtdb's `tdb_oob` with probe).
    pub(crate) fn refresh_map(&mut self) -> Result<()> {
        let flen = self
            .file
            .metadata()
            .map_err(|e| self.io_err("fstat", e))?
            .len();
        let logical = flen.saturating_sub(self.sh.hdr_ofs).min(u32::MAX as u64);
        if logical != self.map.len() {
            self.map = Map::new(&self.file, self.sh.hdr_ofs, logical, !self.sh.read_only)
                .map_err(|e| self.io_err("mmap", e))?;
        }
        Ok(())
    }

    /// Make sure `[off, off+len)` is inside the database, remapping if the
    /// file has grown.
    #[inline]
    pub(crate) fn ensure(&mut self, off: u64, len: u64) -> Result<()> {
        // Fast path: inside the current mapping (offsets and lengths are
        // at most 32 bits wide, so the sum cannot overflow).
        if self.tx.is_none()
            && off <= u32::MAX as u64
            && len <= u32::MAX as u64
            && off + len <= self.map.len()
        {
            return Ok(());
        }
        self.ensure_slow(off, len)
    }

    #[cold]
    #[inline(never)]
    fn ensure_slow(&mut self, off: u64, len: u64) -> Result<()> {
        let end = off
            .checked_add(len)
            .ok_or_else(|| self.corrupt(off, "offset overflow"))?;
        if let Some(tx) = &self.tx {
            if end > tx.size {
                return Err(
                    self.corrupt(off, format!("access of {len} bytes beyond end {}", tx.size))
                );
            }
            return Ok(());
        }
        if end <= self.map.len() {
            return Ok(());
        }
        self.refresh_map()?;
        if end <= self.map.len() {
            Ok(())
        } else {
            Err(self.corrupt(
                off,
                format!(
                    "access of {len} bytes beyond end of file ({})",
                    self.map.len()
                ),
            ))
        }
    }

    #[inline]
    pub(crate) fn read(&mut self, off: u64, buf: &mut [u8]) -> Result<()> {
        if self.tx.is_none() && self.map.read(off, buf) {
            return Ok(());
        }
        self.read_slow(off, buf)
    }

    #[cold]
    #[inline(never)]
    fn read_slow(&mut self, off: u64, buf: &mut [u8]) -> Result<()> {
        self.ensure(off, buf.len() as u64)?;
        if let Some(tx) = &self.tx {
            tx.read(&self.map, off, buf);
            return Ok(());
        }
        if self.map.read(off, buf) {
            Ok(())
        } else {
            Err(self.corrupt(off, "read outside mapping"))
        }
    }

    #[inline]
    pub(crate) fn write(&mut self, off: u64, buf: &[u8]) -> Result<()> {
        // A read-only open has a read-only map: `Map::write` refuses and the
        // slow path reports ReadOnly.
        if self.tx.is_none() && self.map.write(off, buf) {
            return Ok(());
        }
        self.write_slow(off, buf)
    }

    #[cold]
    #[inline(never)]
    fn write_slow(&mut self, off: u64, buf: &[u8]) -> Result<()> {
        self.ensure(off, buf.len() as u64)?;
        if let Some(tx) = &mut self.tx {
            tx.write(&self.map, off, buf);
            return Ok(());
        }
        if self.sh.read_only {
            return Err(Error::ReadOnly {
                path: self.sh.path.clone(),
            });
        }
        if self.map.write(off, buf) {
            Ok(())
        } else {
            Err(self.corrupt(off, "write outside mapping"))
        }
    }

    #[inline]
    pub(crate) fn read_u32(&mut self, off: u32) -> Result<u32> {
        if self.tx.is_none() {
            if let Some(v) = self.map.read_u32(off as u64) {
                return Ok(v);
            }
        }
        let mut b = [0u8; 4];
        self.read(off as u64, &mut b)?;
        Ok(u32::from_le_bytes(b))
    }

    #[inline]
    pub(crate) fn write_u32(&mut self, off: u32, v: u32) -> Result<()> {
        if self.tx.is_none() && self.map.write_array(off as u64, v.to_le_bytes()) {
            return Ok(());
        }
        self.write_slow(off as u64, &v.to_le_bytes())
    }

    #[inline(always)]
    pub(crate) fn read_rec_raw(&mut self, off: u32) -> Result<Rec> {
        if self.tx.is_none() {
            if let Some(b) = self.map.read_array::<24>(off as u64) {
                return Ok(Rec::from_bytes(&b));
            }
        }
        self.read_rec_slow(off)
    }

    #[cold]
    #[inline(never)]
    fn read_rec_slow(&mut self, off: u32) -> Result<Rec> {
        let mut b = [0u8; 24];
        self.read(off as u64, &mut b)?;
        Ok(Rec::from_bytes(&b))
    }

    /// Read a record that must be on a hash chain (live or dead magic) and
    /// whose `next` lies inside the file (libtdb's `tdb_rec_read`).
    #[inline(always)]
    pub(crate) fn read_chain_rec(&mut self, off: u32) -> Result<Rec> {
        let rec = self.read_rec_raw(off)?;
        if (rec.magic == TDB_MAGIC || rec.magic == TDB_DEAD_MAGIC)
            && (rec.next == 0
                || (rec.next as u64 >= data_start(self.sh.hash_size)
                    && rec.next as u64 + REC_SIZE as u64 <= self.map_size()))
        {
            return Ok(rec);
        }
        // The check returns only a verdict, so that the record stays in
        // registers on the fast path.
        self.check_chain_rec(off, &rec)?;
        Ok(rec)
    }

    /// The slow half of [`CoreStore::read_chain_rec`]: report what is wrong
    /// with `rec`, or remap when `next` lies past the mapped size.
    #[cold]
    #[inline(never)]
    fn check_chain_rec(&mut self, off: u32, rec: &Rec) -> Result<()> {
        if rec.magic != TDB_MAGIC && rec.magic != TDB_DEAD_MAGIC {
            return Err(self.corrupt(off as u64, format!("bad record magic 0x{:08x}", rec.magic)));
        }
        if rec.next != 0 {
            if (rec.next as u64) < data_start(self.sh.hash_size) {
                return Err(self.corrupt(
                    off as u64,
                    format!("record next {} points into the hash table", rec.next),
                ));
            }
            self.ensure(rec.next as u64, REC_SIZE as u64)?;
        }
        Ok(())
    }

    #[inline]
    pub(crate) fn write_rec(&mut self, off: u32, rec: &Rec) -> Result<()> {
        let b = rec.to_bytes();
        if self.tx.is_none() && self.map.write_array(off as u64, b) {
            return Ok(());
        }
        self.write_slow(off as u64, &b)
    }

    /// Check that key+data fit in the record, returning the data offset.
    #[inline(always)]
    fn rec_data_off(&self, off: u32, rec: &Rec) -> Result<u64> {
        let need = rec.key_len as u64 + rec.data_len as u64 + 4;
        if need > rec.rec_len as u64 {
            return Err(self.rec_overflow(off, rec.key_len, rec.data_len, rec.rec_len));
        }
        Ok(off as u64 + REC_SIZE as u64 + rec.key_len as u64)
    }

    /// The error of [`CoreStore::rec_data_off`], out of line (taking the
    /// fields by value keeps the record in registers on the hot path).
    #[cold]
    #[inline(never)]
    fn rec_overflow(&self, off: u32, key_len: u32, data_len: u32, rec_len: u32) -> Error {
        self.corrupt(
            off as u64,
            format!("key_len {key_len} + data_len {data_len} do not fit rec_len {rec_len}"),
        )
    }

    #[inline]
    fn key_eq(&mut self, off: u64, key: &[u8]) -> Result<bool> {
        if self.tx.is_none() {
            if let Some(eq) = self.map.eq(off, key) {
                return Ok(eq);
            }
        }
        self.key_eq_slow(off, key)
    }

    #[cold]
    #[inline(never)]
    fn key_eq_slow(&mut self, off: u64, key: &[u8]) -> Result<bool> {
        self.ensure(off, key.len() as u64)?;
        if self.tx.is_none() {
            return self
                .map
                .eq(off, key)
                .ok_or_else(|| self.corrupt(off, "key outside mapping"));
        }
        let mut tmp = std::mem::take(&mut self.scratch);
        tmp.clear();
        tmp.resize(key.len(), 0);
        let r = self.read(off, &mut tmp).map(|_| tmp[..] == *key);
        self.scratch = tmp;
        r
    }

    #[inline]
    fn append_bytes(&mut self, off: u64, len: usize, out: &mut Vec<u8>) -> Result<()> {
        if self.tx.is_none() && self.map.read_append(off, len, out) {
            return Ok(());
        }
        self.append_bytes_slow(off, len, out)
    }

    #[cold]
    #[inline(never)]
    fn append_bytes_slow(&mut self, off: u64, len: usize, out: &mut Vec<u8>) -> Result<()> {
        self.ensure(off, len as u64)?;
        if self.tx.is_none() {
            return if self.map.read_append(off, len, out) {
                Ok(())
            } else {
                Err(self.corrupt(off, "read outside mapping"))
            };
        }
        let old = out.len();
        out.resize(old + len, 0);
        self.read(off, &mut out[old..])
    }

    // ---------------------------------------------------------------- locks

    fn brlock(&self, ty: LockType, off: u64, len: u64, wait: bool) -> Result<bool> {
        if self.sh.nolock {
            return Ok(true);
        }
        if ty == LockType::Write && (self.sh.read_only || self.traverse_read > 0) {
            return Err(Error::ReadOnly {
                path: self.sh.path.clone(),
            });
        }
        sys::lock(&self.file, ty, off, len, wait).map_err(|e| Error::Lock {
            path: self.sh.path.clone(),
            offset: off,
            what: format!("fcntl lock failed: {e}"),
        })
    }

    fn brunlock(&self, off: u64, len: u64) -> Result<()> {
        if self.sh.nolock {
            return Ok(());
        }
        sys::unlock(&self.file, off, len).map_err(|e| Error::Lock {
            path: self.sh.path.clone(),
            offset: off,
            what: format!("fcntl unlock failed: {e}"),
        })
    }

    fn mutex_index(&self, off: u64) -> Option<MutexIndex> {
        self.sh.mutex.as_ref()?;
        crate::sys::mutex::mutex_index_for_lock(off, 1, self.sh.hash_size)
    }

    fn holds_chain_mutex(&self) -> bool {
        self.nest
            .iter()
            .any(|l| l.off >= FREELIST_LOCK + 4 && l.off < chain_lock_offset(self.sh.hash_size))
    }

    /// Take the underlying lock for a fresh nest entry: a mutex for chain
    /// and free-list locks in mutex mode, an fcntl lock otherwise.
    fn raw_lock(&self, off: u64, ty: LockType, wait: bool) -> Result<bool> {
        if let (Some(idx), Some(area)) = (self.mutex_index(off), self.sh.mutex.as_ref()) {
            let kind = if ty == LockType::Read {
                LockKind::Read
            } else {
                LockKind::Write
            };
            let r = match idx {
                MutexIndex::FreeList => area.lock_freelist(wait),
                MutexIndex::Chain(c) => area.lock_chain(c, kind, wait, self.holds_chain_mutex()),
            };
            return match r {
                Ok(_) => Ok(true),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Ok(false),
                Err(e) if !wait && e.raw_os_error() == Some(libc::EDEADLK) => Ok(false),
                Err(e) => Err(Error::Lock {
                    path: self.sh.path.clone(),
                    offset: off,
                    what: format!("mutex lock failed: {e}"),
                }),
            };
        }
        self.brlock(ty, off, 1, wait)
    }

    fn raw_unlock(&self, off: u64) -> Result<()> {
        if let (Some(idx), Some(area)) = (self.mutex_index(off), self.sh.mutex.as_ref()) {
            let r = match idx {
                MutexIndex::FreeList => area.unlock_freelist(),
                MutexIndex::Chain(c) => area.unlock_chain(c),
            };
            return r.map_err(|e| Error::Lock {
                path: self.sh.path.clone(),
                offset: off,
                what: format!("mutex unlock failed: {e}"),
            });
        }
        self.brunlock(off, 1)
    }

    /// Nested 1-byte lock (libtdb's `tdb_nest_lock`).
    pub(crate) fn nest_lock(&mut self, off: u64, ty: LockType, wait: bool) -> Result<bool> {
        if self.sh.nolock {
            return Ok(true);
        }
        if let Some(i) = self.nest.iter().position(|l| l.off == off) {
            if self.nest[i].ty == LockType::Read && ty == LockType::Write {
                if self.mutex_index(off).is_none() && !self.brlock(LockType::Write, off, 1, wait)? {
                    return Ok(false);
                }
                self.nest[i].ty = LockType::Write;
            }
            self.nest[i].count += 1;
            return Ok(true);
        }
        if !self.raw_lock(off, ty, wait)? {
            return Ok(false);
        }
        self.nest.push(NestLock { off, count: 1, ty });
        Ok(true)
    }

    pub(crate) fn nest_unlock(&mut self, off: u64) -> Result<()> {
        if self.sh.nolock {
            return Ok(());
        }
        let Some(i) = self.nest.iter().position(|l| l.off == off) else {
            return Err(Error::Lock {
                path: self.sh.path.clone(),
                offset: off,
                what: "unlock of a lock not held".into(),
            });
        };
        if self.nest[i].count > 1 {
            self.nest[i].count -= 1;
            return Ok(());
        }
        self.nest.swap_remove(i);
        self.raw_unlock(off)
    }

    fn have_data_locks(&self) -> bool {
        self.nest.iter().any(|l| l.off >= FREELIST_LOCK)
    }

    pub(crate) fn have_extra_locks(&self) -> bool {
        if self.tx.is_none() && self.allrec.count > 0 {
            return true;
        }
        let mut extra = self.nest.len();
        if self.tx.is_some() && self.nest.iter().any(|l| l.off == TRANSACTION_LOCK) {
            extra -= 1;
        }
        extra > 0
    }

    /// Lock a hash chain or the free list (`off` from `chain_lock_offset` or
    /// `FREELIST_LOCK`), as libtdb's `tdb_lock_list` incl. the check for an
    /// interrupted transaction.
    pub(crate) fn lock_list(&mut self, off: u64, ty: LockType, wait: bool) -> Result<bool> {
        if self.allrec.count > 0 {
            if ty == LockType::Read || self.allrec.ty == LockType::Write {
                return Ok(true);
            }
            return Err(Error::Lock {
                path: self.sh.path.clone(),
                offset: off,
                what: "write lock wanted under a read allrecord lock".into(),
            });
        }
        if self.sh.nolock {
            // No locks and no nesting records; only the recovery check.
            if self.needs_recovery() {
                self.lock_and_recover()?;
            }
            return Ok(true);
        }
        let check = !self.have_data_locks();
        if !self.nest_lock(off, ty, wait)? {
            return Ok(false);
        }
        if check && self.needs_recovery() {
            self.nest_unlock(off)?;
            self.lock_and_recover()?;
            return self.lock_list(off, ty, wait);
        }
        Ok(true)
    }

    #[inline]
    pub(crate) fn unlock_list(&mut self, off: u64) -> Result<()> {
        if self.allrec.count > 0 || self.sh.nolock {
            return Ok(());
        }
        self.nest_unlock(off)
    }

    #[inline(always)]
    fn lock_chain(&mut self, bucket: u32, ty: LockType) -> Result<()> {
        if self.nest.is_empty() && self.allrec.count == 0 && !self.sh.nolock {
            return self.lock_chain_first(bucket, ty);
        }
        self.lock_chain_nested(bucket, ty)
    }

    #[inline(never)]
    fn lock_chain_nested(&mut self, bucket: u32, ty: LockType) -> Result<()> {
        self.lock_list(chain_lock_offset(bucket), ty, true)
            .map(|_| ())
    }

    /// [`CoreStore::lock_list`] for the common case of a chain lock taken
    /// while this handle holds no other lock: no nesting to look up, no
    /// other chain mutex held.
    #[inline(always)]
    fn lock_chain_first(&mut self, bucket: u32, ty: LockType) -> Result<()> {
        let off = chain_lock_offset(bucket);
        if let Some(area) = self.sh.mutex.as_ref() {
            let kind = if ty == LockType::Read {
                LockKind::Read
            } else {
                LockKind::Write
            };
            if let Err(e) = area.lock_chain(bucket, kind, true, false) {
                return Err(self.mutex_err(off, "lock", e));
            }
        } else {
            self.brlock(ty, off, 1, true)?;
        }
        self.nest.push(NestLock { off, count: 1, ty });
        if self.needs_recovery() {
            return self.recover_under_first_lock(off, ty);
        }
        Ok(())
    }

    /// A transaction's recovery record was found right after taking the
    /// first chain lock: release it, replay the recovery and lock again.
    #[cold]
    #[inline(never)]
    fn recover_under_first_lock(&mut self, off: u64, ty: LockType) -> Result<()> {
        self.nest_unlock(off)?;
        self.lock_and_recover()?;
        self.lock_list(off, ty, true).map(|_| ())
    }

    #[cold]
    #[inline(never)]
    fn mutex_err(&self, off: u64, op: &str, e: std::io::Error) -> Error {
        Error::Lock {
            path: self.sh.path.clone(),
            offset: off,
            what: format!("mutex {op} failed: {e}"),
        }
    }

    #[inline]
    fn unlock_chain(&mut self, bucket: u32) -> Result<()> {
        let off = chain_lock_offset(bucket);
        if self.allrec.count == 0
            && self.nest.len() == 1
            && self.nest[0].off == off
            && self.nest[0].count == 1
            && !self.sh.nolock
        {
            // The only lock this handle holds.
            self.nest.clear();
            if let Some(area) = self.sh.mutex.as_ref() {
                return area
                    .unlock_chain(bucket)
                    .map_err(|e| self.mutex_err(off, "unlock", e));
            }
            // No other byte-range lock is held through this handle's own
            // descriptor (nest and allrecord are empty; everything else is
            // taken and released within one call), so a whole-file unlock
            // releases exactly this chain lock, and more cheaply.
            return sys::unlock_all(&self.file).map_err(|e| Error::Lock {
                path: self.sh.path.clone(),
                offset: off,
                what: format!("fcntl unlock failed: {e}"),
            });
        }
        self.unlock_list(off)
    }

    fn lock_freelist(&mut self) -> Result<()> {
        self.lock_list(FREELIST_LOCK, LockType::Write, true)
            .map(|_| ())
    }

    fn unlock_freelist(&mut self) -> Result<()> {
        self.unlock_list(FREELIST_LOCK)
    }

    /// libtdb's `tdb_chainlock_gradual`.
    fn chainlock_gradual(&self, ty: LockType, wait: bool, off: u64, len: u64) -> Result<bool> {
        if len <= 4 {
            return self.brlock(ty, off, len, wait);
        }
        if self.brlock(ty, off, len, false)? {
            return Ok(true);
        }
        if !self.chainlock_gradual(ty, wait, off, len / 2)? {
            return Ok(false);
        }
        if !self.chainlock_gradual(ty, wait, off + len / 2, len - len / 2)? {
            self.brunlock(off, len / 2)?;
            return Ok(false);
        }
        Ok(true)
    }

    /// Lock the whole database (libtdb's `tdb_allrecord_lock`).
    pub(crate) fn allrecord_lock(
        &mut self,
        ty: LockType,
        wait: bool,
        upgradable: bool,
    ) -> Result<bool> {
        if self.sh.read_only || self.traverse_read > 0 {
            return Err(Error::ReadOnly {
                path: self.sh.path.clone(),
            });
        }
        let lerr = |what: &str| Error::Lock {
            path: self.sh.path.clone(),
            offset: FREELIST_TOP as u64,
            what: what.into(),
        };
        if self.allrec.count > 0 && self.allrec.ty == ty {
            self.allrec.count += 1;
            return Ok(true);
        }
        if self.allrec.count > 0 {
            return Err(lerr("an allrecord lock of another type is held"));
        }
        if self.have_extra_locks() {
            return Err(lerr(
                "cannot take the allrecord lock while holding chain locks",
            ));
        }
        if upgradable && ty != LockType::Read {
            return Err(lerr("upgradable allrecord lock must be a read lock"));
        }
        let tail = chain_lock_offset(self.sh.hash_size);
        if !self.sh.nolock {
            if let Some(area) = self.sh.mutex.as_ref() {
                let kind = if ty == LockType::Read {
                    LockKind::Read
                } else {
                    LockKind::Write
                };
                match area.lock_all(kind, wait) {
                    Ok(_) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(false),
                    // This thread holds a chain mutex through another handle.
                    Err(e) if !wait && e.raw_os_error() == Some(libc::EDEADLK) => return Ok(false),
                    Err(e) => return Err(lerr(&format!("mutex allrecord lock failed: {e}"))),
                }
                if !self.brlock(ty, tail, 0, wait)? {
                    let _ = area.unlock_all();
                    return Ok(false);
                }
            } else {
                if !self.chainlock_gradual(
                    ty,
                    wait,
                    FREELIST_TOP as u64,
                    4 * self.sh.hash_size as u64,
                )? {
                    return Ok(false);
                }
                if !self.brlock(ty, tail, 0, wait)? {
                    self.brunlock(FREELIST_TOP as u64, 4 * self.sh.hash_size as u64)?;
                    return Ok(false);
                }
            }
        }
        self.allrec = AllRecord {
            count: 1,
            ty: if upgradable { LockType::Write } else { ty },
            upgradable,
        };
        if self.needs_recovery() {
            self.allrecord_unlock()?;
            self.lock_and_recover()?;
            return self.allrecord_lock(ty, wait, upgradable);
        }
        Ok(true)
    }

    pub(crate) fn allrecord_unlock(&mut self) -> Result<()> {
        if self.allrec.count == 0 {
            return Err(Error::Lock {
                path: self.sh.path.clone(),
                offset: FREELIST_TOP as u64,
                what: "allrecord unlock without lock".into(),
            });
        }
        if self.allrec.count > 1 {
            self.allrec.count -= 1;
            return Ok(());
        }
        self.allrec.count = 0;
        self.allrec.upgradable = false;
        if self.sh.nolock {
            return Ok(());
        }
        if let Some(area) = self.sh.mutex.as_ref() {
            area.unlock_all().map_err(|e| Error::Lock {
                path: self.sh.path.clone(),
                offset: FREELIST_TOP as u64,
                what: format!("mutex allrecord unlock failed: {e}"),
            })?;
            self.brunlock(chain_lock_offset(self.sh.hash_size), 0)
        } else {
            self.brunlock(FREELIST_TOP as u64, 0)
        }
    }

    /// Turn the upgradable read allrecord lock of a transaction into a
    /// write lock (commit).
    pub(crate) fn allrecord_upgrade(&mut self) -> Result<()> {
        if self.allrec.count != 1 || !self.allrec.upgradable {
            return Err(Error::Lock {
                path: self.sh.path.clone(),
                offset: FREELIST_TOP as u64,
                what: "allrecord upgrade without a single upgradable lock".into(),
            });
        }
        if !self.sh.nolock {
            if let Some(area) = self.sh.mutex.as_ref() {
                area.upgrade_all().map_err(|e| Error::Lock {
                    path: self.sh.path.clone(),
                    offset: FREELIST_TOP as u64,
                    what: format!("mutex allrecord upgrade failed: {e}"),
                })?;
                if let Err(e) = self.brlock(
                    LockType::Write,
                    chain_lock_offset(self.sh.hash_size),
                    0,
                    true,
                ) {
                    area.downgrade_all();
                    return Err(e);
                }
            } else {
                self.brlock(LockType::Write, FREELIST_TOP as u64, 0, true)?;
            }
        }
        self.allrec.ty = LockType::Write;
        self.allrec.upgradable = false;
        Ok(())
    }

    /// Is nobody (a libtdb traversal) holding a record lock at `off`, so
    /// that the dead record there may be freed? libtdb probes with a
    /// non-blocking write lock plus unlock; a lock test is equivalent and
    /// race-free here because record locks are only taken under the chain
    /// lock, which we hold.
    fn record_unlocked(&mut self, off: u32) -> Result<bool> {
        if self.allrec.count > 0 {
            return Ok(self.allrec.ty == LockType::Write);
        }
        if self.sh.nolock {
            return Ok(true);
        }
        sys::write_lock_conflicts(&self.file, off as u64, 1)
            .map(|busy| !busy)
            .map_err(|e| Error::Lock {
                path: self.sh.path.clone(),
                offset: off as u64,
                what: format!("record lock test failed: {e}"),
            })
    }

    // ---------------------------------------------------------- recovery hook

    /// Is there a valid (un-replayed) transaction recovery record?
    pub(crate) fn needs_recovery(&mut self) -> bool {
        let Some(head) = self.map.read_u32(OFF_RECOVERY as u64) else {
            return true;
        };
        if head == 0 {
            return false;
        }
        let moff = head as u64 + 20;
        match self.map.read_u32(moff) {
            Some(m) => m == TDB_RECOVERY_MAGIC,
            None => {
                if self.refresh_map().is_err() {
                    return true;
                }
                self.map
                    .read_u32(moff)
                    .map(|m| m == TDB_RECOVERY_MAGIC)
                    .unwrap_or(true)
            }
        }
    }

    /// libtdb's `tdb_lock_and_recover`.
    pub(crate) fn lock_and_recover(&mut self) -> Result<()> {
        self.brlock(LockType::Write, FREELIST_TOP as u64, 0, true)?;
        if let Err(e) = self.brlock(LockType::Write, OPEN_LOCK, 1, true) {
            let _ = self.brunlock(FREELIST_TOP as u64, 0);
            return Err(e);
        }
        let r = self.recover();
        let _ = self.brunlock(OPEN_LOCK, 1);
        let _ = self.brunlock(FREELIST_TOP as u64, 0);
        r
    }

    // ------------------------------------------------------------- seqnum

    fn increment_seqnum(&mut self) {
        if self.sh.tdb_flags & flags::SEQNUM == 0 {
            return;
        }
        if self.tx.is_some() {
            self.increment_seqnum_nonblock();
            return;
        }
        self.map.atomic_inc_u32(OFF_SEQNUM as u64);
    }

    pub(crate) fn increment_seqnum_nonblock(&mut self) {
        if self.sh.tdb_flags & flags::SEQNUM == 0 {
            return;
        }
        if let Ok(v) = self.read_u32(OFF_SEQNUM) {
            let _ = self.write_u32(OFF_SEQNUM, v.wrapping_add(1));
        }
    }

    /// The header's sequence number.
    pub fn seqnum(&mut self) -> Result<u32> {
        self.read_u32(OFF_SEQNUM)
    }

    /// Increment the sequence number (as `tdb_increment_seqnum_nonblock`,
    /// but atomically on the mapping).
    pub fn increment_seqnum_now(&mut self) -> Result<()> {
        if self.tx.is_some() {
            let v = self.read_u32(OFF_SEQNUM)?;
            return self.write_u32(OFF_SEQNUM, v.wrapping_add(1));
        }
        self.ensure(OFF_SEQNUM as u64, 4)?;
        if self.map.atomic_inc_u32(OFF_SEQNUM as u64) {
            Ok(())
        } else {
            Err(self.corrupt(OFF_SEQNUM as u64, "seqnum outside mapping"))
        }
    }

    // --------------------------------------------------------------- lookup

    /// Find a live record for `key` on chain `bucket` (chain locked).
    #[inline(always)]
    fn find(&mut self, key: &[u8], hash: u32, bucket: u32) -> Result<Option<(u32, Rec)>> {
        let mut rec_ptr = self.read_u32(hash_top(bucket))?;
        let mut walk = ChainWalk::new(rec_ptr);
        while rec_ptr != 0 {
            // The header read below misses the cache; start loading the
            // key/data lines after it at the same time instead of one miss
            // after another (the data's offset is only known from the header).
            self.map.prefetch(rec_ptr as u64 + 64);
            self.map.prefetch(rec_ptr as u64 + 128);
            let rec = self.read_chain_rec(rec_ptr)?;
            if !rec.is_dead()
                && rec.full_hash == hash
                && rec.key_len as usize == key.len()
                && self.key_eq(rec_ptr as u64 + REC_SIZE as u64, key)?
            {
                return Ok(Some((rec_ptr, rec)));
            }
            rec_ptr = rec.next;
            if rec_ptr == 0 {
                break;
            }
            walk.check(self, rec_ptr)?;
        }
        Ok(None)
    }

    /// Start loading what an operation on `key` will touch (its chain
    /// mutex, chain head and first record) without taking any lock. A
    /// caller with several requests queued can call this for the next key
    /// before serving the current one, so that the next key's cache misses
    /// overlap the current operation instead of following it. A hint only:
    /// nothing is read under the lock protocol, and a key of another
    /// partition is ignored.
    pub fn prefetch(&self, key: &[u8]) {
        let hash = self.sh.hash.hash(key);
        let bucket = hash % self.sh.hash_size;
        if !self.owns(bucket) {
            return;
        }
        if let Some(area) = &self.sh.mutex {
            area.prefetch_chain(bucket);
        }
        if let Some(first) = self.map.peek_u32(hash_top(bucket) as u64) {
            if first != 0 {
                self.map.prefetch_record(first);
            }
        }
    }

    /// Copy the value of `key` into `out` (cleared first). Returns false if
    /// the key does not exist. No allocation if `out` has capacity.
    pub fn fetch_into(&mut self, key: &[u8], out: &mut Vec<u8>) -> Result<bool> {
        let (hash, bucket) = self.bucket_checked(key)?;
        self.lock_chain(bucket, LockType::Read)?;
        let r = self.fetch_locked(key, hash, bucket, out);
        let u = self.unlock_chain(bucket);
        // As in `storev`: tags only on the hot path.
        if let (Ok(found), true) = (&r, u.is_ok()) {
            return Ok(*found);
        }
        u?;
        r
    }

    fn fetch_locked(
        &mut self,
        key: &[u8],
        hash: u32,
        bucket: u32,
        out: &mut Vec<u8>,
    ) -> Result<bool> {
        out.clear();
        match self.find(key, hash, bucket)? {
            None => Ok(false),
            Some((off, rec)) => {
                let doff = self.rec_data_off(off, &rec)?;
                self.append_bytes(doff, rec.data_len as usize, out)?;
                Ok(true)
            }
        }
    }

    /// The value of `key`, copied out of the file.
    pub fn fetch(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let mut out = Vec::new();
        if self.fetch_into(key, &mut out)? {
            Ok(Some(out))
        } else {
            Ok(None)
        }
    }

    /// Does `key` exist?
    pub fn exists(&mut self, key: &[u8]) -> Result<bool> {
        let (hash, bucket) = self.bucket_checked(key)?;
        self.lock_chain(bucket, LockType::Read)?;
        let r = self.find(key, hash, bucket).map(|f| f.is_some());
        self.unlock_chain(bucket)?;
        r
    }

    // ---------------------------------------------------------------- store

    fn check_writable(&self) -> Result<()> {
        if self.sh.read_only || self.traverse_read > 0 {
            return Err(Error::ReadOnly {
                path: self.sh.path.clone(),
            });
        }
        Ok(())
    }

    /// Store `data` under `key`.
    pub fn store(&mut self, key: &[u8], data: &[u8], flag: StoreFlag) -> Result<()> {
        self.storev(key, &[data], flag)
    }

    /// Store the concatenation of `parts` under `key` without building it
    /// first (libtdb's `tdb_storev`; e.g. ctdb header + user data).
    pub fn storev(&mut self, key: &[u8], parts: &[&[u8]], flag: StoreFlag) -> Result<()> {
        self.check_writable()?;
        let (hash, bucket) = self.bucket_checked(key)?;
        self.lock_chain(bucket, LockType::Write)?;
        let r = self.store_locked(key, parts, flag, hash, bucket);
        let u = self.unlock_chain(bucket);
        // Look at the results' tags only: moving a whole `Result` (with its
        // large error variant) through the stack costs a store-forwarding
        // stall on the hot path.
        if r.is_ok() && u.is_ok() {
            return Ok(());
        }
        if r.is_err() {
            r
        } else {
            u
        }
    }

    /// Compare the bytes at `off` with the concatenation of `parts`.
    fn parts_eq(&mut self, mut off: u64, parts: &[&[u8]]) -> Result<bool> {
        for p in parts {
            if !self.key_eq(off, p)? {
                return Ok(false);
            }
            off += p.len() as u64;
        }
        Ok(true)
    }

    fn write_parts(&mut self, mut off: u64, parts: &[&[u8]]) -> Result<()> {
        for p in parts {
            self.write(off, p)?;
            off += p.len() as u64;
        }
        Ok(())
    }

    fn store_locked(
        &mut self,
        key: &[u8],
        parts: &[&[u8]],
        flag: StoreFlag,
        hash: u32,
        bucket: u32,
    ) -> Result<()> {
        let dlen: u64 = parts.iter().map(|p| p.len() as u64).sum();
        let total = key.len() as u64 + dlen;
        if total > u32::MAX as u64 / 2 {
            return Err(Error::TooBig {
                path: self.sh.path.clone(),
                need: total,
            });
        }
        let existing = self.find(key, hash, bucket)?;
        match (flag, existing) {
            (StoreFlag::Insert, Some(_)) => return Err(Error::Exists),
            (StoreFlag::Modify, None) => return Err(Error::NotFound),
            (_, Some((off, mut rec))) => {
                let doff = self.rec_data_off(off, &rec)?;
                // Identical data: nothing to write.
                if rec.data_len as u64 == dlen && self.parts_eq(doff, parts)? {
                    self.increment_seqnum();
                    return Ok(());
                }
                if rec.rec_len as u64 >= total + 4 {
                    self.write_parts(doff, parts)?;
                    if rec.data_len as u64 != dlen {
                        rec.data_len = dlen as u32;
                        self.write_rec(off, &rec)?;
                    }
                    self.increment_seqnum();
                    return Ok(());
                }
                // Relocate: delete the old copy first (as libtdb). When it
                // goes straight to the free list, keep the free-list lock
                // for the allocation that follows (one lock pair, not two).
                rec.magic = TDB_DEAD_MAGIC;
                self.write_rec(off, &rec)?;
                self.increment_seqnum();
                if self.sh.max_dead == 0 {
                    self.lock_freelist()?;
                    let r = self
                        .trim_dead(bucket, 0)
                        .and_then(|_| self.allocate(bucket, total as u32));
                    let u = self.unlock_freelist();
                    let got = r?;
                    u?;
                    return self.finish_store(key, parts, dlen, hash, bucket, got);
                }
                self.trim_dead(bucket, self.sh.max_dead)?;
            }
            _ => {}
        }
        let got = self.allocate(bucket, total as u32)?;
        self.finish_store(key, parts, dlen, hash, bucket, got)
    }

    /// Write a new record into allocated space and link it at the head of
    /// its chain.
    fn finish_store(
        &mut self,
        key: &[u8],
        parts: &[&[u8]],
        dlen: u64,
        hash: u32,
        bucket: u32,
        (rec_ptr, mut rec): (u32, Rec),
    ) -> Result<()> {
        rec.next = self.read_u32(hash_top(bucket))?;
        rec.key_len = key.len() as u32;
        rec.data_len = dlen as u32;
        rec.full_hash = hash;
        rec.magic = TDB_MAGIC;
        self.write_rec(rec_ptr, &rec)?;
        let koff = rec_ptr as u64 + REC_SIZE as u64;
        self.write(koff, key)?;
        self.write_parts(koff + key.len() as u64, parts)?;
        self.write_u32(hash_top(bucket), rec_ptr)?;
        self.increment_seqnum();
        Ok(())
    }

    // --------------------------------------------------------------- delete

    /// Delete `key`; [`Error::NotFound`] if it does not exist.
    pub fn delete(&mut self, key: &[u8]) -> Result<()> {
        self.check_writable()?;
        let (hash, bucket) = self.bucket_checked(key)?;
        self.lock_chain(bucket, LockType::Write)?;
        let r = self.delete_locked(key, hash, bucket);
        let u = self.unlock_chain(bucket);
        // Look at the results' tags only: moving a whole `Result` (with its
        // large error variant) through the stack costs a store-forwarding
        // stall on the hot path.
        if r.is_ok() && u.is_ok() {
            return Ok(());
        }
        if r.is_err() {
            r
        } else {
            u
        }
    }

    fn delete_locked(&mut self, key: &[u8], hash: u32, bucket: u32) -> Result<()> {
        let Some((off, mut rec)) = self.find(key, hash, bucket)? else {
            return Err(Error::NotFound);
        };
        rec.magic = TDB_DEAD_MAGIC;
        self.write_rec(off, &rec)?;
        self.increment_seqnum();
        if self.sh.max_dead == 0
            && self.ncores > 1
            && self.tx.is_none()
            && self.allrec.count == 0
            && self.park_dead(bucket, off, rec)?
        {
            return Ok(());
        }
        self.trim_dead(bucket, self.sh.max_dead)
    }

    /// Partition delete without the shared free list: move the dead record
    /// `off` (on `bucket`, chain locked) to this partition's reserve chain,
    /// re-keyed as a reserve record, where the partition's next
    /// allocations find it. Cores then do not meet on the free-list lock per
    /// delete; the reserve is given back to the free list in batches once
    /// it holds more than [`RESERVE_MAX`] records. Returns false (nothing
    /// done) when the record is too small, a traversal holds it, or the
    /// reserve chain is busy.
    fn park_dead(&mut self, bucket: u32, off: u32, mut rec: Rec) -> Result<bool> {
        let Some((rb, rhash)) = self.reserve_chain() else {
            return Ok(false);
        };
        let klen = match &self.reserve {
            Some(Some(r)) => r.key.len() as u32,
            _ => return Ok(false),
        };
        if (rec.rec_len as u64) < klen as u64 + 4 || !self.record_unlocked(off)? {
            return Ok(false);
        }
        let roff = chain_lock_offset(rb);
        if rb != bucket && !self.lock_list(roff, LockType::Write, false)? {
            return Ok(false);
        }
        let r = (|| -> Result<bool> {
            // Unlink from `bucket`: find the pointer that points at `off`.
            let mut last = hash_top(bucket);
            let mut cur = self.read_u32(last)?;
            let mut walk = ChainWalk::new(cur);
            while cur != off {
                if cur == 0 {
                    return Err(self.corrupt(off as u64, "deleted record left its chain"));
                }
                last = cur;
                cur = self.read_chain_rec(cur)?.next;
                walk.check(self, cur)?;
            }
            self.write_u32(last, rec.next)?;
            rec.next = self.read_u32(hash_top(rb))?;
            rec.key_len = klen;
            rec.data_len = 0;
            rec.full_hash = rhash;
            rec.magic = TDB_DEAD_MAGIC;
            self.write_rec(off, &rec)?;
            // Borrow the key out of `self` for the write (no allocation).
            let res = self.reserve.take();
            let w = match &res {
                Some(Some(r)) => self.write(off as u64 + REC_SIZE as u64, &r.key),
                _ => Ok(()),
            };
            self.reserve = res;
            w?;
            self.write_u32(hash_top(rb), off)?;
            self.parked += 1;
            if self.parked > RESERVE_MAX {
                // Give half back to the free list under one lock.
                self.lock_freelist()?;
                let t = self.trim_dead(rb, RESERVE_MAX / 2);
                let u = self.unlock_freelist();
                t?;
                u?;
                self.parked = RESERVE_MAX / 2;
            }
            Ok(true)
        })();
        if rb != bucket {
            let u = self.unlock_list(roff);
            let v = r?;
            u?;
            return Ok(v);
        }
        r
    }

    /// Leave at most `max_dead` dead records on the chain; free the rest
    /// unless someone traverses them (libtdb's `tdb_trim_dead`).
    fn trim_dead(&mut self, bucket: u32, max_dead: u32) -> Result<()> {
        let mut last_ptr = hash_top(bucket);
        let mut walk = ChainWalk::new(last_ptr);
        let mut rec_ptr = self.read_u32(last_ptr)?;
        let mut locked_fl = false;
        let mut num_dead = 0u32;
        let r = (|| -> Result<()> {
            while rec_ptr != 0 {
                let rec = self.read_chain_rec(rec_ptr)?;
                let next = rec.next;
                let mut deleted = false;
                if rec.magic == TDB_DEAD_MAGIC {
                    num_dead += 1;
                    if num_dead > max_dead {
                        if !locked_fl {
                            self.lock_freelist()?;
                            locked_fl = true;
                        }
                        if self.record_unlocked(rec_ptr)? {
                            self.write_u32(last_ptr, rec.next)?;
                            deleted = true;
                            self.free(rec_ptr, rec)?;
                        }
                    }
                }
                if !deleted {
                    last_ptr = rec_ptr;
                    walk.check(self, next)?;
                } else {
                    walk.hop(self, next)?;
                }
                rec_ptr = next;
            }
            Ok(())
        })();
        if locked_fl {
            self.unlock_freelist()?;
        }
        r
    }

    // ------------------------------------------------------------ free list

    fn update_tailer(&mut self, off: u32, rec: &Rec) -> Result<()> {
        let total = REC_SIZE as u64 + rec.rec_len as u64;
        if total > u32::MAX as u64 {
            return Err(self.corrupt(off as u64, "record length overflow"));
        }
        self.write_u32((off as u64 + total - 4) as u32, total as u32)
    }

    /// The record immediately left of `rec_ptr`, if its tailer is sane.
    fn record_on_left(&mut self, rec_ptr: u32) -> Option<(u32, Rec)> {
        let ds = data_start(self.sh.hash_size);
        let lp = rec_ptr.checked_sub(4)?;
        if lp as u64 <= ds {
            return None;
        }
        let left_size = self.read_u32(lp).ok()?;
        if left_size == 0 || left_size == TDB_PAD_U32 || left_size > rec_ptr {
            return None;
        }
        let left_ptr = rec_ptr - left_size;
        if (left_ptr as u64) < ds {
            return None;
        }
        let rec = self.read_rec_raw(left_ptr).ok()?;
        Some((left_ptr, rec))
    }

    /// Merge `rec` at `rec_ptr` into a free left neighbour. Returns the
    /// enlarged left record if merged.
    fn merge_left(&mut self, rec_ptr: u32, rec: &Rec) -> Result<Option<(u32, Rec)>> {
        let Some((left_ptr, mut left)) = self.record_on_left(rec_ptr) else {
            return Ok(None);
        };
        if left.magic != TDB_FREE_MAGIC {
            return Ok(None);
        }
        let grown = left.rec_len as u64 + REC_SIZE as u64 + rec.rec_len as u64;
        if grown > u32::MAX as u64 {
            return Err(self.corrupt(left_ptr as u64, "free record merge overflows the file"));
        }
        self.ensure(left_ptr as u64, REC_SIZE as u64 + grown)?;
        left.rec_len = grown as u32;
        self.write_rec(left_ptr, &left)?;
        self.update_tailer(left_ptr, &left)?;
        Ok(Some((left_ptr, left)))
    }

    /// Put a record on the free list (libtdb's `tdb_free`).
    pub(crate) fn free(&mut self, off: u32, mut rec: Rec) -> Result<()> {
        self.lock_freelist()?;
        let r = (|| -> Result<()> {
            self.update_tailer(off, &rec)?;
            if self.merge_left(off, &rec)?.is_some() {
                return Ok(());
            }
            rec.magic = TDB_FREE_MAGIC;
            rec.next = self.read_u32(FREELIST_TOP)?;
            self.write_rec(off, &rec)?;
            self.write_u32(FREELIST_TOP, off)
        })();
        let u = self.unlock_freelist();
        r.and(u)
    }

    /// Read a free-list entry (libtdb's `tdb_rec_free_read`).
    fn read_free_rec(&mut self, off: u32) -> Result<Rec> {
        let mut rec = self.read_rec_raw(off)?;
        if rec.magic == TDB_MAGIC {
            // Interrupted delete: libtdb repairs this in place.
            rec.magic = TDB_FREE_MAGIC;
            self.write_rec(off, &rec)?;
        }
        if rec.magic != TDB_FREE_MAGIC {
            return Err(self.corrupt(
                off as u64,
                format!("free list entry has magic 0x{:08x}", rec.magic),
            ));
        }
        if rec.next != 0 {
            self.ensure(rec.next as u64, REC_SIZE as u64)?;
        }
        // `ensure` re-reads the file size first: another process may have
        // grown the file and merged the new space into this record.
        self.ensure(off as u64, REC_SIZE as u64 + rec.rec_len as u64)?;
        Ok(rec)
    }

    /// Carve `length` bytes out of free record `rec_ptr` (libtdb's
    /// `tdb_allocate_ofs`: take it whole or split from the end).
    fn allocate_ofs(
        &mut self,
        length: u32,
        rec_ptr: u32,
        mut rec: Rec,
        last_ptr: u32,
    ) -> Result<(u32, Rec)> {
        if (rec.rec_len as u64) < length as u64 + MIN_REC_SIZE as u64 {
            self.write_u32(last_ptr, rec.next)?;
            rec.magic = TDB_MAGIC;
            self.write_rec(rec_ptr, &rec)?;
            return Ok((rec_ptr, rec));
        }
        rec.rec_len -= length + REC_SIZE;
        self.write_rec(rec_ptr, &rec)?;
        self.update_tailer(rec_ptr, &rec)?;
        let new_ptr = rec_ptr + REC_SIZE + rec.rec_len;
        let nrec = Rec {
            rec_len: length,
            magic: TDB_MAGIC,
            ..Rec::default()
        };
        self.write_rec(new_ptr, &nrec)?;
        self.update_tailer(new_ptr, &nrec)?;
        Ok((new_ptr, nrec))
    }

    /// Best-fit allocation from the free list, expanding the file when
    /// nothing fits (free-list lock held).
    fn allocate_from_freelist(&mut self, length: u32) -> Result<(u32, Rec)> {
        let length = (length as f64 * 1.25) as u64 + 4;
        let length = align4(length);
        if length > u32::MAX as u64 - 2 * REC_SIZE as u64 {
            return Err(Error::TooBig {
                path: self.sh.path.clone(),
                need: length,
            });
        }
        let length = length as u32;
        let mut expansions = 0;
        loop {
            let mut merge_created_candidate = false;
            let mut last_ptr = FREELIST_TOP;
            let mut rec_ptr = self.read_u32(FREELIST_TOP)?;
            let mut modified = false;
            let mut walk = ChainWalk::new(rec_ptr);
            let mut best: Option<(u32, u32, u32)> = None; // (ptr, last, len)
            let mut multiplier: f32 = 1.0;
            while rec_ptr != 0 {
                let rec = self.read_free_rec(rec_ptr)?;
                if let Some((left_ptr, left)) = self.merge_left(rec_ptr, &rec)? {
                    rec_ptr = rec.next;
                    self.write_u32(last_ptr, rec.next)?;
                    if let Some(b) = best.as_mut() {
                        if b.0 == left_ptr {
                            b.2 = left.rec_len;
                        }
                    }
                    if left.rec_len > length {
                        merge_created_candidate = true;
                    }
                    modified = true;
                    walk.hop(self, rec_ptr)?;
                    continue;
                }
                if rec.rec_len >= length && !matches!(best, Some(b) if b.2 <= rec.rec_len) {
                    best = Some((rec_ptr, last_ptr, rec.rec_len));
                }
                last_ptr = rec_ptr;
                rec_ptr = rec.next;
                if !modified {
                    walk.check(self, rec_ptr)?;
                } else {
                    walk.hop(self, rec_ptr)?;
                }
                if let Some(b) = best {
                    if (b.2 as f32) < length as f32 * multiplier {
                        break;
                    }
                }
                multiplier *= 1.05;
            }
            if let Some((ptr, last, _)) = best {
                let rec = self.read_free_rec(ptr)?;
                return self.allocate_ofs(length, ptr, rec, last);
            }
            if merge_created_candidate {
                continue;
            }
            expansions += 1;
            if expansions > 3 {
                return Err(self.corrupt(
                    FREELIST_TOP as u64,
                    "no free space after expanding the file",
                ));
            }
            self.expand(length + REC_SIZE)?;
        }
    }

    /// Best-fit dead record on `bucket` with room for `length` (+ tailer).
    ///
    /// With `good_enough`, stop at the first record that fits without
    /// wasting more than its own need again (the partition reserve, whose
    /// records come in the workload's sizes: no need to read them all).
    fn find_dead(
        &mut self,
        bucket: u32,
        length: u32,
        good_enough: bool,
    ) -> Result<Option<(u32, Rec, u32)>> {
        let need = length as u64 + 4;
        let mut last_ptr = hash_top(bucket);
        let mut rec_ptr = self.read_u32(last_ptr)?;
        let mut walk = ChainWalk::new(rec_ptr);
        let mut best: Option<(u32, Rec, u32)> = None;
        while rec_ptr != 0 {
            let rec = self.read_chain_rec(rec_ptr)?;
            if rec.is_dead()
                && rec.rec_len as u64 >= need
                && !matches!(best, Some(b) if b.1.rec_len <= rec.rec_len)
            {
                best = Some((rec_ptr, rec, last_ptr));
                if good_enough && rec.rec_len as u64 <= 2 * need {
                    break;
                }
            }
            last_ptr = rec_ptr;
            rec_ptr = rec.next;
            walk.check(self, rec_ptr)?;
        }
        Ok(best)
    }

    /// The chain holding this partition's reserve and the key its dead
    /// reserve records carry (a key hashing to that chain, so the records
    /// are valid dead records for libtdb and `tdb_check`).
    fn reserve_chain(&mut self) -> Option<(u32, u32)> {
        if let Some(r) = &self.reserve {
            return r.as_ref().map(|r| (r.bucket, r.hash));
        }
        let mut found = None;
        for i in 0..(256 * self.ncores as u32) {
            let key = format!("\0ctdb-engine-reserve-{}-{i}", self.core).into_bytes();
            let hash = self.sh.hash.hash(&key);
            let bucket = hash % self.sh.hash_size;
            if self.owns(bucket) {
                found = Some(Reserve { key, hash, bucket });
                break;
            }
        }
        let r = found.as_ref().map(|r| (r.bucket, r.hash));
        self.reserve = Some(found);
        r
    }

    /// Allocate from this partition's reserve of dead records, refilling it
    /// in batches from the free list, so that cores rarely meet on the
    /// free-list lock. Returns None if the reserve chain is busy.
    fn alloc_from_reserve(&mut self, bucket: u32, length: u32) -> Result<Option<(u32, Rec)>> {
        let Some((rb, rhash)) = self.reserve_chain() else {
            return Ok(None);
        };
        let roff = chain_lock_offset(rb);
        if rb != bucket && !self.lock_list(roff, LockType::Write, false)? {
            return Ok(None);
        }
        let r = (|| -> Result<Option<(u32, Rec)>> {
            if let Some((ptr, rec, last)) = self.find_dead(rb, length, true)? {
                self.write_u32(last, rec.next)?;
                return Ok(Some((ptr, rec)));
            }
            self.lock_freelist()?;
            let r2 = (|| -> Result<(u32, Rec)> {
                if rb != bucket {
                    self.trim_dead(bucket, 0)?;
                }
                if self.count_dead(rb)? > RESERVE_MAX {
                    self.trim_dead(rb, 0)?;
                    self.parked = 0;
                }
                let got = self.allocate_from_freelist(length)?;
                let key = match &self.reserve {
                    Some(Some(r)) => r.key.clone(),
                    _ => return Ok(got),
                };
                let rlen = length.max(64);
                for _ in 0..RESERVE_BATCH {
                    // The reserve is optional: stop refilling rather than
                    // fail the store (e.g. near the 4 GiB limit).
                    let Ok((p, mut rec)) = self.allocate_from_freelist(rlen) else {
                        break;
                    };
                    rec.next = self.read_u32(hash_top(rb))?;
                    rec.key_len = key.len() as u32;
                    rec.data_len = 0;
                    rec.full_hash = rhash;
                    rec.magic = TDB_DEAD_MAGIC;
                    self.write_rec(p, &rec)?;
                    self.write(p as u64 + REC_SIZE as u64, &key)?;
                    self.write_u32(hash_top(rb), p)?;
                }
                Ok(got)
            })();
            let u = self.unlock_freelist();
            let v = r2?;
            u?;
            Ok(Some(v))
        })();
        if rb != bucket {
            let u = self.unlock_list(roff);
            let v = r?;
            u?;
            return Ok(v);
        }
        r
    }

    fn count_dead(&mut self, bucket: u32) -> Result<u32> {
        let mut n = 0;
        let mut off = self.read_u32(hash_top(bucket))?;
        let mut walk = ChainWalk::new(off);
        while off != 0 {
            let rec = self.read_chain_rec(off)?;
            if rec.is_dead() {
                n += 1;
            }
            off = rec.next;
            walk.check(self, off)?;
        }
        Ok(n)
    }

    /// Get room for `length` bytes of key+data (chain `bucket` locked).
    fn allocate(&mut self, bucket: u32, length: u32) -> Result<(u32, Rec)> {
        if self.sh.max_dead > 0 {
            if let Some((ptr, rec, last)) = self.find_dead(bucket, length, false)? {
                // Reuse a dead record of our own chain: no free-list lock.
                self.write_u32(last, rec.next)?;
                return Ok((ptr, rec));
            }
        }
        if self.ncores > 1 && self.tx.is_none() {
            if let Some(got) = self.alloc_from_reserve(bucket, length)? {
                return Ok(got);
            }
        }
        self.lock_freelist()?;
        let r = (|| {
            self.trim_dead(bucket, 0)?;
            self.allocate_from_freelist(length)
        })();
        let u = self.unlock_freelist();
        let v = r?;
        u?;
        Ok(v)
    }

    /// Grow the file by at least `size` bytes (libtdb's `tdb_expand`).
    pub(crate) fn expand(&mut self, size: u32) -> Result<()> {
        self.lock_freelist()?;
        let r = (|| -> Result<()> {
            if self.tx.is_none() {
                self.refresh_map()?;
            }
            let map_size = self.map_size() as u32;
            let add = expand_adjust(map_size, size, self.sh.page_size);
            let new_size = map_size as u64 + add as u64;
            if new_size > u32::MAX as u64 || add < REC_SIZE + 4 {
                return Err(Error::TooBig {
                    path: self.sh.path.clone(),
                    need: map_size as u64 + size as u64,
                });
            }
            if let Some(tx) = self.tx.as_mut() {
                tx.size = new_size;
            } else {
                sys::allocate(&self.file, self.sh.hdr_ofs + map_size as u64, add as u64)
                    .map_err(|e| self.io_err("grow file", e))?;
                self.refresh_map()?;
                if self.map.len() < new_size {
                    return Err(self.corrupt(map_size as u64, "file did not grow"));
                }
            }
            let rec = Rec {
                rec_len: add - REC_SIZE,
                ..Rec::default()
            };
            self.free(map_size, rec)
        })();
        let u = self.unlock_freelist();
        r.and(u)
    }

    // ------------------------------------------------------------ chainlock

    /// Write-lock the chain of `key` (smbd-style fetch-lock). Nested calls
    /// on this handle count; store/fetch/delete of keys on the chain work
    /// while it is held.
    pub fn chainlock(&mut self, key: &[u8]) -> Result<()> {
        let (_, bucket) = self.bucket_checked(key)?;
        self.lock_chain(bucket, LockType::Write)
    }

    /// Non-blocking [`CoreStore::chainlock`]; false if busy.
    pub fn chainlock_nonblock(&mut self, key: &[u8]) -> Result<bool> {
        let (_, bucket) = self.bucket_checked(key)?;
        self.lock_list(chain_lock_offset(bucket), LockType::Write, false)
    }

    /// A waiter on the lock of `key`'s chain, for another thread: see
    /// [`ChainWaiter`].
    pub fn chain_waiter(&self, key: &[u8]) -> ChainWaiter {
        ChainWaiter {
            sh: self.sh.clone(),
            bucket: self.chain_of(key),
        }
    }

    /// Release a [`CoreStore::chainlock`].
    pub fn chainunlock(&mut self, key: &[u8]) -> Result<()> {
        let (_, bucket) = self.bucket_checked(key)?;
        self.unlock_chain(bucket)
    }

    /// smbd-style fetch-lock: write-lock the chain of `key` and return a
    /// guard through which the record can be read and replaced; the lock is
    /// released when the guard is dropped.
    pub fn lock_record(&mut self, key: &[u8]) -> Result<RecordGuard<'_>> {
        let (_, bucket) = self.bucket_checked(key)?;
        self.lock_chain(bucket, LockType::Write)?;
        Ok(RecordGuard {
            st: self,
            key: key.to_vec(),
            bucket,
        })
    }

    /// Read-lock the chain of `key`.
    pub fn chainlock_read(&mut self, key: &[u8]) -> Result<()> {
        let (_, bucket) = self.bucket_checked(key)?;
        self.lock_chain(bucket, LockType::Read)
    }

    /// Write-lock the whole database (`tdb_lockall`); needs all chains.
    pub fn lockall(&mut self) -> Result<()> {
        self.need_all("lockall")?;
        self.allrecord_lock(LockType::Write, true, false)
            .map(|_| ())
    }

    /// Non-blocking [`CoreStore::lockall`]; false if busy.
    pub fn lockall_nonblock(&mut self) -> Result<bool> {
        self.need_all("lockall")?;
        self.allrecord_lock(LockType::Write, false, false)
    }

    /// Release [`CoreStore::lockall`].
    pub fn unlockall(&mut self) -> Result<()> {
        self.allrecord_unlock()
    }

    pub(crate) fn need_all(&self, op: &'static str) -> Result<()> {
        if self.ncores != 1 {
            return Err(Error::NeedsAllChains { op });
        }
        Ok(())
    }

    // ------------------------------------------------------------- traverse

    /// The chains `[start, end)` this handle owns.
    fn own_chains(&self) -> (u32, u32) {
        partition_chains(self.core, self.ncores, self.sh.hash_size)
    }

    /// Copy every live record of chain `list` into `buf` (entries as
    /// `(start, key_len, data_len)`), under the chain lock.
    fn snapshot_chain(
        &mut self,
        list: u32,
        ty: LockType,
        buf: &mut Vec<u8>,
        entries: &mut Vec<(usize, usize, usize)>,
    ) -> Result<()> {
        buf.clear();
        entries.clear();
        self.lock_chain(list, ty)?;
        let r = (|| -> Result<()> {
            let mut off = self.read_u32(hash_top(list))?;
            let mut walk = ChainWalk::new(off);
            while off != 0 {
                let rec = self.read_chain_rec(off)?;
                if !rec.is_dead() {
                    self.rec_data_off(off, &rec)?;
                    let start = buf.len();
                    let n = rec.key_len as usize + rec.data_len as usize;
                    self.append_bytes(off as u64 + REC_SIZE as u64, n, buf)?;
                    entries.push((start, rec.key_len as usize, rec.data_len as usize));
                }
                off = rec.next;
                walk.check(self, off)?;
            }
            Ok(())
        })();
        let u = self.unlock_chain(list);
        r.and(u)
    }

    /// Traverse this handle's chains. Each chain is copied under its lock
    /// and the callbacks run after the lock is dropped, so a chain costs one
    /// lock/unlock pair instead of libtdb's chain+record lock dance per
    /// record, and no record locks are needed: the callback works on copies
    /// and may store or delete anything. Records added to a chain already
    /// visited are not seen (libtdb may miss them too).
    fn traverse_internal<F>(&mut self, ty: LockType, f: &mut F) -> Result<u64>
    where
        F: FnMut(&mut CoreStore, &[u8], &[u8]) -> Result<Walk>,
    {
        let (first, end) = self.own_chains();
        let mut list = first;
        let mut count = 0u64;
        let mut buf: Vec<u8> = Vec::new();
        let mut entries: Vec<(usize, usize, usize)> = Vec::new();
        while list < end {
            // Unlocked peek to skip empty chains; never for the first chain,
            // so at least one lock is taken (memory coherence, as libtdb).
            if list != first
                && self.tx.is_none()
                && self.map.read_u32(hash_top(list) as u64) == Some(0)
            {
                list += 1;
                continue;
            }
            self.snapshot_chain(list, ty, &mut buf, &mut entries)?;
            for &(start, k, d) in entries.iter() {
                count += 1;
                if f(self, &buf[start..start + k], &buf[start + k..start + k + d])? == Walk::Stop {
                    return Ok(count);
                }
            }
            list += 1;
        }
        Ok(count)
    }

    /// Read traverse over this handle's chains: the callback sees each live
    /// record (copied); writes from inside it fail with
    /// [`Error::ReadOnly`]. Returns the number of records visited.
    pub fn traverse_read<F>(&mut self, mut f: F) -> Result<u64>
    where
        F: FnMut(&[u8], &[u8]) -> Walk,
    {
        self.traverse_read += 1;
        let r = self.traverse_internal(
            LockType::Read,
            &mut |_: &mut CoreStore, k: &[u8], d: &[u8]| Ok(f(k, d)),
        );
        self.traverse_read -= 1;
        r
    }

    /// Write traverse over this handle's chains: the callback gets the
    /// handle and may store or delete (including the current record, which
    /// then stays as a dead record until no traversal holds it).
    pub fn traverse<F>(&mut self, mut f: F) -> Result<u64>
    where
        F: FnMut(&mut CoreStore, &[u8], &[u8]) -> Result<Walk>,
    {
        if self.traverse_read > 0 || self.sh.read_only {
            return Err(Error::ReadOnly {
                path: self.sh.path.clone(),
            });
        }
        // libtdb takes the transaction lock (write) to exclude transactions;
        // partitions share it as readers so cores do not serialise.
        let ty = if self.ncores == 1 {
            LockType::Write
        } else {
            LockType::Read
        };
        let wait = self.allrec.count == 0;
        let in_tx = self.tx.is_some();
        if !in_tx && !self.nest_lock(TRANSACTION_LOCK, ty, wait)? {
            return Err(Error::Lock {
                path: self.sh.path.clone(),
                offset: TRANSACTION_LOCK,
                what: "transaction lock busy".into(),
            });
        }
        let r = self.traverse_internal(LockType::Write, &mut f);
        if !in_tx {
            self.nest_unlock(TRANSACTION_LOCK)?;
        }
        r
    }

    /// Number of live records on this handle's chains.
    pub fn count(&mut self) -> Result<u64> {
        self.traverse_read(|_, _| Walk::Continue)
    }

    /// All live (key, value) pairs of this handle's chains.
    pub fn entries(&mut self) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let mut v = Vec::new();
        self.traverse_read(|k, d| {
            v.push((k.to_vec(), d.to_vec()));
            Walk::Continue
        })?;
        Ok(v)
    }

    // ----------------------------------------------------------- free list

    /// Number of entries on the free list (libtdb's `tdb_freelist_size`;
    /// ctdbd's vacuuming repacks when it grows too long).
    pub fn freelist_size(&mut self) -> Result<u64> {
        self.lock_freelist()?;
        let r = (|| -> Result<u64> {
            let mut n = 0u64;
            let mut off = self.read_u32(FREELIST_TOP)?;
            let mut walk = ChainWalk::new(off);
            while off != 0 {
                let rec = self.read_rec_raw(off)?;
                n += 1;
                off = rec.next;
                walk.check(self, off)?;
            }
            Ok(n)
        })();
        let u = self.unlock_freelist();
        let n = r?;
        u?;
        Ok(n)
    }

    /// Rewrite the database compactly inside a transaction (libtdb's
    /// `tdb_repack`): copy out every record, wipe, store them back. Needs
    /// a handle owning all chains.
    pub fn repack(&mut self) -> Result<()> {
        self.need_all("repack")?;
        self.transaction_start()?;
        let r = (|| -> Result<()> {
            let all = self.entries()?;
            self.wipe()?;
            for (k, v) in &all {
                self.store(k, v, StoreFlag::Insert)?;
            }
            Ok(())
        })();
        match r {
            Ok(()) => self.transaction_commit(),
            Err(e) => {
                let _ = self.transaction_cancel();
                Err(e)
            }
        }
    }

    // ----------------------------------------------------------------- wipe

    fn free_region(&mut self, off: u64, len: u64) -> Result<()> {
        if len <= REC_SIZE as u64 {
            return Ok(());
        }
        self.ensure(off, len)?;
        let rec = Rec {
            rec_len: (len - REC_SIZE as u64) as u32,
            ..Rec::default()
        };
        self.free(off as u32, rec)
    }

    /// Delete every record (libtdb's `tdb_wipe_all`), keeping the
    /// transaction recovery area. Needs a handle owning all chains.
    pub fn wipe(&mut self) -> Result<()> {
        self.need_all("wipe")?;
        self.check_writable()?;
        self.allrecord_lock(LockType::Write, true, false)?;
        let r = (|| -> Result<()> {
            if self.tx.is_none() {
                self.refresh_map()?;
            }
            let rhead = self.read_u32(OFF_RECOVERY)?;
            let mut rsize = 0u64;
            if rhead != 0 {
                let rec = self.read_rec_raw(rhead)?;
                rsize = rec.rec_len as u64 + REC_SIZE as u64;
            }
            let zeros = vec![0u8; 4 * (self.sh.hash_size as usize + 1)];
            self.write(FREELIST_TOP as u64, &zeros)?;
            let ds = data_start(self.sh.hash_size);
            let ms = self.map_size();
            if rsize == 0 {
                self.free_region(ds, ms.saturating_sub(ds))?;
            } else {
                self.free_region(ds, (rhead as u64).saturating_sub(ds))?;
                self.free_region(
                    rhead as u64 + rsize,
                    ms.saturating_sub(rhead as u64 + rsize),
                )?;
            }
            self.increment_seqnum_nonblock();
            Ok(())
        })();
        let u = self.allrecord_unlock();
        r.and(u)
    }
}

impl Drop for CoreStore {
    /// Cancel an open transaction and release every lock still held: OFD
    /// locks would go with the descriptor anyway, but chain mutexes belong
    /// to the thread and must be unlocked explicitly.
    fn drop(&mut self) {
        if self.tx.is_some() {
            let _ = self.transaction_cancel();
        }
        if self.allrec.count > 0 {
            self.allrec.count = 1;
            let _ = self.allrecord_unlock();
        }
        while let Some(l) = self.nest.pop() {
            let _ = self.raw_unlock(l.off);
        }
    }
}

/// A held chain write lock on one key (see [`CoreStore::lock_record`]).
pub struct RecordGuard<'a> {
    st: &'a mut CoreStore,
    key: Vec<u8>,
    bucket: u32,
}

impl RecordGuard<'_> {
    /// The locked key.
    pub fn key(&self) -> &[u8] {
        &self.key
    }

    /// Current value of the locked key.
    pub fn fetch(&mut self) -> Result<Option<Vec<u8>>> {
        self.st.fetch(&self.key)
    }

    /// Replace the value of the locked key.
    pub fn store(&mut self, data: &[u8]) -> Result<()> {
        self.st.store(&self.key, data, StoreFlag::Replace)
    }

    /// Replace the value of the locked key with the concatenation of `parts`.
    pub fn storev(&mut self, parts: &[&[u8]]) -> Result<()> {
        self.st.storev(&self.key, parts, StoreFlag::Replace)
    }

    /// Delete the locked key ([`Error::NotFound`] if absent).
    pub fn delete(&mut self) -> Result<()> {
        self.st.delete(&self.key)
    }
}

impl Drop for RecordGuard<'_> {
    fn drop(&mut self) {
        let _ = self.st.unlock_chain(self.bucket);
    }
}

/// Waits for one hash chain's lock to be free, on any thread.
///
/// A server that finds a chain busy (smbd holds the record) should try again
/// as soon as the holder lets go, not after a guessed pause. [`wait`]
/// blocks its thread until the chain's write lock can be taken, then
/// releases it at once: it reads and writes nothing, so it does not break
/// the rule that only the owning core touches a chain's records, and it can
/// be sent to a thread that may block (`Send`). The caller still takes the
/// lock through its own handle afterwards and may find it busy again.
///
/// [`wait`]: ChainWaiter::wait
pub struct ChainWaiter {
    sh: Arc<Shared>,
    bucket: u32,
}

impl ChainWaiter {
    /// Block until the chain's write lock could be taken (in the file's
    /// locking mode: robust mutex or fcntl lock), then let it go.
    pub fn wait(&self) -> Result<()> {
        if self.sh.nolock || self.sh.read_only {
            return Ok(());
        }
        let off = chain_lock_offset(self.bucket);
        let err = |what: String| Error::Lock {
            path: self.sh.path.clone(),
            offset: off,
            what,
        };
        if let Some(area) = self.sh.mutex.as_ref() {
            // Blocking, no other chain held: waits out an allrecord lock too.
            area.lock_chain(self.bucket, LockKind::Write, true, false)
                .map_err(|e| err(format!("mutex wait failed: {e}")))?;
            return area
                .unlock_chain(self.bucket)
                .map_err(|e| err(format!("mutex unlock after wait failed: {e}")));
        }
        // Through the database's own descriptor, which holds only the
        // ACTIVE_LOCK byte: lock and unlock exactly the chain's byte, so that
        // lock stays. Several waiters share the descriptor's (one) owner and
        // never block each other; each only needs to see the chain free.
        sys::lock(&self.sh.main, LockType::Write, off, 1, true)
            .map_err(|e| err(format!("fcntl wait failed: {e}")))?;
        sys::unlock(&self.sh.main, off, 1)
            .map_err(|e| err(format!("fcntl unlock after wait failed: {e}")))
    }
}
