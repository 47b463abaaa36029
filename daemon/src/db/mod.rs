//! The database layer of ctdbd: the registry of attached databases, the
//! database controls, REQ_CALL on the node that is dmaster, traverses,
//! persistent commits (TRANS3_COMMIT / UPDATE_RECORD), the recovery
//! primitives (freeze, transactions, pull, push, wipe) and per-database
//! statistics.
//!
//! # Why it looks like this
//!
//! A drop-in ctdbd shares its database files with smbd and the `ctdb` tool,
//! which open them with libtdb and read and write records themselves under
//! chain locks (smbd's fetch-lock, `ctdb writekey`, `ctdb pfetch`). The
//! daemon therefore keeps *the files* exactly as upstream 4.17 does: same
//! names (`<dir>/<name>.<pnn>`), same tdb flags (so `DB_OPEN_FLAGS` tells
//! smbd the same thing and smbd's own open agrees), the same record headers
//! and the same rsn/dmaster rules (`ltdb` module, from upstream's
//! `ctdb_ltdb_store_server`). The daemon holds the ACTIVE read lock of every
//! volatile database for as long as it is attached (the engine does that
//! for every open CLEAR_IF_FIRST database), so a later CLEAR_IF_FIRST open
//! by smbd never wipes it, while the first open by ctdbd after a restart
//! does (upstream's "volatile databases start empty").
//!
//! # Entry points
//!
//! * [`Databases::open`]: start-up: opens the persistent-health database
//!   and attaches every persistent database found in the persistent
//!   directory (`*.tdb.<pnn>`), as upstream's `ctdb_attach_databases`.
//! * [`Databases::handle_control`]: every database control; `None` for a
//!   control that is not a database control. The outcome carries the reply
//!   (status, data, error message) and the REQ_MESSAGEs the control causes
//!   (DB_PULL's record buffers *before* the reply, a traverse's records and
//!   end marker *after* it), plus node-to-node controls (TRAVERSE_DATA).
//! * [`Databases::handle_call`]: a client's REQ_CALL (fetch-lock migration,
//!   fetch, fetch-with-header).
//! * [`Databases::push_message`]: the REQ_MESSAGEs of a DB_PUSH (records
//!   sent to the srvid named in DB_PUSH_START); [`Databases::is_push_srvid`]
//!   tells the message router which srvids to hand over.
//! * [`Databases::poll_seqnums`]: the periodic seqnum check (upstream's
//!   `ctdb_ltdb_seqnum_check`), returning the databases whose seqnum moved
//!   (to broadcast UPDATE_SEQNUM in a cluster).
//! * [`crate::db::Databases::serve_client_packet`]: all of the above for one decoded
//!   client packet, writing the reply and the messages for the client's own
//!   srvids into its output buffer; what the client socket calls.
//! * [`Databases::record_op`] / [`ShardRequest::Record`]: one step of a
//!   record migration between nodes ([`RecordOp`] -> [`RecordStep`], the
//!   rsn/dmaster rules of upstream's `ctdb_call.c`) on the core that owns
//!   the record; [`Migrator`] is the sans-I/O protocol state around them
//!   (pending calls, fetch collapse, dmaster defer, sticky records,
//!   resend after recovery), driven by [`crate::calls`].
//! * [`Databases::vacuum_begin`] and the other steps of a vacuum run
//!   ([`vacuum`], driven every VacuumInterval by [`crate::vacuumer`]),
//!   [`Databases::freeze_all`]
//!   / [`Databases::thaw_all`] (FREEZE when the node goes inactive),
//!   [`Databases::route_call`] (data cores, below).
//!
//! # Cores
//!
//! The registry (names, ids, flags, paths, health, recovery state,
//! statistics totals) lives on the control core, with one engine handle
//! per database owning every chain ([`ctdb_engine::Database::handle`]):
//! transactions, wipe and lockall need all chains, and persistent and
//! replicated databases are always served that way. With data cores, a
//! volatile database is also split: each data core runs a [`Shard`] that
//! owns `Database::partition(shard, shards)` and serves the REQ_CALLs for
//! keys on its chains ([`Databases::route_call`] picks the shard and builds
//! the [`ShardRequest`]; the runtime moves it over its bounded channel and
//! brings the [`ShardReply`] back). The record rules are the same code on
//! both sides (`call::run_call` over `ltdb::Records`). With one core,
//! [`Databases::handle_call`] serves everything on the control core.
//!
//! # Deviations (single node, synchronous)
//!
//! * Read-only delegations between nodes (grant, revoke through
//!   UPDATE_RECORD to the holders) are run by `crate::calls` with
//!   `migrate`/`migrator`; this layer serves a local WANT_READONLY call on
//!   a record this node is dmaster of (`call::run_call`).
//! * No lock helper child: a REQ_CALL whose chain lock is busy is answered
//!   [`CallOutcome::Retry`] (the caller hands it in again shortly, so a
//!   client sitting on a record never stalls the core); DB_FREEZE waits
//!   for the whole-database lock in-line (smbd and the `ctdb` tool hold
//!   chain locks only briefly). Lock statistics count busy attempts.
//! * UPDATE_RECORD is applied in-line (upstream forks a child to run the
//!   transaction).
//! * A frozen database's REQ_CALLs are answered [`CallOutcome::Defer`]; the
//!   caller re-submits them after DB_THAW (upstream re-queues them itself).
//! * Vacuuming runs as a task on the control core ([`crate::vacuumer`],
//!   upstream forks a child); this layer holds its record steps
//!   ([`vacuum`]) and VACUUM_FETCH / TRY_DELETE_RECORDS /
//!   SCHEDULE_FOR_DELETION. DB_VACUUM reaching this layer (a daemon's
//!   control to itself, in-process tests) runs [`Databases::vacuum`], the
//!   run without other nodes.
//! * Traverses: with one active node everything happens in
//!   TRAVERSE_START(_EXT); with more ([`Databases::set_active_nodes`]) the
//!   outcome asks the cluster layer to broadcast TRAVERSE_ALL(_EXT) and the
//!   TRAVERSE_DATA that comes back is relayed to the client; the control
//!   core tells how many nodes it went to and ends it after TraverseTimeout
//!   with what arrived, as upstream.
//! * Attach refuses names with `/` (upstream would create the file outside
//!   its directory).
//!
//! # Tests
//!
//! `daemon/tests/db_registry.rs` (registry and controls on real files,
//! checked with `tdbdump`, `ltdbtool` and python3-tdb), `db_ctdb_tool.rs`
//! (Debian's `ctdb` tool end to end through [`crate::db::Databases::serve_client_packet`]),
//! `db_compare_debian.rs` (the same commands and raw controls against
//! Debian's ctdbd 4.17 leave identical records and answers),
//! `db_shards.rs` (two data-core threads on one file, throughput),
//! `migrate.rs` (three nodes' databases and migrators in-process, packets
//! moved by hand: ring of fetches, seeded random interleavings with no lost
//! update, resend, sticky pin-down), `cluster_migrate.rs` (three of our
//! daemons: stock tool, fetch_ring, fetch_loop),
//! `db_ctdbd_e2e.rs` (our `ctdbd` binary with the stock `ctdb` tool).

