//! Interop with Debian's ctdbd 4.17: a two-node cluster of Debian's
//! daemon (pnn 0) and our transport (pnn 1) on 127.0.90.1/2, port 4379.
//!
//! What can be checked with only a transport on our side: both sides see
//! each other connected (Debian's `ctdb -X status` does not flag us
//! DISCONNECTED; it does flag us otherwise, since we answer no controls),
//! we receive Debian's keepalives and they pass the version rule, Debian
//! answers a control we send (GET_PID) through the primary connection
//! (our data core has no lane, since Debian does not announce lanes),
//! and Debian never had to reject a second connection from us.

mod transport_common;

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ctdb_daemon::transport::{NodeEvent, Sent};
use ctdb_protocol::{ControlData, DecodeLimits, Header, Packet, Payload, ReqControl};
use transport_common::*;

const DEBIAN: &str = "127.0.90.1";
const OURS: &str = "127.0.90.2";
const CTDBD: &str = "/usr/sbin/ctdbd";
const CTDB: &str = "/usr/bin/ctdb";
const HELPERS: &str = "/usr/libexec/ctdb";

struct Debian {
    child: Option<Child>,
    base: PathBuf,
}

impl Debian {
    fn env(base: &Path) -> Vec<(String, String)> {
        let b = base.display().to_string();
        vec![
            ("CTDB_TEST_MODE".into(), "yes".into()),
            ("CTDB_BASE".into(), b.clone()),
            ("CTDB_SOCKET".into(), format!("{b}/run/ctdbd.socket")),
            ("CTDB_EVENTD".into(), format!("{HELPERS}/ctdb-eventd")),
            ("CTDB_EVENT_HELPER".into(), format!("{HELPERS}/ctdb-event")),
            (
                "CTDB_LOCK_HELPER".into(),
                format!("{HELPERS}/ctdb_lock_helper"),
            ),
            (
                "CTDB_RECOVERY_HELPER".into(),
                format!("{HELPERS}/ctdb_recovery_helper"),
            ),
            (
                "CTDB_TAKEOVER_HELPER".into(),
                format!("{HELPERS}/ctdb_takeover_helper"),
            ),
        ]
    }

