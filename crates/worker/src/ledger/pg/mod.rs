//! [`PgLedger`]: PostgreSQL shared by several workers on several hosts.
//!
//! The database is the source of truth: a correlationId is accepted once (primary
//! key, `ON CONFLICT DO NOTHING`), each pending payment is owned by one worker
//! incarnation, the summary is one SQL aggregate over recorded payments. Each worker's
//! engine holds only the payments it owns.
//!
//! The ownership protocol:
//! - A worker incarnation (a random id, new at each start and after a lost lease)
//!   renews its lease every second (`payroute_workers.lease_until`, the database's
//!   clock). A payment it accepts is its own.
//! - Every send, resends included, follows a committed write (the writer, `writer.rs`)
//!   that records the processor and `requestedAt` and checks, in the same statement,
//!   that the row is still this incarnation's and its lease valid. A send refused so is
//!   dropped from the engine: it never leaves.
//! - A worker whose lease has lapsed (a pause, a lost network) forgets everything it
//!   held and starts a new incarnation. Payments whose owner's lease has lapsed are
//!   taken over (`FOR UPDATE SKIP LOCKED`, oldest first) by any live worker, with the
//!   timestamps already sent: the engine resumes them through the unknown-fate rules,
//!   on the processor already chosen.
//! - One health poller per processor for the deployment: a lease row per processor;
//!   its holder polls and publishes, everyone reads.
//! - A purge empties the table and bumps a generation every worker watches.
//!
//! The remaining risk is a paused process's request already in flight: it may land
//! after a takeover. It can only land at the processor recorded for it, with the same
//! `requestedAt`, which the new owner resolves there (one copy gets 422).

mod db;
mod fenced;
mod observe;
mod schema;
mod upkeep;
mod writer;

use super::{Clock, Ledger, LedgerError};
use crate::engine::{
    Action, AttemptId, Effect, Engine, EngineConfig, HealthReport, LookupResult, SendResult,
};
use db::{err, Db};
use ipc::SubmitStatus;
use model::metrics::Exposition;
use model::{Cents, Micros, Mono, Processor, Summary, SummaryQuery, Totals};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;
use writer::{Fact, Job, WriterStats};

/// Settings of the shared ledger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgConfig {
    /// `postgres://user:password@host:port/database`.
    pub url: String,
    /// This worker's name, for operators (`payroute_workers.name`); a restart under the
    /// same name lets its previous incarnation's payments be taken over at once.
    pub name: String,
    /// A worker that has not renewed its lease for this long loses its payments.
    pub lease: Duration,
}

impl PgConfig {
    pub fn new(url: &str, name: &str) -> PgConfig {
        PgConfig {
            url: url.to_string(),
            name: name.to_string(),
            // Renewed every second: five missed renewals (a long GC-free pause, a
            // network cut) before a survivor may take over.
            lease: Duration::from_secs(5),
        }
    }
}

/// How often the heartbeat, the takeover, the health lease and the purge generation
/// are looked at (the upkeep runs every 200 ms; these have their own pace).
const HEARTBEAT_EVERY: i64 = 1_000_000;
/// Payments taken over per round at most.
const TAKEOVER_BATCH: i64 = 5_000;

/// What the upkeep remembers between rounds.
#[derive(Debug, Default)]
struct Upkeep {
    last_heartbeat: Option<Mono>,
    purge_gen: i64,
    health_seq: [i64; 2],
}

/// Counts for `/metrics`.
#[derive(Debug, Default)]
struct Stats {
    taken_over: AtomicU64,
    refused_sends: AtomicU64,
    leases_lost: AtomicU64,
    accept_statements: AtomicU64,
}

/// See the module docs.
pub struct PgLedger {
    cfg: PgConfig,
    engine: Mutex<Engine>,
    engine_cfg: EngineConfig,
    /// This worker's current incarnation.
    me: Mutex<Uuid>,
    /// Accepts, the summary, the upkeep.
    db: Db,
    writer: mpsc::UnboundedSender<Job>,
    writer_stats: Arc<WriterStats>,
    upkeep: tokio::sync::Mutex<Upkeep>,
    polls: [AtomicBool; 2],
    /// Why the ledger is unreachable, while it is.
    problem: Mutex<Option<String>>,
    /// Ids this worker may own without its engine knowing, looked up by the upkeep:
    /// accept statements that failed without an answer (they may have committed), and
    /// sends the fence refused (a takeover by this same worker may have raced the
    /// refusal: the row is this incarnation's, the engine forgot it).
    doubtful: Mutex<Vec<Uuid>>,
    /// Accepts are being refused (logged once per change, not per request).
    refusing: AtomicBool,
    stats: Stats,
    clock: Clock,
}

