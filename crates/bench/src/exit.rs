//! How `payroute bench` ends, with k6's exit codes where k6 has one:
//!
//! | code | when | k6's name |
//! |---|---|---|
//! | 0 | the test ran to its end (and passed its thresholds) | |
//! | 2 | a flag cannot work (as clap's own usage errors) | |
//! | 99 | the test ran to its end and crossed a threshold | `ThresholdsHaveFailed` |
//! | 105 | interrupted: Ctrl-C or SIGTERM | `ExternalAbort` |
//! | 108 | aborted before its end: the processes did not start, the backend never answered, setup or a stage was refused, an output could not be written | `ScriptAborted` |

use std::fmt;

/// A finished test crossed a threshold.
pub const THRESHOLDS_CROSSED: u8 = 99;
/// Ctrl-C or SIGTERM.
pub const INTERRUPTED: u8 = 105;
/// The test could not start or could not finish.
pub const ABORTED: u8 = 108;
/// A flag that cannot work.
pub const BAD_USAGE: u8 = 2;

/// The run was interrupted (Ctrl-C, SIGTERM): an error of its own, so that the exit
/// code is decided from its type, never from a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Interrupted;

impl fmt::Display for Interrupted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("interrupted")
    }
}

impl std::error::Error for Interrupted {}

/// A flag, or a combination of flags, that cannot work.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadUsage(pub String);

impl fmt::Display for BadUsage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BadUsage {}

/// How a bench ended.
#[derive(Debug)]
pub enum Ending {
    /// Every run finished and passed its thresholds.
    Passed,
    /// Every run finished; these thresholds were crossed (one sentence each).
    Crossed(Vec<String>),
    /// Stopped by the error; the code follows from its type.
    Failed(anyhow::Error),
}

impl Ending {
    /// The ending of runs that all finished, having crossed these thresholds.
    pub fn of_finished(crossed: Vec<String>) -> Ending {
        if crossed.is_empty() {
            Ending::Passed
        } else {
            Ending::Crossed(crossed)
        }
    }

    /// Says on stderr why the run did not pass (nothing when it did).
    pub fn explain(&self) {
        let code = self.code();
        match self {
            Ending::Passed => {}
            Ending::Crossed(crossed) => eprintln!(
                "payroute bench: {} threshold(s) crossed (exit {code}): {}",
                crossed.len(),
                crossed.join("; ")
            ),
            Ending::Failed(e) => eprintln!("payroute bench: {e:#} (exit {code})"),
        }
    }

    /// The process's exit code.
    pub fn code(&self) -> u8 {
        match self {
            Ending::Passed => 0,
            Ending::Crossed(_) => THRESHOLDS_CROSSED,
            Ending::Failed(e) => error_code(e),
        }
    }
}

/// The exit code of a bench stopped by `e`.
pub fn error_code(e: &anyhow::Error) -> u8 {
    if e.chain().any(|c| c.is::<Interrupted>()) {
        INTERRUPTED
    } else if e.chain().any(|c| c.is::<BadUsage>()) {
        BAD_USAGE
    } else {
        ABORTED
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context;

    #[test]
    fn codes_follow_the_error_type_through_context() {
        assert_eq!(Ending::Passed.code(), 0);
        assert_eq!(Ending::Crossed(vec!["p99".into()]).code(), 99);
        let interrupted = Err::<(), _>(Interrupted).context("during setup");
        assert_eq!(error_code(&interrupted.unwrap_err()), 105);
        let usage = anyhow::Error::from(BadUsage("--duration".into()));
        assert_eq!(error_code(&usage), 2);
        let setup = anyhow::anyhow!("purging the default processor: HTTP 500");
        assert_eq!(Ending::Failed(setup).code(), 108);
    }
}
