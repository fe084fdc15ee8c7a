//! `payroute worker`: the single owner of the queue, the dispatcher, the processors'
//! health view and the summary. The api instances talk to it over a Unix socket
//! (the `ipc` crate); it talks HTTP to the two processors.
//!
//! Architecture invariant: every decision about a payment is taken by the
//! [`engine::Engine`], under one mutex, by code that does no IO; the other modules only
//! move its actions onto sockets and the results back. Nothing waits on a processor
//! while holding the engine.
//!
//! The rooms: `config` (flags and defaults), `engine` (the decisions, pure), `log`
//! (the durable payment log), `client` (HTTP calls to processors, classified),
//! `dispatch` (the loop that performs the engine's actions), `health` (the pollers),
//! `ipc_server` (the api connections), `observe` (`/health` and `/metrics`), `state`
//! (what the tasks share).

pub mod client;
pub mod config;
pub mod core;
mod dispatch;
pub mod engine;
mod health;
mod ipc_server;
pub mod ledger;
pub mod log;
mod observe;
pub mod state;

pub use config::{Args, Config};

use crate::core::Core;
use anyhow::Context;
use client::ProcessorClient;
use engine::Engine;
pub use ipc_server::IpcListener;
use ledger::{Clock, FileLedger, Ledger, PgLedger};
use log::PaymentLog;
use model::{Mono, Processor};
use netio::CancellationToken;
use state::WorkerState;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::UnixListener;

/// A worker with its durable state open, ready to serve: its data dir taken and its
/// log replayed, or registered with the shared ledger.
pub struct Worker {
    config: Config,
    kind: Kind,
}

enum Kind {
    File(Arc<WorkerState<FileLedger>>),
    Shared(Arc<WorkerState<PgLedger>>),
}

impl Worker {
    /// Opens the durable state: the shared ledger when configured; else takes the data
    /// dir (one worker per data dir: a second one fails here, naming the first) and
    /// replays its payment log. Runs on the runtime that will serve.
    pub async fn open(config: Config) -> anyhow::Result<Worker> {
        let kind = match &config.ledger {
            Some(pg) => {
                let ledger = PgLedger::open(pg.clone(), config.engine.clone(), Clock::start())
                    .await
                    .context("opening the shared ledger")?;
                Kind::Shared(Arc::new(WorkerState::new(ledger)))
            }
            None => Kind::File(Arc::new(WorkerState::new(open_file_ledger(&config)?))),
        };
        Ok(Worker { config, kind })
    }

    /// Serves the api instances on `listener` and dispatches payments until `shutdown`
    /// is cancelled.
    pub async fn serve(
        self,
        listener: impl Into<IpcListener>,
        shutdown: CancellationToken,
    ) -> anyhow::Result<()> {
        let listener = listener.into();
        match self.kind {
            Kind::File(state) => serve_state(self.config, state, listener, shutdown).await,
            Kind::Shared(state) => serve_state(self.config, state, listener, shutdown).await,
        }
    }
}

/// The embedded payment log (or none, in memory-only tests), replayed into an engine.
fn open_file_ledger(config: &Config) -> anyhow::Result<FileLedger> {
    let mut engine = Engine::new(config.engine.clone());
    let log = match &config.log {
        Some(cfg) => {
            let (log, opened) = PaymentLog::open(cfg.clone(), &mut engine, Mono(0))
                .with_context(|| format!("opening the payment log in {}", cfg.dir.display()))?;
            let r = opened.restored;
            tracing::info!(
                log = %log.path().display(),
                records = opened.records,
                done = r.done,
                pending = r.pending,
                maybe_sent = r.maybe_sent,
                parked = r.parked,
                "payment log replayed"
            );
            Some(log)
        }
        None => None,
    };
    Ok(FileLedger::new(
        Core::new(engine, log),
        config.ack_after,
        Clock::start(),
    ))
}

/// Runs the worker on a bound listener until `shutdown` is cancelled.
pub async fn serve(
    config: Config,
    listener: impl Into<IpcListener>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    Worker::open(config).await?.serve(listener, shutdown).await
}

