//! tunnel_test: every node opens a send tunnel (`TUNNEL_TEST | pnn`) and a
//! receive tunnel (`TUNNEL_TEST | prev`), starts a token of its own round
//! the ring and forwards every token it receives to the next node; a token
//! coming home bumps the node's count. Prints `pnn[PNN] RATE msgs/sec`
//! after `-t` seconds, as upstream's program of that name (INTEGRATION
//! simple/cluster.021.tunnel_ring.sh).

use std::time::{Duration, Instant};

use ctdb_perf::error::{PerfError, Result};
use ctdb_perf::testprog::{self, BasicOpts};
use ctdb_protocol::types::srvid;

fn token(pnn: u32, count: u32) -> [u8; 8] {
    let mut b = [0u8; 8];
    b[..4].copy_from_slice(&pnn.to_le_bytes());
    b[4..].copy_from_slice(&count.to_le_bytes());
    b
}

fn main() -> std::process::ExitCode {
    testprog::main(
        "tunnel_test",
        "Pass tokens round the cluster through tunnels",
        |o: BasicOpts| -> Result<()> {
            let socket = o.verify()?;
            let n = o.num_nodes;
            let mut c = testprog::connect(&socket)?;
            let pnn = c.pnn();
            let next = (pnn + 1) % n;
            let prev = (pnn + n - 1) % n;
            let send_id = srvid::TUNNEL_TEST | u64::from(pnn);
            let recv_id = srvid::TUNNEL_TEST | u64::from(prev);
            c.tunnel_register(send_id)?;
            if recv_id != send_id {
                c.tunnel_register(recv_id)?;
            }
            testprog::cluster_wait(&mut c, n)?;
            let end = o.deadline();
            let mut count = 0u32;
            c.tunnel_send(send_id, next, &token(pnn, count))?;
            while let Some(t) = c.recv_tunnel(end)? {
                if t.tunnel_id != recv_id {
                    return Err(PerfError::Cluster(format!(
                        "pnn:{pnn} Received data on send tunnel"
                    )));
                }
                let Ok(b) = <[u8; 8]>::try_from(t.data.as_slice()) else {
                    return Err(PerfError::Cluster(format!(
                        "tunnel data of {} bytes, want 8",
                        t.data.len()
                    )));
                };
                let from = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
                let mut got = u32::from_le_bytes([b[4], b[5], b[6], b[7]]);
                if from == pnn {
                    if got != count {
                        return Err(PerfError::Cluster(format!(
                            "token came back with count {got}, want {count}"
                        )));
                    }
                    count += 1;
                    got = count;
                }
                c.tunnel_send(send_id, next, &token(from, got))?;
            }
            println!(
                "pnn[{pnn}] {:.1} msgs/sec",
                f64::from(count) / o.timelimit.max(1) as f64
            );
            // Let the other nodes finish before the tunnels close, draining
            // what still arrives.
            let linger = Instant::now() + Duration::from_secs(3);
            while c.recv_tunnel(linger)?.is_some() {}
            c.tunnel_deregister(send_id)?;
            if recv_id != send_id {
                c.tunnel_deregister(recv_id)?;
            }
            Ok(())
        },
    )
}
