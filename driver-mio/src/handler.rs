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
/// Closures implement it too; name the argument types so the compiler can
/// infer the higher-ranked signature:
///
/// ```
/// use ebb_mio::{Request, Responder, Response};
/// let hello = |_req: &Request<'_>, res: Responder| res.respond(Response::text(200, "hi"));
/// # fn check<H: ebb_mio::Handler>(_: &H) {}
/// # check(&hello);
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
            .header("Content-Type", "text/plain; charset=utf-8")
            .body(body)
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

    /// The 500 given for a handler that panicked or dropped its responder.
    pub(crate) fn internal_error() -> Response {
        Response::text(500, "Internal Server Error\n")
    }
}

/// A deferred answer on its way to the worker that read the request; boxed so
/// the channel's slots stay small.
pub(crate) type Deferred = (RequestId, Box<Response>);

/// A worker's mailbox: a channel of deferred answers, and the `Waker` that
/// makes its loop look at them and at the stop requests.
pub(crate) struct Inbox {
    pub(crate) tx: Sender<Deferred>,
    pub(crate) waker: Waker,
}

impl Inbox {
    /// Sends a deferred answer and wakes the worker. Fails silently once the
    /// worker has exited: nobody is left to answer.
    pub(crate) fn send(&self, id: RequestId, response: Response) {
        if self.tx.send((id, Box::new(response))).is_ok() {
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
/// Dropping it without answering answers 500, so no request hangs.
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
        deliver(&self.inbox, self.id, response);
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
            deliver(&self.inbox, self.id, Response::internal_error());
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
    answer: Option<Response>,
}

thread_local! {
    static INLINE: RefCell<Inline> = const {
        RefCell::new(Inline { dispatching: None, answer: None })
    };
}

fn deliver(inbox: &Arc<Inbox>, id: RequestId, response: Response) {
    let key = (Arc::as_ptr(inbox) as usize, id);
    let response = INLINE.with(|inline| {
        let mut inline = inline.borrow_mut();
        if inline.dispatching == Some(key) {
            inline.answer = Some(response);
            None
        } else {
            Some(response)
        }
    });
    if let Some(response) = response {
        inbox.send(id, response);
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
pub(crate) fn end_dispatch() -> Option<Response> {
    INLINE.with(|inline| {
        let mut inline = inline.borrow_mut();
        inline.dispatching = None;
        inline.answer.take()
    })
}
