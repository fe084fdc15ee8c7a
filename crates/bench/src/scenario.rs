//! The two official tests as data: `rinha.js` (the preview, SPEC §3) and
//! `rinha-final.js` (the final, SPEC §3b), the scenario families beside them (their
//! schedules in [`crate::families`]), and a run's schedule scaled to a chosen duration.
//!
//! Everything here is pure: the runner asks a [`Plan`] when each virtual user starts,
//! when each stage reconfigures the processors and how often the checker runs.

use crate::families;
use std::time::Duration;

/// Which test to run: one of the two official ones, or a scenario family (routing for
/// profit: the final's rules with a schedule of its own, for any length). Each one-line
/// description below is what `--help` and the report show.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scenario {
    /// rinha.js: 60 s, 550 VUs, 19.90, fees 5%/15%, score from the backend's summary
    Preview,
    /// rinha-final.js: 300 s, 603 VUs, 20.05, fees 7%/10%, score from the processors' books
    Final,
    /// default failing from 1/6 to 4/6 of the run, fallback fine
    DefaultDown,
    /// default failing 3 s, working 3 s, in turn, from 1/6 to 5/6 of the run; fallback fine
    Flapping,
    /// default answering in 2000 ms (over the latency budget) from 1/3 to 2/3, then fine
    DefaultSlow,
    /// both processors failing from 1/3 to 1/2 of the run, then both fine
    BothDown,
    /// default fine; fallback answering in 5000 ms from 1/6 to 1/2, failing from 1/2 to 5/6
    FallbackBad,
    /// a random schedule from --seed: a stage every 5-15% of the run, delays from 0 to 5000 ms, failures
    Random,
}

/// Whose rules (length, VUs, amount, fees, checker, teardown, scoring) a scenario
/// follows: the preview's, or the final's (the final itself and every family).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rules {
    Preview,
    Final,
}

/// Where the teardown reads the payments that the score pays for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum ScoreSource {
    /// Preview: the backend's `GET /payments-summary` (fees still from the processors).
    Backend,
    /// Final: the processors' `GET /admin/payments-summary`.
    Processors,
}

/// How the consistency checker turns three summaries into a count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum CheckArithmetic {
    /// Preview: `|(bd - d) + (bf - f)|`; a payment under the wrong processor cancels out.
    AbsOfSum,
    /// Final: `|bd - d| + |bf - f|`; a payment under the wrong processor counts twice.
    SumOfAbs,
}

/// One `define_stage` scenario: at `at_secs` both processors get this delay and
/// failure setting (four admin calls, in this order: delay default, delay fallback,
/// failure default, failure fallback).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Stage {
    /// Start time, seconds from the start of the test: in the official schedule for
    /// the official tests (scaled by `--duration` when planned); for a family, the
    /// run's own second, rounded (its exact time is [`PlannedStage::at`]).
    pub at_secs: u32,
    pub default_delay_ms: u32,
    pub default_failure: bool,
    pub fallback_delay_ms: u32,
    pub fallback_failure: bool,
}

/// One processor's setting in a stage: its delay, and whether it fails (after the
/// delay, as the processors do).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Setting {
    pub(crate) delay_ms: u32,
    pub(crate) failure: bool,
}

/// A processor that answers normally after `delay_ms`.
pub(crate) const fn works(delay_ms: u32) -> Setting {
    Setting {
        delay_ms,
        failure: false,
    }
}

/// A processor that fails after `delay_ms`.
pub(crate) const fn fails(delay_ms: u32) -> Setting {
    Setting {
        delay_ms,
        failure: true,
    }
}

pub(crate) const fn stage(at_secs: u32, default: Setting, fallback: Setting) -> Stage {
    Stage {
        at_secs,
        default_delay_ms: default.delay_ms,
        default_failure: default.failure,
        fallback_delay_ms: fallback.delay_ms,
        fallback_failure: fallback.failure,
    }
}

/// `rinha.js` stage_00 … stage_05.
const PREVIEW_STAGES: [Stage; 6] = [
    stage(1, works(0), works(0)),
    stage(10, works(100), works(0)),
    stage(20, fails(100), works(0)),
    stage(30, fails(2000), fails(1000)),
    stage(40, works(20), works(20)),
    stage(50, works(0), works(5000)),
];

