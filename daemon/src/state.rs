//! The daemon's state on the control core: who this node is, its cluster
//! state (the sans-I/O [`crate::cluster::node::Node`]), the databases, the
//! tunables, the run state, the connected clients and the statistics.
//!
//! Why one struct behind an `Rc`: everything here lives on the control
//! core and is touched by the client tasks and by the lifecycle tasks
//! ([`crate::monitor`]) of that one executor, never by another thread.
//! Fields that change are in `Cell`/`RefCell`; borrows are never held
//! across an `.await`.
//!
//! The node table comes from the nodes file and the PNN from matching
//! local addresses, as upstream; controls and messages for other nodes go
//! through [`crate::peers`].

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::net::{IpAddr, SocketAddr, SocketAddrV4, SocketAddrV6, TcpListener};
use std::rc::Rc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use ctdb_config::{Nodes, Tunables};
use ctdb_io::{FrameConfig, SendQueue, WriteHalf};
use ctdb_protocol::constants::{CTDB_PORT, NODE_FLAGS_DELETED};
use ctdb_protocol::types::{LatencyCounter, NodeAndFlags, NodeMap, SockAddr, Statistics, Timeval};
use ctdb_protocol::{DecodeLimits, Operation, RawHeader};

use crate::calls::OFF_CALL_DB_ID;
use crate::cluster::node::Node;
use crate::db::{encode_message, Databases, OutMessage};
use crate::error::DaemonError;
use crate::event::eventd::EventBackend;
use crate::sys;

/// Statistics history entries kept (upstream's MAX_STAT_HISTORY).
pub const MAX_STAT_HISTORY: usize = 100;

/// The write side of a client connection.
pub type ClientQueue = SendQueue<WriteHalf<glommio::net::UnixStream>>;

/// A connected client as the rest of the daemon sees it.
pub struct ClientEntry {
    pub pid: i32,
    pub queue: Rc<ClientQueue>,
    pub srvids: HashSet<u64>,
    /// The client's REQ_CALLs not answered yet: reqid -> (when it came,
    /// database id), for `call_latency` (see [`Daemon::call_answered`]).
    pub calls: HashMap<u32, (Instant, u32)>,
}

/// Unanswered calls remembered per client at most; a client that sends more
/// without waiting for answers has the oldest forgotten (no latency for
/// those), so the table cannot grow without bound.
const MAX_TIMED_CALLS: usize = 4096;

/// This node's identity, from the nodes file.
#[derive(Debug, Clone)]
pub struct Identity {
    pub pnn: u32,
    /// The nodes file as last loaded (RELOAD_NODES_FILE replaces it).
    pub nodes: RefCell<Nodes>,
}

impl Identity {
    /// The PNN as upstream picks it: the configured node address (or
    /// `--listen`) if given, else the first address of the nodes file that
    /// can be bound here (so is a local address).
    pub fn resolve(nodes: Nodes, wanted: Option<IpAddr>) -> Result<Identity, DaemonError> {
        let bad = |why: String| DaemonError::BadOption {
            option: "nodes file",
            why,
        };
        if let Some(addr) = wanted {
            let pnn = nodes.pnn_of(addr).ok_or_else(|| {
                bad(format!(
                    "node address {addr} is not in {}",
                    nodes.path.display()
                ))
            })?;
            return Ok(Identity {
                pnn,
                nodes: RefCell::new(nodes),
            });
        }
        for e in nodes.entries.iter().filter(|e| !e.deleted) {
            if TcpListener::bind(SocketAddr::new(e.addr, 0)).is_ok() {
                return Ok(Identity {
                    pnn: e.pnn,
                    nodes: RefCell::new(nodes),
                });
            }
        }
        Err(bad(format!(
            "no address in {} is an address of this host",
            nodes.path.display()
        )))
    }

    pub fn addr(&self, pnn: u32) -> Option<IpAddr> {
        self.nodes.borrow().get(pnn).map(|e| e.addr)
    }

    /// Node map entries for the nodes file (the addresses of
    /// GET_NODEMAP).
    pub fn node_map(&self, flags_of: impl Fn(u32) -> u32) -> NodeMap {
        NodeMap {
            nodes: self
                .nodes
                .borrow()
                .entries
                .iter()
                .map(|e| NodeAndFlags {
                    pnn: e.pnn,
                    // A deleted node is DELETED plus what the caller's
                    // table says (the membership: DISCONNECTED as well,
                    // as upstream's node map; the nodes file: nothing).
                    flags: if e.deleted {
                        NODE_FLAGS_DELETED | flags_of(e.pnn)
                    } else {
                        flags_of(e.pnn)
                    },
                    addr: sockaddr(e.addr),
                })
                .collect(),
        }
    }
}

