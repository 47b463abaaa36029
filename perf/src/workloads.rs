//! The workloads: each drives a running cluster through [`crate::client`]
//! for a bounded time and reports operations, latencies and checks.
//!
//! Why these: they are the paths smbd and the cluster put weight on —
//! control round trips (every smbd and tool request), fetch-lock-store on
//! private and on shared records (smbd's locking.tdb / brlock.tdb traffic),
//! record migration between nodes (upstream's fetch_ring test), messaging
//! between nodes (message_ring), persistent transactions (ptrans, the
//! registry and secrets), and the time to recover from a node crash with
//! databases of growing size.
//!
//! Every workload is bounded by its deadline; a client that fails stops
//! its own loop and the error is reported with the result.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use ctdb_engine::ltdb::{LtdbHeader, RecordFlags};
use ctdb_protocol::constants::{CTDB_RECOVERY_NORMAL, NODE_FLAGS_DISCONNECTED};
use ctdb_protocol::{ControlData, ControlReplyData, Opcode};

use crate::client::Client;
use crate::cluster::Cluster;
use crate::error::{PerfError, Result};

/// Every workload name, in the order a full run uses.
pub const ALL: &[&str] = &[
    "ping",
    "fetch-lock-distinct",
    "fetch-lock-shared",
    "fetch-ring",
    "message-ring",
    "ptrans",
    "recovery-10k",
    "recovery-100k",
    "recovery-1m",
    "failover",
];

/// Workloads that kill a node and so need a cluster of their own.
pub fn needs_fresh_cluster(name: &str) -> bool {
    name.starts_with("recovery-") || name == "failover"
}

/// Records for a `recovery-*` workload name.
pub fn recovery_records(name: &str) -> Option<u64> {
    let n = name.strip_prefix("recovery-")?;
    let (digits, mult) = if let Some(d) = n.strip_suffix('k') {
        (d, 1_000)
    } else if let Some(d) = n.strip_suffix('m') {
        (d, 1_000_000)
    } else {
        (n, 1)
    };
    digits.parse::<u64>().ok().map(|v| v * mult)
}

/// Knobs shared by the workloads.
#[derive(Clone, Debug)]
pub struct Params {
    pub duration: Duration,
    /// Clients per node.
    pub clients: usize,
    /// Keys in the shared pool / per node for distinct keys.
    pub keys: usize,
}

/// What one workload measured.
#[derive(Clone, Debug, Default)]
pub struct Outcome {
    /// Operations done (pings, fetch-locks, hops, commits; 1 for timings).
    pub ops: u64,
    /// Wall time the operations took, seconds.
    pub secs: f64,
    /// Latency samples, nanoseconds.
    pub lat_ns: Vec<u64>,
    /// For timing workloads: the time measured, seconds.
    pub elapsed: Option<f64>,
    /// Extra facts (migrations, checks).
    pub note: String,
}

impl Outcome {
    pub fn ops_per_s(&self) -> f64 {
        if self.secs > 0.0 {
            self.ops as f64 / self.secs
        } else {
            0.0
        }
    }

    /// Latency percentile in microseconds.
    pub fn pct_us(&mut self, p: f64) -> Option<f64> {
        if self.lat_ns.is_empty() {
            return None;
        }
        self.lat_ns.sort_unstable();
        let i = ((self.lat_ns.len() as f64 - 1.0) * p).round() as usize;
        Some(self.lat_ns[i.min(self.lat_ns.len() - 1)] as f64 / 1000.0)
    }
}

const MAX_SAMPLES: usize = 1 << 21;

struct Shared {
    ops: std::sync::atomic::AtomicU64,
    lat: Mutex<Vec<u64>>,
    err: Mutex<Option<String>>,
    failed: AtomicBool,
}

impl Shared {
    fn new() -> Shared {
        Shared {
            ops: 0.into(),
            lat: Mutex::new(Vec::new()),
            err: Mutex::new(None),
            failed: AtomicBool::new(false),
        }
    }
    fn add(&self, ops: u64, lat: Vec<u64>) {
        self.ops.fetch_add(ops, Ordering::Relaxed);
        if let Ok(mut l) = self.lat.lock() {
            let room = MAX_SAMPLES.saturating_sub(l.len());
            l.extend(lat.into_iter().take(room));
        }
    }
    fn fail(&self, who: &str, e: PerfError) {
        self.failed.store(true, Ordering::Relaxed);
        if let Ok(mut g) = self.err.lock() {
            if g.is_none() {
                *g = Some(format!("{who}: {e}"));
            }
        }
    }
    fn finish(self, secs: f64, note: String) -> Result<Outcome> {
        if let Some(e) = self.err.into_inner().ok().flatten() {
            return Err(PerfError::Cluster(e));
        }
        Ok(Outcome {
            ops: self.ops.into_inner(),
            secs,
            lat_ns: self.lat.into_inner().unwrap_or_default(),
            elapsed: None,
            note,
        })
    }
}

