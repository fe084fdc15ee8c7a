//! The api's cost per `POST /payments`, for instruction counts under callgrind: a fake
//! worker (answers every submit `Accepted`), the real api, and one keep-alive client,
//! each on a thread of its own, so callgrind's per-thread totals separate the api's
//! work (HTTP, validation, IPC client) from the rest.
//!
//! ```text
//! cargo build --release -p api --example request_cost
//! for n in 1000 11000; do
//!   valgrind --tool=callgrind --separate-threads=yes --callgrind-out-file=/tmp/rc.$n.%p \
//!     target/release/examples/request_cost $n
//! done
//! scripts/request-cost   # does the above and prints (api(11000) - api(1000)) / 10000
//! ```
//! The api thread is the one named `api` (callgrind's `-02` file: threads are numbered
//! in creation order, main first).

use ipc::{Connection, Reply, Request, SubmitStatus};
use netio::{CancellationToken, ListenAddr, Listener};
use std::io::{Read, Write};
use std::time::Duration;

const BODY: &str = r#"{"correlationId":"4a7901b8-7d26-4d9d-aa19-4dc1c7cf60b3","amount":19.90}"#;

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .map_or(1000, |s| s.parse().expect("a number of requests"));
    let dir = std::env::temp_dir().join(format!("request-cost-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let socket = dir.join("worker.sock");

    let worker_socket = socket.clone();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("worker".into())
        .spawn(move || fake_worker(&worker_socket, ready_tx))
        .unwrap();
    ready_rx.recv().unwrap();

    let rt = netio::single_thread_runtime().unwrap();
    let listener = rt.block_on(async { Listener::bind(&"127.0.0.1:0".parse().unwrap()).unwrap() });
    let ListenAddr::Tcp(addr) = listener.local_addr().unwrap() else {
        unreachable!()
    };
    let shutdown = CancellationToken::new();
    let stop = shutdown.clone();
    let api = std::thread::Builder::new()
        .name("api".into())
        .spawn(move || rt.block_on(api::serve(api::Config::new(socket), listener, stop)))
        .unwrap();

    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_nodelay(true).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let req = format!(
        "POST /payments HTTP/1.1\r\nHost: localhost:9999\r\nUser-Agent: k6/1.1.0 (https://k6.io/)\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{BODY}",
        BODY.len()
    );
    let mut buf = [0u8; 1024];
    for _ in 0..n {
        s.write_all(req.as_bytes()).unwrap();
        let got = s.read(&mut buf).unwrap();
        assert!(
            buf[..got].starts_with(b"HTTP/1.1 202"),
            "{:?}",
            String::from_utf8_lossy(&buf[..got])
        );
    }
    drop(s);
    shutdown.cancel();
    api.join().unwrap().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    println!("{n} requests answered");
}

fn fake_worker(path: &std::path::Path, ready: std::sync::mpsc::Sender<()>) {
    let rt = netio::single_thread_runtime().unwrap();
    rt.block_on(async {
        let listener = tokio::net::UnixListener::bind(path).unwrap();
        ready.send(()).unwrap();
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut conn = Connection::new(stream);
                let mut reqs: Vec<Request> = Vec::new();
                while conn.read_messages(&mut reqs).await.is_ok() {
                    for r in reqs.drain(..) {
                        let reply = match r {
                            Request::Submit { .. } => Reply::Submit(SubmitStatus::Accepted),
                            _ => Reply::Purged,
                        };
                        conn.queue(&reply);
                    }
                    if conn.flush().await.is_err() {
                        return;
                    }
                }
            });
        }
    });
}
