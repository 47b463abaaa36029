//! The vacuum driver on the control core: when each volatile database is
//! vacuumed (upstream's per-database timer of VacuumInterval seconds, a
//! full run every VacuumFastPathCount runs), DB_VACUUM from clients
//! (`ctdb-db-test vacuum`), and one run's exchanges with the other nodes:
//! migrating the fetch queue's records here, VACUUM_FETCH to the lmasters,
//! TRY_DELETE_RECORDS to every other active node before deleting here.
//! The record work itself is [`crate::db::vacuum`].
//!
//! Why a task and not a child process, as upstream: the work is short
//! steps on the control core that never wait for a lock (a busy chain is
//! skipped or retried after a short sleep), and the waits (migrations,
//! other nodes' replies) are awaits, so the daemon keeps serving. The
//! things upstream gets from its child are kept:
//!
//! * one run at a time on a node (a second gets EBUSY: the timer retries
//!   after 0.5 s, DB_VACUUM answers −1);
//! * no run starts during recovery or on a frozen database, and a running
//!   one is abandoned as soon as either happens (upstream kills the child
//!   on freeze); each step checks this right before touching records, so a
//!   step never runs on a frozen database;
//! * a run is abandoned after VacuumMaxRunTime seconds;
//! * the fetch queue's migrations go through the client path, as the
//!   child's `ctdb_call_send` does: a socket pair whose other end is served
//!   as a local client ([`crate::client`]), so migration, fetch collapse
//!   and deferral during recovery are the ordinary ones;
//! * DB_VACUUM is answered when the run ends (vacuum.031 relies on the
//!   answer waiting for a migration held up by a record lock), and the run
//!   goes on if the client gave up waiting.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, HashSet};
use std::os::unix::net::UnixStream as StdUnixStream;
use std::rc::Rc;
use std::time::{Duration, Instant};

use ctdb_io::{PacketReader, PacketWriter};
use ctdb_protocol::constants::{
    CTDB_CALL_FLAG_VACUUM_MIGRATION, CTDB_CURRENT_NODE, CTDB_IMMEDIATE_MIGRATION, CTDB_NULL_FUNC,
    CTDB_RECOVERY_ACTIVE, NODE_FLAGS_INACTIVE,
};
use ctdb_protocol::{
    ControlData, Header, Opcode, Packet, Payload, RawHeader, ReqCall, CTDB_PROTOCOL,
};

use crate::db::vacuum::{self as dbv, DeleteStep, VacuumCounts};
use crate::runtime::StopSignal;
use crate::state::Daemon;

/// How often the scheduler looks at the databases' timers.
const TICK: Duration = Duration::from_millis(100);
/// Upstream's stagger when another run is in progress.
const STAGGER: Duration = Duration::from_millis(500);
/// How often a running vacuum checks for recovery, freeze and its limit.
const WATCH: Duration = Duration::from_millis(50);
/// Wait between attempts on a delete-list record whose chain is locked.
const BUSY_RETRY: Duration = Duration::from_millis(10);
/// How often the control core looks for a full run's traverse result.
const SCAN_POLL: Duration = Duration::from_millis(5);
/// Upstream's TIMELIMIT() for the controls a run sends.
const CONTROL_TIMEOUT: Duration = Duration::from_secs(10);

/// One database's timer (upstream's `ctdb_vacuum_handle`).
struct Sched {
    /// When the timer fires; `None` while its scheduled run is going.
    next: Option<Instant>,
    /// VacuumInterval when the timer was set.
    interval: u32,
    /// Runs that finished since the last full run.
    fast_path_count: u32,
}

#[derive(Default)]
struct Vacuumer {
    /// The database being vacuumed (upstream's `ctdb->vacuumer`).
    running: Cell<Option<u32>>,
    sched: RefCell<HashMap<u32, Sched>>,
}

thread_local! {
    /// One driver per daemon on this (control) core, by the daemon's
    /// address, as `calls.rs` keeps its migrator.
    static DRIVERS: RefCell<HashMap<usize, Rc<Vacuumer>>> = RefCell::new(HashMap::new());
}

