//! Interoperability with the real libtdb 1.4.8 (python3-tdb, tdbdump,
//! tdbtool): files written by the engine are read identically by libtdb and
//! pass `tdbtool check`, and vice versa, for both hash functions.

mod common;
use common::*;

use ctdb_engine::{flags, Database, HashKind, OpenOptions, StoreFlag};

fn engine_dump(db: &Database) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut h = db.handle().unwrap();
    let mut v = h.entries().unwrap();
    v.sort();
    v
}

#[test]
fn byte_identical_to_libtdb_for_same_operations() {
    let td = TempDir::new("bytes");
    for tflags in [0u32, flags::INCOMPATIBLE_HASH] {
        let ours = td.path(&format!("ours-{tflags}.tdb"));
        let theirs = td.path(&format!("theirs-{tflags}.tdb"));
        {
            let db =
                Database::open(&ours, &OpenOptions::new().hash_size(3).tdb_flags(tflags)).unwrap();
            let mut h = db.handle().unwrap();
            h.store(b"key", b"value", StoreFlag::Replace).unwrap();
            h.store(b"second", b"2", StoreFlag::Insert).unwrap();
            h.store(b"key", b"a longer value than before", StoreFlag::Replace)
                .unwrap();
            h.delete(b"second").unwrap();
            h.store(b"third", b"3", StoreFlag::Replace).unwrap();
        }
        python(
            r#"
import sys, os, tdb
t = tdb.open(sys.argv[1], hash_size=3, tdb_flags=int(sys.argv[2]), flags=os.O_RDWR|os.O_CREAT)
t.store(b"key", b"value", tdb.REPLACE)
t.store(b"second", b"2", tdb.INSERT)
t.store(b"key", b"a longer value than before", tdb.REPLACE)
t.delete(b"second")
t.store(b"third", b"3", tdb.REPLACE)
t.close()
"#,
            &[theirs.to_str().unwrap(), &tflags.to_string()],
        );
        let a = std::fs::read(&ours).unwrap();
        let b = std::fs::read(&theirs).unwrap();
        assert_eq!(a.len(), b.len(), "file sizes differ (flags {tflags})");
        if a != b {
            let first = a.iter().zip(&b).position(|(x, y)| x != y).unwrap();
            panic!("files differ first at byte {first} (flags {tflags})");
        }
        tdbtool_check(&ours);
    }
}

#[test]
fn engine_written_files_read_by_libtdb() {
    let td = TempDir::new("ours");
    let seed = seed("engine_written_files_read_by_libtdb");
    let mut rng = Rng::new(seed);
    for (tflags, hash_size) in [
        (0u32, 131u32),
        (flags::INCOMPATIBLE_HASH, 10007),
        (flags::VOLATILE, 7),
    ] {
        let path = td.path(&format!("e-{tflags}.tdb"));
        let mut model = std::collections::BTreeMap::new();
        {
            let db = Database::open(
                &path,
                &OpenOptions::new().hash_size(hash_size).tdb_flags(tflags),
            )
            .unwrap();
            let mut h = db.handle().unwrap();
            for i in 0..2000u32 {
                let k = format!("key-{}", rng.below(700)).into_bytes();
                if rng.below(4) == 0 {
                    let _ = h.delete(&k);
                    model.remove(&k);
                } else {
                    let mut v = rng.bytes(200);
                    v.extend_from_slice(&i.to_le_bytes());
                    h.store(&k, &v, StoreFlag::Replace).unwrap();
                    model.insert(k, v);
                }
            }
            assert_eq!(
                engine_dump(&db),
                model.clone().into_iter().collect::<Vec<_>>()
            );
        }
        let expect: Vec<_> = model.into_iter().collect();
        assert_eq!(
            py_dump(&path, tflags),
            expect,
            "python3-tdb sees other records (flags {tflags})"
        );
        let dumped = tdbdump_records(&path);
        let want: Vec<(String, String)> = {
            let mut w: Vec<_> = expect
                .iter()
                .map(|(k, v)| (tdbdump_escape(k), tdbdump_escape(v)))
                .collect();
            w.sort();
            w
        };
        assert_eq!(dumped, want, "tdbdump output differs");
        tdbtool_check(&path);
    }
}

