//! Leader election: which node is the leader (recovery master) that
//! checks the cluster and runs recoveries.
//!
//! Why it matters: two leaders would run two recoveries at once and could
//! push stale data over fresh. Samba 4.17 prevents that with the cluster
//! lock when one is configured, and with an election exchange otherwise.
//!
//! # With a cluster lock (`[cluster] recovery lock`)
//!
//! The leader is whoever holds the lock. An election is started by a
//! `LEADER` broadcast of `CTDB_UNKNOWN_PNN`; every node that may lead and
//! does not hold the lock sets the leader to unknown and starts the mutex
//! helper ([`Action::TakeClusterLock`]); the one that gets `'0'` is the
//! leader, the others (`'1'`, contention) learn the leader from its next
//! `LEADER` broadcast. A node holding the lock keeps it (stability).
//!
//! # Without a lock
//!
//! `ELECTION` messages carry a node's pnn, flags and priority time (when
//! its recovery daemon started, or last became inactive). A node wins
//! against a message if it may lead and the sender is inactive, or it has
//! the earlier priority time, or the same time and the higher pnn. On a
//! message it would win, a node re-sends its own data after 0.5 s; on one
//! it loses, it adopts the sender as leader. The election ends
//! `ElectionTimeout` s after the last message (0.5 s with fast start); the
//! winner then takes the lock if one is configured (and bans itself if it
//! cannot).
//!
//! # Leader broadcast and timeout
//!
//! Every second the leader sends `LEADER(pnn)` to all connected nodes (and
//! itself). A node that hears no broadcast for `leader timeout` seconds
//! forces an election: it sets recovery mode ACTIVE on the active nodes,
//! broadcasts `LEADER(UNKNOWN)` and proceeds as above. A node that can no
//! longer lead (banned, stopped, lost the RECMASTER capability) drops
//! leadership and releases the lock at the next broadcast tick; losing the
//! lock's helper forces an election.
//!
//! The state lives in [`ElectionState`], part of the recovery daemon
//! machine ([`super::recoverd::Recoverd`]); the handlers below are its
//! election half.

use super::recoverd::{LocalView, Recoverd};
use super::recovery::Round;
use super::{
    Action, Dest, ElectionMessage, LockStatus, Message, Millis, Pnn, Timeval, CTDB_CAP_RECMASTER,
    CTDB_RECOVERY_ACTIVE, CTDB_UNKNOWN_PNN, NODE_FLAGS_DISCONNECTED, NODE_FLAGS_INACTIVE,
};

/// The cluster lock as this node's recovery daemon sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockState {
    /// Not held and not being taken.
    Free,
    /// The helper runs; what to do with its answer.
    Taking(LockPurpose),
    /// The helper reported `'0'` and is still running.
    Held,
}

/// Why the lock is being taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockPurpose {
    /// `cluster_lock_election`: become leader on success.
    Election,
    /// End of an election won without a lock-based election: ban self on
    /// failure.
    ElectionEnd,
}

/// Election half of the recovery daemon's state.
#[derive(Debug, Clone)]
pub struct ElectionState {
    pub leader: Pnn,
    pub in_progress: bool,
    /// When the running election ends.
    pub deadline: Option<Millis>,
    /// When to (re)send our election message.
    pub send_at: Option<Millis>,
    /// Start time used as election priority (earlier wins).
    pub priority_time: Millis,
    /// Next leader broadcast tick.
    pub broadcast_at: Option<Millis>,
    /// When a missing leader broadcast forces an election.
    pub leader_timeout_at: Option<Millis>,
    pub lock: LockState,
    pub fast_start: bool,
    /// force_election's SET_RECMODE ACTIVE round, while it runs.
    pub(crate) force: Option<Round>,
    /// Elections this node started.
    pub forced: u64,
}

impl ElectionState {
    pub fn new(now: Millis, fast_start: bool) -> ElectionState {
        ElectionState {
            leader: CTDB_UNKNOWN_PNN,
            in_progress: false,
            deadline: None,
            send_at: None,
            priority_time: now,
            broadcast_at: None,
            leader_timeout_at: None,
            lock: LockState::Free,
            fast_start,
            force: None,
            forced: 0,
        }
    }
}

