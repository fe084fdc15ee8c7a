//! Snapshots of the report: `report.html`, the summary text and the figures of two
//! fixed runs, compared byte for byte with the files in `snapshots/`, so that a change
//! to the report's code that was meant to change nothing is seen to change nothing.
//!
//! After an intended change of the output: `UPDATE_SNAPSHOTS=1 cargo test -p bench
//! snapshot` rewrites the files; review their diff.

use super::{figures, html, summary_text, RunOutput};
use crate::provenance::{Machine, Provenance};
use crate::recorder::Second;
use crate::runner::{BooksSample, Check, HealthSample, RunData, StageRun, UsageSample};
use crate::scenario::{Plan, Scenario};
use crate::score::{self, BackendSummary, Inputs, OfficialResults, ProcessorSummary};
use crate::thresholds::{judgement, Judgement, Thresholds};
use crate::topology::{EventCounts, LimitsNote, ProcUsage};
use hdrhistogram::Histogram;
use std::path::PathBuf;
use std::time::Duration;

fn processor(requests: f64, amount: f64, fee: f64) -> ProcessorSummary {
    ProcessorSummary {
        total_requests: requests,
        total_amount: amount,
        fee_per_transaction: fee,
    }
}

fn backend(default: f64, fallback: f64) -> BackendSummary {
    BackendSummary {
        default_requests: default,
        default_amount: default * 20.05,
        fallback_requests: fallback,
        fallback_amount: fallback * 20.05,
    }
}

/// Second `i` of the test: latencies spread over two decades, one silent second.
fn second(i: u64) -> Second {
    let mut latency = Histogram::new_with_bounds(1, 15_000_000, 2).unwrap();
    if i != 4 {
        for k in 1..=50 {
            latency.record(200 + k * k * (i + 1)).unwrap();
        }
    }
    Second {
        latency,
        payments_ok: 10 * i,
        payments_failed: i % 3,
        no_answer: u64::from(i == 6),
        other: 2,
    }
}

fn usage(name: &str, pid: u32, cpu: f64, throttled: Option<f64>) -> ProcUsage {
    ProcUsage {
        name: name.into(),
        pid,
        cpu_seconds: cpu,
        peak_rss_bytes: 10_000_000 + u64::from(pid) * 4096,
        throttled_seconds: throttled,
        limits_enforced: throttled.is_some(),
    }
}

fn usage_sample(t: u32) -> UsageSample {
    let t = f64::from(t);
    UsageSample {
        t,
        cpu_seconds: vec![
            ("worker".into(), 0.1 * t + 0.01 * t * t),
            ("api1".into(), 0.05 * t),
            ("processor-default".into(), 0.02 * t),
        ],
        rss_bytes: vec![
            ("worker".into(), 30_000_000.0 + t * 100_000.0),
            ("api1".into(), 9_000_000.0),
            ("processor-default".into(), 15_000_000.0),
        ],
        throttled_seconds: vec![
            (
                "worker".into(),
                if t > 5.0 { 0.01 * (t - 5.0) } else { 0.0 },
            ),
            ("api1".into(), 0.0),
        ],
    }
}

fn health(t: u32) -> HealthSample {
    let t = f64::from(t) + 0.25;
    HealthSample {
        t,
        queue_depth: (t * 3.0) % 7.0,
        in_flight: t * 2.0,
        accepted: Some(t * 10.0),
        processed_default: (t < 8.0).then_some(t * 8.0),
        processed_fallback: Some(t * t),
        held_payments: Some(((t * 5.0) % 11.0).floor()),
        held_oldest_age_ms: Some((t * 100.0) % 900.0),
    }
}

/// Second `t` of the processors' books: the fallback's read failed at 6 s.
fn books(t: u32) -> BooksSample {
    let t = f64::from(t) + 0.5;
    BooksSample {
        t,
        accepted: t * 14.0,
        default: Some(processor(t * 9.0, t * 9.0 * 20.05, 0.07)),
        fallback: (t != 6.5).then(|| processor(t * 4.0, t * 4.0 * 20.05, 0.1)),
    }
}

