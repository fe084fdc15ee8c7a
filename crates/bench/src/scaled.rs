//! The scaled-out topology's figures (`--workers N --ledger postgres|URL`, SPEC's
//! "scale-out"): what the shared ledger cost per accepted payment (WAL bytes,
//! transactions and rows written, from PostgreSQL's own counters read before and after
//! the test), the CPU per accepted payment of each role (api, worker: all workers and
//! each one, postgres: the postmaster and its backends), and what a worker killed
//! mid-run (`--kill-worker SECS`) cost: the POSTs that failed from the kill on, when it
//! came back, and how long until the payments it owned were finished.
//!
//! Pure: `runner` takes the measurements (the database, the kill) and `topology` the
//! processes' usage; here they become figures, by name as every other figure of a run
//! (`--runs` aggregates them, `bench.json` holds them, `scale.txt` is made of them).

use crate::ladder::role;
use crate::report::is_backend;
use serde::Serialize;

/// The role the bench kills with `--kill-worker`: the first worker of the scaled
/// topology (`worker1`, as the launcher names it).
pub const KILLED_ROLE: &str = "worker1";

/// PostgreSQL's cumulative counters at one moment, for the ledger's database.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct DbCounters {
    /// `pg_current_wal_lsn()`, as bytes since `0/0` (`pg_wal_lsn_diff`).
    pub wal_lsn_bytes: i64,
    /// `pg_stat_database`'s row of the ledger's database.
    pub xact_commit: i64,
    pub xact_rollback: i64,
    pub tup_inserted: i64,
    pub tup_updated: i64,
    pub tup_deleted: i64,
    pub tup_fetched: i64,
    /// The bench's own statements that had committed (and whose statistics were
    /// flushed) when these counters were read: subtracted from the transactions.
    pub bench_commits: u64,
}

/// What the database did between two readings, the bench's own transactions left out.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct DbCost {
    pub wal_bytes: f64,
    /// Transactions committed by everyone but the bench.
    pub transactions: f64,
    pub rollbacks: f64,
    pub rows_inserted: f64,
    pub rows_updated: f64,
    pub rows_deleted: f64,
    /// Rows fetched by index scans (the bench's own polls included).
    pub rows_fetched: f64,
    /// The bench's own transactions over the same time (its readings and, with
    /// `--kill-worker`, its polls), left out of `transactions`.
    pub bench_transactions: f64,
}

impl DbCost {
    /// From `before` to `after`. A counter that went backwards (statistics reset, a
    /// crash of the server: its statistics are lost) counts as 0.
    pub fn between(before: &DbCounters, after: &DbCounters) -> DbCost {
        let d = |a: i64, b: i64| (a - b).max(0) as f64;
        let bench = after.bench_commits.saturating_sub(before.bench_commits) as f64;
        DbCost {
            wal_bytes: d(after.wal_lsn_bytes, before.wal_lsn_bytes),
            transactions: (d(after.xact_commit, before.xact_commit) - bench).max(0.0),
            rollbacks: d(after.xact_rollback, before.xact_rollback),
            rows_inserted: d(after.tup_inserted, before.tup_inserted),
            rows_updated: d(after.tup_updated, before.tup_updated),
            rows_deleted: d(after.tup_deleted, before.tup_deleted),
            rows_fetched: d(after.tup_fetched, before.tup_fetched),
            bench_transactions: bench,
        }
    }

    /// Rows inserted, updated and deleted.
    pub fn rows_written(&self) -> f64 {
        self.rows_inserted + self.rows_updated + self.rows_deleted
    }

    /// Its figures per accepted payment, by name; none without an accepted payment.
    pub fn figures(&self, accepted: u64) -> Vec<(String, f64)> {
        if accepted == 0 {
            return Vec::new();
        }
        let per = |x: f64| x / accepted as f64;
        vec![
            ("db_wal_bytes_per_payment".into(), per(self.wal_bytes)),
            ("db_transactions_per_payment".into(), per(self.transactions)),
            (
                "db_rows_written_per_payment".into(),
                per(self.rows_written()),
            ),
            (
                "db_rows_inserted_per_payment".into(),
                per(self.rows_inserted),
            ),
            ("db_rows_updated_per_payment".into(), per(self.rows_updated)),
            ("db_rows_fetched_per_payment".into(), per(self.rows_fetched)),
            ("db_wal_bytes".into(), self.wal_bytes),
            ("db_transactions".into(), self.transactions),
            ("db_rollbacks".into(), self.rollbacks),
            ("db_bench_transactions".into(), self.bench_transactions),
        ]
    }
}

/// Failed POSTs counted so far: all of them, and those answered 503 or not at all.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Failures {
    pub failed: u64,
    pub unavailable: u64,
    pub no_answer: u64,
}

