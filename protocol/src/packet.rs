//! Whole packets: the header plus one typed payload per operation.
//!
//! Why payloads borrow: a daemon decodes every packet it receives, and the
//! hot ones (REQ_CALL, REPLY_CALL, REQ_DMASTER, REQ_MESSAGE) carry keys and
//! record data that are usually forwarded or stored as they are. Decoding
//! therefore hands out `&'a [u8]` views into the receive buffer and copies
//! nothing; encoding appends to a caller-owned `Vec<u8>` that can be reused
//! for every send.
//!
//! Framing follows upstream exactly (see [`Framing`]): ctdbd allocates at
//! least `sizeof(struct ctdb_*_old)` and pads to 8, rewriting the length;
//! the ctdb client library only pads; smbd does neither. A decoder must
//! accept all three, so it relies on the inner length fields (`keylen`,
//! `datalen`, ...) and ignores bytes between the end of the payload and the
//! header's length, as upstream does.
//!
//! Control and message bodies are kept raw by the decoder
//! ([`Data::Raw`]); their typed form is decoded on demand given the opcode
//! or srvid ([`ControlData::decode`], [`ControlReplyData::decode`],
//! [`MessageData::decode`](crate::message::MessageData)), because a daemon
//! must still answer a control whose data is malformed (status −1), which
//! it cannot do if the whole packet failed to decode.

use crate::control::{ControlData, ControlReplyData};
use crate::error::ProtocolError;
use crate::header::{pad_len, DecodeLimits, Header, Operation, RawHeader, HEADER_LEN};
use crate::header::{CTDB_MAGIC, CTDB_PROTOCOL};
use crate::message::MessageData;
use crate::wire::{Put, Reader};

/// How an encoder sizes a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Framing {
    /// ctdbd: length = max(exact size, `sizeof(struct ctdb_*_old)`), then
    /// padded with zeros to a multiple of 8 and the length rewritten.
    #[default]
    Daemon,
    /// The ctdb client library (`ctdb_allocate_pkt`): exact size padded to
    /// a multiple of 8.
    Client,
    /// smbd (`ctdbd_conn.c`): exact size, no padding.
    Unpadded,
}

/// Something that knows its wire size and can append itself; implemented
/// by the typed control and message bodies so a packet can carry either
/// raw bytes or a typed value and encode both the same way.
pub trait Body {
    /// Exact number of bytes [`Body::push_body`] appends.
    fn body_len(&self) -> usize;
    fn push_body(&self, out: &mut Vec<u8>);
}

/// A control or message body: raw bytes (always, after decoding) or a typed
/// value (when building a packet to send).
#[derive(Debug, Clone, PartialEq)]
pub enum Data<'a, T> {
    Raw(&'a [u8]),
    Typed(T),
}

impl<T> Default for Data<'_, T> {
    fn default() -> Self {
        Data::Raw(&[])
    }
}

impl<T: Body> Data<'_, T> {
    pub fn len(&self) -> usize {
        match self {
            Data::Raw(b) => b.len(),
            Data::Typed(t) => t.body_len(),
        }
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    pub fn push(&self, out: &mut Vec<u8>) {
        match self {
            Data::Raw(b) => out.put_bytes(b),
            Data::Typed(t) => t.push_body(out),
        }
    }
    /// The encoded bytes (a copy for typed data; tests, cold paths).
    pub fn to_vec(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(self.len());
        self.push(&mut v);
        v
    }
}

/// REQ_CALL (`ctdb_req_call_old`): run `callid` on the record `key`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReqCall<'a> {
    /// `CTDB_IMMEDIATE_MIGRATION` etc., see [`crate::constants`].
    pub flags: u32,
    pub db_id: u32,
    /// `CTDB_NULL_FUNC`, `CTDB_FETCH_FUNC`, `CTDB_FETCH_WITH_HEADER_FUNC`.
    pub callid: u32,
    pub hopcount: u32,
    pub key: &'a [u8],
    pub calldata: &'a [u8],
}

/// REPLY_CALL: status and the call's reply data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReplyCall<'a> {
    pub status: i32,
    pub data: &'a [u8],
}

/// REPLY_ERROR: status and a message (ctdbd includes the NUL).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReplyError<'a> {
    pub status: i32,
    pub msg: &'a [u8],
}

