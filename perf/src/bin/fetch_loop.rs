//! fetch_loop: every node fetch-locks `testkey` of `fetch_loop.tdb` in a
//! tight loop for `-t` seconds, storing a 32-bit lock counter; node 0
//! shows `Locks:N` every second and every node prints `Locks:N` at the
//! end, as upstream's program of that name.

use std::io::Write;
use std::time::{Duration, Instant};

use clap::Parser;
use ctdb_perf::error::Result;
use ctdb_perf::testprog::{self, BasicOpts};

const TESTDB: &str = "fetch_loop.tdb";
const TESTKEY: &[u8] = b"testkey";

#[derive(Parser, Debug)]
#[command(
    name = "fetch_loop",
    about = "Fetch-lock one record from every node in a loop"
)]
struct Opts {
    #[command(flatten)]
    basic: BasicOpts,
}

fn main() -> std::process::ExitCode {
    let o = Opts::parse();
    testprog::run("fetch_loop", || -> Result<()> {
        let socket = o.basic.verify()?;
        let mut c = testprog::connect(&socket)?;
        let mut db = c.attach(TESTDB, false)?;
        testprog::cluster_wait(&mut c, o.basic.num_nodes)?;
        let end = o.basic.deadline();
        let mut tick = Instant::now() + Duration::from_secs(1);
        let mut locks: u32 = 0;
        loop {
            let (rec, _) = c.fetch_lock(&mut db, TESTKEY)?;
            if let Ok(b) = <[u8; 4]>::try_from(rec.data.as_slice()) {
                locks = u32::from_le_bytes(b);
            }
            locks = locks.wrapping_add(1);
            let r = db.store_locked(TESTKEY, &rec.header, &locks.to_le_bytes());
            db.unlock(TESTKEY)?;
            r?;
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
