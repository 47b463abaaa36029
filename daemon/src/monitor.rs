//! The daemon's life on the control core: start-up run states and their
//! events, the recovery daemon ([`crate::recoverd_driver`]: leader
//! election, LEADER broadcast, recoveries, bans), monitoring, statistics
//! history and the shutdown sequence.
//!
//! Upstream's order (4.17 `ctdb_start_daemon`, `ctdb_monitor.c`):
//! INIT: `init` event (failure is fatal), `init` notification; SETUP:
//! `setup` event (fatal), `setup` notification, recovery daemon started;
//! FIRST_RECOVERY until a recovery completes (the `recovered` event of
//! the leader's END_RECOVERY, see [`spawn_event`]); STARTUP: once no
//! recovery happened for RerecoveryTimeout + 3 s, the `startup` event
//! (retried every 5 s), then RUNNING, `startup` notification and
//! monitoring: the first `monitor` event 2 s later, then at intervals
//! doubling from 5 s (after a health change) up to MonitorInterval. A
//! failing monitor makes the node UNHEALTHY (`unhealthy` notification), a
//! passing one clears it (`healthy`); either change is pushed to every
//! node through the recovery daemon (PUSH_NODE_FLAGS); timeouts count
//! only after MonitorTimeoutCount in a row.
//!
//! Only this core runs events (in glommio's blocking pool, so the core
//! keeps serving clients while a script runs).
//!
//! The recovery daemon is the same on one node and on many: with no other
//! node, the leader broadcast times out (`leader timeout`), this node
//! wins the election ElectionTimeout later and recovers alone through the
//! same controls it would send to other nodes. With a cluster lock
//! configured, leading needs the lock, held by the cluster mutex helper
//! ([`ClusterLock`]) for as long as it runs.
//!
//! # Differences from upstream 4.17
//!
//! * A deferred packet (attach during recovery, call on a frozen
//!   database) is retried every 100 ms and holds up that client's later
//!   packets until it is answered.
//! * Tunables changed with SET_TUNABLE take effect at once for monitoring,
//!   events and statistics; the database layer keeps the values it was
//!   opened with, the recovery daemon those of start-up except
//!   RecoverTimeout and RecBufferSizeLimit. `memory_used` in STATISTICS
//!   is 0.
//! * The recovery bookkeeping of END_RECOVERY (recovery count, end time,
//!   FIRST_RECOVERY -> STARTUP) happens when the `recovered` event is
//!   started, not when it finishes.

use std::cell::Cell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use ctdb_protocol::constants::{CTDB_RECOVERY_NORMAL, NODE_FLAGS_INACTIVE, NODE_FLAGS_UNHEALTHY};
use ctdb_protocol::types::{srvid, NodeFlagChange, SrvidMessage};
use ctdb_protocol::Wire;

use crate::cluster::LockStatus;
use crate::controls::apply_effects;
use crate::db::OutMessage;
use crate::event::eventd::{EventBackend, RunRefused};
use crate::event::notify::{run_notification, run_notification_sync, Notification};
use crate::event::runner::CtdbEvent;
use crate::runtime::StopSignal;
use crate::state::{now_timeval, Daemon};

/// Run states (GET_RUNSTATE).
pub const RUNSTATE_INIT: u32 = 1;
pub const RUNSTATE_SETUP: u32 = 2;
pub const RUNSTATE_FIRST_RECOVERY: u32 = 3;
pub const RUNSTATE_STARTUP: u32 = 4;
pub const RUNSTATE_RUNNING: u32 = 5;
pub const RUNSTATE_SHUTDOWN: u32 = 6;

fn runstate_name(r: u32) -> &'static str {
    ctdb_protocol::constants::Runstate::from_u32(r).map_or("UNKNOWN", |r| r.name())
}

fn set_runstate(d: &Daemon, r: u32) {
    tracing::info!("Set runstate to {} ({r})", runstate_name(r));
    d.runstate.set(r);
}

/// Runs an event in the blocking pool: the RUN reply code, or -1 when it
/// could not be run at all. Without an event backend every event passes.
pub async fn run_event(backend: Option<EventBackend>, ev: CtdbEvent, timeout: u32) -> i32 {
    let Some(b) = backend else {
        return 0;
    };
    let r = glommio::executor()
        .spawn_blocking(move || b.run(ev, None, timeout))
        .await;
    match r {
        Ok(code) => code,
        Err(RunRefused::BadArguments) => -1,
        Err(RunRefused::Transport(e)) => {
            tracing::error!("Unable to run {} event: {e}", ev.name());
            -1
        }
    }
}

