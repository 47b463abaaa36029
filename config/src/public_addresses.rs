//! The `public_addresses` file: the floating IPs a node may host.
//!
//! Each line is `ADDRESS/MASK IFACE[,IFACE...]` (ctdb 4.17
//! `ctdb_set_public_addresses()`):
//!
//! * leading blanks are skipped; lines starting with `#` and blank lines
//!   are ignored; `\r` ends a line's content;
//! * fields are separated by blanks or tabs; anything after the interface
//!   list is ignored;
//! * the address is IPv4, IPv6 or `[IPv6]` (IPv4-mapped IPv6 becomes
//!   IPv4), the mask a decimal number;
//! * interfaces are comma separated, each at most 16 characters;
//! * the same address twice is an error.
//!
//! A missing interface list is an error unless a default interface is
//! given (the old `--public-interface` option). A missing file means no
//! public addresses. Checking that interfaces exist on this host is left to
//! [`PublicAddresses::missing_interfaces`], since upstream does it while
//! loading but tests and tools may load files for other hosts. We also
//! reject masks longer than the address (upstream accepts them and fails
//! later when adding the address).

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use crate::addr::{parse_ip, IFACE_NAME_MAX};
use crate::error::{ConfigError, ErrorKind};
use crate::nodes::c_lines;

/// One public address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicAddress {
    /// The address.
    pub addr: IpAddr,
    /// Prefix length.
    pub mask: u8,
    /// Interfaces it may be hosted on, in file order.
    pub ifaces: Vec<String>,
    /// 1-based line in the file.
    pub line: usize,
}

/// A parsed public_addresses file.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PublicAddresses {
    /// The file it came from (None when there was none).
    pub path: Option<PathBuf>,
    /// Addresses in file order.
    pub addresses: Vec<PublicAddress>,
}

impl PublicAddresses {
    /// Load `path`; no file means no addresses.
    pub fn load(path: &Path) -> Result<PublicAddresses, ConfigError> {
        PublicAddresses::load_with_default_iface(path, None)
    }

    /// Load, using `default_iface` for lines that name no interface.
    pub fn load_with_default_iface(
        path: &Path,
        default_iface: Option<&str>,
    ) -> Result<PublicAddresses, ConfigError> {
        match std::fs::read(path) {
            Ok(d) => PublicAddresses::parse(path, &d, default_iface),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(PublicAddresses::default()),
            Err(e) => Err(ConfigError::io(path, e)),
        }
    }

    /// Parse file contents; `path` is used in messages.
    pub fn parse(
        path: &Path,
        data: &[u8],
        default_iface: Option<&str>,
    ) -> Result<PublicAddresses, ConfigError> {
        let mut addresses: Vec<PublicAddress> = Vec::new();
        let mut errors = Vec::new();
        for (i, raw) in c_lines(data).into_iter().enumerate() {
            let line = i + 1;
            let mut err = |kind, reason: String| {
                errors.push(ConfigError::parse(path, line, kind, reason));
            };
            let Ok(text) = std::str::from_utf8(raw) else {
                err(ErrorKind::Syntax, "line is not valid UTF-8".into());
                continue;
            };
            let text = text.trim_start_matches([' ', '\t']);
            if text.is_empty() || text.starts_with('#') {
                continue;
            }
            let mut fields = text.split([' ', '\t']).filter(|f| !f.is_empty());
            let Some(addr_mask) = fields.next() else {
                continue;
            };
            let ifaces_field = match (fields.next(), default_iface) {
                (Some(f), _) => f,
                (None, Some(d)) => d,
                (None, None) => {
                    err(
                        ErrorKind::InvalidValue,
                        format!("no interface specified for public address {addr_mask}"),
                    );
                    continue;
                }
            };
            let Some((a, m)) = addr_mask.rsplit_once('/') else {
                err(
                    ErrorKind::InvalidValue,
                    format!("badly formed public address \"{addr_mask}\": expected ADDRESS/MASK"),
                );
                continue;
            };
            let Some(addr) = (if a.len() >= 64 { None } else { parse_ip(a) }) else {
                err(
                    ErrorKind::InvalidValue,
                    format!("badly formed public address \"{addr_mask}\": bad address \"{a}\""),
                );
                continue;
            };
            let max = if addr.is_ipv4() { 32 } else { 128 };
            let mask = match m.parse::<u32>() {
                Ok(v) if !m.is_empty() && m.bytes().all(|b| b.is_ascii_digit()) && v <= max => {
                    v as u8
                }
                _ => {
                    err(
                        ErrorKind::InvalidValue,
                        format!(
                            "badly formed public address \"{addr_mask}\": mask must be a number from 0 to {max}"
                        ),
                    );
                    continue;
                }
            };
            let ifaces: Vec<String> = ifaces_field
                .split(',')
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect();
            if ifaces.is_empty() {
                err(
                    ErrorKind::InvalidValue,
                    format!("no interface specified for public address {addr_mask}"),
                );
                continue;
            }
            if let Some(long) = ifaces.iter().find(|i| i.len() > IFACE_NAME_MAX) {
                err(
                    ErrorKind::InvalidValue,
                    format!(
                        "interface name too long \"{long}\" (at most {IFACE_NAME_MAX} characters)"
                    ),
                );
                continue;
            }
            if let Some(prev) = addresses.iter().find(|p| p.addr == addr) {
                err(
                    ErrorKind::Duplicate,
                    format!(
                        "duplicate public IP address {addr} (first on line {})",
                        prev.line
                    ),
                );
                continue;
            }
            addresses.push(PublicAddress {
                addr,
                mask,
                ifaces,
                line,
            });
        }
        if let Some(e) = ConfigError::collect(errors) {
            return Err(e);
        }
        Ok(PublicAddresses {
            path: Some(path.to_path_buf()),
            addresses,
        })
    }

    /// Interfaces named in the file that do not exist on this host
    /// (`/sys/class/net/<iface>`), in first-use order.
    pub fn missing_interfaces(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for a in &self.addresses {
            for i in &a.ifaces {
                if !Path::new("/sys/class/net").join(i).exists() && !out.contains(i) {
                    out.push(i.clone());
                }
            }
        }
        out
    }

    /// All distinct interfaces, in first-use order.
    pub fn interfaces(&self) -> Vec<&str> {
        let mut out: Vec<&str> = Vec::new();
        for a in &self.addresses {
            for i in &a.ifaces {
                if !out.contains(&i.as_str()) {
                    out.push(i);
                }
            }
        }
        out
    }
}
