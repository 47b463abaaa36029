//! A data core's own side of the other nodes: its transport lanes, its
//! migrator, its records.
//!
//! Why: the design gives every data core its hash chains *and* its own
//! node-to-node sockets. With two or more cores, a record call on a
//! volatile database (REQ_CALL, REQ_DMASTER, REPLY_DMASTER, REPLY_CALL,
//! REPLY_ERROR) is handled entirely on the data core that owns the key:
//! the transport reads it on whichever core accepted the connection and
//! hands it to the owner ([`crate::transport::route`]), the owner's
//! [`Migrator`] decides, the record step runs on the owner's [`Shard`] in
//! place, and the packets it makes leave on the owner's own connection
//! (lane) to the node. The control core is not on that path; it only hands
//! in a local client's REQ_CALL (client sockets are its) and writes the
//! REPLY_CALL back to the client.
//!
//! ```text
//! client ─▶ core 0 ──ToData::ClientCall──▶ data core s: Migrator ─▶ Shard
//!                                              │  ▲
//!                         lane to node N ◀─────┘  └──── packets for key k
//! client ◀─ core 0 ◀──ToControl::ClientReply──┘          (any core reads,
//!                                                          route() → s)
//! ```
//!
//! What the data core needs from the control core arrives as a
//! [`CoreEnv`] (pnn, generation, vnn map, recovery, ban, frozen databases,
//! tunables, and the databases it serves), pushed whenever it changes
//! ([`crate::shards::DataCores::sync_env`]) and before any control that
//! changed it is answered.
//!
//! # Invariants
//!
//! * All migration state of a key lives in one migrator: the data cores
//!   serve exactly the databases in [`CoreEnv::routed`] (volatile, open on
//!   every shard, not read-only); the control core's migrator serves the
//!   rest. A data core's request ids carry its shard + 1 in the top byte,
//!   so replies come back to it ([`Migrator::for_shard`]).
//! * A packet for a database this core does not serve (the routes changed
//!   while it travelled) goes to the control core, which decides with the
//!   registry in hand.
//! * Upstream's generation filter applies ([`accept_packet`]); a packet
//!   whose generation is not yet this core's (the control core's push of a
//!   new generation may be a moment behind the network) is held until the
//!   next [`CoreEnv`] or [`HOLD`], then judged again.
//! * A record step runs synchronously on this core's shard: no chain lock
//!   is held across an await, so the control core's whole-database locks
//!   (freeze, recovery, vacuum) always get their turn.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::rc::Rc;
use std::time::{Duration, Instant};

use ctdb_engine::Database;
use ctdb_protocol::types::{LockStatistics, Statistics, StatisticsNode, MAX_COUNT_BUCKETS};
use ctdb_protocol::{Operation, RawHeader};
use glommio::channels::local_channel::{self, LocalReceiver, LocalSender};

use crate::db::migrator::{Counter, StickyConfig};
use crate::db::{hop_bucket, Action, Migrator, Shard, ShardRequest};
use crate::runtime::{LinkSender, ToControl};
use crate::transport::mesh::MeshSeat;
use crate::transport::outbox::Outbox;
use crate::transport::route::{accept_packet, call_key, completes_own_call, ShardMap};
use crate::transport::{Received, Transport, TransportConfig};

/// How often a data core looks for finished recoveries and timed-out
/// fetch-collapse queues, as the control core's driver does.
const TICK: Duration = Duration::from_millis(100);

/// How long a packet of a generation this core does not know yet waits
/// for the control core's next [`CoreEnv`] before it is dropped.
pub const HOLD: Duration = Duration::from_secs(2);

/// The node as a data core needs to know it.
#[derive(Debug, Clone)]
pub struct CoreEnv {
    pub pnn: u32,
    pub generation: u32,
    pub vnn_map: Vec<u32>,
    /// Recovery mode active.
    pub recovering: bool,
    /// This node is banned (call packets are dropped).
    pub banned: bool,
    /// Tunable FetchCollapse.
    pub fetch_collapse: bool,
    pub sticky: StickyConfig,
    /// The databases the data cores serve: volatile, open on every shard,
    /// not read-only.
    pub routed: Vec<(u32, Database)>,
    /// Databases frozen for recovery.
    pub frozen: Vec<u32>,
}

