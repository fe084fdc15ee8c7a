//! The open-files limit of the bench's process. Every VU holds one keep-alive
//! connection (as k6's do), so 5,500 VUs need 5,500 descriptors, far beyond the usual
//! soft limit of 1,024. At start the bench raises its soft limit to the hard limit (an
//! unprivileged process may), says so, and says loudly when even that is below what
//! the session's largest run needs: VUs past the limit could not connect and would
//! count as failed POSTs, a fault of the load generator blamed on the backend.
//!
//! The processes the bench starts inherit the raised limit: payroute's api instances
//! (which hold the other end of those connections) and the floor's nginx.

use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
use serde::Serialize;

/// Descriptors the bench needs beyond one per VU: the checker's three connections,
/// each stage's two, the samplers' three, the runtime's own (epoll, eventfd, the
/// signal pipe), stdio, and the pipes and logs of the processes it starts. Generous:
/// running short fails requests, while a few spare descriptors cost nothing.
pub const MARGIN: u64 = 256;

/// Descriptors a run of `max_vus` VUs needs.
pub fn needed(max_vus: u32) -> u64 {
    u64::from(max_vus) + MARGIN
}

/// The open-files limit before and after the bench raised it, and what it needs.
/// `None` stands for "unlimited".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct OpenFiles {
    /// Soft limit found at start.
    pub before: Option<u64>,
    /// Soft limit now.
    pub now: Option<u64>,
    /// Hard limit (the most the soft limit may be raised to without privileges).
    pub hard: Option<u64>,
    /// What the session's largest run needs ([`needed`]).
    pub needed: u64,
    /// VUs of that run.
    pub vus: u32,
}

impl OpenFiles {
    /// Whether the soft limit now covers what is needed.
    pub fn enough(&self) -> bool {
        self.now.is_none_or(|n| n >= self.needed)
    }

    /// What to tell the user: that the limit was raised, or that it is too low;
    /// `None` when it was already enough and unchanged.
    pub fn describe(&self) -> Option<String> {
        let show = |x: Option<u64>| x.map_or("unlimited".to_string(), |n| n.to_string());
        if !self.enough() {
            return Some(format!(
                "!!! open files: the limit is {} (hard limit {}), below the {} that {} VUs need \
                 (one connection each, plus {MARGIN}): VUs past it cannot connect and count as \
                 failed POSTs. Raise the hard limit (`ulimit -Hn` as root, LimitNOFILE= for a \
                 service) and run again",
                show(self.now),
                show(self.hard),
                self.needed,
                self.vus
            ));
        }
        (self.now != self.before).then(|| {
            format!(
                "open files: soft limit raised from {} to {} (the hard limit); {} needed for {} VUs",
                show(self.before),
                show(self.now),
                self.needed,
                self.vus
            )
        })
    }
}

/// The soft limit to set, given the current `soft` and `hard` limits: the hard limit
/// when it is finite (whatever is needed: the descriptors cost nothing until used);
/// with an unlimited hard limit, `needed` if the soft limit is below it. `None`: leave
/// it as it is.
pub fn target(soft: Option<u64>, hard: Option<u64>, needed: u64) -> Option<u64> {
    match (soft, hard) {
        (_, Some(h)) => (soft != Some(h)).then_some(h),
        (Some(s), None) => (s < needed).then_some(needed),
        (None, None) => None,
    }
}

/// Raises this process's soft open-files limit as [`target`] says, for runs of up to
/// `max_vus` VUs, and returns what it found and did. A refusal by the kernel leaves the
/// limit as it was (and [`OpenFiles::describe`] then says whether that is enough).
pub fn raise(max_vus: u32) -> OpenFiles {
    let needed = needed(max_vus);
    let before = getrlimit(Resource::Nofile);
    if let Some(t) = target(before.current, before.maximum, needed) {
        let wanted = Rlimit {
            current: Some(t),
            maximum: before.maximum,
        };
        if let Err(e) = setrlimit(Resource::Nofile, wanted) {
            eprintln!("payroute bench: raising the open-files limit to {t}: {e}");
        }
    }
    let now = getrlimit(Resource::Nofile);
    OpenFiles {
        before: before.current,
        now: now.current,
        hard: now.maximum,
        needed,
        vus: max_vus,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_soft_limit_goes_to_the_hard_one() {
        assert_eq!(needed(5_500), 5_756);
        // The usual 1,024 / 524,288: raised to the hard limit.
        assert_eq!(target(Some(1_024), Some(524_288), 5_756), Some(524_288));
        // Already there: nothing to do. A hard limit too low: still raised to it.
        assert_eq!(target(Some(20_000), Some(20_000), 5_756), None);
        assert_eq!(target(Some(1_024), Some(4_096), 5_756), Some(4_096));
        // An unlimited hard limit: only what is needed.
        assert_eq!(target(Some(1_024), None, 5_756), Some(5_756));
        assert_eq!(target(Some(65_536), None, 5_756), None);
        assert_eq!(target(None, None, 5_756), None);
    }

    #[test]
    fn says_when_it_raised_and_when_it_is_not_enough() {
        let raised = OpenFiles {
            before: Some(1_024),
            now: Some(524_288),
            hard: Some(524_288),
            needed: 5_756,
            vus: 5_500,
        };
        assert!(raised.enough());
        let text = raised.describe().unwrap();
        assert!(text.contains("raised from 1024 to 524288"), "{text}");
        let short = OpenFiles {
            now: Some(4_096),
            hard: Some(4_096),
            ..raised
        };
        assert!(!short.enough());
        let text = short.describe().unwrap();
        assert!(
            text.starts_with("!!! open files: the limit is 4096"),
            "{text}"
        );
        assert!(text.contains("below the 5756 that 5500 VUs need"), "{text}");
        let quiet = OpenFiles {
            before: Some(20_000),
            now: Some(20_000),
            hard: Some(20_000),
            ..raised
        };
        assert_eq!(quiet.describe(), None);
    }

    #[test]
    fn raising_for_a_few_vus_is_enough_here() {
        let o = raise(10);
        assert!(o.enough(), "{o:?}");
        assert_eq!(o.now, o.hard.or(o.now));
    }
}
