//! The arithmetic of the official scripts, reproduced to the last digit: JavaScript
//! numbers (IEEE doubles) converted to and from `big.js` decimals.
//!
//! The scripts mix the two: `new Big(x)` reads a number through its shortest decimal
//! string (`String(x)`), computes exactly in decimal, and `.toNumber()` goes back to
//! the nearest double. Rounding the p99 and the bonus uses `big.js`'s default mode,
//! half-up on that decimal string, so `1.255` rounds to `1.26` (a binary double
//! rounding would give 1.25). [`Dec`] is that decimal; the free functions are the
//! expressions of `handleSummary`.

use std::fmt;

/// An exact decimal `mantissa × 10^-scale`, like a `big.js` value. The mantissa is an
/// `i128`: the scripts only multiply two doubles of at most 17 significant digits,
/// which fits with room to spare; an overflow returns `None` and the callers fall
/// back to double arithmetic (never reached by real figures).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dec {
    mantissa: i128,
    scale: u32,
}

impl Dec {
    pub const ZERO: Dec = Dec {
        mantissa: 0,
        scale: 0,
    };

    /// `new Big(x)` for a JavaScript number: through its shortest round-trip decimal
    /// representation. `None` for NaN and infinities (`big.js` throws on those).
    pub fn from_f64(x: f64) -> Option<Dec> {
        if !x.is_finite() {
            return None;
        }
        // Rust's `Display` for f64 prints the shortest digits that round-trip, the
        // same digits as JavaScript's `String(x)`, without exponent notation.
        Dec::parse(&format!("{x}"))
    }

    /// Parses `-?digits(.digits)?`.
    pub fn parse(text: &str) -> Option<Dec> {
        let (negative, digits) = match text.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, text),
        };
        let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
        if int.is_empty()
            || !int.bytes().all(|b| b.is_ascii_digit())
            || !frac.bytes().all(|b| b.is_ascii_digit())
        {
            return None;
        }
        let mut mantissa: i128 = 0;
        for b in int.bytes().chain(frac.bytes()) {
            mantissa = mantissa
                .checked_mul(10)?
                .checked_add(i128::from(b - b'0'))?;
        }
        let d = Dec {
            mantissa: if negative { -mantissa } else { mantissa },
            scale: u32::try_from(frac.len()).ok()?,
        };
        Some(d.normalized())
    }

    /// Drops trailing zero digits of the fraction, keeping mantissas small.
    fn normalized(mut self) -> Dec {
        while self.scale > 0 && self.mantissa % 10 == 0 {
            self.mantissa /= 10;
            self.scale -= 1;
        }
        self
    }

    fn rescaled(self, scale: u32) -> Option<Dec> {
        let factor = 10i128.checked_pow(scale.checked_sub(self.scale)?)?;
        Some(Dec {
            mantissa: self.mantissa.checked_mul(factor)?,
            scale,
        })
    }

    pub fn checked_add(self, other: Dec) -> Option<Dec> {
        let scale = self.scale.max(other.scale);
        let (a, b) = (self.rescaled(scale)?, other.rescaled(scale)?);
        Some(
            Dec {
                mantissa: a.mantissa.checked_add(b.mantissa)?,
                scale,
            }
            .normalized(),
        )
    }

    pub fn checked_sub(self, other: Dec) -> Option<Dec> {
        self.checked_add(Dec {
            mantissa: -other.mantissa,
            scale: other.scale,
        })
    }

    pub fn checked_mul(self, other: Dec) -> Option<Dec> {
        Some(
            Dec {
                mantissa: self.mantissa.checked_mul(other.mantissa)?,
                scale: self.scale.checked_add(other.scale)?,
            }
            .normalized(),
        )
    }

    /// `big.js` `round(dp)` with its default rounding mode, `ROUND_HALF_UP`: to the
    /// nearest, ties away from zero.
    pub fn round(self, dp: u32) -> Dec {
        if self.scale <= dp {
            return self;
        }
        let drop = self.scale - dp;
        // drop <= 38 here since scale came from at most 38 digits.
        let Some(factor) = 10i128.checked_pow(drop) else {
            return Dec::ZERO;
        };
        let q = self.mantissa / factor;
        let r = (self.mantissa % factor).abs();
        let up = r * 2 >= factor;
        let q = if up { q + self.mantissa.signum() } else { q };
        Dec {
            mantissa: q,
            scale: dp,
        }
        .normalized()
    }

    /// `.toNumber()`: the nearest double to the exact decimal (Rust's float parsing is
    /// correctly rounded, as JavaScript's `Number(string)`).
    pub fn to_f64(self) -> f64 {
        self.to_string().parse().unwrap_or(f64::NAN)
    }
}

