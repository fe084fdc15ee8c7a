//! The CPU and memory split between the services: the one source of truth for both the
//! compose file (`deploy/docker-compose.yml`, whose `deploy.resources.limits` a test
//! checks against [`SERVICES`]) and `payroute up --limits rinha` (which applies the same
//! numbers with cgroups).
//!
//! Why this split (the challenge allows 1.5 CPU and 350 MB in all, SPEC §4):
//! - **worker 0.7 CPU**: it does the real work (HTTP client to the processors with a few
//!   hundred requests in flight, the payment log, the summary); at a low quota every
//!   busy thread burns the period early and stalls until the next one.
//! - **api 0.3 CPU each**: parse ~70-byte bodies, one IPC frame per payment, answer;
//!   about 150 requests/s each at the final test's peak.
//! - **lb 0.2 CPU**: nginx with one worker proxies 300 requests/s over Unix sockets for
//!   a few percent of a core; the rest is headroom for bursts.
//! - **memory**: nothing is gained by leaving memory unused, so the worker (queue, index
//!   of payments, page cache of its log, which counts against its cgroup) gets what the
//!   others do not need: nginx runs in ~10 MB, an api in ~10-20 MB.
//!
//! Docker reads `"120MB"` as 120 MiB, so megabytes here are MiB.
//!
//! The table is the challenge's topology's: one worker with its file log. The scaled one
//! (several workers sharing PostgreSQL, `--ledger`) has no share of it, and `--limits
//! rinha` is refused there (`settings.rs`).

/// Limits of one service of the compose file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServiceLimit {
    /// Service name in the compose file, and the role name in `payroute up`.
    pub service: &'static str,
    /// CPU limit in thousandths of a CPU (integer, so sums are exact).
    pub milli_cpus: u32,
    /// Memory limit in MiB (`"<n>MB"` in the compose file).
    pub memory_mb: u32,
}

impl ServiceLimit {
    /// The compose file's spelling of the CPU limit, as in `"0.3"`.
    pub fn compose_cpus(&self) -> String {
        let whole = self.milli_cpus / 1000;
        let frac = self.milli_cpus % 1000;
        if frac == 0 {
            format!("{whole}.0")
        } else {
            let s = format!("{whole}.{frac:03}");
            s.trim_end_matches('0').to_string()
        }
    }

    /// The compose file's spelling of the memory limit, as in `"40MB"`.
    pub fn compose_memory(&self) -> String {
        format!("{}MB", self.memory_mb)
    }

    /// Memory limit in bytes.
    pub fn memory_bytes(&self) -> u64 {
        u64::from(self.memory_mb) * 1024 * 1024
    }
}

/// The challenge's total CPU budget, in thousandths of a CPU (SPEC §4).
pub const TOTAL_MILLI_CPUS: u32 = 1500;
/// The challenge's total memory budget, in MB (SPEC §4).
pub const TOTAL_MEMORY_MB: u32 = 350;

/// Every service of the compose file and its limits.
pub const SERVICES: &[ServiceLimit] = &[
    ServiceLimit {
        service: "lb",
        milli_cpus: 200,
        memory_mb: 30,
    },
    ServiceLimit {
        service: "api1",
        milli_cpus: 300,
        memory_mb: 50,
    },
    ServiceLimit {
        service: "api2",
        milli_cpus: 300,
        memory_mb: 50,
    },
    ServiceLimit {
        service: "worker",
        milli_cpus: 700,
        memory_mb: 220,
    },
];

/// The limits of `service`, if it is one of [`SERVICES`].
pub fn limit_of(service: &str) -> Option<&'static ServiceLimit> {
    SERVICES.iter().find(|s| s.service == service)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_fits_the_challenge_budget() {
        let cpus: u32 = SERVICES.iter().map(|s| s.milli_cpus).sum();
        let mem: u32 = SERVICES.iter().map(|s| s.memory_mb).sum();
        assert!(cpus <= TOTAL_MILLI_CPUS, "{cpus} milli-CPUs");
        assert!(mem <= TOTAL_MEMORY_MB, "{mem} MB");
    }

    #[test]
    fn compose_spellings() {
        let s = |milli_cpus| ServiceLimit {
            service: "x",
            milli_cpus,
            memory_mb: 40,
        };
        assert_eq!(s(300).compose_cpus(), "0.3");
        assert_eq!(s(1500).compose_cpus(), "1.5");
        assert_eq!(s(1000).compose_cpus(), "1.0");
        assert_eq!(s(125).compose_cpus(), "0.125");
        assert_eq!(s(0).compose_memory(), "40MB");
        assert_eq!(s(0).memory_bytes(), 40 * 1024 * 1024);
    }

    #[test]
    fn names_are_unique() {
        for (i, a) in SERVICES.iter().enumerate() {
            assert!(SERVICES[i + 1..].iter().all(|b| b.service != a.service));
            assert_eq!(limit_of(a.service), Some(a));
        }
    }
}
