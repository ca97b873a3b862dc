//! How long the coordinator waits for its workers once the server stops.
//!
//! A worker ends its drain at the deadline (or at once, on a second stop)
//! however its clients behave: all its other work is bounded. Only the
//! application can hold it: a handler that blocks keeps the worker's loop
//! from running, and with it the deadline. The coordinator does not wait for
//! such a worker forever: it gives up on it a grace after the moment every
//! worker should have exited, and `serve` returns without it (the binary
//! then exits, and the thread with it). A worker that is merely slow is not
//! given up on by mistake: its deadline lies after the coordinator's by only
//! the time it took to see the stop, and the grace is far longer.

use std::time::{Duration, Instant};

use ebb_core::Forced;

use crate::shutdown::ShutdownHandle;

/// After the drain deadline: room for a worker that saw the stop late, on
/// a loaded machine, to reach its own deadline and report.
const DEADLINE_GRACE: Duration = Duration::from_secs(2);

/// After a forced exit was asked for: a worker that is not stuck exits at
/// once, so this only bounds how long a stuck one delays the exit.
const FORCE_GRACE: Duration = Duration::from_secs(1);

/// When the coordinator stops waiting for workers that have not exited.
#[derive(Debug)]
pub(crate) struct ExitDeadline {
    pre_stop: Duration,
    drain_timeout: Duration,
    /// When the coordinator first saw the server stopping.
    stopped_at: Option<Instant>,
    /// A forced exit was asked for.
    forced: bool,
    give_up_at: Option<Instant>,
}

impl ExitDeadline {
    pub(crate) fn new(pre_stop: Duration, drain_timeout: Duration) -> ExitDeadline {
        ExitDeadline {
            pre_stop,
            drain_timeout,
            stopped_at: None,
            forced: false,
            give_up_at: None,
        }
    }

    /// Takes in the stop requests and hand-off made so far, as of `now`:
    /// the first starts the wait (after the pre-stop, unless the listeners
    /// were handed off, which drains at once), and a forced exit shortens it.
    pub(crate) fn observe(&mut self, shutdown: &ShutdownHandle, now: Instant) {
        let handed_off = shutdown.handed_off();
        let stops = shutdown.requests();
        if self.stopped_at.is_none() && (handed_off || stops > 0) {
            let pre_stop = if handed_off {
                Duration::ZERO
            } else {
                self.pre_stop
            };
            self.stopped_at = Some(now);
            // A wait too long for the clock (a `Duration::MAX` meaning "no
            // deadline") gives up never.
            let wait = pre_stop
                .saturating_add(self.drain_timeout)
                .saturating_add(DEADLINE_GRACE);
            self.give_up_at = now.checked_add(wait);
        }
        // The same rule as the workers': after a hand-off the first stop is
        // absorbed and not counted, so any counted one forces.
        let forced = stops > 1 || (handed_off && stops > 0);
        if forced && !self.forced {
            self.forced = true;
            let at = now + FORCE_GRACE;
            self.give_up_at = Some(self.give_up_at.map_or(at, |due| due.min(at)));
        }
    }

    /// How long the coordinator may sleep before it must look again.
    pub(crate) fn timeout(&self, now: Instant) -> Option<Duration> {
        self.give_up_at.map(|at| at.saturating_duration_since(now))
    }

    /// Whether the workers still running are given up on.
    pub(crate) fn passed(&self, now: Instant) -> bool {
        self.give_up_at.is_some_and(|at| now >= at)
    }

    /// When the coordinator first saw the server stopping.
    pub(crate) fn stopped_at(&self) -> Option<Instant> {
        self.stopped_at
    }