#[test]
fn libtdb_written_files_read_by_engine() {
    let td = TempDir::new("theirs");
    for tflags in [0u32, flags::INCOMPATIBLE_HASH] {
        let path = td.path(&format!("p-{tflags}.tdb"));
        python(
            r#"
import sys, os, tdb
t = tdb.open(sys.argv[1], hash_size=1031, tdb_flags=int(sys.argv[2]), flags=os.O_RDWR|os.O_CREAT)
for i in range(3000):
    t[b"k%d" % i] = (b"v%d-" % i) * (i % 37)
for i in range(0, 3000, 3):
    del t[b"k%d" % i]
t.transaction_start()
t[b"tx"] = b"committed"
t.transaction_commit()
t.close()
"#,
            &[path.to_str().unwrap(), &tflags.to_string()],
        );
        // Open without the flag: the hash must be detected from the header.
        let db = Database::open(&path, &OpenOptions::new().create(false)).unwrap();
        let want_hash = if tflags == 0 {
            HashKind::Old
        } else {
            HashKind::Jenkins
        };
        assert_eq!(db.hash_kind(), want_hash);
        let mut h = db.handle().unwrap();
        for i in 0..3000u32 {
            let got = h.fetch(format!("k{i}").as_bytes()).unwrap();
            if i % 3 == 0 {
                assert_eq!(got, None);
            } else {
                assert_eq!(
                    got,
                    Some(format!("v{i}-").repeat((i % 37) as usize).into_bytes())
                );
            }
        }
        assert_eq!(h.fetch(b"tx").unwrap(), Some(b"committed".to_vec()));
        assert_eq!(h.count().unwrap(), 2001);
        let rep = h.check().unwrap();
        assert_eq!(rep.live, 2001);
        // Now modify with the engine and let libtdb read it back.
        h.store(b"k1", b"engine", StoreFlag::Modify).unwrap();
        h.delete(b"k2").unwrap();
        drop(h);
        drop(db);
        let d = py_dump(&path, tflags);
        assert_eq!(d.len(), 2000);
        assert!(d.contains(&(b"k1".to_vec(), b"engine".to_vec())));
        tdbtool_check(&path);
    }
}

#[test]
fn hundred_thousand_records() {
    let td = TempDir::new("100k");
    // (flags we open with, flags libtdb opens with afterwards: no
    // CLEAR_IF_FIRST, or it would wipe the file we closed)
    for (tflags, py_flags) in [
        (flags::INCOMPATIBLE_HASH, flags::INCOMPATIBLE_HASH),
        (
            flags::MUTEX_LOCKING | flags::CLEAR_IF_FIRST,
            flags::MUTEX_LOCKING,
        ),
    ] {
        let path = td.path(&format!("big-{tflags}.tdb"));
        {
            let db = Database::open(
                &path,
                &OpenOptions::new().hash_size(100_001).tdb_flags(tflags),
            )
            .unwrap();
            let mut h = db.handle().unwrap();
            for i in 0..100_000u32 {
                h.store(
                    format!("record-{i}").as_bytes(),
                    &i.to_le_bytes().repeat(4),
                    StoreFlag::Insert,
                )
                .unwrap();
            }
            assert_eq!(h.count().unwrap(), 100_000);
            assert_eq!(h.check().unwrap().live, 100_000);
        }
        tdbtool_check(&path);
        assert_eq!(tdbdump_count(&path), 100_000);
        let out = python(
            r#"
import sys, os, tdb, struct
t = tdb.open(sys.argv[1], tdb_flags=int(sys.argv[2]), flags=os.O_RDWR)
n = 0
for i in range(100000):
    v = t.get(b"record-%d" % i)
    assert v == struct.pack("<I", i) * 4, i
    n += 1
print(n)
"#,
            &[path.to_str().unwrap(), &py_flags.to_string()],
        );
        assert_eq!(out.trim(), "100000");
    }
}

#[test]
fn read_only_open() {
    let td = TempDir::new("ro");
    for tflags in [0u32, flags::MUTEX_LOCKING | flags::CLEAR_IF_FIRST] {
        let path = td.path(&format!("ro-{tflags}.tdb"));
        let db =
            Database::open(&path, &OpenOptions::new().hash_size(17).tdb_flags(tflags)).unwrap();
        let mut w = db.handle().unwrap();
        for i in 0..50u32 {
            w.store(
                format!("k{i}").as_bytes(),
                &i.to_le_bytes(),
                StoreFlag::Insert,
            )
            .unwrap();
        }
        let ro =
            Database::open(&path, &OpenOptions::new().read_only(true).tdb_flags(tflags)).unwrap();
        let mut r = ro.handle().unwrap();
        assert_eq!(r.fetch(b"k7").unwrap(), Some(7u32.to_le_bytes().to_vec()));
        assert_eq!(r.count().unwrap(), 50);
        assert!(matches!(
            r.store(b"x", b"y", StoreFlag::Replace),
            Err(ctdb_engine::Error::ReadOnly { .. })
        ));
        assert!(matches!(
            r.delete(b"k1"),
            Err(ctdb_engine::Error::ReadOnly { .. })
        ));
        // Later growth by the writer is seen through the read-only mapping.
        for i in 50..2000u32 {
            w.store(format!("k{i}").as_bytes(), &[1u8; 64], StoreFlag::Insert)
                .unwrap();
        }
        assert_eq!(r.fetch(b"k1999").unwrap(), Some(vec![1u8; 64]));
        assert_eq!(r.count().unwrap(), 2000);
    }
}

