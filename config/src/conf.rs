//! `ctdb.conf` (and its TOML twin `ctdb.toml`): the options, their
//! defaults, their validation, loading and the `ctdb-config dump` format.
//!
//! Semantics follow Samba 4.17's `common/conf.c` and the per-component
//! `*_conf.c` files:
//!
//! * sections are matched case-insensitively, keys case-sensitively;
//! * booleans are `true`/`yes`/`false`/`no` in any case;
//! * the one integer (`leader timeout`) takes C `strtol` base-0 syntax
//!   (`10`, `0x0a`, `012`) and must be 0..=INT_MAX before validation;
//! * an empty value is an error; a value equal to the option's current
//!   value (on a first load: its default) is skipped without validation and
//!   the option stays "default" (dump prints it commented out);
//! * all errors of a file are collected; if there is any, nothing of the
//!   file is applied.
//!
//! Deviations, all towards reporting a mistake instead of guessing:
//! upstream reads `10s` as 10 and `abc` as 0 for integers (we reject
//! trailing garbage), and silently falls back to all defaults on an
//! unterminated `[section` or a line starting with `=` (we report a syntax
//! error).
//!
//! Unknown sections and keys are errors in strict mode (what `ctdb-config
//! validate` does) and ignored with a warning in lenient mode (what ctdbd
//! and `ctdb-config dump` do); see [`LoadOptions`].

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use crate::error::{ConfigError, ErrorKind};
use crate::ini::{self, Item};
use crate::logging::{DebugLevel, LogLocation};
use crate::paths::{self, is_user_executable};

/// The type of an option's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OptionType {
    /// Text (possibly unset).
    String,
    /// A non-negative C int.
    Integer,
    /// true/false.
    Boolean,
}

/// An option's value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// A string option; `None` is "not set" (dumped as an empty value).
    String(Option<String>),
    /// An integer option.
    Integer(i32),
    /// A boolean option.
    Boolean(bool),
}

impl Value {
    fn ty(&self) -> OptionType {
        match self {
            Value::String(_) => OptionType::String,
            Value::Integer(_) => OptionType::Integer,
            Value::Boolean(_) => OptionType::Boolean,
        }
    }
}

impl fmt::Display for Value {
    /// As `ctdb-config get` prints it: unset strings are empty.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::String(s) => f.write_str(s.as_deref().unwrap_or("")),
            Value::Integer(i) => write!(f, "{i}"),
            Value::Boolean(b) => f.write_str(if *b { "true" } else { "false" }),
        }
    }
}

/// Which program's defaults to use. They differ in one place: ctdbd
/// defines `[logging] log level` with default NOTICE, while `ctdb-config`
/// and ctdb-eventd use ERROR.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Defaults {
    /// ctdbd's defaults (log level NOTICE).
    Ctdbd,
    /// `ctdb-config`'s defaults (log level ERROR).
    Tool,
}

/// How to load a configuration file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoadOptions {
    /// Ignore unknown sections and keys (with a warning) instead of
    /// failing.
    pub ignore_unknown: bool,
    /// Which defaults apply.
    pub defaults: Defaults,
}

impl LoadOptions {
    /// Strict loading with ctdbd's defaults: what [`Config::load`] uses.
    pub fn strict() -> LoadOptions {
        LoadOptions {
            ignore_unknown: false,
            defaults: Defaults::Ctdbd,
        }
    }

    /// Exactly what ctdbd 4.17 does: unknown sections/keys are ignored.
    pub fn ctdbd() -> LoadOptions {
        LoadOptions {
            ignore_unknown: true,
            defaults: Defaults::Ctdbd,
        }
    }

    /// What `ctdb-config dump` / `ctdb-config get` do.
    pub fn tool() -> LoadOptions {
        LoadOptions {
            ignore_unknown: true,
            defaults: Defaults::Tool,
        }
    }

