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

use ipc::SubmitStatus;
use model::{Cents, Micros, Mono, Processor, Summary, SummaryQuery, SummaryStore};
use std::collections::{BTreeSet, HashMap, VecDeque};
use uuid::Uuid;

/// Tuning of the dispatcher. Every value has its reason in [`EngineConfig::default`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineConfig {
    /// Payments waiting (not in flight) at most; beyond it a submit is refused.
    pub queue_capacity: usize,
    /// A processor is used only while its expected latency is within this budget, so
    /// that every payment is settled (recorded by both sides) before any consistency
    /// window can contain its `requestedAt`. See ARCHITECTURE.md, "The summary race".
    pub latency_budget_us: i64,
    /// Attempts in flight per processor at most (the official processor admits 800
    /// concurrent requests and queues 500 more).
    pub max_in_flight: [usize; 2],
    /// While a processor is believed failing, one payment is sent to it as a probe at
    /// most this often, to notice its recovery before the next health poll.
    pub probe_interval_us: i64,
    /// Wait before the first lookup of an unknown fate; doubles per try up to
    /// `max_retry_delay_us`.
    pub first_retry_delay_us: i64,
    pub max_retry_delay_us: i64,
    /// A finished payment's correlationId is remembered this long (for duplicates and
    /// conflicts), then forgotten; `None` remembers until the next purge.
    pub dedup_retention_us: Option<i64>,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            // 90,600 payments in the final test; holding every one of them would still
            // fit (about 100 bytes each). Beyond this the service is hopelessly behind.
            queue_capacity: 200_000,
            // The final's checker reads [now-15s, now-2s], the preview's [now-15s,
            // now-1.5s]: 1.2 s leaves 300 ms of margin for the stricter one and admits
            // the final's 1000 ms default stage.
            latency_budget_us: 1_200_000,
            // 300 payments/s at 1 s of delay is 300 in flight; 700 stays under the 800
            // the processor admits, leaving room for the health poller and lookups.
            max_in_flight: [700, 700],
            probe_interval_us: 1_000_000,
            first_retry_delay_us: 200_000,
            max_retry_delay_us: 2_000_000,
            // A client retrying a payment does so within seconds or minutes; a day is
            // what payment APIs promise for idempotency keys. See ARCHITECTURE.md for
            // the memory it costs per million payments.
            dedup_retention_us: Some(24 * 3_600 * 1_000_000),
        }
    }
}

/// Identifies one HTTP call to a processor.
pub type AttemptId = u64;

/// What the IO layer must do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// `POST /payments` to `processor` with exactly this `requested_at`.
    Send {
        attempt: AttemptId,
        processor: Processor,
        id: Uuid,
        amount: Cents,
        requested_at: Micros,
    },
    /// `GET /payments/{id}` on `processor`, to learn the fate of an earlier send, or
    /// the processor's own copy of a payment it says it already has.
    Lookup {
        attempt: AttemptId,
        processor: Processor,
        id: Uuid,
    },
}

/// How a `POST /payments` to a processor ended, classified by what it tells about the
/// payment (not by transport details).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendResult {
    /// 200: stored now, with what was sent.
    Stored,
    /// 422: that processor already has this correlationId (from an earlier attempt,
    /// or from before a purge): its own copy is looked up and recorded.
    AlreadyStored,
    /// 500 (or a 408 or 5XX): definitely not stored.
    Failed,
    /// 429: refused by the processor's limiter before anything happened.
    Throttled,
    /// The request was never sent (connection refused, DNS, connect timeout).
    NotSent,
    /// Sent, but no answer came (timeout, connection lost): it may be stored later.
    Unknown,
    /// Another 4XX: the processor refuses this payment as it is; resending it cannot
    /// help. The payment is parked, not retried.
    Rejected,
}

/// The processor's own record of a payment (`GET /payments/{id}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoredCopy {
    pub amount: Cents,
    pub requested_at: Micros,
}

/// How a `GET /payments/{id}` ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LookupResult {
    Found(StoredCopy),
    NotFound,
    Error,
}

/// What an outcome did to its payment, for the payment log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// Nothing to log (a late result after a purge, or the payment stays as it was).
    None,
    /// Recorded as processed by `processor` with `requested_at` and `amount` (what the
    /// processor holds).
    Recorded {
        id: Uuid,
        processor: Processor,
        requested_at: Micros,
        amount: Cents,
    },
    /// Nothing of this payment can be stored at `processor` any more: its timestamp
    /// there is forgotten.
    Released { id: Uuid, processor: Processor },
    /// `processor` refused the payment for good (a 4XX): it is parked.
    Rejected { id: Uuid, processor: Processor },
}

/// What one health poll said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HealthReport {
    pub failing: bool,
    pub min_response_time_ms: u64,
}

impl HealthReport {
    /// The configured delay in µs, saturating: a processor may report any number.
    fn min_response_time_us(self) -> i64 {
        i64::try_from(self.min_response_time_ms)
            .unwrap_or(i64::MAX)
            .saturating_mul(1000)
    }
}

/// The dispatcher's view of one processor.
#[derive(Debug, Clone, Default)]
pub struct ProcessorView {
    /// Latest health poll and when it arrived.
    pub polled: Option<(Mono, HealthReport)>,
    /// Latest completed payment request: when, whether it failed, its latency (µs).
    pub last_completion: Option<(Mono, bool, i64)>,
    /// Failures in a row among completed requests.
    pub failure_streak: u32,
    /// Start time of every attempt in flight, oldest first.
    in_flight: BTreeSet<(Mono, AttemptId)>,
    /// Start of the latest probe sent while the processor was believed failing.
    last_probe: Option<Mono>,
}