impl PgLedger {
    /// Connects, creates the tables if missing and registers this worker. Must run on
    /// the runtime that will run the writer.
    pub async fn open(
        cfg: PgConfig,
        engine_cfg: EngineConfig,
        clock: Clock,
    ) -> Result<PgLedger, LedgerError> {
        let setup = db::connect(&cfg.url, "setup").await?;
        setup
            // Quiet: "relation already exists, skipping" is the normal case.
            .batch_execute("SET client_min_messages = warning; SELECT pg_advisory_lock(72737001);")
            .await
            .map_err(err("locking the schema"))?;
        let created = setup.batch_execute(schema::DDL).await;
        let _ = setup
            .batch_execute("SELECT pg_advisory_unlock(72737001)")
            .await;
        created.map_err(err("creating the tables"))?;
        let version: i64 = setup
            .query_one("SELECT schema FROM payroute_meta", &[])
            .await
            .map_err(err("reading the schema version"))?
            .get(0);
        if version != schema::SCHEMA_VERSION {
            return Err(LedgerError(format!(
                "the database holds payroute's tables in version {version}; this payroute \
                 knows version {}",
                schema::SCHEMA_VERSION
            )));
        }
        let (tx, rx) = mpsc::unbounded_channel();
        let writer_stats = Arc::new(WriterStats::default());
        tokio::spawn(writer::run(
            Db::new(&cfg.url, "writer"),
            rx,
            writer_stats.clone(),
        ));
        let ledger = PgLedger {
            engine: Mutex::new(Engine::new(engine_cfg.clone())),
            engine_cfg,
            me: Mutex::new(Uuid::new_v4()),
            db: Db::new(&cfg.url, "main"),
            writer: tx,
            writer_stats,
            upkeep: tokio::sync::Mutex::new(Upkeep::default()),
            polls: [AtomicBool::new(false), AtomicBool::new(false)],
            problem: Mutex::new(None),
            doubtful: Mutex::new(Vec::new()),
            refusing: AtomicBool::new(false),
            stats: Stats::default(),
            clock,
            cfg,
        };
        ledger.register().await?;
        let gen = ledger.purge_gen().await?;
        ledger.upkeep.lock().await.purge_gen = gen;
        tracing::info!(
            worker = %ledger.me(),
            name = %ledger.cfg.name,
            "registered with the shared ledger (PostgreSQL)"
        );
        Ok(ledger)
    }

