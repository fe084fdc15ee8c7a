//! What each process used: [`ProcessUsage`] (CPU, peak memory, throttling),
//! [`UsageDetail`] (plus the cgroup's peak and the restarts), read from `/proc` and the
//! cgroups, and the table printed when `payroute up` stops.

use crate::cgroup::Cgroups;
use crate::children::Proc;

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

/// [`ProcessUsage`] and what only the launcher knows about the process.
#[derive(Debug, Clone)]
pub struct UsageDetail {
    pub usage: ProcessUsage,
    /// Peak memory charged to its cgroup (page cache included), when limits are
    /// enforced: what the memory limit is compared with.
    pub cgroup_peak_bytes: Option<u64>,
    /// Times it was restarted (the usage covers every incarnation).
    pub restarts: u32,
}

/// The usage of every incarnation of `p` so far, with its cgroup's figures when it has one.
pub(crate) fn usage_of(p: &Proc, cgroups: Option<&Cgroups>) -> UsageDetail {
    let current = p.sample_now().unwrap_or(p.last);
    let total = p.prior.add(current);
    let group = cgroups.filter(|g| g.has(&p.spec.name));
    UsageDetail {
        usage: ProcessUsage {
            name: p.spec.name.clone(),
            pid: p.pid,
            cpu_seconds: total.cpu_seconds,
            peak_rss_bytes: total.peak_rss_bytes,
            throttled_seconds: group.and_then(|g| g.throttled_seconds(&p.spec.name)),
            limits_enforced: group.is_some(),
        },
        cgroup_peak_bytes: group.and_then(|g| g.memory_peak_bytes(&p.spec.name)),
        restarts: p.restart.restarts(),
    }
}

/// Final resource use, for the operator.
pub fn usage_table(usage: &[UsageDetail]) -> String {
    let mut out = format!(
        "{:<20} {:>8} {:>10} {:>12} {:>12} {:>9}\n",
        "ROLE", "CPU s", "peak RSS", "cgroup peak", "throttled s", "restarts"
    );
    for d in usage {
        let u = &d.usage;
        let mib = |b: u64| format!("{:.1} MiB", b as f64 / 1048576.0);
        out.push_str(&format!(
            "{:<20} {:>8.2} {:>10} {:>12} {:>12} {:>9}\n",
            u.name,
            u.cpu_seconds,
            mib(u.peak_rss_bytes),
            d.cgroup_peak_bytes.map(mib).unwrap_or_else(|| "-".into()),
            u.throttled_seconds
                .map(|s| format!("{s:.2}"))
                .unwrap_or_else(|| "-".into()),
            d.restarts
        ));
    }
    out
}
