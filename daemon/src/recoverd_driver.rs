//! The recovery daemon of a real ctdbd: the sans-I/O machines of
//! [`crate::cluster`] ([`Recoverd`] with its elections and
//! [`crate::cluster::recovery::RecoveryRun`]s) driven over the node
//! transport ([`crate::peers`]), the cluster mutex helper
//! ([`ClusterLock`]) and the event scripts.
//!
//! Why a driver module: the machines decide *what* to do (who leads, when
//! to recover, which copy of a record survives) and are tested from seeds
//! in `daemon/tests/sim.rs`; this module only does the I/O they ask for,
//! so the daemon runs exactly the logic the simulation checks.
//!
//! # Shape
//!
//! One task on the control core ([`run`]) owns the [`Recoverd`] and feeds
//! it from one event channel: srvid messages (`LEADER`, `ELECTION`,
//! `BANNING`, `PUSH_NODE_FLAGS`, through [`peers::subscribe`]), the results
//! of the controls it sent, and the cluster mutex helper's answers. Time
//! passes with [`Recoverd::tick`] at [`Recoverd::next_wakeup`] (at least
//! every 200 ms). Every [`Action::Control`] runs in a task of its own that
//! maps the typed control onto the wire ([`encode`], [`decode_reply`]),
//! waits for the reply at most `RecoverTimeout` seconds and answers the
//! machine exactly once (`Ok` or `Err`).
//!
//! The clock given to the machine is the wall clock at start plus the
//! monotonic time since: election priority times are compared across
//! nodes (so they must be wall-clock based, as upstream's
//! `timeval_current()`), while timers must not jump.
//!
//! # Records
//!
//! * DB_PULL: the records come as REQ_MESSAGEs (`ctdb_rec_buffer`, each
//!   record's data starting with its ltdb header) to a srvid named in the
//!   request; the driver subscribes to that srvid *before* sending, and
//!   the reply's count must equal the records received. Pull srvids cycle
//!   through [`PULL_SRVIDS`] values of `CTDB_SRVID_RECOVERY | pnn << 16 |
//!   0x100 | n` (256 values; recovery runs pull from one node at a time,
//!   so a late record of an earlier pull never lands in a later one).
//! * DB_PUSH: DB_PUSH_START with [`PUSH_SRVID`], the records in buffers of
//!   at most `RecBufferSizeLimit` bytes as messages to that node, then
//!   DB_PUSH_CONFIRM, whose count is the reply. Records for this node are
//!   handed to the database layer directly.
//!
//! Until [`peers::deliver_local`] hands messages on a DB_PUSH srvid to
//! the database layer itself (as upstream's DB_PUSH_START srvid handler
//! does, for a push from any node), every node's driver subscribes to
//! [`PUSH_SRVID`] and stores those records (`push_tap`); the leader then
//! makes a round trip to the node before DB_PUSH_CONFIRM, so that task
//! has run.
//!
//! # Takeover runs
//!
//! The takeover side of the recovery daemon runs in a task of its own
//! ([`crate::takeover::run`], started here); a finished recovery asks it
//! for a takeover run.

use std::cell::Cell;
use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ctdb_protocol::constants::{
    CTDB_BROADCAST_ALL, CTDB_BROADCAST_CONNECTED, CTDB_CTRL_FLAG_ATTACH_RECOVERY,
};
use ctdb_protocol::types::{
    srvid, BanState, CtdbString, DbIdMap, DisableMessage, ElectionMessage, LtdbHeader, MessageData,
    NodeFlagChange, NodeMap, PullDbExt, RecBuffer, RecBufferBuilder, TransDb, VnnMap,
    DB_FLAGS_PERSISTENT, DB_FLAGS_REPLICATED, LMASTER_ANY,
};
use ctdb_protocol::{ControlData, ControlReplyData, DbIdPad, Opcode, Wire};
use glommio::channels::local_channel::{self, LocalReceiver, LocalSender};

use crate::cluster::recoverd::Recoverd;
use crate::cluster::{
    Action, Control, ControlId, ControlResult, DbInfo, Dest, LockStatus, Message, Millis, Pnn,
    Record, Reply, CTDB_UNKNOWN_PNN,
};
use crate::db::OutMessage;
use crate::monitor::ClusterLock;
use crate::peers::{self, ControlReply};
use crate::runtime::StopSignal;
use crate::state::Daemon;