impl ProcessorView {
    /// Whether the newest observation (a poll or a completed request) says failing.
    pub fn failing(&self) -> bool {
        match (self.polled, self.last_completion) {
            (Some((pt, p)), Some((ct, failed, _))) => {
                if pt > ct {
                    p.failing
                } else {
                    failed
                }
            }
            (Some((_, p)), None) => p.failing,
            (None, Some((_, failed, _))) => failed,
            (None, None) => false,
        }
    }

    /// Expected latency of a request sent now, in µs: the newest observation of the
    /// processor's speed, raised to the age of the oldest request still in flight (a
    /// processor that just turned slow shows it there first).
    pub fn expected_latency_us(&self, now: Mono) -> i64 {
        let base = match (self.polled, self.last_completion) {
            (Some((pt, p)), Some((ct, _, lat))) => {
                if pt > ct {
                    p.min_response_time_us()
                } else {
                    lat
                }
            }
            (Some((_, p)), None) => p.min_response_time_us(),
            (None, Some((_, _, lat))) => lat,
            (None, None) => 0,
        };
        let oldest = self
            .in_flight
            .first()
            .map_or(0, |(start, _)| now.since(*start));
        base.max(oldest)
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }
}

/// Why no processor can take a payment now, or which one can.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// Send normally.
    To(Processor),
    /// Send as a probe to a processor believed failing.
    Probe(Processor),
    /// Nothing now.
    Wait,
}

/// The routing decision, pure. In order:
/// 1. the default processor, if it works and is expected within the latency budget;
/// 2. a probe to the default processor, if it is believed failing and its probe is
///    due (the cheaper one is worth noticing as soon as it recovers);
/// 3. the fallback processor, if it works and is expected within the budget;
/// 4. the faster of the two if both work but are over budget: a late payment beats a
///    lost one;
/// 5. a probe to the fallback processor, when due;
/// 6. wait.
///
/// "Works" means: not believed failing and below its in-flight cap.
pub fn route(views: &[ProcessorView; 2], cfg: &EngineConfig, now: Mono) -> Route {
    let has_room = |p: Processor| views[p.index()].in_flight() < cfg.max_in_flight[p.index()];
    let works = |p: Processor| !views[p.index()].failing() && has_room(p);
    let fast = |p: Processor| views[p.index()].expected_latency_us(now) <= cfg.latency_budget_us;
    // Spaced by time only, not by what is still in flight: a request sent during a
    // 5 s outage stays out for 5 s, and a recovery must not wait for it.
    let probe_due = |p: Processor| {
        let v = &views[p.index()];
        v.failing()
            && has_room(p)
            && v.last_probe
                .is_none_or(|t| now.since(t) >= cfg.probe_interval_us)
    };
    use Processor::{Default as D, Fallback as F};
    if works(D) && fast(D) {
        return Route::To(D);
    }
    if probe_due(D) {
        return Route::Probe(D);
    }
    if works(F) && fast(F) {
        return Route::To(F);
    }
    match (works(D), works(F)) {
        (true, true) => {
            let (d, f) = (
                views[0].expected_latency_us(now),
                views[1].expected_latency_us(now),
            );
            return Route::To(if d <= f { D } else { F });
        }
        (true, false) => return Route::To(D),
        (false, true) => return Route::To(F),
        (false, false) => {}
    }
    if probe_due(F) {
        return Route::Probe(F);
    }
    Route::Wait
}

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

/// What the engine remembers of a correlationId it accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Known {
    /// Accepted and not finished (queued, pinned or in flight).
    Pending(Cents),
    /// Finished: recorded, or parked as rejected.
    Finished(Cents),
}

impl Known {
    fn amount(self) -> Cents {
        match self {
            Known::Pending(a) | Known::Finished(a) => a,
        }
    }
}

/// A payment a processor refused for good.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Parked {
    pub amount: Cents,
    pub processor: Processor,
}

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
            .filter(|(id, _)| !self.engine.parked.contains_key(id))
            .filter_map(|(id, k)| match k {
                Known::Finished(a) => Some((id, *a)),
                Known::Pending(_) => None,
            })
    }

    /// (id, amount, timestamp per processor) of every pending payment.
    pub fn pending(&self) -> impl Iterator<Item = (Uuid, Cents, [Option<Micros>; 2])> + '_ {
        self.engine
            .pending
            .iter()
            .map(|(id, e)| (*id, e.amount, e.at.map(|a| a.requested_at)))
    }

    /// Every parked payment.
    pub fn parked(&self) -> impl Iterator<Item = (Uuid, Parked)> + '_ {
        self.engine.parked.iter().map(|(id, p)| (*id, *p))
    }
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

impl SendResult {
    pub const ALL: [SendResult; 7] = [
        SendResult::Stored,
        SendResult::AlreadyStored,
        SendResult::Failed,
        SendResult::Throttled,
        SendResult::NotSent,
        SendResult::Unknown,
        SendResult::Rejected,
    ];

    pub fn index(self) -> usize {
        self as usize
    }

    pub fn name(self) -> &'static str {
        match self {
            SendResult::Stored => "stored",
            SendResult::AlreadyStored => "already_stored",
            SendResult::Failed => "failed",
            SendResult::Throttled => "throttled",
            SendResult::NotSent => "not_sent",
            SendResult::Unknown => "unknown",
            SendResult::Rejected => "rejected",
        }
    }
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
    known: HashMap<Uuid, Known>,
    /// Finished payments in the order they finished, for the retention.
    finished: VecDeque<(Mono, Uuid)>,
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
    views: [ProcessorView; 2],
    summary: SummaryStore,
    pub counters: Counters,
}

