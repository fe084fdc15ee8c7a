//! The floor's backend: nginx (Debian's package), started by the bench with a
//! generated config, answering at once with fixed answers and doing nothing else:
//!
//! | request | answer |
//! |---|---|
//! | `POST /payments` | 202, empty body |
//! | `GET /payments-summary` | 200, [`ZERO_SUMMARY`] |
//! | `POST /purge-payments` | 200, empty body |
//! | anything else (`GET /health`) | 404, so the bench's `/health` sampling sees it is not payroute |
//!
//! One worker process, on a free port of 127.0.0.1, its config and temp paths in a
//! directory of its own under the system's temp dir (removed at the stop), its log in
//! the run directory. It runs as the leader of its own process group, so that its
//! CPU, memory and stop cover its worker too; it is stopped by PID (SIGTERM to its
//! group while the master is alive, then SIGKILL), at the end and when dropped.

use super::{cpu_ticks_from_stat, vm_hwm_bytes, ProcUsage, CLOCK_TICKS_PER_SEC};
use anyhow::{bail, Context};
use rustix::process::{kill_process, kill_process_group, Pid, Signal};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The floor's `GET /payments-summary`: nothing processed, by either processor.
pub const ZERO_SUMMARY: &str = r#"{"default":{"totalRequests":0,"totalAmount":0},"fallback":{"totalRequests":0,"totalAmount":0}}"#;

/// Name of the floor's process in the report (the group: master and worker).
pub const NAME: &str = "floor-nginx";

/// Connections the worker accepts beyond one per VU: the checker's, setup's and the
/// teardown's, and reconnections while a timed-out socket is still closing.
const SPARE_CONNECTIONS: u32 = 1024;

/// Descriptors the worker may open beyond its connections: the listening socket,
/// epoll, the log, the channel to the master.
const SPARE_FILES: u32 = 64;

/// How long nginx may take to listen once started.
const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// How long nginx may take to stop after SIGTERM (a fast shutdown: it closes its
/// connections and exits at once) before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(3);

/// Where nginx is installed: `PATH`, then the sbin directories (Debian puts it in
/// `/usr/sbin`, which a user's `PATH` may lack).
pub fn find() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/local/sbin"].map(PathBuf::from))
        .map(|d| d.join("nginx"))
        .find(|p| p.is_file())
}

/// The config of a floor for `vus` VUs listening on `127.0.0.1:port`, its files under
/// `dir`.
pub fn config(dir: &Path, port: u16, vus: u32) -> anyhow::Result<String> {
    let dir = dir
        .to_str()
        .with_context(|| format!("{} is not UTF-8", dir.display()))?;
    if dir.contains(|c: char| c.is_whitespace() || ";#\"'{}$".contains(c)) {
        bail!("`{dir}` holds a character nginx's config syntax cannot take unquoted: set TMPDIR to another directory");
    }
    let dir = dir.trim_end_matches('/');
    let connections = vus.saturating_add(SPARE_CONNECTIONS);
    let files = connections.saturating_add(SPARE_FILES);
    Ok(format!(
        r#"# The floor of `payroute bench --floor`: a backend that does nothing but answer.
daemon off;
master_process on;
# One worker: the figure compared with payroute's is the cost of answering HTTP.
worker_processes 1;
worker_rlimit_nofile {files};
pid {dir}/nginx.pid;
error_log stderr warn;

events {{
    # One connection per VU, as the bench opens them, with spare.
    worker_connections {connections};
    multi_accept on;
    use epoll;
}}

http {{
    # Nothing written per request.
    access_log off;
    server_tokens off;
    keepalive_timeout 75s;
    keepalive_requests 1000000;
    client_body_buffer_size 16k;
    client_max_body_size 16k;
    client_body_temp_path {dir}/client-body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    default_type application/json;

    server {{
        listen 127.0.0.1:{port} backlog=4096;
        location = /payments {{ return 202 ""; }}
        location = /payments-summary {{ return 200 '{ZERO_SUMMARY}'; }}
        location = /purge-payments {{ return 200 ""; }}
        # /health included: the bench samples /health only when it is payroute's.
        location / {{ return 404; }}
    }}
}}
"#
    ))
}

/// A running floor.
pub struct Nginx {
    child: Child,
    /// Its config and temp paths, removed at the stop.
    dir: PathBuf,
    pub port: u16,
    stopped: bool,
}

