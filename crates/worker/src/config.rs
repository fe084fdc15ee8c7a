//! The worker's settings: the command line ([`Args`], flags and environment variables)
//! and what it becomes ([`Config`]). Every default has one home, with its reason:
//! [`EngineConfig::default`], [`ClientConfig::default`], [`LogConfig::new`] and the
//! constants here; the flags read their defaults from there, and a test checks that an
//! empty command line gives exactly those.

use crate::client::ClientConfig;
use crate::engine::EngineConfig;
use crate::ledger::PgConfig;
use crate::log::LogConfig;
use std::path::PathBuf;
use std::time::Duration;

/// Where the api instances reach the worker, as in the compose file.
pub const DEFAULT_SOCKET: &str = "/run/payroute/worker.sock";
/// The processors' addresses inside the challenge's Docker network.
pub const DEFAULT_DEFAULT_URL: &str = "http://payment-processor-default:8080";
pub const DEFAULT_FALLBACK_URL: &str = "http://payment-processor-fallback:8080";
/// The payment log's directory, a volume in the compose file.
pub const DEFAULT_DATA_DIR: &str = "/var/lib/payroute";
/// Acknowledged after the write: a machine crash is far rarer than a process crash,
/// and the bench shows what a disk sync per batch costs the p99 (docs/BENCHMARKS.md).
pub const DEFAULT_ACK_AFTER: AckAfter = AckAfter::Write;
/// The official processors allow one health call per 5 s; polling faster only earns
/// 429s.
pub const DEFAULT_HEALTH_INTERVAL: Duration = Duration::from_secs(5);
/// Sends leave in batches at most this often: each batch costs one `fdatasync` (about
/// 130 µs of CPU on a small VM, whatever the batch's size) or one database
/// transaction. 10 ms batches the preview's ~300 payments/s by three and the final's
/// by ten, and adds at most 10 ms before a payment is sent, which no client sees (it
/// was answered 202 already) and the auditor's windows (1.5 s in the past) do not
/// reach. See docs/BENCHMARKS.md, "Sends in batches".
pub const DEFAULT_SEND_BATCH: Duration = Duration::from_millis(10);

/// When a payment is acknowledged to the api, and so what a crash can take back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AckAfter {
    /// After the accept is written (page cache): survives a crash of the worker
    /// process; a crash of the machine may lose the last `fsync` interval of accepts.
    Write,
    /// After the accept is synced to disk (`fdatasync`, grouped per batch of
    /// requests): survives a crash of the machine; costs a disk sync per batch on the
    /// accept path.
    Fsync,
}

fn ms(us: i64) -> u64 {
    (us / 1000) as u64
}

fn engine() -> EngineConfig {
    EngineConfig::default()
}

fn log_defaults() -> LogConfig {
    LogConfig::new(PathBuf::from(DEFAULT_DATA_DIR))
}

