//! Tests of the payment log: records, replay, torn tails, locking, compaction.

use super::*;
use crate::core::Journal;
use crate::engine::Engine;
use crate::engine::{Action, EngineConfig, SendResult};
use model::{Cents, Micros, Mono, Processor, Totals};
use proptest::prelude::*;
use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::time::Duration;
use uuid::Uuid;

fn id(n: u128) -> Uuid {
    Uuid::from_u128(n)
}

fn all_kinds() -> Vec<Record> {
    vec![
        Record::Accepted {
            id: id(1),
            amount: Cents(1990),
        },
        Record::Sent {
            id: id(1),
            processor: Processor::Fallback,
            requested_at: Micros(123),
        },
        Record::Released {
            id: id(1),
            processor: Processor::Fallback,
        },
        Record::Recorded {
            id: id(1),
            processor: Processor::Default,
            requested_at: Micros(-5),
            amount: Cents(7),
        },
        Record::Done {
            id: id(9),
            amount: Cents(5),
        },
        Record::Rejected {
            id: id(8),
            processor: Processor::Default,
        },
        Record::Bucket {
            processor: Processor::Fallback,
            ms: 77,
            totals: Totals {
                count: 3,
                amount: Cents(60),
            },
        },
    ]
}

#[test]
fn records_round_trip_and_detect_damage() {
    for r in all_kinds() {
        let b = r.encode();
        assert_eq!(Record::decode(&b), Some(r));
        for i in 0..RECORD {
            let mut bad = b;
            bad[i] ^= 0x40;
            assert_eq!(Record::decode(&bad), None, "{r:?} byte {i}");
        }
    }
}

#[test]
fn a_torn_tail_is_cut_and_inner_corruption_refused() {
    let mut img: Vec<u8> = all_kinds().iter().flat_map(|r| r.encode()).collect();
    let full = img.len();
    img.extend_from_slice(&[1, 2, 3]);
    let r = parse(&img).unwrap();
    assert_eq!((r.records.len(), r.torn_bytes), (7, 3));
    // A corrupt last record is a torn tail too.
    img.truncate(full);
    img[full - 1] ^= 1;
    let r = parse(&img).unwrap();
    assert_eq!((r.records.len(), r.torn_bytes), (6, RECORD as u64));
    // Corruption in the middle is not.
    img[full - 1] ^= 1;
    img[RECORD + 10] ^= 1;
    assert_eq!(parse(&img).unwrap_err().offset, RECORD as u64);
}

proptest! {
    #[test]
    fn parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = parse(&bytes);
    }
}

#[test]
fn open_cuts_a_torn_tail_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = LogConfig::new(dir.path().to_path_buf());
    {
        let (mut log, opened) = open(&cfg);
        assert_eq!(opened.records, 0);
        log.append(&Record::Accepted {
            id: id(1),
            amount: Cents(1),
        });
        log.write().unwrap();
    }
    let path = dir.path().join("payments.log");
    let mut f = OpenOptions::new().append(true).open(&path).unwrap();
    f.write_all(&[9; 17]).unwrap();
    drop(f);
    let (mut log, opened) = open(&cfg);
    assert_eq!((opened.records, opened.torn_bytes), (1, 17));
    assert_eq!(std::fs::metadata(&path).unwrap().len(), RECORD as u64);
    log.append(&Record::Accepted {
        id: id(2),
        amount: Cents(1),
    });
    log.write().unwrap();
    drop(log);
    let (_, opened) = open(&cfg);
    assert_eq!(opened.records, 2);
}

/// Drives an engine, logging like the worker does, "crashes" at every step, and
/// checks the restored engine agrees with the original on what is done and what
/// is not.
#[test]
fn replay_rebuilds_summary_and_queue() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = LogConfig {
        sync_interval: None,
        ..LogConfig::new(dir.path().to_path_buf())
    };
    let (mut log, _) = open(&cfg);
    let mut e = Engine::new(EngineConfig::default());
    let t = |ms: i64| Mono(ms * 1000);
    let wall = |ms: i64| Micros(1_700_000_000_000_000 + ms * 1000);
    for n in 0..5 {
        e.submit(id(n), Cents(100 + n as i64), t(0));
        log.append(&Record::Accepted {
            id: id(n),
            amount: Cents(100 + n as i64),
        });
    }
    let mut sent = Vec::new();
    while let Some(Action::Send {
        attempt,
        processor,
        id,
        requested_at,
        ..
    }) = e.next_action(t(0), wall(0))
    {
        log.append(&Record::Sent {
            id,
            processor,
            requested_at,
        });
        sent.push(attempt);
    }
    // 0: stored; 1: failed (released); 2: unknown; 3 and 4: still in flight.
    for (k, r) in [SendResult::Stored, SendResult::Failed, SendResult::Unknown]
        .iter()
        .enumerate()
    {
        if let Some(rec) = Record::of_effect(e.on_send_result(sent[k], *r, t(5))) {
            log.append(&rec);
        }
    }
    log.write().unwrap();
    drop(log);

    let mut e2 = Engine::new(EngineConfig::default());
    let (_, opened) = PaymentLog::open(cfg, &mut e2, t(10)).unwrap();
    let restored = opened.restored;
    assert_eq!(
        restored,
        Restored {
            done: 1,
            pending: 4,
            maybe_sent: 3,
            parked: 0,
        }
    );
    let q = model::SummaryQuery::default();
    assert_eq!(e2.summary(&q), e.summary(&q));
    for n in 0..5 {
        assert!(e2.knows(&id(n)));
    }
    // The released one goes out again freely; the three that may have been sent
    // are looked up first, on the processor they went to.
    let mut lookups = 0;
    let mut sends = 0;
    for _ in 0..10 {
        match e2.next_action(t(20_000), wall(20_000)) {
            Some(Action::Lookup { .. }) => lookups += 1,
            Some(Action::Send { .. }) => sends += 1,
            None => break,
        }
    }
    assert_eq!((lookups, sends), (3, 1));
}

