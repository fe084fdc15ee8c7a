//! Several workers sharing a real PostgreSQL (started by the test: `common/pg.rs`),
//! under the faults a deployment of several hosts meets, checked payment by payment:
//! no correlationId is ever stored by both processors, every acknowledged payment is
//! stored exactly once, and the summary (asked through each api) equals the
//! processors' books at the end.
//!
//! - `a_worker_killed_mid_run`: kill -9 of a worker during load; its payments (some in
//!   flight to a processor that takes 300 ms) are taken over once its lease lapses.
//! - `a_worker_paused_past_its_lease`: SIGSTOP of a worker for longer than its lease
//!   during load, then SIGCONT: it must not send anything it no longer owns, and what
//!   it had on the wire is resolved by the new owner on the same processor.
//! - `postgres_killed_and_restarted`: kill -9 of PostgreSQL during load, then a start on
//!   the same data: the workers reconnect, refusals meanwhile are 503s the clients
//!   retry, nothing acknowledged is lost or doubled.
//! - `a_lost_accept_answer`: a proxy between a worker and PostgreSQL cuts the
//!   connection right after the database committed an accept, before its answer
//!   reaches the worker: the client gets 503, retries, gets 200 (a duplicate), and
//!   the payment must still be forwarded.
//!
//! Every process is started by the test and killed by PID; PostgreSQL is stopped by
//! its harness.

mod common;

use common::pg::TestPg;
use common::sys::Proc;
use common::{free_port, get, post_json, request, test_dir, uuid, wait_for};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const TOKEN: (&str, &str) = ("X-Rinha-Token", "123");

/// Processors, workers sharing `ledger`, two apis listing every worker.
struct Cluster {
    dir: PathBuf,
    procs: [String; 2],
    _processors: Vec<Proc>,
    workers: Vec<Option<Proc>>,
    worker_args: Vec<Vec<String>>,
    apis: Vec<String>,
    _api_procs: Vec<Proc>,
}

impl Cluster {
    /// `ledgers[k]` is worker k's `--ledger` URL (all the same database, maybe through
    /// a proxy).
    fn start(name: &str, ledgers: &[String], lease_ms: u64) -> Cluster {
        let dir = test_dir(&format!("scale-{name}"));
        let pp = [free_port(), free_port()];
        let procs = pp.map(|p| format!("http://127.0.0.1:{p}"));
        let mut processors = Vec::new();
        for (i, p) in pp.iter().enumerate() {
            let args = [
                "processor",
                "--listen",
                &format!("127.0.0.1:{p}"),
                "--fee",
                ["0.05", "0.15"][i],
                "--rate-limit-secs",
                "1",
            ]
            .map(String::from);
            let url = procs[i].clone();
            processors.push(Proc::spawn(
                &args,
                dir.join(format!("processor-{i}.log")),
                || {
                    request(&url, "GET", "/admin/payments-summary", &[TOKEN], None)
                        .is_ok_and(|r| r.status == 200)
                },
            ));
        }
        let ports: Vec<u16> = ledgers.iter().map(|_| free_port()).collect();
        let worker_args: Vec<Vec<String>> = ledgers
            .iter()
            .zip(&ports)
            .enumerate()
            .map(|(k, (url, port))| {
                [
                    "worker",
                    "--socket",
                    &format!("127.0.0.1:{port}"),
                    "--ledger",
                    url,
                    "--name",
                    &format!("worker{}", k + 1),
                    "--lease-ms",
                    &lease_ms.to_string(),
                    "--default-url",
                    &procs[0],
                    "--fallback-url",
                    &procs[1],
                    "--health-interval-ms",
                    "500",
                    "--request-timeout-ms",
                    "2000",
                ]
                .map(String::from)
                .to_vec()
            })
            .collect();
        let mut c = Cluster {
            dir,
            procs,
            _processors: processors,
            workers: ledgers.iter().map(|_| None).collect(),
            worker_args,
            apis: Vec::new(),
            _api_procs: Vec::new(),
        };
        for k in 0..ledgers.len() {
            c.start_worker(k);
        }
        let list: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
        for k in 0..2 {
            let port = free_port();
            let url = format!("http://127.0.0.1:{port}");
            let args = [
                "api",
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--worker-socket",
                &list.join(","),
            ]
            .map(String::from);
            let u = url.clone();
            c._api_procs.push(Proc::spawn(
                &args,
                c.dir.join(format!("api{k}.log")),
                || get(&u, "/health").is_ok_and(|r| r.status == 200),
            ));
            c.apis.push(url);
        }
        c
    }

