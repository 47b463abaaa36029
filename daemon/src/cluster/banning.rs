//! Banning: this node's ban with its timed release, and the leader's
//! culprit accounting that decides whom to ban.
//!
//! A ban takes a misbehaving node out of the cluster for
//! `RecoveryBanPeriod` seconds: it becomes `BANNED` (inactive), leaves the
//! vnn map at the next recovery, freezes its databases and cannot be
//! leader. Two independent parts:
//!
//! * [`LocalBan`] (main daemon, `ctdb_banning.c`): SET_BAN_STATE for this
//!   node. A time of 0 unbans; otherwise the node is banned (ignored when
//!   `EnableBans` is 0) until the deadline. At the deadline the ban is
//!   lifted only if all databases were frozen; if not, the node bans
//!   itself again for another period. A ban only targets its own pnn.
//! * [`Culprits`] (recovery daemon, `ctdb_recoverd.c`): the leader counts
//!   credits per node for each problem a node caused; credits older than
//!   `RecoveryGracePeriod` are forgiven when new ones arrive; a node with
//!   `2 × number of nodes` credits is banned and its count reset; a
//!   successful recovery resets all counts.
//!
//! Invariant: a node is `BANNED` exactly while [`LocalBan::is_banned`].

use super::{secs, BanState, Millis, Pnn, Tunables};

/// What a SET_BAN_STATE or a tick did to this node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BanChange {
    /// Nothing changed (or bans are disabled).
    None,
    /// The node is now banned; `newly` is false when an existing ban was
    /// replaced (upstream then does not redo "become inactive").
    Banned { newly: bool },
    /// The ban ended.
    Unbanned,
}

/// SET_BAN_STATE refused: the ban names another node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotThisNode(pub Pnn);

/// This node's ban.
#[derive(Debug, Clone, Default)]
pub struct LocalBan {
    ban: Option<(BanState, Millis)>,
}

impl LocalBan {
    pub fn is_banned(&self) -> bool {
        self.ban.is_some()
    }

    /// GET_BAN_STATE: the ban as set (time in seconds), or time 0.
    pub fn get(&self, my_pnn: Pnn) -> BanState {
        match self.ban {
            Some((b, _)) => b,
            None => BanState {
                pnn: my_pnn,
                time: 0,
            },
        }
    }

    /// When the ban ends, if banned.
    pub fn deadline(&self) -> Option<Millis> {
        self.ban.map(|(_, d)| d)
    }

    /// SET_BAN_STATE for this node.
    pub fn set(
        &mut self,
        my_pnn: Pnn,
        b: BanState,
        now: Millis,
        tun: &Tunables,
    ) -> Result<BanChange, NotThisNode> {
        if b.pnn != my_pnn {
            return Err(NotThisNode(b.pnn));
        }
        let already = self.ban.take().is_some();
        if b.time == 0 {
            return Ok(if already {
                BanChange::Unbanned
            } else {
                BanChange::None
            });
        }
        if !tun.enable_bans {
            // Upstream drops the old ban state here but leaves the flag;
            // the caller keeps BANNED only while is_banned().
            return Ok(if already {
                BanChange::Unbanned
            } else {
                BanChange::None
            });
        }
        self.ban = Some((b, now + secs(b.time)));
        Ok(BanChange::Banned { newly: !already })
    }

