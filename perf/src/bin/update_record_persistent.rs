//! update_record_persistent: writes one record of a persistent database
//! through the UPDATE_RECORD control (rsn one above the local copy's), as
//! upstream's program of that name (INTEGRATION
//! database/transaction.004.update_record.sh).

use ctdb_perf::error::{PerfError, Result};
use ctdb_perf::testprog::{self, DbProgOpts};

fn main() -> std::process::ExitCode {
    testprog::main(
        "update_record_persistent",
        "Store a persistent record by UPDATE_RECORD",
        |o: DbProgOpts| -> Result<()> {
            let socket = o.basic.verify()?;
            let (dbname, key, _) = o.db.verify()?;
            let value =
                o.db.value
                    .clone()
                    .ok_or_else(|| PerfError::Args("please specify key value (-v)".into()))?;
            let (mut c, mut db) =
                testprog::connect_attach(&socket, o.basic.timelimit, &dbname, true)?;
            let key = key.as_bytes();
            let (h, _) = db.ltdb_fetch(key)?;
            testprog::update_record(&mut c, &db, key, &h, h.rsn + 1, value.as_bytes())
        },
    )
}
