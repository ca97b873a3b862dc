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
//! How long to leave the backlog to the nudged worker depends on what it is
//! doing. Asleep in its poll, it wakes for the nudge and comes, however
//! late the scheduler lets it run: it is waited for up to [`ASLEEP_BOUND`],
//! a bound for a machine so starved that waiting gains nothing. Awake, it
//! may be stuck in a slow handler: it is waited for until it has been awake
//! [`BACKSTOP`]. A fixed wait from the nudge alone would give up on a
//! worker that is merely slow to be scheduled, and a busy machine would
//! lose the spread exactly when it matters.
//!
//! With `--reuse-port` each worker has a socket of its own and the kernel
//! spreads connections by their addresses; there is nothing to balance.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use crate::handler::{Inbox, Message};

/// How many connections more than the least-loaded worker's a worker may
/// hold and still accept.
const SLACK: usize = 2;

/// How long a nudged worker may stay awake (in a handler, say) before the
/// worker that left it the backlog accepts itself. Also how often a waiting
/// worker looks again.
pub(crate) const BACKSTOP: Duration = Duration::from_millis(10);

/// How long a worker waits for a nudged worker that is asleep in its poll
/// (so will come as soon as it runs) before accepting itself.
const ASLEEP_BOUND: Duration = Duration::from_millis(200);

/// `awake_since` of a worker asleep in its poll, or not yet running.
const ASLEEP: u64 = 0;

/// The open connections of each worker sharing one listener, and how to
/// wake each.
pub(crate) struct Balance {
    open: Box<[AtomicUsize]>,
    /// Per worker: when its current pass of the loop began, in nanoseconds
    /// after `start` plus one, or [`ASLEEP`].
    awake_since: Box<[AtomicU64]>,
    /// The workers' common epoch.
    start: Instant,
    /// How many times a worker found the backlog empty: a wait for another
    /// worker that began before the last of these is over.
    emptied: AtomicUsize,
    /// Set once every worker exists; until then nobody is nudged, and the
    /// backstop alone ends a wait.
    inboxes: OnceLock<Box<[Arc<Inbox>]>>,
}

impl Balance {
    pub(crate) fn new(workers: usize, start: Instant) -> Arc<Balance> {
        Arc::new(Balance {
            open: (0..workers).map(|_| AtomicUsize::new(0)).collect(),
            awake_since: (0..workers).map(|_| AtomicU64::new(ASLEEP)).collect(),
            start,
            emptied: AtomicUsize::new(0),
            inboxes: OnceLock::new(),
        })
    }

    /// The workers' inboxes, in worker order.
    pub(crate) fn set_inboxes(&self, inboxes: Box<[Arc<Inbox>]>) {
        let _ = self.inboxes.set(inboxes);
    }

    /// Worker `me` now has `open` connections.
    pub(crate) fn record(&self, me: usize, open: usize) {
        self.open[me].store(open, Ordering::Relaxed);
    }

    /// The least-loaded worker, if worker `me` holds more than [`SLACK`]
    /// connections more than it.
    pub(crate) fn ahead_of(&self, me: usize) -> Option<usize> {
        let load = |w: &AtomicUsize| w.load(Ordering::Relaxed);
        let (least, fewest) = self.open.iter().enumerate().min_by_key(|&(_, w)| load(w))?;
        (load(&self.open[me]) > load(fewest) + SLACK).then_some(least)
    }

    /// A worker found the backlog empty.
    pub(crate) fn emptied(&self) {
        self.emptied.fetch_add(1, Ordering::Relaxed);
    }

    /// See [`Balance::emptied`].
    pub(crate) fn times_emptied(&self) -> usize {
        self.emptied.load(Ordering::Relaxed)
    }

    /// Worker `me` woke up at `at` (`Some`) or goes to sleep in its poll.
    pub(crate) fn awake(&self, me: usize, at: Option<Instant>) {
        let since = at.map_or(ASLEEP, |at| self.nanos(at) + 1);
        self.awake_since[me].store(since, Ordering::Relaxed);
    }

    /// Whether a worker that has left the backlog to `worker` since `since`
    /// should still wait for it at `now` (see the module's comment).
    pub(crate) fn waits_for(&self, worker: usize, since: Instant, now: Instant) -> bool {
        if now >= since + ASLEEP_BOUND {
            return false;
        }
        match self.awake_since[worker].load(Ordering::Relaxed) {
            ASLEEP => true,
            woke => self.nanos(now) + 1 < woke + BACKSTOP.as_nanos() as u64,
        }
    }

    fn nanos(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.start).as_nanos() as u64
    }

    /// Asks worker `worker` to accept.
    pub(crate) fn nudge(&self, worker: usize) {
        if let Some(inbox) = self.inboxes.get().and_then(|all| all.get(worker)) {
            inbox.post(Message::Accept);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_worker_is_ahead_only_beyond_the_slack_of_the_least_loaded() {
        let balance = Balance::new(3, Instant::now());
        for (worker, open) in [(0, 5), (1, 3), (2, 4)] {
            balance.record(worker, open);
        }
        assert_eq!(balance.ahead_of(0), None, "5 is within 2 of 3");
        balance.record(0, 6);
        assert_eq!(balance.ahead_of(0), Some(1));
        assert_eq!(balance.ahead_of(1), None, "the least-loaded is never ahead");
        assert_eq!(balance.ahead_of(2), None);
    }

    #[test]
    fn an_asleep_worker_is_waited_for_longer_than_an_awake_one() {
        let start = Instant::now();
        let balance = Balance::new(2, start);
        let ms = |n| start + Duration::from_millis(n);
        // Worker 1 asleep in its poll (or not yet running): it will come.
        assert!(balance.waits_for(1, ms(0), ms(150)));
        assert!(
            !balance.waits_for(1, ms(0), ms(200)),
            "not beyond the bound"
        );
        // Awake since 100 ms: waited for until 110 ms.
        balance.awake(1, Some(ms(100)));
        assert!(balance.waits_for(1, ms(95), ms(109)));
        assert!(!balance.waits_for(1, ms(95), ms(110)));
        // Back asleep: waited for again.
        balance.awake(1, None);
        assert!(balance.waits_for(1, ms(95), ms(120)));
    }
}
