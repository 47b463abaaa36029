//! Output formatting and small parsers, kept free of I/O so they can be
//! tested on plain values: every function returns the exact text upstream's
//! `ctdb` prints for the same data (plain and `-X`/`-Y` machine forms).

use std::fmt::Write as _;

use crate::sys;
use crate::wire::{
    self, DbStatistics, Iface, LatencyCounter, LtdbHeader, NodeMap, PublicIp, PublicIpInfo,
    RecBuffer, SockAddr, Statistics, Uptime, Wire,
};

/// The separator for machine-readable output.
#[derive(Clone, Copy)]
pub struct MachineSep<'a>(pub &'a str);

/// `|a|b|c|` with the given separator.
pub fn machine_row<S: AsRef<str>>(sep: &str, fields: &[S]) -> String {
    let mut s = String::from(sep);
    for f in fields {
        s.push_str(f.as_ref());
        s.push_str(sep);
    }
    s
}

/// Upstream's `pretty_print_flags()`.
pub fn pretty_print_flags(flags: u32) -> String {
    let names = [
        (wire::NODE_FLAGS_DISCONNECTED, "DISCONNECTED"),
        (wire::NODE_FLAGS_UNKNOWN, "UNKNOWN"),
        (wire::NODE_FLAGS_PERMANENTLY_DISABLED, "DISABLED"),
        (wire::NODE_FLAGS_BANNED, "BANNED"),
        (wire::NODE_FLAGS_UNHEALTHY, "UNHEALTHY"),
        (wire::NODE_FLAGS_DELETED, "DELETED"),
        (wire::NODE_FLAGS_STOPPED, "STOPPED"),
        (wire::NODE_FLAGS_INACTIVE, "INACTIVE"),
    ];
    let v: Vec<&str> = names
        .iter()
        .filter(|(f, _)| flags & f != 0)
        .map(|(_, n)| *n)
        .collect();
    if v.is_empty() {
        "OK".to_string()
    } else {
        v.join("|")
    }
}

pub fn pnn_string(pnn: u32) -> String {
    if pnn == wire::CTDB_UNKNOWN_PNN {
        "UNKNOWN".to_string()
    } else {
        pnn.to_string()
    }
}

fn dhms(secs: i64) -> String {
    // Upstream does this arithmetic in a C int.
    let mut t = secs as i32;
    let s = t % 60;
    t /= 60;
    let m = t % 60;
    t /= 60;
    let h = t % 24;
    t /= 24;
    format!("({:03} {:02}:{:02}:{:02})", t, h, m, s)
}

pub fn uptime(pnn: u32, u: &Uptime) -> String {
    let mut o = String::new();
    let _ = write!(
        o,
        "Current time of node {:<4}     :                {}",
        pnn,
        sys::ctime(u.current_time.tv_sec)
    );
    let _ = write!(
        o,
        "Ctdbd start time              : {} {}",
        dhms(u.current_time.tv_sec - u.ctdbd_start_time.tv_sec),
        sys::ctime(u.ctdbd_start_time.tv_sec)
    );
    let _ = write!(
        o,
        "Time of last recovery/failover: {} {}",
        dhms(u.current_time.tv_sec - u.last_recovery_finished.tv_sec),
        sys::ctime(u.last_recovery_finished.tv_sec)
    );
    let d = (u.last_recovery_finished.tv_sec - u.last_recovery_started.tv_sec) as f64
        + (u.last_recovery_finished.tv_usec - u.last_recovery_started.tv_usec) as f64 * 1.0e-6;
    let _ = writeln!(o, "Duration of last recovery/failover: {d:.6} seconds");
    o
}

