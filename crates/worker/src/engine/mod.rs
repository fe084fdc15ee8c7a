//! The dispatcher's brain, without IO: the queue, every payment's state, the health
//! view of both processors, the routing decision and the outcome state machine.
//!
//! The IO layer (`dispatch.rs`) asks [`Engine::next_action`] what to do, performs it
//! (an HTTP call to a processor) and reports the result with
//! [`Engine::on_send_result`] or [`Engine::on_lookup_result`]. Time is always passed in,
//! so tests and the deterministic simulation drive the same code with a fake clock:
//! every duration is measured on a monotonic clock ([`Mono`]); the wall clock
//! ([`Micros`]) is read only to choose a `requestedAt`.
//!
//! Architecture invariant: this module does no IO and reads no clock. Each accepted
//! payment is, at any moment, in exactly one of: the ready queue, a processor's pinned
//! queue, an attempt in flight, parked (rejected by a processor), or done (recorded
//! once in the summary). A payment whose request to a processor may still land there
//! (its fate is unknown) is never sent to the other processor.

mod answers;
mod config;
mod outcome;
mod remembered;
mod restore;
mod route;
mod view;

pub use config::EngineConfig;
pub use outcome::{Action, AttemptId, Effect, LookupResult, SendResult, StoredCopy};
pub use restore::{Snapshot, SnapshotSize};
pub use route::{default_state, hold_for, route, DefaultState, Route};
pub use view::{HealthReport, ProcessorView};

use remembered::{Known, Remembered};

use ipc::SubmitStatus;
use model::{Cents, Micros, Mono, Processor, Summary, SummaryQuery, SummaryStore};
use std::collections::{HashMap, VecDeque};
use uuid::Uuid;

/// Where a payment stands with one processor.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct AtProcessor {
    /// The `requestedAt` sent there, kept while a request to it may still land, so
    /// that every copy that could be stored carries the same timestamp.
    requested_at: Option<Micros>,
    /// Since when a request there has had an unknown fate (the first such send), if
    /// one has: the payment then belongs to this processor until its fate is known.
    unknown_since: Option<Mono>,
    /// The processor said it already has the payment (422): its copy is read next.
    wants_copy: bool,
}

#[derive(Debug)]
struct Entry {
    amount: Cents,
    /// When it was accepted (or restored): its age decides how long it may still wait
    /// for the default processor.
    accepted: Mono,
    /// Order of acceptance (restores included), so snapshots keep the queue's order.
    seq: u64,
    at: [AtProcessor; 2],
    /// Tries of the current resolution on its processor, for backoff and for the
    /// lookup/resend alternation.
    tries: u32,
}

impl Entry {
    /// The processor this payment is bound to, if a request may still land there or
    /// the processor claims to have it.
    fn bound_to(&self) -> Option<Processor> {
        Processor::ALL.into_iter().find(|p| {
            let a = &self.at[p.index()];
            a.unknown_since.is_some() || a.wants_copy
        })
    }
}

#[derive(Debug, Clone, Copy)]
struct Attempt {
    id: Uuid,
    processor: Processor,
    started: Mono,
    kind: AttemptKind,
}

/// What an attempt is: a `POST /payments` or a `GET /payments/{id}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AttemptKind {
    Send,
    Lookup,
}

/// A payment a processor refused for good.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Parked {
    pub amount: Cents,
    pub processor: Processor,
}

/// Running counts, exported as metrics.
#[derive(Debug, Clone, Default)]
pub struct Counters {
    pub accepted: u64,
    pub duplicates: u64,
    /// Submits of a known correlationId with another amount (409).
    pub conflicts: u64,
    pub refused_full: u64,
    pub processed: [u64; 2],
    pub sends: [u64; 2],
    pub send_results: [[u64; SendResult::ALL.len()]; 2],
    pub lookups: [u64; 2],
    pub unknown_resolved: u64,
    pub probes: [u64; 2],
    /// Sends that did not finish their payment (it goes out again).
    pub retries: u64,
    pub health_polls: [u64; 2],
    /// Payments a processor refused for good (4XX), parked.
    pub rejected: [u64; 2],
    /// Payments recorded from a processor's copy whose amount or `requestedAt`
    /// differed from what payroute had.
    pub copies_differing: u64,
    /// correlationIds forgotten after the retention.
    pub forgotten: u64,
}

