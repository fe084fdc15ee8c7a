//! One HTTP/1.1 connection: read what arrives, answer every whole request in order
//! (pipelined ones included), write the answers of a batch in one write, wait for the
//! next request holding no buffer.
//!
//! Its life: wait until the socket is readable (idle: no buffer held, the header
//! timeout running, a graceful stop closes it) → borrow a small buffer and read →
//! [`request::decode`] says whether a request is whole → the handler answers it into the
//! write buffer → the next buffered request, if any → write the batch, give both buffers
//! back → wait again. A buffer grows for a larger request only within the server's
//! [`crate::buffers::Budget`], and is given back after it.

use crate::buffers::{self, SMALL};
use crate::listen::Socket;
use crate::request::{self, DecodeError, Head, Progress, Request};
use crate::response::{self, Connection};
use crate::server::{Handler, Refusal, Shared};
use http::Method;
use std::io;
use std::ops::Range;
use std::pin::Pin;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::time::{Instant, Sleep};

/// Answers buffered past this many bytes are written before the next pipelined request
/// is answered, so a client that pipelines hundreds of requests does not make the
/// write buffer grow with them.
const FLUSH_AT: usize = 4 * SMALL;

/// After the answer that ends a connection, bytes the client still sends are read and
/// dropped for this long (at most [`LINGER_BYTES`]): closing a socket with unread bytes
/// resets it, and the reset can destroy the answer before the client reads it.
const LINGER: Duration = Duration::from_secs(1);
const LINGER_BYTES: usize = 64 * 1024;

/// The interim answer to `Expect: 100-continue`.
const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// Serves one connection until it closes.
pub(crate) async fn serve<S: Socket, H: Handler>(io: S, shared: &Shared<H>) {
    let mut c = Conn::new(io, shared);
    if let End::Linger = c.run().await {
        c.linger().await;
    }
}

/// Answers `503` to a connection beyond the cap, and closes it.
pub(crate) async fn refuse<S: Socket, H: Handler>(io: S, shared: &Shared<H>) {
    let mut c = Conn::new(io, shared);
    if let End::Linger = c.refuse(Refusal::Overloaded).await {
        c.linger().await;
    }
}

struct Conn<'s, S, H> {
    io: S,
    shared: &'s Shared<H>,
    /// Bytes received and not yet answered; no allocation while idle.
    rbuf: Vec<u8>,
    /// Answers not yet written; no allocation between batches.
    wbuf: Vec<u8>,
    /// Bytes of `rbuf` beyond [`SMALL`], taken from the budget.
    held: usize,
}

enum End {
    /// Close now: the peer is gone, or has nothing more to say.
    Close,
    /// An answer that ends the connection was written: close after [`Conn::linger`].
    Linger,
}

/// What waiting for bytes gave.
enum Fill {
    Read,
    Closed,
    TimedOut,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Phase {
    Head,
    Body,
}

impl<'s, S: Socket, H: Handler> Conn<'s, S, H> {
    fn new(io: S, shared: &'s Shared<H>) -> Self {
        Conn {
            io,
            shared,
            rbuf: Vec::new(),
            wbuf: Vec::new(),
            held: 0,
        }
    }

