//! The record steps of a vacuum run (`ctdb_daemon::db::vacuum`) on real
//! files of two nodes' database layers with a vnn map of two: the fast
//! path's three outcomes (deleted here, delete list, VACUUM_FETCH to the
//! lmaster), records that changed after they were queued, the full run's
//! traverse, VACUUM_FETCH filling the lmaster's fetch queue, and
//! TRY_DELETE_RECORDS on the other node before the lmaster deletes.
//! Records are written with libtdb (python3-tdb), as smbd and the `ctdb`
//! tool write them, and checked with `tdbdump`.

use std::path::{Path, PathBuf};
use std::process::Command;

use ctdb_daemon::db::vacuum::{self, DeleteStep};
use ctdb_daemon::db::{ControlCtx, ControlOutcome, Databases, DbConfig};
use ctdb_engine::ltdb::RecordFlags;
use ctdb_protocol::types::{CtdbString, KeyData, LtdbHeader as WireHeader};
use ctdb_protocol::{ControlData, Wire};

const PYTHON: &str = "/usr/bin/python3";
const MWD: u32 = 0x0001_0000;

struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!("ctdb-vacuum-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn node(dir: &Path, pnn: u32) -> Databases {
    let d = dir.join(format!("node{pnn}"));
    let mut c = DbConfig::new(
        pnn,
        &d.join("volatile"),
        &d.join("persistent"),
        &d.join("state"),
    );
    c.hash_size = 1021;
    let mut dbs = Databases::open(c).unwrap();
    dbs.set_vnn_map(vec![0, 1]);
    dbs.set_active_nodes(2);
    dbs
}

fn control(dbs: &mut Databases, data: ControlData<'_>) -> ControlOutcome {
    let mut v = Vec::new();
    data.push(&mut v);
    let ctx = ControlCtx {
        from_peer: true,
        ..Default::default()
    };
    dbs.handle_control(&ctx, data.opcode(), &v)
        .expect("a database control")
}

fn attach(dbs: &mut Databases, name: &str) -> (u32, PathBuf, u32) {
    let o = control(dbs, ControlData::DbAttach(CtdbString::new(name)));
    assert_eq!(o.status, 0);
    let id = u32::from_bytes(&o.data).unwrap();
    let db = dbs.find(id).unwrap();
    (id, db.path().to_path_buf(), db.tdb_flags())
}

/// Stores `key` as a bare ltdb header through libtdb.
fn put_empty(path: &Path, tdb_flags: u32, key: &str, rsn: u64, dmaster: u32, flags: u32) {
    let script = "import sys, struct, tdb\n\
        t = tdb.Tdb(sys.argv[1], 0, int(sys.argv[2]), 2, 0o600)\n\
        h = struct.pack('<QIIII', int(sys.argv[4]), int(sys.argv[5]), 0, int(sys.argv[6]), 0)\n\
        t.store(sys.argv[3].encode(), h, tdb.REPLACE)\n";
    let st = Command::new(PYTHON)
        .args(["-c", script])
        .arg(path)
        .args([
            tdb_flags.to_string(),
            key.to_string(),
            rsn.to_string(),
            dmaster.to_string(),
            flags.to_string(),
        ])
        .status()
        .expect("python3");
    assert!(st.success(), "python3-tdb store of {key}");
}

fn keys_in(path: &Path) -> Vec<String> {
    let out = Command::new("tdbdump").arg(path).output().expect("tdbdump");
    assert!(out.status.success(), "tdbdump {}", path.display());
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let r = l.strip_prefix("key(")?;
            let q = r.find(" = \"")?;
            Some(r[q + 4..].trim_end_matches('"').to_string())
        })
        .collect()
}

/// A key named `prefix<n>` whose lmaster is `lmaster`.
fn key_of(dbs: &Databases, prefix: &str, lmaster: u32) -> String {
    (0..1000)
        .map(|n| format!("{prefix}{n}"))
        .find(|k| dbs.lmaster(k.as_bytes()) == lmaster)
        .unwrap()
}

fn schedule(dbs: &mut Databases, db_id: u32, key: &str, rsn: u64, dmaster: u32, flags: u32) {
    let o = control(
        dbs,
        ControlData::ScheduleForDeletion(KeyData {
            db_id,
            header: WireHeader {
                rsn,
                dmaster,
                reserved1: 0,
                flags,
            },
            key: key.as_bytes(),
        }),
    );
    assert_eq!(o.status, 0);
}