impl Engine {
    pub fn new(cfg: EngineConfig) -> Engine {
        Engine {
            cfg,
            known: HashMap::new(),
            finished: VecDeque::new(),
            pending: HashMap::new(),
            parked: HashMap::new(),
            ready: VecDeque::new(),
            pinned: [VecDeque::new(), VecDeque::new()],
            attempts: HashMap::new(),
            next_attempt: 1,
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
        self.known.insert(id, Known::Pending(amount));
        self.pending.insert(
            id,
            Entry {
                amount,
                at: Default::default(),
                tries: 0,
            },
        );
        self.ready.push_back(id);
        self.counters.accepted += 1;
        SubmitStatus::Accepted
    }

    /// Forgets the correlationIds of payments finished longer ago than the retention.
    fn forget_expired(&mut self, now: Mono) {
        let Some(retention) = self.cfg.dedup_retention_us else {
            return;
        };
        while let Some(&(at, id)) = self.finished.front() {
            if now.since(at) < retention {
                break;
            }
            self.finished.pop_front();
            if let Some(Known::Finished(_)) = self.known.get(&id) {
                self.known.remove(&id);
                self.parked.remove(&id);
                self.counters.forgotten += 1;
            }
        }
    }

    /// Marks a payment finished (recorded or parked): it leaves `pending` and is
    /// remembered for the retention.
    fn finish_payment(&mut self, id: Uuid, now: Mono) {
        if let Some(e) = self.pending.remove(&id) {
            self.known.insert(id, Known::Finished(e.amount));
            self.finished.push_back((now, id));
        }
    }

    /// Restores a payment from the log at start-up (see `log.rs`): `requested_at` says
    /// where it may have been sent before the restart; there its fate is unknown, and
    /// it is resolved on that processor before anything else happens to it.
    pub fn restore_pending(
        &mut self,
        id: Uuid,
        amount: Cents,
        requested_at: [Option<Micros>; 2],
        now: Mono,
    ) {
        if self.known.contains_key(&id) {
            return;
        }
        self.known.insert(id, Known::Pending(amount));
        let mut at: [AtProcessor; 2] = Default::default();
        for p in Processor::ALL {
            at[p.index()].requested_at = requested_at[p.index()];
            at[p.index()].unknown_since = requested_at[p.index()].map(|_| now);
        }
        let entry = Entry {
            amount,
            at,
            tries: 0,
        };
        match entry.bound_to() {
            Some(p) => self.pinned[p.index()].push_back((now, id)),
            None => self.ready.push_back(id),
        }
        self.pending.insert(id, entry);
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
        now: Mono,
    ) {
        if self.known.contains_key(&id) {
            return;
        }
        self.known.insert(id, Known::Finished(amount));
        self.finished.push_back((now, id));
        self.summary.record(p, requested_at, recorded);
        self.counters.processed[p.index()] += 1;
    }

    /// Restores a snapshot's "this id is done" mark (its amount is in a bucket).
    pub fn restore_finished(&mut self, id: Uuid, amount: Cents, now: Mono) {
        if self.known.insert(id, Known::Finished(amount)).is_none() {
            self.finished.push_back((now, id));
        }
    }

    /// Restores a payment parked before a restart (a processor refused it for good).
    pub fn restore_parked(&mut self, id: Uuid, amount: Cents, p: Processor, now: Mono) {
        self.restore_finished(id, amount, now);
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
    pub fn purge(&mut self) {
        self.known.clear();
        self.finished.clear();
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
        let (p, probe) = match route(&self.views, &self.cfg, now) {
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
    /// something new to do without any other event: a pinned payment coming due or a
    /// probe interval ending. Work that is blocked by something only an event can
    /// change (the in-flight cap, a probe still out) gives no wake-up: the completion
    /// of an attempt is that event.
    pub fn next_wakeup(&self, now: Mono) -> Option<Mono> {
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
        pinned.chain(probes).min()
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

    /// A payment bound to `p` is due: read the processor's copy when it claims one,
    /// else alternate a lookup and a resend with the same `requestedAt` (safe: one of
    /// two copies gets 422), until `p` says what it holds.
    fn resolve_bound(&mut self, id: Uuid, p: Processor, now: Mono) -> Action {
        let entry = self
            .pending
            .get_mut(&id)
            .expect("pinned payments are pending");
        entry.tries += 1;
        let at = entry.at[p.index()];
        if at.wants_copy || entry.tries % 2 == 1 {
            self.counters.lookups[p.index()] += 1;
            let attempt = self.start(id, p, now, AttemptKind::Lookup);
            Action::Lookup {
                attempt,
                processor: p,
                id,
            }
        } else {
            let requested_at = at.requested_at.expect("bound after a send");
            let amount = entry.amount;
            self.counters.sends[p.index()] += 1;
            let attempt = self.start(id, p, now, AttemptKind::Send);
            Action::Send {
                attempt,
                processor: p,
                id,
                amount,
                requested_at,
            }
        }
    }

    fn retry_delay(cfg: &EngineConfig, tries: u32) -> i64 {
        let shift = tries.saturating_sub(1).min(20);
        (cfg.first_retry_delay_us << shift).min(cfg.max_retry_delay_us)
    }

    /// Records `id` as stored by `p` with what `p` holds, and finishes it.
    fn record(&mut self, id: Uuid, p: Processor, copy: StoredCopy, now: Mono) -> Effect {
        let Some(entry) = self.pending.get(&id) else {
            return Effect::None;
        };
        let at = entry.at[p.index()];
        if at.unknown_since.is_some() || at.wants_copy {
            self.counters.unknown_resolved += 1;
        }
        if at.requested_at != Some(copy.requested_at) || entry.amount != copy.amount {
            self.counters.copies_differing += 1;
        }
        self.summary.record(p, copy.requested_at, copy.amount);
        self.counters.processed[p.index()] += 1;
        self.finish_payment(id, now);
        Effect::Recorded {
            id,
            processor: p,
            requested_at: copy.requested_at,
            amount: copy.amount,
        }
    }

    /// After a definitive "not stored" at `p`: if a request there may still land, the
    /// payment stays bound to `p` (retried after a backoff); otherwise its timestamp
    /// there is forgotten and it is free for either processor.
    fn not_stored(&mut self, id: Uuid, p: Processor, now: Mono) -> Effect {
        let i = p.index();
        let Some(entry) = self.pending.get_mut(&id) else {
            return Effect::None;
        };
        if entry.bound_to() == Some(p) {
            let delay = Self::retry_delay(&self.cfg, entry.tries);
            self.pinned[i].push_back((now.after(delay), id));
            Effect::None
        } else {
            entry.at[i] = AtProcessor::default();
            entry.tries = 0;
            self.ready.push_front(id);
            Effect::Released { id, processor: p }
        }
    }

    /// Applies the outcome of a `Send`.
    pub fn on_send_result(&mut self, attempt: AttemptId, result: SendResult, now: Mono) -> Effect {
        let Some(a) = self.finish(attempt) else {
            return Effect::None; // purged meanwhile
        };
        let p = a.processor;
        let i = p.index();
        self.counters.send_results[i][result.index()] += 1;
        self.observe_send(p, result, now.since(a.started), now);
        let Some(entry) = self.pending.get_mut(&a.id) else {
            return Effect::None;
        };
        match result {
            SendResult::Stored => {
                let copy = StoredCopy {
                    amount: entry.amount,
                    requested_at: entry.at[i].requested_at.expect("sent with a timestamp"),
                };
                self.record(a.id, p, copy, now)
            }
            SendResult::AlreadyStored => {
                // `p` has a copy: read it, and record what `p` holds.
                entry.at[i].wants_copy = true;
                self.pinned[i].push_back((now, a.id));
                Effect::None
            }
            SendResult::Failed | SendResult::Throttled | SendResult::NotSent => {
                self.counters.retries += 1;
                self.not_stored(a.id, p, now)
            }
            SendResult::Rejected if entry.bound_to() == Some(p) => {
                // An earlier request there may still land: the lookups will tell.
                self.counters.retries += 1;
                self.not_stored(a.id, p, now)
            }
            SendResult::Rejected => {
                let amount = entry.amount;
                self.counters.rejected[i] += 1;
                self.parked.insert(
                    a.id,
                    Parked {
                        amount,
                        processor: p,
                    },
                );
                self.finish_payment(a.id, now);
                Effect::Rejected {
                    id: a.id,
                    processor: p,
                }
            }
            SendResult::Unknown => {
                self.counters.retries += 1;
                entry.at[i].unknown_since.get_or_insert(a.started);
                entry.tries = 0;
                let delay = Self::retry_delay(&self.cfg, 1);
                self.pinned[i].push_back((now.after(delay), a.id));
                Effect::None
            }
        }
    }

    /// What a payment request's outcome says about its processor.
    fn observe_send(&mut self, p: Processor, result: SendResult, latency: i64, now: Mono) {
        let budget = self.cfg.latency_budget_us;
        let view = &mut self.views[p.index()];
        match result {
            SendResult::Unknown => {
                // A timeout tells how slow, not whether failing: keep the current
                // verdict, and count the processor as over budget whatever the
                // timeout's length (a timeout shorter than the budget must not make it
                // look fast).
                let failing = view.failing();
                view.last_completion = Some((now, failing, latency.max(budget + 1)));
            }
            SendResult::Failed | SendResult::Throttled | SendResult::NotSent => {
                view.last_completion = Some((now, true, latency));
                view.failure_streak += 1;
            }
            SendResult::Stored | SendResult::AlreadyStored | SendResult::Rejected => {
                view.last_completion = Some((now, false, latency));
                view.failure_streak = 0;
            }
        }
    }

    /// Applies the outcome of a `Lookup`.
    pub fn on_lookup_result(
        &mut self,
        attempt: AttemptId,
        result: LookupResult,
        now: Mono,
    ) -> Effect {
        let Some(a) = self.finish(attempt) else {
            return Effect::None;
        };
        debug_assert_eq!(a.kind, AttemptKind::Lookup);
        let p = a.processor;
        let i = p.index();
        let Some(entry) = self.pending.get_mut(&a.id) else {
            return Effect::None;
        };
        match result {
            LookupResult::Found(copy) => self.record(a.id, p, copy, now),
            LookupResult::NotFound if entry.at[i].unknown_since.is_some() => {
                // Not there yet; a request may still land. Resending with the same
                // timestamp is safe (one of two copies gets 422) and finishes the
                // payment sooner; it never goes elsewhere on a timer.
                entry.at[i].wants_copy = false;
                self.pinned[i].push_back((now, a.id));
                Effect::None
            }
            LookupResult::NotFound => {
                // It said 422, and now has nothing (purged in between): nothing of
                // this payment is there, and nothing sent there is still out.
                entry.at[i].wants_copy = false;
                self.not_stored(a.id, p, now)
            }
            LookupResult::Error => {
                if !entry.at[i].wants_copy {
                    entry.tries += 1; // keep the lookup/resend alternation on "lookup"
                }
                let delay = Self::retry_delay(&self.cfg, entry.tries);
                self.pinned[i].push_back((now.after(delay), a.id));
                Effect::None
            }
        }
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

    /// What a snapshot must hold: the summary's buckets, the ids that are finished,
    /// each pending payment with the timestamps it may have been sent with, and the
    /// parked ones.
    pub fn snapshot(&self) -> Snapshot<'_> {
        Snapshot { engine: self }
    }

    /// Number of correlationIds a snapshot would hold (finished and pending).
    pub fn live_payments(&self) -> usize {
        self.known.len()
    }

    /// Whether this correlationId is remembered (accepted and not yet forgotten).
    pub fn knows(&self, id: &Uuid) -> bool {
        self.known.contains_key(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Processor::{Default as D, Fallback as F};

    const MS: i64 = 1000;

    /// The wall clock is this far from the monotonic one in these tests.
    const WALL: i64 = 1_700_000_000_000_000;

    fn t(ms: i64) -> Mono {
        Mono(ms * MS)
    }

    fn wall(now: Mono) -> Micros {
        Micros(WALL + now.0)
    }

    fn act(e: &mut Engine, now: Mono) -> Option<Action> {
        e.next_action(now, wall(now))
    }

    fn found(e: &Engine, id: Uuid, at: Micros) -> LookupResult {
        let _ = e;
        let _ = id;
        LookupResult::Found(StoredCopy {
            amount: Cents(100),
            requested_at: at,
        })
    }

    fn id(n: u128) -> Uuid {
        Uuid::from_u128(n)
    }

    fn engine() -> Engine {
        Engine::new(EngineConfig::default())
    }

    fn send(e: &mut Engine, now: Mono) -> (AttemptId, Processor, Uuid, Micros) {
        match act(e, now) {
            Some(Action::Send {
                attempt,
                processor,
                id,
                requested_at,
                ..
            }) => (attempt, processor, id, requested_at),
            other => panic!("expected a send, got {other:?}"),
        }
    }

    fn lookup(e: &mut Engine, now: Mono) -> (AttemptId, Processor, Uuid) {
        match act(e, now) {
            Some(Action::Lookup {
                attempt,
                processor,
                id,
            }) => (attempt, processor, id),
            other => panic!("expected a lookup, got {other:?}"),
        }
    }

    fn all(e: &Engine) -> Summary {
        e.summary(&SummaryQuery::default())
    }

    fn view(failing: Option<bool>, poll_ms: u64, completion: Option<(bool, i64)>) -> ProcessorView {
        ProcessorView {
            polled: failing.map(|f| {
                (
                    t(0),
                    HealthReport {
                        failing: f,
                        min_response_time_ms: poll_ms,
                    },
                )
            }),
            last_completion: completion.map(|(failed, lat_ms)| (t(1), failed, lat_ms * MS)),
            ..ProcessorView::default()
        }
    }

    #[test]
    fn routing_table() {
        let cfg = EngineConfig::default();
        let ok = || view(Some(false), 0, None);
        let failing = || view(Some(true), 0, None);
        let slow = |ms| view(Some(false), ms, None);
        let now = t(10);
        let cases: Vec<(&str, ProcessorView, ProcessorView, Route)> = vec![
            (
                "nothing known: default",
                ProcessorView::default(),
                ProcessorView::default(),
                Route::To(D),
            ),
            ("both healthy: default", ok(), ok(), Route::To(D)),
            (
                "default 1000 ms is within budget",
                slow(1000),
                ok(),
                Route::To(D),
            ),
            ("default 2000 ms: fallback", slow(2000), ok(), Route::To(F)),
            (
                "default failing: probe it first",
                failing(),
                ok(),
                Route::Probe(D),
            ),
            (
                "both slow: the faster",
                slow(5000),
                slow(2000),
                Route::To(F),
            ),
            (
                "both slow, default faster",
                slow(2000),
                slow(3000),
                Route::To(D),
            ),
            (
                "fallback failing, default slow",
                slow(2000),
                failing(),
                Route::To(D),
            ),
            (
                "a completion newer than the poll wins",
                view(Some(true), 0, Some((false, 3))),
                ok(),
                Route::To(D),
            ),
            (
                "a failed completion newer than the poll",
                view(Some(false), 0, Some((true, 3))),
                ok(),
                Route::Probe(D),
            ),
            (
                "slow completion after a fast poll",
                view(Some(false), 0, Some((false, 1500))),
                ok(),
                Route::To(F),
            ),
        ];
        for (name, d, f, want) in cases {
            assert_eq!(route(&[d, f], &cfg, now), want, "{name}");
        }
    }

    #[test]
    fn probes_are_spaced_by_time() {
        let cfg = EngineConfig::default();
        let mut d = view(Some(true), 0, None);
        let f = view(Some(true), 0, None);
        d.last_probe = Some(t(0));
        // Default's probe is not due; fallback's is.
        assert_eq!(
            route(&[d.clone(), f.clone()], &cfg, t(500)),
            Route::Probe(F)
        );
        assert_eq!(
            route(&[d.clone(), f.clone()], &cfg, t(1000)),
            Route::Probe(D)
        );
        let mut f2 = f.clone();
        f2.last_probe = Some(t(900));
        assert_eq!(route(&[d.clone(), f2], &cfg, t(999)), Route::Wait);
        // A probe still out does not hold the next one back: only time does.
        d.in_flight.insert((t(1000), 1));
        d.last_probe = Some(t(1000));
        let mut f3 = f;
        f3.last_probe = Some(t(999));
        assert_eq!(route(&[d.clone(), f3.clone()], &cfg, t(1500)), Route::Wait);
        assert_eq!(route(&[d, f3], &cfg, t(2000)), Route::Probe(D));
    }

    #[test]
    fn oldest_in_flight_age_makes_a_processor_slow() {
        let mut e = engine();
        e.submit(id(1), Cents(100), t(0));
        e.submit(id(2), Cents(100), t(0));
        let (_, p, _, _) = send(&mut e, t(0));
        assert_eq!(p, D);
        // 1.3 s later the first request is still out: default is now over budget.
        let (_, p, _, _) = send(&mut e, t(1300));
        assert_eq!(p, F);
    }

    #[test]
    fn a_timeout_makes_a_processor_over_budget_whatever_its_length() {
        let mut e = Engine::new(EngineConfig {
            latency_budget_us: 1_200_000,
            ..EngineConfig::default()
        });
        e.submit(id(1), Cents(1), t(0));
        e.submit(id(2), Cents(1), t(0));
        let (a, p, _, _) = send(&mut e, t(0));
        assert_eq!(p, D);
        // A 1 s timeout, below the 1.2 s budget.
        e.on_send_result(a, SendResult::Unknown, t(1_000));
        assert!(e.view(D).expected_latency_us(t(1_000)) > 1_200_000);
        let (_, p, id2, _) = send(&mut e, t(1_000));
        assert_eq!((p, id2), (F, id(2)));
    }

    #[test]
    fn duplicates_and_queue_full() {
        let mut e = Engine::new(EngineConfig {
            queue_capacity: 1,
            ..EngineConfig::default()
        });
        assert_eq!(e.submit(id(1), Cents(1), t(0)), SubmitStatus::Accepted);
        assert_eq!(e.submit(id(1), Cents(1), t(0)), SubmitStatus::Duplicate);
        assert_eq!(e.submit(id(2), Cents(1), t(0)), SubmitStatus::QueueFull);
        // Refused payments leave no trace: it can be accepted once there is room.
        send(&mut e, t(0));
        assert_eq!(e.submit(id(2), Cents(1), t(0)), SubmitStatus::Accepted);
        // Done payments stay known.
        assert_eq!(e.submit(id(1), Cents(1), t(0)), SubmitStatus::Duplicate);
    }

    #[test]
    fn outcome_200_records_with_the_timestamp_sent() {
        let mut e = engine();
        e.submit(id(1), Cents(1990), t(0));
        let (a, p, _, at) = send(&mut e, t(5));
        assert_eq!(at, wall(t(5)));
        e.on_send_result(a, SendResult::Stored, t(7));
        let s = all(&e);
        assert_eq!((s.get(p).count, s.get(p).amount), (1, Cents(1990)));
        let window = SummaryQuery {
            from: Some(wall(t(5))),
            to: Some(wall(t(5))),
        };
        assert_eq!(e.summary(&window).default.count, 1);
        assert_eq!(e.queue_depth() + e.in_flight(), 0);
    }

    #[test]
    fn outcome_500_requeues_with_a_fresh_timestamp_and_prefers_the_other() {
        let mut e = engine();
        e.submit(id(1), Cents(100), t(0));
        let (a, p, _, _) = send(&mut e, t(0));
        assert_eq!(p, D);
        e.on_send_result(a, SendResult::Failed, t(10));
        assert!(e.view(D).failing());
        let (_, p, _, at) = send(&mut e, t(20));
        // Default failing: first a probe to it is due (nothing in flight).
        assert_eq!((p, at), (D, wall(t(20))));
        e.submit(id(2), Cents(100), t(0));
        let (_, p, _, _) = send(&mut e, t(21));
        assert_eq!(p, F);
        assert_eq!(all(&e).default.count + all(&e).fallback.count, 0);
    }

    #[test]
    fn outcome_429_and_not_sent_are_retried() {
        for r in [SendResult::Throttled, SendResult::NotSent] {
            let mut e = engine();
            e.submit(id(1), Cents(100), t(0));
            let (a, _, _, _) = send(&mut e, t(0));
            e.on_send_result(a, r, t(1));
            assert_eq!(e.queue_depth(), 1, "{r:?}");
            let (a, p, _, _) = send(&mut e, t(2));
            e.on_send_result(a, SendResult::Stored, t(3));
            assert_eq!(all(&e).get(p).count, 1);
        }
    }

    #[test]
    fn outcome_422_records_the_processors_copy_once() {
        let mut e = engine();
        e.submit(id(1), Cents(100), t(0));
        let (a, p, _, _) = send(&mut e, t(0));
        e.on_send_result(a, SendResult::AlreadyStored, t(1));
        assert_eq!(
            all(&e).get(p).count,
            0,
            "nothing recorded before the copy is read"
        );
        // The processor's copy (say, from before a purge of payroute) is what counts.
        let (l, lp, _) = lookup(&mut e, t(1));
        assert_eq!(lp, p);
        let theirs = StoredCopy {
            amount: Cents(250),
            requested_at: wall(t(-60_000)),
        };
        e.on_lookup_result(l, LookupResult::Found(theirs), t(2));
        assert_eq!(all(&e).get(p).count, 1);
        assert_eq!(all(&e).get(p).amount, Cents(250));
        let q = SummaryQuery {
            from: Some(theirs.requested_at),
            to: Some(theirs.requested_at),
        };
        assert_eq!(e.summary(&q).get(p).count, 1);
        assert_eq!(e.counters.copies_differing, 1);
        // A late result for the same attempt changes nothing.
        e.on_send_result(a, SendResult::Stored, t(3));
        assert_eq!(all(&e).get(p).count, 1);
    }

    #[test]
    fn timeout_then_found() {
        let mut e = engine();
        e.submit(id(1), Cents(100), t(0));
        let (a, p, _, at) = send(&mut e, t(0));
        e.on_send_result(a, SendResult::Unknown, t(10_000));
        assert_eq!(e.queue_depth(), 1);
        // Nothing before the first retry delay; then a lookup on the same processor.
        assert_eq!(act(&mut e, t(10_100)), None);
        let (l, lp, _) = lookup(&mut e, t(10_200));
        assert_eq!(lp, p);
        let copy = found(&e, id(1), at);
        e.on_lookup_result(l, copy, t(10_201));
        let window = SummaryQuery {
            from: Some(at),
            to: Some(at),
        };
        assert_eq!(e.summary(&window).get(p).count, 1);
        assert_eq!(e.queue_depth() + e.in_flight(), 0);
    }

    #[test]
    fn timeout_then_not_found_resends_to_the_same_processor_with_the_same_timestamp() {
        let mut e = engine();
        e.submit(id(1), Cents(100), t(0));
        e.submit(id(2), Cents(100), t(0));
        let (a, p, _, at) = send(&mut e, t(0));
        e.on_send_result(a, SendResult::Unknown, t(10_000));
        // Make the other processor look better than `p`: the pinned payment must
        // still go back to `p`.
        let (l, lp, _) = lookup(&mut e, t(10_200));
        assert_eq!(lp, p);
        e.on_lookup_result(l, LookupResult::NotFound, t(10_210));
        let (r, rp, rid, rat) = send(&mut e, t(10_210));
        assert_eq!((rp, rid, rat), (p, id(1), at));
        // The resend fails (500): the first copy may still land, so stay pinned.
        e.on_send_result(r, SendResult::Failed, t(10_220));
        let mut now = 10_220;
        loop {
            now += 2_000;
            assert!(now < 20_000, "never resolved");
            match act(&mut e, t(now)) {
                Some(Action::Lookup {
                    attempt,
                    processor,
                    id: pid,
                }) => {
                    assert_eq!((processor, pid), (p, id(1)));
                    e.on_lookup_result(attempt, LookupResult::NotFound, t(now));
                }
                Some(Action::Send {
                    attempt,
                    processor,
                    id: pid,
                    requested_at,
                    ..
                }) => {
                    assert_eq!((processor, pid, requested_at), (p, id(1), at));
                    // Finally the original landed: the resend sees 422, and the
                    // copy is read.
                    e.on_send_result(attempt, SendResult::AlreadyStored, t(now));
                    let (l, lp, _) = lookup(&mut e, t(now));
                    assert_eq!(lp, p);
                    let copy = found(&e, id(1), at);
                    e.on_lookup_result(l, copy, t(now));
                    break;
                }
                None => panic!("pinned work must stay due"),
            }
        }
        let window = SummaryQuery {
            from: Some(at),
            to: Some(at),
        };
        assert_eq!(e.summary(&window).get(p).count, 1);
        // The other payment was free all along and goes out normally.
        let (a2, _, id2, _) = send(&mut e, t(now + 1));
        assert_eq!(id2, id(2));
        e.on_send_result(a2, SendResult::Stored, t(now + 2));
        let s = all(&e);
        assert_eq!(s.default.count + s.fallback.count, 2);
    }

    #[test]
    fn an_unknown_fate_binds_the_payment_to_its_processor_for_good() {
        // Found by the simulation (seed 21 before the fix): a "not found" believed
        // after a fixed settle time let the payment go to the other processor, and
        // the first request, held longer by its processor, landed too.
        let mut e = engine();
        e.submit(id(1), Cents(100), t(0));
        let (a, p, _, at) = send(&mut e, t(0));
        e.on_send_result(a, SendResult::Unknown, t(10_000));
        let mut now = 10_000;
        // However long it takes, and whatever the other processor looks like, only
        // lookups and resends with the same timestamp go to `p`.
        for _ in 0..200 {
            now += 2_000;
            match act(&mut e, t(now)) {
                Some(Action::Lookup {
                    attempt, processor, ..
                }) => {
                    assert_eq!(processor, p);
                    e.on_lookup_result(attempt, LookupResult::NotFound, t(now));
                }
                Some(Action::Send {
                    attempt,
                    processor,
                    requested_at,
                    ..
                }) => {
                    assert_eq!((processor, requested_at), (p, at));
                    e.on_send_result(attempt, SendResult::Failed, t(now));
                }
                None => {}
            }
        }
        assert_eq!(e.unknown_fates(t(now)).count, 1);
        assert!(e.unknown_fates(t(now)).oldest_age_us >= 400_000 * MS);
        // At last the first copy lands: the resend sees 422, the copy is read.
        let (r, rp, rat) = loop {
            now += 2_000;
            match act(&mut e, t(now)) {
                Some(Action::Send {
                    attempt,
                    processor,
                    requested_at,
                    ..
                }) => break (attempt, processor, requested_at),
                Some(Action::Lookup { attempt, .. }) => {
                    e.on_lookup_result(attempt, LookupResult::NotFound, t(now));
                }
                None => {}
            }
        };
        assert_eq!((rp, rat), (p, at));
        e.on_send_result(r, SendResult::AlreadyStored, t(now));
        let (l, lp, _) = lookup(&mut e, t(now));
        assert_eq!(lp, p);
        e.on_lookup_result(l, found(&e, id(1), at), t(now));
        assert_eq!(all(&e).get(p).count, 1);
        assert_eq!(e.unknown_fates(t(now)).count, 0);
    }

    #[test]
    fn lookup_errors_retry_the_lookup() {
        let mut e = engine();
        e.submit(id(1), Cents(100), t(0));
        let (a, _, _, _) = send(&mut e, t(0));
        e.on_send_result(a, SendResult::Unknown, t(1));
        let (l, _, _) = lookup(&mut e, t(1_000));
        e.on_lookup_result(l, LookupResult::Error, t(1_001));
        let (l, _, _) = lookup(&mut e, t(10_000));
        let copy = found(&e, id(1), wall(t(0)));
        e.on_lookup_result(l, copy, t(10_001));
        assert_eq!(all(&e).default.count + all(&e).fallback.count, 1);
    }

    #[test]
    fn purge_forgets_everything_and_ignores_late_results() {
        let mut e = engine();
        e.submit(id(1), Cents(100), t(0));
        e.submit(id(2), Cents(100), t(0));
        let (a, _, _, _) = send(&mut e, t(0));
        e.purge();
        e.on_send_result(a, SendResult::Stored, t(1));
        assert_eq!(all(&e), Summary::default());
        assert_eq!(e.queue_depth() + e.in_flight(), 0);
        assert_eq!(e.submit(id(1), Cents(100), t(0)), SubmitStatus::Accepted);
    }

    #[test]
    fn in_flight_cap_holds_work_back() {
        let mut e = Engine::new(EngineConfig {
            max_in_flight: [1, 1],
            ..EngineConfig::default()
        });
        for n in 0..3 {
            e.submit(id(n), Cents(1), t(0));
        }
        assert_eq!(send(&mut e, t(0)).1, D);
        assert_eq!(send(&mut e, t(0)).1, F);
        assert_eq!(act(&mut e, t(0)), None);
        assert_eq!(e.queue_depth(), 1);
    }

    #[test]
    fn wakeup_for_pinned_work() {
        let mut e = engine();
        assert_eq!(e.next_wakeup(t(0)), None);
        e.submit(id(1), Cents(1), t(0));
        let (a, _, _, _) = send(&mut e, t(0));
        e.on_send_result(a, SendResult::Unknown, t(100));
        assert_eq!(e.next_wakeup(t(100)), Some(t(300)));
        // Asked after `next_action` gave nothing, a due item is blocked by something
        // only an event changes: no wake-up in the past (that would spin).
        assert_eq!(e.next_wakeup(t(300)), None);
    }

    #[test]
    fn a_reused_id_with_another_amount_is_a_conflict_and_changes_nothing() {
        let mut e = engine();
        assert_eq!(e.submit(id(1), Cents(100), t(0)), SubmitStatus::Accepted);
        assert_eq!(e.submit(id(1), Cents(100), t(1)), SubmitStatus::Duplicate);
        assert_eq!(e.submit(id(1), Cents(101), t(2)), SubmitStatus::Conflict);
        let (a, p, _, _) = send(&mut e, t(3));
        e.on_send_result(a, SendResult::Stored, t(4));
        // Finished payments too.
        assert_eq!(e.submit(id(1), Cents(999), t(5)), SubmitStatus::Conflict);
        assert_eq!(e.submit(id(1), Cents(100), t(5)), SubmitStatus::Duplicate);
        assert_eq!(all(&e).get(p).amount, Cents(100));
        assert_eq!((e.counters.duplicates, e.counters.conflicts), (2, 2));
    }

    #[test]
    fn other_4xx_parks_the_payment_instead_of_retrying_it() {
        let mut e = engine();
        e.submit(id(1), Cents(100), t(0));
        let (a, p, _, _) = send(&mut e, t(0));
        let effect = e.on_send_result(a, SendResult::Rejected, t(1));
        assert_eq!(
            effect,
            Effect::Rejected {
                id: id(1),
                processor: p
            }
        );
        assert_eq!(e.queue_depth() + e.in_flight(), 0);
        assert_eq!(act(&mut e, t(10_000)), None, "never retried");
        assert_eq!(e.parked().len(), 1);
        assert_eq!(e.counters.rejected[p.index()], 1);
        assert_eq!(all(&e), Summary::default());
        // A 4XX says the processor is up.
        assert!(!e.view(p).failing());
        // The client retrying gets the earlier outcome, not a new payment.
        assert_eq!(e.submit(id(1), Cents(100), t(2)), SubmitStatus::Duplicate);
    }

    #[test]
    fn a_4xx_after_an_unknown_fate_keeps_the_payment_bound() {
        let mut e = engine();
        e.submit(id(1), Cents(100), t(0));
        let (a, p, _, at) = send(&mut e, t(0));
        e.on_send_result(a, SendResult::Unknown, t(10_000));
        let (l, _, _) = lookup(&mut e, t(10_200));
        e.on_lookup_result(l, LookupResult::NotFound, t(10_200));
        let (r, rp, _, _) = send(&mut e, t(10_200));
        assert_eq!(rp, p);
        e.on_send_result(r, SendResult::Rejected, t(10_201));
        assert!(e.parked().is_empty(), "the first request may still land");
        let (l, lp, _) = lookup(&mut e, t(20_000));
        assert_eq!(lp, p);
        e.on_lookup_result(l, found(&e, id(1), at), t(20_001));
        assert_eq!(all(&e).get(p).count, 1);
    }

    #[test]
    fn finished_ids_are_forgotten_after_the_retention() {
        let mut e = Engine::new(EngineConfig {
            dedup_retention_us: Some(60_000 * MS),
            ..EngineConfig::default()
        });
        e.submit(id(1), Cents(100), t(0));
        e.submit(id(2), Cents(100), t(0));
        let (a, _, _, _) = send(&mut e, t(0));
        e.on_send_result(a, SendResult::Stored, t(1));
        // id 2 is still pending at the end of the retention: it stays known.
        assert_eq!(
            e.submit(id(1), Cents(100), t(59_000)),
            SubmitStatus::Duplicate
        );
        assert_eq!(
            e.submit(id(1), Cents(100), t(61_001)),
            SubmitStatus::Accepted
        );
        assert_eq!(
            e.submit(id(2), Cents(100), t(61_002)),
            SubmitStatus::Duplicate
        );
        assert_eq!(e.counters.forgotten, 1);
        // The summary keeps what was recorded.
        assert_eq!(all(&e).default.count + all(&e).fallback.count, 1);
    }

    #[test]
    fn a_huge_min_response_time_saturates() {
        let v = view(Some(false), u64::MAX, None);
        assert_eq!(v.expected_latency_us(t(0)), i64::MAX);
        let cfg = EngineConfig::default();
        assert_eq!(
            route(&[v, view(Some(false), 0, None)], &cfg, t(0)),
            Route::To(F)
        );
    }
}
