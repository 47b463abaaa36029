//! Every control: the opcode table ([`Opcode`]), the typed input of each
//! request ([`ControlData`]) and the typed output of each reply
//! ([`ControlReplyData`]).
//!
//! Why tables: upstream's `protocol_control.c` is three long switches (len,
//! push, pull) per direction. Here each control is one line in a table and a
//! macro generates the enum, its encoder and its decoder, so the in/out type
//! of every opcode can be checked against upstream in one place.
//!
//! Decoding is strict where the daemon is: a typed input must fill the
//! control's data exactly (ctdbd checks sizes with
//! `CHECK_CONTROL_DATA_SIZE`), a control without input must have none.
//! Replies of controls that have no output are decoded as
//! [`ControlReplyData::None`] whatever their data (the client library ignores
//! it). Obsolete and unknown opcodes decode to the `Other` variants with the
//! raw bytes; a daemon answers them with status −1.

use crate::error::ProtocolError;
use crate::packet::Body;
use crate::types::{
    AddrInfo, BanState, Connection, CtdbString, DbIdMap, DbStatistics, DbVacuum, EchoData, Iface,
    IfaceList, KeyData, NodeFlagChange, NodeMap, NotifyData, PidSrvid, PublicIp, PublicIpInfo,
    PublicIpList, PullDbExt, RecBuffer, RecData, SockAddr, Statistics, StatisticsList, StringN,
    TickleList, TransDb, TraverseAll, TraverseAllExt, TraverseStart, TraverseStartExt, Tunable,
    TunableList, Uptime, VarList, VnnMap,
};
use crate::wire::{Put, Reader, Wire};

macro_rules! opcodes {
    ( $( $v:ident = $num:literal, $name:literal, $state:ident; )* ) => {
        /// Every control opcode of `enum ctdb_controls`, obsolete ones
        /// included (a daemon must recognise them to answer −1).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[repr(u32)]
        pub enum Opcode {
            $( $v = $num, )*
        }

        impl Opcode {
            /// All opcodes in numeric order.
            pub const ALL: &'static [Opcode] = &[ $( Opcode::$v, )* ];

            /// The opcode with this number, if upstream defines one.
            pub fn from_u32(v: u32) -> Option<Opcode> {
                match v {
                    $( $num => Some(Opcode::$v), )*
                    _ => None,
                }
            }

            /// Upstream's name without the `CTDB_CONTROL_` prefix.
            pub fn name(self) -> &'static str {
                match self {
                    $( Opcode::$v => $name, )*
                }
            }

            /// True for opcodes upstream marks obsolete (answered with −1).
            pub fn is_obsolete(self) -> bool {
                match self {
                    $( Opcode::$v => opcodes!(@obsolete $state), )*
                }
            }
        }
    };
    (@obsolete obsolete) => { true };
    (@obsolete current) => { false };
}

