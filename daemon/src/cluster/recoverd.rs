//! The recovery daemon: once a second it checks the cluster and, on the
//! leader, starts a database recovery when something is off.
//!
//! Why: ctdbd's data path assumes every active node agrees on the node
//! flags, the vnn map and its generation, and runs in NORMAL recovery
//! mode. This machine is what restores that agreement. It mirrors
//! upstream's `ctdb_recoverd` process (`main_loop`, `do_recovery`, the
//! message handlers) but runs inside the daemon as a sans-I/O machine.
//!
//! # Events
//!
//! * [`Recoverd::tick`] at [`Recoverd::next_wakeup`] (and whenever the
//!   local state changed): timers and the main loop;
//! * [`Recoverd::on_message`]: `LEADER`, `ELECTION`, `BANNING`,
//!   `PUSH_NODE_FLAGS`;
//! * [`Recoverd::on_control_result`]: the answer to an
//!   [`Action::Control`] it sent;
//! * [`Recoverd::on_lock_status`], [`Recoverd::on_lock_lost`]: the
//!   cluster mutex helper.
//!
//! Every event takes the [`LocalView`], this node's own state (node map,
//! recovery mode, vnn map, capabilities), which upstream's recovery daemon
//! reads with controls to its own ctdbd.
//!
//! # Main loop (every `RecoverInterval`)
//!
//! Skipped during an election. Starts the leader broadcast and leader
//! timeout if needed; bans nodes with too many culprit credits. An
//! inactive (banned/stopped) node only makes sure it is in recovery mode
//! and frozen. Otherwise it refreshes capabilities; non-leaders stop
//! there. The leader then fetches the remote node maps (a failure makes
//! that node a culprit), reconciles flags (remote nodes are authoritative
//! for their own flags; differences are pushed with MODIFY_FLAGS), and
//! starts a recovery if a previous one did not finish, any active node is
//! not in NORMAL mode, it does not hold the cluster lock, the node maps
//! disagree, the vnn map size differs from the number of active LMASTER
//! nodes, an active LMASTER node is missing from the vnn map, or a remote
//! vnn map differs (generation, size or content). The node found at fault
//! is charged a culprit credit.
//!
//! # Recovery (`do_recovery`)
//!
//! Only on the leader, not during an election, not within
//! `RerecoveryTimeout` of the last success, and only while holding the
//! lock (a leader without it bans itself). It refreshes capabilities,
//! pushes every connected node's flags to everyone, runs a
//! [`RecoveryRun`] with a fresh random generation, asks for a takeover
//! run, sends `RECONFIGURE`, forgives all culprits and suppresses further
//! recoveries for `RerecoveryTimeout`.
//!
//! Deviation from upstream, on purpose: a run is abandoned as soon as
//! this node stops being leader or gives up the lock (upstream lets the
//! helper process finish), so two runs never overlap.
//!
//! Invariant: a [`RecoveryRun`] only starts on the node that believes it
//! is leader and (with a lock) holds the lock, and only one runs at a time
//! per node.

use std::collections::BTreeMap;

use super::banning::Culprits;
use super::election::{ElectionState, LockState};
use super::recovery::{RecoveryError, RecoveryRun, Round, RunStatus, Sender, RUN_ID_BIT};
use super::{
    secs, Action, BanState, Control, ControlId, ControlResult, Dest, Message, Millis,
    NodeFlagChange, Pnn, Reply, Rng, Tunables, VnnMap, CTDB_CAP_LMASTER, CTDB_RECOVERY_ACTIVE,
    CTDB_RECOVERY_NORMAL, INVALID_GENERATION, NODE_FLAGS_DISCONNECTED, NODE_FLAGS_INACTIVE,
};

/// This node's own state, as the recovery daemon reads it from ctdbd.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LocalView {
    /// `(pnn, flags)` for every node, by pnn.
    pub nodemap: Vec<(Pnn, u32)>,
    pub recmode: u32,
    pub vnnmap: VnnMap,
    /// This node's capabilities.
    pub capabilities: u32,
}

