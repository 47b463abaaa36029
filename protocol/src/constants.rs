//! Named constants of the wire protocol other than opcodes and srvids:
//! special pnns, call ids and flags, control flags, node flags,
//! capabilities, recovery modes, run states, record and tdb flags.
//!
//! Why one module: these numbers appear in packets of every kind, and the
//! daemon, the CLI and the tests must agree on them with Samba bit for bit.
//! Names follow upstream's (without redundant prefixes where Rust paths
//! already say it) so a Samba engineer can grep for them.

/// TCP port between nodes (`CTDB_PORT`; `getservbyname("ctdb")` may override).
pub const CTDB_PORT: u16 = 4379;

/// Default client socket path (`<rundir>/ctdbd.socket`; env `CTDB_SOCKET`
/// overrides).
pub const CTDB_SOCKET_PATH: &str = "/run/ctdb/ctdbd.socket";

// ---- special pnns (header destnode/srcnode) ----

/// "The daemon I am connected to" (client socket only).
pub const CTDB_CURRENT_NODE: u32 = 0xF000_0001;
/// Every node in the cluster, active or not.
pub const CTDB_BROADCAST_ALL: u32 = 0xF000_0002;
/// Every node in the current vnn map.
pub const CTDB_BROADCAST_ACTIVE: u32 = 0xF000_0003;
/// Every connected node.
pub const CTDB_BROADCAST_CONNECTED: u32 = 0xF000_0004;
/// Selected connected nodes.
pub const CTDB_MULTICAST: u32 = 0xF000_0005;
/// No pnn known (fresh client library, leader stepping down).
pub const CTDB_UNKNOWN_PNN: u32 = 0xFFFF_FFFF;

/// True for the `0xF000000x` destinations that are not a pnn.
pub fn is_special_pnn(pnn: u32) -> bool {
    matches!(
        pnn,
        CTDB_CURRENT_NODE
            | CTDB_BROADCAST_ALL
            | CTDB_BROADCAST_ACTIVE
            | CTDB_BROADCAST_CONNECTED
            | CTDB_MULTICAST
    )
}

/// The key holding a persistent database's sequence number.
pub const CTDB_DB_SEQNUM_KEY: &[u8] = b"__db_sequence_number__";

/// The generation nobody uses (vnn map during recovery, fresh nodes).
pub const INVALID_GENERATION: u32 = 1;

// ---- call ids (REQ_CALL callid) ----

/// No-op call, used to migrate a record to the caller.
pub const CTDB_NULL_FUNC: u32 = 0xFF00_0001;
/// Return the record's data (without ltdb header).
pub const CTDB_FETCH_FUNC: u32 = 0xFF00_0002;
/// Return ltdb header + data (read-only delegations).
pub const CTDB_FETCH_WITH_HEADER_FUNC: u32 = 0xFF00_0003;

// ---- call flags (REQ_CALL flags) ----

/// The client wants the record migrated to its node.
pub const CTDB_IMMEDIATE_MIGRATION: u32 = 0x0000_0001;
/// Migration triggered by vacuuming.
pub const CTDB_CALL_FLAG_VACUUM_MIGRATION: u32 = 0x0000_0002;
/// A read-only copy is acceptable.
pub const CTDB_WANT_READONLY: u32 = 0x0000_0004;

// ---- control flags (REQ_CONTROL flags) ----

/// The sender wants no reply.
pub const CTDB_CTRL_FLAG_NOREPLY: u32 = 0x0000_0001;
/// Mask of the opcode-specific upper 16 bits.
pub const CTDB_CTRL_FLAG_OPCODE_SPECIFIC: u32 = 0xFFFF_0000;
/// GET_PUBLIC_IPS: only addresses that can be hosted.
pub const CTDB_PUBLIC_IP_FLAGS_ONLY_AVAILABLE: u32 = 0x0001_0000;
/// DB_ATTACH*: sent by recovery, allowed while recovery is active.
pub const CTDB_CTRL_FLAG_ATTACH_RECOVERY: u32 = 0x0002_0000;

// ---- tunnel flags (REQ_TUNNEL flags) ----

pub const CTDB_TUNNEL_FLAG_REQUEST: u32 = 0x0000_0001;
pub const CTDB_TUNNEL_FLAG_REPLY: u32 = 0x0000_0002;
pub const CTDB_TUNNEL_FLAG_NOREPLY: u32 = 0x0000_0010;

// ---- keepalive ----

/// REQ_KEEPALIVE version of Samba 4.17: `(4 << 16) | 17`.
pub const KEEPALIVE_VERSION_4_17: u32 = (4 << 16) | 17;

/// The keepalive version word for a Samba `major.minor`.
pub fn keepalive_version(major: u16, minor: u16) -> u32 {
    (u32::from(major) << 16) | u32::from(minor)
}

// ---- recovery mode (GET_RECMODE status, SET_RECMODE input) ----

pub const CTDB_RECOVERY_NORMAL: u32 = 0;
pub const CTDB_RECOVERY_ACTIVE: u32 = 1;

// ---- node flags (node_map, MODIFY_FLAGS) ----

pub const NODE_FLAGS_DISCONNECTED: u32 = 0x0000_0001;
pub const NODE_FLAGS_UNHEALTHY: u32 = 0x0000_0002;
pub const NODE_FLAGS_PERMANENTLY_DISABLED: u32 = 0x0000_0004;
pub const NODE_FLAGS_BANNED: u32 = 0x0000_0008;
pub const NODE_FLAGS_DELETED: u32 = 0x0000_0010;
pub const NODE_FLAGS_STOPPED: u32 = 0x0000_0020;
pub const NODE_FLAGS_DISABLED: u32 = NODE_FLAGS_UNHEALTHY | NODE_FLAGS_PERMANENTLY_DISABLED;
pub const NODE_FLAGS_INACTIVE: u32 =
    NODE_FLAGS_DELETED | NODE_FLAGS_DISCONNECTED | NODE_FLAGS_BANNED | NODE_FLAGS_STOPPED;