/// Names of the counters `statistics` prints, in print order.
pub const STATS_FIELDS: [&str; 38] = [
    "num_clients",
    "frozen",
    "recovering",
    "num_recoveries",
    "client_packets_sent",
    "client_packets_recv",
    "node_packets_sent",
    "node_packets_recv",
    "keepalive_packets_sent",
    "keepalive_packets_recv",
    "node.req_call",
    "node.reply_call",
    "node.req_dmaster",
    "node.reply_dmaster",
    "node.reply_error",
    "node.req_message",
    "node.req_control",
    "node.reply_control",
    "node.req_tunnel",
    "client.req_call",
    "client.req_message",
    "client.req_control",
    "client.req_tunnel",
    "timeouts.call",
    "timeouts.control",
    "timeouts.traverse",
    "locks.num_calls",
    "locks.num_current",
    "locks.num_pending",
    "locks.num_failed",
    "total_calls",
    "pending_calls",
    "childwrite_calls",
    "pending_childwrite_calls",
    "memory_used",
    "max_hop_count",
    "total_ro_delegations",
    "total_ro_revokes",
];

/// The values of [`STATS_FIELDS`], in the same order.
fn stats_fields(s: &Statistics) -> [u32; 38] {
    let (n, c, t, l) = (&s.node, &s.client, &s.timeouts, &s.locks);
    [
        s.num_clients,
        s.frozen,
        s.recovering,
        s.num_recoveries,
        s.client_packets_sent,
        s.client_packets_recv,
        s.node_packets_sent,
        s.node_packets_recv,
        s.keepalive_packets_sent,
        s.keepalive_packets_recv,
        n.req_call,
        n.reply_call,
        n.req_dmaster,
        n.reply_dmaster,
        n.reply_error,
        n.req_message,
        n.req_control,
        n.reply_control,
        n.req_tunnel,
        c.req_call,
        c.req_message,
        c.req_control,
        c.req_tunnel,
        t.call,
        t.control,
        t.traverse,
        l.num_calls,
        l.num_current,
        l.num_pending,
        l.num_failed,
        s.total_calls,
        s.pending_calls,
        s.childwrite_calls,
        s.pending_childwrite_calls,
        s.memory_used,
        s.max_hop_count,
        s.total_ro_delegations,
        s.total_ro_revokes,
    ]
}

/// Mean of a latency counter, 0 with no samples.
fn avg(l: &LatencyCounter) -> f64 {
    if l.num != 0 {
        l.total / l.num as f64
    } else {
        0.0
    }
}

pub fn statistics_machine(s: &Statistics, header: bool, sep: MachineSep<'_>) -> String {
    let sep = sep.0;
    let mut o = String::new();
    if header {
        let _ = write!(o, "CTDB version{sep}");
        let _ = write!(o, "Current time of statistics{sep}");
        let _ = write!(o, "Statistics collected since{sep}");
        for n in STATS_FIELDS {
            let _ = write!(o, "{n}{sep}");
        }
        for what in [
            "reclock_ctdbd",
            "reclock_recd",
            "call",
            "lockwait",
            "childwrite",
        ] {
            for k in ["num", "min", "avg", "max"] {
                let _ = write!(o, "{k}_{what}_latency{sep}");
            }
        }
        o.push('\n');
    }
    let _ = write!(o, "{}{sep}", wire::CTDB_PROTOCOL);
    let _ = write!(o, "{}{sep}", s.statistics_current_time.tv_sec as u32);
    let _ = write!(o, "{}{sep}", s.statistics_start_time.tv_sec as u32);
    for v in &stats_fields(s) {
        let _ = write!(o, "{v}{sep}");
    }
    let lat = |o: &mut String, l: &LatencyCounter, signed: bool| {
        if signed {
            let _ = write!(o, "{}{sep}", l.num);
        } else {
            let _ = write!(o, "{}{sep}", l.num as u32);
        }
        let _ = write!(o, "{:.6}{sep}{:.6}{sep}{:.6}{sep}", l.min, avg(l), l.max);
    };
    lat(&mut o, &s.reclock_ctdbd, false);
    lat(&mut o, &s.reclock_recd, false);
    lat(&mut o, &s.call_latency, true);
    lat(&mut o, &s.locks.latency, false);
    lat(&mut o, &s.childwrite_latency, true);
    o.push('\n');
    o
}

