//! nodes, public_addresses, ctdb.tunables, script.options, notify.sh and
//! path resolution.

mod common;

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{seed, Rng, TempDir};
use ctdb_config::tunables::{lookup, NUM_TUNABLES, TUNABLES};
use ctdb_config::{
    ErrorKind, Nodes, NotifyScript, Paths, PublicAddresses, ScriptOptions, SetOutcome, Tunables,
};

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// `ctdb -X listnodes` (reads $CTDB_BASE/nodes without a daemon).
fn listnodes(base: &Path) -> (i32, String) {
    let out = Command::new("/usr/bin/ctdb")
        .args(["-X", "listnodes"])
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("CTDB_BASE", base)
        .output()
        .expect("run /usr/bin/ctdb (Debian package ctdb)");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

fn our_listnodes(n: &Nodes) -> String {
    n.active()
        .map(|e| format!("|{}|{}|\n", e.pnn, e.addr))
        .collect()
}

#[test]
fn nodes_file_semantics() {
    let dir = TempDir::new("nodes");
    let p = dir.write(
        "nodes",
        "  10.0.0.1  \n#10.0.0.2\n\n\t fc00::5\n[fc00::6]\n::ffff:10.1.1.1\r\n# any comment is a deleted node\n10.0.0.9\n\n\n",
    );
    let n = Nodes::load(&p).unwrap();
    assert_eq!(n.len(), 7);
    let got: Vec<_> = n
        .entries
        .iter()
        .map(|e| (e.pnn, e.addr, e.deleted, e.line))
        .collect();
    assert_eq!(
        got,
        vec![
            (0, ip("10.0.0.1"), false, 1),
            (1, ip("0.0.0.0"), true, 2),
            (2, ip("fc00::5"), false, 4),
            (3, ip("fc00::6"), false, 5),
            (4, ip("10.1.1.1"), false, 6),
            (5, ip("0.0.0.0"), true, 7),
            (6, ip("10.0.0.9"), false, 8),
        ]
    );
    assert_eq!(n.pnn_of(ip("::ffff:10.1.1.1")), Some(4));
    assert_eq!(n.pnn_of(ip("0.0.0.0")), None);
    assert_eq!(
        n.socket_addr(0, 4379),
        Some("10.0.0.1:4379".parse().unwrap())
    );
    // The real ctdb tool agrees.
    let (rc, out) = listnodes(dir.path());
    assert_eq!(rc, 0);
    assert_eq!(our_listnodes(&n), out);
}

#[test]
fn nodes_bad_lines() {
    let dir = TempDir::new("nodes-bad");
    for (text, line) in [
        ("10.0.0.1\n10.0.0.2:4379\n", 2),
        ("10.0.0.1\n\nnode3\n", 3),
        ("10.0.0.1 # trailing comment\n", 1),
        ("10.0.0.256\n", 1),
        ("10.0.0.1\n\n\n\t[10.0.0.1]\n", 4),
    ] {
        let p = dir.write("nodes", text);
        let e = Nodes::load(&p).unwrap_err();
        assert_eq!(
            (e.line(), e.kind()),
            (Some(line), Some(ErrorKind::InvalidValue)),
            "{text:?}: {e}"
        );
        assert!(e.to_string().contains("nodes:"), "{e}");
        let (rc, _) = listnodes(dir.path());
        assert_ne!(rc, 0, "ctdb accepted {text:?}");
    }
    assert!(Nodes::load(&dir.path().join("missing")).is_err());
}

#[test]
fn random_nodes_files_match_ctdb_listnodes() {
    let dir = TempDir::new("nodes-rand");
    let pool = [
        "127.0.0.1",
        "127.0.0.2",
        "10.20.30.40",
        "fc00:1::2",
        "[fd00::77]",
        "::ffff:192.168.0.1",
        "#",
        "# deleted 127.0.0.9",
        "",
        " ",
        "\t",
    ];
    let mut rng = Rng::new(seed());
    for round in 0..15 {
        let mut text = String::new();
        for _ in 0..rng.below(10) {
            let pad = ["", " ", "\t", "  \t"];
            text.push_str(&format!(
                "{}{}{}\n",
                rng.pick(&pad),
                rng.pick(&pool),
                rng.pick(&pad)
            ));
        }
        let p = dir.write("nodes", &text);
        let n = Nodes::load(&p).unwrap_or_else(|e| panic!("round {round} {text:?}: {e}"));
        let (rc, out) = listnodes(dir.path());
        assert_eq!(rc, 0, "round {round}");
        assert_eq!(our_listnodes(&n), out, "round {round}, file {text:?}");
    }
}

#[test]
fn public_addresses_semantics() {
    let dir = TempDir::new("pa");
    let p = dir.write(
        "public_addresses",
        "# comment\n\n  10.0.0.100/24 eth1\n\t10.0.1.100/24\teth1,eth2  extra words\r\nfc00::100/64 eth3\n[fc00::200]/64 e,,f\n",
    );
    let pa = PublicAddresses::load(&p).unwrap();
    let got: Vec<_> = pa
        .addresses
        .iter()
        .map(|a| (a.addr, a.mask, a.ifaces.join(","), a.line))
        .collect();
    assert_eq!(
        got,
        vec![
            (ip("10.0.0.100"), 24, "eth1".to_string(), 3),
            (ip("10.0.1.100"), 24, "eth1,eth2".to_string(), 4),
            (ip("fc00::100"), 64, "eth3".to_string(), 5),
            (ip("fc00::200"), 64, "e,f".to_string(), 6),
        ]
    );
    assert_eq!(pa.interfaces(), vec!["eth1", "eth2", "eth3", "e", "f"]);
    assert!(pa.missing_interfaces().contains(&"eth3".to_string()));
    // Missing file: no addresses.
    let none = PublicAddresses::load(&dir.path().join("nope")).unwrap();
    assert!(none.addresses.is_empty());
    // Default interface for lines without one.
    let p = dir.write("public_addresses", "10.0.0.1/8\n10.0.0.2/8 lo\n");
    assert!(PublicAddresses::load(&p).is_err());
    let pa = PublicAddresses::load_with_default_iface(&p, Some("lo")).unwrap();
    assert_eq!(pa.addresses[0].ifaces, vec!["lo".to_string()]);
    assert!(pa.missing_interfaces().is_empty());
}

#[test]
fn public_addresses_bad_lines() {
    let dir = TempDir::new("pa-bad");
    for (text, line, kind) in [
        (
            "10.0.0.1/24 eth0\n10.0.0.2/24\n",
            2,
            ErrorKind::InvalidValue,
        ),
        ("10.0.0.1 eth0\n", 1, ErrorKind::InvalidValue),
        ("\n10.0.0.1/ eth0\n", 2, ErrorKind::InvalidValue),
        ("10.0.0.1/2x eth0\n", 1, ErrorKind::InvalidValue),
        ("10.0.0.1/33 eth0\n", 1, ErrorKind::InvalidValue),
        ("fc00::1/129 eth0\n", 1, ErrorKind::InvalidValue),
        ("10.0.0.300/24 eth0\n", 1, ErrorKind::InvalidValue),
        ("10.0.0.1/24 ,\n", 1, ErrorKind::InvalidValue),
        (
            "10.0.0.1/24 averyveryverylongname\n",
            1,
            ErrorKind::InvalidValue,
        ),
        (
            "10.0.0.1/24 eth0\n#x\n10.0.0.1/16 eth1\n",
            3,
            ErrorKind::Duplicate,
        ),
        (
            "::ffff:10.0.0.1/24 eth0\n10.0.0.1/24 eth1\n",
            2,
            ErrorKind::Duplicate,
        ),
    ] {
        let p = dir.write("public_addresses", text);
        let e = PublicAddresses::load(&p).unwrap_err();
        assert_eq!(
            (e.line(), e.kind()),
            (Some(line), Some(kind)),
            "{text:?}: {e}"
        );
    }
}

#[test]
fn tunable_table_matches_upstream() {
    assert_eq!(TUNABLES.len(), 62);
    let t = Tunables::defaults();
    let listed: Vec<_> = t.list().collect();
    assert_eq!(listed.len(), 49);
    assert_eq!(listed[0], ("SeqnumInterval", 1000));
    assert_eq!(listed.last(), Some(&("AllowMixedVersions", 0)));
    for (name, def) in [
        ("MaxRedirectCount", 3),
        ("RecoverTimeout", 30),
        ("DatabaseHashSize", 100_001),
        ("VacuumFastPathCount", 60),
        ("PullDBPreallocation", 10 * 1024 * 1024),
        ("DBSizeWarn", 100_000_000),
        ("IPAllocAlgorithm", 2),
        ("QueueBufferSize", 1024),
        ("TDBMutexEnabled", 1),
    ] {
        assert_eq!(t.get(name), Some(def), "{name}");
    }
    // Case-insensitive lookup, set, obsolete outcome.
    let mut t = Tunables::defaults();
    assert_eq!(t.get("recovertimeout"), Some(30));
    assert_eq!(t.set("RECOVERTIMEOUT", 45).unwrap(), SetOutcome::Set);
    assert_eq!(t.get("RecoverTimeout"), Some(45));
    assert_eq!(
        t.set("VerifyRecoveryLock", 0).unwrap(),
        SetOutcome::Obsolete
    );
    assert_eq!(
        t.set("NoSuchTunable", 1).unwrap_err().kind(),
        Some(ErrorKind::UnknownKey)
    );
    assert_eq!(t.get("NoSuchTunable"), None);
    // Wire order: struct ctdb_tunable_list.
    let w = t.to_wire();
    assert_eq!(w[6], 45); // recover_timeout
    assert_eq!(w[41], 1); // lcp2_public_ip_assignment
    assert_eq!(w[40], 60); // vacuum_fast_path_count
    assert_eq!(Tunables::from_wire(&w), t);
    assert_eq!(w.len(), NUM_TUNABLES);
    let names = Tunables::names_string();
    assert!(names.starts_with("SeqnumInterval:ControlTimeout:"));
    assert!(!names.contains("MaxRedirectCount"));
    assert_eq!(lookup("lcp2publicips").unwrap().1.name, "LCP2PublicIPs");
}

#[test]
fn tunables_file() {
    let dir = TempDir::new("tun");
    let p = dir.write(
        "ctdb.tunables",
        "# Set some tunables\n; another comment\nRecoverTimeout=60\n  monitorinterval = 0x1e\nKeepaliveLimit = 010\n",
    );
    let t = Tunables::load(&p).unwrap();
    assert_eq!(t.get("RecoverTimeout"), Some(60));
    assert_eq!(t.get("MonitorInterval"), Some(30));
    assert_eq!(t.get("KeepaliveLimit"), Some(8));
    assert_eq!(t.get("ControlTimeout"), Some(60));
    // Missing file: defaults.
    assert_eq!(
        Tunables::load(&dir.path().join("nope")).unwrap(),
        Tunables::defaults()
    );
    // Debian's shipped example loads.
    if Path::new("/etc/ctdb/ctdb.tunables").exists() {
        assert_eq!(
            Tunables::load(Path::new("/etc/ctdb/ctdb.tunables")).unwrap(),
            Tunables::defaults()
        );
    }
}

#[test]
fn tunables_file_errors_all_reported() {
    let dir = TempDir::new("tun-bad");
    let p = dir.write(
        "ctdb.tunables",
        "RecoverTimeout=60\n[section]\nNoValue\nEmpty=\nBogus=1\nVerifyRecoveryLock=0\nControlTimeout=abc\nKeepaliveLimit=-1\nTakeoverTimeout=4294967296\nMonitorInterval=20\n",
    );
    let e = Tunables::load(&p).unwrap_err();
    let got: Vec<_> = e
        .errors()
        .iter()
        .map(|e| (e.line().unwrap(), e.kind().unwrap()))
        .collect();
    assert_eq!(
        got,
        vec![
            (2, ErrorKind::Syntax),
            (3, ErrorKind::EmptyValue),
            (4, ErrorKind::EmptyValue),
            (5, ErrorKind::UnknownKey),
            (6, ErrorKind::Obsolete),
            (7, ErrorKind::InvalidValue),
            (8, ErrorKind::InvalidValue),
            (9, ErrorKind::InvalidValue),
        ]
    );
    assert!(
        e.to_string()
            .contains("ctdb.tunables:5: unknown tunable \"Bogus\""),
        "{e}"
    );
    // ctdbd's behaviour: good lines applied, bad ones reported.
    let (t, errs) = Tunables::load_lenient(&p).unwrap();
    assert_eq!(errs.len(), 8);
    assert_eq!(t.get("RecoverTimeout"), Some(60));
    assert_eq!(t.get("MonitorInterval"), Some(20));
    assert_eq!(t.get("ControlTimeout"), Some(60));
}

#[test]
fn script_options() {
    let dir = TempDir::new("so");
    let p = dir.write(
        "script.options",
        "# comment\nCTDB_RPCINFO_LOCALHOST=\"127.0.0.1\"\nexport CTDB_A='x y'  # note\nCTDB_B=plain\n\
         CTDB_C=\"q\\\"uote\"\nif true; then\nCTDB_B=second\nfi\nbad name=1\n",
    );
    let so = ScriptOptions::load(&p).unwrap();
    assert_eq!(so.get("CTDB_RPCINFO_LOCALHOST"), Some("127.0.0.1"));
    assert_eq!(so.get("CTDB_A"), Some("x y"));
    assert_eq!(so.get("CTDB_B"), Some("second"));
    assert_eq!(so.get("CTDB_C"), Some("q\"uote"));
    let skipped: Vec<_> = so.skipped.iter().map(|s| s.0).collect();
    assert_eq!(skipped, vec![6, 8, 9]);
    assert_eq!(
        ScriptOptions::load(&dir.path().join("nope")).unwrap(),
        ScriptOptions::default()
    );
    // The shell agrees on the values we claim to understand.
    let out = Command::new("/bin/sh")
        .arg("-c")
        .arg(format!(
            ". {} ; printf '%s|%s|%s|%s' \"$CTDB_RPCINFO_LOCALHOST\" \"$CTDB_A\" \"$CTDB_B\" \"$CTDB_C\"",
            p.display()
        ))
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "127.0.0.1|x y|second|q\"uote"
    );
}

