//! Golden packets: every packet Debian's ctdbd 4.17 and its stock `ctdb`
//! CLI exchanged in the recordings under `tests/golden/` (see its README)
//! decodes, and re-encodes from the typed value to the very same bytes.
//!
//! Why: the round-trip and layout tests elsewhere check our encoder against
//! our decoder and against offsets read from upstream's headers; this test
//! checks both against bytes the real implementation produced, including
//! its padding and framing choices, for every control the CLI uses.
//!
//! For each packet: header and payload decode; control request data decode
//! by opcode; control reply data (status 0) decode by the opcode of the
//! request with the same reqid on the same connection; message data decode
//! by srvid. The packet is then rebuilt with typed data in place of the raw
//! bytes and encoded with ctdbd's framing (daemon to client) or the client
//! library's (client to daemon); the result must equal the recording.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};

use ctdb_protocol::{
    opcode_name, ControlData, ControlReplyData, Data, DecodeLimits, Framing, Packet, Payload,
};

/// One recorded packet.
struct Recorded {
    file: String,
    line: usize,
    /// true: CLI to ctdbd, or (node traffic) connecting node to listener.
    to_daemon: bool,
    /// Node-to-node TCP traffic (`golden/nodes/`) rather than CLI traffic.
    node: bool,
    conn: u32,
    bytes: Vec<u8>,
}

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("golden")
}

fn unhex(s: &str) -> Result<Vec<u8>, String> {
    if s.len() & 1 == 1 {
        return Err(format!("odd number of hex digits ({})", s.len()));
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).map_err(|e| format!("bad hex at {i}: {e}")))
        .collect()
}

/// Every packet of every recording, in file order: the CLI recordings in
/// `golden/`, then the node traffic in `golden/nodes/`.
fn load() -> Vec<Recorded> {
    let mut out = load_dir(&golden_dir(), "", false);
    out.extend(load_dir(&golden_dir().join("nodes"), "nodes/", true));
    out
}

fn load_dir(dir: &Path, prefix: &str, node: bool) -> Vec<Recorded> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "txt"))
        .collect();
    files.sort();
    let mut out = Vec::new();
    for path in files {
        let name = format!("{prefix}{}", path.file_name().unwrap().to_string_lossy());
        let text = fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {name}: {e}"));
        for (i, line) in text.lines().enumerate() {
            let to_daemon = match line.as_bytes().first() {
                Some(b'>') => true,
                Some(b'<') => false,
                _ => continue,
            };
            let mut words = line[1..].split_whitespace();
            let conn = words
                .next()
                .and_then(|w| w.parse().ok())
                .unwrap_or_else(|| panic!("{name}:{}: no connection number", i + 1));
            let hex = words
                .next()
                .unwrap_or_else(|| panic!("{name}:{}: no packet", i + 1));
            let bytes = unhex(hex).unwrap_or_else(|e| panic!("{name}:{}: {e}", i + 1));
            out.push(Recorded {
                file: name.clone(),
                line: i + 1,
                to_daemon,
                node,
                conn,
                bytes,
            });
        }
    }
    out
}