/// Milliseconds (wall clock) as a timeval, for election messages.
pub fn timeval(ms: Millis) -> Timeval {
    Timeval {
        tv_sec: (ms / 1000) as i64,
        tv_usec: ((ms % 1000) * 1000) as i64,
    }
}

fn cmp_timeval(a: &Timeval, b: &Timeval) -> std::cmp::Ordering {
    (a.tv_sec, a.tv_usec).cmp(&(b.tv_sec, b.tv_usec))
}

/// Whether a node with these flags and capabilities may lead.
pub fn can_be_leader(own_flags: u32, capabilities: u32) -> bool {
    own_flags & NODE_FLAGS_INACTIVE == 0 && capabilities & CTDB_CAP_RECMASTER != 0
}

/// This node's election data (`ctdb_election_data`).
pub fn election_data(
    pnn: Pnn,
    priority_time: Millis,
    now: Millis,
    view: &LocalView,
) -> ElectionMessage {
    let own_flags = view.own_flags(pnn);
    let mut em = ElectionMessage {
        num_connected: view
            .nodemap
            .iter()
            .filter(|(_, f)| f & NODE_FLAGS_DISCONNECTED == 0)
            .count() as u32,
        priority_time: timeval(priority_time),
        pnn,
        node_flags: own_flags,
    };
    if !can_be_leader(own_flags, view.capabilities) {
        em.num_connected = 0;
        em.priority_time = timeval(now);
    }
    em
}

/// Whether this node beats `em` (`ctdb_election_win`). 4.17 does not
/// compare `num_connected`.
pub fn election_win(mine: &ElectionMessage, can_lead: bool, em: &ElectionMessage) -> bool {
    if !can_lead {
        return false;
    }
    if em.node_flags & NODE_FLAGS_INACTIVE != 0 {
        return true;
    }
    match cmp_timeval(&em.priority_time, &mine.priority_time) {
        std::cmp::Ordering::Greater => true,
        std::cmp::Ordering::Less => false,
        std::cmp::Ordering::Equal => mine.pnn > em.pnn,
    }
}

impl Recoverd {
    fn election_period(&self) -> Millis {
        if self.el.fast_start {
            500
        } else {
            super::secs(self.tun.election_timeout)
        }
    }

    pub(crate) fn can_lead(&self, view: &LocalView) -> bool {
        can_be_leader(view.own_flags(self.pnn), view.capabilities)
    }

    /// `LEADER` broadcast tick (every second).
    pub(crate) fn broadcast_tick(&mut self, now: Millis, view: &LocalView, out: &mut Vec<Action>) {
        self.el.broadcast_at = Some(now + 1000);
        if !self.can_lead(view) {
            if self.el.leader == self.pnn {
                self.el.leader = CTDB_UNKNOWN_PNN;
            }
            if self.lock_enabled && self.el.lock != LockState::Free {
                self.release_lock(out);
            }
            return;
        }
        if self.el.leader != self.pnn || self.el.in_progress {
            return;
        }
        // Deviation: with a cluster lock only its holder announces itself
        // (upstream also broadcasts in the window between losing the lock
        // and the forced election, misleading the next holder).
        if self.lock_enabled && self.el.lock != LockState::Held {
            return;
        }
        out.push(Action::Message {
            dest: Dest::Connected,
            msg: Message::Leader(self.pnn),
        });
    }

    pub(crate) fn release_lock(&mut self, out: &mut Vec<Action>) {
        match self.el.lock {
            LockState::Free => {}
            LockState::Taking(p) => {
                out.push(Action::ReleaseClusterLock);
                self.el.lock = LockState::Free;
                self.lock_result(p, false, out);
            }
            LockState::Held => {
                out.push(Action::ReleaseClusterLock);
                self.el.lock = LockState::Free;
            }
        }
        self.abort_run();
    }

