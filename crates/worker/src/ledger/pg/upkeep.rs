//! The shared ledger's upkeep, every 200 ms: the lease (and a new incarnation when it
//! lapsed), the takeover of payments whose owner's lease lapsed, the health-poller
//! leases and the polls others published, the purge generation.

use super::*;

impl PgLedger {
    /// Renews this incarnation's lease; a lapsed one makes the worker forget
    /// everything it held and start a new incarnation.
    async fn heartbeat(&self) -> Result<(), LedgerError> {
        let me = self.me();
        let lease = self.cfg.lease.as_millis() as f64 / 1000.0;
        let c = self.db.client().await?;
        let renewed = c
            .execute(
                "UPDATE payroute_workers SET lease_until = now() + make_interval(secs => $2) \
                 WHERE id = $1 AND lease_until > now()",
                &[&me, &lease],
            )
            .await
            .map_err(err("renewing the lease"))?;
        if renewed == 0 {
            self.stats.leases_lost.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                worker = %me,
                "this worker's lease lapsed (paused or cut off): forgetting its payments, \
                 which other workers take over, and starting a new incarnation"
            );
            {
                let mut e = self.engine();
                e.purge(self.clock.now());
                *self.me.lock().unwrap_or_else(|e| e.into_inner()) = Uuid::new_v4();
            }
            self.polls
                .iter()
                .for_each(|p| p.store(false, Ordering::Relaxed));
            self.register().await?;
        }
        Ok(())
    }

    /// Takes over the oldest payments of workers whose lease has lapsed.
    async fn take_over(&self) -> Result<usize, LedgerError> {
        let me = self.me();
        let c = self.db.client().await?;
        let rows = c
            .query(
                "WITH orphans AS (
                    SELECT p.id FROM payroute_payments p
                    WHERE p.state = 0 AND p.owner <> $1
                      AND NOT EXISTS (SELECT 1 FROM payroute_workers w
                                      WHERE w.id = p.owner AND w.lease_until > now())
                    ORDER BY p.seq LIMIT $2
                    FOR UPDATE OF p SKIP LOCKED)
                 UPDATE payroute_payments p SET owner = $1 FROM orphans o
                 WHERE p.id = o.id
                   AND EXISTS (SELECT 1 FROM payroute_workers w
                               WHERE w.id = $1 AND w.lease_until > now())
                 RETURNING p.id, p.amount, p.sent_default, p.sent_fallback, p.seq",
                &[&me, &TAKEOVER_BATCH],
            )
            .await
            .map_err(err("taking over payments"))?;
        if rows.is_empty() {
            return Ok(0);
        }
        let mut taken: Vec<(i64, Uuid, Cents, [Option<Micros>; 2])> = rows
            .iter()
            .map(|r| {
                let sent: [Option<i64>; 2] = [r.get(2), r.get(3)];
                (
                    r.get(4),
                    r.get(0),
                    Cents(r.get(1)),
                    sent.map(|s| s.map(Micros)),
                )
            })
            .collect();
        taken.sort_by_key(|t| t.0);
        let n = taken.len();
        {
            let mut e = self.engine();
            if self.me() != me {
                return Ok(0); // the lease lapsed meanwhile: the rows go to others
            }
            let now = self.clock.now();
            for (_, id, amount, sent) in taken {
                e.restore_pending(id, amount, sent, now);
            }
        }
        self.stats.taken_over.fetch_add(n as u64, Ordering::Relaxed);
        tracing::info!(
            payments = n,
            "took over payments of a worker whose lease lapsed"
        );
        Ok(n)
    }

    /// Ids for the upkeep to look up (see `doubtful`).
    pub(super) fn doubt(&self, ids: impl IntoIterator<Item = Uuid>) {
        self.doubtful
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend(ids);
    }

    /// Adopts the rows of this incarnation, pending, that the engine does not hold:
    /// accept statements that failed without an answer but did commit (without this
    /// they would wait for this worker's lease to lapse, never while it lives, and a
    /// client's retry would be answered as a duplicate of a payment never sent), and
    /// payments whose send the fence refused (a safety net: such a row is another's,
    /// unless a takeover by this worker raced the refusal). Where a row says it was
    /// sent, the payment is bound to that processor with an unknown fate, as at a
    /// takeover.
    async fn adopt_doubtful(&self) -> Result<usize, LedgerError> {
        let ids: Vec<Uuid> =
            std::mem::take(&mut *self.doubtful.lock().unwrap_or_else(|e| e.into_inner()));
        if ids.is_empty() {
            return Ok(0);
        }
        let me = self.me();
        let c = match self.db.client().await {
            Ok(c) => c,
            Err(e) => {
                self.doubt(ids);
                return Err(e);
            }
        };
        let rows = match c
            .query(
                "SELECT id, amount, sent_default, sent_fallback FROM payroute_payments
                 WHERE id = ANY($1) AND owner = $2 AND state = 0 ORDER BY seq",
                &[&ids, &me],
            )
            .await
        {
            Ok(rows) => rows,
            Err(e) => {
                self.doubt(ids);
                return Err(err("looking up doubtful accepts")(e));
            }
        };
        let mut e = self.engine();
        if self.me() != me {
            return Ok(0); // the lease lapsed meanwhile: the rows go to others
        }
        let now = self.clock.now();
        let mut n = 0;
        for r in rows {
            let sent: [Option<i64>; 2] = [r.get(2), r.get(3)];
            if e.restore_pending(r.get(0), Cents(r.get(1)), sent.map(|s| s.map(Micros)), now) {
                n += 1;
            }
        }
        if n > 0 {
            tracing::warn!(
                payments = n,
                "adopted payments of this worker its engine did not hold (an accept \
                 committed but its answer lost, or a refused send taken back)"
            );
        }
        Ok(n)
    }

    /// Takes or renews the health-poller lease of each processor.
    async fn health_leases(&self) -> Result<(), LedgerError> {
        let me = self.me();
        // Three missed polls (at 5 s) before another worker polls instead.
        let lease = 15.0f64;
        let c = self.db.client().await?;
        for p in Processor::ALL {
            let name = format!("health-{}", p.name());
            let rows = c
                .query(
                    "INSERT INTO payroute_leases (name, holder, until)
                     VALUES ($1, $2, now() + make_interval(secs => $3))
                     ON CONFLICT (name) DO UPDATE SET holder = EXCLUDED.holder, until = EXCLUDED.until
                     WHERE payroute_leases.holder = EXCLUDED.holder OR payroute_leases.until < now()
                     RETURNING holder",
                    &[&name, &me, &lease],
                )
                .await
                .map_err(err("the health-poller lease"))?;
            let mine = !rows.is_empty();
            let was = self.polls[p.index()].swap(mine, Ordering::Relaxed);
            if mine != was {
                tracing::info!(processor = p.name(), polls = mine, "health-poller lease");
            }
        }
        Ok(())
    }

    /// Applies the health polls published by the poller (when it is another worker).
    async fn read_health(&self, up: &mut Upkeep) -> Result<(), LedgerError> {
        let c = self.db.client().await?;
        let rows = c
            .query(
                "SELECT processor, failing, min_response_time_ms, seq FROM payroute_health",
                &[],
            )
            .await
            .map_err(err("reading health polls"))?;
        for r in rows {
            let Some(p) = Processor::from_index(r.get::<_, i16>(0) as u8) else {
                continue;
            };
            let seq: i64 = r.get(3);
            if seq == up.health_seq[p.index()] || self.polls[p.index()].load(Ordering::Relaxed) {
                up.health_seq[p.index()] = seq;
                continue;
            }
            up.health_seq[p.index()] = seq;
            let report = HealthReport {
                failing: r.get(1),
                min_response_time_ms: r.get::<_, i64>(2).max(0) as u64,
            };
            self.engine().on_health(p, report, self.clock.now());
        }
        Ok(())
    }

    /// A purge by another worker: forget everything here too.
    async fn follow_purges(&self, up: &mut Upkeep) -> Result<bool, LedgerError> {
        let gen = self.purge_gen().await?;
        if gen == up.purge_gen {
            return Ok(false);
        }
        up.purge_gen = gen;
        self.engine().purge(self.clock.now());
        tracing::info!("another worker purged every payment");
        Ok(true)
    }

    pub(super) async fn upkeep_round(&self, up: &mut Upkeep) -> Result<bool, LedgerError> {
        let now = self.clock.now();
        let mut news = self.follow_purges(up).await?;
        news |= self.adopt_doubtful().await? > 0;
        if up
            .last_heartbeat
            .is_none_or(|t| now.since(t) >= HEARTBEAT_EVERY)
        {
            up.last_heartbeat = Some(now);
            self.heartbeat().await?;
            self.health_leases().await?;
            news |= self.take_over().await? > 0;
        }
        self.read_health(up).await?;
        Ok(news)
    }
}
