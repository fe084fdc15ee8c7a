//! The throughput run (`--throughput SECS`): not an official test, a measure of how
//! many payments per second the backend takes and processes. Setup as the official
//! script's (token, purges), both processors set healthy with no delay, then
//! `--max-requests` VUs (64 by default), each looping `POST /payments` on its own
//! keep-alive connection **without a pause** (1.5 s timeout, as the script's) for SECS
//! seconds; then a drain, bounded by [`DRAIN_LIMIT`], until the processors' books count
//! every accepted payment. Beside it, as in every run: the processors' books and the
//! processes' usage sampled once a second, the ledger's counters before and after, and
//! `--kill-worker`.
//!
//! The plan of its [`RunSettings`] gives only the length (`duration`) and the VUs
//! (`max_vus`): no ramp, no stages, no checker.

use super::kill::failures;
use super::script::{self, admin, configure, processors, DELAY_PATH, FAILURE_PATH};
use super::{scaled_after, scaled_before, Collected, KillTask, Observers, RunSettings};
use crate::checker::parse_processor_summary;
use crate::exit::Interrupted;
use crate::http::{Conn, Target};
use crate::recorder::{Kind, Recorder};
use crate::scenario::REQUEST_TIMEOUT;
use crate::throughput::ThroughputData;
use crate::topology::Topology;
use anyhow::{bail, Context};
use bytes::Bytes;
use http::Method;
use model::Micros;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// Longest drain after the load: the backend may hold a backlog it cannot clear; the
/// run reports what was processed by then.
pub const DRAIN_LIMIT: Duration = Duration::from_secs(30);

/// How often the drain reads the books.
const DRAIN_POLL: Duration = Duration::from_millis(200);

/// The amount of each payment: the final's.
const AMOUNT: &str = "20.05";

/// Runs the throughput test once against what `s` names.
pub async fn run_throughput(
    s: &RunSettings,
    topology: Option<Arc<Topology>>,
    cancel: &CancellationToken,
) -> anyhow::Result<ThroughputData> {
    tokio::select! {
        r = prepare(s) => r?,
        _ = cancel.cancelled() => return Err(anyhow::Error::from(Interrupted).context("during setup")),
    }
    let usage_at_start = match &topology {
        Some(t) => super::samples::usage(t).await.unwrap_or_default(),
        None => Vec::new(),
    };
    let mut scaled = scaled_before(s).await;
    let rec = Arc::new(Recorder::new());
    let bench_cpu_at_start = crate::topology::own_cpu_seconds();
    let started_at = Micros::now().to_millis_string();
    let t0 = Instant::now();
    rec.start(t0);
    let collected = Collected::default();
    let kill = KillTask::start(s, t0, &rec, topology.as_ref());
    let observers = Observers::start(s, t0, &rec, &collected, None, topology);
    let load = tokio::select! {
        r = load(s, t0, &rec) => r,
        _ = cancel.cancelled() => Err(Interrupted.into()),
    };
    let load_s = t0.elapsed().as_secs_f64();
    let accepted = rec.payments_ok.load(Ordering::Relaxed);
    let drained = match load {
        Ok(()) => drain(s, accepted, cancel).await,
        Err(e) => Err(e),
    };
    observers.stop().await;
    let (books, drain_s) = drained?;
    if let Some(d) = &mut scaled {
        if let Some(k) = kill {
            d.kill = k.finish().await?;
        }
        scaled_after(s, d).await;
    }
    let sorted = rec.sorted_expected_ms();
    let p = |q: f64| crate::score::k6_percentile(&sorted, q);
    Ok(ThroughputData {
        backend_url: s.backend.url.clone(),
        vus: s.plan.max_vus,
        seconds: s.plan.duration.as_secs_f64(),
        started_at,
        load_s,
        drain_s,
        accepted,
        failures: failures(&rec),
        books,
        latency_ms: [
            p(0.5),
            p(0.9),
            p(0.99),
            sorted.last().copied().unwrap_or(0.0),
        ],
        usage_at_start,
        usage_samples: collected.usage.take(),
        bench_cpu_seconds: crate::topology::own_cpu_seconds() - bench_cpu_at_start,
        scaled,
    })
}

/// The script's setup, then both processors healthy and without delay. Its requests
/// are not recorded: the run's latencies are the payments'.
async fn prepare(s: &RunSettings) -> anyhow::Result<()> {
    let rec = Arc::new(Recorder::new());
    script::setup(s, &rec).await?;
    for (name, target) in processors(s) {
        let mut c = admin(target, &rec);
        let delay = configure(&mut c, DELAY_PATH, Bytes::from(r#"{"delay":0}"#), &s.token).await;
        let failure = configure(
            &mut c,
            FAILURE_PATH,
            Bytes::from(r#"{"failure":false}"#),
            &s.token,
        )
        .await;
        if (delay, failure) != (200, 200) {
            bail!(
                "setting the {name} processor healthy ({}): HTTP {delay} / {failure}",
                target.url
            );
        }
    }
    Ok(())
}

/// `max_vus` VUs posting without a pause until `t0 + duration`.
async fn load(s: &RunSettings, t0: Instant, rec: &Arc<Recorder>) -> anyhow::Result<()> {
    let end = t0 + s.plan.duration;
    let mut vus = JoinSet::new();
    for _ in 0..s.plan.max_vus {
        vus.spawn(flat_out(end, s.backend.clone(), rec.clone()));
    }
    while let Some(r) = vus.join_next().await {
        r.context("a VU panicked")?;
    }
    Ok(())
}

/// One VU: `POST /payments` after `POST /payments` until `end`.
async fn flat_out(end: Instant, backend: Arc<Target>, rec: Arc<Recorder>) {
    let mut conn = Conn::new(backend, Some(rec), REQUEST_TIMEOUT);
    while Instant::now() < end {
        let body = format!(
            r#"{{"correlationId":"{}","amount":{AMOUNT}}}"#,
            uuid::Uuid::new_v4()
        );
        let body = Some(Bytes::from(body));
        conn.request(Kind::Payment, Method::POST, "/payments", body, None)
            .await;
    }
}

/// Reads both processors' books every [`DRAIN_POLL`] until they count `accepted`
/// payments or [`DRAIN_LIMIT`] has passed: the last books read (default, fallback),
/// and the seconds it took.
async fn drain(
    s: &RunSettings,
    accepted: u64,
    cancel: &CancellationToken,
) -> anyhow::Result<([f64; 2], f64)> {
    let start = Instant::now();
    let (mut d, mut f) = (
        Conn::new(s.default.clone(), None, REQUEST_TIMEOUT),
        Conn::new(s.fallback.clone(), None, REQUEST_TIMEOUT),
    );
    let tok = Some(s.token.as_str());
    let path = "/admin/payments-summary";
    let mut books = [0.0; 2];
    loop {
        let (rd, rf) = tokio::join!(
            d.request(Kind::Summary, Method::GET, path, None, tok),
            f.request(Kind::Summary, Method::GET, path, None, tok),
        );
        if (rd.status, rf.status) == (200, 200) {
            books = [
                parse_processor_summary(rd.status, &rd.body).total_requests,
                parse_processor_summary(rf.status, &rf.body).total_requests,
            ];
        }
        if books[0] + books[1] >= accepted as f64 || start.elapsed() >= DRAIN_LIMIT {
            return Ok((books, start.elapsed().as_secs_f64()));
        }
        tokio::select! {
            _ = tokio::time::sleep(DRAIN_POLL) => {}
            _ = cancel.cancelled() => return Err(anyhow::Error::from(Interrupted).context("during the drain")),
        }
    }
}
