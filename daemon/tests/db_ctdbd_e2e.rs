//! End to end: our `ctdbd` binary with Debian's stock `/usr/bin/ctdb`:
//! attach, getdbmap, writekey/readkey, deletekey, pstore/pfetch/ptrans,
//! catdb, backupdb/wipedb/restoredb, getdbseqnum, with the results checked
//! in the database files by `tdbdump` and `ltdbtool`.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

mod one_node;
use one_node::{Node, CTDB};

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
    let n = Node::start("ctdb-dbs-e2e-tool", 9, &[]);
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
