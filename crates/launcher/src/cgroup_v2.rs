//! cgroup v2 groups of one topology: one group per service (`cpu.max`, `memory.max`;
//! read back: `cpu.stat`'s `usage_usec` and `throttled_usec`, `memory.peak`; processes
//! moved in through `cgroup.procs`) under `<own group>/payroute-<pid>-<n>`.
//!
//! v2's "no internal processes" rule: a group (other than the root) may hand the `cpu`
//! and `memory` controllers to its children (`cgroup.subtree_control`) only while it
//! holds no process itself. The launcher lives in its own group G, so to nest there it
//! first moves **itself** into a leaf `G/payroute-launcher-<pid>` (still inside G, so
//! G's own limits keep applying), then enables the controllers in G. That works when
//! the launcher is alone in G (a container's entrypoint; `systemd-run --scope -p
//! Delegate=yes payroute up ...`); when G holds other processes, nothing is moved and
//! the reason says so. When the last topology of the process stops, G is put back as
//! it was: controllers disabled, the launcher moved back, the leaf removed.
//!
//! Everything takes the hierarchy's mount point as an argument, so the tests run the
//! same code on a fake tree of plain files.

use crate::cgroup::{
    create_dir, read_key, read_number, rmdir_retrying, write, CgroupError, CFS_PERIOD_US,
};
use crate::resources::ServiceLimit;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// The controllers the limits need.
const CONTROLLERS: [&str; 2] = ["cpu", "memory"];
/// Prefix of the leaf group the launcher moves itself into.
const LAUNCHER_LEAF_PREFIX: &str = "payroute-launcher-";

/// What the launcher changed in an own group G, shared by the topologies of this
/// process that nest in it, and undone when the last one is removed.
#[derive(Debug)]
struct Delegation {
    own: PathBuf,
    /// Topologies using it.
    users: usize,
    /// Controllers this process enabled in G's `cgroup.subtree_control`.
    enabled: Vec<&'static str>,
    /// The leaf the launcher moved itself into, if it did.
    leaf: Option<PathBuf>,
}

/// Every own group this process delegated from (one, except in tests with fake trees).
static DELEGATIONS: Mutex<Vec<Delegation>> = Mutex::new(Vec::new());

/// The v2 groups of one started topology.
#[derive(Debug)]
pub(crate) struct V2Groups {
    /// The launcher's own group, G.
    own: PathBuf,
    /// `G/payroute-<pid>-<n>`.
    base: PathBuf,
    services: Vec<&'static str>,
    /// Whether this topology counts as a user of G's [`Delegation`].
    delegated: bool,
}

