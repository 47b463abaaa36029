//! A blocking CTDB client on ctdbd's Unix socket, built on ctdb-protocol
//! and ctdb-engine, doing what Samba's ctdb client library does.
//!
//! Why our own client: the benchmark must drive Samba's ctdbd and ours with
//! exactly the same client code, including the parts smbd exercises most —
//! fetch-lock (lock the chain in the node's local TDB file, check the
//! record's dmaster, migrate with REQ_CALL + `CTDB_IMMEDIATE_MIGRATION`
//! when it is elsewhere) and persistent transactions (a g_lock record in
//! `g_lock.tdb` guarding the database, then TRANS3_COMMIT). Being blocking
//! and one connection per thread keeps latency measurement simple: one
//! request in flight per client, timed around the call.
//!
//! Messages that arrive while waiting for a reply are queued and handed out
//! by [`Client::recv_message`].

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ctdb_engine::ltdb::LtdbHeader;
use ctdb_engine::{CoreStore, Database, OpenOptions, StoreFlag, Walk};
use ctdb_protocol::constants::{
    CTDB_CURRENT_NODE, CTDB_IMMEDIATE_MIGRATION, CTDB_NULL_FUNC, CTDB_REC_RO_HAVE_DELEGATIONS,
    CTDB_REC_RO_HAVE_READONLY, CTDB_TUNNEL_FLAG_NOREPLY, CTDB_TUNNEL_FLAG_REQUEST,
    CTDB_UNKNOWN_PNN, CTDB_WANT_READONLY,
};
use ctdb_protocol::types::{CtdbString, GLock, GLockList, RecBufferBuilder, ServerId};
use ctdb_protocol::{
    frame_length, opcode_name, ControlData, DecodeLimits, Framing, Header, Opcode, Packet, Payload,
    ReqCall, ReqControl, ReqMessage, ReqTunnel, Wire,
};

use crate::error::{PerfError, Result};

/// One connection to a ctdbd.
pub struct Client {
    socket: PathBuf,
    stream: UnixStream,
    pnn: u32,
    reqid: u32,
    rbuf: Vec<u8>,
    wbuf: Vec<u8>,
    messages: VecDeque<(u64, Vec<u8>)>,
    tunnels: VecDeque<TunnelPacket>,
    limits: DecodeLimits,
    timeout: Duration,
    task_id: u32,
}

static NEXT_TASK_ID: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(1);

/// A reply to a control: status and raw output bytes.
pub struct ControlReply {
    pub status: i32,
    pub data: Vec<u8>,
    pub errmsg: Vec<u8>,
}

/// An attached database with the node's local TDB file open.
pub struct Db {
    pub id: u32,
    pub name: String,
    pub path: PathBuf,
    store: CoreStore,
}

impl Client {
    /// Connects and asks the daemon for its pnn (GET_PNN), as the client
    /// library does on connect.
    pub fn connect(socket: &Path) -> Result<Client> {
        let stream = UnixStream::connect(socket)
            .map_err(|e| PerfError::io(format!("connect {}", socket.display()), e))?;
        let mut c = Client {
            socket: socket.to_path_buf(),
            stream,
            pnn: CTDB_UNKNOWN_PNN,
            reqid: std::process::id().wrapping_mul(7919),
            rbuf: Vec::with_capacity(64 * 1024),
            wbuf: Vec::with_capacity(4096),
            messages: VecDeque::new(),
            tunnels: VecDeque::new(),
            limits: DecodeLimits::default(),
            timeout: Duration::from_secs(60),
            task_id: NEXT_TASK_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        };
        let r = c.control_ok(CTDB_CURRENT_NODE, ControlData::GetPnn)?;
        c.pnn = r.status as u32;
        Ok(c)
    }

    /// How long one request may wait for its reply (default 60 s).
    pub fn set_timeout(&mut self, t: Duration) {
        self.timeout = t;
    }

    pub fn pnn(&self) -> u32 {
        self.pnn
    }

    fn next_reqid(&mut self) -> u32 {
        self.reqid = self.reqid.wrapping_add(1);
        self.reqid
    }

