//! The payment log: an append-only file of fixed-size, checksummed records that makes
//! every accepted payment and every outcome survive a crash of the worker.
//!
//! - A payment is written (`write`, into the page cache) before the api is told it
//!   was accepted; every timestamp chosen for a processor is written and synced
//!   (`fdatasync`) before its request leaves; every outcome is written. A process crash
//!   loses nothing; a machine crash loses at most the accepts of the last sync interval
//!   (none in `--ack-after fsync` mode), never the record that a request left.
//! - Every write is synced within `sync_interval`: by the dispatcher's syncs, or by a
//!   thread that syncs what they left (see `sync`).
//! - On start the log is replayed, streamed: recorded outcomes rebuild the summary,
//!   unfinished payments go back to the queue, and payments that may have been sent
//!   are resolved on that processor first (see `Engine::restore_pending`).
//! - A torn tail (a partial or corrupt last record, as left by a crash mid-write) is
//!   cut off with a warning. Corruption followed by valid records is not a torn tail:
//!   the worker refuses to start rather than replay a damaged history.
//! - Compaction rewrites the log as a snapshot (summary buckets, ids still remembered,
//!   pending and parked payments) once it holds twice the records of the last one.
//!
//! Architecture invariant: a record is never rewritten in place; the file is only
//! appended to (whole records), cut back to its last whole record after a failed write,
//! truncated to empty (purge), cut at a torn tail, or replaced whole by an atomic
//! rename (compaction). One worker per data dir (`LOCK`).

mod file;
mod record;
mod replay;
mod sync;
#[cfg(test)]
mod tests;

pub use file::{snapshot, Compaction, Finished, LogConfig, Opened, PaymentLog};
pub use record::{Record, RECORD};
pub use replay::{parse, read_records, restore, CorruptLog, ReadEnd, Replay, Restored, Restorer};
pub use sync::SyncHandle;
