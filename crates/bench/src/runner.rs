//! One run of an official test, as k6 executes the script: setup, then on one clock
//! the payments VUs (ramping), the consistency checker and the stages, then the
//! teardown and `handleSummary`.
//!
//! k6 details reproduced here, each from the scripts or k6's executors:
//! - the payments scenario has no `gracefulStop`, so k6's default (30 s) applies: at
//!   the end no VU starts a new iteration, but an iteration under way finishes (its
//!   request within the 1.5 s timeout, then its `sleep(1)`); the teardown starts when
//!   every scenario is over. The checker's last `sleep(10)` ends the same way.
//! - each stage is its own `constant-vus` scenario: its own VU, its own connections,
//!   running at its start time whatever the other stages do; a status other than 200
//!   aborts the test (`exec.test.abort`), here an error.
//! - setup, checker and teardown requests are HTTP requests like the payments: they
//!   count in the p99 when their status is below 400.

use crate::checker::{inconsistencies, parse_backend_summary, parse_processor_summary};
use crate::http::{Conn, Target};
use crate::progress::Progress;
use crate::recorder::{Kind, Recorder, Second};
use crate::scenario::{Plan, PlannedStage, REQUEST_TIMEOUT, STAGE_PAUSE, VU_PAUSE};
use crate::score::{self, BackendSummary, Inputs, OfficialResults, ProcessorSummary, Score};
use crate::topology::{ProcUsage, Topology};
use anyhow::{bail, Context};
use bytes::Bytes;
use http::Method;
use model::Micros;
use serde::Serialize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// The admin token the processors start with; `setPPToken` authenticates with it to
/// set the test's token.
pub const INITIAL_TOKEN: &str = "123";

/// How often the report samples the backend's `/health` and the processes' usage.
const SAMPLE_PERIOD: Duration = Duration::from_secs(1);

/// Timeout of a `/health` sample: shorter than the period, so samples do not pile up.
const HEALTH_TIMEOUT: Duration = Duration::from_millis(900);

/// What one run needs.
#[derive(Clone)]
pub struct RunSettings {
    pub plan: Plan,
    pub backend: Arc<Target>,
    pub default: Arc<Target>,
    pub fallback: Arc<Target>,
    pub token: String,
    pub participant: String,
    pub max_requests_label: String,
    /// Sample `/health` when it has payroute's shape (never counted in the p99).
    pub sample_health: bool,
    /// Show a progress bar (or plain lines when stderr is not a terminal).
    pub progress: bool,
    /// Label in front of the progress line ("run 2/3").
    pub label: String,
}

/// One consistency check.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// Seconds since the test start.
    pub t: f64,
    pub from: String,
    pub to: String,
    pub backend: BackendSummary,
    pub default: ProcessorSummary,
    pub fallback: ProcessorSummary,
    /// Statuses of the three reads: default, fallback, backend.
    pub statuses: [u16; 3],
    pub inconsistencies: f64,
}

/// One stage as it happened.
#[derive(Debug, Clone, Serialize)]
pub struct StageRun {
    pub planned: PlannedStage,
    /// Seconds since the test start when its first call was sent.
    pub t: f64,
    /// Statuses of: delay default, delay fallback, failure default, failure fallback.
    pub statuses: [u16; 4],
}

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

/// Everything a run collected.
pub struct RunData {
    pub plan: Plan,
    pub backend_url: String,
    pub inputs: Inputs,
    pub score: Score,
    pub results: OfficialResults,
    pub seconds: Vec<Second>,
    pub checks: Vec<Check>,
    pub stages: Vec<StageRun>,
    pub health: Vec<HealthSample>,
    pub usage_samples: Vec<UsageSample>,
    /// Usage at the test start (after setup), to give CPU seconds during the test.
    pub usage_at_start: Vec<ProcUsage>,
    /// Requests of the whole test, and those counted by the p99.
    pub requests: u64,
    pub p99_sample_size: usize,
    /// k6-style percentiles of the p99 sample, ms: p50, p90, p99, max.
    pub overall_ms: [f64; 4],
    /// CPU seconds the bench itself used from the test start to the teardown: the load
    /// generator shares the machine, so the report shows its cost.
    pub bench_cpu_seconds: f64,
    /// Wall-clock start of the test (after setup).
    pub started_at: String,
    /// Seconds from the test start to the teardown.
    pub teardown_at: f64,
    /// The backend's own summary over the teardown window, read right after the
    /// official teardown (in the final the official script does not read it; this
    /// read is not recorded, so it changes no official figure): `None` if it failed.
    pub end_audit: Option<BackendSummary>,
}

