//! Opening a TDB file (libtdb's `tdb_open_ex` sequence) and handing out
//! per-core partitions of it.

use std::fs::{File, OpenOptions as FsOpenOptions};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::format::*;
use crate::store::CoreStore;
use crate::sys::mutex::MutexArea;
use crate::sys::{self, LockType};

/// How to open a database. `tdb_flags` are tdb.h's `TDB_*` values
/// ([`crate::flags`]); supported: CLEAR_IF_FIRST, NOLOCK, NOSYNC, SEQNUM,
/// VOLATILE, ALLOW/DISALLOW_NESTING, INCOMPATIBLE_HASH, MUTEX_LOCKING.
#[derive(Clone, Debug)]
pub struct OpenOptions {
    pub hash_size: u32,
    pub tdb_flags: u32,
    pub create: bool,
    pub read_only: bool,
    pub mode: u32,
    /// Dead records kept per chain for reuse (`tdb_set_max_dead`); default
    /// 5 with TDB_VOLATILE, else 0. ctdbd sets 5 on every database.
    pub max_dead: Option<u32>,
}

impl Default for OpenOptions {
    fn default() -> Self {
        OpenOptions {
            hash_size: 131,
            tdb_flags: 0,
            create: true,
            read_only: false,
            mode: 0o600,
            max_dead: None,
        }
    }
}

impl OpenOptions {
    pub fn new() -> OpenOptions {
        OpenOptions::default()
    }
    pub fn hash_size(mut self, n: u32) -> Self {
        self.hash_size = n;
        self
    }
    pub fn tdb_flags(mut self, f: u32) -> Self {
        self.tdb_flags = f;
        self
    }
    pub fn create(mut self, c: bool) -> Self {
        self.create = c;
        self
    }
    pub fn read_only(mut self, r: bool) -> Self {
        self.read_only = r;
        self
    }
    pub fn mode(mut self, m: u32) -> Self {
        self.mode = m;
        self
    }
    pub fn max_dead(mut self, n: u32) -> Self {
        self.max_dead = Some(n);
        self
    }
}

/// State shared by every handle of one open database.
pub(crate) struct Shared {
    pub path: PathBuf,
    pub hash_size: u32,
    pub hash: HashKind,
    pub tdb_flags: u32,
    pub hdr_ofs: u64,
    pub max_dead: u32,
    pub page_size: u32,
    pub read_only: bool,
    pub nolock: bool,
    pub mutex: Option<MutexArea>,
    /// The descriptor that holds the ACTIVE_LOCK read lock for the life of
    /// the database (CLEAR_IF_FIRST / mutex users); also where a
    /// [`crate::ChainWaiter`] waits in fcntl mode.
    pub main: File,
}

/// An open TDB file. Cheap to clone; every clone and every partition share
/// the file. Partitions each open their own descriptor (own OFD locks, own
/// mapping).
#[derive(Clone)]
pub struct Database {
    sh: Arc<Shared>,
}

impl std::fmt::Debug for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Database")
            .field("path", &self.sh.path)
            .field("hash_size", &self.sh.hash_size)
            .field("hash", &self.sh.hash)
            .field("tdb_flags", &self.sh.tdb_flags)
            .finish()
    }
}

fn io<'a>(path: &'a Path, op: &'static str) -> impl FnOnce(std::io::Error) -> Error + 'a {
    move |source| Error::Io {
        path: path.to_path_buf(),
        op,
        source,
    }
}

fn bad(path: &Path, what: impl Into<String>) -> Error {
    Error::BadHeader {
        path: path.to_path_buf(),
        what: what.into(),
    }
}

fn lock_err(path: &Path, off: u64) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |e| Error::Lock {
        path: path.to_path_buf(),
        offset: off,
        what: e.to_string(),
    }
}

/// Write a brand-new database (libtdb's `tdb_new_database`) and, in mutex
/// mode, the mutex area.
fn new_database(
    file: &File,
    path: &Path,
    hash_size: u32,
    hash: HashKind,
    mutex_size: u64,
) -> Result<()> {
    let img = Header::new_db_image(hash_size, hash, mutex_size as u32);
    file.set_len(0).map_err(io(path, "truncate"))?;
    file.write_all_at(&img, 0)
        .map_err(io(path, "write header"))?;
    if mutex_size != 0 {
        file.set_len(mutex_size + HEADER_SIZE as u64)
            .map_err(io(path, "truncate"))?;
        let area = MutexArea::map(file, hash_size, mutex_size as u32)
            .map_err(io(path, "map mutex area"))?;
        area.init().map_err(io(path, "init mutexes"))?;
        drop(area);
        file.write_all_at(&img, mutex_size)
            .map_err(io(path, "write header"))?;
    }
    Ok(())
}

