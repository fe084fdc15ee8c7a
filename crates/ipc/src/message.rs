//! The messages of the api↔worker protocol and their codec, pure (no IO).
//!
//! Each message is a frame: a little-endian `u32` payload length, then the payload,
//! whose first byte is a tag. A submit is 25 bytes of payload. Replies come back on the
//! same connection in the order of the requests, so a client matches them FIFO and
//! may pipeline freely; no request ids are needed.

use model::{Cents, Micros, Summary, SummaryQuery, Totals};
use uuid::Uuid;

/// Frames larger than this are a protocol error (the largest real frame is the
/// metrics text, a few KiB).
pub const MAX_FRAME: usize = 1 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    Submit { id: Uuid, amount: Cents },
    Summary(SummaryQuery),
    Purge,
    Health,
    Metrics,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubmitStatus {
    /// Taken: it will be forwarded and recorded exactly once.
    Accepted,
    /// This correlationId was accepted before with the same amount; nothing new was
    /// queued.
    Duplicate,
    /// This correlationId was accepted before with another amount: a reused
    /// idempotency key with other parameters. Nothing changed.
    Conflict,
    /// The queue is at capacity; nothing was queued.
    QueueFull,
    /// The payment could not be made durable (the log failed); nothing was queued.
    Unavailable,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Submit(SubmitStatus),
    Summary(Summary),
    Purged,
    /// JSON for `Health`, Prometheus text for `Metrics`.
    Text(String),
    /// The worker could not do what was asked (its ledger is unreachable); the api
    /// answers 503 with this message.
    Failed(String),
}

/// A message that travels as one frame. Implemented by [`Request`] (api → worker) and
/// [`Reply`] (worker → api); [`crate::Connection`] is generic over it.
pub trait Message: Sized {
    /// Appends this message as one whole frame (length prefix included).
    fn encode(&self, out: &mut Vec<u8>);
    /// Decodes one frame's payload (without the length prefix).
    fn decode(payload: &[u8]) -> Result<Self, DecodeError>;
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("frame of {0} bytes is over the limit")]
    TooLarge(usize),
    #[error("malformed frame")]
    Malformed,
}

const T_SUBMIT: u8 = 1;
const T_SUMMARY: u8 = 2;
const T_PURGE: u8 = 3;
const T_HEALTH: u8 = 4;
const T_METRICS: u8 = 5;
const T_TEXT: u8 = 6;
const T_FAILED: u8 = 7;

fn begin(out: &mut Vec<u8>) -> usize {
    let at = out.len();
    out.extend_from_slice(&[0; 4]);
    at
}

fn finish(out: &mut [u8], at: usize) {
    let len = (out.len() - at - 4) as u32;
    out[at..at + 4].copy_from_slice(&len.to_le_bytes());
}

fn put_opt(out: &mut Vec<u8>, v: Option<Micros>) {
    match v {
        Some(m) => {
            out.push(1);
            out.extend_from_slice(&m.0.to_le_bytes());
        }
        None => {
            out.push(0);
            out.extend_from_slice(&[0; 8]);
        }
    }
}

impl Message for Request {
    /// Appends this request as one frame.
    fn encode(&self, out: &mut Vec<u8>) {
        let at = begin(out);
        match self {
            Request::Submit { id, amount } => {
                out.push(T_SUBMIT);
                out.extend_from_slice(id.as_bytes());
                out.extend_from_slice(&amount.0.to_le_bytes());
            }
            Request::Summary(q) => {
                out.push(T_SUMMARY);
                put_opt(out, q.from);
                put_opt(out, q.to);
            }
            Request::Purge => out.push(T_PURGE),
            Request::Health => out.push(T_HEALTH),
            Request::Metrics => out.push(T_METRICS),
        }
        finish(out, at);
    }

    /// Decodes one frame's payload.
    fn decode(p: &[u8]) -> Result<Request, DecodeError> {
        let mut r = Reader(p);
        let req = match r.u8()? {
            T_SUBMIT => {
                let id = Uuid::from_bytes(r.array()?);
                let amount = Cents(i64::from_le_bytes(r.array()?));
                Request::Submit { id, amount }
            }
            T_SUMMARY => Request::Summary(SummaryQuery {
                from: r.opt()?,
                to: r.opt()?,
            }),
            T_PURGE => Request::Purge,
            T_HEALTH => Request::Health,
            T_METRICS => Request::Metrics,
            _ => return Err(DecodeError::Malformed),
        };
        r.end()?;
        Ok(req)
    }
}

impl Message for Reply {
    fn encode(&self, out: &mut Vec<u8>) {
        let at = begin(out);
        match self {
            Reply::Submit(s) => {
                out.push(T_SUBMIT);
                out.push(match s {
                    SubmitStatus::Accepted => 0,
                    SubmitStatus::Duplicate => 1,
                    SubmitStatus::QueueFull => 2,
                    SubmitStatus::Unavailable => 3,
                    SubmitStatus::Conflict => 4,
                });
            }
            Reply::Summary(s) => {
                out.push(T_SUMMARY);
                for t in [&s.default, &s.fallback] {
                    out.extend_from_slice(&t.count.to_le_bytes());
                    out.extend_from_slice(&t.amount.0.to_le_bytes());
                }
            }
            Reply::Purged => out.push(T_PURGE),
            Reply::Text(t) => {
                out.push(T_TEXT);
                out.extend_from_slice(t.as_bytes());
            }
            Reply::Failed(t) => {
                out.push(T_FAILED);
                out.extend_from_slice(t.as_bytes());
            }
        }
        finish(out, at);
    }

