//! fetch_ring: a record passed round the nodes by fetch-lock. The last node
//! starts; each node, on its token message, fetch-locks the key (migrating
//! the record to itself), appends a line and sends the token to the next
//! node. Prints `Fetch[PNN]: RATE msgs/sec` after `-t` seconds, as
//! upstream's program of that name (INTEGRATION database/fetch.00*.sh).

use ctdb_perf::client::{Client, Db};
use ctdb_perf::error::Result;
use ctdb_perf::testprog::{self, DbProgOpts};

const MSG_ID_FETCH: u64 = 0;

fn update(c: &mut Client, db: &mut Db, key: &[u8], msg_count: u64, n: u32) -> Result<()> {
    let (rec, _) = c.fetch_lock(db, key)?;
    let mut text = rec.data;
    if let Some(z) = text.iter().position(|b| *b == 0) {
        text.truncate(z);
    }
    if text.len() > 1000 {
        text.clear();
    }
    if text.is_empty() {
        text.extend_from_slice(b"Test data\n");
    }
    text.extend_from_slice(format!("msg_count={msg_count} on node {}\n", c.pnn()).as_bytes());
    text.push(0);
    let r = db.store_locked(key, &rec.header, &text);
    db.unlock(key)?;
    r?;
    c.send_message((c.pnn() + 1) % n, MSG_ID_FETCH, &[])
}

fn main() -> std::process::ExitCode {
    testprog::main(
        "fetch_ring",
        "Pass a record round the cluster by fetch-lock",
        |o: DbProgOpts| {
            let socket = o.basic.verify()?;
            let (dbname, key, _) = o.db.verify()?;
            let n = o.basic.num_nodes;
            let mut c = testprog::connect(&socket)?;
            let mut db = c.attach(&dbname, false)?;
            let key = key.as_bytes();
            c.register_srvid(MSG_ID_FETCH)?;
            testprog::cluster_wait(&mut c, n)?;
            let start = std::time::Instant::now();
            let end = o.basic.deadline();
            let mut msg_count = 0u64;
            if c.pnn() == n - 1 {
                update(&mut c, &mut db, key, msg_count, n)?;
            }
            while let Some((id, _)) = c.recv_message(end)? {
                if id == MSG_ID_FETCH {
                    msg_count += 1;
                    update(&mut c, &mut db, key, msg_count, n)?;
                }
            }
            let t = start.elapsed().as_secs_f64();
            println!("Fetch[{}]: {:.2} msgs/sec", c.pnn(), msg_count as f64 / t);
            let (rec, _) = c.fetch_lock(&mut db, key)?;
            db.unlock(key)?;
            if o.basic.interactive {
                let end = rec
                    .data
                    .iter()
                    .position(|b| *b == 0)
                    .unwrap_or(rec.data.len());
                println!("DATA:\n{}", String::from_utf8_lossy(&rec.data[..end]));
            }
            Ok(())
        },
    )
}
