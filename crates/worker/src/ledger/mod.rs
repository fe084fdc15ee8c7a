//! [`Ledger`]: the one boundary between the engine and its durable state. The IO shell
//! (`ipc_server`, `dispatch`, `health`, `observe`) talks only to it; two
//! implementations stand behind it:
//! - [`FileLedger`]: the embedded payment log of one worker (the default; nothing to
//!   install). The engine is the source of truth for duplicates and the summary.
//! - `PgLedger` (module `pg`): PostgreSQL shared by several workers on several hosts.
//!   The database is the source of truth for duplicates, ownership and the summary;
//!   each worker's engine holds only the payments it owns.
//!
//! Architecture invariant: whatever the implementation, an accept is durable before it
//! is acknowledged, a send's timestamp (and, when shared, this worker's ownership of
//! the payment) is durable before its request leaves, and every decision is the
//! engine's.

mod file;
mod pg;

pub use file::FileLedger;
pub use pg::{PgConfig, PgLedger};

use crate::engine::{Action, AttemptId, Engine, HealthReport, LookupResult, SendResult};
use ipc::SubmitStatus;
use model::metrics::Exposition;
use model::{Cents, Mono, Processor, Summary, SummaryQuery};
use std::future::Future;
use std::time::Instant;
use uuid::Uuid;

/// Why the ledger could not answer (the database is down, the disk is full).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct LedgerError(pub String);

/// The process's monotonic clock: µs since the worker started.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    origin: Instant,
}

impl Clock {
    pub fn start() -> Clock {
        Clock {
            origin: Instant::now(),
        }
    }

    pub fn now(&self) -> Mono {
        Mono(self.origin.elapsed().as_micros() as i64)
    }

    pub fn uptime_secs(&self) -> u64 {
        self.origin.elapsed().as_secs()
    }
}

/// See the module docs. Every method may be called from any task or thread.
pub trait Ledger: Send + Sync + 'static {
    /// Takes the submits of one read from an api connection and answers each, in
    /// order, once it is as durable as the configuration promises.
    fn submit(&self, batch: &[(Uuid, Cents)]) -> impl Future<Output = Vec<SubmitStatus>> + Send;

    /// Takes up to `max` actions into `out`, each one's timestamp durable first (and,
    /// when shared, the payment still this worker's). Returns when the engine next
    /// wants to be asked without any other event.
    fn take_actions(
        &self,
        max: usize,
        out: &mut Vec<Action>,
    ) -> impl Future<Output = Option<Mono>> + Send;

    /// Applies a processor's answer to a send; returns whether the processor's health
    /// verdict changed (for the log).
    fn on_send_result(
        &self,
        attempt: AttemptId,
        processor: Processor,
        result: SendResult,
    ) -> impl Future<Output = bool> + Send;

    /// Applies a processor's answer to a lookup.
    fn on_lookup_result(
        &self,
        attempt: AttemptId,
        result: LookupResult,
    ) -> impl Future<Output = ()> + Send;

    /// The summary over an inclusive window.
    fn summary(&self, q: SummaryQuery)
        -> impl Future<Output = Result<Summary, LedgerError>> + Send;

    /// Forgets every payment (every worker's, when shared).
    fn purge(&self) -> impl Future<Output = Result<(), LedgerError>> + Send;

    /// Whether this worker is the one that polls `p`'s health now (one poller per
    /// processor for the whole deployment).
    fn polls_health(&self, p: Processor) -> impl Future<Output = bool> + Send;

    /// A health poll's answer, from this worker's poller.
    fn on_health(&self, p: Processor, report: HealthReport) -> impl Future<Output = ()> + Send;

    /// Background upkeep, called often (every 200 ms): compaction of the file log;
    /// heartbeat, takeover of a dead worker's payments, others' health polls and
    /// purges when shared. Returns whether the engine may have new work.
    fn upkeep(&self) -> impl Future<Output = bool> + Send;

    /// Reads the engine under its lock (for `/health` and `/metrics`).
    fn with_engine<R>(&self, f: impl FnOnce(&Engine) -> R) -> R;

    /// What this ledger adds to `/health` (a JSON object) and `/metrics`.
    fn health_json(&self) -> serde_json::Value;
    /// Why payments are refused now, if they are (a full disk, the database down).
    fn problem(&self) -> Option<String>;
    fn metrics(&self, x: &mut Exposition);

    /// Payments in flight, for the graceful stop.
    fn in_flight(&self) -> usize {
        self.with_engine(Engine::in_flight)
    }

    /// The clock every duration is measured on.
    fn clock(&self) -> &Clock;
}
