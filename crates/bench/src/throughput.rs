//! The throughput run's figures (`--throughput SECS`, run by `runner::throughput`):
//! accepted payments per second (POSTs answered 200/201/202/204 per second of load),
//! processed per second (what the processors' books counted by the end of the drain,
//! per second of load and drain), the latencies of the POSTs, the failures, the CPU per
//! payment of each role and, scaled out, the ledger's cost per payment
//! ([`crate::scaled`]). Its files: `throughput.txt` (the summary) and `throughput.json`.
//!
//! Pure: the run is measured by `runner`.

use crate::provenance::Provenance;
use crate::scaled::{role_cpu, Failures, ScaledData};
use crate::topology::{LimitsNote, ProcUsage};
use serde::Serialize;
use std::fmt::Write as _;

/// What a throughput run measured.
#[derive(Debug, Clone, Serialize)]
pub struct ThroughputData {
    pub backend_url: String,
    pub vus: u32,
    /// The load's planned length (`--throughput`).
    pub seconds: f64,
    /// Wall-clock start of the load.
    pub started_at: String,
    /// Seconds of load (until the last VU's last request ended), and of the drain.
    pub load_s: f64,
    pub drain_s: f64,
    /// POSTs answered 200/201/202/204.
    pub accepted: u64,
    pub failures: Failures,
    /// The processors' books at the end of the drain: default, fallback.
    pub books: [f64; 2],
    /// Of the POSTs answered below 400: p50, p90, p99, max, ms.
    pub latency_ms: [f64; 4],
    /// Usage when the load started.
    pub usage_at_start: Vec<ProcUsage>,
    #[serde(skip)]
    pub usage_samples: Vec<crate::runner::UsageSample>,
    pub bench_cpu_seconds: f64,
    pub scaled: Option<ScaledData>,
}

/// A finished throughput run with what its outputs need beyond the measurements.
pub struct ThroughputOutput {
    pub data: ThroughputData,
    /// Usage of each started process when it was stopped.
    pub usage: Vec<ProcUsage>,
    pub limits: LimitsNote,
    /// Exits and restarts of the started processes during the run.
    pub events: Vec<String>,
    pub command: String,
    pub provenance: Provenance,
}

impl ThroughputOutput {
    /// CPU seconds of each started process from the start of the load to its stop.
    pub fn cpu_during_run(&self) -> Vec<(String, f64)> {
        let d = &self.data;
        self.usage
            .iter()
            .map(|p| {
                let before = d
                    .usage_at_start
                    .iter()
                    .find(|u| u.name == p.name)
                    .map_or(0.0, |u| u.cpu_seconds);
                (p.name.clone(), (p.cpu_seconds - before).max(0.0))
            })
            .collect()
    }

    /// Payments the processors' books counted by the end of the drain.
    pub fn processed(&self) -> f64 {
        self.data.books[0] + self.data.books[1]
    }

    /// Every figure by name (for `throughput.json`, `--runs` and `scale.txt`).
    pub fn figures(&self) -> Vec<(String, f64)> {
        let d = &self.data;
        let processed = self.processed();
        let mut v = vec![
            ("vus".to_string(), f64::from(d.vus)),
            ("load_s".into(), d.load_s),
            ("drain_s".into(), d.drain_s),
            ("payments_ok".into(), d.accepted as f64),
            ("payments_failed".into(), d.failures.failed as f64),
            ("payments_503".into(), d.failures.unavailable as f64),
            ("payments_no_answer".into(), d.failures.no_answer as f64),
            ("processed".into(), processed),
            ("lag".into(), d.accepted as f64 - processed),
            ("p50_ms".into(), d.latency_ms[0]),
            ("p90_ms".into(), d.latency_ms[1]),
            ("p99_ms".into(), d.latency_ms[2]),
            ("max_ms".into(), d.latency_ms[3]),
            ("bench_cpu_seconds".into(), d.bench_cpu_seconds),
        ];
        let cpu = self.cpu_during_run();
        let all = d.load_s + d.drain_s;
        match &d.scaled {
            Some(s) => v.extend(s.figures(&cpu, d.accepted, processed, d.load_s, all)),
            None => {
                let rate = |n: f64, s: f64| if s > 0.0 { n / s } else { 0.0 };
                v.push(("accepts_per_s".into(), rate(d.accepted as f64, d.load_s)));
                v.push(("processed_per_s".into(), rate(processed, all)));
                for r in role_cpu(&cpu, d.accepted) {
                    if let Some(ms) = r.ms_per_payment {
                        v.push((format!("cpu_ms_per_payment[{}]", r.name), ms));
                    }
                }
            }
        }
        v
    }

