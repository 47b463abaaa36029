//! The slice of the CTDB wire format the `ctdb` tool needs: packet framing,
//! REQ/REPLY_CONTROL, REQ_MESSAGE, REQ/REPLY_CALL, and the few text forms
//! of control payloads the commands print and parse.
//!
//! Packets and control payloads are encoded and decoded by
//! `ctdb-protocol`: requests are built from a typed [`ControlData`], reply
//! data is decoded with the marshalled types of [`ctdb_protocol::types`]
//! (re-exported here). What stays here is what is the tool's own: upstream's
//! text forms of addresses and the client library's framing (padded to 8).

use std::net::IpAddr;

pub use ctdb_protocol::types::{
    Connection, CtdbString, DbId, DbIdMap, DbStatistics, Iface, IfaceList, LatencyCounter,
    LtdbHeader, NodeAndFlags, NodeMap, PublicIp, PublicIpInfo, PublicIpList, RecBuffer,
    RecBufferBuilder, RecData, SockAddr, Statistics, StatisticsList, TickleList, Uptime, VarList,
    VnnMap, LTDB_HEADER_SIZE,
};
pub use ctdb_protocol::wire::Wire;
pub use ctdb_protocol::ControlData;
use ctdb_protocol::{
    DecodeLimits, Framing, Header as ProtoHeader, Packet, Payload, ProtocolError, ReqCall,
    ReqControl, ReqMessage,
};

pub use ctdb_protocol::constants::{
    CTDB_BROADCAST_CONNECTED, CTDB_CAP_LMASTER, CTDB_CAP_RECMASTER, CTDB_CTRL_FLAG_NOREPLY,
    CTDB_CURRENT_NODE, CTDB_IMMEDIATE_MIGRATION, CTDB_NULL_FUNC, CTDB_RECOVERY_ACTIVE,
    CTDB_UNKNOWN_PNN, CTDB_WANT_READONLY, INVALID_GENERATION, NODE_FLAGS_BANNED,
    NODE_FLAGS_DELETED, NODE_FLAGS_DISCONNECTED, NODE_FLAGS_INACTIVE,
    NODE_FLAGS_PERMANENTLY_DISABLED, NODE_FLAGS_STOPPED, NODE_FLAGS_UNHEALTHY,
};
pub use ctdb_protocol::srvid::{
    CLIENT_RANGE as CTDB_SRVID_CLIENT_RANGE, CTDB_PUSHDB as SRVID_CTDB_PUSHDB,
    CTDB_TOOL as SRVID_CTDB_TOOL, DISABLE_IP_CHECK as CTDB_SRVID_DISABLE_IP_CHECK,
    DISABLE_RECOVERIES as CTDB_SRVID_DISABLE_RECOVERIES,
    DISABLE_TAKEOVER_RUNS as CTDB_SRVID_DISABLE_TAKEOVER_RUNS, LEADER as CTDB_SRVID_LEADER,
    MEM_DUMP as CTDB_SRVID_MEM_DUMP, REBALANCE_NODE as CTDB_SRVID_REBALANCE_NODE,
    TAKEOVER_RUN as CTDB_SRVID_TAKEOVER_RUN,
};
pub use ctdb_protocol::types::{
    DB_FLAGS_PERSISTENT as CTDB_DB_FLAGS_PERSISTENT, DB_FLAGS_READONLY as CTDB_DB_FLAGS_READONLY,
    DB_FLAGS_REPLICATED as CTDB_DB_FLAGS_REPLICATED, DB_FLAGS_STICKY as CTDB_DB_FLAGS_STICKY,
};
pub use ctdb_protocol::{CTDB_PROTOCOL, HEADER_LEN};

/// Operations the client routes on (`Header::operation`).
pub const CTDB_REQ_CALL: u32 = 0;
pub const CTDB_REPLY_CALL: u32 = 1;
pub const CTDB_REQ_MESSAGE: u32 = 5;
pub const CTDB_REQ_CONTROL: u32 = 7;
pub const CTDB_REPLY_CONTROL: u32 = 8;

/// Tool-only pseudo flag: "state not known yet" (see `nodemap_unknown`).
pub const NODE_FLAGS_UNKNOWN: u32 = 0x40;