impl CoreEnv {
    /// Whether `other` says the same (database handles compared by id).
    pub fn same(&self, other: &CoreEnv) -> bool {
        let ids = |e: &CoreEnv| e.routed.iter().map(|(id, _)| *id).collect::<Vec<_>>();
        self.pnn == other.pnn
            && self.generation == other.generation
            && self.vnn_map == other.vnn_map
            && self.recovering == other.recovering
            && self.banned == other.banned
            && self.fetch_collapse == other.fetch_collapse
            && self.sticky.dbs == other.sticky.dbs
            && self.sticky.hopcount_make_sticky == other.sticky.hopcount_make_sticky
            && self.sticky.duration == other.sticky.duration
            && self.sticky.pindown == other.sticky.pindown
            && self.frozen == other.frozen
            && ids(self) == ids(other)
    }

    fn serves(&self, db_id: u32) -> bool {
        self.routed.iter().any(|(id, _)| *id == db_id)
    }
}

/// What a data core gets to start its side of the transport.
pub struct StartLanes {
    pub seat: MeshSeat,
    pub cfg: TransportConfig,
    pub env: CoreEnv,
}

impl std::fmt::Debug for StartLanes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "StartLanes(core {})", self.seat.core())
    }
}

/// Node statistics a data core counted since it was last asked.
#[derive(Debug, Clone, Default)]
pub struct CallCounters {
    pub node_packets_recv: u32,
    pub node_packets_sent: u32,
    pub node: StatisticsNode,
    pub max_hop_count: u32,
    pub hop_count_bucket: [u32; MAX_COUNT_BUCKETS],
    /// Calls of this core waiting on another node (a gauge).
    pub pending_calls: u32,
    /// Chain lock waits of this core's record steps (counts; the
    /// `num_current` gauge is the waits in progress now).
    pub locks: LockStatistics,
}

impl CallCounters {
    /// Adds the counts to `s` (the gauge is left to the caller).
    pub fn add_to(&self, s: &mut Statistics) {
        s.node_packets_recv = s.node_packets_recv.wrapping_add(self.node_packets_recv);
        s.node_packets_sent = s.node_packets_sent.wrapping_add(self.node_packets_sent);
        let (a, b) = (&mut s.node, &self.node);
        a.req_call = a.req_call.wrapping_add(b.req_call);
        a.reply_call = a.reply_call.wrapping_add(b.reply_call);
        a.req_dmaster = a.req_dmaster.wrapping_add(b.req_dmaster);
        a.reply_dmaster = a.reply_dmaster.wrapping_add(b.reply_dmaster);
        a.reply_error = a.reply_error.wrapping_add(b.reply_error);
        s.max_hop_count = s.max_hop_count.max(self.max_hop_count);
        for (x, y) in s.hop_count_bucket.iter_mut().zip(self.hop_count_bucket) {
            *x = x.wrapping_add(y);
        }
        crate::db::stats::merge_lock_counts(&mut s.locks, &self.locks);
    }

    fn count_hop(&mut self, hopcount: u32) {
        self.max_hop_count = self.max_hop_count.max(hopcount);
        let b = &mut self.hop_count_bucket[hop_bucket(hopcount)];
        *b = b.wrapping_add(1);
    }
}

/// The shard map of one core: which data shard owns a key of a database
/// the data cores serve. Each core has its own copy, updated from the
/// [`CoreEnv`] it receives (no lock between cores).
pub struct Routes {
    shards: usize,
    dbs: RefCell<HashMap<u32, Database>>,
}

impl Routes {
    pub fn new(shards: usize) -> Routes {
        Routes {
            shards,
            dbs: RefCell::new(HashMap::new()),
        }
    }

    pub fn set(&self, routed: &[(u32, Database)]) {
        *self.dbs.borrow_mut() = routed.iter().cloned().collect();
    }
}