// ---- capabilities (GET_CAPABILITIES) ----

/// May become leader (recovery master).
pub const CTDB_CAP_RECMASTER: u32 = 0x0000_0001;
/// May be an lmaster (in the vnn map).
pub const CTDB_CAP_LMASTER: u32 = 0x0000_0002;
/// Obsolete.
pub const CTDB_CAP_LVS: u32 = 0x0000_0004;
/// Obsolete.
pub const CTDB_CAP_NATGW: u32 = 0x0000_0008;
pub const CTDB_CAP_PARALLEL_RECOVERY: u32 = 0x0001_0000;
pub const CTDB_CAP_FRAGMENTED_CONTROLS: u32 = 0x0002_0000;
pub const CTDB_CAP_FEATURES: u32 = CTDB_CAP_PARALLEL_RECOVERY | CTDB_CAP_FRAGMENTED_CONTROLS;
/// 0x30003.
pub const CTDB_CAP_DEFAULT: u32 = CTDB_CAP_RECMASTER | CTDB_CAP_LMASTER | CTDB_CAP_FEATURES;

// ---- database flags (dbid.flags) and lmaster ----

pub use crate::types::{
    DB_FLAGS_PERSISTENT, DB_FLAGS_READONLY, DB_FLAGS_REPLICATED, DB_FLAGS_STICKY, LMASTER_ANY,
};

// ---- ltdb record flags (ltdb_header.flags, DMASTER trailing flags) ----

pub const CTDB_REC_FLAG_DEFAULT: u32 = 0x0000_0000;
pub const CTDB_REC_FLAG_MIGRATED_WITH_DATA: u32 = 0x0001_0000;
pub const CTDB_REC_FLAG_VACUUM_MIGRATED: u32 = 0x0002_0000;
pub const CTDB_REC_FLAG_AUTOMATIC: u32 = 0x0004_0000;
pub const CTDB_REC_RO_HAVE_DELEGATIONS: u32 = 0x0100_0000;
pub const CTDB_REC_RO_HAVE_READONLY: u32 = 0x0200_0000;
pub const CTDB_REC_RO_REVOKING_READONLY: u32 = 0x0400_0000;
pub const CTDB_REC_RO_REVOKE_COMPLETE: u32 = 0x0800_0000;
pub const CTDB_REC_RO_FLAGS: u32 = CTDB_REC_RO_HAVE_DELEGATIONS
    | CTDB_REC_RO_HAVE_READONLY
    | CTDB_REC_RO_REVOKING_READONLY
    | CTDB_REC_RO_REVOKE_COMPLETE;

// ---- tdb open flags (DB_OPEN_FLAGS output, from tdb.h) ----

pub const TDB_CLEAR_IF_FIRST: i32 = 1;
pub const TDB_INTERNAL: i32 = 2;
pub const TDB_NOLOCK: i32 = 4;
pub const TDB_NOMMAP: i32 = 8;
pub const TDB_CONVERT: i32 = 16;
pub const TDB_BIGENDIAN: i32 = 32;
pub const TDB_NOSYNC: i32 = 64;
pub const TDB_SEQNUM: i32 = 128;
pub const TDB_VOLATILE: i32 = 256;
pub const TDB_ALLOW_NESTING: i32 = 512;
pub const TDB_DISALLOW_NESTING: i32 = 1024;
pub const TDB_INCOMPATIBLE_HASH: i32 = 2048;
pub const TDB_MUTEX_LOCKING: i32 = 4096;

// ---- debug levels (GET_DEBUG / SET_DEBUG), Samba's DBGLVL_* ----

pub const DEBUG_ERR: u32 = 0;
pub const DEBUG_WARNING: u32 = 1;
pub const DEBUG_NOTICE: u32 = 3;
pub const DEBUG_INFO: u32 = 5;
pub const DEBUG_DEBUG: u32 = 10;

/// ctdbd's run state (GET_RUNSTATE output, `enum ctdb_runstate`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u32)]
pub enum Runstate {
    Unknown = 0,
    Init = 1,
    Setup = 2,
    FirstRecovery = 3,
    Startup = 4,
    Running = 5,
    Shutdown = 6,
}

impl Runstate {
    pub const ALL: [Runstate; 7] = [
        Runstate::Unknown,
        Runstate::Init,
        Runstate::Setup,
        Runstate::FirstRecovery,
        Runstate::Startup,
        Runstate::Running,
        Runstate::Shutdown,
    ];

    /// The run state with this number; unknown numbers are `None` (the CLI
    /// prints them as UNKNOWN).
    pub fn from_u32(v: u32) -> Option<Runstate> {
        Runstate::ALL.get(v as usize).copied()
    }

    /// Upstream's name as `ctdb runstate` prints it.
    pub fn name(self) -> &'static str {
        match self {
            Runstate::Unknown => "UNKNOWN",
            Runstate::Init => "INIT",
            Runstate::Setup => "SETUP",
            Runstate::FirstRecovery => "FIRST_RECOVERY",
            Runstate::Startup => "STARTUP",
            Runstate::Running => "RUNNING",
            Runstate::Shutdown => "SHUTDOWN",
        }
    }
}

impl std::fmt::Display for Runstate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}
