//! What a run measures: every request's duration (exactly, for the scored p99), a
//! histogram per second (for the report's latency over time) and counters. It takes
//! a plain [`Sample`] (status and duration), so it knows nothing of the HTTP client
//! that feeds it.
//!
//! One `std::sync::Mutex` around it all: at most ~600 requests per second reach it,
//! each holding the lock for a vector push and two histogram increments, so there is
//! nothing to gain from sharding, and no `.await` ever happens under the lock.

use hdrhistogram::Histogram;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// What a request was for (all of them count in the p99, as in k6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `POST /payments` by a payments VU.
    Payment,
    /// Summaries read by the checker and the teardown.
    Summary,
    /// Token, delay, failure and purge calls of setup and stages.
    Admin,
}

/// The status of a request that got no answer (timeout, refused, reset), as k6
/// reports it: the scripts read it like any other status.
pub const NO_ANSWER: u16 = 0;

/// What the recorder keeps of one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sample {
    /// HTTP status, or [`NO_ANSWER`].
    pub status: u16,
    /// `http_req_duration`; `None` when the request was never sent (no connection).
    pub duration: Option<Duration>,
}

/// Largest duration the histograms hold, in µs: ten times the 1.5 s timeout.
const HIST_MAX_US: u64 = 15_000_000;

/// Significant digits of the per-second histograms: 1% resolution is plenty for a
/// chart and keeps each one around 20 KiB (300 of them in a final run).
const SECOND_SIGFIG: u8 = 2;

/// The overall histogram is only for the live p99 on the progress bar; the scored p99
/// comes from the exact sample.
const LIVE_SIGFIG: u8 = 3;

/// Counters of one second of the test.
#[derive(Debug, Clone)]
pub struct Second {
    /// Durations (µs) of the requests that ended in this second with a status in
    /// 200..400 (what the p99 counts).
    pub latency: Histogram<u64>,
    /// Payments answered 200/201/202/204.
    pub payments_ok: u64,
    /// Payments answered otherwise, or not at all.
    pub payments_failed: u64,
    /// Of those, without an answer (timeout, reset, refused).
    pub no_answer: u64,
    /// Summaries and admin calls.
    pub other: u64,
}

impl Second {
    fn new() -> Second {
        Second {
            latency: new_hist(SECOND_SIGFIG),
            payments_ok: 0,
            payments_failed: 0,
            no_answer: 0,
            other: 0,
        }
    }
}

fn new_hist(sigfig: u8) -> Histogram<u64> {
    // Constant bounds within hdrhistogram's limits (low >= 1, high >= 2 * low, sigfig
    // <= 5): this cannot fail, and the unit tests construct both kinds.
    Histogram::new_with_bounds(1, HIST_MAX_US, sigfig).expect("constant histogram bounds are valid")
}

struct Inner {
    /// Test start: requests before it (setup) count in the p99 but not in the
    /// per-second series.
    test_start: Option<Instant>,
    /// Every duration with a status in 200..400, in ns, for the scored p99.
    expected_ns: Vec<u64>,
    live: Histogram<u64>,
    seconds: Vec<Second>,
}

/// Shared by every VU of a run.
pub struct Recorder {
    inner: Mutex<Inner>,
    pub payments_ok: AtomicU64,
    pub payments_failed: AtomicU64,
    /// Of the failed payments: answered 503, and not answered at all (the scaled
    /// topology's figures of a killed worker).
    pub payments_unavailable: AtomicU64,
    pub payments_no_answer: AtomicU64,
    pub requests: AtomicU64,
}

/// A payment counts as a success on these statuses only (`[200, 201, 202, 204]`).
pub fn payment_succeeded(status: u16) -> bool {
    matches!(status, 200 | 201 | 202 | 204)
}

/// k6's `expected_response` tag: true for statuses 200 to 399.
pub fn expected_response(status: u16) -> bool {
    (200..400).contains(&status)
}

impl Default for Recorder {
    fn default() -> Self {
        Self::new()
    }
}

