//! ctdb-perf: our ctdbd against Samba's, side by side, on local clusters.
//!
//! Why: the Rust daemon is meant as a drop-in for Samba 4.17's ctdbd, so
//! every claim about speed must be measured against the real thing on the
//! same machine, with the same client code and the same cluster layout.
//! The harness starts an N-node cluster on 127.X.Y.n with each daemon in
//! turn (through `scripts/local-cluster`), runs bounded workloads through
//! its own client ([`client`]), records throughput, latency percentiles,
//! the daemons' CPU time per thousand operations and their peak RSS, stops
//! the cluster by pid, and prints `workload | theirs | ours | ratio`
//! (optionally JSON). A daemon that cannot form a cluster gets a row saying
//! so instead of numbers.
//!
//! `--smoke SECS` is the CI mode: a few seconds of the light workloads on
//! ours if it forms a cluster, else on Samba's (`--smoke SECS --ours-only`,
//! what CI runs: on ours, failing if it does not form one); the exit status
//! is non-zero if any workload fails.

#![deny(unsafe_code)]

use ctdb_perf::{client, cluster, error, sys};
mod smb;
mod workloads;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use clap::Parser;

use cluster::Cluster;
use error::{PerfError, Result};
use workloads::{Outcome, Params};

#[derive(Parser, Debug, Clone)]
#[command(
    name = "ctdb-perf",
    about = "Benchmark our ctdbd against Samba's on local N-node clusters"
)]
struct Args {
    /// Nodes per cluster (127.X.Y.1 .. 127.X.Y.N).
    #[arg(long, default_value_t = 3)]
    nodes: usize,
    /// Data cores per node for our daemon: it runs with --cores=N+1 (one
    /// control core plus N data cores); 0 runs it with --cores=1 (one
    /// executor serving control and data). Our daemon needs that many CPUs.
    /// Without this option ours runs with its default configuration (no
    /// --cores).
    #[arg(long)]
    cores: Option<usize>,
    /// Seconds per throughput workload.
    #[arg(long, default_value_t = 5.0)]
    duration: f64,
    /// Client connections per node.
    #[arg(long, default_value_t = 4)]
    clients: usize,
    /// Keys: the shared pool of fetch-lock-shared, spread over the clients
    /// for fetch-lock-distinct.
    #[arg(long, default_value_t = 1000)]
    keys: usize,
    /// Comma-separated workloads (default: all). Known: ping,
    /// fetch-lock-distinct, fetch-lock-shared, fetch-ring, message-ring,
    /// ptrans, recovery-10k, recovery-100k, recovery-1m (any
    /// recovery-<N>[k|m]), failover, and clustered smbd under smbtorture on
    /// a two-node cluster (samba-bench, needs samba and samba-testsuite):
    /// smb-contention-1node, smb-contention-2nodes, smb-oplock1-1node,
    /// smb-oplock1-2nodes.
    #[arg(long, value_delimiter = ',')]
    workloads: Vec<String>,
    /// Only our daemon.
    #[arg(long, conflicts_with = "theirs_only")]
    ours_only: bool,
    /// Only Samba's daemon.
    #[arg(long)]
    theirs_only: bool,
    /// CI mode: about SECS seconds of light workloads on ours if it forms
    /// a cluster, else on Samba's (with --ours-only: on ours, failing if it
    /// does not form one); fails if any workload fails.
    #[arg(long, value_name = "SECS")]
    smoke: Option<f64>,
    /// Write the results as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Our daemon (default: the ctdbd built next to this binary, else
    /// <repo>/target/release/ctdbd).
    #[arg(long)]
    ours: Option<PathBuf>,
    /// Samba's daemon.
    #[arg(long, default_value = "/usr/sbin/ctdbd")]
    theirs: PathBuf,
    /// State directory (default: <tmp>/ctdb-perf-<pid>).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// First three octets of the node addresses of the first cluster
    /// (default: from the pid); each later cluster of the run moves the
    /// third octet on by one.
    #[arg(long)]
    net: Option<String>,
    /// Repository root holding scripts/local-cluster.
    #[arg(long)]
    repo: Option<PathBuf>,
    /// Seconds to wait for a cluster to become all OK.
    #[arg(long, default_value_t = 60)]
    start_wait: u64,
    /// Skip the engine-bench and codec-bench runs.
    #[arg(long)]
    no_bench: bool,
}

