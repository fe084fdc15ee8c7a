//! `--kill-worker SECS`: at that time of the test, SIGKILL to the scaled topology's
//! first worker ([`KILLED_ROLE`], by the PID the launcher reports; its restart policy
//! starts it again), then a watch until the run is over: every [`POLL_PERIOD`] the
//! ledger is asked how many payments are pending with a lapsed owner (anyone's
//! orphans) and how many of those the killed worker owned at the kill are still
//! pending, and the launcher whether the role runs again under a new PID.
//!
//! Which payments it owned: its live incarnation is read from `payroute_workers` just
//! before the kill, its pending payments just after (a transaction it had sent may
//! still commit in between; the orphans' count covers what this misses).

use super::ledger::LedgerProbe;
use crate::recorder::Recorder;
use crate::scaled::{Failures, KillRecord, KILLED_ROLE};
use crate::topology::Topology;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

/// How often the ledger is polled after the kill: fine enough to time a takeover that
/// takes a few hundred milliseconds, a cheap query on an index.
const POLL_PERIOD: Duration = Duration::from_millis(100);

/// The failed POSTs `rec` counted so far.
pub(super) fn failures(rec: &Recorder) -> Failures {
    Failures {
        failed: rec.payments_failed.load(Ordering::Relaxed),
        unavailable: rec.payments_unavailable.load(Ordering::Relaxed),
        no_answer: rec.payments_no_answer.load(Ordering::Relaxed),
    }
}

/// Kills [`KILLED_ROLE`] at `at` on the test clock `t0`, then watches until `stop`;
/// `None` when `stop` came first. An error: the kill itself failed.
pub(super) async fn kill_and_watch(
    t0: Instant,
    at: Duration,
    topo: Arc<Topology>,
    probe: Arc<LedgerProbe>,
    rec: Arc<Recorder>,
    stop: CancellationToken,
) -> anyhow::Result<Option<KillRecord>> {
    tokio::select! {
        _ = tokio::time::sleep_until((t0 + at).into()) => {}
        _ = stop.cancelled() => return Ok(None),
    }
    let mut k = KillRecord {
        role: KILLED_ROLE.to_string(),
        ..KillRecord::default()
    };
    let incarnation = probe.incarnation(KILLED_ROLE).await.unwrap_or_else(|e| {
        k.last_error = Some(format!("{e:#}"));
        None
    });
    k.failures_at_kill = failures(&rec);
    let killed_at = Instant::now();
    k.at_s = killed_at.duration_since(t0).as_secs_f64();
    let t = topo.clone();
    k.pid = tokio::task::spawn_blocking(move || t.kill(KILLED_ROLE)).await??;
    eprintln!(
        "payroute bench: killed {KILLED_ROLE} (pid {}) at {:.1} s",
        k.pid, k.at_s
    );
    let owned = match incarnation {
        Some(id) => {
            k.incarnation = Some(id.to_string());
            probe.owned(id).await.unwrap_or_else(|e| {
                k.last_error = Some(format!("{e:#}"));
                Vec::new()
            })
        }
        None => Vec::new(),
    };
    k.owned_at_kill = owned.len() as u64;
    watch(&mut k, killed_at, &owned, &topo, &probe, &stop).await;
    k.failures_at_end = failures(&rec);
    Ok(Some(k))
}

/// Polls every [`POLL_PERIOD`] from `killed_at` until `stop`.
async fn watch(
    k: &mut KillRecord,
    killed_at: Instant,
    owned: &[uuid::Uuid],
    topo: &Arc<Topology>,
    probe: &LedgerProbe,
    stop: &CancellationToken,
) {
    let mut tick = tokio::time::interval(POLL_PERIOD);
    tick.set_missed_tick_behavior(MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.cancelled() => break,
        }
        let t = killed_at.elapsed().as_secs_f64();
        if k.restarted_after_s.is_none() {
            let again = topo.pid_of(KILLED_ROLE).is_some_and(|p| p != k.pid);
            k.restarted_after_s = again.then_some(t);
        }
        match probe.poll(t, owned).await {
            Ok(p) => k.polls.push(p),
            Err(e) => {
                k.failed_polls += 1;
                k.last_error = Some(format!("{e:#}"));
            }
        }
    }
    k.watched_s = killed_at.elapsed().as_secs_f64();
}