#[test]
fn effective_flags_match_tdb_get_flags() {
    let td = TempDir::new("flags");
    for (i, tflags) in [
        0x1C41u32, // ctdbd volatile with mutexes
        flags::NOSYNC | flags::CLEAR_IF_FIRST | flags::INCOMPATIBLE_HASH | flags::DISALLOW_NESTING,
        flags::DISALLOW_NESTING,
        0,
        flags::SEQNUM | flags::VOLATILE,
    ]
    .into_iter()
    .enumerate()
    {
        let path = td.path(&format!("f{i}.tdb"));
        let db =
            Database::open(&path, &OpenOptions::new().hash_size(13).tdb_flags(tflags)).unwrap();
        let out = python(
            r#"
import sys, os, tdb
t = tdb.open(sys.argv[1], tdb_flags=int(sys.argv[2]), flags=os.O_RDWR)
print(t.flags)
"#,
            &[path.to_str().unwrap(), &tflags.to_string()],
        );
        assert_eq!(out.trim(), db.tdb_flags().to_string(), "flags 0x{tflags:x}");
    }
    // An existing plain file opened with MUTEX_LOCKING: fcntl locks, flag kept.
    let path = td.path("f1.tdb");
    let want = python(
        r#"
import sys, os, tdb
t = tdb.open(sys.argv[1], tdb_flags=0x1000, flags=os.O_RDWR)
print(t.flags)
"#,
        &[path.to_str().unwrap()],
    );
    let db = Database::open(&path, &OpenOptions::new().tdb_flags(flags::MUTEX_LOCKING)).unwrap();
    assert!(!db.uses_mutexes());
    assert_eq!(want.trim(), db.tdb_flags().to_string());
}

#[test]
fn hash_detection_and_bad_headers() {
    let td = TempDir::new("hdr");
    let path = td.path("h.tdb");
    {
        let db = Database::open(&path, &OpenOptions::new().hash_size(7)).unwrap();
        db.handle()
            .unwrap()
            .store(b"key", b"value", StoreFlag::Replace)
            .unwrap();
    }
    let good = std::fs::read(&path).unwrap();
    let variant = |name: &str, f: &dyn Fn(&mut Vec<u8>)| {
        let p = td.path(name);
        let mut b = good.clone();
        f(&mut b);
        std::fs::write(&p, &b).unwrap();
        p
    };
    // An ancient file without magic hashes: old hash, like libtdb.
    let p = variant("ancient.tdb", &|b| b[52..60].fill(0));
    let db = Database::open(
        &p,
        &OpenOptions::new()
            .create(false)
            .tdb_flags(flags::INCOMPATIBLE_HASH),
    )
    .unwrap();
    assert_eq!(db.hash_kind(), HashKind::Old);
    assert_eq!(
        db.handle().unwrap().fetch(b"key").unwrap(),
        Some(b"value".to_vec())
    );
    // Each broken header gives a BadHeader error naming the file.
    type Mutation = Box<dyn Fn(&mut Vec<u8>)>;
    let cases: Vec<(&str, Mutation, &str)> = vec![
        (
            "magic.tdb",
            Box::new(|b: &mut Vec<u8>| b[0] = b'X'),
            "magic",
        ),
        (
            "version.tdb",
            Box::new(|b: &mut Vec<u8>| b[32] ^= 1),
            "version",
        ),
        (
            "swapped.tdb",
            Box::new(|b: &mut Vec<u8>| b[32..36].reverse()),
            "byte-swapped",
        ),
        (
            "rwlocks.tdb",
            Box::new(|b: &mut Vec<u8>| b[40] = 7),
            "rwlocks",
        ),
        (
            "hashsize.tdb",
            Box::new(|b: &mut Vec<u8>| b[36..40].fill(0)),
            "hash_size",
        ),
        (
            "hugehash.tdb",
            Box::new(|b: &mut Vec<u8>| b[36..40].copy_from_slice(&1_000_000u32.to_le_bytes())),
            "hash table",
        ),
        (
            "magichash.tdb",
            Box::new(|b: &mut Vec<u8>| b[52] ^= 0xff),
            "magic hashes",
        ),
        (
            "features.tdb",
            Box::new(|b: &mut Vec<u8>| {
                b[40..44].copy_from_slice(&0x0BAD_1A52u32.to_le_bytes());
                b[60] = 2;
            }),
            "feature",
        ),
        (
            "short.tdb",
            Box::new(|b: &mut Vec<u8>| b.truncate(100)),
            "shorter",
        ),
    ];
    for (name, f, want) in cases {
        let p = variant(name, &*f);
        match Database::open(&p, &OpenOptions::new().create(false)) {
            Err(ctdb_engine::Error::BadHeader { path, what }) => {
                assert_eq!(path, p);
                assert!(
                    what.contains(want),
                    "{name}: message {what:?} does not mention {want:?}"
                );
            }
            other => panic!("{name}: expected BadHeader, got {other:?}"),
        }
    }
}

