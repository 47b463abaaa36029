//! ctdb-db-test: upstream's database test tool for the vacuuming tests
//! (INTEGRATION database/vacuum.*.sh, database/scripts/local.bash):
//! `get-lmaster KEY`, `fetch-local-delete DB KEY`, `local-lock DB KEY`,
//! `local-read DB KEY`, `vacuum DB [full]`, with its `-d -n -t` options,
//! its output lines and its exit statuses (errno values).
//!
//! `local-lock` keeps the chain lock in a child process, as upstream's
//! forked child does: here the program runs itself again with a hidden
//! command, the child reports success on a pipe, the parent prints
//! `OK <child pid>` and exits; the child holds the lock for 120 seconds or
//! until killed.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, ExitCode, Stdio};
use std::time::Duration;

use clap::{Parser, Subcommand};
use ctdb_perf::client::Client;
use ctdb_perf::error::PerfError;
use ctdb_perf::testprog;
use ctdb_protocol::constants::{
    CTDB_CURRENT_NODE, CTDB_REC_FLAG_AUTOMATIC, CTDB_REC_FLAG_MIGRATED_WITH_DATA,
    CTDB_REC_FLAG_VACUUM_MIGRATED, CTDB_REC_RO_HAVE_DELEGATIONS, CTDB_REC_RO_HAVE_READONLY,
};
use ctdb_protocol::types::{CtdbString, DbIdMap, DbVacuum, VnnMap};
use ctdb_protocol::{ControlData, Wire};

const ENOENT: u8 = 2;
const EINVAL: u8 = 22;
/// Upstream's tool exits with the errno of a failed control: a control
/// that got no reply in time exits 110 (vacuum.031..034 wait for it).
const ETIMEDOUT: u8 = 110;
const RO_REVOKING_READONLY: u32 = 0x0400_0000;
const RO_REVOKE_COMPLETE: u32 = 0x0800_0000;
/// Database flags that make a database non-volatile (persistent, replicated).
const NOT_VOLATILE: u8 = 0x01 | 0x04;

#[derive(Parser, Debug)]
#[command(name = "ctdb-db-test", about = "CTDB database test tool")]
struct Opts {
    /// Debug level (ERROR|WARNING|NOTICE|INFO|DEBUG).
    #[arg(short = 'd', long = "debug", default_value = "ERROR")]
    debug: String,
    /// Node number the controls go to.
    #[arg(short = 'n', long = "node", default_value_t = CTDB_CURRENT_NODE)]
    node: u32,
    /// Control time limit in seconds.
    #[arg(short = 't', long = "timelimit", default_value_t = 60)]
    timelimit: u64,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Print lmaster for key.
    #[command(name = "get-lmaster")]
    GetLmaster { key: String },
    /// Fetch record and delete from local database.
    #[command(name = "fetch-local-delete")]
    FetchLocalDelete { db: String, key: String },
    /// Lock a record in a local database.
    #[command(name = "local-lock")]
    LocalLock { db: String, key: String },
    /// Read a record from local database.
    #[command(name = "local-read")]
    LocalRead { db: String, key: String },
    /// Vacuum a database.
    Vacuum {
        db: String,
        #[arg(value_parser = ["full"])]
        full: Option<String>,
    },
    /// Internal: the child of local-lock.
    #[command(name = "__hold-lock", hide = true)]
    HoldLock { db: String, key: String },
}

/// A failure with the exit status upstream's tool gives it.
struct Fail(u8, String);

/// The exit status upstream's tool gives a client error: its errno.
fn errno_of(e: &PerfError) -> u8 {
    match e {
        PerfError::Timeout { .. } => ETIMEDOUT,
        PerfError::Io { source, .. } => source
            .raw_os_error()
            .and_then(|n| u8::try_from(n).ok())
            .filter(|&n| n != 0)
            .unwrap_or(1),
        _ => 1,
    }
}

impl From<PerfError> for Fail {
    fn from(e: PerfError) -> Fail {
        Fail(errno_of(&e), e.to_string())
    }
}

