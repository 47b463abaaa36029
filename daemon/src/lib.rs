//! ctdbd, the clustered TDB daemon: thread-per-core on glommio.
//!
//! # Layout
//!
//! The daemon runs one pinned glommio executor per core (see [`runtime`]
//! for the table and the messages between cores):
//!
//! * **core 0, the control core**: the client socket (accepting and serving
//!   `ctdb`, smbd and other local clients, [`client`]), controls, and, as
//!   they land, election, recovery, public IP takeover, event scripts and
//!   the forwarding of record migrations to the owning data core;
//! * **cores 1..N-1, data cores**: each owns one shard, that is its share
//!   of every database's hash chains, with its own io_uring sockets. Records
//!   are hash-partitioned across shards; a record is only ever touched by
//!   its shard's core, so the hot path takes no locks between cores.
//!
//! With a single core, core 0 does both. Cores exchange only explicit
//! messages through bounded glommio channels.
//!
//! Besides the cores there are two plain helper threads that never touch
//! daemon state: the accept thread (blocks in `accept(2)`, reads peer
//! credentials, hands connections to the control core) and the signal
//! thread (`sigwait` for SIGTERM/SIGINT/SIGHUP).
//!
//! Every core runs under SCHED_FIFO by default, as upstream ctdbd does
//! (opt out with `realtime scheduling = false` or `--nosetsched`); idle
//! executors park in the kernel, so this does not cost a CPU per core.
//!
//! # Modules
//!
//! * [`options`]: command line and derived settings;
//! * [`logging`]: upstream-format log lines through `tracing`;
//! * [`process`]: daemonising, PID file, signals;
//! * [`runtime`]: cores, pinning, scheduling, cross-core messages;
//! * [`client`]: the Unix client socket;
//! * [`state`]: the control core's daemon state (identity, node, databases,
//!   tunables, clients, statistics);
//! * [`controls`]: what a client packet does;
//! * [`shards`]: which client calls the data cores serve, and keeping
//!   their shards in step with the database registry;
//! * [`shard_peers`]: a data core's own transport lanes and migrator
//!   (record calls between nodes without the control core);
//! * [`monitor`]: run states, events, monitoring, shutdown;
//! * [`recoverd_driver`]: the recovery daemon: the [`cluster`] machines
//!   (election, LEADER broadcast, recovery, bans) driven over [`peers`];
//! * [`takeover`]: public addresses, their controls and events, and the
//!   leader's takeover runs;
//! * `sys`: the only module with `unsafe`, thin wrappers over libc.

pub mod calls;
pub mod client;
pub mod cluster;
pub mod controls;
pub mod db;
pub mod error;
pub mod event;
pub mod lockwait;
pub mod logging;
pub mod memreport;
pub mod monitor;
pub mod nodes_reload;
pub mod options;
pub mod peers;
pub mod process;
pub mod recmode_lock;
pub mod recoverd_driver;
pub mod runtime;
pub mod shard_peers;
pub mod shards;
pub mod state;
pub mod sys;
pub mod takeover;
pub mod transport;
pub mod vacuumer;

pub use error::DaemonError;
