//! The service end to end on real sockets, in one process: two emulated processors,
//! the worker and two api instances, each on its own 127.0.0.1 port (the worker on a
//! Unix socket). Checks the promises of SPEC §1: every accepted payment reaches
//! exactly one processor once, the summary equals the processors' books for several
//! windows (also while they are slow or failing), duplicates count once, bad input
//! changes nothing.

mod common;

use common::{get, post_json, request, test_dir, uuid, wait_for, Answer};
use netio::{CancellationToken, ListenAddr, Listener};
use std::path::PathBuf;
use std::time::{Duration, Instant};

const TOKEN: (&str, &str) = ("X-Rinha-Token", "123");

struct Harness {
    rt: Option<tokio::runtime::Runtime>,
    shutdown: CancellationToken,
    apis: [String; 2],
    default: String,
    fallback: String,
}

impl Harness {
    fn start(name: &str, tweak: impl FnOnce(&mut worker::Config)) -> Harness {
        let dir = test_dir(name);
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let shutdown = CancellationToken::new();
        let (apis, default, fallback) = rt.block_on(async {
            let tcp = || Listener::bind(&"127.0.0.1:0".parse().unwrap()).unwrap();
            let url = |l: &Listener| match l.local_addr().unwrap() {
                ListenAddr::Tcp(a) => format!("http://{a}"),
                ListenAddr::Unix(_) => unreachable!(),
            };
            let mut procs = Vec::new();
            for fee in [0.05, 0.15] {
                let l = tcp();
                procs.push(url(&l));
                let cfg = emulator::Config {
                    fee,
                    token: "123".into(),
                    health_window: Duration::from_millis(200),
                    health_waiters: 2,
                    max_in_flight: 800,
                    max_queued: 500,
                    manual_health_windows: false,
                };
                tokio::spawn(emulator::serve_config(l, cfg, shutdown.clone()));
            }
            let socket: PathBuf = dir.join("worker.sock");
            let mut wcfg = worker::Config::new(&procs[0], &procs[1]);
            wcfg.health_interval = Duration::from_millis(200);
            wcfg.engine.probe_interval_us = 100_000;
            tweak(&mut wcfg);
            let wl = tokio::net::UnixListener::bind(&socket).unwrap();
            tokio::spawn(worker::serve(wcfg, wl, shutdown.clone()));
            let mut apis = Vec::new();
            for _ in 0..2 {
                let l = tcp();
                apis.push(url(&l));
                tokio::spawn(api::serve(
                    api::Config::new(socket.clone()),
                    l,
                    shutdown.clone(),
                ));
            }
            (
                [apis[0].clone(), apis[1].clone()],
                procs[0].clone(),
                procs[1].clone(),
            )
        });
        let h = Harness {
            rt: Some(rt),
            shutdown,
            apis,
            default,
            fallback,
        };
        wait_for(
            Duration::from_secs(5),
            "the api to reach the worker",
            || (get(&h.apis[0], "/health").ok()?.status == 200).then_some(()),
        );
        h
    }