/// A list that the test's concurrent tasks append to, taken whole once they are done.
struct Collector<T>(Arc<Mutex<Vec<T>>>);

impl<T> Clone for Collector<T> {
    fn clone(&self) -> Self {
        Collector(self.0.clone())
    }
}

impl<T> Default for Collector<T> {
    fn default() -> Self {
        Collector(Arc::default())
    }
}

impl<T> Collector<T> {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<T>> {
        // A poisoned lock only means a task panicked mid-push; the list is still whole.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn push(&self, x: T) {
        self.lock().push(x);
    }

    fn take(&self) -> Vec<T> {
        std::mem::take(&mut *self.lock())
    }
}

/// Runs the test once. `topology`, when the bench started the processes, is sampled
/// for CPU time; `cancel` interrupts the run (Ctrl-C).
pub async fn run_once(
    s: &RunSettings,
    topology: Option<Arc<Topology>>,
    cancel: &CancellationToken,
) -> anyhow::Result<RunData> {
    let rec = Arc::new(Recorder::new());
    tokio::select! {
        r = setup(s, &rec) => r?,
        _ = cancel.cancelled() => bail!("interrupted during setup"),
    }
    let health_ok = s.sample_health && probe_health(&s.backend).await;
    let usage_at_start = match &topology {
        Some(t) => {
            let t = t.clone();
            tokio::task::spawn_blocking(move || t.usage())
                .await
                .unwrap_or_default()
        }
        None => Vec::new(),
    };

    // The test clock.
    let bench_cpu_at_start = crate::topology::own_cpu_seconds();
    let t0 = Instant::now();
    let started_at = Micros::now().to_millis_string();
    rec.start(t0);
    let end = t0 + s.plan.duration;
    let inconsistent = Arc::new(AtomicU64::new(0));
    let checks: Collector<Check> = Collector::default();
    let stages: Collector<StageRun> = Collector::default();
    let health: Collector<HealthSample> = Collector::default();
    let usage_samples: Collector<UsageSample> = Collector::default();

    let samplers = CancellationToken::new();
    let mut background = JoinSet::new();
    if health_ok {
        background.spawn(sample_health(
            s.backend.clone(),
            t0,
            health.clone(),
            samplers.clone(),
        ));
    }
    if let Some(topo) = &topology {
        background.spawn(sample_usage(
            topo.clone(),
            t0,
            usage_samples.clone(),
            samplers.clone(),
        ));
    }
    if s.progress {
        let p = Progress::new(&s.label, &s.plan);
        background.spawn(p.run(t0, rec.clone(), inconsistent.clone(), samplers.clone()));
    }

    let mut work: JoinSet<anyhow::Result<()>> = JoinSet::new();
    let amount = s.plan.scenario.amount_json();
    for n in 1..=s.plan.max_vus {
        let start = t0 + s.plan.vu_start(n);
        work.spawn(vu(start, end, s.backend.clone(), rec.clone(), amount));
    }
    work.spawn(checker(
        s.clone(),
        end,
        rec.clone(),
        checks.clone(),
        inconsistent.clone(),
        t0,
    ));
    for st in &s.plan.stages {
        work.spawn(stage(s.clone(), *st, t0, rec.clone(), stages.clone()));
    }
    let all_done = async {
        while let Some(r) = work.join_next().await {
            r.context("a test task panicked")??;
        }
        Ok::<(), anyhow::Error>(())
    };
    let outcome = tokio::select! {
        r = all_done => r,
        _ = cancel.cancelled() => Err(anyhow::anyhow!("interrupted")),
    };
    // Dropping `work` aborts whatever is left (on error or Ctrl-C).
    drop(work);
    samplers.cancel();
    while background.join_next().await.is_some() {}
    outcome?;

    // Teardown.
    let teardown_at = t0.elapsed().as_secs_f64();
    let bench_cpu_seconds = crate::topology::own_cpu_seconds() - bench_cpu_at_start;
    let (default, fallback, backend, end_audit) = tokio::select! {
        r = teardown(s, &rec) => r,
        _ = cancel.cancelled() => bail!("interrupted during teardown"),
    };

    // handleSummary.
    let sorted = rec.sorted_expected_ms();
    let p = |q: f64| score::k6_percentile(&sorted, q);
    let overall_ms = [
        p(0.5),
        p(0.9),
        p(0.99),
        sorted.last().copied().unwrap_or(0.0),
    ];
    let checks = checks.take();
    let inputs = Inputs {
        scenario: s.plan.scenario,
        participant: s.participant.clone(),
        max_requests: s.max_requests_label.clone(),
        successes: rec.payments_ok.load(Ordering::Relaxed),
        failures: rec.payments_failed.load(Ordering::Relaxed),
        inconsistencies: checks.iter().map(|c| c.inconsistencies).sum(),
        p99_ms: overall_ms[2],
        default,
        fallback,
        backend,
        timestamp: Micros::now().to_millis_string(),
    };
    let score = score::compute(&inputs);
    let results = OfficialResults::new(&inputs, &score);
    let mut stages = stages.take();
    stages.sort_by(|a, b| a.t.total_cmp(&b.t));
    Ok(RunData {
        plan: s.plan.clone(),
        backend_url: s.backend.url.clone(),
        inputs,
        score,
        results,
        seconds: rec.seconds(),
        checks,
        stages,
        health: health.take(),
        usage_samples: usage_samples.take(),
        usage_at_start,
        requests: rec.requests.load(Ordering::Relaxed),
        p99_sample_size: sorted.len(),
        overall_ms,
        bench_cpu_seconds,
        started_at,
        teardown_at,
        end_audit,
    })
}