mod call;
mod ltdb;
mod migrate;
pub mod migrator;
mod persistent;
mod recovery;
mod shard;
pub(crate) mod stats;
mod traverse;
pub mod vacuum;
mod wire;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use ctdb_engine::ltdb::LtdbHeader;
use ctdb_engine::{flags as tdbf, CoreStore, Database, OpenOptions};
use ctdb_protocol::constants::{CTDB_BROADCAST_CONNECTED, CTDB_CURRENT_NODE};
use ctdb_protocol::types::{
    CtdbString, DbId, DbIdMap, DB_FLAGS_PERSISTENT, DB_FLAGS_READONLY, DB_FLAGS_REPLICATED,
    DB_FLAGS_STICKY,
};
use ctdb_protocol::{ControlData, Opcode, Wire};

use crate::error::DaemonError;

pub use call::CallOutcome;
pub use migrate::{MigrationCount, Origin, RecordOp, RecordStep};
pub use migrator::{Action, Migrator};
pub use shard::{Shard, ShardCall, ShardReply, ShardRequest};
pub use stats::{hop_bucket, DbStats};
pub use vacuum::VacuumCounts;
pub use wire::{encode_message, Served};

/// `CTDB_CTRL_FLAG_ATTACH_RECOVERY`: an attach sent by the recovery code.
pub const CTRL_FLAG_ATTACH_RECOVERY: u32 = ctdb_protocol::constants::CTDB_CTRL_FLAG_ATTACH_RECOVERY;

/// Name of the health database in the state directory.
const PERSISTENT_HEALTH_TDB: &str = "persistent_health.tdb";

/// libtdb's default hash size, used for the health database (hash size 0).
const DEFAULT_HASH_SIZE: u32 = 131;

/// What the database layer needs from the configuration and tunables.
#[derive(Debug, Clone)]
pub struct DbConfig {
    pub pnn: u32,
    pub volatile_dir: PathBuf,
    pub persistent_dir: PathBuf,
    pub state_dir: PathBuf,
    /// `[database] tdb mutexes` (used when robust mutexes work here).
    pub tdb_mutexes: bool,
    /// Tunable DatabaseHashSize.
    pub hash_size: u32,
    /// Tunable DatabaseMaxDead.
    pub max_dead: u32,
    /// Tunable AllowClientDBAttach.
    pub allow_client_db_attach: bool,
    /// Tunable RecBufferSizeLimit (DB_PULL message size).
    pub rec_buffer_size_limit: u32,
    /// Tunable AllowUnhealthyDBRead.
    pub allow_unhealthy_db_read: bool,
}

impl DbConfig {
    /// Upstream defaults with the given directories.
    pub fn new(pnn: u32, volatile_dir: &Path, persistent_dir: &Path, state_dir: &Path) -> Self {
        DbConfig {
            pnn,
            volatile_dir: volatile_dir.to_path_buf(),
            persistent_dir: persistent_dir.to_path_buf(),
            state_dir: state_dir.to_path_buf(),
            tdb_mutexes: true,
            hash_size: 100_001,
            max_dead: 5,
            allow_client_db_attach: true,
            rec_buffer_size_limit: 1_000_000,
            allow_unhealthy_db_read: false,
        }
    }

    /// From ctdb.conf and the tunables.
    pub fn from_config(
        pnn: u32,
        config: &ctdb_config::Config,
        tunables: &ctdb_config::Tunables,
    ) -> Self {
        let t = |name: &str, dflt: u32| tunables.get(name).unwrap_or(dflt);
        DbConfig {
            pnn,
            volatile_dir: config.volatile_db_dir().to_path_buf(),
            persistent_dir: config.persistent_db_dir().to_path_buf(),
            state_dir: config.state_db_dir().to_path_buf(),
            tdb_mutexes: config.tdb_mutexes(),
            hash_size: t("DatabaseHashSize", 100_001),
            max_dead: t("DatabaseMaxDead", 5),
            allow_client_db_attach: t("AllowClientDBAttach", 1) != 0,
            rec_buffer_size_limit: t("RecBufferSizeLimit", 1_000_000),
            allow_unhealthy_db_read: t("AllowUnhealthyDBRead", 0) != 0,
        }
    }
}

