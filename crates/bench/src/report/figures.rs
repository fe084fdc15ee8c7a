//! Figures derived from a run: profit as a share of the ceiling, CPU during the test,
//! the backend's peak CPU and summed peak RSS, the end audit, and the flat list of
//! every figure that `--runs` aggregates and `bench.json` holds.

use super::format::megabytes;
use super::RunOutput;
use crate::runner::{RunData, UsageSample};
use crate::score::ceiling;
use crate::topology::ProcUsage;

/// The run's ceiling (see [`ceiling`]): at its own bonus.
pub fn run_ceiling(d: &RunData) -> f64 {
    ceiling(d.plan.scenario, d.inputs.successes, d.score.bonus)
}

/// Profit as a percentage of the run's ceiling (see [`ceiling`]).
pub fn percent_of_ceiling(d: &RunData) -> f64 {
    let c = run_ceiling(d);
    if c > 0.0 {
        d.score.total_liquido / c * 100.0
    } else {
        0.0
    }
}

/// The processors' `feePerTransaction` (default, fallback) as the teardown read them,
/// when they differ from the scenario's fees, which the ceiling assumes: the share of
/// the ceiling then does not compare with other runs. `None` when they agree.
pub fn fee_mismatch(d: &RunData) -> Option<(f64, f64)> {
    let given = (
        d.inputs.default.fee_per_transaction,
        d.inputs.fallback.fee_per_transaction,
    );
    let (sd, sf) = d.plan.scenario.fees();
    let same = |a: f64, b: f64| (a - b).abs() < 1e-9;
    (!(same(given.0, sd) && same(given.1, sf))).then_some(given)
}

/// The warning [`fee_mismatch`] calls for, as a sentence.
pub(super) fn fee_warning(d: &RunData) -> Option<String> {
    let (gd, gf) = fee_mismatch(d)?;
    let (sd, sf) = d.plan.scenario.fees();
    let pct = crate::js::big_percent_string;
    Some(format!(
        "the processors report fees of {}% / {}% (feePerTransaction at teardown) but the scenario's are {}% / {}%: the ceiling assumes the scenario's, so this % of the ceiling does not compare with other runs",
        pct(gd), pct(gf), pct(sd), pct(sf)
    ))
}

/// The fallback's share of the payments the processors booked over the teardown
/// window, % (their own books, so for any backend); `None` when they booked none.
pub fn fallback_share(d: &RunData) -> Option<f64> {
    let (def, fb) = (
        d.inputs.default.total_requests,
        d.inputs.fallback.total_requests,
    );
    (def + fb > 0.0).then(|| fb / (def + fb) * 100.0)
}

/// CPU seconds a process used during the test (from the test start to its stop).
pub fn cpu_during_test(o: &RunOutput, p: &ProcUsage) -> f64 {
    let before = o
        .data
        .usage_at_start
        .iter()
        .find(|u| u.name == p.name)
        .map(|u| u.cpu_seconds)
        .unwrap_or(0.0);
    (p.cpu_seconds - before).max(0.0)
}

/// CPU seconds the backend's own processes (everything the bench started but the
/// emulated processors) used during the test; `None` when it started none of them.
pub fn backend_cpu_during_test(o: &RunOutput) -> Option<f64> {
    let mine: Vec<&ProcUsage> = o.usage.iter().filter(|p| is_backend(&p.name)).collect();
    (!mine.is_empty()).then(|| mine.iter().map(|p| cpu_during_test(o, p)).sum())
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

/// Whether a process the bench started belongs to the backend: everything but the
/// emulated processors.
pub fn is_backend(name: &str) -> bool {
    !name.starts_with("processor-")
}

/// Peak CPU, in cores, of the backend's own processes together (everything the bench
/// started except the emulated processors), over any `PEAK_WINDOW_SECS` window of the
/// test; `None` when the bench did not start the backend.
pub fn backend_peak_cores(o: &RunOutput) -> Option<f64> {
    peak_cores(&o.data.usage_samples, PEAK_WINDOW_SECS, is_backend)
}

/// Peak RSS of the backend's own processes, summed, in MB.
pub(super) fn backend_peak_rss_mb(o: &RunOutput) -> f64 {
    let rss: u64 = o
        .usage
        .iter()
        .filter(|p| is_backend(&p.name))
        .map(|p| p.peak_rss_bytes)
        .sum();
    megabytes(rss)
}

/// Largest CPU use, in cores, of the processes `include` selects, over any window of
/// `window` seconds (at least 80% covered by samples); `None` if none is selected.
pub fn peak_cores(
    samples: &[UsageSample],
    window: f64,
    include: impl Fn(&str) -> bool,
) -> Option<f64> {
    let cpu = |u: &UsageSample| -> f64 {
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
    let mut v = run_figures(&o.data);
    if let Some(diff) = end_audit_difference(o) {
        v.push(("end_audit_request_difference".into(), diff));
    }
    if let Some(peak) = backend_peak_cores(o) {
        v.push(("backend_peak_cpu_cores_5s".into(), peak));
        v.push(("backend_peak_rss_mb_sum".into(), backend_peak_rss_mb(o)));
    }
    for p in &o.usage {
        v.extend(process_figures(o, p));
    }
    if let Some(c) = &o.floor {
        v.extend(c.figures());
    }
    v.extend(super::scaled::scenario_figures(o));
    v
}

/// The names in lists of named figures, each once, in the order they first appear.
pub(super) fn names_in_order<'a>(
    lists: impl IntoIterator<Item = &'a [(String, f64)]>,
) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for list in lists {
        for (n, _) in list {
            if !names.contains(n) {
                names.push(n.clone());
            }
        }
    }
    names
}

/// The score, its inputs and the latencies.
fn run_figures(d: &RunData) -> Vec<(String, f64)> {
    let s = &d.score;
    vec![
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
        (
            "fallback_share_percent".into(),
            fallback_share(d).unwrap_or(0.0),
        ),
        ("requests".into(), d.requests as f64),
        ("bench_cpu_seconds".into(), d.bench_cpu_seconds),
    ]
}

/// CPU, peak RSS and throttling of one started process.
fn process_figures(o: &RunOutput, p: &ProcUsage) -> Vec<(String, f64)> {
    let mut v = vec![
        (
            format!("cpu_seconds_test[{}]", p.name),
            cpu_during_test(o, p),
        ),
        (format!("cpu_seconds_total[{}]", p.name), p.cpu_seconds),
        (
            format!("peak_rss_mb[{}]", p.name),
            megabytes(p.peak_rss_bytes),
        ),
    ];
    if let Some(t) = p.throttled_seconds {
        v.push((format!("throttled_seconds[{}]", p.name), t));
    }
    v
}

#[cfg(test)]
mod tests {
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
                    ..UsageSample::default()
                }
            })
            .collect();
        let peak = peak_cores(&samples, 5.0, |n| !n.starts_with("processor-")).unwrap();
        assert!((peak - 0.5).abs() < 1e-9, "{peak}");
        assert_eq!(peak_cores(&samples, 5.0, |n| n == "nobody"), None);
    }
}
