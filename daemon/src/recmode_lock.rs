//! SET_RECMODE NORMAL's cluster lock check (upstream's
//! `ctdb_control_set_recmode` with a recovery lock configured): before a
//! node leaves recovery, its daemon tries to take the cluster lock itself.
//! The leader holds it, so the try must fail with contention (or time
//! out); a daemon that *gets* the lock has found a lock coherence problem
//! (two nodes could both think they lead) and the control fails.
//!
//! Why here and not in the node machine: the try runs the mutex helper,
//! which takes time, while controls are answered synchronously. So the
//! first SET_RECMODE NORMAL starts the try and is deferred
//! ([`crate::controls::Outcome::Deferred`]: handed in again every 100 ms);
//! the one that finds the try finished takes its result
//! ([`take_result`]) and goes on, or fails. One try at a time per daemon
//! (the control core is one thread: the state is thread-local).

use std::cell::RefCell;

use ctdb_protocol::constants::{CTDB_RECOVERY_ACTIVE, CTDB_RECOVERY_NORMAL};

use crate::cluster::LockStatus;
use crate::monitor::ClusterLock;
use crate::state::Daemon;

enum Test {
    Idle,
    Running,
    Done(LockStatus, String),
}

thread_local! {
    static TEST: RefCell<Test> = const { RefCell::new(Test::Idle) };
}

/// Whether a SET_RECMODE to `mode` must wait for the lock try (started
/// here when none runs). Only NORMAL on a node in recovery with a cluster
/// lock configured waits.
pub fn must_wait(d: &Daemon, mode: u32) -> bool {
    let Some(lock) = d.reclock.clone() else {
        return false;
    };
    if mode != CTDB_RECOVERY_NORMAL || d.node.borrow().recmode() != CTDB_RECOVERY_ACTIVE {
        return false;
    }
    TEST.with(|t| {
        let mut t = t.borrow_mut();
        match *t {
            Test::Done(..) => false,
            Test::Running => true,
            Test::Idle => {
                *t = Test::Running;
                let helper = d.mutex_helper.clone();
                glommio::spawn_local(async move {
                    let r = match ClusterLock::take(&helper, &lock).await {
                        Ok(mut held) => {
                            held.release();
                            Test::Done(LockStatus::Held, "taken".into())
                        }
                        Err((st, why)) => Test::Done(st, why),
                    };
                    TEST.with(|t| *t.borrow_mut() = r);
                })
                .detach();
                true
            }
        }
    })
}

/// The finished try's verdict, consumed: `Ok` to go on to NORMAL, `Err`
/// with upstream's message. `Ok` when no try ran (nothing to check).
pub fn take_result(d: &Daemon) -> Result<(), String> {
    let done = TEST.with(|t| {
        let mut t = t.borrow_mut();
        match std::mem::replace(&mut *t, Test::Idle) {
            Test::Done(st, why) => Some((st, why)),
            Test::Running => {
                *t = Test::Running;
                None
            }
            Test::Idle => None,
        }
    });
    let lock = d.reclock.as_deref().unwrap_or("");
    match done {
        None => Ok(()),
        Some((LockStatus::Held, _)) => {
            tracing::error!(
                "ERROR: Daemon able to take recovery lock on \"{lock}\" during recovery"
            );
            Err(
                "Took recovery lock from daemon during recovery - probably a cluster \
                 filesystem lock coherence problem"
                    .into(),
            )
        }
        Some((LockStatus::Contended, _)) => {
            tracing::debug!("Recovery lock check OK");
            Ok(())
        }
        Some((LockStatus::Timeout, _)) => {
            tracing::warn!("Time out getting recovery lock, allowing recmode set anyway");
            Ok(())
        }
        Some((LockStatus::Error, why)) => {
            tracing::error!("Unexpected error when testing recovery lock: {why}");
            Err("Unexpected error when testing recovery lock".into())
        }
    }
}