fn vacuumer(d: &Daemon) -> Rc<Vacuumer> {
    let key = d as *const Daemon as usize;
    DRIVERS.with(|m| m.borrow_mut().entry(key).or_default().clone())
}

/// Why a run did not start or did not finish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VacuumError {
    /// Another run is going (EBUSY).
    Busy,
    /// Recovery, frozen, unknown or non-volatile database (EAGAIN).
    Again(String),
    /// Abandoned: recovery, freeze, VacuumMaxRunTime, shutdown.
    Aborted(String),
    /// A step failed.
    Failed(String),
}

impl std::fmt::Display for VacuumError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            VacuumError::Busy => f.write_str("another vacuum run is in progress"),
            VacuumError::Again(w) => write!(f, "not vacuuming now: {w}"),
            VacuumError::Aborted(w) => write!(f, "vacuum run abandoned: {w}"),
            VacuumError::Failed(w) => write!(f, "vacuum run failed: {w}"),
        }
    }
}

fn interval(d: &Daemon) -> u32 {
    d.tunable("VacuumInterval", 10)
}

/// The scheduler: fires each volatile database's timer, until shutdown.
pub async fn run(d: Rc<Daemon>, stop: StopSignal) {
    let v = vacuumer(&d);
    loop {
        let tick = glommio::timer::sleep(TICK);
        futures_lite::future::or(tick, async {
            stop.stopped().await;
        })
        .await;
        if d.shutdown.get() || stop.is_stopped() {
            return;
        }
        tick_once(&d, &v);
    }
}

fn tick_once(d: &Rc<Daemon>, v: &Rc<Vacuumer>) {
    let now = Instant::now();
    let vols: Vec<u32> = d
        .dbs
        .borrow()
        .iter()
        .filter(|db| db.volatile())
        .map(|db| db.id())
        .collect();
    let due: Vec<u32> = {
        let mut sched = v.sched.borrow_mut();
        sched.retain(|id, _| vols.contains(id));
        for &id in &vols {
            sched.entry(id).or_insert_with(|| {
                let i = interval(d);
                Sched {
                    next: Some(now + Duration::from_secs(u64::from(i))),
                    interval: i,
                    fast_path_count: 0,
                }
            });
        }
        sched
            .iter()
            .filter(|(_, s)| s.next.is_some_and(|t| t <= now))
            .map(|(id, _)| *id)
            .collect()
    };
    for id in due {
        fire(d, v, id, now);
    }
}

/// Upstream's `ctdb_vacuum_event` for one database.
fn fire(d: &Rc<Daemon>, v: &Rc<Vacuumer>, db_id: u32, now: Instant) {
    let tunable = interval(d);
    let fast_path_max = d.tunable("VacuumFastPathCount", 60);
    let full = {
        let mut sched = v.sched.borrow_mut();
        let Some(s) = sched.get_mut(&db_id) else {
            return;
        };
        if tunable > s.interval {
            // The interval grew: wait out the difference first.
            s.next = Some(now + Duration::from_secs(u64::from(tunable - s.interval)));
            s.interval = tunable;
            return;
        }
        s.interval = tunable;
        let mut full = false;
        if s.fast_path_count >= fast_path_max {
            full = fast_path_max > 0;
            s.fast_path_count = 0;
        }
        s.next = None;
        full
    };
    let r = start(d, v, db_id, full, true);
    let mut sched = v.sched.borrow_mut();
    let Some(s) = sched.get_mut(&db_id) else {
        return;
    };
    match r {
        Ok(_) => {}
        Err(VacuumError::Busy) => s.next = Some(now + STAGGER),
        Err(e) => {
            tracing::info!("Not vacuuming 0x{db_id:08x} ({e})");
            s.next = Some(now + Duration::from_secs(u64::from(s.interval)));
        }
    }
}