/// Payments whose fate on a processor is unknown: how many, and since when the oldest.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UnknownFates {
    pub count: usize,
    pub oldest_age_us: i64,
}

/// The dispatcher state. See the module docs.
#[derive(Debug)]
pub struct Engine {
    cfg: EngineConfig,
    /// Every correlationId accepted and not yet forgotten.
    known: Remembered,
    /// Payments accepted and not yet done.
    pending: HashMap<Uuid, Entry>,
    /// Payments a processor refused for good.
    parked: HashMap<Uuid, Parked>,
    /// Payments free to go to either processor, oldest first.
    ready: VecDeque<Uuid>,
    /// Payments bound to a processor (unknown fate, or its copy to read): they may
    /// only go back to it, each not before its time.
    pinned: [VecDeque<(Mono, Uuid)>; 2],
    attempts: HashMap<AttemptId, Attempt>,
    next_attempt: AttemptId,
    /// The next [`Entry::seq`].
    next_seq: u64,
    views: [ProcessorView; 2],
    summary: SummaryStore,
    pub counters: Counters,
}

impl Engine {
    pub fn new(cfg: EngineConfig) -> Engine {
        Engine {
            cfg,
            known: Remembered::default(),
            pending: HashMap::new(),
            parked: HashMap::new(),
            ready: VecDeque::new(),
            pinned: [VecDeque::new(), VecDeque::new()],
            attempts: HashMap::new(),
            next_attempt: 1,
            next_seq: 0,
            views: Default::default(),
            summary: SummaryStore::new(),
            counters: Counters::default(),
        }
    }

    pub fn config(&self) -> &EngineConfig {
        &self.cfg
    }

    /// Takes a payment from a client. Exactly one `Accepted` per correlationId while it
    /// is remembered: the same id again is a `Duplicate` with the same amount and a
    /// `Conflict` with another; neither changes anything.
    pub fn submit(&mut self, id: Uuid, amount: Cents, now: Mono) -> SubmitStatus {
        self.forget_expired(now);
        if let Some(known) = self.known.get(&id) {
            if known.amount() == amount {
                self.counters.duplicates += 1;
                return SubmitStatus::Duplicate;
            }
            self.counters.conflicts += 1;
            return SubmitStatus::Conflict;
        }
        if self.queue_depth() >= self.cfg.queue_capacity {
            self.counters.refused_full += 1;
            return SubmitStatus::QueueFull;
        }
        self.enqueue(id, amount, now);
        SubmitStatus::Accepted
    }

    /// A newly accepted payment: remembered, pending, last in the ready queue.
    fn enqueue(&mut self, id: Uuid, amount: Cents, now: Mono) {
        self.known.insert(id, Known::pending(amount));
        self.pending.insert(
            id,
            Entry {
                amount,
                accepted: now,
                seq: self.next_seq,
                at: Default::default(),
                tries: 0,
            },
        );
        self.next_seq += 1;
        self.ready.push_back(id);
        self.counters.accepted += 1;
    }

    /// Takes a payment the shared ledger has just made this worker's (its duplicate
    /// check is the ledger's): queued like a submit, whatever the engine remembered of
    /// the id. Returns false when it was already pending here.
    pub fn adopt(&mut self, id: Uuid, amount: Cents, now: Mono) -> bool {
        if self.pending.contains_key(&id) {
            return false;
        }
        self.parked.remove(&id);
        self.enqueue(id, amount, now);
        true
    }

    /// Drops a payment this worker no longer owns (the shared ledger refused its send:
    /// another worker took it over, or it was purged): its attempt, if `attempt` is
    /// one just taken for it, is dropped too, and nothing of it stays here. Its owner
    /// resolves it; a late answer for it is ignored.
    pub fn forget(&mut self, id: &Uuid, attempt: Option<AttemptId>) {
        if let Some(a) = attempt {
            self.finish(a);
        }
        if self.pending.remove(id).is_some() {
            self.known.remove(id);
            self.ready.retain(|x| x != id);
            for q in &mut self.pinned {
                q.retain(|(_, x)| x != id);
            }
            self.counters.forgotten += 1;
        }
    }

