//! Controls: the opcode table matches upstream's `enum ctdb_controls`, every
//! current opcode's typed input and every typed output round-trips, the
//! in/out types are the ones `protocol_control.c` uses (checked by size and
//! layout on known values), and no strict prefix of a typed body decodes.
//! Message bodies typed by srvid get the same treatment.
//!
//! How: seeded random values (seed printed; replay with `CTDB_TEST_SEED`),
//! encode -> decode -> same value (compared by `Debug`, which also covers
//! NaN doubles) -> re-encode to the same bytes.

mod common;

use common::{control_data, control_reply_data, message_data, seed, Rng, TYPED_SRVIDS};
use ctdb_protocol::srvid;
use ctdb_protocol::types::{CtdbString, PidSrvid, StringN, Tunable};
use ctdb_protocol::{
    opcode_name, ControlData, ControlReplyData, DbIdPad, MessageData, Opcode, ProtocolError,
};

const ITERATIONS: usize = 300;

/// Obsolete opcodes as `protocol.h` marks them.
const OBSOLETE: &[u32] = &[
    10, 11, 13, 14, 19, 31, 32, 34, 37, 42, 43, 51, 54, 57, 58, 59, 60, 62, 65, 66, 75, 76, 79, 81,
    82, 83, 84, 85, 86, 96, 100, 103, 107, 108, 111, 112, 113, 116, 117, 118, 130, 136,
];

/// Numbers upstream removed or never used.
const UNUSED: &[u32] = &[2, 12, 28, 38, 39, 40, 41, 68, 73, 92, 93, 94, 95, 106];

#[test]
fn opcode_table_matches_upstream() {
    assert_eq!(Opcode::ALL.len(), 145);
    assert!(Opcode::ALL
        .windows(2)
        .all(|w| (w[0] as u32) < (w[1] as u32)));
    for n in 0..=160u32 {
        let op = Opcode::from_u32(n);
        if UNUSED.contains(&n) || n > 158 {
            assert_eq!(op, None, "{n} is not an opcode");
            assert_eq!(opcode_name(n), "UNKNOWN");
            continue;
        }
        let op = op.unwrap_or_else(|| panic!("opcode {n} missing"));
        assert_eq!(op as u32, n);
        assert_eq!(op.is_obsolete(), OBSOLETE.contains(&n), "{op}");
        assert_eq!(opcode_name(n), op.name());
    }
    // spot checks of names and numbers
    assert_eq!(Opcode::GetPnn as u32, 35);
    assert_eq!(Opcode::GetNodemap.name(), "GET_NODEMAP");
    assert_eq!(Opcode::GetNodemapV4.name(), "GET_NODEMAPv4");
    assert_eq!(Opcode::DbTransactionCancel as u32, 145);
    assert_eq!(Opcode::EnableNode as u32, 158);
    assert!(Opcode::GetPnn.result_in_status());
    assert!(!Opcode::GetNodemap.result_in_status());
}

#[test]
fn every_control_input_round_trips() {
    let mut r = Rng::new(seed("every_control_input_round_trips"));
    let mut current = 0;
    for &op in Opcode::ALL {
        for i in 0..ITERATIONS {
            let Some(d) = control_data(&mut r, op) else {
                assert!(op.is_obsolete());
                break;
            };
            if i == 0 {
                current += 1;
            }
            assert_eq!(d.opcode(), op as u32);
            let mut b = Vec::new();
            d.push(&mut b);
            assert_eq!(b.len(), d.wire_len(), "{op}: wire_len");
            let back = ControlData::decode(op as u32, &b)
                .unwrap_or_else(|e| panic!("{op}: {e} decoding {d:?}"));
            assert_eq!(format!("{back:?}"), format!("{d:?}"), "{op}");
            let mut again = Vec::new();
            back.push(&mut again);
            assert_eq!(again, b, "{op}: re-encode");
        }
    }
    assert_eq!(current, 145 - OBSOLETE.len());
}

#[test]
fn every_control_output_round_trips() {
    let mut r = Rng::new(seed("every_control_output_round_trips"));
    let mut with_output = 0;
    for &op in Opcode::ALL {
        for i in 0..ITERATIONS {
            let Some(d) = control_reply_data(&mut r, op) else {
                assert!(!ControlReplyData::has_output(op), "{op} needs a generator");
                break;
            };
            if i == 0 {
                with_output += 1;
            }
            assert_eq!(d.opcode(), Some(op));
            let mut b = Vec::new();
            d.push(&mut b);
            assert_eq!(b.len(), d.wire_len(), "{op}: wire_len");
            let back = ControlReplyData::decode(op as u32, &b)
                .unwrap_or_else(|e| panic!("{op}: {e} decoding {d:?}"));
            assert_eq!(format!("{back:?}"), format!("{d:?}"), "{op}");
            let mut again = Vec::new();
            back.push(&mut again);
            assert_eq!(again, b, "{op}: re-encode");
        }
    }
    assert_eq!(with_output, 33);
}

