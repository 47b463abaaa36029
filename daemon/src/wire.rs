//! A minimal local encoder/decoder for the few packets the daemon handles so
//! far: the request header, REQ_CONTROL in, REPLY_CONTROL out.
//!
//! TODO(protoA): replace with `ctdb_protocol`'s header, packet and control
//! types once they are exported from the protocol crate; the layouts below
//! are the 4.17 ones (`ctdb_req_control_old`, `ctdb_reply_control_old`).

use std::fmt;

pub const CTDB_MAGIC: u32 = 0x4354_4442;
pub const CTDB_PROTOCOL: u32 = 1;
/// `INVALID_GENERATION`: the vnn_map generation before the first recovery.
pub const INVALID_GENERATION: u32 = 1;
pub const CURRENT_NODE: u32 = 0xF000_0001;

pub const REQ_CALL: u32 = 0;
pub const REQ_MESSAGE: u32 = 5;
pub const REQ_CONTROL: u32 = 7;
pub const REPLY_CONTROL: u32 = 8;
pub const REQ_TUNNEL: u32 = 10;

pub const CONTROL_PING: u32 = 3;
pub const CONTROL_REGISTER_SRVID: u32 = 23;
pub const CONTROL_DEREGISTER_SRVID: u32 = 24;
pub const CONTROL_GET_PID: u32 = 30;
pub const CONTROL_GET_PNN: u32 = 35;

pub const CTRL_FLAG_NOREPLY: u32 = 1;

const HEADER_LEN: usize = 32;
/// Fixed part of REQ_CONTROL: header + opcode, pad, srvid, client_id,
/// flags, datalen.
const REQ_CONTROL_FIXED: usize = 60;
/// Fixed part of REPLY_CONTROL: header + status, datalen, errorlen.
const REPLY_CONTROL_FIXED: usize = 44;
/// `sizeof(struct ctdb_reply_control_old)`: ctdbd never sends less.
const REPLY_CONTROL_MIN: usize = 48;

/// A malformed packet: which field, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WireError(pub String);

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn u32_at(b: &[u8], off: usize) -> u32 {
    u32::from_ne_bytes([b[off], b[off + 1], b[off + 2], b[off + 3]])
}

fn u64_at(b: &[u8], off: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[off..off + 8]);
    u64::from_ne_bytes(a)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub length: u32,
    pub magic: u32,
    pub version: u32,
    pub generation: u32,
    pub operation: u32,
    pub destnode: u32,
    pub srcnode: u32,
    pub reqid: u32,
}

impl Header {
    pub fn parse(b: &[u8]) -> Result<Header, WireError> {
        if b.len() < HEADER_LEN {
            return Err(WireError(format!(
                "packet of {} bytes is shorter than the 32-byte header",
                b.len()
            )));
        }
        Ok(Header {
            length: u32_at(b, 0),
            magic: u32_at(b, 4),
            version: u32_at(b, 8),
            generation: u32_at(b, 12),
            operation: u32_at(b, 16),
            destnode: u32_at(b, 20),
            srcnode: u32_at(b, 24),
            reqid: u32_at(b, 28),
        })
    }
}

/// A decoded REQ_CONTROL, borrowing its data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReqControl<'a> {
    pub destnode: u32,
    pub reqid: u32,
    pub opcode: u32,
    pub srvid: u64,
    pub client_id: u32,
    pub flags: u32,
    pub data: &'a [u8],
}

