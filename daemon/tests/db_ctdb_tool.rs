//! Debian's stock `/usr/bin/ctdb` against the database layer, through
//! [`Databases::serve_client_packet`] (the same entry point the daemon's
//! client socket uses): attach, getdbmap, writekey/readkey (REQ_CALL
//! migration, then the tool writes the file itself), pstore/pfetch/ptrans
//! (g_lock + TRANS3_COMMIT), catdb (traverse messages), backupdb/restoredb
//! (traverse; freeze, wipe, push messages, confirm), wipedb, getdbseqnum,
//! dbstatistics. Results are checked through the tool's output and with
//! `tdbdump` / `ltdbtool` on the files.
//!
//! The socket side here is a small blocking stand-in for the daemon's
//! client code: it answers the few node controls the tool asks on the way
//! (pnn, nodemap, vnnmap, recovery mode, srvid registration) and hands
//! everything else to the database layer.

use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ctdb_daemon::db::{ControlCtx, Databases, DbConfig};
use ctdb_protocol::types::{srvid, NodeAndFlags, NodeMap, SockAddr, VnnMap};
use ctdb_protocol::{
    frame_length, ControlReplyData, DecodeLimits, Header, MessageData, Opcode, Packet, Payload,
    ReplyControl, ReqMessage, Wire,
};

const CTDB: &str = "/usr/bin/ctdb";
const GENERATION: u32 = 0x1234;

struct Daemon {
    dir: PathBuf,
    socket: PathBuf,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Daemon {
    fn start(tag: &str) -> Daemon {
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "ctdb-dbs-tool-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut cfg = DbConfig::new(
            0,
            &dir.join("volatile"),
            &dir.join("persistent"),
            &dir.join("state"),
        );
        cfg.hash_size = 1021;
        let socket = dir.join("ctdbd.socket");
        let listener = UnixListener::bind(&socket).unwrap();
        listener.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut dbs = Databases::open(cfg).expect("open databases");
            while !stop2.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((conn, _)) => serve(conn, &mut dbs),
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Daemon {
            dir,
            socket,
            stop,
            thread: Some(thread),
        }
    }