    fn start_worker(&mut self, k: usize) {
        let args = self.worker_args[k].clone();
        let port = args[2].clone();
        self.workers[k] = Some(Proc::spawn(
            &args,
            self.dir.join(format!("worker{}.log", k + 1)),
            || TcpStream::connect(&port).is_ok(),
        ));
    }

    fn worker_pid(&self, k: usize) -> u32 {
        self.workers[k].as_ref().expect("running").child.id()
    }

    fn configure(&self, i: usize, what: &str, value: &str) {
        let body = format!(r#"{{"{what}":{value}}}"#);
        let path = format!("/admin/configurations/{what}");
        let r = request(&self.procs[i], "PUT", &path, &[TOKEN], Some(&body)).unwrap();
        assert_eq!(r.status, 200, "{path}: {}", r.body);
    }

    fn summary(&self, api: usize) -> [(u64, i64); 2] {
        let v = get(&self.apis[api], "/payments-summary").unwrap().json();
        ["default", "fallback"].map(|p| {
            (
                v[p]["totalRequests"].as_u64().unwrap_or(0),
                (v[p]["totalAmount"].as_f64().unwrap_or(0.0) * 100.0).round() as i64,
            )
        })
    }

    fn books(&self) -> [(u64, i64); 2] {
        [0, 1].map(|i| {
            let r = request(
                &self.procs[i],
                "GET",
                "/admin/payments-summary",
                &[TOKEN],
                None,
            )
            .unwrap()
            .json();
            (
                r["totalRequests"].as_u64().unwrap(),
                (r["totalAmount"].as_f64().unwrap() * 100.0).round() as i64,
            )
        })
    }

    /// Where each id is stored: (default, fallback).
    fn stored(&self, ids: &[String]) -> Vec<[bool; 2]> {
        ids.iter()
            .map(|id| {
                [0, 1].map(|i| {
                    let r = get(&self.procs[i], &format!("/payments/{id}")).unwrap();
                    assert!(matches!(r.status, 200 | 404), "{}", r.body);
                    r.status == 200
                })
            })
            .collect()
    }

    /// Waits until the books count `n` payments and stay there, then checks the
    /// summaries of both apis against them.
    fn settle(&self, n: u64) {
        let mut last = None;
        let settled = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            wait_for(
                Duration::from_secs(60),
                "every payment to be processed",
                || {
                    let b = self.books();
                    last = Some(b);
                    (b[0].0 + b[1].0 >= n && self.summary(0) == b).then_some(())
                },
            )
        }));
        assert!(settled.is_ok(), "never settled at {n}; books {last:?}");
        std::thread::sleep(Duration::from_secs(3));
        let books = self.books();
        assert_eq!(
            books[0].0 + books[1].0,
            n,
            "processed more than acknowledged"
        );
        assert_eq!(self.summary(0), books, "api 0's summary");
        assert_eq!(self.summary(1), books, "api 1's summary");
    }
}

/// Client threads posting payments through both apis until `stop`; returns the ids
/// acknowledged (2XX), with their amounts in cents.
struct Load {
    stop: Arc<AtomicBool>,
    acked: Arc<Mutex<Vec<(String, i64)>>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Load {
    fn start(apis: &[String], threads: usize, pause: Duration) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(Mutex::new(Vec::new()));
        let handles = (0..threads)
            .map(|t| {
                let (stop, acked) = (stop.clone(), acked.clone());
                let api = apis[t % apis.len()].clone();
                std::thread::spawn(move || {
                    let mut n = 0i64;
                    while !stop.load(Ordering::Relaxed) && n < 2_000 {
                        n += 1;
                        let id = uuid();
                        let cents = 100 + (n % 50);
                        let body = format!(
                            r#"{{"correlationId":"{id}","amount":{}.{:02}}}"#,
                            cents / 100,
                            cents % 100
                        );
                        // A refusal (503 while a worker or the database is down) is
                        // retried with the same id, as a careful client does, for up
                        // to 30 s.
                        for _ in 0..300 {
                            match post_json(&api, "/payments", &body).map(|a| a.status) {
                                Ok(200..=299) => {
                                    acked.lock().unwrap().push((id.clone(), cents));
                                    break;
                                }
                                _ => std::thread::sleep(Duration::from_millis(100)),
                            }
                        }
                        std::thread::sleep(pause);
                    }
                })
            })
            .collect();
        Load {
            stop,
            acked,
            threads: handles,
        }
    }

    fn acked(&self) -> usize {
        self.acked.lock().unwrap().len()
    }

    fn finish(mut self) -> Vec<(String, i64)> {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            t.join().unwrap();
        }
        std::mem::take(&mut *self.acked.lock().unwrap())
    }
}