impl Nginx {
    /// Starts `program` as a floor for `vus` VUs on a free port, its output appended to
    /// `log`, and waits until it listens. Blocking.
    pub fn start(program: &Path, vus: u32, log: &Path) -> anyhow::Result<Nginx> {
        let port = super::free_port()?;
        let dir =
            std::env::temp_dir().join(format!("payroute-floor-{}-{port}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let conf = dir.join("nginx.conf");
        std::fs::write(&conf, config(&dir, port, vus)?)
            .with_context(|| format!("writing {}", conf.display()))?;
        let out =
            std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
        // -e: errors before the config is read go to stderr, not /var/log; -p: the prefix.
        let child = Command::new(program)
            .args(["-e", "stderr", "-p"])
            .arg(&dir)
            .arg("-c")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .process_group(0)
            .spawn()
            .with_context(|| format!("starting {}", program.display()))?;
        let mut nginx = Nginx {
            child,
            dir,
            port,
            stopped: false,
        };
        nginx.wait_until_listening(log)?;
        Ok(nginx)
    }

    fn wait_until_listening(&mut self, log: &Path) -> anyhow::Result<()> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return Ok(());
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                let text = std::fs::read_to_string(log).unwrap_or_default();
                bail!(
                    "the floor's nginx exited with {status} before listening on 127.0.0.1:{}:\n{}",
                    self.port,
                    text.trim_end()
                );
            }
            if Instant::now() > deadline {
                bail!("the floor's nginx did not listen on 127.0.0.1:{} within {READY_TIMEOUT:?} (see {})", self.port, log.display());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// PID of the master, which leads the group.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// CPU time and peak resident set of the master and its worker together.
    pub fn usage(&self) -> ProcUsage {
        let members = group_members(self.pid());
        ProcUsage {
            name: NAME.to_string(),
            pid: self.pid(),
            cpu_seconds: members.iter().map(|&p| cpu_seconds(p)).sum(),
            peak_rss_bytes: members.iter().filter_map(|&p| peak_rss(p)).sum(),
            throttled_seconds: None,
            limits_enforced: false,
        }
    }

    /// How it ended, if it has (it should not before the stop).
    pub fn exited(&mut self) -> Option<String> {
        match self.child.try_wait() {
            Ok(Some(status)) => Some(format!("{NAME} (pid {}) exited: {status}", self.pid())),
            _ => None,
        }
    }

    /// Stops it, by its PID: SIGTERM to its group while the master is alive (its PID
    /// cannot be reused before it is reaped), SIGKILL after [`STOP_GRACE`], then any
    /// worker left behind (only if the master died abnormally) by its own PID.
    /// Removes its directory. Idempotent.
    pub fn stop(&mut self) {
        if std::mem::replace(&mut self.stopped, true) {
            return;
        }
        let group = Pid::from_raw(self.pid() as i32);
        let alive = |c: &mut Child| matches!(c.try_wait(), Ok(None));
        if let (Some(g), true) = (group, alive(&mut self.child)) {
            let _ = kill_process_group(g, Signal::TERM);
            let deadline = Instant::now() + STOP_GRACE;
            while alive(&mut self.child) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            if alive(&mut self.child) {
                let _ = kill_process_group(g, Signal::KILL);
            }
        }
        let _ = self.child.wait();
        for p in group_members(self.pid()) {
            if let Some(p) = Pid::from_raw(p as i32) {
                let _ = kill_process(p, Signal::KILL);
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Processes whose process group is `pgid` (field 5 of `/proc/PID/stat`).
fn group_members(pgid: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|s| pgrp_from_stat(&s))
                == Some(pgid)
        })
        .collect()
}

/// Field 5 (pgrp) of `/proc/PID/stat`, counted after the command's closing parenthesis.
fn pgrp_from_stat(stat: &str) -> Option<u32> {
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(2)?.parse().ok()
}

/// CPU seconds of process `pid`: the scheduler's nanoseconds on a CPU summed over its
/// threads (`/proc/PID/task/*/schedstat`), precise where the clock ticks of
/// `/proc/PID/stat` (10 ms) would round a short run's few milliseconds to zero; the
/// ticks when schedstat is not there.
fn cpu_seconds(pid: u32) -> f64 {
    schedstat_seconds(pid).unwrap_or_else(|| {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|s| cpu_ticks_from_stat(&s))
            .map_or(0.0, |t| t as f64 / CLOCK_TICKS_PER_SEC)
    })
}

fn schedstat_seconds(pid: u32) -> Option<f64> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    let mut ns = 0u64;
    for t in tasks {
        let text = std::fs::read_to_string(t.ok()?.path().join("schedstat")).ok()?;
        ns += schedstat_run_ns(&text)?;
    }
    Some(ns as f64 / 1e9)
}

/// First field of a `schedstat` line: nanoseconds spent on a CPU.
fn schedstat_run_ns(text: &str) -> Option<u64> {
    text.split_whitespace().next()?.parse().ok()
}

fn peak_rss(pid: u32) -> Option<u64> {
    vm_hwm_bytes(&std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_config_answers_the_four_endpoints_and_holds_every_vu() {
        let c = config(Path::new("/tmp/floor-x/"), 18_123, 5_500).unwrap();
        assert!(c.contains("listen 127.0.0.1:18123 backlog=4096;"));
        assert!(c.contains("worker_processes 1;"));
        assert!(c.contains("worker_connections 6524;"));
        assert!(c.contains("worker_rlimit_nofile 6588;"));
        assert!(c.contains("pid /tmp/floor-x/nginx.pid;"));
        assert!(c.contains(r#"location = /payments { return 202 ""; }"#));
        assert!(c.contains(&format!(
            "location = /payments-summary {{ return 200 '{ZERO_SUMMARY}'; }}"
        )));
        assert!(c.contains(r#"location = /purge-payments { return 200 ""; }"#));
        assert!(c.contains("location / { return 404; }"));
        // Nothing outside its directory but stderr.
        for line in c.lines().filter(|l| l.contains('/') && l.contains("_path")) {
            assert!(line.contains("/tmp/floor-x/"), "{line}");
        }
        assert!(config(Path::new("/tmp/a b"), 1, 1).is_err());
        assert!(config(Path::new("/tmp/a;b"), 1, 1).is_err());
        // The zero summary is what a backend that processed nothing answers.
        let z = crate::checker::parse_backend_summary(200, ZERO_SUMMARY.as_bytes());
        assert_eq!((z.default_requests, z.fallback_requests), (0.0, 0.0));
    }

    /// `nginx -t` on a generated config. Skipped with a message when nginx is not
    /// installed, except under CI (`scripts/install-deps.sh` installs it there).
    #[test]
    fn nginx_accepts_the_generated_config() {
        let Some(nginx) = find() else {
            assert!(
                std::env::var_os("CI").is_none(),
                "nginx is not installed, and CI is set: scripts/install-deps.sh must install it"
            );
            eprintln!(
                "NOTE: nginx is not installed: test skipped (scripts/install-deps.sh installs it)"
            );
            return;
        };
        let dir = std::env::temp_dir().join(format!("bench-floor-conf-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let conf = dir.join("nginx.conf");
        std::fs::write(
            &conf,
            config(&dir, super::super::free_port().unwrap(), 550).unwrap(),
        )
        .unwrap();
        let out = Command::new(nginx)
            .args(["-e", "stderr", "-p"])
            .arg(&dir)
            .arg("-t")
            .arg("-c")
            .arg(&conf)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        std::fs::remove_dir_all(&dir).ok();
        assert!(out.status.success(), "nginx -t failed:\n{stderr}");
        assert!(stderr.contains("test is successful"), "{stderr}");
    }

    /// A floor started, asked, measured and stopped: nothing of it left behind.
    #[test]
    fn a_floor_answers_and_stops_by_pid() {
        let Some(nginx) = find() else {
            assert!(
                std::env::var_os("CI").is_none(),
                "nginx is not installed, and CI is set"
            );
            eprintln!(
                "NOTE: nginx is not installed: test skipped (scripts/install-deps.sh installs it)"
            );
            return;
        };
        let log = std::env::temp_dir().join(format!("bench-floor-run-{}.log", std::process::id()));
        let mut floor = Nginx::start(&nginx, 10, &log).unwrap();
        let ask = |req: &str| {
            use std::io::{Read, Write};
            let mut s = std::net::TcpStream::connect(("127.0.0.1", floor.port)).unwrap();
            s.write_all(req.as_bytes()).unwrap();
            let mut answer = String::new();
            s.read_to_string(&mut answer).unwrap();
            answer
        };
        let post = ask("POST /payments HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 2\r\n\r\n{}");
        assert!(post.starts_with("HTTP/1.1 202"), "{post}");
        let summary = ask("GET /payments-summary?from=2025-01-01T00:00:00.000Z HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        assert!(
            summary.starts_with("HTTP/1.1 200") && summary.ends_with(ZERO_SUMMARY),
            "{summary}"
        );
        let health = ask("GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        assert!(health.starts_with("HTTP/1.1 404"), "{health}");
        let members = group_members(floor.pid());
        assert!(members.len() >= 2, "master and worker: {members:?}");
        let u = floor.usage();
        assert!(u.cpu_seconds > 0.0 && u.peak_rss_bytes > 0, "{u:?}");
        assert_eq!(floor.exited(), None);
        let dir = floor.dir.clone();
        floor.stop();
        for p in members {
            assert!(
                !Path::new(&format!("/proc/{p}")).exists(),
                "{p} still there"
            );
        }
        assert!(!dir.exists());
        std::fs::remove_file(&log).ok();
    }

    #[test]
    fn reads_groups_and_schedstat() {
        let stat = "1234 (nginx: worker (x)) S 1233 1233 1233 0 -1 4194560 100 0 0 0 250 50";
        assert_eq!(pgrp_from_stat(stat), Some(1233));
        assert_eq!(
            schedstat_run_ns("170933157 20621264 400\n"),
            Some(170_933_157)
        );
        assert_eq!(schedstat_run_ns(""), None);
        // This test process: in some group, with some CPU used.
        let me = std::process::id();
        let own = std::fs::read_to_string(format!("/proc/{me}/stat")).unwrap();
        let pgid = pgrp_from_stat(&own).unwrap();
        assert!(group_members(pgid).contains(&me));
        assert!(cpu_seconds(me) > 0.0);
    }
}
