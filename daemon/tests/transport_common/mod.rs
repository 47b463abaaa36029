//! Test harness for the transport tests: an in-process "node" is a set of
//! glommio executors (one per core) running `Transport` on real TCP
//! sockets, driven from the test thread through channels.

#![allow(dead_code)]

use std::net::{IpAddr, Ipv4Addr};
use std::rc::Rc;
use std::time::{Duration, Instant};

use crossbeam::channel::{self, Receiver, Sender};
use ctdb_daemon::transport::mesh::mesh;
use ctdb_daemon::transport::route::ChainShards;
use ctdb_daemon::transport::{NodeEvent, Sent, Transport, TransportConfig, TransportStats};
use glommio::{ExecutorJoinHandle, LocalExecutorBuilder, Placement};

pub const HASH_SIZE: u32 = 10007;

pub enum Cmd {
    Send {
        pnn: u32,
        bytes: Vec<u8>,
    },
    /// Sends `count` copies of `bytes` back to back, then reports how
    /// many were queued on this core's own connection.
    Flood {
        pnn: u32,
        bytes: Vec<u8>,
        count: usize,
    },
    Stop,
}

#[derive(Debug)]
pub enum Out {
    Event(NodeEvent),
    Recv {
        core: usize,
        from: u32,
        bytes: Vec<u8>,
    },
    Sent {
        core: usize,
        pnn: u32,
        result: Result<Sent, String>,
    },
    Flooded {
        core: usize,
        queued: usize,
        took: Duration,
    },
    Stopped {
        core: usize,
        stats: TransportStats,
    },
    StartFailed {
        core: usize,
        why: String,
    },
}

pub struct TestNode {
    pub pnn: u32,
    pub cores: usize,
    cmd: Vec<Sender<Cmd>>,
    pub out: Receiver<Out>,
    handles: Vec<ExecutorJoinHandle<()>>,
}

pub fn ip(s: &str) -> IpAddr {
    IpAddr::V4(s.parse::<Ipv4Addr>().expect("test address"))
}

/// Config for tests: short keepalives, given port.
pub fn config(
    pnn: u32,
    nodes: &[&str],
    port: u16,
    interval_ms: u64,
    limit: u32,
) -> TransportConfig {
    let mut cfg = TransportConfig::new(pnn, nodes.iter().map(|a| Some(ip(a))).collect());
    cfg.port = port;
    cfg.keepalive_interval = Duration::from_millis(interval_ms);
    cfg.keepalive_limit = limit;
    cfg
}

/// `CTDB_TRANSPORT_TEST_LOG=1` shows the transport's log on stderr.
fn init_log() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        if std::env::var_os("CTDB_TRANSPORT_TEST_LOG").is_some() {
            use ctdb_daemon::logging::{init, DebugLevel, LogTarget};
            let _ = init(&LogTarget::Stderr, DebugLevel::Debug);
        }
    });
}

impl TestNode {
    pub fn start(cfg: TransportConfig, cores: usize) -> TestNode {
        init_log();
        let seats = mesh(cores, 64);
        let (out_tx, out_rx) = channel::unbounded();
        let mut cmd = Vec::new();
        let mut handles = Vec::new();
        for seat in seats {
            let core = seat.core();
            let (ctx, crx) = channel::unbounded::<Cmd>();
            cmd.push(ctx);
            let out = out_tx.clone();
            let cfg = cfg.clone();
            let h = LocalExecutorBuilder::new(Placement::Unbound)
                .name(&format!("tn{}-c{core}", cfg.my_pnn))
                .io_memory(1 << 18)
                .spawn(move || async move {
                    let shards = Rc::new(ChainShards {
                        shards: cores.saturating_sub(1).max(1),
                        hash_size: HASH_SIZE,
                        control_dbs: vec![],
                    });
                    let t = match Transport::start(cfg, seat, shards).await {
                        Ok(t) => t,
                        Err(e) => {
                            let _ = out.send(Out::StartFailed {
                                core,
                                why: e.to_string(),
                            });
                            return;
                        }
                    };
                    let t2 = t.clone();
                    let o2 = out.clone();
                    let rx_task = glommio::spawn_local(async move {
                        while let Some(r) = t2.recv().await {
                            let _ = o2.send(Out::Recv {
                                core,
                                from: r.from,
                                bytes: r.bytes,
                            });
                        }
                    });
                    let t3 = t.clone();
                    let o3 = out.clone();
                    let ev_task = glommio::spawn_local(async move {
                        while let Some(e) = t3.next_event().await {
                            let _ = o3.send(Out::Event(e));
                        }
                    });
                    loop {
                        match crx.try_recv() {
                            Ok(Cmd::Send { pnn, bytes }) => {
                                let result = t.send(pnn, bytes).await.map_err(|e| e.to_string());
                                let _ = out.send(Out::Sent { core, pnn, result });
                            }
                            Ok(Cmd::Flood { pnn, bytes, count }) => {
                                let start = Instant::now();
                                let mut queued = 0;
                                for _ in 0..count {
                                    if let Ok(Sent::Queued) = t.send(pnn, bytes.clone()).await {
                                        queued += 1;
                                    }
                                }
                                let _ = out.send(Out::Flooded {
                                    core,
                                    queued,
                                    took: start.elapsed(),
                                });
                            }
                            Ok(Cmd::Stop) | Err(channel::TryRecvError::Disconnected) => break,
                            Err(channel::TryRecvError::Empty) => {
                                glommio::timer::sleep(Duration::from_millis(3)).await;
                            }
                        }
                    }
                    let _ = out.send(Out::Stopped {
                        core,
                        stats: t.stats(),
                    });
                    t.stop();
                    drop(rx_task);
                    drop(ev_task);
                    // Let the killed tasks run down and close their sockets.
                    glommio::timer::sleep(Duration::from_millis(20)).await;
                })
                .expect("spawn executor");
            handles.push(h);
        }
        TestNode {
            pnn: cfg.my_pnn,
            cores,
            cmd,
            out: out_rx,
            handles,
        }
    }

