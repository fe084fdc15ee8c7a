//! The HTTP side: routes, handlers and the shared state of one processor.

use crate::limit::{InFlight, Refused, Windows};
use crate::store::{Insert, Store, Stored};
use crate::wire::{self, Fee, InputError, Payment, SummaryBounds};
use crate::Config;
use http::{Method, StatusCode};
use netio::{CancellationToken, Handler, Listener, Refusal, Request, Response, ServeLimits};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

/// Largest request body read. Payment bodies are ~130 bytes and admin bodies smaller;
/// 16 KiB leaves room for any honest client and bounds what a broken one costs.
const MAX_BODY_BYTES: usize = 16 * 1024;

/// The admin header.
const TOKEN_HEADER: &str = "x-rinha-token";

/// A snapshot of a running processor's counters, for tests and the launcher (the
/// official API has no such endpoint, so it is not served over HTTP).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    /// `POST /payments` requests past the concurrency limiter, not yet answered or,
    /// for a client that gave up, not yet stored.
    pub in_flight: usize,
    /// `POST /payments` requests waiting for the concurrency limiter.
    pub queued: usize,
    /// `GET /payments/service-health` callers waiting for a window.
    pub health_waiting: usize,
    /// Payments stored.
    pub payments: usize,
}

/// One payment processor: its configuration, limiters and table of payments.
///
/// Build it with [`Emulator::new`] and run it with [`Emulator::serve`]; keep an
/// `Arc` to look at [`Emulator::stats`] or, with manual health windows, to call
/// [`Emulator::open_health_window`].
#[derive(Debug)]
pub struct Emulator {
    fee: Fee,
    /// Milliseconds slept by each `POST /payments` before answering.
    delay_ms: AtomicU32,
    /// When set, `POST /payments` answers 500 and stores nothing.
    failure: AtomicBool,
    /// The admin token (`X-Rinha-Token`); admin calls only, off the hot path.
    token: Mutex<String>,
    in_flight: InFlight,
    health: Windows,
    manual_health_windows: bool,
    /// The table. A `std::sync::Mutex`, not tokio's: every critical section is a hash
    /// lookup or insert (or a summary over one window) and none spans an `.await`, so
    /// the lock is never contended on the single-threaded runtime and an async mutex
    /// would only add overhead. `clippy::await_holding_lock` guards the rule.
    store: Mutex<Store>,
}

impl Emulator {
    pub fn new(config: Config) -> anyhow::Result<Arc<Emulator>> {
        let fee = Fee::from_f64(config.fee).map_err(anyhow::Error::msg)?;
        anyhow::ensure!(
            !config.health_window.is_zero(),
            "the health rate limit window must be longer than zero"
        );
        anyhow::ensure!(config.max_in_flight > 0, "max_in_flight must be at least 1");
        anyhow::ensure!(
            !config.token.is_empty(),
            "the admin token must not be empty"
        );
        Ok(Arc::new(Emulator {
            fee,
            delay_ms: AtomicU32::new(0),
            failure: AtomicBool::new(false),
            token: Mutex::new(config.token),
            in_flight: InFlight::new(config.max_in_flight, config.max_queued),
            health: Windows::new(config.health_window, config.health_waiters),
            manual_health_windows: config.manual_health_windows,
            store: Mutex::new(Store::default()),
        }))
    }

    /// Serves HTTP on `listener` until `shutdown` is cancelled. Work already past the
    /// concurrency limiter (a delayed payment) runs on in its own task and is dropped
    /// with the runtime.
    pub async fn serve(self: Arc<Self>, listener: Listener, shutdown: CancellationToken) {
        let clock = (!self.manual_health_windows).then(|| {
            let (em, stop) = (self.clone(), shutdown.clone());
            tokio::spawn(async move { em.health.run_clock(stop).await })
        });
        let limits = ServeLimits {
            max_body_bytes: MAX_BODY_BYTES,
            ..ServeLimits::default()
        };
        netio::serve(listener, limits, Served(self.clone()), shutdown).await;
        if let Some(clock) = clock {
            let _ = clock.await;
        }
    }