    /// What `ctdb-config validate` does.
    pub fn validate() -> LoadOptions {
        LoadOptions {
            ignore_unknown: false,
            defaults: Defaults::Tool,
        }
    }
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions::strict()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Check {
    None,
    Transport,
    NodeAddress,
    RecoveryLock,
    LeaderTimeout,
    DbDir,
    EtcScript,
    LogLocation,
    LogLevel,
}

#[derive(Debug, Clone, Copy)]
enum Def {
    Str(Option<&'static str>),
    Int(i32),
    Bool(bool),
    LogLevel,
}

struct OptionDef {
    section: &'static str,
    key: &'static str,
    default: Def,
    check: Check,
}

const fn opt(section: &'static str, key: &'static str, default: Def, check: Check) -> OptionDef {
    OptionDef {
        section,
        key,
        default,
        check,
    }
}

/// Sections in definition (and dump) order.
pub const SECTIONS: [&str; 6] = [
    "logging", "cluster", "database", "event", "failover", "legacy",
];

/// Default `[logging] location`.
pub const DEFAULT_LOG_LOCATION: &str = "file:/var/log/ctdb/log.ctdb";

const OPTIONS: [OptionDef; 20] = [
    opt(
        "logging",
        "location",
        Def::Str(Some(DEFAULT_LOG_LOCATION)),
        Check::LogLocation,
    ),
    opt("logging", "log level", Def::LogLevel, Check::LogLevel),
    opt(
        "cluster",
        "transport",
        Def::Str(Some("tcp")),
        Check::Transport,
    ),
    opt(
        "cluster",
        "node address",
        Def::Str(None),
        Check::NodeAddress,
    ),
    opt("cluster", "cluster lock", Def::Str(None), Check::None),
    opt(
        "cluster",
        "recovery lock",
        Def::Str(None),
        Check::RecoveryLock,
    ),
    opt(
        "cluster",
        "leader timeout",
        Def::Int(5),
        Check::LeaderTimeout,
    ),
    opt("cluster", "leader capability", Def::Bool(true), Check::None),
    opt(
        "database",
        "volatile database directory",
        Def::Str(Some("/var/lib/ctdb/volatile")),
        Check::DbDir,
    ),
    opt(
        "database",
        "persistent database directory",
        Def::Str(Some("/var/lib/ctdb/persistent")),
        Check::DbDir,
    ),
    opt(
        "database",
        "state database directory",
        Def::Str(Some("/var/lib/ctdb/state")),
        Check::DbDir,
    ),
    opt(
        "database",
        "lock debug script",
        Def::Str(None),
        Check::EtcScript,
    ),
    opt("database", "tdb mutexes", Def::Bool(true), Check::None),
    opt("event", "debug script", Def::Str(None), Check::EtcScript),
    opt("failover", "disabled", Def::Bool(false), Check::None),
    opt(
        "legacy",
        "realtime scheduling",
        Def::Bool(true),
        Check::None,
    ),
    opt("legacy", "lmaster capability", Def::Bool(true), Check::None),
    opt("legacy", "start as stopped", Def::Bool(false), Check::None),
    opt("legacy", "start as disabled", Def::Bool(false), Check::None),
    opt(
        "legacy",
        "script log level",
        Def::Str(Some("ERROR")),
        Check::LogLevel,
    ),
];

fn default_value(def: &OptionDef, defaults: Defaults) -> Value {
    match def.default {
        Def::Str(s) => Value::String(s.map(str::to_string)),
        Def::Int(i) => Value::Integer(i),
        Def::Bool(b) => Value::Boolean(b),
        Def::LogLevel => Value::String(Some(
            match defaults {
                Defaults::Ctdbd => "NOTICE",
                Defaults::Tool => "ERROR",
            }
            .to_string(),
        )),
    }
}

fn find_section(name: &str) -> Option<&'static str> {
    SECTIONS
        .iter()
        .copied()
        .find(|s| s.eq_ignore_ascii_case(name))
}

fn find_option(section: &str, key: &str) -> Option<usize> {
    OPTIONS
        .iter()
        .position(|o| o.section == section && o.key == key)
}

/// Description of one option, for documentation and tools.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OptionInfo {
    /// Section name.
    pub section: &'static str,
    /// Key, with spaces.
    pub key: &'static str,
    /// Value type.
    pub ty: OptionType,
    /// Default value.
    pub default: Value,
}

