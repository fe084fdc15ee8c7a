//! The observability overlay (`deploy/docker-compose.observability.yml`), checked
//! without a Docker engine: valid YAML that adds services to the main compose file and
//! changes none, every file it mounts exists, Prometheus scrapes each api instance on
//! its own port of the metrics proxy, Grafana gets the datasource the dashboard names,
//! and the dashboard queries only metrics payroute exports (the list below), all of
//! them. The metrics proxy's nginx config is checked by nginx itself.

mod common;

use common::compose::{self, services, str_of, volumes_of};
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Every metric the dashboard may query, by its exported name (a histogram's series add
/// `_bucket`, `_sum` and `_count`).
const METRICS: [&str; 12] = [
    "payroute_payments_accepted_total",
    "payroute_payments_processed_total",
    "payroute_queue_depth",
    "payroute_in_flight",
    "payroute_held_payments",
    "payroute_held_oldest_age_seconds",
    "payroute_unknown_fate_payments",
    "payroute_processor_request_duration_seconds",
    "payroute_http_request_duration_seconds",
    "payroute_log_write_errors_total",
    "payroute_processor_failing",
    "payroute_worker_up",
];

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy")
}

fn overlay() -> Value {
    compose::load(&deploy_dir().join("docker-compose.observability.yml"))
}

fn dashboard() -> Value {
    let path = deploy_dir().join("observability/grafana/dashboards/payroute.json");
    let text = std::fs::read_to_string(&path).unwrap();
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// `(host path, container path)` of a bind mount written `./host:/container[:ro]`.
fn bind_mounts(svc: &Value) -> Vec<(PathBuf, String)> {
    volumes_of(svc)
        .iter()
        .filter_map(|v| {
            let rest = v.strip_prefix("./")?;
            let mut parts = rest.split(':');
            let host = deploy_dir().join(parts.next()?);
            Some((host, parts.next()?.to_string()))
        })
        .collect()
}

#[test]
fn overlay_adds_services_and_mounts_files_that_exist() {
    let base = compose::load(&deploy_dir().join("docker-compose.yml"));
    let doc = overlay();
    let added = services(&doc);
    let base_services = services(&base);
    for name in ["metrics-proxy", "prometheus", "grafana"] {
        assert!(added.contains_key(name), "no {name}");
    }
    for (name, svc) in added {
        assert!(
            !base_services.contains_key(name),
            "{name}: overrides a payroute service"
        );
        assert_eq!(str_of(&svc["platform"]), "linux/amd64", "{name}");
        assert!(
            svc["deploy"]["resources"]["limits"].is_object(),
            "{name}: limits"
        );
        for (host, _) in bind_mounts(svc) {
            assert!(
                host.exists(),
                "{name} mounts {}, which does not exist",
                host.display()
            );
        }
        // Named volumes and networks are the main file's.
        for volume in volumes_of(svc).iter().filter(|v| !v.starts_with("./")) {
            let named = volume.split(':').next().unwrap();
            assert!(
                base["volumes"].get(named).is_some(),
                "{name}: volume {named}"
            );
        }
        for network in compose::networks_of(svc) {
            assert!(
                base["networks"].get(&network).is_some(),
                "{name}: network {network}"
            );
        }
        // Dependencies exist in one file or the other.
        for dep in svc["depends_on"].as_array().into_iter().flatten() {
            let dep = str_of(dep);
            assert!(
                added.contains_key(&dep) || base_services.contains_key(&dep),
                "{dep}"
            );
        }
    }
}

/// Each api instance has its own target, never the load balancer.
#[test]
fn prometheus_scrapes_each_api_instance_directly() {
    let dir = deploy_dir().join("observability");
    let prometheus = compose::load(&dir.join("prometheus.yml"));
    let proxy = std::fs::read_to_string(dir.join("metrics-proxy.conf")).unwrap();
    let mut instances = Vec::new();
    for job in prometheus["scrape_configs"].as_array().unwrap() {
        for group in job["static_configs"].as_array().unwrap() {
            for target in group["targets"].as_array().unwrap() {
                let target = str_of(target);
                assert!(
                    !target.starts_with("lb:"),
                    "{target}: through the load balancer"
                );
                let (host, port) = target.split_once(':').unwrap();
                assert_eq!(host, "metrics-proxy");
                let instance = str_of(&group["labels"]["instance"]);
                // That port of the proxy leads to that instance's socket.
                let server = proxy
                    .split("server {")
                    .find(|s| s.contains(&format!("listen {port};")))
                    .unwrap_or_else(|| panic!("metrics-proxy.conf does not listen on {port}"));
                assert!(
                    server.contains(&format!("unix:/run/payroute/{instance}.sock:/metrics")),
                    "port {port} does not lead to {instance}"
                );
                instances.push(instance);
            }
        }
    }
    instances.sort();
    assert_eq!(instances, ["api1", "api2"]);
    // Both api instances of the main file listen where the proxy looks.
    let base = compose::load(&deploy_dir().join("docker-compose.yml"));
    for api in ["api1", "api2"] {
        let listen = compose::env_of(&services(&base)[api], "PAYROUTE_LISTEN").unwrap();
        assert_eq!(listen, format!("unix:/run/payroute/{api}.sock"));
    }
}

#[test]
fn grafana_gets_the_datasource_and_dashboard_it_shows() {
    let doc = overlay();
    let grafana = &services(&doc)["grafana"];
    let mounts = bind_mounts(grafana);
    let container_of = |suffix: &str| {
        mounts
            .iter()
            .find(|(host, _)| host.ends_with(suffix))
            .map(|(_, c)| c.clone())
            .unwrap_or_else(|| panic!("grafana does not mount {suffix}"))
    };
    let dashboards_at = container_of("observability/grafana/dashboards");
    assert_eq!(
        container_of("observability/grafana/provisioning"),
        "/etc/grafana/provisioning"
    );
    let dir = deploy_dir().join("observability/grafana/provisioning");
    let provider = compose::load(&dir.join("dashboards/payroute.yml"));
    assert_eq!(
        str_of(&provider["providers"][0]["options"]["path"]),
        dashboards_at
    );
    let datasources = compose::load(&dir.join("datasources/prometheus.yml"));
    let source = &datasources["datasources"][0];
    assert_eq!(str_of(&source["url"]), "http://prometheus:9090");
    let uid = str_of(&source["uid"]);
    let dashboard = dashboard();
    for panel in dashboard["panels"].as_array().unwrap() {
        assert_eq!(
            str_of(&panel["datasource"]["uid"]),
            uid,
            "{}",
            panel["title"]
        );
    }
    let home = compose::env_of(grafana, "GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH").unwrap();
    assert_eq!(home, format!("{dashboards_at}/payroute.json"));
}

/// The metric names in a PromQL expression, histogram series named by their family.
fn metrics_in(expr: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut rest = expr;
    while let Some(i) = rest.find("payroute_") {
        let name: String = rest[i..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        rest = &rest[i + name.len()..];
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s))
            .unwrap_or(&name);
        found.insert(family.to_string());
    }
    found
}

