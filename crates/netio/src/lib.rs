//! Sockets for payroute's HTTP servers: a listen address that is either TCP or a Unix
//! socket, binding with `SO_REUSEPORT` (so two api processes can share :9999), and one
//! hyper HTTP/1.1 keep-alive serving loop with connection and header limits.
//!
//! The pieces of a hand-written server that will replace hyper's, pure for now:
//! [`request`] (the head, parsed by `httparse`, and the body's framing), [`chunked`]
//! bodies, [`response`] encoding and the [`date`] field; and the connection cap a
//! process's memory limit allows ([`memory`]).
//!
//! Architecture invariant: nothing here knows about payments; it moves bytes and
//! enforces limits.

pub mod chunked;
pub mod date;
pub mod memory;
pub mod request;
pub mod response;

use bytes::Bytes;
use http::{header, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::fmt;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::Semaphore;
pub use tokio_util::sync::CancellationToken;

pub type Body = Full<Bytes>;

/// Where a server listens: `HOST:PORT`, `:PORT` (all interfaces) or `unix:PATH`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenAddr {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

impl FromStr for ListenAddr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Some(path) = s.strip_prefix("unix:") {
            if path.is_empty() {
                return Err("unix: needs a path, as in unix:/run/payroute/api1.sock".into());
            }
            return Ok(ListenAddr::Unix(PathBuf::from(path)));
        }
        let s2 = if s.starts_with(':') {
            format!("0.0.0.0{s}")
        } else {
            s.to_string()
        };
        s2.parse::<SocketAddr>().map(ListenAddr::Tcp).map_err(|_| {
            format!("`{s}` is not HOST:PORT, :PORT or unix:PATH (example: 0.0.0.0:9999)")
        })
    }
}

impl fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ListenAddr::Tcp(a) => write!(f, "{a}"),
            ListenAddr::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

/// A bound listener.
#[derive(Debug)]
pub enum Listener {
    Tcp(TcpListener),
    Unix(UnixListener, PathBuf),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PortSharing {
    Exclusive,
    Shared,
}

/// Connection backlog: large enough for the challenge's ramp of 600 clients
/// connecting within a minute, bursts included.
const BACKLOG: i32 = 4096;

impl Listener {
    /// Binds `addr` for this process alone. TCP sockets get `SO_REUSEADDR` (a restart
    /// does not wait for TIME_WAIT). A Unix socket path left over by a dead process is
    /// replaced; its directory is created; the socket is made writable by all, so a
    /// load balancer running as another user can connect.
    pub fn bind(addr: &ListenAddr) -> io::Result<Listener> {
        Listener::bind_with(addr, PortSharing::Exclusive)
    }

    /// Binds `addr` so that several processes can share it: TCP sockets also get
    /// `SO_REUSEPORT`, and the kernel spreads connections between the processes (the
    /// api instances of `payroute up --lb embedded`). Unix sockets as [`Listener::bind`].
    pub fn bind_shared(addr: &ListenAddr) -> io::Result<Listener> {
        Listener::bind_with(addr, PortSharing::Shared)
    }

    fn bind_with(addr: &ListenAddr, sharing: PortSharing) -> io::Result<Listener> {
        match addr {
            ListenAddr::Tcp(a) => {
                let domain = socket2::Domain::for_address(*a);
                let s = socket2::Socket::new(domain, socket2::Type::STREAM, None)?;
                s.set_reuse_address(true)?;
                if sharing == PortSharing::Shared {
                    s.set_reuse_port(true)?;
                }
                s.set_nonblocking(true)?;
                s.bind(&(*a).into())?;
                s.listen(BACKLOG)?;
                Ok(Listener::Tcp(TcpListener::from_std(s.into())?))
            }
            ListenAddr::Unix(path) => {
                prepare_unix_path(path)?;
                let l = UnixListener::bind(path)?;
                set_mode(path, 0o666)?;
                Ok(Listener::Unix(l, path.clone()))
            }
        }
    }

