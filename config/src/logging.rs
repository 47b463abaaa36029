//! Debug levels and log locations as `[logging]` and `[legacy] script log
//! level` spell them.
//!
//! Level names are matched as case-insensitive prefixes (`warn`, `n`,
//! `Debug` are all fine) and digits 0..=10 are accepted, as upstream's
//! `debug_level_parse()` does.

use std::fmt;
use std::path::{Path, PathBuf};

/// A Samba debug level: 0 ERROR, 1 WARNING, 3 NOTICE, 5 INFO, 10 DEBUG.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DebugLevel(pub i32);

/// The level table upstream searches, in its order.
const LEVELS: [(i32, &str); 11] = [
    (0, "ERROR"),
    (1, "WARNING"),
    (2, "WARNING"),
    (3, "NOTICE"),
    (4, "NOTICE"),
    (5, "INFO"),
    (6, "INFO"),
    (7, "INFO"),
    (8, "INFO"),
    (9, "INFO"),
    (10, "DEBUG"),
];

impl DebugLevel {
    /// ERROR (0).
    pub const ERROR: DebugLevel = DebugLevel(0);
    /// WARNING (1).
    pub const WARNING: DebugLevel = DebugLevel(1);
    /// NOTICE (3).
    pub const NOTICE: DebugLevel = DebugLevel(3);
    /// INFO (5).
    pub const INFO: DebugLevel = DebugLevel(5);
    /// DEBUG (10).
    pub const DEBUG: DebugLevel = DebugLevel(10);

    /// Parse a level name or number; `None` if upstream would reject it.
    pub fn parse(s: &str) -> Option<DebugLevel> {
        let first = s.as_bytes().first()?;
        if first.is_ascii_digit() {
            // atoi(): leading digits only.
            let digits: String = s.chars().take_while(|c| c.is_ascii_digit()).collect();
            let n: i64 = digits.parse().unwrap_or(i64::MAX);
            return (0..LEVELS.len() as i64)
                .contains(&n)
                .then_some(DebugLevel(n as i32));
        }
        LEVELS
            .iter()
            .find(|(_, name)| {
                s.len() <= name.len()
                    && name.as_bytes()[..s.len()].eq_ignore_ascii_case(s.as_bytes())
            })
            .map(|(l, _)| DebugLevel(*l))
    }

    /// Upstream's name for the level (`UNKNOWN` outside 0..=10).
    pub fn name(self) -> &'static str {
        LEVELS
            .iter()
            .find(|(l, _)| *l == self.0)
            .map(|(_, n)| *n)
            .unwrap_or("UNKNOWN")
    }
}

impl fmt::Display for DebugLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How syslog messages are sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyslogMethod {
    /// `syslog`: the C library's syslog().
    Syslog,
    /// `syslog:nonblocking`: datagrams to /dev/log, dropped when full.
    Nonblocking,
    /// `syslog:udp`: RFC 3164 to 127.0.0.1:514.
    Udp,
    /// `syslog:udp-rfc5424`: RFC 5424 to 127.0.0.1:514.
    UdpRfc5424,
}

/// Parsed `[logging] location`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogLocation {
    /// `file`, `file:` or `file:-`: standard error.
    Stderr,
    /// `file:PATH`.
    File(PathBuf),
    /// `syslog[:METHOD]`.
    Syslog(SyslogMethod),
}

impl LogLocation {
    /// Parse like upstream's `log_backend_parse()`: the text is split on
    /// `:` (empty pieces skipped); the first piece is the backend, the
    /// second its option, anything further ignored. Does not check that a
    /// file's directory exists (see [`LogLocation::validate`]).
    pub fn parse(s: &str) -> Result<LogLocation, String> {
        let mut parts = s.split(':').filter(|p| !p.is_empty());
        let Some(name) = parts.next() else {
            return Err("no logging backend named".into());
        };
        let option = parts.next();
        match name {
            "file" => match option {
                None | Some("-") => Ok(LogLocation::Stderr),
                Some(p) => Ok(LogLocation::File(PathBuf::from(p))),
            },
            "syslog" => match option {
                None => Ok(LogLocation::Syslog(SyslogMethod::Syslog)),
                Some("nonblocking") => Ok(LogLocation::Syslog(SyslogMethod::Nonblocking)),
                Some("udp") => Ok(LogLocation::Syslog(SyslogMethod::Udp)),
                Some("udp-rfc5424") => Ok(LogLocation::Syslog(SyslogMethod::UdpRfc5424)),
                Some(o) => Err(format!(
                    "unknown syslog method \"{o}\" (use nonblocking, udp or udp-rfc5424)"
                )),
            },
            other => Err(format!(
                "unknown logging backend \"{other}\" (use file or syslog)"
            )),
        }
    }

    /// Parse and, for a file, require that its directory exists (the
    /// validation ctdb.conf loading applies).
    pub fn validate(s: &str) -> Result<LogLocation, String> {
        let loc = LogLocation::parse(s)?;
        if let LogLocation::File(p) = &loc {
            let dir = dirname(p);
            if !dir.is_dir() {
                return Err(format!("log directory {} does not exist", dir.display()));
            }
        }
        Ok(loc)
    }
}

/// POSIX dirname(): "log" -> ".", "/log" -> "/", "a/b/" -> "a".
fn dirname(p: &Path) -> PathBuf {
    let s = p.to_string_lossy();
    let trimmed = s.trim_end_matches('/');
    if trimmed.is_empty() {
        return PathBuf::from("/");
    }
    match trimmed.rfind('/') {
        None => PathBuf::from("."),
        Some(i) => {
            let d = trimmed[..i].trim_end_matches('/');
            if d.is_empty() {
                PathBuf::from("/")
            } else {
                PathBuf::from(d)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels() {
        assert_eq!(DebugLevel::parse("notice"), Some(DebugLevel::NOTICE));
        assert_eq!(DebugLevel::parse("WARN"), Some(DebugLevel::WARNING));
        assert_eq!(DebugLevel::parse("d"), Some(DebugLevel::DEBUG));
        assert_eq!(DebugLevel::parse("7"), Some(DebugLevel(7)));
        assert_eq!(DebugLevel::parse("11"), None);
        assert_eq!(DebugLevel::parse("high"), None);
        assert_eq!(DebugLevel::parse("errors"), None);
        assert_eq!(DebugLevel(4).name(), "NOTICE");
        assert_eq!(DebugLevel(42).name(), "UNKNOWN");
    }

    #[test]
    fn locations() {
        assert_eq!(LogLocation::parse("file:"), Ok(LogLocation::Stderr));
        assert_eq!(
            LogLocation::parse("file:/var/log/ctdb/log.ctdb"),
            Ok(LogLocation::File("/var/log/ctdb/log.ctdb".into()))
        );
        assert_eq!(
            LogLocation::parse("syslog:udp"),
            Ok(LogLocation::Syslog(SyslogMethod::Udp))
        );
        assert!(LogLocation::parse("syslog:magic").is_err());
        assert!(LogLocation::parse(":").is_err());
        assert_eq!(dirname(Path::new("log")), PathBuf::from("."));
        assert_eq!(dirname(Path::new("/log")), PathBuf::from("/"));
        assert_eq!(dirname(Path::new("/a/b/c")), PathBuf::from("/a/b"));
    }
}
