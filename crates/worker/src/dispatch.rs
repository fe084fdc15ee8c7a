//! The dispatch loop: asks the ledger for what the engine wants done (made durable
//! first), performs each action (an HTTP call to a processor) as a task, and hands the
//! result back. It decides nothing itself.

use crate::client::ProcessorClient;
use crate::engine::Action;
use crate::ledger::Ledger;
use crate::state::WorkerState;
use netio::CancellationToken;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Sends what the engine asks for; sleeps until there is something new. A turn that
/// sent something is followed by the next one `batch` later at the earliest, so that
/// what arrives meanwhile shares its disk sync (a wake-up meanwhile is kept, not lost).
pub(crate) async fn dispatch_loop<L: Ledger>(
    state: Arc<WorkerState<L>>,
    client: ProcessorClient,
    batch: Duration,
    shutdown: CancellationToken,
) {
    /// Actions taken per turn before yielding, so a flood of submits drains in bursts
    /// without starving the other tasks on this single thread.
    const BATCH: usize = 256;
    /// Even with nothing scheduled, look again this often (cheap: one lock).
    const IDLE_TICK: Duration = Duration::from_millis(100);
    let mut actions = Vec::with_capacity(BATCH);
    let mut last_sent: Option<Instant> = None;
    loop {
        if let Some(wait) = last_sent.and_then(|t| batch.checked_sub(t.elapsed())) {
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = shutdown.cancelled() => return,
            }
        }
        let wake_at = state.ledger.take_actions(BATCH, &mut actions).await;
        if !actions.is_empty() {
            last_sent = Some(Instant::now());
        }
        let full = actions.len() == BATCH;
        for a in actions.drain(..) {
            tokio::spawn(execute(state.clone(), client.clone(), a));
        }
        if full {
            // A backlog: the next batch is as big as batches get, no reason to wait.
            last_sent = None;
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

async fn execute<L: Ledger>(state: Arc<WorkerState<L>>, client: ProcessorClient, action: Action) {
    match action {
        Action::Send {
            attempt,
            processor,
            id,
            amount,
            requested_at,
        } => {
            let started = Instant::now();
            let result = client.send(processor, id, amount, requested_at).await;
            let elapsed = started.elapsed().as_secs_f64();
            if state
                .ledger
                .on_send_result(attempt, processor, result)
                .await
            {
                let failing = state.ledger.with_engine(|e| e.view(processor).failing());
                tracing::info!(
                    processor = processor.name(),
                    failing,
                    last = result.name(),
                    "processor health changed (seen in a payment's answer)"
                );
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
            let result = client.lookup(processor, id).await;
            state.ledger.on_lookup_result(attempt, result).await;
        }
    }
    state.wake.notify_one();
}

/// Runs the ledger's upkeep every `interval` until `shutdown`.
pub(crate) async fn upkeep_loop<L: Ledger>(
    state: Arc<WorkerState<L>>,
    interval: Duration,
    shutdown: CancellationToken,
) {
    loop {
        if state.ledger.upkeep().await {
            state.wake.notify_one();
        }
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = shutdown.cancelled() => return,
        }
    }
}
