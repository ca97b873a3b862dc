//! Spreading the connections of one shared listener over the workers.
//!
//! Every worker polls the shared listening socket, and a new connection
//! wakes them all; each accepts until the backlog is empty. Left at that, a
//! burst of connections (a load balancer opening its pool, a benchmark
//! starting) goes to whichever worker woke first, often all of it. So while
//! serving, a worker that holds more than [`SLACK`] connections more than the
//! least-loaded worker stops accepting and nudges that worker, which accepts
//! in its place until it is ahead in turn. Connections wait in the kernel's
//! backlog meanwhile, never in a worker, so a stop still finds them all
//! there.
//!
//! How long to leave the backlog to the nudged worker depends on what it
//! is doing, which each worker publishes: asleep in its poll, in its own
//! loop, or in a handler, and how many steps (wake-ups, handler returns) it
//! has taken. Asleep, it wakes for the nudge; in its loop, whose work is
//! bounded, it reaches the nudge soon. Either way it is waited for, however
//! late the scheduler lets it run: a worker merely slow to be scheduled (a
//! busy machine, a container's CPU quota spent) is the common case, and
//! giving up on it loses the spread exactly when it matters. Only a handler
//! can take unbounded time: a worker found in the same handler call at
//! [`STALLS`] looks in a row, each [`LOOK_EVERY`] after the last, is stuck
//! there, and the waiting worker accepts in its place. [`WAIT_BOUND`] caps
//! any wait.
//!
//! With `--reuse-port` each worker has a socket of its own and the kernel
//! spreads connections by their addresses; there is nothing to balance, and
//! no worker is ever ahead (nor is a lone worker). What the workers publish
//! is kept all the same: the coordinator reads it to find a worker stuck in
//! a handler ([`crate::stuck`]).

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use crate::handler::{Inbox, Message};

/// How many connections more than the least-loaded worker's a worker may
/// hold and still accept.
const SLACK: usize = 2;

/// How often a waiting worker looks again at the worker it waits for.
pub(crate) const LOOK_EVERY: Duration = Duration::from_millis(10);

/// In how many looks in a row a worker must be found in the same handler
/// call to be given up on: two, so that a handler just begun at the first
/// look is given a whole [`LOOK_EVERY`].
const STALLS: u8 = 2;

/// The longest a worker leaves the backlog to another, however that one
/// fares: beyond it the machine is so starved that waiting gains nothing.
const WAIT_BOUND: Duration = Duration::from_millis(200);

/// A flag of [`Slot::steps`]: set while the worker sleeps in its poll (or
/// is not yet running).
const ASLEEP: u64 = 1;

/// A flag of [`Slot::steps`]: set while the worker is in a handler.
const HANDLING: u64 = 2;

/// One step in [`Slot::steps`], above its flags.
const STEP: u64 = 4;

/// One worker's part of the balance, written by that worker alone: on a
/// cache line of its own, so that a worker's writes on its hot path do not
/// steal the line of another's.
#[repr(align(128))]
struct Slot {
    /// Its open connections.
    open: AtomicUsize,
    /// The steps it has taken, in [`STEP`]s, and its flags ([`ASLEEP`],
    /// [`HANDLING`]).
    steps: AtomicU64,
}

/// The open connections and progress of each worker sharing one listener,
/// and how to wake each.
pub(crate) struct Balance {
    slots: Box<[Slot]>,
    /// How many times a worker found the backlog empty: a wait for another
    /// worker that began before the last of these is over.
    emptied: AtomicUsize,
    /// Set once every worker exists; until then nobody is nudged, and
    /// [`WAIT_BOUND`] alone ends a wait for a worker not yet running.
    inboxes: OnceLock<Box<[Arc<Inbox>]>>,
    /// The workers share one listener: only then is there a backlog to
    /// spread.
    shared: bool,
    /// The coordinator stopped waiting for the workers still running (see
    /// [`crate::exit_deadline`]): `serve` has returned, so a worker whose
    /// handler comes back serves nothing more.
    given_up: AtomicBool,
}

impl Balance {
    pub(crate) fn new(workers: usize, shared: bool) -> Arc<Balance> {
        Arc::new(Balance {
            slots: (0..workers)
                .map(|_| Slot {
                    open: AtomicUsize::new(0),
                    steps: AtomicU64::new(ASLEEP),
                })
                .collect(),
            emptied: AtomicUsize::new(0),
            inboxes: OnceLock::new(),
            shared,
            given_up: AtomicBool::new(false),
        })
    }

    /// The coordinator gives up on the workers still running.
    pub(crate) fn give_up(&self) {
        self.given_up.store(true, Ordering::Relaxed);
    }

    /// Whether the coordinator has given up on the workers still running.
    pub(crate) fn given_up(&self) -> bool {
        self.given_up.load(Ordering::Relaxed)
    }

