//! The payment log: an append-only file of fixed-size, checksummed records that makes
//! every accepted payment and every outcome survive a crash of the worker.
//!
//! - A payment is appended (`write`, into the page cache) before the api is told it
//!   was accepted; so is every timestamp chosen for a processor, before the request
//!   leaves; so is every outcome. A process crash loses nothing.
//! - `fdatasync` runs on its own thread every `sync_interval`, grouped: a machine crash
//!   loses at most that interval, and the request path never waits on the disk.
//! - On start the log is replayed: recorded outcomes rebuild the summary, unfinished
//!   payments go back to the queue, and payments that may have been sent are resolved
//!   on that processor first (see `Engine::restore_pending`).
//! - A torn tail (a partial or corrupt last record, as left by a crash mid-write) is
//!   cut off with a warning. Corruption followed by valid records is not a torn tail:
//!   the worker refuses to start rather than replay a damaged history.
//! - Compaction rewrites the log as a snapshot (summary buckets, ids already done,
//!   pending payments) when it holds more than twice the records the snapshot would.
//!
//! Architecture invariant: a record is never rewritten in place; the file is only
//! appended to, truncated to empty (purge), cut at a torn tail, or replaced whole by
//! an atomic rename (compaction).

use crate::engine::{Effect, Engine};
use model::{Cents, Micros, Processor, Totals};
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use uuid::Uuid;

/// Bytes per record: crc32 (4), kind (1), processor (1), padding (2), id (16),
/// amount (8), timestamp (8).
pub const RECORD: usize = 40;

const FILE_NAME: &str = "payments.log";

/// One log record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Record {
    /// A payment was accepted.
    Accepted { id: Uuid, amount: Cents },
    /// A request for it is about to leave for `processor` with `requested_at`.
    Sent {
        id: Uuid,
        processor: Processor,
        requested_at: Micros,
    },
    /// Nothing of it can be stored at `processor` any more.
    Released { id: Uuid, processor: Processor },
    /// `processor` stored it with `requested_at`: it is done.
    Recorded {
        id: Uuid,
        processor: Processor,
        requested_at: Micros,
        amount: Cents,
    },
    /// Snapshot: this id is done (its amount is in a bucket).
    Done { id: Uuid },
    /// Snapshot: a summary bucket.
    Bucket {
        processor: Processor,
        ms: i64,
        totals: Totals,
    },
}

impl Record {
    pub fn encode(&self) -> [u8; RECORD] {
        let mut b = [0u8; RECORD];
        let (kind, p, id, amount, time) = match *self {
            Record::Accepted { id, amount } => (1, 0, *id.as_bytes(), amount.0, 0),
            Record::Sent {
                id,
                processor,
                requested_at,
            } => (
                2,
                processor.index() as u8,
                *id.as_bytes(),
                0,
                requested_at.0,
            ),
            Record::Released { id, processor } => {
                (3, processor.index() as u8, *id.as_bytes(), 0, 0)
            }
            Record::Recorded {
                id,
                processor,
                requested_at,
                amount,
            } => (
                4,
                processor.index() as u8,
                *id.as_bytes(),
                amount.0,
                requested_at.0,
            ),
            Record::Done { id } => (5, 0, *id.as_bytes(), 0, 0),
            Record::Bucket {
                processor,
                ms,
                totals,
            } => {
                let mut idb = [0u8; 16];
                idb[..8].copy_from_slice(&totals.count.to_le_bytes());
                (6, processor.index() as u8, idb, totals.amount.0, ms)
            }
        };
        b[4] = kind;
        b[5] = p;
        b[8..24].copy_from_slice(&id);
        b[24..32].copy_from_slice(&amount.to_le_bytes());
        b[32..40].copy_from_slice(&time.to_le_bytes());
        let crc = crc32fast::hash(&b[4..]);
        b[..4].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// `None` when the checksum or the content is wrong.
    pub fn decode(b: &[u8; RECORD]) -> Option<Record> {
        let crc = u32::from_le_bytes(b[..4].try_into().ok()?);
        if crc != crc32fast::hash(&b[4..]) || b[6] != 0 || b[7] != 0 {
            return None;
        }
        let p = Processor::from_index(b[5])?;
        let idb: [u8; 16] = b[8..24].try_into().ok()?;
        let id = Uuid::from_bytes(idb);
        let amount = Cents(i64::from_le_bytes(b[24..32].try_into().ok()?));
        let time = i64::from_le_bytes(b[32..40].try_into().ok()?);
        Some(match b[4] {
            1 => Record::Accepted { id, amount },
            2 => Record::Sent {
                id,
                processor: p,
                requested_at: Micros(time),
            },
            3 => Record::Released { id, processor: p },
            4 => Record::Recorded {
                id,
                processor: p,
                requested_at: Micros(time),
                amount,
            },
            5 => Record::Done { id },
            6 => Record::Bucket {
                processor: p,
                ms: time,
                totals: Totals {
                    count: u64::from_le_bytes(idb[..8].try_into().ok()?),
                    amount,
                },
            },
            _ => return None,
        })
    }

    /// The record of an engine outcome, if it has one.
    pub fn of_effect(e: Effect) -> Option<Record> {
        match e {
            Effect::None => None,
            Effect::Recorded {
                id,
                processor,
                requested_at,
                amount,
            } => Some(Record::Recorded {
                id,
                processor,
                requested_at,
                amount,
            }),
            Effect::Released { id, processor } => Some(Record::Released { id, processor }),
        }
    }
}

/// What [`PaymentLog::open`] found.
#[derive(Debug, Default)]
pub struct Replay {
    pub records: Vec<Record>,
    /// Bytes cut off a torn tail.
    pub torn_bytes: u64,
}

/// Settings of the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    pub dir: PathBuf,
    /// Interval of the grouped `fdatasync`; `None` leaves flushing to the kernel.
    pub sync_interval: Option<Duration>,
    /// Compaction is considered only past this many records (40 bytes each).
    pub compact_min_records: u64,
}