impl ShardMap for Routes {
    fn shard_of(&self, db_id: u32, key: &[u8]) -> Option<usize> {
        if self.shards == 0 {
            return None;
        }
        self.dbs
            .borrow()
            .get(&db_id)
            .map(|db| db.owner_of(key, self.shards))
    }
}

/// One data core's peers side.
pub struct ShardPeers {
    shard: usize,
    t: Rc<Transport>,
    dbs: Rc<RefCell<Shard>>,
    m: RefCell<Migrator>,
    env: RefCell<CoreEnv>,
    routes: Rc<Routes>,
    /// The generation pending calls were last sent in.
    sent_generation: Cell<u32>,
    counters: RefCell<CallCounters>,
    /// To the control core, in order.
    up: LocalSender<ToControl>,
    outbox: Outbox,
    /// Packets of a generation not (yet) ours: (since, from, packet).
    held: RefCell<VecDeque<(Instant, u32, Vec<u8>)>>,
    stopped: Cell<bool>,
}

impl ShardPeers {
    /// Starts this core's transport (every core of the runtime does so at
    /// the same time) and the tasks that serve it. `None` when the
    /// transport could not start here (logged; the control core then
    /// still reaches every node on its own connections).
    pub async fn start(
        shard: usize,
        shards: usize,
        dbs: Rc<RefCell<Shard>>,
        to_control: Rc<LinkSender<ToControl>>,
        start: StartLanes,
    ) -> Option<Rc<ShardPeers>> {
        let StartLanes { seat, cfg, env } = start;
        let routes = Rc::new(Routes::new(shards));
        routes.set(&env.routed);
        let t = match Transport::start(cfg, seat, routes.clone()).await {
            Ok(t) => t,
            Err(e) => {
                tracing::error!("data core for shard {shard}: transport not started: {e}");
                return None;
            }
        };
        let (up, up_rx) = local_channel::new_unbounded();
        let outbox = Outbox::start(t.clone());
        let m = Migrator::for_shard(env.pnn, env.generation, shard);
        let p = Rc::new(ShardPeers {
            shard,
            t,
            dbs,
            m: RefCell::new(m),
            sent_generation: Cell::new(env.generation),
            env: RefCell::new(env.clone()),
            routes,
            counters: RefCell::new(CallCounters::default()),
            up,
            outbox,
            held: RefCell::new(VecDeque::new()),
            stopped: Cell::new(false),
        });
        p.set_env(env);
        glommio::spawn_local(up_task(up_rx, to_control)).detach();
        glommio::spawn_local(receive_task(p.clone())).detach();
        glommio::spawn_local(ticker(p.clone())).detach();
        Some(p)
    }

    /// Takes the control core's view of the node; the packets held for a
    /// generation this core did not know are judged again.
    pub fn set_env(self: &Rc<Self>, env: CoreEnv) {
        self.routes.set(&env.routed);
        {
            let mut dbs = self.dbs.borrow_mut();
            for (id, _) in &env.routed {
                if !dbs.has_db(*id) {
                    continue;
                }
                let req = if env.frozen.contains(id) {
                    ShardRequest::Freeze { db_id: *id }
                } else {
                    ShardRequest::Thaw { db_id: *id }
                };
                dbs.handle(req);
            }
        }
        {
            let mut m = self.m.borrow_mut();
            m.set_generation(env.generation);
            m.set_fetch_collapse(env.fetch_collapse);
            m.set_sticky(env.sticky.clone());
        }
        *self.env.borrow_mut() = env;
        self.release_held();
    }

    fn release_held(self: &Rc<Self>) {
        let held: Vec<_> = self.held.borrow_mut().drain(..).collect();
        for (since, from, bytes) in held {
            self.on_packet(from, bytes, Some(since));
        }
    }

    /// The counters collected since the last call (the pending-calls
    /// gauge as it is now).
    pub fn take_counters(&self) -> CallCounters {
        let mut c = std::mem::take(&mut *self.counters.borrow_mut());
        c.pending_calls = self.m.borrow().pending_calls() as u32;
        c.locks.num_current = self.m.borrow().lock_waits() as u32;
        c
    }

