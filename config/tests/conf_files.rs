//! ctdb.conf / ctdb.toml loading: every key, defaults, each kind of error
//! with its line, lenient mode, TOML equivalence, overrides.

mod common;

use std::net::IpAddr;
use std::path::Path;

use common::TempDir;
use ctdb_config::{
    Config, ConfigError, ConfigOverrides, DebugLevel, ErrorKind, LoadOptions, LogLocation, Paths,
    SyslogMethod, Value,
};

fn all_keys_conf(d: &str) -> String {
    format!(
        "[logging]\n\tlocation = syslog:udp\n\tlog level = INFO\n\
         [cluster]\n\ttransport = tcp\n\tnode address = 192.168.1.5\n\tcluster lock = !/usr/bin/helper x\n\
         \trecovery lock = /old/lock\n\tleader timeout = 17\n\tleader capability = false\n\
         [database]\n\tvolatile database directory = {d}/vol\n\tpersistent database directory = {d}/per\n\
         \tstate database directory = {d}/sta\n\tlock debug script = dbg.sh\n\ttdb mutexes = false\n\
         [event]\n\tdebug script = dbg.sh\n\
         [failover]\n\tdisabled = true\n\
         [legacy]\n\trealtime scheduling = false\n\tlmaster capability = false\n\tstart as stopped = true\n\
         \tstart as disabled = true\n\tscript log level = DEBUG\n"
    )
}

fn all_keys_toml(d: &str) -> String {
    format!(
        "[logging]\nlocation = \"syslog:udp\"\n\"log level\" = \"INFO\"\n\
         [cluster]\ntransport = \"tcp\"\n\"node address\" = \"192.168.1.5\"\n\"cluster lock\" = \"!/usr/bin/helper x\"\n\
         \"recovery lock\" = \"/old/lock\"\n\"leader timeout\" = 17\n\"leader capability\" = false\n\
         [database]\n\"volatile database directory\" = \"{d}/vol\"\n\"persistent database directory\" = \"{d}/per\"\n\
         \"state database directory\" = \"{d}/sta\"\n\"lock debug script\" = \"dbg.sh\"\n\"tdb mutexes\" = false\n\
         [event]\n\"debug script\" = \"dbg.sh\"\n\
         [failover]\ndisabled = true\n\
         [legacy]\n\"realtime scheduling\" = false\n\"lmaster capability\" = false\n\"start as stopped\" = true\n\
         \"start as disabled\" = true\n\"script log level\" = \"DEBUG\"\n"
    )
}

fn setup_dirs(dir: &TempDir) {
    dir.mkdir("vol");
    dir.mkdir("per");
    dir.mkdir("sta");
    dir.script("dbg.sh", true);
}

fn check_all_keys(c: &Config, d: &Path) {
    assert_eq!(c.log_location(), LogLocation::Syslog(SyslogMethod::Udp));
    assert_eq!(c.log_location_str(), "syslog:udp");
    assert_eq!(c.log_level(), DebugLevel::INFO);
    assert_eq!(c.transport(), "tcp");
    assert_eq!(
        c.node_address(),
        Some("192.168.1.5".parse::<IpAddr>().unwrap())
    );
    assert_eq!(c.cluster_lock(), Some("!/usr/bin/helper x"));
    assert_eq!(c.cluster_lock_option(), Some("!/usr/bin/helper x"));
    assert_eq!(c.recovery_lock_option(), Some("/old/lock"));
    assert_eq!(c.leader_timeout(), 17);
    assert!(!c.leader_capability());
    assert_eq!(c.volatile_db_dir(), d.join("vol"));
    assert_eq!(c.persistent_db_dir(), d.join("per"));
    assert_eq!(c.state_db_dir(), d.join("sta"));
    assert_eq!(c.lock_debug_script(), Some("dbg.sh"));
    assert!(!c.tdb_mutexes());
    assert_eq!(c.event_debug_script(), Some("dbg.sh"));
    assert!(c.failover_disabled());
    assert!(!c.realtime_scheduling());
    assert!(!c.lmaster_capability());
    assert!(c.start_as_stopped());
    assert!(c.start_as_disabled());
    assert_eq!(c.script_log_level(), DebugLevel::DEBUG);
    // Every option is non-default now, except transport whose only valid
    // value is its default.
    for o in ctdb_config::options(ctdb_config::Defaults::Ctdbd) {
        if o.key == "transport" {
            assert!(c.is_default(o.section, o.key).unwrap());
            continue;
        }
        assert!(
            !c.is_default(o.section, o.key).unwrap(),
            "{} {}",
            o.section,
            o.key
        );
    }
    // The deprecated key is reported as a warning.
    assert!(c
        .warnings()
        .iter()
        .any(|w| w.message.contains("deprecated")));
}

