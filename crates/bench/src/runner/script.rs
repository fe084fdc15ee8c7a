//! The official script's functions, as k6 runs them: `setup()`, a payments VU, the
//! consistency checker, a stage (`define_stage`) and `teardown()`. Every request is
//! timed and counted as k6 counts it.

use super::{Check, Collector, RunSettings, StageRun};
use crate::checker::{inconsistencies, parse_backend_summary, parse_processor_summary};
use crate::http::{Conn, Target};
use crate::recorder::{Kind, Recorder};
use crate::scenario::{PlannedStage, ScoreSource, REQUEST_TIMEOUT, STAGE_PAUSE, VU_PAUSE};
use crate::score::{BackendSummary, ProcessorSummary};
use anyhow::bail;
use bytes::Bytes;
use http::Method;
use model::Micros;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The admin token the processors start with; `setPPToken` authenticates with it to
/// set the test's token.
pub const INITIAL_TOKEN: &str = "123";

const TOKEN_PATH: &str = "/admin/configurations/token";
pub(super) const DELAY_PATH: &str = "/admin/configurations/delay";
pub(super) const FAILURE_PATH: &str = "/admin/configurations/failure";

pub(super) fn admin(target: &Arc<Target>, rec: &Arc<Recorder>) -> Conn {
    Conn::new(target.clone(), Some(rec.clone()), REQUEST_TIMEOUT)
}

/// `PUT` of an admin configuration (`path`) on a processor; its status.
pub(super) async fn configure(c: &mut Conn, path: &str, body: Bytes, token: &str) -> u16 {
    c.request(Kind::Admin, Method::PUT, path, Some(body), Some(token))
        .await
        .status
}

/// Both processors, by name.
pub(super) fn processors(s: &RunSettings) -> [(&'static str, &Arc<Target>); 2] {
    [("default", &s.default), ("fallback", &s.fallback)]
}

/// `setup()`: the token on both processors, purge both, purge the backend (errors
/// ignored).
pub(super) async fn setup(s: &RunSettings, rec: &Arc<Recorder>) -> anyhow::Result<()> {
    for (name, target) in processors(s) {
        set_token(s, rec, name, target).await?;
    }
    for (name, target) in processors(s) {
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

/// `setPPToken`: the test's token on one processor, authenticated with the initial
/// one.
async fn set_token(
    s: &RunSettings,
    rec: &Arc<Recorder>,
    name: &str,
    target: &Arc<Target>,
) -> anyhow::Result<()> {
    let body = Bytes::from(serde_json::json!({ "token": s.token }).to_string());
    let mut c = admin(target, rec);
    let status = configure(&mut c, TOKEN_PATH, body.clone(), INITIAL_TOKEN).await;
    if status == 204 {
        return Ok(());
    }
    // Beyond the script: processors kept from a previous run already have the token;
    // accept them if they take it with the token itself.
    if configure(&mut c, TOKEN_PATH, body, &s.token).await != 204 {
        bail!(
            "setting the admin token on the {name} processor ({}): HTTP {status} (the official test aborts here)",
            target.url
        );
    }
    Ok(())
}

/// A payments VU: from its start time until the end, POST a payment, sleep 1 s.
pub(super) async fn vu(
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

/// The paths of the summaries over `[from, to]`: the processors' admin one and the
/// backend's.
fn summary_paths(from: &str, to: &str) -> (String, String) {
    let q = format!("?from={from}&to={to}");
    (
        format!("/admin/payments-summary{q}"),
        format!("/payments-summary{q}"),
    )
}

/// `checkPaymentsConsistency`, looped by its `constant-vus` scenario.
pub(super) async fn checker(
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
        let (pp_path, be_path) = summary_paths(&from, &to);
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
pub(super) async fn stage(
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
    let delay = |ms: u32| Bytes::from(format!(r#"{{"delay":{ms}}}"#));
    let failure = |on: bool| Bytes::from(format!(r#"{{"failure":{on}}}"#));
    let tok = s.token.as_str();
    // In the script's order: delay default, delay fallback, failure default, failure
    // fallback.
    let statuses = [
        configure(&mut d, DELAY_PATH, delay(st.default_delay_ms), tok).await,
        configure(&mut f, DELAY_PATH, delay(st.fallback_delay_ms), tok).await,
        configure(&mut d, FAILURE_PATH, failure(st.default_failure), tok).await,
        configure(&mut f, FAILURE_PATH, failure(st.fallback_failure), tok).await,
    ];
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

/// What the teardown read over its window.
pub(super) struct Books {
    pub(super) default: ProcessorSummary,
    pub(super) fallback: ProcessorSummary,
    /// The backend's summary, read by the script in the preview only.
    pub(super) backend: Option<BackendSummary>,
    /// The backend's summary, read in any case (the script's read in the preview, an
    /// unrecorded one beyond the script in the final); `None` if it failed.
    pub(super) end_audit: Option<BackendSummary>,
}

/// `teardown()`: the processors' summaries (and the backend's, in the preview) over
/// the last window; then, beyond the script and unrecorded, the backend's summary over
/// the same window, to check that it agrees with the processors' books at the end.
pub(super) async fn teardown(s: &RunSettings, rec: &Arc<Recorder>) -> Books {
    let to_ms = Micros::now().millis();
    let from =
        Micros::from_millis(to_ms - s.plan.teardown_window.as_millis() as i64).to_millis_string();
    let to = Micros::from_millis(to_ms).to_millis_string();
    let (pp_path, backend_path) = summary_paths(&from, &to);
    let rd = admin(&s.default, rec)
        .request(Kind::Summary, Method::GET, &pp_path, None, Some(&s.token))
        .await;
    let rf = admin(&s.fallback, rec)
        .request(Kind::Summary, Method::GET, &pp_path, None, Some(&s.token))
        .await;
    let backend = match s.plan.scenario.score_source() {
        ScoreSource::Backend => {
            let rb = admin(&s.backend, rec)
                .request(Kind::Summary, Method::GET, &backend_path, None, None)
                .await;
            Some(parse_backend_summary(rb.status, &rb.body))
        }
        ScoreSource::Processors => None,
    };
    let end_audit = match backend {
        Some(b) => Some(b),
        None => {
            let mut c = Conn::new(s.backend.clone(), None, REQUEST_TIMEOUT);
            let rb = c
                .request(Kind::Summary, Method::GET, &backend_path, None, None)
                .await;
            (rb.status == 200).then(|| parse_backend_summary(rb.status, &rb.body))
        }
    };
    Books {
        default: parse_processor_summary(rd.status, &rd.body),
        fallback: parse_processor_summary(rf.status, &rf.body),
        backend,
        end_audit,
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
}
