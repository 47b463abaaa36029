//! The public-address controls a node answers, with upstream's wire
//! layouts and statuses (`ctdb_takeover.c`), so the stock `ctdb` tool and
//! Samba's leader work against this daemon.
//!
//! Why async: TAKEOVER_IP, RELEASE_IP and IPREALLOCATED answer only once
//! their event script has run, as upstream's asynchronous replies; the
//! client (or the peer) waiting for that reply is the only one held up.
//! The table is never borrowed across an `.await`: an address is found
//! again by value after each event, since ADD/DEL_PUBLIC_IP may have run
//! meanwhile.

use std::net::IpAddr;
use std::rc::Rc;

use ctdb_protocol::constants::{
    CTDB_BROADCAST_ALL, CTDB_BROADCAST_CONNECTED, CTDB_CURRENT_NODE,
    CTDB_PUBLIC_IP_FLAGS_ONLY_AVAILABLE, NODE_FLAGS_DISABLED, NODE_FLAGS_INACTIVE,
};
use ctdb_protocol::types::{
    srvid, Connection, Iface as WireIface, IfaceList, PublicIp, PublicIpInfo, PublicIpList,
    SockAddr, TickleList,
};
use ctdb_protocol::{
    ControlData, Data, Header, Opcode, Packet, Payload, RawHeader, ReplyControl, Wire,
};

use super::ipalloc::UNKNOWN;
use super::table::{iface_exists, IpTable};
use crate::controls::Outcome;
use crate::db::OutMessage;
use crate::event::eventd::RunRefused;
use crate::event::runner::CtdbEvent;
use crate::monitor::RUNSTATE_RUNNING;
use crate::state::Daemon;

/// The opcodes served here.
fn is_ours(op: u32) -> bool {
    use Opcode as O;
    matches!(
        Opcode::from_u32(op),
        Some(
            O::GetPublicIps
                | O::GetPublicIpInfo
                | O::GetIfaces
                | O::SetIfaceLinkState
                | O::TakeoverIp
                | O::ReleaseIp
                | O::Ipreallocated
                | O::AddPublicIp
                | O::DelPublicIp
                | O::ReloadPublicIps
                | O::TcpClient
                | O::TcpAdd
                | O::TcpAddDelayedUpdate
                | O::TcpRemove
                | O::GetTcpTickleList
                | O::SetTcpTickleList
                | O::SendGratuitousArp
                | O::Startup
        )
    )
}

/// Serves a public-address control for this node; `None` for any other
/// packet.
pub async fn serve(
    d: &Rc<Daemon>,
    client: u32,
    pkt: &[u8],
    out: &mut Vec<u8>,
) -> Option<Result<Outcome, String>> {
    let raw = RawHeader::parse(pkt).ok()?;
    // The control's opcode is the first field after the header.
    let op = u32::from_le_bytes(pkt.get(32..36)?.try_into().ok()?);
    if raw.operation() != Ok(ctdb_protocol::Operation::ReqControl) || !is_ours(op) {
        return None;
    }
    let dest = raw.destnode;
    if dest != CTDB_CURRENT_NODE && dest != d.pnn() && !crate::state::is_broadcast(dest) {
        return None;
    }
    let packet = match Packet::decode(pkt, &d.limits) {
        Ok(p) => p,
        Err(e) => return Some(Err(e.to_string())),
    };
    let Payload::ReqControl(c) = &packet.payload else {
        return None;
    };
    let (status, data) = match c.decode_data() {
        Ok(input) => control(d, client, c.flags, input).await,
        Err(e) => {
            tracing::error!("control {} with bad data: {e}", c.opcode);
            (-1, Vec::new())
        }
    };
    if !c.noreply() {
        let hdr = Header::new(
            d.generation(),
            packet.header.srcnode,
            d.pnn(),
            packet.header.reqid,
        );
        let r = ReplyControl {
            status,
            data: Data::Raw(&data),
            errmsg: b"",
        };
        if let Err(e) = Packet::new(hdr, Payload::ReplyControl(r)).encode(out) {
            return Some(Err(e.to_string()));
        }
    }
    Some(Ok(Outcome::Done))
}

