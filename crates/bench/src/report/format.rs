//! Formatting that the summary, the page and its charts share: money with thousands
//! separators, megabytes, and HTML escaping.

/// `x` rounded to cents, with a comma between thousands: `-1,234.50`.
pub(super) fn money(x: f64) -> String {
    let cents = (x * 100.0).round() as i128;
    let neg = cents < 0;
    let cents = cents.unsigned_abs();
    let int = (cents / 100).to_string();
    let groups: Vec<&str> = int
        .as_bytes()
        .rchunks(3)
        .rev()
        .map(|c| std::str::from_utf8(c).unwrap_or(""))
        .collect();
    let grouped = groups.join(",");
    format!("{}{grouped}.{:02}", if neg { "-" } else { "" }, cents % 100)
}

/// Bytes in the report's megabytes (MiB, as `/proc` and cgroups count them).
pub(super) fn megabytes(bytes: u64) -> f64 {
    bytes as f64 / 1_048_576.0
}

/// `s` escaped for HTML text and attribute values.
pub(super) fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_money() {
        assert_eq!(money(380_035.872), "380,035.87");
        assert_eq!(money(0.0), "0.00");
        assert_eq!(money(-1234.5), "-1,234.50");
    }
}
