//! The server under a real memory limit: this test binary runs again as a child in a
//! new cgroup with a 24 MiB limit, where `Server::new` reads the limit and derives its
//! cap; the parent then opens the cap's worth of keep-alive connections and more. The
//! child must answer exactly the cap with 200 and the rest with 503, hold them all
//! without reaching its limit (no OOM kill), and the group's own charge per connection
//! (user and kernel memory, as the kernel counts it) must fit the plan's figure.
//!
//! Needs root and a cgroup memory controller this process may create a group under
//! (v1, or v2 with `memory` in the parent's `cgroup.subtree_control`); otherwise it
//! says why and passes. `cargo test -p netio --test cgroup -- --nocapture` prints the
//! figures.

mod common;

use common::{Client, Ok200};
use netio::{CancellationToken, ListenAddr, Listener, ServeLimits, Server};
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const LIMIT: u64 = 24 << 20;
const CHILD: &str = "NETIO_CGROUP_CHILD";

/// A memory cgroup made for the child, removed when dropped.
struct Group {
    dir: PathBuf,
    /// Current and peak usage files.
    usage: &'static str,
    peak: &'static str,
}

impl Group {
    /// A new group under this process's own, with `limit`, or why there can be none.
    fn create(limit: u64) -> Result<Group, String> {
        let own = std::fs::read_to_string("/proc/self/cgroup").map_err(|e| e.to_string())?;
        let name = format!("netio-test-{}", std::process::id());
        let v1 = own.lines().find_map(|l| {
            let mut p = l.splitn(3, ':');
            let (_, ctl, path) = (p.next()?, p.next()?, p.next()?);
            ctl.split(',')
                .any(|c| c == "memory")
                .then(|| path.to_string())
        });
        let (dir, limit_file, usage, peak) = match v1 {
            Some(path) => (
                Path::new("/sys/fs/cgroup/memory").join(path.trim_start_matches('/')),
                "memory.limit_in_bytes",
                "memory.usage_in_bytes",
                "memory.max_usage_in_bytes",
            ),
            None => {
                let path = own
                    .lines()
                    .find_map(|l| l.strip_prefix("0::"))
                    .ok_or("no cgroup")?;
                let dir = Path::new("/sys/fs/cgroup").join(path.trim_start_matches('/'));
                let ctl = std::fs::read_to_string(dir.join("cgroup.subtree_control"))
                    .map_err(|e| format!("cgroup v2 subtree_control: {e}"))?;
                if !ctl.split_whitespace().any(|c| c == "memory") {
                    return Err("cgroup v2 without the memory controller delegated".into());
                }
                (dir, "memory.max", "memory.current", "memory.peak")
            }
        };
        let dir = dir.join(name);
        std::fs::create_dir(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let group = Group { dir, usage, peak };
        std::fs::write(group.dir.join(limit_file), limit.to_string())
            .map_err(|e| format!("cannot set the limit: {e}"))?;
        Ok(group)
    }

    fn read(&self, file: &str) -> Option<u64> {
        std::fs::read_to_string(self.dir.join(file))
            .ok()?
            .trim()
            .parse()
            .ok()
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        // Empty once the child has exited; the kernel may take a moment to notice.
        for _ in 0..50 {
            if std::fs::remove_dir(&self.dir).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        eprintln!("could not remove {}", self.dir.display());
    }
}

/// The child process, stopped when dropped (even when the test fails halfway): its
/// standard input is closed, then it is given 10 s before it is killed.
struct ChildServer(std::process::Child);

impl ChildServer {
    fn stop(&mut self) -> std::process::ExitStatus {
        drop(self.0.stdin.take());
        let until = Instant::now() + Duration::from_secs(10);
        while self.0.try_wait().ok().flatten().is_none() && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(50));
        }
        if self.0.try_wait().ok().flatten().is_none() {
            let _ = self.0.kill();
        }
        self.0.wait().unwrap()
    }
}

