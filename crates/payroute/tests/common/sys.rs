//! The harness of the process-level tests: every role as its own `payroute` process on
//! 127.0.0.1 (free ports, a Unix socket for the worker, one temp dir per test), a load
//! of client threads, and the audit of the outcome payment by payment against the
//! processors. See `faults.rs` for the words used (acknowledged, stored, books,
//! backend, drained).

use super::{free_port, get, payroute_exe, post_json, request, test_dir, uuid, wait_for};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

pub const TOKEN: (&str, &str) = ("X-Rinha-Token", "123");
/// Bound of every wait for the queue to drain (the emulators answer in ms; the rest is
/// slack for a loaded 2-core machine).
pub const DRAIN: Duration = Duration::from_secs(30);
/// Bound of every wait for a process to be ready.
pub const READY: Duration = Duration::from_secs(15);
pub const FAR_PAST: &str = "2000-01-01T00:00:00.000Z";
pub const FAR_FUTURE: &str = "2999-01-01T00:00:00.000Z";

/// (count, amount in cents) per processor: `[default, fallback]`.
pub type Totals = [(u64, i64); 2];

/// A child process, killed with SIGKILL and reaped when dropped.
pub struct Proc {
    pub child: Child,
    pub log: PathBuf,
}

impl Proc {
    /// Starts `payroute ARGS`, its output appended to `log`, and waits (bounded) until
    /// `ready`; panics with the log if it exits meanwhile.
    pub fn spawn(args: &[String], log: PathBuf, mut ready: impl FnMut() -> bool) -> Proc {
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        let mut cmd = Command::new(payroute_exe());
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out);
        cmd.env("NO_COLOR", "1");
        // Only the flags configure the roles, whatever the caller's environment says.
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("PAYROUTE_") {
                cmd.env_remove(k);
            }
        }
        let mut p = Proc {
            child: cmd.spawn().expect("cannot start payroute"),
            log,
        };
        wait_for(
            READY,
            &format!("`payroute {}` to be ready", args[0]),
            || {
                if let Ok(Some(status)) = p.child.try_wait() {
                    let log = std::fs::read_to_string(&p.log).unwrap_or_default();
                    panic!("`payroute {}` exited ({status}):\n{log}", args.join(" "));
                }
                ready().then_some(())
            },
        );
        p
    }

    /// kill -9 and reap; returns when the process is gone.
    pub fn kill(mut self) -> Instant {
        let _ = self.child.kill();
        let _ = self.child.wait();
        Instant::now()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Two emulated processors, one worker and api instances, each its own process.
pub struct Sys {
    pub dir: PathBuf,
    /// Base URLs of the default and fallback processors.
    pub procs: [String; 2],
    pub processors: [Option<Proc>; 2],
    pub worker: Option<Proc>,
    pub worker_args: Vec<String>,
    pub api_ports: Vec<u16>,
    pub apis: Vec<Option<Proc>>,
}

impl Sys {
    /// Starts everything; `api_ports` may repeat a port (SO_REUSEPORT); `worker_extra`
    /// holds worker flags and values, replacing the defaults.
    pub fn start(name: &str, api_ports: Vec<u16>, worker_extra: &[&str]) -> Sys {
        let dir = test_dir(&format!("faults-{name}"));
        let pp = [free_port(), free_port()];
        let socket = dir.join("worker.sock").display().to_string();
        let mut flags: Vec<(&str, String)> = vec![
            ("--socket", socket),
            ("--default-url", format!("http://127.0.0.1:{}", pp[0])),
            ("--fallback-url", format!("http://127.0.0.1:{}", pp[1])),
            ("--data-dir", dir.join("data").display().to_string()),
            ("--health-interval-ms", "500".into()),
            ("--request-timeout-ms", "2000".into()),
        ];
        for pair in worker_extra.chunks(2) {
            flags.retain(|(k, _)| *k != pair[0]);
            flags.push((pair[0], pair[1].to_string()));
        }
        let mut worker_args = vec!["worker".to_string()];
        for (k, v) in flags {
            worker_args.extend([k.to_string(), v]);
        }
        let n = api_ports.len();
        let mut sys = Sys {
            dir,
            procs: pp.map(|p| format!("http://127.0.0.1:{p}")),
            processors: [None, None],
            worker: None,
            worker_args,
            api_ports,
            apis: (0..n).map(|_| None).collect(),
        };
        sys.start_processor(0);
        sys.start_processor(1);
        sys.start_worker();
        for k in 0..n {
            sys.start_api(k);
        }
        sys
    }

    pub fn start_processor(&mut self, i: usize) {
        let port = self.procs[i].rsplit(':').next().unwrap().to_string();
        let args = [
            "processor",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--fee",
            ["0.05", "0.15"][i],
            "--rate-limit-secs",
            "1",
        ]
        .map(String::from);
        let log = self.dir.join(format!("processor-{i}.log"));
        let url = &self.procs[i];
        self.processors[i] = Some(Proc::spawn(&args, log, || {
            request(url, "GET", "/admin/payments-summary", &[TOKEN], None)
                .is_ok_and(|r| r.status == 200)
        }));
    }

    pub fn kill_processor(&mut self, i: usize) -> Instant {
        self.processors[i].take().expect("running").kill()
    }

    /// Starts the worker and waits until every running api reaches it (none running:
    /// until its socket exists).
    pub fn start_worker(&mut self) {
        let log = self.dir.join("worker.log");
        let socket = self.dir.join("worker.sock");
        let urls: Vec<String> = (0..self.apis.len())
            .filter(|k| self.apis[*k].is_some())
            .map(|k| self.api(k))
            .collect();
        self.worker = Some(Proc::spawn(&self.worker_args, log, || {
            if urls.is_empty() {
                socket.exists()
            } else {
                urls.iter().all(|u| api_ready(u))
            }
        }));
    }

    pub fn kill_worker(&mut self) -> Instant {
        self.worker.take().expect("running").kill()
    }

    pub fn start_api(&mut self, k: usize) {
        let args = [
            "api",
            "--listen",
            &format!("127.0.0.1:{}", self.api_ports[k]),
            "--worker-socket",
            &self.dir.join("worker.sock").display().to_string(),
        ]
        .map(String::from);
        let log = self.dir.join(format!("api-{k}.log"));
        let url = self.api(k);
        self.apis[k] = Some(Proc::spawn(&args, log, || api_ready(&url)));
    }

    pub fn kill_api(&mut self, k: usize) -> Instant {
        self.apis[k].take().expect("running").kill()
    }

    pub fn api(&self, k: usize) -> String {
        format!("http://127.0.0.1:{}", self.api_ports[k])
    }

    /// The distinct api URLs, for the load.
    pub fn api_urls(&self) -> Vec<String> {
        let mut urls: Vec<String> = (0..self.api_ports.len()).map(|k| self.api(k)).collect();
        urls.dedup();
        urls
    }

    /// `PUT /admin/configurations/{what}` on processor `i`.
    pub fn configure(&self, i: usize, what: &str, value: &str) {
        let body = format!(r#"{{"{what}":{value}}}"#);
        let path = format!("/admin/configurations/{what}");
        let r = request(&self.procs[i], "PUT", &path, &[TOKEN], Some(&body)).unwrap();
        assert_eq!(r.status, 200, "{path}: {}", r.body);
    }

    pub fn health(&self) -> Option<serde_json::Value> {
        let r = get(&self.api(0), "/health").ok()?;
        (r.status == 200).then(|| r.json())
    }

    /// Waits until nothing is queued or in flight.
    pub fn drain(&self) {
        let mut last = None;
        let drained = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            wait_for(DRAIN, "the worker to drain", || {
                let h = self.health()?;
                let done = h["queue_depth"] == 0 && h["in_flight"] == 0;
                last = Some(h);
                done.then_some(())
            })
        }));
        assert!(drained.is_ok(), "never drained; last health: {last:?}");
    }

    /// The backend's summary (through api 0).
    pub fn backend(&self, query: &str) -> Totals {
        let r = get(&self.api(0), &format!("/payments-summary{query}")).unwrap();
        assert_eq!(r.status, 200, "{query}: {}", r.body);
        let v = r.json();
        ["default", "fallback"].map(|p| {
            (
                v[p]["totalRequests"].as_u64().unwrap(),
                cents(&v[p]["totalAmount"]),
            )
        })
    }

    /// The processors' books.
    pub fn books(&self, query: &str) -> Totals {
        [0, 1].map(|i| {
            let path = format!("/admin/payments-summary{query}");
            let r = request(&self.procs[i], "GET", &path, &[TOKEN], None).unwrap();
            assert_eq!(r.status, 200, "{path}: {}", r.body);
            let v = r.json();
            (
                v["totalRequests"].as_u64().unwrap(),
                cents(&v["totalAmount"]),
            )
        })
    }

    /// For each id, the amount stored on each processor (`None`: 404), four ids at a
    /// time.
    pub fn stored(&self, ids: &[&str]) -> Vec<[Option<i64>; 2]> {
        let chunk = ids.len().div_ceil(4).max(1);
        std::thread::scope(|s| {
            let parts: Vec<_> = ids
                .chunks(chunk)
                .map(|part| {
                    s.spawn(move || {
                        part.iter()
                            .map(|id| [0, 1].map(|i| self.stored_at(i, id)))
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            parts.into_iter().flat_map(|h| h.join().unwrap()).collect()
        })
    }

    pub fn stored_at(&self, i: usize, id: &str) -> Option<i64> {
        let r = get(&self.procs[i], &format!("/payments/{id}")).unwrap();
        match r.status {
            200 => Some(cents(&r.json()["amount"])),
            404 => None,
            s => panic!("GET /payments/{id}: {s} {}", r.body),
        }
    }

    /// A counter of the worker's `/metrics` (through api 0), by its full sample name.
    pub fn metric(&self, sample: &str) -> f64 {
        let text = get(&self.api(0), "/metrics").unwrap().body;
        text.lines()
            .find_map(|l| l.strip_prefix(sample)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {sample} in the metrics"))
    }

    /// Sums of `pending` and `maybe_sent` over the worker's "payment log replayed"
    /// log lines: payments unfinished, and possibly in flight, at its restarts.
    pub fn replayed(&self) -> (u64, u64) {
        let log = std::fs::read_to_string(self.dir.join("worker.log")).unwrap_or_default();
        let field = |line: &str, name: &str| -> u64 {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(name)?.strip_prefix('=')?.parse().ok())
                .unwrap_or(0)
        };
        log.lines()
            .filter(|l| l.contains("payment log replayed"))
            .fold((0, 0), |(p, m), l| {
                (p + field(l, "pending"), m + field(l, "maybe_sent"))
            })
    }

    /// Purges the backend, then both processors.
    pub fn purge_all(&self) {
        let r = post_json(&self.api(0), "/purge-payments", "").unwrap();
        assert_eq!(r.status, 200, "{}", r.body);
        for url in &self.procs {
            let r = request(url, "POST", "/admin/purge-payments", &[TOKEN], None).unwrap();
            assert_eq!(r.status, 200, "{}", r.body);
        }
    }
}

impl Drop for Sys {
    fn drop(&mut self) {
        // Processes first (their fields drop after this body), so kill them here.
        for a in &mut self.apis {
            a.take();
        }
        self.worker.take();
        self.processors = [None, None];
        if std::thread::panicking() {
            eprintln!("logs of the failed test in {}", self.dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// Whether the api at `url` answers and reaches the worker.
pub fn api_ready(url: &str) -> bool {
    get(url, "/health").is_ok_and(|r| r.status == 200)
}

pub fn cents(v: &serde_json::Value) -> i64 {
    (v.as_f64().unwrap_or_else(|| panic!("not a number: {v}")) * 100.0).round() as i64
}

pub fn iso(t: SystemTime) -> String {
    let us = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_micros() as i64;
    model::Micros(us).to_millis_string()
}

/// `?from=..&to=..` (both bounds: the processors read a missing one as "all").
pub fn window(from: &str, to: &str) -> String {
    format!("?from={from}&to={to}")
}

/// The wall-clock time of an `Instant` of this process.
pub fn wall(at: Instant) -> SystemTime {
    let now = Instant::now();
    if at <= now {
        SystemTime::now() - (now - at)
    } else {
        SystemTime::now() + (at - now)
    }
}

/// One `POST /payments` of the load.
#[derive(Debug, Clone)]
pub struct Sent {
    pub id: String,
    pub cents: i64,
    pub start: Instant,
    pub end: Instant,
    /// `None`: transport error.
    pub status: Option<u16>,
}

impl Sent {
    pub fn acked(&self) -> bool {
        matches!(self.status, Some(200..=299))
    }
}

/// Client threads posting fresh payments until stopped (or `max` each).
pub struct Load {
    pub stop: Arc<AtomicBool>,
    pub sent: Arc<Mutex<Vec<Sent>>>,
    pub threads: Vec<JoinHandle<()>>,
}

impl Load {
    pub fn start(targets: Vec<String>, threads: usize, pause: Duration, max: usize) -> Load {
        static AMOUNTS: AtomicU64 = AtomicU64::new(0);
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(Mutex::new(Vec::new()));
        let threads = (0..threads)
            .map(|t| {
                let (stop, sent, targets) = (stop.clone(), sent.clone(), targets.clone());
                std::thread::spawn(move || {
                    for n in 0..max {
                        if stop.load(Ordering::Relaxed) {
                            break;
                        }
                        let id = uuid();
                        let k = AMOUNTS.fetch_add(1, Ordering::Relaxed) as i64;
                        let cents = 100 + (k * 7919) % 5000;
                        let body = format!(
                            r#"{{"correlationId":"{id}","amount":{}.{:02}}}"#,
                            cents / 100,
                            cents % 100
                        );
                        let start = Instant::now();
                        let r = post_json(&targets[(t + n) % targets.len()], "/payments", &body);
                        let status = r.ok().map(|a| a.status);
                        let s = Sent {
                            id,
                            cents,
                            start,
                            end: Instant::now(),
                            status,
                        };
                        let ok = s.acked();
                        sent.lock().unwrap().push(s);
                        std::thread::sleep(if ok {
                            pause
                        } else {
                            pause.max(Duration::from_millis(20))
                        });
                    }
                })
            })
            .collect();
        Load {
            stop,
            sent,
            threads,
        }
    }

    pub fn acked_so_far(&self) -> usize {
        self.sent
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.acked())
            .count()
    }

    /// Stops the threads and returns every request made.
    pub fn finish(mut self) -> Vec<Sent> {
        self.halt();
        std::mem::take(&mut *self.sent.lock().unwrap())
    }

    pub fn halt(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.halt();
    }
}

/// What [`audit`] found.
#[derive(Debug)]
pub struct Audit {
    pub acked: usize,
    pub unacked: usize,
    pub unacked_stored: usize,
    /// Acknowledged, stored nowhere.
    pub lost: Vec<String>,
    /// Where each request's id is stored, in the order of `sent`.
    pub places: Vec<[Option<i64>; 2]>,
    pub books: Totals,
}

impl Audit {
    pub fn line(&self, what: &str) -> String {
        format!(
            "faults: {what}, {} payments acknowledged, {} lost, 0 doubled \
             ({} unacknowledged, {} of them stored once)",
            self.acked,
            self.lost.len(),
            self.unacked,
            self.unacked_stored
        )
    }
}

/// Looks every sent id up on both processors and asserts what must hold whatever
/// happened: no id on both processors, and each processor's books hold exactly the
/// payments found on it (count and amount: no phantom, no double).
pub fn audit(sys: &Sys, sent: &[Sent]) -> Audit {
    let ids: Vec<&str> = sent.iter().map(|s| s.id.as_str()).collect();
    let places = sys.stored(&ids);
    let mut found: Totals = [(0, 0); 2];
    let mut doubled = Vec::new();
    let mut a = Audit {
        acked: 0,
        unacked: 0,
        unacked_stored: 0,
        lost: Vec::new(),
        places: Vec::new(),
        books: sys.books(""),
    };
    for (s, at) in sent.iter().zip(&places) {
        if at[0].is_some() && at[1].is_some() {
            doubled.push(s.id.clone());
        }
        for (i, amount) in at.iter().enumerate() {
            if let Some(c) = amount {
                assert_eq!(*c, s.cents, "{} stored with another amount", s.id);
                found[i].0 += 1;
                found[i].1 += c;
            }
        }
        let stored = at.iter().any(Option::is_some);
        if s.acked() {
            a.acked += 1;
            if !stored {
                a.lost.push(s.id.clone());
            }
        } else {
            a.unacked += 1;
            a.unacked_stored += usize::from(stored);
        }
    }
    assert!(
        doubled.is_empty(),
        "{} ids stored on both processors, e.g. {:?}",
        doubled.len(),
        &doubled[..doubled.len().min(5)]
    );
    assert_eq!(
        a.books, found,
        "the books (left) must hold exactly the payments found by id (right)"
    );
    a.places = places;
    a
}

/// Asserts that the backend equals the books over all time, over windows with both
/// bounds around `[t0, t1]`, and over each 100 ms cell of a partition of `[t0, t1]`:
/// a payment recorded with another `requestedAt` than the one its processor stored
/// moves to another cell.
pub fn assert_summaries_agree(sys: &Sys, t0: SystemTime, t1: SystemTime) {
    assert_eq!(sys.backend(""), sys.books(""), "over all time");
    let third = t1.duration_since(t0).unwrap_or_default() / 3;
    let windows = [
        window(&iso(t0), &iso(t1)),
        window(&iso(t0 + third), &iso(t0 + 2 * third)),
        window(FAR_PAST, &iso(t0 + third)),
        window(&iso(t0 + 2 * third), FAR_FUTURE),
    ];
    for w in windows.iter().chain(&cells(t0, t1)) {
        assert_eq!(sys.backend(w), sys.books(w), "window {w}");
    }
}

/// Consecutive windows of 100 ms (inclusive bounds at millisecond precision, the
/// wire's) covering `[t0, t1]`, each timestamp in exactly one.
pub fn cells(t0: SystemTime, t1: SystemTime) -> Vec<String> {
    let ms = |t: SystemTime| {
        t.duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64
    };
    let at = |m: i64| model::Micros(m * 1000).to_millis_string();
    (ms(t0)..=ms(t1))
        .step_by(100)
        .map(|m| window(&at(m), &at(m + 99)))
        .collect()
}

pub fn assert_all_acked(sent: &[Sent]) {
    let bad: Vec<_> = sent.iter().filter(|s| !s.acked()).take(5).collect();
    assert!(bad.is_empty(), "requests not acknowledged: {bad:?}");
}
