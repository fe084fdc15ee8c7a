//! The dispatch loop: asks the engine what to do, writes the timestamps it chose to
//! the log, performs each action (an HTTP call to a processor) as a task, and hands
//! the result back to the engine. It decides nothing itself.

use crate::client::ProcessorClient;
use crate::engine::{self, Action, SendResult};
use crate::log::Record;
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
        let wake_at = {
            let mut guard = state.core();
            let c = &mut *guard;
            let now = Micros::now();
            while actions.len() < BATCH {
                match c.engine.next_action(now) {
                    Some(a) => actions.push(a),
                    None => break,
                }
            }
            if let Some(log) = c.log.as_mut() {
                // Every timestamp is on disk before its request leaves: after a crash,
                // the payment is resolved on that processor before anything else.
                for a in &actions {
                    if let Action::Send {
                        id,
                        processor,
                        requested_at,
                        ..
                    } = *a
                    {
                        log.append(&Record::Sent {
                            id,
                            processor,
                            requested_at,
                        });
                    }
                }
                if let Err(e) = log.flush() {
                    tracing::error!("payment log write failed; holding sends back: {e}");
                    for a in actions.drain(..) {
                        match a {
                            Action::Send { attempt, .. } => {
                                c.engine.on_send_result(attempt, SendResult::NotSent, now);
                            }
                            Action::Lookup { attempt, .. } => {
                                c.engine.on_lookup_result(
                                    attempt,
                                    engine::LookupResult::Error,
                                    now,
                                );
                            }
                        }
                    }
                }
                if log.wants_compaction(c.engine.live_payments()) {
                    if let Err(e) = log.compact(&c.engine) {
                        tracing::error!("payment log compaction failed: {e}");
                    }
                }
            }
            c.engine.next_wakeup(now)
        };
        let full = actions.len() == BATCH;
        for a in actions.drain(..) {
            tokio::spawn(execute(state.clone(), client.clone(), urls.clone(), a));
        }
        if full {
            tokio::task::yield_now().await;
            continue;
        }
        let sleep = wake_at.map_or(IDLE_TICK, |t| {
            Duration::from_micros((t.0 - Micros::now().0).clamp(500, 100_000) as u64)
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
                let effect = c.engine.on_send_result(attempt, result, Micros::now());
                if let Some(r) = Record::of_effect(effect) {
                    if let Err(e) = c.write(&r) {
                        tracing::error!("payment log write failed: {e}");
                    }
                }
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
            let mut c = state.core();
            let effect = c.engine.on_lookup_result(attempt, result, Micros::now());
            if let Some(r) = Record::of_effect(effect) {
                if let Err(e) = c.write(&r) {
                    tracing::error!("payment log write failed: {e}");
                }
            }
        }
    }
    state.wake.notify_one();
}
