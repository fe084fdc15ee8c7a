//! Deterministic simulation of the dispatcher: the real [`Engine`] and the real log
//! replay, driven by a seeded clock, simulated clients and simulated processors that
//! are slow, fail, refuse (429), lose answers after storing, and a worker that crashes
//! and restarts from its log.
//!
//! After every step: no payment is stored by two processors; every payment the engine
//! recorded is stored at that processor with the timestamp the engine recorded; every
//! accepted payment is either recorded or pending (nothing lost). At the end, with the
//! faults healed: every accepted payment is stored exactly once and recorded, and the
//! summary equals the processors' books for random windows.
//!
//! `SIM_SEEDS=N` runs N seeds (default 2000); `SIM_SEED=S` runs only seed S:
//! `SIM_SEED=S cargo test -p worker --test sim -- --nocapture`.

use model::{Cents, Micros, Processor, SummaryQuery};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use uuid::Uuid;
use worker::engine::{
    Action, AttemptId, Effect, Engine, EngineConfig, HealthReport, LookupResult, SendResult,
};
use worker::log::{restore, Record};

/// splitmix64: small, fast, good enough to explore schedules.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn chance(&mut self, per_mille: u64) -> bool {
        self.below(1000) < per_mille
    }
}

const MS: i64 = 1000;
const T0: i64 = 1_750_000_000_000_000;
/// The client's timeout of a payment request (the worker's `request_timeout`).
const TIMEOUT: i64 = 3_000 * MS;

#[derive(Debug, Clone, Copy)]
enum Ev {
    Submit(u128),
    /// A request reaches a processor.
    Arrive {
        epoch: u32,
        attempt: AttemptId,
        action: Action,
    },
    /// The processor finished sleeping: it answers (and maybe stores).
    Finish {
        epoch: u32,
        attempt: AttemptId,
        processor: Processor,
        id: Uuid,
        amount: Cents,
        at: Micros,
        answer: bool,
    },
    SendDone {
        epoch: u32,
        attempt: AttemptId,
        result: SendResult,
    },
    LookupDone {
        epoch: u32,
        attempt: AttemptId,
        result: LookupResult,
    },
    Poll(Processor),
    Chaos,
    Crash,
    Wake,
}

struct Proc {
    failing: bool,
    delay_ms: i64,
    stored: HashMap<Uuid, (Micros, Cents)>,
}

struct World {
    rng: Rng,
    now: Micros,
    seq: u64,
    events: BinaryHeap<Reverse<(i64, u64, usize)>>,
    slab: Vec<Ev>,
    engine: Engine,
    epoch: u32,
    log: Vec<Record>,
    procs: [Proc; 2],
    accepted: HashSet<Uuid>,
    recorded: HashMap<Uuid, (Processor, Micros, Cents)>,
    chaos: bool,
    /// Per mille chances of the faults.
    lose_answer: u64,
    throttle: u64,
    crashes: u32,
    /// Payments the current step touched: checked in full after it.
    touched: Vec<Uuid>,
    /// Running totals of `recorded`, per processor: (count, cents).
    recorded_totals: [(u64, i64); 2],
    steps: u64,
}

fn cfg() -> EngineConfig {
    EngineConfig {
        // Short settle so the simulation covers the "free again" branch.
        unknown_settle_us: 8_000 * MS,
        ..EngineConfig::default()
    }
}

impl World {
    fn new(seed: u64) -> World {
        let mut rng = Rng(seed);
        let lose_answer = rng.below(80);
        let throttle = rng.below(60);
        World {
            rng,
            now: Micros(T0),
            seq: 0,
            events: BinaryHeap::new(),
            slab: Vec::new(),
            engine: Engine::new(cfg()),
            epoch: 0,
            log: Vec::new(),
            procs: [0, 1].map(|_| Proc {
                failing: false,
                delay_ms: 0,
                stored: HashMap::new(),
            }),
            accepted: HashSet::new(),
            recorded: HashMap::new(),
            chaos: true,
            lose_answer,
            throttle,
            crashes: 0,
            touched: Vec::new(),
            recorded_totals: [(0, 0); 2],
            steps: 0,
        }
    }

    fn at(&mut self, t: Micros, ev: Ev) {
        self.seq += 1;
        self.slab.push(ev);
        self.events
            .push(Reverse((t.0, self.seq, self.slab.len() - 1)));
    }

