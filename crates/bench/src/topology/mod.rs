//! The system under test and its processors: started by the bench (payroute's whole
//! topology through `launcher`, exactly as `payroute up` does, or just two emulators
//! next to a backend given by URL, or next to the floor's nginx: see [`nginx`]), or
//! given entirely by URL.
//!
//! Whatever the bench starts it stops, by PID, on every path: at the end of a run, on
//! an error, and on Ctrl-C (the [`Topology`] is a `Drop` guard).
//!
//! Scaled out (`--workers N --ledger postgres|URL`), the launcher starts `worker1..N`
//! and, with `postgres`, a throwaway PostgreSQL cluster, whose CPU the bench reads
//! itself: the postmaster and its children ([`tree`]). [`Topology::kill`] sends SIGKILL
//! to one role's current process (by the PID the launcher reports), which the
//! launcher's restart policy starts again.

use anyhow::{bail, Context};
use launcher::{Lb, Ledger, Limits, LimitsStatus, UpConfig};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub mod nginx;
pub mod tree;

/// How long a started emulator may take to accept connections.
const EMULATOR_READY_TIMEOUT: Duration = Duration::from_secs(15);

/// `/proc/PID/stat` counts CPU time in clock ticks; `USER_HZ` is 100 on every Linux
/// architecture payroute targets (reading `sysconf` would need `unsafe`).
const CLOCK_TICKS_PER_SEC: f64 = 100.0;

/// What to run the test against.
#[derive(Debug, Clone)]
pub struct TopologyConfig {
    /// The `payroute` executable (this one).
    pub exe: PathBuf,
    /// What to test.
    pub backend: Backend,
    /// `None` (both): start two emulators.
    pub default: Option<String>,
    pub fallback: Option<String>,
    /// Fees of started emulators: (default, fallback).
    pub fees: (f64, f64),
    /// Port of a started payroute (0: any free port).
    pub port: u16,
    /// Ports of started emulators (0: any free port).
    pub emulator_ports: (u16, u16),
    pub lb: Lb,
    pub limits: Limits,
    /// Worker processes of a started payroute (`--workers`).
    pub workers: usize,
    /// Their ledger (`--ledger`); with a given backend, a `postgres://` URL is the
    /// database the bench reads its counters from.
    pub ledger: Ledger,
    /// Sockets, configurations and logs of started processes.
    pub run_dir: PathBuf,
}

/// The backend a run tests.
#[derive(Debug, Clone, PartialEq)]
pub enum Backend {
    /// payroute's topology, started by the bench.
    Payroute,
    /// A backend given by URL.
    Given(String),
    /// The floor: this nginx program, started by the bench for this many VUs.
    Floor { nginx: PathBuf, vus: u32 },
}

/// Resource use of one started process (the launcher's figures, or `/proc`'s for the
/// emulators the bench starts itself).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProcUsage {
    pub name: String,
    pub pid: u32,
    pub cpu_seconds: f64,
    pub peak_rss_bytes: u64,
    /// Time throttled by its CPU quota; `None` without a cgroup limit.
    pub throttled_seconds: Option<f64>,
    pub limits_enforced: bool,
}

impl From<launcher::ProcessUsage> for ProcUsage {
    fn from(p: launcher::ProcessUsage) -> ProcUsage {
        ProcUsage {
            name: p.name,
            pid: p.pid,
            cpu_seconds: p.cpu_seconds,
            peak_rss_bytes: p.peak_rss_bytes,
            throttled_seconds: p.throttled_seconds,
            limits_enforced: p.limits_enforced,
        }
    }
}

/// How many times the processes the bench started exited, and were started again by
/// the launcher's supervisor, during a run (from the launcher's events).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct EventCounts {
    pub exits: u32,
    pub restarts: u32,
}

/// Whether the challenge's limits were in force for the processes the bench started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LimitsNote {
    /// The text says how.
    Enforced(String),
    /// Asked for but impossible here; the text says why.
    NotEnforced(String),
    /// `--limits off`.
    Off,
    /// The bench did not start the backend.
    NotApplicable,
    /// The backend is the floor (nginx, started without limits).
    Floor,
    /// The scaled topology (a shared ledger), which runs without limits.
    Scaled,
}