    async fn run(&mut self) -> End {
        let limits = self.shared.request_limits;
        // One timer for the connection's life, for the phase being waited for: a whole
        // head within the header timeout of the previous answer, then its body within
        // the body timeout. `armed` is the phase it was set for.
        let timer = tokio::time::sleep_until(Instant::now());
        tokio::pin!(timer);
        let mut armed: Option<Phase> = None;
        let mut continued = false;
        loop {
            let progress = if self.rbuf.is_empty() {
                Ok(Progress::Head)
            } else {
                request::decode(&mut self.rbuf, &limits)
            };
            let (phase, room) = match progress {
                Err(e) => return self.refuse(refusal(e, limits.max_body)).await,
                Ok(Progress::Complete {
                    head,
                    body,
                    consumed,
                }) => {
                    (armed, continued) = (None, false);
                    match self.answer(head, body, consumed).await {
                        Some(end) => return end,
                        None => continue,
                    }
                }
                Ok(Progress::Head) => (Phase::Head, Room::Grow(limits.max_head)),
                Ok(Progress::Body { head, whole }) => {
                    if head.expect_continue && !continued {
                        continued = true;
                        self.wbuf_mut().extend_from_slice(CONTINUE);
                    }
                    let room = match whole {
                        Some(n) => Room::Exactly(n),
                        None => Room::Grow(head.len + request::max_chunked_wire(limits.max_body)),
                    };
                    (Phase::Body, room)
                }
            };
            // Nothing whole is left: the batch's answers go out before waiting.
            if !self.flush().await {
                return End::Close;
            }
            if armed != Some(phase) {
                armed = Some(phase);
                arm(timer.as_mut(), self.shared.timeout(phase == Phase::Head));
            }
            if !self.make_room(room) {
                return self.refuse(Refusal::Overloaded).await;
            }
            let idle = phase == Phase::Head && self.rbuf.is_empty();
            match self.fill(timer.as_mut(), idle).await {
                Fill::Read => {}
                Fill::Closed => return End::Close,
                // An idle keep-alive connection is closed quietly.
                Fill::TimedOut if self.rbuf.is_empty() => return End::Close,
                Fill::TimedOut if phase == Phase::Head => {
                    return self.refuse(Refusal::HeadTimeout).await
                }
                Fill::TimedOut => return self.refuse(Refusal::BodyTimeout).await,
            }
        }
    }

    /// Answers one whole request into the write buffer; `Some` when the connection ends.
    async fn answer(&mut self, head: Head, body: Range<usize>, consumed: usize) -> Option<End> {
        let shared = self.shared;
        let resp = shared
            .handler
            .call(&Request::new(&head, &self.rbuf, body))
            .await;
        // A stop while the handler worked: this answer is the last.
        let keep = head.keep_alive && !shared.shutdown.is_cancelled();
        let connection = match (keep, head.http10) {
            (false, _) => Connection::Close,
            (true, true) => Connection::KeepAlive,
            (true, false) => Connection::Default,
        };
        let head_only = head.method == Method::HEAD;
        response::encode(&resp, head_only, connection, self.wbuf_mut());
        self.consume(consumed);
        if !keep {
            return Some(if self.flush().await {
                End::Linger
            } else {
                End::Close
            });
        }
        if self.wbuf.len() >= FLUSH_AT && !self.flush().await {
            return Some(End::Close);
        }
        None
    }

    /// Answers a request the server refuses itself, and ends the connection.
    async fn refuse(&mut self, r: Refusal) -> End {
        self.shared.stats.count_refused_request();
        let resp = self.shared.handler.refusal(r);
        response::encode(&resp, false, Connection::Close, self.wbuf_mut());
        if self.flush().await {
            End::Linger
        } else {
            End::Close
        }
    }

    fn wbuf_mut(&mut self) -> &mut Vec<u8> {
        if self.wbuf.capacity() == 0 {
            self.wbuf = buffers::take();
        }
        &mut self.wbuf
    }

    /// Drops the bytes of the request just answered; gives the read buffer back when
    /// nothing else is in it, and shrinks it when a larger request made it grow.
    fn consume(&mut self, n: usize) {
        self.rbuf.drain(..n);
        if self.rbuf.is_empty() {
            buffers::give(std::mem::take(&mut self.rbuf));
        } else if self.rbuf.capacity() > SMALL && self.rbuf.len() <= SMALL {
            self.rbuf.shrink_to(SMALL);
        }
        let now = self.rbuf.capacity().saturating_sub(SMALL);
        if now < self.held {
            self.shared.stats.budget.give(self.held - now);
            self.held = now;
        }
    }

    /// Makes room in the read buffer for the next read: `false` when the bytes it
    /// would take are not left in the budget.
    fn make_room(&mut self, room: Room) -> bool {
        let (len, cap) = (self.rbuf.len(), self.rbuf.capacity());
        let want = match room {
            // Nothing buffered: `fill` borrows a small buffer once bytes are there.
            _ if cap == 0 => return true,
            Room::Exactly(n) if n > cap => n,
            Room::Grow(limit) if len == cap => (cap * 2).min(limit).max(len + 1),
            _ => return true,
        };
        let extra = want.saturating_sub(SMALL).saturating_sub(self.held);
        if !self.shared.stats.budget.take(extra) {
            return false;
        }
        self.held += extra;
        self.rbuf.reserve_exact(want - len);
        true
    }

