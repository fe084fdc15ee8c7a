//! Each answer the worker can give to a submit becomes the HTTP status the README
//! promises, over real sockets: a fake worker on a Unix socket, the real api on TCP.

use ipc::{Connection, Reply, Request, SubmitStatus};
use netio::{CancellationToken, Listener};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UnixListener};

/// A worker that answers every submit with `status`.
async fn fake_worker(listener: UnixListener, status: SubmitStatus) {
    while let Ok((stream, _)) = listener.accept().await {
        tokio::spawn(async move {
            let mut conn = Connection::new(stream);
            let mut reqs: Vec<Request> = Vec::new();
            while conn.read_messages(&mut reqs).await.is_ok() {
                for r in reqs.drain(..) {
                    let reply = match r {
                        Request::Submit { .. } => Reply::Submit(status),
                        _ => Reply::Purged,
                    };
                    conn.queue(&reply);
                }
                if conn.flush().await.is_err() {
                    return;
                }
            }
        });
    }
}

async fn post_status(addr: std::net::SocketAddr) -> (u16, String) {
    let body = r#"{"correlationId":"4a7901b8-7d26-4d9d-aa19-4dc1c7cf60b3","amount":19.90}"#;
    post(addr, "/payments", "", body).await
}

async fn post(addr: std::net::SocketAddr, path: &str, headers: &str, body: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n{headers}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    let status = out[9..12].parse().unwrap();
    let body = out.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
    (status, body)
}

#[tokio::test]
async fn every_submit_status_has_its_http_answer() {
    let cases = [
        (SubmitStatus::Accepted, 202, ""),
        (SubmitStatus::Duplicate, 200, "already accepted"),
        (SubmitStatus::Conflict, 409, "another amount"),
        (SubmitStatus::QueueFull, 503, "queue is full"),
        // The worker could not make the payment durable (disk full): a 503 the client
        // may retry, never a 500.
        (SubmitStatus::Unavailable, 503, "durably"),
    ];
    for (status, want, text) in cases {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("worker.sock");
        let worker = tokio::spawn(fake_worker(UnixListener::bind(&socket).unwrap(), status));
        let listener = Listener::bind_shared(&"127.0.0.1:0".parse().unwrap()).unwrap();
        let netio::ListenAddr::Tcp(addr) = listener.local_addr().unwrap() else {
            unreachable!()
        };
        let shutdown = CancellationToken::new();
        let api = tokio::spawn(api::serve(
            api::Config::new(socket),
            listener,
            shutdown.clone(),
        ));
        let (got, body) = post_status(addr).await;
        assert_eq!(got, want, "{status:?}: {body}");
        assert!(body.contains(text), "{status:?}: {body}");
        shutdown.cancel();
        api.await.unwrap().unwrap();
        worker.abort();
    }
}

#[tokio::test]
async fn purge_needs_the_admin_token_when_one_is_set() {
    for token in [None, Some("s3cret")] {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("worker.sock");
        let worker = tokio::spawn(fake_worker(
            UnixListener::bind(&socket).unwrap(),
            SubmitStatus::Accepted,
        ));
        let listener = Listener::bind(&"127.0.0.1:0".parse().unwrap()).unwrap();
        let netio::ListenAddr::Tcp(addr) = listener.local_addr().unwrap() else {
            unreachable!()
        };
        let shutdown = CancellationToken::new();
        let config = api::Config {
            admin_token: token.map(String::from),
            ..api::Config::new(socket)
        };
        let api = tokio::spawn(api::serve(config, listener, shutdown.clone()));
        let (bare, _) = post(addr, "/purge-payments", "", "").await;
        let (wrong, _) = post(addr, "/purge-payments", "X-Payroute-Token: nope\r\n", "").await;
        let (right, _) = post(addr, "/purge-payments", "X-Payroute-Token: s3cret\r\n", "").await;
        match token {
            None => assert_eq!((bare, wrong, right), (200, 200, 200)),
            Some(_) => assert_eq!((bare, wrong, right), (401, 401, 200)),
        }
        shutdown.cancel();
        api.await.unwrap().unwrap();
        worker.abort();
    }
}