    /// Counters of the moment.
    pub fn stats(&self) -> Stats {
        Stats {
            in_flight: self.in_flight.in_flight(),
            queued: self.in_flight.queued(),
            health_waiting: self.health.waiting(),
            payments: self.store().len(),
        }
    }

    /// Opens the next health window now. Meant for tests that set
    /// `manual_health_windows`, to step the limiter deterministically.
    pub fn open_health_window(&self) {
        self.health.open_window();
    }

    fn store(&self) -> MutexGuard<'_, Store> {
        // Every update of the store completes before the guard drops and nothing in it
        // panics halfway, so a poisoned lock still holds a consistent table.
        self.store.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn token_matches(&self, req: &Request<'_>) -> bool {
        let token = self.token.lock().unwrap_or_else(|p| p.into_inner());
        req.header(TOKEN_HEADER)
            .is_some_and(|v| v == token.as_bytes())
    }

    async fn handle(self: &Arc<Self>, req: &Request<'_>) -> Response {
        let route = match route(req.method, req.path) {
            Ok(r) => r,
            Err(RouteError::NotFound) => {
                return netio::error(StatusCode::NOT_FOUND, "no such route");
            }
            Err(RouteError::MethodNotAllowed(allow)) => {
                return netio::error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed")
                    .with_header("allow", allow);
            }
        };
        if route.is_admin() && !self.token_matches(req) {
            return netio::error(
                StatusCode::UNAUTHORIZED,
                "missing or wrong X-Rinha-Token header",
            );
        }
        match route {
            Route::PostPayment => self.clone().post_payment(req.body).await,
            Route::Health => self.service_health().await,
            Route::GetPayment(id) => self.get_payment(&id),
            Route::Summary => self.summary(req.query),
            Route::SetToken => match parse_body(req.body, wire::parse_token) {
                Ok(t) => {
                    *self.token.lock().unwrap_or_else(|p| p.into_inner()) = t;
                    netio::empty(StatusCode::NO_CONTENT)
                }
                Err(e) => e.into_response(),
            },
            Route::SetDelay => match parse_body(req.body, wire::parse_delay) {
                Ok(ms) => {
                    let was = self.delay_ms.swap(ms, Ordering::Relaxed);
                    config_changed("delay", was, ms)
                }
                Err(e) => e.into_response(),
            },
            Route::SetFailure => match parse_body(req.body, wire::parse_failure) {
                Ok(on) => {
                    let was = self.failure.swap(on, Ordering::Relaxed);
                    config_changed("failure", was, on)
                }
                Err(e) => e.into_response(),
            },
            Route::Purge => {
                self.store().purge();
                netio::json(StatusCode::OK, r#"{"message":"All payments purged."}"#)
            }
        }
    }

    /// `POST /payments`, in the official order: the concurrency limiter; the body's
    /// validation (400); the delay, read as the request passes the limiter; the
    /// failure flag, read **after** the delay (the official `MaybeSimulateFailure`
    /// filter runs inside `MaybeSimulateDelay`); the insert.
    ///
    /// The body is read (by the server) before the limiter; it is parsed after, so a
    /// full limiter answers 429 whatever the body.
    ///
    /// Everything after the limiter runs in its own task holding the permit, so a
    /// client that disconnects during the delay does not cancel it: its payment is
    /// still stored, as the official one stores it. Without a delay there is no await
    /// point left to cancel at, so the work runs inline and skips the spawn.
    async fn post_payment(self: Arc<Self>, body: &[u8]) -> Response {
        let permit = match self.in_flight.acquire().await {
            Ok(p) => p,
            Err(Refused) => return too_many_requests(&self.health),
        };
        let payment = match Payment::parse(body) {
            Ok(p) => p,
            Err(e) => return BadInput(e).into_response(),
        };
        let delay = self.delay_ms.load(Ordering::Relaxed);
        if delay == 0 {
            return self.finish_payment(payment);
        }
        let work = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(u64::from(delay))).await;
            let answer = self.finish_payment(payment);
            drop(permit);
            answer
        });
        match work.await {
            Ok(answer) => answer,
            // Only when the runtime shuts down under it.
            Err(_) => netio::error(StatusCode::SERVICE_UNAVAILABLE, "shutting down"),
        }
    }

    fn finish_payment(&self, p: Payment) -> Response {
        if self.failure.load(Ordering::Relaxed) {
            return netio::error(StatusCode::INTERNAL_SERVER_ERROR, "simulated failure");
        }
        let stored = Stored {
            amount: p.amount,
            requested_at: p.requested_at,
        };
        match self.store().insert(p.correlation_id, stored) {
            Insert::Stored => netio::json(
                StatusCode::OK,
                r#"{"message":"payment processed successfully"}"#,
            ),
            Insert::Duplicate => netio::error(
                StatusCode::UNPROCESSABLE_ENTITY,
                "a payment with this correlationId is already stored",
            ),
        }
    }

    /// `GET /payments/service-health`, behind the window limiter. The answer reflects
    /// the configuration when the caller gets through, not when it arrived.
    async fn service_health(&self) -> Response {
        if self.health.acquire().await.is_err() {
            return too_many_requests(&self.health);
        }
        let body = format!(
            r#"{{"failing":{},"minResponseTime":{}}}"#,
            self.failure.load(Ordering::Relaxed),
            self.delay_ms.load(Ordering::Relaxed)
        );
        netio::json(StatusCode::OK, body)
    }

    fn get_payment(&self, id: &str) -> Response {
        let Some(id) = wire::parse_uuid(id) else {
            return netio::error(StatusCode::BAD_REQUEST, "the payment id must be a UUID");
        };
        match self.store().get(&id) {
            Some(p) => netio::json(
                StatusCode::OK,
                format!(
                    r#"{{"correlationId":"{}","amount":{},"requestedAt":"{}"}}"#,
                    id,
                    p.amount,
                    wire::format_timestamp(p.requested_at)
                ),
            ),
            None => netio::error(StatusCode::NOT_FOUND, "no payment with this correlationId"),
        }
    }

    fn summary(&self, query: &str) -> Response {
        let bounds = match SummaryBounds::parse(query) {
            Ok(b) => b,
            Err(e) => return BadInput(e).into_response(),
        };
        let t = self.store().totals(bounds.window());
        netio::json(
            StatusCode::OK,
            format!(
                r#"{{"totalRequests":{},"totalAmount":{},"totalFee":{},"feePerTransaction":{}}}"#,
                t.count,
                t.amount,
                self.fee.of(t.amount),
                self.fee
            ),
        )
    }
}