impl LogConfig {
    pub fn new(dir: PathBuf) -> LogConfig {
        LogConfig {
            dir,
            sync_interval: Some(Duration::from_millis(20)),
            // 250,000 records = 10 MB: below this, rewriting buys nothing.
            compact_min_records: 250_000,
        }
    }
}

/// The open log. Appends go to a buffer; [`PaymentLog::flush`] writes them.
pub struct PaymentLog {
    cfg: LogConfig,
    path: PathBuf,
    file: File,
    buf: Vec<u8>,
    records: u64,
    syncer: Option<Syncer>,
}

impl std::fmt::Debug for PaymentLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PaymentLog")
            .field("path", &self.path)
            .field("records", &self.records)
            .finish()
    }
}

impl PaymentLog {
    /// Opens (or creates) the log in `cfg.dir` and reads it back.
    pub fn open(cfg: LogConfig) -> io::Result<(PaymentLog, Replay)> {
        std::fs::create_dir_all(&cfg.dir)?;
        let path = cfg.dir.join(FILE_NAME);
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&path)?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        let replay = parse(&bytes).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{}: {e}", path.display()),
            )
        })?;
        if replay.torn_bytes > 0 {
            let keep = bytes.len() as u64 - replay.torn_bytes;
            tracing::warn!(
                "{}: cutting a torn tail of {} bytes at byte {keep}",
                path.display(),
                replay.torn_bytes
            );
            file.set_len(keep)?;
            file.seek(SeekFrom::End(0))?;
        }
        let records = replay.records.len() as u64;
        let syncer = cfg
            .sync_interval
            .map(|i| Syncer::start(file.try_clone(), i));
        let log = PaymentLog {
            cfg,
            path,
            file,
            buf: Vec::with_capacity(64 * RECORD),
            records,
            syncer,
        };
        Ok((log, replay))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn records(&self) -> u64 {
        self.records
    }

    pub fn append(&mut self, r: &Record) {
        self.buf.extend_from_slice(&r.encode());
        self.records += 1;
    }

    /// Writes what was appended (one `write`; the data is then safe from a process
    /// crash). The sync thread makes it safe from a machine crash soon after.
    pub fn flush(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let r = self.file.write_all(&self.buf);
        self.buf.clear();
        if let Some(s) = &self.syncer {
            s.dirty.store(true, Ordering::Release);
        }
        r
    }

    /// Empties the log (purge).
    pub fn clear(&mut self) -> io::Result<()> {
        self.buf.clear();
        self.file.set_len(0)?;
        self.records = 0;
        self.file.sync_data()
    }

    /// Whether the log holds more than twice the records a snapshot of `live`
    /// payments would, and is big enough for that to matter.
    pub fn wants_compaction(&self, live: usize) -> bool {
        self.records >= self.cfg.compact_min_records && self.records > 2 * (live as u64 + 1)
    }

    /// Replaces the log by a snapshot of the engine: written to a temporary file,
    /// synced, then renamed over the log.
    pub fn compact(&mut self, engine: &Engine) -> io::Result<()> {
        self.flush()?;
        let snap = engine.snapshot();
        let mut out = Vec::with_capacity(engine.live_payments() * 2 * RECORD);
        let mut n = 0u64;
        let mut push = |r: Record, out: &mut Vec<u8>| {
            out.extend_from_slice(&r.encode());
            n += 1;
        };
        for (processor, ms, totals) in snap.buckets() {
            push(
                Record::Bucket {
                    processor,
                    ms,
                    totals,
                },
                &mut out,
            );
        }
        for id in snap.done_ids() {
            push(Record::Done { id: *id }, &mut out);
        }
        for (id, amount, sent) in snap.pending() {
            push(Record::Accepted { id, amount }, &mut out);
            for p in Processor::ALL {
                if let Some(at) = sent[p.index()] {
                    push(
                        Record::Sent {
                            id,
                            processor: p,
                            requested_at: at,
                        },
                        &mut out,
                    );
                }
            }
        }
        let tmp = self.path.with_extension("log.compacting");
        {
            let mut f = File::create(&tmp)?;
            f.write_all(&out)?;
            f.sync_data()?;
        }
        std::fs::rename(&tmp, &self.path)?;
        if let Ok(d) = File::open(&self.cfg.dir) {
            let _ = d.sync_all();
        }
        let before = self.records;
        self.file = OpenOptions::new()
            .read(true)
            .append(true)
            .open(&self.path)?;
        self.records = n;
        if let Some(s) = &self.syncer {
            s.replace(self.file.try_clone());
        }
        tracing::info!("compacted the payment log from {before} to {n} records");
        Ok(())
    }
}

