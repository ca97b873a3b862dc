//! Stop and upgrade requests, from a signal or from code, and the
//! [`ShutdownHandle`] that makes them.
//!
//! Every stop request is one increment of one shared state word, which also
//! records whether the listeners were handed to a successor (a hot
//! upgrade). Each worker remembers what it has applied and applies what is
//! new whenever it looks — before its first poll and on every wake-up — so a
//! request is never lost, whether it comes before the worker exists or while
//! it is busy.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use mio::Waker;

/// Bit 0 of the state: the listeners were handed to a successor.
const HANDED_OFF: usize = 1;
/// Bit 1: the first stop request after the hand-off was taken as "already
/// draining" and not counted.
const ABSORBED: usize = 2;
/// The stop requests are counted from bit 2 up.
const ONE_STOP: usize = 4;

/// Starts the drain from code, like SIGTERM: the first call drains, a second
/// forces the exit; or starts a hot upgrade, like SIGUSR2. Cheap to clone,
/// usable from any thread, before or during
/// [`Builder::serve`](crate::Builder::serve).
#[derive(Clone, Debug)]
pub struct ShutdownHandle {
    shared: Arc<Shared>,
}

#[derive(Debug, Default)]
struct Shared {
    /// [`HANDED_OFF`], [`ABSORBED`], and the stop requests so far (calls to
    /// [`ShutdownHandle::shutdown`] and the stop signals and failures the
    /// coordinator turned into requests) times [`ONE_STOP`].
    state: AtomicUsize,
    /// Calls to [`ShutdownHandle::upgrade`] so far.
    upgrades: AtomicUsize,
    /// The serving coordinator's waker, while it runs.
    waker: Mutex<Option<Arc<Waker>>>,
}

/// What became of a stop request.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) enum Stop {
    /// Counted: the first drains, the next forces the exit.
    Counted,
    /// The first after a hand-off, when the drain is already under way: not
    /// counted, so only a second one forces the exit.
    AlreadyDraining,
}

/// What a worker must feed its core next.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) enum StopInput {
    /// `Server::handle_handoff`: the listeners belong to a successor now.
    HandOff,
    /// `Server::handle_terminate`.
    Terminate,
}

/// How much of the shared state one worker has applied.
#[derive(Debug, Default)]
pub(crate) struct Applied {
    handed_off: bool,
    stops: usize,
}

impl ShutdownHandle {
    /// A handle not yet attached to a running server (see
    /// [`Builder::shutdown_handle`](crate::Builder::shutdown_handle)).
    pub(crate) fn new() -> ShutdownHandle {
        ShutdownHandle {
            shared: Arc::default(),
        }
    }

    /// Asks the server to stop: the first call starts the drain, the next
    /// forces the exit. Returns at once; `serve` returns when the drain ends.
    ///
    /// After a hot upgrade has handed the listeners over, the drain is
    /// already under way: the first call is logged and changes nothing, and
    /// the next forces the exit.
    pub fn shutdown(&self) {
        if self.request() == Stop::AlreadyDraining {
            log::info!(
                "shutdown requested: already draining after the hand-off (again to force the exit)"
            );
        }
        self.wake();
    }

    /// Asks the server to start a hot upgrade, like SIGUSR2: run its
    /// successor with the listening sockets, wait for it to be ready, then
    /// hand the listeners over and drain. Returns at once; the outcome is
    /// logged. If the upgrade succeeds, `serve` returns the drain's report
    /// with `handed_off` set; if it fails, the server keeps serving.
    /// Ignored while an upgrade is under way or the server is stopping.
    pub fn upgrade(&self) {
        self.shared.upgrades.fetch_add(1, Ordering::SeqCst);
        self.wake();
    }

    fn wake(&self) {
        let waker = self.shared.waker.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(waker) = waker.as_ref() {
            if let Err(e) = waker.wake() {
                log::error!("cannot wake the server: {e}");
            }
        }
    }