/// A small xorshift generator (seeded per client) for key choice.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next_u64() % n
        }
    }
}

/// One workload on one daemon.
struct Row {
    workload: String,
    imp: &'static str,
    result: std::result::Result<Outcome, String>,
    cpu_s: f64,
    peak_rss_kib: u64,
}

impl Row {
    /// The headline number and whether higher is better.
    fn headline(&self) -> Option<(f64, bool)> {
        let o = self.result.as_ref().ok()?;
        match o.elapsed {
            Some(t) => Some((t, false)),
            None => Some((o.ops_per_s(), true)),
        }
    }
    fn cpu_per_kop(&self) -> Option<f64> {
        let o = self.result.as_ref().ok()?;
        if o.elapsed.is_some() || o.ops == 0 {
            return None;
        }
        Some(self.cpu_s / (o.ops as f64 / 1000.0))
    }
}

fn metric_name(workload: &str) -> &'static str {
    if smb::is_smb(workload) {
        return "open+close/s";
    }
    if workloads::needs_fresh_cluster(workload) {
        "seconds"
    } else {
        match workload {
            "fetch-ring" => "migrations/s",
            "message-ring" => "messages/s",
            "ptrans" => "commits/s",
            "ping" => "pings/s",
            _ => "ops/s",
        }
    }
}

fn repo_root(args: &Args) -> PathBuf {
    if let Some(r) = &args.repo {
        return r.clone();
    }
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

/// `base` (`127.A.B`) moved on by `k` in its last octet, wrapping within 1..=254.
fn next_net(base: &str, k: u32) -> String {
    let (head, last) = base.rsplit_once('.').unwrap_or(("127.0", "1"));
    let b = last.parse::<u32>().unwrap_or(1);
    let v = (b.saturating_sub(1) + k) % 254 + 1;
    format!("{head}.{v}")
}

fn default_net() -> String {
    let pid = std::process::id();
    format!("127.{}.{}", 100 + pid % 100, (pid / 100) % 250 + 1)
}

fn validate(args: &Args) -> Result<Vec<String>> {
    if args.nodes == 0 || args.nodes > 254 {
        return Err(PerfError::Args(format!(
            "--nodes must be 1..254, got {}",
            args.nodes
        )));
    }
    if args.clients == 0 || args.clients > 256 {
        return Err(PerfError::Args(format!(
            "--clients must be 1..256, got {}",
            args.clients
        )));
    }
    if let Some(c) = args.cores.filter(|&c| c > 1023) {
        return Err(PerfError::Args(format!("--cores must be 0..1023, got {c}")));
    }
    if !(args.duration > 0.0 && args.duration <= 3600.0) {
        return Err(PerfError::Args(format!(
            "--duration must be in (0, 3600] seconds, got {}",
            args.duration
        )));
    }
    if let Some(s) = args.smoke {
        if !(s > 0.0 && s <= 600.0) {
            return Err(PerfError::Args(format!(
                "--smoke must be in (0, 600] seconds, got {s}"
            )));
        }
    }
    if let Some(net) = &args.net {
        let parts: Vec<&str> = net.split('.').collect();
        if parts.len() != 3 || parts[0] != "127" || parts.iter().any(|p| p.parse::<u8>().is_err()) {
            return Err(PerfError::Args(format!(
                "--net must be three octets starting with 127 (e.g. 127.0.5), got '{net}'"
            )));
        }
    }
    let list: Vec<String> = if !args.workloads.is_empty() {
        args.workloads
            .iter()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect()
    } else if args.smoke.is_some() {
        [
            "ping",
            "fetch-lock-distinct",
            "fetch-lock-shared",
            "fetch-ring",
            "message-ring",
            "ptrans",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    } else {
        workloads::ALL
            .iter()
            .chain(smb::NAMES)
            .map(|s| s.to_string())
            .collect()
    };
    for w in &list {
        if !workloads::ALL.contains(&w.as_str())
            && workloads::recovery_records(w).is_none()
            && !smb::is_smb(w)
        {
            return Err(PerfError::Args(format!(
                "unknown workload '{w}' (known: {}, {})",
                workloads::ALL.join(", "),
                smb::NAMES.join(", ")
            )));
        }
    }
    Ok(list)
}

/// Our daemon's `--cores` (executors) for `data` data cores per node.
fn ours_cores(data: usize) -> usize {
    if data == 0 {
        1
    } else {
        data + 1
    }
}

/// The `ctdb` tool that goes with a daemon: ours is built next to our
/// ctdbd; Samba's (and ours when our tool is not built) is Debian's.
fn cli_for(imp: &str, daemon: &Path) -> PathBuf {
    if imp == "ours" {
        if let Some(c) = daemon.parent().map(|d| d.join("ctdb")) {
            if c.exists() {
                return c;
            }
        }
    }
    PathBuf::from("/usr/bin/ctdb")
}

/// Our daemon when `--ours` is not given: the `ctdbd` built next to this
/// binary (same target directory), else `<repo>/target/release/ctdbd`.
fn default_ours(repo: &Path) -> PathBuf {
    if let Some(d) = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(Path::to_path_buf))
    {
        let c = d.join("ctdbd");
        if c.exists() {
            return c;
        }
    }
    repo.join("target/release/ctdbd")
}

struct Runner<'a> {
    args: &'a Args,
    script: PathBuf,
    dir: PathBuf,
    net: String,
    /// Clusters started so far: each gets its own /24 (see [`Runner::net_for`]).
    started: std::cell::Cell<u32>,
    params: Params,
}