/// The counter table shared by `statistics` and `dbstatistics`.
fn counter_table(o: &mut String, names: &[&str], values: &[u32]) {
    let mut prefix: Option<&str> = None;
    for (name, v) in names.iter().zip(values) {
        let preflen = match name.find('.') {
            Some(p) => {
                let pre = &name[..p];
                if prefix != Some(pre) {
                    prefix = Some(pre);
                    let _ = writeln!(o, " {pre}");
                }
                p + 1
            }
            None => 0,
        };
        let indent = if preflen > 0 { "    " } else { "" };
        let pad = if preflen > 0 { "" } else { "    " };
        let _ = writeln!(o, " {indent}{:<22}{pad}{:>10}", &name[preflen..], v);
    }
}

fn buckets(o: &mut String, label: &str, b: &[u32; 16]) {
    let _ = write!(o, " {label}:");
    for v in b {
        let _ = write!(o, " {}", *v as i32);
    }
    o.push('\n');
}

fn latency_line(o: &mut String, label: &str, l: &LatencyCounter) {
    let _ = writeln!(
        o,
        " {:<30}     {:.6}/{:.6}/{:.6} sec out of {}",
        label,
        l.min,
        avg(l),
        l.max,
        l.num
    );
}

pub fn statistics(s: &Statistics) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "CTDB version {}", wire::CTDB_PROTOCOL);
    let _ = write!(
        o,
        "Current time of statistics  :                {}",
        sys::ctime(s.statistics_current_time.tv_sec)
    );
    let _ = write!(
        o,
        "Statistics collected since  : {} {}",
        dhms(s.statistics_current_time.tv_sec - s.statistics_start_time.tv_sec),
        sys::ctime(s.statistics_start_time.tv_sec)
    );
    counter_table(&mut o, &STATS_FIELDS, &stats_fields(s));
    buckets(&mut o, "hop_count_buckets", &s.hop_count_bucket);
    buckets(&mut o, "lock_buckets", &s.locks.buckets);
    latency_line(&mut o, "locks_latency      MIN/AVG/MAX", &s.locks.latency);
    latency_line(&mut o, "reclock_ctdbd      MIN/AVG/MAX", &s.reclock_ctdbd);
    latency_line(&mut o, "reclock_recd       MIN/AVG/MAX", &s.reclock_recd);
    latency_line(&mut o, "call_latency       MIN/AVG/MAX", &s.call_latency);
    latency_line(
        &mut o,
        "childwrite_latency MIN/AVG/MAX",
        &s.childwrite_latency,
    );
    o
}

pub fn dbstatistics(name: &str, s: &DbStatistics) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "DB Statistics {name}");
    let names = [
        "db_ro_delegations",
        "db_ro_revokes",
        "locks.num_calls",
        "locks.num_current",
        "locks.num_pending",
        "locks.num_failed",
    ];
    let values = [
        s.db_ro_delegations,
        s.db_ro_revokes,
        s.locks.num_calls,
        s.locks.num_current,
        s.locks.num_pending,
        s.locks.num_failed,
    ];
    counter_table(&mut o, &names, &values);
    buckets(&mut o, "hop_count_buckets", &s.hop_count_bucket);
    buckets(&mut o, "lock_buckets", &s.locks.buckets);
    latency_line(&mut o, "locks_latency      MIN/AVG/MAX", &s.locks.latency);
    latency_line(&mut o, "vacuum_latency     MIN/AVG/MAX", &s.vacuum_latency);
    let hot_keys = &s.hot_keys[..(s.num_hot_keys as usize).min(s.hot_keys.len())];
    let _ = writeln!(o, " Num Hot Keys:     {}", hot_keys.len());
    for k in hot_keys {
        let _ = write!(o, "     Count:{} Key:", k.count as i32);
        for b in k.key {
            let _ = write!(o, "{b:02x}");
        }
        o.push('\n');
    }
    o
}

