//! What the test programs in `src/bin` share: upstream's common options
//! (`-s -t -n -d -i`, plus `-D -k -v -T` for the database programs), the
//! default socket path, waiting for the end of recovery, the cluster-wide
//! start barrier, and the steps several programs repeat (the `Locks:N`
//! loop, the fetch-lock counter, UPDATE_RECORD).
//!
//! Why: upstream's INTEGRATION scripts start one copy of a program on every
//! node with the same arguments and grep the lines they print; the programs
//! must accept the same options and meet at the same barrier (a JOIN
//! message from every node to node 0, then a SYNC broadcast) so that the
//! scripts run unchanged against our daemon and Samba's.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use clap::{Args, FromArgMatches};
use ctdb_engine::ltdb::LtdbHeader;
use ctdb_protocol::constants::{CTDB_BROADCAST_CONNECTED, CTDB_CURRENT_NODE};
use ctdb_protocol::types::{self, srvid, RecBufferBuilder};
use ctdb_protocol::ControlData;

use crate::client::{Client, Db};
use crate::error::{PerfError, Result};

/// Srvid node 0 collects JOIN messages on.
pub const MSG_ID_JOIN: u64 = srvid::TEST_RANGE | 0x1;
/// Srvid of the SYNC broadcast that releases every node.
pub const MSG_ID_SYNC: u64 = srvid::TEST_RANGE | 0x2;

/// Options every test program takes.
#[derive(Args, Debug, Clone)]
pub struct BasicOpts {
    /// CTDB socket path (default: $CTDB_SOCKET, else the run directory's
    /// ctdbd.socket).
    #[arg(short = 's', long = "socket", value_name = "filename")]
    pub socket: Option<PathBuf>,
    /// Time limit (in seconds).
    #[arg(short = 't', long = "timelimit", default_value_t = 10)]
    pub timelimit: u64,
    /// Number of cluster nodes.
    #[arg(short = 'n', long = "num-nodes", default_value_t = 1,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub num_nodes: u32,
    /// Debug level (ERR, WARNING, NOTICE, INFO, DEBUG or 0-10).
    #[arg(short = 'd', long = "debug", default_value = "ERR")]
    pub debug: String,
    /// Interactive output.
    #[arg(short = 'i', long = "interactive")]
    pub interactive: bool,
}

/// Database options of the database test programs.
#[derive(Args, Debug, Clone)]
pub struct DbOpts {
    /// CTDB database name.
    #[arg(short = 'D', long = "database")]
    pub database: Option<String>,
    /// Name of database key.
    #[arg(short = 'k', long = "key")]
    pub key: Option<String>,
    /// Value of database key.
    #[arg(short = 'v', long = "value")]
    pub value: Option<String>,
    /// CTDB database type (volatile, persistent or replicated).
    #[arg(short = 'T', long = "dbtype", default_value = "volatile")]
    pub dbtype: String,
}

/// The options of the database programs: [`BasicOpts`] and [`DbOpts`].
#[derive(Args, Debug, Clone)]
pub struct DbProgOpts {
    #[command(flatten)]
    pub basic: BasicOpts,
    #[command(flatten)]
    pub db: DbOpts,
}

/// The database type of `-T`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DbType {
    Volatile,
    Persistent,
    Replicated,
}

impl BasicOpts {
    /// Checks the debug level as upstream does; returns the socket path.
    pub fn verify(&self) -> Result<PathBuf> {
        const LEVELS: [&str; 5] = ["ERR", "WARNING", "NOTICE", "INFO", "DEBUG"];
        let ok = LEVELS.iter().any(|l| l.eq_ignore_ascii_case(&self.debug))
            || self.debug.parse::<u32>().is_ok_and(|n| n <= 10);
        if !ok {
            return Err(PerfError::Args(format!(
                "Invalid debug string '{}'",
                self.debug
            )));
        }
        Ok(self.socket.clone().unwrap_or_else(default_socket))
    }

    /// The end of the run: now + `-t` seconds.
    pub fn deadline(&self) -> Instant {
        Instant::now() + Duration::from_secs(self.timelimit)
    }
}

