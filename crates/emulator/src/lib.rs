//! `payroute processor`: an in-memory payment processor emulator, faithful to the
//! official one (see SPEC §2). STUB: to be implemented (issue "processor emulator").

use clap::Args as ClapArgs;
use netio::{CancellationToken, ListenAddr, Listener};

/// Flags of `payroute processor`.
#[derive(Debug, Clone, ClapArgs)]
pub struct Args {
    /// Address to listen on: HOST:PORT, :PORT or unix:PATH.
    #[arg(long, env = "PAYROUTE_PROCESSOR_LISTEN", default_value = "0.0.0.0:8080")]
    pub listen: ListenAddr,
    /// Fee per transaction as a fraction (0.05 = 5%).
    #[arg(long, env = "PAYROUTE_PROCESSOR_FEE", default_value_t = 0.05)]
    pub fee: f64,
    /// Initial admin token (X-Rinha-Token).
    #[arg(long, env = "PAYROUTE_PROCESSOR_TOKEN", default_value = "123")]
    pub token: String,
    /// Window of the health endpoint's rate limiter, in seconds.
    #[arg(long, env = "PAYROUTE_PROCESSOR_RATE_LIMIT_SECS", default_value_t = 5)]
    pub rate_limit_secs: u64,
}

/// Runs the emulator on an already bound listener until `shutdown` is cancelled.
pub async fn serve(listener: Listener, args: Args, shutdown: CancellationToken) -> anyhow::Result<()> {
    let _ = (listener, args, shutdown);
    anyhow::bail!("not implemented yet")
}

/// Entry point of `payroute processor`.
pub fn run(args: Args) -> anyhow::Result<()> {
    let _ = args;
    anyhow::bail!("not implemented yet")
}
