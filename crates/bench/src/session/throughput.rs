//! The throughput runs of a session (`--throughput SECS`): for each worker count of
//! `--workers` (one unless a list is given), `--runs` runs, each with fresh processes,
//! its files (`throughput.txt`, `throughput.json`) in `--out` (`workers-N/` with a list,
//! `run-K/` with several runs); then, with a list, the table `scale.txt`.

use super::{put, stop, Session};
use crate::args::THROUGHPUT_VUS;
use crate::runner::throughput::run_throughput;
use crate::scenario::{Plan, Scenario};
use crate::throughput::ThroughputOutput;
use crate::topology::Backend;
use crate::{provenance, report};
use anyhow::Context;
use std::path::Path;
use std::time::Duration;

impl Session {
    /// Every throughput run asked for; the thresholds crossed (none: a throughput run
    /// has no threshold).
    pub(super) async fn throughput_all(&self) -> anyhow::Result<Vec<String>> {
        let (args, out) = (&self.args, &self.args.out);
        let counts = &args.workers;
        let mut rows = Vec::new();
        for &n in counts {
            let dir = match counts.len() {
                1 => out.to_path_buf(),
                _ => out.join(format!("workers-{n}")),
            };
            let mut figures = Vec::new();
            for k in 1..=args.runs {
                let (dir, label) = match args.runs {
                    1 => (dir.clone(), format!("throughput, {n} worker(s)")),
                    r => (
                        dir.join(format!("run-{k}")),
                        format!("throughput, {n} worker(s), run {k}/{r}"),
                    ),
                };
                std::fs::create_dir_all(&dir)
                    .with_context(|| format!("creating {}", dir.display()))?;
                let o = self.throughput_run(n, &dir, &label).await?;
                put(&dir, "throughput.txt", &o.text())?;
                put(
                    &dir,
                    "throughput.json",
                    &serde_json::to_string_pretty(&o.json())?,
                )?;
                println!(
                    "{}  files: {}\n",
                    o.text(),
                    dir.join("throughput.json").display()
                );
                figures.push(o.figures());
            }
            rows.push(report::scale_row(n, &figures));
        }
        if counts.len() > 1 || args.runs > 1 {
            self.write_scale("throughput", &rows)?;
        }
        Ok(Vec::new())
    }

    /// One throughput run with `workers` workers, its processes' files in `dir`.
    async fn throughput_run(
        &self,
        workers: usize,
        dir: &Path,
        label: &str,
    ) -> anyhow::Result<ThroughputOutput> {
        let args = &self.args;
        let secs = args.throughput.unwrap_or(1.0);
        let vus = args.max_requests.unwrap_or(THROUGHPUT_VUS);
        // The plan gives the run its length and VUs; its fees are the final's.
        let plan = Plan::for_run(
            Scenario::Final,
            Some(Duration::from_secs_f64(secs)),
            Some(vus),
            args.seed,
        );
        let backend = args
            .backend
            .clone()
            .map_or(Backend::Payroute, Backend::Given);
        let (topo, mut settings) = self.start(&plan, dir, label, backend, workers).await?;
        settings.progress = false;
        eprintln!("payroute bench: {label}: {vus} VUs for {secs} s, then a drain");
        let sampled = (topo.started_payroute || !topo.usage().is_empty()).then(|| topo.clone());
        let result = run_throughput(&settings, sampled, &self.cancel).await;
        let (events, _) = topo.take_events();
        let usage = stop(&topo).await;
        Ok(ThroughputOutput {
            data: result?,
            usage,
            limits: topo.limits.clone(),
            events,
            command: self.command.clone(),
            provenance: provenance(),
        })
    }
}
