//! Tables for the cgroup readers and the cap arithmetic.

use super::*;
use std::collections::HashMap;

const MIB: u64 = 1 << 20;

/// A `read` over a map of files.
fn files(entries: &[(&str, &str)]) -> impl Fn(&Path) -> Option<String> {
    let map: HashMap<PathBuf, String> = entries
        .iter()
        .map(|(p, c)| (PathBuf::from(p), c.to_string()))
        .collect();
    move |p: &Path| map.get(p).cloned()
}

const V2_MOUNTS: &str = "\
30 23 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw";

const V1_MOUNTS: &str = "\
31 23 0:28 / /sys/fs/cgroup ro,nosuid - tmpfs tmpfs ro,mode=755
35 31 0:32 / /sys/fs/cgroup/memory rw,nosuid,nodev,noexec,relatime - cgroup cgroup rw,memory
36 31 0:33 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw";

#[test]
fn reads_a_v2_limit_the_smallest_along_the_path() {
    let cgroup = "0::/payroute/api1\n";
    let read = files(&[
        ("/sys/fs/cgroup/payroute/api1/memory.max", "52428800\n"),
        ("/sys/fs/cgroup/payroute/memory.max", "367001600\n"),
        ("/sys/fs/cgroup/memory.max", "max\n"),
    ]);
    let l = cgroup_limit(cgroup, V2_MOUNTS, &read).unwrap();
    assert_eq!(l.bytes, 50 * MIB);
    assert_eq!(
        l.file,
        PathBuf::from("/sys/fs/cgroup/payroute/api1/memory.max")
    );
    // A parent's smaller limit binds the child.
    let read = files(&[
        ("/sys/fs/cgroup/payroute/api1/memory.max", "max\n"),
        ("/sys/fs/cgroup/payroute/memory.max", "1048576\n"),
    ]);
    assert_eq!(cgroup_limit(cgroup, V2_MOUNTS, &read).unwrap().bytes, MIB);
    // "max" all the way: no limit.
    let read = files(&[("/sys/fs/cgroup/payroute/api1/memory.max", "max\n")]);
    assert_eq!(cgroup_limit(cgroup, V2_MOUNTS, &read), None);
}

#[test]
fn reads_a_container_limit_through_a_cgroup_namespace() {
    // Docker on cgroup v2: the container sees its own group as the root.
    let read = files(&[("/sys/fs/cgroup/memory.max", "52428800\n")]);
    let l = cgroup_limit("0::/\n", V2_MOUNTS, &read).unwrap();
    assert_eq!(l.bytes, 50 * MIB);
}

#[test]
fn reads_a_v1_limit_on_a_hybrid_machine() {
    // The cgroup2 hierarchy has no memory controller (no memory.max): v1 is read.
    let cgroup = "9:name=systemd:/\n4:memory:/payroute-up/api1\n2:cpu,cpuacct:/\n0::/\n";
    let read = files(&[
        (
            "/sys/fs/cgroup/memory/payroute-up/api1/memory.limit_in_bytes",
            "52428800\n",
        ),
        (
            "/sys/fs/cgroup/memory/payroute-up/memory.limit_in_bytes",
            "9223372036854771712\n",
        ),
        (
            "/sys/fs/cgroup/memory/memory.limit_in_bytes",
            "9223372036854771712\n",
        ),
    ]);
    let l = cgroup_limit(cgroup, V1_MOUNTS, &read).unwrap();
    assert_eq!(l.bytes, 50 * MIB);
    // Unlimited everywhere.
    let read = files(&[(
        "/sys/fs/cgroup/memory/payroute-up/api1/memory.limit_in_bytes",
        "9223372036854771712\n",
    )]);
    assert_eq!(cgroup_limit(cgroup, V1_MOUNTS, &read), None);
}

#[test]
fn reads_a_v1_container_whose_mount_root_is_its_group() {
    // Docker on cgroup v1 without a cgroup namespace: the mount shows /docker/abc.
    let mounts = "35 31 0:32 /docker/abc /sys/fs/cgroup/memory ro - cgroup cgroup rw,memory";
    let read = files(&[("/sys/fs/cgroup/memory/memory.limit_in_bytes", "31457280\n")]);
    let l = cgroup_limit("5:memory:/docker/abc\n", mounts, &read).unwrap();
    assert_eq!(l.bytes, 30 * MIB);
}

#[test]
fn nothing_mounted_or_nothing_readable_is_no_limit() {
    assert_eq!(cgroup_limit("", "", files(&[])), None);
    assert_eq!(cgroup_limit("0::/x\n", V2_MOUNTS, files(&[])), None);
    assert_eq!(cgroup_limit("garbage", "garbage", files(&[])), None);
}

#[test]
fn mount_points_with_escaped_spaces() {
    let mounts = r"30 23 0:26 / /sys/fs/my\040cgroup rw - cgroup2 cgroup2 rw";
    let read = files(&[("/sys/fs/my cgroup/memory.max", "1000\n")]);
    assert_eq!(cgroup_limit("0::/\n", mounts, &read).unwrap().bytes, 1000);
}

#[test]
fn open_files_soft_limit() {
    let limits = "Limit                     Soft Limit           Hard Limit           Units\n\
                  Max open files            1024                 524288               files\n";
    assert_eq!(soft_open_files(limits), Some(1024));
    let unlimited = "Max open files            unlimited            unlimited            files\n";
    assert_eq!(soft_open_files(unlimited), None);
    assert_eq!(soft_open_files(""), None);
}

fn env(limit_mib: Option<u64>, base_mib: u64, open_files: Option<u64>) -> Env {
    Env {
        limit: limit_mib.map(|m| MemoryLimit {
            bytes: m * MIB,
            file: PathBuf::from("/x"),
        }),
        base_rss: base_mib * MIB,
        open_files,
    }
}

#[test]
fn the_cap_of_an_api_at_the_challenge_limits() {
    // 50 MiB, 4 MiB resident at start: 37.5 usable, 4.69 of buffer budget,
    // 28.8 MiB / 8 KiB = 3,688 connections: more than the 2,750 each api gets at ten
    // times the official load.
    let p = plan(usize::MAX, env(Some(50), 4, Some(1 << 20)));
    assert_eq!(p.buffer_budget, 50 * MIB / 4 * 3 / 8);
    assert_eq!(p.memory_cap, Some(3688));
    assert_eq!(p.cap, 3688);
    assert_eq!(p.answered_refusals, 64);
    // Memory at the cap, counting every connection at its bound and the whole budget
    // in use, stays at three quarters of the limit.
    let at_cap = 4 * MIB + p.buffer_budget + p.cap as u64 * 8 * 1024;
    assert!(at_cap <= 50 * MIB / 4 * 3, "{at_cap}");
}

#[test]
fn the_smallest_bound_wins() {
    assert_eq!(plan(100, env(Some(50), 4, None)).cap, 100);
    let files = plan(4096, env(None, 4, Some(1024)));
    assert_eq!(
        (files.cap, files.files_cap, files.memory_cap),
        (992, Some(992), None)
    );
    let nothing = plan(4096, env(None, 4, None));
    assert_eq!(
        (nothing.cap, nothing.buffer_budget),
        (4096, UNLIMITED_BUFFER_BUDGET)
    );
    // A limit below what the process already uses still serves one connection.
    assert_eq!(plan(4096, env(Some(4), 8, None)).cap, 1);
}

#[test]
fn small_caps_answer_no_refusal() {
    assert_eq!(plan(2, env(None, 4, None)).answered_refusals, 0);
    assert_eq!(plan(160, env(None, 4, None)).answered_refusals, 10);
}
