//! Fuzzes the `GET /payments-summary` query decoder: never a panic; an accepted window
//! never has `from` after `to`. The input is used both as a raw query string and as
//! the two values of `from=...&to=...` (split at the first 0xFF byte), so the
//! timestamp parser sees most of the inputs.
#![no_main]

use libfuzzer_sys::fuzz_target;
use model::SummaryQuery;

fn check(query: &str) {
    if let Ok(q) = SummaryQuery::parse(query) {
        if let (Some(f), Some(t)) = (q.from, q.to) {
            assert!(f <= t);
        }
    }
}

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        check(s);
    }
    let (a, b) = match data.iter().position(|&b| b == 0xFF) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    if let (Ok(a), Ok(b)) = (std::str::from_utf8(a), std::str::from_utf8(b)) {
        check(&format!("from={a}&to={b}"));
        check(&format!("to={a}"));
    }
});
