//! The writer: one task that commits the engine's facts (a send's timestamp, an
//! outcome) to the shared ledger in the order the engine produced them, grouped into
//! one transaction per turn. Order matters per payment: "nothing of it can be stored
//! at P" must never overwrite a later "sent to P", so everything goes through this one
//! queue. Sends are fenced: the row must still be this worker incarnation's and its
//! lease valid, or the send may not leave.
//!
//! Outcomes are retried until committed (the summary is read from the database, and
//! what a processor stored must be counted); sends are answered at once, committed or
//! not, and the caller undoes those that were refused.

use super::super::LedgerError;
use super::db::{err, Db};
use model::{Cents, Micros, Processor};
use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

/// One fact of a payment's life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Fact {
    Sent {
        id: Uuid,
        processor: Processor,
        requested_at: Micros,
    },
    Released {
        id: Uuid,
        processor: Processor,
    },
    Recorded {
        id: Uuid,
        processor: Processor,
        requested_at: Micros,
        amount: Cents,
    },
    Rejected {
        id: Uuid,
        processor: Processor,
    },
}

/// Facts of one step, with the incarnation that owned the payments then; the answer
/// (the sends that may leave) when asked for.
pub(super) struct Job {
    pub(super) incarnation: Uuid,
    pub(super) facts: Vec<Fact>,
    pub(super) reply: Option<oneshot::Sender<Result<HashSet<Uuid>, LedgerError>>>,
}

/// Counts for `/metrics`.
#[derive(Debug, Default)]
pub(super) struct WriterStats {
    pub(super) transactions: AtomicU64,
    pub(super) statements: AtomicU64,
    pub(super) facts: AtomicU64,
    pub(super) failures: AtomicU64,
}

/// Facts per transaction at most: a burst is cut into transactions of bounded size.
const MAX_FACTS: usize = 4096;
/// After a failed transaction, before retrying the outcomes it carried.
const RETRY_PAUSE: Duration = Duration::from_millis(200);

/// Runs the writer until every sender is gone.
pub(super) async fn run(db: Db, mut rx: mpsc::UnboundedReceiver<Job>, stats: Arc<WriterStats>) {
    // Outcomes of failed transactions, first in line for the next one.
    let mut retry: Vec<Job> = Vec::new();
    loop {
        let mut group: Vec<Job> = std::mem::take(&mut retry);
        if group.is_empty() {
            match rx.recv().await {
                Some(job) => group.push(job),
                None => return,
            }
        }
        let mut n: usize = group.iter().map(|j| j.facts.len()).sum();
        while n < MAX_FACTS {
            match rx.try_recv() {
                Ok(job) => {
                    n += job.facts.len();
                    group.push(job);
                }
                Err(_) => break,
            }
        }
        match commit(&db, &group, &stats).await {
            Ok(owned) => {
                for job in group {
                    if let Some(reply) = job.reply {
                        let mine: HashSet<Uuid> = job
                            .facts
                            .iter()
                            .filter_map(|f| match f {
                                Fact::Sent { id, .. }
                                    if owned.contains(&(job.incarnation, *id)) =>
                                {
                                    Some(*id)
                                }
                                _ => None,
                            })
                            .collect();
                        let _ = reply.send(Ok(mine));
                    }
                }
            }
            Err(e) => {
                stats.failures.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    "writing to PostgreSQL failed ({n} facts): {e}; retrying the outcomes"
                );
                for mut job in group {
                    if let Some(reply) = job.reply.take() {
                        let _ = reply.send(Err(LedgerError(e.0.clone())));
                    }
                    // Sends were refused (the caller undoes them); outcomes are facts
                    // and must reach the database.
                    job.facts.retain(|f| !matches!(f, Fact::Sent { .. }));
                    if !job.facts.is_empty() {
                        retry.push(job);
                    }
                }
                tokio::time::sleep(RETRY_PAUSE).await;
            }
        }
    }
}

/// Columns of one statement, gathered from a group of facts.
#[derive(Default)]
struct Columns {
    ids: Vec<Uuid>,
    owners: Vec<Uuid>,
    procs: Vec<i16>,
    times: Vec<i64>,
    amounts: Vec<i64>,
}

impl Columns {
    fn push(&mut self, id: Uuid, owner: Uuid, p: Processor, time: i64, amount: i64) {
        self.ids.push(id);
        self.owners.push(owner);
        self.procs.push(p.index() as i16);
        self.times.push(time);
        self.amounts.push(amount);
    }
}

const RELEASE: &str = "
UPDATE payroute_payments p SET
    sent_default  = CASE WHEN u.proc = 0 THEN NULL ELSE p.sent_default END,
    sent_fallback = CASE WHEN u.proc = 1 THEN NULL ELSE p.sent_fallback END
FROM UNNEST($1::uuid[], $2::uuid[], $3::int2[]) AS u(id, owner, proc)
WHERE p.id = u.id AND p.owner = u.owner AND p.state = 0";