/// Runs the worker's tasks over any ledger until `shutdown` is cancelled.
async fn serve_state<L: Ledger>(
    config: Config,
    state: Arc<WorkerState<L>>,
    listener: IpcListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let client = ProcessorClient::new(config.client.clone(), &config.urls)
        .map_err(|e| anyhow::anyhow!("a processor's URL: {e}"))?;
    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(dispatch::dispatch_loop(
        state.clone(),
        client.clone(),
        config.send_batch,
        shutdown.clone(),
    ));
    tasks.spawn(dispatch::upkeep_loop(
        state.clone(),
        Duration::from_millis(200),
        shutdown.clone(),
    ));
    for p in Processor::ALL {
        tasks.spawn(health::poll_health(
            state.clone(),
            client.clone(),
            p,
            config.health_interval,
            shutdown.clone(),
        ));
    }
    tracing::info!(
        default = %config.urls[0], fallback = %config.urls[1],
        "worker ready"
    );
    // The api connections are served on a thread of their own, so that accepting a
    // payment never waits behind a burst of processor answers on the dispatcher's
    // thread: the accept path is the one the clients' p99 measures.
    let ipc = ipc_server::spawn_ipc_thread(listener, state.clone(), shutdown.clone())
        .context("starting the IPC thread")?;
    shutdown.cancelled().await;
    let _ = tokio::task::spawn_blocking(move || ipc.join()).await;
    // Let requests in flight report their outcome, so that what a processor stored is
    // recorded before the process ends.
    let deadline = Instant::now() + config.client.request_timeout.min(Duration::from_secs(5));
    while state.ledger.in_flight() > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let left = state
        .ledger
        .with_engine(|e| e.queue_depth() + e.in_flight());
    if left > 0 {
        tracing::warn!("stopping with {left} payments not finished");
    }
    tasks.shutdown().await;
    Ok(())
}

/// Entry point of `payroute worker`.
pub fn run(args: Args) -> anyhow::Result<()> {
    let config = Config::from_args(&args);
    let rt = netio::single_thread_runtime().context("starting the runtime")?;
    rt.block_on(async {
        // The durable state first: a second worker on a data dir stops here, before
        // touching the socket.
        let worker = Worker::open(config).await?;
        let listener = bind(&args.socket)?;
        let shutdown = CancellationToken::new();
        tokio::spawn(netio::stop_on_signal(shutdown.clone()));
        let result = worker.serve(listener, shutdown).await;
        if let IpcAddr::Unix(path) = IpcAddr::of(&args.socket) {
            let _ = std::fs::remove_file(path);
        }
        result
    })
}

/// The `--socket` setting: a Unix socket path, or HOST:PORT.
enum IpcAddr<'a> {
    Unix(&'a std::path::Path),
    Tcp(std::net::SocketAddr),
}

impl IpcAddr<'_> {
    fn of(socket: &std::path::Path) -> IpcAddr<'_> {
        match socket.to_str().and_then(|s| s.parse().ok()) {
            Some(addr) => IpcAddr::Tcp(addr),
            None => IpcAddr::Unix(socket),
        }
    }
}

/// Binds the api-facing socket, never replacing a live Unix socket.
fn bind(socket: &std::path::Path) -> anyhow::Result<IpcListener> {
    match IpcAddr::of(socket) {
        IpcAddr::Tcp(addr) => {
            let std =
                std::net::TcpListener::bind(addr).with_context(|| format!("binding {addr}"))?;
            std.set_nonblocking(true)?;
            tracing::info!(listen = %addr, "worker listening (TCP)");
            Ok(tokio::net::TcpListener::from_std(std)?.into())
        }
        IpcAddr::Unix(path) => {
            refuse_live_socket(path)?;
            netio::prepare_unix_path(path)
                .with_context(|| format!("preparing {}", path.display()))?;
            let l =
                UnixListener::bind(path).with_context(|| format!("binding {}", path.display()))?;
            tracing::info!(socket = %path.display(), "worker listening");
            Ok(l.into())
        }
    }
}

/// A socket path that something answers on belongs to a live process: never unlink it.
fn refuse_live_socket(path: &std::path::Path) -> anyhow::Result<()> {
    if std::os::unix::net::UnixStream::connect(path).is_ok() {
        anyhow::bail!(
            "{} is served by another process (a worker already running?); refusing to \
             replace a live socket",
            path.display()
        );
    }
    Ok(())
}
