//! The processor's table of payments, in memory: a hash map by correlationId (the
//! official table's primary key, which gives the 422 on duplicates) and an index by
//! `requestedAt` for the admin summary.
//!
//! The index keeps one running total per distinct timestamp in a `BTreeMap`, so that a
//! window query visits each distinct timestamp once instead of each payment, and a
//! grand total answers the unbounded query (the bench's teardown, over ~100k payments)
//! without a scan. The bench asks for 15 s windows every 10 s; at 300 payments/s that
//! is ~4,500 entries, tens of microseconds.

use model::{Cents, Micros};
use std::collections::{BTreeMap, HashMap};
use uuid::Uuid;

/// One stored payment, as `GET /payments/{id}` returns it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stored {
    pub(crate) amount: Cents,
    pub(crate) requested_at: Micros,
}

/// Count and exact sum of a set of payments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Totals {
    pub(crate) count: u64,
    pub(crate) amount: Cents,
}

impl Totals {
    fn add(&mut self, amount: Cents) {
        self.count += 1;
        self.amount += amount;
    }
}

/// The outcome of an insert.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Insert {
    Stored,
    /// The correlationId is already stored; nothing changed.
    Duplicate,
}

#[derive(Debug, Default)]
pub(crate) struct Store {
    by_id: HashMap<Uuid, Stored>,
    by_time: BTreeMap<Micros, Totals>,
    all: Totals,
}

impl Store {
    pub(crate) fn insert(&mut self, id: Uuid, payment: Stored) -> Insert {
        match self.by_id.entry(id) {
            std::collections::hash_map::Entry::Occupied(_) => Insert::Duplicate,
            std::collections::hash_map::Entry::Vacant(slot) => {
                slot.insert(payment);
                self.by_time
                    .entry(payment.requested_at)
                    .or_default()
                    .add(payment.amount);
                self.all.add(payment.amount);
                Insert::Stored
            }
        }
    }

    pub(crate) fn get(&self, id: &Uuid) -> Option<Stored> {
        self.by_id.get(id).copied()
    }

    pub(crate) fn len(&self) -> usize {
        self.by_id.len()
    }

    /// Payments with `from <= requested_at <= to` (SQL `BETWEEN`), or all of them when
    /// `window` is `None`. `from` after `to` selects nothing.
    pub(crate) fn totals(&self, window: Option<(Micros, Micros)>) -> Totals {
        let Some((from, to)) = window else {
            return self.all;
        };
        // BTreeMap::range panics on an inverted range; SQL just selects nothing.
        if from > to {
            return Totals::default();
        }
        let mut out = Totals::default();
        for t in self.by_time.range(from..=to).map(|(_, t)| t) {
            out.count += t.count;
            out.amount += t.amount;
        }
        out
    }

    /// Forgets every payment (`TRUNCATE`). Memory is given back: a purge between bench
    /// runs should not leave the previous run's 100k-entry tables allocated.
    pub(crate) fn purge(&mut self) {
        *self = Store::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> Micros {
        Micros::parse(s).unwrap()
    }

    fn id(n: u128) -> Uuid {
        Uuid::from_u128(n)
    }

    #[test]
    fn refuses_duplicates_without_changing_anything() {
        let mut s = Store::default();
        let p = Stored {
            amount: Cents(1990),
            requested_at: at("2025-07-10T12:00:00Z"),
        };
        assert_eq!(s.insert(id(1), p), Insert::Stored);
        let other = Stored {
            amount: Cents(5),
            requested_at: at("2025-07-10T13:00:00Z"),
        };
        assert_eq!(s.insert(id(1), other), Insert::Duplicate);
        assert_eq!(s.get(&id(1)), Some(p));
        assert_eq!(
            s.totals(None),
            Totals {
                count: 1,
                amount: Cents(1990)
            }
        );
        assert_eq!(s.len(), 1);
    }

    #[test]
    fn windows_are_inclusive_at_millisecond_and_microsecond_edges() {
        let mut s = Store::default();
        let times = [
            "2025-07-10T12:34:55.999Z",
            "2025-07-10T12:34:56.000Z",
            "2025-07-10T12:34:56.000001Z",
            "2025-07-10T12:34:56.500Z",
            "2025-07-10T12:34:56.999Z",
            "2025-07-10T12:34:56.999001Z",
            "2025-07-10T12:34:57.000Z",
        ];
        for (n, t) in times.iter().enumerate() {
            let p = Stored {
                amount: Cents(100 * (n as i64 + 1)),
                requested_at: at(t),
            };
            assert_eq!(s.insert(id(n as u128), p), Insert::Stored);
        }
        let q = |from: &str, to: &str| s.totals(Some((at(from), at(to)))).count;
        assert_eq!(q("2025-07-10T12:34:56.000Z", "2025-07-10T12:34:56.999Z"), 4);
        assert_eq!(q("2025-07-10T12:34:56.001Z", "2025-07-10T12:34:56.999Z"), 2);
        assert_eq!(q("2025-07-10T12:34:56.000Z", "2025-07-10T12:34:56.000Z"), 1);
        assert_eq!(q("2025-07-10T12:34:56.000001Z", "2025-07-10T12:34:57Z"), 5);
        assert_eq!(q("2025-07-10T12:34:57Z", "2025-07-10T12:34:56Z"), 0);
        assert_eq!(q("2025-07-10T00:00:00Z", "2025-07-11T00:00:00Z"), 7);
        let w = s.totals(Some((
            at("2025-07-10T12:34:56Z"),
            at("2025-07-10T12:34:56.5Z"),
        )));
        assert_eq!(
            w,
            Totals {
                count: 3,
                amount: Cents(200 + 300 + 400)
            }
        );
        assert_eq!(
            s.totals(None),
            Totals {
                count: 7,
                amount: Cents(2800)
            }
        );
    }

    #[test]
    fn payments_at_the_same_instant_are_all_counted() {
        let mut s = Store::default();
        let t = at("2025-07-10T12:34:56.789Z");
        for n in 0..3 {
            s.insert(
                id(n),
                Stored {
                    amount: Cents(2005),
                    requested_at: t,
                },
            );
        }
        assert_eq!(
            s.totals(Some((t, t))),
            Totals {
                count: 3,
                amount: Cents(6015)
            }
        );
    }

    #[test]
    fn purge_forgets_everything() {
        let mut s = Store::default();
        let t = at("2025-07-10T12:34:56Z");
        s.insert(
            id(1),
            Stored {
                amount: Cents(1),
                requested_at: t,
            },
        );
        s.purge();
        assert_eq!(s.get(&id(1)), None);
        assert_eq!(s.totals(None), Totals::default());
        assert_eq!(s.totals(Some((t, t))), Totals::default());
        assert_eq!(
            s.insert(
                id(1),
                Stored {
                    amount: Cents(1),
                    requested_at: t
                }
            ),
            Insert::Stored
        );
    }
}
