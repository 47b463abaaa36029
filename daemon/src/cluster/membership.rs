//! The node table: every node of the nodes file with its flags, plus
//! keepalive accounting, as the main ctdbd keeps it.
//!
//! Why a machine of its own: connectivity is the one piece of cluster
//! state each node decides alone (no other node may set or clear a peer's
//! `DISCONNECTED` flag here), and everything else — elections, recovery,
//! the node map other nodes and the CLI see — reads it.
//!
//! # Behaviour (upstream `ctdb_server.c`, `ctdb_keepalive.c`, `ctdb_monitor.c`)
//!
//! * At start every other node is `DISCONNECTED | UNHEALTHY` (deleted ones
//!   `DELETED | DISCONNECTED`); this node is `UNHEALTHY` until its first
//!   successful monitor event ([`Membership::set_own_health`]).
//! * Every packet from a node counts as a sign of life
//!   ([`Membership::on_rx`]). Every `KeepaliveInterval` seconds
//!   ([`Membership::tick`]) a disconnected node that was heard from becomes
//!   connected; a connected node not heard from in the interval gets a
//!   dead count, and at `KeepaliveLimit` it is declared dead
//!   (`DISCONNECTED | UNHEALTHY`, [`Action::RestartTransport`]). Connected
//!   nodes are sent [`Action::SendKeepalive`].
//! * A transport that connects or breaks reports it directly
//!   ([`Membership::on_transport_connected`], [`Membership::node_dead`]).
//! * `MODIFY_FLAGS` from the leader ([`Membership::modify_flags`]) may
//!   change any flag of a connected *peer* except `DISCONNECTED`; changes
//!   for this node or for disconnected nodes are ignored.
//!
//! Invariant: this node's own entry is never `DISCONNECTED`, and only this
//! machine's connectivity observations set or clear `DISCONNECTED`.

use super::{
    secs, Action, Millis, NodeFlagChange, Pnn, Tunables, NODE_FLAGS_DELETED,
    NODE_FLAGS_DISCONNECTED, NODE_FLAGS_UNHEALTHY,
};

/// One node of the nodes file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeEntry {
    pub pnn: Pnn,
    /// The node's address as written in the nodes file.
    pub addr: String,
    pub flags: u32,
    rx_cnt: u32,
    dead_count: u32,
}

/// The node table of one node.
#[derive(Debug, Clone)]
pub struct Membership {
    my_pnn: Pnn,
    nodes: Vec<NodeEntry>,
    capabilities: u32,
    next_keepalive: Millis,
}

/// Why [`Membership::modify_flags`] refused a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnknownNode(pub Pnn);

impl Membership {
    /// A table for the nodes file `addrs` (index = pnn; `None` = deleted
    /// node), seen from `my_pnn`, with this node's capabilities.
    pub fn new(
        my_pnn: Pnn,
        addrs: Vec<Option<String>>,
        capabilities: u32,
        now: Millis,
        tun: &Tunables,
    ) -> Membership {
        let nodes = addrs
            .into_iter()
            .enumerate()
            .map(|(i, a)| {
                let pnn = i as Pnn;
                let mut flags = match a {
                    Some(_) => NODE_FLAGS_UNHEALTHY | NODE_FLAGS_DISCONNECTED,
                    None => NODE_FLAGS_DELETED | NODE_FLAGS_DISCONNECTED,
                };
                if pnn == my_pnn {
                    flags &= !NODE_FLAGS_DISCONNECTED;
                }
                NodeEntry {
                    pnn,
                    addr: a.unwrap_or_default(),
                    flags,
                    rx_cnt: 0,
                    dead_count: 0,
                }
            })
            .collect();
        Membership {
            my_pnn,
            nodes,
            capabilities,
            next_keepalive: now + secs(tun.keepalive_interval),
        }
    }

    pub fn my_pnn(&self) -> Pnn {
        self.my_pnn
    }

    /// This node's capabilities (`CTDB_CAP_*`).
    pub fn capabilities(&self) -> u32 {
        self.capabilities
    }

    pub fn set_capabilities(&mut self, caps: u32) {
        self.capabilities = caps;
    }

    pub fn nodes(&self) -> &[NodeEntry] {
        &self.nodes
    }

    pub fn num_nodes(&self) -> usize {
        self.nodes.len()
    }

