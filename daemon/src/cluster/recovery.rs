//! Database recovery, as the leader runs it: the sequence of upstream's
//! `ctdb_recovery_helper`, as a state machine ([`RecoveryRun`]), and the
//! pure functions that decide which copy of each record survives.
//!
//! Why: after a membership change the nodes' databases disagree (a
//! record's latest copy lives on whichever node last migrated it, a
//! persistent database may have missed a transaction). Recovery freezes
//! every active node, collects every copy, keeps the right one and pushes
//! the result to all, under a new generation so that stale traffic is
//! dropped.
//!
//! # Sequence (one run, generation `G`)
//!
//! 1. `GET_NODEMAP` to every node connected in the leader's map; keep
//!    those whose own flags are not `INACTIVE` (the *node list*).
//! 2. `GET_CAPABILITIES` and `GET_DBMAP` to the node list; a database with
//!    different flags on two nodes fails the run.
//! 3. `SET_RECMODE ACTIVE`, build the vnn map from the LMASTER-capable
//!    nodes of the node list (the leader alone if there are none),
//!    `START_RECOVERY` (`startrecovery` event), `SETVNNMAP`.
//! 4. Per database, up to 3 attempts: `GET_DBNAME` (names must agree),
//!    `DB_ATTACH` on nodes that lack it, `DB_FREEZE`,
//!    `DB_TRANSACTION_START(G)`, collect, `WIPE_DATABASE`, push
//!    (`DB_PUSH_START`/`DB_PUSH_CONFIRM`: every node must confirm the full
//!    count), `DB_TRANSACTION_COMMIT`, `DB_THAW`. Collect is: persistent
//!    or replicated — `GET_DB_SEQNUM` everywhere and pull from the node
//!    with the highest sequence number; volatile — pull from every node in
//!    turn and merge ([`recdb_add`]).
//! 5. If a database could not be recovered: the node with the most ban
//!    credits (a credit per failed freeze, failed pull or wrong name) is
//!    banned for `RecoveryBanPeriod` if it has at least 3 and is still
//!    active (`EnableBans`); the run fails.
//! 6. `SET_RECMODE NORMAL`, `END_RECOVERY` (`recovered` event). Done.
//!
//! Any failed control of steps 1–3 or 6 fails the run; the recovery
//! daemon retries at its next main-loop pass.
//!
//! # Merge rule (volatile)
//!
//! Copies are added in node-list order; a copy replaces the one kept so
//! far when its RSN is higher, or when the RSNs are equal and the kept
//! copy's dmaster is the leader. The pushed copy gets dmaster = leader and
//! `CTDB_REC_FLAG_MIGRATED_WITH_DATA`; records with no data are not
//! pushed. Invariant: for every key, the surviving RSN is the maximum RSN
//! among the copies pulled.
//!
//! Persistent databases are taken whole from the node with the highest
//! sequence number (the first such node in node-list order on ties). 4.17
//! reads but does not use `RecoverPDBBySeqNum`; the older per-record mode
//! is kept as [`merge_persistent_per_record`] for reference and tests.

use std::collections::{BTreeMap, HashMap};
use std::hash::BuildHasherDefault;

use ctdb_protocol::constants::{
    CTDB_REC_FLAG_MIGRATED_WITH_DATA, DB_FLAGS_PERSISTENT, DB_FLAGS_READONLY, DB_FLAGS_REPLICATED,
    DB_FLAGS_STICKY,
};

use super::{
    Action, BanState, Control, ControlId, ControlResult, DbInfo, Pnn, Record, Reply, Tunables,
    VnnMap, CTDB_CAP_LMASTER, CTDB_RECOVERY_ACTIVE, CTDB_RECOVERY_NORMAL, NODE_FLAGS_DISCONNECTED,
    NODE_FLAGS_INACTIVE,
};

/// Attempts per database and the ban-credit threshold (`NUM_RETRIES`).
pub const NUM_RETRIES: u32 = 3;

/// Records of one database being recovered, by key.
/// Keyed by record key; ahash with fixed keys keeps the iteration order
/// (and so the push order) the same from run to run for the same input.
pub type RecDb = HashMap<Vec<u8>, Record, BuildHasherDefault<ahash::AHasher>>;

