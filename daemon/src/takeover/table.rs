//! One node's public addresses and interfaces (upstream's `ctdb->vnn` and
//! `ctdb->ifaces` lists), sans-I/O.
//!
//! Why separate from the controls: the rules for which interface an
//! address goes on, when it is available, what a redundant release means
//! and when an interface is garbage collected are upstream's and are
//! checked here without a daemon; [`super::node`] only adds the event
//! scripts around them.
//!
//! Order follows upstream's lists, which add at the head: the newest
//! address and the newest interface come first (GET_PUBLIC_IPS,
//! GET_IFACES); an address's own interfaces keep file order.

use std::net::IpAddr;

use ctdb_protocol::types::{Connection, SockAddr};

use super::ipalloc::UNKNOWN;

/// An interface public addresses may go on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Iface {
    pub name: String,
    pub link_up: bool,
    /// Addresses currently assigned to it.
    pub references: u32,
}

/// A public address (upstream's `ctdb_vnn`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vnn {
    pub addr: IpAddr,
    pub mask: u8,
    /// Interfaces it may use, in file order.
    pub ifaces: Vec<String>,
    /// The interface it is on (this node hosts it).
    pub iface: Option<String>,
    /// The node this node believes hosts it.
    pub pnn: u32,
    /// DEL_PUBLIC_IP while hosted: deleted once released.
    pub delete_pending: bool,
    /// A takeip/releaseip/updateip event is running for it.
    pub update_in_flight: bool,
    /// Known TCP connections to it (tickles).
    pub tickles: Vec<Connection>,
    pub tcp_update_needed: bool,
}

/// Why a public address could not be added.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AddError {
    Duplicate,
    NoIface,
    UnknownIface(String),
    IfaceTooLong(String),
}

impl std::fmt::Display for AddError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AddError::Duplicate => write!(f, "duplicate public IP address"),
            AddError::NoIface => write!(f, "no interface given"),
            AddError::UnknownIface(i) => write!(f, "unknown interface {i}"),
            AddError::IfaceTooLong(i) => write!(f, "interface name too long \"{i}\""),
        }
    }
}

/// The longest interface name upstream stores (`CTDB_IFACE_SIZE`).
pub const IFACE_SIZE: usize = 16;

/// The node's table.
#[derive(Debug, Clone, Default)]
pub struct IpTable {
    pub vnns: Vec<Vnn>,
    pub ifaces: Vec<Iface>,
}

/// Whether the host has an interface of that name.
pub fn iface_exists(name: &str) -> bool {
    !name.is_empty()
        && !name.contains('/')
        && name != "."
        && name != ".."
        && std::path::Path::new("/sys/class/net").join(name).exists()
}

impl IpTable {
    pub fn find(&self, addr: &IpAddr) -> Option<usize> {
        self.vnns.iter().position(|v| &v.addr == addr)
    }

    pub fn iface(&self, name: &str) -> Option<&Iface> {
        self.ifaces.iter().find(|i| i.name == name)
    }

    fn iface_mut(&mut self, name: &str) -> Option<&mut Iface> {
        self.ifaces.iter_mut().find(|i| i.name == name)
    }

    /// Adds a public address (`exists` says whether an interface is on
    /// this host); new interfaces start with their link up.
    pub fn add(
        &mut self,
        addr: IpAddr,
        mask: u8,
        ifaces: &[String],
        exists: &dyn Fn(&str) -> bool,
    ) -> Result<(), AddError> {
        if self.find(&addr).is_some() {
            return Err(AddError::Duplicate);
        }
        if ifaces.is_empty() {
            return Err(AddError::NoIface);
        }
        for i in ifaces {
            if i.len() > IFACE_SIZE {
                return Err(AddError::IfaceTooLong(i.clone()));
            }
            if !exists(i) {
                return Err(AddError::UnknownIface(i.clone()));
            }
        }
        for i in ifaces {
            if self.iface(i).is_none() {
                self.ifaces.insert(
                    0,
                    Iface {
                        name: i.clone(),
                        link_up: true,
                        references: 0,
                    },
                );
            }
        }
        self.vnns.insert(
            0,
            Vnn {
                addr,
                mask,
                ifaces: ifaces.to_vec(),
                iface: None,
                pnn: UNKNOWN,
                delete_pending: false,
                update_in_flight: false,
                tickles: Vec::new(),
                tcp_update_needed: false,
            },
        );
        Ok(())
    }

