//! The protocol half of record migration, sans I/O: the control core's
//! tables of calls waiting on other nodes, and what each packet does to
//! them (upstream's `ctdb_call.c` and the client side of
//! `ctdb_daemon.c`).
//!
//! Why sans I/O: the same state machine must run in the daemon (packets
//! over TCP, records on data cores reached through channels) and in an
//! in-process test that moves packets between three nodes by hand. So the
//! [`Migrator`] takes packets and step results in and gives [`Action`]s
//! out; the caller ([`crate::calls`], or a test) sends packets, runs
//! [`RecordOp`]s on the core that owns the record and feeds the
//! [`RecordStep`] back with [`Migrator::record_done`].
//!
//! # The flow of one migration
//!
//! ```text
//! client ──REQ_CALL──▶ A: not dmaster ──REQ_CALL(hop 0)──▶ header's dmaster / lmaster L
//! L: not dmaster ──REQ_CALL(hop+1)──▶ dmaster D (L's header names it)
//! D: dmaster ──REQ_DMASTER──▶ L ──REPLY_DMASTER──▶ A  (or D = L: REPLY_DMASTER at once)
//! A: becomes dmaster, runs the call ──REPLY_CALL──▶ client
//! ```
//!
//! # Tables
//!
//! * *pending*: a local client's call sent to another node, by a request
//!   id whose top byte is 0 (the transport's "reply to the control core");
//!   completed by REPLY_CALL, REPLY_DMASTER (or REQ_DMASTER when this node
//!   is the lmaster) or REPLY_ERROR (upstream then leaves the client
//!   without an answer; so do we). After a recovery every pending call is
//!   resent through this node with a new request id
//!   ([`Migrator::resend_all`], upstream's `ctdb_call_resend_all` on thaw).
//! * *fetch collapse* (tunable FetchCollapse): while a client's call for
//!   a key is in flight, later client calls for the same key wait and are
//!   handed in again, in order, when it completes (or after 30 s). Ours
//!   also holds them while the first call's record step runs, since with
//!   data cores that step is asynchronous.
//! * *dmaster defer*: while a REQ_DMASTER or REPLY_DMASTER for a key is
//!   being applied, node REQ_CALLs for the key wait behind it, so they see
//!   the new dmaster (upstream's `dmaster_defer_*`).
//! * *hand-over hold* (ours, not upstream's): a record that has just
//!   arrived for a local client's call stays here until that client has
//!   had its turn: node REQ_CALLs for the key wait until the client sends
//!   this migrator anything else (a later call; on the control core any
//!   packet, [`Migrator::client_active`]) or [`HANDOVER_HOLD`] has passed.
//!   Without it, a node whose call for a contended record was already
//!   waiting here (dmaster defer) took the record back before the client
//!   that asked for it could lock its chain, and the client had to ask
//!   again: clustered smbd with one share-mode record contended from two
//!   nodes made 3.1 REQ_CALLs per open instead of Samba's 1.9. A client
//!   that has locked the chain by the time the hold ends keeps the record
//!   until it unlocks (the node's step then waits for the chain lock).
//! * *jobs*: record steps in flight or waiting to be retried (busy chain
//!   lock, frozen database). A node's packet retried after the generation
//!   changed is dropped, as upstream discards previous-generation lock
//!   waits; a client's is retried until it runs.
//!
//! # Read-only records (databases with SET_DB_READONLY)
//!
//! A call with CTDB_WANT_READONLY does not move the record: the dmaster
//! flags it HAVE_DELEGATIONS and answers with a copy flagged
//! HAVE_READONLY, which the requester stores in its file (when newer than
//! its own) before answering its client; the client library then reads
//! that copy without asking again. The dmaster remembers the holders
//! (*delegations*, upstream's tracking database). A call that needs the
//! record itself finds it flagged REVOKING instead and waits in the
//! *revoke* of the key: UPDATE_RECORD with a plain copy goes to every
//! holder ([`Action::UpdateRecord`], answered through
//! [`Migrator::revoke_reply`]); when all answered, a record step marks it
//! REVOKE_COMPLETE (or clears REVOKING if a holder failed) and the
//! waiting calls go again: writes at once, read-only calls after
//! [`REVOKE_GRACE`] (all of them after a failure), as upstream's revoke
//! child does.
//!
//! MaxRedirectCount is obsolete in 4.17 and not enforced; a hop count
//! whose value mod 100 exceeds 95 is logged, as upstream does.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::time::{Duration, Instant};

use ctdb_engine::ltdb::{LtdbHeader, RecordFlags, LTDB_HEADER_SIZE};
use ctdb_protocol::constants::{
    CTDB_CURRENT_NODE, CTDB_FETCH_FUNC, CTDB_FETCH_WITH_HEADER_FUNC, CTDB_WANT_READONLY,
};
use ctdb_protocol::types::RecBufferBuilder;
use ctdb_protocol::{
    DecodeLimits, Header, Packet, Payload, ReplyCall, ReplyDmaster, ReplyError, ReqCall, ReqDmaster,
};

use super::migrate::{Origin, RecordOp, RecordStep};
use super::ShardCall;

/// How long a record that arrived for a local client stays at most before
/// a node's call may take it away (module docs, *hand-over hold*): longer
/// than a client needs to wake up and lock the chain on a busy machine,
/// short against a call's round trip to another node and back.
pub const HANDOVER_HOLD: Duration = Duration::from_micros(300);

/// How long client calls wait behind a fetch in flight before they are
/// handed in again anyway (upstream: 30 s).
pub const FETCH_COLLAPSE_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a step on a frozen database waits before it is tried again.
const DEFER_RETRY: Duration = Duration::from_millis(100);

/// After a revoke, read-only calls wait this long so the writes that
/// waited for it go first; after a failed revoke every waiting call does
/// (upstream: one second).
pub const REVOKE_GRACE: Duration = Duration::from_secs(1);

/// A record flagged REVOKING with no revoke of this daemon behind it
/// (its start was lost to an error) is cleared after this long.
const STALE_REVOKING: Duration = Duration::from_secs(2);

/// Something for the caller to do.
#[derive(Debug, Clone)]
pub enum Action {
    /// Send a whole packet to another node (never this one: packets for
    /// this node are handled inside).
    Send { dest: u32, pkt: Vec<u8> },
    /// Send a whole packet to a local client.
    Client { client: u32, pkt: Vec<u8> },
    /// Run a record step on the core owning the record, then hand the
    /// result to [`Migrator::record_done`] with this ticket.
    Record { ticket: u64, op: RecordOp },
    /// Call [`Migrator::retry`] with this ticket after `after`, or sooner
    /// once the chain lock of `busy` (database id, key), which the step
    /// found held, is free.
    Retry {
        ticket: u64,
        after: Duration,
        busy: Option<(u32, Vec<u8>)>,
    },
    /// Call [`Migrator::hold_expired`] with these after `after`: the end
    /// of a hand-over hold that node calls now wait behind. `client`, the
    /// one it holds for: any packet from it should reach
    /// [`Migrator::client_active`] to end the hold sooner.
    HoldTimer {
        db_id: u32,
        key: Vec<u8>,
        id: u64,
        client: u32,
        after: Duration,
    },
    /// A protocol error that upstream answers with a recovery.
    Recover,
    /// A node's call was served here after `hopcount` hops (statistics).
    Hop { hopcount: u32 },
    /// Send UPDATE_RECORD (control data `data`) to node `dest` to revoke
    /// its read-only copy; report the answer with
    /// [`Migrator::revoke_reply`] and this `revoke` id.
    UpdateRecord {
        revoke: u64,
        dest: u32,
        data: Vec<u8>,
    },
    /// Count a daemon-wide statistic.
    Count(Counter),
}

