//! `payroute up`: the whole topology of the compose deployment as local processes:
//! load balancer on one port → two api instances → worker → two processors. Scaled
//! out (`--workers N --ledger postgres|URL`): N workers sharing a PostgreSQL ledger,
//! every api instance given all of them, and with `--ledger postgres` a throwaway
//! PostgreSQL cluster in the run directory.
//!
//! Contract used by `payroute bench` and the tests (keep these names and meanings):
//! - [`UpConfig`]: what to start; [`start`](fn@start) starts it and waits until the
//!   port answers `GET /health` with 200.
//! - [`Running::backend_url`], [`Running::default_url`], [`Running::fallback_url`].
//! - [`Running::usage`]: CPU seconds, peak RSS and throttled time of each process so far.
//! - [`Running::stop`]: stops every process it started (by PID), returns final usage.
//!   Dropping a [`Running`] stops everything too, so a panicking test leaves nothing.
//!
//! [`start`](fn@start) installs no signal handler and touches no global state but the
//! children and (with [`Limits::Rinha`]) their cgroups; only [`run`], the CLI, handles
//! Ctrl-C and SIGTERM. A background thread supervises the children: a role that exits is
//! reported as an [`Event`] and, under [`Restart::Always`], restarted with an
//! exponential backoff (emulated processors are reported, never restarted: a restarted
//! emulator would have empty books and silently disagree with payroute's summary).
//!
//! Where things are, in the order a start goes:
//! - `cli`: the flags ([`Args`]) and what they choose ([`Lb`], [`Limits`], [`Restart`]).
//! - `config`: [`UpConfig`], [`StartOptions`], and `config::defaults`, the one source of
//!   every default of both.
//! - `settings`: settings that cannot work, refused first, naming the flag.
//! - `preflight`: the run directory, the ports and nginx's reach, checked next.
//! - `limits`: what `--limits` becomes ([`LimitsStatus`], cgroups), from `resources`
//!   (the CPU and memory split, shared with the compose file) and `cgroup` (which
//!   version the machine has, v1 or hybrid or v2), with `cgroup_v1` and `cgroup_v2`.
//! - `start`: [`start`](fn@start) and [`start_with`], one function per role, using
//!   `procs` (spawn, signal, `/proc`), `probe` (readiness), `lbconf` (the nginx and
//!   haproxy configs, made from the compose deployment's) and [`pgcluster`] (a throwaway
//!   PostgreSQL cluster: `initdb`, `pg_ctl`; reused by the tests), with `pginstall`
//!   (where PostgreSQL is, which user runs it).
//! - `children`: the table of children that the handle and the supervisor share, with
//!   `pgrole`, the cluster as a role (not a child: `pg_ctl` detaches it).
//! - `supervise`: the supervisor thread and each role's restart backoff; `events`: what
//!   it reports ([`Event`]).
//! - `running`: the handle ([`Running`]); `stop`: the order and signals of the stop;
//!   `usage`: what each process used ([`ProcessUsage`], [`usage_table`]).
//!
//! Beside `payroute up`, the deployment's other consumer of `resources` and of the
//! files in `deploy/`: `submission`, the challenge entry (`payroute submission`,
//! [`SubmissionArgs`]).

mod cgroup;
mod cgroup_v1;
mod cgroup_v2;
mod children;
mod cli;
mod config;
mod events;
pub mod lbconf;
mod limits;
pub mod pgcluster;
mod pginstall;
mod pgrole;
mod preflight;
mod probe;
mod procs;
pub mod resources;
mod running;
mod settings;
mod start;
mod stop;
mod submission;
mod supervise;
mod usage;

use anyhow::Context;
pub use cli::{Args, Lb, Ledger, Limits, Restart};
pub use config::{StartOptions, UpConfig, DEFAULT_READY_TIMEOUT};
pub use events::Event;
pub use limits::LimitsStatus;
pub use running::{hide_password, Running};
pub use start::{start, start_with};
use std::time::Duration;
pub use submission::{run_submission, submission_compose, write_submission, SubmissionArgs};
pub use usage::{usage_table, ProcessUsage, UsageDetail};

/// How often [`run`] empties the events the supervisor keeps: it has logged them
/// already, so they are only dropped, before they pile up.
const DROP_EVENTS_EVERY: Duration = Duration::from_secs(5);

/// Entry point of `payroute up`: starts everything, prints what runs where, reports
/// child exits and restarts, and stops everything on Ctrl-C or SIGTERM.
pub fn run(args: Args) -> anyhow::Result<()> {
    let exe = std::env::current_exe().context("cannot find the payroute executable")?;
    let config = UpConfig::from_args(&args, exe);
    let options = StartOptions::from_args(&args);
    // Also checked by `start_with`; first here, so that a refusal is all that is said.
    settings::check(&config, &options)?;
    let rt = netio::single_thread_runtime().context("cannot start the signal runtime")?;
    rt.block_on(async move {
        use tokio::signal::unix::{signal, SignalKind};
        // Handlers first: a Ctrl-C during the start must stop what was started, not
        // kill the launcher and orphan the children.
        let mut interrupt = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
        let mut terminate = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
        eprintln!(
            "payroute up: starting (logs in {})",
            config.run_dir.display()
        );
        let running = start_with(&config, &options)?;
        println!("{}", running.describe());
        println!("Ctrl-C stops everything.");
        let mut tick = tokio::time::interval(DROP_EVENTS_EVERY);
        let why = loop {
            tokio::select! {
                _ = interrupt.recv() => break "SIGINT",
                _ = terminate.recv() => break "SIGTERM",
                // The supervisor has logged them (stderr) already.
                _ = tick.tick() => drop(running.take_events()),
            }
        };
        eprintln!("payroute up: {why}: stopping everything");
        let usage = running.stop_with_details()?;
        println!("{}", usage_table(&usage));
        println!("stopped; logs kept in {}", config.run_dir.display());
        Ok(())
    })
}