/// Runs an event in the background, logging a failure.
///
/// The recovery events carry upstream's bookkeeping (START_RECOVERY and
/// END_RECOVERY from the leader arrive here through the node machine's
/// effects): `startrecovery` marks the recovery start; `recovered` counts
/// the recovery, marks its end and ends the FIRST_RECOVERY run state.
pub fn spawn_event(d: &Daemon, ev: CtdbEvent) {
    match ev {
        CtdbEvent::StartRecovery => {
            tracing::error!("Recovery has started");
            d.last_recovery_started.set(now_timeval());
        }
        CtdbEvent::Recovered => {
            d.stats.borrow_mut().count(|s| s.num_recoveries += 1);
            d.last_recovery_finished.set(now_timeval());
            d.recovered_at.set(Some(Instant::now()));
            tracing::info!("Recovery has finished (generation {})", d.generation());
            if d.runstate.get() == RUNSTATE_FIRST_RECOVERY {
                set_runstate(d, RUNSTATE_STARTUP);
            }
        }
        _ => {}
    }
    let backend = d.events.clone();
    let timeout = d.tunable("EventScriptTimeout", 30);
    glommio::spawn_local(async move {
        let code = run_event(backend, ev, timeout).await;
        if code != 0 {
            tracing::error!("{} event failed ({code})", ev.name());
        }
    })
    .detach();
}

/// Runs the notification script off the control core, one call after the
/// other in the order asked (upstream runs it synchronously, so `init`
/// always comes before `setup`): a single notifier thread takes them from
/// a queue.
fn notify(d: &Daemon, n: Notification) {
    type Job = (std::path::PathBuf, Notification);
    static QUEUE: std::sync::OnceLock<std::sync::Mutex<std::sync::mpsc::Sender<Job>>> =
        std::sync::OnceLock::new();
    let q = QUEUE.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::channel::<Job>();
        let spawned = std::thread::Builder::new()
            .name("ctdb-notify".into())
            .spawn(move || {
                while let Ok((script, n)) = rx.recv() {
                    let _ = run_notification_sync(&script, n.name());
                }
            });
        if let Err(e) = spawned {
            tracing::error!("cannot start the notification thread: {e}");
        }
        std::sync::Mutex::new(tx)
    });
    let sent = q
        .lock()
        .map(|tx| tx.send((d.notification_script.clone(), n)).is_ok())
        .unwrap_or(false);
    if !sent {
        // No notifier thread: run it on a thread of its own, unordered.
        let _ = run_notification(&d.notification_script, n);
    }
}

/// The cluster lock, held by a cluster mutex helper child for as long as
/// it runs (upstream's `ctdb_cluster_mutex`): `!prog args...` runs that
/// command, anything else is a file for the default fcntl helper.
/// Dropping it releases the lock.
pub struct ClusterLock {
    child: std::process::Child,
    released: bool,
}

impl ClusterLock {
    /// Starts the helper and waits (in the blocking pool) for its status
    /// byte: `Ok` when held, otherwise the status and why.
    pub async fn take(
        helper: &std::path::Path,
        lock: &str,
    ) -> Result<ClusterLock, (LockStatus, String)> {
        let (prog, args): (std::path::PathBuf, Vec<String>) = match lock.strip_prefix('!') {
            Some(cmd) => {
                let mut w = cmd.split_whitespace().map(str::to_string);
                let Some(p) = w.next() else {
                    return Err((LockStatus::Error, "empty cluster lock command".into()));
                };
                (p.into(), w.collect())
            }
            None => (helper.to_path_buf(), vec![lock.to_string()]),
        };
        let mut cmd = std::process::Command::new(&prog);
        cmd.args(&args)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped());
        crate::sys::unblock_signals_in_child(&mut cmd);
        let mut child = cmd.spawn().map_err(|e| {
            (
                LockStatus::Error,
                format!("cannot run {}: {e}", prog.display()),
            )
        })?;
        let Some(mut out) = child.stdout.take() else {
            return Err((
                LockStatus::Error,
                "cluster mutex helper has no stdout".into(),
            ));
        };
        let byte = glommio::executor()
            .spawn_blocking(move || {
                use std::io::Read;
                let mut b = [0u8; 1];
                out.read_exact(&mut b).map(|_| b[0])
            })
            .await;
        let mut lock = ClusterLock {
            child,
            released: false,
        };
        match byte {
            Ok(b'0') => Ok(lock),
            Ok(b) => {
                lock.release();
                let st = LockStatus::from_byte(b);
                Err((
                    st,
                    match b {
                        b'1' => "contention".to_string(),
                        b'2' => "timeout".to_string(),
                        _ => format!("error (status '{}')", b as char),
                    },
                ))
            }
            Err(e) => {
                lock.release();
                Err((
                    LockStatus::Error,
                    format!("helper ended without status: {e}"),
                ))
            }
        }
    }

    /// Whether the helper (and so the lock) is gone.
    pub fn lost(&mut self) -> bool {
        !matches!(self.child.try_wait(), Ok(None))
    }

    /// Releases the lock: kill the helper, then reap it.
    ///
    /// SIGKILL, not upstream's SIGTERM: the wait below runs on the control
    /// core, and a `!command` helper that ignores SIGTERM would hang it.
    /// The kernel drops the helper's lock when it dies either way.
    pub fn release(&mut self) {
        if self.released {
            return;
        }
        self.released = true;
        if matches!(self.child.try_wait(), Ok(None)) {
            crate::event::runner::kill_pid(self.child.id(), libc::SIGKILL);
        }
        let _ = self.child.wait();
    }
}

