//! `payroute`: one binary, one subcommand per role. Each role is a library whose
//! `run` does the work; this file only parses the command line and sets up logging.

mod generate;
mod logging;

use clap::{CommandFactory, Parser, Subcommand};
use logging::LogFormat;

/// A payment intermediary: accepts payments on :9999 and forwards each one to the
/// cheaper of two payment processors that can take it, keeping a summary that agrees
/// with the processors' books.
///
/// A deployment is one worker, two or more api instances behind a load balancer, and
/// two processors. `payroute up` runs all of it on one machine.
#[derive(Parser)]
#[command(
    name = "payroute",
    version,
    about,
    long_about,
    propagate_version = true
)]
struct Cli {
    /// Log format on stderr: `text` (coloured only on a terminal, never under NO_COLOR)
    /// or `json` (one object per line). `payroute up` passes it on to the roles it runs.
    #[arg(
        long,
        global = true,
        env = logging::ENV_FORMAT,
        value_enum,
        default_value_t = LogFormat::Text
    )]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// HTTP front: validates payments, hands them to the worker, answers at once.
    Api(api::Args),
    /// Owns the queue, forwards payments to the processors, keeps the summary.
    Worker(worker::Args),
    /// An in-memory payment processor that behaves like the official one.
    Processor(emulator::Args),
    /// Runs the official load tests (preview or final) against a backend and scores it.
    Bench(bench::Args),
    /// Runs the whole system: load balancer, two api instances, worker, processors.
    Up(launcher::Args),
    /// Writes participantes/<id>/ for a Rinha de Backend 2025 entry: compose file with the
    /// pushed image, nginx.conf, info.json, README.md.
    Submission(launcher::SubmissionArgs),
    /// Prints a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions(generate::CompletionsArgs),
    /// Prints a man page (roff): payroute(1), or a subcommand's.
    Man(generate::ManArgs),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    // The roles that `up` (and `bench`, through it) starts inherit the environment: a
    // format given as a flag reaches them this way. Set before any thread is started.
    std::env::set_var(logging::ENV_FORMAT, cli.log_format.as_str());
    logging::init(cli.log_format);
    let result = match cli.command {
        Command::Api(a) => api::run(a),
        Command::Worker(a) => worker::run(a),
        Command::Processor(a) => emulator::run(a),
        // The bench has exit codes of its own (thresholds crossed, aborted, interrupted).
        Command::Bench(a) => return bench::run(a),
        Command::Up(a) => launcher::run(a),
        Command::Submission(a) => launcher::run_submission(a),
        Command::Completions(a) => {
            generate::completions(Cli::command(), &a, &mut std::io::stdout())
        }
        Command::Man(a) => generate::man(Cli::command(), &a, &mut std::io::stdout()),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("payroute: {e:#}");
            // A setting that cannot work is a usage error, like clap's own: exit 2.
            if e.chain().any(|c| c.is::<netio::SettingError>()) {
                std::process::ExitCode::from(netio::EXIT_BAD_SETTING)
            } else {
                std::process::ExitCode::FAILURE
            }
        }
    }
}
