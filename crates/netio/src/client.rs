//! A small HTTP/1.1 client for one origin at a time ([`Origin`]): keep-alive connections
//! in a pool, each request written in one `write`, each answer read into the
//! connection's own buffer and parsed by `httparse` (framed by `Content-Length`,
//! chunked, or the end of the connection). Made for the worker's calls to the
//! processors: small JSON requests and answers, a few hundred in flight.
//!
//! What a failure means is kept apart, because for a payment it is the difference
//! between "not sent" and "fate unknown": [`CallError::Connect`] and
//! [`CallError::ConnectTimeout`] mean nothing reached the server; every other error
//! happened once a connection was there, and the server may have acted on the request.
//!
//! A pooled connection is checked before it is reused: one the server closed (its
//! socket reads end of file) or one idle for longer than the pool keeps them is
//! dropped, never written to.

use std::io::{self, Write as _};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Largest answer head read.
const MAX_HEAD: usize = 16 * 1024;
/// Largest answer body read (a processor's answers are about 100 bytes).
const MAX_BODY: usize = 1024 * 1024;
/// Header fields of an answer, at most.
const MAX_HEADERS: usize = 32;

/// Why a call got no answer.
#[derive(Debug)]
pub enum CallError {
    /// The connection could not be made: nothing was sent.
    Connect(io::Error),
    /// The connection was not made in time: nothing was sent.
    ConnectTimeout,
    /// The connection failed while the request was written or its answer read.
    Lost(io::Error),
    /// The answer is not one this client reads (the request did reach the server).
    BadAnswer(&'static str),
}

impl CallError {
    /// Nothing reached the server.
    pub fn is_connect(&self) -> bool {
        matches!(self, CallError::Connect(_) | CallError::ConnectTimeout)
    }
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::Connect(e) => write!(f, "connecting failed: {e}"),
            CallError::ConnectTimeout => write!(f, "connecting timed out"),
            CallError::Lost(e) => write!(f, "the connection failed during the call: {e}"),
            CallError::BadAnswer(why) => write!(f, "unreadable answer: {why}"),
        }
    }
}

impl std::error::Error for CallError {}

/// An answer: its status, `Retry-After` in seconds when present, and its body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    pub retry_after: Option<u64>,
    pub body: Vec<u8>,
}

/// How an [`Origin`] connects and how long it keeps idle connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolConfig {
    pub connect_timeout: Duration,
    /// Idle connections kept at most.
    pub max_idle: usize,
    /// An idle connection older than this is closed rather than reused (servers close
    /// idle connections on their own schedule; reusing one they just closed would turn
    /// a request into an unknown outcome).
    pub idle_timeout: Duration,
}

/// One server (`http://HOST:PORT`) and its pool of keep-alive connections. Cheap to
/// clone; clones share the pool.
#[derive(Clone)]
pub struct Origin {
    inner: Arc<Inner>,
}

struct Inner {
    /// `HOST:PORT`: what is connected to, and the `Host` header.
    authority: String,
    cfg: PoolConfig,
    idle: Mutex<Vec<Conn>>,
}

/// A connection and its buffers, reused from request to request.
struct Conn {
    stream: TcpStream,
    out: Vec<u8>,
    buf: Vec<u8>,
    idle_since: Instant,
}

impl Origin {
    /// `base` is `http://HOST[:PORT]` (a trailing `/` allowed); port 80 when absent.
    pub fn new(base: &str, cfg: PoolConfig) -> Result<Origin, String> {
        let uri: http::Uri = base
            .parse()
            .map_err(|e| format!("`{base}` is not a URL ({e})"))?;
        let host = uri.host().filter(|h| !h.is_empty());
        match (uri.scheme_str(), host) {
            (Some("http"), Some(host))
                if matches!(uri.path(), "" | "/") && uri.query().is_none() =>
            {
                Ok(Origin {
                    inner: Arc::new(Inner {
                        authority: format!("{host}:{}", uri.port_u16().unwrap_or(80)),
                        cfg,
                        idle: Mutex::new(Vec::new()),
                    }),
                })
            }
            _ => Err(format!("`{base}` is not http://HOST[:PORT]")),
        }
    }

