//! Watching the server from the embedding program: an observer set with
//! [`Builder::observe`](crate::Builder::observe) hears of every finished
//! request and of every change of a worker's phase, on the worker's thread.
//! Unset, it costs one branch per core event.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use ebb_core::{Finished, Outcome, Phase};

/// What an observer hears.
#[derive(Copy, Clone, Debug)]
#[non_exhaustive]
pub enum Observation<'a> {
    /// A request ended: answered, refused, failed by the application, or cut.
    Request(RequestEnd<'a>),
    /// A worker's server entered a new phase. Each worker has its own server,
    /// so with N workers each phase is heard N times, once per worker.
    Phase {
        /// Which worker (0-based).
        worker: usize,
        /// The phase it entered: `PreStop`, `Draining`, then `Exited`.
        phase: Phase,
    },
}

/// One finished request, as an observer sees it: one for every request core
/// began, whether or not the application saw it.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct RequestEnd<'a> {
    /// The worker that served it (0-based).
    pub worker: usize,
    /// The client's address.
    pub peer: SocketAddr,
    /// Its method, if it was handed to the application. A request core
    /// refused or cut before dispatching it has none.
    pub method: Option<&'a str>,
    /// Its target (path and query), when the method is known.
    pub target: Option<&'a str>,
    /// The status of its response, if one was queued: for a request still
    /// arriving when the drain deadline (or a second stop) cut it, the 503
    /// core queued on the way out, which the driver writes once without
    /// waiting (its outcome is still a cut).
    pub status: Option<u16>,
    /// Bytes of request body the application received whole (after chunked
    /// decoding), if it was dispatched. The head is not counted (core does
    /// not report its size), nor a body streamed to the application
    /// ([`Builder::stream_request_bodies`](crate::Builder::stream_request_bodies)):
    /// `None` then.
    pub request_body_bytes: Option<u64>,
    /// Bytes of response body (none for `HEAD`, 204 and 304).
    pub response_body_bytes: u64,
    /// From the request's first byte to its response being queued, if it was:
    /// the time the server took to answer, writing excluded.
    pub time_to_response: Option<Duration>,
    /// From the request's first byte to its end (the response's last byte
    /// handed to the socket, or the close that ended it).
    pub duration: Duration,
    /// Whether the connection stays open for another request.
    pub keeps_connection: bool,
    /// How it ended: [`Outcome::Complete`]; [`Outcome::Rejected`] (an error
    /// response from core: malformed, too large, too slow);
    /// [`Outcome::AppFault`] (the handler panicked, gave an invalid response
    /// or none: answered 500); [`Outcome::Unfinished`] with the reason the
    /// connection ended — cut at the drain deadline or by a forced exit
    /// ([`CloseReason::is_forced`](ebb_core::CloseReason::is_forced)), the
    /// client gone, or a stalled write. [`Outcome::label`] names each in a word.
    pub outcome: Outcome,
}

impl<'a> RequestEnd<'a> {
    /// The view of core's `finished` for a request named `name` (method and
    /// target), with its request body size.
    pub(crate) fn new(
        worker: usize,
        peer: SocketAddr,
        name: Option<crate::inflight::Named<'a>>,
        finished: &Finished,
    ) -> RequestEnd<'a> {
        RequestEnd {
            worker,
            peer,
            method: name.map(|(method, _, _)| method),
            target: name.map(|(_, target, _)| target),
            status: finished.status,
            request_body_bytes: name.and_then(|(_, _, bytes)| bytes),
            response_body_bytes: finished.body_bytes,
            time_to_response: finished.responded_at.map(|at| at - finished.began_at),
            duration: finished.finished_at - finished.began_at,
            keeps_connection: finished.keeps_connection,
            outcome: finished.outcome,
        }
    }
}

/// The observer as the workers hold it.
pub(crate) type Observer = Arc<dyn Fn(&Observation<'_>) + Send + Sync>;

/// What the workers report, and to whom: the access log and the observer.
#[derive(Clone, Default)]
pub(crate) struct Observing {
    /// Log one line per finished request on [`ACCESS_LOG_TARGET`](crate::ACCESS_LOG_TARGET).
    pub(crate) access_log: bool,
    pub(crate) observer: Option<Observer>,
}

impl Observing {
    /// Whether the workers must remember each request's name and peer until
    /// it finishes.
    pub(crate) fn tracks_requests(&self) -> bool {
        self.access_log || self.observer.is_some()
    }
}

impl fmt::Debug for Observing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Observing")
            .field("access_log", &self.access_log)
            .field("observer", &self.observer.as_ref().map(|_| "Fn"))
            .finish()
    }
}