/// One poll of the database after the kill.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct KillPoll {
    /// Seconds since the kill.
    pub t: f64,
    /// Pending payments whose owner's lease has lapsed (anyone's orphans).
    pub orphans: i64,
    /// Of the payments the killed worker owned at the kill, those still pending.
    pub owned_pending: i64,
}

/// What the bench saw of the worker it killed.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct KillRecord {
    pub role: String,
    /// Seconds since the test start.
    pub at_s: f64,
    pub pid: u32,
    /// Its incarnation in the ledger (`payroute_workers.id`), when it had a live lease.
    pub incarnation: Option<String>,
    /// Payments it owned and had not finished when it was killed.
    pub owned_at_kill: u64,
    /// Seconds from the kill until the launcher had started it again.
    pub restarted_after_s: Option<f64>,
    /// Failed POSTs counted at the kill and when the watch ended.
    pub failures_at_kill: Failures,
    pub failures_at_end: Failures,
    /// The polls, every 100 ms from the kill to the end of the watch.
    pub polls: Vec<KillPoll>,
    /// Seconds from the kill to the end of the watch.
    pub watched_s: f64,
    /// Polls that failed, and the last error.
    pub failed_polls: u64,
    pub last_error: Option<String>,
}

/// The time of the first poll from which `count` stayed at 0 until the last poll: when
/// it "went back to 0 and stayed there"; `None` when the last poll is not 0 (or there
/// is none).
pub fn zero_from(polls: &[KillPoll], count: impl Fn(&KillPoll) -> i64) -> Option<f64> {
    if polls.last().is_none_or(|p| count(p) != 0) {
        return None;
    }
    let last_nonzero = polls.iter().rposition(|p| count(p) != 0);
    let first_zero = last_nonzero.map_or(0, |i| i + 1);
    Some(polls[first_zero].t)
}

impl KillRecord {
    /// Failed POSTs from the kill to the end of the watch.
    pub fn failures(&self) -> Failures {
        let (a, b) = (self.failures_at_end, self.failures_at_kill);
        Failures {
            failed: a.failed.saturating_sub(b.failed),
            unavailable: a.unavailable.saturating_sub(b.unavailable),
            no_answer: a.no_answer.saturating_sub(b.no_answer),
        }
    }

    /// The largest orphan count seen.
    pub fn orphans_peak(&self) -> i64 {
        self.polls.iter().map(|p| p.orphans).max().unwrap_or(0)
    }

    /// Its figures by name (times in seconds since the kill; a time left out when it
    /// never happened within the watch).
    pub fn figures(&self) -> Vec<(String, f64)> {
        let f = self.failures();
        let mut v = vec![
            ("kill_at_s".to_string(), self.at_s),
            ("kill_failed_posts".into(), f.failed as f64),
            ("kill_503".into(), f.unavailable as f64),
            ("kill_no_answer".into(), f.no_answer as f64),
            ("kill_owned_at_kill".into(), self.owned_at_kill as f64),
            ("kill_orphans_peak".into(), self.orphans_peak() as f64),
            ("kill_watched_s".into(), self.watched_s),
        ];
        let mut opt = |name: &str, x: Option<f64>| {
            if let Some(x) = x {
                v.push((name.to_string(), x));
            }
        };
        opt("kill_restarted_after_s", self.restarted_after_s);
        opt(
            "kill_owned_finished_after_s",
            zero_from(&self.polls, |p| p.owned_pending),
        );
        opt(
            "kill_orphans_zero_after_s",
            zero_from(&self.polls, |p| p.orphans),
        );
        v
    }
}

/// The CPU a process used during the test, by name.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RoleCpu {
    /// A role (`api`, `worker`, `postgres`, `lb`: every instance summed) or, with
    /// several workers, one worker (`worker1`).
    pub name: String,
    pub cpu_seconds: f64,
    /// CPU milliseconds per accepted payment; `None` without an accepted payment.
    pub ms_per_payment: Option<f64>,
}

/// The backend's CPU during the test by role, then by worker when there are several,
/// from each process's CPU during the test (`(name, seconds)`; the emulated processors
/// are left out).
pub fn role_cpu(procs: &[(String, f64)], accepted: u64) -> Vec<RoleCpu> {
    let per = |cpu: f64| (accepted > 0).then(|| cpu * 1000.0 / accepted as f64);
    let mut roles: Vec<(String, f64)> = Vec::new();
    for (name, cpu) in procs.iter().filter(|(n, _)| is_backend(n)) {
        let r = role(name);
        match roles.iter_mut().find(|(n, _)| n == r) {
            Some(x) => x.1 += cpu,
            None => roles.push((r.to_string(), *cpu)),
        }
    }
    let workers: Vec<&(String, f64)> = procs
        .iter()
        .filter(|(n, _)| role(n) == "worker" && n != "worker")
        .collect();
    if workers.len() > 1 {
        roles.extend(workers.into_iter().cloned());
    }
    roles
        .into_iter()
        .map(|(name, cpu_seconds)| RoleCpu {
            ms_per_payment: per(cpu_seconds),
            name,
            cpu_seconds,
        })
        .collect()
}

