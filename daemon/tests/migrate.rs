//! Record migration between three nodes, in-process: three real
//! [`Databases`] (one directory per node, real tdb files) with the same vnn
//! map, each with its own sans-I/O [`Migrator`]; the test moves packets
//! between them by hand (FIFO per pair of nodes, as TCP does) and plays
//! the clients, which read and write the record files themselves under
//! the chain lock, as smbd and the `ctdb` tool do (fetch-lock: look at the
//! local header, and while this node is not the dmaster ask the daemon
//! with REQ_CALL and look again).
//!
//! Node 2 keeps its volatile records in two data-core shards
//! ([`Shard`], driven in-line), so the shard path of every step runs too.
//!
//! Checked: the record ends with dmaster = last fetcher on that node and
//! on the lmaster, its rsn grows with every migration, no increment of a
//! read-modify-write loop is lost under random interleavings (seeded;
//! the seed is printed on failure), and calls lost with a dead link are
//! resent after a generation change.

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::time::Instant;

use ctdb_daemon::db::migrator::Counter;
use ctdb_daemon::db::{
    Action, ControlCtx, Databases, DbConfig, Migrator, RecordOp, RecordStep, Shard, ShardReply,
};
use ctdb_engine::ltdb::LtdbHeader;
use ctdb_engine::CoreStore;
use ctdb_protocol::constants::{
    CTDB_FETCH_FUNC, CTDB_FETCH_WITH_HEADER_FUNC, CTDB_IMMEDIATE_MIGRATION, CTDB_NULL_FUNC,
    CTDB_WANT_READONLY,
};
use ctdb_protocol::{Header, Opcode, Packet, Payload, ReplyControl, ReqCall, ReqControl};

fn encode(h: Header, p: Payload<'_>) -> Vec<u8> {
    let mut out = Vec::new();
    Packet::new(h, p).encode(&mut out).unwrap();
    out
}

const NODES: u32 = 3;

/// `CTDB_REC_RO_*` flags.
const RO_HAVE_DELEGATIONS: u32 = 0x0100_0000;
const RO_HAVE_READONLY: u32 = 0x0200_0000;
const RO_FLAGS: u32 = 0x0F00_0000;
const DB: &str = "migrate_test.tdb";

/// A small xorshift PRNG (seeded, reproducible).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

struct Node {
    dbs: Databases,
    shards: Vec<Shard>,
    m: Migrator,
    /// Record steps waiting to run (FIFO, as a data core's channel).
    ops: VecDeque<(u64, RecordOp)>,
    retries: VecDeque<u64>,
    /// Hand-over hold timers armed (database id, key, hold id).
    hold_timers: VecDeque<(u32, Vec<u8>, u64)>,
    /// Replies for local clients, by client id.
    replies: HashMap<u32, Vec<Vec<u8>>>,
    hops: u32,
    ro_delegations: u32,
    ro_revokes: u32,
}

