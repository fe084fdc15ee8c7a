//! Compose files read as Docker reads them (YAML with its merge keys applied), and the
//! rules of the challenge (SPEC §4) that every compose file of payroute's must meet:
//! `deploy/docker-compose.yml` (`deploy_compose.rs`) and the one `payroute submission`
//! writes (`deploy_submission.rs`) are held to the same function.

use launcher::resources::{TOTAL_MEMORY_MB, TOTAL_MILLI_CPUS};
use serde_json::{Map, Value};
use std::path::Path;

/// A YAML document as JSON values (merge keys `<<: *anchor` are applied by the parser,
/// as Docker does). `name` is for the panic message.
pub fn parse(name: &str, text: &str) -> Value {
    serde_saphyr::from_str(text).unwrap_or_else(|e| panic!("{name} is not valid YAML: {e}"))
}

/// [`parse`] of a file.
pub fn load(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    parse(&path.display().to_string(), &text)
}

pub fn services(doc: &Value) -> &Map<String, Value> {
    doc["services"].as_object().expect("no services")
}

/// A scalar as text (`0.3` and `"0.3"` alike).
pub fn str_of(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        other => panic!("not a scalar: {other:?}"),
    }
}

/// `"0.3"` → 300.
pub fn milli_cpus(v: &Value) -> u32 {
    let s = str_of(v);
    let (whole, frac) = s.split_once('.').unwrap_or((&s, ""));
    assert!(frac.len() <= 3, "cpus {s}: at most 3 decimals");
    let frac = format!("{frac:0<3}");
    whole.parse::<u32>().unwrap() * 1000 + frac.parse::<u32>().unwrap()
}

/// `"40MB"` → 40 (MB as Docker reads it: MiB).
pub fn memory_mb(v: &Value) -> u32 {
    let s = str_of(v);
    let n = s
        .strip_suffix("MB")
        .or_else(|| s.strip_suffix('M'))
        .unwrap_or_else(|| panic!("memory `{s}`: write it in MB"));
    n.parse().unwrap()
}

/// The command of a service, as a list of strings.
pub fn command(svc: &Value) -> Vec<String> {
    match &svc["command"] {
        Value::Array(items) => items.iter().map(str_of).collect(),
        Value::String(s) => s.split_whitespace().map(str::to_string).collect(),
        Value::Null => Vec::new(),
        other => panic!("command {other:?}"),
    }
}

pub fn env_of(svc: &Value, key: &str) -> Option<String> {
    match &svc["environment"] {
        Value::Object(m) => m.get(key).map(str_of),
        Value::Array(items) => items.iter().map(str_of).find_map(|kv| {
            kv.split_once('=')
                .filter(|(k, _)| *k == key)
                .map(|(_, v)| v.to_string())
        }),
        _ => None,
    }
}

pub fn networks_of(svc: &Value) -> Vec<String> {
    match &svc["networks"] {
        Value::Array(items) => items.iter().map(str_of).collect(),
        Value::Object(m) => m.keys().cloned().collect(),
        _ => Vec::new(),
    }
}

/// A service's volumes, as written (`sockets:/run/payroute`, `./nginx.conf:/etc/...:ro`).
pub fn volumes_of(svc: &Value) -> Vec<String> {
    svc["volumes"]
        .as_array()
        .map(|v| v.iter().map(str_of).collect())
        .unwrap_or_default()
}

/// Every rule of SPEC §4 that a file can show: linux/amd64 images, no `privileged`, no
/// host networking, no `replicas` (nor `scale`), limits on every service adding up to
/// at most 1.5 CPU and 350 MB, at least two api instances, only port 9999 published (by
/// the load balancer), a bridge network of its own, the external network
/// `payment-processor` joined by the worker, which reaches the processors by their
/// hostnames.
pub fn check_challenge_rules(doc: &Value) {
    let services = services(doc);
    let mut apis = 0;
    let mut total_cpu = 0;
    let mut total_mem = 0;
    for (name, svc) in services {
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
            limits.is_object(),
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
            let ports = s.get("ports")?.as_array()?;
            Some((n.clone(), ports.iter().map(str_of).collect()))
        })
        .collect();
    assert_eq!(
        published,
        vec![("lb".to_string(), vec!["9999:9999".to_string()])]
    );

    // Networks: a bridge of our own, and the processors' external one.
    let networks = &doc["networks"];
    for (name, net) in networks.as_object().expect("no networks") {
        let external = net["external"] == Value::Bool(true);
        if !external {
            assert_eq!(str_of(&net["driver"]), "bridge", "network {name}");
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

/// The services and their limits are the launcher's table, service by service (one
/// source of truth).
pub fn check_limits_equal_the_launcher_table(doc: &Value) {
    use launcher::resources::{ServiceLimit, SERVICES};
    let services = services(doc);
    // serde_json's map is sorted by key: compare as sets.
    let mut names: Vec<&str> = services.keys().map(String::as_str).collect();
    let mut table: Vec<&str> = SERVICES.iter().map(|s| s.service).collect();
    names.sort_unstable();
    table.sort_unstable();
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
