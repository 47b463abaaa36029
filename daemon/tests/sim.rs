//! Deterministic simulation of a ctdbd cluster's control logic.
//!
//! N nodes (3–5) run the real state machines of `ctdb_daemon::cluster`
//! (membership and keepalives, banning, election, the recovery daemon and
//! its recovery runs, the node-side controls) in one process, against a
//! simulated clock, a simulated network and a simulated cluster lock. Only
//! the database storage is a model here (the engine owns the real one):
//! an in-memory record map per database with freeze, recovery transaction
//! (start / wipe / push / commit), pull and sequence numbers.
//!
//! Everything random comes from one seed: message delays, link resets
//! (a lost packet breaks its TCP connection, as it would for ctdbd), node
//! crashes and restarts, network partitions, the cluster mutex helper
//! losing its lock, whether a cluster lock is configured at all, node
//! stop/continue, and a client workload writing records while the cluster
//! is in NORMAL mode (volatile records migrate to the writer with an RSN
//! bump; persistent writes are transactions on the active nodes, or
//! sometimes on the writer alone so nodes' sequence numbers diverge).
//!
//! # Invariants, checked after every step
//!
//! * the simulated lock has at most one holder; a recovery daemon that
//!   believes it holds the lock is the holder;
//! * with a lock, a recovery run only starts on the lock holder, at most
//!   one runs at any time, and a vnn map (new generation) is only sent by
//!   the lock holder; with or without a lock every generation is
//!   installed by one leader only;
//! * a node's copy of a volatile record never goes back to a lower RSN
//!   (recovery keeps the latest copy), except when the node crashes and
//!   loses its volatile databases;
//! * a node's persistent sequence number never decreases (highest
//!   sequence number wins), across crashes too.
//!
//! # After the chaos (everything healed, restarted, continued), once stable
//!
//! * every node agrees on the leader (with a lock, the holder), the
//!   generation (valid) and the vnn map, and is in recovery mode NORMAL;
//! * the vnn map holds exactly the active nodes (no banned or stopped
//!   node);
//! * every node has the same volatile records, each at the highest RSN
//!   that survived on a live node, and the same persistent database at the
//!   highest sequence number.
//!
//! `CTDB_SIM_SEED=<n>` runs one seed with a trace of every event;
//! `CTDB_SIM_SEEDS=<count>` changes the number of seeds (default 500) and
//! `CTDB_SIM_SEED_BASE=<n>` the first one (default 0); `CTDB_SIM_DUMP=1`
//! adds the full machine states to a failure report.
//! A failure prints its seed and the command to replay it.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use ctdb_daemon::cluster::membership::Membership;
use ctdb_daemon::cluster::node::{Effect, Handled, Node};
use ctdb_daemon::cluster::recoverd::Recoverd;
use ctdb_daemon::cluster::{
    Action, Control, ControlId, ControlResult, DbInfo, Dest, LockStatus, Message, Millis, Pnn,
    Record, Reply, Tunables, CTDB_CAP_DEFAULT, CTDB_RECOVERY_NORMAL, CTDB_UNKNOWN_PNN,
    INVALID_GENERATION, NODE_FLAGS_INACTIVE,
};

const DB_VOL: u32 = 0x1000_0001;
const DB_PERS: u32 = 0x2000_0002;
const FLAG_PERSISTENT: u8 = 0x01;
const SEQ_KEY: &[u8] = b"__db_sequence_number__";
const KEYS: usize = 6;

/// splitmix64.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn chance(&mut self, per_mille: u64) -> bool {
        self.below(1000) < per_mille
    }
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo + 1)
    }
}

#[derive(Clone)]
struct SimDb {
    name: String,
    flags: u8,
    live: BTreeMap<Vec<u8>, Record>,
    frozen: bool,
    tx: Option<(u32, BTreeMap<Vec<u8>, Record>)>,
    generation: u32,
}

impl SimDb {
    fn new(db_id: u32) -> SimDb {
        let (name, flags) = if db_id == DB_VOL {
            ("vol.tdb", 0)
        } else {
            ("pers.tdb", FLAG_PERSISTENT)
        };
        SimDb {
            name: name.into(),
            flags,
            live: BTreeMap::new(),
            frozen: false,
            tx: None,
            generation: INVALID_GENERATION,
        }
    }
    fn seqnum(&self) -> u64 {
        self.live.get(SEQ_KEY).map_or(0, |r| {
            let mut b = [0u8; 8];
            let n = r.data.len().min(8);
            b[..n].copy_from_slice(&r.data[..n]);
            u64::from_le_bytes(b)
        })
    }
}

fn seq_record(seq: u64) -> Record {
    Record {
        key: SEQ_KEY.to_vec(),
        rsn: seq,
        dmaster: 0,
        flags: 0,
        data: seq.to_le_bytes().to_vec(),
    }
}

struct SimNode {
    alive: bool,
    inc: u32,
    node: Node,
    recd: Recoverd,
    dbs: BTreeMap<u32, SimDb>,
    outstanding: BTreeMap<ControlId, Pnn>,
    deferred: BTreeMap<u64, (Pnn, u32, ControlId)>,
    /// Highest RSN seen per volatile key (no-regression check).
    seen_rsn: BTreeMap<Vec<u8>, u64>,
    /// Highest persistent seqnum seen (never reset).
    seen_seq: u64,
    running: Option<u32>,
    stopped: bool,
    /// Fails DB_FREEZE (a node with a stuck lock helper).
    faulty: bool,
}