impl LimitsNote {
    pub fn describe(&self) -> String {
        match self {
            LimitsNote::Enforced(how) => format!("challenge limits enforced: {how}"),
            LimitsNote::NotEnforced(why) => format!(
                "CHALLENGE LIMITS NOT ENFORCED ({why}): figures are NOT comparable with the challenge's"
            ),
            LimitsNote::Off => "limits off (--limits off): figures are NOT comparable with the challenge's".into(),
            LimitsNote::NotApplicable => "backend not started by the bench: its resource limits are unknown to it".into(),
            LimitsNote::Floor => "the floor: nginx answering at once, started by the bench without limits, for comparison".into(),
            LimitsNote::Scaled => "limits off: the challenge's limits have no share for several workers and PostgreSQL (--ledger): figures are NOT comparable with the challenge's".into(),
        }
    }

    pub fn is_warning(&self) -> bool {
        matches!(
            self,
            LimitsNote::NotEnforced(_) | LimitsNote::Off | LimitsNote::Scaled
        )
    }
}

enum Inner {
    /// payroute's topology, started by `launcher`.
    Launched(Option<launcher::Running>),
    /// A backend given by URL, or the floor's nginx, with the emulators the bench
    /// started (maybe none).
    External {
        floor: Option<nginx::Nginx>,
        emulators: Vec<Emulator>,
    },
    Stopped,
}

/// A started emulator process.
struct Emulator {
    name: String,
    child: Child,
}

/// The system under test, as started (or found) for one run.
pub struct Topology {
    inner: Mutex<Inner>,
    pub backend_url: String,
    pub default_url: String,
    pub fallback_url: String,
    /// The bench started payroute itself (so `/health` has payroute's shape).
    pub started_payroute: bool,
    /// Whether the challenge's limits hold for what the bench started.
    pub limits: LimitsNote,
    /// The workers' shared ledger, when they have one (`postgres://`).
    pub ledger_url: Option<String>,
}

/// A port that was free a moment ago on 127.0.0.1. Racy by nature (another process
/// may take it before we bind it), which is acceptable for tests and local runs.
pub fn free_port() -> anyhow::Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(l.local_addr()?.port())
}

/// `ports` with every 0 replaced by a port free a moment ago, all distinct from each
/// other and from the ports given: each listener is held until every port is chosen
/// (closed at once, the kernel may hand the same port out twice: seen in CI as "the
/// fallback's port is also the public port").
fn ports_or_free<const N: usize>(ports: [u16; N]) -> anyhow::Result<[u16; N]> {
    let mut held = Vec::new();
    let mut out = ports;
    for slot in out.iter_mut().filter(|p| **p == 0) {
        for _ in 0..64 {
            let l = std::net::TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
            let p = l.local_addr()?.port();
            held.push(l);
            if !ports.contains(&p) {
                *slot = p;
                break;
            }
        }
        if *slot == 0 {
            bail!("no free port on 127.0.0.1 apart from {ports:?}");
        }
    }
    Ok(out)
}

impl Topology {
    /// Starts what `cfg` asks for and waits until it answers. Blocking.
    pub fn start(cfg: &TopologyConfig) -> anyhow::Result<Topology> {
        if cfg.default.is_some() != cfg.fallback.is_some() {
            bail!("give both --default and --fallback, or neither (the bench then starts two emulators)");
        }
        std::fs::create_dir_all(&cfg.run_dir)
            .with_context(|| format!("creating {}", cfg.run_dir.display()))?;
        let [public, default, fallback] =
            ports_or_free([cfg.port, cfg.emulator_ports.0, cfg.emulator_ports.1])?;
        let emulator_ports = (default, fallback);
        match &cfg.backend {
            Backend::Payroute => Topology::start_payroute(cfg, public, emulator_ports),
            Backend::Given(url) => Topology::start_beside(cfg, url, None, emulator_ports),
            Backend::Floor { nginx, vus } => {
                let log = cfg.run_dir.join(format!("{}.log", nginx::NAME));
                let floor =
                    nginx::Nginx::start(nginx, *vus, &log).context("starting the floor (nginx)")?;
                let url = floor.url();
                let mut topo = Topology::start_beside(cfg, &url, Some(floor), emulator_ports)?;
                topo.limits = LimitsNote::Floor;
                Ok(topo)
            }
        }
    }

