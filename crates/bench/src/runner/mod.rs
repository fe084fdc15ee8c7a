//! One run of an official test, as k6 executes the script: setup, then on one clock
//! the payments VUs (ramping), the consistency checker and the stages, then the
//! teardown and `handleSummary`.
//!
//! k6 details reproduced here, each from the scripts or k6's executors:
//! - the payments scenario has no `gracefulStop`, so k6's default (30 s) applies: at
//!   the end no VU starts a new iteration, but an iteration under way finishes (its
//!   request within the 1.5 s timeout, then its `sleep(1)`); the teardown starts when
//!   every scenario is over. The checker's last `sleep(10)` ends the same way.
//! - each stage is its own `constant-vus` scenario: its own VU, its own connections,
//!   running at its start time whatever the other stages do; a status other than 200
//!   aborts the test (`exec.test.abort`), here an error.
//! - setup, checker and teardown requests are HTTP requests like the payments: they
//!   count in the p99 when their status is below 400.
//!
//! Its parts:
//! - `script`: the script's functions (setup, a payments VU, the checker, a stage,
//!   the teardown);
//! - `samples`: what the bench samples for the report beyond the script (`/health`,
//!   the processes' usage), never counted in the p99;
//! - `ledger`, `kill`: the scaled topology's measurements (the shared ledger's
//!   counters before and after the test, a worker killed mid-run and the watch after
//!   it), never counted either;
//! - `throughput`: the throughput run (`--throughput`), VUs without a pause;
//! - here: the run's order of phases and `handleSummary`.

mod kill;
pub mod ledger;
mod samples;
mod script;
pub mod throughput;

pub use samples::{parse_health, BooksSample, HealthSample, UsageSample};
pub use script::{check_window, INITIAL_TOKEN};

use crate::exit::Interrupted;
use crate::http::Target;
use crate::progress::Progress;
use crate::recorder::{latency_bins, LatencyBin, Recorder, Second};
use crate::scaled::{KillRecord, ScaledData};
use crate::scenario::{Plan, PlannedStage};
use crate::score::{self, BackendSummary, Inputs, OfficialResults, ProcessorSummary, Score};
use crate::topology::{ProcUsage, Topology};
use anyhow::Context;
use ledger::LedgerProbe;
use model::Micros;
use script::Books;
use serde::Serialize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::sync::{CancellationToken, DropGuard};

/// What one run needs.
#[derive(Clone)]
pub struct RunSettings {
    pub plan: Plan,
    pub backend: Arc<Target>,
    pub default: Arc<Target>,
    pub fallback: Arc<Target>,
    pub token: String,
    pub participant: String,
    pub max_requests_label: String,
    /// Sample `/health` when it has payroute's shape (never counted in the p99).
    pub sample_health: bool,
    /// Show a progress bar (or plain lines when stderr is not a terminal).
    pub progress: bool,
    /// Label in front of the progress line ("run 2/3").
    pub label: String,
    /// The scaled topology's measurements, when the workers share a ledger.
    pub scaled: Option<ScaledSettings>,
}

/// What a run of the scaled topology measures beyond the usual (see [`crate::scaled`]).
#[derive(Clone)]
pub struct ScaledSettings {
    /// Worker processes the bench started.
    pub workers: usize,
    /// The ledger, as said to the user (a URL without its password).
    pub ledger: String,
    /// The bench's connection to it, when it knows its URL.
    pub probe: Option<Arc<LedgerProbe>>,
    /// `--kill-worker`: when to kill [`crate::scaled::KILLED_ROLE`].
    pub kill_at: Option<Duration>,
}

/// One consistency check.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// Seconds since the test start.
    pub t: f64,
    pub from: String,
    pub to: String,
    pub backend: BackendSummary,
    pub default: ProcessorSummary,
    pub fallback: ProcessorSummary,
    /// Statuses of the three reads: default, fallback, backend.
    pub statuses: [u16; 3],
    pub inconsistencies: f64,
}

/// One stage as it happened.
#[derive(Debug, Clone, Serialize)]
pub struct StageRun {
    pub planned: PlannedStage,
    /// Seconds since the test start when its first call was sent.
    pub t: f64,
    /// Statuses of: delay default, delay fallback, failure default, failure fallback.
    pub statuses: [u16; 4],
}

