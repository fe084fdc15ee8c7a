//! [`Remembered`]: the correlationIds the engine knows and the amount each client sent,
//! for duplicates (200) and conflicts (409). Bounded in time and in count: ids live in
//! two generations; when the current one is older than the retention or holds half the
//! cap, the previous one's finished ids are forgotten and a new generation begins. So a
//! finished id is remembered at least the retention (at most twice it), and never more
//! than the cap is held. Pending payments are never forgotten.

use model::{Cents, Mono};
use std::collections::HashMap;
use uuid::Uuid;

/// What is remembered of an id, in 8 bytes: the client's amount, and whether the
/// payment is still pending (the top bit).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Known(u64);

const PENDING: u64 = 1 << 63;

impl Known {
    pub(super) fn pending(amount: Cents) -> Known {
        Known(amount.0 as u64 | PENDING)
    }

    pub(super) fn finished(amount: Cents) -> Known {
        Known(amount.0 as u64 & !PENDING)
    }

    pub(super) fn amount(self) -> Cents {
        Cents((self.0 & !PENDING) as i64)
    }

    pub(super) fn is_pending(self) -> bool {
        self.0 & PENDING != 0
    }
}

/// See the module docs.
#[derive(Debug, Default)]
pub(super) struct Remembered {
    current: HashMap<Uuid, Known>,
    previous: HashMap<Uuid, Known>,
    /// When the current generation began.
    since: Mono,
}

impl Remembered {
    pub(super) fn get(&self, id: &Uuid) -> Option<Known> {
        self.current
            .get(id)
            .or_else(|| self.previous.get(id))
            .copied()
    }

    pub(super) fn contains(&self, id: &Uuid) -> bool {
        self.current.contains_key(id) || self.previous.contains_key(id)
    }

    /// Remembers `id` as `known`, in the current generation.
    pub(super) fn insert(&mut self, id: Uuid, known: Known) {
        self.previous.remove(&id);
        self.current.insert(id, known);
    }

    pub(super) fn remove(&mut self, id: &Uuid) {
        self.current.remove(id);
        self.previous.remove(id);
    }

    pub(super) fn len(&self) -> usize {
        self.current.len() + self.previous.len()
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = (&Uuid, Known)> + '_ {
        self.current
            .iter()
            .chain(self.previous.iter())
            .map(|(id, k)| (id, *k))
    }

    pub(super) fn clear(&mut self, now: Mono) {
        self.current.clear();
        self.previous.clear();
        self.since = now;
    }

    /// Starts a new generation when the current one is `retention` old or holds half
    /// of `cap`, forgetting the finished ids of the previous one. Returns how many
    /// were forgotten.
    pub(super) fn rotate_if_due(&mut self, now: Mono, retention: Option<i64>, cap: usize) -> u64 {
        let old = retention.is_some_and(|r| now.since(self.since) >= r);
        let full = self.current.len() >= (cap / 2).max(1);
        if !(old || full) {
            return 0;
        }
        let mut forgotten = 0;
        for (id, k) in self.previous.drain() {
            if k.is_pending() {
                self.current.insert(id, k);
            } else {
                forgotten += 1;
            }
        }
        self.previous = std::mem::take(&mut self.current);
        self.since = now;
        forgotten
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_packs_amount_and_state() {
        let k = Known::pending(Cents(100_000_000_000));
        assert!(k.is_pending());
        assert_eq!(k.amount(), Cents(100_000_000_000));
        let f = Known::finished(Cents(1990));
        assert!(!f.is_pending());
        assert_eq!(f.amount(), Cents(1990));
    }

    #[test]
    fn generations_bound_time_and_count_but_keep_pending() {
        let id = |n: u128| Uuid::from_u128(n);
        let mut r = Remembered::default();
        r.insert(id(1), Known::finished(Cents(1)));
        r.insert(id(2), Known::pending(Cents(2)));
        // Not due: nothing forgotten.
        assert_eq!(r.rotate_if_due(Mono(10), Some(100), 1_000), 0);
        // Retention reached: a new generation; nothing old enough to forget yet.
        assert_eq!(r.rotate_if_due(Mono(100), Some(100), 1_000), 0);
        assert!(r.contains(&id(1)));
        // One more: the first generation's finished id goes, the pending one stays.
        assert_eq!(r.rotate_if_due(Mono(200), Some(100), 1_000), 1);
        assert!(!r.contains(&id(1)) && r.contains(&id(2)));
        // The cap: at half of it, a rotation without waiting for the retention.
        for n in 10..15 {
            r.insert(id(n), Known::finished(Cents(1)));
        }
        assert_eq!(r.rotate_if_due(Mono(201), None, 10), 0);
        assert_eq!(r.rotate_if_due(Mono(202), None, 10), 0);
        assert_eq!(r.len(), 6);
    }
}