/// Corruption that is not a torn tail: a bad record followed by valid ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "corrupt record at byte {offset} followed by valid records; refusing to replay a \
     damaged log (move it aside to start empty)"
)]
pub struct CorruptLog {
    pub offset: u64,
}

/// Splits a log image into records.
pub fn parse(bytes: &[u8]) -> Result<Replay, CorruptLog> {
    let mut records = Vec::with_capacity(bytes.len() / RECORD);
    let mut chunks = bytes.chunks_exact(RECORD);
    let mut offset = 0u64;
    for c in chunks.by_ref() {
        let c: &[u8; RECORD] = c.try_into().expect("exact chunks");
        match Record::decode(c) {
            Some(r) => records.push(r),
            None => {
                // Torn only if nothing valid follows.
                let rest = &bytes[offset as usize..];
                let later_valid = rest
                    .chunks_exact(RECORD)
                    .skip(1)
                    .any(|c| Record::decode(c.try_into().expect("exact")).is_some());
                if later_valid {
                    return Err(CorruptLog { offset });
                }
                return Ok(Replay {
                    records,
                    torn_bytes: bytes.len() as u64 - offset,
                });
            }
        }
        offset += RECORD as u64;
    }
    Ok(Replay {
        records,
        torn_bytes: chunks.remainder().len() as u64,
    })
}

/// Counts of a replay, for the start-up log line.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Restored {
    pub done: u64,
    pub pending: u64,
    pub maybe_sent: u64,
}

/// Rebuilds the engine's state from replayed records.
pub fn restore(engine: &mut Engine, records: &[Record], now: Micros) -> Restored {
    use std::collections::HashMap;
    // Pending payments by id, in first-seen order.
    let mut pending: HashMap<Uuid, (usize, Cents, [Option<Micros>; 2])> = HashMap::new();
    let mut order = 0usize;
    let mut out = Restored::default();
    for r in records {
        match *r {
            Record::Accepted { id, amount } => {
                if !engine.knows(&id) {
                    pending.entry(id).or_insert_with(|| {
                        order += 1;
                        (order, amount, [None; 2])
                    });
                }
            }
            Record::Sent {
                id,
                processor,
                requested_at,
            } => {
                if let Some(e) = pending.get_mut(&id) {
                    e.2[processor.index()] = Some(requested_at);
                }
            }
            Record::Released { id, processor } => {
                if let Some(e) = pending.get_mut(&id) {
                    e.2[processor.index()] = None;
                }
            }
            Record::Recorded {
                id,
                processor,
                requested_at,
                amount,
            } => {
                if pending.remove(&id).is_some() || !engine.knows(&id) {
                    engine.restore_done(id, amount, processor, requested_at);
                    out.done += 1;
                }
            }
            Record::Done { id } => {
                engine.restore_seen(id);
                out.done += 1;
            }
            Record::Bucket {
                processor,
                ms,
                totals,
            } => engine.restore_bucket(processor, ms, totals),
        }
    }
    let mut rest: Vec<_> = pending.into_iter().collect();
    rest.sort_by_key(|(_, (o, _, _))| *o);
    for (id, (_, amount, sent)) in rest {
        out.pending += 1;
        if sent.iter().any(Option::is_some) {
            out.maybe_sent += 1;
        }
        engine.restore_pending(id, amount, sent, now);
    }
    out
}

