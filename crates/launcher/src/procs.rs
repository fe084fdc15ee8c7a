//! Child processes: spawning with a log file, signalling by process group, and reading
//! their resource use from `/proc`.
//!
//! Every child is the leader of its own process group (`process_group(0)`), for two
//! reasons: a Ctrl-C in the terminal reaches only the launcher, which then stops the
//! children in order (load balancer first, worker after the api instances) instead of
//! all of them dying at once; and a signal to the group also reaches what the child
//! forked itself (nginx's and haproxy's worker processes), so nothing is left behind.

use std::ffi::OsString;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// Clock ticks per second of `/proc/PID/stat` times (`sysconf(_SC_CLK_TCK)`): 100 on
/// every Linux architecture payroute targets (the kernel's USER_HZ is fixed at 100 for
/// x86 and arm64 ABIs), so it is not read at run time.
const CLK_TCK: f64 = 100.0;

/// How to run one role.
#[derive(Debug, Clone)]
pub(crate) struct Spec {
    /// Role name: `api1`, `worker`, `lb`, `processor-default`...
    pub(crate) name: String,
    pub(crate) program: PathBuf,
    pub(crate) args: Vec<OsString>,
    /// Where its stdout and stderr go (appended to, across restarts).
    pub(crate) log: PathBuf,
    /// What it serves, for the operator: `unix:/…/api1.sock`, `http://127.0.0.1:8001`.
    pub(crate) address: String,
    /// Restarted when it exits unexpectedly (if the topology's policy says so).
    pub(crate) restartable: bool,
    /// Forks workers of its own (nginx, haproxy): resource use is summed over its
    /// process group.
    pub(crate) multi_process: bool,
}

impl Spec {
    /// The command line, for logs and errors.
    pub(crate) fn command_line(&self) -> String {
        let mut s = self.program.display().to_string();
        for a in &self.args {
            s.push(' ');
            s.push_str(&a.to_string_lossy());
        }
        s
    }
}

/// Starts `spec` in its own process group with stdin closed and stdout/stderr appended
/// to its log file (a header line marks each start).
pub(crate) fn spawn(spec: &Spec) -> io::Result<Child> {
    let mut log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&spec.log)
        .map_err(|e| {
            io::Error::new(e.kind(), format!("cannot open {}: {e}", spec.log.display()))
        })?;
    writeln!(log, "=== payroute up: starting `{}`", spec.command_line())?;
    let child = Command::new(&spec.program)
        .args(&spec.args)
        .stdin(Stdio::null())
        // Their output goes to a file, where terminal colour codes are noise.
        .env("NO_COLOR", "1")
        .stdout(log.try_clone()?)
        .stderr(log)
        .process_group(0)
        .spawn()
        .map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("cannot run {}: {e}", spec.program.display()),
            )
        })?;
    Ok(child)
}

/// Sends `signal` to the process group led by `pgid`. Returns false when no process of
/// the group is left (ESRCH).
///
/// Callers signal a group only while its leader is an unreaped child of theirs (or right
/// after reaping it, to sweep up its forked workers), so the id cannot have been reused
/// by an unrelated process.
pub(crate) fn signal_group(pgid: u32, signal: i32) -> bool {
    let Ok(pgid) = i32::try_from(pgid) else {
        return false;
    };
    if pgid <= 1 {
        // -1 and -0 would mean "every process" and "our own group": never.
        return false;
    }
    kill(-pgid, signal)
}

/// Sends `signal` to process `pid` alone. Returns false when it is gone (ESRCH).
///
/// For a process that is not the launcher's child (the PostgreSQL postmaster, started
/// by `pg_ctl`): callers check, just before, that `pid` is still the process they mean
/// (its command line), so a reused id is not signalled.
pub(crate) fn signal_process(pid: u32, signal: i32) -> bool {
    match i32::try_from(pid) {
        // 0 and 1 would mean "our own group" and init: never.
        Ok(pid) if pid > 1 => kill(pid, signal),
        _ => false,
    }
}

/// The command line of a live (non-zombie) process, its arguments joined by spaces;
/// `None` when it is gone.
pub(crate) fn command_line(pid: u32) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    if stat_fields(&stat)?.first() == Some(&"Z") {
        return None;
    }
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let args: Vec<String> = raw
        .split(|&b| b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    Some(args.join(" "))
}

/// Whether the launcher runs as root (its effective user owns `/proc/self`).
pub(crate) fn running_as_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

#[allow(unsafe_code)]
fn kill(target: i32, signal: i32) -> bool {
    // SAFETY: kill(2) takes two integers and reads or writes no memory of this process;
    // it cannot break Rust's invariants. Which process receives the signal is the
    // caller's responsibility (see `signal_group`).
    unsafe { libc::kill(target, signal) == 0 }
}

/// CPU time and peak resident memory of a process (or of a process group, summed).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct Sample {
    pub(crate) cpu_seconds: f64,
    pub(crate) peak_rss_bytes: u64,
}

