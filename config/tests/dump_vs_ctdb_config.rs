//! `Config::dump()` must print exactly what Debian's
//! `/usr/libexec/ctdb/ctdb-config dump` prints for the same directory, and
//! strict loading must accept/reject the same files as
//! `ctdb-config validate`.

mod common;

use common::{ctdb_config, seed, Rng, TempDir};
use ctdb_config::{options, Config, Defaults, LoadOptions};

fn ours(dir: &TempDir) -> String {
    Config::load_with(dir.path(), LoadOptions::tool())
        .unwrap_or_else(|e| panic!("our loader failed: {e}"))
        .dump()
}

fn theirs(dir: &TempDir) -> String {
    let (rc, out, err) = ctdb_config(dir.path(), &["dump"]);
    assert_eq!(rc, 0, "ctdb-config dump failed: {err}");
    out
}

#[test]
fn empty_directory_dump_is_identical() {
    let dir = TempDir::new("dump-empty");
    let want = theirs(&dir);
    assert!(want.contains("[legacy]"), "unexpected tool output: {want}");
    assert_eq!(ours(&dir), want);
    // An empty file is the same as no file.
    dir.write("ctdb.conf", "");
    assert_eq!(ours(&dir), theirs(&dir));
}

#[test]
fn dump_with_many_keys_is_identical() {
    let dir = TempDir::new("dump-keys");
    let d = dir.path().display();
    dir.mkdir("vol");
    dir.mkdir("per");
    dir.mkdir("sta");
    dir.mkdir("log");
    dir.script("debug-hung-script.sh", true);
    dir.script("debug_locks.sh", true);
    // Exercises: upper-case section, collapsed blanks, no trailing
    // comments, hex integer, value equal to default staying default, the
    // "first non-default wins over a later default" quirk, continuation
    // lines, unknown sections/keys (ignored by dump), a line without '=',
    // yes/no booleans, a CRLF line.
    let text = format!(
        "# comment\n; other comment\n\n[LOGGING]\n\tlocation = file:{d}/log/log.ctdb\n\tlog level = notice\n\
         [cluster]\n  transport = tcp\n  node    address =   10.1.2.3   \n  recovery lock = /x/y # not a comment\n\
         \x20 cluster lock = !/bin/false lock\n  leader timeout = 0x0a\n  leader capability = No\n  leader timeout = 5\n\
         [unknown]\n foo = bar\n[database]\n  volatile database directory = {d}/vol\n\
         persistent database directory = {d}/per\nstate database directory = {d}/sta\n\
         lock debug script = {d}/debug_locks.sh\n  unknown key = 1\n  tdb mutexes = NO\r\n\
         [event]\n debug script = debug-hung-script.sh\n[failover]\ndisabled = yes\n\
         [legacy]\n realtime scheduling = false\n lmaster capability = false\n start as stopped = yes\n\
         start as disabled = TRUE\n script log level = \\\n   warn\nnoequals line\n"
    );
    dir.write("ctdb.conf", &text);
    let want = theirs(&dir);
    assert!(want.contains("\tleader timeout = 10\n"), "{want}");
    assert_eq!(ours(&dir), want);
}

#[test]
fn get_matches_ctdb_config_get_for_every_option() {
    let dir = TempDir::new("get");
    dir.mkdir("vol");
    let d = dir.path().display();
    dir.write(
        "ctdb.conf",
        &format!(
            "[logging]\nlog level = Info\n[cluster]\nnode address = fc00:10:1:2::123\n\
             leader timeout = 012\n[database]\nvolatile database directory = {d}/vol\n"
        ),
    );
    let cfg = Config::load_with(dir.path(), LoadOptions::tool()).unwrap();
    for o in options(Defaults::Tool) {
        let (rc, out, err) = ctdb_config(dir.path(), &["get", o.section, o.key]);
        assert_eq!(rc, 0, "get {} {}: {err}", o.section, o.key);
        let ours = format!("{}\n", cfg.get(o.section, o.key).unwrap());
        assert_eq!(ours, out, "[{}] {}", o.section, o.key);
    }
}

