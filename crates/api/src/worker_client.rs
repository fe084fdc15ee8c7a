//! The api's side of the IPC: one connection to the worker, shared by every HTTP
//! request of this process. Requests are pipelined; replies come back in order and are
//! matched first-in first-out. Each call is typed: the reply a request expects, or a
//! [`WorkerError`].

use ipc::{Connection, Reply, Request, SubmitStatus};
use model::{Cents, Summary, SummaryQuery};
use std::collections::VecDeque;
use std::path::PathBuf;
use std::time::Duration;
use tokio::net::UnixStream;
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

/// Why the worker did not answer what was asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WorkerError {
    #[error("the worker is unreachable")]
    Unreachable,
    /// The request reached the worker, or may have: for a payment, its fate is
    /// unknown to this client. A retry with the same correlationId is safe: it is
    /// answered as a duplicate if the first one was taken.
    #[error("the worker did not answer in time; the request may have been applied, retry with the same correlationId")]
    Timeout,
    /// The worker answered with a reply of the wrong kind (a bug on one side).
    #[error("the worker answered with an unexpected reply")]
    Protocol,
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

/// Bytes of requests written in one go at most, so a flood of calls still reads
/// replies in between.
const MAX_BATCH_BYTES: usize = 64 * 1024;

impl WorkerClient {
    /// Starts the connection task. It connects on first use and reconnects after an
    /// error; calls made while the worker is down fail at once.
    pub fn new(socket: PathBuf, timeout: Duration) -> WorkerClient {
        let (tx, rx) = mpsc::channel(QUEUE);
        tokio::spawn(connection_task(socket, rx));
        WorkerClient { tx, timeout }
    }

    /// Hands a payment to the worker.
    pub async fn submit(&self, id: Uuid, amount: Cents) -> Result<SubmitStatus, WorkerError> {
        match self.call(Request::Submit { id, amount }).await? {
            Reply::Submit(status) => Ok(status),
            Reply::Summary(_) | Reply::Purged | Reply::Text(_) => Err(WorkerError::Protocol),
        }
    }

    pub async fn summary(&self, q: SummaryQuery) -> Result<Summary, WorkerError> {
        match self.call(Request::Summary(q)).await? {
            Reply::Summary(s) => Ok(s),
            Reply::Submit(_) | Reply::Purged | Reply::Text(_) => Err(WorkerError::Protocol),
        }
    }

    pub async fn purge(&self) -> Result<(), WorkerError> {
        match self.call(Request::Purge).await? {
            Reply::Purged => Ok(()),
            Reply::Submit(_) | Reply::Summary(_) | Reply::Text(_) => Err(WorkerError::Protocol),
        }
    }

    /// The worker's `/health` JSON.
    pub async fn health(&self) -> Result<String, WorkerError> {
        self.text(Request::Health).await
    }

    /// The worker's Prometheus text.
    pub async fn metrics(&self) -> Result<String, WorkerError> {
        self.text(Request::Metrics).await
    }

    async fn text(&self, req: Request) -> Result<String, WorkerError> {
        match self.call(req).await? {
            Reply::Text(t) => Ok(t),
            Reply::Submit(_) | Reply::Summary(_) | Reply::Purged => Err(WorkerError::Protocol),
        }
    }

    /// Sends one request and waits for its reply.
    async fn call(&self, req: Request) -> Result<Reply, WorkerError> {
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
                session(Connection::new(stream), first, &mut rx).await;
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
async fn session(mut conn: Connection<UnixStream>, first: Call, rx: &mut mpsc::Receiver<Call>) {
    let mut pending: VecDeque<oneshot::Sender<Reply>> = VecDeque::new();
    let mut replies: Vec<Reply> = Vec::new();
    conn.queue(&first.req);
    pending.push_back(first.reply);
    loop {
        if conn.flush().await.is_err() {
            return;
        }
        tokio::select! {
            call = rx.recv() => {
                let Some(call) = call else { return };
                conn.queue(&call.req);
                pending.push_back(call.reply);
                // Batch whatever else is already waiting into the same write.
                while conn.queued_bytes() < MAX_BATCH_BYTES {
                    let Ok(call) = rx.try_recv() else { break };
                    conn.queue(&call.req);
                    pending.push_back(call.reply);
                }
            }
            read = conn.read_messages(&mut replies) => {
                if let Err(e) = read {
                    tracing::warn!("worker connection lost: {e}; reconnecting");
                    return;
                }
                for reply in replies.drain(..) {
                    match pending.pop_front() {
                        // The caller may have timed out and gone: fine.
                        Some(tx) => { let _ = tx.send(reply); }
                        None => {
                            tracing::warn!("unexpected reply from the worker; reconnecting");
                            return;
                        }
                    }
                }
            }
        }
    }
}
