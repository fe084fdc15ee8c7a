//! `payroute bench`: the official load tests, reproduced. STUB: to be implemented
//! (issue "bench").

/// Flags of `payroute bench`.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {}

/// Entry point of `payroute bench`.
pub fn run(args: Args) -> anyhow::Result<()> {
    let _ = args;
    anyhow::bail!("not implemented yet")
}
