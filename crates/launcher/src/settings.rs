//! Settings that cannot work, refused before anything is touched: each rule names the
//! flag to change (a [`netio::SettingError`], which `payroute` turns into exit code 2,
//! as clap does for a usage error). What depends on the machine rather than on the
//! settings (a port someone else uses, a program not installed) is checked later, by
//! `preflight` and `start`.

use crate::{pgcluster, Ledger, Limits, StartOptions, UpConfig};
use netio::SettingError;
use std::time::Duration;

/// Worker processes at most: each is a process with its runtime and two database
/// connections, and the throwaway cluster allows 50; far beyond what one machine
/// gains from (the point of more workers is more machines).
pub(crate) const MAX_WORKERS: usize = 16;

/// Checks every rule, in the order of the flags; the first broken one is the error.
pub(crate) fn check(config: &UpConfig, options: &StartOptions) -> Result<(), SettingError> {
    check_port(config.port)?;
    if config.default_url.is_none() {
        check_emulators(config)?;
    } else {
        check_processor_urls(config)?;
    }
    check_run_dir(config)?;
    check_ready_timeout(options.ready_timeout)?;
    check_workers(config)?;
    check_ledger(config)
}

/// The api instances share the public port (embedded load balancer) or sit behind one
/// that listens on it: "any port" would give each its own.
fn check_port(port: u16) -> Result<(), SettingError> {
    if port == 0 {
        return Err(SettingError::new(
            "port",
            "0 (any free port) cannot be the public port: each api instance would get a \
             port of its own; give a fixed port, such as 9999",
        ));
    }
    Ok(())
}

/// The emulators' ports: fixed, distinct from each other and from the public port;
/// their fees: fractions below 1.
fn check_emulators(config: &UpConfig) -> Result<(), SettingError> {
    let (default_port, fallback_port) = config.emulator_ports;
    for (flag, port) in [
        ("default-port", default_port),
        ("fallback-port", fallback_port),
    ] {
        if port == 0 {
            return Err(SettingError::new(
                flag,
                "0 (any free port) cannot be told to the worker in advance; give a fixed port",
            ));
        }
        if port == config.port {
            return Err(SettingError::new(
                flag,
                format!("{port} is also the public port (--port); give another port"),
            ));
        }
    }
    if default_port == fallback_port {
        return Err(SettingError::new(
            "fallback-port",
            format!("{fallback_port} is also the default processor's port (--default-port)"),
        ));
    }
    let (default_fee, fallback_fee) = config.emulator_fees;
    for (flag, fee) in [("default-fee", default_fee), ("fallback-fee", fallback_fee)] {
        if !(fee.is_finite() && (0.0..1.0).contains(&fee)) {
            return Err(SettingError::new(
                flag,
                format!("{fee} is not a fee: a fraction from 0 to below 1, as in 0.05 for 5%"),
            ));
        }
    }
    Ok(())
}

/// Given processors: both or neither, each an `http://HOST:PORT` URL.
fn check_processor_urls(config: &UpConfig) -> Result<(), SettingError> {
    let urls = [
        ("default-url", &config.default_url),
        ("fallback-url", &config.fallback_url),
    ];
    for (flag, url) in urls {
        let Some(url) = url else {
            return Err(SettingError::new(
                flag,
                "missing: give both processor URLs (default and fallback) or neither",
            ));
        };
        let host = url.strip_prefix("http://").unwrap_or("");
        if host.trim_end_matches('/').is_empty() || host.contains(char::is_whitespace) {
            return Err(SettingError::new(
                flag,
                format!("`{url}` is not an http://HOST:PORT URL"),
            ));
        }
    }
    Ok(())
}

/// The run directory: a directory (or nothing yet), whose path the load balancers'
/// configs can hold.
fn check_run_dir(config: &UpConfig) -> Result<(), SettingError> {
    let dir = &config.run_dir;
    if dir.as_os_str().is_empty() {
        return Err(SettingError::new("run-dir", "empty path"));
    }
    if dir.exists() && !dir.is_dir() {
        return Err(SettingError::new(
            "run-dir",
            format!("{} exists and is not a directory", dir.display()),
        ));
    }
    if config.lb.program().is_some() {
        let text = dir.to_str().ok_or_else(|| {
            SettingError::new(
                "run-dir",
                format!(
                    "{} is not UTF-8, which a load balancer config cannot hold",
                    dir.display()
                ),
            )
        })?;
        if text.contains(|c: char| c.is_whitespace() || c == ';' || c == '#' || c == '"') {
            return Err(SettingError::new(
                "run-dir",
                format!(
                    "`{text}` contains whitespace, `;`, `#` or `\"`, which the load \
                     balancer's config cannot take unquoted"
                ),
            ));
        }
    }
    Ok(())
}

