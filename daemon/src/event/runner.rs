//! Running an event: every script of a component in order, with one
//! deadline for the whole event, each script in its own process group,
//! output captured, and the last result per (component, event) kept for
//! `status`.
//!
//! Semantics follow upstream `run_event.c`/`run_proc.c` (4.17):
//!
//! * events of one component run one at a time, in arrival order;
//! * a new event arriving while `monitor` runs cancels the monitor (its
//!   scripts are SIGKILLed, it ends with ECANCELED and its result is not
//!   kept); a `monitor` arriving while another event runs is cancelled at
//!   once;
//! * the timeout counts from the request's arrival, for all scripts;
//! * a script that is not executable is "disabled" (`-ENOEXEC`), one that
//!   cannot be found (dangling link) gets `-ENOENT`;
//! * exit status `s`: 0 is OK, 64..=254 is read as "exec failed with errno
//!   `s-64`" (upstream's convention; EACCES becomes `-ENOEXEC`), other
//!   values are the script's result; death by a signal is `-EINTR`, an
//!   expired deadline `-ETIMEDOUT`;
//! * the first failure stops the event (unless `run_all`), and the list
//!   is cut after the failing script; on a timeout the debug script (if
//!   configured and not already running) runs as `debug <pid> <event>`
//!   and its output is logged as `event_debug: <line>`.

use std::collections::HashMap;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use super::protocol::{ScriptStatus, StatusReply, Timeval};
use super::scripts::{ComponentDir, Script};

/// Most output bytes kept per script (upstream keeps all).
pub const OUTPUT_LIMIT: usize = 1 << 20;
/// How long a timed-out script may ignore SIGTERM before SIGKILL.
const TERM_GRACE: Duration = Duration::from_secs(5);
/// How long to wait for the output pipe to close once a script exited
/// (a background child may keep it open; upstream does not wait at all).
const EOF_GRACE: Duration = Duration::from_millis(200);

/// One script's outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScriptResult {
    pub name: String,
    pub begin: Timeval,
    pub end: Timeval,
    /// 0, exit status, or negative errno (see module docs).
    pub result: i32,
    pub output: Option<Vec<u8>>,
}

/// An event's outcome: `summary` is 0 or the first failing script's
/// result (-ENOEXEC of disabled scripts does not count).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RunResult {
    pub summary: i32,
    pub scripts: Vec<ScriptResult>,
}

impl RunResult {
    /// The RUN reply code: 0, ETIMEDOUT, or ENOEXEC for any other failure.
    pub fn reply_code(&self) -> i32 {
        match self.summary {
            0 => 0,
            s if s == -libc::ETIMEDOUT => libc::ETIMEDOUT,
            _ => libc::ENOEXEC,
        }
    }

    /// As carried in a STATUS reply.
    pub fn to_status(&self) -> StatusReply {
        StatusReply {
            summary: self.summary,
            scripts: self
                .scripts
                .iter()
                .map(|s| ScriptStatus {
                    name: Some(s.name.clone()),
                    begin: s.begin,
                    end: s.end,
                    result: s.result,
                    output: s.output.clone(),
                })
                .collect(),
        }
    }

    /// Rebuilds a result from a STATUS reply (names missing on the wire
    /// become empty).
    pub fn from_status(st: &StatusReply) -> RunResult {
        RunResult {
            summary: st.summary,
            scripts: st
                .scripts
                .iter()
                .map(|s| ScriptResult {
                    name: s.name.clone().unwrap_or_default(),
                    begin: s.begin,
                    end: s.end,
                    result: s.result,
                    output: s.output.clone(),
                })
                .collect(),
        }
    }
}

/// The events ctdbd runs, with upstream's names and argument rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CtdbEvent {
    Init,
    Setup,
    Startup,
    StartRecovery,
    Recovered,
    TakeIp,
    ReleaseIp,
    Monitor,
    Shutdown,
    UpdateIp,
    IpReallocated,
}

impl CtdbEvent {
    /// All events, in upstream's enum order.
    pub const ALL: [CtdbEvent; 11] = [
        CtdbEvent::Init,
        CtdbEvent::Setup,
        CtdbEvent::Startup,
        CtdbEvent::StartRecovery,
        CtdbEvent::Recovered,
        CtdbEvent::TakeIp,
        CtdbEvent::ReleaseIp,
        CtdbEvent::Monitor,
        CtdbEvent::Shutdown,
        CtdbEvent::UpdateIp,
        CtdbEvent::IpReallocated,
    ];

