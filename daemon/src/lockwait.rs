//! Waiting for a busy record lock without holding up a core.
//!
//! A record step (migration in or out, a call served here) needs the
//! record's chain lock in the local TDB file; smbd takes the same lock while
//! it works on the record. When the step finds it busy, upstream forks a
//! lock helper that blocks on the lock and tells the daemon once it has it.
//! Cores must not block, so a step that found its chain busy parks its
//! retry here: a small pool of plain threads blocks on the lock
//! ([`ctdb_engine::ChainWaiter`]: take it, let it go at once) and wakes the
//! core's task, which tries again straight away. A retry waits for that
//! word for half a second at most; when every waiter thread is already
//! blocked (records held for long), retries fall back to the migrator's
//! timed backoff, as before there were waiters.
//!
//! Each wait is counted once the step has its lock, with the time since
//! the step first found the chain busy (`Counter::LockWait` of the
//! migrator): `ctdb statistics` and `ctdb dbstatistics` show `locks`,
//! `lock_buckets` and `locks_latency` as upstream counts its helpers.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use crossbeam::channel::{bounded, Sender};
use ctdb_engine::ChainWaiter;
use futures_lite::future;

/// Threads blocking on chain locks for the whole daemon: how many busy
/// records can be waited for at once.
const WAITER_THREADS: usize = 8;

/// Waits queued for a thread (only while one is idle, so this is a bound
/// for races between submissions, not a backlog).
const QUEUE: usize = 64;

/// How long a retry waits for a waiter thread's word at most: a safety net
/// (upstream waits for its lock helper without a bound).
const WAIT_CAP: Duration = Duration::from_millis(500);

/// Waiter threads not blocked on a lock right now.
static IDLE: AtomicUsize = AtomicUsize::new(0);

/// Completion flag shared by one wait's thread side and its future.
#[derive(Default)]
struct Signal {
    state: Mutex<(bool, Option<Waker>)>,
}

impl Signal {
    fn fire(&self) {
        let waker = {
            let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
            st.0 = true;
            st.1.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
    }
}

/// Resolves once the chain was seen free (or its wait failed).
struct ChainFree(Arc<Signal>);

impl Future for ChainFree {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut st = self.0.state.lock().unwrap_or_else(|e| e.into_inner());
        if st.0 {
            return Poll::Ready(());
        }
        st.1 = Some(cx.waker().clone());
        Poll::Pending
    }
}

struct Job {
    waiter: ChainWaiter,
    done: Arc<Signal>,
}

fn pool() -> &'static Sender<Job> {
    static POOL: OnceLock<Sender<Job>> = OnceLock::new();
    POOL.get_or_init(|| {
        let (tx, rx) = bounded::<Job>(QUEUE);
        for i in 0..WAITER_THREADS {
            let rx = rx.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("ctdb-lockwait-{i}"))
                .spawn(move || {
                    IDLE.fetch_add(1, Ordering::SeqCst);
                    for job in rx.iter() {
                        IDLE.fetch_sub(1, Ordering::SeqCst);
                        // Nobody waits any more (the retry ran on its
                        // timer): skip the lock.
                        if Arc::strong_count(&job.done) > 1 {
                            if let Err(e) = job.waiter.wait() {
                                tracing::warn!("waiting for a busy record lock: {e}");
                            }
                            job.done.fire();
                        }
                        IDLE.fetch_add(1, Ordering::SeqCst);
                    }
                });
            if let Err(e) = spawned {
                tracing::warn!("cannot start lock waiter thread {i}: {e}");
            }
        }
        tx
    })
}

/// Wait before retrying a step that found `waiter`'s chain busy: until a
/// waiter thread has seen the chain free (at most [`WAIT_CAP`]). Without a
/// waiter, or with every waiter thread blocked on another lock, this is a
/// plain sleep of `backoff` (the migrator's pause).
pub async fn chain_free_or(waiter: Option<ChainWaiter>, backoff: Duration) {
    let done = Arc::new(Signal::default());
    let queued = waiter.is_some_and(|waiter| {
        let tx = pool();
        IDLE.load(Ordering::SeqCst) > 0
            && tx
                .try_send(Job {
                    waiter,
                    done: done.clone(),
                })
                .is_ok()
    });
    if !queued {
        glommio::timer::sleep(backoff).await;
        return;
    }
    future::or(ChainFree(done), async {
        glommio::timer::sleep(WAIT_CAP.max(backoff)).await;
    })
    .await
}
