//! What the worker shows operators: the `/health` JSON and the Prometheus `/metrics`
//! text, both read from the engine's counters and views.

use crate::engine;
use crate::ledger::Ledger;
use crate::state::WorkerState;
use model::metrics::Exposition;
use model::Processor;

pub(crate) fn health_json<L: Ledger>(state: &WorkerState<L>) -> String {
    let problem = state.ledger.problem();
    let ledger = state.ledger.health_json();
    let uptime = state.ledger.clock().uptime_secs();
    state
        .ledger
        .with_engine(|e| engine_health(e, state.mono(), problem, ledger, uptime))
}

fn engine_health(
    e: &engine::Engine,
    now: model::Mono,
    problem: Option<String>,
    ledger: serde_json::Value,
    uptime: u64,
) -> String {
    let view = |p: Processor| {
        let v = e.view(p);
        serde_json::json!({
            "failing": v.failing(),
            "expected_latency_ms": v.expected_latency_us(now) as f64 / 1000.0,
            "in_flight": v.in_flight(),
            "failure_streak": v.failure_streak,
            "last_poll": v.polled.map(|(at, r)| serde_json::json!({
                "failing": r.failing,
                "min_response_time_ms": r.min_response_time_ms,
                "age_ms": (now.0 - at.0) / 1000,
            })),
        })
    };
    let unknown = e.unknown_fates(now);
    let (held, oldest_held) = e.held(now);
    let parked = e.parked().len();
    let c = &e.counters;
    let status = match problem {
        None => "ok".to_string(),
        Some(p) => format!("degraded: {p}"),
    };
    serde_json::json!({
        "status": status,
        "uptime_s": uptime,
        "ledger": ledger,
        "queue_depth": e.queue_depth(),
        "in_flight": e.in_flight(),
        "accepted": c.accepted,
        "processed": {"default": c.processed[0], "fallback": c.processed[1]},
        "held": {"payments": held, "oldest_age_ms": oldest_held / 1000},
        "unknown_fate": {"payments": unknown.count, "oldest_age_ms": unknown.oldest_age_us / 1000},
        "parked": parked,
        "rejected": {"default": c.rejected[0], "fallback": c.rejected[1]},
        "duplicates": c.duplicates,
        "conflicts": c.conflicts,
        "processors": {"default": view(Processor::Default), "fallback": view(Processor::Fallback)},
    })
    .to_string()
}

pub(crate) fn metrics_text<L: Ledger>(state: &WorkerState<L>) -> String {
    let now = state.mono();
    let mut x = Exposition::new();
    state.ledger.with_engine(|e| engine_metrics(e, now, &mut x));
    state.ledger.metrics(&mut x);
    x.family(
        "payroute_processor_request_duration_seconds",
        "histogram",
        "Duration of payment requests to processors.",
    );
    if let Ok(h) = state.latency.lock() {
        for p in Processor::ALL {
            x.histogram(
                "payroute_processor_request_duration_seconds",
                &format!("processor=\"{}\"", p.name()),
                &h[p.index()],
            );
        }
    }
    x.finish()
}

fn engine_metrics(e: &engine::Engine, now: model::Mono, x: &mut Exposition) {
    single_series(e, now, x);
    per_processor_series(e, now, x);
}

