//! A bench session: every run that `payroute bench` was asked for, one after the
//! other (each scenario, `--runs` times; with `--workers 1,2,3`, each worker count),
//! each with fresh processes and its own directory; the thresholds each run crossed;
//! the `--runs` aggregate. The throughput runs (`--throughput`) are in `throughput`.

mod throughput;

use crate::args::Args;
use crate::exit::{BadUsage, Interrupted};
use crate::fdlimit::OpenFiles;
use crate::floor::{micros, Comparison, Side};
use crate::ladder::{self, Ladder};
use crate::report::{self, RunOutput};
use crate::runner::ledger::LedgerProbe;
use crate::runner::{self, RunSettings, ScaledSettings};
use crate::scenario::{Plan, Scenario};
use crate::topology::{nginx, Backend, ProcUsage, Topology, TopologyConfig};
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
    /// nginx, with `--floor`.
    nginx: Option<PathBuf>,
}

/// What the runs of one scenario left.
pub struct ScenarioRuns {
    /// Every figure of each run (see [`report::figures`] and
    /// [`ladder::extra_figures`]).
    pub figures: Vec<Vec<(String, f64)>>,
    /// What the last run says of the limits.
    pub limits: String,
    /// The thresholds they crossed, each sentence led by the run's label.
    pub crossed: Vec<String>,
}

/// Runs everything `args` asks for; the thresholds crossed, as sentences.
/// `open_files`: the bench's open-files limit, for the ladder's table.
pub async fn run_all(args: Args, open_files: OpenFiles) -> anyhow::Result<Vec<String>> {
    let cancel = CancellationToken::new();
    spawn_signal_handler(cancel.clone());
    let exe = std::env::current_exe().context("locating the payroute executable")?;
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let nginx = match args.floor {
        true => Some(nginx::find().context("--floor: nginx is not installed")?),
        false => None,
    };
    let session = Session {
        command: std::env::args().collect::<Vec<_>>().join(" "),
        args,
        exe,
        cancel,
        nginx,
    };
    if session.args.throughput.is_some() {
        return session.throughput_all().await;
    }
    if session.args.workers.len() > 1 {
        return session.scale().await;
    }
    if !session.args.ladder.is_empty() {
        return session.ladder(open_files).await;
    }
    if session.args.scenarios.is_empty() {
        let scenario = session.args.chosen_scenario();
        let plan = session.plan(scenario, session.args.max_requests);
        let workers = session.args.workers[0];
        let done = session
            .scenario(&plan, scenario.name(), &session.args.out, workers)
            .await?;
        return Ok(done.crossed);
    }
    session.matrix().await
}

/// Writes `name` into `dir`.
fn put(dir: &Path, name: &str, body: &str) -> anyhow::Result<()> {
    let path = dir.join(name);
    std::fs::write(&path, body).with_context(|| format!("writing {}", path.display()))
}

impl Session {
    /// `--workers 1,2,3`: the scenario once per count (`--runs` times each) in
    /// `out/workers-N/`, then the table of them all (`scale.txt`, `scale.json`).
    async fn scale(&self) -> anyhow::Result<Vec<String>> {
        let (args, out) = (&self.args, &self.args.out);
        let scenario = args.chosen_scenario();
        let plan = self.plan(scenario, args.max_requests);
        let (mut rows, mut crossed) = (Vec::new(), Vec::new());
        for &n in &args.workers {
            let name = format!("{} with {n} worker(s)", scenario.name());
            let dir = out.join(format!("workers-{n}"));
            let done = self.scenario(&plan, &name, &dir, n).await?;
            rows.push(report::scale_row(n, &done.figures));
            crossed.extend(done.crossed);
        }
        self.write_scale(scenario.name(), &rows)?;
        Ok(crossed)
    }

    /// `scale.txt` and `scale.json` of `rows`, a `kind` of run, into `--out`; printed.
    fn write_scale(&self, kind: &str, rows: &[report::ScaleRow]) -> anyhow::Result<()> {
        let out = &self.args.out;
        let how = match self.args.runs {
            1 => "one run each",
            _ => "medians of --runs",
        };
        let text = format!(
            "{kind} by worker count ({how}):\n{}{}",
            report::scale_text(rows),
            report::SCALE_LEGEND
        );
        put(out, "scale.txt", &text)?;
        put(out, "scale.json", &report::scale_json(kind, rows))?;
        println!(
            "{text}  files: {}, {}",
            out.join("scale.txt").display(),
            out.join("scale.json").display()
        );
        Ok(())
    }

