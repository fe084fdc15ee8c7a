//! [`Core`]: the engine and its journal, changed together. Every rule about what is
//! written before what lives here, once, for the worker and the simulation alike:
//! - an accepted payment is written before the client is told (else it is refused);
//! - the timestamps chosen for a batch of sends are written, and then synced by the
//!   caller, before any request of the batch leaves (else the batch is undone);
//! - every outcome is written after the engine took it.
//!
//! No clock and no threads: the journal does the IO ([`Journal`]), the caller passes
//! the time and does the sync outside any lock.

use crate::engine::{Action, Effect, Engine, LookupResult, SendResult};
use crate::log::Record;
use ipc::SubmitStatus;
use model::{Micros, Mono};
use std::io;
use uuid::Uuid;

/// Where the engine's history is written. Writes are all-or-nothing: a failed write
/// leaves no fragment of its records behind.
pub trait Journal {
    /// Buffers a record; nothing is written yet.
    fn append(&mut self, r: &Record);
    /// Writes every buffered record, or none of them (the buffer is emptied either way).
    fn write(&mut self) -> io::Result<()>;
    /// Empties the journal (purge).
    fn clear(&mut self) -> io::Result<()>;
}

/// No journal: everything in memory only (tests of the service without a data dir).
impl Journal for () {
    fn append(&mut self, _: &Record) {}
    fn write(&mut self) -> io::Result<()> {
        Ok(())
    }
    fn clear(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// What a failed journal write means for the caller, reported once per change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JournalHealth {
    Ok,
    Failing,
}

/// The engine and its journal. See the module docs.
#[derive(Debug)]
pub struct Core<J> {
    pub engine: Engine,
    pub journal: J,
    health: JournalHealth,
    /// Failed writes since start, for the metrics.
    pub write_errors: u64,
}

impl<J: Journal> Core<J> {
    pub fn new(engine: Engine, journal: J) -> Core<J> {
        Core {
            engine,
            journal,
            health: JournalHealth::Ok,
            write_errors: 0,
        }
    }

    pub fn journal_health(&self) -> JournalHealth {
        self.health
    }

    /// Writes what was appended, tracking the journal's health: the first failure and
    /// the first success after failures are logged, nothing in between.
    fn write(&mut self, what: &str) -> io::Result<()> {
        let r = self.journal.write();
        match (&r, self.health) {
            (Err(e), JournalHealth::Ok) => {
                self.write_errors += 1;
                self.health = JournalHealth::Failing;
                tracing::error!(
                    "payment log write failed ({what}): {e}; refusing payments until writes \
                     succeed again"
                );
            }
            (Err(_), JournalHealth::Failing) => self.write_errors += 1,
            (Ok(()), JournalHealth::Failing) => {
                self.health = JournalHealth::Ok;
                tracing::info!("payment log writes succeed again; accepting payments");
            }
            (Ok(()), JournalHealth::Ok) => {}
        }
        r
    }

    /// Takes a payment: accepted only once its record is written.
    pub fn submit(&mut self, id: Uuid, amount: model::Cents, now: Mono) -> SubmitStatus {
        let status = self.engine.submit(id, amount, now);
        if status != SubmitStatus::Accepted {
            return status;
        }
        self.journal.append(&Record::Accepted { id, amount });
        if self.write("accept").is_err() {
            self.engine.cancel_accept(&id);
            return SubmitStatus::Unavailable;
        }
        status
    }

    /// Takes up to `max` actions from the engine into `out` and writes the timestamp
    /// of every send among them. Returns whether the caller must sync the journal
    /// before any of them leaves. On a failed write the actions are undone and `out`
    /// is left empty.
    pub fn take_actions(
        &mut self,
        now: Mono,
        wall: Micros,
        max: usize,
        out: &mut Vec<Action>,
    ) -> bool {
        let start = out.len();
        while out.len() - start < max {
            match self.engine.next_action(now, wall) {
                Some(a) => out.push(a),
                None => break,
            }
        }
        let mut sends = false;
        for a in &out[start..] {
            if let Action::Send {
                id,
                processor,
                requested_at,
                ..
            } = *a
            {
                sends = true;
                self.journal.append(&Record::Sent {
                    id,
                    processor,
                    requested_at,
                });
            }
        }
        if sends && self.write("sends").is_err() {
            let taken: Vec<Action> = out.drain(start..).collect();
            self.undo(&taken, now);
            return false;
        }
        sends
    }

    /// Undoes actions that never left (their timestamps could not be made durable):
    /// sends count as not sent, lookups as errors.
    pub fn undo(&mut self, actions: &[Action], now: Mono) {
        for a in actions {
            match *a {
                Action::Send { attempt, .. } => {
                    let e = self
                        .engine
                        .on_send_result(attempt, SendResult::NotSent, now);
                    self.log_effect(e);
                }
                Action::Lookup { attempt, .. } => {
                    let e = self
                        .engine
                        .on_lookup_result(attempt, LookupResult::Error, now);
                    self.log_effect(e);
                }
            }
        }
    }

    pub fn on_send_result(&mut self, attempt: u64, result: SendResult, now: Mono) -> Effect {
        let e = self.engine.on_send_result(attempt, result, now);
        self.log_effect(e);
        e
    }

    pub fn on_lookup_result(&mut self, attempt: u64, result: LookupResult, now: Mono) -> Effect {
        let e = self.engine.on_lookup_result(attempt, result, now);
        self.log_effect(e);
        e
    }

    /// Writes an outcome. A failure loses nothing: the log still says the payment was
    /// sent, so a restart looks its fate up on that processor again.
    fn log_effect(&mut self, e: Effect) {
        if let Some(r) = Record::of_effect(e) {
            self.journal.append(&r);
            let _ = self.write("outcome");
        }
    }

    /// Forgets every payment and empties the journal.
    pub fn purge(&mut self, now: Mono) -> io::Result<()> {
        self.engine.purge(now);
        self.journal.clear()
    }
}
