//! Every system call the daemon makes through `libc`, and the only module
//! with `unsafe` in this crate. Each function is a thin, checked wrapper that
//! returns `io::Result`; callers never see raw pointers.

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd};
use std::os::unix::net::UnixStream as StdUnixStream;

fn check(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// The calling thread's kernel id.
pub fn gettid() -> i32 {
    // SAFETY: gettid has no arguments and cannot fail.
    unsafe { libc::gettid() }
}

pub fn getpid() -> i32 {
    std::process::id() as i32
}

/// Whether a process with this pid exists (`kill(pid, 0)`; EPERM means it
/// exists but is not ours). Non-positive pids never "exist".
pub fn process_exists(pid: i32) -> bool {
    if pid <= 0 {
        return false;
    }
    // SAFETY: signal 0 only checks for existence and permission.
    let r = unsafe { libc::kill(pid, 0) };
    r == 0 || io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// Sets the calling thread's kernel name (`comm`, at most 15 bytes shown
/// by ps and top).
pub fn set_thread_name(name: &str) -> io::Result<()> {
    let mut buf = [0u8; 16];
    let n = name.len().min(15);
    buf[..n].copy_from_slice(&name.as_bytes()[..n]);
    // SAFETY: PR_SET_NAME reads a NUL-terminated string of at most 16
    // bytes; `buf` is 16 bytes with a NUL at the end at the latest.
    check(unsafe { libc::prctl(libc::PR_SET_NAME, buf.as_ptr() as libc::c_ulong, 0, 0, 0) })
        .map(|_| ())
}

/// Puts the calling thread under SCHED_FIFO at `priority` (upstream uses 1).
pub fn set_fifo(priority: i32) -> io::Result<()> {
    let param = libc::sched_param {
        sched_priority: priority,
    };
    // SAFETY: pid 0 means the calling thread; `param` is a valid, live
    // sched_param for the duration of the call.
    check(unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO, &param) }).map(|_| ())
}

/// Scheduling policy of thread `tid` (0 = calling thread), e.g.
/// `libc::SCHED_FIFO`.
pub fn sched_policy(tid: i32) -> io::Result<i32> {
    // SAFETY: plain syscall with an integer argument.
    check(unsafe { libc::sched_getscheduler(tid) })
}

/// CPUs thread `tid` (0 = calling thread) may run on, ascending.
pub fn affinity(tid: i32) -> io::Result<Vec<usize>> {
    // SAFETY: cpu_set_t is plain data; all-zero is a valid empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid cpu_set_t of the size passed.
    check(unsafe {
        libc::sched_getaffinity(tid, std::mem::size_of::<libc::cpu_set_t>(), &mut set)
    })?;
    let mut cpus = Vec::new();
    for cpu in 0..libc::CPU_SETSIZE as usize {
        // SAFETY: `cpu` is below CPU_SETSIZE, so CPU_ISSET stays in bounds.
        if unsafe { libc::CPU_ISSET(cpu, &set) } {
            cpus.push(cpu);
        }
    }
    Ok(cpus)
}

/// Locks current and future pages of the process into memory.
pub fn mlockall() -> io::Result<()> {
    // SAFETY: plain syscall with flag arguments.
    check(unsafe { libc::mlockall(libc::MCL_CURRENT | libc::MCL_FUTURE) }).map(|_| ())
}

/// RLIMIT_MEMLOCK as (soft, hard) in bytes; `u64::MAX` means unlimited.
pub fn memlock_limit() -> io::Result<(u64, u64)> {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `r` is a valid rlimit to write into.
    check(unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut r) })?;
    let conv = |v: libc::rlim_t| {
        if v == libc::RLIM_INFINITY {
            u64::MAX
        } else {
            v
        }
    };
    Ok((conv(r.rlim_cur), conv(r.rlim_max)))
}

