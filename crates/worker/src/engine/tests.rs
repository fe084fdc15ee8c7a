//! Tests of the engine: routing tables, every branch of the outcome state machine,
//! idempotency and retention.

use super::*;
use Processor::{Default as D, Fallback as F};

const MS: i64 = 1000;

/// The wall clock is this far from the monotonic one in these tests.
const WALL: i64 = 1_700_000_000_000_000;

fn t(ms: i64) -> Mono {
    Mono(ms * MS)
}

fn wall(now: Mono) -> Micros {
    Micros(WALL + now.0)
}

fn act(e: &mut Engine, now: Mono) -> Option<Action> {
    e.next_action(now, wall(now))
}

fn found(e: &Engine, id: Uuid, at: Micros) -> LookupResult {
    let _ = e;
    let _ = id;
    LookupResult::Found(StoredCopy {
        amount: Cents(100),
        requested_at: at,
    })
}

fn id(n: u128) -> Uuid {
    Uuid::from_u128(n)
}

fn engine() -> Engine {
    Engine::new(EngineConfig::default())
}

fn send(e: &mut Engine, now: Mono) -> (AttemptId, Processor, Uuid, Micros) {
    match act(e, now) {
        Some(Action::Send {
            attempt,
            processor,
            id,
            requested_at,
            ..
        }) => (attempt, processor, id, requested_at),
        other => panic!("expected a send, got {other:?}"),
    }
}

fn lookup(e: &mut Engine, now: Mono) -> (AttemptId, Processor, Uuid) {
    match act(e, now) {
        Some(Action::Lookup {
            attempt,
            processor,
            id,
        }) => (attempt, processor, id),
        other => panic!("expected a lookup, got {other:?}"),
    }
}

fn all(e: &Engine) -> Summary {
    e.summary(&SummaryQuery::default())
}

fn view(failing: Option<bool>, poll_ms: u64, completion: Option<(bool, i64)>) -> ProcessorView {
    ProcessorView {
        polled: failing.map(|f| {
            (
                t(0),
                HealthReport {
                    failing: f,
                    min_response_time_ms: poll_ms,
                },
            )
        }),
        last_completion: completion.map(|(failed, lat_ms)| (t(1), failed, lat_ms * MS)),
        ..ProcessorView::default()
    }
}

/// An age past every deadline of the default configuration.
const PAST: i64 = 3_600_000 * MS;

#[test]
fn holding_table() {
    let cfg = EngineConfig {
        slow_deadline_us: 5_000 * MS,
        ..EngineConfig::default()
    };
    let settle = cfg.settle_deadline_us;
    let ok = || view(Some(false), 0, None);
    let slow = |ms| view(Some(false), ms, None);
    // Failing, with its probe just sent (not due again yet).
    let failing = || {
        let mut v = view(Some(true), 0, None);
        v.last_probe = Some(t(9_999));
        v
    };
    let full = || {
        let mut v = view(Some(false), 0, None);
        for k in 0..cfg.max_in_flight[0] as u64 {
            v.in_flight.insert((t(10_000), k));
        }
        v
    };
    let now = t(10_000);
    let cases: Vec<(&str, ProcessorView, ProcessorView, i64, Route)> = vec![
        (
            "default failing, young payment: held",
            failing(),
            ok(),
            0,
            Route::Wait,
        ),
        (
            "default failing, just before the deadline: held",
            failing(),
            ok(),
            settle - 1,
            Route::Wait,
        ),
        (
            "default failing, at the deadline: fallback",
            failing(),
            ok(),
            settle,
            Route::To(F),
        ),
        (
            "default full, young payment: waits for room",
            full(),
            ok(),
            1_000 * MS,
            Route::Wait,
        ),
        (
            "default full, past the deadline: fallback",
            full(),
            ok(),
            settle,
            Route::To(F),
        ),
        (
            "default slow, young: held for the slow deadline",
            slow(2000),
            ok(),
            4_999 * MS,
            Route::Wait,
        ),
        (
            "default slow, past the slow deadline: fallback",
            slow(2000),
            ok(),
            5_000 * MS,
            Route::To(F),
        ),
        (
            "both failing, past the deadline, probes not due: wait",
            failing(),
            failing(),
            PAST,
            Route::Wait,
        ),
        (
            "default failing, fallback slow, past: the fallback late beats never",
            failing(),
            slow(3000),
            PAST,
            Route::To(F),
        ),
        (
            "default back: drains whatever the age",
            ok(),
            failing(),
            PAST,
            Route::To(D),
        ),
        (
            "default back, fallback fine too: the default",
            ok(),
            ok(),
            PAST,
            Route::To(D),
        ),
    ];
    for (name, d, f, age, want) in cases {
        assert_eq!(route(&[d, f], &cfg, now, age), want, "{name}");
    }
}

