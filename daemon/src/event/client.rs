//! A blocking client for an eventd socket (ours or Debian's ctdb-eventd):
//! what ctdbd uses when it runs events through the event daemon.
//!
//! One request at a time per client; open several clients for concurrent
//! requests (a RUN blocks until the event finishes).

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::protocol::{self, Reply, Request, RunRequest, ScriptRequest, StatusRequest, RUN_ALL};
use super::runner::RunResult;
use super::server::read_packet;
use crate::DaemonError;

/// The eventd socket for a set of paths: `rundir/eventd.socket`.
pub fn socket_path(paths: &ctdb_config::Paths) -> PathBuf {
    paths.rundir.join("eventd.socket")
}

/// A connection to an event daemon.
pub struct EventClient {
    stream: UnixStream,
    path: PathBuf,
    next_reqid: u32,
}

impl EventClient {
    /// Connects to `path`.
    pub fn connect(path: &Path) -> Result<EventClient, DaemonError> {
        let stream =
            UnixStream::connect(path).map_err(|e| DaemonError::path("connect to", path, e))?;
        Ok(EventClient {
            stream,
            path: path.to_path_buf(),
            next_reqid: 1,
        })
    }

    /// Bounds how long one reply may take (None: wait forever).
    pub fn set_timeout(&self, t: Option<Duration>) -> Result<(), DaemonError> {
        self.stream
            .set_read_timeout(t)
            .map_err(|e| DaemonError::path("set timeout on", &self.path, e))
    }

    /// Sends one request and waits for its reply.
    pub fn request(&mut self, req: &Request) -> Result<Reply, DaemonError> {
        let reqid = self.next_reqid;
        self.next_reqid = self.next_reqid.wrapping_add(1).max(1);
        let bytes = protocol::encode_request(reqid, req);
        self.stream
            .write_all(&bytes)
            .map_err(|e| DaemonError::path("write to", &self.path, e))?;
        let buf = read_packet(&mut self.stream)?.ok_or_else(|| {
            DaemonError::path(
                "read reply from",
                &self.path,
                std::io::Error::from(std::io::ErrorKind::UnexpectedEof),
            )
        })?;
        let (h, reply) = protocol::decode_reply(&buf)?;
        if h.reqid != reqid {
            return Err(DaemonError::Mismatch {
                what: "reqid",
                expected: reqid,
                got: h.reqid,
            });
        }
        if reply.command != req.command() {
            return Err(DaemonError::Mismatch {
                what: "command",
                expected: req.command(),
                got: reply.command,
            });
        }
        Ok(reply)
    }

    /// Runs an event; returns the reply code (0, ENOENT, ETIMEDOUT,
    /// ECANCELED, ENOEXEC ...).
    pub fn run(
        &mut self,
        component: &str,
        event: &str,
        args: Option<&str>,
        timeout_secs: u32,
        run_all: bool,
    ) -> Result<i32, DaemonError> {
        let r = self.request(&Request::Run(RunRequest {
            component: Some(component.to_string()),
            event: Some(event.to_string()),
            args: args.map(str::to_string),
            timeout: timeout_secs,
            flags: if run_all { RUN_ALL } else { 0 },
        }))?;
        Ok(r.result)
    }

    /// Last result of an event: `Ok(Err(errno))` when the daemon answers
    /// with an error (ENOENT: no component, EINVAL: never run).
    pub fn status(
        &mut self,
        component: &str,
        event: &str,
    ) -> Result<Result<RunResult, i32>, DaemonError> {
        let r = self.request(&Request::Status(StatusRequest {
            component: Some(component.to_string()),
            event: Some(event.to_string()),
        }))?;
        if r.result != 0 {
            return Ok(Err(r.result));
        }
        let st = r.status.unwrap_or_default();
        Ok(Ok(RunResult::from_status(&st)))
    }

    /// Enables or disables a script through the daemon; returns the
    /// reply code.
    pub fn script(
        &mut self,
        component: &str,
        script: &str,
        enable: bool,
    ) -> Result<i32, DaemonError> {
        let r = self.request(&Request::Script(ScriptRequest {
            component: Some(component.to_string()),
            script: Some(script.to_string()),
            enable,
        }))?;
        Ok(r.result)
    }
}
