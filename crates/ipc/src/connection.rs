//! [`Connection`]: one api↔worker stream with its read and write buffers, so that both
//! ends deal in whole messages (the shape of mini-redis's `Connection`).

use crate::message::{split_frame, DecodeError, Message};
use std::io;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Bytes of buffer each way to begin with: a submit is 29 bytes on the wire, its reply
/// 6; a burst of a few hundred fits without growing.
const INITIAL_BUFFER: usize = 8 * 1024;

/// Why a connection can no longer be used. Either way the peer must reconnect.
#[derive(Debug, thiserror::Error)]
pub enum ConnectionError {
    #[error("the peer closed the connection")]
    Closed,
    #[error("reading from the peer failed: {0}")]
    Io(#[from] io::Error),
    #[error("the peer sent a bad frame: {0}")]
    Decode(#[from] DecodeError),
}

/// A framed stream (Unix or TCP). Messages are queued with [`Connection::queue`] and
/// leave together at the next [`Connection::flush`]; reads decode every whole frame
/// that arrived, so pipelined traffic is handled in batches.
#[derive(Debug)]
pub struct Connection<S> {
    stream: S,
    /// Bytes read and not yet decoded (at most a partial frame between reads).
    input: Vec<u8>,
    /// Encoded frames not yet written.
    output: Vec<u8>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Connection<S> {
    pub fn new(stream: S) -> Connection<S> {
        Connection {
            stream,
            input: Vec::with_capacity(INITIAL_BUFFER),
            output: Vec::with_capacity(INITIAL_BUFFER),
        }
    }

    /// Waits until at least one whole message has arrived and appends every whole
    /// message received so far to `out`, oldest first.
    ///
    /// Cancel-safe: its only `.await` is a single read into the connection's own
    /// buffer, so dropping it (in a `select!`) loses nothing.
    pub async fn read_messages<M: Message>(
        &mut self,
        out: &mut Vec<M>,
    ) -> Result<(), ConnectionError> {
        loop {
            let before = out.len();
            self.decode_into(out)?;
            if out.len() > before {
                return Ok(());
            }
            if self.stream.read_buf(&mut self.input).await? == 0 {
                return Err(ConnectionError::Closed);
            }
        }
    }

    fn decode_into<M: Message>(&mut self, out: &mut Vec<M>) -> Result<(), DecodeError> {
        let mut consumed = 0;
        while let Some((payload, n)) = split_frame(&self.input[consumed..])? {
            out.push(M::decode(payload)?);
            consumed += n;
        }
        self.input.drain(..consumed);
        Ok(())
    }

    /// Queues a message for the next [`Connection::flush`].
    pub fn queue<M: Message>(&mut self, message: &M) {
        message.encode(&mut self.output);
    }

    /// Bytes queued and not yet written.
    pub fn queued_bytes(&self) -> usize {
        self.output.len()
    }

    /// Writes everything queued, in one write when the socket takes it.
    pub async fn flush(&mut self) -> io::Result<()> {
        if self.output.is_empty() {
            return Ok(());
        }
        let result = self.stream.write_all(&self.output).await;
        self.output.clear();
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::{Reply, Request, SubmitStatus};
    use model::Cents;
    use uuid::Uuid;

    #[tokio::test]
    async fn messages_cross_in_batches_and_partial_frames_wait() {
        let (a, b) = tokio::io::duplex(64);
        let (mut a, mut b) = (Connection::new(a), Connection::new(b));
        let reqs: Vec<Request> = (0..20)
            .map(|n| Request::Submit {
                id: Uuid::from_u128(n),
                amount: Cents(n as i64),
            })
            .collect();
        for r in &reqs {
            a.queue(r);
        }
        assert_eq!(a.queued_bytes(), 20 * 29);
        // The duplex pipe holds 64 bytes: writing and reading must interleave.
        let writer = tokio::spawn(async move {
            a.flush().await.unwrap();
            a
        });
        let mut got: Vec<Request> = Vec::new();
        while got.len() < reqs.len() {
            b.read_messages(&mut got).await.unwrap();
        }
        assert_eq!(got, reqs);
        let mut a = writer.await.unwrap();
        b.queue(&Reply::Submit(SubmitStatus::Accepted));
        b.flush().await.unwrap();
        let mut replies: Vec<Reply> = Vec::new();
        a.read_messages(&mut replies).await.unwrap();
        assert_eq!(replies, vec![Reply::Submit(SubmitStatus::Accepted)]);
        drop(b);
        assert!(matches!(
            a.read_messages(&mut replies).await,
            Err(ConnectionError::Closed)
        ));
    }

    #[tokio::test]
    async fn a_bad_frame_is_an_error() {
        use tokio::io::AsyncWriteExt;
        let (mut raw, b) = tokio::io::duplex(64);
        let mut b = Connection::new(b);
        raw.write_all(&[1, 0, 0, 0, 99]).await.unwrap();
        let mut got: Vec<Request> = Vec::new();
        assert!(matches!(
            b.read_messages(&mut got).await,
            Err(ConnectionError::Decode(_))
        ));
    }
}
