//! The thread-per-core runtime: one pinned glommio executor per core, a
//! control core and data cores, explicit bounded messages between them.
//!
//! # Core layout
//!
//! | core | CPU | role |
//! |---|---|---|
//! | 0 | first allowed CPU (or `cpus[0]`) | **control**: client socket accept loop, controls, and later election, recovery, IP takeover, event scripts, forwarding of record migrations |
//! | 1..N-1 | next allowed CPUs | **data** shard `core - 1`: owns its share of every database's hash chains and its own sockets |
//!
//! With one core, core 0 is both: the control future and data shard 0 run
//! as tasks on the same executor, and the messages below travel through
//! glommio local channels instead of shared ones, so the rest of the daemon
//! does not care how many cores there are. Shards are `max(1, cores - 1)`.
//!
//! Architecture invariants:
//! * a record is touched only by the data core that owns its chain;
//! * only the control core holds the cluster lock or runs event scripts;
//! * cores share no locks on the hot path; they talk only through the
//!   bounded channels below (a full channel makes the sender wait, it never
//!   grows).
//!
//! # Messages
//!
//! * control → data ([`ToData`]): `Ping` (liveness, used by tests and, later,
//!   by the recovery daemon's checks), `Db` (a [`ShardRequest`] for the
//!   core's [`Shard`]: attach/detach a volatile database's partition, a
//!   client's REQ_CALL on its chains, take its statistics), `StartLanes`,
//!   `Env` and `ClientCall` (the core's own side of the node transport,
//!   [`crate::shard_peers`]), `Stop` (drain and exit).
//! * data → control ([`ToControl`]): `Pong` (carrying the shard, its thread
//!   id and CPU), `DbDone` (the [`ShardReply`] to a `Db`, by sequence
//!   number), `Stopped`, and for the daemon ([`ControlCore::take_events`])
//!   `ClientReply`, `RecoveryWanted`, `PeerPacket`.
//!
//! On the control core a pump task per shard reads that shard's link and
//! hands each `DbDone` to the task waiting for it
//! ([`ControlCore::request`]), so many client tasks can have calls in
//! flight at once; everything else goes to [`ControlCore::recv`]. What is
//! routed where is decided in [`crate::shards`]. Later additions go here
//! too, always as values moved through these channels, never as shared
//! state.
//!
//! # Scheduling and memory
//!
//! Each core thread puts itself under SCHED_FIFO priority 1, as upstream
//! ctdbd does for its single thread, unless `realtime` is off
//! (`realtime scheduling = false`, `--nosetsched`). Executors park in the
//! kernel when idle, so a real-time core does not burn its CPU.
//!
//! Thread names: the reactor thread of core N is `ctdb-core-N`; glommio's
//! blocking-helper threads for that core are `ctdb-core-N-<id>`, pinned to
//! the same CPU but left under SCHED_OTHER on purpose, so blocking file
//! work can never preempt the reactor it serves. Before any
//! executor starts, RLIMIT_MEMLOCK is checked against what glommio needs for
//! its io_uring rings; a short limit stops start-up with a message naming
//! the limit and how to raise it, instead of a failure deep inside glommio.
//! `mlockall` is done on request.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::io::{self, Write};
use std::os::unix::net::UnixStream as StdUnixStream;
use std::rc::Rc;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use futures_lite::io::AsyncReadExt;
use glommio::channels::local_channel::{self, LocalReceiver, LocalSender};
use glommio::channels::shared_channel::{self, ConnectedReceiver, ConnectedSender};
use glommio::sync::Semaphore;
use glommio::{ExecutorJoinHandle, LocalExecutorBuilder, Placement};

use crate::db::{Shard, ShardReply, ShardRequest};
use crate::error::DaemonError;
use crate::shard_peers::{CoreEnv, ShardPeers, StartLanes};
use crate::sys;

/// glommio refuses to build a reactor below this RLIMIT_MEMLOCK
/// (`MIN_MEMLOCK_LIMIT` in its `sys/uring.rs`).
pub const GLOMMIO_MIN_MEMLOCK: u64 = 512 * 1024;

