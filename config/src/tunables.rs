//! CTDB tunables: the 62 run-time knobs of ctdbd 4.17, their defaults,
//! which are obsolete, and the `ctdb.tunables` file.
//!
//! Two orders matter. The *table order* is the order of upstream's tunable
//! map: `LIST_TUNABLES` (and so `ctdb listvars`) walks it, skipping
//! obsolete entries. The *wire order* is the field order of
//! `struct ctdb_tunable_list`, which `GET_ALL_TUNABLES` sends as 62
//! consecutive u32 values; [`Tunables::to_wire`] and
//! [`Tunables::from_wire`] convert. Names are matched case-insensitively.
//!
//! `ctdb.tunables` holds `Name=Value` lines in the same ini dialect as
//! `ctdb.conf`. Sections, empty values, bad numbers, unknown names and
//! obsolete names are errors; all of them are reported. Numbers use C
//! base-0 syntax (`10`, `0x0a`, `012`). Upstream truncates values above
//! 2^32-1 silently; we reject them.

use std::path::Path;

use crate::error::{ConfigError, ErrorKind};
use crate::ini::{self, Item};

/// Number of tunables (obsolete ones included).
pub const NUM_TUNABLES: usize = 62;

/// One entry of the tunable table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TunableInfo {
    /// Canonical name, e.g. `RecoverTimeout`.
    pub name: &'static str,
    /// Default value.
    pub default: u32,
    /// Obsolete tunables can be read and set over the protocol (setting
    /// one answers 1) but are rejected in `ctdb.tunables` and not listed.
    pub obsolete: bool,
    /// Index of the field in `struct ctdb_tunable_list` (wire order).
    pub wire_index: usize,
}

const fn t(name: &'static str, default: u32, obsolete: bool, wire_index: usize) -> TunableInfo {
    TunableInfo {
        name,
        default,
        obsolete,
        wire_index,
    }
}

/// The tunable table, in upstream's table order.
pub const TUNABLES: [TunableInfo; NUM_TUNABLES] = [
    t("MaxRedirectCount", 3, true, 0),
    t("SeqnumInterval", 1000, false, 1),
    t("ControlTimeout", 60, false, 2),
    t("TraverseTimeout", 20, false, 3),
    t("KeepaliveInterval", 5, false, 4),
    t("KeepaliveLimit", 5, false, 5),
    t("RecoverTimeout", 30, false, 6),
    t("RecoverInterval", 1, false, 7),
    t("ElectionTimeout", 3, false, 8),
    t("TakeoverTimeout", 9, false, 9),
    t("MonitorInterval", 15, false, 10),
    t("TickleUpdateInterval", 20, false, 11),
    t("EventScriptTimeout", 30, false, 12),
    t("MonitorTimeoutCount", 20, false, 13),
    t("EventScriptUnhealthyOnTimeout", 0, true, 14),
    t("RecoveryGracePeriod", 120, false, 15),
    t("RecoveryBanPeriod", 300, false, 16),
    t("DatabaseHashSize", 100_001, false, 17),
    t("DatabaseMaxDead", 5, false, 18),
    t("RerecoveryTimeout", 10, false, 19),
    t("EnableBans", 1, false, 20),
    t("DeterministicIPs", 0, true, 21),
    t("LCP2PublicIPs", 1, true, 41),
    t("ReclockPingPeriod", 60, true, 22),
    t("NoIPFailback", 0, false, 23),
    t("DisableIPFailover", 0, true, 24),
    t("VerboseMemoryNames", 0, false, 25),
    t("RecdPingTimeout", 60, false, 26),
    t("RecdFailCount", 10, false, 27),
    t("LogLatencyMs", 0, false, 28),
    t("RecLockLatencyMs", 1000, false, 29),
    t("RecoveryDropAllIPs", 120, false, 30),
    t("VerifyRecoveryLock", 1, true, 31),
    t("VacuumInterval", 10, false, 32),
    t("VacuumMaxRunTime", 120, false, 33),
    t("RepackLimit", 10_000, false, 34),
    t("VacuumLimit", 5_000, true, 35),
    t("VacuumFastPathCount", 60, false, 40),
    t("MaxQueueDropMsg", 1_000_000, false, 36),
    t("AllowUnhealthyDBRead", 0, false, 37),
    t("StatHistoryInterval", 1, false, 38),
    t("DeferredAttachTO", 120, false, 39),
    t("AllowClientDBAttach", 1, false, 42),
    t("RecoverPDBBySeqNum", 1, true, 43),
    t("DeferredRebalanceOnNodeAdd", 300, true, 44),
    t("FetchCollapse", 1, false, 45),
    t("HopcountMakeSticky", 50, false, 46),
    t("StickyDuration", 600, false, 47),
    t("StickyPindown", 200, false, 48),
    t("NoIPTakeover", 0, false, 49),
    t("DBRecordCountWarn", 100_000, false, 50),
    t("DBRecordSizeWarn", 10_000_000, false, 51),
    t("DBSizeWarn", 100_000_000, false, 52),
    t("PullDBPreallocation", 10 * 1024 * 1024, false, 53),
    t("NoIPHostOnAllDisabled", 1, true, 54),
    t("Samba3AvoidDeadlocks", 0, true, 55),
    t("TDBMutexEnabled", 1, true, 56),
    t("LockProcessesPerDB", 200, false, 57),
    t("RecBufferSizeLimit", 1_000_000, false, 58),
    t("QueueBufferSize", 1024, false, 59),
    t("IPAllocAlgorithm", 2, false, 60),
    t("AllowMixedVersions", 0, false, 61),
];

