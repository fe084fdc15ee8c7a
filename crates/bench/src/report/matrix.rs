//! The matrix of `--scenarios a,b,c`: one row per scenario (family, % of the ceiling,
//! lag, inconsistencies, fallback share, p99), the median of its runs when `--runs`
//! repeats them, as `matrix.txt` and `matrix.json`. How routing policies are compared:
//! the same families, the same lengths, one table.

use super::runs::median;
use crate::scenario::Scenario;
use serde::Serialize;

/// One scenario's row.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MatrixRow {
    pub scenario: Scenario,
    pub description: &'static str,
    /// Runs the row is the median of.
    pub runs: usize,
    pub percent_of_ceiling: f64,
    pub lag: f64,
    pub inconsistencies: f64,
    /// The fallback's share of what the processors booked, %.
    pub fallback_share_percent: f64,
    /// The scored p99, ms.
    pub p99_ms: f64,
}

/// The row of `scenario` from the figures of its runs (see [`super::figures`]).
pub fn matrix_row(scenario: Scenario, runs: &[Vec<(String, f64)>]) -> MatrixRow {
    let med = |name: &str| {
        let values: Vec<f64> = runs
            .iter()
            .filter_map(|r| r.iter().find(|(n, _)| n == name).map(|(_, v)| *v))
            .collect();
        median(&values)
    };
    MatrixRow {
        scenario,
        description: scenario.description(),
        runs: runs.len(),
        percent_of_ceiling: med("percent_of_ceiling"),
        lag: med("lag"),
        inconsistencies: med("inconsistencies"),
        fallback_share_percent: med("fallback_share_percent"),
        p99_ms: med("p99_ms"),
    }
}

/// `matrix.txt`: a header and a line per scenario.
pub fn matrix_text(rows: &[MatrixRow]) -> String {
    let mut t = format!(
        "{:<14} {:>12} {:>8} {:>15} {:>14} {:>8} {:>5}\n",
        "scenario", "% of ceiling", "lag", "inconsistencies", "fallback share", "p99 ms", "runs"
    );
    for r in rows {
        t.push_str(&format!(
            "{:<14} {:>11.1}% {:>8} {:>15} {:>13.1}% {:>8.2} {:>5}\n",
            r.scenario.name(),
            r.percent_of_ceiling,
            r.lag,
            r.inconsistencies,
            r.fallback_share_percent,
            r.p99_ms,
            r.runs
        ));
    }
    t
}

/// `matrix.json`: `{"scenarios": [row, ...]}`.
pub fn matrix_json(rows: &[MatrixRow]) -> String {
    serde_json::to_string_pretty(&serde_json::json!({ "scenarios": rows })).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(pct: f64, lag: f64, share: f64) -> Vec<(String, f64)> {
        vec![
            ("total_liquido".into(), 1.0),
            ("percent_of_ceiling".into(), pct),
            ("p99_ms".into(), 0.7),
            ("inconsistencies".into(), 0.0),
            ("lag".into(), lag),
            ("fallback_share_percent".into(), share),
        ]
    }

    #[test]
    fn a_row_per_scenario_the_median_of_its_runs() {
        let down = matrix_row(
            Scenario::DefaultDown,
            &[
                run(90.0, 3.0, 40.0),
                run(95.0, 0.0, 35.0),
                run(80.0, 9.0, 50.0),
            ],
        );
        assert_eq!(down.runs, 3);
        assert_eq!(down.percent_of_ceiling, 90.0);
        assert_eq!((down.lag, down.fallback_share_percent), (3.0, 40.0));
        let flap = matrix_row(Scenario::Flapping, &[run(97.25, 0.0, 12.5)]);
        let text = matrix_text(&[down.clone(), flap.clone()]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[0].starts_with("scenario") && lines[0].contains("fallback share"));
        assert!(lines[1].starts_with("default-down") && lines[1].contains("90.0%"));
        assert!(lines[2].starts_with("flapping") && lines[2].contains("97.2%"));
        let v: serde_json::Value = serde_json::from_str(&matrix_json(&[down, flap])).unwrap();
        assert_eq!(v["scenarios"][1]["scenario"], "flapping");
        assert_eq!(v["scenarios"][0]["percent_of_ceiling"], 90.0);
    }
}
