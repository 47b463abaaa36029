//! message_ring: two tokens circling the cluster in opposite directions by
//! plain messages (srvid 0, payload +1 or -1). Node 0 injects a token
//! every second while none has come back in its direction. Prints
//! `Ring[PNN]: RATE msgs/sec (+ve=N -ve=M)` after `-t` seconds, as
//! upstream's program of that name (INTEGRATION simple/cluster.020).

use std::time::{Duration, Instant};

use ctdb_perf::client::Client;
use ctdb_perf::error::Result;
use ctdb_perf::testprog::{self, BasicOpts};

const MSG_ID_BENCH: u64 = 0;

fn next_node(c: &Client, n: u32, incr: i32) -> u32 {
    ((i64::from(c.pnn()) + i64::from(n) + i64::from(incr)).rem_euclid(i64::from(n))) as u32
}

fn main() -> std::process::ExitCode {
    testprog::main(
        "message_ring",
        "Pass messages round the cluster both ways",
        |o: BasicOpts| -> Result<()> {
            let socket = o.verify()?;
            let n = o.num_nodes;
            let mut c = testprog::connect(&socket)?;
            c.register_srvid(MSG_ID_BENCH)?;
            testprog::cluster_wait(&mut c, n)?;
            let start = Instant::now();
            let end = o.deadline();
            let (mut count, mut plus, mut minus) = (0u64, 0u64, 0u64);
            let mut tick = start + Duration::from_secs(1);
            loop {
                let now = Instant::now();
                if now >= end {
                    break;
                }
                if c.pnn() == 0 && now >= tick {
                    if o.interactive {
                        let t = start.elapsed().as_secs_f64();
                        println!(
                            "Ring[{}]: {:.2} msgs/sec (+ve={plus} -ve={minus})",
                            c.pnn(),
                            count as f64 / t
                        );
                    }
                    for (seen, incr) in [(plus, 1i32), (minus, -1i32)] {
                        if seen == 0 {
                            let to = next_node(&c, n, incr);
                            c.send_message(to, MSG_ID_BENCH, &incr.to_le_bytes())?;
                        }
                    }
                    tick = now + Duration::from_secs(1);
                }
                let wait = if c.pnn() == 0 { end.min(tick) } else { end };
                let Some((id, data)) = c.recv_message(wait)? else {
                    continue;
                };
                if id != MSG_ID_BENCH {
                    continue;
                }
                let Ok(b) = <[u8; 4]>::try_from(data.as_slice()) else {
                    continue;
                };
                let incr = i32::from_le_bytes(b);
                count += 1;
                if incr == 1 {
                    plus += 1;
                } else {
                    minus += 1;
                }
                let to = next_node(&c, n, incr);
                c.send_message(to, MSG_ID_BENCH, &data)?;
            }
            let t = start.elapsed().as_secs_f64();
            println!(
                "Ring[{}]: {:.2} msgs/sec (+ve={plus} -ve={minus})",
                c.pnn(),
                count as f64 / t
            );
            Ok(())
        },
    )
}
