//! [`PaymentLog`]: the log file of one data dir. Held by one worker at a time (an
//! exclusive lock for the process's life); written whole records at a time (a failed
//! write is cut back, never left as a fragment); compacted in three steps of which
//! only the cheap ones hold the engine's lock.

use super::record::{Record, RECORD};
use super::replay::{read_records, ReadError, Restored, Restorer};
use super::sync::{SyncHandle, Syncer};
use crate::core::Journal;
use crate::engine::Engine;
use model::{Mono, Processor};
use std::fs::{File, OpenOptions, TryLockError};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

const FILE_NAME: &str = "payments.log";
const LOCK_NAME: &str = "LOCK";

/// Settings of the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    pub dir: PathBuf,
    /// Interval of the grouped `fdatasync`; `None` leaves flushing to the kernel
    /// (syncs that a step needs, before sends leave, still happen).
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

/// What [`PaymentLog::open`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Opened {
    pub records: u64,
    /// Bytes cut off a torn tail.
    pub torn_bytes: u64,
    pub restored: Restored,
}

/// The open log. Appends go to a buffer; [`Journal::write`] writes them.
pub struct PaymentLog {
    cfg: LogConfig,
    path: PathBuf,
    file: File,
    buf: Vec<u8>,
    /// Records written (whole).
    records: u64,
    /// Bytes of whole records written: a failed write is cut back to this.
    len: u64,
    /// A failed write could not be cut back: nothing is written until it is.
    fragment: bool,
    syncer: Syncer,
    /// Bumped by a purge: a compaction begun before it must not finish.
    generation: u64,
    /// Records of the last snapshot: the next compaction waits for twice as many.
    last_snapshot: u64,
    compacting: bool,
    /// Held for the process's life: one worker per data dir.
    _lock: File,
}

impl std::fmt::Debug for PaymentLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PaymentLog")
            .field("path", &self.path)
            .field("records", &self.records)
            .finish()
    }
}

/// Takes the data dir's lock, or says who holds it.
fn lock_dir(dir: &Path) -> io::Result<File> {
    let path = dir.join(LOCK_NAME);
    let mut f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)?;
    match f.try_lock() {
        Ok(()) => {
            f.set_len(0)?;
            writeln!(f, "{}", std::process::id())?;
            Ok(f)
        }
        Err(TryLockError::WouldBlock) => {
            let mut holder = String::new();
            let _ = f.read_to_string(&mut holder);
            Err(io::Error::new(
                io::ErrorKind::AddrInUse,
                format!(
                    "{} is in use by another payroute worker (pid {}); one worker per data \
                     dir: stop that one, or give this one another --data-dir",
                    dir.display(),
                    holder.trim()
                ),
            ))
        }
        Err(TryLockError::Error(e)) => Err(e),
    }
}