#[test]
fn every_key_parsed_from_ini() {
    let dir = TempDir::new("allkeys");
    setup_dirs(&dir);
    dir.write(
        "ctdb.conf",
        &all_keys_conf(&dir.path().display().to_string()),
    );
    let c = Config::load(dir.path()).unwrap();
    check_all_keys(&c, dir.path());
    assert_eq!(c.source(), Some(dir.path().join("ctdb.conf").as_path()));
}

#[test]
fn every_key_parsed_from_toml_and_dumps_the_same() {
    let dir = TempDir::new("allkeys-toml");
    setup_dirs(&dir);
    let d = dir.path().display().to_string();
    dir.write("ctdb.toml", &all_keys_toml(&d));
    let from_toml = Config::load(dir.path()).unwrap();
    check_all_keys(&from_toml, dir.path());
    std::fs::remove_file(dir.path().join("ctdb.toml")).unwrap();
    dir.write("ctdb.conf", &all_keys_conf(&d));
    let from_ini = Config::load(dir.path()).unwrap();
    assert_eq!(from_ini.dump(), from_toml.dump());
    // dump_toml round-trips through the TOML loader.
    std::fs::remove_file(dir.path().join("ctdb.conf")).unwrap();
    dir.write("ctdb.toml", &from_ini.dump_toml());
    let again = Config::load(dir.path()).unwrap();
    assert_eq!(again.dump(), from_ini.dump());
}

#[test]
fn toml_partial_equivalence_and_defaults() {
    let dir = TempDir::new("toml-partial");
    dir.write(
        "ctdb.toml",
        "[CLUSTER]\n\"leader timeout\" = 5\n\"node address\" = \"::1\"\n[legacy]\n\"start as disabled\" = true\n",
    );
    let t = Config::load(dir.path()).unwrap();
    std::fs::remove_file(dir.path().join("ctdb.toml")).unwrap();
    dir.write(
        "ctdb.conf",
        "[CLUSTER]\nleader timeout = 5\nnode address = ::1\n[legacy]\nstart as disabled = yes\n",
    );
    let i = Config::load(dir.path()).unwrap();
    assert_eq!(t.dump(), i.dump());
    // Equal to the default: stays default (commented in dump).
    assert!(t.is_default("cluster", "leader timeout").unwrap());
    assert!(t.dump().contains("\t# leader timeout = 5\n"));
    assert!(t.dump().contains("\tnode address = ::1\n"));
}

#[test]
fn both_files_is_an_error_naming_both() {
    let dir = TempDir::new("both");
    dir.write("ctdb.conf", "");
    dir.write("ctdb.toml", "");
    let e = Config::load(dir.path()).unwrap_err();
    assert!(matches!(e, ConfigError::BothConfigFiles { .. }));
    let msg = e.to_string();
    assert!(
        msg.contains("ctdb.conf") && msg.contains("ctdb.toml"),
        "{msg}"
    );
}