    /// Forgets the correlationIds of payments finished longer ago than the retention
    /// (or beyond the cap), with their parked records.
    fn forget_expired(&mut self, now: Mono) {
        let n = self
            .known
            .rotate_if_due(now, self.cfg.dedup_retention_us, self.cfg.dedup_max_ids);
        if n > 0 {
            self.counters.forgotten += n;
            let known = &self.known;
            self.parked.retain(|id, _| known.contains(id));
        }
    }

    /// Marks a payment finished (recorded or parked): it leaves `pending` and is
    /// remembered for the retention.
    fn finish_payment(&mut self, id: Uuid) {
        if let Some(e) = self.pending.remove(&id) {
            self.known.insert(id, Known::finished(e.amount));
        }
    }

    /// Payments accepted and not yet sent (including those waiting to be resent).
    pub fn queue_depth(&self) -> usize {
        self.ready.len() + self.pinned[0].len() + self.pinned[1].len()
    }

    pub fn in_flight(&self) -> usize {
        self.attempts.len()
    }

    /// Payments accepted and not done.
    pub fn pending_len(&self) -> usize {
        self.pending.len()
    }

    /// Whether this payment is accepted and not done.
    pub fn is_pending(&self, id: &Uuid) -> bool {
        self.pending.contains_key(id)
    }

    /// Payments a processor refused for good.
    pub fn parked(&self) -> &HashMap<Uuid, Parked> {
        &self.parked
    }

    /// Payments whose fate on a processor is unknown, and the age of the oldest: each
    /// is bound to that processor until it tells what it holds.
    pub fn unknown_fates(&self, now: Mono) -> UnknownFates {
        let mut out = UnknownFates::default();
        for e in self.pending.values() {
            if let Some(since) = e.at.iter().filter_map(|a| a.unknown_since).min() {
                out.count += 1;
                out.oldest_age_us = out.oldest_age_us.max(now.since(since));
            }
        }
        out
    }

    pub fn view(&self, p: Processor) -> &ProcessorView {
        &self.views[p.index()]
    }

    pub fn summary(&self, q: &SummaryQuery) -> Summary {
        self.summary.query(q)
    }

    /// Forgets every payment, queued or recorded. Attempts in flight finish but
    /// their results are ignored.
    pub fn purge(&mut self, now: Mono) {
        self.known.clear(now);
        self.pending.clear();
        self.parked.clear();
        self.ready.clear();
        self.pinned = [VecDeque::new(), VecDeque::new()];
        self.attempts.clear();
        for v in &mut self.views {
            v.in_flight.clear();
        }
        self.summary.clear();
        let polls = self.counters.health_polls;
        self.counters = Counters {
            health_polls: polls,
            ..Counters::default()
        };
    }

    /// Takes a health poll's answer into the view.
    pub fn on_health(&mut self, p: Processor, report: HealthReport, now: Mono) {
        self.views[p.index()].polled = Some((now, report));
        self.counters.health_polls[p.index()] += 1;
    }

