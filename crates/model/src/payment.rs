//! Payments as clients send them, and the two processors they go to.

use crate::money::{AmountError, Cents};
use serde::Deserialize;
use serde_json::value::RawValue;
use std::borrow::Cow;
use uuid::Uuid;

/// One of the two upstream payment processors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Processor {
    /// The cheaper one.
    Default,
    /// The dearer one.
    Fallback,
}

impl Processor {
    pub const ALL: [Processor; 2] = [Processor::Default, Processor::Fallback];

    pub const fn index(self) -> usize {
        match self {
            Processor::Default => 0,
            Processor::Fallback => 1,
        }
    }

    pub const fn name(self) -> &'static str {
        match self {
            Processor::Default => "default",
            Processor::Fallback => "fallback",
        }
    }

    pub const fn other(self) -> Processor {
        match self {
            Processor::Default => Processor::Fallback,
            Processor::Fallback => Processor::Default,
        }
    }

    pub const fn from_index(i: u8) -> Option<Processor> {
        match i {
            0 => Some(Processor::Default),
            1 => Some(Processor::Fallback),
            _ => None,
        }
    }
}

/// A validated `POST /payments` body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PaymentRequest {
    pub correlation_id: Uuid,
    pub amount: Cents,
}

/// Why a body was refused, naming the field at fault (`body` when the fault is the
/// document itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BodyError {
    pub field: &'static str,
    pub message: String,
}

impl BodyError {
    fn new(field: &'static str, message: impl Into<String>) -> Self {
        BodyError {
            field,
            message: message.into(),
        }
    }

    /// The short JSON error sent back to the client.
    pub fn to_json(&self) -> String {
        serde_json::json!({"error": self.message, "field": self.field}).to_string()
    }
}

#[derive(Deserialize)]
struct RawBody<'a> {
    #[serde(rename = "correlationId", borrow, default)]
    correlation_id: Option<&'a RawValue>,
    #[serde(borrow, default)]
    amount: Option<&'a RawValue>,
}

impl PaymentRequest {
    /// Parses and validates a `POST /payments` body. Unknown fields are ignored;
    /// `correlationId` must be a UUID string and `amount` a JSON number that is a
    /// positive whole number of cents.
    pub fn parse(body: &[u8]) -> Result<PaymentRequest, BodyError> {
        // serde would also read a struct from a JSON array; only an object is a body.
        if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
            return Err(BodyError::new("body", "body must be a JSON object"));
        }
        let raw: RawBody<'_> = serde_json::from_slice(body)
            .map_err(|e| BodyError::new("body", format!("body must be a JSON object: {e}")))?;
        let id_raw = raw
            .correlation_id
            .ok_or_else(|| BodyError::new("correlationId", "correlationId is required"))?;
        let id_text: Cow<'_, str> = serde_json::from_str(id_raw.get())
            .map_err(|_| BodyError::new("correlationId", "correlationId must be a string"))?;
        let correlation_id = Uuid::try_parse(id_text.trim())
            .map_err(|_| BodyError::new("correlationId", "correlationId must be a UUID"))?;
        let amount_raw = raw
            .amount
            .ok_or_else(|| BodyError::new("amount", "amount is required"))?;
        let amount = Cents::parse_json_number(amount_raw.get()).map_err(|e| {
            let e = match e {
                AmountError::NotANumber => "amount must be a JSON number".to_string(),
                other => format!("amount {other}"),
            };
            BodyError::new("amount", e)
        })?;
        Ok(PaymentRequest {
            correlation_id,
            amount,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const ID: &str = "4a7901b8-7d26-4d9d-aa19-4dc1c7cf60b3";

    #[test]
    fn accepts_the_official_body() {
        let body = format!(r#"{{"correlationId":"{ID}","amount":19.90}}"#);
        let p = PaymentRequest::parse(body.as_bytes()).unwrap();
        assert_eq!(p.correlation_id.to_string(), ID);
        assert_eq!(p.amount, Cents(1990));
        // Order, whitespace, unknown fields and uppercase ids are fine.
        let body = format!(
            r#" {{ "amount" : 20.05 , "extra": [1,2], "correlationId" : "{}" }} "#,
            ID.to_uppercase()
        );
        assert_eq!(
            PaymentRequest::parse(body.as_bytes()).unwrap().amount,
            Cents(2005)
        );
    }

    #[test]
    fn names_the_field_at_fault() {
        let cases: [(&str, &str); 14] = [
            ("", "body"),
            ("not json", "body"),
            ("[]", "body"),
            ("null", "body"),
            (r#"{"amount":19.90}"#, "correlationId"),
            (r#"{"correlationId":"abc","amount":19.90}"#, "correlationId"),
            (r#"{"correlationId":42,"amount":19.90}"#, "correlationId"),
            (
                r#"{"correlationId":"4a7901b8-7d26-4d9d-aa19-4dc1c7cf60b3"}"#,
                "amount",
            ),
            (
                r#"{"correlationId":"4a7901b8-7d26-4d9d-aa19-4dc1c7cf60b3","amount":"19.90"}"#,
                "amount",
            ),
            (
                r#"{"correlationId":"4a7901b8-7d26-4d9d-aa19-4dc1c7cf60b3","amount":-1}"#,
                "amount",
            ),
            (
                r#"{"correlationId":"4a7901b8-7d26-4d9d-aa19-4dc1c7cf60b3","amount":0}"#,
                "amount",
            ),
            (
                r#"{"correlationId":"4a7901b8-7d26-4d9d-aa19-4dc1c7cf60b3","amount":1.005}"#,
                "amount",
            ),
            (
                r#"{"correlationId":"4a7901b8-7d26-4d9d-aa19-4dc1c7cf60b3","amount":null}"#,
                "amount",
            ),
            (
                r#"{"correlationId":"4a7901b8-7d26-4d9d-aa19-4dc1c7cf60b3","amount":19.90,"amount":1}"#,
                "body",
            ),
        ];
        for (body, field) in cases {
            let err = PaymentRequest::parse(body.as_bytes()).unwrap_err();
            assert_eq!(err.field, field, "{body}: {err:?}");
            let json: serde_json::Value = serde_json::from_str(&err.to_json()).unwrap();
            assert_eq!(json["field"], field);
        }
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = PaymentRequest::parse(&bytes);
        }

        #[test]
        fn valid_bodies_round_trip(id in any::<u128>(), cents in 1i64..=crate::money::MAX_PAYMENT_CENTS) {
            let id = Uuid::from_u128(id);
            let body = format!(r#"{{"correlationId":"{id}","amount":{}}}"#, Cents(cents));
            let p = PaymentRequest::parse(body.as_bytes()).unwrap();
            prop_assert_eq!(p, PaymentRequest { correlation_id: id, amount: Cents(cents) });
        }
    }
}
