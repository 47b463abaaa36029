//! update_record_persistent: writes one record of a persistent database
//! through the UPDATE_RECORD control (rsn one above the local copy's), as
//! upstream's program of that name (INTEGRATION
//! database/transaction.004.update_record.sh).

use clap::Parser;
use ctdb_perf::error::{PerfError, Result};
use ctdb_perf::testprog::{self, BasicOpts, DbOpts};
use ctdb_protocol::constants::CTDB_CURRENT_NODE;
use ctdb_protocol::types::RecBufferBuilder;
use ctdb_protocol::ControlData;

#[derive(Parser, Debug)]
#[command(
    name = "update_record_persistent",
    about = "Store a persistent record by UPDATE_RECORD"
)]
struct Opts {
    #[command(flatten)]
    basic: BasicOpts,
    #[command(flatten)]
    db: DbOpts,
}

fn main() -> std::process::ExitCode {
    let o = Opts::parse();
    testprog::run("update_record_persistent", || -> Result<()> {
        let socket = o.basic.verify()?;
        let (dbname, key, _) = o.db.verify()?;
        let value =
            o.db.value
                .clone()
                .ok_or_else(|| PerfError::Args("please specify key value (-v)".into()))?;
        let mut c = testprog::connect(&socket)?;
        c.set_timeout(std::time::Duration::from_secs(o.basic.timelimit.max(1)));
        let mut db = c.attach(&dbname, true)?;
        let (h, _) = db.ltdb_fetch(key.as_bytes())?;
        let header = ctdb_protocol::types::LtdbHeader {
            rsn: h.rsn + 1,
            dmaster: h.dmaster,
            reserved1: h.reserved1,
            flags: h.flags.0,
        };
        let mut rb = RecBufferBuilder::new(db.id);
        rb.add(0, Some(&header), key.as_bytes(), value.as_bytes());
        c.control_ok(
            CTDB_CURRENT_NODE,
            ControlData::UpdateRecord(rb.as_rec_buffer()),
        )
        .map_err(|e| PerfError::Cluster(format!("update record failed: {e}")))?;
        Ok(())
    })
}
