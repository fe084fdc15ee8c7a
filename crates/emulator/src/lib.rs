//! `payroute processor`: an in-memory payment processor that behaves like the official
//! one of the Rinha de Backend 2025 (SPEC §2), so that payroute's tests, launcher and
//! bench run without Docker, .NET or PostgreSQL.
//!
//! Faithful where clients can tell: the concurrency limiter of `POST /payments` (800 in
//! flight, 500 queued, 429 beyond), the configured delay slept before the failure
//! check and the insert (and finished even when the client has gone), 422 on
//! duplicates, the fixed-window limiter of the health endpoint, inclusive summaries over
//! the exact `requestedAt` sent, the admin token. Stricter where the official one
//! accepts nonsense (missing fields, negative delays): those get a 400 naming the field.
//!
//! Architecture invariant: one processor per process (or per [`Emulator`]), all state
//! in memory, nothing shared with other roles but the HTTP API. Modules: `wire`
//! (parsing and exact decimals, pure), `store` (the table), `limit` (the two
//! limiters), `server` (routes and handlers).

mod limit;
mod server;
mod store;
mod wire;

pub use server::{Emulator, Stats};

use clap::Args as ClapArgs;
use netio::{CancellationToken, ListenAddr, Listener};
use std::time::Duration;

/// Flags of `payroute processor`.
#[derive(Debug, Clone, ClapArgs)]
pub struct Args {
    /// Address to listen on: HOST:PORT, :PORT or unix:PATH.
    #[arg(
        long,
        env = "PAYROUTE_PROCESSOR_LISTEN",
        default_value = "0.0.0.0:8080"
    )]
    pub listen: ListenAddr,
    /// Fee per transaction as a fraction (0.05 = 5%).
    #[arg(long, env = "PAYROUTE_PROCESSOR_FEE", default_value_t = Config::default().fee,
          value_parser = fee_fraction)]
    pub fee: f64,
    /// Initial admin token (X-Rinha-Token).
    #[arg(long, env = "PAYROUTE_PROCESSOR_TOKEN", default_value_t = Config::default().token)]
    pub token: String,
    /// Window of the health endpoint's rate limiter, in seconds.
    #[arg(long, env = "PAYROUTE_PROCESSOR_RATE_LIMIT_SECS",
          default_value_t = Config::default().health_window.as_secs(),
          value_parser = clap::value_parser!(u64).range(1..=3_600))]
    pub rate_limit_secs: u64,
}

/// A fee as a fraction of the amount: at least 0, below 1.
fn fee_fraction(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(f) if (0.0..1.0).contains(&f) => Ok(f),
        Ok(_) => Err(format!("`{s}` must be a fraction in [0, 1): 0.05 is 5%")),
        Err(e) => Err(e.to_string()),
    }
}

/// `POST /payments` requests in flight at once: the official concurrency limiter's
/// `PermitLimit`.
pub const MAX_IN_FLIGHT: usize = 800;
/// `POST /payments` requests waiting for a permit, oldest first, before 429: the
/// official `QueueLimit`.
pub const MAX_QUEUED: usize = 500;
/// Health callers waiting for the next window before 429: the official `QueueLimit`
/// of the health limiter.
pub const HEALTH_WAITERS: usize = 2;

/// Everything an [`Emulator`] needs. [`Config::default`] gives the official values
/// (and the flags' defaults); tests shrink the limits and the window.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Fee per transaction as a fraction, between 0 and 1.
    pub fee: f64,
    /// Initial admin token.
    pub token: String,
    /// Window of the health limiter (one call per window).
    pub health_window: Duration,
    /// Health callers allowed to wait for a window.
    pub health_waiters: usize,
    /// Concurrency limit of `POST /payments`.
    pub max_in_flight: usize,
    /// Waiters allowed beyond `max_in_flight`.
    pub max_queued: usize,
    /// Windows open only when [`Emulator::open_health_window`] is called, never on a
    /// timer: lets endpoint tests step the limiter without racing a clock.
    #[doc(hidden)]
    pub manual_health_windows: bool,
}

impl Default for Config {
    /// The official processor's: the preview's default fee (5%), the token the
    /// official test starts from (`123`), one health call per 5 s, its limiters.
    fn default() -> Config {
        Config {
            fee: 0.05,
            token: "123".into(),
            health_window: Duration::from_secs(5),
            health_waiters: HEALTH_WAITERS,
            max_in_flight: MAX_IN_FLIGHT,
            max_queued: MAX_QUEUED,
            manual_health_windows: false,
        }
    }
}

impl Config {
    /// The official limits with the flags' fee, token and window.
    pub fn from_args(args: &Args) -> Config {
        Config {
            fee: args.fee,
            token: args.token.clone(),
            health_window: Duration::from_secs(args.rate_limit_secs),
            ..Config::default()
        }
    }
}

/// Runs the emulator on an already bound listener until `shutdown` is cancelled.
pub async fn serve(
    listener: Listener,
    args: Args,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    serve_config(listener, Config::from_args(&args), shutdown).await
}

/// [`serve`] with a full [`Config`] (tests: small limits, short windows).
pub async fn serve_config(
    listener: Listener,
    config: Config,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    Emulator::new(config)?.serve(listener, shutdown).await;
    Ok(())
}

/// Entry point of `payroute processor`: one thread (a processor must never be the
/// bottleneck of a bench, and one core serves tens of thousands of requests a
/// second), stops on Ctrl-C or SIGTERM.
pub fn run(args: Args) -> anyhow::Result<()> {
    let rt = netio::single_thread_runtime()?;
    rt.block_on(async move {
        let emulator = Emulator::new(Config::from_args(&args))?;
        let listener = Listener::bind(&args.listen)
            .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", args.listen))?;
        tracing::info!(
            "processor listening on {} (fee {}, health window {} s)",
            listener.local_addr()?,
            args.fee,
            args.rate_limit_secs
        );
        let shutdown = CancellationToken::new();
        tokio::spawn(netio::stop_on_signal(shutdown.clone()));
        emulator.serve(listener, shutdown).await;
        tracing::info!("processor stopped");
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: Args,
    }

    #[test]
    fn settings_that_cannot_work_are_refused_naming_the_flag() {
        for (flag, value) in [
            ("--fee", "5"),
            ("--fee=-0.1", ""),
            ("--fee", "NaN"),
            ("--rate-limit-secs", "0"),
        ] {
            let argv: Vec<&str> = ["processor", flag, value]
                .into_iter()
                .filter(|a| !a.is_empty())
                .collect();
            let err = match Cli::try_parse_from(argv) {
                Ok(_) => panic!("{flag} {value} accepted"),
                Err(e) => e,
            };
            assert_eq!(err.exit_code(), 2, "{flag} {value}");
            let name = flag.split('=').next().unwrap();
            assert!(err.to_string().contains(name), "{flag} {value}: {err}");
        }
    }

    #[test]
    fn an_empty_command_line_gives_the_defaults() {
        let args = Cli::try_parse_from(["processor"]).unwrap().args;
        assert_eq!(Config::from_args(&args), Config::default());
    }
}