    /// The node map as GET_NODEMAP returns it: `(pnn, flags)` by pnn.
    pub fn nodemap(&self) -> Vec<(Pnn, u32)> {
        self.nodes.iter().map(|n| (n.pnn, n.flags)).collect()
    }

    pub fn flags(&self, pnn: Pnn) -> Option<u32> {
        self.node(pnn).map(|n| n.flags)
    }

    pub fn own_flags(&self) -> u32 {
        self.flags(self.my_pnn).unwrap_or(0)
    }

    /// Sets or clears bits of this node's own flags (BANNED, STOPPED,
    /// PERMANENTLY_DISABLED, UNHEALTHY); `DISCONNECTED` is never set.
    pub fn update_own_flags(&mut self, set: u32, clear: u32) {
        let me = self.my_pnn;
        if let Some(n) = self.node_mut(me) {
            n.flags = (n.flags | set) & !clear & !NODE_FLAGS_DISCONNECTED;
        }
    }

    /// Result of a monitor event. Returns the flag change to hand to the
    /// recovery daemon (PUSH_NODE_FLAGS) when health changed.
    pub fn set_own_health(&mut self, healthy: bool) -> Option<NodeFlagChange> {
        let old = self.own_flags();
        if healthy {
            self.update_own_flags(0, NODE_FLAGS_UNHEALTHY);
        } else {
            self.update_own_flags(NODE_FLAGS_UNHEALTHY, 0);
        }
        let new = self.own_flags();
        (old != new).then_some(NodeFlagChange {
            pnn: self.my_pnn,
            new_flags: new,
            old_flags: old,
        })
    }

    pub fn is_connected(&self, pnn: Pnn) -> bool {
        self.flags(pnn)
            .is_some_and(|f| f & NODE_FLAGS_DISCONNECTED == 0)
    }

    /// Connected nodes, this one included (`list_of_connected_nodes`).
    pub fn connected(&self) -> Vec<Pnn> {
        self.nodes
            .iter()
            .filter(|n| n.flags & NODE_FLAGS_DISCONNECTED == 0)
            .map(|n| n.pnn)
            .collect()
    }

    /// A packet arrived from `pnn`.
    pub fn on_rx(&mut self, pnn: Pnn) {
        if pnn == self.my_pnn {
            return;
        }
        if let Some(n) = self.node_mut(pnn) {
            n.rx_cnt = n.rx_cnt.saturating_add(1);
        }
    }

    /// The transport to `pnn` came up (`ctdb_node_connected`). Returns
    /// whether the node was disconnected before.
    pub fn on_transport_connected(&mut self, pnn: Pnn) -> bool {
        if pnn == self.my_pnn {
            return false;
        }
        match self.node_mut(pnn) {
            Some(n) if n.flags & NODE_FLAGS_DISCONNECTED != 0 => {
                n.flags &= !NODE_FLAGS_DISCONNECTED;
                n.dead_count = 0;
                true
            }
            _ => false,
        }
    }

    /// `pnn` is dead (keepalive limit, or its transport broke). Returns
    /// whether it was connected; the caller must then fail every control
    /// outstanding to that node.
    pub fn node_dead(&mut self, pnn: Pnn) -> bool {
        if pnn == self.my_pnn {
            return false;
        }
        match self.node_mut(pnn) {
            Some(n) if n.flags & NODE_FLAGS_DISCONNECTED == 0 => {
                n.flags |= NODE_FLAGS_DISCONNECTED | NODE_FLAGS_UNHEALTHY;
                n.rx_cnt = 0;
                n.dead_count = 0;
                true
            }
            _ => false,
        }
    }

    /// When [`Membership::tick`] next wants to run.
    pub fn next_wakeup(&self) -> Millis {
        self.next_keepalive
    }

