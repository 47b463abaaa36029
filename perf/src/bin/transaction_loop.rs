//! transaction_loop: every node increments its own counter in one record of
//! a persistent database, one transaction at a time, for `-t` seconds;
//! node 0 checks that no counter ever goes backwards. Prints
//! `Transaction[PNN]: ` and the counters (`%6u ` each) at the end, as
//! upstream's program of that name (INTEGRATION database/transaction.00*).

use std::time::{Duration, Instant};

use ctdb_perf::error::{PerfError, Result};
use ctdb_perf::testprog::{self, DbProgOpts, DbType};

fn line(pnn: u32, counters: &[u32]) -> String {
    let mut s = format!("Transaction[{pnn}]: ");
    for c in counters {
        s.push_str(&format!("{c:6} "));
    }
    s
}

fn main() -> std::process::ExitCode {
    testprog::main(
        "transaction_loop",
        "Count transactions on every node",
        |o: DbProgOpts| -> Result<()> {
            let socket = o.basic.verify()?;
            let (dbname, key, t) = o.db.verify()?;
            let n = o.basic.num_nodes as usize;
            let mut c = testprog::connect(&socket)?;
            let mut db = match t {
                DbType::Persistent => c.attach(&dbname, true)?,
                DbType::Replicated => c.attach_replicated(&dbname)?,
                DbType::Volatile => {
                    return Err(PerfError::Args(
                        "Database must be persistent or replicated".into(),
                    ))
                }
            };
            let mut g_lock = c.attach("g_lock.tdb", false)?;
            let pnn = c.pnn();
            if pnn as usize >= n {
                return Err(PerfError::Args(format!(
                    "this node's pnn {pnn} is not below -n {n}"
                )));
            }
            testprog::cluster_wait(&mut c, o.basic.num_nodes)?;
            let end = o.basic.deadline();
            let mut old = vec![0u32; n];
            let mut counter = vec![0u32; n];
            let mut tick = Instant::now() + Duration::from_secs(1);
            loop {
                let key = key.as_bytes();
                c.transaction(&mut db, &mut g_lock, &[key], |_, data| {
                    let mut v: Vec<u32> = if data.len() < n * 4 {
                        vec![0; n]
                    } else {
                        data.chunks_exact(4)
                            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                            .collect()
                    };
                    v[pnn as usize] = v[pnn as usize].wrapping_add(1);
                    counter.copy_from_slice(&v[..n]);
                    v.iter().flat_map(|x| x.to_le_bytes()).collect()
                })
                .map_err(|e| PerfError::Cluster(format!("transaction commit failed - {e}")))?;
                if pnn == 0 {
                    if let Some(i) = (0..n).find(|&i| counter[i] < old[i]) {
                        return Err(PerfError::Cluster(format!(
                            "Counter reduced for node {i}: {} -> {}",
                            old[i], counter[i]
                        )));
                    }
                    old.copy_from_slice(&counter);
                }
                let now = Instant::now();
                if now >= end {
                    println!("{}", line(pnn, &counter));
                    return Ok(());
                }
                if pnn == 0 && o.basic.interactive && now >= tick {
                    println!("{}", line(pnn, &counter));
                    tick = now + Duration::from_secs(1);
                }
            }
        },
    )
}