/// Sets the soft RLIMIT_MEMLOCK (the hard limit is left alone).
pub fn set_memlock_soft(soft: u64) -> io::Result<()> {
    let (_, hard) = memlock_limit()?;
    let conv = |v: u64| {
        if v == u64::MAX {
            libc::RLIM_INFINITY
        } else {
            v
        }
    };
    let r = libc::rlimit {
        rlim_cur: conv(soft),
        rlim_max: conv(hard),
    };
    // SAFETY: `r` is a valid rlimit.
    check(unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &r) }).map(|_| ())
}

/// Local broken-down time of `secs` since the epoch:
/// (year, month 1-12, day, hour, minute, second).
pub fn localtime(secs: i64) -> (i32, u32, u32, u32, u32, u32) {
    let t: libc::time_t = secs as libc::time_t;
    // SAFETY: `tm` is plain data; all-zero is valid.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    // SAFETY: both pointers are valid for the call; localtime_r is the
    // thread-safe variant and writes only into `tm`.
    let ok = unsafe { !libc::localtime_r(&t, &mut tm).is_null() };
    if !ok {
        return (1970, 1, 1, 0, 0, 0);
    }
    (
        tm.tm_year + 1900,
        (tm.tm_mon + 1) as u32,
        tm.tm_mday as u32,
        tm.tm_hour as u32,
        tm.tm_min as u32,
        tm.tm_sec as u32,
    )
}

/// Which side of a fork we are on.
pub enum Forked {
    Parent(i32),
    Child,
}

/// fork(2). Only call while the process has a single thread.
pub fn fork() -> io::Result<Forked> {
    // SAFETY: called before any other thread exists (start-up, before the
    // runtime), so the child inherits a consistent address space.
    let pid = check(unsafe { libc::fork() })?;
    Ok(if pid == 0 {
        Forked::Child
    } else {
        Forked::Parent(pid)
    })
}

pub fn setsid() -> io::Result<()> {
    // SAFETY: plain syscall.
    check(unsafe { libc::setsid() }).map(|_| ())
}

/// Points stdin (unless `keep_stdin`), stdout and stderr at /dev/null.
pub fn detach_stdio(keep_stdin: bool) -> io::Result<()> {
    let null = File::options().read(true).write(true).open("/dev/null")?;
    let fd = null.as_raw_fd();
    let targets: &[i32] = if keep_stdin { &[1, 2] } else { &[0, 1, 2] };
    for &t in targets {
        // SAFETY: both descriptors are valid; dup2 atomically replaces `t`.
        check(unsafe { libc::dup2(fd, t) })?;
    }
    Ok(())
}

/// Runs `f` with the process umask set to `mask`, then restores it.
pub fn with_umask<T>(mask: u32, f: impl FnOnce() -> T) -> T {
    // SAFETY: umask cannot fail.
    let old = unsafe { libc::umask(mask as libc::mode_t) };
    let r = f();
    // SAFETY: as above.
    unsafe { libc::umask(old) };
    r
}

/// The pid of the process at the other end of a Unix stream (SO_PEERCRED).
pub fn peer_pid(s: &StdUnixStream) -> io::Result<i32> {
    let mut cred = libc::ucred {
        pid: 0,
        uid: 0,
        gid: 0,
    };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: `cred` and `len` are valid for writing and `len` holds the
    // size of `cred`.
    check(unsafe {
        libc::getsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut cred as *mut libc::ucred).cast(),
            &mut len,
        )
    })?;
    Ok(cred.pid)
}

/// Moves a std Unix stream into the current glommio executor's reactor.
/// Must be called on a glommio executor thread.
pub fn into_glommio(s: StdUnixStream) -> io::Result<glommio::net::UnixStream> {
    s.set_nonblocking(true)?;
    let fd = s.into_raw_fd();
    // SAFETY: `fd` is an open, connected stream socket we own exclusively
    // (just released from `s`); glommio takes over closing it.
    Ok(unsafe { glommio::net::UnixStream::from_raw_fd(fd) })
}