/// The server's side of the emulator.
struct Served(Arc<Emulator>);

impl Handler for Served {
    async fn call(&self, req: &Request<'_>) -> Response {
        self.0.handle(req).await
    }

    fn refusal(&self, refusal: Refusal) -> Response {
        match refusal {
            Refusal::BodyTooLarge { .. } => netio::error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body too large (at most 16 KiB)",
            ),
            other => other.response(),
        }
    }
}

/// A body that does not parse: 400 naming the field.
#[derive(Debug)]
struct BadInput(InputError);

impl BadInput {
    fn into_response(self) -> Response {
        netio::json(StatusCode::BAD_REQUEST, self.0.to_json())
    }
}

/// Parses a body with `parse`.
fn parse_body<T>(body: &[u8], parse: fn(&[u8]) -> Result<T, InputError>) -> Result<T, BadInput> {
    parse(body).map_err(BadInput)
}

/// The official rejection of both limiters: 429 with `Retry-After` set to the health
/// window in seconds (one `OnRejected` serves both).
fn too_many_requests(health: &Windows) -> Response {
    netio::error(
        StatusCode::TOO_MANY_REQUESTS,
        "too many requests, try again later",
    )
    .with_header("retry-after", health.retry_after_secs().to_string())
}

fn config_changed(
    config: &str,
    was: impl std::fmt::Display,
    is: impl std::fmt::Display,
) -> Response {
    netio::json(
        StatusCode::OK,
        format!(r#"{{"config":"{config}","was":{was},"is":{is}}}"#),
    )
}

/// What a request asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Route {
    PostPayment,
    Health,
    GetPayment(String),
    Summary,
    SetToken,
    SetDelay,
    SetFailure,
    Purge,
}