fn admin(target: &Arc<Target>, rec: &Arc<Recorder>) -> Conn {
    Conn::new(target.clone(), Some(rec.clone()), REQUEST_TIMEOUT)
}

/// `setup()`: the token on both processors, purge both, purge the backend (errors
/// ignored).
async fn setup(s: &RunSettings, rec: &Arc<Recorder>) -> anyhow::Result<()> {
    let body = Bytes::from(serde_json::json!({ "token": s.token }).to_string());
    for (name, target) in [("default", &s.default), ("fallback", &s.fallback)] {
        let mut c = admin(target, rec);
        let r = c
            .request(
                Kind::Admin,
                Method::PUT,
                "/admin/configurations/token",
                Some(body.clone()),
                Some(INITIAL_TOKEN),
            )
            .await;
        if r.status != 204 {
            // Beyond the script: processors kept from a previous run already have the
            // token; accept them if they take it with the token itself.
            let again = c
                .request(
                    Kind::Admin,
                    Method::PUT,
                    "/admin/configurations/token",
                    Some(body.clone()),
                    Some(&s.token),
                )
                .await;
            if again.status != 204 {
                bail!(
                    "setting the admin token on the {name} processor ({}): HTTP {} (the official test aborts here)",
                    target.url,
                    r.status
                );
            }
        }
    }
    for (name, target) in [("default", &s.default), ("fallback", &s.fallback)] {
        let r = admin(target, rec)
            .request(
                Kind::Admin,
                Method::POST,
                "/admin/purge-payments",
                None,
                Some(&s.token),
            )
            .await;
        if r.status != 200 {
            bail!(
                "purging the {name} processor ({}): HTTP {} (the official test aborts here)",
                target.url,
                r.status
            );
        }
    }
    // `resetBackendDatabase` ignores every error.
    let _ = admin(&s.backend, rec)
        .request(Kind::Admin, Method::POST, "/purge-payments", None, None)
        .await;
    Ok(())
}

/// A payments VU: from its start time until the end, POST a payment, sleep 1 s.
async fn vu(
    start: Instant,
    end: Instant,
    backend: Arc<Target>,
    rec: Arc<Recorder>,
    amount: &'static str,
) -> anyhow::Result<()> {
    tokio::time::sleep_until(start.into()).await;
    let mut conn = Conn::new(backend, Some(rec), REQUEST_TIMEOUT);
    while Instant::now() < end {
        let body = format!(
            r#"{{"correlationId":"{}","amount":{amount}}}"#,
            uuid::Uuid::new_v4()
        );
        conn.request(
            Kind::Payment,
            Method::POST,
            "/payments",
            Some(Bytes::from(body)),
            None,
        )
        .await;
        tokio::time::sleep(VU_PAUSE).await;
    }
    Ok(())
}