#[test]
fn repack_and_freelist_size() {
    let td = TempDir::new("repack");
    let path = td.path("r.tdb");
    let db = Database::open(&path, &OpenOptions::new().hash_size(101)).unwrap();
    let mut h = db.handle().unwrap();
    for i in 0..3000u32 {
        h.store(
            format!("k{i}").as_bytes(),
            &vec![i as u8; (i % 300) as usize],
            StoreFlag::Insert,
        )
        .unwrap();
    }
    for i in (0..3000u32).filter(|i| i % 3 != 0) {
        h.delete(format!("k{i}").as_bytes()).unwrap();
    }
    let before = h.freelist_size().unwrap();
    assert!(
        before > 10,
        "deletes should fragment the free list ({before})"
    );
    let want: Vec<_> = {
        let mut e = h.entries().unwrap();
        e.sort();
        e
    };
    h.repack().unwrap();
    let after = h.freelist_size().unwrap();
    assert!(
        after < before,
        "repack did not defragment ({before} -> {after})"
    );
    let mut got = h.entries().unwrap();
    got.sort();
    assert_eq!(got, want);
    h.check().unwrap();
    drop(h);
    drop(db);
    tdbtool_check(&path);
    let out = python(
        r#"
import sys, os, tdb
t = tdb.open(sys.argv[1], flags=os.O_RDWR)
print(t.freelist_size)
"#,
        &[path.to_str().unwrap()],
    );
    assert_eq!(
        out.trim(),
        after.to_string(),
        "libtdb counts a different free list"
    );
}

/// Partition deletes park dead records on the partition's reserve chain
/// (re-keyed) and give them back to the free list in batches: the file
/// stays valid for libtdb and `tdbtool check`, libtdb sees exactly the live
/// records and can keep writing, and the space is reused.
#[test]
fn partition_deletes_park_records_validly() {
    let td = TempDir::new("park");
    let path = td.path("p.tdb");
    let tflags = flags::INCOMPATIBLE_HASH;
    let db = Database::open(&path, &OpenOptions::new().hash_size(131).tdb_flags(tflags)).unwrap();
    let ncores = 2;
    let mut parts: Vec<_> = (0..ncores)
        .map(|c| db.partition(c, ncores).unwrap())
        .collect();
    let keys: Vec<Vec<u8>> = (0..2000u32)
        .map(|i| format!("park-{i}").into_bytes())
        .collect();
    let val = |i: usize, round: usize| vec![(i + round) as u8; 40 + (i * 7 + round) % 90];
    for round in 0..3 {
        for (i, k) in keys.iter().enumerate() {
            let c = db.owner_of(k, ncores);
            parts[c]
                .store(k, &val(i, round), StoreFlag::Replace)
                .unwrap();
        }
        // Delete all but every fifth key.
        for (_, k) in keys.iter().enumerate().filter(|(i, _)| i % 5 != 0) {
            let c = db.owner_of(k, ncores);
            parts[c].delete(k).unwrap();
        }
    }
    let size_after = std::fs::metadata(&path).unwrap().len();
    drop(parts);
    let mut want: Vec<(Vec<u8>, Vec<u8>)> = keys
        .iter()
        .enumerate()
        .filter(|(i, _)| i % 5 == 0)
        .map(|(i, k)| (k.clone(), val(i, 2)))
        .collect();
    want.sort();
    assert_eq!(engine_dump(&db), want);
    let rep = db.handle().unwrap().check().unwrap();
    assert_eq!(rep.live as usize, want.len());
    tdbtool_check(&path);
    assert_eq!(py_dump(&path, tflags), want);
    // libtdb writes more into the file; the engine reads it back.
    python(
        r#"
import sys, os, tdb
t = tdb.open(sys.argv[1], tdb_flags=int(sys.argv[2]), flags=os.O_RDWR)
for i in range(300):
    t.store(b"py-%d" % i, b"v" * (i % 50), tdb.REPLACE)
t.close()
"#,
        &[path.to_str().unwrap(), &tflags.to_string()],
    );
    let mut h = db.handle().unwrap();
    assert_eq!(h.fetch(b"py-299").unwrap(), Some(vec![b'v'; 299 % 50]));
    h.check().unwrap();
    drop(h);
    drop(db);
    tdbtool_check(&path);
    // Three rounds of 2000 stores did not need three times the space.
    let one_round = 2000 * (24 + 10 + 130 + 4) as u64;
    assert!(
        size_after < 3 * one_round,
        "file grew to {size_after} bytes: deleted space not reused"
    );
}