/// Everything a run collected.
pub struct RunData {
    pub plan: Plan,
    pub backend_url: String,
    pub inputs: Inputs,
    pub score: Score,
    pub results: OfficialResults,
    pub seconds: Vec<Second>,
    pub checks: Vec<Check>,
    pub stages: Vec<StageRun>,
    pub health: Vec<HealthSample>,
    pub usage_samples: Vec<UsageSample>,
    /// Both processors' books once a second (never recorded).
    pub books: Vec<BooksSample>,
    /// Usage at the test start (after setup), to give CPU seconds during the test.
    pub usage_at_start: Vec<ProcUsage>,
    /// Requests of the whole test, and those counted by the p99.
    pub requests: u64,
    pub p99_sample_size: usize,
    /// k6-style percentiles of the p99 sample, ms: p50, p90, p99, max.
    pub overall_ms: [f64; 4],
    /// The distribution of the p99 sample.
    pub latency_bins: Vec<LatencyBin>,
    /// CPU seconds the bench itself used from the test start to the teardown: the load
    /// generator shares the machine, so the report shows its cost.
    pub bench_cpu_seconds: f64,
    /// Wall-clock start of the test (after setup).
    pub started_at: String,
    /// Seconds from the test start to the teardown.
    pub teardown_at: f64,
    /// The backend's own summary over the teardown window, read right after the
    /// official teardown (in the final the official script does not read it; this
    /// read is not recorded, so it changes no official figure): `None` if it failed.
    pub end_audit: Option<BackendSummary>,
    /// The scaled topology's measurements (a shared ledger): `None` otherwise.
    pub scaled: Option<ScaledData>,
}

/// A list that the test's concurrent tasks append to, taken whole once they are done.
struct Collector<T>(Arc<Mutex<Vec<T>>>);

impl<T> Clone for Collector<T> {
    fn clone(&self) -> Self {
        Collector(self.0.clone())
    }
}

impl<T> Default for Collector<T> {
    fn default() -> Self {
        Collector(Arc::default())
    }
}

impl<T> Collector<T> {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<T>> {
        // A poisoned lock only means a task panicked mid-push; the list is still whole.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn push(&self, x: T) {
        self.lock().push(x);
    }

    fn take(&self) -> Vec<T> {
        std::mem::take(&mut *self.lock())
    }
}

/// What the test's tasks collect while it runs.
#[derive(Clone, Default)]
struct Collected {
    checks: Collector<Check>,
    stages: Collector<StageRun>,
    health: Collector<HealthSample>,
    usage: Collector<UsageSample>,
    books: Collector<BooksSample>,
    /// Inconsistencies counted so far, for the progress display.
    inconsistencies: Arc<AtomicU64>,
}

/// What the test (between setup and teardown) leaves behind.
struct TestOutcome {
    collected: Collected,
    /// Wall-clock start.
    started_at: String,
    /// Seconds from the start to the teardown.
    teardown_at: f64,
    /// CPU seconds the bench used from the start to the teardown.
    bench_cpu_seconds: f64,
    /// The kill and its watch, still watching (through the teardown).
    kill: Option<KillTask>,
}

/// `--kill-worker`: the kill and the watch after it, running beside the test.
pub(super) struct KillTask {
    stop: CancellationToken,
    task: JoinHandle<anyhow::Result<Option<KillRecord>>>,
    /// Stops the watch if the run ends another way (an error, Ctrl-C).
    _guard: DropGuard,
}

impl KillTask {
    /// Starts the kill of `s`'s `--kill-worker` on the clock `t0`, if asked for and
    /// possible (the bench started the topology and reaches its ledger).
    fn start(
        s: &RunSettings,
        t0: Instant,
        rec: &Arc<Recorder>,
        topology: Option<&Arc<Topology>>,
    ) -> Option<KillTask> {
        let sc = s.scaled.as_ref()?;
        let (at, probe, topo) = (sc.kill_at?, sc.probe.clone()?, topology?.clone());
        let stop = CancellationToken::new();
        let task = tokio::spawn(kill::kill_and_watch(
            t0,
            at,
            topo,
            probe,
            rec.clone(),
            stop.clone(),
        ));
        Some(KillTask {
            _guard: stop.clone().drop_guard(),
            stop,
            task,
        })
    }

    /// Ends the watch: what it saw (`None`: the run ended before the kill).
    async fn finish(self) -> anyhow::Result<Option<KillRecord>> {
        self.stop.cancel();
        self.task.await.context("the kill's watch panicked")?
    }
}