/// REQ_DMASTER: sent to the lmaster to hand a record to a new dmaster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReqDmaster<'a> {
    pub db_id: u32,
    pub rsn: u64,
    /// The new dmaster.
    pub dmaster: u32,
    pub key: &'a [u8],
    pub data: &'a [u8],
    /// The record's ltdb flags, sent after the data and not counted in
    /// `datalen`. Upstream reads them only when the packet is long enough
    /// and uses 0 otherwise; so does the decoder. Always encoded.
    pub record_flags: u32,
}

/// REPLY_DMASTER: the lmaster tells the new dmaster it owns the record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReplyDmaster<'a> {
    pub db_id: u32,
    pub rsn: u64,
    pub key: &'a [u8],
    pub data: &'a [u8],
    /// As in [`ReqDmaster::record_flags`].
    pub record_flags: u32,
}

/// REQ_MESSAGE: data for whoever registered `srvid`.
#[derive(Debug, Clone, PartialEq)]
pub struct ReqMessage<'a> {
    pub srvid: u64,
    pub data: Data<'a, MessageData<'a>>,
}

impl<'a> ReqMessage<'a> {
    /// A message with raw data.
    pub fn raw(srvid: u64, data: &'a [u8]) -> Self {
        ReqMessage {
            srvid,
            data: Data::Raw(data),
        }
    }

    /// A message with a typed body; the srvid is the one `data` belongs to
    /// (for [`MessageData::Other`] the caller's `srvid`).
    pub fn typed(srvid: u64, data: MessageData<'a>) -> Self {
        ReqMessage {
            srvid,
            data: Data::Typed(data),
        }
    }

    /// The typed body for this message's srvid.
    pub fn decode_data(&self) -> Result<MessageData<'a>, ProtocolError> {
        match &self.data {
            Data::Raw(b) => MessageData::decode(self.srvid, b),
            Data::Typed(t) => Ok(t.clone()),
        }
    }
}

/// REQ_CONTROL (`ctdb_req_control_old`).
#[derive(Debug, Clone, PartialEq)]
pub struct ReqControl<'a> {
    /// Raw opcode: unknown opcodes must still be answered (status −1).
    pub opcode: u32,
    /// Opcode-specific (REGISTER_SRVID's srvid, FREEZE's priority, ...).
    pub srvid: u64,
    /// Ignored from clients; ctdbd substitutes its own id.
    pub client_id: u32,
    /// `CTDB_CTRL_FLAG_NOREPLY` and opcode-specific upper bits.
    pub flags: u32,
    pub data: Data<'a, ControlData<'a>>,
}

impl<'a> ReqControl<'a> {
    /// A control request carrying typed data; the opcode comes from `data`.
    pub fn new(data: ControlData<'a>) -> Self {
        ReqControl {
            opcode: data.opcode(),
            srvid: 0,
            client_id: 0,
            flags: 0,
            data: Data::Typed(data),
        }
    }

    /// A control request with raw data.
    pub fn raw(opcode: u32, data: &'a [u8]) -> Self {
        ReqControl {
            opcode,
            srvid: 0,
            client_id: 0,
            flags: 0,
            data: Data::Raw(data),
        }
    }

    pub fn with_srvid(mut self, srvid: u64) -> Self {
        self.srvid = srvid;
        self
    }

    pub fn with_flags(mut self, flags: u32) -> Self {
        self.flags = flags;
        self
    }

    pub fn with_client_id(mut self, client_id: u32) -> Self {
        self.client_id = client_id;
        self
    }

    /// True if the sender wants no reply (`CTDB_CTRL_FLAG_NOREPLY`).
    pub fn noreply(&self) -> bool {
        self.flags & crate::constants::CTDB_CTRL_FLAG_NOREPLY != 0
    }

    /// The typed input for this control's opcode.
    pub fn decode_data(&self) -> Result<ControlData<'a>, ProtocolError> {
        match &self.data {
            Data::Raw(b) => ControlData::decode(self.opcode, b),
            Data::Typed(t) => Ok(t.clone()),
        }
    }
}

/// REPLY_CONTROL (`ctdb_reply_control_old`).
#[derive(Debug, Clone, PartialEq)]
pub struct ReplyControl<'a> {
    /// Result; some controls return their value here (PING, GET_PNN, ...).
    pub status: i32,
    pub data: Data<'a, ControlReplyData<'a>>,
    /// Error text; ctdbd sends it without a NUL.
    pub errmsg: &'a [u8],
}

impl<'a> ReplyControl<'a> {
    /// A reply carrying typed output.
    pub fn new(status: i32, data: ControlReplyData<'a>) -> Self {
        ReplyControl {
            status,
            data: Data::Typed(data),
            errmsg: &[],
        }
    }

