//! `payroute up` end to end: the whole topology on free loopback ports (never 9999),
//! payments through the load balancer, the backend's summary against the emulated
//! processors' own books, and a stop that leaves no process behind. Once per load
//! balancer (embedded, nginx, haproxy), then the restart policy, the cgroup limits and
//! the CLI's signal handling.
//!
//! Every wait is bounded; every process is started by the test (through the launcher)
//! and stopped by PID.

mod common;

use common::{free_port, get, post_json, request, wait_for};
use launcher::{Event, Lb, Limits, LimitsStatus, Running, UpConfig};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

/// Bound of the wait for the worker to forward every payment and for the summaries to
/// agree: the emulators answer at once, so this is only slack for a loaded CI machine.
const SETTLE: Duration = Duration::from_secs(30);
/// Payments per test: enough to reach both api instances, few enough to stay quick.
const PAYMENTS: usize = 20;

fn config(name: &str, lb: Lb, limits: Limits) -> UpConfig {
    let dir = common::test_dir(name);
    let mut c = UpConfig::new(common::payroute_exe(), dir.join("run"));
    c.port = free_port();
    c.emulator_ports = (free_port(), free_port());
    c.lb = lb;
    c.limits = limits;
    c
}

/// Amount in cents, from a JSON number with at most 2 decimals.
fn cents(v: &serde_json::Value) -> i64 {
    (v.as_f64().unwrap_or_else(|| panic!("not a number: {v}")) * 100.0).round() as i64
}

/// Posts [`PAYMENTS`] payments through the load balancer and waits until the backend's
/// summary counts them all and equals the processors' admin summaries.
fn pay_and_check_summary(running: &Running) {
    let backend = running.backend_url();
    for _ in 0..PAYMENTS {
        let body = format!(r#"{{"correlationId":"{}","amount":19.90}}"#, common::uuid());
        let a = post_json(&backend, "/payments", &body).expect("POST /payments");
        assert!(
            (200..300).contains(&a.status),
            "POST /payments: {} {}",
            a.status,
            a.body
        );
    }
    let admin = |url: &str| {
        let a = request(
            url,
            "GET",
            "/admin/payments-summary",
            &[("X-Rinha-Token", "123")],
            None,
        )
        .ok()?;
        (a.status == 200).then(|| a.json())
    };
    let mut last = String::new();
    let agreed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        wait_for(
            SETTLE,
            "the backend's summary to equal the processors'",
            || {
                let b = get(&backend, "/payments-summary")
                    .ok()
                    .filter(|a| a.status == 200)?
                    .json();
                let d = admin(&running.default_url())?;
                let f = admin(&running.fallback_url())?;
                last = format!("backend {b}, default {d}, fallback {f}");
                let count = |v: &serde_json::Value| v["totalRequests"].as_u64().unwrap_or(u64::MAX);
                let ok = count(&b["default"]) + count(&b["fallback"]) == PAYMENTS as u64
                    && count(&b["default"]) == count(&d)
                    && count(&b["fallback"]) == count(&f)
                    && cents(&b["default"]["totalAmount"]) == cents(&d["totalAmount"])
                    && cents(&b["fallback"]["totalAmount"]) == cents(&f["totalAmount"]);
                ok.then_some(())
            },
        )
    }));
    assert!(agreed.is_ok(), "summaries never agreed; last seen: {last}");
}

/// Stops the topology and checks that every process it ran, and everything they
/// forked, is gone.
fn stop_and_check_nothing_left(running: Running, expected_roles: &[&str]) {
    let pids = running.pids();
    let test_dir = running.run_dir().parent().unwrap().to_path_buf();
    let mut roles: Vec<&str> = pids.iter().map(|(n, _)| n.as_str()).collect();
    roles.sort_unstable();
    let mut expected = expected_roles.to_vec();
    expected.sort_unstable();
    assert_eq!(roles, expected);
    let usage = running.stop().expect("stop");
    // Usage covers every role the topology ran, dead ones included.
    for (name, _) in &pids {
        assert!(usage.iter().any(|u| &u.name == name), "no usage for {name}");
    }
    for (name, pid) in &pids {
        assert!(
            common::process_gone(*pid),
            "{name} (pid {pid}) still runs after stop"
        );
        let left = common::group_members(*pid);
        assert!(
            left.is_empty(),
            "{name}'s process group {pid} still has {left:?}"
        );
    }
    // Kept when a test fails (logs); removed when it passes.
    std::fs::remove_dir_all(test_dir).unwrap();
}

