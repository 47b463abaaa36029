//! update_record: fetch-locks a record of a volatile database (migrating it
//! here), then rewrites it through the UPDATE_RECORD control with rsn + 10
//! and the new rsn as its value, as upstream's program of that name
//! (INTEGRATION database/readonly.001.basic.sh).

use ctdb_perf::error::Result;
use ctdb_perf::testprog::{self, DbProgOpts};

fn main() -> std::process::ExitCode {
    testprog::main(
        "update_record",
        "Migrate a record here and update it by UPDATE_RECORD",
        |o: DbProgOpts| -> Result<()> {
            let socket = o.basic.verify()?;
            let (dbname, key, _) = o.db.verify()?;
            let (mut c, mut db) =
                testprog::connect_attach(&socket, o.basic.timelimit, &dbname, false)?;
            let key = key.as_bytes();
            let (rec, _) = c.fetch_lock(&mut db, key)?;
            db.unlock(key)?;
            let rsn = rec.header.rsn + 10;
            testprog::update_record(
                &mut c,
                &db,
                key,
                &rec.header,
                rsn,
                rsn.to_string().as_bytes(),
            )
        },
    )
}