/// Result of a successful [`Tunables::set`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetOutcome {
    /// Set.
    Set,
    /// Set, but the tunable is obsolete and has no effect (the
    /// `SET_TUNABLE` control answers 1 in this case).
    Obsolete,
}

/// Find a tunable by name, ignoring case.
pub fn lookup(name: &str) -> Option<(usize, &'static TunableInfo)> {
    TUNABLES
        .iter()
        .enumerate()
        .find(|(_, t)| t.name.eq_ignore_ascii_case(name))
}

/// A full set of tunable values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tunables {
    /// Values in table order.
    values: [u32; NUM_TUNABLES],
}

impl Default for Tunables {
    fn default() -> Self {
        Tunables::defaults()
    }
}

/// Parse an unsigned number with C base-0 syntax, whole string.
pub(crate) fn parse_u32(s: &str) -> Option<u32> {
    let t = s.trim_start_matches([' ', '\t', '\n', '\r', '\x0b', '\x0c']);
    let t = t.strip_prefix('+').unwrap_or(t);
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
    u32::from_str_radix(digits, radix).ok()
}

impl Tunables {
    /// All defaults.
    pub fn defaults() -> Tunables {
        let mut values = [0; NUM_TUNABLES];
        for (v, t) in values.iter_mut().zip(TUNABLES.iter()) {
            *v = t.default;
        }
        Tunables { values }
    }

    /// The value of a tunable (obsolete ones included), case-insensitive.
    pub fn get(&self, name: &str) -> Option<u32> {
        lookup(name).map(|(i, _)| self.values[i])
    }

    /// Set a tunable. Unknown names are an error; obsolete ones are set
    /// and reported as [`SetOutcome::Obsolete`].
    pub fn set(&mut self, name: &str, value: u32) -> Result<SetOutcome, ConfigError> {
        let (i, info) = lookup(name).ok_or_else(|| ConfigError::Option {
            name: name.to_string(),
            kind: ErrorKind::UnknownKey,
            reason: "unknown tunable".into(),
        })?;
        self.values[i] = value;
        Ok(if info.obsolete {
            SetOutcome::Obsolete
        } else {
            SetOutcome::Set
        })
    }

