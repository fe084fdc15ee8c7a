//! The api's settings: the command line ([`Args`]) and what it becomes ([`Config`]).
//! Every default has one home, [`Config::new`] (and `netio::ServeLimits::default`);
//! the flags read theirs from there, and a test checks an empty command line gives them.

use crate::worker_client::WorkerAddr;
use netio::{ListenAddr, ServeLimits};
use std::path::PathBuf;
use std::time::Duration;

/// Where the worker listens, as in the compose file.
pub const DEFAULT_WORKER_SOCKET: &str = "/run/payroute/worker.sock";

fn defaults() -> Config {
    Config::new(PathBuf::from(DEFAULT_WORKER_SOCKET))
}

/// Flags of `payroute api`.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Address to serve HTTP on: HOST:PORT, :PORT or unix:PATH. TCP addresses are bound
    /// with SO_REUSEPORT, so several instances can share one port.
    #[arg(long, env = "PAYROUTE_LISTEN", default_value = "0.0.0.0:9999")]
    pub listen: ListenAddr,
    /// The worker's socket: a Unix socket path, or HOST:PORT; several, separated by
    /// commas, for several workers sharing a ledger (each call goes to the next one
    /// that answers; 503 only when none does).
    #[arg(long, env = "PAYROUTE_WORKER_SOCKET", default_value = DEFAULT_WORKER_SOCKET,
          value_delimiter = ',', num_args = 1..)]
    pub worker_socket: Vec<WorkerAddr>,
    /// Largest request body accepted, in bytes (a payment is about 80).
    #[arg(long, env = "PAYROUTE_MAX_BODY_BYTES", default_value_t = defaults().max_body_bytes,
          value_parser = at_least(128, "a payment's body is about 80 bytes"))]
    pub max_body_bytes: usize,
    /// Largest request head (request line and headers), in bytes.
    #[arg(long, env = "PAYROUTE_MAX_HEADER_BYTES",
          default_value_t = defaults().limits.max_header_bytes,
          value_parser = at_least(1024, "clients send a few hundred bytes of headers"))]
    pub max_header_bytes: usize,
    /// Client connections served at once, at most. The api also derives a cap from its
    /// cgroup memory limit and its open-file limit, and serves the smallest; beyond it,
    /// new connections get 503 and are closed.
    #[arg(long, env = "PAYROUTE_MAX_CONNECTIONS",
          default_value_t = defaults().limits.max_connections,
          value_parser = at_least(1, "no client could connect"))]
    pub max_connections: usize,
    /// Time allowed for a request head to arrive, and for idle keep-alive connections,
    /// in seconds.
    #[arg(long, env = "PAYROUTE_HEADER_TIMEOUT_SECS",
          default_value_t = defaults().limits.header_timeout.as_secs(),
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub header_timeout_secs: u64,
    /// Time allowed for a request body to arrive once its head has, in ms; a slower or
    /// truncated body gets 408 and changes nothing.
    #[arg(long, env = "PAYROUTE_BODY_TIMEOUT_MS",
          default_value_t = defaults().body_timeout.as_millis() as u64,
          value_parser = clap::value_parser!(u64).range(1..=3_600_000))]
    pub body_timeout_ms: u64,
    /// How long to wait for the worker's reply before answering 503, in ms.
    #[arg(long, env = "PAYROUTE_WORKER_TIMEOUT_MS",
          default_value_t = defaults().worker_timeout.as_millis() as u64,
          value_parser = clap::value_parser!(u64).range(1..=600_000))]
    pub worker_timeout_ms: u64,
    /// When set, `POST /purge-payments` (which deletes every payment) needs the header
    /// `X-Payroute-Token: <this>`; without it, 401. Unset, purge is open, as the
    /// challenge's test requires: set it anywhere else.
    #[arg(long, env = "PAYROUTE_ADMIN_TOKEN", value_parser = non_empty_token)]
    pub admin_token: Option<String>,
}

/// A `usize` setting with a floor, and why.
fn at_least(
    min: usize,
    why: &'static str,
) -> impl Fn(&str) -> Result<usize, String> + Clone + Send + Sync + 'static {
    move |s: &str| match s.parse::<usize>() {
        Ok(n) if n >= min => Ok(n),
        Ok(_) => Err(format!("must be at least {min} ({why})")),
        Err(e) => Err(e.to_string()),
    }
}

fn non_empty_token(s: &str) -> Result<String, String> {
    if s.trim().is_empty() {
        Err("must not be empty (leave it unset to keep purge open)".into())
    } else {
        Ok(s.to_string())
    }
}

/// What [`crate::serve`] needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The workers, tried in turn.
    pub workers: Vec<WorkerAddr>,
    pub max_body_bytes: usize,
    /// The HTTP server's limits; its body limit and timeout are the two fields of
    /// this struct, which [`crate::serve`] copies in.
    pub limits: ServeLimits,
    pub body_timeout: Duration,
    pub worker_timeout: Duration,
    /// Required by `POST /purge-payments` when set.
    pub admin_token: Option<String>,
}

impl Config {
    /// The defaults, reaching one worker at the Unix socket `worker_socket`.
    pub fn new(worker_socket: PathBuf) -> Config {
        // A payment is about 80 bytes; 4 KiB leaves room for any formatting and refuses
        // floods early (413).
        let max_body_bytes = 4096;
        // A client that sent its head has its body ready: 10 s is generous and still
        // frees the connection of a stalled one.
        let body_timeout = Duration::from_secs(10);
        Config {
            workers: vec![WorkerAddr::Unix(worker_socket)],
            max_body_bytes,
            limits: ServeLimits {
                max_body_bytes,
                body_timeout,
                ..ServeLimits::default()
            },
            body_timeout,
            // The worker answers from memory in microseconds; a second means it is
            // stuck or gone, and the client is better told (503) than kept waiting.
            worker_timeout: Duration::from_secs(1),
            admin_token: None,
        }
    }

    pub fn from_args(a: &Args) -> Config {
        let body_timeout = Duration::from_millis(a.body_timeout_ms);
        Config {
            workers: a.worker_socket.clone(),
            max_body_bytes: a.max_body_bytes,
            limits: ServeLimits {
                max_connections: a.max_connections,
                max_header_bytes: a.max_header_bytes,
                header_timeout: Duration::from_secs(a.header_timeout_secs),
                max_body_bytes: a.max_body_bytes,
                body_timeout,
            },
            body_timeout,
            worker_timeout: Duration::from_millis(a.worker_timeout_ms),
            admin_token: a.admin_token.clone(),
        }
    }
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
            ("--worker-timeout-ms", "0"),
            ("--max-connections", "0"),
            ("--max-body-bytes", "10"),
            ("--max-header-bytes", "100"),
            ("--header-timeout-secs", "0"),
            ("--body-timeout-ms", "0"),
            ("--admin-token", " "),
            ("--listen", "nowhere"),
        ] {
            let err = match Cli::try_parse_from(["api", flag, value]) {
                Ok(_) => panic!("{flag} {value} accepted"),
                Err(e) => e,
            };
            assert_eq!(err.exit_code(), 2, "{flag} {value}");
            assert!(err.to_string().contains(flag), "{flag} {value}: {err}");
        }
    }

    #[test]
    fn an_empty_command_line_gives_the_defaults() {
        let args = Cli::try_parse_from(["api"]).unwrap().args;
        assert_eq!(Config::from_args(&args), defaults());
        assert_eq!(args.listen, "0.0.0.0:9999".parse().unwrap());
    }
}
