//! The engine's durable state, both ways: rebuilt from a log replay or a takeover
//! (`restore_*`), and read for a snapshot (compaction).

use super::*;

/// The engine's durable state, copied out for log compaction: read under the engine's
/// lock into buffers allocated (and their pages touched) before it was taken, so the
/// lock is held only for a pass over the tables; turned into records afterwards.
#[derive(Debug, Default)]
pub struct Snapshot {
    buckets: Vec<(Processor, i64, model::Totals)>,
    done: Vec<(Uuid, Cents)>,
    parked: Vec<(Uuid, Parked)>,
    /// (acceptance order, id, amount, timestamp per processor) of every pending payment.
    pending: Vec<(u64, Uuid, Cents, [Option<Micros>; 2])>,
}

/// How big a [`Snapshot`] of the engine is now (read under its lock, cheaply).
#[derive(Debug, Clone, Copy)]
pub struct SnapshotSize {
    buckets: usize,
    known: usize,
    parked: usize,
    pending: usize,
}

/// An empty vector with room for `n` more than `n / 8` and its pages touched, so that
/// filling it under a lock takes no page faults.
fn touched<T: Clone>(n: usize, filler: T) -> Vec<T> {
    let mut v = vec![filler; n + n / 8 + 64];
    v.clear();
    v
}

impl Snapshot {
    /// Buffers for a snapshot of (about) `size`, allocated and touched: call it
    /// without the engine's lock.
    pub fn with_room(size: SnapshotSize) -> Snapshot {
        let (id, cents) = (Uuid::from_u128(1), Cents(1));
        let parked = Parked {
            amount: cents,
            processor: Processor::Default,
        };
        Snapshot {
            buckets: touched(
                size.buckets,
                (Processor::Default, 1, model::Totals::default()),
            ),
            done: touched(size.known, (id, cents)),
            parked: touched(size.parked, (id, parked)),
            pending: touched(size.pending, (1, id, cents, [None, None])),
        }
    }

    pub fn buckets(&self) -> impl Iterator<Item = (Processor, i64, model::Totals)> + '_ {
        self.buckets.iter().copied()
    }

    /// Every finished payment still remembered, recorded or parked.
    pub fn done_ids(&self) -> impl Iterator<Item = (&Uuid, Cents)> + '_ {
        self.done.iter().map(|(id, amount)| (id, *amount))
    }

    /// (id, amount, timestamp per processor) of every pending payment.
    /// In the order they were accepted, so a restart keeps the queue's order.
    pub fn pending(&mut self) -> impl Iterator<Item = (Uuid, Cents, [Option<Micros>; 2])> + '_ {
        self.pending.sort_unstable_by_key(|p| p.0);
        self.pending
            .iter()
            .map(|&(_, id, amount, at)| (id, amount, at))
    }

    /// Every parked payment.
    pub fn parked(&self) -> impl Iterator<Item = (Uuid, Parked)> + '_ {
        self.parked.iter().copied()
    }
}

impl Engine {
    /// Restores a payment from the log at start-up (see `log.rs`): `requested_at` says
    /// where it may have been sent before the restart; there its fate is unknown, and
    /// it is resolved on that processor before anything else happens to it. False
    /// (and nothing done) when the id is known here already.
    pub fn restore_pending(
        &mut self,
        id: Uuid,
        amount: Cents,
        requested_at: [Option<Micros>; 2],
        now: Mono,
    ) -> bool {
        if self.known.contains(&id) {
            return false;
        }
        self.known.insert(id, Known::pending(amount));
        let mut at: [AtProcessor; 2] = Default::default();
        for p in Processor::ALL {
            at[p.index()].requested_at = requested_at[p.index()];
            at[p.index()].unknown_since = requested_at[p.index()].map(|_| now);
        }
        let entry = Entry {
            amount,
            accepted: now,
            seq: self.next_seq,
            at,
            tries: 0,
        };
        self.next_seq += 1;
        match entry.bound_to() {
            Some(p) => self.pinned[p.index()].push_back((now, id)),
            None => self.ready.push_back(id),
        }
        self.pending.insert(id, entry);
        true
    }

    /// Restores a payment that was recorded before a restart: `amount` is the
    /// client's, `recorded` what the processor holds.
    pub fn restore_done(
        &mut self,
        id: Uuid,
        amount: Cents,
        p: Processor,
        requested_at: Micros,
        recorded: Cents,
    ) {
        if self.known.contains(&id) {
            return;
        }
        self.known.insert(id, Known::finished(amount));
        self.summary.record(p, requested_at, recorded);
        self.counters.processed[p.index()] += 1;
    }

    /// Restores a snapshot's "this id is done" mark (its amount is in a bucket).
    pub fn restore_finished(&mut self, id: Uuid, amount: Cents) {
        self.known.insert(id, Known::finished(amount));
    }

    /// Restores a payment parked before a restart (a processor refused it for good).
    pub fn restore_parked(&mut self, id: Uuid, amount: Cents, p: Processor) {
        self.restore_finished(id, amount);
        self.parked.insert(
            id,
            Parked {
                amount,
                processor: p,
            },
        );
    }

    /// Restores a snapshot's summary bucket (see `log.rs`).
    pub fn restore_bucket(&mut self, p: Processor, ms: i64, totals: model::Totals) {
        self.summary.restore_bucket(p, ms, totals);
        self.counters.processed[p.index()] += totals.count;
    }

    /// How big a snapshot would be now: to allocate its buffers without the lock.
    pub fn snapshot_size(&self) -> SnapshotSize {
        SnapshotSize {
            buckets: self.summary.bucket_count(),
            known: self.known.len(),
            parked: self.parked.len(),
            pending: self.pending.len(),
        }
    }

    /// What a snapshot must hold: the summary's buckets, the ids that are finished,
    /// each pending payment with the timestamps it may have been sent with, and the
    /// parked ones. Into `snap`'s buffers (see [`Snapshot::with_room`]).
    pub fn snapshot_into(&self, snap: &mut Snapshot) {
        snap.buckets.clear();
        snap.buckets.extend(self.summary.buckets());
        snap.done.clear();
        snap.done.extend(
            self.known
                .iter()
                .filter(|(id, k)| !k.is_pending() && !self.parked.contains_key(id))
                .map(|(id, k)| (*id, k.amount())),
        );
        snap.parked.clear();
        snap.parked
            .extend(self.parked.iter().map(|(id, p)| (*id, *p)));
        snap.pending.clear();
        snap.pending.extend(
            self.pending
                .iter()
                .map(|(id, e)| (e.seq, *id, e.amount, e.at.map(|a| a.requested_at))),
        );
    }

    /// A snapshot, allocated and read in one go (tests, and the simulation).
    pub fn snapshot(&self) -> Snapshot {
        let mut snap = Snapshot::with_room(self.snapshot_size());
        self.snapshot_into(&mut snap);
        snap
    }
}
