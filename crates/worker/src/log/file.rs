//! [`PaymentLog`]: the log file of one data dir. Held by one worker at a time (an
//! exclusive lock for the process's life); written whole records at a time (a failed
//! write is cut back, never left as a fragment); compacted in four steps of which
//! only two short ones hold the engine's lock (see [`PaymentLog::begin_compaction`]).

use super::record::{Record, RECORD};
use super::replay::{read_records, ReadError, Restored, Restorer};
use super::sync::{SyncHandle, Syncer};
use crate::core::Journal;
use crate::engine::{Engine, Snapshot};
use model::{Mono, Processor};
use std::fs::{File, OpenOptions, TryLockError};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

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
    /// Handles of logs a compaction replaced, to be closed away from the lock
    /// ([`PaymentLog::take_retired`]).
    retired: Vec<File>,
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
            retired: Vec::new(),
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

    /// Step 1 of 4, under the engine's lock: a copy of the engine's durable state into
    /// `snap`'s buffers (allocated before the lock was taken: see
    /// [`Snapshot::with_room`]) and where the log stands now. Turning the copy into
    /// records is left to step 2.
    pub fn begin_compaction(
        &mut self,
        engine: &Engine,
        mut snap: Snapshot,
    ) -> io::Result<Compaction> {
        let started = Instant::now();
        let source = self.file.try_clone()?;
        engine.snapshot_into(&mut snap);
        self.compacting = true;
        Ok(Compaction {
            snap: Some(snap),
            locked: started.elapsed(),
            snapshot_len: 0,
            records: 0,
            cut: self.len,
            copied: self.len,
            copied_target: self.len,
            written_at_copy: None,
            source: Some(source),
            generation: self.generation,
            tmp: self.path.with_extension("log.compacting"),
        })
    }

    /// Step 3 of 4, under the engine's lock and at once: where the tail to copy without
    /// the lock (step 3's second half, [`Compaction::copy_tail`]) ends now.
    /// After a purge there is no tail: the compaction will be abandoned in step 4.
    pub fn mark_tail(&self, job: &mut Compaction) {
        if job.generation != self.generation {
            return;
        }
        job.copied_target = self.len;
        job.written_at_copy = Some(self.syncer.written());
    }

    /// Step 4 of 4, under the engine's lock: copies what was written since step 3,
    /// and renames the new log over the old one. Only when a sync since step 3 may have
    /// promised some of those records durable is the new file synced here (records
    /// nobody was promised are no less durable in the new file than in the old); the
    /// directory is synced with the next sync of the log, outside the lock. A purge
    /// since step 1 abandons it. Returns how many records were copied here, and
    /// whether it synced.
    pub fn finish_compaction(&mut self, mut job: Compaction) -> io::Result<Finished> {
        self.compacting = false;
        if let Some(source) = job.source.take() {
            self.retired.push(source);
        }
        if job.generation != self.generation {
            let _ = std::fs::remove_file(&job.tmp);
            return Ok(Finished::default());
        }
        let result = self.swap_in(&job);
        if result.is_err() {
            let _ = std::fs::remove_file(&job.tmp);
        }
        result
    }

    fn swap_in(&mut self, job: &Compaction) -> io::Result<Finished> {
        let started = Instant::now();
        let before = self.records;
        let mut done = Finished::default();
        let (old, len) = (&self.file, self.len);
        let mut new_log = None;
        let old_clone = self.syncer.swap(|synced| {
            let rest = len - job.copied;
            let mut out = OpenOptions::new().read(true).append(true).open(&job.tmp)?;
            copy_range(old, job.copied, rest, &mut out)?;
            done.copied_records = rest / RECORD as u64;
            // A sync since step 3 may have promised records of `rest` durable: they
            // must not become less so by the rename. (No step 3: all of the tail.)
            if rest > 0 && job.written_at_copy.is_none_or(|w| synced > w) {
                out.sync_data()?;
                done.synced = true;
            }
            let dir = File::open(&self.cfg.dir)?;
            let synced_file = out.try_clone()?;
            std::fs::rename(&job.tmp, &self.path)?;
            new_log = Some(out);
            Ok((synced_file, dir))
        })?;
        let old = std::mem::replace(&mut self.file, new_log.expect("set by a successful swap"));
        self.retired.extend([old].into_iter().chain(old_clone));
        let tail_len = self.len - job.cut;
        self.records = job.records + tail_len / RECORD as u64;
        self.len = job.snapshot_len + tail_len;
        self.last_snapshot = job.records;
        tracing::info!(
            lock_ms = (job.locked + started.elapsed()).as_secs_f64() * 1e3,
            copied_under_lock = done.copied_records,
            "compacted the payment log from {before} to {} records",
            self.records
        );
        Ok(done)
    }

    /// The handles of replaced logs, to close without the lock and off the runtime's
    /// threads: the last close of the old log frees its blocks (24-32 ms measured at ten
    /// times the preview, during which every api request waited).
    pub fn take_retired(&mut self) -> Vec<File> {
        std::mem::take(&mut self.retired)
    }

    /// Gives up a compaction whose step 2 or 3 failed.
    pub fn abort_compaction(&mut self, mut job: Compaction) {
        self.compacting = false;
        if let Some(source) = job.source.take() {
            self.retired.push(source);
        }
        let _ = std::fs::remove_file(&job.tmp);
    }

    /// Every step at once (tests).
    pub fn compact(&mut self, engine: &Engine) -> io::Result<()> {
        let mut job = self.begin_compaction(engine, Snapshot::default())?;
        let written = job.write_snapshot().and_then(|()| {
            self.mark_tail(&mut job);
            job.copy_tail()
        });
        match written {
            Ok(()) => self.finish_compaction(job).map(|_| ()),
            Err(e) => {
                self.abort_compaction(job);
                Err(e)
            }
        }
    }
}

