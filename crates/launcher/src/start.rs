//! [`start`] and [`start_with`]: check and prepare, then start the roles in the order
//! they depend on each other (the processors, the PostgreSQL cluster of `--ledger
//! postgres`, the workers, the api instances, the load balancer), each waited for before
//! the next, and hand the children to the supervisor.

use crate::children::{Children, Proc};
use crate::pgcluster::{PgCluster, PgClusterConfig};
use crate::pgrole::{self, ClusterRole};
use crate::preflight::{
    check_reachable_by_nginx_workers, ensure_port_free, prepare_run_dir, release_run_dir,
};
use crate::procs::{self, Spec};
use crate::{
    lbconf, limits, pginstall, probe, settings, supervise, Lb, Ledger, Running, StartOptions,
    UpConfig,
};
use anyhow::{anyhow, bail, Context};
use std::ffi::{OsStr, OsString};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often the readiness wait polls: short, as it bounds how soon `start` returns.
const READY_POLL: Duration = Duration::from_millis(20);
/// Lines of each log quoted when the start gives up: every role's log is quoted then,
/// so fewer than for the one role that died.
const GAVE_UP_LOG_LINES: usize = 5;
/// What an emulated processor is asked to see whether it serves: any HTTP answer will
/// do. Not the health endpoint: it is rate limited, and the worker's first poll must not
/// find the window used up.
const PROCESSOR_PROBE_PATH: &str = "/payments/00000000-0000-0000-0000-000000000000";

/// Starts the topology on 127.0.0.1 (see [`StartOptions`]) and waits until the load
/// balancer's port answers `GET /health` with 200. On failure, everything started is
/// stopped and the error names the role that failed, with the end of its log.
pub fn start(config: &UpConfig) -> anyhow::Result<Running> {
    start_with(config, &StartOptions::default())
}

/// [`start`] with explicit [`StartOptions`] (interface, restart policy, readiness bound).
/// Settings that cannot work are refused first, with a [`netio::SettingError`] in the
/// error's chain that names the flag.
pub fn start_with(config: &UpConfig, options: &StartOptions) -> anyhow::Result<Running> {
    settings::check(config, options)?;
    let lb_program = check_config(config)?;
    check_ports(config, options.host)?;
    let run_dir = prepare_run_dir(&config.run_dir)?;
    if config.lb == Lb::Nginx {
        if let Err(e) = check_reachable_by_nginx_workers(&run_dir) {
            release_run_dir(&run_dir);
            return Err(e);
        }
    }
    let (cgroups, limits_status) = limits::cgroups_for(config.limits, config.lb);
    let children = Arc::new(Children::new(cgroups, options.restart));
    let launch = Launch {
        config,
        host: options.host,
        connect_host: options.connect_host(),
        run_dir,
        starter: Starter::new(&children, options.ready_timeout),
    };
    let (default_url, fallback_url) = launch.processor_urls();
    // Built before the first child starts: if the start fails, dropping it stops
    // whatever was started.
    let mut running = Running {
        children: children.clone(),
        supervisor: None,
        backend_url: url(launch.backend_addr()),
        default_url: default_url.clone(),
        fallback_url: fallback_url.clone(),
        lb: config.lb,
        limits: limits_status,
        run_dir: launch.run_dir.clone(),
        public_addr: launch.public_addr(),
        ledger_url: None,
        stopped: false,
    };

    if config.default_url.is_none() {
        launch.processors()?;
    }
    running.ledger_url = launch.ledger()?;
    let ledger_url = running.ledger_url.as_deref();
    let worker_sockets = launch.workers(&default_url, &fallback_url, ledger_url)?;
    launch.apis(&worker_sockets)?;
    if let Some(program) = lb_program {
        launch.load_balancer(program)?;
    }
    let backend_addr = launch.backend_addr();
    launch.starter.wait(
        &format!("{} to answer GET /health with 200", running.backend_url),
        || probe::get_tcp(backend_addr, "/health") == Some(200),
    )?;
    // A multi-process load balancer may have forked its workers before its PID was
    // moved into its cgroup: move the whole group.
    launch.starter.rejoin_groups();

    running.supervisor =
        Some(supervise::spawn(children).context("cannot start the supervisor thread")?);
    Ok(running)
}

