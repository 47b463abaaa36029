//! Interoperability with Debian's smbd 4.17 (`clustering = yes`): the
//! unpadded packets smbd builds by hand in `ctdbd_conn.c` decode with our
//! codec, control data included, and smbd accepts our replies far enough
//! to attach its first persistent database.
//!
//! How: a stand-in daemon on a private Unix socket (`ctdbd socket`) answers
//! GET_PNN, GET_NODEMAP, REGISTER_SRVID, DB_ATTACH*, GETDBPATH and
//! DB_OPEN_FLAGS with typed replies. The database files it names do not
//! exist, so smbd stops right after its first attach ("can not open
//! secrets.tdb") -- by then it has sent its whole start-up sequence, which
//! the test checks request by request. smbd is run in the foreground and
//! killed by pid if it outlives the time limit.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ctdb_protocol::constants::CTDB_PORT;
use ctdb_protocol::srvid;
use ctdb_protocol::types::{CtdbString, NodeAndFlags, NodeMap, SockAddr};
use ctdb_protocol::{
    frame_length, ControlData, ControlReplyData, DecodeLimits, Packet, Payload, ReplyControl,
};

const SMBD: &str = "/usr/sbin/smbd";

#[derive(Default)]
struct Seen {
    /// (packet length, opcode, control srvid, raw control data)
    requests: Vec<(u32, u32, u64, Vec<u8>)>,
    errors: Vec<String>,
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

fn db_id_of(name: &[u8]) -> u32 {
    // any stable id will do (ctdbd uses a jenkins hash of the name)
    name.iter().fold(0x811C_9DC5u32, |h, &b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}

fn serve(mut conn: UnixStream, seen: Arc<Mutex<Seen>>, dbdir: PathBuf) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(30)));
    let mut names: Vec<(u32, Vec<u8>)> = Vec::new();
    let mut out = Vec::new();
    while let Some(buf) = read_packet(&mut conn) {
        let raw_len = buf.len() as u32;
        let pkt = match Packet::decode(&buf, &DecodeLimits::default()) {
            Ok(p) => p,
            Err(e) => {
                seen.lock().unwrap().errors.push(format!("packet: {e}"));
                return;
            }
        };
        let Payload::ReqControl(req) = &pkt.payload else {
            // smbd's messaging (REQ_MESSAGE) needs no answer here
            continue;
        };
        seen.lock()
            .unwrap()
            .requests
            .push((raw_len, req.opcode, req.srvid, req.data.to_vec()));
        let ctl = match req.decode_data() {
            Ok(c) => c,
            Err(e) => {
                seen.lock()
                    .unwrap()
                    .errors
                    .push(format!("{}: {e}", ctdb_protocol::opcode_name(req.opcode)));
                return;
            }
        };
        if req.noreply() {
            continue;
        }
        let path_buf;
        let (status, data) = match &ctl {
            ControlData::GetPnn => (0, ControlReplyData::None),
            ControlData::RegisterSrvid | ControlData::DeregisterSrvid => {
                (0, ControlReplyData::None)
            }
            ControlData::GetNodemap => (
                0,
                ControlReplyData::GetNodemap(NodeMap {
                    nodes: vec![NodeAndFlags {
                        pnn: 0,
                        flags: 0,
                        addr: SockAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, CTDB_PORT)),
                    }],
                }),
            ),
            ControlData::DbAttach(name)
            | ControlData::DbAttachPersistent(name)
            | ControlData::DbAttachReplicated(name) => {
                let name = name.bytes().unwrap_or_default().to_vec();
                let id = db_id_of(&name);
                names.push((id, name));
                (0, ControlReplyData::DbAttach(id))
            }
            ControlData::Getdbpath(id) => match names.iter().find(|(i, _)| i == id) {
                Some((_, name)) => {
                    path_buf = format!("{}/{}.0", dbdir.display(), String::from_utf8_lossy(name));
                    (0, ControlReplyData::Getdbpath(CtdbString::new(&path_buf)))
                }
                None => (-1, ControlReplyData::None),
            },
            ControlData::DbOpenFlags(_) => (0, ControlReplyData::DbOpenFlags(0)),
            _ => (-1, ControlReplyData::None),
        };
        let reply = Packet::new(
            pkt.header.reply(0),
            Payload::ReplyControl(ReplyControl::new(status, data)),
        );
        out.clear();
        reply.encode(&mut out).unwrap();
        if conn.write_all(&out).is_err() {
            return;
        }
    }
}

