//! The `smb-*` workloads: clustered smbd on a two-node cluster of each
//! daemon, driven by smbtorture's `smb2.bench` tests.
//!
//! Why a separate binary: starting clustered smbd (smb.conf per node,
//! shared directory, state directories, stop by pid) is the Samba harness
//! of the `ctdb-tests` crate, and this crate does not depend on that one.
//! Its `samba-bench` binary (built next to this one) runs the workloads
//! for one daemon and prints one line per workload:
//! `NAME ok OPENS CLOSES|- SECS CTDB_CPU SMBD_CPU CLIENT_CPU` or
//! `NAME failed WHY`
//! (written by `ctdb_tests::smbbench::Measured::line`).

use std::path::Path;
use std::process::Command;

use crate::workloads::Outcome;

/// The workload names (as `samba-bench` knows them).
pub const NAMES: &[&str] = &[
    "smb-contention-1node",
    "smb-contention-2nodes",
    "smb-oplock1-1node",
    "smb-oplock1-2nodes",
];

pub fn is_smb(name: &str) -> bool {
    NAMES.contains(&name)
}

/// One workload's outcome and the CPU seconds both daemons spent on it.
pub type SmbRow = (String, Result<Outcome, String>, f64);

/// Reads one `samba-bench` line: `None` if it is not a result line.
pub fn parse_line(line: &str) -> Option<SmbRow> {
    let mut w = line.split_whitespace();
    let name = w.next().filter(|n| is_smb(n))?.to_string();
    match w.next()? {
        "failed" => {
            let why = line.split_once(" failed ").map_or("", |p| p.1);
            Some((name, Err(why.to_string()), 0.0))
        }
        "ok" => {
            let f: Vec<&str> = w.collect();
            let num = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok());
            let parsed = (|| {
                let opens = num(0)?;
                let closes = match *f.get(1)? {
                    "-" => None,
                    v => Some(v.parse::<f64>().ok()?),
                };
                Some((opens, closes, num(2)?, num(3)?, num(4)?, num(5)?))
            })();
            let Some((opens, closes, secs, ctdb_cpu, smbd_cpu, client_cpu)) = parsed else {
                return Some((name, Err(format!("unreadable line '{line}'")), 0.0));
            };
            let per_s = opens + closes.unwrap_or(0.0);
            let ops = (per_s * secs).round() as u64;
            let smbd_per_kop = if ops > 0 {
                smbd_cpu / (ops as f64 / 1000.0)
            } else {
                0.0
            };
            let rates = match closes {
                Some(c) => format!("{opens:.0} opens/s + {c:.0} closes/s"),
                None => format!("{opens:.0} opens/s"),
            };
            let note = format!(
                "{rates}; smbd CPU {smbd_per_kop:.3} s per 1k; {}",
                cpu_split(secs, ctdb_cpu, smbd_cpu, client_cpu, cpus())
            );
            Some((
                name,
                Ok(Outcome {
                    ops,
                    secs,
                    note,
                    ..Outcome::default()
                }),
                ctdb_cpu,
            ))
        }
        _ => Some((name.clone(), Err(format!("unreadable line '{line}'")), 0.0)),
    }
}

/// CPUs of this machine (what the daemons, the smbds and smbtorture share).
fn cpus() -> f64 {
    std::thread::available_parallelism().map_or(1.0, |n| n.get() as f64)
}

/// How the machine's CPU time went during a workload, and what that leaves
/// for a faster ctdbd: when daemons, smbds and clients together keep every
/// CPU busy, a ctdbd that used no CPU at all would give the others at most
/// `busy / (busy - ctdbd)` times the CPU, which bounds its gain.
fn cpu_split(secs: f64, ctdb: f64, smbd: f64, client: f64, cpus: f64) -> String {
    let avail = secs * cpus;
    if avail <= 0.0 {
        return "no CPU split".into();
    }
    let busy = ctdb + smbd + client;
    let pct = |v: f64| 100.0 * v / avail;
    let mut out = format!(
        "of {cpus:.0} CPUs: ctdbd {:.0} %, smbd {:.0} %, smbtorture {:.0} %",
        pct(ctdb),
        pct(smbd),
        pct(client)
    );
    if busy >= 0.9 * avail && busy > ctdb {
        out.push_str(&format!(
            "; CPU-bound: a ctdbd using no CPU would gain at most {:.2}x",
            busy / (busy - ctdb)
        ));
    }
    out
}

