//! The two limiters of the official processor, rebuilt on tokio with the semantics of
//! the .NET `System.Threading.RateLimiting` ones it uses.
//!
//! - [`InFlight`]: a concurrency limiter for `POST /payments` (`ConcurrencyLimiter`,
//!   oldest first): a permit per request in flight, a bounded FIFO of waiters, an
//!   immediate refusal beyond it.
//! - [`Windows`]: the fixed-window limiter of `GET /payments/service-health`
//!   (`FixedWindowRateLimiter`, 1 permit per window, queue of 2, oldest first).
//!
//! Both keep their state behind a `std::sync::Mutex` or atomics: the runtime has one
//! thread, critical sections are a few instructions and never span an `.await`, so an
//! async mutex would only add cost.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::{oneshot, OwnedSemaphorePermit, Semaphore};

/// The limiter refused: answer 429.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Refused;

/// Concurrency limiter: `max_in_flight` permits; up to `max_queued` callers wait for one,
/// served oldest first; anyone beyond that is refused at once.
///
/// tokio's `Semaphore` is fair (a released permit goes to the oldest waiter, and
/// `try_acquire` fails while anyone waits), which is exactly `OldestFirst`. A waiter
/// whose client disconnects is dropped from the queue, as ASP.NET cancels the wait
/// with the request.
#[derive(Debug)]
pub(crate) struct InFlight {
    permits: Arc<Semaphore>,
    max_in_flight: usize,
    max_queued: usize,
    queued: AtomicUsize,
}

impl InFlight {
    pub(crate) fn new(max_in_flight: usize, max_queued: usize) -> InFlight {
        InFlight {
            permits: Arc::new(Semaphore::new(max_in_flight)),
            max_in_flight,
            max_queued,
            queued: AtomicUsize::new(0),
        }
    }

    /// A permit, held until the request's work is done (the permit moves into the
    /// spawned work, so a disconnected client does not free it early).
    pub(crate) async fn acquire(&self) -> Result<OwnedSemaphorePermit, Refused> {
        if let Ok(p) = self.permits.clone().try_acquire_owned() {
            return Ok(p);
        }
        // Count ourselves in the queue, refusing if it is full. The compare-exchange
        // loop is for correctness on any runtime; on one thread it never retries.
        let mut n = self.queued.load(Ordering::Relaxed);
        loop {
            if n >= self.max_queued {
                return Err(Refused);
            }
            match self
                .queued
                .compare_exchange(n, n + 1, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => break,
                Err(now) => n = now,
            }
        }
        // Leaves the queue however the wait ends: permit, or the future dropped
        // because the client went away.
        struct Leave<'a>(&'a AtomicUsize);
        impl Drop for Leave<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::Relaxed);
            }
        }
        let _leave = Leave(&self.queued);
        // The semaphore is never closed, so acquiring only fails if it were.
        self.permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| Refused)
    }

    /// Requests holding a permit.
    pub(crate) fn in_flight(&self) -> usize {
        self.max_in_flight - self.permits.available_permits()
    }

    /// Requests waiting for a permit.
    pub(crate) fn queued(&self) -> usize {
        self.queued.load(Ordering::Relaxed)
    }
}

/// Permits per window of the health limiter: the official `PermitLimit`.
const PERMITS_PER_WINDOW: u32 = 1;

/// Fixed-window limiter, with the exact semantics of .NET's `FixedWindowRateLimiter`
/// configured as the official processor configures it (`PermitLimit = 1`,
/// `QueueLimit = 2`, `OldestFirst`, automatic replenishment):
///
/// - Windows are fixed: they open every `window` from the moment the limiter starts
///   (a timer, not the first call), each with one permit.
/// - A caller takes the window's permit at once if it is free **and nobody waits**
///   (waiters go first, oldest first).
/// - Otherwise it waits in a queue of at most `max_waiting` callers. When a window
///   opens, its one permit goes to the oldest waiter; the next waiter waits for the
///   window after. So with windows of 5 s, a first caller is answered at once, a second
///   when the next window opens (up to 5 s later) and a third one window later still
///   (up to 10 s).
/// - Anyone else is refused: 429 with `Retry-After` (the window length in seconds, as
///   the official processor sends it).
/// - A waiter that gives up (client gone) leaves the queue and frees its place.
#[derive(Debug)]
pub(crate) struct Windows {
    window: Duration,
    max_waiting: usize,
    state: Mutex<WindowState>,
}

