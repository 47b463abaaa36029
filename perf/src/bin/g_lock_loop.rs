//! g_lock_loop: every node takes and releases the g_lock `testkey` in
//! `g_lock.tdb` in a loop for `-t` seconds and prints
//! `PNN:N counter:C` (locks taken), as upstream's program of that name.

use ctdb_perf::error::{PerfError, Result};
use ctdb_perf::testprog::{self, BasicOpts};

/// The lock name as the g_lock functions store it (with its NUL).
const TESTKEY: &[u8] = b"testkey\0";

fn main() -> std::process::ExitCode {
    testprog::main(
        "g_lock_loop",
        "Take and release one g_lock from every node",
        |o: BasicOpts| -> Result<()> {
            let socket = o.verify()?;
            let mut c = testprog::connect(&socket)?;
            let mut db = c.attach("g_lock.tdb", false)?;
            let sid = c.server_id(1);
            testprog::cluster_wait(&mut c, o.num_nodes)?;
            let end = o.deadline();
            let mut counter = 0u32;
            while std::time::Instant::now() < end {
                c.g_lock_lock(&mut db, TESTKEY, sid)
                    .map_err(|e| PerfError::Cluster(format!("g_lock_lock failed: {e}")))?;
                counter += 1;
                c.g_lock_unlock(&mut db, TESTKEY, sid)
                    .map_err(|e| PerfError::Cluster(format!("g_lock_unlock failed: {e}")))?;
            }
            println!("PNN:{} counter:{counter}", c.pnn());
            Ok(())
        },
    )
}