/// The checker's window for a check made at `now_ms` (ms since the epoch).
pub fn check_window(now_ms: i64, from_before: Duration, to_before: Duration) -> (String, String) {
    let from = Micros::from_millis(now_ms - from_before.as_millis() as i64).to_millis_string();
    let to = Micros::from_millis(now_ms - to_before.as_millis() as i64).to_millis_string();
    (from, to)
}

/// `checkPaymentsConsistency`, looped by its `constant-vus` scenario.
async fn checker(
    s: RunSettings,
    end: Instant,
    rec: Arc<Recorder>,
    checks: Collector<Check>,
    inconsistent: Arc<AtomicU64>,
    t0: Instant,
) -> anyhow::Result<()> {
    let (mut cd, mut cf, mut cb) = (
        admin(&s.default, &rec),
        admin(&s.fallback, &rec),
        admin(&s.backend, &rec),
    );
    let arithmetic = s.plan.scenario.check_arithmetic();
    while Instant::now() < end {
        let t = t0.elapsed().as_secs_f64();
        let (from, to) = check_window(
            Micros::now().millis(),
            crate::scenario::CHECK_FROM_BEFORE,
            s.plan.scenario.check_to_before(),
        );
        let q = format!("?from={from}&to={to}");
        let pp_path = format!("/admin/payments-summary{q}");
        let be_path = format!("/payments-summary{q}");
        let (rd, rf, rb) = tokio::join!(
            cd.request(Kind::Summary, Method::GET, &pp_path, None, Some(&s.token)),
            cf.request(Kind::Summary, Method::GET, &pp_path, None, Some(&s.token)),
            cb.request(Kind::Summary, Method::GET, &be_path, None, None),
        );
        let default = parse_processor_summary(rd.status, &rd.body);
        let fallback = parse_processor_summary(rf.status, &rf.body);
        let backend = parse_backend_summary(rb.status, &rb.body);
        let n = inconsistencies(arithmetic, &backend, &default, &fallback);
        inconsistent.fetch_add(n as u64, Ordering::Relaxed);
        checks.push(Check {
            t,
            from,
            to,
            backend,
            default,
            fallback,
            statuses: [rd.status, rf.status, rb.status],
            inconsistencies: n,
        });
        tokio::time::sleep(s.plan.check_period).await;
    }
    Ok(())
}

