//! The CTDB wire format of Samba 4.17, byte for byte: packet header and
//! operations, every control with its input and output, every marshalled
//! type. This crate does no I/O; it turns bytes into values and back.
//!
//! Decoding borrows from the receive buffer; encoding appends to a reusable
//! buffer. Any byte string decodes to a value or a [`ProtocolError`], never
//! a panic or an over-read.
//!
//! # Map
//!
//! * [`header`]: the 32-byte header, [`Operation`], [`DecodeLimits`],
//!   stream framing ([`frame_length`]) and padding.
//! * [`packet`]: [`Packet`] = [`Header`] + [`Payload`], one payload struct per
//!   operation ([`ReqCall`], [`ReplyCall`], [`ReqDmaster`], [`ReplyDmaster`],
//!   [`ReplyError`], [`ReqMessage`], [`ReqControl`], [`ReplyControl`],
//!   [`ReqKeepalive`], [`ReqTunnel`]).
//! * [`control`]: [`Opcode`] (all of `enum ctdb_controls`, obsolete ones
//!   included), [`ControlData`] (typed request input per opcode),
//!   [`ControlReplyData`] (typed reply output per opcode).
//! * [`message`]: [`MessageData`], REQ_MESSAGE bodies typed by srvid.
//! * [`srvid`], [`constants`]: well-known srvids and every other named
//!   number (special pnns, call ids and flags, node flags, capabilities,
//!   run states, recovery modes, record and tdb flags).
//! * [`types`]: the marshalled data types (§12 of the spec).
//! * [`fuzz`]: [`fuzz::fuzz_decode`], the decoder entry point for fuzzing.
//!
//! # Decoding
//!
//! ```
//! use ctdb_protocol::{ControlData, ControlReplyData, DecodeLimits, Packet, Payload};
//!
//! # fn handle(buf: &[u8]) -> Result<(), ctdb_protocol::ProtocolError> {
//! let pkt = Packet::decode(buf, &DecodeLimits::default())?;
//! match &pkt.payload {
//!     Payload::ReqControl(c) => {
//!         // raw bytes in the packet, typed on demand:
//!         let input: ControlData<'_> = c.decode_data()?; // = ControlData::decode(c.opcode, bytes)
//!         let _ = input;
//!     }
//!     Payload::ReplyControl(r) if r.status == 0 => {
//!         // the reply's type follows from the request's opcode
//!         let out = r.decode_data(ctdb_protocol::Opcode::GetNodemap as u32)?;
//!         if let ControlReplyData::GetNodemap(map) = out { let _ = map; }
//!     }
//!     Payload::ReqCall(call) => { let _key: &[u8] = call.key; } // borrowed, no copy
//!     _ => {}
//! }
//! # Ok(()) }
//! ```
//!
//! [`Packet::decode`] checks length (`32..=max_packet`, and within the
//! buffer), magic, version and operation, then every inner length. It
//! relies on inner lengths only: padded packets (ctdbd, client library) and
//! unpadded ones (smbd) both decode, and bytes after the payload are
//! ignored. Control and message data stay raw ([`Data::Raw`]) until asked
//! for ([`ControlData::decode`], [`ControlReplyData::decode`],
//! [`MessageData::decode`]), so a daemon can still answer a control whose
//! data is malformed.
//!
//! # Encoding
//!
//! ```
//! use ctdb_protocol::constants::CTDB_CURRENT_NODE;
//! use ctdb_protocol::{ControlData, Header, Packet, Payload, ReqControl, Framing};
//!
//! let mut out = Vec::new(); // reuse across sends
//! let pkt = Packet::new(
//!     Header::new(0, CTDB_CURRENT_NODE, 0, 42),
//!     Payload::ReqControl(ReqControl::new(ControlData::Getdbpath(0x1234))),
//! );
//! let n = pkt.encode(&mut out).unwrap(); // ctdbd framing: padded to 8
//! assert_eq!(n, 64);
//! assert_eq!(pkt.encode_framed(&mut out, Framing::Unpadded).unwrap(), 64); // smbd style
//! ```
//!
//! [`Packet::encode`] writes header, payload and zero padding and sets the
//! length field to the total, as ctdbd does ([`Framing::Daemon`]); see
//! [`Framing`] for the client library's and smbd's variants. A reply's
//! header is [`Header::reply`] of the request's.
//!
//! # Tests (`cargo test -p ctdb-protocol`)
//!
//! * `tests/packets.rs`, `tests/controls.rs`: seeded random round trips of
//!   every operation, every control input and output and every typed
//!   message body; framing lengths, byte offsets, header checks,
//!   truncations (`CTDB_TEST_SEED` replays a run).
//! * `tests/fuzz_decode.rs`: bounded mutation fuzzing of
//!   [`fuzz::fuzz_decode`] (`CTDB_FUZZ_ITERS`, default 300 000).
//! * `tests/cli_interop.rs`, `tests/smbd_interop.rs`: Debian's `ctdb` tool
//!   and `smbd` against a stand-in daemon built on this crate.
//! * `tests/golden.rs`: packets recorded between Debian's ctdbd and its
//!   tools re-encode byte for byte.
//!
//! Throughput: `cargo run --release -p ctdb-perf --bin codec-bench`.

#![forbid(unsafe_code)]

pub mod constants;
pub mod control;
pub mod error;
pub mod fuzz;
pub mod header;
pub mod message;
pub mod packet;
pub mod srvid;
pub mod types;
pub mod wire;

pub use control::{opcode_name, ControlData, ControlReplyData, DbIdPad, Opcode};
pub use error::ProtocolError;
pub use header::{
    frame_length, DecodeLimits, Header, Operation, RawHeader, CTDB_DS_ALIGNMENT, CTDB_MAGIC,
    CTDB_PROTOCOL, HEADER_LEN,
};
pub use message::MessageData;
pub use packet::{
    Body, Data, Framing, Packet, Payload, ReplyCall, ReplyControl, ReplyDmaster, ReplyError,
    ReqCall, ReqControl, ReqDmaster, ReqKeepalive, ReqMessage, ReqTunnel,
};
pub use wire::{Put, Reader, Wire};
