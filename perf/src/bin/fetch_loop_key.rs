//! fetch_loop_key: fetch-locks the `-k` key of the `-D` database in a loop,
//! storing a 32-bit lock counter, and prints `Locks:N` every second for
//! `-t` seconds; no cluster barrier (one copy runs alone), as upstream's
//! program of that name.

use std::time::{Duration, Instant};

use ctdb_perf::error::Result;
use ctdb_perf::testprog::{self, DbProgOpts};

fn main() -> std::process::ExitCode {
    testprog::main(
        "fetch_loop_key",
        "Fetch-lock one key in a loop",
        |o: DbProgOpts| -> Result<()> {
            let socket = o.basic.verify()?;
            let (dbname, key, _) = o.db.verify()?;
            let mut c = testprog::connect(&socket)?;
            let mut db = c.attach(&dbname, false)?;
            let key = key.as_bytes();
            let mut locks: u32 = 0;
            let mut seconds = 0u64;
            let mut tick = Instant::now() + Duration::from_secs(1);
            loop {
                locks = testprog::fetch_lock_increment(&mut c, &mut db, key, locks)?;
                if Instant::now() >= tick {
                    seconds += 1;
                    println!("Locks:{locks}");
                    if seconds >= o.basic.timelimit {
                        return Ok(());
                    }
                    tick += Duration::from_secs(1);
                }
            }
        },
    )
}
