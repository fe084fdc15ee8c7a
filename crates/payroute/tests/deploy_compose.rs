//! The challenge submission (`deploy/`), checked without a Docker engine: the compose
//! files are parsed and held to every rule of SPEC §4, their resource limits must equal
//! the launcher's table (one source of truth), and the load balancer configs are
//! checked by the load balancers themselves (`nginx -t`, `haproxy -c`).

mod common;

use common::compose::{self, command, env_of, networks_of, services, str_of, volumes_of};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy")
}

/// A compose file of deploy/, with its YAML merge keys (`<<: *anchor`) applied.
fn load(name: &str) -> Value {
    compose::load(&deploy_dir().join(name))
}

#[test]
fn compose_meets_the_challenge_rules() {
    compose::check_challenge_rules(&load("docker-compose.yml"));
}

#[test]
fn api_instances_meet_the_load_balancer_over_shared_sockets() {
    let doc = load("docker-compose.yml");
    let services = services(&doc);
    let nginx = std::fs::read_to_string(deploy_dir().join("nginx.conf")).unwrap();
    let socket_volume = |svc: &Value| {
        volumes_of(svc)
            .iter()
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
    let lb_volumes = volumes_of(&services["lb"]);
    assert!(lb_volumes.contains(&"./nginx.conf:/etc/nginx/nginx.conf:ro".to_string()));
}

/// One source of truth: the compose limits are the launcher's table, service by
/// service.
#[test]
fn compose_limits_equal_the_launcher_table() {
    compose::check_limits_equal_the_launcher_table(&load("docker-compose.yml"));
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
            .as_array()
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
        for key in svc["environment"].as_object().unwrap().keys() {
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