/// The own run's two consistency checks: one in agreement, one with failed reads.
fn own_checks() -> Vec<Check> {
    vec![
        Check {
            t: 0.002,
            from: "2025-07-10T11:59:46.000Z".into(),
            to: "2025-07-10T11:59:59.000Z".into(),
            backend: backend(0.0, 0.0),
            default: processor(0.0, 0.0, 0.07),
            fallback: processor(0.0, 0.0, 0.1),
            statuses: [200, 200, 200],
            inconsistencies: 0.0,
        },
        Check {
            t: 5.01,
            from: "2025-07-10T11:59:51.000Z".into(),
            to: "2025-07-10T12:00:04.000Z".into(),
            backend: backend(50.0, 10.0),
            default: processor(49.0, 982.45, 0.07),
            fallback: processor(11.0, 220.55, 0.1),
            statuses: [200, 0, 503],
            inconsistencies: 2.0,
        },
    ]
}

/// A final scaled to 10 s that the bench ran against payroute it started: every
/// chart, both tables filled, a restart event, caixa dois and a differing audit.
fn own_run() -> RunOutput {
    let plan = Plan::new(Scenario::Final, Some(Duration::from_secs(10)), Some(20));
    let inputs = Inputs {
        scenario: Scenario::Final,
        participant: "payroute".into(),
        max_requests: "20".into(),
        successes: 140,
        failures: 3,
        inconsistencies: 2.0,
        p99_ms: 1.2549,
        default: processor(100.0, 2005.0, 0.07),
        fallback: processor(45.0, 902.25, 0.1),
        backend: None,
        timestamp: "2025-07-10T12:00:12.345Z".into(),
    };
    let score = score::compute(&inputs);
    let results = OfficialResults::new(&inputs, &score);
    let checks = own_checks();
    let stages = plan
        .stages
        .iter()
        .enumerate()
        .map(|(i, p)| StageRun {
            planned: *p,
            t: p.at.as_secs_f64() + 0.001 * i as f64,
            statuses: [200, 200, 200, if i == 3 { 0 } else { 200 }],
        })
        .collect();
    let usage_at_start = vec![
        usage("worker", 101, 0.5, Some(0.0)),
        usage("api1", 102, 0.25, Some(0.0)),
        usage("processor-default", 103, 0.1, None),
    ];
    let data = RunData {
        plan,
        backend_url: "http://127.0.0.1:9999".into(),
        inputs,
        score,
        results,
        seconds: (0..11).map(second).collect(),
        checks,
        stages,
        health: (0..11).map(health).collect(),
        usage_samples: (0..12).map(usage_sample).collect(),
        books: (0..12).map(books).collect(),
        usage_at_start,
        requests: 160,
        p99_sample_size: 150,
        overall_ms: [0.21, 0.48, 1.2549, 28.375],
        latency_bins: crate::recorder::latency_bins(
            &(1..=150)
                .map(|k| 0.05 + f64::from(k * k) / 800.0)
                .collect::<Vec<_>>(),
        ),
        bench_cpu_seconds: 0.75,
        started_at: "2025-07-10T12:00:00.000Z".into(),
        teardown_at: 11.25,
        end_audit: Some(backend(101.0, 45.0)),
        scaled: None,
    };
    let o = RunOutput {
        data,
        usage: vec![
            usage("worker", 101, 2.5, Some(0.03)),
            usage("api1", 102, 1.0, Some(0.0)),
            usage("processor-default", 103, 0.4, None),
        ],
        limits: LimitsNote::Enforced("cgroup v1, 1.5 CPU & 350 MB <in all>".into()),
        events: vec!["api1 (pid 102) exited: signal: 9 (SIGKILL)\nrestarted after 0.5 s".into()],
        event_counts: EventCounts {
            exits: 1,
            restarts: 1,
        },
        command: "payroute bench --scenario final --duration 10 --max-requests 20 --out \"a<b>\""
            .into(),
        provenance: provenance(),
        judgement: Judgement::default(),
        floor: None,
    };
    // p99 1.25 > 1: crossed; 3 failed <= 5: passed; lag -5: caixa dois.
    let t = Thresholds {
        max_p99_ms: Some(1.0),
        max_failed: Some(5),
        ..Thresholds::default()
    };
    RunOutput {
        judgement: judgement(&t, &o.data, &o.limits),
        ..o
    }
}