    /// Removes an address now, and the interfaces only it used.
    pub fn delete(&mut self, idx: usize, me: u32) {
        self.unassign(idx, me);
        let v = self.vnns.remove(idx);
        for name in &v.ifaces {
            if !self.vnns.iter().any(|o| o.ifaces.contains(name)) {
                self.ifaces.retain(|i| &i.name != name);
            }
        }
    }

    /// The usable interface with the fewest addresses (first wins ties).
    pub fn best_iface(&self, idx: usize) -> Option<String> {
        let mut best: Option<&Iface> = None;
        for name in &self.vnns[idx].ifaces {
            let Some(cur) = self.iface(name) else {
                continue;
            };
            if !cur.link_up {
                continue;
            }
            if best.is_none_or(|b| cur.references < b.references) {
                best = Some(cur);
            }
        }
        best.map(|i| i.name.clone())
    }

    /// Puts the address on its best interface (kept if already on one);
    /// false when no interface is usable.
    pub fn assign(&mut self, idx: usize, me: u32) -> bool {
        if self.vnns[idx].iface.is_some() {
            return true;
        }
        let Some(best) = self.best_iface(idx) else {
            return false;
        };
        if let Some(i) = self.iface_mut(&best) {
            i.references += 1;
        }
        let v = &mut self.vnns[idx];
        v.iface = Some(best);
        v.pnn = me;
        true
    }

    /// Takes the address off its interface.
    pub fn unassign(&mut self, idx: usize, me: u32) {
        if let Some(name) = self.vnns[idx].iface.take() {
            if let Some(i) = self.iface_mut(&name) {
                i.references = i.references.saturating_sub(1);
            }
        }
        let v = &mut self.vnns[idx];
        if v.pnn == me {
            v.pnn = UNKNOWN;
        }
    }

    /// Puts the address back on `old` after a failed move (its node stays
    /// unknown, as upstream).
    pub fn restore_iface(&mut self, idx: usize, old: &str, me: u32) {
        self.unassign(idx, me);
        if let Some(i) = self.iface_mut(old) {
            i.references += 1;
            self.vnns[idx].iface = Some(old.to_string());
        }
    }

    /// Whether this node could host the address now: running, not
    /// inactive or disabled, not being deleted, some interface up.
    pub fn available(&self, idx: usize, node_ok: bool) -> bool {
        if !node_ok {
            return false;
        }
        let v = &self.vnns[idx];
        if v.delete_pending {
            return false;
        }
        let up = |n: &String| self.iface(n).is_some_and(|i| i.link_up);
        v.iface.as_ref().is_some_and(up) || v.ifaces.iter().any(up)
    }

    /// Sets an interface's link; `None` if there is no such interface,
    /// else whether it changed.
    pub fn set_link(&mut self, name: &str, up: bool) -> Option<bool> {
        let i = self.iface_mut(name)?;
        let changed = i.link_up != up;
        i.link_up = up;
        Some(changed)
    }

    /// TCP_ADD: a connection to a public address (`dst`). False when `dst`
    /// is not one.
    pub fn tcp_add(&mut self, c: &Connection, update_needed: bool) -> bool {
        if self.vnns.is_empty() {
            return true;
        }
        let Some(idx) = c.dst.ip().and_then(|a| self.find(&a)) else {
            return false;
        };
        let v = &mut self.vnns[idx];
        if !v.tickles.iter().any(|t| same_conn(t, c)) {
            v.tickles.push(*c);
            if update_needed {
                v.tcp_update_needed = true;
            }
        }
        true
    }

    /// TCP_REMOVE (upstream moves the last connection into the gap).
    pub fn tcp_remove(&mut self, c: &Connection) {
        let Some(idx) = c.dst.ip().and_then(|a| self.find(&a)) else {
            return;
        };
        let v = &mut self.vnns[idx];
        if let Some(p) = v.tickles.iter().position(|t| same_conn(t, c)) {
            v.tickles.swap_remove(p);
            v.tcp_update_needed = true;
        }
    }

    /// GET_TCP_TICKLE_LIST: the connections to `addr` (to its port, if not
    /// 0). `None`: not a public address.
    pub fn tickles(&self, addr: &SockAddr) -> Option<Vec<Connection>> {
        let idx = self.find(&addr.ip()?)?;
        let port = addr.port();
        Some(
            self.vnns[idx]
                .tickles
                .iter()
                .filter(|c| port == 0 || c.dst.port() == port)
                .copied()
                .collect(),
        )
    }
}

