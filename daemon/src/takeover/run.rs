//! The recovery daemon's takeover side (upstream's `ctdb_recoverd.c`
//! takeover parts and `ctdb_takeover_helper`).
//!
//! Why one task of its own: a takeover run takes seconds (every node runs
//! event scripts) and must not hold up elections or recoveries; the
//! recovery driver only asks for one ([`request_run`]) after a recovery.
//!
//! Every node, once a second while not in recovery and active, checks
//! whether a run is needed (its interfaces changed, or it could host an
//! address nobody hosts; outside test mode also whether the kernel's
//! addresses disagree) and then broadcasts TAKEOVER_RUN. The leader
//! collects TAKEOVER_RUN requests and runs one takeover run for all that
//! are pending, answering each requester with its pnn (or −1). Runs are
//! skipped while disabled (DISABLE_TAKEOVER_RUNS, DISABLE_IP_CHECK). A
//! failed run charges banning credits to the node that failed most
//! (a BANNING message to this node's recovery daemon, which bans by its
//! usual culprit rules) and is retried on the next tick.
//!
//! A banned node, and one in recovery for longer than RecoveryDropAllIPs,
//! releases every address it holds (upstream's `ctdb_release_all_ips`).

use std::collections::HashMap;
use std::net::IpAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use ctdb_protocol::constants::{
    CTDB_BROADCAST_CONNECTED, CTDB_PUBLIC_IP_FLAGS_ONLY_AVAILABLE, CTDB_RECOVERY_NORMAL,
    NODE_FLAGS_BANNED, NODE_FLAGS_DELETED, NODE_FLAGS_DISCONNECTED, NODE_FLAGS_INACTIVE,
};
use ctdb_protocol::types::{
    srvid, DisableMessage, MessageData, PublicIp, PublicIpList, SockAddr, SrvidMessage,
};
use ctdb_protocol::{Opcode, Wire};

use super::ipalloc::{self, Algorithm, NodeIps, Params, UNKNOWN};
use crate::db::OutMessage;
use crate::runtime::StopSignal;
use crate::state::Daemon;

/// A takeover run is wanted (after a recovery).
pub fn request_run(d: &Daemon) {
    d.takeover.recd.borrow_mut().need_run = true;
}

/// The messages the takeover side handles (every node): TAKEOVER_RUN,
/// DISABLE_TAKEOVER_RUNS, DISABLE_IP_CHECK, REBALANCE_NODE.
pub fn daemon_message(d: &Daemon, m: &OutMessage) {
    let wanted = [
        srvid::TAKEOVER_RUN,
        srvid::DISABLE_TAKEOVER_RUNS,
        srvid::DISABLE_IP_CHECK,
        srvid::REBALANCE_NODE,
    ];
    if !wanted.contains(&m.srvid) {
        return;
    }
    let msg = match MessageData::decode(m.srvid, &m.data) {
        Ok(x) => x,
        Err(e) => {
            tracing::error!(
                "message for srvid 0x{:016x} with bad data ({} bytes): {e}",
                m.srvid,
                m.data.len()
            );
            return;
        }
    };
    let tk = &d.takeover;
    match msg {
        MessageData::TakeoverRun(req) => {
            tk.recd.borrow_mut().requests.push(req);
        }
        MessageData::DisableTakeoverRuns(r) => {
            let ret = disable(d, r.timeout);
            if r.srvid != 0 {
                reply(d, r.pnn, r.srvid, ret);
            }
        }
        MessageData::DisableIpCheck(timeout) => {
            disable(d, timeout);
        }
        MessageData::RebalanceNode(pnn) if d.leader.get() == d.pnn() => {
            tracing::info!("Setting up rebalance of IPs to node {pnn}");
            tk.recd.borrow_mut().force_rebalance.push(pnn);
        }
        _ => {}
    }
}

/// Upstream's `ctdb_op_disable` for takeover runs: this node's pnn, or
/// −EAGAIN while a run is in progress.
fn disable(d: &Daemon, timeout: u32) -> i32 {
    let tk = &d.takeover;
    if timeout == 0 {
        tracing::info!("Reenabling takeover runs");
        tk.recd.borrow_mut().disabled_until = None;
        return d.pnn() as i32;
    }
    if tk.in_progress.get() {
        tracing::error!("Unable to disable takeover runs - in progress");
        return -libc::EAGAIN;
    }
    tracing::info!("Disabling takeover runs for {timeout} seconds");
    tk.recd.borrow_mut().disabled_until =
        Some(Instant::now() + Duration::from_secs(u64::from(timeout)));
    d.pnn() as i32
}