#[derive(Clone, Debug)]
enum Pkt {
    Req(ControlId, Control),
    Rep(ControlId, ControlResult),
    Msg(Message),
    Keepalive,
}

#[derive(Clone, Debug)]
enum Ev {
    Packet {
        from: Pnn,
        from_inc: u32,
        to: Pnn,
        to_inc: u32,
        pkt: Pkt,
    },
    Result {
        p: Pnn,
        inc: u32,
        id: ControlId,
        res: ControlResult,
    },
    Timeout {
        p: Pnn,
        inc: u32,
        id: ControlId,
    },
    LockReply {
        p: Pnn,
        inc: u32,
        epoch: u64,
    },
    LockTest {
        p: Pnn,
        inc: u32,
    },
    Transport,
    Workload,
    Chaos,
    Restart(Pnn),
    Heal,
    /// `ctdb recover`: recovery mode ACTIVE on a node, so the leader
    /// recovers (spreading every latest record copy to all nodes).
    ForceRecovery,
}

struct Config {
    n: usize,
    lock: bool,
    chaos_until: Millis,
    end: Millis,
    loss_per_mille: u64,
}

struct Sim {
    seed: u64,
    rng: Rng,
    cfg: Config,
    tun: Tunables,
    now: Millis,
    seq: u64,
    queue: BTreeMap<(Millis, u64), Ev>,
    nodes: Vec<SimNode>,
    holder: Option<Pnn>,
    lock_epoch: Vec<u64>,
    cut: BTreeSet<(Pnn, Pnn)>,
    gen_owner: BTreeMap<u32, Pnn>,
    violation: Option<String>,
    trace: bool,
    log: Vec<String>,
    steps: u64,
    stats: Stats,
}

#[derive(Default, Clone, Copy)]
struct Stats {
    steps: u64,
    packets: u64,
    recoveries: u64,
    failed_recoveries: u64,
    crashes: u64,
    partitions: u64,
    resets: u64,
    writes: u64,
    bans: u64,
    elections: u64,
    sim_ms: u64,
}

type Check = Result<(), String>;

impl Sim {
    fn new(seed: u64, trace: bool) -> Sim {
        let mut rng = Rng(seed);
        let n = rng.range(3, 5) as usize;
        let lock = rng.chance(700);
        let tun = Tunables {
            recover_interval: 1,
            recover_timeout: 5,
            election_timeout: 3,
            rerecovery_timeout: 3,
            recovery_ban_period: 8,
            enable_bans: true,
            recovery_grace_period: 120,
            keepalive_interval: 1,
            keepalive_limit: 3,
            leader_timeout: 5,
            fast_start: false,
        };
        let cfg = Config {
            n,
            lock,
            chaos_until: 40_000,
            end: 40_000 + 50_000,
            loss_per_mille: rng.range(0, 4),
        };
        let mut sim = Sim {
            seed,
            rng,
            cfg,
            tun,
            now: 0,
            seq: 0,
            queue: BTreeMap::new(),
            nodes: Vec::new(),
            holder: None,
            lock_epoch: vec![0; n],
            cut: BTreeSet::new(),
            gen_owner: BTreeMap::new(),
            violation: None,
            trace,
            log: Vec::new(),
            steps: 0,
            stats: Stats::default(),
        };
        for p in 0..n as Pnn {
            let start = sim.rng.below(300);
            let node = sim.fresh_node(p, start);
            sim.nodes.push(node);
        }
        sim.push(500, Ev::Transport);
        sim.push(1000, Ev::Workload);
        sim.push(3000, Ev::Chaos);
        sim.push(sim.cfg.chaos_until, Ev::Heal);
        sim.push(sim.cfg.chaos_until + 20_000, Ev::ForceRecovery);
        sim
    }

    fn fresh_node(&mut self, p: Pnn, now: Millis) -> SimNode {
        let addrs = (0..self.cfg.n)
            .map(|i| Some(format!("127.0.0.{}", i + 1)))
            .collect();
        let m = Membership::new(p, addrs, CTDB_CAP_DEFAULT, now, &self.tun);
        let mut node = Node::new(m, self.cfg.lock, self.tun.clone());
        node.membership.set_own_health(true);
        let recd = Recoverd::new(p, self.tun.clone(), self.cfg.lock, now, self.seed);
        let mut dbs = BTreeMap::new();
        dbs.insert(DB_VOL, SimDb::new(DB_VOL));
        // The persistent database is only known to some nodes at first.
        if p == 0 || self.rng.chance(500) {
            dbs.insert(DB_PERS, SimDb::new(DB_PERS));
        }
        SimNode {
            alive: true,
            inc: 0,
            node,
            recd,
            dbs,
            outstanding: BTreeMap::new(),
            deferred: BTreeMap::new(),
            seen_rsn: BTreeMap::new(),
            seen_seq: 0,
            running: None,
            stopped: false,
            faulty: false,
        }
    }

    fn note(&mut self, s: impl FnOnce() -> String) {
        if self.trace {
            eprintln!("[{:>7}] {}", self.now, s());
        }
    }

    fn push(&mut self, at: Millis, ev: Ev) {
        self.seq += 1;
        self.queue.insert((at, self.seq), ev);
    }

    fn linked(&self, a: Pnn, b: Pnn) -> bool {
        a == b || !self.cut.contains(&(a.min(b), a.max(b)))
    }

    fn chaos(&self) -> bool {
        self.now < self.cfg.chaos_until
    }

