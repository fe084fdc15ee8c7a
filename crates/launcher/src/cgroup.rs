//! Per-service CPU and memory limits with cgroups, the way Docker applies a compose
//! file's `deploy.resources.limits`: a CFS quota (`cpus: "0.3"` = 30 ms of CPU per
//! 100 ms period) and a memory limit (page cache included, OOM kill beyond it).
//!
//! Where: a group `payroute-<launcher pid>-<n>` is made **inside the launcher's own
//! cgroup** (read from `/proc/self/cgroup`), with one child group per service. Nesting
//! keeps whatever limits the launcher itself runs under (a CI sandbox, a systemd slice)
//! in force. The groups are removed when the topology stops.
//!
//! Which cgroup version ([`Layout::detect`]), from what the machine mounts under
//! `/sys/fs/cgroup`:
//! - **v1** (`cgroup_v1`): `cpu` and `memory` hierarchies of their own. Also used on a
//!   **hybrid** machine (v1 controllers plus a `cgroup2` hierarchy at
//!   `/sys/fs/cgroup/unified`): a controller lives in one hierarchy only, and the v1 ones
//!   hold `cpu` and `memory`, so the unified one has neither.
//! - **v2** (`cgroup_v2`): one unified hierarchy with the `cpu` and `memory`
//!   controllers, at `/sys/fs/cgroup` (or at `/sys/fs/cgroup/unified` when no v1
//!   hierarchy took them). v2's rules make the launcher move itself into a leaf group of
//!   its own; see that file.
//!
//! Anything that prevents the limits (not root, no controller, a read-only hierarchy,
//! other processes in the launcher's v2 group) is a [`CgroupError`], reported to the
//! operator as `limits NOT enforced: <reason>`; the launcher goes on without limits.

use crate::cgroup_v1::V1Groups;
use crate::cgroup_v2::V2Groups;
use crate::resources::ServiceLimit;
use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

