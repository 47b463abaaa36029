//! Small types shared by many controls: time values, the two string
//! encodings, opaque blobs with a length prefix, and a few fixed records.

use crate::error::ProtocolError;
use crate::types::plain_struct;
use crate::wire::{Put, Reader, Wire};

plain_struct! {
    /// `struct timeval` as the 64-bit C struct: 16 bytes.
    pub struct Timeval {
        pub tv_sec: i64,
        pub tv_usec: i64,
    }
}

impl Timeval {
    pub fn new(tv_sec: i64, tv_usec: i64) -> Self {
        Timeval { tv_sec, tv_usec }
    }

    /// Converts a duration since the Unix epoch.
    pub fn from_duration(d: std::time::Duration) -> Self {
        Timeval {
            tv_sec: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
            tv_usec: i64::from(d.subsec_micros()),
        }
    }

    /// The current wall-clock time.
    pub fn now() -> Self {
        match std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
            Ok(d) => Self::from_duration(d),
            Err(_) => Timeval::default(),
        }
    }

    /// Seconds (with the microseconds as a fraction).
    pub fn as_secs_f64(&self) -> f64 {
        self.tv_sec as f64 + self.tv_usec as f64 / 1e6
    }
}

plain_struct! {
    /// `ctdb_uptime` (UPTIME output): 64 bytes.
    pub struct Uptime {
        pub current_time: Timeval,
        pub ctdbd_start_time: Timeval,
        pub last_recovery_started: Timeval,
        pub last_recovery_finished: Timeval,
    }
}

plain_struct! {
    /// `ctdb_ban_state` (SET/GET_BAN_STATE): `time` in seconds, 0 = unban.
    pub struct BanState {
        pub pnn: u32,
        pub time: u32,
    }
}

plain_struct! {
    /// `ctdb_pid_srvid` (CHECK_PID_SRVID): 12 bytes, the u64 is unaligned.
    pub struct PidSrvid {
        pub pid: i32,
        pub srvid: u64,
    }
}

plain_struct! {
    /// `ctdb_server_id` (Samba's `server_id`): 24 bytes.
    pub struct ServerId {
        pub pid: u64,
        pub task_id: u32,
        pub vnn: u32,
        pub unique_id: u64,
    }
}

/// Checks a C string that must fill `b` exactly: last byte NUL, no NUL
/// before it. Returns the bytes without the NUL.
fn c_string<'a>(b: &'a [u8], what: &'static str) -> Result<&'a [u8], ProtocolError> {
    match b.split_last() {
        Some((0, body)) if !body.contains(&0) => Ok(body),
        _ => Err(ProtocolError::BadString { what }),
    }
}

/// A `string` payload (DB_ATTACH name, GETDBPATH output, ...): the bytes of a
/// NUL-terminated string occupying the whole buffer. An empty buffer is
/// upstream's NULL string (`None`). The held bytes exclude the NUL and
/// contain no NUL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct CtdbString<'a>(pub Option<&'a [u8]>);

impl<'a> CtdbString<'a> {
    pub const NULL: CtdbString<'static> = CtdbString(None);

    /// A present string. Callers must not pass inner NULs; they would be
    /// sent as is and rejected by the peer.
    pub fn new(s: &'a str) -> Self {
        CtdbString(Some(s.as_bytes()))
    }

    pub fn bytes(&self) -> Option<&'a [u8]> {
        self.0
    }

    /// The text, if present and valid UTF-8.
    pub fn as_str(&self) -> Option<&'a str> {
        self.0.and_then(|b| std::str::from_utf8(b).ok())
    }

    /// The text with invalid UTF-8 replaced; NULL gives "".
    pub fn to_string_lossy(&self) -> String {
        String::from_utf8_lossy(self.0.unwrap_or_default()).into_owned()
    }

    /// Reads a whole buffer the way upstream's `ctdb_string_pull` does,
    /// without the strict checks of [`Wire::from_bytes`]: empty is NULL, a
    /// missing final NUL is tolerated and the text ends at the first NUL.
    /// Needed for DUMP_MEMORY output, which ctdbd sends without its NUL.
    pub fn from_bytes_lenient(buf: &'a [u8]) -> Self {
        if buf.is_empty() {
            return CtdbString(None);
        }
        let end = buf.iter().position(|&c| c == 0).unwrap_or(buf.len());
        CtdbString(Some(&buf[..end]))
    }
}

impl<'a> From<&'a str> for CtdbString<'a> {
    fn from(s: &'a str) -> Self {
        CtdbString::new(s)
    }
}

impl<'a> Wire<'a> for CtdbString<'a> {
    fn wire_len(&self) -> usize {
        self.0.map_or(0, |b| b.len() + 1)
    }
    fn push(&self, out: &mut Vec<u8>) {
        if let Some(b) = self.0 {
            out.put_bytes(b);
            out.put_u8(0);
        }
    }
    fn pull(r: &mut Reader<'a>) -> Result<Self, ProtocolError> {
        let rest = r.remaining();
        if rest.is_empty() {
            return Ok(CtdbString(None));
        }
        let body = c_string(rest, "string")?;
        r.skip(rest.len(), "string")?;
        Ok(CtdbString(Some(body)))
    }
}

