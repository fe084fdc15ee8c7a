//! The run as a time series, one row a second, for scripts and spreadsheets:
//! `timeseries.csv` and the `timeseries` array of `bench.json`, with the same column
//! names. Row `t_s = i` covers the second `[i, i + 1)` since the test start; a sample
//! taken in that second fills its row (the last one when there are several), and an
//! empty cell (`null` in JSON) means nothing was measured there. Every column is
//! described in `docs/BENCHMARKS.md` (a test checks that each is named there).

use super::figures::names_in_order;
use crate::recorder::second_percentiles;
use crate::runner::{RunData, UsageSample};
use std::time::Duration;

/// The columns every run has, in order (cells may be empty).
pub const FIXED_COLUMNS: [&str; 22] = [
    "t_s",
    "requests",
    "payments_ok",
    "payments_failed",
    "no_answer",
    "p50_ms",
    "p90_ms",
    "p99_ms",
    "max_ms",
    "vus",
    "accepted_total",
    "queue_depth",
    "in_flight",
    "held_payments",
    "held_oldest_age_ms",
    "backend_accepted",
    "backend_processed_default",
    "backend_processed_fallback",
    "books_default",
    "books_fallback",
    "lag",
    "fallback_share_pct",
];

/// Columns each process the bench started adds, as `PREFIX[NAME]`.
pub const PROCESS_COLUMNS: [&str; 3] = ["cpu_pct", "rss_mb", "throttled_ms_per_s"];

/// One column: its name and a cell per second.
type Column = (String, Vec<Option<f64>>);

/// The time series of a run.
#[derive(Debug, Clone, PartialEq)]
pub struct TimeSeries {
    pub columns: Vec<String>,
    /// One row a second, a cell per column.
    pub rows: Vec<Vec<Option<f64>>>,
}

impl TimeSeries {
    /// The cells of column `name`, one a second (`None` for an unknown column).
    pub fn column(&self, name: &str) -> Option<Vec<Option<f64>>> {
        let k = self.columns.iter().position(|c| c == name)?;
        Some(self.rows.iter().map(|r| r[k]).collect())
    }

    /// `(second's middle, value)` of the filled cells of column `name`, for a chart.
    pub fn points(&self, name: &str) -> Vec<(f64, f64)> {
        self.column(name)
            .unwrap_or_default()
            .into_iter()
            .enumerate()
            .filter_map(|(i, v)| Some((i as f64 + 0.5, v?)))
            .collect()
    }

    /// `timeseries.csv`: a header, then a line a second.
    pub fn csv(&self) -> String {
        let mut out = self.columns.join(",");
        out.push('\n');
        for row in &self.rows {
            let cells: Vec<String> = row
                .iter()
                .map(|c| c.map(|x| cell(x).to_string()).unwrap_or_default())
                .collect();
            out.push_str(&cells.join(","));
            out.push('\n');
        }
        out
    }

    /// The `timeseries` array of `bench.json`: an object a second, `null` for an
    /// empty cell.
    pub fn json(&self) -> serde_json::Value {
        let rows = self.rows.iter().map(|row| {
            let obj: serde_json::Map<String, serde_json::Value> = self
                .columns
                .iter()
                .zip(row)
                .map(|(name, c)| (name.clone(), serde_json::json!(c.map(cell))))
                .collect();
            serde_json::Value::Object(obj)
        });
        serde_json::Value::Array(rows.collect())
    }
}

/// A value rounded to 3 decimals, without a negative zero.
fn cell(x: f64) -> f64 {
    let r = (x * 1000.0).round() / 1000.0;
    if r == 0.0 {
        0.0
    } else {
        r
    }
}

/// The time series of the run `d`.
pub fn timeseries(d: &RunData) -> TimeSeries {
    let n = seconds_covered(d);
    let mut cols = load_columns(d, n);
    cols.extend(health_columns(d, n));
    cols.extend(books_columns(d, n));
    cols.extend(process_columns(&d.usage_samples, n));
    let columns = cols.iter().map(|(name, _)| name.clone()).collect();
    let rows = (0..n)
        .map(|i| cols.iter().map(|(_, cells)| cells[i]).collect())
        .collect();
    TimeSeries { columns, rows }
}

/// Rows needed: every second the recorder counted and every sample's second.
fn seconds_covered(d: &RunData) -> usize {
    let last_sample = d
        .health
        .iter()
        .map(|h| h.t)
        .chain(d.books.iter().map(|b| b.t))
        .chain(d.usage_samples.iter().map(|u| u.t))
        .fold(-1.0, f64::max);
    d.seconds.len().max((last_sample.floor() + 1.0) as usize)
}

/// `n` cells with the last value of `samples` (`(t, value)`, in time order) in each
/// second.
fn by_second(n: usize, samples: impl Iterator<Item = (f64, Option<f64>)>) -> Vec<Option<f64>> {
    let mut cells = vec![None; n];
    for (t, v) in samples {
        let i = t.floor();
        if let (Some(v), true) = (v, i >= 0.0 && (i as usize) < n) {
            cells[i as usize] = Some(v);
        }
    }
    cells
}