/// How the runtime is laid out.
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// Number of cores (executors), at least 1.
    pub cores: usize,
    /// CPUs to pin the cores to, in core order; default: the first `cores`
    /// CPUs this process may run on.
    pub cpus: Option<Vec<usize>>,
    /// Pin each core's thread to its CPU (`Placement::Fixed`); off, the
    /// kernel places the threads (test mode: several daemons share a host).
    pub pin: bool,
    /// SCHED_FIFO on every core thread.
    pub realtime: bool,
    /// SCHED_FIFO priority (upstream: 1).
    pub rt_priority: i32,
    /// `mlockall(MCL_CURRENT | MCL_FUTURE)` before starting.
    pub mlock: bool,
    /// Capacity of each cross-core channel, in messages.
    pub channel_capacity: usize,
    /// glommio's registered I/O arena per core, in bytes.
    pub io_memory: usize,
    /// How long cores may take to come up.
    pub start_timeout: Duration,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            cores: 1,
            cpus: None,
            pin: true,
            realtime: true,
            rt_priority: 1,
            mlock: false,
            channel_capacity: 1024,
            io_memory: 1 << 20,
            start_timeout: Duration::from_secs(10),
        }
    }
}

/// What a core does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Control,
    Data,
    /// The single core of a one-core runtime.
    ControlAndData,
}

/// A running core, as reported by the core itself once it is set up.
#[derive(Debug, Clone)]
pub struct CoreInfo {
    pub index: usize,
    pub cpu: usize,
    /// Kernel thread id of the executor thread.
    pub tid: i32,
    pub role: Role,
    /// The data shard it owns, if any.
    pub shard: Option<usize>,
    /// Whether SCHED_FIFO was applied.
    pub realtime: bool,
}

/// Control core → data core.
#[derive(Debug)]
pub enum ToData {
    Ping {
        seq: u64,
    },
    /// A database request for this core's [`Shard`] (attach, REQ_CALL,
    /// statistics); answered with [`ToControl::DbDone`] carrying `seq`.
    Db {
        seq: u64,
        req: ShardRequest,
    },
    /// Start this core's side of the node transport
    /// ([`crate::shard_peers`]).
    StartLanes(Box<StartLanes>),
    /// The node as it is now (after a change).
    Env(Box<CoreEnv>),
    /// A local client's REQ_CALL on a key of this core's chains.
    ClientCall {
        client: u32,
        pkt: Vec<u8>,
    },
    /// Local client `client` sent a packet, as this core asked with
    /// [`ToControl::HoldWaiting`].
    ClientActive {
        client: u32,
    },
    Stop,
}

/// Data core → control core.
#[derive(Debug)]
pub enum ToControl {
    Pong {
        shard: usize,
        seq: u64,
        tid: i32,
        cpu: usize,
    },
    Stopped {
        shard: usize,
    },
    /// The answer to [`ToData::Db`] number `seq`.
    DbDone {
        shard: usize,
        seq: u64,
        reply: ShardReply,
    },
    /// A whole packet for local client `client` (a REPLY_CALL).
    ClientReply {
        client: u32,
        pkt: Vec<u8>,
    },
    /// The migration protocol went wrong: the node wants a recovery.
    RecoveryWanted,
    /// A packet from node `from` the data core does not serve.
    PeerPacket {
        from: u32,
        bytes: Vec<u8>,
    },
    /// Node calls on this core wait for local client `client` to act on a
    /// record it was just handed (the migrator's hand-over hold): pass its
    /// next packet on with [`ToData::ClientActive`].
    HoldWaiting {
        shard: usize,
        client: u32,
    },
}

impl ToControl {
    /// Whether this is one of the messages for the daemon
    /// ([`ControlCore::take_events`]) rather than for the runtime.
    fn is_event(&self) -> bool {
        matches!(
            self,
            ToControl::ClientReply { .. }
                | ToControl::RecoveryWanted
                | ToControl::PeerPacket { .. }
                | ToControl::HoldWaiting { .. }
        )
    }
}

/// Sending end of a cross-core link: a shared channel between two
/// executors, or a local one when both ends live on the same core.
pub enum LinkSender<T: Send + 'static> {
    Local(LocalSender<T>),
    Shared(ConnectedSender<T>),
}

/// Receiving end of a cross-core link.
pub enum LinkReceiver<T: Send + 'static> {
    Local(LocalReceiver<T>),
    Shared(ConnectedReceiver<T>),
}

