//! The HTTP server over real sockets: keep-alive by version, pipelining, chunked bodies,
//! `Expect: 100-continue`, every refusal and timeout, graceful stop, the connection cap
//! and its 503, the buffer budget. Each wait is bounded ([`common::PATIENCE`]), and
//! timing checks are loose lower and upper bounds.

mod common;

use common::{Client, TestServer, PATIENCE};
use http::StatusCode;
use netio::memory::{self, Env, Plan};
use netio::{Handler, Request, Response, ServeLimits, Server};
use std::time::{Duration, Instant};

/// Answers `METHOD path query body`, after 300 ms for `/sleep`; `/big` is 5,000 bytes.
struct Echo;

impl Handler for Echo {
    async fn call(&self, req: &Request<'_>) -> Response {
        match req.path {
            "/sleep" => tokio::time::sleep(Duration::from_millis(300)).await,
            "/big" => return netio::with_type(StatusCode::OK, "text/plain", vec![b'x'; 5000]),
            _ => {}
        }
        let body = String::from_utf8_lossy(req.body);
        let text = format!("{} {} {} {body}", req.method, req.path, req.query);
        netio::with_type(StatusCode::OK, "text/plain", text)
    }
}

const HEADER_TIMEOUT: Duration = Duration::from_millis(500);
const BODY_TIMEOUT: Duration = Duration::from_millis(300);

fn limits() -> ServeLimits {
    ServeLimits {
        max_connections: 100,
        max_header_bytes: 1024,
        header_timeout: HEADER_TIMEOUT,
        max_body_bytes: 64,
        body_timeout: BODY_TIMEOUT,
    }
}

/// A plan with this cap, answered refusals and buffer budget.
fn plan(cap: usize, answered_refusals: usize, buffer_budget: u64) -> Plan {
    let env = Env {
        limit: None,
        base_rss: 0,
        open_files: None,
    };
    Plan {
        cap,
        answered_refusals,
        buffer_budget,
        ..memory::plan(cap, env)
    }
}

fn server(plan: Plan) -> TestServer {
    TestServer::with(Server::with_plan(limits(), plan), Echo)
}

fn plain() -> TestServer {
    server(plan(100, 6, 1 << 20))
}