/// Where a control comes from and the node state it is judged against.
#[derive(Debug, Clone, Copy, Default)]
pub struct ControlCtx {
    /// The request header's srcnode.
    pub srcnode: u32,
    /// True for a control from a local client (upstream: `client_id != 0`
    /// and the client is known).
    pub from_client: bool,
    /// The control's flags (`CTDB_CTRL_FLAG_*`).
    pub flags: u32,
    /// Recovery mode is ACTIVE.
    pub recovery_active: bool,
    /// The run state is before STARTUP (attaches from clients wait).
    pub before_startup: bool,
    /// This node is INACTIVE (banned/stopped): clients may not attach.
    pub node_inactive: bool,
    /// The packet came from another node (or from this daemon itself), not
    /// from a local client: [`crate::db::Databases::serve_client_packet`] then leaves
    /// `from_client` false.
    pub from_peer: bool,
}

/// A REQ_MESSAGE the daemon must deliver: to the clients of node `pnn`
/// that registered `srvid` (upstream's `ctdb_daemon_send_message`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutMessage {
    pub pnn: u32,
    pub srvid: u64,
    pub data: Vec<u8>,
}

/// A node-to-node control the daemon must send (NOREPLY).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutControl {
    pub destnode: u32,
    pub opcode: Opcode,
    pub data: Vec<u8>,
}

/// The answer to a database control.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ControlOutcome {
    pub status: i32,
    pub data: Vec<u8>,
    pub errmsg: Option<String>,
    /// Deliver these before the reply (DB_PULL).
    pub messages_before: Vec<OutMessage>,
    /// Deliver these after the reply (traverses).
    pub messages_after: Vec<OutMessage>,
    /// Send these after the reply (TRAVERSE_ALL: TRAVERSE_DATA).
    pub controls_after: Vec<OutControl>,
    /// No reply now: the control waits (an attach from a client during
    /// recovery, upstream's deferred attach); re-submit it when recovery
    /// ends, or answer -1 after DeferredAttachTimeout.
    pub deferred: bool,
}

impl ControlOutcome {
    pub fn ok() -> Self {
        ControlOutcome::default()
    }
    pub fn data(data: Vec<u8>) -> Self {
        ControlOutcome {
            data,
            ..Default::default()
        }
    }
    pub fn fail() -> Self {
        ControlOutcome {
            status: -1,
            ..Default::default()
        }
    }
    pub fn fail_msg(msg: impl Into<String>) -> Self {
        ControlOutcome {
            status: -1,
            errmsg: Some(msg.into()),
            ..Default::default()
        }
    }
}

/// State of a DB_PUSH in progress.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PushState {
    pub srvid: u64,
    pub num_records: u32,
    pub failed: bool,
}

/// One attached database.
pub struct Db {
    pub(crate) id: u32,
    pub(crate) name: String,
    pub(crate) flags: u8,
    pub(crate) path: PathBuf,
    /// The flags we opened with (tdb_flags before the engine's additions).
    pub(crate) open_flags: u32,
    pub(crate) tdb: Database,
    pub(crate) h: CoreStore,
    pub(crate) seqnum_enabled: bool,
    pub(crate) seqnum: u32,
    /// DB_FREEZE done: `h` holds the whole-database lock (or a transaction).
    pub(crate) frozen: bool,
    /// Set by FREEZE (the node went inactive): DB_PULL sends nothing.
    pub(crate) invalid_records: bool,
    /// DB_TRANSACTION_START done: the recovery transaction id.
    pub(crate) freeze_tx: Option<u32>,
    pub(crate) push: Option<PushState>,
    /// Read-only delegation tracking database (`<path>.RO`).
    pub(crate) ro_tdb: Option<Database>,
    pub(crate) unhealthy: Option<String>,
    pub(crate) stats: DbStats,
    /// Keys scheduled for deletion (vacuuming's delete queue).
    pub(crate) delete_queue: BTreeMap<Vec<u8>, LtdbHeader>,
    /// Keys other nodes asked this node (their lmaster) to migrate here
    /// and vacuum (VACUUM_FETCH); taken by the next vacuum run.
    pub(crate) fetch_queue: std::collections::BTreeSet<Vec<u8>>,
    /// Generation of the last recovery commit.
    pub(crate) generation: u32,
    /// Migrations per key in the current second (hot keys).
    pub(crate) migrated: MigrationCount,
}

impl Db {
    pub fn id(&self) -> u32 {
        self.id
    }
    pub fn name(&self) -> &str {
        &self.name
    }
    pub fn flags(&self) -> u8 {
        self.flags
    }
    pub fn path(&self) -> &Path {
        &self.path
    }
    pub fn persistent(&self) -> bool {
        self.flags & DB_FLAGS_PERSISTENT != 0
    }
    pub fn replicated(&self) -> bool {
        self.flags & DB_FLAGS_REPLICATED != 0
    }
    /// Neither persistent nor replicated.
    pub fn volatile(&self) -> bool {
        self.flags & (DB_FLAGS_PERSISTENT | DB_FLAGS_REPLICATED) == 0
    }
    pub fn readonly(&self) -> bool {
        self.flags & DB_FLAGS_READONLY != 0
    }
    pub fn sticky(&self) -> bool {
        self.flags & DB_FLAGS_STICKY != 0
    }
    /// `tdb_get_flags` of our handle (DB_OPEN_FLAGS).
    pub fn tdb_flags(&self) -> u32 {
        self.tdb.tdb_flags()
    }
    pub fn frozen(&self) -> bool {
        self.frozen
    }
    pub fn statistics(&self) -> &DbStats {
        &self.stats
    }
    /// Keys waiting in the delete queue.
    pub fn delete_queue_len(&self) -> usize {
        self.delete_queue.len()
    }
    /// Upstream's `ctdb_db_allow_access`: not frozen, or frozen inside a
    /// recovery transaction.
    pub(crate) fn allow_access(&self) -> bool {
        !self.frozen || self.freeze_tx.is_some()
    }
}