impl Runner<'_> {
    /// The network of the next cluster: the base `127.A.B`, then
    /// `127.A.B+1`, ... Every start gets fresh addresses because a daemon
    /// that just stopped leaves TIME_WAIT sockets on its node address, and
    /// a listener without SO_REUSEADDR cannot bind there for a minute
    /// (perf-needs.md); it also keeps a slow-dying cluster from meeting the
    /// next one.
    fn net_for_next(&self) -> String {
        let k = self.started.get();
        self.started.set(k + 1);
        next_net(&self.net, k)
    }

    /// The daemon to start for `imp`: ours with `--cores` goes through a
    /// wrapper script (the cluster script runs the daemon without
    /// arguments).
    fn daemon_path(&self, daemon: &Path, imp: &str) -> Result<PathBuf> {
        let (true, Some(cores)) = (imp == "ours", self.args.cores) else {
            return Ok(daemon.to_path_buf());
        };
        let w = self.dir.join("ctdbd-ours");
        std::fs::create_dir_all(&self.dir)
            .map_err(|e| PerfError::io(format!("mkdir {}", self.dir.display()), e))?;
        let text = format!(
            "#!/bin/sh\nexec '{}' --cores={} \"$@\"\n",
            daemon.display(),
            ours_cores(cores)
        );
        std::fs::write(&w, text).map_err(|e| PerfError::io(format!("write {}", w.display()), e))?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&w, std::fs::Permissions::from_mode(0o755))
            .map_err(|e| PerfError::io(format!("chmod {}", w.display()), e))?;
        Ok(w)
    }

    fn start(&self, daemon: &Path, imp: &str, wait: u64) -> Result<Cluster> {
        let cli = cli_for(imp, daemon);
        let daemon = self.daemon_path(daemon, imp)?;
        // The script checks "all OK" with `$CTDB status`: ours next to our
        // daemon (its release build), Samba's with Samba's daemon.
        Cluster::start(
            &self.script,
            &daemon,
            self.args.nodes,
            &self.dir.join(imp),
            &self.net_for_next(),
            wait,
            &[("CTDB".to_string(), cli.display().to_string())],
        )
    }

    fn measure(&self, name: &str, c: &mut Cluster, imp: &'static str) -> Row {
        c.reset_peak_rss();
        let cpu0 = c.cpu_seconds();
        eprintln!("ctdb-perf: {imp}: {name} ...");
        let result = workloads::run(name, c, &self.params).map_err(|e| e.to_string());
        let cpu1 = c.cpu_seconds();
        let row = Row {
            workload: name.to_string(),
            imp,
            result,
            cpu_s: (cpu1 - cpu0).max(0.0),
            peak_rss_kib: c.peak_rss_kib(),
        };
        match &row.result {
            Ok(o) => eprintln!(
                "ctdb-perf: {imp}: {name}: {:.1} {} ({})",
                row.headline().map(|h| h.0).unwrap_or(0.0),
                metric_name(name),
                o.note
            ),
            Err(e) => eprintln!("ctdb-perf: {imp}: {name}: FAILED: {e}"),
        }
        row
    }

    /// Runs `list` on `daemon`; a cluster that does not come up gives one
    /// failed row per workload with the reason.
    fn run_daemon(&self, daemon: &Path, imp: &'static str, list: &[String]) -> Vec<Row> {
        let mut rows = Vec::new();
        let steady: Vec<&String> = list
            .iter()
            .filter(|w| !workloads::needs_fresh_cluster(w) && !smb::is_smb(w))
            .collect();
        let smb: Vec<&String> = list.iter().filter(|w| smb::is_smb(w)).collect();
        let fresh: Vec<&String> = list
            .iter()
            .filter(|w| workloads::needs_fresh_cluster(w))
            .collect();
        let fail_all = |rows: &mut Vec<Row>, ws: &[&String], why: &str| {
            for w in ws {
                rows.push(Row {
                    workload: w.to_string(),
                    imp,
                    result: Err(why.to_string()),
                    cpu_s: 0.0,
                    peak_rss_kib: 0,
                });
            }
        };
        if !steady.is_empty() {
            match self.start(daemon, imp, self.args.start_wait) {
                Ok(mut c) => {
                    for w in &steady {
                        if sys::interrupted() {
                            fail_all(&mut rows, &[w], "interrupted");
                            continue;
                        }
                        if !c.all_alive() {
                            fail_all(&mut rows, &[w], "a daemon died in an earlier workload");
                            continue;
                        }
                        rows.push(self.measure(w, &mut c, imp));
                    }
                    c.stop();
                }
                Err(e) => fail_all(&mut rows, &steady, &format!("cluster did not start: {e}")),
            }
        }
        for w in fresh {
            if sys::interrupted() {
                fail_all(&mut rows, &[w], "interrupted");
                continue;
            }
            match self.start(daemon, imp, self.args.start_wait) {
                Ok(mut c) => {
                    rows.push(self.measure(w, &mut c, imp));
                    c.stop();
                }
                Err(e) => fail_all(&mut rows, &[w], &format!("cluster did not start: {e}")),
            }
        }
        if !smb.is_empty() && !sys::interrupted() {
            match self.daemon_path(daemon, imp) {
                Ok(d) => {
                    let secs = self.args.duration.ceil() as u32;
                    let got = smb::run(&d, &cli_for(imp, daemon), &smb, secs, self.args.clients);
                    for (workload, result, cpu_s) in got {
                        match &result {
                            Ok(o) => eprintln!("ctdb-perf: {imp}: {workload}: {}", o.note),
                            Err(e) => eprintln!("ctdb-perf: {imp}: {workload}: FAILED: {e}"),
                        }
                        rows.push(Row {
                            workload,
                            imp,
                            result,
                            cpu_s,
                            peak_rss_kib: 0,
                        });
                    }
                }
                Err(e) => fail_all(&mut rows, &smb, &e.to_string()),
            }
        }
        rows
    }
}