/// Rebuild `pkt` with typed data instead of raw bytes; `reply_opcode` is
/// the opcode of the request a control reply answers. Also returns a short
/// description (operation, opcode) for the report.
fn typed<'a>(pkt: &Packet<'a>, reply_opcode: Option<u32>) -> Result<(Packet<'a>, String), String> {
    let mut what = pkt.operation().name().to_string();
    let payload = match &pkt.payload {
        Payload::ReqControl(c) => {
            let raw = c.data.to_vec();
            what = format!("{what} {}", opcode_name(c.opcode));
            let data = ControlData::decode(c.opcode, &raw)
                .map_err(|e| format!("{what}: request data does not decode: {e}"))?;
            let again = Data::<ControlData>::Typed(data.clone()).to_vec();
            if again != raw {
                return Err(format!(
                    "{what}: request data re-encodes differently, {}",
                    diff_text(&raw, &again)
                ));
            }
            let mut c2 = c.clone();
            // Decode again from the packet's own buffer so the lifetime is 'a.
            c2.data = Data::Typed(c.decode_data().map_err(|e| format!("{what}: {e}"))?);
            Payload::ReqControl(c2)
        }
        Payload::ReplyControl(r) => {
            let Some(opcode) = reply_opcode else {
                return Err(format!(
                    "{what}: no request with reqid {}",
                    pkt.header.reqid
                ));
            };
            let status = if r.status == 0 { "ok" } else { "failed/value" };
            what = format!("{what} {} {status}", opcode_name(opcode));
            if r.status != 0 {
                // Upstream only looks at the data of a successful reply.
                pkt.payload.clone()
            } else {
                let raw = r.data.to_vec();
                let data = ControlReplyData::decode(opcode, &raw)
                    .map_err(|e| format!("{what}: reply data does not decode: {e}"))?;
                let again = Data::<ControlReplyData>::Typed(data.clone()).to_vec();
                if again != raw {
                    return Err(format!(
                        "{what}: reply data re-encodes differently, {}",
                        diff_text(&raw, &again)
                    ));
                }
                let mut r2 = r.clone();
                r2.data = Data::Typed(r.decode_data(opcode).map_err(|e| format!("{what}: {e}"))?);
                Payload::ReplyControl(r2)
            }
        }
        Payload::ReqMessage(m) => {
            let raw = m.data.to_vec();
            what = format!("{what} srvid {:#018x}", m.srvid);
            let data = m
                .decode_data()
                .map_err(|e| format!("{what}: message data does not decode: {e}"))?;
            let mut m2 = m.clone();
            m2.data = Data::Typed(data.clone());
            let again = m2.data.to_vec();
            if again != raw {
                return Err(format!(
                    "{what}: message data re-encodes differently, {}",
                    diff_text(&raw, &again)
                ));
            }
            Payload::ReqMessage(m2)
        }
        other => other.clone(),
    };
    Ok((Packet::new(pkt.header, payload), what))
}

fn hex(b: &[u8]) -> String {
    let mut s = String::with_capacity(b.len() * 2);
    for x in b {
        let _ = write!(s, "{x:02x}");
    }
    s
}

/// Hex of `b` around offset `at` (at most 48 bytes), marked with its range.
fn hex_near(b: &[u8], at: usize) -> String {
    let start = at.saturating_sub(16).min(b.len());
    let end = (start + 48).min(b.len());
    format!(
        "[{start}..{end} of {}] {}{}",
        b.len(),
        hex(&b[start..end]),
        if end < b.len() { "..." } else { "" }
    )
}

/// The two sides of a mismatch, around the first differing byte.
fn diff_text(recorded: &[u8], ours: &[u8]) -> String {
    let d = first_diff(recorded, ours);
    format!(
        "first difference at byte {d}\n    recorded {}\n    ours     {}",
        hex_near(recorded, d),
        hex_near(ours, d)
    )
}

/// Where two byte strings first differ.
fn first_diff(a: &[u8], b: &[u8]) -> usize {
    a.iter()
        .zip(b)
        .position(|(x, y)| x != y)
        .unwrap_or(a.len().min(b.len()))
}

