//! Readiness probes: one `GET` over a fresh TCP or Unix connection, blocking, with a
//! short timeout. Deliberately minimal (the launcher only needs a status code) and
//! synchronous, so [`start`](fn@crate::start) can be called from any program, async or
//! not.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

/// Time allowed for one probe: connect, send, read the answer. A healthy local service
/// answers in well under a millisecond; a stuck one must not stall the wait loop.
const PROBE_TIMEOUT: Duration = Duration::from_millis(500);
/// Bytes of answer read at most: the status line is all that matters.
const MAX_ANSWER: u64 = 64 * 1024;

/// Status code of `GET path` at a TCP address, or `None` if there was no HTTP answer.
pub(crate) fn get_tcp(addr: SocketAddr, path: &str) -> Option<u16> {
    let stream = TcpStream::connect_timeout(&addr, PROBE_TIMEOUT).ok()?;
    stream.set_read_timeout(Some(PROBE_TIMEOUT)).ok()?;
    stream.set_write_timeout(Some(PROBE_TIMEOUT)).ok()?;
    exchange(stream, &addr.to_string(), path)
}

/// Status code of `GET path` on a Unix socket, or `None` if there was no HTTP answer.
pub(crate) fn get_unix(socket: &Path, path: &str) -> Option<u16> {
    let stream = UnixStream::connect(socket).ok()?;
    stream.set_read_timeout(Some(PROBE_TIMEOUT)).ok()?;
    stream.set_write_timeout(Some(PROBE_TIMEOUT)).ok()?;
    exchange(stream, "localhost", path)
}

fn exchange<S: Read + Write>(mut stream: S, host: &str, path: &str) -> Option<u16> {
    let request = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).ok()?;
    let mut answer = Vec::new();
    // A server may keep the connection open despite `Connection: close`; the status line
    // arrives first, so a timeout after some bytes is fine.
    let _ = stream.take(MAX_ANSWER).read_to_end(&mut answer);
    parse_status(&answer)
}

/// The status code of an HTTP/1.x answer.
fn parse_status(answer: &[u8]) -> Option<u16> {
    let line = answer.split(|&b| b == b'\n').next()?;
    let line = std::str::from_utf8(line).ok()?;
    let mut parts = line.split_whitespace();
    if !parts.next()?.starts_with("HTTP/1.") {
        return None;
    }
    parts.next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    #[test]
    fn parses_status_lines() {
        assert_eq!(parse_status(b"HTTP/1.1 200 OK\r\n\r\n"), Some(200));
        assert_eq!(
            parse_status(b"HTTP/1.0 503 Service Unavailable\r\n"),
            Some(503)
        );
        assert_eq!(parse_status(b"SSH-2.0\r\n"), None);
        assert_eq!(parse_status(b""), None);
    }

    #[test]
    fn probes_a_tcp_server() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut buf = [0u8; 1024];
            let n = s.read(&mut buf).unwrap();
            assert!(buf[..n].starts_with(b"GET /health HTTP/1.1\r\n"));
            s.write_all(b"HTTP/1.1 204 No Content\r\n\r\n").unwrap();
        });
        assert_eq!(get_tcp(addr, "/health"), Some(204));
        server.join().unwrap();
    }

    #[test]
    fn no_server_no_status() {
        let addr = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        assert_eq!(get_tcp(addr, "/health"), None);
        assert_eq!(get_unix(Path::new("/nonexistent/payroute.sock"), "/"), None);
    }
}