    /// A local client's REQ_CALL, handed in by the control core.
    pub fn client_call(self: &Rc<Self>, client: u32, pkt: Vec<u8>) {
        let r = self
            .m
            .borrow_mut()
            .client_call(client, &pkt, Instant::now());
        match r {
            Ok(actions) => self.run(actions),
            Err(e) => tracing::error!("shard {}: bad call from client {client}: {e}", self.shard),
        }
    }

    /// Local client `client` sent the control core a packet (after this
    /// core asked with [`ToControl::HoldWaiting`]).
    pub fn client_active(self: &Rc<Self>, client: u32) {
        let actions = self.m.borrow_mut().client_active(client, Instant::now());
        self.run(actions);
    }

    /// Stops this core's transport.
    pub fn stop(&self) {
        self.stopped.set(true);
        let st = self.t.stats();
        tracing::info!(
            "core {} transport: {} packets sent on its own lanes, {} through the control core, \
             {} received, {} of them handed to another core, {} dropped",
            self.t.core(),
            st.sent,
            st.forwarded,
            st.received,
            st.rerouted,
            st.dropped
        );
        self.t.stop();
    }

    /// A packet from node `from` (or held since `held_since`).
    fn on_packet(self: &Rc<Self>, from: u32, bytes: Vec<u8>, held_since: Option<Instant>) {
        let hdr = match RawHeader::parse(&bytes) {
            Ok(h) => h,
            Err(e) => {
                tracing::error!("bad packet from node {from}: {e}");
                return;
            }
        };
        let op = hdr.operation().ok();
        let (generation, banned) = {
            let env = self.env.borrow();
            (env.generation, env.banned)
        };
        if !accept_packet(&hdr, generation, banned) {
            let fresh = match held_since {
                None => true,
                Some(t) => t.elapsed() < HOLD,
            };
            if !banned && fresh {
                let since = held_since.unwrap_or_else(Instant::now);
                self.held.borrow_mut().push_back((since, from, bytes));
            } else {
                tracing::debug!(
                    "packet {} from node {from} dropped (generation {} vs ours {generation}, banned {banned})",
                    hdr.operation,
                    hdr.generation
                );
            }
            return;
        }
        // A new call on a database this core does not serve (its routes
        // changed while the packet travelled): the control core decides.
        // What completes a call of this core's own migrator (REPLY_DMASTER,
        // a REQ_DMASTER making this node dmaster) stays here.
        let foreign = op.is_some_and(|op| {
            matches!(op, Operation::ReqCall | Operation::ReqDmaster)
                && !completes_own_call(op, &bytes, hdr.destnode)
                && call_key(op, &bytes).is_some_and(|(db, _)| !self.env.borrow().serves(db))
        });
        if foreign {
            let _ = self.up.try_send(ToControl::PeerPacket { from, bytes });
            return;
        }
        {
            let mut c = self.counters.borrow_mut();
            c.node_packets_recv = c.node_packets_recv.wrapping_add(1);
            crate::peers::count_node_op(&mut c.node, op);
        }
        let actions = self
            .m
            .borrow_mut()
            .peer_packet(from, &bytes, Instant::now());
        self.run(actions);
    }