opcodes! {
    ProcessExists = 0, "PROCESS_EXISTS", current;
    Statistics = 1, "STATISTICS", current;
    Ping = 3, "PING", current;
    Getdbpath = 4, "GETDBPATH", current;
    Getvnnmap = 5, "GETVNNMAP", current;
    Setvnnmap = 6, "SETVNNMAP", current;
    GetDebug = 7, "GET_DEBUG", current;
    SetDebug = 8, "SET_DEBUG", current;
    GetDbmap = 9, "GET_DBMAP", current;
    GetNodemapV4 = 10, "GET_NODEMAPv4", obsolete;
    SetDmaster = 11, "SET_DMASTER", obsolete;
    PullDb = 13, "PULL_DB", obsolete;
    PushDb = 14, "PUSH_DB", obsolete;
    GetRecmode = 15, "GET_RECMODE", current;
    SetRecmode = 16, "SET_RECMODE", current;
    StatisticsReset = 17, "STATISTICS_RESET", current;
    DbAttach = 18, "DB_ATTACH", current;
    SetCall = 19, "SET_CALL", obsolete;
    TraverseStart = 20, "TRAVERSE_START", current;
    TraverseAll = 21, "TRAVERSE_ALL", current;
    TraverseData = 22, "TRAVERSE_DATA", current;
    RegisterSrvid = 23, "REGISTER_SRVID", current;
    DeregisterSrvid = 24, "DEREGISTER_SRVID", current;
    GetDbname = 25, "GET_DBNAME", current;
    EnableSeqnum = 26, "ENABLE_SEQNUM", current;
    UpdateSeqnum = 27, "UPDATE_SEQNUM", current;
    DumpMemory = 29, "DUMP_MEMORY", current;
    GetPid = 30, "GET_PID", current;
    GetRecmaster = 31, "GET_RECMASTER", obsolete;
    SetRecmaster = 32, "SET_RECMASTER", obsolete;
    Freeze = 33, "FREEZE", current;
    Thaw = 34, "THAW", obsolete;
    GetPnn = 35, "GET_PNN", current;
    Shutdown = 36, "SHUTDOWN", current;
    GetMonmode = 37, "GET_MONMODE", obsolete;
    TakeoverIpV4 = 42, "TAKEOVER_IPv4", obsolete;
    ReleaseIpV4 = 43, "RELEASE_IPv4", obsolete;
    TcpClient = 44, "TCP_CLIENT", current;
    TcpAdd = 45, "TCP_ADD", current;
    TcpRemove = 46, "TCP_REMOVE", current;
    Startup = 47, "STARTUP", current;
    SetTunable = 48, "SET_TUNABLE", current;
    GetTunable = 49, "GET_TUNABLE", current;
    ListTunables = 50, "LIST_TUNABLES", current;
    GetPublicIpsV4 = 51, "GET_PUBLIC_IPSv4", obsolete;
    ModifyFlags = 52, "MODIFY_FLAGS", current;
    GetAllTunables = 53, "GET_ALL_TUNABLES", current;
    KillTcp = 54, "KILL_TCP", obsolete;
    GetTcpTickleList = 55, "GET_TCP_TICKLE_LIST", current;
    SetTcpTickleList = 56, "SET_TCP_TICKLE_LIST", current;
    RegisterServerId = 57, "REGISTER_SERVER_ID", obsolete;
    UnregisterServerId = 58, "UNREGISTER_SERVER_ID", obsolete;
    CheckServerId = 59, "CHECK_SERVER_ID", obsolete;
    GetServerIdList = 60, "GET_SERVER_ID_LIST", obsolete;
    DbAttachPersistent = 61, "DB_ATTACH_PERSISTENT", current;
    PersistentStore = 62, "PERSISTENT_STORE", obsolete;
    UpdateRecord = 63, "UPDATE_RECORD", current;
    SendGratuitousArp = 64, "SEND_GRATUITOUS_ARP", current;
    TransactionStart = 65, "TRANSACTION_START", obsolete;
    TransactionCommit = 66, "TRANSACTION_COMMIT", obsolete;
    WipeDatabase = 67, "WIPE_DATABASE", current;
    Uptime = 69, "UPTIME", current;
    StartRecovery = 70, "START_RECOVERY", current;
    EndRecovery = 71, "END_RECOVERY", current;
    ReloadNodesFile = 72, "RELOAD_NODES_FILE", current;
    TryDeleteRecords = 74, "TRY_DELETE_RECORDS", current;
    EnableMonitor = 75, "ENABLE_MONITOR", obsolete;
    DisableMonitor = 76, "DISABLE_MONITOR", obsolete;
    AddPublicIp = 77, "ADD_PUBLIC_IP", current;
    DelPublicIp = 78, "DEL_PUBLIC_IP", current;
    RunEventscripts = 79, "RUN_EVENTSCRIPTS", obsolete;
    GetCapabilities = 80, "GET_CAPABILITIES", current;
    StartPersistentUpdate = 81, "START_PERSISTENT_UPDATE", obsolete;
    CancelPersistentUpdate = 82, "CANCEL_PERSISTENT_UPDATE", obsolete;
    Trans2Commit = 83, "TRANS2_COMMIT", obsolete;
    Trans2Finished = 84, "TRANS2_FINISHED", obsolete;
    Trans2Error = 85, "TRANS2_ERROR", obsolete;
    Trans2CommitRetry = 86, "TRANS2_COMMIT_RETRY", obsolete;
    RecdPing = 87, "RECD_PING", current;
    ReleaseIp = 88, "RELEASE_IP", current;
    TakeoverIp = 89, "TAKEOVER_IP", current;
    GetPublicIps = 90, "GET_PUBLIC_IPS", current;
    GetNodemap = 91, "GET_NODEMAP", current;
    GetEventScriptStatus = 96, "GET_EVENT_SCRIPT_STATUS", obsolete;
    TraverseKill = 97, "TRAVERSE_KILL", current;
    RecdReclockLatency = 98, "RECD_RECLOCK_LATENCY", current;
    GetReclockFile = 99, "GET_RECLOCK_FILE", current;
    SetReclockFile = 100, "SET_RECLOCK_FILE", obsolete;
    StopNode = 101, "STOP_NODE", current;
    ContinueNode = 102, "CONTINUE_NODE", current;
    SetNatgwstate = 103, "SET_NATGWSTATE", obsolete;
    SetLmasterrole = 104, "SET_LMASTERROLE", current;
    SetRecmasterrole = 105, "SET_RECMASTERROLE", current;
    EnableScript = 107, "ENABLE_SCRIPT", obsolete;
    DisableScript = 108, "DISABLE_SCRIPT", obsolete;
    SetBanState = 109, "SET_BAN_STATE", current;
    GetBanState = 110, "GET_BAN_STATE", current;
    SetDbPriority = 111, "SET_DB_PRIORITY", obsolete;
    GetDbPriority = 112, "GET_DB_PRIORITY", obsolete;
    TransactionCancel = 113, "TRANSACTION_CANCEL", obsolete;
    RegisterNotify = 114, "REGISTER_NOTIFY", current;
    DeregisterNotify = 115, "DEREGISTER_NOTIFY", current;
    Trans2Active = 116, "TRANS2_ACTIVE", obsolete;
    GetLog = 117, "GET_LOG", obsolete;
    ClearLog = 118, "CLEAR_LOG", obsolete;
    Trans3Commit = 119, "TRANS3_COMMIT", current;
    GetDbSeqnum = 120, "GET_DB_SEQNUM", current;
    DbSetHealthy = 121, "DB_SET_HEALTHY", current;
    DbGetHealth = 122, "DB_GET_HEALTH", current;
    GetPublicIpInfo = 123, "GET_PUBLIC_IP_INFO", current;
    GetIfaces = 124, "GET_IFACES", current;
    SetIfaceLinkState = 125, "SET_IFACE_LINK_STATE", current;
    TcpAddDelayedUpdate = 126, "TCP_ADD_DELAYED_UPDATE", current;
    GetStatHistory = 127, "GET_STAT_HISTORY", current;
    ScheduleForDeletion = 128, "SCHEDULE_FOR_DELETION", current;
    SetDbReadonly = 129, "SET_DB_READONLY", current;
    CheckSrvids = 130, "CHECK_SRVIDS", obsolete;
    TraverseStartExt = 131, "TRAVERSE_START_EXT", current;
    GetDbStatistics = 132, "GET_DB_STATISTICS", current;
    SetDbSticky = 133, "SET_DB_STICKY", current;
    ReloadPublicIps = 134, "RELOAD_PUBLIC_IPS", current;
    TraverseAllExt = 135, "TRAVERSE_ALL_EXT", current;
    ReceiveRecords = 136, "RECEIVE_RECORDS", obsolete;
    Ipreallocated = 137, "IPREALLOCATED", current;
    GetRunstate = 138, "GET_RUNSTATE", current;
    DbDetach = 139, "DB_DETACH", current;
    GetNodesFile = 140, "GET_NODES_FILE", current;
    DbFreeze = 141, "DB_FREEZE", current;
    DbThaw = 142, "DB_THAW", current;
    DbTransactionStart = 143, "DB_TRANSACTION_START", current;
    DbTransactionCommit = 144, "DB_TRANSACTION_COMMIT", current;
    DbTransactionCancel = 145, "DB_TRANSACTION_CANCEL", current;
    DbPull = 146, "DB_PULL", current;
    DbPushStart = 147, "DB_PUSH_START", current;
    DbPushConfirm = 148, "DB_PUSH_CONFIRM", current;
    DbOpenFlags = 149, "DB_OPEN_FLAGS", current;
    DbAttachReplicated = 150, "DB_ATTACH_REPLICATED", current;
    CheckPidSrvid = 151, "CHECK_PID_SRVID", current;
    TunnelRegister = 152, "TUNNEL_REGISTER", current;
    TunnelDeregister = 153, "TUNNEL_DEREGISTER", current;
    VacuumFetch = 154, "VACUUM_FETCH", current;
    DbVacuum = 155, "DB_VACUUM", current;
    EchoData = 156, "ECHO_DATA", current;
    DisableNode = 157, "DISABLE_NODE", current;
    EnableNode = 158, "ENABLE_NODE", current;
}