/// Starts a run in its own task; the receiver gets its result. Refused
/// during recovery, on a frozen database and while another run is going.
fn start(
    d: &Rc<Daemon>,
    v: &Rc<Vacuumer>,
    db_id: u32,
    full: bool,
    scheduled: bool,
) -> Result<
    glommio::channels::local_channel::LocalReceiver<Result<VacuumCounts, VacuumError>>,
    VacuumError,
> {
    if let Err(why) = may_run(d, db_id) {
        return Err(VacuumError::Again(why));
    }
    if v.running.get().is_some() {
        return Err(VacuumError::Busy);
    }
    v.running.set(Some(db_id));
    let (tx, rx) = glommio::channels::local_channel::new_bounded(1);
    let (d, v) = (d.clone(), v.clone());
    glommio::spawn_local(async move {
        let t0 = Instant::now();
        tracing::debug!(
            "Entering {} vacuum run for db 0x{db_id:08x}",
            if full { "full" } else { "fast" }
        );
        let r = bounded_run(&d, db_id, full).await;
        let secs = t0.elapsed().as_secs_f64();
        v.running.set(None);
        d.dbs.borrow_mut().vacuum_latency(db_id, secs);
        match &r {
            Ok(c) if *c == VacuumCounts::default() => {
                tracing::debug!("Vacuuming took {secs:.3} seconds for db 0x{db_id:08x}")
            }
            Ok(c) => tracing::info!(
                "Vacuuming took {secs:.3} seconds for db 0x{db_id:08x}: scheduled {} \
                 fetched {} deleted {} skipped {} to-lmaster {} delete-list {} remote-failed {}",
                c.scheduled,
                c.fetched,
                c.deleted,
                c.skipped,
                c.remote,
                c.delete_list,
                c.remote_failed
            ),
            Err(e) => tracing::error!("Vacuuming of db 0x{db_id:08x}: {e}"),
        }
        {
            let mut sched = v.sched.borrow_mut();
            if let Some(s) = sched.get_mut(&db_id) {
                // A run that ran to its end counts, failed or not (upstream:
                // the child exited); an abandoned one does not.
                if !matches!(r, Err(VacuumError::Aborted(_))) {
                    s.fast_path_count += 1;
                }
                if scheduled {
                    s.interval = interval(&d);
                    s.next = Some(Instant::now() + Duration::from_secs(u64::from(s.interval)));
                }
            }
        }
        let _ = tx.try_send(r);
    })
    .detach();
    Ok(rx)
}

/// `Err(why)` when records of `db_id` may not be touched now.
fn may_run(d: &Daemon, db_id: u32) -> Result<(), String> {
    if d.shutdown.get() {
        return Err("shutting down".into());
    }
    if d.node.borrow().recmode() == CTDB_RECOVERY_ACTIVE {
        return Err("in recovery".into());
    }
    if d.frozen.get() {
        return Err("frozen".into());
    }
    match d.dbs.borrow().find(db_id) {
        None => Err("database detached".into()),
        Some(db) if db.frozen() => Err("frozen".into()),
        Some(db) if !db.volatile() => Err("not volatile".into()),
        Some(_) => Ok(()),
    }
}

fn alive(d: &Daemon, db_id: u32) -> Result<(), VacuumError> {
    may_run(d, db_id).map_err(VacuumError::Aborted)
}

/// A run, abandoned on recovery, freeze, detach, shutdown or after
/// VacuumMaxRunTime seconds.
async fn bounded_run(d: &Rc<Daemon>, db_id: u32, full: bool) -> Result<VacuumCounts, VacuumError> {
    let limit = Duration::from_secs(u64::from(d.tunable("VacuumMaxRunTime", 120).max(1)));
    let t0 = Instant::now();
    let watch = async {
        loop {
            glommio::timer::sleep(WATCH).await;
            alive(d, db_id)?;
            if t0.elapsed() > limit {
                return Err(VacuumError::Aborted(format!(
                    "VacuumMaxRunTime ({} s) exceeded",
                    limit.as_secs()
                )));
            }
        }
    };
    futures_lite::future::or(vacuum_db(d, db_id, full), watch).await
}