/// The tdb flags ctdbd 4.17 opens a database with (`ctdb_db_tdb_flags`).
pub fn db_tdb_flags(db_flags: u8, with_mutex: bool) -> u32 {
    let mut f = if db_flags & DB_FLAGS_PERSISTENT != 0 {
        0
    } else if db_flags & DB_FLAGS_REPLICATED != 0 {
        tdbf::NOSYNC | tdbf::CLEAR_IF_FIRST | tdbf::INCOMPATIBLE_HASH
    } else {
        let mut f = tdbf::NOSYNC | tdbf::CLEAR_IF_FIRST | tdbf::INCOMPATIBLE_HASH;
        if with_mutex && mutexes_work() {
            f |= tdbf::MUTEX_LOCKING;
        }
        f
    };
    f |= tdbf::DISALLOW_NESTING;
    f
}

/// `tdb_runtime_check_for_robust_mutexes` (and our layout matches libtdb's).
pub fn mutexes_work() -> bool {
    ctdb_engine::sys::mutex::platform_layout_matches()
        && ctdb_engine::sys::mutex::robust_mutexes_supported()
}

/// The database id of a name: jenkins hash of the name and its NUL.
pub fn db_id_of(name: &str) -> u32 {
    let mut k = Vec::with_capacity(name.len() + 1);
    k.extend_from_slice(name.as_bytes());
    k.push(0);
    ctdb_engine::hash::jenkins_hash(&k)
}

fn engine_err(op: &'static str, path: &Path, e: ctdb_engine::Error) -> DaemonError {
    DaemonError::path(op, path, std::io::Error::other(e.to_string()))
}

/// Every attached database of this node.
pub struct Databases {
    cfg: DbConfig,
    /// In attach order; GET_DBMAP lists the newest first, as upstream's list.
    dbs: Vec<Db>,
    /// `persistent_health.tdb.<pnn>` in the state directory.
    health: CoreStore,
    _health_db: Database,
    /// The vnn map's pnns, for lmaster (this node alone until a cluster
    /// layer sets one).
    vnn_map: Vec<u32>,
    /// Active nodes (volatile traverses collect an end marker from each).
    active_nodes: u32,
    /// The vnn map's generation: a database attached now starts at it
    /// (upstream's `ctdb_db->generation`), a recovery's commit moves it.
    generation: u32,
    /// Traverses started for our clients that span several nodes, by the
    /// TRAVERSE_ALL reqid.
    pub(crate) traverses: std::collections::HashMap<u32, traverse::Pending>,
    pub(crate) next_reqid: u32,
    /// Databases detached since [`Databases::take_detached`] last ran (the
    /// data cores drop their partitions of them).
    detached: Vec<u32>,
}

impl Databases {
    /// Opens the health database and attaches the persistent databases of
    /// this node found in the persistent directory.
    pub fn open(cfg: DbConfig) -> Result<Databases, DaemonError> {
        for dir in [&cfg.volatile_dir, &cfg.persistent_dir, &cfg.state_dir] {
            std::fs::create_dir_all(dir)
                .map_err(|e| DaemonError::path("create database directory", dir, e))?;
        }
        let hpath = cfg
            .state_dir
            .join(format!("{PERSISTENT_HEALTH_TDB}.{}", cfg.pnn));
        let opts = OpenOptions::new()
            .hash_size(DEFAULT_HASH_SIZE)
            .tdb_flags(tdbf::DISALLOW_NESTING);
        let hdb = Database::open(&hpath, &opts)
            .map_err(|e| engine_err("open health database", &hpath, e))?;
        let mut health = hdb
            .handle()
            .map_err(|e| engine_err("open health database", &hpath, e))?;
        health
            .check()
            .map_err(|e| engine_err("check health database", &hpath, e))?;
        let pnn = cfg.pnn;
        let mut me = Databases {
            cfg,
            dbs: Vec::new(),
            health,
            _health_db: hdb,
            vnn_map: vec![pnn],
            active_nodes: 1,
            generation: ctdb_protocol::constants::INVALID_GENERATION,
            traverses: std::collections::HashMap::new(),
            next_reqid: 1,
            detached: Vec::new(),
        };
        me.attach_persistent_dir()?;
        Ok(me)
    }

    fn attach_persistent_dir(&mut self) -> Result<(), DaemonError> {
        let dir = self.cfg.persistent_dir.clone();
        let rd = match std::fs::read_dir(&dir) {
            Ok(rd) => rd,
            Err(_) => return Ok(()),
        };
        let mut names: Vec<String> = Vec::new();
        for ent in rd.flatten() {
            let f = ent.file_name();
            let Some(s) = f.to_str() else { continue };
            if let Some(name) = persistent_file_name(s, self.cfg.pnn) {
                names.push(name);
            } else if s.contains(".tdb.") && s.len() >= 7 {
                tracing::error!("Ignoring persistent database '{s}'");
            }
        }
        names.sort();
        for name in names {
            self.local_attach(&name, DB_FLAGS_PERSISTENT)
                .map_err(|why| {
                    DaemonError::path(
                        "attach persistent database",
                        dir.join(format!("{name}.{}", self.cfg.pnn)),
                        std::io::Error::other(why),
                    )
                })?;
            tracing::info!("Attached to persistent database {name}");
        }
        Ok(())
    }