impl<T: Send + 'static> LinkSender<T> {
    /// Sends, waiting while the channel is full. `Err` gives the message
    /// back when the receiving core is gone.
    pub async fn send(&self, msg: T) -> Result<(), T> {
        let r = match self {
            LinkSender::Local(s) => s.send(msg).await,
            LinkSender::Shared(s) => s.send(msg).await,
        };
        r.map_err(|e| match e {
            glommio::GlommioError::Closed(glommio::ResourceType::Channel(m))
            | glommio::GlommioError::WouldBlock(glommio::ResourceType::Channel(m)) => Some(m),
            _ => None,
        })
        .map_err(|m| m.expect("glommio channel errors carry the message"))
    }
}

impl<T: Send + 'static> LinkReceiver<T> {
    /// The next message, or `None` when the sending core is gone.
    pub async fn recv(&self) -> Option<T> {
        match self {
            LinkReceiver::Local(r) => r.recv().await,
            LinkReceiver::Shared(r) => r.recv().await,
        }
    }
}

/// Wakes a task on an executor from any thread: writing a byte to one end
/// of a socket pair whose other end the executor reads through io_uring.
#[derive(Clone)]
pub struct Ringer(Arc<StdUnixStream>);

impl Ringer {
    pub fn ring(&self) {
        // A full socket buffer already means "woken"; other errors mean the
        // executor side is gone, when there is nobody left to wake.
        let _ = (&*self.0).write(&[1]);
    }
}

/// The executor side of a [`Ringer`].
pub struct Bell {
    stream: glommio::net::UnixStream,
}

impl Bell {
    /// Waits for at least one ring. `false` once every [`Ringer`] is gone.
    pub async fn wait(&mut self) -> bool {
        let mut buf = [0u8; 64];
        matches!(self.stream.read(&mut buf).await, Ok(n) if n > 0)
    }
}

/// A [`Ringer`] and the not-yet-attached other end, to be turned into a
/// [`Bell`] with [`attach_bell`] on the executor that waits.
pub fn bell_pair() -> io::Result<(Ringer, StdUnixStream)> {
    let (a, b) = StdUnixStream::pair()?;
    a.set_nonblocking(true)?;
    Ok((Ringer(Arc::new(a)), b))
}

/// Attaches the executor end of a bell to the current executor.
pub fn attach_bell(end: StdUnixStream) -> io::Result<Bell> {
    Ok(Bell {
        stream: sys::into_glommio(end)?,
    })
}

/// Resolves when the runtime is asked to stop; cheap to clone.
#[derive(Clone)]
pub struct StopSignal(Rc<Semaphore>);

impl StopSignal {
    fn new() -> Self {
        StopSignal(Rc::new(Semaphore::new(0)))
    }
    fn fire(&self) {
        self.0.close();
    }
    pub fn is_stopped(&self) -> bool {
        self.0.try_acquire(1).is_err()
    }
    pub async fn stopped(&self) {
        // Nobody ever signals the semaphore: acquire only returns when it
        // is closed by `fire`.
        let _ = self.0.acquire(1).await;
    }
}

/// Per shard: who waits for which [`ToData::Db`] answer, by sequence
/// number.
type Waiting = Vec<RefCell<HashMap<u64, LocalSender<ShardReply>>>>;

/// What the control future gets: links to every data shard and the stop
/// signal.
pub struct ControlCore {
    pub cores: Vec<CoreInfo>,
    to_data: Vec<LinkSender<ToData>>,
    /// Per shard: the messages other than [`ToControl::DbDone`], forwarded
    /// by that shard's pump task (see [`pump`]).
    from_data: Vec<LocalReceiver<ToControl>>,
    waiting: Rc<Waiting>,
    next_seq: Cell<u64>,
    stop: StopSignal,
    /// Client replies, recovery requests and packets from the data cores'
    /// own transports, for the daemon.
    events: RefCell<Option<LocalReceiver<ToControl>>>,
}

impl ControlCore {
    pub fn shards(&self) -> usize {
        self.to_data.len()
    }

    pub fn stop_signal(&self) -> StopSignal {
        self.stop.clone()
    }

    /// The data cores' messages for the daemon (client replies, recovery
    /// requests, packets they do not serve); whoever takes them must read
    /// them for as long as the runtime runs. `None` after the first call.
    pub fn take_events(&self) -> Option<LocalReceiver<ToControl>> {
        self.events.borrow_mut().take()
    }

