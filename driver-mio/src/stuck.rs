//! Finding a worker stuck in a handler while the server runs.
//!
//! A handler that blocks holds its worker's loop: every connection of that
//! worker waits, and so would its drain (which the coordinator bounds: see
//! [`crate::exit_deadline`]). The loop cannot say so, since it is not
//! running. So the coordinator looks, every [`LOOK_EVERY`], at what each
//! worker publishes (see [`crate::balance`]), and warns once about each
//! handler call it has seen last [`STUCK_AFTER`]: the operator learns which
//! worker is held, and how many connections wait with it, instead of seeing
//! a server that silently stopped answering.

use std::time::{Duration, Instant};

use crate::balance::Balance;

/// How often the coordinator looks.
pub(crate) const LOOK_EVERY: Duration = Duration::from_secs(1);

/// How long a handler call may last before it is reported: far beyond what
/// any handler that answers at once or hands its work to another thread
/// takes, and soon enough for whoever watches the log.
const STUCK_AFTER: Duration = Duration::from_secs(10);

/// The handler call each worker was last seen in.
#[derive(Debug)]
pub(crate) struct StuckWatch {
    seen: Vec<Option<Seen>>,
}

#[derive(Copy, Clone, Debug)]
struct Seen {
    /// The call, as [`Balance::handler_call`] names it.
    call: u64,
    /// The first look that found the worker in it.
    since: Instant,
    told: bool,
}

impl StuckWatch {
    pub(crate) fn new(workers: usize) -> StuckWatch {
        StuckWatch {
            seen: vec![None; workers],
        }
    }

    /// Looks at every worker at `now`, and calls `tell(worker, for how
    /// long, its open connections)` for each handler call first seen at
    /// least [`STUCK_AFTER`] ago, once per call.
    pub(crate) fn look(
        &mut self,
        balance: &Balance,
        now: Instant,
        mut tell: impl FnMut(usize, Duration, usize),
    ) {
        for (worker, seen) in self.seen.iter_mut().enumerate() {
            let Some(call) = balance.handler_call(worker) else {
                *seen = None;
                continue;
            };
            let seen = match seen {
                Some(seen) if seen.call == call => seen,
                _ => seen.insert(Seen {
                    call,
                    since: now,
                    told: false,
                }),
            };
            let lasted = now.saturating_duration_since(seen.since);
            if !seen.told && lasted >= STUCK_AFTER {
                seen.told = true;
                tell(worker, lasted, balance.open(worker));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn told(watch: &mut StuckWatch, balance: &Balance, at: Instant) -> Vec<(usize, Duration)> {
        let mut told = Vec::new();
        watch.look(balance, at, |worker, lasted, _| told.push((worker, lasted)));
        told
    }

    #[test]
    fn a_handler_call_that_lasts_is_told_once() {
        let t0 = Instant::now();
        let s = |secs| t0 + Duration::from_secs(secs);
        let balance = Balance::new(2, false);
        let mut watch = StuckWatch::new(2);
        balance.step(0);
        balance.handles(1);
        balance.record(1, 7);
        assert_eq!(told(&mut watch, &balance, s(0)), []);
        assert_eq!(told(&mut watch, &balance, s(9)), [], "not yet");
        assert_eq!(told(&mut watch, &balance, s(10)), [(1, STUCK_AFTER)]);
        assert_eq!(told(&mut watch, &balance, s(30)), [], "once per call");
        let mut open = None;
        balance.step(1);
        balance.handles(1);
        watch.look(&balance, s(31), |_, _, n| open = Some(n));
        assert_eq!(open, None, "another call starts over");
        watch.look(&balance, s(41), |_, _, n| open = Some(n));
        assert_eq!(open, Some(7), "with the connections that wait on it");
    }

    #[test]
    fn calls_that_return_between_looks_are_never_told() {
        let t0 = Instant::now();
        let balance = Balance::new(1, false);
        let mut watch = StuckWatch::new(1);
        for second in 0..60 {
            // A busy worker, in a new handler call at every look.
            balance.step(0);
            balance.handles(0);
            let at = t0 + Duration::from_secs(second);
            assert_eq!(told(&mut watch, &balance, at), [], "at {second} s");
        }
        balance.step(0);
        balance.sleeps(0);
        assert_eq!(told(&mut watch, &balance, t0 + Duration::from_secs(99)), []);
    }
}
