//! Srvid message bodies: the well-known srvids and what each carries
//! (`protocol_message.c`), plus the three message-only structs.
//!
//! Why an enum keyed by srvid: a REQ_MESSAGE names its payload type only
//! through its srvid, so decoding needs the srvid; anything not well-known
//! (client srvids, Samba messaging, replies) stays raw bytes.

use crate::error::ProtocolError;
use crate::types::{CtdbString, NodeFlagChange, PublicIp, RecBuffer, Timeval};
use crate::wire::{Put, Reader, Wire};

/// Well-known srvids (`protocol.h`).
pub mod srvid {
    pub const ALL: u64 = 0xFFFF_FFFF_FFFF_FFFF;
    pub const RECOVERY: u64 = 0xF001_0000_0000_0000;
    pub const BANNING: u64 = 0xF002_0000_0000_0000;
    pub const ELECTION: u64 = 0xF100_0000_0000_0000;
    pub const LEADER: u64 = 0xF101_0000_0000_0000;
    pub const RECONFIGURE: u64 = 0xF200_0000_0000_0000;
    pub const RELEASE_IP: u64 = 0xF300_0000_0000_0000;
    pub const TAKE_IP: u64 = 0xF301_0000_0000_0000;
    pub const SET_NODE_FLAGS: u64 = 0xF400_0000_0000_0000;
    pub const RECD_UPDATE_IP: u64 = 0xF500_0000_0000_0000;
    pub const VACUUM_FETCH: u64 = 0xF700_0000_0000_0000;
    pub const DETACH_DATABASE: u64 = 0xF701_0000_0000_0000;
    pub const MEM_DUMP: u64 = 0xF800_0000_0000_0000;
    pub const GETLOG: u64 = 0xF801_0000_0000_0000;
    pub const CLEARLOG: u64 = 0xF802_0000_0000_0000;
    pub const PUSH_NODE_FLAGS: u64 = 0xF900_0000_0000_0000;
    pub const RELOAD_NODES: u64 = 0xFA00_0000_0000_0000;
    pub const TAKEOVER_RUN: u64 = 0xFB00_0000_0000_0000;
    pub const REBALANCE_NODE: u64 = 0xFB01_0000_0000_0000;
    pub const DISABLE_TAKEOVER_RUNS: u64 = 0xFB03_0000_0000_0000;
    pub const DISABLE_RECOVERIES: u64 = 0xFB04_0000_0000_0000;
    pub const DISABLE_IP_CHECK: u64 = 0xFC00_0000_0000_0000;
    pub const PID_RANGE: u64 = 0x0000_0000_0000_0000;
    pub const SAMBA_NOTIFY: u64 = 0xFE00_0000_0000_0000;
    pub const SAMBA_RANGE: u64 = 0xFE00_0000_0000_0000;
    pub const NFSD_RANGE: u64 = 0xEE00_0000_0000_0000;
    pub const ISCSID_RANGE: u64 = 0xDE00_0000_0000_0000;
    pub const TOOL_RANGE: u64 = 0xCE00_0000_0000_0000;
    pub const CLIENT_RANGE: u64 = 0xBE00_0000_0000_0000;
    pub const TEST_RANGE: u64 = 0xAE00_0000_0000_0000;
    pub const TUNNEL_TEST: u64 = 0xFFFF_FFFF_0000_0000;
}

/// `ctdb_election_message` (32 bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct ElectionMessage {
    pub num_connected: u32,
    pub priority_time: Timeval,
    pub pnn: u32,
    pub node_flags: u32,
}

impl<'a> Wire<'a> for ElectionMessage {
    fn wire_len(&self) -> usize {
        32
    }
    fn push(&self, out: &mut Vec<u8>) {
        out.put_u32(self.num_connected);
        out.put_zeros(4);
        self.priority_time.push(out);
        out.put_u32(self.pnn);
        out.put_u32(self.node_flags);
    }
    fn pull(r: &mut Reader<'a>) -> Result<Self, ProtocolError> {
        let num_connected = r.u32("election num_connected")?;
        r.skip(4, "election padding")?;
        Ok(ElectionMessage {
            num_connected,
            priority_time: Timeval::pull(r)?,
            pnn: r.u32("election pnn")?,
            node_flags: r.u32("election node_flags")?,
        })
    }
}

/// `ctdb_srvid_message` (16 bytes): where to send the reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct SrvidMessage {
    pub pnn: u32,
    pub srvid: u64,
}

