//! The data-core side of the database layer: a [`Shard`] owns, for every
//! volatile database, the engine partition of the chains `b` with
//! `b % shards == shard` ([`ctdb_engine::Database::partition`]) and serves
//! REQ_CALLs for keys on those chains with the same record rules as the
//! control core ([`super::call::run_call`]). The control core keeps the
//! registry (names, ids, flags, health, recovery state) and talks to a
//! shard only through the owned values below, moved over the runtime's
//! bounded channels:
//!
//! ```text
//! control core                                  data core `s`
//!   attach volatile db  ── ShardRequest::Attach ──▶ partition(s, n)
//!   REQ_CALL for key k  ── ShardRequest::Call ────▶ run_call on own chains
//!     (s = Databases::shard_of(db, k, n))     ◀── ShardReply::Call(outcome)
//!   DB_FREEZE           ── ShardRequest::Freeze ──▶ calls answer Defer
//!   DB_THAW             ── ShardRequest::Thaw
//!   detach              ── ShardRequest::Detach
//! ```
//!
//! Only volatile databases are sharded: persistent and replicated ones need
//! whole-file transactions and stay on the control core. A shard never
//! holds a chain lock between two requests, so the control core's freeze
//! (whole-database lock) only waits for calls in flight. Each shard keeps
//! its own delete queue and statistics, collected with
//! [`ShardRequest::TakeStats`].

use std::collections::{BTreeMap, HashMap};

use ctdb_engine::ltdb::LtdbHeader;
use ctdb_engine::{CoreStore, Database};
use ctdb_protocol::ReqCall;

use super::call::run_call;
use super::ltdb::{Env, Records};
use super::migrate::{self, MigrationCount, RecordCtx, RecordOp, RecordStep};
use super::{CallOutcome, Databases, DbStats};

/// An owned REQ_CALL for a data core.
#[derive(Debug, Clone)]
pub struct ShardCall {
    pub db_id: u32,
    pub flags: u32,
    pub callid: u32,
    pub hopcount: u32,
    pub key: Vec<u8>,
    pub calldata: Vec<u8>,
}

impl ShardCall {
    pub fn from_req(c: &ReqCall<'_>) -> ShardCall {
        ShardCall {
            db_id: c.db_id,
            flags: c.flags,
            callid: c.callid,
            hopcount: c.hopcount,
            key: c.key.to_vec(),
            calldata: c.calldata.to_vec(),
        }
    }
}

/// Control core → data core.
#[derive(Debug)]
pub enum ShardRequest {
    /// Open this shard's partition of a volatile database.
    Attach {
        db_id: u32,
        name: String,
        flags: u8,
        db: Database,
    },
    Detach {
        db_id: u32,
    },
    /// Run a REQ_CALL whose key is on this shard's chains.
    Call {
        call: ShardCall,
        pnn: u32,
        vnn_map: Vec<u32>,
    },
    /// A migration step on a record whose key is on this shard's chains.
    Record {
        op: RecordOp,
        pnn: u32,
        vnn_map: Vec<u32>,
    },
    Freeze {
        db_id: u32,
    },
    Thaw {
        db_id: u32,
    },
    /// Hand over (and reset) the statistics and delete queue collected
    /// since the last time.
    TakeStats {
        db_id: u32,
    },
    /// Hand over the node statistics the core's transport side counted
    /// (answered by the data core's loop, not the shard).
    TakeCounters,
}

/// Data core → control core.
#[derive(Debug)]
pub enum ShardReply {
    Done,
    Failed(String),
    Call(CallOutcome),
    Record(RecordStep),
    Stats {
        stats: Box<DbStats>,
        delete_queue: BTreeMap<Vec<u8>, LtdbHeader>,
    },
    Counters(Box<crate::shard_peers::CallCounters>),
}

struct ShardDb {
    name: String,
    flags: u8,
    h: CoreStore,
    frozen: bool,
    stats: DbStats,
    delete_queue: BTreeMap<Vec<u8>, LtdbHeader>,
    migrated: MigrationCount,
}

/// One data core's share of every volatile database.
pub struct Shard {
    index: usize,
    count: usize,
    dbs: HashMap<u32, ShardDb>,
}