    pub fn config(&self) -> &DbConfig {
        &self.cfg
    }

    /// Takes the current values of the tunables this layer reads at run
    /// time (after SET_TUNABLE): a `ctdb setvar AllowClientDBAttach 0`
    /// must allow the next DB_DETACH, as upstream reads its tunables live.
    pub fn update_tunables(&mut self, tunables: &ctdb_config::Tunables) {
        let t = |name: &str, dflt: u32| tunables.get(name).unwrap_or(dflt);
        self.cfg.max_dead = t("DatabaseMaxDead", self.cfg.max_dead);
        self.cfg.allow_client_db_attach = t("AllowClientDBAttach", 1) != 0;
        self.cfg.rec_buffer_size_limit = t("RecBufferSizeLimit", self.cfg.rec_buffer_size_limit);
        self.cfg.allow_unhealthy_db_read = t("AllowUnhealthyDBRead", 0) != 0;
    }

    pub fn pnn(&self) -> u32 {
        self.cfg.pnn
    }

    /// Sets the vnn map (the pnns of the lmaster-capable active nodes).
    pub fn set_vnn_map(&mut self, map: Vec<u32>) {
        if !map.is_empty() {
            self.vnn_map = map;
        }
    }

    /// The vnn map's generation changed (SET_VNNMAP).
    pub fn set_generation(&mut self, generation: u32) {
        self.generation = generation;
    }

    /// SET_RECMODE NORMAL's check (upstream's "Inconsistent DB
    /// generation"): the first database whose generation is not
    /// `generation`, i.e. not recovered in the recovery that made it.
    pub fn generation_mismatch(&self, generation: u32) -> Option<(&str, u32)> {
        self.dbs
            .iter()
            .find(|d| d.generation != generation)
            .map(|d| (d.name.as_str(), d.generation))
    }

    /// Sets the number of active nodes (1 until a cluster layer knows
    /// better): a client's traverse of a volatile database then asks them
    /// all (TRAVERSE_ALL) and waits for an end marker from each.
    pub fn set_active_nodes(&mut self, n: u32) {
        self.active_nodes = n.max(1);
    }

    /// The lmaster of `key`.
    pub fn lmaster(&self, key: &[u8]) -> u32 {
        lmaster_of(&self.vnn_map, key)
    }

    /// Attached databases, oldest first.
    pub fn iter(&self) -> impl Iterator<Item = &Db> {
        self.dbs.iter()
    }

    pub fn find(&self, db_id: u32) -> Option<&Db> {
        self.dbs.iter().find(|d| d.id == db_id)
    }

    /// A waiter on the chain lock of `key` in database `db_id`
    /// (`lockwait.rs`).
    pub fn chain_waiter(&self, db_id: u32, key: &[u8]) -> Option<ctdb_engine::ChainWaiter> {
        self.find(db_id).map(|db| db.h.chain_waiter(key))
    }

    pub fn find_by_name(&self, name: &str) -> Option<&Db> {
        self.dbs.iter().find(|d| d.name == name)
    }

    pub(crate) fn find_mut(&mut self, db_id: u32) -> Option<&mut Db> {
        self.dbs.iter_mut().find(|d| d.id == db_id)
    }

    /// A split borrow: the database and what the ltdb rules need.
    pub(crate) fn db_and_env(&mut self, db_id: u32) -> Option<(&mut Db, ltdb::Env<'_>)> {
        let env = ltdb::Env {
            pnn: self.cfg.pnn,
            vnn_map: &self.vnn_map,
        };
        let db = self.dbs.iter_mut().find(|d| d.id == db_id)?;
        Some((db, env))
    }

    /// Upstream's `ctdb_local_attach`: opens the file and registers it.
    /// `Err` carries the reason (logged by the caller).
    pub fn local_attach(&mut self, name: &str, flags: u8) -> Result<u32, String> {
        if name.is_empty() || name.contains('/') || name == "." || name == ".." {
            return Err(format!("invalid database name '{name}'"));
        }
        let id = db_id_of(name);
        if let Some(other) = self.find(id) {
            let msg = format!(
                "db_id 0x{id:x} hash collision. name1='{name}' name2='{}'",
                other.name
            );
            tracing::error!("{msg}");
            return Err(msg);
        }
        let persistent = flags & DB_FLAGS_PERSISTENT != 0;
        let mut unhealthy = None;
        if persistent {
            unhealthy = self.load_health(name)?;
            if let Some(r) = &unhealthy {
                let msg = format!("ERROR: tdb {name} is marked as unhealthy: {r}");
                tracing::error!("{msg}");
                return Err(msg);
            }
        }
        let dir = if persistent {
            &self.cfg.persistent_dir
        } else {
            &self.cfg.volatile_dir
        };
        let path = dir.join(format!("{name}.{}", self.cfg.pnn));
        let tflags = db_tdb_flags(flags, self.cfg.tdb_mutexes);
        let (tdb, mut h) = open_tdb(&path, &self.cfg, tflags)?;
        if persistent {
            if let Err(e) = h.check() {
                let msg = format!("tdb_check({}) failed: {e}", path.display());
                tracing::error!("{msg}");
                return Err(msg);
            }
        } else {
            let n = h
                .count()
                .map_err(|e| format!("traverse {}: {e}", path.display()))?;
            if n != 0 {
                let msg = format!(
                    "tdb '{}' not empty on attach ({n} records; is another process \
                     holding it open?)",
                    path.display()
                );
                tracing::error!("{msg}");
                return Err(msg);
            }
        }
        tracing::info!(
            "Attached to database '{}' with flags 0x{:x}",
            path.display(),
            tflags
        );
        self.dbs.push(Db {
            id,
            name: name.to_string(),
            flags,
            path,
            open_flags: tflags,
            tdb,
            h,
            seqnum_enabled: false,
            seqnum: 0,
            frozen: false,
            invalid_records: false,
            freeze_tx: None,
            push: None,
            ro_tdb: None,
            unhealthy,
            stats: DbStats::default(),
            delete_queue: BTreeMap::new(),
            fetch_queue: std::collections::BTreeSet::new(),
            generation: self.generation,
            migrated: MigrationCount::default(),
        });
        Ok(id)
    }

