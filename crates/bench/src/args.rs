//! The flags of `payroute bench` and their defaults, in one place: clap shows and
//! applies the constants below, [`Args::default`] returns them, and a test checks that
//! an empty command line gives exactly [`Args::default`].

use crate::families::DEFAULT_SEED;
use crate::ready::{Patience, RETRY_INTERVAL, TRIES};
use crate::runner::INITIAL_TOKEN;
use crate::scenario::Scenario;
use crate::thresholds::Thresholds;
use launcher::{Lb, Ledger, Limits};
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

/// `--scenario`: the final, the test the challenge was scored with.
const SCENARIO: Scenario = Scenario::Final;
/// `--scenario` with `--ladder`: the preview, whose 550 VUs the ladder multiplies
/// (550, 1,650, 5,500 for `--ladder 1,3,10`).
const LADDER_SCENARIO: Scenario = Scenario::Preview;
/// `--token`: the scripts' default.
const TOKEN: &str = INITIAL_TOKEN;
/// `--out`.
const OUT: &str = "bench-out";
/// `--runs`.
const RUNS: u32 = 1;
/// `--port`: the challenge's public port.
const PORT: u16 = 9999;
/// `--emulator-ports`: the official processors' ports.
const EMULATOR_PORTS: EmulatorPorts = EmulatorPorts {
    default: 8001,
    fallback: 8002,
};
/// `--lb`: the one that needs nothing installed.
const LB: Lb = Lb::Embedded;
/// `--limits`: the challenge's, so that figures compare with its.
const LIMITS: Limits = Limits::Rinha;
/// `--workers`: the challenge's topology, one worker.
const WORKERS: usize = 1;
/// `--ledger`: the challenge's topology, the worker's own log.
const LEDGER: Ledger = Ledger::File;
/// `--max-requests` of a throughput run: enough connections to keep two api
/// instances and a worker busy without a pause, few enough for a shared machine.
pub const THROUGHPUT_VUS: u32 = 64;
/// Most workers the launcher starts.
pub const MAX_WORKERS: usize = 16;

/// Flags of `payroute bench`.
#[derive(Debug, Clone, PartialEq, clap::Args)]
#[command(version = crate::provenance::VERSION)]
pub struct Args {
    /// Which test: one of the two official ones, or a scenario family (the final's
    /// rules, fees 7%/10% and scoring, with its own schedule for any --duration; every
    /// family ends with both processors working for the last sixth of the run)
    /// [default: final; preview with --ladder].
    #[arg(long, value_enum, env = "PAYROUTE_BENCH_SCENARIO")]
    pub scenario: Option<Scenario>,

