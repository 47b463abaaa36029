//! Address parsing as CTDB does it for `nodes`, `public_addresses` and
//! `node address`.
//!
//! Upstream accepts dotted IPv4, IPv6, IPv6 in `[brackets]`, and turns an
//! IPv4-mapped IPv6 address (`::ffff:a.b.c.d`) into the plain IPv4 address.
//! Ports are not accepted in these files.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The TCP port CTDB uses when `/etc/services` has no `ctdb` entry.
pub const CTDB_PORT: u16 = 4379;

/// Longest interface name upstream accepts (`CTDB_IFACE_SIZE`).
pub const IFACE_NAME_MAX: usize = 16;

/// Parse an address the way `ctdb_sock_addr_from_string(.., false)` does.
pub fn parse_ip(s: &str) -> Option<IpAddr> {
    if !s.contains(':') {
        return s.parse::<Ipv4Addr>().ok().map(IpAddr::V4);
    }
    let inner = if s.len() >= 2 && s.starts_with('[') && s.ends_with(']') {
        &s[1..s.len() - 1]
    } else {
        s
    };
    // Upstream copies into a 64 byte buffer first.
    if s.len() >= 64 {
        return None;
    }
    let v6: Ipv6Addr = inner.parse().ok()?;
    Some(canonical(IpAddr::V6(v6)))
}

/// IPv4-mapped IPv6 addresses compare (and print) as IPv4.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        },
        v4 => v4,
    }
}

/// Strict "node address" check: `inet_pton(AF_INET)` or
/// `inet_pton(AF_INET6)`, no brackets, no port.
pub fn is_inet_pton(s: &str) -> bool {
    s.parse::<Ipv4Addr>().is_ok() || s.parse::<Ipv6Addr>().is_ok()
}

/// The CTDB port: the `ctdb/tcp` entry of `/etc/services` if there is one,
/// else [`CTDB_PORT`] (upstream asks `getservbyname("ctdb", "tcp")`).
pub fn ctdb_port() -> u16 {
    services_port(std::path::Path::new("/etc/services")).unwrap_or(CTDB_PORT)
}

/// Look up `ctdb/tcp` in a services(5) file.
pub fn services_port(path: &std::path::Path) -> Option<u16> {
    let text = std::fs::read(path).ok()?;
    let text = String::from_utf8_lossy(&text);
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("");
        let mut words = line.split_whitespace();
        let (Some(name), Some(port_proto)) = (words.next(), words.next()) else {
            continue;
        };
        let aliases: Vec<&str> = words.collect();
        if name != "ctdb" && !aliases.contains(&"ctdb") {
            continue;
        }
        if let Some((port, "tcp")) = port_proto.split_once('/') {
            if let Ok(p) = port.parse() {
                return Some(p);
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms() {
        assert_eq!(parse_ip("10.0.0.1"), Some("10.0.0.1".parse().unwrap()));
        assert_eq!(parse_ip("fc00::1"), Some("fc00::1".parse().unwrap()));
        assert_eq!(parse_ip("[fc00::1]"), Some("fc00::1".parse().unwrap()));
        assert_eq!(parse_ip("::ffff:1.2.3.4"), Some("1.2.3.4".parse().unwrap()));
        assert_eq!(parse_ip("10.0.0.1:4379"), None);
        assert_eq!(parse_ip("[10.0.0.1]"), None);
        assert_eq!(parse_ip("host"), None);
        assert_eq!(parse_ip(""), None);
    }
}
