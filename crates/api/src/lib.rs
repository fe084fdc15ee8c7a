//! `payroute api`. STUB: being implemented (issue "service").

use netio::ListenAddr;
use std::path::PathBuf;

/// Flags of `payroute api`.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Address to serve HTTP on: HOST:PORT, :PORT or unix:PATH.
    #[arg(long, env = "PAYROUTE_LISTEN", default_value = "0.0.0.0:9999")]
    pub listen: ListenAddr,
    /// The worker's Unix socket.
    #[arg(long, env = "PAYROUTE_WORKER_SOCKET", default_value = "/run/payroute/worker.sock")]
    pub worker_socket: PathBuf,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let _ = args;
    anyhow::bail!("not implemented yet")
}
