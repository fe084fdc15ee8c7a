//! `UnixConn` on real socket pairs: bytes in order both ways, a write bigger than the
//! socket's buffer, and the point of it: the peer's reads do not wake the thread.

use super::UnixConn;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream as StdUnixStream;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn runtime() -> tokio::runtime::Runtime {
    crate::single_thread_runtime().unwrap()
}

fn pair() -> (tokio::net::UnixStream, StdUnixStream) {
    let (a, b) = StdUnixStream::pair().unwrap();
    a.set_nonblocking(true).unwrap();
    (tokio::net::UnixStream::from_std(a).unwrap(), b)
}

#[test]
fn bytes_go_both_ways_in_order_even_past_a_full_socket_buffer() {
    runtime().block_on(async {
        let (ours, mut theirs) = pair();
        let mut conn = UnixConn::new(ours).unwrap();
        // 8 MiB is far more than a Unix socket buffers: the write blocks and must
        // resume when the peer (reading slowly) makes room.
        let sent: Vec<u8> = (0..8 << 20).map(|i: u32| (i % 251) as u8).collect();
        let reader = std::thread::spawn(move || {
            let mut got = Vec::new();
            let mut chunk = [0u8; 64 << 10];
            while got.len() < 8 << 20 {
                let n = theirs.read(&mut chunk).unwrap();
                assert!(n > 0, "closed early");
                got.extend_from_slice(&chunk[..n]);
                if got.len() < 1 << 20 {
                    std::thread::sleep(Duration::from_micros(200));
                }
            }
            theirs.write_all(b"done").unwrap();
            (got, theirs)
        });
        conn.write_all(&sent).await.unwrap();
        let mut done = [0u8; 4];
        conn.read_exact(&mut done).await.unwrap();
        assert_eq!(&done, b"done");
        let (got, theirs) = reader.join().unwrap();
        assert!(got == sent, "the bytes arrived changed or out of order");
        drop(theirs);
        let mut rest = Vec::new();
        conn.read_to_end(&mut rest).await.unwrap();
        assert!(rest.is_empty());
    });
}

#[test]
fn try_read_buf_fills_only_the_spare_capacity_and_says_would_block_when_empty() {
    runtime().block_on(async {
        let (ours, mut theirs) = pair();
        let conn = UnixConn::new(ours).unwrap();
        let mut buf = Vec::with_capacity(8);
        buf.extend_from_slice(b"ab");
        let e = conn.try_read_buf(&mut buf).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::WouldBlock);
        assert_eq!(buf, b"ab");
        theirs.write_all(b"cdefghijkl").unwrap();
        conn.readable().await.unwrap();
        assert_eq!(conn.try_read_buf(&mut buf).unwrap(), 6);
        assert_eq!(buf, b"abcdefgh");
        assert_eq!(conn.try_write(b"xyz").unwrap(), 3);
        let mut three = [0u8; 3];
        theirs.read_exact(&mut three).unwrap();
        assert_eq!(&three, b"xyz");
    });
}

/// How a socket is registered with the runtime in [`peer_reads_wake_the_writer`].
enum Registration {
    Tokio,
    ReadOnly,
}

/// Writes 40 small messages from a thread running a runtime, lets that thread go idle
/// (waiting to read), then reads the messages one by one from the peer, a millisecond
/// apart: how many times did the idle thread wake up meanwhile?
fn peer_reads_wake_the_writer(registration: Registration) -> u64 {
    // Few enough that what they take of the socket's buffer stays under the quarter
    // below which the kernel signals "writable" at every read (~1 KiB each).
    const MESSAGES: usize = 40;
    let (ours, mut theirs) = StdUnixStream::pair().unwrap();
    ours.set_nonblocking(true).unwrap();
    let (tid_tx, tid_rx) = std::sync::mpsc::channel();
    let writer = std::thread::spawn(move || {
        runtime().block_on(async move {
            let ours = tokio::net::UnixStream::from_std(ours).unwrap();
            tid_tx
                .send(std::fs::read_link("/proc/thread-self").unwrap())
                .unwrap();
            match registration {
                Registration::Tokio => write_then_wait(ours, MESSAGES).await,
                Registration::ReadOnly => {
                    write_then_wait(UnixConn::new(ours).unwrap(), MESSAGES).await;
                }
            }
        })
    });
    let task = std::path::PathBuf::from("/proc/self/task").join(
        tid_rx
            .recv()
            .unwrap()
            .file_name()
            .expect("/proc/thread-self is PID/task/TID"),
    );
    std::thread::sleep(Duration::from_millis(50));
    let before = voluntary_switches(&task);
    let mut ten = [0u8; 10];
    for _ in 0..MESSAGES {
        theirs.read_exact(&mut ten).unwrap();
        std::thread::sleep(Duration::from_millis(1));
    }
    let after = voluntary_switches(&task);
    theirs.write_all(b"x").unwrap();
    writer.join().unwrap();
    after - before
}

/// Writes `messages` messages of ten bytes, then waits (idle) for one byte back.
async fn write_then_wait<S>(mut s: S, messages: usize)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    for _ in 0..messages {
        s.write_all(b"0123456789").await.unwrap();
    }
    let mut one = [0u8; 1];
    s.read_exact(&mut one).await.unwrap();
}

fn voluntary_switches(task: &std::path::Path) -> u64 {
    let status = std::fs::read_to_string(task.join("status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
        .expect("a task's status has voluntary_ctxt_switches")
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn the_peer_reading_what_was_sent_does_not_wake_the_sender() {
    // The kernel behaviour this works around, seen first: with tokio's registration
    // (readable and writable) nearly every read by the peer wakes the idle writer (half
    // at least, should a loaded machine merge some wake-ups).
    let tokio = peer_reads_wake_the_writer(Registration::Tokio);
    assert!(
        tokio >= 20,
        "tokio's UnixStream woke {tokio} times for 40 reads"
    );
    let read_only = peer_reads_wake_the_writer(Registration::ReadOnly);
    assert!(
        read_only <= 5,
        "UnixConn woke {read_only} times for 40 reads"
    );
}