    /// Waits for bytes until `timer` goes off and reads them; while `idle`, a graceful
    /// stop ends the wait.
    async fn fill(&mut self, mut timer: Pin<&mut Sleep>, idle: bool) -> Fill {
        loop {
            let ready = tokio::select! {
                biased;
                r = self.io.readable() => r,
                () = &mut timer => return Fill::TimedOut,
                () = self.shared.shutdown.cancelled(), if idle => return Fill::Closed,
            };
            if ready.is_err() {
                return Fill::Closed;
            }
            if self.rbuf.capacity() == 0 {
                self.rbuf = buffers::take();
            }
            debug_assert!(self.rbuf.len() < self.rbuf.capacity());
            match self.io.read_draining(&mut self.rbuf) {
                Ok(0) => return Fill::Closed,
                Ok(_) => return Fill::Read,
                // A readiness event with nothing to read: wait again, holding nothing.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if self.rbuf.is_empty() {
                        buffers::give(std::mem::take(&mut self.rbuf));
                    }
                }
                Err(_) => return Fill::Closed,
            }
        }
    }

    /// Writes the buffered answers: at once when the socket takes them (nearly always),
    /// else waiting for the client to read, within the header timeout. `false` when the
    /// connection is unusable.
    async fn flush(&mut self) -> bool {
        if self.wbuf.is_empty() {
            return true;
        }
        let ok = match self.io.try_write(&self.wbuf) {
            Ok(n) if n == self.wbuf.len() => true,
            Ok(n) => self.write_slowly(n).await,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.write_slowly(0).await,
            Err(_) => false,
        };
        buffers::give(std::mem::take(&mut self.wbuf));
        ok
    }

    async fn write_slowly(&mut self, from: usize) -> bool {
        let deadline = Instant::now() + self.shared.timeout(true);
        let write = self.io.write_all(&self.wbuf[from..]);
        matches!(tokio::time::timeout_at(deadline, write).await, Ok(Ok(())))
    }

    /// After an answer that ends the connection: no more writes (FIN after the
    /// answer), then whatever the client still sends is dropped until it closes, for
    /// [`LINGER`] at most.
    async fn linger(&mut self) {
        let _ = self.io.shutdown().await;
        let timer = tokio::time::sleep(LINGER);
        tokio::pin!(timer);
        let mut dropped = 0;
        while dropped < LINGER_BYTES {
            self.rbuf.clear();
            match self.fill(timer.as_mut(), false).await {
                Fill::Read => dropped += self.rbuf.len(),
                Fill::Closed | Fill::TimedOut => return,
            }
        }
    }
}

impl<S, H> Drop for Conn<'_, S, H> {
    fn drop(&mut self) {
        self.shared.stats.budget.give(self.held);
        buffers::give(std::mem::take(&mut self.rbuf));
        buffers::give(std::mem::take(&mut self.wbuf));
    }
}

/// Sets `timer` to go off `timeout` from now, or up to an eighth of it later: a timer
/// already in that window is left alone. Moving a timer takes the runtime's timer-wheel
/// lock, so a connection answering many requests a second moves it a few times per
/// timeout instead of once per request.
fn arm(timer: Pin<&mut Sleep>, timeout: Duration) {
    let earliest = Instant::now() + timeout;
    let latest = earliest + timeout / 8;
    if timer.deadline() < earliest || timer.deadline() > latest {
        timer.reset(latest);
    }
}

/// How much room the next read needs.
#[derive(Clone, Copy)]
enum Room {
    /// The whole request takes this many bytes (its head and `Content-Length`).
    Exactly(usize),
    /// Unknown: double the buffer when it is full, up to this many bytes.
    Grow(usize),
}

fn refusal(e: DecodeError, max_body: usize) -> Refusal {
    match e {
        DecodeError::HeadTooLarge => Refusal::HeadTooLarge,
        DecodeError::BodyTooLarge => Refusal::BodyTooLarge { limit: max_body },
        DecodeError::Malformed => Refusal::Malformed,
        DecodeError::UnsupportedCoding => Refusal::UnsupportedCoding,
        DecodeError::Expectation => Refusal::Expectation,
        DecodeError::Version => Refusal::Version,
    }
}