    /// The name passed to the scripts.
    pub fn name(self) -> &'static str {
        match self {
            CtdbEvent::Init => "init",
            CtdbEvent::Setup => "setup",
            CtdbEvent::Startup => "startup",
            CtdbEvent::StartRecovery => "startrecovery",
            CtdbEvent::Recovered => "recovered",
            CtdbEvent::TakeIp => "takeip",
            CtdbEvent::ReleaseIp => "releaseip",
            CtdbEvent::Monitor => "monitor",
            CtdbEvent::Shutdown => "shutdown",
            CtdbEvent::UpdateIp => "updateip",
            CtdbEvent::IpReallocated => "ipreallocated",
        }
    }

    /// Parses a name.
    pub fn from_name(s: &str) -> Option<CtdbEvent> {
        CtdbEvent::ALL.into_iter().find(|e| e.name() == s)
    }

    /// Number of arguments the event takes (takeip/releaseip: interface,
    /// address, netmask bits; updateip: old and new interface too).
    pub fn arg_count(self) -> usize {
        match self {
            CtdbEvent::TakeIp | CtdbEvent::ReleaseIp => 3,
            CtdbEvent::UpdateIp => 4,
            _ => 0,
        }
    }

    /// Whether `args` has the right number of words (spaces/tabs).
    pub fn check_args(self, args: Option<&str>) -> bool {
        let n = args.map_or(0, |a| {
            a.split([' ', '\t']).filter(|w| !w.is_empty()).count()
        });
        n == self.arg_count()
    }

    /// Whether ctdbd runs it while in recovery mode.
    pub fn allowed_during_recovery(self) -> bool {
        matches!(
            self,
            CtdbEvent::Init
                | CtdbEvent::Setup
                | CtdbEvent::StartRecovery
                | CtdbEvent::Shutdown
                | CtdbEvent::ReleaseIp
                | CtdbEvent::IpReallocated
        )
    }

    /// Whether ctdbd treats a timeout of this event as success ("Ignoring
    /// hung script for ... event").
    pub fn timeout_ignored(self) -> bool {
        matches!(
            self,
            CtdbEvent::StartRecovery
                | CtdbEvent::Recovered
                | CtdbEvent::TakeIp
                | CtdbEvent::ReleaseIp
        )
    }

    /// Whether ctdbd bans itself when this event times out (all but init
    /// and shutdown, for events ctdbd waits for).
    pub fn timeout_bans(self) -> bool {
        !matches!(self, CtdbEvent::Init | CtdbEvent::Shutdown)
    }
}

enum Wake {
    Exited(u32, std::io::Result<ExitStatus>),
    Cancel,
}

struct Current {
    id: u64,
    is_monitor: bool,
    cancelled: Arc<AtomicBool>,
    wake: Sender<Wake>,
}

#[derive(Default)]
struct Queue {
    next_ticket: u64,
    serving: u64,
    current: Option<Current>,
}

struct Component {
    dir: ComponentDir,
    queue: Mutex<Queue>,
    turn: Condvar,
    results: Mutex<HashMap<String, RunResult>>,
    debug_running: Arc<AtomicBool>,
}

/// Runs events and remembers their results; shared by the eventd server
/// threads, or used directly by ctdbd.
pub struct EventRunner {
    events_dir: PathBuf,
    debug_script: Mutex<Option<PathBuf>>,
    components: Mutex<HashMap<String, Arc<Component>>>,
}

