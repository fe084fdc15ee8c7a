//! The HTTP/1.1 server: its limits, the [`Handler`] a role implements, the accept loop
//! with its connection cap, and graceful stop.
//!
//! The cap comes from [`memory::plan`]: the smallest of `--max-connections`, what the
//! process's memory limit holds and what its open-file limit allows. Beyond it a new
//! connection is answered `503` and closed (up to [`memory::Plan::answered_refusals`] at
//! once, each held for a second so the answer is read), or closed unanswered past that;
//! never accepted into memory the process does not have.

use crate::buffers::Budget;
use crate::listen::{Listener, Stream};
use crate::memory::{self, Plan};
use crate::request::{self, Request};
use crate::response::{self, Response};
use crate::{conn, CancellationToken};
use http::StatusCode;
use std::future::Future;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Limits of one HTTP server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServeLimits {
    /// Connections served at once, at most; the server may derive a smaller cap from
    /// its memory and open-file limits (the smallest wins).
    pub max_connections: usize,
    /// Bytes of request head (request line and headers) at most: 431 beyond.
    pub max_header_bytes: usize,
    /// Time allowed for a whole request head to arrive, counted from the previous
    /// answer (or the connection): an idle keep-alive connection is closed after it, a
    /// partly received head gets 408. Also bounds writing an answer to a client that
    /// does not read.
    pub header_timeout: Duration,
    /// Bytes of request body at most, after chunked decoding: 413 beyond.
    pub max_body_bytes: usize,
    /// Time allowed for a body to arrive once its head has: 408 after it.
    pub body_timeout: Duration,
}

impl Default for ServeLimits {
    fn default() -> Self {
        ServeLimits {
            max_connections: 4096,
            max_header_bytes: 16 * 1024,
            // Above the 20 s upstream keep-alive of the bundled nginx config, so that
            // nginx never reuses a connection the server has just closed.
            header_timeout: Duration::from_secs(30),
            max_body_bytes: 16 * 1024,
            // A client that sent its head has its body ready: 10 s is generous and
            // still frees the connection of a stalled one.
            body_timeout: Duration::from_secs(10),
        }
    }
}

/// What a role serves: an answer for each request. The request borrows the
/// connection's buffer; the answer is owned.
pub trait Handler: Send + Sync + 'static {
    fn call(&self, req: &Request<'_>) -> impl Future<Output = Response> + Send;

    /// The answer to a request the server refuses before the handler sees it. The
    /// default is a JSON error; a role may word its own.
    fn refusal(&self, refusal: Refusal) -> Response {
        refusal.response()
    }
}

/// Why the server answered a request itself. Each ends the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Not an HTTP/1.x request, or its body's framing is invalid: 400.
    Malformed,
    /// The head is over the limit: 431.
    HeadTooLarge,
    /// The body is over `limit` bytes: 413.
    BodyTooLarge { limit: usize },
    /// The head did not arrive in time: 408.
    HeadTimeout,
    /// The body did not arrive in time: 408.
    BodyTimeout,
    /// A transfer coding other than `chunked`: 501.
    UnsupportedCoding,
    /// An `Expect` other than `100-continue`: 417.
    Expectation,
    /// An HTTP version other than 1.0 and 1.1: 505.
    Version,
    /// Over the connection cap, or no buffer budget left for a large request: 503.
    Overloaded,
}

