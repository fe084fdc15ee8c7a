//! Where a run's figures come from: the git commit the bench was built from (recorded
//! by `build.rs`) and the machine it ran on (cores, CPU model, kernel, from `/proc`).
//! `bench.json` and the report's header carry it; `payroute bench --version` prints
//! the commit.

use serde::Serialize;
use std::fmt;

/// The commit the bench was built from ("unknown" when not built from git).
pub const COMMIT: &str = env!("BENCH_GIT_COMMIT");

/// `payroute bench --version`: the crate's version and the commit.
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("BENCH_GIT_COMMIT"),
    ")"
);

/// What a run was built from and ran on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Provenance {
    /// `git rev-parse HEAD` at build time, or "unknown".
    pub commit: String,
    pub machine: Machine,
}

/// The machine a run ran on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Machine {
    /// Logical CPUs the kernel lists (`processor` lines of `/proc/cpuinfo`; the bench's
    /// own share of them may be smaller under a cgroup quota).
    pub cores: usize,
    /// `model name` of `/proc/cpuinfo`, or "unknown".
    pub cpu_model: String,
    /// `/proc/sys/kernel/osrelease` (what `uname -r` prints), or "unknown".
    pub kernel: String,
}

impl fmt::Display for Provenance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = &self.machine;
        write!(
            f,
            "commit {} · {} cores, {}, Linux {}",
            self.commit, m.cores, m.cpu_model, m.kernel
        )
    }
}

/// The commit this bench was built from and the machine it runs on now.
pub fn provenance() -> Provenance {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let (listed, model) = parse_cpuinfo(&cpuinfo);
    let cores = if listed > 0 {
        listed
    } else {
        std::thread::available_parallelism().map_or(0, |n| n.get())
    };
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .ok()
        .map(|k| k.trim().to_string())
        .filter(|k| !k.is_empty());
    Provenance {
        commit: COMMIT.to_string(),
        machine: Machine {
            cores,
            cpu_model: model.unwrap_or_else(|| "unknown".into()),
            kernel: kernel.unwrap_or_else(|| "unknown".into()),
        },
    }
}

/// The number of `processor` entries of a `/proc/cpuinfo` and the first `model name`.
pub fn parse_cpuinfo(text: &str) -> (usize, Option<String>) {
    let field = |line: &str, name: &str| -> Option<String> {
        let (k, v) = line.split_once(':')?;
        (k.trim() == name).then(|| v.trim().to_string())
    };
    let cores = text
        .lines()
        .filter(|l| field(l, "processor").is_some())
        .count();
    let model = text.lines().find_map(|l| field(l, "model name"));
    (cores, model)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_cpuinfo() {
        let text = "processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Core(TM) i7-7700 CPU @ 3.60GHz\nflags\t\t: fpu\n\nprocessor\t: 1\nmodel name\t: Intel(R) Core(TM) i7-7700 CPU @ 3.60GHz\n";
        let (cores, model) = parse_cpuinfo(text);
        assert_eq!(cores, 2);
        assert_eq!(
            model.as_deref(),
            Some("Intel(R) Core(TM) i7-7700 CPU @ 3.60GHz")
        );
        // No model name (some ARM kernels): counted, model unknown.
        assert_eq!(parse_cpuinfo("processor : 0\nBogoMIPS : 50\n"), (1, None));
    }

    #[test]
    fn this_machine() {
        let p = provenance();
        assert!(p.machine.cores >= 1);
        assert!(!p.commit.is_empty());
        // Built from this repository's git checkout: a full hash (or a given commit).
        if std::env::var_os("PAYROUTE_GIT_COMMIT").is_none() && p.commit != "unknown" {
            assert_eq!(p.commit.len(), 40, "{}", p.commit);
        }
        assert!(p.to_string().starts_with("commit "));
    }
}