fn errno_of(e: &std::io::Error) -> i32 {
    e.raw_os_error().unwrap_or(libc::EIO)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl EventRunner {
    /// `events_dir` is `etcdir/events`; `debug_script` the resolved
    /// `[event] debug script` (upstream: `etcdir/<name>`).
    pub fn new(events_dir: PathBuf, debug_script: Option<PathBuf>) -> EventRunner {
        EventRunner {
            events_dir,
            debug_script: Mutex::new(debug_script),
            components: Mutex::new(HashMap::new()),
        }
    }

    /// From the resolved paths and configuration, as ctdb-eventd sets up.
    pub fn from_config(paths: &ctdb_config::Paths, config: &ctdb_config::Config) -> EventRunner {
        let debug = config.event_debug_script().map(|s| paths.etcdir.join(s));
        EventRunner::new(paths.eventd_script_dir(), debug)
    }

    /// Replaces the debug script (eventd re-reads ctdb.conf on SIGUSR1).
    pub fn set_debug_script(&self, debug_script: Option<PathBuf>) {
        *lock(&self.debug_script) = debug_script;
    }

    /// The debug script run on timeouts, if any.
    pub fn debug_script(&self) -> Option<PathBuf> {
        lock(&self.debug_script).clone()
    }

    /// Where components are looked up.
    pub fn events_dir(&self) -> &Path {
        &self.events_dir
    }

    fn component(&self, name: Option<&str>) -> Result<Arc<Component>, i32> {
        let name = name.ok_or(libc::EINVAL)?;
        if name.is_empty() || name.contains('/') || name == "." || name == ".." {
            return Err(libc::EINVAL);
        }
        let mut map = lock(&self.components);
        if let Some(c) = map.get(name) {
            return Ok(c.clone());
        }
        let dir = ComponentDir::resolve(&self.events_dir, name);
        dir.check()?;
        let c = Arc::new(Component {
            dir,
            queue: Mutex::new(Queue::default()),
            turn: Condvar::new(),
            results: Mutex::new(HashMap::new()),
            debug_running: Arc::new(AtomicBool::new(false)),
        });
        map.insert(name.to_string(), c.clone());
        Ok(c)
    }

    /// Runs `event` of `component` with a timeout counted from now.
    /// `Err` carries the RUN reply's errno (ENOENT: no such component,
    /// ECANCELED, ...); `Ok` the result, whose [`RunResult::reply_code`]
    /// is the RUN reply's code.
    pub fn run(
        &self,
        component: &str,
        event: &str,
        args: Option<&str>,
        timeout: Duration,
        run_all: bool,
    ) -> Result<RunResult, i32> {
        self.run_until(
            Some(component),
            Some(event),
            args,
            Instant::now() + timeout,
            run_all,
        )
    }

    /// Runs with an absolute deadline (the server computes it when the
    /// request arrives).
    pub fn run_until(
        &self,
        component: Option<&str>,
        event: Option<&str>,
        args: Option<&str>,
        deadline: Instant,
        run_all: bool,
    ) -> Result<RunResult, i32> {
        let comp = self.component(component)?;
        let event = event.ok_or(libc::EINVAL)?;
        let is_monitor = event == "monitor";

        let cancelled = Arc::new(AtomicBool::new(false));
        let (wake_tx, wake_rx) = mpsc::channel::<Wake>();

        // Queue up, applying the monitor cancellation rules on arrival.
        let ticket;
        {
            let mut q = lock(&comp.queue);
            if let Some(cur) = &q.current {
                if cur.is_monitor {
                    cur.cancelled.store(true, Ordering::SeqCst);
                    let _ = cur.wake.send(Wake::Cancel);
                    q.current = None;
                } else if is_monitor {
                    return Err(libc::ECANCELED);
                }
            }
            ticket = q.next_ticket;
            q.next_ticket += 1;
            while q.serving != ticket {
                q = comp.turn.wait(q).unwrap_or_else(|p| p.into_inner());
            }
        }
        // From here on this request is served; always advance the queue.
        struct Turn<'a>(&'a Component, u64);
        impl Drop for Turn<'_> {
            fn drop(&mut self) {
                let mut q = lock(&self.0.queue);
                if q.current.as_ref().is_some_and(|c| c.id == self.1) {
                    q.current = None;
                }
                q.serving += 1;
                self.0.turn.notify_all();
            }
        }
        let _turn = Turn(&comp, ticket);

        tracing::debug!(
            "Running event {} with args \"{}\"",
            event,
            args.unwrap_or("(null)")
        );
        let scripts = match comp.dir.list() {
            Ok(s) => s,
            Err(e) => {
                if e == libc::ENOENT {
                    tracing::warn!("event script dir {} removed", comp.dir.path.display());
                } else {
                    tracing::warn!(
                        "failed to get script list for {}, ret={}",
                        comp.dir.path.display(),
                        e
                    );
                }
                return Err(e);
            }
        };
        let mut result = RunResult::default();
        if scripts.is_empty() {
            lock(&comp.results).insert(event.to_string(), result.clone());
            return Ok(result);
        }
        {
            let mut q = lock(&comp.queue);
            q.current = Some(Current {
                id: ticket,
                is_monitor,
                cancelled: cancelled.clone(),
                wake: wake_tx.clone(),
            });
        }

        let mut argv: Vec<String> = vec![event.to_string()];
        if let Some(a) = args {
            argv.extend(a.split(' ').filter(|w| !w.is_empty()).map(str::to_string));
        }

        let mut debug_pid = None;
        for script in &scripts {
            if cancelled.load(Ordering::SeqCst) {
                return Err(libc::ECANCELED);
            }
            let path = comp.dir.script_path(&script.name);
            let begin = Timeval::now();
            let outcome = run_script(script, &path, &argv, deadline, &wake_tx, &wake_rx);
            let end = Timeval::now();
            let (res, output, timed_out_pid) = match outcome {
                ScriptOutcome::Done { result, output } => (result, output, None),
                ScriptOutcome::TimedOut {
                    output,
                    pid,
                    reaped,
                } => (-libc::ETIMEDOUT, output, Some((pid, reaped))),
                ScriptOutcome::Cancelled => return Err(libc::ECANCELED),
            };
            if let Some(out) = &output {
                log_output(&script.name, out);
            }
            tracing::debug!("Script {} finished, result={}", script.name, res);
            result.scripts.push(ScriptResult {
                name: script.name.clone(),
                begin,
                end,
                result: res,
                output,
            });
            if res != 0 && res != -libc::ENOEXEC {
                result.summary = res;
                if !run_all {
                    debug_pid = timed_out_pid;
                    tracing::info!(
                        "{} event {}",
                        event,
                        if res == -libc::ETIMEDOUT {
                            "timed out"
                        } else {
                            "failed"
                        }
                    );
                    break;
                }
                if let Some((pid, reaped)) = timed_out_pid {
                    terminate_later(pid, reaped, None);
                }
            }
        }
        if cancelled.load(Ordering::SeqCst) {
            return Err(libc::ECANCELED);
        }
        lock(&comp.results).insert(event.to_string(), result.clone());
        if let Some((pid, reaped)) = debug_pid {
            let debug = match self.debug_script() {
                Some(d) if !comp.debug_running.swap(true, Ordering::SeqCst) => {
                    Some((d, event.to_string(), comp.debug_running.clone()))
                }
                _ => None,
            };
            terminate_later(pid, reaped, debug);
        }
        Ok(result)
    }

    /// The last result of `event` in `component`: ENOENT if the component
    /// does not exist, EINVAL if the event never completed.
    pub fn status(&self, component: Option<&str>, event: Option<&str>) -> Result<RunResult, i32> {
        let comp = self.component(component)?;
        let event = event.ok_or(libc::EINVAL)?;
        let found = lock(&comp.results).get(event).cloned();
        found.ok_or(libc::EINVAL)
    }

    /// Enables or disables a script by its execute bits (the protocol's
    /// SCRIPT command).
    pub fn set_enabled(
        &self,
        component: Option<&str>,
        script: Option<&str>,
        enable: bool,
    ) -> Result<(), i32> {
        let comp = self.component(component)?;
        comp.dir.set_enabled(script.ok_or(libc::EINVAL)?, enable)
    }

    /// The component's scripts.
    pub fn scripts(&self, component: &str) -> Result<Vec<Script>, i32> {
        self.component(Some(component))?.dir.list()
    }
}

