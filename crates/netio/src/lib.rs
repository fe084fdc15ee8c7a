//! Sockets and HTTP for payroute's servers: a listen address that is either TCP or a
//! Unix socket, binding with `SO_REUSEPORT` (so two api processes can share :9999), and
//! a small HTTP/1.1 server whose memory is bounded by design, and a small client.
//!
//! The server ([`Server`], [`serve`]) lends each connection a small buffer per request
//! and none while it is idle, bounds what buffers may grow to in all, and caps
//! connections by what the process's memory limit holds ([`memory`]); beyond the cap it
//! answers 503 rather than be killed. Requests are parsed by `httparse` and framed by
//! [`request::decode`] (keep-alive, pipelining, `Content-Length` and chunked bodies,
//! `Expect: 100-continue`); a role implements [`Handler`]: a [`Request`] in, a
//! [`Response`] out.
//!
//! The client ([`client::Origin`]) is the other side, for the worker's calls to the
//! processors: keep-alive pools, answers read into reused buffers, and errors that
//! tell "nothing was sent" from "the server may have acted on it".
//!
//! Architecture invariant: nothing here knows about payments; it moves bytes and
//! enforces limits.

mod buffers;
pub mod chunked;
pub mod client;
mod conn;
pub mod date;
mod listen;
pub mod memory;
pub mod request;
pub mod response;
mod server;
pub mod unix;

pub use listen::{prepare_unix_path, ListenAddr, Listener};
pub use request::Request;
pub use response::{empty, error, json, json_string, with_type, Body, Response};
pub use server::{serve, Handler, Refusal, ServeLimits, Server, ServerStats};
pub use tokio_util::sync::CancellationToken;
pub use unix::UnixConn;

use std::fmt;
use std::io;

/// The runtime every payroute role runs on: one thread, timers and IO enabled. Under a
/// fractional CPU quota (0.3 CPU for an api), more busy threads only burn the quota
/// early and stall until the next period; one thread also serves tens of thousands of
/// requests a second, far above what any role here sees.
pub fn single_thread_runtime() -> io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
}

/// Cancels `token` on the first Ctrl-C (SIGINT) or SIGTERM: every role's way to stop
/// cleanly, whoever runs it (a terminal, `payroute up`, docker).
pub async fn stop_on_signal(token: CancellationToken) {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(e) => {
            tracing::warn!("cannot watch SIGTERM ({e}); only Ctrl-C stops this process");
            let _ = tokio::signal::ctrl_c().await;
        }
    }
    tracing::info!("stopping");
    token.cancel();
}

/// A setting that cannot work, found at start: the role refuses to run and says which
/// flag (or its environment variable) is at fault. `payroute` exits with code 2 for
/// it, as for any other command-line error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettingError {
    /// The flag, without its dashes (`max-in-flight`).
    pub setting: &'static str,
    pub problem: String,
}

impl SettingError {
    pub fn new(setting: &'static str, problem: impl Into<String>) -> SettingError {
        SettingError {
            setting,
            problem: problem.into(),
        }
    }
}

impl fmt::Display for SettingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid setting --{}: {}", self.setting, self.problem)
    }
}

impl std::error::Error for SettingError {}

/// Exit code of a process that refused its settings (clap uses 2 for usage errors).
pub const EXIT_BAD_SETTING: u8 = 2;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_listen_addresses() {
        assert_eq!(
            "unix:/tmp/a.sock".parse(),
            Ok(ListenAddr::Unix("/tmp/a.sock".into()))
        );
        assert_eq!(
            ":9999".parse(),
            Ok(ListenAddr::Tcp("0.0.0.0:9999".parse().unwrap()))
        );
        assert_eq!(
            "127.0.0.1:0".parse(),
            Ok(ListenAddr::Tcp("127.0.0.1:0".parse().unwrap()))
        );
        assert!("unix:".parse::<ListenAddr>().is_err());
        assert!("nowhere".parse::<ListenAddr>().is_err());
    }

    #[tokio::test]
    async fn two_listeners_share_a_port_with_reuse_port() {
        let a = Listener::bind_shared(&"127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = a.local_addr().unwrap();
        let b = Listener::bind_shared(&addr).unwrap();
        assert_eq!(b.local_addr().unwrap(), addr);
    }

    #[tokio::test]
    async fn replaces_a_stale_unix_socket_but_not_a_file() {
        let dir = std::env::temp_dir().join(format!("netio-test-{}", std::process::id()));
        let path = dir.join("s.sock");
        let addr = ListenAddr::Unix(path.clone());
        drop(Listener::bind(&addr).unwrap());
        drop(Listener::bind(&addr).unwrap());
        let file = dir.join("plain");
        std::fs::write(&file, b"x").unwrap();
        assert!(Listener::bind(&ListenAddr::Unix(file)).is_err());
        std::fs::remove_dir_all(dir).unwrap();
    }
}
