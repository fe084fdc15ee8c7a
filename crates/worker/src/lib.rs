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
pub mod log;
mod observe;
pub mod state;

pub use config::{Args, Config};

use crate::core::Core;
use anyhow::Context;
use client::ProcessorClient;
use engine::Engine;
use log::PaymentLog;
use model::{Mono, Processor};
use netio::CancellationToken;
use state::WorkerState;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::UnixListener;

/// A worker with its data dir taken and its log replayed, ready to serve.
pub struct Worker {
    config: Config,
    state: Arc<WorkerState>,
}

impl Worker {
    /// Takes the data dir (one worker per data dir: a second one fails here, naming the
    /// first) and replays its payment log.
    pub fn open(config: Config) -> anyhow::Result<Worker> {
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
        let state = Arc::new(WorkerState::new(Core::new(engine, log), config.ack_after));
        Ok(Worker { config, state })
    }
}

/// Runs the worker on a bound Unix listener until `shutdown` is cancelled.
pub async fn serve(
    config: Config,
    listener: UnixListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    Worker::open(config)?.serve(listener, shutdown).await
}

impl Worker {
    /// Serves the api instances on `listener` and dispatches payments until `shutdown`
    /// is cancelled.
    pub async fn serve(
        self,
        listener: UnixListener,
        shutdown: CancellationToken,
    ) -> anyhow::Result<()> {
        let Worker { config, state } = self;
        let client = ProcessorClient::new(config.client.clone());
        let urls = Arc::new(config.urls.clone());
        let mut tasks = tokio::task::JoinSet::new();
        tasks.spawn(dispatch::dispatch_loop(
            state.clone(),
            client.clone(),
            urls.clone(),
            shutdown.clone(),
        ));
        for p in Processor::ALL {
            tasks.spawn(health::poll_health(
                state.clone(),
                client.clone(),
                p,
                urls[p.index()].clone(),
                config.health_interval,
                shutdown.clone(),
            ));
        }
        tracing::info!(
            default = %urls[0], fallback = %urls[1],
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
        while state.core().engine.in_flight() > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let left = {
            let c = state.core();
            c.engine.queue_depth() + c.engine.in_flight()
        };
        if left > 0 {
            tracing::warn!("stopping with {left} payments not finished");
        }
        tasks.shutdown().await;
        Ok(())
    }
}

/// Entry point of `payroute worker`.
pub fn run(args: Args) -> anyhow::Result<()> {
    let config = Config::from_args(&args);
    let rt = netio::single_thread_runtime().context("starting the runtime")?;
    rt.block_on(async {
        // The data dir first: a second worker stops here, before touching the socket.
        let worker = Worker::open(config)?;
        refuse_live_socket(&args.socket)?;
        netio::prepare_unix_path(&args.socket)
            .with_context(|| format!("preparing {}", args.socket.display()))?;
        let listener = UnixListener::bind(&args.socket)
            .with_context(|| format!("binding {}", args.socket.display()))?;
        tracing::info!(socket = %args.socket.display(), "worker listening");
        let shutdown = CancellationToken::new();
        tokio::spawn(netio::stop_on_signal(shutdown.clone()));
        let result = worker.serve(listener, shutdown).await;
        let _ = std::fs::remove_file(&args.socket);
        result
    })
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