#[test]
fn defaults_without_any_file() {
    let dir = TempDir::new("defaults");
    let c = Config::load(dir.path()).unwrap();
    assert_eq!(c.source(), None);
    assert_eq!(c.log_location_str(), "file:/var/log/ctdb/log.ctdb");
    assert_eq!(
        c.log_location(),
        LogLocation::File("/var/log/ctdb/log.ctdb".into())
    );
    // ctdbd's default log level is NOTICE, the tool's ERROR.
    assert_eq!(c.log_level(), DebugLevel::NOTICE);
    let tool = Config::load_with(dir.path(), LoadOptions::tool()).unwrap();
    assert_eq!(tool.log_level(), DebugLevel::ERROR);
    assert_eq!(c.transport(), "tcp");
    assert_eq!(c.node_address(), None);
    assert_eq!(c.cluster_lock(), None);
    assert_eq!(c.leader_timeout(), 5);
    assert!(c.leader_capability());
    assert_eq!(c.volatile_db_dir(), Path::new("/var/lib/ctdb/volatile"));
    assert_eq!(c.persistent_db_dir(), Path::new("/var/lib/ctdb/persistent"));
    assert_eq!(c.state_db_dir(), Path::new("/var/lib/ctdb/state"));
    assert_eq!(c.lock_debug_script(), None);
    assert!(c.tdb_mutexes());
    assert_eq!(c.event_debug_script(), None);
    assert!(!c.failover_disabled());
    assert!(c.realtime_scheduling());
    assert!(c.lmaster_capability());
    assert!(!c.start_as_stopped());
    assert!(!c.start_as_disabled());
    assert_eq!(c.script_log_level(), DebugLevel::ERROR);
    assert_eq!(
        c.get("cluster", "node address").unwrap(),
        &Value::String(None)
    );
}

/// (file text, expected line, expected kind, text the message must contain)
fn bad_ini_cases(d: &str) -> Vec<(String, usize, ErrorKind, &'static str)> {
    vec![
        (
            "[cluster]\n\n[foobar]\n".into(),
            3,
            ErrorKind::UnknownSection,
            "unknown section [foobar]",
        ),
        (
            "# c\nfoobar = cat\n".into(),
            2,
            ErrorKind::OptionOutsideSection,
            "foobar",
        ),
        (
            "[cluster]\nfoo = 1\n".into(),
            2,
            ErrorKind::UnknownKey,
            "unknown key \"foo\" in section [cluster]",
        ),
        (
            "[cluster]\n\n\nnode address =\n".into(),
            4,
            ErrorKind::EmptyValue,
            "empty value",
        ),
        (
            "[cluster]\nleader timeout = -5\n".into(),
            2,
            ErrorKind::InvalidValue,
            "\"-5\"",
        ),
        (
            "[cluster]\nleader timeout = 10s\n".into(),
            2,
            ErrorKind::InvalidValue,
            "10s",
        ),
        (
            "[cluster]\nleader capability = maybe\n".into(),
            2,
            ErrorKind::InvalidValue,
            "maybe",
        ),
        (
            "[cluster]\nleader timeout = 0\n".into(),
            2,
            ErrorKind::ValidationFailed,
            "greater than 0",
        ),
        (
            "[cluster]\ntransport = ib\n".into(),
            2,
            ErrorKind::ValidationFailed,
            "tcp",
        ),
        (
            "[cluster]\nnode address = 10.1.2.3:123\n".into(),
            2,
            ErrorKind::ValidationFailed,
            "10.1.2.3:123",
        ),
        (
            format!("[database]\n\tvolatile database directory = {d}/missing\n"),
            2,
            ErrorKind::ValidationFailed,
            "does not exist",
        ),
        (
            "[database]\nlock debug script = nope.sh\n".into(),
            2,
            ErrorKind::ValidationFailed,
            "nope.sh does not exist",
        ),
        (
            "[event]\ndebug script = noexec.sh\n".into(),
            2,
            ErrorKind::ValidationFailed,
            "is not executable",
        ),
        (
            "[event]\ndebug script = adir\n".into(),
            2,
            ErrorKind::ValidationFailed,
            "is not a file",
        ),
        (
            "[logging]\nlocation = syslog:magic\n".into(),
            2,
            ErrorKind::ValidationFailed,
            "magic",
        ),
        (
            "[logging]\nlog level = high\n".into(),
            2,
            ErrorKind::ValidationFailed,
            "high",
        ),
        (
            "[legacy]\nscript log level = loud\n".into(),
            2,
            ErrorKind::ValidationFailed,
            "loud",
        ),
        ("[cluster\n".into(), 1, ErrorKind::Syntax, "']'"),
        ("[cluster]\n= 5\n".into(), 2, ErrorKind::Syntax, "key name"),
        (
            "[cluster]\nnode address = \u{0}\n".into(),
            2,
            ErrorKind::EmptyValue,
            "empty",
        ),
        (
            "[cluster]\ncluster lock = a\\\n\\\n\nleader timeout = 0\n".into(),
            5,
            ErrorKind::ValidationFailed,
            "leader timeout",
        ),
    ]
}

