//! Clustered Samba on a ONE-node CTDB cluster: everything smbd asks of
//! ctdbd that does not need a second node — attaching its databases with
//! their exact open flags, GETDBPATH, fetch-locks and read-only fetches of
//! volatile records, persistent transactions (`smbpasswd -a`, `net conf`),
//! messages between smbd processes, traverses for smbstatus, seqnums.
//! Several connections to the same node contend for the same records just
//! as connections to different nodes do, only without migration.
//!
//! Runs against our ctdbd, or `$CTDB_TEST_CTDBD` (Debian's passes them
//! too). Each test prints which ctdbd it ran against and how long it took.

use std::fs;
use std::time::{Duration, Instant};

use ctdb_tests::samba::{self, access, share, SambaCluster, NET, NT_STATUS_SHARING_VIOLATION};
use ctdb_tests::{cli_from_env, Cluster};

/// A one-node CTDB cluster with its smbd, ready to serve.
struct Env {
    // Field order matters: smbd goes before ctdbd.
    samba: SambaCluster,
    cluster: Cluster,
    started: Instant,
    name: &'static str,
}

impl Env {
    fn new(name: &'static str) -> Option<Env> {
        if !samba::tools_available() {
            eprintln!(
                "{name}: SKIPPED, Samba tools not installed (apt-get install samba smbclient)"
            );
            return None;
        }
        let started = Instant::now();
        let ctdbd = ctdb_tests::must_show::ctdbd_under_test();
        eprintln!("{name}: running against ctdbd {}", ctdbd.display());
        let mut cluster = Cluster::create_on_free_addresses(1, &ctdbd).expect("create cluster");
        cluster.start_all().expect("start ctdbd");
        cluster
            .wait_all_ok(&cli_from_env(), Duration::from_secs(60))
            .expect("ctdb cluster OK");
        eprintln!("{name}: ctdb OK after {:?}", started.elapsed());
        let mut samba = SambaCluster::create(&cluster).expect("write smb.conf");
        samba.setup(0).expect("machine SID and smbpasswd -a");
        samba.start_all().expect("start smbd");
        eprintln!("{name}: smbd ready after {:?}", started.elapsed());
        Some(Env {
            samba,
            cluster,
            started,
            name,
        })
    }

    fn ctdbd(&self) -> String {
        self.samba.ctdbd().display().to_string()
    }

    fn client(&self, cmds: &str) -> String {
        let out = self.samba.smbclient(0, cmds).expect("run smbclient");
        assert_eq!(
            out.code(),
            0,
            "[ctdbd {}] smbclient `{cmds}`: {}{}\n{}",
            self.ctdbd(),
            out.stdout,
            out.stderr,
            self.samba.log_tail(0, 40)
        );
        out.stdout + &out.stderr
    }

    fn net(&self, args: &[&str]) -> String {
        let out = self
            .samba
            .tool(0, NET, args, Duration::from_secs(30))
            .expect("run net");
        let text = out.stdout.clone() + &out.stderr;
        assert_eq!(
            out.code(),
            0,
            "[ctdbd {}] net {args:?}: {text}",
            self.ctdbd()
        );
        text
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        self.samba.save_logs_if_asked(&self.cluster, self.name);
        eprintln!(
            "{}: [ctdbd {}] took {:?}",
            self.name,
            self.cluster.spec().ctdbd.display(),
            self.started.elapsed()
        );
    }
}

