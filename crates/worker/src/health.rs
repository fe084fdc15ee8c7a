//! The health pollers: one per processor for the whole deployment (this worker is
//! the only caller of `GET /payments/service-health`), feeding the engine's view.

use crate::client::{HealthPoll, ProcessorClient};
use crate::ledger::Ledger;
use crate::state::WorkerState;
use model::Processor;
use netio::CancellationToken;
use std::sync::Arc;
use std::time::Duration;

/// One health poller per processor for the whole deployment: this worker calls only
/// while the ledger says it is the poller (always, with the file ledger; while it
/// holds the lease, when shared), at most once per `interval`; a 429 pushes the next
/// call back.
pub(crate) async fn poll_health<L: Ledger>(
    state: Arc<WorkerState<L>>,
    client: ProcessorClient,
    p: Processor,
    interval: Duration,
    shutdown: CancellationToken,
) {
    let mut last_error: Option<String> = None;
    loop {
        let started = tokio::time::Instant::now();
        if !state.ledger.polls_health(p).await {
            tokio::select! {
                _ = tokio::time::sleep_until(started + interval) => {}
                _ = shutdown.cancelled() => return,
            }
            continue;
        }
        let wait = match client.health(p).await {
            HealthPoll::Report(r) => {
                let before = state.ledger.with_engine(|e| e.view(p).failing());
                state.ledger.on_health(p, r).await;
                let changed = before != state.ledger.with_engine(|e| e.view(p).failing());
                if changed || last_error.take().is_some() {
                    tracing::info!(
                        processor = p.name(),
                        failing = r.failing,
                        min_response_time_ms = r.min_response_time_ms,
                        "health poll"
                    );
                }
                state.wake.notify_one();
                interval
            }
            HealthPoll::RetryAfter(d) => d.max(interval),
            HealthPoll::Error(e) => {
                let msg = e.to_string();
                if last_error.as_deref() != Some(msg.as_str()) {
                    tracing::warn!(processor = p.name(), "health poll failed: {msg}");
                    last_error = Some(msg);
                }
                interval
            }
        };
        tokio::select! {
            _ = tokio::time::sleep_until(started + wait) => {}
            _ = shutdown.cancelled() => return,
        }
    }
}
