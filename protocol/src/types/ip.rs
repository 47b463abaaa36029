//! Public IP addresses, interfaces and TCP connections (tickles).

use crate::error::ProtocolError;
use crate::types::misc::{char_array_set, char_array_str};
use crate::types::{counted_list, plain_struct, SockAddr, StringN};
use crate::wire::{Put, Reader, Wire};

plain_struct! {
    /// `ctdb_public_ip` (32 bytes): owner pnn (`CTDB_UNKNOWN_PNN` if none)
    /// and the address.
    pub struct PublicIp {
        pub pnn: u32,
        pub addr: SockAddr,
    }
}

impl PublicIp {
    pub const SIZE: usize = 32;
}

counted_list! {
    /// `ctdb_public_ip_list` (GET_PUBLIC_IPS): `u32 num` + entries.
    pub struct PublicIpList { pub ips: Vec<PublicIp> } min PublicIp::SIZE, what "public_ip_list num"
}

/// Size of `ctdb_iface.name`: `IFNAMSIZ + 2`.
pub const IFACE_NAME_SIZE: usize = 18;

/// `ctdb_iface` (24 bytes): NUL-padded name, link state (1 = up), references.
/// The name array is kept verbatim; [`Iface::name`] gives the text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct Iface {
    pub name: [u8; IFACE_NAME_SIZE],
    pub link_state: u16,
    pub references: u32,
}

impl Iface {
    pub const SIZE: usize = 24;

    /// An interface entry; the name is truncated to 17 bytes.
    pub fn new(name: &str, link_state: u16, references: u32) -> Self {
        let mut i = Iface {
            name: [0; IFACE_NAME_SIZE],
            link_state,
            references,
        };
        i.set_name(name.as_bytes());
        i
    }

    /// The name up to its first NUL.
    pub fn name(&self) -> &[u8] {
        char_array_str(&self.name)
    }

    /// The name as text (lossy).
    pub fn name_string(&self) -> String {
        String::from_utf8_lossy(self.name()).into_owned()
    }

    pub fn set_name(&mut self, s: &[u8]) {
        char_array_set(&mut self.name, s)
    }
}

impl<'a> Wire<'a> for Iface {
    fn wire_len(&self) -> usize {
        Self::SIZE
    }
    fn push(&self, out: &mut Vec<u8>) {
        out.put_bytes(&self.name);
        out.put_u16(self.link_state);
        out.put_u32(self.references);
    }
    fn pull(r: &mut Reader<'a>) -> Result<Self, ProtocolError> {
        let mut name = [0u8; IFACE_NAME_SIZE];
        name.copy_from_slice(r.bytes(IFACE_NAME_SIZE, "iface name")?);
        Ok(Iface {
            name,
            link_state: r.u16("iface link_state")?,
            references: r.u32("iface references")?,
        })
    }
}

counted_list! {
    /// `ctdb_iface_list` (GET_IFACES): `u32 num` + entries.
    pub struct IfaceList { pub ifaces: Vec<Iface> } min Iface::SIZE, what "iface_list num"
}

/// `ctdb_public_ip_info` (GET_PUBLIC_IP_INFO): the address, index of the
/// active interface, and the candidate interfaces (an `iface_list`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PublicIpInfo {
    pub ip: PublicIp,
    pub active_idx: u32,
    pub ifaces: Vec<Iface>,
}

impl<'a> Wire<'a> for PublicIpInfo {
    fn wire_len(&self) -> usize {
        PublicIp::SIZE + 4 + 4 + self.ifaces.len() * Iface::SIZE
    }
    fn push(&self, out: &mut Vec<u8>) {
        self.ip.push(out);
        out.put_u32(self.active_idx);
        out.put_u32(self.ifaces.len() as u32);
        for i in &self.ifaces {
            i.push(out);
        }
    }
    fn pull(r: &mut Reader<'a>) -> Result<Self, ProtocolError> {
        let ip = PublicIp::pull(r)?;
        let active_idx = r.u32("public_ip_info active_idx")?;
        let list = IfaceList::pull(r)?;
        Ok(PublicIpInfo {
            ip,
            active_idx,
            ifaces: list.ifaces,
        })
    }
}

