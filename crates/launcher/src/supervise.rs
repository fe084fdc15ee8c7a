//! The supervisor thread: reaps children that exit, reports them as [`Event`]s, restarts
//! them per the policy with an exponential backoff ([`RestartState`]), and samples their
//! usage; the same for the throwaway PostgreSQL cluster (`pgrole`), watched through its
//! pid file.

use crate::children::{Children, Proc};
use crate::{procs, Event, Restart};
use std::io;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How often the supervisor looks for exited children.
const SUPERVISE_TICK: Duration = Duration::from_millis(100);
/// How often the supervisor samples `/proc` so that the usage of a process that dies is
/// known up to this much before its death.
const SAMPLE_EVERY: Duration = Duration::from_secs(1);
/// First delay before restarting a role that exited, doubled at each consecutive
/// failure up to [`RESTART_BACKOFF_MAX`]: a role that crashes at once must not spin.
const RESTART_BACKOFF_MIN: Duration = Duration::from_millis(500);
const RESTART_BACKOFF_MAX: Duration = Duration::from_secs(10);
/// A role that ran this long before exiting is considered to have been healthy, and its
/// next restart starts again from the shortest backoff.
const RESTART_STABLE_AFTER: Duration = Duration::from_secs(30);

/// When a role is to be started again: its restart state, one per role, changed only
/// through the methods below, each named for what happened. Time is passed in, so the
/// states are tested without waiting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RestartState {
    /// When its current (or last) process started.
    started_at: Instant,
    /// The wait before the next restart that gets scheduled.
    backoff: Duration,
    /// When it is to be started again; `None`: it is not.
    due_at: Option<Instant>,
    /// Restarts so far.
    restarts: u32,
}

impl RestartState {
    /// A role whose first process started at `now`.
    pub(crate) fn started(now: Instant) -> RestartState {
        RestartState {
            started_at: now,
            backoff: RESTART_BACKOFF_MIN,
            due_at: None,
            restarts: 0,
        }
    }

    /// Its process exited at `now`. One that ran [`RESTART_STABLE_AFTER`] was healthy:
    /// the next restart waits the shortest backoff again.
    pub(crate) fn exited(&mut self, now: Instant) {
        if now.duration_since(self.started_at) >= RESTART_STABLE_AFTER {
            self.backoff = RESTART_BACKOFF_MIN;
        }
    }

    /// Schedules a restart after the current backoff, which doubles for the next one (up
    /// to [`RESTART_BACKOFF_MAX`]). Returns the wait.
    pub(crate) fn schedule(&mut self, now: Instant) -> Duration {
        let wait = self.backoff;
        self.due_at = Some(now + wait);
        self.backoff = (self.backoff * 2).min(RESTART_BACKOFF_MAX);
        wait
    }

    /// Whether a restart is due at `now`; if so, it is taken (no longer scheduled).
    pub(crate) fn take_due(&mut self, now: Instant) -> bool {
        let due = self.due_at.is_some_and(|t| t <= now);
        if due {
            self.due_at = None;
        }
        due
    }

    /// A new process of the role started at `now`.
    pub(crate) fn restarted(&mut self, now: Instant) {
        self.started_at = now;
        self.restarts += 1;
    }

    /// The role is being stopped: no restart.
    pub(crate) fn cancel(&mut self) {
        self.due_at = None;
    }

    /// Restarts so far.
    pub(crate) fn restarts(&self) -> u32 {
        self.restarts
    }
}

/// Starts the supervisor thread; it ends once [`Children::request_stop`] is called.
pub(crate) fn spawn(children: Arc<Children>) -> io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name("payroute-up-supervisor".into())
        .spawn(move || supervise(&children))
}