const EMBEDDED_ROLES: [&str; 5] = [
    "processor-default",
    "processor-fallback",
    "worker",
    "api1",
    "api2",
];
const WITH_LB_ROLES: [&str; 6] = [
    "processor-default",
    "processor-fallback",
    "worker",
    "api1",
    "api2",
    "lb",
];

#[test]
fn up_embedded_takes_payments_and_stops_clean() {
    let running = launcher::start(&config("up-embedded", Lb::Embedded, Limits::Off)).unwrap();
    assert!(running.describe().contains("SO_REUSEPORT"));
    // A second topology on the same port is refused, although the api instances'
    // SO_REUSEPORT sockets would let it share the port silently.
    let mut second = config("up-embedded-second", Lb::Embedded, Limits::Off);
    second.port = running
        .backend_url()
        .rsplit(':')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let err = launcher::start(&second).expect_err("a second topology on the same port");
    assert!(err.to_string().contains("not available"), "{err:#}");
    // Refused before touching anything: its run directory was not even created.
    assert!(!second.run_dir.exists());
    std::fs::remove_dir_all(second.run_dir.parent().unwrap()).unwrap();
    pay_and_check_summary(&running);
    stop_and_check_nothing_left(running, &EMBEDDED_ROLES);
}

#[test]
fn up_nginx_takes_payments_and_stops_clean() {
    if common::require_program("nginx").is_none() {
        return;
    }
    let running = launcher::start(&config("up-nginx", Lb::Nginx, Limits::Off)).unwrap();
    assert!(running.run_dir().join("nginx.conf").exists());
    pay_and_check_summary(&running);
    stop_and_check_nothing_left(running, &WITH_LB_ROLES);
}

#[test]
fn up_haproxy_takes_payments_and_stops_clean() {
    if common::require_program("haproxy").is_none() {
        return;
    }
    let running = launcher::start(&config("up-haproxy", Lb::Haproxy, Limits::Off)).unwrap();
    pay_and_check_summary(&running);
    stop_and_check_nothing_left(running, &WITH_LB_ROLES);
}

/// The documented policy: a role killed by SIGKILL is reported and restarted (after
/// 0.5 s), and the system serves again; an emulated processor is reported, never
/// restarted.
#[test]
fn up_reports_and_restarts_a_killed_api() {
    let running = launcher::start(&config("up-restart", Lb::Embedded, Limits::Off)).unwrap();
    let pid_of = |role: &str| {
        running
            .pids()
            .into_iter()
            .find(|(n, _)| n == role)
            .map(|(_, p)| p)
    };
    let old = pid_of("api1").unwrap();
    let status = Command::new("kill")
        .args(["-KILL", &old.to_string()])
        .status()
        .unwrap();
    assert!(status.success());

    let mut events = Vec::new();
    wait_for(
        Duration::from_secs(15),
        "api1 to be reported and restarted",
        || {
            events.extend(running.take_events());
            events
                .iter()
                .any(|e| matches!(e, Event::Restarted { name, .. } if name == "api1"))
                .then_some(())
        },
    );
    let exited = events
        .iter()
        .find_map(|e| match e {
            Event::Exited {
                name,
                pid,
                status,
                restart_in,
                ..
            } if name == "api1" => Some((*pid, status.clone(), *restart_in)),
            _ => None,
        })
        .expect("an Exited event for api1");
    assert_eq!(exited.0, old);
    assert!(exited.1.contains("9"), "status {}", exited.1);
    assert!(exited.2.is_some(), "api1 must be scheduled for restart");
    let new = pid_of("api1").unwrap();
    assert_ne!(new, old);
    assert!(common::process_gone(old));
    wait_for(
        Duration::from_secs(15),
        "the restarted topology to serve",
        || (get(&running.backend_url(), "/health").ok()?.status == 200).then_some(()),
    );
    pay_and_check_summary(&running);

    // An emulator is reported, not restarted.
    let emulator = pid_of("processor-fallback").unwrap();
    Command::new("kill")
        .args(["-KILL", &emulator.to_string()])
        .status()
        .unwrap();
    let report = wait_for(
        Duration::from_secs(15),
        "the emulator's death to be reported",
        || {
            running
                .take_events()
                .into_iter()
                .find(|e| matches!(e, Event::Exited { name, .. } if name == "processor-fallback"))
        },
    );
    assert!(
        matches!(
            report,
            Event::Exited {
                restart_in: None,
                ..
            }
        ),
        "{report}"
    );
    assert!(pid_of("processor-fallback").is_none());
    stop_and_check_nothing_left(running, &["processor-default", "worker", "api1", "api2"]);
}

