//! Per-service CPU and memory limits with cgroup v1, the way Docker applies a compose
//! file's `deploy.resources.limits`: a CFS quota (`cpus: "0.3"` = 30 ms of CPU per
//! 100 ms period) and a memory limit (page cache included, OOM kill beyond it).
//!
//! Where: a group `payroute-<launcher pid>-<n>` is made **inside the launcher's own
//! cgroup** of each controller (read from `/proc/self/cgroup`), with one child group per
//! service. Nesting keeps whatever limits the launcher itself runs under (a CI sandbox,
//! a systemd slice) in force, and never moves processes out of a group someone else
//! manages. The groups are removed when the topology stops.
//!
//! Only cgroup v1 is supported (the `cpu` and `memory` hierarchies): under cgroup v2 a
//! process may not enable controllers for children of a group it itself lives in, so
//! the launcher could not nest there without moving itself. Anything that prevents the
//! limits (not root, v2 only, a read-only hierarchy) is reported as a reason, and the
//! launcher goes on without limits.

use crate::resources::ServiceLimit;
use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

/// Where cgroup v1 hierarchies are mounted on every mainstream distribution.
const CGROUP_ROOT: &str = "/sys/fs/cgroup";
/// CFS period, as Docker uses: a quota of 30 ms in it is 0.3 CPU. Shorter periods
/// smooth throttling but cost scheduler overhead; 100 ms is what the challenge's
/// containers get, so it is what we must measure under.
const CFS_PERIOD_US: u64 = 100_000;
/// A group is removable only once its last task is gone; exited processes leave their
/// group asynchronously, so `rmdir` is retried for a short while.
const RMDIR_TRIES: u32 = 40;
const RMDIR_PAUSE: Duration = Duration::from_millis(25);

/// Distinguishes the groups of several topologies started by one process (tests run
/// in parallel threads).
static SEQUENCE: AtomicU32 = AtomicU32::new(0);

/// Why limits cannot be enforced here, or a process could not be moved into its group.
/// Each says it in words for the operator.
#[derive(Debug)]
pub(crate) enum CgroupError {
    /// `/proc/self/cgroup` could not be read.
    ReadOwnGroups(io::Error),
    /// The machine has cgroup v2 only.
    V2Only,
    /// No cgroup v1 hierarchy has this controller.
    NoController(&'static str),
    /// The hierarchy of this controller is not mounted where expected.
    NotMounted(&'static str),
    /// A group's directory could not be made.
    CreateDir { dir: PathBuf, source: io::Error },
    /// A control file could not be written.
    Write {
        path: PathBuf,
        value: String,
        source: io::Error,
    },
}

impl fmt::Display for CgroupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CgroupError::ReadOwnGroups(e) => write!(f, "cannot read /proc/self/cgroup: {e}"),
            CgroupError::V2Only => write!(
                f,
                "this machine has cgroup v2 only; payroute up applies limits with cgroup v1's \
                 cpu and memory controllers"
            ),
            CgroupError::NoController(controller) => write!(
                f,
                "no cgroup v1 `{controller}` controller in /proc/self/cgroup"
            ),
            CgroupError::NotMounted(controller) => write!(
                f,
                "the cgroup v1 `{controller}` hierarchy is not mounted under {CGROUP_ROOT}"
            ),
            CgroupError::CreateDir { dir, source } => write!(
                f,
                "cannot create {}: {source} (needs root and a writable cgroup v1 hierarchy)",
                dir.display()
            ),
            CgroupError::Write {
                path,
                value,
                source,
            } => write!(f, "cannot write {value} to {}: {source}", path.display()),
        }
    }
}

/// The cause is part of the message (the operator reads one line), so no `source`.
impl std::error::Error for CgroupError {}

/// The cgroups of one started topology.
#[derive(Debug)]
pub(crate) struct Cgroups {
    /// `<cpu hierarchy>/<own group>/payroute-<pid>-<n>`.
    cpu_base: PathBuf,
    /// `<memory hierarchy>/<own group>/payroute-<pid>-<n>`.
    memory_base: PathBuf,
    services: Vec<&'static str>,
}