impl Database {
    /// Open (or create) a TDB file, following libtdb's open sequence:
    /// OPEN_LOCK, CLEAR_IF_FIRST wipe when first, header validation and hash
    /// selection, ACTIVE_LOCK read lock, transaction recovery.
    pub fn open(path: impl AsRef<Path>, opts: &OpenOptions) -> Result<Database> {
        let path = path.as_ref();
        let mut tflags = opts.tdb_flags;
        let unsupported = flags::INTERNAL | flags::NOMMAP | flags::CONVERT | flags::BIGENDIAN;
        if tflags & unsupported != 0 {
            return Err(Error::Invalid {
                what: format!("unsupported tdb flags 0x{:x}", tflags & unsupported),
            });
        }
        if opts.read_only {
            tflags &= !(flags::CLEAR_IF_FIRST | flags::MUTEX_LOCKING);
            tflags |= flags::NOLOCK;
        }
        if tflags & flags::DISALLOW_NESTING == 0 {
            // As libtdb, so that tdb_flags() matches tdb_get_flags().
            tflags |= flags::ALLOW_NESTING;
        }
        if tflags & flags::MUTEX_LOCKING != 0 {
            tflags |= flags::INCOMPATIBLE_HASH;
            if tflags & flags::NOLOCK != 0 {
                return Err(Error::Invalid {
                    what: "MUTEX_LOCKING with NOLOCK".into(),
                });
            }
            if !crate::sys::mutex::platform_layout_matches()
                || !crate::sys::mutex::robust_mutexes_supported()
            {
                return Err(Error::Invalid {
                    what: "robust mutexes not supported on this platform".into(),
                });
            }
        }
        if opts.hash_size == 0 && opts.create {
            return Err(Error::Invalid {
                what: "hash_size 0".into(),
            });
        }
        let nolock = tflags & flags::NOLOCK != 0;
        let page_size = sys::page_size();
        let file = FsOpenOptions::new()
            .read(true)
            .write(!opts.read_only)
            .create(opts.create && !opts.read_only)
            .mode(opts.mode)
            .open(path)
            .map_err(io(path, "open"))?;

        if !nolock {
            sys::lock(&file, LockType::Write, OPEN_LOCK, 1, true)
                .map_err(lock_err(path, OPEN_LOCK))?;
        }
        let r = Self::open_locked(path, &file, opts, tflags, nolock, page_size);
        if !nolock {
            let _ = sys::unlock(&file, OPEN_LOCK, 1);
        }
        let sh = r?;
        let db = Database {
            sh: Arc::new(Shared { main: file, ..sh }),
        };
        // Replay an interrupted transaction (under the open lock in libtdb;
        // here under the same FREELIST_TOP..EOF + OPEN_LOCK locks libtdb's
        // lock-and-recover uses).
        if !db.sh.read_only {
            let mut h = db.partition(0, 1)?;
            if h.needs_recovery() {
                h.lock_and_recover()?;
            }
        } else {
            let mut h = db.partition(0, 1)?;
            if h.needs_recovery() {
                return Err(Error::Corrupt {
                    path: path.to_path_buf(),
                    offset: OFF_RECOVERY as u64,
                    what: "database needs transaction recovery but is opened read-only".into(),
                });
            }
        }
        Ok(db)
    }