    /// The address actually bound (the real port when 0 was asked).
    pub fn local_addr(&self) -> io::Result<ListenAddr> {
        match self {
            Listener::Tcp(l) => Ok(ListenAddr::Tcp(l.local_addr()?)),
            Listener::Unix(_, p) => Ok(ListenAddr::Unix(p.clone())),
        }
    }
}

/// Makes `path` ready for a new Unix socket: creates the directory and removes a
/// stale socket file (never a regular file).
pub fn prepare_unix_path(path: &Path) -> io::Result<()> {
    use std::os::unix::fs::FileTypeExt;
    if let Some(dir) = path.parent() {
        if !dir.as_os_str().is_empty() {
            std::fs::create_dir_all(dir)?;
        }
    }
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_socket() => std::fs::remove_file(path),
        Ok(_) => Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!("{} exists and is not a socket", path.display()),
        )),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

fn set_mode(path: &Path, mode: u32) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
}

/// Limits of one HTTP server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServeLimits {
    /// Connections served at once; one more is accepted and closed at once.
    pub max_connections: usize,
    /// Bytes of request head (request line and headers) buffered per connection.
    pub max_header_bytes: usize,
    /// Time allowed to receive a complete request head; slow or idle clients past it
    /// are disconnected.
    pub header_timeout: Duration,
}

impl Default for ServeLimits {
    fn default() -> Self {
        ServeLimits {
            max_connections: 4096,
            max_header_bytes: 16 * 1024,
            // Above the 20 s upstream keep-alive of the bundled nginx config, so that
            // nginx never reuses a connection the server has just closed.
            header_timeout: Duration::from_secs(30),
        }
    }
}

/// Serves HTTP/1.1 on `listener` until `shutdown` is cancelled, then lets open
/// connections finish their current request and returns.
pub async fn serve<H, F>(
    listener: Listener,
    limits: ServeLimits,
    handler: H,
    shutdown: CancellationToken,
) where
    H: Fn(Request<Incoming>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<Body>> + Send + 'static,
{
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let tracker = tokio_util::task::TaskTracker::new();
    loop {
        let accepted = tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            a = accept(&listener) => a,
        };
        let stream = match accepted {
            Ok(s) => s,
            Err(e) => {
                // EMFILE and friends: back off briefly instead of spinning.
                tracing::warn!("accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            tracing::debug!("connection limit reached; closing a new connection");
            continue;
        };
        let handler = handler.clone();
        let limits = limits.clone();
        let shutdown = shutdown.clone();
        tracker.spawn(async move {
            match stream {
                Stream::Tcp(s) => serve_conn(s, &limits, handler, shutdown).await,
                Stream::Unix(s) => serve_conn(s, &limits, handler, shutdown).await,
            }
            drop(permit);
        });
    }
    tracker.close();
    let _ = tokio::time::timeout(Duration::from_secs(5), tracker.wait()).await;
}

enum Stream {
    Tcp(tokio::net::TcpStream),
    Unix(tokio::net::UnixStream),
}

async fn accept(l: &Listener) -> io::Result<Stream> {
    match l {
        Listener::Tcp(l) => {
            let (s, _) = l.accept().await?;
            // Answers are tiny; Nagle would hold them back up to 40 ms.
            s.set_nodelay(true)?;
            Ok(Stream::Tcp(s))
        }
        Listener::Unix(l, _) => Ok(Stream::Unix(l.accept().await?.0)),
    }
}

async fn serve_conn<S, H, F>(io: S, limits: &ServeLimits, handler: H, shutdown: CancellationToken)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    H: Fn(Request<Incoming>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<Body>> + Send + 'static,
{
    let svc = hyper::service::service_fn(move |req| {
        let fut = handler(req);
        async move { Ok::<_, std::convert::Infallible>(fut.await) }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(limits.max_header_bytes.max(8192))
        .keep_alive(true)
        .serve_connection(TokioIo::new(io), svc);
    tokio::pin!(conn);
    tokio::select! {
        res = conn.as_mut() => {
            if let Err(e) = res {
                tracing::debug!("connection ended: {e}");
            }
        }
        _ = shutdown.cancelled() => {
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(Duration::from_secs(2), conn).await;
        }
    }
}

/// The runtime every payroute role runs on: one thread, timers and IO enabled. Under a
/// fractional CPU quota (0.3 CPU for an api), more busy threads only burn the quota
/// early and stall until the next period; one thread also serves tens of thousands of
/// requests a second, far above what any role here sees.
pub fn single_thread_runtime() -> io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
}

/// Cancels `token` on the first Ctrl-C (SIGINT) or SIGTERM: every role's way to stop
/// cleanly, whoever runs it (a terminal, `payroute up`, docker).
pub async fn stop_on_signal(token: CancellationToken) {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(e) => {
            tracing::warn!("cannot watch SIGTERM ({e}); only Ctrl-C stops this process");
            let _ = tokio::signal::ctrl_c().await;
        }
    }
    tracing::info!("stopping");
    token.cancel();
}

/// A setting that cannot work, found at start: the role refuses to run and says which
/// flag (or its environment variable) is at fault. `payroute` exits with code 2 for
/// it, as for any other command-line error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettingError {
    /// The flag, without its dashes (`max-in-flight`).
    pub setting: &'static str,
    pub problem: String,
}

impl SettingError {
    pub fn new(setting: &'static str, problem: impl Into<String>) -> SettingError {
        SettingError {
            setting,
            problem: problem.into(),
        }
    }
}

impl fmt::Display for SettingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid setting --{}: {}", self.setting, self.problem)
    }
}

