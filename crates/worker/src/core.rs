//! [`Core`]: the engine and its journal, changed together. Every rule about what is
//! written before what lives here, once, for the worker and the simulation alike:
//! - an accepted payment is written before the client is told (else it is refused);
//! - the timestamps chosen for a batch of sends are written, and then synced by the
//!   caller, before any request of the batch leaves (else the batch is undone);
//! - every outcome is written after the engine took it, with the next write (outcomes
//!   need not be durable before anything: a payment whose outcome was lost with a crash
//!   is looked up again on its processor);
//! - nothing but a refused accept is ever dropped: what a failed write carried is
//!   written first by the next one, so the log keeps the engine's order (a release of a
//!   timestamp that failed to write can never end up after a later send).
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
    /// Records taken by the engine and not yet written, in its order.
    unwritten: Vec<Record>,
    health: JournalHealth,
    /// Failed writes since start, for the metrics.
    pub write_errors: u64,
}

impl<J: Journal> Core<J> {
    pub fn new(engine: Engine, journal: J) -> Core<J> {
        Core {
            engine,
            journal,
            unwritten: Vec::new(),
            health: JournalHealth::Ok,
            write_errors: 0,
        }
    }

    pub fn journal_health(&self) -> JournalHealth {
        self.health
    }

    /// Writes every record not yet written, tracking the journal's health: the first
    /// failure and the first success after failures are logged, nothing in between. A
    /// failed write keeps its records for the next one, but its accepts (refused).
    fn write(&mut self, what: &str) -> io::Result<()> {
        if self.unwritten.is_empty() {
            return Ok(());
        }
        for r in &self.unwritten {
            self.journal.append(r);
        }
        let r = self.journal.write();
        match &r {
            Ok(()) => self.unwritten.clear(),
            Err(_) => self
                .unwritten
                .retain(|r| !matches!(r, Record::Accepted { .. })),
        }
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
        self.unwritten.push(Record::Accepted { id, amount });
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
                self.unwritten.push(Record::Sent {
                    id,
                    processor,
                    requested_at,
                });
            }
        }
        if sends {
            if self.write("sends").is_err() {
                // The sends' records stay unwritten; their undoing (the releases)
                // follows them in the log, so the log's order holds.
                let taken: Vec<Action> = out.drain(start..).collect();
                self.undo(&taken, now);
                return false;
            }
        } else {
            // Outcomes gathered since the last write go out in one write.
            let _ = self.write("outcomes");
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

    /// Queues an outcome for the next write (batched: every turn of the dispatcher
    /// writes). Lost with a crash before it is written, it costs a lookup: the log
    /// still says the payment was sent.
    fn log_effect(&mut self, e: Effect) {
        if let Some(r) = Record::of_effect(e) {
            self.unwritten.push(r);
        }
    }

    /// Writes what is waiting (called by the upkeep and before a snapshot).
    pub fn flush(&mut self) -> io::Result<()> {
        self.write("outcomes")
    }

    /// Forgets every payment and empties the journal.
    pub fn purge(&mut self, now: Mono) -> io::Result<()> {
        self.engine.purge(now);
        self.unwritten.clear();
        self.journal.clear()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{EngineConfig, HealthReport};
    use crate::log::restore;
    use model::{Cents, Processor};

    /// A journal in memory whose writes fail while `full`, as the payment log's do:
    /// all or nothing, and the buffer is emptied either way.
    #[derive(Default)]
    struct Mem {
        written: Vec<Record>,
        buf: Vec<Record>,
        full: bool,
    }

    impl Journal for Mem {
        fn append(&mut self, r: &Record) {
            self.buf.push(*r);
        }
        fn write(&mut self) -> io::Result<()> {
            if self.full {
                self.buf.clear();
                return Err(io::Error::other("no space left on device"));
            }
            self.written.append(&mut self.buf);
            Ok(())
        }
        fn clear(&mut self) -> io::Result<()> {
            self.written.clear();
            self.buf.clear();
            Ok(())
        }
    }

    fn t(ms: i64) -> Mono {
        Mono(ms * 1000)
    }

    fn wall(now: Mono) -> Micros {
        Micros(1_700_000_000_000_000 + now.0)
    }

    #[test]
    fn a_release_that_failed_to_write_is_written_before_the_next_send() {
        // Found reading the code: the release of a timestamp (the default answered
        // 500) could not be written (disk full) and was dropped; space came back, the
        // payment went to the fallback and that send was written; after a crash the
        // log said "sent to both", the replay bound it to the default, and a resend
        // there would store it twice.
        let cfg = EngineConfig {
            settle_deadline_us: 0,
            ..EngineConfig::default()
        };
        let mut c = Core::new(Engine::new(cfg.clone()), Mem::default());
        let id = uuid::Uuid::from_u128(1);
        assert_eq!(c.submit(id, Cents(100), t(0)), SubmitStatus::Accepted);
        let mut out = Vec::new();
        assert!(c.take_actions(t(0), wall(t(0)), 10, &mut out));
        let Action::Send {
            attempt, processor, ..
        } = out[0]
        else {
            panic!("{out:?}")
        };
        assert_eq!(processor, Processor::Default);
        c.journal.full = true;
        c.on_send_result(attempt, SendResult::Failed, t(1));
        c.journal.full = false;
        // The default is failing: the payment goes to the fallback.
        let failing = HealthReport {
            failing: true,
            min_response_time_ms: 0,
        };
        c.engine.on_health(Processor::Default, failing, t(2));
        let mut out = Vec::new();
        c.engine.on_health(Processor::Default, failing, t(1_500));
        assert!(c.take_actions(t(1_500), wall(t(1_500)), 10, &mut out));
        let sends: Vec<Processor> = out
            .iter()
            .filter_map(|a| match a {
                Action::Send { processor, .. } => Some(*processor),
                Action::Lookup { .. } => None,
            })
            .collect();
        assert_eq!(sends, vec![Processor::Fallback]);
        // A crash: the log as written is all there is.
        let mut e = Engine::new(cfg);
        restore(&mut e, &c.journal.written, t(0));
        match e.next_action(t(10_000), wall(t(10_000))) {
            Some(Action::Lookup { processor, .. }) => assert_eq!(processor, Processor::Fallback),
            other => panic!("after the crash, expected a lookup at the fallback: {other:?}"),
        }
    }

    #[test]
    fn a_refused_accept_is_never_written_later() {
        let mut c = Core::new(Engine::new(EngineConfig::default()), Mem::default());
        c.journal.full = true;
        let id = uuid::Uuid::from_u128(7);
        assert_eq!(c.submit(id, Cents(1), t(0)), SubmitStatus::Unavailable);
        c.journal.full = false;
        c.submit(uuid::Uuid::from_u128(8), Cents(1), t(1));
        assert!(!c
            .journal
            .written
            .iter()
            .any(|r| matches!(r, Record::Accepted { id: x, .. } if *x == id)));
    }
}