fn wire<'a, T: Wire<'a>>(v: &T) -> Vec<u8> {
    let mut out = Vec::with_capacity(v.wire_len());
    v.push(&mut out);
    out
}

/// Whether this node may host addresses now (upstream's
/// `ctdb_vnn_available` node part).
pub fn node_can_host(d: &Daemon) -> bool {
    d.runstate.get() == RUNSTATE_RUNNING
        && d.node.borrow().membership.own_flags() & (NODE_FLAGS_INACTIVE | NODE_FLAGS_DISABLED) == 0
}

/// GET_PUBLIC_IPS.
pub fn public_ips(d: &Daemon, only_available: bool) -> PublicIpList {
    let ok = node_can_host(d);
    let t = d.takeover.table.borrow();
    PublicIpList {
        ips: t
            .vnns
            .iter()
            .enumerate()
            .filter(|(i, _)| !only_available || t.available(*i, ok))
            .map(|(_, v)| PublicIp {
                pnn: v.pnn,
                addr: SockAddr::from_ip(v.addr),
            })
            .collect(),
    }
}

fn iface_wire(t: &IpTable, name: &str) -> WireIface {
    let (up, refs) = t
        .iface(name)
        .map_or((false, 0), |i| (i.link_up, i.references));
    WireIface::new(name, u16::from(up), refs)
}

async fn control(
    d: &Rc<Daemon>,
    client: u32,
    flags: u32,
    input: ControlData<'_>,
) -> (i32, Vec<u8>) {
    use ControlData as C;
    let me = d.pnn();
    let tk = &d.takeover;
    match input {
        C::GetPublicIps => {
            let only = flags & CTDB_PUBLIC_IP_FLAGS_ONLY_AVAILABLE != 0;
            (0, wire(&public_ips(d, only)))
        }
        C::GetPublicIpInfo(addr) => {
            let t = tk.table.borrow();
            let Some(idx) = addr.ip().and_then(|a| t.find(&a)) else {
                tracing::error!(
                    "Could not get public ip info, '{}'not a public address",
                    show(&addr)
                );
                return (-1, Vec::new());
            };
            let v = &t.vnns[idx];
            let info = PublicIpInfo {
                ip: PublicIp {
                    pnn: v.pnn,
                    addr: SockAddr::from_ip(v.addr),
                },
                active_idx: v
                    .ifaces
                    .iter()
                    .position(|n| Some(n) == v.iface.as_ref())
                    .map_or(u32::MAX, |i| i as u32),
                ifaces: v.ifaces.iter().map(|n| iface_wire(&t, n)).collect(),
            };
            (0, wire(&info))
        }
        C::GetIfaces => {
            let t = tk.table.borrow();
            let list = IfaceList {
                ifaces: t
                    .ifaces
                    .iter()
                    .map(|i| WireIface::new(&i.name, u16::from(i.link_up), i.references))
                    .collect(),
            };
            (0, wire(&list))
        }
        C::SetIfaceLinkState(i) => (set_iface_link(d, &i), Vec::new()),
        C::TakeoverIp(pip) => (takeover_ip(d, pip).await, Vec::new()),
        C::ReleaseIp(pip) => (release_ip(d, pip).await, Vec::new()),
        C::Ipreallocated => {
            tracing::debug!("Running \"ipreallocated\" event");
            let st = run_event(d, CtdbEvent::IpReallocated, None).await;
            if st != 0 {
                tracing::error!(" \"ipreallocated\" event script failed (status {st})");
                ban_self_on_timeout(d, st);
            }
            (st, Vec::new())
        }
        C::AddPublicIp(ai) => {
            let Some(addr) = ai.addr.ip() else {
                return (-1, Vec::new());
            };
            let ifaces = String::from_utf8_lossy(ai.iface.bytes().unwrap_or_default())
                .trim_end_matches('\0')
                .to_string();
            tracing::info!("Add IP {addr}");
            match add_ip(d, addr, ai.mask, &ifaces) {
                Ok(()) => (0, Vec::new()),
                Err(e) => {
                    tracing::error!("Failed to add public address {addr}: {e}");
                    (-1, Vec::new())
                }
            }
        }
        C::DelPublicIp(ai) => {
            let Some(addr) = ai.addr.ip() else {
                return (-1, Vec::new());
            };
            tracing::info!("Delete IP {addr}");
            if del_ip(d, &addr) {
                (0, Vec::new())
            } else {
                tracing::error!("Delete IP of unknown public IP address {addr}");
                (-1, Vec::new())
            }
        }
        C::ReloadPublicIps => (reload(d), Vec::new()),
        C::TcpClient(conn) => (tcp_client(d, client, &conn), Vec::new()),
        C::TcpAdd(conn) => (tcp_add(d, &conn, false), Vec::new()),
        C::TcpAddDelayedUpdate(conn) => (tcp_add(d, &conn, true), Vec::new()),
        C::TcpRemove(conn) => {
            tk.table.borrow_mut().tcp_remove(&conn);
            (0, Vec::new())
        }
        C::GetTcpTickleList(addr) => match tk.table.borrow().tickles(&addr) {
            Some(conns) => (0, wire(&TickleList { addr, conns })),
            None => {
                tracing::error!(
                    "Could not get tcp tickle list, '{}' is not a public address",
                    show(&addr)
                );
                (1, Vec::new())
            }
        },
        C::SetTcpTickleList(list) => {
            let mut t = tk.table.borrow_mut();
            let Some(idx) = list.addr.ip().and_then(|a| t.find(&a)) else {
                return (1, Vec::new());
            };
            let v = &mut t.vnns[idx];
            if v.pnn != me {
                v.tickles = list.conns;
            }
            (0, Vec::new())
        }
        C::SendGratuitousArp(ai) => {
            let iface = String::from_utf8_lossy(ai.iface.bytes().unwrap_or_default())
                .trim_end_matches('\0')
                .to_string();
            if let Some(addr) = ai.addr.ip() {
                super::arp::spawn_announce(d, addr, iface, Vec::new(), None);
            }
            (0, Vec::new())
        }
        C::Startup => {
            tracing::debug!("Received startup control");
            send_tickles(d, true);
            (0, Vec::new())
        }
        _ => (-1, Vec::new()),
    }
}