#[test]
fn vacuum_steps_between_two_nodes() {
    let t = TempDir::new("steps");
    let mut n0 = node(&t.0, 0);
    let mut n1 = node(&t.0, 1);
    let (v, p0, f0) = attach(&mut n0, "vac.tdb");
    let (v1, p1, f1) = attach(&mut n1, "vac.tdb");
    assert_eq!(v, v1);

    let plain = key_of(&n0, "plain", 0);
    let mwd = key_of(&n0, "mwd", 0);
    let remote = key_of(&n0, "remote", 1);
    let changed = key_of(&n0, "changed", 0);
    let unqueued = key_of(&n0, "unqueued", 0);
    let full = key_of(&n0, "full", 0);
    // Node 0 deleted these (bare headers, dmaster 0) and queued them,
    // except `unqueued` (left for the full run); `changed` was queued
    // with an older rsn; `full` still has data.
    put_empty(&p0, f0, &plain, 2, 0, 0);
    put_empty(&p0, f0, &mwd, 3, 0, MWD);
    put_empty(&p0, f0, &remote, 4, 0, MWD);
    put_empty(&p0, f0, &changed, 6, 0, 0);
    put_empty(&p0, f0, &unqueued, 7, 0, 0);
    schedule(&mut n0, v, &plain, 2, 0, 0);
    schedule(&mut n0, v, &mwd, 3, 0, MWD);
    schedule(&mut n0, v, &remote, 4, 0, MWD);
    schedule(&mut n0, v, &changed, 5, 0, 0);
    assert_eq!(n0.find(v).unwrap().delete_queue_len(), 4);
    // Node 1 holds an older copy of `mwd` (dmaster 0).
    put_empty(&p1, f1, &mwd, 2, 0, MWD);

    // The fast path.
    let mut batch = n0.vacuum_begin(v, false).unwrap();
    assert_eq!(n0.find(v).unwrap().delete_queue_len(), 0, "queue taken");
    let out = n0.vacuum_delete_queue(&mut batch);
    assert_eq!(batch.counts.deleted, 1);
    assert_eq!(batch.counts.skipped, 1, "changed since queued");
    assert_eq!(out.delete_list.len(), 1);
    assert_eq!(out.delete_list[0].0, mwd.as_bytes());
    assert!(out.delete_list[0]
        .1
        .flags
        .contains(RecordFlags::MIGRATED_WITH_DATA));
    assert_eq!(out.fetch_lists.len(), 1);
    assert_eq!(out.fetch_lists[&1], vec![remote.as_bytes().to_vec()]);
    let k = keys_in(&p0);
    assert!(!k.contains(&plain), "{k:?}");
    for still in [&mwd, &remote, &changed, &unqueued] {
        assert!(k.contains(still), "{still} kept: {k:?}");
    }

    // VACUUM_FETCH to the lmaster (node 1): its next run migrates them.
    let data = vacuum::vacuum_fetch_data(v, 0, &out.fetch_lists[&1]);
    let o = n1.handle_control(
        &ControlCtx::default(),
        ctdb_protocol::Opcode::VacuumFetch as u32,
        &data,
    );
    assert_eq!(o.unwrap().status, 0);
    assert_eq!(n1.fetch_queue_len(v), 1);
    let b1 = n1.vacuum_begin(v, false).unwrap();
    assert_eq!(b1.fetch_queue, vec![remote.as_bytes().to_vec()]);
    assert_eq!(n1.fetch_queue_len(v), 0);

    // The delete list: node 1 deletes its copy first, then node 0.
    let data = vacuum::try_delete_data(v, &out.delete_list);
    let o = n1
        .handle_control(
            &ControlCtx::default(),
            ctdb_protocol::Opcode::TryDeleteRecords as u32,
            &data,
        )
        .unwrap();
    assert_eq!(o.status, 0);
    assert!(vacuum::kept_keys(&o.data).unwrap().is_empty());
    assert!(!keys_in(&p1).contains(&mwd));
    let (key, hdr) = &out.delete_list[0];
    assert_eq!(n0.vacuum_delete_record(v, key, hdr), DeleteStep::Deleted);
    assert!(!keys_in(&p0).contains(&mwd));

    // A record refilled on the other node is kept there, and reported.
    put_empty(&p1, f1, &mwd, 9, 1, MWD);
    let o = n1
        .handle_control(
            &ControlCtx::default(),
            ctdb_protocol::Opcode::TryDeleteRecords as u32,
            &data,
        )
        .unwrap();
    let kept = vacuum::kept_keys(&o.data).unwrap();
    assert!(kept.contains(mwd.as_bytes()), "{kept:?}");

    // The full run finds the empty records nobody queued (and `changed`,
    // empty and ours); a record with data stays.
    let script = "import sys, struct, tdb\n\
        t = tdb.Tdb(sys.argv[1], 0, int(sys.argv[2]), 2, 0o600)\n\
        t.store(sys.argv[3].encode(), struct.pack('<QIIII', 1, 0, 0, 0, 0) + b'data', tdb.REPLACE)\n";
    let st = Command::new(PYTHON)
        .args(["-c", script])
        .arg(&p0)
        .args([f0.to_string(), full.clone()])
        .status()
        .unwrap();
    assert!(st.success());
    let found = vacuum::scan_empty_records(&n0.vacuum_source(v).unwrap(), 0).unwrap();
    let mut names: Vec<String> = found
        .iter()
        .map(|(k, _)| String::from_utf8_lossy(k).into_owned())
        .collect();
    names.sort();
    let mut want = vec![changed.clone(), remote.clone(), unqueued.clone()];
    want.sort();
    assert_eq!(names, want);
    let mut batch = n0.vacuum_begin(v, true).unwrap();
    assert_eq!(batch.counts.scheduled, 3);
    let out = n0.vacuum_delete_queue(&mut batch);
    assert_eq!(batch.counts.deleted, 2, "changed and unqueued");
    assert_eq!(out.fetch_lists[&1], vec![remote.as_bytes().to_vec()]);
    let k = keys_in(&p0);
    assert!(k.contains(&full) && k.contains(&remote), "{k:?}");
    assert!(!k.contains(&changed) && !k.contains(&unqueued), "{k:?}");

    // A frozen database is not vacuumed.
    let o = control(&mut n0, ControlData::DbFreeze(v));
    assert_eq!(o.status, 0);
    assert!(n0.vacuum_begin(v, false).is_err());
    assert_eq!(
        n0.vacuum_delete_record(v, key, hdr),
        DeleteStep::Skipped,
        "no step on a frozen database"
    );
}