/// The scaled run's data with the ledger's counters before the test (after
/// [`ledger::STATS_SETTLE`]); `None` when the run is not of the scaled topology.
pub(super) async fn scaled_before(s: &RunSettings) -> Option<ScaledData> {
    let sc = s.scaled.as_ref()?;
    let mut d = ScaledData {
        workers: sc.workers,
        ledger: sc.ledger.clone(),
        ..ScaledData::default()
    };
    if let Some(p) = &sc.probe {
        match p.settled_counters().await {
            Ok(c) => d.db_before = Some(c),
            Err(e) => d.db_error = Some(format!("{e:#}")),
        }
    }
    Some(d)
}

/// The ledger's counters after the test, into `d` (when they were read before it).
pub(super) async fn scaled_after(s: &RunSettings, d: &mut ScaledData) {
    let Some(p) = s.scaled.as_ref().and_then(|sc| sc.probe.as_ref()) else {
        return;
    };
    if d.db_before.is_some() {
        match p.settled_counters().await {
            Ok(c) => d.db_after = Some(c),
            Err(e) => d.db_error = Some(format!("{e:#}")),
        }
    }
}

/// Runs the test once. `topology`, when the bench started the processes, is sampled
/// for CPU time; `cancel` interrupts the run (Ctrl-C).
pub async fn run_once(
    s: &RunSettings,
    topology: Option<Arc<Topology>>,
    cancel: &CancellationToken,
) -> anyhow::Result<RunData> {
    let rec = Arc::new(Recorder::new());
    tokio::select! {
        r = script::setup(s, &rec) => r?,
        _ = cancel.cancelled() => return Err(anyhow::Error::from(Interrupted).context("during setup")),
    }
    let health_answers = s.sample_health && samples::probe_health(&s.backend).await;
    let health = health_answers.then(|| s.backend.clone());
    let usage_at_start = match &topology {
        Some(t) => samples::usage(t).await.unwrap_or_default(),
        None => Vec::new(),
    };
    let mut scaled = scaled_before(s).await;
    let mut test = run_test(s, &rec, health, topology, cancel).await?;
    let books = tokio::select! {
        b = script::teardown(s, &rec) => b,
        _ = cancel.cancelled() => return Err(anyhow::Error::from(Interrupted).context("during teardown")),
    };
    if let Some(d) = &mut scaled {
        if let Some(k) = test.kill.take() {
            d.kill = k.finish().await?;
        }
        scaled_after(s, d).await;
    }
    let mut data = handle_summary(s, &rec, test, books, usage_at_start);
    data.scaled = scaled;
    Ok(data)
}

/// The test clock: from its start until every scenario has ended, with the samplers
/// and the progress display beside them.
async fn run_test(
    s: &RunSettings,
    rec: &Arc<Recorder>,
    health: Option<Arc<Target>>,
    topology: Option<Arc<Topology>>,
    cancel: &CancellationToken,
) -> anyhow::Result<TestOutcome> {
    let bench_cpu_at_start = crate::topology::own_cpu_seconds();
    let t0 = Instant::now();
    let started_at = Micros::now().to_millis_string();
    rec.start(t0);
    let collected = Collected::default();
    let kill = KillTask::start(s, t0, rec, topology.as_ref());
    let observers = Observers::start(s, t0, rec, &collected, health, topology);
    let outcome = run_scenarios(s, t0, rec, &collected, cancel).await;
    observers.stop().await;
    outcome?;
    Ok(TestOutcome {
        collected,
        started_at,
        teardown_at: t0.elapsed().as_secs_f64(),
        bench_cpu_seconds: crate::topology::own_cpu_seconds() - bench_cpu_at_start,
        kill,
    })
}

/// The test's scenarios, started on the clock `t0`: the payments VUs, the checker and
/// each stage, until all have ended, one has failed, or `cancel`.
async fn run_scenarios(
    s: &RunSettings,
    t0: Instant,
    rec: &Arc<Recorder>,
    collected: &Collected,
    cancel: &CancellationToken,
) -> anyhow::Result<()> {
    let end = t0 + s.plan.duration;
    let mut work: JoinSet<anyhow::Result<()>> = JoinSet::new();
    let amount = s.plan.scenario.amount_json();
    for n in 1..=s.plan.max_vus {
        let start = t0 + s.plan.vu_start(n);
        work.spawn(script::vu(
            start,
            end,
            s.backend.clone(),
            rec.clone(),
            amount,
        ));
    }
    work.spawn(script::checker(
        s.clone(),
        end,
        rec.clone(),
        collected.checks.clone(),
        collected.inconsistencies.clone(),
        t0,
    ));
    for st in &s.plan.stages {
        work.spawn(script::stage(
            s.clone(),
            *st,
            t0,
            rec.clone(),
            collected.stages.clone(),
        ));
    }
    let all_done = async {
        while let Some(r) = work.join_next().await {
            r.context("a test task panicked")??;
        }
        Ok::<(), anyhow::Error>(())
    };
    let outcome = tokio::select! {
        r = all_done => r,
        _ = cancel.cancelled() => Err(Interrupted.into()),
    };
    // Dropping `work` aborts whatever is left (on error or Ctrl-C).
    drop(work);
    outcome
}