/// GET_RECMODE's answer (in the reply status) when no recovery runs.
pub const CTDB_RECOVERY_NORMAL: i32 = 0;

/// The fields of a received packet the client routes on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub operation: u32,
    pub reqid: u32,
}

impl Header {
    /// Validates the whole packet (length, magic, version, operation and
    /// inner lengths) with the protocol crate and returns its routing
    /// fields.
    pub fn parse(buf: &[u8]) -> Result<Header, ProtocolError> {
        let pkt = Packet::decode(buf, &DecodeLimits::default())?;
        Ok(Header {
            operation: pkt.operation() as u32,
            reqid: pkt.header.reqid,
        })
    }
}

fn encode(out: &mut Vec<u8>, header: ProtoHeader, payload: Payload<'_>) {
    out.clear();
    // Lengths are bounded by what the tool builds (keys, values, record
    // buffers read from files); an over-long body is an encoding error
    // that leaves `out` empty, which the daemon then sees as a short
    // write rather than a malformed packet.
    if Packet::new(header, payload)
        .encode_framed(out, Framing::Client)
        .is_err()
    {
        out.clear();
    }
}

/// A control request as the tool sends it.
#[derive(Debug, Clone)]
pub struct ControlRequest {
    pub opcode: u32,
    pub srvid: u64,
    pub flags: u32,
    pub data: Vec<u8>,
}

impl ControlRequest {
    /// A request carrying `input` (its variant names the opcode).
    pub fn new(input: ControlData<'_>) -> Self {
        let mut data = Vec::with_capacity(input.wire_len());
        input.push(&mut data);
        ControlRequest {
            opcode: input.opcode(),
            srvid: 0,
            flags: 0,
            data,
        }
    }

    /// Encodes with the client library's framing (padded to 8).
    pub fn encode(&self, out: &mut Vec<u8>, destnode: u32, srcnode: u32, reqid: u32) {
        let req = ReqControl::raw(self.opcode, &self.data)
            .with_srvid(self.srvid)
            .with_flags(self.flags);
        encode(
            out,
            ProtoHeader::new(0, destnode, srcnode, reqid),
            Payload::ReqControl(req),
        );
    }
}

/// A decoded REPLY_CONTROL payload.
#[derive(Debug, Clone)]
pub struct ControlReply {
    pub status: i32,
    pub data: Vec<u8>,
    pub error: Option<String>,
}

impl ControlReply {
    pub fn parse(buf: &[u8]) -> Result<ControlReply, ProtocolError> {
        let pkt = Packet::decode(buf, &DecodeLimits::default())?;
        let Payload::ReplyControl(r) = pkt.payload else {
            return Err(ProtocolError::BadValue {
                what: "reply_control operation",
                value: pkt.operation() as u64,
            });
        };
        let error = if r.errmsg.is_empty() {
            None
        } else {
            let end = r
                .errmsg
                .iter()
                .position(|&b| b == 0)
                .unwrap_or(r.errmsg.len());
            Some(String::from_utf8_lossy(&r.errmsg[..end]).into_owned())
        };
        let data = match &r.data {
            ctdb_protocol::Data::Raw(b) => b.to_vec(),
            ctdb_protocol::Data::Typed(_) => Vec::new(),
        };
        Ok(ControlReply {
            status: r.status,
            data,
            error,
        })
    }
}

pub fn encode_message(
    out: &mut Vec<u8>,
    destnode: u32,
    srcnode: u32,
    reqid: u32,
    srvid: u64,
    data: &[u8],
) {
    encode(
        out,
        ProtoHeader::new(0, destnode, srcnode, reqid),
        Payload::ReqMessage(ReqMessage::raw(srvid, data)),
    );
}

/// A REQ_MESSAGE payload: (srvid, data).
pub fn parse_message(buf: &[u8]) -> Result<(u64, Vec<u8>), ProtocolError> {
    let pkt = Packet::decode(buf, &DecodeLimits::default())?;
    match pkt.payload {
        Payload::ReqMessage(m) => match m.data {
            ctdb_protocol::Data::Raw(b) => Ok((m.srvid, b.to_vec())),
            ctdb_protocol::Data::Typed(_) => Ok((m.srvid, Vec::new())),
        },
        other => Err(ProtocolError::BadValue {
            what: "req_message operation",
            value: other.operation() as u64,
        }),
    }
}

