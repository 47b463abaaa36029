//! Transactions with libtdb's crash-safe commit protocol.
//!
//! While a transaction is open every write goes to a private overlay of
//! 4 KiB blocks; reads see the overlay first. Commit writes a recovery record
//! (the *old* contents of every block about to change, as
//! `(offset, length, bytes)` entries) into the recovery area named by the
//! header's `recovery_start`, syncs, sets its magic to `TDB_RECOVERY_MAGIC`,
//! syncs, writes the blocks, syncs and clears the magic again. A crash at any
//! point leaves either no valid recovery record (old or new state complete)
//! or a valid one, which any opener — libtdb or this engine — replays to get
//! the state before the transaction. The on-disk record is byte-compatible
//! with libtdb's `transaction.c`.

use std::collections::HashMap;

use crate::error::{Error, Result};
use crate::format::*;
use crate::store::CoreStore;
use crate::sys::map::Map;
use crate::sys::{self, LockType};

const BLOCK: u64 = 4096;

pub(crate) struct Tx {
    blocks: HashMap<u64, Box<[u8]>>,
    /// Logical size when the transaction started (or after the recovery
    /// area was appended during commit).
    pub old_size: u64,
    /// Current logical size inside the transaction.
    pub size: u64,
    magic_offset: u64,
}

impl Tx {
    fn new(size: u64) -> Tx {
        Tx {
            blocks: HashMap::new(),
            old_size: size,
            size,
            magic_offset: 0,
        }
    }

    /// Overlay read; the caller has checked `off + buf.len() <= size`.
    pub(crate) fn read(&self, map: &Map, off: u64, buf: &mut [u8]) {
        let mut pos = 0usize;
        while pos < buf.len() {
            let o = off + pos as u64;
            let bi = o / BLOCK;
            let bo = (o % BLOCK) as usize;
            let n = (BLOCK as usize - bo).min(buf.len() - pos);
            let dst = &mut buf[pos..pos + n];
            if let Some(b) = self.blocks.get(&bi) {
                dst.copy_from_slice(&b[bo..bo + n]);
            } else {
                read_base(map, o, dst);
            }
            pos += n;
        }
    }

    /// Overlay write; the caller has checked `off + buf.len() <= size`.
    pub(crate) fn write(&mut self, map: &Map, off: u64, buf: &[u8]) {
        let mut pos = 0usize;
        while pos < buf.len() {
            let o = off + pos as u64;
            let bi = o / BLOCK;
            let bo = (o % BLOCK) as usize;
            let n = (BLOCK as usize - bo).min(buf.len() - pos);
            let b = self.blocks.entry(bi).or_insert_with(|| {
                let mut v = vec![0u8; BLOCK as usize].into_boxed_slice();
                read_base(map, bi * BLOCK, &mut v);
                v
            });
            b[bo..bo + n].copy_from_slice(&buf[pos..pos + n]);
            pos += n;
        }
    }

    /// Write only into blocks already in the overlay (keeps the overlay
    /// consistent with direct writes made during commit).
    fn write_existing(&mut self, off: u64, buf: &[u8]) {
        let mut pos = 0usize;
        while pos < buf.len() {
            let o = off + pos as u64;
            let bi = o / BLOCK;
            let bo = (o % BLOCK) as usize;
            let n = (BLOCK as usize - bo).min(buf.len() - pos);
            if let Some(b) = self.blocks.get_mut(&bi) {
                b[bo..bo + n].copy_from_slice(&buf[pos..pos + n]);
            }
            pos += n;
        }
    }

    fn recovery_size(&self, orig_old: u64) -> u64 {
        let mut s = 4u64;
        for &bi in self.blocks.keys() {
            let off = bi * BLOCK;
            if off < orig_old {
                s += 8 + BLOCK.min(orig_old - off);
            }
        }
        s
    }
}

