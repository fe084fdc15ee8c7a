//! How many connections a server can hold without being killed at its memory limit:
//! the limit read from the process's own cgroup (v2 `memory.max`, or v1
//! `memory.limit_in_bytes`, the smallest along the path to the hierarchy's root), the
//! process's resident memory when the server starts, and what one connection costs
//! (measured by `tests/memory.rs`). The open-file limit bounds it too: past it `accept`
//! fails and clients wait in the backlog, unanswered.
//!
//! The arithmetic ([`plan`]) and the parsing are pure and tested with tables; only
//! [`Env::read`] touches `/proc` and `/sys`.

use std::path::{Path, PathBuf};

/// What an idle keep-alive connection costs in user space, with room to spare: the
/// connection's task and its registration with the runtime, about 1 KiB measured by
/// `tests/memory.rs` (buffers are lent per request, not held while idle), doubled and
/// rounded up for the handler's state while a request is in flight.
pub const USER_BYTES_PER_CONNECTION: u64 = 4 * 1024;

/// What the kernel charges to the cgroup per TCP connection: 2.6 KiB measured in a
/// cgroup v1 (`memory.kmem.usage_in_bytes` over 2,000 idle loopback sockets: socket,
/// inode, file), rounded up for the epoll entry and, in cgroup v2, which also charges
/// socket buffers, a request's bytes waiting to be read.
pub const KERNEL_BYTES_PER_CONNECTION: u64 = 4 * 1024;

/// Bytes of buffer beyond the small ones that connections may hold together when the
/// process has no memory limit: a thousand requests with 16 KiB heads at once.
pub const UNLIMITED_BUFFER_BUDGET: u64 = 16 << 20;

/// File descriptors kept for other uses than client connections (listener, worker
/// socket, epoll, eventfd, standard streams, log files).
pub const OTHER_FILES: u64 = 32;

/// Refusals answered at once (a task and a socket held for a second each, so that the
/// 503 is read before the close) at most, and as a fraction of the cap: with a cap of
/// a few, no connection is answered beyond it, only closed.
pub const MAX_ANSWERED_REFUSALS: usize = 64;

/// A memory limit and the file it was read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemoryLimit {
    pub bytes: u64,
    pub file: PathBuf,
}

/// What the plan is made from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Env {
    pub limit: Option<MemoryLimit>,
    /// Resident memory of the process when the server starts.
    pub base_rss: u64,
    /// The soft limit on open files, if any.
    pub open_files: Option<u64>,
}

/// The server's bounds and where they come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Connections served at once.
    pub cap: usize,
    /// Bytes of buffer beyond the small size that connections may hold together.
    pub buffer_budget: u64,
    /// Connections beyond the cap answered 503 at once; more are closed unanswered.
    pub answered_refusals: usize,
    /// The bound from memory, if the process has a limit.
    pub memory_cap: Option<usize>,
    /// The bound from the open-file limit, if there is one.
    pub files_cap: Option<usize>,
    pub env: Env,
}

impl Env {
    /// Reads this process's limits and resident memory.
    pub fn read() -> Env {
        let text = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
        Env {
            limit: cgroup_limit(
                &text("/proc/self/cgroup"),
                &text("/proc/self/mountinfo"),
                |p| std::fs::read_to_string(p).ok(),
            ),
            base_rss: resident_bytes().unwrap_or(0),
            open_files: soft_open_files(&text("/proc/self/limits")),
        }
    }
}

/// The cap and budget for a server whose explicit cap is `explicit`:
///
/// ```text
/// usable      = limit × 3/4     (the rest: allocator slack, the role's own state)
/// budget      = min(usable / 8, 16 MiB)
/// memory cap  = (usable − resident at start − budget) / (4 KiB user + 4 KiB kernel)
/// files cap   = open-file soft limit − 32
/// cap         = min(explicit, memory cap, files cap), at least 1
/// ```
pub fn plan(explicit: usize, env: Env) -> Plan {
    let per_conn = USER_BYTES_PER_CONNECTION + KERNEL_BYTES_PER_CONNECTION;
    let (buffer_budget, memory_cap) = match &env.limit {
        Some(l) => {
            let usable = l.bytes / 4 * 3;
            let budget = (usable / 8).min(UNLIMITED_BUFFER_BUDGET);
            let room = usable.saturating_sub(env.base_rss + budget);
            (budget, Some(clamp(room / per_conn)))
        }
        None => (UNLIMITED_BUFFER_BUDGET, None),
    };
    let files_cap = env.open_files.map(|n| clamp(n.saturating_sub(OTHER_FILES)));
    let cap = [Some(explicit), memory_cap, files_cap]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or(explicit)
        .max(1);
    Plan {
        cap,
        buffer_budget,
        answered_refusals: (cap / 16).min(MAX_ANSWERED_REFUSALS),
        memory_cap,
        files_cap,
        env,
    }
}

