//! The per-core split of the database layer: two data-core threads, each
//! with a [`Shard`] owning its partition of a volatile database, serve
//! REQ_CALLs routed by key from the control side over channels (standing in
//! for the runtime's bounded cross-core channels). The file they write is
//! the one file every other process sees: checked through the control
//! core's own handle and with Debian's `tdbdump`.

use std::path::Path;
use std::process::Command;
use std::sync::mpsc;
use std::thread::JoinHandle;

use ctdb_daemon::db::{CallOutcome, Databases, DbConfig, Shard, ShardReply, ShardRequest};
use ctdb_protocol::constants::{CTDB_FETCH_FUNC, CTDB_NULL_FUNC};
use ctdb_protocol::ReqCall;

struct DataCore {
    tx: mpsc::Sender<ShardRequest>,
    rx: mpsc::Receiver<ShardReply>,
    thread: Option<JoinHandle<()>>,
}

impl DataCore {
    fn start(index: usize, count: usize) -> DataCore {
        let (tx, req_rx) = mpsc::channel::<ShardRequest>();
        let (rep_tx, rx) = mpsc::channel::<ShardReply>();
        let thread = std::thread::Builder::new()
            .name(format!("test-shard-{index}"))
            .spawn(move || {
                let mut shard = Shard::new(index, count);
                while let Ok(req) = req_rx.recv() {
                    if rep_tx.send(shard.handle(req)).is_err() {
                        break;
                    }
                }
            })
            .unwrap();
        DataCore {
            tx,
            rx,
            thread: Some(thread),
        }
    }

    fn ask(&self, req: ShardRequest) -> ShardReply {
        self.tx.send(req).unwrap();
        self.rx.recv().unwrap()
    }
}

