//! payroute's domain: money in integer cents, timestamps, parsing of client input and
//! the summary store.
//!
//! Architecture invariant: this crate does no IO, spawns nothing and reads no clock
//! except through values handed to it. Everything here is testable with tables and
//! property tests.

mod buckets;
pub mod metrics;
pub mod money;
pub mod payment;
pub mod summary;
pub mod time;

pub use money::Cents;
pub use payment::{PaymentRequest, Processor};
pub use summary::{Summary, SummaryQuery, SummaryStore, Totals};
pub use time::{Micros, Mono};
