//! Three of our ctdbd as one cluster: one leader elected and agreed on
//! by all, recoveries that really move records between nodes (volatile
//! databases rebuilt from every node's copies, persistent ones from the
//! node with the highest sequence number), leadership moving off a
//! stopped leader, the cluster lock held by the leader only, and a killed
//! node's departure and return (catching up on persistent records written
//! while it was down), all seen through Debian's stock `ctdb` tool.
//!
//! Each test runs its own cluster on a reserved 127.61.Y.0/24 block
//! ([`cluster_util`]), in test mode without real-time scheduling, with
//! `RerecoveryTimeout` lowered so the steps do not wait 10 s each.

mod cluster_util;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Instant;

use cluster_util::{Cluster, CTDB};

const TUNABLES: &[(&str, u32)] = &[("RerecoveryTimeout", 2)];

fn have_tools() -> bool {
    let ok = Path::new(CTDB).exists() && Path::new("/usr/bin/tdbdump").exists();
    if !ok {
        eprintln!("skipped: Debian's ctdb and tdb-tools are not installed");
    }
    ok
}

/// The keys of a local database file, by `tdbdump`.
fn local_keys(file: &Path) -> BTreeSet<String> {
    let out = std::process::Command::new("/usr/bin/tdbdump")
        .arg(file)
        .output()
        .expect("tdbdump");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.trim().strip_prefix("key("))
        .filter_map(|l| l.split_once(") = \"").map(|(_, k)| k.trim_end_matches('"')))
        .map(str::to_string)
        .collect()
}

/// The generation ctdb reports changes after `ctdb recover`.
fn recover(c: &Cluster, via: usize, before: u32) -> u32 {
    let (ok, out) = c.ctdb_t(via, 40, &["recover"]);
    assert!(ok, "ctdb recover: {out}\n{}", c.logs());
    let g = c.status(via).generation.unwrap_or(0);
    assert_ne!(g, before, "generation unchanged by ctdb recover");
    g
}

#[test]
fn records_survive_recovery_on_every_node() {
    if !have_tools() {
        return;
    }
    let started = Instant::now();
    let mut c = Cluster::new("clrec-records", 3, TUNABLES, false);
    c.start_all();
    let (leader, g0) = c.wait_agreed("3 nodes OK, one leader", &[0, 1, 2], "", 60);
    eprintln!("leader {leader}, generation {g0}");

    // Databases attached on node 0 only: the attach broadcast (or else
    // the recovery, which attaches a database a node lacks) puts them on
    // the other nodes.
    c.ok(0, &["attach", "vol.tdb"]);
    c.ok(0, &["attach", "pers.tdb", "persistent"]);
    c.ok(0, &["attach", "g_lock.tdb"]);
    let g1 = recover(&c, 1, g0);
    for i in 0..3 {
        let map = c.ok(i, &["getdbmap"]);
        let has = |name: &str, persistent: bool| {
            map.lines().any(|l| {
                l.contains(&format!("name:{name} ")) && l.ends_with("PERSISTENT") == persistent
            })
        };
        assert!(
            has("vol.tdb", false) && has("pers.tdb", true),
            "node {i}: {map}"
        );
    }

    // Volatile records written on three different nodes.
    for i in 0..3 {
        c.ok(
            i,
            &[
                "writekey",
                "vol.tdb",
                &format!("key{i}"),
                &format!("value{i}"),
            ],
        );
    }
    // A persistent record stored through node 2.
    c.ok(2, &["pstore", "pers.tdb", "pkey", "pvalue"]);
    let g2 = recover(&c, 0, g1);
    let (_, g3) = c.wait_agreed("all OK after recover", &[0, 1, 2], "", 30);
    assert_eq!(g2, g3);

    for i in 0..3 {
        // Recovery pushed every record to every node's own file.
        let vfile = c.base(i).join(format!("db/volatile/vol.tdb.{i}"));
        let keys = local_keys(&vfile);
        for k in ["key0", "key1", "key2"] {
            assert!(keys.contains(k), "node {i} lacks {k} locally: {keys:?}");
        }
        let pfile = c.base(i).join(format!("db/persistent/pers.tdb.{i}"));
        assert!(
            local_keys(&pfile).contains("pkey"),
            "node {i} lacks the persistent record"
        );
        for k in 0..3 {
            let out = c.ok(i, &["readkey", "vol.tdb", &format!("key{k}")]);
            assert!(out.contains(&format!("value{k}")), "node {i} key{k}: {out}");
        }
        let out = c.ok(i, &["pfetch", "pers.tdb", "pkey"]);
        assert!(out.contains("pvalue"), "node {i} pfetch: {out}");
    }
    eprintln!("test took {:.1} s", started.elapsed().as_secs_f64());
}