/// The srvid our leader pushes recovery records to (any node).
pub const PUSH_SRVID: u64 = srvid::RECOVERY | 0x0000_5055_5348_0000;

/// The bit our database layer (`db::CTRL_FLAG_ATTACH_RECOVERY`) takes for
/// upstream's `CTDB_CTRL_FLAG_ATTACH_RECOVERY` (0x20000); sent as well
/// until it uses upstream's value. No upstream control flag uses 0x2.
pub const ATTACH_RECOVERY_COMPAT: u32 = 0x0000_0002;

/// How many pull srvids a driver cycles through.
pub const PULL_SRVIDS: u64 = 256;

/// What the driver task waits for.
enum Ev {
    Msg(Message),
    /// `CTDB_SRVID_DISABLE_RECOVERIES` (`ctdb reloadnodes` and others).
    DisableRecoveries(DisableMessage),
    Result(ControlId, ControlResult),
    /// The mutex helper answered a take started in lock epoch `epoch`.
    Lock {
        epoch: u64,
        status: LockStatus,
        lock: Option<ClusterLock>,
    },
}

/// The machine's clock: wall-clock milliseconds at start plus monotonic
/// time since.
struct Clock {
    wall0: Millis,
    mono0: Instant,
}

impl Clock {
    fn new() -> Clock {
        let wall0 = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|t| t.as_millis() as Millis)
            .unwrap_or(0);
        Clock {
            wall0,
            mono0: Instant::now(),
        }
    }
    fn now(&self) -> Millis {
        self.wall0 + self.mono0.elapsed().as_millis() as Millis
    }
}

/// The driver's state, owned by its task.
struct Driver {
    d: Rc<Daemon>,
    recd: Recoverd,
    clock: Clock,
    tx: Rc<LocalSender<Ev>>,
    lock: Option<ClusterLock>,
    lock_epoch: u64,
    /// When the current attempt to take the cluster lock began (for
    /// `reclock_recd` in the statistics).
    lock_started: std::time::Instant,
    pull_seq: Rc<Cell<u64>>,
    last_leader: Pnn,
    last_stats: crate::cluster::recoverd::RecoverdStats,
}

/// `ctdb rddumpmemory`: a `ctdb_srvid_message` to `CTDB_SRVID_MEM_DUMP`
/// names where the recovery daemon sends its memory report.
async fn answer_mem_dumps(d: Rc<Daemon>, alive: Rc<Cell<bool>>) {
    let sub = peers::subscribe(&d, srvid::MEM_DUMP);
    while let Some(data) = sub.recv().await {
        if !alive.get() {
            return;
        }
        let Ok(MessageData::MemDump(rd)) = MessageData::decode(srvid::MEM_DUMP, &data) else {
            tracing::error!(
                "MEM_DUMP request of {} bytes: wrong size of return address",
                data.len()
            );
            continue;
        };
        tracing::error!("recovery daemon memory dump");
        let report = crate::memreport::daemon_report(&d, "ctdb_recoverd");
        d.deliver(&OutMessage {
            pnn: rd.pnn,
            srvid: rd.srvid,
            data: report.into_bytes(),
        });
    }
}