/// All options in upstream's definition order.
pub fn options(defaults: Defaults) -> impl Iterator<Item = OptionInfo> {
    OPTIONS.iter().map(move |o| {
        let default = default_value(o, defaults);
        OptionInfo {
            section: o.section,
            key: o.key,
            ty: default.ty(),
            default,
        }
    })
}

/// Something that did not stop loading but that an operator may want to
/// know (ignored unknown keys, lines without `=`, deprecated options).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    /// The file.
    pub path: PathBuf,
    /// 1-based line.
    pub line: usize,
    /// What happened.
    pub message: String,
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.path.display(), self.line, self.message)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct OptState {
    value: Value,
    is_default: bool,
    temporary: bool,
}

/// The effective contents of `ctdb.conf`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    defaults: Defaults,
    etcdir: PathBuf,
    source: Option<PathBuf>,
    states: Vec<OptState>,
    warnings: Vec<Warning>,
}

fn parse_integer(s: &str) -> Option<i32> {
    // strtol(.., 0) syntax, whole string, 0..=INT_MAX.
    let t = s.trim_start_matches([' ', '\t', '\n', '\r', '\x0b', '\x0c']);
    let (neg, t) = match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    let (radix, digits) = if let Some(h) = t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        (16, h)
    } else if t.len() > 1 && t.starts_with('0') {
        (8, &t[1..])
    } else {
        (10, t)
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    let v = i64::from_str_radix(digits, radix).ok()?;
    let v = if neg { -v } else { v };
    i32::try_from(v).ok().filter(|v| *v >= 0)
}

fn parse_boolean(s: &str) -> Option<bool> {
    if s.eq_ignore_ascii_case("true") || s.eq_ignore_ascii_case("yes") {
        Some(true)
    } else if s.eq_ignore_ascii_case("false") || s.eq_ignore_ascii_case("no") {
        Some(false)
    } else {
        None
    }
}

fn value_from_str(ty: OptionType, s: &str) -> Option<Value> {
    match ty {
        OptionType::String => Some(Value::String(Some(s.to_string()))),
        OptionType::Integer => parse_integer(s).map(Value::Integer),
        OptionType::Boolean => parse_boolean(s).map(Value::Boolean),
    }
}

fn type_hint(ty: OptionType) -> &'static str {
    match ty {
        OptionType::String => "a string",
        OptionType::Integer => "a non-negative integer",
        OptionType::Boolean => "true, false, yes or no",
    }
}

/// Apply an option's validator. `Ok(Some(msg))` is a warning.
fn validate(def: &OptionDef, value: &Value, etcdir: &Path) -> Result<Option<String>, String> {
    let name = format!("[{}] -> {}", def.section, def.key);
    let s = match value {
        Value::String(s) => s.as_deref(),
        _ => None,
    };
    match def.check {
        Check::None => Ok(None),
        Check::Transport => match s {
            Some("tcp") | None => Ok(None),
            Some(t) => Err(format!(
                "invalid value for {name} = {t}: only \"tcp\" is supported"
            )),
        },
        Check::NodeAddress => match s {
            Some(a) if !crate::addr::is_inet_pton(a) => Err(format!(
                "invalid value for {name} = {a}: not an IPv4 or IPv6 address"
            )),
            _ => Ok(None),
        },
        Check::RecoveryLock => Ok(s.map(|_| {
            format!("configuration option {name} is deprecated, use [cluster] -> cluster lock")
        })),
        Check::LeaderTimeout => match value {
            Value::Integer(i) if *i <= 0 => Err(format!(
                "invalid value for {name} = {i}: must be greater than 0"
            )),
            _ => Ok(None),
        },
        Check::DbDir => match s {
            Some(d) if !Path::new(d).is_dir() => Err(format!("{} \"{d}\" does not exist", def.key)),
            _ => Ok(None),
        },
        Check::EtcScript => {
            let Some(script) = s else { return Ok(None) };
            let base = Path::new(script)
                .file_name()
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from(script));
            let full = etcdir.join(base);
            let what = def.key;
            match std::fs::metadata(&full) {
                Err(_) => Err(format!("{what} {} does not exist", full.display())),
                Ok(m) if !m.is_file() => Err(format!("{what} {} is not a file", full.display())),
                Ok(m) if !is_user_executable(&m) => {
                    Err(format!("{what} {} is not executable", full.display()))
                }
                Ok(_) => Ok(None),
            }
        }
        Check::LogLocation => match s {
            Some(l) => LogLocation::validate(l)
                .map(|_| None)
                .map_err(|e| format!("invalid value for {name} = {l}: {e}")),
            None => Ok(None),
        },
        Check::LogLevel => match s {
            Some(l) if DebugLevel::parse(l).is_none() => Err(format!(
                "invalid value for {name} = {l}: use ERROR, WARNING, NOTICE, INFO, DEBUG or 0-10"
            )),
            _ => Ok(None),
        },
    }
}