fn ns(d: Duration) -> u64 {
    d.as_nanos().min(u64::MAX as u128) as u64
}

/// Runs `name` on the cluster.
pub fn run(name: &str, cluster: &mut Cluster, p: &Params) -> Result<Outcome> {
    match name {
        "ping" => ping(cluster, p),
        "fetch-lock-distinct" => fetch_lock(cluster, p, false),
        "fetch-lock-shared" => fetch_lock(cluster, p, true),
        "fetch-ring" => fetch_ring(cluster, p),
        "message-ring" => message_ring(cluster, p),
        "ptrans" => ptrans(cluster, p),
        "failover" => kill_and_recover(cluster, 0, true),
        n => match recovery_records(n) {
            Some(records) => kill_and_recover(cluster, records, false),
            None => Err(PerfError::Args(format!(
                "unknown workload '{n}' (known: {})",
                ALL.join(", ")
            ))),
        },
    }
}

/// Control round trips: PING from `clients` connections per node.
fn ping(cluster: &Cluster, p: &Params) -> Result<Outcome> {
    let sh = Shared::new();
    let start = Instant::now();
    let end = start + p.duration;
    std::thread::scope(|s| {
        for node in 0..cluster.nodes {
            for c in 0..p.clients {
                let sh = &sh;
                let sock = cluster.socket(node);
                s.spawn(move || {
                    let who = format!("ping client {c} on node {node}");
                    let mut cl = match Client::connect(&sock) {
                        Ok(cl) => cl,
                        Err(e) => return sh.fail(&who, e),
                    };
                    let mut lat = Vec::new();
                    let mut n = 0;
                    while Instant::now() < end && !sh.failed.load(Ordering::Relaxed) {
                        let t = Instant::now();
                        if let Err(e) = cl.ping() {
                            return sh.fail(&who, e);
                        }
                        lat.push(ns(t.elapsed()));
                        n += 1;
                    }
                    sh.add(n, lat);
                });
            }
        }
    });
    let secs = start.elapsed().as_secs_f64();
    let total = p.clients * cluster.nodes;
    sh.finish(secs, format!("{total} clients"))
}

fn key_for(i: usize) -> Vec<u8> {
    format!("perf-key-{i:08}").into_bytes()
}

fn bump(data: &[u8]) -> (u64, Vec<u8>) {
    let v = if data.len() >= 8 {
        let mut b = [0u8; 8];
        b.copy_from_slice(&data[..8]);
        u64::from_le_bytes(b)
    } else {
        0
    };
    let mut out = (v + 1).to_le_bytes().to_vec();
    // smbd-sized values: a counter plus some payload.
    out.resize(64, 0x5a);
    (v + 1, out)
}

