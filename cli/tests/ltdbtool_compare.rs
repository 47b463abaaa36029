//! Our `ltdbtool` against Debian's `/usr/bin/ltdbtool` (Samba 4.17) on the
//! same files: CTDB-style databases written by libtdb (python3-tdb) and by
//! our engine, dumped and converted with every option combination; stdout,
//! stderr and exit status must match, converted files must be byte-equal
//! to Debian's and readable by `tdbdump`. Both tools run with argv[0]
//! "ltdbtool" so usage texts compare equal.

mod common;

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use ctdb_engine::ltdb::{LtdbHeader, RecordFlags};
use ctdb_engine::{flags, Database, OpenOptions, StoreFlag};

use common::TempDir;

const OURS: &str = env!("CARGO_BIN_EXE_ltdbtool");
const DEBIAN: &str = "/usr/bin/ltdbtool";
const PYTHON: &str = "/usr/bin/python3";

#[derive(Debug, PartialEq, Eq)]
struct Out {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

fn run(bin: &str, args: &[&str], cwd: &Path) -> Out {
    assert!(Path::new(bin).exists(), "{bin} is missing (install ctdb)");
    let o = Command::new(bin)
        .arg0("ltdbtool")
        .args(args)
        .current_dir(cwd)
        .output()
        .unwrap_or_else(|e| panic!("running {bin}: {e}"));
    Out {
        code: o.status.code(),
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    }
}

fn compare(args: &[&str], cwd: &Path) -> Out {
    let d = run(DEBIAN, args, cwd);
    let o = run(OURS, args, cwd);
    assert_eq!(
        o, d,
        "ltdbtool {args:?}: ours (left) differs from Debian's (right)"
    );
    o
}

fn python(script: &str, cwd: &Path) {
    assert!(Path::new(PYTHON).exists(), "{PYTHON} is missing");
    let o = Command::new(PYTHON)
        .arg("-c")
        .arg(script)
        .current_dir(cwd)
        .output()
        .expect("run python3");
    assert!(
        o.status.success(),
        "python3-tdb script failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

fn tdbdump(path: &Path) -> String {
    let o = Command::new("/usr/bin/tdbdump")
        .arg(path)
        .output()
        .expect("run tdbdump");
    assert!(o.status.success(), "tdbdump {} failed", path.display());
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The records of a dump, sorted (traversal order depends on the hash
/// function and hash size of the file).
fn records(dump: &str) -> Vec<String> {
    let mut v: Vec<String> = dump.split("}\n").map(str::to_string).collect();
    v.sort();
    v
}

/// A CTDB-style volatile database written by libtdb: jenkins hash, 24-byte
/// headers (some flags, a record with non-zero padding), empty records
/// (header only), binary keys and values with quotes and backslashes.
const LIBTDB_DB: &str = r#"
import os, struct, tdb
db = tdb.Tdb("libtdb.tdb", 0, tdb.DEFAULT | tdb.INCOMPATIBLE_HASH, os.O_CREAT | os.O_RDWR, 0o600)
for i in range(40):
    hdr = struct.pack("<QIII4x", 7 * i + (1 << 40) * (i % 2), [0, 1, 2, 0xFFFFFFFF][i % 4], 0,
                      [0, 0x10000, 0x1000000, 0x3010000][i % 4])
    db[b"key\x00%d\xff\"\\" % i] = hdr + (b"v\"\\\x01\x7f~ %d" % i) * (i % 5)
db[b"padded"] = struct.pack("<QIIII", 9, 2, 0, 0, 77) + b"data"
db.close()
"#;

fn libtdb_db(dir: &TempDir) -> PathBuf {
    python(LIBTDB_DB, &dir.0);
    dir.path("libtdb.tdb")
}

/// The same kind of database written by our engine.
fn engine_db(dir: &TempDir) -> PathBuf {
    let p = dir.path("engine.tdb");
    let db = Database::open(
        &p,
        &OpenOptions::new()
            .hash_size(131)
            .tdb_flags(flags::INCOMPATIBLE_HASH | flags::VOLATILE),
    )
    .expect("engine create");
    let mut h = db.handle().expect("engine handle");
    for i in 0..50u32 {
        let hdr = LtdbHeader::new(
            u64::from(i) * 1000 + 3,
            i % 3,
            RecordFlags(if i % 2 == 0 { 0x10000 } else { 0 }),
        );
        let data: Vec<u8> = (0..(i % 7) * 5).map(|b| (b * 37 + i) as u8).collect();
        h.store(
            format!("record/{i}\u{0}").as_bytes(),
            &hdr.with_data(&data),
            StoreFlag::Replace,
        )
        .expect("engine store");
    }
    drop(h);
    drop(db);
    p
}

const DUMP_OPTIONS: &[&[&str]] = &[
    &[],
    &["-p"],
    &["-e"],
    &["-e", "-p"],
    &["-s", "32", "-p"],
    &["-s64"],
    &["-s", "0"],
    &["-s0", "-e", "-p"],
    &["-S", "4", "-p"],
    &["-S", "30", "-e"],
];

fn dump_cases(db: &Path, dir: &TempDir) {
    let name = db.file_name().and_then(|s| s.to_str()).unwrap_or_default();
    for opts in DUMP_OPTIONS {
        let mut args: Vec<&str> = opts.to_vec();
        args.extend(["dump", name]);
        let o = compare(&args, &dir.0);
        assert_eq!(o.code, Some(0));
        assert!(
            o.stdout.contains("key("),
            "dump printed no record: {args:?}"
        );
        // Options after the command work too (glibc getopt permutes).
        let mut late: Vec<&str> = vec!["dump", name];
        late.extend(opts.iter());
        compare(&late, &dir.0);
    }
}

#[test]
fn dump_of_libtdb_written_database_matches_debian() {
    let dir = TempDir::new("ltdbtool-dump-libtdb");
    let db = libtdb_db(&dir);
    dump_cases(&db, &dir);
    let o = compare(&["-p", "dump", "libtdb.tdb"], &dir.0);
    assert!(o
        .stdout
        .contains("dmaster: -1\nrsn: 1099511627797\nflags: 0x3010000\n"));
    assert!(o.stderr.contains("Warning: header padding isn't zero!"));
}

#[test]
fn dump_of_engine_written_database_matches_debian() {
    let dir = TempDir::new("ltdbtool-dump-engine");
    let db = engine_db(&dir);
    dump_cases(&db, &dir);
    let o = compare(&["-p", "-e", "dump", "engine.tdb"], &dir.0);
    assert_eq!(o.stdout.matches("key(").count(), 50);
}

#[test]
fn convert_output_equals_debian_bytes_and_tdbdump_reads_it() {
    let dir = TempDir::new("ltdbtool-convert");
    let sources = [libtdb_db(&dir), engine_db(&dir)];
    let option_sets: &[&[&str]] = &[
        &[],
        &["-o", "0"],
        &["-o", "32"],
        &["-s", "32", "-o", "64"],
        &["-e", "-o", "32"],
        &["-s0", "-e"],
        &["-S", "4", "-O", "30"],
        &["-e", "-O", "9"],
    ];
    let mut n = 0;
    for src in &sources {
        let sname = src.file_name().and_then(|s| s.to_str()).unwrap_or_default();
        for opts in option_sets {
            n += 1;
            let deb = format!("deb{n}.tdb");
            let ours = format!("ours{n}.tdb");
            let mut da: Vec<&str> = opts.to_vec();
            da.extend(["convert", sname, &deb]);
            let mut oa: Vec<&str> = opts.to_vec();
            oa.extend(["convert", sname, &ours]);
            let d = run(DEBIAN, &da, &dir.0);
            let o = run(OURS, &oa, &dir.0);
            assert_eq!(o, d, "convert {opts:?} of {sname}: ours (left) vs Debian");
            assert_eq!(o.code, Some(0));
            let db = std::fs::read(dir.path(&deb)).expect("Debian output");
            let ob = std::fs::read(dir.path(&ours)).expect("our output");
            assert_eq!(
                ob.len(),
                db.len(),
                "convert {opts:?} of {sname}: output sizes differ"
            );
            assert!(ob == db, "convert {opts:?} of {sname}: output bytes differ");
            let dump = tdbdump(&dir.path(&ours));
            assert_eq!(dump, tdbdump(&dir.path(&deb)));
            assert!(dump.contains("key("), "converted file is empty");
            // Converting back with the matching header size gives the same
            // dump as the source.
            let back = format!("back{n}.tdb");
            let hdr_out = opts
                .windows(2)
                .find(|w| w[0] == "-o")
                .map(|w| w[1])
                .unwrap_or("64");
            if !opts
                .iter()
                .any(|o| o.starts_with("-S") || o.starts_with("-O") || o.starts_with("-s"))
            {
                let o = run(
                    OURS,
                    &["-e", "-s", hdr_out, "-o", hdr_out, "convert", &ours, &back],
                    &dir.0,
                );
                assert_eq!(o.code, Some(0), "{o:?}");
                assert_eq!(records(&tdbdump(&dir.path(&back))), records(&dump));
            }
        }
    }
    // The output is never overwritten.
    let o = compare(&["convert", "libtdb.tdb", "deb1.tdb"], &dir.0);
    assert_eq!(o.code, Some(255));
    assert_eq!(o.stderr, "tdbopen out: File exists\n");
}

#[test]
fn random_databases_dump_and_convert_like_debian() {
    // splitmix64; the seed is printed so a failure can be replayed.
    fn next(s: &mut u64) -> u64 {
        *s = s.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = *s;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    let base_seed = std::env::var("LTDBTOOL_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_1234u64);
    for round in 0..3u64 {
        let seed = base_seed.wrapping_add(round);
        eprintln!("ltdbtool random round seed {seed}");
        let dir = TempDir::new(&format!("ltdbtool-random{round}"));
        let mut s = seed;
        let p = dir.path("r.tdb");
        let db = Database::open(
            &p,
            &OpenOptions::new()
                .hash_size(1 + (next(&mut s) % 200) as u32)
                .tdb_flags(flags::INCOMPATIBLE_HASH),
        )
        .expect("create");
        let mut h = db.handle().expect("handle");
        let n = 20 + next(&mut s) % 60;
        for _ in 0..n {
            let klen = 1 + next(&mut s) % 20;
            let key: Vec<u8> = (0..klen).map(|_| next(&mut s) as u8).collect();
            let vlen = next(&mut s) % 80;
            let val: Vec<u8> = (0..vlen).map(|_| next(&mut s) as u8).collect();
            h.store(&key, &val, StoreFlag::Replace).expect("store");
        }
        drop(h);
        drop(db);
        for opts in [&["-p", "-e"][..], &["-s", "32"][..], &["-s", "0", "-p"][..]] {
            let mut a: Vec<&str> = opts.to_vec();
            a.extend(["dump", "r.tdb"]);
            compare(&a, &dir.0);
        }
        let d = run(
            DEBIAN,
            &["-e", "-s", "0", "-o", "32", "convert", "r.tdb", "d.tdb"],
            &dir.0,
        );
        let o = run(
            OURS,
            &["-e", "-s", "0", "-o", "32", "convert", "r.tdb", "o.tdb"],
            &dir.0,
        );
        assert_eq!(o, d, "seed {seed}");
        assert!(
            std::fs::read(dir.path("o.tdb")).ok() == std::fs::read(dir.path("d.tdb")).ok(),
            "seed {seed}: converted files differ"
        );
    }
}

#[test]
fn usage_help_and_errors_match_debian() {
    let dir = TempDir::new("ltdbtool-errors");
    std::fs::write(dir.path("text.txt"), b"hello, not a tdb\n").expect("write");
    std::fs::write(dir.path("empty.tdb"), b"").expect("write");
    let db = libtdb_db(&dir);
    let name = db.file_name().and_then(|s| s.to_str()).unwrap_or_default();
    let cases: &[(&[&str], i32)] = &[
        (&[], 255),
        (&["-h"], 0),
        (&["--help"], 255),
        (&["help"], 0),
        (&["help", "x", "y"], 0),
        (&["-x", "dump", "libtdb.tdb"], 255),
        (&["-s"], 255),
        (&["-s", "16", "dump", "libtdb.tdb"], 255),
        (&["-o", "7", "convert", "a", "b"], 255),
        (&["-s", "99999999999999999999", "dump", "x"], 255),
        (&["dump"], 255),
        (&["dump", "a", "b"], 255),
        (&["convert", "a"], 255),
        (&["frobnicate", "x"], 255),
        (&["dump", "missing.tdb"], 255),
        (&["dump", "text.txt"], 255),
        (&["dump", "empty.tdb"], 255),
        (&["convert", "missing.tdb", "out.tdb"], 255),
        (&["-p", "-h", "dump", "x"], 0),
        (&["--", "dump", "libtdb.tdb"], 0),
        (&["-s", "abc", "dump", "libtdb.tdb"], 0),
        (&["-S", "7x", "-p", "dump", "libtdb.tdb"], 0),
    ];
    for (args, code) in cases {
        let o = compare(args, &dir.0);
        assert_eq!(o.code, Some(*code), "ltdbtool {args:?}: {o:?}");
    }
    // A value shorter than the header stops the walk with a message but
    // exits 0, as upstream does.
    python(
        r#"
import os, tdb
db = tdb.Tdb("short.tdb", 0, tdb.DEFAULT, os.O_CREAT | os.O_RDWR, 0o600)
db[b"a"] = b"x" * 30
db[b"b"] = b"short"
db[b"c"] = b"\0" * 24
db.close()
"#,
        &dir.0,
    );
    // A negative raw header size makes upstream read memory outside the
    // record (undefined behaviour); we reject it as a usage error.
    let o = run(OURS, &["-S", "-5", "dump", "libtdb.tdb"], &dir.0);
    assert_eq!(o.code, Some(255));
    assert!(o.stderr.starts_with("Usage: ltdbtool dump"), "{o:?}");
    // Truncated files: refused at open with libtdb's errno.
    let full = std::fs::read(&db).expect("read db");
    for n in [100usize, 168, 500] {
        let name = format!("trunc{n}.tdb");
        std::fs::write(dir.path(&name), &full[..n]).expect("write truncated");
        let o = compare(&["dump", &name], &dir.0);
        assert_eq!(o.code, Some(255));
    }
    // A hash chain pointing past the end: the walk fails with status 255
    // (libtdb says nothing; we name the file and offset).
    let mut bad = full.clone();
    bad[172 + 4 * 5..172 + 4 * 5 + 4].copy_from_slice(&0xFFFFu32.to_le_bytes());
    std::fs::write(dir.path("badchain.tdb"), &bad).expect("write");
    let d = run(DEBIAN, &["dump", "badchain.tdb"], &dir.0);
    let o = run(OURS, &["dump", "badchain.tdb"], &dir.0);
    assert_eq!((o.code, d.code), (Some(255), Some(255)));
    assert!(
        o.stderr.contains("badchain.tdb") && o.stderr.contains("corrupt"),
        "{o:?}"
    );
    let o = compare(&["-p", "dump", "short.tdb"], &dir.0);
    assert!(o
        .stderr
        .contains("Value too short to contain a ctdb header: \"b\" = \"short\""));
    assert_eq!(o.code, Some(0));
    let _ = name;
}

/// ctdbd's volatile databases use libtdb's mutex feature. Dump and convert
/// one while its writer still has it open (as a running ctdbd would).
#[test]
fn mutex_database_held_open_by_libtdb_matches_debian() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;
    let dir = TempDir::new("ltdbtool-mutex");
    let mut writer = Command::new(PYTHON)
        .arg("-c")
        .arg(
            r#"
import os, struct, sys, tdb
MUTEX_LOCKING = 0x1000
db = tdb.Tdb("mutex.tdb", 0, MUTEX_LOCKING | tdb.INCOMPATIBLE_HASH | tdb.CLEAR_IF_FIRST,
             os.O_CREAT | os.O_RDWR, 0o600)
for i in range(30):
    db[b"m%d" % i] = struct.pack("<QIII4x", i, i % 2, 0, 0x10000) + b"payload%d" % i
print("ready", flush=True)
sys.stdin.read()
db.close()
"#,
        )
        .current_dir(&dir.0)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start python3 writer");
    let mut line = String::new();
    let mut rd = BufReader::new(writer.stdout.take().expect("stdout"));
    let _ = rd.read_line(&mut line);
    let result = std::panic::catch_unwind(|| {
        assert_eq!(line, "ready\n", "writer did not start");
        let o = compare(&["-p", "dump", "mutex.tdb"], &dir.0);
        assert_eq!(o.code, Some(0));
        assert_eq!(o.stdout.matches("key(").count(), 30);
        let d = run(DEBIAN, &["convert", "mutex.tdb", "d.tdb"], &dir.0);
        let ours = run(OURS, &["convert", "mutex.tdb", "o.tdb"], &dir.0);
        assert_eq!(ours, d);
        assert!(std::fs::read(dir.path("o.tdb")).ok() == std::fs::read(dir.path("d.tdb")).ok());
    });
    drop(writer.stdin.take());
    let _ = writer.kill();
    let _ = writer.wait();
    if let Err(p) = result {
        std::panic::resume_unwind(p);
    }
}

/// A database the user may read but not write (here: root's file dumped
/// as `nobody`) is still dumped, like Debian's tool does.
#[test]
fn read_only_file_is_dumped_like_debian() {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let root = status
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .and_then(|l| l.split_whitespace().nth(2))
        == Some("0");
    if !root || !Path::new("/usr/bin/setpriv").exists() {
        eprintln!("skipped: needs root and setpriv to run as nobody");
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    let dir = TempDir::new("ltdbtool-readonly");
    let db = libtdb_db(&dir);
    std::fs::set_permissions(&dir.0, std::fs::Permissions::from_mode(0o755)).expect("chmod dir");
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o644)).expect("chmod db");
    let as_nobody = |bin: &str| {
        let o = Command::new("/usr/bin/setpriv")
            .args([
                "--reuid=nobody",
                "--regid=nogroup",
                "--clear-groups",
                bin,
                "-p",
                "dump",
            ])
            .arg(&db)
            .output()
            .expect("setpriv");
        (
            o.status.code(),
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    let d = as_nobody(DEBIAN);
    if d.0 != Some(0) {
        eprintln!("skipped: nobody cannot reach the temp dir: {d:?}");
        return;
    }
    let o = as_nobody(OURS);
    if matches!(o.0, Some(126 | 127)) && o.1.is_empty() {
        eprintln!("skipped: nobody cannot execute {OURS}: {o:?}");
        return;
    }
    assert_eq!(o, d, "ours (left) vs Debian (right) as nobody");
    assert_eq!(o.0, Some(0));
    assert!(o.1.contains("key("));
}