/// Runs the recovery daemon until the daemon stops; releases the cluster
/// lock on the way out.
pub async fn run(d: Rc<Daemon>, stop: StopSignal) {
    let clock = Clock::new();
    let tun = d.node.borrow().tunables().clone();
    let seed = clock.now() ^ (u64::from(std::process::id()) << 32);
    let recd = Recoverd::new(d.pnn(), tun, d.reclock.is_some(), clock.now(), seed);
    let (tx, rx) = local_channel::new_unbounded();
    let tx = Rc::new(tx);
    let alive = Rc::new(Cell::new(true));
    for sid in [
        srvid::LEADER,
        srvid::ELECTION,
        srvid::BANNING,
        srvid::PUSH_NODE_FLAGS,
        srvid::DISABLE_RECOVERIES,
    ] {
        let sub = peers::subscribe(&d, sid);
        glommio::spawn_local(forward_messages(sid, sub, tx.clone(), alive.clone())).detach();
    }

    glommio::spawn_local(crate::takeover::run::run(d.clone(), stop.clone())).detach();
    glommio::spawn_local(answer_mem_dumps(d.clone(), alive.clone())).detach();

    let mut drv = Driver {
        d: d.clone(),
        recd,
        clock,
        tx,
        lock: None,
        lock_epoch: 0,
        lock_started: std::time::Instant::now(),
        pull_seq: Rc::new(Cell::new(0)),
        last_leader: CTDB_UNKNOWN_PNN,
        last_stats: Default::default(),
    };
    tracing::info!(
        "Recovery daemon started (cluster lock: {})",
        d.reclock.is_some()
    );
    loop {
        if d.shutdown.get() || stop.is_stopped() {
            break;
        }
        drv.check_lock();
        drv.refresh_tunables();
        // Requests noticed by the machine itself (recovery mode, flags).
        d.recovery_wanted.set(false);
        let now = drv.clock.now();
        let view = d.node.borrow().view();
        let acts = drv.recd.tick(now, &view);
        drv.apply(acts);
        drv.after_event();

        let wait = drv
            .recd
            .next_wakeup()
            .saturating_sub(drv.clock.now())
            .clamp(5, 200);
        let ev = futures_lite::future::or(async { rx.recv().await }, async {
            futures_lite::future::or(
                async {
                    glommio::timer::sleep(Duration::from_millis(wait)).await;
                },
                async {
                    stop.stopped().await;
                },
            )
            .await;
            None
        })
        .await;
        if let Some(ev) = ev {
            drv.handle(ev);
            drv.after_event();
        }
    }
    alive.set(false);
    drv.lock_epoch += 1;
    if let Some(mut l) = drv.lock.take() {
        l.release();
        tracing::info!("Released cluster lock");
    }
    d.leader.set(CTDB_UNKNOWN_PNN);
    tracing::info!("Recovery daemon stopped");
}

impl Driver {
    fn handle(&mut self, ev: Ev) {
        let now = self.clock.now();
        let view = self.d.node.borrow().view();
        let acts = match ev {
            Ev::Msg(m) => self.recd.on_message(now, &view, &m),
            Ev::DisableRecoveries(m) => {
                // As upstream: our pnn on success, -EAGAIN while a
                // recovery runs; to the srvid the request names (none: 0).
                let status: i32 = match self.recd.disable_recoveries(now, m.timeout) {
                    true if m.timeout == 0 => {
                        tracing::info!("Reenabling recoveries");
                        self.d.pnn() as i32
                    }
                    true => {
                        tracing::info!("Disabling recoveries for {} seconds", m.timeout);
                        self.d.pnn() as i32
                    }
                    false => {
                        tracing::error!("Unable to disable recoveries - in progress");
                        -11
                    }
                };
                if m.srvid != 0 {
                    self.d.deliver(&OutMessage {
                        pnn: m.pnn,
                        srvid: m.srvid,
                        data: status.to_le_bytes().to_vec(),
                    });
                }
                return;
            }
            Ev::Result(id, r) => self.recd.on_control_result(now, &view, id, r),
            Ev::Lock {
                epoch,
                status,
                lock,
            } => {
                if epoch != self.lock_epoch {
                    // Released (or retaken) since: not the machine's answer.
                    if let Some(mut l) = lock {
                        l.release();
                    }
                    return;
                }
                match status {
                    LockStatus::Held => {
                        tracing::info!("Took cluster lock");
                        let secs = self.lock_started.elapsed().as_secs_f64();
                        self.d.reclock_latency(secs);
                    }
                    LockStatus::Contended => {
                        tracing::error!("Unable to take cluster lock - contention")
                    }
                    LockStatus::Timeout => tracing::error!("Unable to take cluster lock - timeout"),
                    LockStatus::Error => {
                        tracing::error!("Unable to take cluster lock - unknown error")
                    }
                }
                if let Some(mut old) = self.lock.take() {
                    old.release();
                }
                self.lock = lock;
                self.recd.on_lock_status(now, &view, status)
            }
        };
        self.apply(acts);
    }

