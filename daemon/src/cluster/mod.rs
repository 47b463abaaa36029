//! Cluster control logic of ctdbd as sans-I/O state machines.
//!
//! Everything here is plain data in, plain actions out: no sockets, no
//! timers, no glommio, no clock. The runtime (or the deterministic
//! simulation in `daemon/tests/sim.rs`) feeds events — the time, received
//! messages, control replies, cluster-lock helper results, transport
//! connects and disconnects — and performs the [`Action`]s the machines
//! return. That keeps the protocol logic testable from a seed and leaves
//! the I/O to the code that owns the sockets.
//!
//! The machines follow Samba 4.17's ctdbd and its recovery daemon:
//!
//! * [`membership`]: the node table (pnn, address, flags), keepalive
//!   accounting (`KeepaliveInterval` / `KeepaliveLimit` →
//!   `DISCONNECTED`), `MODIFY_FLAGS` handling and capabilities;
//! * [`banning`]: this node's ban (SET_BAN_STATE, timed unban) and the
//!   leader's culprit counting (`2 × nodes` credits → ban);
//! * [`election`]: who is leader: with a cluster lock, whoever holds it;
//!   without, the `ELECTION` message exchange; the 1 s `LEADER` broadcast
//!   and the leader timeout;
//! * [`recovery`]: the database recovery the leader runs (what upstream's
//!   `ctdb_recovery_helper` does) and the pure record-merge functions;
//! * [`recoverd`]: the recovery daemon's main loop: the once-a-second
//!   checks that decide a recovery is needed, driving [`election`] and
//!   [`recovery`];
//! * [`node`]: the main daemon's side of the cluster controls the leader
//!   sends (recovery mode, vnn map, ban, stop/continue, freeze).
//!
//! # Conventions
//!
//! * Time is [`Millis`], milliseconds on a monotonic clock chosen by the
//!   caller. Machines never read a clock; they get `now` with each event
//!   and say when they next want to be woken ([`Recoverd::next_wakeup`]).
//! * A control is sent with [`Action::Control`], which carries an id. The
//!   caller must answer every id exactly once with
//!   `ControlResult::Ok`/`Err`: a reply, a failure, or a timeout after
//!   `RecoverTimeout` (the machines never time out controls themselves, as
//!   upstream's `CONTROL_TIMEOUT()` is enforced by the client library).
//!   Replies with unknown ids are ignored, so late replies are harmless.
//! * Controls are typed ([`Control`], [`Reply`]); mapping them onto the
//!   wire (`ctdb-protocol` opcodes) is the runtime's job. `DbPull` and
//!   `DbPush` stand for upstream's DB_PULL (records streamed as messages,
//!   count in the reply) and DB_PUSH_START / messages / DB_PUSH_CONFIRM.
//!
//!
//! # Driving the machines
//!
//! One [`node::Node`] (main daemon side, owns [`membership::Membership`]
//! and [`banning::LocalBan`]) and one [`recoverd::Recoverd`] per daemon,
//! both on the control core:
//!
//! * wake both at the earlier of their `next_wakeup()`s: `Node::tick`
//!   (keepalives, ban expiry), then `Recoverd::tick(now, &node.view())`;
//! * a packet from a node: `membership.on_rx(pnn)`; a control for the
//!   cluster: `Node::handle_control` (a `Handled::NotMine` control is a
//!   database control for the engine); a `LEADER` / `ELECTION` /
//!   `BANNING` / `PUSH_NODE_FLAGS` message: `Recoverd::on_message`;
//! * a reply to (or failure / timeout of) a control the recovery daemon
//!   sent: `Recoverd::on_control_result`;
//! * transport up/down: `Membership::on_transport_connected` /
//!   `Membership::node_dead` (then fail the controls outstanding to it);
//! * cluster mutex helper: `Recoverd::on_lock_status` with the byte it
//!   wrote, `Recoverd::on_lock_lost` if it exits while holding; the lock
//!   test for SET_RECMODE: `Node::lock_test_result`;
//! * apply every returned [`Action`] and [`node::Effect`].
//!
//! `daemon/tests/sim.rs` is a complete driver (with simulated network,
//! lock and databases) and the best example.
//!
//! # Where this differs from 4.17, on purpose
//!
//! * A recovery run is abandoned when its node stops being leader, gives
//!   up or loses the lock, or becomes inactive; and the leader re-checks
//!   leadership and the lock right before starting a run. Upstream lets
//!   the helper process run on, which the simulation showed can start a
//!   recovery without the lock (lock helper lost while flags were being
//!   pushed).
//! * With a cluster lock, only the holder sends `LEADER` broadcasts, and a
//!   holder asked to elect declares itself leader. Upstream broadcasts in
//!   the window between losing the lock and the forced election, and the
//!   next holder then follows that node; the simulation found this
//!   leaving a cluster with no working leader.
//! * Without a lock, `LEADER(UNKNOWN)` also arms the election timeout, so
//!   an election whose `ELECTION` messages were lost still ends (the
//!   simulation found nodes stuck "in an election" after a partition).
//! * Databases are recovered one after the other, not in parallel.
//! * `PUSH_NODE_FLAGS` is forwarded to the nodes connected in this node's
//!   map rather than in the leader's (upstream first reads the leader's
//!   node map).
//! * Not modelled here: IP takeover runs (only [`Action::TakeoverRun`] is
//!   emitted), keepalive version checks (wire level), nodes-file reload,
//!   the startup-time "node became healthy → recovery" rule, and the
//!   `ctdb_op` disabling of recoveries from the CLI.
//!
//! [`Recoverd::next_wakeup`]: recoverd::Recoverd::next_wakeup

