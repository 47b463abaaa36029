//! The slice of the CTDB wire format the `ctdb` tool needs: packet framing,
//! REQ/REPLY_CONTROL, REQ_MESSAGE, REQ/REPLY_CALL, and the control payload
//! types the commands print.
//!
//! Packets are encoded and validated by `ctdb-protocol`'s [`Packet`] API
//! (client-library framing: padded to 8). The payload types are decoded
//! here into the plain values the printers need; they were written while
//! the protocol crate's type API did not exist yet, on its `Reader`/`Put`
//! primitives. Layouts follow Samba 4.17 (host byte order).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ctdb_protocol::wire::{Put, Reader};
use ctdb_protocol::{
    DecodeLimits, Framing, Header as ProtoHeader, Packet, Payload, ProtocolError, ReqCall,
    ReqControl, ReqMessage,
};

pub const CTDB_PROTOCOL: u32 = 1;
pub const HEADER_LEN: usize = 32;

pub const CTDB_REQ_CALL: u32 = 0;
pub const CTDB_REPLY_CALL: u32 = 1;
pub const CTDB_REPLY_ERROR: u32 = 4;
pub const CTDB_REQ_MESSAGE: u32 = 5;
pub const CTDB_REQ_CONTROL: u32 = 7;
pub const CTDB_REPLY_CONTROL: u32 = 8;

pub const CTDB_CURRENT_NODE: u32 = 0xF000_0001;
pub const CTDB_BROADCAST_CONNECTED: u32 = 0xF000_0004;
pub const CTDB_UNKNOWN_PNN: u32 = 0xFFFF_FFFF;

pub const CTDB_CTRL_FLAG_NOREPLY: u32 = 1;

pub const CTDB_SRVID_LEADER: u64 = 0xF101_0000_0000_0000;
pub const CTDB_SRVID_TAKEOVER_RUN: u64 = 0xFB00_0000_0000_0000;
pub const CTDB_SRVID_REBALANCE_NODE: u64 = 0xFB01_0000_0000_0000;
pub const CTDB_SRVID_DISABLE_TAKEOVER_RUNS: u64 = 0xFB03_0000_0000_0000;
pub const CTDB_SRVID_DISABLE_RECOVERIES: u64 = 0xFB04_0000_0000_0000;
pub const CTDB_SRVID_DISABLE_IP_CHECK: u64 = 0xFC00_0000_0000_0000;
pub const CTDB_SRVID_MEM_DUMP: u64 = 0xF800_0000_0000_0000;
pub const CTDB_SRVID_TOOL_RANGE: u64 = 0xCE00_0000_0000_0000;
pub const CTDB_SRVID_CLIENT_RANGE: u64 = 0xBE00_0000_0000_0000;

pub const CTDB_NULL_FUNC: u32 = 0xFF00_0001;
pub const CTDB_IMMEDIATE_MIGRATION: u32 = 1;
pub const CTDB_WANT_READONLY: u32 = 4;

pub const NODE_FLAGS_DISCONNECTED: u32 = 0x01;
pub const NODE_FLAGS_UNHEALTHY: u32 = 0x02;
pub const NODE_FLAGS_PERMANENTLY_DISABLED: u32 = 0x04;
pub const NODE_FLAGS_BANNED: u32 = 0x08;
pub const NODE_FLAGS_DELETED: u32 = 0x10;
pub const NODE_FLAGS_STOPPED: u32 = 0x20;
/// Tool-only pseudo flag: "state not known yet" (see `nodemap_unknown`).
pub const NODE_FLAGS_UNKNOWN: u32 = 0x40;
pub const NODE_FLAGS_INACTIVE: u32 =
    NODE_FLAGS_DELETED | NODE_FLAGS_DISCONNECTED | NODE_FLAGS_BANNED | NODE_FLAGS_STOPPED;

pub const CTDB_DB_FLAGS_PERSISTENT: u8 = 0x01;
pub const CTDB_DB_FLAGS_READONLY: u8 = 0x02;
pub const CTDB_DB_FLAGS_STICKY: u8 = 0x04;
pub const CTDB_DB_FLAGS_REPLICATED: u8 = 0x08;