#[allow(clippy::too_many_arguments)]
pub fn encode_call(
    out: &mut Vec<u8>,
    srcnode: u32,
    reqid: u32,
    flags: u32,
    db_id: u32,
    callid: u32,
    key: &[u8],
    calldata: &[u8],
) {
    let call = ReqCall {
        flags,
        db_id,
        callid,
        hopcount: 0,
        key,
        calldata,
    };
    encode(
        out,
        ProtoHeader::new(0, CTDB_CURRENT_NODE, srcnode, reqid),
        Payload::ReqCall(call),
    );
}

/// Status of a REPLY_CALL.
pub fn parse_reply_call_status(buf: &[u8]) -> Result<i32, ProtocolError> {
    let pkt = Packet::decode(buf, &DecodeLimits::default())?;
    match pkt.payload {
        Payload::ReplyCall(r) => Ok(r.status),
        other => Err(ProtocolError::BadValue {
            what: "reply_call operation",
            value: other.operation() as u64,
        }),
    }
}

// ---------------------------------------------------------------------------
// Control payloads
// ---------------------------------------------------------------------------

/// `ctdb_sock_addr` text as upstream's `ctdb_sock_addr_to_string`; an
/// address of no family prints as "(null)".
pub fn addr_text(a: &SockAddr, with_port: bool) -> String {
    let text = if with_port {
        a.to_string_with_port()
    } else {
        a.ip().map(|_| a.to_string())
    };
    text.unwrap_or_else(|| "(null)".to_string())
}

/// Upstream's address ordering (`ctdb_sock_addr_cmp`): family, address
/// bytes, then the port in network order compared as a host integer.
pub fn addr_cmp_key(a: &SockAddr) -> (u8, Vec<u8>, u16) {
    match a.ip() {
        Some(IpAddr::V4(v4)) => (2, v4.octets().to_vec(), a.port().to_be()),
        Some(IpAddr::V6(v6)) => (10, v6.octets().to_vec(), a.port().to_be()),
        None => (0, Vec::new(), 0),
    }
}

/// Parses an address as upstream's `ctdb_sock_addr_from_string`; with
/// `with_port` the text is `ip:port` and the port is stored as `htons()`
/// stores an unsigned int (values above 65535 wrap).
pub fn parse_sock_addr(s: &str, with_port: bool) -> Option<SockAddr> {
    if !with_port {
        return SockAddr::parse_ip(s);
    }
    let (ip, port) = s.rsplit_once(':')?;
    if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let port: u64 = port.parse().ok()?;
    Some(SockAddr::parse_ip(ip)?.with_port(port as u16))
}

/// `<ip>/<mask>` as upstream's `ctdb_sock_addr_mask_from_string`.
pub fn parse_ip_mask(s: &str) -> Option<(SockAddr, u32)> {
    let (ip, m) = s.rsplit_once('/')?;
    if m.is_empty() || !m.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mask: u32 = m.parse().ok()?;
    Some((SockAddr::parse_ip(ip)?, mask))
}

/// The node with this pnn.
pub fn find_node(map: &NodeMap, pnn: u32) -> Option<&NodeAndFlags> {
    map.nodes.iter().find(|n| n.pnn == pnn)
}

/// `IFNAMSIZ`: the longest interface name the tool accepts and prints.
pub const CTDB_IFACE_SIZE: usize = 16;

/// An interface's name as the tool prints it (at most `IFNAMSIZ` bytes).
pub fn iface_name(i: &Iface) -> String {
    let n = i.name();
    String::from_utf8_lossy(&n[..n.len().min(CTDB_IFACE_SIZE)]).into_owned()
}

/// A `string` control output (ctdbd sends DUMP_MEMORY's without its NUL):
/// the text up to the first NUL; empty output is no string.
pub fn parse_string(buf: &[u8]) -> Option<String> {
    CtdbString::from_bytes_lenient(buf)
        .bytes()
        .map(|b| String::from_utf8_lossy(b).into_owned())
}

/// Reads an `ltdb` header off the front of a record's value.
pub fn ltdb_header(value: &[u8]) -> Result<LtdbHeader, ProtocolError> {
    LtdbHeader::split(value).map(|(h, _)| h)
}