fn reply(d: &Daemon, pnn: u32, sid: u64, ret: i32) {
    d.deliver(&OutMessage {
        pnn,
        srvid: sid,
        data: ret.to_le_bytes().to_vec(),
    });
}

/// The takeover side of the recovery daemon, until the daemon stops.
pub async fn run(d: Rc<Daemon>, stop: StopSignal) {
    let mut next_check = Instant::now();
    let mut next_tickles = Instant::now();
    // Since when the node is in recovery (RecoveryDropAllIPs).
    let mut recovering_since: Option<Instant> = None;
    loop {
        if d.shutdown.get() || stop.is_stopped() {
            return;
        }
        let leader = d.leader.get() == d.pnn();
        if !leader {
            // Only the leader runs takeover runs; requests made to an
            // old leader are dropped (the requesters ask again).
            let mut r = d.takeover.recd.borrow_mut();
            r.requests.clear();
            r.force_rebalance.clear();
        }
        let (recmode, own_flags) = {
            let n = d.node.borrow();
            (n.recmode(), n.membership.own_flags())
        };
        if own_flags & NODE_FLAGS_BANNED != 0 && holds_any(&d) {
            tracing::info!("Dropping all public IP addresses (banned)");
            super::node::release_all(&d).await;
        }
        if recmode == CTDB_RECOVERY_NORMAL {
            recovering_since = None;
        } else {
            let since = *recovering_since.get_or_insert_with(Instant::now);
            let limit = u64::from(d.tunable("RecoveryDropAllIPs", 120));
            if limit > 0 && since.elapsed() >= Duration::from_secs(limit) && holds_any(&d) {
                tracing::error!("Been in recovery mode for too long. Dropping all IPS");
                super::node::release_all(&d).await;
            }
        }
        let disabled = d.takeover.runs_disabled();
        if Instant::now() >= next_check {
            next_check = Instant::now() + Duration::from_secs(1);
            if recmode == CTDB_RECOVERY_NORMAL
                && own_flags & NODE_FLAGS_INACTIVE == 0
                && !disabled
                && !d.takeover.failover_disabled
                && verify_local(&d)
            {
                tracing::info!("Trigger takeoverrun");
                d.deliver(&OutMessage {
                    pnn: CTDB_BROADCAST_CONNECTED,
                    srvid: srvid::TAKEOVER_RUN,
                    data: SrvidMessage {
                        pnn: d.pnn(),
                        srvid: 0,
                    }
                    .to_bytes(),
                });
            }
        }
        if Instant::now() >= next_tickles {
            let secs = u64::from(d.tunable("TickleUpdateInterval", 20).max(1));
            next_tickles = Instant::now() + Duration::from_secs(secs);
            super::node::send_tickles(&d, false);
        }
        let due = {
            let r = d.takeover.recd.borrow();
            !r.requests.is_empty() || r.need_run
        };
        if leader && due && !disabled && recmode == CTDB_RECOVERY_NORMAL {
            let (requests, rebalance) = {
                let mut r = d.takeover.recd.borrow_mut();
                (std::mem::take(&mut r.requests), r.force_rebalance.clone())
            };
            let ok = takeover_run(&d, &rebalance).await;
            {
                let mut r = d.takeover.recd.borrow_mut();
                r.need_run = !ok;
                if ok && r.force_rebalance == rebalance {
                    r.force_rebalance.clear();
                }
            }
            let ret = if ok { d.pnn() as i32 } else { -1 };
            for q in requests {
                if q.srvid != 0 {
                    reply(&d, q.pnn, q.srvid, ret);
                }
            }
        }
        futures_lite::future::or(
            glommio::timer::sleep(Duration::from_millis(100)),
            stop.stopped(),
        )
        .await;
    }
}

fn holds_any(d: &Daemon) -> bool {
    d.takeover
        .table
        .borrow()
        .vnns
        .iter()
        .any(|v| v.iface.is_some())
}

