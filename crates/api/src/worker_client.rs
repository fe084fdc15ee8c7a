//! The api's side of the IPC: one connection per worker, shared by every HTTP request
//! of this process. Requests are pipelined; replies come back in order and are matched
//! first-in first-out. Each call is typed: the reply a request expects, or a
//! [`WorkerError`]. With several workers (sharing a ledger), calls go round the
//! workers and move on to the next when one does not answer: 503 only when none does.

use ipc::{Connection, Reply, Request, SubmitStatus};
use model::{Cents, Summary, SummaryQuery};
use netio::UnixConn;
use std::collections::VecDeque;
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

/// Why the worker did not answer what was asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
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
    /// The worker could not do it (its ledger is unreachable): its words.
    #[error("{0}")]
    Failed(String),
}

/// Where a worker listens: a Unix socket path, or HOST:PORT (TCP).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WorkerAddr {
    Unix(PathBuf),
    Tcp(String),
}

impl FromStr for WorkerAddr {
    type Err = String;
    fn from_str(s: &str) -> Result<WorkerAddr, String> {
        let s = s.trim();
        if s.is_empty() {
            return Err("a worker address is empty".into());
        }
        if let Some(path) = s.strip_prefix("unix:") {
            return Ok(WorkerAddr::Unix(PathBuf::from(path)));
        }
        if s.starts_with('/') || s.starts_with('.') {
            return Ok(WorkerAddr::Unix(PathBuf::from(s)));
        }
        match s.rsplit_once(':') {
            Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => {
                Ok(WorkerAddr::Tcp(s.to_string()))
            }
            _ => Err(format!(
                "`{s}` is neither a socket path (/run/payroute/worker.sock) nor HOST:PORT"
            )),
        }
    }
}

impl fmt::Display for WorkerAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WorkerAddr::Unix(p) => write!(f, "{}", p.display()),
            WorkerAddr::Tcp(a) => write!(f, "{a}"),
        }
    }
}

struct Call {
    req: Request,
    reply: oneshot::Sender<Reply>,
}

/// A handle to the connection tasks, one per worker; cheap to clone.
#[derive(Clone)]
pub struct WorkerClient {
    lanes: Arc<[mpsc::Sender<Call>]>,
    /// The worker the next call starts with (round robin).
    next: Arc<AtomicUsize>,
    timeout: Duration,
}

/// Calls queued toward the worker at most; beyond it callers wait (back-pressure).
const QUEUE: usize = 4096;

/// Bytes of requests written in one go at most, so a flood of calls still reads
/// replies in between.
const MAX_BATCH_BYTES: usize = 64 * 1024;

impl WorkerClient {
    /// Starts one connection task per worker. Each connects on first use and
    /// reconnects after an error; calls made while a worker is down fail at once there.
    pub fn new(workers: Vec<WorkerAddr>, timeout: Duration) -> WorkerClient {
        let lanes: Vec<mpsc::Sender<Call>> = workers
            .into_iter()
            .map(|addr| {
                let (tx, rx) = mpsc::channel(QUEUE);
                tokio::spawn(connection_task(addr, rx));
                tx
            })
            .collect();
        tokio::spawn(keep_a_timer_due_within(
            (timeout / 2).max(Duration::from_millis(10)),
        ));
        WorkerClient {
            lanes: lanes.into(),
            next: Arc::new(AtomicUsize::new(0)),
            timeout,
        }
    }

    /// Hands a payment to the worker.
    pub async fn submit(&self, id: Uuid, amount: Cents) -> Result<SubmitStatus, WorkerError> {
        match self.call(Request::Submit { id, amount }).await? {
            Reply::Submit(status) => Ok(status),
            Reply::Failed(why) => Err(WorkerError::Failed(why)),
            Reply::Summary(_) | Reply::Purged | Reply::Text(_) => Err(WorkerError::Protocol),
        }
    }

