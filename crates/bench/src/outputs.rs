//! The files a run leaves in its directory: the official result file, `report.html`,
//! `bench.json` (every figure, check, stage, the time series and the provenance, for
//! scripts; scaled out, the ledger's counters and the kill's polls) and
//! `timeseries.csv`.

use crate::report::{self, RunOutput};
use anyhow::Context;
use std::path::Path;

/// Writes every file of the run `o` into `dir`.
pub fn write(o: &RunOutput, dir: &Path) -> anyhow::Result<()> {
    let d = &o.data;
    let put = |name: &str, text: String| {
        let path = dir.join(name);
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))
    };
    put(d.plan.scenario.results_file(), d.results.to_json())?;
    put("report.html", report::html(o))?;
    let series = report::timeseries(d);
    put("timeseries.csv", series.csv())?;
    put(
        "bench.json",
        serde_json::to_string_pretty(&bench_json(o, &series))?,
    )?;
    Ok(())
}

/// `bench.json`.
pub fn bench_json(o: &RunOutput, series: &report::TimeSeries) -> serde_json::Value {
    let d = &o.data;
    let usage: Vec<serde_json::Value> = o
        .usage
        .iter()
        .map(|p| {
            serde_json::json!({
                "name": p.name, "pid": p.pid, "cpu_seconds": p.cpu_seconds,
                "peak_rss_bytes": p.peak_rss_bytes, "throttled_seconds": p.throttled_seconds,
                "limits_enforced": p.limits_enforced,
            })
        })
        .collect();
    let figures: serde_json::Map<String, serde_json::Value> = report::figures(o)
        .into_iter()
        .map(|(k, v)| (k, serde_json::json!(v)))
        .collect();
    serde_json::json!({
        "scenario": d.plan.scenario,
        "scenario_description": d.plan.scenario.description(),
        "seed": d.plan.seed,
        "backend": d.backend_url,
        "started_at": d.started_at,
        "duration_seconds": d.plan.duration.as_secs_f64(),
        "max_vus": d.plan.max_vus,
        "teardown_at_seconds": d.teardown_at,
        "limits": o.limits.describe(),
        "command": o.command,
        "provenance": o.provenance,
        "thresholds": o.judgement,
        "floor": o.floor,
        "figures": figures,
        "inputs": d.inputs,
        "score": d.score,
        "processes": usage,
        "process_events": o.event_counts,
        "checks": d.checks,
        "stages": d.stages,
        "scaled": d.scaled,
        "timeseries": series.json(),
    })
}
