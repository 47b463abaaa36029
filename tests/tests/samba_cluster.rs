//! Clustered Samba end to end: one smbd per CTDB node on loopback, all
//! serving one shared directory. Runs against our ctdbd (the release build
//! next to the test binary) or `$CTDB_TEST_CTDBD` (e.g. Debian's
//! /usr/sbin/ctdbd, which passes them too). Each test prints which ctdbd it
//! ran against and how long it took.
//!
//! ```text
//! cargo build --release --bins
//! cargo test --release -p ctdb-tests --test samba_cluster
//! # smbd's log level (default 1) and a directory that keeps every smbd and
//! # ctdbd log per test:
//! SAMBA_LOG_LEVEL=10 SAMBA_TEST_LOGS=/tmp/samba-logs cargo test ...
//! ```

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use ctdb_tests::samba::{self, access, share, SambaCluster, NT_STATUS_SHARING_VIOLATION};
use ctdb_tests::{cli_from_env, Cluster, StatusSummary};

/// A CTDB cluster of `n` nodes with one smbd per node, ready to serve.
struct Env {
    // Field order matters: smbd goes before ctdbd.
    samba: SambaCluster,
    cluster: Cluster,
    started: Instant,
    name: &'static str,
}

impl Env {
    fn new(name: &'static str, n: usize) -> Option<Env> {
        if !samba::tools_available() {
            eprintln!(
                "{name}: SKIPPED, Samba tools not installed (apt-get install samba smbclient)"
            );
            return None;
        }
        let started = Instant::now();
        let ctdbd = ctdb_tests::must_show::ctdbd_under_test();
        eprintln!("{name}: running against ctdbd {}", ctdbd.display());
        let mut cluster = Cluster::create_on_free_addresses(n, &ctdbd).expect("create cluster");
        cluster.start_all().expect("start ctdbd");
        cluster
            .wait_all_ok(&cli_from_env(), Duration::from_secs(60))
            .expect("ctdb cluster OK");
        eprintln!("{name}: ctdb OK after {:?}", started.elapsed());
        let mut samba = SambaCluster::create(&cluster).expect("write smb.conf");
        samba.setup(0).expect("machine SID and smbpasswd -a");
        samba.start_all().expect("start smbd");
        samba
            .wait_all_ready(Duration::from_secs(60))
            .expect("smbd ready");
        eprintln!(
            "{name}: smbd ready on {n} nodes after {:?}",
            started.elapsed()
        );
        Some(Env {
            samba,
            cluster,
            started,
            name,
        })
    }

