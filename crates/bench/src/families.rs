//! The scenario families' schedules: routing-for-profit experiments beside the two
//! official tests, written for any length. Stage times are fractions of the run (so
//! `--duration 60` and `--duration 300` both work); only `flapping`'s period is in
//! seconds, because a router's reaction time is. Everything else (VUs, amount 20.05,
//! fees 7% / 10%, checker, teardown, scoring from the processors' books) is the final's:
//! see [`Scenario`]'s rules.
//!
//! Invariant, tested for every family and length: the first stage is at 0 and the
//! stages in force during the last sixth of the run have both processors working with
//! no delay, so that a good router can drain its backlog before the teardown.

use crate::scenario::{fails, stage, works, PlannedStage, Scenario, Setting};
use std::time::Duration;

/// The last sixth of every family: both processors working, no delay.
pub const END_STRETCH_FROM: f64 = 5.0 / 6.0;

/// Seed of `random` when `--seed` is not given.
pub const DEFAULT_SEED: u64 = 1;

/// `flapping`: how long the default fails, then works, in turn. Shorter than a health
/// poll period (5 s), so that a router that only believes its poller is always late.
pub const FLAP_PERIOD: Duration = Duration::from_secs(3);

/// `random`: the delays a stage picks from, in ms (every delay of the official stages,
/// from instant to over the 1.5 s request timeout).
pub const RANDOM_DELAYS_MS: [u32; 8] = [0, 5, 20, 100, 500, 1000, 2000, 5000];

/// `random`: the chance that a processor fails in a stage.
pub const RANDOM_FAILURE_PROBABILITY: f64 = 0.25;

/// `random`: a stage lasts between these shares of the run.
pub const RANDOM_STAGE_SHARE: (f64, f64) = (0.05, 0.15);

/// A family's stage: from this fraction of the run, these settings (default, fallback).
type Row = (f64, Setting, Setting);

/// Both processors working, no delay: how every family ends.
const BOTH_FINE: (Setting, Setting) = (works(0), works(0));

/// The stages of `family` for a run of `duration` (`seed` for `random`), on the run's
/// clock. Empty for the official tests, whose tables are in [`crate::scenario`].
pub fn schedule(family: Scenario, duration: Duration, seed: u64) -> Vec<PlannedStage> {
    rows(family, duration, seed)
        .into_iter()
        .map(|(at, default, fallback)| {
            let at = duration.mul_f64(at);
            PlannedStage {
                at,
                stage: stage(at.as_secs_f64().round() as u32, default, fallback),
            }
        })
        .collect()
}

/// The rows of `family`, from fraction 0, increasing.
fn rows(family: Scenario, duration: Duration, seed: u64) -> Vec<Row> {
    let (ok, ok_fb) = BOTH_FINE;
    match family {
        Scenario::Preview | Scenario::Final => Vec::new(),
        Scenario::DefaultDown => vec![
            (0.0, ok, ok_fb),
            (1.0 / 6.0, fails(0), works(0)),
            (4.0 / 6.0, ok, ok_fb),
        ],
        Scenario::Flapping => flapping(duration),
        Scenario::DefaultSlow => vec![
            (0.0, ok, ok_fb),
            (1.0 / 3.0, works(2000), works(0)),
            (2.0 / 3.0, ok, ok_fb),
        ],
        Scenario::BothDown => vec![
            (0.0, ok, ok_fb),
            (1.0 / 3.0, fails(0), fails(0)),
            (1.0 / 2.0, ok, ok_fb),
        ],
        Scenario::FallbackBad => vec![
            (0.0, ok, ok_fb),
            (1.0 / 6.0, works(0), works(5000)),
            (1.0 / 2.0, works(0), fails(0)),
            (END_STRETCH_FROM, ok, ok_fb),
        ],
        Scenario::Random => random(seed),
    }
}