/// Fetch-lock, increment, store, unlock as smbd does, `clients` per node;
/// on keys private to each client (`shared == false`: after the first
/// migration every fetch is local) or on one pool of `keys` keys used by
/// every client of every node (records migrate between nodes).
fn fetch_lock(cluster: &Cluster, p: &Params, shared: bool) -> Result<Outcome> {
    let dbname = if shared {
        "perf_shared.tdb"
    } else {
        "perf_distinct.tdb"
    };
    let sh = Shared::new();
    let migrations = std::sync::atomic::AtomicU64::new(0);
    let start = Instant::now();
    let end = start + p.duration;
    let per_client = (p.keys / (p.clients * cluster.nodes)).max(1);
    std::thread::scope(|s| {
        for node in 0..cluster.nodes {
            for c in 0..p.clients {
                let (sh, migrations) = (&sh, &migrations);
                let sock = cluster.socket(node);
                let keys = p.keys.max(1);
                let nodes = cluster.nodes;
                let clients = p.clients;
                s.spawn(move || {
                    let who = format!("{dbname} client {c} on node {node}");
                    let run = || -> Result<(u64, Vec<u64>, u64)> {
                        let mut cl = Client::connect(&sock)?;
                        let mut db = cl.attach(dbname, false)?;
                        let mut rng = crate::Rng::new((node * 1000 + c) as u64 + 1);
                        let base = (node * clients + c) * per_client;
                        let _ = nodes;
                        let (mut n, mut lat, mut mig) = (0u64, Vec::new(), 0u64);
                        while Instant::now() < end && !sh.failed.load(Ordering::Relaxed) {
                            let k = if shared {
                                key_for(rng.below(keys as u64) as usize)
                            } else {
                                key_for(base + rng.below(per_client as u64) as usize)
                            };
                            let t = Instant::now();
                            let (rec, m) = cl.fetch_lock(&mut db, &k)?;
                            let (_, new) = bump(&rec.data);
                            let r = db.store_locked(&k, &rec.header, &new);
                            db.unlock(&k)?;
                            r?;
                            lat.push(ns(t.elapsed()));
                            n += 1;
                            mig += u64::from(m);
                        }
                        Ok((n, lat, mig))
                    };
                    match run() {
                        Ok((n, lat, m)) => {
                            sh.add(n, lat);
                            migrations.fetch_add(m, Ordering::Relaxed);
                        }
                        Err(e) => sh.fail(&who, e),
                    }
                });
            }
        }
    });
    let secs = start.elapsed().as_secs_f64();
    let m = migrations.into_inner();
    let keys = if shared {
        p.keys.max(1)
    } else {
        per_client * p.clients * cluster.nodes
    };
    sh.finish(
        secs,
        format!(
            "{} clients, {keys} keys, {m} migrations",
            p.clients * cluster.nodes
        ),
    )
}

/// A private srvid for the ring workloads (outside Samba's and ctdb's
/// reserved ranges).
const RING_SRVID: u64 = 0x0000_0000_7065_7266; // "perf"

/// As upstream's fetch_ring: one client per node; the node holding the
/// token fetch-locks the hot key (migrating it from the previous node),
/// increments it, and passes the token to the next node by message.
fn fetch_ring(cluster: &Cluster, p: &Params) -> Result<Outcome> {
    let n = cluster.nodes;
    let sh = Shared::new();
    let start = Instant::now();
    let end = start + p.duration;
    let ready = std::sync::Barrier::new(n);
    let key = b"perf-ring-key".to_vec();
    let finals = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for node in 0..n {
            let (sh, ready, key, finals) = (&sh, &ready, &key, &finals);
            let sock = cluster.socket(node);
            s.spawn(move || {
                let who = format!("fetch-ring on node {node}");
                let mut cl = match Client::connect(&sock) {
                    Ok(c) => c,
                    Err(e) => {
                        ready.wait();
                        return sh.fail(&who, e);
                    }
                };
                let setup = cl
                    .register_srvid(RING_SRVID)
                    .and_then(|_| cl.attach("perf_ring.tdb", false));
                ready.wait();
                let mut db = match setup {
                    Ok(db) => db,
                    Err(e) => return sh.fail(&who, e),
                };
                let next = ((cl.pnn() as usize + 1) % n) as u32;
                let mut hop = |cl: &mut Client| -> Result<(u64, u64)> {
                    let t = Instant::now();
                    let (rec, _) = cl.fetch_lock(&mut db, key)?;
                    let (v, new) = bump(&rec.data);
                    let r = db.store_locked(key, &rec.header, &new);
                    db.unlock(key)?;
                    r?;
                    let l = ns(t.elapsed());
                    cl.send_message(next, RING_SRVID, &v.to_le_bytes())?;
                    Ok((l, v))
                };
                let mut lat = Vec::new();
                let mut hops = 0;
                let (mut lo, mut hi) = (u64::MAX, 0u64);
                let res = (|| -> Result<()> {
                    if cl.pnn() == 0 {
                        let (l, v) = hop(&mut cl)?;
                        lat.push(l);
                        (lo, hi) = (lo.min(v), hi.max(v));
                        hops += 1;
                    }
                    loop {
                        if sh.failed.load(Ordering::Relaxed) {
                            return Ok(());
                        }
                        let Some((srvid, _)) = cl.recv_message(end)? else {
                            return Ok(());
                        };
                        if srvid != RING_SRVID {
                            continue;
                        }
                        if Instant::now() >= end {
                            return Ok(());
                        }
                        let (l, v) = hop(&mut cl)?;
                        lat.push(l);
                        (lo, hi) = (lo.min(v), hi.max(v));
                        hops += 1;
                    }
                })();
                if let Err(e) = res {
                    return sh.fail(&who, e);
                }
                if let Ok(mut f) = finals.lock() {
                    f.push((lo, hi));
                }
                sh.add(hops, lat);
            });
        }
    });
    let secs = start.elapsed().as_secs_f64();
    let ops = sh.ops.load(Ordering::Relaxed);
    let f = finals.into_inner().unwrap_or_default();
    let lo = f.iter().map(|x| x.0).min().unwrap_or(0);
    let hi = f.iter().map(|x| x.1).max().unwrap_or(0);
    // The counter travels with the record: with no update lost in a
    // migration, the values written are exactly lo..=hi, one per hop.
    let check = if ops == 0 || hi + 1 - lo == ops {
        "counter consistent".to_string()
    } else {
        format!("LOST UPDATES: counter went {lo}..{hi} in {ops} hops")
    };
    if check.starts_with("LOST") {
        sh.fail("fetch-ring check", PerfError::Cluster(check.clone()));
    }
    sh.finish(secs, format!("{n} nodes, 1 hot key, {check}"))
}

