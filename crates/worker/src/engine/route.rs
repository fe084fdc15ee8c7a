//! The routing decision, pure and table-tested: which processor a payment goes to now,
//! if any.

use super::{EngineConfig, ProcessorView};
use model::{Mono, Processor};

/// Why no processor can take a payment now, or which one can.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// Send normally.
    To(Processor),
    /// Send as a probe to a processor believed failing.
    Probe(Processor),
    /// Nothing now.
    Wait,
}

/// What the default (cheaper) processor can do for a payment now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DefaultState {
    /// Works, has room, and is expected within the latency budget: use it.
    Ready,
    /// Believed failing (its last answer or health poll said so).
    Failing,
    /// Works but at its in-flight cap: room comes back as answers do.
    Full,
    /// Works but expected over the latency budget.
    Slow,
}

/// The default processor's state, from its view.
pub fn default_state(views: &[ProcessorView; 2], cfg: &EngineConfig, now: Mono) -> DefaultState {
    let d = &views[Processor::Default.index()];
    if d.failing() {
        DefaultState::Failing
    } else if d.in_flight() >= cfg.max_in_flight[Processor::Default.index()] {
        DefaultState::Full
    } else if d.expected_latency_us(now) > cfg.latency_budget_us {
        DefaultState::Slow
    } else {
        DefaultState::Ready
    }
}

/// How long a payment may wait for the default processor in this state before the
/// fallback may take it (`None`: no need to wait, the default takes it).
pub fn hold_for(state: DefaultState, cfg: &EngineConfig) -> Option<i64> {
    match state {
        DefaultState::Ready => None,
        DefaultState::Failing | DefaultState::Full => Some(cfg.settle_deadline_us),
        DefaultState::Slow => Some(cfg.slow_deadline_us),
    }
}

/// The routing decision for the oldest waiting payment, `age_us` since it was
/// accepted. Pure. In order:
/// 1. the default processor, if it works, has room and is expected within the latency
///    budget;
/// 2. hold: while the payment is younger than its deadline for the default's state
///    (failing or full: `settle_deadline`; over the budget: `slow_deadline`), it waits
///    for the default, or goes to it as a probe if the default is believed failing
///    and a probe is due (the cheaper one is worth noticing as soon as it recovers);
/// 3. past the deadline, the fallback processor, if it works and is expected within
///    the budget;
/// 4. the faster of the two if both work but are over budget: a late payment beats a
///    lost one;
/// 5. a probe to the default processor, then to the fallback, when due;
/// 6. wait.
///
/// "Works" means: not believed failing and below its in-flight cap. The summary race
/// stays closed: a payment goes only where it is expected to settle within the budget,
/// except by rule 5, and its `requestedAt` is the moment it is sent, however long it
/// was held.
pub fn route(views: &[ProcessorView; 2], cfg: &EngineConfig, now: Mono, age_us: i64) -> Route {
    let has_room = |p: Processor| views[p.index()].in_flight() < cfg.max_in_flight[p.index()];
    let works = |p: Processor| !views[p.index()].failing() && has_room(p);
    let fast = |p: Processor| views[p.index()].expected_latency_us(now) <= cfg.latency_budget_us;
    // Spaced by time only, not by what is still in flight: a request sent during a
    // 5 s outage stays out for 5 s, and a recovery must not wait for it.
    let probe_due = |p: Processor| {
        let v = &views[p.index()];
        v.failing()
            && has_room(p)
            && v.last_probe
                .is_none_or(|t| now.since(t) >= cfg.probe_interval_us)
    };
    use Processor::{Default as D, Fallback as F};
    let Some(deadline) = hold_for(default_state(views, cfg, now), cfg) else {
        return Route::To(D);
    };
    if age_us < deadline {
        return if probe_due(D) {
            Route::Probe(D)
        } else {
            Route::Wait
        };
    }
    if works(F) && fast(F) {
        return Route::To(F);
    }
    match (works(D), works(F)) {
        (true, true) => {
            let (d, f) = (
                views[0].expected_latency_us(now),
                views[1].expected_latency_us(now),
            );
            return Route::To(if d <= f { D } else { F });
        }
        (true, false) => return Route::To(D),
        (false, true) => return Route::To(F),
        (false, false) => {}
    }
    if probe_due(D) {
        return Route::Probe(D);
    }
    if probe_due(F) {
        return Route::Probe(F);
    }
    Route::Wait
}
