//! The outputs of a run besides the official JSON: `report.html` (self-contained:
//! inline CSS and hand-written SVG, nothing fetched, no script), the flat list of
//! figures that `--runs` aggregates, and the short human summary.
//!
//! Hand-written SVG rather than a plotting crate: five line charts with a legend and
//! stage markers are a hundred lines, and the report stays a few hundred kilobytes.

use crate::recorder::second_percentiles;
use crate::runner::RunData;
use crate::scenario::Stage;
use crate::score::ceiling;
use crate::topology::{LimitsNote, ProcUsage};
use std::fmt::Write as _;

/// A finished run with what the report needs beyond the measurements.
pub struct RunOutput {
    pub data: RunData,
    /// Usage of each started process when it was stopped.
    pub usage: Vec<ProcUsage>,
    pub limits: LimitsNote,
    /// Exits and restarts of started processes during the run.
    pub events: Vec<String>,
    /// The command line, for the record.
    pub command: String,
}

/// Profit as a percentage of the ceiling (see [`ceiling`]).
pub fn percent_of_ceiling(d: &RunData) -> f64 {
    let c = ceiling(d.plan.scenario, d.inputs.successes);
    if c > 0.0 {
        d.score.total_liquido / c * 100.0
    } else {
        0.0
    }
}

/// CPU seconds a process used during the test (from the test start to its stop).
fn cpu_during_test(o: &RunOutput, p: &ProcUsage) -> f64 {
    let before = o
        .data
        .usage_at_start
        .iter()
        .find(|u| u.name == p.name)
        .map(|u| u.cpu_seconds)
        .unwrap_or(0.0);
    (p.cpu_seconds - before).max(0.0)
}

/// `|backend.default - default| + |backend.fallback - fallback|` in payments, between
/// the backend's own summary and the processors' books over the teardown window, read
/// right after the teardown; `None` when the backend's summary could not be read.
pub fn end_audit_difference(o: &RunOutput) -> Option<f64> {
    let b = o.data.end_audit?;
    let i = &o.data.inputs;
    Some(
        (b.default_requests - i.default.total_requests).abs()
            + (b.fallback_requests - i.fallback.total_requests).abs(),
    )
}

/// Window of the backend's peak CPU figure: long enough to smooth the 1 s samples,
/// short enough to catch a stage's burst.
const PEAK_WINDOW_SECS: f64 = 5.0;

/// Peak CPU, in cores, of the backend's own processes together (everything the bench
/// started except the emulated processors), over any `PEAK_WINDOW_SECS` window of the
/// test; `None` when the bench did not start the backend.
pub fn backend_peak_cores(o: &RunOutput) -> Option<f64> {
    peak_cores(&o.data.usage_samples, PEAK_WINDOW_SECS, |name| {
        !name.starts_with("processor-")
    })
}

/// Largest CPU use, in cores, of the processes `include` selects, over any window of
/// `window` seconds (at least 80% covered by samples); `None` if none is selected.
pub fn peak_cores(
    samples: &[crate::runner::UsageSample],
    window: f64,
    include: impl Fn(&str) -> bool,
) -> Option<f64> {
    let cpu = |u: &crate::runner::UsageSample| -> f64 {
        u.cpu_seconds
            .iter()
            .filter(|(name, _)| include(name))
            .map(|(_, c)| c)
            .sum()
    };
    let selected = samples
        .first()
        .is_some_and(|u| u.cpu_seconds.iter().any(|(name, _)| include(name)));
    if !selected {
        return None;
    }
    let mut peak: f64 = 0.0;
    let mut j = 0;
    for i in 0..samples.len() {
        while samples[i].t - samples[j].t > window {
            j += 1;
        }
        let dt = samples[i].t - samples[j].t;
        if dt >= window * 0.8 {
            peak = peak.max((cpu(&samples[i]) - cpu(&samples[j])) / dt);
        }
    }
    Some(peak)
}

