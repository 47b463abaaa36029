//! The event daemon protocol (ctdb-eventd 4.17), byte for byte.
//!
//! Why here: Debian's `ctdb-event` tool and ctdbd itself talk to
//! `ctdb-eventd` over `$rundir/eventd.socket` with this protocol; our
//! eventd and our client must speak it exactly so either side can be
//! swapped for the stock one.
//!
//! # Layout (host byte order, no padding anywhere)
//!
//! ```text
//! header   u32 length (whole packet) | u32 version | u32 reqid
//! request  header | u32 command | body
//!   RUN      stringn component | stringn event | stringn args | u32 timeout | u32 flags
//!   STATUS   stringn component | stringn event
//!   SCRIPT   stringn component | stringn script | u32 action (0 disable, 1 enable)
//! reply    header | u32 command | i32 result | body only if result == 0
//!   STATUS   i32 summary | i32 count | count * script
//!   script   stringn name | timeval begin | timeval end | i32 result | stringn output
//! stringn  u32 n | n bytes (the string and its NUL); n == 0 is a NULL string
//! timeval  i64 seconds | i64 microseconds (struct timeval on 64-bit Linux)
//! ```
//!
//! Upstream's client and server both leave `version` at 0 (the constant
//! `CTDB_EVENT_PROTOCOL_VERSION` is never sent); we send 0 and accept any.
//! The reply to RUN and SCRIPT carries no body; a STATUS reply whose result
//! is not 0 carries none either.

use crate::DaemonError;

/// `CTDB_EVENT_CMD_RUN`.
pub const CMD_RUN: u32 = 1;
/// `CTDB_EVENT_CMD_STATUS`.
pub const CMD_STATUS: u32 = 2;
/// `CTDB_EVENT_CMD_SCRIPT`.
pub const CMD_SCRIPT: u32 = 3;
/// `CTDB_EVENT_RUN_ALL`: keep running scripts after one fails.
pub const RUN_ALL: u32 = 1;
/// Size of the packet header.
pub const HEADER_LEN: usize = 12;
/// Largest packet we accept from a peer (upstream has no limit of its own;
/// this bounds what a hostile peer can make us allocate).
pub const MAX_PACKET: usize = 64 << 20;

/// Packet header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Header {
    /// Total packet length including the header.
    pub length: u32,
    /// Always 0 from upstream.
    pub version: u32,
    /// Request id, echoed in the reply.
    pub reqid: u32,
}

/// A `struct timeval`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, PartialOrd, Ord)]
pub struct Timeval {
    pub sec: i64,
    pub usec: i64,
}

impl Timeval {
    /// The current wall-clock time.
    pub fn now() -> Timeval {
        Timeval::from_system(std::time::SystemTime::now())
    }

    /// Converts a system time (times before 1970 become 0).
    pub fn from_system(t: std::time::SystemTime) -> Timeval {
        let d = t.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        Timeval {
            sec: d.as_secs() as i64,
            usec: i64::from(d.subsec_micros()),
        }
    }

    /// `self - earlier` in seconds, as the tool computes durations.
    pub fn delta(&self, earlier: &Timeval) -> f64 {
        (self.sec - earlier.sec) as f64 + (self.usec - earlier.usec) as f64 * 1.0e-6
    }
}

/// Body of a RUN request.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RunRequest {
    pub component: Option<String>,
    pub event: Option<String>,
    /// Space-separated arguments after the event name, or none.
    pub args: Option<String>,
    /// Seconds for the whole event, counted from when the request arrives.
    pub timeout: u32,
    /// [`RUN_ALL`] or 0.
    pub flags: u32,
}

/// Body of a STATUS request.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StatusRequest {
    pub component: Option<String>,
    pub event: Option<String>,
}

/// Body of a SCRIPT request.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ScriptRequest {
    pub component: Option<String>,
    pub script: Option<String>,
    /// true: enable (action 1), false: disable (action 0).
    pub enable: bool,
}

/// A request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    Run(RunRequest),
    Status(StatusRequest),
    Script(ScriptRequest),
}

impl Request {
    /// The command number on the wire.
    pub fn command(&self) -> u32 {
        match self {
            Request::Run(_) => CMD_RUN,
            Request::Status(_) => CMD_STATUS,
            Request::Script(_) => CMD_SCRIPT,
        }
    }
}

