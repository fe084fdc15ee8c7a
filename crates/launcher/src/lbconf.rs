//! The load balancer configs of `payroute up --lb nginx|haproxy`, made from the very
//! files the compose deployment uses (`deploy/nginx.conf`, `deploy/haproxy.cfg`,
//! embedded at build time), so the two ways of running payroute cannot drift apart.
//!
//! The compose files put every socket and every file of the load balancer under
//! [`COMPOSE_RUN_DIR`] and listen on port [`COMPOSE_PORT`]. The native config is the same
//! text with exactly two rewrites: that directory becomes the launcher's run directory,
//! and the listen line gets the launcher's address. Each rewrite must match, so an
//! edit of a deploy file that breaks the convention fails loudly (and in the tests),
//! instead of producing a native config that silently differs.

use anyhow::{bail, Context};
use std::net::IpAddr;
use std::path::{Path, PathBuf};

/// `deploy/nginx.conf`, as mounted by the compose file.
pub const NGINX_CONF: &str = include_str!("../../../deploy/nginx.conf");
/// `deploy/haproxy.cfg`.
pub const HAPROXY_CFG: &str = include_str!("../../../deploy/haproxy.cfg");

/// Directory of the shared sockets volume in the compose deployment.
pub const COMPOSE_RUN_DIR: &str = "/run/payroute/";
/// Public port of the compose deployment.
pub const COMPOSE_PORT: u16 = 9999;

/// The compose deployment's api socket paths, in order (api1, api2).
pub fn api_socket(run_dir: &Path, index: usize) -> PathBuf {
    run_dir.join(format!("api{index}.sock"))
}

/// nginx's config for `payroute up`: [`NGINX_CONF`] with its paths under `run_dir` and
/// listening on `host:port`.
pub fn native_nginx(run_dir: &Path, host: IpAddr, port: u16) -> anyhow::Result<String> {
    let listen_from = format!("listen {COMPOSE_PORT} ");
    let listen_to = format!("listen {} ", socket_addr(host, port));
    rewrite(
        NGINX_CONF,
        "deploy/nginx.conf",
        run_dir,
        &listen_from,
        &listen_to,
    )
}

/// haproxy's config for `payroute up`: [`HAPROXY_CFG`] with its paths under `run_dir`
/// and listening on `host:port`.
pub fn native_haproxy(run_dir: &Path, host: IpAddr, port: u16) -> anyhow::Result<String> {
    let bind_from = format!("bind :{COMPOSE_PORT}\n");
    let bind_to = format!("bind {}\n", socket_addr(host, port));
    rewrite(
        HAPROXY_CFG,
        "deploy/haproxy.cfg",
        run_dir,
        &bind_from,
        &bind_to,
    )
}

fn socket_addr(host: IpAddr, port: u16) -> String {
    match host {
        IpAddr::V4(h) => format!("{h}:{port}"),
        IpAddr::V6(h) => format!("[{h}]:{port}"),
    }
}

fn rewrite(
    template: &str,
    name: &str,
    run_dir: &Path,
    listen_from: &str,
    listen_to: &str,
) -> anyhow::Result<String> {
    let dir = run_dir
        .to_str()
        .with_context(|| format!("run directory {} is not UTF-8", run_dir.display()))?;
    if dir.contains(|c: char| c.is_whitespace() || c == ';' || c == '#' || c == '"') {
        bail!(
            "run directory `{dir}` contains whitespace, `;`, `#` or `\"`, which the load \
             balancer's config syntax cannot take unquoted: choose another --run-dir"
        );
    }
    let dir = format!("{}/", dir.trim_end_matches('/'));
    if template.matches(listen_from).count() != 1 {
        bail!("{name} must contain `{}` exactly once", listen_from.trim());
    }
    if !template.contains(COMPOSE_RUN_DIR) {
        bail!("{name} must keep its files under {COMPOSE_RUN_DIR}");
    }
    Ok(template
        .replace(listen_from, listen_to)
        .replace(COMPOSE_RUN_DIR, &dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nginx_differs_from_compose_only_in_paths_and_address() {
        let dir = Path::new("/tmp/payroute-x");
        let conf = native_nginx(dir, "127.0.0.1".parse().unwrap(), 18080).unwrap();
        assert!(!conf.contains("/run/payroute"));
        assert!(conf.contains("listen 127.0.0.1:18080 backlog"));
        assert!(conf.contains("server unix:/tmp/payroute-x/api1.sock;"));
        assert!(conf.contains("server unix:/tmp/payroute-x/api2.sock;"));
        assert!(conf.contains("pid /tmp/payroute-x/nginx.pid;"));
        // Undo the two rewrites: the compose config comes back.
        let back = conf
            .replace("/tmp/payroute-x/", COMPOSE_RUN_DIR)
            .replace("listen 127.0.0.1:18080 ", "listen 9999 ");
        assert_eq!(back, NGINX_CONF);
    }

    #[test]
    fn nginx_config_has_the_settings_the_api_relies_on() {
        for line in [
            "worker_processes 1;",
            "keepalive 256;",
            "keepalive_timeout 20s;",
            "proxy_http_version 1.1;",
            "proxy_set_header Connection \"\";",
            "access_log off;",
        ] {
            assert!(
                NGINX_CONF.contains(line),
                "deploy/nginx.conf lacks `{line}`"
            );
        }
        // `daemon` is given on the command line (the official image passes
        // `-g 'daemon off;'`, and nginx refuses a duplicate).
        assert!(!NGINX_CONF
            .lines()
            .any(|l| l.trim_start().starts_with("daemon")));
    }

    #[test]
    fn haproxy_rewrite() {
        let conf = native_haproxy(Path::new("/tmp/p/"), "::1".parse().unwrap(), 8080).unwrap();
        assert!(conf.contains("bind [::1]:8080\n"));
        assert!(conf.contains("server api1 unix@/tmp/p/api1.sock"));
        assert!(!conf.contains("/run/payroute"));
    }

    #[test]
    fn refuses_paths_the_config_syntax_cannot_hold() {
        let host = "127.0.0.1".parse().unwrap();
        assert!(native_nginx(Path::new("/tmp/a b"), host, 1).is_err());
        assert!(native_nginx(Path::new("/tmp/a;b"), host, 1).is_err());
    }

    #[test]
    fn socket_paths() {
        assert_eq!(
            api_socket(Path::new("/run/payroute"), 2),
            PathBuf::from("/run/payroute/api2.sock")
        );
    }
}