/// The default fails for [`FLAP_PERIOD`], works for as long, in turn, from 1/6 of the
/// run to 5/6; the fallback works throughout.
fn flapping(duration: Duration) -> Vec<Row> {
    let (ok, ok_fb) = BOTH_FINE;
    let step = FLAP_PERIOD.as_secs_f64() / duration.as_secs_f64().max(1e-9);
    let mut rows = vec![(0.0, ok, ok_fb)];
    let mut at = 1.0 / 6.0;
    let mut failing = true;
    while at < END_STRETCH_FROM - 1e-9 {
        let default = if failing { fails(0) } else { works(0) };
        rows.push((at, default, works(0)));
        failing = !failing;
        at += step;
    }
    rows.push((END_STRETCH_FROM, ok, ok_fb));
    rows
}

/// A stage every 5-15% of the run (the last one cut at 5/6), each processor with a
/// delay from [`RANDOM_DELAYS_MS`] and failing with [`RANDOM_FAILURE_PROBABILITY`];
/// both fine in the last sixth.
fn random(seed: u64) -> Vec<Row> {
    let mut rng = SplitMix64(seed);
    let setting = |rng: &mut SplitMix64| {
        let delay = RANDOM_DELAYS_MS[(rng.next() % RANDOM_DELAYS_MS.len() as u64) as usize];
        if rng.unit() < RANDOM_FAILURE_PROBABILITY {
            fails(delay)
        } else {
            works(delay)
        }
    };
    let mut rows = Vec::new();
    let mut at = 0.0;
    let (lo, hi) = RANDOM_STAGE_SHARE;
    while at < END_STRETCH_FROM {
        let default = setting(&mut rng);
        let fallback = setting(&mut rng);
        rows.push((at, default, fallback));
        at += lo + (hi - lo) * rng.unit();
    }
    let (ok, ok_fb) = BOTH_FINE;
    rows.push((END_STRETCH_FROM, ok, ok_fb));
    rows
}