#[test]
fn controls_without_output_ignore_reply_data_and_obsolete_stay_raw() {
    for &op in Opcode::ALL {
        let d = ControlReplyData::decode(op as u32, b"whatever");
        if op.is_obsolete() {
            assert_eq!(d, Ok(ControlReplyData::Other(b"whatever")));
        } else if !ControlReplyData::has_output(op) {
            assert_eq!(d, Ok(ControlReplyData::None), "{op}");
            assert_eq!(
                ControlReplyData::decode(op as u32, b""),
                Ok(ControlReplyData::None)
            );
        }
    }
    assert_eq!(
        ControlReplyData::decode(9999, b"x"),
        Ok(ControlReplyData::Other(b"x"))
    );
    assert_eq!(
        ControlData::decode(9999, b"x"),
        Ok(ControlData::Other {
            opcode: 9999,
            data: b"x"
        })
    );
    assert_eq!(
        ControlData::decode(Opcode::Thaw as u32, b"x"),
        Ok(ControlData::Other {
            opcode: 34,
            data: b"x"
        })
    );
}

#[test]
fn controls_without_input_reject_data() {
    for &op in Opcode::ALL {
        if op.is_obsolete() {
            continue;
        }
        let mut r = Rng::new(1);
        let d = control_data(&mut r, op).unwrap();
        if d.wire_len() == 0 && !matches!(d, ControlData::DbAttach(_)) {
            assert!(
                matches!(
                    ControlData::decode(op as u32, &[0]),
                    Err(ProtocolError::Trailing { .. })
                ),
                "{op} accepted data"
            );
            assert_eq!(ControlData::decode(op as u32, &[]), Ok(d));
        }
    }
}

/// No strict prefix of a typed body decodes, except the empty string
/// (upstream's NULL string) for string-typed bodies.
#[test]
fn strict_prefixes_of_typed_bodies_are_errors() {
    let mut r = Rng::new(seed("strict_prefixes_of_typed_bodies"));
    for &op in Opcode::ALL {
        for _ in 0..40 {
            if let Some(d) = control_data(&mut r, op) {
                let b = {
                    let mut v = Vec::new();
                    d.push(&mut v);
                    v
                };
                for cut in 0..b.len() {
                    let res = ControlData::decode(op as u32, &b[..cut]);
                    let string_null = cut == 0
                        && matches!(
                            d,
                            ControlData::DbAttach(_)
                                | ControlData::DbAttachPersistent(_)
                                | ControlData::DbAttachReplicated(_)
                        );
                    assert!(
                        res.is_err() || string_null,
                        "{op}: prefix {cut}/{} decoded: {res:?}",
                        b.len()
                    );
                }
            }
            if let Some(d) = control_reply_data(&mut r, op) {
                let mut b = Vec::new();
                d.push(&mut b);
                for cut in 0..b.len() {
                    let res = ControlReplyData::decode(op as u32, &b[..cut]);
                    let string_null = cut == 0
                        && matches!(
                            d,
                            ControlReplyData::Getdbpath(_)
                                | ControlReplyData::GetDbname(_)
                                | ControlReplyData::DumpMemory(_)
                                | ControlReplyData::GetReclockFile(_)
                                | ControlReplyData::DbGetHealth(_)
                        );
                    assert!(
                        res.is_err() || string_null,
                        "{op}: output prefix {cut}/{} decoded: {res:?}",
                        b.len()
                    );
                }
            }
        }
    }
}

fn enc(d: &ControlData<'_>) -> Vec<u8> {
    let mut v = Vec::new();
    d.push(&mut v);
    v
}