/// A `stringn`: `u32` length (including the NUL) then the string. Length 0
/// is the NULL string (`None`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct StringN<'a>(pub Option<&'a [u8]>);

impl<'a> StringN<'a> {
    pub fn new(s: &'a str) -> Self {
        StringN(Some(s.as_bytes()))
    }
    pub fn bytes(&self) -> Option<&'a [u8]> {
        self.0
    }
    pub fn as_str(&self) -> Option<&'a str> {
        self.0.and_then(|b| std::str::from_utf8(b).ok())
    }
    pub fn to_string_lossy(&self) -> String {
        String::from_utf8_lossy(self.0.unwrap_or_default()).into_owned()
    }
}

impl<'a> From<&'a str> for StringN<'a> {
    fn from(s: &'a str) -> Self {
        StringN::new(s)
    }
}

impl<'a> Wire<'a> for StringN<'a> {
    fn wire_len(&self) -> usize {
        4 + self.0.map_or(0, |b| b.len() + 1)
    }
    fn push(&self, out: &mut Vec<u8>) {
        match self.0 {
            None => out.put_u32(0),
            Some(b) => {
                out.put_u32((b.len() + 1) as u32);
                out.put_bytes(b);
                out.put_u8(0);
            }
        }
    }
    fn pull(r: &mut Reader<'a>) -> Result<Self, ProtocolError> {
        let n = r.u32("stringn length")? as usize;
        if n == 0 {
            return Ok(StringN(None));
        }
        let b = r.bytes(n, "stringn")?;
        Ok(StringN(Some(c_string(b, "stringn")?)))
    }
}

/// A `TDB_DATA` sent as `u32 len` + bytes (`tdb_datan`).
pub(crate) fn pull_datan<'a>(
    r: &mut Reader<'a>,
    what: &'static str,
) -> Result<&'a [u8], ProtocolError> {
    let n = r.u32(what)? as usize;
    r.bytes(n, what)
}

pub(crate) fn push_datan(out: &mut Vec<u8>, b: &[u8]) {
    out.put_u32(b.len() as u32);
    out.put_bytes(b);
}

/// `ctdb_notify_data` (REGISTER_NOTIFY): srvid then a length-prefixed blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct NotifyData<'a> {
    pub srvid: u64,
    pub data: &'a [u8],
}

impl<'a> Wire<'a> for NotifyData<'a> {
    fn wire_len(&self) -> usize {
        8 + 4 + self.data.len()
    }
    fn push(&self, out: &mut Vec<u8>) {
        out.put_u64(self.srvid);
        push_datan(out, self.data);
    }
    fn pull(r: &mut Reader<'a>) -> Result<Self, ProtocolError> {
        Ok(NotifyData {
            srvid: r.u64("notify_data srvid")?,
            data: pull_datan(r, "notify_data data")?,
        })
    }
}

/// `ctdb_echo_data` (ECHO_DATA in and out).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct EchoData<'a> {
    pub timeout: u32,
    pub data: &'a [u8],
}

impl<'a> Wire<'a> for EchoData<'a> {
    fn wire_len(&self) -> usize {
        4 + 4 + self.data.len()
    }
    fn push(&self, out: &mut Vec<u8>) {
        out.put_u32(self.timeout);
        push_datan(out, self.data);
    }
    fn pull(r: &mut Reader<'a>) -> Result<Self, ProtocolError> {
        Ok(EchoData {
            timeout: r.u32("echo_data timeout")?,
            data: pull_datan(r, "echo_data buf")?,
        })
    }
}

/// Size of `ctdb_script.name` (`MAX_SCRIPT_NAME + 1`).
pub const SCRIPT_NAME_SIZE: usize = 32;
/// Size of `ctdb_script.output` (`MAX_SCRIPT_OUTPUT + 1`).
pub const SCRIPT_OUTPUT_SIZE: usize = 512;

/// Returns the bytes of a fixed `char[]` up to the first NUL.
pub(crate) fn char_array_str(a: &[u8]) -> &[u8] {
    match a.iter().position(|&c| c == 0) {
        Some(i) => &a[..i],
        None => a,
    }
}

/// Fills a fixed `char[]`: the text truncated to leave a final NUL, rest zero.
pub(crate) fn char_array_set(a: &mut [u8], s: &[u8]) {
    a.fill(0);
    let n = s.len().min(a.len().saturating_sub(1));
    a[..n].copy_from_slice(&s[..n]);
}

/// `ctdb_script` (584 bytes): an event script's last run. The char arrays
/// are kept verbatim so encoding reproduces the input; use
/// [`Script::name`] / [`Script::output`] for the text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Script {
    pub name: [u8; SCRIPT_NAME_SIZE],
    pub start: Timeval,
    pub finished: Timeval,
    pub status: i32,
    pub output: [u8; SCRIPT_OUTPUT_SIZE],
}

