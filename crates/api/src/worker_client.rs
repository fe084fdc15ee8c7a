//! The api's side of the IPC: one Unix socket connection to the worker, shared by every
//! HTTP request of this process. Requests are pipelined; replies come back in order
//! and are matched first-in first-out.

use model::ipc::{split_frame, Reply, Request};
use std::collections::VecDeque;
use std::path::PathBuf;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio::sync::{mpsc, oneshot};

/// Why the worker did not answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WorkerError {
    #[error("the worker is unreachable")]
    Unreachable,
    /// The request reached the worker, or may have: for a payment, its fate is
    /// unknown to this client. A retry with the same correlationId is safe: it is
    /// answered as a duplicate if the first one was taken.
    #[error("the worker did not answer in time; the request may have been applied, retry with the same correlationId")]
    Timeout,
}

struct Call {
    req: Request,
    reply: oneshot::Sender<Reply>,
}

/// A handle to the connection task; cheap to clone.
#[derive(Clone)]
pub struct WorkerClient {
    tx: mpsc::Sender<Call>,
    timeout: Duration,
}

/// Calls queued toward the worker at most; beyond it callers wait (back-pressure).
const QUEUE: usize = 4096;

impl WorkerClient {
    /// Starts the connection task. It connects on first use and reconnects after an
    /// error; calls made while the worker is down fail at once.
    pub fn new(socket: PathBuf, timeout: Duration) -> WorkerClient {
        let (tx, rx) = mpsc::channel(QUEUE);
        tokio::spawn(connection_task(socket, rx));
        WorkerClient { tx, timeout }
    }

    /// Sends one request and waits for its reply.
    pub async fn call(&self, req: Request) -> Result<Reply, WorkerError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Call { req, reply })
            .await
            .map_err(|_| WorkerError::Unreachable)?;
        match tokio::time::timeout(self.timeout, rx).await {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(_)) => Err(WorkerError::Unreachable),
            Err(_) => Err(WorkerError::Timeout),
        }
    }
}

async fn connection_task(socket: PathBuf, mut rx: mpsc::Receiver<Call>) {
    let mut logged_down = false;
    while let Some(first) = rx.recv().await {
        match UnixStream::connect(&socket).await {
            Ok(stream) => {
                if logged_down {
                    tracing::info!("worker reachable again");
                    logged_down = false;
                }
                session(stream, first, &mut rx).await;
            }
            Err(e) => {
                if !logged_down {
                    tracing::warn!("worker unreachable at {}: {e}", socket.display());
                    logged_down = true;
                }
                // Dropping the call's sender fails it; fail what is already queued too,
                // rather than make each wait for its own connect attempt.
                drop(first);
                while rx.try_recv().is_ok() {}
            }
        }
    }
}

/// Serves calls over one connection until it breaks. Calls in flight when it breaks
/// fail (their senders drop): a payment may then have been accepted without the client
/// knowing; a retry is answered as a duplicate, never counted twice.
async fn session(stream: UnixStream, first: Call, rx: &mut mpsc::Receiver<Call>) {
    let (mut rd, mut wr) = stream.into_split();
    let mut pending: VecDeque<oneshot::Sender<Reply>> = VecDeque::new();
    let mut out = Vec::with_capacity(4096);
    let mut inbuf = Vec::with_capacity(4096);
    first.req.encode(&mut out);
    pending.push_back(first.reply);
    loop {
        if !out.is_empty() {
            if wr.write_all(&out).await.is_err() {
                return;
            }
            out.clear();
        }
        tokio::select! {
            call = rx.recv() => {
                let Some(call) = call else { return };
                call.req.encode(&mut out);
                pending.push_back(call.reply);
                // Batch whatever else is already waiting into the same write.
                while let Ok(call) = rx.try_recv() {
                    call.req.encode(&mut out);
                    pending.push_back(call.reply);
                    if out.len() > 64 * 1024 {
                        break;
                    }
                }
            }
            n = rd.read_buf(&mut inbuf) => {
                match n {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
                let mut consumed = 0;
                while let Ok(Some((payload, n))) = split_frame(&inbuf[consumed..]) {
                    consumed += n;
                    let Ok(reply) = Reply::decode(payload) else {
                        tracing::warn!("malformed reply from the worker; reconnecting");
                        return;
                    };
                    match pending.pop_front() {
                        // The caller may have timed out and gone: fine.
                        Some(tx) => { let _ = tx.send(reply); }
                        None => {
                            tracing::warn!("unexpected reply from the worker; reconnecting");
                            return;
                        }
                    }
                }
                if split_frame(&inbuf[consumed..]).is_err() {
                    tracing::warn!("oversized frame from the worker; reconnecting");
                    return;
                }
                inbuf.drain(..consumed);
            }
        }
    }
}
