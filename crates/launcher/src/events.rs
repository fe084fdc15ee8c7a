//! [`Event`]: what the supervisor reports about a child after the start (an exit, a
//! restart, a failed restart), and how it reads in a log line.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// Something that happened to a child after [`start`](fn@crate::start) returned.
#[derive(Debug, Clone)]
pub enum Event {
    /// A child exited (it was not being stopped).
    Exited {
        name: String,
        pid: u32,
        /// As `std::process::ExitStatus` prints it: "exit status: 1", "signal: 9 (SIGKILL)".
        status: String,
        log: PathBuf,
        log_tail: String,
        /// When it will be restarted; `None`: it will not be.
        restart_in: Option<Duration>,
    },
    /// A child was started again.
    Restarted {
        name: String,
        pid: u32,
        restarts: u32,
    },
    /// Starting it again failed; retried after the delay.
    RestartFailed {
        name: String,
        error: String,
        retry_in: Duration,
    },
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Event::Exited {
                name,
                pid,
                status,
                log,
                log_tail,
                restart_in,
            } => {
                write!(f, "{name} (pid {pid}) exited: {status}; ")?;
                match restart_in {
                    Some(d) => write!(f, "restarting in {:.1} s", d.as_secs_f64())?,
                    None => write!(f, "not restarted")?,
                }
                write!(f, ". Last lines of {}:", log.display())?;
                for line in log_tail.lines() {
                    write!(f, "\n    {line}")?;
                }
                Ok(())
            }
            Event::Restarted {
                name,
                pid,
                restarts,
            } => {
                write!(f, "{name} restarted: pid {pid} (restart #{restarts})")
            }
            Event::RestartFailed {
                name,
                error,
                retry_in,
            } => write!(
                f,
                "{name} could not be restarted: {error}; retrying in {:.1} s",
                retry_in.as_secs_f64()
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_read_well() {
        let e = Event::Exited {
            name: "api1".into(),
            pid: 42,
            status: "signal: 9 (SIGKILL)".into(),
            log: "/tmp/api1.log".into(),
            log_tail: "a\nb".into(),
            restart_in: Some(Duration::from_millis(500)),
        };
        assert_eq!(
            e.to_string(),
            "api1 (pid 42) exited: signal: 9 (SIGKILL); restarting in 0.5 s. Last lines of /tmp/api1.log:\n    a\n    b"
        );
    }
}
