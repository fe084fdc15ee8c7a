//! What goes over the wire: parsing of request bodies and query strings, and the exact
//! decimal arithmetic the official processor gets from .NET `decimal` and PostgreSQL
//! `numeric` (amount rounding, fee products), written with integers.
//!
//! Everything here is pure: no IO, no clock. Errors name the field at fault, because
//! the 400s of an emulator are read by people debugging a client.

use model::money::MAX_PAYMENT_CENTS;
use model::{Cents, Micros};
use serde::Deserialize;
use serde_json::value::RawValue;
use std::borrow::Cow;
use uuid::Uuid;

/// A request input refused, with the field at fault and a message for the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct InputError {
    pub(crate) field: &'static str,
    pub(crate) message: String,
}

impl InputError {
    fn new(field: &'static str, message: impl Into<String>) -> InputError {
        InputError {
            field,
            message: message.into(),
        }
    }

    /// The `{"error": ..., "field": ...}` body of the 400.
    pub(crate) fn to_json(&self) -> String {
        serde_json::json!({"error": self.message, "field": self.field}).to_string()
    }
}

/// A validated `POST /payments` body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Payment {
    pub(crate) correlation_id: Uuid,
    /// Rounded to cents, half to even.
    pub(crate) amount: Cents,
    pub(crate) requested_at: Micros,
}

#[derive(Deserialize)]
struct RawPayment<'a> {
    #[serde(rename = "correlationId", borrow, default)]
    correlation_id: Option<&'a RawValue>,
    #[serde(borrow, default)]
    amount: Option<&'a RawValue>,
    #[serde(rename = "requestedAt", borrow, default)]
    requested_at: Option<&'a RawValue>,
}

/// `0001-01-01T00:00:00Z`: the first instant a .NET `DateTime` (the official
/// processor's type for `requestedAt`) can hold.
const MIN_REQUESTED_AT: Micros = Micros(-62_135_596_800_000_000);
/// `10000-01-01T00:00:00Z`, excluded: past the last instant of a .NET `DateTime`, and
/// past what `Micros::write_millis` can print (four-digit years).
const END_REQUESTED_AT: Micros = Micros(253_402_300_800_000_000);

impl Payment {
    /// Parses `{"correlationId": UUID, "amount": number, "requestedAt": ISO-8601}`.
    /// Unknown fields are ignored. All three fields are required (the official
    /// processor would store defaults for missing ones; an emulator that refuses them
    /// finds client bugs instead). `amount` may be any JSON number, negative and zero
    /// included as the official one takes them, and is rounded to cents half to even.
    pub(crate) fn parse(body: &[u8]) -> Result<Payment, InputError> {
        let raw: RawPayment<'_> = parse_object(body)?;
        let correlation_id = parse_uuid_field("correlationId", raw.correlation_id)?;
        let amount_raw = raw
            .amount
            .ok_or_else(|| InputError::new("amount", "amount is required"))?;
        let amount = round_json_number_to_cents(amount_raw.get()).map_err(|e| {
            InputError::new(
                "amount",
                match e {
                    AmountError::NotANumber => "amount must be a JSON number",
                    AmountError::TooLarge => "amount is too large (at most ±1000000000.00)",
                },
            )
        })?;
        let at_raw = raw
            .requested_at
            .ok_or_else(|| InputError::new("requestedAt", "requestedAt is required"))?;
        let at_text: Cow<'_, str> = serde_json::from_str(at_raw.get())
            .map_err(|_| InputError::new("requestedAt", "requestedAt must be a string"))?;
        let requested_at = Micros::parse(&at_text)
            .ok()
            .filter(|t| (MIN_REQUESTED_AT..END_REQUESTED_AT).contains(t))
            .ok_or_else(|| {
                InputError::new(
                    "requestedAt",
                    "requestedAt must be an ISO-8601 timestamp between years 0001 and 9999, \
                     such as 2025-07-10T12:34:56.789Z",
                )
            })?;
        Ok(Payment {
            correlation_id,
            amount,
            requested_at,
        })
    }
}

/// Deserializes a body that must be a JSON object (serde would also read a struct
/// from a JSON array).
fn parse_object<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, InputError> {
    if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(InputError::new("body", "body must be a JSON object"));
    }
    serde_json::from_slice(body)
        .map_err(|e| InputError::new("body", format!("body must be a JSON object: {e}")))
}