    /// Sends one message to shard `shard`.
    pub async fn send(&self, shard: usize, msg: ToData) -> Result<(), DaemonError> {
        self.to_data[shard]
            .send(msg)
            .await
            .map_err(|_| DaemonError::sys("send to data core", io::ErrorKind::BrokenPipe.into()))
    }

    /// Next message from shard `shard` (other than database answers,
    /// which go to [`ControlCore::request`]'s caller).
    pub async fn recv(&self, shard: usize) -> Option<ToControl> {
        self.from_data[shard].recv().await
    }

    /// True when data shards run on cores of their own (two or more
    /// cores); with one core, core 0 serves the databases itself.
    pub fn has_data_cores(&self) -> bool {
        self.cores.len() > 1
    }

    /// Sends a database request to shard `shard` and waits for its answer.
    /// Many requests may be in flight at once (one per client task); each
    /// waits only for its own answer.
    pub async fn request(
        &self,
        shard: usize,
        req: ShardRequest,
    ) -> Result<ShardReply, DaemonError> {
        let gone = || DaemonError::sys("data core request", io::ErrorKind::BrokenPipe.into());
        let seq = self.next_seq.get();
        self.next_seq.set(seq.wrapping_add(1));
        let (tx, rx) = local_channel::new_bounded::<ShardReply>(1);
        self.waiting[shard].borrow_mut().insert(seq, tx);
        if self.send(shard, ToData::Db { seq, req }).await.is_err() {
            self.waiting[shard].borrow_mut().remove(&seq);
            return Err(gone());
        }
        rx.recv().await.ok_or_else(gone)
    }

    /// Pings every shard and returns their answers in shard order: proof
    /// that every data core is alive and reachable.
    pub async fn ping_all(&self, seq: u64) -> Result<Vec<ToControl>, DaemonError> {
        for shard in 0..self.shards() {
            self.send(shard, ToData::Ping { seq }).await?;
        }
        let mut out = Vec::with_capacity(self.shards());
        for shard in 0..self.shards() {
            match self.recv(shard).await {
                Some(m @ ToControl::Pong { seq: s, .. }) if s == seq => out.push(m),
                other => {
                    return Err(DaemonError::sys(
                        "ping data core",
                        io::Error::other(format!("shard {shard} answered {other:?}")),
                    ))
                }
            }
        }
        Ok(out)
    }

    async fn stop_data_cores(&self) {
        for shard in 0..self.shards() {
            let _ = self.to_data[shard].send(ToData::Stop).await;
        }
        for shard in 0..self.shards() {
            while let Some(m) = self.recv(shard).await {
                if matches!(m, ToControl::Stopped { .. }) {
                    break;
                }
            }
        }
    }
}

/// Reads shard `shard`'s messages on the control core: database answers
/// go to whoever waits for them, the rest to [`ControlCore::recv`]. When
/// the data core is gone, every waiter is told (its answer channel closes).
async fn pump(
    shard: usize,
    rx: LinkReceiver<ToControl>,
    others: LocalSender<ToControl>,
    events: Rc<LocalSender<ToControl>>,
    waiting: Rc<Waiting>,
) {
    while let Some(msg) = rx.recv().await {
        match msg {
            ToControl::DbDone { seq, reply, .. } => {
                let waiter = waiting[shard].borrow_mut().remove(&seq);
                match waiter {
                    // The waiter may have gone (its client disconnected).
                    Some(w) => {
                        let _ = w.try_send(reply);
                    }
                    None => tracing::warn!("data core {shard}: answer {seq} nobody waits for"),
                }
            }
            ev if ev.is_event() => {
                // Nobody reads them (no other node): dropped.
                let _ = events.try_send(ev);
            }
            other => {
                // A stopped core sends nothing more; its sending end may
                // outlive it (held by a task of its transport side), so
                // the pump ends here rather than on the channel's close.
                let stopped = matches!(other, ToControl::Stopped { .. });
                if others.send(other).await.is_err() || stopped {
                    break;
                }
            }
        }
    }
    waiting[shard].borrow_mut().clear();
}

