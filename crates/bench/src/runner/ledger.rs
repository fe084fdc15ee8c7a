//! The bench's own connection to the workers' shared ledger ([`LedgerProbe`]): it reads
//! PostgreSQL's counters before and after the test (WAL position, `pg_stat_database`)
//! and, after a kill, polls the payments a dead worker left.
//!
//! Its statements are prepared once, when it connects (a prepare is a transaction of
//! its own), then each runs on its own (autocommit: one transaction each), and the
//! probe counts those that committed, so that the figures can leave the bench's own
//! transactions out. PostgreSQL publishes a backend's statistics at most once a second
//! (when it goes idle, PostgreSQL 15's cumulative statistics), so a reading first asks
//! for the bench's own to be flushed (`pg_stat_force_next_flush()`, PostgreSQL 15 and
//! later; ignored before), and the reading after the test first waits [`STATS_SETTLE`]
//! for the workers' to be.

use crate::scaled::{DbCounters, KillPoll};
use anyhow::Context;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::OnceCell;
use tokio_postgres::types::ToSql;
use tokio_postgres::{NoTls, Row, Statement};
use uuid::Uuid;

/// Bound of the connection to the ledger.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Bound of one statement: a poll every 100 ms must not pile up behind a stuck one.
const STATEMENT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long the reading after the test waits for every backend's statistics to be
/// published: PostgreSQL publishes them at most once a second, and within a second of
/// a backend going idle.
pub const STATS_SETTLE: Duration = Duration::from_millis(1500);

/// The counters: the WAL position in bytes and the ledger database's statistics.
const COUNTERS: &str = "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::int8, \
     xact_commit, xact_rollback, tup_inserted, tup_updated, tup_deleted, tup_fetched \
     FROM pg_stat_database WHERE datname = current_database()";

/// The live incarnation of a worker by name (the latest one whose lease holds).
const INCARNATION: &str = "SELECT id FROM payroute_workers WHERE name = $1 \
     AND lease_until > now() ORDER BY started DESC LIMIT 1";

/// The pending payments an incarnation owns.
const OWNED: &str = "SELECT id FROM payroute_payments WHERE state = 0 AND owner = $1";

/// One poll after a kill: pending payments whose owner's lease has lapsed (anyone's
/// orphans), and those of the given ids still pending.
const POLL: &str = "SELECT \
     (SELECT count(*) FROM payroute_payments p WHERE p.state = 0 AND NOT EXISTS \
       (SELECT 1 FROM payroute_workers w WHERE w.id = p.owner AND w.lease_until > now())), \
     (SELECT count(*) FROM payroute_payments WHERE state = 0 AND id = ANY($1))";

/// A connection to the ledger.
pub struct LedgerProbe {
    client: tokio_postgres::Client,
    connection: tokio::task::JoinHandle<()>,
    /// Executions that committed.
    commits: AtomicU64,
    /// `pg_stat_force_next_flush()`, where the server has it (PostgreSQL 15 and later).
    flush: Option<Statement>,
    counters: Statement,
    /// The statements on payroute's tables, prepared when first needed (a database
    /// given by URL may not hold them yet when the probe connects).
    incarnation: OnceCell<Statement>,
    owned: OnceCell<Statement>,
    poll: OnceCell<Statement>,
}

impl LedgerProbe {
    /// Connects to `url` (a `postgres://` URL, as the workers' `--ledger`).
    pub async fn connect(url: &str) -> anyhow::Result<LedgerProbe> {
        let shown = crate::scaled::hide_password(url);
        let (client, conn) =
            tokio::time::timeout(CONNECT_TIMEOUT, tokio_postgres::connect(url, NoTls))
                .await
                .map_err(|_| anyhow::anyhow!("no answer within {CONNECT_TIMEOUT:?}"))
                .and_then(|r| r.map_err(anyhow::Error::from))
                .with_context(|| format!("connecting to the ledger {shown}"))?;
        let connection = tokio::spawn(async move {
            let _ = conn.await;
        });
        let prepare = |sql: &'static str| bounded(client.prepare(sql));
        let flush = prepare("SELECT pg_stat_force_next_flush()").await.ok();
        let counters = prepare(COUNTERS)
            .await
            .with_context(|| format!("preparing the counters' query on {shown}"))?;
        Ok(LedgerProbe {
            flush,
            counters,
            client,
            connection,
            commits: AtomicU64::new(0),
            incarnation: OnceCell::new(),
            owned: OnceCell::new(),
            poll: OnceCell::new(),
        })
    }