    /// Run several scenarios in one go, e.g. `default-down,flapping,random`: each in
    /// its own directory under --out (with --runs each), then one table,
    /// matrix.txt and matrix.json (% of the ceiling, lag, inconsistencies, fallback
    /// share, p99; medians across --runs).
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        conflicts_with = "scenario",
        env = "PAYROUTE_BENCH_SCENARIOS"
    )]
    pub scenarios: Vec<Scenario>,

    /// A load ladder: the scenario at these multiples of its VUs (of --max-requests when
    /// given), one after the other, each with fresh processes under --limits, in
    /// rung-Nx/ under --out; then one table: ladder.txt, ladder.json, ladder.html.
    /// `--ladder 1,3,10` runs the preview at 550, 1,650 and 5,500 VUs.
    #[arg(
        long,
        value_delimiter = ',',
        conflicts_with = "scenarios",
        env = "PAYROUTE_BENCH_LADDER"
    )]
    pub ladder: Vec<f64>,

    /// Seed of the `random` scenario's schedule (the same seed, the same schedule).
    #[arg(long, default_value_t = DEFAULT_SEED, env = "PAYROUTE_BENCH_SEED")]
    pub seed: u64,

    /// MAX_REQUESTS: virtual users at the end of the linear ramp from 1
    /// [default: 550 for preview, 603 for final and the families].
    #[arg(long, env = "PAYROUTE_BENCH_MAX_REQUESTS")]
    pub max_requests: Option<u32>,

    /// Length of the test in seconds, for quick runs: stage times scale in proportion,
    /// the ramp spans it, the checker period scales too (kept within 1-10 s); the
    /// teardown window stays the official one [default: 60 for preview, 300 for final and
    /// the families].
    #[arg(long, env = "PAYROUTE_BENCH_DURATION")]
    pub duration: Option<f64>,

    /// Backend to test, as http://HOST:PORT. Without it the bench starts payroute's
    /// whole topology exactly as `payroute up` does, under the challenge's limits.
    #[arg(long, env = "PAYROUTE_BENCH_BACKEND")]
    pub backend: Option<String>,

    /// With --backend: tries of `GET /payments-summary` before giving up (exit 108), as
    /// the official runner waits for a backend before starting the test.
    #[arg(long, default_value_t = TRIES, value_parser = clap::value_parser!(u32).range(1..),
          env = "PAYROUTE_BENCH_BACKEND_TRIES")]
    pub backend_tries: u32,

    /// With --backend: seconds between those tries.
    #[arg(long, default_value_t = RETRY_INTERVAL.as_secs_f64(), env = "PAYROUTE_BENCH_BACKEND_RETRY_SECS")]
    pub backend_retry_secs: f64,

    /// Default payment processor URL (with --fallback). Without both, the bench starts
    /// two emulators with the scenario's fees (preview 5%/15%, final 7%/10%).
    #[arg(long, requires = "fallback", env = "PAYROUTE_BENCH_DEFAULT")]
    pub default: Option<String>,

    /// Fallback payment processor URL (with --default).
    #[arg(long, requires = "default", env = "PAYROUTE_BENCH_FALLBACK")]
    pub fallback: Option<String>,

    /// Admin token set on both processors in setup (authenticated with their initial
    /// token, 123), then used by every admin call. The published runs used a fresh UUID.
    #[arg(long, default_value = TOKEN, env = "PAYROUTE_BENCH_TOKEN")]
    pub token: String,

    /// Directory for the result file, report.html and bench.json (run-K/ subdirectories
    /// with --runs).
    #[arg(long, default_value = OUT, env = "PAYROUTE_BENCH_OUT")]
    pub out: PathBuf,

    /// Repeat the whole test this many times (fresh processes and setup each time) and
    /// report the min / median / max of every figure.
    #[arg(long, default_value_t = RUNS, value_parser = clap::value_parser!(u32).range(1..))]
    pub runs: u32,

    /// `participante` in the result file [default: payroute when the bench starts it,
    /// anonymous otherwise, as the scripts].
    #[arg(long, env = "PAYROUTE_BENCH_PARTICIPANT")]
    pub participant: Option<String>,

    /// Port of the payroute the bench starts (0: any free port).
    #[arg(long, default_value_t = PORT, env = "PAYROUTE_BENCH_PORT")]
    pub port: u16,

    /// Ports of the emulators the bench starts, DEFAULT,FALLBACK (0: any free port).
    #[arg(long, default_value_t = EMULATOR_PORTS, env = "PAYROUTE_BENCH_EMULATOR_PORTS")]
    pub emulator_ports: EmulatorPorts,

    /// Load balancer of the payroute the bench starts (as `payroute up --lb`).
    #[arg(long, value_enum, default_value_t = LB, env = "PAYROUTE_BENCH_LB")]
    pub lb: Lb,

    /// Resource limits of the payroute the bench starts: `rinha` (1.5 CPU and 350 MB
    /// in all, split as in the compose file, with cgroups) or `off`.
    #[arg(long, value_enum, default_value_t = LIMITS, env = "PAYROUTE_BENCH_LIMITS")]
    pub limits: Limits,

    /// Threshold: the scored p99 (rounded to 2 decimals as the score rounds it) must not
    /// exceed this many ms, or the bench exits 99 once the run is over.
    #[arg(long, env = "PAYROUTE_BENCH_MAX_P99_MS")]
    pub max_p99_ms: Option<f64>,

    /// Threshold: the checker's inconsistency count must not exceed this.
    #[arg(long, env = "PAYROUTE_BENCH_MAX_INCONSISTENCIES")]
    pub max_inconsistencies: Option<f64>,

    /// Threshold: failed POSTs (not answered 200/201/202/204) must not exceed this.
    #[arg(long, env = "PAYROUTE_BENCH_MAX_FAILED")]
    pub max_failed: Option<u64>,

    /// Threshold: the lag (successful POSTs not counted at the teardown) must not
    /// exceed this. A negative lag (caixa dois) always fails.
    #[arg(long, env = "PAYROUTE_BENCH_MAX_LAG")]
    pub max_lag: Option<f64>,

    /// Threshold: the challenge's limits must have been enforced on the payroute the
    /// bench starts (not with --backend or --limits off).
    #[arg(long, env = "PAYROUTE_BENCH_REQUIRE_LIMITS")]
    pub require_limits: bool,

    /// Also run the same test against the floor, a backend that does nothing (nginx,
    /// started by the bench, answering at once), and report the p99 and the CPU per
    /// accepted payment as ratios to it. Needs nginx installed
    /// (scripts/install-deps.sh). Each run is paired with a floor run just before it,
    /// whose files go to floor/ beside the run's (run-K/floor/ with --runs).
    #[arg(long, env = "PAYROUTE_BENCH_FLOOR")]
    pub floor: bool,

    /// Worker processes of the payroute the bench starts (as `payroute up --workers`);
    /// more than one needs a shared --ledger. A list (`1,2,3`) runs the test (the
    /// scenario, or --throughput) once per count (--runs times each), each in
    /// workers-N/ under --out with its usual files, then writes one table of them,
    /// scale.txt and scale.json: accepts/s, processed/s, p99, CPU ms per accepted
    /// payment by role (api, worker, postgres), the ledger's WAL bytes, transactions
    /// and rows written per payment, failed POSTs, lag, inconsistencies and, with
    /// --kill-worker, the kill's figures.
    #[arg(
        long,
        value_name = "N[,N...]",
        value_delimiter = ',',
        default_values_t = [WORKERS],
        env = "PAYROUTE_BENCH_WORKERS"
    )]
    pub workers: Vec<usize>,

    /// Where the workers of the payroute the bench starts keep the payments (as
    /// `payroute up --ledger`): `file` (one worker and its own log: the challenge's
    /// topology), `postgres` (a throwaway PostgreSQL cluster in the run directory,
    /// started and stopped by the bench; needs PostgreSQL installed) or
    /// `postgres://USER@HOST:PORT/DB`. With a shared ledger the bench runs without the
    /// challenge's limits (they have no share for several workers and a database), and
    /// the summary, report.html and bench.json gain a "scaled out" part: accepts/s and
    /// processed/s, CPU ms per accepted payment by role (api, worker: all and each,
    /// postgres: the postmaster and its backends), and the ledger's WAL bytes,
    /// transactions and rows written per accepted payment, from PostgreSQL's counters
    /// (pg_current_wal_lsn, pg_stat_database) read before and after the test, the
    /// bench's own transactions left out. With --backend, a `postgres://` URL names the
    /// backend's database, to read the counters from.
    #[arg(long, value_name = "file|postgres|URL", default_value_t = LEDGER, env = "PAYROUTE_BENCH_LEDGER")]
    pub ledger: Ledger,

    /// Kill worker1 with SIGKILL this many seconds into the test (the launcher starts
    /// it again, as `payroute up` does). Reports, in the summary and bench.json: the
    /// POSTs that failed from the kill on (answered 503, not answered), when worker1
    /// was running again, the pending payments it owned at the kill and how long until
    /// they were all finished, and the payments orphaned (owner's lease lapsed) over
    /// time, from the ledger polled every 100 ms until the end of the run. Needs a
    /// shared --ledger, on a payroute the bench starts. No default: no kill.
    #[arg(long, value_name = "SECS", env = "PAYROUTE_BENCH_KILL_WORKER")]
    pub kill_worker: Option<f64>,

    /// Instead of a scenario, a throughput run of SECS seconds: --max-requests VUs (64
    /// unless given) each posting payments on its own connection without a pause, the
    /// processors healthy and without delay, then a drain of at most 30 s until the
    /// processors' books count every accepted payment. Reports accepted payments per
    /// second of load and processed per second of load and drain, the POSTs'
    /// latencies, failures, CPU ms per payment by role and, with a shared --ledger,
    /// the ledger's cost per payment (throughput.txt, throughput.json; with a
    /// --workers list, scale.txt). Not scored, no thresholds.
    #[arg(
        long,
        value_name = "SECS",
        conflicts_with_all = ["scenario", "scenarios", "ladder", "floor"],
        env = "PAYROUTE_BENCH_THROUGHPUT"
    )]
    pub throughput: Option<f64>,

    /// Do not sample the backend's /health for the report (never counted in the p99).
    #[arg(long)]
    pub no_health: bool,

    /// No progress display (the summary is still printed).
    #[arg(long)]
    pub no_progress: bool,
}