#[test]
fn routing_table() {
    let cfg = EngineConfig::default();
    let ok = || view(Some(false), 0, None);
    let failing = || view(Some(true), 0, None);
    let slow = |ms| view(Some(false), ms, None);
    let now = t(10);
    let cases: Vec<(&str, ProcessorView, ProcessorView, Route)> = vec![
        (
            "nothing known: default",
            ProcessorView::default(),
            ProcessorView::default(),
            Route::To(D),
        ),
        ("both healthy: default", ok(), ok(), Route::To(D)),
        (
            "default 1000 ms is within budget",
            slow(1000),
            ok(),
            Route::To(D),
        ),
        ("default 2000 ms: fallback", slow(2000), ok(), Route::To(F)),
        (
            "default failing: probe it first",
            failing(),
            ok(),
            Route::Probe(D),
        ),
        (
            "both slow: the faster",
            slow(5000),
            slow(2000),
            Route::To(F),
        ),
        (
            "both slow, default faster",
            slow(2000),
            slow(3000),
            Route::To(D),
        ),
        (
            "fallback failing, default slow",
            slow(2000),
            failing(),
            Route::To(D),
        ),
        (
            "a completion newer than the poll wins",
            view(Some(true), 0, Some((false, 3))),
            ok(),
            Route::To(D),
        ),
        (
            "a failed completion newer than the poll",
            view(Some(false), 0, Some((true, 3))),
            ok(),
            Route::Probe(D),
        ),
        (
            "slow completion after a fast poll",
            view(Some(false), 0, Some((false, 1500))),
            ok(),
            Route::To(F),
        ),
    ];
    for (name, d, f, want) in cases {
        assert_eq!(route(&[d, f], &cfg, now, 0), want, "{name}");
    }
}

#[test]
fn probes_are_spaced_by_time() {
    let cfg = EngineConfig::default();
    let mut d = view(Some(true), 0, None);
    let f = view(Some(true), 0, None);
    d.last_probe = Some(t(0));
    // Default's probe is not due; fallback's is.
    assert_eq!(
        route(&[d.clone(), f.clone()], &cfg, t(500), PAST),
        Route::Probe(F)
    );
    assert_eq!(
        route(&[d.clone(), f.clone()], &cfg, t(1000), PAST),
        Route::Probe(D)
    );
    let mut f2 = f.clone();
    f2.last_probe = Some(t(900));
    assert_eq!(route(&[d.clone(), f2], &cfg, t(999), PAST), Route::Wait);
    // A probe still out does not hold the next one back: only time does.
    d.in_flight.insert((t(1000), 1));
    d.last_probe = Some(t(1000));
    let mut f3 = f;
    f3.last_probe = Some(t(999));
    assert_eq!(
        route(&[d.clone(), f3.clone()], &cfg, t(1500), PAST),
        Route::Wait
    );
    assert_eq!(route(&[d, f3], &cfg, t(2000), PAST), Route::Probe(D));
}

#[test]
fn oldest_in_flight_age_makes_a_processor_slow() {
    let mut e = engine();
    e.submit(id(1), Cents(100), t(0));
    e.submit(id(2), Cents(100), t(0));
    let (_, p, _, _) = send(&mut e, t(0));
    assert_eq!(p, D);
    // 1.3 s later the first request is still out: default is now over budget.
    let (_, p, _, _) = send(&mut e, t(1300));
    assert_eq!(p, F);
}

