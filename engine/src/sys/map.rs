//! A bounds-checked view of the shared `MAP_SHARED` mapping of a TDB file.
//!
//! Other processes (smbd, ctdb tools, libtdb users) write the same pages, so
//! no Rust reference into the mapping ever leaves this module: callers copy
//! bytes in and out. Every accessor checks `offset + len` against the mapped
//! length and reports `None`/`false` instead of touching memory outside it.
//! Callers follow the TDB lock protocol (chain, free-list, allrecord locks),
//! which is what makes the plain copies race-free with respect to writers.

use std::fs::File;
use std::io;
use std::sync::atomic::{AtomicU32, Ordering};

use memmap2::{MmapOptions, MmapRaw};

/// A mapping of `len` bytes of a file starting at a page-aligned file offset.
pub struct Map {
    raw: Option<MmapRaw>,
    len: u64,
    writable: bool,
}

impl Map {
    /// Map `len` bytes of `file` starting at file offset `offset` (page
    /// aligned), read-write or (for read-only opens) read-only.
    pub fn new(file: &File, offset: u64, len: u64, writable: bool) -> io::Result<Map> {
        if len == 0 {
            return Ok(Map {
                raw: None,
                len: 0,
                writable,
            });
        }
        let ulen = usize::try_from(len).map_err(|_| io::Error::from_raw_os_error(libc::EFBIG))?;
        let mut opts = MmapOptions::new();
        opts.offset(offset).len(ulen);
        let raw = if writable {
            opts.map_raw(file)?
        } else {
            opts.map_raw_read_only(file)?
        };
        Ok(Map {
            raw: Some(raw),
            len,
            writable,
        })
    }