/// `rinha-final.js` stage_00 … stage_09.
const FINAL_STAGES: [Stage; 10] = [
    stage(1, works(0), works(0)),
    stage(30, works(1000), works(0)),
    stage(60, works(500), works(0)),
    stage(90, fails(2000), works(1000)),
    stage(120, fails(5000), works(5)),
    stage(150, works(0), fails(5)),
    stage(180, works(100), works(5)),
    stage(210, works(50), works(0)),
    stage(240, works(103), works(10)),
    stage(270, works(2000), works(0)),
];

/// Every HTTP request of the official scripts has this timeout (`Httpx({timeout: 1500})`
/// in `requests.js`), payments, summaries and admin calls alike.
pub const REQUEST_TIMEOUT: Duration = Duration::from_millis(1500);

/// The payments VUs sleep this long after each request (`sleep(1)`).
pub const VU_PAUSE: Duration = Duration::from_secs(1);

/// The checker's window starts this long before "now" (`now - 1000 * 15`).
pub const CHECK_FROM_BEFORE: Duration = Duration::from_secs(15);

/// The checker sleeps this long between checks (`sleep(10)`) in the official schedule.
pub const CHECK_PERIOD: Duration = Duration::from_secs(10);

/// Shortest checker period when `--duration` shrinks the schedule: below one second
/// the checker would be a load of its own rather than an audit.
pub const MIN_CHECK_PERIOD: Duration = Duration::from_secs(1);

/// A stage's `constant-vus` scenario lasts 1 s and its only iteration ends with
/// `sleep(1)`: the stage is over 1 s after its four admin calls.
pub const STAGE_PAUSE: Duration = Duration::from_secs(1);

impl Scenario {
    /// The scenario families, in the order `--help` lists them.
    pub const FAMILIES: [Scenario; 6] = [
        Scenario::DefaultDown,
        Scenario::Flapping,
        Scenario::DefaultSlow,
        Scenario::BothDown,
        Scenario::FallbackBad,
        Scenario::Random,
    ];

    const fn rules(self) -> Rules {
        match self {
            Scenario::Preview => Rules::Preview,
            _ => Rules::Final,
        }
    }

    /// Whether this is a scenario family rather than an official test.
    pub const fn is_family(self) -> bool {
        !matches!(self, Scenario::Preview | Scenario::Final)
    }

    /// Length of the official test (of the final for a family): the default length.
    pub const fn official_duration(self) -> Duration {
        match self.rules() {
            Rules::Preview => Duration::from_secs(60),
            Rules::Final => Duration::from_secs(300),
        }
    }

    /// `MAX_REQUESTS` of the published runs (`run-tests.sh` / `run-tests-final.sh`).
    pub const fn default_max_requests(self) -> u32 {
        match self.rules() {
            Rules::Preview => 550,
            Rules::Final => 603,
        }
    }

