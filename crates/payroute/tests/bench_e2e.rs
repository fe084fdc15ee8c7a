//! `payroute bench` end to end, shortened: the final scenario scaled to 10 s with 20
//! VUs, against payroute started by the bench, and against a payroute given with
//! `--backend` (the bench then starts the two emulators itself).
//!
//! Everything on 127.0.0.1 and free ports; each test stops what it started (the bench
//! stops its own processes, the second test's payroute is a `launcher::Running`, which
//! stops on drop). Bounded: 10 s of load plus start and teardown, well under a minute.
//! No timing assertions: the figures checked are counts, not latencies.

use std::path::Path;
use std::process::Command;

const EXE: &str = env!("CARGO_BIN_EXE_payroute");

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn run_bench(out: &Path, extra: &[&str]) -> serde_json::Value {
    let mut args = vec![
        "bench",
        "--scenario",
        "final",
        "--duration",
        "10",
        "--max-requests",
        "20",
        "--no-progress",
        "--out",
        out.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let output = Command::new(EXE)
        .args(&args)
        .output()
        .expect("running payroute bench");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "payroute bench failed\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(
        stdout.contains("profit (total_liquido)"),
        "no summary:\n{stdout}"
    );
    let text = std::fs::read_to_string(out.join("final-results.json")).expect("final-results.json");
    let html = std::fs::read_to_string(out.join("report.html")).expect("report.html");
    assert!(html.starts_with("<!DOCTYPE html>") && html.contains("<svg"));
    // Self-contained: nothing to fetch, nothing to run.
    assert!(
        !html.contains("<script") && !html.contains("src=\"http") && !html.contains("href=\"http")
    );
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
    // Limits off: the test must not depend on cgroups being writable.
    let r = run_bench(
        &dir,
        &["--port", "0", "--emulator-ports", "0,0", "--limits", "off"],
    );
    check_sane(&r);
    assert_eq!(r["participante"], "payroute");
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

fn tempfile_dir(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}