    fn send(&mut self, from: Pnn, to: Pnn, pkt: Pkt) {
        self.stats.packets += 1;
        if !self.nodes[to as usize].alive || !self.linked(from, to) {
            return;
        }
        if from != to && self.chaos() && self.rng.chance(self.cfg.loss_per_mille) {
            // A lost packet: the TCP connection breaks.
            self.stats.resets += 1;
            self.note(|| format!("link reset {from}<->{to}"));
            self.node_dead(from, to);
            self.node_dead(to, from);
            return;
        }
        let delay = if from == to { 0 } else { self.rng.range(1, 30) };
        let ev = Ev::Packet {
            from,
            from_inc: self.nodes[from as usize].inc,
            to,
            to_inc: self.nodes[to as usize].inc,
            pkt,
        };
        self.push(self.now + delay, ev);
    }

    /// `p` declares `q` dead: fail p's controls outstanding to q.
    fn node_dead(&mut self, p: Pnn, q: Pnn) {
        let n = &mut self.nodes[p as usize];
        if !n.alive || !n.node.membership.node_dead(q) {
            return;
        }
        self.fail_outstanding(p, q);
    }

    fn fail_outstanding(&mut self, p: Pnn, q: Pnn) {
        let n = &self.nodes[p as usize];
        let ids: Vec<ControlId> = n
            .outstanding
            .iter()
            .filter(|(_, d)| **d == q)
            .map(|(i, _)| *i)
            .collect();
        let inc = n.inc;
        for id in ids {
            self.push(
                self.now,
                Ev::Result {
                    p,
                    inc,
                    id,
                    res: ControlResult::Err,
                },
            );
        }
    }

    fn apply(&mut self, p: Pnn, acts: Vec<Action>) {
        for a in acts {
            self.apply_one(p, a);
        }
    }

    fn apply_one(&mut self, p: Pnn, a: Action) {
        let inc = self.nodes[p as usize].inc;
        match a {
            Action::Control { id, dest, control } => {
                if let Control::SetVnnmap(m) = &control {
                    if self.cfg.lock && self.holder != Some(p) && self.violation.is_none() {
                        self.violation = Some(format!(
                            "node {p} sends generation {:#x} without holding the lock ({:?})",
                            m.generation, self.holder
                        ));
                    }
                }
                let connected = self.nodes[p as usize].node.membership.is_connected(dest);
                if !connected {
                    self.push(
                        self.now,
                        Ev::Result {
                            p,
                            inc,
                            id,
                            res: ControlResult::Err,
                        },
                    );
                    return;
                }
                self.nodes[p as usize].outstanding.insert(id, dest);
                let t = self.now + u64::from(self.tun.recover_timeout) * 1000;
                self.push(t, Ev::Timeout { p, inc, id });
                self.send(p, dest, Pkt::Req(id, control));
            }
            Action::Message { dest, msg } => {
                let targets: Vec<Pnn> = match dest {
                    Dest::Node(x) => vec![x],
                    Dest::Connected | Dest::All => {
                        self.nodes[p as usize].node.membership.connected()
                    }
                };
                for t in targets {
                    self.send(p, t, Pkt::Msg(msg.clone()));
                }
            }
            Action::TakeClusterLock => {
                let epoch = self.lock_epoch[p as usize];
                let d = self.rng.range(5, 200);
                self.push(self.now + d, Ev::LockReply { p, inc, epoch });
            }
            Action::ReleaseClusterLock => {
                self.lock_epoch[p as usize] += 1;
                if self.holder == Some(p) {
                    self.note(|| format!("lock released by {p}"));
                    self.holder = None;
                }
            }
            Action::TestClusterLock => {
                let d = self.rng.range(5, 100);
                self.push(self.now + d, Ev::LockTest { p, inc });
            }
            Action::SendKeepalive(q) => self.send(p, q, Pkt::Keepalive),
            Action::RestartTransport(q) => self.fail_outstanding(p, q),
            Action::ReplyDeferred { token, ok } => {
                if let Some((to, to_inc, id)) = self.nodes[p as usize].deferred.remove(&token) {
                    if self.nodes[to as usize].inc == to_inc {
                        let res = if ok {
                            ControlResult::Ok(Reply::Done)
                        } else {
                            ControlResult::Err
                        };
                        self.send(p, to, Pkt::Rep(id, res));
                    }
                }
            }
            Action::TakeoverRun => {}
        }
    }

    fn apply_effects(&mut self, p: Pnn, effects: Vec<Effect>) {
        let n = &mut self.nodes[p as usize];
        for e in effects {
            match e {
                Effect::FreezeAll => n.dbs.values_mut().for_each(|d| d.frozen = true),
                Effect::ThawAll => n.dbs.values_mut().for_each(|d| {
                    d.frozen = false;
                    d.tx = None;
                }),
                Effect::BecomeInactive => n.dbs.values_mut().for_each(|d| {
                    d.frozen = true;
                    d.generation = INVALID_GENERATION;
                }),
                Effect::RunEvent(_) => {}
            }
        }
    }

    fn gens_match(&self, p: Pnn) -> bool {
        let n = &self.nodes[p as usize];
        let g = n.node.vnnmap().generation;
        n.dbs.values().all(|d| d.generation == g)
    }