    fn take_lock(&mut self, purpose: LockPurpose, out: &mut Vec<Action>) {
        if !self.lock_enabled || self.el.lock == LockState::Held {
            self.lock_result(purpose, true, out);
            return;
        }
        if let LockState::Taking(_) = self.el.lock {
            // Already being taken; the pending answer decides.
            self.el.lock = LockState::Taking(purpose);
            return;
        }
        self.el.lock = LockState::Taking(purpose);
        out.push(Action::TakeClusterLock);
    }

    fn lock_result(&mut self, purpose: LockPurpose, ok: bool, out: &mut Vec<Action>) {
        match purpose {
            LockPurpose::Election => {
                if ok {
                    self.el.leader = self.pnn;
                }
                self.el.in_progress = false;
            }
            LockPurpose::ElectionEnd => {
                if !ok {
                    self.ban_node(self.pnn, out);
                }
            }
        }
    }

    /// The mutex helper's status byte arrived.
    pub fn on_lock_status(&mut self, now: Millis, view: &LocalView, st: LockStatus) -> Vec<Action> {
        let _ = (now, view);
        let mut out = Vec::new();
        if let LockState::Taking(p) = self.el.lock {
            let ok = st == LockStatus::Held;
            self.el.lock = if ok { LockState::Held } else { LockState::Free };
            self.lock_result(p, ok, &mut out);
        }
        out
    }

    /// The mutex helper holding the lock exited.
    pub fn on_lock_lost(&mut self, now: Millis, view: &LocalView) -> Vec<Action> {
        let mut out = Vec::new();
        if self.el.lock != LockState::Held {
            return out;
        }
        self.el.lock = LockState::Free;
        self.abort_run();
        if self.can_lead(view) {
            self.force_election(now, view, &mut out);
        }
        out
    }

    /// `cluster_lock_election`.
    fn cluster_lock_election(&mut self, view: &LocalView, out: &mut Vec<Action>) {
        if !self.can_lead(view) {
            if self.el.lock != LockState::Free {
                self.release_lock(out);
            }
            self.el.in_progress = false;
            return;
        }
        if self.el.lock == LockState::Held {
            // Deviation: upstream keeps whatever leader it last heard of;
            // the holder of the lock is the leader, so say so (otherwise a
            // stale LEADER broadcast can leave the holder following a node
            // that can never lead again, and nobody recovers).
            self.el.leader = self.pnn;
            self.el.in_progress = false;
            return;
        }
        self.el.leader = CTDB_UNKNOWN_PNN;
        self.take_lock(LockPurpose::Election, out);
    }

    /// `force_election`: recovery mode ACTIVE on the active nodes first.
    pub(crate) fn force_election(&mut self, now: Millis, view: &LocalView, out: &mut Vec<Action>) {
        let _ = now;
        if self.el.force.is_some() {
            return;
        }
        self.el.forced += 1;
        let active = view.active_nodes();
        let r = self.tx.round(&active, out, |_| {
            super::Control::SetRecmode(CTDB_RECOVERY_ACTIVE)
        });
        self.el.force = Some(r);
        self.force_continue(now, view, out);
    }

    /// Continues force_election once its recmode round is complete.
    pub(crate) fn force_continue(&mut self, now: Millis, view: &LocalView, out: &mut Vec<Action>) {
        let Some(r) = &self.el.force else { return };
        if !r.done() {
            return;
        }
        let failed = r.any_failed();
        self.el.force = None;
        if failed {
            return;
        }
        self.el.in_progress = true;
        out.push(Action::Message {
            dest: Dest::Connected,
            msg: Message::Leader(CTDB_UNKNOWN_PNN),
        });
        if self.lock_enabled {
            self.cluster_lock_election(view, out);
            return;
        }
        self.el.deadline = Some(now + self.election_period());
        self.send_election_request(now, view, out);
    }

    fn send_election_request(&mut self, now: Millis, view: &LocalView, out: &mut Vec<Action>) {
        let em = election_data(self.pnn, self.el.priority_time, now, view);
        self.el.leader = self.pnn;
        out.push(Action::Message {
            dest: Dest::All,
            msg: Message::Election(em),
        });
    }