fn write_config(dir: &Path, port: u16) -> PathBuf {
    for sub in ["priv", "lock", "state", "cache", "run", "log", "db"] {
        std::fs::create_dir_all(dir.join(sub)).unwrap();
    }
    let d = dir.display();
    let conf = format!(
        "[global]\n\
         clustering = yes\n\
         ctdbd socket = {d}/ctdbd.socket\n\
         private dir = {d}/priv\n\
         lock directory = {d}/lock\n\
         state directory = {d}/state\n\
         cache directory = {d}/cache\n\
         pid directory = {d}/run\n\
         ncalrpc dir = {d}/run/ncalrpc\n\
         log file = {d}/log/log.%m\n\
         smb ports = {port}\n\
         interfaces = 127.0.0.1\n\
         bind interfaces only = yes\n\
         server role = standalone server\n\
         passdb backend = tdbsam\n"
    );
    let path = dir.join("smb.conf");
    std::fs::write(&path, conf).unwrap();
    path
}

#[test]
fn smbd_start_up_requests_decode() {
    if !Path::new(SMBD).exists() {
        eprintln!("SKIP: {SMBD} not installed (Debian package samba)");
        return;
    }
    let dir =
        std::env::temp_dir().join(format!("ctdb-protocol-smbd-interop-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    // a port nobody else in the test suite uses; smbd fails before binding
    let port = 20_000 + (std::process::id() % 20_000) as u16;
    let conf = write_config(&dir, port);

    let listener = UnixListener::bind(dir.join("ctdbd.socket")).unwrap();
    listener.set_nonblocking(true).unwrap();
    let seen = Arc::new(Mutex::new(Seen::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let acceptor = {
        let (seen, stop, dbdir) = (seen.clone(), stop.clone(), dir.join("db"));
        std::thread::spawn(move || {
            let mut conns = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((c, _)) => {
                        let (seen, dbdir) = (seen.clone(), dbdir.clone());
                        c.set_nonblocking(false).unwrap();
                        conns.push(std::thread::spawn(move || serve(c, seen, dbdir)));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
            for c in conns {
                let _ = c.join();
            }
        })
    };

    let mut child = Command::new(SMBD)
        .args(["-F", "--debug-stdout", "-d1", "--configfile"])
        .arg(&conf)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start smbd");
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    stop.store(true, Ordering::SeqCst);
    acceptor.join().unwrap();
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let _ = std::fs::remove_dir_all(&dir);

    let seen = seen.lock().unwrap();
    assert!(
        seen.errors.is_empty(),
        "decode errors {:?}\nsmbd:\n{log}",
        seen.errors
    );
    let reqs: Vec<(u32, ControlData<'_>, u64)> = seen
        .requests
        .iter()
        .map(|(len, op, srvid, data)| (*len, ControlData::decode(*op, data).unwrap(), *srvid))
        .collect();
    assert!(!reqs.is_empty(), "smbd never talked to us:\n{log}");
    // smbd sends exact-size packets: a GET_PNN is 60 bytes, not 64
    assert!(
        reqs.iter()
            .any(|(len, c, _)| *c == ControlData::GetPnn && *len == 60),
        "{reqs:?}"
    );
    let has = |pred: &dyn Fn(&ControlData<'_>, u64) -> bool, what: &str| {
        assert!(
            reqs.iter().any(|(_, c, s)| pred(c, *s)),
            "smbd never sent {what}; requests:\n{reqs:#?}\nsmbd:\n{log}"
        );
    };
    has(&|c, _| *c == ControlData::GetNodemap, "GET_NODEMAP");
    has(
        &|c, s| *c == ControlData::RegisterSrvid && s == srvid::SAMBA_PROCESS,
        "REGISTER_SRVID(SAMBA_PROCESS)",
    );
    has(
        &|c, _| *c == ControlData::DbAttachPersistent(CtdbString::new("secrets.tdb")),
        "DB_ATTACH_PERSISTENT(secrets.tdb)",
    );
    let secrets = db_id_of(b"secrets.tdb");
    has(&|c, _| *c == ControlData::Getdbpath(secrets), "GETDBPATH");
    has(
        &|c, _| *c == ControlData::DbOpenFlags(secrets),
        "DB_OPEN_FLAGS",
    );
    // and it got as far as trying to open the path we gave it
    assert!(log.contains("secrets.tdb.0"), "smbd:\n{log}");
}