pub mod banning;
pub mod election;
pub mod membership;
pub mod node;
pub mod recoverd;
pub mod recovery;

pub use ctdb_protocol::constants::{
    CTDB_CAP_DEFAULT, CTDB_CAP_LMASTER, CTDB_CAP_RECMASTER, CTDB_RECOVERY_ACTIVE,
    CTDB_RECOVERY_NORMAL, CTDB_UNKNOWN_PNN, INVALID_GENERATION, NODE_FLAGS_BANNED,
    NODE_FLAGS_DELETED, NODE_FLAGS_DISABLED, NODE_FLAGS_DISCONNECTED, NODE_FLAGS_INACTIVE,
    NODE_FLAGS_PERMANENTLY_DISABLED, NODE_FLAGS_STOPPED, NODE_FLAGS_UNHEALTHY,
};
pub use ctdb_protocol::types::{BanState, ElectionMessage, NodeFlagChange, Timeval, VnnMap};

/// A node number.
pub type Pnn = u32;

/// Milliseconds on the caller's monotonic clock.
pub type Millis = u64;

/// Id of a control sent by a machine; echoed in [`ControlResult`].
pub type ControlId = u64;

/// The tunables and configuration the cluster logic reads. Defaults are
/// upstream's (`ctdb/common/tunable.c`, `[cluster] leader timeout`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tunables {
    /// `RecoverInterval` (s): period of the recovery daemon's main loop.
    pub recover_interval: u32,
    /// `RecoverTimeout` (s): control timeout the runtime enforces.
    pub recover_timeout: u32,
    /// `ElectionTimeout` (s): an election ends this long after the last
    /// election message.
    pub election_timeout: u32,
    /// `RerecoveryTimeout` (s): recoveries are suppressed this long after
    /// a successful one.
    pub rerecovery_timeout: u32,
    /// `RecoveryBanPeriod` (s).
    pub recovery_ban_period: u32,
    /// `EnableBans`.
    pub enable_bans: bool,
    /// `RecoveryGracePeriod` (s): culprit credits older than this are
    /// forgiven.
    pub recovery_grace_period: u32,
    /// `KeepaliveInterval` (s).
    pub keepalive_interval: u32,
    /// `KeepaliveLimit`: missed intervals before a node is declared dead.
    pub keepalive_limit: u32,
    /// `[cluster] leader timeout` (s): no LEADER broadcast for this long
    /// starts an election.
    pub leader_timeout: u32,
    /// Fast start (`ctdbd --start-as-...`): the first election lasts
    /// 0.5 s instead of `ElectionTimeout`.
    pub fast_start: bool,
}

impl Default for Tunables {
    fn default() -> Self {
        Tunables {
            recover_interval: 1,
            recover_timeout: 30,
            election_timeout: 3,
            rerecovery_timeout: 10,
            recovery_ban_period: 300,
            enable_bans: true,
            recovery_grace_period: 120,
            keepalive_interval: 5,
            keepalive_limit: 5,
            leader_timeout: 5,
            fast_start: false,
        }
    }
}

/// Seconds to [`Millis`].
pub fn secs(s: u32) -> Millis {
    Millis::from(s) * 1000
}

/// Where a message goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dest {
    Node(Pnn),
    /// `CTDB_BROADCAST_CONNECTED`.
    Connected,
    /// `CTDB_BROADCAST_ALL`.
    All,
}

/// The srvid messages the cluster logic sends and handles.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// `CTDB_SRVID_LEADER`: the leader's pnn, or `CTDB_UNKNOWN_PNN` when
    /// an election starts.
    Leader(Pnn),
    /// `CTDB_SRVID_ELECTION`.
    Election(ElectionMessage),
    /// `CTDB_SRVID_BANNING`: give banning credits to a node.
    Banning(Pnn),
    /// `CTDB_SRVID_PUSH_NODE_FLAGS`: ask the recovery daemon to push a
    /// flag change to all connected nodes.
    PushNodeFlags(NodeFlagChange),
    /// `CTDB_SRVID_RECONFIGURE`: sent to clients after a recovery.
    Reconfigure,
}