    /// Election timers: end of election, delayed election message.
    pub(crate) fn election_timers(&mut self, now: Millis, view: &LocalView, out: &mut Vec<Action>) {
        if self.el.send_at.is_some_and(|t| t <= now) {
            self.el.send_at = None;
            self.send_election_request(now, view, out);
        }
        if self.el.deadline.is_some_and(|t| t <= now) {
            self.el.deadline = None;
            self.el.in_progress = false;
            self.el.fast_start = false;
            if self.el.leader == self.pnn {
                self.take_lock(LockPurpose::ElectionEnd, out);
            }
        }
        if self.el.leader_timeout_at.is_some_and(|t| t <= now) {
            self.el.leader_timeout_at = None;
            self.force_election(now, view, out);
        }
    }

    pub(crate) fn on_election(
        &mut self,
        now: Millis,
        view: &LocalView,
        em: &ElectionMessage,
        out: &mut Vec<Action>,
    ) {
        if em.pnn == self.pnn {
            return;
        }
        self.el.in_progress = true;
        self.el.deadline = Some(now + self.election_period());
        let mine = election_data(self.pnn, self.el.priority_time, now, view);
        if election_win(&mine, self.can_lead(view), em) {
            if self.el.send_at.is_none() {
                self.el.send_at = Some(now + 500);
            }
            return;
        }
        self.el.send_at = None;
        if self.el.lock != LockState::Free {
            self.release_lock(out);
        }
        self.el.leader = em.pnn;
    }

    pub(crate) fn leader_timeout_start(&mut self, now: Millis) {
        self.el.leader_timeout_at = Some(now + super::secs(self.tun.leader_timeout));
    }

    pub(crate) fn on_leader(
        &mut self,
        now: Millis,
        view: &LocalView,
        pnn: Pnn,
        out: &mut Vec<Action>,
    ) {
        self.el.leader_timeout_at = None;
        if pnn == self.el.leader {
            self.leader_timeout_start(now);
            return;
        }
        if pnn == CTDB_UNKNOWN_PNN {
            let was = self.el.in_progress;
            self.el.in_progress = true;
            if self.lock_enabled && !was {
                self.cluster_lock_election(view, out);
            } else if !self.lock_enabled && self.el.deadline.is_none() {
                // Deviation: upstream relies on the ELECTION messages that
                // follow to end the election; if the network drops them
                // the node would stay "in an election" (and skip its main
                // loop) for ever. End it ElectionTimeout from now instead.
                self.el.deadline = Some(now + self.election_period());
            }
            return;
        }
        self.el.leader = pnn;
        if pnn != self.pnn {
            // Not in upstream's handler, but implied: a node that sees
            // another leader is not leading any more.
            self.abort_run();
        }
        self.leader_timeout_start(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn em(pnn: Pnn, t: Millis, flags: u32) -> ElectionMessage {
        ElectionMessage {
            num_connected: 3,
            priority_time: timeval(t),
            pnn,
            node_flags: flags,
        }
    }

    #[test]
    fn earliest_start_then_highest_pnn_wins() {
        let me = em(1, 1000, 0);
        assert!(
            election_win(&me, true, &em(2, 2000, 0)),
            "earlier start wins"
        );
        assert!(!election_win(&me, true, &em(0, 500, 0)));
        assert!(election_win(&me, true, &em(0, 1000, 0)), "tie: higher pnn");
        assert!(!election_win(&me, true, &em(2, 1000, 0)));
        assert!(election_win(
            &me,
            true,
            &em(0, 1, NODE_FLAGS_INACTIVE & 0x8)
        ));
        assert!(!election_win(&me, false, &em(0, 9999, 0)), "cannot lead");
    }

    #[test]
    fn timeval_conversion() {
        assert_eq!(
            timeval(1_234_567),
            Timeval {
                tv_sec: 1234,
                tv_usec: 567_000
            }
        );
    }
}