/// A preview against a given backend: nothing started, no `/health`, no checks, no
/// latency to chart; the end audit unreadable.
fn given_run() -> RunOutput {
    let plan = Plan::new(Scenario::Preview, None, None);
    let inputs = Inputs {
        scenario: Scenario::Preview,
        participant: "anonymous".into(),
        max_requests: "550".into(),
        successes: 16_752,
        failures: 0,
        inconsistencies: 0.0,
        p99_ms: 1.25,
        default: processor(16_752.0, 333_364.8, 0.05),
        fallback: processor(0.0, 0.0, 0.15),
        backend: Some(BackendSummary {
            default_requests: 16_752.0,
            default_amount: 333_364.8,
            fallback_requests: 0.0,
            fallback_amount: 0.0,
        }),
        timestamp: "2025-07-10T12:01:11.000Z".into(),
    };
    let score = score::compute(&inputs);
    let results = OfficialResults::new(&inputs, &score);
    let data = RunData {
        plan,
        backend_url: "http://127.0.0.1:19999/api".into(),
        inputs,
        score,
        results,
        // Nothing answered in time: the latency chart has no data.
        seconds: (0..3).map(|_| second(4)).collect(),
        checks: Vec::new(),
        stages: Vec::new(),
        health: Vec::new(),
        usage_samples: Vec::new(),
        books: Vec::new(),
        usage_at_start: Vec::new(),
        requests: 16_800,
        p99_sample_size: 16_790,
        overall_ms: [0.2, 0.5, 1.25, 16.0],
        latency_bins: Vec::new(),
        bench_cpu_seconds: 1.5,
        started_at: "2025-07-10T12:00:00.000Z".into(),
        teardown_at: 61.0,
        end_audit: None,
        scaled: None,
    };
    let judged = judgement(&Thresholds::default(), &data, &LimitsNote::NotApplicable);
    RunOutput {
        data,
        usage: Vec::new(),
        limits: LimitsNote::NotApplicable,
        events: Vec::new(),
        event_counts: EventCounts::default(),
        command: "payroute bench --scenario preview --backend http://127.0.0.1:19999/api".into(),
        provenance: provenance(),
        judgement: judged,
        floor: None,
    }
}

/// A fixed provenance, so that the snapshots do not depend on the commit or machine.
fn provenance() -> Provenance {
    Provenance {
        commit: "0123456789abcdef0123456789abcdef01234567".into(),
        machine: Machine {
            cores: 6,
            cpu_model: "Intel(R) Core(TM) i7-7700 CPU @ 3.60GHz".into(),
            kernel: "6.1.0-37-amd64".into(),
        },
    }
}

/// The figures one a line, each number exactly (`{:?}` prints the shortest string that
/// reads back as the same `f64`).
fn figures_text(o: &RunOutput) -> String {
    figures(o)
        .iter()
        .map(|(name, value)| format!("{name} = {value:?}\n"))
        .collect()
}

/// Compares `actual` with the snapshot `name`, or rewrites it when `UPDATE_SNAPSHOTS`
/// is set.
fn check_snapshot(name: &str, actual: &str) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("src/report/snapshots")
        .join(name);
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (UPDATE_SNAPSHOTS=1 writes it)", path.display()));
    if actual != expected {
        let at = actual
            .chars()
            .zip(expected.chars())
            .position(|(a, b)| a != b)
            .unwrap_or(actual.chars().count().min(expected.chars().count()));
        let around =
            |s: &str| -> String { s.chars().skip(at.saturating_sub(80)).take(160).collect() };
        panic!(
            "{name} differs from {} at character {at}:\n  expected …{}…\n  actual   …{}…",
            path.display(),
            around(&expected),
            around(actual)
        );
    }
}

