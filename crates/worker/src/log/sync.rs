//! Durability on disk: the grouped `fdatasync` thread (a machine crash loses at most
//! one interval of writes) and [`SyncHandle`], which syncs at once, outside any lock,
//! when something must be on disk before the next step (sends leave, an accept is
//! acknowledged in `fsync` mode).

use std::fs::File;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The grouped `fdatasync` thread: syncs the log when something was written since the
/// last sync, at most once per interval.
pub(super) struct Syncer {
    dirty: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    file: Arc<Mutex<Option<File>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Syncer {
    /// Starts the thread; `interval` `None` starts none (flushing left to the kernel,
    /// but [`SyncHandle::sync`] still works).
    pub(super) fn start(file: io::Result<File>, interval: Option<Duration>) -> Syncer {
        let dirty = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let file = Arc::new(Mutex::new(file.ok()));
        let (d, s, f) = (dirty.clone(), stop.clone(), file.clone());
        let thread = interval.and_then(|interval| {
            std::thread::Builder::new()
                .name("payroute-fsync".into())
                .spawn(move || {
                    while !s.load(Ordering::Acquire) {
                        std::thread::sleep(interval);
                        if d.swap(false, Ordering::AcqRel) {
                            if let Ok(guard) = f.lock() {
                                if let Some(file) = guard.as_ref() {
                                    if let Err(e) = file.sync_data() {
                                        tracing::error!("fdatasync of the payment log failed: {e}");
                                    }
                                }
                            }
                        }
                    }
                })
                .ok()
        });
        Syncer {
            dirty,
            stop,
            file,
            thread,
        }
    }

    /// Syncs this file from now on (after a compaction replaced the log).
    pub(super) fn replace(&self, file: io::Result<File>) {
        if let Ok(mut g) = self.file.lock() {
            *g = file.ok();
        }
    }
}

impl Drop for Syncer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        if let Ok(g) = self.file.lock() {
            if let Some(f) = g.as_ref() {
                let _ = f.sync_data();
            }
        }
    }
}

impl Syncer {
    /// Marks the file as written since the last sync.
    pub(super) fn mark_dirty(&self) {
        self.dirty.store(true, Ordering::Release);
    }

    pub(super) fn handle(&self) -> SyncHandle {
        SyncHandle {
            file: self.file.clone(),
            dirty: self.dirty.clone(),
        }
    }
}

/// Syncs the log now, from any thread, without the engine's lock.
#[derive(Clone)]
pub struct SyncHandle {
    file: Arc<Mutex<Option<File>>>,
    dirty: Arc<AtomicBool>,
}

impl SyncHandle {
    /// `fdatasync` of everything written so far. Concurrent callers are grouped by the
    /// file's mutex: the second finds less (often nothing) left to flush.
    pub fn sync(&self) -> io::Result<()> {
        let guard = self.file.lock().unwrap_or_else(|e| e.into_inner());
        match guard.as_ref() {
            Some(f) => {
                self.dirty.store(false, Ordering::Release);
                f.sync_data()
            }
            None => Err(io::Error::other("the payment log is not open")),
        }
    }
}