impl Route {
    fn is_admin(&self) -> bool {
        matches!(
            self,
            Route::Summary | Route::SetToken | Route::SetDelay | Route::SetFailure | Route::Purge
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RouteError {
    NotFound,
    /// The path exists with other methods, listed for the `Allow` header.
    MethodNotAllowed(&'static str),
}

fn route(method: &Method, path: &str) -> Result<Route, RouteError> {
    let (allow, route) = match path {
        "/payments" => ("POST", Route::PostPayment),
        "/payments/service-health" => ("GET", Route::Health),
        "/admin/payments-summary" => ("GET", Route::Summary),
        "/admin/configurations/token" => ("PUT", Route::SetToken),
        "/admin/configurations/delay" => ("PUT", Route::SetDelay),
        "/admin/configurations/failure" => ("PUT", Route::SetFailure),
        "/admin/purge-payments" => ("POST", Route::Purge),
        _ => match path.strip_prefix("/payments/") {
            Some(id) if !id.is_empty() && !id.contains('/') => {
                ("GET", Route::GetPayment(id.to_string()))
            }
            _ => return Err(RouteError::NotFound),
        },
    };
    if method.as_str() == allow {
        Ok(route)
    } else {
        Err(RouteError::MethodNotAllowed(allow))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_every_endpoint_and_refuses_the_rest() {
        let ok = [
            (Method::POST, "/payments", Route::PostPayment),
            (Method::GET, "/payments/service-health", Route::Health),
            (
                Method::GET,
                "/payments/abc",
                Route::GetPayment("abc".into()),
            ),
            (Method::GET, "/admin/payments-summary", Route::Summary),
            (Method::PUT, "/admin/configurations/token", Route::SetToken),
            (Method::PUT, "/admin/configurations/delay", Route::SetDelay),
            (
                Method::PUT,
                "/admin/configurations/failure",
                Route::SetFailure,
            ),
            (Method::POST, "/admin/purge-payments", Route::Purge),
        ];
        for (m, p, r) in ok {
            assert_eq!(route(&m, p), Ok(r), "{m} {p}");
        }
        let bad = [
            (
                Method::GET,
                "/payments",
                RouteError::MethodNotAllowed("POST"),
            ),
            (
                Method::POST,
                "/payments/service-health",
                RouteError::MethodNotAllowed("GET"),
            ),
            (
                Method::DELETE,
                "/payments/abc",
                RouteError::MethodNotAllowed("GET"),
            ),
            (
                Method::GET,
                "/admin/purge-payments",
                RouteError::MethodNotAllowed("POST"),
            ),
            (
                Method::POST,
                "/admin/configurations/delay",
                RouteError::MethodNotAllowed("PUT"),
            ),
            (Method::GET, "/", RouteError::NotFound),
            (Method::GET, "/payments/", RouteError::NotFound),
            (Method::GET, "/payments/a/b", RouteError::NotFound),
            (Method::POST, "/purge-payments", RouteError::NotFound),
            (Method::GET, "/payments-summary", RouteError::NotFound),
        ];
        for (m, p, e) in bad {
            assert_eq!(route(&m, p), Err(e), "{m} {p}");
        }
    }
}
