//! [`Running`]: the handle of a started topology. It tells where everything is and what
//! it used, hands over the supervisor's events, and stops everything (also when dropped).

use crate::children::Children;
use crate::preflight::release_run_dir;
use crate::{stop, Event, Lb, LimitsStatus, ProcessUsage, UsageDetail};
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

    /// PIDs of the processes currently running, by role.
    pub fn pids(&self) -> Vec<(String, u32)> {
        self.children
            .procs()
            .iter()
            .filter(|p| p.child.is_some())
            .map(|p| (p.spec.name.clone(), p.pid))
            .collect()
    }

    /// What runs where, as a table for the operator.
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
        for p in procs.iter() {
            out.push_str(&format!(
                "{:<20} {:>7}  {:<45} {}\n",
                p.spec.name,
                p.pid,
                p.spec.address,
                p.spec.log.display()
            ));
        }
        if self.lb == Lb::Embedded {
            out.push_str(&format!(
                "{:<20} {:>7}  embedded: api1 and api2 share {} with SO_REUSEPORT (no process)\n",
                "lb", "-", self.public_addr
            ));
        }
        out.push_str(&self.limits.to_string());
        out
    }

    /// Stops every process (load balancer, api instances, worker, processors, in that
    /// order, each by SIGTERM to its process group and SIGKILL after a grace period),
    /// removes the cgroups, and returns the final usage.
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
        let failures = stop::stop_all(&mut procs);
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

impl Drop for Running {
    fn drop(&mut self) {
        if let Err(e) = self.shutdown() {
            tracing::error!("payroute up: {e:#}");
        }
    }
}