impl LocalView {
    pub fn own_flags(&self, pnn: Pnn) -> u32 {
        self.flags(pnn).unwrap_or(NODE_FLAGS_DISCONNECTED)
    }
    pub fn flags(&self, pnn: Pnn) -> Option<u32> {
        self.nodemap.iter().find(|(p, _)| *p == pnn).map(|x| x.1)
    }
    /// Connected nodes, this one included.
    pub fn connected(&self) -> Vec<Pnn> {
        self.nodemap
            .iter()
            .filter(|(_, f)| f & NODE_FLAGS_DISCONNECTED == 0)
            .map(|(p, _)| *p)
            .collect()
    }
    /// Active (not inactive) nodes, this one included.
    pub fn active_nodes(&self) -> Vec<Pnn> {
        self.nodemap
            .iter()
            .filter(|(_, f)| f & NODE_FLAGS_INACTIVE == 0)
            .map(|(p, _)| *p)
            .collect()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Caps,
    RemoteNodemaps,
    UpdateFlags,
    Recmodes,
    Vnnmaps,
    RecCaps,
    RecFlags,
}

/// Counters for tests and `ctdb statistics`-like reporting.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RecoverdStats {
    pub recoveries_started: u64,
    pub recoveries_done: u64,
    pub recoveries_failed: u64,
    pub bans_sent: u64,
}

/// The recovery daemon of one node.
#[derive(Debug, Clone)]
pub struct Recoverd {
    pub(crate) pnn: Pnn,
    pub(crate) tun: Tunables,
    pub(crate) lock_enabled: bool,
    pub(crate) el: ElectionState,
    pub(crate) tx: Sender,
    rng: Rng,
    culprits: Culprits,
    need_recovery: bool,
    recovery_disabled_until: Option<Millis>,
    frozen_on_inactive: bool,
    caps: BTreeMap<Pnn, u32>,
    next_loop: Millis,
    pass: Option<(Stage, Round)>,
    run: Option<RecoveryRun>,
    remote: BTreeMap<Pnn, Vec<(Pnn, u32)>>,
    stats: RecoverdStats,
    last_failure: Option<RecoveryError>,
}

impl Recoverd {
    /// The recovery daemon of node `pnn`, started at `now` (wall clock in
    /// ms: it is the election priority time compared across nodes).
    /// `lock_enabled`: a cluster lock is configured. `seed` feeds the
    /// generation numbers.
    pub fn new(pnn: Pnn, tun: Tunables, lock_enabled: bool, now: Millis, seed: u64) -> Recoverd {
        let fast = tun.fast_start;
        Recoverd {
            pnn,
            tun,
            lock_enabled,
            el: ElectionState::new(now, fast),
            tx: Sender::new(0),
            rng: Rng::new(seed ^ u64::from(pnn).wrapping_mul(0x9E37_79B9)),
            culprits: Culprits::default(),
            need_recovery: false,
            recovery_disabled_until: None,
            frozen_on_inactive: false,
            caps: BTreeMap::new(),
            next_loop: now,
            pass: None,
            run: None,
            remote: BTreeMap::new(),
            stats: RecoverdStats::default(),
            last_failure: None,
        }
    }

    pub fn pnn(&self) -> Pnn {
        self.pnn
    }
    /// Who this node thinks leads (`CTDB_UNKNOWN_PNN` if nobody).
    pub fn leader(&self) -> Pnn {
        self.el.leader
    }
    pub fn is_leader(&self) -> bool {
        self.el.leader == self.pnn
    }
    pub fn election_in_progress(&self) -> bool {
        self.el.in_progress
    }
    pub fn lock_state(&self) -> LockState {
        self.el.lock
    }
    pub fn lock_held(&self) -> bool {
        self.el.lock == LockState::Held
    }
    pub fn need_recovery(&self) -> bool {
        self.need_recovery
    }
    /// The generation of the recovery run in progress, if any.
    pub fn running_generation(&self) -> Option<u32> {
        self.run.as_ref().map(|r| r.generation())
    }
    pub fn stats(&self) -> RecoverdStats {
        self.stats
    }
    /// Why the last recovery run that failed did (for logs).
    pub fn last_failure(&self) -> Option<&RecoveryError> {
        self.last_failure.as_ref()
    }
    /// Elections this node forced.
    pub fn elections_forced(&self) -> u64 {
        self.el.forced
    }
    pub fn tunables(&self) -> &Tunables {
        &self.tun
    }

