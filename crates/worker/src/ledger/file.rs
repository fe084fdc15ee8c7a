//! [`FileLedger`]: one worker's engine and its payment log (or none, in memory-only
//! tests), changed together under one lock so that the log's order is the engine's
//! order. Only the disk syncs and the compaction's big write happen outside the lock.

use super::{Clock, Ledger, LedgerError};
use crate::config::AckAfter;
use crate::core::{Core, JournalHealth};
use crate::engine::{Action, AttemptId, Engine, HealthReport, LookupResult, SendResult, Snapshot};
use crate::log::{Compaction, PaymentLog, SyncHandle};
use ipc::SubmitStatus;
use model::metrics::Exposition;
use model::{Cents, Micros, Mono, Processor, Summary, SummaryQuery};
use std::sync::{Arc, Mutex, MutexGuard};
use uuid::Uuid;

/// See the module docs.
pub struct FileLedger {
    /// A std `Mutex`: never held across an `.await`, every critical section a few
    /// microseconds. Two threads take it (the dispatcher's and the IPC thread's), so
    /// it is contended now and then, never for long.
    core: Arc<Mutex<Core<Option<PaymentLog>>>>,
    /// Syncs the log without the lock (`None`: no log).
    sync: Option<SyncHandle>,
    ack: AckAfter,
    clock: Clock,
}

impl FileLedger {
    pub fn new(core: Core<Option<PaymentLog>>, ack: AckAfter, clock: Clock) -> FileLedger {
        FileLedger {
            sync: core.journal.as_ref().map(PaymentLog::sync_handle),
            core: Arc::new(Mutex::new(core)),
            ack,
            clock,
        }
    }

    fn core(&self) -> MutexGuard<'_, Core<Option<PaymentLog>>> {
        // A panic while holding the lock aborts the process (panic = "abort" in
        // release builds); in tests, recover the guard rather than cascade.
        lock(&self.core)
    }

    /// Syncs the payment log on a blocking thread, outside the engine's lock.
    async fn sync(&self) -> std::io::Result<()> {
        let Some(handle) = self.sync.clone() else {
            return Ok(());
        };
        tokio::task::spawn_blocking(move || handle.sync())
            .await
            .unwrap_or_else(|e| Err(std::io::Error::other(e)))
    }

    /// Steps 2 to 4 of a compaction (step 1 was taken under the lock): the snapshot
    /// is written and synced on a blocking thread, then the tail written meanwhile is
    /// copied and synced there too (the lock taken only to see where it ends); last,
    /// under the lock, the few records written since are copied and the new log swapped
    /// in.
    async fn compact(core: Arc<Mutex<Core<Option<PaymentLog>>>>, mut job: Compaction) {
        let shared = core.clone();
        let written = tokio::task::spawn_blocking(move || {
            let r = job.write_snapshot().and_then(|()| {
                if let Some(log) = lock(&shared).journal.as_ref() {
                    log.mark_tail(&mut job);
                }
                job.copy_tail()
            });
            (job, r)
        })
        .await;
        let retired = {
            let mut c = lock(&core);
            let Some(log) = c.journal.as_mut() else {
                return;
            };
            match written {
                Ok((job, Ok(()))) => {
                    if let Err(e) = log.finish_compaction(job) {
                        tracing::error!("payment log compaction failed: {e}");
                    }
                }
                Ok((job, Err(e))) => {
                    tracing::error!("payment log compaction failed writing its snapshot: {e}");
                    log.abort_compaction(job);
                }
                Err(e) => tracing::error!("payment log compaction task failed: {e}"),
            }
            log.take_retired()
        };
        // Closing the old log frees its blocks: not under the lock, not on this thread.
        let _ = tokio::task::spawn_blocking(move || drop(retired)).await;
    }
}

/// The core's lock, recovered if a panic poisoned it (see [`FileLedger::core`]).
fn lock(
    core: &Mutex<Core<Option<PaymentLog>>>,
) -> std::sync::MutexGuard<'_, Core<Option<PaymentLog>>> {
    core.lock().unwrap_or_else(|e| e.into_inner())
}

