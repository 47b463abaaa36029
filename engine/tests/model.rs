//! Property tests against a BTreeMap model: random store / delete /
//! traverse-with-delete / transaction sequences with a seeded PRNG (seed is
//! printed; replay with CTDB_TEST_SEED), plus reopen and consistency checks.

mod common;
use common::*;

use std::collections::BTreeMap;

use ctdb_engine::{flags, Database, Error, OpenOptions, StoreFlag, Walk};

type Model = BTreeMap<Vec<u8>, Vec<u8>>;

fn dump(h: &mut ctdb_engine::CoreStore) -> Model {
    h.entries().unwrap().into_iter().collect()
}

fn run(seed: u64, tflags: u32, hash_size: u32, steps: usize, path: &std::path::Path) {
    let mut rng = Rng::new(seed);
    let opts = OpenOptions::new().hash_size(hash_size).tdb_flags(tflags);
    let mut db = Database::open(path, &opts).unwrap();
    let mut h = db.handle().unwrap();
    let mut model = Model::new();
    let mut tx_model: Option<Model> = None;
    let key = |rng: &mut Rng| -> Vec<u8> {
        let n = rng.below(300);
        let mut k = format!("k{n}").into_bytes();
        if n.is_multiple_of(7) {
            k.extend(std::iter::repeat_n(b'x', (n % 50) as usize));
        }
        k
    };
    for step in 0..steps {
        let ctx = format!("seed {seed} step {step}");
        let cur = tx_model.as_mut().unwrap_or(&mut model);
        match rng.below(100) {
            0..=39 => {
                let k = key(&mut rng);
                let max = if rng.below(10) == 0 { 3000 } else { 60 };
                let v = rng.bytes(max);
                let flag = match rng.below(3) {
                    0 => StoreFlag::Replace,
                    1 => StoreFlag::Insert,
                    _ => StoreFlag::Modify,
                };
                let r = if rng.below(2) == 0 {
                    h.store(&k, &v, flag)
                } else {
                    // The same value given in pieces (tdb_storev).
                    let cut = rng.below(v.len() as u64 + 1) as usize;
                    let (a, b) = v.split_at(cut);
                    h.storev(&k, &[a, b, &[]], flag)
                };
                match (flag, cur.contains_key(&k)) {
                    (StoreFlag::Insert, true) => assert!(matches!(r, Err(Error::Exists)), "{ctx}"),
                    (StoreFlag::Modify, false) => {
                        assert!(matches!(r, Err(Error::NotFound)), "{ctx}")
                    }
                    _ => {
                        r.unwrap();
                        cur.insert(k, v);
                    }
                }
            }
            40..=59 => {
                let k = key(&mut rng);
                let r = h.delete(&k);
                if cur.remove(&k).is_some() {
                    r.unwrap();
                } else {
                    assert!(matches!(r, Err(Error::NotFound)), "{ctx}");
                }
            }
            60..=74 => {
                let k = key(&mut rng);
                h.prefetch(&k);
                assert_eq!(h.fetch(&k).unwrap().as_ref(), cur.get(&k), "{ctx}");
                assert_eq!(h.exists(&k).unwrap(), cur.contains_key(&k), "{ctx}");
            }
            75..=79 => {
                // Write traverse deleting every record whose first value byte is odd.
                let mut seen = 0usize;
                let n = h
                    .traverse(|st, k, d| {
                        seen += 1;
                        if d.first().is_some_and(|b| b & 1 == 1) {
                            st.delete(k)?;
                        }
                        Ok(Walk::Continue)
                    })
                    .unwrap();
                assert_eq!(n as usize, cur.len(), "{ctx}");
                assert_eq!(seen, cur.len(), "{ctx}");
                cur.retain(|_, v| v.first().is_none_or(|b| b & 1 != 1));
            }
            80..=84 => {
                assert_eq!(&dump(&mut h), cur, "{ctx}");
            }
            85..=89 => {
                if tx_model.is_none() {
                    h.transaction_start().unwrap();
                    tx_model = Some(model.clone());
                } else if rng.below(3) == 0 {
                    h.transaction_cancel().unwrap();
                    tx_model = None;
                } else {
                    h.transaction_commit().unwrap();
                    model = tx_model.take().unwrap();
                }
            }
            90..=91 => {
                if tx_model.is_none() {
                    let rep = h.check().unwrap_or_else(|e| panic!("{ctx}: {e}"));
                    assert_eq!(rep.live as usize, model.len(), "{ctx}");
                }
            }
            92 => {
                if tx_model.is_none() {
                    drop(h);
                    drop(db);
                    db = Database::open(path, &opts).unwrap();
                    h = db.handle().unwrap();
                    assert_eq!(dump(&mut h), model, "{ctx} after reopen");
                }
            }
            93 => {
                h.wipe().unwrap();
                cur.clear();
            }
            _ => {
                let k = key(&mut rng);
                h.chainlock(&k).unwrap();
                let v = rng.bytes(20);
                h.store(&k, &v, StoreFlag::Replace).unwrap();
                assert_eq!(h.fetch(&k).unwrap(), Some(v.clone()), "{ctx}");
                h.chainunlock(&k).unwrap();
                cur.insert(k, v);
            }
        }
    }
    if tx_model.is_some() {
        h.transaction_commit().unwrap();
        model = tx_model.take().unwrap();
    }
    assert_eq!(dump(&mut h), model, "seed {seed} final");
    h.check().unwrap();
    drop(h);
    drop(db);
    tdbtool_check(path);
    let py: Model = py_dump(path, tflags).into_iter().collect();
    assert_eq!(py, model, "seed {seed}: python3-tdb disagrees");
}

