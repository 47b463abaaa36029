//! codec-bench: encode and decode throughput of the hot packets on one core.
//!
//! Why: every record migration and every smbd fetch crosses the packet
//! codec at least twice per hop (REQ_CALL, REQ_DMASTER, REPLY_DMASTER,
//! REPLY_CALL), and messaging rides on REQ_MESSAGE; the codec must stay far
//! below the cost of a syscall so it never shows up in a daemon profile.
//!
//! For each packet shape it measures, single-threaded, encoding into a
//! reused buffer, decoding from a receive buffer (borrowing, no copies), and
//! the round trip, and prints packets/s and ns/packet as a table.
//!
//! Usage: `codec-bench [--smoke] [--secs S]`. `--smoke` runs every case
//! briefly (about 1 s in all) for CI.

use std::hint::black_box;
use std::time::{Duration, Instant};

use clap::Parser;
use ctdb_protocol::constants::{CTDB_CURRENT_NODE, CTDB_FETCH_FUNC, CTDB_IMMEDIATE_MIGRATION};
use ctdb_protocol::{
    ControlData, DecodeLimits, Header, Packet, Payload, ReplyCall, ReqCall, ReqControl, ReqDmaster,
    ReqMessage,
};

#[derive(Parser, Debug)]
#[command(about = "CTDB packet codec throughput, one core")]
struct Args {
    /// Short run for CI (about 1 s in total).
    #[arg(long)]
    smoke: bool,
    /// Seconds per measurement (default 0.5; --smoke: 0.02).
    #[arg(long)]
    secs: Option<f64>,
}

struct Case {
    name: String,
    packet: Packet<'static>,
}

fn leak(n: usize, fill: u8) -> &'static [u8] {
    Box::leak(vec![fill; n].into_boxed_slice())
}

fn cases() -> Vec<Case> {
    let h = Header::new(0x1234_5678, 1, 0, 42);
    let mut v = Vec::new();
    for key in [16usize, 64] {
        v.push(Case {
            name: format!("REQ_CALL key={key}"),
            packet: Packet::new(
                h,
                Payload::ReqCall(ReqCall {
                    flags: CTDB_IMMEDIATE_MIGRATION,
                    db_id: 0xDB01,
                    callid: CTDB_FETCH_FUNC,
                    hopcount: 0,
                    key: leak(key, b'k'),
                    calldata: &[],
                }),
            ),
        });
    }
    for data in [0usize, 100, 4096] {
        v.push(Case {
            name: format!("REPLY_CALL data={data}"),
            packet: Packet::new(
                h,
                Payload::ReplyCall(ReplyCall {
                    status: 0,
                    data: leak(data, b'd'),
                }),
            ),
        });
    }
    for data in [100usize, 4096] {
        v.push(Case {
            name: format!("REQ_DMASTER key=16 data={data}"),
            packet: Packet::new(
                h,
                Payload::ReqDmaster(ReqDmaster {
                    db_id: 0xDB01,
                    rsn: 77,
                    dmaster: 2,
                    key: leak(16, b'k'),
                    data: leak(data, b'd'),
                    record_flags: 0x0001_0000,
                }),
            ),
        });
    }
    for data in [32usize, 1024] {
        v.push(Case {
            name: format!("REQ_MESSAGE data={data}"),
            packet: Packet::new(
                h,
                Payload::ReqMessage(ReqMessage::raw(0xFE00_0000_0000_0002, leak(data, b'm'))),
            ),
        });
    }
    v.push(Case {
        name: "REQ_CONTROL GETDBPATH".to_string(),
        packet: Packet::new(
            Header::new(0, CTDB_CURRENT_NODE, 0, 42),
            Payload::ReqControl(ReqControl::new(ControlData::Getdbpath(0xDB01))),
        ),
    });
    v
}

/// Runs `f` in batches until `dur` has passed; returns ns per call.
fn measure(dur: Duration, mut f: impl FnMut()) -> f64 {
    const BATCH: u64 = 1024;
    // warm up
    for _ in 0..BATCH {
        f();
    }
    let start = Instant::now();
    let mut n = 0u64;
    loop {
        for _ in 0..BATCH {
            f();
        }
        n += BATCH;
        let el = start.elapsed();
        if el >= dur {
            return el.as_nanos() as f64 / n as f64;
        }
    }
}

fn rate(ns: f64) -> String {
    let per_s = 1e9 / ns;
    if per_s >= 1e6 {
        format!("{:.2} M", per_s / 1e6)
    } else {
        format!("{:.1} k", per_s / 1e3)
    }
}

fn main() {
    let args = Args::parse();
    let secs = args.secs.unwrap_or(if args.smoke { 0.02 } else { 0.5 });
    if !(secs.is_finite() && secs > 0.0 && secs < 3600.0) {
        eprintln!("codec-bench: --secs must be a positive number of seconds, got {secs}");
        std::process::exit(2);
    }
    let dur = Duration::from_secs_f64(secs);
    let limits = DecodeLimits::default();

    println!("codec-bench: single thread, {secs} s per measurement; packets/s per core");
    println!(
        "{:<28} {:>6} | {:>10} {:>8} | {:>10} {:>8} | {:>10} {:>8}",
        "packet", "bytes", "encode/s", "ns", "decode/s", "ns", "both/s", "ns"
    );
    println!("{}", "-".repeat(100));
    let mut out = Vec::with_capacity(1 << 16);
    for case in cases() {
        let wire = case.packet.to_bytes().expect("bench packet encodes");
        // sanity: the bytes decode back to the packet
        let back = Packet::decode(&wire, &limits).expect("bench packet decodes");
        assert_eq!(back.header, case.packet.header);

        let enc = measure(dur, || {
            out.clear();
            let n = black_box(&case.packet)
                .encode(&mut out)
                .expect("encode cannot fail here");
            black_box(n);
        });
        let dec = measure(dur, || {
            let p = Packet::decode(black_box(&wire), &limits).expect("decode cannot fail here");
            black_box(&p);
        });
        let both = measure(dur, || {
            out.clear();
            black_box(&case.packet)
                .encode(&mut out)
                .expect("encode cannot fail here");
            let p = Packet::decode(black_box(&out), &limits).expect("decode cannot fail here");
            black_box(&p);
        });
        println!(
            "{:<28} {:>6} | {:>10} {:>8.1} | {:>10} {:>8.1} | {:>10} {:>8.1}",
            case.name,
            wire.len(),
            rate(enc),
            enc,
            rate(dec),
            dec,
            rate(both),
            both
        );
    }
}
