//! Thresholds, as k6 has them: what a finished run must meet for the bench to exit 0.
//! Each is a flag (`--max-p99-ms`, `--max-inconsistencies`, `--max-failed`,
//! `--max-lag`, `--require-limits`); caixa dois (a negative lag, which disqualifies in
//! the challenge) always fails. A run that crosses any ends the bench with exit code
//! 99 ([`crate::exit::THRESHOLDS_CROSSED`]), after every output was written; the
//! summary, the report and `bench.json` say which threshold and by how much.
//!
//! Pure: [`judge`] decides from a run's figures, and is unit-tested.

use crate::runner::RunData;
use crate::topology::LimitsNote;
use serde::Serialize;

/// The thresholds a run must meet (none by default, but caixa dois).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Thresholds {
    /// The scored p99 (k6's p99, rounded to 2 decimals as the score rounds it), ms.
    pub max_p99_ms: Option<f64>,
    /// The checker's inconsistency count.
    pub max_inconsistencies: Option<f64>,
    /// POSTs that did not get 200/201/202/204 (`qtd_falha`).
    pub max_failed: Option<u64>,
    /// Successful POSTs not counted at the teardown (the score's lag).
    pub max_lag: Option<f64>,
    /// The challenge's limits (1.5 CPU, 350 MB) were enforced on what the bench started.
    pub require_limits: bool,
}

/// The figures thresholds judge a run by.
#[derive(Debug, Clone, PartialEq)]
pub struct Measured {
    pub p99_ms: f64,
    pub inconsistencies: f64,
    pub failed: u64,
    pub lag: f64,
    pub limits: LimitsNote,
}

impl Measured {
    /// The figures of the run `d`, whose limits were `limits`.
    pub fn of(d: &RunData, limits: &LimitsNote) -> Measured {
        Measured {
            p99_ms: d.score.p99,
            inconsistencies: d.inputs.inconsistencies,
            failed: d.inputs.failures,
            lag: d.score.lag,
            limits: limits.clone(),
        }
    }
}

/// A threshold a run crossed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Crossed {
    /// The flag (`--max-p99-ms`), or `caixa dois`.
    pub threshold: String,
    /// Its limit, when it has one.
    pub limit: Option<f64>,
    /// The run's figure.
    pub actual: f64,
    /// One sentence: which, the figure, the limit and by how much.
    pub text: String,
}

/// What the thresholds said of a run: the ones checked, and the ones crossed.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Judgement {
    /// Every threshold checked, as flags (`--max-lag 10`), caixa dois first.
    pub checked: Vec<String>,
    pub crossed: Vec<Crossed>,
}

/// A number as the flags take it: its shortest form, to a millionth (so that a
/// difference such as `1.52 - 1.25` prints `0.27`, and a limit of `0.0001` stays one).
fn num(x: f64) -> String {
    let r = (x * 1e6).round() / 1e6;
    format!("{}", if r == 0.0 { 0.0 } else { r })
}

/// `actual` against an upper `limit`: crossed when above it.
fn above(flag: &str, what: &str, unit: &str, limit: f64, actual: f64) -> Option<Crossed> {
    (actual > limit).then(|| Crossed {
        threshold: flag.to_string(),
        limit: Some(limit),
        actual,
        text: format!(
            "{what} {}{unit} is above {flag} {} by {}{unit}",
            num(actual),
            num(limit),
            num(actual - limit)
        ),
    })
}

impl Thresholds {
    /// The thresholds set, as flags; caixa dois first (always checked).
    pub fn checked(&self) -> Vec<String> {
        let mut v = vec!["no caixa dois (lag >= 0)".to_string()];
        let mut flag = |name: &str, x: Option<f64>| {
            if let Some(x) = x {
                v.push(format!("{name} {}", num(x)));
            }
        };
        flag("--max-p99-ms", self.max_p99_ms);
        flag("--max-inconsistencies", self.max_inconsistencies);
        flag("--max-failed", self.max_failed.map(|n| n as f64));
        flag("--max-lag", self.max_lag);
        if self.require_limits {
            v.push("--require-limits".into());
        }
        v
    }
}

/// The thresholds `t` that the run with figures `m` crossed, in the order of
/// [`Thresholds::checked`]; empty when it passed.
pub fn judge(t: &Thresholds, m: &Measured) -> Vec<Crossed> {
    let mut crossed = Vec::new();
    if m.lag < 0.0 {
        crossed.push(Crossed {
            threshold: "caixa dois".into(),
            limit: Some(0.0),
            actual: m.lag,
            text: format!(
                "caixa dois: lag {} (the backend counted {} more payments than were accepted; disqualified in the challenge)",
                num(m.lag),
                num(-m.lag)
            ),
        });
    }
    let checks = [
        t.max_p99_ms
            .and_then(|l| above("--max-p99-ms", "p99", " ms", l, m.p99_ms)),
        t.max_inconsistencies.and_then(|l| {
            above(
                "--max-inconsistencies",
                "inconsistencies",
                "",
                l,
                m.inconsistencies,
            )
        }),
        t.max_failed.and_then(|l| {
            above(
                "--max-failed",
                "failed POSTs",
                "",
                l as f64,
                m.failed as f64,
            )
        }),
        t.max_lag
            .and_then(|l| above("--max-lag", "lag", "", l, m.lag)),
    ];
    crossed.extend(checks.into_iter().flatten());
    if t.require_limits && !matches!(m.limits, LimitsNote::Enforced(_)) {
        crossed.push(Crossed {
            threshold: "--require-limits".into(),
            limit: None,
            actual: 0.0,
            text: format!("--require-limits: {}", m.limits.describe()),
        });
    }
    crossed
}