/// The data core's loop: answers pings, serves its [`Shard`] of every
/// volatile database (one request at a time, never holding a record lock
/// between two), runs its side of the node transport once started
/// ([`crate::shard_peers`]), and stops on request, logging how many calls
/// it served.
async fn data_core_main(
    shard: usize,
    shards: usize,
    cpu: usize,
    rx: LinkReceiver<ToData>,
    tx: LinkSender<ToControl>,
) {
    let tid = sys::gettid();
    let tx = Rc::new(tx);
    let dbs = Rc::new(RefCell::new(Shard::new(shard, shards)));
    let mut lanes: Option<Rc<ShardPeers>> = None;
    let mut calls = 0u64;
    while let Some(msg) = rx.recv().await {
        match msg {
            ToData::Db { seq, req } => {
                if matches!(req, ShardRequest::Call { .. }) {
                    calls += 1;
                }
                let reply = match req {
                    ShardRequest::TakeCounters => ShardReply::Counters(Box::new(
                        lanes
                            .as_ref()
                            .map(|l| l.take_counters())
                            .unwrap_or_default(),
                    )),
                    req => dbs.borrow_mut().handle(req),
                };
                if tx
                    .send(ToControl::DbDone { shard, seq, reply })
                    .await
                    .is_err()
                {
                    break;
                }
            }
            ToData::StartLanes(start) => {
                if lanes.is_none() {
                    lanes = ShardPeers::start(shard, shards, dbs.clone(), tx.clone(), *start).await;
                }
            }
            ToData::Env(env) => {
                if let Some(l) = &lanes {
                    l.set_env(*env);
                }
            }
            ToData::ClientCall { client, pkt } => {
                calls += 1;
                match &lanes {
                    Some(l) => l.client_call(client, pkt),
                    None => tracing::error!(
                        "data core for shard {shard}: client call before its transport started"
                    ),
                }
            }
            ToData::ClientActive { client } => {
                if let Some(l) = &lanes {
                    l.client_active(client);
                }
            }
            ToData::Ping { seq } => {
                if tx
                    .send(ToControl::Pong {
                        shard,
                        seq,
                        tid,
                        cpu,
                    })
                    .await
                    .is_err()
                {
                    break;
                }
            }
            ToData::Stop => {
                if let Some(l) = &lanes {
                    l.stop();
                }
                let _ = tx.send(ToControl::Stopped { shard }).await;
                break;
            }
        }
    }
    tracing::info!("data core for shard {shard} stopped after serving {calls} calls");
}

/// Checks RLIMIT_MEMLOCK before any executor exists. Raises the soft limit
/// towards the hard one when that is enough; otherwise returns an error
/// naming the limit. With CAP_IPC_LOCK the limit does not apply to io_uring
/// buffers, but glommio still checks it, so the minimum stands.
pub fn check_memlock(cfg: &RuntimeConfig) -> Result<(u64, u64), DaemonError> {
    let (soft, hard) =
        sys::memlock_limit().map_err(|e| DaemonError::sys("getrlimit(RLIMIT_MEMLOCK)", e))?;
    let need = GLOMMIO_MIN_MEMLOCK;
    // What we would like: the registered I/O arena of every core (only
    // matters without CAP_IPC_LOCK), or everything when mlockall is asked.
    let want = if cfg.mlock {
        u64::MAX
    } else {
        need.max(cfg.io_memory as u64 * cfg.cores as u64 + need)
    };
    let mut soft_now = soft;
    if soft < want && hard > soft {
        let target = want.min(hard);
        if sys::set_memlock_soft(target).is_ok() {
            soft_now = target;
            tracing::info!(
                "raised RLIMIT_MEMLOCK soft limit from {} to {} KiB",
                soft / 1024,
                target / 1024
            );
        }
    }
    if soft_now < need {
        return Err(DaemonError::MemLockLimit {
            have: soft_now,
            need,
        });
    }
    if soft_now < want && !sys::has_cap_ipc_lock() {
        tracing::warn!(
            "RLIMIT_MEMLOCK is {} KiB, below the {} KiB io_uring would like to lock for {} cores; \
             I/O buffers may not be registered. Raise it with `ulimit -l unlimited` or \
             LimitMEMLOCK=infinity",
            soft_now / 1024,
            want / 1024,
            cfg.cores
        );
    }
    Ok((soft_now, hard))
}