    /// payroute's whole topology, through `launcher`.
    fn start_payroute(
        cfg: &TopologyConfig,
        public: u16,
        emulator_ports: (u16, u16),
    ) -> anyhow::Result<Topology> {
        // `payroute up`'s own defaults, then what the bench decides. `start` listens on
        // 127.0.0.1 only: nothing here needs to be reachable from elsewhere.
        let mut up = UpConfig::new(cfg.exe.clone(), cfg.run_dir.clone());
        up.port = public;
        up.default_url = cfg.default.clone();
        up.fallback_url = cfg.fallback.clone();
        up.emulator_fees = cfg.fees;
        up.emulator_ports = emulator_ports;
        up.lb = cfg.lb;
        up.limits = cfg.limits;
        up.workers = cfg.workers;
        up.ledger = cfg.ledger.clone();
        if cfg.ledger.is_shared() {
            // The launcher refuses the challenge's limits with a shared ledger (they
            // have no share for several workers and a database): run without.
            up.limits = Limits::Off;
        }
        let running =
            launcher::start(&up).context("starting payroute's topology (as `payroute up` does)")?;
        let limits = match running.limits() {
            LimitsStatus::Off if cfg.ledger.is_shared() => LimitsNote::Scaled,
            LimitsStatus::Off => LimitsNote::Off,
            LimitsStatus::Enforced(how) => LimitsNote::Enforced(how.clone()),
            LimitsStatus::NotEnforced(why) => LimitsNote::NotEnforced(why.clone()),
        };
        Ok(Topology {
            limits,
            backend_url: running.backend_url(),
            default_url: running.default_url(),
            fallback_url: running.fallback_url(),
            ledger_url: running.ledger_url(),
            inner: Mutex::new(Inner::Launched(Some(running))),
            started_payroute: true,
        })
    }

    /// A backend given by URL (or the `floor` the bench started), with the processors
    /// given too or two emulators started beside it.
    fn start_beside(
        cfg: &TopologyConfig,
        backend: &str,
        floor: Option<nginx::Nginx>,
        emulator_ports: (u16, u16),
    ) -> anyhow::Result<Topology> {
        let mut topo = Topology {
            inner: Mutex::new(Inner::External {
                floor,
                emulators: Vec::new(),
            }),
            backend_url: backend.to_string(),
            default_url: String::new(),
            fallback_url: String::new(),
            started_payroute: false,
            limits: LimitsNote::NotApplicable,
            ledger_url: match &cfg.ledger {
                Ledger::Postgres(url) => Some(url.clone()),
                _ => None,
            },
        };
        if let (Some(d), Some(f)) = (&cfg.default, &cfg.fallback) {
            topo.default_url = d.clone();
            topo.fallback_url = f.clone();
            return Ok(topo);
        }
        topo.default_url = format!("http://127.0.0.1:{}", emulator_ports.0);
        topo.fallback_url = format!("http://127.0.0.1:{}", emulator_ports.1);
        // On an error below, dropping `topo` stops what was already started.
        for (name, port, fee) in [
            ("processor-default", emulator_ports.0, cfg.fees.0),
            ("processor-fallback", emulator_ports.1, cfg.fees.1),
        ] {
            let e = spawn_emulator(&cfg.exe, name, port, fee, &cfg.run_dir)?;
            if let Inner::External { emulators, .. } = &mut *topo.lock() {
                emulators.push(e);
            }
            wait_until_listening(port, &topo, name)?;
        }
        Ok(topo)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// CPU, peak RSS and throttling of every process the bench started, so far.
    pub fn usage(&self) -> Vec<ProcUsage> {
        match &mut *self.lock() {
            Inner::Launched(Some(r)) => {
                let cluster = postgres_tree_cpu(r);
                with_cluster_cpu(r.usage(), cluster)
            }
            Inner::External { floor, emulators } => floor
                .iter()
                .map(|f| f.usage())
                .chain(emulators.iter().map(|e| proc_usage(&e.name, e.child.id())))
                .collect(),
            _ => Vec::new(),
        }
    }

    /// Exits and restarts of started processes since the last call, as sentences, and
    /// counted.
    pub fn take_events(&self) -> (Vec<String>, EventCounts) {
        match &mut *self.lock() {
            Inner::Launched(Some(r)) => {
                let events = r.take_events();
                let mut counts = EventCounts::default();
                for e in &events {
                    match e {
                        launcher::Event::Exited { .. } => counts.exits += 1,
                        launcher::Event::Restarted { .. } => counts.restarts += 1,
                        launcher::Event::RestartFailed { .. } => {}
                    }
                }
                (events.iter().map(|e| e.to_string()).collect(), counts)
            }
            Inner::External { floor, emulators } => {
                let exited = |e: &mut Emulator| match e.child.try_wait() {
                    Ok(Some(status)) => Some(format!(
                        "{} (pid {}) exited: {status}",
                        e.name,
                        e.child.id()
                    )),
                    _ => None,
                };
                let texts: Vec<String> = floor
                    .iter_mut()
                    .filter_map(|f| f.exited())
                    .chain(emulators.iter_mut().filter_map(exited))
                    .collect();
                let exits = texts.len() as u32;
                (texts, EventCounts { exits, restarts: 0 })
            }
            _ => (Vec::new(), EventCounts::default()),
        }
    }

    /// Stops everything the bench started and returns each process's final usage.
    /// Idempotent.
    pub fn stop(&self) -> anyhow::Result<Vec<ProcUsage>> {
        let inner = std::mem::replace(&mut *self.lock(), Inner::Stopped);
        match inner {
            Inner::Launched(Some(r)) => {
                // Read while the cluster still runs.
                let cluster = postgres_tree_cpu(&r);
                Ok(with_cluster_cpu(r.stop()?, cluster))
            }
            Inner::External { floor, emulators } => {
                let mut out = Vec::new();
                if let Some(mut f) = floor {
                    out.push(f.usage());
                    f.stop();
                }
                for mut e in emulators {
                    out.push(proc_usage(&e.name, e.child.id()));
                    // The emulator keeps nothing on disk: SIGKILL loses nothing.
                    let _ = e.child.kill();
                    let _ = e.child.wait();
                }
                Ok(out)
            }
            _ => Ok(Vec::new()),
        }
    }
}

impl Topology {
    /// The PID of `role`'s current process, when the bench started it and it runs.
    pub fn pid_of(&self, role: &str) -> Option<u32> {
        match &*self.lock() {
            Inner::Launched(Some(r)) => r
                .pids()
                .into_iter()
                .find_map(|(name, pid)| (name == role).then_some(pid)),
            _ => None,
        }
    }

