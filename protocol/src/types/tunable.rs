//! Tunables: the full list (GET_ALL_TUNABLES), one named value
//! (SET_TUNABLE) and the name list (LIST_TUNABLES).

use crate::error::ProtocolError;
use crate::types::StringN;
use crate::wire::{Put, Reader, Wire};

macro_rules! tunable_list {
    ( $( $(#[$m:meta])* $f:ident = $name:literal, )* ) => {
        /// `ctdb_tunable_list` (248 bytes): 62 `u32` in upstream order.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
        pub struct TunableList {
            $( $(#[$m])* pub $f: u32, )*
        }

        /// The tunable names, in wire order (index i names field i of
        /// [`TunableList`]).
        pub const TUNABLE_NAMES: [&str; TUNABLE_COUNT] = [ $( $name, )* ];

        impl TunableList {
            /// The values in wire order.
            pub fn to_array(&self) -> [u32; TUNABLE_COUNT] {
                [ $( self.$f, )* ]
            }

            /// Builds a list from values in wire order.
            pub fn from_array(a: [u32; TUNABLE_COUNT]) -> Self {
                let mut it = a.into_iter();
                TunableList { $( $f: it.next().unwrap_or_default(), )* }
            }

            /// Mutable access to field `i` (wire order).
            pub fn get_mut(&mut self, i: usize) -> Option<&mut u32> {
                let fields: [&mut u32; TUNABLE_COUNT] = [ $( &mut self.$f, )* ];
                fields.into_iter().nth(i)
            }
        }
    };
}

/// Number of tunables in [`TunableList`].
pub const TUNABLE_COUNT: usize = 62;

tunable_list! {
    max_redirect_count = "MaxRedirectCount",
    /// milliseconds
    seqnum_interval = "SeqnumInterval",
    control_timeout = "ControlTimeout",
    traverse_timeout = "TraverseTimeout",
    keepalive_interval = "KeepaliveInterval",
    keepalive_limit = "KeepaliveLimit",
    recover_timeout = "RecoverTimeout",
    recover_interval = "RecoverInterval",
    election_timeout = "ElectionTimeout",
    takeover_timeout = "TakeoverTimeout",
    monitor_interval = "MonitorInterval",
    tickle_update_interval = "TickleUpdateInterval",
    script_timeout = "EventScriptTimeout",
    monitor_timeout_count = "MonitorTimeoutCount",
    script_unhealthy_on_timeout = "EventScriptUnhealthyOnTimeout",
    recovery_grace_period = "RecoveryGracePeriod",
    recovery_ban_period = "RecoveryBanPeriod",
    database_hash_size = "DatabaseHashSize",
    database_max_dead = "DatabaseMaxDead",
    rerecovery_timeout = "RerecoveryTimeout",
    enable_bans = "EnableBans",
    deterministic_public_ips = "DeterministicIPs",
    reclock_ping_period = "ReclockPingPeriod",
    no_ip_failback = "NoIPFailback",
    disable_ip_failover = "DisableIPFailover",
    verbose_memory_names = "VerboseMemoryNames",
    recd_ping_timeout = "RecdPingTimeout",
    recd_ping_failcount = "RecdFailCount",
    log_latency_ms = "LogLatencyMs",
    reclock_latency_ms = "RecLockLatencyMs",
    recovery_drop_all_ips = "RecoveryDropAllIPs",
    verify_recovery_lock = "VerifyRecoveryLock",
    vacuum_interval = "VacuumInterval",
    vacuum_max_run_time = "VacuumMaxRunTime",
    repack_limit = "RepackLimit",
    vacuum_limit = "VacuumLimit",
    max_queue_depth_drop_msg = "MaxQueueDropMsg",
    allow_unhealthy_db_read = "AllowUnhealthyDBRead",
    stat_history_interval = "StatHistoryInterval",
    deferred_attach_timeout = "DeferredAttachTO",
    vacuum_fast_path_count = "VacuumFastPathCount",
    lcp2_public_ip_assignment = "LCP2PublicIPs",
    allow_client_db_attach = "AllowClientDBAttach",
    recover_pdb_by_seqnum = "RecoverPDBBySeqNum",
    deferred_rebalance_on_node_add = "DeferredRebalanceOnNodeAdd",
    fetch_collapse = "FetchCollapse",
    hopcount_make_sticky = "HopcountMakeSticky",
    sticky_duration = "StickyDuration",
    sticky_pindown = "StickyPindown",
    no_ip_takeover = "NoIPTakeover",
    db_record_count_warn = "DBRecordCountWarn",
    db_record_size_warn = "DBRecordSizeWarn",
    db_size_warn = "DBSizeWarn",
    pulldb_preallocation_size = "PullDBPreallocation",
    no_ip_host_on_all_disabled = "NoIPHostOnAllDisabled",
    samba3_hack = "Samba3AvoidDeadlocks",
    mutex_enabled = "TDBMutexEnabled",
    lock_processes_per_db = "LockProcessesPerDB",
    rec_buffer_size_limit = "RecBufferSizeLimit",
    queue_buffer_size = "QueueBufferSize",
    ip_alloc_algorithm = "IPAllocAlgorithm",
    allow_mixed_versions = "AllowMixedVersions",
}

impl TunableList {
    pub const SIZE: usize = 4 * TUNABLE_COUNT;

    /// Wire index of a tunable name, matched case-insensitively as upstream.
    pub fn index_of(name: &str) -> Option<usize> {
        TUNABLE_NAMES
            .iter()
            .position(|n| n.eq_ignore_ascii_case(name))
    }

    /// Value of the named tunable (case-insensitive).
    pub fn get(&self, name: &str) -> Option<u32> {
        Self::index_of(name).map(|i| self.to_array()[i])
    }

    /// Sets the named tunable (case-insensitive); false if unknown.
    pub fn set(&mut self, name: &str, value: u32) -> bool {
        match Self::index_of(name).and_then(|i| self.get_mut(i)) {
            Some(v) => {
                *v = value;
                true
            }
            None => false,
        }
    }
}

/// One entry of upstream's tunable table (`ctdb/common/tunable.c`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TunableInfo {
    pub name: &'static str,
    pub default: u32,
    /// Obsolete tunables are still accepted by SET_TUNABLE (status 1),
    /// rejected in tunable files, and left out of LIST_TUNABLES.
    pub obsolete: bool,
}

/// Upstream's tunable table in its own order, which is the order
/// LIST_TUNABLES reports names in (it differs from the wire order of
/// [`TunableList`]).
pub const TUNABLE_TABLE: [TunableInfo; TUNABLE_COUNT] = [
    TunableInfo {
        name: "MaxRedirectCount",
        default: 3,
        obsolete: true,
    },
    TunableInfo {
        name: "SeqnumInterval",
        default: 1000,
        obsolete: false,
    },
    TunableInfo {
        name: "ControlTimeout",
        default: 60,
        obsolete: false,
    },
    TunableInfo {
        name: "TraverseTimeout",
        default: 20,
        obsolete: false,
    },
    TunableInfo {
        name: "KeepaliveInterval",
        default: 5,
        obsolete: false,
    },
    TunableInfo {
        name: "KeepaliveLimit",
        default: 5,
        obsolete: false,
    },
    TunableInfo {
        name: "RecoverTimeout",
        default: 30,
        obsolete: false,
    },
    TunableInfo {
        name: "RecoverInterval",
        default: 1,
        obsolete: false,
    },
    TunableInfo {
        name: "ElectionTimeout",
        default: 3,
        obsolete: false,
    },
    TunableInfo {
        name: "TakeoverTimeout",
        default: 9,
        obsolete: false,
    },
    TunableInfo {
        name: "MonitorInterval",
        default: 15,
        obsolete: false,
    },
    TunableInfo {
        name: "TickleUpdateInterval",
        default: 20,
        obsolete: false,
    },
    TunableInfo {
        name: "EventScriptTimeout",
        default: 30,
        obsolete: false,
    },
    TunableInfo {
        name: "MonitorTimeoutCount",
        default: 20,
        obsolete: false,
    },
    TunableInfo {
        name: "EventScriptUnhealthyOnTimeout",
        default: 0,
        obsolete: true,
    },
    TunableInfo {
        name: "RecoveryGracePeriod",
        default: 120,
        obsolete: false,
    },
    TunableInfo {
        name: "RecoveryBanPeriod",
        default: 300,
        obsolete: false,
    },
    TunableInfo {
        name: "DatabaseHashSize",
        default: 100001,
        obsolete: false,
    },
    TunableInfo {
        name: "DatabaseMaxDead",
        default: 5,
        obsolete: false,
    },
    TunableInfo {
        name: "RerecoveryTimeout",
        default: 10,
        obsolete: false,
    },
    TunableInfo {
        name: "EnableBans",
        default: 1,
        obsolete: false,
    },
    TunableInfo {
        name: "DeterministicIPs",
        default: 0,
        obsolete: true,
    },
    TunableInfo {
        name: "LCP2PublicIPs",
        default: 1,
        obsolete: true,
    },
    TunableInfo {
        name: "ReclockPingPeriod",
        default: 60,
        obsolete: true,
    },
    TunableInfo {
        name: "NoIPFailback",
        default: 0,
        obsolete: false,
    },
    TunableInfo {
        name: "DisableIPFailover",
        default: 0,
        obsolete: true,
    },
    TunableInfo {
        name: "VerboseMemoryNames",
        default: 0,
        obsolete: false,
    },
    TunableInfo {
        name: "RecdPingTimeout",
        default: 60,
        obsolete: false,
    },
    TunableInfo {
        name: "RecdFailCount",
        default: 10,
        obsolete: false,
    },
    TunableInfo {
        name: "LogLatencyMs",
        default: 0,
        obsolete: false,
    },
    TunableInfo {
        name: "RecLockLatencyMs",
        default: 1000,
        obsolete: false,
    },
    TunableInfo {
        name: "RecoveryDropAllIPs",
        default: 120,
        obsolete: false,
    },
    TunableInfo {
        name: "VerifyRecoveryLock",
        default: 1,
        obsolete: true,
    },
    TunableInfo {
        name: "VacuumInterval",
        default: 10,
        obsolete: false,
    },
    TunableInfo {
        name: "VacuumMaxRunTime",
        default: 120,
        obsolete: false,
    },
    TunableInfo {
        name: "RepackLimit",
        default: 10000,
        obsolete: false,
    },
    TunableInfo {
        name: "VacuumLimit",
        default: 5000,
        obsolete: true,
    },
    TunableInfo {
        name: "VacuumFastPathCount",
        default: 60,
        obsolete: false,
    },
    TunableInfo {
        name: "MaxQueueDropMsg",
        default: 1000000,
        obsolete: false,
    },
    TunableInfo {
        name: "AllowUnhealthyDBRead",
        default: 0,
        obsolete: false,
    },
    TunableInfo {
        name: "StatHistoryInterval",
        default: 1,
        obsolete: false,
    },
    TunableInfo {
        name: "DeferredAttachTO",
        default: 120,
        obsolete: false,
    },
    TunableInfo {
        name: "AllowClientDBAttach",
        default: 1,
        obsolete: false,
    },
    TunableInfo {
        name: "RecoverPDBBySeqNum",
        default: 1,
        obsolete: true,
    },
    TunableInfo {
        name: "DeferredRebalanceOnNodeAdd",
        default: 300,
        obsolete: true,
    },
    TunableInfo {
        name: "FetchCollapse",
        default: 1,
        obsolete: false,
    },
    TunableInfo {
        name: "HopcountMakeSticky",
        default: 50,
        obsolete: false,
    },
    TunableInfo {
        name: "StickyDuration",
        default: 600,
        obsolete: false,
    },
    TunableInfo {
        name: "StickyPindown",
        default: 200,
        obsolete: false,
    },
    TunableInfo {
        name: "NoIPTakeover",
        default: 0,
        obsolete: false,
    },
    TunableInfo {
        name: "DBRecordCountWarn",
        default: 100000,
        obsolete: false,
    },
    TunableInfo {
        name: "DBRecordSizeWarn",
        default: 10000000,
        obsolete: false,
    },
    TunableInfo {
        name: "DBSizeWarn",
        default: 100000000,
        obsolete: false,
    },
    TunableInfo {
        name: "PullDBPreallocation",
        default: 10485760,
        obsolete: false,
    },
    TunableInfo {
        name: "NoIPHostOnAllDisabled",
        default: 1,
        obsolete: true,
    },
    TunableInfo {
        name: "Samba3AvoidDeadlocks",
        default: 0,
        obsolete: true,
    },
    TunableInfo {
        name: "TDBMutexEnabled",
        default: 1,
        obsolete: true,
    },
    TunableInfo {
        name: "LockProcessesPerDB",
        default: 200,
        obsolete: false,
    },
    TunableInfo {
        name: "RecBufferSizeLimit",
        default: 1000000,
        obsolete: false,
    },
    TunableInfo {
        name: "QueueBufferSize",
        default: 1024,
        obsolete: false,
    },
    TunableInfo {
        name: "IPAllocAlgorithm",
        default: 2,
        obsolete: false,
    },
    TunableInfo {
        name: "AllowMixedVersions",
        default: 0,
        obsolete: false,
    },
];

impl TunableInfo {
    /// Looks a tunable up by name, case-insensitively.
    pub fn find(name: &str) -> Option<&'static TunableInfo> {
        TUNABLE_TABLE
            .iter()
            .find(|t| t.name.eq_ignore_ascii_case(name))
    }
}

impl TunableList {
    /// Every tunable at its upstream default (`ctdb_tunable_set_defaults`).
    pub fn defaults() -> Self {
        let mut t = TunableList::default();
        for info in &TUNABLE_TABLE {
            t.set(info.name, info.default);
        }
        t
    }

    /// The names LIST_TUNABLES returns: non-obsolete, in table order.
    pub fn names() -> VarList<'static> {
        VarList {
            names: TUNABLE_TABLE
                .iter()
                .filter(|t| !t.obsolete)
                .map(|t| t.name)
                .collect(),
        }
    }
}

impl<'a> Wire<'a> for TunableList {
    fn wire_len(&self) -> usize {
        Self::SIZE
    }
    fn push(&self, out: &mut Vec<u8>) {
        for v in self.to_array() {
            out.put_u32(v);
        }
    }
    fn pull(r: &mut Reader<'a>) -> Result<Self, ProtocolError> {
        let mut a = [0u32; TUNABLE_COUNT];
        for v in a.iter_mut() {
            *v = r.u32("tunable_list")?;
        }
        Ok(TunableList::from_array(a))
    }
}

/// `ctdb_tunable` (SET_TUNABLE): value, then the name as a `stringn`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct Tunable<'a> {
    pub value: u32,
    pub name: StringN<'a>,
}