impl Drop for ClusterLock {
    fn drop(&mut self) {
        self.release();
    }
}

/// Fatal start-up failure: the exit code and why.
#[derive(Debug)]
pub struct Fatal(pub String);

/// The daemon's life until stop or SHUTDOWN. Returns an error for a fatal
/// start-up failure (init or setup event failed).
pub async fn run(d: Rc<Daemon>, stop: StopSignal) -> Result<(), Fatal> {
    let timeout = || d.tunable("EventScriptTimeout", 30);
    set_runstate(&d, RUNSTATE_INIT);
    let code = run_event(d.events.clone(), CtdbEvent::Init, timeout()).await;
    if code != 0 {
        return Err(Fatal(format!("Failed to run init event ({code})")));
    }
    notify(&d, Notification::Init);
    set_runstate(&d, RUNSTATE_SETUP);
    let code = run_event(d.events.clone(), CtdbEvent::Setup, timeout()).await;
    if code != 0 {
        return Err(Fatal(format!("Failed to run setup event ({code})")));
    }
    notify(&d, Notification::Setup);
    set_runstate(&d, RUNSTATE_FIRST_RECOVERY);

    // The recovery daemon: elections, LEADER broadcasts, recoveries.
    let recoverd = glommio::spawn_local(crate::recoverd_driver::run(d.clone(), stop.clone()));
    // Vacuuming of volatile databases, every VacuumInterval.
    glommio::spawn_local(crate::vacuumer::run(d.clone(), stop.clone())).detach();
    let mut next_stats = Instant::now();
    let mut next_startup: Option<Instant> = None;
    let mut next_monitor: Option<Instant> = None;
    let next_interval = Rc::new(Cell::new(2u32));
    let monitor_busy = Rc::new(Cell::new(false));
    let timeouts = Rc::new(Cell::new(0u32));
    let startup_busy = Rc::new(Cell::new(false));

    loop {
        if d.shutdown.get() || stop.is_stopped() {
            break;
        }
        let now = Instant::now();

        // Statistics history.
        if now >= next_stats {
            d.stats.borrow_mut().rotate();
            next_stats =
                now + Duration::from_secs(u64::from(d.tunable("StatHistoryInterval", 1).max(1)));
        }

        // Ban expiry and the node machine's timers.
        let all_frozen = d.frozen.get();
        let ms = d.start_instant.elapsed().as_millis() as u64;
        let (_acts, effects) = d.node.borrow_mut().tick(ms, all_frozen);
        if !effects.is_empty() {
            apply_effects(&d, &effects);
        }

        // Cluster traverses a node never finished (it died meanwhile).
        let traverse_timeout =
            Duration::from_secs(u64::from(d.tunable("TraverseTimeout", 20).max(1)));
        let expired = d.dbs.borrow_mut().expire_traverses(traverse_timeout);
        for m in &expired {
            d.deliver(m);
        }

        // Start-up once the first recovery has settled.
        if d.runstate.get() == RUNSTATE_STARTUP && !startup_busy.get() {
            // As upstream: unless started in test mode (fast start), wait
            // RerecoveryTimeout + 3 s after the last recovery.
            let settled = d.recovered_at.get().is_some_and(|t| {
                d.fast_start
                    || t.elapsed()
                        >= Duration::from_secs(u64::from(d.tunable("RerecoveryTimeout", 10)) + 3)
            });
            let due = next_startup.is_none_or(|t| now >= t);
            if settled && due && d.node.borrow().recmode() == CTDB_RECOVERY_NORMAL {
                tracing::info!("Running the \"startup\" event.");
                startup_busy.set(true);
                let code = run_event(d.events.clone(), CtdbEvent::Startup, timeout()).await;
                startup_busy.set(false);
                if code != 0 {
                    tracing::error!("startup event failed");
                    next_startup = Some(Instant::now() + Duration::from_secs(5));
                } else {
                    tracing::info!("startup event OK - enabling monitoring");
                    set_runstate(&d, RUNSTATE_RUNNING);
                    next_interval.set(2);
                    notify(&d, Notification::Startup);
                    next_monitor = Some(Instant::now() + Duration::from_secs(2));
                }
            }
        }

        // Monitoring.
        if let Some(t) = next_monitor {
            if Instant::now() >= t && !monitor_busy.get() {
                let skip = {
                    let node = d.node.borrow();
                    node.recmode() != CTDB_RECOVERY_NORMAL
                        || node.membership.own_flags() & NODE_FLAGS_INACTIVE != 0
                        || d.runstate.get() != RUNSTATE_RUNNING
                        || d.frozen.get()
                };
                if skip {
                    next_monitor =
                        Some(Instant::now() + Duration::from_secs(u64::from(next_interval.get())));
                } else {
                    next_monitor = None;
                    monitor_busy.set(true);
                    let d2 = d.clone();
                    let busy = monitor_busy.clone();
                    let ni = next_interval.clone();
                    let to = timeouts.clone();
                    glommio::spawn_local(async move {
                        let code = run_event(
                            d2.events.clone(),
                            CtdbEvent::Monitor,
                            d2.tunable("EventScriptTimeout", 30),
                        )
                        .await;
                        health_result(&d2, code, &ni, &to);
                        busy.set(false);
                    })
                    .detach();
                }
            }
        }
        if next_monitor.is_none() && !monitor_busy.get() && d.runstate.get() == RUNSTATE_RUNNING {
            // The monitor just finished: schedule the next one.
            let cur = next_interval.get();
            next_monitor = Some(Instant::now() + Duration::from_secs(u64::from(cur)));
            let max = d.tunable("MonitorInterval", 15).max(1);
            next_interval.set((cur * 2).min(max));
        }

        // Sleep until the next second or a stop.
        let tick = glommio::timer::sleep(Duration::from_millis(200));
        futures_lite::future::or(tick, async {
            stop.stopped().await;
        })
        .await;
    }
    // As upstream's shutdown sequence: the recovery daemon goes first
    // (releasing the cluster lock), then the shutdown event.
    recoverd.await;
    shutdown(&d).await;
    Ok(())
}

