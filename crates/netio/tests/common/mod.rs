//! A test server on 127.0.0.1:0 on a thread of its own (so that blocking clients in the
//! test thread cannot stall it), stopped when dropped; and a blocking client that reads
//! one answer at a time.
#![allow(dead_code, unreachable_pub)]

use http::StatusCode;
use netio::{
    CancellationToken, Handler, ListenAddr, Listener, Request, Response, ServeLimits, Server,
    ServerStats,
};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

/// Time any read of a test may wait: far above what a loaded machine needs.
pub const PATIENCE: Duration = Duration::from_secs(5);

/// Answers every request 200 `{}`.
pub struct Ok200;

impl Handler for Ok200 {
    async fn call(&self, _req: &Request<'_>) -> Response {
        netio::json(StatusCode::OK, "{}")
    }
}

pub struct TestServer {
    pub addr: SocketAddr,
    pub stats: Arc<ServerStats>,
    shutdown: CancellationToken,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl TestServer {
    /// A server that answers every request 200 `{}`.
    pub fn start(limits: ServeLimits) -> TestServer {
        TestServer::with(Server::new(limits), Ok200)
    }

    pub fn with<H: Handler>(server: Server, handler: H) -> TestServer {
        TestServer::on(netio::single_thread_runtime().unwrap(), server, handler)
    }

    /// [`TestServer::with`] on the runtime `rt` (the roles run on a single-threaded one).
    pub fn on<H: Handler>(rt: tokio::runtime::Runtime, server: Server, handler: H) -> TestServer {
        let listener =
            rt.block_on(async { Listener::bind(&"127.0.0.1:0".parse().unwrap()).unwrap() });
        let ListenAddr::Tcp(addr) = listener.local_addr().unwrap() else {
            unreachable!()
        };
        let shutdown = CancellationToken::new();
        let stop = shutdown.clone();
        let stats = server.stats();
        let thread = std::thread::spawn(move || {
            rt.block_on(server.serve(listener, handler, stop));
        });
        TestServer {
            addr,
            stats,
            shutdown,
            thread: Some(thread),
        }
    }

    /// Stops the server and waits until `serve` has returned.
    pub fn stop(&mut self) {
        self.shutdown.cancel();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }

    pub fn connect(&self) -> Client {
        Client::connect(self.addr)
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Whether `got` holds a whole answer: a head and as many body bytes as its
/// Content-Length says.
pub fn complete_answer(got: &[u8]) -> bool {
    answer_len(got).is_some()
}

/// Bytes of the first whole answer in `got`.
fn answer_len(got: &[u8]) -> Option<usize> {
    let end = got.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&got[..end]).to_ascii_lowercase();
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .map_or(0, |v| v.trim().parse().unwrap());
    (got.len() >= end + 4 + len).then_some(end + 4 + len)
}

/// An answer.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub head: String,
    pub body: String,
}

impl Answer {
    /// A header field's value (names compared in lower case).
    pub fn header(&self, name: &str) -> Option<String> {
        self.head.lines().find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
        })
    }
}

/// A blocking client that reads answers one at a time.
pub struct Client {
    pub stream: TcpStream,
    buf: Vec<u8>,
}

impl Client {
    pub fn connect(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect(addr).unwrap();
        stream.set_read_timeout(Some(PATIENCE)).unwrap();
        stream.set_nodelay(true).unwrap();
        Client {
            stream,
            buf: Vec::new(),
        }
    }

    pub fn send(&mut self, bytes: impl AsRef<[u8]>) {
        self.stream.write_all(bytes.as_ref()).unwrap();
    }

    /// The next answer; panics if the connection closes first.
    pub fn answer(&mut self) -> Answer {
        self.try_answer()
            .unwrap_or_else(|| panic!("closed before an answer: {:?}", self.text()))
    }

    /// The next answer, or `None` if the connection closes first.
    pub fn try_answer(&mut self) -> Option<Answer> {
        loop {
            if let Some(n) = answer_len(&self.buf) {
                let raw: Vec<u8> = self.buf.drain(..n).collect();
                let text = String::from_utf8_lossy(&raw).into_owned();
                let (head, body) = text.split_once("\r\n\r\n").unwrap();
                return Some(Answer {
                    status: head[9..12].parse().unwrap(),
                    head: head.to_string(),
                    body: body.to_string(),
                });
            }
            if self.read_more() == 0 {
                return None;
            }
        }
    }

    /// Reads what arrives; 0 when the server closed (or reset) the connection.
    pub fn read_more(&mut self) -> usize {
        let mut chunk = [0u8; 4096];
        match self.stream.read(&mut chunk) {
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                n
            }
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => 0,
            Err(e) => panic!("read: {e}"),
        }
    }

    /// Whether the server closes the connection with nothing more to say.
    pub fn closed(&mut self) -> bool {
        self.read_more() == 0 && self.buf.is_empty()
    }

    /// What was received and not read as an answer.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.buf).into_owned()
    }

    /// Takes `n` received bytes off the front (an interim answer).
    pub fn take(&mut self, n: usize) -> String {
        while self.buf.len() < n {
            assert!(self.read_more() > 0, "closed: {:?}", self.text());
        }
        String::from_utf8_lossy(&self.buf.drain(..n).collect::<Vec<u8>>()).into_owned()
    }
}