/// SplitMix64 (Steele, Lea and Flood, 2014): a tiny generator whose sequence is the
/// same on every machine and version, so a seed names one schedule forever.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A schedule as `(at in s, default delay, default failing, fallback delay,
    /// fallback failing)`, times rounded to milliseconds.
    fn table(family: Scenario, secs: u64, seed: u64) -> Vec<(f64, u32, bool, u32, bool)> {
        schedule(family, Duration::from_secs(secs), seed)
            .iter()
            .map(|p| {
                let s = p.stage;
                let at = (p.at.as_secs_f64() * 1000.0).round() / 1000.0;
                let d = (s.default_delay_ms, s.default_failure);
                let f = (s.fallback_delay_ms, s.fallback_failure);
                (at, d.0, d.1, f.0, f.1)
            })
            .collect()
    }

    /// Every family, every length: starts at 0, increasing, both fine at the end.
    #[test]
    fn every_family_starts_at_zero_and_ends_with_both_fine() {
        for family in Scenario::FAMILIES {
            for secs in [10, 60, 300, 1000] {
                for seed in [1, 2, 99] {
                    let plan = schedule(family, Duration::from_secs(secs), seed);
                    let name = family.name();
                    assert_eq!(plan[0].at, Duration::ZERO, "{name} {secs}s");
                    assert!(plan.windows(2).all(|w| w[0].at < w[1].at), "{name}");
                    let end = Duration::from_secs(secs).mul_f64(END_STRETCH_FROM);
                    let in_force_at_end = plan.iter().rposition(|p| p.at <= end).unwrap();
                    for p in &plan[in_force_at_end..] {
                        assert_eq!(
                            (p.stage.default_delay_ms, p.stage.default_failure),
                            (0, false),
                            "{name} {secs}s: {p:?}"
                        );
                        assert_eq!(
                            (p.stage.fallback_delay_ms, p.stage.fallback_failure),
                            (0, false),
                            "{name} {secs}s: {p:?}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn default_down_table() {
        assert_eq!(
            table(Scenario::DefaultDown, 300, 1),
            [
                (0.0, 0, false, 0, false),
                (50.0, 0, true, 0, false),
                (200.0, 0, false, 0, false),
            ]
        );
        // Fractions of the run: the same shape at 60 s.
        assert_eq!(table(Scenario::DefaultDown, 60, 1)[2].0, 40.0);
    }

    #[test]
    fn flapping_table() {
        let t = table(Scenario::Flapping, 60, 1);
        // 10 s to 50 s: 3 s failing, 3 s working, in turn; both fine from 50 s.
        assert_eq!(t[0], (0.0, 0, false, 0, false));
        assert_eq!(t[1], (10.0, 0, true, 0, false));
        assert_eq!(t[2], (13.0, 0, false, 0, false));
        assert_eq!(t[3], (16.0, 0, true, 0, false));
        assert_eq!(*t.last().unwrap(), (50.0, 0, false, 0, false));
        // 40 s of flapping in 3 s steps: 14 changes, alternating.
        assert_eq!(t.len(), 1 + 14 + 1);
        for (i, row) in t[1..15].iter().enumerate() {
            assert_eq!(row.2, i % 2 == 0, "{row:?}");
            assert!(!row.4);
        }
        // The period stays 3 s at 300 s: 200 s of flapping, 67 changes.
        assert_eq!(table(Scenario::Flapping, 300, 1).len(), 1 + 67 + 1);
    }

    #[test]
    fn default_slow_table() {
        assert_eq!(
            table(Scenario::DefaultSlow, 300, 1),
            [
                (0.0, 0, false, 0, false),
                (100.0, 2000, false, 0, false),
                (200.0, 0, false, 0, false),
            ]
        );
    }

    #[test]
    fn both_down_table() {
        assert_eq!(
            table(Scenario::BothDown, 60, 1),
            [
                (0.0, 0, false, 0, false),
                (20.0, 0, true, 0, true),
                (30.0, 0, false, 0, false),
            ]
        );
    }

    #[test]
    fn fallback_bad_table() {
        assert_eq!(
            table(Scenario::FallbackBad, 300, 1),
            [
                (0.0, 0, false, 0, false),
                (50.0, 0, false, 5000, false),
                (150.0, 0, false, 0, true),
                (250.0, 0, false, 0, false),
            ]
        );
    }

    #[test]
    fn random_table_is_a_function_of_the_seed() {
        let a = table(Scenario::Random, 300, 7);
        assert_eq!(a, table(Scenario::Random, 300, 7));
        assert_ne!(a, table(Scenario::Random, 300, 8));
        // Fractions of the run: the same schedule at another length, times scaled.
        let short = table(Scenario::Random, 60, 7);
        assert_eq!(a.len(), short.len());
        for seed in 1..50 {
            let rows = rows(Scenario::Random, Duration::from_secs(300), seed);
            // Every stage but the cut one and the end lasts 5-15% of the run.
            for w in rows[..rows.len() - 1].windows(2) {
                let share = w[1].0 - w[0].0;
                assert!((0.05..0.15).contains(&share), "seed {seed}: {share}");
            }
            for (_, d, f) in &rows {
                assert!(RANDOM_DELAYS_MS.contains(&d.delay_ms));
                assert!(RANDOM_DELAYS_MS.contains(&f.delay_ms));
            }
        }
        // Over many seeds, both processors sometimes fail and sometimes work.
        let all: Vec<Row> = (1..50)
            .flat_map(|seed| rows(Scenario::Random, Duration::from_secs(300), seed))
            .collect();
        assert!(all.iter().any(|r| r.1.failure) && all.iter().any(|r| r.2.failure));
        assert!(all.iter().filter(|r| r.1.failure).count() < all.len() / 2);
    }

    #[test]
    fn official_tests_have_no_family_schedule() {
        assert!(schedule(Scenario::Final, Duration::from_secs(300), 1).is_empty());
    }
}
