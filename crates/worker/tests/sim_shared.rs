//! Deterministic simulation of several workers sharing one ledger: N real engines over
//! an in-memory model of the PostgreSQL ledger with its ownership semantics (the same
//! rules as `ledger/pg`: accepts by primary key, per-worker ordered writes, sends
//! fenced by owner and lease, leases renewed every second, takeover of the payments of
//! a worker whose lease lapsed, a new incarnation after a lapse, purges by generation).
//!
//! Faults: processors slow (up to 30 s), failing, throttling, losing answers; workers
//! killed and restarted; workers paused for longer than their lease and resumed (their
//! replies and requests arrive late); the database down for a while (writes fail,
//! leases cannot be renewed).
//!
//! Checked after every step: no payment is stored by two processors; a recorded row is
//! stored so at its processor. At the end, healed: every accepted payment is stored
//! exactly once and its row recorded as stored; the ledger's summary equals the books.
//!
//! `SIM_SEEDS=N` runs N seeds (default 1000); `SIM_SEED=S` runs only seed S:
//! `SIM_SEED=S cargo test -p worker --test sim_shared -- --nocapture`.

mod common;

use common::{Events, Rng};
use model::{Cents, Micros, Mono, Processor, SummaryQuery};
use std::collections::{HashMap, VecDeque};
use uuid::Uuid;
use worker::engine::{
    Action, AttemptId, Effect, Engine, EngineConfig, HealthReport, LookupResult, SendResult,
};

const MS: i64 = 1000;
const WALL0: i64 = 1_750_000_000_000_000;
/// A worker's request timeout.
const TIMEOUT: i64 = 3_000 * MS;
/// The lease, its renewal and the takeover's pace (as `ledger/pg`).
const LEASE: i64 = 5_000 * MS;
const HEARTBEAT: i64 = 1_000 * MS;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Pending,
    Recorded(Processor, Micros, Cents),
    Parked,
}

#[derive(Debug, Clone)]
struct Row {
    amount: Cents,
    owner: u64,
    seq: u64,
    state: State,
    sent: [Option<Micros>; 2],
}

/// The shared ledger: rows, and the lease of each worker incarnation.
#[derive(Default)]
struct Db {
    rows: HashMap<Uuid, Row>,
    leases: HashMap<u64, Mono>,
    next_seq: u64,
    /// Down until then (writes and reads fail).
    down_until: Option<Mono>,
}

impl Db {
    fn up(&self, now: Mono) -> bool {
        self.down_until.is_none_or(|t| now >= t)
    }

    fn lease_valid(&self, inc: u64, now: Mono) -> bool {
        self.leases.get(&inc).is_some_and(|t| *t > now)
    }
}

#[derive(Debug, Clone, Copy)]
enum Fact {
    Sent(Uuid, Processor, Micros, AttemptId),
    Released(Uuid, Processor),
    Recorded(Uuid, Processor, Micros, Cents),
    Rejected(Uuid),
}

/// Facts of one step, in the worker's write queue.
struct Job {
    inc: u64,
    facts: Vec<Fact>,
}

struct SimWorker {
    engine: Engine,
    inc: u64,
    alive: bool,
    paused_until: Option<Mono>,
    /// Writes not yet committed, in order.
    queue: VecDeque<Job>,
    /// Sends committed while the worker was paused: they leave when it resumes.
    deferred: Vec<Action>,
    /// Bumped at each restart: answers to an earlier process go nowhere.
    epoch: u32,
    /// The wake-up already scheduled for it, if any (one at a time).
    wake: Option<Mono>,
}

struct Proc {
    failing: bool,
    delay_ms: i64,
    stored: common::Stored,
}

#[derive(Debug, Clone, Copy)]
enum Ev {
    Submit(u128),
    /// A worker's write queue commits its head job.
    Commit(usize),
    Arrive {
        w: usize,
        epoch: u32,
        attempt: AttemptId,
        action: Action,
    },
    Finish {
        w: usize,
        epoch: u32,
        attempt: AttemptId,
        p: Processor,
        id: Uuid,
        amount: Cents,
        at: Micros,
        answer: bool,
    },
    SendDone {
        w: usize,
        epoch: u32,
        attempt: AttemptId,
        result: SendResult,
    },
    LookupDone {
        w: usize,
        epoch: u32,
        attempt: AttemptId,
        result: LookupResult,
    },
    Heartbeat(usize),
    Poll(Processor),
    Chaos,
    Kill(usize),
    Restart(usize),
    Pause(usize, i64),
    Resume(usize),
    DbDown(i64),
    Wake(usize),
}