/// Takes an exclusive, non-blocking fcntl write lock on the whole of `f`.
/// Fails with `WouldBlock` when another process holds it.
pub fn lock_file(f: &File) -> io::Result<()> {
    // SAFETY: flock is plain data; zero is a valid starting value.
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = libc::F_WRLCK as libc::c_short;
    fl.l_whence = libc::SEEK_SET as libc::c_short;
    // SAFETY: `fl` is a valid flock for F_SETLK on an open descriptor.
    match check(unsafe { libc::fcntl(f.as_raw_fd(), libc::F_SETLK, &fl) }) {
        Ok(_) => Ok(()),
        Err(e) if matches!(e.raw_os_error(), Some(libc::EACCES) | Some(libc::EAGAIN)) => {
            Err(io::Error::new(io::ErrorKind::WouldBlock, e))
        }
        Err(e) => Err(e),
    }
}

fn sigset(signals: &[i32]) -> io::Result<libc::sigset_t> {
    // SAFETY: sigset_t is plain data, initialised by sigemptyset below.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is valid for writing.
    check(unsafe { libc::sigemptyset(&mut set) })?;
    for &s in signals {
        // SAFETY: `set` is initialised; `s` is a signal number.
        check(unsafe { libc::sigaddset(&mut set, s) })?;
    }
    Ok(set)
}

/// Blocks `signals` in the calling thread and every thread it creates
/// afterwards, so that only [`wait_signal`] sees them.
pub fn block_signals(signals: &[i32]) -> io::Result<()> {
    let set = sigset(signals)?;
    // SAFETY: `set` is initialised; the old mask is not wanted.
    let r = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
    if r != 0 {
        return Err(io::Error::from_raw_os_error(r));
    }
    Ok(())
}

/// Makes the child of `cmd` start with an empty signal mask. The daemon
/// blocks SIGTERM/SIGINT/SIGHUP in every thread (only its signal thread
/// takes them); a child would inherit that mask across exec and never see
/// the SIGTERM that is meant to stop it (cluster mutex helper, event
/// daemon, event scripts, notification script).
pub fn unblock_signals_in_child(cmd: &mut std::process::Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: the closure runs in the child between fork and exec and calls
    // only sigemptyset and pthread_sigmask, both async-signal-safe; it
    // touches no memory but its own local set.
    unsafe {
        cmd.pre_exec(|| {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            let r = libc::pthread_sigmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
            if r != 0 {
                return Err(io::Error::from_raw_os_error(r));
            }
            Ok(())
        });
    }
}

/// Waits for one of `signals` (which must be blocked) and returns it.
pub fn wait_signal(signals: &[i32]) -> io::Result<i32> {
    let set = sigset(signals)?;
    let mut sig: libc::c_int = 0;
    // SAFETY: `set` is initialised and `sig` valid for writing.
    let r = unsafe { libc::sigwait(&set, &mut sig) };
    if r != 0 {
        return Err(io::Error::from_raw_os_error(r));
    }
    Ok(sig)
}

/// True when the effective capability set holds CAP_IPC_LOCK, which lifts
/// RLIMIT_MEMLOCK for io_uring and mlockall.
pub fn has_cap_ipc_lock() -> bool {
    const CAP_IPC_LOCK: u32 = 14;
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapEff:"))
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        })
        .is_some_and(|caps| caps & (1 << CAP_IPC_LOCK) != 0)
}