impl DbOpts {
    /// Database name, key and type, with upstream's messages when missing.
    pub fn verify(&self) -> Result<(String, String, DbType)> {
        let db = self
            .database
            .clone()
            .ok_or_else(|| PerfError::Args("Please specify database".into()))?;
        let key = self
            .key
            .clone()
            .ok_or_else(|| PerfError::Args("Please specify key name".into()))?;
        let t = match self.dbtype.as_str() {
            "volatile" => DbType::Volatile,
            "persistent" => DbType::Persistent,
            "replicated" => DbType::Replicated,
            other => {
                return Err(PerfError::Args(format!(
                    "Invalid database type '{other}' (volatile, persistent or replicated)"
                )))
            }
        };
        Ok((db, key, t))
    }
}

/// Where the client library looks for ctdbd's socket: `$CTDB_SOCKET`, else
/// `$CTDB_BASE/run/ctdbd.socket` in test mode, else the packaged run
/// directory.
pub fn default_socket() -> PathBuf {
    if let Some(s) = std::env::var_os("CTDB_SOCKET") {
        return PathBuf::from(s);
    }
    if std::env::var_os("CTDB_TEST_MODE").is_some() {
        if let Some(b) = std::env::var_os("CTDB_BASE") {
            return PathBuf::from(b).join("run/ctdbd.socket");
        }
    }
    PathBuf::from("/var/run/ctdb/ctdbd.socket")
}

