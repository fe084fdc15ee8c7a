//! Fault tests on real processes: every role runs as its own `payroute` process on
//! 127.0.0.1 (free ports, a Unix socket for the worker, one temp dir per test), a load
//! of several client threads runs while processes are killed with SIGKILL and
//! restarted, and the outcome is checked payment by payment against the processors.
//!
//! Words used below. A payment is *acknowledged* when its `POST /payments` got a 2XX;
//! *unacknowledged* when it got another status or a transport error. *Stored on* a
//! processor: its `GET /payments/{id}` answers 200 (404 otherwise). The *books* are a
//! processor's `GET /admin/payments-summary`; the *backend* is payroute's
//! `GET /payments-summary`. *Drained*: the api's `GET /health` shows `queue_depth` 0
//! and `in_flight` 0. Every check is made once drained (a bounded wait).
//!
//! Checked by every test ([`audit`]): no correlationId is ever stored on both
//! processors; each processor's books hold exactly the payments found on it by id
//! (same count, same amount: nothing stored that nobody sent, nothing twice). Where
//! the backend is compared with the books over a period, it is also compared over
//! each 100 ms cell of a partition of it ([`cells`]): a payment recorded with another
//! `requestedAt` than the one its processor stored shows there.
//!
//! Claims, one test each:
//! - `worker_killed_during_load_loses_and_doubles_nothing`: the worker is killed (kill
//!   -9) three times during load and restarted on the same data directory, with a
//!   small log-compaction threshold so that compactions happen between the kills
//!   (checked: the log ends under 3 records per payment); at the second kill the
//!   default turns failing while the worker is down, and recovers later. Every
//!   acknowledged payment is stored on exactly one processor; unacknowledged
//!   ones (refused or cut while the worker was down) on at most one; the backend
//!   equals the books over all time and over windows with both bounds.
//! - `api_killed_during_load_the_other_keeps_serving`: two api processes share one
//!   port with SO_REUSEPORT (the embedded load balancer); each is killed once during
//!   load (the first is restarted before the second is killed). Every request that
//!   failed overlapped a kill (started before the killed process was reaped, ended
//!   after the kill was sent); requests made right after each kill all get 2XX;
//!   nothing acknowledged is lost, backend equals books.
//! - `processor_killed_and_restarted_during_load`: the default processor (delay
//!   300 ms, so requests are in flight) is killed and restarted on its port with
//!   empty books (the emulator is in memory: its database is lost with it). Claims:
//!   every request gets 2XX; the backend counts each acknowledged payment exactly
//!   once (total count and amount); the fallback's books equal the backend's fallback
//!   figures over all time; the restarted default's books equal the backend's default
//!   figures over windows starting just after the kill (a resent payment keeps its
//!   original `requestedAt`, before the kill, so it is outside); every payment
//!   acknowledged after the kill is stored on the fallback or the new default; the
//!   payments found on neither are exactly the ones the backend counts as stored on
//!   the dead default: `backend.default - new_default_books.default` of them.
//! - `processor_timeouts_resolved_on_the_same_processor`: the default answers in
//!   3000 ms, the worker gives up after 1000 ms (below the latency budget), and its
//!   insert lands later; the
//!   fallback fails at first, then works. Once 20 requests have timed out, the
//!   worker is killed and restarted while their inserts are still pending. The
//!   worker must learn each fate on the default (lookup or resend with the same
//!   `requestedAt`), never send it to the fallback meanwhile. The delay stays at
//!   3000 ms until nothing is queued or in flight on the default (the first copies
//!   have landed and been found); then it is set back to 0 and everything converges: every acknowledged payment stored exactly once,
//!   unacknowledged ones at most once, backend equals books. The worker's metrics
//!   must show unknown fates resolved.
//! - `duplicates_count_once`: each of 40 correlationIds is posted 3 times by 4
//!   threads at once, through two api instances, with a different amount each time:
//!   exactly one 202 per id, the others 200; each id is stored once, with the amount
//!   of the request that got the 202; after the worker is killed and restarted, the
//!   same ids are still duplicates and nothing new is stored.
//! - `purge_during_load`: (1) a purge while idle, then a load: exactly once, backend
//!   equals books equals what was acknowledged (the official test's order). (2) A
//!   purge during load (backend, then both processors, with 200 ms of delay so that
//!   requests are in flight): purging three independent services is not atomic, so
//!   payments in flight at that moment may be in the books and not the backend, or
//!   the reverse; those carry a `requestedAt` before the last purge returned (`T`).
//!   The claim is: every request gets 2XX; every payment acknowledged for a request
//!   started after `T` (+2 ms, the wire's millisecond) is stored exactly once; the
//!   backend equals the books over windows starting just after `T`; the backend's
//!   count there lies between the payments acknowledged for requests started after
//!   `T` (+2 ms) and those answered after the purge began. Then the worker is killed and restarted: its summary is
//!   unchanged (the purge emptied the log; nothing comes back).
//!
//! Each test prints one line `faults: ...` with its kills and counts (visible with
//! `--nocapture`). Every process is started by the test and killed by PID (SIGKILL,
//! then reaped) on every path, by the `Drop` of [`Proc`].