impl PaymentLog {
    /// Takes the data dir (creating it), and replays its log into `engine`, streaming.
    pub fn open(
        cfg: LogConfig,
        engine: &mut Engine,
        now: Mono,
    ) -> io::Result<(PaymentLog, Opened)> {
        std::fs::create_dir_all(&cfg.dir)?;
        let lock = lock_dir(&cfg.dir)?;
        let path = cfg.dir.join(FILE_NAME);
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&path)?;
        let mut restorer = Restorer::default();
        let end = read_records(&mut file, |r| restorer.apply(engine, r)).map_err(|e| match e {
            ReadError::Corrupt(c) => io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{}: {c}", path.display()),
            ),
            ReadError::Io(e) => e,
        })?;
        let restored = restorer.finish(engine, now);
        if end.torn_bytes > 0 {
            tracing::warn!(
                "{}: cutting a torn tail of {} bytes at byte {}",
                path.display(),
                end.torn_bytes,
                end.good_bytes
            );
            file.set_len(end.good_bytes)?;
        }
        file.seek(SeekFrom::End(0))?;
        let syncer = Syncer::start(file.try_clone(), cfg.sync_interval);
        let log = PaymentLog {
            cfg,
            path,
            file,
            buf: Vec::with_capacity(64 * RECORD),
            records: end.records,
            len: end.good_bytes,
            fragment: false,
            syncer,
            generation: 0,
            last_snapshot: 0,
            compacting: false,
            _lock: lock,
        };
        let opened = Opened {
            records: end.records,
            torn_bytes: end.torn_bytes,
            restored,
        };
        Ok((log, opened))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Records written.
    pub fn records(&self) -> u64 {
        self.records
    }

    /// Syncs the log from any thread, without the engine's lock.
    pub fn sync_handle(&self) -> SyncHandle {
        self.syncer.handle()
    }

    /// Cuts the file back to its last whole record after a failed write.
    fn cut_back(&mut self) -> io::Result<()> {
        self.file.set_len(self.len)?;
        self.fragment = false;
        Ok(())
    }

    /// Whether the log holds twice the records of its last snapshot (and is big
    /// enough for rewriting to matter): so compaction work is proportional to the
    /// log's growth, never a storm.
    pub fn wants_compaction(&self) -> bool {
        !self.compacting && self.records >= self.cfg.compact_min_records.max(2 * self.last_snapshot)
    }

    /// Step 1 of 3, under the engine's lock: the snapshot of the engine as bytes, and
    /// where the log stands now. Costs one pass over the live payments.
    pub fn begin_compaction(&mut self, engine: &Engine) -> Compaction {
        self.compacting = true;
        let (bytes, records) = snapshot_bytes(engine);
        Compaction {
            bytes,
            records,
            cut: self.len,
            generation: self.generation,
            tmp: self.path.with_extension("log.compacting"),
        }
    }

    /// Step 3 of 3, under the engine's lock: copies what was written since step 1,
    /// syncs it, and renames the snapshot over the log. Costs a copy of that tail and
    /// one `fdatasync`, whatever the log's size. A purge since step 1 abandons it.
    pub fn finish_compaction(&mut self, job: Compaction) -> io::Result<()> {
        self.compacting = false;
        if job.generation != self.generation {
            let _ = std::fs::remove_file(&job.tmp);
            return Ok(());
        }
        let result = self.swap_in(&job);
        if result.is_err() {
            let _ = std::fs::remove_file(&job.tmp);
        }
        result
    }

    fn swap_in(&mut self, job: &Compaction) -> io::Result<()> {
        let tail_len = self.len - job.cut;
        let mut tail = vec![0u8; tail_len as usize];
        {
            use std::os::unix::fs::FileExt;
            self.file.read_exact_at(&mut tail, job.cut)?;
        }
        let mut out = OpenOptions::new().append(true).open(&job.tmp)?;
        out.write_all(&tail)?;
        out.sync_data()?;
        std::fs::rename(&job.tmp, &self.path)?;
        if let Ok(d) = File::open(&self.cfg.dir) {
            let _ = d.sync_all();
        }
        let before = self.records;
        self.file = OpenOptions::new()
            .read(true)
            .append(true)
            .open(&self.path)?;
        self.syncer.replace(self.file.try_clone());
        self.records = job.records + tail_len / RECORD as u64;
        self.len = job.bytes.len() as u64 + tail_len;
        self.last_snapshot = job.records;
        tracing::info!(
            "compacted the payment log from {before} to {} records",
            self.records
        );
        Ok(())
    }

    /// Gives up a compaction whose step 2 failed.
    pub fn abort_compaction(&mut self, job: Compaction) {
        self.compacting = false;
        let _ = std::fs::remove_file(&job.tmp);
    }

    /// All three steps at once (tests).
    pub fn compact(&mut self, engine: &Engine) -> io::Result<()> {
        let job = self.begin_compaction(engine);
        match job.write_snapshot() {
            Ok(()) => self.finish_compaction(job),
            Err(e) => {
                self.abort_compaction(job);
                Err(e)
            }
        }
    }
}