fn fmt_num(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

fn opt(v: Option<f64>) -> String {
    v.map(fmt_num).unwrap_or_else(|| "-".into())
}

fn summary_table(list: &[String], rows: &mut [Row], ours_note: Option<&str>) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "| workload | metric | theirs (Samba ctdbd) | ours | ratio (>1: ours better) |"
    );
    let _ = writeln!(out, "|---|---|---:|---:|---:|");
    for w in list {
        let get = |imp: &str| rows.iter().find(|r| r.workload == *w && r.imp == imp);
        let cell = |r: Option<&Row>, fallback: &str| match r {
            None => fallback.to_string(),
            Some(r) => match (&r.result, r.headline()) {
                (Ok(_), Some((v, _))) => fmt_num(v),
                (Err(e), _) => format!("failed: {}", shorten(e, 60)),
                _ => "-".into(),
            },
        };
        let theirs = get("theirs");
        let ours = get("ours");
        let ratio = match (
            theirs.and_then(|r| r.headline()),
            ours.and_then(|r| r.headline()),
        ) {
            (Some((t, hi)), Some((o, _))) if t > 0.0 && o > 0.0 => {
                fmt_num(if hi { o / t } else { t / o })
            }
            _ => "-".into(),
        };
        let ours_cell = match ours_note {
            Some(n) => n.to_string(),
            None => cell(ours, "not run"),
        };
        let _ = writeln!(
            out,
            "| {w} | {} | {} | {} | {ratio} |",
            metric_name(w),
            cell(theirs, "not run"),
            ours_cell
        );
    }
    out
}

