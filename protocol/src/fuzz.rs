//! The decoder's fuzz entry point.
//!
//! Why here and not in a fuzz crate: the allowed dependencies exclude
//! cargo-fuzz/libfuzzer, so the mutation driver is an ordinary bounded test
//! (`tests/fuzz_decode.rs`); any external fuzzer can call the same function.
//!
//! [`fuzz_decode`] runs every decoder that untrusted bytes reach in a
//! daemon: header, packet, then the typed control input (REQ_CONTROL, by its
//! opcode), the typed control output (REPLY_CONTROL; the opcode is not on
//! the wire, so the low byte of `reqid` chooses one), and the typed message
//! body (REQ_MESSAGE, by srvid). It must never panic. It also checks that
//! whatever decodes re-encodes to something that decodes to the same bytes
//! again; a violation is a bug and panics with the details.

use crate::control::{ControlData, ControlReplyData};
use crate::header::DecodeLimits;
use crate::message::MessageData;
use crate::packet::{Data, Framing, Packet, Payload};

/// Limits used by [`fuzz_decode`]: small, so hostile lengths are rejected
/// early as they would be in a daemon with a tight limit.
pub const FUZZ_LIMITS: DecodeLimits = DecodeLimits {
    max_packet: 1 << 20,
};

/// What [`fuzz_decode`] managed to decode; lets a driver measure coverage.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FuzzOutcome {
    /// The packet decoded.
    pub packet: bool,
    /// The control input, control output or message body decoded typed.
    pub typed: bool,
}

/// Decodes `bytes` every way a daemon would; never panics on any input.
pub fn fuzz_decode(bytes: &[u8]) -> FuzzOutcome {
    let mut outcome = FuzzOutcome::default();
    let (pkt, raw) = match Packet::decode_with_raw(bytes, &FUZZ_LIMITS) {
        Ok(p) => p,
        Err(e) => {
            // Errors must render (operators read them).
            let _ = e.to_string();
            return outcome;
        }
    };
    outcome.packet = true;
    check_packet_roundtrip(&pkt);

    match &pkt.payload {
        Payload::ReqControl(c) => {
            if let Data::Raw(b) = c.data {
                if let Ok(d) = ControlData::decode(c.opcode, b) {
                    outcome.typed = true;
                    assert_eq!(d.opcode(), c.opcode, "typed control changed opcode");
                    let enc = bytes_of(|o| d.push(o));
                    assert_eq!(enc.len(), d.wire_len(), "ControlData wire_len for {d:?}");
                    let again = ControlData::decode(c.opcode, &enc)
                        .unwrap_or_else(|e| panic!("re-decode of {d:?} failed: {e}"));
                    assert_eq!(bytes_of(|o| again.push(o)), enc, "control input not stable");
                }
            }
        }
        Payload::ReplyControl(r) => {
            let opcode = raw.reqid & 0xFF;
            if let Data::Raw(b) = r.data {
                if let Ok(d) = ControlReplyData::decode(opcode, b) {
                    outcome.typed = true;
                    let enc = bytes_of(|o| d.push(o));
                    assert_eq!(
                        enc.len(),
                        d.wire_len(),
                        "ControlReplyData wire_len for {d:?}"
                    );
                    let again = ControlReplyData::decode(opcode, &enc)
                        .unwrap_or_else(|e| panic!("re-decode of {d:?} failed: {e}"));
                    assert_eq!(
                        bytes_of(|o| again.push(o)),
                        enc,
                        "control output not stable"
                    );
                }
            }
        }
        Payload::ReqMessage(m) => {
            if let Data::Raw(b) = m.data {
                if let Ok(d) = MessageData::decode(m.srvid, b) {
                    outcome.typed = true;
                    let enc = bytes_of(|o| d.push(o));
                    assert_eq!(enc.len(), d.wire_len(), "MessageData wire_len for {d:?}");
                    let again = MessageData::decode(m.srvid, &enc)
                        .unwrap_or_else(|e| panic!("re-decode of {d:?} failed: {e}"));
                    assert_eq!(bytes_of(|o| again.push(o)), enc, "message body not stable");
                }
            }
        }
        _ => {}
    }
    outcome
}

fn bytes_of(f: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut v = Vec::new();
    f(&mut v);
    v
}

/// A decoded packet re-encodes (every framing) and decodes to itself.
fn check_packet_roundtrip(pkt: &Packet<'_>) {
    for framing in [Framing::Daemon, Framing::Client, Framing::Unpadded] {
        let mut out = Vec::new();
        let n = pkt
            .encode_framed(&mut out, framing)
            .unwrap_or_else(|e| panic!("re-encode of {pkt:?} failed: {e}"));
        assert_eq!(n, out.len());
        let back = Packet::decode(&out, &DecodeLimits::default())
            .unwrap_or_else(|e| panic!("re-decode of {pkt:?} ({framing:?}) failed: {e}"));
        assert_eq!(&back, pkt, "packet not stable under {framing:?}");
    }
}
