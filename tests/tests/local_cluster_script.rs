//! `scripts/local-cluster` (used by the README) sets up the same layout as
//! the Rust harness: start a 2-node cluster of our ctdbd (the default) with it, query it through
//! the script and through the harness's view of the directory, stop it, and
//! check that nothing is left running.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use ctdb_tests::{procs, unique_dir, AddrLease};

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("scripts")
        .join("local-cluster")
}

fn run(dir: &Path, net: &str, args: &[&str]) -> Output {
    Command::new(script())
        .args(args)
        .env("CTDB_LOCAL_DIR", dir)
        .env("CTDB_LOCAL_NET", net)
        .env("CTDB_LOCAL_WAIT", "60")
        .env_remove("CTDBD")
        .env_remove("CTDB")
        .env_remove("CTDB_NODE")
        .output()
        .expect("run scripts/local-cluster")
}

fn text(o: &Output) -> String {
    format!(
        "exit {:?}\n{}{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn script_starts_queries_and_stops_a_two_node_cluster() {
    let lease = AddrLease::reserve().expect("loopback block");
    let first = lease.first().octets();
    let net = format!("{}.{}.{}", first[0], first[1], first[2]);
    let dir = unique_dir("script");

    let start = run(&dir, &net, &["start", "2"]);
    // Stop whatever was started even if an assertion below fails.
    struct Stop<'a>(&'a Path, &'a str);
    impl Drop for Stop<'_> {
        fn drop(&mut self) {
            let _ = run(self.0, self.1, &["stop"]);
            let _ = std::fs::remove_dir_all(self.0);
        }
    }
    let _stop = Stop(&dir, &net);
    assert!(start.status.success(), "start: {}", text(&start));
    assert!(text(&start).contains("all 2 nodes OK"), "{}", text(&start));

    let status = run(&dir, &net, &["ctdb", "status"]);
    assert!(status.status.success(), "{}", text(&status));
    let out = String::from_utf8_lossy(&status.stdout);
    assert!(out.starts_with("Number of nodes:2\n"), "{out}");
    assert!(out.contains(&format!("pnn:0 {net}.1")), "{out}");
    assert!(out.contains("OK (THIS NODE)"), "{out}");

    let running = run(&dir, &net, &["status"]);
    assert_eq!(
        String::from_utf8_lossy(&running.stdout)
            .matches("running, pid")
            .count(),
        2,
        "{}",
        text(&running)
    );
    let pids = procs::processes_under(&dir);
    assert!(pids.len() >= 2, "{pids:?}");

    let stop = run(&dir, &net, &["stop"]);
    assert!(stop.status.success(), "stop: {}", text(&stop));
    assert!(procs::wait_gone(&pids, std::time::Duration::from_secs(1)).is_empty());
    assert!(procs::processes_under(&dir).is_empty());

    // Stopped: the CLI wrapper now refuses, naming the directory.
    let after = run(&dir, &net, &["ctdb", "status"]);
    assert!(!after.status.success());
    assert!(text(&after).contains("no cluster in"), "{}", text(&after));
}
