//! Robust process-shared pthread mutexes of TDB's `TDB_MUTEX_LOCKING` mode.
//!
//! ctdbd opens volatile databases with `TDB_MUTEX_LOCKING`, and smbd opens
//! the same files with the same flags, so chain locks on those files are not
//! fcntl byte-range locks but glibc `pthread_mutex_t`s stored *in the file*.
//! To exclude (and be excluded by) a libtdb process we must use the very
//! same mutex objects, at the very same offsets, with the same protocol.
//! That protocol is what this module implements; everything else about
//! locking (nesting counts, the fcntl locks that stay fcntl locks) belongs
//! to the lock layer above.
//!
//! # File layout (libtdb 1.4 `struct tdb_mutexes`)
//!
//! ```text
//! offset 0                 168-byte copy of the tdb header (not touched here)
//! offset 168 (8-aligned)   pthread_mutex_t allrecord_mutex
//! offset 168 + M           short allrecord_lock   (F_UNLCK / F_RDLCK / F_WRLCK)
//! next M-aligned offset    pthread_mutex_t hashchains[hash_size + 1]
//!                          ([0] = free list, [b + 1] = hash chain b)
//! ...                      zero padding up to mutex_size (page aligned)
//! offset mutex_size        the ordinary tdb (its header is logical offset 0)
//! ```
//!
//! With glibc on x86_64 `M = sizeof(pthread_mutex_t) = 40`, so
//! `allrecord_lock` is at 208, `hashchains` at 216 and
//! `mutex_size = page_align(216 + 40 * (hash_size + 1))`.
//!
//! # How the region is obtained (for the open path)
//!
//! libtdb maps the first `mutex_size` bytes of the file **once**, with a
//! separate `mmap(NULL, mutex_size, PROT_READ|PROT_WRITE, MAP_SHARED, fd, 0)`,
//! and never remaps it: glibc's robust-mutex list stores absolute addresses
//! of held mutexes, so the mapping must not move while a mutex is held. The
//! ordinary data map starts at file offset `mutex_size` and never overlaps
//! it. [`MutexArea::map`] does exactly this; the open path should:
//!
//! 1. read the header at file offset 0; if `rwlocks == 0x0BAD1A52` and
//!    `feature_flags & 1`, require `header.mutex_size ==`
//!    [`mutex_area_size`]`(hash_size, `[`page_size`]`())` (libtdb refuses the
//!    file otherwise) and [`platform_layout_matches`]`()`;
//! 2. when creating the file (or when the ACTIVE_LOCK write probe says we are
//!    the first opener), write the header at offset 0, extend the file to
//!    `mutex_size + 168`, map, call [`MutexArea::init`], then write the
//!    second header at `mutex_size`;
//! 3. otherwise just [`MutexArea::map`] it.
//!
//! Lock mapping: the 1-byte fcntl lock at offset `164` (free list) maps to
//! [`MutexArea::lock_freelist`], offset `168 + 4 * b` (chain `b`) to
//! [`MutexArea::lock_chain`] (see [`mutex_index_for_lock`]); read and write
//! chain locks are both exclusive. The allrecord lock is
//! [`MutexArea::lock_all`] **plus** the fcntl lock
//! `[168 + 4 * hash_size, EOF)` taken by the caller afterwards; unlock is
//! [`MutexArea::unlock_all`] then that fcntl unlock.
//!
//! # Safety design
//!
//! All `unsafe` of the mutex mode lives here. The invariants:
//!
//! * I1 `base` points to a live `MAP_SHARED` mapping of `len` bytes made by
//!   [`MutexArea::map`], page aligned, never moved; it is unmapped only in
//!   `Drop`, and not at all while this process holds any of its mutexes
//!   (tracked by `held`): the mapping is leaked instead.
//! * I2 every mutex offset used is inside the mapping and aligned for
//!   `pthread_mutex_t` (checked once in `map`: `len >= mutex_area_size`).
//! * I3 the mutexes were initialised by some process with
//!   `pthread_mutex_init` (libtdb or [`MutexArea::init`]) before anyone locks
//!   them; `init` is only called by the first opener (caller's duty,
//!   guaranteed by the ACTIVE_LOCK protocol) — this is the one requirement
//!   the type cannot check, hence `init` documents it.
//! * I4 `allrecord_lock` is read and written as an `AtomicI16` (same size and
//!   alignment as C `short`); it is only written while holding
//!   `allrecord_mutex`, as in libtdb.

use std::cell::Cell;
use std::fs::File;
use std::io;
use std::mem::{align_of, size_of};
use std::os::unix::io::AsRawFd;
use std::sync::atomic::{AtomicI16, AtomicUsize, Ordering};

/// Size of `struct tdb_header` (the header copy at the start of the area).
pub const TDB_HEADER_SIZE: usize = 168;

/// fcntl offset of the free-list lock (`FREELIST_TOP - 4`).
pub const FREELIST_LOCK_OFFSET: u64 = (TDB_HEADER_SIZE - 4) as u64;

/// `F_UNLCK` as stored in `allrecord_lock` (Linux value).
const F_UNLCK: i16 = libc::F_UNLCK as i16;
/// `F_RDLCK` as stored in `allrecord_lock`.
const F_RDLCK: i16 = libc::F_RDLCK as i16;
/// `F_WRLCK` as stored in `allrecord_lock`.
const F_WRLCK: i16 = libc::F_WRLCK as i16;

const MUTEX_SIZE: usize = size_of::<libc::pthread_mutex_t>();
const MUTEX_ALIGN: usize = align_of::<libc::pthread_mutex_t>();