const RECORD: &str = "
UPDATE payroute_payments p SET
    state = 1, processor = u.proc, requested_at = u.at, recorded_amount = u.amount
FROM UNNEST($1::uuid[], $2::int2[], $3::int8[], $4::int8[]) AS u(id, proc, at, amount)
WHERE p.id = u.id AND p.state = 0";

const REJECT: &str = "
UPDATE payroute_payments p SET state = 2, processor = u.proc
FROM UNNEST($1::uuid[], $2::int2[]) AS u(id, proc)
WHERE p.id = u.id AND p.state = 0";

const SEND: &str = "
UPDATE payroute_payments p SET
    sent_default  = CASE WHEN u.proc = 0 THEN u.at ELSE p.sent_default END,
    sent_fallback = CASE WHEN u.proc = 1 THEN u.at ELSE p.sent_fallback END
FROM UNNEST($1::uuid[], $2::uuid[], $3::int2[], $4::int8[]) AS u(id, owner, proc, at)
WHERE p.id = u.id AND p.owner = u.owner AND p.state = 0
  AND EXISTS (SELECT 1 FROM payroute_workers w WHERE w.id = u.owner AND w.lease_until > now())
RETURNING p.id, p.owner";

/// The four statements' columns of a group, in the order they run.
#[derive(Default)]
struct Group {
    released: Columns,
    recorded: Columns,
    rejected: Columns,
    sent: Columns,
    facts: u64,
}

impl Group {
    fn of(jobs: &[Job]) -> Group {
        let mut g = Group::default();
        for job in jobs {
            let me = job.incarnation;
            for f in &job.facts {
                g.facts += 1;
                match *f {
                    Fact::Released { id, processor } => g.released.push(id, me, processor, 0, 0),
                    Fact::Recorded {
                        id,
                        processor,
                        requested_at,
                        amount,
                    } => g.recorded.push(id, me, processor, requested_at.0, amount.0),
                    Fact::Rejected { id, processor } => g.rejected.push(id, me, processor, 0, 0),
                    Fact::Sent {
                        id,
                        processor,
                        requested_at,
                    } => g.sent.push(id, me, processor, requested_at.0, 0),
                }
            }
        }
        g
    }
}

/// Commits a group in one transaction: outcomes first (each is older than any send of
/// the same payment in the group), then the fenced sends. Returns the (owner, id) of
/// the sends that may leave.
async fn commit(
    db: &Db,
    jobs: &[Job],
    stats: &WriterStats,
) -> Result<HashSet<(Uuid, Uuid)>, LedgerError> {
    let g = Group::of(jobs);
    let client = db.client().await?;
    client
        .batch_execute("BEGIN")
        .await
        .map_err(err("beginning a transaction"))?;
    match statements(&client, &g).await {
        Ok((owned, statements)) => {
            client
                .batch_execute("COMMIT")
                .await
                .map_err(err("committing"))?;
            stats.transactions.fetch_add(1, Ordering::Relaxed);
            stats
                .statements
                .fetch_add(statements + 2, Ordering::Relaxed);
            stats.facts.fetch_add(g.facts, Ordering::Relaxed);
            Ok(owned)
        }
        Err(e) => {
            let _ = client.batch_execute("ROLLBACK").await;
            Err(e)
        }
    }
}

/// The group's statements, inside its transaction. Returns the owned sends and how
/// many statements ran.
async fn statements(
    client: &tokio_postgres::Client,
    g: &Group,
) -> Result<(HashSet<(Uuid, Uuid)>, u64), LedgerError> {
    let mut n = 0u64;
    if !g.released.ids.is_empty() {
        n += 1;
        let r = &g.released;
        client
            .execute(RELEASE, &[&r.ids, &r.owners, &r.procs])
            .await
            .map_err(err("writing released timestamps"))?;
    }
    if !g.recorded.ids.is_empty() {
        n += 1;
        let r = &g.recorded;
        client
            .execute(RECORD, &[&r.ids, &r.procs, &r.times, &r.amounts])
            .await
            .map_err(err("writing recorded payments"))?;
    }
    if !g.rejected.ids.is_empty() {
        n += 1;
        let r = &g.rejected;
        client
            .execute(REJECT, &[&r.ids, &r.procs])
            .await
            .map_err(err("writing rejected payments"))?;
    }
    let mut owned = HashSet::new();
    if !g.sent.ids.is_empty() {
        n += 1;
        let r = &g.sent;
        let rows = client
            .query(SEND, &[&r.ids, &r.owners, &r.procs, &r.times])
            .await
            .map_err(err("writing the sends' timestamps"))?;
        for row in rows {
            owned.insert((row.get::<_, Uuid>(1), row.get::<_, Uuid>(0)));
        }
    }
    Ok((owned, n))
}