    /// Database controls (the engine's part, modelled).
    fn db_control(&mut self, p: Pnn, ctl: &Control) -> Result<ControlResult, String> {
        let n = &mut self.nodes[p as usize];
        let err = Ok(ControlResult::Err);
        let ok = |r| Ok(ControlResult::Ok(r));
        match ctl {
            Control::GetDbmap => ok(Reply::Dbmap(
                n.dbs
                    .iter()
                    .map(|(id, d)| DbInfo {
                        db_id: *id,
                        flags: d.flags,
                    })
                    .collect(),
            )),
            Control::GetDbname(id) => match n.dbs.get(id) {
                Some(d) => ok(Reply::Dbname(d.name.clone())),
                None => err,
            },
            Control::DbAttach { name, flags } => {
                let id = if name == "vol.tdb" { DB_VOL } else { DB_PERS };
                let d = n.dbs.entry(id).or_insert_with(|| SimDb::new(id));
                if d.flags != *flags {
                    return err;
                }
                ok(Reply::Done)
            }
            Control::DbFreeze(id) => match n.dbs.get_mut(id) {
                Some(d) if !n.faulty => {
                    d.frozen = true;
                    ok(Reply::Done)
                }
                _ => err,
            },
            Control::DbThaw(id) => match n.dbs.get_mut(id) {
                Some(d) => {
                    d.frozen = false;
                    d.tx = None;
                    ok(Reply::Done)
                }
                None => err,
            },
            Control::DbTransactionStart { db_id, tid } => match n.dbs.get_mut(db_id) {
                Some(d) if d.frozen => {
                    d.tx = Some((*tid, d.live.clone()));
                    ok(Reply::Done)
                }
                _ => err,
            },
            Control::GetDbSeqnum(id) => match n.dbs.get(id) {
                Some(d) => ok(Reply::Seqnum(d.seqnum())),
                None => err,
            },
            Control::DbPull(id) => match n.dbs.get(id) {
                Some(d) if d.frozen => ok(Reply::Records(d.live.values().cloned().collect())),
                _ => err,
            },
            Control::DbWipe { db_id, tid } => match n.dbs.get_mut(db_id) {
                Some(SimDb {
                    tx: Some((t, staged)),
                    frozen: true,
                    ..
                }) if t == tid => {
                    staged.clear();
                    ok(Reply::Done)
                }
                _ => err,
            },
            Control::DbPush { db_id, records } => match n.dbs.get_mut(db_id) {
                Some(SimDb {
                    tx: Some((_, staged)),
                    frozen: true,
                    ..
                }) => {
                    for r in records.iter() {
                        staged.insert(r.key.clone(), r.clone());
                    }
                    ok(Reply::Count(records.len() as u32))
                }
                _ => err,
            },
            Control::DbTransactionCommit { db_id, tid } => {
                let Some(d) = n.dbs.get_mut(db_id) else {
                    return err;
                };
                match d.tx.take() {
                    Some((t, staged)) if t == *tid && d.frozen => {
                        if d.flags & FLAG_PERSISTENT == 0 {
                            for (k, old) in &d.live {
                                let new = staged.get(k).map(|r| r.rsn);
                                if new.is_none_or(|r| r < old.rsn) && !old.data.is_empty() {
                                    return Err(format!(
                                        "node {p}: recovery commit (generation {tid:#x}) \
                                         lowers record {:?} from rsn {} to {:?}",
                                        String::from_utf8_lossy(k),
                                        old.rsn,
                                        new
                                    ));
                                }
                            }
                        }
                        d.live = staged;
                        d.generation = *tid;
                        ok(Reply::Done)
                    }
                    other => {
                        d.tx = other;
                        err
                    }
                }
            }
            _ => err,
        }
    }

    fn deliver(&mut self, from: Pnn, from_inc: u32, to: Pnn, to_inc: u32, pkt: Pkt) -> Check {
        if !self.nodes[to as usize].alive
            || self.nodes[to as usize].inc != to_inc
            || self.nodes[from as usize].inc != from_inc
            || !self.linked(from, to)
        {
            return Ok(());
        }
        self.nodes[to as usize].node.membership.on_rx(from);
        match pkt {
            Pkt::Keepalive => {}
            Pkt::Msg(m) => {
                let view = self.nodes[to as usize].node.view();
                let now = self.now;
                let acts = self.nodes[to as usize].recd.on_message(now, &view, &m);
                self.apply(to, acts);
            }
            Pkt::Rep(id, res) => {
                if self.nodes[to as usize].outstanding.remove(&id).is_some() {
                    self.result(to, id, res);
                }
            }
            Pkt::Req(id, ctl) => {
                if let Control::SetVnnmap(m) = &ctl {
                    let owner = *self.gen_owner.entry(m.generation).or_insert(from);
                    if owner != from {
                        return Err(format!(
                            "generation {:#x} installed by both {owner} and {from}",
                            m.generation
                        ));
                    }
                }
                if let Control::SetBanState(_) = &ctl {
                    self.stats.bans += 1;
                }
                let now = self.now;
                let gm = self.gens_match(to);
                let o = self.nodes[to as usize].node.handle_control(now, &ctl, gm);
                self.apply_effects(to, o.effects);
                let res = match o.handled {
                    Handled::Reply(r) => Some(r),
                    Handled::Deferred(tok) => {
                        self.nodes[to as usize]
                            .deferred
                            .insert(tok, (from, from_inc, id));
                        None
                    }
                    Handled::NotMine => Some(self.db_control(to, &ctl)?),
                };
                self.apply(to, o.actions);
                if let Some(r) = res {
                    self.send(to, from, Pkt::Rep(id, r));
                }
            }
        }
        Ok(())
    }

    fn result(&mut self, p: Pnn, id: ControlId, res: ControlResult) {
        let view = self.nodes[p as usize].node.view();
        let now = self.now;
        let acts = self.nodes[p as usize]
            .recd
            .on_control_result(now, &view, id, res);
        self.apply(p, acts);
    }

