//! Stop requests, from a signal or from code, and the [`ShutdownHandle`]
//! that makes them.
//!
//! Every stop request is one increment of one shared counter. Each worker
//! remembers how many it has applied and applies the new ones whenever it
//! looks — before its first poll and on every wake-up — so a request is never
//! lost, whether it comes before the worker exists or while it is busy.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use mio::Waker;

/// Starts the drain from code, like SIGTERM: the first call drains, a second
/// forces the exit. Cheap to clone, usable from any thread, before or during
/// [`Builder::serve`](crate::Builder::serve).
#[derive(Clone, Debug)]
pub struct ShutdownHandle {
    shared: Arc<Shared>,
}

#[derive(Debug, Default)]
struct Shared {
    /// Stop requests so far: calls to [`ShutdownHandle::shutdown`] and the
    /// stop signals and failures the coordinator turned into requests.
    requests: AtomicUsize,
    /// The serving coordinator's waker, while it runs.
    waker: Mutex<Option<Arc<Waker>>>,
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
    pub fn shutdown(&self) {
        self.request();
        let waker = self.shared.waker.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(waker) = waker.as_ref() {
            if let Err(e) = waker.wake() {
                log::error!("cannot wake the server: {e}");
            }
        }
    }

    /// Counts one stop request without waking anyone: for the coordinator,
    /// which wakes the workers itself.
    pub(crate) fn request(&self) {
        self.shared.requests.fetch_add(1, Ordering::SeqCst);
    }

    /// Stop requests so far.
    pub(crate) fn requests(&self) -> usize {
        self.shared.requests.load(Ordering::SeqCst)
    }

    /// Installs (or, with `None`, removes) the waker that `shutdown` wakes.
    pub(crate) fn set_waker(&self, waker: Option<Arc<Waker>>) {
        *self.shared.waker.lock().unwrap_or_else(|e| e.into_inner()) = waker;
    }
}
