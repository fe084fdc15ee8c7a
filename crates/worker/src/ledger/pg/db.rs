//! A PostgreSQL connection that comes back: the client is rebuilt when the server
//! closed it (a restart of PostgreSQL), at most once per [`RECONNECT_PAUSE`].

use super::super::LedgerError;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Mutex;
use tokio_postgres::{Client, NoTls};

/// Between two attempts to reconnect: a server that is down is not hammered.
const RECONNECT_PAUSE: Duration = Duration::from_millis(250);

/// See the module docs. Cheap to share: one client, pipelined by tokio-postgres.
pub(super) struct Db {
    url: String,
    what: &'static str,
    client: Mutex<Option<Arc<Client>>>,
    last_try: std::sync::Mutex<Option<Instant>>,
}

impl Db {
    pub(super) fn new(url: &str, what: &'static str) -> Db {
        Db {
            url: url.to_string(),
            what,
            client: Mutex::new(None),
            last_try: std::sync::Mutex::new(None),
        }
    }

    /// The open client, reconnecting first if it was lost.
    pub(super) async fn client(&self) -> Result<Arc<Client>, LedgerError> {
        let mut slot = self.client.lock().await;
        if let Some(c) = slot.as_ref() {
            if !c.is_closed() {
                return Ok(c.clone());
            }
            tracing::warn!("the {} connection to PostgreSQL was lost", self.what);
            *slot = None;
        }
        {
            let mut last = self.last_try.lock().unwrap_or_else(|e| e.into_inner());
            if last.is_some_and(|t| t.elapsed() < RECONNECT_PAUSE) {
                return Err(LedgerError("PostgreSQL is unreachable".into()));
            }
            *last = Some(Instant::now());
        }
        let client = connect(&self.url, self.what).await?;
        tracing::info!("connected to PostgreSQL ({})", self.what);
        *slot = Some(client.clone());
        Ok(client)
    }
}

/// Opens a client and runs its connection on the current runtime.
pub(super) async fn connect(url: &str, what: &'static str) -> Result<Arc<Client>, LedgerError> {
    let (client, connection) = tokio_postgres::connect(url, NoTls)
        .await
        .map_err(|e| LedgerError(format!("connecting to PostgreSQL ({what}): {e}")))?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!("PostgreSQL connection ({what}) ended: {e}");
        }
    });
    Ok(Arc::new(client))
}

/// A database error as the ledger reports it.
pub(super) fn err(what: &str) -> impl Fn(tokio_postgres::Error) -> LedgerError + '_ {
    move |e| LedgerError(format!("{what}: {e}"))
}