/// A record's value as stored in the ltdb: header then data.
pub fn ltdb_value(h: &LtdbHeader, data: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(LTDB_HEADER_SIZE + data.len());
    h.push(&mut v);
    v.extend_from_slice(data);
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_roundtrip_is_padded() {
        let mut out = Vec::new();
        let mut req = ControlRequest::new(ControlData::GetDbname(0x0102_0304));
        req.srvid = 0x1122;
        req.encode(&mut out, 5, 7, 9);
        assert_eq!(out.len() % 8, 0);
        let pkt = Packet::decode(&out, &DecodeLimits::default()).unwrap();
        assert_eq!(
            (pkt.header.destnode, pkt.header.srcnode, pkt.header.reqid),
            (5, 7, 9)
        );
        let Payload::ReqControl(c) = pkt.payload else {
            panic!("not a control")
        };
        assert_eq!(
            (c.opcode, c.srvid),
            (ctdb_protocol::Opcode::GetDbname as u32, 0x1122)
        );
        assert_eq!(
            c.decode_data().unwrap(),
            ControlData::GetDbname(0x0102_0304)
        );
        assert_eq!(
            u32::from_ne_bytes(out[0..4].try_into().unwrap()) as usize,
            out.len()
        );
        assert_eq!(u32::from_ne_bytes(out[56..60].try_into().unwrap()), 4);
        let h = Header::parse(&out).unwrap();
        assert_eq!((h.operation, h.reqid), (CTDB_REQ_CONTROL, 9));
    }

    #[test]
    fn message_and_call_round_trip() {
        let mut out = Vec::new();
        encode_message(&mut out, 1, 2, 3, 0xabc, b"hello");
        assert_eq!(parse_message(&out).unwrap(), (0xabc, b"hello".to_vec()));
        encode_call(
            &mut out,
            0,
            4,
            CTDB_IMMEDIATE_MIGRATION,
            0x99,
            CTDB_NULL_FUNC,
            b"k",
            &[],
        );
        assert_eq!(Header::parse(&out).unwrap().operation, CTDB_REQ_CALL);
        assert!(parse_reply_call_status(&out).is_err());
        assert!(ControlReply::parse(&out).is_err());
        assert!(Header::parse(&out[..20]).is_err());
    }

    #[test]
    fn sock_addr_strings() {
        let a = parse_sock_addr("10.1.2.3:445", true).unwrap();
        assert_eq!(addr_text(&a, true), "10.1.2.3:445");
        let b = parse_sock_addr("[fd00::1]:80", true).unwrap();
        assert_eq!(addr_text(&b, true), "[fd00::1]:80");
        assert_eq!(addr_text(&b, false), "fd00::1");
        assert_eq!(addr_text(&SockAddr::Unspec, false), "(null)");
        assert_eq!(parse_sock_addr("1.2.3.4:65537", true).unwrap().port(), 1);
        assert!(parse_sock_addr("10.1.2.3", true).is_none());
        assert!(parse_sock_addr("1.2.3", false).is_none());
        assert_eq!(
            parse_sock_addr("::ffff:1.2.3.4", false).and_then(|a| a.ip()),
            Some(IpAddr::V4(std::net::Ipv4Addr::new(1, 2, 3, 4)))
        );
        let (m, bits) = parse_ip_mask("10.0.0.1/24").unwrap();
        assert_eq!((addr_text(&m, false).as_str(), bits), ("10.0.0.1", 24));
        assert!(parse_ip_mask("10.0.0.1/").is_none());
        assert!(addr_cmp_key(&a) < addr_cmp_key(&b));
    }

    #[test]
    fn strings_and_headers() {
        assert_eq!(parse_string(b""), None);
        assert_eq!(parse_string(b"abc"), Some("abc".to_string()));
        assert_eq!(parse_string(b"ab\0c"), Some("ab".to_string()));
        let h = LtdbHeader {
            rsn: 7,
            dmaster: 2,
            reserved1: 0,
            flags: 0x10000,
        };
        let v = ltdb_value(&h, b"xy");
        assert_eq!(v.len(), LTDB_HEADER_SIZE + 2);
        assert_eq!(ltdb_header(&v).unwrap(), h);
        assert!(ltdb_header(&v[..10]).is_err());
    }
}