impl<'a> Wire<'a> for SrvidMessage {
    fn wire_len(&self) -> usize {
        16
    }
    fn push(&self, out: &mut Vec<u8>) {
        out.put_u32(self.pnn);
        out.put_zeros(4);
        out.put_u64(self.srvid);
    }
    fn pull(r: &mut Reader<'a>) -> Result<Self, ProtocolError> {
        let pnn = r.u32("srvid_message pnn")?;
        r.skip(4, "srvid_message padding")?;
        Ok(SrvidMessage {
            pnn,
            srvid: r.u64("srvid_message srvid")?,
        })
    }
}

/// `ctdb_disable_message` (24 bytes): reply address and a timeout in seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct DisableMessage {
    pub pnn: u32,
    pub srvid: u64,
    pub timeout: u32,
}

impl<'a> Wire<'a> for DisableMessage {
    fn wire_len(&self) -> usize {
        24
    }
    fn push(&self, out: &mut Vec<u8>) {
        out.put_u32(self.pnn);
        out.put_zeros(4);
        out.put_u64(self.srvid);
        out.put_u32(self.timeout);
        out.put_zeros(4);
    }
    fn pull(r: &mut Reader<'a>) -> Result<Self, ProtocolError> {
        let pnn = r.u32("disable_message pnn")?;
        r.skip(4, "disable_message padding")?;
        let srvid = r.u64("disable_message srvid")?;
        let timeout = r.u32("disable_message timeout")?;
        r.skip(4, "disable_message padding")?;
        Ok(DisableMessage {
            pnn,
            srvid,
            timeout,
        })
    }
}

