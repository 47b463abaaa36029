//! A blocking client for ctdbd's Unix socket.
//!
//! Why blocking: the tool does one thing at a time (send a control, wait for
//! its reply or a message), so a plain `UnixStream` with read timeouts keeps
//! it simple and dependency-free. Messages that arrive while waiting for a
//! reply are queued for the srvids the tool registered, and the leader
//! broadcast (`CTDB_SRVID_LEADER`) is remembered as it arrives, as
//! upstream's tool does with its leader handler.
//!
//! Errors are errno values (`i32`), because upstream's exit codes and
//! messages carry them (`ret=110` for a timed-out control).

use std::collections::{HashSet, VecDeque};
use std::io::{ErrorKind, Read, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use crate::wire::{self, ControlData, ControlReply, ControlRequest, Header, CTDB_SRVID_LEADER};

pub const ETIMEDOUT: i32 = libc::ETIMEDOUT;
pub const EPROTO: i32 = libc::EPROTO;

/// Upper bound for a packet from the daemon; anything larger is treated as
/// a broken stream rather than allocated.
const MAX_PACKET: usize = 256 * 1024 * 1024;

pub struct Client {
    stream: UnixStream,
    pnn: u32,
    next_reqid: u32,
    inbuf: Vec<u8>,
    out: Vec<u8>,
    registered: HashSet<u64>,
    queued: VecDeque<(u64, Vec<u8>)>,
    leader_pnn: u32,
    closed: bool,
}

impl Client {
    /// Connects and learns the daemon's pnn (GET_PNN), as
    /// `ctdb_client_init` does. On failure prints upstream's debug line and
    /// returns the errno.
    pub fn connect(path: &str) -> Result<Client, i32> {
        if path.len() >= 108 {
            eprintln!("socket path too long, len={}", path.len());
            return Err(libc::ENAMETOOLONG);
        }
        let stream = match UnixStream::connect(path) {
            Ok(s) => s,
            Err(e) => {
                let errno = e.raw_os_error().unwrap_or(libc::EIO);
                eprintln!("connect() failed, errno={errno}");
                return Err(errno);
            }
        };
        let mut c = Client {
            stream,
            pnn: wire::CTDB_UNKNOWN_PNN,
            next_reqid: std::process::id().wrapping_mul(2654435761) | 1,
            inbuf: Vec::new(),
            out: Vec::new(),
            registered: HashSet::new(),
            queued: VecDeque::new(),
            leader_pnn: wire::CTDB_UNKNOWN_PNN,
            closed: false,
        };
        let reply = c.control(
            wire::CTDB_CURRENT_NODE,
            None,
            &ControlRequest::new(ControlData::GetPnn),
        )?;
        if reply.status < 0 {
            return Err(reply.status);
        }
        c.pnn = reply.status as u32;
        Ok(c)
    }

    pub fn pnn(&self) -> u32 {
        self.pnn
    }

    /// The last leader announced by the recovery daemon, if any.
    pub fn leader_pnn(&self) -> u32 {
        self.leader_pnn
    }

    fn new_reqid(&mut self) -> u32 {
        self.next_reqid = self.next_reqid.wrapping_add(1);
        if self.next_reqid == 0 {
            self.next_reqid = 1;
        }
        self.next_reqid
    }

    fn send(&mut self) -> Result<(), i32> {
        let buf = std::mem::take(&mut self.out);
        let r = self.stream.write_all(&buf);
        self.out = buf;
        r.map_err(|e| e.raw_os_error().unwrap_or(libc::EPIPE))
    }

    /// Reads one whole packet, waiting until `deadline` (forever if `None`).
    /// `Ok(None)` means the deadline passed.
    fn read_packet(&mut self, deadline: Option<Instant>) -> Result<Option<Vec<u8>>, i32> {
        loop {
            if self.inbuf.len() >= 4 {
                let len = u32::from_ne_bytes([
                    self.inbuf[0],
                    self.inbuf[1],
                    self.inbuf[2],
                    self.inbuf[3],
                ]) as usize;
                if !(wire::HEADER_LEN..=MAX_PACKET).contains(&len) {
                    self.closed = true;
                    return Err(EPROTO);
                }
                if self.inbuf.len() >= len {
                    let pkt: Vec<u8> = self.inbuf.drain(..len).collect();
                    return Ok(Some(pkt));
                }
            }
            if self.closed {
                return Err(libc::ECONNRESET);
            }
            let timeout = match deadline {
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        return Ok(None);
                    }
                    Some((d - now).max(Duration::from_millis(1)))
                }
                None => None,
            };
            self.stream
                .set_read_timeout(timeout)
                .map_err(|e| e.raw_os_error().unwrap_or(libc::EIO))?;
            let mut chunk = [0u8; 65536];
            match self.stream.read(&mut chunk) {
                Ok(0) => {
                    self.closed = true;
                    return Err(libc::ECONNRESET);
                }
                Ok(n) => self.inbuf.extend_from_slice(&chunk[..n]),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    return Ok(None)
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => {
                    self.closed = true;
                    return Err(e.raw_os_error().unwrap_or(libc::EIO));
                }
            }
        }
    }

    /// Handles a packet that is not the awaited reply: messages go to the
    /// leader tracker or the queue of registered srvids; anything else is
    /// dropped (a stale reply to an abandoned request).
    fn dispatch_other(&mut self, pkt: &[u8], hdr: &Header) {
        if hdr.operation != wire::CTDB_REQ_MESSAGE {
            return;
        }
        if let Ok((srvid, data)) = wire::parse_message(pkt) {
            if srvid == CTDB_SRVID_LEADER {
                if data.len() >= 4 {
                    self.leader_pnn = u32::from_ne_bytes([data[0], data[1], data[2], data[3]]);
                }
            } else if self.registered.contains(&srvid) {
                self.queued.push_back((srvid, data));
            }
        }
    }

    /// Waits for the packet of `operation` with `reqid`.
    fn wait_reply(
        &mut self,
        operation: u32,
        reqid: u32,
        deadline: Option<Instant>,
    ) -> Result<Vec<u8>, i32> {
        loop {
            let pkt = match self.read_packet(deadline)? {
                Some(p) => p,
                None => return Err(ETIMEDOUT),
            };
            let hdr = match Header::parse(&pkt) {
                Ok(h) => h,
                Err(_) => continue,
            };
            if hdr.operation == operation && hdr.reqid == reqid {
                return Ok(pkt);
            }
            self.dispatch_other(&pkt, &hdr);
        }
    }

    /// Sends a control and waits for its reply (no reply for NOREPLY
    /// controls: status 0). `timeout` `None` waits forever.
    pub fn control(
        &mut self,
        destnode: u32,
        timeout: Option<Duration>,
        req: &ControlRequest,
    ) -> Result<ControlReply, i32> {
        let deadline = timeout.map(|t| Instant::now() + t);
        let reqid = self.new_reqid();
        let mut out = std::mem::take(&mut self.out);
        req.encode(&mut out, destnode, self.pnn, reqid);
        self.out = out;
        self.send()?;
        if req.flags & wire::CTDB_CTRL_FLAG_NOREPLY != 0 {
            return Ok(ControlReply {
                status: 0,
                data: Vec::new(),
                error: None,
            });
        }
        let pkt = self.wait_reply(wire::CTDB_REPLY_CONTROL, reqid, deadline)?;
        ControlReply::parse(&pkt).map_err(|_| EPROTO)
    }

    /// Sends the same control to several nodes and collects the replies in
    /// order (upstream's `ctdb_client_control_multi`).
    pub fn control_multi(
        &mut self,
        nodes: &[u32],
        timeout: Option<Duration>,
        req: &ControlRequest,
    ) -> Vec<Result<ControlReply, i32>> {
        nodes
            .iter()
            .map(|&n| self.control(n, timeout, req))
            .collect()
    }

    /// REGISTER_SRVID on the local daemon; later messages to `srvid` are
    /// queued for [`Client::wait_message`].
    pub fn register_srvid(&mut self, srvid: u64) -> Result<(), i32> {
        let mut req = ControlRequest::new(ControlData::RegisterSrvid);
        req.srvid = srvid;
        let pnn = self.pnn;
        let r = self.control(pnn, None, &req)?;
        if r.status != 0 {
            return Err(r.status);
        }
        self.registered.insert(srvid);
        Ok(())
    }

    pub fn deregister_srvid(&mut self, srvid: u64) -> Result<(), i32> {
        let mut req = ControlRequest::new(ControlData::DeregisterSrvid);
        req.srvid = srvid;
        let pnn = self.pnn;
        self.registered.remove(&srvid);
        self.queued.retain(|(s, _)| *s != srvid);
        let r = self.control(pnn, None, &req)?;
        if r.status != 0 {
            return Err(r.status);
        }
        Ok(())
    }

    /// Sends a REQ_MESSAGE (no reply).
    pub fn send_message(&mut self, destnode: u32, srvid: u64, data: &[u8]) -> Result<(), i32> {
        let reqid = self.new_reqid();
        let mut out = std::mem::take(&mut self.out);
        wire::encode_message(&mut out, destnode, self.pnn, reqid, srvid, data);
        self.out = out;
        self.send()
    }

    /// Next queued or arriving message for `srvid`, until `deadline`.
    pub fn wait_message(&mut self, srvid: u64, deadline: Option<Instant>) -> Result<Vec<u8>, i32> {
        loop {
            if let Some(pos) = self.queued.iter().position(|(s, _)| *s == srvid) {
                if let Some((_, data)) = self.queued.remove(pos) {
                    return Ok(data);
                }
            }
            let pkt = match self.read_packet(deadline)? {
                Some(p) => p,
                None => return Err(ETIMEDOUT),
            };
            if let Ok(hdr) = Header::parse(&pkt) {
                self.dispatch_other(&pkt, &hdr);
            }
        }
    }

    /// Processes incoming packets until a leader is known or `deadline`.
    pub fn wait_leader(&mut self, deadline: Instant) -> Result<u32, i32> {
        while self.leader_pnn == wire::CTDB_UNKNOWN_PNN {
            let pkt = match self.read_packet(Some(deadline))? {
                Some(p) => p,
                None => break,
            };
            if let Ok(hdr) = Header::parse(&pkt) {
                self.dispatch_other(&pkt, &hdr);
            }
        }
        Ok(self.leader_pnn)
    }

    /// Waits until the daemon closes the connection (after SHUTDOWN).
    pub fn wait_closed(&mut self) {
        loop {
            match self.read_packet(None) {
                Ok(Some(pkt)) => {
                    if let Ok(hdr) = Header::parse(&pkt) {
                        self.dispatch_other(&pkt, &hdr);
                    }
                }
                Ok(None) => {}
                Err(_) => return,
            }
        }
    }

    /// REQ_CALL to the local daemon; returns the REPLY_CALL status.
    pub fn call(&mut self, flags: u32, db_id: u32, callid: u32, key: &[u8]) -> Result<i32, i32> {
        let reqid = self.new_reqid();
        let mut out = std::mem::take(&mut self.out);
        wire::encode_call(&mut out, self.pnn, reqid, flags, db_id, callid, key, &[]);
        self.out = out;
        self.send()?;
        let pkt = self.wait_reply(wire::CTDB_REPLY_CALL, reqid, None)?;
        wire::parse_reply_call_status(&pkt).map_err(|_| EPROTO)
    }
}