impl V2Groups {
    /// Creates the groups `tag` in the launcher's group `own_path` (as in
    /// `/proc/self/cgroup`, `0::<own_path>`) of the hierarchy mounted at `mount`.
    pub(crate) fn create(
        mount: &Path,
        own_path: &str,
        tag: &str,
        limits: &[&'static ServiceLimit],
    ) -> Result<V2Groups, CgroupError> {
        let mut own = mount.join(own_path.trim_start_matches('/'));
        // A second topology of a launcher that already moved itself into its leaf.
        if own
            .file_name()
            .is_some_and(|n| n.to_string_lossy() == leaf_name())
        {
            own.pop();
        }
        check_controllers_available(&own)?;
        delegate(&own)?;
        let mut groups = V2Groups {
            base: own.join(tag),
            own,
            services: Vec::new(),
            delegated: true,
        };
        if let Err(e) = groups.make(limits) {
            groups.remove();
            return Err(e);
        }
        Ok(groups)
    }

    fn make(&mut self, limits: &[&'static ServiceLimit]) -> Result<(), CgroupError> {
        create_dir(&self.base)?;
        write(
            &self.base.join("cgroup.subtree_control"),
            &enable_text(&CONTROLLERS),
        )?;
        for limit in limits {
            let dir = self.base.join(limit.service);
            create_dir(&dir)?;
            self.services.push(limit.service);
            let quota = u64::from(limit.milli_cpus) * CFS_PERIOD_US / 1000;
            write(&dir.join("cpu.max"), &format!("{quota} {CFS_PERIOD_US}"))?;
            write(&dir.join("memory.max"), &limit.memory_bytes().to_string())?;
        }
        Ok(())
    }

    pub(crate) fn join(&self, service: &str, pid: u32) -> Result<(), CgroupError> {
        join(&self.base.join(service), pid)
    }

    pub(crate) fn has(&self, service: &str) -> bool {
        self.services.contains(&service)
    }

    /// `throttled_usec` of `cpu.stat`.
    pub(crate) fn throttled_seconds(&self, service: &str) -> Option<f64> {
        let us = read_key(&self.base.join(service).join("cpu.stat"), "throttled_usec")?;
        Some(us as f64 / 1e6)
    }

    /// `memory.peak` (Linux 5.19 and later).
    pub(crate) fn memory_peak_bytes(&self, service: &str) -> Option<u64> {
        read_number(&self.base.join(service).join("memory.peak"))
    }

    pub(crate) fn describe(&self) -> String {
        format!("cgroup v2: groups under {}", self.base.display())
    }

    /// Removes every group; once the last topology of G is gone, G is put back as it
    /// was (see the file's comment).
    pub(crate) fn remove(&mut self) {
        for service in self.services.drain(..) {
            rmdir_retrying(&self.base.join(service));
        }
        if self.base.exists() {
            rmdir_retrying(&self.base);
        }
        if std::mem::take(&mut self.delegated) {
            undelegate(&self.own);
        }
    }
}

impl Drop for V2Groups {
    fn drop(&mut self) {
        self.remove();
    }
}

/// Moves `pid` (all its threads) into the group `dir`.
pub(crate) fn join(dir: &Path, pid: u32) -> Result<(), CgroupError> {
    write(&dir.join("cgroup.procs"), &pid.to_string())
}

fn leaf_name() -> String {
    format!("{LAUNCHER_LEAF_PREFIX}{}", std::process::id())
}

/// `+cpu +memory` (or `-...`), for `cgroup.subtree_control`.
fn enable_text(controllers: &[&str]) -> String {
    let words: Vec<String> = controllers.iter().map(|c| format!("+{c}")).collect();
    words.join(" ")
}

fn disable_text(controllers: &[&str]) -> String {
    let words: Vec<String> = controllers.iter().map(|c| format!("-{c}")).collect();
    words.join(" ")
}

/// The controllers listed in a `cgroup.controllers` or `cgroup.subtree_control` file
/// (the kernel writes `cpu memory`; a `+` is tolerated).
fn listed(path: &Path) -> Vec<String> {
    fs::read_to_string(path)
        .unwrap_or_default()
        .split_whitespace()
        .map(|w| w.trim_start_matches('+').to_string())
        .collect()
}

/// Both controllers must be available to G (its parent hands them down).
fn check_controllers_available(own: &Path) -> Result<(), CgroupError> {
    let available = listed(&own.join("cgroup.controllers"));
    for c in CONTROLLERS {
        if !available.iter().any(|a| a == c) {
            return Err(CgroupError::V2Delegation(format!(
                "the `{c}` controller is not available to payroute up's group {} (its \
                 cgroup.controllers: `{}`): it must be enabled in the parent group's \
                 cgroup.subtree_control (systemd: run it with Delegate=yes)",
                own.display(),
                available.join(" ")
            )));
        }
    }
    Ok(())
}

/// Makes G able to hand the controllers to child groups, once per process and G.
fn delegate(own: &Path) -> Result<(), CgroupError> {
    let mut all = DELEGATIONS.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(d) = all.iter_mut().find(|d| d.own == own) {
        d.users += 1;
        return Ok(());
    }
    let enabled_already = listed(&own.join("cgroup.subtree_control"));
    let needed: Vec<&'static str> = CONTROLLERS
        .into_iter()
        .filter(|c| !enabled_already.iter().any(|e| e == c))
        .collect();
    let mut delegation = Delegation {
        own: own.to_path_buf(),
        users: 1,
        enabled: Vec::new(),
        leaf: None,
    };
    if !needed.is_empty() {
        // The root group (it alone has no cgroup.type) is exempt from the rule.
        if own.join("cgroup.type").exists() {
            delegation.leaf = move_self_to_leaf(own)?;
        }
        if let Err(e) = write(&own.join("cgroup.subtree_control"), &enable_text(&needed)) {
            restore(&delegation);
            return Err(e);
        }
        delegation.enabled = needed;
    }
    all.push(delegation);
    Ok(())
}

/// Moves the launcher into `G/payroute-launcher-<pid>`, if it is alone in G. `None`:
/// it was not in G (nothing to move).
fn move_self_to_leaf(own: &Path) -> Result<Option<PathBuf>, CgroupError> {
    let me = std::process::id();
    let procs = fs::read_to_string(own.join("cgroup.procs")).unwrap_or_default();
    let pids: Vec<u32> = procs
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect();
    let others: Vec<String> = pids
        .iter()
        .filter(|&&p| p != me)
        .map(ToString::to_string)
        .collect();
    if !others.is_empty() {
        return Err(CgroupError::V2Delegation(format!(
            "payroute up's group {} also holds processes {} and, under cgroup v2, a group \
             with processes cannot give its cpu and memory controllers to child groups: run \
             payroute up alone in a group (as a container's entrypoint, or `systemd-run \
             --scope -p Delegate=yes payroute up --limits rinha`)",
            own.display(),
            others.join(", ")
        )));
    }
    if !pids.contains(&me) {
        return Ok(None);
    }
    let leaf = own.join(leaf_name());
    create_dir(&leaf)?;
    if let Err(e) = join(&leaf, me) {
        rmdir_retrying(&leaf);
        return Err(e);
    }
    Ok(Some(leaf))
}

/// One topology of G fewer; the last one puts G back as it was.
fn undelegate(own: &Path) {
    let mut all = DELEGATIONS.lock().unwrap_or_else(|e| e.into_inner());
    let Some(i) = all.iter().position(|d| d.own == own) else {
        return;
    };
    all[i].users -= 1;
    if all[i].users == 0 {
        restore(&all.remove(i));
    }
}

/// Undoes what [`delegate`] did in G: controllers disabled, the launcher moved back.
/// Failures are logged; they leave an empty group or an enabled controller behind.
fn restore(d: &Delegation) {
    if !d.enabled.is_empty() {
        if let Err(e) = write(
            &d.own.join("cgroup.subtree_control"),
            &disable_text(&d.enabled),
        ) {
            tracing::warn!("{e}");
        }
    }
    if let Some(leaf) = &d.leaf {
        match join(&d.own, std::process::id()) {
            Ok(()) => rmdir_retrying(leaf),
            Err(e) => tracing::warn!("{e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cgroup::CGROUP_ROOT;

    /// A fake hierarchy: `<root>/g` is the launcher's group, holding `procs`, with both
    /// controllers available and none enabled for children.
    fn fake_tree(name: &str, procs: &str) -> PathBuf {
        let root = std::env::temp_dir().join(format!("launcher-v2-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        let own = root.join("g");
        fs::create_dir_all(&own).unwrap();
        fs::write(
            own.join("cgroup.controllers"),
            "cpuset cpu io memory pids\n",
        )
        .unwrap();
        fs::write(own.join("cgroup.subtree_control"), "").unwrap();
        fs::write(own.join("cgroup.type"), "domain\n").unwrap();
        fs::write(own.join("cgroup.procs"), procs).unwrap();
        root
    }

    /// CPU time used by the processes of the group `dir` (`cpu.stat`'s `usage_usec`,
    /// there even without the cpu controller).
    fn cpu_usage_seconds(dir: &Path) -> Option<f64> {
        Some(read_key(&dir.join("cpu.stat"), "usage_usec")? as f64 / 1e6)
    }

    fn read(path: &Path) -> String {
        fs::read_to_string(path)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
            .trim()
            .to_string()
    }

    /// Removes the plain files the fake tree gained under `dir` (a real cgroupfs has no
    /// removable files: its directories go with rmdir alone).
    fn clear_files(dir: &Path) {
        for entry in fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                clear_files(&path);
            } else {
                fs::remove_file(path).unwrap();
            }
        }
    }

    #[test]
    fn writes_limits_moves_itself_and_puts_everything_back() {
        let me = std::process::id();
        let root = fake_tree("full", &format!("{me}\n"));
        let own = root.join("g");
        let limits: Vec<_> = crate::resources::SERVICES.iter().collect();
        let mut groups = V2Groups::create(&root, "/g", "payroute-t-0", &limits).unwrap();
        let base = own.join("payroute-t-0");
        let leaf = own.join(leaf_name());
        // The launcher left G for its leaf; G and the base hand both controllers down.
        assert_eq!(read(&leaf.join("cgroup.procs")), me.to_string());
        assert_eq!(read(&own.join("cgroup.subtree_control")), "+cpu +memory");
        assert_eq!(read(&base.join("cgroup.subtree_control")), "+cpu +memory");
        // The compose file's limits, from the resource table.
        assert_eq!(read(&base.join("api1/cpu.max")), "30000 100000");
        assert_eq!(read(&base.join("lb/cpu.max")), "20000 100000");
        assert_eq!(read(&base.join("worker/cpu.max")), "70000 100000");
        assert_eq!(
            read(&base.join("worker/memory.max")),
            (220u64 << 20).to_string()
        );
        assert_eq!(
            read(&base.join("api2/memory.max")),
            (50u64 << 20).to_string()
        );
        // A process joins its service; the figures are read from the kernel's files.
        groups.join("api1", 4242).unwrap();
        assert_eq!(read(&base.join("api1/cgroup.procs")), "4242");
        fs::write(
            base.join("api1/cpu.stat"),
            "usage_usec 2500000\nuser_usec 2000000\nsystem_usec 500000\n\
             nr_periods 10\nnr_throttled 3\nthrottled_usec 750000\n",
        )
        .unwrap();
        fs::write(base.join("api1/memory.peak"), "12582912\n").unwrap();
        assert_eq!(groups.throttled_seconds("api1"), Some(0.75));
        assert_eq!(groups.memory_peak_bytes("api1"), Some(12 << 20));
        assert_eq!(cpu_usage_seconds(&base.join("api1")), Some(2.5));
        assert_eq!(groups.throttled_seconds("api2"), None, "no cpu.stat yet");
        assert!(
            groups.describe().contains("cgroup v2"),
            "{}",
            groups.describe()
        );

        // A second topology of the same process nests in G too, though the launcher
        // now reads its own group as the leaf.
        let leaf_path = format!("/g/{}", leaf_name());
        let mut second = V2Groups::create(&root, &leaf_path, "payroute-t-1", &limits).unwrap();
        assert!(own.join("payroute-t-1/worker").is_dir());
        clear_files(&own.join("payroute-t-1"));
        second.remove();
        assert!(!own.join("payroute-t-1").exists());
        assert!(leaf.exists(), "the first topology still runs");

        clear_files(&base);
        clear_files(&leaf);
        groups.remove();
        assert!(!base.exists() && !leaf.exists());
        assert_eq!(read(&own.join("cgroup.subtree_control")), "-cpu -memory");
        assert_eq!(read(&own.join("cgroup.procs")), me.to_string());
        fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn refuses_a_group_shared_with_other_processes() {
        let me = std::process::id();
        let root = fake_tree("shared", &format!("1\n{me}\n77\n"));
        let limits: Vec<_> = crate::resources::SERVICES.iter().collect();
        let err = V2Groups::create(&root, "/g", "payroute-t-0", &limits).unwrap_err();
        let text = err.to_string();
        assert!(text.starts_with("cgroup v2: "), "{text}");
        assert!(text.contains("also holds processes 1, 77"), "{text}");
        assert!(text.contains("Delegate=yes"), "{text}");
        // Nothing was changed.
        let own = root.join("g");
        assert_eq!(read(&own.join("cgroup.subtree_control")), "");
        assert_eq!(
            fs::read_dir(&own)
                .unwrap()
                .filter(|e| e.as_ref().unwrap().path().is_dir())
                .count(),
            0
        );
        fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn refuses_a_group_without_the_controllers() {
        let root = fake_tree("nocontrollers", "");
        let own = root.join("g");
        fs::write(own.join("cgroup.controllers"), "cpu pids\n").unwrap();
        let limits: Vec<_> = crate::resources::SERVICES.iter().collect();
        let err = V2Groups::create(&root, "/g", "payroute-t-0", &limits).unwrap_err();
        assert!(
            err.to_string()
                .contains("`memory` controller is not available"),
            "{err}"
        );
        fs::remove_dir_all(root).unwrap();
    }

    /// The controllers already handed down (a delegated group, or the root): nothing to
    /// move, nothing to put back.
    #[test]
    fn uses_controllers_already_delegated() {
        let root = fake_tree("delegated", "");
        let own = root.join("g");
        fs::write(own.join("cgroup.subtree_control"), "cpu memory\n").unwrap();
        let limits: Vec<_> = crate::resources::SERVICES.iter().collect();
        let mut groups = V2Groups::create(&root, "/g", "payroute-t-0", &limits).unwrap();
        assert!(!own.join(leaf_name()).exists());
        clear_files(&own.join("payroute-t-0"));
        groups.remove();
        assert_eq!(read(&own.join("cgroup.subtree_control")), "cpu memory");
        fs::remove_dir_all(root).unwrap();
    }

    /// The real kernel, as far as this machine allows: a v2 group made in the unified
    /// hierarchy (hybrid machines have one without controllers), a real process moved
    /// in through `cgroup.procs`, its CPU time read from `cpu.stat`, the group removed.
    #[test]
    fn joins_a_real_process_into_a_real_v2_group() {
        let own_text = fs::read_to_string("/proc/self/cgroup").unwrap();
        let mount = [
            Path::new(CGROUP_ROOT).to_path_buf(),
            Path::new(CGROUP_ROOT).join("unified"),
        ]
        .into_iter()
        .find(|m| m.join("cgroup.controllers").is_file());
        let (Some(mount), Some(own)) = (mount, crate::cgroup::own_v2_group(&own_text)) else {
            eprintln!("NOTE: no cgroup v2 hierarchy here: test skipped");
            return;
        };
        let dir = mount
            .join(own.trim_start_matches('/'))
            .join(format!("payroute-v2test-{}", std::process::id()));
        if let Err(e) = fs::create_dir(&dir) {
            // CI runs as root on a machine with a writable hierarchy: there, a failure.
            assert!(
                std::env::var_os("CI").is_none(),
                "cannot make {}: {e}",
                dir.display()
            );
            eprintln!("NOTE: cannot make a cgroup v2 group ({e}): test skipped");
            return;
        }
        let mut child = std::process::Command::new("sh")
            .args([
                "-c",
                "i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done; sleep 30",
            ])
            .spawn()
            .unwrap();
        let joined = join(&dir, child.id());
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let mut usage = None;
        while joined.is_ok() && std::time::Instant::now() < deadline {
            usage = cpu_usage_seconds(&dir).filter(|s| *s > 0.0);
            if usage.is_some() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let members = fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
        child.kill().unwrap();
        child.wait().unwrap();
        rmdir_retrying(&dir);
        joined.unwrap();
        assert!(
            members
                .split_whitespace()
                .any(|p| p == child.id().to_string()),
            "{members}"
        );
        assert!(usage.is_some(), "no CPU time in {}/cpu.stat", dir.display());
        assert!(!dir.exists(), "the group was not removed");
    }
}