/// Daemon-wide statistics the migrator counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counter {
    /// `total_ro_delegations`: a read-only copy handed to a node.
    RoDelegation,
    /// `total_ro_revokes`: the read-only copies of a record revoked.
    RoRevoke,
    /// A record step of database `db_id` found its chain locked (smbd at
    /// work on the record) and got the lock `micros` µs after it first
    /// found it so: upstream's lock statistics (`locks.num_calls`, the
    /// latency and its buckets), daemon-wide and per database.
    LockWait { db_id: u32, micros: u64 },
}

/// Who sent a call that waits for a revoke.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Src {
    Client(u32),
    Node(u32),
}

/// A call waiting for the revoke of its record's read-only copies.
#[derive(Debug)]
struct DeferredCall {
    src: Src,
    readonly: bool,
    pkt: Vec<u8>,
}

/// A revoke in progress on this (dmaster) node.
#[derive(Debug)]
struct Revoke {
    id: u64,
    /// The record's rsn when the revoke started; `None` while only calls
    /// that saw the REVOKING flag know of it.
    rsn: Option<u64>,
    since: Instant,
    /// Holders that have not answered their UPDATE_RECORD yet.
    waiting: BTreeSet<u32>,
    ok: bool,
    finishing: bool,
    calls: Vec<DeferredCall>,
}

type RecKey = (u32, Vec<u8>);

/// Packets waiting, with the node (or client) they came from.
type Queued = VecDeque<(u32, Vec<u8>)>;

#[derive(Debug)]
struct Pending {
    client: u32,
    client_reqid: u32,
    client_callid: u32,
    readonly_fetch: bool,
    /// The call as sent (flags and call id as adjusted for the node).
    call: ShardCall,
    dest: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Owner {
    Job(u64),
    Pending(u32),
}

#[derive(Debug)]
struct Collapse {
    owner: Owner,
    since: Instant,
    queue: VecDeque<(u32, Vec<u8>)>,
}

/// A record kept for the local client it just arrived for (see the
/// module docs, *hand-over hold*).
#[derive(Debug)]
struct Hold {
    id: u64,
    client: u32,
    until: Instant,
    /// Node calls for the key, in arrival order.
    queue: Queued,
}

#[derive(Debug)]
struct Busy {
    generation: u32,
    ops: u32,
    queue: VecDeque<(u32, Vec<u8>)>,
}

#[derive(Debug)]
enum JobKind {
    Client {
        client: u32,
        client_reqid: u32,
        client_callid: u32,
    },
    Remote {
        hdr: Header,
        call: ShardCall,
    },
    /// REQ_DMASTER or REPLY_DMASTER; `runs`: the pending call it runs.
    Dmaster {
        hdr: Header,
        runs: Option<u32>,
    },
    /// A read-only copy from a REPLY_CALL being stored; the pending call
    /// is answered after.
    ReadonlyCopy {
        reqid: u32,
        pending: Pending,
        status: i32,
        data: Vec<u8>,
        generation: u32,
    },
    /// The dmaster's end of revoke `id`.
    RevokeFinish {
        id: u64,
    },
}

#[derive(Debug)]
struct Job {
    kind: JobKind,
    op: RecordOp,
    tries: u32,
    /// When a step of this job first found the chain locked.
    busy_since: Option<Instant>,
}

/// The control core's migration state of one node.
#[derive(Debug)]
pub struct Migrator {
    pnn: u32,
    generation: u32,
    fetch_collapse: bool,
    limits: DecodeLimits,
    /// Top byte of every request id this migrator makes (0 on the control
    /// core, shard + 1 on a data core: the transport routes replies by it).
    reqid_top: u32,
    next_reqid: u32,
    next_ticket: u64,
    pending: HashMap<u32, Pending>,
    collapse: HashMap<RecKey, Collapse>,
    busy: HashMap<RecKey, Busy>,
    jobs: HashMap<u64, Job>,
    loopback: VecDeque<Vec<u8>>,
    sticky_cfg: StickyConfig,
    sticky: HashMap<RecKey, Sticky>,
    /// Nodes holding a read-only copy of a record this node delegated
    /// (upstream's tracking database; in memory: it is wiped by every
    /// recovery and daemon start anyway).
    delegations: HashMap<RecKey, BTreeSet<u32>>,
    revokes: HashMap<RecKey, Revoke>,
    revoke_keys: HashMap<u64, RecKey>,
    next_revoke: u64,
    /// Calls handed in again at the given time (after a revoke).
    delayed: Vec<(Instant, DeferredCall)>,
    holds: HashMap<RecKey, Hold>,
    next_hold: u64,
    handover_hold: Duration,
    /// Jobs with `busy_since` set (the `locks.num_current` gauge).
    lock_waiting: usize,
}

fn encode(hdr: Header, payload: Payload<'_>) -> Vec<u8> {
    let mut out = Vec::new();
    if let Err(e) = Packet::new(hdr, payload).encode(&mut out) {
        tracing::error!("cannot encode call packet: {e}");
        out.clear();
    }
    out
}

fn req_call_payload(call: &ShardCall) -> Payload<'_> {
    Payload::ReqCall(ReqCall {
        flags: call.flags,
        db_id: call.db_id,
        callid: call.callid,
        hopcount: call.hopcount,
        key: &call.key,
        calldata: &call.calldata,
    })
}

/// The flags word of a REQ_CALL packet (0 when too short).
fn call_flags(pkt: &[u8]) -> u32 {
    pkt.get(32..36)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .unwrap_or(0)
}

/// The generation in a packet's header.
fn packet_generation(pkt: &[u8]) -> u32 {
    pkt.get(12..16)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .unwrap_or(0)
}

/// Longest wait before retrying a step whose chain lock was busy: 1 ms,
/// doubling to 8 ms. The driver retries sooner, as soon as a lock waiter
/// (`lockwait.rs`, upstream's lock helper) has seen the lock free; this is
/// the bound when it cannot (a long pause here lets a client that locks the
/// record in a loop starve the node that wants it).
fn backoff(tries: u32) -> Duration {
    Duration::from_millis(1u64 << tries.saturating_sub(1).min(3))
}

/// Sticky records (databases with DB_FLAGS_STICKY): a record that keeps
/// arriving after many hops is made sticky for a while; each time this
/// node becomes its dmaster it is pinned down here briefly, and node
/// REQ_CALLs for it wait until the pin-down ends.
#[derive(Debug, Clone)]
pub struct StickyConfig {
    /// Databases with DB_FLAGS_STICKY.
    pub dbs: std::collections::HashSet<u32>,
    /// Tunable HopcountMakeSticky.
    pub hopcount_make_sticky: u32,
    /// Tunable StickyDuration.
    pub duration: Duration,
    /// Tunable StickyPindown.
    pub pindown: Duration,
}

impl Default for StickyConfig {
    fn default() -> Self {
        StickyConfig {
            dbs: std::collections::HashSet::new(),
            hopcount_make_sticky: 50,
            duration: Duration::from_secs(600),
            pindown: Duration::from_millis(200),
        }
    }
}