fn detail_table(rows: &mut [Row]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "| workload | daemon | result | p50 µs | p99 µs | daemon CPU s / 1k ops | daemon CPU s | peak RSS MiB | notes |"
    );
    let _ = writeln!(out, "|---|---|---:|---:|---:|---:|---:|---:|---|");
    for r in rows.iter_mut() {
        let cpu_kop = r.cpu_per_kop();
        let head = r.headline();
        let (res, p50, p99, note) = match &mut r.result {
            Ok(o) => (
                format!(
                    "{} {}",
                    fmt_num(head.map(|h| h.0).unwrap_or(0.0)),
                    metric_name(&r.workload)
                ),
                opt(o.pct_us(0.5)),
                opt(o.pct_us(0.99)),
                o.note.clone(),
            ),
            Err(e) => ("failed".into(), "-".into(), "-".into(), shorten(e, 200)),
        };
        let rss = if r.peak_rss_kib > 0 {
            fmt_num(r.peak_rss_kib as f64 / 1024.0)
        } else {
            "-".into()
        };
        let _ = writeln!(
            out,
            "| {} | {} | {res} | {p50} | {p99} | {} | {} | {rss} | {} |",
            r.workload,
            r.imp,
            opt(cpu_kop),
            fmt_num(r.cpu_s),
            note.replace('|', "/")
        );
    }
    out
}

fn shorten(s: &str, n: usize) -> String {
    let s = s.replace(['\n', '|'], " ");
    if s.chars().count() <= n {
        s
    } else {
        format!("{}…", s.chars().take(n).collect::<String>())
    }
}