/// Sizes and layouts of the inputs the stock clients send, from
/// `protocol_control.c`, `ctdbd_conn.c` and the spec.
#[test]
fn known_input_layouts() {
    assert_eq!(
        enc(&ControlData::ProcessExists(1234)),
        1234i32.to_ne_bytes()
    );
    assert_eq!(
        enc(&ControlData::GetDbSeqnum(DbIdPad(0xAABBCCDD))),
        [0xDD, 0xCC, 0xBB, 0xAA, 0, 0, 0, 0]
    );
    // the second word of GET_DB_SEQNUM is ignored on input
    assert_eq!(
        ControlData::decode(120, &[1, 0, 0, 0, 9, 9, 9, 9]),
        Ok(ControlData::GetDbSeqnum(DbIdPad(1)))
    );
    let ps = enc(&ControlData::CheckPidSrvid(PidSrvid {
        pid: 1,
        srvid: 0x0102_0304_0506_0708,
    }));
    assert_eq!(ps.len(), 12, "pid_srvid is packed");
    assert_eq!(&ps[4..], &0x0102_0304_0506_0708u64.to_ne_bytes());
    assert_eq!(
        enc(&ControlData::DbAttach(CtdbString::new("locking.tdb"))),
        b"locking.tdb\0"
    );
    assert_eq!(
        enc(&ControlData::GetTunable(StringN::new("EnableBans"))),
        [&11u32.to_ne_bytes()[..], b"EnableBans\0"].concat()
    );
    assert_eq!(
        enc(&ControlData::SetTunable(Tunable {
            value: 3,
            name: StringN::new("X"),
        })),
        [&3u32.to_ne_bytes()[..], &2u32.to_ne_bytes()[..], b"X\0"].concat()
    );
    assert_eq!(enc(&ControlData::DeregisterNotify(7)), 7u64.to_ne_bytes());
    assert_eq!(
        enc(&ControlData::RecdReclockLatency(1.5)),
        1.5f64.to_ne_bytes()
    );
    assert_eq!(enc(&ControlData::DbFreeze(5)), 5u32.to_ne_bytes());
    // GET_NODEMAP and friends take nothing
    assert!(enc(&ControlData::GetNodemap).is_empty());
    assert!(enc(&ControlData::GetPnn).is_empty());
}

#[test]
fn known_output_layouts() {
    // strings include their NUL; empty data is upstream's NULL string
    assert_eq!(
        ControlReplyData::decode(4, b"/var/lib/ctdb/volatile/x.tdb.0\0"),
        Ok(ControlReplyData::Getdbpath(CtdbString::new(
            "/var/lib/ctdb/volatile/x.tdb.0"
        )))
    );
    assert_eq!(
        ControlReplyData::decode(99, b""),
        Ok(ControlReplyData::GetReclockFile(CtdbString(None)))
    );
    assert!(ControlReplyData::decode(4, b"no-nul").is_err());
    assert_eq!(
        ControlReplyData::decode(120, &7u64.to_ne_bytes()),
        Ok(ControlReplyData::GetDbSeqnum(7))
    );
    assert_eq!(
        ControlReplyData::decode(149, &(-1i32).to_ne_bytes()),
        Ok(ControlReplyData::DbOpenFlags(-1))
    );
    // an empty node map is just the count
    match ControlReplyData::decode(91, &0u32.to_ne_bytes()).unwrap() {
        ControlReplyData::GetNodemap(m) => assert!(m.nodes.is_empty()),
        other => panic!("{other:?}"),
    }
    // statistics are 488 bytes, tunables 248, uptime 64
    assert!(ControlReplyData::decode(1, &[0; 488]).is_ok());
    assert!(ControlReplyData::decode(1, &[0; 487]).is_err());
    assert!(ControlReplyData::decode(1, &[0; 489]).is_err());
    assert!(ControlReplyData::decode(53, &[0; 248]).is_ok());
    assert!(ControlReplyData::decode(69, &[0; 64]).is_ok());
}

#[test]
fn every_typed_message_body_round_trips() {
    let mut r = Rng::new(seed("every_typed_message_body_round_trips"));
    for &id in TYPED_SRVIDS {
        for _ in 0..ITERATIONS {
            let d = message_data(&mut r, id);
            assert_eq!(d.srvid(), Some(id));
            let b = d.to_bytes();
            assert_eq!(b.len(), d.wire_len());
            let back = MessageData::decode(id, &b)
                .unwrap_or_else(|e| panic!("{:?}: {e} for {d:?}", srvid::name(id)));
            assert_eq!(format!("{back:?}"), format!("{d:?}"));
            assert_eq!(back.to_bytes(), b);
        }
    }
    // the leader broadcast: a u32 pnn
    assert_eq!(
        MessageData::decode(srvid::LEADER, &2u32.to_ne_bytes()),
        Ok(MessageData::Leader(2))
    );
    assert_eq!(
        MessageData::decode(0x1234, b"raw"),
        Ok(MessageData::Other(b"raw"))
    );
}

#[test]
fn srvid_helpers() {
    assert_eq!(srvid::LEADER, 0xF101_0000_0000_0000);
    assert_eq!(srvid::name(srvid::TAKEOVER_RUN), Some("TAKEOVER_RUN"));
    assert_eq!(srvid::name(srvid::SAMBA_PROCESS), Some("SAMBA_PROCESS"));
    assert_eq!(srvid::tool_srvid(0x12345, 2), 0xCE01_0000_2345_0002);
    assert_eq!(srvid::range_of(srvid::tool_srvid(7, 1)), srvid::TOOL_RANGE);
    assert_eq!(srvid::client_traverse_srvid(99), 0xBE00_0000_0000_0063);
}