    /// The amount as the scripts print it into the request body: `new Big(19.90)
    /// .toNumber()` goes through `JSON.stringify`, which prints `19.9`.
    pub const fn amount_json(self) -> &'static str {
        match self.rules() {
            Rules::Preview => "19.9",
            Rules::Final => "20.05",
        }
    }

    /// The amount of one payment, as a number.
    pub const fn amount(self) -> f64 {
        match self.rules() {
            Rules::Preview => 19.9,
            Rules::Final => 20.05,
        }
    }

    /// Fees of the processors in the published runs: (default, fallback). The preview's
    /// are those of the processors' compose file; the final's are stated in SPEC §3b.
    pub const fn fees(self) -> (f64, f64) {
        match self.rules() {
            Rules::Preview => (0.05, 0.15),
            Rules::Final => (0.07, 0.10),
        }
    }

    /// The checker's window ends this long before "now" (`now - 1500` / `now - 2000`).
    pub const fn check_to_before(self) -> Duration {
        match self.rules() {
            Rules::Preview => Duration::from_millis(1500),
            Rules::Final => Duration::from_millis(2000),
        }
    }

    pub const fn check_arithmetic(self) -> CheckArithmetic {
        match self.rules() {
            Rules::Preview => CheckArithmetic::AbsOfSum,
            Rules::Final => CheckArithmetic::SumOfAbs,
        }
    }

    /// The teardown reads the last this-many seconds (`70 * 1000` / `360 * 1000`).
    pub const fn teardown_window(self) -> Duration {
        match self.rules() {
            Rules::Preview => Duration::from_secs(70),
            Rules::Final => Duration::from_secs(360),
        }
    }

    pub const fn score_source(self) -> ScoreSource {
        match self.rules() {
            Rules::Preview => ScoreSource::Backend,
            Rules::Final => ScoreSource::Processors,
        }
    }

    /// Name of the result file the script writes (a family writes the final's).
    pub const fn results_file(self) -> &'static str {
        match self.rules() {
            Rules::Preview => "partial-results.json",
            Rules::Final => "final-results.json",
        }
    }

    /// The official schedule's stages; `None` for a family, whose schedule depends on
    /// the run's length (see [`crate::families`]).
    pub fn official_stages(self) -> Option<&'static [Stage]> {
        match self {
            Scenario::Preview => Some(&PREVIEW_STAGES),
            Scenario::Final => Some(&FINAL_STAGES),
            _ => None,
        }
    }

    /// The name `--scenario` takes.
    pub const fn name(self) -> &'static str {
        match self {
            Scenario::Preview => "preview",
            Scenario::Final => "final",
            Scenario::DefaultDown => "default-down",
            Scenario::Flapping => "flapping",
            Scenario::DefaultSlow => "default-slow",
            Scenario::BothDown => "both-down",
            Scenario::FallbackBad => "fallback-bad",
            Scenario::Random => "random",
        }
    }

    /// One line saying what it does (the doc comment `--help` shows, checked equal by a
    /// test).
    pub const fn description(self) -> &'static str {
        match self {
            Scenario::Preview => "rinha.js: 60 s, 550 VUs, 19.90, fees 5%/15%, score from the backend's summary",
            Scenario::Final => "rinha-final.js: 300 s, 603 VUs, 20.05, fees 7%/10%, score from the processors' books",
            Scenario::DefaultDown => "default failing from 1/6 to 4/6 of the run, fallback fine",
            Scenario::Flapping => "default failing 3 s, working 3 s, in turn, from 1/6 to 5/6 of the run; fallback fine",
            Scenario::DefaultSlow => "default answering in 2000 ms (over the latency budget) from 1/3 to 2/3, then fine",
            Scenario::BothDown => "both processors failing from 1/3 to 1/2 of the run, then both fine",
            Scenario::FallbackBad => "default fine; fallback answering in 5000 ms from 1/6 to 1/2, failing from 1/2 to 5/6",
            Scenario::Random => "a random schedule from --seed: a stage every 5-15% of the run, delays from 0 to 5000 ms, failures",
        }
    }
}

/// A stage placed on the (possibly scaled) clock of one run.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct PlannedStage {
    /// Offset from the start of the test.
    #[serde(serialize_with = "as_seconds")]
    pub at: Duration,
    pub stage: Stage,
}

fn as_seconds<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

/// The schedule of one run: the official one, or scaled to `--duration`, or a
/// family's for the run's length.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub scenario: Scenario,
    /// The seed of a `random` schedule (`None` for the others).
    pub seed: Option<u64>,
    /// Length of the payments scenario (and of the checker's).
    pub duration: Duration,
    /// `MAX_REQUESTS`: VUs at the end of the ramp.
    pub max_vus: u32,
    pub stages: Vec<PlannedStage>,
    pub check_period: Duration,
    pub teardown_window: Duration,
}

impl Plan {
    /// The official plan of `scenario`, or one scaled to `duration`: stage times are
    /// multiplied by `duration / official`, the ramp spans `duration`, the checker
    /// period is scaled the same way but kept within [1 s, 10 s], and the teardown
    /// window stays the official one unless the test is longer than the official test
    /// (then it keeps the official margin after the test: 10 s / 60 s), so that it
    /// always covers the whole test. A family's stages are planned for `duration`
    /// (seed [`families::DEFAULT_SEED`] for `random`; see [`Plan::for_run`]).
    pub fn new(scenario: Scenario, duration: Option<Duration>, max_vus: Option<u32>) -> Plan {
        Plan::for_run(scenario, duration, max_vus, families::DEFAULT_SEED)
    }