/// One run (upstream's `ctdb_vacuum_db` and the repack after it).
async fn vacuum_db(d: &Rc<Daemon>, db_id: u32, full: bool) -> Result<VacuumCounts, VacuumError> {
    if let Some(dc) = d.data_cores.clone() {
        // The data cores' delete queues join the registry's first.
        dc.collect(d, db_id).await;
    }
    alive(d, db_id)?;
    let mut batch = d
        .dbs
        .borrow_mut()
        .vacuum_begin(db_id, false)
        .map_err(|e| VacuumError::Again(e.to_string()))?;
    if full {
        let found = scan(d, db_id).await?;
        batch.add_scanned(found);
    }

    // 1. Records other nodes asked us (their lmaster) to vacuum.
    let keys = std::mem::take(&mut batch.fetch_queue);
    if !keys.is_empty() {
        let targets = d.dbs.borrow_mut().vacuum_fetch_targets(db_id, keys);
        if !targets.is_empty() {
            batch.counts.fetched = migrate_here(d, db_id, targets).await?;
        }
    }

    // 2. The delete queue.
    alive(d, db_id)?;
    let out = d.dbs.borrow_mut().vacuum_delete_queue(&mut batch);
    let mut counts = batch.counts;

    // 3. Keys for their lmasters.
    let pnn = d.pnn();
    for (lmaster, keys) in &out.fetch_lists {
        if *lmaster == pnn {
            continue;
        }
        tracing::info!(
            "Found {} records for lmaster {lmaster} in db 0x{db_id:08x}",
            keys.len()
        );
        let data = dbv::vacuum_fetch_data(db_id, pnn, keys);
        match crate::peers::control(
            d,
            *lmaster,
            Opcode::VacuumFetch as u32,
            0,
            0,
            &data,
            CONTROL_TIMEOUT,
        )
        .await
        {
            Ok(r) if r.status == 0 => {}
            Ok(r) => tracing::error!(
                "Failed to send vacuum fetch control to node {lmaster} (status {})",
                r.status
            ),
            Err(e) => tracing::error!("Failed to send vacuum fetch control to node {lmaster}: {e}"),
        }
    }

    // 4. The delete list: every other active node first, then here.
    if !out.delete_list.is_empty() {
        delete_everywhere(d, db_id, &out.delete_list, &mut counts).await?;
    }

    // 5. Repack.
    alive(d, db_id)?;
    let limit = d.tunable("RepackLimit", 10_000);
    d.dbs.borrow_mut().vacuum_repack(db_id, limit);
    Ok(counts)
}

/// A full run's traverse, on a thread of its own so that a chain locked
/// by a client (the traverse waits for it) never stalls the control core.
/// If the run is abandoned meanwhile, the thread finishes when the lock
/// is released and its result is dropped.
async fn scan(
    d: &Rc<Daemon>,
    db_id: u32,
) -> Result<Vec<(Vec<u8>, ctdb_engine::ltdb::LtdbHeader)>, VacuumError> {
    let Some(db) = d.dbs.borrow().vacuum_source(db_id) else {
        return Err(VacuumError::Aborted("database detached".into()));
    };
    let pnn = d.pnn();
    let (tx, rx) = crossbeam::channel::bounded(1);
    std::thread::Builder::new()
        .name("ctdb-vacuum-scan".into())
        .spawn(move || {
            let _ = tx.send(dbv::scan_empty_records(&db, pnn));
        })
        .map_err(|e| VacuumError::Failed(format!("start traverse thread: {e}")))?;
    loop {
        match rx.try_recv() {
            Ok(r) => return r.map_err(VacuumError::Failed),
            Err(crossbeam::channel::TryRecvError::Empty) => {
                glommio::timer::sleep(SCAN_POLL).await;
            }
            Err(crossbeam::channel::TryRecvError::Disconnected) => {
                return Err(VacuumError::Failed("traverse thread died".into()))
            }
        }
    }
}