/// The CPUs the cores go on.
pub fn choose_cpus(cfg: &RuntimeConfig) -> Result<Vec<usize>, DaemonError> {
    if cfg.cores == 0 {
        return Err(DaemonError::BadOption {
            option: "cores",
            why: "must be at least 1".into(),
        });
    }
    let allowed = sys::affinity(0).map_err(|e| DaemonError::sys("sched_getaffinity", e))?;
    let cpus = match &cfg.cpus {
        Some(c) => {
            if c.len() < cfg.cores {
                return Err(DaemonError::BadOption {
                    option: "cpus",
                    why: format!("{} CPUs listed for {} cores", c.len(), cfg.cores),
                });
            }
            if let Some(bad) = c.iter().find(|c| !allowed.contains(c)) {
                return Err(DaemonError::BadOption {
                    option: "cpus",
                    why: format!("CPU {bad} is not in this process's affinity {allowed:?}"),
                });
            }
            c[..cfg.cores].to_vec()
        }
        // Unpinned, a core's CPU is only where it is reported to start:
        // more cores than CPUs share them.
        None if !cfg.pin && !allowed.is_empty() => {
            allowed.iter().copied().cycle().take(cfg.cores).collect()
        }
        None => {
            if allowed.len() < cfg.cores {
                return Err(DaemonError::NotEnoughCpus {
                    wanted: cfg.cores,
                    allowed,
                });
            }
            allowed[..cfg.cores].to_vec()
        }
    };
    Ok(cpus)
}

/// A running set of cores.
pub struct Runtime {
    cores: Vec<CoreInfo>,
    handles: Vec<ExecutorJoinHandle<()>>,
    stop: Ringer,
}

/// Start-up verdict sent to every core once all have reported.
enum Go {
    Run(Vec<CoreInfo>),
    Abort,
}

/// Per-core links handed over at spawn time.
enum CoreLinks {
    Control {
        to_data: Vec<shared_channel::SharedSender<ToData>>,
        from_data: Vec<shared_channel::SharedReceiver<ToControl>>,
        stop_end: StdUnixStream,
    },
    Single {
        stop_end: StdUnixStream,
    },
    Data {
        shard: usize,
        rx: shared_channel::SharedReceiver<ToData>,
        tx: shared_channel::SharedSender<ToControl>,
    },
}

