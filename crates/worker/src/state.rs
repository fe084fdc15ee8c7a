//! What the worker's tasks share ([`WorkerState`]): the ledger (the engine and its
//! durable state), the dispatcher's wake-up, and the processor latency histograms.

use crate::ledger::Ledger;
use model::metrics::Histogram;
use model::Mono;
use std::sync::Mutex;
use tokio::sync::Notify;

/// State shared by the IPC handlers (on their own thread), the dispatcher and the
/// health pollers.
pub(crate) struct WorkerState<L> {
    pub(crate) ledger: L,
    /// Wakes the dispatcher: new work, a finished attempt, a health change.
    pub(crate) wake: Notify,
    /// Duration of payment requests, per processor.
    pub(crate) latency: Mutex<[Histogram; 2]>,
}

impl<L: Ledger> WorkerState<L> {
    pub(crate) fn new(ledger: L) -> WorkerState<L> {
        WorkerState {
            ledger,
            wake: Notify::new(),
            latency: Mutex::new(Default::default()),
        }
    }

    /// The monotonic clock every duration is measured on.
    pub(crate) fn mono(&self) -> Mono {
        self.ledger.clock().now()
    }
}
