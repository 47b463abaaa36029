//! Must show (issue 5): messaging across nodes with srvids.
//!
//! On one 3-node cluster:
//! 1. upstream's INTEGRATION simple/cluster.020.message_ring: the
//!    `message_ring` program on every node at once (two tokens circling in
//!    opposite directions), output sane and >= 10 msgs/sec with >= 10 laps
//!    each way on every node;
//! 2. streams: one client per node registers its own srvid; every node
//!    sends numbered messages to every other node's srvid; each receiver
//!    must get every message of every sender exactly once, in order, and
//!    nothing meant for another srvid;
//! 3. broadcasts: every node sends one message to all nodes
//!    (CTDB_BROADCAST_ALL) on a shared srvid; each node gets exactly one
//!    from every other node (and at most one from itself);
//! 4. deregistration: after node 0 deregisters its srvid, messages sent to
//!    it are not delivered (a marker on another srvid, sent after them on
//!    the same path, arrives alone).

use std::sync::{Barrier, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use ctdb_perf::client::Client;
use ctdb_tests::must_show::{
    fail_with_logs, must, number_between, perf_on_all, sanity_check, TestCluster,
};

const NODES: usize = 3;
/// Messages each node sends to each other node in the streams.
const STREAM: u32 = 200;
/// CTDB_BROADCAST_ALL (protocol constant).
const BROADCAST_ALL: u32 = 0xF000_0002;
/// Private srvids (outside Samba's and ctdb's ranges): node i listens on
/// `NODE_SRVID + i`; every node on `SHARED_SRVID`.
const NODE_SRVID: u64 = 0x4d53_5f4d_5347_0000;
const SHARED_SRVID: u64 = 0x4d53_5f4d_5347_ff00;
const END: u32 = u32::MAX;

fn payload(from: u32, seq: u32) -> Vec<u8> {
    let mut v = from.to_le_bytes().to_vec();
    v.extend_from_slice(&seq.to_le_bytes());
    v
}

fn parse(data: &[u8]) -> Option<(u32, u32)> {
    let a = <[u8; 4]>::try_from(data.get(..4)?).ok()?;
    let b = <[u8; 4]>::try_from(data.get(4..8)?).ok()?;
    Some((u32::from_le_bytes(a), u32::from_le_bytes(b)))
}

/// What one node's client saw.
#[derive(Debug, Default)]
struct Seen {
    /// Stream messages per sender, in arrival order.
    stream: Vec<Vec<u32>>,
    /// Messages on srvids that were not ours.
    strays: Vec<(u64, Vec<u8>)>,
    /// Broadcasts per sender.
    broadcasts: Vec<u32>,
    /// Messages on a deregistered srvid that were delivered anyway.
    after_deregister: u32,
}

fn node_client(node: usize, c: &TestCluster, phase: &Barrier) -> Result<Seen, String> {
    let e = |e: ctdb_perf::error::PerfError| format!("node {node}: {e}");
    let setup = (|| -> Result<Client, String> {
        let mut cl = Client::connect(&c.socket(node).expect("socket")).map_err(e)?;
        cl.set_timeout(Duration::from_secs(20));
        cl.register_srvid(NODE_SRVID + node as u64).map_err(e)?;
        cl.register_srvid(SHARED_SRVID).map_err(e)?;
        Ok(cl)
    })();
    // Every thread reaches every barrier, even after an error, so that no
    // other thread waits for it forever.
    phase.wait();
    let mut seen = Seen {
        stream: vec![Vec::new(); NODES],
        broadcasts: vec![0; NODES],
        ..Seen::default()
    };
    let mut first_err = None;
    let mut cl = match setup {
        Ok(cl) => Some(cl),
        Err(err) => {
            first_err = Some(err);
            None
        }
    };
    let me = node as u32;
    let deadline = Instant::now() + Duration::from_secs(30);

    // 2. Streams: send to every other node, then an END marker to each.
    if let Some(cl) = cl.as_mut() {
        let r = (|| -> Result<(), String> {
            for seq in 0..STREAM {
                for to in 0..NODES as u32 {
                    if to != me {
                        cl.send_message(to, NODE_SRVID + u64::from(to), &payload(me, seq))
                            .map_err(e)?;
                    }
                }
            }
            for to in 0..NODES as u32 {
                if to != me {
                    cl.send_message(to, NODE_SRVID + u64::from(to), &payload(me, END))
                        .map_err(e)?;
                }
            }
            let mut ended = 0;
            while ended < NODES - 1 {
                let Some((srvid, data)) = cl.recv_message(deadline).map_err(e)? else {
                    return Err(format!("node {node}: streams incomplete at deadline"));
                };
                match (srvid, parse(&data)) {
                    (s, Some((from, END))) if s == NODE_SRVID + u64::from(me) => {
                        let _ = from;
                        ended += 1;
                    }
                    (s, Some((from, seq))) if s == NODE_SRVID + u64::from(me) => {
                        match seen.stream.get_mut(from as usize) {
                            Some(v) => v.push(seq),
                            None => seen.strays.push((srvid, data)),
                        }
                    }
                    _ => seen.strays.push((srvid, data)),
                }
            }
            Ok(())
        })();
        if let Err(err) = r {
            first_err.get_or_insert(err);
        }
    }
    phase.wait();

    // 3. Broadcasts on the shared srvid.
    if let Some(cl) = cl.as_mut() {
        let r = (|| -> Result<(), String> {
            cl.send_message(BROADCAST_ALL, SHARED_SRVID, &payload(me, 0))
                .map_err(e)?;
            let others = |b: &[u32]| (0..NODES).filter(|&n| n != node).all(|n| b[n] >= 1);
            while !others(&seen.broadcasts) {
                let Some((srvid, data)) = cl.recv_message(deadline).map_err(e)? else {
                    return Err(format!(
                        "node {node}: broadcasts missing at deadline: {:?}",
                        seen.broadcasts
                    ));
                };
                match (srvid, parse(&data)) {
                    (SHARED_SRVID, Some((from, 0))) if (from as usize) < NODES => {
                        seen.broadcasts[from as usize] += 1;
                    }
                    _ => seen.strays.push((srvid, data)),
                }
            }
            Ok(())
        })();
        if let Err(err) = r {
            first_err.get_or_insert(err);
        }
    }
    phase.wait();
    // Late broadcast copies (from itself, or duplicates) are collected in
    // the next phase.

    // 4. Node 0 deregisters its srvid; node 1 sends to it, then a marker.
    if node == 0 {
        if let Some(cl) = cl.as_mut() {
            if let Err(err) = cl.deregister_srvid(NODE_SRVID).map_err(e) {
                first_err.get_or_insert(err);
            }
        }
    }
    phase.wait();
    if let Some(cl) = cl.as_mut() {
        let r = (|| -> Result<(), String> {
            if node == 1 {
                for seq in 0..5 {
                    cl.send_message(0, NODE_SRVID, &payload(me, seq))
                        .map_err(e)?;
                }
                cl.send_message(0, SHARED_SRVID, &payload(me, END))
                    .map_err(e)?;
            }
            if node == 0 {
                loop {
                    let Some((srvid, data)) = cl.recv_message(deadline).map_err(e)? else {
                        return Err("node 0: marker after deregistration never came".into());
                    };
                    match (srvid, parse(&data)) {
                        (SHARED_SRVID, Some((1, END))) => break,
                        (SHARED_SRVID, Some((from, 0))) if (from as usize) < NODES => {
                            seen.broadcasts[from as usize] += 1;
                        }
                        (NODE_SRVID, _) => seen.after_deregister += 1,
                        _ => seen.strays.push((srvid, data)),
                    }
                }
            } else {
                // Collect late broadcast copies for a moment.
                let until = Instant::now() + Duration::from_millis(500);
                while let Some((srvid, data)) = cl.recv_message(until).map_err(e)? {
                    match (srvid, parse(&data)) {
                        (SHARED_SRVID, Some((from, 0))) if (from as usize) < NODES => {
                            seen.broadcasts[from as usize] += 1;
                        }
                        _ => seen.strays.push((srvid, data)),
                    }
                }
            }
            Ok(())
        })();
        if let Err(err) = r {
            first_err.get_or_insert(err);
        }
    }
    match first_err {
        Some(err) => Err(err),
        None => Ok(seen),
    }
}

#[test]
fn messages_cross_nodes_by_srvid() {
    let name = "messages_cross_nodes_by_srvid";
    let (c, t0) = TestCluster::start_for(name, NODES);

    // 1. Upstream's cluster.020.message_ring.
    let n = NODES.to_string();
    let runs = perf_on_all(
        &c,
        "message_ring",
        &["-n", &n, "-t", "4"],
        Duration::from_secs(60),
    )
    .expect("run message_ring");
    let r = sanity_check(&runs, |l| {
        l.starts_with("Ring[") && l.contains(" msgs/sec (+ve=") && l.ends_with(')')
    });
    must(&c, r);
    for (i, r) in runs.iter().enumerate() {
        let last = r.stdout.lines().last().unwrap_or("");
        let rate = number_between(last, "]: ", " msgs/sec").unwrap_or(0.0);
        let plus = number_between(last, "+ve=", " ").unwrap_or(0.0);
        let minus = number_between(last, "-ve=", ")").unwrap_or(0.0);
        if rate < 10.0 || plus < 10.0 || minus < 10.0 {
            fail_with_logs(&c, &format!("message_ring on node {i}: {last:?}"));
        }
        eprintln!("{name}: message_ring node {i}: {last}");
    }

    // 2-4. Streams, broadcasts, deregistration.
    let phase = Barrier::new(NODES);
    let results = Mutex::new(Vec::new());
    thread::scope(|s| {
        for node in 0..NODES {
            let (c, phase, results) = (&c, &phase, &results);
            s.spawn(move || {
                let r = node_client(node, c, phase);
                if let Ok(mut v) = results.lock() {
                    v.push((node, r));
                }
            });
        }
    });
    let mut results = results.into_inner().expect("results");
    results.sort_by_key(|(n, _)| *n);
    let mut problems = Vec::new();
    for (node, r) in &results {
        let seen = match r {
            Ok(s) => s,
            Err(e) => {
                problems.push(e.clone());
                continue;
            }
        };
        for (from, seqs) in seen.stream.iter().enumerate() {
            if from == *node {
                if !seqs.is_empty() {
                    problems.push(format!("node {node} got its own stream: {seqs:?}"));
                }
                continue;
            }
            let want: Vec<u32> = (0..STREAM).collect();
            if *seqs != want {
                problems.push(format!(
                    "node {node}: stream from {from} arrived as {} messages, not 0..{STREAM} \
                     in order (first: {:?})",
                    seqs.len(),
                    &seqs[..seqs.len().min(10)]
                ));
            }
        }
        for (from, &k) in seen.broadcasts.iter().enumerate() {
            let ok = if from == *node { k <= 1 } else { k == 1 };
            if !ok {
                problems.push(format!("node {node}: {k} broadcasts from {from}"));
            }
        }
        if !seen.strays.is_empty() {
            problems.push(format!(
                "node {node}: {} messages on srvids not ours or malformed: {:?}",
                seen.strays.len(),
                &seen.strays[..seen.strays.len().min(5)]
            ));
        }
        if seen.after_deregister != 0 {
            problems.push(format!(
                "node {node}: {} messages delivered on a deregistered srvid",
                seen.after_deregister
            ));
        }
        eprintln!(
            "{name}: node {node}: streams {:?}, broadcasts {:?}",
            seen.stream.iter().map(Vec::len).collect::<Vec<_>>(),
            seen.broadcasts
        );
    }
    if !problems.is_empty() {
        fail_with_logs(&c, &problems.join("\n"));
    }
    let mut c = c;
    c.stop_all().expect("stop daemons");
    eprintln!("{name}: done in {:?}", t0.elapsed());
}
