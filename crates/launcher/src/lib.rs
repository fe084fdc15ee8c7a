//! `payroute up`: the whole topology of the compose deployment as local processes:
//! load balancer on one port → two api instances → worker → two processors.
//!
//! Contract used by `payroute bench` and the tests (keep these names and meanings):
//! - [`UpConfig`]: what to start; [`start`] starts it and waits until the port answers
//!   `GET /health` with 200.
//! - [`Running::backend_url`], [`Running::default_url`], [`Running::fallback_url`].
//! - [`Running::usage`]: CPU seconds, peak RSS and throttled time of each process so far.
//! - [`Running::stop`]: stops every process it started (by PID), returns final usage.
//!   Dropping a [`Running`] stops everything too, so a panicking test leaves nothing.
//!
//! [`start`] installs no signal handler and touches no global state but the children
//! and (with [`Limits::Rinha`]) their cgroups; only [`run`], the CLI, handles Ctrl-C and
//! SIGTERM. A background thread supervises the children: a role that exits is reported
//! as an [`Event`] and, under [`Restart::Always`], restarted with an exponential backoff
//! (emulated processors are reported, never restarted: a restarted emulator would have
//! empty books and silently disagree with payroute's summary).

mod cgroup;
mod children;
mod cli;
mod config;
mod events;
pub mod lbconf;
mod limits;
mod preflight;
mod probe;
mod procs;
pub mod resources;
mod running;
mod stop;
mod supervise;
mod usage;

use anyhow::{bail, Context};
use children::{Children, Proc};
pub use cli::{Args, Lb, Limits, Restart};
pub use config::{StartOptions, UpConfig, DEFAULT_READY_TIMEOUT};
pub use events::Event;
pub use limits::LimitsStatus;
use preflight::{
    check_reachable_by_nginx_workers, ensure_port_free, prepare_run_dir, release_run_dir,
};
use procs::Spec;
pub use running::Running;
use std::ffi::OsString;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
pub use usage::{usage_table, ProcessUsage, UsageDetail};

/// How often the readiness wait polls: short, as it bounds how soon `start` returns.
const READY_POLL: Duration = Duration::from_millis(20);

/// Starts the topology on 127.0.0.1 (see [`StartOptions`]) and waits until the load
/// balancer's port answers `GET /health` with 200. On failure, everything started is
/// stopped and the error names the role that failed, with the end of its log.
pub fn start(config: &UpConfig) -> anyhow::Result<Running> {
    start_with(config, &StartOptions::default())
}