/// Bytes of the file as they are on disk; zero beyond the mapping.
fn read_base(map: &Map, off: u64, dst: &mut [u8]) {
    let mlen = map.len();
    let avail = if off >= mlen {
        0
    } else {
        ((mlen - off) as usize).min(dst.len())
    };
    if avail > 0 && !map.read(off, &mut dst[..avail]) {
        dst[..avail].fill(0);
    }
    dst[avail..].fill(0);
}

impl CoreStore {
    /// True while a transaction is open on this handle.
    pub fn transaction_active(&self) -> bool {
        self.tx.is_some()
    }

    /// Start a transaction: takes the transaction lock and an upgradable
    /// read allrecord lock, as libtdb. Nesting is refused (CTDB opens with
    /// TDB_DISALLOW_NESTING). Needs a handle owning all chains.
    pub fn transaction_start(&mut self) -> Result<()> {
        self.transaction_start_inner(true).map(|_| ())
    }

    /// Like [`CoreStore::transaction_start`] but never waits: returns
    /// `Ok(false)` if another transaction or lock holder is in the way
    /// (libtdb's `tdb_transaction_start_nonblock`).
    pub fn transaction_start_nonblock(&mut self) -> Result<bool> {
        self.transaction_start_inner(false)
    }

    fn transaction_start_inner(&mut self, wait: bool) -> Result<bool> {
        self.need_all("transaction")?;
        if self.sh.read_only {
            return Err(Error::ReadOnly {
                path: self.sh.path.clone(),
            });
        }
        if self.tx.is_some() {
            return Err(Error::Invalid {
                what: "nested transaction".into(),
            });
        }
        if self.have_extra_locks() {
            return Err(Error::Invalid {
                what: "transaction start while holding locks (or inside a traverse)".into(),
            });
        }
        // As libtdb, the transaction exists (for lock bookkeeping) before
        // its locks are taken.
        self.tx = Some(Box::new(Tx::new(self.map.len())));
        let r = (|| -> Result<bool> {
            if !self.nest_lock(TRANSACTION_LOCK, LockType::Write, wait)? {
                return Ok(false);
            }
            if !self.allrecord_lock(LockType::Read, wait, true)? {
                return Ok(false);
            }
            self.refresh_map()?;
            Ok(true)
        })();
        match r {
            Ok(true) => {}
            Ok(false) => {
                self.tx = None;
                self.release_transaction_locks();
                return Ok(false);
            }
            Err(e) => {
                self.tx = None;
                self.release_transaction_locks();
                return Err(e);
            }
        }
        let size = self.map.len();
        if let Some(tx) = self.tx.as_mut() {
            tx.old_size = size;
            tx.size = size;
        }
        Ok(true)
    }

    fn release_transaction_locks(&mut self) {
        if self.allrec.count > 0 {
            self.allrec.count = 1;
            let _ = self.allrecord_unlock();
        }
        for off in [OPEN_LOCK, TRANSACTION_LOCK] {
            while self.nest_unlock(off).is_ok() {}
        }
    }

    /// Abandon the open transaction.
    pub fn transaction_cancel(&mut self) -> Result<()> {
        let Some(tx) = self.tx.take() else {
            return Err(Error::Invalid {
                what: "transaction cancel without transaction".into(),
            });
        };
        let mut r = Ok(());
        if tx.magic_offset != 0 {
            r = self
                .real_write(tx.magic_offset, &TDB_RECOVERY_INVALID_MAGIC.to_le_bytes())
                .and_then(|_| self.sync());
        }
        self.release_transaction_locks();
        r
    }

    fn sync(&mut self) -> Result<()> {
        if self.sh.tdb_flags & flags::NOSYNC != 0 {
            return Ok(());
        }
        self.file
            .sync_data()
            .map_err(|e| self.io_err("fdatasync", e))
    }

    /// Write directly to the file's mapping, bypassing any overlay.
    pub(crate) fn real_write(&mut self, off: u64, buf: &[u8]) -> Result<()> {
        let end = off
            .checked_add(buf.len() as u64)
            .ok_or_else(|| self.corrupt(off, "offset overflow"))?;
        if end > self.map.len() {
            self.refresh_map()?;
        }
        if self.map.write(off, buf) {
            Ok(())
        } else {
            Err(self.corrupt(
                off,
                format!("write of {} bytes beyond end of file", buf.len()),
            ))
        }
    }

