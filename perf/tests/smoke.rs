//! CI smoke test: `ctdb-perf --smoke --ours-only` on a real 2-node cluster
//! of our ctdbd (the release or debug build next to the harness, as CI's
//! `cargo build --workspace --release --bins` leaves it), so the harness,
//! its client, its cluster handling and our daemon's paths it drives cannot
//! rot. Also checks that bad arguments are refused with a message naming
//! them.

use std::path::PathBuf;
use std::process::Command;

fn perf() -> Command {
    Command::new(env!("CARGO_BIN_EXE_ctdb-perf"))
}

fn temp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("ctdb-perf-test-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("create temp dir");
    d
}

/// Our ctdbd and ctdb, built next to the harness binary.
fn ours() -> PathBuf {
    let exe = PathBuf::from(env!("CARGO_BIN_EXE_ctdb-perf"));
    let dir = exe.parent().expect("binary directory").to_path_buf();
    for b in ["ctdbd", "ctdb"] {
        assert!(
            dir.join(b).exists(),
            "{} is not built: the smoke test runs our daemon; build it first \
             (cargo build --release -p ctdb-daemon -p ctdb-cli, or the same \
             profile as this test)",
            dir.join(b).display()
        );
    }
    dir.join("ctdbd")
}

#[test]
fn smoke_runs_every_light_workload_on_ours() {
    let ours = ours();
    let dir = temp_dir("smoke");
    let json = dir.join("out.json");
    let started = std::time::Instant::now();
    let out = perf()
        .args([
            "--smoke",
            "6",
            "--nodes",
            "2",
            "--clients",
            "2",
            "--ours-only",
        ])
        .arg("--ours")
        .arg(&ours)
        .arg("--dir")
        .arg(dir.join("cluster"))
        .arg("--json")
        .arg(&json)
        .output()
        .expect("run ctdb-perf");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "ctdb-perf --smoke failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    for w in [
        "ping",
        "fetch-lock-distinct",
        "fetch-lock-shared",
        "fetch-ring",
        "message-ring",
        "ptrans",
    ] {
        assert!(
            stdout.contains(&format!("| {w} |")),
            "no row for {w}:\n{stdout}"
        );
    }
    let j = std::fs::read_to_string(&json).expect("JSON written");
    assert_eq!(j.matches("\"ok\": true").count(), 6, "{j}");
    assert_eq!(j.matches("\"daemon\": \"ours\"").count(), 6, "{j}");
    assert!(!j.contains("\"daemon\": \"theirs\""), "{j}");
    assert!(!j.contains("\"ok\": false"), "{j}");
    assert!(
        j.contains("counter matches commits on every node and in ctdb pfetch"),
        "{j}"
    );
    assert!(j.contains("counter consistent"), "{j}");
    // No daemon of the run may survive it.
    let pids: Vec<String> = std::fs::read_dir(dir.join("cluster"))
        .into_iter()
        .flatten()
        .flatten()
        .flat_map(|imp| {
            std::fs::read_dir(imp.path())
                .into_iter()
                .flatten()
                .flatten()
        })
        .filter_map(|n| std::fs::read_to_string(n.path().join("run/ctdbd.pid")).ok())
        .collect();
    for pid in pids {
        let pid = pid.trim();
        if let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            let state = stat.rsplit(')').next().unwrap_or("").trim_start();
            assert!(
                state.starts_with('Z') || state.starts_with('X'),
                "ctdbd {pid} still running after ctdb-perf"
            );
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    eprintln!("smoke run took {:.1} s", started.elapsed().as_secs_f64());
}

#[test]
fn bad_arguments_are_named() {
    for (args, needle) in [
        (vec!["--nodes", "0"], "--nodes"),
        (vec!["--workloads", "ping,bogus"], "bogus"),
        (vec!["--net", "10.0.0"], "--net"),
        (vec!["--duration", "0"], "--duration"),
        (vec!["--cores", "5000"], "--cores"),
    ] {
        let out = perf().args(&args).output().expect("run ctdb-perf");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
    }
}