#[test]
fn samba_one_node_files_share_modes_and_status() {
    let Some(env) = Env::new("samba_one_files") else {
        return;
    };
    // File data through smbd (its opens go through locking.tdb records).
    let tmp = env.cluster.dir().join("payload");
    let back = env.cluster.dir().join("readback");
    let data: Vec<u8> = (0..100_000u32).map(|i| (i * 13 + i / 97) as u8).collect();
    fs::write(&tmp, &data).unwrap();
    env.client(&format!("put {} a.bin", tmp.display()));
    env.client(&format!("get a.bin {}", back.display()));
    assert_eq!(fs::read(&back).unwrap(), data);
    env.client("rename a.bin b.bin");
    let ls = env.client("ls");
    assert!(ls.contains("b.bin") && !ls.contains("a.bin"), "{ls}");

    // Two connections (two smbd processes) on the one node.
    let mut h0 = env.samba.holder(0).expect("first client");
    let mut h1 = env.samba.holder(0).expect("second client");
    let rw = access::READ_DATA | access::WRITE_DATA;
    let all = share::READ | share::WRITE | share::DELETE;
    let f0 = h0
        .open("excl.txt", rw, share::NONE)
        .unwrap()
        .expect("deny-all open");
    assert_eq!(
        h1.open("excl.txt", access::READ_DATA, all).unwrap(),
        Err(NT_STATUS_SHARING_VIOLATION),
        "[ctdbd {}] the second connection must see the first's deny-all open",
        env.ctdbd()
    );

    // smbstatus traverses the session, tcon and open databases.
    let out = env.samba.smbstatus(0, &[]).expect("smbstatus");
    let text = out.stdout.clone() + &out.stderr;
    assert_eq!(out.code(), 0, "[ctdbd {}] smbstatus: {text}", env.ctdbd());
    assert!(
        text.contains("excl.txt"),
        "[ctdbd {}] smbstatus does not list the open:\n{text}",
        env.ctdbd()
    );
    let sessions = env.samba.smbstatus(0, &["-b"]).unwrap();
    assert!(
        sessions.stdout.matches(samba::USER).count() >= 2,
        "[ctdbd {}] smbstatus -b lists fewer than two sessions:\n{}",
        env.ctdbd(),
        sessions.stdout
    );

    assert_eq!(h0.close(f0).unwrap(), Ok(0));
    let f1 = h1
        .open("excl.txt", rw, share::READ)
        .unwrap()
        .expect("open after the deny-all one closed");
    assert_eq!(
        h0.open("excl.txt", rw, all).unwrap(),
        Err(NT_STATUS_SHARING_VIOLATION)
    );
    assert_eq!(h1.close(f1).unwrap(), Ok(0));

    // A client that dies leaves no open behind (its smbd exits and
    // cleans up its share-mode entries).
    let f = h0
        .open("orphan.txt", rw, share::NONE)
        .unwrap()
        .expect("deny-all open");
    let _ = f;
    h0.kill();
    let deadline = Instant::now() + Duration::from_secs(20);
    let f = loop {
        match h1.open("orphan.txt", rw, share::NONE).unwrap() {
            Ok(f) => break f,
            Err(st) => assert!(
                Instant::now() < deadline,
                "[ctdbd {}] orphan.txt stays blocked (0x{st:08x}) after its client died",
                env.ctdbd()
            ),
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(h1.close(f).unwrap(), Ok(0));
    env.client("del b.bin");
}

#[test]
fn samba_one_node_persistent_registry_and_passdb() {
    let Some(env) = Env::new("samba_one_persistent") else {
        return;
    };
    // registry.tdb: every `net conf` write is a persistent transaction.
    env.net(&["conf", "addshare", "extra", "/tmp", "writeable=y"]);
    env.net(&["conf", "setparm", "extra", "comment", "ctdb registry"]);
    env.net(&["conf", "setparm", "global", "ctdbtest:key", "value-1"]);
    let val = env.net(&["conf", "getparm", "extra", "comment"]);
    assert!(val.contains("ctdb registry"), "{val}");
    let list = env.net(&["conf", "list"]);
    assert!(
        list.contains("[extra]") && list.contains("ctdbtest:key = value-1"),
        "[ctdbd {}] net conf list:\n{list}",
        env.ctdbd()
    );
    env.net(&["conf", "delshare", "extra"]);
    let list = env.net(&["conf", "list"]);
    assert!(!list.contains("[extra]"), "{list}");

    // passdb.tdb: a second user, then a password change, both logins work.
    let out = env
        .samba
        .smbpasswd_add(0, "nobody", "Other-Pass-2")
        .unwrap();
    assert_eq!(
        out.code(),
        0,
        "[ctdbd {}] smbpasswd -a nobody: {}{}",
        env.ctdbd(),
        out.stdout,
        out.stderr
    );
    let users = env
        .samba
        .tool(0, "/usr/bin/pdbedit", &["-L"], Duration::from_secs(30));
    let users = users.unwrap();
    assert!(
        users.stdout.contains("nobody") && users.stdout.contains(samba::USER),
        "[ctdbd {}] pdbedit -L: {}{}",
        env.ctdbd(),
        users.stdout,
        users.stderr
    );
    // The data lives in ctdb's persistent database (read back through ctdb).
    let cli = cli_from_env();
    let out = env.cluster.ctdb(0, &cli, &["getdbmap"]).unwrap();
    for db in ["registry.tdb", "passdb.tdb", "secrets.tdb"] {
        assert!(
            out.stdout.contains(db),
            "[ctdbd {}] {db} not attached:\n{}",
            env.ctdbd(),
            out.stdout
        );
    }
    let ls = env.client("ls");
    assert!(ls.contains("blocks"), "{ls}");
}

#[test]
fn samba_one_node_oplocks_and_byte_range_locks() {
    if !samba::smbtorture_available() {
        eprintln!("samba_one_torture: SKIPPED, smbtorture not installed (samba-testsuite)");
        return;
    }
    let Some(env) = Env::new("samba_one_torture") else {
        return;
    };
    for t in [
        "smb2.oplock.exclusive1",
        "smb2.oplock.batch1",
        "smb2.lock.overlap",
        "smb2.sharemode.sharemode-access",
    ] {
        let start = Instant::now();
        let out = env
            .samba
            .smbtorture(&[0, 0], &[t], &[], Duration::from_secs(60))
            .expect("run smbtorture");
        let text = out.stdout.clone() + &out.stderr;
        eprintln!(
            "samba_one_torture: {t} exit {} in {:?}",
            out.code(),
            start.elapsed()
        );
        assert!(
            out.code() == 0 && text.contains("success: ") && !text.contains("failure: "),
            "[ctdbd {}] smbtorture {t} (exit {}):\n{text}\n{}",
            env.ctdbd(),
            out.code(),
            env.samba.log_tail(0, 40)
        );
    }
}

/// Every Samba tool of the node reaches ctdbd through a counting tap: a
/// workload touching every part of the client protocol (attaches of all
/// databases, fetch-locks, persistent transactions, traverses, messages
/// between smbd processes) must see every control answered with success,
/// apart from controls whose status is a value. Prints what was sent and
/// how it was answered.
#[test]
fn samba_one_node_every_control_succeeds() {
    if !samba::tools_available() {
        eprintln!("samba_one_replies: SKIPPED, Samba tools not installed");
        return;
    }
    let started = Instant::now();
    let ctdbd = ctdb_tests::must_show::ctdbd_under_test();
    eprintln!(
        "samba_one_replies: running against ctdbd {}",
        ctdbd.display()
    );
    let mut cluster = Cluster::create_on_free_addresses(1, &ctdbd).expect("create cluster");
    cluster.start_all().expect("start ctdbd");
    cluster
        .wait_all_ok(&cli_from_env(), Duration::from_secs(60))
        .expect("ctdb cluster OK");
    let mut smb = SambaCluster::create_tapped(&cluster).expect("write smb.conf");
    smb.setup(0).expect("setup");
    smb.start_all().expect("start smbd");
    let net = |args: &[&str]| {
        let out = smb.tool(0, NET, args, Duration::from_secs(30)).unwrap();
        assert_eq!(out.code(), 0, "net {args:?}: {}{}", out.stdout, out.stderr);
    };
    net(&["conf", "setparm", "global", "ctdbtest:key", "v"]);
    net(&["conf", "list"]);
    let mut h0 = smb.holder(0).expect("client 0");
    let mut h1 = smb.holder(0).expect("client 1");
    let rw = access::READ_DATA | access::WRITE_DATA;
    let f = h0.open("u.txt", rw, share::NONE).unwrap().unwrap();
    assert_eq!(
        h1.open("u.txt", access::READ_DATA, share::READ).unwrap(),
        Err(NT_STATUS_SHARING_VIOLATION)
    );
    for args in [&[][..], &["-L"][..], &["-b"][..]] {
        let out = smb.smbstatus(0, args).unwrap();
        assert_eq!(out.code(), 0, "smbstatus {args:?}: {}", out.stderr);
    }
    h0.close(f).unwrap().unwrap();
    drop(h0);
    drop(h1);
    let out = smb
        .smbclient(0, "put /etc/hostname h.txt; ls; del h.txt")
        .unwrap();
    assert_eq!(out.code(), 0, "{}{}", out.stdout, out.stderr);
    let counts = smb.tap_counts(0);
    println!(
        "[ctdbd {}] what Samba sent to ctdbd and how it was answered:\n{}",
        ctdbd.display(),
        counts.report()
    );
    let failed = counts.failed_controls();
    assert!(
        failed.is_empty(),
        "[ctdbd {}] controls Samba sent that failed (opcode, status): {failed:?}\n{}\n{}",
        ctdbd.display(),
        counts.report(),
        smb.log_tail(0, 40)
    );
    assert!(
        counts.call_replies.keys().all(|s| *s == 0),
        "[ctdbd {}] calls answered with errors: {:?}",
        ctdbd.display(),
        counts.call_replies
    );
    smb.save_logs_if_asked(&cluster, "samba_one_replies");
    drop(smb);
    drop(cluster);
    eprintln!(
        "samba_one_replies: [ctdbd {}] took {:?}",
        ctdbd.display(),
        started.elapsed()
    );
}

/// A bare ctdb client connection for the CHECK_PID_SRVID test: sends one
/// control at a time and waits for its reply.
struct RawClient {
    sock: std::os::unix::net::UnixStream,
    reqid: u32,
}

impl RawClient {
    fn connect(path: &std::path::Path) -> RawClient {
        let sock = std::os::unix::net::UnixStream::connect(path)
            .unwrap_or_else(|e| panic!("connect to {}: {e}", path.display()));
        sock.set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        RawClient { sock, reqid: 1 }
    }

    /// REQ_CONTROL to this node; the reply status.
    fn control(&mut self, opcode: u32, srvid: u64, data: &[u8]) -> i32 {
        use std::io::{Read, Write};
        self.reqid += 1;
        let len = 32 + 28 + data.len();
        let mut p = Vec::with_capacity(len);
        for v in [len as u32, 0x4354_4442, 1, 0, 7, 0xF000_0001, 0, self.reqid] {
            p.extend_from_slice(&v.to_le_bytes());
        }
        p.extend_from_slice(&opcode.to_le_bytes());
        p.extend_from_slice(&0u32.to_le_bytes());
        p.extend_from_slice(&srvid.to_le_bytes());
        for v in [0u32, 0, data.len() as u32] {
            p.extend_from_slice(&v.to_le_bytes());
        }
        p.extend_from_slice(data);
        self.sock.write_all(&p).expect("send control");
        loop {
            let mut l = [0u8; 4];
            self.sock.read_exact(&mut l).expect("reply length");
            let n = u32::from_le_bytes(l) as usize;
            assert!((36..1 << 20).contains(&n), "bad reply length {n}");
            let mut rest = vec![0u8; n - 4];
            self.sock.read_exact(&mut rest).expect("reply");
            let op = u32::from_le_bytes(rest[12..16].try_into().unwrap());
            let reqid = u32::from_le_bytes(rest[24..28].try_into().unwrap());
            if op == 8 && reqid == self.reqid {
                return i32::from_le_bytes(rest[28..32].try_into().unwrap());
            }
        }
    }

    fn check_pid_srvid(&mut self, pid: u32, srvid: u64) -> i32 {
        let mut d = Vec::new();
        // As smbd's ctdbd_process_exists: pid and srvid packed, 12 bytes.
        d.extend_from_slice(&(pid as i32).to_le_bytes());
        d.extend_from_slice(&srvid.to_le_bytes());
        self.control(151, 0, &d)
    }
}

/// CHECK_PID_SRVID (what smbd asks to learn whether a server id on
/// another node is alive) is answered from the pid ctdbd learned from each
/// client connection (SO_PEERCRED; the client never sends it): yes while a
/// connection of that pid has the srvid registered, no for another srvid,
/// another process, or once that connection is gone.
#[test]
fn samba_one_node_check_pid_srvid_uses_the_peer_pid() {
    let ctdbd = ctdb_tests::must_show::ctdbd_under_test();
    let mut cluster = Cluster::create_on_free_addresses(1, &ctdbd).expect("create cluster");
    cluster.start_all().expect("start ctdbd");
    cluster
        .wait_all_ok(&cli_from_env(), Duration::from_secs(60))
        .expect("ctdb cluster OK");
    let sock = cluster.socket(0).unwrap();
    let me = std::process::id();
    let srvid = 0x00C7_DB00_0000_0000 | u64::from(me);
    // Upstream looks the pid up among its clients newest first, so the
    // connection holding the srvid is the newer one (both are this
    // process).
    let mut asker = RawClient::connect(&sock);
    let mut owner = RawClient::connect(&sock);
    assert_eq!(owner.control(23, srvid, &[]), 0, "REGISTER_SRVID");
    let who = format!("[ctdbd {}]", ctdbd.display());
    assert_eq!(
        asker.check_pid_srvid(me, srvid),
        0,
        "{who} registered srvid"
    );
    assert_eq!(
        asker.check_pid_srvid(me, srvid + 1),
        -1,
        "{who} other srvid"
    );
    // A live process that is no client of ctdbd.
    let mut other = std::process::Command::new("sleep")
        .arg("30")
        .spawn()
        .unwrap();
    assert_eq!(
        asker.check_pid_srvid(other.id(), srvid),
        -1,
        "{who} non-client"
    );
    let _ = other.kill();
    let _ = other.wait();
    drop(owner);
    let deadline = Instant::now() + Duration::from_secs(5);
    while asker.check_pid_srvid(me, srvid) != -1 {
        assert!(
            Instant::now() < deadline,
            "{who} srvid still reported after its connection closed"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(asker);
    drop(cluster);
}