#[allow(clippy::too_many_arguments)]
pub fn public_ips(
    ips: &[PublicIp],
    infos: &[Option<PublicIpInfo>],
    all: bool,
    pnn: u32,
    machine: bool,
    verbose: bool,
    sep: MachineSep<'_>,
) -> String {
    let sep = sep.0;
    let mut o = String::new();
    if machine {
        let _ = write!(o, "{sep}Public IP{sep}Node{sep}");
        if verbose {
            let _ = writeln!(
                o,
                "ActiveInterfaces{sep}AvailableInterfaces{sep}ConfiguredInterfaces{sep}"
            );
        } else {
            o.push('\n');
        }
    } else if all {
        o.push_str("Public IPs on ALL nodes\n");
    } else {
        let _ = writeln!(o, "Public IPs on node {pnn}");
    }
    for (i, ip) in ips.iter().enumerate() {
        let addr = wire::addr_text(&ip.addr, false);
        if machine {
            let _ = write!(o, "{sep}{addr}{sep}{}{sep}", ip.pnn as i32);
        } else {
            o.push_str(&addr);
        }
        if !verbose {
            if machine {
                o.push('\n');
            } else {
                let _ = writeln!(o, " {}", ip.pnn as i32);
            }
            continue;
        }
        let mut conf: Option<String> = None;
        let mut avail: Option<String> = None;
        let mut active: Option<String> = None;
        if let Some(Some(info)) = infos.get(i) {
            for (j, iface) in info.ifaces.iter().enumerate() {
                conf = Some(match conf {
                    None => wire::iface_name(iface),
                    Some(c) => format!("{c},{}", wire::iface_name(iface)),
                });
                if info.active_idx as usize == j {
                    active = Some(wire::iface_name(iface));
                }
                if iface.link_state == 0 {
                    continue;
                }
                avail = Some(match avail {
                    None => wire::iface_name(iface),
                    Some(a) => format!("{a},{}", wire::iface_name(iface)),
                });
            }
        }
        let (a, v, c) = (
            active.unwrap_or_default(),
            avail.unwrap_or_default(),
            conf.unwrap_or_default(),
        );
        if machine {
            let _ = writeln!(o, "{a}{sep}{v}{sep}{c}{sep}");
        } else {
            let _ = writeln!(
                o,
                " node[{}] active[{a}] available[{v}] configured[{c}]",
                ip.pnn as i32
            );
        }
    }
    o
}

pub fn ipinfo(pnn: u32, info: &PublicIpInfo) -> String {
    let mut o = String::new();
    let addr = wire::addr_text(&info.ip.addr, false);
    let _ = writeln!(o, "Public IP[{addr}] info on node {pnn}");
    let _ = writeln!(
        o,
        "IP:{addr}\nCurrentNode:{}\nNumInterfaces:{}",
        info.ip.pnn,
        info.ifaces.len()
    );
    for (i, iface) in info.ifaces.iter().enumerate() {
        let _ = writeln!(
            o,
            "Interface[{}]: Name:{} Link:{} References:{}{}",
            i + 1,
            wire::iface_name(iface),
            if iface.link_state == 0 { "down" } else { "up" },
            iface.references,
            if i as u32 == info.active_idx {
                " (active)"
            } else {
                ""
            }
        );
    }
    o
}

pub fn ifaces(list: &[Iface], pnn: u32, machine: bool, sep: MachineSep<'_>) -> String {
    let sep = sep.0;
    let mut o = String::new();
    if list.is_empty() {
        let _ = writeln!(o, "No interfaces configured on node {pnn}");
        return o;
    }
    if machine {
        let _ = writeln!(o, "{sep}Name{sep}LinkStatus{sep}References{sep}");
    } else {
        let _ = writeln!(o, "Interfaces on node {pnn}");
    }
    for i in list {
        if machine {
            let _ = writeln!(
                o,
                "{sep}{}{sep}{}{sep}{}{sep}",
                wire::iface_name(i),
                i.link_state,
                i.references
            );
        } else {
            let _ = writeln!(
                o,
                "name:{} link:{} references:{}",
                wire::iface_name(i),
                if i.link_state != 0 { "up" } else { "down" },
                i.references
            );
        }
    }
    o
}

