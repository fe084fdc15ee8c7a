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

use common::sys::*;
use common::{free_port, post_json, uuid, wait_for};
use std::collections::HashMap;
use std::sync::{Barrier, Mutex};
use std::time::{Duration, Instant, SystemTime};

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
