//! The load ladder (`--ladder 1,3,10`): one scenario (the preview unless `--scenario`
//! says otherwise) at several multiples of its VUs, one run after the other, each with
//! fresh processes under the same limits, and one table of how the backend held up at
//! each rung: throughput, p99, failed POSTs, inconsistencies, lag, restarts, CPU per
//! accepted payment per role, peak memory per process, the load generator's own CPU,
//! and, with `--floor`, the floor's p99 and the ratio to it.
//!
//! Pure: the rungs are planned from the flags, and a row is computed from the figures
//! of the rung's runs (the median of each over `--runs`). The table's text, JSON and
//! page are drawn in `report` (`ladder_text`, `ladder_json`, `ladder_html`).

use crate::fdlimit::OpenFiles;
use crate::floor::per_payment_us;
use crate::report::{cpu_during_test, is_backend, median, RunOutput};
use crate::scenario::Scenario;
use serde::Serialize;
use std::collections::BTreeMap;

/// The largest multiple taken: 1000 x 603 VUs is already far past any machine.
pub const MAX_MULTIPLE: f64 = 1000.0;

/// One rung: a multiple of the scenario's VUs.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Rung {
    pub multiplier: f64,
    pub vus: u32,
}

impl Rung {
    /// `3x`, `0.5x`.
    pub fn name(&self) -> String {
        format!("{}x", self.multiplier)
    }

    /// Its directory under `--out`: `rung-3x`.
    pub fn dir(&self) -> String {
        format!("rung-{}", self.name())
    }
}

/// Refuses multiples that cannot make a rung: each must be a number above 0 and at
/// most [`MAX_MULTIPLE`].
pub fn check(multipliers: &[f64]) -> Result<(), String> {
    match multipliers
        .iter()
        .find(|m| !(m.is_finite() && **m > 0.0 && **m <= MAX_MULTIPLE))
    {
        Some(m) => Err(format!(
            "`{m}` is not a multiple of the VUs above 0 and at most {MAX_MULTIPLE} (as in 1,3,10)"
        )),
        None => Ok(()),
    }
}

/// The rungs of `multipliers` (in the order given) over `base_vus`: each the nearest
/// whole number of VUs, at least one.
pub fn rungs(base_vus: u32, multipliers: &[f64]) -> Vec<Rung> {
    multipliers
        .iter()
        .map(|&m| Rung {
            multiplier: m,
            vus: (f64::from(base_vus) * m)
                .round()
                .clamp(1.0, f64::from(u32::MAX)) as u32,
        })
        .collect()
}

/// The role of one of the backend's processes: its name without the instance number
/// (`api1` and `api2` are the `api`).
pub fn role(process: &str) -> &str {
    process.trim_end_matches(|c: char| c.is_ascii_digit())
}

/// Figures of a run that a rung's row needs beyond [`crate::report::figures`]: its
/// length, requests per second (mean and peak second), exits and restarts of its
/// processes, the bench's own CPU in cores, and the CPU per accepted payment of each
/// role of the backend (µs).
pub fn extra_figures(o: &RunOutput) -> Vec<(String, f64)> {
    let d = &o.data;
    let secs = if d.teardown_at > 0.0 {
        d.teardown_at
    } else {
        d.plan.duration.as_secs_f64()
    };
    let peak = d
        .seconds
        .iter()
        .map(|s| s.payments_ok + s.payments_failed + s.other)
        .max()
        .unwrap_or(0);
    let mut v = vec![
        ("test_seconds".to_string(), secs),
        ("requests_per_s".into(), d.requests as f64 / secs),
        ("peak_requests_per_s".into(), peak as f64),
        ("process_exits".into(), f64::from(o.event_counts.exits)),
        (
            "process_restarts".into(),
            f64::from(o.event_counts.restarts),
        ),
        ("bench_cpu_cores".into(), d.bench_cpu_seconds / secs),
    ];
    let mut roles: Vec<(&str, f64)> = Vec::new();
    for p in o.usage.iter().filter(|p| is_backend(&p.name)) {
        let (r, cpu) = (role(&p.name), cpu_during_test(o, p));
        match roles.iter_mut().find(|(n, _)| *n == r) {
            Some(x) => x.1 += cpu,
            None => roles.push((r, cpu)),
        }
    }
    for (r, cpu) in roles {
        if let Some(us) = per_payment_us(cpu, d.inputs.successes) {
            v.push((format!("cpu_us_per_payment[{r}]"), us));
        }
    }
    v
}