/// Connects as the programs do: client init, then wait until the daemon
/// is out of recovery (GET_RECMODE normal, asked once a second, at most
/// two minutes).
pub fn connect(socket: &std::path::Path) -> Result<Client> {
    let mut c = Client::connect(socket)?;
    let until = Instant::now() + Duration::from_secs(120);
    loop {
        if c.recmode()? == 0 {
            return Ok(c);
        }
        if Instant::now() >= until {
            return Err(PerfError::Timeout {
                what: "end of recovery".into(),
            });
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// The cluster-wide start barrier of upstream's test programs. Node 0
/// listens for JOIN and prints "Waiting for cluster"; every node sends its
/// pnn to node 0 once a second until SYNC arrives; when node 0 has heard
/// from all `num_nodes` it broadcasts SYNC. Gives up after 30 seconds.
/// Messages for other srvids that arrive meanwhile are kept for the caller.
pub fn cluster_wait(c: &mut Client, num_nodes: u32) -> Result<()> {
    let pnn = c.pnn();
    let limit = Instant::now() + Duration::from_secs(30);
    let mut ready = vec![false; num_nodes as usize];
    let mut join_done = false;
    if pnn == 0 {
        c.register_srvid(MSG_ID_JOIN)?;
        println!("Waiting for cluster");
    }
    c.register_srvid(MSG_ID_SYNC)?;
    let mut others = Vec::new();
    let mut next_join = Instant::now() + Duration::from_secs(1);
    let result = loop {
        let now = Instant::now();
        if now >= limit {
            break Err(PerfError::Timeout {
                what: format!("cluster of {num_nodes} nodes to synchronise"),
            });
        }
        if now >= next_join {
            c.send_message(0, MSG_ID_JOIN, &pnn.to_le_bytes())?;
            next_join = now + Duration::from_secs(1);
        }
        let Some((id, data)) = c.recv_message(next_join.min(limit))? else {
            continue;
        };
        if id == MSG_ID_SYNC {
            c.deregister_srvid(MSG_ID_SYNC)?;
            break Ok(());
        }
        if id != MSG_ID_JOIN {
            others.push((id, data));
            continue;
        }
        let Ok(b) = <[u8; 4]>::try_from(data.as_slice()) else {
            continue;
        };
        let from = u32::from_le_bytes(b) as usize;
        if from >= ready.len() {
            continue;
        }
        ready[from] = true;
        if !join_done && ready.iter().all(|r| *r) {
            join_done = true;
            c.deregister_srvid(MSG_ID_JOIN)?;
            c.send_message(CTDB_BROADCAST_CONNECTED, MSG_ID_SYNC, &[])?;
        }
    };
    c.requeue_messages(others);
    result
}

/// [`connect`], a control timeout of `-t` seconds (at least one), and the
/// database attached: how the single-record database programs start.
pub fn connect_attach(
    socket: &Path,
    timelimit: u64,
    dbname: &str,
    persistent: bool,
) -> Result<(Client, Db)> {
    let mut c = connect(socket)?;
    c.set_timeout(Duration::from_secs(timelimit.max(1)));
    let db = c.attach(dbname, persistent)?;
    Ok((c, db))
}

/// The loop of fetch_loop and fetch_readonly_loop: runs `step` until `end`;
/// node 0 (`pnn`) shows `Locks:N`, N being what `step` last returned, every
/// second, and every node prints `Locks:N` at the end.
pub fn locks_loop(pnn: u32, end: Instant, mut step: impl FnMut() -> Result<u64>) -> Result<()> {
    let mut tick = Instant::now() + Duration::from_secs(1);
    let locks = loop {
        let locks = step()?;
        let now = Instant::now();
        if now >= end {
            break locks;
        }
        if pnn == 0 && now >= tick {
            print!("Locks:{locks}\r");
            let _ = std::io::stdout().flush();
            tick = now + Duration::from_secs(1);
        }
    };
    println!("Locks:{locks}");
    Ok(())
}

/// One step of fetch_loop and fetch_loop_key: fetch-locks `key`, adds one
/// to the 32-bit counter it holds (`last` if it holds none) and stores it
/// back; returns the new count.
pub fn fetch_lock_increment(c: &mut Client, db: &mut Db, key: &[u8], last: u32) -> Result<u32> {
    let (rec, _) = c.fetch_lock(db, key)?;
    let locks = match <[u8; 4]>::try_from(rec.data.as_slice()) {
        Ok(b) => u32::from_le_bytes(b),
        Err(_) => last,
    }
    .wrapping_add(1);
    let r = db.store_locked(key, &rec.header, &locks.to_le_bytes());
    db.unlock(key)?;
    r?;
    Ok(locks)
}

/// Writes `key` = `value` of `db` through the UPDATE_RECORD control on the
/// local daemon, with `header`'s dmaster and flags and the given rsn (what
/// update_record and update_record_persistent do).
pub fn update_record(
    c: &mut Client,
    db: &Db,
    key: &[u8],
    header: &LtdbHeader,
    rsn: u64,
    value: &[u8],
) -> Result<()> {
    let header = types::LtdbHeader {
        rsn,
        dmaster: header.dmaster,
        reserved1: header.reserved1,
        flags: header.flags.0,
    };
    let mut rb = RecBufferBuilder::new(db.id);
    rb.add(0, Some(&header), key, value);
    c.control_ok(
        CTDB_CURRENT_NODE,
        ControlData::UpdateRecord(rb.as_rec_buffer()),
    )
    .map_err(|e| PerfError::Cluster(format!("update record failed: {e}")))?;
    Ok(())
}

/// A test program's `main`: parses its options `T` ([`BasicOpts`] or
/// [`DbProgOpts`]) under its name and description, with clap's help and
/// errors as `#[derive(Parser)]` gives them, then runs `body` as [`run`]
/// does.
pub fn main<T: Args + FromArgMatches>(
    name: &'static str,
    about: &'static str,
    body: impl FnOnce(T) -> Result<()>,
) -> std::process::ExitCode {
    // The description is set after the arguments: deriving `Args` gives a
    // command the struct's doc comment as its description.
    let mut cmd = T::augment_args(clap::Command::new(name)).about(about);
    let opts = cmd
        .try_get_matches_from_mut(std::env::args_os())
        .and_then(|mut m| T::from_arg_matches_mut(&mut m))
        .unwrap_or_else(|e| e.format(&mut cmd).exit());
    run(name, || body(opts))
}

/// Runs a program's body: prints an error as upstream's programs do (on
/// stderr, naming the program) and turns it into exit status 1.
pub fn run(name: &str, body: impl FnOnce() -> Result<()>) -> std::process::ExitCode {
    match body() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(PerfError::Args(m)) => {
            eprintln!("Error: {m}");
            std::process::ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("{name}: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
