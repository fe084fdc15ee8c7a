//! cgroup v1 groups of one topology: one group per service in the `cpu` hierarchy
//! (`cpu.cfs_period_us`, `cpu.cfs_quota_us`, throttling in `cpu.stat`) and one in the
//! `memory` hierarchy (`memory.limit_in_bytes`, peak in `memory.max_usage_in_bytes`),
//! each inside the launcher's own group of that hierarchy.

use crate::cgroup::{
    create_dir, own_v1_group, read_key, read_number, rmdir_retrying, write, CgroupError,
    CFS_PERIOD_US,
};
use crate::resources::ServiceLimit;
use std::path::{Path, PathBuf};

/// The v1 groups of one started topology.
#[derive(Debug)]
pub(crate) struct V1Groups {
    /// `<cpu hierarchy>/<own group>/payroute-<pid>-<n>`.
    cpu_base: PathBuf,
    /// `<memory hierarchy>/<own group>/payroute-<pid>-<n>`.
    memory_base: PathBuf,
    services: Vec<&'static str>,
    /// The layout, for the banner (v1 alone, or hybrid).
    layout: String,
}

impl V1Groups {
    /// Creates the groups `tag` under the launcher's own groups of the hierarchies
    /// mounted under `root`, given the text of `/proc/self/cgroup`.
    pub(crate) fn create(
        root: &Path,
        proc_self_cgroup: &str,
        tag: &str,
        limits: &[&'static ServiceLimit],
        layout: String,
    ) -> Result<V1Groups, CgroupError> {
        let cpu_dir = own_group_dir(root, proc_self_cgroup, "cpu", "cpu.cfs_quota_us")?;
        let memory_dir = own_group_dir(root, proc_self_cgroup, "memory", "memory.limit_in_bytes")?;
        let mut groups = V1Groups {
            cpu_base: cpu_dir.join(tag),
            memory_base: memory_dir.join(tag),
            services: Vec::new(),
            layout,
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
        create_dir(&cpu)?;
        create_dir(&mem)?;
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

    pub(crate) fn join(&self, service: &str, pid: u32) -> Result<(), CgroupError> {
        for base in [&self.cpu_base, &self.memory_base] {
            write(&base.join(service).join("cgroup.procs"), &pid.to_string())?;
        }
        Ok(())
    }

    pub(crate) fn has(&self, service: &str) -> bool {
        self.services.contains(&service)
    }

    /// `throttled_time` of `cpu.stat`, in nanoseconds.
    pub(crate) fn throttled_seconds(&self, service: &str) -> Option<f64> {
        let ns = read_key(
            &self.cpu_base.join(service).join("cpu.stat"),
            "throttled_time",
        )?;
        Some(ns as f64 / 1e9)
    }

    pub(crate) fn memory_peak_bytes(&self, service: &str) -> Option<u64> {
        read_number(
            &self
                .memory_base
                .join(service)
                .join("memory.max_usage_in_bytes"),
        )
    }

    pub(crate) fn describe(&self) -> String {
        format!(
            "{}: groups {} and {}",
            self.layout,
            self.cpu_base.display(),
            self.memory_base.display()
        )
    }

    /// Removes every group; call once their processes have exited.
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

impl Drop for V1Groups {
    fn drop(&mut self) {
        self.remove();
    }
}

/// The directory of the launcher's own group in the v1 hierarchy of `controller`,
/// checked to hold `probe_file` (so it really is that controller's hierarchy).
fn own_group_dir(
    root: &Path,
    proc_self_cgroup: &str,
    controller: &'static str,
    probe_file: &str,
) -> Result<PathBuf, CgroupError> {
    let (names, path) =
        own_v1_group(proc_self_cgroup, controller).ok_or(CgroupError::NoController(controller))?;
    // The hierarchy is mounted under its controller list ("cpu,cpuacct"), usually with
    // a symlink per controller ("cpu").
    let mount = [root.join(names), root.join(controller)]
        .into_iter()
        .find(|m| m.join(probe_file).exists())
        .ok_or(CgroupError::NotMounted(controller))?;
    Ok(mount.join(path.trim_start_matches('/')))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cgroup::{Layout, CGROUP_ROOT};
    use std::fs;

    /// Real groups when the machine uses v1 and allows it (root): the limits written,
    /// and the groups removed.
    #[test]
    fn creates_real_v1_groups_when_allowed() {
        let own = fs::read_to_string("/proc/self/cgroup").unwrap();
        let root = Path::new(CGROUP_ROOT);
        let Ok(layout @ Layout::V1 { .. }) = Layout::detect(root, &own) else {
            eprintln!("NOTE: not a cgroup v1 machine: test skipped");
            return;
        };
        let limits: Vec<_> = crate::resources::SERVICES.iter().collect();
        let tag = format!("payroute-v1test-{}", std::process::id());
        let mut groups = match V1Groups::create(root, &own, &tag, &limits, layout.describe()) {
            Ok(g) => g,
            Err(e) => {
                eprintln!("NOTE: cgroup v1 groups not allowed here: {e}");
                return;
            }
        };
        let quota = fs::read_to_string(groups.cpu_base.join("api1/cpu.cfs_quota_us")).unwrap();
        assert_eq!(quota.trim(), "30000");
        let mem = groups.memory_base.join("worker/memory.limit_in_bytes");
        let limit = fs::read_to_string(mem).unwrap();
        assert_eq!(limit.trim(), (220u64 * 1024 * 1024).to_string());
        assert!(groups.has("lb"));
        assert_eq!(groups.throttled_seconds("api1"), Some(0.0));
        assert!(groups.describe().starts_with("cgroup v1"));
        let (cpu, memory) = (groups.cpu_base.clone(), groups.memory_base.clone());
        groups.remove();
        assert!(!cpu.exists() && !memory.exists());
    }
}