#[test]
fn report_of_a_run_the_bench_started_is_unchanged() {
    let o = own_run();
    check_snapshot("own.html.snap", &html(&o));
    check_snapshot("own.txt.snap", &summary_text(&o));
    check_snapshot("own.figures.snap", &figures_text(&o));
}

#[test]
fn report_of_a_given_backend_is_unchanged() {
    let o = given_run();
    check_snapshot("given.html.snap", &html(&o));
    check_snapshot("given.txt.snap", &summary_text(&o));
    check_snapshot("given.figures.snap", &figures_text(&o));
}

#[test]
fn processors_with_other_fees_are_warned_about() {
    let mut o = given_run();
    assert!(super::figures::fee_mismatch(&o.data).is_none());
    // Processors started with the final's fees under the preview's scenario.
    o.data.inputs.default.fee_per_transaction = 0.07;
    o.data.inputs.fallback.fee_per_transaction = 0.1;
    assert_eq!(super::figures::fee_mismatch(&o.data), Some((0.07, 0.1)));
    let text = summary_text(&o);
    assert!(
        text.contains("!!! the processors report fees of 7% / 10%") && text.contains("5% / 15%"),
        "{text}"
    );
    assert!(html(&o).contains("<div class=\"warn\">the processors report fees of 7% / 10%"));
}

#[test]
fn time_series_of_a_run_the_bench_started() {
    let o = own_run();
    let ts = super::timeseries(&o.data);
    check_snapshot("own.timeseries.csv.snap", &ts.csv());
    // 11 recorded seconds, samples up to 11.x s: 12 rows.
    assert_eq!(ts.rows.len(), 12);
    let at = |name: &str, i: usize| ts.column(name).unwrap()[i];
    // Accepted so far at the end of 2 s: 0 + 10 + 20. At 2.5 s, when the books were
    // read: 35 accepted, 22.5 booked by the default, 10 by the fallback.
    assert_eq!(at("accepted_total", 2), Some(30.0));
    assert_eq!(at("lag", 2), Some(35.0 - 32.5));
    assert!((at("fallback_share_pct", 2).unwrap() - 1000.0 / 32.5).abs() < 1e-9);
    // The fallback's books did not answer at 6.5 s: no lag, no share that second.
    assert_eq!((at("lag", 6), at("fallback_share_pct", 6)), (None, None));
    assert_eq!(at("held_payments", 3), Some(5.0));
    // worker: 0.1 t + 0.01 t² CPU seconds, so 0.15 core between 2 s and 3 s.
    assert!((at("cpu_pct[worker]", 3).unwrap() - 15.0).abs() < 1e-9);
    assert!((at("throttled_ms_per_s[worker]", 7).unwrap() - 10.0).abs() < 1e-9);
    // Processes without a cgroup have no throttling column.
    assert!(ts.column("throttled_ms_per_s[processor-default]").is_none());
    assert!(ts.column("rss_mb[processor-default]").is_some());
    // bench.json: the same names, null for an empty cell.
    let json = ts.json();
    assert_eq!(json[6]["lag"], serde_json::Value::Null);
    assert_eq!(json[2]["accepted_total"], 30.0);
}

#[test]
fn time_series_without_samples_has_empty_cells() {
    let o = given_run();
    let ts = super::timeseries(&o.data);
    assert_eq!(ts.columns, super::FIXED_COLUMNS);
    assert_eq!(ts.rows.len(), 3);
    let csv = ts.csv();
    // No answered request: latency empty; no /health, no books.
    assert_eq!(
        csv.lines().nth(1).unwrap(),
        "0,43,40,1,0,,,,,1,40,,,,,,,,,,,"
    );
}