    fn crash(&mut self, c: Pnn) {
        self.stats.crashes += 1;
        self.note(|| format!("crash {c}"));
        let n = &mut self.nodes[c as usize];
        n.alive = false;
        n.inc += 1;
        if self.holder == Some(c) {
            self.holder = None;
        }
        self.lock_epoch[c as usize] += 1;
        for q in 0..self.cfg.n as Pnn {
            if q != c && self.nodes[q as usize].alive && self.rng.chance(500) {
                self.node_dead(q, c);
            }
        }
        let d = self.rng.range(1000, 8000);
        self.push(self.now + d, Ev::Restart(c));
    }

    fn restart(&mut self, c: Pnn) {
        if self.nodes[c as usize].alive {
            return;
        }
        self.note(|| format!("restart {c}"));
        let mut fresh = self.fresh_node(c, self.now);
        let old = &self.nodes[c as usize];
        fresh.inc = old.inc + 1;
        fresh.seen_seq = old.seen_seq;
        // Persistent databases survive a restart; volatile ones do not.
        if let Some(pd) = old.dbs.get(&DB_PERS) {
            let mut pd = pd.clone();
            pd.frozen = false;
            pd.tx = None;
            pd.generation = INVALID_GENERATION;
            fresh.dbs.insert(DB_PERS, pd);
        }
        self.nodes[c as usize] = fresh;
    }

    fn chaos_event(&mut self) {
        let n = self.cfg.n as Pnn;
        let roll = self.rng.below(100);
        if roll < 30 {
            let alive = self.nodes.iter().filter(|x| x.alive).count();
            let c = self.rng.below(u64::from(n)) as Pnn;
            if self.nodes[c as usize].alive && alive > 1 {
                self.crash(c);
            }
        } else if roll < 55 {
            self.stats.partitions += 1;
            let victim = self.rng.below(u64::from(n)) as Pnn;
            let split = self.rng.chance(500);
            for q in 0..n {
                let side = if split { q % 2 } else { u32::from(q == victim) };
                let vside = if split { victim % 2 } else { 1 };
                if q != victim && side != vside {
                    self.cut.insert((victim.min(q), victim.max(q)));
                }
                if split {
                    for r in 0..n {
                        if q % 2 != r % 2 {
                            self.cut.insert((q.min(r), q.max(r)));
                        }
                    }
                }
            }
            let cut = format!("{:?}", self.cut);
            self.note(|| format!("partition {cut}"));
            let d = self.rng.range(2000, 15_000);
            self.push(self.now + d, Ev::Heal);
        } else if roll < 65 {
            if let Some(h) = self.holder {
                // The mutex helper dies (e.g. lost the lock file).
                self.note(|| format!("lock helper of {h} dies"));
                self.holder = None;
                self.lock_epoch[h as usize] += 1;
                let view = self.nodes[h as usize].node.view();
                let now = self.now;
                let acts = self.nodes[h as usize].recd.on_lock_lost(now, &view);
                self.apply(h, acts);
            }
        } else if roll < 75 {
            let s = self.rng.below(u64::from(n)) as Pnn;
            let node = &mut self.nodes[s as usize];
            if node.alive {
                if node.stopped {
                    node.node.continue_node();
                    node.stopped = false;
                    self.note(|| format!("continue {s}"));
                } else {
                    let e = node.node.stop();
                    node.stopped = true;
                    self.apply_effects(s, e);
                    self.note(|| format!("stop {s}"));
                }
            }
        } else if roll < 85 {
            let f = self.rng.below(u64::from(n)) as Pnn;
            let node = &mut self.nodes[f as usize];
            node.faulty = !node.faulty;
            let on = node.faulty;
            self.note(|| format!("node {f} faulty: {on}"));
        } else if roll < 90 {
            // Someone asks the leader to give a node banning credits.
            let target = self.rng.below(u64::from(n)) as Pnn;
            let from = self.rng.below(u64::from(n)) as Pnn;
            if self.nodes[from as usize].alive {
                self.apply_one(
                    from,
                    Action::Message {
                        dest: Dest::Connected,
                        msg: Message::Banning(target),
                    },
                );
            }
        }
        let d = self.rng.range(1000, 6000);
        if self.now + d < self.cfg.chaos_until {
            self.push(self.now + d, Ev::Chaos);
        }
    }