    /// A reply with status only (no data, no error message).
    pub fn status(status: i32) -> Self {
        ReplyControl {
            status,
            data: Data::Raw(&[]),
            errmsg: &[],
        }
    }

    /// A failure reply with an error message.
    pub fn error(status: i32, errmsg: &'a [u8]) -> Self {
        ReplyControl {
            status,
            data: Data::Raw(&[]),
            errmsg,
        }
    }

    /// The typed output, given the opcode of the request this answers.
    /// Upstream only looks at the data when `status == 0`.
    pub fn decode_data(&self, opcode: u32) -> Result<ControlReplyData<'a>, ProtocolError> {
        match &self.data {
            Data::Raw(b) => ControlReplyData::decode(opcode, b),
            Data::Typed(t) => Ok(t.clone()),
        }
    }
}

/// REQ_KEEPALIVE body (`ctdb_req_keepalive_old`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReqKeepalive {
    /// `(SAMBA_VERSION_MAJOR << 16) | SAMBA_VERSION_MINOR`.
    pub version: u32,
    /// Seconds since the sender's ctdbd started.
    pub uptime: u32,
}

/// REQ_TUNNEL (`ctdb_req_tunnel_old`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReqTunnel<'a> {
    pub tunnel_id: u64,
    /// `CTDB_TUNNEL_FLAG_*`.
    pub flags: u32,
    pub data: &'a [u8],
}

