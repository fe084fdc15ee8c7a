//! The scaled topology's figures as the user sees them (see [`crate::scaled`]): lines
//! of the summary, a section of `report.html`, and the table of several worker counts
//! (`--workers 1,2,3`: `scale.txt`, `scale.json`).

use super::figures::cpu_during_test;
use super::format::esc;
use super::runs::median;
use super::RunOutput;
use crate::scaled::{role_cpu, ScaledData};
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// The figures of a run of the official scenarios scaled out: accepts per second of
/// the test, processed (the processors' books at the teardown) per second until the
/// teardown, CPU per payment by role, the ledger's cost, the kill's.
pub fn scenario_figures(o: &RunOutput) -> Vec<(String, f64)> {
    let Some(s) = &o.data.scaled else {
        return Vec::new();
    };
    let d = &o.data;
    let processed = d.inputs.default.total_requests + d.inputs.fallback.total_requests;
    s.figures(
        &cpu_by_process(o),
        d.inputs.successes,
        processed,
        d.plan.duration.as_secs_f64(),
        d.teardown_at,
    )
}

/// CPU seconds of each started process during the test.
fn cpu_by_process(o: &RunOutput) -> Vec<(String, f64)> {
    o.usage
        .iter()
        .map(|p| (p.name.clone(), cpu_during_test(o, p)))
        .collect()
}

/// The scaled run's figures as `(label, sentence)` rows, for the summary and the page;
/// `figures`: the run's figures by name, `cpu`: each process's CPU seconds during it.
fn rows(s: &ScaledData, figures: &[(String, f64)], cpu: &[(String, f64)]) -> Vec<(String, String)> {
    let get = |n: &str| figures.iter().find(|(k, _)| k == n).map(|x| x.1);
    let mut rows = vec![(
        "scaled out".to_string(),
        format!("{} worker(s), ledger {}", s.workers, s.ledger),
    )];
    if let (Some(a), Some(p)) = (get("accepts_per_s"), get("processed_per_s")) {
        rows.push((
            "rates".into(),
            format!(
                "{a:.1} accepted/s over the load, {p:.1} processed/s until the books were read"
            ),
        ));
    }
    let accepted = get("payments_ok").unwrap_or(0.0) as u64;
    let roles: Vec<String> = role_cpu(cpu, accepted)
        .iter()
        .filter_map(|r| Some(format!("{} {:.3}", r.name, r.ms_per_payment?)))
        .collect();
    if !roles.is_empty() {
        rows.push(("CPU ms per payment".into(), roles.join(", ")));
    }
    if let (Some(wal), Some(tx), Some(rows_w)) = (
        get("db_wal_bytes_per_payment"),
        get("db_transactions_per_payment"),
        get("db_rows_written_per_payment"),
    ) {
        rows.push((
            "ledger per payment".into(),
            format!(
                "{wal:.0} WAL bytes, {tx:.2} transactions, {rows_w:.2} rows written ({:.2} inserted, {:.2} updated); the bench's own {} transactions left out",
                get("db_rows_inserted_per_payment").unwrap_or(0.0),
                get("db_rows_updated_per_payment").unwrap_or(0.0),
                get("db_bench_transactions").unwrap_or(0.0)
            ),
        ));
    }
    if let Some(e) = &s.db_error {
        rows.push(("!!! ledger".into(), format!("counters not read: {e}")));
    }
    if let Some(k) = &s.kill {
        rows.push((format!("killed {}", k.role), kill_sentence(figures, k)));
    }
    rows
}