/// The other active nodes (upstream's `list_of_active_nodes`, self excluded).
fn other_active_nodes(d: &Daemon) -> Vec<u32> {
    let node = d.node.borrow();
    node.membership
        .nodemap()
        .iter()
        .filter(|(p, f)| *p != d.pnn() && f & NODE_FLAGS_INACTIVE == 0)
        .map(|(p, _)| *p)
        .collect()
}

async fn delete_everywhere(
    d: &Rc<Daemon>,
    db_id: u32,
    list: &[(Vec<u8>, ctdb_engine::ltdb::LtdbHeader)],
    counts: &mut VacuumCounts,
) -> Result<(), VacuumError> {
    let data = dbv::try_delete_data(db_id, list);
    let mut failed: HashSet<Vec<u8>> = HashSet::new();
    for pnn in other_active_nodes(d) {
        let r = crate::peers::control(
            d,
            pnn,
            Opcode::TryDeleteRecords as u32,
            0,
            0,
            &data,
            CONTROL_TIMEOUT,
        )
        .await;
        let kept = match r {
            Ok(r) if r.status == 0 => dbv::kept_keys(&r.data),
            Ok(r) => Err(format!("status {}", r.status)),
            Err(e) => Err(e.to_string()),
        };
        match kept {
            Ok(k) => failed.extend(k),
            Err(e) => {
                // As upstream: nothing is deleted here this run.
                tracing::error!("Failed to delete records on node {pnn}: {e}");
                return Ok(());
            }
        }
    }
    for (key, hdr) in list {
        if failed.contains(key) {
            counts.remote_failed += 1;
            continue;
        }
        loop {
            alive(d, db_id)?;
            let step = d.dbs.borrow_mut().vacuum_delete_record(db_id, key, hdr);
            match step {
                DeleteStep::Deleted => counts.deleted += 1,
                DeleteStep::Skipped => counts.skipped += 1,
                DeleteStep::Busy => {
                    // Upstream's child waits for the lock; we wait without
                    // blocking the core (bounded by VacuumMaxRunTime).
                    glommio::timer::sleep(BUSY_RETRY).await;
                    continue;
                }
            }
            break;
        }
    }
    Ok(())
}

/// Migrates `keys` here with CTDB_CALL_FLAG_VACUUM_MIGRATION through the
/// client path and queues those that arrive empty for deletion. Returns
/// how many migrated; waits for every one (upstream's child does).
async fn migrate_here(d: &Rc<Daemon>, db_id: u32, keys: Vec<Vec<u8>>) -> Result<u32, VacuumError> {
    let fail = |what: &str, e: std::io::Error| VacuumError::Failed(format!("{what}: {e}"));
    let (ours, theirs) = StdUnixStream::pair().map_err(|e| fail("socketpair", e))?;
    let theirs = crate::sys::into_glommio(theirs).map_err(|e| fail("client socket", e))?;
    glommio::spawn_local(crate::client::client_task(d.clone(), theirs, d.pid)).detach();
    let ours = crate::sys::into_glommio(ours).map_err(|e| fail("vacuum socket", e))?;
    let (rd, wr) = ctdb_io::split(ours);
    let mut writer = PacketWriter::new(wr, d.frame, true);
    let mut reader = PacketReader::with_config(rd, d.frame);

    let mut pending: HashMap<u32, Vec<u8>> = HashMap::new();
    let mut packets = Vec::with_capacity(keys.len());
    for (i, key) in keys.into_iter().enumerate() {
        let reqid = i as u32 + 1;
        let call = ReqCall {
            flags: CTDB_IMMEDIATE_MIGRATION | CTDB_CALL_FLAG_VACUUM_MIGRATION,
            db_id,
            callid: CTDB_NULL_FUNC,
            hopcount: 0,
            key: &key,
            calldata: &[],
        };
        let mut pkt = Vec::new();
        Packet::new(
            Header::new(d.generation(), CTDB_CURRENT_NODE, d.pnn(), reqid),
            Payload::ReqCall(call),
        )
        .encode(&mut pkt)
        .map_err(|e| VacuumError::Failed(format!("encode vacuum fetch call: {e}")))?;
        packets.push(pkt);
        pending.insert(reqid, key);
    }
    let send = async {
        for p in &packets {
            writer
                .write_packet(p)
                .await
                .map_err(|e| VacuumError::Failed(format!("vacuum fetch call: {e}")))?;
        }
        Ok::<(), VacuumError>(())
    };
    let limits = d.limits;
    let receive = async {
        let mut migrated = 0u32;
        while !pending.is_empty() {
            let pkt = match reader.next_packet().await {
                Ok(Some(p)) => p.to_vec(),
                Ok(None) => {
                    return Err(VacuumError::Failed(
                        "vacuum fetch: daemon closed the call socket".into(),
                    ))
                }
                Err(e) => return Err(VacuumError::Failed(format!("vacuum fetch reply: {e}"))),
            };
            let Ok(p) = Packet::decode(&pkt, &limits) else {
                tracing::error!("vacuum fetch: undecodable reply dropped");
                continue;
            };
            let Some(key) = pending.remove(&p.header.reqid) else {
                continue;
            };
            let status = match p.payload {
                Payload::ReplyCall(r) => r.status,
                _ => -1,
            };
            if status != 0 {
                tracing::error!("Failed to migrate record for vacuuming");
                continue;
            }
            migrated += 1;
            alive(d, db_id)?;
            if d.dbs.borrow_mut().vacuum_fetched(db_id, &key) {
                tracing::debug!("Vacuum fetch record queued for deletion");
            }
        }
        Ok(migrated)
    };
    let (s, r) = futures_lite::future::zip(send, receive).await;
    s?;
    r
}