    /// A client write, if the cluster around the writer lets it happen.
    fn workload(&mut self) {
        let d = self.rng.range(50, 400);
        if self.now + d < self.cfg.chaos_until {
            self.push(self.now + d, Ev::Workload);
        }
        let n = self.cfg.n as Pnn;
        let w = self.rng.below(u64::from(n)) as Pnn;
        let wn = &self.nodes[w as usize];
        let vnn = wn.node.vnnmap().clone();
        if !wn.alive
            || wn.node.recmode() != CTDB_RECOVERY_NORMAL
            || vnn.generation == INVALID_GENERATION
        {
            return;
        }
        // Every node of the writer's vnn map must be reachable, in the same
        // generation, NORMAL and thawed (otherwise the call would wait).
        for &q in &vnn.map {
            let qn = &self.nodes[q as usize];
            if !qn.alive
                || !self.linked(w, q)
                || qn.node.vnnmap().generation != vnn.generation
                || qn.node.recmode() != CTDB_RECOVERY_NORMAL
                || qn
                    .dbs
                    .values()
                    .any(|d| d.frozen || d.generation != vnn.generation)
            {
                return;
            }
        }
        if !vnn.map.contains(&w) {
            return;
        }
        self.stats.writes += 1;
        let val = self.rng.next().to_le_bytes().to_vec();
        if self.rng.chance(700) {
            let key = format!("k{}", self.rng.below(KEYS as u64)).into_bytes();
            let mut best = 0;
            for &q in &vnn.map {
                if let Some(d) = self.nodes[q as usize].dbs.get(&DB_VOL) {
                    if let Some(r) = d.live.get(&key) {
                        best = best.max(r.rsn);
                    }
                }
            }
            let rec = Record {
                key: key.clone(),
                rsn: best + 1,
                dmaster: w,
                flags: 0,
                data: val,
            };
            for &q in &vnn.map {
                if let Some(d) = self.nodes[q as usize].dbs.get_mut(&DB_VOL) {
                    if q == w {
                        d.live.insert(key.clone(), rec.clone());
                    } else if let Some(r) = d.live.get_mut(&key) {
                        r.dmaster = w;
                    }
                }
            }
        } else {
            // Persistent transaction: all nodes of the vnn map that have the
            // database, or the writer alone (a node that got ahead).
            let alone = self.rng.chance(300);
            let parts: Vec<Pnn> = vnn
                .map
                .iter()
                .copied()
                .filter(|&q| {
                    (!alone || q == w) && self.nodes[q as usize].dbs.contains_key(&DB_PERS)
                })
                .collect();
            if parts.is_empty() {
                return;
            }
            let seq = parts
                .iter()
                .map(|&q| self.nodes[q as usize].dbs[&DB_PERS].seqnum())
                .max()
                .unwrap_or(0)
                + 1;
            let key = format!("p{}", self.rng.below(KEYS as u64)).into_bytes();
            for q in parts {
                let d = self.nodes[q as usize].dbs.get_mut(&DB_PERS).unwrap();
                d.live.insert(
                    key.clone(),
                    Record {
                        key: key.clone(),
                        rsn: seq,
                        dmaster: q,
                        flags: 0,
                        data: val.clone(),
                    },
                );
                d.live.insert(SEQ_KEY.to_vec(), seq_record(seq));
            }
        }
    }

    fn transport(&mut self) {
        self.push(self.now + 500, Ev::Transport);
        let n = self.cfg.n as Pnn;
        for p in 0..n {
            for q in 0..n {
                if p != q
                    && self.nodes[p as usize].alive
                    && self.nodes[q as usize].alive
                    && self.linked(p, q)
                {
                    self.nodes[p as usize]
                        .node
                        .membership
                        .on_transport_connected(q);
                }
            }
        }
    }

    fn wake(&mut self, p: Pnn) {
        let now = self.now;
        let frozen = self.nodes[p as usize].dbs.values().all(|d| d.frozen);
        let (acts, effects) = self.nodes[p as usize].node.tick(now, frozen);
        self.apply_effects(p, effects);
        for a in &acts {
            if let Action::RestartTransport(q) = a {
                self.note(|| format!("{p} declares {q} dead"));
            }
        }
        self.apply(p, acts);
        let view = self.nodes[p as usize].node.view();
        let acts = self.nodes[p as usize].recd.tick(now, &view);
        self.apply(p, acts);
    }

    fn node_wakeup(&self, p: usize) -> Millis {
        let n = &self.nodes[p];
        n.node.next_wakeup().min(n.recd.next_wakeup())
    }

    fn step(&mut self) -> Result<bool, String> {
        let mut best: Option<(Millis, usize)> = None;
        for (i, n) in self.nodes.iter().enumerate() {
            if n.alive {
                let t = self.node_wakeup(i);
                if best.is_none_or(|b| t < b.0) {
                    best = Some((t, i));
                }
            }
        }
        let qt = self.queue.first_key_value().map(|(k, _)| k.0);
        let t = match (best, qt) {
            (Some((wt, _)), Some(q)) => wt.min(q),
            (Some((wt, _)), None) => wt,
            (None, Some(q)) => q,
            (None, None) => return Ok(false),
        };
        if t > self.cfg.end {
            return Ok(false);
        }
        self.now = self.now.max(t);
        self.steps += 1;
        if let Some((wt, p)) = best {
            if wt <= qt.unwrap_or(Millis::MAX) {
                self.wake(p as Pnn);
                return Ok(true);
            }
        }
        let (_, ev) = self.queue.pop_first().expect("queue head");
        if self.trace {
            let s = format!("{ev:?}");
            if !s.contains("Keepalive") && !s.contains("Transport") {
                self.note(|| s);
            }
        }
        match ev {
            Ev::Packet {
                from,
                from_inc,
                to,
                to_inc,
                pkt,
            } => self.deliver(from, from_inc, to, to_inc, pkt)?,
            Ev::Result { p, inc, id, res } => {
                // Failed locally (not connected, node declared dead); the
                // machine ignores ids it already has an answer for.
                let n = &mut self.nodes[p as usize];
                if n.alive && n.inc == inc {
                    n.outstanding.remove(&id);
                    self.result(p, id, res);
                }
            }
            Ev::Timeout { p, inc, id } => {
                let n = &mut self.nodes[p as usize];
                if n.alive && n.inc == inc && n.outstanding.remove(&id).is_some() {
                    self.result(p, id, ControlResult::Err);
                }
            }
            Ev::LockReply { p, inc, epoch } => {
                let n = &self.nodes[p as usize];
                if n.alive && n.inc == inc && self.lock_epoch[p as usize] == epoch {
                    let st = match self.holder {
                        None if self.rng.chance(20) => LockStatus::Timeout,
                        None => {
                            self.holder = Some(p);
                            LockStatus::Held
                        }
                        Some(h) if h == p => LockStatus::Held,
                        Some(_) => LockStatus::Contended,
                    };
                    self.note(|| format!("lock reply to {p}: {st:?}"));
                    let view = self.nodes[p as usize].node.view();
                    let now = self.now;
                    let acts = self.nodes[p as usize].recd.on_lock_status(now, &view, st);
                    self.apply(p, acts);
                }
            }
            Ev::LockTest { p, inc } => {
                let n = &self.nodes[p as usize];
                if n.alive && n.inc == inc {
                    let st = if self.holder.is_some() {
                        LockStatus::Contended
                    } else {
                        LockStatus::Held
                    };
                    let acts = self.nodes[p as usize].node.lock_test_result(st);
                    self.apply(p, acts);
                }
            }
            Ev::Transport => self.transport(),
            Ev::Workload => self.workload(),
            Ev::Chaos => self.chaos_event(),
            Ev::Restart(c) => self.restart(c),
            Ev::ForceRecovery => {
                let now = self.now;
                let o = self.nodes[0].node.handle_control(
                    now,
                    &Control::SetRecmode(ctdb_daemon::cluster::CTDB_RECOVERY_ACTIVE),
                    true,
                );
                self.apply_effects(0, o.effects);
            }
            Ev::Heal => {
                self.cut.clear();
                if self.now >= self.cfg.chaos_until {
                    for c in 0..self.cfg.n as Pnn {
                        self.restart(c);
                        let node = &mut self.nodes[c as usize];
                        node.faulty = false;
                        if node.stopped {
                            node.node.continue_node();
                            node.stopped = false;
                        }
                    }
                }
            }
        }
        Ok(true)
    }

