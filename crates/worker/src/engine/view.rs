//! [`ProcessorView`]: what the dispatcher believes about one processor, from health
//! polls and from the answers to its own requests.

use super::AttemptId;
use model::Mono;
use std::collections::BTreeSet;

/// What one health poll said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HealthReport {
    pub failing: bool,
    pub min_response_time_ms: u64,
}

impl HealthReport {
    /// The configured delay in µs, saturating: a processor may report any number.
    fn min_response_time_us(self) -> i64 {
        i64::try_from(self.min_response_time_ms)
            .unwrap_or(i64::MAX)
            .saturating_mul(1000)
    }
}

/// The dispatcher's view of one processor.
#[derive(Debug, Clone, Default)]
pub struct ProcessorView {
    /// Latest health poll and when it arrived.
    pub polled: Option<(Mono, HealthReport)>,
    /// Latest completed payment request: when, whether it failed, its latency (µs).
    pub last_completion: Option<(Mono, bool, i64)>,
    /// Failures in a row among completed requests.
    pub failure_streak: u32,
    /// Start time of every attempt in flight, oldest first.
    pub(super) in_flight: BTreeSet<(Mono, AttemptId)>,
    /// Start of the latest probe sent while the processor was believed failing.
    pub(super) last_probe: Option<Mono>,
}

impl ProcessorView {
    /// Whether the newest observation (a poll or a completed request) says failing.
    pub fn failing(&self) -> bool {
        match (self.polled, self.last_completion) {
            (Some((pt, p)), Some((ct, failed, _))) => {
                if pt > ct {
                    p.failing
                } else {
                    failed
                }
            }
            (Some((_, p)), None) => p.failing,
            (None, Some((_, failed, _))) => failed,
            (None, None) => false,
        }
    }

    /// Expected latency of a request sent now, in µs: the newest observation of the
    /// processor's speed, raised to the age of the oldest request still in flight (a
    /// processor that just turned slow shows it there first).
    pub fn expected_latency_us(&self, now: Mono) -> i64 {
        let base = match (self.polled, self.last_completion) {
            (Some((pt, p)), Some((ct, _, lat))) => {
                if pt > ct {
                    p.min_response_time_us()
                } else {
                    lat
                }
            }
            (Some((_, p)), None) => p.min_response_time_us(),
            (None, Some((_, _, lat))) => lat,
            (None, None) => 0,
        };
        let oldest = self
            .in_flight
            .first()
            .map_or(0, |(start, _)| now.since(*start));
        base.max(oldest)
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }
}
