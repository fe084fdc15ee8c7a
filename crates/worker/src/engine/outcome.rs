//! What the engine asks the IO layer to do ([`Action`]), how each call ended
//! ([`SendResult`], [`LookupResult`]), and what an outcome did to its payment
//! ([`Effect`], for the log).

use model::{Cents, Micros, Processor};
use uuid::Uuid;

/// Identifies one HTTP call to a processor.
pub type AttemptId = u64;

/// What the IO layer must do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// `POST /payments` to `processor` with exactly this `requested_at`.
    Send {
        attempt: AttemptId,
        processor: Processor,
        id: Uuid,
        amount: Cents,
        requested_at: Micros,
    },
    /// `GET /payments/{id}` on `processor`, to learn the fate of an earlier send, or
    /// the processor's own copy of a payment it says it already has.
    Lookup {
        attempt: AttemptId,
        processor: Processor,
        id: Uuid,
    },
}

/// How a `POST /payments` to a processor ended, classified by what it tells about the
/// payment (not by transport details).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendResult {
    /// 200: stored now, with what was sent.
    Stored,
    /// 422: that processor already has this correlationId (from an earlier attempt,
    /// or from before a purge): its own copy is looked up and recorded.
    AlreadyStored,
    /// 500 (or a 408 or 5XX): definitely not stored.
    Failed,
    /// 429: refused by the processor's limiter before anything happened.
    Throttled,
    /// The request was never sent (connection refused, DNS, connect timeout).
    NotSent,
    /// Sent, but no answer came (timeout, connection lost): it may be stored later.
    Unknown,
    /// Another 4XX: the processor refuses this payment as it is; resending it cannot
    /// help. The payment is parked, not retried.
    Rejected,
}

/// The processor's own record of a payment (`GET /payments/{id}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoredCopy {
    pub amount: Cents,
    pub requested_at: Micros,
}

/// How a `GET /payments/{id}` ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LookupResult {
    Found(StoredCopy),
    NotFound,
    Error,
}

/// What an outcome did to its payment, for the payment log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// Nothing to log (a late result after a purge, or the payment stays as it was).
    None,
    /// Recorded as processed by `processor` with `requested_at` and `amount` (what the
    /// processor holds).
    Recorded {
        id: Uuid,
        processor: Processor,
        requested_at: Micros,
        amount: Cents,
    },
    /// Nothing of this payment can be stored at `processor` any more: its timestamp
    /// there is forgotten.
    Released { id: Uuid, processor: Processor },
    /// `processor` refused the payment for good (a 4XX): it is parked.
    Rejected { id: Uuid, processor: Processor },
}

impl SendResult {
    pub const ALL: [SendResult; 7] = [
        SendResult::Stored,
        SendResult::AlreadyStored,
        SendResult::Failed,
        SendResult::Throttled,
        SendResult::NotSent,
        SendResult::Unknown,
        SendResult::Rejected,
    ];

    pub fn index(self) -> usize {
        self as usize
    }

    pub fn name(self) -> &'static str {
        match self {
            SendResult::Stored => "stored",
            SendResult::AlreadyStored => "already_stored",
            SendResult::Failed => "failed",
            SendResult::Throttled => "throttled",
            SendResult::NotSent => "not_sent",
            SendResult::Unknown => "unknown",
            SendResult::Rejected => "rejected",
        }
    }
}