/// [`start`] with explicit [`StartOptions`] (interface, restart policy, readiness bound).
pub fn start_with(config: &UpConfig, options: &StartOptions) -> anyhow::Result<Running> {
    if !config.exe.is_file() {
        bail!("payroute executable {} not found", config.exe.display());
    }
    if config.default_url.is_some() != config.fallback_url.is_some() {
        bail!("give both processor URLs (default and fallback) or neither");
    }
    let lb_program = match config.lb.program() {
        None => None,
        Some(name) => Some(procs::find_program(name).with_context(|| {
            format!(
                "--lb {name}: `{name}` is not installed (looked in PATH and the sbin \
                 directories); install it with scripts/install-deps.sh (Debian) or use \
                 --lb embedded"
            )
        })?),
    };
    let host = options.connect_host();
    let public_addr = SocketAddr::new(options.host, config.port);
    let backend_addr = SocketAddr::new(host, config.port);
    ensure_port_free(public_addr, "--port")?;
    if config.default_url.is_none() {
        ensure_port_free(
            SocketAddr::new(options.host, config.emulator_ports.0),
            "--default-port",
        )?;
        ensure_port_free(
            SocketAddr::new(options.host, config.emulator_ports.1),
            "--fallback-port",
        )?;
    }
    let run_dir = prepare_run_dir(&config.run_dir)?;
    if config.lb == Lb::Nginx {
        if let Err(e) = check_reachable_by_nginx_workers(&run_dir) {
            release_run_dir(&run_dir);
            return Err(e);
        }
    }

    let (cgroups, limits_status) = limits::cgroups_for(config.limits, config.lb);

    let children = Arc::new(Children::new(cgroups, options.restart));
    let url = |addr: SocketAddr| format!("http://{addr}");
    let (default_url, fallback_url) = match (&config.default_url, &config.fallback_url) {
        (Some(d), Some(f)) => (
            d.trim_end_matches('/').to_string(),
            f.trim_end_matches('/').to_string(),
        ),
        _ => (
            url(SocketAddr::new(host, config.emulator_ports.0)),
            url(SocketAddr::new(host, config.emulator_ports.1)),
        ),
    };
    let mut running = Running {
        children: children.clone(),
        supervisor: None,
        backend_url: url(backend_addr),
        default_url: default_url.clone(),
        fallback_url: fallback_url.clone(),
        lb: config.lb,
        limits: limits_status,
        run_dir: run_dir.clone(),
        public_addr,
        stopped: false,
    };
    let deadline = Instant::now() + options.ready_timeout;
    let mut starter = Starter {
        children: &children,
        deadline,
        timeout: options.ready_timeout,
    };
    let exe = &config.exe;
    let spec = |name: &str, args: Vec<OsString>, address: String| Spec {
        name: name.to_string(),
        program: exe.clone(),
        args,
        log: run_dir.join(format!("{name}.log")),
        address,
        restartable: !name.starts_with("processor"),
        multi_process: false,
    };

    // 1. Processors (emulated), unless URLs were given.
    if config.default_url.is_none() {
        let ports = [config.emulator_ports.0, config.emulator_ports.1];
        let fees = [config.emulator_fees.0, config.emulator_fees.1];
        for (i, which) in ["default", "fallback"].into_iter().enumerate() {
            let listen = SocketAddr::new(options.host, ports[i]);
            let args = os_args(&[
                "processor",
                "--listen",
                &listen.to_string(),
                "--fee",
                &fees[i].to_string(),
            ]);
            starter.spawn(spec(
                &format!("processor-{which}"),
                args,
                url(SocketAddr::new(host, ports[i])),
            ))?;
        }
        for (i, which) in ["default", "fallback"].into_iter().enumerate() {
            let addr = SocketAddr::new(host, ports[i]);
            // Any HTTP answer means it serves. Not the health endpoint: it is rate
            // limited, and the worker's first poll must not find the window used up.
            starter.wait(&format!("processor-{which} to answer on {addr}"), || {
                probe::get_tcp(addr, "/payments/00000000-0000-0000-0000-000000000000").is_some()
            })?;
        }
    }

    // 2. Worker: ready when its socket exists.
    let worker_socket = run_dir.join("worker.sock");
    let args = vec![
        "worker".into(),
        "--socket".into(),
        worker_socket.clone().into_os_string(),
        "--default-url".into(),
        default_url.clone().into(),
        "--fallback-url".into(),
        fallback_url.clone().into(),
        "--data-dir".into(),
        run_dir.join("worker-data").into_os_string(),
    ];
    starter.spawn(spec(
        "worker",
        args,
        format!("unix:{}", worker_socket.display()),
    ))?;
    starter.wait(
        &format!("the worker to create {}", worker_socket.display()),
        || worker_socket.exists(),
    )?;

    // 3. The api instances: on the public port themselves (embedded), or on sockets.
    let mut api_sockets = Vec::new();
    for i in 1..=2 {
        let (listen, address) = if config.lb == Lb::Embedded {
            (
                public_addr.to_string(),
                format!("{public_addr} (SO_REUSEPORT)"),
            )
        } else {
            let socket = lbconf::api_socket(&run_dir, i);
            api_sockets.push(socket.clone());
            let l = format!("unix:{}", socket.display());
            (l.clone(), l)
        };
        let args = vec![
            "api".into(),
            "--listen".into(),
            listen.into(),
            "--worker-socket".into(),
            worker_socket.clone().into_os_string(),
        ];
        starter.spawn(spec(&format!("api{i}"), args, address))?;
    }
    for (i, socket) in api_sockets.iter().enumerate() {
        starter.wait(
            &format!(
                "api{} to answer GET /health with 200 on {}",
                i + 1,
                socket.display()
            ),
            || probe::get_unix(socket, "/health") == Some(200),
        )?;
    }

    // 4. The load balancer.
    if let Some(program) = lb_program {
        let (config_path, text, args) = match config.lb {
            Lb::Nginx => {
                let path = run_dir.join("nginx.conf");
                let text = lbconf::native_nginx(&run_dir, options.host, config.port)?;
                // -e: errors before the config is read go to stderr, not /var/log.
                // -p: relative paths resolve in the run dir. daemon off: stay in the
                // foreground, as a child we supervise.
                let args = vec![
                    "-e".into(),
                    "stderr".into(),
                    "-p".into(),
                    run_dir.clone().into_os_string(),
                    "-c".into(),
                    path.clone().into_os_string(),
                    "-g".into(),
                    "daemon off;".into(),
                ];
                (path, text, args)
            }
            Lb::Haproxy => {
                let path = run_dir.join("haproxy.cfg");
                let text = lbconf::native_haproxy(&run_dir, options.host, config.port)?;
                // -db: foreground, no daemon.
                let args = vec!["-db".into(), "-f".into(), path.clone().into_os_string()];
                (path, text, args)
            }
            Lb::Embedded => unreachable!("no program for the embedded load balancer"),
        };
        std::fs::write(&config_path, text)
            .with_context(|| format!("cannot write {}", config_path.display()))?;
        starter.spawn(Spec {
            name: "lb".into(),
            program,
            args,
            log: run_dir.join("lb.log"),
            address: public_addr.to_string(),
            restartable: true,
            multi_process: true,
        })?;
    }
    starter.wait(
        &format!("{} to answer GET /health with 200", running.backend_url),
        || probe::get_tcp(backend_addr, "/health") == Some(200),
    )?;

    // A multi-process load balancer may have forked its workers before its PID was
    // moved into its cgroup: move the whole group.
    starter.rejoin_groups();

    running.supervisor =
        Some(supervise::spawn(children).context("cannot start the supervisor thread")?);
    Ok(running)
}