#[test]
fn leadership_moves_and_nodes_rejoin() {
    if !have_tools() {
        return;
    }
    let started = Instant::now();
    let mut c = Cluster::new("clrec-leader", 3, TUNABLES, false);
    c.start_all();
    let (l0, g0) = c.wait_agreed("3 nodes OK, one leader", &[0, 1, 2], "", 60);

    // Stopping the leader makes another node leader.
    let _ = c.ctdb_t(l0 as usize, 30, &["-T", "10", "stop"]);
    let rest: Vec<usize> = (0..3).filter(|&i| i != l0 as usize).collect();
    let (l1, g1) = c.wait_agreed("a new leader after stop", &rest, "STOPPED", 40);
    assert_ne!(l1, l0, "the stopped node still leads");
    assert_ne!(g1, g0);
    let _ = c.ctdb_t(l0 as usize, 30, &["-T", "10", "continue"]);
    let (_, g2) = c.wait_agreed("all OK after continue", &[0, 1, 2], "", 40);

    for i in 0..3 {
        c.ok(i, &["attach", "pers.tdb", "persistent"]);
        c.ok(i, &["attach", "g_lock.tdb"]);
    }

    // kill -9 of a non-leader: the others recover without it.
    let victim = (0..3).find(|&i| i != l1 as usize).unwrap();
    c.kill9(victim);
    let up: Vec<usize> = (0..3).filter(|&i| i != victim).collect();
    let (l3, g3) = c.wait_agreed("recovered without the killed node", &up, "DISCONNECTED", 40);
    assert_ne!(g3, g2, "no recovery after the node died");
    assert_eq!(l3, l1, "leadership moved although the leader lives");

    // A persistent record stored while it is down (so only the live
    // nodes have it, at a higher sequence number).
    c.ok(l1 as usize, &["pstore", "pers.tdb", "while-down", "value"]);
    let pfile = c
        .base(victim)
        .join(format!("db/persistent/pers.tdb.{victim}"));
    assert!(!local_keys(&pfile).contains("while-down"));

    // It comes back and rejoins; recovery brings it the record.
    c.start(victim);
    let (_, g4) = c.wait_agreed("restarted node rejoined", &[0, 1, 2], "", 60);
    assert_ne!(g4, g3, "no recovery for the rejoining node");
    assert!(
        local_keys(&pfile).contains("while-down"),
        "the rejoined node lacks the persistent record stored while it was down"
    );
    let out = c.ok(victim, &["pfetch", "pers.tdb", "while-down"]);
    assert!(out.contains("value"), "pfetch on the rejoined node: {out}");
    eprintln!("test took {:.1} s", started.elapsed().as_secs_f64());
}

/// Runs the fcntl mutex helper on `file`: its status byte ('0' taken,
/// '1' contention).
fn try_lock(file: &Path) -> u8 {
    use std::io::Read;
    let mut child = std::process::Command::new(cluster_util::MUTEX_HELPER)
        .arg(file)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("mutex helper");
    let mut b = [0u8; 1];
    let r = child.stdout.take().expect("stdout").read_exact(&mut b);
    let _ = child.kill();
    let _ = child.wait();
    r.map(|_| b[0]).unwrap_or(b'?')
}

/// The pid of a mutex helper child of `ctdbd` (of any of its threads).
fn helper_child(ctdbd: u32) -> Option<u32> {
    let tasks = std::fs::read_dir(format!("/proc/{ctdbd}/task")).ok()?;
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("children")).ok())
        .flat_map(|c| {
            c.split_whitespace()
                .filter_map(|p| p.parse::<u32>().ok())
                .collect::<Vec<_>>()
        })
        .find(|p| {
            std::fs::read_to_string(format!("/proc/{p}/cmdline"))
                .is_ok_and(|c| c.contains("ctdb_mutex_fcntl_helper"))
        })
}

#[test]
fn cluster_lock_holder_leads() {
    if !have_tools() || !Path::new(cluster_util::MUTEX_HELPER).exists() {
        return;
    }
    let started = Instant::now();
    let mut c = Cluster::new("clrec-lock", 3, TUNABLES, true);
    let lock = c.dir.join("shared/cluster.lock");
    c.start_all();
    let (l0, _) = c.wait_agreed("3 nodes OK with a cluster lock", &[0, 1, 2], "", 60);
    assert_eq!(try_lock(&lock), b'1', "the leader holds the cluster lock");
    let holders: Vec<usize> = (0..3)
        .filter(|&i| c.pid(i).and_then(helper_child).is_some())
        .collect();
    assert_eq!(
        holders,
        vec![l0 as usize],
        "only the leader runs the lock helper"
    );

    // The leader goes: the lock is free again and another node takes it.
    let _ = c.ctdb_t(l0 as usize, 30, &["-T", "10", "stop"]);
    let rest: Vec<usize> = (0..3).filter(|&i| i != l0 as usize).collect();
    let (l1, _) = c.wait_agreed("a new leader holding the lock", &rest, "STOPPED", 40);
    assert_ne!(l1, l0);
    c.wait("the lock helper moved to the new leader", 20, |c| {
        c.pid(l0 as usize).and_then(helper_child).is_none()
            && c.pid(l1 as usize).and_then(helper_child).is_some()
    });
    assert_eq!(try_lock(&lock), b'1', "the new leader holds the lock");
    let _ = c.ctdb_t(l0 as usize, 30, &["-T", "10", "continue"]);
    c.wait_agreed("all OK after continue", &[0, 1, 2], "", 40);

    // kill -9 of the lock holder: its helper notices (within 5 s) and
    // the lock, and leadership, go to one of the others.
    c.kill9(l1 as usize);
    let rest: Vec<usize> = (0..3).filter(|&i| i != l1 as usize).collect();
    let (l2, _) = c.wait_agreed("a new leader after kill -9", &rest, "DISCONNECTED", 60);
    assert_ne!(l2, l1);
    c.wait("the lock helper on the newest leader", 20, |c| {
        c.pid(l2 as usize).and_then(helper_child).is_some()
    });
    let helpers = rest
        .iter()
        .filter(|&&i| c.pid(i).and_then(helper_child).is_some())
        .count();
    assert_eq!(helpers, 1, "one lock helper among the live nodes");
    eprintln!("test took {:.1} s", started.elapsed().as_secs_f64());
}