fn show(a: &SockAddr) -> String {
    a.ip().map_or_else(|| "?".into(), |i| i.to_string())
}

fn set_iface_link(d: &Daemon, i: &WireIface) -> i32 {
    // As upstream: the name must end within CTDB_IFACE_SIZE bytes.
    if i.name[super::table::IFACE_SIZE] != 0 {
        tracing::error!("name[{}] not terminated", i.name_string());
        return -1;
    }
    let up = match i.link_state {
        0 => false,
        1 => true,
        s => {
            tracing::error!("link_state[{s}] invalid");
            return -1;
        }
    };
    if i.references != 0 {
        tracing::error!("references[{}] should be 0", i.references);
        return -1;
    }
    let name = i.name_string();
    match d.takeover.table.borrow_mut().set_link(&name, up) {
        None => -1,
        Some(changed) => {
            if changed {
                tracing::error!(
                    "iface[{name}] has changed it's link status {} => {}",
                    if up { "down" } else { "up" },
                    if up { "up" } else { "down" }
                );
            }
            0
        }
    }
}

/// Whether the kernel has `addr` on an interface here (upstream binds a
/// socket to it).
pub fn have_ip(addr: IpAddr) -> bool {
    std::net::TcpListener::bind((addr, 0)).is_ok()
}

fn check_ip(d: &Daemon, addr: IpAddr) -> bool {
    !d.takeover.failover_disabled && d.takeover.check_public_ip && have_ip(addr)
}

/// Runs an event with arguments in the blocking pool; its status.
async fn run_event(d: &Daemon, ev: CtdbEvent, args: Option<String>) -> i32 {
    let Some(b) = d.events.clone() else {
        return 0;
    };
    let timeout = d.tunable("EventScriptTimeout", 30);
    let r = glommio::executor()
        .spawn_blocking(move || b.run(ev, args.as_deref(), timeout))
        .await;
    match r {
        Ok(code) => code,
        Err(RunRefused::BadArguments) => -1,
        Err(RunRefused::Transport(e)) => {
            tracing::error!("Unable to run {} event: {e}", ev.name());
            -1
        }
    }
}