fn parse_uuid_field(field: &'static str, raw: Option<&RawValue>) -> Result<Uuid, InputError> {
    let raw = raw.ok_or_else(|| InputError::new(field, format!("{field} is required")))?;
    let text: Cow<'_, str> = serde_json::from_str(raw.get())
        .map_err(|_| InputError::new(field, format!("{field} must be a string")))?;
    parse_uuid(&text).ok_or_else(|| InputError::new(field, format!("{field} must be a UUID")))
}

/// A UUID in any of the forms .NET's `Guid` parser takes (hyphenated, simple, braced)
/// plus the URN form.
pub(crate) fn parse_uuid(text: &str) -> Option<Uuid> {
    Uuid::try_parse(text.trim()).ok()
}

/// The body of `PUT /admin/configurations/delay`: `{"delay": ms}`, a whole number of
/// milliseconds from 0 to `i32::MAX` (the official field is a .NET `int`; a negative
/// delay, which it would take and ignore, is refused here as the mistake it is).
pub(crate) fn parse_delay(body: &[u8]) -> Result<u32, InputError> {
    let v = config_field(body, "delay")?;
    v.as_u64()
        .filter(|&ms| ms <= i32::MAX as u64)
        .map(|ms| ms as u32)
        .ok_or_else(|| {
            InputError::new(
                "delay",
                "delay must be a whole number of milliseconds from 0 to 2147483647",
            )
        })
}

/// The body of `PUT /admin/configurations/failure`: `{"failure": bool}`.
pub(crate) fn parse_failure(body: &[u8]) -> Result<bool, InputError> {
    config_field(body, "failure")?
        .as_bool()
        .ok_or_else(|| InputError::new("failure", "failure must be true or false"))
}

/// The body of `PUT /admin/configurations/token`: `{"token": "..."}`, not empty (an
/// empty token would match a request that sends the header empty).
pub(crate) fn parse_token(body: &[u8]) -> Result<String, InputError> {
    match config_field(body, "token")? {
        serde_json::Value::String(s) if !s.is_empty() => Ok(s),
        _ => Err(InputError::new("token", "token must be a non-empty string")),
    }
}

fn config_field(body: &[u8], field: &'static str) -> Result<serde_json::Value, InputError> {
    let mut map: serde_json::Map<String, serde_json::Value> = parse_object(body)?;
    map.remove(field)
        .ok_or_else(|| InputError::new(field, format!("{field} is required")))
}

/// The `from`/`to` query of `GET /admin/payments-summary`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct SummaryBounds {
    pub(crate) from: Option<Micros>,
    pub(crate) to: Option<Micros>,
}

impl SummaryBounds {
    /// The inclusive window to select, or `None` for everything. The official
    /// processor's SQL is `requested_at BETWEEN @from AND @to OR @from IS NULL OR @to
    /// IS NULL`: a single bound selects everything, and `from` after `to` selects
    /// nothing (not an error).
    pub(crate) fn window(&self) -> Option<(Micros, Micros)> {
        Some((self.from?, self.to?))
    }

    /// Parses a query string (without the `?`). Unknown parameters are ignored; an
    /// empty value counts as absent (as ASP.NET binds `from=` to a null `DateTime?`);
    /// an invalid timestamp or a repeated bound is an error.
    pub(crate) fn parse(query: &str) -> Result<SummaryBounds, InputError> {
        let mut b = SummaryBounds::default();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let (field, slot) = match key {
                "from" => ("from", &mut b.from),
                "to" => ("to", &mut b.to),
                _ => continue,
            };
            let value = model::summary::percent_decode(value).ok_or_else(|| {
                InputError::new(field, format!("{field} is not valid percent-encoding"))
            })?;
            if value.is_empty() {
                continue;
            }
            let ts = Micros::parse(&value)
                .map_err(|e| InputError::new(field, format!("{field} {e}")))?;
            if slot.replace(ts).is_some() {
                return Err(InputError::new(field, format!("{field} is given twice")));
            }
        }
        Ok(b)
    }
}

/// Why a JSON number could not be made into cents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AmountError {
    NotANumber,
    TooLarge,
}