    /// Ban timer: at the deadline the ban ends if `all_frozen`, else the
    /// node is banned again for `RecoveryBanPeriod`.
    pub fn tick(
        &mut self,
        my_pnn: Pnn,
        now: Millis,
        all_frozen: bool,
        tun: &Tunables,
    ) -> BanChange {
        match self.ban {
            Some((_, d)) if now >= d => {
                if all_frozen {
                    self.ban = None;
                    BanChange::Unbanned
                } else {
                    let b = BanState {
                        pnn: my_pnn,
                        time: tun.recovery_ban_period,
                    };
                    self.ban = Some((b, now + secs(b.time)));
                    BanChange::Banned { newly: false }
                }
            }
            _ => BanChange::None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Entry {
    pnn: Pnn,
    count: u32,
    last: Millis,
}

/// The leader's banning credits per node.
#[derive(Debug, Clone, Default)]
pub struct Culprits {
    entries: Vec<Entry>,
    last_culprit: Option<Pnn>,
}

impl Culprits {
    /// Adds `count` credits to `pnn` (`ctdb_set_culprit_count`), forgiving
    /// older credits past the grace period.
    pub fn add(&mut self, pnn: Pnn, count: u32, now: Millis, tun: &Tunables) {
        match self.entries.iter_mut().find(|e| e.pnn == pnn) {
            Some(e) => {
                if e.count > 0 && now.saturating_sub(e.last) > secs(tun.recovery_grace_period) {
                    e.count = 0;
                }
                e.count += count;
                e.last = now;
            }
            None => self.entries.push(Entry {
                pnn,
                count,
                last: now,
            }),
        }
        self.last_culprit = Some(pnn);
    }

    /// Credits of a node.
    pub fn count(&self, pnn: Pnn) -> u32 {
        self.entries
            .iter()
            .find(|e| e.pnn == pnn)
            .map_or(0, |e| e.count)
    }

    /// The node that caused the latest problem.
    pub fn last_culprit(&self) -> Option<Pnn> {
        self.last_culprit
    }

    /// Forgets every credit (after a successful recovery).
    pub fn reset(&mut self) {
        self.entries.clear();
    }

    /// Nodes that reached `2 × num_nodes` credits; their counts are reset
    /// (`ban_misbehaving_nodes`). The caller bans each one.
    pub fn take_misbehaving(&mut self, num_nodes: usize) -> Vec<Pnn> {
        let limit = 2 * num_nodes as u32;
        let mut out = Vec::new();
        for e in &mut self.entries {
            if e.count >= limit {
                out.push(e.pnn);
                e.count = 0;
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ban_expires_only_when_frozen() {
        let tun = Tunables::default();
        let mut b = LocalBan::default();
        let st = BanState { pnn: 2, time: 10 };
        assert_eq!(b.set(1, st, 0, &tun), Err(NotThisNode(2)));
        let st = BanState { pnn: 1, time: 10 };
        assert_eq!(b.set(1, st, 0, &tun), Ok(BanChange::Banned { newly: true }));
        assert_eq!(
            b.set(1, st, 0, &tun),
            Ok(BanChange::Banned { newly: false })
        );
        assert_eq!(b.tick(1, 9_999, true, &tun), BanChange::None);
        assert_eq!(
            b.tick(1, 10_000, false, &tun),
            BanChange::Banned { newly: false }
        );
        assert_eq!(b.deadline(), Some(10_000 + secs(tun.recovery_ban_period)));
        assert_eq!(b.tick(1, 10_000 + 300_000, true, &tun), BanChange::Unbanned);
        assert!(!b.is_banned());
        assert_eq!(b.get(1), BanState { pnn: 1, time: 0 });
    }

    #[test]
    fn unban_and_disabled_bans() {
        let mut tun = Tunables::default();
        let mut b = LocalBan::default();
        b.set(0, BanState { pnn: 0, time: 5 }, 0, &tun).unwrap();
        assert_eq!(
            b.set(0, BanState { pnn: 0, time: 0 }, 1, &tun),
            Ok(BanChange::Unbanned)
        );
        tun.enable_bans = false;
        assert_eq!(
            b.set(0, BanState { pnn: 0, time: 5 }, 1, &tun),
            Ok(BanChange::None)
        );
        assert!(!b.is_banned());
    }

    #[test]
    fn culprits_threshold_grace_and_reset() {
        let tun = Tunables::default();
        let mut c = Culprits::default();
        for i in 0..5 {
            c.add(1, 1, i, &tun);
        }
        assert!(c.take_misbehaving(3).is_empty(), "5 < 2*3");
        c.add(1, 1, 10, &tun);
        assert_eq!(c.take_misbehaving(3), vec![1]);
        assert_eq!(c.count(1), 0);
        // Old credits are forgiven after the grace period.
        c.add(2, 5, 0, &tun);
        c.add(2, 1, secs(tun.recovery_grace_period) + 1, &tun);
        assert_eq!(c.count(2), 1);
        assert_eq!(c.last_culprit(), Some(2));
        c.reset();
        assert_eq!(c.count(2), 0);
    }
}