/// Files both implementations must accept or reject alike (strict mode vs
/// `ctdb-config validate`).
#[test]
fn validate_agrees_on_good_and_bad_files() {
    let dir = TempDir::new("validate");
    let d = dir.path().display().to_string();
    dir.mkdir("vol");
    dir.script("exec.sh", true);
    dir.script("noexec.sh", false);
    let cases: Vec<(String, bool)> = vec![
        ("".into(), true),
        ("[cluster]\nleader timeout = 10\n".into(), true),
        ("[cluster]\nleader timeout = 0\n".into(), false),
        ("[cluster]\nleader timeout = -5\n".into(), false),
        ("[cluster]\nleader timeout = 2147483648\n".into(), false),
        ("[cluster]\ntransport = ib\n".into(), false),
        ("[cluster]\nnode address = 10.1.2.3\n".into(), true),
        ("[cluster]\nnode address = 10.1.2.3:123\n".into(), false),
        ("[cluster]\nnode address = [fc00::1]\n".into(), false),
        ("[cluster]\nleader capability = maybe\n".into(), false),
        ("[cluster]\nleader capability = 1\n".into(), false),
        ("[cluster]\nnode address =\n".into(), false),
        ("[cluster]\nrecovery lock = /x\n".into(), true),
        ("[foobar]\n".into(), false),
        ("foobar = cat\n".into(), false),
        ("[database]\nunknown key = 1\n".into(), false),
        ("[Database]\ntdb mutexes = no\n".into(), true),
        ("[database]\nTDB mutexes = no\n".into(), false),
        (
            format!("[database]\nvolatile database directory = {d}/vol\n"),
            true,
        ),
        (
            format!("[database]\nvolatile database directory = {d}/nope\n"),
            false,
        ),
        ("[database]\nlock debug script = exec.sh\n".into(), true),
        (
            "[database]\nlock debug script = /elsewhere/exec.sh\n".into(),
            true,
        ),
        ("[database]\nlock debug script = noexec.sh\n".into(), false),
        ("[event]\ndebug script = missing.sh\n".into(), false),
        ("[logging]\nlocation = syslog:magic\n".into(), false),
        ("[logging]\nlocation = syslog:udp-rfc5424\n".into(), true),
        ("[logging]\nlocation = stderr\n".into(), false),
        (format!("[logging]\nlocation = file:{d}/nodir/log\n"), false),
        (format!("[logging]\nlocation = file:{d}/log\n"), true),
        ("[logging]\nlog level = high\n".into(), false),
        ("[logging]\nlog level = 10\n".into(), true),
        ("[logging]\nlog level = 11\n".into(), false),
        ("[legacy]\nscript log level = DEB\n".into(), true),
        ("[legacy]\nscript log level = loud\n".into(), false),
        (
            "[cluster]\nleader timeout = 0\nleader timeout = 5\n".into(),
            false,
        ),
    ];
    for (text, good) in cases {
        dir.write("ctdb.conf", &text);
        let (rc, _, err) = ctdb_config(dir.path(), &["validate"]);
        assert_eq!(
            rc == 0,
            good,
            "upstream disagrees with the test on {text:?}: {err}"
        );
        let r = Config::load_with(dir.path(), LoadOptions::validate());
        assert_eq!(
            r.is_ok(),
            good,
            "we disagree with upstream on {text:?}: {r:?}"
        );
    }
}

/// Random combinations of valid and default-equal settings, dumped by both.
#[test]
fn random_configs_dump_identically() {
    let dir = TempDir::new("random");
    let d = dir.path().display().to_string();
    dir.mkdir("v1");
    dir.mkdir("v2");
    dir.script("s.sh", true);
    let pool: Vec<(&str, &str, Vec<String>)> = vec![
        (
            "logging",
            "location",
            vec![
                "syslog".into(),
                "file:".into(),
                format!("file:{d}/l"),
                "syslog:nonblocking".into(),
            ],
        ),
        (
            "logging",
            "log level",
            vec!["ERROR".into(), "NOTICE".into(), "debug".into(), "3".into()],
        ),
        ("cluster", "transport", vec!["tcp".into()]),
        (
            "cluster",
            "node address",
            vec!["127.0.0.1".into(), "::1".into()],
        ),
        (
            "cluster",
            "cluster lock",
            vec!["/a/lock".into(), "!/bin/helper arg".into()],
        ),
        ("cluster", "recovery lock", vec!["/b/lock".into()]),
        (
            "cluster",
            "leader timeout",
            vec!["5".into(), "7".into(), "0x20".into(), "010".into()],
        ),
        (
            "cluster",
            "leader capability",
            vec!["true".into(), "false".into(), "Yes".into(), "no".into()],
        ),
        (
            "database",
            "volatile database directory",
            vec![
                format!("{d}/v1"),
                format!("{d}/v2"),
                "/var/lib/ctdb/volatile".into(),
            ],
        ),
        (
            "database",
            "state database directory",
            vec![format!("{d}/v2"), "/var/lib/ctdb/state".into()],
        ),
        ("database", "lock debug script", vec!["s.sh".into()]),
        (
            "database",
            "tdb mutexes",
            vec!["true".into(), "false".into()],
        ),
        ("event", "debug script", vec!["s.sh".into()]),
        ("failover", "disabled", vec!["true".into(), "false".into()]),
        (
            "legacy",
            "realtime scheduling",
            vec!["false".into(), "true".into()],
        ),
        ("legacy", "lmaster capability", vec!["no".into()]),
        ("legacy", "start as stopped", vec!["yes".into()]),
        (
            "legacy",
            "start as disabled",
            vec!["yes".into(), "no".into()],
        ),
        (
            "legacy",
            "script log level",
            vec!["ERROR".into(), "info".into(), "NOTICE".into()],
        ),
    ];
    let mut rng = Rng::new(seed());
    for round in 0..25 {
        let mut text = String::new();
        let n = 1 + rng.below(12);
        for _ in 0..n {
            let (s, k, vals) = rng.pick(&pool);
            let v = rng.pick(vals);
            let sec = if rng.below(4) == 0 {
                s.to_uppercase()
            } else {
                s.to_string()
            };
            let blank = if rng.below(3) == 0 { "\t " } else { " " };
            // Noise upstream's tokenizer must skip: comments, blank lines
            // with white space.
            match rng.below(5) {
                0 => text.push_str(" # comment = 1\n"),
                1 => text.push_str("\t; other\n"),
                2 => text.push_str(" \t \n"),
                _ => {}
            }
            // Sometimes split the value over a continuation line.
            let v = if v.len() > 2 && rng.below(3) == 0 {
                let cut = 1 + rng.below(v.len() - 1);
                if v.is_char_boundary(cut) {
                    format!("{}\\\n{}", &v[..cut], &v[cut..])
                } else {
                    v.clone()
                }
            } else {
                v.clone()
            };
            let eol = if rng.below(4) == 0 { "\r\n" } else { "\n" };
            text.push_str(&format!(
                "[{sec}]\n{blank}{k}{blank}={blank}{v}{blank}{eol}"
            ));
        }
        dir.write("ctdb.conf", &text);
        assert_eq!(ours(&dir), theirs(&dir), "round {round}, file:\n{text}");
    }
}