impl Opcode {
    /// Controls whose result travels in the reply's `status` field rather
    /// than in its data (upstream's client library reads `status` for these).
    pub fn result_in_status(self) -> bool {
        matches!(
            self,
            Opcode::ProcessExists
                | Opcode::Ping
                | Opcode::GetRecmode
                | Opcode::GetPid
                | Opcode::GetPnn
                | Opcode::CheckPidSrvid
                | Opcode::SetTunable
        )
    }
}

impl std::fmt::Display for Opcode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Upstream's name for a raw opcode, or `"UNKNOWN"`.
pub fn opcode_name(opcode: u32) -> &'static str {
    Opcode::from_u32(opcode).map_or("UNKNOWN", Opcode::name)
}

/// GET_DB_SEQNUM's input: the db id followed by a `u32` that upstream
/// always sends as 0 and ignores on receipt (8 bytes in all).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct DbIdPad(pub u32);

impl<'a> Wire<'a> for DbIdPad {
    fn wire_len(&self) -> usize {
        8
    }
    fn push(&self, out: &mut Vec<u8>) {
        out.put_u32(self.0);
        out.put_u32(0);
    }
    fn pull(r: &mut Reader<'a>) -> Result<Self, ProtocolError> {
        let db_id = r.u32("get_db_seqnum.db_id")?;
        r.skip(4, "get_db_seqnum.pad")?;
        Ok(DbIdPad(db_id))
    }
}