    /// The tunables changed (`ctdb setvar`): upstream's recovery daemon
    /// reads them at every pass of its main loop. A re-recovery window
    /// already running is cut to the new `RerecoveryTimeout`.
    pub fn set_tunables(&mut self, now: Millis, tun: Tunables) {
        if tun.rerecovery_timeout < self.tun.rerecovery_timeout {
            let cap = now + secs(tun.rerecovery_timeout);
            if let Some(t) = self.recovery_disabled_until.as_mut() {
                *t = (*t).min(cap);
            }
        }
        self.tun = tun;
    }

    /// `CTDB_SRVID_DISABLE_RECOVERIES` (upstream's `ctdb_op_disable` on
    /// the recovery operation, which the re-recovery timeout shares):
    /// `timeout_secs` 0 enables recoveries again; otherwise they are off
    /// until then, unless one is running now (`false`: upstream's
    /// `-EAGAIN`).
    pub fn disable_recoveries(&mut self, now: Millis, timeout_secs: u32) -> bool {
        if timeout_secs == 0 {
            self.recovery_disabled_until = None;
            return true;
        }
        if self.run.is_some() {
            return false;
        }
        self.recovery_disabled_until = Some(now + secs(timeout_secs));
        true
    }

    /// When [`Recoverd::tick`] should next run.
    pub fn next_wakeup(&self) -> Millis {
        let mut t = [
            self.el.deadline,
            self.el.send_at,
            self.el.leader_timeout_at,
            self.el.broadcast_at,
            self.recovery_disabled_until,
        ]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or(Millis::MAX);
        if self.pass.is_none() && self.run.is_none() {
            t = t.min(self.next_loop);
        }
        t
    }

    /// Time passed (or local state changed).
    pub fn tick(&mut self, now: Millis, view: &LocalView) -> Vec<Action> {
        let mut out = Vec::new();
        self.election_timers(now, view, &mut out);
        if self.el.broadcast_at.is_some_and(|t| t <= now) {
            self.broadcast_tick(now, view, &mut out);
        }
        if self.recovery_disabled_until.is_some_and(|t| t <= now) {
            self.recovery_disabled_until = None;
        }
        if self.pass.is_none() && self.run.is_none() && now >= self.next_loop {
            self.next_loop = now + secs(self.tun.recover_interval.max(1));
            self.main_loop(now, view, &mut out);
        }
        out
    }

    /// A srvid message for the recovery daemon arrived.
    pub fn on_message(&mut self, now: Millis, view: &LocalView, msg: &Message) -> Vec<Action> {
        let mut out = Vec::new();
        match msg {
            Message::Leader(p) => self.on_leader(now, view, *p, &mut out),
            Message::Election(em) => self.on_election(now, view, em, &mut out),
            Message::Banning(p) => {
                if self.is_leader() {
                    let n = view.nodemap.len() as u32;
                    self.culprits.add(*p, n, now, &self.tun);
                }
            }
            Message::PushNodeFlags(c) => {
                let dests = view.connected();
                let c = *c;
                for d in dests {
                    let id = self.tx.id();
                    out.push(Action::Control {
                        id,
                        dest: d,
                        control: Control::ModifyFlags(c),
                    });
                }
            }
            Message::Reconfigure => {}
        }
        out
    }

    /// The result of a control this machine sent.
    pub fn on_control_result(
        &mut self,
        now: Millis,
        view: &LocalView,
        id: ControlId,
        res: ControlResult,
    ) -> Vec<Action> {
        let mut out = Vec::new();
        if id & RUN_ID_BIT != 0 {
            if let Some(run) = &mut self.run {
                if run.owns(id) {
                    out = run.on_result(id, res);
                    self.check_run(now, &mut out);
                }
            }
            return out;
        }
        if let Some(f) = &mut self.el.force {
            if f.on_result(id, res.clone()) {
                self.force_continue(now, view, &mut out);
                return out;
            }
        }
        let Some((_, round)) = &mut self.pass else {
            return out;
        };
        if round.on_result(id, res) {
            self.settle(now, view, &mut out);
        }
        out
    }

