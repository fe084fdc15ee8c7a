//! `report.html`: one self-contained page (inline CSS and SVG, nothing fetched) with
//! the headline figures, the charts over time, the per-stage table and one table each
//! for the processes and the consistency checks.
//!
//! Its only script is [`CHECK_SCRIPT`], inline: it marks the page once every chart has
//! rendered (`<body data-ok="all-charts">`, and "OK" in front of the title), for the
//! browser test; the page reads the same without it.

use super::charts::charts;
use super::figures::{
    cpu_during_test, fallback_share, fee_warning, percent_of_ceiling, run_ceiling,
};
use super::format::{esc, megabytes, money};
use super::stages::stage_rows;
use super::RunOutput;
use crate::floor::{times, Comparison};
use crate::runner::RunData;
use std::fmt::Write as _;

/// The page's style sheet.
const STYLE: &str = "
body{font-family:sans-serif;margin:24px;color:#222}
svg.chart{display:block;width:100%;height:auto;margin:12px 0}
p.prov{color:#555;font-size:13px}
h1{font-size:20px} h2{font-size:16px;margin-top:28px}
table{border-collapse:collapse;font-size:13px} td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}
th{background:#f3f3f3} td.l,th.l{text-align:left}
.big{display:flex;flex-wrap:wrap;gap:12px} .big div{border:1px solid #ccc;border-radius:6px;padding:8px 14px;min-width:140px}
.big b{display:block;font-size:20px} .warn{background:#fff0f0;border:2px solid #d62728;padding:8px 12px;margin:8px 0;font-weight:bold}
.ok{background:#f0fff0;border:1px solid #2ca02c;padding:6px 12px;margin:8px 0}
pre{background:#f7f7f7;padding:10px;font-size:12px;overflow:auto}
";

/// Marks the page once every chart has rendered: as many `svg.chart` as the body's
/// `data-charts`, each laid out with a size and something drawn (a line, a bar, or its
/// "no data"). Sets `data-ok` to `all-charts` (and "OK " before the title) or
/// `missing`, `data-drawn` to the count, and `data-error` if anything threw.
pub const CHECK_SCRIPT: &str = "<script>(function(){var b=document.body,ok=false;try{var c=document.querySelectorAll('svg.chart'),n=+b.dataset.charts,drawn=0;c.forEach(function(s){var r=s.getBoundingClientRect();if(r.width>200&&r.height>80&&s.querySelector('polyline,rect.bar,text.nodata'))drawn++;});b.dataset.drawn=drawn;ok=c.length===n&&drawn===n;}catch(e){b.dataset.error=String(e);}b.dataset.ok=ok?'all-charts':'missing';if(ok)document.title='OK '+document.title;})();</script>";

/// `report.html`.
pub fn html(o: &RunOutput) -> String {
    let d = &o.data;
    let charts = charts(d);
    let mut h = String::new();
    head(&mut h, d, charts.len());
    provenance(&mut h, o);
    warnings(&mut h, o);
    headline(&mut h, d);
    if let Some(c) = &o.floor {
        floor_section(&mut h, c);
    }
    super::scaled::html_section(&mut h, o);
    h.push_str("<h2>Over time</h2><p>Dashed vertical lines: stage changes (D = default processor, F = fallback: delay, FAIL when failing; labels left out when there are many, see the per-stage table). Solid vertical line: end of the payments.</p>");
    for c in &charts {
        h.push_str(c);
    }
    stages_table(&mut h, d);
    processes_table(&mut h, o);
    checks_table(&mut h, d);
    let _ = write!(
        h,
        "<h2>Official result file</h2><pre>{}</pre><h2>Command</h2><pre>{}</pre>{CHECK_SCRIPT}</body></html>",
        esc(&d.results.to_json()),
        esc(&o.command)
    );
    h
}

/// The document's head, the title and what was run; `charts`: how many the page has.
fn head(h: &mut String, d: &RunData, charts: usize) {
    let title = format!(
        "payroute bench — {} — {}",
        d.plan.scenario.name(),
        d.backend_url
    );
    let _ = write!(
        h,
        r#"<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{}</title><style>{STYLE}</style></head><body data-charts="{charts}">"#,
        esc(&title)
    );
    let _ = write!(h, "<h1>{}</h1>", esc(&title));
    let seed = d
        .plan
        .seed
        .map(|s| format!(" (seed {s})"))
        .unwrap_or_default();
    let _ = write!(
        h,
        "<p>Scenario <b>{}</b>{seed}: {}.</p>",
        d.plan.scenario.name(),
        esc(d.plan.scenario.description())
    );
    let _ = write!(
        h,
        "<p>Test started {} · {:.0} s · {} VUs · teardown at {:.1} s · results comparable with the published <code>{}</code></p>",
        esc(&d.started_at),
        d.plan.duration.as_secs_f64(),
        d.plan.max_vus,
        d.teardown_at,
        d.plan.scenario.results_file()
    );
}

/// The commit and the machine the figures come from.
fn provenance(h: &mut String, o: &RunOutput) {
    let _ = write!(
        h,
        r#"<p class="prov">Built from {}</p>"#,
        esc(&o.provenance.to_string())
    );
}

/// The thresholds (caixa dois among them), whether the limits held, and exits of
/// started processes.
fn warnings(h: &mut String, o: &RunOutput) {
    let j = &o.judgement;
    for c in &j.crossed {
        let _ = write!(
            h,
            r#"<div class="warn">Threshold crossed: {}</div>"#,
            esc(&c.text)
        );
    }
    if j.crossed.is_empty() {
        let _ = write!(
            h,
            r#"<div class="ok">Thresholds passed: {}</div>"#,
            esc(&j.checked.join(", "))
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
}

/// The big figures, how the ceiling is computed, and the latency of the whole test.
fn headline(h: &mut String, d: &RunData) {
    let s = &d.score;
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
            "fallback share (books)",
            fallback_share(d).map_or("n/a".into(), |x| format!("{x:.1}%")),
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
        "<p>Ceiling: every successful payment through the default processor at the scenario's fee ({}%), at this run's own bonus ({}%), no fine: {}.</p>",
        crate::js::big_percent_string(d.plan.scenario.fees().0),
        crate::js::big_percent_string(s.bonus),
        money(run_ceiling(d))
    );
    if let Some(w) = fee_warning(d) {
        let _ = write!(h, r#"<div class="warn">{}</div>"#, esc(&w));
    }
    let _ = write!(
        h,
        "<p>Latency over the whole test (k6 percentiles over {} answered requests): p50 {:.3} ms · p90 {:.3} ms · p99 {:.3} ms · max {:.3} ms.</p>",
        d.p99_sample_size, d.overall_ms[0], d.overall_ms[1], d.overall_ms[2], d.overall_ms[3]
    );
}

/// This backend beside the floor (the same test against nginx answering at once).
fn floor_section(h: &mut String, c: &Comparison) {
    h.push_str("<h2>Against the floor</h2><p>The same test, in the same invocation, against nginx answering at once (<code>floor/</code>): what the machine, the load generator and HTTP cost by themselves. Ratios are this backend over the floor; the p99 ratio is taken on the unrounded p99s.</p>");
    h.push_str(r#"<table><tr><th class="l">figure</th><th>this backend</th><th>floor (nginx)</th><th>ratio</th></tr>"#);
    let opt = |x: Option<f64>, dp: usize| x.map_or("n/a".to_string(), |v| format!("{v:.dp$}"));
    let rows = [
        (
            "p99 ms (scored)",
            format!("{:.2}", c.backend.p99_ms),
            format!("{:.2}", c.floor.p99_ms),
            String::new(),
        ),
        (
            "p99 ms (unrounded)",
            format!("{:.4}", c.backend.p99_unrounded_ms),
            format!("{:.4}", c.floor.p99_unrounded_ms),
            times(c.p99_ratio),
        ),
        (
            "CPU s during the test",
            opt(c.backend.cpu_seconds, 3),
            opt(c.floor.cpu_seconds, 3),
            String::new(),
        ),
        (
            "CPU µs per accepted payment",
            opt(c.backend.cpu_us_per_payment, 1),
            opt(c.floor.cpu_us_per_payment, 1),
            times(c.cpu_ratio),
        ),
        (
            "payments accepted",
            c.backend.accepted.to_string(),
            c.floor.accepted.to_string(),
            String::new(),
        ),
    ];
    for (name, mine, floor, ratio) in rows {
        let _ = write!(
            h,
            r#"<tr><td class="l">{}</td><td>{mine}</td><td>{floor}</td><td>{ratio}</td></tr>"#,
            esc(name)
        );
    }
    h.push_str("</table>");
}

/// What each started process used, then the bench itself.
fn processes_table(h: &mut String, o: &RunOutput) {
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
                megabytes(p.peak_rss_bytes),
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
        o.data.bench_cpu_seconds
    );
}

/// Each consistency check: its window, the three summaries and what it counted.
fn checks_table(h: &mut String, d: &RunData) {
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
}

/// Each stage, then the drain after the payments: the settings, when the admin calls
/// were sent and their statuses, and how the run did (see [`super::stages`]).
fn stages_table(h: &mut String, d: &RunData) {
    h.push_str(r#"<h2>Per stage</h2><p>Each stage lasts until the next one or the end of the payments; the last row is the drain, from the end of the payments to the teardown. Payments by processor: what the processors' books gained during the row (sampled once a second, so within a second of its bounds).</p><table><tr><th>from (s)</th><th>to (s)</th><th class="l">default</th><th class="l">fallback</th><th>sent (s)</th><th>statuses</th><th>p99 ms</th><th>ok/s</th><th>failed POSTs</th><th>default</th><th>fallback</th><th>fallback share</th></tr>"#);
    let opt = |x: Option<f64>, dp: usize| x.map(|v| format!("{v:.dp$}")).unwrap_or_default();
    for r in stage_rows(d) {
        let setting = |delay: u32, failing: bool| {
            format!("delay {delay} ms{}", if failing { ", failing" } else { "" })
        };
        let (def, fb) = match r.stage {
            Some(g) => (
                setting(g.default_delay_ms, g.default_failure),
                setting(g.fallback_delay_ms, g.fallback_failure),
            ),
            None => ("(drain)".to_string(), String::new()),
        };
        let (sent, statuses) = match &r.run {
            Some(run) => (format!("{:.2}", run.t), format!("{:?}", run.statuses)),
            None => (String::new(), String::new()),
        };
        let _ = write!(
            h,
            r#"<tr><td>{:.2}</td><td>{:.2}</td><td class="l">{def}</td><td class="l">{fb}</td><td>{sent}</td><td>{statuses}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>"#,
            r.from,
            r.to,
            opt(r.p99_ms, 2),
            opt(r.ok_per_s, 1),
            r.failed,
            opt(r.default, 0),
            opt(r.fallback, 0),
            opt(r.fallback_share(), 1).to_string()
                + if r.fallback_share().is_some() {
                    "%"
                } else {
                    ""
                },
        );
    }
    h.push_str("</table>");
}
