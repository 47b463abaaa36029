//! update_record: fetch-locks a record of a volatile database (migrating it
//! here), then rewrites it through the UPDATE_RECORD control with rsn + 10
//! and the new rsn as its value, as upstream's program of that name
//! (INTEGRATION database/readonly.001.basic.sh).

use clap::Parser;
use ctdb_perf::error::{PerfError, Result};
use ctdb_perf::testprog::{self, BasicOpts, DbOpts};
use ctdb_protocol::constants::CTDB_CURRENT_NODE;
use ctdb_protocol::types::RecBufferBuilder;
use ctdb_protocol::ControlData;

#[derive(Parser, Debug)]
#[command(
    name = "update_record",
    about = "Migrate a record here and update it by UPDATE_RECORD"
)]
struct Opts {
    #[command(flatten)]
    basic: BasicOpts,
    #[command(flatten)]
    db: DbOpts,
}

fn main() -> std::process::ExitCode {
    let o = Opts::parse();
    testprog::run("update_record", || -> Result<()> {
        let socket = o.basic.verify()?;
        let (dbname, key, _) = o.db.verify()?;
        let mut c = testprog::connect(&socket)?;
        c.set_timeout(std::time::Duration::from_secs(o.basic.timelimit.max(1)));
        let mut db = c.attach(&dbname, false)?;
        let key = key.as_bytes();
        let (rec, _) = c.fetch_lock(&mut db, key)?;
        db.unlock(key)?;
        let h = rec.header;
        let rsn = h.rsn + 10;
        let header = ctdb_protocol::types::LtdbHeader {
            rsn,
            dmaster: h.dmaster,
            reserved1: h.reserved1,
            flags: h.flags.0,
        };
        let mut rb = RecBufferBuilder::new(db.id);
        rb.add(0, Some(&header), key, rsn.to_string().as_bytes());
        c.control_ok(
            CTDB_CURRENT_NODE,
            ControlData::UpdateRecord(rb.as_rec_buffer()),
        )
        .map_err(|e| PerfError::Cluster(format!("update record failed: {e}")))?;
        Ok(())
    })
}