/// Flags of `payroute worker`.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Where the api instances connect: a Unix socket path, or HOST:PORT (TCP, for
    /// workers on other hosts than their api instances).
    #[arg(long, env = "PAYROUTE_WORKER_SOCKET", default_value = DEFAULT_SOCKET)]
    pub socket: PathBuf,
    /// A shared ledger instead of the local payment log: `postgres://USER@HOST:PORT/DB`.
    /// Several workers (on several hosts) then share the payments, each owning some;
    /// see README "Scaling out".
    #[arg(long, env = "PAYROUTE_LEDGER", value_parser = ledger_url)]
    pub ledger: Option<String>,
    /// This worker's name in the shared ledger, for operators; a restart under the
    /// same name lets the payments of its previous run be taken over at once.
    #[arg(long, env = "PAYROUTE_WORKER_NAME", default_value = "worker")]
    pub name: String,
    /// With a shared ledger: a worker that has not renewed its lease for this many ms
    /// loses its payments to the others.
    #[arg(long, env = "PAYROUTE_LEASE_MS", default_value_t = 5_000,
          value_parser = clap::value_parser!(u64).range(1_000..=600_000))]
    pub lease_ms: u64,
    /// Base URL of the default (cheaper) processor.
    #[arg(long, env = "PAYROUTE_DEFAULT_URL", default_value = DEFAULT_DEFAULT_URL,
          value_parser = processor_url)]
    pub default_url: String,
    /// Base URL of the fallback processor.
    #[arg(long, env = "PAYROUTE_FALLBACK_URL", default_value = DEFAULT_FALLBACK_URL,
          value_parser = processor_url)]
    pub fallback_url: String,
    /// Directory of the payment log (created if missing). Every accepted payment and
    /// every outcome is written there before it is acknowledged, and replayed on start.
    #[arg(long, env = "PAYROUTE_DATA_DIR", default_value = DEFAULT_DATA_DIR)]
    pub data_dir: PathBuf,
    /// Interval of the grouped fdatasync of the payment log, in ms: what a machine
    /// crash (not a process crash) can lose at most. 0 leaves flushing to the kernel.
    #[arg(long, env = "PAYROUTE_FSYNC_INTERVAL_MS",
          default_value_t = log_defaults().sync_interval.map_or(0, |d| d.as_millis() as u64))]
    pub fsync_interval_ms: u64,
    /// When a payment is acknowledged: `write` (the accept is in the page cache:
    /// survives a crash of the worker, not of the machine; no disk wait on the accept
    /// path) or `fsync` (synced to disk first: survives a machine crash; every accept
    /// waits for a disk sync, grouped per batch).
    #[arg(long, env = "PAYROUTE_ACK_AFTER", value_enum, default_value_t = DEFAULT_ACK_AFTER)]
    pub ack_after: AckAfter,
    /// Sends leave in batches at most this often, in ms: each batch costs one disk
    /// sync (or one database transaction) whatever its size, so under load a longer
    /// interval costs less CPU per payment and sends each payment up to this much
    /// later. 0 sends each payment as soon as it can.
    #[arg(long, env = "PAYROUTE_SEND_BATCH_MS",
          default_value_t = DEFAULT_SEND_BATCH.as_millis() as u64,
          value_parser = clap::value_parser!(u64).range(0..=1_000))]
    pub send_batch_ms: u64,
    /// Compact the payment log once it holds this many records (40 bytes each) and
    /// twice the records of its last snapshot.
    #[arg(long, env = "PAYROUTE_COMPACT_MIN_RECORDS",
          default_value_t = log_defaults().compact_min_records)]
    pub compact_min_records: u64,
    /// Payments waiting to be sent at most; beyond it POST /payments answers 503.
    #[arg(long, env = "PAYROUTE_QUEUE_CAPACITY", default_value_t = engine().queue_capacity,
          value_parser = at_least_one_usize)]
    pub queue_capacity: usize,
    /// A processor is used while it is expected to answer within this many ms, so that
    /// payments are settled before the auditor's windows (which end 1.5–2 s in the
    /// past) can contain them. Both over budget: the faster working one is used.
    #[arg(long, env = "PAYROUTE_LATENCY_BUDGET_MS",
          default_value_t = ms(engine().latency_budget_us),
          value_parser = clap::value_parser!(u64).range(1..=3_600_000))]
    pub latency_budget_ms: u64,
    /// Requests in flight per processor at most (the official processor admits 800).
    #[arg(long, env = "PAYROUTE_MAX_IN_FLIGHT", default_value_t = engine().max_in_flight[0],
          value_parser = at_least_one_usize)]
    pub max_in_flight: usize,
    /// A payment request without an answer after this many ms has an unknown fate and
    /// is resolved on the same processor before anything else happens to it.
    #[arg(long, env = "PAYROUTE_REQUEST_TIMEOUT_MS",
          default_value_t = ClientConfig::default().request_timeout.as_millis() as u64,
          value_parser = clap::value_parser!(u64).range(1..=3_600_000))]
    pub request_timeout_ms: u64,
    /// Interval of each processor's health poll, in ms. The official processors allow
    /// one call per 5 s; going lower only earns 429s.
    #[arg(long, env = "PAYROUTE_HEALTH_INTERVAL_MS",
          default_value_t = DEFAULT_HEALTH_INTERVAL.as_millis() as u64,
          value_parser = clap::value_parser!(u64).range(100..))]
    pub health_interval_ms: u64,
    /// While a processor is believed failing, one payment is sent to it at most this
    /// often (ms) to notice its recovery before the next health poll.
    #[arg(long, env = "PAYROUTE_PROBE_INTERVAL_MS",
          default_value_t = ms(engine().probe_interval_us),
          value_parser = clap::value_parser!(u64).range(1..=3_600_000))]
    pub probe_interval_ms: u64,
    /// How long a payment may wait for the default (cheaper) processor while it is
    /// failing or full before the fallback may take it, in ms: an outage shorter than
    /// this costs no fallback fee, and the held payments drain to the default, oldest
    /// first, when it recovers. 0 sends to the fallback at once.
    #[arg(long, env = "PAYROUTE_SETTLE_DEADLINE_MS",
          default_value_t = ms(engine().settle_deadline_us),
          value_parser = clap::value_parser!(u64).range(0..=86_400_000))]
    pub settle_deadline_ms: u64,
    /// The same while the default works but is expected over the latency budget, in ms.
    #[arg(long, env = "PAYROUTE_SLOW_DEADLINE_MS",
          default_value_t = ms(engine().slow_deadline_us),
          value_parser = clap::value_parser!(u64).range(0..=86_400_000))]
    pub slow_deadline_ms: u64,
    /// How long a finished payment's correlationId is remembered, in seconds: a client
    /// retrying it within that time gets the earlier outcome (or 409 for another
    /// amount); later it is a new payment. Remembered at least this long, at most
    /// twice. 0 remembers until the next purge or the cap.
    #[arg(long, env = "PAYROUTE_DEDUP_RETENTION_SECS",
          default_value_t = engine().dedup_retention_us.map_or(0, |us| (us / 1_000_000) as u64))]
    pub dedup_retention_secs: u64,
    /// At most this many correlationIds are remembered (memory: about 50 bytes each,
    /// docs/BENCHMARKS.md); beyond it the oldest finished ones are forgotten early.
    #[arg(long, env = "PAYROUTE_DEDUP_MAX_IDS", default_value_t = engine().dedup_max_ids,
          value_parser = at_least_one_usize)]
    pub dedup_max_ids: usize,
}