fn same_conn(a: &Connection, b: &Connection) -> bool {
    a.src.ip() == b.src.ip()
        && a.src.port() == b.src.port()
        && a.dst.ip() == b.dst.ip()
        && a.dst.port() == b.dst.port()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    fn table() -> IpTable {
        let mut t = IpTable::default();
        let yes = |_: &str| true;
        t.add(ip("10.0.0.1"), 24, &names(&["eth1", "eth2"]), &yes)
            .unwrap();
        t.add(ip("10.0.0.2"), 24, &names(&["eth2"]), &yes).unwrap();
        t.add(ip("10.0.0.3"), 24, &names(&["eth1", "eth2"]), &yes)
            .unwrap();
        t
    }

    #[test]
    fn newest_first_and_duplicates_refused() {
        let mut t = table();
        let order: Vec<String> = t.vnns.iter().map(|v| v.addr.to_string()).collect();
        assert_eq!(order, ["10.0.0.3", "10.0.0.2", "10.0.0.1"]);
        let ifs: Vec<&str> = t.ifaces.iter().map(|i| i.name.as_str()).collect();
        assert_eq!(ifs, ["eth2", "eth1"]);
        assert_eq!(
            t.add(ip("10.0.0.2"), 24, &names(&["eth1"]), &|_| true),
            Err(AddError::Duplicate)
        );
        assert_eq!(
            t.add(ip("10.0.0.9"), 24, &names(&["nope"]), &|i| i != "nope"),
            Err(AddError::UnknownIface("nope".into()))
        );
    }

    #[test]
    fn assignment_balances_interfaces_and_follows_links() {
        let mut t = table();
        let a1 = t.find(&ip("10.0.0.1")).unwrap();
        let a3 = t.find(&ip("10.0.0.3")).unwrap();
        assert!(t.assign(a1, 0));
        assert_eq!(t.vnns[a1].iface.as_deref(), Some("eth1"));
        assert!(t.assign(a3, 0));
        assert_eq!(t.vnns[a3].iface.as_deref(), Some("eth2"));
        assert_eq!(t.vnns[a3].pnn, 0);
        assert_eq!(t.iface("eth1").unwrap().references, 1);
        t.unassign(a3, 0);
        assert_eq!(t.vnns[a3].pnn, UNKNOWN);
        assert_eq!(t.iface("eth2").unwrap().references, 0);
        assert_eq!(t.set_link("eth2", false), Some(true));
        assert_eq!(t.set_link("eth2", false), Some(false));
        assert_eq!(t.set_link("eth9", false), None);
        let a2 = t.find(&ip("10.0.0.2")).unwrap();
        assert!(!t.available(a2, true));
        assert!(!t.assign(a2, 0));
        assert!(t.available(a3, true));
        assert!(!t.available(a3, false));
    }

    #[test]
    fn delete_collects_unused_interfaces() {
        let mut t = table();
        t.delete(t.find(&ip("10.0.0.2")).unwrap(), 0);
        assert_eq!(t.ifaces.len(), 2, "eth2 is still used");
        t.delete(t.find(&ip("10.0.0.1")).unwrap(), 0);
        t.delete(t.find(&ip("10.0.0.3")).unwrap(), 0);
        assert!(t.ifaces.is_empty());
    }

    #[test]
    fn tickles_are_per_address_and_port() {
        let mut t = table();
        let c = |cp: u16, sp: u16| Connection {
            src: SockAddr::parse_with_port(&format!("192.168.1.5:{cp}")).unwrap(),
            dst: SockAddr::parse_with_port(&format!("10.0.0.1:{sp}")).unwrap(),
        };
        assert!(t.tcp_add(&c(1000, 445), true));
        assert!(t.tcp_add(&c(1000, 445), true));
        assert!(t.tcp_add(&c(1001, 139), true));
        let all = SockAddr::parse_with_port("10.0.0.1:0").unwrap();
        let smb = SockAddr::parse_with_port("10.0.0.1:445").unwrap();
        assert_eq!(t.tickles(&all).unwrap().len(), 2);
        assert_eq!(t.tickles(&smb).unwrap(), vec![c(1000, 445)]);
        t.tcp_remove(&c(1000, 445));
        assert!(t.tickles(&smb).unwrap().is_empty());
        let other = Connection {
            src: c(1, 1).src,
            dst: SockAddr::parse_with_port("10.9.9.9:445").unwrap(),
        };
        assert!(!t.tcp_add(&other, true));
        assert!(t.tickles(&other.dst).is_none());
    }
}
