//! What every part of the world shares: the virtual clock, the one source of
//! randomness, the queue of timed events, the trace, and the first failure.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Duration;

use ebb_core::{RequestId, Time};
use ebb_testkit::rng::Rng;

use crate::client::Wake;
use crate::failure::Failure;
use crate::kernel::Dir;
use crate::trace;
use crate::trace::Trace;
use crate::world::Srv;

/// Something that happens at a point in virtual time.
#[derive(Clone, Copy, Debug)]
pub enum Ev {
    /// A client (re)connects.
    ClientStart(usize),
    /// A client's own timer, for its connection `k`.
    ClientWake(usize, usize, Wake),
    /// A slow client reads connection `k`.
    ClientRead(usize, usize),
    /// The next segment of a direction of connection `k` arrives.
    Arrive(usize, Dir),
    /// The driver gets round to reading server socket `k`, readable a
    /// `read_lag` ago.
    ServerRead(usize),
    /// The listener is readable: the driver accepts what is queued.
    AcceptReady,
    /// The application (of the server under test, or of the successor)
    /// answers.
    AppAnswer(Srv, RequestId),
    /// The application's producer of a streamed response offers its next
    /// piece (or ends, or stops).
    AppStream(Srv, RequestId),
    /// The application reads on in a streamed request body, after a gap.
    AppRead(Srv, RequestId),
    /// SIGTERM.
    Terminate,
    /// The listener is handed to a successor (`handle_handoff`).
    Handoff,
}

/// The shared clock, randomness, event queue, trace and failure.
pub struct Env {
    /// Virtual time; it only moves forward, to the next event or deadline.
    pub now: Time,
    /// World steps taken (one event or core deadline each).
    pub step: u64,
    /// Every random choice of the run.
    pub rng: Rng,
    /// When a client last read a complete final response: the world is
    /// still making progress (see the liveness bound in `World::run`).
    pub answered_at: Time,
    /// Trace lines (see [`trace!`](crate::trace!)).
    pub trace: Trace,
    /// A min-heap by `(time, sequence)`: the order is total, so a run is
    /// as deterministic as with a sorted map, and cheaper. Each entry is
    /// one number, `key` of the time in nanoseconds, the sequence and the
    /// slot its event waits in, so sifting compares and moves 16 bytes, not
    /// an event.
    queue: BinaryHeap<Reverse<u128>>,
    seq: u32,
    /// Scheduled events, by slot; `free` lists the slots popped.
    slots: Vec<Ev>,
    free: Vec<u32>,
    failure: Option<Failure>,
}

impl Env {
    /// A world at time zero whose choices all come from `seed`.
    pub fn new(seed: u64, trace: Trace) -> Env {
        Env {
            now: Time::ZERO,
            step: 0,
            rng: Rng::new(seed),
            answered_at: Time::ZERO,
            trace,
            queue: BinaryHeap::new(),
            seq: 0,
            slots: Vec::new(),
            free: Vec::new(),
            failure: None,
        }
    }

    /// Schedules `ev` at `at` (never before now). Events at one instant run
    /// in the order they were scheduled.
    pub fn at(&mut self, at: Time, ev: Ev) {
        self.at_nanos(at.as_nanos(), ev);
    }

    /// Schedules `ev` at `at` nanoseconds after the epoch (never before
    /// now): for the kernel, which times its segments in nanoseconds and
    /// need not convert them to `Time` and back.
    pub fn at_nanos(&mut self, at: u64, ev: Ev) {
        self.seq = self
            .seq
            .checked_add(1)
            .expect("fewer than 2^32 events a run");
        let slot = match self.free.pop() {
            Some(slot) => {
                self.slots[slot as usize] = ev;
                slot
            }
            None => {
                self.slots.push(ev);
                u32::try_from(self.slots.len() - 1).expect("fewer than 2^32 events pending")
            }
        };
        self.queue
            .push(Reverse(key(at.max(self.now.as_nanos()), self.seq, slot)));
    }

    /// Makes room for `n` more scheduled events at once, rather than
    /// growing the queue step by step as they come (the clients'
    /// arrivals, all scheduled before the run).
    pub fn reserve(&mut self, n: usize) {
        self.queue.reserve(n);
        self.slots.reserve(n);
    }

    /// Schedules `ev` after `d`.
    pub fn after(&mut self, d: Duration, ev: Ev) {
        self.at(self.now + d, ev);
    }

    /// When the next scheduled event is due.
    pub fn next_at(&self) -> Option<Time> {
        self.queue
            .peek()
            .map(|&Reverse(key)| Time::from_nanos((key >> 64) as u64))
    }

    /// Takes the next scheduled event.
    pub fn pop(&mut self) -> Option<Ev> {
        let Reverse(key) = self.queue.pop()?;
        let slot = key as u32;
        self.free.push(slot);
        Some(self.slots[slot as usize])
    }

    /// Records a property violation; the first one is kept, with the time
    /// and step, and the run stops after this step.
    pub fn fail(&mut self, failure: Failure) {
        trace!(self, "FAIL {failure}");
        if self.failure.is_none() {
            let at = format!("at {:?} (step {})", self.now, self.step);
            self.failure = Some(failure.located(&at));
        }
    }

    /// Whether a property has been violated.
    pub fn failed(&self) -> bool {
        self.failure.is_some()
    }

    /// The first violation, if any.
    pub fn failure(&self) -> Option<&Failure> {
        self.failure.as_ref()
    }
}

/// A queue entry: `at`, then `seq`, then `slot`, from the high bits down, so
/// entries order as their `(at, seq)` do (sequences are unique).
fn key(at: u64, seq: u32, slot: u32) -> u128 {
    (u128::from(at) << 64) | (u128::from(seq) << 32) | u128::from(slot)
}