const RUNSTATES: [&str; 7] = [
    "UNKNOWN",
    "INIT",
    "SETUP",
    "FIRST_RECOVERY",
    "STARTUP",
    "RUNNING",
    "SHUTDOWN",
];

pub fn runstate_to_string(r: u32) -> &'static str {
    RUNSTATES.get(r as usize).copied().unwrap_or("UNKNOWN")
}

/// Case-insensitive; 0 (UNKNOWN) if not a runstate name.
pub fn runstate_from_string(s: &str) -> u32 {
    RUNSTATES
        .iter()
        .position(|r| r.eq_ignore_ascii_case(s))
        .unwrap_or(0) as u32
}

/// Upstream's log-level table: (level, name).
const LEVELS: [(i32, &str); 11] = [
    (0, "ERROR"),
    (1, "WARNING"),
    (2, "WARNING"),
    (3, "NOTICE"),
    (4, "NOTICE"),
    (5, "INFO"),
    (6, "INFO"),
    (7, "INFO"),
    (8, "INFO"),
    (9, "INFO"),
    (10, "DEBUG"),
];

/// `debug_level_parse()`: a number 0..=10, or a (prefix of a) level name.
pub fn debug_level_parse(s: &str) -> Option<i32> {
    if s.starts_with(|c: char| c.is_ascii_digit()) {
        let v = atoi(s);
        return if (0..LEVELS.len() as i32).contains(&v) {
            Some(v)
        } else {
            None
        };
    }
    LEVELS
        .iter()
        .find(|(_, name)| name.len() >= s.len() && name[..s.len()].eq_ignore_ascii_case(s))
        .map(|(l, _)| *l)
}

pub fn debug_level_to_string(level: i32) -> &'static str {
    LEVELS
        .iter()
        .find(|(l, _)| *l == level)
        .map(|(_, n)| *n)
        .unwrap_or("UNKNOWN")
}

/// C `atoi()`: leading whitespace, sign, digits; 0 if none.
pub fn atoi(s: &str) -> i32 {
    let t = s.trim_start();
    let (neg, rest) = match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    let mut v: i64 = 0;
    for c in rest.bytes() {
        if !c.is_ascii_digit() {
            break;
        }
        v = (v * 10 + (c - b'0') as i64).min(i64::from(u32::MAX) * 2);
    }
    let v = if neg { -v } else { v };
    v as i32
}

/// Samba's `smb_strtoul()`: `strtoul` that rejects a '-' sign and strings
/// with no digits; with `full`, also trailing garbage.
pub fn smb_strtoul(s: &str, base: u32, full: bool) -> Option<u64> {
    if s.contains('-') {
        return None;
    }
    let t = s.trim_start();
    let t = t.strip_prefix('+').unwrap_or(t);
    let (radix, digits) = match base {
        0 => {
            if (t.starts_with("0x") || t.starts_with("0X"))
                && t[2..].starts_with(|c: char| c.is_ascii_hexdigit())
            {
                (16, &t[2..])
            } else if t.starts_with('0') {
                (8, t)
            } else {
                (10, t)
            }
        }
        16 => (
            16,
            t.strip_prefix("0x")
                .or_else(|| t.strip_prefix("0X"))
                .unwrap_or(t),
        ),
        b => (b, t),
    };
    let end = digits
        .find(|c: char| !c.is_digit(radix))
        .unwrap_or(digits.len());
    if end == 0 {
        return None;
    }
    if full && end != digits.len() {
        return None;
    }
    u64::from_str_radix(&digits[..end], radix).ok()
}

fn isprint(b: u8) -> bool {
    (0x20..0x7f).contains(&b)
}

/// Upstream's `dump_tdb_data()`.
pub fn dump_data(name: &str, val: &[u8]) -> String {
    let mut o = format!("{name}({}) = \"", val.len());
    for &b in val {
        if isprint(b) && b != b'"' && b != b'\\' {
            o.push(b as char);
        } else {
            let _ = write!(o, "\\{b:02X}");
        }
    }
    o.push_str("\"\n");
    o
}