fn log_output(name: &str, out: &[u8]) {
    let text = String::from_utf8_lossy(out);
    for line in text.split('\n').filter(|l| !l.is_empty()) {
        tracing::error!("{}: {}", name, line);
    }
}

enum ScriptOutcome {
    Done {
        result: i32,
        output: Option<Vec<u8>>,
    },
    TimedOut {
        output: Option<Vec<u8>>,
        pid: u32,
        reaped: Receiver<()>,
    },
    Cancelled,
}

fn exec_errno(err: i32) -> i32 {
    if err == libc::EACCES {
        -libc::ENOEXEC
    } else {
        -err
    }
}

/// Maps a wait status as upstream's run_proc does.
pub fn status_result(st: ExitStatus) -> i32 {
    if st.signal().is_some() {
        return -libc::EINTR;
    }
    match st.code() {
        Some(c) if (64..255).contains(&c) => {
            let err = c - 64;
            if err > 0 {
                exec_errno(err)
            } else {
                0
            }
        }
        Some(c) => c,
        None => -libc::EINTR,
    }
}

struct Captured {
    buf: Arc<Mutex<Vec<u8>>>,
    eof: Receiver<()>,
}

impl Captured {
    fn snapshot(&self) -> Option<Vec<u8>> {
        let b = lock(&self.buf);
        if b.is_empty() {
            None
        } else {
            Some(b.clone())
        }
    }
}

