//! A throwaway PostgreSQL cluster ([`PgCluster`]) for the workers' shared ledger: made
//! with `initdb`, started and stopped with `pg_ctl`, in a directory of its own,
//! listening on 127.0.0.1. `payroute up --ledger postgres` runs one in its run
//! directory; the tests run one per test (`crates/payroute/tests/common/pg.rs`).
//!
//! - Layout: `<dir>/data` (the cluster, PGDATA; payroute's settings in
//!   `data/payroute.conf`, included by `postgresql.conf`), `<dir>/socket` (its Unix
//!   socket, used by nobody but kept out of `/var/run`); the server's log is a file of
//!   the caller's choice (`pg_ctl -l`).
//! - User: the launcher's own or, when the launcher is root, the `postgres` system user
//!   (`initdb` and `postgres` refuse root), to whom the directory and the log are given.
//! - Access: superuser `payroute`, `trust` authentication, database `payroute`, on
//!   127.0.0.1 only: [`PgCluster::url`] is what a worker's `--ledger` takes.
//! - Settings ([`settings_text`]): small, for a machine of two cores shared with the
//!   rest of the topology. `fsync`, `synchronous_commit` and `full_page_writes` stay ON
//!   (written out, so that nobody "optimises" them away): the database is the payment
//!   ledger, and a payment acknowledged to a client must survive a crash of the machine.
//! - Stop ([`PgCluster::stop`], also on drop): `pg_ctl stop -m fast` (sessions ended, a
//!   clean checkpoint); if the postmaster is still there, by its PID: SIGQUIT (immediate
//!   stop), then SIGKILL to its process group. The postmaster is not the launcher's
//!   child (`pg_ctl` starts it in a session of its own, so a Ctrl-C in the terminal does
//!   not reach it): it is found through its pid file and recognised by its command line,
//!   which names its data directory.

pub use crate::pginstall::{find_bindir, ENV_PG_BINDIR};

use crate::pginstall::RunAs;
use crate::procs::{self, Sample};
use anyhow::{bail, Context};
use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The superuser `initdb` creates, and the database made for the ledger.
pub const USER: &str = "payroute";
pub const DATABASE: &str = "payroute";
/// Connections at most, by default: each worker holds two (its writer and its main
/// connection) and a third while it starts; 50 leaves room for 16 workers and a psql.
pub const DEFAULT_MAX_CONNECTIONS: u32 = 50;
/// Bound of the start (`pg_ctl start -w -t`): initdb's cluster starts in well under a
/// second; a loaded machine or a crash recovery takes longer.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// Bound of `pg_ctl stop -m fast`: a fast stop ends the sessions and writes one
/// checkpoint, a second or two for a small ledger.
pub const DEFAULT_STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// Bound of a start after a crash (by the supervisor, which waits meanwhile).
const RESTART_TIMEOUT: Duration = Duration::from_secs(10);
/// After SIGQUIT (an immediate stop), before SIGKILL; and after SIGKILL, before giving up.
const KILL_WAIT: Duration = Duration::from_secs(3);
/// Tries with another free port when the one chosen was taken meanwhile (port 0 only).
const PORT_TRIES: usize = 3;
/// What the server logs when its port is taken.
const PORT_TAKEN: &str = "Address already in use";
/// Longest Unix socket path (`sun_path` holds 108 bytes with the final NUL).
const MAX_SOCKET_PATH: usize = 107;
/// Lines of the server's log quoted in an error.
const LOG_LINES: usize = 10;

/// What [`PgCluster::start`] makes.
#[derive(Debug, Clone)]
pub struct PgClusterConfig {
    /// The cluster's directory: absent or empty; created.
    pub dir: PathBuf,
    /// The server's log (appended to).
    pub log: PathBuf,
    /// TCP port on 127.0.0.1; 0 takes a free one.
    pub port: u16,
    pub max_connections: u32,
    /// Bound of the start.
    pub timeout: Duration,
    /// Bound of `pg_ctl stop`, before the stop by PID.
    pub stop_timeout: Duration,
}

impl PgClusterConfig {
    /// A cluster in `dir`, logging to `log`, on a free port, with the default settings.
    pub fn new(dir: impl Into<PathBuf>, log: impl Into<PathBuf>) -> PgClusterConfig {
        PgClusterConfig {
            dir: dir.into(),
            log: log.into(),
            port: 0,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            timeout: DEFAULT_TIMEOUT,
            stop_timeout: DEFAULT_STOP_TIMEOUT,
        }
    }
}

