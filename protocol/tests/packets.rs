//! Packet layer: every operation round-trips under every framing, lengths
//! and padding follow upstream's rules, every header check fires, and no
//! truncation of a valid packet decodes.
//!
//! How: random payloads from a seeded PRNG (seed printed; replay with
//! `CTDB_TEST_SEED`) are encoded, decoded, compared, and re-encoded to the
//! same bytes; layouts are also checked byte by byte against offsets taken
//! from upstream's C structs (`ctdb/include/ctdb_protocol.h`).

mod common;

use common::{payload, same_payload, seed, Rng};
use ctdb_protocol::constants::*;
use ctdb_protocol::{
    frame_length, ControlData, ControlReplyData, Data, DecodeLimits, Framing, Header, Opcode,
    Operation, Packet, Payload, ProtocolError, RawHeader, ReplyCall, ReplyControl, ReplyDmaster,
    ReqCall, ReqControl, ReqDmaster, ReqKeepalive, ReqMessage, ReqTunnel, CTDB_MAGIC,
};

const FRAMINGS: [Framing; 3] = [Framing::Daemon, Framing::Client, Framing::Unpadded];

fn header(r: &mut Rng) -> Header {
    Header::new(r.u32(), r.interesting_u32(), r.interesting_u32(), r.u32())
}

fn u32_at(b: &[u8], off: usize) -> u32 {
    u32::from_ne_bytes(b[off..off + 4].try_into().unwrap())
}

fn u64_at(b: &[u8], off: usize) -> u64 {
    u64::from_ne_bytes(b[off..off + 8].try_into().unwrap())
}

fn limits() -> DecodeLimits {
    DecodeLimits::default()
}

#[test]
fn every_operation_round_trips_under_every_framing() {
    let mut r = Rng::new(seed("every_operation_round_trips"));
    let mut out = Vec::new();
    for op in Operation::ALL {
        for _ in 0..1500 {
            let p = Packet::new(header(&mut r), payload(&mut r, op));
            for framing in FRAMINGS {
                out.clear();
                out.extend_from_slice(b"junk before"); // encode appends
                let start = out.len();
                let n = p.encode_framed(&mut out, framing).unwrap();
                let bytes = &out[start..];
                assert_eq!(n, bytes.len());
                assert_eq!(n, p.encoded_len(framing));
                assert_eq!(u32_at(bytes, 0) as usize, n, "length field is the total");
                assert_eq!(u32_at(bytes, 4), CTDB_MAGIC);
                assert_eq!(u32_at(bytes, 8), 1);
                assert_eq!(u32_at(bytes, 16), op as u32);
                if framing != Framing::Unpadded {
                    assert_eq!(n % 8, 0, "{framing:?} pads to 8: {p:?}");
                }
                let exact = 32 + p.payload.wire_len();
                if framing == Framing::Unpadded || p.payload == Payload::ReqKeepalive(None) {
                    assert_eq!(n, exact);
                } else {
                    assert!(n >= exact && n < exact.max(op.struct_len()) + 8);
                    assert!(bytes[exact..].iter().all(|&b| b == 0), "padding is zero");
                }

                let q = Packet::decode(bytes, &limits())
                    .unwrap_or_else(|e| panic!("{op} {framing:?}: {e} for {p:?}"));
                assert_eq!(q.header, p.header);
                assert!(
                    same_payload(&q.payload, &p.payload),
                    "{op} {framing:?}:\n sent {p:?}\n got {q:?}"
                );
                let mut again = Vec::new();
                q.encode_framed(&mut again, framing).unwrap();
                assert_eq!(again, bytes, "re-encode gives the same bytes");
            }
        }
    }
}