fn os_args(args: &[&str]) -> Vec<OsString> {
    args.iter().map(OsString::from).collect()
}

/// Spawns children during [`start`] and waits for their readiness, failing with the
/// details of any child that exits meanwhile.
struct Starter<'a> {
    children: &'a Children,
    deadline: Instant,
    timeout: Duration,
}

impl Starter<'_> {
    fn spawn(&mut self, spec: Spec) -> anyhow::Result<()> {
        let child = procs::spawn(&spec).with_context(|| format!("cannot start {}", spec.name))?;
        let pid = child.id();
        self.children
            .limit(&spec.name, pid)
            .map_err(|e| anyhow::anyhow!("cannot limit {}: {e}", spec.name))?;
        tracing::debug!("started {} (pid {pid}): {}", spec.name, spec.command_line());
        self.children.procs().push(Proc::new(spec, child));
        Ok(())
    }

    /// Polls `ready` until it holds, a child exits, or the deadline passes.
    fn wait(&mut self, what: &str, mut ready: impl FnMut() -> bool) -> anyhow::Result<()> {
        loop {
            if ready() {
                return Ok(());
            }
            for p in self.children.procs().iter_mut() {
                if let Ok(Some(status)) = p.try_reap() {
                    bail!(
                        "{} (pid {}) exited while waiting for {what}: {status}. Last lines of {}:\n{}",
                        p.spec.name,
                        p.pid,
                        p.spec.log.display(),
                        indent(&p.log_tail())
                    );
                }
            }
            if Instant::now() >= self.deadline {
                let logs: Vec<String> = self
                    .children
                    .procs()
                    .iter()
                    .map(|p| {
                        format!(
                            "{} ({}):\n{}",
                            p.spec.name,
                            p.spec.log.display(),
                            indent(&procs::tail(&p.spec.log, 5))
                        )
                    })
                    .collect();
                bail!(
                    "gave up after {:?} waiting for {what}. Last lines of each log:\n{}",
                    self.timeout,
                    logs.join("\n")
                );
            }
            std::thread::sleep(READY_POLL);
        }
    }

    fn rejoin_groups(&self) {
        self.children.rejoin_groups(&self.children.procs());
    }
}

