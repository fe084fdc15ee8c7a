//! The api↔worker protocol: what the two ends say ([`Request`], [`Reply`]), how it is
//! framed on the wire ([`message`], pure), and the one [`Connection`] type both ends
//! read and write it with.
//!
//! Architecture invariant: frames are split and decoded only in this crate; the api
//! and the worker see whole messages. The codec is canonical (one encoding per
//! message) and fuzzed (`fuzz/fuzz_targets/ipc_frames.rs`).

mod connection;
pub mod message;

pub use connection::{Connection, ConnectionError};
pub use message::{split_frame, DecodeError, Message, Reply, Request, SubmitStatus, MAX_FRAME};
