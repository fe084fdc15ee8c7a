//! How the children stop: in order ([`STOP_ORDER`]), each batch by SIGTERM to its
//! process groups, then SIGKILL to what is left after [`STOP_GRACE`].

use crate::children::Proc;
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
}

impl fmt::Display for StopFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (pid {}): {}", self.name, self.pid, self.error)
    }
}

/// Stops every role of `procs`, stage by stage in [`STOP_ORDER`]. Returns failures.
pub(crate) fn stop_all(procs: &mut [Proc]) -> Vec<StopFailure> {
    let mut failures = Vec::new();
    for stage in STOP_ORDER {
        let mut batch: Vec<&mut Proc> = procs.iter_mut().filter(|p| stage(&p.spec.name)).collect();
        failures.extend(stop_batch(&mut batch));
    }
    failures
}

/// The order in which roles stop: the entry point first, so that no request arrives at
/// an api that is going away; the worker after the api instances, so that everything
/// they accepted is handed over; the processors last, so the worker can finish its
/// in-flight forwards.
const STOP_ORDER: [fn(&str) -> bool; 4] = [
    |n| n == "lb",
    |n| n.starts_with("api"),
    |n| n == "worker",
    |n| n.starts_with("processor"),
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
        for name in [
            "lb",
            "api1",
            "api2",
            "worker",
            "processor-default",
            "processor-fallback",
        ] {
            assert_eq!(STOP_ORDER.iter().filter(|s| s(name)).count(), 1, "{name}");
        }
    }
}
