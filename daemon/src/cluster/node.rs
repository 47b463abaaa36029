//! The main daemon's side of the cluster controls: recovery mode, vnn
//! map, ban, stop/continue, node flags, keepalives.
//!
//! Why separate from the recovery daemon: in upstream these live in the
//! main ctdbd (`ctdb_recover.c`, `ctdb_banning.c`, `ctdb_monitor.c`) and
//! answer controls from whichever node is leader, including this one.
//! Database contents are not here (that is the engine's); database
//! effects are returned as [`Effect`]s for the caller to apply.
//!
//! # Controls handled ([`Node::handle_control`])
//!
//! * `GET_NODEMAP`, `GET_VNNMAP`, `GET_RECMODE`, `GET_CAPABILITIES`;
//! * `SET_RECMODE ACTIVE`: immediate. `SET_RECMODE NORMAL`: refused while
//!   any database's generation differs from the vnn map's; thaws; with a
//!   cluster lock configured the reply is deferred until a lock test
//!   ([`Action::TestClusterLock`], [`Node::lock_test_result`]) shows the
//!   lock is held elsewhere (`'1'`) or times out (`'2'`); taking it
//!   (`'0'`) means the leader does not hold it and the request fails;
//! * `SETVNNMAP`: only in recovery mode ACTIVE;
//! * `SET_BAN_STATE`: see [`super::banning`]; a new ban makes the node
//!   inactive: generation INVALID, recovery mode ACTIVE, freeze
//!   ([`Effect::BecomeInactive`]);
//! * `MODIFY_FLAGS`: see [`super::membership`];
//! * `START_RECOVERY` / `END_RECOVERY`: the `startrecovery` / `recovered`
//!   events ([`Effect::RunEvent`]); `FREEZE`.
//!
//! A node starts in recovery mode ACTIVE with generation INVALID and a
//! vnn map of all non-deleted nodes, as upstream.
//!
//! Invariant: becoming banned or stopped always leaves the node in
//! recovery mode ACTIVE with generation INVALID and its databases frozen,
//! so it serves no record traffic until a recovery takes it back (a
//! leader may still set NORMAL on it, as upstream allows; its recovery
//! daemon then sets ACTIVE again at its next main-loop pass).

use std::collections::VecDeque;

use super::banning::{BanChange, LocalBan};
use super::membership::Membership;
use super::recoverd::LocalView;
use super::{
    Action, Control, ControlResult, LockStatus, Millis, Pnn, Reply, Tunables, VnnMap,
    CTDB_RECOVERY_ACTIVE, CTDB_RECOVERY_NORMAL, INVALID_GENERATION, NODE_FLAGS_BANNED,
    NODE_FLAGS_DELETED, NODE_FLAGS_STOPPED,
};

/// Event scripts the cluster logic runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClusterEvent {
    StartRecovery,
    Recovered,
}

/// Effects on local databases and services the caller must apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// Freeze every database.
    FreezeAll,
    /// Thaw every database (cancelling recovery transactions).
    ThawAll,
    /// Run an event.
    RunEvent(ClusterEvent),
    /// Banned or stopped: set every database's generation to INVALID,
    /// freeze everything, release public IPs.
    BecomeInactive,
}

/// How a control was handled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Handled {
    /// Reply now.
    Reply(ControlResult),
    /// Reply later with [`Action::ReplyDeferred`] carrying this token.
    Deferred(u64),
    /// Not a control of this module (database controls).
    NotMine,
}

/// What handling an event produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub handled: Handled,
    pub effects: Vec<Effect>,
    pub actions: Vec<Action>,
}

impl Outcome {
    fn reply(r: ControlResult) -> Outcome {
        Outcome {
            handled: Handled::Reply(r),
            effects: Vec::new(),
            actions: Vec::new(),
        }
    }
    fn ok(r: Reply) -> Outcome {
        Outcome::reply(ControlResult::Ok(r))
    }
    fn done() -> Outcome {
        Outcome::ok(Reply::Done)
    }
    fn err() -> Outcome {
        Outcome::reply(ControlResult::Err)
    }
}

/// The main daemon's cluster state of one node.
#[derive(Debug, Clone)]
pub struct Node {
    pub membership: Membership,
    pub ban: LocalBan,
    recmode: u32,
    vnnmap: VnnMap,
    lock_enabled: bool,
    tun: Tunables,
    lock_tests: VecDeque<u64>,
    next_token: u64,
}

impl Node {
    pub fn new(membership: Membership, lock_enabled: bool, tun: Tunables) -> Node {
        let map = membership
            .nodes()
            .iter()
            .filter(|n| n.flags & NODE_FLAGS_DELETED == 0)
            .map(|n| n.pnn)
            .collect();
        Node {
            membership,
            ban: LocalBan::default(),
            recmode: CTDB_RECOVERY_ACTIVE,
            vnnmap: VnnMap {
                generation: INVALID_GENERATION,
                map,
            },
            lock_enabled,
            tun,
            lock_tests: VecDeque::new(),
            next_token: 0,
        }
    }

