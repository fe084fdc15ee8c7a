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

/// The routing decision, pure. In order:
/// 1. the default processor, if it works and is expected within the latency budget;
/// 2. a probe to the default processor, if it is believed failing and its probe is
///    due (the cheaper one is worth noticing as soon as it recovers);
/// 3. the fallback processor, if it works and is expected within the budget;
/// 4. the faster of the two if both work but are over budget: a late payment beats a
///    lost one;
/// 5. a probe to the fallback processor, when due;
/// 6. wait.
///
/// "Works" means: not believed failing and below its in-flight cap.
pub fn route(views: &[ProcessorView; 2], cfg: &EngineConfig, now: Mono) -> Route {
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
    if works(D) && fast(D) {
        return Route::To(D);
    }
    if probe_due(D) {
        return Route::Probe(D);
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
    if probe_due(F) {
        return Route::Probe(F);
    }
    Route::Wait
}