#[test]
fn every_time_series_column_is_documented() {
    let doc = std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/BENCHMARKS.md"),
    )
    .unwrap();
    for c in super::FIXED_COLUMNS {
        assert!(doc.contains(&format!("`{c}`")), "docs/BENCHMARKS.md: `{c}`");
    }
    for p in super::PROCESS_COLUMNS {
        assert!(
            doc.contains(&format!("`{p}[NAME]`")),
            "docs/BENCHMARKS.md: `{p}[NAME]`"
        );
    }
}

/// The `data-chart` ids of a page, in order.
fn chart_ids(page: &str) -> Vec<String> {
    page.split("data-chart=\"")
        .skip(1)
        .map(|rest| rest[..rest.find('"').unwrap()].to_string())
        .collect()
}

/// The rows of the page's per-stage table (its header included).
fn stage_table_rows(page: &str) -> usize {
    let table = &page[page.find("<h2>Per stage</h2>").unwrap()..];
    table[..table.find("</table>").unwrap()]
        .matches("<tr>")
        .count()
}

#[test]
fn a_run_the_bench_started_has_every_chart_and_a_row_per_stage() {
    let page = html(&own_run());
    let ids = chart_ids(&page);
    assert_eq!(
        ids,
        [
            "latency",
            "latency-distribution",
            "throughput",
            "lag",
            "books",
            "queue",
            "held",
            "held-age",
            "processed",
            "cpu",
            "rss",
            "throttling"
        ]
    );
    assert!(page.contains(&format!("<body data-charts=\"{}\">", ids.len())));
    // Ten stages of the scaled final, then the drain.
    assert_eq!(stage_table_rows(&page), 1 + 10 + 1);
    assert!(page.contains("(drain)"));
    // The only script is the inline check; nothing is fetched.
    assert_eq!(page.matches("<script").count(), 1);
    assert!(page.contains(super::CHECK_SCRIPT));
    assert!(!page.contains("src=") && !page.contains("href="));
}

#[test]
fn a_given_backend_has_the_charts_it_can() {
    let page = html(&given_run());
    assert_eq!(
        chart_ids(&page),
        ["latency", "latency-distribution", "throughput"]
    );
    // The preview's six stages (none was sent in this fixture), then the drain.
    assert_eq!(stage_table_rows(&page), 1 + 6 + 1);
}

/// With `--floor`: a line in the summary, a table in the page, figures in the list;
/// the ratios are the backend's over the floor's.
#[test]
fn a_floor_shows_in_the_summary_the_report_and_the_figures() {
    use crate::floor::{Comparison, Side};
    let mut o = own_run();
    let mine = Side::of(&o);
    // worker 2.5 - 0.5 s and api1 1.0 - 0.25 s during the test, for 140 payments.
    assert_eq!(mine.cpu_seconds, Some(2.75));
    assert!((mine.cpu_us_per_payment.unwrap() - 2.75e6 / 140.0).abs() < 1e-6);
    assert_eq!(mine.p99_ms, o.data.score.p99);
    let floor = Side {
        p99_ms: 0.25,
        p99_unrounded_ms: 0.2549,
        accepted: 150,
        cpu_seconds: Some(0.15),
        cpu_us_per_payment: Some(1_000.0),
    };
    o.floor = Some(Comparison::new(mine, floor));
    let text = summary_text(&o);
    assert!(
        text.contains("  against the floor       p99 1.25 ms vs the floor's 0.25 ms: 4.92x; CPU per accepted payment 19642.9 µs vs the floor's 1000.0 µs: 19.64x"),
        "{text}"
    );
    let page = html(&o);
    assert!(page.contains("<h2>Against the floor</h2>"), "{page}");
    assert!(page.contains("<td>19.64x</td>"), "{page}");
    let figures = figures(&o);
    let get = |n: &str| figures.iter().find(|(m, _)| m == n).map(|(_, v)| *v);
    assert_eq!(get("floor_p99_ms"), Some(0.25));
    assert!((get("cpu_per_payment_ratio").unwrap() - 2.75e6 / 140.0 / 1_000.0).abs() < 1e-9);
    assert!((get("p99_ratio").unwrap() - 1.2549 / 0.2549).abs() < 1e-9);
}