fn json_str(s: &str) -> String {
    let mut o = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            '\n' => o.push_str("\\n"),
            c if (c as u32) < 0x20 => {
                let _ = write!(o, "\\u{:04x}", c as u32);
            }
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

fn json_num(v: Option<f64>) -> String {
    match v {
        Some(v) if v.is_finite() => format!("{v}"),
        _ => "null".into(),
    }
}

fn to_json(info: &[(String, String)], rows: &mut [Row], benches: &[(String, String)]) -> String {
    let mut o = String::from("{\n");
    for (k, v) in info {
        let _ = writeln!(o, "  {}: {},", json_str(k), json_str(v));
    }
    o.push_str("  \"results\": [\n");
    let n = rows.len();
    for (i, r) in rows.iter_mut().enumerate() {
        let cpu_kop = r.cpu_per_kop();
        let head = r.headline();
        let _ = write!(
            o,
            "    {{\"workload\": {}, \"daemon\": {}, \"metric\": {}, ",
            json_str(&r.workload),
            json_str(r.imp),
            json_str(metric_name(&r.workload))
        );
        match &mut r.result {
            Ok(out) => {
                let (p50, p99) = (out.pct_us(0.5), out.pct_us(0.99));
                let _ = write!(
                    o,
                    "\"ok\": true, \"value\": {}, \"ops\": {}, \"secs\": {}, \"p50_us\": {}, \"p99_us\": {}, \"note\": {}, ",
                    json_num(head.map(|h| h.0)),
                    out.ops,
                    json_num(Some(out.secs)),
                    json_num(p50),
                    json_num(p99),
                    json_str(&out.note)
                );
            }
            Err(e) => {
                let _ = write!(o, "\"ok\": false, \"error\": {}, ", json_str(e));
            }
        }
        let _ = write!(
            o,
            "\"daemon_cpu_s\": {}, \"daemon_cpu_s_per_kop\": {}, \"peak_rss_kib\": {}}}",
            json_num(Some(r.cpu_s)),
            json_num(cpu_kop),
            r.peak_rss_kib
        );
        o.push_str(if i + 1 < n { ",\n" } else { "\n" });
    }
    o.push_str("  ],\n  \"benches\": [\n");
    for (i, (name, out)) in benches.iter().enumerate() {
        let _ = write!(
            o,
            "    {{\"name\": {}, \"output\": {}}}",
            json_str(name),
            json_str(out)
        );
        o.push_str(if i + 1 < benches.len() { ",\n" } else { "\n" });
    }
    o.push_str("  ]\n}\n");
    o
}

fn machine_info(args: &Args, list: &[String]) -> Vec<(String, String)> {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into());
    let ncpu = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    let date = Command::new("date")
        .args(["-u", "+%Y-%m-%dT%H:%M:%SZ"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let theirs_version = Command::new("dpkg-query")
        .args(["-W", "-f", "(Debian ctdb ${Version})", "ctdb"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    vec![
        ("date".into(), date),
        (
            "machine".into(),
            format!("{cpu}, {ncpu} CPUs, Linux {kernel}"),
        ),
        (
            "command".into(),
            std::env::args().collect::<Vec<_>>().join(" "),
        ),
        (
            "theirs".into(),
            format!("{} {theirs_version}", args.theirs.display()),
        ),
        ("nodes".into(), args.nodes.to_string()),
        ("clients_per_node".into(), args.clients.to_string()),
        ("duration_s".into(), args.duration.to_string()),
        ("keys".into(), args.keys.to_string()),
        ("workloads".into(), list.join(",")),
    ]
}

/// Runs engine-bench and codec-bench (built next to this binary) briefly
/// and returns their output.
fn run_benches(smoke: bool) -> Vec<(String, String)> {
    let Ok(me) = std::env::current_exe() else {
        return Vec::new();
    };
    let dir = me.parent().map(Path::to_path_buf).unwrap_or_default();
    let runs: [(&str, Vec<&str>); 2] = [
        (
            "engine-bench",
            if smoke {
                vec!["--smoke"]
            } else {
                vec!["--records", "100000", "--seconds", "0.5", "--repeat", "1"]
            },
        ),
        (
            "codec-bench",
            if smoke {
                vec!["--smoke"]
            } else {
                vec!["--secs", "0.2"]
            },
        ),
    ];
    let mut out = Vec::new();
    for (name, a) in runs {
        let bin = dir.join(name);
        if !bin.exists() {
            out.push((
                name.to_string(),
                format!(
                    "not built ({}); build with cargo build --release -p ctdb-perf",
                    bin.display()
                ),
            ));
            continue;
        }
        eprintln!("ctdb-perf: running {name} ...");
        let text = match Command::new(&bin).args(&a).output() {
            Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).into_owned(),
            Ok(o) => format!(
                "{name} failed ({}): {}",
                o.status,
                String::from_utf8_lossy(&o.stderr).trim()
            ),
            Err(e) => format!("{name} could not run: {e}"),
        };
        out.push((name.to_string(), text));
    }
    out
}

fn real_main() -> Result<bool> {
    let mut args = Args::parse();
    if let Some(s) = args.smoke {
        // Light workloads sharing the smoke budget.
        args.duration = (s / 6.0).max(0.2);
        args.keys = args.keys.min(100);
        args.no_bench = true;
    }
    let list = validate(&args)?;
    sys::catch_interrupts();
    let repo = repo_root(&args);
    let script = repo.join("scripts/local-cluster");
    if !script.exists() {
        return Err(PerfError::Args(format!(
            "{} not found (set --repo)",
            script.display()
        )));
    }
    let ours = args.ours.clone().unwrap_or_else(|| default_ours(&repo));
    let dir = args
        .dir
        .clone()
        .unwrap_or_else(|| std::env::temp_dir().join(format!("ctdb-perf-{}", std::process::id())));
    let runner = Runner {
        args: &args,
        script,
        dir: dir.clone(),
        net: args.net.clone().unwrap_or_else(default_net),
        started: std::cell::Cell::new(0),
        params: Params {
            duration: Duration::from_secs_f64(args.duration),
            clients: args.clients,
            keys: args.keys,
        },
    };
    eprintln!(
        "ctdb-perf: clusters in {} on {}.N and the /24s after it (if interrupted: CTDB_LOCAL_DIR={}/<daemon> scripts/local-cluster stop)",
        dir.display(),
        runner.net,
        dir.display()
    );
    let mut rows: Vec<Row> = Vec::new();
    let mut ours_note: Option<String> = None;
    let mut ours_reason: Option<String> = None;
    let mut ok = true;

    if args.smoke.is_some() {
        // Ours if it forms a cluster, else theirs; with --ours-only, ours
        // or failure (CI: the smoke test must exercise our daemon).
        if args.ours_only && !ours.exists() {
            return Err(PerfError::Args(format!(
                "--ours-only: our daemon {} does not exist (cargo build --release -p ctdb-daemon -p ctdb-cli)",
                ours.display()
            )));
        }
        let use_ours = args.ours_only
            || ours.exists()
                && match runner.start(&ours, "ours", 15) {
                    Ok(mut c) => {
                        c.stop();
                        true
                    }
                    Err(e) => {
                        eprintln!("ctdb-perf: ours: not functional yet ({e}); smoke runs theirs");
                        ours_reason = Some(shorten(&e.to_string(), 400));
                        false
                    }
                };
        let (daemon, imp) = if use_ours {
            (ours.clone(), "ours")
        } else {
            (args.theirs.clone(), "theirs")
        };
        if !daemon.exists() {
            return Err(PerfError::Args(format!(
                "no daemon to smoke-test: {} does not exist",
                daemon.display()
            )));
        }
        if !use_ours {
            ours_note = Some("not functional yet".into());
        }
        rows = runner.run_daemon(&daemon, imp, &list);
        ok = rows.iter().all(|r| r.result.is_ok());
    } else {
        if !args.ours_only {
            if args.theirs.exists() {
                rows.extend(runner.run_daemon(&args.theirs, "theirs", &list));
                ok &= rows.iter().all(|r| r.result.is_ok());
            } else {
                eprintln!(
                    "ctdb-perf: theirs: {} not installed, skipped",
                    args.theirs.display()
                );
            }
        }
        if !args.theirs_only {
            if !ours.exists() {
                ours_note = Some(format!("not built ({})", ours.display()));
            } else {
                // A cluster that does not form fails its rows with the reason.
                let ours_rows = runner.run_daemon(&ours, "ours", &list);
                ok &= ours_rows.iter().all(|r| r.result.is_ok());
                rows.extend(ours_rows);
            }
        }
    }

    let benches = if args.no_bench {
        Vec::new()
    } else {
        run_benches(false)
    };
    let mut info = machine_info(&args, &list);
    info.push((
        "ours".into(),
        match (&ours_note, &ours_reason) {
            (Some(n), Some(r)) => format!("{} {n}: {r}", ours.display()),
            (Some(n), None) => format!("{} {n}", ours.display()),
            _ => match args.cores {
                Some(c) => format!("{} --cores={}", ours.display(), ours_cores(c)),
                None => format!("{} (default configuration)", ours.display()),
            },
        },
    ));
    let mut report = String::new();
    for (k, v) in &info {
        let _ = writeln!(report, "{k}: {v}");
    }
    report.push('\n');
    report.push_str(&summary_table(&list, &mut rows, ours_note.as_deref()));
    if let Some(n) = &ours_note {
        let _ = write!(report, "\nours: {n}");
        if let Some(r) = &ours_reason {
            let _ = write!(report, " ({r})");
        }
        report.push('\n');
    }
    report.push('\n');
    report.push_str(&detail_table(&mut rows));
    for (name, out) in &benches {
        let _ = writeln!(report, "\n{name}:\n{}", out.trim_end());
    }
    println!("{report}");
    if let Some(path) = &args.json {
        std::fs::write(path, to_json(&info, &mut rows, &benches))
            .map_err(|e| PerfError::io(format!("write {}", path.display()), e))?;
    }
    if args.dir.is_none() {
        let _ = std::fs::remove_dir_all(&dir);
    }
    Ok(ok)
}

fn main() {
    match real_main() {
        Ok(true) => {}
        Ok(false) => {
            eprintln!("ctdb-perf: some workloads failed (see the table)");
            std::process::exit(1);
        }
        Err(e) => {
            eprintln!("ctdb-perf: {e}");
            std::process::exit(2);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_strings_are_escaped() {
        assert_eq!(json_str("a\"b\\c\nd\u{1}"), "\"a\\\"b\\\\c\\nd\\u0001\"");
        assert_eq!(json_num(Some(f64::NAN)), "null");
        assert_eq!(json_num(Some(1.5)), "1.5");
    }

    #[test]
    fn rng_is_seeded_and_bounded() {
        let (mut a, mut b) = (Rng::new(7), Rng::new(7));
        for _ in 0..1000 {
            let x = a.below(10);
            assert_eq!(x, b.below(10));
            assert!(x < 10);
        }
        assert_eq!(Rng::new(1).below(0), 0);
    }

    #[test]
    fn workload_names_are_checked() {
        let mut args = Args::parse_from(["ctdb-perf", "--workloads", "ping,recovery-5k"]);
        assert_eq!(validate(&args).unwrap(), vec!["ping", "recovery-5k"]);
        args.workloads = vec!["recovery-x".into()];
        assert!(validate(&args)
            .unwrap_err()
            .to_string()
            .contains("recovery-x"));
        assert_eq!(workloads::recovery_records("recovery-1m"), Some(1_000_000));
        assert_eq!(workloads::recovery_records("recovery-250"), Some(250));
    }

    #[test]
    fn each_cluster_gets_its_own_net() {
        assert_eq!(next_net("127.5.7", 0), "127.5.7");
        assert_eq!(next_net("127.5.7", 3), "127.5.10");
        assert_eq!(next_net("127.5.254", 1), "127.5.1");
        assert_eq!(next_net("127.5.0", 0), "127.5.1");
    }

    #[test]
    fn percentiles() {
        let mut o = Outcome {
            lat_ns: (1..=100).rev().map(|v| v * 1000).collect(),
            ..Outcome::default()
        };
        assert_eq!(o.pct_us(0.5), Some(51.0));
        assert_eq!(o.pct_us(0.99), Some(99.0));
        assert_eq!(Outcome::default().pct_us(0.5), None);
    }
}
