//! What the worker's tasks share: the engine and its log under one lock ([`Core`]),
//! the dispatcher's wake-up, and the processor latency histograms ([`WorkerState`]).

use crate::engine::Engine;
use crate::log::{PaymentLog, Record};
use model::metrics::Histogram;
use std::sync::{Mutex, MutexGuard};
use std::time::Instant;
use tokio::sync::Notify;

/// The engine and its log, changed together under one lock so that the log's order is
/// the engine's order.
pub(crate) struct Core {
    pub(crate) engine: Engine,
    pub(crate) log: Option<PaymentLog>,
}

impl Core {
    /// Appends and writes one record. A failure is returned; the caller decides what
    /// it means.
    pub(crate) fn write(&mut self, r: &Record) -> std::io::Result<()> {
        match self.log.as_mut() {
            Some(log) => {
                log.append(r);
                log.flush()
            }
            None => Ok(()),
        }
    }
}

/// State shared by the IPC handlers (on their own thread), the dispatcher and the
/// health pollers. A std `Mutex`: it is never held across an `.await` and every
/// critical section is a few microseconds. Two threads take it (the dispatcher's and
/// the IPC thread), so it is contended now and then, never for long.
pub(crate) struct WorkerState {
    core: Mutex<Core>,
    /// Wakes the dispatcher: new work, a finished attempt, a health change.
    pub(crate) wake: Notify,
    /// Duration of payment requests, per processor.
    pub(crate) latency: Mutex<[Histogram; 2]>,
    pub(crate) started: Instant,
}

impl WorkerState {
    pub(crate) fn new(core: Core) -> WorkerState {
        WorkerState {
            core: Mutex::new(core),
            wake: Notify::new(),
            latency: Mutex::new(Default::default()),
            started: Instant::now(),
        }
    }

    pub(crate) fn core(&self) -> MutexGuard<'_, Core> {
        // A panic while holding the lock aborts the process (panic = "abort" in
        // release builds); in tests, recover the guard rather than cascade.
        self.core.lock().unwrap_or_else(|e| e.into_inner())
    }
}