pub fn dump_ltdb_header(h: &LtdbHeader) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "dmaster: {}", h.dmaster);
    let _ = writeln!(o, "rsn: {}", h.rsn);
    let _ = write!(o, "flags: 0x{:08x}", h.flags);
    for (bit, name) in [
        (0x0001_0000, " MIGRATED_WITH_DATA"),
        (0x0002_0000, " VACUUM_MIGRATED"),
        (0x0004_0000, " AUTOMATIC"),
        (0x0100_0000, " RO_HAVE_DELEGATIONS"),
        (0x0200_0000, " RO_HAVE_READONLY"),
        (0x0400_0000, " RO_REVOKING_READONLY"),
        (0x0800_0000, " RO_REVOKE_COMPLETE"),
    ] {
        if h.flags & bit != 0 {
            o.push_str(name);
        }
    }
    o.push('\n');
    o
}

/// One record as `catdb`, `cattdb` and `dumpdbbackup` print it.
pub fn dump_record(key: &[u8], h: &LtdbHeader, data: &[u8]) -> String {
    let mut o = dump_data("key", key);
    o.push_str(&dump_ltdb_header(h));
    o.push_str(&dump_data("data", data));
    o.push('\n');
    o
}

/// The tool's nodes-file reader: blank lines skipped, `#` lines are
/// deleted nodes (0.0.0.0); an unparsable address is returned as Err.
pub fn parse_nodes_file(text: &str) -> Result<NodeMap, String> {
    let mut lines: Vec<&str> = text.split('\n').collect();
    if text.ends_with('\n') {
        lines.pop();
    }
    while lines.last() == Some(&"") {
        lines.pop();
    }
    let mut map = NodeMap::default();
    for line in lines {
        let mut node = line.trim_start_matches([' ', '\t']);
        while node.len() > 1 && (node.ends_with(' ') || node.ends_with('\t')) {
            node = &node[..node.len() - 1];
        }
        if node.is_empty() {
            continue;
        }
        let (addr, flags) = if node.starts_with('#') {
            ("0.0.0.0", wire::NODE_FLAGS_DELETED)
        } else {
            (node, 0)
        };
        let addr = SockAddr::parse_ip(addr).ok_or_else(|| addr.to_string())?;
        map.nodes.push(wire::NodeAndFlags {
            pnn: map.nodes.len() as u32,
            flags,
            addr,
        });
    }
    Ok(map)
}

pub fn nodemap_identical(a: &NodeMap, b: &NodeMap) -> bool {
    a.nodes.len() == b.nodes.len()
        && a.nodes
            .iter()
            .zip(&b.nodes)
            .all(|(x, y)| x.pnn == y.pnn && x.flags == y.flags && x.addr.ip() == y.addr.ip())
}

#[derive(Default)]
pub struct Printed {
    pub stdout: String,
    pub stderr: String,
}