#[test]
fn repack_past_repack_limit_keeps_every_record() {
    let t = TempDir::new("repack");
    let mut n0 = node(&t.0, 0);
    n0.set_vnn_map(vec![0]);
    let (v, p0, f0) = attach(&mut n0, "repack.tdb");
    // Many records written and most deleted again by libtdb: their space
    // goes to the free list.
    let script = "import sys, struct, tdb\n\
        t = tdb.Tdb(sys.argv[1], 0, int(sys.argv[2]), 2, 0o600)\n\
        h = struct.pack('<QIIII', 1, 0, 0, 0, 0)\n\
        for i in range(400):\n    t.store(b'k%d' % i, h + b'x' * (i % 50 + 1), tdb.REPLACE)\n\
        for i in range(400):\n    (i % 10) and t.delete(b'k%d' % i)\n";
    let st = Command::new(PYTHON)
        .args(["-c", script])
        .arg(&p0)
        .arg(f0.to_string())
        .status()
        .unwrap();
    assert!(st.success());
    assert_eq!(keys_in(&p0).len(), 40);
    assert_eq!(n0.vacuum_repack(v, 0), None, "RepackLimit 0 disables");
    assert_eq!(n0.vacuum_repack(v, 1_000_000), None, "below the limit");
    let n = n0.vacuum_repack(v, 2).expect("repacked past the limit");
    assert!(n >= 2, "{n} free-list entries");
    let mut k = keys_in(&p0);
    k.sort();
    let mut want: Vec<String> = (0..400).step_by(10).map(|i| format!("k{i}")).collect();
    want.sort();
    assert_eq!(k, want);
    // Repacked: the free list is short again.
    assert_eq!(n0.vacuum_repack(v, 2), None);
}