#[derive(Debug)]
struct Sticky {
    until: Instant,
    /// Pinned down until then; node calls queued meanwhile.
    pindown: Option<(Instant, Queued)>,
}

impl Migrator {
    pub fn new(pnn: u32, generation: u32) -> Migrator {
        Migrator {
            pnn,
            generation,
            fetch_collapse: true,
            limits: DecodeLimits::default(),
            reqid_top: 0,
            next_reqid: 1,
            next_ticket: 1,
            pending: HashMap::new(),
            collapse: HashMap::new(),
            busy: HashMap::new(),
            jobs: HashMap::new(),
            loopback: VecDeque::new(),
            sticky_cfg: StickyConfig::default(),
            sticky: HashMap::new(),
            delegations: HashMap::new(),
            revokes: HashMap::new(),
            revoke_keys: HashMap::new(),
            next_revoke: 1,
            delayed: Vec::new(),
            holds: HashMap::new(),
            next_hold: 1,
            handover_hold: HANDOVER_HOLD,
            lock_waiting: 0,
        }
    }

    /// How long a hand-over hold lasts at most (zero: none).
    pub fn set_handover_hold(&mut self, d: Duration) {
        self.handover_hold = d;
    }

    /// Hand-over holds not yet over (for tests and diagnostics).
    pub fn holds(&self) -> usize {
        self.holds.len()
    }

    /// Client `client` sent something again: the records held for it
    /// let the node calls waiting for them go (and holds that have run
    /// out are forgotten).
    pub fn client_active(&mut self, client: u32, now: Instant) -> Vec<Action> {
        let mut out = Vec::new();
        self.release_holds_of(client, &mut out, now);
        self.finish(out, now)
    }

    /// The holds of `client`, and those that have run out, end.
    fn release_holds_of(&mut self, client: u32, out: &mut Vec<Action>, now: Instant) {
        if !self.holds.is_empty() {
            self.end_holds(|h| h.client == client || h.until <= now, out, now);
        }
    }

    /// A [`Action::HoldTimer`] ran out.
    pub fn hold_expired(&mut self, db_id: u32, key: &[u8], id: u64, now: Instant) -> Vec<Action> {
        let mut out = Vec::new();
        let k = (db_id, key.to_vec());
        if self.holds.get(&k).is_some_and(|h| h.id == id) {
            if let Some(h) = self.holds.remove(&k) {
                self.replay_nodes(h.queue, &mut out, now);
            }
        }
        self.finish(out, now)
    }

    fn end_holds(&mut self, over: impl Fn(&Hold) -> bool, out: &mut Vec<Action>, now: Instant) {
        let mut released = Vec::new();
        self.holds.retain(|_, h| {
            if over(h) {
                released.push(std::mem::take(&mut h.queue));
                false
            } else {
                true
            }
        });
        for q in released {
            self.replay_nodes(q, out, now);
        }
    }

    fn replay_nodes(&mut self, queue: Queued, out: &mut Vec<Action>, now: Instant) {
        for (from, pkt) in queue {
            let more = self.peer_inner(from, &pkt, now);
            out.extend(more);
        }
    }

    /// The record of `key` just arrived for local client `client`: hold
    /// it for the client (module docs).
    fn start_hold(&mut self, key: &RecKey, client: u32, out: &mut Vec<Action>, now: Instant) {
        if self.handover_hold.is_zero() {
            return;
        }
        let id = self.next_hold;
        self.next_hold += 1;
        // A hold of the same key that is still there (its client never
        // sent anything again) lets its calls go first, in order.
        let queue = self.holds.remove(key).map(|h| h.queue).unwrap_or_default();
        self.replay_nodes(queue, out, now);
        self.holds.insert(
            key.clone(),
            Hold {
                id,
                client,
                until: now + self.handover_hold,
                queue: VecDeque::new(),
            },
        );
    }

    /// The sticky databases and tunables.
    pub fn set_sticky(&mut self, cfg: StickyConfig) {
        self.sticky_cfg = cfg;
    }

    /// Whether `key` of `db_id` is sticky now (for tests and diagnostics).
    pub fn is_sticky(&self, db_id: u32, key: &[u8]) -> bool {
        self.sticky.contains_key(&(db_id, key.to_vec()))
    }

    /// Whether `key` of `db_id` is pinned down on this node now.
    pub fn is_pinned(&self, db_id: u32, key: &[u8], now: Instant) -> bool {
        self.sticky
            .get(&(db_id, key.to_vec()))
            .and_then(|s| s.pindown.as_ref())
            .is_some_and(|(t, _)| *t > now)
    }

    /// `ctdb_make_record_sticky`, when a call arrived after enough hops.
    fn maybe_make_sticky(&mut self, key: &RecKey, hopcount: u32, now: Instant) {
        if !self.sticky_cfg.dbs.contains(&key.0)
            || hopcount < self.sticky_cfg.hopcount_make_sticky
            || self.sticky.contains_key(key)
        {
            return;
        }
        tracing::error!(
            "Make record sticky for {} seconds in db 0x{:08x} key:0x{:08x}.",
            self.sticky_cfg.duration.as_secs(),
            key.0,
            ctdb_engine::hash::jenkins_hash(&key.1)
        );
        self.sticky.insert(
            key.clone(),
            Sticky {
                until: now + self.sticky_cfg.duration,
                pindown: None,
            },
        );
    }

    /// `ctdb_set_sticky_pindown`, when this node became dmaster.
    fn maybe_pindown(&mut self, key: &RecKey, now: Instant) {
        if !self.sticky_cfg.dbs.contains(&key.0) {
            return;
        }
        let pindown = self.sticky_cfg.pindown;
        if let Some(s) = self.sticky.get_mut(key) {
            if s.pindown.is_none() {
                tracing::error!(
                    "Pinning down record in 0x{:08x} for {} ms",
                    key.0,
                    pindown.as_millis()
                );
                s.pindown = Some((now + pindown, VecDeque::new()));
            }
        }
    }

    pub fn pnn(&self) -> u32 {
        self.pnn
    }

    /// The vnn map generation stamped on new packets.
    pub fn generation(&self) -> u32 {
        self.generation
    }

    /// A new generation forgets the read-only delegations: the recovery
    /// that made it stripped every record's read-only flags.
    pub fn set_generation(&mut self, generation: u32) {
        if generation != self.generation {
            self.delegations.clear();
        }
        self.generation = generation;
    }

    /// The nodes holding a read-only copy of `key` of `db_id` delegated by
    /// this node (for tests and diagnostics).
    pub fn delegation_holders(&self, db_id: u32, key: &[u8]) -> Vec<u32> {
        self.delegations
            .get(&(db_id, key.to_vec()))
            .map(|s| s.iter().copied().collect())
            .unwrap_or_default()
    }

    /// Revokes in progress on this node.
    pub fn revokes_in_progress(&self) -> usize {
        self.revokes.len()
    }

    /// Calls waiting out [`REVOKE_GRACE`] after a revoke (handed in again
    /// by [`Migrator::tick`]).
    pub fn delayed_calls(&self) -> usize {
        self.delayed.len()
    }

    /// Tunable FetchCollapse.
    pub fn set_fetch_collapse(&mut self, on: bool) {
        self.fetch_collapse = on;
    }