mod common;

use common::{free_port, get, payroute_exe, post_json, request, test_dir, uuid, wait_for};
use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

const TOKEN: (&str, &str) = ("X-Rinha-Token", "123");
/// Bound of every wait for the queue to drain (the emulators answer in ms; the rest is
/// slack for a loaded 2-core machine).
const DRAIN: Duration = Duration::from_secs(30);
/// Bound of every wait for a process to be ready.
const READY: Duration = Duration::from_secs(15);
const FAR_PAST: &str = "2000-01-01T00:00:00.000Z";
const FAR_FUTURE: &str = "2999-01-01T00:00:00.000Z";

/// (count, amount in cents) per processor: `[default, fallback]`.
type Totals = [(u64, i64); 2];

/// A child process, killed with SIGKILL and reaped when dropped.
struct Proc {
    child: Child,
    log: PathBuf,
}

impl Proc {
    /// Starts `payroute ARGS`, its output appended to `log`, and waits (bounded) until
    /// `ready`; panics with the log if it exits meanwhile.
    fn spawn(args: &[String], log: PathBuf, mut ready: impl FnMut() -> bool) -> Proc {
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
    fn kill(mut self) -> Instant {
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
struct Sys {
    dir: PathBuf,
    /// Base URLs of the default and fallback processors.
    procs: [String; 2],
    processors: [Option<Proc>; 2],
    worker: Option<Proc>,
    worker_args: Vec<String>,
    api_ports: Vec<u16>,
    apis: Vec<Option<Proc>>,
}

impl Sys {
    /// Starts everything; `api_ports` may repeat a port (SO_REUSEPORT); `worker_extra`
    /// holds worker flags and values, replacing the defaults.
    fn start(name: &str, api_ports: Vec<u16>, worker_extra: &[&str]) -> Sys {
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

    fn start_processor(&mut self, i: usize) {
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

    fn kill_processor(&mut self, i: usize) -> Instant {
        self.processors[i].take().expect("running").kill()
    }

    /// Starts the worker and waits until every running api reaches it (none running:
    /// until its socket exists).
    fn start_worker(&mut self) {
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

    fn kill_worker(&mut self) -> Instant {
        self.worker.take().expect("running").kill()
    }

    fn start_api(&mut self, k: usize) {
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

    fn kill_api(&mut self, k: usize) -> Instant {
        self.apis[k].take().expect("running").kill()
    }

    fn api(&self, k: usize) -> String {
        format!("http://127.0.0.1:{}", self.api_ports[k])
    }

    /// The distinct api URLs, for the load.
    fn api_urls(&self) -> Vec<String> {
        let mut urls: Vec<String> = (0..self.api_ports.len()).map(|k| self.api(k)).collect();
        urls.dedup();
        urls
    }

    /// `PUT /admin/configurations/{what}` on processor `i`.
    fn configure(&self, i: usize, what: &str, value: &str) {
        let body = format!(r#"{{"{what}":{value}}}"#);
        let path = format!("/admin/configurations/{what}");
        let r = request(&self.procs[i], "PUT", &path, &[TOKEN], Some(&body)).unwrap();
        assert_eq!(r.status, 200, "{path}: {}", r.body);
    }

    fn health(&self) -> Option<serde_json::Value> {
        let r = get(&self.api(0), "/health").ok()?;
        (r.status == 200).then(|| r.json())
    }

    /// Waits until nothing is queued or in flight.
    fn drain(&self) {
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
    fn backend(&self, query: &str) -> Totals {
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
    fn books(&self, query: &str) -> Totals {
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
    fn stored(&self, ids: &[&str]) -> Vec<[Option<i64>; 2]> {
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

    fn stored_at(&self, i: usize, id: &str) -> Option<i64> {
        let r = get(&self.procs[i], &format!("/payments/{id}")).unwrap();
        match r.status {
            200 => Some(cents(&r.json()["amount"])),
            404 => None,
            s => panic!("GET /payments/{id}: {s} {}", r.body),
        }
    }

    /// A counter of the worker's `/metrics` (through api 0), by its full sample name.
    fn metric(&self, sample: &str) -> f64 {
        let text = get(&self.api(0), "/metrics").unwrap().body;
        text.lines()
            .find_map(|l| l.strip_prefix(sample)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {sample} in the metrics"))
    }

    /// Sums of `pending` and `maybe_sent` over the worker's "payment log replayed"
    /// log lines: payments unfinished, and possibly in flight, at its restarts.
    fn replayed(&self) -> (u64, u64) {
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
    fn purge_all(&self) {
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
fn api_ready(url: &str) -> bool {
    get(url, "/health").is_ok_and(|r| r.status == 200)
}

fn cents(v: &serde_json::Value) -> i64 {
    (v.as_f64().unwrap_or_else(|| panic!("not a number: {v}")) * 100.0).round() as i64
}

fn iso(t: SystemTime) -> String {
    let us = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_micros() as i64;
    model::Micros(us).to_millis_string()
}

/// `?from=..&to=..` (both bounds: the processors read a missing one as "all").
fn window(from: &str, to: &str) -> String {
    format!("?from={from}&to={to}")
}

/// The wall-clock time of an `Instant` of this process.
fn wall(at: Instant) -> SystemTime {
    let now = Instant::now();
    if at <= now {
        SystemTime::now() - (now - at)
    } else {
        SystemTime::now() + (at - now)
    }
}

/// One `POST /payments` of the load.
#[derive(Debug, Clone)]
struct Sent {
    id: String,
    cents: i64,
    start: Instant,
    end: Instant,
    /// `None`: transport error.
    status: Option<u16>,
}

impl Sent {
    fn acked(&self) -> bool {
        matches!(self.status, Some(200..=299))
    }
}

/// Client threads posting fresh payments until stopped (or `max` each).
struct Load {
    stop: Arc<AtomicBool>,
    sent: Arc<Mutex<Vec<Sent>>>,
    threads: Vec<JoinHandle<()>>,
}

impl Load {
    fn start(targets: Vec<String>, threads: usize, pause: Duration, max: usize) -> Load {
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

    fn acked_so_far(&self) -> usize {
        self.sent
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.acked())
            .count()
    }

    /// Stops the threads and returns every request made.
    fn finish(mut self) -> Vec<Sent> {
        self.halt();
        std::mem::take(&mut *self.sent.lock().unwrap())
    }

    fn halt(&mut self) {
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
struct Audit {
    acked: usize,
    unacked: usize,
    unacked_stored: usize,
    /// Acknowledged, stored nowhere.
    lost: Vec<String>,
    /// Where each request's id is stored, in the order of `sent`.
    places: Vec<[Option<i64>; 2]>,
    books: Totals,
}

impl Audit {
    fn line(&self, what: &str) -> String {
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
fn audit(sys: &Sys, sent: &[Sent]) -> Audit {
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
fn assert_summaries_agree(sys: &Sys, t0: SystemTime, t1: SystemTime) {
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
fn cells(t0: SystemTime, t1: SystemTime) -> Vec<String> {
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

fn assert_all_acked(sent: &[Sent]) {
    let bad: Vec<_> = sent.iter().filter(|s| !s.acked()).take(5).collect();
    assert!(bad.is_empty(), "requests not acknowledged: {bad:?}");
}

#[test]
fn worker_killed_during_load_loses_and_doubles_nothing() {
    let mut sys = Sys::start(
        "worker",
        vec![free_port(), free_port()],
        &["--compact-min-records", "300"],
    );
    // Requests stay in flight for a while, so kills cut some of them.
    sys.configure(0, "delay", "100");
    let t0 = SystemTime::now();
    let load = Load::start(sys.api_urls(), 4, Duration::from_millis(8), 2000);
    let mut kills = 0;
    for round in 0..3 {
        let before = load.acked_so_far();
        wait_for(Duration::from_secs(20), "payments between kills", || {
            (load.acked_so_far() >= before + 250).then_some(())
        });
        sys.kill_worker();
        kills += 1;
        // The payments it had in flight are stored meanwhile (the processor finishes
        // them). Once, the default turns failing before the restart: a payment must
        // then not be resent to the fallback without learning its fate.
        if round == 1 {
            sys.configure(0, "failure", "true");
        }
        // Down for a moment: clients get 503s or errors meanwhile.
        std::thread::sleep(Duration::from_millis(200 + 100 * round));
        sys.start_worker();
        if round == 1 {
            let before = load.acked_so_far();
            wait_for(Duration::from_secs(20), "payments, default failing", || {
                (load.acked_so_far() >= before + 150).then_some(())
            });
            sys.configure(0, "failure", "false");
        }
    }
    let before = load.acked_so_far();
    wait_for(Duration::from_secs(20), "payments after the kills", || {
        (load.acked_so_far() >= before + 200).then_some(())
    });
    let sent = load.finish();
    let t1 = SystemTime::now();
    sys.drain();
    let a = audit(&sys, &sent);
    assert!(a.lost.is_empty(), "acknowledged and lost: {:?}", a.lost);
    assert_summaries_agree(&sys, t0, t1);
    assert!(
        sys.metric("payroute_log_records") < (3 * a.acked) as f64,
        "the log was compacted"
    );
    let (pending, maybe_sent) = sys.replayed();
    println!(
        "{}",
        a.line(&format!(
            "worker killed {kills} times (restarts replayed {pending} unfinished \
             payments, {maybe_sent} possibly in flight)"
        ))
    );
}

#[test]
fn api_killed_during_load_the_other_keeps_serving() {
    let port = free_port();
    let mut sys = Sys::start("api", vec![port, port], &[]);
    sys.configure(0, "delay", "20");
    let t0 = SystemTime::now();
    let load = Load::start(sys.api_urls(), 4, Duration::from_millis(5), 2000);
    // (kill sent, process reaped), per kill.
    let mut kills: Vec<(Instant, Instant)> = Vec::new();
    let mut direct = Vec::new();
    for k in [0, 1] {
        let before = load.acked_so_far();
        wait_for(Duration::from_secs(20), "payments between kills", || {
            (load.acked_so_far() >= before + 300).then_some(())
        });
        let sent_at = Instant::now();
        let gone = sys.kill_api(k);
        kills.push((sent_at, gone));
        // The survivor serves at once: no wait, no retry.
        for _ in 0..20 {
            let id = uuid();
            let body = format!(r#"{{"correlationId":"{id}","amount":10.00}}"#);
            let r = post_json(&sys.api(0), "/payments", &body);
            let status = r.as_ref().map(|a| a.status).ok();
            assert_eq!(status, Some(202), "right after killing api {k}: {r:?}");
            direct.push(Sent {
                id,
                cents: 1000,
                start: gone,
                end: Instant::now(),
                status,
            });
        }
        if k == 0 {
            let before = load.acked_so_far();
            wait_for(Duration::from_secs(20), "payments with one api", || {
                (load.acked_so_far() >= before + 200).then_some(())
            });
            sys.start_api(0);
        }
    }
    let before = load.acked_so_far();
    wait_for(Duration::from_secs(20), "payments after the kills", || {
        (load.acked_so_far() >= before + 200).then_some(())
    });
    let mut sent = load.finish();
    let t1 = SystemTime::now();
    for s in sent.iter().filter(|s| !s.acked()) {
        assert!(
            kills
                .iter()
                .any(|(sent_at, gone)| s.start <= *gone && s.end >= *sent_at),
            "a request failed without overlapping a kill: {s:?}"
        );
    }
    sent.extend(direct);
    sys.drain();
    let a = audit(&sys, &sent);
    assert!(a.lost.is_empty(), "acknowledged and lost: {:?}", a.lost);
    assert_summaries_agree(&sys, t0, t1);
    println!("{}", a.line(&format!("api killed {} times", kills.len())));
}

#[test]
fn processor_killed_and_restarted_during_load() {
    let mut sys = Sys::start("processor", vec![free_port(), free_port()], &[]);
    sys.configure(0, "delay", "300");
    let load = Load::start(sys.api_urls(), 4, Duration::from_millis(8), 2000);
    wait_for(Duration::from_secs(20), "payments before the kill", || {
        (load.acked_so_far() >= 300).then_some(())
    });
    let killed = sys.kill_processor(0);
    let acked_at_kill = load.acked_so_far();
    wait_for(Duration::from_secs(20), "payments while it is down", || {
        (load.acked_so_far() >= acked_at_kill + 200).then_some(())
    });
    sys.start_processor(0);
    let before = load.acked_so_far();
    wait_for(
        Duration::from_secs(20),
        "payments after the restart",
        || (load.acked_so_far() >= before + 300).then_some(()),
    );
    let sent = load.finish();
    sys.drain();
    assert_all_acked(&sent);
    let a = audit(&sys, &sent);
    let backend = sys.backend("");
    let acked_cents: i64 = sent.iter().map(|s| s.cents).sum();
    assert_eq!(
        (backend[0].0 + backend[1].0, backend[0].1 + backend[1].1),
        (sent.len() as u64, acked_cents),
        "the backend counts each acknowledged payment once"
    );
    assert_eq!(backend[1], a.books[1], "fallback, over all time");
    // After the kill, to the millisecond above: nothing the dead default stored.
    let after = iso(wall(killed) + Duration::from_millis(1));
    let from = wall(killed) + Duration::from_millis(1);
    let mut windows = cells(from, SystemTime::now());
    windows.push(window(&after, FAR_FUTURE));
    for w in windows {
        assert_eq!(sys.backend(&w), sys.books(&w), "window {w}");
    }
    let mut only_old = (0i64, 0i64);
    for (s, at) in sent.iter().zip(&a.places) {
        if at.iter().all(Option::is_none) {
            assert!(
                s.start < killed,
                "acknowledged after the kill and stored nowhere: {s:?}"
            );
            only_old.0 += 1;
            only_old.1 += s.cents;
        }
    }
    assert_eq!(
        only_old,
        (
            backend[0].0 as i64 - a.books[0].0 as i64,
            backend[0].1 - a.books[0].1
        ),
        "payments on neither processor = those the backend has on the dead default"
    );
    let resolved = sys.metric("payroute_unknown_fate_resolved_total");
    println!(
        "faults: processor killed 1 time, {} payments acknowledged, 0 lost, 0 doubled \
         ({} stored only in the dead default's lost books and counted by the backend, \
         {resolved:.0} unknown fates resolved)",
        a.acked, only_old.0
    );
}

#[test]
fn processor_timeouts_resolved_on_the_same_processor() {
    const UNKNOWN: &str =
        "payroute_processor_requests_total{processor=\"default\",result=\"unknown\"}";
    // The timeout is below the latency budget (1200 ms) on purpose: a timed-out
    // request must count as over budget, or the router keeps sending new payments
    // into timeouts although the fallback works (a bug this test once caught).
    let mut sys = Sys::start(
        "timeout",
        vec![free_port(), free_port()],
        &["--request-timeout-ms", "1000"],
    );
    sys.configure(0, "delay", "3000");
    sys.configure(1, "failure", "true");
    let t0 = SystemTime::now();
    let load = Load::start(sys.api_urls(), 2, Duration::from_millis(40), 500);
    // The default is the only working processor: its requests time out, their
    // inserts land 2 s later.
    let timed_out = wait_for(Duration::from_secs(20), "requests to time out", || {
        let n = sys.metric(UNKNOWN);
        (n >= 20.0).then_some(n)
    });
    // A crash while those inserts are still pending: the restarted worker knows
    // only that they may have been sent.
    sys.kill_worker();
    sys.start_worker();
    // The fallback works again: new payments may go there, payments of unknown fate
    // on the default must not. Their first copies land there (the delay is still
    // 3000 ms) and the worker must find them: nothing left queued or in flight on the
    // default while the load goes on.
    sys.configure(1, "failure", "false");
    let before = load.acked_so_far();
    wait_for(
        Duration::from_secs(30),
        "the default's unknown fates",
        || {
            let h = sys.health()?;
            let settled = h["queue_depth"] == 0
                && h["processors"]["default"]["in_flight"] == 0
                && load.acked_so_far() >= before + 60;
            settled.then_some(())
        },
    );
    sys.configure(0, "delay", "0");
    let before = load.acked_so_far();
    wait_for(Duration::from_secs(20), "payments, default fast", || {
        (load.acked_so_far() >= before + 40).then_some(())
    });
    let sent = load.finish();
    let t1 = SystemTime::now();
    sys.drain();
    let a = audit(&sys, &sent);
    assert!(a.lost.is_empty(), "acknowledged and lost: {:?}", a.lost);
    assert_summaries_agree(&sys, t0, t1);
    // Counters restart with the worker: these are since the restart.
    let unknown = timed_out + sys.metric(UNKNOWN);
    let resolved = sys.metric("payroute_unknown_fate_resolved_total");
    assert!(resolved >= 1.0, "no unknown fate was resolved");
    let (pending, maybe_sent) = sys.replayed();
    println!(
        "{}",
        a.line(&format!(
            "processor timed out {unknown:.0} times, worker killed 1 time (replayed \
             {pending} unfinished, {maybe_sent} possibly sent), {resolved:.0} unknown fates \
             resolved after the restart"
        ))
    );
}

#[test]
fn duplicates_count_once() {
    const IDS: usize = 40;
    const THREADS: usize = 4;
    const REPEATS: usize = 3;
    let mut sys = Sys::start("dup", vec![free_port(), free_port()], &[]);
    sys.configure(0, "delay", "20");
    let ids: Vec<String> = (0..IDS).map(|_| uuid()).collect();
    // (id index, amount in cents, status) of every request.
    let answers = Mutex::new(Vec::new());
    let barrier = Barrier::new(THREADS);
    std::thread::scope(|s| {
        for t in 0..THREADS {
            let (sys, ids, answers, barrier) = (&sys, &ids, &answers, &barrier);
            s.spawn(move || {
                let url = sys.api(t % 2);
                for (n, id) in ids.iter().enumerate() {
                    barrier.wait();
                    for r in 0..REPEATS {
                        let cents = 1000 + (t * REPEATS + r) as i64;
                        let body = format!(
                            r#"{{"correlationId":"{id}","amount":{}.{:02}}}"#,
                            cents / 100,
                            cents % 100
                        );
                        // No panic here: the other threads wait at the barrier.
                        let status = post_json(&url, "/payments", &body).map_or(0, |a| a.status);
                        answers.lock().unwrap().push((n, cents, status));
                    }
                }
            });
        }
    });
    let answers = answers.into_inner().unwrap();
    let mut accepted: HashMap<usize, i64> = HashMap::new();
    for &(n, cents, status) in &answers {
        match status {
            202 => assert!(
                accepted.insert(n, cents).is_none(),
                "{} accepted twice",
                ids[n]
            ),
            200 | 409 => {}
            s => panic!("{}: status {s}", ids[n]),
        }
    }
    assert_eq!(accepted.len(), IDS, "every id accepted once");
    // The same id again: the same amount is the earlier outcome (200); another amount
    // is a reused idempotency key (409). Either way nothing new.
    for &(n, cents, status) in &answers {
        match status {
            200 => assert_eq!(cents, accepted[&n], "{}: 200 for another amount", ids[n]),
            409 => assert_ne!(cents, accepted[&n], "{}: 409 for the same amount", ids[n]),
            _ => {}
        }
    }
    sys.drain();
    let sent: Vec<Sent> = (0..IDS)
        .map(|n| Sent {
            id: ids[n].clone(),
            cents: accepted[&n],
            start: Instant::now(),
            end: Instant::now(),
            status: Some(202),
        })
        .collect();
    let a = audit(&sys, &sent);
    assert!(a.lost.is_empty(), "acknowledged and lost: {:?}", a.lost);
    let total: i64 = accepted.values().sum();
    assert_eq!(a.books[0].0 + a.books[1].0, IDS as u64);
    assert_eq!(a.books[0].1 + a.books[1].1, total);
    assert_eq!(sys.backend(""), a.books);
    // The log remembers them across a crash.
    sys.kill_worker();
    sys.start_worker();
    for (n, id) in ids.iter().enumerate() {
        let body = format!(r#"{{"correlationId":"{id}","amount":99.99}}"#);
        let r = post_json(&sys.api(n % 2), "/payments", &body).unwrap();
        assert_eq!(r.status, 409, "{id} after the restart: {}", r.body);
        let cents = accepted[&n];
        let body = format!(
            r#"{{"correlationId":"{id}","amount":{}.{:02}}}"#,
            cents / 100,
            cents % 100
        );
        let r = post_json(&sys.api(n % 2), "/payments", &body).unwrap();
        assert_eq!(r.status, 200, "{id} after the restart: {}", r.body);
    }
    sys.drain();
    let again = audit(&sys, &sent);
    assert_eq!(again.books, a.books);
    assert_eq!(sys.backend(""), a.books);
    println!(
        "faults: duplicates: {IDS} ids posted {} times each, worker killed 1 time, \
         {IDS} payments acknowledged, 0 lost, 0 doubled",
        THREADS * REPEATS + 1
    );
}

#[test]
fn purge_during_load() {
    let mut sys = Sys::start("purge", vec![free_port(), free_port()], &[]);
    // (1) The official order: purge while idle, then the load.
    sys.purge_all();
    let t0 = SystemTime::now();
    let load = Load::start(sys.api_urls(), 4, Duration::from_millis(8), 2000);
    wait_for(
        Duration::from_secs(20),
        "payments after the first purge",
        || (load.acked_so_far() >= 300).then_some(()),
    );
    let first = load.finish();
    let t1 = SystemTime::now();
    sys.drain();
    assert_all_acked(&first);
    let a = audit(&sys, &first);
    assert!(a.lost.is_empty(), "acknowledged and lost: {:?}", a.lost);
    let cents: i64 = first.iter().map(|s| s.cents).sum();
    let backend = sys.backend("");
    assert_eq!(
        (backend[0].0 + backend[1].0, backend[0].1 + backend[1].1),
        (first.len() as u64, cents)
    );
    assert_summaries_agree(&sys, t0, t1);
    // (2) A purge in the middle of a load, with requests in flight.
    sys.configure(0, "delay", "200");
    let load = Load::start(sys.api_urls(), 4, Duration::from_millis(8), 2000);
    wait_for(Duration::from_secs(20), "payments before the purge", || {
        (load.acked_so_far() >= 200).then_some(())
    });
    let purge_started = Instant::now();
    sys.purge_all();
    let purged = Instant::now();
    let before = load.acked_so_far();
    wait_for(Duration::from_secs(20), "payments after the purge", || {
        (load.acked_so_far() >= before + 300).then_some(())
    });
    let second = load.finish();
    sys.drain();
    assert_all_acked(&second);
    // Every payment sent after `purged` has a `requestedAt` of `from` or later, and
    // every request started 2 ms after `purged` was sent after it.
    let from = iso(wall(purged) + Duration::from_millis(1));
    let cut = purged + Duration::from_millis(2);
    let all = audit(&sys, &second);
    let lost: Vec<&Sent> = second
        .iter()
        .filter(|s| s.start >= cut && all.lost.contains(&s.id))
        .collect();
    assert!(
        lost.is_empty(),
        "acknowledged after the purge and lost: {lost:?}"
    );
    let after = second.iter().filter(|s| s.start >= cut).count();
    let w = window(&from, FAR_FUTURE);
    let backend = sys.backend(&w);
    assert_eq!(backend, sys.books(&w), "window {w}");
    let mid = window(&from, &iso(SystemTime::now()));
    for w in cells(wall(purged) + Duration::from_millis(1), SystemTime::now())
        .iter()
        .chain([&mid])
    {
        assert_eq!(sys.backend(w), sys.books(w), "window {w}");
    }
    let counted = backend[0].0 + backend[1].0;
    let answered_after = second.iter().filter(|s| s.end >= purge_started).count();
    assert!(
        (after as u64..=answered_after as u64).contains(&counted),
        "counted {counted} after the purge; started after it {after}, answered after \
         its start {answered_after}"
    );
    // The purge emptied the log: a crash brings nothing back.
    let summary = sys.backend("");
    sys.kill_worker();
    sys.start_worker();
    sys.drain();
    assert_eq!(sys.backend(""), summary, "after a restart");
    println!(
        "faults: purge: {} acknowledged before an idle purge, 0 lost, 0 doubled; \
         purge during load: {} acknowledged after it, {} lost, 0 doubled, worker killed 1 time",
        a.acked, after, 0
    );
}
