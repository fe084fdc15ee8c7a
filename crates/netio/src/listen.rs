//! Where servers listen: addresses (`HOST:PORT`, `:PORT`, `unix:PATH`), binding (with
//! `SO_REUSEPORT` when processes share a port), accepting, and the two kinds of stream
//! the HTTP server reads and writes.

use crate::UnixConn;
use std::fmt;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use tokio::io::AsyncWrite;
use tokio::net::{TcpListener, TcpStream, UnixListener};

/// Where a server listens: `HOST:PORT`, `:PORT` (all interfaces) or `unix:PATH`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenAddr {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

impl FromStr for ListenAddr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Some(path) = s.strip_prefix("unix:") {
            if path.is_empty() {
                return Err("unix: needs a path, as in unix:/run/payroute/api1.sock".into());
            }
            return Ok(ListenAddr::Unix(PathBuf::from(path)));
        }
        let s2 = if s.starts_with(':') {
            format!("0.0.0.0{s}")
        } else {
            s.to_string()
        };
        s2.parse::<SocketAddr>().map(ListenAddr::Tcp).map_err(|_| {
            format!("`{s}` is not HOST:PORT, :PORT or unix:PATH (example: 0.0.0.0:9999)")
        })
    }
}

impl fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ListenAddr::Tcp(a) => write!(f, "{a}"),
            ListenAddr::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

/// A bound listener.
#[derive(Debug)]
pub enum Listener {
    Tcp(TcpListener),
    Unix(UnixListener, PathBuf),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PortSharing {
    Exclusive,
    Shared,
}

/// Connection backlog: large enough for the challenge's ramp of 600 clients
/// connecting within a minute, bursts included.
const BACKLOG: i32 = 4096;

impl Listener {
    /// Binds `addr` for this process alone. TCP sockets get `SO_REUSEADDR` (a restart
    /// does not wait for TIME_WAIT). A Unix socket path left over by a dead process is
    /// replaced; its directory is created; the socket is made writable by all, so a
    /// load balancer running as another user can connect.
    pub fn bind(addr: &ListenAddr) -> io::Result<Listener> {
        Listener::bind_with(addr, PortSharing::Exclusive)
    }

    /// Binds `addr` so that several processes can share it: TCP sockets also get
    /// `SO_REUSEPORT`, and the kernel spreads connections between the processes (the
    /// api instances of `payroute up --lb embedded`). Unix sockets as [`Listener::bind`].
    pub fn bind_shared(addr: &ListenAddr) -> io::Result<Listener> {
        Listener::bind_with(addr, PortSharing::Shared)
    }

    fn bind_with(addr: &ListenAddr, sharing: PortSharing) -> io::Result<Listener> {
        match addr {
            ListenAddr::Tcp(a) => {
                let domain = socket2::Domain::for_address(*a);
                let s = socket2::Socket::new(domain, socket2::Type::STREAM, None)?;
                s.set_reuse_address(true)?;
                if sharing == PortSharing::Shared {
                    s.set_reuse_port(true)?;
                }
                s.set_nonblocking(true)?;
                s.bind(&(*a).into())?;
                s.listen(BACKLOG)?;
                Ok(Listener::Tcp(TcpListener::from_std(s.into())?))
            }
            ListenAddr::Unix(path) => {
                prepare_unix_path(path)?;
                let l = UnixListener::bind(path)?;
                set_mode(path, 0o666)?;
                Ok(Listener::Unix(l, path.clone()))
            }
        }
    }

    /// The address actually bound (the real port when 0 was asked).
    pub fn local_addr(&self) -> io::Result<ListenAddr> {
        match self {
            Listener::Tcp(l) => Ok(ListenAddr::Tcp(l.local_addr()?)),
            Listener::Unix(_, p) => Ok(ListenAddr::Unix(p.clone())),
        }
    }
}

/// Makes `path` ready for a new Unix socket: creates the directory and removes a
/// stale socket file (never a regular file).
pub fn prepare_unix_path(path: &Path) -> io::Result<()> {
    use std::os::unix::fs::FileTypeExt;
    if let Some(dir) = path.parent() {
        if !dir.as_os_str().is_empty() {
            std::fs::create_dir_all(dir)?;
        }
    }
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_socket() => std::fs::remove_file(path),
        Ok(_) => Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!("{} exists and is not a socket", path.display()),
        )),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

fn set_mode(path: &Path, mode: u32) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
}

/// An accepted connection.
pub(crate) enum Stream {
    Tcp(TcpStream),
    /// Registered for reading only: the load balancer reading an answer does not wake
    /// this thread ([`UnixConn`]).
    Unix(UnixConn),
}

impl Listener {
    pub(crate) async fn accept(&self) -> io::Result<Stream> {
        match self {
            Listener::Tcp(l) => {
                let (s, _) = l.accept().await?;
                // Answers are tiny; Nagle would hold them back up to 40 ms.
                s.set_nodelay(true)?;
                Ok(Stream::Tcp(s))
            }
            Listener::Unix(l, _) => Ok(Stream::Unix(UnixConn::new(l.accept().await?.0)?)),
        }
    }
}

/// What the connection loop needs of a stream: waiting for bytes without a buffer (an
/// idle connection holds none), then reading what is there into one.
pub(crate) trait Socket: AsyncWrite + Unpin + Send + 'static {
    fn readable(&self) -> impl Future<Output = io::Result<()>> + Send + '_;
    /// Reads what is there into `buf`'s spare capacity (which must not be empty). A
    /// read that took less than there was room for also forgets the socket's readiness
    /// (the socket is empty: the next wait waits for new bytes instead of trying a read
    /// that would only say "would block"; the closed flags are kept). What it forgets
    /// is the readiness seen before the read: bytes whose event the runtime's driver
    /// records meanwhile, on another thread of a multi-threaded runtime, still end the
    /// next wait.
    fn read_draining(&self, buf: &mut Vec<u8>) -> io::Result<usize>;
    fn try_write(&self, buf: &[u8]) -> io::Result<usize>;
}

macro_rules! socket {
    ($t:ty) => {
        impl Socket for $t {
            fn readable(&self) -> impl Future<Output = io::Result<()>> + Send + '_ {
                <$t>::readable(self)
            }
            fn read_draining(&self, buf: &mut Vec<u8>) -> io::Result<usize> {
                let room = buf.capacity() - buf.len();
                let mut read = None;
                // `try_io` takes the readiness (and its tick) before calling the closure,
                // and clears exactly that one when the closure says "would block": so a
                // short read is reported as one, with its count kept aside. (Clearing
                // with a second `try_io` after the read would take the readiness anew,
                // and could forget an event recorded after the read.)
                let r = <$t>::try_io(self, tokio::io::Interest::READABLE, || {
                    let n = <$t>::try_read_buf(self, buf)?;
                    read = Some(n);
                    if n > 0 && n < room {
                        Err(io::Error::from(io::ErrorKind::WouldBlock))
                    } else {
                        Ok(n)
                    }
                });
                match read {
                    Some(n) => Ok(n),
                    None => r,
                }
            }
            fn try_write(&self, buf: &[u8]) -> io::Result<usize> {
                <$t>::try_write(self, buf)
            }
        }
    };
}

socket!(TcpStream);
socket!(UnixConn);