/// Collects one file's worth of option assignments before applying them.
struct Loader<'a> {
    config: &'a Config,
    path: &'a Path,
    opts: LoadOptions,
    pending: Vec<Option<Value>>,
    errors: Vec<ConfigError>,
    warnings: Vec<Warning>,
}

impl Loader<'_> {
    fn error(&mut self, line: usize, kind: ErrorKind, reason: String) {
        self.errors
            .push(ConfigError::parse(self.path, line, kind, reason));
    }

    fn warn(&mut self, line: usize, message: String) {
        self.warnings.push(Warning {
            path: self.path.to_path_buf(),
            line,
            message,
        });
    }

    fn unknown(&mut self, line: usize, kind: ErrorKind, reason: String) {
        if self.opts.ignore_unknown {
            self.warn(line, format!("ignoring {reason}"));
        } else {
            self.error(line, kind, reason);
        }
    }

    /// Offer a typed value for option `idx`, upstream style.
    fn offer(&mut self, line: usize, idx: usize, value: Value) {
        let def = &OPTIONS[idx];
        if self.config.states[idx].value == value {
            return;
        }
        match validate(def, &value, &self.config.etcdir) {
            Err(reason) => self.error(line, ErrorKind::ValidationFailed, reason),
            Ok(warning) => {
                if let Some(w) = warning {
                    self.warn(line, w);
                }
                self.pending[idx] = Some(value);
            }
        }
    }

    fn offer_text(&mut self, line: usize, section: &str, idx: usize, key: &str, text: &str) {
        let ty = self.config.states[idx].value.ty();
        if text.is_empty() {
            self.error(
                line,
                ErrorKind::EmptyValue,
                format!("empty value for [{section}] -> \"{key}\""),
            );
            return;
        }
        match value_from_str(ty, text) {
            None => self.error(
                line,
                ErrorKind::InvalidValue,
                format!(
                    "invalid value for [{section}] -> \"{key}\" = \"{text}\": expected {}",
                    type_hint(ty)
                ),
            ),
            Some(v) => self.offer(line, idx, v),
        }
    }

    fn finish(self) -> Result<Config, ConfigError> {
        let mut errors = self.errors;
        errors.sort_by_key(|e| e.line());
        if let Some(e) = ConfigError::collect(errors) {
            return Err(e);
        }
        let mut config = self.config.clone();
        for (i, p) in self.pending.into_iter().enumerate() {
            config.states[i] = match p {
                Some(v) => OptState {
                    value: v,
                    is_default: false,
                    temporary: false,
                },
                None => OptState {
                    value: default_value(&OPTIONS[i], config.defaults),
                    is_default: true,
                    temporary: false,
                },
            };
        }
        config.source = Some(self.path.to_path_buf());
        config.warnings = self.warnings;
        Ok(config)
    }
}

fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

type TomlDoc = BTreeMap<
    toml::Spanned<String>,
    toml::Spanned<BTreeMap<toml::Spanned<String>, toml::Spanned<toml::Value>>>,
>;

/// (line, section name, key and value; None for the table header itself)
type TomlItem<'a> = (usize, &'a str, Option<(&'a str, &'a toml::Value)>);

impl Config {
    /// All defaults, as if no configuration file existed.
    pub fn defaults(defaults: Defaults, etcdir: &Path) -> Config {
        Config {
            defaults,
            etcdir: etcdir.to_path_buf(),
            source: None,
            states: OPTIONS
                .iter()
                .map(|o| OptState {
                    value: default_value(o, defaults),
                    is_default: true,
                    temporary: false,
                })
                .collect(),
            warnings: Vec::new(),
        }
    }