    /// The workers' inboxes, in worker order.
    pub(crate) fn set_inboxes(&self, inboxes: Box<[Arc<Inbox>]>) {
        let _ = self.inboxes.set(inboxes);
    }

    /// Worker `me` now has `open` connections.
    pub(crate) fn record(&self, me: usize, open: usize) {
        self.slots[me].open.store(open, Ordering::Relaxed);
    }

    /// The least-loaded worker, if worker `me` holds more than [`SLACK`]
    /// connections more than it and they share a listener.
    pub(crate) fn ahead_of(&self, me: usize) -> Option<usize> {
        if !self.shared {
            return None;
        }
        let load = |slot: &Slot| slot.open.load(Ordering::Relaxed);
        let (least, fewest) = self
            .slots
            .iter()
            .enumerate()
            .min_by_key(|&(_, slot)| load(slot))?;
        (load(&self.slots[me]) > load(fewest) + SLACK).then_some(least)
    }

    /// A worker found the backlog empty.
    pub(crate) fn emptied(&self) {
        self.emptied.fetch_add(1, Ordering::Relaxed);
    }

    /// Worker `me` took a step: it woke up, or a handler returned. It is in
    /// its own loop.
    pub(crate) fn step(&self, me: usize) {
        self.set(me, |steps| (steps & !(ASLEEP | HANDLING)) + STEP);
    }

    /// Worker `me` calls a handler.
    pub(crate) fn handles(&self, me: usize) {
        self.set(me, |steps| steps | HANDLING);
    }

    /// Worker `me` goes to sleep in its poll.
    pub(crate) fn sleeps(&self, me: usize) {
        self.set(me, |steps| steps | ASLEEP);
    }

    /// Changes worker `me`'s steps: only it writes them, so a plain load
    /// and store do, and cost it no locked instruction on its hot path.
    fn set(&self, me: usize, change: impl FnOnce(u64) -> u64) {
        let steps = &self.slots[me].steps;
        steps.store(change(steps.load(Ordering::Relaxed)), Ordering::Relaxed);
    }

    /// The handler call worker `worker` is in, if it is in one: a value
    /// that stays the same until that call returns.
    pub(crate) fn handler_call(&self, worker: usize) -> Option<u64> {
        let steps = self.slots[worker].steps.load(Ordering::Relaxed);
        (steps & HANDLING != 0).then_some(steps)
    }

    /// Worker `worker`'s open connections.
    pub(crate) fn open(&self, worker: usize) -> usize {
        self.slots[worker].open.load(Ordering::Relaxed)
    }

    /// Begins a wait for worker `worker` to accept, at `now`.
    pub(crate) fn wait_for(&self, worker: usize, now: Instant) -> Wait {
        Wait {
            worker,
            since: now,
            emptied: self.emptied.load(Ordering::Relaxed),
            seen: self.slots[worker].steps.load(Ordering::Relaxed),
            seen_at: now,
            stalls: 0,
            looked_at: now,
        }
    }

    /// Asks worker `worker` to accept.
    pub(crate) fn nudge(&self, worker: usize) {
        if let Some(inbox) = self.inboxes.get().and_then(|all| all.get(worker)) {
            inbox.post(Message::Accept);
        }
    }
}

/// A worker's wait for another to accept in its place (see the module's
/// comment).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Wait {
    /// The worker waited for.
    worker: usize,
    since: Instant,
    /// [`Balance::emptied`]'s count when the wait began.
    emptied: usize,
    /// The waited-for worker's steps at the last look that counted, and
    /// when that was.
    seen: u64,
    seen_at: Instant,
    /// Looks in a row that found it in the same handler call.
    stalls: u8,
    /// When it was last looked at.
    looked_at: Instant,
}

impl Wait {
    /// Whether this is still the wait for `worker`: it is over once the
    /// backlog was emptied since it began (a new connection wakes the
    /// waiting worker anyway).
    pub(crate) fn is_for(&self, worker: usize, balance: &Balance) -> bool {
        self.worker == worker && !self.is_over(balance)
    }

    /// See [`Wait::is_for`].
    pub(crate) fn is_over(&self, balance: &Balance) -> bool {
        self.emptied != balance.emptied.load(Ordering::Relaxed)
    }

    /// When to look again.
    pub(crate) fn next_look(&self) -> Instant {
        self.looked_at + LOOK_EVERY
    }

