//! `payroute bench --floor` and `--ladder` end to end, shortened: the preview scaled to
//! 5 s with 10 VUs against payroute and against the floor (nginx answering at once),
//! the ratios in the summary and bench.json; and a two-rung ladder (10 and 20 VUs)
//! with its table.
//!
//! Everything on 127.0.0.1 and free ports, limits off (the tests must not depend on
//! cgroups being writable); the bench stops what it started, by PID, and the floor
//! test checks that nginx is gone. Bounded: four runs of 5 s plus start and teardown.
//! No timing assertions: latencies and CPU on a shared machine are what they are; the
//! checks are that the figures exist, are positive where they must be, and add up.
//! The floor test needs nginx: without it, it is skipped with a message, except when
//! `CI` is set (scripts/install-deps.sh installs it there).

mod common;

use std::path::Path;
use std::process::{Command, Output};

const EXE: &str = env!("CARGO_BIN_EXE_payroute");

/// `payroute bench ARGS` on free ports, limits off, progress off: its output.
fn bench(out: &Path, args: &[&str]) -> Output {
    let o = Command::new(EXE)
        .arg("bench")
        .args(["--no-progress", "--port", "0", "--emulator-ports", "0,0"])
        .args(["--limits", "off", "--duration", "5", "--max-requests", "10"])
        .arg("--out")
        .arg(out)
        .args(args)
        .output()
        .expect("running payroute bench");
    assert!(o.status.success(), "payroute bench failed\n{}", both(&o));
    o
}

fn both(o: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn read_json(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).expect("valid JSON")
}

#[test]
fn the_floor_runs_beside_payroute_and_gives_ratios() {
    if common::require_program("nginx").is_none() {
        return;
    }
    let dir = common::test_dir("bench-floor");
    let o = bench(&dir, &["--scenario", "preview", "--floor"]);
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        stdout.contains("floor (nginx answering at once, 10 VUs): p99 "),
        "{}",
        both(&o)
    );
    assert!(
        stdout.contains("  against the floor       p99 "),
        "{}",
        both(&o)
    );
    // The floor's own run, in floor/: every POST accepted at once, nothing booked.
    let floor = read_json(&dir.join("floor/bench.json"));
    assert!(floor["limits"]
        .as_str()
        .unwrap()
        .starts_with("the floor: nginx"));
    let fr = read_json(&dir.join("floor/partial-results.json"));
    assert_eq!(fr["participante"], "floor");
    assert_eq!(
        fr["pagamentos_solicitados"]["qtd_falha"].as_f64(),
        Some(0.0)
    );
    let nginx = floor["processes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "floor-nginx")
        .expect("the floor's nginx among the processes");
    let pid = nginx["pid"].as_u64().unwrap();
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "nginx {pid} is still running"
    );
    // payroute's run, compared with it.
    let b = read_json(&dir.join("bench.json"));
    let c = &b["floor"];
    let accepted = c["floor"]["accepted"].as_f64().unwrap();
    assert!(accepted >= 20.0, "{c}");
    assert!(c["floor"]["cpu_seconds"].as_f64().unwrap() > 0.0, "{c}");
    assert!(c["backend"]["cpu_seconds"].as_f64().unwrap() > 0.0, "{c}");
    let p99 = |side: &str| c[side]["p99_unrounded_ms"].as_f64().unwrap();
    let ratio = c["p99_ratio"].as_f64().unwrap();
    assert!((ratio - p99("backend") / p99("floor")).abs() < 1e-9, "{c}");
    let per = |side: &str| c[side]["cpu_us_per_payment"].as_f64().unwrap();
    let cpu_ratio = c["cpu_ratio"].as_f64().unwrap();
    assert!(
        (cpu_ratio - per("backend") / per("floor")).abs() < 1e-9,
        "{c}"
    );
    assert_eq!(b["figures"]["p99_ratio"].as_f64(), Some(ratio));
    assert!(b["process_events"]["restarts"].as_u64().is_some());
    let page = std::fs::read_to_string(dir.join("report.html")).unwrap();
    assert!(page.contains("<h2>Against the floor</h2>"));
    std::fs::remove_dir_all(&dir).ok();
}

