//! Every row of SPEC §2 over real sockets: an emulator on 127.0.0.1 port 0, in
//! process, and a minimal HTTP/1.1 client (one connection per request, so a test can
//! also drop a connection halfway).
//!
//! No assertion depends on how fast the machine is: waits are "until the emulator's
//! counters say so" with a generous deadline, and the only timing checks are lower
//! bounds (a delayed request takes *at least* its delay).

use emulator::{Config, Emulator};
use netio::{CancellationToken, ListenAddr, Listener};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const TOKEN: &str = "123";
/// Upper bound of any wait for the emulator to reach a state: far above what a loaded
/// machine needs, only reached when a test is failing.
const PATIENCE: Duration = Duration::from_secs(20);

struct Server {
    addr: SocketAddr,
    em: Arc<Emulator>,
    shutdown: CancellationToken,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

fn config() -> Config {
    Config {
        fee: 0.05,
        token: TOKEN.into(),
        health_window: Duration::from_secs(5),
        health_waiters: 2,
        max_in_flight: 800,
        max_queued: 500,
        manual_health_windows: true,
    }
}

async fn start(config: Config) -> Server {
    let listener = Listener::bind(&"127.0.0.1:0".parse().unwrap()).unwrap();
    let ListenAddr::Tcp(addr) = listener.local_addr().unwrap() else {
        panic!("bound TCP, got something else");
    };
    let em = Emulator::new(config).unwrap();
    let shutdown = CancellationToken::new();
    tokio::spawn(em.clone().serve(listener, shutdown.clone()));
    Server { addr, em, shutdown }
}

#[derive(Debug)]
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

fn request_bytes(method: &str, path: &str, token: Option<&str>, body: Option<&str>) -> Vec<u8> {
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n");
    if let Some(t) = token {
        req.push_str(&format!("X-Rinha-Token: {t}\r\n"));
    }
    let body = body.unwrap_or("");
    if !body.is_empty() || method != "GET" {
        req.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    req.push_str("\r\n");
    req.push_str(body);
    req.into_bytes()
}

async fn call(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> Reply {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(&request_bytes(method, path, token, body))
        .await
        .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).await.unwrap();
    let text = String::from_utf8(raw).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(": "))
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect();
    Reply {
        status,
        headers,
        body: body.to_string(),
    }
}

async fn get(addr: SocketAddr, path: &str) -> Reply {
    call(addr, "GET", path, None, None).await
}

async fn admin(addr: SocketAddr, method: &str, path: &str, body: Option<&str>) -> Reply {
    call(addr, method, path, Some(TOKEN), body).await
}

fn payment(id: &str, amount: &str, at: &str) -> String {
    format!(r#"{{"correlationId":"{id}","amount":{amount},"requestedAt":"{at}"}}"#)
}

async fn pay(addr: SocketAddr, id: &str, amount: &str, at: &str) -> Reply {
    call(
        addr,
        "POST",
        "/payments",
        None,
        Some(&payment(id, amount, at)),
    )
    .await
}

fn uuid(n: u32) -> String {
    format!("00000000-0000-4000-8000-{n:012}")
}

/// Waits until `cond` holds of the emulator, or fails the test after [`PATIENCE`].
async fn until(em: &Emulator, what: &str, cond: impl Fn(&emulator::Stats) -> bool) {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let s = em.stats();
        if cond(&s) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {s:?}"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

async fn set_delay(addr: SocketAddr, ms: u32) {
    let r = admin(
        addr,
        "PUT",
        "/admin/configurations/delay",
        Some(&format!(r#"{{"delay":{ms}}}"#)),
    )
    .await;
    assert_eq!(r.status, 200, "{r:?}");
}

async fn set_failure(addr: SocketAddr, on: bool) {
    let r = admin(
        addr,
        "PUT",
        "/admin/configurations/failure",
        Some(&format!(r#"{{"failure":{on}}}"#)),
    )
    .await;
    assert_eq!(r.status, 200, "{r:?}");
}

async fn summary(addr: SocketAddr, query: &str) -> Reply {
    admin(
        addr,
        "GET",
        &format!("/admin/payments-summary{query}"),
        None,
    )
    .await
}

#[tokio::test]
async fn payments_are_stored_once_and_read_back() {
    let s = start(config()).await;
    let id = uuid(1);
    let r = pay(s.addr, &id, "19.905", "2025-07-10T12:34:56.789Z").await;
    assert_eq!(
        (r.status, r.body.as_str()),
        (200, r#"{"message":"payment processed successfully"}"#)
    );
    assert_eq!(r.header("content-type"), Some("application/json"));
    let r = get(s.addr, &format!("/payments/{id}")).await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.body,
        format!(
            r#"{{"correlationId":"{id}","amount":19.90,"requestedAt":"2025-07-10T12:34:56.789Z"}}"#
        )
    );
    // Microseconds are kept and given back.
    let id2 = uuid(2);
    assert_eq!(
        pay(s.addr, &id2, "1", "2025-07-10T12:34:56.789123Z")
            .await
            .status,
        200
    );
    let r = get(s.addr, &format!("/payments/{id2}")).await;
    assert!(
        r.body
            .contains(r#""amount":1.00,"requestedAt":"2025-07-10T12:34:56.789123Z""#),
        "{r:?}"
    );
    // A duplicate is refused and changes nothing.
    let r = pay(s.addr, &id, "5", "2025-07-10T13:00:00Z").await;
    assert_eq!(r.status, 422, "{r:?}");
    assert!(r.body.contains("\"error\""));
    assert!(get(s.addr, &format!("/payments/{id}"))
        .await
        .body
        .contains("19.90"));
    assert_eq!(s.em.stats().payments, 2);
    assert_eq!(
        get(s.addr, &format!("/payments/{}", uuid(3))).await.status,
        404
    );
    assert_eq!(get(s.addr, "/payments/not-a-uuid").await.status, 400);
}

#[tokio::test]
async fn malformed_payments_get_400_naming_the_field_and_store_nothing() {
    let s = start(config()).await;
    let id = uuid(1);
    let at = "2025-07-10T12:34:56.789Z";
    let cases = [
        ("not json".to_string(), "body"),
        ("[]".to_string(), "body"),
        (
            format!(r#"{{"amount":1,"requestedAt":"{at}"}}"#),
            "correlationId",
        ),
        (payment("x", "1", at), "correlationId"),
        (
            format!(r#"{{"correlationId":"{id}","amount":"1","requestedAt":"{at}"}}"#),
            "amount",
        ),
        (
            format!(r#"{{"correlationId":"{id}","amount":1}}"#),
            "requestedAt",
        ),
        (payment(&id, "1", "2025-13-45T00:00:00Z"), "requestedAt"),
    ];
    for (body, field) in cases {
        let r = call(s.addr, "POST", "/payments", None, Some(&body)).await;
        assert_eq!(r.status, 400, "{body}: {r:?}");
        assert!(
            r.body.contains(&format!(r#""field":"{field}""#)),
            "{body}: {r:?}"
        );
    }
    let huge = format!(r#"{{"pad":"{}"}}"#, "x".repeat(20_000));
    assert_eq!(
        call(s.addr, "POST", "/payments", None, Some(&huge))
            .await
            .status,
        413
    );
    assert_eq!(s.em.stats().payments, 0);
    assert_eq!(s.em.stats().in_flight, 0);
}

#[tokio::test]
async fn a_delayed_failing_request_takes_the_whole_delay_then_answers_500() {
    let s = start(config()).await;
    set_delay(s.addr, 300).await;
    set_failure(s.addr, true).await;
    let started = Instant::now();
    let r = pay(s.addr, &uuid(1), "19.90", "2025-07-10T12:34:56.789Z").await;
    assert_eq!(r.status, 500, "{r:?}");
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        get(s.addr, &format!("/payments/{}", uuid(1))).await.status,
        404
    );
    assert!(summary(s.addr, "")
        .await
        .body
        .contains(r#""totalRequests":0"#));
    // Without failure, the delay still comes first.
    set_failure(s.addr, false).await;
    let started = Instant::now();
    assert_eq!(
        pay(s.addr, &uuid(1), "19.90", "2025-07-10T12:34:56.789Z")
            .await
            .status,
        200
    );
    assert!(started.elapsed() >= Duration::from_millis(300));
}

#[tokio::test]
async fn failure_is_read_when_the_delay_ends() {
    // As in the official filters: the failure check runs after the delay, so a
    // request admitted before an outage starts fails, and one admitted during an
    // outage that ends before its delay does is stored.
    let s = start(config()).await;
    let addr = s.addr;
    set_delay(addr, 400).await;
    let first = tokio::spawn(async move { pay(addr, &uuid(1), "1", "2025-07-10T12:00:00Z").await });
    until(&s.em, "the first payment in flight", |st| st.in_flight == 1).await;
    set_failure(addr, true).await;
    assert_eq!(first.await.unwrap().status, 500);

    let second =
        tokio::spawn(async move { pay(addr, &uuid(2), "1", "2025-07-10T12:00:00Z").await });
    until(&s.em, "the second payment in flight", |st| {
        st.in_flight == 1
    })
    .await;
    set_failure(addr, false).await;
    assert_eq!(second.await.unwrap().status, 200);
    assert_eq!(
        get(addr, &format!("/payments/{}", uuid(2))).await.status,
        200
    );
    assert_eq!(
        get(addr, &format!("/payments/{}", uuid(1))).await.status,
        404
    );
}

#[tokio::test]
async fn a_request_whose_client_gave_up_is_still_inserted_after_its_delay() {
    let s = start(config()).await;
    set_delay(s.addr, 1000).await;
    let id = uuid(7);
    let mut conn = TcpStream::connect(s.addr).await.unwrap();
    let body = payment(&id, "20.05", "2025-07-10T12:34:56.789Z");
    conn.write_all(&request_bytes("POST", "/payments", None, Some(&body)))
        .await
        .unwrap();
    until(&s.em, "the payment past the limiter", |st| {
        st.in_flight == 1
    })
    .await;
    drop(conn);
    // Not stored before its delay is over...
    assert_eq!(get(s.addr, &format!("/payments/{id}")).await.status, 404);
    // ...and stored after it, though nobody is waiting for the answer.
    until(&s.em, "the abandoned payment to finish", |st| {
        st.in_flight == 0
    })
    .await;
    let r = get(s.addr, &format!("/payments/{id}")).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert!(r.body.contains(r#""amount":20.05"#));
}

#[tokio::test]
async fn the_concurrency_limiter_admits_then_queues_oldest_first_then_refuses() {
    let s = start(Config {
        max_in_flight: 2,
        max_queued: 1,
        ..config()
    })
    .await;
    let addr = s.addr;
    set_delay(addr, 300).await;
    let spawn_pay = |n: u32| {
        tokio::spawn(async move { pay(addr, &uuid(n), "1", "2025-07-10T12:00:00Z").await })
    };
    let a = spawn_pay(1);
    let b = spawn_pay(2);
    until(&s.em, "two payments in flight", |st| st.in_flight == 2).await;
    let c = spawn_pay(3);
    until(&s.em, "one payment queued", |st| st.queued == 1).await;
    let refused = pay(addr, &uuid(4), "1", "2025-07-10T12:00:00Z").await;
    assert_eq!(refused.status, 429, "{refused:?}");
    assert_eq!(refused.header("retry-after"), Some("5"));
    for h in [a, b, c] {
        assert_eq!(h.await.unwrap().status, 200);
    }
    assert_eq!(s.em.stats().payments, 3);
    assert_eq!(
        get(addr, &format!("/payments/{}", uuid(4))).await.status,
        404
    );
}

#[tokio::test]
async fn the_health_limiter_holds_two_waiters_and_refuses_a_third_caller() {
    let s = start(config()).await;
    let addr = s.addr;
    let r = get(addr, "/payments/service-health").await;
    assert_eq!(
        (r.status, r.body.as_str()),
        (200, r#"{"failing":false,"minResponseTime":0}"#)
    );
    let b = tokio::spawn(async move { get(addr, "/payments/service-health").await });
    until(&s.em, "one health waiter", |st| st.health_waiting == 1).await;
    let c = tokio::spawn(async move { get(addr, "/payments/service-health").await });
    until(&s.em, "two health waiters", |st| st.health_waiting == 2).await;
    let refused = get(addr, "/payments/service-health").await;
    assert_eq!(refused.status, 429);
    assert_eq!(refused.header("retry-after"), Some("5"));
    // Waiters answer with the configuration of when they get through.
    set_delay(addr, 100).await;
    set_failure(addr, true).await;
    s.em.open_health_window();
    let rb = b.await.unwrap();
    assert_eq!(
        (rb.status, rb.body.as_str()),
        (200, r#"{"failing":true,"minResponseTime":100}"#)
    );
    // One permit per window: the second waiter is still waiting.
    assert_eq!(s.em.stats().health_waiting, 1);
    s.em.open_health_window();
    assert_eq!(c.await.unwrap().status, 200);
    // That window's permit is spent; the next one is free for a single caller.
    assert_eq!(s.em.stats().health_waiting, 0);
    s.em.open_health_window();
    assert_eq!(get(addr, "/payments/service-health").await.status, 200);
}

#[tokio::test]
async fn summaries_are_inclusive_at_exact_millisecond_edges() {
    let s = start(config()).await;
    let times = [
        "2025-07-10T12:34:55.999Z",
        "2025-07-10T12:34:56.000Z",
        "2025-07-10T12:34:56.500Z",
        "2025-07-10T12:34:56.999Z",
        "2025-07-10T12:34:57.000Z",
    ];
    for (n, at) in times.iter().enumerate() {
        assert_eq!(pay(s.addr, &uuid(n as u32), "19.90", at).await.status, 200);
    }
    let window = |from: &str, to: &str| format!("?from={from}&to={to}");
    let r = summary(
        s.addr,
        &window("2025-07-10T12:34:56.000Z", "2025-07-10T12:34:56.999Z"),
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.body,
        r#"{"totalRequests":3,"totalAmount":59.70,"totalFee":2.9850,"feePerTransaction":0.05}"#
    );
    let count = |r: &Reply| -> u64 {
        let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
        v["totalRequests"].as_u64().unwrap()
    };
    let cases = [
        (
            window("2025-07-10T12:34:56.001Z", "2025-07-10T12:34:56.998Z"),
            1,
        ),
        (
            window("2025-07-10T12:34:56.000Z", "2025-07-10T12:34:56.000Z"),
            1,
        ),
        (
            window("2025-07-10T12:34:55.999Z", "2025-07-10T12:34:57.000Z"),
            5,
        ),
        (
            window("2025-07-10T12:34:56.999Z", "2025-07-10T12:34:56.000Z"),
            0,
        ),
        // Other ISO-8601 forms: seconds only, an offset, percent-encoding.
        (window("2025-07-10T12:34:56Z", "2025-07-10T12:34:57Z"), 4),
        (
            window("2025-07-10T09:34:56-03:00", "2025-07-10T12%3A34%3A56.5Z"),
            2,
        ),
        // A single bound selects everything (both are needed for the filter).
        ("?from=2025-07-10T12:34:57.000Z".to_string(), 5),
        ("?to=2025-07-10T12:34:55.000Z".to_string(), 5),
        (String::new(), 5),
    ];
    for (q, expected) in cases {
        let r = summary(s.addr, &q).await;
        assert_eq!((r.status, count(&r)), (200, expected), "{q}: {r:?}");
    }
    let bad = summary(s.addr, "?from=yesterday&to=2025-07-10T12:34:57Z").await;
    assert_eq!(bad.status, 400);
    assert!(bad.body.contains(r#""field":"from""#));
}

#[tokio::test]
async fn admin_endpoints_need_the_current_token() {
    let s = start(config()).await;
    let admin_calls = [
        ("GET", "/admin/payments-summary", None),
        (
            "PUT",
            "/admin/configurations/token",
            Some(r#"{"token":"x"}"#),
        ),
        ("PUT", "/admin/configurations/delay", Some(r#"{"delay":1}"#)),
        (
            "PUT",
            "/admin/configurations/failure",
            Some(r#"{"failure":true}"#),
        ),
        ("POST", "/admin/purge-payments", None),
    ];
    for (m, p, body) in admin_calls {
        for token in [None, Some("wrong")] {
            let r = call(s.addr, m, p, token, body).await;
            assert_eq!(r.status, 401, "{m} {p} {token:?}");
            assert!(r.body.contains("\"error\""));
        }
    }
    let r = admin(
        s.addr,
        "PUT",
        "/admin/configurations/token",
        Some(r#"{"token":"s3cret"}"#),
    )
    .await;
    assert_eq!((r.status, r.body.as_str()), (204, ""));
    assert_eq!(summary(s.addr, "").await.status, 401);
    let r = call(
        s.addr,
        "GET",
        "/admin/payments-summary",
        Some("s3cret"),
        None,
    )
    .await;
    assert_eq!(r.status, 200);
    let r = call(
        s.addr,
        "PUT",
        "/admin/configurations/token",
        Some("s3cret"),
        Some(r#"{"token":""}"#),
    )
    .await;
    assert_eq!(r.status, 400);
}

#[tokio::test]
async fn configuration_endpoints_answer_what_was_and_what_is() {
    let s = start(config()).await;
    let r = admin(
        s.addr,
        "PUT",
        "/admin/configurations/delay",
        Some(r#"{"delay":100}"#),
    )
    .await;
    assert_eq!(
        (r.status, r.body.as_str()),
        (200, r#"{"config":"delay","was":0,"is":100}"#)
    );
    let r = admin(
        s.addr,
        "PUT",
        "/admin/configurations/delay",
        Some(r#"{"delay":0}"#),
    )
    .await;
    assert_eq!(r.body, r#"{"config":"delay","was":100,"is":0}"#);
    let r = admin(
        s.addr,
        "PUT",
        "/admin/configurations/failure",
        Some(r#"{"failure":true}"#),
    )
    .await;
    assert_eq!(
        (r.status, r.body.as_str()),
        (200, r#"{"config":"failure","was":false,"is":true}"#)
    );
    let r = admin(
        s.addr,
        "PUT",
        "/admin/configurations/failure",
        Some(r#"{"failure":true}"#),
    )
    .await;
    assert_eq!(r.body, r#"{"config":"failure","was":true,"is":true}"#);
    for bad in [r#"{"delay":-5}"#, r#"{"delay":"5"}"#, "{}", "nope"] {
        let r = admin(s.addr, "PUT", "/admin/configurations/delay", Some(bad)).await;
        assert_eq!(r.status, 400, "{bad}");
    }
}

#[tokio::test]
async fn purge_clears_payments_and_keeps_delay_failure_and_token() {
    let s = start(config()).await;
    assert_eq!(
        pay(s.addr, &uuid(1), "19.90", "2025-07-10T12:34:56Z")
            .await
            .status,
        200
    );
    set_delay(s.addr, 50).await;
    set_failure(s.addr, true).await;
    let r = admin(
        s.addr,
        "PUT",
        "/admin/configurations/token",
        Some(r#"{"token":"kept"}"#),
    )
    .await;
    assert_eq!(r.status, 204);
    let r = call(s.addr, "POST", "/admin/purge-payments", Some("kept"), None).await;
    assert_eq!(
        (r.status, r.body.as_str()),
        (200, r#"{"message":"All payments purged."}"#)
    );
    assert_eq!(
        get(s.addr, &format!("/payments/{}", uuid(1))).await.status,
        404
    );
    let r = call(s.addr, "GET", "/admin/payments-summary", Some("kept"), None).await;
    assert!(
        r.body
            .starts_with(r#"{"totalRequests":0,"totalAmount":0.00,"#),
        "{r:?}"
    );
    assert_eq!(
        summary(s.addr, "").await.status,
        401,
        "the old token must stay invalid"
    );
    let r = get(s.addr, "/payments/service-health").await;
    assert_eq!(r.body, r#"{"failing":true,"minResponseTime":50}"#);
    // The purged correlationId can be stored again (after the kept delay, if not failing).
    let r = call(
        s.addr,
        "PUT",
        "/admin/configurations/failure",
        Some("kept"),
        Some(r#"{"failure":false}"#),
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(
        pay(s.addr, &uuid(1), "19.90", "2025-07-10T12:34:56Z")
            .await
            .status,
        200
    );
}

#[tokio::test]
async fn unknown_routes_are_404_and_wrong_methods_405() {
    let s = start(config()).await;
    let r = get(s.addr, "/nowhere").await;
    assert_eq!(r.status, 404);
    assert!(r.body.contains("\"error\""));
    assert_eq!(get(s.addr, "/payments-summary").await.status, 404);
    let r = get(s.addr, "/payments").await;
    assert_eq!((r.status, r.header("allow")), (405, Some("POST")));
    let r = call(s.addr, "DELETE", "/payments/service-health", None, None).await;
    assert_eq!((r.status, r.header("allow")), (405, Some("GET")));
    let r = call(
        s.addr,
        "GET",
        "/admin/configurations/delay",
        Some(TOKEN),
        None,
    )
    .await;
    assert_eq!((r.status, r.header("allow")), (405, Some("PUT")));
}

#[tokio::test]
async fn the_public_serve_takes_flags_and_stops_on_shutdown() {
    let listener = Listener::bind(&"127.0.0.1:0".parse().unwrap()).unwrap();
    let ListenAddr::Tcp(addr) = listener.local_addr().unwrap() else {
        panic!("bound TCP, got something else");
    };
    let args = emulator::Args {
        listen: "127.0.0.1:0".parse().unwrap(),
        fee: 0.15,
        token: "tok".into(),
        rate_limit_secs: 5,
    };
    let shutdown = CancellationToken::new();
    let server = tokio::spawn(emulator::serve(listener, args, shutdown.clone()));
    let r = call(addr, "GET", "/admin/payments-summary", Some("tok"), None).await;
    assert_eq!(
        r.body,
        r#"{"totalRequests":0,"totalAmount":0.00,"totalFee":0.0000,"feePerTransaction":0.15}"#
    );
    assert_eq!(get(addr, "/payments/service-health").await.status, 200);
    shutdown.cancel();
    tokio::time::timeout(PATIENCE, server)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}