    /// Looks at the waited-for worker at `now`: whether to go on waiting
    /// for it. Given up on, it is waited for again once it takes a step.
    pub(crate) fn goes_on(&mut self, balance: &Balance, now: Instant) -> bool {
        self.looked_at = now;
        if now >= self.since + WAIT_BOUND {
            return false;
        }
        let steps = balance.slots[self.worker].steps.load(Ordering::Relaxed);
        if steps != self.seen {
            (self.seen, self.seen_at, self.stalls) = (steps, now, 0);
        } else if steps & HANDLING != 0 && now >= self.seen_at + LOOK_EVERY {
            self.seen_at = now;
            self.stalls = self.stalls.saturating_add(1);
        }
        self.stalls < STALLS
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_worker_is_ahead_only_beyond_the_slack_of_the_least_loaded() {
        let balance = Balance::new(3, true);
        for (worker, open) in [(0, 5), (1, 3), (2, 4)] {
            balance.record(worker, open);
        }
        assert_eq!(balance.ahead_of(0), None, "5 is within 2 of 3");
        balance.record(0, 6);
        assert_eq!(balance.ahead_of(0), Some(1));
        assert_eq!(balance.ahead_of(1), None, "the least-loaded is never ahead");
        assert_eq!(balance.ahead_of(2), None);
        let unshared = Balance::new(3, false);
        unshared.record(0, 6);
        assert_eq!(unshared.ahead_of(0), None, "nothing to spread");
    }

    #[test]
    fn a_handler_call_is_named_until_it_returns() {
        let balance = Balance::new(1, false);
        assert_eq!(balance.handler_call(0), None, "not yet running");
        balance.step(0);
        assert_eq!(balance.handler_call(0), None, "in its loop");
        balance.handles(0);
        let call = balance.handler_call(0);
        assert!(call.is_some());
        assert_eq!(balance.handler_call(0), call, "the same call");
        balance.step(0);
        assert_eq!(balance.handler_call(0), None, "returned");
        balance.handles(0);
        assert!(
            balance.handler_call(0).is_some_and(|c| Some(c) != call),
            "another call"
        );
    }

    fn at(start: Instant) -> impl Fn(u64) -> Instant {
        move |ms| start + Duration::from_millis(ms)
    }

    #[test]
    fn an_asleep_worker_is_waited_for_until_the_bound() {
        let ms = at(Instant::now());
        let balance = Balance::new(2, true);
        // Worker 1 not yet running, or asleep in its poll: it will come.
        let mut wait = balance.wait_for(1, ms(0));
        for look in (10..200).step_by(10) {
            assert!(wait.goes_on(&balance, ms(look)), "at {look} ms");
        }
        assert!(!wait.goes_on(&balance, ms(200)), "not beyond the bound");
    }

    #[test]
    fn a_worker_in_its_own_loop_is_waited_for_until_the_bound() {
        let ms = at(Instant::now());
        let balance = Balance::new(2, true);
        // Awake and taking no step: not scheduled, its work being bounded.
        balance.step(1);
        let mut wait = balance.wait_for(1, ms(0));
        for look in (10..200).step_by(10) {
            assert!(wait.goes_on(&balance, ms(look)), "at {look} ms");
        }
        assert!(!wait.goes_on(&balance, ms(200)), "not beyond the bound");
    }

    #[test]
    fn a_worker_in_one_handler_call_at_two_looks_is_given_up_on() {
        let ms = at(Instant::now());
        let balance = Balance::new(2, true);
        balance.handles(1);
        let mut wait = balance.wait_for(1, ms(0));
        assert!(wait.goes_on(&balance, ms(5)), "too soon to count");
        assert!(
            wait.goes_on(&balance, ms(90)),
            "one look, however late: the process may have been starved"
        );
        balance.step(1);
        balance.handles(1);
        assert!(
            wait.goes_on(&balance, ms(100)),
            "another call: the count starts over"
        );
        assert!(wait.goes_on(&balance, ms(110)), "one look");
        assert!(!wait.goes_on(&balance, ms(120)), "two: stuck");
        assert!(!wait.goes_on(&balance, ms(121)), "still stuck");
        balance.step(1);
        assert!(wait.goes_on(&balance, ms(122)), "on its way again");
    }

    #[test]
    fn a_worker_that_falls_asleep_is_waited_for_again() {
        let ms = at(Instant::now());
        let balance = Balance::new(2, true);
        balance.handles(1);
        let mut wait = balance.wait_for(1, ms(0));
        assert!(wait.goes_on(&balance, ms(10)), "one look in the handler");
        balance.step(1);
        balance.sleeps(1);
        for look in [20, 30, 40] {
            assert!(wait.goes_on(&balance, ms(look)), "asleep at {look} ms");
        }
    }

    #[test]
    fn a_wait_is_over_once_the_backlog_is_emptied() {
        let ms = at(Instant::now());
        let balance = Balance::new(2, true);
        let wait = balance.wait_for(1, ms(0));
        assert!(wait.is_for(1, &balance));
        assert!(!wait.is_for(0, &balance), "another worker's wait");
        balance.emptied();
        assert!(wait.is_over(&balance));
        assert!(!wait.is_for(1, &balance));
    }
}
