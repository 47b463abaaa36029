//! A 3-node cluster of Debian's ctdbd 4.17 on loopback, started by the
//! harness the way Samba's local_daemons.sh does: all nodes reach OK, a
//! leader is elected, and stopping leaves no process behind.

use std::path::Path;
use std::time::{Duration, Instant};

use ctdb_tests::{procs, Cluster, StatusSummary, DEBIAN_CTDB, DEBIAN_CTDBD};

#[test]
fn three_debian_nodes_become_ok_and_stop_cleanly() {
    let started = Instant::now();
    let cli = Path::new(DEBIAN_CTDB);
    let mut cluster = Cluster::create_on_free_addresses(3, DEBIAN_CTDBD).expect("create cluster");
    cluster.start_all().expect("start daemons");
    let pids: Vec<u32> = (0..3)
        .map(|i| cluster.pid(i).expect("pid recorded"))
        .collect();
    cluster
        .wait_all_ok(cli, Duration::from_secs(60))
        .expect("all nodes OK");

    for i in 0..3 {
        let out = cluster.ctdb(i, cli, &["status"]).expect("run ctdb status");
        assert_eq!(out.code(), 0, "ctdb status on node {i}: {}", out.stderr);
        let s = StatusSummary::parse(&out.stdout);
        assert_eq!(s.nodes.len(), 3, "node {i}:\n{}", out.stdout);
        for (k, (pnn, addr, state)) in s.nodes.iter().enumerate() {
            assert_eq!(*pnn as usize, k);
            assert_eq!(addr, &cluster.addr(k).unwrap().to_string());
            let want = if k == i { "OK (THIS NODE)" } else { "OK" };
            assert_eq!(state, want, "node {i}:\n{}", out.stdout);
        }
        let leader = s.leader.expect("a leader");
        assert!(leader < 3, "leader {leader}");
        assert!(s.recovery_normal);
        assert!(
            out.stdout.starts_with("Number of nodes:3\n"),
            "{}",
            out.stdout
        );

        let pnn = cluster.ctdb(i, cli, &["pnn"]).expect("run ctdb pnn");
        assert_eq!(pnn.stdout.trim(), i.to_string());
    }

    // Every daemon pid is alive, and its helpers are found by CTDB_BASE.
    let all = cluster.processes();
    for pid in &pids {
        assert!(procs::is_alive(*pid));
        assert!(all.contains(pid), "{pid} not among {all:?}");
    }
    assert!(
        all.len() > 3,
        "expected eventd/recoverd helpers too: {all:?}"
    );

    cluster.stop_all().expect("stop");
    // Closing stdin made each test-mode ctdbd run its shutdown sequence
    // (stopping eventd and recoverd) rather than die by signal.
    for i in 0..3 {
        let log = cluster.log_tail(i, 30);
        assert!(log.contains("stdin closed, exiting"), "node {i}:\n{log}");
        assert!(
            log.contains("Shutdown sequence complete"),
            "node {i}:\n{log}"
        );
    }
    let left: Vec<u32> = all
        .iter()
        .copied()
        .filter(|&p| procs::is_alive(p))
        .collect();
    assert!(left.is_empty(), "left running: {left:?}");
    assert!(cluster.processes().is_empty());
    for i in 0..3 {
        assert_eq!(cluster.pid(i), None);
    }
    assert!(
        started.elapsed() < Duration::from_secs(90),
        "took {:?}",
        started.elapsed()
    );
}

#[test]
fn a_broken_daemon_is_reported_with_its_log() {
    // /bin/false exits at once: waiting must fail fast, naming the node.
    let mut cluster = Cluster::create_on_free_addresses(1, "/bin/false").expect("create");
    cluster.start_all().expect("spawn");
    let err = cluster
        .wait_all_ok(Path::new(DEBIAN_CTDB), Duration::from_secs(20))
        .expect_err("must fail");
    let text = err.to_string();
    assert!(text.contains("node 0 exited"), "{text}");
}

#[test]
fn a_stopped_node_shows_disconnected_and_rejoins_after_restart() {
    let cli = Path::new(DEBIAN_CTDB);
    let mut cluster = Cluster::create_on_free_addresses(2, DEBIAN_CTDBD).expect("create cluster");
    cluster.start_all().expect("start");
    cluster
        .wait_all_ok(cli, Duration::from_secs(60))
        .expect("all OK");
    let old_pid = cluster.pid(1).expect("pid");

    cluster.stop_node(1).expect("stop node 1");
    assert_eq!(cluster.pid(1), None);
    assert!(!procs::is_alive(old_pid));
    assert!(procs::processes_under(&cluster.base(1).unwrap()).is_empty());
    // Node 0 notices within a few keepalive intervals.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = cluster.ctdb(0, cli, &["status"]).expect("status");
        let s = StatusSummary::parse(&out.stdout);
        if s.nodes.len() == 2 && s.nodes[1].2.contains("DISCONNECTED") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "node 1 never DISCONNECTED:\n{}",
            out.stdout
        );
        std::thread::sleep(Duration::from_millis(250));
    }

    cluster.start_node(1).expect("restart node 1");
    assert_ne!(cluster.pid(1), Some(old_pid));
    cluster
        .wait_all_ok(cli, Duration::from_secs(60))
        .expect("all OK again");
}