    fn engine(&self) -> MutexGuard<'_, Engine> {
        self.engine.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn me(&self) -> Uuid {
        *self.me.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers the current incarnation with a fresh lease, and ends the lease of
    /// earlier incarnations of the same name (they are this process's past: dead).
    async fn register(&self) -> Result<(), LedgerError> {
        let me = self.me();
        let lease = self.cfg.lease.as_millis() as f64 / 1000.0;
        let c = self.db.client().await?;
        c.execute(
            "INSERT INTO payroute_workers (id, name, lease_until) \
             VALUES ($1, $2, now() + make_interval(secs => $3))",
            &[&me, &self.cfg.name, &lease],
        )
        .await
        .map_err(err("registering the worker"))?;
        c.execute(
            "UPDATE payroute_workers SET lease_until = now() WHERE name = $1 AND id <> $2 \
             AND lease_until > now()",
            &[&self.cfg.name, &me],
        )
        .await
        .map_err(err("ending earlier incarnations"))?;
        Ok(())
    }

    async fn purge_gen(&self) -> Result<i64, LedgerError> {
        let c = self.db.client().await?;
        let row = c
            .query_one("SELECT purge_gen FROM payroute_meta", &[])
            .await
            .map_err(err("reading the purge generation"))?;
        Ok(row.get(0))
    }

    /// Queues the engine's effects as facts, in the engine's order (called under the
    /// engine's lock, so the queue's order is the engine's).
    fn queue_effects(&self, effects: &[Effect], incarnation: Uuid) {
        let facts: Vec<Fact> = effects.iter().filter_map(|e| fact_of(*e)).collect();
        if !facts.is_empty() {
            let _ = self.writer.send(Job {
                incarnation,
                facts,
                reply: None,
            });
        }
    }
}

/// The fact an engine effect makes durable, if any.
fn fact_of(e: Effect) -> Option<Fact> {
    match e {
        Effect::None => None,
        Effect::Recorded {
            id,
            processor,
            requested_at,
            amount,
        } => Some(Fact::Recorded {
            id,
            processor,
            requested_at,
            amount,
        }),
        Effect::Released { id, processor } => Some(Fact::Released { id, processor }),
        Effect::Rejected { id, processor } => Some(Fact::Rejected { id, processor }),
    }
}

/// Inserts a batch of payments; `None` where the id was there already.
const ACCEPT: &str = "
INSERT INTO payroute_payments (id, amount, owner, seq)
SELECT u.id, u.amount, $3, nextval('payroute_payments_seq')
FROM UNNEST($1::uuid[], $2::int8[]) WITH ORDINALITY AS u(id, amount, ord)
ORDER BY u.ord
ON CONFLICT (id) DO NOTHING
RETURNING id";

impl Ledger for PgLedger {
    async fn submit(&self, batch: &[(Uuid, Cents)]) -> Vec<SubmitStatus> {
        let room = {
            let e = self.engine();
            self.engine_cfg
                .queue_capacity
                .saturating_sub(e.queue_depth())
        };
        let take = batch.len().min(room);
        let mut out = vec![SubmitStatus::QueueFull; batch.len()];
        if take == 0 {
            return out;
        }
        let me = self.me();
        let (ids, amounts): (Vec<Uuid>, Vec<i64>) =
            batch[..take].iter().map(|(id, a)| (*id, a.0)).unzip();
        let inserted = async {
            let c = self.db.client().await?;
            self.stats.accept_statements.fetch_add(1, Ordering::Relaxed);
            let rows = c
                .query(ACCEPT, &[&ids, &amounts, &me])
                .await
                .map_err(err("accepting payments"))?;
            let new: std::collections::HashSet<Uuid> = rows.iter().map(|r| r.get(0)).collect();
            let known: HashMap<Uuid, i64> = if new.len() < ids.len() {
                self.stats.accept_statements.fetch_add(1, Ordering::Relaxed);
                c.query(
                    "SELECT id, amount FROM payroute_payments WHERE id = ANY($1)",
                    &[&ids],
                )
                .await
                .map_err(err("reading known payments"))?
                .iter()
                .map(|r| (r.get(0), r.get(1)))
                .collect()
            } else {
                HashMap::new()
            };
            Ok::<_, LedgerError>((new, known))
        };
        let (mut new, known) = match inserted.await {
            Ok(r) => r,
            Err(e) => {
                self.refusing_accepts(Some(&e));
                // The statement may have committed and only its answer been lost: the
                // upkeep looks these ids up and adopts what is this worker's.
                self.doubt(ids);
                out[..take].fill(SubmitStatus::Unavailable);
                return out;
            }
        };
        self.refusing_accepts(None);
        let mut e = self.engine();
        let now = self.clock.now();
        for (k, &(id, amount)) in batch[..take].iter().enumerate() {
            out[k] = if new.remove(&id) {
                e.adopt(id, amount, now);
                SubmitStatus::Accepted
            } else {
                match known.get(&id) {
                    Some(&a) if a == amount.0 => {
                        e.counters.duplicates += 1;
                        SubmitStatus::Duplicate
                    }
                    Some(_) => {
                        e.counters.conflicts += 1;
                        SubmitStatus::Conflict
                    }
                    // Gone between the two statements (a purge): the client retries.
                    None => SubmitStatus::Unavailable,
                }
            };
        }
        out
    }

    async fn take_actions(&self, max: usize, out: &mut Vec<Action>) -> Option<Mono> {
        let (wake_at, reply, incarnation) = {
            let mut e = self.engine();
            let now = self.clock.now();
            let wall = Micros::now();
            while out.len() < max {
                match e.next_action(now, wall) {
                    Some(a) => out.push(a),
                    None => break,
                }
            }
            let facts: Vec<Fact> = out
                .iter()
                .filter_map(|a| match *a {
                    Action::Send {
                        id,
                        processor,
                        requested_at,
                        ..
                    } => Some(Fact::Sent {
                        id,
                        processor,
                        requested_at,
                    }),
                    Action::Lookup { .. } => None,
                })
                .collect();
            let incarnation = self.me();
            let reply = (!facts.is_empty()).then(|| {
                let (tx, rx) = oneshot::channel();
                let _ = self.writer.send(Job {
                    incarnation,
                    facts,
                    reply: Some(tx),
                });
                rx
            });
            (e.next_wakeup(now), reply, incarnation)
        };
        let Some(reply) = reply else {
            return wake_at;
        };
        let answer = reply
            .await
            .unwrap_or_else(|_| Err(LedgerError("the writer stopped".into())));
        let mut e = self.engine();
        if self.me() != incarnation {
            // The lease lapsed while the write ran: the engine was emptied, and nothing
            // decided before leaves (a send whose `Sent` did commit is resolved by its
            // new owner at that processor, as an unknown fate). Acting on the answer
            // would forget payments the new incarnation has taken over since.
            out.clear();
            return wake_at;
        }
        match answer {
            Ok(owned) => self.drop_refused(&mut e, out, &owned),
            Err(err) => self.hold_back(&mut e, out, incarnation, &err),
        }
        wake_at
    }