struct World {
    rng: Rng,
    now: Mono,
    ev: Events<Ev>,
    db: Db,
    workers: Vec<SimWorker>,
    procs: [Proc; 2],
    next_inc: u64,
    next_worker: usize,
    /// Accepted payments (acknowledged to a client).
    accepted: HashMap<Uuid, Cents>,
    chaos: bool,
    lose_answer: u64,
    cfg: EngineConfig,
    takeovers: u64,
    lapses: u64,
}

impl World {
    fn new(seed: u64) -> World {
        let mut rng = Rng(seed);
        let n = 2 + rng.below(2) as usize;
        let cfg = EngineConfig {
            settle_deadline_us: [0, 2_000, 10_000][rng.below(3) as usize] * MS,
            ..EngineConfig::default()
        };
        let lose_answer = rng.below(60);
        let mut w = World {
            rng,
            now: Mono(0),
            ev: Events::new(),
            db: Db::default(),
            workers: Vec::new(),
            procs: [0, 1].map(|_| Proc {
                failing: false,
                delay_ms: 0,
                stored: HashMap::new(),
            }),
            next_inc: 1,
            next_worker: 0,
            accepted: HashMap::new(),
            chaos: true,
            lose_answer,
            cfg,
            takeovers: 0,
            lapses: 0,
        };
        for _ in 0..n {
            let inc = w.register();
            w.workers.push(SimWorker {
                engine: Engine::new(w.cfg.clone()),
                inc,
                alive: true,
                paused_until: None,
                queue: VecDeque::new(),
                deferred: Vec::new(),
                epoch: 0,
                wake: None,
            });
        }
        w
    }

    fn wall(&self) -> Micros {
        Micros(WALL0 + self.now.0)
    }

    fn after(&mut self, us: i64, ev: Ev) {
        let t = self.now.after(us);
        self.ev.at(t, ev);
    }

    /// A new worker incarnation with a fresh lease.
    fn register(&mut self) -> u64 {
        let inc = self.next_inc;
        self.next_inc += 1;
        self.db.leases.insert(inc, self.now.after(LEASE));
        inc
    }

    fn running(&self, w: usize) -> bool {
        let x = &self.workers[w];
        x.alive && x.paused_until.is_none()
    }

    /// The api: the next running worker takes the payment (a paused or dead one would
    /// time out or refuse, and the api moves on).
    fn submit(&mut self, n: u128) {
        let id = Uuid::from_u128(n);
        let amount = Cents(1 + (n as i64 * 7919) % 10_000);
        let k = self.workers.len();
        let Some(w) = (0..k)
            .map(|i| (self.next_worker + i) % k)
            .find(|&w| self.running(w))
        else {
            return;
        };
        self.next_worker = w + 1;
        if !self.db.up(self.now) {
            return; // 503: the client may retry later
        }
        let inc = self.workers[w].inc;
        if let Some(row) = self.db.rows.get(&id) {
            assert_eq!(row.amount, amount, "same id, same amount in this sim");
            return; // a duplicate
        }
        self.db.next_seq += 1;
        let seq = self.db.next_seq;
        self.db.rows.insert(
            id,
            Row {
                amount,
                owner: inc,
                seq,
                state: State::Pending,
                sent: [None; 2],
            },
        );
        let now = self.now;
        self.workers[w].engine.adopt(id, amount, now);
        self.accepted.insert(id, amount);
    }

    /// Lets a running worker act: lookups leave at once; sends wait for their write.
    fn dispatch(&mut self, w: usize) {
        if !self.running(w) {
            return;
        }
        let (now, wall) = (self.now, self.wall());
        let mut sends = Vec::new();
        while let Some(a) = self.workers[w].engine.next_action(now, wall) {
            match a {
                Action::Send {
                    attempt,
                    processor,
                    id,
                    requested_at,
                    ..
                } => sends.push(Fact::Sent(id, processor, requested_at, attempt)),
                Action::Lookup { .. } => self.leave(w, a),
            }
        }
        if !sends.is_empty() {
            self.enqueue(w, sends);
        }
        if let Some(t) = self.workers[w].engine.next_wakeup(now) {
            assert!(t > now, "a wake-up in the past would spin");
            if self.workers[w].wake.is_none_or(|s| t < s) {
                self.workers[w].wake = Some(t);
                self.ev.at(t, Ev::Wake(w));
            }
        }
    }

