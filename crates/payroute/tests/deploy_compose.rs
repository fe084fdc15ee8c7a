//! The challenge submission (`deploy/`), checked without a Docker engine: the compose
//! files are parsed and held to every rule of SPEC §4, their resource limits must equal
//! the launcher's table (one source of truth), and the load balancer configs are
//! checked by the load balancers themselves (`nginx -t`, `haproxy -c`).

mod common;

use launcher::resources::{ServiceLimit, SERVICES, TOTAL_MEMORY_MB, TOTAL_MILLI_CPUS};
use serde_yaml::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy")
}

/// A compose file with its YAML merge keys (`<<: *anchor`) applied, as Docker does.
fn load(name: &str) -> Value {
    let path = deploy_dir().join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut doc: Value = serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
    doc.apply_merge().unwrap();
    doc
}

fn services(doc: &Value) -> &serde_yaml::Mapping {
    doc["services"].as_mapping().expect("no services")
}

fn str_of(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        other => panic!("not a scalar: {other:?}"),
    }
}

/// `"0.3"` → 300.
fn milli_cpus(v: &Value) -> u32 {
    let s = str_of(v);
    let (whole, frac) = s.split_once('.').unwrap_or((&s, ""));
    assert!(frac.len() <= 3, "cpus {s}: at most 3 decimals");
    let frac = format!("{frac:0<3}");
    whole.parse::<u32>().unwrap() * 1000 + frac.parse::<u32>().unwrap()
}

/// `"40MB"` → 40 (MB as Docker reads it: MiB).
fn memory_mb(v: &Value) -> u32 {
    let s = str_of(v);
    let n = s
        .strip_suffix("MB")
        .or_else(|| s.strip_suffix('M'))
        .unwrap_or_else(|| panic!("memory `{s}`: write it in MB"));
    n.parse().unwrap()
}

/// The command of a service, as a list of strings.
fn command(svc: &Value) -> Vec<String> {
    match &svc["command"] {
        Value::Sequence(items) => items.iter().map(str_of).collect(),
        Value::String(s) => s.split_whitespace().map(str::to_string).collect(),
        Value::Null => Vec::new(),
        other => panic!("command {other:?}"),
    }
}

fn env_of(svc: &Value, key: &str) -> Option<String> {
    match &svc["environment"] {
        Value::Mapping(m) => m.get(key).map(str_of),
        Value::Sequence(items) => items.iter().map(str_of).find_map(|kv| {
            kv.split_once('=')
                .filter(|(k, _)| *k == key)
                .map(|(_, v)| v.to_string())
        }),
        _ => None,
    }
}

fn networks_of(svc: &Value) -> Vec<String> {
    match &svc["networks"] {
        Value::Sequence(items) => items.iter().map(str_of).collect(),
        Value::Mapping(m) => m.keys().map(str_of).collect(),
        _ => Vec::new(),
    }
}

#[test]
fn compose_meets_the_challenge_rules() {
    let doc = load("docker-compose.yml");
    let services = services(&doc);
    let mut apis = 0;
    let mut total_cpu = 0;
    let mut total_mem = 0;
    for (name, svc) in services {
        let name = str_of(name);
        assert_eq!(str_of(&svc["platform"]), "linux/amd64", "{name}: platform");
        assert!(
            svc.get("privileged")
                .is_none_or(|v| v == &Value::Bool(false)),
            "{name}: privileged"
        );
        assert!(
            svc.get("network_mode").is_none(),
            "{name}: network_mode (host networking is banned)"
        );
        assert!(svc["deploy"].get("replicas").is_none(), "{name}: replicas");
        assert!(svc.get("scale").is_none(), "{name}: scale");
        let limits = &svc["deploy"]["resources"]["limits"];
        assert!(
            limits.is_mapping(),
            "{name}: deploy.resources.limits missing"
        );
        total_cpu += milli_cpus(&limits["cpus"]);
        total_mem += memory_mb(&limits["memory"]);
        assert!(!networks_of(svc).is_empty(), "{name}: joins no network");
        if command(svc).first().map(String::as_str) == Some("api") {
            apis += 1;
        }
    }
    assert!(apis >= 2, "at least two api instances, found {apis}");
    assert!(
        total_cpu <= TOTAL_MILLI_CPUS,
        "CPU limits add up to {total_cpu} milli-CPUs"
    );
    assert!(
        total_mem <= TOTAL_MEMORY_MB,
        "memory limits add up to {total_mem} MB"
    );

    // Only the load balancer publishes a port, and it is 9999.
    let published: Vec<(String, Vec<String>)> = services
        .iter()
        .filter_map(|(n, s)| {
            let ports = s.get("ports")?.as_sequence()?;
            Some((str_of(n), ports.iter().map(str_of).collect()))
        })
        .collect();
    assert_eq!(
        published,
        vec![("lb".to_string(), vec!["9999:9999".to_string()])]
    );

    // Networks: a bridge of our own, and the processors' external one.
    let networks = &doc["networks"];
    for (name, net) in networks.as_mapping().unwrap() {
        let external = net["external"] == Value::Bool(true);
        if !external {
            assert_eq!(str_of(&net["driver"]), "bridge", "network {}", str_of(name));
        }
    }
    assert_eq!(networks["payment-processor"]["external"], Value::Bool(true));

    // The worker talks to the processors: by their hostnames, on their network.
    let worker = &services["worker"];
    assert_eq!(command(worker), ["worker"]);
    assert!(networks_of(worker).contains(&"payment-processor".to_string()));
    assert_eq!(
        env_of(worker, "PAYROUTE_DEFAULT_URL").as_deref(),
        Some("http://payment-processor-default:8080")
    );
    assert_eq!(
        env_of(worker, "PAYROUTE_FALLBACK_URL").as_deref(),
        Some("http://payment-processor-fallback:8080")
    );
}

