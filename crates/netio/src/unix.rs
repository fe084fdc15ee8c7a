//! A Unix stream socket that wakes its thread only when there is something to read.
//!
//! tokio registers every `UnixStream` with epoll for reading *and* writing, edge
//! triggered. On a Unix stream socket the kernel signals "writable" to the sender each
//! time the peer reads what it sent, so every request/reply exchange woke each side a
//! second time, for nothing: the worker's IPC thread once per reply the api read, the api
//! once per request the worker read (`strace -e epoll_wait` showed an `EPOLLOUT`-only
//! wake-up after every reply). [`UnixConn`] registers for reading only and writes
//! straight to the socket; only when a write would block does it register a duplicate
//! of the descriptor for writability, until a write goes through.

use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::os::unix::net::UnixStream as StdUnixStream;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};

/// A connected Unix stream registered with the runtime for readability only.
#[derive(Debug)]
pub struct UnixConn {
    io: AsyncFd<StdUnixStream>,
    /// A duplicate of the descriptor registered for writability, only while a write is
    /// blocked on a full socket buffer.
    write_wait: Option<AsyncFd<StdUnixStream>>,
}

impl UnixConn {
    /// Takes over a connected tokio stream (deregistered from the runtime first).
    pub fn new(stream: tokio::net::UnixStream) -> io::Result<UnixConn> {
        let std = stream.into_std()?;
        std.set_nonblocking(true)?;
        Ok(UnixConn {
            io: register(std, Interest::READABLE)?,
            write_wait: None,
        })
    }

    /// Connects to the socket at `path`.
    pub async fn connect(path: impl AsRef<std::path::Path>) -> io::Result<UnixConn> {
        UnixConn::new(tokio::net::UnixStream::connect(path).await?)
    }

    /// Waits until there may be bytes (or an end of stream) to read.
    pub async fn readable(&self) -> io::Result<()> {
        self.io.readable().await?.retain_ready();
        Ok(())
    }

    /// Reads what is there into `buf`'s spare capacity; `WouldBlock` when nothing is,
    /// after which [`UnixConn::readable`] waits for the next bytes.
    pub fn try_read_buf(&self, buf: &mut Vec<u8>) -> io::Result<usize> {
        // Zeroing the spare capacity costs a `memset` of a buffer that is already
        // there; reading into it uninitialised would need `unsafe`.
        let len = buf.len();
        buf.resize(buf.capacity(), 0);
        let read = self.try_read(&mut buf[len..]);
        buf.truncate(len + read.as_ref().map_or(0, |n| *n));
        read
    }

    /// Runs `f` if the socket is ready for `interest`; its `WouldBlock` clears that
    /// readiness (as tokio's streams' `try_io`).
    pub fn try_io<R>(
        &self,
        interest: Interest,
        f: impl FnOnce() -> io::Result<R>,
    ) -> io::Result<R> {
        self.io.try_io(interest, |_| f())
    }

    fn try_read(&self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match self.io.try_io(Interest::READABLE, |s| (&*s).read(buf)) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                r => return r,
            }
        }
    }

    /// Writes what the socket takes now, without waiting; `WouldBlock` when it takes
    /// nothing.
    pub fn try_write(&self, buf: &[u8]) -> io::Result<usize> {
        loop {
            match self.io.get_ref().write(buf) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                r => return r,
            }
        }
    }
}

/// Registers `stream` with the runtime for `interest` only.
#[allow(unsafe_code)]
fn register(stream: StdUnixStream, interest: Interest) -> io::Result<AsyncFd<StdUnixStream>> {
    // SAFETY: the stream owns its descriptor and moves into the `AsyncFd`, which gives
    // out only shared references to it: nothing closes or replaces the descriptor while
    // it is registered (a write waiter is a duplicate with a descriptor of its own).
    unsafe { AsyncFd::register_with_interest(stream, interest) }.map_err(io::Error::from)
}

impl AsyncRead for UnixConn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            let mut guard = ready!(this.io.poll_read_ready(cx))?;
            let unfilled = buf.initialize_unfilled();
            let room = unfilled.len();
            match guard.get_inner().read(unfilled) {
                Ok(n) => {
                    // Less than there was room for: the socket is drained, and the
                    // next bytes bring a new edge. (As tokio's own streams do; it saves
                    // a read that would only say "would block".)
                    if n > 0 && n < room {
                        guard.clear_ready();
                    }
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => guard.clear_ready(),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}

impl AsyncWrite for UnixConn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        loop {
            match this.try_write(data) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                r => {
                    // Writable again: stop hearing about it.
                    this.write_wait = None;
                    return Poll::Ready(r);
                }
            }
            if this.write_wait.is_none() {
                // Registering reports the current state, so space freed since the
                // write above is not missed.
                let dup = this.io.get_ref().try_clone()?;
                this.write_wait = Some(register(dup, Interest::WRITABLE)?);
            }
            let wait = this.write_wait.as_ref().expect("set just above");
            ready!(wait.poll_write_ready(cx))?.clear_ready();
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(match self.io.get_ref().shutdown(Shutdown::Write) {
            Err(e) if e.kind() == io::ErrorKind::NotConnected => Ok(()),
            r => r,
        })
    }
}

#[cfg(test)]
#[path = "unix_tests.rs"]
mod tests;