/// What the bench measured: requests, latencies, VUs, accepted payments so far.
fn load_columns(d: &RunData, n: usize) -> Vec<Column> {
    let sec = |f: &dyn Fn(&crate::recorder::Second) -> Option<f64>| -> Vec<Option<f64>> {
        (0..n).map(|i| d.seconds.get(i).and_then(f)).collect()
    };
    let count = |f: fn(&crate::recorder::Second) -> u64| sec(&|s| Some(f(s) as f64));
    let pct = |k: usize| sec(&|s| second_percentiles(s).map(|p| p[k]));
    let mut accepted = 0.0;
    let accepted_total = (0..n)
        .map(|i| {
            accepted += d.seconds.get(i).map_or(0.0, |s| s.payments_ok as f64);
            Some(accepted)
        })
        .collect();
    let vus = (0..n)
        .map(|i| Some(f64::from(d.plan.vus_at(Duration::from_secs(i as u64)))))
        .collect();
    vec![
        ("t_s".into(), (0..n).map(|i| Some(i as f64)).collect()),
        (
            "requests".into(),
            count(|s| s.payments_ok + s.payments_failed + s.other),
        ),
        ("payments_ok".into(), count(|s| s.payments_ok)),
        ("payments_failed".into(), count(|s| s.payments_failed)),
        ("no_answer".into(), count(|s| s.no_answer)),
        ("p50_ms".into(), pct(0)),
        ("p90_ms".into(), pct(1)),
        ("p99_ms".into(), pct(2)),
        ("max_ms".into(), pct(3)),
        ("vus".into(), vus),
        ("accepted_total".into(), accepted_total),
    ]
}

/// What the backend's `/health` said (payroute's shape), when it answered.
fn health_columns(d: &RunData, n: usize) -> Vec<Column> {
    let h = |f: fn(&crate::runner::HealthSample) -> Option<f64>| {
        by_second(n, d.health.iter().map(|s| (s.t, f(s))))
    };
    vec![
        ("queue_depth".into(), h(|s| Some(s.queue_depth))),
        ("in_flight".into(), h(|s| Some(s.in_flight))),
        ("held_payments".into(), h(|s| s.held_payments)),
        ("held_oldest_age_ms".into(), h(|s| s.held_oldest_age_ms)),
        ("backend_accepted".into(), h(|s| s.accepted)),
        (
            "backend_processed_default".into(),
            h(|s| s.processed_default),
        ),
        (
            "backend_processed_fallback".into(),
            h(|s| s.processed_fallback),
        ),
    ]
}

/// The processors' books, the lag (accepted minus processed, both when the books were
/// read) and the fallback's share of what was processed so far.
fn books_columns(d: &RunData, n: usize) -> Vec<Column> {
    let total = |f: fn(&crate::runner::BooksSample) -> Option<f64>| {
        by_second(n, d.books.iter().map(|b| (b.t, f(b))))
    };
    let def = total(|b| b.default.map(|s| s.total_requests));
    let fb = total(|b| b.fallback.map(|s| s.total_requests));
    let lag = total(|b| {
        let booked = b.default?.total_requests + b.fallback?.total_requests;
        Some(b.accepted - booked)
    });
    let both = |i: usize| Some((def[i]?, fb[i]?));
    let share = (0..n)
        .map(|i| both(i).and_then(|(a, b)| (a + b > 0.0).then(|| b / (a + b) * 100.0)))
        .collect();
    vec![
        ("books_default".into(), def),
        ("books_fallback".into(), fb),
        ("lag".into(), lag),
        ("fallback_share_pct".into(), share),
    ]
}

/// `(t, value)` of process `name` in `list`, where it was sampled.
pub(super) fn of_process(
    samples: &[UsageSample],
    list: fn(&UsageSample) -> &[(String, f64)],
    name: &str,
) -> Vec<(f64, f64)> {
    samples
        .iter()
        .filter_map(|u| {
            let (_, v) = list(u).iter().find(|(m, _)| m == name)?;
            Some((u.t, *v))
        })
        .collect()
}

/// Per-second rate of a cumulative counter sampled at `(t, value)`, between
/// consecutive samples, at the later one.
pub(super) fn rate(points: &[(f64, f64)]) -> Vec<(f64, f64)> {
    points
        .windows(2)
        .filter(|w| w[1].0 > w[0].0)
        .map(|w| (w[1].0, (w[1].1 - w[0].1) / (w[1].0 - w[0].0)))
        .collect()
}

/// CPU, resident set and throttling of each process the bench started.
fn process_columns(samples: &[UsageSample], n: usize) -> Vec<Column> {
    let names = names_in_order(samples.iter().map(|u| u.cpu_seconds.as_slice()));
    let mut cols = Vec::new();
    let scaled = |pts: Vec<(f64, f64)>, k: f64| pts.into_iter().map(move |(t, v)| (t, Some(v * k)));
    for name in names {
        let cpu = rate(&of_process(samples, |u| &u.cpu_seconds, &name));
        let rss = of_process(samples, |u| &u.rss_bytes, &name);
        let throttled = of_process(samples, |u| &u.throttled_seconds, &name);
        cols.push((format!("cpu_pct[{name}]"), by_second(n, scaled(cpu, 100.0))));
        cols.push((
            format!("rss_mb[{name}]"),
            by_second(n, scaled(rss, 1.0 / 1_048_576.0)),
        ));
        if !throttled.is_empty() {
            cols.push((
                format!("throttled_ms_per_s[{name}]"),
                by_second(n, scaled(rate(&throttled), 1000.0)),
            ));
        }
    }
    cols
}