/// An interface's hardware: index, ARP hardware type (`ARPHRD_*`) and
/// MAC address (for gratuitous ARP).
pub fn iface_hw(name: &str) -> io::Result<(i32, u16, [u8; 6])> {
    let bytes = name.as_bytes();
    if bytes.is_empty() || bytes.len() >= libc::IFNAMSIZ || bytes.contains(&0) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("bad interface name {name:?}"),
        ));
    }
    // SAFETY: plain socket call; the descriptor is owned below.
    let fd = check(unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM, 0) })?;
    // SAFETY: `fd` was just opened and is owned by nothing else.
    let sock = unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) };
    // SAFETY: ifreq is plain data; zero is a valid starting value.
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in ifr.ifr_name.iter_mut().zip(bytes) {
        *d = *s as libc::c_char;
    }
    // SAFETY: `ifr` is a valid ifreq with a NUL-terminated name; the
    // kernel writes the index into its union.
    check(unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFINDEX, &mut ifr) })?;
    // SAFETY: SIOCGIFINDEX filled the index member of the union.
    let index = unsafe { ifr.ifr_ifru.ifru_ifindex };
    // SAFETY: as above; the kernel writes the hardware address.
    check(unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFHWADDR, &mut ifr) })?;
    // SAFETY: SIOCGIFHWADDR filled the hwaddr member of the union.
    let hw = unsafe { ifr.ifr_ifru.ifru_hwaddr };
    let mut mac = [0u8; 6];
    for (m, b) in mac.iter_mut().zip(hw.sa_data.iter()) {
        *m = *b as u8;
    }
    Ok((index, hw.sa_family, mac))
}

/// Sends one link-layer frame on interface `index` to `dst_mac`.
pub fn packet_send(index: i32, dst_mac: [u8; 6], frame: &[u8]) -> io::Result<()> {
    // SAFETY: plain socket call; the descriptor is owned below.
    let fd = check(unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, 0) })?;
    // SAFETY: `fd` was just opened and is owned by nothing else.
    let sock = unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) };
    // SAFETY: sockaddr_ll is plain data; zero is a valid starting value.
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sll.sll_family = libc::AF_PACKET as u16;
    sll.sll_protocol = (libc::ETH_P_ALL as u16).to_be();
    sll.sll_ifindex = index;
    sll.sll_halen = 6;
    sll.sll_addr[..6].copy_from_slice(&dst_mac);
    // SAFETY: `frame` is valid for reading its length; `sll` is a valid
    // sockaddr_ll of the size given.
    let r = unsafe {
        libc::sendto(
            sock.as_raw_fd(),
            frame.as_ptr().cast(),
            frame.len(),
            0,
            (&sll as *const libc::sockaddr_ll).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Sends one IP packet whose header the caller built (a raw
/// `IPPROTO_RAW` socket) to `dst` (for tickle ACKs).
pub fn raw_ip_send(dst: std::net::IpAddr, packet: &[u8]) -> io::Result<()> {
    let family = if dst.is_ipv4() {
        libc::AF_INET
    } else {
        libc::AF_INET6
    };
    // SAFETY: plain socket call; the descriptor is owned below.
    let fd = check(unsafe { libc::socket(family, libc::SOCK_RAW, libc::IPPROTO_RAW) })?;
    // SAFETY: `fd` was just opened and is owned by nothing else.
    let sock = unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) };
    let r = match dst {
        std::net::IpAddr::V4(a) => {
            // SAFETY: sockaddr_in is plain data; zero is valid.
            let mut sin: libc::sockaddr_in = unsafe { std::mem::zeroed() };
            sin.sin_family = libc::AF_INET as libc::sa_family_t;
            sin.sin_addr.s_addr = u32::from_ne_bytes(a.octets());
            // SAFETY: `packet` is valid for reading; `sin` is a valid
            // sockaddr_in of the size given.
            unsafe {
                libc::sendto(
                    sock.as_raw_fd(),
                    packet.as_ptr().cast(),
                    packet.len(),
                    0,
                    (&sin as *const libc::sockaddr_in).cast(),
                    std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
                )
            }
        }
        std::net::IpAddr::V6(a) => {
            // SAFETY: sockaddr_in6 is plain data; zero is valid.
            let mut sin6: libc::sockaddr_in6 = unsafe { std::mem::zeroed() };
            sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            sin6.sin6_addr.s6_addr = a.octets();
            // SAFETY: as above, for a sockaddr_in6.
            unsafe {
                libc::sendto(
                    sock.as_raw_fd(),
                    packet.as_ptr().cast(),
                    packet.len(),
                    0,
                    (&sin6 as *const libc::sockaddr_in6).cast(),
                    std::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t,
                )
            }
        }
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