    fn start() -> Debian {
        let base =
            std::env::temp_dir().join(format!("ctdb-transport-debian-{}", std::process::id()));
        let _ = fs::remove_dir_all(&base);
        for d in [
            "run",
            "var",
            "events/legacy",
            "db/volatile",
            "db/persistent",
            "db/state",
        ] {
            fs::create_dir_all(base.join(d)).unwrap();
        }
        fs::write(base.join("nodes"), format!("{DEBIAN}\n{OURS}\n")).unwrap();
        let b = base.display();
        fs::write(
            base.join("ctdb.conf"),
            format!(
                "[logging]\n\tlocation = file:{b}/log.ctdb\n\tlog level = INFO\n\
                 [cluster]\n\tnode address = {DEBIAN}\n\
                 [database]\n\tvolatile database directory = {b}/db/volatile\n\
                 \tpersistent database directory = {b}/db/persistent\n\
                 \tstate database directory = {b}/db/state\n\
                 [legacy]\n\trealtime scheduling = false\n"
            ),
        )
        .unwrap();
        fs::write(base.join("ctdb.tunables"), "KeepaliveInterval=1\n").unwrap();
        let child = Command::new(CTDBD)
            .arg("--interactive")
            .envs(Self::env(&base))
            .env_remove("CTDB_TOOL_SETPGID")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(fs::File::create(base.join("stderr.log")).unwrap())
            .spawn()
            .expect("start Debian's ctdbd");
        Debian {
            child: Some(child),
            base,
        }
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    fn ctdb(&self, args: &[&str]) -> String {
        let out = Command::new(CTDB)
            .args(args)
            .envs(Self::env(&self.base))
            .output()
            .expect("run ctdb");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn log(&self) -> String {
        let mut s = fs::read_to_string(self.base.join("log.ctdb")).unwrap_or_default();
        s.push_str(&fs::read_to_string(self.base.join("stderr.log")).unwrap_or_default());
        s
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            drop(c.stdin.take()); // test mode: ctdbd exits when stdin closes
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Debian {
    fn drop(&mut self) {
        self.stop();
        if !std::thread::panicking() {
            let _ = fs::remove_dir_all(&self.base);
        }
    }
}

/// The Disconnected column of `pnn` in `ctdb -X status`.
fn disconnected_flag(status: &str, pnn: u32) -> Option<String> {
    // |Node|IP|Disconnected|Banned|Disabled|Unhealthy|Stopped|Inactive|PartiallyOnline|ThisNode|
    status
        .lines()
        .map(|l| l.split('|').collect::<Vec<_>>())
        .find(|f| f.len() > 3 && f[1] == pnn.to_string())
        .map(|f| f[3].to_string())
}

#[test]
fn debian_ctdbd_and_our_transport_connect() {
    if !Path::new(CTDBD).exists() {
        panic!("{CTDBD} is required (Debian package ctdb)");
    }
    let mut debian = Debian::start();
    let mut cfg = config(1, &[DEBIAN, OURS], 4379, 1000, 5);
    cfg.lanes = true;
    let ours = TestNode::start(cfg, 2);

    assert!(
        ours.wait_connected(&[0], Duration::from_secs(20)),
        "our transport never saw Debian's node connected; log:\n{}",
        debian.log()
    );

    // Debian's view of us.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut status;
    loop {
        status = debian.ctdb(&["-X", "status"]);
        if disconnected_flag(&status, 1).as_deref() == Some("0") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "Debian still sees us disconnected:\n{status}\nlog:\n{}",
            debian.log()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    eprintln!("Debian's ctdb -X status:\n{status}");

    // A control from our data core (no lane to Debian: forwarded to the
    // control core's connection), answered by Debian to our control core.
    let mut req = Vec::new();
    Packet::new(
        Header::new(0, 0, 1, 4242),
        Payload::ReqControl(ReqControl::new(ControlData::GetPid)),
    )
    .encode(&mut req)
    .unwrap();
    ours.send(1, 0, req);
    let mut seen = Vec::new();
    let r = ours.wait_for(Duration::from_secs(5), &mut seen, |o| match o {
        Out::Sent {
            core: 1, result, ..
        } => Some(result.clone()),
        _ => None,
    });
    assert_eq!(r, Some(Ok(Sent::Forwarded)));
    let is_reply = |o: &Out| match o {
        Out::Recv {
            core,
            from: 0,
            bytes,
        } => {
            let p = Packet::decode(bytes, &DecodeLimits::default()).ok()?;
            match p.payload {
                Payload::ReplyControl(rc) if p.header.reqid == 4242 => {
                    Some((*core, p.header.srcnode, p.header.destnode, rc.status))
                }
                _ => None,
            }
        }
        _ => None,
    };
    // The reply may come before the report that the request was sent (a
    // loaded machine): look among what the wait above passed over first.
    let reply = seen
        .iter()
        .find_map(is_reply)
        .or_else(|| ours.wait_for(Duration::from_secs(10), &mut seen, is_reply))
        .unwrap_or_else(|| panic!("no reply to GET_PID; log:\n{}", debian.log()));
    assert_eq!(
        reply,
        (0, 0, 1, debian.pid() as i32),
        "(core, src, dst, pid)"
    );

    // Keep running a few keepalive intervals, then look at what arrived.
    std::thread::sleep(Duration::from_millis(2500));
    let mut seen = Vec::new();
    let bad = ours.wait_for(Duration::from_millis(10), &mut seen, |o| match o {
        Out::Event(e @ (NodeEvent::Disconnected(_) | NodeEvent::VersionMismatch { .. })) => {
            Some(*e)
        }
        _ => None,
    });
    assert_eq!(bad, None, "log:\n{}", debian.log());
    let stats = ours.stop();
    eprintln!("our node: {stats:?}");
    assert!(
        stats[0].keepalives_received >= 2,
        "Debian's keepalives: {:?}",
        stats[0]
    );
    assert!(stats[0].keepalives_sent >= 1);
    let log = debian.log();
    assert!(
        !log.contains("rejecting connection"),
        "Debian rejected a second connection:\n{log}"
    );
    assert!(
        log.contains("connected to"),
        "no connect line in Debian's log:\n{log}"
    );
    assert!(
        !log.contains("Keepalive version"),
        "Debian did not like our keepalives:\n{log}"
    );
    debian.stop();
    let _ = std::io::stderr().flush();
}