/// A running throwaway cluster (see the module docs). Dropping it stops it; its
/// directory is left for the caller (the logs, the data for a post-mortem).
#[derive(Debug)]
pub struct PgCluster {
    bindir: PathBuf,
    config: PgClusterConfig,
    run_as: Option<RunAs>,
    port: u16,
    /// The postmaster of the latest start.
    pid: u32,
    stopped: bool,
}

impl PgCluster {
    /// Makes the cluster (`initdb`), starts it (`pg_ctl start -w`) and creates the
    /// database. The error says what failed, with the server's log when it ran.
    pub fn start(mut config: PgClusterConfig) -> anyhow::Result<PgCluster> {
        let bindir = find_bindir()?;
        let run_as = RunAs::for_this_process()?;
        config.dir = std::path::absolute(&config.dir)
            .with_context(|| format!("cannot resolve {}", config.dir.display()))?;
        check_dir(&config.dir).map_err(anyhow::Error::msg)?;
        let mut cluster = PgCluster {
            bindir,
            port: config.port,
            config,
            run_as,
            pid: 0,
            stopped: true,
        };
        cluster.make_dirs()?;
        cluster.initdb()?;
        cluster.first_start()?;
        cluster.create_database()?;
        Ok(cluster)
    }

    /// `postgres://payroute@127.0.0.1:PORT/payroute`.
    pub fn url(&self) -> String {
        format!("postgres://{USER}@127.0.0.1:{}/{DATABASE}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The cluster's directory.
    pub fn dir(&self) -> &Path {
        &self.config.dir
    }

    /// The server's log.
    pub fn log(&self) -> &Path {
        &self.config.log
    }

    /// PGDATA.
    pub fn data_dir(&self) -> PathBuf {
        self.config.dir.join("data")
    }

    /// The postmaster's PID while it runs (its pid file names a live process whose
    /// command line names this cluster's data directory).
    pub fn postmaster_pid(&self) -> Option<u32> {
        let text = std::fs::read_to_string(self.data_dir().join("postmaster.pid")).ok()?;
        let pid = text.lines().next()?.trim().parse().ok()?;
        self.is_postmaster(pid).then_some(pid)
    }

    /// The PID of the latest start's postmaster, running or not.
    pub fn last_pid(&self) -> u32 {
        self.pid
    }

    /// Stops the server (see the module docs). Idempotent.
    pub fn stop(&mut self) -> anyhow::Result<()> {
        if self.stopped {
            return Ok(());
        }
        self.stopped = true;
        // Only a postmaster recognised as this cluster's is ever signalled.
        let running = self.postmaster_pid();
        let out = self
            .tool("pg_ctl")
            .arg("stop")
            .arg("-D")
            .arg(self.data_dir())
            .args(["-m", "fast", "-w", "-t", &secs(self.config.stop_timeout)])
            .output();
        let Some(pid) = running else {
            return Ok(());
        };
        // The postmaster removes its pid file (which `pg_ctl stop -w` waits for) just
        // before it exits: give it a moment before calling it stuck.
        if !wait_until(KILL_WAIT, || !self.is_postmaster(pid)) {
            tracing::warn!(
                "pg_ctl stop did not stop PostgreSQL (pid {pid}): {}; stopping it by PID",
                describe(&out)
            );
            procs::signal_process(pid, libc::SIGQUIT);
            if !wait_until(KILL_WAIT, || !self.is_postmaster(pid)) {
                procs::signal_group(pid, libc::SIGKILL);
            }
        }
        // A postmaster killed outright leaves its backends (its process group) behind.
        if !wait_until(KILL_WAIT, || server_processes(pid).is_empty()) {
            for left in server_processes(pid) {
                procs::signal_process(left, libc::SIGKILL);
            }
        }
        if !wait_until(KILL_WAIT, || server_processes(pid).is_empty()) {
            bail!(
                "PostgreSQL (postmaster pid {pid}) survived pg_ctl stop, SIGQUIT and SIGKILL: \
                 {:?} still run",
                server_processes(pid)
            );
        }
        Ok(())
    }

    /// Starts the server again on the same data (after it died: PostgreSQL replays its
    /// WAL, so nothing committed is lost). Returns the new postmaster's PID.
    pub fn start_again(&mut self) -> anyhow::Result<u32> {
        self.pg_ctl_start(RESTART_TIMEOUT)?;
        Ok(self.pid)
    }

    /// CPU and peak memory of the server's processes now (its process group).
    pub(crate) fn sample(&self) -> Option<Sample> {
        procs::sample_group(self.postmaster_pid()?)
    }

    fn is_postmaster(&self, pid: u32) -> bool {
        let data = self.data_dir();
        procs::command_line(pid).is_some_and(|line| {
            line.contains("postgres") && line.contains(data.to_string_lossy().as_ref())
        })
    }

    /// One of PostgreSQL's programs, run as the cluster's user in the cluster's
    /// directory, in a process group of its own (a Ctrl-C during the start reaches the
    /// launcher, which stops what it started, and not `pg_ctl` halfway).
    fn tool(&self, name: &str) -> Command {
        use std::os::unix::process::CommandExt;
        let mut c = Command::new(self.bindir.join(name));
        c.current_dir(&self.config.dir)
            .stdin(Stdio::null())
            // A user's PGDATA, PGHOST... must not redirect the tools elsewhere.
            .env_remove("PGDATA")
            .env_remove("PGHOST")
            .env_remove("PGPORT")
            .env_remove("PGUSER")
            .env_remove("PGDATABASE")
            .env("PGCONNECT_TIMEOUT", "10")
            .process_group(0);
        if let Some(user) = self.run_as {
            c.uid(user.uid).gid(user.gid);
        }
        c
    }

    /// The cluster's directory (empty, owner-only), its socket directory and its log,
    /// given to the cluster's user.
    fn make_dirs(&self) -> anyhow::Result<()> {
        use std::os::unix::fs::PermissionsExt;
        let dir = &self.config.dir;
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        if std::fs::read_dir(dir)?.next().is_some() {
            bail!(
                "{} is not empty: a throwaway cluster needs a directory of its own",
                dir.display()
            );
        }
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
        let socket = dir.join("socket");
        std::fs::create_dir(&socket)?;
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.config.log)
            .with_context(|| format!("cannot open {}", self.config.log.display()))?;
        if let Some(user) = self.run_as {
            check_enterable(dir)?;
            for path in [dir, &socket, &self.config.log] {
                user.own(path)?;
            }
        }
        Ok(())
    }

    fn initdb(&self) -> anyhow::Result<()> {
        let out = self
            .tool("initdb")
            .arg("-D")
            .arg(self.data_dir())
            .args(["-U", USER, "--auth=trust", "--no-locale", "--encoding=UTF8"])
            .arg("--no-instructions")
            .output();
        if !out.as_ref().is_ok_and(|o| o.status.success()) {
            bail!("initdb failed: {}", describe(&out));
        }
        let conf = self.data_dir().join("postgresql.conf");
        let mut text = std::fs::read_to_string(&conf)?;
        text.push_str("\n# payroute's settings (crates/launcher/src/pgcluster.rs)\n");
        text.push_str("include 'payroute.conf'\n");
        std::fs::write(&conf, text).with_context(|| format!("cannot write {}", conf.display()))
    }

    /// The first start: on the given port, or on a free one (another if the server
    /// finds it taken meanwhile).
    fn first_start(&mut self) -> anyhow::Result<()> {
        let tries = if self.config.port == 0 { PORT_TRIES } else { 1 };
        let mut result = Ok(());
        for _ in 0..tries {
            self.port = match self.config.port {
                0 => free_port()?,
                p => p,
            };
            self.write_settings()?;
            result = self.pg_ctl_start(self.config.timeout);
            if result.is_ok() || !procs::tail(&self.config.log, LOG_LINES).contains(PORT_TAKEN) {
                break;
            }
        }
        result
    }

    fn write_settings(&self) -> anyhow::Result<()> {
        let path = self.data_dir().join("payroute.conf");
        let text = settings_text(
            self.port,
            &self.config.dir.join("socket"),
            self.config.max_connections,
        );
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
        if let Some(user) = self.run_as {
            user.own(&path)?;
        }
        Ok(())
    }

    fn pg_ctl_start(&mut self, timeout: Duration) -> anyhow::Result<()> {
        let out = self
            .tool("pg_ctl")
            .arg("start")
            .arg("-D")
            .arg(self.data_dir())
            .arg("-l")
            .arg(&self.config.log)
            .args(["-w", "-t", &secs(timeout)])
            .output();
        let started = out.as_ref().is_ok_and(|o| o.status.success());
        // Even a failed `pg_ctl -w` may leave a server starting: stop whatever runs.
        if let Some(pid) = self.postmaster_pid() {
            self.pid = pid;
            self.stopped = false;
        }
        if !started || self.stopped {
            let _ = self.stop();
            bail!(
                "pg_ctl start failed: {}. Last lines of {}:\n{}",
                describe(&out),
                self.config.log.display(),
                procs::tail(&self.config.log, LOG_LINES)
            );
        }
        Ok(())
    }

    fn create_database(&self) -> anyhow::Result<()> {
        let out = self
            .tool("createdb")
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-U", USER])
            .arg(DATABASE)
            .output();
        if !out.as_ref().is_ok_and(|o| o.status.success()) {
            bail!("createdb {DATABASE} failed: {}", describe(&out));
        }
        Ok(())
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        if let Err(e) = self.stop() {
            tracing::error!("{e:#}");
        }
    }
}

/// payroute's settings of a throwaway cluster (`data/payroute.conf`).
pub fn settings_text(port: u16, socket_dir: &Path, max_connections: u32) -> String {
    let socket_dir = socket_dir
        .to_string_lossy()
        .replace('\\', "\\\\")
        .replace('\'', "''");
    format!(
        "# A throwaway cluster of payroute's (crates/launcher/src/pgcluster.rs).
listen_addresses = '127.0.0.1'
port = {port}
unix_socket_directories = '{socket_dir}'
# Each worker holds two connections (three while it starts).
max_connections = {max_connections}
# Small: the ledger's working set (pending payments, the summary's index) is a few MB,
# and the machine is shared with the rest of the topology.
shared_buffers = 32MB
work_mem = 4MB
maintenance_work_mem = 32MB
# Two cores shared with the workers and the apis: no parallel query processes.
max_worker_processes = 4
max_parallel_workers_per_gather = 0
max_parallel_maintenance_workers = 0
# ON, as PostgreSQL ships them, written out so that nobody turns them off for speed:
# this database is the payment ledger, and a payment acknowledged to a client must
# survive a crash of the machine.
fsync = on
synchronous_commit = on
full_page_writes = on
# A throwaway cluster keeps little WAL on disk.
min_wal_size = 32MB
max_wal_size = 256MB
timezone = 'UTC'
log_timezone = 'UTC'
"
    )
}

/// Refuses a cluster directory whose socket path would be too long for a Unix socket.
pub fn check_dir(dir: &Path) -> Result<(), String> {
    let socket = dir.join("socket").join(".s.PGSQL.65535");
    let len = socket.as_os_str().len();
    if len > MAX_SOCKET_PATH {
        return Err(format!(
            "the PostgreSQL socket path {} would be {len} bytes, above the {MAX_SOCKET_PATH} \
             a Unix socket allows: choose a shorter directory",
            socket.display()
        ));
    }
    Ok(())
}

/// The cluster's user must be able to reach its directory: every directory above it
/// searchable by others (as under /tmp).
fn check_enterable(dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    for above in dir.ancestors().skip(1) {
        let mode = std::fs::metadata(above)
            .map(|m| m.permissions().mode())
            .unwrap_or(0o755);
        if mode & 0o001 == 0 {
            bail!(
                "PostgreSQL runs as the `postgres` user, which cannot enter {} (mode {:o}) \
                 to reach {}: choose a directory under /tmp",
                above.display(),
                mode & 0o777,
                dir.display()
            );
        }
    }
    Ok(())
}

/// The live PostgreSQL processes of the process group led by postmaster `pid` (its
/// backends and helpers name themselves `postgres: ...`), and those on their way out
/// (no command line any more, not yet a zombie).
fn server_processes(pid: u32) -> Vec<u32> {
    procs::group_members(pid)
        .into_iter()
        .filter(|&p| procs::command_line(p).is_some_and(|l| l.is_empty() || l.contains("postgres")))
        .collect()
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
fn free_port() -> anyhow::Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").context("no free port")?;
    Ok(l.local_addr()?.port())
}

/// A tool's outcome, for an error message: its status and output.
fn describe(out: &std::io::Result<Output>) -> String {
    match out {
        Err(e) => format!("could not run it: {e}"),
        Ok(o) => {
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            );
            format!("{}; {}", o.status, text.trim())
        }
    }
}