impl Runtime {
    /// Starts the cores and runs `control` on core 0. Returns once every
    /// core is pinned, scheduled and ready, or with the first core's error
    /// (and then no core runs anything). When `control` returns, the data
    /// cores are stopped and the runtime ends.
    pub fn start<F, Fut>(cfg: RuntimeConfig, control: F) -> Result<Runtime, DaemonError>
    where
        F: FnOnce(Rc<ControlCore>) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()> + 'static,
    {
        let cpus = choose_cpus(&cfg)?;
        check_memlock(&cfg)?;
        if cfg.mlock {
            sys::mlockall().map_err(|source| DaemonError::MemLock { source })?;
            tracing::info!("locked all memory (mlockall)");
        }
        let n = cfg.cores;
        let cap = cfg.channel_capacity.max(1);
        let (ringer, stop_end) =
            bell_pair().map_err(|e| DaemonError::sys("socketpair for stop bell", e))?;

        // Links: with more than one core, a pair of shared channels per shard.
        let mut links: Vec<CoreLinks> = Vec::with_capacity(n);
        if n == 1 {
            links.push(CoreLinks::Single { stop_end });
        } else {
            let mut to_data = Vec::new();
            let mut from_data = Vec::new();
            let mut data = Vec::new();
            for shard in 0..n - 1 {
                let (t, r) = shared_channel::new_bounded::<ToData>(cap);
                let (t2, r2) = shared_channel::new_bounded::<ToControl>(cap);
                to_data.push(t);
                from_data.push(r2);
                data.push(CoreLinks::Data {
                    shard,
                    rx: r,
                    tx: t2,
                });
            }
            links.push(CoreLinks::Control {
                to_data,
                from_data,
                stop_end,
            });
            links.extend(data);
        }

        let (report_tx, report_rx) = mpsc::channel::<Result<CoreInfo, DaemonError>>();
        let mut go_txs = Vec::with_capacity(n);
        let mut handles = Vec::with_capacity(n);
        let mut control = Some(control);

        // Tells every core not to run, waits for them, and returns what
        // glommio said about cores whose executor failed to build.
        let abort = |go_txs: &[mpsc::Sender<Go>], handles: Vec<ExecutorJoinHandle<()>>| {
            for g in go_txs {
                let _ = g.send(Go::Abort);
            }
            let mut why = Vec::new();
            for (i, h) in handles.into_iter().enumerate() {
                if let Err(e) = h.join() {
                    why.push((i, e.to_string()));
                }
            }
            why
        };

        for (index, (cpu, link)) in cpus.iter().copied().zip(links).enumerate() {
            let (go_tx, go_rx) = mpsc::channel::<Go>();
            go_txs.push(go_tx);
            let mut report = Reporter {
                tx: Some(report_tx.clone()),
                core: index,
                cpu,
            };
            let realtime = cfg.realtime;
            let prio = cfg.rt_priority;
            let control = if index == 0 { control.take() } else { None };
            let placement = if cfg.pin {
                Placement::Fixed(cpu)
            } else {
                Placement::Unbound
            };
            let spawned = LocalExecutorBuilder::new(placement)
                .name(&format!("ctdb-core-{index}"))
                .io_memory(cfg.io_memory)
                .spawn(move || async move {
                    let (role, shard) = match &link {
                        CoreLinks::Single { .. } => (Role::ControlAndData, Some(0)),
                        CoreLinks::Control { .. } => (Role::Control, None),
                        CoreLinks::Data { shard, .. } => (Role::Data, Some(*shard)),
                    };
                    // Phase 1: set this thread up and report. glommio named
                    // it "ctdb-core-N-<id>", and so are the blocking helper
                    // threads it already started for this core; the reactor
                    // thread itself becomes plain "ctdb-core-N".
                    let _ = sys::set_thread_name(&format!("ctdb-core-{index}"));
                    let mut fifo = false;
                    if realtime {
                        if let Err(source) = sys::set_fifo(prio) {
                            report.send(Err(DaemonError::Scheduler {
                                core: index,
                                source,
                            }));
                            return;
                        }
                        fifo = true;
                    }
                    report.send(Ok(CoreInfo {
                        index,
                        cpu,
                        tid: sys::gettid(),
                        role,
                        shard,
                        realtime: fifo,
                    }));
                    // Phase 2: wait for the verdict (a start-up-only block).
                    let cores = match go_rx.recv() {
                        Ok(Go::Run(cores)) => cores,
                        _ => return,
                    };
                    run_core(link, cpu, cap, cores, control).await;
                });
            match spawned {
                Ok(h) => handles.push(h),
                Err(e) => {
                    abort(&go_txs, handles);
                    return Err(DaemonError::Executor {
                        core: index,
                        cpu,
                        why: e.to_string(),
                    });
                }
            }
        }
        drop(report_tx);

        let mut cores: Vec<CoreInfo> = Vec::with_capacity(n);
        let mut failure = None;
        let deadline = std::time::Instant::now() + cfg.start_timeout;
        while cores.len() < n && failure.is_none() {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match report_rx.recv_timeout(left) {
                Ok(Ok(info)) => cores.push(info),
                Ok(Err(e)) => failure = Some(e),
                Err(_) => {
                    let missing = (0..n)
                        .find(|i| !cores.iter().any(|c| c.index == *i))
                        .unwrap_or(0);
                    failure = Some(DaemonError::StartTimeout { core: missing });
                }
            }
        }
        if let Some(mut e) = failure {
            let why = abort(&go_txs, handles);
            if let DaemonError::Executor { core, why: w, .. } = &mut e {
                if let Some((_, glommio_says)) = why.iter().find(|(i, _)| i == core) {
                    *w = glommio_says.clone();
                }
            }
            return Err(e);
        }
        cores.sort_by_key(|c| c.index);
        for g in &go_txs {
            let _ = g.send(Go::Run(cores.clone()));
        }
        Ok(Runtime {
            cores,
            handles,
            stop: ringer,
        })
    }

    /// Every core, in core order.
    pub fn cores(&self) -> &[CoreInfo] {
        &self.cores
    }

    /// A handle that asks the runtime to stop, usable from any thread (the
    /// signal thread uses it for SIGTERM).
    pub fn stopper(&self) -> Ringer {
        self.stop.clone()
    }

    /// Asks the control core to stop; see [`ControlCore::stop_signal`].
    pub fn stop(&self) {
        self.stop.ring();
    }