impl Default for Args {
    fn default() -> Args {
        Args {
            scenario: None,
            scenarios: Vec::new(),
            ladder: Vec::new(),
            seed: DEFAULT_SEED,
            max_requests: None,
            duration: None,
            backend: None,
            backend_tries: TRIES,
            backend_retry_secs: RETRY_INTERVAL.as_secs_f64(),
            default: None,
            fallback: None,
            token: TOKEN.to_string(),
            out: PathBuf::from(OUT),
            runs: RUNS,
            participant: None,
            port: PORT,
            emulator_ports: EMULATOR_PORTS,
            lb: LB,
            limits: LIMITS,
            max_p99_ms: None,
            max_inconsistencies: None,
            max_failed: None,
            max_lag: None,
            require_limits: false,
            floor: false,
            workers: vec![WORKERS],
            ledger: LEDGER,
            kill_worker: None,
            throughput: None,
            no_health: false,
            no_progress: false,
        }
    }
}

impl Args {
    /// The scenario of a single run or of the ladder: `--scenario`, else the final,
    /// or the preview with `--ladder`.
    pub fn chosen_scenario(&self) -> Scenario {
        let default = match self.ladder.is_empty() {
            true => SCENARIO,
            false => LADDER_SCENARIO,
        };
        self.scenario.unwrap_or(default)
    }

