//! The eventd socket server: accepts clients on a Unix socket and serves
//! RUN, STATUS and SCRIPT requests from an [`EventRunner`].
//!
//! Plain threads and blocking I/O: one thread per connection reading
//! requests, one per request while it runs, because a client (ctdbd) may
//! have several requests outstanding on one connection and a new event
//! must be able to cancel a running monitor. Replies are written whole
//! under a per-connection lock, in completion order, each tagged with its
//! request id. A packet that does not decode closes the connection, as
//! upstream does.

use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Instant;

use super::protocol::{self, Reply, Request, HEADER_LEN, MAX_PACKET, RUN_ALL};
use super::runner::EventRunner;
use crate::DaemonError;

/// A bound eventd socket.
pub struct Server {
    listener: UnixListener,
    path: PathBuf,
    runner: Arc<EventRunner>,
}

/// Reads one length-prefixed packet; `Ok(None)` at a clean end of stream.
pub fn read_packet(s: &mut impl Read) -> Result<Option<Vec<u8>>, DaemonError> {
    let mut len = [0u8; 4];
    let mut got = 0;
    while got < 4 {
        match s.read(&mut len[got..]) {
            Ok(0) if got == 0 => return Ok(None),
            Ok(0) => {
                return Err(DaemonError::Truncated {
                    what: "packet length",
                    offset: got,
                    need: 4,
                    have: got,
                })
            }
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(DaemonError::path("read from", "event socket", e)),
        }
    }
    let length = u32::from_ne_bytes(len);
    if (length as usize) < HEADER_LEN {
        return Err(DaemonError::BadLength {
            length,
            why: "shorter than the 12-byte header",
        });
    }
    if length as usize > MAX_PACKET {
        return Err(DaemonError::BadLength {
            length,
            why: "larger than 64 MiB",
        });
    }
    let mut buf = vec![0u8; length as usize];
    buf[..4].copy_from_slice(&len);
    s.read_exact(&mut buf[4..])
        .map_err(|e| DaemonError::path("read from", "event socket", e))?;
    Ok(Some(buf))
}

impl Server {
    /// Binds `path`, removing a stale socket file first (as upstream does
    /// when it holds the pid file).
    pub fn bind(path: &Path, runner: Arc<EventRunner>) -> Result<Server, DaemonError> {
        if let Some(dir) = path.parent() {
            if !dir.as_os_str().is_empty() && !dir.exists() {
                std::fs::create_dir_all(dir)
                    .map_err(|e| DaemonError::path("create directory", dir, e))?;
            }
        }
        match std::fs::remove_file(path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(DaemonError::path("remove stale socket", path, e)),
        }
        let listener = UnixListener::bind(path).map_err(|e| DaemonError::path("bind", path, e))?;
        tracing::info!("listening on {}", path.display());
        Ok(Server {
            listener,
            path: path.to_path_buf(),
            runner,
        })
    }

    /// The socket path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Accepts and serves clients until accepting fails.
    pub fn serve(&self) -> Result<(), DaemonError> {
        loop {
            match self.listener.accept() {
                Ok((stream, _)) => {
                    let runner = self.runner.clone();
                    thread::spawn(move || serve_client(stream, runner));
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    tracing::error!("failed to accept new connection: {}", e);
                    return Err(DaemonError::path("accept on", &self.path, e));
                }
            }
        }
    }

    /// Serves in a background thread.
    pub fn spawn(self) -> thread::JoinHandle<Result<(), DaemonError>> {
        thread::spawn(move || self.serve())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

fn serve_client(mut stream: UnixStream, runner: Arc<EventRunner>) {
    let writer = match stream.try_clone() {
        Ok(w) => Arc::new(Mutex::new(w)),
        Err(e) => {
            tracing::error!("Failed to register client, ret={}", e);
            return;
        }
    };
    loop {
        let buf = match read_packet(&mut stream) {
            Ok(Some(b)) => b,
            Ok(None) => return,
            Err(e) => {
                tracing::error!("client read failed: {}", e);
                return;
            }
        };
        let arrival = Instant::now();
        let (header, request) = match protocol::decode_request(&buf) {
            Ok(x) => x,
            Err(e) => {
                tracing::error!("Invalid packet received, buflen={}: {}", buf.len(), e);
                let _ = stream.shutdown(std::net::Shutdown::Both);
                return;
            }
        };
        let runner = runner.clone();
        let writer = writer.clone();
        thread::spawn(move || {
            let reply = dispatch(&runner, &request, arrival);
            let bytes = protocol::encode_reply(header.reqid, &reply);
            let mut w = writer.lock().unwrap_or_else(|p| p.into_inner());
            if let Err(e) = w.write_all(&bytes) {
                tracing::debug!("Sending reply failed: {}", e);
            }
        });
    }
}

/// Handles one request.
pub fn dispatch(runner: &EventRunner, request: &Request, arrival: Instant) -> Reply {
    let command = request.command();
    match request {
        Request::Run(r) => {
            let deadline = arrival + std::time::Duration::from_secs(u64::from(r.timeout));
            let result = match runner.run_until(
                r.component.as_deref(),
                r.event.as_deref(),
                r.args.as_deref(),
                deadline,
                r.flags & RUN_ALL != 0,
            ) {
                Ok(res) => res.reply_code(),
                Err(e) => e,
            };
            tracing::debug!("Command RUN finished with result={}", result);
            Reply {
                command,
                result,
                status: None,
            }
        }
        Request::Status(r) => match runner.status(r.component.as_deref(), r.event.as_deref()) {
            Ok(res) => Reply {
                command,
                result: 0,
                status: Some(res.to_status()),
            },
            Err(e) => Reply {
                command,
                result: e,
                status: None,
            },
        },
        Request::Script(r) => {
            let result =
                match runner.set_enabled(r.component.as_deref(), r.script.as_deref(), r.enable) {
                    Ok(()) => 0,
                    Err(e) => e,
                };
            Reply {
                command,
                result,
                status: None,
            }
        }
    }
}
