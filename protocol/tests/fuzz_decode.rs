//! Bounded mutation fuzzing of the decoder: `fuzz_decode` must never panic,
//! whatever the bytes, and whatever decodes must re-encode stably (checked
//! inside `fuzz_decode`).
//!
//! How: a corpus of valid packets (every operation, every framing, typed
//! bodies for every control input/output and every typed srvid) is mutated
//! with bit flips, interesting values written over aligned 32-bit fields
//! (where all lengths live), length-field changes, truncation, extension,
//! chunk deletion/duplication and splicing of two packets. Seeded (printed;
//! replay with `CTDB_TEST_SEED`); at most `CTDB_FUZZ_ITERS` iterations
//! (default 300 000) and at most ~20 s of wall time.

mod common;

use std::time::{Duration, Instant};

use common::{control_data, control_reply_data, message_data, payload, seed, Rng, TYPED_SRVIDS};
use ctdb_protocol::fuzz::fuzz_decode;
use ctdb_protocol::{
    Framing, Header, Opcode, Operation, Packet, Payload, ReplyControl, ReqControl, ReqMessage,
};

const DEFAULT_ITERS: u64 = 300_000;
const TIME_BUDGET: Duration = Duration::from_secs(20);

fn corpus(r: &mut Rng) -> Vec<Vec<u8>> {
    let mut pkts: Vec<Packet<'static>> = Vec::new();
    for op in Operation::ALL {
        for _ in 0..8 {
            pkts.push(Packet::new(
                Header::new(r.u32(), r.u32(), r.u32(), r.u32()),
                payload(r, op),
            ));
        }
    }
    for &op in Opcode::ALL {
        if let Some(d) = control_data(r, op) {
            pkts.push(Packet::new(
                Header::new(0, 0xF000_0001, 0, r.u32()),
                Payload::ReqControl(ReqControl::new(d)),
            ));
        }
        if let Some(d) = control_reply_data(r, op) {
            // fuzz_decode takes the reply's opcode from the reqid's low byte
            pkts.push(Packet::new(
                Header::new(0, 0, 0, op as u32),
                Payload::ReplyControl(ReplyControl::new(0, d)),
            ));
        }
    }
    for &id in TYPED_SRVIDS {
        pkts.push(Packet::new(
            Header::new(1, 0, 0, 0),
            Payload::ReqMessage(ReqMessage::typed(id, message_data(r, id))),
        ));
    }
    let mut out = Vec::new();
    for p in &pkts {
        for f in [Framing::Daemon, Framing::Client, Framing::Unpadded] {
            let mut b = Vec::new();
            p.encode_framed(&mut b, f).unwrap();
            out.push(b);
        }
    }
    out
}

fn interesting_u32(r: &mut Rng, len: usize) -> u32 {
    match r.below(10) {
        0 => 0,
        1 => 1,
        2 => u32::MAX,
        3 => 0x7FFF_FFFF,
        4 => 0x8000_0000,
        5 => len as u32,
        6 => (len as u32)
            .wrapping_add(r.below(17) as u32)
            .wrapping_sub(8),
        7 => r.below(64) as u32,
        _ => r.u32(),
    }
}

fn set_len(b: &mut [u8], v: u32) {
    if b.len() >= 4 {
        b[0..4].copy_from_slice(&v.to_ne_bytes());
    }
}