    /// Carries out the migrator's actions; record steps run here, in line.
    fn run(self: &Rc<Self>, actions: Vec<Action>) {
        let mut q: VecDeque<Action> = actions.into();
        while let Some(a) = q.pop_front() {
            match a {
                Action::Send { dest, pkt } => self.send(dest, pkt),
                Action::Client { client, pkt } => {
                    let _ = self.up.try_send(ToControl::ClientReply { client, pkt });
                }
                Action::Record { ticket, op } => {
                    let step = {
                        let env = self.env.borrow();
                        self.dbs.borrow_mut().record(&op, env.pnn, &env.vnn_map)
                    };
                    let more = self
                        .m
                        .borrow_mut()
                        .record_done(ticket, step, Instant::now());
                    q.extend(more);
                }
                Action::Retry {
                    ticket,
                    after,
                    busy,
                } => {
                    let waiter =
                        busy.and_then(|(db_id, key)| self.dbs.borrow().chain_waiter(db_id, &key));
                    let me = self.clone();
                    glommio::spawn_local(async move {
                        crate::lockwait::chain_free_or(waiter, after).await;
                        let more = me.m.borrow_mut().retry(ticket, Instant::now());
                        me.run(more);
                    })
                    .detach();
                }
                Action::HoldTimer {
                    db_id,
                    key,
                    id,
                    client,
                    after,
                } => {
                    // The client's packets other than calls reach the
                    // control core only: ask it to pass the next one on.
                    let _ = self.up.try_send(ToControl::HoldWaiting {
                        shard: self.shard,
                        client,
                    });
                    let me = self.clone();
                    glommio::spawn_local(async move {
                        glommio::timer::sleep(after).await;
                        let more =
                            me.m.borrow_mut()
                                .hold_expired(db_id, &key, id, Instant::now());
                        me.run(more);
                    })
                    .detach();
                }
                Action::Recover => {
                    tracing::error!("record migration protocol error: recovery wanted");
                    let _ = self.up.try_send(ToControl::RecoveryWanted);
                }
                Action::Hop { hopcount } => self.counters.borrow_mut().count_hop(hopcount),
                Action::Count(Counter::LockWait { db_id, micros }) => {
                    let t = micros as f64 / 1e6;
                    crate::db::stats::count_lock_wait(
                        &mut self.counters.borrow_mut().locks,
                        t,
                        true,
                    );
                    self.dbs.borrow_mut().lock_wait(db_id, t);
                }
                // Read-only delegations are the control core's (read-only
                // databases are never routed here).
                Action::Count(_) => {}
                Action::UpdateRecord { revoke, dest, .. } => {
                    tracing::error!(
                        "shard {}: read-only revoke for a database served by a data core",
                        self.shard
                    );
                    let more =
                        self.m
                            .borrow_mut()
                            .revoke_reply(revoke, dest, false, Instant::now());
                    q.extend(more);
                }
            }
        }
    }

    /// Sends a packet to node `pnn` on this core's own connection, in
    /// order with everything before it.
    fn send(&self, pnn: u32, bytes: Vec<u8>) {
        {
            let mut c = self.counters.borrow_mut();
            c.node_packets_sent = c.node_packets_sent.wrapping_add(1);
        }
        self.outbox.send(pnn, bytes);
    }

    fn tick(self: &Rc<Self>) {
        let now = Instant::now();
        let mut actions = self.m.borrow_mut().tick(now);
        let resend = {
            let env = self.env.borrow();
            env.generation != self.sent_generation.get()
                && !env.recovering
                && !self
                    .m
                    .borrow()
                    .pending_dbs()
                    .iter()
                    .any(|id| env.frozen.contains(id))
        };
        if resend {
            self.sent_generation.set(self.env.borrow().generation);
            actions.extend(self.m.borrow_mut().resend_all(now));
        }
        if !actions.is_empty() {
            self.run(actions);
        }
        let expired = self
            .held
            .borrow()
            .front()
            .is_some_and(|(since, _, _)| since.elapsed() >= HOLD);
        if expired {
            self.release_held();
        }
    }
}

async fn up_task(rx: LocalReceiver<ToControl>, to_control: Rc<LinkSender<ToControl>>) {
    while let Some(m) = rx.recv().await {
        if to_control.send(m).await.is_err() {
            return;
        }
    }
}

async fn receive_task(p: Rc<ShardPeers>) {
    while let Some(Received { from, bytes }) = p.t.recv().await {
        p.on_packet(from, bytes, None);
    }
}

async fn ticker(p: Rc<ShardPeers>) {
    loop {
        glommio::timer::sleep(TICK).await;
        if p.stopped.get() {
            return;
        }
        p.tick();
    }
}
