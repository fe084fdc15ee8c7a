//! A bench session: every run that `payroute bench` was asked for, one after the
//! other (each scenario, `--runs` times), each with fresh processes and its own
//! directory; the thresholds each run crossed; the `--runs` aggregate.

use crate::args::Args;
use crate::exit::{BadUsage, Interrupted};
use crate::report::{self, RunOutput};
use crate::runner::{self, RunSettings};
use crate::scenario::{Plan, Scenario};
use crate::topology::{Backend, ProcUsage, Topology, TopologyConfig};
use crate::{http, outputs, provenance, ready, thresholds};
use anyhow::Context;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

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

/// What every run of a session shares.
struct Session {
    args: Args,
    exe: PathBuf,
    command: String,
    cancel: CancellationToken,
}

/// What the runs of one scenario left.
pub struct ScenarioRuns {
    /// Every figure of each run (see [`report::figures`]).
    pub figures: Vec<Vec<(String, f64)>>,
    /// The thresholds they crossed, each sentence led by the run's label.
    pub crossed: Vec<String>,
}

/// Runs everything `args` asks for; the thresholds crossed, as sentences.
pub async fn run_all(args: Args) -> anyhow::Result<Vec<String>> {
    let cancel = CancellationToken::new();
    spawn_signal_handler(cancel.clone());
    let exe = std::env::current_exe().context("locating the payroute executable")?;
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let session = Session {
        command: std::env::args().collect::<Vec<_>>().join(" "),
        args,
        exe,
        cancel,
    };
    if session.args.scenarios.is_empty() {
        let done = session
            .scenario(session.args.scenario, &session.args.out)
            .await?;
        return Ok(done.crossed);
    }
    session.matrix().await
}

impl Session {
    /// Each scenario of `--scenarios` in `out/NAME/`, then the matrix of them all.
    async fn matrix(&self) -> anyhow::Result<Vec<String>> {
        let out = &self.args.out;
        let (mut rows, mut crossed) = (Vec::new(), Vec::new());
        for &scenario in &self.args.scenarios {
            let done = self.scenario(scenario, &out.join(scenario.name())).await?;
            rows.push(report::matrix_row(scenario, &done.figures));
            crossed.extend(done.crossed);
        }
        let text = report::matrix_text(&rows);
        let put = |name: &str, body: &str| {
            let path = out.join(name);
            std::fs::write(&path, body).with_context(|| format!("writing {}", path.display()))
        };
        put("matrix.txt", &text)?;
        put("matrix.json", &report::matrix_json(&rows))?;
        println!(
            "{} scenarios ({}):\n{text}  files: {}, {}",
            rows.len(),
            if self.args.runs > 1 {
                "medians of --runs"
            } else {
                "one run each"
            },
            out.join("matrix.txt").display(),
            out.join("matrix.json").display()
        );
        Ok(crossed)
    }

    /// `--runs` runs of `scenario`, their files in `out` (`run-K/` for several).
    async fn scenario(&self, scenario: Scenario, out: &Path) -> anyhow::Result<ScenarioRuns> {
        let args = &self.args;
        let plan = Plan::for_run(
            scenario,
            args.duration.map(Duration::from_secs_f64),
            args.max_requests,
            args.seed,
        );
        let mut done = ScenarioRuns {
            figures: Vec::new(),
            crossed: Vec::new(),
        };
        for k in 1..=args.runs {
            let (dir, label) = if args.runs == 1 {
                (out.to_path_buf(), scenario.name().to_string())
            } else {
                let label = format!("{} run {k}/{}", scenario.name(), args.runs);
                (out.join(format!("run-{k}")), label)
            };
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            let o = self.one_run(&plan, &dir, &label).await?;
            outputs::write(&o, &dir)?;
            println!("{}", report::summary_text(&o));
            println!(
                "  files: {}, {}, {}, {}\n",
                dir.join(scenario.results_file()).display(),
                dir.join("report.html").display(),
                dir.join("bench.json").display(),
                dir.join("timeseries.csv").display()
            );
            done.crossed.extend(
                o.judgement
                    .crossed
                    .iter()
                    .map(|c| format!("{label}: {}", c.text)),
            );
            done.figures.push(report::figures(&o));
        }
        if args.runs > 1 {
            let (text, json) = report::aggregate(&done.figures);
            std::fs::write(out.join("runs-summary.json"), json)?;
            std::fs::write(out.join("runs-summary.txt"), &text)?;
            println!("{} runs: min / median / max\n{text}", args.runs);
        }
        Ok(done)
    }

    /// One run: starts what the flags ask for, waits for a given backend, runs the
    /// test against it, stops it, judges it.
    async fn one_run(&self, plan: &Plan, dir: &Path, label: &str) -> anyhow::Result<RunOutput> {
        let (args, cancel) = (&self.args, &self.cancel);
        let cfg = topology_config(args, plan.scenario, &self.exe, dir);
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
        let sampled = (topo.started_payroute || !topo.usage().is_empty()).then(|| topo.clone());
        let result = runner::run_once(&settings, sampled, cancel).await;
        let events = topo.take_events();
        // Stop everything now, whatever happened (the Drop guard covers panics).
        let usage = stop(&topo).await;
        let data = result?;
        let judgement = thresholds::judgement(&args.thresholds(), &data, &topo.limits);
        Ok(RunOutput {
            data,
            usage,
            limits: topo.limits.clone(),
            events,
            command: self.command.clone(),
            provenance: provenance(),
            judgement,
        })
    }
}

/// What to start for a run whose files go to `dir`.
fn topology_config(args: &Args, scenario: Scenario, exe: &Path, dir: &Path) -> TopologyConfig {
    TopologyConfig {
        exe: exe.to_path_buf(),
        backend: args
            .backend
            .clone()
            .map_or(Backend::Payroute, Backend::Given),
        default: args.default.clone(),
        fallback: args.fallback.clone(),
        fees: scenario.fees(),
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
