//! A throwaway PostgreSQL cluster for one test ([`TestPg`]), made by the launcher's own
//! module (`launcher::pgcluster`, what `payroute up --ledger postgres` runs): its URL is
//! what a worker's `--ledger` takes; dropping it stops the server and removes its
//! directory (kept, with the server's log, when the test fails).
//!
//! Where PostgreSQL is not installed, [`TestPg::start`] prints why and returns `None`
//! (the test is skipped), unless `CI` is set: there it fails, as `scripts/install-deps.sh`
//! must have installed it.

use launcher::pgcluster::{find_bindir, PgCluster, PgClusterConfig};
use std::path::PathBuf;

/// A running cluster and its directory.
pub struct TestPg {
    cluster: Option<PgCluster>,
    dir: PathBuf,
}

impl TestPg {
    /// Starts a cluster in a test directory of its own, named after `name`; `None` when
    /// PostgreSQL is not installed (outside CI).
    pub fn start(name: &str) -> Option<TestPg> {
        if let Err(e) = find_bindir() {
            assert!(
                std::env::var_os("CI").is_none(),
                "{e:#}; CI is set: scripts/install-deps.sh must install PostgreSQL"
            );
            eprintln!("NOTE: test skipped: {e:#}");
            return None;
        }
        let dir = super::test_dir(&format!("pg-{name}"));
        let config = PgClusterConfig::new(dir.join("pg"), dir.join("postgres.log"));
        let cluster = PgCluster::start(config)
            .unwrap_or_else(|e| panic!("cannot start PostgreSQL in {}: {e:#}", dir.display()));
        Some(TestPg {
            cluster: Some(cluster),
            dir,
        })
    }

    /// `postgres://payroute@127.0.0.1:PORT/payroute`.
    pub fn url(&self) -> String {
        self.cluster().url()
    }

    pub fn cluster(&self) -> &PgCluster {
        self.cluster.as_ref().expect("running")
    }

    /// The postmaster's PID, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.cluster().postmaster_pid()
    }

    /// kill -9 of the server, as a crash of the database's host would leave it (the
    /// postmaster stopped first so that it forks nothing more, then its children and
    /// itself), then a start on the same data: PostgreSQL replays its WAL.
    #[allow(dead_code)]
    pub fn crash_and_restart(&mut self) {
        let pid = self.pid().expect("PostgreSQL runs");
        let kill = |args: &[&str]| {
            let _ = std::process::Command::new(args[0])
                .args(&args[1..])
                .status();
        };
        kill(&["kill", "-STOP", &pid.to_string()]);
        for child in children(pid) {
            kill(&["kill", "-KILL", &child.to_string()]);
        }
        kill(&["kill", "-KILL", &pid.to_string()]);
        // Gone and reaped: PostgreSQL refuses to start while its old PID exists.
        let gone = |p: u32| !std::path::Path::new(&format!("/proc/{p}")).exists();
        super::wait_for(
            std::time::Duration::from_secs(10),
            "PostgreSQL to die",
            || gone(pid).then_some(()),
        );
        let cluster = self.cluster.as_mut().expect("running");
        cluster
            .start_again()
            .unwrap_or_else(|e| panic!("restarting PostgreSQL: {e:#}"));
    }
}

impl Drop for TestPg {
    fn drop(&mut self) {
        if let Some(mut cluster) = self.cluster.take() {
            if let Err(e) = cluster.stop() {
                eprintln!("stopping the test's PostgreSQL: {e:#}");
            }
        }
        if std::thread::panicking() {
            eprintln!("PostgreSQL of the failed test: {}", self.dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// The processes whose parent is `pid` (from /proc).
fn children(pid: u32) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|p| {
            // /proc/P/stat: "P (comm) S PPID ...": the comm may hold spaces.
            std::fs::read_to_string(format!("/proc/{p}/stat")).is_ok_and(|stat| {
                stat.rsplit_once(')')
                    .and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<u32>().ok())
                    == Some(pid)
            })
        })
        .collect()
}