fn sockaddr(ip: IpAddr) -> SockAddr {
    match ip {
        IpAddr::V4(a) => SockAddr::V4(SocketAddrV4::new(a, CTDB_PORT)),
        IpAddr::V6(a) => SockAddr::V6(SocketAddrV6::new(a, CTDB_PORT, 0, 0)),
    }
}

/// The current time as upstream's `struct timeval`.
pub fn now_timeval() -> Timeval {
    Timeval::from_duration(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default(),
    )
}

/// Statistics as upstream keeps them: totals since start (or reset), the
/// current interval, and the history of intervals.
pub struct Stats {
    pub total: Statistics,
    pub current: Statistics,
    pub history: VecDeque<Statistics>,
}

impl Stats {
    fn new() -> Stats {
        let now = now_timeval();
        let fresh = Statistics {
            statistics_start_time: now,
            ..Default::default()
        };
        Stats {
            total: fresh,
            current: fresh,
            history: std::iter::repeat_n(Statistics::default(), MAX_STAT_HISTORY).collect(),
        }
    }

    /// Applies `f` to both the totals and the current interval.
    pub fn count(&mut self, f: impl Fn(&mut Statistics)) {
        f(&mut self.total);
        f(&mut self.current);
    }

    /// The StatHistoryInterval timer: the current interval goes into the
    /// history.
    pub fn rotate(&mut self) {
        let mut s = std::mem::take(&mut self.current);
        s.statistics_current_time = now_timeval();
        self.history.push_front(s);
        self.history.truncate(MAX_STAT_HISTORY);
        self.current.statistics_start_time = now_timeval();
    }

    pub fn reset(&mut self) {
        self.total = Statistics::default();
        self.total.statistics_start_time = now_timeval();
    }
}

/// Everything the control core knows.
pub struct Daemon {
    pub id: Identity,
    pub pid: i32,
    pub start_time: Timeval,
    pub start_instant: Instant,
    pub node: RefCell<Node>,
    pub dbs: RefCell<Databases>,
    pub tunables: RefCell<Tunables>,
    pub runstate: Cell<u32>,
    pub debug_level: Cell<u32>,
    pub stats: RefCell<Stats>,
    pub clients: RefCell<BTreeMap<u32, ClientEntry>>,
    next_client: Cell<u32>,
    pub reclock: Option<String>,
    /// The leader this node knows, `CTDB_UNKNOWN_PNN` before an election.
    pub leader: Cell<u32>,
    pub last_recovery_started: Cell<Timeval>,
    pub last_recovery_finished: Cell<Timeval>,
    /// When the last recovery finished (monotonic), for startup's wait.
    pub recovered_at: Cell<Option<Instant>>,
    pub events: Option<EventBackend>,
    pub notification_script: std::path::PathBuf,
    /// SHUTDOWN asked for (control or signal).
    pub shutdown: Cell<bool>,
    /// A recovery was requested (SET_RECMODE ACTIVE from a client, end of
    /// a ban, continue).
    pub recovery_wanted: Cell<bool>,
    /// The databases are frozen (upstream's node-wide freeze mode).
    pub frozen: Cell<bool>,
    /// The cluster mutex helper (CTDB_CLUSTER_MUTEX_HELPER or
    /// `helper_bindir/ctdb_mutex_fcntl_helper`) used for the cluster lock.
    pub mutex_helper: std::path::PathBuf,
    pub frame: FrameConfig,
    pub limits: DecodeLimits,
    /// The data cores, when there are any (two or more cores): volatile
    /// databases' REQ_CALLs are served there ([`crate::shards`]).
    pub data_cores: Option<Rc<crate::shards::DataCores>>,
    /// Registered tunnels: tunnel id → client id (TUNNEL_REGISTER).
    pub tunnels: RefCell<std::collections::HashMap<u64, u32>>,
    /// Upstream's `fast_start` (set in test mode): the startup event does
    /// not wait RerecoveryTimeout + 3 s after the first recovery.
    pub fast_start: bool,
    /// The link to the other nodes, once started ([`crate::peers`]).
    pub peers: crate::peers::PeersCell,
    /// In-daemon consumers of messages, by srvid ([`crate::peers::subscribe`]).
    pub subscribers: RefCell<
        std::collections::HashMap<u64, Vec<glommio::channels::local_channel::LocalSender<Vec<u8>>>>,
    >,
    /// Public addresses, interfaces and takeover runs ([`crate::takeover`]).
    pub takeover: crate::takeover::Takeover,
}

