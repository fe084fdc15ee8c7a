//! What [`start`](fn@crate::start) runs ([`UpConfig`]) and how ([`StartOptions`]), the
//! defaults of both (`defaults`), and how the flags of `payroute up` become them.

use crate::{Args, Lb, Ledger, Limits, Restart};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;
use std::time::Duration;

/// How long [`start`](fn@crate::start) waits for the whole topology to answer, by
/// default. Debug builds start in well under a second; the margin covers a loaded CI
/// machine.
pub const DEFAULT_READY_TIMEOUT: Duration = Duration::from_secs(30);

/// Every default of `payroute up`, in one place: the flags ([`Args`]) name these in their
/// `default_value_t`, and [`UpConfig::new`] and [`StartOptions::default`] use them too,
/// so the command line and the library start the same topology (a test in `cli.rs`
/// checks every flag).
pub(crate) mod defaults {
    use crate::{Lb, Ledger, Limits, Restart};
    use std::net::{IpAddr, Ipv4Addr};
    use std::path::PathBuf;

    /// Public port of the load balancer: the challenge's.
    pub(crate) const PORT: u16 = 9999;
    /// Ports of the emulated processors (default, fallback): the official ones'.
    pub(crate) const EMULATOR_PORTS: (u16, u16) = (8001, 8002);
    /// Fees of the emulated processors (default, fallback): the official compose
    /// file's (the final test uses 0.07 and 0.10).
    pub(crate) const EMULATOR_FEES: (f64, f64) = (0.05, 0.15);
    /// Nothing to install.
    pub(crate) const LB: Lb = Lb::Embedded;
    pub(crate) const LIMITS: Limits = Limits::Off;
    /// What the compose file's `restart: unless-stopped` does.
    pub(crate) const RESTART: Restart = Restart::Always;
    /// The challenge's topology: one worker with its own payment log.
    pub(crate) const WORKERS: usize = 1;
    pub(crate) const LEDGER: Ledger = Ledger::File;
    /// Interface of `payroute up`: every one, as the compose deployment publishes 9999
    /// on every interface.
    pub(crate) const CLI_HOST: IpAddr = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
    /// Interface of [`start`](fn@crate::start): loopback, as the bench and the tests
    /// reach everything locally.
    pub(crate) const LIBRARY_HOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

    /// Run directory of `payroute up` (the library has none: the caller names it).
    pub(crate) fn run_dir() -> PathBuf {
        std::env::temp_dir().join("payroute-up")
    }
}

/// What [`start`](fn@crate::start) runs.
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
    /// Worker processes: 1 (`worker`) with the file log; `worker1..N` with a shared
    /// ledger.
    pub workers: usize,
    /// Where the workers keep the payments.
    pub ledger: Ledger,
    /// Port of the throwaway cluster of [`Ledger::LocalPostgres`]; 0 takes a free one.
    pub pg_port: u16,
}

/// How [`start_with`](crate::start_with) runs an [`UpConfig`]: what the CLI sets and
/// programs rarely need.
#[derive(Debug, Clone)]
pub struct StartOptions {
    /// Interface of the public port and of the emulators. [`start`](fn@crate::start)
    /// uses `127.0.0.1` (the bench and the tests reach everything locally); `payroute up`
    /// uses `0.0.0.0` by default, as the compose deployment publishes 9999 on every
    /// interface.
    pub host: IpAddr,
    /// What happens when a role exits while running.
    pub restart: Restart,
    /// Bound of the wait for readiness.
    pub ready_timeout: Duration,
}

impl Default for StartOptions {
    fn default() -> Self {
        StartOptions {
            host: defaults::LIBRARY_HOST,
            restart: defaults::RESTART,
            ready_timeout: DEFAULT_READY_TIMEOUT,
        }
    }
}

impl StartOptions {
    pub(crate) fn from_args(args: &Args) -> StartOptions {
        StartOptions {
            host: args.host,
            restart: args.restart,
            ready_timeout: Duration::from_secs(args.ready_timeout_secs),
        }
    }

    /// The address clients use to reach `host`: loopback when listening everywhere.
    pub(crate) fn connect_host(&self) -> IpAddr {
        match self.host {
            IpAddr::V4(h) if h.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(h) if h.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
            h => h,
        }
    }
}

impl UpConfig {
    /// The defaults of `payroute up`: port 9999, emulators on 8001 and 8002 with the
    /// official compose file's fees, embedded load balancer, no limits, one worker with
    /// its file log.
    pub fn new(exe: impl Into<PathBuf>, run_dir: impl Into<PathBuf>) -> UpConfig {
        UpConfig {
            exe: exe.into(),
            port: defaults::PORT,
            default_url: None,
            fallback_url: None,
            emulator_fees: defaults::EMULATOR_FEES,
            emulator_ports: defaults::EMULATOR_PORTS,
            lb: defaults::LB,
            limits: defaults::LIMITS,
            run_dir: run_dir.into(),
            workers: defaults::WORKERS,
            ledger: defaults::LEDGER,
            pg_port: 0,
        }
    }

    pub(crate) fn from_args(args: &Args, exe: PathBuf) -> UpConfig {
        UpConfig {
            exe,
            port: args.port,
            default_url: args.default_url.clone(),
            fallback_url: args.fallback_url.clone(),
            emulator_fees: (args.default_fee, args.fallback_fee),
            emulator_ports: (args.default_port, args.fallback_port),
            lb: args.lb,
            limits: args.limits,
            run_dir: args.run_dir.clone(),
            workers: args.workers,
            ledger: args.ledger.clone(),
            pg_port: args.pg_port,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_host_is_loopback_for_wildcards() {
        let mut c = StartOptions {
            host: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            ..StartOptions::default()
        };
        assert_eq!(c.connect_host(), IpAddr::V4(Ipv4Addr::LOCALHOST));
        c.host = "::".parse().unwrap();
        assert_eq!(c.connect_host(), IpAddr::V6(Ipv6Addr::LOCALHOST));
        c.host = "127.0.0.2".parse().unwrap();
        assert_eq!(c.connect_host(), "127.0.0.2".parse::<IpAddr>().unwrap());
    }
}