/// One worker with its file log, or several sharing a ledger.
fn check_workers(config: &UpConfig) -> Result<(), SettingError> {
    let n = config.workers;
    if n == 0 {
        return Err(SettingError::new(
            "workers",
            "0: nothing would take the payments; the default is 1",
        ));
    }
    if n > MAX_WORKERS {
        return Err(SettingError::new(
            "workers",
            format!(
                "{n} is more than {MAX_WORKERS}: more workers on one machine only compete \
                 for its cores; scale out over machines instead (README \"Scaling out\")"
            ),
        ));
    }
    if n > 1 && !config.ledger.is_shared() {
        return Err(SettingError::new(
            "workers",
            format!(
                "{n} workers need a shared ledger (--ledger postgres, or --ledger \
                 postgres://USER@HOST:PORT/DB): with the file log each worker would keep a \
                 log of its own, and the api instances would spread the payments over {n} \
                 independent workers, each with its own queue, duplicates and summary, so \
                 no answer would count every payment"
            ),
        ));
    }
    if n > 1 && config.run_dir.to_string_lossy().contains(',') {
        return Err(SettingError::new(
            "run-dir",
            "contains `,`, which separates the workers' sockets given to the api instances",
        ));
    }
    Ok(())
}

/// A shared ledger has no share of the challenge's budget; the throwaway cluster's
/// port and socket must be usable.
fn check_ledger(config: &UpConfig) -> Result<(), SettingError> {
    if config.ledger.is_shared() && config.limits == Limits::Rinha {
        return Err(SettingError::new(
            "limits",
            "rinha applies the challenge's table (one worker with its file log, 1.5 CPU and \
             350 MB in all), which has no share for several workers and PostgreSQL: run \
             the scaled topology (--ledger) with --limits off",
        ));
    }
    if config.ledger != Ledger::LocalPostgres {
        if config.pg_port != 0 {
            return Err(SettingError::new(
                "pg-port",
                "is the port of the throwaway cluster, which only --ledger postgres starts",
            ));
        }
        return Ok(());
    }
    let mut taken = vec![("--port", config.port)];
    if config.default_url.is_none() {
        taken.push(("--default-port", config.emulator_ports.0));
        taken.push(("--fallback-port", config.emulator_ports.1));
    }
    if let Some((flag, _)) = taken.iter().find(|(_, p)| *p == config.pg_port) {
        return Err(SettingError::new(
            "pg-port",
            format!("{} is also {flag}; give another port, or 0", config.pg_port),
        ));
    }
    let dir = std::path::absolute(&config.run_dir).unwrap_or_else(|_| config.run_dir.clone());
    pgcluster::check_dir(&dir.join(PG_DIR)).map_err(|e| SettingError::new("run-dir", e))
}

/// The throwaway cluster's directory in the run directory.
pub(crate) const PG_DIR: &str = "postgres";