    /// Load `base/ctdb.conf` or `base/ctdb.toml` strictly (unknown sections
    /// and keys are errors) with ctdbd's defaults. Neither file existing is
    /// fine (all defaults); both existing is an error. `base` is the
    /// directory upstream calls etcdir (see [`crate::Paths::etcdir`]); the
    /// debug scripts named in the file are looked up there too.
    pub fn load(base: &Path) -> Result<Config, ConfigError> {
        Config::load_with(base, LoadOptions::strict())
    }

    /// [`Config::load`] with explicit options.
    pub fn load_with(base: &Path, opts: LoadOptions) -> Result<Config, ConfigError> {
        let conf = base.join(paths::CONFIG_FILE);
        let toml = base.join(paths::TOML_CONFIG_FILE);
        let conf_data = read_optional(&conf)?;
        let toml_data = read_optional(&toml)?;
        match (conf_data, toml_data) {
            (Some(_), Some(_)) => Err(ConfigError::BothConfigFiles { conf, toml }),
            (Some(data), None) => Config::from_ini(&conf, &data, base, opts),
            (None, Some(data)) => {
                let text = String::from_utf8(data).map_err(|_| {
                    ConfigError::parse(&toml, 1, ErrorKind::Syntax, "file is not valid UTF-8")
                })?;
                Config::from_toml(&toml, &text, base, opts)
            }
            (None, None) => Ok(Config::defaults(opts.defaults, base)),
        }
    }

    /// Parse ini text. `path` is used in messages and recorded as the
    /// source; `etcdir` is where debug scripts are looked up.
    pub fn from_ini(
        path: &Path,
        data: &[u8],
        etcdir: &Path,
        opts: LoadOptions,
    ) -> Result<Config, ConfigError> {
        let base = Config::defaults(opts.defaults, etcdir);
        let mut l = Loader {
            config: &base,
            path,
            opts,
            pending: vec![None; OPTIONS.len()],
            errors: Vec::new(),
            warnings: Vec::new(),
        };
        // None before the first section header; Some(None) in an unknown one.
        let mut section: Option<Option<&'static str>> = None;
        for (line, item) in ini::parse(data, false) {
            match item {
                Item::Malformed(reason) => l.error(line, ErrorKind::Syntax, reason),
                Item::NoEquals(text) => l.warn(line, format!("ignoring line without '=': {text}")),
                Item::Section(name) => {
                    let found = find_section(&name);
                    if found.is_none() {
                        l.unknown(
                            line,
                            ErrorKind::UnknownSection,
                            format!("unknown section [{name}]"),
                        );
                    }
                    section = Some(found);
                }
                Item::Param { name, value } => {
                    let Some(Some(sec)) = section else {
                        let what = if section.is_none() {
                            format!("unknown section for option \"{name}\" (no [section] line before it)")
                        } else {
                            format!("unknown section for option \"{name}\"")
                        };
                        l.unknown(line, ErrorKind::OptionOutsideSection, what);
                        continue;
                    };
                    match find_option(sec, &name) {
                        None => l.unknown(
                            line,
                            ErrorKind::UnknownKey,
                            format!("unknown key \"{name}\" in section [{sec}]"),
                        ),
                        Some(idx) => l.offer_text(line, sec, idx, &name, &value),
                    }
                }
            }
        }
        l.finish()
    }