const fn align_up(x: usize, a: usize) -> usize {
    x.div_ceil(a) * a
}

/// Offset of `allrecord_mutex` in the area.
const ALLRECORD_MUTEX_OFFSET: usize = align_up(TDB_HEADER_SIZE, MUTEX_ALIGN);
/// Offset of `allrecord_lock` (a C `short`) in the area.
const ALLRECORD_LOCK_OFFSET: usize = ALLRECORD_MUTEX_OFFSET + MUTEX_SIZE;
/// Offset of `hashchains[0]` in the area.
const HASHCHAINS_OFFSET: usize = align_up(ALLRECORD_LOCK_OFFSET + 2, MUTEX_ALIGN);

/// Read or write intent of a lock (F_RDLCK / F_WRLCK in libtdb).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LockKind {
    /// Shared intent. Chain mutexes are exclusive anyway; it matters only
    /// against an allrecord lock (a read allrecord lock admits readers).
    Read,
    /// Exclusive intent.
    Write,
}

/// What a successful lock call found.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Acquired {
    /// The previous owner died holding a mutex we now hold (EOWNERDEAD); it
    /// was made consistent. For the allrecord mutex the stale
    /// `allrecord_lock` was reset. The caller may want to check for an
    /// interrupted transaction.
    pub owner_died: bool,
}

impl Acquired {
    fn merge(self, other: Acquired) -> Acquired {
        Acquired {
            owner_died: self.owner_died || other.owner_died,
        }
    }
}

/// Which mutex an fcntl lock request maps to in mutex mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MutexIndex {
    /// The free-list lock (`hashchains[0]`).
    FreeList,
    /// The lock of hash chain `b` (`hashchains[b + 1]`).
    Chain(u32),
}

/// Map an fcntl lock request `(off, len)` of libtdb's lock layout to the
/// mutex that replaces it in mutex mode, as libtdb's `tdb_mutex_index`:
/// 1-byte locks at `164` (free list) and `168 + 4 * b` (chain `b`) for
/// `b < hash_size`. Everything else (OPEN/ACTIVE/TRANSACTION locks,
/// allrecord ranges, record locks) stays an fcntl lock: `None`. Misaligned
/// offsets inside the chain range are `None` too (libtdb aborts there).
pub fn mutex_index_for_lock(off: u64, len: u64, hash_size: u32) -> Option<MutexIndex> {
    if len != 1 || off < FREELIST_LOCK_OFFSET || hash_size == 0 {
        return None;
    }
    let data_start = TDB_HEADER_SIZE as u64 + 4 * u64::from(hash_size) + 4;
    if off >= data_start || off & 3 != 0 {
        return None;
    }
    match (off - FREELIST_LOCK_OFFSET) / 4 {
        0 => Some(MutexIndex::FreeList),
        // `lock_offset(hash_size)` itself is only ever locked as a range.
        i if i > u64::from(hash_size) => None,
        i => Some(MutexIndex::Chain((i - 1) as u32)),
    }
}

/// The system page size (libtdb's `tdb->page_size`, `getpagesize()`).
pub fn page_size() -> usize {
    // SAFETY: sysconf has no memory-safety preconditions.
    let ps = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if ps <= 0 {
        4096
    } else {
        ps as usize
    }
}

/// `mutex_size` for a file with `hash_size` chains: `sizeof(struct
/// tdb_mutexes) + hash_size * sizeof(pthread_mutex_t)` rounded up to the
/// page size, computed with this platform's `pthread_mutex_t` (as libtdb).
pub fn mutex_area_size(hash_size: u32, page_size: usize) -> usize {
    let raw = HASHCHAINS_OFFSET + (hash_size as usize + 1) * MUTEX_SIZE;
    align_up(raw, page_size.max(1))
}

/// True if this platform's `pthread_mutex_t` has the size and alignment of
/// the files written by libtdb on Linux/glibc x86_64 (40 bytes, 8-aligned),
/// i.e. `allrecord_lock` lands at 208 and `hashchains` at 216. libtdb itself
/// refuses a mutex file whose `mutex_size` differs from its own computation;
/// use [`mutex_area_size`] for that per-file check.
pub fn platform_layout_matches() -> bool {
    MUTEX_SIZE == 40 && MUTEX_ALIGN == 8 && HASHCHAINS_OFFSET == 216
}

/// Whether robust, process-shared, error-checking mutexes really work here
/// (libtdb's `tdb_mutex_locking_supported`: a second lock by the owner must
/// report EDEADLK, proving these are real mutexes and not libc stubs).
pub fn robust_mutexes_supported() -> bool {
    let mut storage = std::mem::MaybeUninit::<libc::pthread_mutex_t>::uninit();
    let m = storage.as_mut_ptr();
    if init_robust_mutex(m).is_err() {
        return false;
    }
    // SAFETY: `m` was initialised just above and lives on this stack frame
    // until the destroy below; it is never shared with another thread.
    unsafe {
        let mut ok = libc::pthread_mutex_lock(m) == 0;
        if ok {
            ok = libc::pthread_mutex_lock(m) == libc::EDEADLK;
            libc::pthread_mutex_unlock(m);
        }
        libc::pthread_mutex_destroy(m);
        ok
    }
}

