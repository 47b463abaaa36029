//! Whole-file consistency check, equivalent to libtdb's `tdb_check` (what
//! `tdbtool FILE check` runs): the header is sane, every record found by a
//! linear scan of the data area is well formed (aligned lengths, matching
//! tailer, key+data fit, full_hash matches the key and its chain), and every
//! record is referenced exactly once — by its hash chain or the free list —
//! with no dangling references. The recovery area is accounted for.

use std::collections::HashSet;

use crate::error::{Error, Result};
use crate::format::*;
use crate::store::CoreStore;
use crate::sys::LockType;

/// Summary of a successful check.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CheckReport {
    pub live: u64,
    pub dead: u64,
    pub free: u64,
    pub free_bytes: u64,
    pub has_recovery_area: bool,
}

impl CoreStore {
    /// Check the whole file (needs a handle owning all chains). Takes the
    /// allrecord read lock like `tdb_check`.
    pub fn check(&mut self) -> Result<CheckReport> {
        self.need_all("check")?;
        let locked = if self.sh.read_only || self.allrec.count > 0 {
            false
        } else {
            self.allrecord_lock(LockType::Read, true, false)?
        };
        let r = self.check_locked();
        if locked {
            self.allrecord_unlock()?;
        }
        r
    }

    fn check_locked(&mut self) -> Result<CheckReport> {
        if self.tx.is_none() {
            self.refresh_map()?;
        }
        let hs = self.sh.hash_size;
        let ds = data_start(hs);
        let size = self.map_size();
        if size < ds {
            return Err(self.corrupt(size, "file shorter than its hash table"));
        }
        let mut hb = [0u8; HEADER_SIZE as usize];
        self.read(0, &mut hb)?;
        let hdr = Header::parse(&hb).ok_or_else(|| self.corrupt(0, "short header"))?;
        if hdr.version != TDB_VERSION {
            return Err(self.corrupt(OFF_VERSION as u64, "bad version"));
        }
        if hdr.hash_size != hs {
            return Err(self.corrupt(OFF_HASH_SIZE as u64, "hash_size changed"));
        }
        let (m1, m2) = self.sh.hash.magic_hashes();
        if !(hdr.magic1_hash == 0 && hdr.magic2_hash == 0)
            && (hdr.magic1_hash, hdr.magic2_hash) != (m1, m2)
        {
            return Err(self.corrupt(
                OFF_MAGIC1 as u64,
                "magic hashes do not match the hash function",
            ));
        }
        let recovery_start = hdr.recovery_start as u64;
        if recovery_start != 0 && (recovery_start < ds || recovery_start + REC_SIZE as u64 > size) {
            return Err(self.corrupt(
                OFF_RECOVERY as u64,
                format!("recovery_start {recovery_start} out of range"),
            ));
        }
        // Each (list, offset) pair toggles: a record and the one reference to
        // it must cancel out. list 0 = free list, b+1 = chain b.
        let mut refs: HashSet<(u32, u32)> = HashSet::new();
        let toggle = |set: &mut HashSet<(u32, u32)>, list: u32, off: u32| {
            if !set.remove(&(list, off)) {
                set.insert((list, off));
            }
        };
        for h in 0..=hs {
            let off = self.read_u32(FREELIST_TOP + 4 * h)?;
            if off != 0 {
                toggle(&mut refs, h, off);
            }
        }
        let mut rep = CheckReport::default();
        let mut found_recovery = false;
        let mut off = ds;
        let mut key = Vec::new();
        while off < size {
            if off + REC_SIZE as u64 > size {
                return Err(self.corrupt(off, "truncated record header at end of file"));
            }
            let mut rec = self.read_rec_raw(off as u32)?;
            match rec.magic {
                TDB_MAGIC | TDB_DEAD_MAGIC => {
                    self.check_record(off, &rec, ds, size)?;
                    let need = rec.key_len as u64 + rec.data_len as u64 + 4;
                    if need > rec.rec_len as u64 {
                        return Err(self.corrupt(off, "key and data do not fit the record"));
                    }
                    key.clear();
                    key.resize(rec.key_len as usize, 0);
                    self.read(off + REC_SIZE as u64, &mut key)?;
                    if self.sh.hash.hash(&key) != rec.full_hash {
                        return Err(self.corrupt(off, "full_hash does not match the key"));
                    }
                    let list = rec.full_hash % hs + 1;
                    toggle(&mut refs, list, off as u32);
                    if rec.next != 0 {
                        toggle(&mut refs, list, rec.next);
                    }
                    if rec.magic == TDB_MAGIC {
                        rep.live += 1;
                    } else {
                        rep.dead += 1;
                    }
                }
                TDB_FREE_MAGIC => {
                    self.check_record(off, &rec, ds, size)?;
                    toggle(&mut refs, 0, off as u32);
                    if rec.next != 0 {
                        toggle(&mut refs, 0, rec.next);
                    }
                    rep.free += 1;
                    rep.free_bytes += rec.rec_len as u64;
                }
                TDB_RECOVERY_INVALID_MAGIC | TDB_PAD_U32 | TDB_RECOVERY_MAGIC
                    if recovery_start == off =>
                {
                    found_recovery = true;
                    if off + REC_SIZE as u64 + rec.rec_len as u64 > size {
                        return Err(self.corrupt(off, "recovery area extends beyond end of file"));
                    }
                }
                TDB_RECOVERY_INVALID_MAGIC | TDB_PAD_U32 => {
                    // Space left by a crash after growing the file: skip
                    // the run of zero / pad words.
                    let dead = self.dead_space(off, size)?;
                    if dead < REC_SIZE as u64 {
                        return Err(self.corrupt(off, "unaccounted space too small for a record"));
                    }
                    rec.rec_len = (dead - REC_SIZE as u64) as u32;
                }
                m => return Err(self.corrupt(off, format!("unknown record magic 0x{m:08x}"))),
            }
            off += REC_SIZE as u64 + rec.rec_len as u64;
        }
        if let Some(&(list, o)) = refs.iter().next() {
            let what = if list == 0 {
                format!("free list reference mismatch at offset {o}")
            } else {
                format!("hash chain {} reference mismatch at offset {o}", list - 1)
            };
            return Err(self.corrupt(o as u64, what));
        }
        if recovery_start != 0 && !found_recovery {
            return Err(self.corrupt(recovery_start, "recovery area not found"));
        }
        rep.has_recovery_area = found_recovery;
        Ok(rep)
    }

