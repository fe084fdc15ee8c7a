//! The outcome state machine: what each answer of a processor does to its payment
//! (the table in ARCHITECTURE.md), and how a payment bound to a processor is resolved
//! there.

use super::*;

impl Engine {
    /// A payment bound to `p` is due: read the processor's copy when it claims one,
    /// else alternate a lookup and a resend with the same `requestedAt` (safe: one of
    /// two copies gets 422), until `p` says what it holds.
    pub(super) fn resolve_bound(&mut self, id: Uuid, p: Processor, now: Mono) -> Action {
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
    fn record(&mut self, id: Uuid, p: Processor, copy: StoredCopy) -> Effect {
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
        self.finish_payment(id);
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
                self.record(a.id, p, copy)
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
                self.finish_payment(a.id);
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
            LookupResult::Found(copy) => self.record(a.id, p, copy),
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
}