/// A processor's base URL: `http://HOST[:PORT]`, nothing after the authority but an
/// optional `/`. Anything else is refused at start: a worker that cannot reach a
/// processor would silently send everything to the other one.
fn processor_url(s: &str) -> Result<String, String> {
    let uri: http::Uri = s
        .parse()
        .map_err(|e| format!("`{s}` is not a URL ({e}); example: http://localhost:8001"))?;
    if uri.scheme_str() != Some("http") {
        return Err(format!(
            "`{s}` must start with http:// (the processors speak plain HTTP)"
        ));
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(format!("`{s}` has no host; example: http://localhost:8001"));
    }
    if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
        return Err(format!(
            "`{s}` must be a base URL without a path (payroute adds /payments)"
        ));
    }
    Ok(s.trim_end_matches('/').to_string())
}

/// A PostgreSQL URL.
fn ledger_url(s: &str) -> Result<String, String> {
    if s.starts_with("postgres://") || s.starts_with("postgresql://") {
        Ok(s.to_string())
    } else {
        Err(format!(
            "`{s}` is not a PostgreSQL URL (example: postgres://payroute@db:5432/payroute)"
        ))
    }
}

/// A count that must be at least 1 (0 would accept payments and never send them).
fn at_least_one_usize(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(e.to_string()),
    }
}

/// Everything the worker needs, built from [`Args`] or by tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Base URLs of the default and fallback processors, without a trailing slash.
    pub urls: [String; 2],
    pub engine: EngineConfig,
    pub client: ClientConfig,
    pub health_interval: Duration,
    /// Sends leave in batches at most this often (`ZERO`: at once).
    pub send_batch: Duration,
    /// The payment log; `None` keeps everything in memory only (tests).
    pub log: Option<LogConfig>,
    pub ack_after: AckAfter,
    /// A shared PostgreSQL ledger instead of the log.
    pub ledger: Option<PgConfig>,
}