/// The grouped `fdatasync` thread: syncs the log when something was written since the
/// last sync, at most once per interval.
struct Syncer {
    dirty: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    file: Arc<Mutex<Option<File>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Syncer {
    fn start(file: io::Result<File>, interval: Duration) -> Syncer {
        let dirty = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let file = Arc::new(Mutex::new(file.ok()));
        let (d, s, f) = (dirty.clone(), stop.clone(), file.clone());
        let thread = std::thread::Builder::new()
            .name("payroute-fsync".into())
            .spawn(move || {
                while !s.load(Ordering::Acquire) {
                    std::thread::sleep(interval);
                    if d.swap(false, Ordering::AcqRel) {
                        if let Ok(guard) = f.lock() {
                            if let Some(file) = guard.as_ref() {
                                if let Err(e) = file.sync_data() {
                                    tracing::error!("fdatasync of the payment log failed: {e}");
                                }
                            }
                        }
                    }
                }
            })
            .ok();
        Syncer {
            dirty,
            stop,
            file,
            thread,
        }
    }

    fn replace(&self, file: io::Result<File>) {
        if let Ok(mut g) = self.file.lock() {
            *g = file.ok();
        }
    }
}

impl Drop for Syncer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        if let Ok(g) = self.file.lock() {
            if let Some(f) = g.as_ref() {
                let _ = f.sync_data();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{Action, EngineConfig, SendResult};
    use proptest::prelude::*;

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
            Record::Done { id: id(9) },
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
        assert_eq!((r.records.len(), r.torn_bytes), (6, 3));
        // A corrupt last record is a torn tail too.
        img.truncate(full);
        img[full - 1] ^= 1;
        let r = parse(&img).unwrap();
        assert_eq!((r.records.len(), r.torn_bytes), (5, RECORD as u64));
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
            let (mut log, replay) = PaymentLog::open(cfg.clone()).unwrap();
            assert!(replay.records.is_empty());
            log.append(&Record::Accepted {
                id: id(1),
                amount: Cents(1),
            });
            log.flush().unwrap();
        }
        let path = dir.path().join(FILE_NAME);
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(&[9; 17]).unwrap();
        drop(f);
        let (mut log, replay) = PaymentLog::open(cfg.clone()).unwrap();
        assert_eq!((replay.records.len(), replay.torn_bytes), (1, 17));
        assert_eq!(std::fs::metadata(&path).unwrap().len(), RECORD as u64);
        log.append(&Record::Accepted {
            id: id(2),
            amount: Cents(1),
        });
        log.flush().unwrap();
        drop(log);
        let (_, replay) = PaymentLog::open(cfg).unwrap();
        assert_eq!(replay.records.len(), 2);
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
        let (mut log, _) = PaymentLog::open(cfg.clone()).unwrap();
        let mut e = Engine::new(EngineConfig::default());
        let t = |ms: i64| Micros(1_700_000_000_000_000 + ms * 1000);
        for n in 0..5 {
            e.submit(id(n), Cents(100 + n as i64));
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
        }) = e.next_action(t(0))
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
        log.flush().unwrap();
        drop(log);

        let (_, replay) = PaymentLog::open(cfg).unwrap();
        let mut e2 = Engine::new(EngineConfig::default());
        let restored = restore(&mut e2, &replay.records, t(10));
        assert_eq!(
            restored,
            Restored {
                done: 1,
                pending: 4,
                maybe_sent: 3
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
            match e2.next_action(t(20_000)) {
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
        let (mut log, _) = PaymentLog::open(cfg.clone()).unwrap();
        let mut e = Engine::new(EngineConfig::default());
        let t = |ms: i64| Micros(1_700_000_000_000_000 + ms * 1000);
        for n in 0..50u128 {
            e.submit(id(n), Cents(10));
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
            }) = e.next_action(t(k))
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
        log.flush().unwrap();
        assert!(log.wants_compaction(e.live_payments()));
        log.compact(&e).unwrap();
        assert!(log.records() < 130);
        log.append(&Record::Accepted {
            id: id(99),
            amount: Cents(1),
        });
        log.flush().unwrap();
        drop(log);
        let (_, replay) = PaymentLog::open(cfg).unwrap();
        let mut e2 = Engine::new(EngineConfig::default());
        let r = restore(&mut e2, &replay.records, t(100));
        assert_eq!(r.pending, 11);
        let q = model::SummaryQuery::default();
        assert_eq!(e2.summary(&q), e.summary(&q));
        assert!(e2.knows(&id(3)) && e2.knows(&id(45)) && e2.knows(&id(99)));
    }
}