impl Refusal {
    pub fn status(self) -> StatusCode {
        match self {
            Refusal::Malformed => StatusCode::BAD_REQUEST,
            Refusal::HeadTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            Refusal::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Refusal::HeadTimeout | Refusal::BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            Refusal::UnsupportedCoding => StatusCode::NOT_IMPLEMENTED,
            Refusal::Expectation => StatusCode::EXPECTATION_FAILED,
            Refusal::Version => StatusCode::HTTP_VERSION_NOT_SUPPORTED,
            Refusal::Overloaded => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// The default answer: the status and `{"error": ...}`.
    pub fn response(self) -> Response {
        let body: &'static str = match self {
            Refusal::Malformed => r#"{"error":"malformed request"}"#,
            Refusal::HeadTooLarge => r#"{"error":"request head too large"}"#,
            Refusal::BodyTooLarge { .. } => r#"{"error":"body too large","field":"body"}"#,
            Refusal::HeadTimeout => r#"{"error":"request head not received in time"}"#,
            Refusal::BodyTimeout => r#"{"error":"body not received in time","field":"body"}"#,
            Refusal::UnsupportedCoding => {
                r#"{"error":"only the chunked transfer coding is supported"}"#
            }
            Refusal::Expectation => r#"{"error":"only Expect: 100-continue is supported"}"#,
            Refusal::Version => r#"{"error":"only HTTP/1.0 and HTTP/1.1 are supported"}"#,
            Refusal::Overloaded => r#"{"error":"server overloaded, try again later"}"#,
        };
        response::json(self.status(), body)
    }
}

/// Figures of a running server, for `/metrics`; cheap to read at any time.
#[derive(Debug)]
pub struct ServerStats {
    plan: Plan,
    pub(crate) budget: Budget,
    open: AtomicUsize,
    /// Refused connections being answered now.
    answering: AtomicUsize,
    refused_connections: AtomicU64,
    refused_requests: AtomicU64,
}

impl ServerStats {
    /// The cap and what it was derived from.
    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    /// Connections open now.
    pub fn open_connections(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    /// Connections refused at the cap since start (answered 503 or closed).
    pub fn refused_connections(&self) -> u64 {
        self.refused_connections.load(Ordering::Relaxed)
    }

    /// Requests the server answered itself (400, 408, 413, 417, 431, 501, 503, 505).
    pub fn refused_requests(&self) -> u64 {
        self.refused_requests.load(Ordering::Relaxed)
    }

    /// Bytes of buffer held beyond the small size now, and the most allowed.
    pub fn buffer_bytes(&self) -> (usize, usize) {
        (self.budget.in_use(), self.budget.total())
    }

    pub(crate) fn count_refused_request(&self) {
        self.refused_requests.fetch_add(1, Ordering::Relaxed);
    }
}

/// What every connection of a server shares.
pub(crate) struct Shared<H> {
    pub(crate) handler: H,
    pub(crate) limits: ServeLimits,
    pub(crate) request_limits: request::Limits,
    pub(crate) stats: Arc<ServerStats>,
    pub(crate) shutdown: CancellationToken,
}

impl<H> Shared<H> {
    pub(crate) fn timeout(&self, head: bool) -> Duration {
        if head {
            self.limits.header_timeout
        } else {
            self.limits.body_timeout
        }
    }
}

/// An HTTP/1.1 server, its cap decided: build it, read its [`ServerStats`], serve.
pub struct Server {
    limits: ServeLimits,
    stats: Arc<ServerStats>,
}

/// Time given to open connections to finish after a stop.
const STOP_GRACE: Duration = Duration::from_secs(5);

impl Server {
    /// Decides the cap from `limits` and this process's limits and memory, and logs it.
    pub fn new(limits: ServeLimits) -> Server {
        let plan = memory::plan(limits.max_connections, memory::Env::read());
        log_plan(&plan, limits.max_connections);
        Server::with_plan(limits, plan)
    }

    /// A server with a given plan (tests).
    pub fn with_plan(limits: ServeLimits, plan: Plan) -> Server {
        let budget = Budget::new(usize::try_from(plan.buffer_budget).unwrap_or(usize::MAX));
        Server {
            limits,
            stats: Arc::new(ServerStats {
                plan,
                budget,
                open: AtomicUsize::new(0),
                answering: AtomicUsize::new(0),
                refused_connections: AtomicU64::new(0),
                refused_requests: AtomicU64::new(0),
            }),
        }
    }

    pub fn stats(&self) -> Arc<ServerStats> {
        self.stats.clone()
    }