    /// Client calls waiting on other nodes.
    pub fn pending_calls(&self) -> usize {
        self.pending.len()
    }

    /// Record steps in flight or waiting for a retry.
    /// Record steps waiting for a chain lock someone else holds (the
    /// `locks.num_current` gauge).
    pub fn lock_waits(&self) -> usize {
        self.lock_waiting
    }

    pub fn jobs_in_flight(&self) -> usize {
        self.jobs.len()
    }

    /// The databases that have calls waiting on other nodes.
    pub fn pending_dbs(&self) -> Vec<u32> {
        let mut v: Vec<u32> = self.pending.values().map(|p| p.call.db_id).collect();
        v.sort_unstable();
        v.dedup();
        v
    }

    fn new_reqid(&mut self) -> u32 {
        loop {
            let r = self.reqid_top | self.next_reqid;
            self.next_reqid = if self.next_reqid >= 0x00ff_ffff {
                1
            } else {
                self.next_reqid + 1
            };
            if !self.pending.contains_key(&r) {
                return r;
            }
        }
    }

    /// The migrator of data shard `shard`: its request ids carry
    /// `shard + 1` in the top byte, so replies find their way back to its
    /// core ([`crate::transport::route::reqid_for`]).
    pub fn for_shard(pnn: u32, generation: u32, shard: usize) -> Migrator {
        let mut m = Migrator::new(pnn, generation);
        m.reqid_top = ((shard as u32 + 1) & 0xff) << 24;
        m
    }

    fn new_job(&mut self, kind: JobKind, op: RecordOp) -> Action {
        let ticket = self.next_ticket;
        self.next_ticket += 1;
        self.jobs.insert(
            ticket,
            Job {
                kind,
                op: op.clone(),
                tries: 0,
                busy_since: None,
            },
        );
        Action::Record { ticket, op }
    }

    /// Hands packets this node sent to itself back in.
    fn finish(&mut self, mut out: Vec<Action>, now: Instant) -> Vec<Action> {
        while let Some(pkt) = self.loopback.pop_front() {
            let more = self.peer_inner(self.pnn, &pkt, now);
            out.extend(more);
        }
        out
    }

    fn send(&mut self, dest: u32, pkt: Vec<u8>, out: &mut Vec<Action>) {
        if pkt.is_empty() {
            return;
        }
        if dest == self.pnn {
            self.loopback.push_back(pkt);
        } else {
            out.push(Action::Send { dest, pkt });
        }
    }

    /// A local client's REQ_CALL (a whole packet). `Err`: not a REQ_CALL
    /// that decodes.
    pub fn client_call(
        &mut self,
        client: u32,
        pkt: &[u8],
        now: Instant,
    ) -> Result<Vec<Action>, String> {
        let out = self.client_inner(client, pkt, now)?;
        Ok(self.finish(out, now))
    }

    fn client_inner(
        &mut self,
        client: u32,
        pkt: &[u8],
        now: Instant,
    ) -> Result<Vec<Action>, String> {
        let packet = Packet::decode(pkt, &self.limits).map_err(|e| e.to_string())?;
        let Payload::ReqCall(c) = &packet.payload else {
            return Err(format!(
                "{} is not a REQ_CALL",
                packet.payload.operation().name()
            ));
        };
        let mut out = Vec::new();
        self.release_holds_of(client, &mut out, now);
        let key = (c.db_id, c.key.to_vec());
        if self.fetch_collapse {
            if let Some(col) = self.collapse.get_mut(&key) {
                col.queue.push_back((client, pkt.to_vec()));
                return Ok(out);
            }
        }
        let ticket = self.next_ticket;
        if self.fetch_collapse {
            self.collapse.insert(
                key,
                Collapse {
                    owner: Owner::Job(ticket),
                    since: now,
                    queue: VecDeque::new(),
                },
            );
        }
        let op = RecordOp::ClientCall {
            call: ShardCall::from_req(c),
        };
        let kind = JobKind::Client {
            client,
            client_reqid: packet.header.reqid,
            client_callid: c.callid,
        };
        out.push(self.new_job(kind, op));
        Ok(out)
    }

    /// A call or dmaster packet from node `from` (REQ_CALL, REPLY_CALL,
    /// REPLY_ERROR, REQ_DMASTER, REPLY_DMASTER).
    pub fn peer_packet(&mut self, from: u32, pkt: &[u8], now: Instant) -> Vec<Action> {
        let out = self.peer_inner(from, pkt, now);
        self.finish(out, now)
    }

