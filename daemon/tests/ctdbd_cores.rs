//! Our `ctdbd` with data cores (`--cores 2`, and 3 where the machine has
//! the CPUs): the stock `/usr/bin/ctdb` writes, reads, deletes and lists
//! many keys of a volatile database, so every data shard gets keys; the
//! data cores must really have served the REQ_CALLs (each logs how many it
//! served when it stops), and whole-database operations (wipedb: freeze,
//! transaction, wipe, thaw) still work with the shards attached.

use std::process::{Command, Stdio};

mod one_node;
use one_node::Node;

const CTDBD: &str = env!("CARGO_BIN_EXE_ctdbd");

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
    let mut n = Node::start(
        &format!("ctdb-cores-rw{cores}"),
        20 + cores as u32,
        &["--cores", &cores.to_string()],
    );
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
