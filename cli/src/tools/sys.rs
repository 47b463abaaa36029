//! The tools' only `unsafe`: classic POSIX `fcntl` byte-range locks (which
//! `ping_pong` exists to exercise, and which std does not expose), a shared
//! file mapping for `ping_pong -m`, pipes, and the signal dispositions the
//! C and shell originals have (SIGPIPE default; onnode's INT/TERM trap that
//! terminates the commands it started).

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicI32, AtomicUsize, Ordering};

/// Restore the default SIGPIPE action (Rust ignores it), so writing to a
/// closed pipe ends the tool silently like the C originals.
pub fn default_sigpipe() {
    // SAFETY: setting a standard disposition (SIG_DFL) for SIGPIPE has no
    // memory-safety preconditions.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// Kind of an fcntl lock request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockKind {
    Read,
    Write,
    Unlock,
}

impl LockKind {
    fn raw(self) -> libc::c_short {
        (match self {
            LockKind::Read => libc::F_RDLCK,
            LockKind::Write => libc::F_WRLCK,
            LockKind::Unlock => libc::F_UNLCK,
        }) as libc::c_short
    }
}

fn flock(kind: LockKind, start: i64, len: i64) -> libc::flock {
    // SAFETY: `struct flock` is plain integers; all-zero is a valid value.
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = kind.raw();
    fl.l_whence = libc::SEEK_SET as libc::c_short;
    fl.l_start = start as libc::off_t;
    fl.l_len = len as libc::off_t;
    fl.l_pid = 0;
    fl
}

/// `fcntl(F_SETLK / F_SETLKW)`: a classic (process-owned) POSIX lock.
pub fn posix_lock(file: &File, kind: LockKind, start: i64, len: i64, wait: bool) -> io::Result<()> {
    let fl = flock(kind, start, len);
    let cmd = if wait { libc::F_SETLKW } else { libc::F_SETLK };
    // SAFETY: the descriptor is owned by `file` and open; `fl` is a valid
    // `struct flock` that lives across the call.
    let r = unsafe { libc::fcntl(file.as_raw_fd(), cmd, &fl) };
    if r == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// A conflicting lock reported by `F_GETLK`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Holder {
    pub pid: i32,
    pub kind: i32,
    pub start: i64,
    pub len: i64,
}

/// `fcntl(F_GETLK)`: who would stop a lock of `kind` on the range.
pub fn lock_holder(
    file: &File,
    kind: LockKind,
    start: i64,
    len: i64,
) -> io::Result<Option<Holder>> {
    let mut fl = flock(kind, start, len);
    // SAFETY: as in `posix_lock`; F_GETLK writes only into `fl`.
    let r = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_GETLK, &mut fl) };
    if r == -1 {
        return Err(io::Error::last_os_error());
    }
    if fl.l_type == libc::F_UNLCK as libc::c_short {
        return Ok(None);
    }
    Ok(Some(Holder {
        pid: fl.l_pid,
        kind: fl.l_type as i32,
        start: fl.l_start,
        len: fl.l_len,
    }))
}

/// A `MAP_SHARED` read/write mapping of the first `len` bytes of a file,
/// accessed bytewise with volatile loads and stores (other processes change
/// it concurrently).
pub struct SharedMap {
    ptr: *mut u8,
    len: usize,
}

impl SharedMap {
    pub fn new(file: &File, len: usize) -> io::Result<SharedMap> {
        if len == 0 {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        }
        // SAFETY: a fresh mapping chosen by the kernel (addr NULL) over an
        // open descriptor; the result is checked for MAP_FAILED.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(SharedMap {
            ptr: p as *mut u8,
            len,
        })
    }

    pub fn get(&self, i: usize) -> u8 {
        assert!(i < self.len, "mapping index {i} out of range {}", self.len);
        // SAFETY: `i < len` and the mapping of `len` bytes lives until drop;
        // volatile because other processes write the shared page.
        unsafe { std::ptr::read_volatile(self.ptr.add(i)) }
    }

    pub fn set(&self, i: usize, v: u8) {
        assert!(i < self.len, "mapping index {i} out of range {}", self.len);
        // SAFETY: as in `get`; the mapping is writable (PROT_WRITE).
        unsafe { std::ptr::write_volatile(self.ptr.add(i), v) }
    }
}

impl Drop for SharedMap {
    fn drop(&mut self) {
        // SAFETY: exactly the region returned by mmap in `new`, unmapped once.
        unsafe {
            libc::munmap(self.ptr as *mut libc::c_void, self.len);
        }
    }
}

/// A close-on-exec pipe: (read end, write end).
pub fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: `fds` has room for the two descriptors pipe2 writes.
    let r = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
    if r == -1 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: pipe2 succeeded, so both are fresh descriptors nobody owns.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

const MAX_TRACKED: usize = 4096;
static CHILDREN: [AtomicI32; MAX_TRACKED] = [const { AtomicI32::new(0) }; MAX_TRACKED];
static NCHILDREN: AtomicUsize = AtomicUsize::new(0);

extern "C" fn terminate_children(_sig: libc::c_int) {
    let n = NCHILDREN.load(Ordering::SeqCst).min(MAX_TRACKED);
    for slot in CHILDREN.iter().take(n) {
        let pid = slot.load(Ordering::SeqCst);
        if pid > 0 {
            // SAFETY: kill() is async-signal-safe; `pid` is a child we
            // started and have not reaped yet (slots are cleared on reap).
            unsafe {
                libc::kill(pid, libc::SIGTERM);
            }
        }
    }
}

/// onnode's `trap 'kill -TERM $pids' INT TERM`: on SIGINT/SIGTERM send
/// SIGTERM to every child registered with [`track_child`] and carry on
/// waiting. Handlers reset to the default in exec'd children.
pub fn trap_int_term() {
    let handler = terminate_children as extern "C" fn(libc::c_int) as libc::sighandler_t;
    // SAFETY: the handler only reads atomics and calls kill(), both
    // async-signal-safe.
    unsafe {
        libc::signal(libc::SIGINT, handler);
        libc::signal(libc::SIGTERM, handler);
    }
}

/// Remember a child for [`trap_int_term`]; returns its slot.
pub fn track_child(pid: u32) -> Option<usize> {
    let i = NCHILDREN.fetch_add(1, Ordering::SeqCst);
    if i >= MAX_TRACKED {
        return None;
    }
    CHILDREN[i].store(pid as i32, Ordering::SeqCst);
    Some(i)
}

/// Forget a child once it has been reaped (its pid may be reused).
pub fn untrack_child(slot: Option<usize>) {
    if let Some(i) = slot {
        CHILDREN[i].store(0, Ordering::SeqCst);
    }
}
