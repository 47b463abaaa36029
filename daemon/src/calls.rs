//! Record calls between nodes, on the control core: a local client's
//! REQ_CALL for a volatile record (served here, or migrated from the node
//! that is its dmaster), and the REQ_CALL / REPLY_CALL / REQ_DMASTER /
//! REPLY_DMASTER / REPLY_ERROR packets of other nodes (upstream's
//! `ctdb_call.c`). With data cores this serves only the volatile
//! databases they do not (read-only ones, and any not yet open on every
//! shard): the rest run the same [`Migrator`] on the data core owning the
//! key ([`crate::shard_peers`]).
//!
//! This module is only the driver: the protocol state (pending calls,
//! fetch collapse, dmaster defer) is the sans-I/O
//! [`crate::db::Migrator`], and each step on a record is a
//! [`crate::db::RecordOp`] run where the record lives: the data core
//! owning its chain ([`crate::shards::DataCores::record`]) or, with one
//! core, the control core's [`crate::db::Databases::record_op`]. The
//! driver turns the migrator's [`Action`]s into packets to nodes
//! ([`peers::send_packet`]), replies to clients ([`peers::send_to_client`]),
//! timers (retries of busy chain locks) and statistics.
//!
//! Read-only delegations (databases with SET_DB_READONLY) are part of
//! the same machine; the driver sends the UPDATE_RECORD controls that
//! revoke them ([`peers::control`]) and counts `total_ro_delegations` /
//! `total_ro_revokes`.
//!
//! With no other node in the nodes file nothing here runs: the client
//! path serves calls locally as before ([`client_call`] returns `false`).
//!
//! Timeouts and dead nodes, as upstream: a call waiting on another node
//! has no timeout; after a recovery (new generation, databases thawed)
//! every waiting call is resent through this node with a new request id,
//! which finds the record's new dmaster.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::rc::Rc;
use std::time::{Duration, Instant};

use ctdb_protocol::constants::CTDB_RECOVERY_ACTIVE;
use ctdb_protocol::{Operation, RawHeader, CTDB_PROTOCOL};

use crate::db::migrator::{Counter, StickyConfig};
use crate::db::{Action, Migrator};
use crate::peers;
use crate::state::Daemon;

/// How often the driver looks for a finished recovery and for fetch
/// collapse queues that waited too long.
const TICK: Duration = Duration::from_millis(100);

/// Offset of `db_id` in a REQ_CALL (header, then flags).
pub(crate) const OFF_CALL_DB_ID: usize = 36;

struct Driver {
    m: RefCell<Migrator>,
    /// The generation the pending calls were last sent in.
    sent_generation: Cell<u32>,
}

thread_local! {
    /// One driver per daemon on this (control) core, by the daemon's
    /// address: the daemon's state struct is not ours to extend.
    static DRIVERS: RefCell<HashMap<usize, Rc<Driver>>> = RefCell::new(HashMap::new());
}

fn daemon_key(d: &Daemon) -> usize {
    d as *const Daemon as usize
}

fn find_driver(d: &Daemon) -> Option<Rc<Driver>> {
    DRIVERS.with(|m| m.borrow().get(&daemon_key(d)).cloned())
}

fn driver(d: &Rc<Daemon>) -> Rc<Driver> {
    if let Some(drv) = find_driver(d) {
        return drv;
    }
    let generation = d.generation();
    let drv = Rc::new(Driver {
        m: RefCell::new(Migrator::new(d.pnn(), generation)),
        sent_generation: Cell::new(generation),
    });
    DRIVERS.with(|m| m.borrow_mut().insert(daemon_key(d), drv.clone()));
    glommio::spawn_local(ticker(d.clone(), drv.clone())).detach();
    drv
}

/// The sticky databases and the sticky-record tunables, as a migrator
/// takes them (here and on the data cores, [`crate::shard_peers`]).
pub fn sticky_config(d: &Daemon) -> StickyConfig {
    StickyConfig {
        dbs: d
            .dbs
            .borrow()
            .iter()
            .filter(|db| db.sticky())
            .map(|db| db.id())
            .collect(),
        hopcount_make_sticky: d.tunable("HopcountMakeSticky", 50),
        duration: Duration::from_secs(u64::from(d.tunable("StickyDuration", 600))),
        pindown: Duration::from_millis(u64::from(d.tunable("StickyPindown", 200))),
    }
}

fn prepare(d: &Daemon, drv: &Driver) {
    let sticky = sticky_config(d);
    let mut m = drv.m.borrow_mut();
    m.set_generation(d.generation());
    m.set_fetch_collapse(d.tunable("FetchCollapse", 1) == 1);
    m.set_sticky(sticky);
}

/// A local client sent a packet (of any kind): records held for it since
/// they arrived let the node calls waiting for them go (the migrator's
/// *hand-over hold*).
pub fn client_active(d: &Rc<Daemon>, client: u32) {
    let Some(drv) = find_driver(d) else {
        return;
    };
    if drv.m.borrow().holds() == 0 {
        return;
    }
    let more = drv.m.borrow_mut().client_active(client, Instant::now());
    run(d, &drv, more);
}

