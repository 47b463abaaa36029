//! fetch_readonly_loop: every node takes read-only fetch-locks of `testkey`
//! in `fetch_readonly_loop.tdb` in a loop for `-t` seconds; node 0 shows
//! `Locks:N` every second and every node prints `Locks:N` at the end, as
//! upstream's program of that name.

use std::io::Write;
use std::time::{Duration, Instant};

use clap::Parser;
use ctdb_perf::error::Result;
use ctdb_perf::testprog::{self, BasicOpts};

const TESTDB: &str = "fetch_readonly_loop.tdb";
const TESTKEY: &[u8] = b"testkey";

#[derive(Parser, Debug)]
#[command(
    name = "fetch_readonly_loop",
    about = "Read-only fetch-lock one record in a loop"
)]
struct Opts {
    #[command(flatten)]
    basic: BasicOpts,
}

fn main() -> std::process::ExitCode {
    let o = Opts::parse();
    testprog::run("fetch_readonly_loop", || -> Result<()> {
        let socket = o.basic.verify()?;
        let mut c = testprog::connect(&socket)?;
        let mut db = c.attach(TESTDB, false)?;
        testprog::cluster_wait(&mut c, o.basic.num_nodes)?;
        let end = o.basic.deadline();
        let mut tick = Instant::now() + Duration::from_secs(1);
        let mut locks: u64 = 0;
        loop {
            c.fetch_lock_readonly(&mut db, TESTKEY)?;
            db.unlock(TESTKEY)?;
            locks += 1;
            let now = Instant::now();
            if now >= end {
                break;
            }
            if c.pnn() == 0 && now >= tick {
                print!("Locks:{locks}\r");
                let _ = std::io::stdout().flush();
                tick = now + Duration::from_secs(1);
            }
        }
        println!("Locks:{locks}");
        Ok(())
    })
}