    /// `HOST:PORT`.
    pub fn authority(&self) -> &str {
        &self.inner.authority
    }

    /// Idle connections in the pool now.
    pub fn idle_connections(&self) -> usize {
        self.idle().len()
    }

    /// One request, `body` (with its content type) or none; no timeout of its own
    /// beyond the connect timeout: the caller bounds the call.
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<(&str, &[u8])>,
    ) -> Result<Answer, CallError> {
        let mut conn = match self.checkout() {
            Some(c) => c,
            None => self.connect().await?,
        };
        conn.out.clear();
        // Writing into a Vec cannot fail.
        let _ = write!(
            conn.out,
            "{method} {path} HTTP/1.1\r\nHost: {}\r\n",
            self.authority()
        );
        if let Some((content_type, bytes)) = body {
            let _ = write!(
                conn.out,
                "Content-Type: {content_type}\r\nContent-Length: {}\r\n\r\n",
                bytes.len()
            );
            conn.out.extend_from_slice(bytes);
        } else {
            conn.out.extend_from_slice(b"\r\n");
        }
        let Conn { stream, out, .. } = &mut conn;
        stream.write_all(out).await.map_err(CallError::Lost)?;
        let (answer, reusable) = read_answer(&mut conn, method == "HEAD").await?;
        if reusable {
            self.checkin(conn);
        }
        Ok(answer)
    }

    fn idle(&self) -> std::sync::MutexGuard<'_, Vec<Conn>> {
        self.inner.idle.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The most recently used idle connection that is still good, if any.
    fn checkout(&self) -> Option<Conn> {
        let now = Instant::now();
        let mut idle = self.idle();
        while let Some(c) = idle.pop() {
            if now.duration_since(c.idle_since) < self.inner.cfg.idle_timeout && still_open(&c) {
                return Some(c);
            }
        }
        None
    }

    fn checkin(&self, mut conn: Conn) {
        let mut idle = self.idle();
        if idle.len() < self.inner.cfg.max_idle {
            conn.idle_since = Instant::now();
            idle.push(conn);
        }
    }

    async fn connect(&self) -> Result<Conn, CallError> {
        let connecting = TcpStream::connect(self.authority());
        let stream = tokio::time::timeout(self.inner.cfg.connect_timeout, connecting)
            .await
            .map_err(|_| CallError::ConnectTimeout)?
            .map_err(CallError::Connect)?;
        // Requests are a few hundred bytes: Nagle would hold them back.
        let _ = stream.set_nodelay(true);
        let keepalive = socket2::TcpKeepalive::new().with_time(Duration::from_secs(30));
        let _ = socket2::SockRef::from(&stream).set_tcp_keepalive(&keepalive);
        Ok(Conn {
            stream,
            out: Vec::with_capacity(256),
            buf: Vec::with_capacity(512),
            idle_since: Instant::now(),
        })
    }
}