impl Node {
    fn run_op(&mut self, op: &RecordOp) -> RecordStep {
        if self.shards.is_empty() {
            return self.dbs.record_op(op);
        }
        match self.dbs.record_shard(op, self.shards.len()) {
            Some(shard) => {
                let req = self.dbs.record_request(op.clone());
                match self.shards[shard].handle(req) {
                    ShardReply::Record(step) => step,
                    other => panic!("shard answered {other:?}"),
                }
            }
            None => self.dbs.record_op(op),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ClientState {
    Idle,
    /// Holds the chain lock (taken in an earlier step).
    Locked,
    Waiting,
    Done,
}

struct Client {
    id: u32,
    node: usize,
    key: Vec<u8>,
    left: u32,
    state: ClientState,
    handle: CoreStore,
    next_reqid: u32,
    /// A reader: read-only fetch-locks (a read-only copy will do), no
    /// increments; `seen` is the last value it read.
    readonly: bool,
    seen: u64,
}

struct Cluster {
    dir: PathBuf,
    nodes: Vec<Node>,
    db_id: u32,
    links: HashMap<(u32, u32), VecDeque<Vec<u8>>>,
    /// Drop every packet to this node (a dead link).
    blackhole: Option<u32>,
    /// Per key: (node, rsn) seen by each successful increment, in order.
    history: HashMap<Vec<u8>, Vec<(usize, u64)>>,
    /// Record steps that found the chain busy.
    retried: u32,
    /// Lock waits counted (steps that got the chain lock after finding it
    /// busy).
    lock_waits: u32,
}

impl Cluster {
    fn new(tag: &str, sharded: bool) -> Cluster {
        let dir = std::env::temp_dir().join(format!("ctdb-migrate-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut nodes = Vec::new();
        let mut db_id = 0;
        for pnn in 0..NODES {
            let base = dir.join(format!("node{pnn}"));
            let mut cfg = DbConfig::new(
                pnn,
                &base.join("volatile"),
                &base.join("persistent"),
                &base.join("state"),
            );
            cfg.hash_size = 1021;
            let mut dbs = Databases::open(cfg).unwrap();
            dbs.set_vnn_map((0..NODES).collect());
            db_id = dbs.attach(DB, 0).unwrap();
            let mut shards = Vec::new();
            if sharded && pnn == 2 {
                for (i, req) in dbs.shard_attach_requests(db_id, 2).into_iter().enumerate() {
                    let mut s = Shard::new(i, 2);
                    assert!(matches!(s.handle(req), ShardReply::Done));
                    shards.push(s);
                }
            }
            nodes.push(Node {
                dbs,
                shards,
                m: Migrator::new(pnn, 7),
                ops: VecDeque::new(),
                retries: VecDeque::new(),
                hold_timers: VecDeque::new(),
                replies: HashMap::new(),
                hops: 0,
                ro_delegations: 0,
                ro_revokes: 0,
            });
        }
        Cluster {
            dir,
            nodes,
            db_id,
            links: HashMap::new(),
            blackhole: None,
            history: HashMap::new(),
            retried: 0,
            lock_waits: 0,
        }
    }

    fn apply(&mut self, from: usize, actions: Vec<Action>) {
        for a in actions {
            match a {
                Action::Send { dest, pkt } => {
                    assert_ne!(dest, from as u32, "the migrator loops its own packets back");
                    assert!(dest < NODES, "packet for unknown node {dest}");
                    if self.blackhole == Some(dest) {
                        continue;
                    }
                    self.links
                        .entry((from as u32, dest))
                        .or_default()
                        .push_back(pkt);
                }
                Action::Client { client, pkt } => self.nodes[from]
                    .replies
                    .entry(client)
                    .or_default()
                    .push(pkt),
                Action::Record { ticket, op } => self.nodes[from].ops.push_back((ticket, op)),
                Action::Retry { ticket, .. } => {
                    self.retried += 1;
                    self.nodes[from].retries.push_back(ticket)
                }
                Action::HoldTimer { db_id, key, id, .. } => {
                    self.nodes[from].hold_timers.push_back((db_id, key, id))
                }
                Action::Recover => panic!("node {from} asked for a recovery"),
                Action::Hop { .. } => self.nodes[from].hops += 1,
                Action::UpdateRecord { revoke, dest, data } => {
                    // A control on the same link as the calls, as over TCP;
                    // a dead link fails it (upstream: the control times out).
                    assert_ne!(dest, from as u32, "no read-only copy on the dmaster itself");
                    let reqid = u32::try_from(revoke).expect("small revoke ids");
                    let (link, pkt) = if self.blackhole == Some(dest) {
                        let reply = ReplyControl::status(-1);
                        (
                            (dest, from as u32),
                            encode(
                                Header::new(7, from as u32, dest, reqid),
                                Payload::ReplyControl(reply),
                            ),
                        )
                    } else {
                        let req = ReqControl::raw(Opcode::UpdateRecord as u32, &data);
                        (
                            (from as u32, dest),
                            encode(
                                Header::new(7, dest, from as u32, reqid),
                                Payload::ReqControl(req),
                            ),
                        )
                    };
                    self.links.entry(link).or_default().push_back(pkt);
                }
                Action::Count(Counter::RoDelegation) => self.nodes[from].ro_delegations += 1,
                Action::Count(Counter::RoRevoke) => self.nodes[from].ro_revokes += 1,
                Action::Count(Counter::LockWait { db_id, .. }) => {
                    assert_eq!(db_id, self.db_id);
                    self.lock_waits += 1;
                }
            }
        }
    }

    fn deliver(&mut self, link: (u32, u32)) {
        let pkt = self.links.get_mut(&link).unwrap().pop_front().unwrap();
        let to = link.1 as usize;
        let p = Packet::decode(&pkt, &Default::default()).unwrap();
        match p.payload {
            Payload::ReqControl(c) => {
                // UPDATE_RECORD revoking a read-only copy: apply, answer.
                let o = self.nodes[to]
                    .dbs
                    .handle_control(&ControlCtx::default(), c.opcode, &c.data.to_vec())
                    .expect("UPDATE_RECORD is a database control");
                let reply = ReplyControl::status(o.status);
                let back = encode(
                    Header::new(7, link.0, link.1, p.header.reqid),
                    Payload::ReplyControl(reply),
                );
                self.links
                    .entry((link.1, link.0))
                    .or_default()
                    .push_back(back);
                return;
            }
            Payload::ReplyControl(r) => {
                let acts = self.nodes[to].m.revoke_reply(
                    u64::from(p.header.reqid),
                    link.0,
                    r.status == 0,
                    Instant::now(),
                );
                self.apply(to, acts);
                return;
            }
            _ => {}
        }
        let acts = self.nodes[to].m.peer_packet(link.0, &pkt, Instant::now());
        self.apply(to, acts);
    }

    fn run_op(&mut self, n: usize) {
        let (ticket, op) = self.nodes[n].ops.pop_front().unwrap();
        let step = self.nodes[n].run_op(&op);
        let acts = self.nodes[n].m.record_done(ticket, step, Instant::now());
        self.apply(n, acts);
    }

    /// Calls delayed after a revoke go again (the grace period passed).
    fn run_tick(&mut self, n: usize) {
        let later = Instant::now() + std::time::Duration::from_millis(1200);
        let acts = self.nodes[n].m.tick(later);
        self.apply(n, acts);
    }

    /// A hand-over hold's timer runs out.
    fn run_hold_timer(&mut self, n: usize) {
        let (db_id, key, id) = self.nodes[n].hold_timers.pop_front().unwrap();
        let acts = self.nodes[n]
            .m
            .hold_expired(db_id, &key, id, Instant::now());
        self.apply(n, acts);
    }

    fn run_retry(&mut self, n: usize) {
        let t = self.nodes[n].retries.pop_front().unwrap();
        let acts = self.nodes[n].m.retry(t, Instant::now());
        self.apply(n, acts);
    }

    /// Everything that can happen next, except client steps.
    fn events(&self) -> Vec<Event> {
        let mut v = Vec::new();
        let mut links: Vec<_> = self
            .links
            .iter()
            .filter(|(_, q)| !q.is_empty())
            .map(|(k, _)| *k)
            .collect();
        links.sort_unstable();
        v.extend(links.into_iter().map(Event::Link));
        for (i, n) in self.nodes.iter().enumerate() {
            if !n.ops.is_empty() {
                v.push(Event::Op(i));
            }
            if !n.retries.is_empty() {
                v.push(Event::Retry(i));
            }
            if n.m.delayed_calls() > 0 {
                v.push(Event::Tick(i));
            }
            if !n.hold_timers.is_empty() {
                v.push(Event::Hold(i));
            }
        }
        v
    }

    fn fire(&mut self, e: Event) {
        match e {
            Event::Link(l) => self.deliver(l),
            Event::Op(n) => self.run_op(n),
            Event::Retry(n) => self.run_retry(n),
            Event::Tick(n) => self.run_tick(n),
            Event::Hold(n) => self.run_hold_timer(n),
        }
    }

    fn new_client(&mut self, id: u32, node: usize, key: &[u8], count: u32) -> Client {
        let handle = self.nodes[node].dbs.client_handle(self.db_id).unwrap();
        Client {
            id,
            node,
            key: key.to_vec(),
            left: count,
            state: if count == 0 {
                ClientState::Done
            } else {
                ClientState::Idle
            },
            handle,
            next_reqid: 1,
            readonly: false,
            seen: 0,
        }
    }

    /// A reader on `node`: `count` read-only fetch-locks of `key`.
    fn new_reader(&mut self, id: u32, node: usize, key: &[u8], count: u32) -> Client {
        let mut c = self.new_client(id, node, key, count);
        c.readonly = true;
        c
    }

    /// One step of a client's fetch-lock / increment / unlock loop.
    /// `hold`: keep the chain lock for a later step (others then find
    /// the chain busy).
    fn client_step(&mut self, c: &mut Client, hold: bool) {
        let pnn = c.node as u32;
        match c.state {
            ClientState::Done => {}
            ClientState::Waiting => {
                let got = self.nodes[c.node]
                    .replies
                    .get_mut(&c.id)
                    .and_then(|v| (!v.is_empty()).then(|| v.remove(0)));
                if let Some(pkt) = got {
                    let p = Packet::decode(&pkt, &Default::default()).unwrap();
                    let Payload::ReplyCall(r) = p.payload else {
                        panic!("client {} got {:?}", c.id, p.payload)
                    };
                    assert_eq!(r.status, 0);
                    assert_eq!(p.header.reqid, c.next_reqid - 1, "reply for our request");
                    c.state = ClientState::Idle;
                }
            }
            ClientState::Idle => {
                if !c.handle.chainlock_nonblock(&c.key).unwrap() {
                    return; // another client of this node holds it
                }
                c.state = ClientState::Locked;
                if !hold {
                    self.client_step(c, false);
                }
            }
            ClientState::Locked => {
                let rec = c.handle.fetch(&c.key).unwrap();
                let parsed = rec.as_deref().and_then(LtdbHeader::split);
                let ro = RO_HAVE_READONLY | RO_HAVE_DELEGATIONS;
                match parsed {
                    // As the client library: a read-only copy or
                    // delegations will do for reading; writing needs the
                    // record without delegations.
                    Some((h, data)) if c.readonly && (h.dmaster == pnn || h.flags.0 & ro != 0) => {
                        let v = if data.is_empty() {
                            0u64
                        } else {
                            u64::from_le_bytes(data.try_into().expect("8-byte counter"))
                        };
                        c.handle.chainunlock(&c.key).unwrap();
                        assert!(
                            v >= c.seen,
                            "reader {} on node {} read {v} after {} (header {h:?})",
                            c.id,
                            c.node,
                            c.seen
                        );
                        c.seen = v;
                        c.left -= 1;
                        c.state = if c.left == 0 {
                            ClientState::Done
                        } else {
                            ClientState::Idle
                        };
                    }
                    Some((h, data))
                        if !c.readonly
                            && h.dmaster == pnn
                            && h.flags.0 & RO_HAVE_DELEGATIONS == 0 =>
                    {
                        let v = if data.is_empty() {
                            0u64
                        } else {
                            u64::from_le_bytes(data.try_into().expect("8-byte counter"))
                        };
                        let new = h.with_data(&(v + 1).to_le_bytes());
                        c.handle
                            .store(&c.key, &new, ctdb_engine::StoreFlag::Replace)
                            .unwrap();
                        c.handle.chainunlock(&c.key).unwrap();
                        self.history
                            .entry(c.key.clone())
                            .or_default()
                            .push((c.node, h.rsn));
                        c.left -= 1;
                        c.state = if c.left == 0 {
                            ClientState::Done
                        } else {
                            ClientState::Idle
                        };
                    }
                    _ => {
                        c.handle.chainunlock(&c.key).unwrap();
                        let reqid = c.next_reqid;
                        c.next_reqid += 1;
                        let mut pkt = Vec::new();
                        Packet::new(
                            Header::new(0, pnn, pnn, reqid),
                            Payload::ReqCall(ReqCall {
                                flags: if c.readonly {
                                    CTDB_IMMEDIATE_MIGRATION | CTDB_WANT_READONLY
                                } else {
                                    CTDB_IMMEDIATE_MIGRATION
                                },
                                db_id: self.db_id,
                                callid: CTDB_NULL_FUNC,
                                hopcount: 0,
                                key: &c.key,
                                calldata: &[],
                            }),
                        )
                        .encode(&mut pkt)
                        .unwrap();
                        let acts = self.nodes[c.node]
                            .m
                            .client_call(c.id, &pkt, Instant::now())
                            .unwrap();
                        self.apply(c.node, acts);
                        c.state = ClientState::Waiting;
                    }
                }
            }
        }
    }

    /// Runs everything that is queued, in order, until nothing moves;
    /// hand-over hold timers run out only when nothing else can happen.
    fn settle(&mut self) {
        self.settle_with(true);
    }

    /// As [`Cluster::settle`], without letting any hold timer run out.
    fn settle_before_timers(&mut self) {
        self.settle_with(false);
    }

    fn settle_with(&mut self, timers: bool) {
        for _ in 0..100_000 {
            let ev = self.events();
            let now = ev.iter().find(|e| !matches!(e, Event::Hold(_)));
            match (now, ev.first()) {
                (Some(e), _) => self.fire(*e),
                (None, Some(e)) if timers => self.fire(*e),
                _ => return,
            }
        }
        panic!("network does not settle");
    }

    /// A client on `node` increments `key` once, everything else in order.
    fn increment(&mut self, id: u32, node: usize, key: &[u8]) {
        let mut c = self.new_client(id, node, key, 1);
        for _ in 0..1000 {
            self.client_step(&mut c, false);
            if c.state == ClientState::Done {
                return;
            }
            self.settle();
        }
        panic!("client on node {node} never got {key:?}");
    }

    fn header(&mut self, node: usize, key: &[u8]) -> Option<(LtdbHeader, Vec<u8>)> {
        let db_id = self.db_id;
        self.nodes[node].dbs.peek_record(db_id, key)
    }

    fn value(&mut self, node: usize, key: &[u8]) -> u64 {
        let (_, d) = self.header(node, key).expect("record");
        u64::from_le_bytes(d.try_into().unwrap())
    }

    fn lmaster(&self, key: &[u8]) -> usize {
        self.nodes[0].dbs.lmaster(key) as usize
    }

    /// The one node that is dmaster of `key` by its own header, checked
    /// against the lmaster's header.
    fn dmaster(&mut self, key: &[u8]) -> usize {
        let mut owners = Vec::new();
        for n in 0..NODES as usize {
            if let Some((h, _)) = self.header(n, key) {
                if h.dmaster == n as u32 {
                    owners.push(n);
                }
            }
        }
        assert_eq!(owners.len(), 1, "dmasters of {key:?}: {owners:?}");
        let lm = self.lmaster(key);
        let (h, _) = self.header(lm, key).expect("the lmaster knows the record");
        assert_eq!(
            h.dmaster as usize, owners[0],
            "lmaster's view of the dmaster"
        );
        owners[0]
    }

    fn check_rsn_history(&self, key: &[u8]) {
        let h = &self.history[key];
        for w in h.windows(2) {
            let ((n0, r0), (n1, r1)) = (w[0], w[1]);
            if n0 == n1 {
                assert!(r1 >= r0, "rsn went back on node {n0}: {r0} -> {r1}");
            } else {
                assert!(
                    r1 > r0,
                    "migration {n0} -> {n1} did not raise the rsn: {r0} -> {r1}"
                );
            }
        }
    }

    fn idle(&self) -> bool {
        self.nodes
            .iter()
            .all(|n| n.m.pending_calls() == 0 && n.m.jobs_in_flight() == 0)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[derive(Debug, Clone, Copy)]
enum Event {
    Link((u32, u32)),
    Op(usize),
    Retry(usize),
    Tick(usize),
    Hold(usize),
}

/// Keys whose lmaster is each node in turn (so every role is exercised).
fn keys_by_lmaster(c: &Cluster) -> Vec<Vec<u8>> {
    let mut out: Vec<Option<Vec<u8>>> = vec![None; NODES as usize];
    for i in 0u32.. {
        let k = format!("key-{i}").into_bytes();
        let lm = c.lmaster(&k);
        if out[lm].is_none() {
            out[lm] = Some(k);
        }
        if out.iter().all(Option::is_some) {
            break;
        }
    }
    out.into_iter().map(Option::unwrap).collect()
}

#[test]
fn ring_of_fetches_moves_the_record_to_each_fetcher() {
    let mut c = Cluster::new("ring", true);
    let keys = keys_by_lmaster(&c);
    for key in &keys {
        let mut last_rsn = 0;
        for round in 0..4u32 {
            for node in 0..NODES as usize {
                c.increment(round * 10 + node as u32 + 1, node, key);
                assert_eq!(c.dmaster(key), node, "dmaster after a fetch on node {node}");
                let (h, _) = c.header(node, key).unwrap();
                assert!(h.rsn > last_rsn || (round == 0 && node == 0));
                last_rsn = h.rsn;
                assert_eq!(
                    c.value(node, key),
                    u64::from(round * NODES + node as u32 + 1)
                );
            }
        }
        c.check_rsn_history(key);
        // A fetch on the node that is dmaster needs no call.
        c.increment(99, 2, key);
        assert_eq!(c.dmaster(key), 2);
        assert_eq!(c.value(2, key), u64::from(4 * NODES + 1));
        assert!(c.idle());
    }
    // Hops were counted where calls were served.
    let served: u32 = c.nodes.iter().map(|n| n.hops).sum();
    assert!(served > 0);
    let db_id = c.db_id;
    let buckets: u32 = c.nodes[0]
        .dbs
        .find(db_id)
        .unwrap()
        .statistics()
        .hop_count_bucket
        .iter()
        .sum();
    assert!(buckets > 0, "node 0 counted the calls it served");
}

/// Runs one seeded interleaving; (migrations, busy-lock retries, lock
/// waits counted).
fn random_run(seed: u64, sharded: bool) -> (usize, u32, u32) {
    let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let mut c = Cluster::new(&format!("rand{seed}"), sharded);
    let mut keys = keys_by_lmaster(&c);
    keys.truncate(1 + rng.below(2));
    let per_client = 3 + rng.below(4) as u32;
    let mut clients = Vec::new();
    let mut expected: HashMap<Vec<u8>, u64> = HashMap::new();
    for node in 0..NODES as usize {
        for j in 0..2 {
            let key = keys[rng.below(keys.len())].clone();
            *expected.entry(key.clone()).or_default() += u64::from(per_client);
            let id = (node * 10 + j + 1) as u32;
            clients.push(c.new_client(id, node, &key, per_client));
        }
    }
    let mut steps = 0u32;
    loop {
        steps += 1;
        assert!(steps < 500_000, "seed {seed}: no progress");
        let events = c.events();
        let runnable: Vec<usize> = (0..clients.len())
            .filter(|&i| clients[i].state != ClientState::Done)
            .collect();
        if events.is_empty() && runnable.is_empty() {
            break;
        }
        let n = events.len() + runnable.len();
        let pick = rng.below(n);
        if pick < events.len() {
            c.fire(events[pick]);
        } else {
            let i = runnable[pick - events.len()];
            let hold = rng.below(4) == 0;
            let mut cl = clients.swap_remove(i);
            c.client_step(&mut cl, hold);
            clients.push(cl);
        }
    }
    for (key, want) in &expected {
        let owner = c.dmaster(key);
        assert_eq!(
            c.value(owner, key),
            *want,
            "seed {seed}: lost update on {key:?}"
        );
        c.check_rsn_history(key);
    }
    assert!(c.idle(), "seed {seed}: calls left over");
    assert!(
        c.lock_waits <= c.retried,
        "seed {seed}: {} lock waits counted for {} busy retries",
        c.lock_waits,
        c.retried
    );
    for n in &c.nodes {
        assert_eq!(n.m.lock_waits(), 0, "seed {seed}: a lock wait left open");
    }
    let migrations = c
        .history
        .values()
        .map(|h| h.windows(2).filter(|w| w[0].0 != w[1].0).count())
        .sum();
    (migrations, c.retried, c.lock_waits)
}

#[test]
fn random_interleavings_lose_no_update() {
    let seeds: u64 = std::env::var("MIGRATE_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(40);
    let (mut migrations, mut retried, mut waits) = (0, 0, 0);
    for seed in 0..seeds {
        match std::panic::catch_unwind(|| random_run(seed, seed % 2 == 0)) {
            Ok((m, r, w)) => {
                migrations += m;
                retried += r;
                waits += w;
            }
            Err(e) => {
                eprintln!("random_interleavings_lose_no_update failed with seed {seed}");
                std::panic::resume_unwind(e);
            }
        }
    }
    eprintln!(
        "{seeds} seeds: {migrations} migrations, {retried} busy-lock retries, {waits} lock waits"
    );
    assert!(migrations as u64 > seeds, "records moved between nodes");
    if ctdb_daemon::db::mutexes_work() {
        // Clients holding a chain lock make record steps wait, and each
        // wait is counted once it ends.
        assert!(retried > 0, "busy chain locks were retried");
        assert!(waits > 0, "lock waits were counted");
    }
}

#[test]
fn lost_call_is_resent_after_a_new_generation() {
    let mut c = Cluster::new("resend", false);
    let keys = keys_by_lmaster(&c);
    // A record owned by node 1 whose lmaster is node 2.
    let key = keys[2].clone();
    c.increment(1, 1, &key);
    assert_eq!(c.dmaster(&key), 1);
    // Node 0's call is lost on the way (node 2's link is down).
    c.blackhole = Some(2);
    let mut cl = c.new_client(5, 0, &key, 1);
    c.client_step(&mut cl, false);
    assert_eq!(cl.state, ClientState::Waiting);
    c.settle();
    assert_eq!(c.nodes[0].m.pending_calls(), 1);
    // Recovery: new generation everywhere, then the resend.
    c.blackhole = None;
    for n in &mut c.nodes {
        n.m.set_generation(8);
    }
    let acts = c.nodes[0].m.resend_all(Instant::now());
    c.apply(0, acts);
    c.settle();
    c.client_step(&mut cl, false);
    assert_eq!(cl.state, ClientState::Idle, "the resent call was answered");
    c.client_step(&mut cl, false);
    assert_eq!(cl.state, ClientState::Done);
    assert_eq!(c.dmaster(&key), 0);
    assert_eq!(c.value(0, &key), 2);
    assert!(c.idle());
}

#[test]
fn sticky_record_is_pinned_down_on_its_new_dmaster() {
    let mut c = Cluster::new("sticky", false);
    let pindown = std::time::Duration::from_millis(300);
    for n in &mut c.nodes {
        n.m.set_sticky(ctdb_daemon::db::migrator::StickyConfig {
            dbs: [c.db_id].into_iter().collect(),
            hopcount_make_sticky: 0,
            duration: std::time::Duration::from_secs(60),
            pindown,
        });
    }
    let db_id = c.db_id;
    let key = keys_by_lmaster(&c)[2].clone();
    c.increment(1, 0, &key);
    // Node 0 serves node 1's call: the record becomes sticky on node 0.
    c.increment(2, 1, &key);
    assert!(c.nodes[0].m.is_sticky(db_id, &key));
    // Node 0 gets it back and pins it down.
    c.increment(3, 0, &key);
    let t = Instant::now();
    assert!(c.nodes[0].m.is_pinned(db_id, &key, t));
    // Node 2 must wait until the pin-down ends.
    let mut cl = c.new_client(4, 2, &key, 1);
    c.client_step(&mut cl, false);
    c.settle();
    c.client_step(&mut cl, false);
    assert_eq!(
        cl.state,
        ClientState::Waiting,
        "node 2 waits while pinned down"
    );
    assert_eq!(c.dmaster(&key), 0);
    let acts = c.nodes[0].m.tick(Instant::now());
    c.apply(0, acts);
    c.settle();
    c.client_step(&mut cl, false);
    assert_eq!(
        cl.state,
        ClientState::Waiting,
        "a tick before the end keeps it"
    );
    std::thread::sleep(pindown.saturating_sub(t.elapsed()) + std::time::Duration::from_millis(20));
    let acts = c.nodes[0].m.tick(Instant::now());
    c.apply(0, acts);
    c.settle();
    c.client_step(&mut cl, false);
    assert_eq!(cl.state, ClientState::Idle, "released after the pin-down");
    c.client_step(&mut cl, false);
    assert_eq!(cl.state, ClientState::Done);
    assert_eq!(c.dmaster(&key), 2);
    assert_eq!(c.value(2, &key), 4);
    assert!(c.idle());
}

#[test]
fn fetch_collapse_sends_one_call_for_clients_waiting_on_one_key() {
    let mut c = Cluster::new("collapse", false);
    let keys = keys_by_lmaster(&c);
    let key = keys[1].clone();
    c.increment(1, 2, &key);
    assert_eq!(c.dmaster(&key), 2);
    // Three clients of node 0 ask at once.
    let mut clients: Vec<Client> = (10..13).map(|id| c.new_client(id, 0, &key, 1)).collect();
    for cl in &mut clients {
        c.client_step(cl, false);
        assert_eq!(cl.state, ClientState::Waiting);
    }
    let calls_out: usize = c
        .links
        .iter()
        .filter(|((from, _), _)| *from == 0)
        .map(|(_, q)| q.len())
        .sum::<usize>()
        + c.nodes[0].ops.len();
    assert_eq!(
        c.nodes[0].m.pending_calls(),
        0,
        "the first call's step has not run yet"
    );
    assert_eq!(calls_out, 1, "one record step for three clients");
    c.settle();
    assert_eq!(c.nodes[0].m.pending_calls(), 0);
    // Each client is answered, finds the record local and increments it.
    for _ in 0..4 {
        for cl in &mut clients {
            c.client_step(cl, false);
        }
        c.settle();
    }
    assert!(clients.iter().all(|cl| cl.state == ClientState::Done));
    assert_eq!(c.dmaster(&key), 0);
    assert_eq!(c.value(0, &key), 4);
    // One migration to node 0 for the three of them.
    let moves = c.history[&key]
        .windows(2)
        .filter(|w| w[0].0 != w[1].0)
        .count();
    assert_eq!(moves, 1, "history {:?}", c.history[&key]);
    assert!(c.idle());
}

impl Cluster {
    /// A client on `node` replaces the data of `key` (this node must be its
    /// dmaster), keeping the header, as smbd does under its chain lock.
    fn write_local(&mut self, node: usize, key: &[u8], data: &[u8]) {
        let mut h = self.nodes[node].dbs.client_handle(self.db_id).unwrap();
        h.chainlock(key).unwrap();
        let v = h.fetch(key).unwrap().expect("record on its dmaster");
        let (hdr, _) = LtdbHeader::split(&v).unwrap();
        assert_eq!(hdr.dmaster, node as u32);
        h.store(key, &hdr.with_data(data), ctdb_engine::StoreFlag::Replace)
            .unwrap();
        h.chainunlock(key).unwrap();
    }

    /// A client of `node` sends one REQ_CALL and waits for the reply's data.
    fn call(&mut self, id: u32, node: usize, key: &[u8], flags: u32, callid: u32) -> Vec<u8> {
        let mut pkt = Vec::new();
        Packet::new(
            Header::new(0, node as u32, node as u32, 77),
            Payload::ReqCall(ReqCall {
                flags,
                db_id: self.db_id,
                callid,
                hopcount: 0,
                key,
                calldata: &[],
            }),
        )
        .encode(&mut pkt)
        .unwrap();
        let acts = self.nodes[node]
            .m
            .client_call(id, &pkt, Instant::now())
            .unwrap();
        self.apply(node, acts);
        self.settle();
        let mut got = self.nodes[node].replies.remove(&id).unwrap_or_default();
        assert_eq!(got.len(), 1, "one reply for client {id} on node {node}");
        let pkt = got.pop().unwrap();
        let p = Packet::decode(&pkt, &Default::default()).unwrap();
        let Payload::ReplyCall(r) = p.payload else {
            panic!("client {id} got {:?}", p.payload)
        };
        assert_eq!(r.status, 0);
        assert_eq!(p.header.reqid, 77);
        r.data.to_vec()
    }
}

/// smbd's `ctdbd_parse` asks for a record whose local copy it cannot use
/// with CTDB_FETCH_FUNC | CTDB_WANT_READONLY. On a database without
/// read-only support the daemon drops WANT_READONLY and runs a plain
/// FETCH, so the client must get the record's data as it is (a regression
/// stripped 24 bytes off it when this node was the dmaster, which smbd read
/// as a damaged locking.tdb record and panicked). With read-only support
/// the call runs as FETCH_WITH_HEADER and only the header is taken off.
/// Node 2 serves its records from data-core shards.
#[test]
fn readonly_fetch_returns_the_record_data() {
    for readonly in [false, true] {
        let mut c = Cluster::new(&format!("rofetch{}", readonly as u8), true);
        if readonly {
            let db_id = c.db_id;
            for n in &mut c.nodes {
                let o = n
                    .dbs
                    .handle_control(&ControlCtx::default(), 129, &db_id.to_le_bytes())
                    .expect("SET_DB_READONLY is a database control");
                assert_eq!(o.status, 0, "SET_DB_READONLY");
                assert!(n.dbs.find(db_id).unwrap().readonly());
            }
        }
        let mut id = 1000;
        for i in 0..6u32 {
            let node = (i % NODES) as usize;
            let key = format!("rofetch-{i}").into_bytes();
            c.increment(id, node, &key);
            id += 1;
            let data: Vec<u8> = (0..60u8).map(|b| b.wrapping_mul(7) ^ i as u8).collect();
            c.write_local(node, &key, &data);
            for (what, flags) in [("FETCH", 0), ("FETCH + WANT_READONLY", CTDB_WANT_READONLY)] {
                let got = c.call(id, node, &key, flags, CTDB_FETCH_FUNC);
                id += 1;
                assert_eq!(
                    got, data,
                    "readonly db {readonly}: {what} on the dmaster (node {node}) answers the data"
                );
            }
            if readonly {
                // WITH_HEADER keeps its header.
                let got = c.call(
                    id,
                    node,
                    &key,
                    CTDB_WANT_READONLY,
                    CTDB_FETCH_WITH_HEADER_FUNC,
                );
                id += 1;
                let (_, d) = LtdbHeader::split(&got).expect("header in the reply");
                assert_eq!(d, &data[..]);
            } else {
                // From another node: the record migrates there for the fetch.
                let other = (node + 1) % NODES as usize;
                let got = c.call(id, other, &key, CTDB_WANT_READONLY, CTDB_FETCH_FUNC);
                id += 1;
                assert_eq!(got, data, "FETCH + WANT_READONLY from node {other}");
                assert_eq!(c.dmaster(&key), other);
            }
            assert!(c.idle());
        }
    }
}

impl Cluster {
    /// SET_DB_READONLY on every node.
    fn set_readonly(&mut self) {
        let db_id = self.db_id;
        for n in &mut self.nodes {
            let o = n
                .dbs
                .handle_control(&ControlCtx::default(), 129, &db_id.to_le_bytes())
                .expect("SET_DB_READONLY is a database control");
            assert_eq!(o.status, 0, "SET_DB_READONLY");
        }
    }

    /// A reader on `node` reads `key` once, everything else in order; the
    /// value and whether it had to ask its daemon.
    fn read_once(&mut self, id: u32, node: usize, key: &[u8]) -> (u64, bool) {
        let mut c = self.new_reader(id, node, key, 1);
        let mut asked = false;
        for _ in 0..1000 {
            self.client_step(&mut c, false);
            if c.state == ClientState::Done {
                return (c.seen, asked);
            }
            asked |= c.state == ClientState::Waiting;
            self.settle();
        }
        panic!("reader on node {node} never read {key:?}");
    }

    fn ro_flags(&mut self, node: usize, key: &[u8]) -> u32 {
        self.header(node, key)
            .map(|(h, _)| h.flags.0 & RO_FLAGS)
            .unwrap_or(0)
    }
}

/// Upstream's read-only records step by step: the dmaster hands read-only
/// copies to two nodes (HAVE_DELEGATIONS on its record, HAVE_READONLY and
/// rsn - 2 on the copies), the copies serve reads without a call, and a
/// write on another node first revokes them (UPDATE_RECORD to each
/// holder, REVOKE_COMPLETE, flags cleared) and then migrates the record.
#[test]
fn readonly_copies_are_delegated_then_revoked_by_a_write() {
    let mut c = Cluster::new("rodeleg", true);
    c.set_readonly();
    let db_id = c.db_id;
    for (k, key) in keys_by_lmaster(&c).into_iter().enumerate() {
        let base = (k * 100) as u32;
        c.increment(base + 1, 0, &key);
        assert_eq!(c.dmaster(&key), 0);
        let mut asked = Vec::new();
        for node in [1, 2] {
            let (v, a) = c.read_once(base + 10 + node as u32, node, &key);
            assert_eq!(v, 1, "node {node} reads the dmaster's value");
            asked.push(a);
        }
        assert_eq!(asked, [true, true], "the first reads ask the dmaster");
        let (dm, _) = c.header(0, &key).unwrap();
        assert_eq!(
            dm.flags.0 & RO_FLAGS,
            RO_HAVE_DELEGATIONS,
            "key {k}: dmaster flags"
        );
        assert_eq!(dm.dmaster, 0);
        for node in [1, 2] {
            let (h, d) = c.header(node, &key).unwrap();
            assert_eq!(
                h.flags.0 & RO_FLAGS,
                RO_HAVE_READONLY,
                "key {k}: copy on {node}"
            );
            assert_eq!(h.dmaster, 0);
            assert_eq!(
                h.rsn + 2,
                dm.rsn,
                "the copy's rsn is two below the dmaster's"
            );
            assert_eq!(d, 1u64.to_le_bytes());
        }
        assert_eq!(c.nodes[0].m.delegation_holders(db_id, &key), [1, 2]);
        // The copies serve reads locally.
        for node in [1, 2] {
            let (v, a) = c.read_once(base + 20 + node as u32, node, &key);
            assert_eq!((v, a), (1, false), "node {node} reads its copy");
        }
        let (revokes, delegations) = (c.nodes[0].ro_revokes, c.nodes[0].ro_delegations);
        // A write on node 1 revokes both copies, then migrates the record.
        c.increment(base + 30, 1, &key);
        assert_eq!(c.nodes[0].ro_revokes, revokes + 1, "one revoke counted");
        assert_eq!(c.nodes[0].ro_delegations, delegations);
        assert_eq!(c.dmaster(&key), 1);
        for node in 0..NODES as usize {
            assert_eq!(
                c.ro_flags(node, &key),
                0,
                "key {k}: flags left on node {node}"
            );
        }
        assert!(c.nodes[0].m.delegation_holders(db_id, &key).is_empty());
        assert_eq!(c.nodes[0].m.revokes_in_progress(), 0);
        // Everyone reads the new value; 0 and 2 through delegations of 1.
        for node in 0..NODES as usize {
            let (v, _) = c.read_once(base + 40 + node as u32, node, &key);
            assert_eq!(v, 2, "node {node} reads the written value");
        }
        assert_eq!(c.nodes[1].m.delegation_holders(db_id, &key), [0, 2]);
        // A write on the dmaster itself revokes too.
        let revokes = c.nodes[1].ro_revokes;
        c.increment(base + 50, 1, &key);
        assert_eq!(c.value(1, &key), 3);
        for node in 0..NODES as usize {
            assert_eq!(
                c.ro_flags(node, &key),
                0,
                "key {k}: flags left on node {node}"
            );
        }
        assert_eq!(c.nodes[1].ro_revokes, revokes + 1);
        assert!(c.idle());
    }
}

/// One seeded interleaving of writers (nodes 0 and 1) and readers (every
/// node) on a read-only database; (delegations, revokes).
fn random_readonly_run(seed: u64) -> (u32, u32) {
    let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let mut c = Cluster::new(&format!("rorand{seed}"), seed.is_multiple_of(2));
    c.set_readonly();
    let keys = keys_by_lmaster(&c);
    let key = keys[rng.below(keys.len())].clone();
    let writes = 3 + rng.below(4) as u32;
    let mut clients = Vec::new();
    for node in 0..2 {
        clients.push(c.new_client(node as u32 + 1, node, &key, writes));
    }
    for node in 0..NODES as usize {
        clients.push(c.new_reader(node as u32 + 10, node, &key, 4 + rng.below(6) as u32));
    }
    let mut steps = 0u32;
    loop {
        steps += 1;
        assert!(steps < 500_000, "seed {seed}: no progress");
        let events = c.events();
        let runnable: Vec<usize> = (0..clients.len())
            .filter(|&i| clients[i].state != ClientState::Done)
            .collect();
        if events.is_empty() && runnable.is_empty() {
            break;
        }
        let pick = rng.below(events.len() + runnable.len());
        if pick < events.len() {
            c.fire(events[pick]);
        } else {
            let i = runnable[pick - events.len()];
            let hold = rng.below(4) == 0;
            let mut cl = clients.swap_remove(i);
            c.client_step(&mut cl, hold);
            clients.push(cl);
        }
    }
    let total = u64::from(2 * writes);
    let owner = c.dmaster(&key);
    assert_eq!(c.value(owner, &key), total, "seed {seed}: lost update");
    c.check_rsn_history(&key);
    for node in 0..NODES as usize {
        let (v, _) = c.read_once(100 + node as u32, node, &key);
        assert_eq!(
            v, total,
            "seed {seed}: node {node} reads an old value at the end"
        );
    }
    assert!(c.idle(), "seed {seed}: calls left over");
    let d = c.nodes.iter().map(|n| n.ro_delegations).sum();
    let r = c.nodes.iter().map(|n| n.ro_revokes).sum();
    (d, r)
}

/// Random interleavings of writers and read-only readers: no update is
/// lost, no reader reads a value older than one it read before (checked in
/// every read), and everyone ends with the last value.
#[test]
fn random_readonly_interleavings_never_read_backwards() {
    let seeds: u64 = std::env::var("MIGRATE_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(40);
    let (mut delegations, mut revokes) = (0, 0);
    for seed in 0..seeds {
        match std::panic::catch_unwind(|| random_readonly_run(seed)) {
            Ok((d, r)) => {
                delegations += d;
                revokes += r;
            }
            Err(e) => {
                eprintln!(
                    "random_readonly_interleavings_never_read_backwards failed with seed {seed}"
                );
                std::panic::resume_unwind(e);
            }
        }
    }
    eprintln!("{seeds} seeds: {delegations} delegations, {revokes} revokes");
    assert!(delegations > 0 && revokes > 0);
}

/// A revoke that cannot reach a holder fails: REVOKING is cleared, the
/// write that waited for it goes again after the grace period (and the
/// revoke with it), and succeeds once the holder answers.
#[test]
fn failed_revoke_is_retried_until_every_holder_answers() {
    let mut c = Cluster::new("rofail", false);
    c.set_readonly();
    let db_id = c.db_id;
    let key = keys_by_lmaster(&c)[0].clone();
    c.increment(1, 0, &key);
    for node in [1, 2] {
        assert_eq!(c.read_once(10 + node as u32, node, &key), (1, true));
    }
    c.blackhole = Some(2);
    let mut w = c.new_client(20, 1, &key, 1);
    c.client_step(&mut w, false);
    assert_eq!(w.state, ClientState::Waiting);
    // Everything but the grace timer.
    for _ in 0..10_000 {
        let ev: Vec<Event> = c
            .events()
            .into_iter()
            .filter(|e| !matches!(e, Event::Tick(_)))
            .collect();
        let Some(e) = ev.first() else { break };
        c.fire(*e);
    }
    assert_eq!(c.nodes[0].m.revokes_in_progress(), 0);
    assert_eq!(
        c.nodes[0].m.delayed_calls(),
        1,
        "the write waits out the grace"
    );
    assert_eq!(c.ro_flags(0, &key), RO_HAVE_DELEGATIONS, "REVOKING cleared");
    assert_eq!(c.ro_flags(1, &key), 0, "node 1's copy was revoked");
    assert_eq!(
        c.ro_flags(2, &key),
        RO_HAVE_READONLY,
        "node 2 was unreachable"
    );
    assert_eq!(c.nodes[0].m.delegation_holders(db_id, &key), [1, 2]);
    assert_eq!(c.nodes[0].ro_revokes, 0);
    // Node 2 is back: the retried revoke reaches both, the write runs.
    c.blackhole = None;
    c.settle();
    for _ in 0..10 {
        c.client_step(&mut w, false);
        c.settle();
    }
    assert_eq!(w.state, ClientState::Done);
    assert_eq!(c.nodes[0].ro_revokes, 1);
    assert_eq!(c.dmaster(&key), 1);
    assert_eq!(c.value(1, &key), 2);
    for node in 0..NODES as usize {
        assert_eq!(c.ro_flags(node, &key), 0, "flags left on node {node}");
    }
    assert!(c.idle());
}

/// Client 2 on node 1 asks for a record of node 0, and before the answer
/// reaches it client 3 on node 2 asks too. Returns the cluster with
/// everything delivered that does not need a hold timer, and the clients.
fn contended_fetch(tag: &str, hold: bool) -> (Cluster, Vec<u8>, Client, Client) {
    let mut c = Cluster::new(tag, false);
    if !hold {
        for n in &mut c.nodes {
            n.m.set_handover_hold(std::time::Duration::ZERO);
        }
    }
    let key = keys_by_lmaster(&c)[0].clone();
    c.increment(1, 0, &key);
    let mut a = c.new_client(2, 1, &key, 1);
    c.client_step(&mut a, false);
    assert_eq!(a.state, ClientState::Waiting);
    let mut b = c.new_client(3, 2, &key, 1);
    c.client_step(&mut b, false);
    assert_eq!(b.state, ClientState::Waiting);
    c.settle_before_timers();
    (c, key, a, b)
}

/// Client `cl` runs until done; how many calls it made.
fn finish_client(c: &mut Cluster, cl: &mut Client) -> u32 {
    for _ in 0..100 {
        c.client_step(cl, false);
        if cl.state == ClientState::Done {
            return cl.next_reqid - 1;
        }
        c.settle();
    }
    panic!("client {} on node {} never finished", cl.id, cl.node);
}

#[test]
fn handover_hold_keeps_a_record_for_the_client_it_came_for() {
    let (mut c, key, mut a, mut b) = contended_fetch("hold-client", true);
    // The record reached node 1 for client 2; node 2's call waits there.
    assert_eq!(c.dmaster(&key), 1);
    assert_eq!(c.nodes[1].m.holds(), 1);
    assert_eq!(c.nodes[1].hold_timers.len(), 1, "a timer bounds the wait");
    c.client_step(&mut b, false);
    assert_eq!(b.state, ClientState::Waiting, "node 2 is not answered yet");
    // Client 2 finds the record at home with its first call.
    c.client_step(&mut a, false);
    assert_eq!(a.state, ClientState::Idle);
    c.client_step(&mut a, false);
    assert_eq!(a.state, ClientState::Done);
    assert_eq!(a.next_reqid - 1, 1, "one call was enough");
    // Its next packet (any kind, in the daemon) ends the hold.
    let acts = c.nodes[1].m.client_active(2, Instant::now());
    c.apply(1, acts);
    assert_eq!(c.nodes[1].m.holds(), 0);
    c.settle_before_timers();
    assert_eq!(finish_client(&mut c, &mut b), 1);
    assert_eq!(c.dmaster(&key), 2);
    assert_eq!(c.value(2, &key), 3);
    // The timer that was armed finds nothing left to do.
    c.settle();
    assert_eq!(c.dmaster(&key), 2);
    assert!(c.idle());
}

#[test]
fn handover_hold_ends_on_its_timer() {
    let (mut c, key, mut a, mut b) = contended_fetch("hold-timer", true);
    assert_eq!(c.nodes[1].m.holds(), 1);
    // Client 2 stays away; the timer lets node 2's call go.
    c.run_hold_timer(1);
    assert_eq!(c.nodes[1].m.holds(), 0);
    c.settle_before_timers();
    assert_eq!(c.dmaster(&key), 2);
    assert_eq!(finish_client(&mut c, &mut b), 1);
    // Client 2 comes too late and has to ask again.
    assert_eq!(finish_client(&mut c, &mut a), 2);
    assert_eq!(c.dmaster(&key), 1);
    assert_eq!(c.value(1, &key), 3);
    assert!(c.idle());
}

#[test]
fn without_handover_hold_a_waiting_node_takes_the_record_first() {
    let (mut c, key, mut a, mut b) = contended_fetch("hold-none", false);
    assert_eq!(c.nodes[1].m.holds(), 0);
    assert!(c.nodes[1].hold_timers.is_empty());
    // Node 2's call was served as soon as the record reached node 1.
    assert_eq!(c.dmaster(&key), 2);
    assert_eq!(finish_client(&mut c, &mut b), 1);
    assert_eq!(
        finish_client(&mut c, &mut a),
        2,
        "client 2 had to ask again"
    );
    assert_eq!(c.value(1, &key), 3);
    assert!(c.idle());
}
