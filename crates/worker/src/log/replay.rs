//! Reading a log back: records are decoded as they stream from the file (the whole
//! log is never held in memory), applied to an engine one by one ([`Restorer`]), and
//! a torn tail is told apart from damage in the middle.

use super::record::{Record, RECORD};
use crate::engine::Engine;
use model::{Cents, Micros, Mono};
use std::collections::HashMap;
use std::io::{self, Read};
use uuid::Uuid;

/// Corruption that is not a torn tail: a bad record followed by valid ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "corrupt record at byte {offset} followed by valid records; refusing to replay a \
     damaged log (move it aside to start empty)"
)]
pub struct CorruptLog {
    pub offset: u64,
}

/// What a read of a whole log found.
#[derive(Debug, Default)]
pub struct Replay {
    pub records: Vec<Record>,
    /// Bytes cut off a torn tail.
    pub torn_bytes: u64,
}

/// Splits an in-memory log image into records (tests and the fuzz target; the worker
/// streams with [`read_records`]).
pub fn parse(bytes: &[u8]) -> Result<Replay, CorruptLog> {
    let mut records = Vec::with_capacity(bytes.len() / RECORD);
    let end = read_records(bytes, |r| records.push(r)).map_err(|e| match e {
        ReadError::Corrupt(c) => c,
        ReadError::Io(_) => unreachable!("reading a slice cannot fail"),
    })?;
    Ok(Replay {
        records,
        torn_bytes: end.torn_bytes,
    })
}

/// How a streamed read ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadEnd {
    /// Valid records read.
    pub records: u64,
    /// Bytes of valid records: where a torn tail, if any, begins.
    pub good_bytes: u64,
    /// Bytes after them (a partial or corrupt last record).
    pub torn_bytes: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error(transparent)]
    Corrupt(#[from] CorruptLog),
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// Reads records from `src` in chunks, handing each valid one to `each`. A bad record
/// is a torn tail only if no valid record follows it anywhere in the rest.
pub fn read_records(
    mut src: impl Read,
    mut each: impl FnMut(Record),
) -> Result<ReadEnd, ReadError> {
    /// 26,214 records a read: large reads, bounded memory.
    const CHUNK: usize = RECORD * 26_214;
    let mut buf = vec![0u8; CHUNK];
    let mut filled = 0usize;
    let mut records = 0u64;
    let mut offset = 0u64;
    loop {
        let n = read_full(&mut src, &mut buf[filled..])?;
        filled += n;
        let whole = filled - filled % RECORD;
        for (k, c) in buf[..whole].chunks_exact(RECORD).enumerate() {
            let c: &[u8; RECORD] = c.try_into().expect("exact chunks");
            match Record::decode(c) {
                Some(r) => each(r),
                None => {
                    let bad_at = offset + (k * RECORD) as u64;
                    let after = &buf[(k + 1) * RECORD..filled];
                    return torn_or_corrupt(src, after, bad_at, records);
                }
            }
            records += 1;
        }
        offset += whole as u64;
        buf.copy_within(whole..filled, 0);
        filled -= whole;
        if n == 0 {
            // End of file: what is left is a partial record.
            return Ok(ReadEnd {
                records,
                good_bytes: offset,
                torn_bytes: filled as u64,
            });
        }
    }
}

/// After a bad record at `bad_at`: corrupt if a valid record follows (in `after`, the
/// bytes already read past it, or in the rest of `src`), else a torn tail.
fn torn_or_corrupt(
    mut src: impl Read,
    after: &[u8],
    bad_at: u64,
    records: u64,
) -> Result<ReadEnd, ReadError> {
    let mut rest = after.to_vec();
    src.read_to_end(&mut rest)?;
    let later_valid = rest
        .chunks_exact(RECORD)
        .any(|c| Record::decode(c.try_into().expect("exact")).is_some());
    if later_valid {
        return Err(CorruptLog { offset: bad_at }.into());
    }
    Ok(ReadEnd {
        records,
        good_bytes: bad_at,
        torn_bytes: RECORD as u64 + rest.len() as u64,
    })
}

/// Reads until `buf` is full or the source ends.
fn read_full(src: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match src.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Counts of a replay, for the start-up log line.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Restored {
    pub done: u64,
    pub pending: u64,
    pub maybe_sent: u64,
    pub parked: u64,
}

/// Rebuilds an engine's state record by record: finished payments go straight in;
/// unfinished ones are held (only they need the later records) and handed to the
/// engine at the end, in the order they were accepted.
#[derive(Debug, Default)]
pub struct Restorer {
    /// Unfinished payments by id: order of acceptance, amount, timestamp per processor.
    pending: HashMap<Uuid, (usize, Cents, [Option<Micros>; 2])>,
    order: usize,
    out: Restored,
}

impl Restorer {
    pub fn apply(&mut self, engine: &mut Engine, r: Record) {
        match r {
            Record::Accepted { id, amount } => {
                if !engine.knows(&id) {
                    let order = &mut self.order;
                    self.pending.entry(id).or_insert_with(|| {
                        *order += 1;
                        (*order, amount, [None; 2])
                    });
                }
            }
            Record::Sent {
                id,
                processor,
                requested_at,
            } => {
                if let Some(e) = self.pending.get_mut(&id) {
                    e.2[processor.index()] = Some(requested_at);
                }
            }
            Record::Released { id, processor } => {
                if let Some(e) = self.pending.get_mut(&id) {
                    e.2[processor.index()] = None;
                }
            }
            Record::Recorded {
                id,
                processor,
                requested_at,
                amount,
            } => {
                // `amount` is what the processor holds; the client's is the accept's.
                let client = self.pending.remove(&id).map_or(amount, |(_, a, _)| a);
                if !engine.knows(&id) {
                    engine.restore_done(id, client, processor, requested_at, amount);
                    self.out.done += 1;
                }
            }
            Record::Rejected { id, processor } => {
                if let Some((_, amount, _)) = self.pending.remove(&id) {
                    engine.restore_parked(id, amount, processor);
                    self.out.parked += 1;
                }
            }
            Record::Done { id, amount } => {
                engine.restore_finished(id, amount);
                self.out.done += 1;
            }
            Record::Bucket {
                processor,
                ms,
                totals,
            } => engine.restore_bucket(processor, ms, totals),
        }
    }

    /// Hands the unfinished payments to the engine: where a timestamp was chosen, the
    /// request may have left, so the payment is resolved on that processor first.
    pub fn finish(self, engine: &mut Engine, now: Mono) -> Restored {
        let mut out = self.out;
        let mut rest: Vec<_> = self.pending.into_iter().collect();
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
}

/// Rebuilds an engine's state from records in memory (the simulation's crashes).
pub fn restore(engine: &mut Engine, records: &[Record], now: Mono) -> Restored {
    let mut r = Restorer::default();
    for rec in records {
        r.apply(engine, *rec);
    }
    r.finish(engine, now)
}
