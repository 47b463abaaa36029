//! `onnode` against a real local cluster, set up like upstream's
//! `local_daemons.sh`: three ctdbd (Debian's, or `$CTDBD`) on loopback
//! addresses, `ONNODE_SSH` running each command locally in the node's
//! environment (its `CTDB_BASE` and socket), and the real `ctdb` CLI
//! (Debian's, or `$CTDB`) answering `ctdb -X status` for `ok`/`con` and
//! `ctdb pnn` for `any`. Ours and Debian's onnode must print the same, with
//! all nodes up and with one node stopped.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ctdb_tests::{cli_from_env, ctdbd_from_env, Cluster};

const OURS: &str = env!("CARGO_BIN_EXE_onnode");
const DEBIAN: &str = "/usr/bin/onnode";

/// local_daemons.sh's `ssh`: find the node by address in the cluster's
/// nodes file, load its environment, run the command here.
const CLUSTER_SSH: &str = r#"#!/bin/sh
close=false
if [ "$1" = "-n" ]; then close=true; shift; fi
ip="$1"; shift
num=$(awk -v ip="$ip" '$1 == ip { print NR }' "$CLUSTER_DIR/nodes")
if [ -z "$num" ]; then echo "no node with address $ip" >&2; exit 255; fi
. "$ENV_DIR/env.$((num - 1))"
if $close; then exec sh -c "$*" </dev/null; else exec sh -c "$*"; fi
"#;

struct Setup {
    cluster: Cluster,
    tools: PathBuf,
}

impl Setup {
    fn new() -> Setup {
        let mut cluster =
            Cluster::create_on_free_addresses(3, ctdbd_from_env()).expect("create cluster");
        cluster.start_all().expect("start daemons");
        cluster
            .wait_all_ok(&cli_from_env(), Duration::from_secs(90))
            .expect("cluster OK");
        let tools = cluster.dir().join("onnode-tools");
        std::fs::create_dir_all(tools.join("bin")).expect("mkdir");
        for i in 0..cluster.len() {
            let mut text = String::new();
            for (k, v) in cluster.env(i).expect("env") {
                text.push_str(&format!("export {k}='{v}'\n"));
            }
            std::fs::write(tools.join(format!("env.{i}")), text).expect("env file");
        }
        let ssh = tools.join("ssh");
        std::fs::write(&ssh, CLUSTER_SSH).expect("ssh script");
        std::fs::set_permissions(&ssh, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        std::os::unix::fs::symlink(cli_from_env(), tools.join("bin/ctdb")).expect("ctdb link");
        Setup { cluster, tools }
    }

    fn run(&self, bin: &str, args: &[&str]) -> (Option<i32>, String, String) {
        let path = format!(
            "{}:{}",
            self.tools.join("bin").display(),
            std::env::var("PATH").unwrap_or_else(|_| "/usr/bin:/bin".into())
        );
        let o = Command::new(bin)
            .arg0(DEBIAN)
            .args(args)
            // onnode itself runs `ctdb -X status` as a client of node 0.
            .envs(self.cluster.env(0).expect("env"))
            .env("CTDB_BASE", self.cluster.dir())
            .env("ONNODE_SSH", self.tools.join("ssh"))
            .env("CLUSTER_DIR", self.cluster.dir())
            .env("ENV_DIR", &self.tools)
            .env("PATH", path)
            .stdin(Stdio::null())
            .output()
            .expect("run onnode");
        (
            o.status.code(),
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    }

    fn compare(&self, args: &[&str], sorted: bool) -> (Option<i32>, String, String) {
        let norm = |mut r: (Option<i32>, String, String)| {
            if sorted {
                let mut l: Vec<&str> = r.1.lines().collect();
                l.sort_unstable();
                r.1 = l.join("\n");
                let mut l: Vec<&str> = r.2.lines().collect();
                l.sort_unstable();
                r.2 = l.join("\n");
            }
            r
        };
        let d = norm(self.run(DEBIAN, args));
        let o = norm(self.run(OURS, args));
        assert_eq!(o, d, "onnode {args:?}: ours (left) vs Debian (right)");
        o
    }

    fn addr(&self, i: usize) -> String {
        self.cluster.addr(i).expect("addr").to_string()
    }
}

#[test]
fn onnode_on_a_real_cluster_matches_debian() {
    assert!(
        Path::new(DEBIAN).exists(),
        "{DEBIAN} is missing (install ctdb)"
    );
    let mut s = Setup::new();
    let (a0, a1, a2) = (s.addr(0), s.addr(1), s.addr(2));

    let o = s.compare(&["-q", "all", "ctdb pnn"], false);
    assert_eq!(o.1, "0\n1\n2\n");
    let o = s.compare(&["all", "ctdb pnn"], false);
    assert_eq!(
        o.2,
        format!("\n>> NODE: {a0} <<\n\n>> NODE: {a1} <<\n\n>> NODE: {a2} <<\n")
    );
    let o = s.compare(&["-p", "all", "ctdb pnn"], true);
    assert_eq!(o.1, format!("[{a0}] 0\n[{a1}] 1\n[{a2}] 2"));
    s.compare(&["0,2", "ctdb pnn"], false);
    let o = s.compare(&["ok", "ctdb pnn"], false);
    assert_eq!(o.1, "0\n1\n2\n");
    let o = s.compare(&["con", "echo $CTDB_BASE"], false);
    assert_eq!(o.1.lines().count(), 3);
    let o = s.run(OURS, &["any", "ctdb pnn"]);
    assert_eq!(o.0, Some(0));
    assert!(["0\n", "1\n", "2\n"].contains(&o.1.as_str()), "{o:?}");

    // Node 2 down: it drops out of `con`/`ok`, `all` reports its failure.
    s.cluster.stop_node(2).expect("stop node 2");
    let start = Instant::now();
    loop {
        let st = s
            .cluster
            .ctdb(0, &cli_from_env(), &["-X", "status"])
            .expect("status");
        if st
            .stdout
            .lines()
            .any(|l| l.starts_with("|2|") && l.split('|').nth(3) == Some("1"))
        {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "node 2 never shown disconnected: {}",
            st.stdout
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let o = s.compare(&["con", "ctdb pnn"], false);
    assert_eq!(o.1, "0\n1\n");
    let o = s.compare(&["ok", "ctdb pnn"], false);
    assert_eq!(o.1, "0\n1\n");
    let o = s.compare(&["-q", "all", "ctdb pnn"], false);
    assert_ne!(o.0, Some(0), "a stopped node must fail: {o:?}");
    s.compare(&["-pq", "all", "ctdb pnn"], true);
    let o = s.run(OURS, &["any", "echo $CTDB_BASE"]);
    assert_eq!(o.0, Some(0));
    assert!(o.1.contains("node.0") || o.1.contains("node.1"), "{o:?}");
    s.cluster.stop_all().expect("stop cluster");
}
