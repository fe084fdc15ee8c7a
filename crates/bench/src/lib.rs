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
//! - [`runner`]: one run (setup, VUs, checker, stages, teardown); [`ready`]: waiting
//!   for a backend given by URL.
//! - [`exit`]: how the bench ends (k6's exit codes).
//! - [`topology`]: starting and stopping what the bench runs against.
//! - [`report`], [`progress`], [`outputs`]: what the user sees and the files a run
//!   leaves; [`provenance`]: the commit and
//!   the machine a run's figures come from.
//!
//! Architecture invariant: scoring, schedules and checker arithmetic are pure and
//! unit-tested against published figures; only `runner`, `http` and `topology` touch
//! sockets, processes and clocks.

pub mod args;
pub mod checker;
pub mod exit;
pub mod families;
pub mod http;
pub mod js;
pub mod outputs;
pub mod progress;
pub mod provenance;
pub mod ready;
pub mod recorder;
pub mod report;
pub mod runner;
pub mod scenario;
pub mod score;
pub mod topology;

pub use args::Args;
pub use provenance::{provenance, Provenance};

use anyhow::Context;
use exit::{BadUsage, Ending, Interrupted};
use report::RunOutput;
use runner::RunSettings;
use scenario::Plan;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use topology::{ProcUsage, Topology, TopologyConfig};

/// Threads of the bench's runtime. Two, not one per core: the bench shares the machine
/// with the system under test, and ~600 requests per second need little; one thread
/// would queue every VU's timing behind the others'.
const BENCH_THREADS: usize = 2;

/// Entry point of `payroute bench`: [`execute`], then the process ends with the
/// ending's exit code (see [`exit`]) when it is not 0. It exits itself because the
/// binary's `main`, owned elsewhere, maps every error to 1; a caller that owns the
/// process can call [`execute`] and use [`Ending::code`] instead.
pub fn run(args: Args) -> anyhow::Result<()> {
    let ending = execute(args);
    let code = ending.code();
    match ending {
        Ending::Passed => return Ok(()),
        Ending::Crossed(crossed) => eprintln!(
            "payroute bench: {} threshold(s) crossed (exit {code}): {}",
            crossed.len(),
            crossed.join("; ")
        ),
        Ending::Failed(e) => eprintln!("payroute bench: {e:#} (exit {code})"),
    }
    use std::io::Write as _;
    let _ = std::io::stdout().flush();
    std::process::exit(i32::from(code))
}

/// Runs what `args` asks for and says how it ended; every process it started is
/// stopped by then.
pub fn execute(args: Args) -> Ending {
    match checked_run(args) {
        Ok(()) => Ending::Passed,
        Err(e) => Ending::Failed(e),
    }
}

fn checked_run(args: Args) -> anyhow::Result<()> {
    if let Some(d) = args.duration {
        if !(d.is_finite() && d >= 1.0) {
            return Err(BadUsage("--duration must be at least 1 second".into()).into());
        }
    }
    if !(args.backend_retry_secs.is_finite() && args.backend_retry_secs >= 0.0) {
        return Err(
            BadUsage("--backend-retry-secs must be a number of seconds, 0 or more".into()).into(),
        );
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(BENCH_THREADS)
        .enable_all()
        .build()
        .context("starting the bench's runtime")?;
    rt.block_on(run_all(args))
}

fn spawn_signal_handler(cancel: CancellationToken) {
    tokio::spawn(async move {
        let term = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut s) => {
                    s.recv().await;
                }
                Err(_) => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term => {}
        }
        eprintln!("\npayroute bench: interrupted; stopping what the bench started...");
        cancel.cancel();
    });
}

