//! The launcher's table of its children: one [`Proc`] per role (its current process, its
//! usage so far), and [`Children`], the table with the throwaway PostgreSQL cluster (if
//! any), the events not yet taken, the cgroups, the stop flag and the restart policy,
//! shared by [`crate::Running`], the start and the supervisor thread.

use crate::cgroup::{CgroupError, Cgroups};
use crate::pgrole::ClusterRole;
use crate::procs::{self, Sample, Spec};
use crate::supervise::RestartState;
use crate::usage::usage_of;
use crate::{Event, Restart, UsageDetail};
use std::io;
use std::process::{Child, ExitStatus};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Instant;

/// Lines of a child's log quoted in an error or an exit report.
const LOG_TAIL_LINES: usize = 15;
/// Events kept for [`crate::Running::take_events`] when nobody takes them: a role in a
/// crash loop (one restart per 10 s at most) must not grow memory without bound.
const MAX_KEPT_EVENTS: usize = 1000;

/// One role of the topology and its current process.
#[derive(Debug)]
pub(crate) struct Proc {
    pub(crate) spec: Spec,
    pub(crate) child: Option<Child>,
    /// PID of the current (or last) process.
    pub(crate) pid: u32,
    /// When it is to be started again, if ever.
    pub(crate) restart: RestartState,
    /// Usage of earlier incarnations.
    pub(crate) prior: Sample,
    /// Latest sample of the current incarnation.
    pub(crate) last: Sample,
}

impl Proc {
    /// A role whose first process was just spawned.
    pub(crate) fn new(spec: Spec, child: Child) -> Proc {
        Proc {
            spec,
            pid: child.id(),
            child: Some(child),
            restart: RestartState::started(Instant::now()),
            prior: Sample::default(),
            last: Sample::default(),
        }
    }

    /// Usage of the current process (of its group, for a multi-process role), read now;
    /// `None` when it has no process.
    pub(crate) fn sample_now(&self) -> Option<Sample> {
        self.child.as_ref()?;
        if self.spec.multi_process {
            procs::sample_group(self.pid)
        } else {
            procs::sample(self.pid)
        }
    }

    /// Reaps the process if it has exited, and returns how it ended. Whatever it forked
    /// is killed with it (its process group), and its last sample joins the usage of
    /// earlier incarnations. `Ok(None)`: it still runs, or there was no process.
    pub(crate) fn try_reap(&mut self) -> io::Result<Option<ExitStatus>> {
        let Some(child) = self.child.as_mut() else {
            return Ok(None);
        };
        let Some(status) = child.try_wait()? else {
            return Ok(None);
        };
        self.child = None;
        procs::signal_group(self.pid, libc::SIGKILL);
        self.prior = self.prior.add(self.last);
        self.last = Sample::default();
        Ok(Some(status))
    }

    /// The end of its log, as errors and exit reports quote it.
    pub(crate) fn log_tail(&self) -> String {
        procs::tail(&self.spec.log, LOG_TAIL_LINES)
    }
}

/// The launcher's children and what it knows of them (each role's process and usage,
/// the events not yet taken, the cgroups), with the stop flag and the restart policy:
/// shared by [`crate::Running`] and its supervisor thread.
#[derive(Debug)]
pub(crate) struct Children {
    procs: Mutex<Vec<Proc>>,
    /// The throwaway PostgreSQL cluster of `--ledger postgres`.
    cluster: Mutex<Option<ClusterRole>>,
    events: Mutex<Vec<Event>>,
    stopping: AtomicBool,
    cgroups: Mutex<Option<Cgroups>>,
    /// What happens when a role exits.
    pub(crate) restart: Restart,
}

/// Where the cluster goes in a list of the roles in start order: after the processors
/// (started first), before the workers.
pub(crate) fn after_processors(procs: &[Proc]) -> usize {
    procs
        .iter()
        .position(|p| !p.spec.name.starts_with("processor"))
        .unwrap_or(procs.len())
}