    /// Hands the machine the daemon's current tunables when they changed.
    fn refresh_tunables(&mut self) {
        let cur = self.recd.tunables().clone();
        let tun = {
            let t = self.d.tunables.borrow();
            let get = |name: &str, v: u32| t.get(name).unwrap_or(v);
            crate::cluster::Tunables {
                recover_interval: get("RecoverInterval", cur.recover_interval),
                recover_timeout: get("RecoverTimeout", cur.recover_timeout),
                election_timeout: get("ElectionTimeout", cur.election_timeout),
                rerecovery_timeout: get("RerecoveryTimeout", cur.rerecovery_timeout),
                recovery_ban_period: get("RecoveryBanPeriod", cur.recovery_ban_period),
                enable_bans: get("EnableBans", u32::from(cur.enable_bans)) != 0,
                recovery_grace_period: get("RecoveryGracePeriod", cur.recovery_grace_period),
                keepalive_interval: get("KeepaliveInterval", cur.keepalive_interval),
                keepalive_limit: get("KeepaliveLimit", cur.keepalive_limit),
                ..cur.clone()
            }
        };
        if tun != cur {
            let now = self.clock.now();
            self.recd.set_tunables(now, tun);
        }
    }

    /// The helper holding the lock exited: the lock is lost.
    fn check_lock(&mut self) {
        let lost = self.lock.as_mut().is_some_and(|l| l.lost());
        if lost {
            tracing::error!("Cluster lock helper terminated");
            self.lock = None;
            let now = self.clock.now();
            let view = self.d.node.borrow().view();
            let acts = self.recd.on_lock_lost(now, &view);
            self.apply(acts);
        }
    }

    /// Keeps `d.leader` and the logs in step with the machine.
    fn after_event(&mut self) {
        let leader = self.recd.leader();
        self.d.leader.set(leader);
        if leader != self.last_leader {
            if leader == self.d.pnn() {
                tracing::info!("This node (pnn {leader}) is now the leader");
            } else if leader == CTDB_UNKNOWN_PNN {
                tracing::info!("Leader unknown (election)");
            } else {
                tracing::info!("Leader is node {leader}");
            }
            self.last_leader = leader;
        }
        let s = self.recd.stats();
        if s.recoveries_started > self.last_stats.recoveries_started {
            tracing::info!(
                "Starting do_recovery (generation 0x{:08x})",
                self.recd.running_generation().unwrap_or(0)
            );
        }
        if s.recoveries_done > self.last_stats.recoveries_done {
            tracing::info!(
                "Recovery complete (generation 0x{:08x})",
                self.d.generation()
            );
        }
        if s.recoveries_failed > self.last_stats.recoveries_failed {
            match self.recd.last_failure() {
                Some(e) => tracing::error!("Recovery failed ({e:?}); will retry"),
                None => tracing::error!("Recovery abandoned; will retry"),
            }
        }
        if s.bans_sent > self.last_stats.bans_sent {
            tracing::error!("Recovery daemon asked for a ban");
        }
        self.last_stats = s;
    }

    fn apply(&mut self, acts: Vec<Action>) {
        for a in acts {
            match a {
                Action::Control { id, dest, control } => {
                    let d = self.d.clone();
                    let tx = self.tx.clone();
                    let seq = self.pull_seq.clone();
                    glommio::spawn_local(async move {
                        let r = send_control(&d, dest, control, &seq).await;
                        let _ = tx.try_send(Ev::Result(id, r));
                    })
                    .detach();
                }
                Action::Message { dest, msg } => send_message(&self.d, dest, &msg),
                Action::TakeClusterLock => self.take_lock(),
                Action::ReleaseClusterLock => {
                    self.lock_epoch += 1;
                    if let Some(mut l) = self.lock.take() {
                        l.release();
                        tracing::info!("Released cluster lock");
                    }
                }
                Action::TakeoverRun => crate::takeover::run::request_run(&self.d),
                Action::TestClusterLock
                | Action::SendKeepalive(_)
                | Action::RestartTransport(_)
                | Action::ReplyDeferred { .. } => {
                    // The node side of these (keepalives, deferred
                    // SET_RECMODE) is served by the transport and the
                    // control handlers, not the recovery daemon.
                    tracing::debug!("recovery daemon action {a:?} not for the driver");
                }
            }
        }
    }

    fn take_lock(&mut self) {
        self.lock_epoch += 1;
        self.lock_started = std::time::Instant::now();
        let epoch = self.lock_epoch;
        if let Some(mut l) = self.lock.take() {
            l.release();
        }
        let Some(path) = self.d.reclock.clone() else {
            let _ = self.tx.try_send(Ev::Lock {
                epoch,
                status: LockStatus::Held,
                lock: None,
            });
            return;
        };
        let helper = self.d.mutex_helper.clone();
        let tx = self.tx.clone();
        glommio::spawn_local(async move {
            let (status, lock) = match ClusterLock::take(&helper, &path).await {
                Ok(l) => (LockStatus::Held, Some(l)),
                Err((st, why)) => {
                    tracing::debug!("cluster lock: {why}");
                    (st, None)
                }
            };
            // If the driver is gone, dropping the lock releases it.
            let _ = tx.try_send(Ev::Lock {
                epoch,
                status,
                lock,
            });
        })
        .detach();
    }
}

