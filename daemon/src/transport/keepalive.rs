//! Keepalive accounting and the keepalive version rule, as pure functions
//! the control core's transport task drives (upstream
//! `ctdb_keepalive.c`).
//!
//! * Every `KeepaliveInterval` the control core looks at every other node:
//!   a disconnected node that was heard from since the last look becomes
//!   connected; a connected node not heard from gets a dead count, and at
//!   `KeepaliveLimit` it is declared dead; every connected node (and a node
//!   just declared dead) is sent a keepalive.
//! * A keepalive carries `(major << 16) | minor` and the sender's uptime
//!   in seconds. Unless `AllowMixedVersions` is set, a header-only
//!   (pre-4.x) keepalive, or a different version from a node that has been
//!   up longer (or as long with a higher version), means this node must
//!   shut down: the older daemon of a mixed cluster gives way.
//!
//! The same accounting exists in `cluster::membership` for the daemon's
//! node table; this copy lets the transport run (and be tested) on its own.

use ctdb_protocol::ReqKeepalive;

/// What [`check_version`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VersionVerdict {
    Ok,
    /// Header-only keepalive from a pre-4.x node.
    Missing,
    /// The peer runs another version and wins: this node must stop.
    Mismatch {
        theirs: u32,
        ours: u32,
    },
}

/// Upstream's `ctdb_request_keepalive` rule.
pub fn check_version(
    ka: Option<ReqKeepalive>,
    my_version: u32,
    my_uptime: u32,
    allow_mixed: bool,
) -> VersionVerdict {
    if allow_mixed {
        return VersionVerdict::Ok;
    }
    let Some(ka) = ka else {
        return VersionVerdict::Missing;
    };
    if ka.version != my_version
        && (ka.uptime > my_uptime || (ka.uptime == my_uptime && ka.version > my_version))
    {
        return VersionVerdict::Mismatch {
            theirs: ka.version,
            ours: my_version,
        };
    }
    VersionVerdict::Ok
}

/// Per-node keepalive counters.
#[derive(Debug, Clone, Copy, Default)]
pub struct Liveness {
    pub connected: bool,
    pub rx_cnt: u32,
    pub dead_count: u32,
}

/// What one keepalive round decided for one node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Round {
    /// The node became connected (heard from while disconnected).
    pub connected: bool,
    /// The node reached the keepalive limit.
    pub dead: bool,
    /// Send it a keepalive.
    pub send_keepalive: bool,
}

impl Liveness {
    /// A packet arrived from the node.
    pub fn on_rx(&mut self) {
        self.rx_cnt = self.rx_cnt.saturating_add(1);
    }

    /// One `KeepaliveInterval` round (`ctdb_check_for_dead_nodes`).
    pub fn round(&mut self, limit: u32) -> Round {
        let mut r = Round {
            connected: false,
            dead: false,
            send_keepalive: false,
        };
        if !self.connected {
            if self.rx_cnt != 0 {
                self.connected = true;
                self.dead_count = 0;
                r.connected = true;
            }
            return r;
        }
        if self.rx_cnt == 0 {
            self.dead_count += 1;
        } else {
            self.dead_count = 0;
        }
        self.rx_cnt = 0;
        if self.dead_count >= limit {
            self.connected = false;
            self.dead_count = 0;
            r.dead = true;
        }
        r.send_keepalive = true;
        r
    }

    /// The node is gone (transport broke or keepalive limit).
    pub fn dead(&mut self) {
        *self = Liveness::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const V: u32 = (4 << 16) | 17;

    #[test]
    fn version_rule() {
        let ka = |version, uptime| Some(ReqKeepalive { version, uptime });
        assert_eq!(check_version(ka(V, 100), V, 5, false), VersionVerdict::Ok);
        assert_eq!(check_version(None, V, 5, false), VersionVerdict::Missing);
        assert_eq!(check_version(None, V, 5, true), VersionVerdict::Ok);
        // Another version, peer up longer: we give way.
        assert!(matches!(
            check_version(ka(V + 1, 10), V, 5, false),
            VersionVerdict::Mismatch { .. }
        ));
        // Another version, we are up longer: the peer gives way.
        assert_eq!(check_version(ka(V + 1, 4), V, 5, false), VersionVerdict::Ok);
        // Same uptime: the higher version wins.
        assert!(matches!(
            check_version(ka(V + 1, 5), V, 5, false),
            VersionVerdict::Mismatch { .. }
        ));
        assert_eq!(check_version(ka(V - 1, 5), V, 5, false), VersionVerdict::Ok);
        assert_eq!(check_version(ka(V + 1, 10), V, 5, true), VersionVerdict::Ok);
    }

    #[test]
    fn dead_after_limit_silent_rounds() {
        let mut l = Liveness::default();
        assert!(!l.round(3).send_keepalive);
        l.on_rx();
        assert!(l.round(3).connected);
        l.on_rx();
        assert!(!l.round(3).dead);
        assert!(!l.round(3).dead);
        assert!(!l.round(3).dead);
        let r = l.round(3);
        assert!(r.dead && r.send_keepalive);
        assert!(!l.connected);
    }
}