    /// Runs `statement` on its own, bounded in time; counts it when it committed.
    async fn query(
        &self,
        statement: &Statement,
        params: &[&(dyn ToSql + Sync)],
    ) -> anyhow::Result<Vec<Row>> {
        let rows = bounded(self.client.query(statement, params)).await?;
        self.commits.fetch_add(1, Ordering::Relaxed);
        Ok(rows)
    }

    /// `sql`, prepared once into `cell`.
    async fn prepared<'a>(
        &self,
        cell: &'a OnceCell<Statement>,
        sql: &str,
    ) -> anyhow::Result<&'a Statement> {
        cell.get_or_try_init(|| async {
            let st = bounded(self.client.prepare(sql)).await?;
            // A prepare is a transaction of its own.
            self.commits.fetch_add(1, Ordering::Relaxed);
            Ok(st)
        })
        .await
    }

    /// The counters now. The bench's statements so far are flushed first (the flush's
    /// own included), so `bench_commits` is what the statistics hold of the bench's.
    pub async fn counters(&self) -> anyhow::Result<DbCounters> {
        // Before PostgreSQL 15 the function does not exist: then the bench's last
        // second of statements may be missing from the statistics, a few transactions.
        if let Some(flush) = &self.flush {
            let _ = self.query(flush, &[]).await;
        }
        let bench_commits = self.commits.load(Ordering::Relaxed);
        let rows = self
            .query(&self.counters, &[])
            .await
            .context("reading the ledger's counters")?;
        let row = rows
            .first()
            .context("pg_stat_database has no row for the ledger's database")?;
        let n = |i: usize| row.try_get::<_, Option<i64>>(i).ok().flatten().unwrap_or(0);
        Ok(DbCounters {
            wal_lsn_bytes: n(0),
            xact_commit: n(1),
            xact_rollback: n(2),
            tup_inserted: n(3),
            tup_updated: n(4),
            tup_deleted: n(5),
            tup_fetched: n(6),
            bench_commits,
        })
    }

    /// The counters once every backend's statistics are published (after
    /// [`STATS_SETTLE`]).
    pub async fn settled_counters(&self) -> anyhow::Result<DbCounters> {
        tokio::time::sleep(STATS_SETTLE).await;
        self.counters().await
    }

    /// The live incarnation of the worker named `name`, if it has one.
    pub async fn incarnation(&self, name: &str) -> anyhow::Result<Option<Uuid>> {
        let st = self.prepared(&self.incarnation, INCARNATION).await?;
        let rows = self.query(st, &[&name]).await?;
        Ok(rows.first().map(|r| r.get(0)))
    }

    /// The pending payments `owner` owns.
    pub async fn owned(&self, owner: Uuid) -> anyhow::Result<Vec<Uuid>> {
        let st = self.prepared(&self.owned, OWNED).await?;
        let rows = self.query(st, &[&owner]).await?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    /// One poll at `t` seconds since the kill: the orphans, and which of `owned` are
    /// still pending.
    pub async fn poll(&self, t: f64, owned: &[Uuid]) -> anyhow::Result<KillPoll> {
        let owned = owned.to_vec();
        let st = self.prepared(&self.poll, POLL).await?;
        let rows = self.query(st, &[&owned]).await?;
        let row = rows.first().context("no row")?;
        Ok(KillPoll {
            t,
            orphans: row.get(0),
            owned_pending: row.get(1),
        })
    }
}

/// `f`, bounded by [`STATEMENT_TIMEOUT`].
async fn bounded<T>(
    f: impl std::future::Future<Output = Result<T, tokio_postgres::Error>>,
) -> anyhow::Result<T> {
    tokio::time::timeout(STATEMENT_TIMEOUT, f)
        .await
        .map_err(|_| anyhow::anyhow!("no answer within {STATEMENT_TIMEOUT:?}"))?
        .map_err(anyhow::Error::from)
}

impl Drop for LedgerProbe {
    fn drop(&mut self) {
        self.connection.abort();
    }
}