    pub async fn summary(&self, q: SummaryQuery) -> Result<Summary, WorkerError> {
        match self.call(Request::Summary(q)).await? {
            Reply::Summary(s) => Ok(s),
            Reply::Failed(why) => Err(WorkerError::Failed(why)),
            Reply::Submit(_) | Reply::Purged | Reply::Text(_) => Err(WorkerError::Protocol),
        }
    }

    pub async fn purge(&self) -> Result<(), WorkerError> {
        match self.call(Request::Purge).await? {
            Reply::Purged => Ok(()),
            Reply::Failed(why) => Err(WorkerError::Failed(why)),
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
            Reply::Failed(why) => Err(WorkerError::Failed(why)),
            Reply::Submit(_) | Reply::Summary(_) | Reply::Purged => Err(WorkerError::Protocol),
        }
    }

    /// Sends one request and waits for its reply, going round the workers until one
    /// answers, or answers more than "my ledger is unreachable" (another worker may
    /// reach it). Moving on after a timeout is safe only because several workers share
    /// a ledger, which takes a payment once whichever worker is asked.
    async fn call(&self, req: Request) -> Result<Reply, WorkerError> {
        let n = self.lanes.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let mut last = Err(WorkerError::Unreachable);
        for k in 0..n {
            match self.call_one(&self.lanes[(start + k) % n], req).await {
                Ok(Reply::Failed(why)) => last = Ok(Reply::Failed(why)),
                Ok(Reply::Submit(SubmitStatus::Unavailable)) => {
                    last = Ok(Reply::Submit(SubmitStatus::Unavailable));
                }
                Ok(r) => return Ok(r),
                Err(e) => last = Err(e),
            }
        }
        last
    }

    async fn call_one(
        &self,
        lane: &mpsc::Sender<Call>,
        req: Request,
    ) -> Result<Reply, WorkerError> {
        let (reply, rx) = oneshot::channel();
        lane.send(Call { req, reply })
            .await
            .map_err(|_| WorkerError::Unreachable)?;
        match tokio::time::timeout(self.timeout, rx).await {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(_)) => Err(WorkerError::Unreachable),
            Err(_) => Err(WorkerError::Timeout),
        }
    }
}

/// Every call arms a timer (its timeout). A timer due before the runtime's next planned
/// wake-up makes tokio wake its own driver (an `eventfd` write and one more
/// `epoll_wait`), and at low load the next planned wake-up is an idle connection's,
/// seconds away: so every call paid those two system calls. A timer that always goes
/// off within `period` (less than the calls' timeout) keeps every call's deadline after
/// the planned wake-up. It costs a wake-up every `period`.
async fn keep_a_timer_due_within(period: Duration) {
    loop {
        tokio::time::sleep(period).await;
    }
}

/// A connected worker socket.
enum Stream {
    Unix(UnixConn),
    Tcp(TcpStream),
}

async fn connect(addr: &WorkerAddr) -> std::io::Result<Stream> {
    Ok(match addr {
        WorkerAddr::Unix(path) => Stream::Unix(UnixConn::connect(path).await?),
        WorkerAddr::Tcp(a) => {
            let s = TcpStream::connect(a).await?;
            // Requests are a few dozen bytes: Nagle would hold them back.
            s.set_nodelay(true)?;
            Stream::Tcp(s)
        }
    })
}

async fn connection_task(addr: WorkerAddr, mut rx: mpsc::Receiver<Call>) {
    let mut logged_down = false;
    while let Some(first) = rx.recv().await {
        match connect(&addr).await {
            Ok(stream) => {
                if logged_down {
                    tracing::info!("worker {addr} reachable again");
                    logged_down = false;
                }
                match stream {
                    Stream::Unix(s) => session(Connection::new(s), first, &mut rx).await,
                    Stream::Tcp(s) => session(Connection::new(s), first, &mut rx).await,
                }
            }
            Err(e) => {
                if !logged_down {
                    tracing::warn!("worker unreachable at {addr}: {e}");
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
async fn session<S>(mut conn: Connection<S>, first: Call, rx: &mut mpsc::Receiver<Call>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
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