#[test]
fn random_sequences_match_model() {
    let td = TempDir::new("model");
    let base = seed("random_sequences_match_model");
    for (i, (tflags, hs)) in [
        (0u32, 1u32),
        (0, 131),
        (flags::INCOMPATIBLE_HASH, 17),
        (flags::VOLATILE | flags::INCOMPATIBLE_HASH, 5),
        (flags::SEQNUM | flags::NOSYNC, 64),
        // Mutex mode (without CLEAR_IF_FIRST, so that reopening keeps data).
        (flags::MUTEX_LOCKING | flags::VOLATILE, 31),
    ]
    .into_iter()
    .enumerate()
    {
        let s = base.wrapping_add(i as u64);
        run(s, tflags, hs, 3000, &td.path(&format!("m{i}.tdb")));
    }
}

#[test]
fn seqnum_counts_like_libtdb() {
    let td = TempDir::new("seq");
    let path = td.path("s.tdb");
    let db = Database::open(&path, &OpenOptions::new().tdb_flags(flags::SEQNUM)).unwrap();
    let mut h = db.handle().unwrap();
    assert_eq!(h.seqnum().unwrap(), 0);
    h.store(b"a", b"1", StoreFlag::Insert).unwrap();
    assert_eq!(h.seqnum().unwrap(), 1);
    h.store(b"a", b"2", StoreFlag::Replace).unwrap(); // in place
    assert_eq!(h.seqnum().unwrap(), 2);
    h.delete(b"a").unwrap();
    assert_eq!(h.seqnum().unwrap(), 3);
    h.increment_seqnum_now().unwrap();
    assert_eq!(h.seqnum().unwrap(), 4);
    drop(h);
    drop(db);
    let out = python(
        r#"
import sys, os, tdb
t = tdb.open(sys.argv[1], tdb_flags=tdb.SEQNUM, flags=os.O_RDWR)
print(t.seqnum)
t[b"b"] = b"x"
print(t.seqnum)
"#,
        &[path.to_str().unwrap()],
    );
    assert_eq!(out.split_whitespace().collect::<Vec<_>>(), ["4", "5"]);
}

#[test]
fn partitioned_sequences_match_model() {
    let td = TempDir::new("pmodel");
    let base = seed("partitioned_sequences_match_model");
    for (i, (tflags, hs, ncores)) in [
        (flags::INCOMPATIBLE_HASH | flags::NOSYNC, 61u32, 3usize),
        (
            flags::INCOMPATIBLE_HASH | flags::VOLATILE | flags::NOSYNC,
            7,
            4,
        ),
        (flags::MUTEX_LOCKING | flags::NOSYNC, 101, 2),
    ]
    .into_iter()
    .enumerate()
    {
        let seed = base.wrapping_add(i as u64);
        let mut rng = Rng::new(seed);
        let path = td.path(&format!("p{i}.tdb"));
        let opts = OpenOptions::new().hash_size(hs).tdb_flags(tflags);
        let db = Database::open(&path, &opts).unwrap();
        let mut parts: Vec<_> = (0..ncores)
            .map(|c| db.partition(c, ncores).unwrap())
            .collect();
        let mut model = Model::new();
        for step in 0..4000 {
            let ctx = format!("seed {seed} step {step}");
            let k = format!("key{}", rng.below(400)).into_bytes();
            let owner = db.owner_of(&k, ncores);
            // A prefetch hint (on every partition: the others ignore it)
            // must never change what the operations see.
            for q in &parts {
                q.prefetch(&k);
            }
            let p = &mut parts[owner];
            match rng.below(20) {
                0..=8 => {
                    let max = if rng.below(8) == 0 { 2000 } else { 80 };
                    let v = rng.bytes(max);
                    p.store(&k, &v, StoreFlag::Replace).unwrap();
                    model.insert(k, v);
                }
                9..=13 => {
                    let r = p.delete(&k);
                    assert_eq!(r.is_ok(), model.remove(&k).is_some(), "{ctx}");
                }
                14..=16 => assert_eq!(p.fetch(&k).unwrap().as_ref(), model.get(&k), "{ctx}"),
                17 => {
                    let c = rng.below(ncores as u64) as usize;
                    let n = parts[c]
                        .traverse(|st, k, d| {
                            if d.len() % 3 == 0 {
                                st.delete(k)?;
                            }
                            Ok(Walk::Continue)
                        })
                        .unwrap();
                    let mine = model.keys().filter(|k| db.owner_of(k, ncores) == c).count();
                    assert_eq!(n as usize, mine, "{ctx}");
                    model.retain(|k, v| db.owner_of(k, ncores) != c || v.len() % 3 != 0);
                }
                18 => {
                    let rep = db
                        .handle()
                        .unwrap()
                        .check()
                        .unwrap_or_else(|e| panic!("{ctx}: {e}"));
                    assert_eq!(rep.live as usize, model.len(), "{ctx}");
                }
                _ => {
                    // A transaction on a whole-file handle between partition ops.
                    let mut h = db.handle().unwrap();
                    h.transaction_start().unwrap();
                    let v = rng.bytes(50);
                    h.store(&k, &v, StoreFlag::Replace).unwrap();
                    if rng.below(2) == 0 {
                        h.transaction_commit().unwrap();
                        model.insert(k, v);
                    } else {
                        h.transaction_cancel().unwrap();
                    }
                }
            }
        }
        let mut all = Model::new();
        for p in parts.iter_mut() {
            all.extend(dump(p));
        }
        assert_eq!(all, model, "seed {seed}: final");
        drop(parts);
        drop(db);
        tdbtool_check(&path);
        let py: Model = py_dump(&path, tflags & !flags::CLEAR_IF_FIRST)
            .into_iter()
            .collect();
        assert_eq!(py, model, "seed {seed}: python3-tdb disagrees");
    }
}
