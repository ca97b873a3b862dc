//! Stopping from code: the [`ShutdownHandle`].

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use mio::{Interest, Registry, Token, Waker};
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook_mio::v1_0::Signals;

/// SIGTERM and SIGINT, registered on `registry` under `token`: each one is a
/// stop request (the first drains, the next forces the exit).
pub(crate) fn stop_signals(registry: &Registry, token: Token) -> std::io::Result<Signals> {
    let mut signals = Signals::new([SIGTERM, SIGINT])?;
    registry.register(&mut signals, token, Interest::READABLE)?;
    Ok(signals)
}

/// Starts the drain from code, like SIGTERM: the first call drains, a second
/// forces the exit. Cheap to clone, usable from any thread, before or during
/// [`Builder::serve`](crate::Builder::serve).
#[derive(Clone, Debug)]
pub struct ShutdownHandle {
    shared: Arc<Shared>,
}

#[derive(Debug, Default)]
struct Shared {
    /// Calls to [`ShutdownHandle::shutdown`] so far.
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
        self.shared.requests.fetch_add(1, Ordering::SeqCst);
        let waker = self.shared.waker.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(waker) = waker.as_ref() {
            if let Err(e) = waker.wake() {
                log::error!("cannot wake the server: {e}");
            }
        }
    }

    /// Calls to [`shutdown`](Self::shutdown) so far.
    pub(crate) fn requests(&self) -> usize {
        self.shared.requests.load(Ordering::SeqCst)
    }

    /// Installs (or, with `None`, removes) the waker that `shutdown` wakes.
    pub(crate) fn set_waker(&self, waker: Option<Arc<Waker>>) {
        *self.shared.waker.lock().unwrap_or_else(|e| e.into_inner()) = waker;
    }
}