/// Adds pulled copies to the recovery database (`recdb_add`): a copy
/// replaces the kept one if its RSN is higher, or equal while the kept
/// copy's dmaster is `leader`.
pub fn recdb_add(recdb: &mut RecDb, leader: Pnn, copies: impl IntoIterator<Item = Record>) {
    for r in copies {
        match recdb.get_mut(&r.key) {
            Some(prev) => {
                if r.rsn < prev.rsn || (r.rsn == prev.rsn && prev.dmaster != leader) {
                    continue;
                }
                *prev = r;
            }
            None => {
                recdb.insert(r.key.clone(), r);
            }
        }
    }
}

/// Merges the copies of a volatile database pulled from each node, in
/// pull order.
pub fn merge_volatile(pulls: &[(Pnn, Vec<Record>)], leader: Pnn) -> RecDb {
    let mut db = RecDb::default();
    for (_, recs) in pulls {
        recdb_add(&mut db, leader, recs.iter().cloned());
    }
    db
}

/// The node whose persistent copy wins: highest sequence number, the
/// first in order on ties (`collect_highseqnum_db`).
pub fn highest_seqnum(seqnums: &[(Pnn, u64)]) -> Option<Pnn> {
    let mut best = seqnums.first()?;
    for s in seqnums {
        if s.1 > best.1 {
            best = s;
        }
    }
    Some(best.0)
}

/// Per-record persistent merge (pre-4.x `RecoverPDBBySeqNum = 0`): each
/// key keeps its highest-RSN copy, the first seen on ties.
pub fn merge_persistent_per_record(pulls: &[(Pnn, Vec<Record>)]) -> RecDb {
    let mut db = RecDb::default();
    for (_, recs) in pulls {
        for r in recs {
            match db.get(&r.key) {
                Some(prev) if prev.rsn >= r.rsn => {}
                _ => {
                    db.insert(r.key.clone(), r.clone());
                }
            }
        }
    }
    db
}

/// What is pushed (`recbuf_filter_add`): no empty records; volatile
/// records become the leader's with `MIGRATED_WITH_DATA`.
pub fn records_to_push(db: &RecDb, persistent: bool, leader: Pnn) -> Vec<Record> {
    db.values()
        .filter(|r| !r.data.is_empty())
        .map(|r| {
            let mut r = r.clone();
            if !persistent {
                r.dmaster = leader;
                r.flags |= CTDB_REC_FLAG_MIGRATED_WITH_DATA;
            }
            r
        })
        .collect()
}

/// Replies to one batch of controls sent to several nodes.
#[derive(Debug, Clone, Default)]
pub(crate) struct Round {
    order: Vec<Pnn>,
    pending: BTreeMap<ControlId, Pnn>,
    pub(crate) ok: BTreeMap<Pnn, Reply>,
    failed: Vec<Pnn>,
}

impl Round {
    pub(crate) fn done(&self) -> bool {
        self.pending.is_empty()
    }
    pub(crate) fn owns(&self, id: ControlId) -> bool {
        self.pending.contains_key(&id)
    }
    /// Records a result; false if the id is not this round's.
    pub(crate) fn on_result(&mut self, id: ControlId, res: ControlResult) -> bool {
        let Some(pnn) = self.pending.remove(&id) else {
            return false;
        };
        match res {
            ControlResult::Ok(r) => {
                self.ok.insert(pnn, r);
            }
            ControlResult::Err => self.failed.push(pnn),
        }
        true
    }
    /// The first node (in send order) whose control failed.
    pub(crate) fn first_failed(&self) -> Option<Pnn> {
        self.order.iter().copied().find(|p| self.failed.contains(p))
    }
    pub(crate) fn any_failed(&self) -> bool {
        !self.failed.is_empty()
    }
    pub(crate) fn failed(&self) -> &[Pnn] {
        &self.failed
    }
    /// One round made of two.
    pub(crate) fn merge(mut self, b: Round) -> Round {
        self.order.extend(b.order);
        self.pending.extend(b.pending);
        self.ok.extend(b.ok);
        self.failed.extend(b.failed);
        self
    }
}

/// Allocates control ids and starts rounds.
#[derive(Debug, Clone)]
pub(crate) struct Sender {
    next: ControlId,
}

impl Sender {
    pub(crate) fn new(base: ControlId) -> Sender {
        Sender { next: base }
    }
    pub(crate) fn id(&mut self) -> ControlId {
        self.next += 1;
        self.next
    }
    /// Sends `ctl(pnn)` to every node of `dests`, as one round.
    pub(crate) fn round(
        &mut self,
        dests: &[Pnn],
        out: &mut Vec<Action>,
        mut ctl: impl FnMut(Pnn) -> Control,
    ) -> Round {
        let mut r = Round {
            order: dests.to_vec(),
            ..Round::default()
        };
        for &d in dests {
            let id = self.id();
            r.pending.insert(id, d);
            out.push(Action::Control {
                id,
                dest: d,
                control: ctl(d),
            });
        }
        r
    }
}