/// Runs `names` through `samba-bench` (next to this executable) against
/// `daemon` (waited for with `cli`), `secs` seconds and `nprocs`
/// connections each. Every name gets a row; what did not run says why.
pub fn run(daemon: &Path, cli: &Path, names: &[&String], secs: u32, nprocs: usize) -> Vec<SmbRow> {
    let failed = |why: &str| -> Vec<SmbRow> {
        names
            .iter()
            .map(|n| (n.to_string(), Err(why.to_string()), 0.0))
            .collect()
    };
    let bin = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(|d| d.join("samba-bench")));
    let Some(bin) = bin.filter(|b| b.exists()) else {
        return failed("samba-bench not built (cargo build --release -p ctdb-tests)");
    };
    let list = names
        .iter()
        .map(|s| s.as_str())
        .collect::<Vec<_>>()
        .join(",");
    eprintln!("ctdb-perf: {}: {list} ...", daemon.display());
    let out = match Command::new(&bin)
        .arg("--ctdbd")
        .arg(daemon)
        .arg("--ctdb")
        .arg(cli)
        .args(["--secs", &secs.to_string()])
        .args(["--nprocs", &nprocs.to_string()])
        .args(["--workloads", &list])
        .output()
    {
        Ok(o) => o,
        Err(e) => return failed(&format!("{} could not run: {e}", bin.display())),
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    let mut rows: Vec<SmbRow> = stdout.lines().filter_map(parse_line).collect();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let last_err = stderr.lines().last().unwrap_or("").to_string();
    for n in names {
        if !rows.iter().any(|r| r.0 == **n) {
            rows.push((
                n.to_string(),
                Err(format!(
                    "samba-bench printed no result ({}): {last_err}",
                    out.status
                )),
                0.0,
            ));
        }
    }
    rows
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samba_bench_lines() {
        let line = "smb-contention-2nodes ok 1000.0 990.0 5 1.250 7.500 1.000";
        let (name, r, cpu) = parse_line(line).unwrap();
        assert_eq!(name, "smb-contention-2nodes");
        assert_eq!(cpu, 1.25);
        let o = r.unwrap();
        assert_eq!(o.ops, 9950);
        assert_eq!(o.secs, 5.0);
        assert!(o.note.contains("1000 opens/s + 990 closes/s"), "{}", o.note);
        assert!(o.note.contains("0.754 s per 1k"), "{}", o.note);

        let (_, r, _) = parse_line("smb-oplock1-1node ok 200.5 - 2 0.1 0.2 0.3").unwrap();
        assert_eq!(r.unwrap().ops, 401);

        let (_, r, _) = parse_line("smb-oplock1-2nodes failed smbtorture exited 1").unwrap();
        assert_eq!(r.unwrap_err(), "smbtorture exited 1");
        for bad in [
            "smb-oplock1-2nodes ok 1 x 2 3 4 5",
            "smb-oplock1-2nodes ok 1 - 2 3 4",
            "smb-oplock1-2nodes maybe",
        ] {
            assert!(parse_line(bad).unwrap().1.is_err(), "{bad}");
        }
        assert!(parse_line("(table header)").is_none());
        assert!(parse_line("ping ok 1 2 3 4 5 6").is_none());
    }

    #[test]
    fn cpu_split_bounds_the_gain_only_when_cpu_bound() {
        // 10 s on 2 CPUs, all busy: ctdbd 5 of 20 CPU-seconds.
        let s = cpu_split(10.0, 5.0, 10.0, 5.0, 2.0);
        assert!(s.contains("ctdbd 25 %, smbd 50 %, smbtorture 25 %"), "{s}");
        assert!(s.contains("at most 1.33x"), "{s}");
        // Half idle: latency-bound, no bound printed.
        let s = cpu_split(10.0, 2.0, 6.0, 2.0, 2.0);
        assert!(!s.contains("at most"), "{s}");
    }
}