/// `define_stage`: at its time, delay and failure on both processors, then `sleep(1)`.
async fn stage(
    s: RunSettings,
    ps: PlannedStage,
    t0: Instant,
    rec: Arc<Recorder>,
    log: Collector<StageRun>,
) -> anyhow::Result<()> {
    tokio::time::sleep_until((t0 + ps.at).into()).await;
    let t = t0.elapsed().as_secs_f64();
    let (mut d, mut f) = (admin(&s.default, &rec), admin(&s.fallback, &rec));
    let st = ps.stage;
    let delay = |ms: u32| Some(Bytes::from(format!(r#"{{"delay":{ms}}}"#)));
    let failure = |on: bool| Some(Bytes::from(format!(r#"{{"failure":{on}}}"#)));
    let tok = Some(s.token.as_str());
    let path_d = "/admin/configurations/delay";
    let path_f = "/admin/configurations/failure";
    let r1 = d
        .request(
            Kind::Admin,
            Method::PUT,
            path_d,
            delay(st.default_delay_ms),
            tok,
        )
        .await;
    let r2 = f
        .request(
            Kind::Admin,
            Method::PUT,
            path_d,
            delay(st.fallback_delay_ms),
            tok,
        )
        .await;
    let r3 = d
        .request(
            Kind::Admin,
            Method::PUT,
            path_f,
            failure(st.default_failure),
            tok,
        )
        .await;
    let r4 = f
        .request(
            Kind::Admin,
            Method::PUT,
            path_f,
            failure(st.fallback_failure),
            tok,
        )
        .await;
    let statuses = [r1.status, r2.status, r3.status, r4.status];
    log.push(StageRun {
        planned: ps,
        t,
        statuses,
    });
    if let Some(bad) = statuses.iter().find(|&&st| st != 200) {
        bail!(
            "stage at {:.1}s: a processor answered HTTP {bad} to a delay/failure change (the official test aborts here)",
            ps.at.as_secs_f64()
        );
    }
    tokio::time::sleep(STAGE_PAUSE).await;
    Ok(())
}

/// `teardown()`: the processors' summaries (and the backend's, in the preview) over
/// the last window; then, beyond the script and unrecorded, the backend's summary over
/// the same window, to check that it agrees with the processors' books at the end.
async fn teardown(
    s: &RunSettings,
    rec: &Arc<Recorder>,
) -> (
    ProcessorSummary,
    ProcessorSummary,
    Option<BackendSummary>,
    Option<BackendSummary>,
) {
    let to_ms = Micros::now().millis();
    let from =
        Micros::from_millis(to_ms - s.plan.teardown_window.as_millis() as i64).to_millis_string();
    let to = Micros::from_millis(to_ms).to_millis_string();
    let q = format!("?from={from}&to={to}");
    let pp_path = format!("/admin/payments-summary{q}");
    let rd = admin(&s.default, rec)
        .request(Kind::Summary, Method::GET, &pp_path, None, Some(&s.token))
        .await;
    let rf = admin(&s.fallback, rec)
        .request(Kind::Summary, Method::GET, &pp_path, None, Some(&s.token))
        .await;
    let backend_path = format!("/payments-summary{q}");
    let backend = match s.plan.scenario.score_source() {
        crate::scenario::ScoreSource::Backend => {
            let rb = admin(&s.backend, rec)
                .request(Kind::Summary, Method::GET, &backend_path, None, None)
                .await;
            Some(parse_backend_summary(rb.status, &rb.body))
        }
        crate::scenario::ScoreSource::Processors => None,
    };
    let audit = match backend {
        Some(b) => Some(b),
        None => {
            let mut c = Conn::new(s.backend.clone(), None, REQUEST_TIMEOUT);
            let rb = c
                .request(Kind::Summary, Method::GET, &backend_path, None, None)
                .await;
            (rb.status == 200).then(|| parse_backend_summary(rb.status, &rb.body))
        }
    };
    (
        parse_processor_summary(rd.status, &rd.body),
        parse_processor_summary(rf.status, &rf.body),
        backend,
        audit,
    )
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

async fn probe_health(backend: &Arc<Target>) -> bool {
    let mut c = Conn::new(backend.clone(), None, HEALTH_TIMEOUT);
    let r = c
        .request(Kind::Admin, Method::GET, "/health", None, None)
        .await;
    r.status == 200 && parse_health(0.0, &r.body).is_some()
}

async fn sample_health(
    backend: Arc<Target>,
    t0: Instant,
    out: Collector<HealthSample>,
    stop: CancellationToken,
) {
    let mut c = Conn::new(backend, None, HEALTH_TIMEOUT);
    let mut tick = tokio::time::interval(SAMPLE_PERIOD);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let t = t0.elapsed().as_secs_f64();
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

async fn sample_usage(
    topo: Arc<Topology>,
    t0: Instant,
    out: Collector<UsageSample>,
    stop: CancellationToken,
) {
    let mut tick = tokio::time::interval(SAMPLE_PERIOD);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let t = t0.elapsed().as_secs_f64();
        let topo = topo.clone();
        if let Ok(u) = tokio::task::spawn_blocking(move || topo.usage()).await {
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
    fn check_windows_like_the_scripts() {
        // 2025-07-10T12:00:00.000Z
        let now = 1_752_148_800_000;
        let (from, to) = check_window(now, Duration::from_secs(15), Duration::from_millis(1500));
        assert_eq!(from, "2025-07-10T11:59:45.000Z");
        assert_eq!(to, "2025-07-10T11:59:58.500Z");
        let (_, to) = check_window(now, Duration::from_secs(15), Duration::from_secs(2));
        assert_eq!(to, "2025-07-10T11:59:58.000Z");
    }

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