    fn enqueue(&mut self, w: usize, facts: Vec<Fact>) {
        let inc = self.workers[w].inc;
        self.workers[w].queue.push_back(Job { inc, facts });
        let latency = (1 + self.rng.below(5) as i64) * MS;
        self.after(latency, Ev::Commit(w));
    }

    fn effect(&mut self, w: usize, e: Effect) {
        let fact = match e {
            Effect::None => return,
            Effect::Recorded {
                id,
                processor,
                requested_at,
                amount,
            } => Fact::Recorded(id, processor, requested_at, amount),
            Effect::Released { id, processor } => Fact::Released(id, processor),
            Effect::Rejected { id, .. } => Fact::Rejected(id),
        };
        self.enqueue(w, vec![fact]);
    }

    /// The request leaves the worker for its processor.
    fn leave(&mut self, w: usize, a: Action) {
        let attempt = match a {
            Action::Send { attempt, .. } | Action::Lookup { attempt, .. } => attempt,
        };
        let net = 100 + self.rng.below(2_000) as i64;
        let epoch = self.workers[w].epoch;
        self.after(
            net,
            Ev::Arrive {
                w,
                epoch,
                attempt,
                action: a,
            },
        );
    }

    /// The database commits the head of a worker's queue (a dead worker's queue is
    /// gone with it: its writes never reached the database).
    fn commit(&mut self, w: usize) {
        if !self.workers[w].alive {
            return;
        }
        let Some(job) = self.workers[w].queue.pop_front() else {
            return;
        };
        if !self.db.up(self.now) {
            // Outcomes retried; sends refused and undone (they never leave).
            let outcomes: Vec<Fact> = job
                .facts
                .iter()
                .copied()
                .filter(|f| !matches!(f, Fact::Sent(..)))
                .collect();
            let sends: Vec<AttemptId> = job
                .facts
                .iter()
                .filter_map(|f| match f {
                    Fact::Sent(.., a) => Some(*a),
                    _ => None,
                })
                .collect();
            if !outcomes.is_empty() {
                self.workers[w].queue.push_front(Job {
                    inc: job.inc,
                    facts: outcomes,
                });
                self.after(200 * MS, Ev::Commit(w));
            }
            if job.inc == self.workers[w].inc {
                let now = self.now;
                for a in sends {
                    let e = self.workers[w]
                        .engine
                        .on_send_result(a, SendResult::NotSent, now);
                    self.effect(w, e);
                }
            }
            return;
        }
        let mut leaving = Vec::new();
        for f in &job.facts {
            match *f {
                Fact::Released(id, p) => {
                    if let Some(r) = self.db.rows.get_mut(&id) {
                        if r.owner == job.inc && r.state == State::Pending {
                            r.sent[p.index()] = None;
                        }
                    }
                }
                Fact::Recorded(id, p, at, amount) => {
                    if let Some(r) = self.db.rows.get_mut(&id) {
                        if r.state == State::Pending {
                            r.state = State::Recorded(p, at, amount);
                        }
                    }
                }
                Fact::Rejected(id) => {
                    if let Some(r) = self.db.rows.get_mut(&id) {
                        if r.state == State::Pending {
                            r.state = State::Parked;
                        }
                    }
                }
                Fact::Sent(id, p, at, attempt) => {
                    let lease = self.db.lease_valid(job.inc, self.now);
                    let owned = match self.db.rows.get_mut(&id) {
                        Some(r) if r.owner == job.inc && r.state == State::Pending && lease => {
                            r.sent[p.index()] = Some(at);
                            true
                        }
                        _ => false,
                    };
                    leaving.push((id, p, at, attempt, owned));
                }
            }
        }
        // The worker's side of the answer: only its current incarnation acts on it.
        if job.inc != self.workers[w].inc {
            return;
        }
        for (id, p, at, attempt, owned) in leaving {
            if owned {
                let amount = self.db.rows[&id].amount;
                let a = Action::Send {
                    attempt,
                    processor: p,
                    id,
                    amount,
                    requested_at: at,
                };
                if self.workers[w].paused_until.is_some() {
                    self.workers[w].deferred.push(a);
                } else {
                    self.leave(w, a);
                }
            } else {
                self.workers[w].engine.forget(&id, Some(attempt));
            }
        }
    }