    fn configure(&self, processor: &str, what: &str, value: &str) {
        let body = format!(r#"{{"{what}":{value}}}"#);
        let r = request(
            processor,
            "PUT",
            &format!("/admin/configurations/{what}"),
            &[TOKEN],
            Some(&body),
        )
        .unwrap();
        assert_eq!(r.status, 200, "{}", r.body);
    }

    fn pay(&self, api: usize, id: &str, amount: &str) -> Answer {
        post_json(
            &self.apis[api % 2],
            "/payments",
            &format!(r#"{{"correlationId":"{id}","amount":{amount}}}"#),
        )
        .unwrap()
    }

    fn health(&self) -> serde_json::Value {
        get(&self.apis[0], "/health").unwrap().json()
    }

    /// Waits until everything accepted is processed.
    fn drain(&self, limit: Duration) {
        wait_for(limit, "the queue to drain", || {
            let h = self.health();
            let processed =
                h["processed"]["default"].as_u64()? + h["processed"]["fallback"].as_u64()?;
            (h["queue_depth"] == 0
                && h["in_flight"] == 0
                && Some(processed) == h["accepted"].as_u64())
            .then_some(())
        });
    }

    /// (count, amount in cents) per processor, from the backend (through `api`).
    fn backend(&self, api: usize, query: &str) -> [(u64, i64); 2] {
        let v = get(&self.apis[api], &format!("/payments-summary{query}"))
            .unwrap()
            .json();
        ["default", "fallback"].map(|p| {
            (
                v[p]["totalRequests"].as_u64().unwrap(),
                cents(&v[p]["totalAmount"]),
            )
        })
    }

    /// The same from the processors' own books.
    fn books(&self, query: &str) -> [(u64, i64); 2] {
        [&self.default, &self.fallback].map(|base| {
            let r = request(
                base,
                "GET",
                &format!("/admin/payments-summary{query}"),
                &[TOKEN],
                None,
            )
            .unwrap();
            let v = r.json();
            (
                v["totalRequests"].as_u64().unwrap(),
                cents(&v["totalAmount"]),
            )
        })
    }

    fn stored_at(&self, id: &str) -> (bool, bool) {
        let has = |base: &str| get(base, &format!("/payments/{id}")).unwrap().status == 200;
        (has(&self.default), has(&self.fallback))
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.shutdown.cancel();
        if let Some(rt) = self.rt.take() {
            rt.shutdown_timeout(Duration::from_secs(3));
        }
    }
}

fn cents(v: &serde_json::Value) -> i64 {
    (v.as_f64().unwrap() * 100.0).round() as i64
}

fn iso(t: std::time::SystemTime) -> String {
    let us = t.duration_since(std::time::UNIX_EPOCH).unwrap().as_micros() as i64;
    model::Micros(us).to_millis_string()
}

/// One api instance on its own thread and port, with no worker behind it: for the
/// checks that happen before the worker is asked (input limits) or without it.
struct LoneApi {
    addr: std::net::SocketAddr,
    shutdown: CancellationToken,
    server: Option<std::thread::JoinHandle<anyhow::Result<()>>>,
}

impl LoneApi {
    fn start(name: &str, tweak: impl FnOnce(&mut api::Config)) -> LoneApi {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let l = rt.block_on(async { Listener::bind(&"127.0.0.1:0".parse().unwrap()).unwrap() });
        let addr = match l.local_addr().unwrap() {
            ListenAddr::Tcp(a) => a,
            ListenAddr::Unix(_) => unreachable!(),
        };
        let mut cfg = api::Config::new(test_dir(name).join("no-worker.sock"));
        tweak(&mut cfg);
        let shutdown = CancellationToken::new();
        let sd = shutdown.clone();
        let server = std::thread::spawn(move || rt.block_on(api::serve(cfg, l, sd)));
        LoneApi {
            addr,
            shutdown,
            server: Some(server),
        }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn connect(&self) -> std::net::TcpStream {
        let s = wait_for(Duration::from_secs(5), "the api", || {
            std::net::TcpStream::connect(self.addr).ok()
        });
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s
    }
}

impl Drop for LoneApi {
    fn drop(&mut self) {
        self.shutdown.cancel();
        if let Some(server) = self.server.take() {
            let r = server.join();
            if !std::thread::panicking() {
                r.unwrap().unwrap();
            }
        }
    }
}

#[test]
fn every_payment_reaches_one_processor_once_and_summaries_agree() {
    // No settle deadline: a failing default sends payments to the fallback at once, so
    // that both processors take part (the default holds them up to a minute).
    let h = Harness::start("once", |c| c.engine.settle_deadline_us = 0);
    let t0 = std::time::SystemTime::now() - Duration::from_secs(1);
    let mut ids = Vec::new();
    // Phase 1: both healthy. Phase 2: default failing. Phase 3: default back, slow.
    for phase in 0..3 {
        match phase {
            1 => h.configure(&h.default, "failure", "true"),
            2 => {
                h.configure(&h.default, "failure", "false");
                h.configure(&h.default, "delay", "50");
            }
            _ => {}
        }
        for k in 0..60 {
            let id = uuid();
            let r = h.pay(k, &id, "19.90");
            assert!(r.status == 202, "{} {}", r.status, r.body);
            ids.push(id);
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    h.drain(Duration::from_secs(20));
    let mut on = [0u64; 2];
    for id in &ids {
        match h.stored_at(id) {
            (true, false) => on[0] += 1,
            (false, true) => on[1] += 1,
            other => panic!("{id} stored at (default, fallback) = {other:?}"),
        }
    }
    assert_eq!(on[0] + on[1], 180);
    assert!(
        on[1] > 0,
        "default failing must have sent some to the fallback"
    );
    let t1 = std::time::SystemTime::now() + Duration::from_secs(1);
    let windows = [
        String::new(),
        format!("?from={}&to={}", iso(t0), iso(t1)),
        format!("?from={}", iso(t0 + Duration::from_millis(1500))),
        format!("?to={}", iso(t0 + Duration::from_millis(1500))),
        format!(
            "?from={}&to={}",
            iso(t0 + Duration::from_millis(1200)),
            iso(t0 + Duration::from_millis(1700))
        ),
    ];
    for w in &windows {
        // The processors count everything when a bound is missing; payroute treats it
        // as unbounded on that side (SPEC §1): ask the books the equivalent window.
        let mut books_w = w.clone();
        if w.contains("from=") && !w.contains("to=") {
            books_w.push_str("&to=2999-01-01T00:00:00.000Z");
        } else if w.contains("to=") && !w.contains("from=") {
            books_w = format!("?from=1970-01-01T00:00:00.000Z&{}", &w[1..]);
        }
        let books = h.books(&books_w);
        assert_eq!(h.backend(0, w), books, "window {w:?}");
        assert_eq!(
            h.backend(1, w),
            books,
            "window {w:?} through the second api"
        );
    }
    assert_eq!(h.backend(0, "")[0].0 + h.backend(0, "")[1].0, 180);
    assert_eq!(h.backend(0, "")[0].1 + h.backend(0, "")[1].1, 180 * 1990);
}

#[test]
fn sends_leave_in_batches_no_more_often_than_the_send_batch_interval() {
    let h = Harness::start("batch", |c| c.send_batch = Duration::from_secs(2));
    // When the default processor stored a payment, with the requestedAt it was sent.
    let sent_at = |id: &str| {
        let r = get(&h.default, &format!("/payments/{id}")).ok()?;
        (r.status == 200).then(|| {
            let at = r.json()["requestedAt"].as_str().unwrap().to_string();
            model::Micros::parse(&at).unwrap().0
        })
    };
    // Nothing was sent for a while: the first payment leaves at once.
    let first = uuid();
    let posted = Instant::now();
    assert_eq!(h.pay(0, &first, "1.00").status, 202);
    let first_at = wait_for(Duration::from_secs(5), "the first payment sent", || {
        sent_at(&first)
    });
    assert!(
        posted.elapsed() < Duration::from_millis(1500),
        "the first payment after a quiet time waited {:?}",
        posted.elapsed()
    );
    // Two more at once: they wait for the interval since that send, then leave together.
    let (a, b) = (uuid(), uuid());
    assert_eq!(h.pay(1, &a, "1.00").status, 202);
    assert_eq!(h.pay(0, &b, "1.00").status, 202);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        (sent_at(&a), sent_at(&b)),
        (None, None),
        "sent within 2 s of the last batch"
    );
    let limit = Duration::from_secs(5);
    let a_at = wait_for(limit, "the second payment sent", || sent_at(&a));
    let b_at = wait_for(limit, "the third payment sent", || sent_at(&b));
    assert!(
        a_at - first_at >= 1_900_000,
        "{} µs after the first batch",
        a_at - first_at
    );
    assert!(
        (a_at - b_at).abs() <= 50_000,
        "not one batch: {a_at} and {b_at}"
    );
}

#[test]
fn summary_agrees_with_the_books_while_processors_are_slow_or_failing() {
    let h = Harness::start("live", |_| {});
    h.configure(&h.default, "delay", "300");
    h.configure(&h.fallback, "delay", "20");
    let started = Instant::now();
    let mut next_check = Duration::from_millis(2500);
    let mut checks = 0;
    let mut k = 0;
    while started.elapsed() < Duration::from_secs(6) {
        if started.elapsed() > Duration::from_secs(3) && k == 150 {
            h.configure(&h.default, "failure", "true");
        }
        assert_eq!(h.pay(k, &uuid(), "20.05").status, 202);
        k += 1;
        std::thread::sleep(Duration::from_millis(10));
        if started.elapsed() >= next_check {
            // The official checker's window: [now - 15 s, now - 2 s].
            let now = std::time::SystemTime::now();
            let w = format!(
                "?from={}&to={}",
                iso(now - Duration::from_secs(15)),
                iso(now - Duration::from_secs(2))
            );
            assert_eq!(
                h.backend(k % 2, &w),
                h.books(&w),
                "check {checks} at {:?}",
                started.elapsed()
            );
            checks += 1;
            next_check += Duration::from_millis(700);
        }
    }
    assert!(checks >= 4);
    h.drain(Duration::from_secs(20));
    assert_eq!(h.backend(0, ""), h.books(""));
}

#[test]
fn duplicates_count_once() {
    let h = Harness::start("dup", |_| {});
    let id = uuid();
    assert_eq!(h.pay(0, &id, "19.90").status, 202);
    let again = h.pay(1, &id, "19.90");
    assert_eq!(again.status, 200, "{}", again.body);
    // The same id (in any case) with another amount: a reused key, refused (409).
    let other = h.pay(0, &id.to_uppercase(), "5.00");
    assert_eq!(other.status, 409, "{}", other.body);
    assert_eq!(h.pay(0, &id.to_uppercase(), "19.9").status, 200);
    h.drain(Duration::from_secs(10));
    assert_eq!(h.backend(0, "")[0].0 + h.backend(0, "")[1].0, 1);
    assert_eq!(h.books(""), h.backend(1, ""));
    // The same figures in Prometheus text, with the api's own series.
    let m = get(&h.apis[0], "/metrics").unwrap();
    assert_eq!(m.status, 200);
    for line in [
        "payroute_payments_accepted_total 1\n",
        "payroute_payments_duplicate_total 2\n",
        "payroute_payments_conflict_total 1\n",
        "# TYPE payroute_payments_processed_total counter\n",
        "payroute_in_flight{processor=\"fallback\"} 0\n",
        "payroute_processor_request_duration_seconds_count{processor=\"default\"}",
        "payroute_http_requests_total{route=\"payments\",class=\"2xx\"}",
        "payroute_worker_up 1\n",
    ] {
        assert!(m.body.contains(line), "{line:?} missing from:\n{}", m.body);
    }
    let processed: f64 = ["default", "fallback"]
        .iter()
        .map(|p| {
            let key = format!("payroute_payments_processed_total{{processor=\"{p}\"}} ");
            let at = m.body.find(&key).unwrap() + key.len();
            m.body[at..].lines().next().unwrap().parse::<f64>().unwrap()
        })
        .sum();
    assert_eq!(processed, 1.0);
}

#[test]
fn bad_input_gets_400_and_changes_nothing() {
    let h = Harness::start("bad", |_| {});
    let id = uuid();
    let cases: &[(&str, &str)] = &[
        ("not json", "body"),
        ("{}", "correlationId"),
        (r#"{"correlationId":"nope","amount":1}"#, "correlationId"),
        (&format!(r#"{{"correlationId":"{id}"}}"#), "amount"),
        (
            &format!(r#"{{"correlationId":"{id}","amount":-3}}"#),
            "amount",
        ),
        (
            &format!(r#"{{"correlationId":"{id}","amount":0}}"#),
            "amount",
        ),
        (
            &format!(r#"{{"correlationId":"{id}","amount":"1.00"}}"#),
            "amount",
        ),
        (
            &format!(r#"{{"correlationId":"{id}","amount":1.001}}"#),
            "amount",
        ),
    ];
    for (body, field) in cases {
        let r = post_json(&h.apis[0], "/payments", body).unwrap();
        assert_eq!(r.status, 400, "{body}");
        assert_eq!(r.json()["field"], *field, "{body}");
    }
    let huge = format!(
        r#"{{"correlationId":"{id}","amount":1,"pad":"{}"}}"#,
        "x".repeat(10_000)
    );
    assert_eq!(
        post_json(&h.apis[0], "/payments", &huge).unwrap().status,
        413
    );
    for q in [
        "?from=yesterday",
        "?to=2025-13-01T00:00:00Z",
        "?from=2025-07-10T13:00:00Z&to=2025-07-10T12:00:00Z",
    ] {
        let r = get(&h.apis[1], &format!("/payments-summary{q}")).unwrap();
        assert_eq!(r.status, 400, "{q}");
        assert!(r.json()["error"].is_string());
    }
    assert_eq!(get(&h.apis[0], "/nope").unwrap().status, 404);
    assert_eq!(
        request(&h.apis[0], "DELETE", "/payments", &[], None)
            .unwrap()
            .status,
        405
    );
    // Nothing was queued: the id is still new.
    assert_eq!(h.health()["accepted"], 0);
    assert_eq!(h.pay(0, &id, "1").status, 202);
}

#[test]
fn purge_empties_everything() {
    let h = Harness::start("purge", |_| {});
    for k in 0..10 {
        h.pay(k, &uuid(), "1.50");
    }
    h.drain(Duration::from_secs(10));
    let r = post_json(&h.apis[1], "/purge-payments", "").unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(h.backend(0, ""), [(0, 0), (0, 0)]);
    assert_eq!(h.health()["accepted"], 0);
}

#[test]
fn queue_full_and_worker_down_answer_503_json() {
    let h = Harness::start("full", |c| c.engine.queue_capacity = 2);
    // Both processors failing: nothing drains, so the queue fills.
    h.configure(&h.default, "failure", "true");
    h.configure(&h.fallback, "failure", "true");
    h.configure(&h.default, "delay", "2000");
    h.configure(&h.fallback, "delay", "2000");
    std::thread::sleep(Duration::from_millis(500));
    let statuses: Vec<u16> = (0..6).map(|k| h.pay(k, &uuid(), "1").status).collect();
    assert!(statuses.contains(&503), "{statuses:?}");
    // An api whose worker is unreachable.
    let lone = LoneApi::start("nowhere", |_| {});
    let url = lone.url();
    let r = wait_for(Duration::from_secs(5), "the lonely api", || {
        post_json(
            &url,
            "/payments",
            &format!(r#"{{"correlationId":"{}","amount":1}}"#, uuid()),
        )
        .ok()
    });
    assert_eq!(r.status, 503);
    assert!(r.json()["error"].as_str().unwrap().contains("worker"));
    assert_eq!(get(&url, "/health").unwrap().status, 503);
}

#[test]
fn a_truncated_body_gets_408_and_changes_nothing() {
    use std::io::{Read, Write};
    let lone = LoneApi::start("truncated", |c| c.body_timeout = Duration::from_millis(200));
    let mut s = lone.connect();
    // Declares 100 bytes, sends 10, then waits.
    s.write_all(b"POST /payments HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"correlat").unwrap();
    let mut buf = [0u8; 512];
    let n = s.read(&mut buf).unwrap();
    let head = String::from_utf8_lossy(&buf[..n]);
    assert!(head.starts_with("HTTP/1.1 408"), "{head}");
    assert!(head.contains("\"field\":\"body\""), "{head}");
}

/// Sends `GET /health` on `s` and reads the one answer (head and `content-length`
/// body), leaving the connection open; `None` if the server closed it instead.
fn answered_once(mut s: std::net::TcpStream) -> Option<std::net::TcpStream> {
    use std::io::{Read, Write};
    s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .ok()?;
    let mut got = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = s.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        got.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&got);
        if let Some(end) = text.find("\r\n\r\n") {
            let length: usize = text[..end]
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse().unwrap_or(0))
                })
                .unwrap_or(0);
            if got.len() >= end + 4 + length {
                return Some(s);
            }
        }
    }
}

#[test]
fn slow_heads_huge_heads_and_too_many_connections_are_cut() {
    use std::io::{Read, Write};
    let lone = LoneApi::start("limits", |c| {
        // Long enough that the two idle connections held below are still open when
        // the third arrives on a loaded machine (CI saw them cut at 300 ms, which freed
        // a slot and got the third answered), short enough for the slow-head check.
        c.limits.header_timeout = Duration::from_millis(1500);
        c.limits.max_header_bytes = 8192;
        c.limits.max_connections = 2;
    });
    let connect = || lone.connect();
    // Reads until the server closes; what it sent, if anything.
    let drain = |mut s: std::net::TcpStream| {
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        String::from_utf8_lossy(&out).into_owned()
    };

    // A head that never ends: cut after the header timeout (a 408 or a bare close).
    let started = Instant::now();
    let mut slow = connect();
    slow.write_all(b"POST /payments HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    let answer = drain(slow);
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 408"),
        "{answer}"
    );
    assert!(started.elapsed() < Duration::from_secs(4));

    // A head larger than the limit: 431 or a close, never a 2XX.
    let mut huge = connect();
    let big = format!(
        "GET /health HTTP/1.1\r\nHost: x\r\nX-Pad: {}\r\n\r\n",
        "a".repeat(64 * 1024)
    );
    let _ = huge.write_all(big.as_bytes());
    let answer = drain(huge);
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 431"),
        "{}",
        &answer[..answer.len().min(200)]
    );

    // Two connections held open; a third is closed on arrival. Each of the two is
    // answered once first, so both are known to be counted: the server keeps a
    // connection it closed (the huge head's above) for up to a second of lingering,
    // and a connect made meanwhile is refused in its place; so is one whose accept
    // the server's thread, descheduled, takes after the lingering one's end. Either
    // way the pair is tried again until both are in.
    let (a, b) = wait_for(Duration::from_secs(5), "two connections held open", || {
        Some((answered_once(connect())?, answered_once(connect())?))
    });
    let c = connect();
    let mut c2 = c.try_clone().unwrap();
    let _ = c2.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(
        drain(c),
        "",
        "a connection beyond the cap must be closed unanswered"
    );
    drop((a, b));
}