    pub(crate) fn ban_node(&mut self, pnn: Pnn, out: &mut Vec<Action>) {
        self.stats.bans_sent += 1;
        let id = self.tx.id();
        out.push(Action::Control {
            id,
            dest: pnn,
            control: Control::SetBanState(BanState {
                pnn,
                time: self.tun.recovery_ban_period,
            }),
        });
    }

    pub(crate) fn abort_run(&mut self) {
        if self.run.take().is_some() {
            self.last_failure = None;
            self.stats.recoveries_failed += 1;
        }
    }

    fn ban_misbehaving(&mut self, view: &LocalView, out: &mut Vec<Action>) -> bool {
        let mut self_ban = false;
        for p in self.culprits.take_misbehaving(view.nodemap.len()) {
            self.ban_node(p, out);
            if p == self.pnn {
                self_ban = true;
            }
        }
        self_ban
    }

    fn set_culprit(&mut self, pnn: Pnn, now: Millis, view: &LocalView) {
        if view.own_flags(self.pnn) & NODE_FLAGS_INACTIVE != 0 {
            return;
        }
        if view.flags(pnn).is_none() {
            return;
        }
        self.culprits.add(pnn, 1, now, &self.tun);
    }

    fn start(
        &mut self,
        stage: Stage,
        dests: &[Pnn],
        out: &mut Vec<Action>,
        ctl: impl FnMut(Pnn) -> Control,
    ) {
        let r = self.tx.round(dests, out, ctl);
        self.pass = Some((stage, r));
    }

    fn main_loop(&mut self, now: Millis, view: &LocalView, out: &mut Vec<Action>) {
        if self.el.in_progress {
            return;
        }
        if self.el.broadcast_at.is_none() {
            self.el.broadcast_at = Some(now + 1000);
        }
        if self.el.leader_timeout_at.is_none() {
            self.leader_timeout_start(now);
        }
        if self.ban_misbehaving(view, out) {
            return;
        }
        let own = view.own_flags(self.pnn);
        if own & NODE_FLAGS_INACTIVE != 0 {
            self.el.priority_time = now;
            if view.recmode == CTDB_RECOVERY_NORMAL {
                let id = self.tx.id();
                out.push(Action::Control {
                    id,
                    dest: self.pnn,
                    control: Control::SetRecmode(CTDB_RECOVERY_ACTIVE),
                });
            }
            if !self.frozen_on_inactive {
                let id = self.tx.id();
                out.push(Action::Control {
                    id,
                    dest: self.pnn,
                    control: Control::Freeze,
                });
                self.frozen_on_inactive = true;
            }
            self.abort_run();
            return;
        }
        self.frozen_on_inactive = false;
        let dests = view.connected();
        self.start(Stage::Caps, &dests, out, |_| Control::GetCapabilities);
        self.settle(now, view, out);
    }

    fn settle(&mut self, now: Millis, view: &LocalView, out: &mut Vec<Action>) {
        while let Some((_, r)) = &self.pass {
            if !r.done() {
                break;
            }
            self.pass_step(now, view, out);
        }
    }

    fn store_caps(&mut self, round: &Round) {
        for (p, r) in &round.ok {
            if let Reply::Capabilities(c) = r {
                self.caps.insert(*p, *c);
            }
        }
    }

    fn has_lmaster(&self, pnn: Pnn) -> bool {
        self.caps
            .get(&pnn)
            .is_some_and(|c| c & CTDB_CAP_LMASTER != 0)
    }