    /// The summary printed at the end, and `throughput.txt`.
    pub fn text(&self) -> String {
        let d = &self.data;
        let f = self.figures();
        let get = |n: &str| f.iter().find(|(k, _)| k == n).map_or(0.0, |x| x.1);
        let mut t = String::new();
        let _ = writeln!(
            t,
            "payroute bench: throughput ({:.0} s, {} VUs without a pause) against {}",
            d.seconds, d.vus, d.backend_url
        );
        let _ = writeln!(
            t,
            "  accepted                {:>10.1} /s   {} POSTs answered 2XX over {:.1} s of load",
            get("accepts_per_s"),
            d.accepted,
            d.load_s
        );
        let _ = writeln!(
            t,
            "  processed               {:>10.1} /s   {} in the processors' books after a {:.1} s drain; lag {}",
            get("processed_per_s"),
            self.processed(),
            d.drain_s,
            get("lag")
        );
        let _ = writeln!(
            t,
            "  latency of the POSTs    p50 {:.2} / p90 {:.2} / p99 {:.2} / max {:.2} ms",
            d.latency_ms[0], d.latency_ms[1], d.latency_ms[2], d.latency_ms[3]
        );
        let _ = writeln!(
            t,
            "  failed POSTs            {:>10}   ({} answered 503, {} not answered)",
            d.failures.failed, d.failures.unavailable, d.failures.no_answer
        );
        let cpu = self.cpu_during_run();
        crate::report::scaled_lines(&mut t, d.scaled.as_ref(), &f, &cpu);
        if d.scaled.is_none() {
            let roles: Vec<String> = role_cpu(&cpu, d.accepted)
                .iter()
                .filter_map(|r| Some(format!("{} {:.3}", r.name, r.ms_per_payment?)))
                .collect();
            if !roles.is_empty() {
                let _ = writeln!(t, "  CPU ms per payment      {}", roles.join(", "));
            }
        }
        let warn = if self.limits.is_warning() { "!!! " } else { "" };
        let _ = writeln!(t, "  {warn}{}", self.limits.describe());
        for e in &self.events {
            let _ = writeln!(t, "  !!! {}", e.lines().next().unwrap_or(""));
        }
        t
    }

    /// `throughput.json`.
    pub fn json(&self) -> serde_json::Value {
        let figures: serde_json::Map<String, serde_json::Value> = self
            .figures()
            .into_iter()
            .map(|(k, v)| (k, serde_json::json!(v)))
            .collect();
        serde_json::json!({
            "kind": "throughput",
            "data": self.data,
            "figures": figures,
            "processes": self.usage,
            "limits": self.limits.describe(),
            "events": self.events,
            "command": self.command,
            "provenance": self.provenance,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usage(name: &str, cpu: f64) -> ProcUsage {
        ProcUsage {
            name: name.into(),
            pid: 1,
            cpu_seconds: cpu,
            peak_rss_bytes: 0,
            throttled_seconds: None,
            limits_enforced: false,
        }
    }

    #[test]
    fn rates_count_the_load_and_the_drain() {
        let data = ThroughputData {
            backend_url: "http://127.0.0.1:1".into(),
            vus: 64,
            seconds: 10.0,
            started_at: String::new(),
            load_s: 10.0,
            drain_s: 2.5,
            accepted: 5000,
            failures: Failures {
                failed: 3,
                unavailable: 2,
                no_answer: 1,
            },
            books: [4000.0, 1000.0],
            latency_ms: [1.0, 2.0, 3.0, 4.0],
            usage_at_start: vec![usage("api1", 1.0), usage("worker", 2.0)],
            usage_samples: Vec::new(),
            bench_cpu_seconds: 1.0,
            scaled: None,
        };
        let o = ThroughputOutput {
            data,
            usage: vec![
                usage("api1", 6.0),
                usage("worker", 12.0),
                usage("processor-default", 9.0),
            ],
            limits: LimitsNote::Off,
            events: Vec::new(),
            command: String::new(),
            provenance: crate::provenance(),
        };
        let f = o.figures();
        let get = |n: &str| f.iter().find(|(k, _)| k == n).map(|x| x.1);
        assert_eq!(get("accepts_per_s"), Some(500.0));
        assert_eq!(get("processed_per_s"), Some(400.0));
        assert_eq!(get("lag"), Some(0.0));
        assert_eq!(get("cpu_ms_per_payment[api]"), Some(1.0));
        assert_eq!(get("cpu_ms_per_payment[worker]"), Some(2.0));
        assert_eq!(get("cpu_ms_per_payment[processor]"), None);
        let text = o.text();
        assert!(text.contains("500.0 /s"), "{text}");
        assert!(text.contains("2 answered 503"), "{text}");
        assert!(
            text.contains("CPU ms per payment      api 1.000, worker 2.000"),
            "{text}"
        );
        assert_eq!(o.json()["figures"]["p99_ms"], 3.0);
    }
}
