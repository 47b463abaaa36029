//! Logging: a small `tracing` subscriber of our own that writes upstream
//! ctdbd's log lines.
//!
//! Why our own: only the `tracing` facade is allowed, and ctdbd's format is
//! simple and fixed. File and stderr lines look like
//! `2026/11/24 05:31:19.123456 ctdbd[1234]: message`; syslog lines are sent
//! to /dev/log as `<priority>ctdbd[pid]: message` with facility DAEMON.
//!
//! Levels are upstream's: ERROR (0), WARNING (1), NOTICE (3), INFO (5) and
//! DEBUG (10). The `tracing` macros map onto them as
//! `error!`→ERROR, `warn!`→WARNING, `info!`→NOTICE, `debug!`→INFO,
//! `trace!`→DEBUG, so the default NOTICE shows `info!` and above.

use std::fmt::{self, Write as _};
use std::fs::File;
use std::io::Write as _;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Metadata, Subscriber};

use crate::error::DaemonError;
use crate::sys;

/// Upstream's debug levels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum DebugLevel {
    Error = 0,
    Warning = 1,
    Notice = 3,
    Info = 5,
    Debug = 10,
}

impl DebugLevel {
    /// Parses a level as upstream does: a number 0..=10, or a name (or a
    /// prefix of one, case-insensitive).
    pub fn parse(s: &str) -> Result<DebugLevel, String> {
        let s = s.trim();
        if let Ok(n) = s.parse::<u32>() {
            return match n {
                0 => Ok(DebugLevel::Error),
                1 | 2 => Ok(DebugLevel::Warning),
                3 | 4 => Ok(DebugLevel::Notice),
                5..=9 => Ok(DebugLevel::Info),
                10 => Ok(DebugLevel::Debug),
                _ => Err(format!("debug level {n} outside 0..=10")),
            };
        }
        if s.is_empty() {
            return Err("empty debug level".into());
        }
        let names = [
            ("ERROR", DebugLevel::Error),
            ("WARNING", DebugLevel::Warning),
            ("NOTICE", DebugLevel::Notice),
            ("INFO", DebugLevel::Info),
            ("DEBUG", DebugLevel::Debug),
        ];
        names
            .iter()
            .find(|(n, _)| n.len() >= s.len() && n[..s.len()].eq_ignore_ascii_case(s))
            .map(|(_, l)| *l)
            .ok_or_else(|| {
                format!(
                    "unknown debug level {s:?} (use ERROR, WARNING, NOTICE, INFO, DEBUG or 0-10)"
                )
            })
    }

    pub fn name(self) -> &'static str {
        match self {
            DebugLevel::Error => "ERROR",
            DebugLevel::Warning => "WARNING",
            DebugLevel::Notice => "NOTICE",
            DebugLevel::Info => "INFO",
            DebugLevel::Debug => "DEBUG",
        }
    }

    /// The upstream level of a `tracing` level.
    pub fn of(level: &Level) -> DebugLevel {
        match *level {
            Level::ERROR => DebugLevel::Error,
            Level::WARN => DebugLevel::Warning,
            Level::INFO => DebugLevel::Notice,
            Level::DEBUG => DebugLevel::Info,
            Level::TRACE => DebugLevel::Debug,
        }
    }

    /// syslog severity.
    fn syslog_severity(self) -> u8 {
        match self {
            DebugLevel::Error => 3,
            DebugLevel::Warning => 4,
            DebugLevel::Notice => 5,
            DebugLevel::Info => 6,
            DebugLevel::Debug => 7,
        }
    }
}

/// Where log lines go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogTarget {
    Stderr,
    File(PathBuf),
    Syslog,
}

enum Sink {
    Stderr,
    File(File, PathBuf),
    /// Connected lazily: like syslog(3), a missing /dev/log (containers,
    /// early boot) drops lines instead of stopping the daemon.
    Syslog(Option<UnixDatagram>, PathBuf),
}

/// Set by [`reopen`] (SIGHUP); the next line written reopens the log file,
/// so logrotate can move it away as with upstream.
static REOPEN: AtomicBool = AtomicBool::new(false);

/// The level set at run time (SET_DEBUG), or -1 for the start-up level.
static RUNTIME_LEVEL: AtomicI32 = AtomicI32::new(-1);

/// SET_DEBUG: changes the log level at run time. Numbers as upstream
/// (0 ERROR .. 10 DEBUG); anything above 10 logs everything.
pub fn set_level_number(n: u32) {
    let level = match n {
        0 => DebugLevel::Error,
        1 | 2 => DebugLevel::Warning,
        3 | 4 => DebugLevel::Notice,
        5..=9 => DebugLevel::Info,
        _ => DebugLevel::Debug,
    };
    RUNTIME_LEVEL.store(level as i32, Ordering::Relaxed);
}