    /// The thresholds a finished run must meet.
    pub fn thresholds(&self) -> Thresholds {
        Thresholds {
            max_p99_ms: self.max_p99_ms,
            max_inconsistencies: self.max_inconsistencies,
            max_failed: self.max_failed,
            max_lag: self.max_lag,
            require_limits: self.require_limits,
        }
    }

    /// Seconds of one test: the throughput run's, else the scenario's (`--duration`
    /// or its official length).
    pub fn test_seconds(&self) -> f64 {
        let official = self.chosen_scenario().official_duration().as_secs_f64();
        self.throughput.or(self.duration).unwrap_or(official)
    }

    /// How long to wait for a backend given with `--backend`.
    pub fn patience(&self) -> Patience {
        Patience {
            tries: self.backend_tries,
            interval: std::time::Duration::from_secs_f64(self.backend_retry_secs.max(0.0)),
        }
    }
}

/// Ports of the two emulators the bench starts (0: any free port); `DEFAULT,FALLBACK`
/// on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EmulatorPorts {
    pub default: u16,
    pub fallback: u16,
}

impl From<EmulatorPorts> for (u16, u16) {
    fn from(p: EmulatorPorts) -> (u16, u16) {
        (p.default, p.fallback)
    }
}

impl fmt::Display for EmulatorPorts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{},{}", self.default, self.fallback)
    }
}

impl FromStr for EmulatorPorts {
    type Err = PortsError;

    fn from_str(s: &str) -> Result<EmulatorPorts, PortsError> {
        let (default, fallback) = parse_ports(s)?;
        Ok(EmulatorPorts { default, fallback })
    }
}

/// Why a `DEFAULT,FALLBACK` pair of ports was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PortsError {
    /// No comma: the whole text.
    NotAPair(String),
    /// One side is not a port number: that side.
    NotAPort(String),
}

impl fmt::Display for PortsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PortsError::NotAPair(s) => {
                write!(f, "`{s}`: expected DEFAULT,FALLBACK, as in 8001,8002")
            }
            PortsError::NotAPort(x) => write!(f, "`{x}` is not a port"),
        }
    }
}

impl std::error::Error for PortsError {}