/// A record as recovery moves it: key, ltdb header fields, data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub key: Vec<u8>,
    pub rsn: u64,
    pub dmaster: Pnn,
    pub flags: u32,
    pub data: Vec<u8>,
}

/// A database as GET_DBMAP reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DbInfo {
    pub db_id: u32,
    pub flags: u8,
}

/// The controls the cluster logic sends (typed; the runtime encodes them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Control {
    GetNodemap,
    GetVnnmap,
    GetRecmode,
    GetCapabilities,
    GetDbmap,
    SetRecmode(u32),
    /// MODIFY_FLAGS.
    ModifyFlags(NodeFlagChange),
    /// SET_BAN_STATE.
    SetBanState(BanState),
    /// START_RECOVERY (runs the `startrecovery` event).
    StartRecovery,
    /// END_RECOVERY (runs the `recovered` event).
    EndRecovery,
    SetVnnmap(VnnMap),
    /// FREEZE (all databases), sent to self by an inactive node.
    Freeze,
    GetDbname(u32),
    /// DB_ATTACH / DB_ATTACH_PERSISTENT / DB_ATTACH_REPLICATED with
    /// CTDB_CTRL_FLAG_ATTACH_RECOVERY, by `flags`.
    DbAttach {
        name: String,
        flags: u8,
    },
    DbFreeze(u32),
    DbThaw(u32),
    DbTransactionStart {
        db_id: u32,
        tid: u32,
    },
    DbTransactionCommit {
        db_id: u32,
        tid: u32,
    },
    GetDbSeqnum(u32),
    /// DB_PULL: the node's records (header included).
    DbPull(u32),
    /// WIPE_DATABASE inside the recovery transaction.
    DbWipe {
        db_id: u32,
        tid: u32,
    },
    /// DB_PUSH_START + record messages + DB_PUSH_CONFIRM: the reply is
    /// the number of records the node received.
    DbPush {
        db_id: u32,
        /// Shared by the pushes to every node of one round.
        records: std::rc::Rc<[Record]>,
    },
}

/// A successful control reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// Status only.
    Done,
    Nodemap(Vec<(Pnn, u32)>),
    Vnnmap(VnnMap),
    Recmode(u32),
    Capabilities(u32),
    Dbmap(Vec<DbInfo>),
    Dbname(String),
    Seqnum(u64),
    Records(Vec<Record>),
    /// DB_PUSH_CONFIRM: records received.
    Count(u32),
}

/// What became of a control.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ControlResult {
    Ok(Reply),
    /// Non-zero status, transport failure or timeout.
    Err,
}

/// Result of a cluster mutex helper, the single status byte it writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockStatus {
    /// `'0'`: the helper holds the lock.
    Held,
    /// `'1'`: contention.
    Contended,
    /// `'2'`: timeout.
    Timeout,
    /// `'3'` or anything else: error.
    Error,
}

impl LockStatus {
    /// The status for the byte a helper wrote.
    pub fn from_byte(b: u8) -> LockStatus {
        match b {
            b'0' => LockStatus::Held,
            b'1' => LockStatus::Contended,
            b'2' => LockStatus::Timeout,
            _ => LockStatus::Error,
        }
    }
}

/// What a machine asks its driver to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Send a control to a node (possibly this one); answer it later with
    /// the same id.
    Control {
        id: ControlId,
        dest: Pnn,
        control: Control,
    },
    /// Send a srvid message.
    Message { dest: Dest, msg: Message },
    /// Start the cluster mutex helper (recoverd's lock, timeout 120 s);
    /// report its status, and later its death, to the machine.
    TakeClusterLock,
    /// Kill the cluster mutex helper (SIGTERM), releasing the lock.
    ReleaseClusterLock,
    /// Run a helper that only tests the lock (5 s timeout), for
    /// SET_RECMODE NORMAL; report with `Node::lock_test_result`.
    TestClusterLock,
    /// Send a keepalive to a node.
    SendKeepalive(Pnn),
    /// Restart the transport to a node declared dead.
    RestartTransport(Pnn),
    /// Reply to a control this node received (for controls answered
    /// asynchronously, e.g. SET_RECMODE NORMAL after the lock test).
    ReplyDeferred { token: u64, ok: bool },
    /// Ask for an IP takeover run (not modelled here).
    TakeoverRun,
}

/// A tiny deterministic PRNG (splitmix64) for generations.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}