    fn peer_inner(&mut self, from: u32, pkt: &[u8], now: Instant) -> Vec<Action> {
        let packet = match Packet::decode(pkt, &self.limits) {
            Ok(p) => p,
            Err(e) => {
                tracing::error!("bad call packet from node {from}: {e}");
                return Vec::new();
            }
        };
        let hdr = packet.header;
        let mut out = Vec::new();
        match &packet.payload {
            Payload::ReqCall(c) => {
                let key = (c.db_id, c.key.to_vec());
                if self.sticky_cfg.dbs.contains(&c.db_id) {
                    if let Some((_, queue)) =
                        self.sticky.get_mut(&key).and_then(|s| s.pindown.as_mut())
                    {
                        tracing::warn!("Defer request for pinned down record in 0x{:08x}", c.db_id);
                        queue.push_back((from, pkt.to_vec()));
                        return out;
                    }
                }
                if let Some(b) = self.busy.get_mut(&key) {
                    if b.generation == hdr.generation {
                        b.queue.push_back((from, pkt.to_vec()));
                        return out;
                    }
                    // A recovery happened in between: forget the old queue
                    // (those calls are resent by their nodes).
                    self.busy.remove(&key);
                }
                match self.holds.get_mut(&key) {
                    Some(h) if h.until > now => {
                        h.queue.push_back((from, pkt.to_vec()));
                        if h.queue.len() == 1 {
                            out.push(Action::HoldTimer {
                                db_id: key.0,
                                after: h.until - now,
                                id: h.id,
                                client: h.client,
                                key: key.1,
                            });
                        }
                        return out;
                    }
                    // Run out: its calls go first, then this one.
                    Some(_) => {
                        let queue = self.holds.remove(&key).map(|h| h.queue);
                        self.replay_nodes(queue.unwrap_or_default(), &mut out, now);
                    }
                    None => {}
                }
                let call = ShardCall::from_req(c);
                let op = RecordOp::RemoteCall {
                    call: call.clone(),
                    origin: Origin {
                        srcnode: hdr.srcnode,
                        reqid: hdr.reqid,
                        generation: hdr.generation,
                    },
                };
                out.push(self.new_job(JobKind::Remote { hdr, call }, op));
            }
            Payload::ReplyCall(r) => {
                let Some(p) = self.pending.get(&hdr.reqid) else {
                    tracing::error!("reqid {} not found", hdr.reqid);
                    return out;
                };
                // A copy from before a recovery is not stored: the
                // recovery revoked it.
                let copy = p.call.callid == CTDB_FETCH_WITH_HEADER_FUNC
                    && hdr.generation == self.generation
                    && LtdbHeader::split(r.data)
                        .is_some_and(|(h, _)| h.flags.contains(RecordFlags::RO_HAVE_READONLY));
                if !copy {
                    self.complete(hdr.reqid, r.status, r.data.to_vec(), &mut out, now);
                    return out;
                }
                // A read-only delegation: store the copy in the local
                // file first, so the client finds it when it looks again.
                let Some(pending) = self.pending.remove(&hdr.reqid) else {
                    return out;
                };
                let op = RecordOp::StoreReadonly {
                    db_id: pending.call.db_id,
                    key: pending.call.key.clone(),
                    record: r.data.to_vec(),
                };
                let kind = JobKind::ReadonlyCopy {
                    reqid: hdr.reqid,
                    pending,
                    status: r.status,
                    data: r.data.to_vec(),
                    generation: hdr.generation,
                };
                out.push(self.new_job(kind, op));
            }
            Payload::ReplyError(e) => {
                let Some(p) = self.pending.remove(&hdr.reqid) else {
                    tracing::error!(
                        "pnn {} Invalid reqid {} in ctdb_reply_error",
                        self.pnn,
                        hdr.reqid
                    );
                    return out;
                };
                let msg = String::from_utf8_lossy(e.msg.split(|b| *b == 0).next().unwrap_or(&[]))
                    .into_owned();
                tracing::error!(
                    "ctdbd_call_recv() returned error: status {} from node {from}: {msg}",
                    e.status
                );
                self.release_collapse(
                    (p.call.db_id, p.call.key.clone()),
                    Owner::Pending(hdr.reqid),
                    &mut out,
                    now,
                );
            }
            Payload::ReqDmaster(d) => {
                let runs = (d.dmaster == self.pnn).then_some(hdr.reqid);
                let (runs, call) = self.pending_call(runs, d.db_id, d.key, &hdr);
                self.mark_busy((d.db_id, d.key.to_vec()), hdr.generation);
                let op = RecordOp::ReqDmaster {
                    db_id: d.db_id,
                    key: d.key.to_vec(),
                    data: d.data.to_vec(),
                    rsn: d.rsn,
                    record_flags: d.record_flags,
                    new_dmaster: d.dmaster,
                    origin: Origin {
                        srcnode: hdr.srcnode,
                        reqid: hdr.reqid,
                        generation: hdr.generation,
                    },
                    call,
                };
                out.push(self.new_job(JobKind::Dmaster { hdr, runs }, op));
            }
            Payload::ReplyDmaster(d) => {
                let (runs, call) = self.pending_call(Some(hdr.reqid), d.db_id, d.key, &hdr);
                self.mark_busy((d.db_id, d.key.to_vec()), hdr.generation);
                let op = RecordOp::BecomeDmaster {
                    db_id: d.db_id,
                    key: d.key.to_vec(),
                    data: d.data.to_vec(),
                    rsn: d.rsn,
                    record_flags: d.record_flags,
                    call,
                };
                out.push(self.new_job(JobKind::Dmaster { hdr, runs }, op));
            }
            other => {
                tracing::debug!(
                    "{} from node {from} is not a call packet",
                    other.operation().name()
                );
            }
        }
        out
    }

    /// The pending call a dmaster packet hands the record to, checked as
    /// `ctdb_become_dmaster` does (the record is stored either way).
    fn pending_call(
        &self,
        reqid: Option<u32>,
        db_id: u32,
        key: &[u8],
        hdr: &Header,
    ) -> (Option<u32>, Option<ShardCall>) {
        let Some(reqid) = reqid else {
            return (None, None);
        };
        match self.pending.get(&reqid) {
            None => {
                tracing::error!(
                    "pnn {} Invalid reqid {reqid} in ctdb_become_dmaster from node {}",
                    self.pnn,
                    hdr.srcnode
                );
                (None, None)
            }
            Some(p) if p.call.key != key || p.call.db_id != db_id => {
                tracing::error!(
                    "Got bogus DMASTER packet reqid:{reqid} from node {}. Key does not match \
                     key held in matching idr.",
                    hdr.srcnode
                );
                (None, None)
            }
            Some(p) => (Some(reqid), Some(p.call.clone())),
        }
    }

    fn mark_busy(&mut self, key: RecKey, generation: u32) {
        let b = self.busy.entry(key).or_insert(Busy {
            generation,
            ops: 0,
            queue: VecDeque::new(),
        });
        if b.generation != generation {
            b.generation = generation;
            b.queue.clear();
        }
        b.ops += 1;
    }

    fn unmark_busy(&mut self, key: RecKey, out: &mut Vec<Action>, now: Instant) {
        let Some(b) = self.busy.get_mut(&key) else {
            return;
        };
        b.ops = b.ops.saturating_sub(1);
        if b.ops > 0 {
            return;
        }
        let Some(b) = self.busy.remove(&key) else {
            return;
        };
        if b.generation != self.generation {
            return;
        }
        for (from, pkt) in b.queue {
            let more = self.peer_inner(from, &pkt, now);
            out.extend(more);
        }
    }

    /// Client calls queued behind `owner` are handed in again, in order.
    fn release_collapse(&mut self, key: RecKey, owner: Owner, out: &mut Vec<Action>, now: Instant) {
        match self.collapse.get(&key) {
            Some(c) if c.owner == owner => {}
            _ => return,
        }
        let Some(c) = self.collapse.remove(&key) else {
            return;
        };
        self.replay_clients(c.queue, out, now);
    }

    fn replay_clients(
        &mut self,
        queue: VecDeque<(u32, Vec<u8>)>,
        out: &mut Vec<Action>,
        now: Instant,
    ) {
        for (client, pkt) in queue {
            match self.client_inner(client, &pkt, now) {
                Ok(more) => out.extend(more),
                Err(e) => tracing::error!("queued call of client {client}: {e}"),
            }
        }
    }

    /// Answers a pending client call and lets the calls queued behind it go.
    fn complete(
        &mut self,
        reqid: u32,
        status: i32,
        data: Vec<u8>,
        out: &mut Vec<Action>,
        now: Instant,
    ) {
        let Some(p) = self.pending.remove(&reqid) else {
            return;
        };
        self.complete_pending(reqid, p, status, data, out, now);
    }

    /// Answers the client of pending call `reqid` (already out of the
    /// table) and lets the calls queued behind it go.
    fn complete_pending(
        &mut self,
        reqid: u32,
        p: Pending,
        status: i32,
        mut data: Vec<u8>,
        out: &mut Vec<Action>,
        now: Instant,
    ) {
        if p.readonly_fetch && p.client_callid == CTDB_FETCH_FUNC && data.len() >= LTDB_HEADER_SIZE
        {
            data.drain(..LTDB_HEADER_SIZE);
        }
        out.push(self.client_reply(p.client, p.client_reqid, status, &data));
        self.release_collapse((p.call.db_id, p.call.key), Owner::Pending(reqid), out, now);
    }

    fn client_reply(&self, client: u32, reqid: u32, status: i32, data: &[u8]) -> Action {
        // As ctdbd_allocate_pkt: destnode 0.
        let pkt = encode(
            Header::new(self.generation, 0, self.pnn, reqid),
            Payload::ReplyCall(ReplyCall { status, data }),
        );
        Action::Client { client, pkt }
    }

    /// A record step's result.
    pub fn record_done(&mut self, ticket: u64, step: RecordStep, now: Instant) -> Vec<Action> {
        let out = self.done_inner(ticket, step, now);
        self.finish(out, now)
    }

