//! Must show (issue 5): with a cluster lock, two partitions never both have
//! a leader. Node 0 runs in one network namespace, nodes 1 and 2 in
//! another, joined by a veth pair (see `ctdb_tests::netns`); all three
//! share the lock file on the common file system. Once the cluster is OK
//! the link is cut (blackhole routes on both sides) for 30 seconds while
//! every node is asked, every ~200 ms, which leader it hears (`ctdb leader`
//! on its own socket: the leader's broadcasts only reach its own
//! partition). A partition "has a leader" during a sample when a node in
//! it names a node of the same partition. The test fails if samples from
//! the two partitions that overlap in time both have a leader, if no
//! partition has one (the lock holder's side must keep leading), or if a
//! node names a leader across the cut. Then the cut is healed and the
//! cluster must reform: all OK, one agreed leader, holding the lock.

use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

use ctdb_tests::must_show::{
    ctdbd_or_skip, fail_with_logs, leader_seen_by, lock_holder, must, wait_agreed_leader, wait_for,
    TestCluster,
};
use ctdb_tests::netns::{self, Partitioned};

const PARTITION_FOR: Duration = Duration::from_secs(30);

/// Which side of the cut node `i` is on (0: node 0 alone, 1: nodes 1, 2).
fn side(i: u32) -> usize {
    usize::from(i != 0)
}

#[derive(Debug, Clone, Copy)]
struct Sample {
    node: u32,
    start: Duration,
    end: Duration,
    leader: Option<u32>,
}

#[test]
fn partitions_never_both_have_a_leader_with_cluster_lock() {
    let name = "partitions_never_both_have_a_leader_with_cluster_lock";
    let Some(ctdbd) = ctdbd_or_skip(name) else {
        return;
    };
    assert!(
        netns::available(),
        "{name}: cannot create network namespaces (needs root and iproute2's {})",
        netns::IP
    );
    let t0 = Instant::now();
    let mut net: Option<Partitioned> = None;
    let mut c = TestCluster::create(3, &ctdbd, |s| {
        s.cluster_lock = true;
        let addrs: Vec<_> = (0..3).map(|i| s.addr(i).expect("address")).collect();
        std::fs::create_dir_all(&s.dir).expect("cluster dir");
        let p = Partitioned::create(
            &addrs[..1],
            &addrs[1..],
            &[s.dir.join("node.0")],
            &s.ctdbd,
            &s.dir,
        )
        .expect("network namespaces");
        s.ctdbd = p.wrapper().to_path_buf();
        net = Some(p);
    })
    .expect("create cluster");
    // `net` was declared before `c`: on any exit the daemons are stopped
    // before the namespaces go.
    let net = net.as_mut().expect("namespaces made");
    c.start_all().expect("start daemons");
    c.wait_all_ok(ctdb_tests::must_show::cli(), Duration::from_secs(60))
        .unwrap_or_else(|e| fail_with_logs(&c, &format!("cluster in namespaces: {e}")));
    let leader = must(
        &c,
        wait_agreed_leader(&c, &[0, 1, 2], &[0, 1, 2], Duration::from_secs(30)),
    );
    let lock = c.lock_file();
    assert_eq!(lock_holder(&c, &lock), Some(leader as usize));
    eprintln!(
        "{name}: formed in namespaces {:?}, leader {leader}, after {:?}",
        net.namespaces(),
        t0.elapsed()
    );

    net.partition().expect("cut the link");
    let cut = Instant::now();
    let samples = Mutex::new(Vec::<Sample>::new());
    let holders = Mutex::new(Vec::<(Duration, Option<usize>)>::new());
    thread::scope(|s| {
        for node in 0..3u32 {
            let (c, samples) = (&c, &samples);
            s.spawn(move || {
                while cut.elapsed() < PARTITION_FOR {
                    let start = cut.elapsed();
                    let leader = leader_seen_by(c, node as usize, 2);
                    let end = cut.elapsed();
                    if let Ok(mut v) = samples.lock() {
                        v.push(Sample {
                            node,
                            start,
                            end,
                            leader,
                        });
                    }
                    thread::sleep(Duration::from_millis(200));
                }
            });
        }
        while cut.elapsed() < PARTITION_FOR {
            let h = lock_holder(&c, &lock);
            if let Ok(mut v) = holders.lock() {
                v.push((cut.elapsed(), h));
            }
            thread::sleep(Duration::from_millis(200));
        }
    });
    let samples = samples.into_inner().expect("samples");
    let holders = holders.into_inner().expect("holders");

    // Judge the samples.
    let with_leader: Vec<&Sample> = samples
        .iter()
        .filter(|s| matches!(s.leader, Some(l) if side(l) == side(s.node)))
        .collect();
    let mut problems = Vec::new();
    for a in &with_leader {
        for b in &with_leader {
            if side(a.node) == 0 && side(b.node) == 1 && a.start < b.end && b.start < a.end {
                problems.push(format!("both partitions led at once: {a:?} and {b:?}"));
            }
        }
    }
    for s in &samples {
        if let Some(l) = s.leader {
            if side(l) != side(s.node) && s.start > Duration::from_secs(2) {
                problems.push(format!("leader heard across the cut: {s:?}"));
            }
        }
    }
    if with_leader.is_empty() {
        problems.push("no partition had a leader (the lock holder's side must)".into());
    }
    let sides: Vec<usize> = with_leader.iter().map(|s| side(s.node)).collect();
    let holder_nodes: Vec<Option<usize>> = holders.iter().map(|h| h.1).collect();
    for (at, h) in &holders {
        if let Some(h) = h {
            if side(*h as u32) != side(leader) && *at > Duration::from_secs(2) {
                problems.push(format!(
                    "lock moved to node {h} (side {}) at {at:?} though its holder lived",
                    side(*h as u32)
                ));
            }
        }
    }
    eprintln!(
        "{name}: {} samples, {} with a leader (sides {:?}), lock holders {:?}",
        samples.len(),
        with_leader.len(),
        {
            let mut s = sides.clone();
            s.dedup();
            s
        },
        {
            let mut h = holder_nodes.clone();
            h.dedup();
            h
        }
    );
    if !problems.is_empty() {
        fail_with_logs(
            &c,
            &format!("{name}:\n{}\nsamples: {samples:?}", problems.join("\n")),
        );
    }

    // Heal: the cluster reforms with one leader holding the lock.
    net.heal().expect("heal the link");
    let healed = Instant::now();
    c.wait_all_ok(ctdb_tests::must_show::cli(), Duration::from_secs(90))
        .unwrap_or_else(|e| fail_with_logs(&c, &format!("after healing: {e}")));
    let after = must(
        &c,
        wait_agreed_leader(&c, &[0, 1, 2], &[0, 1, 2], Duration::from_secs(30)),
    );
    let r = wait_for(
        "the leader holding the lock after healing",
        Duration::from_secs(10),
        Duration::from_millis(200),
        || match lock_holder(&c, &lock) {
            Some(h) if h as u32 == after => Ok(()),
            other => Err(format!("holder {other:?}, leader {after}")),
        },
    );
    must(&c, r);
    eprintln!(
        "{name}: healed, all OK with leader {after} {:?} after healing; total {:?}",
        healed.elapsed(),
        t0.elapsed()
    );
    c.stop_all().expect("stop daemons");
    assert!(c.processes().is_empty(), "left: {:?}", c.processes());
}
