//! `ctdb_sock_addr`: a raw 28-byte `struct sockaddr_in6`-sized union.
//!
//! Upstream copies the C struct verbatim, so the family is in host order
//! and the port and address in network order. We decode into std socket
//! types so the rest of the code never touches the raw layout, and encode
//! with the unused tail zeroed, as upstream does after `ZERO_STRUCT`.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

use crate::error::ProtocolError;
use crate::wire::{Put, Reader, Wire};

const AF_UNSPEC: u16 = 0;
const AF_INET: u16 = 2;
const AF_INET6: u16 = 10;

/// A `ctdb_sock_addr`. `Unspec` is an all-zero address (family 0), which
/// upstream uses for "no address" in a few places.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum SockAddr {
    #[default]
    Unspec,
    V4(SocketAddrV4),
    V6(SocketAddrV6),
}

impl SockAddr {
    /// Wire size: `sizeof(struct sockaddr_in6)`.
    pub const SIZE: usize = 28;

    /// An address with port 0.
    pub fn from_ip(ip: IpAddr) -> Self {
        Self::from(SocketAddr::new(ip, 0))
    }

    pub fn ip(&self) -> Option<IpAddr> {
        match self {
            SockAddr::Unspec => None,
            SockAddr::V4(a) => Some(IpAddr::V4(*a.ip())),
            SockAddr::V6(a) => Some(IpAddr::V6(*a.ip())),
        }
    }

    /// The port, 0 for `Unspec` (as `ctdb_sock_addr_port`).
    pub fn port(&self) -> u16 {
        match self {
            SockAddr::Unspec => 0,
            SockAddr::V4(a) => a.port(),
            SockAddr::V6(a) => a.port(),
        }
    }

    /// Sets the port; no effect on `Unspec` (as `ctdb_sock_addr_set_port`).
    pub fn set_port(&mut self, port: u16) {
        match self {
            SockAddr::Unspec => {}
            SockAddr::V4(a) => a.set_port(port),
            SockAddr::V6(a) => a.set_port(port),
        }
    }

    /// A copy with the given port.
    pub fn with_port(mut self, port: u16) -> Self {
        self.set_port(port);
        self
    }

    pub fn to_socket_addr(&self) -> Option<SocketAddr> {
        match self {
            SockAddr::Unspec => None,
            SockAddr::V4(a) => Some(SocketAddr::V4(*a)),
            SockAddr::V6(a) => Some(SocketAddr::V6(*a)),
        }
    }

    /// Same IP (family and address; port, flowinfo and scope ignored), as
    /// `ctdb_sock_addr_same_ip`.
    pub fn same_ip(&self, other: &SockAddr) -> bool {
        match (self, other) {
            (SockAddr::V4(a), SockAddr::V4(b)) => a.ip() == b.ip(),
            (SockAddr::V6(a), SockAddr::V6(b)) => a.ip() == b.ip(),
            _ => false,
        }
    }

    /// Same IP and port, as `ctdb_sock_addr_same`.
    pub fn same(&self, other: &SockAddr) -> bool {
        self.same_ip(other) && self.port() == other.port()
    }

    /// Parses an IP address the way `ctdb_sock_addr_from_string` does
    /// without a port: IPv4, IPv6 (optionally in brackets), and IPv4-mapped
    /// IPv6 addresses become plain IPv4. Port 0.
    pub fn parse_ip(s: &str) -> Option<SockAddr> {
        let inner = match s.strip_prefix('[').and_then(|t| t.strip_suffix(']')) {
            Some(t) if s.contains(':') => t,
            _ => s,
        };
        let ip: IpAddr = if inner.contains(':') {
            let v6: Ipv6Addr = inner.parse().ok()?;
            match v6.to_ipv4_mapped() {
                Some(v4) => IpAddr::V4(v4),
                None => IpAddr::V6(v6),
            }
        } else {
            IpAddr::V4(inner.parse().ok()?)
        };
        Some(SockAddr::from_ip(ip))
    }

    /// Parses `ip:port` (IPv6 as `[ip]:port`) like
    /// `ctdb_sock_addr_from_string(..., true)`.
    pub fn parse_with_port(s: &str) -> Option<SockAddr> {
        let (ip, port) = s.rsplit_once(':')?;
        if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let port: u16 = port.parse().ok()?;
        Some(SockAddr::parse_ip(ip)?.with_port(port))
    }

    /// Upstream text form with the port (`ctdb_sock_addr_to_string(.., true)`):
    /// `a.b.c.d:port` or `[v6]:port`; `None` for `Unspec`.
    pub fn to_string_with_port(&self) -> Option<String> {
        match self {
            SockAddr::Unspec => None,
            SockAddr::V4(a) => Some(format!("{}:{}", a.ip(), a.port())),
            SockAddr::V6(a) => Some(format!("[{}]:{}", fmt_ipv6(a.ip()), a.port())),
        }
    }
}

