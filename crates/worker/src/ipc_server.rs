//! The worker's side of the IPC: the api instances' connections, served on a thread
//! of their own, each request answered from memory without waiting on anything.

use crate::ledger::Ledger;
use crate::observe;
use crate::state::WorkerState;
use ipc::{Connection, Reply, Request, SubmitStatus};
use netio::CancellationToken;
use netio::UnixConn;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream, UnixListener};

/// Where the worker listens for api connections: a Unix socket (api and worker on one
/// host) or TCP (workers on other hosts).
#[derive(Debug)]
pub enum IpcListener {
    Unix(UnixListener),
    Tcp(TcpListener),
}

impl From<UnixListener> for IpcListener {
    fn from(l: UnixListener) -> IpcListener {
        IpcListener::Unix(l)
    }
}

impl From<TcpListener> for IpcListener {
    fn from(l: TcpListener) -> IpcListener {
        IpcListener::Tcp(l)
    }
}

/// A listener handed from one runtime to another (a tokio listener is tied to the
/// runtime that registered it).
enum StdListener {
    Unix(std::os::unix::net::UnixListener),
    Tcp(std::net::TcpListener),
}

impl StdListener {
    fn of(l: IpcListener) -> std::io::Result<StdListener> {
        Ok(match l {
            IpcListener::Unix(l) => StdListener::Unix(l.into_std()?),
            IpcListener::Tcp(l) => StdListener::Tcp(l.into_std()?),
        })
    }

    fn register(self) -> std::io::Result<IpcListener> {
        Ok(match self {
            StdListener::Unix(l) => IpcListener::Unix(UnixListener::from_std(l)?),
            StdListener::Tcp(l) => IpcListener::Tcp(TcpListener::from_std(l)?),
        })
    }
}

/// Runs the IPC accept loop and every api connection on a dedicated thread with its
/// own single-threaded runtime, until `shutdown` is cancelled.
pub(crate) fn spawn_ipc_thread<L: Ledger>(
    listener: IpcListener,
    state: Arc<WorkerState<L>>,
    shutdown: CancellationToken,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    let std_listener = StdListener::of(listener)?;
    let rt = netio::single_thread_runtime()?;
    std::thread::Builder::new()
        .name("payroute-ipc".into())
        .spawn(move || {
            rt.block_on(async move {
                let listener = match std_listener.register() {
                    Ok(l) => l,
                    Err(e) => {
                        tracing::error!("cannot serve the worker socket: {e}");
                        shutdown.cancel();
                        return;
                    }
                };
                loop {
                    let accepted = tokio::select! {
                        _ = shutdown.cancelled() => break,
                        a = accept(&listener) => a,
                    };
                    if let Err(e) = accepted.map(|conn| spawn_conn(conn, &state)) {
                        tracing::warn!("accept on the worker socket failed: {e}");
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
            })
        })
}

enum Stream {
    Unix(UnixConn),
    Tcp(TcpStream),
}

async fn accept(l: &IpcListener) -> std::io::Result<Stream> {
    Ok(match l {
        IpcListener::Unix(l) => Stream::Unix(UnixConn::new(l.accept().await?.0)?),
        IpcListener::Tcp(l) => {
            let (s, _) = l.accept().await?;
            // Replies are a few bytes: Nagle would hold them back.
            s.set_nodelay(true)?;
            Stream::Tcp(s)
        }
    })
}

fn spawn_conn<L: Ledger>(conn: Stream, state: &Arc<WorkerState<L>>) {
    match conn {
        Stream::Unix(s) => tokio::spawn(serve_ipc(s, state.clone())),
        Stream::Tcp(s) => tokio::spawn(serve_ipc(s, state.clone())),
    };
}

/// Serves one api connection: requests in, replies out in the same order, every batch
/// of pipelined requests answered with one write. Consecutive submits go to the ledger
/// together (one durable write for all of them).
async fn serve_ipc<L: Ledger, S>(stream: S, state: Arc<WorkerState<L>>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let mut conn = Connection::new(stream);
    let mut requests: Vec<Request> = Vec::new();
    let mut submits: Vec<(uuid::Uuid, model::Cents)> = Vec::new();
    loop {
        if let Err(e) = conn.read_messages(&mut requests).await {
            if !matches!(e, ipc::ConnectionError::Closed) {
                tracing::warn!("closing an api connection: {e}");
            }
            return;
        }
        for req in requests.drain(..) {
            if let Request::Submit { id, amount } = req {
                submits.push((id, amount));
                continue;
            }
            submit_group(&state, &mut submits, &mut conn).await;
            conn.queue(&answer(&state, req).await);
        }
        submit_group(&state, &mut submits, &mut conn).await;
        if conn.flush().await.is_err() {
            return;
        }
    }
}

/// Hands the submits gathered so far to the ledger and queues their replies.
async fn submit_group<L: Ledger, S>(
    state: &WorkerState<L>,
    submits: &mut Vec<(uuid::Uuid, model::Cents)>,
    conn: &mut Connection<S>,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    if submits.is_empty() {
        return;
    }
    let statuses = state.ledger.submit(submits).await;
    state.wake.notify_one();
    for k in 0..submits.len() {
        let status = statuses
            .get(k)
            .copied()
            .unwrap_or(SubmitStatus::Unavailable);
        conn.queue(&Reply::Submit(status));
    }
    submits.clear();
}

/// Answers a request other than a submit.
async fn answer<L: Ledger>(state: &WorkerState<L>, req: Request) -> Reply {
    match req {
        Request::Submit { .. } => Reply::Failed("a submit is answered in its group".into()),
        Request::Summary(q) => match state.ledger.summary(q).await {
            Ok(s) => Reply::Summary(s),
            Err(e) => Reply::Failed(format!("the summary is unavailable: {e}")),
        },
        Request::Purge => match state.ledger.purge().await {
            Ok(()) => {
                tracing::info!("purged every payment");
                Reply::Purged
            }
            Err(e) => {
                tracing::error!("purge failed: {e}");
                Reply::Failed(format!("the purge failed: {e}"))
            }
        },
        Request::Health => Reply::Text(observe::health_json(state)),
        Request::Metrics => Reply::Text(observe::metrics_text(state)),
    }
}
