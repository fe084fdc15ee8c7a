//! The consistency checker's arithmetic and the parsing of the summaries it reads,
//! as `checkPaymentsConsistency` and `requests.js` do them.
//!
//! A summary that did not answer 200 counts as all zeros (`getPPPaymentsSummary` and
//! `getBackendPaymentsSummary` return zeros), so a backend that fails its summary
//! while payments exist is counted inconsistent.

use crate::scenario::CheckArithmetic;
use crate::score::{BackendSummary, ProcessorSummary};

/// Inconsistencies found by one check. `backend` is the backend's summary; `default`
/// and `fallback` the processors' admin summaries over the same window.
pub fn inconsistencies(
    arithmetic: CheckArithmetic,
    backend: &BackendSummary,
    default: &ProcessorSummary,
    fallback: &ProcessorSummary,
) -> f64 {
    let d = backend.default_requests - default.total_requests;
    let f = backend.fallback_requests - fallback.total_requests;
    match arithmetic {
        CheckArithmetic::AbsOfSum => (d + f).abs(),
        CheckArithmetic::SumOfAbs => d.abs() + f.abs(),
    }
}

fn number(v: &serde_json::Value, path: &[&str]) -> f64 {
    let mut v = v;
    for key in path {
        v = &v[*key];
    }
    // JavaScript would compute with `undefined` (NaN) for a missing field; a NaN
    // would poison every sum, so a missing or non-numeric field reads as 0.
    v.as_f64().unwrap_or(0.0)
}

/// The JSON of a summary answered 200; `None` (read as zeros) otherwise.
fn summary_json(status: u16, body: &[u8]) -> Option<serde_json::Value> {
    if status != 200 {
        return None;
    }
    serde_json::from_slice(body).ok()
}

/// Parses the body of a processor's `GET /admin/payments-summary`; zeros when the
/// status was not 200 or the body is not JSON.
pub fn parse_processor_summary(status: u16, body: &[u8]) -> ProcessorSummary {
    let Some(v) = summary_json(status, body) else {
        return ProcessorSummary::default();
    };
    ProcessorSummary {
        total_requests: number(&v, &["totalRequests"]),
        total_amount: number(&v, &["totalAmount"]),
        fee_per_transaction: number(&v, &["feePerTransaction"]),
    }
}

/// Parses the body of the backend's `GET /payments-summary`; zeros when the status
/// was not 200 or the body is not JSON.
pub fn parse_backend_summary(status: u16, body: &[u8]) -> BackendSummary {
    let Some(v) = summary_json(status, body) else {
        return BackendSummary::default();
    };
    BackendSummary {
        default_requests: number(&v, &["default", "totalRequests"]),
        default_amount: number(&v, &["default", "totalAmount"]),
        fallback_requests: number(&v, &["fallback", "totalRequests"]),
        fallback_amount: number(&v, &["fallback", "totalAmount"]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pp(n: f64) -> ProcessorSummary {
        ProcessorSummary {
            total_requests: n,
            ..Default::default()
        }
    }

    fn be(d: f64, f: f64) -> BackendSummary {
        BackendSummary {
            default_requests: d,
            fallback_requests: f,
            ..Default::default()
        }
    }

    #[test]
    fn agreeing_books_count_zero() {
        for a in [CheckArithmetic::AbsOfSum, CheckArithmetic::SumOfAbs] {
            assert_eq!(inconsistencies(a, &be(10.0, 3.0), &pp(10.0), &pp(3.0)), 0.0);
        }
    }

    #[test]
    fn a_payment_under_the_wrong_processor() {
        // The backend says default, the processors say fallback.
        let (b, d, f) = (be(1.0, 0.0), pp(0.0), pp(1.0));
        // Preview: the differences cancel out.
        assert_eq!(inconsistencies(CheckArithmetic::AbsOfSum, &b, &d, &f), 0.0);
        // Final: it counts twice.
        assert_eq!(inconsistencies(CheckArithmetic::SumOfAbs, &b, &d, &f), 2.0);
    }

    #[test]
    fn missing_and_extra_payments() {
        // Backend short of 2 in default, 1 extra in fallback.
        let (b, d, f) = (be(8.0, 4.0), pp(10.0), pp(3.0));
        assert_eq!(inconsistencies(CheckArithmetic::AbsOfSum, &b, &d, &f), 1.0);
        assert_eq!(inconsistencies(CheckArithmetic::SumOfAbs, &b, &d, &f), 3.0);
        // Published log line: "201 vs 325" and "24 vs 24" in the final -> 124.
        let (b, d, f) = (be(201.0, 24.0), pp(325.0), pp(24.0));
        assert_eq!(
            inconsistencies(CheckArithmetic::SumOfAbs, &b, &d, &f),
            124.0
        );
    }

    #[test]
    fn parses_summaries_and_zeroes_failures() {
        let b = parse_backend_summary(
            200,
            br#"{"default":{"totalRequests":3,"totalAmount":59.7},"fallback":{"totalRequests":1,"totalAmount":19.9}}"#,
        );
        assert_eq!(
            b,
            BackendSummary {
                default_requests: 3.0,
                default_amount: 59.7,
                fallback_requests: 1.0,
                fallback_amount: 19.9
            }
        );
        assert_eq!(parse_backend_summary(500, b"{}"), BackendSummary::default());
        assert_eq!(
            parse_backend_summary(200, b"not json"),
            BackendSummary::default()
        );
        let p = parse_processor_summary(
            200,
            br#"{"totalRequests":3,"totalAmount":59.7,"totalFee":2.985,"feePerTransaction":0.05}"#,
        );
        assert_eq!(
            p,
            ProcessorSummary {
                total_requests: 3.0,
                total_amount: 59.7,
                fee_per_transaction: 0.05
            }
        );
        assert_eq!(parse_processor_summary(0, b""), ProcessorSummary::default());
    }
}
