//! The client against scripted servers on real sockets: framing, reuse, and what each
//! failure is called.

use super::*;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

fn cfg() -> PoolConfig {
    PoolConfig {
        connect_timeout: Duration::from_secs(1),
        max_idle: 16,
        idle_timeout: Duration::from_secs(30),
    }
}

/// What the server does after it read a request.
#[derive(Clone, Copy)]
enum Then {
    /// Writes these pieces, pausing between them, and keeps the connection.
    Answer(&'static [&'static [u8]]),
    /// The same, then closes the connection.
    AnswerAndClose(&'static [&'static [u8]]),
    /// Closes without answering.
    Close,
}

/// A server on 127.0.0.1 that plays `script`, one step per request, whatever the
/// connection; counts the connections it accepted. Stops with the runtime.
async fn server(script: Vec<Then>) -> (String, Arc<AtomicUsize>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", l.local_addr().unwrap());
    let accepted = Arc::new(AtomicUsize::new(0));
    let (count, script) = (accepted.clone(), Arc::new(Mutex::new(script.into_iter())));
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            let script = script.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                loop {
                    // One request: its head, then its Content-Length body.
                    let end = loop {
                        if let Some(end) = request_end(&buf) {
                            break end;
                        }
                        let mut chunk = [0u8; 1024];
                        match s.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    };
                    buf.drain(..end);
                    let step = script.lock().unwrap().next();
                    let (pieces, close): (&[&[u8]], bool) = match step {
                        Some(Then::Answer(p)) => (p, false),
                        Some(Then::AnswerAndClose(p)) => (p, true),
                        Some(Then::Close) | None => return,
                    };
                    for p in pieces {
                        s.write_all(p).await.unwrap();
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                    if close {
                        return;
                    }
                }
            });
        }
    });
    (base, accepted)
}

/// Where the first whole request in `buf` ends.
fn request_end(buf: &[u8]) -> Option<usize> {
    let head = buf.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let text = std::str::from_utf8(&buf[..head]).ok()?.to_ascii_lowercase();
    let len = text
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .map_or(0, |v| v.trim().parse::<usize>().unwrap());
    (buf.len() >= head + len).then_some(head + len)
}

const OK: &[&[u8]] = &[b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"];

async fn post(o: &Origin) -> Result<Answer, CallError> {
    o.call(
        "POST",
        "/payments",
        Some(("application/json", b"{\"a\":1}")),
    )
    .await
}

#[tokio::test]
async fn keep_alive_connections_are_reused() {
    let (base, accepted) = server(vec![Then::Answer(OK); 3]).await;
    let o = Origin::new(&base, cfg()).unwrap();
    for _ in 0..3 {
        let a = post(&o).await.unwrap();
        assert_eq!((a.status, a.body.as_slice()), (200, &b"ok"[..]));
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
    assert_eq!(o.idle_connections(), 1);
}

#[tokio::test]
async fn answers_split_anywhere_chunked_or_not_are_read_whole() {
    let script = vec![
        Then::Answer(&[
            b"HTTP/1.1 201 Cr",
            b"eated\r\nContent-Len",
            b"gth: 5\r\n\r\nhel",
            b"lo",
        ]),
        Then::Answer(&[
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n",
            b"2\r\nde\r\n0\r\n\r\n",
        ]),
        Then::Answer(&[b"HTTP/1.1 429 Too Many\r\nRetry-After: 7\r\nContent-Length: 0\r\n\r\n"]),
        Then::Answer(&[b"HTTP/1.1 204 No Content\r\n\r\n"]),
        Then::AnswerAndClose(&[b"HTTP/1.1 404 Not Found\r\n\r\nuntil the ", b"end"]),
    ];
    let (base, accepted) = server(script).await;
    let o = Origin::new(&base, cfg()).unwrap();
    let a = post(&o).await.unwrap();
    assert_eq!((a.status, a.body.as_slice()), (201, &b"hello"[..]));
    let a = o.call("GET", "/x", None).await.unwrap();
    assert_eq!((a.status, a.body.as_slice()), (200, &b"abcde"[..]));
    let a = o.call("GET", "/x", None).await.unwrap();
    assert_eq!((a.status, a.retry_after), (429, Some(7)));
    let a = o.call("GET", "/x", None).await.unwrap();
    assert_eq!((a.status, a.body.len()), (204, 0));
    let a = o.call("GET", "/x", None).await.unwrap();
    assert_eq!((a.status, a.body.as_slice()), (404, &b"until the end"[..]));
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
    assert_eq!(o.idle_connections(), 0, "read to its end: not reusable");
}

#[tokio::test]
async fn a_connection_the_server_closed_is_not_written_to() {
    let script = vec![
        Then::AnswerAndClose(OK),
        Then::Answer(&[b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok"]),
        Then::Answer(OK),
    ];
    let (base, accepted) = server(script).await;
    let o = Origin::new(&base, cfg()).unwrap();
    post(&o).await.unwrap();
    // The server closed it without saying so; the end of file reaches the pool first.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(o.idle_connections(), 1);
    post(&o)
        .await
        .expect("a fresh connection, not the closed one");
    // `Connection: close` is honoured: that connection is not kept.
    assert_eq!(o.idle_connections(), 0);
    post(&o).await.unwrap();
    assert_eq!(accepted.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn idle_connections_past_the_idle_timeout_are_not_reused() {
    let (base, accepted) = server(vec![Then::Answer(OK); 2]).await;
    let o = Origin::new(
        &base,
        PoolConfig {
            idle_timeout: Duration::ZERO,
            ..cfg()
        },
    )
    .unwrap();
    post(&o).await.unwrap();
    post(&o).await.unwrap();
    assert_eq!(accepted.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn nothing_sent_and_fate_unknown_are_told_apart() {
    // Refused: nothing reached a server.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let o = Origin::new(&format!("http://127.0.0.1:{port}"), cfg()).unwrap();
    let e = post(&o).await.unwrap_err();
    assert!(e.is_connect(), "{e}");
    // Read, then closed without an answer: the server may have acted on it.
    let (base, _) = server(vec![Then::Close]).await;
    let e = post(&Origin::new(&base, cfg()).unwrap()).await.unwrap_err();
    assert!(matches!(e, CallError::Lost(_)), "{e}");
    // Not HTTP: the same.
    let (base, _) = server(vec![Then::AnswerAndClose(&[b"SSH-2.0-OpenSSH\r\n\r\n"])]).await;
    let e = post(&Origin::new(&base, cfg()).unwrap()).await.unwrap_err();
    assert!(!e.is_connect(), "{e}");
}

#[test]
fn base_urls() {
    let a = |s: &str| Origin::new(s, cfg()).map(|o| o.authority().to_string());
    assert_eq!(a("http://h:8080").unwrap(), "h:8080");
    assert_eq!(a("http://h/").unwrap(), "h:80");
    assert_eq!(a("http://[::1]:81").unwrap(), "[::1]:81");
    assert_eq!(a("http://[::1]").unwrap(), "[::1]:80");
    assert!(a("https://h").is_err());
    assert!(a("http://h/payments").is_err());
    assert!(a("http://").is_err());
}
