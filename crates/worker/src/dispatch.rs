//! The dispatch loop: asks the engine what to do, writes the timestamps it chose to
//! the log, performs each action (an HTTP call to a processor) as a task, and hands
//! the result back to the engine. It decides nothing itself.

use crate::client::ProcessorClient;
use crate::engine::Action;
use crate::log::Compaction;
use crate::state::WorkerState;
use model::Micros;
use netio::CancellationToken;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Sends what the engine asks for; sleeps until there is something new.
pub(crate) async fn dispatch_loop(
    state: Arc<WorkerState>,
    client: ProcessorClient,
    urls: Arc<[String; 2]>,
    shutdown: CancellationToken,
) {
    /// Actions taken per turn before yielding, so a flood of submits drains in bursts
    /// without starving the IPC handlers on this single thread.
    const BATCH: usize = 256;
    /// Even with nothing scheduled, look again this often (cheap: one lock).
    const IDLE_TICK: Duration = Duration::from_millis(100);
    let mut actions = Vec::with_capacity(BATCH);
    loop {
        let (must_sync, wake_at, compaction) = {
            let mut guard = state.core();
            let c = &mut *guard;
            let now = state.mono();
            let must_sync = c.take_actions(now, Micros::now(), BATCH, &mut actions);
            let compaction = match c.journal.as_mut() {
                Some(log) if log.wants_compaction() => Some(log.begin_compaction(&c.engine)),
                _ => None,
            };
            (must_sync, c.engine.next_wakeup(now), compaction)
        };
        if let Some(job) = compaction {
            tokio::spawn(compact(state.clone(), job));
        }
        // Every timestamp is on disk before its request leaves: after any crash, the
        // payment is resolved on that processor before anything else.
        if must_sync {
            if let Err(e) = sync_log(&state).await {
                tracing::error!("syncing the payment log failed; holding sends back: {e}");
                state.core().undo(&actions, state.mono());
                actions.clear();
            }
        }
        let full = actions.len() == BATCH;
        for a in actions.drain(..) {
            tokio::spawn(execute(state.clone(), client.clone(), urls.clone(), a));
        }
        if full {
            tokio::task::yield_now().await;
            continue;
        }
        let sleep = wake_at.map_or(IDLE_TICK, |t| {
            Duration::from_micros(t.since(state.mono()).clamp(500, 100_000) as u64)
        });
        tokio::select! {
            _ = state.wake.notified() => {}
            _ = tokio::time::sleep(sleep) => {}
            _ = shutdown.cancelled() => return,
        }
    }
}

async fn execute(
    state: Arc<WorkerState>,
    client: ProcessorClient,
    urls: Arc<[String; 2]>,
    action: Action,
) {
    match action {
        Action::Send {
            attempt,
            processor,
            id,
            amount,
            requested_at,
        } => {
            let started = Instant::now();
            let result = client
                .send(&urls[processor.index()], id, amount, requested_at)
                .await;
            let elapsed = started.elapsed().as_secs_f64();
            {
                let mut c = state.core();
                let was_failing = c.engine.view(processor).failing();
                c.on_send_result(attempt, result, state.mono());
                let failing = c.engine.view(processor).failing();
                if failing != was_failing {
                    tracing::info!(
                        processor = processor.name(),
                        failing,
                        last = result.name(),
                        "processor health changed (seen in a payment's answer)"
                    );
                }
            }
            if let Ok(mut h) = state.latency.lock() {
                h[processor.index()].observe(elapsed);
            }
        }
        Action::Lookup {
            attempt,
            processor,
            id,
        } => {
            let result = client.lookup(&urls[processor.index()], id).await;
            state.core().on_lookup_result(attempt, result, state.mono());
        }
    }
    state.wake.notify_one();
}

/// Syncs the payment log on a blocking thread, outside the engine's lock.
pub(crate) async fn sync_log(state: &WorkerState) -> std::io::Result<()> {
    let Some(handle) = state.sync.clone() else {
        return Ok(());
    };
    tokio::task::spawn_blocking(move || handle.sync())
        .await
        .unwrap_or_else(|e| Err(std::io::Error::other(e)))
}

/// Steps 2 and 3 of a compaction (step 1 was taken under the lock by the loop): the
/// snapshot is written and synced on a blocking thread, then swapped in.
async fn compact(state: Arc<WorkerState>, job: Compaction) {
    let written = tokio::task::spawn_blocking(move || {
        let r = job.write_snapshot();
        (job, r)
    })
    .await;
    let mut c = state.core();
    let Some(log) = c.journal.as_mut() else {
        return;
    };
    match written {
        Ok((job, Ok(()))) => {
            if let Err(e) = log.finish_compaction(job) {
                tracing::error!("payment log compaction failed: {e}");
            }
        }
        Ok((job, Err(e))) => {
            tracing::error!("payment log compaction failed writing its snapshot: {e}");
            log.abort_compaction(job);
        }
        Err(e) => tracing::error!("payment log compaction task failed: {e}"),
    }
}