/// Every figure of a run by name, for `--runs` (min / median / max) and `bench.json`.
pub fn figures(o: &RunOutput) -> Vec<(String, f64)> {
    let d = &o.data;
    let s = &d.score;
    let mut v = vec![
        ("total_liquido".to_string(), s.total_liquido),
        ("percent_of_ceiling".into(), percent_of_ceiling(d)),
        ("total_bruto".into(), s.total_bruto),
        ("total_taxas".into(), s.total_taxas),
        ("p99_ms".into(), s.p99),
        ("p99_unrounded_ms".into(), d.overall_ms[2]),
        ("p50_ms".into(), d.overall_ms[0]),
        ("p90_ms".into(), d.overall_ms[1]),
        ("max_ms".into(), d.overall_ms[3]),
        ("bonus_percent".into(), s.bonus * 100.0),
        ("inconsistencies".into(), d.inputs.inconsistencies),
        ("fine_percent".into(), s.fine * 100.0),
        ("lag".into(), s.lag),
        ("caixa_dois".into(), if s.caixa_dois() { 1.0 } else { 0.0 }),
        ("payments_ok".into(), d.inputs.successes as f64),
        ("payments_failed".into(), d.inputs.failures as f64),
        ("payments_default".into(), s.default_requests),
        ("payments_fallback".into(), s.fallback_requests),
        ("requests".into(), d.requests as f64),
        ("bench_cpu_seconds".into(), d.bench_cpu_seconds),
    ];
    if let Some(diff) = end_audit_difference(o) {
        v.push(("end_audit_request_difference".into(), diff));
    }
    if let Some(peak) = backend_peak_cores(o) {
        v.push(("backend_peak_cpu_cores_5s".into(), peak));
        let rss: u64 = o
            .usage
            .iter()
            .filter(|p| !p.name.starts_with("processor-"))
            .map(|p| p.peak_rss_bytes)
            .sum();
        v.push(("backend_peak_rss_mb_sum".into(), rss as f64 / 1_048_576.0));
    }
    for p in &o.usage {
        v.push((
            format!("cpu_seconds_test[{}]", p.name),
            cpu_during_test(o, p),
        ));
        v.push((format!("cpu_seconds_total[{}]", p.name), p.cpu_seconds));
        v.push((
            format!("peak_rss_mb[{}]", p.name),
            p.peak_rss_bytes as f64 / 1_048_576.0,
        ));
        if let Some(t) = p.throttled_seconds {
            v.push((format!("throttled_seconds[{}]", p.name), t));
        }
    }
    v
}

fn money(x: f64) -> String {
    let cents = (x * 100.0).round() as i128;
    let neg = cents < 0;
    let cents = cents.unsigned_abs();
    let int = (cents / 100).to_string();
    let groups: Vec<&str> = int
        .as_bytes()
        .rchunks(3)
        .rev()
        .map(|c| std::str::from_utf8(c).unwrap_or(""))
        .collect();
    let grouped = groups.join(",");
    format!("{}{grouped}.{:02}", if neg { "-" } else { "" }, cents % 100)
}