/// As upstream's message_ring: one client per node; node 0 injects
/// `clients` messages that travel the ring; every hop counts, every lap
/// back to node 0 gives a latency sample.
fn message_ring(cluster: &Cluster, p: &Params) -> Result<Outcome> {
    let n = cluster.nodes;
    let sh = Shared::new();
    let epoch = Instant::now();
    let end = epoch + p.duration;
    let ready = std::sync::Barrier::new(n);
    let laps = std::sync::atomic::AtomicU64::new(0);
    let tokens = p.clients.max(1);
    std::thread::scope(|s| {
        for node in 0..n {
            let (sh, ready, laps) = (&sh, &ready, &laps);
            let sock = cluster.socket(node);
            s.spawn(move || {
                let who = format!("message-ring on node {node}");
                let mut cl = match Client::connect(&sock) {
                    Ok(c) => c,
                    Err(e) => {
                        ready.wait();
                        return sh.fail(&who, e);
                    }
                };
                let reg = cl.register_srvid(RING_SRVID + 1);
                ready.wait();
                if let Err(e) = reg {
                    return sh.fail(&who, e);
                }
                let next = ((cl.pnn() as usize + 1) % n) as u32;
                let mut lat = Vec::new();
                let mut hops = 0u64;
                let res = (|| -> Result<()> {
                    if cl.pnn() == 0 {
                        for _ in 0..tokens {
                            let t = ns(epoch.elapsed());
                            cl.send_message(next, RING_SRVID + 1, &t.to_le_bytes())?;
                            hops += 1;
                        }
                    }
                    loop {
                        let Some((srvid, data)) = cl.recv_message(end)? else {
                            return Ok(());
                        };
                        if srvid != RING_SRVID + 1 || data.len() != 8 {
                            continue;
                        }
                        if Instant::now() >= end || sh.failed.load(Ordering::Relaxed) {
                            return Ok(());
                        }
                        let mut t = u64::from_le_bytes(data[..8].try_into().unwrap_or([0; 8]));
                        if cl.pnn() == 0 {
                            let now = ns(epoch.elapsed());
                            lat.push(now.saturating_sub(t));
                            laps.fetch_add(1, Ordering::Relaxed);
                            t = now;
                        }
                        cl.send_message(next, RING_SRVID + 1, &t.to_le_bytes())?;
                        hops += 1;
                    }
                })();
                if let Err(e) = res {
                    return sh.fail(&who, e);
                }
                sh.add(hops, lat);
            });
        }
    });
    let secs = epoch.elapsed().as_secs_f64();
    let l = laps.into_inner();
    sh.finish(
        secs,
        format!("{n} nodes, {tokens} messages in flight, {l} laps (latency = one lap)"),
    )
}