    fn send(&mut self, pkt: &Packet<'_>) -> Result<()> {
        self.wbuf.clear();
        pkt.encode_framed(&mut self.wbuf, Framing::Client)
            .map_err(|e| PerfError::Protocol {
                what: "encoding a request".into(),
                source: e,
            })?;
        self.stream
            .write_all(&self.wbuf)
            .map_err(|e| PerfError::io(format!("write to {}", self.socket.display()), e))
    }

    /// Reads one whole packet into the front of `rbuf`; returns its length.
    fn read_frame(&mut self, deadline: Instant) -> Result<usize> {
        loop {
            if let Some(n) =
                frame_length(&self.rbuf, &self.limits).map_err(|e| PerfError::Protocol {
                    what: format!("packet length from {}", self.socket.display()),
                    source: e,
                })?
            {
                if self.rbuf.len() >= n {
                    return Ok(n);
                }
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(PerfError::Timeout {
                    what: format!("reply from {}", self.socket.display()),
                });
            }
            self.stream
                .set_read_timeout(Some(deadline - now))
                .map_err(|e| PerfError::io("set_read_timeout", e))?;
            let mut chunk = [0u8; 16384];
            match self.stream.read(&mut chunk) {
                Ok(0) => {
                    return Err(PerfError::Closed {
                        socket: self.socket.clone(),
                    })
                }
                Ok(n) => self.rbuf.extend_from_slice(&chunk[..n]),
                Err(e)
                    if e.kind() == std::io::ErrorKind::WouldBlock
                        || e.kind() == std::io::ErrorKind::TimedOut => {}
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    return Err(PerfError::io(
                        format!("read from {}", self.socket.display()),
                        e,
                    ))
                }
            }
        }
    }

    /// Waits for the packet answering `reqid` and hands it to `f`; queues
    /// messages that arrive meanwhile and drops anything else.
    fn wait_reply<T>(
        &mut self,
        reqid: u32,
        mut f: impl FnMut(&Payload<'_>) -> Result<T>,
    ) -> Result<T> {
        let deadline = Instant::now() + self.timeout;
        loop {
            let n = self.read_frame(deadline)?;
            let out = {
                let pkt = Packet::decode(&self.rbuf[..n], &self.limits).map_err(|e| {
                    PerfError::Protocol {
                        what: format!("packet from {}", self.socket.display()),
                        source: e,
                    }
                })?;
                match &pkt.payload {
                    Payload::ReqMessage(m) => {
                        self.messages.push_back((m.srvid, m.data.to_vec()));
                        None
                    }
                    Payload::ReqTunnel(t) => {
                        self.tunnels.push_back(TunnelPacket::new(&pkt.header, t));
                        None
                    }
                    p if pkt.header.reqid == reqid => Some(f(p)),
                    _ => None,
                }
            };
            self.rbuf.drain(..n);
            if let Some(r) = out {
                return r;
            }
        }
    }

    /// Sends a control to `destnode` and returns its reply, whatever the
    /// status.
    pub fn control(&mut self, destnode: u32, data: ControlData<'_>) -> Result<ControlReply> {
        self.control_req(destnode, ReqControl::new(data))
    }

    /// Like [`Client::control`] with a prepared request (srvid, flags).
    pub fn control_req(&mut self, destnode: u32, req: ReqControl<'_>) -> Result<ControlReply> {
        let reqid = self.next_reqid();
        let opcode = req.opcode;
        let pkt = Packet::new(
            Header::new(0, destnode, self.pnn, reqid),
            Payload::ReqControl(req),
        );
        self.send(&pkt)?;
        self.wait_reply(reqid, |p| match p {
            Payload::ReplyControl(r) => Ok(ControlReply {
                status: r.status,
                data: r.data.to_vec(),
                errmsg: r.errmsg.to_vec(),
            }),
            Payload::ReplyError(e) => Err(PerfError::Control {
                opcode: op_name(opcode),
                status: e.status,
                message: String::from_utf8_lossy(e.msg).into_owned(),
            }),
            other => Err(PerfError::Cluster(format!(
                "unexpected {:?} in answer to control {}",
                other.operation(),
                op_name(opcode)
            ))),
        })
    }

    /// A control that must succeed (status 0, or any status for PING,
    /// GET_PNN and others that return their value in the status).
    pub fn control_ok(&mut self, destnode: u32, data: ControlData<'_>) -> Result<ControlReply> {
        let opcode = data.opcode();
        let value_in_status = [
            Opcode::Ping as u32,
            Opcode::GetPnn as u32,
            Opcode::GetRecmode as u32,
            Opcode::GetPid as u32,
        ]
        .contains(&opcode);
        let r = self.control(destnode, data)?;
        if r.status != 0 && !(value_in_status && r.status >= 0) {
            return Err(PerfError::Control {
                opcode: op_name(opcode),
                status: r.status,
                message: String::from_utf8_lossy(&r.errmsg).into_owned(),
            });
        }
        Ok(r)
    }

    /// PING the local daemon; returns the number of its clients.
    pub fn ping(&mut self) -> Result<i32> {
        Ok(self
            .control_ok(CTDB_CURRENT_NODE, ControlData::Ping)?
            .status)
    }

    /// REGISTER_SRVID: deliver messages for `srvid` to this connection.
    pub fn register_srvid(&mut self, srvid: u64) -> Result<()> {
        let r = self.control_req(
            CTDB_CURRENT_NODE,
            ReqControl::new(ControlData::RegisterSrvid).with_srvid(srvid),
        )?;
        if r.status != 0 {
            return Err(PerfError::Control {
                opcode: "REGISTER_SRVID",
                status: r.status,
                message: String::from_utf8_lossy(&r.errmsg).into_owned(),
            });
        }
        Ok(())
    }

    /// DEREGISTER_SRVID: stop delivering `srvid` to this connection.
    pub fn deregister_srvid(&mut self, srvid: u64) -> Result<()> {
        let r = self.control_req(
            CTDB_CURRENT_NODE,
            ReqControl::new(ControlData::DeregisterSrvid).with_srvid(srvid),
        )?;
        if r.status != 0 {
            return Err(PerfError::Control {
                opcode: "DEREGISTER_SRVID",
                status: r.status,
                message: String::from_utf8_lossy(&r.errmsg).into_owned(),
            });
        }
        Ok(())
    }

    /// Puts messages back at the front of the queue, in order, for a later
    /// [`Client::recv_message`] (a helper that waited for its own messages
    /// hands back the ones meant for its caller).
    pub fn requeue_messages(&mut self, msgs: Vec<(u64, Vec<u8>)>) {
        for m in msgs.into_iter().rev() {
            self.messages.push_front(m);
        }
    }

    /// GET_RECMODE of the local daemon (0 = normal, 1 = recovery).
    pub fn recmode(&mut self) -> Result<i32> {
        Ok(self
            .control_ok(CTDB_CURRENT_NODE, ControlData::GetRecmode)?
            .status)
    }

    /// Sends a message to whoever registered `srvid` on node `pnn`.
    pub fn send_message(&mut self, pnn: u32, srvid: u64, data: &[u8]) -> Result<()> {
        let reqid = self.next_reqid();
        let pkt = Packet::new(
            Header::new(0, pnn, self.pnn, reqid),
            Payload::ReqMessage(ReqMessage::raw(srvid, data)),
        );
        self.send(&pkt)
    }

    /// The next message (queued or from the socket), waiting until
    /// `deadline`; `None` when the deadline passes first.
    pub fn recv_message(&mut self, deadline: Instant) -> Result<Option<(u64, Vec<u8>)>> {
        loop {
            if let Some(m) = self.messages.pop_front() {
                return Ok(Some(m));
            }
            let n = match self.read_frame(deadline) {
                Ok(n) => n,
                Err(PerfError::Timeout { .. }) => return Ok(None),
                Err(e) => return Err(e),
            };
            {
                let pkt = Packet::decode(&self.rbuf[..n], &self.limits).map_err(|e| {
                    PerfError::Protocol {
                        what: format!("packet from {}", self.socket.display()),
                        source: e,
                    }
                })?;
                match &pkt.payload {
                    Payload::ReqMessage(m) => self.messages.push_back((m.srvid, m.data.to_vec())),
                    Payload::ReqTunnel(t) => {
                        self.tunnels.push_back(TunnelPacket::new(&pkt.header, t))
                    }
                    _ => {}
                }
            }
            self.rbuf.drain(..n);
        }
    }

    /// TUNNEL_REGISTER: deliver REQ_TUNNEL packets for `tunnel_id` to this
    /// connection.
    pub fn tunnel_register(&mut self, tunnel_id: u64) -> Result<()> {
        self.srvid_control(ControlData::TunnelRegister, tunnel_id, "TUNNEL_REGISTER")
    }

    /// TUNNEL_DEREGISTER.
    pub fn tunnel_deregister(&mut self, tunnel_id: u64) -> Result<()> {
        self.srvid_control(
            ControlData::TunnelDeregister,
            tunnel_id,
            "TUNNEL_DEREGISTER",
        )
    }

    fn srvid_control(
        &mut self,
        data: ControlData<'_>,
        srvid: u64,
        what: &'static str,
    ) -> Result<()> {
        let r = self.control_req(CTDB_CURRENT_NODE, ReqControl::new(data).with_srvid(srvid))?;
        if r.status != 0 {
            return Err(PerfError::Control {
                opcode: what,
                status: r.status,
                message: String::from_utf8_lossy(&r.errmsg).into_owned(),
            });
        }
        Ok(())
    }

    /// Sends a REQ_TUNNEL request on `tunnel_id` to `destnode` without
    /// waiting for a reply (`CTDB_TUNNEL_FLAG_REQUEST | NOREPLY`).
    pub fn tunnel_send(&mut self, tunnel_id: u64, destnode: u32, data: &[u8]) -> Result<()> {
        let reqid = self.next_reqid();
        let pkt = Packet::new(
            Header::new(0, destnode, self.pnn, reqid),
            Payload::ReqTunnel(ReqTunnel {
                tunnel_id,
                flags: CTDB_TUNNEL_FLAG_REQUEST | CTDB_TUNNEL_FLAG_NOREPLY,
                data,
            }),
        );
        self.send(&pkt)
    }

    /// The next REQ_TUNNEL packet (queued or from the socket), waiting
    /// until `deadline`; `None` when the deadline passes first. Messages
    /// that arrive meanwhile stay queued for [`Client::recv_message`].
    pub fn recv_tunnel(&mut self, deadline: Instant) -> Result<Option<TunnelPacket>> {
        loop {
            if let Some(t) = self.tunnels.pop_front() {
                return Ok(Some(t));
            }
            let n = match self.read_frame(deadline) {
                Ok(n) => n,
                Err(PerfError::Timeout { .. }) => return Ok(None),
                Err(e) => return Err(e),
            };
            {
                let pkt = Packet::decode(&self.rbuf[..n], &self.limits).map_err(|e| {
                    PerfError::Protocol {
                        what: format!("packet from {}", self.socket.display()),
                        source: e,
                    }
                })?;
                match &pkt.payload {
                    Payload::ReqMessage(m) => self.messages.push_back((m.srvid, m.data.to_vec())),
                    Payload::ReqTunnel(t) => {
                        self.tunnels.push_back(TunnelPacket::new(&pkt.header, t))
                    }
                    _ => {}
                }
            }
            self.rbuf.drain(..n);
        }
    }

    /// Attaches `name` (DB_ATTACH or DB_ATTACH_PERSISTENT), asks for its
    /// path and open flags and opens the local TDB file as the client
    /// library does.
    pub fn attach(&mut self, name: &str, persistent: bool) -> Result<Db> {
        let data = if persistent {
            ControlData::DbAttachPersistent(CtdbString::new(name))
        } else {
            ControlData::DbAttach(CtdbString::new(name))
        };
        self.attach_with(name, data)
    }

    /// Attaches `name` as a replicated database (DB_ATTACH_REPLICATED) and
    /// opens its local file; transactions work on it as on a persistent
    /// one.
    pub fn attach_replicated(&mut self, name: &str) -> Result<Db> {
        self.attach_with(name, ControlData::DbAttachReplicated(CtdbString::new(name)))
    }

    fn attach_with(&mut self, name: &str, data: ControlData<'_>) -> Result<Db> {
        let r = self.control_ok(CTDB_CURRENT_NODE, data)?;
        let id = u32_out(&r.data, "DB_ATTACH")?;
        let r = self.control_ok(CTDB_CURRENT_NODE, ControlData::Getdbpath(id))?;
        let path = CtdbString::from_bytes(&r.data)
            .ok()
            .and_then(|s| s.as_str().map(PathBuf::from))
            .ok_or_else(|| PerfError::Control {
                opcode: "GETDBPATH",
                status: 0,
                message: "reply is not a path".into(),
            })?;
        let r = self.control_ok(CTDB_CURRENT_NODE, ControlData::DbOpenFlags(id))?;
        let flags = u32_out(&r.data, "DB_OPEN_FLAGS")?;
        // Never wipe the daemon's file: it holds it open, but be explicit.
        let flags = flags & !ctdb_engine::flags::CLEAR_IF_FIRST;
        let db = Database::open(
            &path,
            &OpenOptions::new()
                .tdb_flags(flags)
                .create(false)
                .max_dead(5),
        )
        .map_err(|e| PerfError::Engine {
            path: path.clone(),
            source: e,
        })?;
        let store = db.handle().map_err(|e| PerfError::Engine {
            path: path.clone(),
            source: e,
        })?;
        Ok(Db {
            id,
            name: name.to_string(),
            path,
            store,
        })
    }

    /// REQ_CALL (`CTDB_NULL_FUNC`) with `flags`; waits for REPLY_CALL.
    pub fn call(&mut self, db: &Db, key: &[u8], flags: u32) -> Result<()> {
        let reqid = self.next_reqid();
        let pkt = Packet::new(
            Header::new(0, CTDB_CURRENT_NODE, self.pnn, reqid),
            Payload::ReqCall(ReqCall {
                flags,
                db_id: db.id,
                callid: CTDB_NULL_FUNC,
                hopcount: 0,
                key,
                calldata: &[],
            }),
        );
        self.send(&pkt)?;
        let name = db.name.clone();
        self.wait_reply(reqid, |p| match p {
            Payload::ReplyCall(r) if r.status == 0 => Ok(()),
            Payload::ReplyCall(r) => Err(PerfError::Call {
                db: name.clone(),
                status: r.status,
                message: String::new(),
            }),
            Payload::ReplyError(e) => Err(PerfError::Call {
                db: name.clone(),
                status: e.status,
                message: String::from_utf8_lossy(e.msg).into_owned(),
            }),
            other => Err(PerfError::Cluster(format!(
                "unexpected {:?} in answer to REQ_CALL",
                other.operation()
            ))),
        })
    }

    /// Fetch-lock as `ctdb_fetch_lock` does: chain-lock the key in the
    /// local file; if this node is the record's dmaster (and it has no
    /// read-only delegations) return header and data with the chain still
    /// locked; else unlock, migrate the record here with REQ_CALL +
    /// `CTDB_IMMEDIATE_MIGRATION` and look again. Returns the record and
    /// the number of migrations it took. Release with [`Db::unlock`]
    /// (after an optional [`Db::store_locked`]).
    pub fn fetch_lock(&mut self, db: &mut Db, key: &[u8]) -> Result<(Record, u32)> {
        self.fetch_lock_mode(db, key, false)
    }

    /// Fetch-lock for reading (`ctdb_fetch_lock` with readonly set): a
    /// local read-only copy (`RO_HAVE_READONLY`) or delegations
    /// (`RO_HAVE_DELEGATIONS`) are good enough; otherwise the migration
    /// request also carries `CTDB_WANT_READONLY`, so a database with
    /// read-only records enabled hands out a read-only copy instead of the
    /// record.
    pub fn fetch_lock_readonly(&mut self, db: &mut Db, key: &[u8]) -> Result<(Record, u32)> {
        self.fetch_lock_mode(db, key, true)
    }

    fn fetch_lock_mode(
        &mut self,
        db: &mut Db,
        key: &[u8],
        readonly: bool,
    ) -> Result<(Record, u32)> {
        let ro_flags = CTDB_REC_RO_HAVE_READONLY | CTDB_REC_RO_HAVE_DELEGATIONS;
        let mut migrations = 0;
        loop {
            db.lock(key)?;
            let value = match db.store.fetch(key) {
                Ok(v) => v,
                Err(e) => {
                    let _ = db.unlock(key);
                    return Err(db.engine_err(e));
                }
            };
            if let Some(v) = value {
                if let Some((h, data)) = LtdbHeader::split(&v) {
                    let usable = if readonly {
                        h.dmaster == self.pnn || h.flags.0 & ro_flags != 0
                    } else {
                        h.dmaster == self.pnn && h.flags.0 & CTDB_REC_RO_HAVE_DELEGATIONS == 0
                    };
                    if usable {
                        return Ok((
                            Record {
                                header: h,
                                data: data.to_vec(),
                            },
                            migrations,
                        ));
                    }
                }
            }
            db.unlock(key)?;
            let flags = if readonly {
                CTDB_IMMEDIATE_MIGRATION | CTDB_WANT_READONLY
            } else {
                CTDB_IMMEDIATE_MIGRATION
            };
            self.call(db, key, flags)?;
            migrations += 1;
            if migrations > 1000 {
                return Err(PerfError::Timeout {
                    what: format!("fetch_lock on {}: record keeps moving away", db.name),
                });
            }
        }
    }

    /// This client's server id for database `db_id`: pid, vnn and the
    /// database as the client library builds it, plus a task id unique to
    /// this connection (the library has one connection per process; the
    /// harness has many per process, and each must be its own g_lock
    /// holder).
    pub fn server_id(&self, db_id: u32) -> ServerId {
        ServerId {
            pid: u64::from(std::process::id()),
            task_id: self.task_id,
            vnn: self.pnn,
            unique_id: u64::from(db_id),
        }
    }

    /// Takes the g_lock `name` (write) in `g_lock` for `sid`, as
    /// `ctdb_g_lock_lock`: fetch-lock the lock record, and if a conflicting
    /// holder exists ask its node whether the process still exists
    /// (PROCESS_EXISTS), retrying after 1 ms while it does, dropping it if
    /// not; then append ourselves and store.
    pub fn g_lock_lock(&mut self, g_lock: &mut Db, name: &[u8], sid: ServerId) -> Result<u32> {
        let mut retries = 0u32;
        loop {
            let (rec, _) = self.fetch_lock(g_lock, name)?;
            let mut list = GLockList::from_bytes(&rec.data).unwrap_or_default();
            if list.locks.iter().any(|l| l.sid == sid) {
                g_lock.unlock(name)?;
                return Err(PerfError::Cluster("g_lock: deadlock (already held)".into()));
            }
            // Every lock taken here is a write lock: any holder conflicts.
            let holder = match list.locks.first() {
                None => {
                    list.locks.push(GLock { write: true, sid });
                    let bytes = list.to_bytes();
                    let r = g_lock.store_locked(name, &rec.header, &bytes);
                    g_lock.unlock(name)?;
                    r?;
                    return Ok(retries);
                }
                Some(l) => l.sid,
            };
            g_lock.unlock(name)?;
            let r = self.control(holder.vnn, ControlData::ProcessExists(holder.pid as i32))?;
            retries += 1;
            if r.status == 0 {
                // The holder lives: wait a little and look again.
                std::thread::sleep(Duration::from_millis(1));
                continue;
            }
            // The holder is gone: drop its entry.
            let (rec, _) = self.fetch_lock(g_lock, name)?;
            let mut list = GLockList::from_bytes(&rec.data).unwrap_or_default();
            list.locks.retain(|l| l.sid != holder);
            let bytes = list.to_bytes();
            let r = g_lock.store_locked(name, &rec.header, &bytes);
            g_lock.unlock(name)?;
            r?;
        }
    }

    /// Drops `sid` from the g_lock `name` (`ctdb_g_lock_unlock`; an empty
    /// list is stored empty rather than scheduled for deletion).
    pub fn g_lock_unlock(&mut self, g_lock: &mut Db, name: &[u8], sid: ServerId) -> Result<()> {
        let (rec, _) = self.fetch_lock(g_lock, name)?;
        let mut list = GLockList::from_bytes(&rec.data).unwrap_or_default();
        list.locks.retain(|l| l.sid != sid);
        let bytes = list.to_bytes();
        let r = g_lock.store_locked(name, &rec.header, &bytes);
        g_lock.unlock(name)?;
        r
    }

    /// One persistent transaction as `ctdb ptrans` runs it: g_lock
    /// `transaction_db_0x<id>` in `g_lock.tdb`, read the records from the
    /// local copy, let `update` produce new values, write them with rsn + 1
    /// together with the incremented `__db_sequence_number__` in one
    /// TRANS3_COMMIT to the local daemon (retried while the sequence
    /// number shows it did not apply), then release the g_lock.
    pub fn transaction(
        &mut self,
        db: &mut Db,
        g_lock: &mut Db,
        keys: &[&[u8]],
        mut update: impl FnMut(&[u8], &[u8]) -> Vec<u8>,
    ) -> Result<()> {
        let lock_name = format!("transaction_db_0x{:08x}\0", db.id);
        let sid = self.server_id(db.id);
        self.g_lock_lock(g_lock, lock_name.as_bytes(), sid)?;
        let r = self.transaction_locked(db, keys, &mut update);
        let u = self.g_lock_unlock(g_lock, lock_name.as_bytes(), sid);
        r.and(u)
    }

    fn transaction_locked(
        &mut self,
        db: &mut Db,
        keys: &[&[u8]],
        update: &mut impl FnMut(&[u8], &[u8]) -> Vec<u8>,
    ) -> Result<()> {
        let mut rb = RecBufferBuilder::new(db.id);
        for key in keys {
            let (mut h, old) = db.ltdb_fetch(key)?;
            let new = update(key, &old);
            if new != old {
                h.dmaster = self.pnn;
                h.rsn += 1;
                rb.add(0, Some(&wire_header(&h)), key, &new);
            }
        }
        let (mut h, old) = db.ltdb_fetch(CTDB_DB_SEQNUM_KEY_Z)?;
        let seqnum = seqnum_of(&old);
        h.dmaster = self.pnn;
        h.rsn += 1;
        rb.add(
            0,
            Some(&wire_header(&h)),
            CTDB_DB_SEQNUM_KEY_Z,
            &(seqnum + 1).to_le_bytes(),
        );
        // Upstream's client retries for as long as the daemon refuses (a
        // recovery is running); bounded here, by time: a recovery loop
        // (`ctdb recover` every 2 s) can keep one node refusing for
        // seconds at a stretch.
        let deadline = std::time::Instant::now() + COMMIT_RETRY_LIMIT;
        while std::time::Instant::now() < deadline {
            let r = self.control(
                CTDB_CURRENT_NODE,
                ControlData::Trans3Commit(rb.as_rec_buffer()),
            )?;
            if r.status == 0 {
                return Ok(());
            }
            let (_, now) = db.ltdb_fetch(CTDB_DB_SEQNUM_KEY_Z)?;
            let now = seqnum_of(&now);
            if now == seqnum + 1 {
                return Ok(());
            }
            if now != seqnum {
                return Err(PerfError::Cluster(format!(
                    "transaction on {}: seqnum {now} is neither {seqnum} nor {seqnum}+1",
                    db.name
                )));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Err(PerfError::Timeout {
            what: format!("TRANS3_COMMIT on {} kept failing", db.name),
        })
    }
}

/// How long a TRANS3_COMMIT the daemon keeps refusing is retried.
const COMMIT_RETRY_LIMIT: Duration = Duration::from_secs(60);

/// The sequence-number key with its terminating NUL, as the client library
/// stores it (`strlen + 1`).
const CTDB_DB_SEQNUM_KEY_Z: &[u8] = b"__db_sequence_number__\0";

fn wire_header(h: &LtdbHeader) -> ctdb_protocol::types::LtdbHeader {
    ctdb_protocol::types::LtdbHeader {
        rsn: h.rsn,
        dmaster: h.dmaster,
        reserved1: h.reserved1,
        flags: h.flags.0,
    }
}

fn seqnum_of(v: &[u8]) -> u64 {
    if v.len() == 8 {
        let mut b = [0u8; 8];
        b.copy_from_slice(v);
        u64::from_le_bytes(b)
    } else {
        0
    }
}

fn op_name(opcode: u32) -> &'static str {
    opcode_name(opcode)
}

fn u32_out(data: &[u8], what: &'static str) -> Result<u32> {
    match data.get(..4) {
        Some(b) => Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]])),
        None => Err(PerfError::Control {
            opcode: what,
            status: 0,
            message: format!("reply has {} bytes, want 4", data.len()),
        }),
    }
}