/// Where cgroup hierarchies are mounted on every mainstream distribution.
pub(crate) const CGROUP_ROOT: &str = "/sys/fs/cgroup";
/// Where a hybrid machine mounts its cgroup v2 hierarchy, under [`CGROUP_ROOT`].
const HYBRID_UNIFIED_DIR: &str = "unified";
/// CFS period, as Docker uses: a quota of 30 ms in it is 0.3 CPU. Shorter periods
/// smooth throttling but cost scheduler overhead; 100 ms is what the challenge's
/// containers get, so it is what we must measure under.
pub(crate) const CFS_PERIOD_US: u64 = 100_000;
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
    /// Neither v1 hierarchies nor a v2 one with these controllers.
    NoController(&'static str),
    /// The v1 hierarchy of this controller is not mounted where expected.
    NotMounted(&'static str),
    /// The launcher's v2 group cannot hand its controllers to child groups; the text
    /// says why and what to do.
    V2Delegation(String),
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
            CgroupError::NoController(controller) => write!(
                f,
                "no `{controller}` cgroup controller: neither a cgroup v1 hierarchy nor the \
                 cgroup v2 one offers it to payroute up's group"
            ),
            CgroupError::NotMounted(controller) => write!(
                f,
                "the cgroup v1 `{controller}` hierarchy is not mounted under {CGROUP_ROOT}"
            ),
            CgroupError::V2Delegation(why) => write!(f, "cgroup v2: {why}"),
            CgroupError::CreateDir { dir, source } => write!(
                f,
                "cannot create {}: {source} (needs root and a writable cgroup hierarchy)",
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

/// Which cgroup hierarchy holds the `cpu` and `memory` controllers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Layout {
    /// v1 hierarchies under the root; `unified` is the hybrid machine's controller-less
    /// cgroup2 mount, if any.
    V1 { unified: Option<PathBuf> },
    /// The cgroup2 hierarchy mounted here has the controllers.
    V2 { mount: PathBuf },
}

impl Layout {
    /// Reads the layout under `root` (normally [`CGROUP_ROOT`]), given the text of
    /// `/proc/self/cgroup`. `Err` names what is missing.
    pub(crate) fn detect(root: &Path, proc_self_cgroup: &str) -> Result<Layout, CgroupError> {
        let v1_has = |c| own_v1_group(proc_self_cgroup, c).is_some();
        let unified = [root.to_path_buf(), root.join(HYBRID_UNIFIED_DIR)]
            .into_iter()
            .find(|m| m.join("cgroup.controllers").is_file());
        if v1_has("cpu") && v1_has("memory") {
            return Ok(Layout::V1 { unified });
        }
        match unified {
            Some(mount) => Ok(Layout::V2 { mount }),
            None if v1_has("cpu") => Err(CgroupError::NoController("memory")),
            None => Err(CgroupError::NoController("cpu")),
        }
    }

    /// For the operator: `cgroup v1`, `cgroup v1 (hybrid: ...)` or `cgroup v2 at ...`.
    pub(crate) fn describe(&self) -> String {
        match self {
            Layout::V1 { unified: None } => "cgroup v1".into(),
            Layout::V1 {
                unified: Some(mount),
            } => format!(
                "cgroup v1 (hybrid machine: the cgroup2 hierarchy at {} has no cpu or memory \
                 controller)",
                mount.display()
            ),
            Layout::V2 { mount } => format!("cgroup v2 at {}", mount.display()),
        }
    }
}

/// The cgroups of one started topology, with either version.
#[derive(Debug)]
pub(crate) enum Cgroups {
    V1(V1Groups),
    V2(V2Groups),
}

impl Cgroups {
    /// Creates one group per service with its limits, in the version the machine uses.
    /// `Err` says why limits cannot be enforced, for the operator.
    pub(crate) fn create(limits: &[&'static ServiceLimit]) -> Result<Cgroups, CgroupError> {
        let own = fs::read_to_string("/proc/self/cgroup").map_err(CgroupError::ReadOwnGroups)?;
        let root = Path::new(CGROUP_ROOT);
        let layout = Layout::detect(root, &own)?;
        let tag = format!(
            "payroute-{}-{}",
            std::process::id(),
            SEQUENCE.fetch_add(1, Ordering::Relaxed)
        );
        match layout {
            Layout::V1 { .. } => {
                V1Groups::create(root, &own, &tag, limits, layout.describe()).map(Cgroups::V1)
            }
            Layout::V2 { ref mount } => {
                let path = own_v2_group(&own).ok_or_else(|| {
                    CgroupError::V2Delegation("no `0::` line in /proc/self/cgroup".into())
                })?;
                V2Groups::create(mount, path, &tag, limits).map(Cgroups::V2)
            }
        }
    }

    /// Moves `pid` (all its threads) into the groups of `service`.
    pub(crate) fn join(&self, service: &str, pid: u32) -> Result<(), CgroupError> {
        match self {
            Cgroups::V1(g) => g.join(service, pid),
            Cgroups::V2(g) => g.join(service, pid),
        }
    }

    /// Whether `service` has groups here.
    pub(crate) fn has(&self, service: &str) -> bool {
        match self {
            Cgroups::V1(g) => g.has(service),
            Cgroups::V2(g) => g.has(service),
        }
    }

    /// Time the service's processes spent throttled by their CPU quota.
    pub(crate) fn throttled_seconds(&self, service: &str) -> Option<f64> {
        match self {
            Cgroups::V1(g) => g.throttled_seconds(service),
            Cgroups::V2(g) => g.throttled_seconds(service),
        }
    }

    /// Peak memory charged to the service's group (page cache included).
    pub(crate) fn memory_peak_bytes(&self, service: &str) -> Option<u64> {
        match self {
            Cgroups::V1(g) => g.memory_peak_bytes(service),
            Cgroups::V2(g) => g.memory_peak_bytes(service),
        }
    }

    /// Human description, for the launcher's banner.
    pub(crate) fn describe(&self) -> String {
        match self {
            Cgroups::V1(g) => g.describe(),
            Cgroups::V2(g) => g.describe(),
        }
    }

    /// Removes every group; call once their processes have exited.
    pub(crate) fn remove(&mut self) {
        match self {
            Cgroups::V1(g) => g.remove(),
            Cgroups::V2(g) => g.remove(),
        }
    }
}

/// Writes a control file.
pub(crate) fn write(path: &Path, value: &str) -> Result<(), CgroupError> {
    fs::write(path, value).map_err(|source| CgroupError::Write {
        path: path.to_path_buf(),
        value: value.to_string(),
        source,
    })
}

/// Creates a group's directory (and its parents).
pub(crate) fn create_dir(dir: &Path) -> Result<(), CgroupError> {
    fs::create_dir_all(dir).map_err(|source| CgroupError::CreateDir {
        dir: dir.to_path_buf(),
        source,
    })
}

/// A number read from a one-value control file (`memory.peak`).
pub(crate) fn read_number(path: &Path) -> Option<u64> {
    fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// The value of `key` in a flat-keyed control file (`cpu.stat`: `throttled_usec 42`).
pub(crate) fn read_key(path: &Path, key: &str) -> Option<u64> {
    let text = fs::read_to_string(path).ok()?;
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok())?
    })
}

/// Removes an empty group, retrying while the kernel still counts exited tasks in it
/// (EBUSY). Failures are logged: an empty group left behind costs nothing and must not
/// hide the real outcome of a stop.
pub(crate) fn rmdir_retrying(dir: &Path) {
    for attempt in 0..RMDIR_TRIES {
        match fs::remove_dir(dir) {
            Ok(()) => return,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return,
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && attempt + 1 < RMDIR_TRIES => {
                std::thread::sleep(RMDIR_PAUSE);
            }
            Err(e) => {
                tracing::warn!("could not remove cgroup {}: {e}", dir.display());
                return;
            }
        }
    }
}

/// From the text of `/proc/self/cgroup`, the v1 hierarchy that has `controller`: its
/// controller list and the group path.
pub(crate) fn own_v1_group<'a>(
    proc_self_cgroup: &'a str,
    controller: &str,
) -> Option<(&'a str, &'a str)> {
    proc_self_cgroup.lines().find_map(|line| {
        let mut parts = line.splitn(3, ':');
        let id = parts.next()?;
        let names = parts.next()?;
        let path = parts.next()?;
        (id != "0" && names.split(',').any(|n| n == controller)).then_some((names, path))
    })
}