/// Expands a variant's pattern binding only when it carries a value.
macro_rules! bind {
    ($t:ty, $v:ident) => {
        $v
    };
}

/// A typed value that must fill `data` exactly, or nothing at all.
macro_rules! decode_arm {
    ($E:ident, $data:ident, $v:ident, []) => {{
        if !$data.is_empty() {
            return Err(ProtocolError::Trailing {
                what: concat!("control ", stringify!($v), " (takes no data)"),
                extra: $data.len(),
            });
        }
        $E::$v
    }};
    ($E:ident, $data:ident, $v:ident, [$t:ty]) => {
        $E::$v(<$t as Wire>::from_bytes($data)?)
    };
}

macro_rules! control_data {
    ( $( $v:ident [$($t:ty)?]; )* ) => {
        /// The input of a control request, one variant per current opcode
        /// (named as in [`Opcode`]). Variants without a value take no data.
        #[derive(Debug, Clone, PartialEq)]
        pub enum ControlData<'a> {
            $( $v $( ($t) )?, )*
            /// Obsolete or unknown opcode, data kept raw.
            Other { opcode: u32, data: &'a [u8] },
        }

        impl<'a> ControlData<'a> {
            /// The opcode number this input belongs to.
            pub fn opcode(&self) -> u32 {
                match self {
                    $( ControlData::$v { .. } => Opcode::$v as u32, )*
                    ControlData::Other { opcode, .. } => *opcode,
                }
            }

            /// Decodes the input of control `opcode` from the control's
            /// data (`datalen` bytes).
            pub fn decode(opcode: u32, data: &'a [u8]) -> Result<ControlData<'a>, ProtocolError> {
                let Some(op) = Opcode::from_u32(opcode) else {
                    return Ok(ControlData::Other { opcode, data });
                };
                Ok(match op {
                    $( Opcode::$v => decode_arm!(ControlData, data, $v, [$($t)?]), )*
                    _ => ControlData::Other { opcode, data },
                })
            }

            /// Exact encoded size.
            pub fn wire_len(&self) -> usize {
                match self {
                    $( ControlData::$v $( (bind!($t, v)) )? => {
                        0 $( + <$t as Wire>::wire_len(v) )?
                    } )*
                    ControlData::Other { data, .. } => data.len(),
                }
            }

            /// Appends the encoded input.
            pub fn push(&self, out: &mut Vec<u8>) {
                match self {
                    $( ControlData::$v $( (bind!($t, v)) )? => {
                        $( <$t as Wire>::push(v, out); )?
                    } )*
                    ControlData::Other { data, .. } => out.put_bytes(data),
                }
            }
        }
    };
}

control_data! {
    ProcessExists [i32];
    Statistics [];
    Ping [];
    Getdbpath [u32];
    Getvnnmap [];
    Setvnnmap [VnnMap];
    GetDebug [];
    SetDebug [u32];
    GetDbmap [];
    GetRecmode [];
    SetRecmode [u32];
    StatisticsReset [];
    DbAttach [CtdbString<'a>];
    TraverseStart [TraverseStart];
    TraverseAll [TraverseAll];
    TraverseData [RecData<'a>];
    RegisterSrvid [];
    DeregisterSrvid [];
    GetDbname [u32];
    EnableSeqnum [u32];
    UpdateSeqnum [u32];
    DumpMemory [];
    GetPid [];
    Freeze [];
    GetPnn [];
    Shutdown [];
    TcpClient [Connection];
    TcpAdd [Connection];
    TcpRemove [Connection];
    Startup [];
    SetTunable [Tunable<'a>];
    GetTunable [StringN<'a>];
    ListTunables [];
    ModifyFlags [NodeFlagChange];
    GetAllTunables [];
    GetTcpTickleList [SockAddr];
    SetTcpTickleList [TickleList];
    DbAttachPersistent [CtdbString<'a>];
    UpdateRecord [RecBuffer<'a>];
    SendGratuitousArp [AddrInfo<'a>];
    WipeDatabase [TransDb];
    Uptime [];
    StartRecovery [];
    EndRecovery [];
    ReloadNodesFile [];
    TryDeleteRecords [RecBuffer<'a>];
    AddPublicIp [AddrInfo<'a>];
    DelPublicIp [AddrInfo<'a>];
    GetCapabilities [];
    RecdPing [];
    ReleaseIp [PublicIp];
    TakeoverIp [PublicIp];
    GetPublicIps [];
    GetNodemap [];
    TraverseKill [TraverseStart];
    RecdReclockLatency [f64];
    GetReclockFile [];
    StopNode [];
    ContinueNode [];
    SetLmasterrole [u32];
    SetRecmasterrole [u32];
    SetBanState [BanState];
    GetBanState [];
    RegisterNotify [NotifyData<'a>];
    DeregisterNotify [u64];
    Trans3Commit [RecBuffer<'a>];
    GetDbSeqnum [DbIdPad];
    DbSetHealthy [u32];
    DbGetHealth [u32];
    GetPublicIpInfo [SockAddr];
    GetIfaces [];
    SetIfaceLinkState [Iface];
    TcpAddDelayedUpdate [Connection];
    GetStatHistory [];
    ScheduleForDeletion [KeyData<'a>];
    SetDbReadonly [u32];
    TraverseStartExt [TraverseStartExt];
    GetDbStatistics [u32];
    SetDbSticky [u32];
    ReloadPublicIps [];
    TraverseAllExt [TraverseAllExt];
    Ipreallocated [];
    GetRunstate [];
    DbDetach [u32];
    GetNodesFile [];
    DbFreeze [u32];
    DbThaw [u32];
    DbTransactionStart [TransDb];
    DbTransactionCommit [TransDb];
    DbTransactionCancel [u32];
    DbPull [PullDbExt];
    DbPushStart [PullDbExt];
    DbPushConfirm [u32];
    DbOpenFlags [u32];
    DbAttachReplicated [CtdbString<'a>];
    CheckPidSrvid [PidSrvid];
    TunnelRegister [];
    TunnelDeregister [];
    VacuumFetch [RecBuffer<'a>];
    DbVacuum [DbVacuum];
    EchoData [EchoData<'a>];
    DisableNode [];
    EnableNode [];
}

impl Body for ControlData<'_> {
    fn body_len(&self) -> usize {
        self.wire_len()
    }
    fn push_body(&self, out: &mut Vec<u8>) {
        self.push(out)
    }
}

macro_rules! control_reply_data {
    ( $( $v:ident [$t:ty]; )* ) => {
        /// The output of a successful control reply, one variant per opcode
        /// that returns data (named as in [`Opcode`]).
        #[derive(Debug, Clone, PartialEq)]
        pub enum ControlReplyData<'a> {
            $( $v($t), )*
            /// A current opcode without output (its data, if any, is
            /// ignored as upstream does); the result may be in `status`.
            None,
            /// Obsolete or unknown opcode, data kept raw.
            Other(&'a [u8]),
        }

        impl<'a> ControlReplyData<'a> {
            /// Decodes the output of control `opcode` from a reply's data.
            /// Upstream only does this when the reply's status is 0.
            pub fn decode(opcode: u32, data: &'a [u8]) -> Result<ControlReplyData<'a>, ProtocolError> {
                let Some(op) = Opcode::from_u32(opcode) else {
                    return Ok(ControlReplyData::Other(data));
                };
                if op.is_obsolete() {
                    return Ok(ControlReplyData::Other(data));
                }
                Ok(match op {
                    $( Opcode::$v => ControlReplyData::$v(<$t as Wire>::from_bytes(data)?), )*
                    _ => ControlReplyData::None,
                })
            }

            /// Exact encoded size.
            pub fn wire_len(&self) -> usize {
                match self {
                    $( ControlReplyData::$v(v) => <$t as Wire>::wire_len(v), )*
                    ControlReplyData::None => 0,
                    ControlReplyData::Other(d) => d.len(),
                }
            }

            /// Appends the encoded output.
            pub fn push(&self, out: &mut Vec<u8>) {
                match self {
                    $( ControlReplyData::$v(v) => <$t as Wire>::push(v, out), )*
                    ControlReplyData::None => {}
                    ControlReplyData::Other(d) => out.put_bytes(d),
                }
            }

            /// The opcode this output belongs to, when the variant says so.
            pub fn opcode(&self) -> Option<Opcode> {
                match self {
                    $( ControlReplyData::$v(_) => Some(Opcode::$v), )*
                    ControlReplyData::None | ControlReplyData::Other(_) => None,
                }
            }

            /// True if control `op` returns data (has a variant here).
            pub fn has_output(op: Opcode) -> bool {
                matches!(op, $( Opcode::$v )|*)
            }
        }
    };
}

control_reply_data! {
    Statistics [Box<Statistics>];
    Getdbpath [CtdbString<'a>];
    Getvnnmap [VnnMap];
    GetDebug [u32];
    GetDbmap [DbIdMap];
    DbAttach [u32];
    GetDbname [CtdbString<'a>];
    DumpMemory [CtdbString<'a>];
    GetTunable [u32];
    ListTunables [VarList<'a>];
    GetAllTunables [Box<TunableList>];
    GetTcpTickleList [TickleList];
    DbAttachPersistent [u32];
    Uptime [Uptime];
    TryDeleteRecords [RecBuffer<'a>];
    GetCapabilities [u32];
    GetPublicIps [PublicIpList];
    GetNodemap [NodeMap];
    GetReclockFile [CtdbString<'a>];
    GetBanState [BanState];
    GetDbSeqnum [u64];
    DbGetHealth [CtdbString<'a>];
    GetPublicIpInfo [PublicIpInfo];
    GetIfaces [IfaceList];
    GetStatHistory [StatisticsList];
    GetDbStatistics [Box<DbStatistics<'a>>];
    GetRunstate [u32];
    GetNodesFile [NodeMap];
    DbPull [u32];
    DbPushConfirm [u32];
    DbOpenFlags [i32];
    DbAttachReplicated [u32];
    EchoData [EchoData<'a>];
}

impl Body for ControlReplyData<'_> {
    fn body_len(&self) -> usize {
        self.wire_len()
    }
    fn push_body(&self, out: &mut Vec<u8>) {
        self.push(out)
    }
}