/// The short human summary printed at the end of a run.
pub fn summary_text(o: &RunOutput) -> String {
    let d = &o.data;
    let s = &d.score;
    let mut t = String::new();
    let _ = writeln!(
        t,
        "payroute bench: {} ({:.0} s, {} VUs) against {}",
        d.plan.scenario.name(),
        d.plan.duration.as_secs_f64(),
        d.plan.max_vus,
        d.backend_url
    );
    let _ = writeln!(
        t,
        "  profit (total_liquido)  {:>14}   {:.1}% of the ceiling ({})",
        money(s.total_liquido),
        percent_of_ceiling(d),
        money(ceiling(d.plan.scenario, d.inputs.successes))
    );
    let _ = writeln!(
        t,
        "  p99                     {:>11} ms   bonus {}%  (p50 {:.2} / p90 {:.2} / max {:.2} ms over {} requests)",
        format!("{:.2}", s.p99),
        crate::js::big_percent_string(s.bonus),
        d.overall_ms[0],
        d.overall_ms[1],
        d.overall_ms[3],
        d.p99_sample_size
    );
    let _ = writeln!(
        t,
        "  payments                {:>14} ok, {} failed; counted default {}, fallback {}; lag {}",
        d.inputs.successes, d.inputs.failures, s.default_requests, s.fallback_requests, s.lag
    );
    let _ = writeln!(
        t,
        "  inconsistencies         {:>14}   fine {}%  ({} checks)",
        d.inputs.inconsistencies,
        s.fine * 100.0,
        d.checks.len()
    );
    if s.caixa_dois() {
        let _ = writeln!(
            t,
            "  !!! CAIXA DOIS: the backend counted {} more payments than were accepted: DISQUALIFIED in the challenge",
            -s.lag
        );
    }
    for p in &o.usage {
        let _ = writeln!(
            t,
            "  {:<22}  cpu {:>6.1} s during the test ({:.1} s total), peak RSS {:>6.1} MB, throttled {}",
            p.name,
            cpu_during_test(o, p),
            p.cpu_seconds,
            p.peak_rss_bytes as f64 / 1_048_576.0,
            p.throttled_seconds.map(|x| format!("{x:.2} s")).unwrap_or_else(|| "n/a".into())
        );
    }
    let _ = writeln!(
        t,
        "  {:<22}  cpu {:>6.1} s during the test (the load generator itself)",
        "bench", d.bench_cpu_seconds
    );
    match end_audit_difference(o) {
        Some(0.0) => {
            let _ = writeln!(
                t,
                "  at the end                backend summary equals the processors' books over the teardown window"
            );
        }
        Some(d) => {
            let _ = writeln!(
                t,
                "  !!! at the end the backend summary differs from the processors' books by {d} payments"
            );
        }
        None => {
            let _ = writeln!(
                t,
                "  at the end                backend summary not readable"
            );
        }
    }
    if let Some(peak) = backend_peak_cores(o) {
        let rss: u64 = o
            .usage
            .iter()
            .filter(|p| !p.name.starts_with("processor-"))
            .map(|p| p.peak_rss_bytes)
            .sum();
        let _ = writeln!(
            t,
            "  backend (all but the processors): peak {peak:.3} CPU cores over 5 s, peak RSS summed {:.1} MB",
            rss as f64 / 1_048_576.0
        );
    }
    let warn = if o.limits.is_warning() { "!!! " } else { "" };
    let _ = writeln!(t, "  {warn}{}", o.limits.describe());
    for e in &o.events {
        let _ = writeln!(t, "  !!! {}", e.lines().next().unwrap_or(""));
    }
    t
}

// ---------------------------------------------------------------------------------
// SVG charts.

const W: f64 = 1100.0;
const H: f64 = 280.0;
const ML: f64 = 70.0;
const MR: f64 = 20.0;
const MT: f64 = 34.0;
const MB: f64 = 36.0;

/// Colors that stay distinct on white and for common color blindness.
const PALETTE: [&str; 8] = [
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf",
];

struct Series {
    name: String,
    points: Vec<(f64, f64)>,
}

impl Series {
    fn new(name: &str, points: Vec<(f64, f64)>) -> Series {
        Series {
            name: name.to_string(),
            points,
        }
    }
}

struct Chart<'a> {
    title: &'a str,
    y_label: &'a str,
    log: bool,
    x_max: f64,
    series: Vec<Series>,
    stages: &'a [(f64, String)],
    end: f64,
}

