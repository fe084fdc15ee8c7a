//! What the bench samples beyond the script, once a second, for the report: payroute's
//! `/health` (only when it has payroute's shape) and the CPU time of the processes the
//! bench started. None of these requests is recorded: they never count in the p99.

use super::Collector;
use crate::http::{Conn, Target};
use crate::recorder::Kind;
use crate::topology::{ProcUsage, Topology};
use http::Method;
use serde::Serialize;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::time::{Interval, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

/// How often the report samples the backend's `/health` and the processes' usage.
const SAMPLE_PERIOD: Duration = Duration::from_secs(1);

/// Timeout of a `/health` sample: shorter than the period, so samples do not pile up.
const HEALTH_TIMEOUT: Duration = Duration::from_millis(900);

/// payroute's `/health` figures at one moment.
#[derive(Debug, Clone, Serialize)]
pub struct HealthSample {
    pub t: f64,
    pub queue_depth: f64,
    pub in_flight: f64,
    pub accepted: Option<f64>,
    pub processed_default: Option<f64>,
    pub processed_fallback: Option<f64>,
}

/// CPU seconds of each started process at one moment.
#[derive(Debug, Clone, Serialize)]
pub struct UsageSample {
    pub t: f64,
    pub cpu_seconds: Vec<(String, f64)>,
}

/// Parses payroute's `/health`; `None` when it does not have payroute's shape.
pub fn parse_health(t: f64, body: &[u8]) -> Option<HealthSample> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    Some(HealthSample {
        t,
        queue_depth: v.get("queue_depth")?.as_f64()?,
        in_flight: v.get("in_flight")?.as_f64()?,
        accepted: v.get("accepted").and_then(|x| x.as_f64()),
        processed_default: v.pointer("/processed/default").and_then(|x| x.as_f64()),
        processed_fallback: v.pointer("/processed/fallback").and_then(|x| x.as_f64()),
    })
}

/// Whether the backend's `/health` answers with payroute's shape.
pub(super) async fn probe_health(backend: &Arc<Target>) -> bool {
    let mut c = Conn::new(backend.clone(), None, HEALTH_TIMEOUT);
    let r = c
        .request(Kind::Admin, Method::GET, "/health", None, None)
        .await;
    r.status == 200 && parse_health(0.0, &r.body).is_some()
}

/// Usage of every process of `topo` now; `None` if reading it failed.
pub(super) async fn usage(topo: &Arc<Topology>) -> Option<Vec<ProcUsage>> {
    let topo = topo.clone();
    tokio::task::spawn_blocking(move || topo.usage()).await.ok()
}

/// The sampling clock: a tick every `SAMPLE_PERIOD` (late ticks skipped, not
/// bunched), until `stop`.
struct Ticker {
    tick: Interval,
    t0: Instant,
    stop: CancellationToken,
}

impl Ticker {
    fn new(t0: Instant, stop: CancellationToken) -> Ticker {
        let mut tick = tokio::time::interval(SAMPLE_PERIOD);
        tick.set_missed_tick_behavior(MissedTickBehavior::Skip);
        Ticker { tick, t0, stop }
    }

    /// Waits for the next tick: seconds since `t0`, or `None` once stopped.
    async fn next(&mut self) -> Option<f64> {
        tokio::select! {
            _ = self.stop.cancelled() => None,
            _ = self.tick.tick() => Some(self.t0.elapsed().as_secs_f64()),
        }
    }
}

/// Samples the backend's `/health` into `out` until `stop`.
pub(super) async fn sample_health(
    backend: Arc<Target>,
    t0: Instant,
    out: Collector<HealthSample>,
    stop: CancellationToken,
) {
    let mut c = Conn::new(backend, None, HEALTH_TIMEOUT);
    let mut ticker = Ticker::new(t0, stop);
    while let Some(t) = ticker.next().await {
        let r = c
            .request(Kind::Admin, Method::GET, "/health", None, None)
            .await;
        if let Some(h) = (r.status == 200)
            .then(|| parse_health(t, &r.body))
            .flatten()
        {
            out.push(h);
        }
    }
}

/// Samples the CPU time of `topo`'s processes into `out` until `stop`.
pub(super) async fn sample_usage(
    topo: Arc<Topology>,
    t0: Instant,
    out: Collector<UsageSample>,
    stop: CancellationToken,
) {
    let mut ticker = Ticker::new(t0, stop);
    while let Some(t) = ticker.next().await {
        if let Some(u) = usage(&topo).await {
            out.push(UsageSample {
                t,
                cpu_seconds: u.into_iter().map(|p| (p.name, p.cpu_seconds)).collect(),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_payroute_health() {
        let body = br#"{"status":"ok","queue_depth":3,"in_flight":7,"accepted":100,"processed":{"default":80,"fallback":10},"processors":{}}"#;
        let h = parse_health(1.0, body).unwrap();
        assert_eq!((h.queue_depth, h.in_flight), (3.0, 7.0));
        assert_eq!(h.processed_default, Some(80.0));
        assert!(parse_health(0.0, br#"{"status":"UP"}"#).is_none());
        assert!(parse_health(0.0, b"OK").is_none());
    }
}
