//! `payroute api`: the HTTP front. It validates a request, hands it to the worker over
//! a Unix socket, and answers. It never calls a processor and holds no payment state:
//! any number of instances answer identically.
//!
//! Architecture invariant: an api instance answers `POST /payments` with 2XX only
//! after the worker has replied `Accepted` or `Duplicate`; everything it answers about
//! payments comes from the worker.

pub mod config;
mod metrics;
pub mod worker_client;

pub use config::{Args, Config};

use anyhow::Context;
use http::{Method, StatusCode};
use ipc::SubmitStatus;
use metrics::{ApiMetrics, Route};
use model::metrics::Exposition;
use model::{PaymentRequest, SummaryQuery};
use netio::{
    CancellationToken, Handler, ListenAddr, Listener, Refusal, Request, Response, ServeLimits,
    ServerStats,
};
use std::sync::Arc;
use std::time::Instant;
use worker_client::{WorkerClient, WorkerError};

/// The api's handler: what every request may use.
struct Api {
    worker: WorkerClient,
    max_body: usize,
    admin_token: Option<String>,
    metrics: ApiMetrics,
    server: Arc<ServerStats>,
}

/// Serves the API on a bound listener until `shutdown` is cancelled.
pub async fn serve(
    config: Config,
    listener: Listener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    // Bodies are read by the server, within the api's limits.
    let limits = ServeLimits {
        max_body_bytes: config.max_body_bytes,
        body_timeout: config.body_timeout,
        ..config.limits.clone()
    };
    let server = netio::Server::new(limits);
    let api = Api {
        worker: WorkerClient::new(config.workers.clone(), config.worker_timeout),
        max_body: config.max_body_bytes,
        admin_token: config.admin_token.clone(),
        metrics: ApiMetrics::default(),
        server: server.stats(),
    };
    server.serve(listener, api, shutdown).await;
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

impl Handler for Api {
    async fn call(&self, req: &Request<'_>) -> Response {
        let started = Instant::now();
        let (route, resp) = self.dispatch(req).await;
        self.metrics
            .observe(route, resp.status.as_u16(), started.elapsed());
        resp
    }

    /// The server reads bodies; its refusals keep the api's wording.
    fn refusal(&self, refusal: Refusal) -> Response {
        match refusal {
            Refusal::BodyTimeout => netio::json(
                StatusCode::REQUEST_TIMEOUT,
                r#"{"error":"body not received in time","field":"body"}"#,
            ),
            Refusal::BodyTooLarge { limit } => netio::json(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!(r#"{{"error":"body is larger than {limit} bytes","field":"body"}}"#),
            ),
            other => other.response(),
        }
    }
}

impl Api {
    async fn dispatch(&self, req: &Request<'_>) -> (Route, Response) {
        match (req.method, req.path) {
            (&Method::POST, "/payments") => (Route::Payments, self.post_payment(req.body).await),
            (&Method::GET, "/payments-summary") => (Route::Summary, self.summary(req.query).await),
            (&Method::POST, "/purge-payments") => {
                let token = req.header("x-payroute-token");
                (Route::Purge, self.purge(token).await)
            }
            (&Method::GET, "/health") => (Route::Health, self.health().await),
            (&Method::GET, "/metrics") => (Route::Metrics, self.metrics().await),
            (_, "/payments" | "/payments-summary" | "/purge-payments" | "/health" | "/metrics") => {
                (
                    Route::Other,
                    netio::error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed"),
                )
            }
            _ => (
                Route::Other,
                netio::error(StatusCode::NOT_FOUND, "not found"),
            ),
        }
    }

    async fn post_payment(&self, body: &[u8]) -> Response {
        debug_assert!(body.len() <= self.max_body, "the server enforces the limit");
        let payment = match PaymentRequest::parse(body) {
            Ok(p) => p,
            Err(e) => return netio::json(StatusCode::BAD_REQUEST, e.to_json()),
        };
        match self
            .worker
            .submit(payment.correlation_id, payment.amount)
            .await
        {
            Ok(SubmitStatus::Accepted) => netio::empty(StatusCode::ACCEPTED),
            Ok(SubmitStatus::Duplicate) => {
                netio::json(StatusCode::OK, r#"{"message":"payment already accepted"}"#)
            }
            Ok(SubmitStatus::Conflict) => netio::json(
                StatusCode::CONFLICT,
                r#"{"error":"correlationId was already accepted with another amount","field":"correlationId"}"#,
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

    async fn summary(&self, query: &str) -> Response {
        let q = match SummaryQuery::parse(query) {
            Ok(q) => q,
            Err(e) => return netio::json(StatusCode::BAD_REQUEST, e.to_json()),
        };
        match self.worker.summary(q).await {
            Ok(s) => netio::json(StatusCode::OK, s.to_json()),
            Err(e) => worker_down(e),
        }
    }

    async fn purge(&self, token: Option<&[u8]>) -> Response {
        if !may_purge(self.admin_token.as_deref(), token) {
            return netio::error(
                StatusCode::UNAUTHORIZED,
                "purging needs the X-Payroute-Token header with the admin token",
            );
        }
        match self.worker.purge().await {
            Ok(()) => netio::json(StatusCode::OK, r#"{"message":"All payments purged."}"#),
            Err(e) => worker_down(e),
        }
    }

    async fn health(&self) -> Response {
        match self.worker.health().await {
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

    async fn metrics(&self) -> Response {
        let mut x = Exposition::new();
        self.metrics.render(&mut x);
        metrics::render_server(&mut x, &self.server);
        let worker_up = match self.worker.metrics().await {
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
}

fn worker_down(e: WorkerError) -> Response {
    netio::error(StatusCode::SERVICE_UNAVAILABLE, &e.to_string())
}

/// Whether a request may purge: always when no admin token is set, else only with it.
fn may_purge(expected: Option<&str>, given: Option<&[u8]>) -> bool {
    match expected {
        None => true,
        Some(token) => given.is_some_and(|g| g == token.as_bytes()),
    }
}
