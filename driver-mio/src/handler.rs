//! The application's side: the [`Handler`] trait, the [`Response`] it gives,
//! and the [`Responder`] that carries it back to the worker — at once, or later
//! from any thread; whole, streamed through a [`BodyWriter`], or as the switch
//! to another protocol ([`Responder::upgrade`]).

use std::borrow::Cow;
use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::sync::mpsc::Sender;
use std::sync::Arc;

use ebb_core::{BodyLength, Bytes, ConnId, Request, RequestId};
use mio::Waker;
use smallvec::SmallVec;

use crate::shutdown::ShutdownHandle;
use crate::stream::{BodyWriter, StreamStart};
use crate::upgraded::{PendingUpgrade, UpgradeStart};
use crate::upload::BodyReader;

/// The application: called once for every complete request, on the worker
/// thread that read it — or, when request bodies stream
/// ([`Builder::stream_request_bodies`](crate::Builder::stream_request_bodies)),
/// once its head is complete, its body to follow through
/// [`Responder::body`].
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
#[derive(Clone, Debug)]
pub struct Response {
    pub(crate) status: u16,
    /// Every header was put here by this crate ([`Response::text`],
    /// [`Response::json`]) from its own valid constants. A response with
    /// none added otherwise, and a final status, is one core takes: its
    /// request needs no name for a line about an invalid response
    /// (see [`Response::surely_valid`]).
    own_headers_only: bool,
    /// Inline up to four headers, so a typical response allocates nothing.
    pub(crate) headers: SmallVec<[(Cow<'static, str>, Bytes); 4]>,
    pub(crate) body: Bytes,
}

/// Equal when status, headers and body are: how they were added does not count.
impl PartialEq for Response {
    fn eq(&self, other: &Response) -> bool {
        (self.status, &self.headers, &self.body) == (other.status, &other.headers, &other.body)
    }
}

impl Eq for Response {}

impl Response {
    /// A response with `status`, no extra headers and an empty body.
    // The builders are inlined so that a chain of them builds the response
    // in place; called, each moves the whole response (some 300 bytes).
    #[inline]
    pub fn new(status: u16) -> Response {
        Response {
            status,
            own_headers_only: true,
            headers: SmallVec::new(),
            body: Bytes::new(),
        }
    }

    /// A `text/plain` response.
    #[inline]
    pub fn text(status: u16, body: impl Into<Bytes>) -> Response {
        Response::new(status)
            .own_header("Content-Type", "text/plain; charset=utf-8")
            .body(body)
    }

    /// An `application/json` response. The body is sent as given: serialise
    /// it with whatever the application already uses (serde_json, a
    /// `format!`), so this crate needs no JSON dependency.
    #[inline]
    pub fn json(status: u16, body: impl Into<Bytes>) -> Response {
        Response::new(status)
            .own_header("Content-Type", "application/json")
            .body(body)
    }

    /// Sets `Content-Type`, replacing one set before (by [`Response::text`],
    /// say), since a response with two would be ambiguous.
    #[inline]
    pub fn content_type(mut self, value: impl Into<Bytes>) -> Response {
        self.headers
            .retain(|(name, _)| !name.eq_ignore_ascii_case("content-type"));
        self.header("Content-Type", value)
    }

    /// Adds a header field.
    #[inline]
    pub fn header(
        mut self,
        name: impl Into<Cow<'static, str>>,
        value: impl Into<Bytes>,
    ) -> Response {
        self.own_headers_only = false;
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Adds a header field of this crate's own, valid by construction. Not
    /// [`Response::content_type`]: a new response has none to replace.
    // Always inlined: called, it moved the whole response in and out (two
    // copies of some 300 bytes, 115 instructions per response of `text`).
    #[inline(always)]
    fn own_header(mut self, name: &'static str, value: &'static str) -> Response {
        self.headers
            .push((Cow::Borrowed(name), Bytes::from_static(value.as_bytes())));
        self
    }

    /// Whether core surely takes this response: its status is final
    /// (200–599) and its headers are this crate's own. Otherwise it may be
    /// refused (see `RespondError`), which is logged naming its request.
    pub(crate) fn surely_valid(&self) -> bool {
        self.own_headers_only && (200..=599).contains(&self.status)
    }

    /// Sets the body.
    #[inline]
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
    /// Its body will be streamed.
    Stream(Box<StreamStart>),
    /// It is switched to another protocol.
    Upgrade(Box<UpgradeStart>),
    /// Its responder was dropped unanswered (or its handler panicked): core
    /// answers 500.
    Failed,
}

/// What other threads tell a worker; answers are boxed so the channel's
/// slots stay small.
pub(crate) enum Message {
    /// A deferred answer to the request (or the news that none will come).
    Answer(RequestId, Box<Answer>),
    /// The application put bytes into the stream answering this request, or
    /// ended it: feed core.
    Stream(RequestId),
    /// The application closed this upgraded connection.
    UpgradedClosed(ConnId),
    /// The application read from the body of this request, and wants it, or
    /// more of it: move the body from core.
    Body(RequestId),
    /// A worker with more connections left the shared listener's backlog
    /// to this one (see [`crate::balance`]): accept.
    Accept,
}

/// A worker's mailbox: a channel of messages, and the `Waker` that makes its
/// loop look at them and at the stop requests.
pub(crate) struct Inbox {
    pub(crate) tx: Sender<Message>,
    pub(crate) waker: Waker,
    /// Body bytes a stream may hold in the driver, waiting for core: core's
    /// `max_stream_buffer_bytes`, so a stream holds at most twice that.
    pub(crate) stream_buffer_bytes: usize,
    /// Where the stop requests are counted, for [`BodyWriter::is_stopping`].
    pub(crate) stops: ShutdownHandle,
}

impl Inbox {
    /// Sends a deferred answer and wakes the worker. Fails silently once the
    /// worker has exited: nobody is left to answer.
    pub(crate) fn send(&self, id: RequestId, answer: Answer) {
        self.post(Message::Answer(id, Box::new(answer)));
    }

    /// Sends a message and wakes the worker; fails silently once the worker
    /// has exited.
    pub(crate) fn post(&self, message: Message) {
        if self.tx.send(message).is_ok() {
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
    peer: SocketAddr,
    inbox: Arc<Inbox>,
    stopping: bool,
    answered: bool,
    /// The streamed body, until [`Responder::body`] takes it.
    body: Option<BodyReader>,
}

impl Responder {
    pub(crate) fn new(
        id: RequestId,
        peer: SocketAddr,
        inbox: Arc<Inbox>,
        stopping: bool,
        body: Option<BodyReader>,
    ) -> Responder {
        Responder {
            id,
            peer,
            inbox,
            stopping,
            answered: false,
            body,
        }
    }

    /// The request's body as it arrives, when bodies stream
    /// ([`Builder::stream_request_bodies`](crate::Builder::stream_request_bodies)):
    /// a [`BodyReader`] to read from any thread. Then every request with a
    /// body is handed over at its head, with [`Request::body`] empty.
    ///
    /// A request without a body, a second call, or streaming being off (the
    /// body is then whole in [`Request::body`]) gives a reader of nothing.
    /// Answer only once the body is read to its end: an answer before it
    /// closes the connection after the response.
    pub fn body(&mut self) -> BodyReader {
        self.body.take().unwrap_or_else(BodyReader::empty)
    }

    /// Answers the request.
    // Always inlined, with `deliver`: in the handler's frame the answer is
    // built from the response where it lies; called, the response (some
    // 300 bytes) is copied once more on the way in.
    #[inline(always)]
    pub fn respond(mut self, response: Response) {
        self.answered = true;
        // Unboxed: an answer given during the handler's call goes straight
        // to core; only one sent from another thread is boxed, for the channel.
        deliver(&self.inbox, self.id, Answer::Response(response));
    }

    /// Answers with `head` (its status and headers; its body, if any, is the
    /// first part of the stream) and a body of `length` that the returned
    /// [`BodyWriter`] streams, from this thread or any other.
    ///
    /// Core frames it: `Content-Length` for [`BodyLength::Known`], otherwise
    /// chunked to an HTTP/1.1 client and ended by the close to an HTTP/1.0
    /// one; `HEAD`, 204 and 304 send no body (what is written is dropped).
    /// An invalid status or header is answered with 500, and the writer's
    /// first write fails.
    ///
    /// ```
    /// use ebb_mio::{BodyLength, Request, Responder, Response};
    /// use std::io::Write;
    ///
    /// fn numbers(_req: &Request<'_>, res: Responder) {
    ///     let mut body = res.stream(Response::new(200).content_type("text/plain"), BodyLength::Unknown);
    ///     // Never block the worker: write from a thread of the application's.
    ///     std::thread::spawn(move || {
    ///         for n in 0..1000 {
    ///             if writeln!(body, "{n}").is_err() {
    ///                 return; // the client left, or the drain deadline cut the stream
    ///             }
    ///         }
    ///         let _ = body.finish();
    ///     });
    /// }
    /// # let _: fn(&Request<'_>, Responder) = numbers;
    /// ```
    pub fn stream(mut self, head: Response, length: BodyLength) -> BodyWriter {
        self.answered = true;
        let (start, writer) = crate::stream::start(self.id, self.inbox.clone(), head, length);
        deliver(&self.inbox, self.id, Answer::Stream(Box::new(start)));
        writer
    }

    /// Accepts the request's upgrade (it asked with `Connection: upgrade` and
    /// `Upgrade: <protocol>`): `101 Switching Protocols` is sent with
    /// `Connection: Upgrade` and `headers` (which should name the protocol in
    /// `Upgrade`). Once it is written, [`PendingUpgrade::wait`] gives the
    /// connection's byte stream to the application as an
    /// [`Upgraded`](crate::Upgraded). A request that did not ask to upgrade
    /// is answered with 500 and `wait` fails.
    pub fn upgrade<I, N, V>(mut self, headers: I) -> PendingUpgrade
    where
        I: IntoIterator<Item = (N, V)>,
        N: Into<Cow<'static, str>>,
        V: Into<Bytes>,
    {
        self.answered = true;
        let headers = headers
            .into_iter()
            .map(|(name, value)| (name.into(), value.into()))
            .collect();
        let (start, pending) = crate::upgraded::start(headers);
        deliver(&self.inbox, self.id, Answer::Upgrade(Box::new(start)));
        pending
    }

    /// The address of the client's end of the connection, as accept gave
    /// it. Behind a proxy or load balancer it is the proxy's: the client's
    /// own is then in whatever header the proxy adds (`Forwarded`,
    /// `X-Forwarded-For`), to be trusted only from that proxy.
    pub fn peer_addr(&self) -> SocketAddr {
        self.peer
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
    // Inlined, with the unanswered case out of line: an answered
    // responder's drop is then one test where it is dropped, not a call.
    #[inline]
    fn drop(&mut self) {
        if !self.answered {
            self.failed();
        }
    }
}

impl Responder {
    /// Tells the worker that this responder was dropped unanswered.
    #[cold]
    #[inline(never)]
    fn failed(&self) {
        deliver(&self.inbox, self.id, Answer::Failed);
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

// The request a worker is handing to the handler on this thread, and the
// answer if it comes before the handler returns: an immediate answer skips
// the channel and the wake-up. Two keys, so that asking whether an answer is
// for the request being dispatched moves nothing.
thread_local! {
    /// The dispatching worker's inbox (as an address) and the request.
    static DISPATCHING: Cell<Option<(usize, RequestId)>> = const { Cell::new(None) };
    /// The answer given while [`DISPATCHING`] is set.
    static INLINE_ANSWER: RefCell<Option<Answer>> = const { RefCell::new(None) };
    /// Set on a thread once it has dispatched a request: a worker's.
    static ON_WORKER: Cell<bool> = const { Cell::new(false) };
}

/// Whether this thread runs a worker's loop, where a wait for the worker
/// would never end: blocking calls fail with `WouldBlock` here instead.
pub(crate) fn on_worker_thread() -> bool {
    ON_WORKER.get()
}

/// Puts `answer` into the slot if request `id` is being dispatched on this
/// thread, else sends it. Always inlined: see [`Responder::respond`].
#[inline(always)]
fn deliver(inbox: &Arc<Inbox>, id: RequestId, answer: Answer) {
    if DISPATCHING.get() == Some((Arc::as_ptr(inbox) as usize, id)) {
        // Not `LocalKey::set`, which moves the answer three times; and the
        // closure borrows it, as one that owned it would be moved in turn.
        let mut answer = Some(answer);
        INLINE_ANSWER.with_borrow_mut(|slot| *slot = answer.take());
    } else {
        inbox.send(id, answer);
    }
}

/// Whether the answer given during the dispatch is a response core surely
/// takes ([`Response::surely_valid`]): then its request need not be named.
pub(crate) fn answered_surely_valid() -> bool {
    INLINE_ANSWER.with_borrow(
        |slot| matches!(slot, Some(Answer::Response(response)) if response.surely_valid()),
    )
}

/// Marks request `id` of the worker owning `inbox` as being handed to the
/// handler on this thread; [`end_dispatch`] returns an answer given meanwhile.
pub(crate) fn begin_dispatch(inbox: &Arc<Inbox>, id: RequestId) {
    ON_WORKER.set(true);
    DISPATCHING.set(Some((Arc::as_ptr(inbox) as usize, id)));
}

/// Ends what [`begin_dispatch`] began: `use_answer` gets the answer, if the
/// handler gave one, where it lies, and the slot is emptied after it.
///
/// In place, because a response is some 300 bytes and taking it out would
/// copy it. The slot stays borrowed meanwhile, which nothing can notice: an
/// answer now given, from whatever `use_answer` calls, goes to the channel,
/// as no request is being dispatched.
pub(crate) fn end_dispatch(use_answer: impl FnOnce(&mut Option<Answer>)) {
    DISPATCHING.set(None);
    INLINE_ANSWER.with_borrow_mut(|slot| {
        use_answer(slot);
        *slot = None;
    });
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
    fn only_a_final_status_with_the_crates_own_headers_is_surely_valid() {
        assert!(Response::text(200, "hi").surely_valid());
        assert!(Response::json(599, "{}").surely_valid());
        assert!(!Response::new(99).surely_valid());
        assert!(!Response::text(200, "hi").header("X-A", "b").surely_valid());
        assert!(!Response::json(200, "{}")
            .content_type("text/json")
            .surely_valid());
    }

    #[test]
    fn responses_built_either_way_are_equal() {
        let by_hand = Response::new(200)
            .header("Content-Type", "text/plain; charset=utf-8")
            .body("hi");
        assert_eq!(Response::text(200, "hi"), by_hand);
    }

    #[test]
    fn content_type_replaces_the_one_set_before() {
        let response = Response::text(200, "<p>hi</p>").content_type("text/html");
        assert_eq!(content_types(&response), [b"text/html"]);
    }
}
