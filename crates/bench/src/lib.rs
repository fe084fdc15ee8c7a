//! `payroute bench`: the official load tests of the Rinha de Backend 2025 — the
//! preview (`rinha.js`, SPEC §3) and the final (`rinha-final.js`, SPEC §3b) —
//! reproduced without Docker or k6, scored with the official formulas, against
//! payroute (started as `payroute up` starts it, under the challenge's limits) or any
//! backend given by URL.
//!
//! Code map:
//! - [`args`]: the flags and their defaults.
//! - [`scenario`]: the two tests as data (stages, ramp, windows), scaled by `--duration`;
//!   [`families`]: the scenario families' schedules, for any length.
//! - [`js`], [`score`]: `handleSummary`'s arithmetic to the last digit, and the result
//!   file with the official keys.
//! - [`checker`]: the consistency checker's arithmetic.
//! - [`http`], [`recorder`]: k6's way of sending and timing requests (`http` records
//!   each request's [`recorder::Sample`] into the recorder).
//! - [`session`]: every run asked for, one after the other; [`ladder`]: the load
//!   ladder's rungs and its table's rows; [`runner`]: one run
//!   (setup, VUs, checker, stages, teardown); [`ready`]: waiting for a backend given
//!   by URL.
//! - [`thresholds`], [`exit`]: what a run must meet, and how the bench ends (k6's
//!   exit codes).
//! - [`topology`]: starting and stopping what the bench runs against; [`fdlimit`]:
//!   the open-files limit that one connection per VU needs.
//! - [`floor`]: the backend's p99 and CPU per payment as ratios to the floor's (the
//!   same test against nginx answering at once).
//! - [`scaled`]: the scaled-out topology's figures (`--workers N --ledger
//!   postgres|URL`: the ledger's cost and the CPU per payment by role, a worker killed
//!   mid-run); [`throughput`]: the throughput run's (`--throughput SECS`).
//! - [`report`], [`progress`], [`outputs`]: what the user sees and the files a run
//!   leaves; [`provenance`]: the commit and the machine a run's figures come from.
//!
//! Architecture invariant: scoring, schedules and checker arithmetic are pure and
//! unit-tested against published figures, and so are the floor's ratios, the
//! ladder's rungs and rows and the scaled topology's figures; only `runner`, `http`
//! and `topology` touch sockets (the ledger's connection is `runner`'s), processes and
//! clocks (and `fdlimit` the process's open-files limit).

pub mod args;
pub mod checker;
pub mod exit;
pub mod families;
pub mod fdlimit;
pub mod floor;
pub mod http;
pub mod js;
pub mod ladder;
pub mod outputs;
pub mod progress;
pub mod provenance;
pub mod ready;
pub mod recorder;
pub mod report;
pub mod runner;
pub mod scaled;
pub mod scenario;
pub mod score;
pub mod session;
pub mod thresholds;
pub mod throughput;
pub mod topology;

pub use args::Args;
pub use provenance::{provenance, Provenance};

use anyhow::Context;
use exit::{BadUsage, Ending};

/// Threads of the bench's runtime. Two, not one per core: the bench shares the machine
/// with the system under test, and ~600 requests per second need little; one thread
/// would queue every VU's timing behind the others'.
const BENCH_THREADS: usize = 2;

/// Entry point of `payroute bench`: [`execute`], the ending explained on stderr, and
/// its exit code (see [`exit`]) for the process.
pub fn run(args: Args) -> std::process::ExitCode {
    let ending = execute(args);
    ending.explain();
    std::process::ExitCode::from(ending.code())
}

/// Runs what `args` asks for and says how it ended; every process it started is
/// stopped by then.
pub fn execute(args: Args) -> Ending {
    match checked_run(args) {
        Ok(crossed) => Ending::of_finished(crossed),
        Err(e) => Ending::Failed(e),
    }
}

