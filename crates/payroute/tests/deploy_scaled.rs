//! `deploy/docker-compose.scaled.yml`, the scaled-out deployment (two workers sharing a
//! PostgreSQL ledger), checked without a Docker engine: valid YAML, every file it
//! refers to exists, every worker has the shared `--ledger`, every api lists every
//! worker, PostgreSQL is healthy before a worker starts, and every command is one the
//! binary accepts. Its nginx config is the submission's `deploy/nginx.conf`, which
//! `deploy_compose.rs` checks with `nginx -t`.

mod common;

use common::compose::{self, command, networks_of, services, str_of, volumes_of};
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

const FILE: &str = "docker-compose.scaled.yml";

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy")
}

fn load() -> Value {
    compose::load(&deploy_dir().join(FILE))
}

/// The value after `flag` in a command.
fn flag(cmd: &[String], flag: &str) -> Option<String> {
    let i = cmd.iter().position(|a| a == flag)?;
    cmd.get(i + 1).cloned()
}

/// The services whose command starts with `role`, by name.
fn with_role<'a>(doc: &'a Value, role: &str) -> Vec<(&'a String, &'a Value)> {
    services(doc)
        .iter()
        .filter(|(_, s)| command(s).first().map(String::as_str) == Some(role))
        .collect()
}

#[test]
fn says_it_is_not_the_submission() {
    let text = std::fs::read_to_string(deploy_dir().join(FILE)).unwrap();
    let head: String = text.lines().take(4).collect::<Vec<_>>().join("\n");
    assert!(head.contains("NOT the challenge's submission"), "{head}");
    assert!(head.contains("unrepresentative"), "{head}");
}

#[test]
fn every_referenced_file_exists() {
    let doc = load();
    for (name, svc) in services(&doc) {
        if let Some(build) = svc.get("build") {
            let context = deploy_dir().join(str_of(&build["context"]));
            assert!(
                context.is_dir(),
                "{name}: build context {}",
                context.display()
            );
            let dockerfile = context.join(str_of(&build["dockerfile"]));
            assert!(dockerfile.is_file(), "{name}: {}", dockerfile.display());
        }
        for volume in volumes_of(svc) {
            let source = volume.split(':').next().unwrap();
            if source.starts_with('.') || source.starts_with('/') {
                let path = deploy_dir().join(source);
                assert!(path.exists(), "{name}: {volume}: no {}", path.display());
            } else {
                assert!(
                    doc["volumes"].get(source).is_some(),
                    "{name}: volume `{source}` is not declared"
                );
            }
        }
    }
}

/// Every worker: the shared ledger at the `db` service, a name of its own (its service
/// name), a TCP port on the backend network, the processors' network, and a start
/// only once PostgreSQL is healthy.
#[test]
fn every_worker_shares_the_ledger() {
    let doc = load();
    let workers = with_role(&doc, "worker");
    assert!(
        workers.len() >= 2,
        "a scaled deployment has several workers"
    );
    let db = &services(&doc)["db"];
    let env = |k: &str| str_of(&db["environment"][k]);
    let url = format!(
        "postgres://{}@db:5432/{}",
        env("POSTGRES_USER"),
        env("POSTGRES_DB")
    );
    for (name, svc) in &workers {
        let cmd = command(svc);
        assert_eq!(
            flag(&cmd, "--ledger").as_deref(),
            Some(url.as_str()),
            "{name}"
        );
        assert_eq!(
            flag(&cmd, "--name").as_deref(),
            Some(name.as_str()),
            "{name}"
        );
        let socket = flag(&cmd, "--socket").unwrap_or_default();
        assert!(
            socket.parse::<std::net::SocketAddr>().is_ok(),
            "{name}: --socket {socket} is not an IP:PORT (TCP)"
        );
        assert!(networks_of(svc).contains(&"payment-processor".to_string()));
        assert!(networks_of(svc).contains(&"backend".to_string()));
        assert_eq!(
            str_of(&svc["depends_on"]["db"]["condition"]),
            "service_healthy",
            "{name}"
        );
    }
}

#[test]
fn every_api_lists_every_worker() {
    let doc = load();
    let workers: BTreeSet<String> = with_role(&doc, "worker")
        .iter()
        .map(|(name, svc)| {
            let socket = flag(&command(svc), "--socket").unwrap();
            let port = socket.rsplit(':').next().unwrap();
            format!("{name}:{port}")
        })
        .collect();
    let apis = with_role(&doc, "api");
    assert!(apis.len() >= 2, "two api instances");
    let nginx = std::fs::read_to_string(deploy_dir().join("nginx.conf")).unwrap();
    for (name, svc) in &apis {
        let cmd = command(svc);
        let listed: BTreeSet<String> = flag(&cmd, "--worker-socket")
            .unwrap_or_default()
            .split(',')
            .map(str::to_string)
            .collect();
        assert_eq!(listed, workers, "{name}");
        let listen = flag(&cmd, "--listen").unwrap();
        assert!(
            nginx.contains(&format!("server {listen};")),
            "nginx.conf has no upstream {listen} ({name})"
        );
        assert!(volumes_of(svc).contains(&"sockets:/run/payroute".to_string()));
    }
    let lb = &services(&doc)["lb"];
    assert!(volumes_of(lb).contains(&"./nginx.conf:/etc/nginx/nginx.conf:ro".to_string()));
    assert_eq!(str_of(&lb["ports"][0]), "9999:9999");
}

#[test]
fn postgres_is_kept_and_checked() {
    let doc = load();
    let db = &services(&doc)["db"];
    assert!(str_of(&db["image"]).starts_with("postgres:15"));
    assert!(volumes_of(db)
        .iter()
        .any(|v| v.ends_with(":/var/lib/postgresql/data")));
    let test: Vec<String> = db["healthcheck"]["test"]
        .as_array()
        .expect("a health check")
        .iter()
        .map(str_of)
        .collect();
    assert!(test.iter().any(|a| a == "pg_isready"), "{test:?}");
    // A ledger: durability stays on.
    let cmd = command(db);
    assert!(cmd.contains(&"fsync=on".to_string()), "{cmd:?}");
    assert!(
        cmd.contains(&"synchronous_commit=on".to_string()),
        "{cmd:?}"
    );
    assert!(
        db.get("ports").is_none(),
        "PostgreSQL trusts everyone: no port"
    );
}

/// Each payroute command, with `--help` added, parses: the flags and values are ones
/// the binary accepts.
#[test]
fn commands_parse() {
    let doc = load();
    for (name, svc) in services(&doc) {
        if str_of(&svc["image"]) != "payroute:latest" {
            continue;
        }
        let mut cmd = command(svc);
        cmd.push("--help".into());
        let out = Command::new(common::payroute_exe())
            .args(&cmd)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{name}: payroute {cmd:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