    /// Each scenario of `--scenarios` in `out/NAME/`, then the matrix of them all.
    async fn matrix(&self) -> anyhow::Result<Vec<String>> {
        let out = &self.args.out;
        let (mut rows, mut crossed) = (Vec::new(), Vec::new());
        for &scenario in &self.args.scenarios {
            let plan = self.plan(scenario, self.args.max_requests);
            let workers = self.args.workers[0];
            let done = self
                .scenario(&plan, scenario.name(), &out.join(scenario.name()), workers)
                .await?;
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

    /// The plan of `scenario` with `max_vus` VUs (its own when `None`), at the flags'
    /// duration and seed.
    fn plan(&self, scenario: Scenario, max_vus: Option<u32>) -> Plan {
        let duration = self.args.duration.map(Duration::from_secs_f64);
        Plan::for_run(scenario, duration, max_vus, self.args.seed)
    }

    /// `--ladder`: each rung of the scenario in `out/rung-Nx/`, one after the other,
    /// then the table of them all (`ladder.txt`, `ladder.json`, `ladder.html`).
    async fn ladder(&self, open_files: OpenFiles) -> anyhow::Result<Vec<String>> {
        let (args, out) = (&self.args, &self.args.out);
        let scenario = args.chosen_scenario();
        let base_vus = args.max_requests.unwrap_or(scenario.default_max_requests());
        let (mut rows, mut crossed) = (Vec::new(), Vec::new());
        let mut duration_seconds = 0.0;
        for rung in ladder::rungs(base_vus, &args.ladder) {
            let plan = self.plan(scenario, Some(rung.vus));
            duration_seconds = plan.duration.as_secs_f64();
            println!("load ladder: rung {} ({} VUs)\n", rung.name(), rung.vus);
            let name = format!("{} {}", scenario.name(), rung.name());
            let workers = args.workers[0];
            let done = self
                .scenario(&plan, &name, &out.join(rung.dir()), workers)
                .await?;
            rows.push(ladder::row(&rung, &done.figures, done.limits));
            crossed.extend(done.crossed);
        }
        let table = Ladder {
            scenario,
            base_vus,
            duration_seconds,
            open_files,
            floor_note: (!args.floor).then(|| ladder::no_floor_note(nginx::find().is_some())),
            rows,
        };
        let text = report::ladder_text(&table);
        for (name, body) in [
            ("ladder.txt", text.clone()),
            ("ladder.json", report::ladder_json(&table)),
            ("ladder.html", report::ladder_html(&table)),
        ] {
            let path = out.join(name);
            std::fs::write(&path, body).with_context(|| format!("writing {}", path.display()))?;
        }
        println!(
            "{text}  files: {}, {}, {}",
            out.join("ladder.txt").display(),
            out.join("ladder.json").display(),
            out.join("ladder.html").display()
        );
        Ok(crossed)
    }

    /// `--runs` runs of `plan`, named `name` (the scenario, and the rung in a ladder),
    /// with `workers` workers, their files in `out` (`run-K/` for several). With
    /// `--floor`, each run is preceded by the floor's run of the same plan (in the run's
    /// own directory, `floor/`) and compared with that one: the floor's p99 moves between
    /// runs as much as the backend's on a shared machine, so each ratio is a pair's, and
    /// the summary's is the median of the pairs'.
    async fn scenario(
        &self,
        plan: &Plan,
        name: &str,
        out: &Path,
        workers: usize,
    ) -> anyhow::Result<ScenarioRuns> {
        let (args, scenario) = (&self.args, plan.scenario);
        let mut done = ScenarioRuns {
            figures: Vec::new(),
            limits: String::new(),
            crossed: Vec::new(),
        };
        for k in 1..=args.runs {
            let (dir, label) = if args.runs == 1 {
                (out.to_path_buf(), name.to_string())
            } else {
                let label = format!("{name} run {k}/{}", args.runs);
                (out.join(format!("run-{k}")), label)
            };
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            let floor = match &self.nginx {
                Some(nginx) => Some(self.floor(plan, nginx, &dir.join("floor")).await?),
                None => None,
            };
            let backend = args
                .backend
                .clone()
                .map_or(Backend::Payroute, Backend::Given);
            let mut o = self.one_run(plan, &dir, &label, backend, workers).await?;
            o.floor = floor.map(|f| Comparison::new(Side::of(&o), f));
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
            let mut figures = report::figures(&o);
            figures.extend(ladder::extra_figures(&o));
            done.figures.push(figures);
            done.limits = o.limits.describe();
        }
        if args.runs > 1 {
            let (text, json) = report::aggregate(&done.figures);
            std::fs::write(out.join("runs-summary.json"), json)?;
            std::fs::write(out.join("runs-summary.txt"), &text)?;
            println!("{} runs: min / median / max\n{text}", args.runs);
        }
        Ok(done)
    }

    /// The floor's run of `plan` (nginx, `program`), its files in `dir`: its figures.
    async fn floor(&self, plan: &Plan, program: &Path, dir: &Path) -> anyhow::Result<Side> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let backend = Backend::Floor {
            nginx: program.to_path_buf(),
            vus: plan.max_vus,
        };
        let label = format!("{} floor ({} VUs)", plan.scenario.name(), plan.max_vus);
        let o = self.one_run(plan, dir, &label, backend, 1).await?;
        outputs::write(&o, dir)?;
        let side = Side::of(&o);
        println!(
            "floor (nginx answering at once, {} VUs): p99 {:.2} ms over {} requests; nginx CPU {} during the test, {} per accepted payment\n  files: {}\n",
            plan.max_vus,
            side.p99_ms,
            o.data.p99_sample_size,
            side.cpu_seconds.map_or("n/a".into(), |c| format!("{c:.3} s")),
            micros(side.cpu_us_per_payment),
            dir.display()
        );
        for e in &o.events {
            println!("  !!! {}", e.lines().next().unwrap_or(""));
        }
        Ok(side)
    }

    /// One run against `backend`: starts what it needs, waits for a given backend,
    /// runs the test against it, stops it, judges it (the floor against no threshold:
    /// its lag is every payment, by design).
    async fn one_run(
        &self,
        plan: &Plan,
        dir: &Path,
        label: &str,
        backend: Backend,
        workers: usize,
    ) -> anyhow::Result<RunOutput> {
        let (args, cancel) = (&self.args, &self.cancel);
        let is_floor = matches!(backend, Backend::Floor { .. });
        let (topo, mut settings) = self.start(plan, dir, label, backend, workers).await?;
        if is_floor {
            settings.participant = "floor".into();
        }
        let sampled = (topo.started_payroute || !topo.usage().is_empty()).then(|| topo.clone());
        let result = runner::run_once(&settings, sampled, cancel).await;
        let (events, event_counts) = topo.take_events();
        // Stop everything now, whatever happened (the Drop guard covers panics).
        let usage = stop(&topo).await;
        let data = result?;
        let thresholds = match is_floor {
            true => thresholds::Thresholds::default(),
            false => args.thresholds(),
        };
        let judgement = thresholds::judgement(&thresholds, &data, &topo.limits);
        Ok(RunOutput {
            data,
            usage,
            limits: topo.limits.clone(),
            events,
            event_counts,
            command: self.command.clone(),
            provenance: provenance(),
            judgement,
            floor: None,
        })
    }

    /// Starts what a run of `plan` against `backend` with `workers` workers needs, its
    /// files in `dir`; waits for a given backend; connects to the workers' ledger when
    /// they share one: the topology and the run's settings.
    async fn start(
        &self,
        plan: &Plan,
        dir: &Path,
        label: &str,
        backend: Backend,
        workers: usize,
    ) -> anyhow::Result<(Arc<Topology>, RunSettings)> {
        let (args, cancel) = (&self.args, &self.cancel);
        let given = matches!(backend, Backend::Given(_));
        let is_payroute = backend == Backend::Payroute;
        let cfg = topology_config(args, backend, plan.scenario, &self.exe, dir, workers);
        let topo = tokio::task::spawn_blocking(move || Topology::start(&cfg))
            .await
            .context("starting the processes")??;
        let topo = Arc::new(topo);
        if cancel.is_cancelled() {
            return Err(Interrupted.into());
        }
        let mut settings = run_settings(args, plan, &topo, label)?;
        if given {
            ready::wait_for_backend(&settings.backend, args.patience(), cancel).await?;
        }
        if (is_payroute || given) && args.ledger.is_shared() {
            settings.scaled = Some(scaled_settings(args, &topo, workers, is_payroute).await?);
        }
        Ok((topo, settings))
    }
}

/// The scaled topology's settings of a run: its ledger, as said and connected to.
async fn scaled_settings(
    args: &Args,
    topo: &Topology,
    workers: usize,
    started: bool,
) -> anyhow::Result<ScaledSettings> {
    let probe = match &topo.ledger_url {
        Some(url) => Some(Arc::new(LedgerProbe::connect(url).await?)),
        None => None,
    };
    let ledger = match (&args.ledger, &topo.ledger_url) {
        (launcher::Ledger::LocalPostgres, Some(url)) => format!(
            "postgres (a throwaway cluster: {})",
            crate::scaled::hide_password(url)
        ),
        (_, Some(url)) => crate::scaled::hide_password(url),
        (l, None) => l.to_string(),
    };
    Ok(ScaledSettings {
        workers: if started { workers } else { 0 },
        ledger,
        probe,
        kill_at: args.kill_worker.map(Duration::from_secs_f64),
    })
}

/// What to start for a run against `backend` whose files go to `dir`.
fn topology_config(
    args: &Args,
    backend: Backend,
    scenario: Scenario,
    exe: &Path,
    dir: &Path,
    workers: usize,
) -> TopologyConfig {
    TopologyConfig {
        exe: exe.to_path_buf(),
        backend,
        default: args.default.clone(),
        fallback: args.fallback.clone(),
        fees: scenario.fees(),
        port: args.port,
        emulator_ports: args.emulator_ports.into(),
        lb: args.lb,
        limits: args.limits,
        workers,
        ledger: args.ledger.clone(),
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
        scaled: None,
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
