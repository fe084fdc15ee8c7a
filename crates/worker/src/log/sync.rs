//! Durability on disk: [`SyncHandle`], which syncs at once, outside any lock, when
//! something must be on disk before the next step (sends leave, an accept is
//! acknowledged in `fsync` mode), and the thread that syncs every interval whatever
//! else does (a machine crash loses at most one interval of writes).
//!
//! Syncs are grouped by generation: every write bumps `written`; a sync records the
//! generation it covered. A caller whose writes a sync already covered (one that ran
//! while it waited for the file) returns at once: group commit.

use std::fs::File;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What the sync thread, the handles and the log share.
struct Shared {
    file: Mutex<Option<File>>,
    /// Bumped after every write.
    written: AtomicU64,
    /// The `written` generation the last successful sync covered.
    synced: AtomicU64,
    stop: AtomicBool,
}

impl Shared {
    /// Makes every write so far durable, unless a sync already did.
    fn sync(&self) -> io::Result<()> {
        let target = self.written.load(Ordering::Acquire);
        if self.synced.load(Ordering::Acquire) >= target {
            return Ok(());
        }
        let guard = self.file.lock().unwrap_or_else(|e| e.into_inner());
        if self.synced.load(Ordering::Acquire) >= target {
            return Ok(()); // synced by whoever held the file meanwhile
        }
        let covers = self.written.load(Ordering::Acquire);
        match guard.as_ref() {
            Some(f) => f.sync_data()?,
            None => return Err(io::Error::other("the payment log is not open")),
        }
        self.synced.fetch_max(covers, Ordering::AcqRel);
        Ok(())
    }
}

/// The sync thread and the shared state.
pub(super) struct Syncer {
    shared: Arc<Shared>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Syncer {
    /// Starts the thread; `interval` `None` starts none (flushing left to the kernel,
    /// but [`SyncHandle::sync`] still works).
    pub(super) fn start(file: io::Result<File>, interval: Option<Duration>) -> Syncer {
        let shared = Arc::new(Shared {
            file: Mutex::new(file.ok()),
            written: AtomicU64::new(0),
            synced: AtomicU64::new(0),
            stop: AtomicBool::new(false),
        });
        let s = shared.clone();
        let thread = interval.and_then(|interval| {
            std::thread::Builder::new()
                .name("payroute-fsync".into())
                .spawn(move || {
                    while !s.stop.load(Ordering::Acquire) {
                        std::thread::sleep(interval);
                        if let Err(e) = s.sync() {
                            tracing::error!("fdatasync of the payment log failed: {e}");
                        }
                    }
                })
                .ok()
        });
        Syncer { shared, thread }
    }

    /// Syncs this file from now on (after a compaction replaced the log with one
    /// already synced).
    pub(super) fn replace(&self, file: io::Result<File>) {
        let mut g = self.shared.file.lock().unwrap_or_else(|e| e.into_inner());
        *g = file.ok();
        let w = self.shared.written.load(Ordering::Acquire);
        self.shared.synced.fetch_max(w, Ordering::AcqRel);
    }

    /// Records a write since the last sync.
    pub(super) fn mark_dirty(&self) {
        self.shared.written.fetch_add(1, Ordering::AcqRel);
    }

    pub(super) fn handle(&self) -> SyncHandle {
        SyncHandle {
            shared: self.shared.clone(),
        }
    }
}

impl Drop for Syncer {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = self.shared.sync();
    }
}

/// Syncs the log now, from any thread, without the engine's lock.
#[derive(Clone)]
pub struct SyncHandle {
    shared: Arc<Shared>,
}

impl SyncHandle {
    /// `fdatasync` of everything written so far, unless a sync that ran meanwhile
    /// already covered it.
    pub fn sync(&self) -> io::Result<()> {
        self.shared.sync()
    }
}