/// Initialise `*m` with libtdb's attributes: ERRORCHECK, PROCESS_SHARED,
/// ROBUST.
fn init_robust_mutex(m: *mut libc::pthread_mutex_t) -> io::Result<()> {
    let mut attr = std::mem::MaybeUninit::<libc::pthread_mutexattr_t>::uninit();
    let ap = attr.as_mut_ptr();
    // SAFETY: `ap` points to writable storage for an attribute object; it is
    // initialised by pthread_mutexattr_init before any other use and
    // destroyed before returning. `m` is writable storage for a mutex that no
    // thread is using (caller's guarantee: fresh stack slot, or the mapped
    // area during `MutexArea::init`, see I3).
    unsafe {
        let rc = libc::pthread_mutexattr_init(ap);
        if rc != 0 {
            return Err(io::Error::from_raw_os_error(rc));
        }
        let mut rc = libc::pthread_mutexattr_settype(ap, libc::PTHREAD_MUTEX_ERRORCHECK);
        if rc == 0 {
            rc = libc::pthread_mutexattr_setpshared(ap, libc::PTHREAD_PROCESS_SHARED);
        }
        if rc == 0 {
            rc = libc::pthread_mutexattr_setrobust(ap, libc::PTHREAD_MUTEX_ROBUST);
        }
        if rc == 0 {
            rc = libc::pthread_mutex_init(m, ap);
        }
        libc::pthread_mutexattr_destroy(ap);
        if rc != 0 {
            return Err(io::Error::from_raw_os_error(rc));
        }
    }
    Ok(())
}

fn os_err(rc: i32) -> io::Error {
    // EBUSY from trylock is reported as EAGAIN (ErrorKind::WouldBlock), as
    // libtdb does.
    if rc == libc::EBUSY {
        io::Error::from_raw_os_error(libc::EAGAIN)
    } else {
        io::Error::from_raw_os_error(rc)
    }
}

/// The mapped mutex region of one mutex-mode TDB file.
///
/// Shared by all threads of the process (it is `Sync`); each pthread mutex
/// is owned by the *thread* that locked it, so two threads of this process
/// exclude each other exactly like two processes do. Nesting (locking a
/// chain this thread already holds) is the caller's business: the mutexes
/// are error-checking and report `EDEADLK`.
pub struct MutexArea {
    base: *mut u8,
    len: usize,
    hash_size: u32,
    /// Number of mutexes of this area currently held by threads of this
    /// process (allrecord mutex counts as one), split into per-thread
    /// slots: see [`Held`]. See invariant I1.
    held: Held,
}

/// Per-thread slots of a held-mutex count. Every lock and unlock adjusts
/// the count, so one shared atomic would be a cache line bounced between
/// cores on every operation. Instead each thread owns a slot on its own
/// cache line, written only by that thread (plain load + store, no locked
/// instruction); threads beyond the private slots share the last slot with
/// atomic read-modify-writes. A mutex is always unlocked by the thread that
/// locked it (pthread refuses otherwise), so the sum of all slots is the
/// number of mutexes held.
struct Held {
    slots: Box<[HeldSlot]>,
}

#[repr(align(128))]
struct HeldSlot(AtomicUsize);

/// Slots per area; the last one is the shared overflow slot.
const HELD_SLOTS: usize = 32;

/// Process-wide thread numbering for [`Held`] slots.
static NEXT_HELD_SLOT: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// This thread's [`Held`] slot (usize::MAX: not assigned yet).
    static HELD_SLOT: Cell<usize> = const { Cell::new(usize::MAX) };
}

impl Held {
    fn new() -> Held {
        Held {
            slots: (0..HELD_SLOTS)
                .map(|_| HeldSlot(AtomicUsize::new(0)))
                .collect(),
        }
    }

    #[inline]
    fn slot() -> usize {
        HELD_SLOT.with(|c| {
            let v = c.get();
            if v != usize::MAX {
                return v;
            }
            let n = NEXT_HELD_SLOT.fetch_add(1, Ordering::Relaxed);
            let v = n.min(HELD_SLOTS - 1);
            c.set(v);
            v
        })
    }

    #[inline]
    fn add(&self, up: bool) {
        let i = Self::slot();
        let c = &self.slots[i].0;
        if i < HELD_SLOTS - 1 {
            // Only this thread ever writes slot `i`.
            let v = c.load(Ordering::Relaxed);
            c.store(
                if up {
                    v.wrapping_add(1)
                } else {
                    v.wrapping_sub(1)
                },
                Ordering::Release,
            );
        } else if up {
            c.fetch_add(1, Ordering::SeqCst);
        } else {
            c.fetch_sub(1, Ordering::SeqCst);
        }
    }

    fn total(&self) -> usize {
        self.slots
            .iter()
            .fold(0usize, |a, s| a.wrapping_add(s.0.load(Ordering::Acquire)))
    }
}

// SAFETY: the area is plain shared memory whose only mutable contents are
// process-shared pthread mutexes (designed for concurrent use from any
// thread/process) and `allrecord_lock`, accessed atomically (I4). The raw
// pointer is never handed out.
unsafe impl Send for MutexArea {}
// SAFETY: see the Send impl; all methods take `&self` and synchronise
// through the mutexes themselves.
unsafe impl Sync for MutexArea {}

impl std::fmt::Debug for MutexArea {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MutexArea")
            .field("len", &self.len)
            .field("hash_size", &self.hash_size)
            .field("held", &self.held.total())
            .finish()
    }
}

