//! Issue 5: `ctdb reloadnodes` (RELOAD_NODES_FILE). A cluster of two
//! nodes whose nodes files then gain a third node: after `reloadnodes` the
//! running nodes connect to the new one and all three are OK everywhere.
//! Then the third node is stopped and marked deleted (`#addr`) in the
//! nodes files: after `reloadnodes` the other two list it no more and stay
//! OK. The stock CLI does the checks upstream's does (same file on every
//! connected node, what is NEW / DELETED) and asks every node to reload.
//!
//! Runs against `ctdb_tests::must_show::ctdbd_under_test()` (ours unless
//! `CTDB_TEST_CTDBD` names another, e.g. Debian's, which passes too).

use std::fs;
use std::time::{Duration, Instant};

use ctdb_tests::must_show::{
    ctdb_ok, ctdbd_or_skip, fail_with_logs, must, status_of, wait_for, wait_nodes_ok, TestCluster,
};

/// Writes every node's nodes file: the addresses of `present` nodes, the
/// others as deleted (`#addr`), up to `slots` lines.
fn write_nodes(c: &TestCluster, slots: usize, present: &[usize]) {
    let mut text = String::new();
    for i in 0..slots {
        let a = c.addr(i).expect("node address");
        if present.contains(&i) {
            text.push_str(&format!("{a}\n"));
        } else {
            text.push_str(&format!("#{a}\n"));
        }
    }
    for i in 0..c.len() {
        let p = c.base(i).expect("node base").join("nodes");
        fs::write(&p, &text).unwrap_or_else(|e| panic!("write {}: {e}", p.display()));
    }
}

/// The pnns node `i` lists in `ctdb status` (deleted nodes are not listed).
fn listed(c: &TestCluster, i: usize) -> Result<Vec<u32>, String> {
    Ok(status_of(c, i)?.nodes.iter().map(|n| n.0).collect())
}

#[test]
fn reloadnodes_adds_and_deletes_a_node() {
    let name = "reloadnodes_adds_and_deletes_a_node";
    let Some(ctdbd) = ctdbd_or_skip(name) else {
        return;
    };
    let t0 = Instant::now();
    let mut c = TestCluster::create(3, &ctdbd, |_| {}).expect("cluster written");
    // Two nodes to begin with: node 2's line is not there yet.
    let mut two = String::new();
    for i in 0..2 {
        two.push_str(&format!("{}\n", c.addr(i).expect("node address")));
    }
    for i in 0..3 {
        let p = c.base(i).expect("node base").join("nodes");
        fs::write(&p, &two).expect("write nodes file");
    }
    c.start_node(0).expect("start node 0");
    c.start_node(1).expect("start node 1");
    must(
        &c,
        wait_nodes_ok(&c, &[0, 1], &[0, 1], Duration::from_secs(60)),
    );
    eprintln!("{name}: 2 nodes OK after {:?}", t0.elapsed());

    // Add node 2.
    write_nodes(&c, 3, &[0, 1, 2]);
    c.start_node(2).expect("start node 2");
    let out = must(&c, ctdb_ok(&c, 0, &["reloadnodes"]));
    eprintln!("{name}: reloaded (add) at {:?}", t0.elapsed());
    if !out.contains("Node 2 is NEW") {
        fail_with_logs(
            &c,
            &format!("reloadnodes did not report node 2 NEW:\n{out}"),
        );
    }
    must(
        &c,
        wait_nodes_ok(&c, &[0, 1, 2], &[0, 1, 2], Duration::from_secs(90)),
    );
    eprintln!("{name}: node 2 added, 3 nodes OK at {:?}", t0.elapsed());

    // Delete node 2: it must be disconnected first.
    c.stop_node(2).expect("stop node 2");
    must(
        &c,
        wait_for(
            "node 2 DISCONNECTED on nodes 0 and 1",
            Duration::from_secs(60),
            Duration::from_millis(300),
            || {
                for i in [0, 1] {
                    let s = status_of(&c, i)?;
                    let st = s.nodes.iter().find(|n| n.0 == 2).map(|n| n.2.clone());
                    if !st.as_deref().is_some_and(|s| s.contains("DISCONNECTED")) {
                        return Err(format!("node {i} shows node 2 as {st:?}"));
                    }
                }
                Ok(())
            },
        ),
    );
    eprintln!(
        "{name}: node 2 stopped, seen disconnected at {:?}",
        t0.elapsed()
    );
    write_nodes(&c, 3, &[0, 1]);
    let out = must(&c, ctdb_ok(&c, 1, &["reloadnodes"]));
    if !out.contains("Node 2 is DELETED") {
        fail_with_logs(
            &c,
            &format!("reloadnodes did not report node 2 DELETED:\n{out}"),
        );
    }
    must(
        &c,
        wait_for(
            "node 2 gone from nodes 0 and 1",
            Duration::from_secs(30),
            Duration::from_millis(300),
            || {
                for i in [0, 1] {
                    let l = listed(&c, i)?;
                    if l != [0, 1] {
                        return Err(format!("node {i} lists {l:?}"));
                    }
                }
                Ok(())
            },
        ),
    );
    eprintln!("{name}: node 2 unlisted at {:?}", t0.elapsed());
    must(
        &c,
        wait_nodes_ok(&c, &[0, 1], &[0, 1], Duration::from_secs(60)),
    );
    // A second reload with the same file changes nothing.
    let r = ctdb_ok(&c, 0, &["reloadnodes"]);
    if let Err(e) = &r {
        // The stock CLI says so on stderr and exits 0.
        fail_with_logs(&c, &format!("unchanged reloadnodes failed: {e}"));
    }
    eprintln!("{name}: node 2 deleted at {:?}", t0.elapsed());

    c.stop_all().expect("stop every daemon");
    assert!(c.processes().is_empty(), "left: {:?}", c.processes());
    eprintln!("{name}: done in {:?}", t0.elapsed());
}
