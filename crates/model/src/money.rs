//! Money is integer cents from parse to print: never a binary floating point value.

use std::fmt;

/// An amount of money in cents. Sums stay exact; `Display` prints a JSON number with
/// exactly two decimals.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Cents(pub i64);

/// The largest amount one payment may carry: one billion, in cents. It keeps every sum
/// of up to 90 million payments inside an `i64`, far beyond what one deployment holds.
pub const MAX_PAYMENT_CENTS: i64 = 100_000_000_000;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AmountError {
    #[error("must be a number")]
    NotANumber,
    #[error("must be greater than zero")]
    NotPositive,
    #[error("must have at most 2 decimal places")]
    TooPrecise,
    #[error("is too large (at most 1000000000.00)")]
    TooLarge,
}

impl Cents {
    /// Parses the text of a JSON number (as it appears in a request body) into exact
    /// cents. Accepts exponents (`1.99e1`) and trailing zeros (`19.900`); refuses
    /// anything that is not a positive whole number of cents.
    pub fn parse_json_number(text: &str) -> Result<Cents, AmountError> {
        let DecimalLiteral {
            negative,
            mut digits,
            exp,
        } = DecimalLiteral::parse(text).ok_or(AmountError::NotANumber)?;
        // Scale to cents: value_in_cents = digits * 10^(exp + 2).
        let mut scale = exp + 2;
        // Drop trailing zeros that the negative scale would divide away.
        while scale < 0 && digits.last() == Some(&0) {
            digits.pop();
            scale += 1;
        }
        let all_zero = digits.iter().all(|&d| d == 0);
        if all_zero {
            return Err(AmountError::NotPositive);
        }
        if negative {
            return Err(AmountError::NotPositive);
        }
        if scale < 0 {
            return Err(AmountError::TooPrecise);
        }
        let mut value: i64 = 0;
        for &d in &digits {
            value = value
                .checked_mul(10)
                .and_then(|v| v.checked_add(i64::from(d)))
                .ok_or(AmountError::TooLarge)?;
            if value > MAX_PAYMENT_CENTS {
                return Err(AmountError::TooLarge);
            }
        }
        for _ in 0..scale {
            value = value.checked_mul(10).ok_or(AmountError::TooLarge)?;
            if value > MAX_PAYMENT_CENTS {
                return Err(AmountError::TooLarge);
            }
        }
        Ok(Cents(value))
    }
}

/// The text of a JSON number, split exactly: value = (−1)^`negative` × `digits` ×
/// 10^`exp`, `digits` being the significant digits (0–9), most significant first. No
/// binary floating point is involved, so nothing is lost before the caller decides how
/// to round.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecimalLiteral {
    pub negative: bool,
    pub digits: Vec<u8>,
    pub exp: i64,
}

impl DecimalLiteral {
    /// Reads exactly the JSON number grammar (RFC 8259 §6): optional `-`, an integer
    /// without leading zeros, optional fraction, optional exponent. `None` for
    /// anything else (`NaN`, `.5`, `1.`, `+1`, strings). The exponent is clamped to
    /// ±1,000,000: past that any value is zero or too large for any amount.
    pub fn parse(text: &str) -> Option<DecimalLiteral> {
        let b = text.as_bytes();
        let mut i = 0;
        let negative = b.first() == Some(&b'-');
        if negative {
            i += 1;
        }
        let mut digits: Vec<u8> = Vec::with_capacity(b.len());
        let int_start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            digits.push(b[i] - b'0');
            i += 1;
        }
        let int_len = i - int_start;
        if int_len == 0 || (int_len > 1 && b[int_start] == b'0') {
            return None;
        }
        let mut exp: i64 = 0;
        if i < b.len() && b[i] == b'.' {
            i += 1;
            let frac_start = i;
            while i < b.len() && b[i].is_ascii_digit() {
                digits.push(b[i] - b'0');
                i += 1;
            }
            if i == frac_start {
                return None;
            }
            exp -= (i - frac_start) as i64;
        }
        if i < b.len() && (b[i] == b'e' || b[i] == b'E') {
            i += 1;
            let mut exp_neg = false;
            if i < b.len() && (b[i] == b'+' || b[i] == b'-') {
                exp_neg = b[i] == b'-';
                i += 1;
            }
            let exp_start = i;
            let mut e: i64 = 0;
            while i < b.len() && b[i].is_ascii_digit() {
                e = (e * 10 + i64::from(b[i] - b'0')).min(1_000_000);
                i += 1;
            }
            if i == exp_start {
                return None;
            }
            exp += if exp_neg { -e } else { e };
        }
        (i == b.len()).then_some(DecimalLiteral {
            negative,
            digits,
            exp,
        })
    }
}

impl fmt::Display for Cents {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.0 < 0 { "-" } else { "" };
        let abs = self.0.unsigned_abs();
        write!(f, "{sign}{}.{:02}", abs / 100, abs % 100)
    }
}

impl std::ops::Add for Cents {
    type Output = Cents;
    fn add(self, rhs: Cents) -> Cents {
        Cents(self.0 + rhs.0)
    }
}

impl std::ops::AddAssign for Cents {
    fn add_assign(&mut self, rhs: Cents) {
        self.0 += rhs.0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_the_usual_forms() {
        let ok = [
            ("19.90", 1990),
            ("20.05", 2005),
            ("1", 100),
            ("0.01", 1),
            ("19.900000", 1990),
            ("1.99e1", 1990),
            ("1990e-2", 1990),
            ("1E2", 10000),
            ("0.5", 50),
            ("1000000000", MAX_PAYMENT_CENTS),
        ];
        for (text, cents) in ok {
            assert_eq!(Cents::parse_json_number(text), Ok(Cents(cents)), "{text}");
        }
    }

    #[test]
    fn refuses_bad_amounts() {
        use AmountError::*;
        let bad = [
            ("0", NotPositive),
            ("0.00", NotPositive),
            ("-1", NotPositive),
            ("-0.0", NotPositive),
            ("19.905", TooPrecise),
            ("0.001", TooPrecise),
            ("1e-3", TooPrecise),
            ("1000000000.01", TooLarge),
            ("1e400", TooLarge),
            ("99999999999999999999999", TooLarge),
            ("", NotANumber),
            ("01", NotANumber),
            ("1.", NotANumber),
            (".5", NotANumber),
            ("1e", NotANumber),
            ("NaN", NotANumber),
            ("Infinity", NotANumber),
            ("\"19.90\"", NotANumber),
            ("1.0.0", NotANumber),
        ];
        for (text, err) in bad {
            assert_eq!(Cents::parse_json_number(text), Err(err), "{text}");
        }
    }

    #[test]
    fn prints_two_decimals() {
        assert_eq!(Cents(1990).to_string(), "19.90");
        assert_eq!(Cents(5).to_string(), "0.05");
        assert_eq!(Cents(0).to_string(), "0.00");
        assert_eq!(Cents(123456789).to_string(), "1234567.89");
    }

    proptest! {
        #[test]
        fn print_then_parse_round_trips(c in 1i64..=MAX_PAYMENT_CENTS) {
            prop_assert_eq!(Cents::parse_json_number(&Cents(c).to_string()), Ok(Cents(c)));
        }

        #[test]
        fn never_panics(s in "\\PC{0,40}") {
            let _ = Cents::parse_json_number(&s);
        }
    }
}