    /// Sends SIGKILL to `role`'s current process (a process the launcher started for
    /// the bench, by its PID); its PID.
    pub fn kill(&self, role: &str) -> anyhow::Result<u32> {
        let pid = self
            .pid_of(role)
            .with_context(|| format!("{role} is not running: nothing to kill"))?;
        let p = rustix::process::Pid::from_raw(pid as i32)
            .with_context(|| format!("{role}: bad PID {pid}"))?;
        rustix::process::kill_process(p, rustix::process::Signal::KILL)
            .with_context(|| format!("SIGKILL to {role} (pid {pid})"))?;
        Ok(pid)
    }
}

/// CPU seconds of the throwaway PostgreSQL cluster's postmaster and its children (see
/// [`tree`]), while it runs.
fn postgres_tree_cpu(r: &launcher::Running) -> Option<f64> {
    let pid = r
        .pids()
        .into_iter()
        .find_map(|(name, pid)| (name == CLUSTER_ROLE).then_some(pid))?;
    tree::tree_cpu_seconds(pid)
}

/// The launcher's figures, the cluster's CPU replaced by `cluster` when it was read:
/// the launcher sums the live members of its process group, which leaves out the
/// backends that have exited (see [`tree`]).
fn with_cluster_cpu(usage: Vec<launcher::ProcessUsage>, cluster: Option<f64>) -> Vec<ProcUsage> {
    usage
        .into_iter()
        .map(ProcUsage::from)
        .map(|mut p| {
            if let (true, Some(cpu)) = (p.name == CLUSTER_ROLE, cluster) {
                p.cpu_seconds = cpu;
            }
            p
        })
        .collect()
}

/// The throwaway PostgreSQL cluster's name among the launcher's roles.
pub const CLUSTER_ROLE: &str = "postgres";

impl Drop for Topology {
    fn drop(&mut self) {
        if let Err(e) = self.stop() {
            eprintln!("payroute bench: stopping the started processes: {e:#}");
        }
    }
}

fn spawn_emulator(
    exe: &Path,
    name: &str,
    port: u16,
    fee: f64,
    dir: &Path,
) -> anyhow::Result<Emulator> {
    let log = std::fs::File::create(dir.join(format!("{name}.log")))?;
    let child = Command::new(exe)
        .args([
            "processor",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--fee",
            &fee.to_string(),
        ])
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .with_context(|| format!("starting {name} ({} processor)", exe.display()))?;
    Ok(Emulator {
        name: name.to_string(),
        child,
    })
}

fn wait_until_listening(port: u16, topo: &Topology, name: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + EMULATOR_READY_TIMEOUT;
    loop {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(());
        }
        if let Inner::External { emulators, .. } = &mut *topo.lock() {
            if let Some(e) = emulators.iter_mut().find(|e| e.name == name) {
                if let Ok(Some(status)) = e.child.try_wait() {
                    bail!("{name} exited with {status} before listening on 127.0.0.1:{port} (see its log in the run directory)");
                }
            }
        }
        if Instant::now() > deadline {
            bail!("{name} did not listen on 127.0.0.1:{port} within {EMULATOR_READY_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Usage of a process from `/proc` (no cgroup: limits not enforced, no throttling).
fn proc_usage(name: &str, pid: u32) -> ProcUsage {
    let cpu_seconds = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| cpu_ticks_from_stat(&s))
        .map(|t| t as f64 / CLOCK_TICKS_PER_SEC)
        .unwrap_or(0.0);
    let peak_rss_bytes = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| vm_hwm_bytes(&s))
        .unwrap_or(0);
    ProcUsage {
        name: name.to_string(),
        pid,
        cpu_seconds,
        peak_rss_bytes,
        throttled_seconds: None,
        limits_enforced: false,
    }
}

/// CPU seconds this process (the bench) has used so far.
pub fn own_cpu_seconds() -> f64 {
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| cpu_ticks_from_stat(&s))
        .map(|t| t as f64 / CLOCK_TICKS_PER_SEC)
        .unwrap_or(0.0)
}

/// utime + stime (fields 14 and 15) of `/proc/PID/stat`; the command name (field 2)
/// may contain spaces, so fields are counted after its closing parenthesis.
fn cpu_ticks_from_stat(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After ")": field 3 (state) is index 0, so field 14 is index 11.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// `VmHWM` (peak resident set) of `/proc/PID/status`, in bytes.
fn vm_hwm_bytes(status: &str) -> Option<u64> {
    status_kib(status, "VmHWM:")
}

/// A `NAME:  N kB` line of `/proc/PID/status`, in bytes.
fn status_kib(status: &str, name: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with(name))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// The resident set of process `pid` now (`VmRSS`), in bytes; `None` once it is gone.
pub fn current_rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status_kib(&status, "VmRSS:")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The bench's own ports, chosen together: distinct, and never one given.
    #[test]
    fn free_ports_are_distinct_and_spare_the_given_ones() {
        for _ in 0..200 {
            let [a, b, c] = ports_or_free([0, 0, 0]).unwrap();
            assert!(a != 0 && a != b && b != c && a != c, "{a} {b} {c}");
            let given = b;
            let [x, y, z] = ports_or_free([0, given, 0]).unwrap();
            assert_eq!(y, given);
            assert!(x != given && z != given && x != z, "{x} {y} {z}");
        }
    }

    #[test]
    fn parses_proc_files() {
        let stat = "1234 (my (odd) name) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 1 0 100 1000 10";
        assert_eq!(cpu_ticks_from_stat(stat), Some(300));
        let status = "Name:\tx\nVmPeak:\t  1000 kB\nVmHWM:\t    2048 kB\nVmRSS:\t 1024 kB\n";
        assert_eq!(vm_hwm_bytes(status), Some(2 * 1024 * 1024));
        assert_eq!(status_kib(status, "VmRSS:"), Some(1024 * 1024));
        assert!(current_rss_bytes(std::process::id()).unwrap() > 0);
        let me = proc_usage("self", std::process::id());
        assert!(me.peak_rss_bytes > 0);
    }

    #[test]
    fn refuses_half_given_processors() {
        let cfg = TopologyConfig {
            exe: "/bin/false".into(),
            backend: Backend::Given("http://127.0.0.1:1".into()),
            default: Some("http://127.0.0.1:2".into()),
            fallback: None,
            fees: (0.05, 0.15),
            port: 0,
            emulator_ports: (0, 0),
            lb: Lb::Embedded,
            limits: Limits::Off,
            workers: 1,
            ledger: Ledger::File,
            run_dir: std::env::temp_dir(),
        };
        assert!(Topology::start(&cfg).is_err());
    }
}
