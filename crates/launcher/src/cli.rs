//! The flags of `payroute up` ([`Args`]) and the choices they name: the load balancer
//! ([`Lb`]), the resource limits ([`Limits`]), the restart policy ([`Restart`]) and the
//! workers' ledger ([`Ledger`]).

use crate::config::defaults;
use crate::DEFAULT_READY_TIMEOUT;
use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;
use std::str::FromStr;

/// Which load balancer fronts the two api instances.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Lb {
    /// Both api processes bind the port with SO_REUSEPORT; nothing to install.
    Embedded,
    /// nginx with deploy/nginx.conf (paths rewritten); the api instances listen on
    /// Unix sockets.
    Nginx,
    /// haproxy with deploy/haproxy.cfg (paths rewritten); the api instances listen on
    /// Unix sockets.
    Haproxy,
}

impl Lb {
    /// The program to run, if the load balancer is a process of its own.
    pub(crate) fn program(self) -> Option<&'static str> {
        match self {
            Lb::Embedded => None,
            Lb::Nginx => Some("nginx"),
            Lb::Haproxy => Some("haproxy"),
        }
    }
}

/// Resource limits applied to the processes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Limits {
    /// The compose file's per-service CPU and memory limits, via cgroups.
    Rinha,
    /// No limits.
    Off,
}

/// What happens when a role exits while the topology runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Restart {
    /// Report it and restart it, after 0.5 s doubling up to 10 s while it keeps failing
    /// (what the compose file's `restart: unless-stopped` does). Emulated processors
    /// are only reported.
    Always,
    /// Report it and leave it dead.
    Never,
}

/// Where the workers keep the payments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ledger {
    /// `file`: the worker's own payment log in the run directory (one worker).
    File,
    /// `postgres`: a throwaway PostgreSQL cluster in the run directory, shared by the
    /// workers, started after the processors and stopped after the workers.
    LocalPostgres,
    /// `postgres://USER@HOST:PORT/DB`: an existing PostgreSQL database, shared by the
    /// workers; payroute up neither starts nor stops it.
    Postgres(String),
}

impl Ledger {
    /// Whether the workers share a database (and may be several).
    pub fn is_shared(&self) -> bool {
        !matches!(self, Ledger::File)
    }
}

impl FromStr for Ledger {
    type Err = String;
    fn from_str(s: &str) -> Result<Ledger, String> {
        match s {
            "file" => Ok(Ledger::File),
            "postgres" => Ok(Ledger::LocalPostgres),
            url if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
                Ok(Ledger::Postgres(url.to_string()))
            }
            other => Err(format!(
                "`{other}` is not a ledger: `file`, `postgres` (a throwaway cluster in the run \
                 directory) or a URL postgres://USER@HOST:PORT/DB"
            )),
        }
    }
}

impl fmt::Display for Ledger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Ledger::File => write!(f, "file"),
            Ledger::LocalPostgres => write!(f, "postgres"),
            Ledger::Postgres(url) => write!(f, "{url}"),
        }
    }
}