/// A REQ_TUNNEL packet received on a registered tunnel.
#[derive(Debug, Clone)]
pub struct TunnelPacket {
    pub srcnode: u32,
    pub reqid: u32,
    pub tunnel_id: u64,
    pub flags: u32,
    pub data: Vec<u8>,
}

impl TunnelPacket {
    fn new(h: &Header, t: &ReqTunnel<'_>) -> TunnelPacket {
        TunnelPacket {
            srcnode: h.srcnode,
            reqid: h.reqid,
            tunnel_id: t.tunnel_id,
            flags: t.flags,
            data: t.data.to_vec(),
        }
    }
}

/// A record under fetch-lock: its ltdb header and user data.
pub struct Record {
    pub header: LtdbHeader,
    pub data: Vec<u8>,
}

impl Db {
    fn engine_err(&self, e: ctdb_engine::Error) -> PerfError {
        PerfError::Engine {
            path: self.path.clone(),
            source: e,
        }
    }

    /// Chain-locks `key` in the local file.
    pub fn lock(&mut self, key: &[u8]) -> Result<()> {
        self.store.chainlock(key).map_err(|e| self.engine_err(e))
    }

    /// Releases [`Db::lock`] / a fetch-lock.
    pub fn unlock(&mut self, key: &[u8]) -> Result<()> {
        self.store.chainunlock(key).map_err(|e| self.engine_err(e))
    }