/// An idle connection with nothing to read is still open: end of file, an error or
/// unexpected bytes mean the server is done with it. No system call unless the socket
/// was reported readable since the last read that came back empty.
fn still_open(c: &Conn) -> bool {
    let mut probe = [0u8; 1];
    matches!(c.stream.try_read(&mut probe), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
}

/// What the head of an answer says about what follows.
struct Head {
    len: usize,
    status: u16,
    retry_after: Option<u64>,
    framing: Framing,
    keep_alive: bool,
}

enum Framing {
    None,
    Length(usize),
    Chunked,
    UntilClose,
}

/// Reads one answer; says whether the connection can serve another request.
async fn read_answer(conn: &mut Conn, head_only: bool) -> Result<(Answer, bool), CallError> {
    conn.buf.clear();
    let head = loop {
        if let Some(h) = parse_head(&conn.buf, head_only)? {
            break h;
        }
        if conn.buf.len() >= MAX_HEAD {
            return Err(CallError::BadAnswer("the answer's head is too large"));
        }
        fill(conn).await?;
    };
    let (body, reusable) = match head.framing {
        Framing::None => (Vec::new(), conn.buf.len() == head.len),
        Framing::Length(n) => {
            while conn.buf.len() < head.len + n {
                fill(conn).await?;
            }
            let body = conn.buf[head.len..head.len + n].to_vec();
            (body, conn.buf.len() == head.len + n)
        }
        Framing::Chunked => loop {
            match crate::chunked::scan(&conn.buf[head.len..], MAX_BODY) {
                Ok(Some(s)) => {
                    let end = head.len + s.consumed;
                    let body_len = crate::chunked::compact(&mut conn.buf[head.len..end]);
                    let body = conn.buf[head.len..head.len + body_len].to_vec();
                    break (body, conn.buf.len() == end);
                }
                Ok(None) => fill(conn).await?,
                Err(_) => return Err(CallError::BadAnswer("malformed chunked body")),
            }
        },
        Framing::UntilClose => loop {
            if conn.buf.len() > head.len + MAX_BODY {
                return Err(CallError::BadAnswer("the answer's body is too large"));
            }
            conn.buf.reserve(4096);
            match conn.stream.read_buf(&mut conn.buf).await {
                Ok(0) => break (conn.buf[head.len..].to_vec(), false),
                Ok(_) => {}
                Err(e) => return Err(CallError::Lost(e)),
            }
        },
    };
    let answer = Answer {
        status: head.status,
        retry_after: head.retry_after,
        body,
    };
    Ok((answer, reusable && head.keep_alive))
}

/// Reads more of the answer; the end of the connection before its end is an error.
async fn fill(conn: &mut Conn) -> Result<(), CallError> {
    if conn.buf.len() > MAX_HEAD + MAX_BODY {
        return Err(CallError::BadAnswer("the answer is too large"));
    }
    conn.buf.reserve(1024);
    match conn.stream.read_buf(&mut conn.buf).await {
        Ok(0) => Err(CallError::Lost(io::ErrorKind::UnexpectedEof.into())),
        Ok(_) => Ok(()),
        Err(e) => Err(CallError::Lost(e)),
    }
}

/// The answer's head, once `buf` holds all of it.
fn parse_head(buf: &[u8], head_only: bool) -> Result<Option<Head>, CallError> {
    let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut r = httparse::Response::new(&mut fields);
    let len = match r.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(_) => return Err(CallError::BadAnswer("not an HTTP/1.x answer")),
    };
    let status = r.code.unwrap_or(0);
    if (100..200).contains(&status) {
        // Nothing here sends `Expect: 100-continue`: an interim answer is unexpected.
        return Err(CallError::BadAnswer("an interim (1xx) answer"));
    }
    let mut length = None;
    let mut chunked = false;
    let mut close = r.version != Some(1);
    let mut retry_after = None;
    for h in r.headers.iter() {
        let value = std::str::from_utf8(h.value).unwrap_or("").trim();
        if h.name.eq_ignore_ascii_case("content-length") {
            let n = value
                .parse::<usize>()
                .map_err(|_| CallError::BadAnswer("a bad Content-Length"))?;
            if length.is_some_and(|m| m != n) || n > MAX_BODY {
                return Err(CallError::BadAnswer("a bad Content-Length"));
            }
            length = Some(n);
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value.to_ascii_lowercase().ends_with("chunked");
        } else if h.name.eq_ignore_ascii_case("connection") {
            close |= value
                .to_ascii_lowercase()
                .split(',')
                .any(|t| t.trim() == "close");
        } else if h.name.eq_ignore_ascii_case("retry-after") {
            retry_after = value.parse().ok();
        }
    }
    let framing = if head_only || status == 204 || status == 304 {
        Framing::None
    } else if chunked {
        Framing::Chunked
    } else if let Some(n) = length {
        Framing::Length(n)
    } else {
        close = true;
        Framing::UntilClose
    };
    Ok(Some(Head {
        len,
        status,
        retry_after,
        framing,
        keep_alive: !close,
    }))
}

#[cfg(test)]
#[path = "client_tests.rs"]
mod tests;