/// What a run of the scaled topology measured beyond the usual figures.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ScaledData {
    /// Worker processes the bench started (0 when it started none).
    pub workers: usize,
    /// The ledger, as said to the user (a URL without its password).
    pub ledger: String,
    /// The database's counters before and after the test (`None` without a ledger
    /// the bench can reach).
    pub db_before: Option<DbCounters>,
    pub db_after: Option<DbCounters>,
    /// Why the counters could not be read, when they could not.
    pub db_error: Option<String>,
    /// With `--kill-worker`.
    pub kill: Option<KillRecord>,
}

impl ScaledData {
    /// The database's cost over the test, when both readings were taken.
    pub fn db_cost(&self) -> Option<DbCost> {
        Some(DbCost::between(
            self.db_before.as_ref()?,
            self.db_after.as_ref()?,
        ))
    }

    /// Every figure of the scaled run by name: the workers, the accepts and the
    /// processed per second (`load_s`: the seconds of load, `processed_s`: those until
    /// the books were read), the CPU per payment of each role (`procs`: CPU seconds of
    /// each process during the test), the database's cost per payment and the kill's.
    pub fn figures(
        &self,
        procs: &[(String, f64)],
        accepted: u64,
        processed: f64,
        load_s: f64,
        processed_s: f64,
    ) -> Vec<(String, f64)> {
        let rate = |n: f64, s: f64| if s > 0.0 { n / s } else { 0.0 };
        let mut v = vec![
            ("workers".to_string(), self.workers as f64),
            ("accepts_per_s".into(), rate(accepted as f64, load_s)),
            ("processed_per_s".into(), rate(processed, processed_s)),
        ];
        for r in role_cpu(procs, accepted) {
            if let Some(ms) = r.ms_per_payment {
                v.push((format!("cpu_ms_per_payment[{}]", r.name), ms));
            }
        }
        if let Some(c) = self.db_cost() {
            v.extend(c.figures(accepted));
        }
        if let Some(k) = &self.kill {
            v.extend(k.figures());
        }
        v
    }
}

/// `url` without the password it may hold, for what is printed and written.
pub use launcher::hide_password;

#[cfg(test)]
mod tests {
    use super::*;

    fn counters(wal: i64, commits: i64, ins: i64, upd: i64, bench: u64) -> DbCounters {
        DbCounters {
            wal_lsn_bytes: wal,
            xact_commit: commits,
            tup_inserted: ins,
            tup_updated: upd,
            bench_commits: bench,
            ..DbCounters::default()
        }
    }

    #[test]
    fn database_cost_per_payment_leaves_the_bench_out() {
        let before = counters(1_000_000, 500, 10, 20, 3);
        // 100 payments: 250 kB of WAL, 230 commits of which 30 the bench's, a row
        // inserted and two updated each.
        let after = counters(1_250_000, 730, 110, 220, 33);
        let c = DbCost::between(&before, &after);
        assert_eq!(c.wal_bytes, 250_000.0);
        assert_eq!((c.transactions, c.bench_transactions), (200.0, 30.0));
        assert_eq!(c.rows_written(), 300.0);
        let f = c.figures(100);
        let get = |n: &str| f.iter().find(|(k, _)| k == n).unwrap().1;
        assert_eq!(get("db_wal_bytes_per_payment"), 2500.0);
        assert_eq!(get("db_transactions_per_payment"), 2.0);
        assert_eq!(get("db_rows_written_per_payment"), 3.0);
        assert!(c.figures(0).is_empty());
        // A statistics reset (counters backwards) reads as nothing, not as negative.
        let reset = DbCost::between(&after, &counters(1_300_000, 5, 0, 0, 40));
        assert_eq!((reset.transactions, reset.rows_written()), (0.0, 0.0));
        assert_eq!(reset.wal_bytes, 50_000.0);
    }

    fn polls(counts: &[(i64, i64)]) -> Vec<KillPoll> {
        counts
            .iter()
            .enumerate()
            .map(|(i, &(orphans, owned_pending))| KillPoll {
                t: i as f64 * 0.1,
                orphans,
                owned_pending,
            })
            .collect()
    }

