//! fetch_loop: every node fetch-locks `testkey` of `fetch_loop.tdb` in a
//! tight loop for `-t` seconds, storing a 32-bit lock counter; node 0
//! shows `Locks:N` every second and every node prints `Locks:N` at the
//! end, as upstream's program of that name.

use ctdb_perf::error::Result;
use ctdb_perf::testprog::{self, BasicOpts};

const TESTDB: &str = "fetch_loop.tdb";
const TESTKEY: &[u8] = b"testkey";

fn main() -> std::process::ExitCode {
    testprog::main(
        "fetch_loop",
        "Fetch-lock one record from every node in a loop",
        |o: BasicOpts| -> Result<()> {
            let socket = o.verify()?;
            let mut c = testprog::connect(&socket)?;
            let mut db = c.attach(TESTDB, false)?;
            testprog::cluster_wait(&mut c, o.num_nodes)?;
            let end = o.deadline();
            let pnn = c.pnn();
            let mut locks = 0u32;
            testprog::locks_loop(pnn, end, || {
                locks = testprog::fetch_lock_increment(&mut c, &mut db, TESTKEY, locks)?;
                Ok(u64::from(locks))
            })
        },
    )
}
