//! Must show (public addresses): a 3-node cluster in test mode with six
//! public addresses on 127.x (interface `lo`, never configured on it: in
//! test mode only event scripts would, and ours only records).
//!
//! With the stock CLI: every address is hosted exactly once and balanced
//! (`ctdb ip all`); a legacy event script records the arguments of
//! `takeip` / `releaseip` / `updateip`, which must be upstream's
//! (`IFACE IP MASKBITS`); `ipinfo` shows the interface in use;
//! `addtickle` / `gettickles` / `deltickle` keep the hosting node's
//! connection list; `disable` / `stop` of a node, or its interface's link
//! going down (`setifacelink`; the node shows PARTIALLYONLINE), moves its
//! addresses away and `enable` / `continue` / link up gives it its share
//! back; `moveip` moves one address (released on the old node before the
//! new one takes it); `addip`, `delip` + `ipreallocate` and `reloadips`
//! change the set; kill -9 of a node moves its addresses to the survivors.
//!
//! Runs against `ctdb_tests::must_show::ctdbd_under_test()` (ours unless
//! `CTDB_TEST_CTDBD` names another; Debian's passes it too).

use std::collections::BTreeMap;
use std::fs;
use std::net::Ipv4Addr;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use ctdb_tests::must_show::{
    cli, ctdb_ok, ctdbd_or_skip, fail_with_logs, must, wait_for, TestCluster,
};
use ctdb_tests::{procs, sys};

const N: usize = 3;
const LIMIT: Duration = Duration::from_secs(20);
const POLL: Duration = Duration::from_millis(250);

/// The recording event script (`$1` is the event, then its arguments).
fn script(log: &std::path::Path) -> String {
    format!(
        "#!/bin/sh\ncase \"$1\" in\n\
         takeip|releaseip|updateip) echo \"$(date +%s%N) $*\" >>'{}' ;;\n\
         esac\nexit 0\n",
        log.display()
    )
}

/// One recorded event: time (ns), event, arguments.
#[derive(Debug, Clone)]
struct Ev {
    t: u128,
    name: String,
    args: Vec<String>,
}

fn events(c: &TestCluster, i: usize) -> Vec<Ev> {
    let p = c.base(i).expect("base").join("ip-events.log");
    fs::read_to_string(p)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            Some(Ev {
                t: w.next()?.parse().ok()?,
                name: w.next()?.to_string(),
                args: w.map(str::to_string).collect(),
            })
        })
        .collect()
}

/// Address → pnn, from `ctdb ip` (`ctdb ip all` when `all`) on node `from`.
fn ip_map(c: &TestCluster, from: usize, all: bool) -> Result<BTreeMap<String, i64>, String> {
    let args: &[&str] = if all { &["ip", "all"] } else { &["ip"] };
    let out = ctdb_ok(c, from, args)?;
    let mut m = BTreeMap::new();
    for l in out.lines().skip(1) {
        let w: Vec<&str> = l.split_whitespace().collect();
        if w.len() != 2 {
            return Err(format!("unexpected `ctdb ip` line {l:?} in\n{out}"));
        }
        let pnn = w[1].parse().map_err(|_| format!("bad pnn in {l:?}"))?;
        if m.insert(w[0].to_string(), pnn).is_some() {
            return Err(format!("{} listed twice:\n{out}", w[0]));
        }
    }
    Ok(m)
}

