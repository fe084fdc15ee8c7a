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
use launcher::{Event, Lb, Ledger, Limits, LimitsStatus, Running, UpConfig};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::Receiver;
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
    pay(&running.backend_url(), PAYMENTS);
    check_summary(
        &running.backend_url(),
        &running.default_url(),
        &running.fallback_url(),
        PAYMENTS as u64,
    );
}

/// Posts `n` fresh payments to `backend`, each acknowledged.
fn pay(backend: &str, n: usize) {
    for _ in 0..n {
        let body = format!(r#"{{"correlationId":"{}","amount":19.90}}"#, common::uuid());
        let a = post_json(backend, "/payments", &body).expect("POST /payments");
        assert!(
            (200..300).contains(&a.status),
            "POST /payments: {} {}",
            a.status,
            a.body
        );
    }
}

/// Waits until the backend's summary counts `total` payments and equals the
/// processors' admin summaries, processor by processor.
fn check_summary(backend: &str, default_url: &str, fallback_url: &str, total: u64) {
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
                let b = get(backend, "/payments-summary")
                    .ok()
                    .filter(|a| a.status == 200)?
                    .json();
                let d = admin(default_url)?;
                let f = admin(fallback_url)?;
                last = format!("backend {b}, default {d}, fallback {f}");
                let count = |v: &serde_json::Value| v["totalRequests"].as_u64().unwrap_or(u64::MAX);
                let ok = count(&b["default"]) + count(&b["fallback"]) == total
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

/// `payroute up` run as a command, with its table of what runs where read.
struct CliUp {
    child: Child,
    guard: StopOnDrop,
    /// The lines of its stdout after the table.
    lines: Receiver<String>,
    table: String,
    /// (role, PID) of each row with a PID.
    pids: Vec<(String, u32)>,
}

impl CliUp {
    /// Starts `payroute <global> up --host 127.0.0.1 --port <port> <args>` with emulators
    /// on free ports and its run directory in `dir`, and reads its table (bounded by
    /// `within`).
    fn start(dir: &Path, global: &[&str], port: u16, args: &[&str], within: Duration) -> CliUp {
        let mut child = Command::new(common::payroute_exe())
            .args(global)
            .args(["up", "--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--default-port", &free_port().to_string()])
            .args(["--fallback-port", &free_port().to_string()])
            .args(args)
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
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut table = Vec::new();
        loop {
            match lines.recv_timeout(within) {
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
        // ROLE PID ADDRESS LOG, one line per process.
        let pids = table
            .iter()
            .filter_map(|l| {
                let mut f = l.split_whitespace();
                let role = f.next()?.to_string();
                let pid = f.next()?.parse().ok()?;
                Some((role, pid))
            })
            .collect();
        CliUp {
            child,
            guard,
            lines,
            table: table.join("\n"),
            pids,
        }
    }

    /// The roles of the table, sorted.
    fn roles(&self) -> Vec<&str> {
        let mut roles: Vec<&str> = self.pids.iter().map(|(r, _)| r.as_str()).collect();
        roles.sort_unstable();
        roles
    }

    /// Ctrl-C (SIGINT); waits for it to exit (successfully), checks that every process
    /// of its table is gone, with its process group, and returns what it printed after
    /// the table.
    fn interrupt(mut self) -> Vec<String> {
        Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status()
            .unwrap();
        let status = wait_for(
            Duration::from_secs(60),
            "payroute up to exit after SIGINT",
            || self.child.try_wait().unwrap(),
        );
        std::mem::forget(self.guard);
        assert!(status.success(), "payroute up exited with {status}");
        for (role, pid) in &self.pids {
            assert!(
                common::process_gone(*pid),
                "{role} (pid {pid}) survived payroute up"
            );
            assert!(
                common::group_members(*pid).is_empty(),
                "{role}'s group survived"
            );
        }
        self.lines.try_iter().collect()
    }
}

fn sorted<'a>(roles: &[&'a str]) -> Vec<&'a str> {
    let mut roles = roles.to_vec();
    roles.sort_unstable();
    roles
}

/// The CLI: prints what runs where, and Ctrl-C (SIGINT) stops everything it started.
/// Its `--log-format json` reaches the roles it runs.
#[test]
fn up_cli_prints_the_table_and_stops_everything_on_ctrl_c() {
    let dir = common::test_dir("up-cli");
    let port = free_port();
    let global = ["--log-format", "json"];
    let up = CliUp::start(&dir, &global, port, &[], Duration::from_secs(60));
    let text = up.table.clone();
    assert_eq!(up.roles(), sorted(&EMBEDDED_ROLES), "{text}");
    assert!(text.contains(&format!("http://127.0.0.1:{port}")), "{text}");
    assert!(text.contains("worker.log"), "{text}");
    assert_eq!(
        get(&format!("http://127.0.0.1:{port}"), "/health")
            .unwrap()
            .status,
        200
    );
    let rest = up.interrupt();
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

/// Payments of the scaled end-to-end test: enough for both api instances and both
/// workers to take a share, few enough to stay quick.
const SCALED_PAYMENTS: usize = 200;

/// The scaled topology from the CLI: `payroute up --workers 2 --ledger postgres` starts a
/// throwaway PostgreSQL cluster and two workers sharing it; 200 payments go through
/// both api instances, both workers record some, the summary (read from the database)
/// equals the processors' books, and Ctrl-C stops everything, PostgreSQL included.
#[test]
fn up_cli_scaled_on_postgres_takes_payments_and_ctrl_c_stops_everything() {
    if let Err(e) = launcher::pgcluster::find_bindir() {
        assert!(std::env::var_os("CI").is_none(), "{e:#}");
        eprintln!("NOTE: test skipped: {e:#}");
        return;
    }
    let dir = common::test_dir("up-scaled");
    let port = free_port();
    let args = ["--workers", "2", "--ledger", "postgres"];
    // initdb on a loaded machine takes seconds.
    let up = CliUp::start(&dir, &[], port, &args, Duration::from_secs(120));
    let text = up.table.clone();
    let mut roles = EMBEDDED_ROLES.to_vec();
    roles.retain(|r| *r != "worker");
    roles.extend(["worker1", "worker2", "postgres"]);
    assert_eq!(up.roles(), sorted(&roles), "{text}");
    assert!(text.contains("postgres://payroute@127.0.0.1:"), "{text}");
    assert!(text.contains("postgres.log"), "{text}");
    let backend = format!("http://127.0.0.1:{port}");
    let run = dir.join("run");
    let emulator = |role: &str| {
        let line = text.lines().find(|l| l.starts_with(role)).unwrap();
        line.split_whitespace().nth(2).unwrap().to_string()
    };

    pay(&backend, SCALED_PAYMENTS);
    check_summary(
        &backend,
        &emulator("processor-default"),
        &emulator("processor-fallback"),
        SCALED_PAYMENTS as u64,
    );
    assert_both_apis_took_payments(&backend);
    let processed = processed_by_worker(&backend);
    assert!(processed.values().all(|&n| n > 0), "{processed:?}");
    assert_eq!(processed.values().sum::<u64>(), SCALED_PAYMENTS as u64);

    let rest = up.interrupt();
    assert!(rest.iter().any(|l| l.starts_with("postgres ")), "{rest:?}");
    let log = std::fs::read_to_string(run.join("postgres.log")).unwrap();
    assert!(
        log.contains("received fast shutdown request")
            && log.contains("database system is shut down"),
        "PostgreSQL was not stopped by pg_ctl stop -m fast:\n{log}"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

/// Both api instances (sharing the port with SO_REUSEPORT) answered some of the
/// payments: one instance's count of acknowledged POSTs, read through the port,
/// lies strictly between 0 and all of them.
fn assert_both_apis_took_payments(backend: &str) {
    let sample = r#"payroute_http_requests_total{route="payments",class="2xx"}"#;
    let mut seen = Vec::new();
    for _ in 0..20 {
        let text = get(backend, "/metrics").unwrap().body;
        let n: u64 = text
            .lines()
            .find_map(|l| l.strip_prefix(sample)?.trim().parse::<f64>().ok())
            .unwrap_or_else(|| panic!("no {sample} in:\n{text}")) as u64;
        if (1..SCALED_PAYMENTS as u64).contains(&n) {
            return;
        }
        seen.push(n);
    }
    panic!("one api instance took every payment (counts seen: {seen:?})");
}

/// Payments recorded by each worker, by its name in the ledger, read from `GET
/// /health` (each call goes to the next worker) until both have answered.
fn processed_by_worker(backend: &str) -> std::collections::BTreeMap<String, u64> {
    let mut by_name = std::collections::BTreeMap::new();
    wait_for(
        Duration::from_secs(15),
        "both workers to answer /health",
        || {
            let h = get(backend, "/health")
                .ok()
                .filter(|a| a.status == 200)?
                .json();
            let name = h["ledger"]["name"].as_str()?.to_string();
            let n = h["processed"]["default"].as_u64()? + h["processed"]["fallback"].as_u64()?;
            by_name.insert(name, n);
            (by_name.len() == 2).then_some(())
        },
    );
    assert_eq!(
        by_name.keys().collect::<Vec<_>>(),
        ["worker1", "worker2"],
        "{by_name:?}"
    );
    by_name
}

/// The scaled topology on a given database (`--ledger postgres://...`, started by the
/// test): payroute up starts two workers on it, restarts one killed with SIGKILL (whose
/// payments go on), and at stop leaves the database running: not its to stop.
#[test]
fn up_scaled_on_a_given_ledger_restarts_a_killed_worker() {
    let Some(pg) = common::pg::TestPg::start("up-given") else {
        return;
    };
    let mut c = config("up-given", Lb::Embedded, Limits::Off);
    c.workers = 2;
    c.ledger = Ledger::Postgres(pg.url());
    let running = launcher::start(&c).unwrap();
    let table = running.describe();
    assert!(table.contains(&format!("{} (given)", pg.url())), "{table}");
    assert_eq!(running.ledger_url(), Some(pg.url()));
    pay(&running.backend_url(), PAYMENTS);

    let pid_of = |role: &str| {
        running
            .pids()
            .into_iter()
            .find(|(n, _)| n == role)
            .map(|(_, p)| p)
    };
    let old = pid_of("worker1").unwrap();
    Command::new("kill")
        .args(["-KILL", &old.to_string()])
        .status()
        .unwrap();
    wait_for(Duration::from_secs(15), "worker1 to be restarted", || {
        running
            .take_events()
            .iter()
            .any(|e| matches!(e, Event::Restarted { name, .. } if name == "worker1"))
            .then_some(())
    });
    assert_ne!(pid_of("worker1"), Some(old));
    pay(&running.backend_url(), PAYMENTS);
    check_summary(
        &running.backend_url(),
        &running.default_url(),
        &running.fallback_url(),
        2 * PAYMENTS as u64,
    );
    let pg_pid = pg.pid().expect("PostgreSQL runs");
    stop_and_check_nothing_left(
        running,
        &[
            "processor-default",
            "processor-fallback",
            "worker1",
            "worker2",
            "api1",
            "api2",
        ],
    );
    assert_eq!(
        pg.pid(),
        Some(pg_pid),
        "payroute up stopped a database it did not start"
    );
}

/// The throwaway cluster follows the restart policy: killed outright (its whole process
/// group, as the OOM killer would), it is reported and started again on its data, which
/// PostgreSQL recovers; the workers reconnect, nothing recorded is lost, payments flow.
#[test]
fn up_scaled_restarts_its_postgres_after_a_crash() {
    if let Err(e) = launcher::pgcluster::find_bindir() {
        assert!(std::env::var_os("CI").is_none(), "{e:#}");
        eprintln!("NOTE: test skipped: {e:#}");
        return;
    }
    let mut c = config("up-pg-crash", Lb::Embedded, Limits::Off);
    c.workers = 2;
    c.ledger = Ledger::LocalPostgres;
    let running = launcher::start(&c).unwrap();
    pay_and_check_summary(&running);
    let pid_of = |role: &str| {
        running
            .pids()
            .into_iter()
            .find(|(n, _)| n == role)
            .map(|(_, p)| p)
    };
    let old = pid_of("postgres").expect("the cluster in the table");
    Command::new("kill")
        .args(["-KILL", "--", &format!("-{old}")])
        .status()
        .unwrap();
    let mut events = Vec::new();
    wait_for(Duration::from_secs(30), "postgres to be restarted", || {
        events.extend(running.take_events());
        events
            .iter()
            .any(|e| matches!(e, Event::Restarted { name, .. } if name == "postgres"))
            .then_some(())
    });
    assert!(
        events.iter().any(
            |e| matches!(e, Event::Exited { name, pid, .. } if name == "postgres" && *pid == old)
        ),
        "{events:?}"
    );
    assert_ne!(pid_of("postgres"), Some(old));
    // Each worker refuses payments (503) until it has reconnected; each says so in its
    // /health until then.
    let mut ok = std::collections::BTreeSet::new();
    wait_for(Duration::from_secs(15), "both workers to reconnect", || {
        let h = get(&running.backend_url(), "/health").ok()?.json();
        if h["status"] == "ok" {
            ok.insert(h["ledger"]["name"].as_str()?.to_string());
        }
        (ok.len() == 2).then_some(())
    });
    pay(&running.backend_url(), PAYMENTS);
    check_summary(
        &running.backend_url(),
        &running.default_url(),
        &running.fallback_url(),
        2 * PAYMENTS as u64,
    );
    let mut roles = EMBEDDED_ROLES.to_vec();
    roles.retain(|r| *r != "worker");
    roles.extend(["worker1", "worker2", "postgres"]);
    stop_and_check_nothing_left(running, &roles);
}

/// A setting that cannot work: `payroute up` names the flag, exits with 2 (as for a
/// usage error), and starts nothing: no run directory, no process. Among them, the
/// scaled topology's: several workers without a shared ledger, the challenge's limits
/// with one.
#[test]
fn up_cli_refuses_a_bad_setting_with_exit_2_and_starts_nothing() {
    let dir = common::test_dir("up-bad-setting");
    let (port, other) = (free_port().to_string(), free_port().to_string());
    let (port, other) = (port.as_str(), other.as_str());
    // The flags, the flag the error must name, and words it must say.
    let cases: [(&[&str], &str, &str); 5] = [
        (&["--port", "0", "--default-port", other], "--port", ""),
        (
            &["--port", port, "--default-port", port],
            "--default-port",
            "",
        ),
        (
            &[
                "--port",
                port,
                "--default-port",
                other,
                "--ready-timeout-secs",
                "0",
            ],
            "--ready-timeout-secs",
            "",
        ),
        (
            &["--port", port, "--default-port", other, "--workers", "2"],
            "--workers",
            "independent workers",
        ),
        (
            &[
                "--port",
                port,
                "--default-port",
                other,
                "--ledger",
                "postgres",
                "--limits",
                "rinha",
            ],
            "--limits",
            "--limits off",
        ),
    ];
    for (i, (flags, named, says)) in cases.into_iter().enumerate() {
        let run_dir = dir.join(format!("run{i}"));
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
            stderr.contains(&format!("invalid setting {named}:")) && stderr.contains(says),
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