impl fmt::Display for Dec {
    /// Plain decimal notation without trailing zeros, as `big.js` prints numbers of
    /// ordinary size.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.mantissa < 0 { "-" } else { "" };
        let digits = self.mantissa.unsigned_abs().to_string();
        let scale = self.scale as usize;
        if scale == 0 {
            return write!(f, "{sign}{digits}");
        }
        if digits.len() > scale {
            let (i, frac) = digits.split_at(digits.len() - scale);
            write!(f, "{sign}{i}.{frac}")
        } else {
            write!(f, "{sign}0.{}{digits}", "0".repeat(scale - digits.len()))
        }
    }
}

/// `new Big(a).plus(b).toNumber()`.
pub fn big_add(a: f64, b: f64) -> f64 {
    (|| Some(Dec::from_f64(a)?.checked_add(Dec::from_f64(b)?)?.to_f64()))().unwrap_or(a + b)
}

/// `new Big(a).minus(b).toNumber()`.
pub fn big_sub(a: f64, b: f64) -> f64 {
    (|| Some(Dec::from_f64(a)?.checked_sub(Dec::from_f64(b)?)?.to_f64()))().unwrap_or(a - b)
}

/// `new Big(a).times(b).toNumber()`.
pub fn big_mul(a: f64, b: f64) -> f64 {
    (|| Some(Dec::from_f64(a)?.checked_mul(Dec::from_f64(b)?)?.to_f64()))().unwrap_or(a * b)
}

/// `new Big(x).round(dp).toNumber()`.
pub fn big_round(x: f64, dp: u32) -> f64 {
    match Dec::from_f64(x) {
        Some(d) => d.round(dp).to_f64(),
        None => x,
    }
}

/// `new Big(lp).plus(new Big(lp).times(bonus)).minus(new Big(lp).times(fine))
/// .toNumber()`: the profit, exact until the final conversion.
pub fn big_profit(lp: f64, bonus: f64, fine: f64) -> f64 {
    (|| {
        let l = Dec::from_f64(lp)?;
        let plus = l.checked_mul(Dec::from_f64(bonus)?)?;
        let minus = l.checked_mul(Dec::from_f64(fine)?)?;
        Some(l.checked_add(plus)?.checked_sub(minus)?.to_f64())
    })()
    .unwrap_or(lp + lp * bonus - lp * fine)
}

/// `${new Big(x).times(100)}`: a fraction printed as a percentage.
pub fn big_percent_string(x: f64) -> String {
    (|| {
        Some(
            Dec::from_f64(x)?
                .checked_mul(Dec::from_f64(100.0)?)?
                .to_string(),
        )
    })()
    .unwrap_or_else(|| js_string(x * 100.0))
}

