//! What an idle keep-alive connection costs the real api (its handler's state
//! included), measured as `netio`'s test measures its own server: the growth of this
//! process's resident memory over 400 connections that each sent one `POST /payments`.
//! It must stay within `netio::memory::USER_BYTES_PER_CONNECTION`, the figure the
//! connection cap is derived from.
//!
//! `cargo test -p api --test memory -- --nocapture` prints the figure.

use ipc::{Connection, Reply, Request, SubmitStatus};
use netio::{CancellationToken, ListenAddr, Listener};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

const CONNECTIONS: usize = 400;

fn rss_bytes() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("Linux /proc");
    let pages: usize = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

/// A worker that accepts every payment.
async fn fake_worker(listener: tokio::net::UnixListener) {
    while let Ok((stream, _)) = listener.accept().await {
        tokio::spawn(async move {
            let mut conn = Connection::new(stream);
            let mut reqs: Vec<Request> = Vec::new();
            while conn.read_messages(&mut reqs).await.is_ok() {
                for _ in reqs.drain(..) {
                    conn.queue(&Reply::Submit(SubmitStatus::Accepted));
                }
                if conn.flush().await.is_err() {
                    return;
                }
            }
        });
    }
}

fn pay(addr: SocketAddr, n: usize) -> TcpStream {
    let body = format!(r#"{{"correlationId":"4a7901b8-7d26-4d9d-aa19-{n:012}","amount":19.90}}"#);
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let req = format!(
        "POST /payments HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).unwrap();
    let mut buf = [0u8; 512];
    let got = s.read(&mut buf).unwrap();
    assert!(
        buf[..got].starts_with(b"HTTP/1.1 202"),
        "{:?}",
        String::from_utf8_lossy(&buf[..got])
    );
    s
}

#[test]
fn an_idle_api_connection_costs_what_the_cap_assumes() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("worker.sock");
    let rt = netio::single_thread_runtime().unwrap();
    let (listener, worker) = rt.block_on(async {
        let w = tokio::net::UnixListener::bind(&socket).unwrap();
        (Listener::bind(&"127.0.0.1:0".parse().unwrap()).unwrap(), w)
    });
    let ListenAddr::Tcp(addr) = listener.local_addr().unwrap() else {
        unreachable!()
    };
    let shutdown = CancellationToken::new();
    let stop = shutdown.clone();
    let server = std::thread::spawn(move || {
        rt.block_on(async move {
            tokio::spawn(fake_worker(worker));
            api::serve(api::Config::new(socket), listener, stop).await
        })
    });
    let warm: Vec<TcpStream> = (0..50).map(|n| pay(addr, n)).collect();
    drop(warm);
    std::thread::sleep(Duration::from_millis(200));

    let before = rss_bytes();
    let held: Vec<TcpStream> = (0..CONNECTIONS).map(|n| pay(addr, 1000 + n)).collect();
    std::thread::sleep(Duration::from_millis(200));
    let per_conn = rss_bytes().saturating_sub(before) / CONNECTIONS;
    println!("api memory: {per_conn} bytes per idle keep-alive connection");
    let bound = netio::memory::USER_BYTES_PER_CONNECTION as usize;
    assert!(
        per_conn < bound,
        "{per_conn} bytes per connection, over {bound}"
    );
    drop(held);
    shutdown.cancel();
    server.join().unwrap().unwrap();
}