/// Hands every message for `sid` to the driver, decoded.
async fn forward_messages(
    sid: u64,
    rx: LocalReceiver<Vec<u8>>,
    tx: Rc<LocalSender<Ev>>,
    alive: Rc<Cell<bool>>,
) {
    while let Some(data) = rx.recv().await {
        if !alive.get() {
            return;
        }
        let msg = match MessageData::decode(sid, &data) {
            Ok(MessageData::Leader(p)) => Message::Leader(p),
            Ok(MessageData::Election(em)) => Message::Election(em),
            Ok(MessageData::Banning(p)) => Message::Banning(p),
            Ok(MessageData::PushNodeFlags(c)) => Message::PushNodeFlags(c),
            Ok(MessageData::DisableRecoveries(m)) => {
                if tx.try_send(Ev::DisableRecoveries(m)).is_err() {
                    return;
                }
                continue;
            }
            Ok(_) => continue,
            Err(e) => {
                tracing::error!(
                    "bad message for srvid 0x{sid:016x} ({} bytes): {e}",
                    data.len()
                );
                continue;
            }
        };
        if tx.try_send(Ev::Msg(msg)).is_err() {
            return;
        }
    }
}

/// The wire form of a message of the cluster logic.
pub fn message_wire(dest: Dest, msg: &Message) -> OutMessage {
    let pnn = match dest {
        Dest::Node(p) => p,
        Dest::Connected => CTDB_BROADCAST_CONNECTED,
        Dest::All => CTDB_BROADCAST_ALL,
    };
    let (sid, data) = match msg {
        Message::Leader(p) => (srvid::LEADER, p.to_bytes()),
        Message::Election(em) => (srvid::ELECTION, ElectionMessage::to_bytes(em)),
        Message::Banning(p) => (srvid::BANNING, p.to_bytes()),
        Message::PushNodeFlags(c) => (srvid::PUSH_NODE_FLAGS, NodeFlagChange::to_bytes(c)),
        Message::Reconfigure => (srvid::RECONFIGURE, Vec::new()),
    };
    OutMessage {
        pnn,
        srvid: sid,
        data,
    }
}

fn send_message(d: &Daemon, dest: Dest, msg: &Message) {
    d.deliver(&message_wire(dest, msg));
}

fn timeout(d: &Daemon) -> Duration {
    Duration::from_secs(u64::from(d.tunable("RecoverTimeout", 30).max(1)))
}

/// Opcode, control flags and data of a typed control (not DB_PULL or
/// DB_PUSH, which take several packets).
pub fn encode(ctl: &Control) -> Option<(Opcode, u32, Vec<u8>)> {
    let mut flags = 0;
    let cd = match ctl {
        Control::GetNodemap => ControlData::GetNodemap,
        Control::GetVnnmap => ControlData::Getvnnmap,
        Control::GetRecmode => ControlData::GetRecmode,
        Control::GetCapabilities => ControlData::GetCapabilities,
        Control::GetDbmap => ControlData::GetDbmap,
        Control::SetRecmode(m) => ControlData::SetRecmode(*m),
        Control::ModifyFlags(c) => ControlData::ModifyFlags(*c),
        Control::SetBanState(b) => ControlData::SetBanState(BanState {
            pnn: b.pnn,
            time: b.time,
        }),
        Control::StartRecovery => ControlData::StartRecovery,
        Control::EndRecovery => ControlData::EndRecovery,
        Control::SetVnnmap(m) => ControlData::Setvnnmap(m.clone()),
        Control::Freeze => ControlData::Freeze,
        Control::GetDbname(id) => ControlData::GetDbname(*id),
        Control::DbAttach { name, flags: f } => {
            // 0x2 too: the database layer checks that bit today (see
            // `ATTACH_RECOVERY_COMPAT`).
            flags = CTDB_CTRL_FLAG_ATTACH_RECOVERY | ATTACH_RECOVERY_COMPAT;
            let s = CtdbString::new(name);
            if f & DB_FLAGS_REPLICATED != 0 {
                ControlData::DbAttachReplicated(s)
            } else if f & DB_FLAGS_PERSISTENT != 0 {
                ControlData::DbAttachPersistent(s)
            } else {
                ControlData::DbAttach(s)
            }
        }
        Control::DbFreeze(id) => ControlData::DbFreeze(*id),
        Control::DbThaw(id) => ControlData::DbThaw(*id),
        Control::DbTransactionStart { db_id, tid } => ControlData::DbTransactionStart(TransDb {
            db_id: *db_id,
            tid: *tid,
        }),
        Control::DbTransactionCommit { db_id, tid } => ControlData::DbTransactionCommit(TransDb {
            db_id: *db_id,
            tid: *tid,
        }),
        Control::GetDbSeqnum(id) => ControlData::GetDbSeqnum(DbIdPad(*id)),
        Control::DbWipe { db_id, tid } => ControlData::WipeDatabase(TransDb {
            db_id: *db_id,
            tid: *tid,
        }),
        Control::DbPull(_) | Control::DbPush { .. } => return None,
    };
    let op = Opcode::from_u32(cd.opcode())?;
    let mut data = Vec::with_capacity(cd.wire_len());
    cd.push(&mut data);
    Some((op, flags, data))
}