    /// One completed round of the current pass: decide the next.
    fn pass_step(&mut self, now: Millis, view: &LocalView, out: &mut Vec<Action>) {
        let Some((stage, round)) = self.pass.take() else {
            return;
        };
        match stage {
            Stage::Caps => {
                if round.any_failed() {
                    return;
                }
                self.store_caps(&round);
                if !self.is_leader() {
                    return;
                }
                let dests: Vec<Pnn> = view
                    .connected()
                    .into_iter()
                    .filter(|p| *p != self.pnn)
                    .collect();
                self.start(Stage::RemoteNodemaps, &dests, out, |_| Control::GetNodemap);
            }
            Stage::RemoteNodemaps => {
                for &p in round.failed() {
                    self.set_culprit(p, now, view);
                }
                if round.any_failed() {
                    return;
                }
                self.remote.clear();
                for (p, r) in round.ok {
                    if let Reply::Nodemap(m) = r {
                        self.remote.insert(p, m);
                    }
                }
                let pushes = self.flag_pushes(view);
                let dests = view.connected();
                let mut r = Round::default();
                let mut acts = Vec::new();
                for c in pushes {
                    let sub = self
                        .tx
                        .round(&dests, &mut acts, |_| Control::ModifyFlags(c));
                    r = merge_rounds(r, sub);
                }
                out.extend(acts);
                self.pass = Some((Stage::UpdateFlags, r));
            }
            Stage::UpdateFlags => {
                if round.any_failed() {
                    return;
                }
                if self.need_recovery {
                    self.do_recovery(now, view, out);
                    return;
                }
                let active = view.active_nodes();
                self.start(Stage::Recmodes, &active, out, |_| Control::GetRecmode);
            }
            Stage::Recmodes => {
                if round.any_failed() {
                    return;
                }
                if round
                    .ok
                    .values()
                    .any(|r| *r != Reply::Recmode(CTDB_RECOVERY_NORMAL))
                {
                    self.do_recovery(now, view, out);
                    return;
                }
                if self.lock_enabled && !self.lock_held() {
                    self.set_culprit(self.pnn, now, view);
                    self.do_recovery(now, view, out);
                    return;
                }
                if self.recovery_disabled_until.is_some() {
                    return;
                }
                if let Some(culprit) = self.check_maps(view) {
                    self.set_culprit(culprit, now, view);
                    self.do_recovery(now, view, out);
                    return;
                }
                let dests: Vec<Pnn> = view
                    .active_nodes()
                    .into_iter()
                    .filter(|p| *p != self.pnn)
                    .collect();
                self.start(Stage::Vnnmaps, &dests, out, |_| Control::GetVnnmap);
            }
            Stage::Vnnmaps => {
                if round.any_failed() {
                    return;
                }
                let mine = &view.vnnmap;
                let mut culprit = None;
                for p in view.active_nodes() {
                    if p == self.pnn {
                        continue;
                    }
                    if let Some(Reply::Vnnmap(m)) = round.ok.get(&p) {
                        if m != mine {
                            culprit = Some(p);
                            break;
                        }
                    }
                }
                if let Some(c) = culprit {
                    self.set_culprit(c, now, view);
                    self.do_recovery(now, view, out);
                }
            }
            Stage::RecCaps => {
                if round.any_failed() {
                    return;
                }
                self.store_caps(&round);
                let dests = view.connected();
                let mut r = Round::default();
                let mut acts = Vec::new();
                for (p, f) in view.nodemap.clone() {
                    if f & NODE_FLAGS_DISCONNECTED != 0 {
                        continue;
                    }
                    let c = NodeFlagChange {
                        pnn: p,
                        new_flags: f,
                        old_flags: f,
                    };
                    let sub = self
                        .tx
                        .round(&dests, &mut acts, |_| Control::ModifyFlags(c));
                    r = merge_rounds(r, sub);
                }
                out.extend(acts);
                self.pass = Some((Stage::RecFlags, r));
            }
            Stage::RecFlags => {
                if round.any_failed() {
                    return;
                }
                // Leadership or the lock may have gone while the flags
                // were pushed (upstream would start the helper anyway).
                if !self.is_leader() || (self.lock_enabled && !self.lock_held()) {
                    return;
                }
                let generation = loop {
                    let g = self.rng.next_u64() as u32;
                    if g != INVALID_GENERATION {
                        break g;
                    }
                };
                self.stats.recoveries_started += 1;
                let (run, acts) =
                    RecoveryRun::start(self.pnn, generation, &view.nodemap, &self.tun);
                self.run = Some(run);
                out.extend(acts);
                self.check_run(now, out);
            }
        }
    }