fn mutate(r: &mut Rng, corpus: &[Vec<u8>], input: &mut Vec<u8>) {
    let rounds = 1 + r.below(3);
    for _ in 0..rounds {
        let len = input.len();
        match r.below(10) {
            // bit flips
            0 if len > 0 => {
                for _ in 0..1 + r.below(4) {
                    let i = r.below(len);
                    input[i] ^= 1 << r.below(8);
                }
            }
            // interesting byte
            1 if len > 0 => {
                let i = r.below(len);
                input[i] = [0, 0xFF, 0x7F, 0x80, 1][r.below(5)];
            }
            // interesting value over an aligned u32 (lengths, counts)
            2 | 3 if len >= 4 => {
                let i = r.below(len / 4) * 4;
                let v = interesting_u32(r, len);
                input[i..i + 4].copy_from_slice(&v.to_ne_bytes());
            }
            // header length changes
            4 => {
                let v = match r.below(4) {
                    0 => len as u32,
                    1 => (len as u32).saturating_sub(r.below(9) as u32),
                    2 => len as u32 + r.below(9) as u32,
                    _ => interesting_u32(r, len),
                };
                set_len(input, v);
            }
            // truncation, keeping the length field consistent half the time
            5 if len > 0 => {
                let cut = r.below(len);
                input.truncate(cut);
                if r.bool() {
                    set_len(input, cut as u32);
                }
            }
            // extension with random bytes
            6 => {
                let extra = r.vec(32);
                input.extend_from_slice(&extra);
                if r.bool() {
                    let n = input.len() as u32;
                    set_len(input, n);
                }
            }
            // delete or duplicate a chunk
            7 if len > 1 => {
                let a = r.below(len);
                let b = a + r.below(len - a).min(16);
                if r.bool() {
                    input.drain(a..b);
                } else {
                    let chunk = input[a..b].to_vec();
                    let at = r.below(input.len() + 1);
                    input.splice(at..at, chunk);
                }
            }
            // splice with another corpus packet
            _ => {
                let other = &corpus[r.below(corpus.len())];
                let a = r.below(input.len() + 1);
                let b = r.below(other.len() + 1);
                input.truncate(a);
                input.extend_from_slice(&other[b..]);
                if r.bool() {
                    let n = input.len() as u32;
                    set_len(input, n);
                }
            }
        }
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[test]
fn mutated_packets_never_panic() {
    let seed = seed("mutated_packets_never_panic");
    let iters = std::env::var("CTDB_FUZZ_ITERS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(DEFAULT_ITERS);
    let mut r = Rng::new(seed);
    let corpus = corpus(&mut r);

    // the corpus itself decodes fully
    for c in &corpus {
        let o = fuzz_decode(c);
        assert!(o.packet, "corpus packet did not decode: {}", hex(c));
    }

    let start = Instant::now();
    let (mut done, mut packets, mut typed) = (0u64, 0u64, 0u64);
    let mut input = Vec::new();
    while done < iters {
        if done % 1024 == 0 && start.elapsed() > TIME_BUDGET {
            break;
        }
        input.clear();
        input.extend_from_slice(&corpus[r.below(corpus.len())]);
        mutate(&mut r, &corpus, &mut input);
        let res = std::panic::catch_unwind(|| fuzz_decode(&input));
        match res {
            Ok(o) => {
                packets += u64::from(o.packet);
                typed += u64::from(o.typed);
            }
            Err(p) => {
                eprintln!(
                    "fuzz_decode panicked on iteration {done} (seed {seed}), input {}",
                    hex(&input)
                );
                std::panic::resume_unwind(p);
            }
        }
        done += 1;
    }
    eprintln!(
        "fuzz: {done} inputs in {:.1?}: {packets} decoded as packets, {typed} with typed bodies",
        start.elapsed()
    );
    assert!(done >= 10_000 || done == iters, "fuzzer too slow: {done}");
    // the mutations must keep exercising the deep decoders, not just the
    // header checks
    assert!(
        packets * 10 >= done,
        "only {packets}/{done} decoded as packets"
    );
    assert!(
        typed * 50 >= done,
        "only {typed}/{done} reached typed bodies"
    );
}

#[test]
fn random_bytes_behind_a_valid_header_never_panic() {
    let seed = seed("random_bytes_behind_a_valid_header");
    let mut r = Rng::new(seed);
    for _ in 0..50_000 {
        let body = r.vec(200);
        let op = Operation::ALL[r.below(Operation::ALL.len())];
        let mut b = Vec::with_capacity(32 + body.len());
        let len = 32 + body.len() as u32;
        for v in [len, 0x4354_4442, 1, 0, op as u32, 0, 0, r.u32()] {
            b.extend_from_slice(&v.to_ne_bytes());
        }
        b.extend_from_slice(&body);
        if op == Operation::ReqControl && b.len() >= 36 {
            // aim at real opcodes
            let opc = Opcode::ALL[r.below(Opcode::ALL.len())] as u32;
            b[32..36].copy_from_slice(&opc.to_ne_bytes());
        }
        let res = std::panic::catch_unwind(|| fuzz_decode(&b));
        if let Err(p) = res {
            eprintln!("panicked (seed {seed}) on {}", hex(&b));
            std::panic::resume_unwind(p);
        }
    }
}