/// The typed reply of a control from its wire reply.
pub fn decode_reply(op: Opcode, r: &ControlReply) -> Result<Reply, String> {
    if op == Opcode::GetRecmode {
        return if r.status < 0 {
            Err(format!("status {}", r.status))
        } else {
            Ok(Reply::Recmode(r.status as u32))
        };
    }
    if r.status != 0 {
        return Err(format!(
            "status {}{}{}",
            r.status,
            if r.errmsg.is_empty() { "" } else { ": " },
            String::from_utf8_lossy(&r.errmsg).trim_end_matches('\0')
        ));
    }
    let data = ControlReplyData::decode(op as u32, &r.data).map_err(|e| e.to_string())?;
    Ok(match data {
        ControlReplyData::GetNodemap(NodeMap { nodes }) => {
            Reply::Nodemap(nodes.iter().map(|n| (n.pnn, n.flags)).collect())
        }
        ControlReplyData::Getvnnmap(m) => Reply::Vnnmap(VnnMap {
            generation: m.generation,
            map: m.map,
        }),
        ControlReplyData::GetCapabilities(c) => Reply::Capabilities(c),
        ControlReplyData::GetDbmap(DbIdMap { dbs }) => Reply::Dbmap(
            dbs.iter()
                .map(|d| DbInfo {
                    db_id: d.db_id,
                    flags: d.flags,
                })
                .collect(),
        ),
        ControlReplyData::GetDbname(s) => Reply::Dbname(s.to_string_lossy()),
        ControlReplyData::GetDbSeqnum(n) => Reply::Seqnum(n),
        _ => Reply::Done,
    })
}

/// Sends one typed control and waits for its typed result.
async fn send_control(d: &Rc<Daemon>, dest: Pnn, ctl: Control, seq: &Cell<u64>) -> ControlResult {
    // Named for the error log only: never the records of a DB_PUSH (a
    // Debug dump of a million records cost seconds and hundreds of MiB).
    let what = match &ctl {
        Control::DbPush { db_id, records } => {
            format!(
                "DbPush {{ db_id: 0x{db_id:08x}, records: {} }}",
                records.len()
            )
        }
        c => format!("{c:?}"),
    };
    let r = match ctl {
        Control::DbPull(db_id) => {
            let n = seq.get();
            seq.set(n.wrapping_add(1));
            let sid = srvid::RECOVERY | (u64::from(d.pnn()) << 16) | (n % PULL_SRVIDS) | 0x100;
            db_pull(d, dest, db_id, sid).await
        }
        Control::DbPush { db_id, records } => db_push(d, dest, db_id, &records).await,
        other => match encode(&other) {
            None => Err("not encodable".to_string()),
            Some((op, flags, data)) => {
                match peers::control(d, dest, op as u32, 0, flags, &data, timeout(d)).await {
                    Ok(r) => decode_reply(op, &r),
                    Err(e) => Err(e.to_string()),
                }
            }
        },
    };
    match r {
        Ok(reply) => ControlResult::Ok(reply),
        Err(why) => {
            let short: String = what.chars().take(80).collect();
            tracing::warn!("control {short} to node {dest} failed: {why}");
            ControlResult::Err
        }
    }
}