#[test]
fn dashboard_queries_known_metrics_and_all_of_them() {
    let dashboard = dashboard();
    assert_eq!(dashboard["uid"], "payroute");
    let mut used = BTreeSet::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        let title = str_of(&panel["title"]);
        let targets = panel["targets"].as_array().unwrap();
        assert!(!targets.is_empty(), "{title}: no query");
        for target in targets {
            let expr = str_of(&target["expr"]);
            let names = metrics_in(&expr);
            assert!(
                !names.is_empty(),
                "{title}: `{expr}` queries no payroute metric"
            );
            for name in names {
                assert!(
                    METRICS.contains(&name.as_str()),
                    "{title}: unknown metric {name}"
                );
                used.insert(name);
            }
        }
    }
    let unused: Vec<&str> = METRICS
        .iter()
        .copied()
        .filter(|m| !used.contains(*m))
        .collect();
    assert!(
        unused.is_empty(),
        "the dashboard shows nothing of {unused:?}"
    );
    assert_eq!(
        metrics_in(
            "histogram_quantile(0.99, sum by (le) (rate(payroute_x_bucket[1m]))) + payroute_y"
        ),
        BTreeSet::from(["payroute_x".to_string(), "payroute_y".to_string()])
    );
}

/// `nginx -t` on the metrics proxy's config, its directory moved as
/// `payroute up` moves deploy/nginx.conf's.
#[test]
fn nginx_accepts_the_metrics_proxy_config() {
    let Some(nginx) = common::require_program("nginx") else {
        return;
    };
    let dir = common::test_dir("metrics-proxy");
    let text = std::fs::read_to_string(deploy_dir().join("observability/metrics-proxy.conf"))
        .unwrap()
        .replace("/run/payroute/", &format!("{}/", dir.display()))
        .replace(
            "listen 9101;",
            &format!("listen 127.0.0.1:{};", common::free_port()),
        )
        .replace(
            "listen 9102;",
            &format!("listen 127.0.0.1:{};", common::free_port()),
        );
    let path = dir.join("metrics-proxy.conf");
    std::fs::write(&path, text).unwrap();
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
    std::fs::remove_dir_all(dir).unwrap();
}