    /// After the run changed: finish the recovery when it is over.
    fn check_run(&mut self, now: Millis, out: &mut Vec<Action>) {
        let status = match &self.run {
            Some(r) => r.status().clone(),
            None => return,
        };
        match status {
            RunStatus::Running => {}
            RunStatus::Failed(e) => {
                self.run = None;
                self.stats.recoveries_failed += 1;
                self.last_failure = Some(e);
            }
            RunStatus::Done => {
                self.run = None;
                self.stats.recoveries_done += 1;
                out.push(Action::TakeoverRun);
                out.push(Action::Message {
                    dest: Dest::Connected,
                    msg: Message::Reconfigure,
                });
                self.need_recovery = false;
                self.culprits.reset();
                self.recovery_disabled_until = Some(now + secs(self.tun.rerecovery_timeout));
            }
        }
    }

    /// Which flag changes the leader must push (`update_flags`): a remote
    /// node is authoritative for its own flags.
    fn flag_pushes(&self, view: &LocalView) -> Vec<NodeFlagChange> {
        let mut pushes = Vec::new();
        for &(j, local_flags) in &view.nodemap {
            if local_flags & NODE_FLAGS_DISCONNECTED != 0 {
                continue;
            }
            let mut flags = local_flags;
            let mut push = false;
            if j != self.pnn {
                if let Some(rf) = self.remote.get(&j).and_then(|m| flag_of(m, j)) {
                    if rf != local_flags {
                        flags = rf;
                        push = true;
                    }
                }
            }
            if !push {
                for &(i, fi) in &view.nodemap {
                    if i == j || i == self.pnn || fi & NODE_FLAGS_DISCONNECTED != 0 {
                        continue;
                    }
                    if self.remote.get(&i).and_then(|m| flag_of(m, j)) != Some(flags) {
                        push = true;
                        break;
                    }
                }
            }
            if push {
                pushes.push(NodeFlagChange {
                    pnn: j,
                    new_flags: flags,
                    old_flags: local_flags,
                });
            }
        }
        pushes
    }

    /// The node-map and vnn-map checks of the main loop that need no more
    /// controls; returns the culprit if a recovery is needed.
    fn check_maps(&self, view: &LocalView) -> Option<Pnn> {
        for &(j, fj) in &view.nodemap {
            if j == self.pnn || fj & NODE_FLAGS_INACTIVE != 0 {
                continue;
            }
            let Some(m) = self.remote.get(&j) else {
                continue;
            };
            if m.len() != view.nodemap.len() {
                return Some(j);
            }
            if m.iter().zip(&view.nodemap).any(|(a, b)| a.0 != b.0) {
                return Some(j);
            }
        }
        let lmasters: Vec<Pnn> = view
            .nodemap
            .iter()
            .filter(|(p, f)| f & NODE_FLAGS_INACTIVE == 0 && self.has_lmaster(*p))
            .map(|(p, _)| *p)
            .collect();
        if view.vnnmap.map.len() != lmasters.len() {
            return Some(self.pnn);
        }
        lmasters
            .into_iter()
            .find(|&p| p != self.pnn && !view.vnnmap.map.contains(&p))
    }

    fn do_recovery(&mut self, now: Millis, view: &LocalView, out: &mut Vec<Action>) {
        if !self.is_leader() {
            return;
        }
        self.need_recovery = true;
        if self.recovery_disabled_until.is_some() || self.el.in_progress {
            return;
        }
        if self.ban_misbehaving(view, out) {
            return;
        }
        if self.lock_enabled && !self.lock_held() {
            if !self.is_leader() {
                self.need_recovery = false;
                return;
            }
            self.ban_node(self.pnn, out);
            return;
        }
        let dests = view.connected();
        self.start(Stage::RecCaps, &dests, out, |_| Control::GetCapabilities);
        self.settle(now, view, out);
    }
}

fn flag_of(m: &[(Pnn, u32)], pnn: Pnn) -> Option<u32> {
    m.iter().find(|(p, _)| *p == pnn).map(|x| x.1)
}