    fn real_read(&mut self, off: u64, buf: &mut [u8]) -> Result<()> {
        let end = off
            .checked_add(buf.len() as u64)
            .ok_or_else(|| self.corrupt(off, "offset overflow"))?;
        if end > self.map.len() {
            self.refresh_map()?;
        }
        if self.map.read(off, buf) {
            Ok(())
        } else {
            Err(self.corrupt(
                off,
                format!("read of {} bytes beyond end of file", buf.len()),
            ))
        }
    }

    fn real_grow(&mut self, new_size: u64) -> Result<()> {
        self.refresh_map()?;
        let cur = self.map.len();
        if new_size > cur {
            sys::allocate(&self.file, self.sh.hdr_ofs + cur, new_size - cur)
                .map_err(|e| self.io_err("grow file", e))?;
            self.refresh_map()?;
        }
        Ok(())
    }

    /// Write the recovery record and set its magic (libtdb's
    /// `transaction_setup_recovery` + `tdb_recovery_allocate`).
    fn setup_recovery(&mut self, crash_at: Option<u32>) -> Result<()> {
        let orig_old = self.tx.as_ref().map(|t| t.old_size).unwrap_or(0);
        let mut head = self.read_u32(OFF_RECOVERY)?;
        let mut rec = Rec::default();
        if head != 0 {
            let mut b = [0u8; 24];
            match self.real_read(head as u64, &mut b) {
                Ok(()) => {
                    rec = Rec::from_bytes(&b);
                    let valid =
                        rec.magic == TDB_RECOVERY_MAGIC || rec.magic == TDB_RECOVERY_INVALID_MAGIC;
                    if !valid || head as u64 + REC_SIZE as u64 + rec.rec_len as u64 > self.map.len()
                    {
                        head = 0;
                        rec = Rec::default();
                    }
                }
                Err(_) => {
                    head = 0;
                    rec = Rec::default();
                }
            }
        }
        let mut rsize = self
            .tx
            .as_ref()
            .map(|t| t.recovery_size(orig_old))
            .unwrap_or(4);
        let (off, max) = if head != 0 && rsize <= rec.rec_len as u64 {
            (head, rec.rec_len)
        } else {
            let tx_size = self.map_size();
            if head == 0 || head as u64 + REC_SIZE as u64 + rec.rec_len as u64 != tx_size {
                if head != 0 {
                    // Free the old area inside the transaction.
                    rec.magic = 0;
                    self.free(head, rec)?;
                    rsize = self
                        .tx
                        .as_ref()
                        .map(|t| t.recovery_size(orig_old))
                        .unwrap_or(4);
                }
                head = u32::try_from(tx_size).map_err(|_| Error::TooBig {
                    path: self.sh.path.clone(),
                    need: tx_size,
                })?;
            }
            let rs32 = u32::try_from(rsize).map_err(|_| Error::TooBig {
                path: self.sh.path.clone(),
                need: rsize,
            })?;
            let tx_size = self.map_size() as u32;
            let max = expand_adjust(tx_size, rs32, self.sh.page_size).saturating_sub(REC_SIZE);
            let new_end = head as u64 + REC_SIZE as u64 + max as u64;
            if new_end > u32::MAX as u64 || (max as u64) < rsize {
                return Err(Error::TooBig {
                    path: self.sh.path.clone(),
                    need: new_end,
                });
            }
            self.real_grow(new_end)?;
            if let Some(tx) = self.tx.as_mut() {
                tx.size = tx.size.max(new_end);
                tx.old_size = tx.size;
            }
            self.real_write(OFF_RECOVERY as u64, &head.to_le_bytes())?;
            if let Some(tx) = self.tx.as_mut() {
                tx.write_existing(OFF_RECOVERY as u64, &head.to_le_bytes());
            }
            (head, max)
        };
        // Build the blob: header, (offset, length, old bytes)..., tailer.
        let mut keys: Vec<u64> = self
            .tx
            .as_ref()
            .map(|t| t.blocks.keys().copied().collect())
            .unwrap_or_default();
        keys.sort_unstable();
        let hdr = Rec {
            next: 0,
            rec_len: max,
            key_len: orig_old as u32,
            data_len: rsize as u32,
            full_hash: 0,
            magic: TDB_RECOVERY_INVALID_MAGIC,
        };
        let mut blob = Vec::with_capacity(REC_SIZE as usize + rsize as usize);
        blob.extend_from_slice(&hdr.to_bytes());
        for bi in keys {
            let boff = bi * BLOCK;
            if boff >= orig_old {
                continue;
            }
            let len = BLOCK.min(orig_old - boff);
            blob.extend_from_slice(&(boff as u32).to_le_bytes());
            blob.extend_from_slice(&(len as u32).to_le_bytes());
            let start = blob.len();
            blob.resize(start + len as usize, 0);
            self.real_read(boff, &mut blob[start..])?;
        }
        blob.extend_from_slice(&(REC_SIZE + max).to_le_bytes());
        if blob.len() as u64 != REC_SIZE as u64 + rsize {
            return Err(self.corrupt(off as u64, "recovery blob size mismatch"));
        }
        self.real_write(off as u64, &blob)?;
        if let Some(tx) = self.tx.as_mut() {
            tx.write_existing(off as u64, &blob);
        }
        self.sync()?;
        Self::crash_point(crash_at, 1);
        let moff = off as u64 + 20;
        self.real_write(moff, &TDB_RECOVERY_MAGIC.to_le_bytes())?;
        if let Some(tx) = self.tx.as_mut() {
            tx.write_existing(moff, &TDB_RECOVERY_MAGIC.to_le_bytes());
            tx.magic_offset = moff;
        }
        self.sync()?;
        Self::crash_point(crash_at, 2);
        Ok(())
    }