    /// [`Plan::new`], with the seed of a `random` schedule.
    pub fn for_run(
        scenario: Scenario,
        duration: Option<Duration>,
        max_vus: Option<u32>,
        seed: u64,
    ) -> Plan {
        let official = scenario.official_duration();
        let duration = duration.unwrap_or(official);
        let ratio = duration.as_secs_f64() / official.as_secs_f64();
        let stages = match scenario.official_stages() {
            Some(stages) => stages
                .iter()
                .map(|s| PlannedStage {
                    at: Duration::from_secs_f64(f64::from(s.at_secs) * ratio),
                    stage: *s,
                })
                .collect(),
            None => families::schedule(scenario, duration, seed),
        };
        let check_period = CHECK_PERIOD
            .mul_f64(ratio)
            .clamp(MIN_CHECK_PERIOD, CHECK_PERIOD);
        let margin = scenario.teardown_window().saturating_sub(official);
        let teardown_window = scenario.teardown_window().max(duration + margin);
        Plan {
            scenario,
            seed: (scenario == Scenario::Random).then_some(seed),
            duration,
            max_vus: max_vus.unwrap_or(scenario.default_max_requests()).max(1),
            stages,
            check_period,
            teardown_window,
        }
    }

    /// When VU number `n` (1-based) starts, as k6's `ramping-vus` executor computes it
    /// for `startVUs: 1, stages: [{target: MAX, duration: D}]`: the step that brings
    /// the count to `n` is at `D - D * (MAX - n) / (MAX - 1)`, in integer nanoseconds
    /// (`getRawExecutionSteps`). VU 1 starts at 0; VU `MAX` at `D`, where the scenario
    /// ends, so it never runs an iteration (as in k6).
    pub fn vu_start(&self, n: u32) -> Duration {
        let max = u128::from(self.max_vus);
        let n = u128::from(n.clamp(1, self.max_vus));
        if max <= 1 {
            return Duration::ZERO;
        }
        let d = self.duration.as_nanos();
        let offset = d - d * (max - n) / (max - 1);
        Duration::from_nanos(offset as u64)
    }

    /// VUs that k6 would have running at `t` (the ramp's planned count).
    pub fn vus_at(&self, t: Duration) -> u32 {
        if t >= self.duration {
            return 0;
        }
        // The starts are increasing: binary search for the last n with start(n) <= t.
        let (mut lo, mut hi) = (1u32, self.max_vus);
        while lo < hi {
            let mid = lo + (hi - lo).div_ceil(2);
            if self.vu_start(mid) <= t {
                lo = mid;
            } else {
                hi = mid - 1;
            }
        }
        lo
    }