/// Locks a mutex even if a panicking thread poisoned it: the data (process table,
/// events) stays meaningful, and stopping the children must work after a panic.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Children {
    /// No children yet; they will run in `cgroups`, if any, under the `restart` policy.
    pub(crate) fn new(cgroups: Option<Cgroups>, restart: Restart) -> Children {
        Children {
            procs: Mutex::default(),
            cluster: Mutex::default(),
            events: Mutex::default(),
            stopping: AtomicBool::default(),
            cgroups: Mutex::new(cgroups),
            restart,
        }
    }

    /// The roles, locked. Lock order: the roles before the cluster, the cgroups and
    /// the events.
    pub(crate) fn procs(&self) -> MutexGuard<'_, Vec<Proc>> {
        lock(&self.procs)
    }

    /// The throwaway PostgreSQL cluster, if one was started, locked.
    pub(crate) fn cluster(&self) -> MutexGuard<'_, Option<ClusterRole>> {
        lock(&self.cluster)
    }

    /// From now on the children are being stopped: the supervisor leaves them alone.
    pub(crate) fn request_stop(&self) {
        self.stopping.store(true, Ordering::SeqCst);
    }

    /// Whether [`Children::request_stop`] was called.
    pub(crate) fn stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

    /// Moves `pid` into the cgroups of role `name`, when limits are in force and the
    /// role has some; otherwise does nothing.
    pub(crate) fn limit(&self, name: &str, pid: u32) -> Result<(), CgroupError> {
        match lock(&self.cgroups).as_ref() {
            Some(groups) if groups.has(name) => groups.join(name, pid),
            _ => Ok(()),
        }
    }

    /// Moves every process of each running multi-process role (the load balancer) into
    /// its role's cgroups: the workers it forked may have started before its PID was
    /// moved, or since.
    pub(crate) fn rejoin_groups(&self, procs: &[Proc]) {
        let cgroups = lock(&self.cgroups);
        let Some(groups) = cgroups.as_ref() else {
            return;
        };
        for p in procs
            .iter()
            .filter(|p| p.spec.multi_process && p.child.is_some())
        {
            if groups.has(&p.spec.name) {
                for member in procs::group_members(p.pid) {
                    if let Err(e) = groups.join(&p.spec.name, member) {
                        tracing::warn!("{e}");
                    }
                }
            }
        }
    }

    /// Usage of each role of `procs` (every incarnation), with its cgroup's figures,
    /// and of the cluster.
    pub(crate) fn usage(&self, procs: &[Proc]) -> Vec<UsageDetail> {
        let cluster = self.cluster().as_ref().map(ClusterRole::usage);
        let cgroups = lock(&self.cgroups);
        let mut usage: Vec<UsageDetail> = procs
            .iter()
            .map(|p| usage_of(p, cgroups.as_ref()))
            .collect();
        if let Some(cluster) = cluster {
            usage.insert(after_processors(procs), cluster);
        }
        usage
    }

    /// Removes the cgroups, once every child has exited.
    pub(crate) fn remove_cgroups(&self) {
        if let Some(mut groups) = lock(&self.cgroups).take() {
            groups.remove();
        }
    }

    /// Logs `events` and keeps them for [`Children::take_events`] (the newest
    /// [`MAX_KEPT_EVENTS`]).
    pub(crate) fn report(&self, events: Vec<Event>) {
        if events.is_empty() {
            return;
        }
        // Logged here, so that any program that embeds the launcher reports deaths
        // without extra code; also kept for `Running::take_events`.
        for e in &events {
            tracing::warn!("{e}");
        }
        let mut kept = lock(&self.events);
        kept.extend(events);
        let excess = kept.len().saturating_sub(MAX_KEPT_EVENTS);
        kept.drain(..excess);
    }

    /// The events reported since the last call.
    pub(crate) fn take_events(&self) -> Vec<Event> {
        std::mem::take(&mut *lock(&self.events))
    }
}