/// What the kill cost, in one sentence.
fn kill_sentence(figures: &[(String, f64)], k: &crate::scaled::KillRecord) -> String {
    let get = |n: &str| figures.iter().find(|(x, _)| x == n).map(|x| x.1);
    let when = |x: Option<f64>| {
        x.map_or("not within the run".into(), |s| {
            format!("{s:.1} s after the kill")
        })
    };
    let f = k.failures();
    let mut s = format!(
        "at {:.1} s (pid {}), restarted {}; {} POSTs failed from then on ({} answered 503, {} not answered); it owned {} pending payments: all finished {}; orphans (pending, owner's lease lapsed) peaked at {}, back to 0 for good {}",
        k.at_s,
        k.pid,
        when(k.restarted_after_s),
        f.failed,
        f.unavailable,
        f.no_answer,
        k.owned_at_kill,
        when(get("kill_owned_finished_after_s")),
        k.orphans_peak(),
        when(get("kill_orphans_zero_after_s")),
    );
    if k.failed_polls > 0 {
        let e = k.last_error.as_deref().unwrap_or("");
        let _ = write!(s, "; {} polls failed ({e})", k.failed_polls);
    }
    s
}

/// The summary's lines of a scaled run (nothing otherwise).
pub fn scaled_lines(
    t: &mut String,
    s: Option<&ScaledData>,
    figures: &[(String, f64)],
    cpu: &[(String, f64)],
) {
    for (label, text) in s.map(|s| rows(s, figures, cpu)).unwrap_or_default() {
        let _ = writeln!(t, "  {label:<24}{text}");
    }
}

/// The summary's lines of a scaled run of the official scenarios.
pub(super) fn scenario_lines(t: &mut String, o: &RunOutput) {
    let figures = super::figures(o);
    scaled_lines(t, o.data.scaled.as_ref(), &figures, &cpu_by_process(o));
}

/// `report.html`'s section of a scaled run (nothing otherwise).
pub(super) fn html_section(h: &mut String, o: &RunOutput) {
    let Some(s) = &o.data.scaled else {
        return;
    };
    let figures = super::figures(o);
    h.push_str("<h2>Scaled out</h2><table>");
    for (label, text) in rows(s, &figures, &cpu_by_process(o)) {
        let _ = write!(
            h,
            "<tr><th class=\"l\">{}</th><td class=\"l\">{}</td></tr>",
            esc(&label),
            esc(&text)
        );
    }
    h.push_str(
        "</table><p>See docs/BENCHMARKS.md, \"Scaling out\", for what each figure means.</p>",
    );
}

/// One worker count of `--workers 1,2,3`: medians over its runs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScaleRow {
    pub workers: usize,
    pub runs: usize,
    pub accepts_per_s: Option<f64>,
    pub processed_per_s: Option<f64>,
    pub p99_ms: Option<f64>,
    /// CPU ms per accepted payment by role (`api`, `worker`, `postgres`, ...).
    pub cpu_ms_per_payment: BTreeMap<String, f64>,
    pub wal_bytes_per_payment: Option<f64>,
    pub transactions_per_payment: Option<f64>,
    pub rows_written_per_payment: Option<f64>,
    pub failed_posts: Option<f64>,
    pub lag: Option<f64>,
    /// The checker's (a scenario's runs; none in a throughput run).
    pub inconsistencies: Option<f64>,
    /// With `--kill-worker`: the POSTs that failed from the kill on, and the seconds
    /// from the kill until the payments the killed worker owned were finished.
    pub kill_failed_posts: Option<f64>,
    pub kill_finished_after_s: Option<f64>,
}

/// The row of `workers` from the figures of its runs.
pub fn scale_row(workers: usize, runs: &[Vec<(String, f64)>]) -> ScaleRow {
    let med = |name: &str| {
        let v: Vec<f64> = runs
            .iter()
            .filter_map(|r| r.iter().find(|(n, _)| n == name).map(|x| x.1))
            .collect();
        (!v.is_empty()).then(|| median(&v))
    };
    let mut cpu = BTreeMap::new();
    for (name, _) in runs.iter().flatten() {
        let Some(role) = name
            .strip_prefix("cpu_ms_per_payment[")
            .and_then(|r| r.strip_suffix(']'))
        else {
            continue;
        };
        // Roles only: a worker's own row (`worker2`) is left to each run's files.
        if !role.ends_with(|c: char| c.is_ascii_digit()) {
            if let Some(m) = med(name) {
                cpu.insert(role.to_string(), m);
            }
        }
    }
    ScaleRow {
        workers,
        runs: runs.len(),
        accepts_per_s: med("accepts_per_s"),
        processed_per_s: med("processed_per_s"),
        p99_ms: med("p99_ms"),
        cpu_ms_per_payment: cpu,
        wal_bytes_per_payment: med("db_wal_bytes_per_payment"),
        transactions_per_payment: med("db_transactions_per_payment"),
        rows_written_per_payment: med("db_rows_written_per_payment"),
        failed_posts: med("payments_failed"),
        lag: med("lag"),
        inconsistencies: med("inconsistencies"),
        kill_failed_posts: med("kill_failed_posts"),
        kill_finished_after_s: med("kill_owned_finished_after_s"),
    }
}