    fn arrive(&mut self, w: usize, epoch: u32, attempt: AttemptId, action: Action) {
        match action {
            Action::Send {
                processor,
                id,
                amount,
                requested_at,
                ..
            } => {
                let delay = self.procs[processor.index()].delay_ms * MS;
                let lost = self.chaos && self.rng.chance(self.lose_answer);
                let answer = !lost && delay + 500 <= TIMEOUT;
                self.after(
                    delay,
                    Ev::Finish {
                        w,
                        epoch,
                        attempt,
                        p: processor,
                        id,
                        amount,
                        at: requested_at,
                        answer,
                    },
                );
                if !answer {
                    let result = SendResult::Unknown;
                    self.after(
                        TIMEOUT,
                        Ev::SendDone {
                            w,
                            epoch,
                            attempt,
                            result,
                        },
                    );
                }
            }
            Action::Lookup { processor, id, .. } => {
                let result = common::look_up(&self.procs[processor.index()].stored, &id);
                self.after(
                    300,
                    Ev::LookupDone {
                        w,
                        epoch,
                        attempt,
                        result,
                    },
                );
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn finish(
        &mut self,
        w: usize,
        epoch: u32,
        attempt: AttemptId,
        p: Processor,
        id: Uuid,
        amount: Cents,
        at: Micros,
        answer: bool,
    ) {
        let proc = &mut self.procs[p.index()];
        let result = common::take(&mut proc.stored, proc.failing, id, at, amount);
        if answer {
            self.after(
                400,
                Ev::SendDone {
                    w,
                    epoch,
                    attempt,
                    result,
                },
            );
        }
    }

    /// An answer reaches a worker: a paused one gets it when it resumes.
    fn deliver(&mut self, ev: Ev, w: usize, epoch: u32) -> bool {
        let x = &self.workers[w];
        if !x.alive || x.epoch != epoch {
            return false;
        }
        if let Some(until) = x.paused_until {
            self.ev.at(until.after(1), ev);
            return false;
        }
        true
    }

    /// Renews a running worker's lease; a lapsed lease makes it forget everything and
    /// start a new incarnation. Then takes over the payments of lapsed workers.
    fn heartbeat(&mut self, w: usize) {
        if !self.workers[w].alive {
            return;
        }
        if self.workers[w].paused_until.is_some() {
            return; // its Resume schedules the next heartbeat
        }
        self.after(HEARTBEAT, Ev::Heartbeat(w));
        if !self.db.up(self.now) {
            return;
        }
        let inc = self.workers[w].inc;
        if self.db.lease_valid(inc, self.now) {
            self.db.leases.insert(inc, self.now.after(LEASE));
        } else {
            self.lapses += 1;
            let now = self.now;
            self.workers[w].engine.purge(now);
            self.workers[w].deferred.clear();
            let inc = self.register();
            self.workers[w].inc = inc;
        }
        self.take_over(w);
    }

    fn take_over(&mut self, w: usize) {
        let inc = self.workers[w].inc;
        let now = self.now;
        let mut orphans: Vec<(u64, Uuid)> = self
            .db
            .rows
            .iter()
            .filter(|(_, r)| {
                r.state == State::Pending && r.owner != inc && !self.db.lease_valid(r.owner, now)
            })
            .map(|(id, r)| (r.seq, *id))
            .collect();
        orphans.sort_unstable();
        for (_, id) in orphans {
            let r = self.db.rows.get_mut(&id).expect("listed");
            r.owner = inc;
            let (amount, sent) = (r.amount, r.sent);
            self.workers[w]
                .engine
                .restore_pending(id, amount, sent, now);
            self.takeovers += 1;
        }
    }

    fn chaos(&mut self) {
        if !self.chaos {
            return;
        }
        let p = if self.rng.chance(500) { 0 } else { 1 };
        match self.rng.below(3) {
            0 => self.procs[p].failing = !self.procs[p].failing,
            1 => {
                self.procs[p].delay_ms =
                    [0, 20, 100, 1000, 2000, 5000, 12_000, 30_000][self.rng.below(8) as usize]
            }
            _ => {
                self.procs[p].failing = false;
                self.procs[p].delay_ms = 0;
            }
        }
        let next = 500 + self.rng.below(6_000) as i64;
        self.after(next * MS, Ev::Chaos);
    }

    fn step(&mut self, ev: Ev) {
        match ev {
            Ev::Submit(n) => self.submit(n),
            Ev::Commit(w) => self.commit(w),
            Ev::Arrive {
                w,
                epoch,
                attempt,
                action,
            } => self.arrive(w, epoch, attempt, action),
            Ev::Finish {
                w,
                epoch,
                attempt,
                p,
                id,
                amount,
                at,
                answer,
            } => self.finish(w, epoch, attempt, p, id, amount, at, answer),
            Ev::SendDone {
                w,
                epoch,
                attempt,
                result,
            } => {
                if self.deliver(ev, w, epoch) {
                    let now = self.now;
                    let e = self.workers[w].engine.on_send_result(attempt, result, now);
                    self.effect(w, e);
                }
            }
            Ev::LookupDone {
                w,
                epoch,
                attempt,
                result,
            } => {
                if self.deliver(ev, w, epoch) {
                    let now = self.now;
                    let e = self.workers[w]
                        .engine
                        .on_lookup_result(attempt, result, now);
                    self.effect(w, e);
                }
            }
            Ev::Heartbeat(w) => self.heartbeat(w),
            Ev::Poll(p) => {
                let pr = &self.procs[p.index()];
                let report = HealthReport {
                    failing: pr.failing,
                    min_response_time_ms: pr.delay_ms as u64,
                };
                let now = self.now;
                for x in self.workers.iter_mut().filter(|x| x.alive) {
                    x.engine.on_health(p, report, now);
                }
                self.after(5_000 * MS, Ev::Poll(p));
            }
            Ev::Chaos => self.chaos(),
            Ev::Kill(w) => {
                let x = &mut self.workers[w];
                x.alive = false;
                x.queue.clear();
                x.deferred.clear();
                x.paused_until = None;
            }
            Ev::Restart(w) => {
                let inc = self.register();
                let x = &mut self.workers[w];
                if x.alive {
                    return;
                }
                x.alive = true;
                x.epoch += 1;
                x.inc = inc;
                x.engine = Engine::new(self.cfg.clone());
                self.after(1, Ev::Heartbeat(w));
            }
            Ev::Pause(w, us) => {
                if self.running(w) {
                    let until = self.now.after(us);
                    self.workers[w].paused_until = Some(until);
                    self.ev.at(until, Ev::Resume(w));
                }
            }
            Ev::Resume(w) => {
                let x = &mut self.workers[w];
                if x.paused_until.take().is_some() && x.alive {
                    // What was committed before the pause leaves now, as a paused
                    // process's sockets would send it when it runs again.
                    for a in std::mem::take(&mut x.deferred) {
                        self.leave(w, a);
                    }
                    self.after(1, Ev::Heartbeat(w));
                }
            }
            Ev::DbDown(us) => self.db.down_until = Some(self.now.after(us)),
            Ev::Wake(w) => {
                if self.workers[w].wake == Some(self.now) {
                    self.workers[w].wake = None;
                }
            }
        }
    }

    /// After every step: no id at both processors; a recorded row is stored so.
    fn check(&self) {
        for (id, r) in &self.db.rows {
            let stored = [0, 1].map(|i| self.procs[i].stored.get(id));
            assert!(
                stored[0].is_none() || stored[1].is_none(),
                "{id} stored by both processors"
            );
            if let State::Recorded(p, at, amount) = r.state {
                assert_eq!(
                    stored[p.index()],
                    Some(&(at, amount)),
                    "{id} recorded at {p:?} but not stored so"
                );
            }
        }
    }

    fn run(&mut self, until: Mono) {
        while let Some((t, ev)) = self.ev.pop_until(until) {
            assert!(self.ev.scheduled() < 4_000_000, "runaway event loop");
            self.now = t;
            self.step(ev);
            for w in 0..self.workers.len() {
                self.dispatch(w);
            }
            self.check();
        }
        self.now = until;
    }
}

struct Totals {
    payments: usize,
    takeovers: u64,
    lapses: u64,
}

fn simulate(seed: u64) -> Totals {
    let mut w = World::new(seed);
    let span = 40_000 * MS;
    let payments = 50 + w.rng.below(200) as u128;
    for n in 0..payments {
        let t = Mono(w.rng.below(span as u64) as i64);
        w.ev.at(t, Ev::Submit(n + 1));
    }
    for k in 0..w.workers.len() {
        w.ev.at(Mono(k as i64 * 100 * MS), Ev::Heartbeat(k));
    }
    w.ev.at(Mono(0), Ev::Poll(Processor::Default));
    w.ev.at(Mono(2_500 * MS), Ev::Poll(Processor::Fallback));
    w.ev.at(Mono(1_000 * MS), Ev::Chaos);
    let n = w.workers.len() as u64;
    for _ in 0..w.rng.below(3) {
        let k = w.rng.below(n) as usize;
        let t = Mono(w.rng.below(span as u64) as i64);
        w.ev.at(t, Ev::Kill(k));
        w.ev.at(
            t.after((1 + w.rng.below(10) as i64) * 1_000 * MS),
            Ev::Restart(k),
        );
    }
    for _ in 0..w.rng.below(3) {
        let k = w.rng.below(n) as usize;
        let t = Mono(w.rng.below(span as u64) as i64);
        // Shorter and longer than the lease.
        let us = [2_000, 7_000, 15_000][w.rng.below(3) as usize] * MS;
        w.ev.at(t, Ev::Pause(k, us));
    }
    if w.rng.chance(300) {
        let t = Mono(w.rng.below(span as u64) as i64);
        let us = [1_000, 8_000][w.rng.below(2) as usize] * MS;
        w.ev.at(t, Ev::DbDown(us));
    }
    w.run(Mono(span + 5_000 * MS));
    // Heal: every worker alive and running, processors fine, the database up.
    w.chaos = false;
    for p in &mut w.procs {
        p.failing = false;
        p.delay_ms = 0;
    }
    w.db.down_until = None;
    for k in 0..w.workers.len() {
        if !w.workers[k].alive {
            let now = w.now;
            w.ev.at(now.after(1), Ev::Restart(k));
        }
    }
    w.run(Mono(span + 200_000 * MS));
    w.check();
    for (id, amount) in &w.accepted {
        let stored: Vec<_> = w.procs.iter().filter_map(|p| p.stored.get(id)).collect();
        assert_eq!(stored.len(), 1, "{id} stored {} times", stored.len());
        assert_eq!(stored[0].1, *amount);
        let row = &w.db.rows[id];
        assert!(
            matches!(row.state, State::Recorded(..)),
            "{id} stored but its row is {:?} (owner {})",
            row.state,
            row.owner
        );
    }
    let stored_total: usize = w.procs.iter().map(|p| p.stored.len()).sum();
    assert_eq!(
        stored_total,
        w.accepted.len(),
        "stored what nobody accepted"
    );
    // The summary (the SQL aggregate over recorded rows) equals the books.
    for _ in 0..20 {
        let a = WALL0 + w.rng.below((span + 60_000 * MS) as u64) as i64;
        let b = a + w.rng.below(20_000 * MS as u64) as i64;
        let q = SummaryQuery {
            from: Some(Micros(a)),
            to: Some(Micros(b)),
        };
        for p in Processor::ALL {
            let ledger =
                w.db.rows
                    .values()
                    .filter_map(|r| match r.state {
                        State::Recorded(rp, at, c) if rp == p && q.contains(at) => Some(c.0),
                        _ => None,
                    })
                    .fold((0u64, 0i64), |(n, s), c| (n + 1, s + c));
            let books = w.procs[p.index()]
                .stored
                .values()
                .filter(|(at, _)| q.contains(*at))
                .fold((0u64, 0i64), |(n, s), (_, c)| (n + 1, s + c.0));
            assert_eq!(ledger, books, "window {a}..{b} {p:?}");
        }
    }
    Totals {
        payments: w.accepted.len(),
        takeovers: w.takeovers,
        lapses: w.lapses,
    }
}

#[test]
fn workers_sharing_a_ledger_never_double_and_never_lose() {
    let (mut payments, mut takeovers, mut lapses) = (0, 0, 0);
    let seeds = common::run_seeds("sim_shared", 1000, simulate, |t| {
        payments += t.payments;
        takeovers += t.takeovers;
        lapses += t.lapses;
    });
    println!(
        "simulated {seeds} seeds of 2-3 workers sharing a ledger: {payments} payments, \
         {takeovers} taken over, {lapses} leases lapsed, 0 violations"
    );
}
