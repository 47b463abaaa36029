//! Helpers shared by the engine's integration tests: unique temp dirs, a
//! seeded PRNG, and drivers for the Debian peers (python3-tdb, tdbdump,
//! tdbtool).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};

pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static N: AtomicU64 = AtomicU64::new(0);
        let p = std::env::temp_dir().join(format!(
            "ctdb-engine-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// splitmix64
pub struct Rng(pub u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    pub fn bytes(&mut self, max: usize) -> Vec<u8> {
        let n = self.below(max as u64 + 1) as usize;
        (0..n).map(|_| self.next() as u8).collect()
    }
}

/// Seed from CTDB_TEST_SEED or the clock; printed so failures can be replayed.
pub fn seed(tag: &str) -> u64 {
    let s = std::env::var("CTDB_TEST_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    eprintln!("{tag}: seed {s} (set CTDB_TEST_SEED={s} to replay)");
    s
}

pub const PY: &str = "/usr/bin/python3";

/// Run a python3-tdb script; panics with its stderr on failure.
pub fn python(script: &str, args: &[&str]) -> String {
    let out = Command::new(PY)
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .expect("run /usr/bin/python3");
    assert!(
        out.status.success(),
        "python failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        script
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Dump all records with python3-tdb as sorted "hexkey hexvalue" lines.
pub fn py_dump(path: &Path, flags: u32) -> Vec<(Vec<u8>, Vec<u8>)> {
    let script = r#"
import sys, tdb
t = tdb.open(sys.argv[1], tdb_flags=int(sys.argv[2]), flags=__import__('os').O_RDWR)
for k in t.keys():
    print(k.hex(), t[k].hex())
t.close()
"#;
    let out = python(script, &[path.to_str().unwrap(), &flags.to_string()]);
    let mut v: Vec<(Vec<u8>, Vec<u8>)> = out
        .lines()
        .map(|l| {
            let mut it = l.split(' ');
            (unhex(it.next().unwrap()), unhex(it.next().unwrap_or("")))
        })
        .collect();
    v.sort();
    v
}

pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

pub fn unhex(s: &str) -> Vec<u8> {
    (0..s.len() / 2)
        .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap())
        .collect()
}

/// `tdbtool FILE check` must succeed and say so.
pub fn tdbtool_check(path: &Path) {
    let out = Command::new("tdbtool")
        .arg(path)
        .arg("check")
        .output()
        .expect("run tdbtool");
    let so = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && so.contains("Database integrity is OK"),
        "tdbtool check failed for {}: {}{}",
        path.display(),
        so,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Records as printed by tdbdump (count only; escaping is tdbdump's).
pub fn tdbdump_count(path: &Path) -> usize {
    let out = Command::new("tdbdump")
        .arg(path)
        .output()
        .expect("run tdbdump");
    assert!(
        out.status.success(),
        "tdbdump failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .matches("\nkey(")
        .count()
}

/// tdbdump's escaping of a byte string (printable ASCII except '\\' and '"'
/// as is, everything else as \XX upper-case hex).
pub fn tdbdump_escape(b: &[u8]) -> String {
    let mut s = String::new();
    for &c in b {
        if (0x20..0x7f).contains(&c) && c != b'\\' && c != b'"' {
            s.push(c as char);
        } else {
            s.push_str(&format!("\\{c:02X}"));
        }
    }
    s
}

/// Parse tdbdump output into sorted (key, value) escaped strings.
pub fn tdbdump_records(path: &Path) -> Vec<(String, String)> {
    let out = Command::new("tdbdump")
        .arg(path)
        .output()
        .expect("run tdbdump");
    assert!(
        out.status.success(),
        "tdbdump failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let mut v = Vec::new();
    let mut key = None;
    for line in text.lines() {
        let line = line.trim();
        if let Some(rest) = line.strip_prefix("key(") {
            let q = rest.find(") = \"").unwrap();
            key = Some(rest[q + 5..rest.len() - 1].to_string());
        } else if let Some(rest) = line.strip_prefix("data(") {
            let q = rest.find(") = \"").unwrap();
            let d = rest[q + 5..rest.len() - 1].to_string();
            v.push((key.take().unwrap(), d));
        }
    }
    v.sort();
    v
}