#[test]
fn typed_bodies_decode_back_to_the_same_value() {
    let mut r = Rng::new(seed("typed_bodies_decode_back"));
    for _ in 0..3000 {
        for op in [
            Operation::ReqControl,
            Operation::ReplyControl,
            Operation::ReqMessage,
        ] {
            let p = Packet::new(header(&mut r), payload(&mut r, op));
            let bytes = p.to_bytes().unwrap();
            let q = Packet::decode(&bytes, &limits()).unwrap();
            match (&p.payload, &q.payload) {
                (Payload::ReqControl(a), Payload::ReqControl(b)) => {
                    if let Data::Typed(t) = &a.data {
                        let d = b.decode_data().unwrap();
                        assert_eq!(format!("{d:?}"), format!("{t:?}"));
                    }
                }
                (Payload::ReplyControl(a), Payload::ReplyControl(b)) => {
                    if let Data::Typed(t) = &a.data {
                        let d = b.decode_data(t.opcode().unwrap() as u32).unwrap();
                        assert_eq!(format!("{d:?}"), format!("{t:?}"));
                    }
                }
                (Payload::ReqMessage(a), Payload::ReqMessage(b)) => {
                    if let Data::Typed(t) = &a.data {
                        let d = b.decode_data().unwrap();
                        assert_eq!(format!("{d:?}"), format!("{t:?}"));
                    }
                }
                _ => unreachable!(),
            }
        }
    }
}

#[test]
fn every_prefix_of_a_valid_packet_is_an_error() {
    let mut r = Rng::new(seed("every_prefix_is_an_error"));
    for op in Operation::ALL {
        for _ in 0..60 {
            let p = Packet::new(header(&mut r), payload(&mut r, op));
            for framing in FRAMINGS {
                let mut bytes = Vec::new();
                p.encode_framed(&mut bytes, framing).unwrap();
                for cut in 0..bytes.len() {
                    let e = Packet::decode(&bytes[..cut], &limits());
                    assert!(e.is_err(), "{op} {framing:?} prefix {cut} decoded: {e:?}");
                }
            }
        }
    }
}

/// The stronger form: cut the payload and make the length field agree, so
/// only the inner lengths can catch it.
#[test]
fn truncated_payloads_with_consistent_length_are_errors() {
    let mut r = Rng::new(seed("truncated_payloads"));
    for op in Operation::ALL {
        for _ in 0..60 {
            let p = Packet::new(header(&mut r), payload(&mut r, op));
            let mut bytes = Vec::new();
            p.encode_framed(&mut bytes, Framing::Unpadded).unwrap();
            for cut in 32..bytes.len() {
                let mut t = bytes[..cut].to_vec();
                t[0..4].copy_from_slice(&(cut as u32).to_ne_bytes());
                let res = Packet::decode(&t, &limits());
                let allowed = match op {
                    // the bare header is the legacy keepalive
                    Operation::ReqKeepalive => cut == 32,
                    // the trailing record flags are optional (0 if absent)
                    Operation::ReqDmaster | Operation::ReplyDmaster => cut >= bytes.len() - 4,
                    _ => false,
                };
                if allowed {
                    res.unwrap_or_else(|e| panic!("{op}: cut {cut} should decode: {e}"));
                } else {
                    assert!(res.is_err(), "{op}: payload cut at {cut} decoded: {res:?}");
                }
            }
        }
    }
}

