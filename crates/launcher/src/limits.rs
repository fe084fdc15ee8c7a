//! What `--limits` becomes: the cgroups of one start (see `cgroup.rs` for how they are
//! made) and the [`LimitsStatus`] reported to the operator.

use crate::cgroup::Cgroups;
use crate::{resources, Lb, Limits};
use std::fmt;

/// Whether the resource limits are in force.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LimitsStatus {
    /// `--limits off`.
    Off,
    /// Enforced; the text says where.
    Enforced(String),
    /// Asked for but impossible here; the text says why.
    NotEnforced(String),
}

impl fmt::Display for LimitsStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LimitsStatus::Off => {
                write!(f, "limits off (--limits rinha applies the compose file's)")
            }
            LimitsStatus::Enforced(how) => write!(f, "limits enforced: {how}"),
            LimitsStatus::NotEnforced(why) => write!(f, "limits NOT enforced: {why}"),
        }
    }
}

/// The cgroups that `limits` asks for, one per service that runs as a process (no `lb`
/// group with the embedded load balancer), and what to tell the operator about them.
/// Limits that cannot be enforced here are reported, not an error.
pub(crate) fn cgroups_for(limits: Limits, lb: Lb) -> (Option<Cgroups>, LimitsStatus) {
    match limits {
        Limits::Off => (None, LimitsStatus::Off),
        Limits::Rinha => {
            let services: Vec<_> = resources::SERVICES
                .iter()
                .filter(|s| s.service != "lb" || lb != Lb::Embedded)
                .collect();
            match Cgroups::create(&services) {
                Ok(g) => {
                    let mut how = g.describe();
                    if lb == Lb::Embedded {
                        how.push_str(" (no lb process: embedded, its share unused)");
                    }
                    (Some(g), LimitsStatus::Enforced(how))
                }
                Err(why) => (None, LimitsStatus::NotEnforced(why.to_string())),
            }
        }
    }
}
