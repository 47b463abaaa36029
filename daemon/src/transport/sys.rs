//! The transport's few system calls that std and glommio do not offer:
//! a TCP socket bound to our own node address *before* it connects (so
//! the peer identifies us by source address, as upstream's
//! `ctdb_tcp_start_outgoing` does), a non-blocking connect, `SO_ERROR`,
//! `SO_KEEPALIVE`, and handing the descriptor to glommio.
//!
//! Why here and not in `crate::sys`: that module belongs to another part
//! of the daemon; this one keeps the transport self-contained. Every
//! `unsafe` block is a plain libc call on a descriptor we own, with its
//! `SAFETY` note.

use std::io;
use std::mem;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd};

/// A `sockaddr_in`/`sockaddr_in6` ready for bind/connect.
fn sockaddr(addr: SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: sockaddr_storage is plain old data; all-zero is a valid value.
    let mut ss: libc::sockaddr_storage = unsafe { mem::zeroed() };
    let len = match addr {
        SocketAddr::V4(a) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(a.ip().octets()),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_storage is larger than and suitably aligned
            // for sockaddr_in; we write exactly one sockaddr_in at its start.
            unsafe { std::ptr::write(&mut ss as *mut _ as *mut libc::sockaddr_in, sin) };
            mem::size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(a) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: a.port().to_be(),
                sin6_flowinfo: a.flowinfo(),
                sin6_addr: libc::in6_addr {
                    s6_addr: a.ip().octets(),
                },
                sin6_scope_id: a.scope_id(),
            };
            // SAFETY: as above, for sockaddr_in6.
            unsafe { std::ptr::write(&mut ss as *mut _ as *mut libc::sockaddr_in6, sin6) };
            mem::size_of::<libc::sockaddr_in6>()
        }
    };
    (ss, len as libc::socklen_t)
}

fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// A new TCP socket for `ip`'s family (close-on-exec, plus `flags`).
fn tcp_socket(ip: IpAddr, flags: libc::c_int) -> io::Result<OwnedFd> {
    let family = match ip {
        IpAddr::V4(_) => libc::AF_INET,
        IpAddr::V6(_) => libc::AF_INET6,
    };
    // SAFETY: socket(2) with constant arguments; the result is checked.
    let fd = cvt(unsafe {
        libc::socket(
            family,
            libc::SOCK_STREAM | libc::SOCK_CLOEXEC | flags,
            libc::IPPROTO_TCP,
        )
    })?;
    // SAFETY: `fd` was just returned by socket(2) and nobody else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn bind(fd: &OwnedFd, addr: SocketAddr) -> io::Result<()> {
    let (ss, len) = sockaddr(addr);
    // SAFETY: `ss` holds a valid sockaddr of length `len`; `fd` is open.
    cvt(unsafe {
        libc::bind(
            fd.as_raw_fd(),
            &ss as *const _ as *const libc::sockaddr,
            len,
        )
    })?;
    Ok(())
}

/// A non-blocking TCP socket bound to `local` (any port).
pub fn bound_socket(local: IpAddr) -> io::Result<OwnedFd> {
    let fd = tcp_socket(local, libc::SOCK_NONBLOCK)?;
    bind(&fd, SocketAddr::new(local, 0))?;
    Ok(fd)
}

/// Starts a non-blocking connect. `Ok(true)`: connected at once;
/// `Ok(false)`: in progress (wait for writability, then [`so_error`]).
pub fn start_connect(fd: &OwnedFd, peer: SocketAddr) -> io::Result<bool> {
    let (ss, len) = sockaddr(peer);
    // SAFETY: `ss` holds a valid sockaddr of length `len`; `fd` is open.
    let r = unsafe {
        libc::connect(
            fd.as_raw_fd(),
            &ss as *const _ as *const libc::sockaddr,
            len,
        )
    };
    if r == 0 {
        return Ok(true);
    }
    let e = io::Error::last_os_error();
    if e.raw_os_error() == Some(libc::EINPROGRESS) {
        Ok(false)
    } else {
        Err(e)
    }
}

/// Whether `fd` is writable (a pending connect finished, well or badly),
/// without waiting.
pub fn is_writable(fd: &OwnedFd) -> io::Result<bool> {
    let mut p = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLOUT,
        revents: 0,
    };
    // SAFETY: one valid pollfd, zero timeout.
    let n = cvt(unsafe { libc::poll(&mut p, 1, 0) })?;
    Ok(n > 0 && p.revents != 0)
}

