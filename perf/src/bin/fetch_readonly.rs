//! fetch_readonly: one read-only fetch-lock of a record of a volatile
//! database (a read-only copy if the database has read-only records
//! enabled, else a full migration), as upstream's program of that name
//! (INTEGRATION database/readonly.001.basic.sh).

use ctdb_perf::error::{PerfError, Result};
use ctdb_perf::testprog::{self, DbProgOpts};

fn main() -> std::process::ExitCode {
    testprog::main(
        "fetch_readonly",
        "Fetch a record for reading",
        |o: DbProgOpts| -> Result<()> {
            let socket = o.basic.verify()?;
            let (dbname, key, _) = o.db.verify()?;
            let (mut c, mut db) =
                testprog::connect_attach(&socket, o.basic.timelimit, &dbname, false)?;
            let key = key.as_bytes();
            c.fetch_lock_readonly(&mut db, key)
                .map_err(|e| PerfError::Cluster(format!("fetch readonly loop test failed: {e}")))?;
            db.unlock(key)
        },
    )
}