impl Default for Script {
    fn default() -> Self {
        Script {
            name: [0; SCRIPT_NAME_SIZE],
            start: Timeval::default(),
            finished: Timeval::default(),
            status: 0,
            output: [0; SCRIPT_OUTPUT_SIZE],
        }
    }
}

impl Script {
    pub const SIZE: usize = 584;

    pub fn name(&self) -> &[u8] {
        char_array_str(&self.name)
    }
    pub fn output(&self) -> &[u8] {
        char_array_str(&self.output)
    }
    /// Sets the name, truncated to 31 bytes.
    pub fn set_name(&mut self, s: &[u8]) {
        char_array_set(&mut self.name, s)
    }
    /// Sets the output, truncated to 511 bytes.
    pub fn set_output(&mut self, s: &[u8]) {
        char_array_set(&mut self.output, s)
    }
}

impl<'a> Wire<'a> for Script {
    fn wire_len(&self) -> usize {
        Self::SIZE
    }
    fn push(&self, out: &mut Vec<u8>) {
        out.put_bytes(&self.name);
        self.start.push(out);
        self.finished.push(out);
        out.put_i32(self.status);
        out.put_bytes(&self.output);
        out.put_zeros(4);
    }
    fn pull(r: &mut Reader<'a>) -> Result<Self, ProtocolError> {
        let mut s = Script::default();
        s.name
            .copy_from_slice(r.bytes(SCRIPT_NAME_SIZE, "ctdb_script name")?);
        s.start = Timeval::pull(r)?;
        s.finished = Timeval::pull(r)?;
        s.status = r.i32("ctdb_script status")?;
        s.output
            .copy_from_slice(r.bytes(SCRIPT_OUTPUT_SIZE, "ctdb_script output")?);
        r.skip(4, "ctdb_script padding")?;
        Ok(s)
    }
}

/// `ctdb_script_list`: `u32 num`, 4 bytes pad, the scripts.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ScriptList {
    pub scripts: Vec<Script>,
}

impl<'a> Wire<'a> for ScriptList {
    fn wire_len(&self) -> usize {
        8 + self.scripts.len() * Script::SIZE
    }
    fn push(&self, out: &mut Vec<u8>) {
        out.put_u32(self.scripts.len() as u32);
        out.put_zeros(4);
        for s in &self.scripts {
            s.push(out);
        }
    }
    fn pull(r: &mut Reader<'a>) -> Result<Self, ProtocolError> {
        let n = r.u32("script_list num")? as usize;
        r.skip(4, "script_list padding")?;
        if n > r.remaining().len() / Script::SIZE {
            return Err(ProtocolError::Short {
                what: "script_list scripts",
                need: n.saturating_mul(Script::SIZE),
                have: r.remaining().len(),
            });
        }
        let mut scripts = Vec::with_capacity(n);
        for _ in 0..n {
            scripts.push(Script::pull(r)?);
        }
        Ok(ScriptList { scripts })
    }
}

/// `ctdb_g_lock`: one holder of a Samba g_lock (type 0 read, 1 write).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct GLock {
    /// `true` for a write lock (`CTDB_G_LOCK_WRITE`).
    pub write: bool,
    pub sid: ServerId,
}

impl GLock {
    pub const SIZE: usize = 32;
}

impl<'a> Wire<'a> for GLock {
    fn wire_len(&self) -> usize {
        Self::SIZE
    }
    fn push(&self, out: &mut Vec<u8>) {
        out.put_u32(u32::from(self.write));
        out.put_zeros(4);
        self.sid.push(out);
    }
    fn pull(r: &mut Reader<'a>) -> Result<Self, ProtocolError> {
        let write = match r.u32("g_lock type")? {
            0 => false,
            1 => true,
            v => {
                return Err(ProtocolError::BadValue {
                    what: "g_lock type",
                    value: u64::from(v),
                })
            }
        };
        r.skip(4, "g_lock padding")?;
        Ok(GLock {
            write,
            sid: ServerId::pull(r)?,
        })
    }
}

/// `ctdb_g_lock_list`: g_lock entries back to back, no count (the count is
/// the buffer length / 32). Decoding takes every whole entry; a partial
/// tail is left unread (and so is an error for `from_bytes`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GLockList {
    pub locks: Vec<GLock>,
}

impl<'a> Wire<'a> for GLockList {
    fn wire_len(&self) -> usize {
        self.locks.len() * GLock::SIZE
    }
    fn push(&self, out: &mut Vec<u8>) {
        for l in &self.locks {
            l.push(out);
        }
    }
    fn pull(r: &mut Reader<'a>) -> Result<Self, ProtocolError> {
        let n = r.remaining().len() / GLock::SIZE;
        let mut locks = Vec::with_capacity(n);
        for _ in 0..n {
            locks.push(GLock::pull(r)?);
        }
        Ok(GLockList { locks })
    }
}