pub const CTDB_CAP_RECMASTER: u32 = 0x1;
pub const CTDB_CAP_LMASTER: u32 = 0x2;

pub const INVALID_GENERATION: u32 = 1;
pub const CTDB_RECOVERY_NORMAL: i32 = 0;
pub const CTDB_RECOVERY_ACTIVE: u32 = 1;

/// Control opcodes used by the tool.
pub mod op {
    pub const PROCESS_EXISTS: u32 = 0;
    pub const STATISTICS: u32 = 1;
    pub const PING: u32 = 3;
    pub const GETDBPATH: u32 = 4;
    pub const GETVNNMAP: u32 = 5;
    pub const GET_DEBUG: u32 = 7;
    pub const SET_DEBUG: u32 = 8;
    pub const GET_DBMAP: u32 = 9;
    pub const GET_RECMODE: u32 = 15;
    pub const SET_RECMODE: u32 = 16;
    pub const STATISTICS_RESET: u32 = 17;
    pub const DB_ATTACH: u32 = 18;
    pub const REGISTER_SRVID: u32 = 23;
    pub const DEREGISTER_SRVID: u32 = 24;
    pub const GET_DBNAME: u32 = 25;
    pub const DUMP_MEMORY: u32 = 29;
    pub const GET_PID: u32 = 30;
    pub const GET_PNN: u32 = 35;
    pub const SHUTDOWN: u32 = 36;
    pub const TCP_REMOVE: u32 = 46;
    pub const SET_TUNABLE: u32 = 48;
    pub const GET_TUNABLE: u32 = 49;
    pub const LIST_TUNABLES: u32 = 50;
    pub const GET_TCP_TICKLE_LIST: u32 = 55;
    pub const DB_ATTACH_PERSISTENT: u32 = 61;
    pub const SEND_GRATUITOUS_ARP: u32 = 64;
    pub const WIPE_DATABASE: u32 = 67;
    pub const UPTIME: u32 = 69;
    pub const RELOAD_NODES_FILE: u32 = 72;
    pub const ADD_PUBLIC_IP: u32 = 77;
    pub const DEL_PUBLIC_IP: u32 = 78;
    pub const GET_CAPABILITIES: u32 = 80;
    pub const RELEASE_IP: u32 = 88;
    pub const TAKEOVER_IP: u32 = 89;
    pub const GET_PUBLIC_IPS: u32 = 90;
    pub const GET_NODEMAP: u32 = 91;
    pub const GET_RECLOCK_FILE: u32 = 99;
    pub const STOP_NODE: u32 = 101;
    pub const CONTINUE_NODE: u32 = 102;
    pub const SET_LMASTERROLE: u32 = 104;
    pub const SET_RECMASTERROLE: u32 = 105;
    pub const SET_BAN_STATE: u32 = 109;
    pub const TRANS3_COMMIT: u32 = 119;
    pub const GET_DB_SEQNUM: u32 = 120;
    pub const DB_SET_HEALTHY: u32 = 121;
    pub const DB_GET_HEALTH: u32 = 122;
    pub const GET_PUBLIC_IP_INFO: u32 = 123;
    pub const GET_IFACES: u32 = 124;
    pub const SET_IFACE_LINK_STATE: u32 = 125;
    pub const TCP_ADD_DELAYED_UPDATE: u32 = 126;
    pub const GET_STAT_HISTORY: u32 = 127;
    pub const SCHEDULE_FOR_DELETION: u32 = 128;
    pub const SET_DB_READONLY: u32 = 129;
    pub const TRAVERSE_START_EXT: u32 = 131;
    pub const GET_DB_STATISTICS: u32 = 132;
    pub const SET_DB_STICKY: u32 = 133;
    pub const RELOAD_PUBLIC_IPS: u32 = 134;
    pub const GET_RUNSTATE: u32 = 138;
    pub const DB_DETACH: u32 = 139;
    pub const GET_NODES_FILE: u32 = 140;
    pub const DB_FREEZE: u32 = 141;
    pub const DB_THAW: u32 = 142;
    pub const DB_TRANSACTION_START: u32 = 143;
    pub const DB_TRANSACTION_COMMIT: u32 = 144;
    pub const DB_PUSH_START: u32 = 147;
    pub const DB_PUSH_CONFIRM: u32 = 148;
    pub const DB_OPEN_FLAGS: u32 = 149;
    pub const DB_ATTACH_REPLICATED: u32 = 150;
    pub const CHECK_PID_SRVID: u32 = 151;
    pub const DISABLE_NODE: u32 = 157;
    pub const ENABLE_NODE: u32 = 158;
}

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
    pub fn new(opcode: u32, data: Vec<u8>) -> Self {
        ControlRequest {
            opcode,
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
// Marshalled types
// ---------------------------------------------------------------------------

/// `ctdb_sock_addr`: 28 bytes, raw sockaddr_in / sockaddr_in6.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SockAddr {
    pub ip: Option<IpAddr>,
    pub port: u16,
}

impl SockAddr {
    pub const LEN: usize = 28;

    pub fn new(ip: IpAddr, port: u16) -> Self {
        SockAddr { ip: Some(ip), port }
    }

    pub fn pull(r: &mut Reader<'_>) -> Result<SockAddr, ProtocolError> {
        let raw = r.bytes(Self::LEN, "sock_addr")?;
        let family = u16::from_ne_bytes([raw[0], raw[1]]);
        let port = u16::from_be_bytes([raw[2], raw[3]]);
        let ip = match family {
            2 => Some(IpAddr::V4(Ipv4Addr::new(raw[4], raw[5], raw[6], raw[7]))),
            10 => {
                let mut a = [0u8; 16];
                a.copy_from_slice(&raw[8..24]);
                Some(IpAddr::V6(Ipv6Addr::from(a)))
            }
            _ => None,
        };
        Ok(SockAddr { ip, port })
    }

    pub fn push(&self, out: &mut Vec<u8>) {
        let mut raw = [0u8; Self::LEN];
        match self.ip {
            Some(IpAddr::V4(v4)) => {
                raw[0..2].copy_from_slice(&2u16.to_ne_bytes());
                raw[2..4].copy_from_slice(&self.port.to_be_bytes());
                raw[4..8].copy_from_slice(&v4.octets());
            }
            Some(IpAddr::V6(v6)) => {
                raw[0..2].copy_from_slice(&10u16.to_ne_bytes());
                raw[2..4].copy_from_slice(&self.port.to_be_bytes());
                raw[8..24].copy_from_slice(&v6.octets());
            }
            None => {}
        }
        out.put_bytes(&raw);
    }

    /// As upstream's `ctdb_sock_addr_to_string`.
    pub fn to_string_port(&self, with_port: bool) -> String {
        let base = match self.ip {
            Some(IpAddr::V4(v4)) => v4.to_string(),
            Some(IpAddr::V6(v6)) if with_port => format!("[{v6}]"),
            Some(IpAddr::V6(v6)) => v6.to_string(),
            None => return "(null)".to_string(),
        };
        if with_port {
            format!("{base}:{}", self.port)
        } else {
            base
        }
    }

    /// Upstream's ordering: family, address bytes, then port (network order
    /// compared as a host integer, as upstream does).
    pub fn cmp_key(&self) -> (u8, Vec<u8>, u16) {
        match self.ip {
            Some(IpAddr::V4(v4)) => (2, v4.octets().to_vec(), self.port.to_be()),
            Some(IpAddr::V6(v6)) => (10, v6.octets().to_vec(), self.port.to_be()),
            None => (0, Vec::new(), 0),
        }
    }

    pub fn same_ip(&self, other: &SockAddr) -> bool {
        self.ip.is_some() && self.ip == other.ip
    }
}

/// Parses an address as upstream's `ctdb_sock_addr_from_string`.
pub fn parse_ip(s: &str) -> Option<IpAddr> {
    if !s.contains(':') {
        return s.parse::<Ipv4Addr>().ok().map(IpAddr::V4);
    }
    let inner = if s.len() >= 2 && s.starts_with('[') && s.ends_with(']') {
        &s[1..s.len() - 1]
    } else {
        s
    };
    let v6: Ipv6Addr = inner.parse().ok()?;
    if let Some(v4) = v6.to_ipv4_mapped() {
        return Some(IpAddr::V4(v4));
    }
    Some(IpAddr::V6(v6))
}

pub fn parse_sock_addr(s: &str, with_port: bool) -> Option<SockAddr> {
    if !with_port {
        return parse_ip(s).map(|ip| SockAddr::new(ip, 0));
    }
    let idx = s.rfind(':')?;
    let port_s = &s[idx + 1..];
    if port_s.is_empty() || !port_s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let port: u64 = port_s.parse().ok()?;
    let ip = parse_ip(&s[..idx])?;
    Some(SockAddr::new(ip, port as u16))
}

/// `<ip>/<mask>` as upstream's `ctdb_sock_addr_mask_from_string`.
pub fn parse_ip_mask(s: &str) -> Option<(SockAddr, u32)> {
    let idx = s.rfind('/')?;
    let m = &s[idx + 1..];
    if m.is_empty() || !m.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mask: u32 = m.parse().ok()?;
    let ip = parse_ip(&s[..idx])?;
    Some((SockAddr::new(ip, 0), mask))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeAndFlags {
    pub pnn: u32,
    pub flags: u32,
    pub addr: SockAddr,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeMap {
    pub nodes: Vec<NodeAndFlags>,
}

impl NodeMap {
    pub fn parse(buf: &[u8]) -> Result<NodeMap, ProtocolError> {
        let mut r = Reader::new(buf);
        let n = r.count(36, "node_map.num")?;
        let mut nodes = Vec::with_capacity(n);
        for _ in 0..n {
            let pnn = r.u32("node.pnn")?;
            let flags = r.u32("node.flags")?;
            let addr = SockAddr::pull(&mut r)?;
            nodes.push(NodeAndFlags { pnn, flags, addr });
        }
        Ok(NodeMap { nodes })
    }

    pub fn find(&self, pnn: u32) -> Option<&NodeAndFlags> {
        self.nodes.iter().find(|n| n.pnn == pnn)
    }
}

#[derive(Debug, Clone)]
pub struct VnnMap {
    pub generation: u32,
    pub map: Vec<u32>,
}

impl VnnMap {
    pub fn parse(buf: &[u8]) -> Result<VnnMap, ProtocolError> {
        let mut r = Reader::new(buf);
        let generation = r.u32("vnn_map.generation")?;
        let n = r.count(4, "vnn_map.size")?;
        let mut map = Vec::with_capacity(n);
        for _ in 0..n {
            map.push(r.u32("vnn_map.map")?);
        }
        Ok(VnnMap { generation, map })
    }
}

#[derive(Debug, Clone, Copy)]
pub struct DbId {
    pub db_id: u32,
    pub flags: u8,
}

pub fn parse_dbid_map(buf: &[u8]) -> Result<Vec<DbId>, ProtocolError> {
    let mut r = Reader::new(buf);
    let n = r.count(8, "dbid_map.num")?;
    let mut v = Vec::with_capacity(n);
    for _ in 0..n {
        let db_id = r.u32("dbid.db_id")?;
        let flags = r.u8("dbid.flags")?;
        r.skip(3, "dbid.pad")?;
        v.push(DbId { db_id, flags });
    }
    Ok(v)
}

#[derive(Debug, Clone, Copy, Default)]
pub struct Timeval {
    pub sec: i64,
    pub usec: i64,
}

impl Timeval {
    fn pull(r: &mut Reader<'_>) -> Result<Timeval, ProtocolError> {
        Ok(Timeval {
            sec: r.i64("timeval.tv_sec")?,
            usec: r.i64("timeval.tv_usec")?,
        })
    }
}

#[derive(Debug, Clone, Copy)]
pub struct Uptime {
    pub current_time: Timeval,
    pub ctdbd_start_time: Timeval,
    pub last_recovery_started: Timeval,
    pub last_recovery_finished: Timeval,
}

impl Uptime {
    pub fn parse(buf: &[u8]) -> Result<Uptime, ProtocolError> {
        let mut r = Reader::new(buf);
        Ok(Uptime {
            current_time: Timeval::pull(&mut r)?,
            ctdbd_start_time: Timeval::pull(&mut r)?,
            last_recovery_started: Timeval::pull(&mut r)?,
            last_recovery_finished: Timeval::pull(&mut r)?,
        })
    }
}

#[derive(Debug, Clone, Copy, Default)]
pub struct Latency {
    pub num: i32,
    pub min: f64,
    pub max: f64,
    pub total: f64,
}

impl Latency {
    fn pull(r: &mut Reader<'_>) -> Result<Latency, ProtocolError> {
        let num = r.i32("latency.num")?;
        r.skip(4, "latency.pad")?;
        Ok(Latency {
            num,
            min: r.f64("latency.min")?,
            max: r.f64("latency.max")?,
            total: r.f64("latency.total")?,
        })
    }

    pub fn avg(&self) -> f64 {
        if self.num != 0 {
            self.total / self.num as f64
        } else {
            0.0
        }
    }
}

/// `struct ctdb_statistics` (488 bytes). `fields` holds the u32 counters in
/// the order the tool prints them (see `STATS_FIELDS`).
#[derive(Debug, Clone)]
pub struct Statistics {
    pub fields: Vec<u32>,
    pub reclock_ctdbd: Latency,
    pub reclock_recd: Latency,
    pub locks_latency: Latency,
    pub locks_buckets: [u32; 16],
    pub hop_count_bucket: [u32; 16],
    pub call_latency: Latency,
    pub childwrite_latency: Latency,
    pub start_time: Timeval,
    pub current_time: Timeval,
}

/// Names of the printed counters, in print order.
pub const STATS_FIELDS: [&str; 38] = [
    "num_clients",
    "frozen",
    "recovering",
    "num_recoveries",
    "client_packets_sent",
    "client_packets_recv",
    "node_packets_sent",
    "node_packets_recv",
    "keepalive_packets_sent",
    "keepalive_packets_recv",
    "node.req_call",
    "node.reply_call",
    "node.req_dmaster",
    "node.reply_dmaster",
    "node.reply_error",
    "node.req_message",
    "node.req_control",
    "node.reply_control",
    "node.req_tunnel",
    "client.req_call",
    "client.req_message",
    "client.req_control",
    "client.req_tunnel",
    "timeouts.call",
    "timeouts.control",
    "timeouts.traverse",
    "locks.num_calls",
    "locks.num_current",
    "locks.num_pending",
    "locks.num_failed",
    "total_calls",
    "pending_calls",
    "childwrite_calls",
    "pending_childwrite_calls",
    "memory_used",
    "max_hop_count",
    "total_ro_delegations",
    "total_ro_revokes",
];

pub const STATISTICS_LEN: usize = 488;

impl Statistics {
    pub fn pull(r: &mut Reader<'_>) -> Result<Statistics, ProtocolError> {
        let raw = r.bytes(STATISTICS_LEN, "statistics")?;
        let u =
            |off: usize| u32::from_ne_bytes([raw[off], raw[off + 1], raw[off + 2], raw[off + 3]]);
        let lat = |off: usize| -> Result<Latency, ProtocolError> {
            Latency::pull(&mut Reader::new(&raw[off..off + 32]))
        };
        let tv = |off: usize| -> Result<Timeval, ProtocolError> {
            Timeval::pull(&mut Reader::new(&raw[off..off + 16]))
        };
        // Offsets of the printed counters in `struct ctdb_statistics`.
        let offsets: [usize; 38] = [
            0, 4, 8, 440, 12, 16, 20, 24, 28, 32, // top level
            36, 40, 44, 48, 52, 56, 60, 64, 68, // node.*
            72, 76, 80, 84, // client.*
            88, 92, 96, // timeouts.*
            168, 172, 176, 180, // locks.*
            280, 284, 288, 292, 296, // calls, memory
            304, 480, 484,
        ];
        let fields = offsets.iter().map(|&o| u(o)).collect();
        let mut locks_buckets = [0u32; 16];
        let mut hop_count_bucket = [0u32; 16];
        for i in 0..16 {
            locks_buckets[i] = u(216 + 4 * i);
            hop_count_bucket[i] = u(308 + 4 * i);
        }
        Ok(Statistics {
            fields,
            reclock_ctdbd: lat(104)?,
            reclock_recd: lat(136)?,
            locks_latency: lat(184)?,
            locks_buckets,
            hop_count_bucket,
            call_latency: lat(376)?,
            childwrite_latency: lat(408)?,
            start_time: tv(448)?,
            current_time: tv(464)?,
        })
    }
}

pub fn parse_stat_history(buf: &[u8]) -> Result<Vec<Statistics>, ProtocolError> {
    let mut r = Reader::new(buf);
    let n = r.count(STATISTICS_LEN, "statistics_list.num")?;
    r.skip(4, "statistics_list.pad")?;
    let mut v = Vec::with_capacity(n);
    for _ in 0..n {
        v.push(Statistics::pull(&mut r)?);
    }
    Ok(v)
}

/// `struct ctdb_db_statistics` as the daemon sends it.
#[derive(Debug, Clone)]
pub struct DbStatistics {
    pub locks: [u32; 4],
    pub locks_latency: Latency,
    pub locks_buckets: [u32; 16],
    pub vacuum_latency: Latency,
    pub db_ro_delegations: u32,
    pub db_ro_revokes: u32,
    pub hop_count_bucket: [u32; 16],
    pub hot_keys: Vec<(u32, Vec<u8>)>,
}

impl DbStatistics {
    pub fn parse(buf: &[u8]) -> Result<DbStatistics, ProtocolError> {
        let mut r = Reader::new(buf);
        let mut locks = [0u32; 4];
        for l in locks.iter_mut() {
            *l = r.u32("db_statistics.locks")?;
        }
        let locks_latency = Latency::pull(&mut r)?;
        let mut locks_buckets = [0u32; 16];
        for b in locks_buckets.iter_mut() {
            *b = r.u32("db_statistics.locks.buckets")?;
        }
        let vacuum_latency = Latency::pull(&mut r)?;
        let db_ro_delegations = r.u32("db_statistics.db_ro_delegations")?;
        let db_ro_revokes = r.u32("db_statistics.db_ro_revokes")?;
        let mut hop_count_bucket = [0u32; 16];
        for b in hop_count_bucket.iter_mut() {
            *b = r.u32("db_statistics.hop_count_bucket")?;
        }
        let num_hot_keys = r.u32("db_statistics.num_hot_keys")?;
        r.skip(4, "db_statistics.pad")?;
        let mut meta = Vec::new();
        for _ in 0..10 {
            let count = r.u32("hot_key.count")?;
            r.skip(4, "hot_key.pad")?;
            r.skip(8, "hot_key.key.dptr")?;
            let len = r.u64("hot_key.key.dsize")? as usize;
            meta.push((count, len));
        }
        let mut hot_keys = Vec::new();
        for (i, (count, len)) in meta.into_iter().enumerate() {
            let key = r.bytes(len, "hot_key.key")?.to_vec();
            if (i as u32) < num_hot_keys {
                hot_keys.push((count, key));
            }
        }
        Ok(DbStatistics {
            locks,
            locks_latency,
            locks_buckets,
            vacuum_latency,
            db_ro_delegations,
            db_ro_revokes,
            hop_count_bucket,
            hot_keys,
        })
    }
}

#[derive(Debug, Clone, Copy)]
pub struct PublicIp {
    pub pnn: u32,
    pub addr: SockAddr,
}

pub fn parse_public_ip_list(buf: &[u8]) -> Result<Vec<PublicIp>, ProtocolError> {
    let mut r = Reader::new(buf);
    let n = r.count(32, "public_ip_list.num")?;
    let mut v = Vec::with_capacity(n);
    for _ in 0..n {
        let pnn = r.u32("public_ip.pnn")?;
        let addr = SockAddr::pull(&mut r)?;
        v.push(PublicIp { pnn, addr });
    }
    Ok(v)
}

#[derive(Debug, Clone)]
pub struct Iface {
    pub name: String,
    pub link_state: u16,
    pub references: u32,
}

pub const CTDB_IFACE_SIZE: usize = 16;

impl Iface {
    fn pull(r: &mut Reader<'_>) -> Result<Iface, ProtocolError> {
        let raw = r.bytes(CTDB_IFACE_SIZE + 2, "iface.name")?;
        let end = raw.iter().position(|&b| b == 0).unwrap_or(CTDB_IFACE_SIZE);
        let name = String::from_utf8_lossy(&raw[..end.min(CTDB_IFACE_SIZE)]).into_owned();
        let link_state = r.u16("iface.link_state")?;
        let references = r.u32("iface.references")?;
        Ok(Iface {
            name,
            link_state,
            references,
        })
    }

    pub fn push(&self, out: &mut Vec<u8>) {
        let mut raw = [0u8; CTDB_IFACE_SIZE + 2];
        let b = self.name.as_bytes();
        let n = b.len().min(CTDB_IFACE_SIZE);
        raw[..n].copy_from_slice(&b[..n]);
        out.put_bytes(&raw);
        out.put_u16(self.link_state);
        out.put_u32(self.references);
    }
}

pub fn parse_iface_list(buf: &[u8]) -> Result<Vec<Iface>, ProtocolError> {
    let mut r = Reader::new(buf);
    let n = r.count(24, "iface_list.num")?;
    let mut v = Vec::with_capacity(n);
    for _ in 0..n {
        v.push(Iface::pull(&mut r)?);
    }
    Ok(v)
}

#[derive(Debug, Clone)]
pub struct PublicIpInfo {
    pub ip: PublicIp,
    pub active_idx: u32,
    pub ifaces: Vec<Iface>,
}

impl PublicIpInfo {
    pub fn parse(buf: &[u8]) -> Result<PublicIpInfo, ProtocolError> {
        let mut r = Reader::new(buf);
        let pnn = r.u32("public_ip.pnn")?;
        let addr = SockAddr::pull(&mut r)?;
        let active_idx = r.u32("public_ip_info.active_idx")?;
        let n = r.count(24, "iface_list.num")?;
        let mut ifaces = Vec::with_capacity(n);
        for _ in 0..n {
            ifaces.push(Iface::pull(&mut r)?);
        }
        Ok(PublicIpInfo {
            ip: PublicIp { pnn, addr },
            active_idx,
            ifaces,
        })
    }
}

#[derive(Debug, Clone, Copy)]
pub struct Connection {
    pub src: SockAddr,
    pub dst: SockAddr,
}

impl Connection {
    pub fn push(&self, out: &mut Vec<u8>) {
        self.src.push(out);
        self.dst.push(out);
    }
}

pub fn parse_tickle_list(buf: &[u8]) -> Result<(SockAddr, Vec<Connection>), ProtocolError> {
    let mut r = Reader::new(buf);
    let addr = SockAddr::pull(&mut r)?;
    let n = r.count(56, "tickle_list.num")?;
    let mut v = Vec::with_capacity(n);
    for _ in 0..n {
        let src = SockAddr::pull(&mut r)?;
        let dst = SockAddr::pull(&mut r)?;
        v.push(Connection { src, dst });
    }
    Ok((addr, v))
}

/// A `string` control output: bytes up to the NUL; empty output = none.
pub fn parse_string(buf: &[u8]) -> Option<String> {
    if buf.is_empty() {
        return None;
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    Some(String::from_utf8_lossy(&buf[..end]).into_owned())
}

/// A `string` control input: bytes and a NUL.
pub fn string_data(s: &str) -> Vec<u8> {
    let mut v = s.as_bytes().to_vec();
    v.push(0);
    v
}

/// A `stringn`: u32 length (with NUL), bytes, NUL.
pub fn push_stringn(out: &mut Vec<u8>, s: &str) {
    out.put_u32(s.len() as u32 + 1);
    out.put_bytes(s.as_bytes());
    out.put_u8(0);
}

pub fn parse_var_list(buf: &[u8]) -> Result<Vec<String>, ProtocolError> {
    let mut r = Reader::new(buf);
    let len = r.u32("var_list.length")? as usize;
    let raw = r.bytes(len, "var_list.data")?;
    let end = raw.iter().position(|&b| b == 0).unwrap_or(raw.len());
    let s = String::from_utf8_lossy(&raw[..end]);
    Ok(s.split(':')
        .filter(|t| !t.is_empty())
        .map(str::to_string)
        .collect())
}

pub fn u32_data(v: u32) -> Vec<u8> {
    v.to_ne_bytes().to_vec()
}

pub fn parse_u32(buf: &[u8], what: &'static str) -> Result<u32, ProtocolError> {
    Reader::new(buf).u32(what)
}

pub fn addr_info_data(addr: &SockAddr, mask: u32, iface: Option<&str>) -> Vec<u8> {
    let mut v = Vec::new();
    addr.push(&mut v);
    v.put_u32(mask);
    match iface {
        Some(s) => push_stringn(&mut v, s),
        None => v.put_u32(0),
    }
    v
}

/// `struct ctdb_ltdb_header` (24 bytes).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LtdbHeader {
    pub rsn: u64,
    pub dmaster: u32,
    pub flags: u32,
}

pub const LTDB_HEADER_LEN: usize = 24;

impl LtdbHeader {
    pub fn parse(buf: &[u8]) -> Result<LtdbHeader, ProtocolError> {
        let mut r = Reader::new(buf);
        let rsn = r.u64("ltdb_header.rsn")?;
        let dmaster = r.u32("ltdb_header.dmaster")?;
        r.skip(4, "ltdb_header.reserved1")?;
        let flags = r.u32("ltdb_header.flags")?;
        r.skip(4, "ltdb_header.pad")?;
        Ok(LtdbHeader {
            rsn,
            dmaster,
            flags,
        })
    }

    pub fn push(&self, out: &mut Vec<u8>) {
        out.put_u64(self.rsn);
        out.put_u32(self.dmaster);
        out.put_u32(0);
        out.put_u32(self.flags);
        out.put_u32(0);
    }
}

/// One `ctdb_rec_data`: (reqid, key, data).
pub fn parse_rec_data(buf: &[u8]) -> Result<(u32, Vec<u8>, Vec<u8>), ProtocolError> {
    let mut r = Reader::new(buf);
    let _len = r.u32("rec_data.length")?;
    let reqid = r.u32("rec_data.reqid")?;
    let keylen = r.u32("rec_data.keylen")? as usize;
    let datalen = r.u32("rec_data.datalen")? as usize;
    let key = r.bytes(keylen, "rec_data.key")?.to_vec();
    let data = r.bytes(datalen, "rec_data.data")?.to_vec();
    Ok((reqid, key, data))
}

pub fn push_rec_data(out: &mut Vec<u8>, reqid: u32, key: &[u8], data: &[u8]) {
    out.put_u32((16 + key.len() + data.len()) as u32);
    out.put_u32(reqid);
    out.put_u32(key.len() as u32);
    out.put_u32(data.len() as u32);
    out.put_bytes(key);
    out.put_bytes(data);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_roundtrip_is_padded() {
        let mut out = Vec::new();
        let mut req = ControlRequest::new(op::GET_PNN, vec![1, 2, 3]);
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
        assert_eq!((c.opcode, c.srvid), (op::GET_PNN, 0x1122));
        assert_eq!(
            u32::from_ne_bytes(out[0..4].try_into().unwrap()) as usize,
            out.len()
        );
        assert_eq!(u32::from_ne_bytes(out[56..60].try_into().unwrap()), 3);
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
        assert_eq!(a.to_string_port(true), "10.1.2.3:445");
        let b = parse_sock_addr("[fd00::1]:80", true).unwrap();
        assert_eq!(b.to_string_port(true), "[fd00::1]:80");
        assert_eq!(b.to_string_port(false), "fd00::1");
        assert!(parse_sock_addr("10.1.2.3", true).is_none());
        assert!(parse_ip("1.2.3").is_none());
        assert_eq!(
            parse_ip("::ffff:1.2.3.4"),
            Some(IpAddr::V4(Ipv4Addr::new(1, 2, 3, 4)))
        );
        let mut v = Vec::new();
        a.push(&mut v);
        let back = SockAddr::pull(&mut Reader::new(&v)).unwrap();
        assert_eq!(back, a);
    }

    #[test]
    fn truncated_nodemap_is_an_error() {
        let mut buf = vec![];
        buf.put_u32(1000);
        buf.put_zeros(36);
        assert!(NodeMap::parse(&buf).is_err());
    }
}