    /// Keepalive accounting (`ctdb_check_for_dead_nodes`). Returns the
    /// keepalives to send and the nodes declared dead
    /// ([`Action::RestartTransport`]).
    pub fn tick(&mut self, now: Millis, tun: &Tunables) -> Vec<Action> {
        let mut out = Vec::new();
        if now < self.next_keepalive {
            return out;
        }
        self.next_keepalive = now + secs(tun.keepalive_interval.max(1));
        let me = self.my_pnn;
        for n in &mut self.nodes {
            if n.flags & NODE_FLAGS_DELETED != 0 || n.pnn == me {
                continue;
            }
            if n.flags & NODE_FLAGS_DISCONNECTED != 0 {
                if n.rx_cnt != 0 {
                    n.flags &= !NODE_FLAGS_DISCONNECTED;
                    n.dead_count = 0;
                }
                continue;
            }
            if n.rx_cnt == 0 {
                n.dead_count += 1;
            } else {
                n.dead_count = 0;
            }
            n.rx_cnt = 0;
            if n.dead_count >= tun.keepalive_limit {
                n.flags |= NODE_FLAGS_DISCONNECTED | NODE_FLAGS_UNHEALTHY;
                n.dead_count = 0;
                out.push(Action::RestartTransport(n.pnn));
                out.push(Action::SendKeepalive(n.pnn));
                continue;
            }
            out.push(Action::SendKeepalive(n.pnn));
        }
        out
    }

    /// MODIFY_FLAGS (`ctdb_control_modflags`): returns whether the flags
    /// of the node changed.
    pub fn modify_flags(&mut self, c: &NodeFlagChange) -> Result<bool, UnknownNode> {
        if c.pnn == self.my_pnn {
            return Ok(false);
        }
        let n = self.node_mut(c.pnn).ok_or(UnknownNode(c.pnn))?;
        if n.flags & NODE_FLAGS_DISCONNECTED != 0 {
            return Ok(false);
        }
        let old = n.flags;
        n.flags = (old & NODE_FLAGS_DISCONNECTED) | (c.new_flags & !NODE_FLAGS_DISCONNECTED);
        Ok(n.flags != old)
    }

    /// RELOAD_NODES_FILE (`ctdb_control_reload_nodes_file`): the table
    /// becomes the new nodes file `addrs`. A node at the same pnn with the
    /// same address keeps its entry (flags, keepalive accounting); any
    /// other node starts as at start-up (`DISCONNECTED | UNHEALTHY`, or
    /// `DELETED`). Returns the pnns that need a (new) connection: present
    /// now and new or changed.
    pub fn reload(&mut self, addrs: Vec<Option<String>>) -> Vec<Pnn> {
        let mut fresh = Vec::new();
        let old = std::mem::take(&mut self.nodes);
        for (i, a) in addrs.into_iter().enumerate() {
            let pnn = i as Pnn;
            let kept = old
                .get(i)
                .filter(|o| o.flags & NODE_FLAGS_DELETED == 0 && a.as_deref() == Some(&o.addr));
            if let Some(o) = kept {
                self.nodes.push(o.clone());
                continue;
            }
            let mut flags = match a {
                Some(_) => NODE_FLAGS_UNHEALTHY | NODE_FLAGS_DISCONNECTED,
                None => NODE_FLAGS_DELETED | NODE_FLAGS_DISCONNECTED,
            };
            if pnn == self.my_pnn {
                flags &= !NODE_FLAGS_DISCONNECTED;
            }
            if a.is_some() && pnn != self.my_pnn {
                fresh.push(pnn);
            }
            self.nodes.push(NodeEntry {
                pnn,
                addr: a.unwrap_or_default(),
                flags,
                rx_cnt: 0,
                dead_count: 0,
            });
        }
        fresh
    }

    fn node(&self, pnn: Pnn) -> Option<&NodeEntry> {
        self.nodes.get(pnn as usize).filter(|n| n.pnn == pnn)
    }

