//! The client socket: where `ctdb`, smbd and the other local clients talk to
//! the daemon.
//!
//! * Path: `--socket`, else `CTDB_SOCKET`, else `<rundir>/ctdbd.socket`
//!   (`/run/ctdb`, or `$CTDB_BASE/run` in test mode).
//! * Start-up (as upstream 4.17's `ux_socket_bind`): a leftover socket file
//!   is removed, the socket is bound with a 0077 umask and then made 0700,
//!   so only the daemon's user (root) can connect. We first try to connect to
//!   a leftover socket: if a daemon answers there, we refuse to start rather
//!   than steal its socket.
//! * Accepting: a small helper thread blocks in `accept(2)`, reads the
//!   peer's pid with SO_PEERCRED (upstream keeps it per client for
//!   PROCESS_EXISTS and friends) and hands the connection to the control
//!   core through a bounded queue plus a wake-up byte the control core reads
//!   through io_uring. Why not glommio's own `UnixListener::accept`: glommio
//!   0.9 hides the descriptor of accepted Unix streams, so their peer
//!   credentials cannot be read.
//! * Each client is a task on the control core: a [`PacketReader`] on the
//!   read half, a [`SendQueue`] on the write half. Garbage (bad length,
//!   bad magic), short and oversize packets close that client; the daemon
//!   carries on.
//!
//! Controls answered so far: PING (status = number of clients), GET_PNN
//! (status = pnn), GET_PID (status = daemon pid), REGISTER_SRVID and
//! DEREGISTER_SRVID (kept per client; messages are not delivered yet, but
//! `ctdb` registers one before any command). Others get status -1, as
//! upstream answers unknown controls.

use std::cell::Cell;
use std::collections::HashSet;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener as StdUnixListener, UnixStream as StdUnixStream};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::Duration;

use ctdb_io::{FrameConfig, PacketReader, SendQueue, SendQueueConfig};
use ctdb_protocol::constants::{CTDB_CURRENT_NODE, INVALID_GENERATION};
use ctdb_protocol::{
    DecodeLimits, Header, Opcode, Packet, Payload, RawHeader, ReplyControl, ReqControl,
    CTDB_PROTOCOL,
};

use crate::error::DaemonError;
use crate::runtime::{Bell, Ringer, StopSignal};
use crate::sys;

/// Most clients waiting in the accept queue before the accept thread
/// stops accepting (back-pressure into the kernel's listen backlog).
const ACCEPT_QUEUE: usize = 128;

/// Daemon state the client code reads.
pub struct DaemonState {
    pub pnn: u32,
    pub pid: i32,
    /// vnn_map generation, echoed in reply headers.
    pub generation: u32,
    pub num_clients: Cell<u32>,
    pub frame: FrameConfig,
    pub limits: DecodeLimits,
}

impl DaemonState {
    pub fn new(pnn: u32) -> DaemonState {
        DaemonState {
            pnn,
            pid: sys::getpid(),
            generation: INVALID_GENERATION,
            num_clients: Cell::new(0),
            frame: FrameConfig::default(),
            limits: DecodeLimits::default(),
        }
    }
}

/// A connection accepted by the accept thread.
pub struct Accepted {
    pub stream: StdUnixStream,
    pub peer_pid: i32,
}

/// Removes a leftover socket, binds a fresh one only root can use, and
/// listens.
pub fn bind_socket(path: &Path) -> Result<StdUnixListener, DaemonError> {
    if let Some(dir) = path.parent() {
        if !dir.as_os_str().is_empty() && !dir.is_dir() {
            std::fs::create_dir_all(dir)
                .map_err(|e| DaemonError::path("create socket directory", dir, e))?;
        }
    }
    match std::fs::symlink_metadata(path) {
        Ok(_) => {
            if StdUnixStream::connect(path).is_ok() {
                return Err(DaemonError::AlreadyRunning {
                    what: "listening on socket",
                    path: path.to_path_buf(),
                });
            }
            std::fs::remove_file(path)
                .map_err(|e| DaemonError::path("remove stale socket", path, e))?;
            tracing::warn!("Removed stale socket {}", path.display());
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(DaemonError::path("inspect socket path", path, e)),
    }
    let listener = sys::with_umask(0o077, || StdUnixListener::bind(path))
        .map_err(|e| DaemonError::path("bind ctdb socket", path, e))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700))
        .map_err(|e| DaemonError::path("secure (chmod) ctdb socket", path, e))?;
    tracing::info!("Listening to ctdb socket {}", path.display());
    Ok(listener)
}