/// Upstream's `verify_local_ip_allocation`: whether this node should ask
/// for a takeover run.
fn verify_local(d: &Daemon) -> bool {
    let tk = &d.takeover;
    let mut need = false;
    let ifaces: Vec<(String, bool)> = tk
        .table
        .borrow()
        .ifaces
        .iter()
        .map(|i| (i.name.clone(), i.link_up))
        .collect();
    {
        let mut r = tk.recd.borrow_mut();
        match &r.last_ifaces {
            None => {
                tracing::info!("Initial interface fetched");
                need = true;
            }
            Some(old) if old.len() != ifaces.len() => {
                tracing::info!(
                    "Interface count changed from {} to {}",
                    old.len(),
                    ifaces.len()
                );
                need = true;
            }
            Some(old) => {
                for (o, n) in old.iter().zip(&ifaces) {
                    if o.0 != n.0 {
                        tracing::info!("Interface changed: {} => {}", o.0, n.0);
                        need = true;
                        break;
                    }
                    if o.1 != n.1 {
                        tracing::info!(
                            "Interface {} changed state: {} => {}",
                            n.0,
                            u8::from(o.1),
                            u8::from(n.1)
                        );
                        need = true;
                        break;
                    }
                }
            }
        }
        r.last_ifaces = Some(ifaces);
    }
    let own_flags = d.node.borrow().membership.own_flags();
    for ip in super::node::public_ips(d, true).ips {
        if ip.pnn == UNKNOWN && own_flags == 0 {
            tracing::warn!(
                "Unassigned IP {} can be served by this node",
                ip.addr.ip().map_or_else(String::new, |a| a.to_string())
            );
            need = true;
        }
    }
    if tk.check_public_ip {
        for ip in super::node::public_ips(d, false).ips {
            let Some(addr) = ip.addr.ip() else { continue };
            let have = super::node::have_ip(addr);
            if ip.pnn == d.pnn() && !have {
                tracing::error!("Assigned IP {addr} not on an interface");
                need = true;
            } else if ip.pnn != d.pnn() && have {
                tracing::error!("IP {addr} incorrectly on an interface");
                need = true;
            }
        }
    }
    need
}

/// Sends one control to each of `pnns` at once; each node's result.
async fn multi(
    d: &Rc<Daemon>,
    pnns: &[u32],
    op: Opcode,
    flags: u32,
    data: &[u8],
    timeout: Duration,
) -> Vec<(u32, Result<crate::peers::ControlReply, String>)> {
    let handles: Vec<_> = pnns
        .iter()
        .map(|&p| {
            let (d, data) = (d.clone(), data.to_vec());
            glommio::spawn_local(async move {
                crate::peers::control(&d, p, op as u32, 0, flags, &data, timeout)
                    .await
                    .map_err(|e| e.to_string())
            })
        })
        .collect();
    let mut out = Vec::with_capacity(pnns.len());
    for (p, h) in pnns.iter().zip(handles) {
        out.push((*p, h.await));
    }
    out
}

/// The nodes a run talks to.
struct Nodes {
    num: usize,
    connected: Vec<u32>,
    active: Vec<u32>,
}

fn nodes(d: &Daemon) -> Nodes {
    let n = d.node.borrow();
    let map = n.membership.nodemap();
    let num = map.iter().map(|(p, _)| *p as usize + 1).max().unwrap_or(0);
    let connected = map
        .iter()
        .filter(|(_, f)| f & (NODE_FLAGS_DISCONNECTED | NODE_FLAGS_DELETED) == 0)
        .map(|(p, _)| *p)
        .collect();
    let active = map
        .iter()
        .filter(|(_, f)| f & (NODE_FLAGS_INACTIVE | NODE_FLAGS_DELETED) == 0)
        .map(|(p, _)| *p)
        .collect();
    Nodes {
        num,
        connected,
        active,
    }
}

/// GET_PUBLIC_IPS from `pnns`; `Err` after charging a credit to each node
/// that failed.
async fn get_ips(
    d: &Rc<Daemon>,
    pnns: &[u32],
    available: bool,
    timeout: Duration,
    credits: &mut HashMap<u32, u32>,
) -> Result<HashMap<u32, PublicIpList>, ()> {
    let flags = if available {
        CTDB_PUBLIC_IP_FLAGS_ONLY_AVAILABLE
    } else {
        0
    };
    let mut out = HashMap::new();
    let mut failed = false;
    for (p, r) in multi(d, pnns, Opcode::GetPublicIps, flags, &[], timeout).await {
        let list = match r {
            Ok(r) if r.status == 0 => PublicIpList::from_bytes(&r.data).map_err(|e| e.to_string()),
            Ok(r) => Err(format!("status {}", r.status)),
            Err(e) => Err(e),
        };
        match list {
            Ok(l) => {
                out.insert(p, l);
            }
            Err(e) => {
                tracing::error!("control GET_PUBLIC_IPS failed on node {p}: {e}");
                *credits.entry(p).or_default() += 1;
                failed = true;
            }
        }
    }
    if failed {
        Err(())
    } else {
        Ok(out)
    }
}