    fn after(&mut self, us: i64, ev: Ev) {
        let t = Micros(self.now.0 + us);
        self.at(t, ev);
    }

    fn apply(&mut self, effect: Effect) {
        if let Effect::Recorded {
            id,
            processor,
            requested_at,
            amount,
        } = effect
        {
            assert!(
                self.recorded
                    .insert(id, (processor, requested_at, amount))
                    .is_none(),
                "{id} recorded twice"
            );
            let t = &mut self.recorded_totals[processor.index()];
            t.0 += 1;
            t.1 += amount.0;
            self.touched.push(id);
        }
        if let Some(r) = Record::of_effect(effect) {
            self.log.push(r);
        }
    }

    /// Lets the engine act, as the worker's dispatch loop does.
    fn dispatch(&mut self) {
        while let Some(a) = self.engine.next_action(self.now) {
            let (attempt, p) = match a {
                Action::Send {
                    attempt,
                    processor,
                    id,
                    requested_at,
                    ..
                } => {
                    self.log.push(Record::Sent {
                        id,
                        processor,
                        requested_at,
                    });
                    (attempt, processor)
                }
                Action::Lookup {
                    attempt, processor, ..
                } => (attempt, processor),
            };
            let _ = p;
            let net = 100 + self.rng.below(2_000) as i64;
            let epoch = self.epoch;
            self.after(
                net,
                Ev::Arrive {
                    epoch,
                    attempt,
                    action: a,
                },
            );
        }
        if let Some(t) = self.engine.next_wakeup(self.now) {
            assert!(t > self.now, "a wake-up in the past would spin");
            self.at(t, Ev::Wake);
        }
    }

    fn step(&mut self, ev: Ev) {
        match ev {
            Ev::Submit(n) => {
                let id = Uuid::from_u128(n);
                let amount = Cents(1 + self.rng.below(10_000) as i64);
                self.touched.push(id);
                if self.engine.submit(id, amount) == ipc::SubmitStatus::Accepted {
                    self.log.push(Record::Accepted { id, amount });
                    assert!(self.accepted.insert(id));
                }
            }
            Ev::Arrive {
                epoch,
                attempt,
                action,
            } => match action {
                Action::Send {
                    processor,
                    id,
                    amount,
                    requested_at,
                    ..
                } => {
                    if self.chaos && self.rng.chance(self.throttle) {
                        self.after(
                            500,
                            Ev::SendDone {
                                epoch,
                                attempt,
                                result: SendResult::Throttled,
                            },
                        );
                        return;
                    }
                    let delay = self.procs[processor.index()].delay_ms * MS;
                    let lost = self.chaos && self.rng.chance(self.lose_answer);
                    // Whether the client will see the answer is decided now, with the
                    // delay this request actually gets.
                    let answer = !lost && delay + 500 <= TIMEOUT;
                    self.after(
                        delay,
                        Ev::Finish {
                            epoch,
                            attempt,
                            processor,
                            id,
                            amount,
                            at: requested_at,
                            answer,
                        },
                    );
                    if !answer {
                        // The client gives up at its timeout, whatever happens later.
                        self.after(
                            TIMEOUT,
                            Ev::SendDone {
                                epoch,
                                attempt,
                                result: SendResult::Unknown,
                            },
                        );
                    }
                }
                Action::Lookup { processor, id, .. } => {
                    let result = if self.chaos && self.rng.chance(30) {
                        LookupResult::Error
                    } else if self.procs[processor.index()].stored.contains_key(&id) {
                        LookupResult::Found
                    } else {
                        LookupResult::NotFound
                    };
                    self.after(
                        300,
                        Ev::LookupDone {
                            epoch,
                            attempt,
                            result,
                        },
                    );
                }
            },
            Ev::Finish {
                epoch,
                attempt,
                processor,
                id,
                amount,
                at,
                answer,
            } => {
                self.touched.push(id);
                let proc = &mut self.procs[processor.index()];
                let result = if proc.failing {
                    SendResult::Failed
                } else {
                    match proc.stored.entry(id) {
                        std::collections::hash_map::Entry::Occupied(_) => SendResult::AlreadyStored,
                        std::collections::hash_map::Entry::Vacant(v) => {
                            v.insert((at, amount));
                            SendResult::Stored
                        }
                    }
                };
                if answer {
                    self.after(
                        400,
                        Ev::SendDone {
                            epoch,
                            attempt,
                            result,
                        },
                    );
                }
            }
            Ev::SendDone {
                epoch,
                attempt,
                result,
            } => {
                if epoch == self.epoch {
                    let e = self.engine.on_send_result(attempt, result, self.now);
                    self.apply(e);
                }
            }
            Ev::LookupDone {
                epoch,
                attempt,
                result,
            } => {
                if epoch == self.epoch {
                    let e = self.engine.on_lookup_result(attempt, result, self.now);
                    self.apply(e);
                }
            }
            Ev::Poll(p) => {
                let pr = &self.procs[p.index()];
                let report = HealthReport {
                    failing: pr.failing,
                    min_response_time_ms: pr.delay_ms as u64,
                };
                self.engine.on_health(p, report, self.now);
                self.after(5_000 * MS, Ev::Poll(p));
            }
            Ev::Chaos => {
                if self.chaos {
                    let p = if self.rng.chance(500) { 0 } else { 1 };
                    let proc = &mut self.procs[p];
                    match self.rng.below(3) {
                        0 => proc.failing = !proc.failing,
                        1 => {
                            proc.delay_ms =
                                [0, 5, 20, 100, 500, 1000, 2000, 5000][self.rng.below(8) as usize]
                        }
                        _ => {
                            proc.failing = false;
                            proc.delay_ms = 0;
                        }
                    }
                    let next = 500 + self.rng.below(6_000) as i64;
                    self.after(next * MS, Ev::Chaos);
                }
            }
            Ev::Crash => {
                // The process dies: in-flight answers go nowhere; the processors keep
                // what they stored. A new engine starts from the log.
                self.crashes += 1;
                self.epoch += 1;
                self.engine = Engine::new(cfg());
                let log = self.log.clone();
                restore(&mut self.engine, &log, self.now);
            }
            Ev::Wake => {}
        }
    }

