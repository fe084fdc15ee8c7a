//! Where PostgreSQL's programs are ([`find_bindir`]) and which user runs them
//! ([`RunAs`]): a throwaway cluster needs `initdb`, `pg_ctl` and `createdb` of one
//! installation, and PostgreSQL refuses to run as root.

use anyhow::{bail, Context};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Overrides the search for PostgreSQL's programs (a directory holding `initdb` and
/// `pg_ctl`), for installations outside the places below.
pub const ENV_PG_BINDIR: &str = "PAYROUTE_PG_BINDIR";

/// Where Debian and Ubuntu install each major version's server programs
/// (`/usr/lib/postgresql/15/bin`); the newest version is taken.
const DEBIAN_VERSIONS_DIR: &str = "/usr/lib/postgresql";

/// The programs a throwaway cluster runs.
const PROGRAMS: [&str; 3] = ["initdb", "pg_ctl", "createdb"];

/// The system user Debian's package creates, which the server runs as when the
/// launcher is root.
const SYSTEM_USER: &str = "postgres";

/// The directory of PostgreSQL's server programs: `$PAYROUTE_PG_BINDIR`, else the newest
/// `/usr/lib/postgresql/<version>/bin` (Debian, Ubuntu), else `pg_config --bindir`,
/// else the directory of `initdb` in `PATH`. The error says how to install it.
pub fn find_bindir() -> anyhow::Result<PathBuf> {
    if let Some(dir) = std::env::var_os(ENV_PG_BINDIR) {
        let dir = PathBuf::from(dir);
        if has_programs(&dir) {
            return Ok(dir);
        }
        bail!(
            "{ENV_PG_BINDIR}={} does not hold PostgreSQL's {}",
            dir.display(),
            PROGRAMS.join(", ")
        );
    }
    let found = newest_debian_bindir(Path::new(DEBIAN_VERSIONS_DIR))
        .or_else(pg_config_bindir)
        .or_else(path_bindir);
    found.with_context(not_installed)
}

/// The message for a machine without PostgreSQL.
fn not_installed() -> String {
    format!(
        "PostgreSQL is not installed: no {} in {DEBIAN_VERSIONS_DIR}/<version>/bin, in \
         `pg_config --bindir` or in PATH. scripts/install-deps.sh installs it (Debian's \
         `postgresql` package, version 15 on Debian 12); or set {ENV_PG_BINDIR}",
        PROGRAMS.join(", ")
    )
}

fn has_programs(dir: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    PROGRAMS.iter().all(|p| {
        dir.join(p)
            .metadata()
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    })
}

/// `<versions>/<N>/bin` with the highest numeric `N` that holds the programs.
fn newest_debian_bindir(versions: &Path) -> Option<PathBuf> {
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir(versions)
        .ok()?
        .filter_map(|e| {
            let e = e.ok()?;
            let version = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            has_programs(&bin).then_some((version, bin))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, bin)| bin)
}

fn pg_config_bindir() -> Option<PathBuf> {
    let out = Command::new("pg_config").arg("--bindir").output().ok()?;
    let dir = PathBuf::from(String::from_utf8(out.stdout).ok()?.trim());
    (out.status.success() && has_programs(&dir)).then_some(dir)
}

fn path_bindir() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).find(|d| has_programs(d))
}

/// The user the cluster's programs run as, when it is not the launcher's own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RunAs {
    pub(crate) uid: u32,
    pub(crate) gid: u32,
}

impl RunAs {
    /// `None` when the launcher is not root (the cluster runs as the launcher's user);
    /// the `postgres` system user when it is (initdb and postgres refuse root).
    pub(crate) fn for_this_process() -> anyhow::Result<Option<RunAs>> {
        if !crate::procs::running_as_root() {
            return Ok(None);
        }
        let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
        match system_user(&passwd, SYSTEM_USER) {
            Some(user) => Ok(Some(user)),
            None => bail!(
                "running as root, and PostgreSQL refuses to run as root: it runs as the \
                 `{SYSTEM_USER}` system user, and there is none (Debian's postgresql \
                 package creates it; scripts/install-deps.sh installs that package)"
            ),
        }
    }

    /// Gives `path` to this user (the cluster's directory and log file).
    pub(crate) fn own(&self, path: &Path) -> anyhow::Result<()> {
        std::os::unix::fs::chown(path, Some(self.uid), Some(self.gid)).with_context(|| {
            format!(
                "cannot give {} to the {SYSTEM_USER} user (uid {})",
                path.display(),
                self.uid
            )
        })
    }
}

/// `name`'s uid and gid in an `/etc/passwd` text.
fn system_user(passwd: &str, name: &str) -> Option<RunAs> {
    passwd.lines().find_map(|line| {
        let f: Vec<&str> = line.split(':').collect();
        if f.len() < 4 || f[0] != name {
            return None;
        }
        Some(RunAs {
            uid: f[2].parse().ok()?,
            gid: f[3].parse().ok()?,
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_user_from_passwd() {
        let passwd = "root:x:0:0:root:/root:/bin/bash\n\
                      postgres:x:101:104:PostgreSQL administrator,,,:/var/lib/postgresql:/bin/bash\n";
        assert_eq!(
            system_user(passwd, "postgres"),
            Some(RunAs { uid: 101, gid: 104 })
        );
        assert_eq!(system_user(passwd, "post"), None);
        assert_eq!(system_user("postgres:x:oops:1:", "postgres"), None);
    }

    #[test]
    fn takes_the_newest_version_that_has_the_programs() {
        use std::os::unix::fs::PermissionsExt;
        let base = std::env::temp_dir().join(format!("launcher-pgbin-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        for (version, complete) in [("13", true), ("15", true), ("16", false), ("x", true)] {
            let bin = base.join(version).join("bin");
            std::fs::create_dir_all(&bin).unwrap();
            let programs: &[&str] = if complete { &PROGRAMS } else { &["initdb"] };
            for p in programs {
                let path = bin.join(p);
                std::fs::write(&path, "#!/bin/sh\n").unwrap();
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
            }
        }
        let found = newest_debian_bindir(&base);
        std::fs::remove_dir_all(&base).unwrap();
        assert_eq!(found, Some(base.join("15").join("bin")));
        assert_eq!(newest_debian_bindir(Path::new("/nonexistent")), None);
    }

    #[test]
    fn the_missing_install_message_says_how_to_install() {
        let text = not_installed();
        assert!(
            text.contains("scripts/install-deps.sh installs it"),
            "{text}"
        );
        assert!(text.contains(ENV_PG_BINDIR), "{text}");
    }
}