    /// Commit the open transaction atomically.
    pub fn transaction_commit(&mut self) -> Result<()> {
        self.commit_inner(None)
    }

    /// Test aid: run a commit and kill the process (`_exit`) right after step
    /// `step` (1: recovery data written, 2: recovery magic set, 3: half of
    /// the blocks written, 4: all blocks written and synced, 5: recovery
    /// magic cleared), simulating a crash there (exit status 134). Exits
    /// with status 3 if the commit ends without reaching that step.
    #[doc(hidden)]
    pub fn debug_commit_then_crash(&mut self, step: u32) -> ! {
        let r = self.commit_inner(Some(step));
        eprintln!("debug_commit_then_crash: commit finished without reaching step {step}: {r:?}");
        std::process::exit(3);
    }

    fn crash_point(crash_at: Option<u32>, step: u32) {
        if crash_at == Some(step) {
            sys::crash_now();
        }
    }

    fn commit_inner(&mut self, crash_at: Option<u32>) -> Result<()> {
        let Some(tx) = self.tx.as_ref() else {
            return Err(Error::Invalid {
                what: "transaction commit without transaction".into(),
            });
        };
        if tx.blocks.is_empty() {
            return self.transaction_cancel();
        }
        if self.have_extra_locks() {
            let _ = self.transaction_cancel();
            return Err(Error::Lock {
                path: self.sh.path.clone(),
                offset: 0,
                what: "transaction commit while other locks are held".into(),
            });
        }
        let r = (|| -> Result<()> {
            self.allrecord_upgrade()?;
            self.nest_lock(OPEN_LOCK, LockType::Write, true)?;
            self.setup_recovery(crash_at)
        })();
        if let Err(e) = r {
            let _ = self.transaction_cancel();
            return Err(e);
        }
        let size = self.map_size();
        let r = (|| -> Result<()> {
            self.real_grow(size)?;
            let Some(tx) = self.tx.as_ref() else {
                return Err(Error::Invalid {
                    what: "transaction vanished during commit".into(),
                });
            };
            let mut blocks: Vec<(u64, &[u8])> =
                tx.blocks.iter().map(|(&bi, b)| (bi, &b[..])).collect();
            blocks.sort_unstable_by_key(|&(bi, _)| bi);
            let half = blocks.len() / 2;
            for (i, (bi, b)) in blocks.into_iter().enumerate() {
                if i == half {
                    Self::crash_point(crash_at, 3);
                }
                let off = bi * BLOCK;
                if off >= size {
                    continue;
                }
                let len = BLOCK.min(size - off) as usize;
                if !self.map.write(off, &b[..len]) {
                    return Err(Error::Corrupt {
                        path: self.sh.path.clone(),
                        offset: off,
                        what: "commit write beyond end of file".into(),
                    });
                }
            }
            self.sync()?;
            Self::crash_point(crash_at, 4);
            Ok(())
        })();
        if let Err(e) = r {
            // Partially written: replay the recovery record now.
            let tx = self.tx.take();
            let _ = self.recover();
            self.tx = tx;
            let _ = self.transaction_cancel();
            return Err(e);
        }
        let _ = self.file.set_modified(std::time::SystemTime::now());
        let r = self.transaction_cancel();
        Self::crash_point(crash_at, 5);
        r
    }

