//! What the worker's tasks share: the engine and its log under one lock (a `Core`),
//! the dispatcher's wake-up, and the processor latency histograms ([`WorkerState`]).

use crate::config::AckAfter;
use crate::core::Core;
use crate::log::{PaymentLog, SyncHandle};
use model::Mono;

use model::metrics::Histogram;
use std::sync::{Mutex, MutexGuard};
use std::time::Instant;
use tokio::sync::Notify;

/// The engine and the worker's journal (the payment log, or none in memory-only
/// tests).
pub(crate) type WorkerCore = Core<Option<PaymentLog>>;

/// State shared by the IPC handlers (on their own thread), the dispatcher and the
/// health pollers. A std `Mutex`: it is never held across an `.await` and every
/// critical section is a few microseconds. Two threads take it (the dispatcher's and
/// the IPC thread), so it is contended now and then, never for long.
pub(crate) struct WorkerState {
    core: Mutex<WorkerCore>,
    /// Syncs the payment log without the lock (`None`: no log).
    pub(crate) sync: Option<SyncHandle>,
    /// When an accept is acknowledged.
    pub(crate) ack: AckAfter,
    /// Wakes the dispatcher: new work, a finished attempt, a health change.
    pub(crate) wake: Notify,
    /// Duration of payment requests, per processor.
    pub(crate) latency: Mutex<[Histogram; 2]>,
    /// The origin of this process's monotonic clock ([`WorkerState::mono`]).
    pub(crate) started: Instant,
}

impl WorkerState {
    pub(crate) fn new(core: WorkerCore, ack: AckAfter) -> WorkerState {
        WorkerState {
            sync: core.journal.as_ref().map(PaymentLog::sync_handle),
            ack,
            core: Mutex::new(core),
            wake: Notify::new(),
            latency: Mutex::new(Default::default()),
            started: Instant::now(),
        }
    }

    /// The monotonic clock every duration is measured on: µs since the worker started.
    pub(crate) fn mono(&self) -> Mono {
        Mono(self.started.elapsed().as_micros() as i64)
    }

    pub(crate) fn core(&self) -> MutexGuard<'_, WorkerCore> {
        // A panic while holding the lock aborts the process (panic = "abort" in
        // release builds); in tests, recover the guard rather than cascade.
        self.core.lock().unwrap_or_else(|e| e.into_inner())
    }
}