/// Every acknowledged payment stored exactly once; nothing stored twice.
fn audit(c: &Cluster, acked: &[(String, i64)]) {
    let ids: Vec<String> = acked.iter().map(|(id, _)| id.clone()).collect();
    let stored = c.stored(&ids);
    let mut both = Vec::new();
    let mut none = Vec::new();
    for (id, s) in ids.iter().zip(&stored) {
        match s {
            [true, true] => both.push(id.clone()),
            [false, false] => none.push(id.clone()),
            _ => {}
        }
    }
    assert!(both.is_empty(), "stored by both processors: {both:?}");
    assert!(none.is_empty(), "acknowledged, never stored: {none:?}");
    let total: i64 = acked.iter().map(|(_, c)| c).sum();
    let books = c.books();
    assert_eq!(books[0].1 + books[1].1, total, "amounts");
}

fn signal(pid: u32, sig: &str) {
    let ok = std::process::Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .unwrap();
    assert!(ok.success(), "kill {sig} {pid}");
}

#[test]
fn a_worker_killed_mid_run() {
    let Some(pg) = TestPg::start("killed") else {
        return;
    };
    let url = pg.url();
    let mut c = Cluster::start("killed", &[url.clone(), url.clone(), url], 2_000);
    // Requests stay in flight a while: some are on the wire when the worker dies.
    c.configure(0, "delay", "300");
    let load = Load::start(&c.apis, 6, Duration::from_millis(10));
    wait_for(Duration::from_secs(30), "some payments", || {
        (load.acked() >= 300).then_some(())
    });
    let victim = c.worker_pid(0);
    let killed_at = Instant::now();
    c.workers[0].take().unwrap().kill();
    wait_for(Duration::from_secs(30), "more payments", || {
        (load.acked() >= 900).then_some(())
    });
    let acked = load.finish();
    c.settle(acked.len() as u64);
    audit(&c, &acked);
    println!(
        "scale-out: worker {victim} killed; {} payments acknowledged, all processed once, \
         settled {:.1} s after the kill",
        acked.len(),
        killed_at.elapsed().as_secs_f64()
    );
    drop(c);
    drop(pg);
}

#[test]
fn a_worker_paused_past_its_lease() {
    let Some(pg) = TestPg::start("paused") else {
        return;
    };
    let url = pg.url();
    let c = Cluster::start("paused", &[url.clone(), url], 2_000);
    c.configure(0, "delay", "300");
    let load = Load::start(&c.apis, 4, Duration::from_millis(10));
    wait_for(Duration::from_secs(30), "some payments", || {
        (load.acked() >= 200).then_some(())
    });
    let paused = c.worker_pid(0);
    signal(paused, "-STOP");
    // Past the lease (2 s): the other worker takes its payments over.
    std::thread::sleep(Duration::from_secs(5));
    signal(paused, "-CONT");
    wait_for(Duration::from_secs(30), "more payments", || {
        (load.acked() >= 800).then_some(())
    });
    let acked = load.finish();
    c.settle(acked.len() as u64);
    audit(&c, &acked);
    let log = std::fs::read_to_string(c.dir.join("worker1.log")).unwrap_or_default();
    assert!(
        log.contains("lease lapsed"),
        "the paused worker must notice it lost its lease:\n{log}"
    );
    println!(
        "scale-out: worker paused 5 s past a 2 s lease; {} payments, all processed once",
        acked.len()
    );
    drop(c);
    drop(pg);
}

#[test]
fn postgres_killed_and_restarted() {
    let Some(mut pg) = TestPg::start("crashed") else {
        return;
    };
    let url = pg.url();
    let c = Cluster::start("crashed", &[url.clone(), url], 2_000);
    c.configure(0, "delay", "100");
    let load = Load::start(&c.apis, 4, Duration::from_millis(10));
    wait_for(Duration::from_secs(30), "some payments", || {
        (load.acked() >= 200).then_some(())
    });
    let crashed_at = Instant::now();
    pg.crash_and_restart();
    let down = crashed_at.elapsed();
    let before = load.acked();
    wait_for(
        Duration::from_secs(60),
        "payments after the restart",
        || (load.acked() >= before + 400).then_some(()),
    );
    let acked = load.finish();
    c.settle(acked.len() as u64);
    audit(&c, &acked);
    println!(
        "scale-out: PostgreSQL killed and started again ({:.1} s down); {} payments, all \
         processed once, settled {:.1} s after the crash",
        down.as_secs_f64(),
        acked.len(),
        crashed_at.elapsed().as_secs_f64()
    );
    drop(c);
    drop(pg);
}

