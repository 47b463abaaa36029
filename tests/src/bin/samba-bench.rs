//! samba-bench: smbtorture's `smb2.bench` workloads against clustered smbd
//! on a two-node cluster of one ctdbd, one result line per workload on
//! stdout (`ctdb-perf` runs it for its `smb-*` rows; see
//! `ctdb_tests::smbbench`).
//!
//! ```text
//! samba-bench --ctdbd PATH [--ctdb CLI] [--secs N] [--nprocs N] [--workloads a,b] [--stats]
//! ```
//!
//! `--stats`: after each workload, both nodes' `ctdb statistics` (reset
//! before it) on stderr, to compare what smbd asked of each daemon.

use std::path::PathBuf;
use std::process::ExitCode;

use ctdb_tests::{samba, smbbench, DEBIAN_CTDB, DEBIAN_CTDBD};

struct Args {
    ctdbd: PathBuf,
    ctdb: PathBuf,
    secs: u32,
    nprocs: u32,
    workloads: Vec<String>,
    stats: bool,
}

const USAGE: &str = "usage: samba-bench [--ctdbd PATH] [--ctdb CLI] [--secs N] [--nprocs N] \
                     [--workloads smb-contention-1node,...] [--stats]";

/// `val` of option `what` as a whole number in 1..=`max`.
fn number(what: &str, val: &str, max: u32) -> Result<u32, String> {
    match val.parse::<u32>() {
        Ok(n) if (1..=max).contains(&n) => Ok(n),
        _ => Err(format!(
            "{what} must be a whole number 1..{max}, got '{val}'"
        )),
    }
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        ctdbd: PathBuf::from(DEBIAN_CTDBD),
        ctdb: PathBuf::from(DEBIAN_CTDB),
        secs: 5,
        nprocs: 4,
        workloads: smbbench::WORKLOADS
            .iter()
            .map(|w| w.0.to_string())
            .collect(),
        stats: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(opt) = it.next() {
        let mut value = || {
            it.next()
                .ok_or_else(|| format!("{opt} needs a value\n{USAGE}"))
        };
        match opt.as_str() {
            "--help" | "-h" => return Err(USAGE.to_string()),
            "--stats" => a.stats = true,
            "--ctdbd" => a.ctdbd = PathBuf::from(value()?),
            "--ctdb" => a.ctdb = PathBuf::from(value()?),
            "--secs" => a.secs = number("--secs", &value()?, 3600)?,
            "--nprocs" => a.nprocs = number("--nprocs", &value()?, 64)?,
            "--workloads" => {
                a.workloads = value()?
                    .split(',')
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty())
                    .collect();
                for w in &a.workloads {
                    if !smbbench::WORKLOADS.iter().any(|k| k.0 == w) {
                        return Err(format!(
                            "unknown workload '{w}' (known: {})",
                            smbbench::WORKLOADS.map(|k| k.0).join(", ")
                        ));
                    }
                }
            }
            _ => return Err(format!("unknown option '{opt}'\n{USAGE}")),
        }
    }
    // The cluster harness starts daemons from their node directories, so a
    // relative path given here must be made absolute before it is handed on.
    for (what, p) in [("--ctdbd", &mut a.ctdbd), ("--ctdb", &mut a.ctdb)] {
        *p = std::fs::canonicalize(&*p).map_err(|e| format!("{what} {}: {e}", p.display()))?;
    }
    Ok(a)
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("samba-bench: {e}");
            return ExitCode::from(2);
        }
    };
    if !samba::tools_available() || !samba::smbtorture_available() {
        for w in &args.workloads {
            println!("{w} failed needs samba, smbclient and samba-testsuite installed");
        }
        return ExitCode::FAILURE;
    }
    match smbbench::run(
        &args.ctdbd,
        &args.ctdb,
        &args.workloads,
        args.secs,
        args.nprocs,
        args.stats,
    ) {
        Ok(results) => {
            let mut ok = true;
            for (w, r) in args.workloads.iter().zip(&results) {
                match r {
                    Ok(m) => println!("{}", m.line()),
                    Err(e) => {
                        ok = false;
                        eprintln!("samba-bench: {w}: {e}");
                        let first = e.lines().next().unwrap_or("failed");
                        println!("{w} failed {first}");
                    }
                }
            }
            if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            let why = e.to_string();
            eprintln!("samba-bench: {why}");
            let first = why.lines().next().unwrap_or("failed");
            for w in &args.workloads {
                println!("{w} failed cluster or smbd did not start: {first}");
            }
            ExitCode::FAILURE
        }
    }
}