/// IPv6 text exactly as glibc `inet_ntop` prints it. It differs from Rust's
/// `Display` only for IPv4-compatible addresses (`::a.b.c.d`).
fn fmt_ipv6(ip: &Ipv6Addr) -> String {
    let s = ip.segments();
    if s[..6].iter().all(|&w| w == 0) && s[6] != 0 {
        let o = ip.octets();
        return format!("::{}.{}.{}.{}", o[12], o[13], o[14], o[15]);
    }
    ip.to_string()
}

/// Upstream text form without the port (`ctdb_sock_addr_to_string(.., false)`),
/// as printed by `ctdb` for node and public addresses. `Unspec` prints as
/// an empty string (upstream fails to format it).
impl fmt::Display for SockAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SockAddr::Unspec => Ok(()),
            SockAddr::V4(a) => write!(f, "{}", a.ip()),
            SockAddr::V6(a) => f.write_str(&fmt_ipv6(a.ip())),
        }
    }
}

impl From<SocketAddr> for SockAddr {
    fn from(a: SocketAddr) -> Self {
        match a {
            SocketAddr::V4(a) => SockAddr::V4(a),
            SocketAddr::V6(a) => SockAddr::V6(a),
        }
    }
}

impl From<SocketAddrV4> for SockAddr {
    fn from(a: SocketAddrV4) -> Self {
        SockAddr::V4(a)
    }
}

impl From<SocketAddrV6> for SockAddr {
    fn from(a: SocketAddrV6) -> Self {
        SockAddr::V6(a)
    }
}

/// Fails (giving back the value) for `Unspec`.
impl TryFrom<SockAddr> for SocketAddr {
    type Error = SockAddr;
    fn try_from(a: SockAddr) -> Result<SocketAddr, SockAddr> {
        a.to_socket_addr().ok_or(a)
    }
}

/// Fails (giving back the value) for `Unspec`.
impl TryFrom<SockAddr> for IpAddr {
    type Error = SockAddr;
    fn try_from(a: SockAddr) -> Result<IpAddr, SockAddr> {
        a.ip().ok_or(a)
    }
}

impl From<IpAddr> for SockAddr {
    fn from(ip: IpAddr) -> Self {
        SockAddr::from_ip(ip)
    }
}

impl From<Ipv4Addr> for SockAddr {
    fn from(ip: Ipv4Addr) -> Self {
        SockAddr::V4(SocketAddrV4::new(ip, 0))
    }
}

impl From<Ipv6Addr> for SockAddr {
    fn from(ip: Ipv6Addr) -> Self {
        SockAddr::V6(SocketAddrV6::new(ip, 0, 0, 0))
    }
}

impl<'a> Wire<'a> for SockAddr {
    fn wire_len(&self) -> usize {
        Self::SIZE
    }

    fn push(&self, out: &mut Vec<u8>) {
        match self {
            SockAddr::Unspec => out.put_zeros(Self::SIZE),
            SockAddr::V4(a) => {
                out.put_u16(AF_INET);
                out.put_bytes(&a.port().to_be_bytes());
                out.put_bytes(&a.ip().octets());
                out.put_zeros(Self::SIZE - 8);
            }
            SockAddr::V6(a) => {
                out.put_u16(AF_INET6);
                out.put_bytes(&a.port().to_be_bytes());
                out.put_u32(a.flowinfo());
                out.put_bytes(&a.ip().octets());
                out.put_u32(a.scope_id());
            }
        }
    }

    fn pull(r: &mut Reader<'a>) -> Result<Self, ProtocolError> {
        let b = r.bytes(Self::SIZE, "ctdb_sock_addr")?;
        let family = u16::from_ne_bytes([b[0], b[1]]);
        let port = u16::from_be_bytes([b[2], b[3]]);
        match family {
            AF_UNSPEC => Ok(SockAddr::Unspec),
            AF_INET => {
                let ip = Ipv4Addr::new(b[4], b[5], b[6], b[7]);
                Ok(SockAddr::V4(SocketAddrV4::new(ip, port)))
            }
            AF_INET6 => {
                let flowinfo = u32::from_ne_bytes([b[4], b[5], b[6], b[7]]);
                let mut o = [0u8; 16];
                o.copy_from_slice(&b[8..24]);
                let scope = u32::from_ne_bytes([b[24], b[25], b[26], b[27]]);
                Ok(SockAddr::V6(SocketAddrV6::new(
                    Ipv6Addr::from(o),
                    port,
                    flowinfo,
                    scope,
                )))
            }
            other => Err(ProtocolError::BadValue {
                what: "ctdb_sock_addr family",
                value: u64::from(other),
            }),
        }
    }
}
