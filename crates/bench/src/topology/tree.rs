//! The CPU of a process and its children, read from `/proc`: for the PostgreSQL cluster
//! of the scaled topology, whose work is done by backends, children of the postmaster
//! (one per connection, and the checkpointer, the WAL writer, autovacuum's workers...).
//!
//! The figure: the postmaster's own CPU (`utime + stime`), what its children that have
//! exited and been waited for used (`cutime + cstime`: autovacuum's workers come and go),
//! and the live children's own CPU, found by their parent PID (field 4 of
//! `/proc/PID/stat`). A live child's children are not looked for: PostgreSQL's backends
//! fork none.

use super::CLOCK_TICKS_PER_SEC;

/// CPU seconds of `pid` and its children, as above; `None` once `pid` is gone.
pub fn tree_cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let own = Fields::of(&stat)?;
    let mut ticks = own.own_ticks + own.waited_children_ticks;
    for child in children_of(pid) {
        let stat = std::fs::read_to_string(format!("/proc/{child}/stat")).unwrap_or_default();
        // A child that exits meanwhile is not counted twice: its CPU moves to the
        // postmaster's `cutime` only once waited for, after this read or before it.
        if let Some(f) = Fields::of(&stat) {
            ticks += f.own_ticks;
        }
    }
    Some(ticks as f64 / CLOCK_TICKS_PER_SEC)
}

/// The live processes whose parent is `pid`.
fn children_of(pid: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&p| {
            let stat = std::fs::read_to_string(format!("/proc/{p}/stat")).unwrap_or_default();
            Fields::of(&stat).is_some_and(|f| f.ppid == pid && !f.zombie)
        })
        .collect()
}

/// What the tree's figure needs of one `/proc/PID/stat`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Fields {
    ppid: u32,
    zombie: bool,
    /// utime + stime (fields 14, 15).
    own_ticks: u64,
    /// cutime + cstime (fields 16, 17).
    waited_children_ticks: u64,
}

impl Fields {
    /// Parses `stat`, counting fields after the command name's closing parenthesis
    /// (the name may hold spaces and parentheses).
    fn of(stat: &str) -> Option<Fields> {
        let rest = &stat[stat.rfind(')')? + 1..];
        let f: Vec<&str> = rest.split_whitespace().collect();
        // After ")": field 3 (state) is index 0.
        let n = |i: usize| f.get(i)?.parse::<u64>().ok();
        Some(Fields {
            ppid: f.get(1)?.parse().ok()?,
            zombie: *f.first()? == "Z",
            own_ticks: n(11)? + n(12)?,
            waited_children_ticks: n(13)? + n(14)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_fields_of_stat() {
        let stat = "1234 (postgres: payroute (x)) S 77 1234 1234 0 -1 4194560 100 0 0 0 250 50 30 20 20 0 1 0";
        assert_eq!(
            Fields::of(stat),
            Some(Fields {
                ppid: 77,
                zombie: false,
                own_ticks: 300,
                waited_children_ticks: 50
            })
        );
        assert!(
            Fields::of("5 (x) Z 1 5 5 0 -1 0 0 0 0 0 1 1 0 0")
                .unwrap()
                .zombie
        );
        assert_eq!(Fields::of("garbage"), None);
    }

    /// This test process and a child that burns CPU: the tree counts the child while
    /// it lives, and still counts it once it has exited and been waited for.
    #[test]
    fn counts_live_and_waited_children() {
        let me = std::process::id();
        let before = tree_cpu_seconds(me).unwrap();
        let mut child = std::process::Command::new("sh")
            .args(["-c", "i=0; while [ $i -lt 300000 ]; do i=$((i+1)); done"])
            .spawn()
            .unwrap();
        assert!(children_of(me).contains(&child.id()));
        child.wait().unwrap();
        assert!(!children_of(me).contains(&child.id()));
        let after = tree_cpu_seconds(me).unwrap();
        assert!(after > before, "{before} -> {after}");
        assert_eq!(tree_cpu_seconds(u32::MAX), None);
    }
}
