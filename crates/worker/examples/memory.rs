//! Memory of the worker's state per million payments: submits and records N payments
//! in an engine (no IO) and prints the resident memory it grew by, and how long a
//! snapshot of that state takes to build (what compaction does under the lock).
//!
//! `cargo run --release -p worker --example memory -- [N]` (default 1,000,000).

use model::{Cents, Micros, Mono};
use worker::engine::{Action, Engine, EngineConfig, SendResult};

fn rss_kib() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    pages * 4
}

fn main() {
    let n: u64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    let before = rss_kib();
    let mut e = Engine::new(EngineConfig {
        queue_capacity: usize::MAX,
        max_in_flight: [usize::MAX; 2],
        dedup_max_ids: usize::MAX,
        ..EngineConfig::default()
    });
    let wall0 = 1_750_000_000_000_000i64;
    for k in 0..n {
        let now = Mono(k as i64 * 3_000); // ~333 payments/s
        let id = uuid::Uuid::from_u128(u128::from(k) * 0x9E37_79B9_7F4A_7C15 + 1);
        e.submit(id, Cents(2005), now);
        if let Some(Action::Send { attempt, .. }) = e.next_action(now, Micros(wall0 + now.0)) {
            e.on_send_result(attempt, SendResult::Stored, now);
        }
    }
    let after = rss_kib();
    let grown = after.saturating_sub(before);
    println!(
        "{n} payments remembered: RSS grew by {:.1} MiB ({:.1} MiB per million, {:.0} bytes each)",
        grown as f64 / 1024.0,
        grown as f64 / 1024.0 * 1e6 / n as f64,
        grown as f64 * 1024.0 / n as f64
    );
    let t = std::time::Instant::now();
    let mut bytes = 0usize;
    let records = worker::log::snapshot(&e, |r| bytes += r.encode().len());
    println!(
        "snapshot of that state: {records} records, {:.1} MiB, built in {:.1} ms",
        bytes as f64 / (1 << 20) as f64,
        t.elapsed().as_secs_f64() * 1000.0
    );
}