/// As upstream: an event that timed out (takeip and releaseip timeouts
/// count as success, see [`CtdbEvent::timeout_ignored`]) bans this node
/// for RecoveryBanPeriod.
fn ban_self_on_timeout(d: &Daemon, status: i32) {
    if status.abs() != libc::ETIMEDOUT {
        return;
    }
    let time = d.tunable("RecoveryBanPeriod", 300);
    tracing::error!("Banning this node for {time} seconds");
    crate::controls::cluster_control(
        d,
        crate::cluster::Control::SetBanState(ctdb_protocol::types::BanState { pnn: d.pnn(), time }),
    );
}

fn set_in_flight(d: &Daemon, addr: &IpAddr, on: bool) {
    let mut t = d.takeover.table.borrow_mut();
    if let Some(i) = t.find(addr) {
        t.vnns[i].update_in_flight = on;
    }
}

/// TAKEOVER_IP (upstream's `ctdb_control_takeover_ip`).
pub async fn takeover_ip(d: &Rc<Daemon>, pip: PublicIp) -> i32 {
    let me = d.pnn();
    let Some(addr) = pip.addr.ip() else {
        return -1;
    };
    if pip.pnn != me {
        tracing::error!(
            "takeoverip called for an ip '{addr}' with pnn {}, but we're node {me}",
            pip.pnn
        );
        return -1;
    }
    let have = check_ip(d, addr);
    let (want_take, want_update) = {
        let mut t = d.takeover.table.borrow_mut();
        let Some(idx) = t.find(&addr) else {
            tracing::debug!("takeoverip called for an ip '{addr}' that is not a public address");
            return 0;
        };
        let Some(best) = t.best_iface(idx) else {
            tracing::error!(
                "takeoverip of IP {addr}/{} failed to find a usable interface",
                t.vnns[idx].mask
            );
            return -1;
        };
        let v = &t.vnns[idx];
        if v.pnn != me && have && v.pnn != UNKNOWN {
            tracing::error!(
                "takeoverip of IP {addr} is known to the kernel, but it was assigned to node {} and we are node {me}",
                v.pnn
            );
            return -1;
        }
        let mut update = v.pnn == UNKNOWN && have;
        if let Some(cur) = &v.iface {
            if cur != &best {
                let (cur_up, cur_refs) = t
                    .iface(cur)
                    .map_or((false, 0), |i| (i.link_up, i.references));
                let best_refs = t.iface(&best).map_or(0, |i| i.references);
                if !cur_up || cur_refs > best_refs + 1 {
                    update = true;
                }
            }
        }
        let mut take = false;
        if !have {
            if update {
                t.unassign(idx, me);
                update = false;
            }
            take = true;
        }
        (take, update)
    };
    if want_take {
        do_takeip(d, addr).await
    } else if want_update {
        do_updateip(d, addr).await
    } else {
        tracing::debug!("Redundant takeover of IP {addr} (ip already held)");
        0
    }
}

async fn do_takeip(d: &Rc<Daemon>, addr: IpAddr) -> i32 {
    let me = d.pnn();
    let (iface, mask) = {
        let mut t = d.takeover.table.borrow_mut();
        let Some(idx) = t.find(&addr) else { return -1 };
        if t.vnns[idx].update_in_flight {
            tracing::info!(
                "Takeover of IP {addr}/{} rejected update for this IP already in flight",
                t.vnns[idx].mask
            );
            return -1;
        }
        if !t.assign(idx, me) {
            tracing::error!(
                "Takeover of IP {addr}/{} failed to assign a usable interface",
                t.vnns[idx].mask
            );
            return -1;
        }
        let v = &mut t.vnns[idx];
        v.update_in_flight = true;
        (v.iface.clone().unwrap_or_default(), v.mask)
    };
    tracing::info!("Takeover of IP {addr}/{mask} on interface {iface}");
    let st = run_event(d, CtdbEvent::TakeIp, Some(format!("{iface} {addr} {mask}"))).await;
    set_in_flight(d, &addr, false);
    if st != 0 {
        tracing::error!("Failed to takeover IP {addr} on interface {iface}");
        return st;
    }
    if d.takeover.check_public_ip {
        let tickles = {
            let mut t = d.takeover.table.borrow_mut();
            match t.find(&addr) {
                Some(i) => {
                    let v = &mut t.vnns[i];
                    v.tcp_update_needed |= !v.tickles.is_empty();
                    std::mem::take(&mut v.tickles)
                }
                None => Vec::new(),
            }
        };
        super::arp::spawn_announce(d, addr, iface, tickles, Some(addr));
    }
    d.deliver(&OutMessage {
        pnn: me,
        srvid: srvid::TAKE_IP,
        data: cstr(&addr.to_string()),
    });
    0
}