    #[test]
    fn zero_from_is_the_start_of_the_last_run_of_zeros() {
        let p = polls(&[(0, 9), (0, 9), (7, 9), (0, 4), (3, 0), (0, 0), (0, 0)]);
        let t = |x: Option<f64>| x.map(|x| (x * 10.0).round() / 10.0);
        assert_eq!(t(zero_from(&p, |p| p.orphans)), Some(0.5));
        assert_eq!(t(zero_from(&p, |p| p.owned_pending)), Some(0.4));
        // Not back to 0 by the last poll: never settled.
        let p = polls(&[(0, 0), (2, 1)]);
        assert_eq!(zero_from(&p, |p| p.orphans), None);
        // Always 0: settled from the first poll.
        assert_eq!(
            zero_from(&polls(&[(0, 0), (0, 0)]), |p| p.orphans),
            Some(0.0)
        );
        assert_eq!(zero_from(&[], |p| p.orphans), None);
    }

    #[test]
    fn kill_figures_count_from_the_kill_on() {
        let f = |failed, unavailable, no_answer| Failures {
            failed,
            unavailable,
            no_answer,
        };
        let k = KillRecord {
            role: KILLED_ROLE.into(),
            at_s: 5.0,
            pid: 42,
            owned_at_kill: 9,
            restarted_after_s: Some(0.7),
            failures_at_kill: f(2, 1, 1),
            failures_at_end: f(7, 4, 2),
            polls: polls(&[(0, 9), (5, 9), (0, 0)]),
            watched_s: 0.2,
            ..KillRecord::default()
        };
        assert_eq!(k.failures(), f(5, 3, 1));
        let figures = k.figures();
        let get = |n: &str| figures.iter().find(|(k, _)| k == n).map(|x| x.1);
        assert_eq!(get("kill_failed_posts"), Some(5.0));
        assert_eq!(get("kill_503"), Some(3.0));
        assert_eq!(get("kill_orphans_peak"), Some(5.0));
        assert_eq!(get("kill_owned_finished_after_s"), Some(0.2));
        assert_eq!(get("kill_restarted_after_s"), Some(0.7));
        let unsettled = KillRecord {
            polls: polls(&[(0, 3)]),
            ..k
        };
        assert_eq!(
            unsettled
                .figures()
                .iter()
                .find(|(n, _)| n == "kill_owned_finished_after_s"),
            None
        );
    }

    #[test]
    fn cpu_by_role_sums_instances_and_lists_each_worker() {
        let procs: Vec<(String, f64)> = [
            ("processor-default", 9.0),
            ("postgres", 4.0),
            ("worker1", 1.5),
            ("worker2", 0.5),
            ("api1", 1.0),
            ("api2", 2.0),
        ]
        .iter()
        .map(|(n, c)| (n.to_string(), *c))
        .collect();
        let r = role_cpu(&procs, 1000);
        let names: Vec<&str> = r.iter().map(|x| x.name.as_str()).collect();
        assert_eq!(names, ["postgres", "worker", "api", "worker1", "worker2"]);
        let ms = |n: &str| r.iter().find(|x| x.name == n).unwrap().ms_per_payment;
        assert_eq!(ms("worker"), Some(2.0));
        assert_eq!(ms("api"), Some(3.0));
        assert_eq!(ms("postgres"), Some(4.0));
        assert_eq!(ms("worker1"), Some(1.5));
        // One worker (the file log's `worker`, or a single `worker1`): no per-worker rows.
        let one = role_cpu(&[("worker".into(), 1.0)], 0);
        assert_eq!(one.len(), 1);
        assert_eq!(one[0].ms_per_payment, None);
    }

    #[test]
    fn scaled_figures_rates_and_names() {
        let s = ScaledData {
            workers: 2,
            db_before: Some(counters(0, 0, 0, 0, 0)),
            db_after: Some(counters(3000, 20, 10, 20, 0)),
            ..ScaledData::default()
        };
        let procs = vec![("worker1".to_string(), 0.5), ("worker2".to_string(), 0.5)];
        let f = s.figures(&procs, 10, 8.0, 5.0, 4.0);
        let get = |n: &str| f.iter().find(|(k, _)| k == n).map(|x| x.1);
        assert_eq!(get("workers"), Some(2.0));
        assert_eq!(get("accepts_per_s"), Some(2.0));
        assert_eq!(get("processed_per_s"), Some(2.0));
        assert_eq!(get("cpu_ms_per_payment[worker]"), Some(100.0));
        assert_eq!(get("db_wal_bytes_per_payment"), Some(300.0));
        assert_eq!(get("kill_at_s"), None);
    }

    #[test]
    fn passwords_are_hidden() {
        assert_eq!(
            hide_password("postgres://u:secret@db:5432/x"),
            "postgres://u:***@db:5432/x"
        );
        assert_eq!(hide_password("postgres://u@db/x"), "postgres://u@db/x");
    }
}