    /// The invariants of one payment.
    fn check_payment(&self, id: &Uuid) {
        let stored = [0, 1].map(|i| self.procs[i].stored.get(id));
        assert!(
            stored[0].is_none() || stored[1].is_none(),
            "{id} stored by both processors"
        );
        if let Some((p, at, amount)) = self.recorded.get(id) {
            assert_eq!(
                stored[p.index()],
                Some(&(*at, *amount)),
                "{id} recorded at {p:?} but not stored so"
            );
            assert!(
                self.engine.knows(id) && !self.engine.is_pending(id),
                "{id} recorded but still pending"
            );
        } else if self.accepted.contains(id) {
            assert!(
                self.engine.is_pending(id),
                "{id} accepted, not recorded and not pending: lost"
            );
        }
    }

    /// After every step: O(1) global checks, and the payments the step touched in full.
    /// Every 64 steps (and after a crash) every payment is checked.
    fn check(&mut self, full: bool) {
        let all = self.engine.summary(&SummaryQuery::default());
        for p in Processor::ALL {
            let (n, sum) = self.recorded_totals[p.index()];
            assert_eq!(
                (all.get(p).count, all.get(p).amount.0),
                (n, sum),
                "summary drifted from the recorded set ({p:?}) at {:?}",
                self.now
            );
        }
        assert_eq!(
            self.accepted.len(),
            self.recorded.len() + self.engine.pending_len(),
            "accepted = recorded + pending"
        );
        assert_eq!(
            self.engine.pending_len(),
            self.engine.queue_depth() + self.engine.in_flight(),
            "a pending payment is queued or in flight, once"
        );
        let touched = std::mem::take(&mut self.touched);
        for id in &touched {
            self.check_payment(id);
        }
        if full {
            for id in self
                .accepted
                .iter()
                .chain(self.procs[0].stored.keys())
                .chain(self.procs[1].stored.keys())
            {
                self.check_payment(id);
            }
        }
    }

