//! `payroute api`: the HTTP front. It validates a request, hands it to the worker over
//! a Unix socket, and answers. It never calls a processor and holds no payment state:
//! any number of instances answer identically.
//!
//! Architecture invariant: an api instance answers `POST /payments` with 2XX only
//! after the worker has replied `Accepted` or `Duplicate`; everything it answers about
//! payments comes from the worker.

pub mod config;
pub mod worker_client;

pub use config::{Args, Config};

use anyhow::Context;
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use ipc::SubmitStatus;
use model::metrics::{Exposition, Histogram};
use model::{PaymentRequest, SummaryQuery};
use netio::{Body, CancellationToken, ListenAddr, Listener};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use worker_client::{WorkerClient, WorkerError};

/// Routes, for metrics.
#[derive(Debug, Clone, Copy)]
enum Route {
    Payments,
    Summary,
    Purge,
    Health,
    Metrics,
    Other,
}

const ROUTES: [Route; 6] = [
    Route::Payments,
    Route::Summary,
    Route::Purge,
    Route::Health,
    Route::Metrics,
    Route::Other,
];

impl Route {
    fn name(self) -> &'static str {
        match self {
            Route::Payments => "payments",
            Route::Summary => "payments_summary",
            Route::Purge => "purge_payments",
            Route::Health => "health",
            Route::Metrics => "metrics",
            Route::Other => "other",
        }
    }
}

/// Status classes counted per route: 2xx, 4xx, 5xx.
#[derive(Default)]
struct ApiMetrics {
    latency: [Histogram; 6],
    by_class: [[u64; 3]; 6],
}

struct State {
    worker: WorkerClient,
    max_body: usize,
    body_timeout: Duration,
    admin_token: Option<String>,
    metrics: Mutex<ApiMetrics>,
}

/// Serves the API on a bound listener until `shutdown` is cancelled.
pub async fn serve(
    config: Config,
    listener: Listener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let state = Arc::new(State {
        worker: WorkerClient::new(config.workers.clone(), config.worker_timeout),
        max_body: config.max_body_bytes,
        body_timeout: config.body_timeout,
        admin_token: config.admin_token.clone(),
        metrics: Mutex::new(ApiMetrics::default()),
    });
    let handler = move |req: Request<Incoming>| {
        let state = state.clone();
        async move { handle(&state, req).await }
    };
    netio::serve(listener, config.limits, handler, shutdown).await;
    Ok(())
}

/// Entry point of `payroute api`.
pub fn run(args: Args) -> anyhow::Result<()> {
    let config = Config::from_args(&args);
    let rt = netio::single_thread_runtime().context("starting the runtime")?;
    rt.block_on(async {
        let listener = Listener::bind_shared(&args.listen)
            .with_context(|| format!("binding {}", args.listen))?;
        let workers: Vec<String> = args.worker_socket.iter().map(ToString::to_string).collect();
        tracing::info!(listen = %args.listen, workers = %workers.join(","), "api listening");
        let shutdown = CancellationToken::new();
        tokio::spawn(netio::stop_on_signal(shutdown.clone()));
        let result = serve(config, listener, shutdown).await;
        if let ListenAddr::Unix(path) = &args.listen {
            let _ = std::fs::remove_file(path);
        }
        result
    })
}

async fn handle(state: &State, req: Request<Incoming>) -> Response<Body> {
    let started = Instant::now();
    let (route, resp) = dispatch(state, req).await;
    let elapsed = started.elapsed().as_secs_f64();
    let class = match resp.status().as_u16() {
        200..=399 => 0,
        400..=499 => 1,
        _ => 2,
    };
    if let Ok(mut m) = state.metrics.lock() {
        m.latency[route as usize].observe(elapsed);
        m.by_class[route as usize][class] += 1;
    }
    resp
}

async fn dispatch(state: &State, req: Request<Incoming>) -> (Route, Response<Body>) {
    let path = req.uri().path();
    match (req.method(), path) {
        (&Method::POST, "/payments") => (Route::Payments, post_payment(state, req).await),
        (&Method::GET, "/payments-summary") => {
            let query = req.uri().query().unwrap_or("");
            (Route::Summary, summary(state, query).await)
        }
        (&Method::POST, "/purge-payments") => {
            let token = req.headers().get("x-payroute-token").cloned();
            (Route::Purge, purge(state, token.as_ref()).await)
        }
        (&Method::GET, "/health") => (Route::Health, health(state).await),
        (&Method::GET, "/metrics") => (Route::Metrics, metrics(state).await),
        (_, "/payments" | "/payments-summary" | "/purge-payments" | "/health" | "/metrics") => (
            Route::Other,
            netio::error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed"),
        ),
        _ => (
            Route::Other,
            netio::error(StatusCode::NOT_FOUND, "not found"),
        ),
    }
}

fn worker_down(e: WorkerError) -> Response<Body> {
    netio::error(StatusCode::SERVICE_UNAVAILABLE, &e.to_string())
}