    /// An empty mapping (nothing readable).
    pub fn empty() -> Map {
        Map {
            raw: None,
            len: 0,
            writable: false,
        }
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    #[inline]
    fn ptr(&self, off: u64, len: usize) -> Option<*mut u8> {
        let end = off.checked_add(len as u64)?;
        if end > self.len {
            return None;
        }
        let raw = self.raw.as_ref()?;
        // SAFETY: `off + len <= self.len == raw.len()`, so the offset stays
        // inside the mapped allocation.
        Some(unsafe { raw.as_mut_ptr().add(off as usize) })
    }

    /// Hint the CPU to start loading the cache line at `off` (no effect if
    /// out of range). Used to overlap the chain-head miss with the lock.
    #[inline]
    pub fn prefetch(&self, off: u64) {
        #[cfg(target_arch = "x86_64")]
        if let Some(p) = self.ptr(off, 1) {
            // SAFETY: prefetching has no architectural side effects and never
            // faults; `p` is inside the mapping anyway.
            unsafe {
                std::arch::x86_64::_mm_prefetch(p as *const i8, std::arch::x86_64::_MM_HINT_T0)
            };
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = off;
    }

    /// Load the aligned 32-bit word at `off` *without* the TDB lock
    /// protocol, as a hint only: the value may be stale or torn by a
    /// concurrent writer and must never be trusted (used to start loading
    /// the first record of a chain while the chain lock is still being
    /// taken). `None` if out of range or unaligned.
    #[inline]
    pub fn peek_u32(&self, off: u64) -> Option<u32> {
        if off & 3 != 0 {
            return None;
        }
        let p = self.ptr(off, 4)?;
        // SAFETY: `p` is inside the mapping (checked by `ptr`) and 4-byte
        // aligned (the mapping is page aligned and `off % 4 == 0`). Writers
        // in other processes store to this word without atomics; a relaxed
        // atomic load of it can at worst see an old or mixed value, which
        // the caller only uses as a prefetch address.
        let a = unsafe { AtomicU32::from_ptr(p as *mut u32) };
        Some(u32::from_le(a.load(Ordering::Relaxed)))
    }

    /// Hint the CPU to start loading the three cache lines from `off` to
    /// `off + 128` (a record header with a short key and value). No bounds check:
    /// a prefetch never faults and has no architectural effect, and the
    /// address is only computed (with wrapping arithmetic), never
    /// dereferenced.
    #[inline]
    pub fn prefetch_record(&self, off: u32) {
        #[cfg(target_arch = "x86_64")]
        if let Some(raw) = self.raw.as_ref() {
            let p = raw.as_ptr().wrapping_add(off as usize);
            // SAFETY: prefetching has no architectural side effects and
            // never faults, whatever the address.
            unsafe {
                std::arch::x86_64::_mm_prefetch(p as *const i8, std::arch::x86_64::_MM_HINT_T0);
                std::arch::x86_64::_mm_prefetch(
                    p.wrapping_add(64) as *const i8,
                    std::arch::x86_64::_MM_HINT_T0,
                );
                std::arch::x86_64::_mm_prefetch(
                    p.wrapping_add(128) as *const i8,
                    std::arch::x86_64::_MM_HINT_T0,
                );
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = off;
    }

    /// Copy `buf.len()` bytes at `off` into `buf`.
    #[inline]
    pub fn read(&self, off: u64, buf: &mut [u8]) -> bool {
        if buf.is_empty() {
            return off <= self.len;
        }
        match self.ptr(off, buf.len()) {
            Some(p) => {
                // SAFETY: `p..p+buf.len()` is inside the mapping (checked by
                // `ptr`); `buf` is a distinct Rust allocation, so the ranges
                // do not overlap. Concurrent writers are excluded by the TDB
                // lock the caller holds.
                unsafe { std::ptr::copy_nonoverlapping(p, buf.as_mut_ptr(), buf.len()) };
                true
            }
            None => false,
        }
    }

    /// Copy `len` bytes at `off` into the end of `out`.
    #[inline]
    pub fn read_append(&self, off: u64, len: usize, out: &mut Vec<u8>) -> bool {
        if len == 0 {
            return off <= self.len;
        }
        match self.ptr(off, len) {
            Some(p) => {
                out.reserve(len);
                let old = out.len();
                // SAFETY: the source range is inside the mapping (checked);
                // the destination has `len` bytes of reserved capacity after
                // `old`; the ranges cannot overlap. `set_len` covers exactly
                // the bytes just initialised.
                unsafe {
                    std::ptr::copy_nonoverlapping(p, out.as_mut_ptr().add(old), len);
                    out.set_len(old + len);
                }
                true
            }
            None => false,
        }
    }

    /// Copy `buf` to offset `off`.
    #[inline]
    pub fn write(&self, off: u64, buf: &[u8]) -> bool {
        if !self.writable {
            return false;
        }
        if buf.is_empty() {
            return off <= self.len;
        }
        match self.ptr(off, buf.len()) {
            Some(p) => {
                // SAFETY: the destination range is inside the writable shared
                // mapping (checked); `buf` is a separate allocation. Other
                // accessors are excluded by the TDB lock the caller holds.
                unsafe { std::ptr::copy_nonoverlapping(buf.as_ptr(), p, buf.len()) };
                true
            }
            None => false,
        }
    }

    /// Compare the bytes at `off` with `other` without copying them out.
    #[inline]
    pub fn eq(&self, off: u64, other: &[u8]) -> Option<bool> {
        if other.is_empty() {
            return if off <= self.len { Some(true) } else { None };
        }
        let p = self.ptr(off, other.len())?;
        // SAFETY: the range is inside the mapping (checked). The slice lives
        // only for this comparison and never escapes; the caller holds the
        // chain lock, so no cooperating writer changes these bytes meanwhile.
        let s = unsafe { std::slice::from_raw_parts(p as *const u8, other.len()) };
        Some(s == other)
    }

    #[inline]
    pub fn read_u32(&self, off: u64) -> Option<u32> {
        let b: [u8; 4] = self.read_array(off)?;
        Some(u32::from_le_bytes(b))
    }

    /// Copy a fixed-size array (record headers, words) out of the mapping
    /// without a call to memcpy.
    #[inline]
    pub fn read_array<const N: usize>(&self, off: u64) -> Option<[u8; N]> {
        let p = self.ptr(off, N)?;
        // SAFETY: `p..p+N` is inside the mapping (checked by `ptr`);
        // `read_unaligned` has no alignment requirement and `[u8; N]` is
        // valid for any bit pattern. Writers are excluded by the TDB lock
        // the caller holds.
        Some(unsafe { std::ptr::read_unaligned(p as *const [u8; N]) })
    }

    /// Copy a fixed-size array (record headers, words) into the mapping
    /// without a call to memcpy.
    #[inline]
    pub fn write_array<const N: usize>(&self, off: u64, v: [u8; N]) -> bool {
        if !self.writable {
            return false;
        }
        match self.ptr(off, N) {
            Some(p) => {
                // SAFETY: `p..p+N` is inside the writable shared mapping
                // (checked by `ptr`); `write_unaligned` has no alignment
                // requirement. Other accessors are excluded by the TDB lock
                // the caller holds.
                unsafe { std::ptr::write_unaligned(p as *mut [u8; N], v) };
                true
            }
            None => false,
        }
    }

    pub fn write_u32(&self, off: u64, v: u32) -> bool {
        self.write(off, &v.to_le_bytes())
    }

    /// Atomically add 1 to the aligned 32-bit word at `off` (the seqnum),
    /// as libtdb does with `__atomic_add_fetch` on its mapping.
    pub fn atomic_inc_u32(&self, off: u64) -> bool {
        if off & 3 != 0 || !self.writable {
            return false;
        }
        match self.ptr(off, 4) {
            Some(p) => {
                // SAFETY: `p` is 4-byte aligned (mapping is page aligned and
                // `off % 4 == 0`), inside the mapping, and valid for the
                // lifetime of `self`; all other users of this word (libtdb
                // included) access it atomically or under the lock protocol.
                let a = unsafe { AtomicU32::from_ptr(p as *mut u32) };
                a.fetch_add(1, Ordering::SeqCst);
                true
            }
            None => false,
        }
    }

    /// msync the given range (used by transactions without TDB_NOSYNC).
    pub fn flush(&self, off: u64, len: u64) -> io::Result<()> {
        let Some(raw) = self.raw.as_ref() else {
            return Ok(());
        };
        let end = off.saturating_add(len).min(self.len);
        if off >= end {
            return Ok(());
        }
        raw.flush_range(off as usize, (end - off) as usize)
    }
}