/// Persistent transactions as `ctdb ptrans`: `clients` per node, each
/// commit increments one shared counter; at the end every node's copy must
/// hold the number of commits.
fn ptrans(cluster: &Cluster, p: &Params) -> Result<Outcome> {
    let sh = Shared::new();
    let start = Instant::now();
    let end = start + p.duration;
    let key: &[u8] = b"perf-ptrans-counter";
    // Counter before the run (the database may exist from an earlier run).
    let before = {
        let mut cl = Client::connect(&cluster.socket(0))?;
        let mut db = cl.attach("perf_ptrans.tdb", true)?;
        counter_of(&db.ltdb_fetch(key)?.1)
    };
    let clients = p.clients.clamp(1, 4);
    std::thread::scope(|s| {
        for node in 0..cluster.nodes {
            for c in 0..clients {
                let sh = &sh;
                let sock = cluster.socket(node);
                s.spawn(move || {
                    let who = format!("ptrans client {c} on node {node}");
                    let run = || -> Result<(u64, Vec<u64>)> {
                        let mut cl = Client::connect(&sock)?;
                        let mut db = cl.attach("perf_ptrans.tdb", true)?;
                        let mut g = cl.attach("g_lock.tdb", false)?;
                        let (mut n, mut lat) = (0u64, Vec::new());
                        while Instant::now() < end && !sh.failed.load(Ordering::Relaxed) {
                            let t = Instant::now();
                            cl.transaction(&mut db, &mut g, &[key], |_, old| {
                                (counter_of(old) + 1).to_string().into_bytes()
                            })?;
                            lat.push(ns(t.elapsed()));
                            n += 1;
                        }
                        Ok((n, lat))
                    };
                    match run() {
                        Ok((n, lat)) => sh.add(n, lat),
                        Err(e) => sh.fail(&who, e),
                    }
                });
            }
        }
    });
    let secs = start.elapsed().as_secs_f64();
    let ops = sh.ops.load(Ordering::Relaxed);
    let mut check = String::from("counter matches commits on every node");
    for node in 0..cluster.nodes {
        let mut cl = Client::connect(&cluster.socket(node))?;
        let mut db = cl.attach("perf_ptrans.tdb", true)?;
        let v = counter_of(&db.ltdb_fetch(key)?.1);
        if v != before + ops {
            check = format!(
                "MISMATCH: node {node} counter {v}, expected {}",
                before + ops
            );
            break;
        }
    }
    // Debian's tool must read the same value through its own transaction
    // (g_lock on g_lock.tdb, then the local copy).
    if !check.starts_with("MISMATCH") && sh.err.lock().map(|e| e.is_none()).unwrap_or(false) {
        let shown = ctdb_tool(
            cluster,
            cluster.nodes - 1,
            &["pfetch", "perf_ptrans.tdb", "perf-ptrans-counter"],
        )?;
        if counter_of(shown.trim().as_bytes()) != before + ops {
            check = format!(
                "MISMATCH: ctdb pfetch shows '{}', expected {}",
                shown.trim(),
                before + ops
            );
        } else {
            check.push_str(" and in ctdb pfetch");
        }
    }
    if check.starts_with("MISMATCH") {
        sh.fail("ptrans check", PerfError::Cluster(check.clone()));
    }
    sh.finish(
        secs,
        format!("{} clients, {check}", clients * cluster.nodes),
    )
}