    /// The reason a database is unhealthy, from the health database.
    fn load_health(&mut self, name: &str) -> Result<Option<String>, String> {
        match self.health.fetch(name.as_bytes()) {
            Ok(Some(v)) if !v.is_empty() => Ok(Some(String::from_utf8_lossy(&v).into_owned())),
            Ok(_) => Ok(None),
            Err(e) => Err(format!("read persistent health of {name}: {e}")),
        }
    }

    /// Stores (`Some`) or clears (`None`) a database's unhealthy reason.
    pub(crate) fn update_health(&mut self, name: &str, reason: Option<&str>) -> Result<(), String> {
        let h = &mut self.health;
        h.transaction_start()
            .map_err(|e| format!("health transaction: {e}"))?;
        let r = match reason {
            Some(r) => h.store(
                name.as_bytes(),
                r.as_bytes(),
                ctdb_engine::StoreFlag::Replace,
            ),
            None => match h.delete(name.as_bytes()) {
                Err(ctdb_engine::Error::NotFound) => Ok(()),
                other => other,
            },
        };
        match r {
            Ok(()) => h
                .transaction_commit()
                .map_err(|e| format!("health commit: {e}")),
            Err(e) => {
                let _ = h.transaction_cancel();
                Err(format!("health update: {e}"))
            }
        }
    }

    /// Dispatches a database control. `None`: not a database control.
    pub fn handle_control(
        &mut self,
        ctx: &ControlCtx,
        opcode: u32,
        data: &[u8],
    ) -> Option<ControlOutcome> {
        let op = Opcode::from_u32(opcode)?;
        if !is_db_control(op) {
            return None;
        }
        let input = match ControlData::decode(opcode, data) {
            Ok(v) => v,
            Err(e) => {
                tracing::error!("control {} with bad data: {e}", op.name());
                return Some(ControlOutcome::fail_msg(format!(
                    "{}: bad control data: {e}",
                    op.name()
                )));
            }
        };
        Some(self.dispatch(ctx, input))
    }

    fn dispatch(&mut self, ctx: &ControlCtx, input: ControlData<'_>) -> ControlOutcome {
        use ControlData as C;
        match input {
            C::GetDbmap => self.get_dbmap(),
            C::Getdbpath(id) => match self.find(id) {
                Some(db) => ControlOutcome::data(cstring(&db.path.to_string_lossy())),
                None => ControlOutcome::fail(),
            },
            C::GetDbname(id) => match self.find(id) {
                Some(db) => ControlOutcome::data(cstring(&db.name)),
                None => ControlOutcome::fail(),
            },
            C::DbAttach(name) => self.control_attach(ctx, name, 0),
            C::DbAttachPersistent(name) => self.control_attach(ctx, name, DB_FLAGS_PERSISTENT),
            C::DbAttachReplicated(name) => self.control_attach(ctx, name, DB_FLAGS_REPLICATED),
            C::DbDetach(id) => self.control_detach(ctx, id),
            C::DbOpenFlags(id) => match self.find(id) {
                Some(db) => ControlOutcome::data((db.tdb_flags() as i32).to_bytes()),
                None => ControlOutcome::fail(),
            },
            C::EnableSeqnum(id) => self.enable_seqnum(id),
            C::UpdateSeqnum(id) => self.update_seqnum(ctx, id),
            C::GetDbSeqnum(p) => self.get_db_seqnum(p.0),
            C::DbGetHealth(id) => self.get_health(id),
            C::DbSetHealthy(id) => self.set_healthy(id),
            C::SetDbReadonly(id) => self.set_readonly(id),
            C::SetDbSticky(id) => self.set_sticky(id),
            C::GetDbStatistics(id) => match self.find(id) {
                Some(db) => ControlOutcome::data(db.stats.encode()),
                None => {
                    tracing::error!("Unknown db_id 0x{id:x} in get_db_statistics");
                    ControlOutcome::fail()
                }
            },
            C::WipeDatabase(t) => self.wipe_database(t.db_id, t.tid),
            C::Trans3Commit(m) => self.trans3_commit(ctx, &m),
            C::UpdateRecord(m) => self.update_record(ctx, &m),
            C::DbFreeze(id) => self.db_freeze(id),
            C::DbThaw(id) => self.db_thaw(id),
            C::DbTransactionStart(t) => self.db_transaction_start(t.db_id, t.tid),
            C::DbTransactionCommit(t) => self.db_transaction_commit(t.db_id, t.tid),
            C::DbTransactionCancel(id) => self.db_transaction_cancel(id),
            C::DbPull(p) => self.db_pull(ctx, &p),
            C::DbPushStart(p) => self.db_push_start(&p),
            C::DbPushConfirm(id) => self.db_push_confirm(id),
            C::ScheduleForDeletion(k) => self.schedule_for_deletion(&k),
            C::TryDeleteRecords(m) => self.try_delete_records(&m),
            C::TraverseStart(t) => self.traverse_start(ctx, t.db_id, t.reqid, t.srvid, false),
            C::TraverseStartExt(t) => {
                self.traverse_start(ctx, t.db_id, t.reqid, t.srvid, t.withemptyrecords)
            }
            C::TraverseAll(t) => self.traverse_all(t.db_id, t.reqid, t.pnn, false),
            C::TraverseAllExt(t) => self.traverse_all(t.db_id, t.reqid, t.pnn, t.withemptyrecords),
            C::TraverseData(d) => self.traverse_data(&d),
            C::TraverseKill(t) => {
                self.traverses
                    .retain(|_, p| !(p.client_reqid == t.reqid && p.srvid == t.srvid));
                ControlOutcome::ok()
            }
            C::DbVacuum(v) => self.control_db_vacuum(v.db_id, v.full_vacuum_run),
            C::VacuumFetch(m) => self.control_vacuum_fetch(&m),
            _ => ControlOutcome::fail(),
        }
    }