/// From the text of `/proc/self/cgroup`, the group path in the v2 hierarchy (`0::/x`).
pub(crate) fn own_v2_group(proc_self_cgroup: &str) -> Option<&str> {
    proc_self_cgroup
        .lines()
        .find_map(|line| line.strip_prefix("0::"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What this machine's kind reports: v1 controllers and, here, a hybrid cgroup2.
    const HYBRID: &str = "9:name=systemd:/\n4:memory:/sandbox/abc\n2:cpu,cpuacct:/\n0::/\n";
    const UNIFIED: &str = "0::/user.slice/session-1.scope\n";

    #[test]
    fn finds_own_group_per_controller() {
        assert_eq!(
            own_v1_group(HYBRID, "memory"),
            Some(("memory", "/sandbox/abc"))
        );
        assert_eq!(own_v1_group(HYBRID, "cpu"), Some(("cpu,cpuacct", "/")));
        assert_eq!(own_v1_group(HYBRID, "cpuacct"), Some(("cpu,cpuacct", "/")));
        assert_eq!(own_v1_group(HYBRID, "pids"), None);
        assert_eq!(own_v1_group(UNIFIED, "cpu"), None);
        assert_eq!(own_v2_group(UNIFIED), Some("/user.slice/session-1.scope"));
        assert_eq!(own_v2_group(HYBRID), Some("/"));
    }

    /// A fake `/sys/fs/cgroup` with a cgroup2 mount at `at` (relative), if any.
    fn fake_root(name: &str, unified_at: Option<&str>) -> PathBuf {
        let root =
            std::env::temp_dir().join(format!("launcher-layout-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        fs::create_dir_all(&root).unwrap();
        if let Some(at) = unified_at {
            fs::create_dir_all(root.join(at)).unwrap();
            fs::write(
                root.join(at).join("cgroup.controllers"),
                "cpu memory pids\n",
            )
            .unwrap();
        }
        root
    }

    #[test]
    fn detects_v1_hybrid_and_v2() {
        let v1 = fake_root("v1", None);
        assert_eq!(
            Layout::detect(&v1, HYBRID).unwrap(),
            Layout::V1 { unified: None }
        );
        let hybrid = fake_root("hybrid", Some("unified"));
        let layout = Layout::detect(&hybrid, HYBRID).unwrap();
        assert_eq!(
            layout,
            Layout::V1 {
                unified: Some(hybrid.join("unified"))
            }
        );
        assert!(
            layout.describe().contains("hybrid"),
            "{}",
            layout.describe()
        );
        let v2 = fake_root("v2", Some("."));
        assert_eq!(
            Layout::detect(&v2, UNIFIED).unwrap(),
            Layout::V2 {
                mount: v2.join(".")
            }
        );
        // No v1 memory controller, a cgroup2 hierarchy beside: v2 is tried there.
        assert_eq!(
            Layout::detect(&hybrid, "2:cpu:/\n0::/\n").unwrap(),
            Layout::V2 {
                mount: hybrid.join("unified")
            }
        );
        // Nothing at all.
        let err = Layout::detect(&v1, "2:cpu:/\n0::/\n").unwrap_err();
        assert!(err.to_string().contains("`memory`"), "{err}");
        for dir in [v1, hybrid, v2] {
            fs::remove_dir_all(dir).unwrap();
        }
    }

    /// The real machine: whatever it is, detection says so (or why nothing works).
    #[test]
    fn detects_this_machine() {
        let own = fs::read_to_string("/proc/self/cgroup").unwrap();
        match Layout::detect(Path::new(CGROUP_ROOT), &own) {
            Ok(layout) => eprintln!("this machine: {}", layout.describe()),
            Err(e) => eprintln!("this machine: no cgroup limits: {e}"),
        }
    }

    #[test]
    fn reads_flat_keyed_files() {
        let dir = fake_root("keys", None);
        let stat = dir.join("cpu.stat");
        fs::write(&stat, "usage_usec 1200\nthrottled_usec 34\nnr_periods 5\n").unwrap();
        assert_eq!(read_key(&stat, "throttled_usec"), Some(34));
        assert_eq!(read_key(&stat, "usage_usec"), Some(1200));
        assert_eq!(read_key(&stat, "usage"), None);
        fs::write(dir.join("memory.peak"), "4096\n").unwrap();
        assert_eq!(read_number(&dir.join("memory.peak")), Some(4096));
        fs::remove_dir_all(dir).unwrap();
    }

    /// Creates real groups when the machine allows it (root, cgroup v1 or a delegated
    /// v2 group), checks the limits written, and removes them. Elsewhere, checks that a
    /// reason is given.
    #[test]
    fn creates_and_removes_groups_when_allowed() {
        let limits: Vec<_> = crate::resources::SERVICES.iter().collect();
        match Cgroups::create(&limits) {
            Ok(mut groups) => {
                assert!(groups.has("lb") && groups.has("worker"));
                assert_eq!(groups.throttled_seconds("api1"), Some(0.0));
                let description = groups.describe();
                assert!(description.contains("payroute-"), "{description}");
                groups.remove();
                assert!(!groups.has("lb"));
            }
            Err(e) => {
                let reason = e.to_string();
                eprintln!("cgroups not available here: {reason}");
                assert!(!reason.is_empty());
            }
        }
    }
}