    /// Parse TOML text: sections are tables, keys are the same names
    /// (quoted, since they contain spaces), values are TOML strings,
    /// integers and booleans matching the option's type.
    pub fn from_toml(
        path: &Path,
        text: &str,
        etcdir: &Path,
        opts: LoadOptions,
    ) -> Result<Config, ConfigError> {
        let doc: TomlDoc = toml::from_str(text).map_err(|e| {
            let line = e.span().map(|s| line_of(text, s.start)).unwrap_or(1);
            ConfigError::parse(
                path,
                line,
                ErrorKind::Syntax,
                e.message().trim().to_string(),
            )
        })?;
        let base = Config::defaults(opts.defaults, etcdir);
        let mut l = Loader {
            config: &base,
            path,
            opts,
            pending: vec![None; OPTIONS.len()],
            errors: Vec::new(),
            warnings: Vec::new(),
        };
        // Process in file order so errors and quirks match the ini loader.
        let mut items: Vec<TomlItem<'_>> = Vec::new();
        for (sname, table) in &doc {
            items.push((line_of(text, sname.span().start), sname.get_ref(), None));
            for (k, v) in table.get_ref() {
                items.push((
                    line_of(text, k.span().start),
                    sname.get_ref(),
                    Some((k.get_ref(), v.get_ref())),
                ));
            }
        }
        items.sort_by_key(|i| i.0);
        for (line, sname, kv) in items {
            let sec = find_section(sname);
            match (sec, kv) {
                (None, None) => l.unknown(
                    line,
                    ErrorKind::UnknownSection,
                    format!("unknown section [{sname}]"),
                ),
                (None, Some((key, _))) => l.unknown(
                    line,
                    ErrorKind::OptionOutsideSection,
                    format!("unknown section for option \"{key}\""),
                ),
                (Some(_), None) => {}
                (Some(sec), Some((key, v))) => {
                    let Some(idx) = find_option(sec, key) else {
                        l.unknown(
                            line,
                            ErrorKind::UnknownKey,
                            format!("unknown key \"{key}\" in section [{sec}]"),
                        );
                        continue;
                    };
                    let ty = base.states[idx].value.ty();
                    let typed = match (ty, v) {
                        (OptionType::String, toml::Value::String(s)) if s.is_empty() => {
                            l.error(
                                line,
                                ErrorKind::EmptyValue,
                                format!("empty value for [{sec}] -> \"{key}\""),
                            );
                            continue;
                        }
                        (OptionType::String, toml::Value::String(s)) => {
                            Some(Value::String(Some(s.clone())))
                        }
                        (OptionType::Integer, toml::Value::Integer(i)) => i32::try_from(*i)
                            .ok()
                            .filter(|i| *i >= 0)
                            .map(Value::Integer),
                        (OptionType::Boolean, toml::Value::Boolean(b)) => Some(Value::Boolean(*b)),
                        _ => None,
                    };
                    match typed {
                        Some(val) => l.offer(line, idx, val),
                        None => l.error(
                            line,
                            ErrorKind::InvalidValue,
                            format!(
                                "invalid value for [{sec}] -> \"{key}\" = {v}: expected {}",
                                match ty {
                                    OptionType::Boolean => "a boolean (true or false)",
                                    t => type_hint(t),
                                }
                            ),
                        ),
                    }
                }
            }
        }
        l.finish()
    }

    /// The file this configuration was read from, if any.
    pub fn source(&self) -> Option<&Path> {
        self.source.as_deref()
    }

    /// Non-fatal findings from loading.
    pub fn warnings(&self) -> &[Warning] {
        &self.warnings
    }

    fn index(&self, section: &str, key: &str) -> Result<usize, ConfigError> {
        find_section(section)
            .and_then(|s| find_option(s, key))
            .ok_or_else(|| ConfigError::Option {
                name: format!("[{section}] -> \"{key}\""),
                kind: ErrorKind::UnknownKey,
                reason: "configuration option not defined".into(),
            })
    }

    /// The value of an option.
    pub fn get(&self, section: &str, key: &str) -> Result<&Value, ConfigError> {
        Ok(&self.states[self.index(section, key)?].value)
    }

    /// Whether an option still has its default value.
    pub fn is_default(&self, section: &str, key: &str) -> Result<bool, ConfigError> {
        Ok(self.states[self.index(section, key)?].is_default)
    }