/// Refuses a configuration that cannot start, before anything is touched; finds the
/// load balancer's program, if it has one.
fn check_config(config: &UpConfig) -> anyhow::Result<Option<PathBuf>> {
    if !config.exe.is_file() {
        bail!("payroute executable {} not found", config.exe.display());
    }
    if config.ledger == Ledger::LocalPostgres {
        // Installed, and a user to run it as: before anything starts.
        pginstall::find_bindir().context("--ledger postgres")?;
        pginstall::RunAs::for_this_process().context("--ledger postgres")?;
    }
    let Some(name) = config.lb.program() else {
        return Ok(None);
    };
    let program = procs::find_program(name).with_context(|| {
        format!(
            "--lb {name}: `{name}` is not installed (looked in PATH and the sbin \
             directories); install it with scripts/install-deps.sh (Debian) or use \
             --lb embedded"
        )
    })?;
    Ok(Some(program))
}

/// Refuses ports something already listens on: the public one and, when they are to
/// be started, the emulators'.
fn check_ports(config: &UpConfig, host: IpAddr) -> anyhow::Result<()> {
    ensure_port_free(SocketAddr::new(host, config.port), "--port")?;
    if config.default_url.is_none() {
        let (default_port, fallback_port) = config.emulator_ports;
        ensure_port_free(SocketAddr::new(host, default_port), "--default-port")?;
        ensure_port_free(SocketAddr::new(host, fallback_port), "--fallback-port")?;
    }
    if config.ledger == Ledger::LocalPostgres && config.pg_port != 0 {
        let loopback = IpAddr::from([127, 0, 0, 1]);
        ensure_port_free(SocketAddr::new(loopback, config.pg_port), "--pg-port")?;
    }
    Ok(())
}

fn url(addr: SocketAddr) -> String {
    format!("http://{addr}")
}

/// Command-line arguments, from strings and paths alike.
fn os_args(args: &[&dyn AsRef<OsStr>]) -> Vec<OsString> {
    args.iter().map(|a| a.as_ref().to_os_string()).collect()
}

/// One start: the configuration, the addresses and the run directory worked out from
/// it, and the [`Starter`]. Each role has its method, in the order they start.
struct Launch<'a> {
    config: &'a UpConfig,
    /// Interface the public port and the emulators listen on.
    host: IpAddr,
    /// The address clients use to reach `host` (loopback for a wildcard).
    connect_host: IpAddr,
    run_dir: PathBuf,
    starter: Starter<'a>,
}