impl MutexArea {
    /// Map the first `mutex_size` bytes of `file` (the mutex area of a file
    /// with `hash_size` chains) with a dedicated shared mapping, as libtdb's
    /// `tdb_mutex_mmap`. Fails if `mutex_size` is not what this platform
    /// computes for `hash_size` (libtdb refuses such files), if the platform
    /// layout differs from glibc x86_64, or if the file is shorter than the
    /// area. `file` may be closed afterwards; the mapping stays.
    pub fn map(file: &File, hash_size: u32, mutex_size: u32) -> io::Result<MutexArea> {
        let expected = mutex_area_size(hash_size, page_size());
        if hash_size == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "mutex area: hash_size is 0",
            ));
        }
        if !platform_layout_matches() {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                format!(
                    "mutex area: pthread_mutex_t is {MUTEX_SIZE} bytes (align {MUTEX_ALIGN}), \
                     libtdb files need 40 (align 8)"
                ),
            ));
        }
        if mutex_size as usize != expected {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "mutex area: header mutex_size {mutex_size} differs from {expected} \
                     computed for hash_size {hash_size}"
                ),
            ));
        }
        let file_len = file.metadata()?.len();
        if file_len < expected as u64 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("mutex area: file is {file_len} bytes, shorter than mutex_size {expected}"),
            ));
        }
        // SAFETY: a fresh shared mapping of a file range that exists (checked
        // above); the kernel picks the address. The result is checked
        // against MAP_FAILED. Afterwards `base`/`len` satisfy I1 and I2.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                expected,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(MutexArea {
            base: ptr.cast::<u8>(),
            len: expected,
            hash_size,
            held: Held::new(),
        })
    }

    /// Number of hash chains covered.
    pub fn hash_size(&self) -> u32 {
        self.hash_size
    }

    /// Length of the mapping (= `mutex_size`).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Always false: an area covers at least one chain.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Initialise every mutex (free list, each chain, allrecord) with
    /// ERRORCHECK + PROCESS_SHARED + ROBUST attributes and set
    /// `allrecord_lock` to F_UNLCK, as libtdb's `tdb_mutex_init`. The header
    /// copy at offset 0 is left alone.
    ///
    /// Call only when no other thread or process can be using the mutexes:
    /// while creating the file, or after winning the ACTIVE_LOCK write probe
    /// (first opener). Re-initialising a mutex someone holds breaks it.
    pub fn init(&self) -> io::Result<()> {
        if self.held.total() != 0 {
            return Err(io::Error::other(
                "mutex area: init while this process holds one of its mutexes",
            ));
        }
        for i in 0..=self.hash_size {
            init_robust_mutex(self.chain_ptr(i))?;
        }
        self.allrecord_lock().store(F_UNLCK, Ordering::SeqCst);
        init_robust_mutex(self.allrecord_mutex_ptr())
    }

    #[inline]
    fn chain_ptr(&self, idx: u32) -> *mut libc::pthread_mutex_t {
        debug_assert!(idx <= self.hash_size);
        let off = HASHCHAINS_OFFSET + idx as usize * MUTEX_SIZE;
        debug_assert!(off + MUTEX_SIZE <= self.len);
        // SAFETY: `off + MUTEX_SIZE <= len` because `len >=
        // mutex_area_size(hash_size)` (I2) and `idx <= hash_size` (callers
        // check chain numbers); the offset is MUTEX_ALIGN-aligned and `base`
        // is page aligned.
        unsafe { self.base.add(off).cast() }
    }

    fn allrecord_mutex_ptr(&self) -> *mut libc::pthread_mutex_t {
        // SAFETY: the allrecord mutex lies inside the mapping (I2) at an
        // aligned offset.
        unsafe { self.base.add(ALLRECORD_MUTEX_OFFSET).cast() }
    }

    #[inline]
    fn allrecord_lock(&self) -> &AtomicI16 {
        // SAFETY: offset 208 (2-aligned) is inside the mapping (I2), which
        // lives as long as `self` (I1); AtomicI16 has the size and alignment
        // of C `short`, and every access from this process goes through this
        // atomic (I4). libtdb's plain accesses are ordered by the
        // allrecord mutex just as ours are.
        unsafe { &*self.base.add(ALLRECORD_LOCK_OFFSET).cast::<AtomicI16>() }
    }

    /// Current allrecord lock state seen in the shared area (diagnostics).
    pub fn allrecord_state(&self) -> Option<LockKind> {
        match self.allrecord_lock().load(Ordering::SeqCst) {
            F_RDLCK => Some(LockKind::Read),
            F_WRLCK => Some(LockKind::Write),
            _ => None,
        }
    }

    /// Lock one mutex; EOWNERDEAD is resolved with pthread_mutex_consistent.
    #[inline]
    fn raw_lock(&self, m: *mut libc::pthread_mutex_t, wait: bool) -> Result<Acquired, i32> {
        // SAFETY: `m` points to an initialised process-shared mutex inside
        // the live mapping (I1-I3).
        let rc = unsafe {
            if wait {
                libc::pthread_mutex_lock(m)
            } else {
                libc::pthread_mutex_trylock(m)
            }
        };
        match rc {
            0 => {
                self.held.add(true);
                Ok(Acquired::default())
            }
            libc::EOWNERDEAD => {
                // We own the mutex now, in "inconsistent" state.
                self.held.add(true);
                // SAFETY: as above; we are the owner, as consistent requires.
                let rc = unsafe { libc::pthread_mutex_consistent(m) };
                if rc != 0 {
                    self.raw_unlock(m);
                    return Err(rc);
                }
                Ok(Acquired { owner_died: true })
            }
            rc => Err(rc),
        }
    }

    #[inline]
    fn raw_unlock(&self, m: *mut libc::pthread_mutex_t) -> i32 {
        // SAFETY: `m` points to an initialised mutex in the live mapping
        // (I1-I3); an error-checking mutex reports EPERM if we don't own it.
        let rc = unsafe { libc::pthread_mutex_unlock(m) };
        if rc == 0 {
            self.held.add(false);
        }
        rc
    }

    fn lock_allrecord_mutex(&self, wait: bool) -> Result<Acquired, i32> {
        let got = self.raw_lock(self.allrecord_mutex_ptr(), wait)?;
        if got.owner_died {
            // The allrecord holder died: its allrecord lock is void.
            self.allrecord_lock().store(F_UNLCK, Ordering::SeqCst);
        }
        Ok(got)
    }

    #[inline]
    fn check_chain(&self, chain: u32) -> io::Result<()> {
        if chain >= self.hash_size {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "mutex area: chain {chain} out of range (hash_size {})",
                    self.hash_size
                ),
            ));
        }
        Ok(())
    }

    /// Lock the mutex of hash chain `chain` (libtdb's `tdb_mutex_lock` for a
    /// chain lock). `wait == false` fails with `ErrorKind::WouldBlock` instead
    /// of blocking.
    ///
    /// Unless `holding_other_chain` is true (this thread already holds another
    /// chain mutex of this file — the caller's lock records know), the lock
    /// then respects the allrecord lock: if one is held (write, or read while
    /// `kind` is Write) the chain mutex is released, the allrecord mutex is
    /// waited for (or tried) and released, and the whole thing is retried.
    /// With another chain held that check is skipped, exactly as libtdb does,
    /// because waiting for the allrecord holder then could deadlock.
    #[inline(always)]
    pub fn lock_chain(
        &self,
        chain: u32,
        kind: LockKind,
        wait: bool,
        holding_other_chain: bool,
    ) -> io::Result<Acquired> {
        // Fast path: a blocking lock of a valid chain, no other chain held,
        // the mutex was free or released normally, and no allrecord lock
        // stands in the way. Everything else takes `lock_chain_slow`.
        if wait && !holding_other_chain && chain < self.hash_size {
            let m = self.chain_ptr(chain + 1);
            // SAFETY: `m` points to an initialised process-shared mutex
            // inside the live mapping (I1-I3).
            let rc = unsafe { libc::pthread_mutex_lock(m) };
            if rc == 0 {
                let state = self.allrecord_lock().load(Ordering::SeqCst);
                if state == F_UNLCK || (state == F_RDLCK && kind == LockKind::Read) {
                    self.held.add(true);
                    return Ok(Acquired::default());
                }
            }
            return self.lock_chain_contended(m, rc, chain, kind);
        }
        self.lock_chain_slow(chain, kind, wait, holding_other_chain)
    }

    /// The rest of a fast-path [`MutexArea::lock_chain`] whose
    /// `pthread_mutex_lock(m)` returned `rc`: an allrecord lock is in the
    /// way (`rc == 0`; the mutex is held but not yet counted), the previous
    /// owner died (`EOWNERDEAD`), or an error.
    #[cold]
    #[inline(never)]
    fn lock_chain_contended(
        &self,
        m: *mut libc::pthread_mutex_t,
        rc: i32,
        chain: u32,
        kind: LockKind,
    ) -> io::Result<Acquired> {
        let mut result = Acquired::default();
        match rc {
            0 => self.held.add(true),
            libc::EOWNERDEAD => {
                // We own the mutex now, in "inconsistent" state.
                self.held.add(true);
                // SAFETY: as in `raw_lock`; we are the owner.
                let rc = unsafe { libc::pthread_mutex_consistent(m) };
                if rc != 0 {
                    self.raw_unlock(m);
                    return Err(os_err(rc));
                }
                result = Acquired { owner_died: true };
                let state = self.allrecord_lock().load(Ordering::SeqCst);
                if state == F_UNLCK || (state == F_RDLCK && kind == LockKind::Read) {
                    return Ok(result);
                }
            }
            rc => return Err(os_err(rc)),
        }
        // Held, but an allrecord lock is in the way: let go and take the
        // full path (which waits for the allrecord holder and retries).
        let rc = self.raw_unlock(m);
        if rc != 0 {
            return Err(os_err(rc));
        }
        self.lock_chain_slow(chain, kind, true, false)
            .map(|a| a.merge(result))
    }

    /// [`MutexArea::lock_chain`] in full: range check, try or wait, the
    /// allrecord dance unless another chain is held.
    #[cold]
    #[inline(never)]
    fn lock_chain_slow(
        &self,
        chain: u32,
        kind: LockKind,
        wait: bool,
        holding_other_chain: bool,
    ) -> io::Result<Acquired> {
        self.check_chain(chain)?;
        let m = self.chain_ptr(chain + 1);
        let mut result = Acquired::default();
        loop {
            result = result.merge(self.raw_lock(m, wait).map_err(os_err)?);
            if holding_other_chain {
                return Ok(result);
            }
            let state = self.allrecord_lock().load(Ordering::SeqCst);
            let ok = state == F_UNLCK || (state == F_RDLCK && kind == LockKind::Read);
            if ok {
                return Ok(result);
            }
            let rc = self.raw_unlock(m);
            if rc != 0 {
                return Err(os_err(rc));
            }
            result = result.merge(self.lock_allrecord_mutex(wait).map_err(os_err)?);
            let rc = self.raw_unlock(self.allrecord_mutex_ptr());
            if rc != 0 {
                return Err(os_err(rc));
            }
        }
    }

    /// Hint the CPU to start loading the mutex of chain `chain` for writing
    /// (overlaps that cache miss with hashing and the chain-head read). No
    /// effect for an out-of-range chain.
    #[inline]
    pub fn prefetch_chain(&self, chain: u32) {
        if chain >= self.hash_size {
            return;
        }
        #[cfg(target_arch = "x86_64")]
        {
            let p = self.chain_ptr(chain + 1);
            // A 40-byte mutex straddles two cache lines for half of the
            // chains, and a robust lock writes all of it (lock word, owner,
            // robust-list links): fetch both lines.
            let last = p.cast::<u8>().wrapping_add(MUTEX_SIZE - 1);
            // SAFETY: prefetching has no architectural side effects and
            // never faults; both addresses are inside the mapping anyway (I2).
            unsafe {
                std::arch::x86_64::_mm_prefetch(p as *const i8, std::arch::x86_64::_MM_HINT_ET0);
                std::arch::x86_64::_mm_prefetch(last as *const i8, std::arch::x86_64::_MM_HINT_ET0);
            };
        }
    }

    /// Unlock the mutex of chain `chain` held by this thread.
    #[inline(always)]
    pub fn unlock_chain(&self, chain: u32) -> io::Result<()> {
        self.check_chain(chain)?;
        match self.raw_unlock(self.chain_ptr(chain + 1)) {
            0 => Ok(()),
            rc => Err(os_err(rc)),
        }
    }

    /// Lock the free-list mutex (`hashchains[0]`); independent of the
    /// allrecord lock.
    pub fn lock_freelist(&self, wait: bool) -> io::Result<Acquired> {
        self.raw_lock(self.chain_ptr(0), wait).map_err(os_err)
    }

    /// Unlock the free-list mutex held by this thread.
    pub fn unlock_freelist(&self) -> io::Result<()> {
        match self.raw_unlock(self.chain_ptr(0)) {
            0 => Ok(()),
            rc => Err(os_err(rc)),
        }
    }

    /// Mutex part of the allrecord lock (libtdb's
    /// `tdb_mutex_allrecord_lock`): lock the allrecord mutex (kept until
    /// [`MutexArea::unlock_all`]), publish `kind` in `allrecord_lock`, then
    /// lock and unlock every chain mutex in turn to wait out current chain
    /// holders. The free-list mutex is not involved. The caller then takes
    /// the fcntl lock `[168 + 4 * hash_size, EOF)`.
    ///
    /// With `wait == false` any busy mutex makes it fail with
    /// `WouldBlock`, leaving nothing locked.
    pub fn lock_all(&self, kind: LockKind, wait: bool) -> io::Result<Acquired> {
        let mut result = self.lock_allrecord_mutex(wait).map_err(os_err)?;
        let lk = self.allrecord_lock();
        let state = lk.load(Ordering::SeqCst);
        if state != F_UNLCK {
            self.raw_unlock(self.allrecord_mutex_ptr());
            return Err(io::Error::other(format!(
                "mutex area: allrecord_lock is {state} under the allrecord mutex"
            )));
        }
        lk.store(
            if kind == LockKind::Read {
                F_RDLCK
            } else {
                F_WRLCK
            },
            Ordering::SeqCst,
        );
        match self.sweep_chains(wait) {
            Ok(r) => {
                result = result.merge(r);
                Ok(result)
            }
            Err(e) => {
                lk.store(F_UNLCK, Ordering::SeqCst);
                self.raw_unlock(self.allrecord_mutex_ptr());
                Err(e)
            }
        }
    }

    /// Lock and immediately unlock chains 0..hash_size.
    fn sweep_chains(&self, wait: bool) -> io::Result<Acquired> {
        let mut result = Acquired::default();
        for chain in 1..=self.hash_size {
            let m = self.chain_ptr(chain);
            result = result.merge(self.raw_lock(m, wait).map_err(os_err)?);
            let rc = self.raw_unlock(m);
            if rc != 0 {
                return Err(os_err(rc));
            }
        }
        Ok(result)
    }

    /// Upgrade a held read allrecord lock to write (libtdb's
    /// `tdb_mutex_allrecord_upgrade`, used by transaction commit): publish
    /// F_WRLCK and wait out every chain holder. On failure the state goes
    /// back to read.
    pub fn upgrade_all(&self) -> io::Result<()> {
        let lk = self.allrecord_lock();
        let state = lk.load(Ordering::SeqCst);
        if state != F_RDLCK {
            return Err(io::Error::other(format!(
                "mutex area: upgrade of allrecord lock in state {state}, not F_RDLCK"
            )));
        }
        lk.store(F_WRLCK, Ordering::SeqCst);
        if let Err(e) = self.sweep_chains(true) {
            lk.store(F_RDLCK, Ordering::SeqCst);
            return Err(e);
        }
        Ok(())
    }

    /// Turn a held write allrecord lock back into a read one (libtdb's
    /// `tdb_mutex_allrecord_downgrade`, after a failed upgrade).
    pub fn downgrade_all(&self) {
        let lk = self.allrecord_lock();
        if lk.load(Ordering::SeqCst) == F_WRLCK {
            lk.store(F_RDLCK, Ordering::SeqCst);
        }
    }

    /// Release the allrecord lock held by this thread (libtdb's
    /// `tdb_mutex_allrecord_unlock`): reset `allrecord_lock` to F_UNLCK and
    /// unlock the allrecord mutex. The caller releases the fcntl part.
    pub fn unlock_all(&self) -> io::Result<()> {
        let lk = self.allrecord_lock();
        let old = lk.load(Ordering::SeqCst);
        if old != F_RDLCK && old != F_WRLCK {
            return Err(io::Error::other(format!(
                "mutex area: unlock of allrecord lock in state {old}"
            )));
        }
        lk.store(F_UNLCK, Ordering::SeqCst);
        match self.raw_unlock(self.allrecord_mutex_ptr()) {
            0 => Ok(()),
            rc => {
                lk.store(old, Ordering::SeqCst);
                Err(os_err(rc))
            }
        }
    }
}