/// One payload per operation.
#[derive(Debug, Clone, PartialEq)]
pub enum Payload<'a> {
    ReqCall(ReqCall<'a>),
    ReplyCall(ReplyCall<'a>),
    ReqDmaster(ReqDmaster<'a>),
    ReplyDmaster(ReplyDmaster<'a>),
    ReplyError(ReplyError<'a>),
    ReqMessage(ReqMessage<'a>),
    ReqControl(ReqControl<'a>),
    ReplyControl(ReplyControl<'a>),
    /// `None` is the pre-4.x header-only keepalive (length 32), which a
    /// 4.17 node treats as a version mismatch.
    ReqKeepalive(Option<ReqKeepalive>),
    ReqTunnel(ReqTunnel<'a>),
}

fn u32_len(n: usize, what: &'static str) -> Result<u32, ProtocolError> {
    u32::try_from(n).map_err(|_| ProtocolError::TooLarge { what, len: n })
}

impl<'a> Payload<'a> {
    pub fn operation(&self) -> Operation {
        match self {
            Payload::ReqCall(_) => Operation::ReqCall,
            Payload::ReplyCall(_) => Operation::ReplyCall,
            Payload::ReqDmaster(_) => Operation::ReqDmaster,
            Payload::ReplyDmaster(_) => Operation::ReplyDmaster,
            Payload::ReplyError(_) => Operation::ReplyError,
            Payload::ReqMessage(_) => Operation::ReqMessage,
            Payload::ReqControl(_) => Operation::ReqControl,
            Payload::ReplyControl(_) => Operation::ReplyControl,
            Payload::ReqKeepalive(_) => Operation::ReqKeepalive,
            Payload::ReqTunnel(_) => Operation::ReqTunnel,
        }
    }

    /// Exact size of the payload (everything after the header, no padding).
    pub fn wire_len(&self) -> usize {
        match self {
            Payload::ReqCall(c) => 24 + c.key.len() + c.calldata.len(),
            Payload::ReplyCall(c) => 8 + c.data.len(),
            Payload::ReqDmaster(c) => 28 + c.key.len() + c.data.len() + 4,
            Payload::ReplyDmaster(c) => 24 + c.key.len() + c.data.len() + 4,
            Payload::ReplyError(c) => 8 + c.msg.len(),
            Payload::ReqMessage(c) => 12 + c.data.len(),
            Payload::ReqControl(c) => 28 + c.data.len(),
            Payload::ReplyControl(c) => 12 + c.data.len() + c.errmsg.len(),
            Payload::ReqKeepalive(Some(_)) => 8,
            Payload::ReqKeepalive(None) => 0,
            Payload::ReqTunnel(c) => 16 + c.data.len(),
        }
    }

    /// Checks that every inner length fits its `u32` field.
    fn check_lengths(&self) -> Result<(), ProtocolError> {
        match self {
            Payload::ReqCall(c) => {
                u32_len(c.key.len(), "req_call.keylen")?;
                u32_len(c.calldata.len(), "req_call.calldatalen")?;
            }
            Payload::ReplyCall(c) => {
                u32_len(c.data.len(), "reply_call.datalen")?;
            }
            Payload::ReqDmaster(c) => {
                u32_len(c.key.len(), "req_dmaster.keylen")?;
                u32_len(c.data.len(), "req_dmaster.datalen")?;
            }
            Payload::ReplyDmaster(c) => {
                u32_len(c.key.len(), "reply_dmaster.keylen")?;
                u32_len(c.data.len(), "reply_dmaster.datalen")?;
            }
            Payload::ReplyError(c) => {
                u32_len(c.msg.len(), "reply_error.msglen")?;
            }
            Payload::ReqMessage(c) => {
                u32_len(c.data.len(), "req_message.datalen")?;
            }
            Payload::ReqControl(c) => {
                u32_len(c.data.len(), "req_control.datalen")?;
            }
            Payload::ReplyControl(c) => {
                u32_len(c.data.len(), "reply_control.datalen")?;
                u32_len(c.errmsg.len(), "reply_control.errorlen")?;
            }
            Payload::ReqKeepalive(_) => {}
            Payload::ReqTunnel(c) => {
                u32_len(c.data.len(), "req_tunnel.datalen")?;
            }
        }
        Ok(())
    }

    /// Appends the payload (no header, no padding). Lengths must have been
    /// checked to fit in `u32` (see [`Packet::encode_framed`]).
    #[inline]
    pub fn push(&self, out: &mut Vec<u8>) {
        match self {
            Payload::ReqCall(c) => {
                out.put_u32(c.flags);
                out.put_u32(c.db_id);
                out.put_u32(c.callid);
                out.put_u32(c.hopcount);
                out.put_u32(c.key.len() as u32);
                out.put_u32(c.calldata.len() as u32);
                out.put_bytes(c.key);
                out.put_bytes(c.calldata);
            }
            Payload::ReplyCall(c) => {
                out.put_i32(c.status);
                out.put_u32(c.data.len() as u32);
                out.put_bytes(c.data);
            }
            Payload::ReqDmaster(c) => {
                out.put_u32(c.db_id);
                out.put_zeros(4);
                out.put_u64(c.rsn);
                out.put_u32(c.dmaster);
                out.put_u32(c.key.len() as u32);
                out.put_u32(c.data.len() as u32);
                out.put_bytes(c.key);
                out.put_bytes(c.data);
                out.put_u32(c.record_flags);
            }
            Payload::ReplyDmaster(c) => {
                out.put_u32(c.db_id);
                out.put_zeros(4);
                out.put_u64(c.rsn);
                out.put_u32(c.key.len() as u32);
                out.put_u32(c.data.len() as u32);
                out.put_bytes(c.key);
                out.put_bytes(c.data);
                out.put_u32(c.record_flags);
            }
            Payload::ReplyError(c) => {
                out.put_i32(c.status);
                out.put_u32(c.msg.len() as u32);
                out.put_bytes(c.msg);
            }
            Payload::ReqMessage(c) => {
                out.put_u64(c.srvid);
                out.put_u32(c.data.len() as u32);
                c.data.push(out);
            }
            Payload::ReqControl(c) => {
                out.put_u32(c.opcode);
                out.put_u32(0);
                out.put_u64(c.srvid);
                out.put_u32(c.client_id);
                out.put_u32(c.flags);
                out.put_u32(c.data.len() as u32);
                c.data.push(out);
            }
            Payload::ReplyControl(c) => {
                out.put_i32(c.status);
                out.put_u32(c.data.len() as u32);
                out.put_u32(c.errmsg.len() as u32);
                c.data.push(out);
                out.put_bytes(c.errmsg);
            }
            Payload::ReqKeepalive(Some(k)) => {
                out.put_u32(k.version);
                out.put_u32(k.uptime);
            }
            Payload::ReqKeepalive(None) => {}
            Payload::ReqTunnel(c) => {
                out.put_u64(c.tunnel_id);
                out.put_u32(c.flags);
                out.put_u32(c.data.len() as u32);
                out.put_bytes(c.data);
            }
        }
    }

    /// Decodes the payload of operation `op` from `body`, the bytes after
    /// the header up to the header's length. Bytes after the payload's own
    /// end (padding) are ignored.
    #[inline]
    pub fn decode(op: Operation, body: &'a [u8]) -> Result<Payload<'a>, ProtocolError> {
        let mut r = Reader::new(body);
        Ok(match op {
            Operation::ReqCall => {
                let flags = r.u32("req_call.flags")?;
                let db_id = r.u32("req_call.db_id")?;
                let callid = r.u32("req_call.callid")?;
                let hopcount = r.u32("req_call.hopcount")?;
                let keylen = r.u32("req_call.keylen")? as usize;
                let calldatalen = r.u32("req_call.calldatalen")? as usize;
                let key = r.bytes(keylen, "req_call.key")?;
                let calldata = r.bytes(calldatalen, "req_call.calldata")?;
                Payload::ReqCall(ReqCall {
                    flags,
                    db_id,
                    callid,
                    hopcount,
                    key,
                    calldata,
                })
            }
            Operation::ReplyCall => {
                let status = r.i32("reply_call.status")?;
                let n = r.u32("reply_call.datalen")? as usize;
                let data = r.bytes(n, "reply_call.data")?;
                Payload::ReplyCall(ReplyCall { status, data })
            }
            Operation::ReqDmaster => {
                let db_id = r.u32("req_dmaster.db_id")?;
                r.skip(4, "req_dmaster.pad")?;
                let rsn = r.u64("req_dmaster.rsn")?;
                let dmaster = r.u32("req_dmaster.dmaster")?;
                let keylen = r.u32("req_dmaster.keylen")? as usize;
                let datalen = r.u32("req_dmaster.datalen")? as usize;
                let key = r.bytes(keylen, "req_dmaster.key")?;
                let data = r.bytes(datalen, "req_dmaster.data")?;
                let record_flags = trailing_flags(&mut r)?;
                Payload::ReqDmaster(ReqDmaster {
                    db_id,
                    rsn,
                    dmaster,
                    key,
                    data,
                    record_flags,
                })
            }
            Operation::ReplyDmaster => {
                let db_id = r.u32("reply_dmaster.db_id")?;
                r.skip(4, "reply_dmaster.pad")?;
                let rsn = r.u64("reply_dmaster.rsn")?;
                let keylen = r.u32("reply_dmaster.keylen")? as usize;
                let datalen = r.u32("reply_dmaster.datalen")? as usize;
                let key = r.bytes(keylen, "reply_dmaster.key")?;
                let data = r.bytes(datalen, "reply_dmaster.data")?;
                let record_flags = trailing_flags(&mut r)?;
                Payload::ReplyDmaster(ReplyDmaster {
                    db_id,
                    rsn,
                    key,
                    data,
                    record_flags,
                })
            }
            Operation::ReplyError => {
                let status = r.i32("reply_error.status")?;
                let n = r.u32("reply_error.msglen")? as usize;
                let msg = r.bytes(n, "reply_error.msg")?;
                Payload::ReplyError(ReplyError { status, msg })
            }
            Operation::ReqMessage => {
                let srvid = r.u64("req_message.srvid")?;
                let n = r.u32("req_message.datalen")? as usize;
                let data = r.bytes(n, "req_message.data")?;
                Payload::ReqMessage(ReqMessage::raw(srvid, data))
            }
            Operation::ReqControl => {
                let opcode = r.u32("req_control.opcode")?;
                r.skip(4, "req_control.pad")?;
                let srvid = r.u64("req_control.srvid")?;
                let client_id = r.u32("req_control.client_id")?;
                let flags = r.u32("req_control.flags")?;
                let n = r.u32("req_control.datalen")? as usize;
                let data = r.bytes(n, "req_control.data")?;
                Payload::ReqControl(ReqControl {
                    opcode,
                    srvid,
                    client_id,
                    flags,
                    data: Data::Raw(data),
                })
            }
            Operation::ReplyControl => {
                let status = r.i32("reply_control.status")?;
                let datalen = r.u32("reply_control.datalen")? as usize;
                let errorlen = r.u32("reply_control.errorlen")? as usize;
                let data = r.bytes(datalen, "reply_control.data")?;
                let errmsg = r.bytes(errorlen, "reply_control.errmsg")?;
                Payload::ReplyControl(ReplyControl {
                    status,
                    data: Data::Raw(data),
                    errmsg,
                })
            }
            Operation::ReqKeepalive => {
                if body.is_empty() {
                    Payload::ReqKeepalive(None)
                } else {
                    let version = r.u32("req_keepalive.version")?;
                    let uptime = r.u32("req_keepalive.uptime")?;
                    Payload::ReqKeepalive(Some(ReqKeepalive { version, uptime }))
                }
            }
            Operation::ReqTunnel => {
                let tunnel_id = r.u64("req_tunnel.tunnel_id")?;
                let flags = r.u32("req_tunnel.flags")?;
                let n = r.u32("req_tunnel.datalen")? as usize;
                let data = r.bytes(n, "req_tunnel.data")?;
                Payload::ReqTunnel(ReqTunnel {
                    tunnel_id,
                    flags,
                    data,
                })
            }
        })
    }
}

/// The record flags after a DMASTER packet's data: present when the packet
/// is long enough (upstream: `len <= hdr.length`), else 0.
fn trailing_flags(r: &mut Reader<'_>) -> Result<u32, ProtocolError> {
    if r.remaining().len() >= 4 {
        r.u32("dmaster.record_flags")
    } else {
        Ok(0)
    }
}

/// A whole packet: header fields and payload.
#[derive(Debug, Clone, PartialEq)]
pub struct Packet<'a> {
    pub header: Header,
    pub payload: Payload<'a>,
}

impl<'a> Packet<'a> {
    pub fn new(header: Header, payload: Payload<'a>) -> Self {
        Packet { header, payload }
    }

    pub fn operation(&self) -> Operation {
        self.payload.operation()
    }

    /// Decodes one packet from the start of `buf`. The header's length must
    /// be within `32..=limits.max_packet` and within `buf`; bytes of `buf`
    /// after that length are not looked at, nor are bytes between the end of
    /// the payload and the length (padding).
    #[inline]
    pub fn decode(buf: &'a [u8], limits: &DecodeLimits) -> Result<Packet<'a>, ProtocolError> {
        Ok(Self::decode_with_raw(buf, limits)?.0)
    }

    /// As [`Packet::decode`], also returning the header as received
    /// (length, operation, ...).
    #[inline]
    pub fn decode_with_raw(
        buf: &'a [u8],
        limits: &DecodeLimits,
    ) -> Result<(Packet<'a>, RawHeader), ProtocolError> {
        let raw = RawHeader::parse(buf)?;
        raw.check(limits)?;
        let op = raw.operation()?;
        let len = raw.length as usize;
        if buf.len() < len {
            return Err(ProtocolError::Short {
                what: "packet (header length)",
                need: len,
                have: buf.len(),
            });
        }
        let payload = Payload::decode(op, &buf[HEADER_LEN..len])?;
        Ok((
            Packet {
                header: raw.header(),
                payload,
            },
            raw,
        ))
    }

    /// Encodes as ctdbd does ([`Framing::Daemon`]), appending to `out`.
    /// Returns the number of bytes appended (the length field).
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<usize, ProtocolError> {
        self.encode_framed(out, Framing::Daemon)
    }

    /// The size [`Packet::encode_framed`] will append.
    pub fn encoded_len(&self, framing: Framing) -> usize {
        let op = self.payload.operation();
        let exact = HEADER_LEN + self.payload.wire_len();
        if let Payload::ReqKeepalive(None) = self.payload {
            // The legacy keepalive is a bare header, whatever the framing.
            return HEADER_LEN;
        }
        match framing {
            Framing::Daemon => pad_len(exact.max(op.struct_len())),
            Framing::Client => pad_len(exact),
            Framing::Unpadded => exact,
        }
    }

    /// Encodes with the given framing, appending header, payload and zero
    /// padding to `out`; the length field is the total appended. Fails only
    /// if a length does not fit its `u32` field.
    pub fn encode_framed(
        &self,
        out: &mut Vec<u8>,
        framing: Framing,
    ) -> Result<usize, ProtocolError> {
        self.payload.check_lengths()?;
        let total = self.encoded_len(framing);
        let length = u32_len(total, "packet length")?;
        let start = out.len();
        out.reserve(total);
        RawHeader {
            length,
            magic: CTDB_MAGIC,
            version: CTDB_PROTOCOL,
            generation: self.header.generation,
            operation: self.payload.operation() as u32,
            destnode: self.header.destnode,
            srcnode: self.header.srcnode,
            reqid: self.header.reqid,
        }
        .push(out);
        self.payload.push(out);
        debug_assert!(out.len() - start <= total);
        out.resize(start + total, 0);
        Ok(total)
    }

    /// Encodes into a fresh vector (tests, cold paths).
    pub fn to_bytes(&self) -> Result<Vec<u8>, ProtocolError> {
        let mut v = Vec::new();
        self.encode(&mut v)?;
        Ok(v)
    }
}