impl<'a> Tunable<'a> {
    pub fn new(name: &'a str, value: u32) -> Self {
        Tunable {
            value,
            name: StringN::new(name),
        }
    }
}

impl<'a> Wire<'a> for Tunable<'a> {
    fn wire_len(&self) -> usize {
        4 + self.name.wire_len()
    }
    fn push(&self, out: &mut Vec<u8>) {
        out.put_u32(self.value);
        self.name.push(out);
    }
    fn pull(r: &mut Reader<'a>) -> Result<Self, ProtocolError> {
        Ok(Tunable {
            value: r.u32("tunable value")?,
            name: StringN::pull(r)?,
        })
    }
}

/// `ctdb_var_list` (LIST_TUNABLES output): `u32 len`, then `len` bytes of
/// names separated by `:` with one final NUL (len 0 when there are no
/// names). Encoding uses ctdbd's form, which also puts a `:` in front
/// (`":SeqnumInterval:ControlTimeout:...\0"`); upstream's client-side
/// encoder omits it. Decoding accepts both and skips empty names, as
/// upstream's `strtok` does; names must be UTF-8.
#[derive(Debug, Clone, PartialEq, Eq, Default, Hash)]
pub struct VarList<'a> {
    pub names: Vec<&'a str>,
}

impl<'a> Wire<'a> for VarList<'a> {
    fn wire_len(&self) -> usize {
        if self.names.is_empty() {
            return 4;
        }
        4 + 1 + self.names.iter().map(|n| n.len() + 1).sum::<usize>()
    }
    fn push(&self, out: &mut Vec<u8>) {
        out.put_u32((self.wire_len() - 4) as u32);
        for n in &self.names {
            out.put_u8(b':');
            out.put_bytes(n.as_bytes());
        }
        if !self.names.is_empty() {
            out.put_u8(0);
        }
    }
    fn pull(r: &mut Reader<'a>) -> Result<Self, ProtocolError> {
        let n = r.u32("var_list length")? as usize;
        let b = r.bytes(n, "var_list")?;
        if b.is_empty() {
            return Ok(VarList::default());
        }
        let body = match b.split_last() {
            Some((0, body)) if !body.contains(&0) => body,
            _ => return Err(ProtocolError::BadString { what: "var_list" }),
        };
        let s =
            std::str::from_utf8(body).map_err(|_| ProtocolError::BadString { what: "var_list" })?;
        Ok(VarList {
            names: s.split(':').filter(|t| !t.is_empty()).collect(),
        })
    }
}
