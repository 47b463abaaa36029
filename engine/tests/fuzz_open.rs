//! Mutation fuzzing of the open/read/write paths: valid files (engine- and
//! libtdb-written, with free records, dead records and a recovery area) are
//! bit-flipped, truncated, or get random header / pointer words, and every
//! mutant must give either success or a clean error — never a panic or a
//! hang. Bounded to a few thousand cases and ~20 s.

mod common;
use common::*;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::{Duration, Instant};

use ctdb_engine::{flags, fuzz_cleanup, fuzz_open, Database, OpenOptions, StoreFlag};

fn seed_files(td: &TempDir) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for (i, (tflags, hs)) in [
        (0u32, 7u32),
        (flags::INCOMPATIBLE_HASH, 3),
        (flags::VOLATILE, 13),
    ]
    .into_iter()
    .enumerate()
    {
        let p = td.path(&format!("seed{i}.tdb"));
        {
            let db =
                Database::open(&p, &OpenOptions::new().hash_size(hs).tdb_flags(tflags)).unwrap();
            let mut h = db.handle().unwrap();
            for j in 0..40u32 {
                h.store(
                    format!("key{j}").as_bytes(),
                    &vec![j as u8; (j * 7 % 90) as usize],
                    StoreFlag::Replace,
                )
                .unwrap();
            }
            for j in (0..40u32).step_by(3) {
                h.delete(format!("key{j}").as_bytes()).unwrap();
            }
            h.transaction_start().unwrap();
            h.store(b"key", b"in a transaction", StoreFlag::Replace)
                .unwrap();
            h.transaction_commit().unwrap();
        }
        out.push(std::fs::read(&p).unwrap());
    }
    let p = td.path("py.tdb");
    python(
        r#"
import sys, os, tdb
t = tdb.open(sys.argv[1], hash_size=5, flags=os.O_RDWR|os.O_CREAT)
for i in range(30):
    t[b"p%d" % i] = b"x" * i
t.transaction_start()
del t[b"p3"]
t.transaction_commit()
t.close()
"#,
        &[p.to_str().unwrap()],
    );
    out.push(std::fs::read(&p).unwrap());
    out
}

fn mutate(rng: &mut Rng, base: &[u8]) -> Vec<u8> {
    let mut f = base.to_vec();
    if f.len() < 72 {
        return f;
    }
    match rng.below(6) {
        0 => {
            for _ in 0..=rng.below(8) {
                let i = rng.below(f.len() as u64) as usize;
                f[i] ^= 1 << rng.below(8);
            }
        }
        1 => {
            let n = rng.below(f.len() as u64 + 1) as usize;
            f.truncate(n);
        }
        2 => {
            // A random header word (version .. reserved).
            let w = 32 + 4 * rng.below(10) as usize;
            let v = interesting(rng, f.len());
            f[w..w + 4].copy_from_slice(&v.to_le_bytes());
        }
        3 => {
            // A pointer word: free-list / chain heads or a record field.
            let words = f.len() / 4;
            let w = if rng.below(2) == 0 {
                42 + rng.below(16) as usize
            } else {
                rng.below(words as u64) as usize
            };
            let w = w.min(words - 1) * 4;
            let v = interesting(rng, f.len());
            f[w..w + 4].copy_from_slice(&v.to_le_bytes());
        }
        4 => {
            let start = rng.below(f.len() as u64) as usize;
            let end = (start + rng.below(64) as usize).min(f.len());
            for b in &mut f[start..end] {
                *b = rng.next() as u8;
            }
        }
        _ => {
            // Several of the above.
            for _ in 0..3 {
                f = mutate(rng, &f);
            }
        }
    }
    f
}

fn interesting(rng: &mut Rng, len: usize) -> u32 {
    let len = len as u32;
    match rng.below(8) {
        0 => 0,
        1 => u32::MAX,
        2 => len,
        3 => len.wrapping_sub(rng.below(48) as u32),
        4 => 168 + 4 * rng.below(20) as u32,
        5 => 0xF53B_C0E7,
        6 => rng.below(len as u64 + 1) as u32 & !3,
        _ => rng.next() as u32,
    }
}

#[test]
fn corrupted_files_give_clean_errors() {
    let td = TempDir::new("fuzz");
    let seeds = seed_files(&td);
    for s in &seeds {
        fuzz_open(s).expect("unmutated seed file must pass");
    }
    let seed = seed("corrupted_files_give_clean_errors");
    let mut rng = Rng::new(seed);
    let start = Instant::now();
    let (mut ok, mut err, mut n) = (0u32, 0u32, 0u32);
    let cases: u32 = std::env::var("CTDB_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5000);
    let secs: u64 = std::env::var("CTDB_FUZZ_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    while n < cases && start.elapsed() < Duration::from_secs(secs) {
        let base = &seeds[rng.below(seeds.len() as u64) as usize];
        let m = mutate(&mut rng, base);
        let case = n;
        let r = catch_unwind(AssertUnwindSafe(|| fuzz_open(&m)));
        match r {
            Ok(Ok(())) => ok += 1,
            Ok(Err(e)) => {
                let msg = e.to_string();
                assert!(!msg.is_empty());
                err += 1;
            }
            Err(_) => {
                let p =
                    std::env::temp_dir().join(format!("ctdb-engine-fuzz-crash-{seed}-{case}.tdb"));
                std::fs::write(&p, &m).unwrap();
                panic!(
                    "seed {seed} case {case}: panic on mutated file (saved to {})",
                    p.display()
                );
            }
        }
        n += 1;
    }
    fuzz_cleanup();
    eprintln!(
        "fuzz: {n} cases, {ok} opened fine, {err} clean errors in {:?}",
        start.elapsed()
    );
    assert!(n >= 200, "too few fuzz cases ran ({n})");
    assert!(
        err > 0,
        "no mutant was rejected: mutations are not reaching the parser"
    );
}