#[test]
fn notify_script_states() {
    let dir = TempDir::new("notify");
    let p = dir.path().join("notify.sh");
    assert_eq!(NotifyScript::check(&p), NotifyScript::Missing);
    dir.script("notify.sh", false);
    assert_eq!(
        NotifyScript::check(&p),
        NotifyScript::NotExecutable(p.clone())
    );
    dir.script("notify.sh", true);
    assert_eq!(NotifyScript::check(&p), NotifyScript::Ready(p.clone()));
    assert_eq!(Paths::under(dir.path()).notification_script(), p);
}

fn vars(v: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<PathBuf> {
    move |name| {
        v.iter()
            .find(|(n, _)| *n == name)
            .map(|(_, val)| PathBuf::from(val))
    }
}

/// `ctdb-path` in the given environment.
fn ctdb_path(env: &[(&str, &str)], args: &[&str]) -> String {
    let out = Command::new("/usr/libexec/ctdb/ctdb-path")
        .args(args)
        .env_clear()
        .envs(env.iter().copied())
        .output()
        .expect("run ctdb-path");
    String::from_utf8_lossy(&out.stdout).trim_end().to_string()
}

#[test]
fn paths_match_ctdb_path() {
    const NORMAL: &[(&str, &str)] = &[];
    const TEST: &[(&str, &str)] = &[("CTDB_TEST_MODE", "yes"), ("CTDB_BASE", "/tmp/cb")];
    const SOCK: &[(&str, &str)] = &[("CTDB_SOCKET", "/tmp/s.sock")];
    for env in [NORMAL, TEST, SOCK] {
        let p = Paths::from_vars(vars(env)).unwrap();
        let check = |args: &[&str], ours: PathBuf| {
            assert_eq!(
                ctdb_path(env, args),
                ours.display().to_string(),
                "{env:?} {args:?}"
            );
        };
        check(&["config"], p.config_file());
        check(&["etcdir"], p.etcdir.clone());
        check(&["rundir"], p.rundir.clone());
        check(&["vardir"], p.vardir.clone());
        check(&["datadir"], p.datadir.clone());
        check(&["socket", "ctdbd"], p.ctdbd_socket());
        check(&["socket", "eventd"], p.socket("eventd"));
        check(&["pidfile", "ctdbd"], p.pidfile("ctdbd"));
    }
    let p = Paths::from_vars(vars(NORMAL)).unwrap();
    assert_eq!(p.ctdbd_socket(), Path::new("/run/ctdb/ctdbd.socket"));
    assert_eq!(p.nodes_file(), Path::new("/etc/ctdb/nodes"));
    assert_eq!(p.event_script_dir(), Path::new("/etc/ctdb/events/legacy"));
    // CTDB_BASE without test mode moves nodes & scripts but not ctdb.conf.
    let p = Paths::from_vars(vars(&[("CTDB_BASE", "/srv/c")])).unwrap();
    assert_eq!(p.nodes_file(), Path::new("/srv/c/nodes"));
    assert_eq!(
        p.public_addresses_file(),
        Path::new("/srv/c/public_addresses")
    );
    assert_eq!(p.config_file(), Path::new("/etc/ctdb/ctdb.conf"));
    // Test mode without CTDB_BASE is an error, as upstream (which aborts).
    let e = Paths::from_vars(vars(&[("CTDB_TEST_MODE", "1")])).unwrap_err();
    assert!(e.to_string().contains("CTDB_BASE"), "{e}");
}

/// Random bytes and random mutations of valid files never panic any
/// parser; they either load or give an error naming a line.
#[test]
fn hostile_input_never_panics() {
    use ctdb_config::{Config, LoadOptions};
    let seeds: &[&[u8]] = &[
        b"[cluster]\nleader timeout = 5\nnode address = 10.0.0.1\n",
        b"[legacy]\n start as stopped = yes \\\n\n[x\n= 1\n",
        b"10.0.0.1\n#\nfc00::1\n",
        b"10.0.0.1/24 eth0,eth1\n",
        b"RecoverTimeout=0x10\nFoo\n",
        b"A=\"b\" 'c' \\\n",
    ];
    let alphabet = b"[]=#;\\ \t\r\n\0/:,.'\"x0aZ\xff\xc3";
    let mut rng = Rng::new(seed());
    let path = Path::new("/fuzz/file");
    for _ in 0..3000 {
        let mut data = rng.pick(seeds).to_vec();
        for _ in 0..1 + rng.below(8) {
            let pos = rng.below(data.len() + 1);
            match rng.below(3) {
                0 => data.insert(pos, *rng.pick(alphabet)),
                1 if pos < data.len() => {
                    data.remove(pos);
                }
                _ => data.insert(pos, rng.next() as u8),
            }
        }
        for opts in [LoadOptions::strict(), LoadOptions::ctdbd()] {
            if let Err(e) = Config::from_ini(path, &data, Path::new("/nonexistent"), opts) {
                assert!(!e.to_string().is_empty());
            }
            let text = String::from_utf8_lossy(&data);
            let _ = Config::from_toml(path, &text, Path::new("/nonexistent"), opts);
        }
        let _ = Tunables::parse(path, &data);
        if let Err(e) = Nodes::parse(path, &data) {
            assert!(e.line().is_some(), "{e}");
        }
        if let Err(e) = PublicAddresses::parse(path, &data, None) {
            assert!(e.line().is_some(), "{e}");
        }
        let _ = ScriptOptions::parse(&String::from_utf8_lossy(&data));
    }
}
