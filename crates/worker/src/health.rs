//! The health pollers: one per processor for the whole deployment (this worker is
//! the only caller of `GET /payments/service-health`), feeding the engine's view.

use crate::client::{HealthPoll, ProcessorClient};
use crate::state::WorkerState;
use model::Processor;
use netio::CancellationToken;
use std::sync::Arc;
use std::time::Duration;

/// One health poller per processor for the whole deployment: this worker is the only
/// caller, at most one call per `interval`, and a 429 pushes the next call back.
pub(crate) async fn poll_health(
    state: Arc<WorkerState>,
    client: ProcessorClient,
    p: Processor,
    url: String,
    interval: Duration,
    shutdown: CancellationToken,
) {
    let mut last_error: Option<String> = None;
    loop {
        let started = tokio::time::Instant::now();
        let wait = match client.health(&url).await {
            HealthPoll::Report(r) => {
                let changed = {
                    let mut c = state.core();
                    let before = c.engine.view(p).failing();
                    c.engine.on_health(p, r, state.mono());
                    before != c.engine.view(p).failing()
                };
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
