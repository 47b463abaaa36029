//! Three in-process nodes, each a set of glommio executors running the
//! transport on real TCP over 127.0.0.0/8: full mesh, packets both ways,
//! per-core lanes, routing of keys to the owning core, a node going away
//! and coming back.

mod transport_common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use ctdb_daemon::transport::route::{ChainShards, ShardMap};
use ctdb_daemon::transport::{NodeEvent, Sent};
use ctdb_protocol::{DecodeLimits, Operation, Packet, Payload, RawHeader};
use transport_common::*;

fn others(me: u32, n: u32) -> Vec<u32> {
    (0..n).filter(|p| *p != me).collect()
}

fn op_of(bytes: &[u8]) -> Operation {
    RawHeader::parse(bytes).unwrap().operation().unwrap()
}

fn srvid_of(bytes: &[u8]) -> Option<u64> {
    match Packet::decode(bytes, &DecodeLimits::default())
        .ok()?
        .payload
    {
        Payload::ReqMessage(m) => Some(m.srvid),
        _ => None,
    }
}

/// Sends from `core` of `n` to `pnn` and returns what became of it.
fn send_and_result(
    n: &TestNode,
    core: usize,
    pnn: u32,
    bytes: Vec<u8>,
    seen: &mut Vec<Out>,
) -> Sent {
    n.send(core, pnn, bytes);
    n.wait_for(Duration::from_secs(5), seen, |o| match o {
        Out::Sent {
            core: c,
            pnn: p,
            result,
        } if *c == core && *p == pnn => Some(result.clone()),
        _ => None,
    })
    .expect("send answered")
    .expect("send succeeded")
}