    fn done_inner(&mut self, ticket: u64, step: RecordStep, now: Instant) -> Vec<Action> {
        let mut out = Vec::new();
        let Some(mut job) = self.jobs.remove(&ticket) else {
            return out;
        };
        match step {
            RecordStep::Retry => {
                job.tries = job.tries.saturating_add(1);
                if job.busy_since.is_none() {
                    job.busy_since = Some(now);
                    self.lock_waiting += 1;
                }
                let after = backoff(job.tries);
                let busy = Some((job.op.db_id(), job.op.key().to_vec()));
                self.jobs.insert(ticket, job);
                out.push(Action::Retry {
                    ticket,
                    after,
                    busy,
                });
                return out;
            }
            RecordStep::Defer => {
                job.tries = job.tries.saturating_add(1);
                self.jobs.insert(ticket, job);
                out.push(Action::Retry {
                    ticket,
                    after: DEFER_RETRY,
                    busy: None,
                });
                return out;
            }
            _ => {}
        }
        if let Some(since) = job.busy_since {
            self.lock_waiting = self.lock_waiting.saturating_sub(1);
            let micros =
                u64::try_from(now.saturating_duration_since(since).as_micros()).unwrap_or(u64::MAX);
            out.push(Action::Count(Counter::LockWait {
                db_id: job.op.db_id(),
                micros,
            }));
        }
        let key = (job.op.db_id(), job.op.key().to_vec());
        match job.kind {
            JobKind::Client {
                client,
                client_reqid,
                client_callid,
            } => self.client_step(
                ticket,
                key,
                client,
                client_reqid,
                client_callid,
                job.op,
                step,
                &mut out,
                now,
            ),
            JobKind::Remote { hdr, mut call } => match step {
                RecordStep::Redirect { dest, hopcount } => {
                    call.hopcount = hopcount;
                    let h = Header {
                        destnode: dest,
                        ..hdr
                    };
                    let pkt = encode(h, req_call_payload(&call));
                    self.send(dest, pkt, &mut out);
                }
                RecordStep::ReqDmaster {
                    lmaster,
                    rsn,
                    record_flags,
                    data,
                } => {
                    out.push(Action::Hop {
                        hopcount: call.hopcount,
                    });
                    self.maybe_make_sticky(&key, call.hopcount, now);
                    let pkt = encode(
                        Header::new(self.generation, lmaster, self.pnn, hdr.reqid),
                        Payload::ReqDmaster(ReqDmaster {
                            db_id: call.db_id,
                            rsn,
                            dmaster: hdr.srcnode,
                            key: &call.key,
                            data: &data,
                            record_flags,
                        }),
                    );
                    self.send(lmaster, pkt, &mut out);
                }
                RecordStep::ReplyDmaster {
                    dest,
                    rsn,
                    record_flags,
                    data,
                } => {
                    out.push(Action::Hop {
                        hopcount: call.hopcount,
                    });
                    self.maybe_make_sticky(&key, call.hopcount, now);
                    self.send_reply_dmaster(
                        dest,
                        hdr.reqid,
                        &call,
                        rsn,
                        record_flags,
                        &data,
                        &mut out,
                    );
                }
                RecordStep::Reply { status, data } => {
                    out.push(Action::Hop {
                        hopcount: call.hopcount,
                    });
                    self.maybe_make_sticky(&key, call.hopcount, now);
                    let pkt = encode(
                        Header::new(self.generation, hdr.srcnode, self.pnn, hdr.reqid),
                        Payload::ReplyCall(ReplyCall {
                            status,
                            data: &data,
                        }),
                    );
                    self.send(hdr.srcnode, pkt, &mut out);
                }
                RecordStep::Error { status, msg } => self.send_error(&hdr, status, &msg, &mut out),
                RecordStep::Recover => out.push(Action::Recover),
                RecordStep::Drop => {}
                RecordStep::Delegated { data } => {
                    self.delegations.entry(key).or_default().insert(hdr.srcnode);
                    out.push(Action::Count(Counter::RoDelegation));
                    let pkt = encode(
                        Header::new(self.generation, hdr.srcnode, self.pnn, hdr.reqid),
                        Payload::ReplyCall(ReplyCall {
                            status: 0,
                            data: &data,
                        }),
                    );
                    self.send(hdr.srcnode, pkt, &mut out);
                }
                RecordStep::StartRevoke { rsn, update } => {
                    let pkt = encode(hdr, req_call_payload(&call));
                    let readonly = call.flags & CTDB_WANT_READONLY != 0;
                    self.begin_revoke(key.clone(), rsn, &update, &mut out, now);
                    self.defer_for_revoke(key, Src::Node(hdr.srcnode), readonly, pkt, now);
                }
                RecordStep::WaitRevoke => {
                    let pkt = encode(hdr, req_call_payload(&call));
                    let readonly = call.flags & CTDB_WANT_READONLY != 0;
                    self.defer_for_revoke(key, Src::Node(hdr.srcnode), readonly, pkt, now);
                }
                other => tracing::error!("unexpected step for a node's call: {other:?}"),
            },
            JobKind::ReadonlyCopy {
                reqid,
                pending,
                status,
                data,
                ..
            } => {
                if !matches!(step, RecordStep::Done) {
                    tracing::error!("unexpected step for a read-only copy: {step:?}");
                }
                self.complete_pending(reqid, pending, status, data, &mut out, now);
            }
            JobKind::RevokeFinish { id } => {
                let complete = match step {
                    RecordStep::RevokeFinished { complete } => complete,
                    other => {
                        tracing::error!("unexpected step for a revoke: {other:?}");
                        false
                    }
                };
                self.end_revoke(id, complete, &mut out, now);
            }
            JobKind::Dmaster { hdr, runs } => {
                match step {
                    RecordStep::ReplyDmaster {
                        dest,
                        rsn,
                        record_flags,
                        data,
                    } => {
                        let call = ShardCall {
                            db_id: key.0,
                            flags: 0,
                            callid: 0,
                            hopcount: 0,
                            key: key.1.clone(),
                            calldata: Vec::new(),
                        };
                        self.send_reply_dmaster(
                            dest,
                            hdr.reqid,
                            &call,
                            rsn,
                            record_flags,
                            &data,
                            &mut out,
                        );
                    }
                    RecordStep::Became { reply } => {
                        self.maybe_pindown(&key, now);
                        if let (Some(reqid), Some((status, data))) = (runs, reply) {
                            if let Some(client) = self.pending.get(&reqid).map(|p| p.client) {
                                self.start_hold(&key, client, &mut out, now);
                            }
                            self.complete(reqid, status, data, &mut out, now);
                        }
                    }
                    RecordStep::Error { status, msg } => {
                        self.send_error(&hdr, status, &msg, &mut out)
                    }
                    RecordStep::Recover => out.push(Action::Recover),
                    RecordStep::Drop => {}
                    other => tracing::error!("unexpected step for a dmaster packet: {other:?}"),
                }
                self.unmark_busy(key, &mut out, now);
            }
        }
        out
    }