/// Asks the logger to reopen its file before the next line.
pub fn reopen() {
    REOPEN.store(true, Ordering::Relaxed);
}

/// The subscriber. Install with [`init`].
pub struct CtdbLogger {
    level: DebugLevel,
    ident: &'static str,
    sink: Mutex<Sink>,
}

/// Formats the upstream timestamp for `t`: `YYYY/MM/DD HH:MM:SS.uuuuuu`.
pub fn timestamp(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let (y, mo, da, h, mi, s) = sys::localtime(d.as_secs() as i64);
    format!(
        "{y:04}/{mo:02}/{da:02} {h:02}:{mi:02}:{s:02}.{:06}",
        d.subsec_micros()
    )
}

impl CtdbLogger {
    pub fn new(target: &LogTarget, level: DebugLevel) -> Result<CtdbLogger, DaemonError> {
        let sink = match target {
            LogTarget::Stderr => Sink::Stderr,
            LogTarget::File(p) => Sink::File(open_log(p)?, p.clone()),
            LogTarget::Syslog => {
                let path = PathBuf::from(SYSLOG_SOCKET);
                Sink::Syslog(connect_syslog(&path), path)
            }
        };
        Ok(CtdbLogger {
            level,
            ident: "ctdbd",
            sink: Mutex::new(sink),
        })
    }

    /// One formatted line (without newline) for a file or stderr.
    pub fn format_line(&self, t: SystemTime, pid: u32, msg: &str) -> String {
        format!("{} {}[{pid}]: {msg}", timestamp(t), self.ident)
    }

    fn write(&self, level: DebugLevel, msg: &str) {
        let pid = std::process::id();
        let mut sink = match self.sink.lock() {
            Ok(s) => s,
            Err(p) => p.into_inner(),
        };
        match &mut *sink {
            Sink::Stderr => {
                let line = self.format_line(SystemTime::now(), pid, msg);
                let _ = writeln!(std::io::stderr().lock(), "{line}");
            }
            Sink::File(f, path) => {
                if REOPEN.swap(false, Ordering::Relaxed) {
                    if let Ok(new) = open_log(path) {
                        *f = new;
                    }
                }
                let mut line = self.format_line(SystemTime::now(), pid, msg);
                line.push('\n');
                let _ = f.write_all(line.as_bytes());
            }
            Sink::Syslog(s, path) => {
                if s.is_none() {
                    *s = connect_syslog(path);
                }
                let pri = (3u8 << 3) | level.syslog_severity();
                let line = format!("<{pri}>{}[{pid}]: {msg}", self.ident);
                if let Some(sock) = s {
                    if sock.send(line.as_bytes()).is_err() {
                        // syslogd restarted or went away: reconnect next time.
                        *s = None;
                    }
                }
            }
        }
    }
}

/// Where syslog(3) sends its datagrams.
const SYSLOG_SOCKET: &str = "/dev/log";

fn connect_syslog(path: &Path) -> Option<UnixDatagram> {
    let s = UnixDatagram::unbound().ok()?;
    s.connect(path).ok()?;
    Some(s)
}

fn open_log(p: &Path) -> Result<File, DaemonError> {
    File::options()
        .create(true)
        .append(true)
        .open(p)
        .map_err(|e| DaemonError::path("open log file", p, e))
}

/// Collects an event's message and fields into one line.
struct Line(String);

impl Visit for Line {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.0.insert_str(0, value);
        } else {
            let _ = write!(self.0, " {}={value}", field.name());
        }
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if field.name() == "message" {
            self.0.insert_str(0, &format!("{value:?}"));
        } else {
            let _ = write!(self.0, " {}={value:?}", field.name());
        }
    }
}

impl Subscriber for CtdbLogger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        let level = match RUNTIME_LEVEL.load(Ordering::Relaxed) {
            n if n >= 0 => n,
            _ => self.level as i32,
        };
        DebugLevel::of(metadata.level()) as i32 <= level
    }

    // The level can change at run time (SET_DEBUG): no cached interest and
    // no global maximum, `enabled` decides every time.
    fn register_callsite(
        &self,
        _metadata: &'static Metadata<'static>,
    ) -> tracing::subscriber::Interest {
        tracing::subscriber::Interest::sometimes()
    }

    fn max_level_hint(&self) -> Option<tracing::level_filters::LevelFilter> {
        None
    }

    // Spans carry no output in upstream's format; they are accepted and
    // ignored.
    fn new_span(&self, _span: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }
    fn record(&self, _span: &Id, _values: &Record<'_>) {}
    fn record_follows_from(&self, _span: &Id, _follows: &Id) {}
    fn enter(&self, _span: &Id) {}
    fn exit(&self, _span: &Id) {}

    fn event(&self, event: &Event<'_>) {
        let mut line = Line(String::new());
        event.record(&mut line);
        self.write(DebugLevel::of(event.metadata().level()), &line.0);
    }
}

