//! The throwaway PostgreSQL cluster of `--ledger postgres` as a role of the topology
//! ([`ClusterRole`]): its row in the table, its usage, its supervision (a postmaster
//! that is gone is reported and, under `--restart always`, started again on the same
//! data, which PostgreSQL recovers from its WAL) and its stop.
//!
//! It is not a [`crate::children::Proc`]: `pg_ctl` starts the postmaster in a session of
//! its own and returns, so the launcher never has it as a child to wait for. Its state is
//! read from its pid file instead (`PgCluster::postmaster_pid`).

use crate::pgcluster::PgCluster;
use crate::procs::Sample;
use crate::supervise::RestartState;
use crate::{Event, ProcessUsage, Restart, UsageDetail};
use std::time::Instant;

/// The role's name in the table, the events and the usage.
pub(crate) const NAME: &str = "postgres";

/// The cluster and what the launcher knows of it.
#[derive(Debug)]
pub(crate) struct ClusterRole {
    pub(crate) cluster: PgCluster,
    /// The postmaster while it is believed to run; `None` once it was found gone.
    running: Option<u32>,
    restart: RestartState,
    /// Usage of earlier postmasters (before a restart), and the latest sample.
    prior: Sample,
    last: Sample,
}

impl ClusterRole {
    /// A cluster just started.
    pub(crate) fn new(cluster: PgCluster) -> ClusterRole {
        ClusterRole {
            running: Some(cluster.last_pid()),
            cluster,
            restart: RestartState::started(Instant::now()),
            prior: Sample::default(),
            last: Sample::default(),
        }
    }

    /// The postmaster's PID, while it runs.
    pub(crate) fn pid(&self) -> Option<u32> {
        self.running
    }

    /// One look, at `now`: a postmaster found gone is reported (and a restart scheduled
    /// under [`Restart::Always`]); a restart that is due is done.
    pub(crate) fn supervise(&mut self, policy: Restart, now: Instant) -> Option<Event> {
        match self.running {
            Some(pid) if self.cluster.postmaster_pid().is_none() => {
                self.running = None;
                self.prior = self.prior.add(self.last);
                self.last = Sample::default();
                self.restart.exited(now);
                let restart_in = (policy == Restart::Always).then(|| self.restart.schedule(now));
                Some(Event::Exited {
                    name: NAME.into(),
                    pid,
                    // Not a child: its exit status is PostgreSQL's to log.
                    status: "its postmaster is gone (see its log)".into(),
                    log: self.cluster.log().to_path_buf(),
                    log_tail: crate::procs::tail(self.cluster.log(), 15),
                    restart_in,
                })
            }
            Some(_) => None,
            None if self.restart.take_due(now) => Some(self.start_again(now)),
            None => None,
        }
    }

    fn start_again(&mut self, now: Instant) -> Event {
        match self.cluster.start_again() {
            Ok(pid) => {
                self.running = Some(pid);
                self.restart.restarted(now);
                Event::Restarted {
                    name: NAME.into(),
                    pid,
                    restarts: self.restart.restarts(),
                }
            }
            Err(e) => Event::RestartFailed {
                name: NAME.into(),
                error: format!("{e:#}"),
                retry_in: self.restart.schedule(now),
            },
        }
    }

    /// Samples the server's processes (while it runs).
    pub(crate) fn sample(&mut self) {
        if self.running.is_some() {
            if let Some(s) = self.cluster.sample() {
                self.last = s;
            }
        }
    }

    /// What every postmaster so far used (with its backends: the process group).
    pub(crate) fn usage(&self) -> UsageDetail {
        let current = match self.running {
            Some(_) => self.cluster.sample().unwrap_or(self.last),
            None => Sample::default(),
        };
        let total = self.prior.add(current);
        UsageDetail {
            usage: ProcessUsage {
                name: NAME.into(),
                pid: self.running.unwrap_or(self.cluster.last_pid()),
                cpu_seconds: total.cpu_seconds,
                peak_rss_bytes: total.peak_rss_bytes,
                throttled_seconds: None,
                limits_enforced: false,
            },
            cgroup_peak_bytes: None,
            restarts: self.restart.restarts(),
        }
    }

    /// Stops the server; no restart after this.
    pub(crate) fn stop(&mut self) -> anyhow::Result<()> {
        self.restart.cancel();
        self.running = None;
        self.cluster.stop()
    }
}