    fn open_locked(
        path: &Path,
        file: &File,
        opts: &OpenOptions,
        tflags: u32,
        nolock: bool,
        page_size: u32,
    ) -> Result<Shared> {
        let want_hash = if tflags & flags::INCOMPATIBLE_HASH != 0 {
            HashKind::Jenkins
        } else {
            HashKind::Old
        };
        let want_mutex = tflags & flags::MUTEX_LOCKING != 0;
        let mut active_w = false;
        if tflags & flags::CLEAR_IF_FIRST != 0 && !opts.read_only && !nolock {
            active_w = sys::lock(file, LockType::Write, ACTIVE_LOCK, 1, false)
                .map_err(lock_err(path, ACTIVE_LOCK))?;
            if active_w {
                sys::lock(file, LockType::Write, FREELIST_TOP as u64, 0, true)
                    .map_err(lock_err(path, FREELIST_TOP as u64))?;
                let ms = if want_mutex {
                    crate::sys::mutex::mutex_area_size(opts.hash_size, page_size as usize) as u64
                } else {
                    0
                };
                let r = new_database(file, path, opts.hash_size, want_hash, ms);
                let _ = sys::unlock(file, FREELIST_TOP as u64, 0);
                r?;
            }
        }
        let flen = file.metadata().map_err(io(path, "fstat"))?.len();
        if flen == 0 {
            if !opts.create || opts.read_only {
                return Err(bad(path, "empty file"));
            }
            let ms = if want_mutex {
                crate::sys::mutex::mutex_area_size(opts.hash_size, page_size as usize) as u64
            } else {
                0
            };
            new_database(file, path, opts.hash_size, want_hash, ms)?;
        }
        let mut hb = [0u8; HEADER_SIZE as usize];
        let flen = file.metadata().map_err(io(path, "fstat"))?.len();
        if flen < HEADER_SIZE as u64 {
            return Err(bad(
                path,
                format!("file is {flen} bytes, shorter than the 168-byte header"),
            ));
        }
        file.read_exact_at(&mut hb, 0)
            .map_err(io(path, "read header"))?;
        if &hb[..MAGIC_FOOD.len()] != MAGIC_FOOD {
            return Err(bad(path, "magic is not \"TDB file\""));
        }
        let hdr = Header::parse(&hb).ok_or_else(|| bad(path, "short header"))?;
        if hdr.version != TDB_VERSION {
            if hdr.version == TDB_VERSION.swap_bytes() {
                return Err(bad(
                    path,
                    "byte-swapped (other-endian) TDB files are not supported",
                ));
            }
            return Err(bad(
                path,
                format!(
                    "version 0x{:08x}, expected 0x{:08x}",
                    hdr.version, TDB_VERSION
                ),
            ));
        }
        if hdr.rwlocks != 0
            && hdr.rwlocks != TDB_FEATURE_FLAG_MAGIC
            && hdr.rwlocks != TDB_HASH_RWLOCK_MAGIC
        {
            return Err(bad(
                path,
                format!(
                    "rwlocks 0x{:08x} (spinlock files are not supported)",
                    hdr.rwlocks
                ),
            ));
        }
        if hdr.hash_size == 0 {
            return Err(bad(path, "hash_size is 0"));
        }
        if hdr.hash_size > u32::MAX / 4 - 64 {
            return Err(bad(path, format!("hash_size {} too large", hdr.hash_size)));
        }
        let features = if hdr.rwlocks == TDB_FEATURE_FLAG_MAGIC {
            hdr.feature_flags
        } else {
            0
        };
        if features & !TDB_FEATURE_FLAG_MUTEX != 0 {
            return Err(bad(path, format!("unknown feature flags 0x{features:08x}")));
        }
        let mut hdr_ofs = 0u64;
        let mut mutex = None;
        if features & TDB_FEATURE_FLAG_MUTEX != 0 {
            let expect =
                crate::sys::mutex::mutex_area_size(hdr.hash_size, page_size as usize) as u64;
            if !nolock {
                if !want_mutex {
                    return Err(bad(
                        path,
                        "file uses mutex locking; open with MUTEX_LOCKING (or NOLOCK)",
                    ));
                }
                if hdr.mutex_size as u64 != expect {
                    return Err(bad(
                        path,
                        format!(
                            "mutex_size {} but this platform needs {expect}",
                            hdr.mutex_size
                        ),
                    ));
                }
            }
            if hdr.mutex_size == 0 || hdr.mutex_size & (page_size - 1) != 0 {
                return Err(bad(
                    path,
                    format!("mutex_size {} is not page aligned", hdr.mutex_size),
                ));
            }
            hdr_ofs = hdr.mutex_size as u64;
            if flen < hdr_ofs + HEADER_SIZE as u64 {
                return Err(bad(path, "file shorter than its mutex area plus header"));
            }
            if !nolock {
                let area = MutexArea::map(file, hdr.hash_size, hdr.mutex_size)
                    .map_err(io(path, "map mutex area"))?;
                if tflags & flags::CLEAR_IF_FIRST == 0 && !opts.read_only {
                    let first = sys::lock(file, LockType::Write, ACTIVE_LOCK, 1, false)
                        .map_err(lock_err(path, ACTIVE_LOCK))?;
                    if first {
                        area.init().map_err(io(path, "init mutexes"))?;
                        active_w = true;
                    }
                }
                mutex = Some(area);
            }
        }
        // A non-mutex file opened with MUTEX_LOCKING simply uses fcntl locks;
        // like libtdb, the flag stays in tdb_flags().
        let hash = if hdr.magic1_hash == 0 && hdr.magic2_hash == 0 {
            HashKind::Old
        } else {
            let other = if want_hash == HashKind::Old {
                HashKind::Jenkins
            } else {
                HashKind::Old
            };
            if want_hash.magic_hashes() == (hdr.magic1_hash, hdr.magic2_hash) {
                want_hash
            } else if other.magic_hashes() == (hdr.magic1_hash, hdr.magic2_hash) {
                other
            } else {
                return Err(bad(
                    path,
                    format!(
                        "magic hashes 0x{:08x}/0x{:08x} match neither built-in hash function",
                        hdr.magic1_hash, hdr.magic2_hash
                    ),
                ));
            }
        };
        let need = hdr_ofs + data_start(hdr.hash_size);
        if flen < need {
            return Err(bad(
                path,
                format!("file is {flen} bytes, hash table needs {need}"),
            ));
        }
        if active_w {
            let _ = sys::unlock(file, ACTIVE_LOCK, 1);
        }
        if (active_w || tflags & flags::CLEAR_IF_FIRST != 0) && !nolock {
            sys::lock(file, LockType::Read, ACTIVE_LOCK, 1, true)
                .map_err(lock_err(path, ACTIVE_LOCK))?;
        }
        let max_dead = opts
            .max_dead
            .unwrap_or(if tflags & flags::VOLATILE != 0 { 5 } else { 0 });
        // A placeholder descriptor; `open` replaces it with the real one.
        let placeholder = file.try_clone().map_err(io(path, "dup"))?;
        Ok(Shared {
            path: path.to_path_buf(),
            hash_size: hdr.hash_size,
            hash,
            tdb_flags: tflags,
            hdr_ofs,
            max_dead,
            page_size,
            read_only: opts.read_only,
            nolock,
            mutex,
            main: placeholder,
        })
    }

