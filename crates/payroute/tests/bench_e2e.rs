//! `payroute bench` end to end, shortened: the final scenario scaled to 10 s with 20
//! VUs, against payroute started by the bench, and against a payroute given with
//! `--backend` (the bench then starts the two emulators itself); two scenario families
//! in one `--scenarios` matrix with a threshold that must be crossed (exit 99); and a
//! `--backend` that never answers (exit 108).
//!
//! Everything on 127.0.0.1 and free ports; each test stops what it started (the bench
//! stops its own processes, the second test's payroute is a `launcher::Running`, which
//! stops on drop). Bounded: 10 s of load plus start and teardown, well under a minute.
//! No timing assertions: the figures checked are counts, not latencies (the crossed
//! threshold is a p99 below anything measurable).

use std::path::Path;
use std::process::{Command, Output};

const EXE: &str = env!("CARGO_BIN_EXE_payroute");

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `payroute bench ARGS` with progress off; its output, whatever its exit code.
fn bench(args: &[&str]) -> Output {
    Command::new(EXE)
        .arg("bench")
        .arg("--no-progress")
        .args(args)
        .output()
        .expect("running payroute bench")
}

/// Its exit code, stdout and stderr, for messages.
fn both(o: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The short final into `out` (with `extra` flags), which must pass: its result file.
fn run_bench(out: &Path, extra: &[&str]) -> serde_json::Value {
    let mut args = vec![
        "--scenario",
        "final",
        "--duration",
        "10",
        "--max-requests",
        "20",
        "--out",
        out.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let output = bench(&args);
    assert!(
        output.status.success(),
        "payroute bench failed\n{}",
        both(&output)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("profit (total_liquido)"),
        "no summary:\n{stdout}"
    );
    let text = std::fs::read_to_string(out.join("final-results.json")).expect("final-results.json");
    check_outputs(out);
    serde_json::from_str(&text).expect("valid JSON")
}

/// The report is self-contained (its only script the inline check, nothing fetched),
/// and bench.json and timeseries.csv hold the time series, one row a second.
fn check_outputs(out: &Path) {
    let html = std::fs::read_to_string(out.join("report.html")).expect("report.html");
    assert!(html.starts_with("<!DOCTYPE html>") && html.contains("<svg"));
    assert_eq!(html.matches("<script").count(), 1);
    assert!(html.contains(bench::report::CHECK_SCRIPT));
    assert!(!html.contains("src=") && !html.contains("href="));
    let csv = std::fs::read_to_string(out.join("timeseries.csv")).expect("timeseries.csv");
    let header = csv.lines().next().unwrap();
    assert!(header.starts_with("t_s,requests,payments_ok,"), "{header}");
    let b = read_json(&out.join("bench.json"));
    let rows = b["timeseries"].as_array().expect("timeseries");
    // About a row a second of the 10 s test, as many as in the CSV.
    assert!(rows.len() >= 9, "{}", rows.len());
    assert_eq!(rows.len(), csv.lines().count() - 1);
    // The processors' books were sampled: the lag is known in the last rows.
    let known = rows.iter().rev().take(3).any(|r| r["lag"].is_number());
    assert!(known, "{rows:?}");
    // A full hash when built from git ("unknown" otherwise).
    let commit = b["provenance"]["commit"].as_str().unwrap();
    assert!(commit.len() == 40 || commit == "unknown", "{commit}");
    assert!(b["provenance"]["machine"]["cores"].as_u64().unwrap() >= 1);
    assert_eq!(b["thresholds"]["crossed"], serde_json::json!([]));
}

fn read_json(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).expect("valid JSON")
}

/// The sanity every short run must pass: every POST answered, the books agree, the lag
/// is a small part of the payments (the scaled final ends with the default processor at
/// a 2 s delay, so a few payments may still be in flight at teardown), no caixa dois.
fn check_sane(r: &serde_json::Value) {
    let ok = r["pagamentos_solicitados"]["qtd_sucesso"].as_f64().unwrap();
    let failed = r["pagamentos_solicitados"]["qtd_falha"].as_f64().unwrap();
    let lag = r["lag"]["lag"].as_f64().unwrap();
    // 20 VUs ramping over 10 s: about 100 payments.
    assert!(ok >= 50.0, "too few payments: {r}");
    assert_eq!(failed, 0.0, "{r}");
    assert!(lag >= 0.0, "caixa dois: {r}");
    assert!(lag <= ok * 0.5, "lag too large: {r}");
    assert_eq!(r["caixa_dois"]["detectado"], false);
    let counted = r["pagamentos_realizados_default"]["num_pagamentos"]
        .as_f64()
        .unwrap()
        + r["pagamentos_realizados_fallback"]["num_pagamentos"]
            .as_f64()
            .unwrap();
    assert_eq!(counted + lag, ok);
    assert!(r["total_liquido"].as_f64().unwrap() > 0.0);
    for key in [
        "timestamp",
        "participante",
        "total_bruto",
        "total_taxas",
        "descricao",
        "p99",
        "multa",
    ] {
        assert!(r.get(key).is_some(), "missing {key}: {r}");
    }
    assert!(r["p99"]["valor"].as_str().unwrap().ends_with("ms"));
}

#[test]
fn bench_runs_the_final_against_payroute_it_starts() {
    let dir = tempfile_dir("bench-e2e-own");
    // Limits off: the test must not depend on cgroups being writable. Thresholds that
    // hold on any machine: they are checked, and the bench exits 0.
    let flags = [
        "--port",
        "0",
        "--emulator-ports",
        "0,0",
        "--limits",
        "off",
        "--max-failed",
        "0",
        "--max-lag",
        "1000",
    ];
    let r = run_bench(&dir, &flags);
    check_sane(&r);
    assert_eq!(r["participante"], "payroute");
    let b = read_json(&dir.join("bench.json"));
    assert_eq!(
        b["thresholds"]["checked"],
        serde_json::json!([
            "no caixa dois (lag >= 0)",
            "--max-failed 0",
            "--max-lag 1000"
        ])
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn bench_runs_the_final_against_a_given_backend() {
    let dir = tempfile_dir("bench-e2e-given");
    let (pd, pf) = (free_port(), free_port());
    // payroute pointed at processors that the bench will start on pd and pf.
    let mut up = launcher::UpConfig::new(EXE, dir.join("up"));
    up.port = free_port();
    up.default_url = Some(format!("http://127.0.0.1:{pd}"));
    up.fallback_url = Some(format!("http://127.0.0.1:{pf}"));
    let running = launcher::start(&up).expect("starting payroute");
    let backend = running.backend_url();
    let ports = format!("{pd},{pf}");
    let r = run_bench(
        &dir.join("out"),
        &["--backend", &backend, "--emulator-ports", &ports],
    );
    check_sane(&r);
    assert_eq!(r["participante"], "anonymous");
    running.stop().expect("stopping payroute");
    std::fs::remove_dir_all(&dir).ok();
}

/// Two families in one matrix, 4 s each, and a p99 threshold no machine meets: both
/// run to their end, every output is written, and the bench exits 99 saying why.
#[test]
fn a_crossed_threshold_exits_99_after_a_matrix_of_families() {
    let dir = tempfile_dir("bench-e2e-matrix");
    let o = bench(&[
        "--scenarios",
        "both-down,random",
        "--seed",
        "7",
        "--duration",
        "4",
        "--max-requests",
        "8",
        "--port",
        "0",
        "--emulator-ports",
        "0,0",
        "--limits",
        "off",
        "--max-p99-ms",
        "0.0001",
        "--out",
        dir.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(99), "{}", both(&o));
    let stdout = String::from_utf8_lossy(&o.stdout);
    let stderr = String::from_utf8_lossy(&o.stderr);
    let says = stdout.contains("!!! THRESHOLD CROSSED: p99 ")
        && stdout.contains("is above --max-p99-ms 0.0001 by");
    assert!(says, "{}", both(&o));
    let named = stderr.contains("both-down: p99") && stderr.contains("random: p99");
    assert!(named, "{}", both(&o));
    for family in ["both-down", "random"] {
        let r = read_json(&dir.join(family).join("final-results.json"));
        assert!(r["lag"]["lag"].as_f64().unwrap() >= 0.0, "{family}: {r}");
        let b = read_json(&dir.join(family).join("bench.json"));
        assert_eq!(b["thresholds"]["crossed"][0]["threshold"], "--max-p99-ms");
    }
    let matrix = std::fs::read_to_string(dir.join("matrix.txt")).unwrap();
    let lines: Vec<&str> = matrix.lines().collect();
    assert_eq!(lines.len(), 3, "{matrix}");
    assert!(lines[1].starts_with("both-down") && lines[2].starts_with("random"));
    let json = read_json(&dir.join("matrix.json"));
    assert_eq!(json["scenarios"][1]["scenario"], "random");
    assert!(json["scenarios"][0]["percent_of_ceiling"].as_f64().unwrap() > 0.0);
    std::fs::remove_dir_all(&dir).ok();
}

/// A backend that never answers: the bench tries as the official runner does (here 2
/// tries 0.2 s apart), says so, aborts with 108 and stops the emulators it started.
#[test]
fn a_backend_that_never_answers_aborts_with_108() {
    let dir = tempfile_dir("bench-e2e-never");
    let backend = format!("http://127.0.0.1:{}", free_port());
    let o = bench(&[
        "--backend",
        &backend,
        "--backend-tries",
        "2",
        "--backend-retry-secs",
        "0.2",
        "--emulator-ports",
        "0,0",
        "--out",
        dir.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(108), "{}", both(&o));
    let stderr = String::from_utf8_lossy(&o.stderr);
    let waited = stderr.contains("waiting for the backend at") && stderr.contains("try 1/2");
    assert!(waited, "{stderr}");
    let gave_up = stderr.contains("did not answer GET /payments-summary in 2 tries");
    assert!(gave_up, "{stderr}");
    std::fs::remove_dir_all(&dir).ok();
}

fn tempfile_dir(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}
