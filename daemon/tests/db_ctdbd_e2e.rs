//! End to end: our `ctdbd` binary with Debian's stock `/usr/bin/ctdb`:
//! attach, getdbmap, writekey/readkey, deletekey, pstore/pfetch/ptrans,
//! catdb, backupdb/wipedb/restoredb, getdbseqnum, with the results checked
//! in the database files by `tdbdump` and `ltdbtool`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const CTDBD: &str = env!("CARGO_BIN_EXE_ctdbd");
const CTDB: &str = "/usr/bin/ctdb";

struct Node {
    base: PathBuf,
    sock: PathBuf,
    child: Option<Child>,
}

impl Node {
    fn start(tag: &str) -> Node {
        let base = std::env::temp_dir().join(format!("ctdb-dbs-e2e-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        for sub in [
            "volatile",
            "persistent",
            "state",
            "run",
            "var",
            "events/legacy",
        ] {
            std::fs::create_dir_all(base.join(sub)).unwrap();
        }
        let addr = format!(
            "127.{}.{}.9",
            100 + std::process::id() % 100,
            std::process::id() / 100 % 250 + 1
        );
        std::fs::write(base.join("nodes"), format!("{addr}\n")).unwrap();
        let conf = format!(
            "[logging]\n\tlocation = file:{0}/log.ctdb\n\tlog level = INFO\n\
             [cluster]\n\tnode address = {addr}\n\
             [database]\n\tvolatile database directory = {0}/volatile\n\
             \tpersistent database directory = {0}/persistent\n\
             \tstate database directory = {0}/state\n\
             [legacy]\n\trealtime scheduling = false\n",
            base.display()
        );
        std::fs::write(base.join("ctdb.conf"), conf).unwrap();
        let sock = base.join("run/ctdbd.socket");
        let child = Command::new(CTDBD)
            .args(["-i", "--nosetsched"])
            .env("CTDB_TEST_MODE", "1")
            .env("CTDB_BASE", &base)
            .env("CTDB_SOCKET", &sock)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start ctdbd");
        let mut n = Node {
            base,
            sock,
            child: Some(child),
        };
        let end = Instant::now() + Duration::from_secs(30);
        loop {
            assert!(
                matches!(n.child.as_mut().unwrap().try_wait(), Ok(None)),
                "ctdbd exited: {}",
                n.log()
            );
            let (ok, out) = n.ctdb(&["runstate"]);
            if ok && out.contains("RUNNING") {
                break;
            }
            assert!(
                Instant::now() < end,
                "ctdbd not RUNNING: {out}\n{}",
                n.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        n
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.base.join("log.ctdb")).unwrap_or_default()
    }

    fn ctdb(&self, args: &[&str]) -> (bool, String) {
        let mut child = Command::new(CTDB)
            .args(args)
            .env("CTDB_SOCKET", &self.sock)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run ctdb");
        let start = Instant::now();
        let end = start + Duration::from_secs(30);
        while child.try_wait().unwrap().is_none() {
            if Instant::now() > end {
                let _ = child.kill();
                let _ = child.wait();
                return (false, format!("ctdb {args:?} timed out"));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let o = child.wait_with_output().unwrap();
        eprintln!("ctdb {args:?}: {:?}", start.elapsed());
        (
            o.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            ),
        )
    }

    fn ok(&self, args: &[&str]) -> String {
        let (ok, out) = self.ctdb(args);
        assert!(ok, "ctdb {args:?}: {out}\nlog:\n{}", self.log());
        out
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .status();
            let end = Instant::now() + Duration::from_secs(10);
            while matches!(c.try_wait(), Ok(None)) && Instant::now() < end {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_dir_all(&self.base);
    }
}

fn dump(tool: &[&str], path: &Path) -> String {
    let o = Command::new(tool[0])
        .args(&tool[1..])
        .arg(path)
        .output()
        .unwrap();
    assert!(o.status.success(), "{tool:?} {}", path.display());
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn our_ctdbd_with_the_stock_ctdb_tool() {
    if !Path::new(CTDB).exists() {
        eprintln!("skipped: {CTDB} not installed");
        return;
    }
    let n = Node::start("tool");
    assert_eq!(n.ok(&["attach", "test.tdb"]), "");
    let out = n.ok(&["getdbmap"]);
    assert!(out.contains("name:test.tdb"), "{out}");
    n.ok(&["writekey", "test.tdb", "key1", "value1"]);
    n.ok(&["writekey", "test.tdb", "key2", "value2"]);
    let out = n.ok(&["readkey", "test.tdb", "key1"]);
    assert!(out.contains("ptr:[value1]"), "{out}");
    let vol = n.base.join("volatile/test.tdb.0");
    let ld = dump(&["/usr/bin/ltdbtool", "dump", "-p"], &vol);
    assert_eq!(ld.matches("rsn: 2").count(), 2, "{ld}");
    let out = n.ok(&["catdb", "test.tdb"]);
    assert!(out.contains("Dumped 2 records"), "{out}");

    assert_eq!(n.ok(&["attach", "p.tdb", "persistent"]), "");
    n.ok(&["pstore", "p.tdb", "k1", "v1"]);
    assert_eq!(n.ok(&["pfetch", "p.tdb", "k1"]).trim(), "v1");
    let mut child = Command::new(CTDB)
        .args(["ptrans", "p.tdb"])
        .env("CTDB_SOCKET", &n.sock)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"\"k2\" \"v2\"\n\"k3\" \"v3\"\n")
        .unwrap();
    assert!(child.wait().unwrap().success(), "ptrans");
    assert_eq!(n.ok(&["getdbseqnum", "p.tdb"]).trim(), "0x2");
    let td = dump(&["tdbdump"], &n.base.join("persistent/p.tdb.0"));
    for k in ["k1", "k2", "k3"] {
        assert!(td.contains(&format!("key(2) = \"{k}\"")), "{td}");
    }

    let backup = n.base.join("test.backup");
    let b = backup.to_str().unwrap();
    n.ok(&["backupdb", "test.tdb", b]);
    let out = n.ok(&["wipedb", "test.tdb"]);
    assert!(out.contains("wiped"), "{out}");
    assert_eq!(dump(&["tdbdump"], &vol), "");
    n.ok(&["restoredb", b]);
    let out = n.ok(&["catdb", "test.tdb"]);
    assert!(out.contains("Dumped 2 records"), "{out}");
}