    fn check_step(&mut self) -> Check {
        if let Some(v) = self.violation.take() {
            return Err(v);
        }
        // Lock: the holder is alive; believers hold it.
        if let Some(h) = self.holder {
            if !self.nodes[h as usize].alive {
                return Err(format!("dead node {h} holds the lock"));
            }
        }
        let mut runners = Vec::new();
        for (i, n) in self.nodes.iter_mut().enumerate() {
            let p = i as Pnn;
            if !n.alive {
                n.running = None;
                continue;
            }
            if n.recd.lock_held() && self.holder != Some(p) {
                return Err(format!(
                    "node {p} believes it holds the lock, holder is {:?}",
                    self.holder
                ));
            }
            let r = n.recd.running_generation();
            if r.is_some() && r != n.running {
                self.stats.recoveries += 1;
                if self.cfg.lock && self.holder != Some(p) {
                    return Err(format!("node {p} started a recovery without the lock"));
                }
            }
            n.running = r;
            if r.is_some() {
                runners.push(p);
            }
            // Volatile records never go back.
            if let Some(d) = n.dbs.get(&DB_VOL) {
                for (k, rec) in &d.live {
                    let seen = n.seen_rsn.entry(k.clone()).or_insert(0);
                    if rec.rsn < *seen {
                        return Err(format!(
                            "node {p}: record {:?} went back from rsn {} to {}",
                            String::from_utf8_lossy(k),
                            seen,
                            rec.rsn
                        ));
                    }
                    *seen = rec.rsn;
                }
                if n.seen_rsn.len() > d.live.len() {
                    let missing = n.seen_rsn.keys().find(|k| !d.live.contains_key(*k));
                    return Err(format!("node {p}: record {missing:?} vanished"));
                }
            }
            if let Some(d) = n.dbs.get(&DB_PERS) {
                let s = d.seqnum();
                if s < n.seen_seq {
                    return Err(format!(
                        "node {p}: persistent seqnum went back from {} to {s}",
                        n.seen_seq
                    ));
                }
                n.seen_seq = s;
            }
        }
        if self.cfg.lock && runners.len() > 1 {
            return Err(format!("recoveries running at once on {runners:?}"));
        }
        Ok(())
    }

    fn check_stable(&self) -> Check {
        let n = self.cfg.n;
        let leader = self.nodes[0].recd.leader();
        if leader == CTDB_UNKNOWN_PNN {
            return Err("no leader after settling".into());
        }
        let l = &self.nodes[leader as usize];
        if self.cfg.lock && self.holder != Some(leader) {
            return Err(format!(
                "leader {leader} does not hold the lock ({:?})",
                self.holder
            ));
        }
        let vnn = l.node.vnnmap().clone();
        if vnn.generation == INVALID_GENERATION {
            return Err("generation still invalid".into());
        }
        let nodemap = l.node.membership.nodemap();
        let active: Vec<Pnn> = nodemap
            .iter()
            .filter(|(_, f)| f & NODE_FLAGS_INACTIVE == 0)
            .map(|x| x.0)
            .collect();
        if vnn.map != active {
            return Err(format!(
                "vnn map {:?} is not the active nodes {active:?} (nodemap {nodemap:?})",
                vnn.map
            ));
        }
        // Latest copies among the live nodes.
        let mut best: BTreeMap<Vec<u8>, (u64, Vec<u8>)> = BTreeMap::new();
        let mut best_seq = 0;
        for x in &self.nodes {
            for (k, r) in &x.dbs[&DB_VOL].live {
                let e = best.entry(k.clone()).or_insert((0, Vec::new()));
                if r.rsn > e.0 {
                    *e = (r.rsn, r.data.clone());
                }
            }
            if let Some(d) = x.dbs.get(&DB_PERS) {
                best_seq = best_seq.max(d.seqnum());
            }
        }
        for (i, x) in self.nodes.iter().enumerate() {
            if !x.alive {
                return Err(format!("node {i} not alive"));
            }
            if x.recd.leader() != leader {
                return Err(format!(
                    "node {i} thinks leader is {}, node 0 thinks {leader}",
                    x.recd.leader()
                ));
            }
            if x.recd.election_in_progress() {
                return Err(format!("node {i} still in an election"));
            }
            if x.node.recmode() != CTDB_RECOVERY_NORMAL {
                return Err(format!("node {i} recmode not NORMAL"));
            }
            if *x.node.vnnmap() != vnn {
                return Err(format!(
                    "node {i} vnnmap {:?} differs from leader's {vnn:?}",
                    x.node.vnnmap()
                ));
            }
            if x.node.membership.connected().len() != n {
                return Err(format!("node {i} not connected to all"));
            }
            for (k, (rsn, data)) in &best {
                match x.dbs[&DB_VOL].live.get(k) {
                    Some(r) if r.rsn == *rsn && r.data == *data => {}
                    other => {
                        return Err(format!(
                            "node {i}: record {:?} is {:?}, latest is rsn {rsn}",
                            String::from_utf8_lossy(k),
                            other.map(|r| r.rsn)
                        ))
                    }
                }
            }
            match x.dbs.get(&DB_PERS) {
                Some(d) if d.seqnum() == best_seq => {
                    if d.live != self.nodes[leader as usize].dbs[&DB_PERS].live {
                        return Err(format!("node {i}: persistent contents differ"));
                    }
                }
                Some(d) => {
                    return Err(format!(
                        "node {i}: persistent seqnum {} != highest {best_seq}",
                        d.seqnum()
                    ))
                }
                None => return Err(format!("node {i}: persistent database missing")),
            }
        }
        Ok(())
    }

