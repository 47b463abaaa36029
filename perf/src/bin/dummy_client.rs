//! dummy_client: holds `-n` connections to ctdbd open, optionally with a
//! srvid registered on the last one, until a message for that srvid
//! arrives or `-t` seconds pass; always exits 0 at the end, as upstream's
//! program of that name (INTEGRATION simple/basics.005.process_exists.sh
//! uses it as a live client process to look for).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Parser;
use ctdb_perf::client::Client;
use ctdb_perf::error::{PerfError, Result};
use ctdb_perf::testprog;

#[derive(Parser, Debug)]
#[command(name = "dummy_client", about = "Stay connected to ctdbd for a while")]
struct Opts {
    /// Unix domain socket path.
    #[arg(short = 's', long = "socket", value_name = "filename")]
    socket: Option<PathBuf>,
    /// Debug level (ERR|WARNING|NOTICE|INFO|DEBUG).
    #[arg(short = 'd', long = "debug", default_value = "ERR")]
    debug: String,
    /// Number of connections.
    #[arg(short = 'n', long = "nconn", default_value_t = 1,
          value_parser = clap::value_parser!(u32).range(1..))]
    nconn: u32,
    /// Time limit (seconds).
    #[arg(short = 't', long = "timelimit", default_value_t = 60)]
    timelimit: u64,
    /// Srvid to register (decimal, 0x hex or 0 octal).
    #[arg(short = 'S', long = "srvid")]
    srvid: Option<String>,
}

fn parse_srvid(s: &str) -> Result<u64> {
    let r = if let Some(h) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        u64::from_str_radix(h, 16)
    } else if s.len() > 1 && s.starts_with('0') {
        u64::from_str_radix(&s[1..], 8)
    } else {
        s.parse()
    };
    r.map_err(|_| PerfError::Args(format!("Invalid srvid '{s}'")))
}

fn main() -> std::process::ExitCode {
    let o = Opts::parse();
    testprog::run("dummy_client", || -> Result<()> {
        let basic = testprog::BasicOpts {
            socket: o.socket.clone(),
            timelimit: o.timelimit,
            num_nodes: 1,
            debug: o.debug.clone(),
            interactive: false,
        };
        let socket = basic.verify()?;
        let srvid = o.srvid.as_deref().map(parse_srvid).transpose()?;
        let mut clients = Vec::new();
        for i in 0..o.nconn {
            let c = Client::connect(&socket)
                .map_err(|e| PerfError::Cluster(format!("Failed to initialize client {i}: {e}")))?;
            clients.push(c);
        }
        let Some(last) = clients.last_mut() else {
            return Ok(());
        };
        let end = Instant::now() + Duration::from_secs(o.timelimit);
        match srvid {
            Some(id) => {
                last.register_srvid(id)?;
                while let Some((got, _)) = last.recv_message(end)? {
                    if got == id {
                        break;
                    }
                }
            }
            None => {
                let left = end.saturating_duration_since(Instant::now());
                std::thread::sleep(left);
            }
        }
        Ok(())
    })
}
