//! fetch_readonly_loop: every node takes read-only fetch-locks of `testkey`
//! in `fetch_readonly_loop.tdb` in a loop for `-t` seconds; node 0 shows
//! `Locks:N` every second and every node prints `Locks:N` at the end, as
//! upstream's program of that name.

use ctdb_perf::error::Result;
use ctdb_perf::testprog::{self, BasicOpts};

const TESTDB: &str = "fetch_readonly_loop.tdb";
const TESTKEY: &[u8] = b"testkey";

fn main() -> std::process::ExitCode {
    testprog::main(
        "fetch_readonly_loop",
        "Read-only fetch-lock one record in a loop",
        |o: BasicOpts| -> Result<()> {
            let socket = o.verify()?;
            let mut c = testprog::connect(&socket)?;
            let mut db = c.attach(TESTDB, false)?;
            testprog::cluster_wait(&mut c, o.num_nodes)?;
            let end = o.deadline();
            let pnn = c.pnn();
            let mut locks = 0u64;
            testprog::locks_loop(pnn, end, || {
                c.fetch_lock_readonly(&mut db, TESTKEY)?;
                db.unlock(TESTKEY)?;
                locks += 1;
                Ok(locks)
            })
        },
    )
}