#[test]
fn header_checks() {
    let p = Packet::new(
        Header::new(7, CTDB_CURRENT_NODE, 0, 9),
        Payload::ReqControl(ReqControl::new(ControlData::GetPnn)),
    );
    let good = p.to_bytes().unwrap();
    assert!(Packet::decode(&good, &limits()).is_ok());

    let mut b = good.clone();
    b[4] ^= 1;
    assert_eq!(
        Packet::decode(&b, &limits()),
        Err(ProtocolError::BadMagic(CTDB_MAGIC ^ 1))
    );

    let mut b = good.clone();
    b[8..12].copy_from_slice(&2u32.to_ne_bytes());
    assert_eq!(
        Packet::decode(&b, &limits()),
        Err(ProtocolError::BadVersion(2))
    );

    for op in [6u32, 11, 0xFFFF_FFFF] {
        let mut b = good.clone();
        b[16..20].copy_from_slice(&op.to_ne_bytes());
        assert_eq!(
            Packet::decode(&b, &limits()),
            Err(ProtocolError::UnknownOperation(op))
        );
    }

    for len in [0u32, 1, 31] {
        let mut b = good.clone();
        b[0..4].copy_from_slice(&len.to_ne_bytes());
        assert!(matches!(
            Packet::decode(&b, &limits()),
            Err(ProtocolError::BadLength { length, .. }) if length == len
        ));
    }

    // longer than the buffer
    let mut b = good.clone();
    b[0..4].copy_from_slice(&(good.len() as u32 + 8).to_ne_bytes());
    assert!(matches!(
        Packet::decode(&b, &limits()),
        Err(ProtocolError::Short { .. })
    ));

    // above the configured maximum
    let small = DecodeLimits { max_packet: 63 };
    assert!(matches!(
        Packet::decode(&good, &small),
        Err(ProtocolError::BadLength {
            length: 64,
            max: 63,
            ..
        })
    ));
    assert!(matches!(
        frame_length(&good, &small),
        Err(ProtocolError::BadLength { .. })
    ));
    assert_eq!(frame_length(&good, &limits()), Ok(Some(64)));
    assert_eq!(frame_length(&good[..3], &limits()), Ok(None));

    // errors name what is wrong
    let e = Packet::decode(&good[..40], &limits()).unwrap_err();
    assert!(e.to_string().contains("need 64"), "{e}");
}

#[test]
fn bytes_after_the_length_and_inside_padding_are_ignored() {
    let mut r = Rng::new(seed("bytes_after_length_ignored"));
    for op in Operation::ALL {
        for _ in 0..100 {
            let p = Packet::new(header(&mut r), payload(&mut r, op));
            let mut bytes = Vec::new();
            p.encode_framed(&mut bytes, Framing::Daemon).unwrap();
            let exact = 32 + p.payload.wire_len();
            let clean = bytes.clone();
            let expect = Packet::decode(&clean, &limits()).unwrap();
            // garbage in the padding (except where DMASTER flags would be
            // read from: those 4 bytes are part of the payload)
            for b in bytes.iter_mut().skip(exact) {
                *b = 0xA5;
            }
            // and garbage after the packet
            bytes.extend_from_slice(&[0xEE; 13]);
            let q = Packet::decode(&bytes, &limits()).unwrap();
            assert_eq!(q, expect, "{op}");
        }
    }
}