#[test]
fn compaction_keeps_the_state() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = LogConfig {
        sync_interval: Some(Duration::from_millis(1)),
        compact_min_records: 0,
        ..LogConfig::new(dir.path().to_path_buf())
    };
    let (mut log, _) = open(&cfg);
    let mut e = Engine::new(EngineConfig::default());
    let t = |ms: i64| Mono(ms * 1000);
    let wall = |ms: i64| Micros(1_700_000_000_000_000 + ms * 1000);
    for n in 0..50u128 {
        e.submit(id(n), Cents(10), t(0));
        log.append(&Record::Accepted {
            id: id(n),
            amount: Cents(10),
        });
    }
    for k in 0..40 {
        let Some(Action::Send {
            attempt,
            processor,
            id,
            requested_at,
            ..
        }) = e.next_action(t(k), wall(k))
        else {
            panic!()
        };
        log.append(&Record::Sent {
            id,
            processor,
            requested_at,
        });
        let eff = e.on_send_result(attempt, SendResult::Stored, t(k));
        log.append(&Record::of_effect(eff).unwrap());
    }
    log.write().unwrap();
    assert!(log.wants_compaction());
    log.compact(&e).unwrap();
    assert!(log.records() < 130);
    log.append(&Record::Accepted {
        id: id(99),
        amount: Cents(1),
    });
    log.write().unwrap();
    drop(log);
    let mut e2 = Engine::new(EngineConfig::default());
    let (_, opened) = PaymentLog::open(cfg, &mut e2, t(100)).unwrap();
    let r = opened.restored;
    assert_eq!(r.pending, 11);
    let q = model::SummaryQuery::default();
    assert_eq!(e2.summary(&q), e.summary(&q));
    assert!(e2.knows(&id(3)) && e2.knows(&id(45)) && e2.knows(&id(99)));
}

/// Opens a log into a throwaway engine.
fn open(cfg: &LogConfig) -> (PaymentLog, Opened) {
    let mut e = Engine::new(crate::engine::EngineConfig::default());
    PaymentLog::open(cfg.clone(), &mut e, Mono(0)).unwrap()
}

#[test]
fn one_worker_per_data_dir() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = LogConfig::new(dir.path().to_path_buf());
    let (first, _) = open(&cfg);
    let mut e = Engine::new(crate::engine::EngineConfig::default());
    let err = PaymentLog::open(cfg.clone(), &mut e, Mono(0)).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("in use by another payroute worker"), "{msg}");
    assert!(
        msg.contains(&std::process::id().to_string()),
        "names the holder: {msg}"
    );
    drop(first);
    // Released with its holder.
    let _ = open(&cfg);
}

#[test]
fn streamed_replay_reads_a_log_larger_than_its_buffer() {
    // 60,000 records: more than two of the reader's chunks, with the chunk edges
    // falling inside records.
    let mut img = Vec::new();
    for n in 0..60_000u128 {
        img.extend_from_slice(
            &Record::Accepted {
                id: Uuid::from_u128(n),
                amount: Cents(1),
            }
            .encode(),
        );
    }
    img.extend_from_slice(&[7; 13]);
    let mut n = 0u64;
    let end = read_records(&img[..], |_| n += 1).unwrap();
    assert_eq!((n, end.records, end.torn_bytes), (60_000, 60_000, 13));
    // Damage in the middle of a later chunk, with valid records after it.
    img.truncate(60_000 * RECORD);
    img[40_000 * RECORD + 3] ^= 1;
    assert!(matches!(
        read_records(&img[..], |_| ()),
        Err(super::replay::ReadError::Corrupt(CorruptLog { offset })) if offset == 40_000 * RECORD as u64
    ));
}

