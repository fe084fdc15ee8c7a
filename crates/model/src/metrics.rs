//! Prometheus text exposition (format 0.0.4), written by hand: a few counters, gauges
//! and fixed-bucket histograms need no registry.

use std::fmt::Write;

/// Latency buckets in seconds, from 50 µs (an api answer) to 10 s (a processor's
/// worst delay).
pub const LATENCY_BUCKETS: [f64; 16] = [
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5, 10.0,
];

/// A cumulative histogram over [`LATENCY_BUCKETS`].
#[derive(Debug, Clone, Default)]
pub struct Histogram {
    counts: [u64; LATENCY_BUCKETS.len()],
    count: u64,
    sum: f64,
}

impl Histogram {
    pub fn observe(&mut self, seconds: f64) {
        if let Some(i) = LATENCY_BUCKETS.iter().position(|&b| seconds <= b) {
            self.counts[i] += 1;
        }
        self.count += 1;
        self.sum += seconds;
    }

    pub fn count(&self) -> u64 {
        self.count
    }
}

/// Builds one exposition document.
#[derive(Debug, Default)]
pub struct Exposition {
    out: String,
}

impl Exposition {
    pub fn new() -> Exposition {
        Exposition::default()
    }

    /// Starts a metric family: `kind` is `counter`, `gauge` or `histogram`.
    pub fn family(&mut self, name: &str, kind: &str, help: &str) -> &mut Self {
        let _ = writeln!(self.out, "# HELP {name} {help}");
        let _ = writeln!(self.out, "# TYPE {name} {kind}");
        self
    }

    /// One sample; `labels` as `key="value"` pairs joined by commas, or empty.
    pub fn sample(&mut self, name: &str, labels: &str, value: f64) -> &mut Self {
        if labels.is_empty() {
            let _ = writeln!(self.out, "{name} {value}");
        } else {
            let _ = writeln!(self.out, "{name}{{{labels}}} {value}");
        }
        self
    }

    /// A family with one sample per processor, labelled `processor="default"` and
    /// `processor="fallback"`.
    pub fn per_processor(
        &mut self,
        name: &str,
        kind: &str,
        help: &str,
        value: impl Fn(crate::Processor) -> f64,
    ) -> &mut Self {
        self.family(name, kind, help);
        for p in crate::Processor::ALL {
            self.sample(name, &format!("processor=\"{}\"", p.name()), value(p));
        }
        self
    }

    /// The samples of one histogram (the family must have been started).
    pub fn histogram(&mut self, name: &str, labels: &str, h: &Histogram) -> &mut Self {
        let sep = if labels.is_empty() { "" } else { "," };
        let mut cumulative = 0;
        for (b, c) in LATENCY_BUCKETS.iter().zip(h.counts) {
            cumulative += c;
            let _ = writeln!(
                self.out,
                "{name}_bucket{{{labels}{sep}le=\"{b}\"}} {cumulative}"
            );
        }
        let _ = writeln!(
            self.out,
            "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {}",
            h.count
        );
        let braces = |s: &str| {
            if s.is_empty() {
                String::new()
            } else {
                format!("{{{s}}}")
            }
        };
        let _ = writeln!(self.out, "{name}_sum{} {}", braces(labels), h.sum);
        let _ = writeln!(self.out, "{name}_count{} {}", braces(labels), h.count);
        self
    }

    /// Appends an already rendered document (another process's metrics).
    pub fn raw(&mut self, text: &str) -> &mut Self {
        self.out.push_str(text);
        if !text.ends_with('\n') && !text.is_empty() {
            self.out.push('\n');
        }
        self
    }

    pub fn finish(self) -> String {
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_a_histogram_cumulatively() {
        let mut h = Histogram::default();
        h.observe(0.00004);
        h.observe(0.003);
        h.observe(100.0);
        let mut e = Exposition::new();
        e.family("x_seconds", "histogram", "test")
            .histogram("x_seconds", "p=\"a\"", &h);
        let text = e.finish();
        assert!(text.contains("x_seconds_bucket{p=\"a\",le=\"0.00005\"} 1\n"));
        assert!(text.contains("x_seconds_bucket{p=\"a\",le=\"0.005\"} 2\n"));
        assert!(text.contains("x_seconds_bucket{p=\"a\",le=\"10\"} 2\n"));
        assert!(text.contains("x_seconds_bucket{p=\"a\",le=\"+Inf\"} 3\n"));
        assert!(text.contains("x_seconds_count{p=\"a\"} 3\n"));
        assert!(text.starts_with("# HELP x_seconds test\n# TYPE x_seconds histogram\n"));
    }
}