/// What `t` says of the run `d` whose limits were `limits`.
pub fn judgement(t: &Thresholds, d: &RunData, limits: &LimitsNote) -> Judgement {
    Judgement {
        checked: t.checked(),
        crossed: judge(t, &Measured::of(d, limits)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn good() -> Measured {
        Measured {
            p99_ms: 1.25,
            inconsistencies: 0.0,
            failed: 0,
            lag: 0.0,
            limits: LimitsNote::Enforced("cgroup v2".into()),
        }
    }

    fn all_set() -> Thresholds {
        Thresholds {
            max_p99_ms: Some(1.25),
            max_inconsistencies: Some(0.0),
            max_failed: Some(0),
            max_lag: Some(10.0),
            require_limits: true,
        }
    }

    #[test]
    fn a_run_within_every_threshold_passes() {
        // Exactly at each limit is within it.
        assert!(judge(&all_set(), &good()).is_empty());
        let at_the_lag_limit = Measured {
            lag: 10.0,
            ..good()
        };
        assert!(judge(&all_set(), &at_the_lag_limit).is_empty());
        // Nothing set: anything but caixa dois passes.
        let bad = Measured {
            p99_ms: 900.0,
            inconsistencies: 50.0,
            failed: 10_000,
            lag: 5_000.0,
            limits: LimitsNote::Off,
        };
        assert!(judge(&Thresholds::default(), &bad).is_empty());
    }

    #[test]
    fn each_threshold_says_by_how_much() {
        let m = Measured {
            p99_ms: 1.52,
            inconsistencies: 3.0,
            failed: 12,
            lag: 40.0,
            limits: LimitsNote::NotEnforced("cgroups not writable".into()),
        };
        let c = judge(&all_set(), &m);
        let texts: Vec<&str> = c.iter().map(|c| c.text.as_str()).collect();
        assert_eq!(
            texts,
            [
                "p99 1.52 ms is above --max-p99-ms 1.25 by 0.27 ms",
                "inconsistencies 3 is above --max-inconsistencies 0 by 3",
                "failed POSTs 12 is above --max-failed 0 by 12",
                "lag 40 is above --max-lag 10 by 30",
                "--require-limits: CHALLENGE LIMITS NOT ENFORCED (cgroups not writable): figures are NOT comparable with the challenge's",
            ]
        );
        assert_eq!(c[0].limit, Some(1.25));
        assert_eq!(c[0].actual, 1.52);
    }

    #[test]
    fn numbers_print_as_given() {
        assert_eq!(num(0.0001), "0.0001");
        assert_eq!(num(1.52 - 1.25), "0.27");
        assert_eq!(num(1000.0), "1000");
        assert_eq!(num(-5.0), "-5");
        assert_eq!(num(-0.0), "0");
    }

    #[test]
    fn caixa_dois_always_fails() {
        let m = Measured {
            lag: -5.0,
            ..good()
        };
        let c = judge(&Thresholds::default(), &m);
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].threshold, "caixa dois");
        assert!(c[0]
            .text
            .starts_with("caixa dois: lag -5 (the backend counted 5 more"));
    }

    #[test]
    fn require_limits_needs_them_enforced() {
        let t = Thresholds {
            require_limits: true,
            ..Thresholds::default()
        };
        for limits in [
            LimitsNote::Off,
            LimitsNote::NotApplicable,
            LimitsNote::NotEnforced("x".into()),
        ] {
            let m = Measured { limits, ..good() };
            assert_eq!(judge(&t, &m).len(), 1);
        }
        assert!(judge(&t, &good()).is_empty());
        assert_eq!(
            t.checked(),
            ["no caixa dois (lag >= 0)", "--require-limits"]
        );
    }

    #[test]
    fn the_exit_code_follows_the_judgement() {
        use crate::exit::Ending;
        let texts = |c: Vec<Crossed>| c.into_iter().map(|c| c.text).collect();
        let crossed = judge(
            &all_set(),
            &Measured {
                failed: 1,
                ..good()
            },
        );
        assert_eq!(Ending::of_finished(texts(crossed)).code(), 99);
        let passed = judge(&all_set(), &good());
        assert_eq!(Ending::of_finished(texts(passed)).code(), 0);
    }
}