#[test]
fn framing_lengths_match_upstream() {
    let h = Header::default();
    let pkt = |p: Payload<'static>| Packet::new(h, p);
    let len = |p: &Packet<'_>, f: Framing| p.encoded_len(f);

    // GET_PNN from the client library: 60 bytes, padded to 64.
    let get_pnn = pkt(Payload::ReqControl(ReqControl::new(ControlData::GetPnn)));
    assert_eq!(len(&get_pnn, Framing::Client), 64);
    assert_eq!(len(&get_pnn, Framing::Daemon), 64);
    assert_eq!(len(&get_pnn, Framing::Unpadded), 60);

    // A status-only REPLY_CONTROL from ctdbd: max(44, sizeof 48) = 48.
    let status = pkt(Payload::ReplyControl(ReplyControl::status(3)));
    assert_eq!(len(&status, Framing::Daemon), 48);
    assert_eq!(len(&status, Framing::Client), 48);
    assert_eq!(len(&status, Framing::Unpadded), 44);

    // An empty REPLY_CALL: ctdbd sends 48 (sizeof 44, padded), the client
    // library would send 40.
    let reply_call = pkt(Payload::ReplyCall(ReplyCall {
        status: 0,
        data: b"",
    }));
    assert_eq!(len(&reply_call, Framing::Daemon), 48);
    assert_eq!(len(&reply_call, Framing::Client), 40);

    // A 1-byte message: at least sizeof(ctdb_req_message_old) = 48.
    let msg = pkt(Payload::ReqMessage(ReqMessage::raw(1, b"x")));
    assert_eq!(len(&msg, Framing::Daemon), 48);
    assert_eq!(len(&msg, Framing::Unpadded), 45);

    // smbd's fetch: REQ_CALL with a 5-byte key, unpadded: 56 + 5.
    let call = pkt(Payload::ReqCall(ReqCall {
        flags: 0,
        db_id: 1,
        callid: CTDB_FETCH_FUNC,
        hopcount: 0,
        key: b"abcde",
        calldata: b"",
    }));
    assert_eq!(len(&call, Framing::Unpadded), 61);
    assert_eq!(len(&call, Framing::Daemon), 64);

    // Keepalives: 40, and the legacy bare header 32 under every framing.
    let ka = pkt(Payload::ReqKeepalive(Some(ReqKeepalive {
        version: KEEPALIVE_VERSION_4_17,
        uptime: 5,
    })));
    let legacy = pkt(Payload::ReqKeepalive(None));
    for f in FRAMINGS {
        assert_eq!(len(&ka, f), 40);
        assert_eq!(len(&legacy, f), 32);
    }

    // An empty tunnel packet: sizeof(ctdb_req_tunnel_old) = 56.
    let tunnel = pkt(Payload::ReqTunnel(ReqTunnel {
        tunnel_id: 1,
        flags: CTDB_TUNNEL_FLAG_REQUEST,
        data: b"",
    }));
    assert_eq!(len(&tunnel, Framing::Daemon), 56);
    assert_eq!(len(&tunnel, Framing::Client), 48);

    // REQ_DMASTER: 60 + key + data + 4 flags.
    let dm = pkt(Payload::ReqDmaster(ReqDmaster {
        db_id: 1,
        rsn: 2,
        dmaster: 3,
        key: b"k",
        data: b"",
        record_flags: 0,
    }));
    assert_eq!(len(&dm, Framing::Unpadded), 65);
    assert_eq!(len(&dm, Framing::Daemon), 72);
}