/// One takeover run led by this node; whether it succeeded.
pub async fn takeover_run(d: &Rc<Daemon>, rebalance: &[u32]) -> bool {
    let tk = &d.takeover;
    if tk.in_progress.get() {
        tracing::error!("takeover run already in progress");
        return false;
    }
    tracing::info!("Takeover run starting");
    tk.in_progress.set(true);
    let ns = nodes(d);
    // Other nodes do not start runs of their own meanwhile (no reply).
    let others: Vec<u32> = ns
        .connected
        .iter()
        .copied()
        .filter(|p| *p != d.pnn())
        .collect();
    let tell = |timeout: u32| {
        for &p in &others {
            d.deliver(&OutMessage {
                pnn: p,
                srvid: srvid::DISABLE_TAKEOVER_RUNS,
                data: DisableMessage {
                    pnn: u32::MAX,
                    srvid: 0,
                    timeout,
                }
                .to_bytes(),
            });
        }
    };
    tell(60);
    let mut credits: HashMap<u32, u32> = HashMap::new();
    let r = do_run(d, &ns, rebalance, &mut credits).await;
    tell(0);
    tk.in_progress.set(false);
    let ok = match r {
        Ok(()) => true,
        Err(why) => {
            tracing::error!("ctdb_takeover_run() failed: {why}");
            charge(d, &credits);
            false
        }
    };
    tracing::info!(
        "Takeover run {}",
        if ok {
            "completed successfully"
        } else {
            "unsuccessful"
        }
    );
    ok
}

/// Banning credits to the node that failed most (if bans are enabled).
fn charge(d: &Daemon, credits: &HashMap<u32, u32>) {
    if d.tunable("EnableBans", 1) == 0 {
        return;
    }
    let mut best: Option<(u32, u32)> = None;
    let mut pnns: Vec<_> = credits.iter().collect();
    pnns.sort();
    for (&p, &c) in pnns {
        if c > 0 && best.is_none_or(|(_, m)| c > m) {
            best = Some((p, c));
        }
    }
    if let Some((p, _)) = best {
        tracing::warn!("Assigning banning credits to node {p}");
        d.deliver(&OutMessage {
            pnn: d.pnn(),
            srvid: srvid::BANNING,
            data: p.to_le_bytes().to_vec(),
        });
    }
}

async fn do_run(
    d: &Rc<Daemon>,
    ns: &Nodes,
    rebalance: &[u32],
    credits: &mut HashMap<u32, u32>,
) -> Result<(), String> {
    let timeout = Duration::from_secs(u64::from(d.tunable("TakeoverTimeout", 9).max(1)));
    let mut deadline = Instant::now() + timeout * 3;
    let left = |deadline: Instant| {
        deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(100))
    };
    if !d.takeover.failover_disabled {
        let known = get_ips(d, &ns.connected, false, timeout, credits)
            .await
            .map_err(|_| "Failed to fetch known public IPs".to_string())?;
        let with_ips: Vec<u32> = ns
            .active
            .iter()
            .copied()
            .filter(|p| known.get(p).is_some_and(|l| !l.ips.is_empty()))
            .collect();
        let avail = get_ips(d, &with_ips, true, timeout, credits)
            .await
            .map_err(|_| "Failed to fetch available public IPs".to_string())?;
        let input: Vec<NodeIps> = (0..ns.num as u32)
            .map(|p| NodeIps {
                known: known.get(&p).map_or_else(Vec::new, |l| {
                    l.ips
                        .iter()
                        .filter_map(|i| i.addr.ip().map(|a| (a, i.pnn)))
                        .collect()
                }),
                available: avail.get(&p).map_or_else(Vec::new, |l| {
                    l.ips.iter().filter_map(|i| i.addr.ip()).collect()
                }),
            })
            .collect();
        if !ipalloc::can_host_ips(&input) {
            tracing::info!("No nodes available to host public IPs yet");
        } else {
            let params = Params {
                algorithm: Algorithm::from_tunable(d.tunable("IPAllocAlgorithm", 2)),
                no_ip_takeover: d.tunable("NoIPTakeover", 0) != 0,
                no_ip_failback: d.tunable("NoIPFailback", 0) != 0,
                force_rebalance: rebalance.to_vec(),
            };
            let all = ipalloc::allocate(&input, &params);
            deadline = Instant::now() + timeout * 3;
            release(d, ns, &all, left(deadline), credits).await?;
            take(d, &all, left(deadline), credits).await?;
        }
    }
    let mut failed = false;
    for (p, r) in multi(
        d,
        &ns.connected,
        Opcode::Ipreallocated,
        0,
        &[],
        left(deadline),
    )
    .await
    {
        let err = match r {
            Ok(r) if r.status == 0 => continue,
            Ok(r) => format!("ret={}", r.status),
            Err(e) => e,
        };
        tracing::error!("IPREALLOCATED failed on node {p}, {err}");
        *credits.entry(p).or_default() += 1;
        failed = true;
    }
    if failed {
        return Err("IPREALLOCATED failed".into());
    }
    Ok(())
}

