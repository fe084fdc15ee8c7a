//! The report's charts, one function each, in the page's order: latency over time and
//! its distribution, throughput, the lag and the payments processed by processor (from
//! the processors' books, for any backend); then those of [`super::process_charts`]
//! (payroute's `/health`, the processes the bench started).

use super::bars::Bars;
use super::process_charts;
use super::svg::{Chart, Scale, Series, Timeline};
use super::timeseries::{rate, timeseries, TimeSeries};
use crate::recorder::{second_percentiles, Second};
use crate::runner::RunData;
use crate::scenario::Stage;
use std::time::Duration;

/// Every chart of the run, as SVG, in the page's order.
pub(super) fn charts(d: &RunData) -> Vec<String> {
    let ts = timeseries(d);
    let timeline = timeline(d);
    let mut charts = vec![
        latency(d, &timeline),
        distribution(d),
        throughput(d, &timeline),
    ];
    if !d.books.is_empty() {
        charts.push(lag(&ts, &timeline));
        charts.push(books(&ts, &timeline));
    }
    charts.extend(process_charts::charts(d, &ts, &timeline));
    charts
}

/// The time axis: to a second past the teardown, with the stage changes and the end
/// of the payments.
fn timeline(d: &RunData) -> Timeline {
    let end = d.plan.duration.as_secs_f64();
    Timeline {
        x_max: d.teardown_at.max(end) + 1.0,
        stages: d
            .plan
            .stages
            .iter()
            .map(|p| (p.at.as_secs_f64(), stage_label(&p.stage)))
            .collect(),
        end,
    }
}

/// `D 100ms | F 0ms FAIL`: both processors' delay, and whether they fail.
pub(super) fn stage_label(s: &Stage) -> String {
    let one = |delay: u32, failing: bool| {
        if failing {
            format!("{delay}ms FAIL")
        } else {
            format!("{delay}ms")
        }
    };
    format!(
        "D {} | F {}",
        one(s.default_delay_ms, s.default_failure),
        one(s.fallback_delay_ms, s.fallback_failure)
    )
}

/// p50, p90, p99 and max of each second, on a log scale.
fn latency(d: &RunData, timeline: &Timeline) -> String {
    let mut points: [Vec<(f64, f64)>; 4] = Default::default();
    for (i, sec) in d.seconds.iter().enumerate() {
        if let Some(p) = second_percentiles(sec) {
            for (k, v) in p.iter().enumerate() {
                points[k].push((i as f64 + 0.5, *v));
            }
        }
    }
    let lat = ["p50", "p90", "p99", "max"]
        .iter()
        .zip(points)
        .map(|(n, pts)| Series::new(n, pts))
        .collect();
    Chart {
        id: "latency",
        title: "Latency of answered requests (status < 400), per second",
        y_label: "ms (log scale)",
        scale: Scale::Log,
        series: lat,
        timeline,
    }
    .svg()
}

/// How the scored sample's durations are spread, with its p50 and p99.
fn distribution(d: &RunData) -> String {
    let [p50, _, p99, _] = d.overall_ms;
    Bars {
        id: "latency-distribution",
        title: "Latency distribution of every request the p99 counts (whole test)",
        bins: &d.latency_bins,
        marks: vec![
            (p50, format!("p50 {p50:.3} ms")),
            (p99, format!("p99 {p99:.3} ms")),
        ],
    }
    .svg()
}

/// Payments answered and failed, requests without an answer, and the planned VUs.
fn throughput(d: &RunData, timeline: &Timeline) -> String {
    let per_sec = |f: &dyn Fn(&Second) -> u64| -> Vec<(f64, f64)> {
        d.seconds
            .iter()
            .enumerate()
            .map(|(i, s)| (i as f64 + 0.5, f(s) as f64))
            .collect()
    };
    let vus: Vec<(f64, f64)> = (0..=(d.plan.duration.as_secs_f64() as u64))
        .map(|t| (t as f64, f64::from(d.plan.vus_at(Duration::from_secs(t)))))
        .collect();
    Chart {
        id: "throughput",
        title: "Requests per second, errors per second and virtual users",
        y_label: "per second / VUs",
        scale: Scale::Linear,
        series: vec![
            Series::new("payments ok/s", per_sec(&|s| s.payments_ok)),
            Series::new("payments failed/s", per_sec(&|s| s.payments_failed)),
            Series::new("no answer/s", per_sec(&|s| s.no_answer)),
            Series::planned("VUs", vus),
        ],
        timeline,
    }
    .svg()
}

/// Accepted so far minus processed so far (the processors' books): the official lag
/// as it evolves.
fn lag(ts: &TimeSeries, timeline: &Timeline) -> String {
    Chart {
        id: "lag",
        title: "Lag: payments accepted minus payments the processors booked, so far",
        y_label: "payments",
        scale: Scale::Linear,
        series: vec![Series::new("lag", ts.points("lag"))],
        timeline,
    }
    .svg()
}

/// Payments the processors booked per second, each, and the fallback's share so far.
fn books(ts: &TimeSeries, timeline: &Timeline) -> String {
    Chart {
        id: "books",
        title:
            "Processed per second by each processor (their books), and the fallback's share so far",
        y_label: "payments/s, %",
        scale: Scale::Linear,
        series: vec![
            Series::new("default/s", rate(&ts.points("books_default"))),
            Series::new("fallback/s", rate(&ts.points("books_fallback"))),
            Series::other_unit("fallback share %", ts.points("fallback_share_pct")),
        ],
        timeline,
    }
    .svg()
}