/// Whole seconds for `pg_ctl -t`, at least 1.
fn secs(d: Duration) -> String {
    d.as_secs().max(1).to_string()
}

/// Polls `done` every 20 ms for up to `limit`; whether it came true.
fn wait_until(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if done() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_keep_durability_on_and_quote_the_socket_dir() {
        let text = settings_text(5433, Path::new("/tmp/it's/socket"), 50);
        for line in [
            "port = 5433\n",
            "listen_addresses = '127.0.0.1'\n",
            "unix_socket_directories = '/tmp/it''s/socket'\n",
            "max_connections = 50\n",
            "fsync = on\n",
            "synchronous_commit = on\n",
            "full_page_writes = on\n",
        ] {
            assert!(text.contains(line), "no `{}` in:\n{text}", line.trim());
        }
    }

    #[test]
    fn socket_paths_must_fit() {
        assert!(check_dir(Path::new("/tmp/payroute-up/postgres")).is_ok());
        let long = format!("/tmp/{}", "d".repeat(90));
        let err = check_dir(Path::new(&long)).unwrap_err();
        assert!(err.contains("shorter"), "{err}");
    }

    /// A real cluster, when PostgreSQL is installed: started, reachable, recognised
    /// by its PID, and stopped with nothing left (its whole process group).
    #[test]
    fn starts_and_stops_a_cluster() {
        if let Err(e) = find_bindir() {
            assert!(std::env::var_os("CI").is_none(), "{e:#}");
            eprintln!("NOTE: test skipped: {e:#}");
            return;
        }
        let base = std::env::temp_dir().join(format!("launcher-pg-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        std::fs::create_dir_all(&base).unwrap();
        let mut cluster =
            PgCluster::start(PgClusterConfig::new(base.join("pg"), base.join("pg.log"))).unwrap();
        assert!(cluster.url().starts_with("postgres://payroute@127.0.0.1:"));
        let pid = cluster.postmaster_pid().expect("a running postmaster");
        assert_eq!(pid, cluster.last_pid());
        assert!(procs::sample_group(pid).is_some());
        // It serves: a second createdb reaches it (and finds the database made).
        let again = cluster.create_database().unwrap_err().to_string();
        assert!(again.contains("already exists"), "{again}");
        // A second cluster in the same directory is refused, the first untouched.
        let err = PgCluster::start(PgClusterConfig::new(base.join("pg"), base.join("x.log")))
            .unwrap_err()
            .to_string();
        assert!(err.contains("not empty"), "{err}");
        cluster.stop().unwrap();
        assert!(
            procs::command_line(pid).is_none(),
            "postmaster {pid} runs on"
        );
        assert!(procs::group_members(pid).is_empty());
        assert_eq!(cluster.postmaster_pid(), None);
        let log = std::fs::read_to_string(cluster.log()).unwrap();
        assert!(log.contains("database system is shut down"), "{log}");
        drop(cluster);
        std::fs::remove_dir_all(&base).unwrap();
    }

    /// A postmaster that does not answer pg_ctl stop (frozen with SIGSTOP) is stopped by
    /// its PID, with its backends.
    #[test]
    fn stops_a_stuck_cluster_by_pid() {
        if let Err(e) = find_bindir() {
            assert!(std::env::var_os("CI").is_none(), "{e:#}");
            eprintln!("NOTE: test skipped: {e:#}");
            return;
        }
        let base = std::env::temp_dir().join(format!("launcher-pgstuck-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        std::fs::create_dir_all(&base).unwrap();
        let mut config = PgClusterConfig::new(base.join("pg"), base.join("pg.log"));
        config.stop_timeout = Duration::from_secs(1);
        let mut cluster = PgCluster::start(config).unwrap();
        let pid = cluster.postmaster_pid().unwrap();
        assert!(!server_processes(pid).is_empty());
        assert!(procs::signal_process(pid, libc::SIGSTOP));
        let started = Instant::now();
        cluster.stop().unwrap();
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{:?}",
            started.elapsed()
        );
        assert!(
            procs::command_line(pid).is_none(),
            "postmaster {pid} runs on"
        );
        assert!(server_processes(pid).is_empty());
        drop(cluster);
        std::fs::remove_dir_all(&base).unwrap();
    }
}
