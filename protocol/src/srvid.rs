//! Well-known srvids (message addresses) and the reserved ranges.
//!
//! The constants themselves live with the message bodies in
//! [`crate::types::srvid`] (one source of truth); this module re-exports
//! them and adds Samba's own srvids and helpers for the ranges that
//! upstream carves out by top byte.

pub use crate::types::srvid::*;

/// Samba: notifyd proxy (`source3/include/ctdb_srvids.h`).
pub const SAMBA_NOTIFY_PROXY: u64 = 0xFE00_0000_0000_0001;
/// Samba: per-process messaging (smbd registers it).
pub const SAMBA_PROCESS: u64 = 0xFE00_0000_0000_0002;

/// Mask of the top byte that selects a reserved range.
pub const RANGE_MASK: u64 = 0xFF00_0000_0000_0000;

/// The reserved range (top byte) a srvid falls in.
pub fn range_of(srvid: u64) -> u64 {
    srvid & RANGE_MASK
}

/// The `ctdb` tool's own reply addresses (`SRVID_CTDB_TOOL`).
pub const CTDB_TOOL: u64 = TOOL_RANGE | 0x0001_0000_0000_0000;
/// The `ctdb` tool's srvid for `restoredb` record pushes (`SRVID_CTDB_PUSHDB`).
pub const CTDB_PUSHDB: u64 = TOOL_RANGE | 0x0002_0000_0000_0000;

/// The srvid the `ctdb` tool uses for its n-th reply address:
/// `CTDB_TOOL | (pid & 0xFFFF) << 16 | n`.
pub fn tool_srvid(pid: u32, n: u16) -> u64 {
    CTDB_TOOL | (u64::from(pid & 0xFFFF) << 16) | u64::from(n)
}

/// The srvid the client library uses for a traverse: `CLIENT_RANGE | pid`.
pub fn client_traverse_srvid(pid: u32) -> u64 {
    CLIENT_RANGE | u64::from(pid)
}

/// Upstream's name for a well-known srvid, if it is one.
pub fn name(srvid: u64) -> Option<&'static str> {
    Some(match srvid {
        ALL => "ALL",
        RECOVERY => "RECOVERY",
        BANNING => "BANNING",
        ELECTION => "ELECTION",
        LEADER => "LEADER",
        RECONFIGURE => "RECONFIGURE",
        RELEASE_IP => "RELEASE_IP",
        TAKE_IP => "TAKE_IP",
        SET_NODE_FLAGS => "SET_NODE_FLAGS",
        RECD_UPDATE_IP => "RECD_UPDATE_IP",
        VACUUM_FETCH => "VACUUM_FETCH",
        DETACH_DATABASE => "DETACH_DATABASE",
        MEM_DUMP => "MEM_DUMP",
        GETLOG => "GETLOG",
        CLEARLOG => "CLEARLOG",
        PUSH_NODE_FLAGS => "PUSH_NODE_FLAGS",
        RELOAD_NODES => "RELOAD_NODES",
        TAKEOVER_RUN => "TAKEOVER_RUN",
        REBALANCE_NODE => "REBALANCE_NODE",
        DISABLE_TAKEOVER_RUNS => "DISABLE_TAKEOVER_RUNS",
        DISABLE_RECOVERIES => "DISABLE_RECOVERIES",
        DISABLE_IP_CHECK => "DISABLE_IP_CHECK",
        SAMBA_NOTIFY => "SAMBA_NOTIFY",
        SAMBA_NOTIFY_PROXY => "SAMBA_NOTIFY_PROXY",
        SAMBA_PROCESS => "SAMBA_PROCESS",
        TUNNEL_TEST => "TUNNEL_TEST",
        _ => return None,
    })
}
