//! What is checked and prepared before anything starts: the run directory (made,
//! emptied if an earlier `payroute up` made it, claimed with a pid file and released at
//! stop), the ports, and whether nginx's worker processes can reach the sockets in the
//! run directory.

use anyhow::{bail, Context};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// Marks a directory as a run directory of `payroute up`, which it may empty at start.
const RUN_DIR_MARKER: &str = ".payroute-up";
/// Holds the PID of the launcher using the run directory.
pub(crate) const RUN_DIR_PIDFILE: &str = "launcher.pid";

/// Creates `dir` (or empties one that an earlier `payroute up` made and no live
/// launcher uses), marks it, and makes it traversable by nginx's unprivileged worker
/// processes (they connect to the api sockets inside).
pub(crate) fn prepare_run_dir(dir: &Path) -> anyhow::Result<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create run directory {}", dir.display()))?;
    let dir = dir
        .canonicalize()
        .with_context(|| format!("cannot resolve {}", dir.display()))?;
    let marker = dir.join(RUN_DIR_MARKER);
    let pidfile = dir.join(RUN_DIR_PIDFILE);
    let mut entries = std::fs::read_dir(&dir)?.peekable();
    if entries.peek().is_some() {
        if !marker.exists() {
            bail!(
                "run directory {} is not empty and was not made by payroute up: choose an \
                 empty or new directory (--run-dir)",
                dir.display()
            );
        }
        if let Some(pid) = std::fs::read_to_string(&pidfile)
            .ok()
            .and_then(|s| s.trim().parse::<u32>().ok())
        {
            if Path::new(&format!("/proc/{pid}")).exists() {
                bail!(
                    "run directory {} is in use by the payroute up of pid {pid}: stop it, or \
                     choose another --run-dir",
                    dir.display()
                );
            }
        }
        for entry in entries {
            let path = entry?.path();
            let removed = if path.is_dir() && !path.is_symlink() {
                std::fs::remove_dir_all(&path)
            } else {
                std::fs::remove_file(&path)
            };
            removed.with_context(|| format!("cannot clear {}", path.display()))?;
        }
    }
    std::fs::write(&marker, "made by payroute up; emptied at each start\n")?;
    std::fs::write(&pidfile, format!("{}\n", std::process::id()))?;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755))?;
    Ok(dir)
}

/// Gives the run directory up (its pid file goes; the logs stay), at stop or when the
/// start fails before anything ran.
pub(crate) fn release_run_dir(dir: &Path) {
    let _ = std::fs::remove_file(dir.join(RUN_DIR_PIDFILE));
}

/// Fails if something already listens on `addr`. Needed for the public port because
/// the api instances bind it with SO_REUSEPORT (embedded load balancer): a second
/// `payroute up` on the same port would not get "address in use" but silently share the
/// port with the first one. A plain bind (no SO_REUSEPORT) conflicts with any listener,
/// so it tells. The emulators bind without SO_REUSEPORT and would fail on a taken port
/// by themselves; checking their ports here only gives that failure up front, naming
/// the flag to change.
pub(crate) fn ensure_port_free(addr: SocketAddr, flag: &str) -> anyhow::Result<()> {
    match std::net::TcpListener::bind(addr) {
        Ok(_) => Ok(()),
        Err(e) => bail!(
            "{addr} is not available ({e}): another payroute up, or another server, \
             uses it; stop it or choose another {flag}"
        ),
    }
}

/// nginx started by root runs its worker processes as `nobody`, and they must reach
/// the api sockets in the run directory: every directory above it must be searchable
/// by others. Checked up front, because otherwise every request fails with a 502 and
/// the cause is far from obvious.
pub(crate) fn check_reachable_by_nginx_workers(run_dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let root = std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0);
    if !root {
        // The workers run as the launcher's own user.
        return Ok(());
    }
    for dir in run_dir.ancestors() {
        let mode = std::fs::metadata(dir)
            .map(|m| m.permissions().mode())
            .unwrap_or(0o755);
        if mode & 0o001 == 0 {
            bail!(
                "--lb nginx: nginx's worker processes run as `nobody` and cannot enter {} \
                 (mode {:o}) to reach the api sockets in {}: choose a --run-dir under /tmp",
                dir.display(),
                mode & 0o777,
                run_dir.display()
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_dir_is_reused_only_if_ours() {
        let base = std::env::temp_dir().join(format!("launcher-rundir-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        let dir = prepare_run_dir(&base).unwrap();
        std::fs::write(dir.join("api1.log"), "old").unwrap();
        std::fs::create_dir(dir.join("worker-data")).unwrap();
        // The pid file names a live launcher (this test): refused.
        let err = prepare_run_dir(&base).unwrap_err().to_string();
        assert!(err.contains("in use"), "{err}");
        std::fs::remove_file(dir.join(RUN_DIR_PIDFILE)).unwrap();
        prepare_run_dir(&base).unwrap();
        assert!(!dir.join("api1.log").exists() && !dir.join("worker-data").exists());
        // A foreign non-empty directory: refused, untouched.
        let foreign = base.join("foreign");
        std::fs::create_dir(&foreign).unwrap();
        std::fs::write(foreign.join("precious"), "x").unwrap();
        assert!(prepare_run_dir(&foreign).is_err());
        assert!(foreign.join("precious").exists());
        std::fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn nginx_needs_a_run_dir_others_can_enter() {
        use std::os::unix::fs::PermissionsExt;
        let base = std::env::temp_dir().join(format!("launcher-private-{}", std::process::id()));
        let inner = base.join("run");
        std::fs::create_dir_all(&inner).unwrap();
        assert!(check_reachable_by_nginx_workers(&inner).is_ok());
        std::fs::set_permissions(&base, std::fs::Permissions::from_mode(0o700)).unwrap();
        let verdict = check_reachable_by_nginx_workers(&inner);
        std::fs::remove_dir_all(&base).unwrap();
        let root = std::fs::metadata("/proc/self")
            .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
            .unwrap();
        if root {
            let err = verdict.unwrap_err().to_string();
            assert!(err.contains("nobody"), "{err}");
        } else {
            assert!(verdict.is_ok());
        }
    }

    #[test]
    fn refuses_a_port_in_use() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = taken.local_addr().unwrap();
        let err = ensure_port_free(addr, "--port").unwrap_err().to_string();
        assert!(err.contains("--port"), "{err}");
        drop(taken);
        assert!(ensure_port_free(addr, "--port").is_ok());
    }
}