impl Ledger for FileLedger {
    async fn submit(&self, batch: &[(Uuid, Cents)]) -> Vec<SubmitStatus> {
        let mut statuses: Vec<SubmitStatus> = {
            let mut c = self.core();
            let now = self.clock.now();
            batch
                .iter()
                .map(|&(id, amount)| c.submit(id, amount, now))
                .collect()
        };
        let accepted = statuses.contains(&SubmitStatus::Accepted);
        if accepted && self.ack == AckAfter::Fsync {
            if let Err(e) = self.sync().await {
                // Written but not known to be on disk: the client is told to retry (a
                // retry with the same correlationId gets the definitive answer).
                tracing::error!("syncing accepted payments failed: {e}");
                for s in &mut statuses {
                    if *s == SubmitStatus::Accepted {
                        *s = SubmitStatus::Unavailable;
                    }
                }
            }
        }
        statuses
    }

    async fn take_actions(&self, max: usize, out: &mut Vec<Action>) -> Option<Mono> {
        let (must_sync, wake_at) = {
            let mut c = self.core();
            let now = self.clock.now();
            let must_sync = c.take_actions(now, Micros::now(), max, out);
            (must_sync, c.engine.next_wakeup(now))
        };
        // Every timestamp is on disk before its request leaves: after any crash, the
        // payment is resolved on that processor before anything else.
        if must_sync {
            if let Err(e) = self.sync().await {
                tracing::error!("syncing the payment log failed; holding sends back: {e}");
                self.core().undo(out, self.clock.now());
                out.clear();
            }
        }
        wake_at
    }

    async fn on_send_result(
        &self,
        attempt: AttemptId,
        processor: Processor,
        result: SendResult,
    ) -> bool {
        let mut c = self.core();
        let was_failing = c.engine.view(processor).failing();
        c.on_send_result(attempt, result, self.clock.now());
        c.engine.view(processor).failing() != was_failing
    }

    async fn on_lookup_result(&self, attempt: AttemptId, result: LookupResult) {
        self.core()
            .on_lookup_result(attempt, result, self.clock.now());
    }

    async fn summary(&self, q: SummaryQuery) -> Result<Summary, LedgerError> {
        Ok(self.core().engine.summary(&q))
    }

    async fn purge(&self) -> Result<(), LedgerError> {
        self.core()
            .purge(self.clock.now())
            .map_err(|e| LedgerError(format!("emptying the payment log failed: {e}")))
    }

    async fn polls_health(&self, _: Processor) -> bool {
        true
    }

    async fn on_health(&self, p: Processor, report: HealthReport) {
        self.core().engine.on_health(p, report, self.clock.now());
    }

    async fn upkeep(&self) -> bool {
        let size = {
            let mut guard = self.core();
            let c = &mut *guard;
            // Outcomes of an idle dispatcher reach the disk within one upkeep.
            let _ = c.flush();
            match c.journal.as_ref() {
                Some(log) if log.wants_compaction() => c.engine.snapshot_size(),
                _ => return false,
            }
        };
        // The snapshot's memory is found and touched before the lock is taken again.
        let Ok(room) = tokio::task::spawn_blocking(move || Snapshot::with_room(size)).await else {
            return false;
        };
        let job = {
            let mut guard = self.core();
            let c = &mut *guard;
            match c.journal.as_mut() {
                Some(log) if log.wants_compaction() => log.begin_compaction(&c.engine, room),
                _ => return false,
            }
        };
        match job {
            Ok(job) => {
                tokio::spawn(Self::compact(self.core.clone(), job));
            }
            Err(e) => tracing::error!("payment log compaction could not begin: {e}"),
        }
        false
    }

    fn with_engine<R>(&self, f: impl FnOnce(&Engine) -> R) -> R {
        f(&self.core().engine)
    }

    fn health_json(&self) -> serde_json::Value {
        let c = self.core();
        serde_json::json!({
            "kind": "file",
            "log": c.journal.as_ref().map(|l| l.path().display().to_string()),
            "records": c.journal.as_ref().map(PaymentLog::records),
            "writable": c.journal_health() == JournalHealth::Ok,
        })
    }

    fn problem(&self) -> Option<String> {
        (self.core().journal_health() != JournalHealth::Ok)
            .then(|| "the payment log cannot be written; payments are refused".to_string())
    }

    fn metrics(&self, x: &mut Exposition) {
        let c = self.core();
        x.family(
            "payroute_log_write_errors_total",
            "counter",
            "Failed writes of the payment log (each refused or held back what it carried).",
        )
        .sample("payroute_log_write_errors_total", "", c.write_errors as f64);
        if let Some(log) = &c.journal {
            x.family(
                "payroute_log_records",
                "gauge",
                "Records in the payment log.",
            )
            .sample("payroute_log_records", "", log.records() as f64);
        }
    }

    fn clock(&self) -> &Clock {
        &self.clock
    }
}