/// DB_VACUUM for this node, from a local client or another node: `true`
/// when this module answers it (after the run); `false` for everything
/// else (and for a malformed or refused request, which the database layer
/// answers the usual way).
pub fn control(d: &Rc<Daemon>, client: u32, pkt: &[u8]) -> bool {
    let Ok(raw) = RawHeader::parse(pkt) else {
        return false;
    };
    if raw.version != CTDB_PROTOCOL || raw.operation() != Ok(ctdb_protocol::Operation::ReqControl) {
        return false;
    }
    // The opcode follows the 32-byte header: decode only DB_VACUUM.
    let opcode = pkt
        .get(32..36)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
    if opcode != Some(Opcode::DbVacuum as u32) {
        return false;
    }
    let Ok(Packet {
        header,
        payload: Payload::ReqControl(c),
    }) = Packet::decode(pkt, &d.limits)
    else {
        return false;
    };
    if c.opcode != Opcode::DbVacuum as u32 {
        return false;
    }
    let dest = header.destnode;
    if dest != CTDB_CURRENT_NODE && dest != d.pnn() {
        return false;
    }
    // From another node the answer goes back over the wire; a control
    // this daemon sent itself is served in-line by the database layer.
    if client == 0 && header.srcnode == d.pnn() {
        return false;
    }
    let Ok(ControlData::DbVacuum(req)) = c.decode_data() else {
        return false;
    };
    if !d
        .dbs
        .borrow()
        .find(req.db_id)
        .is_some_and(|db| db.volatile())
    {
        return false;
    }
    if client != 0 {
        d.stats.borrow_mut().count(|s| {
            s.client_packets_recv += 1;
            s.client.req_control += 1;
        });
    }
    let noreply = c.noreply();
    let (reqid, srcnode) = (header.reqid, header.srcnode);
    let v = vacuumer(d);
    let started = start(d, &v, req.db_id, req.full_vacuum_run, false);
    let d = d.clone();
    glommio::spawn_local(async move {
        let status = match started {
            Ok(rx) => match rx.recv().await {
                Some(Ok(_)) => 0,
                _ => -1,
            },
            Err(VacuumError::Busy) => {
                tracing::warn!("Vacuuming collision");
                -1
            }
            Err(e) => {
                tracing::error!("Temporary vacuuming failure: {e}");
                -1
            }
        };
        if !noreply {
            crate::peers::reply_status(&d, client, srcnode, reqid, status).await;
        }
    })
    .detach();
    true
}