/// Upstream's `check_node_file_changes()`: (output, reload, failed).
pub fn check_node_file_changes(nm: &NodeMap, fnm: &NodeMap) -> (Printed, bool, bool) {
    let mut p = Printed::default();
    let mut reload = false;
    let mut failed = false;
    let del = |n: &wire::NodeAndFlags| n.flags & wire::NODE_FLAGS_DELETED != 0;
    let mut i = 0;
    while i < nm.nodes.len() {
        let n = &nm.nodes[i];
        if i >= fnm.nodes.len() {
            let _ = writeln!(
                p.stderr,
                "Node {} ({}) missing from nodes file",
                n.pnn,
                wire::addr_text(&n.addr, false)
            );
            failed = true;
            i += 1;
            continue;
        }
        let f = &fnm.nodes[i];
        if del(n) && del(f) {
        } else if !del(n) && !del(f) {
            if !n.addr.same_ip(&f.addr) {
                let _ = writeln!(
                    p.stderr,
                    "Node {} has changed IP address (was {}, now {})",
                    n.pnn,
                    wire::addr_text(&n.addr, false),
                    wire::addr_text(&f.addr, false)
                );
                failed = true;
            } else if n.flags & wire::NODE_FLAGS_DISCONNECTED != 0 {
                let _ = writeln!(
                    p.stderr,
                    "WARNING: Node {} is disconnected. You MUST fix this node manually!",
                    n.pnn
                );
            }
        } else if del(f) {
            let _ = writeln!(p.stdout, "Node {} is DELETED", n.pnn);
            reload = true;
            if n.flags & wire::NODE_FLAGS_DISCONNECTED == 0 {
                let _ = writeln!(p.stderr, "ERROR: Node {} is still connected", n.pnn);
                failed = true;
            }
        } else if del(n) {
            let _ = writeln!(p.stdout, "Node {} is UNDELETED", n.pnn);
            reload = true;
        }
        i += 1;
    }
    if failed {
        p.stderr
            .push_str("ERROR: Nodes will not be reloaded due to previous error\n");
        return (p, reload, true);
    }
    while i < fnm.nodes.len() {
        let _ = writeln!(p.stdout, "Node {} is NEW", fnm.nodes[i].pnn);
        reload = true;
        i += 1;
    }
    (p, reload, false)
}

/// A `ctdb backupdb` file: header (version 3) and record buffers.
pub struct Backup {
    pub timestamp: i64,
    pub flags: u64,
    pub nrec: u64,
    pub name: String,
    /// Record buffers in wire form (db_id, count, records).
    pub buffers: Vec<Vec<u8>>,
}

#[derive(Debug)]
pub enum BackupError {
    Version(u64),
    Truncated,
}

pub const BACKUP_HEADER_LEN: usize = 5 * 8 + 64;

/// The 104-byte `struct db_header` of a backup file.
pub fn backup_header(timestamp: i64, flags: u64, nbuf: u64, nrec: u64, name: &str) -> Vec<u8> {
    let mut v = Vec::with_capacity(BACKUP_HEADER_LEN);
    v.extend_from_slice(&3u64.to_ne_bytes());
    v.extend_from_slice(&timestamp.to_ne_bytes());
    v.extend_from_slice(&flags.to_ne_bytes());
    v.extend_from_slice(&nbuf.to_ne_bytes());
    v.extend_from_slice(&nrec.to_ne_bytes());
    let mut n = [0u8; 64];
    let b = name.as_bytes();
    let len = b.len().min(63);
    n[..len].copy_from_slice(&b[..len]);
    v.extend_from_slice(&n);
    v
}

impl Backup {
    pub fn parse(data: &[u8]) -> Result<Backup, BackupError> {
        let u64_at = |o: usize| -> Result<u64, BackupError> {
            data.get(o..o + 8)
                .map(|b| u64::from_ne_bytes(b.try_into().unwrap_or([0; 8])))
                .ok_or(BackupError::Truncated)
        };
        let version = if data.len() < BACKUP_HEADER_LEN {
            // A short read leaves the rest of upstream's header zeroed.
            let mut h = data.to_vec();
            h.resize(BACKUP_HEADER_LEN, 0);
            u64::from_ne_bytes(h[0..8].try_into().unwrap_or([0; 8]))
        } else {
            u64_at(0)?
        };
        if version != 3 {
            return Err(BackupError::Version(version));
        }
        if data.len() < BACKUP_HEADER_LEN {
            return Err(BackupError::Truncated);
        }
        let timestamp = u64_at(8)? as i64;
        let flags = u64_at(16)?;
        let nbuf = u64_at(24)?;
        let nrec = u64_at(32)?;
        let raw_name = &data[40..40 + 63];
        let end = raw_name.iter().position(|&b| b == 0).unwrap_or(63);
        let name = String::from_utf8_lossy(&raw_name[..end]).into_owned();
        let mut off = BACKUP_HEADER_LEN;
        let mut buffers = Vec::new();
        for _ in 0..nbuf {
            let hdr = data.get(off..off + 16).ok_or(BackupError::Truncated)?;
            let buflen = u64::from_ne_bytes(hdr[8..16].try_into().unwrap_or([0; 8])) as usize;
            let body = data
                .get(off + 16..off + 16 + buflen)
                .ok_or(BackupError::Truncated)?;
            let mut b = hdr[0..8].to_vec();
            b.extend_from_slice(body);
            buffers.push(b);
            off += 16 + buflen;
        }
        Ok(Backup {
            timestamp,
            flags,
            nrec,
            name,
            buffers,
        })
    }
}