fn health_result(d: &Daemon, status: i32, next_interval: &Cell<u32>, timeouts: &Cell<u32>) {
    if status == libc::ECANCELED {
        tracing::error!("Monitoring event was cancelled");
        return;
    }
    if status == libc::ETIMEDOUT {
        timeouts.set(timeouts.get() + 1);
        let max = d.tunable("MonitorTimeoutCount", 20);
        if timeouts.get() >= max {
            tracing::error!("Maximum monitor timeout count {max} reached. Making node unhealthy");
        } else {
            return;
        }
    } else {
        timeouts.set(0);
    }
    let unhealthy = d.node.borrow().membership.own_flags() & NODE_FLAGS_UNHEALTHY != 0;
    if status != 0 && !unhealthy {
        tracing::info!("monitor event failed - disabling node");
        let change = d.node.borrow_mut().membership.set_own_health(false);
        push_node_flags(d, change);
        next_interval.set(5);
        notify(d, Notification::Unhealthy);
        tracing::error!("Node became UNHEALTHY. Ask recovery master to reallocate IPs");
        ask_takeover_run(d);
    } else if status == 0 && unhealthy {
        tracing::info!("monitor event OK - node re-enabled");
        let change = d.node.borrow_mut().membership.set_own_health(true);
        push_node_flags(d, change);
        next_interval.set(5);
        notify(d, Notification::Healthy);
        tracing::error!("Node became HEALTHY. Ask recovery master to reallocate IPs");
        ask_takeover_run(d);
    }
}

/// TAKEOVER_RUN to every connected node (only the leader acts on it).
fn ask_takeover_run(d: &Daemon) {
    d.deliver(&OutMessage {
        pnn: ctdb_protocol::constants::CTDB_BROADCAST_CONNECTED,
        srvid: srvid::TAKEOVER_RUN,
        data: SrvidMessage {
            pnn: d.pnn(),
            srvid: 0,
        }
        .to_bytes(),
    });
}

/// A change of this node's flags goes to its recovery daemon, which
/// pushes it to every connected node (upstream's PUSH_NODE_FLAGS).
fn push_node_flags(d: &Daemon, change: Option<NodeFlagChange>) {
    if let Some(c) = change {
        d.deliver(&OutMessage {
            pnn: d.pnn(),
            srvid: srvid::PUSH_NODE_FLAGS,
            data: c.to_bytes(),
        });
    }
}

/// Upstream's shutdown sequence.
async fn shutdown(d: &Daemon) {
    if d.runstate.get() == RUNSTATE_SHUTDOWN {
        return;
    }
    tracing::error!("Shutdown sequence commencing.");
    set_runstate(d, RUNSTATE_SHUTDOWN);
    let code = run_event(
        d.events.clone(),
        CtdbEvent::Shutdown,
        d.tunable("EventScriptTimeout", 30),
    )
    .await;
    if code != 0 {
        tracing::error!("shutdown event failed ({code})");
    }
    tracing::error!("Shutdown sequence complete, exiting.");
}