    fn get_dbmap(&self) -> ControlOutcome {
        let map = DbIdMap {
            dbs: self
                .dbs
                .iter()
                .rev()
                .map(|d| DbId {
                    db_id: d.id,
                    flags: d.flags,
                })
                .collect(),
        };
        ControlOutcome::data(map.to_bytes())
    }

    fn control_attach(
        &mut self,
        ctx: &ControlCtx,
        name: CtdbString<'_>,
        flags: u8,
    ) -> ControlOutcome {
        let name = match name.as_str() {
            Some(n) => n.to_string(),
            None => return ControlOutcome::fail_msg("database name missing or not UTF-8"),
        };
        if !self.cfg.allow_client_db_attach {
            tracing::error!(
                "DB Attach to database {name} denied by tunable AllowClientDBAccess == 0"
            );
            return ControlOutcome::fail();
        }
        if ctx.from_client {
            if ctx.node_inactive {
                tracing::error!("DB Attach to database {name} refused since node is inactive");
                return ControlOutcome::fail();
            }
            let recovery_attach = ctx.flags & CTRL_FLAG_ATTACH_RECOVERY != 0;
            if recovery_attach && !ctx.recovery_active {
                tracing::error!("Attach from recovery refused because recovery is not active");
                return ControlOutcome::fail();
            }
            if !recovery_attach && (ctx.recovery_active || ctx.before_startup) {
                tracing::error!(
                    "DB Attach to database {name} deferred for client since node is in \
                     recovery mode."
                );
                return ControlOutcome {
                    deferred: true,
                    ..Default::default()
                };
            }
        }
        if let Some(db) = self.find_by_name(&name) {
            if db.flags & flags != flags {
                tracing::error!(
                    "Error: Failed to re-attach with 0x{flags:x} flags, database has 0x{:x} flags",
                    db.flags
                );
                return ControlOutcome::fail();
            }
            return ControlOutcome::data(db.id.to_bytes());
        }
        match self.local_attach(&name, flags) {
            Ok(id) => {
                // As upstream: a database new on this node is announced to
                // every connected node (NOREPLY), so it exists everywhere.
                let opcode = if flags & DB_FLAGS_PERSISTENT != 0 {
                    Opcode::DbAttachPersistent
                } else if flags & DB_FLAGS_REPLICATED != 0 {
                    Opcode::DbAttachReplicated
                } else {
                    Opcode::DbAttach
                };
                ControlOutcome {
                    controls_after: vec![OutControl {
                        destnode: CTDB_BROADCAST_CONNECTED,
                        opcode,
                        data: cstring(&name),
                    }],
                    ..ControlOutcome::data(id.to_bytes())
                }
            }
            Err(why) => ControlOutcome::fail_msg(why),
        }
    }

    fn control_detach(&mut self, ctx: &ControlCtx, id: u32) -> ControlOutcome {
        let Some(db) = self.find(id) else {
            tracing::error!("Invalid dbid 0x{id:08x} in DB detach");
            return ControlOutcome::fail();
        };
        if self.cfg.allow_client_db_attach {
            tracing::error!(
                "DB detach from database {} denied. Clients are allowed access to databases \
                 (AllowClientDBAccess == 1)",
                db.name
            );
            return ControlOutcome::fail();
        }
        if !db.volatile() {
            tracing::error!("Detaching non-volatile database {} denied", db.name);
            return ControlOutcome::fail();
        }
        if ctx.recovery_active {
            tracing::error!("DB detach denied while in recovery");
            return ControlOutcome::fail();
        }
        // From a client: broadcast to every connected node (this one
        // included, through the loopback) and reply 0; the copies from the
        // daemon do the work, as upstream.
        if ctx.from_client {
            return ControlOutcome {
                controls_after: vec![OutControl {
                    destnode: CTDB_BROADCAST_CONNECTED,
                    opcode: Opcode::DbDetach,
                    data: id.to_le_bytes().to_vec(),
                }],
                ..ControlOutcome::ok()
            };
        }
        let name = db.name.clone();
        self.detach(id);
        tracing::info!("Detached from database '{name}'");
        ControlOutcome::ok()
    }

    /// Drops a database: closes its handles (the file stays).
    pub fn detach(&mut self, id: u32) -> bool {
        let before = self.dbs.len();
        self.dbs.retain(|d| d.id != id);
        let gone = before != self.dbs.len();
        if gone {
            self.detached.push(id);
        }
        gone
    }