impl Drop for MutexArea {
    fn drop(&mut self) {
        if self.held.total() != 0 {
            // A thread still holds a mutex of this area: glibc's robust list
            // points into the mapping, so it must stay (I1). Leak it.
            return;
        }
        // SAFETY: `base`/`len` are exactly the mapping made in `map` (I1), no
        // mutex of it is held by this process, and `&mut self` proves no
        // other reference to the area exists.
        unsafe {
            libc::munmap(self.base.cast(), self.len);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::sync::Arc;

    fn temp_area(name: &str, hash_size: u32) -> (std::path::PathBuf, MutexArea) {
        let dir =
            std::env::temp_dir().join(format!("ctdb-engine-mutex-{}-{}", std::process::id(), name));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("m.tdb");
        let size = mutex_area_size(hash_size, page_size());
        let mut f = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .unwrap();
        f.write_all(&vec![0u8; size + TDB_HEADER_SIZE]).unwrap();
        let area = MutexArea::map(&f, hash_size, size as u32).unwrap();
        area.init().unwrap();
        (dir, area)
    }

    #[test]
    fn layout_constants() {
        assert!(
            platform_layout_matches(),
            "tests assume glibc x86_64 layout"
        );
        assert_eq!(ALLRECORD_MUTEX_OFFSET, 168);
        assert_eq!(ALLRECORD_LOCK_OFFSET, 208);
        assert_eq!(HASHCHAINS_OFFSET, 216);
        assert_eq!(mutex_area_size(3, 4096), 4096);
        assert_eq!(mutex_area_size(100_001, 4096), 4_001_792);
        assert_eq!(mutex_area_size(131, 4096), 8192);
        assert!(robust_mutexes_supported());
    }

    #[test]
    fn lock_index_mapping() {
        assert_eq!(mutex_index_for_lock(164, 1, 10), Some(MutexIndex::FreeList));
        assert_eq!(mutex_index_for_lock(168, 1, 10), Some(MutexIndex::Chain(0)));
        assert_eq!(
            mutex_index_for_lock(168 + 36, 1, 10),
            Some(MutexIndex::Chain(9))
        );
        // lock_offset(hash_size) is the allrecord fcntl range, not a mutex.
        assert_eq!(mutex_index_for_lock(168 + 40, 0, 10), None);
        assert_eq!(mutex_index_for_lock(168 + 40, 1, 10), None);
        assert_eq!(mutex_index_for_lock(0, 1, 10), None); // OPEN_LOCK
        assert_eq!(mutex_index_for_lock(168, 4, 10), None);
        assert_eq!(mutex_index_for_lock(169, 1, 10), None);
        assert_eq!(mutex_index_for_lock(168, 1, 0), None);
    }

    #[test]
    fn map_rejects_bad_sizes() {
        let (dir, _area) = temp_area("reject", 3);
        let f = File::options()
            .read(true)
            .write(true)
            .open(dir.join("m.tdb"))
            .unwrap();
        let err = MutexArea::map(&f, 3, 8192).unwrap_err();
        assert!(err.to_string().contains("mutex_size 8192"), "{err}");
        let err = MutexArea::map(&f, 100_001, 4_001_792).unwrap_err();
        assert!(err.to_string().contains("shorter"), "{err}");
        let err = MutexArea::map(&f, 0, 4096).unwrap_err();
        assert!(err.to_string().contains("hash_size is 0"), "{err}");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn chain_mutexes_exclude_threads() {
        let (dir, area) = temp_area("threads", 7);
        let area = Arc::new(area);
        area.lock_chain(3, LockKind::Write, true, false).unwrap();
        // Same thread again: error-checking mutex.
        let err = area
            .lock_chain(3, LockKind::Read, false, false)
            .unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EDEADLK));
        let a2 = Arc::clone(&area);
        let other = std::thread::spawn(move || {
            let busy = a2.lock_chain(3, LockKind::Read, false, false).unwrap_err();
            assert_eq!(busy.kind(), io::ErrorKind::WouldBlock);
            // A different chain is free.
            a2.lock_chain(4, LockKind::Write, false, false).unwrap();
            a2.unlock_chain(4).unwrap();
            // Blocking lock completes once the main thread unlocks.
            a2.lock_chain(3, LockKind::Write, true, false).unwrap();
            a2.unlock_chain(3).unwrap();
        });
        std::thread::sleep(std::time::Duration::from_millis(50));
        area.unlock_chain(3).unwrap();
        other.join().unwrap();
        // Unlocking what we don't hold is an error, not UB.
        assert_eq!(
            area.unlock_chain(3).unwrap_err().raw_os_error(),
            Some(libc::EPERM)
        );
        assert!(area.lock_chain(7, LockKind::Read, false, false).is_err());
        drop(area);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn allrecord_interplay() {
        let (dir, area) = temp_area("allrec", 5);
        let area = Arc::new(area);
        // Read allrecord lock admits chain readers but not writers.
        area.lock_all(LockKind::Read, false).unwrap();
        assert_eq!(area.allrecord_state(), Some(LockKind::Read));
        let a2 = Arc::clone(&area);
        std::thread::spawn(move || {
            a2.lock_chain(1, LockKind::Read, false, false).unwrap();
            a2.unlock_chain(1).unwrap();
            let e = a2.lock_chain(1, LockKind::Write, false, false).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
            // With another chain held the allrecord check is skipped.
            a2.lock_chain(2, LockKind::Read, false, false).unwrap();
            a2.lock_chain(1, LockKind::Write, false, true).unwrap();
            a2.unlock_chain(1).unwrap();
            a2.unlock_chain(2).unwrap();
            // The free list is independent of the allrecord lock.
            a2.lock_freelist(false).unwrap();
            a2.unlock_freelist().unwrap();
        })
        .join()
        .unwrap();
        area.upgrade_all().unwrap();
        assert_eq!(area.allrecord_state(), Some(LockKind::Write));
        let a2 = Arc::clone(&area);
        std::thread::spawn(move || {
            let e = a2.lock_chain(0, LockKind::Read, false, false).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
            let e = a2.lock_all(LockKind::Read, false).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
        })
        .join()
        .unwrap();
        area.downgrade_all();
        assert_eq!(area.allrecord_state(), Some(LockKind::Read));
        area.unlock_all().unwrap();
        assert_eq!(area.allrecord_state(), None);
        assert!(area.unlock_all().is_err());

        // A chain holder makes a non-blocking lock_all fail and leaves
        // nothing behind; a blocking one waits for the holder.
        area.lock_chain(4, LockKind::Write, true, false).unwrap();
        let a2 = Arc::clone(&area);
        let t = std::thread::spawn(move || {
            let e = a2.lock_all(LockKind::Write, false).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
            assert_eq!(a2.allrecord_state(), None);
            a2.lock_all(LockKind::Write, true).unwrap();
            a2.unlock_all().unwrap();
        });
        std::thread::sleep(std::time::Duration::from_millis(50));
        area.unlock_chain(4).unwrap();
        t.join().unwrap();
        drop(area);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn blocking_chain_lock_fast_path_edges() {
        let (dir, area) = temp_area("fastpath", 5);
        let area = Arc::new(area);
        // A dead owner seen by a blocking lock (EOWNERDEAD on the fast path).
        let a2 = Arc::clone(&area);
        std::thread::spawn(move || {
            a2.lock_chain(3, LockKind::Write, true, false).unwrap();
        })
        .join()
        .unwrap();
        let got = area.lock_chain(3, LockKind::Write, true, false).unwrap();
        assert!(got.owner_died);
        area.unlock_chain(3).unwrap();
        let got = area.lock_chain(3, LockKind::Write, true, false).unwrap();
        assert!(!got.owner_died);
        area.unlock_chain(3).unwrap();

        // A blocking chain write lock waits for a read allrecord lock held
        // by another thread, then gets through.
        area.lock_all(LockKind::Read, true).unwrap();
        let a2 = Arc::clone(&area);
        let (tx, rx) = std::sync::mpsc::channel();
        let t = std::thread::spawn(move || {
            a2.lock_chain(1, LockKind::Write, true, false).unwrap();
            tx.send(()).unwrap();
            a2.unlock_chain(1).unwrap();
        });
        assert!(rx
            .recv_timeout(std::time::Duration::from_millis(100))
            .is_err());
        area.unlock_all().unwrap();
        rx.recv_timeout(std::time::Duration::from_secs(10)).unwrap();
        t.join().unwrap();

        // A blocking chain read lock passes a read allrecord lock.
        area.lock_all(LockKind::Read, true).unwrap();
        let a2 = Arc::clone(&area);
        std::thread::spawn(move || {
            a2.lock_chain(1, LockKind::Read, true, false).unwrap();
            a2.unlock_chain(1).unwrap();
        })
        .join()
        .unwrap();
        area.unlock_all().unwrap();
        // An out-of-range chain is refused on the blocking path too.
        assert!(area.lock_chain(5, LockKind::Read, true, false).is_err());
        drop(area);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn dead_thread_owner_is_recovered() {
        let (dir, area) = temp_area("dead", 3);
        let area = Arc::new(area);
        let a2 = Arc::clone(&area);
        std::thread::spawn(move || {
            a2.lock_chain(2, LockKind::Write, true, false).unwrap();
            a2.lock_all(LockKind::Write, false).unwrap_err();
            // exit while holding chain 2
        })
        .join()
        .unwrap();
        let got = area.lock_chain(2, LockKind::Write, false, false).unwrap();
        assert!(got.owner_died);
        area.unlock_chain(2).unwrap();
        let got = area.lock_chain(2, LockKind::Write, false, false).unwrap();
        assert!(!got.owner_died);
        area.unlock_chain(2).unwrap();

        // Allrecord holder dies: state is reset to unlocked.
        let a2 = Arc::clone(&area);
        std::thread::spawn(move || {
            a2.lock_all(LockKind::Write, true).unwrap();
        })
        .join()
        .unwrap();
        assert_eq!(area.allrecord_state(), Some(LockKind::Write));
        let got = area.lock_chain(0, LockKind::Write, true, false).unwrap();
        assert!(got.owner_died);
        assert_eq!(area.allrecord_state(), None);
        area.unlock_chain(0).unwrap();
        drop(area);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