/// Refuses flags that cannot work (together), before anything starts.
fn check_usage(args: &Args) -> Result<(), BadUsage> {
    if let Some(d) = args.duration {
        if !(d.is_finite() && d >= 1.0) {
            return Err(BadUsage("--duration must be at least 1 second".into()));
        }
    }
    if !(args.backend_retry_secs.is_finite() && args.backend_retry_secs >= 0.0) {
        return Err(BadUsage(
            "--backend-retry-secs must be a number of seconds, 0 or more".into(),
        ));
    }
    if args.require_limits && args.backend.is_some() {
        return Err(BadUsage(
            "--require-limits: the bench cannot enforce limits on a backend given with --backend"
                .into(),
        ));
    }
    if args.require_limits && args.limits == launcher::Limits::Off {
        return Err(BadUsage(
            "--require-limits cannot be met with --limits off".into(),
        ));
    }
    if let Err(why) = ladder::check(&args.ladder) {
        return Err(BadUsage(format!("--ladder: {why}")));
    }
    check_scaled(args)?;
    if args.floor && topology::nginx::find().is_none() {
        return Err(BadUsage(
            "--floor: nginx is not installed (looked in PATH, /usr/sbin, /sbin and /usr/local/sbin); \
             install Debian's package with scripts/install-deps.sh, or run without --floor"
                .into(),
        ));
    }
    Ok(())
}

/// Refuses the scaled topology's flags (`--workers`, `--ledger`, `--kill-worker`,
/// `--throughput`) where they cannot work.
fn check_scaled(args: &Args) -> Result<(), BadUsage> {
    let bad = |why: &str| Err(BadUsage(why.into()));
    let shared = args.ledger.is_shared();
    let counts = &args.workers;
    if counts.is_empty() || counts.iter().any(|n| !(1..=args::MAX_WORKERS).contains(n)) {
        return Err(BadUsage(format!(
            "--workers: each count must be between 1 and {}",
            args::MAX_WORKERS
        )));
    }
    if counts.iter().any(|&n| n > 1) && !shared {
        return bad("--workers above 1 needs a shared --ledger (postgres or postgres://...): each worker would keep a log of its own");
    }
    if counts.len() > 1 && !(args.ladder.is_empty() && args.scenarios.is_empty()) {
        return bad("--workers with several counts runs the test once per count: not with --ladder or --scenarios");
    }
    if args.require_limits && shared {
        return bad("--require-limits cannot be met with a shared --ledger: the challenge's limits have no share for several workers and PostgreSQL");
    }
    if args.backend.is_some() {
        if counts != &[1] {
            return bad("--workers: the bench starts no payroute with --backend");
        }
        if args.ledger == launcher::Ledger::LocalPostgres {
            return bad("--ledger postgres: with --backend the bench starts no payroute nor its PostgreSQL; give the backend's database as --ledger postgres://...");
        }
        if args.kill_worker.is_some() {
            return bad(
                "--kill-worker: the bench kills only a worker it started, not with --backend",
            );
        }
    }
    if let Some(t) = args.throughput {
        if !(t.is_finite() && t >= 1.0) {
            return bad("--throughput must be at least 1 second");
        }
    }
    if let Some(k) = args.kill_worker {
        if !shared {
            return bad("--kill-worker needs a shared --ledger: the bench follows the dead worker's payments in the database");
        }
        if !(k.is_finite() && k >= 0.0 && k < args.test_seconds()) {
            return Err(BadUsage(format!(
                "--kill-worker {k}: not within the test ({} s)",
                args.test_seconds()
            )));
        }
    }
    Ok(())
}

/// The most VUs any run of the session has.
fn most_vus(args: &Args) -> u32 {
    let scenario = args.chosen_scenario();
    let scenarios = if args.scenarios.is_empty() {
        std::slice::from_ref(&scenario)
    } else {
        &args.scenarios[..]
    };
    let base = scenarios
        .iter()
        .map(|s| args.max_requests.unwrap_or(s.default_max_requests()))
        .max()
        .unwrap_or(1);
    ladder::rungs(base, &args.ladder)
        .iter()
        .map(|r| r.vus)
        .max()
        .unwrap_or(base)
}

/// Every run; the thresholds crossed, as sentences (empty when all passed).
fn checked_run(args: Args) -> anyhow::Result<Vec<String>> {
    check_usage(&args)?;
    // Before anything starts: the processes the bench starts inherit the limit.
    let open_files = fdlimit::raise(most_vus(&args));
    if let Some(text) = open_files.describe() {
        eprintln!("payroute bench: {text}");
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(BENCH_THREADS)
        .enable_all()
        .build()
        .context("starting the bench's runtime")?;
    rt.block_on(session::run_all(args, open_files))
}
