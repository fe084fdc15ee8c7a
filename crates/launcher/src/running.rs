//! [`Running`]: the handle of a started topology. It tells where everything is and what
//! it used, hands over the supervisor's events, and stops everything (also when dropped).

use crate::children::{after_processors, Children};
use crate::preflight::release_run_dir;
use crate::{pgrole, stop, Event, Lb, LimitsStatus, ProcessUsage, UsageDetail};
use anyhow::bail;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;

/// A started topology. Dropping it stops everything.
#[derive(Debug)]
pub struct Running {
    pub(crate) children: Arc<Children>,
    pub(crate) supervisor: Option<JoinHandle<()>>,
    pub(crate) backend_url: String,
    pub(crate) default_url: String,
    pub(crate) fallback_url: String,
    pub(crate) lb: Lb,
    pub(crate) limits: LimitsStatus,
    pub(crate) run_dir: PathBuf,
    pub(crate) public_addr: SocketAddr,
    /// The workers' shared ledger, if any.
    pub(crate) ledger_url: Option<String>,
    pub(crate) stopped: bool,
}

impl Running {
    /// Base URL of the backend (the load balancer's port), as `http://127.0.0.1:9999`.
    pub fn backend_url(&self) -> String {
        self.backend_url.clone()
    }
    /// Base URL of the default processor (emulated or given).
    pub fn default_url(&self) -> String {
        self.default_url.clone()
    }
    /// Base URL of the fallback processor (emulated or given).
    pub fn fallback_url(&self) -> String {
        self.fallback_url.clone()
    }
    /// Whether the limits are in force, and why not.
    pub fn limits(&self) -> &LimitsStatus {
        &self.limits
    }
    /// The run directory (logs, sockets, configs).
    pub fn run_dir(&self) -> &Path {
        &self.run_dir
    }

    /// Resource use of each process so far (every incarnation of a restarted role).
    pub fn usage(&self) -> Vec<ProcessUsage> {
        self.usage_details().into_iter().map(|d| d.usage).collect()
    }

    /// [`Running::usage`] with cgroup peak memory and restart counts.
    pub fn usage_details(&self) -> Vec<UsageDetail> {
        self.children.usage(&self.children.procs())
    }

    /// Takes the events (exits, restarts) reported since the last call.
    pub fn take_events(&self) -> Vec<Event> {
        self.children.take_events()
    }

    /// PIDs of the processes currently running, by role (for the PostgreSQL cluster,
    /// its postmaster).
    pub fn pids(&self) -> Vec<(String, u32)> {
        let mut pids: Vec<(String, u32)> = self
            .children
            .procs()
            .iter()
            .filter(|p| p.child.is_some())
            .map(|p| (p.spec.name.clone(), p.pid))
            .collect();
        let cluster = self.children.cluster().as_ref().and_then(|c| c.pid());
        if let Some(pid) = cluster {
            let k = pids
                .iter()
                .position(|(name, _)| !name.starts_with("processor"))
                .unwrap_or(pids.len());
            pids.insert(k, (pgrole::NAME.to_string(), pid));
        }
        pids
    }

    /// The URL the workers' shared ledger is at (`--ledger`), if they have one.
    pub fn ledger_url(&self) -> Option<String> {
        self.ledger_url.clone()
    }

    /// What runs where, as a table for the operator, in the order of the start (the
    /// ledger after the processors, before the workers).
    pub fn describe(&self) -> String {
        let procs = self.children.procs();
        let mut out = format!(
            "payroute up: {} (run dir {})\n{:<20} {:>7}  {:<45} LOG\n",
            self.backend_url,
            self.run_dir.display(),
            "ROLE",
            "PID",
            "ADDRESS"
        );
        let row = |name: &str, pid: &str, address: &str, log: &str| {
            format!("{name:<20} {pid:>7}  {address:<45} {log}\n")
        };
        let mut rows: Vec<String> = procs
            .iter()
            .map(|p| {
                let log = p.spec.log.display().to_string();
                row(&p.spec.name, &p.pid.to_string(), &p.spec.address, &log)
            })
            .collect();
        let ledger = if let Some(c) = self.children.cluster().as_ref() {
            let pid = c.pid().map_or("-".into(), |p| p.to_string());
            let log = c.cluster.log().display().to_string();
            Some(row(pgrole::NAME, &pid, &c.cluster.url(), &log))
        } else {
            let given = |url: &String| format!("{} (given)", hide_password(url));
            self.ledger_url
                .as_ref()
                .map(|url| row("ledger", "-", &given(url), "-"))
        };
        if let Some(ledger) = ledger {
            rows.insert(after_processors(&procs), ledger);
        }
        out.extend(rows);
        if self.lb == Lb::Embedded {
            out.push_str(&format!(
                "{:<20} {:>7}  embedded: api1 and api2 share {} with SO_REUSEPORT (no process)\n",
                "lb", "-", self.public_addr
            ));
        }
        if self.ledger_url.is_some() && self.limits == LimitsStatus::Off {
            out.push_str("limits off (the challenge's limits are not for several workers)");
        } else {
            out.push_str(&self.limits.to_string());
        }
        out
    }

    /// Stops every process (load balancer, api instances, workers, the PostgreSQL
    /// cluster, processors, in that order, each by SIGTERM to its process group and
    /// SIGKILL after a grace period; the cluster by `pg_ctl stop -m fast`), removes the
    /// cgroups, and returns the final usage.
    pub fn stop(self) -> anyhow::Result<Vec<ProcessUsage>> {
        Ok(self
            .stop_with_details()?
            .into_iter()
            .map(|d| d.usage)
            .collect())
    }

    /// [`Running::stop`], returning [`UsageDetail`]s.
    pub fn stop_with_details(mut self) -> anyhow::Result<Vec<UsageDetail>> {
        self.shutdown()
    }

    fn shutdown(&mut self) -> anyhow::Result<Vec<UsageDetail>> {
        if self.stopped {
            return Ok(Vec::new());
        }
        self.stopped = true;
        self.children.request_stop();
        if let Some(h) = self.supervisor.take() {
            let _ = h.join();
        }
        let mut procs = self.children.procs();
        // Final usage, read while the processes still exist.
        let usage = self.children.usage(&procs);
        let failures = stop::stop_all(&mut procs, self.children.cluster().as_mut());
        drop(procs);
        self.children.remove_cgroups();
        release_run_dir(&self.run_dir);
        if failures.is_empty() {
            Ok(usage)
        } else {
            let failures: Vec<String> = failures.iter().map(ToString::to_string).collect();
            bail!("could not stop: {}", failures.join("; "))
        }
    }
}

/// `url` without the password it may hold (`postgres://user:secret@host` →
/// `postgres://user:***@host`), for what is printed.
pub fn hide_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    match rest.split_once('@') {
        Some((user_info, host)) if user_info.contains(':') => {
            let user = user_info.split(':').next().unwrap_or("");
            format!("{scheme}://{user}:***@{host}")
        }
        _ => url.to_string(),
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Err(e) = self.shutdown() {
            tracing::error!("payroute up: {e:#}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_not_printed() {
        assert_eq!(
            hide_password("postgres://payroute:s3cret@db:5432/payroute"),
            "postgres://payroute:***@db:5432/payroute"
        );
        assert_eq!(
            hide_password("postgres://payroute@db:5432/payroute"),
            "postgres://payroute@db:5432/payroute"
        );
        assert_eq!(hide_password("nonsense"), "nonsense");
    }
}