impl Shard {
    pub fn new(index: usize, count: usize) -> Shard {
        Shard {
            index,
            count,
            dbs: HashMap::new(),
        }
    }

    pub fn index(&self) -> usize {
        self.index
    }

    /// A waiter on the chain lock of `key` in this shard's part of
    /// database `db_id` (`lockwait.rs`).
    pub fn chain_waiter(&self, db_id: u32, key: &[u8]) -> Option<ctdb_engine::ChainWaiter> {
        self.dbs.get(&db_id).map(|db| db.h.chain_waiter(key))
    }

    /// Whether this shard has its partition of database `db_id` open.
    pub fn has_db(&self, db_id: u32) -> bool {
        self.dbs.contains_key(&db_id)
    }

    /// A record step of `db_id` waited `t` seconds for its chain lock.
    pub fn lock_wait(&mut self, db_id: u32, t: f64) {
        if let Some(d) = self.dbs.get_mut(&db_id) {
            d.stats.lock_wait(t, true);
        }
    }

    /// Runs one migration step on a record of this shard's chains (the
    /// record rules of [`migrate::run`]), with this node's pnn and vnn map.
    pub fn record(&mut self, op: &RecordOp, pnn: u32, vnn_map: &[u32]) -> RecordStep {
        let db_id = op.db_id();
        let Some(d) = self.dbs.get_mut(&db_id) else {
            return op.unknown_db();
        };
        if d.frozen {
            return RecordStep::Defer;
        }
        let env = Env { pnn, vnn_map };
        let mut ctx = RecordCtx {
            db_id,
            rec: Records {
                h: &mut d.h,
                name: &d.name,
                flags: d.flags,
                delete_queue: &mut d.delete_queue,
            },
            stats: &mut d.stats,
            ro_tdb: None,
            migrated: &mut d.migrated,
        };
        migrate::run(&mut ctx, &env, op)
    }

    /// Serves one request.
    pub fn handle(&mut self, req: ShardRequest) -> ShardReply {
        match req {
            // Already attached (two attaches raced): keep the partition and
            // what it collected.
            ShardRequest::Attach { db_id, .. } if self.dbs.contains_key(&db_id) => ShardReply::Done,
            ShardRequest::Attach {
                db_id,
                name,
                flags,
                db,
            } => match db.partition(self.index, self.count) {
                Ok(h) => {
                    self.dbs.insert(
                        db_id,
                        ShardDb {
                            name,
                            flags,
                            h,
                            frozen: false,
                            stats: DbStats::default(),
                            delete_queue: BTreeMap::new(),
                            migrated: MigrationCount::default(),
                        },
                    );
                    ShardReply::Done
                }
                Err(e) => {
                    ShardReply::Failed(format!("shard {}: partition of {name}: {e}", self.index))
                }
            },
            ShardRequest::Detach { db_id } => {
                self.dbs.remove(&db_id);
                ShardReply::Done
            }
            ShardRequest::Freeze { db_id } | ShardRequest::Thaw { db_id } => {
                let freeze = matches!(req, ShardRequest::Freeze { .. });
                match self.dbs.get_mut(&db_id) {
                    Some(d) => {
                        d.frozen = freeze;
                        ShardReply::Done
                    }
                    None => ShardReply::Failed(format!("shard: unknown db 0x{db_id:08x}")),
                }
            }
            ShardRequest::TakeStats { db_id } => match self.dbs.get_mut(&db_id) {
                Some(d) => ShardReply::Stats {
                    stats: Box::new(std::mem::take(&mut d.stats)),
                    delete_queue: std::mem::take(&mut d.delete_queue),
                },
                None => ShardReply::Failed(format!("shard: unknown db 0x{db_id:08x}")),
            },
            ShardRequest::TakeCounters => ShardReply::Counters(Box::default()),
            ShardRequest::Record { op, pnn, vnn_map } => {
                ShardReply::Record(self.record(&op, pnn, &vnn_map))
            }
            ShardRequest::Call { call, pnn, vnn_map } => {
                let Some(d) = self.dbs.get_mut(&call.db_id) else {
                    tracing::error!("Unknown database in request. db_id==0x{:08x}", call.db_id);
                    return ShardReply::Call(CallOutcome::Drop);
                };
                if d.frozen {
                    return ShardReply::Call(CallOutcome::Defer);
                }
                let env = Env {
                    pnn,
                    vnn_map: &vnn_map,
                };
                let req = ReqCall {
                    flags: call.flags,
                    db_id: call.db_id,
                    callid: call.callid,
                    hopcount: call.hopcount,
                    key: &call.key,
                    calldata: &call.calldata,
                };
                let mut rec = Records {
                    h: &mut d.h,
                    name: &d.name,
                    flags: d.flags,
                    delete_queue: &mut d.delete_queue,
                };
                ShardReply::Call(run_call(&mut rec, &mut d.stats, None, &env, &req))
            }
        }
    }
}