async fn do_updateip(d: &Rc<Daemon>, addr: IpAddr) -> i32 {
    let me = d.pnn();
    let (old, new, mask) = {
        let mut t = d.takeover.table.borrow_mut();
        let Some(idx) = t.find(&addr) else { return -1 };
        if t.vnns[idx].update_in_flight {
            tracing::info!("Update of IP {addr} rejected update for this IP already in flight");
            return -1;
        }
        let old = t.vnns[idx].iface.clone();
        t.unassign(idx, me);
        if !t.assign(idx, me) {
            tracing::error!("Update of IP {addr} failed to assign a usable interface");
            return -1;
        }
        let v = &mut t.vnns[idx];
        if old == v.iface {
            return 0;
        }
        v.update_in_flight = true;
        (old, v.iface.clone().unwrap_or_default(), v.mask)
    };
    let old_name = old.clone().unwrap_or_else(|| "__none__".into());
    tracing::info!("Update of IP {addr}/{mask} from interface {old_name} to {new}");
    let st = run_event(
        d,
        CtdbEvent::UpdateIp,
        Some(format!("{old_name} {new} {addr} {mask}")),
    )
    .await;
    set_in_flight(d, &addr, false);
    if st != 0 {
        ban_self_on_timeout(d, st);
        tracing::error!("Failed update of IP {addr} from interface {old_name} to {new}");
        let mut t = d.takeover.table.borrow_mut();
        if let Some(idx) = t.find(&addr) {
            t.unassign(idx, me);
            if let Some(o) = old {
                t.restore_iface(idx, &o, me);
            }
        }
        return st;
    }
    0
}

/// RELEASE_IP (upstream's `ctdb_control_release_ip`): a redundant release
/// only records where the address goes.
pub async fn release_ip(d: &Rc<Daemon>, pip: PublicIp) -> i32 {
    let me = d.pnn();
    let Some(addr) = pip.addr.ip() else {
        return -1;
    };
    let check = !d.takeover.failover_disabled && d.takeover.check_public_ip;
    let (iface, mask) = {
        let mut t = d.takeover.table.borrow_mut();
        let Some(idx) = t.find(&addr) else {
            tracing::debug!("releaseip called for an ip '{addr}' that is not a public address");
            return 0;
        };
        if check {
            if !have_ip(addr) {
                t.vnns[idx].pnn = pip.pnn;
                t.unassign(idx, me);
                return 0;
            }
        } else if t.vnns[idx].iface.is_none() {
            t.vnns[idx].pnn = pip.pnn;
            return 0;
        }
        let v = &mut t.vnns[idx];
        if v.update_in_flight {
            tracing::info!(
                "Release of IP {addr}/{} rejected update for this IP already in flight",
                v.mask
            );
            return -1;
        }
        v.update_in_flight = true;
        (v.iface.clone().unwrap_or_else(|| "__none__".into()), v.mask)
    };
    tracing::info!(
        "Release of IP {addr}/{mask} on interface {iface}  node:{}",
        pip.pnn as i32
    );
    let st = run_event(
        d,
        CtdbEvent::ReleaseIp,
        Some(format!("{iface} {addr} {mask}")),
    )
    .await;
    if st != 0 {
        tracing::error!("releaseip event for {addr} failed ({st})");
    }
    if check && have_ip(addr) {
        tracing::error!("IP {addr} still hosted during release IP callback, failing");
        set_in_flight(d, &addr, false);
        return -1;
    }
    {
        let mut t = d.takeover.table.borrow_mut();
        if let Some(idx) = t.find(&addr) {
            t.vnns[idx].pnn = pip.pnn;
            t.vnns[idx].update_in_flight = false;
        }
    }
    release_ip_post(d, addr);
    0
}

