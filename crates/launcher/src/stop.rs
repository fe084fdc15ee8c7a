//! How the children stop: in order ([`STOP_ORDER`]), each batch by SIGTERM to its
//! process groups, then SIGKILL to what is left after [`STOP_GRACE`]; the throwaway
//! PostgreSQL cluster, in its turn, by `pg_ctl stop -m fast` (then by PID, see
//! `pgcluster`).

use crate::children::Proc;
use crate::pgrole::{self, ClusterRole};
use crate::procs;
use std::fmt;
use std::io;
use std::time::{Duration, Instant};

/// Time a child gets between SIGTERM and SIGKILL. The worker uses it to finish its
/// in-flight forwards and flush its log; more would make Ctrl-C feel stuck.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// A child that could not be waited for: it may still run.
#[derive(Debug)]
pub(crate) struct StopFailure {
    name: String,
    pid: u32,
    error: io::Error,
}

impl StopFailure {
    fn of(p: &Proc, error: io::Error) -> StopFailure {
        StopFailure {
            name: p.spec.name.clone(),
            pid: p.pid,
            error,
        }
    }

    fn of_cluster(c: &ClusterRole, error: &anyhow::Error) -> StopFailure {
        StopFailure {
            name: pgrole::NAME.into(),
            pid: c.cluster.last_pid(),
            error: io::Error::other(format!("{error:#}")),
        }
    }
}

impl fmt::Display for StopFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (pid {}): {}", self.name, self.pid, self.error)
    }
}

/// Stops every role of `procs`, and the cluster if any, stage by stage in
/// [`STOP_ORDER`]. Returns failures.
pub(crate) fn stop_all(
    procs: &mut [Proc],
    mut cluster: Option<&mut ClusterRole>,
) -> Vec<StopFailure> {
    let mut failures = Vec::new();
    for stage in STOP_ORDER {
        match stage {
            Stage::Roles(chosen) => {
                let mut batch: Vec<&mut Proc> =
                    procs.iter_mut().filter(|p| chosen(&p.spec.name)).collect();
                failures.extend(stop_batch(&mut batch));
            }
            Stage::Cluster => {
                if let Some(c) = cluster.as_deref_mut() {
                    if let Err(e) = c.stop() {
                        failures.push(StopFailure::of_cluster(c, &e));
                    }
                }
            }
        }
    }
    failures
}

/// One step of the stop: the roles whose name matches, or the PostgreSQL cluster.
enum Stage {
    Roles(fn(&str) -> bool),
    Cluster,
}

/// The order in which roles stop: the entry point first, so that no request arrives at
/// an api that is going away; the workers after the api instances, so that everything
/// they accepted is handed over; the PostgreSQL cluster after the workers, so that they
/// commit what they finish while stopping; the processors last, so the workers can
/// finish their in-flight forwards.
const STOP_ORDER: [Stage; 5] = [
    Stage::Roles(|n| n == "lb"),
    Stage::Roles(|n| n.starts_with("api")),
    Stage::Roles(|n| n.starts_with("worker")),
    Stage::Cluster,
    Stage::Roles(|n| n.starts_with("processor")),
];

/// SIGTERM to every process group of the batch, SIGKILL to those still there after
/// [`STOP_GRACE`], then a sweep of each group (forked workers). Returns failures.
fn stop_batch(batch: &mut [&mut Proc]) -> Vec<StopFailure> {
    for p in batch.iter_mut() {
        p.restart.cancel();
        if let Some(child) = p.child.as_mut() {
            if matches!(child.try_wait(), Ok(None)) {
                procs::signal_group(p.pid, libc::SIGTERM);
            }
        }
    }
    let deadline = Instant::now() + STOP_GRACE;
    let mut failures = Vec::new();
    for p in batch.iter_mut() {
        let Some(mut child) = p.child.take() else {
            continue;
        };
        loop {
            match child.try_wait() {
                Ok(Some(_)) => break,
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10))
                }
                Ok(None) => {
                    tracing::warn!(
                        "{} (pid {}) ignored SIGTERM for {STOP_GRACE:?}; killing it",
                        p.spec.name,
                        p.pid
                    );
                    procs::signal_group(p.pid, libc::SIGKILL);
                    if let Err(e) = child.wait() {
                        failures.push(StopFailure::of(p, e));
                    }
                    break;
                }
                Err(e) => {
                    failures.push(StopFailure::of(p, e));
                    break;
                }
            }
        }
        // Whatever the leader forked and left behind.
        procs::signal_group(p.pid, libc::SIGKILL);
    }
    failures
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stop_order_covers_every_role() {
        let stages = |name: &str| -> Vec<usize> {
            (0..STOP_ORDER.len())
                .filter(|&k| matches!(STOP_ORDER[k], Stage::Roles(chosen) if chosen(name)))
                .collect()
        };
        for name in [
            "lb",
            "api1",
            "api2",
            "worker",
            "worker1",
            "worker12",
            "processor-default",
            "processor-fallback",
        ] {
            assert_eq!(stages(name).len(), 1, "{name}");
        }
        // The cluster after every worker, before the processors.
        let cluster = STOP_ORDER
            .iter()
            .position(|s| matches!(s, Stage::Cluster))
            .unwrap();
        assert!(stages("worker3")[0] < cluster);
        assert!(stages("processor-default")[0] > cluster);
    }
}