    fn node_mut(&mut self, pnn: Pnn) -> Option<&mut NodeEntry> {
        self.nodes.get_mut(pnn as usize).filter(|n| n.pnn == pnn)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reload_keeps_same_nodes_and_adds_deletes_others() {
        let (mut m, _) = table();
        m.on_transport_connected(1);
        let fresh = m.reload(vec![
            Some("10.0.0.1".into()),
            None,
            Some("10.0.0.3".into()),
            Some("10.0.0.4".into()),
        ]);
        assert_eq!(fresh, vec![2, 3]);
        assert_eq!(m.num_nodes(), 4);
        assert_eq!(m.flags(0), Some(NODE_FLAGS_UNHEALTHY));
        assert_eq!(
            m.flags(1),
            Some(NODE_FLAGS_DELETED | NODE_FLAGS_DISCONNECTED)
        );
        assert_eq!(
            m.flags(2),
            Some(NODE_FLAGS_UNHEALTHY | NODE_FLAGS_DISCONNECTED)
        );
        assert_eq!(m.nodes()[3].addr, "10.0.0.4");
        // Unchanged nodes keep their state (node 2 connected stays so).
        m.on_transport_connected(2);
        let fresh = m.reload(vec![
            Some("10.0.0.1".into()),
            None,
            Some("10.0.0.3".into()),
            Some("10.0.0.4".into()),
        ]);
        assert!(fresh.is_empty());
        assert!(m.is_connected(2));
    }

    fn table() -> (Membership, Tunables) {
        let tun = Tunables::default();
        let m = Membership::new(
            0,
            vec![Some("10.0.0.1".into()), Some("10.0.0.2".into()), None],
            super::super::CTDB_CAP_DEFAULT,
            0,
            &tun,
        );
        (m, tun)
    }

    #[test]
    fn initial_flags_follow_upstream() {
        let (m, _) = table();
        assert_eq!(m.flags(0), Some(NODE_FLAGS_UNHEALTHY));
        assert_eq!(
            m.flags(1),
            Some(NODE_FLAGS_UNHEALTHY | NODE_FLAGS_DISCONNECTED)
        );
        assert_eq!(
            m.flags(2),
            Some(NODE_FLAGS_DELETED | NODE_FLAGS_DISCONNECTED)
        );
        assert_eq!(m.connected(), vec![0]);
    }

    #[test]
    fn keepalive_connects_then_declares_dead_after_limit() {
        let (mut m, tun) = table();
        m.on_rx(1);
        let acts = m.tick(5000, &tun);
        assert!(m.is_connected(1));
        assert!(acts.is_empty(), "no keepalive on the connecting round");
        // Heard once in the next interval: stays alive.
        m.on_rx(1);
        let acts = m.tick(10_000, &tun);
        assert_eq!(acts, vec![Action::SendKeepalive(1)]);
        // Silence for KeepaliveLimit intervals.
        let mut t = 10_000;
        for i in 1..=tun.keepalive_limit {
            t += 5000;
            let acts = m.tick(t, &tun);
            if i < tun.keepalive_limit {
                assert!(m.is_connected(1), "dead too early at {i}");
                assert_eq!(acts, vec![Action::SendKeepalive(1)]);
            } else {
                assert!(!m.is_connected(1));
                assert!(acts.contains(&Action::RestartTransport(1)));
            }
        }
        assert_eq!(
            m.flags(1).unwrap() & (NODE_FLAGS_DISCONNECTED | NODE_FLAGS_UNHEALTHY),
            NODE_FLAGS_DISCONNECTED | NODE_FLAGS_UNHEALTHY
        );
    }

    #[test]
    fn modify_flags_keeps_local_connectivity() {
        let (mut m, _) = table();
        let c = NodeFlagChange {
            pnn: 1,
            new_flags: super::super::NODE_FLAGS_BANNED,
            old_flags: 0,
        };
        // Disconnected: ignored.
        assert_eq!(m.modify_flags(&c), Ok(false));
        m.on_transport_connected(1);
        assert_eq!(m.modify_flags(&c), Ok(true));
        assert_eq!(m.flags(1), Some(super::super::NODE_FLAGS_BANNED));
        // Another node cannot mark it disconnected.
        let c2 = NodeFlagChange {
            pnn: 1,
            new_flags: NODE_FLAGS_DISCONNECTED,
            old_flags: 0,
        };
        assert_eq!(m.modify_flags(&c2), Ok(true));
        assert!(m.is_connected(1));
        // Own flags are not overridden.
        let c3 = NodeFlagChange {
            pnn: 0,
            new_flags: super::super::NODE_FLAGS_BANNED,
            old_flags: 0,
        };
        assert_eq!(m.modify_flags(&c3), Ok(false));
        assert_eq!(
            m.modify_flags(&NodeFlagChange {
                pnn: 7,
                new_flags: 0,
                old_flags: 0
            }),
            Err(UnknownNode(7))
        );
    }

    #[test]
    fn own_health_reports_changes_once() {
        let (mut m, _) = table();
        let c = m.set_own_health(true).expect("became healthy");
        assert_eq!((c.old_flags, c.new_flags), (NODE_FLAGS_UNHEALTHY, 0));
        assert_eq!(m.set_own_health(true), None);
        assert!(m.set_own_health(false).is_some());
    }
}
