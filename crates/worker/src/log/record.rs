//! The log's records: fixed 40-byte frames, each with a CRC32, one per event of a
//! payment's life (and the snapshot kinds written by compaction).

use crate::engine::Effect;
use model::{Cents, Micros, Processor, Totals};
use uuid::Uuid;

/// Bytes per record: crc32 (4), kind (1), processor (1), padding (2), id (16),
/// amount (8), timestamp (8).
pub const RECORD: usize = 40;

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
    /// Snapshot: this id is done (its amount is in a bucket); `amount` is what the
    /// client sent, for duplicate and conflict checks.
    Done { id: Uuid, amount: Cents },
    /// `processor` refused it for good (a 4XX): it is parked, never retried.
    Rejected { id: Uuid, processor: Processor },
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
            Record::Done { id, amount } => (5, 0, *id.as_bytes(), amount.0, 0),
            Record::Rejected { id, processor } => {
                (7, processor.index() as u8, *id.as_bytes(), 0, 0)
            }
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
            5 => Record::Done { id, amount },
            7 => Record::Rejected { id, processor: p },
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
            Effect::Rejected { id, processor } => Some(Record::Rejected { id, processor }),
        }
    }
}