/// Why a run failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecoveryError {
    /// A control failed at a step (name of the step, failing node).
    Control {
        step: &'static str,
        pnn: Option<Pnn>,
    },
    /// Two nodes have the same database with different flags or names.
    Inconsistent { db_id: u32 },
    /// Some databases could not be recovered; `last` says where the last
    /// failed attempt stopped (database and step).
    Databases { failed: u32, last: String },
    /// A reply had the wrong type.
    BadReply { step: &'static str },
}

/// Where a run stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunStatus {
    Running,
    Done,
    Failed(RecoveryError),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Nodemaps,
    Caps,
    Dbmap,
    Active,
    StartRecovery,
    Vnnmap,
    DbName,
    DbAttach,
    DbFreeze,
    DbTxStart,
    DbSeqnum,
    DbPull,
    DbWipe,
    DbPush,
    DbCommit,
    DbThaw,
    BanCheck,
    Ban,
    Normal,
    EndRecovery,
    Finished,
}

#[derive(Debug, Clone)]
struct DbEntry {
    info: DbInfo,
    pnns: Vec<Pnn>,
}

/// One database recovery run (what one `ctdb_recovery_helper` process
/// does), started by the leader with a fresh generation.
#[derive(Debug, Clone)]
pub struct RecoveryRun {
    leader: Pnn,
    generation: u32,
    enable_bans: bool,
    ban_period: u32,
    tx: Sender,
    stage: Stage,
    round: Round,
    nlist: Vec<Pnn>,
    caps: BTreeMap<Pnn, u32>,
    credits: BTreeMap<Pnn, u32>,
    dbs: Vec<DbEntry>,
    db_index: usize,
    attempts: u32,
    failed_dbs: u32,
    db_name: String,
    recdb: RecDb,
    pull_index: usize,
    pull_from: Pnn,
    push_count: u32,
    ban_target: Option<Pnn>,
    vnnmap: VnnMap,
    status: RunStatus,
    last_db_failure: String,
}

/// Ids of a run's controls have this bit set.
pub const RUN_ID_BIT: ControlId = 1 << 63;

impl RecoveryRun {
    /// Starts a run: `nodemap` is the leader's node map; returns the first
    /// controls to send.
    pub fn start(
        leader: Pnn,
        generation: u32,
        nodemap: &[(Pnn, u32)],
        tun: &Tunables,
    ) -> (RecoveryRun, Vec<Action>) {
        let nlist: Vec<Pnn> = nodemap
            .iter()
            .filter(|(_, f)| f & NODE_FLAGS_DISCONNECTED == 0)
            .map(|(p, _)| *p)
            .collect();
        let mut run = RecoveryRun {
            leader,
            generation,
            enable_bans: tun.enable_bans,
            ban_period: tun.recovery_ban_period,
            tx: Sender::new(RUN_ID_BIT | (u64::from(generation) << 24)),
            stage: Stage::Nodemaps,
            round: Round::default(),
            nlist,
            caps: BTreeMap::new(),
            credits: BTreeMap::new(),
            dbs: Vec::new(),
            db_index: 0,
            attempts: 0,
            failed_dbs: 0,
            db_name: String::new(),
            recdb: RecDb::default(),
            pull_index: 0,
            pull_from: leader,
            push_count: 0,
            ban_target: None,
            vnnmap: VnnMap::default(),
            status: RunStatus::Running,
            last_db_failure: String::new(),
        };
        let mut out = Vec::new();
        let dests = run.nlist.clone();
        run.round = run.tx.round(&dests, &mut out, |_| Control::GetNodemap);
        run.settle(&mut out);
        (run, out)
    }

    pub fn generation(&self) -> u32 {
        self.generation
    }

    pub fn status(&self) -> &RunStatus {
        &self.status
    }

    /// The node list (active nodes taking part), once known.
    pub fn nodes(&self) -> &[Pnn] {
        &self.nlist
    }

    /// The vnn map this run installs (empty until step 3).
    pub fn vnnmap(&self) -> &VnnMap {
        &self.vnnmap
    }

    /// Whether a control id belongs to this run.
    pub fn owns(&self, id: ControlId) -> bool {
        self.round.owns(id)
    }