/// Installs the logger as the process-wide subscriber (once).
pub fn init(target: &LogTarget, level: DebugLevel) -> Result<(), DaemonError> {
    let logger = CtdbLogger::new(target, level)?;
    tracing::subscriber::set_global_default(logger).map_err(|e| DaemonError::BadOption {
        option: "logging",
        why: format!("logger already installed: {e}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syslog_lines_and_a_missing_syslogd() {
        let dir = std::env::temp_dir().join(format!("ctdbd-syslog-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("log.sock");
        let _ = std::fs::remove_file(&path);
        let logger = CtdbLogger {
            level: DebugLevel::Notice,
            ident: "ctdbd",
            sink: Mutex::new(Sink::Syslog(None, path.clone())),
        };
        // No syslogd yet: the line is dropped, nothing fails.
        logger.write(DebugLevel::Error, "lost");
        // syslogd appears: the next line reaches it (DAEMON facility, ERR = 27).
        let server = UnixDatagram::bind(&path).unwrap();
        server
            .set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        logger.write(DebugLevel::Error, "found");
        let mut buf = [0u8; 256];
        let n = server.recv(&mut buf).unwrap();
        let got = String::from_utf8_lossy(&buf[..n]).into_owned();
        assert_eq!(got, format!("<27>ctdbd[{}]: found", std::process::id()));
        logger.write(DebugLevel::Notice, "notice");
        let n = server.recv(&mut buf).unwrap();
        assert!(String::from_utf8_lossy(&buf[..n]).starts_with("<29>ctdbd["));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn levels_parse_like_upstream() {
        assert_eq!(DebugLevel::parse("0"), Ok(DebugLevel::Error));
        assert_eq!(DebugLevel::parse("2"), Ok(DebugLevel::Warning));
        assert_eq!(DebugLevel::parse("4"), Ok(DebugLevel::Notice));
        assert_eq!(DebugLevel::parse("7"), Ok(DebugLevel::Info));
        assert_eq!(DebugLevel::parse("10"), Ok(DebugLevel::Debug));
        assert_eq!(DebugLevel::parse("notice"), Ok(DebugLevel::Notice));
        assert_eq!(DebugLevel::parse("WARN"), Ok(DebugLevel::Warning));
        assert_eq!(DebugLevel::parse("ERR"), Ok(DebugLevel::Error));
        assert!(DebugLevel::parse("11").unwrap_err().contains("outside"));
        assert!(DebugLevel::parse("LOUD")
            .unwrap_err()
            .contains("unknown debug level"));
        assert!(DebugLevel::parse("").is_err());
    }

    #[test]
    fn line_format_matches_upstream() {
        let dir = std::env::temp_dir().join(format!("ctdbd-log-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("log.ctdb");
        let logger = CtdbLogger::new(&LogTarget::File(path.clone()), DebugLevel::Notice).unwrap();
        let t = UNIX_EPOCH + std::time::Duration::from_micros(1_700_000_000_123_456);
        let line = logger.format_line(t, 42, "CTDB starting on node");
        // "YYYY/MM/DD HH:MM:SS.uuuuuu ctdbd[42]: ..."
        let b = line.as_bytes();
        assert_eq!(
            line.len(),
            26 + " ctdbd[42]: CTDB starting on node".len(),
            "{line}"
        );
        for (i, c) in [
            (4, b'/'),
            (7, b'/'),
            (10, b' '),
            (13, b':'),
            (16, b':'),
            (19, b'.'),
        ] {
            assert_eq!(b[i], c, "{line}");
        }
        assert!(line[20..26].chars().all(|c| c.is_ascii_digit()), "{line}");
        assert_eq!(&line[20..26], "123456");
        assert!(
            line.ends_with(" ctdbd[42]: CTDB starting on node"),
            "{line}"
        );

        // Events below the level are filtered; others are written.
        tracing::subscriber::with_default(logger, || {
            tracing::info!("notice line {}", 1);
            tracing::debug!("info line, filtered");
            tracing::error!(db = "x.tdb", "error line");
        });
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");

        // After the file is moved away (logrotate) and reopen() is asked
        // for, lines go to a fresh file at the configured path.
        let rotated = dir.join("log.ctdb.1");
        std::fs::rename(&path, &rotated).unwrap();
        let logger = CtdbLogger::new(&LogTarget::File(path.clone()), DebugLevel::Notice).unwrap();
        std::fs::rename(&path, dir.join("log.ctdb.2")).unwrap();
        tracing::subscriber::with_default(logger, || {
            reopen();
            tracing::warn!("after rotation");
        });
        assert!(std::fs::read_to_string(&path)
            .unwrap()
            .ends_with("after rotation\n"));
        assert!(lines[0].ends_with(&format!("ctdbd[{}]: notice line 1", std::process::id())));
        assert!(lines[1].ends_with("error line db=x.tdb"), "{}", lines[1]);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