    pub fn pnn(&self) -> Pnn {
        self.membership.my_pnn()
    }
    pub fn recmode(&self) -> u32 {
        self.recmode
    }
    pub fn vnnmap(&self) -> &VnnMap {
        &self.vnnmap
    }
    pub fn tunables(&self) -> &Tunables {
        &self.tun
    }

    /// What the recovery daemon reads of this node.
    pub fn view(&self) -> LocalView {
        LocalView {
            nodemap: self.membership.nodemap(),
            recmode: self.recmode,
            vnnmap: self.vnnmap.clone(),
            capabilities: self.membership.capabilities(),
        }
    }

    fn become_inactive(&mut self, effects: &mut Vec<Effect>) {
        self.vnnmap.generation = INVALID_GENERATION;
        self.recmode = CTDB_RECOVERY_ACTIVE;
        effects.push(Effect::BecomeInactive);
    }

    /// STOP_NODE.
    pub fn stop(&mut self) -> Vec<Effect> {
        let mut e = Vec::new();
        self.membership.update_own_flags(NODE_FLAGS_STOPPED, 0);
        self.become_inactive(&mut e);
        e
    }

    /// CONTINUE_NODE.
    pub fn continue_node(&mut self) {
        self.membership.update_own_flags(0, NODE_FLAGS_STOPPED);
    }

    /// Handles a cluster control. `generations_match`: every local
    /// database's generation equals the vnn map's (checked for SET_RECMODE
    /// NORMAL).
    pub fn handle_control(
        &mut self,
        now: Millis,
        ctl: &Control,
        generations_match: bool,
    ) -> Outcome {
        match ctl {
            Control::GetNodemap => Outcome::ok(Reply::Nodemap(self.membership.nodemap())),
            Control::GetVnnmap => Outcome::ok(Reply::Vnnmap(self.vnnmap.clone())),
            Control::GetRecmode => Outcome::ok(Reply::Recmode(self.recmode)),
            Control::GetCapabilities => {
                Outcome::ok(Reply::Capabilities(self.membership.capabilities()))
            }
            Control::SetRecmode(m) => self.set_recmode(*m, generations_match),
            Control::SetVnnmap(m) => {
                if self.recmode != CTDB_RECOVERY_ACTIVE {
                    return Outcome::err();
                }
                self.vnnmap = m.clone();
                Outcome::done()
            }
            Control::SetBanState(b) => {
                let me = self.pnn();
                match self.ban.set(me, *b, now, &self.tun) {
                    Err(_) => Outcome::err(),
                    Ok(ch) => {
                        let mut o = Outcome::done();
                        self.apply_ban(ch, &mut o.effects);
                        o
                    }
                }
            }
            Control::ModifyFlags(c) => match self.membership.modify_flags(c) {
                Ok(_) => Outcome::done(),
                Err(_) => Outcome::err(),
            },
            Control::StartRecovery => {
                let mut o = Outcome::done();
                o.effects
                    .push(Effect::RunEvent(ClusterEvent::StartRecovery));
                o
            }
            Control::EndRecovery => {
                let mut o = Outcome::done();
                o.effects.push(Effect::RunEvent(ClusterEvent::Recovered));
                o
            }
            Control::Freeze => {
                let mut o = Outcome::done();
                o.effects.push(Effect::FreezeAll);
                o
            }
            _ => Outcome {
                handled: Handled::NotMine,
                effects: Vec::new(),
                actions: Vec::new(),
            },
        }
    }

    fn apply_ban(&mut self, ch: BanChange, effects: &mut Vec<Effect>) {
        match ch {
            BanChange::None => {}
            BanChange::Banned { newly } => {
                self.membership.update_own_flags(NODE_FLAGS_BANNED, 0);
                if newly {
                    self.become_inactive(effects);
                }
            }
            BanChange::Unbanned => self.membership.update_own_flags(0, NODE_FLAGS_BANNED),
        }
    }

    fn set_recmode(&mut self, m: u32, generations_match: bool) -> Outcome {
        if m == self.recmode {
            return Outcome::done();
        }
        if m == CTDB_RECOVERY_ACTIVE {
            self.recmode = CTDB_RECOVERY_ACTIVE;
            return Outcome::done();
        }
        if m != CTDB_RECOVERY_NORMAL || !generations_match {
            return Outcome::err();
        }
        let mut o = Outcome::done();
        o.effects.push(Effect::ThawAll);
        if !self.lock_enabled {
            self.recmode = CTDB_RECOVERY_NORMAL;
            return o;
        }
        self.next_token += 1;
        let t = self.next_token;
        self.lock_tests.push_back(t);
        o.handled = Handled::Deferred(t);
        o.actions.push(Action::TestClusterLock);
        o
    }

