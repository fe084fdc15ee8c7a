//! `payroute worker`. Being implemented.

pub mod engine;

use std::path::PathBuf;

/// Flags of `payroute worker`.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// The Unix socket the api instances connect to.
    #[arg(
        long,
        env = "PAYROUTE_WORKER_SOCKET",
        default_value = "/run/payroute/worker.sock"
    )]
    pub socket: PathBuf,
    /// Base URL of the default (cheaper) processor.
    #[arg(
        long,
        env = "PAYROUTE_DEFAULT_URL",
        default_value = "http://payment-processor-default:8080"
    )]
    pub default_url: String,
    /// Base URL of the fallback processor.
    #[arg(
        long,
        env = "PAYROUTE_FALLBACK_URL",
        default_value = "http://payment-processor-fallback:8080"
    )]
    pub fallback_url: String,
    /// Directory of the payment log (created if missing).
    #[arg(long, env = "PAYROUTE_DATA_DIR", default_value = "/var/lib/payroute")]
    pub data_dir: PathBuf,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let _ = args;
    anyhow::bail!("not implemented yet")
}
