//! The connections' buffers: small ones lent per request from a per-thread pool, so an
//! idle connection holds none and a busy one allocates none; and the [`Budget`] that
//! bounds how much all connections together may hold beyond the small size, so a flood
//! of large requests is refused (503) instead of growing the process to its limit.

use std::cell::RefCell;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Bytes of a buffer to begin with: a request of the challenge is about 250 bytes with
/// its head (k6 or nginx), an answer under 200. Larger requests grow it, within the
/// budget, and it is given back after.
pub(crate) const SMALL: usize = 512;

/// Small buffers kept for reuse per thread: more than are ever in use at once at the
/// challenge's load (a request holds one for the time the worker takes to answer).
const POOL_MAX: usize = 64;

thread_local! {
    static POOL: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
}

/// An empty buffer of [`SMALL`] bytes.
pub(crate) fn take() -> Vec<u8> {
    POOL.try_with(|p| p.borrow_mut().pop())
        .ok()
        .flatten()
        .unwrap_or_else(|| Vec::with_capacity(SMALL))
}

/// Gives a buffer back: kept for reuse if it is a small one, else freed.
pub(crate) fn give(mut buf: Vec<u8>) {
    if buf.capacity() != SMALL {
        return;
    }
    buf.clear();
    let _ = POOL.try_with(|p| {
        let mut p = p.borrow_mut();
        if p.len() < POOL_MAX {
            p.push(buf);
        }
    });
}

/// Bytes of buffer beyond [`SMALL`] that connections may hold together.
#[derive(Debug)]
pub(crate) struct Budget {
    total: usize,
    left: AtomicUsize,
}

impl Budget {
    pub(crate) fn new(total: usize) -> Budget {
        Budget {
            total,
            left: AtomicUsize::new(total),
        }
    }

    /// Takes `n` bytes if that many are left.
    pub(crate) fn take(&self, n: usize) -> bool {
        self.left
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |left| {
                left.checked_sub(n)
            })
            .is_ok()
    }

    pub(crate) fn give(&self, n: usize) {
        self.left.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn total(&self) -> usize {
        self.total
    }

    /// Bytes held now.
    pub(crate) fn in_use(&self) -> usize {
        self.total - self.left.load(Ordering::Relaxed).min(self.total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_buffers_are_reused_and_large_ones_freed() {
        let a = take();
        assert_eq!((a.len(), a.capacity()), (0, SMALL));
        let ptr = a.as_ptr();
        give(a);
        let again = take();
        assert_eq!(again.as_ptr(), ptr);
        let mut big = take();
        big.reserve_exact(4 * SMALL);
        give(big);
        assert_eq!(take().capacity(), SMALL);
    }

    #[test]
    fn the_budget_never_goes_below_zero() {
        let b = Budget::new(1000);
        assert!(b.take(600));
        assert!(!b.take(600));
        assert_eq!(b.in_use(), 600);
        b.give(600);
        assert!(b.take(1000));
        assert!(!b.take(1));
    }
}