/// `scale.txt`: one line per worker count.
pub fn scale_text(rows: &[ScaleRow]) -> String {
    let roles: Vec<&String> = {
        let mut r: Vec<&String> = rows
            .iter()
            .flat_map(|r| r.cpu_ms_per_payment.keys())
            .collect();
        r.sort();
        r.dedup();
        r
    };
    let mut t = format!(
        "{:>7} {:>10} {:>11} {:>8}",
        "workers", "accepts/s", "processed/s", "p99 ms"
    );
    for r in &roles {
        let _ = write!(t, " {:>13}", format!("{r} ms/pay"));
    }
    let _ = write!(
        t,
        " {:>9} {:>9} {:>9} {:>7} {:>7} {:>7}",
        "WAL B/pay", "xacts/pay", "rows/pay", "failed", "lag", "incons."
    );
    let killed = rows.iter().any(|r| r.kill_failed_posts.is_some());
    if killed {
        let _ = write!(t, " {:>10} {:>11}", "kill fails", "kill done s");
    }
    let _ = writeln!(t, " {:>4}", "runs");
    let n = |x: Option<f64>, w: usize, p: usize| {
        x.map_or(format!("{:>w$}", "-"), |x| format!("{x:>w$.p$}"))
    };
    for row in rows {
        let _ = write!(
            t,
            "{:>7} {} {} {}",
            row.workers,
            n(row.accepts_per_s, 10, 1),
            n(row.processed_per_s, 11, 1),
            n(row.p99_ms, 8, 2)
        );
        for r in &roles {
            let _ = write!(t, " {}", n(row.cpu_ms_per_payment.get(*r).copied(), 13, 3));
        }
        let _ = write!(
            t,
            " {} {} {} {} {} {}",
            n(row.wal_bytes_per_payment, 9, 0),
            n(row.transactions_per_payment, 9, 2),
            n(row.rows_written_per_payment, 9, 2),
            n(row.failed_posts, 7, 0),
            n(row.lag, 7, 0),
            n(row.inconsistencies, 7, 0),
        );
        if killed {
            let _ = write!(
                t,
                " {} {}",
                n(row.kill_failed_posts, 10, 0),
                n(row.kill_finished_after_s, 11, 1)
            );
        }
        let _ = writeln!(t, " {:>4}", row.runs);
    }
    t
}