    /// Feeds a control result; returns the next controls.
    pub fn on_result(&mut self, id: ControlId, res: ControlResult) -> Vec<Action> {
        let mut out = Vec::new();
        if self.status != RunStatus::Running || !self.round.on_result(id, res) {
            return out;
        }
        self.settle(&mut out);
        out
    }

    fn fail(&mut self, e: RecoveryError) {
        self.stage = Stage::Finished;
        self.status = RunStatus::Failed(e);
    }

    fn credit(&mut self, pnn: Option<Pnn>) {
        if let Some(p) = pnn {
            *self.credits.entry(p).or_default() += 1;
        }
    }

    fn send_all(&mut self, out: &mut Vec<Action>, ctl: impl FnMut(Pnn) -> Control) {
        let dests = self.nlist.clone();
        self.round = self.tx.round(&dests, out, ctl);
    }

    fn send_to(&mut self, dests: &[Pnn], out: &mut Vec<Action>, ctl: impl FnMut(Pnn) -> Control) {
        self.round = self.tx.round(dests, out, ctl);
    }

    /// Advances through every stage whose round is complete.
    fn settle(&mut self, out: &mut Vec<Action>) {
        while self.status == RunStatus::Running && self.round.done() {
            self.step(out);
        }
    }

    fn step_failed(&mut self, step: &'static str) -> bool {
        if self.round.any_failed() {
            let pnn = self.round.first_failed();
            self.fail(RecoveryError::Control { step, pnn });
            return true;
        }
        false
    }

    fn cur_db(&self) -> &DbEntry {
        &self.dbs[self.db_index]
    }

    fn persistent(&self) -> bool {
        self.cur_db().info.flags & (DB_FLAGS_PERSISTENT | DB_FLAGS_REPLICATED) != 0
    }

