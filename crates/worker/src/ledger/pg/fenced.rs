//! What a worker does with the ledger's answers about its own writes: accepts refused
//! (logged once per change), sends the fence refused (dropped, forgotten, looked up
//! again by the upkeep) and sends whose write failed (held back).

use super::*;

impl PgLedger {
    /// Logs a change between accepting and refusing (`why`), once per change.
    pub(super) fn refusing_accepts(&self, why: Option<&LedgerError>) {
        match why {
            Some(e) if !self.refusing.swap(true, Ordering::Relaxed) => {
                tracing::warn!("payments refused (503) until the ledger answers: {e}");
            }
            None if self.refusing.swap(false, Ordering::Relaxed) => {
                tracing::info!("payments accepted again");
            }
            _ => {}
        }
    }

    /// Drops the sends the fence refused (not this incarnation's any more: they never
    /// leave) and keeps the rest of `out`.
    pub(super) fn drop_refused(
        &self,
        e: &mut Engine,
        out: &mut Vec<Action>,
        owned: &std::collections::HashSet<Uuid>,
    ) {
        let mut refused = Vec::new();
        out.retain(|a| match *a {
            Action::Send { id, attempt, .. } if !owned.contains(&id) => {
                e.forget(&id, Some(attempt));
                self.stats.refused_sends.fetch_add(1, Ordering::Relaxed);
                refused.push(id);
                false
            }
            _ => true,
        });
        // A takeover by this worker may have made a refused one its own again while
        // the send was being fenced (its restore found the payment still here): the
        // upkeep looks the rows up.
        self.doubt(refused);
    }

    /// Gives back every action of `out` whose write failed: nothing leaves.
    pub(super) fn hold_back(
        &self,
        e: &mut Engine,
        out: &mut Vec<Action>,
        incarnation: Uuid,
        err: &LedgerError,
    ) {
        tracing::warn!("sends held back: {err}");
        let now = self.clock.now();
        let effects: Vec<Effect> = out
            .drain(..)
            .map(|a| match a {
                Action::Send { attempt, .. } => e.on_send_result(attempt, SendResult::NotSent, now),
                Action::Lookup { attempt, .. } => {
                    e.on_lookup_result(attempt, LookupResult::Error, now)
                }
            })
            .collect();
        self.queue_effects(&effects, incarnation);
    }
}