#[test]
fn layouts_match_upstream_offsets() {
    let h = Header::new(0x11, 0x22, 0x33, 0x44);

    let b = Packet::new(
        h,
        Payload::ReqCall(ReqCall {
            flags: CTDB_IMMEDIATE_MIGRATION,
            db_id: 0xDB,
            callid: CTDB_NULL_FUNC,
            hopcount: 2,
            key: b"key",
            calldata: b"cd",
        }),
    )
    .to_bytes()
    .unwrap();
    assert_eq!(
        [
            u32_at(&b, 12),
            u32_at(&b, 16),
            u32_at(&b, 20),
            u32_at(&b, 24),
            u32_at(&b, 28)
        ],
        [0x11, 0, 0x22, 0x33, 0x44]
    );
    assert_eq!(
        [
            u32_at(&b, 32),
            u32_at(&b, 36),
            u32_at(&b, 40),
            u32_at(&b, 44),
            u32_at(&b, 48),
            u32_at(&b, 52)
        ],
        [1, 0xDB, CTDB_NULL_FUNC, 2, 3, 2]
    );
    assert_eq!(&b[56..61], b"keycd");

    let b = Packet::new(
        h,
        Payload::ReqDmaster(ReqDmaster {
            db_id: 0xDB,
            rsn: 0x0102_0304_0506_0708,
            dmaster: 5,
            key: b"kk",
            data: b"ddd",
            record_flags: CTDB_REC_FLAG_MIGRATED_WITH_DATA,
        }),
    )
    .to_bytes()
    .unwrap();
    assert_eq!(u32_at(&b, 32), 0xDB);
    assert_eq!(u32_at(&b, 36), 0, "explicit pad before the u64");
    assert_eq!(u64_at(&b, 40), 0x0102_0304_0506_0708);
    assert_eq!([u32_at(&b, 48), u32_at(&b, 52), u32_at(&b, 56)], [5, 2, 3]);
    assert_eq!(&b[60..65], b"kkddd");
    assert_eq!(u32_at(&b, 65), CTDB_REC_FLAG_MIGRATED_WITH_DATA);

    let b = Packet::new(
        h,
        Payload::ReplyDmaster(ReplyDmaster {
            db_id: 0xDB,
            rsn: 9,
            key: b"kk",
            data: b"ddd",
            record_flags: 7,
        }),
    )
    .to_bytes()
    .unwrap();
    assert_eq!(u64_at(&b, 40), 9);
    assert_eq!([u32_at(&b, 48), u32_at(&b, 52)], [2, 3]);
    assert_eq!(&b[56..61], b"kkddd");
    assert_eq!(u32_at(&b, 61), 7);

    let b = Packet::new(
        h,
        Payload::ReqControl(
            ReqControl::new(ControlData::Getdbpath(0xABCD))
                .with_srvid(0xF101_0000_0000_0000)
                .with_client_id(77)
                .with_flags(CTDB_CTRL_FLAG_NOREPLY),
        ),
    )
    .to_bytes()
    .unwrap();
    assert_eq!(u32_at(&b, 32), Opcode::Getdbpath as u32);
    assert_eq!(u32_at(&b, 36), 0);
    assert_eq!(u64_at(&b, 40), 0xF101_0000_0000_0000);
    assert_eq!([u32_at(&b, 48), u32_at(&b, 52), u32_at(&b, 56)], [77, 1, 4]);
    assert_eq!(u32_at(&b, 60), 0xABCD);

    let b = Packet::new(
        h,
        Payload::ReplyControl(ReplyControl {
            status: -1,
            data: Data::Raw(b"dd"),
            errmsg: b"err",
        }),
    )
    .to_bytes()
    .unwrap();
    assert_eq!(
        [u32_at(&b, 32), u32_at(&b, 36), u32_at(&b, 40)],
        [u32::MAX, 2, 3]
    );
    assert_eq!(&b[44..49], b"dderr");

    let b = Packet::new(h, Payload::ReqMessage(ReqMessage::raw(0xAB, b"hello")))
        .to_bytes()
        .unwrap();
    assert_eq!(u64_at(&b, 32), 0xAB);
    assert_eq!(u32_at(&b, 40), 5);
    assert_eq!(&b[44..49], b"hello");

    let b = Packet::new(
        h,
        Payload::ReqTunnel(ReqTunnel {
            tunnel_id: 0xFFFF_FFFF_0000_0001,
            flags: 0x10,
            data: b"t",
        }),
    )
    .to_bytes()
    .unwrap();
    assert_eq!(u64_at(&b, 32), 0xFFFF_FFFF_0000_0001);
    assert_eq!([u32_at(&b, 40), u32_at(&b, 44)], [0x10, 1]);
    assert_eq!(b[48], b't');

    let b = Packet::new(
        h,
        Payload::ReqKeepalive(Some(ReqKeepalive {
            version: keepalive_version(4, 17),
            uptime: 99,
        })),
    )
    .to_bytes()
    .unwrap();
    assert_eq!([u32_at(&b, 32), u32_at(&b, 36)], [0x0004_0011, 99]);
}

