//! A bounded, paced load loop for measuring an emulator: `POST /payments` at a fixed
//! rate over keep-alive connections, each payment with a fresh correlationId, then the
//! latency percentiles. Unlike `wrk` (which sends as fast as it can), it answers "how
//! long does a request take at the rate a bench needs", here 5,000 per second.
//!
//! ```text
//! payroute processor --listen 127.0.0.1:8001 --fee 0.05 &
//! cargo run -p emulator --example load -- 127.0.0.1:8001 5000 10 16
//! ```
//! Arguments: address (loopback only), requests per second, seconds (at most 60),
//! connections. Latency is measured from the write of a request to the end of its
//! answer (tokio's timers have a 1 ms grain, too coarse to measure from the moment a
//! request was due); requests sent more than 1 ms after they were due are counted, so
//! a server that falls behind is seen.

use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The longest run allowed: the loop must always end.
const MAX_SECONDS: u64 = 60;
/// A request sent this long after it was due means the loop (or the server) fell
/// behind: beyond the 1 ms grain of tokio's timers.
const LATE: Duration = Duration::from_millis(2);

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let addr: SocketAddr = args
        .first()
        .map_or("127.0.0.1:8001", String::as_str)
        .parse()?;
    if !addr.ip().is_loopback() {
        return Err("only loopback addresses: this loop is for measuring a local emulator".into());
    }
    let rate: u64 = args.get(1).map_or(Ok(5000), |s| s.parse())?;
    let seconds: u64 = args.get(2).map_or(Ok(10), |s| s.parse())?;
    let conns: u64 = args.get(3).map_or(Ok(16), |s| s.parse())?;
    if rate == 0 || conns == 0 || seconds == 0 || seconds > MAX_SECONDS {
        return Err(format!("rate and connections > 0, 1..={MAX_SECONDS} seconds").into());
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(run(addr, rate, seconds, conns))
}

async fn run(
    addr: SocketAddr,
    rate: u64,
    seconds: u64,
    conns: u64,
) -> Result<(), Box<dyn std::error::Error>> {
    let total = rate * seconds;
    // Each connection sends every `conns / rate` seconds, offset so that together
    // they are evenly spread.
    let period = Duration::from_nanos(1_000_000_000 * conns / rate);
    let start = Instant::now() + Duration::from_millis(100);
    let run_id = std::process::id();
    let mut tasks = Vec::new();
    for c in 0..conns {
        let n = total / conns + u64::from(c < total % conns);
        let first = start + period * c as u32 / conns as u32;
        tasks.push(tokio::spawn(connection(addr, run_id, c, n, first, period)));
    }
    let mut lat_us = Vec::with_capacity(total as usize);
    let (mut failed, mut late) = (0u64, 0u64);
    for t in tasks {
        let (l, f, lt) = t.await??;
        lat_us.extend(l);
        failed += f;
        late += lt;
    }
    let elapsed = start.elapsed().as_secs_f64();
    lat_us.sort_unstable();
    let pct = |p: f64| {
        lat_us
            .get(((lat_us.len() as f64 * p) as usize).min(lat_us.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0)
    };
    println!(
        "{} requests in {elapsed:.2} s ({:.0}/s), {failed} not 200, {late} sent late; latency µs: p50 {} p90 {} p99 {} p99.9 {} max {}",
        lat_us.len(),
        lat_us.len() as f64 / elapsed,
        pct(0.50),
        pct(0.90),
        pct(0.99),
        pct(0.999),
        lat_us.last().copied().unwrap_or(0)
    );
    Ok(())
}

/// Latencies in µs, answers other than 200, requests sent late.
type ConnResult = Result<(Vec<u32>, u64, u64), std::io::Error>;

async fn connection(
    addr: SocketAddr,
    run_id: u32,
    conn: u64,
    n: u64,
    first: Instant,
    period: Duration,
) -> ConnResult {
    let mut s = TcpStream::connect(addr).await?;
    s.set_nodelay(true)?;
    let mut lat = Vec::with_capacity(n as usize);
    let mut failed = 0;
    let mut late = 0;
    let mut buf = vec![0u8; 4096];
    for i in 0..n {
        let due = first + period * i as u32;
        tokio::time::sleep_until(due.into()).await;
        if due.elapsed() > LATE {
            late += 1;
        }
        let body = format!(
            r#"{{"correlationId":"{run_id:08x}-{conn:04x}-4000-8000-{i:012}","amount":19.90,"requestedAt":"2025-07-10T12:34:56.789Z"}}"#
        );
        let req = format!(
            "POST /payments HTTP/1.1\r\nHost: emulator\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        let sent = Instant::now();
        s.write_all(req.as_bytes()).await?;
        let status = read_response(&mut s, &mut buf).await?;
        lat.push(sent.elapsed().as_micros().min(u128::from(u32::MAX)) as u32);
        if status != 200 {
            failed += 1;
        }
    }
    Ok((lat, failed, late))
}

/// Reads one response (headers plus a `Content-Length` body) and returns its status.
async fn read_response(s: &mut TcpStream, buf: &mut Vec<u8>) -> std::io::Result<u16> {
    let bad = |m: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, m.to_string());
    let mut len = 0;
    loop {
        if len == buf.len() {
            buf.resize(len * 2, 0);
        }
        let n = s.read(&mut buf[len..]).await?;
        if n == 0 {
            return Err(bad("connection closed"));
        }
        len += n;
        let Some(end) = buf[..len].windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        let head = std::str::from_utf8(&buf[..end]).map_err(|_| bad("head not UTF-8"))?;
        let status = head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| bad("no status"))?;
        let body_len: usize = head
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse().ok())?
            })
            .unwrap_or(0);
        let want = end + 4 + body_len;
        while len < want {
            if want > buf.len() {
                buf.resize(want, 0);
            }
            let n = s.read(&mut buf[len..want]).await?;
            if n == 0 {
                return Err(bad("connection closed"));
            }
            len += n;
        }
        return Ok(status);
    }
}