#[test]
fn a_timeout_makes_a_processor_over_budget_whatever_its_length() {
    let mut e = Engine::new(EngineConfig {
        latency_budget_us: 1_200_000,
        ..EngineConfig::default()
    });
    e.submit(id(1), Cents(1), t(0));
    e.submit(id(2), Cents(1), t(0));
    let (a, p, _, _) = send(&mut e, t(0));
    assert_eq!(p, D);
    // A 1 s timeout, below the 1.2 s budget.
    e.on_send_result(a, SendResult::Unknown, t(1_000));
    assert!(e.view(D).expected_latency_us(t(1_000)) > 1_200_000);
    let (_, p, id2, _) = send(&mut e, t(1_000));
    assert_eq!((p, id2), (F, id(2)));
}

#[test]
fn duplicates_and_queue_full() {
    let mut e = Engine::new(EngineConfig {
        queue_capacity: 1,
        ..EngineConfig::default()
    });
    assert_eq!(e.submit(id(1), Cents(1), t(0)), SubmitStatus::Accepted);
    assert_eq!(e.submit(id(1), Cents(1), t(0)), SubmitStatus::Duplicate);
    assert_eq!(e.submit(id(2), Cents(1), t(0)), SubmitStatus::QueueFull);
    // Refused payments leave no trace: it can be accepted once there is room.
    send(&mut e, t(0));
    assert_eq!(e.submit(id(2), Cents(1), t(0)), SubmitStatus::Accepted);
    // Done payments stay known.
    assert_eq!(e.submit(id(1), Cents(1), t(0)), SubmitStatus::Duplicate);
}

#[test]
fn outcome_200_records_with_the_timestamp_sent() {
    let mut e = engine();
    e.submit(id(1), Cents(1990), t(0));
    let (a, p, _, at) = send(&mut e, t(5));
    assert_eq!(at, wall(t(5)));
    e.on_send_result(a, SendResult::Stored, t(7));
    let s = all(&e);
    assert_eq!((s.get(p).count, s.get(p).amount), (1, Cents(1990)));
    let window = SummaryQuery {
        from: Some(wall(t(5))),
        to: Some(wall(t(5))),
    };
    assert_eq!(e.summary(&window).default.count, 1);
    assert_eq!(e.queue_depth() + e.in_flight(), 0);
}

#[test]
fn outcome_500_requeues_with_a_fresh_timestamp_and_holds_for_the_default() {
    let mut e = engine();
    e.submit(id(1), Cents(100), t(0));
    let (a, p, _, _) = send(&mut e, t(0));
    assert_eq!(p, D);
    e.on_send_result(a, SendResult::Failed, t(10));
    assert!(e.view(D).failing());
    let (_, p, _, at) = send(&mut e, t(20));
    // Default failing: first a probe to it is due (nothing in flight), with a fresh
    // timestamp.
    assert_eq!((p, at), (D, wall(t(20))));
    // Another payment is held for the default, then goes to the fallback at its
    // deadline.
    e.submit(id(2), Cents(100), t(0));
    assert_eq!(act(&mut e, t(21)), None);
    let past = e.config().settle_deadline_us / MS;
    let (_, p, pid, _) = send(&mut e, t(past));
    assert_eq!((p, pid), (F, id(2)));
    assert_eq!(all(&e).default.count + all(&e).fallback.count, 0);
}

#[test]
fn outcome_429_and_not_sent_are_retried() {
    for r in [SendResult::Throttled, SendResult::NotSent] {
        let mut e = engine();
        e.submit(id(1), Cents(100), t(0));
        let (a, _, _, _) = send(&mut e, t(0));
        e.on_send_result(a, r, t(1));
        assert_eq!(e.queue_depth(), 1, "{r:?}");
        let (a, p, _, _) = send(&mut e, t(2));
        e.on_send_result(a, SendResult::Stored, t(3));
        assert_eq!(all(&e).get(p).count, 1);
    }
}