    fn run(&mut self, until: Micros) {
        while let Some(Reverse((t, _, idx))) = self.events.peek().copied() {
            assert!(
                self.slab.len() < 2_000_000,
                "runaway event loop at {:?}",
                self.now
            );
            if t > until.0 {
                break;
            }
            self.events.pop();
            self.now = Micros(t);
            let ev = self.slab[idx];
            self.step(ev);
            self.dispatch();
            self.steps += 1;
            self.check(self.steps.is_multiple_of(64) || matches!(ev, Ev::Crash));
        }
        self.now = until;
    }
}

fn simulate(seed: u64) -> (usize, u32) {
    let mut w = World::new(seed);
    let payments = 50 + w.rng.below(250) as u128;
    let span = 30_000 * MS;
    for n in 0..payments {
        let t = Micros(T0 + w.rng.below(span as u64) as i64);
        w.at(t, Ev::Submit(n + 1));
        if w.rng.chance(100) {
            // A client retry of the same payment.
            let t2 = Micros(t.0 + w.rng.below(5_000 * MS as u64) as i64);
            w.at(t2, Ev::Submit(n + 1));
        }
    }
    w.at(Micros(T0), Ev::Poll(Processor::Default));
    w.at(Micros(T0 + 2_500 * MS), Ev::Poll(Processor::Fallback));
    w.at(Micros(T0 + 1_000 * MS), Ev::Chaos);
    for _ in 0..w.rng.below(4) {
        let t = Micros(T0 + w.rng.below(span as u64) as i64);
        w.at(t, Ev::Crash);
    }
    w.run(Micros(T0 + span + 5_000 * MS));
    // Heal: no more faults; everything must finish.
    w.chaos = false;
    for p in &mut w.procs {
        p.failing = false;
        p.delay_ms = 0;
    }
    w.run(Micros(T0 + span + 120_000 * MS));
    w.check(true);
    assert_eq!(
        w.engine.queue_depth() + w.engine.in_flight(),
        0,
        "work left after healing: queue {} in flight {}; views {:?} / {:?}",
        w.engine.queue_depth(),
        w.engine.in_flight(),
        w.engine.view(Processor::Default),
        w.engine.view(Processor::Fallback)
    );
    for id in &w.accepted {
        let n = w.procs.iter().filter(|p| p.stored.contains_key(id)).count();
        assert_eq!(n, 1, "{id} stored {n} times");
        assert!(
            w.recorded.contains_key(id),
            "{id} stored but never recorded"
        );
    }
    let stored_total: usize = w.procs.iter().map(|p| p.stored.len()).sum();
    assert_eq!(
        stored_total,
        w.accepted.len(),
        "processors hold payments nobody accepted"
    );
    // The summary equals the books for random windows.
    for _ in 0..20 {
        let a = T0 + w.rng.below((span + 60_000 * MS) as u64) as i64;
        let b = a + w.rng.below(20_000 * MS as u64) as i64;
        let q = SummaryQuery {
            from: Some(Micros(a)),
            to: Some(Micros(b)),
        };
        let s = w.engine.summary(&q);
        for p in Processor::ALL {
            let (n, sum) = w.procs[p.index()]
                .stored
                .values()
                .filter(|(at, _)| q.contains(*at))
                .fold((0u64, 0i64), |(n, s), (_, c)| (n + 1, s + c.0));
            assert_eq!(
                (s.get(p).count, s.get(p).amount.0),
                (n, sum),
                "window {a}..{b} {p:?}"
            );
        }
    }
    (w.accepted.len(), w.crashes)
}

#[test]
fn seeded_simulation() {
    let seeds: Vec<u64> = match std::env::var("SIM_SEED") {
        Ok(s) => vec![s.parse().expect("SIM_SEED must be a number")],
        Err(_) => {
            let n: u64 = std::env::var("SIM_SEEDS")
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or(2000);
            (1..=n).collect()
        }
    };
    let (mut payments, mut crashes) = (0usize, 0u32);
    for &seed in &seeds {
        let r = std::panic::catch_unwind(|| simulate(seed));
        match r {
            Ok((p, c)) => {
                payments += p;
                crashes += c;
            }
            Err(e) => {
                let msg = e
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                panic!(
                    "seed {seed} failed: {msg}\nreproduce with: SIM_SEED={seed} cargo test -p worker --test sim -- --nocapture"
                );
            }
        }
    }
    println!(
        "simulated {} seeds: {payments} payments, {crashes} worker crashes, 0 violations",
        seeds.len()
    );
}