/// After a release: tell local clients, take the address off its
/// interface, delete it if that was pending.
fn release_ip_post(d: &Daemon, addr: IpAddr) {
    let me = d.pnn();
    d.deliver(&OutMessage {
        pnn: me,
        srvid: srvid::RELEASE_IP,
        data: cstr(&addr.to_string()),
    });
    let mut t = d.takeover.table.borrow_mut();
    if let Some(idx) = t.find(&addr) {
        t.unassign(idx, me);
        if t.vnns[idx].delete_pending {
            t.delete(idx, me);
        }
    }
}

/// Drops every address this node holds (a ban): `releaseip` for each one
/// on an interface.
pub async fn release_all(d: &Rc<Daemon>) {
    if d.takeover.failover_disabled {
        return;
    }
    let me = d.pnn();
    let held: Vec<(IpAddr, String, u8)> = {
        let mut t = d.takeover.table.borrow_mut();
        let mut v = Vec::new();
        for i in 0..t.vnns.len() {
            let holds = if d.takeover.check_public_ip {
                have_ip(t.vnns[i].addr)
            } else {
                t.vnns[i].iface.is_some()
            };
            if !holds {
                t.unassign(i, me);
                continue;
            }
            if t.vnns[i].update_in_flight {
                continue;
            }
            t.vnns[i].update_in_flight = true;
            let x = &t.vnns[i];
            v.push((
                x.addr,
                x.iface.clone().unwrap_or_else(|| "__none__".into()),
                x.mask,
            ));
        }
        v
    };
    let mut count = 0;
    for (addr, iface, mask) in held {
        tracing::info!("Release of IP {addr}/{mask} on interface {iface} node:-1");
        run_event(
            d,
            CtdbEvent::ReleaseIp,
            Some(format!("{iface} {addr} {mask}")),
        )
        .await;
        set_in_flight(d, &addr, false);
        if d.takeover.check_public_ip && have_ip(addr) {
            tracing::error!("IP address {addr} not released");
            continue;
        }
        release_ip_post(d, addr);
        count += 1;
    }
    tracing::info!("Released {count} public IPs");
}

fn cstr(s: &str) -> Vec<u8> {
    let mut v = s.as_bytes().to_vec();
    v.push(0);
    v
}

/// ADD_PUBLIC_IP.
fn add_ip(d: &Daemon, addr: IpAddr, mask: u32, ifaces: &str) -> Result<(), String> {
    let max = if addr.is_ipv4() { 32 } else { 128 };
    if mask > max {
        return Err(format!("mask {mask} is longer than the address"));
    }
    let list: Vec<String> = ifaces
        .split(',')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    d.takeover
        .table
        .borrow_mut()
        .add(addr, mask as u8, &list, &iface_exists)
        .map_err(|e| e.to_string())
}

/// DEL_PUBLIC_IP: now, or after its release if this node hosts it.
fn del_ip(d: &Daemon, addr: &IpAddr) -> bool {
    let me = d.pnn();
    let mut t = d.takeover.table.borrow_mut();
    let Some(idx) = t.find(addr) else {
        return false;
    };
    if t.vnns[idx].pnn == me {
        t.vnns[idx].delete_pending = true;
    } else {
        t.delete(idx, me);
    }
    true
}

