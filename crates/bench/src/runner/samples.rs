//! What the bench samples beyond the script, once a second, for the report and the
//! time series: payroute's `/health` (only when it has payroute's shape), both
//! processors' books (`GET /admin/payments-summary` without a window: everything they
//! processed, for any backend), and the CPU time, resident set and throttling of the
//! processes the bench started. None of these requests is recorded: each sampler has
//! connections of its own and they never count in the p99 or the request counts.

use super::Collector;
use crate::checker::parse_processor_summary;
use crate::http::{Conn, Target};
use crate::recorder::{Kind, Recorder};
use crate::score::ProcessorSummary;
use crate::topology::{current_rss_bytes, ProcUsage, Topology};
use http::Method;
use serde::Serialize;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::time::{Interval, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

/// How often the report samples the backend's `/health` and the processes' usage.
const SAMPLE_PERIOD: Duration = Duration::from_secs(1);

/// Timeout of a `/health` sample: shorter than the period, so samples do not pile up.
const HEALTH_TIMEOUT: Duration = Duration::from_millis(900);

/// Timeout of a books sample, for the same reason.
const BOOKS_TIMEOUT: Duration = Duration::from_millis(900);

/// payroute's `/health` figures at one moment.
#[derive(Debug, Clone, Serialize)]
pub struct HealthSample {
    pub t: f64,
    pub queue_depth: f64,
    pub in_flight: f64,
    pub accepted: Option<f64>,
    pub processed_default: Option<f64>,
    pub processed_fallback: Option<f64>,
    /// Payments held back for the default processor (`held.payments`), when the
    /// worker says.
    pub held_payments: Option<f64>,
    /// Age of the oldest of them, ms (`held.oldest_age_ms`).
    pub held_oldest_age_ms: Option<f64>,
}

/// Usage of each started process at one moment: `(name, value)` lists.
#[derive(Debug, Clone, Default, Serialize)]
pub struct UsageSample {
    pub t: f64,
    /// CPU seconds so far.
    pub cpu_seconds: Vec<(String, f64)>,
    /// Resident set now, bytes (processes whose `/proc` entry could be read).
    pub rss_bytes: Vec<(String, f64)>,
    /// Seconds throttled by the CPU quota so far (processes with a cgroup limit).
    pub throttled_seconds: Vec<(String, f64)>,
}

impl UsageSample {
    /// The sample of `usage` at `t`, reading each process's resident set now.
    fn of(t: f64, usage: Vec<ProcUsage>) -> UsageSample {
        let mut s = UsageSample {
            t,
            ..UsageSample::default()
        };
        for p in usage {
            if let Some(rss) = current_rss_bytes(p.pid) {
                s.rss_bytes.push((p.name.clone(), rss as f64));
            }
            if let Some(th) = p.throttled_seconds {
                s.throttled_seconds.push((p.name.clone(), th));
            }
            s.cpu_seconds.push((p.name, p.cpu_seconds));
        }
        s
    }
}

/// Both processors' books at one moment (`None`: that summary did not answer 200).
#[derive(Debug, Clone, Serialize)]
pub struct BooksSample {
    pub t: f64,
    /// POSTs the bench had seen succeed when both books had answered: what the books
    /// are compared with for the lag (read after them, so that a payment accepted
    /// during the read counts as not yet processed rather than as booked and never
    /// accepted).
    pub accepted: f64,
    pub default: Option<ProcessorSummary>,
    pub fallback: Option<ProcessorSummary>,
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
        held_payments: v.pointer("/held/payments").and_then(|x| x.as_f64()),
        held_oldest_age_ms: v.pointer("/held/oldest_age_ms").and_then(|x| x.as_f64()),
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

/// Samples the CPU time, resident set and throttling of `topo`'s processes into `out`
/// until `stop`.
pub(super) async fn sample_usage(
    topo: Arc<Topology>,
    t0: Instant,
    out: Collector<UsageSample>,
    stop: CancellationToken,
) {
    let mut ticker = Ticker::new(t0, stop);
    while let Some(t) = ticker.next().await {
        let topo = topo.clone();
        let sample = tokio::task::spawn_blocking(move || UsageSample::of(t, topo.usage()));
        if let Ok(s) = sample.await {
            out.push(s);
        }
    }
}

/// The processors' whole books: `GET /admin/payments-summary` without a window.
const BOOKS_PATH: &str = "/admin/payments-summary";

/// Samples both processors' books into `out` until `stop`, both read at once, with
/// the successful POSTs `rec` counted by then.
pub(super) async fn sample_books(
    processors: [Arc<Target>; 2],
    token: String,
    rec: Arc<Recorder>,
    t0: Instant,
    out: Collector<BooksSample>,
    stop: CancellationToken,
) {
    let [d, f] = processors;
    let (mut cd, mut cf) = (
        Conn::new(d, None, BOOKS_TIMEOUT),
        Conn::new(f, None, BOOKS_TIMEOUT),
    );
    let tok = Some(token.as_str());
    let mut ticker = Ticker::new(t0, stop);
    while let Some(t) = ticker.next().await {
        let (rd, rf) = tokio::join!(
            cd.request(Kind::Summary, Method::GET, BOOKS_PATH, None, tok),
            cf.request(Kind::Summary, Method::GET, BOOKS_PATH, None, tok),
        );
        let read = |status: u16, body: &[u8]| {
            (status == 200).then(|| parse_processor_summary(status, body))
        };
        out.push(BooksSample {
            t,
            accepted: rec.payments_ok.load(Ordering::Relaxed) as f64,
            default: read(rd.status, &rd.body),
            fallback: read(rf.status, &rf.body),
        });
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
        assert_eq!((h.held_payments, h.held_oldest_age_ms), (None, None));
        let with_held =
            br#"{"queue_depth":3,"in_flight":7,"held":{"payments":12,"oldest_age_ms":850}}"#;
        let h = parse_health(2.0, with_held).unwrap();
        assert_eq!(
            (h.held_payments, h.held_oldest_age_ms),
            (Some(12.0), Some(850.0))
        );
        assert!(parse_health(0.0, br#"{"status":"UP"}"#).is_none());
        assert!(parse_health(0.0, b"OK").is_none());
    }
}
