//! Parked glommio executors wake up for every kind of event the daemon
//! relies on: their own timers, another executor publishing into a shared
//! channel (data, or room in a full one), and a waker called from a plain
//! thread.
//!
//! Why here: the vendored glommio (vendor/glommio/PATCHED.md) changes how an
//! executor parks (how the latency ring, which carries timers and the
//! cross-thread eventfd, is linked into the ring it sleeps on, and which
//! fences order "I sleep" against "there is work"). A lost wake-up there
//! does not fail loudly: the executor sleeps until some unrelated socket
//! event, which in a busy daemon may hide it for a long time. Each test
//! runs thousands of park/wake rounds with nothing else to wake the
//! executor, and a watchdog turns a stall into a failure that says how far
//! it got. The shared-channel test caught one: an executor preempted before
//! it ran its woken task parked with the task ready (PATCHED.md,
//! `run_task_queues`); it stalled in about one run in three before the fix.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use glommio::channels::shared_channel;
use glommio::timer::sleep;
use glommio::{LocalExecutorBuilder, Placement};

/// Runs `f` on a fresh unpinned executor in its own thread; returns a
/// receiver that gets the result.
fn spawn_executor<F, Fut, T>(name: &str, f: F) -> mpsc::Receiver<T>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = T> + 'static,
    T: Send + 'static,
{
    let (tx, rx) = mpsc::channel();
    LocalExecutorBuilder::new(Placement::Unbound)
        .name(name)
        .io_memory(256 * 1024)
        .spawn(move || async move {
            let _ = tx.send(f().await);
        })
        .expect("glommio executor starts");
    rx
}

/// Waits for `rx` for at most `limit`; on a stall, fails with what
/// `progress` says.
fn await_or_stall<T>(
    rx: &mpsc::Receiver<T>,
    limit: Duration,
    what: &str,
    progress: &AtomicUsize,
) -> T {
    rx.recv_timeout(limit).unwrap_or_else(|_| {
        panic!(
            "{what}: no result after {limit:?}, stuck after {} rounds (a lost wake-up)",
            progress.load(Ordering::SeqCst)
        )
    })
}

#[test]
fn timers_alone_wake_a_parked_executor() {
    const ROUNDS: usize = 400;
    let done = Arc::new(AtomicUsize::new(0));
    let d = done.clone();
    let started = Instant::now();
    let rx = spawn_executor("timers", move || async move {
        for i in 0..ROUNDS {
            // Alternate lengths so that a pending timer is sometimes due
            // before and sometimes after the next one asked for.
            let us = if i % 3 == 0 { 1500 } else { 300 };
            sleep(Duration::from_micros(us)).await;
            d.store(i + 1, Ordering::SeqCst);
        }
    });
    await_or_stall(&rx, Duration::from_secs(30), "timer sleeps", &done);
    let took = started.elapsed();
    // Each sleep lasts at least what it asked for; the whole run cannot be
    // shorter than their sum.
    assert!(
        took >= Duration::from_micros(300 * ROUNDS as u64),
        "{ROUNDS} sleeps took only {took:?}"
    );
    eprintln!("{ROUNDS} timer sleeps in {took:?}");
}

#[test]
fn executors_wake_each_other_through_shared_channels() {
    const ROUND_TRIPS: usize = 20_000;
    const FLOOD: usize = 50_000;
    let progress = Arc::new(AtomicUsize::new(0));
    let (ping_tx, ping_rx) = shared_channel::new_bounded::<u64>(4);
    let (pong_tx, pong_rx) = shared_channel::new_bounded::<u64>(4);
    // A small channel for the flood, so the sender keeps finding it full
    // and must be woken when the receiver makes room.
    let (flood_tx, flood_rx) = shared_channel::new_bounded::<u64>(16);

    let p = progress.clone();
    let a = spawn_executor("ping", move || async move {
        let ping = ping_tx.connect().await;
        let pong = pong_rx.connect().await;
        let flood = flood_tx.connect().await;
        for i in 0..ROUND_TRIPS as u64 {
            ping.send(i).await.expect("ping channel open");
            let back = pong.recv().await.expect("pong channel open");
            assert_eq!(back, i + 1, "pong answers ping {i}");
            p.fetch_add(1, Ordering::SeqCst);
            // Now and then let the peer park before the next ping.
            if i % 1000 == 0 {
                sleep(Duration::from_micros(200)).await;
            }
        }
        for i in 0..FLOOD as u64 {
            flood.send(i).await.expect("flood channel open");
        }
    });
    let p = progress.clone();
    let b = spawn_executor("pong", move || async move {
        let ping = ping_rx.connect().await;
        let pong = pong_tx.connect().await;
        let flood = flood_rx.connect().await;
        for _ in 0..ROUND_TRIPS {
            let v = ping.recv().await.expect("ping channel open");
            pong.send(v + 1).await.expect("pong channel open");
        }
        let mut sum = 0u64;
        for i in 0..FLOOD as u64 {
            let v = flood.recv().await.expect("flood channel open");
            assert_eq!(v, i, "flood arrives in order");
            sum += v;
            p.fetch_add(1, Ordering::SeqCst);
            // The receiver is sometimes slower than the sender.
            if i % 5000 == 0 {
                sleep(Duration::from_micros(300)).await;
            }
        }
        sum
    });
    let limit = Duration::from_secs(60);
    await_or_stall(&a, limit, "ping side", &progress);
    let sum = await_or_stall(&b, limit, "pong side", &progress);
    assert_eq!(sum, (FLOOD as u64 - 1) * FLOOD as u64 / 2);
}

/// A one-slot mailbox a plain thread fills and an executor task awaits.
#[derive(Default)]
struct Mailbox {
    value: Option<u64>,
    waker: Option<Waker>,
}

struct Take(Arc<Mutex<Mailbox>>);

impl Future for Take {
    type Output = u64;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<u64> {
        let mut m = self.0.lock().expect("mailbox lock");
        match m.value.take() {
            Some(v) => Poll::Ready(v),
            None => {
                m.waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

#[test]
fn a_plain_thread_wakes_a_parked_executor() {
    const ROUNDS: u64 = 3000;
    let progress = Arc::new(AtomicUsize::new(0));
    let mailbox = Arc::new(Mutex::new(Mailbox::default()));
    let (ack_tx, ack_rx) = mpsc::channel::<u64>();
    let m = mailbox.clone();
    let p = progress.clone();
    let rx = spawn_executor("foreign", move || async move {
        let mut sum = 0;
        for i in 0..ROUNDS {
            let v = Take(m.clone()).await;
            assert_eq!(v, i, "values arrive in order");
            sum += v;
            p.fetch_add(1, Ordering::SeqCst);
            ack_tx.send(v).expect("feeder listens");
        }
        sum
    });
    let feeder = std::thread::spawn(move || {
        for i in 0..ROUNDS {
            // Sometimes right away, sometimes after the executor parked.
            if i % 4 == 0 {
                std::thread::sleep(Duration::from_micros(200));
            }
            let waker = {
                let mut m = mailbox.lock().expect("mailbox lock");
                m.value = Some(i);
                m.waker.take()
            };
            if let Some(w) = waker {
                w.wake();
            }
            if ack_rx.recv_timeout(Duration::from_secs(20)).is_err() {
                return Err(i);
            }
        }
        Ok(())
    });
    let sum = await_or_stall(&rx, Duration::from_secs(60), "foreign wakes", &progress);
    assert_eq!(sum, (ROUNDS - 1) * ROUNDS / 2);
    feeder
        .join()
        .expect("feeder thread")
        .unwrap_or_else(|i| panic!("executor never took value {i}"));
}
