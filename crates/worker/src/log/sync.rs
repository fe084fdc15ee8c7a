//! Durability on disk: [`SyncHandle`], which syncs at once, outside any lock, when
//! something must be on disk before the next step (sends leave, an accept is
//! acknowledged in `fsync` mode), and the thread that makes every write durable within
//! one interval (a machine crash loses at most one interval of writes).
//!
//! The thread wakes every half interval and syncs only what was written before its
//! previous wake-up and no sync has covered since: under load the dispatcher's own
//! syncs (one every few milliseconds) cover everything and the thread has nothing to
//! do; when only accepts and outcomes are written, it syncs once per interval.
//!
//! Syncs are grouped by generation: every write bumps `written`; a sync records the
//! generation it covered. A caller whose writes a sync already covered (one that ran
//! while it waited for the file) returns at once: group commit.

use std::fs::File;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The file syncs go to, and the directory to sync with the next one after a
/// compaction renamed a new log into it.
struct Target {
    file: Option<File>,
    dir: Option<File>,
}

/// What the sync thread, the handles and the log share.
struct Shared {
    target: Mutex<Target>,
    /// Bumped after every write.
    written: AtomicU64,
    /// The `written` generation the last successful sync covered.
    synced: AtomicU64,
    /// `fdatasync`s made (by the thread and the handles).
    syncs: AtomicU64,
    stop: AtomicBool,
}

impl Shared {
    /// Makes every write so far durable, unless a sync already did.
    fn sync(&self) -> io::Result<()> {
        let wanted = self.written.load(Ordering::Acquire);
        if self.synced.load(Ordering::Acquire) >= wanted {
            return Ok(());
        }
        let mut guard = self.target.lock().unwrap_or_else(|e| e.into_inner());
        if self.synced.load(Ordering::Acquire) >= wanted {
            return Ok(()); // synced by whoever held the file meanwhile
        }
        let covers = self.written.load(Ordering::Acquire);
        match guard.file.as_ref() {
            Some(f) => f.sync_data()?,
            None => return Err(io::Error::other("the payment log is not open")),
        }
        if let Some(dir) = guard.dir.as_ref() {
            // The rename that made this file the log, durable with its contents.
            dir.sync_all()?;
            guard.dir = None;
        }
        self.syncs.fetch_add(1, Ordering::Relaxed);
        self.synced.fetch_max(covers, Ordering::AcqRel);
        Ok(())
    }