#[test]
fn bad_ini_files_report_kind_and_line() {
    let dir = TempDir::new("bad-ini");
    dir.script("noexec.sh", false);
    dir.mkdir("adir");
    let d = dir.path().display().to_string();
    for (text, line, kind, needle) in bad_ini_cases(&d) {
        dir.write("ctdb.conf", &text);
        let e = Config::load(dir.path()).unwrap_err();
        let msg = e.to_string();
        assert_eq!(e.kind(), Some(kind), "{text:?}: {msg}");
        assert_eq!(e.line(), Some(line), "{text:?}: {msg}");
        assert!(msg.contains(needle), "{text:?}: {msg}");
        let prefix = format!("{}:{}: ", dir.path().join("ctdb.conf").display(), line);
        assert!(msg.starts_with(&prefix), "{msg} should start with {prefix}");
    }
}

#[test]
fn display_format_matches_the_documented_one() {
    let dir = TempDir::new("display");
    let text = "[cluster]\n".to_string() + &"# pad\n".repeat(10) + "foo = 1\n";
    dir.write("ctdb.conf", &text);
    let msg = Config::load(dir.path()).unwrap_err().to_string();
    assert!(
        msg.ends_with("ctdb.conf:12: unknown key \"foo\" in section [cluster]"),
        "{msg}"
    );
}

#[test]
fn all_errors_reported_and_nothing_applied() {
    let dir = TempDir::new("several");
    dir.write(
        "ctdb.conf",
        "[cluster]\nleader timeout = 0\nnode address = 10.0.0.1\n[nope]\n[legacy]\nstart as stopped = perhaps\n",
    );
    let e = Config::load(dir.path()).unwrap_err();
    let lines: Vec<_> = e.errors().iter().map(|e| e.line().unwrap()).collect();
    assert_eq!(lines, vec![2, 4, 6]);
    assert_eq!(e.to_string().lines().count(), 3);
}

#[test]
fn lenient_mode_ignores_unknown_with_warnings_only() {
    let dir = TempDir::new("lenient");
    dir.write(
        "ctdb.conf",
        "stray = 1\n[unknown]\nx = 1\n[cluster]\nfoo = 1\nleader timeout = 9\njust text\n",
    );
    assert!(Config::load(dir.path()).is_err());
    let c = Config::load_with(dir.path(), LoadOptions::ctdbd()).unwrap();
    assert_eq!(c.leader_timeout(), 9);
    let warned: Vec<_> = c.warnings().iter().map(|w| w.line).collect();
    assert_eq!(warned, vec![1, 2, 3, 5, 7]);
    // Bad values are still errors in lenient mode.
    dir.write("ctdb.conf", "[cluster]\nleader timeout = 0\n");
    assert!(Config::load_with(dir.path(), LoadOptions::ctdbd()).is_err());
    // A line without '=' alone is fine even when strict.
    dir.write("ctdb.conf", "[cluster]\njust text\n");
    assert!(Config::load(dir.path()).is_ok());
}