/// The body of a REQ_MESSAGE, typed by its srvid (`ctdb_message_data`).
#[derive(Debug, Clone, PartialEq)]
pub enum MessageData<'a> {
    /// BANNING: pnn to charge banning credits.
    Banning(u32),
    Election(ElectionMessage),
    /// LEADER: the leader's pnn (`CTDB_UNKNOWN_PNN` when stepping down).
    Leader(u32),
    Reconfigure,
    /// RELEASE_IP: the address as text.
    ReleaseIp(CtdbString<'a>),
    /// TAKE_IP: the address as text.
    TakeIp(CtdbString<'a>),
    SetNodeFlags(NodeFlagChange),
    RecdUpdateIp(PublicIp),
    VacuumFetch(RecBuffer<'a>),
    DetachDatabase(u32),
    MemDump(SrvidMessage),
    GetLog,
    ClearLog,
    PushNodeFlags(NodeFlagChange),
    ReloadNodes,
    TakeoverRun(SrvidMessage),
    RebalanceNode(u32),
    DisableTakeoverRuns(DisableMessage),
    DisableRecoveries(DisableMessage),
    /// DISABLE_IP_CHECK: timeout in seconds.
    DisableIpCheck(u32),
    /// Any other srvid: the bytes as sent.
    Other(&'a [u8]),
}

impl<'a> MessageData<'a> {
    /// Decodes `data` as the payload of a message to `srvid`. Typed bodies
    /// must fill `data` exactly; bodies upstream defines as empty ignore
    /// whatever was sent.
    pub fn decode(srvid: u64, data: &'a [u8]) -> Result<Self, ProtocolError> {
        use self::srvid as s;
        Ok(match srvid {
            s::BANNING => MessageData::Banning(u32::from_bytes(data)?),
            s::ELECTION => MessageData::Election(ElectionMessage::from_bytes(data)?),
            s::LEADER => MessageData::Leader(u32::from_bytes(data)?),
            s::RECONFIGURE => MessageData::Reconfigure,
            s::RELEASE_IP => MessageData::ReleaseIp(CtdbString::from_bytes(data)?),
            s::TAKE_IP => MessageData::TakeIp(CtdbString::from_bytes(data)?),
            s::SET_NODE_FLAGS => MessageData::SetNodeFlags(NodeFlagChange::from_bytes(data)?),
            s::RECD_UPDATE_IP => MessageData::RecdUpdateIp(PublicIp::from_bytes(data)?),
            s::VACUUM_FETCH => MessageData::VacuumFetch(RecBuffer::from_bytes(data)?),
            s::DETACH_DATABASE => MessageData::DetachDatabase(u32::from_bytes(data)?),
            s::MEM_DUMP => MessageData::MemDump(SrvidMessage::from_bytes(data)?),
            s::GETLOG => MessageData::GetLog,
            s::CLEARLOG => MessageData::ClearLog,
            s::PUSH_NODE_FLAGS => MessageData::PushNodeFlags(NodeFlagChange::from_bytes(data)?),
            s::RELOAD_NODES => MessageData::ReloadNodes,
            s::TAKEOVER_RUN => MessageData::TakeoverRun(SrvidMessage::from_bytes(data)?),
            s::REBALANCE_NODE => MessageData::RebalanceNode(u32::from_bytes(data)?),
            s::DISABLE_TAKEOVER_RUNS => {
                MessageData::DisableTakeoverRuns(DisableMessage::from_bytes(data)?)
            }
            s::DISABLE_RECOVERIES => {
                MessageData::DisableRecoveries(DisableMessage::from_bytes(data)?)
            }
            s::DISABLE_IP_CHECK => MessageData::DisableIpCheck(u32::from_bytes(data)?),
            _ => MessageData::Other(data),
        })
    }

    /// The well-known srvid this body belongs to; `None` for `Other`.
    pub fn srvid(&self) -> Option<u64> {
        use self::srvid as s;
        Some(match self {
            MessageData::Banning(_) => s::BANNING,
            MessageData::Election(_) => s::ELECTION,
            MessageData::Leader(_) => s::LEADER,
            MessageData::Reconfigure => s::RECONFIGURE,
            MessageData::ReleaseIp(_) => s::RELEASE_IP,
            MessageData::TakeIp(_) => s::TAKE_IP,
            MessageData::SetNodeFlags(_) => s::SET_NODE_FLAGS,
            MessageData::RecdUpdateIp(_) => s::RECD_UPDATE_IP,
            MessageData::VacuumFetch(_) => s::VACUUM_FETCH,
            MessageData::DetachDatabase(_) => s::DETACH_DATABASE,
            MessageData::MemDump(_) => s::MEM_DUMP,
            MessageData::GetLog => s::GETLOG,
            MessageData::ClearLog => s::CLEARLOG,
            MessageData::PushNodeFlags(_) => s::PUSH_NODE_FLAGS,
            MessageData::ReloadNodes => s::RELOAD_NODES,
            MessageData::TakeoverRun(_) => s::TAKEOVER_RUN,
            MessageData::RebalanceNode(_) => s::REBALANCE_NODE,
            MessageData::DisableTakeoverRuns(_) => s::DISABLE_TAKEOVER_RUNS,
            MessageData::DisableRecoveries(_) => s::DISABLE_RECOVERIES,
            MessageData::DisableIpCheck(_) => s::DISABLE_IP_CHECK,
            MessageData::Other(_) => return None,
        })
    }

    /// Encoded size of the body.
    pub fn wire_len(&self) -> usize {
        match self {
            MessageData::Banning(_)
            | MessageData::Leader(_)
            | MessageData::DetachDatabase(_)
            | MessageData::RebalanceNode(_)
            | MessageData::DisableIpCheck(_) => 4,
            MessageData::Election(m) => m.wire_len(),
            MessageData::Reconfigure
            | MessageData::GetLog
            | MessageData::ClearLog
            | MessageData::ReloadNodes => 0,
            MessageData::ReleaseIp(s) | MessageData::TakeIp(s) => s.wire_len(),
            MessageData::SetNodeFlags(f) | MessageData::PushNodeFlags(f) => f.wire_len(),
            MessageData::RecdUpdateIp(p) => p.wire_len(),
            MessageData::VacuumFetch(b) => b.wire_len(),
            MessageData::MemDump(m) | MessageData::TakeoverRun(m) => m.wire_len(),
            MessageData::DisableTakeoverRuns(m) | MessageData::DisableRecoveries(m) => m.wire_len(),
            MessageData::Other(b) => b.len(),
        }
    }

    /// Appends the body.
    pub fn push(&self, out: &mut Vec<u8>) {
        match self {
            MessageData::Banning(v)
            | MessageData::Leader(v)
            | MessageData::DetachDatabase(v)
            | MessageData::RebalanceNode(v)
            | MessageData::DisableIpCheck(v) => out.put_u32(*v),
            MessageData::Election(m) => m.push(out),
            MessageData::Reconfigure
            | MessageData::GetLog
            | MessageData::ClearLog
            | MessageData::ReloadNodes => {}
            MessageData::ReleaseIp(s) | MessageData::TakeIp(s) => s.push(out),
            MessageData::SetNodeFlags(f) | MessageData::PushNodeFlags(f) => f.push(out),
            MessageData::RecdUpdateIp(p) => p.push(out),
            MessageData::VacuumFetch(b) => b.push(out),
            MessageData::MemDump(m) | MessageData::TakeoverRun(m) => m.push(out),
            MessageData::DisableTakeoverRuns(m) | MessageData::DisableRecoveries(m) => m.push(out),
            MessageData::Other(b) => out.put_bytes(b),
        }
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(self.wire_len());
        self.push(&mut v);
        v
    }
}
