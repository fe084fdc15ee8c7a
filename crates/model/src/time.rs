//! Timestamps: microseconds since the Unix epoch, UTC.
//!
//! payroute chooses each payment's `requestedAt` itself, at millisecond precision (the
//! precision of the challenge's examples), and records exactly the value it sent. The
//! hot path formats it by hand; a property test checks the result against `jiff`.

use std::fmt;

/// Microseconds since 1970-01-01T00:00:00Z.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Micros(pub i64);

/// Microseconds on a monotonic clock with an arbitrary origin (a process's start). Only
/// differences mean something: every duration payroute measures (timeouts, backoff,
/// latencies, probe spacing) is one of these, so a wall-clock jump changes none of
/// them. Never stored, never sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Mono(pub i64);

impl Mono {
    /// Microseconds from `earlier` to `self` (negative if `earlier` is later).
    pub const fn since(self, earlier: Mono) -> i64 {
        self.0.saturating_sub(earlier.0)
    }

    /// `us` microseconds after `self`.
    pub const fn after(self, us: i64) -> Mono {
        Mono(self.0.saturating_add(us))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("must be an ISO-8601 UTC timestamp such as 2025-07-10T12:34:56.000Z")]
pub struct TimestampError;

impl Micros {
    pub const fn from_millis(ms: i64) -> Micros {
        Micros(ms * 1000)
    }

    /// Whole milliseconds, rounded down.
    pub const fn millis(self) -> i64 {
        self.0.div_euclid(1000)
    }

    /// The wall clock now.
    pub fn now() -> Micros {
        let d = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        Micros(d.as_micros() as i64)
    }

    /// Parses an ISO-8601 / RFC 3339 timestamp with an explicit offset (`Z` or
    /// `+hh:mm`), any fraction up to nanoseconds (truncated to microseconds). A
    /// timestamp without an offset is taken as UTC, since the challenge says "UTC" and
    /// some clients leave the `Z` out.
    pub fn parse(text: &str) -> Result<Micros, TimestampError> {
        let text = text.trim();
        if text.is_empty() || text.len() > 64 {
            return Err(TimestampError);
        }
        let ts: jiff::Timestamp = match text.parse() {
            Ok(ts) => ts,
            Err(_) => {
                let civil: jiff::civil::DateTime = text.parse().map_err(|_| TimestampError)?;
                civil
                    .to_zoned(jiff::tz::TimeZone::UTC)
                    .map_err(|_| TimestampError)?
                    .timestamp()
            }
        };
        Ok(Micros(ts.as_microsecond()))
    }

    /// `YYYY-MM-DDTHH:MM:SS.mmmZ`, the millisecond form sent to processors. Valid for
    /// years 0000–9999.
    pub fn to_millis_string(self) -> String {
        let mut buf = [0u8; 24];
        self.write_millis(&mut buf);
        String::from_utf8_lossy(&buf).into_owned()
    }

    /// Writes `YYYY-MM-DDTHH:MM:SS.mmmZ` into `out` without allocating.
    pub fn write_millis(self, out: &mut [u8; 24]) {
        let ms_total = self.millis();
        let days = ms_total.div_euclid(86_400_000);
        let ms_of_day = ms_total.rem_euclid(86_400_000);
        let (y, m, d) = civil_from_days(days);
        let (h, rest) = (ms_of_day / 3_600_000, ms_of_day % 3_600_000);
        let (min, rest) = (rest / 60_000, rest % 60_000);
        let (s, ms) = (rest / 1000, rest % 1000);
        let put = |out: &mut [u8; 24], at: usize, v: i64, width: usize| {
            let mut v = v;
            for k in (0..width).rev() {
                out[at + k] = b'0' + (v % 10) as u8;
                v /= 10;
            }
        };
        put(out, 0, y, 4);
        out[4] = b'-';
        put(out, 5, m, 2);
        out[7] = b'-';
        put(out, 8, d, 2);
        out[10] = b'T';
        put(out, 11, h, 2);
        out[13] = b':';
        put(out, 14, min, 2);
        out[16] = b':';
        put(out, 17, s, 2);
        out[19] = b'.';
        put(out, 20, ms, 3);
        out[23] = b'Z';
    }
}

impl fmt::Display for Micros {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_millis_string())
    }
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar
/// (Howard Hinnant's well-known algorithm).
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_common_forms() {
        let base = Micros::parse("2025-07-10T12:34:56.000Z").unwrap();
        assert_eq!(base.to_millis_string(), "2025-07-10T12:34:56.000Z");
        assert_eq!(Micros::parse("2025-07-10T12:34:56Z"), Ok(base));
        assert_eq!(Micros::parse("2025-07-10T12:34:56.000+00:00"), Ok(base));
        assert_eq!(Micros::parse("2025-07-10T09:34:56.000-03:00"), Ok(base));
        assert_eq!(Micros::parse("2025-07-10T12:34:56.000"), Ok(base));
        assert_eq!(
            Micros::parse("2025-07-10T12:34:56.123456789Z").unwrap().0 - base.0,
            123_456
        );
    }

    #[test]
    fn refuses_garbage() {
        for bad in [
            "",
            "yesterday",
            "2025-13-01T00:00:00Z",
            "2025-02-30T00:00:00Z",
            "2025-07-10 12:34:56 garbage",
            "1752150896000",
        ] {
            assert_eq!(Micros::parse(bad), Err(TimestampError), "{bad}");
        }
    }

    proptest! {
        #[test]
        fn hand_formatting_matches_jiff(us in 0i64..253_402_300_799_000_000) {
            let ours = Micros(us).to_millis_string();
            let ts = jiff::Timestamp::from_microsecond(us.div_euclid(1000) * 1000).unwrap();
            let theirs = format!("{}", ts.strftime("%Y-%m-%dT%H:%M:%S.%3fZ"));
            prop_assert_eq!(&ours, &theirs);
            prop_assert_eq!(Micros::parse(&ours).unwrap().millis(), us.div_euclid(1000));
        }
    }
}