#[test]
fn bad_toml_files_report_kind_and_line() {
    let dir = TempDir::new("bad-toml");
    let cases: Vec<(&str, usize, ErrorKind)> = vec![
        (
            "[cluster]\n\"leader timeout\" = \"5\"\n",
            2,
            ErrorKind::InvalidValue,
        ),
        (
            "[cluster]\n\"leader timeout\" = -1\n",
            2,
            ErrorKind::InvalidValue,
        ),
        (
            "[cluster]\n\"leader timeout\" = 0\n",
            2,
            ErrorKind::ValidationFailed,
        ),
        (
            "[cluster]\n\"leader capability\" = \"yes\"\n",
            2,
            ErrorKind::InvalidValue,
        ),
        (
            "[cluster]\n\n\"node address\" = \"\"\n",
            3,
            ErrorKind::EmptyValue,
        ),
        ("[cluster]\nfoo = 1\n", 2, ErrorKind::UnknownKey),
        ("[a]\n[foo]\n", 1, ErrorKind::UnknownSection),
        (
            "[cluster]\ntransport = \"ib\"\n",
            2,
            ErrorKind::ValidationFailed,
        ),
        ("[cluster]\n\"leader timeout\" = \n", 2, ErrorKind::Syntax),
        ("x = 1\n", 1, ErrorKind::Syntax),
    ];
    for (text, line, kind) in cases {
        dir.write("ctdb.toml", text);
        let e = Config::load(dir.path()).unwrap_err();
        assert_eq!(
            (e.line(), e.kind()),
            (Some(line), Some(kind)),
            "{text:?}: {e}"
        );
        assert!(e.to_string().contains("ctdb.toml:"), "{e}");
    }
}

#[test]
fn run_time_set_validates_and_marks_temporary() {
    let dir = TempDir::new("set");
    let mut c = Config::load_with(dir.path(), LoadOptions::tool()).unwrap();
    c.set_str("cluster", "leader timeout", "12").unwrap();
    assert!(c.dump().contains("\tleader timeout = 12 # temporary\n"));
    assert_eq!(
        c.set_str("cluster", "leader timeout", "0")
            .unwrap_err()
            .kind(),
        Some(ErrorKind::ValidationFailed)
    );
    assert_eq!(
        c.set("cluster", "leader timeout", Value::Boolean(true))
            .unwrap_err()
            .kind(),
        Some(ErrorKind::InvalidValue)
    );
    assert_eq!(
        c.set_str("cluster", "nonsense", "1").unwrap_err().kind(),
        Some(ErrorKind::UnknownKey)
    );
    // Same value again: no change, still default, not temporary.
    c.set_str("legacy", "start as stopped", "no").unwrap();
    assert!(c.dump().contains("\t# start as stopped = false\n"));
}

#[test]
fn overrides_apply_to_config_and_paths() {
    let dir = TempDir::new("overrides");
    let vol = dir.mkdir("vol");
    let mut c = Config::load(dir.path()).unwrap();
    let mut p = Paths::under(dir.path());
    let o = ConfigOverrides {
        dbdir: Some(vol.clone()),
        listen: Some("127.0.0.3".into()),
        logfile: Some(dir.path().join("log.ctdb")),
        nlist: Some("/x/nodes".into()),
        no_lmaster: true,
        no_recmaster: true,
        nosetsched: true,
        public_addresses: Some("/x/pa".into()),
        reclock: Some("/x/lock".into()),
        socket: Some("/x/sock".into()),
        start_as_disabled: true,
        transport: Some("tcp".into()),
        debug_level: Some("DEBUG".into()),
        event_script_dir: Some("/x/events".into()),
        ..Default::default()
    };
    o.apply(&mut c, &mut p).unwrap();
    assert_eq!(c.volatile_db_dir(), vol);
    assert_eq!(c.node_address(), Some("127.0.0.3".parse().unwrap()));
    assert_eq!(
        c.log_location(),
        LogLocation::File(dir.path().join("log.ctdb"))
    );
    assert!(!c.lmaster_capability() && !c.leader_capability() && !c.realtime_scheduling());
    assert!(c.start_as_disabled());
    assert_eq!(c.cluster_lock(), Some("/x/lock"));
    assert_eq!(c.log_level(), DebugLevel::DEBUG);
    assert_eq!(p.nodes_file(), Path::new("/x/nodes"));
    assert_eq!(p.public_addresses_file(), Path::new("/x/pa"));
    assert_eq!(p.ctdbd_socket(), Path::new("/x/sock"));
    assert_eq!(p.event_script_dir(), Path::new("/x/events"));
    // A bad override is rejected by the option's validator.
    let bad = ConfigOverrides {
        transport: Some("ib".into()),
        ..Default::default()
    };
    assert!(bad.apply(&mut c, &mut p).is_err());
}
