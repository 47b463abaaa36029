//! Event protocol codec: exact byte layouts, round trips of random
//! packets (seeded, seed printed on failure), truncation and bad values.

use ctdb_daemon::error::DaemonError;
use ctdb_daemon::event::protocol::*;

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        // splitmix64
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn string(&mut self) -> Option<String> {
        if self.below(5) == 0 {
            return None;
        }
        let n = self.below(20) as usize;
        Some(
            (0..n)
                .map(|_| (b'a' + self.below(26) as u8) as char)
                .collect(),
        )
    }
    fn bytes(&mut self) -> Option<Vec<u8>> {
        if self.below(4) == 0 {
            return None;
        }
        let n = self.below(300) as usize;
        Some((0..n).map(|_| 1 + self.below(255) as u8).collect())
    }
}

fn le32(v: u32) -> [u8; 4] {
    v.to_ne_bytes()
}

#[test]
fn run_request_layout_is_exact() {
    let req = Request::Run(RunRequest {
        component: Some("legacy".into()),
        event: Some("monitor".into()),
        args: None,
        timeout: 30,
        flags: 0,
    });
    let b = encode_request(7, &req);
    let mut want = Vec::new();
    let len = 12 + 4 + (4 + 7) + (4 + 8) + 4 + 4 + 4;
    want.extend(le32(len));
    want.extend(le32(0));
    want.extend(le32(7));
    want.extend(le32(1));
    want.extend(le32(7));
    want.extend(b"legacy\0");
    want.extend(le32(8));
    want.extend(b"monitor\0");
    want.extend(le32(0));
    want.extend(le32(30));
    want.extend(le32(0));
    assert_eq!(b, want);
    let (h, back) = decode_request(&b).unwrap();
    assert_eq!(
        h,
        Header {
            length: len,
            version: 0,
            reqid: 7
        }
    );
    assert_eq!(back, req);
}

#[test]
fn status_reply_layout_is_exact() {
    let reply = Reply {
        command: CMD_STATUS,
        result: 0,
        status: Some(StatusReply {
            summary: -62,
            scripts: vec![ScriptStatus {
                name: Some("01.a".into()),
                begin: Timeval { sec: 5, usec: 6 },
                end: Timeval { sec: 7, usec: 8 },
                result: -62,
                output: None,
            }],
        }),
    };
    let b = encode_reply(9, &reply);
    let mut want = Vec::new();
    let len: u32 = 12 + 4 + 4 + 4 + 4 + (4 + 5) + 16 + 16 + 4 + 4;
    want.extend(le32(len));
    want.extend(le32(0));
    want.extend(le32(9));
    want.extend(le32(2));
    want.extend(0i32.to_ne_bytes());
    want.extend((-62i32).to_ne_bytes());
    want.extend(1i32.to_ne_bytes());
    want.extend(le32(5));
    want.extend(b"01.a\0");
    for v in [5i64, 6, 7, 8] {
        want.extend(v.to_ne_bytes());
    }
    want.extend((-62i32).to_ne_bytes());
    want.extend(le32(0));
    assert_eq!(b, want);
    assert_eq!(decode_reply(&b).unwrap().1, reply);
}

#[test]
fn error_replies_carry_no_body() {
    for cmd in [CMD_RUN, CMD_STATUS, CMD_SCRIPT] {
        let r = Reply {
            command: cmd,
            result: 22,
            status: None,
        };
        let b = encode_reply(1, &r);
        assert_eq!(b.len(), 20);
        assert_eq!(decode_reply(&b).unwrap().1, r);
    }
}

fn random_request(rng: &mut Rng) -> Request {
    match rng.below(3) {
        0 => Request::Run(RunRequest {
            component: rng.string(),
            event: rng.string(),
            args: rng.string(),
            timeout: rng.next() as u32,
            flags: rng.next() as u32,
        }),
        1 => Request::Status(StatusRequest {
            component: rng.string(),
            event: rng.string(),
        }),
        _ => Request::Script(ScriptRequest {
            component: rng.string(),
            script: rng.string(),
            enable: rng.below(2) == 1,
        }),
    }
}