impl std::error::Error for SettingError {}

/// Exit code of a process that refused its settings (clap uses 2 for usage errors).
pub const EXIT_BAD_SETTING: u8 = 2;

/// Why a request body was not read.
#[derive(Debug)]
pub enum BodyError {
    TooLarge,
    Io,
}

/// Reads a whole request body of at most `limit` bytes.
pub async fn read_body(req: Request<Incoming>, limit: usize) -> Result<Bytes, BodyError> {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(BodyError::TooLarge);
    }
    match Limited::new(req.into_body(), limit).collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(BodyError::TooLarge),
        Err(_) => Err(BodyError::Io),
    }
}

/// A response with a JSON body.
pub fn json(status: StatusCode, body: impl Into<Bytes>) -> Response<Body> {
    with_type(status, "application/json", body)
}

/// A response with a body of the given content type.
pub fn with_type(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<Body> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(content_type),
    );
    r
}

/// A response with no body.
pub fn empty(status: StatusCode) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::new()));
    *r.status_mut() = status;
    r
}

/// A JSON error body `{"error": message}`.
pub fn error(status: StatusCode, message: &str) -> Response<Body> {
    let body = format!("{{\"error\":{}}}", json_string(message));
    json(status, body)
}

/// `s` as a JSON string literal.
pub fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_listen_addresses() {
        assert_eq!(
            "unix:/tmp/a.sock".parse(),
            Ok(ListenAddr::Unix("/tmp/a.sock".into()))
        );
        assert_eq!(
            ":9999".parse(),
            Ok(ListenAddr::Tcp("0.0.0.0:9999".parse().unwrap()))
        );
        assert_eq!(
            "127.0.0.1:0".parse(),
            Ok(ListenAddr::Tcp("127.0.0.1:0".parse().unwrap()))
        );
        assert!("unix:".parse::<ListenAddr>().is_err());
        assert!("nowhere".parse::<ListenAddr>().is_err());
    }

    #[test]
    fn escapes_json_strings() {
        assert_eq!(json_string("a\"b\\c\n"), "\"a\\\"b\\\\c\\u000a\"");
    }

    #[tokio::test]
    async fn two_listeners_share_a_port_with_reuse_port() {
        let a = Listener::bind_shared(&"127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = a.local_addr().unwrap();
        let b = Listener::bind_shared(&addr).unwrap();
        assert_eq!(b.local_addr().unwrap(), addr);
    }

    #[tokio::test]
    async fn replaces_a_stale_unix_socket_but_not_a_file() {
        let dir = std::env::temp_dir().join(format!("netio-test-{}", std::process::id()));
        let path = dir.join("s.sock");
        let addr = ListenAddr::Unix(path.clone());
        drop(Listener::bind(&addr).unwrap());
        drop(Listener::bind(&addr).unwrap());
        let file = dir.join("plain");
        std::fs::write(&file, b"x").unwrap();
        assert!(Listener::bind(&ListenAddr::Unix(file)).is_err());
        std::fs::remove_dir_all(dir).unwrap();
    }
}