/// `String(x)` for a JavaScript number: shortest round-trip digits, plain notation
/// for 1e-6 <= |x| < 1e21, exponent notation (`1e-7`, `1.5e+21`) outside, `NaN`,
/// `Infinity`.
pub fn js_string(x: f64) -> String {
    if x.is_nan() {
        return "NaN".into();
    }
    if x.is_infinite() {
        return if x > 0.0 {
            "Infinity".into()
        } else {
            "-Infinity".into()
        };
    }
    if x == 0.0 {
        return "0".into();
    }
    let a = x.abs();
    if (1e-6..1e21).contains(&a) {
        return format!("{x}");
    }
    let e = format!("{x:e}");
    match e.split_once('e') {
        Some((m, exp)) if !exp.starts_with('-') => format!("{m}e+{exp}"),
        _ => e,
    }
}

/// A number as `JSON.stringify` prints it: `String(x)`, or `null` when not finite.
pub fn json_number(x: f64) -> String {
    if x.is_finite() {
        js_string(x)
    } else {
        "null".into()
    }
}

/// serde helper: serializes an `f64` exactly as `JSON.stringify` would.
pub fn serialize_js<S: serde::Serializer>(x: &f64, s: S) -> Result<S::Ok, S::Error> {
    use serde::Serialize;
    let raw = serde_json::value::RawValue::from_string(json_number(*x))
        .map_err(serde::ser::Error::custom)?;
    raw.serialize(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_and_prints() {
        for s in [
            "0", "1", "-1", "19.9", "0.05", "333364.8", "-0.02", "0.000001",
        ] {
            assert_eq!(Dec::parse(s).unwrap().to_string(), s);
        }
        assert_eq!(Dec::parse("19.900").unwrap().to_string(), "19.9");
        assert_eq!(Dec::parse("1e5"), None);
        assert_eq!(Dec::parse(""), None);
        assert_eq!(Dec::parse("."), None);
    }

    #[test]
    fn exact_decimal_arithmetic() {
        // 0.1 + 0.2 is 0.3 in big.js, not 0.30000000000000004.
        assert_eq!(big_add(0.1, 0.2), 0.3);
        assert_eq!(big_mul(0.05, 333_364.8), 16_668.24);
        assert_eq!(big_sub(333_364.8, 16_668.24), 316_696.56);
        assert_eq!(big_profit(316_696.56, 0.2, 0.0), 380_035.872);
    }

    #[test]
    fn rounds_half_up_on_the_decimal_string() {
        // 1.255 is 1.25499999999999989… as a double; big.js sees "1.255".
        assert_eq!(big_round(1.255, 2), 1.26);
        assert_eq!(big_round(1.254999, 2), 1.25);
        assert_eq!(big_round(-0.005, 2), -0.01);
        assert_eq!(big_round(0.195, 2), 0.2);
        assert_eq!(big_round(2.0, 2), 2.0);
    }

    #[test]
    fn prints_like_javascript() {
        assert_eq!(js_string(1.25), "1.25");
        assert_eq!(js_string(10.0), "10");
        assert_eq!(js_string(9.6), "9.6");
        assert_eq!(js_string(0.1 + 0.2), "0.30000000000000004");
        assert_eq!(js_string(1e-7), "1e-7");
        assert_eq!(js_string(0.000001), "0.000001");
        assert_eq!(js_string(1e21), "1e+21");
        assert_eq!(js_string(123456789012345680000.0), "123456789012345680000");
        assert_eq!(js_string(-0.0), "0");
        assert_eq!(json_number(f64::NAN), "null");
        assert_eq!(big_percent_string(0.2), "20");
        assert_eq!(big_percent_string(0.03), "3");
        assert_eq!(big_percent_string(0.0), "0");
    }

    proptest! {
        #[test]
        fn from_f64_round_trips(x in -1e15f64..1e15) {
            prop_assert_eq!(Dec::from_f64(x).unwrap().to_f64(), x);
        }

        #[test]
        fn cents_add_exactly(a in 0i64..10_000_000_000, b in 0i64..10_000_000_000) {
            let (x, y) = (a as f64 / 100.0, b as f64 / 100.0);
            prop_assert_eq!(big_add(x, y), (a + b) as f64 / 100.0);
        }
    }
}
