//! The load ladder's table (see [`crate::ladder`]) as `ladder.txt` (aligned columns,
//! then notes), `ladder.json` and `ladder.html` (one self-contained page: the same
//! table and notes, inline CSS, no script). One row per rung; the columns for roles
//! and processes are those any rung has, the floor's only with `--floor`.

use super::format::esc;
use crate::floor::times;
use crate::ladder::{Ladder, Row};
use std::fmt::Write as _;

/// A column: its header and one cell per row.
type Column = (String, Vec<String>);

/// `x` with `dp` decimals, or `n/a`.
fn cell(x: Option<f64>, dp: usize) -> String {
    x.map_or("n/a".into(), |v| format!("{v:.dp$}"))
}

/// The keys of one map of every row, each once, in order.
fn keys(rows: &[Row], map: impl Fn(&Row) -> Vec<String>) -> Vec<String> {
    let mut all: Vec<String> = rows.iter().flat_map(map).collect();
    all.sort();
    all.dedup();
    all
}

/// Every column of the table.
fn columns(l: &Ladder) -> Vec<Column> {
    let rows = &l.rows;
    let col = |h: &str, f: &dyn Fn(&Row) -> String| (h.to_string(), rows.iter().map(f).collect());
    let mut c: Vec<Column> = vec![
        col("rung", &|r| r.rung.clone()),
        col("VUs", &|r| r.vus.to_string()),
        col("req/s", &|r| cell(r.requests_per_s, 1)),
        col("peak req/s", &|r| cell(r.peak_requests_per_s, 0)),
        col("p99 ms", &|r| cell(r.p99_ms, 2)),
        col("failed POSTs", &|r| cell(r.failed_posts, 0)),
        col("inconsistencies", &|r| cell(r.inconsistencies, 0)),
        col("lag", &|r| cell(r.lag, 0)),
        col("exits", &|r| cell(r.process_exits, 0)),
        col("restarts", &|r| cell(r.process_restarts, 0)),
    ];
    for role in keys(rows, |r| r.cpu_us_per_payment.keys().cloned().collect()) {
        let cells = rows
            .iter()
            .map(|r| cell(r.cpu_us_per_payment.get(&role).copied(), 1))
            .collect();
        c.push((format!("CPU µs/payment {role}"), cells));
    }
    for name in keys(rows, |r| r.peak_rss_mb.keys().cloned().collect()) {
        let cells = rows
            .iter()
            .map(|r| cell(r.peak_rss_mb.get(&name).copied(), 1))
            .collect();
        c.push((format!("peak RSS MB {name}"), cells));
    }
    c.push(col("bench CPU s", &|r| cell(r.bench_cpu_seconds, 2)));
    c.push(col("bench cores", &|r| cell(r.bench_cpu_cores, 3)));
    if rows.iter().any(|r| r.floor_p99_ms.is_some()) {
        c.push(col("floor p99 ms", &|r| cell(r.floor_p99_ms, 2)));
        c.push(col("p99 ratio", &|r| times(r.p99_ratio)));
        c.push(col("floor CPU µs/payment", &|r| {
            cell(r.floor_cpu_us_per_payment, 1)
        }));
        c.push(col("CPU ratio", &|r| times(r.cpu_ratio)));
    }
    c
}

/// What the table does not say by itself: the run, the open-files limit, the limits
/// of each rung, the floor, and how the CPU columns are computed.
fn notes(l: &Ladder) -> Vec<String> {
    let multiples: Vec<String> = l.rows.iter().map(|r| r.rung.clone()).collect();
    let mut n = vec![format!(
        "{} ({:.0} s) at {} of {} VUs; each rung a fresh run of its own, in rung-Nx/; medians over --runs",
        l.scenario.name(),
        l.duration_seconds,
        multiples.join(", "),
        l.base_vus
    )];
    let f = &l.open_files;
    let show = |x: Option<u64>| x.map_or("unlimited".to_string(), |v| v.to_string());
    n.push(format!(
        "{}open files: limit {} (hard {}), the top rung needs {} (one connection per VU, plus spare)",
        if f.enough() { "" } else { "!!! NOT ENOUGH: " },
        show(f.now),
        show(f.hard),
        f.needed
    ));
    let mut limits: Vec<(String, Vec<String>)> = Vec::new();
    for r in &l.rows {
        match limits.iter_mut().find(|(text, _)| *text == r.limits) {
            Some((_, rungs)) => rungs.push(r.rung.clone()),
            None => limits.push((r.limits.clone(), vec![r.rung.clone()])),
        }
    }
    for (text, rungs) in limits {
        n.push(format!("limits at {}: {text}", rungs.join(", ")));
    }
    if let Some(note) = &l.floor_note {
        n.push(note.clone());
    }
    n.push("CPU µs/payment ROLE: CPU seconds of that role's processes during the test (api: api1 + api2) / payments accepted; bench: the load generator itself, on the same machine".into());
    n
}

