//! Our transport against a hand-driven foreign node made of plain TCP
//! sockets: the keepalive it receives (version, uptime, header), the
//! version rule, dead detection when the peer goes silent while its
//! connections stay open (KeepaliveInterval × KeepaliveLimit), the
//! teardown and reconnect that follow, and refusal of unknown sources.

mod transport_common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::time::{Duration, Instant};

use crossbeam::channel;
use ctdb_daemon::transport::{NodeEvent, CORE_HELLO, LANES_MARKER};
use ctdb_protocol::constants::KEEPALIVE_VERSION_4_17;
use ctdb_protocol::{DecodeLimits, Operation, Packet, Payload, RawHeader};
use transport_common::*;

const REAL: &str = "127.0.89.1";
const FAKE: &str = "127.0.89.2";
const STRANGER: &str = "127.0.89.9";
const PORT: u16 = 14381;
const V: u32 = KEEPALIVE_VERSION_4_17;

fn accept_within(l: &TcpListener, t: Duration) -> Option<std::net::TcpStream> {
    l.set_nonblocking(true).unwrap();
    let deadline = Instant::now() + t;
    while Instant::now() < deadline {
        match l.accept() {
            Ok((s, _)) => {
                s.set_nonblocking(false).unwrap();
                return Some(s);
            }
            Err(_) => std::thread::sleep(Duration::from_millis(10)),
        }
    }
    None
}

/// Reads packets from `s` on a thread; `None` marks EOF.
fn reader(mut s: std::net::TcpStream) -> channel::Receiver<Option<Vec<u8>>> {
    let (tx, rx) = channel::unbounded();
    std::thread::spawn(move || loop {
        let p = read_packet(&mut s);
        let end = p.is_none();
        if tx.send(p).is_err() || end {
            break;
        }
    });
    rx
}

fn event(n: &TestNode, t: Duration, want: impl Fn(&NodeEvent) -> bool) -> Option<NodeEvent> {
    n.wait_for(t, &mut Vec::new(), |o| match o {
        Out::Event(e) if want(e) => Some(*e),
        _ => None,
    })
}

