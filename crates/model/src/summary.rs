//! The summary: payments each processor accepted, grouped by processor, selected by the
//! exact `requestedAt` payroute sent, over an inclusive window.

use crate::buckets::BucketTree;
use crate::money::Cents;
use crate::payment::Processor;
use crate::time::{Micros, TimestampError};

/// Count and sum of a set of payments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Totals {
    pub count: u64,
    pub amount: Cents,
}

impl Totals {
    fn add(&mut self, amount: Cents) {
        self.count += 1;
        self.amount += amount;
    }

    pub(crate) fn merge(&mut self, other: &Totals) {
        self.count += other.count;
        self.amount += other.amount;
    }

    /// `self` without `other`, which it contains (a prefix of it).
    pub(crate) fn minus(&self, other: &Totals) -> Totals {
        Totals {
            count: self.count - other.count,
            amount: Cents(self.amount.0 - other.amount.0),
        }
    }
}

/// The answer of `GET /payments-summary`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Summary {
    pub default: Totals,
    pub fallback: Totals,
}

impl Summary {
    pub fn get(&self, p: Processor) -> &Totals {
        match p {
            Processor::Default => &self.default,
            Processor::Fallback => &self.fallback,
        }
    }

    /// The JSON body, amounts printed from integer cents.
    pub fn to_json(&self) -> String {
        format!(
            r#"{{"default":{{"totalRequests":{},"totalAmount":{}}},"fallback":{{"totalRequests":{},"totalAmount":{}}}}}"#,
            self.default.count, self.default.amount, self.fallback.count, self.fallback.amount
        )
    }
}

/// An inclusive window; a missing bound is unbounded on that side.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SummaryQuery {
    pub from: Option<Micros>,
    pub to: Option<Micros>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryError {
    pub field: &'static str,
    pub message: String,
}

impl QueryError {
    pub fn to_json(&self) -> String {
        serde_json::json!({"error": self.message, "field": self.field}).to_string()
    }
}

impl SummaryQuery {
    /// Parses the query string of `GET /payments-summary` (without the `?`). Unknown
    /// parameters are ignored; a repeated `from` or `to`, an invalid timestamp or
    /// `from` after `to` is an error.
    pub fn parse(query: &str) -> Result<SummaryQuery, QueryError> {
        let mut q = SummaryQuery::default();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let field = match key {
                "from" => "from",
                "to" => "to",
                _ => continue,
            };
            let value = percent_decode(value).ok_or_else(|| QueryError {
                field,
                message: format!("{field} is not valid percent-encoding"),
            })?;
            if value.is_empty() {
                continue;
            }
            let ts = Micros::parse(&value).map_err(|e: TimestampError| QueryError {
                field,
                message: format!("{field} {e}"),
            })?;
            let slot = if field == "from" {
                &mut q.from
            } else {
                &mut q.to
            };
            if slot.replace(ts).is_some() {
                return Err(QueryError {
                    field,
                    message: format!("{field} is given twice"),
                });
            }
        }
        if let (Some(from), Some(to)) = (q.from, q.to) {
            if from > to {
                return Err(QueryError {
                    field: "from",
                    message: "from must not be after to".into(),
                });
            }
        }
        Ok(q)
    }

    /// Whether a payment recorded at `at` (millisecond precision) is inside.
    pub fn contains(&self, at: Micros) -> bool {
        self.from.is_none_or(|f| at >= f) && self.to.is_none_or(|t| at <= t)
    }
}

/// Decodes `%XX` escapes. `+` stays `+`: in a timestamp it is an offset sign, and no
/// client of this API sends form-encoded spaces.
pub fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = b.get(i + 1..i + 3)?;
            let hex = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Processed payments, indexed by `requestedAt` in milliseconds, one index per
/// processor: a [`BucketTree`] of per-millisecond totals with subtree sums, so a window
/// of any width is summed in O(log n) (the engine answers it under its lock), and a
/// running total answers unbounded queries at once.
#[derive(Debug, Default, Clone)]
pub struct SummaryStore {
    by_ms: [BucketTree; 2],
    all: [Totals; 2],
}

impl SummaryStore {
    pub fn new() -> SummaryStore {
        SummaryStore::default()
    }

    /// Records one payment that `processor` accepted with `requested_at`.
    pub fn record(&mut self, processor: Processor, requested_at: Micros, amount: Cents) {
        let i = processor.index();
        let mut one = Totals::default();
        one.add(amount);
        self.by_ms[i].add(requested_at.millis(), one);
        self.all[i].add(amount);
    }

    pub fn clear(&mut self) {
        *self = SummaryStore::default();
    }