impl Recorder {
    pub fn new() -> Recorder {
        Recorder {
            inner: Mutex::new(Inner {
                test_start: None,
                // A final run makes ~91,000 payments plus a few hundred other calls.
                expected_ns: Vec::with_capacity(100_000),
                live: new_hist(LIVE_SIGFIG),
                seconds: Vec::new(),
            }),
            payments_ok: AtomicU64::new(0),
            payments_failed: AtomicU64::new(0),
            payments_unavailable: AtomicU64::new(0),
            payments_no_answer: AtomicU64::new(0),
            requests: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A poisoned lock only means another thread panicked mid-push; the data is
        // still counters and samples.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Marks the start of the test clock (after setup).
    pub fn start(&self, at: Instant) {
        self.lock().test_start = Some(at);
    }

    /// Counts one request of `kind`.
    pub fn record(&self, kind: Kind, sample: Sample) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        let ok_payment = payment_succeeded(sample.status);
        if kind == Kind::Payment {
            if ok_payment {
                self.payments_ok.fetch_add(1, Ordering::Relaxed);
            } else {
                self.payments_failed.fetch_add(1, Ordering::Relaxed);
                match sample.status {
                    503 => self.payments_unavailable.fetch_add(1, Ordering::Relaxed),
                    NO_ANSWER => self.payments_no_answer.fetch_add(1, Ordering::Relaxed),
                    _ => 0,
                };
            }
        }
        let now = Instant::now();
        let mut g = self.lock();
        let expected = expected_response(sample.status);
        let micros = sample
            .duration
            .map(|d| (d.as_micros() as u64).clamp(1, HIST_MAX_US));
        if expected {
            if let Some(d) = sample.duration {
                g.expected_ns.push(d.as_nanos() as u64);
            }
            if let Some(us) = micros {
                g.live.saturating_record(us);
            }
        }
        let Some(start) = g.test_start else {
            return;
        };
        let idx = now.saturating_duration_since(start).as_secs() as usize;
        if g.seconds.len() <= idx {
            g.seconds.resize_with(idx + 1, Second::new);
        }
        let s = &mut g.seconds[idx];
        if expected {
            if let Some(us) = micros {
                s.latency.saturating_record(us);
            }
        }
        match kind {
            Kind::Payment if ok_payment => s.payments_ok += 1,
            Kind::Payment => {
                s.payments_failed += 1;
                if sample.status == NO_ANSWER {
                    s.no_answer += 1;
                }
            }
            Kind::Summary | Kind::Admin => s.other += 1,
        }
    }

    /// p99 of what was recorded so far, in ms, from the live histogram (for the
    /// progress bar only).
    pub fn live_p99_ms(&self) -> f64 {
        let g = self.lock();
        if g.live.is_empty() {
            0.0
        } else {
            g.live.value_at_quantile(0.99) as f64 / 1000.0
        }
    }

    /// Every duration counted by the p99, in ms, sorted ascending (k6 keeps them as
    /// float milliseconds).
    pub fn sorted_expected_ms(&self) -> Vec<f64> {
        let g = self.lock();
        let mut v: Vec<f64> = g.expected_ns.iter().map(|&ns| ns as f64 / 1e6).collect();
        v.sort_by(f64::total_cmp);
        v
    }

    /// The per-second series, up to `len` seconds.
    pub fn seconds(&self) -> Vec<Second> {
        self.lock().seconds.clone()
    }
}

/// One bar of the latency distribution: requests whose duration is in `[lo_ms,
/// hi_ms)`.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct LatencyBin {
    pub lo_ms: f64,
    pub hi_ms: f64,
    pub count: u64,
}

/// Bars a decade of the latency distribution: fine enough to see a second mode (a
/// slow path) next to the main one, coarse enough to fill each bar.
const BINS_PER_DECADE: f64 = 10.0;

/// Durations below this (ms) go into its bar: a log scale has no zero.
const SMALLEST_MS: f64 = 1e-3;

/// The distribution of the durations `ms` (any order) on log-spaced bars, ten a decade,
/// from the smallest to the largest; empty for an empty sample.
pub fn latency_bins(ms: &[f64]) -> Vec<LatencyBin> {
    let index = |v: f64| (v.max(SMALLEST_MS).log10() * BINS_PER_DECADE).floor() as i64;
    let (Some(lo), Some(hi)) = (
        ms.iter().map(|&v| index(v)).min(),
        ms.iter().map(|&v| index(v)).max(),
    ) else {
        return Vec::new();
    };
    let edge = |k: i64| 10f64.powf(k as f64 / BINS_PER_DECADE);
    let mut bins: Vec<LatencyBin> = (lo..=hi)
        .map(|k| LatencyBin {
            lo_ms: edge(k),
            hi_ms: edge(k + 1),
            count: 0,
        })
        .collect();
    for &v in ms {
        bins[(index(v) - lo) as usize].count += 1;
    }
    bins
}

/// Percentiles of one second, in ms (`None` when nothing was answered).
pub fn second_percentiles(s: &Second) -> Option<[f64; 4]> {
    if s.latency.is_empty() {
        return None;
    }
    let q = |p: f64| s.latency.value_at_quantile(p) as f64 / 1000.0;
    Some([q(0.5), q(0.9), q(0.99), s.latency.max() as f64 / 1000.0])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(status: u16, ms: u64) -> Sample {
        Sample {
            status,
            duration: Some(Duration::from_millis(ms)),
        }
    }

    #[test]
    fn latency_bins_cover_the_sample() {
        assert!(latency_bins(&[]).is_empty());
        let ms = [0.0, 0.25, 0.26, 1.0, 1.1, 30.0];
        let bins = latency_bins(&ms);
        assert_eq!(bins.iter().map(|b| b.count).sum::<u64>(), 6);
        // Ten bars a decade, each from the previous one's upper edge.
        assert!(bins
            .windows(2)
            .all(|w| (w[0].hi_ms - w[1].lo_ms).abs() < 1e-12));
        for &v in &ms[1..] {
            let b = bins.iter().find(|b| b.lo_ms <= v && v < b.hi_ms).unwrap();
            assert!(b.count >= 1, "{v}");
        }
        // 0 ms has no place on a log scale: it counts in the first bar (1 µs).
        assert!((bins[0].lo_ms - 1e-3).abs() < 1e-12 && bins[0].count == 1);
        assert!((bins.last().unwrap().lo_ms.log10() - 1.4).abs() < 1e-9);
    }

    #[test]
    fn counts_what_k6_counts() {
        let r = Recorder::new();
        r.record(Kind::Admin, reply(204, 1)); // setup: in the p99, not in the series
        r.start(Instant::now());
        r.record(Kind::Payment, reply(200, 2));
        r.record(Kind::Payment, reply(203, 3)); // a failure, but in the p99
        r.record(Kind::Payment, reply(500, 4)); // neither
        r.record(Kind::Payment, reply(0, 1500)); // timeout
        r.record(Kind::Summary, reply(200, 5));
        assert_eq!(r.payments_ok.load(Ordering::Relaxed), 1);
        assert_eq!(r.payments_failed.load(Ordering::Relaxed), 3);
        assert_eq!(r.sorted_expected_ms(), vec![1.0, 2.0, 3.0, 5.0]);
        let s = r.seconds();
        assert_eq!(s[0].payments_ok, 1);
        assert_eq!(s[0].payments_failed, 3);
        assert_eq!(s[0].no_answer, 1);
        assert_eq!(s[0].other, 1);
        assert_eq!(s[0].latency.len(), 3);
    }
}