    async fn on_send_result(
        &self,
        attempt: AttemptId,
        processor: Processor,
        result: SendResult,
    ) -> bool {
        let mut e = self.engine();
        let was_failing = e.view(processor).failing();
        let effect = e.on_send_result(attempt, result, self.clock.now());
        self.queue_effects(&[effect], self.me());
        e.view(processor).failing() != was_failing
    }

    async fn on_lookup_result(&self, attempt: AttemptId, result: LookupResult) {
        let mut e = self.engine();
        let effect = e.on_lookup_result(attempt, result, self.clock.now());
        self.queue_effects(&[effect], self.me());
    }

    async fn summary(&self, q: SummaryQuery) -> Result<Summary, LedgerError> {
        let c = self.db.client().await?;
        let rows = c
            .query(
                "SELECT processor, count(*), coalesce(sum(recorded_amount), 0)::int8
                 FROM payroute_payments
                 WHERE state = 1
                   AND ($1::int8 IS NULL OR requested_at >= $1)
                   AND ($2::int8 IS NULL OR requested_at <= $2)
                 GROUP BY processor",
                &[&q.from.map(|t| t.0), &q.to.map(|t| t.0)],
            )
            .await
            .map_err(err("reading the summary"))?;
        let mut s = Summary::default();
        for r in rows {
            let t = Totals {
                count: r.get::<_, i64>(1) as u64,
                amount: Cents(r.get(2)),
            };
            match Processor::from_index(r.get::<_, i16>(0) as u8) {
                Some(Processor::Default) => s.default = t,
                Some(Processor::Fallback) => s.fallback = t,
                None => {}
            }
        }
        Ok(s)
    }

    async fn purge(&self) -> Result<(), LedgerError> {
        let c = self.db.client().await?;
        let rows = c
            .simple_query(
                "TRUNCATE payroute_payments; \
                 UPDATE payroute_meta SET purge_gen = purge_gen + 1 RETURNING purge_gen",
            )
            .await
            .map_err(err("purging"))?;
        let gen = rows
            .iter()
            .find_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0)?.parse::<i64>().ok(),
                _ => None,
            })
            .unwrap_or(0);
        self.engine().purge(self.clock.now());
        self.upkeep.lock().await.purge_gen = gen;
        Ok(())
    }

    async fn polls_health(&self, p: Processor) -> bool {
        self.polls[p.index()].load(Ordering::Relaxed)
    }

    async fn on_health(&self, p: Processor, report: HealthReport) {
        self.engine().on_health(p, report, self.clock.now());
        let published = async {
            let c = self.db.client().await?;
            c.execute(
                "INSERT INTO payroute_health (processor, failing, min_response_time_ms, seq)
                 VALUES ($1, $2, $3, 1)
                 ON CONFLICT (processor) DO UPDATE SET failing = EXCLUDED.failing,
                     min_response_time_ms = EXCLUDED.min_response_time_ms,
                     seq = payroute_health.seq + 1",
                &[
                    &(p.index() as i16),
                    &report.failing,
                    &(report.min_response_time_ms.min(i64::MAX as u64) as i64),
                ],
            )
            .await
            .map_err(err("publishing a health poll"))
        };
        if let Err(e) = published.await {
            tracing::warn!("{e}");
        }
    }

    async fn upkeep(&self) -> bool {
        let mut up = self.upkeep.lock().await;
        let round = self.upkeep_round(&mut up).await;
        let mut problem = self.problem.lock().unwrap_or_else(|e| e.into_inner());
        match round {
            Ok(news) => {
                if problem.take().is_some() {
                    tracing::info!("PostgreSQL answers again");
                }
                news
            }
            Err(e) => {
                if problem.is_none() {
                    tracing::error!("the shared ledger is unreachable: {e}");
                }
                *problem = Some(e.0);
                false
            }
        }
    }

    fn with_engine<R>(&self, f: impl FnOnce(&Engine) -> R) -> R {
        f(&self.engine())
    }

    fn health_json(&self) -> serde_json::Value {
        self.health_json_of()
    }

    fn problem(&self) -> Option<String> {
        self.problem
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .map(|p| format!("the shared ledger is unreachable ({p})"))
    }

    fn metrics(&self, x: &mut Exposition) {
        self.metrics_of(x);
    }

    fn clock(&self) -> &Clock {
        &self.clock
    }
}
