//! The run stage by stage: for each stage of the schedule (until the next stage or
//! the end of the payments), and for the drain after the payments (until the
//! teardown), the p99, payments per second, failed POSTs, and what the processors'
//! books gained: payments by processor and the fallback's share. How a router did
//! during an outage, and whether it drained its backlog afterwards, reads here.
//!
//! A second of the recorder belongs to the stage that holds its middle; the books are
//! sampled once a second, so a stage's payments are those booked between the last
//! samples before its start and before its end (within a second of its bounds).

use crate::recorder::Second;
use crate::runner::{BooksSample, RunData, StageRun};
use crate::scenario::{PlannedStage, Stage};
use crate::score::ProcessorSummary;
use hdrhistogram::Histogram;

/// One row of the per-stage table.
#[derive(Debug, Clone)]
pub(super) struct StageRow {
    /// Seconds since the test start.
    pub(super) from: f64,
    pub(super) to: f64,
    /// The stage's settings; `None` for the drain after the payments.
    pub(super) stage: Option<Stage>,
    /// When its admin calls were sent, and their statuses.
    pub(super) run: Option<StageRun>,
    /// p99 of the requests answered below 400 in its seconds, ms.
    pub(super) p99_ms: Option<f64>,
    /// Payments answered 2XX per second of it.
    pub(super) ok_per_s: Option<f64>,
    pub(super) failed: u64,
    /// Payments the processors booked during it (`None` without books samples).
    pub(super) default: Option<f64>,
    pub(super) fallback: Option<f64>,
}

impl StageRow {
    /// The fallback's share of what was booked during it, %.
    pub(super) fn fallback_share(&self) -> Option<f64> {
        let (d, f) = (self.default?, self.fallback?);
        (d + f > 0.0).then(|| f / (d + f) * 100.0)
    }
}

/// The rows of the run `d`: one a stage, then the drain.
pub(super) fn stage_rows(d: &RunData) -> Vec<StageRow> {
    let end = d.plan.duration.as_secs_f64();
    let mut spans: Vec<(f64, f64, Option<&PlannedStage>)> = Vec::new();
    for (i, p) in d.plan.stages.iter().enumerate() {
        let from = p.at.as_secs_f64();
        let to = d.plan.stages.get(i + 1).map_or(end, |n| n.at.as_secs_f64());
        spans.push((from, to.min(end), Some(p)));
    }
    if spans.is_empty() {
        spans.push((0.0, end, None));
    }
    spans.push((end, d.teardown_at.max(end), None));
    spans
        .into_iter()
        .map(|(from, to, planned)| {
            let run = planned.and_then(|p| d.stages.iter().find(|r| r.planned == *p));
            row(d, from, to, planned.map(|p| p.stage), run.cloned())
        })
        .collect()
}

fn row(d: &RunData, from: f64, to: f64, stage: Option<Stage>, run: Option<StageRun>) -> StageRow {
    let seconds: Vec<&Second> = d
        .seconds
        .iter()
        .enumerate()
        .filter(|(k, _)| (from..to).contains(&(*k as f64 + 0.5)))
        .map(|(_, s)| s)
        .collect();
    let ok: u64 = seconds.iter().map(|s| s.payments_ok).sum();
    let booked = |pick: fn(&BooksSample) -> Option<ProcessorSummary>| {
        Some(books_at(&d.books, to, pick)? - books_at(&d.books, from, pick)?)
    };
    StageRow {
        from,
        to,
        stage,
        run,
        p99_ms: p99(&seconds),
        ok_per_s: (!seconds.is_empty()).then(|| ok as f64 / seconds.len() as f64),
        failed: seconds.iter().map(|s| s.payments_failed).sum(),
        default: booked(|b| b.default),
        fallback: booked(|b| b.fallback),
    }
}

/// p99 of the seconds' histograms merged, ms.
fn p99(seconds: &[&Second]) -> Option<f64> {
    let mut all = Histogram::<u64>::new_from(&seconds.first()?.latency);
    for s in seconds {
        // Same bounds and precision: adding cannot fail.
        let _ = all.add(&s.latency);
    }
    (!all.is_empty()).then(|| all.value_at_quantile(0.99) as f64 / 1000.0)
}

/// A processor's `totalRequests` by the last books sample at or before `t` that read
/// it; 0 before the first one (the setup purged the books); `None` without samples.
fn books_at(
    books: &[BooksSample],
    t: f64,
    pick: fn(&BooksSample) -> Option<ProcessorSummary>,
) -> Option<f64> {
    if books.is_empty() {
        return None;
    }
    let last = books
        .iter()
        .rev()
        .filter(|b| b.t <= t)
        .find_map(pick)
        .map_or(0.0, |s| s.total_requests);
    Some(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn books(t: f64, d: f64, f: Option<f64>) -> BooksSample {
        let s = |n: f64| ProcessorSummary {
            total_requests: n,
            ..Default::default()
        };
        BooksSample {
            t,
            accepted: 0.0,
            default: Some(s(d)),
            fallback: f.map(s),
        }
    }

    #[test]
    fn books_between_samples() {
        let b = [
            books(0.1, 0.0, Some(0.0)),
            books(1.1, 10.0, Some(2.0)),
            books(2.1, 30.0, None),
            books(3.1, 35.0, Some(9.0)),
        ];
        let f = |b: &BooksSample| b.fallback;
        assert_eq!(books_at(&b, 0.0, f), Some(0.0));
        assert_eq!(
            books_at(&b, 2.5, f),
            Some(2.0),
            "the failed read is skipped"
        );
        assert_eq!(books_at(&b, 9.0, f), Some(9.0));
        assert_eq!(books_at(&b, 2.5, |b| b.default), Some(30.0));
        assert_eq!(books_at(&[], 2.5, f), None);
        let row = StageRow {
            from: 0.0,
            to: 1.0,
            stage: None,
            run: None,
            p99_ms: None,
            ok_per_s: None,
            failed: 0,
            default: Some(30.0),
            fallback: Some(10.0),
        };
        assert_eq!(row.fallback_share(), Some(25.0));
    }
}