/// Rounds the text of a JSON number to cents, half to even (banker's rounding), without
/// ever going through a binary float: `19.905` → 1990, `19.915` → 1992, `1e-9` → 0,
/// `-0.005` → 0. Magnitudes above [`MAX_PAYMENT_CENTS`] are refused: it keeps every sum
/// of 90 million payments inside an `i64`, and payroute never sends more.
pub(crate) fn round_json_number_to_cents(text: &str) -> Result<Cents, AmountError> {
    let model::money::DecimalLiteral {
        negative,
        digits,
        exp,
    } = model::money::DecimalLiteral::parse(text).ok_or(AmountError::NotANumber)?;
    // In cents: value = digits × 10^(exp + 2). Keep the digits above the cent and
    // round on the ones below it.
    let scale = exp + 2;
    let kept_len = digits.len() as i64 + scale.min(0);
    let (kept, dropped): (&[u8], &[u8]) = if scale >= 0 {
        (&digits, &[])
    } else if kept_len <= 0 {
        (&[], if kept_len == 0 { &digits } else { &[] })
    } else {
        digits.split_at(kept_len as usize)
    };
    let mut cents: i64 = 0;
    let push = |cents: i64, d: u8| -> Result<i64, AmountError> {
        let v = cents
            .checked_mul(10)
            .and_then(|v| v.checked_add(i64::from(d)))
            .ok_or(AmountError::TooLarge)?;
        if v > MAX_PAYMENT_CENTS {
            return Err(AmountError::TooLarge);
        }
        Ok(v)
    };
    for &d in kept {
        cents = push(cents, d)?;
    }
    if scale > 0 && cents != 0 {
        for _ in 0..scale {
            cents = push(cents, 0)?;
        }
    }
    // Half to even: above half rounds up, below half down, exactly half to the even
    // neighbour. A `kept_len < 0` number is below a tenth of a cent: no rounding up.
    if let Some((&first, rest)) = dropped.split_first() {
        let above_half = first > 5 || (first == 5 && rest.iter().any(|&d| d != 0));
        let exactly_half = first == 5 && !above_half;
        if above_half || (exactly_half && cents % 2 == 1) {
            cents += 1;
            if cents > MAX_PAYMENT_CENTS {
                return Err(AmountError::TooLarge);
            }
        }
    }
    Ok(Cents(if negative { -cents } else { cents }))
}

/// A non-negative decimal `units × 10^-scale`: the fee per transaction, kept as the
/// decimal the operator typed (the official processor reads it with `decimal.Parse`),
/// so that fees are exact products rather than float approximations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Fee {
    units: i64,
    scale: u32,
}

/// Decimal places a fee may have: far more than any fee needs, few enough that
/// `cents × units` of 90 million payments fits an `i128`.
const MAX_FEE_SCALE: u32 = 18;

impl Fee {
    /// The fee given on the command line as an `f64`, back to the decimal that was
    /// typed: Rust prints an `f64` as the shortest text that reads back to it, so
    /// `0.05` gives `0.05` exactly. Refuses negatives, NaN and fees above 1 (100%):
    /// a `5` meant as 5% would otherwise take all the money.
    pub(crate) fn from_f64(fee: f64) -> Result<Fee, String> {
        if !fee.is_finite() || !(0.0..=1.0).contains(&fee) {
            return Err(format!(
                "fee must be a fraction between 0 and 1 (0.05 = 5%), not {fee}"
            ));
        }
        let text = format!("{fee}");
        let (int, frac) = text.split_once('.').unwrap_or((&text, ""));
        let frac = frac.trim_end_matches('0');
        if frac.len() > MAX_FEE_SCALE as usize {
            return Err(format!(
                "fee {fee} has more than {MAX_FEE_SCALE} decimal places"
            ));
        }
        let units: i64 = format!("{int}{frac}")
            .parse()
            .map_err(|_| format!("fee {fee} is not a decimal number"))?;
        Ok(Fee {
            units,
            scale: frac.len() as u32,
        })
    }

    /// `total × fee`, exact, printed with `2 + scale` decimals as .NET prints the
    /// product of two `decimal`s (`19.90 × 0.05` = `0.9950`).
    pub(crate) fn of(&self, total: Cents) -> String {
        format_scaled(i128::from(total.0) * i128::from(self.units), self.scale + 2)
    }
}

impl std::fmt::Display for Fee {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&format_scaled(i128::from(self.units), self.scale))
    }
}

/// `value × 10^-scale` as a JSON number with exactly `scale` decimals.
fn format_scaled(value: i128, scale: u32) -> String {
    let sign = if value < 0 { "-" } else { "" };
    let abs = value.unsigned_abs();
    if scale == 0 {
        return format!("{sign}{abs}");
    }
    let p = 10u128.pow(scale);
    format!(
        "{sign}{}.{:0width$}",
        abs / p,
        abs % p,
        width = scale as usize
    )
}