/// RELOAD_PUBLIC_IPS: the file read again; addresses gone from it are
/// deleted, new ones added, and the leader asked to rebalance onto this
/// node if any were added.
fn reload(d: &Daemon) -> i32 {
    let Some(path) = d.takeover.path.clone() else {
        return -1;
    };
    let file = match ctdb_config::PublicAddresses::load_with_default_iface(
        &path,
        d.takeover.default_iface.as_deref(),
    ) {
        Ok(f) => f,
        Err(e) => {
            tracing::error!("Failed to re-read public addresses file: {e}");
            return -1;
        }
    };
    let current: Vec<IpAddr> = d
        .takeover
        .table
        .borrow()
        .vnns
        .iter()
        .map(|v| v.addr)
        .collect();
    for a in &current {
        if !file.addresses.iter().any(|f| &f.addr == a) {
            tracing::info!("IP {a} no longer configured, deleting it");
            del_ip(d, a);
        }
    }
    let mut status = 0;
    let mut first = true;
    // Upstream walks its freshly read list, newest (last line) first.
    for f in file.addresses.iter().rev() {
        if current.contains(&f.addr) {
            continue;
        }
        tracing::info!("New IP {} configured, adding it", f.addr);
        if first {
            d.deliver(&OutMessage {
                pnn: CTDB_BROADCAST_CONNECTED,
                srvid: srvid::REBALANCE_NODE,
                data: d.pnn().to_le_bytes().to_vec(),
            });
            first = false;
        }
        if let Err(e) = add_ip(d, f.addr, u32::from(f.mask), &f.ifaces.join(",")) {
            tracing::error!("Failed to add public address {}: {e}", f.addr);
            status = -1;
        }
    }
    status
}

/// TCP_CLIENT: a local client's connection to a public address this node
/// hosts, told to every connected node (TCP_ADD).
fn tcp_client(d: &Daemon, client: u32, conn: &Connection) -> i32 {
    let t = d.takeover.table.borrow();
    if t.vnns.is_empty() {
        return 0;
    }
    let Some(dst) = conn.dst.ip() else {
        return 0;
    };
    let Some(idx) = t.find(&dst) else {
        if dst == IpAddr::V4(std::net::Ipv4Addr::LOCALHOST) {
            return 0;
        }
        tracing::error!(
            "Could not register TCP connection from {} to {dst} (not a public address) (port {}) (client_id {client})",
            show(&conn.src),
            conn.dst.port()
        );
        return 0;
    };
    if t.vnns[idx].pnn != d.pnn() {
        tracing::error!(
            "Attempt to register tcp client for IP {dst} we don't hold - failing (client_id {client})"
        );
        return -1;
    }
    drop(t);
    d.takeover
        .client_conns
        .borrow_mut()
        .entry(client)
        .or_default()
        .push(*conn);
    crate::peers::send_control_noreply(
        d,
        CTDB_BROADCAST_CONNECTED,
        Opcode::TcpAdd as u32,
        &wire(conn),
        false,
    );
    if d.peers.get().is_none() {
        d.takeover.table.borrow_mut().tcp_add(conn, false);
    }
    0
}

/// A client went away: the connections it registered are forgotten on
/// this node if it still hosts their address (otherwise the address moved
/// and the new host keeps them for its tickle ACKs), as upstream.
pub fn client_gone(d: &Daemon, client: u32) {
    let Some(conns) = d.takeover.client_conns.borrow_mut().remove(&client) else {
        return;
    };
    let me = d.pnn();
    let mut t = d.takeover.table.borrow_mut();
    for c in conns {
        let hosted = c
            .dst
            .ip()
            .and_then(|a| t.find(&a))
            .is_some_and(|i| t.vnns[i].pnn == me);
        if hosted {
            t.tcp_remove(&c);
        }
    }
}

fn tcp_add(d: &Daemon, conn: &Connection, update: bool) -> i32 {
    match d.takeover.table.borrow_mut().tcp_add(conn, update) {
        true => 0,
        false => {
            tracing::debug!(
                "got TCP_ADD control for an address which is not a public address '{}'",
                show(&conn.dst)
            );
            -1
        }
    }
}

/// SET_TCP_TICKLE_LIST to every node for the addresses this node hosts
/// whose connections changed (all of them with `force`).
pub fn send_tickles(d: &Daemon, force: bool) {
    let me = d.pnn();
    let lists: Vec<TickleList> = {
        let mut t = d.takeover.table.borrow_mut();
        t.vnns
            .iter_mut()
            .filter(|v| v.pnn == me && (force || v.tcp_update_needed))
            .map(|v| {
                v.tcp_update_needed = false;
                TickleList {
                    addr: SockAddr::from_ip(v.addr),
                    conns: v.tickles.clone(),
                }
            })
            .collect()
    };
    for l in lists {
        crate::peers::send_control_noreply(
            d,
            CTDB_BROADCAST_ALL,
            Opcode::SetTcpTickleList as u32,
            &wire(&l),
            false,
        );
    }
}