    /// The databases detached since the last call (for the data cores).
    pub fn take_detached(&mut self) -> Vec<u32> {
        std::mem::take(&mut self.detached)
    }

    /// Attaches (or finds) a database outside of a control, for tests and
    /// start-up code. Returns the id.
    pub fn attach(&mut self, name: &str, flags: u8) -> Result<u32, String> {
        if let Some(db) = self.find_by_name(name) {
            if db.flags & flags != flags {
                return Err(format!(
                    "database {name} has flags 0x{:x}, not 0x{flags:x}",
                    db.flags
                ));
            }
            return Ok(db.id);
        }
        self.local_attach(name, flags)
    }

    /// Resets every database's statistics (STATISTICS_RESET).
    pub fn reset_statistics(&mut self) {
        for db in &mut self.dbs {
            db.stats = DbStats::default();
        }
    }

    /// True while a DB_PUSH waits for records on `srvid`.
    pub fn is_push_srvid(&self, srvid: u64) -> bool {
        self.dbs
            .iter()
            .any(|d| d.push.is_some_and(|p| p.srvid == srvid))
    }
}

/// `<name>` of a persistent file `<name>.<pnn>` that upstream would attach
/// (names of the form `*.tdb.<digits>`, digits = this node).
fn persistent_file_name(file: &str, pnn: u32) -> Option<String> {
    if file.len() < 7 {
        return None;
    }
    let p = file.find(".tdb.")?;
    let digits = &file[p + 5..];
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if digits.parse::<u32>().ok()? != pnn {
        return None;
    }
    Some(file[..p + 4].to_string())
}

pub(crate) fn lmaster_of(vnn_map: &[u32], key: &[u8]) -> u32 {
    if vnn_map.is_empty() {
        return CTDB_CURRENT_NODE;
    }
    let h = ctdb_engine::hash::jenkins_hash(key);
    vnn_map[(h as usize) % vnn_map.len()]
}

/// Opens a database file as ctdbd does.
pub(crate) fn open_tdb(
    path: &Path,
    cfg: &DbConfig,
    tflags: u32,
) -> Result<(Database, CoreStore), String> {
    let opts = OpenOptions::new()
        .hash_size(cfg.hash_size)
        .tdb_flags(tflags)
        .mode(0o600)
        .max_dead(cfg.max_dead);
    let tdb = Database::open(path, &opts).map_err(|e| {
        let msg = format!("Failed to open tdb '{}': {e}", path.display());
        tracing::error!("{msg}");
        msg
    })?;
    let h = tdb
        .handle()
        .map_err(|e| format!("open handle on '{}': {e}", path.display()))?;
    Ok((tdb, h))
}

/// A NUL-terminated string as control output.
fn cstring(s: &str) -> Vec<u8> {
    let mut v = Vec::with_capacity(s.len() + 1);
    v.extend_from_slice(s.as_bytes());
    v.push(0);
    v
}

/// The controls [`Databases::handle_control`] answers.
pub fn is_db_control(op: Opcode) -> bool {
    use Opcode as O;
    matches!(
        op,
        O::GetDbmap
            | O::Getdbpath
            | O::GetDbname
            | O::DbAttach
            | O::DbAttachPersistent
            | O::DbAttachReplicated
            | O::DbDetach
            | O::DbOpenFlags
            | O::EnableSeqnum
            | O::UpdateSeqnum
            | O::GetDbSeqnum
            | O::DbGetHealth
            | O::DbSetHealthy
            | O::SetDbReadonly
            | O::SetDbSticky
            | O::GetDbStatistics
            | O::WipeDatabase
            | O::Trans3Commit
            | O::UpdateRecord
            | O::DbFreeze
            | O::DbThaw
            | O::DbTransactionStart
            | O::DbTransactionCommit
            | O::DbTransactionCancel
            | O::DbPull
            | O::DbPushStart
            | O::DbPushConfirm
            | O::ScheduleForDeletion
            | O::TryDeleteRecords
            | O::TraverseStart
            | O::TraverseStartExt
            | O::TraverseAll
            | O::TraverseAllExt
            | O::TraverseData
            | O::TraverseKill
            | O::DbVacuum
            | O::VacuumFetch
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn persistent_names_as_upstream() {
        assert_eq!(
            persistent_file_name("secrets.tdb.0", 0).as_deref(),
            Some("secrets.tdb")
        );
        assert_eq!(persistent_file_name("secrets.tdb.1", 0), None);
        assert_eq!(persistent_file_name("secrets.tdb.0x", 0), None);
        assert_eq!(persistent_file_name("a.tdb.b.tdb.0", 0), None);
        assert_eq!(persistent_file_name("x.tdb.", 0), None);
        assert_eq!(
            persistent_file_name("ctdb.tdb.12", 12).as_deref(),
            Some("ctdb.tdb")
        );
    }

    #[test]
    fn flags_as_upstream() {
        assert_eq!(db_tdb_flags(DB_FLAGS_PERSISTENT, true), 0x400);
        assert_eq!(db_tdb_flags(DB_FLAGS_REPLICATED, true), 0xC41);
        assert_eq!(db_tdb_flags(0, false), 0xC41);
        if mutexes_work() {
            assert_eq!(db_tdb_flags(0, true), 0x1C41);
        }
    }

    #[test]
    fn db_ids() {
        // Known from a Debian ctdbd: `ctdb getdbmap` shows these ids.
        assert_eq!(db_id_of("secrets.tdb"), 0x7132c184);
        assert_eq!(db_id_of("g_lock.tdb"), 0x4d2a432b);
    }
}