/// What watches the test without taking part in it: the `/health`, books and usage
/// samplers, the progress display.
struct Observers {
    stop: CancellationToken,
    tasks: JoinSet<()>,
}

impl Observers {
    /// Samples the processors' books, `health` and `topology` when given, shows progress
    /// when asked.
    fn start(
        s: &RunSettings,
        t0: Instant,
        rec: &Arc<Recorder>,
        collected: &Collected,
        health: Option<Arc<Target>>,
        topology: Option<Arc<Topology>>,
    ) -> Observers {
        let stop = CancellationToken::new();
        let mut tasks = JoinSet::new();
        if let Some(backend) = health {
            let out = collected.health.clone();
            tasks.spawn(samples::sample_health(backend, t0, out, stop.clone()));
        }
        let processors = [s.default.clone(), s.fallback.clone()];
        let books = collected.books.clone();
        tasks.spawn(samples::sample_books(
            processors,
            s.token.clone(),
            rec.clone(),
            t0,
            books,
            stop.clone(),
        ));
        if let Some(topo) = topology {
            let out = collected.usage.clone();
            tasks.spawn(samples::sample_usage(topo, t0, out, stop.clone()));
        }
        if s.progress {
            let p = Progress::new(&s.label, &s.plan);
            let inconsistent = collected.inconsistencies.clone();
            tasks.spawn(p.run(t0, rec.clone(), inconsistent, stop.clone()));
        }
        Observers { stop, tasks }
    }

    /// Stops them all and waits until they have.
    async fn stop(mut self) {
        self.stop.cancel();
        while self.tasks.join_next().await.is_some() {}
    }
}

/// `handleSummary`: the official figures from what the test recorded and what the
/// teardown read, with everything else the run collected.
fn handle_summary(
    s: &RunSettings,
    rec: &Recorder,
    test: TestOutcome,
    books: Books,
    usage_at_start: Vec<ProcUsage>,
) -> RunData {
    let sorted = rec.sorted_expected_ms();
    let p = |q: f64| score::k6_percentile(&sorted, q);
    let overall_ms = [
        p(0.5),
        p(0.9),
        p(0.99),
        sorted.last().copied().unwrap_or(0.0),
    ];
    let checks = test.collected.checks.take();
    let inputs = Inputs {
        scenario: s.plan.scenario,
        participant: s.participant.clone(),
        max_requests: s.max_requests_label.clone(),
        successes: rec.payments_ok.load(Ordering::Relaxed),
        failures: rec.payments_failed.load(Ordering::Relaxed),
        inconsistencies: checks.iter().map(|c| c.inconsistencies).sum(),
        p99_ms: overall_ms[2],
        default: books.default,
        fallback: books.fallback,
        backend: books.backend,
        timestamp: Micros::now().to_millis_string(),
    };
    let score = score::compute(&inputs);
    let results = OfficialResults::new(&inputs, &score);
    let mut stages = test.collected.stages.take();
    stages.sort_by(|a, b| a.t.total_cmp(&b.t));
    RunData {
        plan: s.plan.clone(),
        backend_url: s.backend.url.clone(),
        inputs,
        score,
        results,
        seconds: rec.seconds(),
        checks,
        stages,
        health: test.collected.health.take(),
        usage_samples: test.collected.usage.take(),
        books: test.collected.books.take(),
        usage_at_start,
        requests: rec.requests.load(Ordering::Relaxed),
        p99_sample_size: sorted.len(),
        overall_ms,
        latency_bins: latency_bins(&sorted),
        bench_cpu_seconds: test.bench_cpu_seconds,
        started_at: test.started_at,
        teardown_at: test.teardown_at,
        end_audit: books.end_audit,
        scaled: None,
    }
}
