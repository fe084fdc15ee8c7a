//! The short human summary printed at the end of a run: the score and what it is made
//! of, each process's cost, the end audit, the limits and anything that went wrong.

use super::figures::{
    backend_peak_cores, backend_peak_rss_mb, cpu_during_test, end_audit_difference, fallback_share,
    fee_warning, percent_of_ceiling, run_ceiling,
};
use super::format::{megabytes, money};
use super::RunOutput;
use crate::runner::RunData;
use std::fmt::Write as _;

/// The short human summary printed at the end of a run.
pub fn summary_text(o: &RunOutput) -> String {
    let mut t = String::new();
    score_lines(&mut t, &o.data);
    threshold_lines(&mut t, o);
    process_lines(&mut t, o);
    super::scaled::scenario_lines(&mut t, o);
    if let Some(c) = &o.floor {
        let _ = writeln!(t, "  against the floor       {}", c.describe());
    }
    end_audit_line(&mut t, o);
    if let Some(peak) = backend_peak_cores(o) {
        let _ = writeln!(
            t,
            "  backend (all but the processors): peak {peak:.3} CPU cores over 5 s, peak RSS summed {:.1} MB",
            backend_peak_rss_mb(o)
        );
    }
    let warn = if o.limits.is_warning() { "!!! " } else { "" };
    let _ = writeln!(t, "  {warn}{}", o.limits.describe());
    for e in &o.events {
        let _ = writeln!(t, "  !!! {}", e.lines().next().unwrap_or(""));
    }
    t
}

/// What was run, then the score and its parts.
fn score_lines(t: &mut String, d: &RunData) {
    let s = &d.score;
    let _ = writeln!(
        t,
        "payroute bench: {}{} ({:.0} s, {} VUs) against {}",
        d.plan.scenario.name(),
        d.plan
            .seed
            .map(|s| format!(" --seed {s}"))
            .unwrap_or_default(),
        d.plan.duration.as_secs_f64(),
        d.plan.max_vus,
        d.backend_url
    );
    let _ = writeln!(
        t,
        "  profit (total_liquido)  {:>14}   {:.1}% of the ceiling ({}: all default, at this run's bonus, no fine)",
        money(s.total_liquido),
        percent_of_ceiling(d),
        money(run_ceiling(d))
    );
    if let Some(w) = fee_warning(d) {
        let _ = writeln!(t, "  !!! {w}");
    }
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
    if let Some(share) = fallback_share(d) {
        let _ = writeln!(
            t,
            "  fallback share          {share:>13.1}%   of what the processors booked (their books, teardown window)"
        );
    }
    let _ = writeln!(
        t,
        "  inconsistencies         {:>14}   fine {}%  ({} checks)",
        d.inputs.inconsistencies,
        s.fine * 100.0,
        d.checks.len()
    );
}

/// The thresholds: each one crossed, or that all checked passed.
fn threshold_lines(t: &mut String, o: &RunOutput) {
    let j = &o.judgement;
    if j.crossed.is_empty() {
        let _ = writeln!(t, "  thresholds passed       {}", j.checked.join(", "));
    }
    for c in &j.crossed {
        let _ = writeln!(t, "  !!! THRESHOLD CROSSED: {}", c.text);
    }
}

/// One line per started process, then the bench's own CPU.
fn process_lines(t: &mut String, o: &RunOutput) {
    for p in &o.usage {
        let _ = writeln!(
            t,
            "  {:<22}  cpu {:>6.1} s during the test ({:.1} s total), peak RSS {:>6.1} MB, throttled {}",
            p.name,
            cpu_during_test(o, p),
            p.cpu_seconds,
            megabytes(p.peak_rss_bytes),
            p.throttled_seconds.map(|x| format!("{x:.2} s")).unwrap_or_else(|| "n/a".into())
        );
    }
    let _ = writeln!(
        t,
        "  {:<22}  cpu {:>6.1} s during the test (the load generator itself)",
        "bench", o.data.bench_cpu_seconds
    );
}

/// Whether the backend's summary agreed with the processors' books at the end.
fn end_audit_line(t: &mut String, o: &RunOutput) {
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
}