    fn ctdb(&self, args: &[&str]) -> (bool, String, String) {
        let mut child = Command::new(CTDB)
            .args(args)
            .env("CTDB_SOCKET", &self.socket)
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run /usr/bin/ctdb (Debian package ctdb)");
        let start = Instant::now();
        let deadline = start + Duration::from_secs(30);
        while child.try_wait().unwrap().is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("ctdb {args:?} did not finish in 30 s");
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let out = child.wait_with_output().unwrap();
        eprintln!("ctdb {args:?}: {:?}", start.elapsed());
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// `ctdb ARGS`, which must succeed; its stdout.
    fn ok(&self, args: &[&str]) -> String {
        let (ok, out, err) = self.ctdb(args);
        assert!(ok, "ctdb {args:?} failed:\nstdout: {out}\nstderr: {err}");
        out
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn read_packet(conn: &mut UnixStream) -> Option<Vec<u8>> {
    let mut len = [0u8; 4];
    conn.read_exact(&mut len).ok()?;
    let n = frame_length(&len, &DecodeLimits::default()).ok()??;
    let mut buf = vec![0u8; n];
    buf[..4].copy_from_slice(&len);
    conn.read_exact(&mut buf[4..]).ok()?;
    Some(buf)
}

/// One client connection, served to its end.
fn serve(mut conn: UnixStream, dbs: &mut Databases) {
    conn.set_nonblocking(false).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let limits = DecodeLimits::default();
    let mut srvids: HashSet<u64> = HashSet::new();
    let base = ControlCtx::default();
    let mut out = Vec::new();
    while let Some(buf) = read_packet(&mut conn) {
        let Ok(pkt) = Packet::decode(&buf, &limits) else {
            return;
        };
        out.clear();
        let own = srvids.clone();
        let mut served =
            dbs.serve_client_packet(&pkt, &base, GENERATION, &|id| own.contains(&id), &mut out);
        // A busy chain lock: hand the packet in again shortly.
        while served.as_ref().is_some_and(|s| s.retry) {
            std::thread::sleep(Duration::from_millis(1));
            served =
                dbs.serve_client_packet(&pkt, &base, GENERATION, &|id| own.contains(&id), &mut out);
        }
        if served.is_none() {
            if let Payload::ReqControl(c) = &pkt.payload {
                let (status, data) = node_control(c.opcode, c.srvid, &mut srvids);
                if !c.noreply() {
                    let reply = ReplyControl {
                        status,
                        data: ctdb_protocol::Data::Raw(&data),
                        errmsg: &[],
                    };
                    let hdr = Header::new(GENERATION, pkt.header.srcnode, 0, pkt.header.reqid);
                    Packet::new(hdr, Payload::ReplyControl(reply))
                        .encode(&mut out)
                        .unwrap();
                }
                if c.opcode == Opcode::RegisterSrvid as u32 && c.srvid == srvid::LEADER {
                    // What the leader's recovery daemon broadcasts every
                    // second; `ctdb wipedb` and `restoredb` wait for it.
                    let msg = ReqMessage::typed(srvid::LEADER, MessageData::Leader(0));
                    Packet::new(Header::new(GENERATION, 0, 0, 0), Payload::ReqMessage(msg))
                        .encode(&mut out)
                        .unwrap();
                }
            }
        }
        if !out.is_empty() && conn.write_all(&out).is_err() {
            return;
        }
    }
}

/// The node controls the tool asks besides the database ones.
fn node_control(opcode: u32, srvid: u64, srvids: &mut HashSet<u64>) -> (i32, Vec<u8>) {
    use ctdb_protocol::Opcode as O;
    let Some(op) = O::from_u32(opcode) else {
        return (-1, Vec::new());
    };
    let data = |d: ControlReplyData<'_>| {
        let mut v = Vec::new();
        d.push(&mut v);
        v
    };
    match op {
        O::GetPnn | O::GetRecmode | O::SetRecmode | O::Ping => (0, Vec::new()),
        O::RegisterSrvid => {
            srvids.insert(srvid);
            (0, Vec::new())
        }
        O::DeregisterSrvid => {
            srvids.remove(&srvid);
            (0, Vec::new())
        }
        O::GetNodemap => {
            let addr = SockAddr::V4(SocketAddrV4::new(Ipv4Addr::new(127, 0, 0, 1), 4379));
            let map = NodeMap {
                nodes: vec![NodeAndFlags {
                    pnn: 0,
                    flags: 0,
                    addr,
                }],
            };
            (0, data(ControlReplyData::GetNodemap(map)))
        }
        O::Getvnnmap => (
            0,
            data(ControlReplyData::Getvnnmap(VnnMap {
                generation: GENERATION,
                map: vec![0],
            })),
        ),
        O::GetRunstate => (0, 5u32.to_bytes()),
        O::ProcessExists | O::CheckPidSrvid => (0, Vec::new()),
        _ => (-1, Vec::new()),
    }
}

fn have_tools() -> bool {
    Path::new(CTDB).exists()
}

fn dump(path: &Path) -> String {
    let out = Command::new("tdbdump").arg(path).output().unwrap();
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn ltdbdump(path: &Path) -> String {
    let out = Command::new("/usr/bin/ltdbtool")
        .args(["dump", "-p"])
        .arg(path)
        .output()
        .unwrap();
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn stock_ctdb_tool_volatile_commands() {
    if !have_tools() {
        eprintln!("skipped: {CTDB} not installed");
        return;
    }
    let d = Daemon::start("vol");
    assert_eq!(d.ok(&["attach", "test.tdb"]), "");
    let out = d.ok(&["getdbmap"]);
    assert!(out.contains("Number of databases:1"), "{out}");
    assert!(out.contains("name:test.tdb"), "{out}");
    assert!(out.contains("volatile/test.tdb.0"), "{out}");

    d.ok(&["writekey", "test.tdb", "key1", "value1"]);
    d.ok(&["writekey", "test.tdb", "key2", "value2"]);
    let out = d.ok(&["readkey", "test.tdb", "key1"]);
    assert!(out.contains("Data: size:6 ptr:[value1]"), "{out}");
    d.ok(&["writekey", "test.tdb", "key1", "changed"]);
    let out = d.ok(&["readkey", "test.tdb", "key1"]);
    assert!(out.contains("ptr:[changed]"), "{out}");

    let path = d.dir.join("volatile/test.tdb.0");
    let ld = ltdbdump(&path);
    // Migrated by the daemon (rsn 2, dmaster 0), then written by the tool.
    assert_eq!(ld.matches("rsn: 2").count(), 2, "{ld}");
    assert!(ld.contains("data(7) = \"changed\""), "{ld}");

    let out = d.ok(&["catdb", "test.tdb"]);
    assert!(out.contains("Dumped 2 records"), "{out}");
    assert!(out.contains("key(4) = \"key2\""), "{out}");
    assert!(out.contains("data(6) = \"value2\""), "{out}");

    let out = d.ok(&["dbstatistics", "test.tdb"]);
    assert!(out.contains("DB Statistics test.tdb"), "{out}");
    assert!(out.contains("Num Hot Keys:     10"), "{out}");

    // backupdb, wipedb, restoredb.
    let backup = d.dir.join("test.backup");
    d.ok(&["backupdb", "test.tdb", backup.to_str().unwrap()]);
    let out = d.ok(&["wipedb", "test.tdb"]);
    assert!(out.contains("Database test.tdb wiped"), "{out}");
    assert_eq!(dump(&path), "");
    let out = d.ok(&["catdb", "test.tdb"]);
    assert!(out.contains("Dumped 0 records"), "{out}");
    d.ok(&["restoredb", backup.to_str().unwrap()]);
    let out = d.ok(&["catdb", "test.tdb"]);
    assert!(out.contains("Dumped 2 records"), "{out}");
    let out = d.ok(&["readkey", "test.tdb", "key2"]);
    assert!(out.contains("ptr:[value2]"), "{out}");

    // deletekey: the tool stores an empty record and schedules it for
    // deletion (a NOREPLY control); readkey then finds no data.
    d.ok(&["deletekey", "test.tdb", "key2"]);
    let out = d.ok(&["readkey", "test.tdb", "key2"]);
    assert!(out.contains("Data: size:0"), "{out}");
    let out = d.ok(&["catdb", "test.tdb"]);
    assert!(out.contains("Dumped 1 records"), "{out}");
}

#[test]
fn stock_ctdb_tool_persistent_commands() {
    if !have_tools() {
        eprintln!("skipped: {CTDB} not installed");
        return;
    }
    let d = Daemon::start("pers");
    assert_eq!(d.ok(&["attach", "p.tdb", "persistent"]), "");
    d.ok(&["pstore", "p.tdb", "k1", "v1"]);
    let out = d.ok(&["pfetch", "p.tdb", "k1"]);
    assert_eq!(out.trim(), "v1");
    let out = d.ok(&["getdbseqnum", "p.tdb"]);
    assert_eq!(out.trim(), "0x1");

    // ptrans: several records in one TRANS3_COMMIT.
    let mut child = Command::new(CTDB)
        .args(["ptrans", "p.tdb"])
        .env("CTDB_SOCKET", &d.socket)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"\"k2\" \"v2\"\n\"k3\" \"v3\"\n")
        .unwrap();
    let o = child.wait_with_output().unwrap();
    assert!(
        o.status.success(),
        "ptrans: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(d.ok(&["pfetch", "p.tdb", "k3"]).trim(), "v3");
    assert_eq!(d.ok(&["getdbseqnum", "p.tdb"]).trim(), "0x2");

    let path = d.dir.join("persistent/p.tdb.0");
    let td = dump(&path);
    for k in ["k1", "k2", "k3"] {
        assert!(td.contains(&format!("key(2) = \"{k}\"")), "{td}");
    }
    let ld = ltdbdump(&path);
    assert!(ld.contains("__db_sequence_number__"), "{ld}");
    assert!(ld.contains("rsn: 2"), "{ld}");

    let out = d.ok(&["getdbmap"]);
    assert!(out.contains("name:p.tdb"), "{out}");
    assert!(out.contains("PERSISTENT"), "{out}");
    assert!(out.contains("name:g_lock.tdb"), "{out}");

    let out = d.ok(&["catdb", "p.tdb"]);
    assert!(out.contains("Dumped 4 records"), "{out}");
    let out = d.ok(&["wipedb", "p.tdb"]);
    assert!(out.contains("wiped"), "{out}");
    assert_eq!(dump(&path), "");
}