/// `DEFAULT,FALLBACK` (spaces around either port allowed).
fn parse_ports(s: &str) -> Result<(u16, u16), PortsError> {
    let (a, b) = s
        .split_once(',')
        .ok_or_else(|| PortsError::NotAPair(s.to_string()))?;
    let p = |x: &str| {
        x.trim()
            .parse::<u16>()
            .map_err(|_| PortsError::NotAPort(x.to_string()))
    };
    Ok((p(a)?, p(b)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: Args,
    }

    #[test]
    fn an_empty_command_line_gives_the_defaults() {
        // (Run without PAYROUTE_BENCH_* variables set: they would be read.)
        let cli = Cli::try_parse_from(["bench"]).unwrap();
        assert_eq!(cli.args, Args::default());
    }

    /// `payroute bench --version`, with `payroute`'s own command shape (a version
    /// propagated to subcommands): the bench's version names its commit.
    #[test]
    fn bench_version_names_the_commit() {
        #[derive(Parser)]
        #[command(name = "payroute", version, propagate_version = true)]
        struct Top {
            #[command(subcommand)]
            command: Sub,
        }
        #[derive(clap::Subcommand)]
        enum Sub {
            Bench(Args),
        }
        let e = Top::try_parse_from(["payroute", "bench", "--version"])
            .err()
            .unwrap();
        assert_eq!(e.kind(), clap::error::ErrorKind::DisplayVersion);
        let text = e.to_string();
        assert!(
            text.contains(&format!("(commit {})", crate::provenance::COMMIT)),
            "{text}"
        );
    }

    #[test]
    fn scenarios_take_a_list_and_exclude_scenario() {
        let cli =
            Cli::try_parse_from(["bench", "--scenarios", "default-down,flapping,random"]).unwrap();
        assert_eq!(
            cli.args.scenarios,
            [Scenario::DefaultDown, Scenario::Flapping, Scenario::Random]
        );
        assert!(Cli::try_parse_from(["bench", "--scenarios", "nope"]).is_err());
        let both = Cli::try_parse_from(["bench", "--scenario", "final", "--scenarios", "final"]);
        assert!(both.is_err());
    }

    #[test]
    fn the_ladder_takes_multiples_and_runs_the_preview_unless_told() {
        let cli = Cli::try_parse_from(["bench", "--ladder", "1,3,10"]).unwrap();
        assert_eq!(cli.args.ladder, [1.0, 3.0, 10.0]);
        assert_eq!(cli.args.chosen_scenario(), Scenario::Preview);
        let cli = Cli::try_parse_from(["bench", "--ladder", "0.5,2", "--scenario", "final"]);
        let args = cli.unwrap().args;
        assert_eq!(args.ladder, [0.5, 2.0]);
        assert_eq!(args.chosen_scenario(), Scenario::Final);
        assert_eq!(Args::default().chosen_scenario(), Scenario::Final);
        assert!(Cli::try_parse_from(["bench", "--ladder", "1,x"]).is_err());
        let with_matrix = Cli::try_parse_from(["bench", "--ladder", "1", "--scenarios", "final"]);
        assert!(with_matrix.is_err());
    }

    #[test]
    fn scaled_flags_parse() {
        let cli = Cli::try_parse_from([
            "bench",
            "--workers",
            "1,2,3",
            "--ledger",
            "postgres",
            "--kill-worker",
            "4.5",
        ])
        .unwrap();
        assert_eq!(cli.args.workers, [1, 2, 3]);
        assert_eq!(cli.args.ledger, Ledger::LocalPostgres);
        assert_eq!(cli.args.kill_worker, Some(4.5));
        let url = Cli::try_parse_from(["bench", "--ledger", "postgres://u@h:5/d"]).unwrap();
        assert_eq!(
            url.args.ledger,
            Ledger::Postgres("postgres://u@h:5/d".into())
        );
        assert!(Cli::try_parse_from(["bench", "--ledger", "mysql"]).is_err());
        let t = Cli::try_parse_from(["bench", "--throughput", "5"]).unwrap();
        assert_eq!(t.args.test_seconds(), 5.0);
        assert!(
            Cli::try_parse_from(["bench", "--throughput", "5", "--scenario", "final"]).is_err()
        );
        assert_eq!(Args::default().test_seconds(), 300.0);
    }

    #[test]
    fn parses_port_pairs() {
        assert_eq!(parse_ports("8001,8002"), Ok((8001, 8002)));
        assert_eq!(parse_ports("0, 0"), Ok((0, 0)));
        assert!(parse_ports("8001").is_err());
    }
}
