//! Shared helpers for the integration tests: unique temp dirs, the real
//! Debian tools, and a tiny seeded PRNG.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

/// A directory under the system temp dir, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let p = std::env::temp_dir().join(format!(
            "ctdb-config-test-{}-{}-{}",
            tag,
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    pub fn write(&self, name: &str, contents: &str) -> PathBuf {
        let p = self.0.join(name);
        std::fs::write(&p, contents).unwrap();
        p
    }

    pub fn mkdir(&self, name: &str) -> PathBuf {
        let p = self.0.join(name);
        std::fs::create_dir_all(&p).unwrap();
        p
    }

    pub fn script(&self, name: &str, executable: bool) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let p = self.write(name, "#!/bin/sh\nexit 0\n");
        let mode = if executable { 0o755 } else { 0o644 };
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        p
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub const CTDB_CONFIG_TOOL: &str = "/usr/libexec/ctdb/ctdb-config";

/// Output of Debian's ctdb-config run in test mode against `base`:
/// (exit code, stdout, stderr). The command gets a clean environment so
/// tests do not depend on the caller's CTDB_* variables.
pub fn ctdb_config(base: &Path, args: &[&str]) -> (i32, String, String) {
    assert!(
        Path::new(CTDB_CONFIG_TOOL).exists(),
        "{CTDB_CONFIG_TOOL} missing: install Debian's ctdb package"
    );
    let out = Command::new(CTDB_CONFIG_TOOL)
        .args(args)
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("CTDB_TEST_MODE", "1")
        .env("CTDB_BASE", base)
        .output()
        .expect("run ctdb-config");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// xorshift64* with a printed seed.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        eprintln!("PRNG seed: {seed:#x}");
        Rng(seed.max(1))
    }

    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    pub fn pick<'a, T>(&mut self, v: &'a [T]) -> &'a T {
        &v[self.below(v.len())]
    }
}

/// Seed from CTDB_TEST_SEED or the clock.
pub fn seed() -> u64 {
    std::env::var("CTDB_TEST_SEED")
        .ok()
        .and_then(|s| u64::from_str_radix(s.trim_start_matches("0x"), 16).ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        })
}
