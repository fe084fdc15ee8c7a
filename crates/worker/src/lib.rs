//! `payroute worker`: the single owner of the queue, the dispatcher, the processors'
//! health view and the summary. The api instances talk to it over a Unix socket
//! (`model::ipc`); it talks HTTP to the two processors.
//!
//! Architecture invariant: every decision about a payment is taken by the
//! [`engine::Engine`], under one mutex, by code that does no IO; this module only moves
//! its actions onto sockets and the results back. Nothing here waits on a processor
//! while holding the engine.

pub mod client;
pub mod engine;
pub mod log;

use anyhow::Context;
use client::{ClientConfig, HealthPoll, ProcessorClient};
use engine::{Action, Engine, EngineConfig, SendResult};
use log::{LogConfig, PaymentLog, Record};
use model::ipc::{split_frame, Reply, Request, SubmitStatus};
use model::metrics::{Exposition, Histogram};
use model::{Micros, Processor};
use netio::CancellationToken;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::Notify;

/// Flags of `payroute worker`.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// The Unix socket the api instances connect to.
    #[arg(
        long,
        env = "PAYROUTE_WORKER_SOCKET",
        default_value = "/run/payroute/worker.sock"
    )]
    pub socket: PathBuf,
    /// Base URL of the default (cheaper) processor.
    #[arg(
        long,
        env = "PAYROUTE_DEFAULT_URL",
        default_value = "http://payment-processor-default:8080"
    )]
    pub default_url: String,
    /// Base URL of the fallback processor.
    #[arg(
        long,
        env = "PAYROUTE_FALLBACK_URL",
        default_value = "http://payment-processor-fallback:8080"
    )]
    pub fallback_url: String,
    /// Directory of the payment log (created if missing). Every accepted payment and
    /// every outcome is written there before it is acknowledged, and replayed on start.
    #[arg(long, env = "PAYROUTE_DATA_DIR", default_value = "/var/lib/payroute")]
    pub data_dir: PathBuf,
    /// Interval of the grouped fdatasync of the payment log, in ms: what a machine
    /// crash (not a process crash) can lose at most. 0 leaves flushing to the kernel.
    #[arg(long, env = "PAYROUTE_FSYNC_INTERVAL_MS", default_value_t = 20)]
    pub fsync_interval_ms: u64,
    /// Compact the payment log once it holds this many records (40 bytes each) and
    /// more than twice what a snapshot needs.
    #[arg(long, env = "PAYROUTE_COMPACT_MIN_RECORDS", default_value_t = 250_000)]
    pub compact_min_records: u64,
    /// Payments waiting to be sent at most; beyond it POST /payments answers 503.
    #[arg(long, env = "PAYROUTE_QUEUE_CAPACITY", default_value_t = 200_000)]
    pub queue_capacity: usize,
    /// A processor is used while it is expected to answer within this many ms, so that
    /// payments are settled before the auditor's windows (which end 1.5–2 s in the
    /// past) can contain them. Both over budget: the faster working one is used.
    #[arg(long, env = "PAYROUTE_LATENCY_BUDGET_MS", default_value_t = 1200)]
    pub latency_budget_ms: u64,
    /// Requests in flight per processor at most (the official processor admits 800).
    #[arg(long, env = "PAYROUTE_MAX_IN_FLIGHT", default_value_t = 700)]
    pub max_in_flight: usize,
    /// A payment request without an answer after this many ms has an unknown fate and
    /// is resolved on the same processor before anything else happens to it.
    #[arg(long, env = "PAYROUTE_REQUEST_TIMEOUT_MS", default_value_t = 10_000)]
    pub request_timeout_ms: u64,
    /// Interval of each processor's health poll, in ms. The official processors allow
    /// one call per 5 s; going lower only earns 429s.
    #[arg(long, env = "PAYROUTE_HEALTH_INTERVAL_MS", default_value_t = 5_000,
          value_parser = clap::value_parser!(u64).range(100..))]
    pub health_interval_ms: u64,
    /// While a processor is believed failing, one payment is sent to it at most this
    /// often (ms) to notice its recovery before the next health poll.
    #[arg(long, env = "PAYROUTE_PROBE_INTERVAL_MS", default_value_t = 1_000)]
    pub probe_interval_ms: u64,
}