/// Starts the accept thread. Connections go into the returned queue, and
/// `ring` wakes the control core for each.
pub fn spawn_accept_thread(
    listener: StdUnixListener,
    ring: Ringer,
) -> Result<crossbeam::channel::Receiver<Accepted>, DaemonError> {
    let (tx, rx) = crossbeam::channel::bounded::<Accepted>(ACCEPT_QUEUE);
    std::thread::Builder::new()
        .name("ctdb-accept".into())
        .spawn(move || loop {
            match listener.accept() {
                Ok((stream, _)) => {
                    let peer_pid = sys::peer_pid(&stream).unwrap_or(-1);
                    if tx.send(Accepted { stream, peer_pid }).is_err() {
                        return; // control core gone
                    }
                    ring.ring();
                }
                Err(e) => {
                    tracing::error!("accept on ctdb socket failed: {e}");
                    // EMFILE and friends: back off instead of spinning.
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        })
        .map_err(|e| DaemonError::sys("spawn accept thread", e))?;
    Ok(rx)
}

/// The control core's side of accepting: waits for wake-ups, takes the
/// queued connections and starts a task for each, until `stop`.
pub async fn serve(
    state: Rc<DaemonState>,
    queue: crossbeam::channel::Receiver<Accepted>,
    mut bell: Bell,
    stop: StopSignal,
) {
    loop {
        let woke = futures_lite::future::or(async { Some(bell.wait().await) }, async {
            stop.stopped().await;
            None
        })
        .await;
        match woke {
            None | Some(false) => break,
            Some(true) => {}
        }
        while let Ok(acc) = queue.try_recv() {
            let state = state.clone();
            match sys::into_glommio(acc.stream) {
                Ok(stream) => {
                    // Detached: a client task ends with its connection, or
                    // is dropped with the executor at shutdown.
                    glommio::spawn_local(client_task(state, stream, acc.peer_pid)).detach();
                }
                Err(e) => tracing::error!("cannot attach client connection: {e}"),
            }
        }
    }
}

/// Decrements the client count however the client task ends.
struct ClientGuard(Rc<DaemonState>);

impl Drop for ClientGuard {
    fn drop(&mut self) {
        let n = self.0.num_clients.get();
        self.0.num_clients.set(n.saturating_sub(1));
    }
}

async fn client_task(state: Rc<DaemonState>, stream: glommio::net::UnixStream, peer_pid: i32) {
    state.num_clients.set(state.num_clients.get() + 1);
    let _guard = ClientGuard(state.clone());
    tracing::debug!("client connected, pid {peer_pid}");
    let (rd, wr) = ctdb_io::split(stream);
    let queue = SendQueue::spawn(
        wr,
        SendQueueConfig {
            frame: state.frame,
            pad: true,
            capacity: 256,
        },
    );
    let mut reader = PacketReader::with_config(rd, state.frame);
    let mut client = Client {
        srvids: HashSet::new(),
    };
    let mut reply = Vec::new();
    loop {
        let pkt = match reader.next_packet().await {
            Ok(Some(p)) => p,
            Ok(None) => break,
            Err(e) => {
                tracing::error!("client pid {peer_pid}: {e}; closing connection");
                break;
            }
        };
        reply.clear();
        match handle_packet(&state, &mut client, pkt, &mut reply) {
            Ok(()) => {}
            Err(why) => {
                tracing::error!("client pid {peer_pid}: {why}; closing connection");
                break;
            }
        }
        if !reply.is_empty() {
            if let Err(e) = queue.send(std::mem::take(&mut reply)).await {
                tracing::error!("client pid {peer_pid}: {e}");
                break;
            }
        }
    }
    // Let queued replies go out before the socket closes.
    let _ = queue.close().await;
    tracing::debug!("client pid {peer_pid} disconnected");
}

/// Per-connection state.
struct Client {
    /// Message ids this client registered (REGISTER_SRVID).
    srvids: HashSet<u64>,
}

/// Handles one packet from a client. Fills `reply` when there is one.
/// `Err` means the packet is malformed and the connection must go.
fn handle_packet(
    state: &DaemonState,
    client: &mut Client,
    pkt: &[u8],
    reply: &mut Vec<u8>,
) -> Result<(), String> {
    let raw = RawHeader::parse(pkt).map_err(|e| e.to_string())?;
    // As upstream: a wrong version or an unknown operation drops the
    // packet, not the connection (framing is intact).
    if raw.version != CTDB_PROTOCOL {
        tracing::error!("Bad CTDB version 0x{:x} rejected in daemon", raw.version);
        return Ok(());
    }
    if raw.operation().is_err() {
        tracing::error!("daemon: unrecognized operation {}", raw.operation);
        return Ok(());
    }
    let packet = Packet::decode(pkt, &state.limits).map_err(|e| e.to_string())?;
    match &packet.payload {
        Payload::ReqControl(c) => {
            if c.noreply() {
                return Ok(());
            }
            let dest = packet.header.destnode;
            let status = if dest != CTDB_CURRENT_NODE && dest != state.pnn {
                // Node links do not exist yet.
                -1
            } else {
                local_control(state, client, c)
            };
            let header = Header::new(state.generation, 0, state.pnn, packet.header.reqid);
            Packet::new(header, Payload::ReplyControl(ReplyControl::status(status)))
                .encode(reply)
                .map_err(|e| e.to_string())?;
            Ok(())
        }
        Payload::ReqCall(_) | Payload::ReqMessage(_) | Payload::ReqTunnel(_) => {
            tracing::warn!(
                "client operation {} not implemented yet",
                packet.operation().name()
            );
            Ok(())
        }
        other => {
            tracing::error!(
                "daemon: operation {} is not accepted from clients",
                other.operation().name()
            );
            Ok(())
        }
    }
}

/// Controls the daemon can answer on its own; the status of the reply.
fn local_control(state: &DaemonState, client: &mut Client, c: &ReqControl<'_>) -> i32 {
    const PING: u32 = Opcode::Ping as u32;
    const GET_PNN: u32 = Opcode::GetPnn as u32;
    const GET_PID: u32 = Opcode::GetPid as u32;
    const REGISTER_SRVID: u32 = Opcode::RegisterSrvid as u32;
    const DEREGISTER_SRVID: u32 = Opcode::DeregisterSrvid as u32;
    match c.opcode {
        PING => {
            if !c.data.is_empty() {
                tracing::error!("PING with {} bytes of data, expected none", c.data.len());
                return -1;
            }
            state.num_clients.get() as i32
        }
        GET_PNN => state.pnn as i32,
        GET_PID => state.pid,
        REGISTER_SRVID => {
            client.srvids.insert(c.srvid);
            0
        }
        DEREGISTER_SRVID => {
            if client.srvids.remove(&c.srvid) {
                0
            } else {
                tracing::error!("Failed to deregister srvid 0x{:x}: not registered", c.srvid);
                -1
            }
        }
        op => {
            tracing::error!("Unknown CTDB control opcode {op}");
            -1
        }
    }
}

/// Removes the socket file at shutdown.
pub fn remove_socket(path: &PathBuf) {
    if let Err(e) = std::fs::remove_file(path) {
        if e.kind() != io::ErrorKind::NotFound {
            tracing::warn!("cannot remove {}: {e}", path.display());
        }
    }
}
