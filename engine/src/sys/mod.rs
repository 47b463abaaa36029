//! The only place in the engine that talks to the kernel or touches raw
//! memory: open-file-description byte-range locks, file growth, and the
//! shared mapping ([`map`]). Everything above this module is safe Rust.
//!
//! Locks are Linux OFD locks (`F_OFD_SETLK`/`F_OFD_SETLKW`). They are owned by
//! the open file description, so two cores of this process, each with its own
//! `open(2)` of the database file, exclude each other exactly as two processes
//! do, while libtdb's classic per-process POSIX locks still conflict with
//! them (the kernel checks both kinds against each other). Closing one core's
//! descriptor never drops another core's locks.

pub mod map;
pub mod mutex;

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;

/// Shared (`F_RDLCK`) or exclusive (`F_WRLCK`) byte-range lock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LockType {
    Read,
    Write,
}

fn flock_for(kind: libc::c_short, off: u64, len: u64) -> io::Result<libc::flock> {
    let start =
        libc::off_t::try_from(off).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    let len = libc::off_t::try_from(len).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: `flock` is a plain C struct for which all-zero bytes is a valid
    // value (l_pid must be 0 for OFD locks).
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = kind;
    fl.l_whence = libc::SEEK_SET as libc::c_short;
    fl.l_start = start;
    fl.l_len = len;
    fl.l_pid = 0;
    Ok(fl)
}

/// Take an OFD lock on `[off, off+len)` (`len == 0`: to end of file).
/// Returns `Ok(false)` if `wait` is false and the range is busy.
pub fn lock(file: &File, ty: LockType, off: u64, len: u64, wait: bool) -> io::Result<bool> {
    let kind = match ty {
        LockType::Read => libc::F_RDLCK,
        LockType::Write => libc::F_WRLCK,
    } as libc::c_short;
    let fl = flock_for(kind, off, len)?;
    let cmd = if wait {
        libc::F_OFD_SETLKW
    } else {
        libc::F_OFD_SETLK
    };
    loop {
        // SAFETY: `fl` is a valid, initialised flock that outlives the call;
        // the fd is owned by `file` and open for the duration of the call.
        let r = unsafe { libc::fcntl(file.as_raw_fd(), cmd, &fl as *const libc::flock) };
        if r == 0 {
            return Ok(true);
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EINTR) => continue,
            Some(libc::EAGAIN) | Some(libc::EACCES) if !wait => return Ok(false),
            _ => return Err(e),
        }
    }
}

/// Would a write lock on `[off, off+len)` conflict with a lock held through
/// another open file description or by another process? (`F_OFD_GETLK`)
pub fn write_lock_conflicts(file: &File, off: u64, len: u64) -> io::Result<bool> {
    let mut fl = flock_for(libc::F_WRLCK as libc::c_short, off, len)?;
    loop {
        // SAFETY: `fl` is a valid, initialised flock the kernel may write
        // back into; the fd is owned by `file`.
        let r = unsafe {
            libc::fcntl(
                file.as_raw_fd(),
                libc::F_OFD_GETLK,
                &mut fl as *mut libc::flock,
            )
        };
        if r == 0 {
            return Ok(fl.l_type != libc::F_UNLCK as libc::c_short);
        }
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EINTR) {
            return Err(e);
        }
    }
}

/// Release an OFD lock on `[off, off+len)`.
pub fn unlock(file: &File, off: u64, len: u64) -> io::Result<()> {
    let fl = flock_for(libc::F_UNLCK as libc::c_short, off, len)?;
    loop {
        // SAFETY: as in `lock`: valid flock, fd owned by `file`.
        let r = unsafe {
            libc::fcntl(
                file.as_raw_fd(),
                libc::F_OFD_SETLK,
                &fl as *const libc::flock,
            )
        };
        if r == 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EINTR) {
            return Err(e);
        }
    }
}

/// Release every OFD lock held through `file`'s open file description
/// (`F_UNLCK` over `[0, EOF)`). The kernel needs no spare lock structures
/// for a whole-file unlock, so this is cheaper than [`unlock`] of one range
/// (~120 ns per call here); use it when the caller knows it holds exactly
/// one lock through this descriptor. Locks of other descriptors of the same
/// file (other cores' handles, the database's open/active locks) and of
/// other processes are untouched.
pub fn unlock_all(file: &File) -> io::Result<()> {
    unlock(file, 0, 0)
}

/// Grow `file` so that `[off, off+len)` is allocated (zero-filled), like
/// libtdb's `posix_fallocate` path. Falls back to `set_len` where the file
/// system cannot preallocate.
pub fn allocate(file: &File, off: u64, len: u64) -> io::Result<()> {
    let o = libc::off_t::try_from(off).map_err(|_| io::Error::from_raw_os_error(libc::EFBIG))?;
    let l = libc::off_t::try_from(len).map_err(|_| io::Error::from_raw_os_error(libc::EFBIG))?;
    loop {
        // SAFETY: plain syscall on an fd owned by `file`; no memory is passed.
        let r = unsafe { libc::posix_fallocate(file.as_raw_fd(), o, l) };
        match r {
            0 => return Ok(()),
            libc::EINTR => continue,
            libc::EOPNOTSUPP | libc::EINVAL => {
                let end = off + len;
                if file.metadata()?.len() < end {
                    file.set_len(end)?;
                }
                return Ok(());
            }
            e => return Err(io::Error::from_raw_os_error(e)),
        }
    }
}

/// The system page size (mapping and file-growth granularity).
pub fn page_size() -> u32 {
    // SAFETY: sysconf has no memory-safety preconditions.
    let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if p <= 0 {
        4096
    } else {
        p as u32
    }
}

/// End the process immediately, as a crash would: no destructors, no
/// unlocking, no buffered output, and (unlike `abort`) no core dump.
/// Used only by the commit crash-point test aid.
pub fn crash_now() -> ! {
    // SAFETY: `_exit` takes no pointers and never returns.
    unsafe { libc::_exit(134) }
}
