//! A test server on 127.0.0.1:0 on a thread of its own (so that blocking clients in the
//! test thread cannot stall it), stopped when dropped.
#![allow(dead_code, unreachable_pub)]

use http::StatusCode;
use netio::{CancellationToken, ListenAddr, Listener, ServeLimits};
use std::net::SocketAddr;

pub struct TestServer {
    pub addr: SocketAddr,
    shutdown: CancellationToken,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl TestServer {
    /// A server that answers every request 200 `{}`.
    pub fn start(limits: ServeLimits) -> TestServer {
        let rt = netio::single_thread_runtime().unwrap();
        let listener =
            rt.block_on(async { Listener::bind(&"127.0.0.1:0".parse().unwrap()).unwrap() });
        let ListenAddr::Tcp(addr) = listener.local_addr().unwrap() else {
            unreachable!()
        };
        let shutdown = CancellationToken::new();
        let stop = shutdown.clone();
        let handler = |_req: http::Request<hyper::body::Incoming>| async {
            netio::json(StatusCode::OK, "{}")
        };
        let thread = std::thread::spawn(move || {
            rt.block_on(netio::serve(listener, limits, handler, stop));
        });
        TestServer {
            addr,
            shutdown,
            thread: Some(thread),
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.shutdown.cancel();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Whether `got` holds a whole answer: a head and as many body bytes as its
/// Content-Length says.
pub fn complete_answer(got: &[u8]) -> bool {
    let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") else {
        return false;
    };
    let head = String::from_utf8_lossy(&got[..end]).to_ascii_lowercase();
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .map_or(0, |v| v.trim().parse().unwrap());
    got.len() >= end + 4 + len
}