/// A record as (key, data).
pub type KeyData = (Vec<u8>, Vec<u8>);

/// The (key, data) pairs of a record buffer in wire form (bytes after
/// the records are ignored).
pub fn rec_buffer_records(buf: &[u8]) -> Result<Vec<KeyData>, ctdb_protocol::ProtocolError> {
    let recs = RecBuffer::pull(&mut ctdb_protocol::wire::Reader::new(buf))?;
    Ok(recs
        .iter()
        .map(|r| (r.key.to_vec(), r.data.to_vec()))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_and_rows() {
        assert_eq!(pretty_print_flags(0), "OK");
        assert_eq!(pretty_print_flags(0x2), "UNHEALTHY");
        assert_eq!(pretty_print_flags(0x9), "DISCONNECTED|BANNED|INACTIVE");
        assert_eq!(machine_row("|", &["a", "b"]), "|a|b|");
        assert_eq!(machine_row("", &["a", "b"]), "ab");
    }

    #[test]
    fn debug_levels() {
        assert_eq!(debug_level_parse("e"), Some(0));
        assert_eq!(debug_level_parse("notice"), Some(3));
        assert_eq!(debug_level_parse("4"), Some(4));
        assert_eq!(debug_level_parse("11"), None);
        assert_eq!(debug_level_parse("foo"), None);
        assert_eq!(debug_level_parse(""), Some(0));
        assert_eq!(debug_level_to_string(7), "INFO");
        assert_eq!(debug_level_to_string(42), "UNKNOWN");
    }

    #[test]
    fn strtoul_rules() {
        assert_eq!(smb_strtoul("0x10", 0, false), Some(16));
        assert_eq!(smb_strtoul("10abc", 0, false), Some(10));
        assert_eq!(smb_strtoul("10abc", 10, true), None);
        assert_eq!(smb_strtoul("-1", 0, false), None);
        assert_eq!(smb_strtoul("abc", 0, false), None);
        assert_eq!(atoi(" 42x"), 42);
        assert_eq!(atoi("x"), 0);
    }

    #[test]
    fn nodes_file() {
        let m = parse_nodes_file("127.0.0.1\n#127.0.0.2\n\n 127.0.0.3 \n\n").unwrap();
        assert_eq!(m.nodes.len(), 3);
        assert_eq!(m.nodes[1].flags, wire::NODE_FLAGS_DELETED);
        assert_eq!(wire::addr_text(&m.nodes[2].addr, false), "127.0.0.3");
        assert_eq!(parse_nodes_file("1.2.3\n").unwrap_err(), "1.2.3");
    }

    #[test]
    fn record_dump() {
        let h = LtdbHeader {
            rsn: 3,
            dmaster: 1,
            reserved1: 0,
            flags: 0x0001_0000,
        };
        assert_eq!(
            dump_record(b"k\"", &h, b"\x01v"),
            "key(2) = \"k\\22\"\ndmaster: 1\nrsn: 3\nflags: 0x00010000 MIGRATED_WITH_DATA\ndata(2) = \"\\01v\"\n\n"
        );
    }

    #[test]
    fn counter_table_layout() {
        let mut o = String::new();
        counter_table(&mut o, &["num_clients", "node.req_call"], &[5, 7]);
        assert_eq!(
            o,
            " num_clients                        5\n node\n     req_call                       7\n"
        );
    }
}
