//! Our `ctdbd` with data cores (`--cores 2`, and 3 where the machine has
//! the CPUs): the stock `/usr/bin/ctdb` writes, reads, deletes and lists
//! many keys of a volatile database, so every data shard gets keys; the
//! data cores must really have served the REQ_CALLs (each logs how many it
//! served when it stops), and whole-database operations (wipedb: freeze,
//! transaction, wipe, thaw) still work with the shards attached.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const CTDBD: &str = env!("CARGO_BIN_EXE_ctdbd");
const CTDB: &str = "/usr/bin/ctdb";

struct Node {
    base: PathBuf,
    sock: PathBuf,
    child: Option<Child>,
}

impl Node {
    fn start(tag: &str, cores: usize) -> Node {
        let base = std::env::temp_dir().join(format!("ctdb-cores-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        for sub in [
            "volatile",
            "persistent",
            "state",
            "run",
            "var",
            "events/legacy",
        ] {
            std::fs::create_dir_all(base.join(sub)).unwrap();
        }
        let addr = format!(
            "127.{}.{}.{}",
            100 + std::process::id() % 100,
            std::process::id() / 100 % 250 + 1,
            20 + cores
        );
        std::fs::write(base.join("nodes"), format!("{addr}\n")).unwrap();
        let conf = format!(
            "[logging]\n\tlocation = file:{0}/log.ctdb\n\tlog level = INFO\n\
             [cluster]\n\tnode address = {addr}\n\
             [database]\n\tvolatile database directory = {0}/volatile\n\
             \tpersistent database directory = {0}/persistent\n\
             \tstate database directory = {0}/state\n\
             [legacy]\n\trealtime scheduling = false\n",
            base.display()
        );
        std::fs::write(base.join("ctdb.conf"), conf).unwrap();
        let sock = base.join("run/ctdbd.socket");
        let child = Command::new(CTDBD)
            .args(["-i", "--nosetsched", "--cores", &cores.to_string()])
            .env("CTDB_TEST_MODE", "1")
            .env("CTDB_BASE", &base)
            .env("CTDB_SOCKET", &sock)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(base.join("ctdbd.stderr")).expect("stderr file"))
            .spawn()
            .expect("start ctdbd");
        let mut n = Node {
            base,
            sock,
            child: Some(child),
        };
        let end = Instant::now() + Duration::from_secs(30);
        loop {
            assert!(
                matches!(n.child.as_mut().unwrap().try_wait(), Ok(None)),
                "ctdbd exited: {}",
                n.log()
            );
            let (ok, out) = n.ctdb(&["runstate"]);
            if ok && out.contains("RUNNING") {
                break;
            }
            assert!(
                Instant::now() < end,
                "ctdbd not RUNNING: {out}\n{}",
                n.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        n
    }

    fn log(&self) -> String {
        // With -i ctdbd logs to stderr, which goes to this file.
        std::fs::read_to_string(self.base.join("ctdbd.stderr")).unwrap_or_default()
    }

    fn ctdb(&self, args: &[&str]) -> (bool, String) {
        let mut child = Command::new(CTDB)
            .args(args)
            .env("CTDB_SOCKET", &self.sock)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run ctdb");
        let start = Instant::now();
        let end = start + Duration::from_secs(30);
        while child.try_wait().unwrap().is_none() {
            if Instant::now() > end {
                let _ = child.kill();
                let _ = child.wait();
                return (false, format!("ctdb {args:?} timed out"));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let o = child.wait_with_output().unwrap();
        eprintln!("ctdb {args:?}: {:?}", start.elapsed());
        (
            o.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            ),
        )
    }

    fn ok(&self, args: &[&str]) -> String {
        let (ok, out) = self.ctdb(args);
        assert!(ok, "ctdb {args:?}: {out}\nlog:\n{}", self.log());
        out
    }
}

impl Node {
    /// Stops the daemon (SIGTERM to its PID, then SIGKILL after 10 s);
    /// whether it ended on SIGTERM.
    fn stop(&mut self) -> bool {
        let Some(mut c) = self.child.take() else {
            return false;
        };
        let _ = Command::new("kill")
            .args(["-TERM", &c.id().to_string()])
            .status();
        let end = Instant::now() + Duration::from_secs(10);
        while matches!(c.try_wait(), Ok(None)) && Instant::now() < end {
            std::thread::sleep(Duration::from_millis(20));
        }
        let clean = matches!(c.try_wait(), Ok(Some(_)));
        let _ = c.kill();
        let _ = c.wait();
        clean
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .status();
            let end = Instant::now() + Duration::from_secs(10);
            while matches!(c.try_wait(), Ok(None)) && Instant::now() < end {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_dir_all(&self.base);
    }
}

/// The calls each data shard served, from its stop log line.
fn served_calls(log: &str) -> Vec<(usize, u64)> {
    let mut v = Vec::new();
    for line in log.lines() {
        let Some(rest) = line.split("data core for shard ").nth(1) else {
            continue;
        };
        let mut words = rest.split_whitespace();
        let shard = words.next().and_then(|w| w.parse().ok());
        let calls = rest
            .split("after serving ")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .and_then(|w| w.parse().ok());
        if let (Some(s), Some(c)) = (shard, calls) {
            v.push((s, c));
        }
    }
    v.sort();
    v
}

fn run_with_cores(cores: usize) {
    const KEYS: usize = 48;
    let mut n = Node::start("rw", cores);
    let db = "cores_test.tdb";
    n.ok(&["attach", db]);
    for i in 0..KEYS {
        n.ok(&["writekey", db, &format!("key-{i}"), &format!("value-{i}")]);
    }
    for i in 0..KEYS {
        let out = n.ok(&["readkey", db, &format!("key-{i}")]);
        assert!(
            out.contains(&format!(
                "Data: size:{} ptr:[value-{i}]",
                format!("value-{i}").len()
            )),
            "key-{i}: {out}"
        );
    }
    for i in (0..KEYS).step_by(3) {
        n.ok(&["deletekey", db, &format!("key-{i}")]);
    }
    let cat = n.ok(&["catdb", db]);
    let left = KEYS - KEYS.div_ceil(3);
    assert!(cat.contains(&format!("Dumped {left} records")), "{cat}");
    for i in 0..KEYS {
        let present = cat.contains(&format!("key(5) = \"key-{i}\""))
            || cat.contains(&format!("key({}) = \"key-{i}\"", format!("key-{i}").len()));
        assert_eq!(present, i % 3 != 0, "key-{i} in catdb:\n{cat}");
    }
    // Whole-database work stays on the control core while shards hold
    // their partitions open: wipe (freeze, transaction, thaw), then the
    // shards serve calls again.
    n.ok(&["wipedb", db]);
    let cat = n.ok(&["catdb", db]);
    assert!(cat.contains("Dumped 0 records"), "{cat}");
    for i in 0..KEYS / 2 {
        n.ok(&["writekey", db, &format!("again-{i}"), "x"]);
    }
    let cat = n.ok(&["catdb", db]);
    assert!(
        cat.contains(&format!("Dumped {} records", KEYS / 2)),
        "{cat}"
    );
    let stats = n.ok(&["dbstatistics", db]);
    assert!(stats.contains("DB Statistics"), "{stats}");

    assert!(n.stop(), "ctdbd did not stop on SIGTERM");
    let log = n.log();
    let served = served_calls(&log);
    assert_eq!(
        served.iter().map(|s| s.0).collect::<Vec<_>>(),
        (0..cores - 1).collect::<Vec<_>>(),
        "every data shard logged its stop:\n{log}"
    );
    let total: u64 = served.iter().map(|s| s.1).sum();
    eprintln!("{cores} cores: calls served per shard {served:?}");
    for (shard, calls) in &served {
        assert!(*calls > 0, "shard {shard} served no call:\n{log}");
    }
    // One migration call per new key at least (writekey of a key this node
    // is not yet dmaster of), all on the data cores.
    assert!(total >= (KEYS + KEYS / 2) as u64, "{served:?}");
    assert!(
        log.contains("served by"),
        "attach on the data cores logged:\n{log}"
    );
}

#[test]
fn two_cores_data_core_serves_calls() {
    run_with_cores(2);
}

#[test]
fn three_cores_where_the_cpus_allow() {
    let cpus = ctdb_daemon::sys::affinity(0).map(|c| c.len()).unwrap_or(1);
    if cpus >= 3 {
        run_with_cores(3);
        return;
    }
    // Fewer CPUs than cores: ctdbd refuses at start with a clear error
    // instead of putting two pinned cores on one CPU.
    let base = std::env::temp_dir().join(format!("ctdb-cores-3-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    std::fs::create_dir_all(base.join("run")).unwrap();
    std::fs::write(base.join("nodes"), "127.0.0.1\n").unwrap();
    std::fs::write(
        base.join("ctdb.conf"),
        format!("[logging]\n\tlocation = file:{}/log.ctdb\n", base.display()),
    )
    .unwrap();
    let out = Command::new(CTDBD)
        .args(["-i", "--nosetsched", "--cores", "3"])
        .env("CTDB_TEST_MODE", "1")
        .env("CTDB_BASE", &base)
        .env("CTDB_SOCKET", base.join("run/ctdbd.socket"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .expect("run ctdbd");
    let log = std::fs::read_to_string(base.join("log.ctdb")).unwrap_or_default();
    let all = format!(
        "{}{}{log}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let _ = std::fs::remove_dir_all(&base);
    assert!(
        !out.status.success(),
        "ctdbd --cores 3 on {cpus} CPUs started:\n{all}"
    );
    assert!(
        all.contains("3") && all.to_lowercase().contains("cpu"),
        "error names cores and CPUs:\n{all}"
    );
}