fn indent(text: &str) -> String {
    text.lines()
        .map(|l| format!("    {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Entry point of `payroute up`: starts everything, prints what runs where, reports
/// child exits and restarts, and stops everything on Ctrl-C or SIGTERM.
pub fn run(args: Args) -> anyhow::Result<()> {
    let exe = std::env::current_exe().context("cannot find the payroute executable")?;
    let config = UpConfig::from_args(&args, exe);
    let options = StartOptions::from_args(&args);
    let rt = netio::single_thread_runtime().context("cannot start the signal runtime")?;
    rt.block_on(async move {
        use tokio::signal::unix::{signal, SignalKind};
        // Handlers first: a Ctrl-C during the start must stop what was started, not
        // kill the launcher and orphan the children.
        let mut interrupt = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
        let mut terminate = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
        eprintln!(
            "payroute up: starting (logs in {})",
            config.run_dir.display()
        );
        let running = start_with(&config, &options)?;
        println!("{}", running.describe());
        println!("Ctrl-C stops everything.");
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        let why = loop {
            tokio::select! {
                _ = interrupt.recv() => break "SIGINT",
                _ = terminate.recv() => break "SIGTERM",
                // The supervisor has logged them (stderr) already.
                _ = tick.tick() => drop(running.take_events()),
            }
        };
        eprintln!("payroute up: {why}: stopping everything");
        let usage = running.stop_with_details()?;
        println!("{}", usage_table(&usage));
        println!("stopped; logs kept in {}", config.run_dir.display());
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use preflight::RUN_DIR_PIDFILE;

    #[test]
    fn missing_executable_is_a_clear_error() {
        let c = UpConfig::new(
            "/nonexistent/payroute",
            std::env::temp_dir().join("launcher-unused"),
        );
        let err = start(&c).unwrap_err().to_string();
        assert!(err.contains("/nonexistent/payroute"), "{err}");
    }

    /// A role that dies during the start: the error names it, its exit status and the
    /// end of its log, and whatever was started is stopped.
    #[test]
    fn a_role_dying_at_start_is_named_with_its_log() {
        // Three distinct ports: the listeners are held until all three are chosen.
        let free3 = || {
            let ls: Vec<std::net::TcpListener> = (0..3)
                .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
                .collect();
            let p: Vec<u16> = ls.iter().map(|l| l.local_addr().unwrap().port()).collect();
            (p[0], p[1], p[2])
        };
        let dir = std::env::temp_dir().join(format!("launcher-dies-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        // `false` ignores its arguments and exits with status 1: every role "crashes".
        let mut config = UpConfig::new("/bin/false", &dir);
        // A port taken by a test running in parallel between the choice and the start
        // is not what this test is about: choose again (bounded).
        let mut err = String::new();
        for _ in 0..5 {
            let (a, b, c) = free3();
            config.port = a;
            config.emulator_ports = (b, c);
            err = format!("{:#}", start(&config).unwrap_err());
            if !err.contains("is not available") {
                break;
            }
        }
        assert!(err.contains("processor-default (pid "), "{err}");
        assert!(err.contains("exit status: 1"), "{err}");
        assert!(
            err.contains("=== payroute up: starting `/bin/false processor"),
            "{err}"
        );
        // Stopped and released: the run directory is free for the next start.
        assert!(!dir.join(RUN_DIR_PIDFILE).exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