    /// Payments the ramp can send at most if every answer were instant: each VU runs
    /// one iteration per second of its life (used for sanity checks and the report).
    pub fn expected_payments(&self) -> f64 {
        (1..=self.max_vus)
            .map(|n| {
                let life = self.duration.saturating_sub(self.vu_start(n));
                (life.as_secs_f64() / VU_PAUSE.as_secs_f64()).ceil()
            })
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A scenario's stages as `(at, default delay, default failure, fallback delay,
    /// fallback failure)`, the order of the scripts' `define_stage` arguments.
    fn rows(scenario: Scenario) -> Vec<(u32, u32, bool, u32, bool)> {
        scenario
            .official_stages()
            .unwrap()
            .iter()
            .map(|s| {
                (
                    s.at_secs,
                    s.default_delay_ms,
                    s.default_failure,
                    s.fallback_delay_ms,
                    s.fallback_failure,
                )
            })
            .collect()
    }

    #[test]
    fn official_stage_tables_match_the_scripts() {
        let p = rows(Scenario::Preview);
        assert_eq!(
            p,
            [
                (1, 0, false, 0, false),
                (10, 100, false, 0, false),
                (20, 100, true, 0, false),
                (30, 2000, true, 1000, true),
                (40, 20, false, 20, false),
                (50, 0, false, 5000, false),
            ]
        );
        let f = rows(Scenario::Final);
        assert_eq!(
            f,
            [
                (1, 0, false, 0, false),
                (30, 1000, false, 0, false),
                (60, 500, false, 0, false),
                (90, 2000, true, 1000, false),
                (120, 5000, true, 5, false),
                (150, 0, false, 5, true),
                (180, 100, false, 5, false),
                (210, 50, false, 0, false),
                (240, 103, false, 10, false),
                (270, 2000, false, 0, false),
            ]
        );
    }

    #[test]
    fn official_plans() {
        let p = Plan::new(Scenario::Preview, None, None);
        assert_eq!(p.duration, Duration::from_secs(60));
        assert_eq!(p.max_vus, 550);
        assert_eq!(p.check_period, Duration::from_secs(10));
        assert_eq!(p.teardown_window, Duration::from_secs(70));
        assert_eq!(p.stages[3].at, Duration::from_secs(30));
        let f = Plan::new(Scenario::Final, None, None);
        assert_eq!(f.duration, Duration::from_secs(300));
        assert_eq!(f.max_vus, 603);
        assert_eq!(f.teardown_window, Duration::from_secs(360));
        assert_eq!(f.stages[9].at, Duration::from_secs(270));
        assert_eq!(Scenario::Final.check_to_before(), Duration::from_secs(2));
        assert_eq!(
            Scenario::Preview.check_to_before(),
            Duration::from_millis(1500)
        );
    }

    #[test]
    fn scaled_plans() {
        let f = Plan::new(Scenario::Final, Some(Duration::from_secs(10)), Some(20));
        // 270 s of 300 becomes 9 s of 10.
        assert_eq!(f.stages[9].at, Duration::from_secs(9));
        assert_eq!(f.stages[0].at, Duration::from_secs_f64(1.0 / 30.0));
        assert_eq!(f.check_period, Duration::from_secs(1));
        assert_eq!(f.teardown_window, Duration::from_secs(360));
        let p = Plan::new(Scenario::Preview, Some(Duration::from_secs(30)), None);
        assert_eq!(p.stages[5].at, Duration::from_secs(25));
        assert_eq!(p.check_period, Duration::from_secs(5));
        // Longer than official: the window grows to keep covering the whole test.
        let long = Plan::new(Scenario::Preview, Some(Duration::from_secs(120)), None);
        assert_eq!(long.teardown_window, Duration::from_secs(130));
        assert_eq!(long.check_period, Duration::from_secs(10));
    }

    #[test]
    fn ramp_follows_k6_steps() {
        let p = Plan::new(Scenario::Preview, None, None);
        assert_eq!(p.vu_start(1), Duration::ZERO);
        assert_eq!(p.vu_start(550), Duration::from_secs(60));
        // VU 2 at 60 s - 60 s * 548 / 549 = 60/549 s, in integer nanoseconds.
        let d: u128 = 60_000_000_000;
        assert_eq!(p.vu_start(2).as_nanos(), d - d * 548 / 549);
        assert_eq!(p.vus_at(Duration::ZERO), 1);
        assert_eq!(p.vus_at(Duration::from_secs(30)), 275);
        assert_eq!(p.vus_at(Duration::from_millis(59_999)), 549);
        assert_eq!(p.vus_at(Duration::from_secs(60)), 0);
        for n in 1..550 {
            assert!(p.vu_start(n) < p.vu_start(n + 1));
        }
        // About 16,750 payments at most, as SPEC §3 says.
        let e = p.expected_payments();
        assert!((16_400.0..17_000.0).contains(&e), "{e}");
        let f = Plan::new(Scenario::Final, None, None);
        let e = f.expected_payments();
        assert!((90_000.0..91_500.0).contains(&e), "{e}");
    }

    #[test]
    fn descriptions_are_what_help_shows() {
        use clap::ValueEnum;
        for s in Scenario::value_variants() {
            let v = s.to_possible_value().unwrap();
            assert_eq!(v.get_name(), s.name());
            let help = v.get_help().map(|h| h.to_string());
            assert_eq!(help.as_deref(), Some(s.description()), "{}", s.name());
            assert_eq!(s.is_family(), Scenario::FAMILIES.contains(s));
        }
    }

    #[test]
    fn families_follow_the_final_rules_with_their_own_schedule() {
        for f in Scenario::FAMILIES {
            assert_eq!(f.amount_json(), "20.05");
            assert_eq!(f.fees(), (0.07, 0.10));
            assert_eq!(f.check_arithmetic(), CheckArithmetic::SumOfAbs);
            assert_eq!(f.score_source(), ScoreSource::Processors);
            assert_eq!(f.results_file(), "final-results.json");
            assert!(f.official_stages().is_none());
            let p = Plan::for_run(f, Some(Duration::from_secs(60)), None, 3);
            assert_eq!(p.max_vus, 603);
            assert_eq!(p.check_period, Duration::from_secs(2));
            assert_eq!(p.teardown_window, Duration::from_secs(360));
            assert_eq!(p.stages, crate::families::schedule(f, p.duration, 3));
            assert_eq!(p.seed, (f == Scenario::Random).then_some(3));
        }
    }

    #[test]
    fn one_vu_runs_the_whole_test() {
        let p = Plan::new(Scenario::Final, Some(Duration::from_secs(5)), Some(1));
        assert_eq!(p.vu_start(1), Duration::ZERO);
        assert_eq!(p.vus_at(Duration::from_secs(4)), 1);
    }
}