/// Waits until `ctdb ip` on `from` lists exactly `want`, each hosted by
/// one of `hosts`; with `balanced`, the counts per host differing by at
/// most one (LCP2 promises that only when every node took part from an
/// empty start or a node came back with none: after deletions it moves
/// nothing).
fn wait_hosted(
    c: &TestCluster,
    from: usize,
    all: bool,
    want: &[String],
    hosts: &[i64],
    balanced: bool,
    what: &str,
) -> BTreeMap<String, i64> {
    let r = wait_for(what, LIMIT, POLL, || {
        let m = ip_map(c, from, all)?;
        let keys: Vec<&String> = m.keys().collect();
        let mut w: Vec<&String> = want.iter().collect();
        w.sort();
        if keys != w {
            return Err(format!("addresses {keys:?}, want {w:?}"));
        }
        let mut count: BTreeMap<i64, usize> = hosts.iter().map(|h| (*h, 0)).collect();
        for (a, p) in &m {
            match count.get_mut(p) {
                Some(n) => *n += 1,
                None => return Err(format!("{a} on node {p}, want one of {hosts:?}: {m:?}")),
            }
        }
        let (lo, hi) = (count.values().min(), count.values().max());
        if balanced && hi.unwrap_or(&0) - lo.unwrap_or(&0) > 1 {
            return Err(format!("unbalanced: {count:?}"));
        }
        Ok(m)
    });
    let m = must(c, r);
    // Address (last two octets) → node, for the log.
    let short: Vec<String> = m
        .iter()
        .map(|(a, p)| format!("{}={p}", a.splitn(3, '.').nth(2).unwrap_or(a)))
        .collect();
    eprintln!("  {what}: {}", short.join(" "));
    m
}

fn on(m: &BTreeMap<String, i64>, pnn: i64) -> Vec<String> {
    m.iter()
        .filter(|(_, p)| **p == pnn)
        .map(|(a, _)| a.clone())
        .collect()
}

/// Node `i` recorded `name lo ADDR 24` for each of `addrs` after `since`.
fn check_events(c: &TestCluster, i: usize, name: &str, addrs: &[String], since: u128) {
    let evs = events(c, i);
    for a in addrs {
        let found = evs.iter().any(|e| {
            e.t >= since && e.name == name && e.args == ["lo".to_string(), a.clone(), "24".into()]
        });
        if !found {
            fail_with_logs(
                c,
                &format!("node {i}: no `{name} lo {a} 24` since {since}: {evs:?}"),
            );
        }
    }
}

fn now_ns() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

fn write_addresses(c: &TestCluster, addrs: &[String]) {
    let text: String = addrs.iter().map(|a| format!("{a}/24 lo\n")).collect();
    for i in 0..N {
        let p = c.base(i).expect("base").join("public_addresses");
        fs::write(&p, &text).expect("write public_addresses");
    }
}