/// smbd builds packets by hand, unpadded, and reads them back relying on
/// the inner lengths; the same bytes must decode here.
#[test]
fn unpadded_smbd_style_packets_decode() {
    // REQ_CALL as ctdbd_conn.c builds it: offsetof(data) + keylen.
    let mut b = Vec::new();
    for v in [
        61u32,
        CTDB_MAGIC,
        1,
        0,
        0,
        CTDB_CURRENT_NODE,
        0,
        12,
        CTDB_IMMEDIATE_MIGRATION,
        0x1234,
        CTDB_NULL_FUNC,
        0,
        5,
        0,
    ] {
        b.extend_from_slice(&v.to_ne_bytes());
    }
    b.extend_from_slice(b"mykey");
    let p = Packet::decode(&b, &limits()).unwrap();
    assert_eq!(p.header.destnode, CTDB_CURRENT_NODE);
    assert_eq!(p.header.reqid, 12);
    match p.payload {
        Payload::ReqCall(c) => {
            assert_eq!(c.key, b"mykey");
            assert_eq!(c.callid, CTDB_NULL_FUNC);
            assert_eq!(c.flags, CTDB_IMMEDIATE_MIGRATION);
            assert!(c.calldata.is_empty());
        }
        other => panic!("{other:?}"),
    }

    // CHECK_PID_SRVID: 12-byte payload, length 72.
    let mut b = Vec::new();
    for v in [72u32, CTDB_MAGIC, 1, 0, 7, CTDB_CURRENT_NODE, 0, 3, 151, 0] {
        b.extend_from_slice(&v.to_ne_bytes());
    }
    b.extend_from_slice(&0u64.to_ne_bytes()); // srvid
    b.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0, 12, 0, 0, 0]); // client_id, flags, datalen
    b.extend_from_slice(&4242i32.to_ne_bytes());
    b.extend_from_slice(&0xFE00_0000_0000_0002u64.to_ne_bytes());
    let p = Packet::decode(&b, &limits()).unwrap();
    let Payload::ReqControl(c) = &p.payload else {
        panic!("{p:?}")
    };
    match c.decode_data().unwrap() {
        ControlData::CheckPidSrvid(ps) => {
            assert_eq!(ps.pid, 4242);
            assert_eq!(ps.srvid, 0xFE00_0000_0000_0002);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn dmaster_record_flags_are_optional_on_input() {
    // A REQ_DMASTER without the trailing flags (exact size): flags read as 0.
    let p = Packet::new(
        Header::default(),
        Payload::ReqDmaster(ReqDmaster {
            db_id: 1,
            rsn: 2,
            dmaster: 3,
            key: b"12345678",
            data: b"",
            record_flags: 0xFFFF,
        }),
    );
    let mut b = Vec::new();
    p.encode_framed(&mut b, Framing::Unpadded).unwrap();
    b.truncate(b.len() - 4);
    let n = b.len() as u32;
    b[0..4].copy_from_slice(&n.to_ne_bytes());
    match Packet::decode(&b, &limits()).unwrap().payload {
        Payload::ReqDmaster(d) => {
            assert_eq!(d.record_flags, 0);
            assert_eq!(d.key, b"12345678");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn raw_header_parse_and_status_replies() {
    let p = Packet::new(
        Header::new(0, 1, 2, 3),
        Payload::ReplyControl(ReplyControl::status(-1)),
    );
    let bytes = p.to_bytes().unwrap();
    let (q, raw) = Packet::decode_with_raw(&bytes, &limits()).unwrap();
    assert_eq!(q, p);
    assert_eq!(
        raw,
        RawHeader {
            length: 48,
            magic: CTDB_MAGIC,
            version: 1,
            generation: 0,
            operation: Operation::ReplyControl as u32,
            destnode: 1,
            srcnode: 2,
            reqid: 3
        }
    );
    // a status-only reply to GET_PNN has no output
    let Payload::ReplyControl(rc) = &q.payload else {
        unreachable!()
    };
    assert_eq!(
        rc.decode_data(Opcode::GetPnn as u32).unwrap(),
        ControlReplyData::None
    );
}

/// A control whose data is malformed still decodes as a packet, so a
/// daemon can answer it (status -1) with the right reqid.
#[test]
fn malformed_control_data_leaves_the_packet_decodable() {
    let p = Packet::new(
        Header::new(0, CTDB_CURRENT_NODE, 5, 77),
        Payload::ReqControl(ReqControl::raw(Opcode::GetDbSeqnum as u32, b"abc")),
    );
    let b = p.to_bytes().unwrap();
    let q = Packet::decode(&b, &limits()).unwrap();
    let Payload::ReqControl(c) = &q.payload else {
        unreachable!()
    };
    assert!(c.decode_data().is_err());
    let reply = Header::reply(&q.header, 0);
    assert_eq!(reply, Header::new(0, 5, 0, 77));
}