impl Daemon {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        id: Identity,
        node: Node,
        dbs: Databases,
        tunables: Tunables,
        debug_level: u32,
        reclock: Option<String>,
        events: Option<EventBackend>,
        notification_script: std::path::PathBuf,
    ) -> Daemon {
        Daemon {
            id,
            pid: sys::getpid(),
            start_time: now_timeval(),
            start_instant: Instant::now(),
            node: RefCell::new(node),
            dbs: RefCell::new(dbs),
            tunables: RefCell::new(tunables),
            runstate: Cell::new(1),
            debug_level: Cell::new(debug_level),
            stats: RefCell::new(Stats::new()),
            clients: RefCell::new(BTreeMap::new()),
            next_client: Cell::new(1),
            reclock,
            leader: Cell::new(ctdb_protocol::constants::CTDB_UNKNOWN_PNN),
            last_recovery_started: Cell::new(Timeval::default()),
            last_recovery_finished: Cell::new(Timeval::default()),
            recovered_at: Cell::new(None),
            events,
            notification_script,
            shutdown: Cell::new(false),
            recovery_wanted: Cell::new(false),
            frozen: Cell::new(false),
            mutex_helper: std::path::PathBuf::from("ctdb_mutex_fcntl_helper"),
            frame: FrameConfig::default(),
            limits: DecodeLimits::default(),
            data_cores: None,
            fast_start: false,
            tunnels: RefCell::new(std::collections::HashMap::new()),
            peers: crate::peers::PeersCell::new(),
            subscribers: RefCell::new(std::collections::HashMap::new()),
            takeover: crate::takeover::Takeover::default(),
        }
    }

    pub fn pnn(&self) -> u32 {
        self.id.pnn
    }

    pub fn generation(&self) -> u32 {
        self.node.borrow().vnnmap().generation
    }

    pub fn tunable(&self, name: &str, dflt: u32) -> u32 {
        self.tunables.borrow().get(name).unwrap_or(dflt)
    }

    pub fn num_clients(&self) -> u32 {
        self.clients.borrow().len() as u32
    }

    /// Registers a new client connection; its id.
    pub fn add_client(&self, pid: i32, queue: Rc<ClientQueue>) -> u32 {
        let id = self.next_client.get();
        self.next_client.set(id.wrapping_add(1).max(1));
        self.clients.borrow_mut().insert(
            id,
            ClientEntry {
                pid,
                queue,
                srvids: HashSet::new(),
                calls: HashMap::new(),
            },
        );
        id
    }

    /// A client's REQ_CALL came in (`pkt`); its answer is timed by
    /// [`Daemon::call_answered`].
    pub fn call_started(&self, client: u32, pkt: &[u8]) {
        let Ok(h) = RawHeader::parse(pkt) else {
            return;
        };
        if h.operation != Operation::ReqCall as u32 {
            return;
        }
        let db_id = pkt
            .get(OFF_CALL_DB_ID..OFF_CALL_DB_ID + 4)
            .map_or(0, |b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
        if let Some(c) = self.clients.borrow_mut().get_mut(&client) {
            if c.calls.len() >= MAX_TIMED_CALLS {
                c.calls.clear();
            }
            c.calls.insert(h.reqid, (Instant::now(), db_id));
        }
    }

    /// A packet `pkt` goes to client `client`: when it answers one of the
    /// client's calls (REPLY_CALL or REPLY_ERROR), the time since the call
    /// came goes into `call_latency`, and over `LogLatencyMs` (when not 0)
    /// into the log with upstream's line.
    pub fn call_answered(&self, client: u32, pkt: &[u8]) {
        let Ok(h) = RawHeader::parse(pkt) else {
            return;
        };
        if h.operation != Operation::ReplyCall as u32 && h.operation != Operation::ReplyError as u32
        {
            return;
        }
        let Some((since, db_id)) = self
            .clients
            .borrow_mut()
            .get_mut(&client)
            .and_then(|c| c.calls.remove(&h.reqid))
        else {
            return;
        };
        let secs = since.elapsed().as_secs_f64();
        if self.add_latency(|s| &mut s.call_latency, secs, "LogLatencyMs", 0) {
            let name = self
                .dbs
                .borrow()
                .find(db_id)
                .map(|db| db.name().to_string())
                .unwrap_or_default();
            tracing::warn!(
                "High latency {secs:.6}s for operation call_from_client_cb 2 on database {name}"
            );
        }
    }

    /// The recovery daemon took the cluster lock after `secs` seconds:
    /// `reclock_recd` in the statistics, and upstream's log line over
    /// `RecLockLatencyMs` (when not 0).
    pub fn reclock_latency(&self, secs: f64) {
        if !secs.is_finite() || secs < 0.0 {
            return;
        }
        if self.add_latency(|s| &mut s.reclock_recd, secs, "RecLockLatencyMs", 1000) {
            tracing::error!("High RECLOCK latency {secs:.6}s for operation recd reclock");
        }
    }

    /// Counts `secs` into the latency counter `which` picks (totals and
    /// current interval, as upstream's CTDB_UPDATE_RECLOCK_LATENCY); whether
    /// it is over the milliseconds of tunable `limit` (0: never), which
    /// upstream logs.
    fn add_latency(
        &self,
        which: fn(&mut Statistics) -> &mut LatencyCounter,
        secs: f64,
        limit: &str,
        dflt: u32,
    ) -> bool {
        self.stats.borrow_mut().count(|s| which(s).add(secs));
        let limit_ms = self.tunable(limit, dflt);
        limit_ms != 0 && secs * 1000.0 > f64::from(limit_ms)
    }

    pub fn remove_client(&self, id: u32) {
        self.clients.borrow_mut().remove(&id);
        self.tunnels.borrow_mut().retain(|_, c| *c != id);
        crate::takeover::node::client_gone(self, id);
    }

    pub fn client_has_srvid(&self, id: u32, srvid: u64) -> bool {
        self.clients
            .borrow()
            .get(&id)
            .is_some_and(|c| c.srvids.contains(&srvid))
    }

    /// Delivers a message (upstream's `ctdb_daemon_send_message`): to this
    /// node's handlers and clients, and over the wire to the other nodes
    /// it names ([`crate::peers::deliver`]).
    pub fn deliver(&self, m: &OutMessage) {
        crate::peers::deliver(self, m);
    }

    /// Hands a message for this node to every local client that
    /// registered its srvid.
    pub fn deliver_to_clients(&self, m: &OutMessage) {
        let mut pkt = Vec::new();
        encode_message(self.pnn(), self.generation(), m, &mut pkt);
        let mut sent = 0u32;
        for (id, c) in self.clients.borrow().iter() {
            if c.srvids.contains(&m.srvid) {
                if let Err(e) = c.queue.try_send(pkt.clone()) {
                    tracing::warn!(
                        "message for srvid 0x{:x} to client {id} (pid {}) dropped: {e}",
                        m.srvid,
                        c.pid
                    );
                } else {
                    sent += 1;
                }
            }
        }
        if sent > 0 {
            self.stats
                .borrow_mut()
                .count(|s| s.client_packets_sent += sent);
        }
    }

    /// Whether a client of process `pid` registered `srvid`
    /// (CHECK_PID_SRVID).
    pub fn pid_has_srvid(&self, pid: i32, srvid: u64) -> bool {
        self.clients
            .borrow()
            .values()
            .any(|c| c.pid == pid && c.srvids.contains(&srvid))
    }

    /// Whether a client of process `pid` is connected (PROCESS_EXISTS).
    pub fn pid_is_client(&self, pid: i32) -> bool {
        self.clients.borrow().values().any(|c| c.pid == pid)
    }

    /// Seconds since start.
    pub fn uptime_secs(&self) -> u64 {
        self.start_instant.elapsed().as_secs()
    }
}

pub fn is_broadcast(pnn: u32) -> bool {
    use ctdb_protocol::constants::{
        CTDB_BROADCAST_ACTIVE, CTDB_BROADCAST_ALL, CTDB_BROADCAST_CONNECTED, CTDB_MULTICAST,
    };
    matches!(
        pnn,
        CTDB_BROADCAST_ALL | CTDB_BROADCAST_ACTIVE | CTDB_BROADCAST_CONNECTED | CTDB_MULTICAST
    )
}