#[test]
fn public_addresses_fail_over() {
    let name = "public_addresses_fail_over";
    let Some(ctdbd) = ctdbd_or_skip(name) else {
        return;
    };
    let t0 = Instant::now();
    let mut c = TestCluster::create(N, &ctdbd, |_| {}).expect("cluster of 3");
    // Public addresses in 127.X.31/24 and 127.X.32/24, X the block's own
    // octet (100..250), so no other test's addresses meet them.
    let x = c.addr(0).expect("addr").octets()[2];
    let ip = |net: u8, host: u8| Ipv4Addr::new(127, x, net, host).to_string();
    let mut addrs: Vec<String> = (1..=3).flat_map(|h| [ip(31, h), ip(32, h)]).collect();
    write_addresses(&c, &addrs);
    for i in 0..N {
        let base: PathBuf = c.base(i).expect("base");
        let s = base.join("events").join("legacy").join("01.record.script");
        fs::write(&s, script(&base.join("ip-events.log"))).expect("write script");
        fs::set_permissions(&s, fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    c.start_all().expect("start");
    if let Err(e) = c.wait_all_ok(cli(), Duration::from_secs(60)) {
        fail_with_logs(&c, &format!("cluster did not form: {e}"));
    }
    let all_nodes = [0, 1, 2];
    let m = wait_hosted(&c, 0, true, &addrs, &all_nodes, true, "addresses hosted");
    for p in 0..N as i64 {
        check_events(&c, p as usize, "takeip", &on(&m, p), 0);
    }
    eprintln!("{name}: hosted and balanced at {:?}", t0.elapsed());

    // GET_PUBLIC_IP_INFO on the node hosting an address: its node, its one
    // interface, up, carrying that node's two addresses, in use.
    let (a, p) = m
        .iter()
        .next()
        .map(|(a, p)| (a.clone(), *p))
        .expect("an address");
    let pn = p.to_string();
    let info = must(&c, ctdb_ok(&c, 0, &["-n", &pn, "ipinfo", &a]));
    for want in [
        format!("Public IP[{a}] info on node {p}"),
        format!("CurrentNode:{p}"),
        "NumInterfaces:1".to_string(),
        "Interface[1]: Name:lo Link:up References:2 (active)".to_string(),
    ] {
        if !info.contains(&want) {
            fail_with_logs(&c, &format!("ipinfo {a} lacks {want:?}:\n{info}"));
        }
    }

    // Tickles (TCP_ADD_DELAYED_UPDATE, GET_TCP_TICKLE_LIST, TCP_REMOVE) on
    // the node hosting an address.
    let (a, p) = m
        .iter()
        .next()
        .map(|(a, p)| (a.clone(), *p))
        .expect("an address");
    let (client, server) = ("192.0.2.7:40000".to_string(), format!("{a}:445"));
    let pn = p.to_string();
    must(
        &c,
        ctdb_ok(&c, 0, &["-n", &pn, "addtickle", &client, &server]),
    );
    let t = must(&c, ctdb_ok(&c, 0, &["-n", &pn, "gettickles", &a]));
    let want = format!("SRC: {client}   DST: {server}");
    if !t.contains("Num connections: 1") || !t.contains(&want) {
        fail_with_logs(&c, &format!("gettickles {a} on node {p}:\n{t}"));
    }
    must(
        &c,
        ctdb_ok(&c, 0, &["-n", &pn, "deltickle", &client, &server]),
    );
    let t = must(&c, ctdb_ok(&c, 0, &["-n", &pn, "gettickles", &a]));
    if !t.contains("Num connections: 0") {
        fail_with_logs(&c, &format!("gettickles {a} after deltickle:\n{t}"));
    }

    // disable / enable of node 1.
    let since = now_ns();
    let had = on(&m, 1);
    must(&c, ctdb_ok(&c, 0, &["disable", "-n", "1"]));
    wait_hosted(&c, 0, true, &addrs, &[0, 2], true, "node 1 disabled");
    check_events(&c, 1, "releaseip", &had, since);
    must(&c, ctdb_ok(&c, 0, &["enable", "-n", "1"]));
    let m = wait_hosted(&c, 0, true, &addrs, &all_nodes, true, "node 1 enabled");
    eprintln!("{name}: disable/enable at {:?}", t0.elapsed());

    // stop / continue of node 2.
    let since = now_ns();
    let had = on(&m, 2);
    must(&c, ctdb_ok(&c, 1, &["stop", "-n", "2"]));
    wait_hosted(&c, 1, true, &addrs, &[0, 1], true, "node 2 stopped");
    check_events(&c, 2, "releaseip", &had, since);
    must(&c, ctdb_ok(&c, 1, &["continue", "-n", "2"]));
    let m = wait_hosted(&c, 1, true, &addrs, &all_nodes, true, "node 2 continued");
    eprintln!("{name}: stop/continue at {:?}", t0.elapsed());

    // Interface link down on node 0: PARTIALLYONLINE... here all of its
    // interfaces, so it can host nothing; link up gives it its share back.
    let since = now_ns();
    let had = on(&m, 0);
    must(&c, ctdb_ok(&c, 0, &["setifacelink", "lo", "down"]));
    let ifaces = must(&c, ctdb_ok(&c, 0, &["ifaces", "-X"]));
    if !ifaces.lines().any(|l| l.starts_with("|lo|0|")) {
        fail_with_logs(&c, &format!("ifaces after link down:\n{ifaces}"));
    }
    wait_hosted(&c, 1, true, &addrs, &[1, 2], true, "node 0 link down");
    check_events(&c, 0, "releaseip", &had, since);
    let st = must(&c, ctdb_ok(&c, 1, &["status"]));
    if !st
        .lines()
        .any(|l| l.starts_with("pnn:0 ") && l.contains("PARTIALLYONLINE"))
    {
        fail_with_logs(&c, &format!("node 0 not PARTIALLYONLINE:\n{st}"));
    }
    must(&c, ctdb_ok(&c, 0, &["setifacelink", "lo", "up"]));
    let m = wait_hosted(&c, 1, true, &addrs, &all_nodes, true, "node 0 link up");
    eprintln!("{name}: setifacelink at {:?}", t0.elapsed());

    // moveip: one of node 0's addresses to node 1.
    let a = on(&m, 0).first().cloned().expect("node 0 hosts one");
    let since = now_ns();
    must(&c, ctdb_ok(&c, 2, &["moveip", &a, "1"]));
    must(
        &c,
        wait_for("moveip done", LIMIT, POLL, || {
            match ip_map(&c, 2, true)?.get(&a) {
                Some(1) => Ok(()),
                other => Err(format!("{a} on {other:?}")),
            }
        }),
    );
    check_events(&c, 0, "releaseip", std::slice::from_ref(&a), since);
    check_events(&c, 1, "takeip", std::slice::from_ref(&a), since);
    let released = events(&c, 0)
        .into_iter()
        .filter(|e| e.t >= since && e.name == "releaseip" && e.args[1] == a)
        .map(|e| e.t)
        .min();
    let taken = events(&c, 1)
        .into_iter()
        .filter(|e| e.t >= since && e.name == "takeip" && e.args[1] == a)
        .map(|e| e.t)
        .min();
    if released >= taken {
        fail_with_logs(
            &c,
            &format!("{a}: released at {released:?}, taken at {taken:?}"),
        );
    }
    eprintln!("{name}: moveip at {:?}", t0.elapsed());

    // reloadips: the files gain one address and lose another. (It also
    // ends the 2 * 10 s without takeover runs `moveip` asked for.)
    addrs.push(ip(34, 1));
    addrs.retain(|a| a != &ip(32, 3));
    write_addresses(&c, &addrs);
    must(&c, ctdb_ok(&c, 0, &["reloadips", "all"]));
    wait_hosted(&c, 0, true, &addrs, &all_nodes, false, "reloaded addresses");
    eprintln!("{name}: reloadips at {:?}", t0.elapsed());

    // addip on every node; delip + ipreallocate.
    let added = ip(33, 1);
    for i in 0..N {
        must(&c, ctdb_ok(&c, i, &["addip", &format!("{added}/24"), "lo"]));
    }
    addrs.push(added.clone());
    wait_hosted(
        &c,
        0,
        true,
        &addrs,
        &all_nodes,
        false,
        "added address hosted",
    );
    let gone = ip(31, 2);
    for i in 0..N {
        must(&c, ctdb_ok(&c, i, &["delip", &gone]));
    }
    must(&c, ctdb_ok(&c, 0, &["ipreallocate"]));
    addrs.retain(|a| a != &gone);
    let m = wait_hosted(
        &c,
        0,
        true,
        &addrs,
        &all_nodes,
        false,
        "deleted address gone",
    );
    eprintln!("{name}: addip/delip at {:?}", t0.elapsed());

    // kill -9 of node 2 (every process of the node at once).
    let base = c.base(2).expect("base");
    for p in procs::processes_under(&base) {
        sys::send_signal(p, sys::SIGKILL);
    }
    c.stop_node(2).expect("reap node 2");
    for from in [0, 1] {
        let m2 = wait_hosted(&c, from, false, &addrs, &[0, 1], false, "node 2 killed");
        // Addresses the survivors held stay where they were.
        for (a, p) in &m {
            if *p != 2 && m2.get(a) != Some(p) {
                fail_with_logs(&c, &format!("{a} moved from {p} to {:?}", m2.get(a)));
            }
        }
    }
    eprintln!("{name}: kill -9 at {:?}", t0.elapsed());

    c.stop_all().expect("stop every daemon");
    assert!(c.processes().is_empty(), "left: {:?}", c.processes());
    eprintln!("{name}: done in {:?}", t0.elapsed());
}