plain_struct! {
    /// `ctdb_connection` (56 bytes): `src` is the server side (the public
    /// IP), `dst` the client side.
    pub struct Connection {
        pub src: SockAddr,
        pub dst: SockAddr,
    }
}

impl Connection {
    pub const SIZE: usize = 56;

    /// The server (public IP) end, upstream's `server` alias of `src`.
    pub fn server(&self) -> &SockAddr {
        &self.src
    }

    /// The client end, upstream's `client` alias of `dst`.
    pub fn client(&self) -> &SockAddr {
        &self.dst
    }

    /// Upstream's text form (`ctdb_connection_to_string`): both ends with
    /// ports, separated by a space, server first unless `client_first`.
    /// `None` if an end has no address.
    pub fn to_text(&self, client_first: bool) -> Option<String> {
        let server = self.src.to_string_with_port()?;
        let client = self.dst.to_string_with_port()?;
        Some(if client_first {
            format!("{client} {server}")
        } else {
            format!("{server} {client}")
        })
    }

    /// Parses two `ip:port` words (`ctdb_connection_from_string`), the
    /// first being the client when `client_first`. Both ends must be of
    /// the same address family; words after the second are ignored.
    pub fn parse(s: &str, client_first: bool) -> Option<Connection> {
        if s.len() >= 128 {
            return None;
        }
        let mut words = s.split([' ', '\t', '\n']).filter(|w| !w.is_empty());
        let first = SockAddr::parse_with_port(words.next()?)?;
        let second = SockAddr::parse_with_port(words.next()?)?;
        if std::mem::discriminant(&first) != std::mem::discriminant(&second) {
            return None;
        }
        Some(if client_first {
            Connection {
                src: second,
                dst: first,
            }
        } else {
            Connection {
                src: first,
                dst: second,
            }
        })
    }
}

counted_list! {
    /// `ctdb_connection_list`: `u32 num` + connections.
    pub struct ConnectionList { pub conns: Vec<Connection> } min Connection::SIZE, what "connection_list num"
}

/// `ctdb_tickle_list` (GET/SET_TCP_TICKLE_LIST): a public address then
/// `u32 num` connections.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TickleList {
    pub addr: SockAddr,
    pub conns: Vec<Connection>,
}

impl<'a> Wire<'a> for TickleList {
    fn wire_len(&self) -> usize {
        SockAddr::SIZE + 4 + self.conns.len() * Connection::SIZE
    }
    fn push(&self, out: &mut Vec<u8>) {
        self.addr.push(out);
        out.put_u32(self.conns.len() as u32);
        for c in &self.conns {
            c.push(out);
        }
    }
    fn pull(r: &mut Reader<'a>) -> Result<Self, ProtocolError> {
        let addr = SockAddr::pull(r)?;
        let list = ConnectionList::pull(r)?;
        Ok(TickleList {
            addr,
            conns: list.conns,
        })
    }
}

/// `ctdb_addr_info` (ADD/DEL_PUBLIC_IP, SEND_GRATUITOUS_ARP): address,
/// prefix length, interface name as a `stringn`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct AddrInfo<'a> {
    pub addr: SockAddr,
    pub mask: u32,
    pub iface: StringN<'a>,
}

impl<'a> Wire<'a> for AddrInfo<'a> {
    fn wire_len(&self) -> usize {
        SockAddr::SIZE + 4 + self.iface.wire_len()
    }
    fn push(&self, out: &mut Vec<u8>) {
        self.addr.push(out);
        out.put_u32(self.mask);
        self.iface.push(out);
    }
    fn pull(r: &mut Reader<'a>) -> Result<Self, ProtocolError> {
        Ok(AddrInfo {
            addr: SockAddr::pull(r)?,
            mask: r.u32("addr_info mask")?,
            iface: StringN::pull(r)?,
        })
    }
}
