//! The floor: the same test, in the same invocation, against a backend that does
//! nothing but answer (nginx, [`crate::topology::nginx`]), and the backend's figures as
//! ratios to it. On a shared machine a p99 of 0.6 ms says little by itself; "3x what
//! answering HTTP at once costs here, with this load generator" says how much of it is
//! the backend's own.
//!
//! Two figures per side, and their ratios (`backend / floor`):
//! - the **p99** of the official definition (k6's p99 of every request answered below
//!   400); the ratio is taken on the unrounded p99s, since the floor's, rounded to
//!   2 decimals, would be too coarse a divisor;
//! - the **CPU per accepted payment**: CPU seconds of the backend's processes during the
//!   test (payroute: the api instances, the worker and a load balancer process if any;
//!   the floor: nginx's master and worker) divided by the POSTs answered
//!   200/201/202/204. The backend's other requests (the checker's summaries, setup and
//!   teardown: a few dozen) are left out on both sides.
//!
//! Pure: the figures come from finished runs ([`RunOutput`]).

use crate::report::{backend_cpu_during_test, RunOutput};
use serde::Serialize;

/// One side of the comparison: the backend under test, or the floor.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Side {
    /// The scored p99 (k6's, rounded to 2 decimals as the score rounds it), ms.
    pub p99_ms: f64,
    /// k6's p99 before rounding, ms.
    pub p99_unrounded_ms: f64,
    /// POSTs answered 200/201/202/204.
    pub accepted: u64,
    /// CPU seconds of its processes during the test; `None` when the bench did not
    /// start them (`--backend`).
    pub cpu_seconds: Option<f64>,
    /// [`per_payment_us`] of those.
    pub cpu_us_per_payment: Option<f64>,
}

impl Side {
    /// The figures of the finished run `o`.
    pub fn of(o: &RunOutput) -> Side {
        let d = &o.data;
        let accepted = d.inputs.successes;
        let cpu_seconds = backend_cpu_during_test(o);
        Side {
            p99_ms: d.score.p99,
            p99_unrounded_ms: d.overall_ms[2],
            accepted,
            cpu_seconds,
            cpu_us_per_payment: cpu_seconds.and_then(|c| per_payment_us(c, accepted)),
        }
    }
}

/// The backend against the floor.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Comparison {
    pub backend: Side,
    pub floor: Side,
    /// `backend p99 / floor p99`, unrounded.
    pub p99_ratio: Option<f64>,
    /// `backend CPU per accepted payment / floor's`.
    pub cpu_ratio: Option<f64>,
}

impl Comparison {
    pub fn new(backend: Side, floor: Side) -> Comparison {
        let cpu_ratio = match (backend.cpu_us_per_payment, floor.cpu_us_per_payment) {
            (Some(b), Some(f)) => ratio(b, f),
            _ => None,
        };
        Comparison {
            backend,
            floor,
            p99_ratio: ratio(backend.p99_unrounded_ms, floor.p99_unrounded_ms),
            cpu_ratio,
        }
    }

    /// Its figures by name, for `bench.json` and `--runs`.
    pub fn figures(&self) -> Vec<(String, f64)> {
        let mut v = vec![
            ("floor_p99_ms".to_string(), self.floor.p99_ms),
            ("floor_p99_unrounded_ms".into(), self.floor.p99_unrounded_ms),
        ];
        let mut opt = |name: &str, x: Option<f64>| {
            if let Some(x) = x {
                v.push((name.to_string(), x));
            }
        };
        opt("p99_ratio", self.p99_ratio);
        opt("floor_cpu_us_per_payment", self.floor.cpu_us_per_payment);
        opt(
            "backend_cpu_us_per_payment",
            self.backend.cpu_us_per_payment,
        );
        opt("cpu_per_payment_ratio", self.cpu_ratio);
        v
    }

    /// One line for the summary.
    pub fn describe(&self) -> String {
        format!(
            "p99 {:.2} ms vs the floor's {:.2} ms: {}; CPU per accepted payment {} vs the floor's {}: {}",
            self.backend.p99_ms,
            self.floor.p99_ms,
            times(self.p99_ratio),
            micros(self.backend.cpu_us_per_payment),
            micros(self.floor.cpu_us_per_payment),
            times(self.cpu_ratio)
        )
    }
}

/// `value / floor`; `None` when the floor is not a positive number (a ratio to zero
/// says nothing).
pub fn ratio(value: f64, floor: f64) -> Option<f64> {
    (value.is_finite() && floor.is_finite() && floor > 0.0).then(|| value / floor)
}

/// CPU microseconds per accepted payment; `None` without any.
pub fn per_payment_us(cpu_seconds: f64, accepted: u64) -> Option<f64> {
    (accepted > 0).then(|| cpu_seconds * 1e6 / accepted as f64)
}

/// A ratio as `3.02x`, or `n/a`.
pub fn times(r: Option<f64>) -> String {
    r.map_or("n/a".into(), |r| format!("{r:.2}x"))
}

/// Microseconds as `45.1 µs`, or `n/a`.
pub fn micros(us: Option<f64>) -> String {
    us.map_or("n/a".into(), |u| format!("{u:.1} µs"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn side(p99: f64, accepted: u64, cpu: Option<f64>) -> Side {
        Side {
            p99_ms: (p99 * 100.0_f64).round() / 100.0,
            p99_unrounded_ms: p99,
            accepted,
            cpu_seconds: cpu,
            cpu_us_per_payment: cpu.and_then(|c| per_payment_us(c, accepted)),
        }
    }

    #[test]
    fn ratios_are_backend_over_floor() {
        assert_eq!(ratio(0.63, 0.21), Some(0.63 / 0.21));
        assert_eq!(ratio(1.0, 0.0), None);
        assert_eq!(ratio(1.0, f64::NAN), None);
        assert_eq!(per_payment_us(1.675, 16_750), Some(100.0));
        assert_eq!(per_payment_us(1.0, 0), None);
        // payroute: 0.634 ms, 3.35 CPU s for 16,750 payments (200 µs each); nginx:
        // 0.2113 ms, 0.1675 s (10 µs each).
        let c = Comparison::new(
            side(0.634, 16_750, Some(3.35)),
            side(0.2113, 16_750, Some(0.1675)),
        );
        // From the unrounded p99s: 0.634 / 0.2113, not 0.63 / 0.21.
        assert!((c.p99_ratio.unwrap() - 3.000_473).abs() < 1e-6, "{c:?}");
        assert!((c.cpu_ratio.unwrap() - 20.0).abs() < 1e-9, "{c:?}");
        let text = c.describe();
        assert_eq!(
            text,
            "p99 0.63 ms vs the floor's 0.21 ms: 3.00x; CPU per accepted payment 200.0 µs vs the floor's 10.0 µs: 20.00x"
        );
        let names: Vec<String> = c.figures().into_iter().map(|(n, _)| n).collect();
        assert_eq!(
            names,
            [
                "floor_p99_ms",
                "floor_p99_unrounded_ms",
                "p99_ratio",
                "floor_cpu_us_per_payment",
                "backend_cpu_us_per_payment",
                "cpu_per_payment_ratio"
            ]
        );
    }

    #[test]
    fn a_backend_the_bench_did_not_start_has_no_cpu_ratio() {
        let c = Comparison::new(side(0.9, 100, None), side(0.3, 100, Some(0.001)));
        assert_eq!(c.cpu_ratio, None);
        assert!(c.p99_ratio.is_some());
        assert!(c
            .describe()
            .ends_with("CPU per accepted payment n/a vs the floor's 10.0 µs: n/a"));
        assert_eq!(c.figures().len(), 4);
    }
}