    /// The lock test helper for the oldest deferred SET_RECMODE NORMAL
    /// answered.
    pub fn lock_test_result(&mut self, st: LockStatus) -> Vec<Action> {
        let Some(token) = self.lock_tests.pop_front() else {
            return Vec::new();
        };
        let ok = matches!(st, LockStatus::Contended | LockStatus::Timeout);
        if ok {
            self.recmode = CTDB_RECOVERY_NORMAL;
        }
        vec![Action::ReplyDeferred { token, ok }]
    }

    /// Timers: ban expiry and keepalives. `all_frozen`: every database is
    /// frozen (a ban only ends then).
    pub fn tick(&mut self, now: Millis, all_frozen: bool) -> (Vec<Action>, Vec<Effect>) {
        let mut effects = Vec::new();
        let me = self.pnn();
        let ch = self.ban.tick(me, now, all_frozen, &self.tun);
        self.apply_ban(ch, &mut effects);
        let acts = self.membership.tick(now, &self.tun);
        (acts, effects)
    }

    /// When [`Node::tick`] next wants to run.
    pub fn next_wakeup(&self) -> Millis {
        let k = self.membership.next_wakeup();
        self.ban.deadline().map_or(k, |d| d.min(k))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::{BanState, CTDB_CAP_DEFAULT};

    fn node(lock: bool) -> Node {
        let tun = Tunables::default();
        let m = Membership::new(
            1,
            vec![Some("a".into()), Some("b".into()), Some("c".into())],
            CTDB_CAP_DEFAULT,
            0,
            &tun,
        );
        Node::new(m, lock, tun)
    }

    #[test]
    fn starts_in_recovery_with_invalid_generation() {
        let n = node(false);
        assert_eq!(n.recmode(), CTDB_RECOVERY_ACTIVE);
        assert_eq!(n.vnnmap().generation, INVALID_GENERATION);
        assert_eq!(n.vnnmap().map, vec![0, 1, 2]);
    }

    #[test]
    fn recmode_normal_needs_lock_contention() {
        let mut n = node(true);
        let o = n.handle_control(0, &Control::SetRecmode(CTDB_RECOVERY_NORMAL), false);
        assert_eq!(
            o.handled,
            Handled::Reply(ControlResult::Err),
            "generation mismatch"
        );
        let o = n.handle_control(0, &Control::SetRecmode(CTDB_RECOVERY_NORMAL), true);
        assert_eq!(o.handled, Handled::Deferred(1));
        assert_eq!(o.actions, vec![Action::TestClusterLock]);
        assert_eq!(
            n.lock_test_result(LockStatus::Held),
            vec![Action::ReplyDeferred {
                token: 1,
                ok: false
            }]
        );
        assert_eq!(n.recmode(), CTDB_RECOVERY_ACTIVE);
        n.handle_control(0, &Control::SetRecmode(CTDB_RECOVERY_NORMAL), true);
        n.lock_test_result(LockStatus::Contended);
        assert_eq!(n.recmode(), CTDB_RECOVERY_NORMAL);
    }

    #[test]
    fn vnnmap_only_in_recovery_and_ban_makes_inactive() {
        let mut n = node(false);
        n.handle_control(0, &Control::SetRecmode(CTDB_RECOVERY_NORMAL), true);
        let m = VnnMap {
            generation: 9,
            map: vec![0, 1],
        };
        assert_eq!(
            n.handle_control(0, &Control::SetVnnmap(m.clone()), true)
                .handled,
            Handled::Reply(ControlResult::Err)
        );
        n.handle_control(0, &Control::SetRecmode(CTDB_RECOVERY_ACTIVE), true);
        n.handle_control(0, &Control::SetVnnmap(m), true);
        n.handle_control(0, &Control::SetRecmode(CTDB_RECOVERY_NORMAL), true);
        assert_eq!(n.vnnmap().generation, 9);
        let o = n.handle_control(
            10,
            &Control::SetBanState(BanState { pnn: 1, time: 5 }),
            true,
        );
        assert_eq!(o.effects, vec![Effect::BecomeInactive]);
        assert_eq!(n.vnnmap().generation, INVALID_GENERATION);
        assert_eq!(n.recmode(), CTDB_RECOVERY_ACTIVE);
        assert_ne!(n.membership.own_flags() & NODE_FLAGS_BANNED, 0);
        let (_, e) = n.tick(5010, true);
        assert!(e.is_empty());
        assert_eq!(n.membership.own_flags() & NODE_FLAGS_BANNED, 0);
    }
}