#[derive(Debug)]
struct WindowState {
    permits: u32,
    next_ticket: u64,
    waiting: VecDeque<(u64, oneshot::Sender<()>)>,
}

impl Windows {
    pub(crate) fn new(window: Duration, max_waiting: usize) -> Windows {
        Windows {
            window,
            max_waiting,
            state: Mutex::new(WindowState {
                permits: PERMITS_PER_WINDOW,
                next_ticket: 0,
                waiting: VecDeque::new(),
            }),
        }
    }

    /// `Retry-After` in whole seconds: the window, rounded up, at least 1.
    pub(crate) fn retry_after_secs(&self) -> u64 {
        self.window.as_millis().div_ceil(1000).max(1) as u64
    }

    fn lock(&self) -> MutexGuard<'_, WindowState> {
        // A panic while holding this lock leaves consistent state (every update is a
        // single assignment or push/pop), so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes a permit now, or waits for one of the next windows, or is refused.
    pub(crate) async fn acquire(&self) -> Result<(), Refused> {
        let (ticket, rx) = {
            let mut s = self.lock();
            if s.permits > 0 && s.waiting.is_empty() {
                s.permits -= 1;
                return Ok(());
            }
            if s.waiting.len() >= self.max_waiting {
                return Err(Refused);
            }
            let (tx, rx) = oneshot::channel();
            let ticket = s.next_ticket;
            s.next_ticket += 1;
            s.waiting.push_back((ticket, tx));
            (ticket, rx)
        };
        // Removes our place in the queue if the wait ends without a permit.
        struct Leave<'a>(&'a Windows, u64);
        impl Drop for Leave<'_> {
            fn drop(&mut self) {
                self.0.lock().waiting.retain(|(t, _)| *t != self.1);
            }
        }
        let _leave = Leave(self, ticket);
        // The sender is only dropped unsent by `Leave` itself, so this is a permit.
        rx.await.map_err(|_| Refused)
    }

    /// Opens a new window: resets the permit and hands it to the oldest waiter, if any.
    pub(crate) fn open_window(&self) {
        let mut s = self.lock();
        s.permits = PERMITS_PER_WINDOW;
        while s.permits > 0 {
            let Some((_, tx)) = s.waiting.pop_front() else {
                break;
            };
            // A waiter whose future is gone without having left the queue (not
            // possible on one thread, harmless anyway) does not consume the permit.
            if tx.send(()).is_ok() {
                s.permits -= 1;
            }
        }
    }

    /// Callers waiting for a window.
    pub(crate) fn waiting(&self) -> usize {
        self.lock().waiting.len()
    }

    /// Opens a window every `window`, starting one window from now, until `stop`.
    /// A stalled runtime skips missed windows rather than opening several at once,
    /// as a .NET timer does.
    pub(crate) async fn run_clock(&self, stop: netio::CancellationToken) {
        let start = tokio::time::Instant::now() + self.window;
        let mut ticks = tokio::time::interval_at(start, self.window);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = ticks.tick() => self.open_window(),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::time::Instant;

    /// Lets spawned tasks run until they block (paused time does not move while any
    /// task can run).
    async fn settle() {
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test(start_paused = true)]
    async fn health_windows_serve_one_waiter_per_window_and_refuse_the_rest() {
        let w = Arc::new(Windows::new(Duration::from_secs(5), 2));
        let stop = netio::CancellationToken::new();
        let clock = tokio::spawn({
            let (w, stop) = (w.clone(), stop.clone());
            async move { w.run_clock(stop).await }
        });
        let t0 = Instant::now();
        // First caller: at once.
        assert_eq!(w.acquire().await, Ok(()));
        // Two waiters, in order.
        let spawn_waiter = |w: Arc<Windows>| {
            tokio::spawn(async move { w.acquire().await.map(|()| Instant::now()) })
        };
        let b = spawn_waiter(w.clone());
        settle().await;
        let c = spawn_waiter(w.clone());
        settle().await;
        assert_eq!(w.waiting(), 2);
        // A third caller is refused at once, and so is a fourth.
        assert_eq!(w.acquire().await, Err(Refused));
        assert_eq!(w.acquire().await, Err(Refused));
        assert_eq!(w.retry_after_secs(), 5);
        // Each waiter gets its own window.
        let b_at = b.await.unwrap().unwrap();
        assert_eq!(b_at - t0, Duration::from_secs(5));
        let c_at = c.await.unwrap().unwrap();
        assert_eq!(c_at - t0, Duration::from_secs(10));
        // The window opened at 10 s is spent; a new caller waits for 15 s.
        let d = spawn_waiter(w.clone());
        let d_at = d.await.unwrap().unwrap();
        assert_eq!(d_at - t0, Duration::from_secs(15));
        // A caller in a fresh window with nobody waiting goes at once.
        tokio::time::sleep(Duration::from_secs(6)).await;
        let before = Instant::now();
        assert_eq!(w.acquire().await, Ok(()));
        assert_eq!(Instant::now(), before);
        stop.cancel();
        clock.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn a_waiter_that_gives_up_frees_its_place() {
        let w = Arc::new(Windows::new(Duration::from_secs(5), 2));
        assert_eq!(w.acquire().await, Ok(()));
        let b = tokio::spawn({
            let w = w.clone();
            async move { w.acquire().await }
        });
        settle().await;
        let c = tokio::spawn({
            let w = w.clone();
            async move { w.acquire().await }
        });
        settle().await;
        assert_eq!(w.waiting(), 2);
        b.abort();
        settle().await;
        assert_eq!(w.waiting(), 1);
        // The next window's permit goes to c, not to the departed b.
        w.open_window();
        assert_eq!(c.await.unwrap(), Ok(()));
        assert_eq!(w.waiting(), 0);
    }

    #[test]
    fn retry_after_is_whole_seconds_at_least_one() {
        assert_eq!(
            Windows::new(Duration::from_secs(5), 2).retry_after_secs(),
            5
        );
        assert_eq!(
            Windows::new(Duration::from_millis(50), 2).retry_after_secs(),
            1
        );
        assert_eq!(
            Windows::new(Duration::from_millis(1500), 2).retry_after_secs(),
            2
        );
    }

    #[tokio::test]
    async fn in_flight_admits_then_queues_fifo_then_refuses() {
        let l = Arc::new(InFlight::new(2, 2));
        let p1 = l.acquire().await.unwrap();
        let p2 = l.acquire().await.unwrap();
        assert_eq!(l.in_flight(), 2);
        let order = Arc::new(Mutex::new(Vec::new()));
        let spawn_waiter = |n: u32| {
            let (l, order) = (l.clone(), order.clone());
            tokio::spawn(async move {
                let p = l.acquire().await;
                order.lock().unwrap().push(n);
                p
            })
        };
        let a = spawn_waiter(1);
        settle().await;
        let b = spawn_waiter(2);
        settle().await;
        assert_eq!(l.queued(), 2);
        assert_eq!(l.acquire().await.err(), Some(Refused));
        drop(p1);
        let pa = a.await.unwrap().unwrap();
        drop(p2);
        let pb = b.await.unwrap().unwrap();
        assert_eq!(*order.lock().unwrap(), vec![1, 2]);
        assert_eq!((l.in_flight(), l.queued()), (2, 0));
        drop((pa, pb));
        assert_eq!(l.in_flight(), 0);
    }

    #[tokio::test]
    async fn in_flight_waiter_that_gives_up_leaves_the_queue() {
        let l = Arc::new(InFlight::new(1, 1));
        let p = l.acquire().await.unwrap();
        let a = tokio::spawn({
            let l = l.clone();
            async move { l.acquire().await.map(drop) }
        });
        settle().await;
        assert_eq!(l.queued(), 1);
        a.abort();
        settle().await;
        assert_eq!(l.queued(), 0);
        drop(p);
        assert!(l.acquire().await.is_ok());
    }
}