#[test]
fn outcome_422_records_the_processors_copy_once() {
    let mut e = engine();
    e.submit(id(1), Cents(100), t(0));
    let (a, p, _, _) = send(&mut e, t(0));
    e.on_send_result(a, SendResult::AlreadyStored, t(1));
    assert_eq!(
        all(&e).get(p).count,
        0,
        "nothing recorded before the copy is read"
    );
    // The processor's copy (say, from before a purge of payroute) is what counts.
    let (l, lp, _) = lookup(&mut e, t(1));
    assert_eq!(lp, p);
    let theirs = StoredCopy {
        amount: Cents(250),
        requested_at: wall(t(-60_000)),
    };
    e.on_lookup_result(l, LookupResult::Found(theirs), t(2));
    assert_eq!(all(&e).get(p).count, 1);
    assert_eq!(all(&e).get(p).amount, Cents(250));
    let q = SummaryQuery {
        from: Some(theirs.requested_at),
        to: Some(theirs.requested_at),
    };
    assert_eq!(e.summary(&q).get(p).count, 1);
    assert_eq!(e.counters.copies_differing, 1);
    // A late result for the same attempt changes nothing.
    e.on_send_result(a, SendResult::Stored, t(3));
    assert_eq!(all(&e).get(p).count, 1);
}

#[test]
fn timeout_then_found() {
    let mut e = engine();
    e.submit(id(1), Cents(100), t(0));
    let (a, p, _, at) = send(&mut e, t(0));
    e.on_send_result(a, SendResult::Unknown, t(10_000));
    assert_eq!(e.queue_depth(), 1);
    // Nothing before the first retry delay; then a lookup on the same processor.
    assert_eq!(act(&mut e, t(10_100)), None);
    let (l, lp, _) = lookup(&mut e, t(10_200));
    assert_eq!(lp, p);
    let copy = found(&e, id(1), at);
    e.on_lookup_result(l, copy, t(10_201));
    let window = SummaryQuery {
        from: Some(at),
        to: Some(at),
    };
    assert_eq!(e.summary(&window).get(p).count, 1);
    assert_eq!(e.queue_depth() + e.in_flight(), 0);
}

#[test]
fn timeout_then_not_found_resends_to_the_same_processor_with_the_same_timestamp() {
    let mut e = engine();
    e.submit(id(1), Cents(100), t(0));
    e.submit(id(2), Cents(100), t(0));
    let (a, p, _, at) = send(&mut e, t(0));
    e.on_send_result(a, SendResult::Unknown, t(10_000));
    // Make the other processor look better than `p`: the pinned payment must
    // still go back to `p`.
    let (l, lp, _) = lookup(&mut e, t(10_200));
    assert_eq!(lp, p);
    e.on_lookup_result(l, LookupResult::NotFound, t(10_210));
    let (r, rp, rid, rat) = send(&mut e, t(10_210));
    assert_eq!((rp, rid, rat), (p, id(1), at));
    // The resend fails (500): the first copy may still land, so stay pinned.
    e.on_send_result(r, SendResult::Failed, t(10_220));
    let mut now = 10_220;
    loop {
        now += 2_000;
        assert!(now < 20_000, "never resolved");
        match act(&mut e, t(now)) {
            Some(Action::Lookup {
                attempt,
                processor,
                id: pid,
            }) => {
                assert_eq!((processor, pid), (p, id(1)));
                e.on_lookup_result(attempt, LookupResult::NotFound, t(now));
            }
            Some(Action::Send {
                attempt,
                processor,
                id: pid,
                requested_at,
                ..
            }) => {
                assert_eq!((processor, pid, requested_at), (p, id(1), at));
                // Finally the original landed: the resend sees 422, and the
                // copy is read.
                e.on_send_result(attempt, SendResult::AlreadyStored, t(now));
                let (l, lp, _) = lookup(&mut e, t(now));
                assert_eq!(lp, p);
                let copy = found(&e, id(1), at);
                e.on_lookup_result(l, copy, t(now));
                break;
            }
            None => panic!("pinned work must stay due"),
        }
    }
    let window = SummaryQuery {
        from: Some(at),
        to: Some(at),
    };
    assert_eq!(e.summary(&window).get(p).count, 1);
    // The other payment was free all along and goes out normally.
    let (a2, _, id2, _) = send(&mut e, t(now + 1));
    assert_eq!(id2, id(2));
    e.on_send_result(a2, SendResult::Stored, t(now + 2));
    let s = all(&e);
    assert_eq!(s.default.count + s.fallback.count, 2);
}

