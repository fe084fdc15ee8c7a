//! The summary of `--runs`: the min, median and max of every figure across the runs,
//! as a text table and a JSON document.

use super::figures::names_in_order;

/// Median of a non-empty sample (mean of the two middle values for an even count).
pub fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    if n == 0 {
        0.0
    } else if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    }
}

/// min / median / max of every figure across runs: a text table and a JSON document.
pub fn aggregate(runs: &[Vec<(String, f64)>]) -> (String, String) {
    let names = names_in_order(runs.iter().map(Vec::as_slice));
    let mut text = format!(
        "{:<42} {:>14} {:>14} {:>14}\n",
        "figure", "min", "median", "max"
    );
    let mut json = serde_json::Map::new();
    for n in names {
        let vals: Vec<f64> = runs
            .iter()
            .filter_map(|r| r.iter().find(|(m, _)| *m == n).map(|(_, v)| *v))
            .collect();
        let min = vals.iter().copied().fold(f64::INFINITY, f64::min);
        let max = vals.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let med = median(&vals);
        text.push_str(&format!("{n:<42} {min:>14.3} {med:>14.3} {max:>14.3}\n"));
        json.insert(
            n,
            serde_json::json!({"min": min, "median": med, "max": max, "values": vals}),
        );
    }
    let json = serde_json::json!({"runs": runs.len(), "figures": json});
    (
        text,
        serde_json::to_string_pretty(&json).unwrap_or_default(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_and_aggregates() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        let runs = vec![
            vec![("score".to_string(), 10.0), ("p99".to_string(), 1.0)],
            vec![("score".to_string(), 30.0), ("p99".to_string(), 3.0)],
            vec![("score".to_string(), 20.0)],
        ];
        let (text, json) = aggregate(&runs);
        assert!(text.contains("score"));
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v["figures"]["score"]["median"], 20.0);
        assert_eq!(v["figures"]["p99"]["max"], 3.0);
        assert_eq!(v["figures"]["p99"]["median"], 2.0);
    }
}