    /// A handle owning the `core`-th of `ncores` contiguous ranges of hash
    /// chains (see [`crate::format::chain_owner`]). Each
    /// call opens a new descriptor of the file.
    pub fn partition(&self, core: usize, ncores: usize) -> Result<CoreStore> {
        if ncores == 0 || core >= ncores {
            return Err(Error::Invalid {
                what: format!("partition {core} of {ncores}"),
            });
        }
        let file = FsOpenOptions::new()
            .read(true)
            .write(!self.sh.read_only)
            .open(&self.sh.path)
            .map_err(io(&self.sh.path, "open"))?;
        CoreStore::new(self.sh.clone(), file, core, ncores)
    }

    /// A handle owning every chain (transactions, wipe, check, lockall).
    pub fn handle(&self) -> Result<CoreStore> {
        self.partition(0, 1)
    }

    /// Which of `ncores` partitions owns `key`.
    pub fn owner_of(&self, key: &[u8], ncores: usize) -> usize {
        if ncores <= 1 {
            return 0;
        }
        chain_owner(
            self.sh.hash.hash(key) % self.sh.hash_size,
            self.sh.hash_size,
            ncores,
        )
    }

    pub fn path(&self) -> &Path {
        &self.sh.path
    }

    pub fn hash_size(&self) -> u32 {
        self.sh.hash_size
    }

    pub fn hash_kind(&self) -> HashKind {
        self.sh.hash
    }

    /// The effective tdb flags (as ctdbd's DB_OPEN_FLAGS reports them).
    pub fn tdb_flags(&self) -> u32 {
        self.sh.tdb_flags
    }

    /// True if chain locks are robust pthread mutexes.
    pub fn uses_mutexes(&self) -> bool {
        self.sh.mutex.is_some()
    }
}

/// Open a database image given as bytes (a copy is written to a private
/// temporary file), run every read path over it and return the first error.
/// Never panics on any input; used by the fuzz test.
pub fn fuzz_open(bytes: &[u8]) -> Result<()> {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let dir = std::env::temp_dir().join(format!("ctdb-engine-fuzz-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(io(&dir, "mkdir"))?;
    let path = dir.join(format!("f{}.tdb", N.fetch_add(1, Ordering::Relaxed)));
    std::fs::write(&path, bytes).map_err(io(&path, "write"))?;
    let r = (|| -> Result<()> {
        let db = Database::open(
            &path,
            &OpenOptions::new().create(false).tdb_flags(flags::NOSYNC),
        )?;
        let mut h = db.handle()?;
        h.check()?;
        let mut n = 0u64;
        h.traverse_read(|_, _| {
            n += 1;
            crate::Walk::Continue
        })?;
        for k in [&b"key"[..], b"", b"a", b"some longer key"] {
            let _ = h.fetch(k)?;
        }
        h.store(b"fuzz", b"value", crate::StoreFlag::Replace)?;
        h.delete(b"fuzz")?;
        h.transaction_start()?;
        let r = h.store(b"fuzz-tx", &[7u8; 100], crate::StoreFlag::Replace);
        match r {
            Ok(()) => h.transaction_commit()?,
            Err(e) => {
                h.transaction_cancel()?;
                return Err(e);
            }
        }
        h.check()?;
        Ok(())
    })();
    let _ = std::fs::remove_file(&path);
    r
}

/// Remove the (empty) scratch directory [`fuzz_open`] uses in this process.
pub fn fuzz_cleanup() {
    let dir = std::env::temp_dir().join(format!("ctdb-engine-fuzz-{}", std::process::id()));
    let _ = std::fs::remove_dir(dir);
}