/// A compaction between its steps. See [`PaymentLog::begin_compaction`].
#[derive(Debug)]
pub struct Compaction {
    bytes: Vec<u8>,
    records: u64,
    /// Length of the log when the snapshot was taken: later records are its tail.
    cut: u64,
    generation: u64,
    tmp: PathBuf,
}

impl Compaction {
    /// Step 2 of 3, without any lock: writes and syncs the snapshot to a temporary
    /// file beside the log.
    pub fn write_snapshot(&self) -> io::Result<()> {
        let mut f = File::create(&self.tmp)?;
        f.write_all(&self.bytes)?;
        f.sync_data()
    }

    /// Bytes of the snapshot.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }
}

/// The engine's state as bytes of log records (see [`snapshot`]).
fn snapshot_bytes(engine: &Engine) -> (Vec<u8>, u64) {
    let mut out = Vec::with_capacity(engine.live_payments() * 2 * RECORD);
    let n = snapshot(engine, |r| out.extend_from_slice(&r.encode()));
    (out, n)
}

/// The engine's state as log records, handed to `each`: summary buckets, finished
/// ids, parked payments, pending payments with the timestamps they may have been
/// sent with. Replaying them rebuilds the same state. Returns how many.
pub fn snapshot(engine: &Engine, mut each: impl FnMut(Record)) -> u64 {
    let snap = engine.snapshot();
    let mut n = 0u64;
    let mut push = |r: Record| {
        each(r);
        n += 1;
    };
    for (processor, ms, totals) in snap.buckets() {
        push(Record::Bucket {
            processor,
            ms,
            totals,
        });
    }
    for (id, amount) in snap.done_ids() {
        push(Record::Done { id: *id, amount });
    }
    for (id, parked) in snap.parked() {
        push(Record::Accepted {
            id,
            amount: parked.amount,
        });
        push(Record::Rejected {
            id,
            processor: parked.processor,
        });
    }
    for (id, amount, sent) in snap.pending() {
        push(Record::Accepted { id, amount });
        for p in Processor::ALL {
            if let Some(at) = sent[p.index()] {
                push(Record::Sent {
                    id,
                    processor: p,
                    requested_at: at,
                });
            }
        }
    }
    n
}

impl Journal for PaymentLog {
    fn append(&mut self, r: &Record) {
        self.buf.extend_from_slice(&r.encode());
    }

    /// One `write` of every buffered record: then safe from a process crash; the sync
    /// thread makes it safe from a machine crash soon after. On failure the file is cut
    /// back to its last whole record, so later records stay on the 40-byte grid.
    fn write(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        if self.fragment {
            if let Err(e) = self.cut_back() {
                self.buf.clear();
                return Err(e);
            }
        }
        let r = self.file.write_all(&self.buf);
        let n = self.buf.len() as u64;
        self.buf.clear();
        match r {
            Ok(()) => {
                self.len += n;
                self.records += n / RECORD as u64;
                self.syncer.mark_dirty();
                Ok(())
            }
            Err(e) => {
                self.fragment = true;
                let _ = self.cut_back();
                Err(e)
            }
        }
    }

    fn clear(&mut self) -> io::Result<()> {
        self.buf.clear();
        self.generation += 1;
        self.file.set_len(0)?;
        self.records = 0;
        self.len = 0;
        self.fragment = false;
        self.last_snapshot = 0;
        self.file.sync_data()
    }
}

impl<J: Journal> Journal for Option<J> {
    fn append(&mut self, r: &Record) {
        if let Some(j) = self {
            j.append(r);
        }
    }
    fn write(&mut self) -> io::Result<()> {
        self.as_mut().map_or(Ok(()), Journal::write)
    }
    fn clear(&mut self) -> io::Result<()> {
        self.as_mut().map_or(Ok(()), Journal::clear)
    }
}