impl Launch<'_> {
    /// Where the load balancer (or the embedded api instances) listens.
    fn public_addr(&self) -> SocketAddr {
        SocketAddr::new(self.host, self.config.port)
    }

    /// Where clients reach the load balancer.
    fn backend_addr(&self) -> SocketAddr {
        SocketAddr::new(self.connect_host, self.config.port)
    }

    /// Base URLs of the default and the fallback processor: the given ones, or the
    /// emulators'.
    fn processor_urls(&self) -> (String, String) {
        match (&self.config.default_url, &self.config.fallback_url) {
            (Some(d), Some(f)) => (
                d.trim_end_matches('/').to_string(),
                f.trim_end_matches('/').to_string(),
            ),
            _ => {
                let (default_port, fallback_port) = self.config.emulator_ports;
                (
                    url(SocketAddr::new(self.connect_host, default_port)),
                    url(SocketAddr::new(self.connect_host, fallback_port)),
                )
            }
        }
    }

    /// A role run by the `payroute` executable, logging to `<name>.log` in the run
    /// directory. Every role but the processors is restarted when it exits.
    fn spec(&self, name: &str, args: Vec<OsString>, address: String) -> Spec {
        Spec {
            name: name.to_string(),
            program: self.config.exe.clone(),
            args,
            log: self.run_dir.join(format!("{name}.log")),
            address,
            restartable: !name.starts_with("processor"),
            multi_process: false,
        }
    }

    /// First, the two emulated processors: both started, then both waited for.
    fn processors(&self) -> anyhow::Result<()> {
        let (ports, fees) = (self.config.emulator_ports, self.config.emulator_fees);
        let emulators = [("default", ports.0, fees.0), ("fallback", ports.1, fees.1)];
        for (which, port, fee) in emulators {
            let listen = SocketAddr::new(self.host, port).to_string();
            let args = os_args(&[
                &"processor",
                &"--listen",
                &listen,
                &"--fee",
                &fee.to_string(),
            ]);
            let address = url(SocketAddr::new(self.connect_host, port));
            self.starter
                .spawn(self.spec(&format!("processor-{which}"), args, address))?;
        }
        for (which, port, _) in emulators {
            let addr = SocketAddr::new(self.connect_host, port);
            self.starter
                .wait(&format!("processor-{which} to answer on {addr}"), || {
                    probe::get_tcp(addr, PROCESSOR_PROBE_PATH).is_some()
                })?;
        }
        Ok(())
    }

    /// Second, with `--ledger postgres`, the throwaway cluster (handed to the
    /// supervisor). Returns the workers' ledger URL, if they share one.
    fn ledger(&self) -> anyhow::Result<Option<String>> {
        match &self.config.ledger {
            Ledger::File => Ok(None),
            Ledger::Postgres(url) => Ok(Some(url.clone())),
            Ledger::LocalPostgres => {
                let mut pg = PgClusterConfig::new(
                    self.run_dir.join(settings::PG_DIR),
                    self.run_dir.join(format!("{}.log", pgrole::NAME)),
                );
                pg.port = self.config.pg_port;
                pg.timeout = self.starter.remaining();
                let cluster = PgCluster::start(pg).context("starting PostgreSQL")?;
                let url = cluster.url();
                tracing::debug!("started PostgreSQL (pid {}): {url}", cluster.last_pid());
                *self.starter.children.cluster() = Some(ClusterRole::new(cluster));
                Ok(Some(url))
            }
        }
    }

    /// Third, the workers: all started, then each waited for (ready when its socket
    /// exists). With the file log, one: `worker`; with a shared ledger, `worker1..N`,
    /// each under its own name in the ledger. Returns their sockets.
    fn workers(
        &self,
        default_url: &str,
        fallback_url: &str,
        ledger: Option<&str>,
    ) -> anyhow::Result<Vec<PathBuf>> {
        let names: Vec<String> = match ledger {
            None => vec!["worker".into()],
            Some(_) => (1..=self.config.workers)
                .map(|k| format!("worker{k}"))
                .collect(),
        };
        let mut sockets = Vec::new();
        for name in &names {
            let socket = self.run_dir.join(format!("{name}.sock"));
            let mut args = os_args(&[
                &"worker",
                &"--socket",
                &socket,
                &"--default-url",
                &default_url,
                &"--fallback-url",
                &fallback_url,
            ]);
            match ledger {
                None => args.extend(os_args(&[&"--data-dir", &self.run_dir.join("worker-data")])),
                Some(url) => args.extend(os_args(&[&"--ledger", &url, &"--name", name])),
            }
            let address = format!("unix:{}", socket.display());
            self.starter.spawn(self.spec(name, args, address))?;
            sockets.push(socket);
        }
        for (name, socket) in names.iter().zip(&sockets) {
            self.starter
                .wait(&format!("{name} to create {}", socket.display()), || {
                    socket.exists()
                })?;
        }
        Ok(sockets)
    }

    /// Fourth, the two api instances, each given every worker: on the public port
    /// themselves (embedded), or each on its Unix socket behind the load balancer,
    /// waited for there.
    fn apis(&self, worker_sockets: &[PathBuf]) -> anyhow::Result<()> {
        let workers = worker_sockets
            .iter()
            .map(|s| s.to_string_lossy())
            .collect::<Vec<_>>()
            .join(",");
        let public_addr = self.public_addr();
        let mut api_sockets = Vec::new();
        for i in 1..=2 {
            let (listen, address) = if self.config.lb == Lb::Embedded {
                (
                    public_addr.to_string(),
                    format!("{public_addr} (SO_REUSEPORT)"),
                )
            } else {
                let socket = lbconf::api_socket(&self.run_dir, i);
                let listen = format!("unix:{}", socket.display());
                api_sockets.push(socket);
                (listen.clone(), listen)
            };
            let args = os_args(&[&"api", &"--listen", &listen, &"--worker-socket", &workers]);
            self.starter
                .spawn(self.spec(&format!("api{i}"), args, address))?;
        }
        for (i, socket) in api_sockets.iter().enumerate() {
            self.starter.wait(
                &format!(
                    "api{} to answer GET /health with 200 on {}",
                    i + 1,
                    socket.display()
                ),
                || probe::get_unix(socket, "/health") == Some(200),
            )?;
        }
        Ok(())
    }

    /// Last, the load balancer (`program`), with the compose deployment's config
    /// rewritten for the run directory and the public address.
    fn load_balancer(&self, program: PathBuf) -> anyhow::Result<()> {
        let (config_path, text, args) = match self.config.lb {
            Lb::Nginx => {
                let path = self.run_dir.join("nginx.conf");
                let text = lbconf::native_nginx(&self.run_dir, self.host, self.config.port)?;
                // -e: errors before the config is read go to stderr, not /var/log.
                // -p: relative paths resolve in the run dir. daemon off: stay in the
                // foreground, as a child we supervise.
                let args = os_args(&[
                    &"-e",
                    &"stderr",
                    &"-p",
                    &self.run_dir,
                    &"-c",
                    &path,
                    &"-g",
                    &"daemon off;",
                ]);
                (path, text, args)
            }
            Lb::Haproxy => {
                let path = self.run_dir.join("haproxy.cfg");
                let text = lbconf::native_haproxy(&self.run_dir, self.host, self.config.port)?;
                // -db: foreground, no daemon.
                let args = os_args(&[&"-db", &"-f", &path]);
                (path, text, args)
            }
            Lb::Embedded => unreachable!("no program for the embedded load balancer"),
        };
        std::fs::write(&config_path, text)
            .with_context(|| format!("cannot write {}", config_path.display()))?;
        self.starter.spawn(Spec {
            name: "lb".into(),
            program,
            args,
            log: self.run_dir.join("lb.log"),
            address: self.public_addr().to_string(),
            restartable: true,
            multi_process: true,
        })
    }
}