impl Drop for DataCore {
    fn drop(&mut self) {
        // Closing the channel ends the thread.
        let (tx, _) = mpsc::channel();
        self.tx = tx;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn tdbdump(path: &Path) -> String {
    let out = Command::new("tdbdump").arg(path).output().expect("tdbdump");
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn two_data_cores_serve_their_own_chains() {
    let dir = std::env::temp_dir().join(format!("ctdb-dbs-shards-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut cfg = DbConfig::new(
        0,
        &dir.join("volatile"),
        &dir.join("persistent"),
        &dir.join("state"),
    );
    cfg.hash_size = 1021;
    let mut dbs = Databases::open(cfg).unwrap();
    let v = dbs.attach("sharded.tdb", 0).unwrap();
    let p = dbs
        .attach("pers.tdb", ctdb_protocol::types::DB_FLAGS_PERSISTENT)
        .unwrap();
    const SHARDS: usize = 2;
    let cores: Vec<DataCore> = (0..SHARDS).map(|i| DataCore::start(i, SHARDS)).collect();
    for (i, req) in dbs.shard_attach_requests(v, SHARDS).into_iter().enumerate() {
        assert!(matches!(cores[i].ask(req), ShardReply::Done));
    }
    assert!(dbs.shard_attach_requests(p, SHARDS).is_empty());

    let keys: Vec<String> = (0..200).map(|i| format!("key-{i}")).collect();
    let mut per_shard = [0usize; SHARDS];
    for k in &keys {
        let call = ReqCall {
            flags: 0,
            db_id: v,
            callid: CTDB_NULL_FUNC,
            hopcount: 0,
            key: k.as_bytes(),
            calldata: &[],
        };
        let (shard, req) = dbs.route_call(&call, SHARDS).expect("volatile: routed");
        per_shard[shard] += 1;
        match cores[shard].ask(req) {
            ShardReply::Call(CallOutcome::Reply { status: 0, data }) => assert!(data.is_empty()),
            other => panic!("{k}: {other:?}"),
        }
    }
    assert!(per_shard.iter().all(|&n| n > 50), "{per_shard:?}");
    // Persistent databases stay on the control core.
    let pcall = ReqCall {
        flags: 0,
        db_id: p,
        callid: CTDB_FETCH_FUNC,
        hopcount: 0,
        key: b"x",
        calldata: &[],
    };
    assert!(dbs.route_call(&pcall, SHARDS).is_none());

    // Every record is in the shared file, migrated by its shard.
    for k in &keys {
        let (h, d) = dbs.peek_record(v, k.as_bytes()).expect("record");
        assert_eq!((h.rsn, h.dmaster, d.len()), (2, 0, 0), "{k}");
    }
    let path = dir.join("volatile/sharded.tdb.0");
    assert_eq!(tdbdump(&path).matches("key(").count(), 200);

    // A frozen database defers calls on the shards too.
    let (shard, req) = dbs
        .route_call(
            &ReqCall {
                flags: 0,
                db_id: v,
                callid: CTDB_NULL_FUNC,
                hopcount: 0,
                key: b"key-0",
                calldata: &[],
            },
            SHARDS,
        )
        .unwrap();
    assert!(matches!(
        cores[shard].ask(ShardRequest::Freeze { db_id: v }),
        ShardReply::Done
    ));
    assert!(matches!(
        cores[shard].ask(req),
        ShardReply::Call(CallOutcome::Defer)
    ));
    assert!(matches!(
        cores[shard].ask(ShardRequest::Thaw { db_id: v }),
        ShardReply::Done
    ));

    // The shards' delete queues (empty records) come back to the control
    // core, whose vacuum run then removes the records.
    for c in &cores {
        match c.ask(ShardRequest::TakeStats { db_id: v }) {
            ShardReply::Stats {
                stats,
                delete_queue,
            } => dbs.merge_shard_stats(v, &stats, delete_queue),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(dbs.find(v).unwrap().delete_queue_len(), 200);
    let c = dbs.vacuum(v, false).unwrap();
    assert_eq!(c.deleted, 200);
    assert_eq!(tdbdump(&path), "");

    for c in &cores {
        assert!(matches!(
            c.ask(ShardRequest::Detach { db_id: v }),
            ShardReply::Done
        ));
    }
    drop(cores);
    drop(dbs);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Throughput of REQ_CALL handling, printed (not asserted: the machine is
/// shared): the control core alone, then two data-core threads.
#[test]
fn call_throughput_smoke() {
    let dir = std::env::temp_dir().join(format!("ctdb-dbs-perf-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut cfg = DbConfig::new(
        0,
        &dir.join("volatile"),
        &dir.join("persistent"),
        &dir.join("state"),
    );
    cfg.hash_size = 10007;
    let mut dbs = Databases::open(cfg).unwrap();
    let v = dbs.attach("perf.tdb", 0).unwrap();
    const N: usize = 20_000;
    let keys: Vec<Vec<u8>> = (0..N).map(|i| format!("k{i}").into_bytes()).collect();
    let run = |dbs: &mut Databases, callid| {
        let t = std::time::Instant::now();
        for k in &keys {
            let c = ReqCall {
                flags: 0,
                db_id: v,
                callid,
                hopcount: 0,
                key: k,
                calldata: &[],
            };
            assert!(matches!(dbs.handle_call(&c), CallOutcome::Reply { .. }));
        }
        N as f64 / t.elapsed().as_secs_f64()
    };
    let create = run(&mut dbs, CTDB_NULL_FUNC);
    let fetch = run(&mut dbs, CTDB_FETCH_FUNC);
    eprintln!("control core: {create:.0} calls/s creating records, {fetch:.0} calls/s on existing");

    const SHARDS: usize = 2;
    let cores: Vec<DataCore> = (0..SHARDS).map(|i| DataCore::start(i, SHARDS)).collect();
    for (i, req) in dbs.shard_attach_requests(v, SHARDS).into_iter().enumerate() {
        assert!(matches!(cores[i].ask(req), ShardReply::Done));
    }
    // Pipelined: all requests first, then the replies, per shard.
    let t = std::time::Instant::now();
    let mut sent = [0usize; SHARDS];
    for k in &keys {
        let c = ReqCall {
            flags: 0,
            db_id: v,
            callid: CTDB_FETCH_FUNC,
            hopcount: 0,
            key: k,
            calldata: &[],
        };
        let (s, req) = dbs.route_call(&c, SHARDS).unwrap();
        cores[s].tx.send(req).unwrap();
        sent[s] += 1;
    }
    for (s, n) in sent.iter().enumerate() {
        for _ in 0..*n {
            assert!(matches!(
                cores[s].rx.recv().unwrap(),
                ShardReply::Call(CallOutcome::Reply { .. })
            ));
        }
    }
    let sharded = N as f64 / t.elapsed().as_secs_f64();
    eprintln!("{SHARDS} data cores: {sharded:.0} calls/s on existing records");
    drop(cores);
    drop(dbs);
    let _ = std::fs::remove_dir_all(&dir);
}
