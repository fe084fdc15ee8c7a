//! A minimal HTTP/1.1 client with k6's measuring habits: one keep-alive connection
//! per virtual user, TCP_NODELAY, a 1.5 s timeout over the whole request (connection
//! included), and a duration taken like k6's `http_req_duration`: from just before
//! sending the request to the end of the response body, connection setup excluded.
//!
//! Raw `hyper::client::conn::http1` handles rather than a pooled client: a pool
//! would share connections between VUs, which k6 does not do.

use crate::recorder::{Kind, Recorder, Sample, NO_ANSWER};
use anyhow::{bail, Context};
use bytes::Bytes;
use http::{header, HeaderValue, Method, Request};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpStream;

/// Where requests go: an `http://host:port` URL, optionally with a path prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// `host:port`, for connecting.
    pub authority: String,
    host_header: HeaderValue,
    /// Path prefix without a trailing slash ("" for none).
    base_path: String,
    /// The URL as given, for messages.
    pub url: String,
}

impl Target {
    /// Parses `http://HOST[:PORT][/PREFIX]`. Only plain HTTP: the challenge's
    /// backends and processors speak nothing else.
    pub fn parse(url: &str) -> anyhow::Result<Target> {
        let uri: http::Uri = url
            .parse()
            .with_context(|| format!("`{url}` is not a URL"))?;
        match uri.scheme_str() {
            Some("http") => {}
            Some(other) => bail!("`{url}`: only http:// is supported, not {other}://"),
            None => bail!("`{url}` needs a scheme, as in http://127.0.0.1:9999"),
        }
        let Some(auth) = uri.authority() else {
            bail!("`{url}` has no host");
        };
        let port = auth.port_u16().unwrap_or(80);
        let authority = format!("{}:{port}", auth.host());
        let host_header = HeaderValue::from_str(auth.as_str()).context("host header")?;
        let base_path = uri.path().trim_end_matches('/').to_string();
        Ok(Target {
            authority,
            host_header,
            base_path,
            url: url.trim_end_matches('/').to_string(),
        })
    }
}

/// The answer to one request.
#[derive(Debug, Clone)]
pub struct Reply {
    /// HTTP status; [`NO_ANSWER`] when there was none (timeout, refused, reset), as
    /// k6 reports it.
    pub status: u16,
    pub body: Bytes,
    /// `http_req_duration`; `None` when the request was never sent (no connection).
    pub duration: Option<Duration>,
}

impl Reply {
    fn failed(duration: Option<Duration>) -> Reply {
        Reply {
            status: NO_ANSWER,
            body: Bytes::new(),
            duration,
        }
    }

    /// What the recorder keeps of it.
    pub fn sample(&self) -> Sample {
        Sample {
            status: self.status,
            duration: self.duration,
        }
    }
}

/// One virtual user's connection to one target. Reconnects after any error or
/// timeout (k6 drops a connection whose request timed out).
pub struct Conn {
    target: Arc<Target>,
    sender: Option<SendRequest<Full<Bytes>>>,
    recorder: Option<Arc<Recorder>>,
    timeout: Duration,
}

impl Conn {
    /// `recorder`: where durations go; `None` for requests that are not part of the
    /// official test (the report's `/health` sampling).
    pub fn new(target: Arc<Target>, recorder: Option<Arc<Recorder>>, timeout: Duration) -> Conn {
        Conn {
            target,
            sender: None,
            recorder,
            timeout,
        }
    }

    async fn connect(&mut self, deadline: Instant) -> anyhow::Result<()> {
        let remaining = deadline.saturating_duration_since(Instant::now());
        let stream = tokio::time::timeout(remaining, TcpStream::connect(&self.target.authority))
            .await
            .context("connect timed out")??;
        // Requests and answers are tiny; Nagle would hold them back.
        stream.set_nodelay(true)?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        self.sender = Some(sender);
        Ok(())
    }

    /// Sends one request and records its duration under `kind`. `token` goes into
    /// `X-Rinha-Token`. Never fails: failures are status 0, as in k6.
    pub async fn request(
        &mut self,
        kind: Kind,
        method: Method,
        path_and_query: &str,
        body: Option<Bytes>,
        token: Option<&str>,
    ) -> Reply {
        let deadline = Instant::now() + self.timeout;
        let reply = self
            .request_inner(method, path_and_query, body, token, deadline)
            .await;
        if let Some(r) = &self.recorder {
            r.record(kind, reply.sample());
        }
        reply
    }

    async fn request_inner(
        &mut self,
        method: Method,
        path_and_query: &str,
        body: Option<Bytes>,
        token: Option<&str>,
        deadline: Instant,
    ) -> Reply {
        let uri = format!("{}{}", self.target.base_path, path_and_query);
        let host = self.target.host_header.clone();
        let build = || {
            let mut b = Request::builder()
                .method(method.clone())
                .uri(uri.as_str())
                .header(header::HOST, host.clone())
                .header(header::CONTENT_TYPE, "application/json");
            if let Some(t) = token {
                b = b.header("X-Rinha-Token", t);
            }
            b.body(Full::new(body.clone().unwrap_or_default()))
        };
        // A kept-alive connection may have been closed by the server while idle; the
        // request then fails before any answer. Go's client (k6) retries such a
        // request once on a new connection; so do we, without counting the first try.
        for attempt in 0..2 {
            let reused = self.sender.as_ref().is_some_and(|s| !s.is_closed());
            if !reused {
                self.sender = None;
                if self.connect(deadline).await.is_err() {
                    return Reply::failed(None);
                }
            }
            let Ok(req) = build() else {
                return Reply::failed(None);
            };
            let Some(sender) = self.sender.as_mut() else {
                return Reply::failed(None);
            };
            let remaining = deadline.saturating_duration_since(Instant::now());
            let started = Instant::now();
            let exchange = async {
                sender.ready().await?;
                let resp = sender.send_request(req).await?;
                let status = resp.status().as_u16();
                let body = resp.into_body().collect().await?.to_bytes();
                Ok::<_, hyper::Error>((status, body))
            };
            match tokio::time::timeout(remaining, exchange).await {
                Ok(Ok((status, body))) => {
                    return Reply {
                        status,
                        body,
                        duration: Some(started.elapsed()),
                    }
                }
                Ok(Err(e)) => {
                    self.sender = None;
                    let stale = e.is_closed() || e.is_canceled() || e.is_incomplete_message();
                    if reused && stale && attempt == 0 && Instant::now() < deadline {
                        continue;
                    }
                    return Reply::failed(Some(started.elapsed()));
                }
                Err(_) => {
                    // Timed out: drop the connection, as k6 does.
                    self.sender = None;
                    return Reply::failed(Some(started.elapsed()));
                }
            }
        }
        Reply::failed(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_targets() {
        let t = Target::parse("http://127.0.0.1:9999").unwrap();
        assert_eq!(t.authority, "127.0.0.1:9999");
        assert_eq!(t.base_path, "");
        let t = Target::parse("http://localhost/api/").unwrap();
        assert_eq!(t.authority, "localhost:80");
        assert_eq!(t.base_path, "/api");
        assert_eq!(t.url, "http://localhost/api");
        assert!(Target::parse("https://x").is_err());
        assert!(Target::parse("127.0.0.1:9999").is_err());
    }
}