/// With `--limits rinha`: the compose file's limits are in force (root, and cgroup v1,
/// or v2 with the launcher alone in its group), or the launcher says why not; either
/// way payments flow.
#[test]
fn up_with_rinha_limits_enforces_them_or_says_why() {
    let running = launcher::start(&config("up-limits", Lb::Embedded, Limits::Rinha)).unwrap();
    match running.limits().clone() {
        LimitsStatus::Enforced(how) => {
            assert!(how.contains("payroute-"), "{how}");
            for u in running.usage() {
                let limited = matches!(u.name.as_str(), "api1" | "api2" | "worker");
                assert_eq!(u.limits_enforced, limited, "{}", u.name);
                assert_eq!(u.throttled_seconds.is_some(), limited, "{}", u.name);
                if limited {
                    let groups =
                        std::fs::read_to_string(format!("/proc/{}/cgroup", u.pid)).unwrap();
                    assert!(
                        groups.contains(&format!("/{}\n", u.name)),
                        "{}: {groups}",
                        u.name
                    );
                }
            }
        }
        LimitsStatus::NotEnforced(why) => {
            eprintln!("NOTE: limits not enforced here: {why}");
            assert!(!why.is_empty());
            assert!(running.usage().iter().all(|u| !u.limits_enforced));
        }
        LimitsStatus::Off => panic!("limits were asked for"),
    }
    assert!(running.describe().contains("limits"));
    pay_and_check_summary(&running);
    stop_and_check_nothing_left(running, &EMBEDDED_ROLES);
}

/// The CLI: prints what runs where, and Ctrl-C (SIGINT) stops everything it started.
/// Its `--log-format json` reaches the roles it runs.
#[test]
fn up_cli_prints_the_table_and_stops_everything_on_ctrl_c() {
    let dir = common::test_dir("up-cli");
    let port = free_port();
    let mut child = Command::new(common::payroute_exe())
        .args(["--log-format", "json"])
        .args(["up", "--host", "127.0.0.1", "--port", &port.to_string()])
        .args(["--default-port", &free_port().to_string()])
        .args(["--fallback-port", &free_port().to_string()])
        .arg("--run-dir")
        .arg(dir.join("run"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(dir.join("up.stderr")).unwrap())
        .spawn()
        .unwrap();
    // Reads the table in a thread, so the wait for it is bounded.
    let stdout = child.stdout.take().unwrap();
    let guard = StopOnDrop(child.id());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut table = Vec::new();
    loop {
        match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(line) if line.starts_with("Ctrl-C") => break,
            Ok(line) => table.push(line),
            Err(e) => {
                // The guard stops it on the way out.
                panic!(
                    "no table from payroute up ({e}); stderr:\n{}",
                    std::fs::read_to_string(dir.join("up.stderr")).unwrap_or_default()
                );
            }
        }
    }
    let text = table.join("\n");
    // ROLE PID ADDRESS LOG, one line per process.
    let pids: Vec<(String, u32)> = table
        .iter()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let role = f.next()?.to_string();
            let pid = f.next()?.parse().ok()?;
            Some((role, pid))
        })
        .collect();
    let mut roles: Vec<&str> = pids.iter().map(|(r, _)| r.as_str()).collect();
    roles.sort_unstable();
    let mut expected = EMBEDDED_ROLES.to_vec();
    expected.sort_unstable();
    assert_eq!(roles, expected, "{text}");
    assert!(text.contains(&format!("http://127.0.0.1:{port}")), "{text}");
    assert!(text.contains("worker.log"), "{text}");
    assert_eq!(
        get(&format!("http://127.0.0.1:{port}"), "/health")
            .unwrap()
            .status,
        200
    );

    Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    let status = wait_for(
        Duration::from_secs(60),
        "payroute up to exit after SIGINT",
        || child.try_wait().unwrap(),
    );
    std::mem::forget(guard);
    assert!(status.success(), "payroute up exited with {status}");
    for (role, pid) in &pids {
        assert!(
            common::process_gone(*pid),
            "{role} (pid {pid}) survived payroute up"
        );
        assert!(
            common::group_members(*pid).is_empty(),
            "{role}'s group survived"
        );
    }
    let rest: Vec<String> = rx.try_iter().collect();
    assert!(rest.iter().any(|l| l.starts_with("stopped")), "{rest:?}");
    // The roles logged JSON (the launcher's own `===` header lines aside).
    for role in ["worker", "api1", "processor-default"] {
        let log = std::fs::read_to_string(dir.join("run").join(format!("{role}.log"))).unwrap();
        let lines: Vec<&str> = log.lines().filter(|l| !l.starts_with("===")).collect();
        assert!(!lines.is_empty(), "{role} logged nothing");
        for line in lines {
            let v: Result<serde_json::Value, _> = serde_json::from_str(line);
            assert!(
                v.is_ok_and(|v| v["level"].is_string()),
                "{role}: not JSON: {line}"
            );
        }
    }
    std::fs::remove_dir_all(dir).unwrap();
}