    /// Set an option at run time (upstream's API mode: validated, and
    /// marked `# temporary` in [`Config::dump`]). Setting the current value
    /// again changes nothing.
    pub fn set(&mut self, section: &str, key: &str, value: Value) -> Result<(), ConfigError> {
        let idx = self.index(section, key)?;
        let def = &OPTIONS[idx];
        let name = format!("[{}] -> {}", def.section, def.key);
        let st = &self.states[idx];
        if st.value.ty() != value.ty() {
            return Err(ConfigError::Option {
                name,
                kind: ErrorKind::InvalidValue,
                reason: format!("expected {}", type_hint(st.value.ty())),
            });
        }
        if let Value::String(Some(s)) = &value {
            if s.is_empty() {
                return Err(ConfigError::Option {
                    name,
                    kind: ErrorKind::EmptyValue,
                    reason: "empty value".into(),
                });
            }
        }
        if st.value == value {
            return Ok(());
        }
        validate(def, &value, &self.etcdir).map_err(|reason| ConfigError::Option {
            name,
            kind: ErrorKind::ValidationFailed,
            reason,
        })?;
        self.states[idx] = OptState {
            value,
            is_default: false,
            temporary: true,
        };
        Ok(())
    }

    /// [`Config::set`] from text, converted as the file loader does.
    pub fn set_str(&mut self, section: &str, key: &str, text: &str) -> Result<(), ConfigError> {
        let idx = self.index(section, key)?;
        let ty = self.states[idx].value.ty();
        let value = value_from_str(ty, text).ok_or_else(|| ConfigError::Option {
            name: format!("[{}] -> {}", OPTIONS[idx].section, OPTIONS[idx].key),
            kind: ErrorKind::InvalidValue,
            reason: format!("invalid value \"{text}\": expected {}", type_hint(ty)),
        })?;
        self.set(section, key, value)
    }

    /// The effective configuration in exactly the format of
    /// `ctdb-config dump`: defaults commented out, unset strings empty,
    /// run-time changes marked `# temporary`.
    pub fn dump(&self) -> String {
        let mut out = String::new();
        for section in SECTIONS {
            out.push('[');
            out.push_str(section);
            out.push_str("]\n");
            for (def, st) in OPTIONS.iter().zip(&self.states) {
                if def.section != section {
                    continue;
                }
                let commented = st.is_default || st.value == Value::String(None);
                out.push('\t');
                if commented {
                    out.push_str("# ");
                }
                out.push_str(def.key);
                out.push_str(" = ");
                out.push_str(&st.value.to_string());
                if st.temporary {
                    out.push_str(" # temporary");
                }
                out.push('\n');
            }
        }
        out
    }

    /// The same information as [`Config::dump`], as a `ctdb.toml` that
    /// loads back to an equivalent configuration.
    pub fn dump_toml(&self) -> String {
        let mut out = String::new();
        for section in SECTIONS {
            out.push_str(&format!("[{section}]\n"));
            for (def, st) in OPTIONS.iter().zip(&self.states) {
                if def.section != section {
                    continue;
                }
                let v = match &st.value {
                    Value::String(None) => String::from("\"\""),
                    Value::String(Some(s)) => toml::Value::String(s.clone()).to_string(),
                    Value::Integer(i) => i.to_string(),
                    Value::Boolean(b) => b.to_string(),
                };
                let commented = st.is_default || st.value == Value::String(None);
                out.push_str(&format!(
                    "{}\"{}\" = {}\n",
                    if commented { "# " } else { "" },
                    def.key,
                    v
                ));
            }
        }
        out
    }

    fn string(&self, idx: usize) -> Option<&str> {
        match &self.states[idx].value {
            Value::String(s) => s.as_deref(),
            _ => None,
        }
    }

    fn boolean(&self, idx: usize) -> bool {
        matches!(self.states[idx].value, Value::Boolean(true))
    }

    /// `[logging] location` as written.
    pub fn log_location_str(&self) -> &str {
        self.string(0).unwrap_or(DEFAULT_LOG_LOCATION)
    }

    /// `[logging] location`, parsed.
    pub fn log_location(&self) -> LogLocation {
        LogLocation::parse(self.log_location_str()).unwrap_or(LogLocation::Stderr)
    }

    /// `[logging] log level`, parsed.
    pub fn log_level(&self) -> DebugLevel {
        self.string(1)
            .and_then(DebugLevel::parse)
            .unwrap_or(DebugLevel::ERROR)
    }

    /// `[cluster] transport` (always "tcp" after validation).
    pub fn transport(&self) -> &str {
        self.string(2).unwrap_or("tcp")
    }

    /// `[cluster] node address`.
    pub fn node_address(&self) -> Option<IpAddr> {
        self.string(3).and_then(crate::addr::parse_ip)
    }