    /// Makes one stop request without waking anyone: for the coordinator,
    /// which wakes the workers itself.
    pub(crate) fn request(&self) -> Stop {
        let mut absorbed = false;
        let update = |state: usize| {
            absorbed = state & HANDED_OFF != 0 && state & ABSORBED == 0;
            Some(if absorbed {
                state | ABSORBED
            } else {
                state + ONE_STOP
            })
        };
        // The closure always returns Some: this cannot fail.
        let _ = self
            .shared
            .state
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, update);
        if absorbed {
            Stop::AlreadyDraining
        } else {
            Stop::Counted
        }
    }

    /// Records that the listeners are handed to a successor — only if no
    /// stop was requested before: then a stop wins, and this returns false.
    pub(crate) fn hand_off(&self) -> bool {
        self.shared
            .state
            .compare_exchange(0, HANDED_OFF, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
    }

    /// Whether the server is stopping or handed off: no upgrade may start.
    pub(crate) fn is_stopping(&self) -> bool {
        self.shared.state.load(Ordering::SeqCst) != 0
    }

    /// Whether the listeners were handed to a successor.
    pub(crate) fn handed_off(&self) -> bool {
        self.shared.state.load(Ordering::SeqCst) & HANDED_OFF != 0
    }

    /// Stop requests counted so far.
    pub(crate) fn requests(&self) -> usize {
        self.shared.state.load(Ordering::SeqCst) / ONE_STOP
    }

    /// Upgrade requests made through [`upgrade`](Self::upgrade) so far.
    pub(crate) fn upgrades(&self) -> usize {
        self.shared.upgrades.load(Ordering::SeqCst)
    }

    /// Whether a worker that has applied `applied` has an input to feed
    /// its core ([`next_input`](Self::next_input) would give one).
    pub(crate) fn has_input(&self, applied: &Applied) -> bool {
        self.pending(applied).is_some()
    }

    /// The next input a worker that has applied `applied` must feed its
    /// core, if any: the hand-off first, then one terminate per stop request.
    pub(crate) fn next_input(&self, applied: &mut Applied) -> Option<StopInput> {
        let input = self.pending(applied)?;
        match input {
            StopInput::HandOff => applied.handed_off = true,
            StopInput::Terminate => applied.stops += 1,
        }
        Some(input)
    }

    fn pending(&self, applied: &Applied) -> Option<StopInput> {
        let state = self.shared.state.load(Ordering::SeqCst);
        if state & HANDED_OFF != 0 && !applied.handed_off {
            Some(StopInput::HandOff)
        } else if applied.stops < state / ONE_STOP {
            Some(StopInput::Terminate)
        } else {
            None
        }
    }

    /// Installs (or, with `None`, removes) the waker that `shutdown` wakes.
    pub(crate) fn set_waker(&self, waker: Option<Arc<Waker>>) {
        *self.shared.waker.lock().unwrap_or_else(|e| e.into_inner()) = waker;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs(handle: &ShutdownHandle, applied: &mut Applied) -> Vec<StopInput> {
        std::iter::from_fn(|| handle.next_input(applied)).collect()
    }

    #[test]
    fn each_stop_is_one_terminate() {
        let handle = ShutdownHandle::new();
        let mut applied = Applied::default();
        assert_eq!(handle.request(), Stop::Counted);
        assert_eq!(inputs(&handle, &mut applied), [StopInput::Terminate]);
        assert_eq!(handle.request(), Stop::Counted);
        assert_eq!(inputs(&handle, &mut applied), [StopInput::Terminate]);
        assert!(!handle.hand_off(), "no hand-off once stopping");
        assert_eq!(handle.requests(), 2);
    }

    #[test]
    fn hand_off_comes_first_and_absorbs_the_next_stop() {
        let handle = ShutdownHandle::new();
        let mut late = Applied::default();
        assert!(handle.hand_off());
        assert!(handle.is_stopping());
        assert_eq!(handle.request(), Stop::AlreadyDraining);
        assert_eq!(handle.requests(), 0);
        assert_eq!(handle.request(), Stop::Counted);
        // A worker that looks only now still applies the hand-off first.
        assert_eq!(
            inputs(&handle, &mut late),
            [StopInput::HandOff, StopInput::Terminate]
        );
    }
}