/// The supervisor's loop: every [`SUPERVISE_TICK`], reap and restart; every
/// [`SAMPLE_EVERY`] (and after a restart), sample.
fn supervise(children: &Children) {
    let mut last_sample = Instant::now();
    while !children.stopping() {
        std::thread::sleep(SUPERVISE_TICK);
        let mut procs = children.procs();
        if children.stopping() {
            return;
        }
        let now = Instant::now();
        let mut events = Vec::new();
        let mut restarted = false;
        for p in procs.iter_mut() {
            if p.child.is_some() {
                events.extend(reap(p, children.restart, now));
            } else if p.restart.take_due(now) {
                let event = restart(children, p, now);
                restarted |= matches!(event, Event::Restarted { .. });
                events.push(event);
            }
        }
        if let Some(cluster) = children.cluster().as_mut() {
            events.extend(cluster.supervise(children.restart, now));
        }
        if now.duration_since(last_sample) >= SAMPLE_EVERY || restarted {
            last_sample = now;
            sample(children, &mut procs);
        }
        drop(procs);
        children.report(events);
    }
}

/// If `p`'s process has exited: the event that says so, with a restart scheduled when
/// the role and the `policy` allow one.
fn reap(p: &mut Proc, policy: Restart, now: Instant) -> Option<Event> {
    match p.try_reap() {
        Ok(None) => None,
        Ok(Some(status)) => {
            p.restart.exited(now);
            let restart_in =
                (p.spec.restartable && policy == Restart::Always).then(|| p.restart.schedule(now));
            Some(Event::Exited {
                name: p.spec.name.clone(),
                pid: p.pid,
                status: status.to_string(),
                log: p.spec.log.clone(),
                log_tail: p.log_tail(),
                restart_in,
            })
        }
        Err(e) => {
            tracing::warn!("cannot check {} (pid {}): {e}", p.spec.name, p.pid);
            None
        }
    }
}

/// Starts `p` again, in its cgroups; if that fails, schedules another try.
fn restart(children: &Children, p: &mut Proc, now: Instant) -> Event {
    match procs::spawn(&p.spec) {
        Ok(child) => {
            p.pid = child.id();
            p.child = Some(child);
            p.restart.restarted(now);
            if let Err(e) = children.limit(&p.spec.name, p.pid) {
                tracing::warn!("restarted {} runs without its limits: {e}", p.spec.name);
            }
            Event::Restarted {
                name: p.spec.name.clone(),
                pid: p.pid,
                restarts: p.restart.restarts(),
            }
        }
        Err(e) => Event::RestartFailed {
            name: p.spec.name.clone(),
            error: e.to_string(),
            retry_in: p.restart.schedule(now),
        },
    }
}

/// Samples the usage of every running role, and moves what the load balancer forked
/// since the last time into its cgroups.
fn sample(children: &Children, procs: &mut [Proc]) {
    for p in procs.iter_mut() {
        if let Some(s) = p.sample_now() {
            p.last = s;
        }
    }
    if let Some(cluster) = children.cluster().as_mut() {
        cluster.sample();
    }
    children.rejoin_groups(procs);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restart_backoff_doubles_up_to_its_cap_and_resets_after_a_stable_run() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let ms = Duration::from_millis;
        let mut s = RestartState::started(t0);
        assert!(!s.take_due(at(100_000)), "nothing scheduled at start");

        // Dies at once: restarted after the shortest backoff, and only once.
        s.exited(at(100));
        assert_eq!(s.schedule(at(100)), ms(500));
        assert!(!s.take_due(at(599)));
        assert!(s.take_due(at(600)));
        assert!(!s.take_due(at(600)));

        // Every failed try doubles the wait, up to 10 s.
        let waits: Vec<Duration> = (0..6).map(|_| s.schedule(at(600))).collect();
        assert_eq!(
            waits,
            [
                ms(1000),
                ms(2000),
                ms(4000),
                ms(8000),
                ms(10_000),
                ms(10_000)
            ]
        );

        // Restarted, dies within 30 s: still unhealthy, the wait stays long.
        s.restarted(at(1_000));
        s.exited(at(30_999));
        assert_eq!(s.schedule(at(30_999)), ms(10_000));

        // Restarted, runs 30 s: it was healthy, the next wait is the shortest again.
        s.restarted(at(41_000));
        s.exited(at(71_000));
        assert_eq!(s.schedule(at(71_000)), ms(500));
        assert_eq!(s.restarts(), 2);

        // Being stopped: the scheduled restart never comes.
        s.cancel();
        assert!(!s.take_due(at(1_000_000)));
    }
}