    /// Non-obsolete tunables and their values in table order: what
    /// `ctdb listvars` shows.
    pub fn list(&self) -> impl Iterator<Item = (&'static str, u32)> + '_ {
        TUNABLES
            .iter()
            .zip(self.values.iter())
            .filter(|(t, _)| !t.obsolete)
            .map(|(t, v)| (t.name, *v))
    }

    /// Every tunable, obsolete ones too, in table order.
    pub fn list_all(&self) -> impl Iterator<Item = (&'static TunableInfo, u32)> + '_ {
        TUNABLES.iter().zip(self.values.iter().copied())
    }

    /// Names of non-obsolete tunables joined with `:` (the payload of the
    /// `LIST_TUNABLES` control).
    pub fn names_string() -> String {
        TUNABLES
            .iter()
            .filter(|t| !t.obsolete)
            .map(|t| t.name)
            .collect::<Vec<_>>()
            .join(":")
    }

    /// Values in `struct ctdb_tunable_list` order (`GET_ALL_TUNABLES`).
    pub fn to_wire(&self) -> [u32; NUM_TUNABLES] {
        let mut out = [0; NUM_TUNABLES];
        for (t, v) in TUNABLES.iter().zip(self.values.iter()) {
            out[t.wire_index] = *v;
        }
        out
    }

    /// Inverse of [`Tunables::to_wire`].
    pub fn from_wire(wire: &[u32; NUM_TUNABLES]) -> Tunables {
        let mut values = [0; NUM_TUNABLES];
        for (v, t) in values.iter_mut().zip(TUNABLES.iter()) {
            *v = wire[t.wire_index];
        }
        Tunables { values }
    }

    /// Defaults overridden by `ctdb.tunables` at `path`. A missing file is
    /// fine (defaults); any bad line makes the whole load fail with every
    /// problem listed.
    pub fn load(path: &Path) -> Result<Tunables, ConfigError> {
        let (t, errors) = Tunables::load_lenient(path)?;
        match ConfigError::collect(errors) {
            Some(e) => Err(e),
            None => Ok(t),
        }
    }

    /// What ctdbd 4.17 really does: apply every good line, report the bad
    /// ones, and carry on. Only an unreadable file is a hard error.
    pub fn load_lenient(path: &Path) -> Result<(Tunables, Vec<ConfigError>), ConfigError> {
        let data = match std::fs::read(path) {
            Ok(d) => d,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok((Tunables::defaults(), Vec::new()))
            }
            Err(e) => return Err(ConfigError::io(path, e)),
        };
        Ok(Tunables::parse(path, &data))
    }

    /// Parse `ctdb.tunables` contents on top of the defaults.
    pub fn parse(path: &Path, data: &[u8]) -> (Tunables, Vec<ConfigError>) {
        let mut t = Tunables::defaults();
        let mut errors = Vec::new();
        let mut err = |line, kind, reason: String| {
            errors.push(ConfigError::parse(path, line, kind, reason));
        };
        for (line, item) in ini::parse(data, true) {
            match item {
                Item::Malformed(r) => err(line, ErrorKind::Syntax, r),
                Item::Section(s) => err(
                    line,
                    ErrorKind::Syntax,
                    format!("invalid line for section [{s}]: sections not supported"),
                ),
                Item::NoEquals(s) => err(
                    line,
                    ErrorKind::EmptyValue,
                    format!("invalid line containing \"{s}\""),
                ),
                Item::Param { name, value } => {
                    if value.is_empty() {
                        err(
                            line,
                            ErrorKind::EmptyValue,
                            format!("invalid line containing \"{name}\": no value"),
                        );
                        continue;
                    }
                    let Some(v) = parse_u32(&value) else {
                        err(
                            line,
                            ErrorKind::InvalidValue,
                            format!("invalid value \"{value}\" for tunable \"{name}\""),
                        );
                        continue;
                    };
                    match lookup(&name) {
                        None => err(
                            line,
                            ErrorKind::UnknownKey,
                            format!("unknown tunable \"{name}\""),
                        ),
                        Some((_, info)) if info.obsolete => err(
                            line,
                            ErrorKind::Obsolete,
                            format!("obsolete tunable \"{name}\""),
                        ),
                        Some((i, _)) => t.values[i] = v,
                    }
                }
            }
        }
        (t, errors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_shape() {
        let mut seen = [false; NUM_TUNABLES];
        for t in TUNABLES {
            assert!(!seen[t.wire_index], "{} duplicate wire index", t.name);
            seen[t.wire_index] = true;
        }
        assert_eq!(TUNABLES.iter().filter(|t| t.obsolete).count(), 13);
    }

    #[test]
    fn numbers() {
        assert_eq!(parse_u32("0x10"), Some(16));
        assert_eq!(parse_u32("4294967295"), Some(u32::MAX));
        assert_eq!(parse_u32("4294967296"), None);
        assert_eq!(parse_u32("-1"), None);
        assert_eq!(parse_u32("1 2"), None);
    }
}
