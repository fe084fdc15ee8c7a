//! What an idle keep-alive connection costs the server process, measured: a real server
//! on 127.0.0.1:0 on its own thread, N clients that each send one request and then stay
//! connected, and the growth of this process's resident memory (`/proc/self/statm`)
//! divided by N. The clients are plain `std::net::TcpStream`s, which hold no memory of
//! their own in user space, so the growth is the server's.
//!
//! Run alone to see the figure: `cargo test -p netio --test memory -- --nocapture`.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

mod common;

/// Connections measured: enough that the growth is hundreds of pages, few enough for a
/// default file descriptor limit (both ends are in this process).
const CONNECTIONS: usize = 400;

/// Bound on what one idle connection may cost the server, in bytes of resident memory.
const BOUND: usize = 4 * 1024;

fn rss_bytes() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("Linux /proc");
    let pages: usize = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

/// Opens a connection, sends one keep-alive request and reads its whole answer.
fn one_request(addr: SocketAddr) -> TcpStream {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"GET /x HTTP/1.1\r\nHost: test\r\nUser-Agent: memory-test\r\n\r\n")
        .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 512];
    while !common::complete_answer(&got) {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "closed early: {}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
    }
    assert!(got.starts_with(b"HTTP/1.1 200"), "{got:?}");
    s
}

#[test]
fn an_idle_keep_alive_connection_costs_little() {
    let started = Instant::now();
    let server = common::TestServer::start(netio::ServeLimits::default());
    // Warm up: the runtime, the allocator's arena and the first buffers.
    let warm: Vec<TcpStream> = (0..50).map(|_| one_request(server.addr)).collect();
    drop(warm);
    std::thread::sleep(Duration::from_millis(200));

    let before = rss_bytes();
    let held: Vec<TcpStream> = (0..CONNECTIONS).map(|_| one_request(server.addr)).collect();
    std::thread::sleep(Duration::from_millis(200));
    let after = rss_bytes();
    let per_conn = after.saturating_sub(before) / CONNECTIONS;
    println!(
        "netio memory: {CONNECTIONS} idle keep-alive connections: +{} KiB resident, \
         {per_conn} bytes each",
        (after - before) / 1024
    );
    assert!(
        per_conn < BOUND,
        "an idle connection costs {per_conn} bytes, over {BOUND}"
    );
    drop(held);
    drop(server);
    assert!(started.elapsed() < Duration::from_secs(60));
}