fn merge_rounds(a: Round, b: Round) -> Round {
    a.merge(b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::{CTDB_CAP_DEFAULT, CTDB_UNKNOWN_PNN, NODE_FLAGS_BANNED};

    fn view(flags: &[u32], vnn: &[Pnn]) -> LocalView {
        LocalView {
            nodemap: flags
                .iter()
                .enumerate()
                .map(|(i, f)| (i as Pnn, *f))
                .collect(),
            recmode: CTDB_RECOVERY_NORMAL,
            vnnmap: VnnMap {
                generation: 5,
                map: vnn.to_vec(),
            },
            capabilities: CTDB_CAP_DEFAULT,
        }
    }

    #[test]
    fn map_checks_find_missing_lmaster_and_banned_member() {
        let mut r = Recoverd::new(0, Tunables::default(), false, 0, 1);
        for p in 0..3 {
            r.caps.insert(p, CTDB_CAP_DEFAULT);
        }
        assert_eq!(r.check_maps(&view(&[0, 0, 0], &[0, 1, 2])), None);
        assert_eq!(r.check_maps(&view(&[0, 0, 0], &[0, 1, 1])), Some(2));
        // A banned node still in the map: size mismatch, leader is culprit.
        assert_eq!(
            r.check_maps(&view(&[0, NODE_FLAGS_BANNED, 0], &[0, 1, 2])),
            Some(0)
        );
    }

    fn controls(acts: &[Action]) -> Vec<(ControlId, Pnn, Control)> {
        acts.iter()
            .filter_map(|a| match a {
                Action::Control { id, dest, control } => Some((*id, *dest, control.clone())),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn leader_timeout_forces_election_without_lock() {
        let tun = Tunables::default();
        let v = view(&[0, 0, 0], &[0, 1, 2]);
        let mut r = Recoverd::new(1, tun.clone(), false, 0, 9);
        // First main loop: starts the broadcast loop and leader timeout.
        let acts = r.tick(0, &v);
        assert_eq!(controls(&acts).len(), 3, "capabilities from the 3 nodes");
        for (id, _, _) in controls(&acts) {
            r.on_control_result(
                0,
                &v,
                id,
                ControlResult::Ok(Reply::Capabilities(CTDB_CAP_DEFAULT)),
            );
        }
        // Nobody broadcasts: at the leader timeout, recmode ACTIVE everywhere.
        let t = secs(tun.leader_timeout);
        let acts = r.tick(t, &v);
        let sets: Vec<_> = controls(&acts)
            .into_iter()
            .filter(|c| c.2 == Control::SetRecmode(CTDB_RECOVERY_ACTIVE))
            .collect();
        assert_eq!(sets.len(), 3);
        let mut out = Vec::new();
        for (id, _, _) in sets {
            out.extend(r.on_control_result(t, &v, id, ControlResult::Ok(Reply::Done)));
        }
        assert!(out.contains(&Action::Message {
            dest: Dest::Connected,
            msg: Message::Leader(CTDB_UNKNOWN_PNN)
        }));
        assert!(out.iter().any(|a| matches!(
            a,
            Action::Message { dest: Dest::All, msg: Message::Election(em) } if em.pnn == 1
        )));
        assert!(r.election_in_progress());
        // A node that started earlier wins: we adopt it.
        let em = crate::cluster::election::election_data(2, 0, t, &v);
        let mut early = em;
        early.priority_time = crate::cluster::election::timeval(0);
        r.el.priority_time = 5;
        r.on_message(t, &v, &Message::Election(early));
        assert_eq!(r.leader(), 2);
        // The election ends ElectionTimeout after the last message.
        r.tick(t + secs(tun.election_timeout), &v);
        assert!(!r.election_in_progress());
        assert_eq!(r.leader(), 2);
    }

    #[test]
    fn lock_election_and_self_ban_without_lock() {
        let tun = Tunables::default();
        let v = view(&[0, 0, 0], &[0, 1, 2]);
        let mut r = Recoverd::new(0, tun.clone(), true, 0, 9);
        // As upstream: UNKNOWN while the leader is unknown is no news.
        assert!(r
            .on_message(5, &v, &Message::Leader(CTDB_UNKNOWN_PNN))
            .is_empty());
        r.on_message(6, &v, &Message::Leader(2));
        assert_eq!(r.leader(), 2);
        let acts = r.on_message(10, &v, &Message::Leader(CTDB_UNKNOWN_PNN));
        assert_eq!(acts, vec![Action::TakeClusterLock]);
        assert!(r.election_in_progress());
        r.on_lock_status(20, &v, crate::cluster::LockStatus::Held);
        assert!(r.is_leader() && r.lock_held() && !r.election_in_progress());
        // The broadcast loop announces the leader every second.
        r.el.broadcast_at = Some(1000);
        let acts = r.tick(1000, &v);
        assert!(acts.contains(&Action::Message {
            dest: Dest::Connected,
            msg: Message::Leader(0)
        }));
        // Banned: leadership and the lock go at the next broadcast tick.
        let banned = view(&[NODE_FLAGS_BANNED, 0, 0], &[0, 1, 2]);
        let acts = r.tick(2000, &banned);
        assert!(acts.contains(&Action::ReleaseClusterLock));
        assert_eq!(r.leader(), CTDB_UNKNOWN_PNN);
        // Contention: someone else has it; not leader.
        let mut r2 = Recoverd::new(1, tun, true, 0, 9);
        r2.on_message(6, &v, &Message::Leader(2));
        r2.on_message(10, &v, &Message::Leader(CTDB_UNKNOWN_PNN));
        r2.on_lock_status(20, &v, crate::cluster::LockStatus::Contended);
        assert!(!r2.is_leader() && !r2.lock_held());
        // A leader that lost the lock bans itself instead of recovering.
        r2.el.leader = 1;
        let mut out = Vec::new();
        r2.do_recovery(30, &v, &mut out);
        assert_eq!(
            controls(&out).into_iter().map(|c| c.2).collect::<Vec<_>>(),
            vec![Control::SetBanState(BanState {
                pnn: 1,
                time: r2.tun.recovery_ban_period
            })]
        );
    }

    #[test]
    fn elections_always_end_and_holder_leads() {
        let tun = Tunables::default();
        let v = view(&[0, 0, 0], &[0, 1, 2]);
        // No lock: LEADER(UNKNOWN) with no ELECTION after it still ends.
        let mut r = Recoverd::new(0, tun.clone(), false, 0, 9);
        r.on_message(1, &v, &Message::Leader(2));
        r.on_message(2, &v, &Message::Leader(CTDB_UNKNOWN_PNN));
        assert!(r.election_in_progress());
        assert!(r.next_wakeup() <= 2 + secs(tun.election_timeout));
        r.tick(2 + secs(tun.election_timeout), &v);
        assert!(!r.election_in_progress());
        // Lock: a holder that was told of another leader takes over again
        // at the next election, and only a holder broadcasts.
        let mut h = Recoverd::new(0, tun, true, 0, 9);
        h.on_message(1, &v, &Message::Leader(2));
        h.on_message(2, &v, &Message::Leader(CTDB_UNKNOWN_PNN));
        h.on_lock_status(3, &v, crate::cluster::LockStatus::Held);
        h.on_message(4, &v, &Message::Leader(1));
        assert_eq!(h.leader(), 1);
        h.on_message(5, &v, &Message::Leader(CTDB_UNKNOWN_PNN));
        assert!(h.is_leader() && !h.election_in_progress());
        h.el.lock = LockState::Free;
        h.el.broadcast_at = Some(10);
        let acts = h.tick(10, &v);
        assert!(!acts.iter().any(|a| matches!(
            a,
            Action::Message {
                msg: Message::Leader(_),
                ..
            }
        )));
    }

    #[test]
    fn flag_pushes_take_remote_own_flags() {
        let mut r = Recoverd::new(0, Tunables::default(), false, 0, 1);
        let v = view(&[0, 0, 0], &[0, 1, 2]);
        r.remote
            .insert(1, vec![(0, 0), (1, NODE_FLAGS_BANNED), (2, 0)]);
        r.remote.insert(2, vec![(0, 0), (1, 0), (2, 0)]);
        let p = r.flag_pushes(&v);
        assert_eq!(
            p,
            vec![NodeFlagChange {
                pnn: 1,
                new_flags: NODE_FLAGS_BANNED,
                old_flags: 0
            }]
        );
    }
}