/// The ptrans counter is kept as decimal text, so that Debian's
/// `ctdb pfetch` (which prints the value with `%s`) shows it.
fn counter_of(v: &[u8]) -> u64 {
    std::str::from_utf8(v)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

/// `ctdb pfetch DB KEY` with Debian's tool against node `node`: its
/// output (the value as text).
fn ctdb_tool(cluster: &Cluster, node: usize, args: &[&str]) -> Result<String> {
    let base = cluster.dir().join(format!("node.{node}"));
    let out = std::process::Command::new("/usr/bin/ctdb")
        .args(args)
        .env("CTDB_BASE", &base)
        .env("CTDB_SOCKET", base.join("run/ctdbd.socket"))
        .env("CTDB_TEST_MODE", "yes")
        .env_remove("CTDB_TOOL_SETPGID")
        .output()
        .map_err(|e| PerfError::io(format!("run /usr/bin/ctdb {}", args.join(" ")), e))?;
    if !out.status.success() {
        return Err(PerfError::Cluster(format!(
            "ctdb {} on node {node} failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

type NodeView = (u32, u32, Vec<(u32, u32)>);

/// The recovery state one node reports: (recmode, vnnmap generation,
/// nodemap flags by pnn).
fn node_view(cl: &mut Client) -> Result<NodeView> {
    let cur = ctdb_protocol::constants::CTDB_CURRENT_NODE;
    let recmode = cl.control_ok(cur, ControlData::GetRecmode)?.status as u32;
    let r = cl.control_ok(cur, ControlData::Getvnnmap)?;
    let generation = match ControlReplyData::decode(Opcode::Getvnnmap as u32, &r.data) {
        Ok(ControlReplyData::Getvnnmap(v)) => v.generation,
        _ => {
            return Err(PerfError::Cluster("GETVNNMAP reply did not decode".into()));
        }
    };
    let r = cl.control_ok(cur, ControlData::GetNodemap)?;
    let flags = match ControlReplyData::decode(Opcode::GetNodemap as u32, &r.data) {
        Ok(ControlReplyData::GetNodemap(m)) => m.nodes.iter().map(|n| (n.pnn, n.flags)).collect(),
        _ => {
            return Err(PerfError::Cluster(
                "GET_NODEMAP reply did not decode".into(),
            ))
        }
    };
    Ok((recmode, generation, flags))
}

/// The leader's pnn, from `ctdb leader` run against node 0.
fn leader_pnn(cluster: &Cluster) -> Result<u32> {
    let out = ctdb_tool(cluster, 0, &["leader"])?;
    out.trim()
        .parse::<u32>()
        .map_err(|_| PerfError::Cluster(format!("ctdb leader printed '{}'", out.trim())))
}

/// Both daemons refuse to start a recovery within RerecoveryTimeout
/// (default 10 s) of the end of the previous one (upstream disables
/// recoveries for that long after each). A freshly started cluster has
/// just recovered, so a kill at once would measure that hold-off, not the
/// recovery. Waits until the leader's last recovery finished more than
/// this long ago (plus 1 s); returns the seconds waited.
const RERECOVERY_TIMEOUT_S: f64 = 10.0;

fn wait_recoveries_enabled(cluster: &Cluster, leader: usize) -> Result<f64> {
    let start = Instant::now();
    let mut cl = Client::connect(&cluster.socket(leader))?;
    cl.set_timeout(Duration::from_secs(5));
    let cur = ctdb_protocol::constants::CTDB_CURRENT_NODE;
    loop {
        let r = cl.control_ok(cur, ControlData::Uptime)?;
        let u = match ControlReplyData::decode(Opcode::Uptime as u32, &r.data) {
            Ok(ControlReplyData::Uptime(u)) => u,
            _ => return Err(PerfError::Cluster("UPTIME reply did not decode".into())),
        };
        let secs = |t: &ctdb_protocol::types::Timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
        let since = secs(&u.current_time) - secs(&u.last_recovery_finished);
        let recovering = secs(&u.last_recovery_started) > secs(&u.last_recovery_finished);
        let need = RERECOVERY_TIMEOUT_S + 1.0;
        if !recovering && since >= need {
            return Ok(start.elapsed().as_secs_f64());
        }
        if start.elapsed() > Duration::from_secs(60) || crate::sys::interrupted() {
            return Err(PerfError::Timeout {
                what: format!("node {leader}: recoveries settling before the kill"),
            });
        }
        let wait = if recovering {
            0.2
        } else {
            (need - since).clamp(0.05, 1.0)
        };
        std::thread::sleep(Duration::from_secs_f64(wait));
    }
}

/// Fills a volatile database with `records` records (each node writes its
/// share directly into its local file as dmaster), then kills one node with
/// SIGKILL — the leader when `kill_leader`, else the highest non-leader pnn
/// — and measures the time until every surviving node reports recovery
/// mode NORMAL, a new vnnmap generation, the killed node DISCONNECTED and
/// every other node OK (what `ctdb status` shows).
fn kill_and_recover(cluster: &mut Cluster, records: u64, kill_leader: bool) -> Result<Outcome> {
    let n = cluster.nodes;
    if n < 2 {
        return Err(PerfError::Args(
            "recovery and failover need at least 2 nodes".into(),
        ));
    }
    let fill_start = Instant::now();
    if records > 0 {
        let per = records.div_ceil(n as u64);
        std::thread::scope(|s| -> Result<()> {
            let mut hs = Vec::new();
            for node in 0..n {
                let sock = cluster.socket(node);
                hs.push(s.spawn(move || -> Result<()> {
                    let mut cl = Client::connect(&sock)?;
                    let mut db = cl.attach("perf_recovery.tdb", false)?;
                    let h = LtdbHeader::new(1, cl.pnn(), RecordFlags(0));
                    let data = [0x42u8; 64];
                    let lo = node as u64 * per;
                    let hi = (lo + per).min(records);
                    for i in lo..hi {
                        db.store_direct(&key_for(i as usize), &h, &data)?;
                    }
                    Ok(())
                }));
            }
            for h in hs {
                h.join()
                    .map_err(|_| PerfError::Cluster("fill thread panicked".into()))??;
            }
            Ok(())
        })?;
    }
    let fill_s = fill_start.elapsed().as_secs_f64();
    let leader = leader_pnn(cluster)?;
    let settled_s = wait_recoveries_enabled(cluster, leader as usize)?;
    let victim = if kill_leader {
        leader as usize
    } else {
        (0..n).rev().find(|&i| i as u32 != leader).unwrap_or(0)
    };
    let survivors: Vec<usize> = (0..n).filter(|&i| i != victim).collect();
    let mut clients = Vec::new();
    let mut gen_before = 0;
    for &i in &survivors {
        let mut cl = Client::connect(&cluster.socket(i))?;
        cl.set_timeout(Duration::from_secs(5));
        gen_before = node_view(&mut cl)?.1;
        clients.push(cl);
    }
    let t0 = Instant::now();
    cluster.kill_node(victim)?;
    let limit = Duration::from_secs(180);
    // When a survivor first showed the victim DISCONNECTED, and first
    // showed recovery mode ACTIVE: the phases of the total.
    let (mut t_disc, mut t_active) = (None::<f64>, None::<f64>);
    loop {
        let mut ok = true;
        for cl in clients.iter_mut() {
            match node_view(cl) {
                Ok((mode, generation, flags)) => {
                    let now = t0.elapsed().as_secs_f64();
                    let flags_ok = flags.iter().all(|&(pnn, f)| {
                        if pnn as usize == victim {
                            f & NODE_FLAGS_DISCONNECTED != 0
                        } else {
                            f == 0
                        }
                    });
                    if t_disc.is_none()
                        && flags
                            .iter()
                            .any(|&(p, f)| p as usize == victim && f & NODE_FLAGS_DISCONNECTED != 0)
                    {
                        t_disc = Some(now);
                    }
                    if t_active.is_none() && mode != CTDB_RECOVERY_NORMAL {
                        t_active = Some(now);
                    }
                    if mode != CTDB_RECOVERY_NORMAL || generation == gen_before || !flags_ok {
                        ok = false;
                    }
                }
                Err(PerfError::Io { .. }) | Err(PerfError::Closed { .. }) => {
                    return Err(PerfError::Cluster(format!(
                        "lost the connection to a survivor of node {victim}'s crash"
                    )))
                }
                // A node busy recovering may time out or refuse: not yet.
                Err(_) => ok = false,
            }
        }
        if ok {
            break;
        }
        if t0.elapsed() > limit || crate::sys::interrupted() {
            return Err(PerfError::Timeout {
                what: format!("recovery after killing node {victim}"),
            });
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let phases = format!(
        "; victim DISCONNECTED after {}, recovery ACTIVE after {}",
        t_disc.map_or("-".into(), |t| format!("{t:.2} s")),
        t_active.map_or("not seen".into(), |t| format!("{t:.2} s"))
    );
    let el = t0.elapsed().as_secs_f64();
    let held = if records > 0 {
        let mut cl = Client::connect(&cluster.socket(survivors[0]))?;
        let mut db = cl.attach("perf_recovery.tdb", false)?;
        let per = records.div_ceil(n as u64);
        let lost = (records.min((victim as u64 + 1) * per)).saturating_sub(victim as u64 * per);
        format!(
            "; node {} holds {} records after recovery ({} were written by survivors)",
            survivors[0],
            db.count_records()?,
            records - lost
        )
    } else {
        String::new()
    };
    let what = if kill_leader { "leader" } else { "non-leader" };
    Ok(Outcome {
        ops: 1,
        secs: el,
        lat_ns: Vec::new(),
        elapsed: Some(el),
        note: format!(
            "killed {what} node {victim} of {n}{phases}; {records} records filled in {fill_s:.1} s{held}; waited {settled_s:.1} s before the kill for RerecoveryTimeout after the last recovery"
        ),
    })
}