/// One rung of the table: medians over its runs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Row {
    pub rung: String,
    pub multiplier: f64,
    pub vus: u32,
    /// Runs the row is the median of.
    pub runs: usize,
    /// Every request of the test per second of the test, and the busiest second's.
    pub requests_per_s: Option<f64>,
    pub peak_requests_per_s: Option<f64>,
    /// The scored p99, ms.
    pub p99_ms: Option<f64>,
    pub failed_posts: Option<f64>,
    pub inconsistencies: Option<f64>,
    pub lag: Option<f64>,
    /// Exits and restarts of the processes the bench started (the launcher's events).
    pub process_exits: Option<f64>,
    pub process_restarts: Option<f64>,
    /// CPU µs per accepted payment, by role of the backend (`api`, `worker`, ...).
    pub cpu_us_per_payment: BTreeMap<String, f64>,
    /// Peak RSS (MB) of each of the backend's processes.
    pub peak_rss_mb: BTreeMap<String, f64>,
    /// The load generator's own CPU: seconds over the test, and cores on average.
    pub bench_cpu_seconds: Option<f64>,
    pub bench_cpu_cores: Option<f64>,
    /// With `--floor`: the floor's scored p99, and the backend's over it (unrounded).
    pub floor_p99_ms: Option<f64>,
    pub p99_ratio: Option<f64>,
    /// With `--floor`: the floor's CPU µs per payment, and the backend's over it.
    pub floor_cpu_us_per_payment: Option<f64>,
    pub cpu_ratio: Option<f64>,
    /// Whether the limits held, as the rung's (last) run says.
    pub limits: String,
}

/// The row of `rung` from the figures of its runs (each [`crate::report::figures`]
/// and [`extra_figures`]); `limits`: what its last run says of the limits.
pub fn row(rung: &Rung, runs: &[Vec<(String, f64)>], limits: String) -> Row {
    let med = |name: &str| {
        let values: Vec<f64> = runs
            .iter()
            .filter_map(|r| r.iter().find(|(n, _)| n == name).map(|(_, v)| *v))
            .collect();
        (!values.is_empty()).then(|| median(&values))
    };
    // Figures `PREFIX[KEY]`, by KEY, for the keys that `keep` selects.
    let keyed = |prefix: &str, keep: &dyn Fn(&str) -> bool| {
        let mut keys: Vec<&str> = runs
            .iter()
            .flatten()
            .filter_map(|(n, _)| n.strip_prefix(prefix)?.strip_suffix(']'))
            .filter(|k| keep(k))
            .collect();
        keys.sort_unstable();
        keys.dedup();
        keys.into_iter()
            .filter_map(|k| Some((k.to_string(), med(&format!("{prefix}{k}]"))?)))
            .collect::<BTreeMap<String, f64>>()
    };
    Row {
        rung: rung.name(),
        multiplier: rung.multiplier,
        vus: rung.vus,
        runs: runs.len(),
        requests_per_s: med("requests_per_s"),
        peak_requests_per_s: med("peak_requests_per_s"),
        p99_ms: med("p99_ms"),
        failed_posts: med("payments_failed"),
        inconsistencies: med("inconsistencies"),
        lag: med("lag"),
        process_exits: med("process_exits"),
        process_restarts: med("process_restarts"),
        cpu_us_per_payment: keyed("cpu_us_per_payment[", &|_| true),
        peak_rss_mb: keyed("peak_rss_mb[", &is_backend),
        bench_cpu_seconds: med("bench_cpu_seconds"),
        bench_cpu_cores: med("bench_cpu_cores"),
        floor_p99_ms: med("floor_p99_ms"),
        p99_ratio: med("p99_ratio"),
        floor_cpu_us_per_payment: med("floor_cpu_us_per_payment"),
        cpu_ratio: med("cpu_per_payment_ratio"),
        limits,
    }
}

/// The whole ladder, for `ladder.txt`, `ladder.json` and `ladder.html`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Ladder {
    pub scenario: Scenario,
    /// The VUs the multiples apply to (the scenario's, or `--max-requests`).
    pub base_vus: u32,
    pub duration_seconds: f64,
    /// The bench's open-files limit, against what the top rung needs.
    pub open_files: OpenFiles,
    /// Why there are no floor columns, without `--floor`.
    pub floor_note: Option<String>,
    pub rows: Vec<Row>,
}

