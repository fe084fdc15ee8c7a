//! Fuzzes the `POST /payments` body decoder: never a panic; whatever it accepts is a
//! positive whole number of cents within the limit, and printing and parsing it again
//! gives the same payment.
#![no_main]

use libfuzzer_sys::fuzz_target;
use model::money::MAX_PAYMENT_CENTS;
use model::PaymentRequest;

fuzz_target!(|data: &[u8]| {
    if let Ok(p) = PaymentRequest::parse(data) {
        assert!(p.amount.0 > 0 && p.amount.0 <= MAX_PAYMENT_CENTS);
        let again = format!(
            r#"{{"correlationId":"{}","amount":{}}}"#,
            p.correlation_id, p.amount
        );
        assert_eq!(PaymentRequest::parse(again.as_bytes()), Ok(p));
    }
});