    /// Serves on `listener` until `shutdown` is cancelled; then closes idle
    /// connections, lets the others finish the requests they have received (answered
    /// with `connection: close`), and returns when all are closed or after 5 s.
    pub async fn serve<H: Handler>(
        self,
        listener: Listener,
        handler: H,
        shutdown: CancellationToken,
    ) {
        let shared = Arc::new(Shared {
            handler,
            request_limits: request::Limits {
                max_head: self.limits.max_header_bytes,
                max_body: self.limits.max_body_bytes,
            },
            limits: self.limits,
            stats: self.stats,
            shutdown: shutdown.clone(),
        });
        let tracker = tokio_util::task::TaskTracker::new();
        let mut state = AcceptState::default();
        loop {
            let accepted = tokio::select! {
                biased;
                () = shutdown.cancelled() => break,
                a = listener.accept() => a,
            };
            match accepted {
                Ok(stream) => {
                    state.accepted();
                    admit(&shared, &tracker, stream, &mut state);
                }
                Err(e) => {
                    // EMFILE and friends: back off briefly instead of spinning.
                    state.failed(&e);
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
        drop(listener);
        tracker.close();
        let _ = tokio::time::timeout(STOP_GRACE, tracker.wait()).await;
    }
}

/// Serves HTTP/1.1 on `listener` with `handler` until `shutdown` is cancelled.
pub async fn serve<H: Handler>(
    listener: Listener,
    limits: ServeLimits,
    handler: H,
    shutdown: CancellationToken,
) {
    Server::new(limits).serve(listener, handler, shutdown).await;
}

/// Serves a new connection, or refuses it when the cap is reached.
fn admit<H: Handler>(
    shared: &Arc<Shared<H>>,
    tracker: &tokio_util::task::TaskTracker,
    stream: Stream,
    state: &mut AcceptState,
) {
    let stats = &shared.stats;
    if stats.open.load(Ordering::Relaxed) < stats.plan.cap {
        state.below_cap();
        let open = Counted::new(stats, |s| &s.open);
        let shared = shared.clone();
        tracker.spawn(async move {
            let _open = open;
            match stream {
                Stream::Tcp(s) => conn::serve(s, &shared).await,
                Stream::Unix(s) => conn::serve(s, &shared).await,
            }
        });
        return;
    }
    stats.refused_connections.fetch_add(1, Ordering::Relaxed);
    state.at_cap(stats);
    if stats.answering.load(Ordering::Relaxed) >= stats.plan.answered_refusals {
        return; // dropped: closed unanswered
    }
    let answering = Counted::new(stats, |s| &s.answering);
    let shared = shared.clone();
    tracker.spawn(async move {
        let _answering = answering;
        match stream {
            Stream::Tcp(s) => conn::refuse(s, &shared).await,
            Stream::Unix(s) => conn::refuse(s, &shared).await,
        }
    });
}

/// One unit of a counter of [`ServerStats`]: counted when made, uncounted when dropped.
struct Counted {
    stats: Arc<ServerStats>,
    counter: fn(&ServerStats) -> &AtomicUsize,
}

impl Counted {
    fn new(stats: &Arc<ServerStats>, counter: fn(&ServerStats) -> &AtomicUsize) -> Counted {
        counter(stats).fetch_add(1, Ordering::Relaxed);
        Counted {
            stats: stats.clone(),
            counter,
        }
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        (self.counter)(&self.stats).fetch_sub(1, Ordering::Relaxed);
    }
}

/// What the accept loop last logged, so that it logs once per change of state.
#[derive(Default)]
struct AcceptState {
    at_cap: bool,
    refused: u64,
    failing: bool,
}

impl AcceptState {
    fn at_cap(&mut self, stats: &ServerStats) {
        self.refused += 1;
        if !self.at_cap {
            self.at_cap = true;
            tracing::warn!(
                cap = stats.plan.cap,
                "connection cap reached: new connections get 503 and are closed \
                 (closed unanswered beyond {} at once) until some close",
                stats.plan.answered_refusals
            );
        }
    }

    fn below_cap(&mut self) {
        if self.at_cap {
            tracing::info!(
                "below the connection cap again; {} refused meanwhile",
                self.refused
            );
            (self.at_cap, self.refused) = (false, 0);
        }
    }

    fn failed(&mut self, e: &std::io::Error) {
        if !self.failing {
            self.failing = true;
            tracing::warn!("accepting connections fails: {e}; retrying every 20 ms");
        }
    }

    fn accepted(&mut self) {
        if self.failing {
            self.failing = false;
            tracing::info!("accepting connections again");
        }
    }
}

fn log_plan(plan: &Plan, explicit: usize) {
    let mib = |b: u64| b as f64 / f64::from(1 << 20);
    let files = plan.files_cap.map_or_else(
        || "no open-file limit".to_string(),
        |n| format!("{n} by open files"),
    );
    match &plan.env.limit {
        Some(l) => tracing::info!(
            cap = plan.cap,
            "connection cap {}: memory limit {:.1} MiB ({}), {:.1} MiB resident at start, \
             {} bytes per connection: {} connections; --max-connections {explicit}; {files}",
            plan.cap,
            mib(l.bytes),
            l.file.display(),
            mib(plan.env.base_rss),
            memory::USER_BYTES_PER_CONNECTION + memory::KERNEL_BYTES_PER_CONNECTION,
            plan.memory_cap.unwrap_or(0),
        ),
        None => tracing::info!(
            cap = plan.cap,
            "connection cap {}: no memory limit found; --max-connections {explicit}; {files}",
            plan.cap,
        ),
    }
}