/// A start must be given some time.
fn check_ready_timeout(timeout: Duration) -> Result<(), SettingError> {
    if timeout.is_zero() {
        return Err(SettingError::new(
            "ready-timeout-secs",
            "0 gives the system no time to start; the default is 30",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Lb;

    fn config() -> UpConfig {
        UpConfig::new(
            "/bin/true",
            std::env::temp_dir().join("launcher-settings-none"),
        )
    }

    /// The flag the error names, or `None` when the settings pass.
    fn refused(config: &UpConfig) -> Option<&'static str> {
        check(config, &StartOptions::default())
            .err()
            .map(|e| e.setting)
    }

    #[test]
    fn the_defaults_pass() {
        assert_eq!(refused(&config()), None);
    }

    #[test]
    fn public_port_zero() {
        let mut c = config();
        c.port = 0;
        assert_eq!(refused(&c), Some("port"));
    }

    #[test]
    fn emulator_port_zero() {
        let mut c = config();
        c.emulator_ports.0 = 0;
        assert_eq!(refused(&c), Some("default-port"));
        let mut c = config();
        c.emulator_ports.1 = 0;
        assert_eq!(refused(&c), Some("fallback-port"));
    }

    #[test]
    fn ports_that_collide() {
        let mut c = config();
        c.emulator_ports.0 = c.port;
        assert_eq!(refused(&c), Some("default-port"));
        let mut c = config();
        c.emulator_ports.1 = c.port;
        assert_eq!(refused(&c), Some("fallback-port"));
        let mut c = config();
        c.emulator_ports.1 = c.emulator_ports.0;
        let err = check(&c, &StartOptions::default()).unwrap_err();
        assert_eq!(err.setting, "fallback-port");
        assert!(err.to_string().contains("--default-port"), "{err}");
    }

    #[test]
    fn emulator_ports_do_not_matter_with_given_processors() {
        let mut c = config();
        c.emulator_ports = (0, 0);
        c.default_url = Some("http://localhost:8001".into());
        c.fallback_url = Some("http://localhost:8002".into());
        assert_eq!(refused(&c), None);
    }

    #[test]
    fn fees_outside_zero_to_one() {
        for fee in [-0.01, 1.0, 5.0, f64::NAN, f64::INFINITY] {
            let mut c = config();
            c.emulator_fees.0 = fee;
            assert_eq!(refused(&c), Some("default-fee"), "{fee}");
            let mut c = config();
            c.emulator_fees.1 = fee;
            assert_eq!(refused(&c), Some("fallback-fee"), "{fee}");
        }
        let mut c = config();
        c.emulator_fees = (0.0, 0.99);
        assert_eq!(refused(&c), None);
    }

    #[test]
    fn processor_urls_in_pairs_and_http() {
        let mut c = config();
        c.default_url = Some("http://localhost:8001".into());
        assert_eq!(refused(&c), Some("fallback-url"));
        c.fallback_url = Some("https://localhost:8002".into());
        assert_eq!(refused(&c), Some("fallback-url"));
        c.fallback_url = Some("http://".into());
        assert_eq!(refused(&c), Some("fallback-url"));
        c.default_url = Some("localhost:8001".into());
        c.fallback_url = Some("http://localhost:8002".into());
        assert_eq!(refused(&c), Some("default-url"));
    }

    #[test]
    fn run_dir_that_is_a_file() {
        let file = std::env::temp_dir().join(format!("launcher-settings-{}", std::process::id()));
        std::fs::write(&file, "not a directory").unwrap();
        let mut c = config();
        c.run_dir = file.clone();
        let verdict = refused(&c);
        std::fs::remove_file(&file).unwrap();
        assert_eq!(verdict, Some("run-dir"));
        c.run_dir = "".into();
        assert_eq!(refused(&c), Some("run-dir"));
    }

    #[test]
    fn run_dir_a_load_balancer_config_cannot_hold() {
        let mut c = config();
        c.run_dir = "/tmp/with space".into();
        assert_eq!(refused(&c), None, "embedded: no config to write");
        for lb in [Lb::Nginx, Lb::Haproxy] {
            c.lb = lb;
            assert_eq!(refused(&c), Some("run-dir"), "{lb:?}");
        }
    }

    #[test]
    fn several_workers_need_a_shared_ledger() {
        let mut c = config();
        c.workers = 2;
        let err = check(&c, &StartOptions::default()).unwrap_err();
        assert_eq!(err.setting, "workers");
        assert!(err.problem.contains("--ledger postgres"), "{err}");
        assert!(err.problem.contains("independent workers"), "{err}");
        for ledger in [
            Ledger::LocalPostgres,
            Ledger::Postgres("postgres://u@h:5432/d".into()),
        ] {
            c.ledger = ledger;
            assert_eq!(refused(&c), None);
        }
        c.workers = 0;
        assert_eq!(refused(&c), Some("workers"));
        c.workers = MAX_WORKERS + 1;
        assert_eq!(refused(&c), Some("workers"));
        c.workers = 3;
        c.run_dir = "/tmp/a,b".into();
        assert_eq!(refused(&c), Some("run-dir"));
    }

    #[test]
    fn a_shared_ledger_has_no_share_of_the_challenge_limits() {
        let mut c = config();
        c.ledger = Ledger::LocalPostgres;
        c.limits = Limits::Rinha;
        assert_eq!(refused(&c), Some("limits"));
        c.ledger = Ledger::File;
        assert_eq!(refused(&c), None);
    }

    #[test]
    fn the_throwaway_cluster_port() {
        let mut c = config();
        c.pg_port = 5432;
        assert_eq!(refused(&c), Some("pg-port"), "without --ledger postgres");
        c.ledger = Ledger::LocalPostgres;
        assert_eq!(refused(&c), None);
        c.pg_port = c.port;
        assert_eq!(refused(&c), Some("pg-port"));
        c.pg_port = c.emulator_ports.1;
        assert_eq!(refused(&c), Some("pg-port"));
        c.pg_port = 0;
        c.run_dir = format!("/tmp/{}", "r".repeat(90)).into();
        assert_eq!(refused(&c), Some("run-dir"), "a socket path too long");
    }

    #[test]
    fn ready_timeout_zero() {
        let options = StartOptions {
            ready_timeout: Duration::ZERO,
            ..StartOptions::default()
        };
        let err = check(&config(), &options).unwrap_err();
        assert_eq!(err.setting, "ready-timeout-secs");
    }
}
