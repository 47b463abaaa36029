//! The `nodes` file: one private address per line, the line's position
//! giving the node's PNN.
//!
//! Rules (ctdb 4.17 `ctdb_read_nodes_file()`):
//!
//! * a line ends at `\n`; a `\r` ends the line's content too;
//! * blanks and tabs around the address are ignored; blank lines are
//!   skipped and take no PNN;
//! * a line whose first non-blank character is `#` is a *deleted node*: it
//!   keeps its PNN slot (so later nodes do not renumber) with address
//!   0.0.0.0. There are no comment lines in this file — every `#` line
//!   takes a slot;
//! * addresses are IPv4, IPv6 or `[IPv6]`; IPv4-mapped IPv6 becomes IPv4.
//!   No port: every node uses the CTDB port ([`crate::addr::ctdb_port`]).
//!
//! Any bad line fails the whole file (ctdbd exits).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

use crate::addr::parse_ip;
use crate::error::{ConfigError, ErrorKind};

/// One slot of the nodes file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeEntry {
    /// The node number (position among non-blank lines, from 0).
    pub pnn: u32,
    /// The address; 0.0.0.0 for a deleted node.
    pub addr: IpAddr,
    /// Whether the line was `#...` (NODE_FLAGS_DELETED).
    pub deleted: bool,
    /// 1-based line in the file.
    pub line: usize,
}

/// A parsed nodes file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Nodes {
    /// The file it came from.
    pub path: PathBuf,
    /// All slots, deleted ones included, in PNN order.
    pub entries: Vec<NodeEntry>,
}

/// Split a file the way Samba's `file_lines_load()` does: on `\n`, each
/// `\r` ending the line's content, text after a NUL byte dropped.
pub(crate) fn c_lines(data: &[u8]) -> Vec<&[u8]> {
    let mut lines: Vec<&[u8]> = data
        .split(|&b| b == b'\n')
        .map(|l| {
            let end = l
                .iter()
                .position(|&b| b == b'\r' || b == 0)
                .unwrap_or(l.len());
            &l[..end]
        })
        .collect();
    while lines.last().is_some_and(|l| l.is_empty()) {
        lines.pop();
    }
    lines
}

fn trim_blanks(s: &[u8]) -> &[u8] {
    let start = s
        .iter()
        .position(|&b| b != b' ' && b != b'\t')
        .unwrap_or(s.len());
    let s = &s[start..];
    let end = s
        .iter()
        .rposition(|&b| b != b' ' && b != b'\t')
        .map_or(0, |e| e + 1);
    &s[..end]
}

impl Nodes {
    /// Read and parse a nodes file. Unlike `ctdb.conf`, the file must
    /// exist.
    pub fn load(path: &Path) -> Result<Nodes, ConfigError> {
        let data = std::fs::read(path).map_err(|e| ConfigError::io(path, e))?;
        Nodes::parse(path, &data)
    }

    /// Parse nodes file contents; `path` is used in messages.
    pub fn parse(path: &Path, data: &[u8]) -> Result<Nodes, ConfigError> {
        let mut entries = Vec::new();
        let mut errors = Vec::new();
        for (i, raw) in c_lines(data).into_iter().enumerate() {
            let line = i + 1;
            let text = trim_blanks(raw);
            if text.is_empty() {
                continue;
            }
            let pnn = entries.len() as u32;
            if text[0] == b'#' {
                entries.push(NodeEntry {
                    pnn,
                    addr: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                    deleted: true,
                    line,
                });
                continue;
            }
            let parsed = std::str::from_utf8(text).ok().and_then(parse_ip);
            match parsed {
                Some(addr) => entries.push(NodeEntry {
                    pnn,
                    addr,
                    deleted: false,
                    line,
                }),
                None => {
                    errors.push(ConfigError::parse(
                        path,
                        line,
                        ErrorKind::InvalidValue,
                        format!(
                            "invalid node address \"{}\" (expected an IPv4 or IPv6 address without port)",
                            String::from_utf8_lossy(text)
                        ),
                    ));
                    // Keep numbering the following lines sensibly.
                    entries.push(NodeEntry {
                        pnn,
                        addr: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                        deleted: true,
                        line,
                    });
                }
            }
        }
        if let Some(e) = ConfigError::collect(errors) {
            return Err(e);
        }
        Ok(Nodes {
            path: path.to_path_buf(),
            entries,
        })
    }

    /// Number of slots (deleted ones included): the cluster size ctdbd
    /// reports.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the file has no slots at all.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The slot for a PNN.
    pub fn get(&self, pnn: u32) -> Option<&NodeEntry> {
        self.entries.get(pnn as usize)
    }

    /// Non-deleted nodes.
    pub fn active(&self) -> impl Iterator<Item = &NodeEntry> {
        self.entries.iter().filter(|e| !e.deleted)
    }

    /// PNN of the (non-deleted) node with this address; IPv4-mapped IPv6
    /// matches IPv4.
    pub fn pnn_of(&self, addr: IpAddr) -> Option<u32> {
        let addr = crate::addr::canonical(addr);
        self.active().find(|e| e.addr == addr).map(|e| e.pnn)
    }

    /// The socket address of a node on the given port.
    pub fn socket_addr(&self, pnn: u32, port: u16) -> Option<SocketAddr> {
        self.get(pnn).map(|e| SocketAddr::new(e.addr, port))
    }
}