    /// Every non-empty millisecond bucket, for a snapshot.
    pub fn buckets(&self) -> impl Iterator<Item = (Processor, i64, Totals)> + '_ {
        Processor::ALL
            .into_iter()
            .flat_map(move |p| self.by_ms[p.index()].iter().map(move |(ms, t)| (p, ms, t)))
    }

    /// Buckets held, both processors.
    pub fn bucket_count(&self) -> usize {
        self.by_ms.iter().map(|t| t.len()).sum()
    }

    /// Adds a bucket read back from a snapshot.
    pub fn restore_bucket(&mut self, processor: Processor, ms: i64, totals: Totals) {
        let i = processor.index();
        self.by_ms[i].add(ms, totals);
        self.all[i].merge(&totals);
    }

    /// Totals per processor over the inclusive window.
    pub fn query(&self, q: &SummaryQuery) -> Summary {
        let mut out = [Totals::default(); 2];
        for (i, slot) in out.iter_mut().enumerate() {
            if q.from.is_none() && q.to.is_none() {
                *slot = self.all[i];
                continue;
            }
            // Records are whole milliseconds; a bound with a sub-millisecond part
            // includes exactly the records it would include at microsecond precision.
            let lo = q.from.map_or(i64::MIN, |f| ceil_div(f.0, 1000));
            let hi = q.to.map_or(i64::MAX, |t| t.0.div_euclid(1000));
            *slot = self.by_ms[i].range(lo, hi);
        }
        Summary {
            default: out[0],
            fallback: out[1],
        }
    }
}

fn ceil_div(a: i64, b: i64) -> i64 {
    -((-a).div_euclid(b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ms(v: i64) -> Micros {
        Micros::from_millis(v)
    }

    #[test]
    fn parses_queries() {
        assert_eq!(SummaryQuery::parse(""), Ok(SummaryQuery::default()));
        let q =
            SummaryQuery::parse("from=2020-07-10T12:34:56.000Z&to=2020-07-10T12:35:56.000Z&x=1")
                .unwrap();
        assert_eq!(q.to.unwrap().0 - q.from.unwrap().0, 60_000_000);
        let q = SummaryQuery::parse("to=2020-07-10T12%3A35%3A56.000%2B00%3A00").unwrap();
        assert!(q.from.is_none() && q.to.is_some());
        assert_eq!(
            SummaryQuery::parse("from=&to=").unwrap(),
            SummaryQuery::default()
        );
    }

    #[test]
    fn refuses_bad_queries() {
        for (q, field) in [
            ("from=yesterday", "from"),
            ("to=2020-13-01T00:00:00Z", "to"),
            (
                "from=2020-07-10T12:00:00Z&from=2020-07-10T12:00:00Z",
                "from",
            ),
            ("from=2020-07-10T13:00:00Z&to=2020-07-10T12:00:00Z", "from"),
            ("to=%zz", "to"),
        ] {
            let e = SummaryQuery::parse(q).unwrap_err();
            assert_eq!(e.field, field, "{q}");
        }
    }

    #[test]
    fn window_edges_are_inclusive() {
        let mut s = SummaryStore::new();
        s.record(Processor::Default, ms(1000), Cents(1990));
        s.record(Processor::Default, ms(2000), Cents(1990));
        s.record(Processor::Fallback, ms(2000), Cents(10));
        let q = |f: i64, t: i64| SummaryQuery {
            from: Some(Micros(f)),
            to: Some(Micros(t)),
        };
        assert_eq!(s.query(&q(1_000_000, 2_000_000)).default.count, 2);
        assert_eq!(s.query(&q(1_000_001, 2_000_000)).default.count, 1);
        assert_eq!(s.query(&q(1_000_000, 1_999_999)).default.count, 1);
        assert_eq!(s.query(&q(2_000_000, 2_000_000)).fallback.amount, Cents(10));
        assert_eq!(
            s.query(&SummaryQuery::default()).default.amount,
            Cents(3980)
        );
        assert_eq!(
            s.query(&SummaryQuery {
                from: Some(ms(1500)),
                to: None
            })
            .default
            .count,
            1
        );
        s.clear();
        assert_eq!(s.query(&SummaryQuery::default()), Summary::default());
    }

    #[test]
    fn json_has_the_official_shape() {
        let mut s = SummaryStore::new();
        s.record(Processor::Default, ms(1), Cents(1990));
        let v: serde_json::Value =
            serde_json::from_str(&s.query(&SummaryQuery::default()).to_json()).unwrap();
        assert_eq!(v["default"]["totalRequests"], 1);
        assert_eq!(v["default"]["totalAmount"].as_f64(), Some(19.9));
        assert_eq!(v["fallback"]["totalAmount"].as_f64(), Some(0.0));
    }

    proptest! {
        #[test]
        fn agrees_with_a_naive_model(
            records in proptest::collection::vec((any::<bool>(), 0i64..5_000, 1i64..100_000), 0..200),
            from in proptest::option::of(0i64..5_000_000),
            to in proptest::option::of(0i64..5_000_000),
        ) {
            let mut store = SummaryStore::new();
            let mut naive: Vec<(Processor, Micros, Cents)> = Vec::new();
            for (fb, at, c) in records {
                let p = if fb { Processor::Fallback } else { Processor::Default };
                store.record(p, ms(at), Cents(c));
                naive.push((p, ms(at), Cents(c)));
            }
            let q = SummaryQuery { from: from.map(Micros), to: to.map(Micros) };
            let got = store.query(&q);
            for p in Processor::ALL {
                let (n, sum) = naive.iter()
                    .filter(|(pp, at, _)| *pp == p && q.contains(*at))
                    .fold((0u64, 0i64), |(n, s), (_, _, c)| (n + 1, s + c.0));
                prop_assert_eq!(got.get(p).count, n);
                prop_assert_eq!(got.get(p).amount, Cents(sum));
            }
        }
    }
}