impl Sample {
    /// Usage over two incarnations of a role: CPU adds up, the peak is the larger.
    pub(crate) fn add(self, other: Sample) -> Sample {
        Sample {
            cpu_seconds: self.cpu_seconds + other.cpu_seconds,
            peak_rss_bytes: self.peak_rss_bytes.max(other.peak_rss_bytes),
        }
    }
}

/// Reads `/proc/PID/stat` (utime + stime) and `/proc/PID/status` (VmHWM).
pub(crate) fn sample(pid: u32) -> Option<Sample> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields = stat_fields(&stat)?;
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let hwm_kb = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .unwrap_or(0);
    Some(Sample {
        cpu_seconds: ticks as f64 / CLK_TCK,
        peak_rss_bytes: hwm_kb * 1024,
    })
}

/// Usage of every process of the group led by `pgid`: CPU summed; peak memory as the
/// sum of each process's peak (an upper bound of the group's real peak).
pub(crate) fn sample_group(pgid: u32) -> Option<Sample> {
    let mut total: Option<Sample> = None;
    for pid in group_members(pgid) {
        if let Some(s) = sample(pid) {
            let t = total.get_or_insert_with(Sample::default);
            t.cpu_seconds += s.cpu_seconds;
            t.peak_rss_bytes += s.peak_rss_bytes;
        }
    }
    total
}

/// Every live (non-zombie) process whose process group is `pgid`.
pub(crate) fn group_members(pgid: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| is_live_member(pid, pgid))
        .collect()
}

/// Whether process `pid` exists, is not a zombie, and is in process group `pgid`.
fn is_live_member(pid: u32, pgid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    let Some(f) = stat_fields(&stat) else {
        return false;
    };
    f.first() != Some(&"Z") && f.get(2).and_then(|g| g.parse::<u32>().ok()) == Some(pgid)
}

/// The fields of `/proc/PID/stat` after the command name (which may contain spaces and
/// parentheses, hence the split at the last `)`): index 0 is the state (field 3).
fn stat_fields(stat: &str) -> Option<Vec<&str>> {
    let rest = &stat[stat.rfind(')')? + 1..];
    Some(rest.split_whitespace().collect())
}

/// The last `lines` lines of a log file (at most its last 16 KiB), for error messages.
pub(crate) fn tail(path: &Path, lines: usize) -> String {
    const WINDOW: u64 = 16 * 1024;
    let Ok(mut f) = File::open(path) else {
        return String::new();
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = f.seek(SeekFrom::Start(len.saturating_sub(WINDOW)));
    let mut buf = Vec::new();
    let _ = f.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf);
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Finds `name` in `PATH`, then in the sbin directories where Debian installs daemons
/// (not in a normal user's `PATH`).
pub(crate) fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/local/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|p| is_executable(p))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_own_usage() {
        let s = sample(std::process::id()).unwrap();
        assert!(s.peak_rss_bytes > 0);
        assert!(s.cpu_seconds >= 0.0);
    }

    #[test]
    fn parses_stat_with_odd_command_names() {
        let stat = "42 (a) b (c)) S 1 42 42 0 -1 0 0 0 0 0 250 50 0 0 20 0 1 0";
        let f = stat_fields(stat).unwrap();
        assert_eq!(f[0], "S");
        assert_eq!(f[2], "42");
        assert_eq!(f[11], "250");
        assert_eq!(f[12], "50");
    }

    #[test]
    fn spawns_in_own_group_logs_and_stops_by_group() {
        let dir = std::env::temp_dir().join(format!("launcher-procs-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let spec = Spec {
            name: "sleeper".into(),
            program: "/bin/sh".into(),
            // A child that forks a grandchild, like nginx's master and worker.
            args: ["-c", "echo hello; sleep 30 & sleep 30"]
                .map(OsString::from)
                .to_vec(),
            log: dir.join("sleeper.log"),
            address: String::new(),
            restartable: false,
            multi_process: true,
        };
        let mut child = spawn(&spec).unwrap();
        let pgid = child.id();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while group_members(pgid).len() < 2 && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        // sh, its background sleep and (depending on the shell) a foreground one.
        assert!(group_members(pgid).len() >= 2, "{:?}", group_members(pgid));
        assert!(sample_group(pgid).is_some());
        assert!(signal_group(pgid, libc::SIGKILL));
        child.wait().unwrap();
        while !group_members(pgid).is_empty() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert!(group_members(pgid).is_empty());
        let log = tail(&spec.log, 5);
        assert!(
            log.contains("=== payroute up: starting `/bin/sh -c"),
            "{log}"
        );
        assert!(log.ends_with("hello"), "{log}");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn never_signals_everyone() {
        assert!(!signal_group(0, 0));
        assert!(!signal_group(1, 0));
        assert!(!signal_group(u32::MAX, 0));
    }

    #[test]
    fn reads_a_command_line() {
        let line = command_line(std::process::id()).unwrap();
        assert!(!line.is_empty());
        assert_eq!(command_line(u32::MAX), None);
        assert!(!signal_process(0, 0) && !signal_process(1, 0));
    }

    #[test]
    fn finds_sh() {
        assert!(find_program("sh").is_some());
        assert!(find_program("payroute-no-such-program").is_none());
    }
}