impl Drop for ChildServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The child: serves with the cap it derives, prints it and its address, and stops when
/// its standard input closes.
#[test]
#[ignore = "run by under_a_memory_limit_the_cap_holds as a child in a cgroup"]
fn child_server() {
    if std::env::var_os(CHILD).is_none() {
        return;
    }
    let server = Server::new(ServeLimits {
        max_connections: usize::MAX,
        ..ServeLimits::default()
    });
    let rt = netio::single_thread_runtime().unwrap();
    let listener = rt.block_on(async { Listener::bind(&"127.0.0.1:0".parse().unwrap()).unwrap() });
    let ListenAddr::Tcp(addr) = listener.local_addr().unwrap() else {
        unreachable!()
    };
    let plan = server.stats().plan().clone();
    println!(
        "child cap {} limit {} base {} addr {addr}",
        plan.cap,
        plan.env.limit.map_or(0, |l| l.bytes),
        plan.env.base_rss
    );
    let shutdown = CancellationToken::new();
    let stop = shutdown.clone();
    std::thread::spawn(move || {
        let _ = std::io::stdin().read_to_end(&mut Vec::new());
        stop.cancel();
    });
    rt.block_on(server.serve(listener, Ok200, shutdown));
}

#[test]
fn under_a_memory_limit_the_cap_holds() {
    let group = match Group::create(LIMIT) {
        Ok(g) => g,
        Err(why) => {
            println!("skipped: {why}");
            return;
        }
    };
    let exe = std::env::current_exe().unwrap();
    let child = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "echo $$ > {}/cgroup.procs && exec \"$0\" \"$@\"",
            group.dir.display()
        ))
        .arg(&exe)
        .args([
            "--exact",
            "child_server",
            "--include-ignored",
            "--nocapture",
        ])
        .env(CHILD, "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut child = ChildServer(child);
    let mut lines = BufReader::new(child.0.stdout.take().unwrap()).lines();
    let line = lines
        .find_map(|l| l.ok().filter(|l| l.starts_with("child cap")))
        .expect("the child's plan");
    let words: Vec<&str> = line.split_whitespace().collect();
    let cap: usize = words[2].parse().unwrap();
    let addr = words[8].parse().unwrap();
    assert_eq!(words[4], LIMIT.to_string(), "the limit read: {line}");
    println!("{line}");

    let started = Instant::now();
    let before = group.read(group.usage).unwrap_or(0);
    let mut held: Vec<Client> = Vec::with_capacity(cap);
    for _ in 0..cap {
        let mut c = Client::connect(addr);
        c.send("GET / HTTP/1.1\r\nHost: t\r\n\r\n");
        assert_eq!(c.answer().status, 200, "connection {} of {cap}", held.len());
        held.push(c);
    }
    let after = group.read(group.usage).unwrap_or(0);
    for _ in 0..50 {
        let mut c = Client::connect(addr);
        c.send("GET / HTTP/1.1\r\nHost: t\r\n\r\n");
        assert_eq!(c.answer().status, 503);
    }
    assert!(child.0.try_wait().unwrap().is_none(), "the child died");
    let peak = group.read(group.peak).unwrap_or(0);
    let per_conn = after.saturating_sub(before) / cap as u64;
    println!(
        "cgroup: {cap} connections held in {:?}; the group's charge grew by {per_conn} \
         bytes per connection; peak {:.1} MiB of {:.1} MiB",
        started.elapsed(),
        peak as f64 / f64::from(1 << 20),
        LIMIT as f64 / f64::from(1 << 20)
    );
    let planned =
        netio::memory::USER_BYTES_PER_CONNECTION + netio::memory::KERNEL_BYTES_PER_CONNECTION;
    assert!(
        per_conn < planned,
        "{per_conn} bytes per connection, planned {planned}"
    );
    assert!(peak < LIMIT / 4 * 3, "peak {peak} of {LIMIT}");

    drop(held);
    let status = child.stop();
    assert!(status.success(), "{status}");
}
