//! The database layer on real files, checked with Debian's `tdbdump`,
//! `ltdbtool` and python3-tdb (libtdb) as peers: attach and the registry
//! controls, the REQ_CALL migration a `ctdb writekey` does followed by the
//! tool's own write into the file (done here with libtdb), TRANS3_COMMIT,
//! recovery (freeze, transaction, wipe, pull, push), traverses, restarts.

use std::path::{Path, PathBuf};
use std::process::Command;

use ctdb_daemon::db::{
    db_id_of, CallOutcome, ControlCtx, ControlOutcome, Databases, DbConfig, OutMessage,
};
use ctdb_engine::ltdb::{LtdbHeader, RecordFlags};
use ctdb_protocol::constants::{CTDB_FETCH_FUNC, CTDB_IMMEDIATE_MIGRATION, CTDB_NULL_FUNC};
use ctdb_protocol::types::{
    CtdbString, DbIdMap, PullDbExt, RecBuffer, RecBufferBuilder, RecData, TransDb,
    TraverseStartExt, DB_FLAGS_PERSISTENT, DB_FLAGS_REPLICATED,
};
use ctdb_protocol::{ControlData, DbIdPad, Opcode, ReqCall, Wire};

const PYTHON: &str = "/usr/bin/python3";

struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let p = std::env::temp_dir().join(format!(
            "ctdb-dbs-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
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

fn config(dir: &Path) -> DbConfig {
    let mut c = DbConfig::new(
        0,
        &dir.join("volatile"),
        &dir.join("persistent"),
        &dir.join("state"),
    );
    // Small hash tables keep the files small; the layout is the same.
    c.hash_size = 1021;
    c
}

fn client() -> ControlCtx {
    ControlCtx {
        srcnode: 0,
        from_client: true,
        ..Default::default()
    }
}

fn control(dbs: &mut Databases, data: ControlData<'_>) -> ControlOutcome {
    let mut v = Vec::new();
    data.push(&mut v);
    dbs.handle_control(&client(), data.opcode(), &v)
        .expect("a database control")
}

fn ok(o: &ControlOutcome) {
    assert_eq!(o.status, 0, "control failed: {:?}", o.errmsg);
}

fn attach(dbs: &mut Databases, name: &str, flags: u8) -> u32 {
    let s = CtdbString::new(name);
    let o = match flags {
        0 => control(dbs, ControlData::DbAttach(s)),
        DB_FLAGS_PERSISTENT => control(dbs, ControlData::DbAttachPersistent(s)),
        _ => control(dbs, ControlData::DbAttachReplicated(s)),
    };
    ok(&o);
    u32::from_bytes(&o.data).unwrap()
}

fn tdbdump(path: &Path) -> String {
    let out = Command::new("tdbdump").arg(path).output().expect("tdbdump");
    assert!(
        out.status.success(),
        "tdbdump {}: {:?}",
        path.display(),
        out
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn ltdbdump(path: &Path) -> String {
    let out = Command::new("/usr/bin/ltdbtool")
        .args(["dump", "-p"])
        .arg(path)
        .output()
        .expect("ltdbtool");
    assert!(
        out.status.success(),
        "ltdbtool {}: {:?}",
        path.display(),
        out
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn path_of(dbs: &mut Databases, id: u32) -> PathBuf {
    let o = control(dbs, ControlData::Getdbpath(id));
    ok(&o);
    let s = CtdbString::from_bytes(&o.data).unwrap();
    PathBuf::from(s.as_str().unwrap())
}

fn call(dbs: &mut Databases, db_id: u32, callid: u32, key: &[u8]) -> (i32, Vec<u8>) {
    let c = ReqCall {
        flags: CTDB_IMMEDIATE_MIGRATION,
        db_id,
        callid,
        hopcount: 0,
        key,
        calldata: &[],
    };
    match dbs.handle_call(&c) {
        CallOutcome::Reply { status, data } => (status, data),
        other => panic!("call gave {other:?}"),
    }
}

/// Runs a python3-tdb snippet; `path`, `key` and `val` are passed in.
fn python(script: &str, args: &[&str]) -> String {
    let out = Command::new(PYTHON)
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "python3-tdb failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn attach_registry_controls_and_files() {
    let t = TempDir::new("attach");
    let mut dbs = Databases::open(config(&t.0)).unwrap();
    let v = attach(&mut dbs, "locking.tdb", 0);
    let p = attach(&mut dbs, "secrets.tdb", DB_FLAGS_PERSISTENT);
    let r = attach(&mut dbs, "repl.tdb", DB_FLAGS_REPLICATED);
    assert_eq!(v, db_id_of("locking.tdb"));
    assert_eq!(p, db_id_of("secrets.tdb"));
    // Attaching again gives the same id; a volatile attach of a persistent
    // database is fine, a persistent attach of a volatile one is not.
    assert_eq!(attach(&mut dbs, "locking.tdb", 0), v);
    assert_eq!(attach(&mut dbs, "secrets.tdb", 0), p);
    let o = control(
        &mut dbs,
        ControlData::DbAttachPersistent(CtdbString::new("locking.tdb")),
    );
    assert_eq!(o.status, -1);
    // A name with a slash would leave the directory.
    let o = control(&mut dbs, ControlData::DbAttach(CtdbString::new("../x.tdb")));
    assert_eq!(o.status, -1);

    // GET_DBMAP: newest first, with flags.
    let o = control(&mut dbs, ControlData::GetDbmap);
    ok(&o);
    let map = DbIdMap::from_bytes(&o.data).unwrap();
    let got: Vec<(u32, u8)> = map.dbs.iter().map(|d| (d.db_id, d.flags)).collect();
    assert_eq!(
        got,
        vec![(r, DB_FLAGS_REPLICATED), (p, DB_FLAGS_PERSISTENT), (v, 0)]
    );

    // Paths and names as upstream: <dir>/<name>.<pnn>.
    assert_eq!(path_of(&mut dbs, v), t.0.join("volatile/locking.tdb.0"));
    assert_eq!(path_of(&mut dbs, p), t.0.join("persistent/secrets.tdb.0"));
    assert_eq!(path_of(&mut dbs, r), t.0.join("volatile/repl.tdb.0"));
    let o = control(&mut dbs, ControlData::GetDbname(p));
    assert_eq!(o.data, b"secrets.tdb\0");
    assert_eq!(control(&mut dbs, ControlData::GetDbname(0x1234)).status, -1);

    // DB_OPEN_FLAGS: what tdb_get_flags gives on ctdbd's handle.
    let flags = |dbs: &mut Databases, id| {
        let o = control(dbs, ControlData::DbOpenFlags(id));
        ok(&o);
        i32::from_bytes(&o.data).unwrap()
    };
    let vf = flags(&mut dbs, v);
    assert!(vf == 0x1C41 || vf == 0x0C41, "volatile flags 0x{vf:x}");
    assert_eq!(flags(&mut dbs, p), 0x400);
    assert_eq!(flags(&mut dbs, r), 0xC41);

    // Every file is a valid, empty tdb to Debian's tools.
    for id in [v, p, r] {
        let path = path_of(&mut dbs, id);
        assert_eq!(tdbdump(&path), "", "{}", path.display());
    }

    // Bad control data is refused, not a panic.
    let o = dbs
        .handle_control(&client(), Opcode::GetDbname as u32, &[1, 2])
        .unwrap();
    assert_eq!(o.status, -1);
    assert!(dbs
        .handle_control(&client(), Opcode::Ping as u32, &[])
        .is_none());

    // DETACH: refused while clients may attach (the default tunable) and
    // for persistent databases.
    assert_eq!(control(&mut dbs, ControlData::DbDetach(v)).status, -1);
}

#[test]
fn detach_follows_the_tunable() {
    let t = TempDir::new("detach");
    let mut cfg = config(&t.0);
    cfg.allow_client_db_attach = false;
    let mut dbs = Databases::open(cfg).unwrap();
    let v = dbs.attach("vol.tdb", 0).unwrap();
    let p = dbs.attach("per.tdb", DB_FLAGS_PERSISTENT).unwrap();
    // Clients may not attach now.
    let o = control(&mut dbs, ControlData::DbAttach(CtdbString::new("x.tdb")));
    assert_eq!(o.status, -1);
    assert_eq!(control(&mut dbs, ControlData::DbDetach(p)).status, -1);
    // From a client: answered 0 and broadcast to every connected node,
    // this one included; the copies from the daemon do the detach.
    let o = control(&mut dbs, ControlData::DbDetach(v));
    ok(&o);
    assert_eq!(o.controls_after.len(), 1);
    let c = &o.controls_after[0];
    assert_eq!(
        (c.destnode, c.opcode),
        (
            ctdb_protocol::constants::CTDB_BROADCAST_CONNECTED,
            Opcode::DbDetach
        )
    );
    assert!(dbs.find(v).is_some());
    let peer = ControlCtx {
        srcnode: 1,
        from_peer: true,
        ..Default::default()
    };
    let o = dbs
        .handle_control(&peer, Opcode::DbDetach as u32, &c.data)
        .expect("a database control");
    ok(&o);
    assert!(o.controls_after.is_empty());
    assert!(dbs.find(v).is_none());
    assert_eq!(control(&mut dbs, ControlData::DbDetach(v)).status, -1);
    // SET_TUNABLE AllowClientDBAttach 1 (live): detaches are refused.
    let mut t = ctdb_config::Tunables::default();
    t.set("AllowClientDBAttach", 1).unwrap();
    dbs.update_tunables(&t);
    let w = dbs.attach("vol2.tdb", 0).unwrap();
    assert_eq!(control(&mut dbs, ControlData::DbDetach(w)).status, -1);
}

#[test]
fn writekey_migration_then_libtdb_write_then_fetch() {
    let t = TempDir::new("writekey");
    let mut dbs = Databases::open(config(&t.0)).unwrap();
    let v = attach(&mut dbs, "test.tdb", 0);
    let path = path_of(&mut dbs, v);
    let flags = {
        let o = control(&mut dbs, ControlData::DbOpenFlags(v));
        i32::from_bytes(&o.data).unwrap()
    };

    // `ctdb writekey`: the record is missing, so the tool asks for a
    // migration (NULL_FUNC) ...
    let (status, data) = call(&mut dbs, v, CTDB_NULL_FUNC, b"key1");
    assert_eq!((status, data.len()), (0, 0));
    let (h, d) = dbs.peek_record(v, b"key1").expect("record created");
    assert_eq!(h, LtdbHeader::new(2, 0, RecordFlags::DEFAULT));
    assert!(d.is_empty());
    // ... then writes header||value into the file itself under the chain
    // lock. Done here by libtdb, opening the file as the tool does (same
    // flags; our ACTIVE lock keeps its CLEAR_IF_FIRST open from wiping).
    let script = r#"
import sys, tdb
path, flags, key, val = sys.argv[1], int(sys.argv[2]), sys.argv[3].encode(), sys.argv[4].encode()
t = tdb.Tdb(path, 0, flags, 2, 0o600)
old = t.get(key)
assert old is not None and len(old) == 24, old
t.lock_all() if False else None
t.store(key, old + val, tdb.REPLACE)
print(len(t.get(key)))
"#;
    let out = python(
        script,
        &[path.to_str().unwrap(), &flags.to_string(), "key1", "value1"],
    );
    assert_eq!(out.trim(), "30");

    // The daemon reads what the client wrote (FETCH_FUNC: user data only).
    let (status, data) = call(&mut dbs, v, CTDB_FETCH_FUNC, b"key1");
    assert_eq!(status, 0);
    assert_eq!(data, b"value1");
    // That call stored the record back as dmaster: rsn 3 now.
    let (h, _) = dbs.peek_record(v, b"key1").unwrap();
    assert_eq!((h.rsn, h.dmaster), (3, 0));

    // Debian's tools see the same record.
    let dump = tdbdump(&path);
    assert!(dump.contains("key(4) = \"key1\""), "{dump}");
    assert!(dump.contains("value1"), "{dump}");
    let ldump = ltdbdump(&path);
    assert!(ldump.contains("dmaster: 0"), "{ldump}");
    assert!(ldump.contains("rsn: 3"), "{ldump}");
}

#[test]
fn trans3_commit_is_atomic_and_seqnum_visible() {
    let t = TempDir::new("trans3");
    let mut dbs = Databases::open(config(&t.0)).unwrap();
    let p = attach(&mut dbs, "ptest.tdb", DB_FLAGS_PERSISTENT);
    let path = path_of(&mut dbs, p);
    let seqkey = b"__db_sequence_number__\0";

    let hdr = |rsn| ctdb_protocol::types::LtdbHeader {
        rsn,
        dmaster: 0,
        reserved1: 0,
        flags: 0,
    };
    let mut b = RecBufferBuilder::new(p);
    b.add(0, Some(&hdr(1)), b"alpha", b"one");
    b.add(0, Some(&hdr(1)), b"beta", b"two");
    b.add(0, Some(&hdr(1)), seqkey, &1u64.to_ne_bytes());
    let o = control(&mut dbs, ControlData::Trans3Commit(b.as_rec_buffer()));
    ok(&o);

    let o = control(&mut dbs, ControlData::GetDbSeqnum(DbIdPad(p)));
    ok(&o);
    assert_eq!(u64::from_bytes(&o.data).unwrap(), 1);

    let dump = tdbdump(&path);
    assert!(dump.contains("key(5) = \"alpha\""), "{dump}");
    assert!(dump.contains("key(4) = \"beta\""), "{dump}");
    let ldump = ltdbdump(&path);
    assert_eq!(ldump.matches("rsn: 1").count(), 3, "{ldump}");

    // A buffer with one good and one stale record changes nothing.
    let mut b = RecBufferBuilder::new(p);
    b.add(0, Some(&hdr(2)), b"alpha", b"ONE");
    b.add(0, Some(&hdr(1)), b"beta", b"stale");
    let o = control(&mut dbs, ControlData::Trans3Commit(b.as_rec_buffer()));
    assert_eq!(o.status, -1);
    assert_eq!(tdbdump(&path), dump, "a failed commit changed the file");

    // Not from a client, or in recovery: refused.
    let mut v = Vec::new();
    ControlData::Trans3Commit(RecBuffer::empty(p)).push(&mut v);
    let ctx = ControlCtx {
        from_client: true,
        recovery_active: true,
        ..Default::default()
    };
    let o = dbs
        .handle_control(&ctx, Opcode::Trans3Commit as u32, &v)
        .unwrap();
    assert_eq!(o.status, -1);

    // Persistent data survives a restart; the database is attached again
    // from the persistent directory.
    drop(dbs);
    let mut dbs = Databases::open(config(&t.0)).unwrap();
    assert!(dbs.find(p).is_some(), "persistent database re-attached");
    let o = control(&mut dbs, ControlData::GetDbSeqnum(DbIdPad(p)));
    assert_eq!(u64::from_bytes(&o.data).unwrap(), 1);
    let (h, d) = dbs.peek_record(p, b"alpha").unwrap();
    assert_eq!((h.rsn, d.as_slice()), (1, &b"one"[..]));
}

#[test]
fn volatile_database_starts_empty_after_restart() {
    let t = TempDir::new("restart");
    let mut dbs = Databases::open(config(&t.0)).unwrap();
    let v = attach(&mut dbs, "vol.tdb", 0);
    call(&mut dbs, v, CTDB_NULL_FUNC, b"k");
    assert!(dbs.peek_record(v, b"k").is_some());
    drop(dbs);
    let mut dbs = Databases::open(config(&t.0)).unwrap();
    assert!(dbs.find(v).is_none(), "volatile dbs are not re-attached");
    // A test thread that forks at the wrong moment (tdbdump, python3 in
    // the tests beside this one) holds a copy of the dropped handle's
    // descriptor, and with it the ACTIVE lock, until its exec: the attach
    // then rightly finds the file in use. Give such a child a moment.
    let s = CtdbString::new("vol.tdb");
    let mut o = control(&mut dbs, ControlData::DbAttach(s));
    for _ in 0..50 {
        if o.status == 0 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
        o = control(&mut dbs, ControlData::DbAttach(CtdbString::new("vol.tdb")));
    }
    ok(&o);
    let v2 = u32::from_bytes(&o.data).unwrap();
    assert_eq!(v, v2);
    assert!(
        dbs.peek_record(v, b"k").is_none(),
        "CLEAR_IF_FIRST wiped it"
    );
    let path = path_of(&mut dbs, v);
    assert_eq!(tdbdump(&path), "");
}

fn recovery_ctx() -> ControlCtx {
    ControlCtx {
        srcnode: 0,
        from_client: true,
        recovery_active: true,
        ..Default::default()
    }
}

fn rc(dbs: &mut Databases, data: ControlData<'_>) -> ControlOutcome {
    let mut v = Vec::new();
    data.push(&mut v);
    dbs.handle_control(&recovery_ctx(), data.opcode(), &v)
        .unwrap()
}

#[test]
fn recovery_pull_push_wipe() {
    let t = TempDir::new("recovery");
    let mut cfg = config(&t.0);
    cfg.rec_buffer_size_limit = 200; // several pull messages
    let mut dbs = Databases::open(cfg).unwrap();
    let v = attach(&mut dbs, "rec.tdb", 0);
    for i in 0..20u32 {
        call(&mut dbs, v, CTDB_NULL_FUNC, format!("key{i}").as_bytes());
    }
    let path = path_of(&mut dbs, v);

    // Pull and wipe need the freeze (and wipe a transaction).
    let pull = PullDbExt {
        db_id: v,
        lmaster: 0xffff_ffff,
        srvid: 0xF301_0000_0000_0001,
    };
    assert_eq!(rc(&mut dbs, ControlData::DbPull(pull)).status, -1);
    let tdb = TransDb { db_id: v, tid: 7 };
    assert_eq!(rc(&mut dbs, ControlData::WipeDatabase(tdb)).status, -1);

    ok(&rc(&mut dbs, ControlData::DbFreeze(v)));
    // Frozen: client calls wait.
    let c = ReqCall {
        flags: 0,
        db_id: v,
        callid: CTDB_NULL_FUNC,
        hopcount: 0,
        key: b"x",
        calldata: &[],
    };
    assert_eq!(dbs.handle_call(&c), CallOutcome::Defer);

    let o = rc(&mut dbs, ControlData::DbPull(pull));
    ok(&o);
    assert_eq!(u32::from_bytes(&o.data).unwrap(), 20);
    assert!(
        o.messages_before.len() > 1,
        "{} messages",
        o.messages_before.len()
    );
    let mut pulled: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
    for OutMessage { pnn, srvid, data } in &o.messages_before {
        assert_eq!((*pnn, *srvid), (0, pull.srvid));
        let rb = RecBuffer::from_bytes(data).unwrap();
        assert_eq!(rb.db_id, v);
        for r in rb.iter() {
            pulled.push((r.key.to_vec(), r.data.to_vec()));
        }
    }
    assert_eq!(pulled.len(), 20);

    // Wipe inside a transaction; nothing visible until commit.
    ok(&rc(&mut dbs, ControlData::DbTransactionStart(tdb)));
    ok(&rc(&mut dbs, ControlData::WipeDatabase(tdb)));
    // Push the pulled records back, with dmaster 0 and new data.
    let push = PullDbExt {
        srvid: 0xF302_0000_0000_0002,
        ..pull
    };
    ok(&rc(&mut dbs, ControlData::DbPushStart(push)));
    assert!(dbs.is_push_srvid(push.srvid));
    let mut b = RecBufferBuilder::new(v);
    for (k, _) in pulled.iter().take(5) {
        let h = ctdb_protocol::types::LtdbHeader {
            rsn: 10,
            dmaster: 0,
            reserved1: 0,
            flags: LtdbHeader::default().flags.bits() | 0x0100_0000, // RO flag: stripped
        };
        b.add(0, Some(&h), k, b"pushed");
    }
    assert!(dbs.push_message(push.srvid, &b.clone().into_wire_bytes()));
    assert!(!dbs.push_message(0x1234, &[]));
    let o = rc(&mut dbs, ControlData::DbPushConfirm(v));
    ok(&o);
    assert_eq!(u32::from_bytes(&o.data).unwrap(), 5);
    // Wrong transaction id: refused.
    let bad = TransDb { db_id: v, tid: 8 };
    assert_eq!(
        rc(&mut dbs, ControlData::DbTransactionCommit(bad)).status,
        -1
    );
    ok(&rc(&mut dbs, ControlData::DbTransactionCommit(tdb)));
    ok(&rc(&mut dbs, ControlData::DbThaw(v)));

    let ldump = ltdbdump(&path);
    assert_eq!(ldump.matches("rsn: 11").count(), 5, "{ldump}");
    assert!(!ldump.contains("flags: 0x01000000"), "{ldump}");
    let dump = tdbdump(&path);
    assert_eq!(dump.matches("key(").count(), 5, "{dump}");
    // Thawed: calls run again.
    assert!(matches!(dbs.handle_call(&c), CallOutcome::Reply { .. }));

    // Wipe alone, as `ctdb wipedb` drives it.
    ok(&rc(&mut dbs, ControlData::DbFreeze(v)));
    let tdb2 = TransDb { db_id: v, tid: 9 };
    ok(&rc(&mut dbs, ControlData::DbTransactionStart(tdb2)));
    ok(&rc(&mut dbs, ControlData::WipeDatabase(tdb2)));
    ok(&rc(&mut dbs, ControlData::DbTransactionCommit(tdb2)));
    ok(&rc(&mut dbs, ControlData::DbThaw(v)));
    assert_eq!(tdbdump(&path), "");
}

#[test]
fn traverse_start_messages_like_catdb_expects() {
    let t = TempDir::new("traverse");
    let mut dbs = Databases::open(config(&t.0)).unwrap();
    let v = attach(&mut dbs, "trav.tdb", 0);
    let path = path_of(&mut dbs, v);
    let flags = {
        let o = control(&mut dbs, ControlData::DbOpenFlags(v));
        i32::from_bytes(&o.data).unwrap()
    };
    // Three records with data, one empty (migrated but never written).
    for k in ["a", "b", "c", "empty"] {
        call(&mut dbs, v, CTDB_NULL_FUNC, k.as_bytes());
    }
    let script = r#"
import sys, tdb
t = tdb.Tdb(sys.argv[1], 0, int(sys.argv[2]), 2, 0o600)
for k in ["a", "b", "c"]:
    old = t.get(k.encode())
    t.store(k.encode(), old[:24] + ("v-" + k).encode(), tdb.REPLACE)
"#;
    python(script, &[path.to_str().unwrap(), &flags.to_string()]);

    let srvid = 0xF000_0000_0000_1234u64;
    for (withempty, expect) in [(false, 3usize), (true, 4)] {
        let o = control(
            &mut dbs,
            ControlData::TraverseStartExt(TraverseStartExt {
                db_id: v,
                reqid: 0,
                srvid,
                withemptyrecords: withempty,
            }),
        );
        ok(&o);
        assert!(o.messages_before.is_empty());
        let msgs = &o.messages_after;
        assert_eq!(msgs.len(), expect + 1);
        for m in &msgs[..expect] {
            assert_eq!(m.srvid, srvid);
            let r = RecData::from_bytes(&m.data).unwrap();
            let (h, d) = r.split_header().unwrap();
            assert_eq!(h.dmaster, 0);
            if r.key != b"empty" {
                assert_eq!(d, [b"v-".as_slice(), r.key].concat());
            }
        }
        let end = RecData::from_bytes(&msgs[expect].data).unwrap();
        assert!(end.is_end_marker());
    }
    // From a non-client: refused as upstream (no client to send to).
    let mut data = Vec::new();
    ControlData::TraverseStartExt(TraverseStartExt {
        db_id: v,
        reqid: 1,
        srvid,
        withemptyrecords: false,
    })
    .push(&mut data);
    let o = dbs
        .handle_control(
            &ControlCtx::default(),
            Opcode::TraverseStartExt as u32,
            &data,
        )
        .unwrap();
    assert_eq!(o.status, -1);
}

#[test]
fn seqnum_health_readonly_sticky_statistics() {
    let t = TempDir::new("misc");
    let mut dbs = Databases::open(config(&t.0)).unwrap();
    let v = attach(&mut dbs, "misc.tdb", 0);
    let p = attach(&mut dbs, "pmisc.tdb", DB_FLAGS_PERSISTENT);
    call(&mut dbs, v, CTDB_NULL_FUNC, b"keep");

    ok(&control(&mut dbs, ControlData::EnableSeqnum(v)));
    let o = control(&mut dbs, ControlData::DbOpenFlags(v));
    let f = i32::from_bytes(&o.data).unwrap();
    assert_eq!(f & 0x80, 0x80, "TDB_SEQNUM after ENABLE_SEQNUM: 0x{f:x}");
    assert!(
        dbs.peek_record(v, b"keep").is_some(),
        "reopen kept the data"
    );
    assert!(dbs.poll_seqnums().is_empty());
    call(&mut dbs, v, CTDB_NULL_FUNC, b"other");
    assert_eq!(dbs.poll_seqnums(), vec![v]);
    // UPDATE_SEQNUM from ourselves is a no-op, from another node bumps.
    ok(&control(&mut dbs, ControlData::UpdateSeqnum(v)));
    assert!(dbs.poll_seqnums().is_empty());

    // Health: healthy is empty output; unhealthy persistent databases
    // report the reason and refuse to attach at start-up.
    let o = control(&mut dbs, ControlData::DbGetHealth(p));
    ok(&o);
    assert!(o.data.is_empty());
    dbs.mark_unhealthy(p, "ERROR - test").unwrap();
    let o = control(&mut dbs, ControlData::DbGetHealth(p));
    assert_eq!(o.data, b"ERROR - test\0");
    drop(dbs);
    assert!(Databases::open(config(&t.0)).is_err());
    // Clear it by hand through the health database and start again.
    let health = t.0.join("state/persistent_health.tdb.0");
    python(
        "import sys, tdb\nt = tdb.Tdb(sys.argv[1], 0, tdb.DEFAULT, 2, 0o600)\nt.delete(b'pmisc.tdb')",
        &[health.to_str().unwrap()],
    );
    let mut dbs = Databases::open(config(&t.0)).unwrap();
    let v = attach(&mut dbs, "misc.tdb", 0);
    ok(&control(&mut dbs, ControlData::DbSetHealthy(p)));

    // READONLY and STICKY: volatile only, shown in GET_DBMAP flags.
    assert_eq!(control(&mut dbs, ControlData::SetDbReadonly(p)).status, -1);
    assert_eq!(control(&mut dbs, ControlData::SetDbSticky(p)).status, -1);
    ok(&control(&mut dbs, ControlData::SetDbReadonly(v)));
    ok(&control(&mut dbs, ControlData::SetDbSticky(v)));
    let ro = t.0.join("volatile/misc.tdb.0.RO");
    assert_eq!(tdbdump(&ro), "");
    let o = control(&mut dbs, ControlData::GetDbmap);
    let map = DbIdMap::from_bytes(&o.data).unwrap();
    assert_eq!(map.dbs.iter().find(|d| d.db_id == v).unwrap().flags, 0x06);

    // Statistics decode as `ctdb dbstatistics` reads them.
    dbs.count_remote_call(v, b"hot", 3, 7);
    let o = control(&mut dbs, ControlData::GetDbStatistics(v));
    ok(&o);
    let s = ctdb_protocol::types::DbStatistics::from_bytes(&o.data).unwrap();
    assert_eq!(s.num_hot_keys, 10);
    assert_eq!(s.hop_count_bucket[2], 1);
    assert_eq!((s.hot_keys[0].count, s.hot_keys[0].key), (7, &b"hot"[..]));
}

#[test]
fn vacuum_deletes_own_empty_records_only() {
    let t = TempDir::new("vacuum");
    let mut dbs = Databases::open(config(&t.0)).unwrap();
    let v = attach(&mut dbs, "vac.tdb", 0);
    let path = path_of(&mut dbs, v);
    let flags = {
        let o = control(&mut dbs, ControlData::DbOpenFlags(v));
        i32::from_bytes(&o.data).unwrap()
    };
    // Migrated, never written (empty): queued for deletion by the store
    // rules. "full" gets data from libtdb afterwards: it must stay.
    for k in ["empty1", "empty2", "full"] {
        call(&mut dbs, v, CTDB_NULL_FUNC, k.as_bytes());
    }
    python(
        "import sys, tdb\nt = tdb.Tdb(sys.argv[1], 0, int(sys.argv[2]), 2, 0o600)\n\
         o = t.get(b'full')\nt.store(b'full', o + b'data', tdb.REPLACE)",
        &[path.to_str().unwrap(), &flags.to_string()],
    );
    assert_eq!(dbs.find(v).unwrap().delete_queue_len(), 3);
    let c = dbs.vacuum(v, false).unwrap();
    assert_eq!((c.deleted, c.skipped), (2, 1));
    let dump = tdbdump(&path);
    assert_eq!(dump.matches("key(").count(), 1, "{dump}");
    assert!(dump.contains("\"full\""), "{dump}");

    // GET_DB_SEQNUM on a volatile database creates the key's initial
    // header through the store rules (rsn 1), as Debian's ctdbd does; a
    // full vacuum run then finds and removes that empty record.
    let o = control(&mut dbs, ControlData::GetDbSeqnum(DbIdPad(v)));
    assert_eq!(u64::from_bytes(&o.data).unwrap(), 0);
    let (h, d) = dbs
        .peek_record(v, b"__db_sequence_number__\0")
        .expect("seqnum record");
    assert_eq!((h.rsn, h.dmaster, d.len()), (1, 0, 0));
    let c = dbs.vacuum(v, true).unwrap();
    assert_eq!(c.deleted, 1);
    assert!(dbs.peek_record(v, b"__db_sequence_number__\0").is_none());
    // DB_VACUUM control: volatile only.
    let mut data = Vec::new();
    ControlData::DbVacuum(ctdb_protocol::types::DbVacuum {
        db_id: v,
        full_vacuum_run: true,
    })
    .push(&mut data);
    let o = dbs
        .handle_control(&ControlCtx::default(), Opcode::DbVacuum as u32, &data)
        .unwrap();
    assert_eq!(o.status, 0);
}

#[test]
fn databases_can_move_to_the_control_core() {
    fn send<T: Send>() {}
    send::<Databases>();
    send::<DbConfig>();
}

#[test]
fn freeze_all_invalidates_volatile_records_for_pull() {
    let t = TempDir::new("freezeall");
    let mut dbs = Databases::open(config(&t.0)).unwrap();
    let v = attach(&mut dbs, "fa.tdb", 0);
    let p = attach(&mut dbs, "pfa.tdb", DB_FLAGS_PERSISTENT);
    call(&mut dbs, v, CTDB_NULL_FUNC, b"k");
    assert!(dbs.freeze_all());
    assert!(dbs.all_frozen());
    let pull = |dbs: &mut Databases, db_id| {
        let o = rc(
            dbs,
            ControlData::DbPull(PullDbExt {
                db_id,
                lmaster: 0xffff_ffff,
                srvid: 77,
            }),
        );
        ok(&o);
        (u32::from_bytes(&o.data).unwrap(), o.messages_before.len())
    };
    // The inactive node's volatile copy is not offered; persistent is.
    assert_eq!(pull(&mut dbs, v), (0, 0));
    let _ = p;
    dbs.thaw_all();
    assert!(!dbs.all_frozen());
    ok(&rc(&mut dbs, ControlData::DbFreeze(v)));
    assert_eq!(pull(&mut dbs, v), (1, 1));
    ok(&rc(&mut dbs, ControlData::DbThaw(v)));
}

/// splitmix64, for reproducible random inputs.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

#[test]
fn random_control_data_never_panics() {
    let seed = std::env::var("CTDB_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x05ee_ddb5_u64);
    eprintln!("seed {seed} (CTDB_TEST_SEED replays)");
    let t = TempDir::new("fuzz");
    let mut dbs = Databases::open(config(&t.0)).unwrap();
    let v = attach(&mut dbs, "f.tdb", 0);
    let p = attach(&mut dbs, "pf.tdb", DB_FLAGS_PERSISTENT);
    let ids = [v, p, 0, 0xdead_beef];
    let mut rng = SplitMix(seed);
    let ops: Vec<u32> = ctdb_protocol::Opcode::ALL
        .iter()
        .filter(|o| ctdb_daemon::db::is_db_control(**o))
        .map(|o| *o as u32)
        .collect();
    let mut succeeded = 0u32;
    for i in 0..20_000u32 {
        let op = ops[(rng.next() % ops.len() as u64) as usize];
        // Mostly the sizes the controls take, so decoding succeeds.
        const SIZES: [usize; 6] = [0, 4, 8, 16, 24, 32];
        let len = if rng.next().is_multiple_of(4) {
            (rng.next() % 48) as usize
        } else {
            SIZES[(rng.next() % 6) as usize]
        };
        let mut data: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        // Often start with a real db id so the handlers get past lookup.
        if len >= 4 && rng.next().is_multiple_of(2) {
            let id = ids[(rng.next() % 4) as usize];
            data[..4].copy_from_slice(&id.to_ne_bytes());
        }
        let ctx = ControlCtx {
            srcnode: (rng.next() % 2) as u32,
            from_client: rng.next().is_multiple_of(2),
            recovery_active: rng.next().is_multiple_of(4),
            ..Default::default()
        };
        let o = dbs
            .handle_control(&ctx, op, &data)
            .unwrap_or_else(|| panic!("opcode {op} is a db control"));
        succeeded += u32::from(o.status == 0);
        assert!(
            o.status == 0 || o.status == -1 || o.deferred,
            "iteration {i}: opcode {op} status {}",
            o.status
        );
        if i.is_multiple_of(7) {
            let key: Vec<u8> = (0..(rng.next() % 8)).map(|_| rng.next() as u8).collect();
            let c = ReqCall {
                flags: rng.next() as u32,
                db_id: ids[(rng.next() % 4) as usize],
                callid: rng.next() as u32 | 0xFF00_0000,
                hopcount: 0,
                key: &key,
                calldata: &[],
            };
            let _ = dbs.handle_call(&c);
        }
    }
    eprintln!("{succeeded} of 20000 random controls succeeded");
    assert!(succeeded > 200, "the handlers were hardly reached");
    // Whatever happened, the files are still valid tdbs.
    for db in dbs
        .iter()
        .map(|d| d.path().to_path_buf())
        .collect::<Vec<_>>()
    {
        tdbdump(&db);
    }
}

#[test]
fn traverse_over_two_nodes_waits_for_both_end_markers() {
    let t = TempDir::new("trav2");
    let mut dbs = Databases::open(config(&t.0)).unwrap();
    let v = attach(&mut dbs, "t2.tdb", 0);
    let path = path_of(&mut dbs, v);
    let flags = {
        let o = control(&mut dbs, ControlData::DbOpenFlags(v));
        i32::from_bytes(&o.data).unwrap()
    };
    call(&mut dbs, v, CTDB_NULL_FUNC, b"local");
    python(
        "import sys, tdb\nt = tdb.Tdb(sys.argv[1], 0, int(sys.argv[2]), 2, 0o600)\n\
         o = t.get(b'local')\nt.store(b'local', o + b'L', tdb.REPLACE)",
        &[path.to_str().unwrap(), &flags.to_string()],
    );
    dbs.set_active_nodes(2);
    let srvid = 0xF000_0000_0000_0042u64;
    let o = control(
        &mut dbs,
        ControlData::TraverseStartExt(TraverseStartExt {
            db_id: v,
            reqid: 9,
            srvid,
            withemptyrecords: false,
        }),
    );
    ok(&o);
    assert!(o.messages_after.is_empty());
    assert_eq!(o.controls_after.len(), 1);
    let bcast = &o.controls_after[0];
    assert_eq!(bcast.opcode, Opcode::TraverseAll);
    // This node answers its own broadcast with TRAVERSE_DATA controls.
    let local = dbs
        .handle_control(&ControlCtx::default(), bcast.opcode as u32, &bcast.data)
        .unwrap();
    ok(&local);
    assert_eq!(local.controls_after.len(), 2, "one record and the end");
    // (reqid, key, end marker) of the messages for the client.
    let feed = |dbs: &mut Databases, data: &[u8]| -> Vec<(u32, Vec<u8>, bool)> {
        let o = dbs
            .handle_control(&ControlCtx::default(), Opcode::TraverseData as u32, data)
            .unwrap();
        o.messages_after
            .iter()
            .map(|m| {
                assert_eq!(m.srvid, srvid);
                let r = RecData::from_bytes(&m.data).unwrap();
                (r.reqid, r.key.to_vec(), r.is_end_marker())
            })
            .collect()
    };
    let mut delivered = Vec::new();
    for c in &local.controls_after {
        assert_eq!(c.opcode, Opcode::TraverseData);
        delivered.extend(feed(&mut dbs, &c.data));
    }
    // Our end marker alone does not end it: the other node is still out.
    assert_eq!(delivered, vec![(9, b"local".to_vec(), false)]);
    // The other node's record and end marker (same TRAVERSE_ALL reqid).
    let all = ctdb_protocol::types::TraverseAll::from_bytes(&bcast.data).unwrap();
    let hdr = LtdbHeader::new(5, 1, RecordFlags::DEFAULT).with_data(b"R");
    delivered.extend(feed(
        &mut dbs,
        &RecData::new(all.reqid, b"remote", &hdr).to_bytes(),
    ));
    delivered.extend(feed(
        &mut dbs,
        &RecData::new(all.reqid, &[], &[]).to_bytes(),
    ));
    assert_eq!(
        delivered,
        vec![
            (9, b"local".to_vec(), false),
            (9, b"remote".to_vec(), false),
            (9, Vec::new(), true)
        ]
    );
    // Finished: more data for it is refused.
    let o = dbs
        .handle_control(
            &ControlCtx::default(),
            Opcode::TraverseData as u32,
            &RecData::new(all.reqid, &[], &[]).to_bytes(),
        )
        .unwrap();
    assert_eq!(o.status, -1);
}

#[test]
fn busy_chain_lock_asks_for_a_retry_instead_of_blocking() {
    let t = TempDir::new("busy");
    let mut dbs = Databases::open(config(&t.0)).unwrap();
    let v = attach(&mut dbs, "busy.tdb", 0);
    let path = path_of(&mut dbs, v);
    let flags = {
        let o = control(&mut dbs, ControlData::DbOpenFlags(v));
        i32::from_bytes(&o.data).unwrap()
    };
    // libtdb holds the whole database (as smbd holding a record would hold
    // its chain) until we close its stdin.
    let mut holder = Command::new(PYTHON)
        .arg("-c")
        .arg(
            "import sys, tdb\nt = tdb.Tdb(sys.argv[1], 0, int(sys.argv[2]), 2, 0o600)\n\
             t.lock_all()\nprint('locked', flush=True)\nsys.stdin.read()\nt.unlock_all()",
        )
        .arg(&path)
        .arg(flags.to_string())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    {
        use std::io::BufRead;
        let mut r = std::io::BufReader::new(holder.stdout.take().unwrap());
        r.read_line(&mut line).unwrap();
    }
    assert_eq!(line.trim(), "locked");
    let c = ReqCall {
        flags: 0,
        db_id: v,
        callid: CTDB_NULL_FUNC,
        hopcount: 0,
        key: b"k",
        calldata: &[],
    };
    let start = std::time::Instant::now();
    assert_eq!(dbs.handle_call(&c), CallOutcome::Retry);
    assert!(start.elapsed() < std::time::Duration::from_secs(1));
    drop(holder.stdin.take());
    holder.wait().unwrap();
    assert!(matches!(
        dbs.handle_call(&c),
        CallOutcome::Reply { status: 0, .. }
    ));
    let o = control(&mut dbs, ControlData::GetDbStatistics(v));
    let s = ctdb_protocol::types::DbStatistics::from_bytes(&o.data).unwrap();
    assert_eq!(s.locks.num_calls, 1, "the busy attempt is counted");
}