impl Databases {
    /// The data shard (of `shards`) that owns `key` of a volatile database;
    /// `None` for other databases (served on the control core) or unknown
    /// ids.
    pub fn shard_of(&self, db_id: u32, key: &[u8], shards: usize) -> Option<usize> {
        let db = self.find(db_id)?;
        if !db.volatile() {
            return None;
        }
        Some(db.tdb.owner_of(key, shards))
    }

    /// The Attach request for every shard of a volatile database.
    pub fn shard_attach_requests(&self, db_id: u32, shards: usize) -> Vec<ShardRequest> {
        let Some(db) = self.find(db_id).filter(|d| d.volatile()) else {
            return Vec::new();
        };
        (0..shards)
            .map(|_| ShardRequest::Attach {
                db_id,
                name: db.name.clone(),
                flags: db.flags,
                db: db.tdb.clone(),
            })
            .collect()
    }

    /// A REQ_CALL as a request for its shard: `(shard, request)`, or
    /// `None` when the control core serves it ([`Databases::handle_call`]).
    /// `shards` is the number of data shards on cores of their own (the
    /// caller passes 0 when core 0 serves everything itself).
    pub fn route_call(&self, call: &ReqCall<'_>, shards: usize) -> Option<(usize, ShardRequest)> {
        if shards == 0 {
            return None;
        }
        let shard = self.shard_of(call.db_id, call.key, shards)?;
        Some((
            shard,
            ShardRequest::Call {
                call: ShardCall::from_req(call),
                pnn: self.pnn(),
                vnn_map: self.vnn_map.clone(),
            },
        ))
    }

    /// The shard owning a migration step's record: `None` when the
    /// control core runs it ([`Databases::record_op`]): one core, or a
    /// database that is not volatile, or read-only.
    pub fn record_shard(&self, op: &RecordOp, shards: usize) -> Option<usize> {
        if shards == 0 {
            return None;
        }
        let db = self.find(op.db_id())?;
        (db.volatile() && !db.readonly()).then(|| db.tdb.owner_of(op.key(), shards))
    }

    /// A migration step as a request for a shard.
    pub fn record_request(&self, op: RecordOp) -> ShardRequest {
        ShardRequest::Record {
            op,
            pnn: self.pnn(),
            vnn_map: self.vnn_map.clone(),
        }
    }

    /// The vnn map record steps use to find a key's lmaster.
    pub fn vnn_map(&self) -> &[u32] {
        &self.vnn_map
    }

    /// The databases of `attached` the data cores serve on their own
    /// (volatile, not read-only), with their engine handles.
    pub fn routed(&self, attached: &std::collections::HashSet<u32>) -> Vec<(u32, Database)> {
        let mut v: Vec<(u32, Database)> = self
            .iter()
            .filter(|db| attached.contains(&db.id()) && db.volatile() && !db.readonly())
            .map(|db| (db.id(), db.tdb.clone()))
            .collect();
        v.sort_by_key(|(id, _)| *id);
        v
    }

    /// Volatile databases (not read-only) the data cores could serve.
    pub fn shardable(&self) -> Vec<u32> {
        self.iter()
            .filter(|db| db.volatile() && !db.readonly())
            .map(|db| db.id())
            .collect()
    }

    /// Folds a shard's statistics and delete queue into the database's.
    pub fn merge_shard_stats(
        &mut self,
        db_id: u32,
        stats: &DbStats,
        delete_queue: BTreeMap<Vec<u8>, LtdbHeader>,
    ) {
        if let Some(db) = self.find_mut(db_id) {
            db.stats.merge(stats);
            db.delete_queue.extend(delete_queue);
        }
    }
}