/// Everything the worker needs, built from [`Args`] or by tests.
#[derive(Debug, Clone)]
pub struct Config {
    /// Base URLs of the default and fallback processors, without a trailing slash.
    pub urls: [String; 2],
    pub engine: EngineConfig,
    pub client: ClientConfig,
    pub health_interval: Duration,
    /// The payment log; `None` keeps everything in memory only (tests).
    pub log: Option<LogConfig>,
}

impl Config {
    pub fn new(default_url: &str, fallback_url: &str) -> Config {
        Config {
            urls: [
                default_url.trim_end_matches('/').to_string(),
                fallback_url.trim_end_matches('/').to_string(),
            ],
            engine: EngineConfig::default(),
            client: ClientConfig::default(),
            health_interval: Duration::from_secs(5),
            log: None,
        }
    }

    pub fn from_args(a: &Args) -> Config {
        let mut c = Config::new(&a.default_url, &a.fallback_url);
        c.engine.queue_capacity = a.queue_capacity;
        c.engine.latency_budget_us = a.latency_budget_ms as i64 * 1000;
        c.engine.max_in_flight = [a.max_in_flight; 2];
        c.engine.probe_interval_us = a.probe_interval_ms as i64 * 1000;
        c.client.request_timeout = Duration::from_millis(a.request_timeout_ms);
        c.health_interval = Duration::from_millis(a.health_interval_ms);
        let mut log = LogConfig::new(a.data_dir.clone());
        log.sync_interval =
            (a.fsync_interval_ms > 0).then(|| Duration::from_millis(a.fsync_interval_ms));
        log.compact_min_records = a.compact_min_records;
        c.log = Some(log);
        c
    }
}

/// The engine and its log, changed together under one lock so that the log's order is
/// the engine's order.
struct Core {
    engine: Engine,
    log: Option<PaymentLog>,
}

impl Core {
    /// Appends and writes one record. A failure is logged; the caller decides what it
    /// means.
    fn write(&mut self, r: &Record) -> std::io::Result<()> {
        match self.log.as_mut() {
            Some(log) => {
                log.append(r);
                log.flush()
            }
            None => Ok(()),
        }
    }
}

/// State shared by the IPC handlers, the dispatcher and the pollers. A std `Mutex`:
/// it is never held across an `.await`, every critical section is a few
/// microseconds, and the runtime has one thread, so it is never contended.
struct Shared {
    core: Mutex<Core>,
    /// Wakes the dispatcher: new work, a finished attempt, a health change.
    wake: Notify,
    latency: Mutex<[Histogram; 2]>,
    started: Instant,
}