    /// The sync thread's loop (see the module docs): a write made before wake-up `k`
    /// is on disk by wake-up `k + 1`, one interval after it at most.
    fn run_periodic(&self, interval: Duration) {
        let half = interval / 2;
        let mut seen = self.written.load(Ordering::Acquire);
        while !self.stop.load(Ordering::Acquire) {
            std::thread::sleep(half);
            let due = seen;
            seen = self.written.load(Ordering::Acquire);
            if self.synced.load(Ordering::Acquire) >= due {
                continue; // covered by a sync since, or nothing written
            }
            if let Err(e) = self.sync() {
                tracing::error!("fdatasync of the payment log failed: {e}");
            }
        }
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
            target: Mutex::new(Target {
                file: file.ok(),
                dir: None,
            }),
            written: AtomicU64::new(0),
            synced: AtomicU64::new(0),
            syncs: AtomicU64::new(0),
            stop: AtomicBool::new(false),
        });
        let s = shared.clone();
        let thread = interval.and_then(|interval| {
            std::thread::Builder::new()
                .name("payroute-fsync".into())
                .spawn(move || s.run_periodic(interval))
                .ok()
        });
        Syncer { shared, thread }
    }

    /// Swaps the file synced, with no sync running meanwhile: `swap` is handed the
    /// write generation synced so far (nothing can add to it until it returns), renames
    /// a new log in, and returns it and its directory; the next sync syncs both. What
    /// was synced before stays counted as synced: `swap` must have made it as durable in
    /// the new file. Returns the file replaced, for the caller to close where closing
    /// it costs nothing that waits (the last close of a big unlinked file frees its
    /// blocks: tens of milliseconds).
    pub(super) fn swap(
        &self,
        swap: impl FnOnce(u64) -> io::Result<(File, File)>,
    ) -> io::Result<Option<File>> {
        let mut g = self.shared.target.lock().unwrap_or_else(|e| e.into_inner());
        let (file, dir) = swap(self.shared.synced.load(Ordering::Acquire))?;
        g.dir = Some(dir);
        Ok(g.file.replace(file))
    }

    /// The write generation now: bumped by every write.
    pub(super) fn written(&self) -> u64 {
        self.shared.written.load(Ordering::Acquire)
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

    /// `fdatasync`s made so far, by the thread and every handle.
    pub fn syncs(&self) -> u64 {
        self.shared.syncs.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    fn syncer(interval: Duration) -> (Syncer, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let file = File::create(dir.path().join("log")).unwrap();
        (Syncer::start(Ok(file), Some(interval)), dir)
    }

    /// Polls for up to 5 s (a loaded machine schedules the thread late).
    fn eventually(what: &str, f: impl Fn() -> bool) {
        let until = Instant::now() + Duration::from_secs(5);
        while !f() {
            assert!(Instant::now() < until, "{what}: not within 5 s");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn the_thread_syncs_what_nobody_else_did() {
        let (s, _dir) = syncer(Duration::from_millis(20));
        let h = s.handle();
        s.mark_dirty();
        let gen = s.shared.written.load(Ordering::Acquire);
        eventually("the write synced by the thread", || {
            s.shared.synced.load(Ordering::Acquire) >= gen
        });
        assert_eq!(h.syncs(), 1);
    }

    #[test]
    fn the_thread_leaves_alone_what_the_dispatchers_syncs_cover() {
        // As under load: the dispatcher syncs every 2 ms, and an outcome is written
        // after each of its syncs, so something is always written and not yet synced.
        let (s, _dir) = syncer(Duration::from_millis(40));
        let h = s.handle();
        let mut by_handle = 0;
        let start = Instant::now();
        while start.elapsed() < Duration::from_millis(400) {
            s.mark_dirty();
            h.sync().unwrap();
            by_handle += 1;
            s.mark_dirty();
            std::thread::sleep(Duration::from_millis(2));
        }
        let by_thread = h.syncs() - by_handle;
        // Syncing whatever is dirty every interval would make ten here; only a stall of
        // the loop above longer than half an interval leaves the thread something.
        assert!(by_thread <= 3, "the thread synced {by_thread} times");
    }

    #[test]
    fn continuous_writes_are_synced_once_per_interval_at_most() {
        let (s, _dir) = syncer(Duration::from_millis(50));
        let h = s.handle();
        let start = Instant::now();
        while start.elapsed() < Duration::from_millis(500) {
            s.mark_dirty();
            std::thread::sleep(Duration::from_millis(1));
        }
        let n = h.syncs();
        // 500 ms of writes, an interval of 50 ms: 10 syncs, one per interval (a late
        // wake-up makes fewer, never more; the first interval has one).
        assert!((1..=11).contains(&n), "{n} syncs in 500 ms");
    }

    #[test]
    fn after_a_swap_the_next_sync_syncs_the_directory_too_and_only_that_one() {
        let dir = tempfile::tempdir().unwrap();
        let file = File::create(dir.path().join("log")).unwrap();
        let s = Syncer::start(Ok(file), None);
        let h = s.handle();
        let pending = || s.shared.target.lock().unwrap().dir.is_some();
        let replacement = File::create(dir.path().join("new")).unwrap();
        s.swap(|_| Ok((replacement, File::open(dir.path())?)))
            .unwrap();
        assert!(
            pending(),
            "the rename is not durable until the directory is synced"
        );
        h.sync().unwrap();
        assert!(
            pending(),
            "nothing written since: no sync, the old file stands"
        );
        s.mark_dirty();
        h.sync().unwrap();
        assert!(!pending());
        assert_eq!(h.syncs(), 1);
    }
}