/// Spawns children during [`start`] and waits for their readiness, failing with the
/// details of any child that exits meanwhile.
struct Starter<'a> {
    children: &'a Children,
    deadline: Instant,
    timeout: Duration,
}

impl<'a> Starter<'a> {
    /// Every wait ends by `timeout` from now.
    fn new(children: &'a Children, timeout: Duration) -> Starter<'a> {
        Starter {
            children,
            deadline: Instant::now() + timeout,
            timeout,
        }
    }

    /// Starts `spec` in its cgroups, if any, and adds it to the children.
    fn spawn(&self, spec: Spec) -> anyhow::Result<()> {
        let child = procs::spawn(&spec).with_context(|| format!("cannot start {}", spec.name))?;
        let pid = child.id();
        self.children
            .limit(&spec.name, pid)
            .map_err(|e| anyhow!("cannot limit {}: {e}", spec.name))?;
        tracing::debug!("started {} (pid {pid}): {}", spec.name, spec.command_line());
        self.children.procs().push(Proc::new(spec, child));
        Ok(())
    }

    /// What is left of the time given to the start (at least a second).
    fn remaining(&self) -> Duration {
        self.deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_secs(1))
    }

    /// Polls `ready` until it holds, a child exits, or the deadline passes.
    fn wait(&self, what: &str, mut ready: impl FnMut() -> bool) -> anyhow::Result<()> {
        loop {
            if ready() {
                return Ok(());
            }
            self.fail_if_one_exited(what)?;
            if Instant::now() >= self.deadline {
                return Err(self.gave_up(what));
            }
            std::thread::sleep(READY_POLL);
        }
    }

    /// An error naming the first child found to have exited, with the end of its log.
    fn fail_if_one_exited(&self, what: &str) -> anyhow::Result<()> {
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
        Ok(())
    }

    /// The error of a start that timed out, with the end of every log.
    fn gave_up(&self, what: &str) -> anyhow::Error {
        let logs: Vec<String> = self
            .children
            .procs()
            .iter()
            .map(|p| {
                format!(
                    "{} ({}):\n{}",
                    p.spec.name,
                    p.spec.log.display(),
                    indent(&procs::tail(&p.spec.log, GAVE_UP_LOG_LINES))
                )
            })
            .collect();
        anyhow!(
            "gave up after {:?} waiting for {what}. Last lines of each log:\n{}",
            self.timeout,
            logs.join("\n")
        )
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::preflight::RUN_DIR_PIDFILE;

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
        // Both emulators start before the first wait: whichever is reaped first is named.
        assert!(
            err.contains("processor-default (pid ") || err.contains("processor-fallback (pid "),
            "{err}"
        );
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