/// One script's outcome inside a STATUS reply.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ScriptStatus {
    pub name: Option<String>,
    pub begin: Timeval,
    pub end: Timeval,
    /// 0, the exit status, or a negative errno (`-ETIMEDOUT`, `-ENOEXEC`
    /// for disabled, `-EINTR` when killed by a signal ...).
    pub result: i32,
    /// Combined stdout and stderr, or none if the script printed nothing.
    pub output: Option<Vec<u8>>,
}

/// Body of a successful STATUS reply.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StatusReply {
    pub summary: i32,
    pub scripts: Vec<ScriptStatus>,
}

/// A reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The request's command (echoed as a raw number).
    pub command: u32,
    /// 0 or a positive errno.
    pub result: i32,
    /// Present only for a STATUS reply with result 0.
    pub status: Option<StatusReply>,
}

// ---------------------------------------------------------------- encoding

struct Writer(Vec<u8>);

impl Writer {
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_ne_bytes());
    }
    fn i32(&mut self, v: i32) {
        self.0.extend_from_slice(&v.to_ne_bytes());
    }
    fn bytes(&mut self, s: Option<&[u8]>) {
        match s {
            None => self.u32(0),
            Some(b) => {
                // Upstream sends strlen()+1 bytes, so anything after an
                // embedded NUL would be lost: cut there too.
                let b = match b.iter().position(|&c| c == 0) {
                    Some(p) => &b[..p],
                    None => b,
                };
                self.u32(b.len() as u32 + 1);
                self.0.extend_from_slice(b);
                self.0.push(0);
            }
        }
    }
    fn str(&mut self, s: &Option<String>) {
        self.bytes(s.as_deref().map(str::as_bytes));
    }
    fn timeval(&mut self, t: &Timeval) {
        self.0.extend_from_slice(&t.sec.to_ne_bytes());
        self.0.extend_from_slice(&t.usec.to_ne_bytes());
    }
    fn finish(mut self, reqid: u32) -> Vec<u8> {
        let len = self.0.len() as u32;
        self.0[0..4].copy_from_slice(&len.to_ne_bytes());
        self.0[8..12].copy_from_slice(&reqid.to_ne_bytes());
        self.0
    }
    fn new() -> Writer {
        Writer(vec![0; HEADER_LEN])
    }
}

/// Encodes a request with the given request id (version 0).
pub fn encode_request(reqid: u32, req: &Request) -> Vec<u8> {
    let mut w = Writer::new();
    w.u32(req.command());
    match req {
        Request::Run(r) => {
            w.str(&r.component);
            w.str(&r.event);
            w.str(&r.args);
            w.u32(r.timeout);
            w.u32(r.flags);
        }
        Request::Status(r) => {
            w.str(&r.component);
            w.str(&r.event);
        }
        Request::Script(r) => {
            w.str(&r.component);
            w.str(&r.script);
            w.u32(u32::from(r.enable));
        }
    }
    w.finish(reqid)
}

/// Encodes a reply with the given request id (version 0).
pub fn encode_reply(reqid: u32, reply: &Reply) -> Vec<u8> {
    let mut w = Writer::new();
    w.u32(reply.command);
    w.i32(reply.result);
    if reply.result == 0 && reply.command == CMD_STATUS {
        let empty = StatusReply::default();
        let st = reply.status.as_ref().unwrap_or(&empty);
        w.i32(st.summary);
        w.i32(st.scripts.len() as i32);
        for s in &st.scripts {
            w.str(&s.name);
            w.timeval(&s.begin);
            w.timeval(&s.end);
            w.i32(s.result);
            w.bytes(s.output.as_deref());
        }
    }
    w.finish(reqid)
}

// ---------------------------------------------------------------- decoding