fn capture(mut r: std::io::PipeReader) -> Captured {
    let buf = Arc::new(Mutex::new(Vec::new()));
    let (tx, eof) = mpsc::channel();
    let b2 = buf.clone();
    thread::spawn(move || {
        let mut chunk = [0u8; 4096];
        let mut cut = false;
        loop {
            match r.read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => {
                    if cut {
                        continue;
                    }
                    let mut b = lock(&b2);
                    let mut piece = &chunk[..n];
                    if let Some(p) = piece.iter().position(|&c| c == 0) {
                        piece = &piece[..p];
                        cut = true;
                    }
                    let room = OUTPUT_LIMIT.saturating_sub(b.len());
                    if piece.len() > room {
                        piece = &piece[..room];
                        cut = true;
                    }
                    b.extend_from_slice(piece);
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        let _ = tx.send(());
    });
    Captured { buf, eof }
}

fn spawn_script(path: &Path, arg0: &str, args: &[String]) -> std::io::Result<(Child, Captured)> {
    let (r, w) = std::io::pipe()?;
    let w2 = w.try_clone()?;
    let mut cmd = Command::new(path);
    cmd.arg0(arg0)
        .args(args)
        .stdin(Stdio::null())
        .stdout(w)
        .stderr(w2)
        .process_group(0);
    crate::sys::unblock_signals_in_child(&mut cmd);
    let child = cmd.spawn();
    drop(cmd);
    let child = child?;
    Ok((child, capture(r)))
}

fn run_script(
    script: &Script,
    path: &Path,
    argv: &[String],
    deadline: Instant,
    wake_tx: &Sender<Wake>,
    wake_rx: &Receiver<Wake>,
) -> ScriptOutcome {
    // Upstream checks before forking: missing -> -errno, not u+x -> disabled.
    match std::fs::metadata(path) {
        Err(e) => {
            return ScriptOutcome::Done {
                result: -errno_of(&e),
                output: None,
            }
        }
        Ok(m) if m.mode() & 0o100 == 0 => {
            return ScriptOutcome::Done {
                result: -libc::ENOEXEC,
                output: None,
            }
        }
        Ok(_) => {}
    }
    let (mut child, captured) = match spawn_script(path, &script.name, argv) {
        Ok(c) => c,
        Err(e) => {
            return ScriptOutcome::Done {
                result: exec_errno(errno_of(&e)),
                output: None,
            }
        }
    };
    let pid = child.id();
    // Drain any stale wake-ups (a Cancel is re-checked through the flag).
    while let Ok(w) = wake_rx.try_recv() {
        if matches!(w, Wake::Cancel) {
            kill_group(pid, libc::SIGKILL);
            reap_in_background(child);
            return ScriptOutcome::Cancelled;
        }
    }
    let (reaped_tx, reaped) = mpsc::channel();
    let tx = wake_tx.clone();
    thread::spawn(move || {
        let st = child.wait();
        let _ = reaped_tx.send(());
        let _ = tx.send(Wake::Exited(pid, st));
    });
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            // Upstream's timer for an already-expired deadline fires before
            // the child's exit is seen, even for a script that exits at once.
            return ScriptOutcome::TimedOut {
                output: captured.snapshot(),
                pid,
                reaped,
            };
        }
        match wake_rx.recv_timeout(left) {
            Ok(Wake::Exited(p, _)) if p != pid => continue,
            Ok(Wake::Exited(_, st)) => {
                let _ = captured.eof.recv_timeout(EOF_GRACE);
                let result = match st {
                    Ok(st) => status_result(st),
                    Err(e) => -errno_of(&e),
                };
                return ScriptOutcome::Done {
                    result,
                    output: captured.snapshot(),
                };
            }
            Ok(Wake::Cancel) => {
                kill_group(pid, libc::SIGKILL);
                return ScriptOutcome::Cancelled;
            }
            Err(RecvTimeoutError::Timeout) => {
                return ScriptOutcome::TimedOut {
                    output: captured.snapshot(),
                    pid,
                    reaped,
                };
            }
            Err(RecvTimeoutError::Disconnected) => {
                // Cannot happen: we hold a sender. Treat as an I/O error.
                return ScriptOutcome::Done {
                    result: -libc::EIO,
                    output: captured.snapshot(),
                };
            }
        }
    }
}