    /// Replay a valid recovery record, restoring the pre-transaction image
    /// (libtdb's `tdb_transaction_recover`). Caller holds exclusive access.
    pub(crate) fn recover(&mut self) -> Result<()> {
        self.refresh_map()?;
        let head = match self.map.read_u32(OFF_RECOVERY as u64) {
            Some(h) => h,
            None => return Err(self.corrupt(OFF_RECOVERY as u64, "header beyond end of file")),
        };
        if head == 0 {
            return Ok(());
        }
        let mut b = [0u8; 24];
        self.real_read(head as u64, &mut b)?;
        let rec = Rec::from_bytes(&b);
        if rec.magic != TDB_RECOVERY_MAGIC {
            return Ok(());
        }
        if self.sh.read_only {
            return Err(self.corrupt(
                head as u64,
                "database needs transaction recovery but is opened read-only",
            ));
        }
        let eof = rec.key_len;
        if head as u64 + REC_SIZE as u64 + rec.data_len as u64 > self.map.len() {
            return Err(self.corrupt(head as u64, "recovery data extends beyond end of file"));
        }
        let mut data = vec![0u8; rec.data_len as usize];
        self.real_read(head as u64 + REC_SIZE as u64, &mut data)?;
        let mut p = 0usize;
        while p + 8 < data.len() {
            let ofs = u32::from_le_bytes([data[p], data[p + 1], data[p + 2], data[p + 3]]) as u64;
            let len =
                u32::from_le_bytes([data[p + 4], data[p + 5], data[p + 6], data[p + 7]]) as usize;
            if p + 8 + len > data.len() {
                return Err(self.corrupt(head as u64, "recovery entry runs past the recovery data"));
            }
            let bytes = data[p + 8..p + 8 + len].to_vec();
            self.real_write(ofs, &bytes)?;
            p += 8 + len;
        }
        self.sync()?;
        if eof <= head {
            self.real_write(OFF_RECOVERY as u64, &0u32.to_le_bytes())?;
        }
        self.real_write(head as u64 + 20, &0u32.to_le_bytes())?;
        self.sync()?;
        // Everything past the restored end of file belonged to the
        // interrupted transaction (or to an abandoned recovery area) and is
        // referenced by nothing now. libtdb leaves it as unaccounted space
        // (its own tdb_check then complains); we give it to the free list.
        self.refresh_map()?;
        let fsize = self.map.len();
        let eof = eof as u64;
        if eof >= data_start(self.sh.hash_size) && eof < fsize && eof & 3 == 0 {
            let len = fsize - eof;
            if len > REC_SIZE as u64 + 4 {
                let rec = Rec {
                    rec_len: (len - REC_SIZE as u64) as u32,
                    ..Rec::default()
                };
                self.free(eof as u32, rec)?;
                self.sync()?;
            }
        }
        Ok(())
    }
}
