//! HTTP calls to the processors, classified into what they mean for a payment.
//!
//! One pool of keep-alive connections per processor (`netio::client::Origin`): each
//! request in flight holds its own connection (HTTP/1.1 has no multiplexing), so a
//! pool grows to the number of payments in flight and stays there.

use crate::engine::{HealthReport, LookupResult, SendResult, StoredCopy};
use http::StatusCode;
use model::{Cents, Micros, Processor};
use netio::client::{Answer, Origin, PoolConfig};
use std::sync::Arc;
use std::time::Duration;
use uuid::Uuid;

/// Timeouts of processor calls.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientConfig {
    /// A payment request without an answer after this long has an unknown fate. Longer
    /// than any delay the official tests configure (5 s), so a slow processor answers
    /// rather than leaving the payment in doubt.
    pub request_timeout: Duration,
    /// Connecting longer than this counts as "not sent" (nothing reached the server).
    pub connect_timeout: Duration,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            request_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(1),
        }
    }
}

/// As many idle connections as payments can be in flight, so a burst never pays for
/// new connections twice; closed after 30 s unused (the official processors keep idle
/// connections longer than that).
const POOL: PoolConfig = PoolConfig {
    connect_timeout: Duration::from_secs(1),
    max_idle: 1024,
    idle_timeout: Duration::from_secs(30),
};

#[derive(Clone)]
pub struct ProcessorClient {
    /// Each processor's pool, by [`Processor::index`].
    origins: Arc<[Origin; 2]>,
    cfg: ClientConfig,
}

/// The answer of a health poll.
#[derive(Debug)]
pub enum HealthPoll {
    Report(HealthReport),
    /// 429: come back after this long.
    RetryAfter(Duration),
    Error(HealthError),
}

/// Why a GET to a processor gave no answer.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error("{0}")]
    Call(#[from] netio::client::CallError),
    #[error("timed out")]
    Timeout,
}

/// Why a health poll told nothing.
#[derive(Debug, thiserror::Error)]
pub enum HealthError {
    #[error(transparent)]
    Call(#[from] CallError),
    #[error("health answered {status}: {body}")]
    BadBody { status: StatusCode, body: String },
}

impl ProcessorClient {
    /// A client for the processors at these base URLs (`http://HOST[:PORT]`), default
    /// first.
    pub fn new(cfg: ClientConfig, bases: &[String; 2]) -> Result<ProcessorClient, String> {
        let pool = PoolConfig {
            connect_timeout: cfg.connect_timeout,
            ..POOL
        };
        let origins = [Origin::new(&bases[0], pool)?, Origin::new(&bases[1], pool)?];
        Ok(ProcessorClient {
            origins: Arc::new(origins),
            cfg,
        })
    }

    /// `POST /payments`.
    pub async fn send(
        &self,
        to: Processor,
        id: Uuid,
        amount: Cents,
        requested_at: Micros,
    ) -> SendResult {
        let mut ts = [0u8; 24];
        requested_at.write_millis(&mut ts);
        let body = format!(
            r#"{{"correlationId":"{}","amount":{},"requestedAt":"{}"}}"#,
            id.hyphenated(),
            amount,
            std::str::from_utf8(&ts).unwrap_or_default()
        );
        let call = self.origins[to.index()].call(
            "POST",
            "/payments",
            Some(("application/json", body.as_bytes())),
        );
        match tokio::time::timeout(self.cfg.request_timeout, call).await {
            Ok(Ok(answer)) => classify(answer.status),
            Ok(Err(e)) if e.is_connect() => SendResult::NotSent,
            Ok(Err(e)) => {
                tracing::debug!("payment request lost after sending: {e}");
                SendResult::Unknown
            }
            Err(_) => SendResult::Unknown,
        }
    }

    /// `GET /payments/{id}`.
    pub async fn lookup(&self, at: Processor, id: Uuid) -> LookupResult {
        match self
            .get(at, &format!("/payments/{}", id.hyphenated()))
            .await
        {
            Ok(Answer {
                status: 200, body, ..
            }) => match parse_copy(&body) {
                Some(copy) => LookupResult::Found(copy),
                None => {
                    tracing::warn!(
                        "unreadable payment from a processor: {}",
                        String::from_utf8_lossy(&body[..body.len().min(200)])
                    );
                    LookupResult::Error
                }
            },
            Ok(Answer { status: 404, .. }) => LookupResult::NotFound,
            _ => LookupResult::Error,
        }
    }

