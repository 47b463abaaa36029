//! Random command lines through our `ctdb` and Debian's, with no daemon
//! listening: option parsing (popt rules), usage and help output, unknown
//! commands, node checks and the "cannot connect" path must give the same
//! stdout, stderr and exit code.
//!
//! Seeded xorshift; the seed is printed on failure and `CTDB_TEST_SEED`
//! replays a run.

use std::process::{Command, Stdio};

const OURS: &str = env!("CARGO_BIN_EXE_ctdb");
const DEBIAN: &str = "/usr/bin/ctdb";

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    fn pick<'a>(&mut self, v: &[&'a str]) -> &'a str {
        v[(self.next() % v.len() as u64) as usize]
    }
}

const OPTIONS: &[&str] = &[
    "-n",
    "-n0",
    "-n1",
    "-n",
    "--node",
    "--node=0",
    "--node=x",
    "-Y",
    "-X",
    "-x",
    "-x:",
    "-YX",
    "-Yn0",
    "-t",
    "-t5",
    "--timelimit=3",
    "-T",
    "-T30",
    "--maxruntime=20",
    "-v",
    "--verbose",
    "-d",
    "-dINFO",
    "--debug=NOTICE",
    "--",
    "-q",
    "--foo",
    "--usage",
    "-?",
    "--help",
    "-h",
    "--help=1",
    "--verbose=1",
    "-",
    "-nn",
    "-Yq",
];

const VALUES: &[&str] = &[
    "0",
    "1",
    "2",
    "-1",
    "-2",
    "x",
    "0x10",
    "010",
    "08",
    "",
    " 5",
    "+1",
    "2147483648",
    "-2147483649",
    "1e3",
    "0x",
    "99999999999999999999",
];

/// Commands that need no daemon or stop at the connection; none of them
/// touches the system (no tickle, no helpers).
const COMMANDS: &[&str] = &[
    "status",
    "pnn",
    "ping",
    "version",
    "listnodes",
    "getvar",
    "setvar",
    "nodestatus",
    "ip",
    "catdb",
    "readkey",
    "dumpdbbackup",
    "bogus",
    "Status",
    "",
    "process-exists",
    "uptime",
    "attach",
    "leader",
    "stats",
];

const ARGS: &[&str] = &[
    "all",
    "a.tdb",
    "key",
    "0x00",
    "1",
    "/nonexistent",
    "-",
    "x y",
];

fn random_args(rng: &mut Rng) -> Vec<String> {
    let mut v = Vec::new();
    let n = 1 + rng.next() % 5;
    for _ in 0..n {
        match rng.next() % 6 {
            0 | 1 => v.push(rng.pick(OPTIONS).to_string()),
            2 => v.push(rng.pick(VALUES).to_string()),
            3 | 4 => v.push(rng.pick(COMMANDS).to_string()),
            _ => v.push(rng.pick(ARGS).to_string()),
        }
    }
    v
}

fn run(cli: &str, args: &[String], base: &std::path::Path) -> (String, String, i32) {
    let out = Command::new(cli)
        .args(args)
        .env_remove("CTDB_TIMEOUT")
        .env_remove("CTDB_TOOL_SETPGID")
        .env("CTDB_TEST_MODE", "yes")
        .env("CTDB_BASE", base)
        .env("CTDB_SOCKET", base.join("no-such.socket"))
        .stdin(Stdio::null())
        .output()
        .expect("run cli");
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        out.status.code().unwrap_or(-1),
    )
}

#[test]
fn random_command_lines_match_debian_without_daemon() {
    let seed = std::env::var("CTDB_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1)
                | 1
        });
    let top = std::env::temp_dir().join(format!("ctdb-cli-opts-{}", std::process::id()));
    // Three CTDB_BASE directories: a nodes file with a local address (the
    // connect failure then says no more than "Failed to connect"), one with
    // only addresses this host does not have, and none at all.
    let bases: Vec<std::path::PathBuf> = ["local", "remote", "missing"]
        .iter()
        .map(|n| top.join(n))
        .collect();
    for b in &bases {
        std::fs::create_dir_all(b).expect("temp dir");
    }
    std::fs::write(bases[0].join("nodes"), "127.0.0.1\n#127.0.0.2\n127.0.0.3\n").expect("nodes");
    std::fs::write(bases[1].join("nodes"), "192.0.2.77\n\n 198.51.100.9 \n").expect("nodes");

    let mut rng = Rng(seed);
    let mut failures = Vec::new();
    let cases = 250;
    for _ in 0..cases {
        let args = random_args(&mut rng);
        let base = &bases[(rng.next() % 3) as usize];
        let ours = run(OURS, &args, base);
        let theirs = run(DEBIAN, &args, base);
        if ours != theirs {
            failures.push(format!(
                "[{}] ctdb {:?}\n--- ours (exit {}):\n{}{}--- debian (exit {}):\n{}{}",
                base.display(),
                args,
                ours.2,
                ours.0,
                ours.1,
                theirs.2,
                theirs.0,
                theirs.1
            ));
        }
    }
    let _ = std::fs::remove_dir_all(&top);
    assert!(
        failures.is_empty(),
        "seed {seed}: {} of {cases} command lines differ:\n\n{}",
        failures.len(),
        failures.join("\n")
    );
}