    fn step(&mut self, out: &mut Vec<Action>) {
        let g = self.generation;
        match self.stage {
            Stage::Nodemaps => {
                if self.step_failed("GET_NODEMAP") {
                    return;
                }
                let mut keep = Vec::new();
                for &p in &self.nlist {
                    let flags = match self.round.ok.get(&p) {
                        Some(Reply::Nodemap(m)) => m
                            .iter()
                            .find(|(q, _)| *q == p)
                            .map_or(NODE_FLAGS_DISCONNECTED, |(_, f)| *f),
                        _ => {
                            self.fail(RecoveryError::BadReply {
                                step: "GET_NODEMAP",
                            });
                            return;
                        }
                    };
                    if flags & NODE_FLAGS_INACTIVE == 0 {
                        keep.push(p);
                    }
                }
                self.nlist = keep;
                self.stage = Stage::Caps;
                self.send_all(out, |_| Control::GetCapabilities);
            }
            Stage::Caps => {
                if self.step_failed("GET_CAPABILITIES") {
                    return;
                }
                for &p in &self.nlist {
                    match self.round.ok.get(&p) {
                        Some(Reply::Capabilities(c)) => {
                            self.caps.insert(p, *c);
                        }
                        _ => {
                            self.fail(RecoveryError::BadReply {
                                step: "GET_CAPABILITIES",
                            });
                            return;
                        }
                    }
                }
                self.stage = Stage::Dbmap;
                self.send_all(out, |_| Control::GetDbmap);
            }
            Stage::Dbmap => {
                if self.step_failed("GET_DBMAP") {
                    return;
                }
                let mut dbs: Vec<DbEntry> = Vec::new();
                for &p in &self.nlist {
                    let Some(Reply::Dbmap(list)) = self.round.ok.get(&p) else {
                        self.fail(RecoveryError::BadReply { step: "GET_DBMAP" });
                        return;
                    };
                    for d in list {
                        let flags = d.flags & !(DB_FLAGS_READONLY | DB_FLAGS_STICKY);
                        match dbs.iter_mut().find(|e| e.info.db_id == d.db_id) {
                            None => dbs.push(DbEntry {
                                info: DbInfo {
                                    db_id: d.db_id,
                                    flags,
                                },
                                pnns: vec![p],
                            }),
                            Some(e) if e.info.flags != flags => {
                                let db_id = d.db_id;
                                self.fail(RecoveryError::Inconsistent { db_id });
                                return;
                            }
                            Some(e) => {
                                if !e.pnns.contains(&p) {
                                    e.pnns.push(p);
                                }
                            }
                        }
                    }
                }
                self.dbs = dbs;
                self.stage = Stage::Active;
                self.send_all(out, |_| Control::SetRecmode(CTDB_RECOVERY_ACTIVE));
            }
            Stage::Active => {
                if self.step_failed("SET_RECMODE ACTIVE") {
                    return;
                }
                let mut map: Vec<Pnn> = self
                    .nlist
                    .iter()
                    .copied()
                    .filter(|p| self.caps.get(p).is_some_and(|c| c & CTDB_CAP_LMASTER != 0))
                    .collect();
                if map.is_empty() {
                    map.push(self.leader);
                }
                self.vnnmap = VnnMap { generation: g, map };
                self.stage = Stage::StartRecovery;
                self.send_all(out, |_| Control::StartRecovery);
            }
            Stage::StartRecovery => {
                if self.step_failed("START_RECOVERY") {
                    return;
                }
                self.stage = Stage::Vnnmap;
                let m = self.vnnmap.clone();
                self.send_all(out, |_| Control::SetVnnmap(m.clone()));
            }
            Stage::Vnnmap => {
                if self.step_failed("SETVNNMAP") {
                    return;
                }
                self.db_index = 0;
                self.attempts = 0;
                self.start_db(out);
            }
            Stage::DbName => {
                let pnns = self.cur_db().pnns.clone();
                if self.round.any_failed() {
                    self.db_attempt_failed(out);
                    return;
                }
                let mut name: Option<String> = None;
                let mut bad = None;
                for p in &pnns {
                    match self.round.ok.get(p) {
                        Some(Reply::Dbname(n)) => match &name {
                            None => name = Some(n.clone()),
                            Some(m) if m != n => {
                                bad = Some(*p);
                                break;
                            }
                            Some(_) => {}
                        },
                        _ => {
                            bad = Some(*p);
                            break;
                        }
                    }
                }
                if bad.is_some() {
                    self.credit(bad);
                    self.db_attempt_failed(out);
                    return;
                }
                self.db_name = name.unwrap_or_default();
                let missing: Vec<Pnn> = self
                    .nlist
                    .iter()
                    .copied()
                    .filter(|p| !pnns.contains(p))
                    .collect();
                self.stage = Stage::DbAttach;
                let name = self.db_name.clone();
                let flags = self.cur_db().info.flags;
                self.send_to(&missing, out, |_| Control::DbAttach {
                    name: name.clone(),
                    flags,
                });
            }
            Stage::DbAttach => {
                if self.round.any_failed() {
                    self.db_attempt_failed(out);
                    return;
                }
                let id = self.cur_db().info.db_id;
                self.stage = Stage::DbFreeze;
                self.send_all(out, |_| Control::DbFreeze(id));
            }
            Stage::DbFreeze => {
                if self.round.any_failed() {
                    let p = self.round.first_failed();
                    self.credit(p);
                    self.db_attempt_failed(out);
                    return;
                }
                let db_id = self.cur_db().info.db_id;
                self.stage = Stage::DbTxStart;
                self.send_all(out, |_| Control::DbTransactionStart { db_id, tid: g });
            }
            Stage::DbTxStart => {
                if self.round.any_failed() {
                    self.db_attempt_failed(out);
                    return;
                }
                self.recdb.clear();
                let db_id = self.cur_db().info.db_id;
                if self.persistent() {
                    self.stage = Stage::DbSeqnum;
                    self.send_all(out, |_| Control::GetDbSeqnum(db_id));
                } else {
                    self.pull_index = 0;
                    self.pull_next(out);
                }
            }
            Stage::DbSeqnum => {
                if self.round.any_failed() {
                    self.db_attempt_failed(out);
                    return;
                }
                let mut seqs = Vec::new();
                for &p in &self.nlist {
                    match self.round.ok.get(&p) {
                        Some(Reply::Seqnum(s)) => seqs.push((p, *s)),
                        _ => {
                            self.db_attempt_failed(out);
                            return;
                        }
                    }
                }
                let from = highest_seqnum(&seqs).unwrap_or(self.leader);
                self.pull_from = from;
                self.pull_index = usize::MAX;
                let db_id = self.cur_db().info.db_id;
                self.stage = Stage::DbPull;
                self.send_to(&[from], out, |_| Control::DbPull(db_id));
            }
            Stage::DbPull => {
                let from = self.pull_from;
                match self.round.ok.remove(&from) {
                    Some(Reply::Records(recs)) => {
                        recdb_add(&mut self.recdb, self.leader, recs);
                    }
                    _ => {
                        self.credit(Some(from));
                        self.db_attempt_failed(out);
                        return;
                    }
                }
                if self.pull_index != usize::MAX {
                    self.pull_index += 1;
                    if self.pull_index < self.nlist.len() {
                        self.pull_next(out);
                        return;
                    }
                }
                let db_id = self.cur_db().info.db_id;
                self.stage = Stage::DbWipe;
                self.send_all(out, |_| Control::DbWipe { db_id, tid: g });
            }
            Stage::DbWipe => {
                if self.round.any_failed() {
                    self.db_attempt_failed(out);
                    return;
                }
                let db_id = self.cur_db().info.db_id;
                let records: std::rc::Rc<[Record]> =
                    records_to_push(&self.recdb, self.persistent(), self.leader).into();
                self.push_count = records.len() as u32;
                self.stage = Stage::DbPush;
                self.send_all(out, |_| Control::DbPush {
                    db_id,
                    records: records.clone(),
                });
            }
            Stage::DbPush => {
                let n = self.push_count;
                let short = self
                    .nlist
                    .iter()
                    .any(|p| self.round.ok.get(p) != Some(&Reply::Count(n)));
                if self.round.any_failed() || short {
                    self.db_attempt_failed(out);
                    return;
                }
                self.recdb.clear();
                let db_id = self.cur_db().info.db_id;
                self.stage = Stage::DbCommit;
                self.send_all(out, |_| Control::DbTransactionCommit { db_id, tid: g });
            }
            Stage::DbCommit => {
                if self.round.any_failed() {
                    self.db_attempt_failed(out);
                    return;
                }
                let db_id = self.cur_db().info.db_id;
                self.stage = Stage::DbThaw;
                self.send_all(out, |_| Control::DbThaw(db_id));
            }
            Stage::DbThaw => {
                if self.round.any_failed() {
                    self.db_attempt_failed(out);
                    return;
                }
                self.next_db(out);
            }
            Stage::BanCheck => {
                let target = self.ban_target.unwrap_or(self.leader);
                let flags = match self.round.ok.get(&target) {
                    Some(Reply::Nodemap(m)) => m.iter().find(|(p, _)| *p == target).map(|x| x.1),
                    _ => {
                        let failed = self.failed_dbs;
                        self.fail(RecoveryError::Databases {
                            failed,
                            last: self.last_db_failure.clone(),
                        });
                        return;
                    }
                };
                if flags.is_some_and(|f| f & NODE_FLAGS_INACTIVE != 0) {
                    self.credits.insert(target, 0);
                    self.ban_check(out);
                    return;
                }
                self.stage = Stage::Ban;
                let b = BanState {
                    pnn: target,
                    time: self.ban_period,
                };
                self.send_to(&[target], out, |_| Control::SetBanState(b));
            }
            Stage::Ban => {
                let failed = self.failed_dbs;
                self.fail(RecoveryError::Databases {
                    failed,
                    last: self.last_db_failure.clone(),
                });
            }
            Stage::Normal => {
                if self.step_failed("SET_RECMODE NORMAL") {
                    return;
                }
                self.stage = Stage::EndRecovery;
                self.send_all(out, |_| Control::EndRecovery);
            }
            Stage::EndRecovery => {
                if self.step_failed("END_RECOVERY") {
                    return;
                }
                self.stage = Stage::Finished;
                self.status = RunStatus::Done;
            }
            Stage::Finished => {}
        }
    }

