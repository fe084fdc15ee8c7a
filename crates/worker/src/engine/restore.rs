//! The engine's durable state, both ways: rebuilt from a log replay or a takeover
//! (`restore_*`), and read for a snapshot (compaction).

use super::*;

/// A view of the engine's durable state, for log compaction.
pub struct Snapshot<'a> {
    engine: &'a Engine,
}

impl Snapshot<'_> {
    pub fn buckets(&self) -> impl Iterator<Item = (Processor, i64, model::Totals)> + '_ {
        self.engine.summary.buckets()
    }

    /// Every finished payment still remembered, recorded or parked.
    pub fn done_ids(&self) -> impl Iterator<Item = (&Uuid, Cents)> + '_ {
        self.engine
            .known
            .iter()
            .filter(|(id, k)| !k.is_pending() && !self.engine.parked.contains_key(id))
            .map(|(id, k)| (id, k.amount()))
    }

    /// (id, amount, timestamp per processor) of every pending payment.
    /// In the order they were accepted, so a restart keeps the queue's order.
    pub fn pending(&self) -> impl Iterator<Item = (Uuid, Cents, [Option<Micros>; 2])> + '_ {
        let mut all: Vec<(&Uuid, &Entry)> = self.engine.pending.iter().collect();
        all.sort_unstable_by_key(|(_, e)| e.seq);
        all.into_iter()
            .map(|(id, e)| (*id, e.amount, e.at.map(|a| a.requested_at)))
    }

    /// Every parked payment.
    pub fn parked(&self) -> impl Iterator<Item = (Uuid, Parked)> + '_ {
        self.engine.parked.iter().map(|(id, p)| (*id, *p))
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

    /// What a snapshot must hold: the summary's buckets, the ids that are finished,
    /// each pending payment with the timestamps it may have been sent with, and the
    /// parked ones.
    pub fn snapshot(&self) -> Snapshot<'_> {
        Snapshot { engine: self }
    }
}
