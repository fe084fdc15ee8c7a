//! The reports of a short `payroute bench` run of every scenario (the two official
//! tests and every family), rendered by a real browser: headless Chromium (Debian's
//! `chromium` package) loads each `report.html` from disk, and the page's
//! own inline check (`bench::report::CHECK_SCRIPT`) marks `<body data-ok="all-charts">`
//! only when every chart it announces (`data-charts`) is there, laid out with a size
//! and something drawn, and no script error occurred; the per-stage table is there.
//! The DOM is dumped with `--dump-dom`; a screenshot of each is kept at
//! `target/tmp/bench-browser/<scenario>.png` (the paths are printed) for a human to
//! look at.
//!
//! Without Chromium the test is skipped with a printed reason, except in CI (the `CI`
//! variable set), where it fails. `CHROMIUM=/path` chooses the binary. Chromium is
//! started with networking features off (on a closed network it otherwise hangs), in
//! its own process group, with a temporary profile, and killed by that group's id if
//! it overruns its deadline.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

const EXE: &str = env!("CARGO_BIN_EXE_payroute");

/// Longest a Chromium invocation may take: a cold start on a loaded 2-core machine
/// takes a few seconds; past this it is hung.
const CHROMIUM_DEADLINE: Duration = Duration::from_secs(90);

/// The charts every run the bench starts with limits off has (no throttling chart). A
/// worker that reports held payments adds two more (`held`, `held-age`): the page's
/// own count, which must all render, includes them.
const EXPECTED_CHARTS: [&str; 9] = [
    "latency",
    "latency-distribution",
    "throughput",
    "lag",
    "books",
    "queue",
    "processed",
    "cpu",
    "rss",
];

/// The Chromium to use: `CHROMIUM`, else Debian's `/usr/bin/chromium`, else one on
/// the PATH; `None` when there is none.
fn chromium() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("CHROMIUM") {
        return Some(PathBuf::from(p));
    }
    let debian = PathBuf::from("/usr/bin/chromium");
    if debian.exists() {
        return Some(debian);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join("chromium"))
        .find(|p| p.exists())
}

/// Runs Chromium headless on `page` with `extra` flags, within the deadline.
fn run_chromium(exe: &Path, profile: &Path, page: &Path, extra: &[String]) -> Output {
    use std::os::unix::process::CommandExt;
    let mut cmd = Command::new(exe);
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1400,5000",
    ])
    .arg(format!("--user-data-dir={}", profile.display()))
    .args(extra)
    .arg(format!("file://{}", page.display()))
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    // Its own group: its helper processes can be stopped with it.
    .process_group(0);
    let child = cmd.spawn().expect("starting chromium");
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(CHROMIUM_DEADLINE) {
        Ok(out) => out.expect("waiting for chromium"),
        Err(_) => {
            // Only the group this test started, by its id.
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{pid}")])
                .status();
            panic!("chromium did not finish within {CHROMIUM_DEADLINE:?}");
        }
    }
}

/// Every scenario of the bench.
const SCENARIOS: [&str; 8] = [
    "preview",
    "final",
    "default-down",
    "flapping",
    "default-slow",
    "both-down",
    "fallback-bad",
    "random",
];

/// A short run of every scenario against payroute the bench starts, into
/// `out/<scenario>/`.
fn short_run(out: &Path) {
    let o = Command::new(EXE)
        .args([
            "bench",
            "--no-progress",
            "--scenarios",
            &SCENARIOS.join(","),
            "--duration",
            "5",
            "--max-requests",
            "10",
            "--port",
            "0",
            "--emulator-ports",
            "0,0",
            "--limits",
            "off",
            "--out",
        ])
        .arg(out)
        .output()
        .expect("running payroute bench");
    assert!(
        o.status.success(),
        "payroute bench failed: {}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}

/// The attributes of the dumped DOM's `<body>` tag.
fn body_tag(dom: &str) -> &str {
    let start = dom.find("<body").expect("a body in the dumped DOM");
    let end = start + dom[start..].find('>').unwrap();
    &dom[start..=end]
}

/// Loads one report and checks that every chart rendered, the per-stage table is
/// there, and no script failed.
fn check_page(exe: &Path, profile: &Path, page: &Path, scenario: &str) {
    let dump = run_chromium(exe, profile, page, &["--dump-dom".to_string()]);
    let dom = String::from_utf8_lossy(&dump.stdout);
    let body = body_tag(&dom);
    let n = dom.matches("data-chart=\"").count();
    assert!(n >= EXPECTED_CHARTS.len(), "{scenario}: {n} charts\n{body}");
    assert!(
        body.contains(&format!("data-charts=\"{n}\"")),
        "{scenario}: {body}\nstderr: {}",
        String::from_utf8_lossy(&dump.stderr)
    );
    assert!(
        body.contains("data-ok=\"all-charts\"") && body.contains(&format!("data-drawn=\"{n}\"")),
        "{scenario}: not every chart rendered: {body}"
    );
    assert!(
        !body.contains("data-error"),
        "{scenario}: a script error: {body}"
    );
    assert!(
        dom.contains("<title>OK payroute bench"),
        "{scenario}: the check did not run"
    );
    for id in EXPECTED_CHARTS {
        assert!(
            dom.contains(&format!("data-chart=\"{id}\"")),
            "{scenario}: chart {id} missing"
        );
    }
    assert!(
        dom.contains("<h2>Per stage</h2>"),
        "{scenario}: no per-stage table"
    );
}

#[test]
fn the_report_renders_every_chart_in_chromium() {
    let Some(exe) = chromium() else {
        let reason = "no chromium (Debian package `chromium`; or set CHROMIUM=/path)";
        if std::env::var_os("CI").is_some() {
            panic!("{reason}: required in CI");
        }
        eprintln!("SKIPPED the_report_renders_every_chart_in_chromium: {reason}");
        return;
    };
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("bench-browser");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    short_run(&dir);
    let profile = dir.join("chromium-profile");
    for scenario in SCENARIOS {
        let page = dir.join(scenario).join("report.html");
        check_page(&exe, &profile, &page, scenario);
        let png = dir.join(format!("{scenario}.png"));
        let shot = run_chromium(
            &exe,
            &profile,
            &page,
            &[format!("--screenshot={}", png.display())],
        );
        let size = std::fs::metadata(&png).map(|m| m.len()).unwrap_or(0);
        assert!(
            size > 10_000,
            "{scenario}: no screenshot ({size} bytes): {}",
            String::from_utf8_lossy(&shot.stderr)
        );
        println!("report screenshot ({scenario}): {}", png.display());
    }
    let _ = std::fs::remove_dir_all(&profile);
}