type Res<T> = std::result::Result<T, Fail>;

fn connect(o: &Opts) -> Res<Client> {
    let socket = testprog::default_socket();
    let mut c = Client::connect(&socket).map_err(|e| {
        Fail(
            1,
            format!(
                "Failed to connect to CTDB daemon ({}): {e}",
                socket.display()
            ),
        )
    })?;
    c.set_timeout(Duration::from_secs(o.timelimit.max(1)));
    Ok(c)
}

/// Finds `arg` (a name or a 0x database id) in the node's dbmap: id, name
/// and flags.
fn db_exists(c: &mut Client, node: u32, arg: &str) -> Res<(u32, String, u8)> {
    let r = c.control_ok(node, ControlData::GetDbmap)?;
    let map = DbIdMap::from_bytes(&r.data).map_err(|e| Fail(1, format!("GET_DBMAP reply: {e}")))?;
    let name_of = |c: &mut Client, id: u32| -> Res<String> {
        let r = c.control_ok(node, ControlData::GetDbname(id))?;
        Ok(CtdbString::from_bytes_lenient(&r.data)
            .as_str()
            .unwrap_or_default()
            .to_string())
    };
    let not_found = || Fail(ENOENT, format!("No database matching '{arg}' found"));
    if let Some(hex) = arg.strip_prefix("0x") {
        let id = u32::from_str_radix(hex, 16).map_err(|_| not_found())?;
        let d = map
            .dbs
            .iter()
            .find(|d| d.db_id == id)
            .ok_or_else(not_found)?;
        let name = name_of(c, id)?;
        return Ok((id, name, d.flags));
    }
    for d in &map.dbs {
        if name_of(c, d.db_id)? == arg {
            return Ok((d.db_id, arg.to_string(), d.flags));
        }
    }
    Err(not_found())
}

fn volatile_db(c: &mut Client, node: u32, arg: &str) -> Res<(u32, String)> {
    let (id, name, flags) = db_exists(c, node, arg)?;
    if flags & NOT_VOLATILE != 0 {
        return Err(Fail(
            EINVAL,
            format!("DB {name} is not a volatile database"),
        ));
    }
    Ok((id, name))
}

fn dump(name: &str, data: &[u8]) -> String {
    let mut s = format!("{name}({}) = \"", data.len());
    for &b in data {
        if (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\' {
            s.push(b as char);
        } else {
            s.push_str(&format!("\\{b:02X}"));
        }
    }
    s.push('"');
    s
}

fn flags_line(flags: u32) -> String {
    let mut s = format!("flags: 0x{flags:08x}");
    for (bit, name) in [
        (CTDB_REC_FLAG_MIGRATED_WITH_DATA, " MIGRATED_WITH_DATA"),
        (CTDB_REC_FLAG_VACUUM_MIGRATED, " VACUUM_MIGRATED"),
        (CTDB_REC_FLAG_AUTOMATIC, " AUTOMATIC"),
        (CTDB_REC_RO_HAVE_DELEGATIONS, " RO_HAVE_DELEGATIONS"),
        (CTDB_REC_RO_HAVE_READONLY, " RO_HAVE_READONLY"),
        (RO_REVOKING_READONLY, " RO_REVOKING_READONLY"),
        (RO_REVOKE_COMPLETE, " RO_REVOKE_COMPLETE"),
    ] {
        if flags & bit != 0 {
            s.push_str(name);
        }
    }
    s
}