/// The pending error of a socket (`SO_ERROR`), cleared by reading it.
pub fn so_error(fd: &OwnedFd) -> io::Result<Option<io::Error>> {
    let mut err: libc::c_int = 0;
    let mut len = mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `err` and `len` are valid for writes of the sizes given.
    cvt(unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_ERROR,
            &mut err as *mut _ as *mut libc::c_void,
            &mut len,
        )
    })?;
    Ok((err != 0).then(|| io::Error::from_raw_os_error(err)))
}

fn set_int_opt(fd: libc::c_int, level: libc::c_int, opt: libc::c_int) -> io::Result<()> {
    let one: libc::c_int = 1;
    // SAFETY: `one` is a valid c_int for the duration of the call.
    cvt(unsafe {
        libc::setsockopt(
            fd,
            level,
            opt,
            &one as *const _ as *const libc::c_void,
            mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    })?;
    Ok(())
}

/// `SO_KEEPALIVE` and `TCP_NODELAY` on a connected socket, as upstream
/// sets them (failures are only worth a warning there too).
pub fn tune(fd: &impl AsRawFd) -> io::Result<()> {
    set_int_opt(fd.as_raw_fd(), libc::SOL_SOCKET, libc::SO_KEEPALIVE)?;
    set_int_opt(fd.as_raw_fd(), libc::IPPROTO_TCP, libc::TCP_NODELAY)
}

/// A close-on-exec duplicate of descriptor `fd`.
pub fn dup_fd(fd: std::os::fd::RawFd) -> io::Result<std::os::fd::RawFd> {
    // SAFETY: fcntl(F_DUPFD_CLOEXEC) on a descriptor the caller holds open;
    // the result is checked and becomes the caller's.
    cvt(unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 0) })
}

/// Hands a connected socket to the current glommio executor. Must be
/// called on a glommio executor thread.
pub fn into_glommio(fd: OwnedFd) -> glommio::net::TcpStream {
    let raw = fd.into_raw_fd();
    // SAFETY: `raw` is an open, connected TCP socket we own exclusively
    // (just released from the OwnedFd); glommio takes over closing it.
    unsafe { glommio::net::TcpStream::from_raw_fd(raw) }
}

/// A listening socket on `addr` shared by the daemon's cores: SO_REUSEPORT
/// (the kernel spreads connections over the cores' listeners) and
/// SO_REUSEADDR (a restart binds again at once even with connections of
/// the previous daemon in TIME_WAIT). Must be called on a glommio executor
/// thread.
pub fn shared_listener(addr: SocketAddr) -> io::Result<glommio::net::TcpListener> {
    let fd = tcp_socket(addr.ip(), 0)?;
    set_int_opt(fd.as_raw_fd(), libc::SOL_SOCKET, libc::SO_REUSEADDR)?;
    set_int_opt(fd.as_raw_fd(), libc::SOL_SOCKET, libc::SO_REUSEPORT)?;
    bind(&fd, addr)?;
    // SAFETY: listen(2) on a bound socket we own.
    cvt(unsafe { libc::listen(fd.as_raw_fd(), 128) })?;
    let raw = fd.into_raw_fd();
    // SAFETY: `raw` is an open, listening TCP socket we own exclusively
    // (just released from the OwnedFd); glommio takes over closing it.
    Ok(unsafe { glommio::net::TcpListener::from_raw_fd(raw) })
}

/// A listening socket on `addr` with SO_REUSEADDR and without SO_REUSEPORT,
/// as upstream's ctdbd listens: a restart binds again at once even with
/// connections of the previous daemon in TIME_WAIT, and a second daemon on
/// the same address still fails with EADDRINUSE. Must be called on a
/// glommio executor thread.
pub fn exclusive_listener(addr: SocketAddr) -> io::Result<glommio::net::TcpListener> {
    // std's bind sets SO_REUSEADDR (and nothing else) on Unix.
    let l = std::net::TcpListener::bind(addr)?;
    let raw = l.into_raw_fd();
    // SAFETY: `raw` is an open, listening TCP socket we own exclusively
    // (just released from the std listener); glommio takes over closing it.
    Ok(unsafe { glommio::net::TcpListener::from_raw_fd(raw) })
}