    fn run(&mut self) -> Check {
        loop {
            let more = self.step()?;
            self.check_step()?;
            if !more {
                break;
            }
            if self.steps > 2_000_000 {
                return Err("too many steps (livelock?)".into());
            }
        }
        self.stats.steps = self.steps;
        self.stats.sim_ms = self.now;
        for x in &self.nodes {
            self.stats.elections += x.recd.elections_forced();
            self.stats.failed_recoveries += x.recd.stats().recoveries_failed;
        }
        self.check_stable()
    }
}

fn run_seed(seed: u64, trace: bool) -> (Check, Stats, String) {
    let mut sim = Sim::new(seed, trace);
    let r = sim.run();
    let mut desc = String::new();
    let _ = write!(
        desc,
        "n={} lock={} loss={}‰",
        sim.cfg.n, sim.cfg.lock, sim.cfg.loss_per_mille
    );
    if r.is_err() {
        let _ = write!(desc, " t={}ms", sim.now);
        for (i, x) in sim.nodes.iter().enumerate() {
            let _ = write!(
                desc,
                "\n  node {i}: alive={} leader={} lock={:?} recmode={} vnn={:?} flags={:?} inprog={}",
                x.alive,
                x.recd.leader(),
                x.recd.lock_state(),
                x.node.recmode(),
                x.node.vnnmap(),
                x.node.membership.nodemap(),
                x.recd.election_in_progress()
            );
        }
        let _ = write!(desc, "\n  lock holder={:?}", sim.holder);
        if std::env::var("CTDB_SIM_DUMP").is_ok() {
            for x in &sim.nodes {
                let _ = write!(desc, "\n{:?}", x.recd);
            }
        }
    }
    let _ = &sim.log;
    (r, sim.stats, desc)
}

#[test]
fn simulated_clusters_keep_the_invariants() {
    if let Ok(s) = std::env::var("CTDB_SIM_SEED") {
        let seed: u64 = s.parse().expect("CTDB_SIM_SEED must be a number");
        let (r, st, desc) = run_seed(seed, true);
        eprintln!(
            "seed {seed}: {desc}: steps={} recoveries={} crashes={}",
            st.steps, st.recoveries, st.crashes
        );
        if let Err(e) = r {
            panic!("seed {seed} failed: {e}\n{desc}");
        }
        return;
    }
    let count: u64 = std::env::var("CTDB_SIM_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(500);
    let base: u64 = std::env::var("CTDB_SIM_SEED_BASE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let start = std::time::Instant::now();
    let mut total = Stats::default();
    let mut failures = Vec::new();
    for seed in base..base + count {
        let (r, st, desc) = run_seed(seed, false);
        total.steps += st.steps;
        total.packets += st.packets;
        total.recoveries += st.recoveries;
        total.failed_recoveries += st.failed_recoveries;
        total.crashes += st.crashes;
        total.partitions += st.partitions;
        total.resets += st.resets;
        total.writes += st.writes;
        total.bans += st.bans;
        total.elections += st.elections;
        total.sim_ms += st.sim_ms;
        if let Err(e) = r {
            eprintln!(
                "seed {seed} FAILED: {e}\n  {desc}\n  replay: CTDB_SIM_SEED={seed} cargo test -p ctdb-daemon --test sim"
            );
            failures.push(seed);
        }
    }
    eprintln!(
        "{count} seeds in {:.2?}: {} steps, {} packets, {} s simulated; {} recoveries ({} failed/aborted), {} elections forced, {} crashes, {} partitions, {} link resets, {} bans, {} client writes",
        start.elapsed(),
        total.steps,
        total.packets,
        total.sim_ms / 1000,
        total.recoveries,
        total.failed_recoveries,
        total.elections,
        total.crashes,
        total.partitions,
        total.resets,
        total.bans,
        total.writes
    );
    assert!(failures.is_empty(), "failing seeds: {failures:?}");
    assert!(
        total.recoveries > count,
        "the simulation must exercise recovery"
    );
}