#[test]
fn keepalives_version_rule_silence_and_refusal() {
    let (interval_ms, limit) = (500u64, 3u32);
    let listener = TcpListener::bind((FAKE, PORT)).expect("bind fake node");
    let real = TestNode::start(config(0, &[REAL, FAKE], PORT, interval_ms, limit), 1);
    let real_addr: SocketAddr = format!("{REAL}:{PORT}").parse().unwrap();

    // The fake node connects out (from its node address) and accepts the
    // real node's connection.
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut out = loop {
        match connect_from(FAKE, real_addr) {
            Ok(s) => break s,
            Err(e) if Instant::now() < deadline => {
                eprintln!("connect: {e}");
                std::thread::sleep(Duration::from_millis(50))
            }
            Err(e) => panic!("cannot reach the real node: {e}"),
        }
    };
    let inc = accept_within(&listener, Duration::from_secs(5)).expect("real node connects");
    assert_eq!(
        inc.peer_addr().unwrap().ip(),
        ip(REAL),
        "bound to its node address"
    );
    let from_real = reader(inc);
    out.write_all(&keepalive(1, 0, Some((V, 1)))).unwrap();
    assert_eq!(
        event(&real, Duration::from_secs(5), |e| matches!(
            e,
            NodeEvent::Connected(_)
        )),
        Some(NodeEvent::Connected(1))
    );

    // First on the connection: the hello naming the sending core (a
    // keepalive to upstream), then the keepalive with the lanes marker.
    let hello = from_real
        .recv_timeout(Duration::from_secs(3))
        .unwrap()
        .expect("the hello");
    let hello = Packet::decode(&hello, &DecodeLimits::default()).unwrap();
    assert_eq!(hello.header.reqid, CORE_HELLO, "core 0's hello");
    assert!(matches!(hello.payload, Payload::ReqKeepalive(Some(k)) if k.version == V));
    // The real node's keepalive: version, uptime, addressing, lanes marker.
    let ka = from_real
        .recv_timeout(Duration::from_secs(3))
        .unwrap()
        .expect("a keepalive");
    let pkt = Packet::decode(&ka, &DecodeLimits::default()).unwrap();
    assert_eq!(ka.len() % 8, 0);
    assert_eq!((pkt.header.srcnode, pkt.header.destnode), (0, 1));
    assert_eq!(pkt.header.reqid, LANES_MARKER);
    match pkt.payload {
        Payload::ReqKeepalive(Some(k)) => {
            assert_eq!(k.version, V);
            assert!(k.uptime < 30, "uptime {}", k.uptime);
        }
        other => panic!("expected a keepalive, got {other:?}"),
    }

    // Version rule: a newer version from a node up longer wins; a
    // header-only keepalive is a missing version.
    out.write_all(&keepalive(1, 0, Some((V + 1, 100_000))))
        .unwrap();
    assert_eq!(
        event(&real, Duration::from_secs(3), |e| matches!(
            e,
            NodeEvent::VersionMismatch { .. }
        )),
        Some(NodeEvent::VersionMismatch {
            pnn: 1,
            theirs: Some(V + 1),
            ours: V
        })
    );
    out.write_all(&keepalive(1, 0, None)).unwrap();
    assert_eq!(
        event(&real, Duration::from_secs(3), |e| matches!(
            e,
            NodeEvent::VersionMismatch { .. }
        )),
        Some(NodeEvent::VersionMismatch {
            pnn: 1,
            theirs: None,
            ours: V
        })
    );

    // Alive while it keeps talking...
    let talk_until = Instant::now() + Duration::from_millis(interval_ms * (limit as u64 + 2));
    while Instant::now() < talk_until {
        out.write_all(&keepalive(1, 0, Some((V, 2)))).unwrap();
        std::thread::sleep(Duration::from_millis(150));
    }
    let mut seen = Vec::new();
    let early = real.wait_for(Duration::from_millis(10), &mut seen, |o| {
        matches!(o, Out::Event(NodeEvent::Disconnected(_))).then_some(())
    });
    assert!(early.is_none(), "declared dead while talking");

    // ...dead after KeepaliveLimit silent intervals, with both TCP
    // connections still open.
    let silent = Instant::now();
    let dead = event(&real, Duration::from_secs(5), |e| {
        matches!(e, NodeEvent::Disconnected(_))
    });
    let took = silent.elapsed();
    assert_eq!(dead, Some(NodeEvent::Disconnected(1)));
    eprintln!(
        "silent peer declared dead after {took:?} (interval {interval_ms} ms, limit {limit})"
    );
    let lo = Duration::from_millis(interval_ms * (limit as u64 - 1));
    let hi = Duration::from_millis(interval_ms * (limit as u64 + 1) + 700);
    assert!(took >= lo && took <= hi, "{took:?} not in {lo:?}..{hi:?}");

    // The transport is torn down: both of the fake node's connections end.
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        match from_real.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(None) => break,
            Ok(Some(p)) => assert_eq!(
                RawHeader::parse(&p).unwrap().operation().unwrap(),
                Operation::ReqKeepalive
            ),
            Err(_) => panic!("the real node kept its outgoing connection"),
        }
    }
    out.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let mut b = [0u8; 8];
    assert_eq!(out.read(&mut b).ok(), Some(0), "incoming connection closed");

    // And it reconnects at once.
    let again = Instant::now();
    let inc2 = accept_within(&listener, Duration::from_secs(3)).expect("real node reconnects");
    eprintln!("reconnected after {:?}", again.elapsed());
    // inc2 stays open: its EOF would tear the node down again.

    // Malformed input from a known node ends its connection at once (and
    // the node is torn down): a bad magic, then a length not a multiple
    // of 8. A well-formed keepalive on such a connection keeps it open.
    let mut good = connect_from(FAKE, real_addr).expect("tcp connect");
    good.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    good.write_all(&keepalive(1, 0, Some((V, 3)))).unwrap();
    let r = good.read(&mut b);
    assert!(
        r.as_ref().is_err_and(|e| matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        )),
        "a well-formed connection was closed: {r:?}"
    );
    drop(good);
    let mut bad_magic = keepalive(1, 0, Some((V, 1)));
    bad_magic[4..8].copy_from_slice(&0xdead_beef_u32.to_ne_bytes());
    let mut unaligned = keepalive(1, 0, Some((V, 1)));
    unaligned.extend_from_slice(&[0; 4]);
    let n = unaligned.len() as u32;
    unaligned[..4].copy_from_slice(&n.to_ne_bytes());
    for (what, pkt) in [("bad magic", bad_magic), ("unaligned", unaligned)] {
        let mut s = connect_from(FAKE, real_addr).expect("tcp connect");
        s.set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        s.write_all(&pkt).unwrap();
        let r = s.read(&mut b);
        assert!(
            matches!(r, Ok(0))
                || r.as_ref()
                    .is_err_and(|e| e.kind() == std::io::ErrorKind::ConnectionReset),
            "{what}: connection not closed: {r:?}"
        );
    }

    // A connection from an address not in the nodes list is refused.
    let mut s = connect_from(STRANGER, real_addr).expect("tcp connect");
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let _ = s.write_all(&keepalive(1, 0, Some((V, 1))));
    let r = s.read(&mut b);
    assert!(
        matches!(r, Ok(0)) || r.is_err_and(|e| e.kind() == std::io::ErrorKind::ConnectionReset),
        "stranger not refused"
    );

    let stats = real.stop();
    drop(inc2);
    assert_eq!(stats[0].refused, 1);
    assert!(stats[0].keepalives_received >= 5, "{:?}", stats[0]);
}