impl<'a> ReqControl<'a> {
    pub fn parse(b: &'a [u8]) -> Result<ReqControl<'a>, WireError> {
        let h = Header::parse(b)?;
        if b.len() < REQ_CONTROL_FIXED {
            return Err(WireError(format!(
                "REQ_CONTROL of {} bytes is shorter than its fixed part ({REQ_CONTROL_FIXED})",
                b.len()
            )));
        }
        let datalen = u32_at(b, 56) as usize;
        if datalen > b.len() - REQ_CONTROL_FIXED {
            return Err(WireError(format!(
                "REQ_CONTROL datalen {datalen} exceeds the {} bytes after the fixed part",
                b.len() - REQ_CONTROL_FIXED
            )));
        }
        Ok(ReqControl {
            destnode: h.destnode,
            reqid: h.reqid,
            opcode: u32_at(b, 32),
            srvid: u64_at(b, 40),
            client_id: u32_at(b, 48),
            flags: u32_at(b, 52),
            data: &b[REQ_CONTROL_FIXED..REQ_CONTROL_FIXED + datalen],
        })
    }
}

/// Header fields of a reply the daemon fills in.
#[derive(Debug, Clone, Copy)]
pub struct ReplyHeader {
    pub generation: u32,
    pub srcnode: u32,
    pub reqid: u32,
}

fn push_header(out: &mut Vec<u8>, length: usize, operation: u32, h: ReplyHeader, destnode: u32) {
    for v in [
        length as u32,
        CTDB_MAGIC,
        CTDB_PROTOCOL,
        h.generation,
        operation,
        destnode,
        h.srcnode,
        h.reqid,
    ] {
        out.extend_from_slice(&v.to_ne_bytes());
    }
}

/// Appends a REPLY_CONTROL as ctdbd builds it: at least the struct size,
/// error message without NUL after the data. Padding to 8 is the send
/// queue's job.
pub fn push_reply_control(
    out: &mut Vec<u8>,
    h: ReplyHeader,
    status: i32,
    data: &[u8],
    error: Option<&str>,
) {
    let err = error.unwrap_or("").as_bytes();
    let len = (REPLY_CONTROL_FIXED + data.len() + err.len()).max(REPLY_CONTROL_MIN);
    let start = out.len();
    push_header(out, len, REPLY_CONTROL, h, 0);
    out.extend_from_slice(&status.to_ne_bytes());
    out.extend_from_slice(&(data.len() as u32).to_ne_bytes());
    out.extend_from_slice(&(err.len() as u32).to_ne_bytes());
    out.extend_from_slice(data);
    out.extend_from_slice(err);
    out.resize(start + len, 0);
}

/// Appends a REQ_CONTROL (for tests and, later, the daemon's own
/// controls to other nodes).
pub fn push_req_control(out: &mut Vec<u8>, destnode: u32, reqid: u32, opcode: u32, data: &[u8]) {
    let len = REQ_CONTROL_FIXED + data.len();
    push_header(
        out,
        len,
        REQ_CONTROL,
        ReplyHeader {
            generation: 0,
            srcnode: 0,
            reqid,
        },
        destnode,
    );
    out.extend_from_slice(&opcode.to_ne_bytes());
    out.extend_from_slice(&0u32.to_ne_bytes());
    out.extend_from_slice(&0u64.to_ne_bytes());
    out.extend_from_slice(&0u32.to_ne_bytes());
    out.extend_from_slice(&0u32.to_ne_bytes());
    out.extend_from_slice(&(data.len() as u32).to_ne_bytes());
    out.extend_from_slice(data);
}

/// A decoded REPLY_CONTROL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplyControl<'a> {
    pub header: Header,
    pub status: i32,
    pub data: &'a [u8],
    pub error: &'a [u8],
}

impl<'a> ReplyControl<'a> {
    pub fn parse(b: &'a [u8]) -> Result<ReplyControl<'a>, WireError> {
        let header = Header::parse(b)?;
        if b.len() < REPLY_CONTROL_FIXED {
            return Err(WireError(format!(
                "REPLY_CONTROL of {} bytes is shorter than {REPLY_CONTROL_FIXED}",
                b.len()
            )));
        }
        let datalen = u32_at(b, 36) as usize;
        let errlen = u32_at(b, 40) as usize;
        let rest = b.len() - REPLY_CONTROL_FIXED;
        if datalen > rest || errlen > rest - datalen {
            return Err(WireError(format!(
                "REPLY_CONTROL datalen {datalen} + errorlen {errlen} exceed {rest} bytes"
            )));
        }
        let d = REPLY_CONTROL_FIXED;
        Ok(ReplyControl {
            header,
            status: u32_at(b, 32) as i32,
            data: &b[d..d + datalen],
            error: &b[d + datalen..d + datalen + errlen],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_round_trip_and_short_packets() {
        let mut req = Vec::new();
        push_req_control(&mut req, CURRENT_NODE, 77, CONTROL_PING, &[]);
        assert_eq!(req.len(), 60);
        let c = ReqControl::parse(&req).unwrap();
        assert_eq!(
            (c.opcode, c.reqid, c.destnode),
            (CONTROL_PING, 77, CURRENT_NODE)
        );
        assert!(ReqControl::parse(&req[..59]).is_err());
        let mut bad = req.clone();
        bad[56] = 1; // datalen 1 but no data
        assert!(ReqControl::parse(&bad).unwrap_err().0.contains("datalen 1"));

        let mut rep = Vec::new();
        let h = ReplyHeader {
            generation: 1,
            srcnode: 0,
            reqid: 77,
        };
        push_reply_control(&mut rep, h, 3, &[], None);
        assert_eq!(rep.len(), 48, "ctdbd's minimum REPLY_CONTROL size");
        let r = ReplyControl::parse(&rep).unwrap();
        assert_eq!(
            (r.status, r.header.reqid, r.header.operation),
            (3, 77, REPLY_CONTROL)
        );
        rep.clear();
        push_reply_control(&mut rep, h, -1, b"abcd", Some("no such thing"));
        let r = ReplyControl::parse(&rep).unwrap();
        assert_eq!((r.data, r.error), (&b"abcd"[..], &b"no such thing"[..]));
        assert_eq!(rep.len(), 44 + 4 + 13);
    }
}