/// Polls `check` until it holds, for [`PATIENCE`] at most.
fn eventually(what: &str, check: impl Fn() -> bool) {
    let until = Instant::now() + PATIENCE;
    while !check() {
        assert!(Instant::now() < until, "never: {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// On a multi-threaded runtime, where another thread's driver records readiness while
/// a connection's task reads, requests whose head and body arrive apart are all
/// answered at once. A read that drains the socket forgets only the readiness it saw
/// before reading; clearing with a readiness taken anew after the read forgot an event
/// recorded in between, and the connection then waited for its body timeout (seen as
/// a 408 here; as a payment unanswered for seconds in the service test, under short
/// scheduler slices).
#[test]
fn split_requests_on_a_multi_threaded_runtime_are_all_answered() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let s = TestServer::on(rt, Server::with_plan(limits(), plan(100, 6, 1 << 20)), Echo);
    let started = Instant::now();
    for i in 0..4000 {
        // Every other one on a connection of its own, as the service test's payments.
        let mut fresh = s.connect();
        let mut kept = s.connect();
        for c in [&mut fresh, &mut kept] {
            c.send("POST /split HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\n");
            c.send("ok");
            let a = c.answer();
            assert_eq!(a.status, 200, "request {i}: {}", a.head);
        }
        assert!(
            started.elapsed() < PATIENCE * 6,
            "8,000 requests take seconds, not minutes"
        );
    }
}

#[test]
fn keep_alive_by_version_and_connection_field() {
    let s = plain();
    let mut c = s.connect();
    for i in 0..20 {
        c.send(format!("GET /n?i={i} HTTP/1.1\r\nHost: t\r\n\r\n"));
        let a = c.answer();
        assert_eq!(
            (a.status, a.body.as_str()),
            (200, format!("GET /n i={i} ").as_str())
        );
        assert_eq!(a.header("connection"), None);
        assert!(
            a.header("date").is_some_and(|d| d.ends_with(" GMT")),
            "{}",
            a.head
        );
    }
    c.send("GET /x HTTP/1.1\r\nConnection: close\r\n\r\n");
    assert_eq!(c.answer().header("connection").as_deref(), Some("close"));
    assert!(c.closed());

    let mut old = s.connect();
    old.send("GET /x HTTP/1.0\r\n\r\n");
    assert_eq!(old.answer().header("connection").as_deref(), Some("close"));
    assert!(old.closed());

    let mut old_kept = s.connect();
    for _ in 0..2 {
        old_kept.send("GET /x HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
        let a = old_kept.answer();
        assert_eq!(a.header("connection").as_deref(), Some("keep-alive"));
    }
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let s = plain();
    let mut c = s.connect();
    c.send("GET /a HTTP/1.1\r\n\r\nPOST /b HTTP/1.1\r\nContent-Length: 5\r\n\r\nhelloGET /c?x HTTP/1.1\r\n\r\n");
    for want in ["GET /a  ", "POST /b  hello", "GET /c x "] {
        assert_eq!(c.answer().body, want);
    }
    // More than one buffer's worth, and more answers than one write holds.
    let batch: String = (0..100)
        .map(|i| format!("GET /p?{i} HTTP/1.1\r\nHost: t\r\n\r\n"))
        .collect();
    c.send(batch);
    for i in 0..100 {
        assert_eq!(c.answer().body, format!("GET /p {i} "));
    }
    // A large answer, then small ones again on the same connection.
    c.send("GET /big HTTP/1.1\r\n\r\nGET /after HTTP/1.1\r\n\r\n");
    assert_eq!(c.answer().body.len(), 5000);
    assert_eq!(c.answer().body, "GET /after  ");
}

#[test]
fn chunked_bodies_are_decoded() {
    let s = plain();
    let mut c = s.connect();
    c.send("POST /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6;x=y\r\n world\r\n0\r\nTrailer: t\r\n\r\n");
    assert_eq!(c.answer().body, "POST /c  hello world");
    // In pieces, then a request on the same connection.
    c.send("POST /slow HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel");
    std::thread::sleep(Duration::from_millis(50));
    c.send("lo\r\n0\r\n");
    std::thread::sleep(Duration::from_millis(50));
    c.send("\r\nGET /next HTTP/1.1\r\n\r\n");
    assert_eq!(c.answer().body, "POST /slow  hello");
    assert_eq!(c.answer().body, "GET /next  ");
}

#[test]
fn expect_100_continue() {
    let s = plain();
    let mut c = s.connect();
    c.send("POST /e HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n");
    assert_eq!(c.take(25), "HTTP/1.1 100 Continue\r\n\r\n");
    c.send("hello");
    assert_eq!(c.answer().body, "POST /e  hello");
    // A body over the limit is refused at once, without a 100.
    c.send("POST /e HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 65\r\n\r\n");
    assert_eq!(c.answer().status, 413);
    assert!(c.closed());
}

#[test]
fn refusals_answer_json_and_close() {
    let s = plain();
    let many_fields: String = (0..70).map(|i| format!("X-{i}: v\r\n")).collect();
    let cases: Vec<(String, u16)> = vec![
        (
            format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(2000)),
            431,
        ),
        (format!("GET / HTTP/1.1\r\n{many_fields}\r\n"), 431),
        ("POST / HTTP/1.1\r\nContent-Length: 65\r\n\r\n".into(), 413),
        (
            format!(
                "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n46\r\n{}\r\n0\r\n\r\n",
                "a".repeat(70)
            ),
            413,
        ),
        ("GET / HTTP/1.1\r\nBad Name: x\r\n\r\n".into(), 400),
        (
            "POST / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n".into(),
            400,
        ),
        (
            "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n".into(),
            400,
        ),
        (
            "POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n".into(),
            501,
        ),
        ("POST / HTTP/1.1\r\nExpect: magic\r\n\r\n".into(), 417),
        ("GET / HTTP/2.0\r\n\r\n".into(), 505),
    ];
    for (req, status) in cases {
        let mut c = s.connect();
        c.send(&req);
        let a = c.answer();
        assert_eq!(a.status, status, "{}", &req[..req.len().min(60)]);
        assert!(a.body.starts_with("{\"error\":"), "{}", a.body);
        assert_eq!(a.header("connection").as_deref(), Some("close"));
        assert!(c.closed(), "{}", &req[..req.len().min(60)]);
    }
    assert!(s.stats.refused_requests() >= 10);
}

#[test]
fn head_answers_have_a_length_and_no_body() {
    let s = plain();
    let mut c = s.connect();
    c.send("HEAD /h HTTP/1.1\r\n\r\n");
    while !c.text().ends_with("\r\n\r\n") {
        assert!(c.read_more() > 0);
    }
    assert!(c.text().contains("content-length: 9\r\n"), "{}", c.text());
    let head = c.take(c.text().len());
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"));
    c.send("GET /g HTTP/1.1\r\n\r\n");
    assert_eq!(c.answer().body, "GET /g  ");
}

#[test]
fn timeouts_for_heads_bodies_and_idle_connections() {
    let s = plain();
    // A head that never ends: 408 after the header timeout.
    let started = Instant::now();
    let mut c = s.connect();
    c.send("GET /slow HTTP/1.1\r\nHost:");
    let a = c.answer();
    assert_eq!(a.status, 408);
    assert!(a.body.contains("head"), "{}", a.body);
    assert!(c.closed());
    let took = started.elapsed();
    assert!(took >= HEADER_TIMEOUT && took < PATIENCE, "{took:?}");

    // A body that never ends: 408 after the body timeout.
    let mut c = s.connect();
    c.send("POST /b HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc");
    let a = c.answer();
    assert_eq!(a.status, 408);
    assert!(a.body.contains("body"), "{}", a.body);

    // An idle connection, new or after an answer, is closed quietly.
    let started = Instant::now();
    let mut fresh = s.connect();
    let mut used = s.connect();
    used.send("GET /x HTTP/1.1\r\n\r\n");
    used.answer();
    assert!(fresh.closed() && used.closed());
    assert!(started.elapsed() >= HEADER_TIMEOUT);
}

#[test]
fn graceful_stop_finishes_requests_and_closes_idle_connections() {
    let mut s = plain();
    let addr = s.addr;
    let mut idle = s.connect();
    idle.send("GET /x HTTP/1.1\r\n\r\n");
    idle.answer();
    let mut busy = s.connect();
    busy.send("GET /sleep HTTP/1.1\r\n\r\n");
    std::thread::sleep(Duration::from_millis(100));
    let started = Instant::now();
    let stopper = std::thread::spawn(move || {
        s.stop();
        started.elapsed()
    });
    assert!(idle.closed());
    let a = busy.answer();
    assert_eq!(
        (a.status, a.header("connection").as_deref()),
        (200, Some("close"))
    );
    assert!(busy.closed());
    let took = stopper.join().unwrap();
    assert!(took < Duration::from_secs(3), "{took:?}");
    assert!(std::net::TcpStream::connect(addr).is_err());
}

#[test]
fn beyond_the_cap_connections_get_503_then_are_served_again() {
    let s = server(plan(3, 2, 1 << 20));
    let mut held: Vec<Client> = (0..3)
        .map(|_| {
            let mut c = s.connect();
            c.send("GET /x HTTP/1.1\r\n\r\n");
            assert_eq!(c.answer().status, 200);
            c
        })
        .collect();
    let mut over = s.connect();
    over.send("GET /x HTTP/1.1\r\n\r\n");
    let a = over.answer();
    assert_eq!(a.status, 503);
    assert_eq!(a.header("connection").as_deref(), Some("close"));
    assert!(a.body.contains("overloaded"), "{}", a.body);
    assert!(over.closed());
    assert_eq!(s.stats.refused_connections(), 1);

    drop(held.pop());
    eventually("a connection closed", || s.stats.open_connections() == 2);
    let mut again = s.connect();
    again.send("GET /x HTTP/1.1\r\n\r\n");
    assert_eq!(again.answer().status, 200);
    drop(held);
}

#[test]
fn beyond_the_answered_refusals_connections_are_closed_unanswered() {
    let s = server(plan(1, 0, 1 << 20));
    let mut first = s.connect();
    first.send("GET /x HTTP/1.1\r\n\r\n");
    assert_eq!(first.answer().status, 200);
    let mut over = s.connect();
    let _ = std::io::Write::write_all(&mut over.stream, b"GET /x HTTP/1.1\r\n\r\n");
    assert!(over.try_answer().is_none(), "{}", over.text());
}

#[test]
fn large_requests_need_the_buffer_budget_and_give_it_back() {
    let head = format!("GET /x HTTP/1.1\r\nX-Pad: {}\r\n\r\n", "a".repeat(600));
    let broke = server(plan(10, 0, 0));
    let mut c = broke.connect();
    c.send(&head);
    let a = c.answer();
    assert_eq!(a.status, 503, "{}", a.body);

    let s = server(plan(10, 0, 4096));
    let mut c = s.connect();
    c.send(&head);
    assert_eq!(c.answer().status, 200);
    eventually("the budget given back", || s.stats.buffer_bytes().0 == 0);
    assert_eq!(s.stats.buffer_bytes().1, 4096);
    c.send("GET /small HTTP/1.1\r\n\r\n");
    assert_eq!(c.answer().body, "GET /small  ");
}

#[test]
fn serves_unix_sockets() {
    use std::io::{Read, Write};
    let dir = std::env::temp_dir().join(format!("netio-unix-{}", std::process::id()));
    let addr = netio::ListenAddr::Unix(dir.join("s.sock"));
    let rt = netio::single_thread_runtime().unwrap();
    let listener = rt.block_on(async { netio::Listener::bind(&addr).unwrap() });
    let shutdown = netio::CancellationToken::new();
    let stop = shutdown.clone();
    let server = std::thread::spawn(move || {
        rt.block_on(netio::serve(listener, limits(), Echo, stop));
    });
    let mut s = std::os::unix::net::UnixStream::connect(dir.join("s.sock")).unwrap();
    s.set_read_timeout(Some(PATIENCE)).unwrap();
    s.write_all(b"GET /u HTTP/1.1\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    assert!(
        out.starts_with("HTTP/1.1 200 OK\r\n") && out.ends_with("GET /u  "),
        "{out}"
    );
    shutdown.cancel();
    server.join().unwrap();
    std::fs::remove_dir_all(dir).unwrap();
}