#[test]
fn api_instances_meet_the_load_balancer_over_shared_sockets() {
    let doc = load("docker-compose.yml");
    let services = services(&doc);
    let nginx = std::fs::read_to_string(deploy_dir().join("nginx.conf")).unwrap();
    let socket_volume = |svc: &Value| {
        svc["volumes"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(str_of)
            .any(|v| v == "sockets:/run/payroute" || v.starts_with("sockets:/run/payroute:"))
    };
    for name in ["api1", "api2"] {
        let svc = &services[name];
        let listen = env_of(svc, "PAYROUTE_LISTEN").unwrap();
        let path = listen
            .strip_prefix("unix:")
            .expect("api listens on a Unix socket");
        assert!(
            nginx.contains(&format!("server unix:{path};")),
            "nginx.conf lacks {path}"
        );
        assert_eq!(
            env_of(svc, "PAYROUTE_WORKER_SOCKET").as_deref(),
            Some("/run/payroute/worker.sock")
        );
        assert!(socket_volume(svc), "{name} must mount the sockets volume");
    }
    assert!(socket_volume(&services["worker"]));
    assert!(socket_volume(&services["lb"]));
    let lb_volumes: Vec<String> = services["lb"]["volumes"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(str_of)
        .collect();
    assert!(lb_volumes.contains(&"./nginx.conf:/etc/nginx/nginx.conf:ro".to_string()));
}

/// One source of truth: the compose limits are the launcher's table, service by
/// service.
#[test]
fn compose_limits_equal_the_launcher_table() {
    let doc = load("docker-compose.yml");
    let services = services(&doc);
    let names: Vec<String> = services.keys().map(str_of).collect();
    let table: Vec<&str> = SERVICES.iter().map(|s| s.service).collect();
    assert_eq!(
        names, table,
        "compose services vs launcher::resources::SERVICES"
    );
    for ServiceLimit {
        service,
        milli_cpus: cpu,
        memory_mb: mem,
    } in SERVICES
    {
        let limits = &services[*service]["deploy"]["resources"]["limits"];
        assert_eq!(milli_cpus(&limits["cpus"]), *cpu, "{service} cpus");
        assert_eq!(memory_mb(&limits["memory"]), *mem, "{service} memory");
    }
}

#[test]
fn emulated_processors_compose_stands_in_for_the_official_one() {
    let doc = load("docker-compose.emulated-processors.yml");
    let services = services(&doc);
    for (name, fee, port) in [
        ("payment-processor-default", "0.05", "8001:8080"),
        ("payment-processor-fallback", "0.15", "8002:8080"),
    ] {
        let svc = &services[name];
        let cmd = command(svc);
        assert_eq!(cmd[0], "processor", "{name}");
        let arg = |flag: &str| {
            cmd.iter()
                .position(|a| a == flag)
                .map(|i| cmd[i + 1].clone())
        };
        assert_eq!(arg("--fee").as_deref(), Some(fee), "{name} fee");
        assert_eq!(
            arg("--listen").as_deref(),
            Some("0.0.0.0:8080"),
            "{name} listen"
        );
        assert_eq!(arg("--token").as_deref(), Some("123"), "{name} token");
        assert_eq!(str_of(&svc["platform"]), "linux/amd64");
        assert!(networks_of(svc).contains(&"payment-processor".to_string()));
        let ports: Vec<String> = svc["ports"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(str_of)
            .collect();
        assert_eq!(ports, [port]);
    }
    // It creates the network the main compose file joins as external.
    assert_eq!(
        str_of(&doc["networks"]["payment-processor"]["name"]),
        "payment-processor"
    );
    assert_ne!(
        doc["networks"]["payment-processor"]["external"],
        Value::Bool(true)
    );
}

/// The flags the compose files pass must be flags the binary knows.
#[test]
fn compose_commands_parse() {
    let exe = common::payroute_exe();
    let doc = load("docker-compose.emulated-processors.yml");
    let mut cmd = command(&services(&doc)["payment-processor-default"]);
    cmd.push("--help".into());
    let out = Command::new(&exe).args(&cmd).output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    for role in ["api", "worker"] {
        let out = Command::new(&exe).args([role, "--help"]).output().unwrap();
        // Help text is wrapped to the terminal: compare with whitespace collapsed.
        let help = String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        assert!(out.status.success());
        // The compose file configures these roles through their environment twins.
        let doc = load("docker-compose.yml");
        let svc = &services(&doc)[if role == "api" { "api1" } else { "worker" }];
        for (key, _) in svc["environment"].as_mapping().unwrap() {
            let key = str_of(key);
            if key != "PAYROUTE_LOG" {
                assert!(
                    help.contains(&format!("env: {key}")),
                    "`payroute {role}` has no {key}"
                );
            }
        }
    }
}

#[test]
fn dockerfile_builds_in_two_stages_and_runs_payroute() {
    let text = std::fs::read_to_string(deploy_dir().join("Dockerfile")).unwrap();
    let froms: Vec<&str> = text.lines().filter(|l| l.starts_with("FROM ")).collect();
    assert_eq!(froms.len(), 2, "build stage and runtime stage");
    assert!(froms.iter().all(|l| l.contains("--platform=linux/amd64")));
    assert!(text.contains("cargo build --release --locked -p payroute"));
    assert!(
        text.contains("COPY deploy ./deploy"),
        "the launcher embeds deploy/*.conf"
    );
    assert!(text.contains("ENTRYPOINT [\"/usr/local/bin/payroute\"]"));
    assert!(
        !text.contains("target-cpu=native"),
        "an image must run on any amd64 CPU"
    );
}

/// `nginx -t` on the config `payroute up --lb nginx` writes, which is the compose
/// file's with its paths moved (so it checks both).
#[test]
fn nginx_accepts_the_config() {
    let Some(nginx) = common::require_program("nginx") else {
        return;
    };
    let dir = common::test_dir("nginx-t");
    let conf =
        launcher::lbconf::native_nginx(&dir, "127.0.0.1".parse().unwrap(), common::free_port())
            .unwrap();
    let path = dir.join("nginx.conf");
    std::fs::write(&path, conf).unwrap();
    let out = Command::new(nginx)
        .args(["-e", "stderr", "-p"])
        .arg(&dir)
        .arg("-t")
        .arg("-c")
        .arg(&path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "nginx -t failed:\n{stderr}");
    assert!(stderr.contains("test is successful"), "{stderr}");
    std::fs::remove_dir_all(dir).unwrap();
}

/// `haproxy -c` on the compose config itself and on the one `payroute up --lb haproxy`
/// writes.
#[test]
fn haproxy_accepts_the_config() {
    let Some(haproxy) = common::require_program("haproxy") else {
        return;
    };
    let dir = common::test_dir("haproxy-c");
    let native =
        launcher::lbconf::native_haproxy(&dir, "127.0.0.1".parse().unwrap(), common::free_port())
            .unwrap();
    let native_path = dir.join("haproxy.cfg");
    std::fs::write(&native_path, native).unwrap();
    for path in [deploy_dir().join("haproxy.cfg"), native_path] {
        let out = Command::new(&haproxy)
            .arg("-c")
            .arg("-f")
            .arg(&path)
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.status.success(),
            "haproxy -c -f {} failed:\n{text}",
            path.display()
        );
        assert!(
            !text.contains("[WARNING]"),
            "haproxy warns about {}:\n{text}",
            path.display()
        );
    }
    std::fs::remove_dir_all(dir).unwrap();
}