fn random_reply(rng: &mut Rng) -> Reply {
    let command = 1 + rng.below(3) as u32;
    let result = if rng.below(2) == 0 {
        0
    } else {
        rng.next() as i32
    };
    let status = if result == 0 && command == CMD_STATUS {
        let n = rng.below(6);
        Some(StatusReply {
            summary: rng.next() as i32,
            scripts: (0..n)
                .map(|_| ScriptStatus {
                    name: rng.string(),
                    begin: Timeval {
                        sec: rng.next() as i64,
                        usec: rng.next() as i64,
                    },
                    end: Timeval {
                        sec: rng.next() as i64,
                        usec: rng.next() as i64,
                    },
                    result: rng.next() as i32,
                    output: rng.bytes(),
                })
                .collect(),
        })
    } else {
        None
    };
    Reply {
        command,
        result,
        status,
    }
}

#[test]
fn random_packets_round_trip_and_truncations_fail_cleanly() {
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let mut rng = Rng(seed);
    for i in 0..2000 {
        let req = random_request(&mut rng);
        let reqid = rng.next() as u32;
        let b = encode_request(reqid, &req);
        let (h, back) = decode_request(&b).unwrap_or_else(|e| panic!("seed {seed} iter {i}: {e}"));
        assert_eq!(back, req, "seed {seed} iter {i}");
        assert_eq!(
            (h.length as usize, h.reqid),
            (b.len(), reqid),
            "seed {seed}"
        );
        let cut = rng.below(b.len() as u64) as usize;
        assert!(
            decode_request(&b[..cut]).is_err(),
            "seed {seed} iter {i} cut {cut}"
        );

        let rep = random_reply(&mut rng);
        let b = encode_reply(reqid, &rep);
        let (h, back) = decode_reply(&b).unwrap_or_else(|e| panic!("seed {seed} iter {i}: {e}"));
        assert_eq!(back, rep, "seed {seed} iter {i}");
        assert_eq!(h.length as usize, b.len(), "seed {seed}");
        let cut = rng.below(b.len() as u64) as usize;
        assert!(
            decode_reply(&b[..cut]).is_err(),
            "seed {seed} iter {i} cut {cut}"
        );
    }
}

#[test]
fn hostile_bytes_never_panic() {
    let mut rng = Rng(0x5eed);
    for _ in 0..20000 {
        let n = rng.below(80) as usize;
        let mut b: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
        if n >= 16 && rng.below(2) == 0 {
            b[12..16].copy_from_slice(&(1 + rng.below(3) as u32).to_ne_bytes());
        }
        let _ = decode_request(&b);
        let _ = decode_reply(&b);
    }
}

#[test]
fn bad_values_are_named() {
    let mut b = encode_request(1, &Request::Status(StatusRequest::default()));
    b[12..16].copy_from_slice(&9u32.to_ne_bytes());
    let e = decode_request(&b).unwrap_err();
    assert!(
        matches!(
            e,
            DaemonError::BadValue {
                what: "command",
                offset: 12,
                ..
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("command"), "{e}");

    let mut b = encode_request(
        1,
        &Request::Script(ScriptRequest {
            component: None,
            script: None,
            enable: true,
        }),
    );
    let n = b.len();
    b[n - 4..].copy_from_slice(&2u32.to_ne_bytes());
    let e = decode_request(&b).unwrap_err();
    assert!(e.to_string().contains("script action"), "{e}");

    let mut b = encode_reply(
        1,
        &Reply {
            command: CMD_STATUS,
            result: 0,
            status: Some(StatusReply::default()),
        },
    );
    b[24..28].copy_from_slice(&(-1i32).to_ne_bytes());
    let e = decode_reply(&b).unwrap_err();
    assert!(e.to_string().contains("script count"), "{e}");
}

#[test]
fn output_is_cut_at_nul_like_strlen() {
    let rep = Reply {
        command: CMD_STATUS,
        result: 0,
        status: Some(StatusReply {
            summary: 0,
            scripts: vec![ScriptStatus {
                name: Some("01.x".into()),
                output: Some(b"ab\0cd".to_vec()),
                ..Default::default()
            }],
        }),
    };
    let (_, back) = decode_reply(&encode_reply(1, &rep)).unwrap();
    assert_eq!(
        back.status.unwrap().scripts[0].output.as_deref(),
        Some(&b"ab"[..])
    );
}