    #[allow(clippy::too_many_arguments)]
    fn client_step(
        &mut self,
        ticket: u64,
        key: RecKey,
        client: u32,
        client_reqid: u32,
        client_callid: u32,
        op: RecordOp,
        step: RecordStep,
        out: &mut Vec<Action>,
        now: Instant,
    ) {
        match step {
            RecordStep::Reply { status, data } => {
                // Already in the client's format: the record step strips
                // the header of a read-only FETCH (it knows whether
                // WANT_READONLY survived the database's flags).
                out.push(self.client_reply(client, client_reqid, status, &data));
                self.release_collapse(key, Owner::Job(ticket), out, now);
            }
            RecordStep::Forward {
                dest,
                flags,
                callid,
            } => {
                let RecordOp::ClientCall { mut call } = op else {
                    return;
                };
                call.flags = flags;
                call.callid = callid;
                call.hopcount = 0;
                let reqid = self.new_reqid();
                let readonly_fetch = flags & ctdb_protocol::constants::CTDB_WANT_READONLY != 0;
                let pkt = encode(
                    Header::new(self.generation, dest, self.pnn, reqid),
                    req_call_payload(&call),
                );
                self.pending.insert(
                    reqid,
                    Pending {
                        client,
                        client_reqid,
                        client_callid,
                        readonly_fetch,
                        call,
                        dest,
                    },
                );
                if let Some(c) = self.collapse.get_mut(&key) {
                    if c.owner == Owner::Job(ticket) {
                        c.owner = Owner::Pending(reqid);
                    }
                }
                self.send(dest, pkt, out);
            }
            RecordStep::StartRevoke { rsn, update } => {
                self.begin_revoke(key.clone(), rsn, &update, out, now);
                self.defer_client(ticket, key, client, client_reqid, &op, now);
            }
            RecordStep::WaitRevoke => {
                self.defer_client(ticket, key, client, client_reqid, &op, now);
            }
            other => {
                if !matches!(other, RecordStep::Drop) {
                    tracing::error!("unexpected step for a client's call: {other:?}");
                }
                self.release_collapse(key, Owner::Job(ticket), out, now);
            }
        }
    }

    /// A client's call waits for the revoke of its record; so do the
    /// client calls collapsed behind it.
    fn defer_client(
        &mut self,
        ticket: u64,
        key: RecKey,
        client: u32,
        client_reqid: u32,
        op: &RecordOp,
        now: Instant,
    ) {
        let RecordOp::ClientCall { call } = op else {
            return;
        };
        let pkt = encode(
            Header::new(self.generation, CTDB_CURRENT_NODE, self.pnn, client_reqid),
            req_call_payload(call),
        );
        let readonly = call.flags & CTDB_WANT_READONLY != 0;
        self.defer_for_revoke(key.clone(), Src::Client(client), readonly, pkt, now);
        if self
            .collapse
            .get(&key)
            .is_some_and(|c| c.owner == Owner::Job(ticket))
        {
            if let Some(c) = self.collapse.remove(&key) {
                for (client, pkt) in c.queue {
                    let readonly = call_flags(&pkt) & CTDB_WANT_READONLY != 0;
                    self.defer_for_revoke(key.clone(), Src::Client(client), readonly, pkt, now);
                }
            }
        }
    }

    /// The revoke of `key`, created (not yet started) if there is none.
    fn revoke_entry(&mut self, key: RecKey, now: Instant) -> &mut Revoke {
        if !self.revokes.contains_key(&key) {
            let id = self.next_revoke;
            self.next_revoke += 1;
            self.revoke_keys.insert(id, key.clone());
            self.revokes.insert(
                key.clone(),
                Revoke {
                    id,
                    rsn: None,
                    since: now,
                    waiting: BTreeSet::new(),
                    ok: true,
                    finishing: false,
                    calls: Vec::new(),
                },
            );
        }
        self.revokes.get_mut(&key).expect("inserted above")
    }

    fn defer_for_revoke(
        &mut self,
        key: RecKey,
        src: Src,
        readonly: bool,
        pkt: Vec<u8>,
        now: Instant,
    ) {
        if pkt.is_empty() {
            return;
        }
        self.revoke_entry(key, now)
            .calls
            .push(DeferredCall { src, readonly, pkt });
    }

    /// The record is flagged REVOKING: UPDATE_RECORD with `update` to
    /// every node holding a read-only copy (`ctdb_revoke_all_delegations`).
    fn begin_revoke(
        &mut self,
        key: RecKey,
        rsn: u64,
        update: &[u8],
        out: &mut Vec<Action>,
        now: Instant,
    ) {
        let holders: Vec<u32> = self
            .delegations
            .get(&key)
            .map(|s| s.iter().copied().filter(|n| *n != self.pnn).collect())
            .unwrap_or_default();
        let mut buf = RecBufferBuilder::new(key.0);
        buf.add(0, None, &key.1, update);
        let data = buf.into_wire_bytes();
        let r = self.revoke_entry(key.clone(), now);
        r.rsn = Some(rsn);
        r.since = now;
        r.ok = true;
        let id = r.id;
        for dest in &holders {
            r.waiting.insert(*dest);
        }
        tracing::debug!(
            "revoking read-only copies of key 0x{:08x} in db 0x{:08x} on nodes {holders:?}",
            ctdb_engine::hash::jenkins_hash(&key.1),
            key.0
        );
        for dest in holders {
            out.push(Action::UpdateRecord {
                revoke: id,
                dest,
                data: data.clone(),
            });
        }
        self.maybe_finish_revoke(&key, out);
    }

    /// A holder's answer to its UPDATE_RECORD (`ok`: status 0).
    pub fn revoke_reply(&mut self, revoke: u64, dest: u32, ok: bool, now: Instant) -> Vec<Action> {
        let mut out = Vec::new();
        let Some(key) = self.revoke_keys.get(&revoke).cloned() else {
            return out;
        };
        let Some(r) = self.revokes.get_mut(&key) else {
            return out;
        };
        if !r.waiting.remove(&dest) {
            return out;
        }
        if !ok {
            tracing::error!("Recv for revoke update record failed (node {dest})");
            r.ok = false;
        }
        self.maybe_finish_revoke(&key, &mut out);
        self.finish(out, now)
    }

    /// Every holder answered: the dmaster's record step ends the revoke.
    fn maybe_finish_revoke(&mut self, key: &RecKey, out: &mut Vec<Action>) {
        let Some(r) = self.revokes.get_mut(key) else {
            return;
        };
        if r.finishing || !r.waiting.is_empty() || r.rsn.is_none() {
            return;
        }
        r.finishing = true;
        let (id, rsn, ok) = (r.id, r.rsn, r.ok);
        let op = RecordOp::FinishRevoke {
            db_id: key.0,
            key: key.1.clone(),
            rsn,
            ok,
        };
        out.push(self.new_job(JobKind::RevokeFinish { id }, op));
    }

    /// Revoke `id` is over: the calls that waited for it go again, writes
    /// at once and read-only calls after [`REVOKE_GRACE`] when it
    /// succeeded, all of them after the grace when it failed.
    fn end_revoke(&mut self, id: u64, complete: bool, out: &mut Vec<Action>, now: Instant) {
        let Some(key) = self.revoke_keys.remove(&id) else {
            return;
        };
        let Some(r) = self.revokes.remove(&key) else {
            return;
        };
        if complete {
            self.delegations.remove(&key);
            out.push(Action::Count(Counter::RoRevoke));
        }
        let later = now + REVOKE_GRACE;
        for c in r.calls {
            if complete && !c.readonly {
                self.replay(c, out, now);
            } else {
                self.delayed.push((later, c));
            }
        }
    }