/// What step 4 of a compaction did under the lock.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Finished {
    /// Records written since step 3, copied under the lock.
    pub copied_records: u64,
    /// Whether the new log was synced under the lock.
    pub synced: bool,
}

/// Appends `len` bytes of `from` at `offset` to `to`.
fn copy_range(from: &File, offset: u64, len: u64, to: &mut File) -> io::Result<()> {
    use std::os::unix::fs::FileExt;
    if len == 0 {
        return Ok(());
    }
    let mut bytes = vec![0u8; len as usize];
    from.read_exact_at(&mut bytes, offset)?;
    to.write_all(&bytes)
}

/// A compaction between its steps. See [`PaymentLog::begin_compaction`].
#[derive(Debug)]
pub struct Compaction {
    /// The engine's state, until step 2 writes it.
    snap: Option<Snapshot>,
    /// How long step 1 held the engine's lock.
    locked: Duration,
    snapshot_len: u64,
    records: u64,
    /// Length of the log when the snapshot was taken: later records are its tail.
    cut: u64,
    /// The tail up to here is in the new file, synced (step 3).
    copied: u64,
    /// Where step 3 copies the tail to.
    copied_target: u64,
    /// The log's write generation when step 3 began.
    written_at_copy: Option<u64>,
    /// The log file, read by step 3 without the lock.
    source: Option<File>,
    generation: u64,
    tmp: PathBuf,
}

impl Compaction {
    /// Step 2 of 4, without any lock: turns the snapshot into records, and writes and
    /// syncs them to a temporary file beside the log.
    pub fn write_snapshot(&mut self) -> io::Result<()> {
        let mut snap = self.snap.take().expect("step 2 runs once");
        let mut bytes = Vec::with_capacity(2 * RECORD * snap.done_ids().size_hint().0);
        self.records = snapshot_records(&mut snap, |r| bytes.extend_from_slice(&r.encode()));
        drop(snap);
        self.snapshot_len = bytes.len() as u64;
        let mut f = File::create(&self.tmp)?;
        f.write_all(&bytes)?;
        f.sync_data()
    }

    /// Step 3's second half, without any lock: appends the log's tail written since
    /// step 1 (up to [`PaymentLog::mark_tail`]) to the new file, and syncs it, so that
    /// step 4 has only the last few records to copy.
    pub fn copy_tail(&mut self) -> io::Result<()> {
        let mut out = OpenOptions::new().append(true).open(&self.tmp)?;
        let source = self.source.as_ref().expect("until step 4");
        copy_range(
            source,
            self.copied,
            self.copied_target - self.copied,
            &mut out,
        )?;
        out.sync_data()?;
        self.copied = self.copied_target;
        Ok(())
    }
}

/// The engine's state as log records, handed to `each` (see [`snapshot_records`]).
pub fn snapshot(engine: &Engine, each: impl FnMut(Record)) -> u64 {
    snapshot_records(&mut engine.snapshot(), each)
}

/// The state in `snap` as log records, handed to `each`: summary buckets, finished
/// ids, parked payments, pending payments with the timestamps they may have been
/// sent with. Replaying them rebuilds the same state. Returns how many.
fn snapshot_records(snap: &mut Snapshot, mut each: impl FnMut(Record)) -> u64 {
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
