//! What the two simulations share: a seeded random source, a timed event queue, the
//! simulated processors' books, and the runner that goes through the seeds and names
//! the one that failed.
#![allow(dead_code, unreachable_pub)]

use model::{Cents, Micros, Mono};
use std::cmp::Reverse;
use std::collections::{hash_map::Entry, BinaryHeap, HashMap};
use uuid::Uuid;
use worker::engine::{LookupResult, SendResult, StoredCopy};

/// What a simulated processor stored: its `requestedAt` and amount, by id.
pub type Stored = HashMap<Uuid, (Micros, Cents)>;

/// A send reaching a simulated processor, as the official one treats it: refused
/// while it fails (checked when the request's delay ends), else stored once; a second
/// copy of the same id is a 422.
pub fn take(stored: &mut Stored, failing: bool, id: Uuid, at: Micros, amount: Cents) -> SendResult {
    if failing {
        return SendResult::Failed;
    }
    match stored.entry(id) {
        Entry::Occupied(_) => SendResult::AlreadyStored,
        Entry::Vacant(v) => {
            v.insert((at, amount));
            SendResult::Stored
        }
    }
}

/// `GET /payments/{id}` on a simulated processor: its own copy, or not found.
pub fn look_up(stored: &Stored, id: &Uuid) -> LookupResult {
    match stored.get(id) {
        Some(&(at, amount)) => LookupResult::Found(StoredCopy {
            amount,
            requested_at: at,
        }),
        None => LookupResult::NotFound,
    }
}

/// splitmix64: small, fast, good enough to explore schedules.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    pub fn chance(&mut self, per_mille: u64) -> bool {
        self.below(1000) < per_mille
    }
}

/// Events in time order (ties in the order they were scheduled).
pub struct Events<E> {
    seq: u64,
    heap: BinaryHeap<Reverse<(i64, u64, usize)>>,
    slab: Vec<E>,
}

impl<E: Copy> Events<E> {
    pub fn new() -> Events<E> {
        Events {
            seq: 0,
            heap: BinaryHeap::new(),
            slab: Vec::new(),
        }
    }

    pub fn at(&mut self, t: Mono, ev: E) {
        self.seq += 1;
        self.slab.push(ev);
        self.heap
            .push(Reverse((t.0, self.seq, self.slab.len() - 1)));
    }

    /// The next event due at or before `until`.
    pub fn pop_until(&mut self, until: Mono) -> Option<(Mono, E)> {
        let Reverse((t, _, idx)) = *self.heap.peek()?;
        if t > until.0 {
            return None;
        }
        self.heap.pop();
        Some((Mono(t), self.slab[idx]))
    }

    /// Events scheduled so far (a bound against runaway loops).
    pub fn scheduled(&self) -> usize {
        self.slab.len()
    }
}

/// Runs `simulate` for the seeds `SIM_SEEDS` (default `default_seeds`) or only
/// `SIM_SEED`, and names the seed that failed with how to reproduce it.
pub fn run_seeds<T>(
    test: &str,
    default_seeds: u64,
    simulate: impl Fn(u64) -> T + std::panic::RefUnwindSafe,
    mut add: impl FnMut(T),
) -> usize {
    let seeds: Vec<u64> = match std::env::var("SIM_SEED") {
        Ok(s) => vec![s.parse().expect("SIM_SEED must be a number")],
        Err(_) => {
            let n: u64 = std::env::var("SIM_SEEDS")
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or(default_seeds);
            (1..=n).collect()
        }
    };
    for &seed in &seeds {
        match std::panic::catch_unwind(|| simulate(seed)) {
            Ok(t) => add(t),
            Err(e) => {
                let msg = e
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                panic!(
                    "seed {seed} failed: {msg}\nreproduce with: SIM_SEED={seed} cargo test -p worker --test {test} -- --nocapture"
                );
            }
        }
    }
    seeds.len()
}