#[test]
fn compaction_is_triggered_by_the_growth_since_the_last_snapshot() {
    // The storm: with a threshold of 1,000 records, 3,000 payments gave 542
    // compactions (the trigger compared the log with twice the live payments, which
    // it stays near once it reached it). Now the next compaction waits for the log to
    // double from the last snapshot.
    let dir = tempfile::tempdir().unwrap();
    let cfg = LogConfig {
        sync_interval: None,
        compact_min_records: 1_000,
        ..LogConfig::new(dir.path().to_path_buf())
    };
    let (mut log, _) = open(&cfg);
    let mut e = Engine::new(EngineConfig::default());
    let mut compactions = 0;
    let mut old_rule_would_fire = 0;
    for n in 0..3_000u128 {
        let mut c = crate::core::Core::new(e, log);
        finish_one(&mut c, n);
        e = c.engine;
        log = c.journal;
        // The old rule, for comparison: more than twice the live payments.
        if log.records() >= 1_000 && log.records() > 2 * (e.live_payments() as u64 + 1) {
            old_rule_would_fire += 1;
        }
        if log.wants_compaction() {
            log.compact(&e).unwrap();
            compactions += 1;
        }
    }
    // 3 records per payment; each snapshot ~1 record per payment: the log doubles
    // from ~1,000 to ~9,000 records in a handful of steps.
    assert!((1..=6).contains(&compactions), "{compactions} compactions");
    assert!(
        old_rule_would_fire > 500,
        "the old rule: {old_rule_would_fire}"
    );
}

#[test]
fn a_purge_during_a_compaction_abandons_it() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = LogConfig {
        sync_interval: None,
        compact_min_records: 0,
        ..LogConfig::new(dir.path().to_path_buf())
    };
    let (mut log, _) = open(&cfg);
    let mut e = Engine::new(EngineConfig::default());
    for k in [1, 2] {
        e.submit(id(k), Cents(1), Mono(0));
        accept(&mut log, k);
    }
    let mut job = log
        .begin_compaction(&e, crate::engine::Snapshot::default())
        .unwrap();
    job.write_snapshot().unwrap();
    log.clear().unwrap();
    e.purge(Mono(0));
    // Accepted after the purge: the log is now shorter than where the snapshot was cut
    // (step 3 computed a negative tail from that, and panicked).
    accept(&mut log, 3);
    log.mark_tail(&mut job);
    job.copy_tail().unwrap();
    log.finish_compaction(job).unwrap();
    drop(log);
    let (_, opened) = open(&cfg);
    assert_eq!(opened.records, 1, "the purged payments must not come back");
}

/// Payment `n` accepted, sent, stored and its outcome written.
fn finish_one(c: &mut crate::core::Core<PaymentLog>, n: u128) {
    let now = Mono(n as i64 * 1000);
    c.submit(id(n), Cents(10), now);
    let mut actions = Vec::new();
    c.take_actions(now, Micros(1_700_000_000_000_000 + now.0), 10, &mut actions);
    for a in actions {
        if let Action::Send { attempt, .. } = a {
            c.on_send_result(attempt, SendResult::Stored, now);
        }
    }
    c.flush().unwrap();
}

/// A log of `n` finished payments, and the engine that wrote it.
fn finished_payments(cfg: &LogConfig, n: u128) -> (PaymentLog, Engine) {
    let (log, _) = open(cfg);
    let mut c = crate::core::Core::new(Engine::new(EngineConfig::default()), log);
    for k in 0..n {
        finish_one(&mut c, k);
    }
    (c.journal, c.engine)
}

fn accept(log: &mut PaymentLog, k: u128) {
    log.append(&Record::Accepted {
        id: id(k),
        amount: Cents(1),
    });
    log.write().unwrap();
}

/// A log's settings in `dir`, with no sync thread: syncs only when asked.
fn without_sync_thread(dir: &tempfile::TempDir) -> LogConfig {
    LogConfig {
        sync_interval: None,
        ..LogConfig::new(dir.path().to_path_buf())
    }
}

/// Steps 1 to 3 of a compaction of `log`, with `during_step_2` written meanwhile.
fn through_step_3(
    log: &mut PaymentLog,
    e: &Engine,
    during_step_2: impl FnOnce(&mut PaymentLog),
) -> Compaction {
    let mut job = log
        .begin_compaction(e, crate::engine::Snapshot::default())
        .unwrap();
    during_step_2(log);
    job.write_snapshot().unwrap();
    log.mark_tail(&mut job);
    job.copy_tail().unwrap();
    job
}