fn pip(addr: IpAddr, pnn: u32) -> Vec<u8> {
    PublicIp {
        pnn,
        addr: SockAddr::from_ip(addr),
    }
    .to_bytes()
}

/// RELEASE_IP of each address to every connected node that knows it and
/// should not host it (telling them all where it goes).
async fn release(
    d: &Rc<Daemon>,
    ns: &Nodes,
    all: &[ipalloc::Slot],
    timeout: Duration,
    credits: &mut HashMap<u32, u32>,
) -> Result<(), String> {
    let mut jobs = Vec::new();
    for s in all {
        let targets: Vec<u32> = ns
            .connected
            .iter()
            .copied()
            .filter(|&p| s.known_on.get(p as usize).copied().unwrap_or(false) && s.pnn != p)
            .collect();
        if targets.is_empty() {
            continue;
        }
        let (d2, data, addr) = (d.clone(), pip(s.addr, s.pnn), s.addr);
        jobs.push(glommio::spawn_local(async move {
            (
                addr,
                multi(&d2, &targets, Opcode::ReleaseIp, 0, &data, timeout).await,
            )
        }));
    }
    let mut failed = false;
    for j in jobs {
        let (addr, results) = j.await;
        for (p, r) in results {
            let err = match r {
                Ok(r) if r.status == 0 => continue,
                Ok(r) => format!("ret={}", r.status),
                Err(e) => e,
            };
            tracing::error!("RELEASE_IP {addr} failed on node {p}, {err}");
            *credits.entry(p).or_default() += 1;
            failed = true;
        }
    }
    if failed {
        return Err("RELEASE_IP failed".into());
    }
    Ok(())
}

/// TAKEOVER_IP of each assigned address to its node.
async fn take(
    d: &Rc<Daemon>,
    all: &[ipalloc::Slot],
    timeout: Duration,
    credits: &mut HashMap<u32, u32>,
) -> Result<(), String> {
    let jobs: Vec<_> = all
        .iter()
        .filter(|s| s.pnn != UNKNOWN)
        .map(|s| {
            let (d2, data, addr, p) = (d.clone(), pip(s.addr, s.pnn), s.addr, s.pnn);
            glommio::spawn_local(async move {
                let r =
                    crate::peers::control(&d2, p, Opcode::TakeoverIp as u32, 0, 0, &data, timeout)
                        .await;
                (addr, p, r.map_err(|e| e.to_string()))
            })
        })
        .collect();
    let mut failed = false;
    for j in jobs {
        let (addr, p, r) = j.await;
        let err = match r {
            Ok(r) if r.status == 0 => {
                tracing::debug!("TAKEOVER_IP {addr} succeeded on node {p}");
                continue;
            }
            Ok(r) => format!("ret={}", r.status),
            Err(e) => e,
        };
        tracing::error!("TAKEOVER_IP {addr} failed on node {p}, {err}");
        *credits.entry(p).or_default() += 1;
        failed = true;
    }
    if failed {
        return Err("TAKEOVER_IP failed".into());
    }
    Ok(())
}