fn clamp(n: u64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

/// Resident memory of this process: `Rss` of `/proc/self/smaps_rollup` (in kB, so no
/// page size is assumed), else `/proc/self/statm` with 4 KiB pages.
pub fn resident_bytes() -> Option<u64> {
    if let Ok(text) = std::fs::read_to_string("/proc/self/smaps_rollup") {
        let kb = text.lines().find_map(|l| {
            let rest = l.strip_prefix("Rss:")?;
            rest.split_whitespace().next()?.parse::<u64>().ok()
        });
        if let Some(kb) = kb {
            return Some(kb * 1024);
        }
    }
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

/// The soft "Max open files" of `/proc/self/limits`; `None` when unlimited or unknown.
pub fn soft_open_files(limits: &str) -> Option<u64> {
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// The memory limit of the cgroup that `proc_self_cgroup` names, with the hierarchy
/// mounts of `mountinfo`; `read` reads a control file. cgroup v2 first (`0::/path`,
/// `memory.max`), then v1 (`N:...memory...:/path`, `memory.limit_in_bytes`); for each,
/// the smallest limit from the process's group up to the mounted root, since a parent's
/// limit binds its children. "max", and v1's near-2^63 "unlimited", are no limit.
pub fn cgroup_limit(
    proc_self_cgroup: &str,
    mountinfo: &str,
    read: impl Fn(&Path) -> Option<String>,
) -> Option<MemoryLimit> {
    let mounts: Vec<Mount> = mountinfo.lines().filter_map(Mount::parse).collect();
    let v2 = proc_self_cgroup
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .and_then(|path| {
            let m = mounts.iter().find(|m| m.fstype == "cgroup2")?;
            smallest(m, path, "memory.max", &read)
        });
    let v1 = || {
        let path = proc_self_cgroup.lines().find_map(|l| {
            let mut parts = l.splitn(3, ':');
            let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
            controllers
                .split(',')
                .any(|c| c == "memory")
                .then_some(path)
        })?;
        let m = mounts
            .iter()
            .find(|m| m.fstype == "cgroup" && m.options.split(',').any(|o| o == "memory"))?;
        smallest(m, path, "memory.limit_in_bytes", &read)
    };
    v2.or_else(v1)
}

/// The smallest limit in `file` from the group at `path` up to the mount's root.
fn smallest(
    m: &Mount,
    path: &str,
    file: &str,
    read: &impl Fn(&Path) -> Option<String>,
) -> Option<MemoryLimit> {
    // The mount shows the hierarchy from `root` (a container's own group, without a
    // cgroup namespace); paths in /proc/self/cgroup are from the hierarchy's top.
    let below = path
        .strip_prefix(m.root.as_str())
        .unwrap_or(path)
        .trim_start_matches('/');
    let mut dir = m.point.join(below);
    let mut best: Option<MemoryLimit> = None;
    loop {
        let f = dir.join(file);
        if let Some(bytes) = read(&f).as_deref().and_then(parse_limit) {
            if best.as_ref().is_none_or(|b| bytes < b.bytes) {
                best = Some(MemoryLimit { bytes, file: f });
            }
        }
        if dir == m.point || !dir.pop() || !dir.starts_with(&m.point) {
            return best;
        }
    }
}

/// A limit file's value: bytes, or `None` for no limit.
fn parse_limit(text: &str) -> Option<u64> {
    let n: u64 = text.trim().parse().ok()?;
    // cgroup v1 writes "no limit" as the largest page-aligned i64 (9223372036854771712).
    (n < 1 << 62).then_some(n)
}

/// One line of `/proc/self/mountinfo`: `id parent dev root point options [tags] - fstype
/// source super_options`.
struct Mount {
    root: String,
    point: PathBuf,
    fstype: String,
    options: String,
}

impl Mount {
    fn parse(line: &str) -> Option<Mount> {
        let (left, right) = line.split_once(" - ")?;
        let mut l = left.split(' ');
        let (root, point) = (l.nth(3)?, l.next()?);
        let mut r = right.split(' ');
        let fstype = r.next()?.to_string();
        let options = r.nth(1).unwrap_or("").to_string();
        Some(Mount {
            root: unescape(root),
            point: PathBuf::from(unescape(point)),
            fstype,
            options,
        })
    }
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo` (octal).
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let octal = b
            .get(i + 1..i + 4)
            .filter(|o| o.iter().all(|c| (b'0'..=b'7').contains(c)));
        match octal {
            Some(o) if b[i] == b'\\' => {
                let v = o.iter().fold(0u32, |v, c| v * 8 + u32::from(c - b'0'));
                out.push(v as u8);
                i += 4;
            }
            _ => {
                out.push(b[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
#[path = "memory_tests.rs"]
mod tests;