/// A local client's packet: `true` when it is a REQ_CALL on a volatile
/// database of a cluster with other nodes, which this module answers
/// itself (possibly after a migration); `false` to let the local path
/// serve it.
pub fn client_call(d: &Rc<Daemon>, client: u32, pkt: &[u8]) -> bool {
    if d.peers.get().is_none() {
        return false;
    }
    let Ok(raw) = RawHeader::parse(pkt) else {
        return false;
    };
    if raw.version != CTDB_PROTOCOL || raw.operation != Operation::ReqCall as u32 {
        return false;
    }
    let Some(db_id) = pkt
        .get(OFF_CALL_DB_ID..OFF_CALL_DB_ID + 4)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    else {
        return false;
    };
    if !d.dbs.borrow().find(db_id).is_some_and(|db| db.volatile()) {
        return false;
    }
    let drv = driver(d);
    prepare(d, &drv);
    let r = drv.m.borrow_mut().client_call(client, pkt, Instant::now());
    match r {
        Ok(actions) => {
            d.stats.borrow_mut().count(|s| {
                s.client_packets_recv += 1;
                s.client.req_call += 1;
                s.total_calls += 1;
            });
            run(d, &drv, actions);
            true
        }
        // Malformed: the local path rejects it the usual way.
        Err(_) => false,
    }
}

/// A call or dmaster packet from node `from`.
pub fn peer_packet(d: &Rc<Daemon>, from: u32, bytes: Vec<u8>) {
    let drv = driver(d);
    prepare(d, &drv);
    let actions = drv.m.borrow_mut().peer_packet(from, &bytes, Instant::now());
    run(d, &drv, actions);
}

/// A REQ_TUNNEL from node `from`: to the local client that registered its
/// tunnel id (TUNNEL_REGISTER), as the whole packet.
pub fn peer_tunnel(d: &Rc<Daemon>, from: u32, bytes: Vec<u8>) {
    deliver_tunnel(d, from, bytes);
}

/// Hands a REQ_TUNNEL packet to the client that registered its id, or logs
/// upstream's line when none did.
pub fn deliver_tunnel(d: &Daemon, from: u32, bytes: Vec<u8>) {
    let id = bytes
        .get(32..40)
        .map(|b| u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]))
        .unwrap_or(0);
    let client = d.tunnels.borrow().get(&id).copied();
    let queue = client.and_then(|c| d.clients.borrow().get(&c).map(|e| e.queue.clone()));
    match queue {
        Some(q) => {
            if let Err(e) = q.try_send(bytes) {
                tracing::error!("tunnel 0x{id:x} packet from node {from} dropped: {e}");
            }
        }
        None => tracing::error!("Tunnel id 0x{id:x} not registered (from node {from})"),
    }
}

/// Calls of the control core's migrator waiting on another node.
pub fn pending_calls(d: &Daemon) -> u32 {
    find_driver(d).map_or(0, |drv| drv.m.borrow().pending_calls() as u32)
}

/// Record steps of the control core's migrator waiting for a chain lock.
pub fn lock_waits(d: &Daemon) -> u32 {
    find_driver(d).map_or(0, |drv| drv.m.borrow().lock_waits() as u32)
}

/// Node `pnn` died. Upstream does nothing here: the recovery that
/// follows resends every waiting call ([`Migrator::resend_all`]).
pub fn node_dead(d: &Daemon, pnn: u32) {
    if let Some(drv) = find_driver(d) {
        let waiting = drv
            .m
            .borrow()
            .pending_destinations()
            .iter()
            .filter(|(_, dest)| *dest == pnn)
            .count();
        if waiting > 0 {
            tracing::info!(
                "{waiting} call(s) wait on dead node {pnn}: resent after the next recovery"
            );
        }
    }
}

