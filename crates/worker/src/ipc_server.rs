//! The worker's side of the IPC: the api instances' connections, served on a thread
//! of their own, each request answered from memory without waiting on anything.

use crate::config::AckAfter;
use crate::observe;
use crate::state::WorkerState;
use ipc::{Connection, Reply, Request, SubmitStatus};
use netio::CancellationToken;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{UnixListener, UnixStream};

/// Runs the IPC accept loop and every api connection on a dedicated thread with its
/// own single-threaded runtime, until `shutdown` is cancelled.
pub(crate) fn spawn_ipc_thread(
    listener: UnixListener,
    state: Arc<WorkerState>,
    shutdown: CancellationToken,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    // A tokio listener is tied to the runtime that registered it: hand it over as a
    // std listener and register it again on the new runtime.
    let std_listener = listener.into_std()?;
    let rt = netio::single_thread_runtime()?;
    std::thread::Builder::new()
        .name("payroute-ipc".into())
        .spawn(move || {
            rt.block_on(async move {
                let listener = match UnixListener::from_std(std_listener) {
                    Ok(l) => l,
                    Err(e) => {
                        tracing::error!("cannot serve the worker socket: {e}");
                        shutdown.cancel();
                        return;
                    }
                };
                loop {
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        accepted = listener.accept() => match accepted {
                            Ok((stream, _)) => {
                                tokio::spawn(serve_ipc(stream, state.clone()));
                            }
                            Err(e) => {
                                tracing::warn!("accept on the worker socket failed: {e}");
                                tokio::time::sleep(Duration::from_millis(20)).await;
                            }
                        }
                    }
                }
            })
        })
}

/// Serves one api connection: requests in, replies out in the same order, every batch
/// of pipelined requests answered with one write.
async fn serve_ipc(stream: UnixStream, state: Arc<WorkerState>) {
    let mut conn = Connection::new(stream);
    let mut requests: Vec<Request> = Vec::new();
    loop {
        if let Err(e) = conn.read_messages(&mut requests).await {
            if !matches!(e, ipc::ConnectionError::Closed) {
                tracing::warn!("closing an api connection: {e}");
            }
            return;
        }
        let mut accepted = 0usize;
        let mut replies: Vec<Reply> = requests
            .drain(..)
            .map(|req| handle(&state, req, &mut accepted))
            .collect();
        if accepted > 0 {
            state.wake.notify_one();
            if state.ack == AckAfter::Fsync {
                if let Err(e) = crate::dispatch::sync_log(&state).await {
                    // Written but not known to be on disk: the client is told to retry
                    // (a retry with the same correlationId gets the definitive answer).
                    tracing::error!("syncing accepted payments failed: {e}");
                    for r in &mut replies {
                        if *r == Reply::Submit(SubmitStatus::Accepted) {
                            *r = Reply::Submit(SubmitStatus::Unavailable);
                        }
                    }
                }
            }
        }
        for r in &replies {
            conn.queue(r);
        }
        if conn.flush().await.is_err() {
            return;
        }
    }
}

/// Answers one request from memory. `accepted` counts the payments accepted.
fn handle(state: &WorkerState, req: Request, accepted: &mut usize) -> Reply {
    match req {
        Request::Submit { id, amount } => {
            let status = state.core().submit(id, amount, state.mono());
            if status == SubmitStatus::Accepted {
                *accepted += 1;
            }
            Reply::Submit(status)
        }
        Request::Summary(q) => Reply::Summary(state.core().engine.summary(&q)),
        Request::Purge => {
            if let Err(e) = state.core().purge(state.mono()) {
                tracing::error!("emptying the payment log failed: {e}");
            }
            tracing::info!("purged every payment");
            Reply::Purged
        }
        Request::Health => Reply::Text(observe::health_json(state)),
        Request::Metrics => Reply::Text(observe::metrics_text(state)),
    }
}