struct Reader<'a> {
    buf: &'a [u8],
    off: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], DaemonError> {
        if self.buf.len() - self.off < n {
            return Err(DaemonError::Truncated {
                what,
                offset: self.off,
                need: n,
                have: self.buf.len() - self.off,
            });
        }
        let s = &self.buf[self.off..self.off + n];
        self.off += n;
        Ok(s)
    }
    fn u32(&mut self, what: &'static str) -> Result<u32, DaemonError> {
        let b = self.take(4, what)?;
        Ok(u32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn i32(&mut self, what: &'static str) -> Result<i32, DaemonError> {
        Ok(self.u32(what)? as i32)
    }
    fn i64(&mut self, what: &'static str) -> Result<i64, DaemonError> {
        let b = self.take(8, what)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(i64::from_ne_bytes(a))
    }
    fn bytes(&mut self, what: &'static str) -> Result<Option<Vec<u8>>, DaemonError> {
        let n = self.u32(what)? as usize;
        if n == 0 {
            return Ok(None);
        }
        let b = self.take(n, what)?;
        let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
        Ok(Some(b[..end].to_vec()))
    }
    fn str(&mut self, what: &'static str) -> Result<Option<String>, DaemonError> {
        let off = self.off;
        match self.bytes(what)? {
            None => Ok(None),
            Some(b) => String::from_utf8(b)
                .map(Some)
                .map_err(|_| DaemonError::BadValue {
                    what,
                    offset: off,
                    value: "bytes that are not UTF-8".into(),
                }),
        }
    }
    fn timeval(&mut self, what: &'static str) -> Result<Timeval, DaemonError> {
        Ok(Timeval {
            sec: self.i64(what)?,
            usec: self.i64(what)?,
        })
    }
    fn header(&mut self) -> Result<Header, DaemonError> {
        Ok(Header {
            length: self.u32("header length")?,
            version: self.u32("header version")?,
            reqid: self.u32("header reqid")?,
        })
    }
    fn command(&mut self) -> Result<u32, DaemonError> {
        let off = self.off;
        let c = self.u32("command")?;
        match c {
            CMD_RUN | CMD_STATUS | CMD_SCRIPT => Ok(c),
            _ => Err(DaemonError::BadValue {
                what: "command",
                offset: off,
                value: c.to_string(),
            }),
        }
    }
}

/// Reads only the header (to learn the length and reqid).
pub fn decode_header(buf: &[u8]) -> Result<Header, DaemonError> {
    Reader { buf, off: 0 }.header()
}

/// Decodes a whole request packet.
pub fn decode_request(buf: &[u8]) -> Result<(Header, Request), DaemonError> {
    let mut r = Reader { buf, off: 0 };
    let h = r.header()?;
    let req = match r.command()? {
        CMD_RUN => Request::Run(RunRequest {
            component: r.str("run component")?,
            event: r.str("run event")?,
            args: r.str("run args")?,
            timeout: r.u32("run timeout")?,
            flags: r.u32("run flags")?,
        }),
        CMD_STATUS => Request::Status(StatusRequest {
            component: r.str("status component")?,
            event: r.str("status event")?,
        }),
        _ => {
            let component = r.str("script component")?;
            let script = r.str("script name")?;
            let off = r.off;
            let action = r.u32("script action")?;
            let enable = match action {
                0 => false,
                1 => true,
                v => {
                    return Err(DaemonError::BadValue {
                        what: "script action",
                        offset: off,
                        value: v.to_string(),
                    })
                }
            };
            Request::Script(ScriptRequest {
                component,
                script,
                enable,
            })
        }
    };
    Ok((h, req))
}

/// Decodes a whole reply packet.
pub fn decode_reply(buf: &[u8]) -> Result<(Header, Reply), DaemonError> {
    let mut r = Reader { buf, off: 0 };
    let h = r.header()?;
    let command = r.command()?;
    let result = r.i32("reply result")?;
    let mut status = None;
    if result == 0 && command == CMD_STATUS {
        let summary = r.i32("status summary")?;
        let off = r.off;
        let n = r.i32("status script count")?;
        if n < 0 {
            return Err(DaemonError::BadValue {
                what: "status script count",
                offset: off,
                value: n.to_string(),
            });
        }
        let mut scripts = Vec::new();
        for _ in 0..n {
            scripts.push(ScriptStatus {
                name: r.str("script name")?,
                begin: r.timeval("script begin")?,
                end: r.timeval("script end")?,
                result: r.i32("script result")?,
                output: r.bytes("script output")?,
            });
        }
        status = Some(StatusReply { summary, scripts });
    }
    Ok((
        h,
        Reply {
            command,
            result,
            status,
        },
    ))
}

/// Name of a command as upstream logs it.
pub fn command_name(cmd: u32) -> &'static str {
    match cmd {
        CMD_RUN => "RUN",
        CMD_STATUS => "STATUS",
        CMD_SCRIPT => "SCRIPT",
        _ => "UNKNOWN",
    }
}
