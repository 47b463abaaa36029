//! A bounded slice of Samba's own CTDB INTEGRATION suite, run by
//! `tests/upstream/run-integration` against a 3-node cluster of Debian's
//! ctdbd (or `$CTDBD`) with our Rust test programs (perf/src/bin) on PATH in
//! place of upstream's C ones.
//!
//! The suite is not in this repository: the script fetches it at run time
//! (Debian's samba source package, or `$SAMBA_MIRROR`), so this test skips,
//! saying why, when it cannot be obtained. The chosen tests are the ones
//! that drive our programs (fetch_ring, message_ring, tunnel_test,
//! update_record, fetch_readonly, update_record_persistent, dummy_client,
//! ctdb-db-test); the whole suite (67 tests, about 45 minutes) is run by
//! hand with the script.
//!
//! The test programs must be built first (`cargo build --release -p
//! ctdb-perf`; scripts/test does it); they are looked up next to this test's
//! binary, or in `$TESTPROGS_DIR`.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ctdb_tests::{ctdbd_from_env, procs, unique_dir, AddrLease};

/// The upstream tests run here, each about 25-60 s against Debian's ctdbd
/// (about 250 s in all).
const CHOSEN: &[&str] = &[
    "simple/basics.005.process_exists",       // dummy_client
    "simple/cluster.020.message_ring",        // message_ring
    "simple/cluster.021.tunnel_ring",         // tunnel_test
    "database/fetch.001.ring",                // fetch_ring
    "database/readonly.001.basic",            // update_record, fetch_readonly
    "database/transaction.004.update_record", // update_record_persistent
    "database/vacuum.031.locked",             // ctdb-db-test, exit 110 on a timeout
];

/// Names of our programs the suite calls.
const PROGRAMS: &[&str] = &[
    "fetch_ring",
    "message_ring",
    "tunnel_test",
    "transaction_loop",
    "update_record",
    "update_record_persistent",
    "fetch_readonly",
    "dummy_client",
    "ctdb-db-test",
];

/// Whole-run budget handed to the script (-T); each test also gets at most
/// PER_TEST seconds.
const BUDGET_SECS: u64 = 420;
const PER_TEST_SECS: u64 = 150;

/// Exit status of the script when the suite cannot be obtained.
const UNAVAILABLE: i32 = 77;

fn programs_dir() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os("TESTPROGS_DIR") {
        return Some(PathBuf::from(d));
    }
    // target/<profile>/deps/upstream_integration-<hash>: try the profile
    // directory, then release.
    let exe = std::env::current_exe().ok()?;
    let profile = exe.parent()?.parent()?;
    let candidates = [profile.to_path_buf(), profile.parent()?.join("release")];
    candidates
        .into_iter()
        .find(|d| PROGRAMS.iter().all(|p| d.join(p).is_file()))
}

#[test]
fn upstream_integration_subset_passes_against_debian_ctdbd() {
    let started = Instant::now();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("upstream/run-integration");
    let Some(progs) = programs_dir() else {
        let msg = "our test programs are not built (cargo build --release -p ctdb-perf)";
        if std::env::var_os("CI").is_some() {
            panic!("{msg}");
        }
        eprintln!("SKIPPED: {msg}");
        return;
    };
    let lease = AddrLease::reserve().expect("reserve a loopback block");
    let octet = lease.first().octets()[2];
    let work = unique_dir("upint");

    let mut cmd = Command::new("bash");
    cmd.arg(&script)
        .arg("-v")
        .args(["-t", &PER_TEST_SECS.to_string()])
        .args(["-T", &BUDGET_SECS.to_string()])
        .args(["-o", &octet.to_string()])
        .arg("-w")
        .arg(&work)
        .arg("-p")
        .arg(&progs)
        .args(CHOSEN)
        .env("CTDBD", ctdbd_from_env())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("start run-integration");
    let pid = child.id();

    // The script bounds itself with -T; this is the backstop.
    let hard_limit = Duration::from_secs(BUDGET_SECS + 90);
    let mut stdout = child.stdout.take().expect("stdout");
    let mut stderr = child.stderr.take().expect("stderr");
    let out_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let status = loop {
        if let Some(st) = child.try_wait().expect("wait for run-integration") {
            break Some(st);
        }
        if started.elapsed() > hard_limit {
            // SIGTERM: the script's trap stops every process of its run.
            procs::terminate(&[pid], Duration::from_secs(15));
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let out = out_reader.join().unwrap_or_default();
    let err = err_reader.join().unwrap_or_default();

    // Nothing of the run may outlive it.
    let left = procs::processes_under(&work);
    let survivors = procs::terminate(&left, Duration::from_secs(5));
    let took = started.elapsed();
    eprintln!("{out}{err}run-integration took {:.0?}", took);

    let Some(status) = status else {
        panic!("run-integration did not finish within {hard_limit:?}");
    };
    if status.code() == Some(UNAVAILABLE) {
        eprintln!("SKIPPED: the upstream suite could not be obtained");
        let _ = std::fs::remove_dir_all(&work);
        return;
    }
    assert!(
        left.is_empty(),
        "processes left behind: {left:?} (survivors {survivors:?})"
    );
    for name in CHOSEN {
        let line = out
            .lines()
            .find(|l| l.ends_with(&format!("  {name}")) || l.contains(&format!("  {name}  -- ")))
            .unwrap_or_else(|| panic!("no result line for {name}"));
        assert!(line.starts_with("PASSED"), "{name}: {line}");
    }
    let expect = format!("integration: {} passed, 0 failed, 0 skipped", CHOSEN.len());
    assert!(out.lines().any(|l| l == expect), "no line {expect:?}");
    assert!(status.success(), "run-integration exited {status}");
    let _ = std::fs::remove_dir_all(&work);
    drop(lease);
}