    /// Stores `header || data` while holding the chain lock
    /// (`ctdb_store_record`).
    pub fn store_locked(&mut self, key: &[u8], header: &LtdbHeader, data: &[u8]) -> Result<()> {
        let v = header.with_data(data);
        self.store
            .store(key, &v, StoreFlag::Replace)
            .map_err(|e| self.engine_err(e))
    }

    /// The record as `ctdb_ltdb_fetch` reads it: a missing record is an
    /// empty value with dmaster `CTDB_UNKNOWN_PNN`.
    pub fn ltdb_fetch(&mut self, key: &[u8]) -> Result<(LtdbHeader, Vec<u8>)> {
        let v = self.store.fetch(key).map_err(|e| self.engine_err(e))?;
        match v.as_deref().and_then(LtdbHeader::split) {
            Some((h, d)) => Ok((h, d.to_vec())),
            None => Ok((
                LtdbHeader {
                    dmaster: CTDB_UNKNOWN_PNN,
                    ..LtdbHeader::default()
                },
                Vec::new(),
            )),
        }
    }

    /// The raw value of `key` in the local file (header and data), without
    /// locking; `None` if there is no record.
    pub fn raw_fetch(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let v = self.store.fetch(key).map_err(|e| self.engine_err(e))?;
        Ok(v.map(|v| v.to_vec()))
    }

    /// Records in the local file with a full ltdb header and data (what
    /// this node holds after a recovery).
    pub fn count_records(&mut self) -> Result<u64> {
        let mut n = 0u64;
        let path = self.path.clone();
        self.store
            .traverse_read(|_k, v| {
                if v.len() > 24 {
                    n += 1;
                }
                Walk::Continue
            })
            .map_err(|e| PerfError::Engine { path, source: e })?;
        Ok(n)
    }

    /// Writes `header || data` directly into the local file (no locking
    /// beyond the chain lock the store takes); used to fill databases
    /// quickly for the recovery workloads.
    pub fn store_direct(&mut self, key: &[u8], header: &LtdbHeader, data: &[u8]) -> Result<()> {
        self.store_locked(key, header, data)
    }
}
