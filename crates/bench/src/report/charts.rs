//! The report's charts over the test's time, one function each: latency, throughput,
//! and, when the run has them, payroute's queue and processed payments (from its
//! `/health`) and the CPU of each started process.

use super::figures::names_in_order;
use super::svg::{Chart, Scale, Series, Timeline};
use crate::recorder::{second_percentiles, Second};
use crate::runner::{RunData, UsageSample};
use crate::scenario::Stage;
use std::time::Duration;

/// Samples the CPU chart averages over (see [`rate_over`]).
const CPU_SMOOTHING_SAMPLES: usize = 5;

/// Every chart of the run, as SVG, in the page's order.
pub(super) fn charts(d: &RunData) -> Vec<String> {
    let timeline = timeline(d);
    let mut charts = vec![latency(d, &timeline), throughput(d, &timeline)];
    if !d.health.is_empty() {
        charts.push(queue(d, &timeline));
        charts.extend(processed(d, &timeline));
    }
    if !d.usage_samples.is_empty() {
        charts.push(cpu(d, &timeline));
    }
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
fn stage_label(s: &Stage) -> String {
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
        title: "Latency of answered requests (status < 400), per second",
        y_label: "ms (log scale)",
        scale: Scale::Log,
        series: lat,
        timeline,
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

/// payroute's queue depth and payments in flight.
fn queue(d: &RunData, timeline: &Timeline) -> String {
    Chart {
        title: "payroute: queue depth and payments in flight (from /health)",
        y_label: "payments",
        scale: Scale::Linear,
        series: vec![
            Series::new(
                "queue depth",
                d.health.iter().map(|h| (h.t, h.queue_depth)).collect(),
            ),
            Series::new(
                "in flight",
                d.health.iter().map(|h| (h.t, h.in_flight)).collect(),
            ),
        ],
        timeline,
    }
    .svg()
}

/// Payments payroute processed per second through each processor; `None` when its
/// `/health` does not count them.
fn processed(d: &RunData, timeline: &Timeline) -> Option<String> {
    let pd: Vec<(f64, f64)> = d
        .health
        .iter()
        .filter_map(|h| Some((h.t, h.processed_default?)))
        .collect();
    let pf: Vec<(f64, f64)> = d
        .health
        .iter()
        .filter_map(|h| Some((h.t, h.processed_fallback?)))
        .collect();
    if pd.is_empty() && pf.is_empty() {
        return None;
    }
    let chart = Chart {
        title: "payroute: payments processed per second, by processor (from /health)",
        y_label: "payments/s",
        scale: Scale::Linear,
        series: vec![
            Series::new("default", rate(&pd)),
            Series::new("fallback", rate(&pf)),
        ],
        timeline,
    };
    Some(chart.svg())
}

/// Each started process's CPU, in % of a core, averaged over a few samples.
fn cpu(d: &RunData, timeline: &Timeline) -> String {
    let names = names_in_order(d.usage_samples.iter().map(|u| u.cpu_seconds.as_slice()));
    let series = names
        .iter()
        .map(|n| {
            let pts = cpu_seconds_of(&d.usage_samples, n);
            let pct = rate_over(&pts, CPU_SMOOTHING_SAMPLES)
                .into_iter()
                .map(|(t, r)| (t, r * 100.0))
                .collect();
            Series::new(n, pct)
        })
        .collect();
    Chart {
        title: "CPU per process, 5 s average (100% = one core)",
        y_label: "% of a core",
        scale: Scale::Linear,
        series,
        timeline,
    }
    .svg()
}

/// `(t, CPU seconds so far)` of the process `name`, where it was sampled.
fn cpu_seconds_of(samples: &[UsageSample], name: &str) -> Vec<(f64, f64)> {
    samples
        .iter()
        .filter_map(|u| {
            u.cpu_seconds
                .iter()
                .find(|(m, _)| m == name)
                .map(|(_, c)| (u.t, *c))
        })
        .collect()
}

/// Per-second rate of a cumulative counter sampled at `(t, value)`, between
/// consecutive samples.
fn rate(points: &[(f64, f64)]) -> Vec<(f64, f64)> {
    rate_over(points, 1)
}

/// Per-second rate over `span` sample intervals: CPU time moves in 10 ms clock ticks,
/// so a one-second rate of a process using 2% of a core jumps between 0% and 3%; five
/// seconds smooth that out.
fn rate_over(points: &[(f64, f64)], span: usize) -> Vec<(f64, f64)> {
    points
        .windows(span + 1)
        .filter(|w| w[span].0 > w[0].0)
        .map(|w| (w[span].0, (w[span].1 - w[0].1) / (w[span].0 - w[0].0)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_of_counters() {
        assert_eq!(
            rate(&[(0.0, 0.0), (1.0, 10.0), (3.0, 30.0)]),
            vec![(1.0, 10.0), (3.0, 10.0)]
        );
    }
}