    /// The next thing to do now, if any. Call until it returns `None`. `wall` is the
    /// wall clock now: a payment sent now carries it as its `requestedAt`.
    pub fn next_action(&mut self, now: Mono, wall: Micros) -> Option<Action> {
        self.forget_expired(now);
        // Pinned payments first: they are the oldest, and their processor is decided.
        for p in Processor::ALL {
            let i = p.index();
            let due = self.pinned[i].front().is_some_and(|(t, _)| *t <= now);
            if due && self.views[i].in_flight() < self.cfg.max_in_flight[i] {
                let (_, id) = self.pinned[i].pop_front().expect("checked");
                return Some(self.resolve_bound(id, p, now));
            }
        }
        let id = *self.ready.front()?;
        let age = now.since(self.pending[&id].accepted);
        let (p, probe) = match route(&self.views, &self.cfg, now, age) {
            Route::To(p) => (p, false),
            Route::Probe(p) => (p, true),
            Route::Wait => return None,
        };
        self.ready.pop_front();
        let entry = self
            .pending
            .get_mut(&id)
            .expect("queued payments are pending");
        debug_assert_eq!(entry.bound_to(), None, "a ready payment is bound nowhere");
        // Millisecond precision, the precision of the wire format: what is recorded is
        // exactly what the processor receives.
        let requested_at = *entry.at[p.index()]
            .requested_at
            .get_or_insert(Micros::from_millis(wall.millis()));
        let amount = entry.amount;
        let attempt = self.start(id, p, now, AttemptKind::Send);
        if probe {
            self.views[p.index()].last_probe = Some(now);
            self.counters.probes[p.index()] += 1;
        }
        self.counters.sends[p.index()] += 1;
        Some(Action::Send {
            attempt,
            processor: p,
            id,
            amount,
            requested_at,
        })
    }

    /// The earliest time after `now` at which [`Engine::next_action`] may have
    /// something new to do without any other event: a pinned payment coming due, a
    /// probe interval ending, or the oldest held payment reaching its deadline. Work
    /// that is blocked by something only an event can change (the in-flight cap, a
    /// probe still out) gives no wake-up: the completion of an attempt is that event.
    pub fn next_wakeup(&self, now: Mono) -> Option<Mono> {
        let deadline = self
            .ready
            .front()
            .and_then(|id| {
                let state = route::default_state(&self.views, &self.cfg, now);
                let hold = route::hold_for(state, &self.cfg)?;
                Some(self.pending[id].accepted.after(hold))
            })
            .filter(|t| *t > now);
        let pinned = self
            .pinned
            .iter()
            .filter_map(|q| q.front().map(|(t, _)| *t))
            .filter(|t| *t > now);
        let probes = self
            .views
            .iter()
            .filter(|_| !self.ready.is_empty())
            .filter_map(|v| v.last_probe.map(|t| t.after(self.cfg.probe_interval_us)))
            .filter(|t| *t > now);
        pinned.chain(probes).chain(deadline).min()
    }

    /// Payments waiting to be sent (held for the default, or for room), and the age of
    /// the oldest, in µs.
    pub fn held(&self, now: Mono) -> (usize, i64) {
        let oldest = self
            .ready
            .front()
            .map_or(0, |id| now.since(self.pending[id].accepted));
        (self.ready.len(), oldest)
    }

    fn start(&mut self, id: Uuid, p: Processor, now: Mono, kind: AttemptKind) -> AttemptId {
        let attempt = self.next_attempt;
        self.next_attempt += 1;
        self.attempts.insert(
            attempt,
            Attempt {
                id,
                processor: p,
                started: now,
                kind,
            },
        );
        self.views[p.index()].in_flight.insert((now, attempt));
        attempt
    }

    fn finish(&mut self, attempt: AttemptId) -> Option<Attempt> {
        let a = self.attempts.remove(&attempt)?;
        self.views[a.processor.index()]
            .in_flight
            .remove(&(a.started, attempt));
        Some(a)
    }

    /// Every payment accepted and not done. For tests and invariant checks.
    pub fn pending_ids(&self) -> impl Iterator<Item = &Uuid> {
        self.pending.keys()
    }

    /// Undoes a `submit` that was just accepted, when it could not be made durable:
    /// the client gets an error and nothing of the payment remains.
    pub fn cancel_accept(&mut self, id: &Uuid) {
        if self.pending.remove(id).is_some() {
            self.known.remove(id);
            self.ready.retain(|x| x != id);
            self.counters.accepted -= 1;
        }
    }

    /// Number of correlationIds a snapshot would hold (finished and pending).
    pub fn live_payments(&self) -> usize {
        self.known.len()
    }

    /// Whether this correlationId is remembered (accepted and not yet forgotten).
    pub fn knows(&self, id: &Uuid) -> bool {
        self.known.contains(id)
    }
}

#[cfg(test)]
mod tests;