/// A stored `requestedAt` as ISO-8601 UTC, at the precision it was stored with:
/// `2025-07-10T12:34:56.789Z` when it has no sub-millisecond part (what payroute sends
/// comes back byte for byte), `2025-07-10T12:34:56.789123Z` otherwise.
pub(crate) fn format_timestamp(t: Micros) -> String {
    let mut s = t.to_millis_string();
    let sub_ms = t.0.rem_euclid(1000);
    if sub_ms != 0 {
        s.pop();
        s.push_str(&format!("{sub_ms:03}Z"));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounds_amounts_half_to_even() {
        let cases = [
            ("19.90", 1990),
            ("20.05", 2005),
            ("19.9", 1990),
            ("19", 1900),
            ("0", 0),
            ("-0", 0),
            ("19.904", 1990),
            ("19.906", 1991),
            ("19.905", 1990), // tie, 0 is even: down
            ("19.915", 1992), // tie, 1 is odd: up
            ("19.9050000001", 1991),
            ("0.005", 0),
            ("0.015", 2),
            ("0.025", 2),
            ("0.0049999", 0),
            ("-19.915", -1992),
            ("-19.905", -1990),
            ("-0.005", 0),
            ("1.99e1", 1990),
            ("1990e-2", 1990),
            ("19905e-3", 1990),
            ("19915E-3", 1992),
            ("1e-9", 0),
            ("5e-3", 0),
            ("6e-3", 1),
            ("1e-1000000000", 0),
            ("0.995", 100),
            ("9.995", 1000),
            ("1000000000", MAX_PAYMENT_CENTS),
            ("999999999.994", MAX_PAYMENT_CENTS - 1),
            ("999999999.995", MAX_PAYMENT_CENTS), // tie, 9 is odd: up to the limit
            ("0e999999999", 0),
            ("0.00000000000000000000000000001", 0),
            ("1000000000.005", MAX_PAYMENT_CENTS), // tie, 0 is even: down to the limit
        ];
        for (text, cents) in cases {
            assert_eq!(round_json_number_to_cents(text), Ok(Cents(cents)), "{text}");
        }
    }

    #[test]
    fn refuses_what_is_not_a_number_or_too_large() {
        for text in [
            "", "-", "00", "1.", ".5", "1e", "1e+", "+1", "01", "NaN", "\"1\"", "1.0.0", "true",
            "1 ",
        ] {
            assert_eq!(
                round_json_number_to_cents(text),
                Err(AmountError::NotANumber),
                "{text}"
            );
        }
        for text in [
            "1000000000.01",
            "1000000000.006",
            "1e10",
            "1e400",
            "-1e10",
            "99999999999999999999999",
        ] {
            assert_eq!(
                round_json_number_to_cents(text),
                Err(AmountError::TooLarge),
                "{text}"
            );
        }
    }

    /// Half-to-even rounding of `sign int.frac` to cents, computed another way: as
    /// the exact fraction `(int × 10^k + frac) × 100 / 10^k`.
    fn reference_cents(negative: bool, int: u64, frac: &str) -> i64 {
        let k = frac.len() as u32;
        let den = 10u128.pow(k);
        let num = (u128::from(int) * den + frac.parse::<u128>().unwrap_or(0)) * 100;
        let (mut q, r) = (num / den, num % den);
        if 2 * r > den || (2 * r == den && q % 2 == 1) {
            q += 1;
        }
        let q = q as i64;
        if negative {
            -q
        } else {
            q
        }
    }

    proptest::proptest! {
        #[test]
        fn rounding_matches_exact_fractions(
            negative: bool,
            int in 0u64..1_000_000_000,
            frac in "[0-9]{0,12}",
        ) {
            let text = if frac.is_empty() {
                format!("{}{int}", if negative { "-" } else { "" })
            } else {
                format!("{}{int}.{frac}", if negative { "-" } else { "" })
            };
            let expected = reference_cents(negative, int, &frac);
            proptest::prop_assert_eq!(round_json_number_to_cents(&text), Ok(Cents(expected)));
            // The same number written with an exponent.
            let digits = format!("{int}{frac}");
            let exp_form = format!("{}{digits}e-{}", if negative { "-" } else { "" }, frac.len());
            proptest::prop_assert_eq!(round_json_number_to_cents(&exp_form), Ok(Cents(expected)));
        }

        #[test]
        fn rounding_never_panics(text in "\\PC{0,40}") {
            let _ = round_json_number_to_cents(&text);
        }

        #[test]
        fn timestamps_format_like_jiff_and_read_back(
            us in MIN_REQUESTED_AT.0..END_REQUESTED_AT.0,
        ) {
            let ours = format_timestamp(Micros(us));
            let ts = jiff::Timestamp::from_microsecond(us).unwrap();
            let fraction = if us.rem_euclid(1000) == 0 { "%.3f" } else { "%.6f" };
            let theirs = ts.strftime(&format!("%Y-%m-%dT%H:%M:%S{fraction}Z")).to_string();
            proptest::prop_assert_eq!(&ours, &theirs);
            proptest::prop_assert_eq!(Micros::parse(&ours), Ok(Micros(us)));
        }
    }

    #[test]
    fn parses_payments() {
        let body = br#"{"correlationId":"4a7901b8-7d26-4d9d-aa19-4dc1c7cf60b3","amount":19.905,"requestedAt":"2025-07-10T12:34:56.789Z","extra":1}"#;
        let p = Payment::parse(body).unwrap();
        assert_eq!(p.amount, Cents(1990));
        assert_eq!(format_timestamp(p.requested_at), "2025-07-10T12:34:56.789Z");
        assert_eq!(
            p.correlation_id.to_string(),
            "4a7901b8-7d26-4d9d-aa19-4dc1c7cf60b3"
        );
    }

    #[test]
    fn refuses_bad_payments_naming_the_field() {
        let id = "4a7901b8-7d26-4d9d-aa19-4dc1c7cf60b3";
        let at = "2025-07-10T12:34:56.789Z";
        let cases: Vec<(String, &str)> = vec![
            ("not json".into(), "body"),
            ("[1,2,3]".into(), "body"),
            ("{".into(), "body"),
            (
                format!(r#"{{"amount":1,"requestedAt":"{at}"}}"#),
                "correlationId",
            ),
            (
                format!(r#"{{"correlationId":"nope","amount":1,"requestedAt":"{at}"}}"#),
                "correlationId",
            ),
            (
                format!(r#"{{"correlationId":7,"amount":1,"requestedAt":"{at}"}}"#),
                "correlationId",
            ),
            (
                format!(r#"{{"correlationId":"{id}","requestedAt":"{at}"}}"#),
                "amount",
            ),
            (
                format!(r#"{{"correlationId":"{id}","amount":"1","requestedAt":"{at}"}}"#),
                "amount",
            ),
            (
                format!(r#"{{"correlationId":"{id}","amount":1e30,"requestedAt":"{at}"}}"#),
                "amount",
            ),
            (
                format!(r#"{{"correlationId":"{id}","amount":1}}"#),
                "requestedAt",
            ),
            (
                format!(r#"{{"correlationId":"{id}","amount":1,"requestedAt":"yesterday"}}"#),
                "requestedAt",
            ),
            (
                format!(r#"{{"correlationId":"{id}","amount":1,"requestedAt":12}}"#),
                "requestedAt",
            ),
            (
                format!(
                    r#"{{"correlationId":"{id}","amount":1,"requestedAt":"-0001-01-01T00:00:00Z"}}"#
                ),
                "requestedAt",
            ),
        ];
        for (body, field) in cases {
            let e = Payment::parse(body.as_bytes()).unwrap_err();
            assert_eq!(e.field, field, "{body}: {e:?}");
            assert!(e.to_json().contains(field), "{body}");
        }
    }

    #[test]
    fn parses_admin_bodies() {
        assert_eq!(parse_delay(br#"{"delay":100}"#), Ok(100));
        assert_eq!(parse_delay(br#"{"delay":0}"#), Ok(0));
        for bad in [
            &br#"{"delay":-1}"#[..],
            br#"{"delay":1.5}"#,
            br#"{"delay":"1"}"#,
            br#"{}"#,
            br#"{"delay":2147483648}"#,
        ] {
            assert_eq!(parse_delay(bad).unwrap_err().field, "delay");
        }
        assert_eq!(parse_failure(br#"{"failure":true}"#), Ok(true));
        assert_eq!(
            parse_failure(br#"{"failure":"yes"}"#).unwrap_err().field,
            "failure"
        );
        assert_eq!(parse_token(br#"{"token":"abc"}"#), Ok("abc".to_string()));
        assert_eq!(parse_token(br#"{"token":""}"#).unwrap_err().field, "token");
        assert_eq!(parse_token(b"[]").unwrap_err().field, "body");
    }

    #[test]
    fn parses_summary_bounds() {
        let t = |s: &str| Micros::parse(s).unwrap();
        let b = SummaryBounds::parse("from=2025-07-10T12:34:56.000Z&to=2025-07-10T12:35:00.000Z")
            .unwrap();
        assert_eq!(
            b.window(),
            Some((t("2025-07-10T12:34:56Z"), t("2025-07-10T12:35:00Z")))
        );
        // One bound alone selects everything, as in the official SQL.
        assert_eq!(
            SummaryBounds::parse("from=2025-07-10T12:34:56Z")
                .unwrap()
                .window(),
            None
        );
        assert_eq!(
            SummaryBounds::parse("to=2025-07-10T12:34:56Z&x=1")
                .unwrap()
                .window(),
            None
        );
        assert_eq!(SummaryBounds::parse("from=&to=").unwrap().window(), None);
        assert_eq!(SummaryBounds::parse("").unwrap().window(), None);
        // Percent-encoded colons and offsets.
        let b = SummaryBounds::parse(
            "from=2025-07-10T09%3A34%3A56-03%3A00&to=2025-07-10T12:34:56%2B00:00",
        )
        .unwrap();
        assert_eq!(
            b.window(),
            Some((t("2025-07-10T12:34:56Z"), t("2025-07-10T12:34:56Z")))
        );
        // from after to is an empty window, not an error.
        assert!(SummaryBounds::parse("from=2025-07-11T00:00:00Z&to=2025-07-10T00:00:00Z").is_ok());
        assert_eq!(
            SummaryBounds::parse("from=yesterday").unwrap_err().field,
            "from"
        );
        assert_eq!(SummaryBounds::parse("to=%zz").unwrap_err().field, "to");
        assert_eq!(
            SummaryBounds::parse("to=2025-07-10T00:00:00Z&to=2025-07-10T00:00:00Z")
                .unwrap_err()
                .field,
            "to"
        );
    }

    #[test]
    fn fees_are_exact_decimals() {
        let f = Fee::from_f64(0.05).unwrap();
        assert_eq!(f.to_string(), "0.05");
        assert_eq!(f.of(Cents(1990)), "0.9950");
        assert_eq!(f.of(Cents(0)), "0.0000");
        assert_eq!(Fee::from_f64(0.15).unwrap().of(Cents(2005)), "3.0075");
        assert_eq!(Fee::from_f64(0.07).unwrap().to_string(), "0.07");
        assert_eq!(Fee::from_f64(1.0).unwrap().to_string(), "1");
        assert_eq!(Fee::from_f64(0.0).unwrap().of(Cents(100)), "0.00");
        // 90 million payments of the largest amount at a fee with many decimals.
        let big = Fee::from_f64(0.123456789012345).unwrap();
        assert_eq!(big.to_string(), "0.123456789012345");
        let total = Cents(MAX_PAYMENT_CENTS * 90_000_000);
        assert_eq!(big.of(total), "11111111011111050.00000000000000000");
        assert!(big.of(Cents(-1990)).starts_with("-2.4567"));
        for bad in [-0.01, 1.01, 5.0, f64::NAN, f64::INFINITY] {
            assert!(Fee::from_f64(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn formats_timestamps_at_their_precision() {
        let t = |s: &str| format_timestamp(Micros::parse(s).unwrap());
        assert_eq!(t("2025-07-10T12:34:56.789Z"), "2025-07-10T12:34:56.789Z");
        assert_eq!(t("2025-07-10T12:34:56Z"), "2025-07-10T12:34:56.000Z");
        assert_eq!(
            t("2025-07-10T12:34:56.000001Z"),
            "2025-07-10T12:34:56.000001Z"
        );
        assert_eq!(
            t("2025-07-10T12:34:56.7891234Z"),
            "2025-07-10T12:34:56.789123Z"
        );
        assert_eq!(
            t("1969-12-31T23:59:59.999999Z"),
            "1969-12-31T23:59:59.999999Z"
        );
        assert_eq!(t("0001-01-01T00:00:00Z"), "0001-01-01T00:00:00.000Z");
        assert_eq!(
            format_timestamp(MIN_REQUESTED_AT),
            "0001-01-01T00:00:00.000Z"
        );
        assert_eq!(
            format_timestamp(Micros(END_REQUESTED_AT.0 - 1)),
            "9999-12-31T23:59:59.999999Z"
        );
    }
}
