//! Logs as written to a file (what `payroute up`'s role logs and `docker compose logs`
//! are): no terminal colour codes, whatever the environment says about colour, and
//! with `--log-format json` (or `PAYROUTE_LOG_FORMAT=json`) one JSON object per line.
//!
//! Each test runs a real `payroute processor` (it logs when it starts), its stderr to a
//! file, and stops it by PID.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

/// Runs `payroute <args> processor --listen 127.0.0.1:<free port>` with `env` and its
/// stderr to `log`, until it has logged that it listens; stops it; returns the log.
fn processor_log(dir: &Path, name: &str, args: &[&str], env: &[(&str, &str)]) -> String {
    let log = dir.join(format!("{name}.log"));
    let listen = format!("127.0.0.1:{}", common::free_port());
    let mut cmd = Command::new(common::payroute_exe());
    cmd.args(args)
        .args(["processor", "--listen", &listen])
        .env_remove("NO_COLOR")
        .env_remove("PAYROUTE_LOG_FORMAT")
        .env("PAYROUTE_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let pid = child.id().to_string();
    // Serving means its SIGTERM handler is in place: the stop is a clean one, logged.
    let base = format!("http://{listen}");
    let text = std::panic::catch_unwind(|| {
        common::wait_for(Duration::from_secs(30), "the processor to serve", || {
            common::get(&base, "/payments/00000000-0000-0000-0000-000000000000").ok()
        });
        common::wait_for(
            Duration::from_secs(30),
            "the processor's first log line",
            || {
                let text = std::fs::read_to_string(&log).ok()?;
                text.contains('\n').then_some(text)
            },
        )
    });
    Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    let stopped = common::wait_for(Duration::from_secs(15), "the processor to stop", || {
        child.try_wait().unwrap()
    });
    let text = text.unwrap_or_else(|e| std::panic::resume_unwind(e));
    assert!(stopped.success(), "{name}: {stopped}\n{text}");
    std::fs::read_to_string(&log).unwrap()
}

#[test]
fn text_logs_to_a_file_have_no_escape_codes() {
    let dir = common::test_dir("logs-text");
    // Colour asked for every way an environment can (FORCE_COLOR, CLICOLOR_FORCE,
    // a terminal TERM): a file is not a terminal, so none is written.
    let env = [
        ("TERM", "xterm-256color"),
        ("CLICOLOR_FORCE", "1"),
        ("FORCE_COLOR", "1"),
    ];
    let text = processor_log(&dir, "text", &[], &env);
    assert!(text.contains("INFO"), "{text}");
    assert!(
        !text.contains('\x1b'),
        "escape codes in a log file:\n{text:?}"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn json_logs_are_one_object_per_line() {
    let dir = common::test_dir("logs-json");
    let by_flag = processor_log(&dir, "flag", &["--log-format", "json"], &[]);
    let by_env = processor_log(&dir, "env", &[], &[("PAYROUTE_LOG_FORMAT", "json")]);
    for (how, text) in [
        ("--log-format json", by_flag),
        ("PAYROUTE_LOG_FORMAT", by_env),
    ] {
        assert!(!text.contains('\x1b'), "{how}: escape codes:\n{text:?}");
        let lines: Vec<&str> = text.lines().collect();
        assert!(
            lines.len() >= 2,
            "{how}: start and stop lines expected:\n{text}"
        );
        for line in lines {
            let v: serde_json::Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("{how}: not JSON ({e}): {line}"));
            assert_eq!(v["level"], "INFO", "{how}: {line}");
            assert!(v["message"].is_string(), "{how}: no message: {line}");
            assert!(v["timestamp"].is_string(), "{how}: no timestamp: {line}");
            assert!(v["target"].is_string(), "{how}: no target: {line}");
        }
    }
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn an_unknown_log_format_is_a_usage_error() {
    let out = Command::new(common::payroute_exe())
        .args(["--log-format", "xml", "man"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--log-format"), "{stderr}");
}