/// Carries out the migrator's actions. Steps on the control core run
/// in-line (their results join the queue); steps on data cores and
/// retries run in tasks of their own.
fn run(d: &Rc<Daemon>, drv: &Rc<Driver>, actions: Vec<Action>) {
    let mut q: VecDeque<Action> = actions.into();
    while let Some(a) = q.pop_front() {
        match a {
            Action::Send { dest, pkt } => peers::send_packet(d, dest, pkt),
            Action::Client { client, pkt } => {
                let d = d.clone();
                glommio::spawn_local(async move { peers::send_to_client(&d, client, pkt).await })
                    .detach();
            }
            Action::Record { ticket, op } => match d.data_cores.clone() {
                // Read-only databases live on this core: their steps run
                // in-line, in the order their packets came (a read-only
                // copy is stored before a later UPDATE_RECORD revoking it
                // is served).
                Some(dc) if !on_control_core(d, &op) => {
                    let (d, drv) = (d.clone(), drv.clone());
                    glommio::spawn_local(async move {
                        let step = dc.record(&d, op).await;
                        prepare(&d, &drv);
                        let more = drv.m.borrow_mut().record_done(ticket, step, Instant::now());
                        run(&d, &drv, more);
                    })
                    .detach();
                }
                _ => {
                    let step = d.dbs.borrow_mut().record_op(&op);
                    let more = drv.m.borrow_mut().record_done(ticket, step, Instant::now());
                    q.extend(more);
                }
            },
            Action::Retry {
                ticket,
                after,
                busy,
            } => {
                let waiter = busy.and_then(|(db_id, key)| d.dbs.borrow().chain_waiter(db_id, &key));
                let (d, drv) = (d.clone(), drv.clone());
                glommio::spawn_local(async move {
                    crate::lockwait::chain_free_or(waiter, after).await;
                    prepare(&d, &drv);
                    let more = drv.m.borrow_mut().retry(ticket, Instant::now());
                    run(&d, &drv, more);
                })
                .detach();
            }
            Action::HoldTimer {
                db_id,
                key,
                id,
                after,
                ..
            } => {
                let (d, drv) = (d.clone(), drv.clone());
                glommio::spawn_local(async move {
                    glommio::timer::sleep(after).await;
                    prepare(&d, &drv);
                    let more = drv
                        .m
                        .borrow_mut()
                        .hold_expired(db_id, &key, id, Instant::now());
                    run(&d, &drv, more);
                })
                .detach();
            }
            Action::Recover => {
                tracing::error!("record migration protocol error: recovery wanted");
                d.recovery_wanted.set(true);
            }
            Action::Hop { hopcount } => d.stats.borrow_mut().count(|s| {
                s.max_hop_count = s.max_hop_count.max(hopcount);
                let b = &mut s.hop_count_bucket[crate::db::hop_bucket(hopcount)];
                *b = b.wrapping_add(1);
            }),
            Action::Count(Counter::LockWait { db_id, micros }) => {
                let t = micros as f64 / 1e6;
                d.stats
                    .borrow_mut()
                    .count(|s| crate::db::stats::count_lock_wait(&mut s.locks, t, true));
                if let Some(db) = d.dbs.borrow_mut().find_mut(db_id) {
                    db.stats.lock_wait(t, true);
                }
            }
            Action::Count(c) => d.stats.borrow_mut().count(|s| match c {
                Counter::RoDelegation => {
                    s.total_ro_delegations = s.total_ro_delegations.wrapping_add(1)
                }
                Counter::RoRevoke => s.total_ro_revokes = s.total_ro_revokes.wrapping_add(1),
                Counter::LockWait { .. } => {}
            }),
            Action::UpdateRecord { revoke, dest, data } => {
                let (d, drv) = (d.clone(), drv.clone());
                let timeout =
                    Duration::from_secs(u64::from(d.tunable("ControlTimeout", 60).max(1)));
                glommio::spawn_local(async move {
                    let r = peers::control(
                        &d,
                        dest,
                        ctdb_protocol::Opcode::UpdateRecord as u32,
                        0,
                        0,
                        &data,
                        timeout,
                    )
                    .await;
                    let ok = match r {
                        Ok(r) if r.status == 0 => true,
                        Ok(r) => {
                            tracing::error!(
                                "Recv for revoke update record failed ret:0 res:{} (node {dest})",
                                r.status
                            );
                            false
                        }
                        Err(e) => {
                            tracing::error!(
                                "Failure to send update record to revoke readonly delegation: {e}"
                            );
                            false
                        }
                    };
                    prepare(&d, &drv);
                    let more = drv
                        .m
                        .borrow_mut()
                        .revoke_reply(revoke, dest, ok, Instant::now());
                    run(&d, &drv, more);
                })
                .detach();
            }
        }
    }
    let pending = drv.m.borrow().pending_calls() as u32;
    let waits = drv.m.borrow().lock_waits() as u32;
    d.stats.borrow_mut().count(|s| {
        s.pending_calls = pending;
        s.locks.num_current = waits;
    });
}

/// Whether a record step's database is served by the control core itself
/// (read-only databases are never split over data cores).
fn on_control_core(d: &Daemon, op: &crate::db::RecordOp) -> bool {
    d.dbs
        .borrow()
        .find(op.db_id())
        .is_some_and(|db| db.readonly())
}

/// Resends the waiting calls once a recovery has finished (new
/// generation, recovery mode normal, their databases thawed), and hands
/// in client calls that waited too long behind a fetch.
async fn ticker(d: Rc<Daemon>, drv: Rc<Driver>) {
    loop {
        glommio::timer::sleep(TICK).await;
        if d.shutdown.get() {
            return;
        }
        prepare(&d, &drv);
        let now = Instant::now();
        let mut actions = drv.m.borrow_mut().tick(now);
        let generation = d.generation();
        if generation != drv.sent_generation.get() {
            let recovering = d.node.borrow().recmode() == CTDB_RECOVERY_ACTIVE;
            let frozen = {
                let dbs = d.dbs.borrow();
                drv.m
                    .borrow()
                    .pending_dbs()
                    .iter()
                    .any(|id| dbs.find(*id).is_some_and(|db| db.frozen()))
            };
            if !recovering && !frozen {
                drv.sent_generation.set(generation);
                actions.extend(drv.m.borrow_mut().resend_all(now));
            }
        }
        if !actions.is_empty() {
            run(&d, &drv, actions);
        }
    }
}