/// The series without labels (or with one fixed label).
fn single_series(e: &engine::Engine, now: model::Mono, x: &mut Exposition) {
    let c = &e.counters;
    let (held, oldest_held) = e.held(now);
    let unknown = e.unknown_fates(now);
    let singles: [(&str, &str, &str, f64); 14] = [
        ("payroute_payments_accepted_total", "counter",
         "Payments accepted (2XX) since the last purge.", c.accepted as f64),
        ("payroute_payments_duplicate_total", "counter",
         "Submits of an already accepted correlationId.", c.duplicates as f64),
        ("payroute_payments_conflict_total", "counter",
         "Submits of a known correlationId with another amount (409).", c.conflicts as f64),
        ("payroute_payment_retries_total", "counter",
         "Processor calls that did not finish their payment.", c.retries as f64),
        ("payroute_unknown_fate_resolved_total", "counter",
         "Payments whose unknown fate was resolved.", c.unknown_resolved as f64),
        ("payroute_copies_differing_total", "counter",
         "Payments recorded from a processor's copy that differed from payroute's.",
         c.copies_differing as f64),
        ("payroute_ids_forgotten_total", "counter",
         "correlationIds forgotten (retention, cap, or no longer this worker's).",
         c.forgotten as f64),
        ("payroute_queue_depth", "gauge",
         "Payments accepted and waiting to be sent.", e.queue_depth() as f64),
        ("payroute_held_payments", "gauge",
         "Payments waiting to be sent: held for the default processor, or for room.",
         held as f64),
        ("payroute_held_oldest_age_seconds", "gauge",
         "Age of the oldest payment waiting to be sent.", oldest_held as f64 / 1e6),
        ("payroute_unknown_fate_payments", "gauge",
         "Payments whose request to a processor may still land there: bound to it until it tells.",
         unknown.count as f64),
        ("payroute_unknown_fate_oldest_age_seconds", "gauge",
         "Age of the oldest unknown fate.", unknown.oldest_age_us as f64 / 1e6),
        ("payroute_payments_parked", "gauge",
         "Payments a processor refused for good (a 4XX), never retried.",
         e.parked().len() as f64),
        ("payroute_payments_refused_total", "counter",
         "Submits refused because the queue was full.", c.refused_full as f64),
    ];
    for (name, kind, help, v) in singles {
        let labels = if name == "payroute_payments_refused_total" {
            "reason=\"queue_full\""
        } else {
            ""
        };
        x.family(name, kind, help).sample(name, labels, v);
    }
}

/// The series with a `processor` label.
fn per_processor_series(e: &engine::Engine, now: model::Mono, x: &mut Exposition) {
    let c = &e.counters;
    let per_processor: [(&str, &str, &str, [f64; 2]); 8] = [
        (
            "payroute_payments_processed_total",
            "counter",
            "Payments recorded as stored by a processor.",
            c.processed.map(|n| n as f64),
        ),
        (
            "payroute_processor_lookups_total",
            "counter",
            "GET /payments/{id} calls made to learn an unknown fate.",
            c.lookups.map(|n| n as f64),
        ),
        (
            "payroute_processor_probes_total",
            "counter",
            "Payments sent to a processor believed failing, to detect recovery.",
            c.probes.map(|n| n as f64),
        ),
        (
            "payroute_health_polls_total",
            "counter",
            "Successful health polls.",
            c.health_polls.map(|n| n as f64),
        ),
        (
            "payroute_payments_rejected_total",
            "counter",
            "Payments a processor refused for good (a 4XX).",
            c.rejected.map(|n| n as f64),
        ),
        (
            "payroute_in_flight",
            "gauge",
            "Processor calls in flight.",
            Processor::ALL.map(|p| e.view(p).in_flight() as f64),
        ),
        (
            "payroute_processor_failing",
            "gauge",
            "1 when the processor is believed failing.",
            Processor::ALL.map(|p| f64::from(u8::from(e.view(p).failing()))),
        ),
        (
            "payroute_processor_expected_latency_seconds",
            "gauge",
            "Expected latency of a payment request sent now.",
            Processor::ALL.map(|p| e.view(p).expected_latency_us(now) as f64 / 1e6),
        ),
    ];
    for (name, kind, help, v) in per_processor {
        x.per_processor(name, kind, help, |p| v[p.index()]);
    }
    x.family(
        "payroute_processor_requests_total",
        "counter",
        "Payment requests to processors by outcome.",
    );
    for p in Processor::ALL {
        for r in engine::SendResult::ALL {
            x.sample(
                "payroute_processor_requests_total",
                &format!("processor=\"{}\",result=\"{}\"", p.name(), r.name()),
                c.send_results[p.index()][r.index()] as f64,
            );
        }
    }
}
