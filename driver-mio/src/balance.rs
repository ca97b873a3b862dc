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
//! there. A nudged worker that does not come (its handler is slow) is not
//! waited for long: after [`BACKSTOP`] the worker accepts regardless.
//!
//! With `--reuse-port` each worker has a socket of its own and the kernel
//! spreads connections by their addresses; there is nothing to balance.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use crate::handler::{Inbox, Message};

/// How many connections more than the least-loaded worker's a worker may
/// hold and still accept.
const SLACK: usize = 2;

/// How long a worker that stopped accepting for another waits for it before
/// accepting itself.
pub(crate) const BACKSTOP: Duration = Duration::from_millis(10);

/// The open connections of each worker sharing one listener, and how to
/// wake each.
pub(crate) struct Balance {
    open: Box<[AtomicUsize]>,
    /// Set once every worker exists; until then nobody is nudged, and the
    /// backstop alone ends a wait.
    inboxes: OnceLock<Box<[Arc<Inbox>]>>,
}

impl Balance {
    pub(crate) fn new(workers: usize) -> Arc<Balance> {
        Arc::new(Balance {
            open: (0..workers).map(|_| AtomicUsize::new(0)).collect(),
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
        let balance = Balance::new(3);
        for (worker, open) in [(0, 5), (1, 3), (2, 4)] {
            balance.record(worker, open);
        }
        assert_eq!(balance.ahead_of(0), None, "5 is within 2 of 3");
        balance.record(0, 6);
        assert_eq!(balance.ahead_of(0), Some(1));
        assert_eq!(balance.ahead_of(1), None, "the least-loaded is never ahead");
        assert_eq!(balance.ahead_of(2), None);
    }
}