    /// `[cluster] cluster lock` as written (not falling back).
    pub fn cluster_lock_option(&self) -> Option<&str> {
        self.string(4)
    }

    /// `[cluster] recovery lock` (deprecated spelling).
    pub fn recovery_lock_option(&self) -> Option<&str> {
        self.string(5)
    }

    /// The cluster lock ctdbd uses: `cluster lock`, else the deprecated
    /// `recovery lock`, else none. A value starting with `!` is a helper
    /// command line, anything else a file for fcntl locking.
    pub fn cluster_lock(&self) -> Option<&str> {
        self.cluster_lock_option().or(self.recovery_lock_option())
    }

    /// `[cluster] leader timeout` in seconds.
    pub fn leader_timeout(&self) -> u32 {
        match self.states[6].value {
            Value::Integer(i) => i.max(0) as u32,
            _ => 5,
        }
    }

    /// `[cluster] leader capability`.
    pub fn leader_capability(&self) -> bool {
        self.boolean(7)
    }

    /// `[database] volatile database directory`.
    pub fn volatile_db_dir(&self) -> &Path {
        Path::new(self.string(8).unwrap_or("/var/lib/ctdb/volatile"))
    }

    /// `[database] persistent database directory`.
    pub fn persistent_db_dir(&self) -> &Path {
        Path::new(self.string(9).unwrap_or("/var/lib/ctdb/persistent"))
    }

    /// `[database] state database directory`.
    pub fn state_db_dir(&self) -> &Path {
        Path::new(self.string(10).unwrap_or("/var/lib/ctdb/state"))
    }

    /// `[database] lock debug script` (exported to helpers as
    /// `CTDB_DEBUG_LOCKS` when set).
    pub fn lock_debug_script(&self) -> Option<&str> {
        self.string(11)
    }

    /// `[database] tdb mutexes`.
    pub fn tdb_mutexes(&self) -> bool {
        self.boolean(12)
    }

    /// `[event] debug script`.
    pub fn event_debug_script(&self) -> Option<&str> {
        self.string(13)
    }

    /// `[failover] disabled`.
    pub fn failover_disabled(&self) -> bool {
        self.boolean(14)
    }

    /// `[legacy] realtime scheduling`.
    pub fn realtime_scheduling(&self) -> bool {
        self.boolean(15)
    }

    /// `[legacy] lmaster capability`.
    pub fn lmaster_capability(&self) -> bool {
        self.boolean(16)
    }

    /// `[legacy] start as stopped`.
    pub fn start_as_stopped(&self) -> bool {
        self.boolean(17)
    }

    /// `[legacy] start as disabled`.
    pub fn start_as_disabled(&self) -> bool {
        self.boolean(18)
    }

    /// `[legacy] script log level`, parsed.
    pub fn script_log_level(&self) -> DebugLevel {
        self.string(19)
            .and_then(DebugLevel::parse)
            .unwrap_or(DebugLevel::ERROR)
    }
}

fn read_optional(path: &Path) -> Result<Option<Vec<u8>>, ConfigError> {
    match std::fs::read(path) {
        Ok(d) => Ok(Some(d)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(ConfigError::io(path, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_like_strtol_but_whole() {
        assert_eq!(parse_integer("10"), Some(10));
        assert_eq!(parse_integer("0x10"), Some(16));
        assert_eq!(parse_integer("010"), Some(8));
        assert_eq!(parse_integer("0"), Some(0));
        assert_eq!(parse_integer("+7"), Some(7));
        assert_eq!(parse_integer("-5"), None);
        assert_eq!(parse_integer("10s"), None);
        assert_eq!(parse_integer("2147483648"), None);
        assert_eq!(parse_integer(""), None);
        assert_eq!(parse_integer("08"), None);
    }

    #[test]
    fn accessors_index_match_table() {
        let names: Vec<_> = OPTIONS.iter().map(|o| o.key).collect();
        assert_eq!(names[0], "location");
        assert_eq!(names[6], "leader timeout");
        assert_eq!(names[11], "lock debug script");
        assert_eq!(names[13], "debug script");
        assert_eq!(names[19], "script log level");
    }
}