async fn run_all(args: Args) -> anyhow::Result<()> {
    let cancel = CancellationToken::new();
    spawn_signal_handler(cancel.clone());
    let plan = Plan::for_run(
        args.scenario,
        args.duration.map(Duration::from_secs_f64),
        args.max_requests,
        args.seed,
    );
    let exe = std::env::current_exe().context("locating the payroute executable")?;
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let command = std::env::args().collect::<Vec<_>>().join(" ");
    let mut all = Vec::new();
    for k in 1..=args.runs {
        let dir = if args.runs == 1 {
            args.out.clone()
        } else {
            args.out.join(format!("run-{k}"))
        };
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let label = if args.runs == 1 {
            args.scenario.name().to_string()
        } else {
            format!("{} run {k}/{}", args.scenario.name(), args.runs)
        };
        let out = one_run(&args, &plan, &exe, &dir, &label, &command, &cancel).await?;
        outputs::write(&out, &dir)?;
        println!("{}", report::summary_text(&out));
        println!(
            "  files: {}, {}, {}\n",
            dir.join(args.scenario.results_file()).display(),
            dir.join("report.html").display(),
            dir.join("bench.json").display()
        );
        all.push(report::figures(&out));
    }
    if args.runs > 1 {
        let (text, json) = report::aggregate(&all);
        std::fs::write(args.out.join("runs-summary.json"), json)?;
        std::fs::write(args.out.join("runs-summary.txt"), &text)?;
        println!("{} runs: min / median / max\n{text}", args.runs);
    }
    Ok(())
}

/// One run: starts what `args` asks for, runs the test against it, stops it.
async fn one_run(
    args: &Args,
    plan: &Plan,
    exe: &Path,
    dir: &Path,
    label: &str,
    command: &str,
    cancel: &CancellationToken,
) -> anyhow::Result<RunOutput> {
    let cfg = topology_config(args, exe, dir);
    let topo = tokio::task::spawn_blocking(move || Topology::start(&cfg))
        .await
        .context("starting the processes")??;
    let topo = Arc::new(topo);
    if cancel.is_cancelled() {
        return Err(Interrupted.into());
    }
    let settings = run_settings(args, plan, &topo, label)?;
    if args.backend.is_some() {
        ready::wait_for_backend(&settings.backend, args.patience(), cancel).await?;
    }
    let sampled = if topo.started_payroute || !topo.usage().is_empty() {
        Some(topo.clone())
    } else {
        None
    };
    let result = runner::run_once(&settings, sampled, cancel).await;
    let events = topo.take_events();
    // Stop everything now, whatever happened (the Drop guard covers panics).
    let usage = stop(&topo).await;
    let data = result?;
    Ok(RunOutput {
        data,
        usage,
        limits: topo.limits.clone(),
        events,
        command: command.to_string(),
        provenance: provenance(),
    })
}

/// What to start for a run whose files go to `dir`.
fn topology_config(args: &Args, exe: &Path, dir: &Path) -> TopologyConfig {
    TopologyConfig {
        exe: exe.to_path_buf(),
        backend: args.backend.clone(),
        default: args.default.clone(),
        fallback: args.fallback.clone(),
        fees: args.scenario.fees(),
        port: args.port,
        emulator_ports: args.emulator_ports.into(),
        lb: args.lb,
        limits: args.limits,
        run_dir: dir.join("processes"),
    }
}

/// The run's settings, against what `topo` started or found.
fn run_settings(
    args: &Args,
    plan: &Plan,
    topo: &Topology,
    label: &str,
) -> anyhow::Result<RunSettings> {
    // A URL that does not parse is a flag that cannot work.
    let target = |url: &str| {
        http::Target::parse(url)
            .map(Arc::new)
            .map_err(|e| BadUsage(format!("{e:#}")))
    };
    Ok(RunSettings {
        plan: plan.clone(),
        backend: target(&topo.backend_url)?,
        default: target(&topo.default_url)?,
        fallback: target(&topo.fallback_url)?,
        token: args.token.clone(),
        participant: args.participant.clone().unwrap_or_else(|| {
            if topo.started_payroute {
                "payroute".into()
            } else {
                "anonymous".into()
            }
        }),
        max_requests_label: plan.max_vus.to_string(),
        sample_health: !args.no_health,
        progress: !args.no_progress,
        label: label.to_string(),
    })
}

/// Stops what `topo` started; each process's final usage (none if stopping failed,
/// which is said).
async fn stop(topo: &Arc<Topology>) -> Vec<ProcUsage> {
    let t = topo.clone();
    match tokio::task::spawn_blocking(move || t.stop()).await {
        Ok(Ok(u)) => u,
        Ok(Err(e)) => {
            eprintln!("payroute bench: stopping the processes: {e:#}");
            Vec::new()
        }
        Err(e) => {
            eprintln!("payroute bench: stopping the processes: {e}");
            Vec::new()
        }
    }
}

#[cfg(test)]
mod tidy;