#[test]
fn full_mesh_lanes_and_key_routing() {
    const ADDRS: [&str; 3] = ["127.0.87.1", "127.0.87.2", "127.0.87.3"];
    const PORT: u16 = 14379;
    let cores = 3;
    let started = Instant::now();
    let nodes: Vec<TestNode> = (0..3)
        .map(|p| TestNode::start(config(p, &ADDRS, PORT, 500, 4), cores))
        .collect();
    for n in &nodes {
        assert!(
            n.wait_connected(&others(n.pnn, 3), Duration::from_secs(15)),
            "node {} did not see both peers connected",
            n.pnn
        );
    }
    eprintln!("full mesh connected after {:?}", started.elapsed());

    // Lanes: every data core ends up with its own connection to each peer.
    let mut seen: Vec<Vec<Out>> = (0..3).map(|_| Vec::new()).collect();
    let lanes_from = Instant::now();
    for n in &nodes {
        for core in 1..cores {
            for peer in others(n.pnn, 3) {
                loop {
                    let probe = message(n.pnn, peer, 0x1000, b"probe");
                    let r = send_and_result(n, core, peer, probe, &mut seen[n.pnn as usize]);
                    assert!(matches!(r, Sent::Queued | Sent::Forwarded), "probe {r:?}");
                    if r == Sent::Queued {
                        break;
                    }
                    assert!(
                        lanes_from.elapsed() < Duration::from_secs(15),
                        "node {} core {core} has no lane to {peer}",
                        n.pnn
                    );
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        }
    }
    eprintln!("all lanes up after {:?}", lanes_from.elapsed());

    // Messages from every core of every node to every other node arrive
    // on the control core of the receiver, intact and attributed.
    let mut expected: BTreeMap<u32, Vec<(u32, Vec<u8>)>> = BTreeMap::new();
    for n in &nodes {
        for peer in others(n.pnn, 3) {
            for core in 0..cores {
                let data = format!("{}->{} from core {core}", n.pnn, peer);
                let m = message(n.pnn, peer, 0x2000 + core as u64, data.as_bytes());
                expected.entry(peer).or_default().push((n.pnn, m.clone()));
                let r = send_and_result(n, core, peer, m, &mut seen[n.pnn as usize]);
                assert_eq!(r, Sent::Queued, "node {} core {core} to {peer}", n.pnn);
            }
        }
    }
    for n in &nodes {
        let want = expected.remove(&n.pnn).unwrap();
        let mut got = Vec::new();
        // Earlier outputs first (probes and the like), then new ones.
        let earlier: Vec<Out> = std::mem::take(&mut seen[n.pnn as usize]);
        let mut keep = Vec::new();
        let take = |o: &Out, got: &mut Vec<(usize, u32, Vec<u8>)>| {
            if let Out::Recv { core, from, bytes } = o {
                if srvid_of(bytes).is_some_and(|s| (0x2000..0x2010).contains(&s)) {
                    got.push((*core, *from, bytes.clone()));
                    return true;
                }
            }
            false
        };
        for o in earlier {
            if !take(&o, &mut got) {
                keep.push(o);
            }
        }
        while got.len() < want.len() {
            let r = n.wait_for(Duration::from_secs(5), &mut keep, |o| {
                let mut one = Vec::new();
                take(o, &mut one).then(|| one.pop().unwrap())
            });
            got.push(r.unwrap_or_else(|| {
                panic!(
                    "node {}: got {} of {} messages",
                    n.pnn,
                    got.len(),
                    want.len()
                )
            }));
        }
        for (from, bytes) in &want {
            assert!(
                got.iter()
                    .any(|(core, f, b)| *core == 0 && f == from && b == bytes),
                "node {} lacks the message from {from} on core 0",
                n.pnn
            );
        }
        seen[n.pnn as usize] = keep;
    }

    // REQ_CALLs for 60 keys, sent from a data core of node 0 (its lane)
    // and from the control core of node 1 (its primary connection), land
    // on node 2's core owning each key's chain.
    let db = 0x1234_5678;
    let map = ChainShards {
        shards: cores - 1,
        hash_size: HASH_SIZE,
        control_dbs: vec![],
    };
    let mut want_core = BTreeMap::new();
    for (src, core) in [(0u32, 1usize), (1, 0)] {
        for i in 0..60u32 {
            let key = format!("record-{src}-{i}");
            let reqid = src * 1000 + i;
            let owner = 1 + map.shard_of(db, key.as_bytes()).unwrap();
            want_core.insert(reqid, owner);
            let r = send_and_result(
                &nodes[src as usize],
                core,
                2,
                call(src, 2, db, key.as_bytes(), reqid),
                &mut seen[src as usize],
            );
            assert_eq!(r, Sent::Queued);
        }
    }
    let n2 = &nodes[2];
    let mut per_core = [0usize; 3];
    let mut earlier: Vec<Out> = std::mem::take(&mut seen[2]);
    let mut got = 0;
    let check = |o: &Out, per_core: &mut [usize; 3]| -> bool {
        if let Out::Recv { core, bytes, .. } = o {
            if op_of(bytes) == Operation::ReqCall {
                let reqid = RawHeader::parse(bytes).unwrap().reqid;
                assert_eq!(
                    Some(core),
                    want_core.get(&reqid),
                    "call {reqid} delivered on core {core}"
                );
                per_core[*core] += 1;
                return true;
            }
        }
        false
    };
    for o in earlier.drain(..) {
        if check(&o, &mut per_core) {
            got += 1;
        }
    }
    while got < 120 {
        let r = n2.wait_for(Duration::from_secs(5), &mut earlier, |o| {
            check(o, &mut per_core).then_some(())
        });
        assert!(r.is_some(), "node 2 got {got} of 120 calls");
        got += 1;
    }
    assert_eq!(per_core[0], 0);
    assert!(per_core[1] > 0 && per_core[2] > 0, "{per_core:?}");
    eprintln!("calls per core on node 2: {per_core:?}");

    // Throughput of one lane: 20 000 REQ_CALLs of one key (so all for
    // the same core of node 1) from node 0's data core 1.
    let count = 20_000;
    let key = b"hot-record";
    let owner = 1 + map.shard_of(db, key).unwrap();
    let pkt = call(0, 1, db, key, 9);
    let start = Instant::now();
    nodes[0].flood(1, 1, pkt.clone(), count);
    let n1 = &nodes[1];
    let mut received = 0;
    let mut queued = None;
    let mut rest = Vec::new();
    while received < count || queued.is_none() {
        let r = n1.out.recv_timeout(Duration::from_secs(10));
        match r {
            Ok(Out::Recv { core, bytes, .. }) if RawHeader::parse(&bytes).unwrap().reqid == 9 => {
                assert_eq!(core, owner);
                assert_eq!(bytes, pkt);
                received += 1;
            }
            Ok(o) => rest.push(o),
            Err(_) => panic!("node 1 received {received} of {count}"),
        }
        if queued.is_none() {
            for o in nodes[0].out.try_iter() {
                if let Out::Flooded {
                    queued: q, took, ..
                } = o
                {
                    queued = Some((q, took));
                }
            }
        }
    }
    let took = start.elapsed();
    let (q, send_took) = queued.unwrap();
    assert_eq!(q, count, "all queued on the lane");
    eprintln!(
        "lane throughput: {count} packets of {} bytes sent in {send_took:?}, received in {took:?} ({:.0} packets/s end to end, through the test harness)",
        pkt.len(),
        count as f64 / took.as_secs_f64()
    );

    let mut stats = Vec::new();
    for n in nodes {
        stats.push(n.stop());
    }
    let rerouted: u64 = stats[2].iter().map(|s| s.rerouted).sum();
    assert!(rerouted > 0, "node 2 handed no packet to another core");
    assert!(stats[0][1].sent >= 60, "node 0 core 1 sent on its lane");
    for (p, s) in stats.iter().enumerate() {
        eprintln!("node {p}: {s:?}");
        assert!(s[0].keepalives_received > 0);
    }
}

#[test]
fn node_going_away_is_detected_and_reconnects() {
    const ADDRS: [&str; 3] = ["127.0.88.1", "127.0.88.2", "127.0.88.3"];
    const PORT: u16 = 14380;
    let (interval_ms, limit) = (500, 4);
    let cfg = |p| config(p, &ADDRS, PORT, interval_ms, limit);
    let n0 = TestNode::start(cfg(0), 2);
    let n1 = TestNode::start(cfg(1), 2);
    let n2 = TestNode::start(cfg(2), 2);
    assert!(n0.wait_connected(&[1, 2], Duration::from_secs(15)));
    assert!(n1.wait_connected(&[0, 2], Duration::from_secs(15)));
    assert!(n2.wait_connected(&[0, 1], Duration::from_secs(15)));

    // Sending to a pnn outside the nodes file is an error naming it.
    n0.send(0, 9, message(0, 9, 1, b"x"));
    let r = n0.wait_for(Duration::from_secs(5), &mut Vec::new(), |o| match o {
        Out::Sent { pnn: 9, result, .. } => Some(result.clone()),
        _ => None,
    });
    match r {
        Some(Err(e)) => assert!(e.contains("pnn 9"), "{e}"),
        other => panic!("send to pnn 9: {other:?}"),
    }

    // Node 2 goes away.
    let gone = Instant::now();
    n2.stop();
    let bound = Duration::from_millis(interval_ms * (limit as u64 + 1));
    for n in [&n0, &n1] {
        let mut seen = Vec::new();
        let r = n.wait_for(bound + Duration::from_secs(1), &mut seen, |o| {
            matches!(o, Out::Event(NodeEvent::Disconnected(2))).then_some(())
        });
        assert!(r.is_some(), "node {} did not notice node 2 leaving", n.pnn);
        for o in &seen {
            assert!(
                !matches!(o, Out::Event(NodeEvent::Disconnected(p)) if *p != 2),
                "node {}: unexpected {o:?}",
                n.pnn
            );
        }
    }
    eprintln!("node 2 seen gone after {:?}", gone.elapsed());
    // Packets for it are dropped now, as upstream drops them. (While the
    // node's sockets close one by one, a reconnect may still land in its
    // dying listener's backlog for a moment; hence the retries.)
    let mut seen = Vec::new();
    // A connection left half-open that way is restarted after
    // KeepaliveLimit intervals without the node connecting back.
    let deadline = Instant::now() + bound + Duration::from_secs(2);
    loop {
        let r = send_and_result(&n0, 0, 2, message(0, 2, 1, b"x"), &mut seen);
        if r == Sent::Dropped {
            break;
        }
        assert!(Instant::now() < deadline, "still sending to node 2: {r:?}");
        std::thread::sleep(Duration::from_millis(50));
    }

    // Settled: the last word about node 2 is that it is disconnected.
    std::thread::sleep(Duration::from_millis(1500));
    for n in [&n0, &n1] {
        let last = n
            .out
            .try_iter()
            .filter_map(|o| match o {
                Out::Event(e @ (NodeEvent::Connected(2) | NodeEvent::Disconnected(2))) => Some(e),
                _ => None,
            })
            .last();
        assert!(
            matches!(last, None | Some(NodeEvent::Disconnected(2))),
            "node {}: {last:?}",
            n.pnn
        );
    }

    // It comes back; everybody reconnects within a few retry intervals.
    let back = Instant::now();
    let n2 = TestNode::start(cfg(2), 2);
    assert!(n2.wait_connected(&[0, 1], Duration::from_secs(10)));
    assert!(n0.wait_connected(&[2], Duration::from_secs(10)));
    assert!(n1.wait_connected(&[2], Duration::from_secs(10)));
    eprintln!("node 2 reconnected after {:?}", back.elapsed());
    assert!(back.elapsed() < Duration::from_secs(8));

    // And packets flow again both ways.
    let m = message(0, 2, 0x77, b"welcome back");
    assert_eq!(
        send_and_result(&n0, 0, 2, m.clone(), &mut seen),
        Sent::Queued
    );
    let got = n2.wait_for(Duration::from_secs(5), &mut Vec::new(), |o| match o {
        Out::Recv { from: 0, bytes, .. } if srvid_of(bytes) == Some(0x77) => Some(bytes.clone()),
        _ => None,
    });
    assert_eq!(got, Some(m));
    let m = message(2, 0, 0x78, b"thanks");
    let r = send_and_result(&n2, 1, 0, m.clone(), &mut Vec::new());
    assert!(matches!(r, Sent::Queued | Sent::Forwarded), "{r:?}");
    let got = n0.wait_for(Duration::from_secs(5), &mut Vec::new(), |o| match o {
        Out::Recv { from: 2, bytes, .. } if srvid_of(bytes) == Some(0x78) => Some(bytes.clone()),
        _ => None,
    });
    assert_eq!(got, Some(m));

    n0.stop();
    n1.stop();
    n2.stop();
}