    fn pull_next(&mut self, out: &mut Vec<Action>) {
        let from = self.nlist[self.pull_index];
        self.pull_from = from;
        let db_id = self.cur_db().info.db_id;
        self.stage = Stage::DbPull;
        self.send_to(&[from], out, |_| Control::DbPull(db_id));
    }

    fn start_db(&mut self, out: &mut Vec<Action>) {
        if self.db_index >= self.dbs.len() {
            self.all_dbs_done(out);
            return;
        }
        let db_id = self.cur_db().info.db_id;
        let pnns = self.cur_db().pnns.clone();
        self.stage = Stage::DbName;
        self.send_to(&pnns, out, |_| Control::GetDbname(db_id));
    }

    fn db_attempt_failed(&mut self, out: &mut Vec<Action>) {
        self.last_db_failure = format!(
            "db 0x{:08x} at {:?} (failed: {:?})",
            self.cur_db().info.db_id,
            self.stage,
            self.round.failed()
        );
        self.attempts += 1;
        if self.attempts < NUM_RETRIES {
            self.start_db(out);
        } else {
            self.failed_dbs += 1;
            self.next_db(out);
        }
    }

    fn next_db(&mut self, out: &mut Vec<Action>) {
        self.db_index += 1;
        self.attempts = 0;
        self.start_db(out);
    }