    fn check_record(&mut self, off: u64, rec: &Rec, ds: u64, size: u64) -> Result<()> {
        if rec.next != 0
            && ((rec.next as u64) < ds || rec.next & 3 != 0 || rec.next as u64 + 24 > size)
        {
            return Err(self.corrupt(off, format!("bad next pointer {}", rec.next)));
        }
        if rec.rec_len & 3 != 0 || rec.rec_len < 4 {
            return Err(self.corrupt(off, format!("bad rec_len {}", rec.rec_len)));
        }
        let end = off + REC_SIZE as u64 + rec.rec_len as u64;
        if end > size {
            return Err(self.corrupt(off, "record extends beyond end of file"));
        }
        let tailer = self.read_u32((end - 4) as u32)?;
        if tailer as u64 != REC_SIZE as u64 + rec.rec_len as u64 {
            return Err(self.corrupt(
                off,
                format!("tailer {tailer} does not match rec_len {}", rec.rec_len),
            ));
        }
        Ok(())
    }

    fn dead_space(&mut self, off: u64, size: u64) -> Result<u64> {
        let mut len = 0u64;
        while off + len + 4 <= size {
            let w = self.read_u32((off + len) as u32)?;
            if w != 0 && w != TDB_PAD_U32 {
                break;
            }
            len += 4;
        }
        if len == 0 {
            return Err(Error::Corrupt {
                path: self.sh.path.clone(),
                offset: off,
                what: "no dead space".into(),
            });
        }
        Ok(len)
    }
}
