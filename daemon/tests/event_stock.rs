//! Debian's stock event scripts (00.ctdb, 01.reclock, 05.system,
//! 10.interface from /usr/share/ctdb/events/legacy), enabled by
//! `ctdb-event script enable` links as upstream, run for init, setup,
//! startup and monitor under our eventd and under Debian's: the same
//! results.
//!
//! No ctdbd runs here. Only 00.ctdb's `startup` talks to it (`ctdb attach
//! ctdb.tdb persistent`); that command fails, but the script ignores its
//! status, so the event still passes. Nothing else needs a daemon: there
//! is no public_addresses file (10.interface then does nothing; with one
//! its monitor/startup would ask ctdbd for `ifaces` and `setifacelink`),
//! no cluster lock (01.reclock) and no thresholds (05.system).

mod event_util;

use std::path::Path;

use event_util::*;

const STOCK: &str = "/usr/share/ctdb/events/legacy";

fn tree(b: &Base) {
    for d in ["var/volatile", "var/persistent", "var/state", "var/scripts"] {
        b.mkdir(d);
    }
    let conf = format!(
        "[database]\n\tvolatile database directory = {0}/var/volatile\n\tpersistent database directory = {0}/var/persistent\n\tstate database directory = {0}/var/state\n",
        b.dir.display()
    );
    b.write("ctdb.conf", &conf, false);
    b.link(Path::new("/etc/ctdb/functions"), "functions");
    b.link(Path::new(STOCK), "share/events/legacy");
    b.mkdir("events/legacy");
}

fn scenario(b: &Base) -> String {
    let mut t = String::new();
    for s in ["00.ctdb", "01.reclock", "05.system", "10.interface"] {
        t.push_str(&b.tool(&["script", "enable", "legacy", s], &[]));
    }
    t.push_str(&b.tool(&["script", "list", "legacy"], &[]));
    for ev in ["init", "setup", "startup", "monitor"] {
        t.push_str(&b.tool(&["run", "30", "legacy", ev], &[]));
        t.push_str(&b.tool(&["status", "legacy", ev], &[]));
    }
    t
}

fn run_with(exe: &Path, tag: &str) -> String {
    let b = Base::new(tag);
    tree(&b);
    let mut d = Daemon::start(&b, exe);
    let t = scenario(&b);
    d.stop();
    // The links point at the stock scripts, as `ctdb event script enable`
    // makes them.
    let l = std::fs::read_link(b.dir.join("events/legacy/00.ctdb.script")).unwrap();
    assert_eq!(l, Path::new(STOCK).join("00.ctdb.script"));
    // init recreated the scripts' state directory under the base.
    assert!(b.dir.join("var/scripts").is_dir());
    t
}

#[test]
fn debian_stock_scripts_run_alike() {
    for s in ["00.ctdb", "01.reclock", "05.system", "10.interface"] {
        assert!(
            Path::new(STOCK).join(format!("{s}.script")).exists(),
            "Debian's ctdb package must provide {s}"
        );
    }
    let theirs = std::thread::spawn(|| run_with(Path::new(DEBIAN_EVENTD), "stock-deb"));
    let ours = run_with(&ours(), "stock-ours");
    let theirs = theirs.join().unwrap();
    if theirs != ours {
        eprintln!("=== Debian ===\n{theirs}\n=== ours ===\n{ours}");
    }
    assert_eq!(theirs, ours);
    // Every event passes in all four scripts.
    for ev in ["init", "setup", "startup", "monitor"] {
        let entry = ours
            .split("$ ")
            .find(|e| e.starts_with(&format!("status legacy {ev}\n")))
            .unwrap();
        assert!(entry.ends_with("rc=0\n"), "{entry}");
        assert_eq!(entry.matches(" OK ").count(), 4, "{entry}");
    }
}