impl Shared {
    fn core(&self) -> MutexGuard<'_, Core> {
        // A panic while holding the lock aborts the process (panic = "abort" in
        // release builds); in tests, recover the guard rather than cascade.
        self.core.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Runs the worker on a bound Unix listener until `shutdown` is cancelled.
pub async fn serve(
    config: Config,
    listener: UnixListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let mut engine = Engine::new(config.engine.clone());
    let log = match &config.log {
        Some(cfg) => {
            let (log, replay) = PaymentLog::open(cfg.clone())
                .with_context(|| format!("opening the payment log in {}", cfg.dir.display()))?;
            let r = log::restore(&mut engine, &replay.records, Micros::now());
            tracing::info!(
                log = %log.path().display(),
                records = replay.records.len(),
                done = r.done,
                pending = r.pending,
                maybe_sent = r.maybe_sent,
                "payment log replayed"
            );
            Some(log)
        }
        None => None,
    };
    let shared = Arc::new(Shared {
        core: Mutex::new(Core { engine, log }),
        wake: Notify::new(),
        latency: Mutex::new(Default::default()),
        started: Instant::now(),
    });
    let client = ProcessorClient::new(config.client.clone());
    let urls = Arc::new(config.urls.clone());
    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(dispatch_loop(
        shared.clone(),
        client.clone(),
        urls.clone(),
        shutdown.clone(),
    ));
    for p in Processor::ALL {
        tasks.spawn(poll_health(
            shared.clone(),
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
    let ipc = spawn_ipc_thread(listener, shared.clone(), shutdown.clone())
        .context("starting the IPC thread")?;
    shutdown.cancelled().await;
    let _ = tokio::task::spawn_blocking(move || ipc.join()).await;
    // Let requests in flight report their outcome, so that what a processor stored is
    // recorded before the process ends.
    let deadline = Instant::now() + config.client.request_timeout.min(Duration::from_secs(5));
    while shared.core().engine.in_flight() > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let left = {
        let c = shared.core();
        c.engine.queue_depth() + c.engine.in_flight()
    };
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
        netio::prepare_unix_path(&args.socket)
            .with_context(|| format!("preparing {}", args.socket.display()))?;
        let listener = UnixListener::bind(&args.socket)
            .with_context(|| format!("binding {}", args.socket.display()))?;
        tracing::info!(socket = %args.socket.display(), "worker listening");
        let shutdown = CancellationToken::new();
        tokio::spawn(netio::stop_on_signal(shutdown.clone()));
        let result = serve(config, listener, shutdown).await;
        let _ = std::fs::remove_file(&args.socket);
        result
    })
}

/// Sends what the engine asks for; sleeps until there is something new.
async fn dispatch_loop(
    shared: Arc<Shared>,
    client: ProcessorClient,
    urls: Arc<[String; 2]>,
    shutdown: CancellationToken,
) {
    /// Actions taken per turn before yielding, so a flood of submits drains in bursts
    /// without starving the IPC handlers on this single thread.
    const BATCH: usize = 256;
    /// Even with nothing scheduled, look again this often (cheap: one lock).
    const IDLE_TICK: Duration = Duration::from_millis(100);
    let mut actions = Vec::with_capacity(BATCH);
    loop {
        let wake_at = {
            let mut guard = shared.core();
            let c = &mut *guard;
            let now = Micros::now();
            while actions.len() < BATCH {
                match c.engine.next_action(now) {
                    Some(a) => actions.push(a),
                    None => break,
                }
            }
            if let Some(log) = c.log.as_mut() {
                // Every timestamp is on disk before its request leaves: after a crash,
                // the payment is resolved on that processor before anything else.
                for a in &actions {
                    if let Action::Send {
                        id,
                        processor,
                        requested_at,
                        ..
                    } = *a
                    {
                        log.append(&Record::Sent {
                            id,
                            processor,
                            requested_at,
                        });
                    }
                }
                if let Err(e) = log.flush() {
                    tracing::error!("payment log write failed; holding sends back: {e}");
                    for a in actions.drain(..) {
                        match a {
                            Action::Send { attempt, .. } => {
                                c.engine.on_send_result(attempt, SendResult::NotSent, now);
                            }
                            Action::Lookup { attempt, .. } => {
                                c.engine.on_lookup_result(
                                    attempt,
                                    engine::LookupResult::Error,
                                    now,
                                );
                            }
                        }
                    }
                }
                if log.wants_compaction(c.engine.live_payments()) {
                    if let Err(e) = log.compact(&c.engine) {
                        tracing::error!("payment log compaction failed: {e}");
                    }
                }
            }
            c.engine.next_wakeup(now)
        };
        let full = actions.len() == BATCH;
        for a in actions.drain(..) {
            tokio::spawn(execute(shared.clone(), client.clone(), urls.clone(), a));
        }
        if full {
            tokio::task::yield_now().await;
            continue;
        }
        let sleep = wake_at.map_or(IDLE_TICK, |t| {
            Duration::from_micros((t.0 - Micros::now().0).clamp(500, 100_000) as u64)
        });
        tokio::select! {
            _ = shared.wake.notified() => {}
            _ = tokio::time::sleep(sleep) => {}
            _ = shutdown.cancelled() => return,
        }
    }
}

async fn execute(
    shared: Arc<Shared>,
    client: ProcessorClient,
    urls: Arc<[String; 2]>,
    action: Action,
) {
    match action {
        Action::Send {
            attempt,
            processor,
            id,
            amount,
            requested_at,
        } => {
            let started = Instant::now();
            let result = client
                .send(&urls[processor.index()], id, amount, requested_at)
                .await;
            let elapsed = started.elapsed().as_secs_f64();
            {
                let mut c = shared.core();
                let was_failing = c.engine.view(processor).failing();
                let effect = c.engine.on_send_result(attempt, result, Micros::now());
                if let Some(r) = Record::of_effect(effect) {
                    if let Err(e) = c.write(&r) {
                        tracing::error!("payment log write failed: {e}");
                    }
                }
                let failing = c.engine.view(processor).failing();
                if failing != was_failing {
                    tracing::info!(
                        processor = processor.name(),
                        failing,
                        last = result.name(),
                        "processor health changed (seen in a payment's answer)"
                    );
                }
            }
            if let Ok(mut h) = shared.latency.lock() {
                h[processor.index()].observe(elapsed);
            }
        }
        Action::Lookup {
            attempt,
            processor,
            id,
        } => {
            let result = client.lookup(&urls[processor.index()], id).await;
            let mut c = shared.core();
            let effect = c.engine.on_lookup_result(attempt, result, Micros::now());
            if let Some(r) = Record::of_effect(effect) {
                if let Err(e) = c.write(&r) {
                    tracing::error!("payment log write failed: {e}");
                }
            }
        }
    }
    shared.wake.notify_one();
}

/// One health poller per processor for the whole deployment: this worker is the only
/// caller, at most one call per `interval`, and a 429 pushes the next call back.
async fn poll_health(
    shared: Arc<Shared>,
    client: ProcessorClient,
    p: Processor,
    url: String,
    interval: Duration,
    shutdown: CancellationToken,
) {
    let mut last_error: Option<String> = None;
    loop {
        let started = tokio::time::Instant::now();
        let wait = match client.health(&url).await {
            HealthPoll::Report(r) => {
                let changed = {
                    let mut c = shared.core();
                    let before = c.engine.view(p).failing();
                    c.engine.on_health(p, r, Micros::now());
                    before != c.engine.view(p).failing()
                };
                if changed || last_error.take().is_some() {
                    tracing::info!(
                        processor = p.name(),
                        failing = r.failing,
                        min_response_time_ms = r.min_response_time_ms,
                        "health poll"
                    );
                }
                shared.wake.notify_one();
                interval
            }
            HealthPoll::RetryAfter(d) => d.max(interval),
            HealthPoll::Error(msg) => {
                if last_error.as_deref() != Some(msg.as_str()) {
                    tracing::warn!(processor = p.name(), "health poll failed: {msg}");
                    last_error = Some(msg);
                }
                interval
            }
        };
        tokio::select! {
            _ = tokio::time::sleep_until(started + wait) => {}
            _ = shutdown.cancelled() => return,
        }
    }
}

/// Runs the IPC accept loop and every api connection on a dedicated thread with its
/// own single-threaded runtime, until `shutdown` is cancelled.
fn spawn_ipc_thread(
    listener: UnixListener,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    // A tokio listener is tied to the runtime that registered it: hand it over as a
    // std listener and register it again on the new runtime.
    let std_listener = listener.into_std()?;
    let rt = netio::single_thread_runtime()?;
    std::thread::Builder::new()
        .name("payroute-ipc".into())
        .spawn(move || {
            rt.block_on(async move {
                let listener = match UnixListener::from_std(std_listener) {
                    Ok(l) => l,
                    Err(e) => {
                        tracing::error!("cannot serve the worker socket: {e}");
                        shutdown.cancel();
                        return;
                    }
                };
                loop {
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        accepted = listener.accept() => match accepted {
                            Ok((stream, _)) => {
                                tokio::spawn(serve_ipc(stream, shared.clone()));
                            }
                            Err(e) => {
                                tracing::warn!("accept on the worker socket failed: {e}");
                                tokio::time::sleep(Duration::from_millis(20)).await;
                            }
                        }
                    }
                }
            })
        })
}

/// Serves one api connection: frames in, replies out in the same order. Every
/// request is answered from memory without waiting on anything.
async fn serve_ipc(stream: UnixStream, shared: Arc<Shared>) {
    let (mut rd, mut wr) = stream.into_split();
    let mut buf: Vec<u8> = Vec::with_capacity(8 * 1024);
    let mut out: Vec<u8> = Vec::with_capacity(8 * 1024);
    loop {
        match rd.read_buf(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let mut consumed = 0;
        let mut woke = false;
        loop {
            let (payload, n) = match split_frame(&buf[consumed..]) {
                Ok(Some(f)) => f,
                Ok(None) => break,
                Err(e) => {
                    tracing::warn!("closing an api connection: {e}");
                    return;
                }
            };
            let reply = match Request::decode(payload) {
                Ok(req) => handle(&shared, req, &mut woke),
                Err(e) => {
                    tracing::warn!("closing an api connection: {e}");
                    return;
                }
            };
            reply.encode(&mut out);
            consumed += n;
        }
        buf.drain(..consumed);
        if woke {
            shared.wake.notify_one();
        }
        if !out.is_empty() {
            if wr.write_all(&out).await.is_err() {
                return;
            }
            out.clear();
        }
    }
}

fn handle(shared: &Shared, req: Request, woke: &mut bool) -> Reply {
    match req {
        Request::Submit { id, amount } => {
            let mut c = shared.core();
            let mut status = c.engine.submit(id, amount);
            if status == SubmitStatus::Accepted {
                // Durable before acknowledged: a crash after this reply loses nothing.
                if let Err(e) = c.write(&Record::Accepted { id, amount }) {
                    tracing::error!("payment log write failed; refusing payments: {e}");
                    c.engine.cancel_accept(&id);
                    status = SubmitStatus::Unavailable;
                } else {
                    *woke = true;
                }
            }
            Reply::Submit(status)
        }
        Request::Summary(q) => Reply::Summary(shared.core().engine.summary(&q)),
        Request::Purge => {
            let mut c = shared.core();
            c.engine.purge();
            if let Some(log) = c.log.as_mut() {
                if let Err(e) = log.clear() {
                    tracing::error!("emptying the payment log failed: {e}");
                }
            }
            tracing::info!("purged every payment");
            Reply::Purged
        }
        Request::Health => Reply::Text(health_json(shared)),
        Request::Metrics => Reply::Text(metrics_text(shared)),
    }
}

fn health_json(shared: &Shared) -> String {
    let c = shared.core();
    let e = &c.engine;
    let now = Micros::now();
    let view = |p: Processor| {
        let v = e.view(p);
        serde_json::json!({
            "failing": v.failing(),
            "expected_latency_ms": v.expected_latency_us(now) as f64 / 1000.0,
            "in_flight": v.in_flight(),
            "failure_streak": v.failure_streak,
            "last_poll": v.polled.map(|(at, r)| serde_json::json!({
                "failing": r.failing,
                "min_response_time_ms": r.min_response_time_ms,
                "age_ms": (now.0 - at.0) / 1000,
            })),
        })
    };
    let c = &e.counters;
    serde_json::json!({
        "status": "ok",
        "uptime_s": shared.started.elapsed().as_secs(),
        "queue_depth": e.queue_depth(),
        "in_flight": e.in_flight(),
        "accepted": c.accepted,
        "processed": {"default": c.processed[0], "fallback": c.processed[1]},
        "processors": {"default": view(Processor::Default), "fallback": view(Processor::Fallback)},
    })
    .to_string()
}

fn metrics_text(shared: &Shared) -> String {
    let core = shared.core();
    let e = &core.engine;
    let now = Micros::now();
    let c = e.counters.clone();
    let mut x = Exposition::new();
    x.family(
        "payroute_payments_accepted_total",
        "counter",
        "Payments accepted (2XX) since the last purge.",
    )
    .sample("payroute_payments_accepted_total", "", c.accepted as f64);
    x.family(
        "payroute_payments_duplicate_total",
        "counter",
        "Submits of an already accepted correlationId.",
    )
    .sample("payroute_payments_duplicate_total", "", c.duplicates as f64);
    x.family(
        "payroute_payments_refused_total",
        "counter",
        "Submits refused because the queue was full.",
    )
    .sample(
        "payroute_payments_refused_total",
        "reason=\"queue_full\"",
        c.refused_full as f64,
    );
    x.per_processor(
        "payroute_payments_processed_total",
        "counter",
        "Payments recorded as stored by a processor.",
        |p| c.processed[p.index()] as f64,
    );
    x.family(
        "payroute_payment_retries_total",
        "counter",
        "Processor calls that did not finish their payment.",
    )
    .sample("payroute_payment_retries_total", "", c.retries as f64);
    x.family(
        "payroute_processor_requests_total",
        "counter",
        "Payment requests to processors by outcome.",
    );
    for p in Processor::ALL {
        for r in engine::SendResult::ALL {
            x.sample(
                "payroute_processor_requests_total",
                &format!("processor=\"{}\",result=\"{}\"", p.name(), r.name()),
                c.send_results[p.index()][r.index()] as f64,
            );
        }
    }
    x.per_processor(
        "payroute_processor_lookups_total",
        "counter",
        "GET /payments/{id} calls made to learn an unknown fate.",
        |p| c.lookups[p.index()] as f64,
    );
    x.per_processor(
        "payroute_processor_probes_total",
        "counter",
        "Payments sent to a processor believed failing, to detect recovery.",
        |p| c.probes[p.index()] as f64,
    );
    x.family(
        "payroute_unknown_fate_resolved_total",
        "counter",
        "Payments whose unknown fate was resolved.",
    )
    .sample(
        "payroute_unknown_fate_resolved_total",
        "",
        c.unknown_resolved as f64,
    );
    x.per_processor(
        "payroute_health_polls_total",
        "counter",
        "Successful health polls.",
        |p| c.health_polls[p.index()] as f64,
    );
    x.family(
        "payroute_queue_depth",
        "gauge",
        "Payments accepted and waiting to be sent.",
    )
    .sample("payroute_queue_depth", "", e.queue_depth() as f64);
    x.family("payroute_in_flight", "gauge", "Processor calls in flight.");
    for p in Processor::ALL {
        x.sample(
            "payroute_in_flight",
            &format!("processor=\"{}\"", p.name()),
            e.view(p).in_flight() as f64,
        );
    }
    x.per_processor(
        "payroute_processor_failing",
        "gauge",
        "1 when the processor is believed failing.",
        |p| f64::from(u8::from(e.view(p).failing())),
    );
    x.per_processor(
        "payroute_processor_expected_latency_seconds",
        "gauge",
        "Expected latency of a payment request sent now.",
        |p| e.view(p).expected_latency_us(now) as f64 / 1e6,
    );
    if let Some(log) = &core.log {
        x.family(
            "payroute_log_records",
            "gauge",
            "Records in the payment log.",
        )
        .sample("payroute_log_records", "", log.records() as f64);
    }
    drop(core);
    x.family(
        "payroute_processor_request_duration_seconds",
        "histogram",
        "Duration of payment requests to processors.",
    );
    if let Ok(h) = shared.latency.lock() {
        for p in Processor::ALL {
            x.histogram(
                "payroute_processor_request_duration_seconds",
                &format!("processor=\"{}\"", p.name()),
                &h[p.index()],
            );
        }
    }
    x.finish()
}