#[test]
fn a_compaction_copies_under_the_lock_only_what_was_written_after_its_tail_copy() {
    // At ten times the preview a compaction held the engine's lock 14 ms for its
    // snapshot and 22-28 ms for its swap (the whole tail copied and synced, then the
    // directory synced, under the lock): every api request waited that long.
    let dir = tempfile::tempdir().unwrap();
    let cfg = without_sync_thread(&dir);
    let (mut log, e) = finished_payments(&cfg, 50);
    let job = through_step_3(&mut log, &e, |log| {
        for k in 100..130 {
            accept(log, k);
        }
    });
    for k in 200..202 {
        accept(&mut log, k); // during step 3's copy
    }
    let done = log.finish_compaction(job).unwrap();
    assert_eq!(
        done,
        Finished {
            copied_records: 2,
            synced: false
        },
        "no sync promised those two records anything: nothing to sync under the lock"
    );
    // The old log (its handle, the sync thread's, step 3's) is closed by the caller,
    // away from the lock: the last close frees its blocks.
    let retired = log.take_retired();
    assert_eq!(retired.len(), 3);
    assert_eq!(retired[0].metadata().unwrap().nlink(), 0, "renamed over");
    accept(&mut log, 300); // after the swap: into the new file
    drop(log);
    let (_, opened) = open(&cfg);
    assert_eq!(opened.restored.done, 50);
    assert_eq!(opened.restored.pending, 30 + 2 + 1);
}

#[test]
fn records_a_sync_promised_after_the_tail_copy_are_synced_before_the_swap() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = without_sync_thread(&dir);
    let (mut log, e) = finished_payments(&cfg, 20);
    let job = through_step_3(&mut log, &e, |_| {});
    accept(&mut log, 100);
    // As the dispatcher does before a send leaves: this record is now promised durable.
    log.sync_handle().sync().unwrap();
    let one_synced = Finished {
        copied_records: 1,
        synced: true,
    };
    assert_eq!(log.finish_compaction(job).unwrap(), one_synced);
    // Without step 3, the whole tail is copied and synced under the lock, as before.
    let dir = tempfile::tempdir().unwrap();
    let cfg = LogConfig::new(dir.path().to_path_buf());
    let (mut log, e) = finished_payments(&cfg, 0);
    let mut job = log
        .begin_compaction(&e, crate::engine::Snapshot::default())
        .unwrap();
    accept(&mut log, 400);
    job.write_snapshot().unwrap();
    assert_eq!(log.finish_compaction(job).unwrap(), one_synced);
}

/// What a test does next to the log while a compaction may be under way.
#[derive(Debug, Clone, Copy)]
enum Op {
    Accept,
    Sync,
    Purge,
    /// The compaction's next step (starting one when none is under way).
    Step,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => Just(Op::Accept),
        1 => Just(Op::Sync),
        1 => Just(Op::Purge),
        3 => Just(Op::Step),
    ]
}

/// A compaction between its steps, as the worker runs it.
enum Stage {
    Begun(Compaction),
    Written(Compaction),
    TailCopied(Compaction),
}

/// Runs the compaction's next step; `None` once it is finished.
fn step(log: &mut PaymentLog, e: &Engine, stage: Option<Stage>) -> Option<Stage> {
    match stage {
        None => Some(Stage::Begun(
            log.begin_compaction(e, crate::engine::Snapshot::default())
                .unwrap(),
        )),
        Some(Stage::Begun(mut job)) => {
            job.write_snapshot().unwrap();
            Some(Stage::Written(job))
        }
        Some(Stage::Written(mut job)) => {
            log.mark_tail(&mut job);
            job.copy_tail().unwrap();
            Some(Stage::TailCopied(job))
        }
        Some(Stage::TailCopied(job)) => {
            log.finish_compaction(job).unwrap();
            None
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Whatever happens between a compaction's steps (accepts, syncs, purges), the log
    /// reopened holds exactly the payments accepted since the last purge.
    #[test]
    fn a_compaction_interleaved_with_anything_keeps_the_log_whole(
        ops in proptest::collection::vec(op(), 1..120)
    ) {
        let dir = tempfile::tempdir().unwrap();
        let cfg = without_sync_thread(&dir);
        let (mut log, _) = open(&cfg);
        let mut e = Engine::new(EngineConfig::default());
        let (mut stage, mut next, mut live) = (None, 0u128, 0u64);
        for op in ops {
            match op {
                Op::Accept => {
                    e.submit(id(next), Cents(1), Mono(0));
                    accept(&mut log, next);
                    next += 1;
                    live += 1;
                }
                Op::Sync => log.sync_handle().sync().unwrap(),
                Op::Purge => {
                    log.clear().unwrap();
                    e.purge(Mono(0));
                    live = 0;
                }
                Op::Step => stage = step(&mut log, &e, stage),
            }
        }
        while stage.is_some() {
            stage = step(&mut log, &e, stage);
        }
        drop(log);
        let (_, opened) = open(&cfg);
        prop_assert_eq!(opened.restored.pending, live);
    }
}