/// Flags of `payroute up`.
///
/// Every environment variable is also passed on to the children, so a setting of a
/// role (`PAYROUTE_LOG`, a worker tuning variable...) applies to the processes `up`
/// starts; the addresses and URLs below are given to them as flags, which win.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Public port of the load balancer (the challenge's is 9999).
    #[arg(long, env = "PAYROUTE_PORT", default_value_t = defaults::PORT)]
    pub port: u16,
    /// Interface the public port (and the emulators) listen on.
    #[arg(long, env = "PAYROUTE_UP_HOST", default_value_t = defaults::CLI_HOST)]
    pub host: IpAddr,
    /// Load balancer: `embedded` needs nothing installed (both api processes share the
    /// port with SO_REUSEPORT); `nginx` and `haproxy` run the installed program with
    /// the compose deployment's config (scripts/install-deps.sh installs both).
    #[arg(long, env = "PAYROUTE_LB", value_enum, default_value_t = defaults::LB)]
    pub lb: Lb,
    /// `rinha` applies the compose file's per-service CPU and memory limits with cgroups
    /// (v1, or v2 when payroute up is alone in its group; root needed; says why and goes
    /// on without them otherwise); `off` runs unlimited.
    #[arg(long, env = "PAYROUTE_LIMITS", value_enum, default_value_t = defaults::LIMITS)]
    pub limits: Limits,
    /// What to do when a role exits on its own: `always` restarts it with a backoff,
    /// `never` only reports it.
    #[arg(long, env = "PAYROUTE_RESTART", value_enum, default_value_t = defaults::RESTART)]
    pub restart: Restart,
    /// URL of the default processor. Without it (and without --fallback-url), two
    /// emulated processors are started.
    #[arg(long, env = "PAYROUTE_DEFAULT_URL", requires = "fallback_url")]
    pub default_url: Option<String>,
    /// URL of the fallback processor; give both or neither.
    #[arg(long, env = "PAYROUTE_FALLBACK_URL", requires = "default_url")]
    pub fallback_url: Option<String>,
    /// Port of the emulated default processor (the official one is on 8001).
    #[arg(long, env = "PAYROUTE_UP_DEFAULT_PORT", default_value_t = defaults::EMULATOR_PORTS.0)]
    pub default_port: u16,
    /// Port of the emulated fallback processor (the official one is on 8002).
    #[arg(long, env = "PAYROUTE_UP_FALLBACK_PORT", default_value_t = defaults::EMULATOR_PORTS.1)]
    pub fallback_port: u16,
    /// Fee of the emulated default processor (official compose file: 0.05; final
    /// test: 0.07).
    #[arg(long, env = "PAYROUTE_UP_DEFAULT_FEE", default_value_t = defaults::EMULATOR_FEES.0)]
    pub default_fee: f64,
    /// Fee of the emulated fallback processor (official compose file: 0.15; final
    /// test: 0.10).
    #[arg(long, env = "PAYROUTE_UP_FALLBACK_FEE", default_value_t = defaults::EMULATOR_FEES.1)]
    pub fallback_fee: f64,
    /// Directory for sockets, configs, the worker's data and one log file per process.
    /// Emptied at start if an earlier `payroute up` made it; any other non-empty
    /// directory is refused. Kept after stop, for the logs.
    #[arg(long, env = "PAYROUTE_RUN_DIR", default_value_os_t = defaults::run_dir())]
    pub run_dir: PathBuf,
    /// Seconds to wait for the whole system to answer before giving up.
    #[arg(long, env = "PAYROUTE_UP_READY_TIMEOUT_SECS", default_value_t = DEFAULT_READY_TIMEOUT.as_secs())]
    pub ready_timeout_secs: u64,
    /// Worker processes: `worker` with the file log; worker1..N with a shared --ledger
    /// (needed for more than one), each on its own socket, every api instance given all
    /// of them.
    #[arg(long, env = "PAYROUTE_UP_WORKERS", default_value_t = defaults::WORKERS)]
    pub workers: usize,
    /// Where the workers keep the payments: `file` (each worker's own payment log),
    /// `postgres` (a throwaway PostgreSQL cluster started in the run directory;
    /// scripts/install-deps.sh installs PostgreSQL), or postgres://USER@HOST:PORT/DB (an
    /// existing database). See README "Scaling out".
    #[arg(long, env = "PAYROUTE_UP_LEDGER", default_value_t = defaults::LEDGER)]
    pub ledger: Ledger,
    /// Port of the throwaway cluster of --ledger postgres, on 127.0.0.1; 0 takes a free
    /// one.
    #[arg(long, env = "PAYROUTE_UP_PG_PORT", default_value_t = 0)]
    pub pg_port: u16,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{StartOptions, UpConfig};
    use clap::Parser;
    use std::net::Ipv4Addr;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: Args,
    }

    #[test]
    fn cli_defaults_match_up_config_defaults() {
        let cli = Cli::try_parse_from(["up"]).unwrap();
        let from_args = UpConfig::from_args(&cli.args, "/x".into());
        let new = UpConfig::new("/x", from_args.run_dir.clone());
        assert_eq!(format!("{from_args:?}"), format!("{new:?}"));
        let options = StartOptions::from_args(&cli.args);
        assert_eq!(options.host, IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        assert_eq!(options.restart, StartOptions::default().restart);
        assert_eq!(options.ready_timeout, StartOptions::default().ready_timeout);
        // Every flag and every option by name, so that one added without a default
        // checked here does not compile.
        let StartOptions {
            host: _,
            restart: _,
            ready_timeout: _,
        } = options;
        let Args {
            port,
            host,
            lb,
            limits,
            restart,
            default_url,
            fallback_url,
            default_port,
            fallback_port,
            default_fee,
            fallback_fee,
            run_dir,
            ready_timeout_secs,
            workers,
            ledger,
            pg_port,
        } = cli.args;
        assert_eq!(
            (port, default_url, fallback_url, lb, limits),
            (
                new.port,
                new.default_url,
                new.fallback_url,
                new.lb,
                new.limits
            )
        );
        assert_eq!(
            (workers, ledger, pg_port),
            (new.workers, new.ledger, new.pg_port)
        );
        assert_eq!((default_port, fallback_port), new.emulator_ports);
        assert_eq!((default_fee, fallback_fee), new.emulator_fees);
        assert_eq!(host, IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        assert_eq!(restart, StartOptions::default().restart);
        assert_eq!(
            std::time::Duration::from_secs(ready_timeout_secs),
            StartOptions::default().ready_timeout
        );
        // The default the help text promises.
        assert_eq!(run_dir, std::env::temp_dir().join("payroute-up"));
    }

    #[test]
    fn ledgers_by_name_or_url() {
        let ledger = |s: &str| Cli::try_parse_from(["up", "--ledger", s]).map(|c| c.args.ledger);
        assert_eq!(ledger("file").unwrap(), Ledger::File);
        assert_eq!(ledger("postgres").unwrap(), Ledger::LocalPostgres);
        let url = "postgres://payroute@db:5432/payroute";
        assert_eq!(ledger(url).unwrap(), Ledger::Postgres(url.into()));
        assert_eq!(ledger(url).unwrap().to_string(), url);
        let err = ledger("mysql://x").unwrap_err();
        assert_eq!(err.exit_code(), 2);
        assert!(err.to_string().contains("--ledger"), "{err}");
    }

    #[test]
    fn processor_urls_come_in_pairs() {
        assert!(Cli::try_parse_from(["up", "--default-url", "http://a:1"]).is_err());
        let cli = Cli::try_parse_from([
            "up",
            "--default-url",
            "http://a:1",
            "--fallback-url",
            "http://b:2",
        ])
        .unwrap();
        assert_eq!(cli.args.fallback_url.as_deref(), Some("http://b:2"));
    }
}