    pub fn flood(&self, core: usize, pnn: u32, bytes: Vec<u8>, count: usize) {
        self.cmd[core]
            .send(Cmd::Flood { pnn, bytes, count })
            .expect("node running");
    }

    pub fn send(&self, core: usize, pnn: u32, bytes: Vec<u8>) {
        self.cmd[core]
            .send(Cmd::Send { pnn, bytes })
            .expect("node running");
    }

    /// Stops every core and returns their statistics by core.
    pub fn stop(self) -> Vec<TransportStats> {
        for c in &self.cmd {
            let _ = c.send(Cmd::Stop);
        }
        for h in self.handles {
            h.join().expect("executor ended cleanly");
        }
        let mut stats = vec![TransportStats::default(); self.cores];
        for o in self.out.try_iter() {
            if let Out::Stopped { core, stats: s } = o {
                stats[core] = s;
            }
        }
        stats
    }

    /// Waits for the next output matching `f`, keeping others in `seen`.
    pub fn wait_for<T>(
        &self,
        timeout: Duration,
        seen: &mut Vec<Out>,
        mut f: impl FnMut(&Out) -> Option<T>,
    ) -> Option<T> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.out.recv_timeout(left) {
                Ok(o) => {
                    if let Out::StartFailed { core, why } = &o {
                        panic!("node {} core {core} failed to start: {why}", self.pnn);
                    }
                    if let Some(v) = f(&o) {
                        return Some(v);
                    }
                    seen.push(o);
                }
                Err(_) => return None,
            }
        }
    }

    /// Waits until this node has reported `Connected` for all of `pnns`.
    pub fn wait_connected(&self, pnns: &[u32], timeout: Duration) -> bool {
        let mut want: Vec<u32> = pnns.to_vec();
        let mut seen = Vec::new();
        while !want.is_empty() {
            let got = self.wait_for(timeout, &mut seen, |o| match o {
                Out::Event(NodeEvent::Connected(p)) => Some(*p),
                _ => None,
            });
            match got {
                Some(p) => want.retain(|w| *w != p),
                None => return false,
            }
        }
        true
    }
}

/// A REQ_MESSAGE from `src` to `dst` with `data`.
pub fn message(src: u32, dst: u32, srvid: u64, data: &[u8]) -> Vec<u8> {
    use ctdb_protocol::{Data, Header, Packet, Payload, ReqMessage};
    let mut out = Vec::new();
    Packet::new(
        Header::new(1, dst, src, 0),
        Payload::ReqMessage(ReqMessage {
            srvid,
            data: Data::Raw(data),
        }),
    )
    .encode(&mut out)
    .expect("encode");
    out
}

/// A REQ_CALL from `src` to `dst` for `key` of database `db_id`.
pub fn call(src: u32, dst: u32, db_id: u32, key: &[u8], reqid: u32) -> Vec<u8> {
    use ctdb_protocol::{Header, Packet, Payload, ReqCall};
    let mut out = Vec::new();
    Packet::new(
        Header::new(1, dst, src, reqid),
        Payload::ReqCall(ReqCall {
            db_id,
            key,
            calldata: b"",
            ..Default::default()
        }),
    )
    .encode(&mut out)
    .expect("encode");
    out
}

/// A plain blocking TCP connection from `local` (source address) to
/// `peer`, as a foreign node would make it.
pub fn connect_from(
    local: &str,
    peer: std::net::SocketAddr,
) -> std::io::Result<std::net::TcpStream> {
    use ctdb_daemon::transport::sys;
    let fd = sys::bound_socket(ip(local))?;
    if !sys::start_connect(&fd, peer)? {
        let deadline = Instant::now() + Duration::from_secs(2);
        while !sys::is_writable(&fd)? {
            if Instant::now() > deadline {
                return Err(std::io::ErrorKind::TimedOut.into());
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        if let Some(e) = sys::so_error(&fd)? {
            return Err(e);
        }
    }
    let s = std::net::TcpStream::from(fd);
    s.set_nonblocking(false)?;
    Ok(s)
}

/// Reads one whole packet; `None` at EOF (or a read error).
pub fn read_packet(s: &mut impl std::io::Read) -> Option<Vec<u8>> {
    let mut len = [0u8; 4];
    s.read_exact(&mut len).ok()?;
    let n = u32::from_ne_bytes(len) as usize;
    if !(32..=1 << 20).contains(&n) {
        return None;
    }
    let mut pkt = vec![0u8; n];
    pkt[..4].copy_from_slice(&len);
    s.read_exact(&mut pkt[4..]).ok()?;
    Some(pkt)
}

/// A REQ_KEEPALIVE from `src` to `dst`; `None` payload = header only.
pub fn keepalive(src: u32, dst: u32, ka: Option<(u32, u32)>) -> Vec<u8> {
    use ctdb_protocol::{Header, Packet, Payload, ReqKeepalive};
    let mut out = Vec::new();
    Packet::new(
        Header::new(1, dst, src, 0),
        Payload::ReqKeepalive(ka.map(|(version, uptime)| ReqKeepalive { version, uptime })),
    )
    .encode(&mut out)
    .expect("encode");
    out
}