#[test]
fn every_recorded_packet_decodes_and_reencodes_identically() {
    let packets = load();
    // The recordings hold well over a thousand packets; a broken loader
    // must not make this test pass vacuously.
    let node_packets = packets.iter().filter(|p| p.node).count();
    let cli_packets = packets.len() - node_packets;
    assert!(cli_packets >= 1000, "only {cli_packets} CLI packets loaded");
    assert!(
        node_packets >= 1000,
        "only {node_packets} node packets loaded"
    );

    let limits = DecodeLimits::default();
    // Control request -> opcode, to type the matching reply. CLI: keyed by
    // (file, connection, 0, reqid). Nodes send requests and replies over
    // different connections (each node sends on the one it opened), so
    // there: (file, requester pnn, responder pnn, reqid).
    let mut opcodes: HashMap<(String, u32, u32, u32), u32> = HashMap::new();
    let mut failures = Vec::new();
    let mut checked = 0usize;
    let mut by_op: HashMap<String, usize> = HashMap::new();

    for p in &packets {
        let at = format!(
            "{}:{} ({})",
            p.file,
            p.line,
            match (p.node, p.to_daemon) {
                (false, true) => "CLI -> ctdbd",
                (false, false) => "ctdbd -> CLI",
                (true, true) => "node traffic, connecting side",
                (true, false) => "node traffic, listening side",
            }
        );
        let pkt = match Packet::decode(&p.bytes, &limits) {
            Ok(pkt) => pkt,
            Err(e) => {
                failures.push(format!(
                    "{at}: does not decode: {e}\n    {}",
                    hex_near(&p.bytes, 0)
                ));
                continue;
            }
        };
        let h = &pkt.header;
        if let Payload::ReqControl(c) = &pkt.payload {
            let key = if p.node {
                (p.file.clone(), h.srcnode, h.destnode, h.reqid)
            } else {
                (p.file.clone(), p.conn, 0, h.reqid)
            };
            opcodes.insert(key, c.opcode);
        }
        let key = if p.node {
            (p.file.clone(), h.destnode, h.srcnode, h.reqid)
        } else {
            (p.file.clone(), p.conn, 0, h.reqid)
        };
        let reply_opcode = opcodes.get(&key).copied();
        let (rebuilt, what) = match typed(&pkt, reply_opcode) {
            Ok(x) => x,
            Err(e) => {
                failures.push(format!("{at}: {e}"));
                continue;
            }
        };
        // The ctdb client library pads to 8; ctdbd also sizes each packet
        // at least as its fixed struct.
        let framing = if p.to_daemon && !p.node {
            Framing::Client
        } else {
            Framing::Daemon
        };
        let mut out = Vec::new();
        if let Err(e) = rebuilt.encode_framed(&mut out, framing) {
            failures.push(format!("{at}: {what}: does not encode: {e}"));
            continue;
        }
        if out != p.bytes {
            failures.push(format!(
                "{at}: {what}: re-encoded with {framing:?} framing differs, {}",
                diff_text(&p.bytes, &out)
            ));
            continue;
        }
        checked += 1;
        *by_op.entry(what).or_default() += 1;
    }

    let mut kinds: Vec<_> = by_op.into_iter().collect();
    kinds.sort();
    eprintln!(
        "golden: {checked} of {} packets round-tripped; {} kinds:",
        packets.len(),
        kinds.len()
    );
    for (k, n) in &kinds {
        eprintln!("  {n:5}  {k}");
    }
    // Group failures by what went wrong (the text after the location) so
    // one systematic difference does not drown the others.
    let mut groups: Vec<(String, Vec<&String>)> = Vec::new();
    for f in &failures {
        let key = f
            .split_once("): ")
            .map(|(_, rest)| rest.lines().next().unwrap_or(""))
            .unwrap_or("")
            .to_string();
        match groups.iter_mut().find(|(k, _)| *k == key) {
            Some((_, v)) => v.push(f),
            None => groups.push((key, vec![f])),
        }
    }
    let mut report = String::new();
    for (key, list) in &groups {
        let _ = writeln!(report, "== {} x {key}", list.len());
        for f in list.iter().take(2) {
            let _ = writeln!(report, "{f}");
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} recorded packets failed, {} kinds:\n{report}",
        failures.len(),
        packets.len(),
        groups.len()
    );
}

#[test]
fn loader_rejects_bad_hex() {
    assert!(unhex("0").is_err());
    assert!(unhex("zz").is_err());
    assert_eq!(unhex("00ff").unwrap(), vec![0, 255]);
}