/// `ladder.txt`: a title, the aligned table, the notes.
pub fn ladder_text(l: &Ladder) -> String {
    let cols = columns(l);
    let widths: Vec<usize> = cols
        .iter()
        .map(|(h, cells)| {
            cells
                .iter()
                .map(|c| c.chars().count())
                .chain([h.chars().count()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: Vec<&str>| -> String {
        let mut s = String::new();
        for (i, (c, w)) in cells.iter().zip(&widths).enumerate() {
            match i {
                0 => s.push_str(&format!("{c:<w$}")),
                _ => s.push_str(&format!("  {c:>w$}")),
            }
        }
        s.trim_end().to_string() + "\n"
    };
    let mut t = format!("load ladder: {}\n", l.scenario.name());
    t.push_str(&line(cols.iter().map(|(h, _)| h.as_str()).collect()));
    for i in 0..l.rows.len() {
        t.push_str(&line(cols.iter().map(|(_, c)| c[i].as_str()).collect()));
    }
    for n in notes(l) {
        t.push_str(&format!("  {n}\n"));
    }
    t
}

/// `ladder.json`: the whole [`Ladder`].
pub fn ladder_json(l: &Ladder) -> String {
    serde_json::to_string_pretty(l).unwrap_or_default()
}

/// `ladder.html`: the table and its notes on one page.
pub fn ladder_html(l: &Ladder) -> String {
    let title = format!("payroute bench — load ladder — {}", l.scenario.name());
    let mut h = format!(
        r#"<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{0}</title><style>body{{font-family:sans-serif;margin:24px;color:#222}} table{{border-collapse:collapse;font-size:13px}} td,th{{border:1px solid #ccc;padding:3px 8px;text-align:right}} th{{background:#f3f3f3}} td.l,th.l{{text-align:left}} .warn{{color:#d62728;font-weight:bold}}</style></head><body><h1>{0}</h1><table><tr>"#,
        esc(&title)
    );
    let cols = columns(l);
    for (i, (head, _)) in cols.iter().enumerate() {
        let class = if i == 0 { r#" class="l""# } else { "" };
        let _ = write!(h, "<th{class}>{}</th>", esc(head));
    }
    h.push_str("</tr>");
    for i in 0..l.rows.len() {
        h.push_str("<tr>");
        for (k, (_, cells)) in cols.iter().enumerate() {
            let class = if k == 0 { r#" class="l""# } else { "" };
            let _ = write!(h, "<td{class}>{}</td>", esc(&cells[i]));
        }
        h.push_str("</tr>");
    }
    h.push_str("</table>");
    for n in notes(l) {
        let class = if n.starts_with("!!!") {
            r#" class="warn""#
        } else {
            ""
        };
        let _ = write!(h, "<p{class}>{}</p>", esc(&n));
    }
    h.push_str("<p>Each rung's own report: <code>rung-Nx/report.html</code> (and, with --floor, the floor run each run is compared with in <code>floor/</code> beside it).</p></body></html>");
    h
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fdlimit::OpenFiles;
    use crate::ladder::{no_floor_note, row, Rung};
    use crate::scenario::Scenario;

    fn figures(p99: f64, api: f64, floor: bool) -> Vec<(String, f64)> {
        let mut v = vec![
            ("requests_per_s".to_string(), 280.25),
            ("peak_requests_per_s".into(), 560.0),
            ("p99_ms".into(), p99),
            ("payments_failed".into(), 0.0),
            ("inconsistencies".into(), 0.0),
            ("lag".into(), 0.0),
            ("process_exits".into(), 0.0),
            ("process_restarts".into(), 0.0),
            ("cpu_us_per_payment[api]".into(), api),
            ("cpu_us_per_payment[worker]".into(), 90.0),
            ("peak_rss_mb[api1]".into(), 9.9),
            ("peak_rss_mb[api2]".into(), 9.7),
            ("peak_rss_mb[worker]".into(), 31.0),
            ("bench_cpu_seconds".into(), 1.25),
            ("bench_cpu_cores".into(), 0.02),
        ];
        if floor {
            v.extend([
                ("floor_p99_ms".into(), 0.21),
                ("p99_ratio".into(), 3.0),
                ("floor_cpu_us_per_payment".into(), 10.0),
                ("cpu_per_payment_ratio".into(), 15.0),
            ]);
        }
        v
    }

    fn ladder(floor: bool) -> Ladder {
        let rung = |m: f64, vus: u32| Rung { multiplier: m, vus };
        let limits = "challenge limits enforced: cgroup v1".to_string();
        Ladder {
            scenario: Scenario::Preview,
            base_vus: 550,
            duration_seconds: 60.0,
            open_files: OpenFiles {
                before: Some(1_024),
                now: Some(4_096),
                hard: Some(4_096),
                needed: 5_756,
                vus: 5_500,
            },
            floor_note: (!floor).then(|| no_floor_note(true)),
            rows: vec![
                row(
                    &rung(1.0, 550),
                    &[figures(0.63, 60.0, floor)],
                    limits.clone(),
                ),
                row(&rung(10.0, 5_500), &[figures(12.5, 95.5, floor)], limits),
            ],
        }
    }

    #[test]
    fn the_text_table_has_a_column_per_figure_role_and_process() {
        let text = ladder_text(&ladder(false));
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "load ladder: preview");
        let head = lines[1];
        for h in [
            "rung",
            "VUs",
            "req/s",
            "peak req/s",
            "p99 ms",
            "failed POSTs",
            "inconsistencies",
            "lag",
            "restarts",
            "CPU µs/payment api",
            "CPU µs/payment worker",
            "peak RSS MB api1",
            "peak RSS MB worker",
            "bench CPU s",
            "bench cores",
        ] {
            assert!(head.contains(h), "{h}: {head}");
        }
        assert!(!head.contains("floor"), "{head}");
        assert!(
            lines[2].starts_with("1x  ") && lines[2].contains(" 550 ") && lines[2].contains("0.63"),
            "{}",
            lines[2]
        );
        assert!(
            lines[3].starts_with("10x ") && lines[3].contains("5500") && lines[3].contains("95.5"),
            "{}",
            lines[3]
        );
        // Aligned: every cell ends where its header does.
        let chars = |l: &str| l.chars().count();
        assert_eq!(chars(lines[1]), chars(lines[2]));
        assert!(
            text.contains(
                "!!! NOT ENOUGH: open files: limit 4096 (hard 4096), the top rung needs 5756"
            ),
            "{text}"
        );
        assert!(
            text.contains("limits at 1x, 10x: challenge limits enforced: cgroup v1"),
            "{text}"
        );
        assert!(text.contains("floor not measured: add --floor"), "{text}");
    }

    #[test]
    fn with_a_floor_the_table_has_its_p99_and_the_ratios() {
        let l = ladder(true);
        let text = ladder_text(&l);
        let head = text.lines().nth(1).unwrap();
        assert!(
            head.ends_with("floor p99 ms  p99 ratio  floor CPU µs/payment  CPU ratio"),
            "{head}"
        );
        assert!(
            text.lines()
                .nth(2)
                .unwrap()
                .ends_with("0.21      3.00x                  10.0     15.00x"),
            "{text}"
        );
        assert!(!text.contains("floor not measured"));
        let v: serde_json::Value = serde_json::from_str(&ladder_json(&l)).unwrap();
        assert_eq!(v["rows"][1]["vus"], 5_500);
        assert_eq!(v["rows"][0]["p99_ratio"], 3.0);
        assert_eq!(v["rows"][0]["cpu_us_per_payment"]["worker"], 90.0);
        assert_eq!(v["open_files"]["needed"], 5_756);
        let page = ladder_html(&l);
        assert!(page.starts_with("<!DOCTYPE html>") && page.contains("<th>p99 ratio</th>"));
        assert!(
            page.contains("<td>15.00x</td>") && page.contains(r#"<p class="warn">!!! NOT ENOUGH"#)
        );
        assert!(!page.contains("<script") && !page.contains("src=") && !page.contains("href="));
    }
}