/// A setting that cannot work: `payroute up` names the flag, exits with 2 (as for a
/// usage error), and starts nothing: no run directory, no process.
#[test]
fn up_cli_refuses_a_bad_setting_with_exit_2_and_starts_nothing() {
    let dir = common::test_dir("up-bad-setting");
    let (port, other) = (free_port().to_string(), free_port().to_string());
    // (--port, --default-port, --ready-timeout-secs), and the flag the error must name.
    let cases = [
        ("0", other.as_str(), "30", "--port"),
        (port.as_str(), port.as_str(), "30", "--default-port"),
        (port.as_str(), other.as_str(), "0", "--ready-timeout-secs"),
    ];
    for (i, (public, default, ready, named)) in cases.into_iter().enumerate() {
        let run_dir = dir.join(format!("run{i}"));
        let flags = [
            "--port",
            public,
            "--default-port",
            default,
            "--ready-timeout-secs",
            ready,
        ];
        let mut child = Command::new(common::payroute_exe())
            .args(["up", "--host", "127.0.0.1"])
            .args(["--fallback-port", &free_port().to_string()])
            .args(flags)
            .arg("--run-dir")
            .arg(&run_dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("up.stderr")).unwrap())
            .spawn()
            .unwrap();
        let guard = StopOnDrop(child.id());
        let status = wait_for(Duration::from_secs(30), "payroute up to refuse", || {
            child.try_wait().unwrap()
        });
        std::mem::forget(guard);
        let stderr = std::fs::read_to_string(dir.join("up.stderr")).unwrap();
        assert_eq!(
            status.code(),
            Some(2),
            "{flags:?}: {status}; stderr:\n{stderr}"
        );
        assert!(
            stderr.contains(&format!("invalid setting {named}:")),
            "{flags:?}: {stderr}"
        );
        assert!(!run_dir.exists(), "{flags:?}: the run directory was made");
        let run_dir_text = run_dir.to_string_lossy().into_owned();
        assert!(
            common::processes_mentioning(&run_dir_text).is_empty(),
            "{flags:?}: a process was started"
        );
    }
    std::fs::remove_dir_all(dir).unwrap();
}

/// If the CLI test fails half-way, SIGTERM to the `payroute up` it started, so that
/// the launcher stops its children instead of leaving them running.
struct StopOnDrop(u32);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.0.to_string()])
            .status();
        // Not `wait_for`: a panic inside a drop during unwinding would abort.
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while !common::process_gone(self.0) && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}