    fn decode(p: &[u8]) -> Result<Reply, DecodeError> {
        let mut r = Reader(p);
        let reply = match r.u8()? {
            T_SUBMIT => Reply::Submit(match r.u8()? {
                0 => SubmitStatus::Accepted,
                1 => SubmitStatus::Duplicate,
                2 => SubmitStatus::QueueFull,
                3 => SubmitStatus::Unavailable,
                4 => SubmitStatus::Conflict,
                _ => return Err(DecodeError::Malformed),
            }),
            T_SUMMARY => {
                let mut t = [Totals::default(); 2];
                for slot in &mut t {
                    slot.count = u64::from_le_bytes(r.array()?);
                    slot.amount = Cents(i64::from_le_bytes(r.array()?));
                }
                Reply::Summary(Summary {
                    default: t[0],
                    fallback: t[1],
                })
            }
            T_PURGE => Reply::Purged,
            T_TEXT => Reply::Text(r.rest_utf8()?),
            T_FAILED => Reply::Failed(r.rest_utf8()?),
            _ => return Err(DecodeError::Malformed),
        };
        r.end()?;
        Ok(reply)
    }
}

/// Splits the first complete frame off `buf`: `Ok(Some((payload, consumed)))`, or
/// `Ok(None)` when more bytes are needed.
pub fn split_frame(buf: &[u8]) -> Result<Option<(&[u8], usize)>, DecodeError> {
    let Some(len) = buf.get(..4) else {
        return Ok(None);
    };
    let len = u32::from_le_bytes([len[0], len[1], len[2], len[3]]) as usize;
    if len > MAX_FRAME {
        return Err(DecodeError::TooLarge(len));
    }
    Ok(buf.get(4..4 + len).map(|p| (p, 4 + len)))
}

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn u8(&mut self) -> Result<u8, DecodeError> {
        let (&b, rest) = self.0.split_first().ok_or(DecodeError::Malformed)?;
        self.0 = rest;
        Ok(b)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        if self.0.len() < N {
            return Err(DecodeError::Malformed);
        }
        let (a, rest) = self.0.split_at(N);
        self.0 = rest;
        Ok(a.try_into().expect("length checked"))
    }

    fn opt(&mut self) -> Result<Option<Micros>, DecodeError> {
        let present = self.u8()?;
        let v = i64::from_le_bytes(self.array()?);
        match present {
            // Canonical form only: an absent bound carries zero bytes.
            0 if v == 0 => Ok(None),
            1 => Ok(Some(Micros(v))),
            _ => Err(DecodeError::Malformed),
        }
    }

    /// The rest of the payload as text.
    fn rest_utf8(&mut self) -> Result<String, DecodeError> {
        let text = std::str::from_utf8(self.0).map_err(|_| DecodeError::Malformed)?;
        self.0 = &[];
        Ok(text.to_owned())
    }

    fn end(&self) -> Result<(), DecodeError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(DecodeError::Malformed)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn requests_and_replies_round_trip() {
        let reqs = [
            Request::Submit {
                id: Uuid::from_u128(7),
                amount: Cents(1990),
            },
            Request::Summary(SummaryQuery {
                from: Some(Micros(-5)),
                to: None,
            }),
            Request::Purge,
            Request::Health,
            Request::Metrics,
        ];
        let mut buf = Vec::new();
        for r in &reqs {
            r.encode(&mut buf);
        }
        let mut at = 0;
        for r in &reqs {
            let (p, n) = split_frame(&buf[at..]).unwrap().unwrap();
            assert_eq!(Request::decode(p).unwrap(), *r);
            at += n;
        }
        assert_eq!(at, buf.len());

        let mut s = Summary::default();
        s.fallback.count = 3;
        s.fallback.amount = Cents(-1);
        for r in [
            Reply::Submit(SubmitStatus::QueueFull),
            Reply::Summary(s),
            Reply::Purged,
            Reply::Text("{\"ok\":true}".into()),
            Reply::Failed("down".into()),
        ] {
            let mut buf = Vec::new();
            r.encode(&mut buf);
            let (p, n) = split_frame(&buf).unwrap().unwrap();
            assert_eq!(n, buf.len());
            assert_eq!(Reply::decode(p).unwrap(), r);
        }
    }

    #[test]
    fn partial_and_oversized_frames() {
        let mut buf = Vec::new();
        Request::Purge.encode(&mut buf);
        assert_eq!(split_frame(&buf[..3]), Ok(None));
        assert_eq!(split_frame(&buf[..4]), Ok(None));
        assert!(split_frame(&(u32::MAX).to_le_bytes()).is_err());
    }

    #[test]
    fn only_canonical_encodings_decode() {
        // Found by the ipc_frames fuzz target: an absent bound with stray bytes.
        let mut p = vec![T_SUMMARY, 0];
        p.extend_from_slice(&7i64.to_le_bytes());
        p.push(0);
        p.extend_from_slice(&[0; 8]);
        assert_eq!(Request::decode(&p), Err(DecodeError::Malformed));
    }

    proptest! {
        #[test]
        fn garbage_never_panics(p in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = Request::decode(&p);
            let _ = Reply::decode(&p);
            let _ = split_frame(&p);
        }
    }
}
