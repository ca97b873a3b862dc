//! The application's side: the [`Handler`] trait, the [`Response`] it gives,
//! and the [`Responder`] that carries it back to the worker — at once, or later
//! from any thread.

use std::borrow::Cow;
use std::cell::RefCell;
use std::sync::mpsc::Sender;
use std::sync::Arc;

use ebb_core::{Bytes, Request, RequestId};
use mio::Waker;
use smallvec::SmallVec;

/// The application: called once for every complete request, on the worker
/// thread that read it.
///
/// Answer through the [`Responder`]: at once (cheapest: the answer goes
/// straight to core, with no channel and no wake-up), or later from any
/// thread. Never block in `call`: the worker's whole loop waits for it.
///
/// Implement it for a named type that carries state and is served with
/// [`Builder::serve_handler`](crate::Builder::serve_handler). A closure or
/// function goes to [`Builder::serve`](crate::Builder::serve) instead, which
/// infers the closure's argument types; every closure and function of the
/// right signature implements `Handler` too.
///
/// ```
/// use ebb_mio::{Handler, Request, Responder, Response};
/// use std::sync::atomic::{AtomicU64, Ordering};
///
/// /// Counts the requests it has answered.
/// struct Counter(AtomicU64);
///
/// impl Handler for Counter {
///     fn call(&self, _req: &Request<'_>, res: Responder) {
///         let n = self.0.fetch_add(1, Ordering::Relaxed) + 1;
///         res.respond(Response::text(200, format!("{n}\n")));
///     }
/// }
/// # fn check<H: Handler>(_: &H) {}
/// # check(&Counter(AtomicU64::new(0)));
/// ```
pub trait Handler: Send + Sync + 'static {
    /// Handles one request. A panic here answers the request with 500 and
    /// leaves the server running.
    fn call(&self, request: &Request<'_>, responder: Responder);
}

impl<F> Handler for F
where
    F: Fn(&Request<'_>, Responder) + Send + Sync + 'static,
{
    fn call(&self, request: &Request<'_>, responder: Responder) {
        self(request, responder)
    }
}

/// A response: status, extra header fields, and a body of known length.
///
/// Core adds `Date`, `Content-Length` and `Connection`; values given here for
/// those are dropped. A static body costs no allocation
/// (`Bytes::from_static`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    pub(crate) status: u16,
    /// Inline up to four headers, so a typical response allocates nothing.
    pub(crate) headers: SmallVec<[(Cow<'static, str>, Bytes); 4]>,
    pub(crate) body: Bytes,
}

impl Response {
    /// A response with `status`, no extra headers and an empty body.
    pub fn new(status: u16) -> Response {
        Response {
            status,
            headers: SmallVec::new(),
            body: Bytes::new(),
        }
    }

    /// A `text/plain` response.
    pub fn text(status: u16, body: impl Into<Bytes>) -> Response {
        Response::new(status)
            .content_type("text/plain; charset=utf-8")
            .body(body)
    }

    /// An `application/json` response. The body is sent as given: serialise
    /// it with whatever the application already uses (serde_json, a
    /// `format!`), so this crate needs no JSON dependency.
    pub fn json(status: u16, body: impl Into<Bytes>) -> Response {
        Response::new(status)
            .content_type("application/json")
            .body(body)
    }

    /// Sets `Content-Type`, replacing one set before (by [`Response::text`],
    /// say), since a response with two would be ambiguous.
    pub fn content_type(mut self, value: impl Into<Bytes>) -> Response {
        self.headers
            .retain(|(name, _)| !name.eq_ignore_ascii_case("content-type"));
        self.header("Content-Type", value)
    }

    /// Adds a header field.
    pub fn header(
        mut self,
        name: impl Into<Cow<'static, str>>,
        value: impl Into<Bytes>,
    ) -> Response {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Sets the body.
    pub fn body(mut self, body: impl Into<Bytes>) -> Response {
        self.body = body.into();
        self
    }

    /// The status code.
    pub fn status(&self) -> u16 {
        self.status
    }
}

/// What became of a request in the application.
// Unboxed on purpose: the common answer, given during the handler's call,
// moves on the stack to core without an allocation.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Answer {
    /// It was answered.
    Response(Response),
    /// Its responder was dropped unanswered (or its handler panicked): core
    /// answers 500.
    Failed,
}

/// A deferred answer on its way to the worker that read the request (or the
/// news that none will come); boxed so the channel's slots stay small.
pub(crate) type Deferred = (RequestId, Box<Answer>);

/// A worker's mailbox: a channel of deferred answers, and the `Waker` that
/// makes its loop look at them and at the stop requests.
pub(crate) struct Inbox {
    pub(crate) tx: Sender<Deferred>,
    pub(crate) waker: Waker,
}

impl Inbox {
    /// Sends a deferred answer and wakes the worker. Fails silently once the
    /// worker has exited: nobody is left to answer.
    pub(crate) fn send(&self, id: RequestId, answer: Answer) {
        if self.tx.send((id, Box::new(answer))).is_ok() {
            self.wake();
        }
    }

    /// Makes the worker's loop look at its mailbox and at the stop requests.
    pub(crate) fn wake(&self) {
        if let Err(e) = self.waker.wake() {
            log::error!("cannot wake a worker: {e}");
        }
    }
}

/// The answer to one request, usable once, from any thread.
///
/// Dropping it without answering makes core answer 500, so no request hangs.
pub struct Responder {
    id: RequestId,
    inbox: Arc<Inbox>,
    stopping: bool,
    answered: bool,
}

impl Responder {
    pub(crate) fn new(id: RequestId, inbox: Arc<Inbox>, stopping: bool) -> Responder {
        Responder {
            id,
            inbox,
            stopping,
            answered: false,
        }
    }

    /// Answers the request.
    pub fn respond(mut self, response: Response) {
        self.answered = true;
        // Unboxed: an answer given during the handler's call goes straight
        // to core; only one sent from another thread is boxed, for the channel.
        deliver(&self.inbox, self.id, Answer::Response(response));
    }

    /// Whether the server was stopping (pre-stop or draining) when this
    /// request was handed over. A readiness route answers 503 when it is.
    pub fn is_stopping(&self) -> bool {
        self.stopping
    }

    /// The request this responder answers.
    pub fn request_id(&self) -> RequestId {
        self.id
    }
}

impl Drop for Responder {
    fn drop(&mut self) {
        if !self.answered {
            deliver(&self.inbox, self.id, Answer::Failed);
        }
    }
}

impl std::fmt::Debug for Responder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Responder")
            .field("id", &self.id)
            .field("stopping", &self.stopping)
            .finish_non_exhaustive()
    }
}