async fn post_payment(state: &State, req: Request<Incoming>) -> Response<Body> {
    let read = tokio::time::timeout(state.body_timeout, netio::read_body(req, state.max_body));
    let body = match read.await {
        Err(_) => {
            return netio::json(
                StatusCode::REQUEST_TIMEOUT,
                Bytes::from_static(br#"{"error":"body not received in time","field":"body"}"#),
            )
        }
        Ok(Ok(b)) => b,
        Ok(Err(netio::BodyError::TooLarge)) => {
            return netio::json(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!(
                    r#"{{"error":"body is larger than {} bytes","field":"body"}}"#,
                    state.max_body
                ),
            )
        }
        Ok(Err(netio::BodyError::Io)) => {
            return netio::error(StatusCode::BAD_REQUEST, "body could not be read")
        }
    };
    let payment = match PaymentRequest::parse(&body) {
        Ok(p) => p,
        Err(e) => return netio::json(StatusCode::BAD_REQUEST, e.to_json()),
    };
    match state
        .worker
        .submit(payment.correlation_id, payment.amount)
        .await
    {
        Ok(SubmitStatus::Accepted) => netio::empty(StatusCode::ACCEPTED),
        Ok(SubmitStatus::Duplicate) => netio::json(
            StatusCode::OK,
            Bytes::from_static(br#"{"message":"payment already accepted"}"#),
        ),
        Ok(SubmitStatus::Conflict) => netio::json(
            StatusCode::CONFLICT,
            Bytes::from_static(
                br#"{"error":"correlationId was already accepted with another amount","field":"correlationId"}"#,
            ),
        ),
        Ok(SubmitStatus::QueueFull) => netio::error(
            StatusCode::SERVICE_UNAVAILABLE,
            "queue is full, try again later",
        ),
        Ok(SubmitStatus::Unavailable) => netio::error(
            StatusCode::SERVICE_UNAVAILABLE,
            "payments cannot be stored durably right now, try again later",
        ),
        Err(e) => worker_down(e),
    }
}

async fn summary(state: &State, query: &str) -> Response<Body> {
    let q = match SummaryQuery::parse(query) {
        Ok(q) => q,
        Err(e) => return netio::json(StatusCode::BAD_REQUEST, e.to_json()),
    };
    match state.worker.summary(q).await {
        Ok(s) => netio::json(StatusCode::OK, s.to_json()),
        Err(e) => worker_down(e),
    }
}

/// Whether a request may purge: always when no admin token is set, else only with it.
fn may_purge(expected: Option<&str>, given: Option<&http::HeaderValue>) -> bool {
    match expected {
        None => true,
        Some(token) => given.is_some_and(|g| g.as_bytes() == token.as_bytes()),
    }
}

async fn purge(state: &State, token: Option<&http::HeaderValue>) -> Response<Body> {
    if !may_purge(state.admin_token.as_deref(), token) {
        return netio::error(
            StatusCode::UNAUTHORIZED,
            "purging needs the X-Payroute-Token header with the admin token",
        );
    }
    match state.worker.purge().await {
        Ok(()) => netio::json(
            StatusCode::OK,
            Bytes::from_static(br#"{"message":"All payments purged."}"#),
        ),
        Err(e) => worker_down(e),
    }
}

async fn health(state: &State) -> Response<Body> {
    match state.worker.health().await {
        Ok(json) => netio::json(StatusCode::OK, json),
        Err(e) => netio::json(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                r#"{{"status":"unavailable","error":{}}}"#,
                netio::json_string(&e.to_string())
            ),
        ),
    }
}

async fn metrics(state: &State) -> Response<Body> {
    let mut x = Exposition::new();
    if let Ok(m) = state.metrics.lock() {
        x.family(
            "payroute_http_requests_total",
            "counter",
            "HTTP requests answered by this api instance.",
        );
        for r in ROUTES {
            for (i, class) in ["2xx", "4xx", "5xx"].iter().enumerate() {
                x.sample(
                    "payroute_http_requests_total",
                    &format!("route=\"{}\",class=\"{class}\"", r.name()),
                    m.by_class[r as usize][i] as f64,
                );
            }
        }
        x.family(
            "payroute_http_request_duration_seconds",
            "histogram",
            "Time from a request's head to its answer, in this api instance.",
        );
        for r in ROUTES {
            x.histogram(
                "payroute_http_request_duration_seconds",
                &format!("route=\"{}\"", r.name()),
                &m.latency[r as usize],
            );
        }
    }
    let worker_up = match state.worker.metrics().await {
        Ok(text) => {
            x.raw(&text);
            1.0
        }
        Err(_) => 0.0,
    };
    x.family(
        "payroute_worker_up",
        "gauge",
        "1 when this api instance reaches the worker.",
    )
    .sample("payroute_worker_up", "", worker_up);
    netio::with_type(StatusCode::OK, "text/plain; version=0.0.4", x.finish())
}