impl Cgroups {
    /// Creates one cpu and one memory group per service with its limits. `Err` says why
    /// limits cannot be enforced, for the operator.
    pub(crate) fn create(limits: &[&'static ServiceLimit]) -> Result<Cgroups, CgroupError> {
        let cpu_dir = own_group_dir("cpu", "cpu.cfs_quota_us")?;
        let memory_dir = own_group_dir("memory", "memory.limit_in_bytes")?;
        let tag = format!(
            "payroute-{}-{}",
            std::process::id(),
            SEQUENCE.fetch_add(1, Ordering::Relaxed)
        );
        let mut groups = Cgroups {
            cpu_base: cpu_dir.join(&tag),
            memory_base: memory_dir.join(&tag),
            services: Vec::new(),
        };
        for limit in limits {
            if let Err(e) = groups.add(limit) {
                groups.remove();
                return Err(e);
            }
        }
        Ok(groups)
    }

    fn add(&mut self, limit: &'static ServiceLimit) -> Result<(), CgroupError> {
        let cpu = self.cpu_base.join(limit.service);
        let mem = self.memory_base.join(limit.service);
        for dir in [&cpu, &mem] {
            fs::create_dir_all(dir).map_err(|source| CgroupError::CreateDir {
                dir: dir.clone(),
                source,
            })?;
        }
        self.services.push(limit.service);
        let quota = u64::from(limit.milli_cpus) * CFS_PERIOD_US / 1000;
        write(&cpu.join("cpu.cfs_period_us"), &CFS_PERIOD_US.to_string())?;
        write(&cpu.join("cpu.cfs_quota_us"), &quota.to_string())?;
        write(
            &mem.join("memory.limit_in_bytes"),
            &limit.memory_bytes().to_string(),
        )?;
        Ok(())
    }

    /// Moves `pid` (all its threads) into the groups of `service`.
    pub(crate) fn join(&self, service: &str, pid: u32) -> Result<(), CgroupError> {
        for base in [&self.cpu_base, &self.memory_base] {
            write(&base.join(service).join("cgroup.procs"), &pid.to_string())?;
        }
        Ok(())
    }

    /// Whether `service` has groups here.
    pub(crate) fn has(&self, service: &str) -> bool {
        self.services.contains(&service)
    }

    /// Time the service's processes spent throttled by their CPU quota.
    pub(crate) fn throttled_seconds(&self, service: &str) -> Option<f64> {
        let stat = fs::read_to_string(self.cpu_base.join(service).join("cpu.stat")).ok()?;
        let ns: u64 = stat
            .lines()
            .find_map(|l| l.strip_prefix("throttled_time "))?
            .trim()
            .parse()
            .ok()?;
        Some(ns as f64 / 1e9)
    }

    /// Peak memory charged to the service's group (page cache included).
    pub(crate) fn memory_peak_bytes(&self, service: &str) -> Option<u64> {
        fs::read_to_string(
            self.memory_base
                .join(service)
                .join("memory.max_usage_in_bytes"),
        )
        .ok()?
        .trim()
        .parse()
        .ok()
    }

    /// Human description, for the launcher's banner.
    pub(crate) fn describe(&self) -> String {
        format!(
            "cgroup v1 groups {} and {}",
            self.cpu_base.display(),
            self.memory_base.display()
        )
    }

    /// Removes every group; call once their processes have exited. Failures are logged:
    /// an empty group left behind costs nothing and must not hide the real outcome.
    pub(crate) fn remove(&mut self) {
        for service in self.services.drain(..) {
            for base in [&self.cpu_base, &self.memory_base] {
                rmdir_retrying(&base.join(service));
            }
        }
        for base in [&self.cpu_base, &self.memory_base] {
            if base.exists() {
                rmdir_retrying(base);
            }
        }
    }
}

impl Drop for Cgroups {
    fn drop(&mut self) {
        self.remove();
    }
}

fn write(path: &Path, value: &str) -> Result<(), CgroupError> {
    fs::write(path, value).map_err(|source| CgroupError::Write {
        path: path.to_path_buf(),
        value: value.to_string(),
        source,
    })
}

fn rmdir_retrying(dir: &Path) {
    for attempt in 0..RMDIR_TRIES {
        match fs::remove_dir(dir) {
            Ok(()) => return,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return,
            Err(e) if attempt + 1 == RMDIR_TRIES => {
                tracing::warn!("could not remove cgroup {}: {e}", dir.display());
            }
            Err(_) => std::thread::sleep(RMDIR_PAUSE),
        }
    }
}

/// The directory of the launcher's own group in the v1 hierarchy of `controller`,
/// checked to hold `probe_file` (so it really is that controller's hierarchy).
fn own_group_dir(controller: &'static str, probe_file: &str) -> Result<PathBuf, CgroupError> {
    let root = Path::new(CGROUP_ROOT);
    let own = fs::read_to_string("/proc/self/cgroup").map_err(CgroupError::ReadOwnGroups)?;
    let Some((names, path)) = own_group(&own, controller) else {
        return Err(if root.join("cgroup.controllers").exists() {
            CgroupError::V2Only
        } else {
            CgroupError::NoController(controller)
        });
    };
    // The hierarchy is mounted under its controller list ("cpu,cpuacct"), usually with
    // a symlink per controller ("cpu").
    let mount = [root.join(names), root.join(controller)]
        .into_iter()
        .find(|m| m.join(probe_file).exists())
        .ok_or(CgroupError::NotMounted(controller))?;
    Ok(mount.join(path.trim_start_matches('/')))
}

/// From the text of `/proc/self/cgroup`, the v1 hierarchy that has `controller`: its
/// controller list and the group path.
fn own_group<'a>(proc_self_cgroup: &'a str, controller: &str) -> Option<(&'a str, &'a str)> {
    proc_self_cgroup.lines().find_map(|line| {
        let mut parts = line.splitn(3, ':');
        let _id = parts.next()?;
        let names = parts.next()?;
        let path = parts.next()?;
        names
            .split(',')
            .any(|n| n == controller)
            .then_some((names, path))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_own_group_per_controller() {
        let text = "9:name=systemd:/\n4:memory:/sandbox/abc\n2:cpu,cpuacct:/\n0::/\n";
        assert_eq!(own_group(text, "memory"), Some(("memory", "/sandbox/abc")));
        assert_eq!(own_group(text, "cpu"), Some(("cpu,cpuacct", "/")));
        assert_eq!(own_group(text, "cpuacct"), Some(("cpu,cpuacct", "/")));
        assert_eq!(own_group(text, "pids"), None);
        // cgroup v2 only: just the unified line.
        assert_eq!(own_group("0::/user.slice\n", "cpu"), None);
    }

    /// Creates real groups when the machine allows it (root, cgroup v1), checks the
    /// limits written, and removes them. Elsewhere, checks that a reason is given.
    #[test]
    fn creates_and_removes_groups_when_allowed() {
        let limits: Vec<_> = crate::resources::SERVICES.iter().collect();
        match Cgroups::create(&limits) {
            Ok(mut groups) => {
                let api = groups.cpu_base.join("api1");
                let quota = fs::read_to_string(api.join("cpu.cfs_quota_us")).unwrap();
                assert_eq!(quota.trim(), "30000");
                let mem = groups.memory_base.join("worker");
                let limit = fs::read_to_string(mem.join("memory.limit_in_bytes")).unwrap();
                assert_eq!(limit.trim(), (220u64 * 1024 * 1024).to_string());
                assert!(groups.has("lb"));
                assert_eq!(groups.throttled_seconds("api1"), Some(0.0));
                let (cpu, memory) = (groups.cpu_base.clone(), groups.memory_base.clone());
                groups.remove();
                assert!(!cpu.exists() && !memory.exists());
            }
            Err(e) => {
                let reason = e.to_string();
                eprintln!("cgroups not available here: {reason}");
                assert!(!reason.is_empty());
            }
        }
    }
}