    /// Waits for every core to finish.
    pub fn join(self) -> Result<(), DaemonError> {
        let mut first_err = None;
        for (i, h) in self.handles.into_iter().enumerate() {
            if let Err(e) = h.join() {
                first_err.get_or_insert(DaemonError::Executor {
                    core: i,
                    cpu: self.cores.get(i).map(|c| c.cpu).unwrap_or(0),
                    why: e.to_string(),
                });
            }
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

/// Reports a core's start-up result exactly once; if the core's closure is
/// dropped unrun (its executor failed to build), reports that instead.
struct Reporter {
    tx: Option<mpsc::Sender<Result<CoreInfo, DaemonError>>>,
    core: usize,
    cpu: usize,
}

impl Reporter {
    fn send(&mut self, r: Result<CoreInfo, DaemonError>) {
        if let Some(tx) = self.tx.take() {
            let _ = tx.send(r);
        }
    }
}

impl Drop for Reporter {
    fn drop(&mut self) {
        let (core, cpu) = (self.core, self.cpu);
        self.send(Err(DaemonError::Executor {
            core,
            cpu,
            why: "executor ended before it was set up".into(),
        }));
    }
}

/// Phase 2 of a core: connect links and run its role.
async fn run_core<F, Fut>(
    link: CoreLinks,
    cpu: usize,
    cap: usize,
    cores: Vec<CoreInfo>,
    control: Option<F>,
) where
    F: FnOnce(Rc<ControlCore>) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let (to_data, from_data, stop_end, local_shard) = match link {
        CoreLinks::Data { shard, rx, tx } => {
            // Same order as the control core connects: our receiver, then
            // our sender, so the two handshakes cannot deadlock.
            let rx = LinkReceiver::Shared(rx.connect().await);
            let tx = LinkSender::Shared(tx.connect().await);
            data_core_main(shard, cores.len() - 1, cpu, rx, tx).await;
            return;
        }
        CoreLinks::Control {
            to_data,
            from_data,
            stop_end,
        } => {
            let mut tx = Vec::new();
            let mut rx = Vec::new();
            for (t, r) in to_data.into_iter().zip(from_data) {
                tx.push(LinkSender::Shared(t.connect().await));
                rx.push(LinkReceiver::Shared(r.connect().await));
            }
            (tx, rx, stop_end, None)
        }
        CoreLinks::Single { stop_end } => {
            let (t, r) = local_channel::new_bounded::<ToData>(cap);
            let (t2, r2) = local_channel::new_bounded::<ToControl>(cap);
            let task = glommio::spawn_local(data_core_main(
                0,
                1,
                cpu,
                LinkReceiver::Local(r),
                LinkSender::Local(t2),
            ));
            (
                vec![LinkSender::Local(t)],
                vec![LinkReceiver::Local(r2)],
                stop_end,
                Some(task),
            )
        }
    };
    let stop = StopSignal::new();
    let watcher = match attach_bell(stop_end) {
        Ok(mut bell) => {
            let stop = stop.clone();
            Some(glommio::spawn_local(async move {
                bell.wait().await;
                stop.fire();
            }))
        }
        Err(e) => {
            tracing::error!("cannot attach the stop bell, stopping: {e}");
            stop.fire();
            None
        }
    };
    let waiting: Rc<Vec<_>> = Rc::new(
        (0..from_data.len())
            .map(|_| RefCell::new(HashMap::new()))
            .collect(),
    );
    let mut others = Vec::with_capacity(from_data.len());
    let mut pumps = Vec::with_capacity(from_data.len());
    let (events_tx, events_rx) = local_channel::new_unbounded::<ToControl>();
    let events_tx = Rc::new(events_tx);
    for (shard, rx) in from_data.into_iter().enumerate() {
        let (t, r) = local_channel::new_bounded::<ToControl>(cap);
        others.push(r);
        pumps.push(glommio::spawn_local(pump(
            shard,
            rx,
            t,
            events_tx.clone(),
            waiting.clone(),
        )));
    }
    drop(events_tx);
    let core = Rc::new(ControlCore {
        cores,
        to_data,
        from_data: others,
        waiting,
        next_seq: Cell::new(1),
        stop,
        events: RefCell::new(Some(events_rx)),
    });
    if let Some(control) = control {
        control(core.clone()).await;
    }
    core.stop_data_cores().await;
    if let Some(t) = local_shard {
        t.await;
    }
    for p in pumps {
        p.await;
    }
    if let Some(w) = watcher {
        w.cancel().await;
    }
}
