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
    let c = e.counters.clone();
    x.family(
        "payroute_payments_accepted_total",
        "counter",
        "Payments accepted (2XX) since the last purge.",
    )
    .sample("payroute_payments_accepted_total", "", c.accepted as f64);
    x.family(
        "payroute_payments_duplicate_total",
        "counter",
        "Submits of an already accepted correlationId.",
    )
    .sample("payroute_payments_duplicate_total", "", c.duplicates as f64);
    x.family(
        "payroute_payments_refused_total",
        "counter",
        "Submits refused because the queue was full.",
    )
    .sample(
        "payroute_payments_refused_total",
        "reason=\"queue_full\"",
        c.refused_full as f64,
    );
    x.per_processor(
        "payroute_payments_processed_total",
        "counter",
        "Payments recorded as stored by a processor.",
        |p| c.processed[p.index()] as f64,
    );
    x.family(
        "payroute_payment_retries_total",
        "counter",
        "Processor calls that did not finish their payment.",
    )
    .sample("payroute_payment_retries_total", "", c.retries as f64);
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
    x.per_processor(
        "payroute_processor_lookups_total",
        "counter",
        "GET /payments/{id} calls made to learn an unknown fate.",
        |p| c.lookups[p.index()] as f64,
    );
    x.per_processor(
        "payroute_processor_probes_total",
        "counter",
        "Payments sent to a processor believed failing, to detect recovery.",
        |p| c.probes[p.index()] as f64,
    );
    x.family(
        "payroute_unknown_fate_resolved_total",
        "counter",
        "Payments whose unknown fate was resolved.",
    )
    .sample(
        "payroute_unknown_fate_resolved_total",
        "",
        c.unknown_resolved as f64,
    );
    x.per_processor(
        "payroute_health_polls_total",
        "counter",
        "Successful health polls.",
        |p| c.health_polls[p.index()] as f64,
    );
    x.family(
        "payroute_queue_depth",
        "gauge",
        "Payments accepted and waiting to be sent.",
    )
    .sample("payroute_queue_depth", "", e.queue_depth() as f64);
    x.family("payroute_in_flight", "gauge", "Processor calls in flight.");
    for p in Processor::ALL {
        x.sample(
            "payroute_in_flight",
            &format!("processor=\"{}\"", p.name()),
            e.view(p).in_flight() as f64,
        );
    }
    x.per_processor(
        "payroute_processor_failing",
        "gauge",
        "1 when the processor is believed failing.",
        |p| f64::from(u8::from(e.view(p).failing())),
    );
    x.per_processor(
        "payroute_processor_expected_latency_seconds",
        "gauge",
        "Expected latency of a payment request sent now.",
        |p| e.view(p).expected_latency_us(now) as f64 / 1e6,
    );
    let (held, oldest_held) = e.held(now);
    x.family(
        "payroute_held_payments",
        "gauge",
        "Payments waiting to be sent: held for the default processor, or for room.",
    )
    .sample("payroute_held_payments", "", held as f64);
    x.family(
        "payroute_held_oldest_age_seconds",
        "gauge",
        "Age of the oldest payment waiting to be sent.",
    )
    .sample(
        "payroute_held_oldest_age_seconds",
        "",
        oldest_held as f64 / 1e6,
    );
    let unknown = e.unknown_fates(now);
    x.family(
        "payroute_unknown_fate_payments",
        "gauge",
        "Payments whose request to a processor may still land there: bound to it until it tells.",
    )
    .sample("payroute_unknown_fate_payments", "", unknown.count as f64);
    x.family(
        "payroute_unknown_fate_oldest_age_seconds",
        "gauge",
        "Age of the oldest unknown fate.",
    )
    .sample(
        "payroute_unknown_fate_oldest_age_seconds",
        "",
        unknown.oldest_age_us as f64 / 1e6,
    );
    x.family(
        "payroute_payments_parked",
        "gauge",
        "Payments a processor refused for good (a 4XX), never retried.",
    )
    .sample("payroute_payments_parked", "", e.parked().len() as f64);
    x.per_processor(
        "payroute_payments_rejected_total",
        "counter",
        "Payments a processor refused for good (a 4XX).",
        |p| c.rejected[p.index()] as f64,
    );
    x.family(
        "payroute_payments_conflict_total",
        "counter",
        "Submits of a known correlationId with another amount (409).",
    )
    .sample("payroute_payments_conflict_total", "", c.conflicts as f64);
    x.family(
        "payroute_copies_differing_total",
        "counter",
        "Payments recorded from a processor's copy that differed from payroute's.",
    )
    .sample(
        "payroute_copies_differing_total",
        "",
        c.copies_differing as f64,
    );
    x.family(
        "payroute_ids_forgotten_total",
        "counter",
        "correlationIds forgotten after the de-duplication retention.",
    )
    .sample("payroute_ids_forgotten_total", "", c.forgotten as f64);
}
