//! What the shared ledger adds to `/health` and `/metrics`.

use super::*;

impl PgLedger {
    pub(super) fn health_json_of(&self) -> serde_json::Value {
        serde_json::json!({
            "kind": "postgres",
            "worker": self.me().to_string(),
            "name": self.cfg.name,
            "polls_health": {
                "default": self.polls[0].load(Ordering::Relaxed),
                "fallback": self.polls[1].load(Ordering::Relaxed),
            },
            "taken_over": self.stats.taken_over.load(Ordering::Relaxed),
            "refused_sends": self.stats.refused_sends.load(Ordering::Relaxed),
            "leases_lost": self.stats.leases_lost.load(Ordering::Relaxed),
        })
    }

    pub(super) fn metrics_of(&self, x: &mut Exposition) {
        let w = &self.writer_stats;
        let counters: [(&str, &str, u64); 8] = [
            (
                "payroute_ledger_transactions_total",
                "Transactions committed by the ledger's writer.",
                w.transactions.load(Ordering::Relaxed),
            ),
            (
                "payroute_ledger_statements_total",
                "SQL statements run by the writer and the accept path.",
                w.statements.load(Ordering::Relaxed)
                    + self.stats.accept_statements.load(Ordering::Relaxed),
            ),
            (
                "payroute_ledger_facts_total",
                "Facts (sends, outcomes) committed.",
                w.facts.load(Ordering::Relaxed),
            ),
            (
                "payroute_ledger_write_failures_total",
                "Writer transactions that failed (outcomes retried, sends held back).",
                w.failures.load(Ordering::Relaxed),
            ),
            (
                "payroute_ledger_taken_over_total",
                "Payments taken over from workers whose lease lapsed.",
                self.stats.taken_over.load(Ordering::Relaxed),
            ),
            (
                "payroute_ledger_refused_sends_total",
                "Sends refused by the fence (the payment was no longer this worker's).",
                self.stats.refused_sends.load(Ordering::Relaxed),
            ),
            (
                "payroute_ledger_leases_lost_total",
                "Times this worker's lease lapsed.",
                self.stats.leases_lost.load(Ordering::Relaxed),
            ),
            (
                "payroute_log_write_errors_total",
                "Failed writes of the ledger (each refused or held back what it carried).",
                w.failures.load(Ordering::Relaxed),
            ),
        ];
        for (name, help, v) in counters {
            x.family(name, "counter", help).sample(name, "", v as f64);
        }
    }
}