fn run(o: &Opts) -> Res<()> {
    match &o.cmd {
        Cmd::GetLmaster { key } => {
            let mut c = connect(o)?;
            let r = c.control_ok(CTDB_CURRENT_NODE, ControlData::Getvnnmap)?;
            let map = VnnMap::from_bytes(&r.data)
                .map_err(|e| Fail(1, format!("GETVNNMAP reply: {e}")))?;
            if map.map.is_empty() {
                return Err(Fail(1, "Control GETVNN_MAP returned an empty map".into()));
            }
            let h = ctdb_engine::hash::jenkins_hash(key.as_bytes()) as usize;
            println!("{}", map.map[h % map.map.len()]);
            Ok(())
        }
        Cmd::FetchLocalDelete { db, key } => {
            let mut c = connect(o)?;
            let (_, name) = volatile_db(&mut c, o.node, db)?;
            let mut d = c.attach(&name, false)?;
            let key = key.as_bytes();
            let (rec, _) = c
                .fetch_lock(&mut d, key)
                .map_err(|e| Fail(1, format!("Failed to fetch record for key: {e}")))?;
            let r = d.store_locked(key, &rec.header, &[]);
            d.unlock(key)?;
            r?;
            Ok(())
        }
        Cmd::LocalRead { db, key } => {
            let mut c = connect(o)?;
            let (_, name) = volatile_db(&mut c, o.node, db)?;
            let mut d = c.attach(&name, false)?;
            let Some(v) = d.raw_fetch(key.as_bytes())? else {
                return Err(Fail(1, format!("No record for key {key}")));
            };
            let Some((h, data)) = ctdb_engine::ltdb::LtdbHeader::split(&v) else {
                return Err(Fail(1, format!("Invalid record for key {key}")));
            };
            println!("dmaster: {}", h.dmaster);
            println!("rsn: {}", h.rsn);
            println!("{}", flags_line(h.flags.0));
            println!("{}", dump("data", data));
            Ok(())
        }
        Cmd::Vacuum { db, full } => {
            let mut c = connect(o)?;
            let (id, _) = volatile_db(&mut c, o.node, db)?;
            let v = DbVacuum {
                db_id: id,
                full_vacuum_run: full.is_some(),
            };
            let r = c.control(o.node, ControlData::DbVacuum(v)).map_err(|e| {
                Fail(
                    errno_of(&e),
                    format!("Control DB_VACUUM failed to node {}: {e}", o.node),
                )
            })?;
            if r.status != 0 {
                let code = u8::try_from(r.status.unsigned_abs().min(255)).unwrap_or(1);
                return Err(Fail(
                    code.max(1),
                    format!("Control DB_VACUUM failed, ret={}", r.status),
                ));
            }
            Ok(())
        }
        Cmd::LocalLock { db, key } => {
            let mut c = connect(o)?;
            let (_, name) = volatile_db(&mut c, o.node, db)
                .map_err(|Fail(_, m)| Fail(1, format!("DB {db} not attached: {m}")))?;
            drop(c);
            let exe =
                std::env::current_exe().map_err(|e| Fail(1, format!("own executable: {e}")))?;
            let mut child = Command::new(exe)
                .args(["-t", &o.timelimit.to_string(), "__hold-lock", &name, key])
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .map_err(|e| Fail(1, format!("Failed to start the lock holder: {e}")))?;
            let pid = child.id();
            let mut line = String::new();
            if let Some(out) = child.stdout.take() {
                let _ = BufReader::new(out).read_line(&mut line);
            }
            let status: i32 = line.trim().parse().unwrap_or(i32::from(EINVAL));
            if status == 0 {
                println!("OK {pid}");
                // The holder lives on; it is the caller's to kill.
                std::mem::forget(child);
                Ok(())
            } else {
                println!("FAIL {status}");
                let _ = child.kill();
                let _ = child.wait();
                Err(Fail(u8::try_from(status).unwrap_or(1), String::new()))
            }
        }
        Cmd::HoldLock { db, key } => {
            let mut c = connect(o)?;
            let mut d = c.attach(db, false)?;
            let mut out = std::io::stdout();
            if let Err(e) = d.lock(key.as_bytes()) {
                let _ = writeln!(out, "{}", EINVAL);
                return Err(e.into());
            }
            let _ = writeln!(out, "0");
            let _ = out.flush();
            std::thread::sleep(Duration::from_secs(120));
            Err(Fail(1, String::new()))
        }
    }
}

fn main() -> ExitCode {
    let o = Opts::parse();
    match run(&o) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Fail(code, msg)) => {
            if !msg.is_empty() {
                eprintln!("{msg}");
            }
            ExitCode::from(code)
        }
    }
}