impl Config {
    /// The defaults, with these processors and no payment log (in memory only).
    pub fn new(default_url: &str, fallback_url: &str) -> Config {
        Config {
            urls: [
                default_url.trim_end_matches('/').to_string(),
                fallback_url.trim_end_matches('/').to_string(),
            ],
            engine: EngineConfig::default(),
            client: ClientConfig::default(),
            health_interval: DEFAULT_HEALTH_INTERVAL,
            send_batch: DEFAULT_SEND_BATCH,
            log: None,
            ack_after: DEFAULT_ACK_AFTER,
            ledger: None,
        }
    }

    pub fn from_args(a: &Args) -> Config {
        let mut c = Config::new(&a.default_url, &a.fallback_url);
        c.engine.queue_capacity = a.queue_capacity;
        c.engine.latency_budget_us = a.latency_budget_ms as i64 * 1000;
        c.engine.max_in_flight = [a.max_in_flight; 2];
        c.engine.probe_interval_us = a.probe_interval_ms as i64 * 1000;
        c.engine.settle_deadline_us = a.settle_deadline_ms as i64 * 1000;
        c.engine.slow_deadline_us = a.slow_deadline_ms as i64 * 1000;
        c.engine.dedup_retention_us = (a.dedup_retention_secs > 0)
            .then(|| (a.dedup_retention_secs.min(i64::MAX as u64 / 1_000_000) as i64) * 1_000_000);
        c.engine.dedup_max_ids = a.dedup_max_ids;
        c.client.request_timeout = Duration::from_millis(a.request_timeout_ms);
        c.health_interval = Duration::from_millis(a.health_interval_ms);
        c.send_batch = Duration::from_millis(a.send_batch_ms);
        c.ack_after = a.ack_after;
        let mut log = LogConfig::new(a.data_dir.clone());
        log.sync_interval =
            (a.fsync_interval_ms > 0).then(|| Duration::from_millis(a.fsync_interval_ms));
        log.compact_min_records = a.compact_min_records;
        c.log = Some(log);
        if let Some(url) = &a.ledger {
            let mut pg = PgConfig::new(url, &a.name);
            pg.lease = Duration::from_millis(a.lease_ms);
            c.ledger = Some(pg);
            c.log = None;
        }
        c
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
            ("--max-in-flight", "0"),
            ("--queue-capacity", "0"),
            ("--request-timeout-ms", "0"),
            ("--latency-budget-ms", "0"),
            ("--probe-interval-ms", "0"),
            ("--health-interval-ms", "50"),
            ("--default-url", "localhost:8001"),
            ("--default-url", "https://example.com"),
            ("--default-url", "http://"),
            ("--fallback-url", "http://x:8002/payments"),
            ("--fallback-url", "not a url"),
            ("--ack-after", "never"),
            ("--ledger", "mysql://x"),
            ("--lease-ms", "10"),
            ("--send-batch-ms", "5000"),
        ] {
            let err = match Cli::try_parse_from(["worker", flag, value]) {
                Ok(_) => panic!("{flag} {value} accepted"),
                Err(e) => e,
            };
            assert_eq!(err.exit_code(), 2, "{flag} {value}");
            assert!(err.to_string().contains(flag), "{flag} {value}: {err}");
        }
        let ok = Cli::try_parse_from(["worker", "--default-url", "http://127.0.0.1:8001/"]);
        assert_eq!(ok.unwrap().args.default_url, "http://127.0.0.1:8001");
    }

    #[test]
    fn an_empty_command_line_gives_the_defaults() {
        let args = Cli::try_parse_from(["worker"]).unwrap().args;
        let want = Config {
            log: Some(log_defaults()),
            ..Config::new(DEFAULT_DEFAULT_URL, DEFAULT_FALLBACK_URL)
        };
        assert_eq!(Config::from_args(&args), want);
        assert_eq!(args.socket, PathBuf::from(DEFAULT_SOCKET));
    }
}