/// A TCP relay in front of PostgreSQL that, once armed, cuts the connection instead of
/// relaying the server's answer to the first `INSERT`: the insert has committed, the
/// worker never hears it.
struct CuttingProxy {
    port: u16,
    armed: Arc<AtomicBool>,
    cuts: Arc<AtomicUsize>,
}

impl CuttingProxy {
    fn start(upstream: u16) -> CuttingProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let armed = Arc::new(AtomicBool::new(false));
        let cuts = Arc::new(AtomicUsize::new(0));
        let (a, k) = (armed.clone(), cuts.clone());
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else {
                    continue;
                };
                let (a, k) = (a.clone(), k.clone());
                let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                std::thread::spawn(move || relay(client, server));
                std::thread::spawn(move || answers(s2, c2, a, k));
            }
        });
        CuttingProxy { port, armed, cuts }
    }
}

/// Client to server, byte for byte.
fn relay(mut from: TcpStream, mut to: TcpStream) {
    let mut buf = [0u8; 16 * 1024];
    while let Ok(n) = from.read(&mut buf) {
        if n == 0 || to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = to.shutdown(std::net::Shutdown::Both);
}

/// Server to client, message by message (type byte, length): an armed proxy closes
/// both sides on the first `CommandComplete` of an `INSERT` instead of relaying it.
fn answers(mut from: TcpStream, mut to: TcpStream, armed: Arc<AtomicBool>, cuts: Arc<AtomicUsize>) {
    let mut pending: Vec<u8> = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    // The server's first bytes may be the one-byte SSL refusal; the client does not ask.
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        pending.extend_from_slice(&buf[..n]);
        let mut out = 0;
        while pending.len() - out >= 5 {
            let len = u32::from_be_bytes(pending[out + 1..out + 5].try_into().unwrap()) as usize;
            if pending.len() - out < 1 + len {
                break;
            }
            let msg = &pending[out..out + 1 + len];
            if msg[0] == b'C'
                && msg[5..].starts_with(b"INSERT")
                && armed.swap(false, Ordering::SeqCst)
            {
                cuts.fetch_add(1, Ordering::SeqCst);
                let _ = to.write_all(&pending[..out]);
                let _ = to.shutdown(std::net::Shutdown::Both);
                let _ = from.shutdown(std::net::Shutdown::Both);
                return;
            }
            out += 1 + len;
        }
        if to.write_all(&pending[..out]).is_err() {
            break;
        }
        pending.drain(..out);
    }
    let _ = to.shutdown(std::net::Shutdown::Both);
}

#[test]
fn a_lost_accept_answer() {
    let Some(pg) = TestPg::start("lost-accept") else {
        return;
    };
    let proxy = CuttingProxy::start(pg.cluster().port());
    let through = format!("postgres://payroute@127.0.0.1:{}/payroute", proxy.port);
    let c = Cluster::start("lost-accept", &[through], 5_000);
    // Warm up: the ledger's connections are open.
    let warm = uuid();
    let body = |id: &str| format!(r#"{{"correlationId":"{id}","amount":19.90}}"#);
    assert_eq!(
        post_json(&c.apis[0], "/payments", &body(&warm))
            .unwrap()
            .status,
        202
    );
    proxy.armed.store(true, Ordering::SeqCst);
    let id = uuid();
    let first = post_json(&c.apis[0], "/payments", &body(&id)).unwrap();
    assert_eq!(
        proxy.cuts.load(Ordering::SeqCst),
        1,
        "the proxy cut the answer"
    );
    assert_eq!(first.status, 503, "{}", first.body);
    // The client retries: the row is there, committed: a duplicate.
    let retry = wait_for(Duration::from_secs(10), "the retry to be answered", || {
        let r = post_json(&c.apis[1], "/payments", &body(&id)).ok()?;
        (r.status != 503).then_some(r)
    });
    assert!(matches!(retry.status, 200 | 202), "{}", retry.body);
    // Acknowledged, so it must be forwarded, once.
    c.settle(2);
    let stored = c.stored(&[warm, id.clone()]);
    assert_eq!(
        stored[1].iter().filter(|s| **s).count(),
        1,
        "{id}: {stored:?}"
    );
    let log = std::fs::read_to_string(c.dir.join("worker1.log")).unwrap_or_default();
    println!(
        "scale-out: an accept committed, its answer cut: 503, then {}, forwarded once{}",
        retry.status,
        if log.contains("adopted payments") {
            " (adopted by the upkeep)"
        } else {
            ""
        }
    );
}