#[test]
fn an_unknown_fate_binds_the_payment_to_its_processor_for_good() {
    // Found by the simulation (seed 21 before the fix): a "not found" believed
    // after a fixed settle time let the payment go to the other processor, and
    // the first request, held longer by its processor, landed too.
    let mut e = engine();
    e.submit(id(1), Cents(100), t(0));
    let (a, p, _, at) = send(&mut e, t(0));
    e.on_send_result(a, SendResult::Unknown, t(10_000));
    let mut now = 10_000;
    // However long it takes, and whatever the other processor looks like, only
    // lookups and resends with the same timestamp go to `p`.
    for _ in 0..200 {
        now += 2_000;
        match act(&mut e, t(now)) {
            Some(Action::Lookup {
                attempt, processor, ..
            }) => {
                assert_eq!(processor, p);
                e.on_lookup_result(attempt, LookupResult::NotFound, t(now));
            }
            Some(Action::Send {
                attempt,
                processor,
                requested_at,
                ..
            }) => {
                assert_eq!((processor, requested_at), (p, at));
                e.on_send_result(attempt, SendResult::Failed, t(now));
            }
            None => {}
        }
    }
    assert_eq!(e.unknown_fates(t(now)).count, 1);
    assert!(e.unknown_fates(t(now)).oldest_age_us >= 400_000 * MS);
    // At last the first copy lands: the resend sees 422, the copy is read.
    let (r, rp, rat) = loop {
        now += 2_000;
        match act(&mut e, t(now)) {
            Some(Action::Send {
                attempt,
                processor,
                requested_at,
                ..
            }) => break (attempt, processor, requested_at),
            Some(Action::Lookup { attempt, .. }) => {
                e.on_lookup_result(attempt, LookupResult::NotFound, t(now));
            }
            None => {}
        }
    };
    assert_eq!((rp, rat), (p, at));
    e.on_send_result(r, SendResult::AlreadyStored, t(now));
    let (l, lp, _) = lookup(&mut e, t(now));
    assert_eq!(lp, p);
    e.on_lookup_result(l, found(&e, id(1), at), t(now));
    assert_eq!(all(&e).get(p).count, 1);
    assert_eq!(e.unknown_fates(t(now)).count, 0);
}

#[test]
fn lookup_errors_retry_the_lookup() {
    let mut e = engine();
    e.submit(id(1), Cents(100), t(0));
    let (a, _, _, _) = send(&mut e, t(0));
    e.on_send_result(a, SendResult::Unknown, t(1));
    let (l, _, _) = lookup(&mut e, t(1_000));
    e.on_lookup_result(l, LookupResult::Error, t(1_001));
    let (l, _, _) = lookup(&mut e, t(10_000));
    let copy = found(&e, id(1), wall(t(0)));
    e.on_lookup_result(l, copy, t(10_001));
    assert_eq!(all(&e).default.count + all(&e).fallback.count, 1);
}

#[test]
fn purge_forgets_everything_and_ignores_late_results() {
    let mut e = engine();
    e.submit(id(1), Cents(100), t(0));
    e.submit(id(2), Cents(100), t(0));
    let (a, _, _, _) = send(&mut e, t(0));
    e.purge(t(0));
    e.on_send_result(a, SendResult::Stored, t(1));
    assert_eq!(all(&e), Summary::default());
    assert_eq!(e.queue_depth() + e.in_flight(), 0);
    assert_eq!(e.submit(id(1), Cents(100), t(0)), SubmitStatus::Accepted);
}

#[test]
fn in_flight_cap_holds_work_back() {
    let mut e = Engine::new(EngineConfig {
        max_in_flight: [1, 1],
        ..EngineConfig::default()
    });
    for n in 0..3 {
        e.submit(id(n), Cents(1), t(0));
    }
    assert_eq!(send(&mut e, t(0)).1, D);
    // The default is full: the others wait for room (held), not for the fallback...
    assert_eq!(act(&mut e, t(0)), None);
    assert_eq!(e.queue_depth(), 2);
    // ...until the deadline; then the fallback takes what it has room for.
    let past = e.config().settle_deadline_us / MS;
    assert_eq!(send(&mut e, t(past)).1, F);
    assert_eq!(act(&mut e, t(past)), None);
    assert_eq!(e.queue_depth(), 1);
}