/// The request a worker is handing to the handler on this thread, and the
/// answer if it comes before the handler returns: an immediate answer skips
/// the channel and the wake-up.
struct Inline {
    /// The dispatching worker's inbox (as an address) and the request.
    dispatching: Option<(usize, RequestId)>,
    answer: Option<Answer>,
}

thread_local! {
    static INLINE: RefCell<Inline> = const {
        RefCell::new(Inline { dispatching: None, answer: None })
    };
}

fn deliver(inbox: &Arc<Inbox>, id: RequestId, answer: Answer) {
    let key = (Arc::as_ptr(inbox) as usize, id);
    let answer = INLINE.with(|inline| {
        let mut inline = inline.borrow_mut();
        if inline.dispatching == Some(key) {
            inline.answer = Some(answer);
            None
        } else {
            Some(answer)
        }
    });
    if let Some(answer) = answer {
        inbox.send(id, answer);
    }
}

/// Marks request `id` of the worker owning `inbox` as being handed to the
/// handler on this thread; [`end_dispatch`] returns an answer given meanwhile.
pub(crate) fn begin_dispatch(inbox: &Arc<Inbox>, id: RequestId) {
    INLINE.with(|inline| {
        let mut inline = inline.borrow_mut();
        inline.dispatching = Some((Arc::as_ptr(inbox) as usize, id));
        inline.answer = None;
    });
}

/// Ends what [`begin_dispatch`] began; the answer, if the handler gave one.
pub(crate) fn end_dispatch() -> Option<Answer> {
    INLINE.with(|inline| {
        let mut inline = inline.borrow_mut();
        inline.dispatching = None;
        inline.answer.take()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn content_types(response: &Response) -> Vec<&[u8]> {
        response
            .headers
            .iter()
            .filter(|(name, _)| name.eq_ignore_ascii_case("content-type"))
            .map(|(_, value)| &value[..])
            .collect()
    }

    #[test]
    fn json_sends_the_given_bytes_as_application_json() {
        let response = Response::json(201, r#"{"id":7}"#);
        assert_eq!(response.status(), 201);
        assert_eq!(content_types(&response), [b"application/json"]);
        assert_eq!(response.body, r#"{"id":7}"#);
    }

    #[test]
    fn content_type_replaces_the_one_set_before() {
        let response = Response::text(200, "<p>hi</p>").content_type("text/html");
        assert_eq!(content_types(&response), [b"text/html"]);
    }
}