    /// What forced the exit of the workers given up on.
    pub(crate) fn why(&self) -> Forced {
        if self.forced {
            Forced::SecondTerminate
        } else {
            Forced::Deadline
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PRE_STOP: Duration = Duration::from_secs(3);
    const DRAIN: Duration = Duration::from_secs(30);

    #[test]
    fn serving_gives_no_deadline() {
        let mut deadline = ExitDeadline::new(PRE_STOP, DRAIN);
        let now = Instant::now();
        deadline.observe(&ShutdownHandle::new(), now);
        assert_eq!(deadline.timeout(now), None);
        assert!(!deadline.passed(now + Duration::from_secs(3600)));
    }

    #[test]
    fn a_stop_waits_for_the_pre_stop_the_drain_and_the_grace() {
        let mut deadline = ExitDeadline::new(PRE_STOP, DRAIN);
        let handle = ShutdownHandle::new();
        handle.request();
        let t0 = Instant::now();
        deadline.observe(&handle, t0);
        // Seen again later: the wait runs from the first sight.
        deadline.observe(&handle, t0 + Duration::from_secs(5));
        let due = PRE_STOP + DRAIN + DEADLINE_GRACE;
        assert_eq!(deadline.timeout(t0), Some(due));
        assert!(!deadline.passed(t0 + due - Duration::from_millis(1)));
        assert!(deadline.passed(t0 + due));
        assert_eq!(deadline.why(), Forced::Deadline);
        assert_eq!(deadline.stopped_at(), Some(t0));
    }

    #[test]
    fn a_second_stop_cuts_the_wait_to_the_force_grace() {
        let mut deadline = ExitDeadline::new(PRE_STOP, DRAIN);
        let handle = ShutdownHandle::new();
        handle.request();
        let t0 = Instant::now();
        deadline.observe(&handle, t0);
        handle.request();
        let t1 = t0 + Duration::from_secs(4);
        deadline.observe(&handle, t1);
        assert_eq!(deadline.timeout(t1), Some(FORCE_GRACE));
        assert_eq!(deadline.why(), Forced::SecondTerminate);
        // Two stops seen at once: forced from the start.
        let mut both = ExitDeadline::new(PRE_STOP, DRAIN);
        both.observe(&handle, t1);
        assert_eq!(both.timeout(t1), Some(FORCE_GRACE));
    }

    #[test]
    fn a_hand_off_drains_at_once_and_its_next_stop_forces() {
        let mut deadline = ExitDeadline::new(PRE_STOP, DRAIN);
        let handle = ShutdownHandle::new();
        assert!(handle.hand_off());
        let t0 = Instant::now();
        deadline.observe(&handle, t0);
        assert_eq!(deadline.timeout(t0), Some(DRAIN + DEADLINE_GRACE));
        // The first stop after a hand-off is absorbed, and forces nothing.
        handle.request();
        deadline.observe(&handle, t0);
        assert_eq!(deadline.why(), Forced::Deadline);
        handle.request();
        deadline.observe(&handle, t0);
        assert_eq!(deadline.timeout(t0), Some(FORCE_GRACE));
        assert_eq!(deadline.why(), Forced::SecondTerminate);
    }

    #[test]
    fn a_deadline_beyond_the_clock_is_no_deadline_until_a_forced_exit() {
        let mut deadline = ExitDeadline::new(Duration::MAX, Duration::MAX);
        let handle = ShutdownHandle::new();
        handle.request();
        let t0 = Instant::now();
        deadline.observe(&handle, t0);
        assert_eq!(deadline.timeout(t0), None);
        handle.request();
        deadline.observe(&handle, t0);
        assert_eq!(deadline.timeout(t0), Some(FORCE_GRACE));
    }

    #[test]
    fn a_forced_exit_never_lengthens_the_wait() {
        let mut deadline = ExitDeadline::new(Duration::ZERO, Duration::from_millis(100));
        let handle = ShutdownHandle::new();
        handle.request();
        let t0 = Instant::now();
        deadline.observe(&handle, t0);
        handle.request();
        deadline.observe(&handle, t0 + Duration::from_secs(10));
        assert!(deadline.passed(t0 + Duration::from_millis(100) + DEADLINE_GRACE));
    }
}