    /// `GET /payments/service-health`.
    pub async fn health(&self, of: Processor) -> HealthPoll {
        match self.get(of, "/payments/service-health").await {
            Ok(Answer {
                status: 429,
                retry_after,
                ..
            }) => {
                // The limiter's window is 5 s; an absent or absurd header means that.
                let secs = retry_after.filter(|s| (1..=60).contains(s)).unwrap_or(5);
                HealthPoll::RetryAfter(Duration::from_secs(secs))
            }
            // One revision of the official processor answers 503 with the same body
            // while failing: the body is what counts.
            Ok(Answer { status, body, .. }) => match parse_health(&body) {
                Some(r) => HealthPoll::Report(r),
                None => HealthPoll::Error(HealthError::BadBody {
                    status: StatusCode::from_u16(status)
                        .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                    body: String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned(),
                }),
            },
            Err(e) => HealthPoll::Error(e.into()),
        }
    }

    /// A GET of `path` on that processor, bounded by the request timeout.
    async fn get(&self, at: Processor, path: &str) -> Result<Answer, CallError> {
        let call = self.origins[at.index()].call("GET", path, None);
        Ok(tokio::time::timeout(self.cfg.request_timeout, call)
            .await
            .map_err(|_| CallError::Timeout)??)
    }
}

/// What a processor's status code means for the payment.
pub fn classify(status: u16) -> SendResult {
    match status {
        200..=299 => SendResult::Stored,
        422 => SendResult::AlreadyStored,
        429 => SendResult::Throttled,
        // The server gave up waiting for the request: nothing stored, worth a retry.
        408 => SendResult::Failed,
        // Any other 4XX: the processor refuses this payment as it is; the same request
        // again gets the same answer.
        400..=499 => SendResult::Rejected,
        // 500 by the official processor's definition stores nothing; so does any
        // other answer (5XX, or a 1XX/3XX a processor should never send).
        _ => SendResult::Failed,
    }
}

/// The processor's copy of a payment: `{"correlationId", "amount", "requestedAt"}`.
fn parse_copy(body: &[u8]) -> Option<StoredCopy> {
    #[derive(serde::Deserialize)]
    struct Copy<'a> {
        #[serde(borrow)]
        amount: &'a serde_json::value::RawValue,
        #[serde(rename = "requestedAt")]
        requested_at: String,
    }
    let c: Copy<'_> = serde_json::from_slice(body).ok()?;
    Some(StoredCopy {
        amount: model::Cents::parse_json_number(c.amount.get()).ok()?,
        requested_at: model::Micros::parse(&c.requested_at).ok()?,
    })
}

fn parse_health(body: &[u8]) -> Option<HealthReport> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    Some(HealthReport {
        failing: v.get("failing")?.as_bool()?,
        min_response_time_ms: v.get("minResponseTime")?.as_u64()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_statuses() {
        let cases = [
            (200, SendResult::Stored),
            (201, SendResult::Stored),
            (422, SendResult::AlreadyStored),
            (429, SendResult::Throttled),
            (500, SendResult::Failed),
            (503, SendResult::Failed),
            (400, SendResult::Rejected),
            (404, SendResult::Rejected),
            (408, SendResult::Failed),
            (302, SendResult::Failed),
        ];
        for (code, want) in cases {
            assert_eq!(classify(code), want, "{code}");
        }
    }

    #[test]
    fn reads_a_processors_copy() {
        let body = br#"{"correlationId":"4a7901b8-7d26-4d9d-aa19-4dc1c7cf60b3","amount":19.9,"requestedAt":"2025-07-10T12:34:56.789Z"}"#;
        assert_eq!(
            parse_copy(body),
            Some(StoredCopy {
                amount: model::Cents(1990),
                requested_at: model::Micros::parse("2025-07-10T12:34:56.789Z").unwrap(),
            })
        );
        assert_eq!(parse_copy(br#"{"amount":"x","requestedAt":"2025"}"#), None);
        assert_eq!(parse_copy(b"{}"), None);
    }

    #[test]
    fn parses_health() {
        assert_eq!(
            parse_health(br#"{"failing":true,"minResponseTime":150}"#),
            Some(HealthReport {
                failing: true,
                min_response_time_ms: 150
            })
        );
        assert_eq!(parse_health(b"{}"), None);
        assert_eq!(parse_health(b"nope"), None);
    }
}