/// With `--runs`, each run is paired with a floor run just before it (in its own
/// `run-K/floor/`) and compared with that one: on a shared machine the floor's own p99
/// moves between runs as much as the backend's, so a ratio is only worth its pair.
#[test]
fn with_runs_each_run_has_a_floor_of_its_own() {
    if common::require_program("nginx").is_none() {
        return;
    }
    let dir = common::test_dir("bench-floor-runs");
    let o = bench(&dir, &["--scenario", "preview", "--floor", "--runs", "2"]);
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert_eq!(
        stdout
            .matches("floor (nginx answering at once, 10 VUs): p99 ")
            .count(),
        2,
        "{}",
        both(&o)
    );
    assert!(!dir.join("floor").exists(), "one floor for every run");
    let mut ratios = Vec::new();
    for k in 1..=2 {
        let run = dir.join(format!("run-{k}"));
        let floor = read_json(&run.join("floor/bench.json"));
        let b = read_json(&run.join("bench.json"));
        let paired = b["floor"]["floor"]["p99_unrounded_ms"].as_f64().unwrap();
        assert_eq!(
            floor["figures"]["p99_unrounded_ms"].as_f64(),
            Some(paired),
            "run {k} is compared with its own floor"
        );
        ratios.push(b["figures"]["p99_ratio"].as_f64().unwrap());
    }
    // The summary's ratio is the median of the pairs' ratios (of two: their mean).
    let summary = read_json(&dir.join("runs-summary.json"));
    let median = summary["figures"]["p99_ratio"]["median"].as_f64().unwrap();
    assert!(
        (median - (ratios[0] + ratios[1]) / 2.0).abs() < 1e-3,
        "{summary}"
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn a_two_rung_ladder_writes_one_table() {
    let dir = common::test_dir("bench-ladder");
    let o = bench(&dir, &["--ladder", "1,2"]);
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        stdout.contains("load ladder: rung 2x (20 VUs)"),
        "{}",
        both(&o)
    );
    // The preview by default: its result file in each rung.
    for rung in ["rung-1x", "rung-2x"] {
        let r = read_json(&dir.join(rung).join("partial-results.json"));
        assert!(r["lag"]["lag"].as_f64().unwrap() >= 0.0, "{rung}: {r}");
    }
    let text = std::fs::read_to_string(dir.join("ladder.txt")).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "load ladder: preview", "{text}");
    assert!(lines[1].starts_with("rung  VUs  req/s"), "{text}");
    assert!(
        lines[2].starts_with("1x     10 ") && lines[3].starts_with("2x     20 "),
        "{text}"
    );
    assert!(text.contains("floor not measured"), "{text}");
    let l = read_json(&dir.join("ladder.json"));
    assert_eq!(l["scenario"], "preview");
    assert_eq!(l["base_vus"], 10);
    assert!(l["open_files"]["needed"].as_u64().unwrap() >= 20);
    let rows = l["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 2);
    for (row, vus) in rows.iter().zip([10, 20]) {
        assert_eq!(row["vus"], vus, "{row}");
        assert_eq!(row["failed_posts"].as_f64(), Some(0.0), "{row}");
        assert_eq!(row["process_restarts"].as_f64(), Some(0.0), "{row}");
        assert!(row["requests_per_s"].as_f64().unwrap() > 0.0, "{row}");
        assert!(row["bench_cpu_seconds"].as_f64().is_some(), "{row}");
        for role in ["api", "worker"] {
            assert!(
                row["cpu_us_per_payment"][role].as_f64().unwrap() >= 0.0,
                "{row}"
            );
        }
        for p in ["api1", "api2", "worker"] {
            assert!(row["peak_rss_mb"][p].as_f64().unwrap() > 0.0, "{row}");
        }
        assert!(row["floor_p99_ms"].is_null(), "{row}");
    }
    let page = std::fs::read_to_string(dir.join("ladder.html")).unwrap();
    assert!(page.starts_with("<!DOCTYPE html>") && page.contains("<td class=\"l\">2x</td>"));
    std::fs::remove_dir_all(&dir).ok();
}