    fn all_dbs_done(&mut self, out: &mut Vec<Action>) {
        if self.failed_dbs > 0 {
            if !self.enable_bans {
                let failed = self.failed_dbs;
                self.fail(RecoveryError::Databases {
                    failed,
                    last: self.last_db_failure.clone(),
                });
                return;
            }
            self.ban_check(out);
            return;
        }
        self.stage = Stage::Normal;
        self.send_all(out, |_| Control::SetRecmode(CTDB_RECOVERY_NORMAL));
    }

    fn ban_check(&mut self, out: &mut Vec<Action>) {
        let mut best: Option<(Pnn, u32)> = None;
        for &p in &self.nlist {
            let c = self.credits.get(&p).copied().unwrap_or(0);
            if c > best.map_or(0, |b| b.1) {
                best = Some((p, c));
            }
        }
        match best {
            Some((p, c)) if c >= NUM_RETRIES => {
                self.ban_target = Some(p);
                self.stage = Stage::BanCheck;
                self.send_to(&[p], out, |_| Control::GetNodemap);
            }
            _ => {
                let failed = self.failed_dbs;
                self.fail(RecoveryError::Databases {
                    failed,
                    last: self.last_db_failure.clone(),
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(key: &str, rsn: u64, dmaster: Pnn, data: &str) -> Record {
        Record {
            key: key.as_bytes().to_vec(),
            rsn,
            dmaster,
            flags: 0,
            data: data.as_bytes().to_vec(),
        }
    }

    #[test]
    fn volatile_merge_keeps_highest_rsn() {
        let pulls = vec![
            (0, vec![rec("a", 3, 0, "a0"), rec("b", 1, 0, "b0")]),
            (1, vec![rec("a", 5, 1, "a1"), rec("b", 1, 1, "b1")]),
            (2, vec![rec("a", 4, 2, "a2"), rec("c", 9, 2, "c2")]),
        ];
        let db = merge_volatile(&pulls, 0);
        assert_eq!(db[b"a".as_slice()].data, b"a1");
        assert_eq!(db[b"c".as_slice()].rsn, 9);
        // Tie on b: the kept copy (from node 0) has dmaster 0 = leader, so
        // node 1's copy replaces it.
        assert_eq!(db[b"b".as_slice()].data, b"b1");
        // With leader 2, node 0's copy (dmaster 0) is kept on the tie.
        let db = merge_volatile(&pulls, 2);
        assert_eq!(db[b"b".as_slice()].data, b"b0");
    }

    #[test]
    fn volatile_merge_is_max_rsn_for_random_inputs() {
        let mut rng = super::super::Rng::new(7);
        for _ in 0..200 {
            let mut pulls = Vec::new();
            for n in 0..4u32 {
                let mut recs = Vec::new();
                for k in 0..6 {
                    if rng.next_u64().is_multiple_of(3) {
                        continue;
                    }
                    let rsn = rng.next_u64() % 5;
                    let dm = (rng.next_u64() % 4) as u32;
                    recs.push(rec(&format!("k{k}"), rsn, dm, &format!("{n}")));
                }
                pulls.push((n, recs));
            }
            let leader = (rng.next_u64() % 4) as u32;
            let db = merge_volatile(&pulls, leader);
            for k in 0..6 {
                let key = format!("k{k}").into_bytes();
                let max = pulls
                    .iter()
                    .flat_map(|(_, r)| r.iter())
                    .filter(|r| r.key == key)
                    .map(|r| r.rsn)
                    .max();
                assert_eq!(db.get(&key).map(|r| r.rsn), max);
            }
        }
    }

    #[test]
    fn push_filter_and_dmaster() {
        let mut db = RecDb::default();
        recdb_add(&mut db, 0, [rec("a", 1, 2, "x"), rec("e", 4, 2, "")]);
        let v = records_to_push(&db, false, 3);
        assert_eq!(v.len(), 1, "empty record dropped");
        assert_eq!(v[0].dmaster, 3);
        assert_ne!(v[0].flags & CTDB_REC_FLAG_MIGRATED_WITH_DATA, 0);
        let p = records_to_push(&db, true, 3);
        assert_eq!((p[0].dmaster, p[0].flags), (2, 0));
    }

    #[test]
    fn persistent_rules() {
        assert_eq!(highest_seqnum(&[]), None);
        assert_eq!(highest_seqnum(&[(0, 4), (1, 9), (2, 9), (3, 1)]), Some(1));
        assert_eq!(highest_seqnum(&[(2, 0), (0, 0)]), Some(2));
        let pulls = vec![
            (0, vec![rec("a", 2, 0, "old"), rec("b", 7, 0, "b0")]),
            (1, vec![rec("a", 3, 1, "new"), rec("b", 7, 1, "b1")]),
        ];
        let db = merge_persistent_per_record(&pulls);
        assert_eq!(db[b"a".as_slice()].data, b"new");
        assert_eq!(db[b"b".as_slice()].data, b"b0", "first seen wins ties");
    }

    /// A node whose freeze keeps failing gets the ban credits and is banned.
    #[test]
    fn failing_freeze_bans_the_culprit() {
        let tun = Tunables::default();
        let nodemap = vec![(0, 0), (1, 0)];
        let (mut run, mut acts) = RecoveryRun::start(0, 9, &nodemap, &tun);
        let mut banned = None;
        let mut freezes = 0;
        while let Some(a) = acts.pop() {
            let Action::Control { id, dest, control } = a else {
                panic!()
            };
            let res = match control {
                Control::DbFreeze(_) if dest == 1 => {
                    freezes += 1;
                    ControlResult::Err
                }
                Control::SetBanState(b) => {
                    banned = Some(b);
                    ControlResult::Ok(Reply::Done)
                }
                Control::GetNodemap => ControlResult::Ok(Reply::Nodemap(nodemap.clone())),
                Control::GetCapabilities => {
                    ControlResult::Ok(Reply::Capabilities(super::super::CTDB_CAP_DEFAULT))
                }
                Control::GetDbmap => {
                    ControlResult::Ok(Reply::Dbmap(vec![DbInfo { db_id: 5, flags: 0 }]))
                }
                Control::GetDbname(_) => ControlResult::Ok(Reply::Dbname("x.tdb".into())),
                _ => ControlResult::Ok(Reply::Done),
            };
            acts.extend(run.on_result(id, res));
        }
        assert_eq!(freezes, NUM_RETRIES);
        assert_eq!(
            banned,
            Some(BanState {
                pnn: 1,
                time: tun.recovery_ban_period
            })
        );
        assert!(
            matches!(
                run.status(),
                RunStatus::Failed(RecoveryError::Databases { failed: 1, .. })
            ),
            "{:?}",
            run.status()
        );
    }

    /// Drives a run against perfect nodes and checks the control sequence.
    #[test]
    fn run_sequence_on_healthy_nodes() {
        let tun = Tunables::default();
        let nodemap = vec![(0, 0), (1, 0), (2, NODE_FLAGS_DISCONNECTED)];
        let (mut run, mut acts) = RecoveryRun::start(0, 77, &nodemap, &tun);
        let mut seen = Vec::new();
        let mut guard = 0;
        while let Some(a) = acts.pop() {
            guard += 1;
            assert!(guard < 1000);
            let Action::Control { id, dest, control } = a else {
                panic!("unexpected {a:?}")
            };
            seen.push(
                format!("{control:?}")
                    .split(['(', ' ', '{'])
                    .next()
                    .unwrap()
                    .to_string(),
            );
            let reply = match control {
                Control::GetNodemap => Reply::Nodemap(nodemap.clone()),
                Control::GetCapabilities => Reply::Capabilities(super::super::CTDB_CAP_DEFAULT),
                Control::GetDbmap => Reply::Dbmap(vec![DbInfo { db_id: 5, flags: 0 }]),
                Control::GetDbname(_) => Reply::Dbname("x.tdb".into()),
                Control::DbPull(_) => {
                    Reply::Records(vec![rec("k", u64::from(dest) + 1, dest, "v")])
                }
                Control::DbPush { records, .. } => {
                    assert_eq!(records.len(), 1);
                    assert_eq!(records[0].rsn, 2);
                    Reply::Count(1)
                }
                Control::SetVnnmap(m) => {
                    assert_eq!(
                        m,
                        VnnMap {
                            generation: 77,
                            map: vec![0, 1]
                        }
                    );
                    Reply::Done
                }
                _ => Reply::Done,
            };
            acts.extend(run.on_result(id, ControlResult::Ok(reply)));
        }
        assert_eq!(run.status(), &RunStatus::Done);
        for step in [
            "GetNodemap",
            "SetRecmode",
            "StartRecovery",
            "DbFreeze",
            "DbPull",
            "DbTransactionCommit",
            "EndRecovery",
        ] {
            assert!(
                seen.iter().any(|s| s == step),
                "{step} missing from {seen:?}"
            );
        }
    }
}
