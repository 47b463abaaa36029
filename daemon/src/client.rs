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
//!   carries on. A packet is served straight out of the reader's buffer
//!   and its replies leave in one write from the client's own task
//!   (`SendQueue::send_all`) unless earlier ones still wait in the queue.
//!
//! * What a packet does is decided in [`crate::controls`]; a packet that
//!   cannot be answered yet (an attach during recovery, a call on a frozen
//!   database) is handed in again every 100 ms until DeferredAttachTimeout.
//!   Each client is registered in [`Daemon::clients`] with its srvids, so
//!   messages reach whoever registered them.

use std::io;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener as StdUnixListener, UnixStream as StdUnixStream};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::Duration;

use ctdb_io::{PacketReader, SendQueue, SendQueueConfig};

use crate::controls::{self, Outcome};
use crate::error::DaemonError;
use crate::runtime::{Bell, Ringer, StopSignal};
use crate::state::Daemon;
use crate::sys;

/// Most clients waiting in the accept queue before the accept thread
/// stops accepting (back-pressure into the kernel's listen backlog).
const ACCEPT_QUEUE: usize = 128;

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
    // Bound under a temporary name, secured, then renamed into place: a
    // client never finds the socket before it has its final mode.
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".new");
    let tmp = std::path::PathBuf::from(tmp);
    match std::fs::remove_file(&tmp) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => {
            return Err(DaemonError::path("remove stale socket", &tmp, e));
        }
        _ => {}
    }
    let listener = sys::with_umask(0o077, || StdUnixListener::bind(&tmp))
        .map_err(|e| DaemonError::path("bind ctdb socket", &tmp, e))?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o700))
        .map_err(|e| DaemonError::path("secure (chmod) ctdb socket", &tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| DaemonError::path("rename ctdb socket", path, e))?;
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
    daemon: Rc<Daemon>,
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
            let daemon = daemon.clone();
            match sys::into_glommio(acc.stream) {
                Ok(stream) => {
                    // Detached: a client task ends with its connection, or
                    // is dropped with the executor at shutdown.
                    glommio::spawn_local(client_task(daemon, stream, acc.peer_pid)).detach();
                }
                Err(e) => tracing::error!("cannot attach client connection: {e}"),
            }
        }
    }
}

/// Unregisters the client however its task ends.
struct ClientGuard(Rc<Daemon>, u32);

impl Drop for ClientGuard {
    fn drop(&mut self) {
        self.0.remove_client(self.1);
    }
}

/// How long a deferred packet (attach during recovery, call on a frozen
/// database) waits between attempts.
const DEFER_RETRY: Duration = Duration::from_millis(100);

pub(crate) async fn client_task(
    daemon: Rc<Daemon>,
    stream: glommio::net::UnixStream,
    peer_pid: i32,
) {
    tracing::trace!("client connected, pid {peer_pid}");
    let (rd, wr) = ctdb_io::split(stream);
    let queue = Rc::new(SendQueue::spawn(
        wr,
        SendQueueConfig {
            frame: daemon.frame,
            pad: true,
            capacity: 1024,
        },
    ));
    let id = daemon.add_client(peer_pid, queue.clone());
    let guard = ClientGuard(daemon.clone(), id);
    let mut reader = PacketReader::with_config(rd, daemon.frame);
    let mut out = Vec::new();
    'conn: loop {
        let pkt = match reader.next_packet().await {
            Ok(Some(p)) => p,
            Ok(None) => break,
            Err(e) => {
                tracing::error!("client pid {peer_pid}: {e}; closing connection");
                break;
            }
        };
        daemon.call_started(id, pkt);
        let deadline = std::time::Instant::now()
            + Duration::from_secs(u64::from(daemon.tunable("DeferredAttachTimeout", 120)));
        loop {
            out.clear();
            match controls::serve_client_packet(&daemon, id, pkt, &mut out).await {
                Ok(Outcome::Done) => break,
                Ok(Outcome::Deferred) => {
                    if std::time::Instant::now() > deadline {
                        tracing::error!("client pid {peer_pid}: deferred request timed out");
                        break;
                    }
                    glommio::timer::sleep(DEFER_RETRY).await;
                }
                Err(why) => {
                    tracing::error!("client pid {peer_pid}: {why}; closing connection");
                    break 'conn;
                }
            }
        }
        // The whole reply in one write, straight from this task when
        // nothing is queued before it (see `SendQueue::send_all`).
        if !out.is_empty() {
            daemon.call_answered(id, &out);
            if let Err(e) = queue.send_all(&out).await {
                tracing::error!("client pid {peer_pid}: {e}");
                break 'conn;
            }
        }
    }
    drop(guard);
    // Let queued replies go out before the socket closes.
    if let Ok(q) = Rc::try_unwrap(queue) {
        let _ = q.close().await;
    }
    tracing::trace!("client pid {peer_pid} disconnected");
}

/// Removes the socket file at shutdown.
pub fn remove_socket(path: &PathBuf) {
    if let Err(e) = std::fs::remove_file(path) {
        if e.kind() != io::ErrorKind::NotFound {
            tracing::warn!("cannot remove {}: {e}", path.display());
        }
    }
}
