//! Waiting for a backend given with `--backend` to answer before the test, as the
//! official runner (`run-tests-final.sh`) waits before starting k6: `GET
//! /payments-summary` until it answers with a status below 400 (`curl -f`), each try
//! within 3 s (`--max-time 3`), up to 15 tries 5 s apart (both settable). The runner
//! gives up ("Teste abortado") after the last try; so does the bench. Nothing here is
//! recorded: these requests are not part of the test.

use crate::http::{Conn, Target};
use crate::recorder::{Kind, NO_ANSWER};
use http::Method;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Tries of the official runner (`max_attempts=15`).
pub const TRIES: u32 = 15;

/// Pause between tries of the official runner (`sleep 5`).
pub const RETRY_INTERVAL: Duration = Duration::from_secs(5);

/// Timeout of one try (`curl --max-time 3`).
pub const TRY_TIMEOUT: Duration = Duration::from_secs(3);

/// The path the official runner polls.
const READY_PATH: &str = "/payments-summary";

/// How long to wait for the backend.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Patience {
    /// Tries in all (at least 1).
    pub tries: u32,
    /// Pause after a failed try.
    pub interval: Duration,
}

/// The backend never answered: the test is aborted before it starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NeverReady {
    pub url: String,
    pub tries: u32,
    /// What the last try got.
    pub last: String,
}

impl fmt::Display for NeverReady {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the backend at {} did not answer GET {READY_PATH} in {} tries (last: {}); the official runner aborts the test here",
            self.url, self.tries, self.last
        )
    }
}

impl std::error::Error for NeverReady {}

/// What a try got, in words.
fn describe(status: u16) -> String {
    if status == NO_ANSWER {
        "no answer".to_string()
    } else {
        format!("HTTP {status}")
    }
}

/// Whether a try's status means ready (`curl -f` fails on 400 and above).
fn answered(status: u16) -> bool {
    status != NO_ANSWER && status < 400
}

/// Waits until `backend` answers, saying so on stderr after each failed try. `Ok` with
/// the number of tries it took; [`NeverReady`] after the last; an error on `cancel`.
pub async fn wait_for_backend(
    backend: &Arc<Target>,
    patience: Patience,
    cancel: &CancellationToken,
) -> anyhow::Result<u32> {
    let tries = patience.tries.max(1);
    let mut conn = Conn::new(backend.clone(), None, TRY_TIMEOUT);
    let mut last = String::new();
    for attempt in 1..=tries {
        let status = tokio::select! {
            biased;
            _ = cancel.cancelled() => return Err(crate::exit::Interrupted.into()),
            r = conn.request(Kind::Admin, Method::GET, READY_PATH, None, None) => r.status,
        };
        if answered(status) {
            if attempt > 1 {
                eprintln!("payroute bench: the backend answered at try {attempt}/{tries}");
            }
            return Ok(attempt);
        }
        last = describe(status);
        if attempt < tries {
            eprintln!(
                "payroute bench: waiting for the backend at {}: try {attempt}/{tries}: {last}; next in {:.1} s",
                backend.url,
                patience.interval.as_secs_f64()
            );
            tokio::select! {
                _ = tokio::time::sleep(patience.interval) => {}
                _ = cancel.cancelled() => return Err(crate::exit::Interrupted.into()),
            }
        }
    }
    Err(NeverReady {
        url: backend.url.clone(),
        tries,
        last,
    }
    .into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn quick(tries: u32) -> Patience {
        Patience {
            tries,
            interval: Duration::from_millis(10),
        }
    }

    #[test]
    fn readiness_is_curl_f() {
        assert!(answered(200) && answered(204) && answered(302));
        assert!(!answered(404) && !answered(500) && !answered(NO_ANSWER));
    }

    #[tokio::test]
    async fn gives_up_after_the_last_try() {
        // A port that was free a moment ago: connections are refused.
        let port = crate::topology::free_port().unwrap();
        let target = Arc::new(Target::parse(&format!("http://127.0.0.1:{port}")).unwrap());
        let e = wait_for_backend(&target, quick(3), &CancellationToken::new())
            .await
            .unwrap_err();
        let never = e.downcast_ref::<NeverReady>().unwrap();
        assert_eq!(never.tries, 3);
        assert_eq!(never.last, "no answer");
    }

    #[tokio::test]
    async fn waits_until_the_backend_answers() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        // First connection: 503; second: 200.
        tokio::spawn(async move {
            for status in ["503 Service Unavailable", "200 OK"] {
                let (mut s, _) = listener.accept().await.unwrap();
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf).await;
                let answer = format!(
                    "HTTP/1.1 {status}\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{{}}"
                );
                s.write_all(answer.as_bytes()).await.unwrap();
            }
        });
        let target = Arc::new(Target::parse(&format!("http://{addr}")).unwrap());
        let tries = wait_for_backend(&target, quick(5), &CancellationToken::new())
            .await
            .unwrap();
        assert_eq!(tries, 2);
    }

    #[tokio::test]
    async fn stops_when_interrupted() {
        let port = crate::topology::free_port().unwrap();
        let target = Arc::new(Target::parse(&format!("http://127.0.0.1:{port}")).unwrap());
        let cancel = CancellationToken::new();
        cancel.cancel();
        let e = wait_for_backend(&target, quick(100), &cancel)
            .await
            .unwrap_err();
        assert!(e.is::<crate::exit::Interrupted>());
    }
}