fn nice_step(range: f64) -> f64 {
    let raw = range / 5.0;
    let mag = 10f64.powf(raw.log10().floor());
    let n = raw / mag;
    let m = if n <= 1.0 {
        1.0
    } else if n <= 2.0 {
        2.0
    } else if n <= 5.0 {
        5.0
    } else {
        10.0
    };
    m * mag
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn fmt_tick(v: f64) -> String {
    if v == 0.0 {
        "0".into()
    } else if v.abs() >= 1000.0 {
        format!("{v:.0}")
    } else if v.abs() >= 1.0 {
        let s = format!("{v:.2}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        let s = format!("{v:.3}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

impl Chart<'_> {
    fn svg(&self) -> String {
        let mut o = String::new();
        let _ = write!(
            o,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="11">"#
        );
        let _ = write!(
            o,
            r#"<text x="{ML}" y="16" font-size="14" font-weight="bold">{}</text>"#,
            esc(self.title)
        );
        let pw = W - ML - MR;
        let ph = H - MT - MB;
        let x_max = self.x_max.max(1.0);
        let xs = |x: f64| ML + (x / x_max).clamp(0.0, 1.0) * pw;
        let ys_all = self
            .series
            .iter()
            .flat_map(|s| s.points.iter().map(|p| p.1));
        let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
        for y in ys_all {
            if y.is_finite() && (!self.log || y > 0.0) {
                lo = lo.min(y);
                hi = hi.max(y);
            }
        }
        if !lo.is_finite() {
            let _ = write!(
                o,
                r##"<text x="{}" y="{}" fill="#888">no data</text></svg>"##,
                ML + 10.0,
                MT + 20.0
            );
            return o;
        }
        // Y axis mapping and ticks.
        let (y_lo, y_hi, ticks): (f64, f64, Vec<f64>) = if self.log {
            let a = lo.log10().floor();
            let b = hi.log10().ceil().max(a + 1.0);
            let ticks = (a as i32..=b as i32).map(|e| 10f64.powi(e)).collect();
            (a, b, ticks)
        } else {
            let hi = if hi <= 0.0 { 1.0 } else { hi * 1.05 };
            let step = nice_step(hi);
            let top = (hi / step).ceil() * step;
            let ticks = (0..=((top / step).round() as i64))
                .map(|i| i as f64 * step)
                .collect();
            (0.0, top, ticks)
        };
        let ys = |y: f64| {
            let v = if self.log { y.max(1e-12).log10() } else { y };
            MT + ph - ((v - y_lo) / (y_hi - y_lo)).clamp(0.0, 1.0) * ph
        };
        // Grid and axes.
        for t in &ticks {
            let y = ys(*t);
            let _ = write!(
                o,
                r##"<line x1="{ML}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#e4e4e4"/><text x="{:.1}" y="{:.1}" text-anchor="end" fill="#444">{}</text>"##,
                W - MR,
                ML - 6.0,
                y + 4.0,
                fmt_tick(*t)
            );
        }
        let x_step = nice_step(x_max);
        let mut x = 0.0;
        while x <= x_max + 1e-9 {
            let px = xs(x);
            let _ = write!(
                o,
                r##"<line x1="{px:.1}" y1="{:.1}" x2="{px:.1}" y2="{:.1}" stroke="#999"/><text x="{px:.1}" y="{:.1}" text-anchor="middle" fill="#444">{}</text>"##,
                MT + ph,
                MT + ph + 4.0,
                MT + ph + 16.0,
                fmt_tick(x)
            );
            x += x_step;
        }
        let _ = write!(
            o,
            r##"<rect x="{ML}" y="{MT}" width="{pw}" height="{ph}" fill="none" stroke="#999"/><text x="{:.1}" y="{:.1}" text-anchor="middle" fill="#444">seconds since the test start</text>"##,
            ML + pw / 2.0,
            H - 4.0
        );
        let _ = write!(
            o,
            r##"<text transform="translate(14,{:.1}) rotate(-90)" text-anchor="middle" fill="#444">{}</text>"##,
            MT + ph / 2.0,
            esc(self.y_label)
        );
        // Stage boundaries and the end of the test.
        for (i, (t, label)) in self.stages.iter().enumerate() {
            let px = xs(*t);
            let ly = MT + 10.0 + (i % 2) as f64 * 11.0;
            let _ = write!(
                o,
                r##"<line x1="{px:.1}" y1="{MT}" x2="{px:.1}" y2="{:.1}" stroke="#b0b0b0" stroke-dasharray="4 3"/><text x="{:.1}" y="{ly:.1}" font-size="9" fill="#777">{}</text>"##,
                MT + ph,
                px + 2.0,
                esc(label)
            );
        }
        let px = xs(self.end);
        let _ = write!(
            o,
            r##"<line x1="{px:.1}" y1="{MT}" x2="{px:.1}" y2="{:.1}" stroke="#555" stroke-width="1.5"/>"##,
            MT + ph
        );
        // Series.
        for (i, s) in self.series.iter().enumerate() {
            let color = PALETTE[i % PALETTE.len()];
            let pts: Vec<String> = s
                .points
                .iter()
                .filter(|p| p.1.is_finite() && (!self.log || p.1 > 0.0))
                .map(|&(x, y)| format!("{:.1},{:.1}", xs(x), ys(y)))
                .collect();
            if !pts.is_empty() {
                // A planned quantity (the VUs) is dashed, measured ones are solid.
                let dash = if s.name == "VUs" {
                    r#" stroke-dasharray="6 4""#
                } else {
                    ""
                };
                let _ = write!(
                    o,
                    r#"<polyline fill="none" stroke="{color}" stroke-width="1.6"{dash} points="{}"/>"#,
                    pts.join(" ")
                );
            }
            // Legend, right-aligned in the title row.
            let lx = W - MR - 150.0 * (self.series.len() - i) as f64;
            let _ = write!(
                o,
                r#"<rect x="{lx:.1}" y="8" width="14" height="4" fill="{color}"/><text x="{:.1}" y="14">{}</text>"#,
                lx + 18.0,
                esc(&s.name)
            );
        }
        o.push_str("</svg>");
        o
    }
}

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

/// Samples the CPU chart averages over (see [`rate_over`]).
const CPU_SMOOTHING_SAMPLES: usize = 5;

/// `report.html`.
pub fn html(o: &RunOutput) -> String {
    let d = &o.data;
    let s = &d.score;
    let x_max = d.teardown_at.max(d.plan.duration.as_secs_f64()) + 1.0;
    let end = d.plan.duration.as_secs_f64();
    let stages: Vec<(f64, String)> = d
        .plan
        .stages
        .iter()
        .map(|p| (p.at.as_secs_f64(), stage_label(&p.stage)))
        .collect();
    let mut charts = Vec::new();

    // Latency per second.
    let mut lat: Vec<Series> = ["p50", "p90", "p99", "max"]
        .iter()
        .map(|n| Series::new(n, Vec::new()))
        .collect();
    for (i, sec) in d.seconds.iter().enumerate() {
        if let Some(p) = second_percentiles(sec) {
            for (k, v) in p.iter().enumerate() {
                lat[k].points.push((i as f64 + 0.5, *v));
            }
        }
    }
    charts.push(
        Chart {
            title: "Latency of answered requests (status < 400), per second",
            y_label: "ms (log scale)",
            log: true,
            x_max,
            series: lat,
            stages: &stages,
            end,
        }
        .svg(),
    );

    // Throughput and errors.
    let per_sec = |f: &dyn Fn(&crate::recorder::Second) -> u64| -> Vec<(f64, f64)> {
        d.seconds
            .iter()
            .enumerate()
            .map(|(i, s)| (i as f64 + 0.5, f(s) as f64))
            .collect()
    };
    let vus: Vec<(f64, f64)> = (0..=(end as u64))
        .map(|t| {
            (
                t as f64,
                f64::from(d.plan.vus_at(std::time::Duration::from_secs(t))),
            )
        })
        .collect();
    charts.push(
        Chart {
            title: "Requests per second, errors per second and virtual users",
            y_label: "per second / VUs",
            log: false,
            x_max,
            series: vec![
                Series::new("payments ok/s", per_sec(&|s| s.payments_ok)),
                Series::new("payments failed/s", per_sec(&|s| s.payments_failed)),
                Series::new("no answer/s", per_sec(&|s| s.no_answer)),
                Series::new("VUs", vus),
            ],
            stages: &stages,
            end,
        }
        .svg(),
    );

    // payroute's own figures.
    if !d.health.is_empty() {
        charts.push(
            Chart {
                title: "payroute: queue depth and payments in flight (from /health)",
                y_label: "payments",
                log: false,
                x_max,
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
                stages: &stages,
                end,
            }
            .svg(),
        );
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
        if !pd.is_empty() || !pf.is_empty() {
            charts.push(
                Chart {
                    title: "payroute: payments processed per second, by processor (from /health)",
                    y_label: "payments/s",
                    log: false,
                    x_max,
                    series: vec![
                        Series::new("default", rate(&pd)),
                        Series::new("fallback", rate(&pf)),
                    ],
                    stages: &stages,
                    end,
                }
                .svg(),
            );
        }
    }

    // CPU per process.
    if !d.usage_samples.is_empty() {
        let mut names: Vec<String> = Vec::new();
        for u in &d.usage_samples {
            for (n, _) in &u.cpu_seconds {
                if !names.contains(n) {
                    names.push(n.clone());
                }
            }
        }
        let series = names
            .iter()
            .map(|n| {
                let pts: Vec<(f64, f64)> = d
                    .usage_samples
                    .iter()
                    .filter_map(|u| {
                        u.cpu_seconds
                            .iter()
                            .find(|(m, _)| m == n)
                            .map(|(_, c)| (u.t, *c))
                    })
                    .collect();
                let pct = rate_over(&pts, CPU_SMOOTHING_SAMPLES)
                    .into_iter()
                    .map(|(t, r)| (t, r * 100.0))
                    .collect();
                Series::new(n, pct)
            })
            .collect();
        charts.push(
            Chart {
                title: "CPU per process, 5 s average (100% = one core)",
                y_label: "% of a core",
                log: false,
                x_max,
                series,
                stages: &stages,
                end,
            }
            .svg(),
        );
    }

    let mut h = String::new();
    let title = format!(
        "payroute bench — {} — {}",
        d.plan.scenario.name(),
        d.backend_url
    );
    let _ = write!(
        h,
        r#"<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{}</title><style>
body{{font-family:sans-serif;margin:24px;color:#222;max-width:1160px}}
h1{{font-size:20px}} h2{{font-size:16px;margin-top:28px}}
table{{border-collapse:collapse;font-size:13px}} td,th{{border:1px solid #ccc;padding:3px 8px;text-align:right}}
th{{background:#f3f3f3}} td.l,th.l{{text-align:left}}
.big{{display:flex;flex-wrap:wrap;gap:12px}} .big div{{border:1px solid #ccc;border-radius:6px;padding:8px 14px;min-width:140px}}
.big b{{display:block;font-size:20px}} .warn{{background:#fff0f0;border:2px solid #d62728;padding:8px 12px;margin:8px 0;font-weight:bold}}
.ok{{background:#f0fff0;border:1px solid #2ca02c;padding:6px 12px;margin:8px 0}}
pre{{background:#f7f7f7;padding:10px;font-size:12px;overflow:auto}}
</style></head><body>"#,
        esc(&title)
    );
    let _ = write!(h, "<h1>{}</h1>", esc(&title));
    let _ = write!(
        h,
        "<p>Test started {} · {:.0} s · {} VUs · teardown at {:.1} s · results comparable with the published <code>{}</code></p>",
        esc(&d.started_at),
        d.plan.duration.as_secs_f64(),
        d.plan.max_vus,
        d.teardown_at,
        d.plan.scenario.results_file()
    );
    if s.caixa_dois() {
        let _ = write!(
            h,
            r#"<div class="warn">CAIXA DOIS: the backend counted {} more payments than were accepted (negative lag): disqualified in the challenge.</div>"#,
            -s.lag
        );
    }
    let limits_class = if o.limits.is_warning() { "warn" } else { "ok" };
    let _ = write!(
        h,
        r#"<div class="{limits_class}">{}</div>"#,
        esc(&o.limits.describe())
    );
    for e in &o.events {
        let _ = write!(h, r#"<div class="warn"><pre>{}</pre></div>"#, esc(e));
    }
    let big = [
        ("profit (total_liquido)", money(s.total_liquido)),
        ("of the ceiling", format!("{:.1}%", percent_of_ceiling(d))),
        ("p99", format!("{} ms", crate::js::js_string(s.p99))),
        (
            "bonus",
            format!("{}%", crate::js::big_percent_string(s.bonus)),
        ),
        ("inconsistencies", format!("{}", d.inputs.inconsistencies)),
        ("lag", format!("{}", s.lag)),
        (
            "default / fallback",
            format!("{} / {}", s.default_requests, s.fallback_requests),
        ),
        (
            "payments ok / failed",
            format!("{} / {}", d.inputs.successes, d.inputs.failures),
        ),
    ];
    h.push_str(r#"<div class="big">"#);
    for (k, v) in big {
        let _ = write!(h, "<div>{}<b>{}</b></div>", esc(k), esc(&v));
    }
    h.push_str("</div>");
    let _ = write!(
        h,
        "<p>Ceiling: every successful payment through the default processor at the scenario's fee ({}%), bonus at p99 = 0 (22%), no fine: {}.</p>",
        crate::js::big_percent_string(d.plan.scenario.fees().0),
        money(ceiling(d.plan.scenario, d.inputs.successes))
    );
    let _ = write!(
        h,
        "<p>Latency over the whole test (k6 percentiles over {} answered requests): p50 {:.3} ms · p90 {:.3} ms · p99 {:.3} ms · max {:.3} ms.</p>",
        d.p99_sample_size, d.overall_ms[0], d.overall_ms[1], d.overall_ms[2], d.overall_ms[3]
    );
    h.push_str("<h2>Over time</h2><p>Dashed lines: stage changes (D = default processor, F = fallback: delay, FAIL when failing). Solid line: end of the payments.</p>");
    for c in charts {
        let _ = write!(h, "<div>{c}</div>");
    }

    h.push_str("<h2>Processes</h2>");
    if o.usage.is_empty() {
        h.push_str("<p>No process was started by the bench.</p>");
    } else {
        h.push_str(r#"<table><tr><th class="l">process</th><th>pid</th><th>CPU s during the test</th><th>CPU s total</th><th>peak RSS MB</th><th>throttled s</th><th>limits enforced</th></tr>"#);
        for p in &o.usage {
            let _ = write!(
                h,
                r#"<tr><td class="l">{}</td><td>{}</td><td>{:.2}</td><td>{:.2}</td><td>{:.1}</td><td>{}</td><td>{}</td></tr>"#,
                esc(&p.name),
                p.pid,
                cpu_during_test(o, p),
                p.cpu_seconds,
                p.peak_rss_bytes as f64 / 1_048_576.0,
                p.throttled_seconds
                    .map(|x| format!("{x:.2}"))
                    .unwrap_or_else(|| "n/a".into()),
                if p.limits_enforced { "yes" } else { "no" }
            );
        }
        h.push_str("</table>");
    }
    let _ = write!(
        h,
        "<p>The bench itself (load generator, same machine) used {:.2} CPU s during the test.</p>",
        d.bench_cpu_seconds
    );

    h.push_str(r#"<h2>Consistency checks</h2><table><tr><th>t (s)</th><th class="l">window</th><th>backend default</th><th>processor default</th><th>backend fallback</th><th>processor fallback</th><th>statuses</th><th>inconsistencies</th></tr>"#);
    for c in &d.checks {
        let _ = write!(
            h,
            r#"<tr><td>{:.1}</td><td class="l">{} → {}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{:?}</td><td>{}</td></tr>"#,
            c.t,
            esc(&c.from),
            esc(&c.to),
            c.backend.default_requests,
            c.default.total_requests,
            c.backend.fallback_requests,
            c.fallback.total_requests,
            c.statuses,
            c.inconsistencies
        );
    }
    h.push_str("</table>");

    h.push_str(r#"<h2>Stages</h2><table><tr><th>planned (s)</th><th>sent (s)</th><th class="l">default</th><th class="l">fallback</th><th>statuses</th></tr>"#);
    for st in &d.stages {
        let g = st.planned.stage;
        let _ = write!(
            h,
            r#"<tr><td>{:.2}</td><td>{:.2}</td><td class="l">delay {} ms{}</td><td class="l">delay {} ms{}</td><td>{:?}</td></tr>"#,
            st.planned.at.as_secs_f64(),
            st.t,
            g.default_delay_ms,
            if g.default_failure { ", failing" } else { "" },
            g.fallback_delay_ms,
            if g.fallback_failure { ", failing" } else { "" },
            st.statuses
        );
    }
    h.push_str("</table>");

    let _ = write!(
        h,
        "<h2>Official result file</h2><pre>{}</pre><h2>Command</h2><pre>{}</pre></body></html>",
        esc(&d.results.to_json()),
        esc(&o.command)
    );
    h
}

#[cfg(test)]
mod peak_tests {
    use super::peak_cores;
    use crate::runner::UsageSample;

    #[test]
    fn peak_over_a_sliding_window() {
        // worker: 0.1 core, then 0.5 core from t=10 to t=15; processor: 1 core always.
        let mut worker = 0.0;
        let samples: Vec<UsageSample> = (0..=30)
            .map(|t| {
                if t > 0 {
                    worker += if (11..=15).contains(&t) { 0.5 } else { 0.1 };
                }
                UsageSample {
                    t: f64::from(t),
                    cpu_seconds: vec![
                        ("worker".into(), worker),
                        ("processor-default".into(), f64::from(t)),
                    ],
                }
            })
            .collect();
        let peak = peak_cores(&samples, 5.0, |n| !n.starts_with("processor-")).unwrap();
        assert!((peak - 0.5).abs() < 1e-9, "{peak}");
        assert_eq!(peak_cores(&samples, 5.0, |n| n == "nobody"), None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_money_and_ticks() {
        assert_eq!(money(380_035.872), "380,035.87");
        assert_eq!(money(0.0), "0.00");
        assert_eq!(money(-1234.5), "-1,234.50");
        assert_eq!(fmt_tick(0.5), "0.5");
        assert_eq!(fmt_tick(2000.0), "2000");
        assert_eq!(nice_step(600.0), 200.0);
    }

    #[test]
    fn charts_are_well_formed_svg() {
        let stages = vec![(10.0, "D 100ms | F 0ms".to_string())];
        let c = Chart {
            title: "t <x>",
            y_label: "ms",
            log: true,
            x_max: 60.0,
            series: vec![Series::new(
                "p99",
                vec![(0.5, 0.8), (1.5, 12.0), (2.5, 0.0)],
            )],
            stages: &stages,
            end: 60.0,
        };
        let svg = c.svg();
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
        assert!(svg.contains("t &lt;x&gt;"));
        assert!(svg.contains("<polyline"));
        let empty = Chart {
            series: vec![],
            log: false,
            ..c
        };
        assert!(empty.svg().contains("no data"));
    }

    #[test]
    fn rates_of_counters() {
        assert_eq!(
            rate(&[(0.0, 0.0), (1.0, 10.0), (3.0, 30.0)]),
            vec![(1.0, 10.0), (3.0, 10.0)]
        );
    }
}

#[cfg(test)]
mod snapshot_tests;
