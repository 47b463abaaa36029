//! The same `ctdb` command sequence against Debian's ctdbd 4.17 and against
//! our database layer (through `serve_client_packet`, as in
//! `db_ctdb_tool.rs`) must leave the same records in the database files:
//! same keys, same ltdb headers (rsn, dmaster, flags), same data, as
//! `ltdbtool dump -e -p` shows them (empty records included). This is the
//! drop-in property smbd and the tools rely on.

use std::collections::{BTreeMap, HashSet};
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::unix::net::{UnixListener, UnixStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ctdb_daemon::db::{db_id_of, ControlCtx, Databases, DbConfig};
use ctdb_protocol::constants::CTDB_CURRENT_NODE;
use ctdb_protocol::types::{srvid, NodeAndFlags, NodeMap, SockAddr, VnnMap};
use ctdb_protocol::{
    frame_length, ControlData, ControlReplyData, DbIdPad, DecodeLimits, Header, MessageData,
    Opcode, Packet, Payload, ReplyControl, ReqControl, ReqMessage,
};

const CTDB: &str = "/usr/bin/ctdb";
const CTDBD: &str = "/usr/sbin/ctdbd";
const HELPERS: &str = "/usr/libexec/ctdb";

/// The commands run against both daemons, in order.
const SCRIPT: &[&[&str]] = &[
    &["attach", "test.tdb"],
    &["writekey", "test.tdb", "k1", "v1"],
    &["writekey", "test.tdb", "k2", "value-two"],
    &["writekey", "test.tdb", "k1", "v1-again"],
    &["readkey", "test.tdb", "missing"],
    &["getdbseqnum", "test.tdb"],
    &["attach", "p.tdb", "persistent"],
    &["pstore", "p.tdb", "a", "1"],
    &["pstore", "p.tdb", "b", "2"],
    &["pstore", "p.tdb", "a", "3"],
    &["pdelete", "p.tdb", "b"],
    &["attach", "r.tdb", "replicated"],
    &["getdbmap"],
    &["getdbstatus", "test.tdb"],
    &["getdbstatus", "p.tdb"],
    &["catdb", "test.tdb"],
    &["catdb", "p.tdb"],
    &["cattdb", "test.tdb"],
    &["pfetch", "p.tdb", "a"],
    &["getdbseqnum", "p.tdb"],
];

fn run(socket: &Path, env: &[(String, String)], args: &[&str]) -> (bool, String) {
    let mut child = Command::new(CTDB)
        .args(args)
        .envs(env.iter().cloned())
        .env("CTDB_SOCKET", socket)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run ctdb");
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("ctdb {args:?} hung");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// Records of `ltdbtool dump -e -p`, by key, for an order-free comparison.
fn records(path: &Path) -> BTreeMap<String, String> {
    let out = Command::new("/usr/bin/ltdbtool")
        .args(["dump", "-e", "-p"])
        .arg(path)
        .output()
        .unwrap();
    assert!(out.status.success(), "ltdbtool {}", path.display());
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut m = BTreeMap::new();
    for block in text.split("}\n") {
        let block = block.trim().trim_start_matches('{').trim();
        if block.is_empty() {
            continue;
        }
        let mut lines = block.lines();
        let key = lines.next().unwrap_or_default().to_string();
        m.insert(key, lines.collect::<Vec<_>>().join("\n"));
    }
    m
}

// ------------------------------------------------------- Debian's ctdbd

struct DebianNode {
    dir: PathBuf,
    child: Child,
}

impl DebianNode {
    fn start(dir: &Path) -> DebianNode {
        let addr = format!(
            "127.{}.{}.{}",
            100 + (std::process::id() % 100),
            (std::process::id() / 100) % 250 + 1,
            7
        );
        for sub in [
            "run",
            "var",
            "events/legacy",
            "volatile",
            "persistent",
            "state",
        ] {
            std::fs::create_dir_all(dir.join(sub)).unwrap();
        }
        std::fs::write(dir.join("nodes"), format!("{addr}\n")).unwrap();
        let conf = format!(
            "[logging]\n\tlocation = file:{d}/log.ctdb\n\tlog level = NOTICE\n\
             [cluster]\n\tnode address = {addr}\n\
             [database]\n\tvolatile database directory = {d}/volatile\n\
             \tpersistent database directory = {d}/persistent\n\
             \tstate database directory = {d}/state\n\
             [legacy]\n\trealtime scheduling = false\n",
            d = dir.display()
        );
        std::fs::write(dir.join("ctdb.conf"), conf).unwrap();
        let child = Command::new(CTDBD)
            .arg("--interactive")
            .envs(Self::env_of(dir))
            .current_dir(dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("start Debian ctdbd");
        DebianNode {
            dir: dir.to_path_buf(),
            child,
        }
    }

    fn env_of(dir: &Path) -> Vec<(String, String)> {
        let h = |n: &str| format!("{HELPERS}/{n}");
        vec![
            ("CTDB_TEST_MODE".into(), "yes".into()),
            ("CTDB_BASE".into(), dir.display().to_string()),
            ("CTDB_EVENTD".into(), h("ctdb-eventd")),
            ("CTDB_EVENT_HELPER".into(), h("ctdb-event")),
            ("CTDB_LOCK_HELPER".into(), h("ctdb_lock_helper")),
            ("CTDB_RECOVERY_HELPER".into(), h("ctdb_recovery_helper")),
            ("CTDB_TAKEOVER_HELPER".into(), h("ctdb_takeover_helper")),
            (
                "CTDB_CLUSTER_MUTEX_HELPER".into(),
                h("ctdb_mutex_fcntl_helper"),
            ),
        ]
    }

    fn socket(&self) -> PathBuf {
        self.dir.join("run/ctdbd.socket")
    }

    fn env(&self) -> Vec<(String, String)> {
        Self::env_of(&self.dir)
    }

    /// Waits until the first recovery is over (databases can be attached).
    fn wait_ready(&mut self) -> bool {
        let deadline = Instant::now() + Duration::from_secs(40);
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return false;
            }
            let (ok, out) = run(&self.socket(), &self.env(), &["runstate"]);
            if ok && out.contains("RUNNING") {
                let (ok, out) = run(&self.socket(), &self.env(), &["status"]);
                if ok && out.contains("Recovery mode:NORMAL") {
                    return true;
                }
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        false
    }
}

impl Drop for DebianNode {
    fn drop(&mut self) {
        // The daemon and the helpers it forked share its process group.
        let pgid = self.child.id() as i32;
        let _ = Command::new("kill")
            .args(["-TERM", "--", &format!("-{pgid}")])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{pgid}")])
            .status();
        let _ = self.child.wait();
    }
}

// ------------------------------------------------------------------ ours

struct Ours {
    socket: PathBuf,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Ours {
    fn start(dir: &Path) -> Ours {
        let mut cfg = DbConfig::new(
            0,
            &dir.join("volatile"),
            &dir.join("persistent"),
            &dir.join("state"),
        );
        cfg.hash_size = 100_001; // the tunable's default, as Debian's
        std::fs::create_dir_all(dir).unwrap();
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
        Ours {
            socket,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Ours {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
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

fn serve(mut conn: UnixStream, dbs: &mut Databases) {
    const GEN: u32 = 0x4242;
    conn.set_nonblocking(false).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut srvids: HashSet<u64> = HashSet::new();
    let mut out = Vec::new();
    while let Some(buf) = read_packet(&mut conn) {
        let Ok(pkt) = Packet::decode(&buf, &DecodeLimits::default()) else {
            return;
        };
        out.clear();
        let own = srvids.clone();
        let mut served = dbs.serve_client_packet(
            &pkt,
            &ControlCtx::default(),
            GEN,
            &|id| own.contains(&id),
            &mut out,
        );
        // A busy chain lock: hand the packet in again shortly.
        while served.as_ref().is_some_and(|s| s.retry) {
            std::thread::sleep(Duration::from_millis(1));
            served = dbs.serve_client_packet(
                &pkt,
                &ControlCtx::default(),
                GEN,
                &|id| own.contains(&id),
                &mut out,
            );
        }
        if served.is_none() {
            if let Payload::ReqControl(c) = &pkt.payload {
                let data = |d: ControlReplyData<'_>| {
                    let mut v = Vec::new();
                    d.push(&mut v);
                    v
                };
                let (status, body) = match Opcode::from_u32(c.opcode) {
                    Some(Opcode::RegisterSrvid) => {
                        srvids.insert(c.srvid);
                        (0, Vec::new())
                    }
                    Some(Opcode::DeregisterSrvid) => {
                        srvids.remove(&c.srvid);
                        (0, Vec::new())
                    }
                    Some(Opcode::GetNodemap) => {
                        let addr =
                            SockAddr::V4(SocketAddrV4::new(Ipv4Addr::new(127, 0, 0, 1), 4379));
                        let nodes = vec![NodeAndFlags {
                            pnn: 0,
                            flags: 0,
                            addr,
                        }];
                        (0, data(ControlReplyData::GetNodemap(NodeMap { nodes })))
                    }
                    Some(Opcode::Getvnnmap) => (
                        0,
                        data(ControlReplyData::Getvnnmap(VnnMap {
                            generation: GEN,
                            map: vec![0],
                        })),
                    ),
                    Some(
                        Opcode::GetPnn
                        | Opcode::GetRecmode
                        | Opcode::ProcessExists
                        | Opcode::CheckPidSrvid,
                    ) => (0, Vec::new()),
                    _ => (-1, Vec::new()),
                };
                if !c.noreply() {
                    let reply = ReplyControl {
                        status,
                        data: ctdb_protocol::Data::Raw(&body),
                        errmsg: &[],
                    };
                    let hdr = Header::new(GEN, pkt.header.srcnode, 0, pkt.header.reqid);
                    Packet::new(hdr, Payload::ReplyControl(reply))
                        .encode(&mut out)
                        .unwrap();
                }
                if c.opcode == Opcode::RegisterSrvid as u32 && c.srvid == srvid::LEADER {
                    let msg = ReqMessage::typed(srvid::LEADER, MessageData::Leader(0));
                    Packet::new(Header::new(GEN, 0, 0, 0), Payload::ReqMessage(msg))
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

/// Sends one control on a raw client connection and returns the reply's
/// status and data (messages arriving meanwhile are skipped).
fn raw_control(conn: &mut UnixStream, reqid: u32, data: ControlData<'_>) -> (i32, Vec<u8>) {
    let pkt = Packet::new(
        Header::new(0, CTDB_CURRENT_NODE, 0, reqid),
        Payload::ReqControl(ReqControl::new(data)),
    );
    let mut out = Vec::new();
    pkt.encode(&mut out).unwrap();
    conn.write_all(&out).unwrap();
    loop {
        let buf = read_packet(conn).expect("reply");
        let p = Packet::decode(&buf, &DecodeLimits::default()).unwrap();
        if let Payload::ReplyControl(r) = &p.payload {
            if p.header.reqid == reqid {
                let d = match &r.data {
                    ctdb_protocol::Data::Raw(b) => b.to_vec(),
                    ctdb_protocol::Data::Typed(t) => {
                        let mut v = Vec::new();
                        t.push(&mut v);
                        v
                    }
                };
                return (r.status, d);
            }
        }
    }
}

/// The controls smbd sends at attach time and a few more, on both daemons:
/// same status and data (paths normalised).
fn raw_controls(socket: &Path, dir: &Path) -> Vec<(i32, Vec<u8>)> {
    let mut conn = UnixStream::connect(socket).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let test = db_id_of("test.tdb");
    let p = db_id_of("p.tdb");
    let r = db_id_of("r.tdb");
    let mut got = Vec::new();
    let reqs: Vec<ControlData<'_>> = vec![
        ControlData::DbOpenFlags(test),
        ControlData::DbOpenFlags(p),
        ControlData::DbOpenFlags(r),
        ControlData::EnableSeqnum(test),
        ControlData::DbOpenFlags(test),
        ControlData::Getdbpath(test),
        ControlData::GetDbname(p),
        ControlData::GetDbSeqnum(DbIdPad(p)),
        ControlData::DbGetHealth(p),
        ControlData::SetDbReadonly(p),
        ControlData::SetDbReadonly(test),
        ControlData::SetDbSticky(test),
        ControlData::SetDbSticky(r),
        ControlData::GetDbmap,
        ControlData::DbOpenFlags(0x1234_5678),
        ControlData::DbDetach(test),
    ];
    for (i, c) in reqs.into_iter().enumerate() {
        let (status, data) = raw_control(&mut conn, 100 + i as u32, c);
        let text = String::from_utf8_lossy(&data).replace(&dir.display().to_string(), "DIR");
        let data = if text.starts_with("DIR") {
            text.into_bytes()
        } else {
            data
        };
        got.push((status, data));
    }
    got
}

#[test]
fn same_records_as_debian_ctdbd() {
    if !Path::new(CTDBD).exists() || !Path::new(CTDB).exists() {
        eprintln!("skipped: Debian ctdb not installed");
        return;
    }
    let base = std::env::temp_dir().join(format!("ctdb-dbs-cmp-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    let ddir = base.join("debian");
    let odir = base.join("ours");

    let mut deb = DebianNode::start(&ddir);
    assert!(deb.wait_ready(), "Debian ctdbd did not become ready");
    let ours = Ours::start(&odir);
    for cmd in SCRIPT {
        let (dok, dout) = run(&deb.socket(), &deb.env(), cmd);
        let (ook, oout) = run(&ours.socket, &[], cmd);
        assert_eq!(dok, ook, "ctdb {cmd:?}: debian {dout:?} ours {oout:?}");
        // Outputs match except for paths (different directories).
        let norm = |s: &str, d: &Path| s.replace(&d.display().to_string(), "DIR");
        assert_eq!(
            norm(&dout, &ddir),
            norm(&oout, &odir),
            "ctdb {cmd:?} output differs"
        );
    }
    // ptrans: several records in one commit.
    for (socket, env) in [(deb.socket(), deb.env()), (ours.socket.clone(), vec![])] {
        let mut child = Command::new(CTDB)
            .args(["ptrans", "p.tdb"])
            .envs(env)
            .env("CTDB_SOCKET", &socket)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(b"\"x\" \"10\"\n\"y\" \"20\"\n")
            .unwrap();
        assert!(child.wait().unwrap().success());
    }

    // backupdb, wipedb, restoredb: the restored records must match too
    // (restoredb's output names the backup's time, so only success is
    // compared for it).
    for (socket, env, dir) in [
        (deb.socket(), deb.env(), ddir.clone()),
        (ours.socket.clone(), vec![], odir.clone()),
    ] {
        let backup = dir.join("test.backup");
        let b = backup.to_str().unwrap();
        for cmd in [
            &["backupdb", "test.tdb", b][..],
            &["wipedb", "test.tdb"][..],
            &["restoredb", b][..],
        ] {
            let (ok, out) = run(&socket, &env, cmd);
            assert!(ok, "ctdb {cmd:?}: {out}");
        }
    }

    assert_eq!(
        raw_controls(&deb.socket(), &ddir),
        raw_controls(&ours.socket, &odir),
        "database controls answered differently"
    );

    for f in [
        "volatile/test.tdb.0",
        "persistent/p.tdb.0",
        "volatile/g_lock.tdb.0",
        "volatile/r.tdb.0",
    ] {
        let d = records(&ddir.join(f));
        let o = records(&odir.join(f));
        let want = match f {
            "volatile/test.tdb.0" => 4, // k1, k2, missing, seqnum key
            "persistent/p.tdb.0" => 5,  // a, b (deleted: empty), x, y, seqnum
            "volatile/g_lock.tdb.0" => 1,
            _ => 0,
        };
        assert_eq!(d.len(), want, "{f}: {d:#?}");
        assert_eq!(d, o, "{f}: Debian's ctdbd and ours left different records");
    }
    drop(ours);
    drop(deb);
    let _ = std::fs::remove_dir_all(&base);
}