#[test]
fn wakeup_for_pinned_work() {
    let mut e = engine();
    assert_eq!(e.next_wakeup(t(0)), None);
    e.submit(id(1), Cents(1), t(0));
    let (a, _, _, _) = send(&mut e, t(0));
    e.on_send_result(a, SendResult::Unknown, t(100));
    assert_eq!(e.next_wakeup(t(100)), Some(t(300)));
    // Asked after `next_action` gave nothing, a due item is blocked by something
    // only an event changes: no wake-up in the past (that would spin).
    assert_eq!(e.next_wakeup(t(300)), None);
}

#[test]
fn a_reused_id_with_another_amount_is_a_conflict_and_changes_nothing() {
    let mut e = engine();
    assert_eq!(e.submit(id(1), Cents(100), t(0)), SubmitStatus::Accepted);
    assert_eq!(e.submit(id(1), Cents(100), t(1)), SubmitStatus::Duplicate);
    assert_eq!(e.submit(id(1), Cents(101), t(2)), SubmitStatus::Conflict);
    let (a, p, _, _) = send(&mut e, t(3));
    e.on_send_result(a, SendResult::Stored, t(4));
    // Finished payments too.
    assert_eq!(e.submit(id(1), Cents(999), t(5)), SubmitStatus::Conflict);
    assert_eq!(e.submit(id(1), Cents(100), t(5)), SubmitStatus::Duplicate);
    assert_eq!(all(&e).get(p).amount, Cents(100));
    assert_eq!((e.counters.duplicates, e.counters.conflicts), (2, 2));
}

#[test]
fn other_4xx_parks_the_payment_instead_of_retrying_it() {
    let mut e = engine();
    e.submit(id(1), Cents(100), t(0));
    let (a, p, _, _) = send(&mut e, t(0));
    let effect = e.on_send_result(a, SendResult::Rejected, t(1));
    assert_eq!(
        effect,
        Effect::Rejected {
            id: id(1),
            processor: p
        }
    );
    assert_eq!(e.queue_depth() + e.in_flight(), 0);
    assert_eq!(act(&mut e, t(10_000)), None, "never retried");
    assert_eq!(e.parked().len(), 1);
    assert_eq!(e.counters.rejected[p.index()], 1);
    assert_eq!(all(&e), Summary::default());
    // A 4XX says the processor is up.
    assert!(!e.view(p).failing());
    // The client retrying gets the earlier outcome, not a new payment.
    assert_eq!(e.submit(id(1), Cents(100), t(2)), SubmitStatus::Duplicate);
}

#[test]
fn a_4xx_after_an_unknown_fate_keeps_the_payment_bound() {
    let mut e = engine();
    e.submit(id(1), Cents(100), t(0));
    let (a, p, _, at) = send(&mut e, t(0));
    e.on_send_result(a, SendResult::Unknown, t(10_000));
    let (l, _, _) = lookup(&mut e, t(10_200));
    e.on_lookup_result(l, LookupResult::NotFound, t(10_200));
    let (r, rp, _, _) = send(&mut e, t(10_200));
    assert_eq!(rp, p);
    e.on_send_result(r, SendResult::Rejected, t(10_201));
    assert!(e.parked().is_empty(), "the first request may still land");
    let (l, lp, _) = lookup(&mut e, t(20_000));
    assert_eq!(lp, p);
    e.on_lookup_result(l, found(&e, id(1), at), t(20_001));
    assert_eq!(all(&e).get(p).count, 1);
}