/// DB_PULL from `dest`: every record of the database, ltdb header split
/// off.
async fn db_pull(d: &Rc<Daemon>, dest: Pnn, db_id: u32, sid: u64) -> Result<Reply, String> {
    let rx = peers::subscribe(d, sid);
    let req = PullDbExt {
        db_id,
        lmaster: LMASTER_ANY,
        srvid: sid,
    };
    let r = peers::control(
        d,
        dest,
        Opcode::DbPull as u32,
        0,
        0,
        &req.to_bytes(),
        timeout(d),
    )
    .await
    .map_err(|e| e.to_string())?;
    // The records were sent before the reply, on the same link: they are
    // all queued by now.
    let mut records = Vec::new();
    let mut received: u32 = 0;
    let mut bad = None;
    while let Some(Some(buf)) = futures_lite::future::poll_once(rx.recv()).await {
        match parse_records(db_id, &buf, &mut records) {
            Ok(n) => received = received.wrapping_add(n),
            Err(e) => bad = Some(e),
        }
    }
    drop(rx);
    if r.status != 0 {
        return Err(format!("status {}", r.status));
    }
    if let Some(e) = bad {
        return Err(e);
    }
    let count = u32::from_bytes(&r.data).map_err(|e| format!("DB_PULL reply: {e}"))?;
    if count != received {
        return Err(format!(
            "mismatch ({count} != {received}) in DB_PULL records for db 0x{db_id:08x}"
        ));
    }
    tracing::debug!("Pulled {received} records for db 0x{db_id:08x} from node {dest}");
    Ok(Reply::Records(records))
}

/// Decodes one DB_PULL record buffer into `out`; the number of records.
pub fn parse_records(db_id: u32, buf: &[u8], out: &mut Vec<Record>) -> Result<u32, String> {
    let rb = RecBuffer::from_bytes(buf).map_err(|e| format!("bad DB_PULL records: {e}"))?;
    if rb.db_id != db_id {
        return Err(format!(
            "DB_PULL records for db 0x{:08x}, expected 0x{db_id:08x}",
            rb.db_id
        ));
    }
    for rec in rb.iter() {
        let (h, value) = rec
            .split_header()
            .map_err(|e| format!("DB_PULL record without ltdb header: {e}"))?;
        out.push(Record {
            key: rec.key.to_vec(),
            rsn: h.rsn,
            dmaster: h.dmaster,
            flags: h.flags,
            data: value.to_vec(),
        });
    }
    Ok(rb.count())
}

/// Record buffers of at most `limit` bytes (at least one record each).
pub fn record_buffers(db_id: u32, records: &[Record], limit: usize) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut b = RecBufferBuilder::new(db_id);
    for r in records {
        let h = LtdbHeader {
            rsn: r.rsn,
            dmaster: r.dmaster,
            reserved1: 0,
            flags: r.flags,
        };
        b.add(0, Some(&h), &r.key, &r.data);
        if b.wire_len() >= limit {
            out.push(std::mem::replace(&mut b, RecBufferBuilder::new(db_id)).into_wire_bytes());
        }
    }
    if !b.is_empty() {
        out.push(b.into_wire_bytes());
    }
    out
}