/// Why the table has no floor columns when `--floor` was not given: `nginx_found`
/// says whether it could have.
pub fn no_floor_note(nginx_found: bool) -> String {
    if nginx_found {
        "floor not measured: add --floor to run each rung against nginx answering at once too"
            .into()
    } else {
        "floor not measured: --floor needs nginx, which is not installed (scripts/install-deps.sh installs it)".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rungs_multiply_the_scenarios_vus() {
        let r = rungs(550, &[1.0, 3.0, 10.0]);
        let vus: Vec<u32> = r.iter().map(|r| r.vus).collect();
        assert_eq!(vus, [550, 1_650, 5_500]);
        assert_eq!((r[2].name(), r[2].dir()), ("10x".into(), "rung-10x".into()));
        // --max-requests 10 --ladder 1,2; the order given; rounding; at least one VU.
        let vus: Vec<u32> = rungs(10, &[2.0, 1.0, 0.25, 0.01])
            .iter()
            .map(|r| r.vus)
            .collect();
        assert_eq!(vus, [20, 10, 3, 1]);
        assert_eq!(rungs(603, &[0.5])[0].name(), "0.5x");
        assert!(rungs(550, &[]).is_empty());
    }

    #[test]
    fn multiples_must_be_positive_and_bounded() {
        assert!(check(&[1.0, 3.0, 10.0]).is_ok());
        assert!(check(&[]).is_ok());
        for bad in [0.0, -1.0, f64::NAN, f64::INFINITY, 1001.0] {
            let e = check(&[1.0, bad]).unwrap_err();
            assert!(e.contains("is not a multiple"), "{e}");
        }
    }

    #[test]
    fn roles_drop_the_instance_number() {
        assert_eq!(role("api1"), "api");
        assert_eq!(role("api2"), "api");
        assert_eq!(role("worker"), "worker");
        assert_eq!(role("lb"), "lb");
    }

    fn run(p99: f64, lag: f64, api: f64, worker: f64, floor: Option<f64>) -> Vec<(String, f64)> {
        let mut v = vec![
            ("p99_ms".to_string(), p99),
            ("lag".into(), lag),
            ("payments_failed".into(), 0.0),
            ("inconsistencies".into(), 0.0),
            ("requests_per_s".into(), 280.0),
            ("process_restarts".into(), 0.0),
            ("cpu_us_per_payment[api]".into(), api),
            ("cpu_us_per_payment[worker]".into(), worker),
            ("peak_rss_mb[api1]".into(), 10.0),
            ("peak_rss_mb[worker]".into(), 31.0),
            ("peak_rss_mb[processor-default]".into(), 20.0),
            ("bench_cpu_seconds".into(), 1.2),
        ];
        if let Some(f) = floor {
            v.push(("floor_p99_ms".into(), f));
            v.push(("p99_ratio".into(), p99 / f));
        }
        v
    }

    #[test]
    fn a_row_is_the_median_of_its_runs() {
        let rung = Rung {
            multiplier: 3.0,
            vus: 1_650,
        };
        let runs = [
            run(0.9, 0.0, 60.0, 90.0, Some(0.3)),
            run(0.7, 4.0, 50.0, 80.0, Some(0.35)),
            run(1.1, 2.0, 70.0, 85.0, Some(0.25)),
        ];
        let r = row(&rung, &runs, "limits off".into());
        assert_eq!((r.rung.as_str(), r.vus, r.runs), ("3x", 1_650, 3));
        assert_eq!((r.p99_ms, r.lag), (Some(0.9), Some(2.0)));
        assert_eq!(r.cpu_us_per_payment["api"], 60.0);
        assert_eq!(r.cpu_us_per_payment["worker"], 85.0);
        // The backend's processes only: not the emulated processors.
        let names: Vec<&String> = r.peak_rss_mb.keys().collect();
        assert_eq!(names, ["api1", "worker"]);
        assert_eq!(r.floor_p99_ms, Some(0.3));
        assert_eq!(r.p99_ratio, Some(3.0));
        // Figures no run has: none.
        assert_eq!((r.peak_requests_per_s, r.cpu_ratio), (None, None));
        let without_floor = row(&rung, &[run(0.9, 0.0, 60.0, 90.0, None)], String::new());
        assert_eq!(
            (without_floor.floor_p99_ms, without_floor.p99_ratio),
            (None, None)
        );
    }
}
