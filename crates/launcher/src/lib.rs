//! `payroute up`: the whole topology as processes. STUB: to be implemented (issue
//! "deploy").
//!
//! Contract used by `payroute bench` (keep these names and meanings):
//! - [`UpConfig`]: what to start; [`start`] starts it and waits until :port answers.
//! - [`Running::backend_url`], [`Running::default_url`], [`Running::fallback_url`].
//! - [`Running::usage`]: CPU seconds, peak RSS and throttled time of each process so far.
//! - [`Running::stop`]: stops every process it started (by PID), returns final usage.

use std::path::PathBuf;

/// Which load balancer fronts the two api instances.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Lb {
    /// Both api processes bind the port with SO_REUSEPORT; nothing to install.
    Embedded,
    Nginx,
    Haproxy,
}

/// Resource limits applied to the processes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Limits {
    /// The compose file's per-service CPU and memory limits, via cgroups.
    Rinha,
    Off,
}

/// Flags of `payroute up`.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {}

/// What [`start`] runs.
#[derive(Debug, Clone)]
pub struct UpConfig {
    /// The `payroute` executable to run for every role.
    pub exe: PathBuf,
    /// Public port of the load balancer (9999).
    pub port: u16,
    /// Processor URLs; `None` starts emulators on `emulator_ports`.
    pub default_url: Option<String>,
    pub fallback_url: Option<String>,
    /// Fees of the emulators, when they are started: (default, fallback).
    pub emulator_fees: (f64, f64),
    pub emulator_ports: (u16, u16),
    pub lb: Lb,
    pub limits: Limits,
    /// Sockets, configs and logs go here.
    pub run_dir: PathBuf,
}

/// Resource use of one process.
#[derive(Debug, Clone)]
pub struct ProcessUsage {
    pub name: String,
    pub pid: u32,
    pub cpu_seconds: f64,
    pub peak_rss_bytes: u64,
    /// Time throttled by its CPU quota; `None` when no cgroup limit is enforced.
    pub throttled_seconds: Option<f64>,
    pub limits_enforced: bool,
}

/// A started topology.
#[derive(Debug)]
pub struct Running {}

impl Running {
    pub fn backend_url(&self) -> String {
        unimplemented!()
    }
    pub fn default_url(&self) -> String {
        unimplemented!()
    }
    pub fn fallback_url(&self) -> String {
        unimplemented!()
    }
    pub fn usage(&self) -> Vec<ProcessUsage> {
        unimplemented!()
    }
    pub fn stop(self) -> anyhow::Result<Vec<ProcessUsage>> {
        unimplemented!()
    }
}

/// Starts the topology and waits until it answers.
pub fn start(config: &UpConfig) -> anyhow::Result<Running> {
    let _ = config;
    anyhow::bail!("not implemented yet")
}

/// Entry point of `payroute up`.
pub fn run(args: Args) -> anyhow::Result<()> {
    let _ = args;
    anyhow::bail!("not implemented yet")
}