    /// Hands a call that waited for a revoke in again. A node's call of an
    /// older generation is dropped (its node resends it after the
    /// recovery).
    fn replay(&mut self, c: DeferredCall, out: &mut Vec<Action>, now: Instant) {
        match c.src {
            Src::Client(client) => match self.client_inner(client, &c.pkt, now) {
                Ok(more) => out.extend(more),
                Err(e) => tracing::error!("deferred call of client {client}: {e}"),
            },
            Src::Node(from) => {
                if packet_generation(&c.pkt) != self.generation {
                    tracing::info!("Discarding previous generation call deferred for a revoke");
                    return;
                }
                let more = self.peer_inner(from, &c.pkt, now);
                out.extend(more);
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn send_reply_dmaster(
        &mut self,
        dest: u32,
        reqid: u32,
        call: &ShardCall,
        rsn: u64,
        record_flags: u32,
        data: &[u8],
        out: &mut Vec<Action>,
    ) {
        let pkt = encode(
            Header::new(self.generation, dest, self.pnn, reqid),
            Payload::ReplyDmaster(ReplyDmaster {
                db_id: call.db_id,
                rsn,
                key: &call.key,
                data,
                record_flags,
            }),
        );
        self.send(dest, pkt, out);
    }

    fn send_error(&mut self, hdr: &Header, status: i32, msg: &str, out: &mut Vec<Action>) {
        let mut m = msg.as_bytes().to_vec();
        m.push(0);
        let pkt = encode(
            Header::new(self.generation, hdr.srcnode, self.pnn, hdr.reqid),
            Payload::ReplyError(ReplyError { status, msg: &m }),
        );
        self.send(hdr.srcnode, pkt, out);
    }

    /// The step of `ticket` again (after an [`Action::Retry`]). A node's
    /// packet from an older generation is dropped instead.
    pub fn retry(&mut self, ticket: u64, now: Instant) -> Vec<Action> {
        let mut out = Vec::new();
        let Some(job) = self.jobs.get(&ticket) else {
            return out;
        };
        let stale = match &job.kind {
            JobKind::Client { .. } | JobKind::RevokeFinish { .. } => false,
            JobKind::ReadonlyCopy { generation, .. } => *generation != self.generation,
            JobKind::Remote { hdr, .. } | JobKind::Dmaster { hdr, .. } => {
                hdr.generation != self.generation
            }
        };
        if !stale {
            out.push(Action::Record {
                ticket,
                op: job.op.clone(),
            });
            return out;
        }
        tracing::info!("Discarding previous generation lockwait packet");
        if let Some(job) = self.jobs.remove(&ticket) {
            if job.busy_since.is_some() {
                self.lock_waiting = self.lock_waiting.saturating_sub(1);
            }
            match job.kind {
                JobKind::Dmaster { .. } => {
                    let key = (job.op.db_id(), job.op.key().to_vec());
                    self.unmark_busy(key, &mut out, now);
                }
                // The client is answered all the same; the copy, from
                // before a recovery, is not stored.
                JobKind::ReadonlyCopy {
                    reqid,
                    pending,
                    status,
                    data,
                    ..
                } => self.complete_pending(reqid, pending, status, data, &mut out, now),
                _ => {}
            }
        }
        self.finish(out, now)
    }

    /// After a recovery (the databases thawed in a new generation): every
    /// pending call goes out again through this node with a new request
    /// id, as upstream's `ctdb_call_resend_all`.
    pub fn resend_all(&mut self, now: Instant) -> Vec<Action> {
        let mut old: Vec<u32> = self.pending.keys().copied().collect();
        old.sort_unstable();
        let mut per_db: HashMap<u32, u32> = HashMap::new();
        for reqid in old {
            let Some(p) = self.pending.remove(&reqid) else {
                continue;
            };
            let new = self.new_reqid();
            let pkt = encode(
                Header::new(self.generation, self.pnn, self.pnn, new),
                req_call_payload(&p.call),
            );
            tracing::info!(
                "resent ctdb_call for db 0x{:08x} reqid {new} generation {}",
                p.call.db_id,
                self.generation
            );
            *per_db.entry(p.call.db_id).or_default() += 1;
            let key = (p.call.db_id, p.call.key.clone());
            if let Some(c) = self.collapse.get_mut(&key) {
                if c.owner == Owner::Pending(reqid) {
                    c.owner = Owner::Pending(new);
                }
            }
            self.pending.insert(
                new,
                Pending {
                    dest: self.pnn,
                    ..p
                },
            );
            self.loopback.push_back(pkt);
        }
        let mut dbs: Vec<_> = per_db.into_iter().collect();
        dbs.sort_unstable();
        for (db, count) in dbs {
            tracing::info!(
                "Resent calls for database=0x{db:08x}, generation={}, count={count}",
                self.generation
            );
        }
        self.finish(Vec::new(), now)
    }

    /// Periodic housekeeping: client calls that waited behind a fetch for
    /// longer than [`FETCH_COLLAPSE_TIMEOUT`] are handed in again.
    pub fn tick(&mut self, now: Instant) -> Vec<Action> {
        let old: Vec<RecKey> = self
            .collapse
            .iter()
            .filter(|(_, c)| now.duration_since(c.since) >= FETCH_COLLAPSE_TIMEOUT)
            .map(|(k, _)| k.clone())
            .collect();
        let mut out = Vec::new();
        for k in old {
            if let Some(c) = self.collapse.remove(&k) {
                self.replay_clients(c.queue, &mut out, now);
            }
        }
        let mut released = Vec::new();
        self.sticky.retain(|_, s| {
            let unpin = s.until <= now || s.pindown.as_ref().is_some_and(|(t, _)| *t <= now);
            if unpin {
                if let Some((_, q)) = s.pindown.take() {
                    released.extend(q);
                }
            }
            s.until > now
        });
        for (from, pkt) in released {
            let more = self.peer_inner(from, &pkt, now);
            out.extend(more);
        }
        let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.delayed)
            .into_iter()
            .partition(|(t, _)| *t <= now);
        self.delayed = later;
        for (_, c) in due {
            self.replay(c, &mut out, now);
        }
        self.end_holds(|h| h.until <= now, &mut out, now);
        // Calls wait on a REVOKING flag that no revoke of ours set (lost
        // to an error): clear it.
        let stale: Vec<RecKey> = self
            .revokes
            .iter()
            .filter(|(_, r)| {
                r.rsn.is_none() && !r.finishing && now.duration_since(r.since) >= STALE_REVOKING
            })
            .map(|(k, _)| k.clone())
            .collect();
        for key in stale {
            self.maybe_finish_stale(&key, &mut out);
        }
        self.finish(out, now)
    }

    fn maybe_finish_stale(&mut self, key: &RecKey, out: &mut Vec<Action>) {
        let Some(r) = self.revokes.get_mut(key) else {
            return;
        };
        r.finishing = true;
        let id = r.id;
        let op = RecordOp::FinishRevoke {
            db_id: key.0,
            key: key.1.clone(),
            rsn: None,
            ok: false,
        };
        out.push(self.new_job(JobKind::RevokeFinish { id }, op));
    }

    /// Where the pending calls were sent (for diagnostics and tests).
    pub fn pending_destinations(&self) -> Vec<(u32, u32)> {
        let mut v: Vec<(u32, u32)> = self.pending.iter().map(|(r, p)| (*r, p.dest)).collect();
        v.sort_unstable();
        v
    }
}