/// What the columns of `scale.txt` mean, under its table.
pub const SCALE_LEGEND: &str = "\
  accepts/s: POSTs answered 2XX per second of load; processed/s: the processors' books
  per second until they were read (teardown, or the end of a throughput run's drain);
  p99 ms: of the POSTs. ROLE ms/pay: CPU milliseconds per accepted payment of every
  process of the role (postgres: the postmaster and its backends). WAL B/pay,
  xacts/pay, rows/pay: what the ledger wrote per accepted payment (PostgreSQL's
  counters before and after the test; the bench's own transactions left out).
  failed: POSTs not answered 2XX; lag: accepted minus processed; incons.: the
  checker's inconsistencies. kill fails / kill done s (--kill-worker): POSTs failed
  from the kill on, seconds from the kill until the killed worker's payments were
  finished. Everything shares this machine's cores: cost per payment, not a curve.
";

/// `scale.json`.
pub fn scale_json(kind: &str, rows: &[ScaleRow]) -> String {
    let v = serde_json::json!({ "kind": kind, "rows": rows });
    serde_json::to_string_pretty(&v).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(accepts: f64, p99: f64, worker_ms: f64) -> Vec<(String, f64)> {
        vec![
            ("accepts_per_s".into(), accepts),
            ("p99_ms".into(), p99),
            ("cpu_ms_per_payment[worker]".into(), worker_ms),
            ("cpu_ms_per_payment[worker1]".into(), worker_ms),
            ("db_wal_bytes_per_payment".into(), 2000.0),
        ]
    }

    #[test]
    fn a_scale_row_is_the_median_of_its_runs_and_the_table_shows_it() {
        let row = scale_row(
            2,
            &[
                run(100.0, 3.0, 0.5),
                run(300.0, 1.0, 0.7),
                run(200.0, 2.0, 0.6),
            ],
        );
        assert_eq!(row.accepts_per_s, Some(200.0));
        assert_eq!(row.p99_ms, Some(2.0));
        assert_eq!(
            row.cpu_ms_per_payment.keys().collect::<Vec<_>>(),
            ["worker"]
        );
        assert_eq!(row.cpu_ms_per_payment["worker"], 0.6);
        assert_eq!(row.processed_per_s, None);
        let one = scale_row(1, &[run(50.0, 1.5, 0.25)]);
        let text = scale_text(&[one, row]);
        let lines: Vec<&str> = text.lines().collect();
        assert!(
            lines[0].contains("accepts/s") && lines[0].contains("worker ms/pay"),
            "{text}"
        );
        assert!(
            lines[1].trim_start().starts_with("1 ") && lines[1].contains("50.0"),
            "{text}"
        );
        assert!(
            lines[2].contains("200.0") && lines[2].contains("0.600"),
            "{text}"
        );
        assert!(lines[2].contains("2000"), "{text}");
        let json: serde_json::Value = serde_json::from_str(&scale_json("throughput", &[])).unwrap();
        assert_eq!(json["kind"], "throughput");
    }

    /// Figures, or CPU seconds, by name.
    type Named = Vec<(String, f64)>;

    /// A run of two workers with worker1 killed: its data, figures and CPU by process.
    fn killed_run() -> (ScaledData, Named, Named) {
        use crate::scaled::{DbCounters, Failures, KillPoll, KillRecord};
        let counters = |wal, commits, ins, upd, bench| DbCounters {
            wal_lsn_bytes: wal,
            xact_commit: commits,
            tup_inserted: ins,
            tup_updated: upd,
            bench_commits: bench,
            ..DbCounters::default()
        };
        let poll = |t, orphans, owned_pending| KillPoll {
            t,
            orphans,
            owned_pending,
        };
        let s = ScaledData {
            workers: 2,
            ledger: "postgres (a throwaway cluster)".into(),
            db_before: Some(counters(0, 10, 0, 0, 1)),
            db_after: Some(counters(2_000_000, 2_651, 1000, 2000, 42)),
            kill: Some(KillRecord {
                role: "worker1".into(),
                at_s: 8.0,
                pid: 4242,
                owned_at_kill: 272,
                restarted_after_s: Some(0.6),
                failures_at_kill: Failures::default(),
                failures_at_end: Failures {
                    failed: 3,
                    unavailable: 2,
                    no_answer: 1,
                },
                polls: vec![poll(0.1, 0, 272), poll(0.6, 5, 272), poll(6.6, 0, 0)],
                watched_s: 13.0,
                ..KillRecord::default()
            }),
            ..ScaledData::default()
        };
        let cpu: Vec<(String, f64)> = [
            ("processor-default", 1.0),
            ("postgres", 1.5),
            ("worker1", 0.25),
            ("worker2", 0.25),
            ("api1", 0.1),
        ]
        .iter()
        .map(|(n, c)| (n.to_string(), *c))
        .collect();
        let mut figures = vec![
            ("payments_ok".to_string(), 1000.0),
            ("payments_failed".into(), 3.0),
            ("inconsistencies".into(), 0.0),
            ("lag".into(), 0.0),
            ("p99_ms".into(), 8.5),
        ];
        figures.extend(s.figures(&cpu, 1000, 1000.0, 20.0, 25.0));
        (s, figures, cpu)
    }

    #[test]
    fn the_summary_shows_rates_cpu_the_ledger_and_the_kill() {
        let (s, figures, cpu) = killed_run();
        let mut t = String::new();
        scaled_lines(&mut t, Some(&s), &figures, &cpu);
        let line = |label: &str| {
            t.lines()
                .find(|l| l.trim_start().starts_with(label))
                .unwrap_or_else(|| panic!("no {label:?} in:\n{t}"))
                .to_string()
        };
        assert!(
            line("scaled out").contains("2 worker(s), ledger postgres"),
            "{t}"
        );
        let rates = line("rates");
        assert!(
            rates.contains("50.0 accepted/s") && rates.contains("40.0 processed/s"),
            "{t}"
        );
        let cpu_line = line("CPU ms per payment");
        for part in [
            "postgres 1.500",
            "worker 0.500",
            "api 0.100",
            "worker1 0.250",
        ] {
            assert!(cpu_line.contains(part), "{part}: {t}");
        }
        assert!(!cpu_line.contains("processor"), "{t}");
        // 2 MB of WAL, 2641 commits of which 41 the bench's: 2.6 per payment.
        let ledger = line("ledger per payment");
        assert!(
            ledger.contains("2000 WAL bytes, 2.60 transactions, 3.00 rows written"),
            "{t}"
        );
        assert!(ledger.contains("own 41 transactions"), "{t}");
        let kill = line("killed worker1");
        for part in [
            "at 8.0 s (pid 4242)",
            "restarted 0.6 s after the kill",
            "3 POSTs failed from then on (2 answered 503, 1 not answered)",
            "272 pending payments: all finished 6.6 s after the kill",
            "peaked at 5, back to 0 for good 6.6 s after the kill",
        ] {
            assert!(kill.contains(part), "{part}: {t}");
        }
        // Not a scaled run: nothing.
        let mut none = String::new();
        scaled_lines(&mut none, None, &figures, &cpu);
        assert!(none.is_empty());
    }

    #[test]
    fn the_table_shows_inconsistencies_and_the_kill_when_there_was_one() {
        let (_, figures, _) = killed_run();
        let row = scale_row(2, &[figures]);
        assert_eq!(row.inconsistencies, Some(0.0));
        assert_eq!(row.kill_failed_posts, Some(3.0));
        assert_eq!(
            row.kill_finished_after_s.map(|x| (x * 10.0).round()),
            Some(66.0)
        );
        assert_eq!(
            row.cpu_ms_per_payment.keys().collect::<Vec<_>>(),
            ["api", "postgres", "worker"]
        );
        let text = scale_text(std::slice::from_ref(&row));
        let (head, line) = (text.lines().next().unwrap(), text.lines().nth(1).unwrap());
        assert!(
            head.contains("incons.") && head.contains("kill done s"),
            "{text}"
        );
        let cells: Vec<&str> = line.split_whitespace().collect();
        // workers accepts processed p99 api postgres worker WAL xacts rows failed lag
        // incons. kill-fails kill-done runs
        assert_eq!(
            cells,
            [
                "2", "50.0", "40.0", "8.50", "0.100", "1.500", "0.500", "2000", "2.60", "3.00",
                "3", "0", "0", "3", "6.6", "1"
            ],
            "{text}"
        );
        // Without a kill, no kill columns.
        let mut quiet = row.clone();
        (quiet.kill_failed_posts, quiet.kill_finished_after_s) = (None, None);
        assert!(!scale_text(&[quiet]).contains("kill"));
        let json: serde_json::Value = serde_json::from_str(&scale_json("final", &[row])).unwrap();
        assert_eq!(json["rows"][0]["transactions_per_payment"], 2.6);
    }
}