#[test]
fn finished_ids_are_forgotten_after_the_retention() {
    let mut e = Engine::new(EngineConfig {
        dedup_retention_us: Some(60_000 * MS),
        ..EngineConfig::default()
    });
    e.submit(id(1), Cents(100), t(0));
    e.submit(id(2), Cents(100), t(0));
    let (a, _, _, _) = send(&mut e, t(0));
    e.on_send_result(a, SendResult::Stored, t(1));
    // Remembered at least the retention (at most twice it); id 2 is still pending at
    // the end: it stays known whatever the time.
    assert_eq!(
        e.submit(id(1), Cents(100), t(59_000)),
        SubmitStatus::Duplicate
    );
    assert_eq!(
        e.submit(id(1), Cents(100), t(61_001)),
        SubmitStatus::Duplicate
    );
    assert_eq!(
        e.submit(id(1), Cents(100), t(121_001)),
        SubmitStatus::Accepted
    );
    assert_eq!(
        e.submit(id(2), Cents(100), t(121_002)),
        SubmitStatus::Duplicate
    );
    assert_eq!(e.counters.forgotten, 1);
    // The summary keeps what was recorded.
    assert_eq!(all(&e).default.count + all(&e).fallback.count, 1);
}

#[test]
fn a_huge_min_response_time_saturates() {
    let v = view(Some(false), u64::MAX, None);
    assert_eq!(v.expected_latency_us(t(0)), i64::MAX);
    let cfg = EngineConfig::default();
    assert_eq!(
        route(&[v, view(Some(false), 0, None)], &cfg, t(0), 0),
        Route::To(F)
    );
}

#[test]
fn held_payments_drain_to_the_default_oldest_first_when_it_recovers() {
    let mut e = engine();
    let failing = HealthReport {
        failing: true,
        min_response_time_ms: 0,
    };
    e.on_health(D, failing, t(0));
    // The first payment is the probe; the rest are held.
    for n in 1..=5 {
        e.submit(id(n), Cents(100), t(n as i64));
    }
    let (probe, p, pid, _) = send(&mut e, t(10));
    assert_eq!((p, pid), (D, id(1)));
    e.on_send_result(probe, SendResult::Failed, t(20));
    assert_eq!(act(&mut e, t(500)), None, "held for the default");
    assert_eq!(e.held(t(500)), (5, 500 * MS - MS));
    // Nothing goes to the fallback before the deadline; a wake-up is due at it.
    assert!(e.next_wakeup(t(500)).is_some());
    // The default recovers (a poll says so): everything drains to it, oldest first.
    let healthy = HealthReport {
        failing: false,
        min_response_time_ms: 0,
    };
    e.on_health(D, healthy, t(30_000));
    let order: Vec<(Processor, Uuid)> = (0..5)
        .map(|_| {
            let (_, p, pid, _) = send(&mut e, t(30_001));
            (p, pid)
        })
        .collect();
    assert_eq!(
        order,
        (1..=5).map(|n| (D, id(n))).collect::<Vec<_>>(),
        "the retried probe first, then by age"
    );
}

#[test]
fn a_held_payment_goes_to_the_fallback_at_its_deadline_not_before() {
    let mut e = engine();
    e.on_health(
        D,
        HealthReport {
            failing: true,
            min_response_time_ms: 0,
        },
        t(0),
    );
    e.submit(id(1), Cents(100), t(0));
    e.submit(id(2), Cents(100), t(30_000));
    let (probe, _, _, _) = send(&mut e, t(1));
    e.on_send_result(probe, SendResult::Failed, t(2));
    let deadline = e.config().settle_deadline_us / MS;
    // Probes keep going to the default, one a second; nothing to the fallback.
    let mut now = 2;
    while now < deadline - 1_000 {
        now += 250;
        if let Some(Action::Send {
            attempt, processor, ..
        }) = act(&mut e, t(now))
        {
            assert_eq!(processor, D, "at {now} ms");
            e.on_send_result(attempt, SendResult::Failed, t(now));
        }
    }
    // The first payment's deadline: it may go to the fallback; the second may not yet.
    let wake = e.next_wakeup(t(deadline - 1)).unwrap();
    assert!(wake <= t(deadline), "woken at the deadline: {wake:?}");
    let mut to_fallback = Vec::new();
    for now in [deadline, deadline + 1] {
        while let Some(Action::Send {
            attempt,
            processor,
            id: pid,
            ..
        }) = act(&mut e, t(now))
        {
            let result = if processor == F {
                to_fallback.push(pid);
                SendResult::Stored
            } else {
                SendResult::Failed
            };
            e.on_send_result(attempt, result, t(now));
        }
    }
    assert_eq!(to_fallback, vec![id(1)]);
}