/// DB_PUSH_START, the records, DB_PUSH_CONFIRM to `dest`.
async fn db_push(
    d: &Rc<Daemon>,
    dest: Pnn,
    db_id: u32,
    records: &[Record],
) -> Result<Reply, String> {
    let req = PullDbExt {
        db_id,
        lmaster: LMASTER_ANY,
        srvid: PUSH_SRVID,
    };
    let r = peers::control(
        d,
        dest,
        Opcode::DbPushStart as u32,
        0,
        0,
        &req.to_bytes(),
        timeout(d),
    )
    .await
    .map_err(|e| e.to_string())?;
    if r.status != 0 {
        return Err(format!("DB_PUSH_START status {}", r.status));
    }
    let limit = d.tunable("RecBufferSizeLimit", 1_000_000).max(1024) as usize;
    for buf in record_buffers(db_id, records, limit) {
        if dest == d.pnn() {
            d.dbs.borrow_mut().push_message(PUSH_SRVID, &buf);
        } else {
            d.deliver(&OutMessage {
                pnn: dest,
                srvid: PUSH_SRVID,
                data: buf,
            });
        }
    }
    let r = peers::control(
        d,
        dest,
        Opcode::DbPushConfirm as u32,
        0,
        0,
        &db_id.to_bytes(),
        timeout(d),
    )
    .await
    .map_err(|e| e.to_string())?;
    if r.status != 0 {
        return Err(format!("DB_PUSH_CONFIRM status {}", r.status));
    }
    let n = u32::from_bytes(&r.data).map_err(|e| format!("DB_PUSH_CONFIRM reply: {e}"))?;
    if n as usize != records.len() {
        tracing::error!(
            "Node {dest} received {n} of {} records for db 0x{db_id:08x}",
            records.len()
        );
    } else {
        tracing::debug!("Pushed {n} records for db 0x{db_id:08x} to node {dest}");
    }
    Ok(Reply::Count(n))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_through_buffers() {
        let recs: Vec<Record> = (0..50u8)
            .map(|i| Record {
                key: vec![i; 3],
                rsn: u64::from(i) * 7,
                dmaster: u32::from(i % 3),
                flags: 0x10000,
                data: vec![i; usize::from(i)],
            })
            .collect();
        let bufs = record_buffers(0x1234, &recs, 300);
        assert!(bufs.len() > 1, "split by the size limit");
        let mut back = Vec::new();
        let mut n = 0;
        for b in &bufs {
            n += parse_records(0x1234, b, &mut back).unwrap();
        }
        assert_eq!(n, 50);
        assert_eq!(back, recs);
        assert!(parse_records(0x9999, &bufs[0], &mut Vec::new()).is_err());
        assert!(parse_records(0x1234, &[1, 2, 3], &mut Vec::new()).is_err());
    }

    #[test]
    fn controls_encode_as_the_receiving_side_decodes() {
        let cases = [
            Control::SetRecmode(1),
            Control::GetDbSeqnum(7),
            Control::DbTransactionStart { db_id: 3, tid: 9 },
            Control::DbAttach {
                name: "p.tdb".into(),
                flags: DB_FLAGS_PERSISTENT,
            },
            Control::SetVnnmap(VnnMap {
                generation: 5,
                map: vec![0, 2],
            }),
            Control::DbWipe { db_id: 3, tid: 9 },
        ];
        for c in cases {
            let (op, _, data) = encode(&c).unwrap();
            let back = ControlData::decode(op as u32, &data).unwrap();
            assert_eq!(back.opcode(), op as u32, "{c:?}");
        }
        let (op, flags, data) = encode(&Control::DbAttach {
            name: "v.tdb".into(),
            flags: 0,
        })
        .unwrap();
        assert_eq!(op, Opcode::DbAttach);
        assert_ne!(flags & CTDB_CTRL_FLAG_ATTACH_RECOVERY, 0);
        assert_eq!(data, b"v.tdb\0");
        assert!(encode(&Control::DbPull(1)).is_none());
    }

    #[test]
    fn replies_decode() {
        let r = ControlReply {
            status: 1,
            data: Vec::new(),
            errmsg: Vec::new(),
        };
        assert_eq!(decode_reply(Opcode::GetRecmode, &r), Ok(Reply::Recmode(1)));
        assert!(decode_reply(Opcode::SetRecmode, &r).is_err());
        let r = ControlReply {
            status: 0,
            data: 42u64.to_bytes(),
            errmsg: Vec::new(),
        };
        assert_eq!(decode_reply(Opcode::GetDbSeqnum, &r), Ok(Reply::Seqnum(42)));
        let bad = ControlReply {
            status: 0,
            data: vec![1],
            errmsg: Vec::new(),
        };
        assert!(decode_reply(Opcode::GetCapabilities, &bad).is_err());
    }

    #[test]
    fn messages_go_to_broadcasts() {
        let m = message_wire(Dest::Connected, &Message::Leader(2));
        assert_eq!(m.pnn, CTDB_BROADCAST_CONNECTED);
        assert_eq!(m.srvid, srvid::LEADER);
        assert_eq!(m.data, 2u32.to_bytes());
        let m = message_wire(Dest::All, &Message::Reconfigure);
        assert_eq!((m.pnn, m.srvid), (CTDB_BROADCAST_ALL, srvid::RECONFIGURE));
    }
}