    fn client(&self, node: usize, cmds: &str) -> String {
        let out = self.samba.smbclient(node, cmds).expect("run smbclient");
        assert_eq!(
            out.code(),
            0,
            "[ctdbd {}] smbclient on node {node} `{cmds}`: {}{}",
            self.samba.ctdbd().display(),
            out.stdout,
            out.stderr
        );
        out.stdout + &out.stderr
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
fn samba_files_written_on_one_node_are_seen_on_the_other() {
    let Some(env) = Env::new("samba_files", 2) else {
        return;
    };
    let tmp = env.cluster.dir().join("payload");
    let back = env.cluster.dir().join("readback");
    let data: Vec<u8> = (0..200_000u32).map(|i| (i * 7 + i / 251) as u8).collect();
    fs::write(&tmp, &data).unwrap();
    env.client(0, &format!("put {} a.bin", tmp.display()));
    env.client(1, &format!("get a.bin {}", back.display()));
    assert_eq!(fs::read(&back).unwrap(), data, "content differs via node 1");

    env.client(1, "rename a.bin b.bin");
    let ls = env.client(0, "ls");
    assert!(ls.contains("b.bin") && !ls.contains("a.bin"), "{ls}");
    env.client(0, "del b.bin");
    let ls = env.client(1, "ls");
    assert!(!ls.contains("b.bin"), "{ls}");
    assert!(!Path::new(&env.samba.share_dir().join("b.bin")).exists());
}

#[test]
fn samba_share_modes_conflict_across_nodes() {
    let Some(env) = Env::new("samba_sharemodes", 2) else {
        return;
    };
    let mut h0 = env.samba.holder(0).expect("client on node 0");
    let mut h1 = env.samba.holder(1).expect("client on node 1");
    let rw = access::READ_DATA | access::WRITE_DATA;
    let all = share::READ | share::WRITE | share::DELETE;
    let fnum = h0
        .open("excl.txt", rw, share::NONE)
        .unwrap()
        .expect("deny-all open on node 0");
    assert_eq!(
        h1.open("excl.txt", access::READ_DATA, all).unwrap(),
        Err(NT_STATUS_SHARING_VIOLATION),
        "[ctdbd {}] node 1 must see node 0's deny-all open",
        env.samba.ctdbd().display()
    );
    // smbclient on node 1 agrees.
    let out = env
        .samba
        .smbclient(
            1,
            &format!("get excl.txt {}", env.cluster.dir().join("x").display()),
        )
        .unwrap();
    assert!(
        (out.stdout.clone() + &out.stderr).contains("NT_STATUS_SHARING_VIOLATION"),
        "{}{}",
        out.stdout,
        out.stderr
    );
    assert_eq!(h0.close(fnum).unwrap(), Ok(0));
    let f1 = h1
        .open("excl.txt", rw, share::READ)
        .unwrap()
        .expect("open on node 1 after node 0 closed");
    // Now node 1 denies writers; node 0 may read but not write.
    assert_eq!(
        h0.open("excl.txt", rw, all).unwrap(),
        Err(NT_STATUS_SHARING_VIOLATION)
    );
    let f0 = h0
        .open("excl.txt", access::READ_DATA, all)
        .unwrap()
        .expect("read open compatible with node 1's share-read");
    assert_eq!(h0.close(f0).unwrap(), Ok(0));
    assert_eq!(h1.close(f1).unwrap(), Ok(0));
    drop(h0);
    drop(h1);
    // smbtorture's share-mode matrices, first connection on node 0, the
    // second on node 1.
    if samba::smbtorture_available() {
        run_torture(&env, "samba_sharemodes", &SHAREMODE_TORTURE);
    } else {
        eprintln!("samba_sharemodes: smbtorture part SKIPPED (samba-testsuite missing)");
    }
}

const SHAREMODE_TORTURE: [&str; 3] = [
    "smb2.sharemode.sharemode-access",
    "smb2.sharemode.access-sharemode",
    "smb2.sharemode.bug14375",
];

/// Run smbtorture tests with their connections on nodes 0 and 1.
fn run_torture(env: &Env, name: &str, tests: &[&str]) {
    for t in tests {
        let start = Instant::now();
        let out = env
            .samba
            .smbtorture(&[0, 1], &[t], &[], Duration::from_secs(60))
            .expect("run smbtorture");
        let text = out.stdout.clone() + &out.stderr;
        eprintln!("{name}: {t} exit {} in {:?}", out.code(), start.elapsed());
        assert!(
            out.code() == 0 && text.contains("success: ") && !text.contains("failure: "),
            "[ctdbd {}] smbtorture {t} across nodes 0 and 1 (exit {}):\n{text}",
            env.samba.ctdbd().display(),
            out.code()
        );
    }
}

/// Run smbtorture tests with their two connections on nodes 0 and 1.
fn torture_two_nodes(name: &'static str, tests: &[&str]) {
    if !samba::smbtorture_available() {
        eprintln!("{name}: SKIPPED, smbtorture not installed (apt-get install samba-testsuite)");
        return;
    }
    let Some(env) = Env::new(name, 2) else {
        return;
    };
    run_torture(&env, name, tests);
}

#[test]
fn samba_oplock_breaks_across_nodes() {
    torture_two_nodes(
        "samba_oplocks",
        &[
            "smb2.oplock.exclusive1",
            "smb2.oplock.batch1",
            "smb2.oplock.batch10",
        ],
    );
}

#[test]
fn samba_byte_range_locks_across_nodes() {
    torture_two_nodes("samba_brlocks", &["smb2.lock.overlap"]);
}

#[test]
fn samba_smbstatus_lists_other_nodes_sessions_and_opens() {
    let Some(env) = Env::new("samba_smbstatus", 2) else {
        return;
    };
    let mut h1 = env.samba.holder(1).expect("client on node 1");
    let _f = h1
        .open("seen-everywhere.txt", access::READ_DATA, share::READ)
        .unwrap()
        .expect("open on node 1");
    let smbd1 = env.samba.node_processes(1);
    let out = env.samba.smbstatus(0, &[]).expect("smbstatus");
    let text = out.stdout.clone() + &out.stderr;
    assert_eq!(out.code(), 0, "{text}");
    // Server ids of other nodes print as pnn:pid; one of node 1's smbd
    // processes serves the client.
    let served_by_node1 = smbd1.iter().any(|p| text.contains(&format!("1:{p}")));
    assert!(
        served_by_node1,
        "[ctdbd {}] smbstatus on node 0 shows no session/open of node 1 (smbd pids {smbd1:?}):\n{text}",
        env.samba.ctdbd().display()
    );
    assert!(text.contains("seen-everywhere.txt"), "{text}");
    let locked = env.samba.smbstatus(0, &["-L"]).unwrap();
    assert!(
        locked.stdout.contains("seen-everywhere.txt"),
        "{}",
        locked.stdout
    );
    let sessions = env.samba.smbstatus(0, &["-b"]).unwrap();
    assert!(
        smbd1
            .iter()
            .any(|p| sessions.stdout.contains(&format!("1:{p}"))),
        "{}",
        sessions.stdout
    );
}

#[test]
fn samba_survivor_serves_after_a_node_dies_holding_opens() {
    let Some(mut env) = Env::new("samba_nodedeath", 2) else {
        return;
    };
    let cli = cli_from_env();
    let mut h1 = env.samba.holder(1).expect("client on node 1");
    let mut h0 = env.samba.holder(0).expect("client on node 0");
    let rw = access::READ_DATA | access::WRITE_DATA;
    h1.open("held.txt", rw, share::NONE)
        .unwrap()
        .expect("deny-all open on node 1");
    assert_eq!(
        h0.open("held.txt", rw, share::NONE).unwrap(),
        Err(NT_STATUS_SHARING_VIOLATION)
    );

    // Node 1 crashes: its smbd and ctdbd die by SIGKILL.
    let died = Instant::now();
    env.samba.kill_node(1).expect("kill smbd of node 1");
    if let Some(pid) = env.cluster.pid(1) {
        ctdb_tests::sys::send_signal(pid, ctdb_tests::sys::SIGKILL);
    }
    env.cluster.stop_node(1).expect("reap node 1");
    h1.kill();

    // Node 0 notices, recovers, and stays healthy.
    let deadline = Instant::now() + Duration::from_secs(45);
    loop {
        let out = env.cluster.ctdb(0, &cli, &["status"]).expect("status");
        let s = StatusSummary::parse(&out.stdout);
        if s.nodes.len() == 2 && s.nodes[1].2.contains("DISCONNECTED") && s.recovery_normal {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "[ctdbd {}] node 0 never recovered without node 1:\n{}",
            env.samba.ctdbd().display(),
            out.stdout
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    eprintln!(
        "samba_nodedeath: node 0 recovered {:?} after the crash",
        died.elapsed()
    );

    // No stale share-mode entry of the dead node blocks the file.
    let deadline = Instant::now() + Duration::from_secs(30);
    let fnum = loop {
        match h0.open("held.txt", rw, share::NONE).unwrap() {
            Ok(f) => break f,
            Err(st) => assert!(
                Instant::now() < deadline,
                "[ctdbd {}] held.txt still blocked on node 0 (0x{st:08x})",
                env.samba.ctdbd().display()
            ),
        }
        std::thread::sleep(Duration::from_millis(250));
    };
    eprintln!(
        "samba_nodedeath: reopened {:?} after the crash",
        died.elapsed()
    );
    assert_eq!(h0.close(fnum).unwrap(), Ok(0));
    // And smbd on node 0 keeps serving new clients.
    let ls = env.client(0, "ls");
    assert!(ls.contains("held.txt"), "{ls}");
}

/// Route every Samba tool through a counting tap and record which parts of
/// the ctdb client protocol clustered Samba uses for a typical workload
/// (setup with smbpasswd, logins, file I/O, conflicting opens, smbstatus).
/// The relay hides the clients' pids from ctdbd (SO_PEERCRED gives the
/// test's pid), which breaks smbd's liveness checks of remote opens — a
/// finding in itself: a ctdbd must answer CHECK_PID_SRVID from the real
/// peer pid of each client connection.
#[test]
fn samba_ctdb_protocol_usage() {
    if !samba::tools_available() {
        eprintln!("samba_usage: SKIPPED, Samba tools not installed");
        return;
    }
    let ctdbd = ctdb_tests::must_show::ctdbd_under_test();
    eprintln!("samba_usage: running against ctdbd {}", ctdbd.display());
    let mut cluster = Cluster::create_on_free_addresses(2, &ctdbd).expect("create cluster");
    cluster.start_all().expect("start ctdbd");
    cluster
        .wait_all_ok(&cli_from_env(), Duration::from_secs(60))
        .expect("ctdb cluster OK");
    let mut smb = SambaCluster::create_tapped(&cluster).expect("write smb.conf");
    smb.setup(0).expect("setup");
    smb.start_all().expect("start smbd");
    smb.wait_all_ready(Duration::from_secs(60)).expect("ready");
    let mut h0 = smb.holder(0).expect("client 0");
    let mut h1 = smb.holder(1).expect("client 1");
    let f = h0
        .open("u.txt", access::READ_DATA | access::WRITE_DATA, share::NONE)
        .unwrap()
        .unwrap();
    // Through the tap ctdbd sees the relay's pid for every client, so its
    // answer to CHECK_PID_SRVID about node 0's smbd is "gone" and node 1
    // treats the open as stale: the outcome is not checked here (the
    // untapped tests check it), only that the request is answered.
    let _ = h1.open("u.txt", access::READ_DATA, share::READ).unwrap();
    h0.close(f).unwrap().unwrap();
    let out = smb.smbstatus(1, &[]).unwrap();
    assert_eq!(out.code(), 0, "{}", out.stderr);
    drop(h0);
    drop(h1);
    let counts: Vec<_> = (0..2).map(|i| smb.tap_counts(i)).collect();
    let all = samba::tap::TapCounts::sum(&counts);
    println!(
        "[ctdbd {}] what Samba sent to ctdbd (both nodes):\n{}",
        ctdbd.display(),
        all.report()
    );
    // The core of what a ctdbd must serve for Samba.
    for (op, what) in [
        (18, "DB_ATTACH"),
        (61, "DB_ATTACH_PERSISTENT"),
        (23, "REGISTER_SRVID"),
    ] {
        assert!(
            all.controls.contains_key(&op),
            "no {what} seen:\n{}",
            all.report()
        );
    }
    assert!(
        all.operations.contains_key(&0),
        "no REQ_CALL:\n{}",
        all.report()
    );
    // Through the tap CHECK_PID_SRVID fails (see above); every other
    // control must succeed.
    let failed = all.failed_controls();
    assert!(
        failed.is_empty(),
        "[ctdbd {}] controls Samba sent that failed (opcode, status): {failed:?}\n{}",
        ctdbd.display(),
        all.report()
    );
}

/// Contention on one share-mode record from both nodes: smbtorture's
/// `smb2.bench.path-contention-shared` (every connection opens and closes
/// the same path, so the path's locking.tdb record migrates between the
/// nodes all the time) and `smb2.bench.oplock1`, 3 s each, two
/// connections per node. Every open must succeed and no smbd may find a
/// damaged record (smbd panics on one).
#[test]
fn samba_contention_on_one_record_across_nodes() {
    if !samba::smbtorture_available() {
        eprintln!("samba_contention: SKIPPED, smbtorture not installed (samba-testsuite)");
        return;
    }
    let Some(env) = Env::new("samba_contention", 2) else {
        return;
    };
    for test in ["smb2.bench.path-contention-shared", "smb2.bench.oplock1"] {
        let r = env.samba.bench(test, &[0, 1], 4, 3);
        let damaged = env.samba.smbd_log_problems();
        assert!(
            damaged.is_empty(),
            "[ctdbd {}] {test}: smbd logged:\n{}",
            env.samba.ctdbd().display(),
            damaged.join("\n")
        );
        let r = r.unwrap_or_else(|e| panic!("[ctdbd {}] {test}: {e}", env.samba.ctdbd().display()));
        eprintln!(
            "samba_contention: {test} across nodes 0 and 1: {:.0} opens/s",
            r.opens_per_sec
        );
        assert!(r.opens_per_sec > 0.0);
    }
}