fn reap_in_background(mut child: Child) {
    thread::spawn(move || {
        let _ = child.wait();
    });
}

/// Sends `sig` to process `pid` (through kill(1), see [`kill_group`]).
pub fn kill_pid(pid: u32, sig: i32) {
    signal_target(&pid.to_string(), sig);
}

/// Sends `sig` to process group `pgid`. Uses kill(1) so this crate keeps
/// its one unsafe module untouched; the cost is a fork per kill, only on
/// timeouts and cancellations.
pub fn kill_group(pgid: u32, sig: i32) {
    signal_target(&format!("-{pgid}"), sig);
}

fn signal_target(target: &str, sig: i32) {
    let name = match sig {
        libc::SIGKILL => "KILL",
        libc::SIGTERM => "TERM",
        _ => "TERM",
    };
    let r = Command::new("kill")
        .arg("-s")
        .arg(name)
        .arg("--")
        .arg(target)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    if let Err(e) = r {
        tracing::warn!("cannot run kill for {}: {}", target, e);
    }
}

/// After a timeout: optionally run the debug script on the hung process,
/// then SIGTERM its group, SIGKILL if it has not exited after a grace
/// period. Runs in the background.
fn terminate_later(
    pid: u32,
    reaped: Receiver<()>,
    debug: Option<(PathBuf, String, Arc<AtomicBool>)>,
) {
    thread::spawn(move || {
        if let Some((prog, event, running)) = debug {
            run_debug(&prog, pid, &event);
            running.store(false, Ordering::SeqCst);
        }
        if reaped.try_recv().is_ok() {
            // Leader gone; still signal any remaining group members.
            kill_group(pid, libc::SIGTERM);
            return;
        }
        kill_group(pid, libc::SIGTERM);
        if reaped.recv_timeout(TERM_GRACE).is_err() {
            kill_group(pid, libc::SIGKILL);
        }
    });
}

fn run_debug(prog: &Path, pid: u32, event: &str) {
    tracing::debug!(
        "Running debug {} with args \"{} {}\"",
        prog.display(),
        pid,
        event
    );
    let args = [pid.to_string(), event.to_string()];
    match spawn_script(prog, &prog.to_string_lossy(), &args) {
        Ok((mut child, captured)) => {
            let _ = child.wait();
            let _ = captured.eof.recv_timeout(EOF_GRACE);
            if let Some(out) = captured.snapshot() {
                log_output("event_debug", &out);
            }
        }
        Err(e) => tracing::error!("Running debug failed, ret={}", errno_of(&e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_names_round_trip() {
        for e in CtdbEvent::ALL {
            assert_eq!(CtdbEvent::from_name(e.name()), Some(e));
        }
        assert_eq!(CtdbEvent::from_name("stopped"), None);
        assert!(CtdbEvent::TakeIp.check_args(Some("eth0 10.0.0.1 24")));
        assert!(!CtdbEvent::TakeIp.check_args(Some("eth0 10.0.0.1")));
        assert!(CtdbEvent::UpdateIp.check_args(Some(" eth0\teth1 10.0.0.1 24 ")));
        assert!(CtdbEvent::Monitor.check_args(None));
        assert!(CtdbEvent::Monitor.check_args(Some("  ")));
        assert!(!CtdbEvent::Monitor.check_args(Some("x")));
    }

    #[test]
    fn reply_codes() {
        let mut r = RunResult::default();
        assert_eq!(r.reply_code(), 0);
        r.summary = -libc::ETIMEDOUT;
        assert_eq!(r.reply_code(), libc::ETIMEDOUT);
        r.summary = 3;
        assert_eq!(r.reply_code(), libc::ENOEXEC);
        r.summary = -libc::ENOENT;
        assert_eq!(r.reply_code(), libc::ENOEXEC);
    }
}
