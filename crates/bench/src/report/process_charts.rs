//! The report's charts of what runs behind the backend's door, when the run has them:
//! payroute's queue, held payments and processed payments (from its `/health`), and
//! the CPU, resident set and throttling of each process the bench started.

use super::figures::names_in_order;
use super::svg::{Chart, Scale, Series, Timeline};
use super::timeseries::{of_process, rate, TimeSeries};
use crate::runner::{RunData, UsageSample};

/// Samples the CPU chart averages over (see [`rate_over`]).
const CPU_SMOOTHING_SAMPLES: usize = 5;

/// The charts of the backend's `/health` (when it answered with payroute's shape) and
/// of the started processes (when the bench started any), in the page's order.
pub(super) fn charts(d: &RunData, ts: &TimeSeries, timeline: &Timeline) -> Vec<String> {
    let mut charts = Vec::new();
    if !d.health.is_empty() {
        charts.push(queue(ts, timeline));
        if d.health.iter().any(|h| h.held_payments.is_some()) {
            charts.push(held(ts, timeline));
            charts.push(held_age(ts, timeline));
        }
        charts.extend(processed(ts, timeline));
    }
    if !d.usage_samples.is_empty() {
        charts.push(cpu(d, timeline));
        charts.push(rss(d, ts, timeline));
        if d.usage_samples
            .iter()
            .any(|u| !u.throttled_seconds.is_empty())
        {
            charts.push(throttling(d, ts, timeline));
        }
    }
    charts
}

/// payroute's queue depth and payments in flight.
fn queue(ts: &TimeSeries, timeline: &Timeline) -> String {
    Chart {
        id: "queue",
        title: "payroute: queue depth and payments in flight (from /health)",
        y_label: "payments",
        scale: Scale::Linear,
        series: vec![
            Series::new("queue depth", ts.points("queue_depth")),
            Series::new("in flight", ts.points("in_flight")),
        ],
        timeline,
    }
    .svg()
}

/// Payments held back for the default processor.
fn held(ts: &TimeSeries, timeline: &Timeline) -> String {
    Chart {
        id: "held",
        title: "payroute: payments held for the default processor (from /health)",
        y_label: "payments",
        scale: Scale::Linear,
        series: vec![Series::new("held", ts.points("held_payments"))],
        timeline,
    }
    .svg()
}

/// Age of the oldest held payment.
fn held_age(ts: &TimeSeries, timeline: &Timeline) -> String {
    Chart {
        id: "held-age",
        title: "payroute: age of the oldest held payment (from /health)",
        y_label: "ms",
        scale: Scale::Linear,
        series: vec![Series::new("oldest held", ts.points("held_oldest_age_ms"))],
        timeline,
    }
    .svg()
}

/// Payments payroute processed per second through each processor; `None` when its
/// `/health` does not count them.
fn processed(ts: &TimeSeries, timeline: &Timeline) -> Option<String> {
    let pd = ts.points("backend_processed_default");
    let pf = ts.points("backend_processed_fallback");
    if pd.is_empty() && pf.is_empty() {
        return None;
    }
    let chart = Chart {
        id: "processed",
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

/// The names of the started processes, in the order they were first sampled.
fn process_names(d: &RunData) -> Vec<String> {
    names_in_order(d.usage_samples.iter().map(|u| u.cpu_seconds.as_slice()))
}

/// Each started process's CPU, in % of a core, averaged over a few samples.
fn cpu(d: &RunData, timeline: &Timeline) -> String {
    let series = process_names(d)
        .iter()
        .map(|n| {
            let pts = of_process(&d.usage_samples, |u: &UsageSample| &u.cpu_seconds, n);
            let pct = rate_over(&pts, CPU_SMOOTHING_SAMPLES)
                .into_iter()
                .map(|(t, r)| (t, r * 100.0))
                .collect();
            Series::new(n, pct)
        })
        .collect();
    Chart {
        id: "cpu",
        title: "CPU per process, 5 s average (100% = one core)",
        y_label: "% of a core",
        scale: Scale::Linear,
        series,
        timeline,
    }
    .svg()
}

/// Each started process's resident set.
fn rss(d: &RunData, ts: &TimeSeries, timeline: &Timeline) -> String {
    let series = process_names(d)
        .iter()
        .map(|n| Series::new(n, ts.points(&format!("rss_mb[{n}]"))))
        .collect();
    Chart {
        id: "rss",
        title: "Resident memory per process (VmRSS)",
        y_label: "MiB",
        scale: Scale::Linear,
        series,
        timeline,
    }
    .svg()
}

/// Time each process with a cgroup limit spent throttled by its CPU quota.
fn throttling(d: &RunData, ts: &TimeSeries, timeline: &Timeline) -> String {
    let series = process_names(d)
        .iter()
        .filter_map(|n| {
            let pts = ts.points(&format!("throttled_ms_per_s[{n}]"));
            ts.column(&format!("throttled_ms_per_s[{n}]"))
                .map(|_| Series::new(n, pts))
        })
        .collect();
    Chart {
        id: "throttling",
        title: "CPU throttling per process (time its cgroup's quota held it back)",
        y_label: "ms throttled per second",
        scale: Scale::Linear,
        series,
        timeline,
    }
    .svg()
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
        assert_eq!(
            rate_over(&[(0.0, 0.0), (1.0, 1.0), (2.0, 4.0)], 2),
            vec![(2.0, 2.0)]
        );
    }
}
