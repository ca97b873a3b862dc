//! Streamed request bodies: the application's [`BodyReader`], usable from
//! any thread, and the worker's side, which moves the body from core into
//! one bounded buffer per request.
//!
//! The buffer is the only thing the two sides share — the mirror of
//! [`BodyWriter`](crate::BodyWriter)'s queue. The worker copies what core
//! holds of the body into it, at most `max_stream_buffer_bytes` at a time,
//! tells core what it took (`handle_body_consumed`, so core reads on) and
//! wakes a reader waiting for bytes. The reader takes bytes out; when the
//! worker had to leave bytes in core for want of room and the buffer is down
//! to half, it posts one [`Message::Body`] so the worker moves more. So a
//! body holds at most `max_stream_buffer_bytes` in the driver and as much
//! again in core, however fast the client sends — and the worker never waits
//! for the application.
//!
//! The first read posts a [`Message::Body`] too: the worker then calls
//! `handle_body_wanted`, which sends a client waiting on
//! `Expect: 100-continue` its `100 Continue` — only once the application
//! reads.

use std::collections::VecDeque;
use std::io::{self, Read};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use ebb_core::{ConnId, RequestId, Server, Time};

use crate::handler::{on_worker_thread, Inbox, Message};

/// The body of a request, as it arrives, when bodies stream
/// ([`Builder::stream_request_bodies`](crate::Builder::stream_request_bodies)).
/// Get it with [`Responder::body`](crate::Responder::body).
///
/// It is `Send`: read from any thread, never from the handler's own call in
/// a way that waits (the worker would wait for itself — a read on a worker
/// thread with nothing buffered fails with `WouldBlock` instead).
///
/// [`io::Read`]: `read` waits until bytes arrive, and returns `Ok(0)` at the
/// body's end. It fails with `BrokenPipe` once the rest of the body will not
/// come: the connection is gone (the client left), or the request was
/// answered before its body ended — by core, in the application's place,
/// when the body was too large, too slow or malformed (the reader hears so
/// as that answer is written), or by the application itself (which closes
/// the connection).
///
/// The first read tells the client to send (a `100 Continue`, if it waits
/// for one). A handler that wants the whole body reads it all, from a thread
/// of its own, with [`read_to_end`](Self::read_to_end) — bounding it, since
/// streamed bodies are limited only by `max_streamed_body_bytes`.
///
/// ```
/// use ebb_mio::{Request, Responder, Response};
/// use std::io::Read;
///
/// fn count(_req: &Request<'_>, mut res: Responder) {
///     let mut body = res.body();
///     // Never block the worker: read from a thread of the application's.
///     std::thread::spawn(move || {
///         let mut buf = vec![0; 64 * 1024];
///         let mut total = 0u64;
///         loop {
///             match body.read(&mut buf) {
///                 Ok(0) => break,
///                 Ok(n) => total += n as u64,
///                 Err(_) => return, // the connection is gone
///             }
///         }
///         res.respond(Response::text(200, format!("{total}\n")));
///     });
/// }
/// # let _: fn(&Request<'_>, Responder) = count;
/// ```
pub struct BodyReader {
    /// `None` for a request without a streamed body: it reads as empty.
    inner: Option<Inner>,
}

struct Inner {
    id: RequestId,
    pipe: Arc<Pipe>,
    inbox: Arc<Inbox>,
    /// The first read has asked for the body.
    wanted: bool,
}

/// The buffer between the worker and one reader.
pub(crate) struct Pipe {
    state: Mutex<PipeState>,
    /// Signalled when bytes arrive, the body ends, or the connection goes.
    ready: Condvar,
    capacity: usize,
}

struct PipeState {
    buf: VecDeque<u8>,
    /// The last byte of the body is in `buf` (or was read).
    ended: bool,
    /// The connection closed before the body ended.
    gone: bool,
    /// The reader asked for the body; the worker has not told core yet.
    want: bool,
    /// The worker left bytes in core for want of room.
    more_in_core: bool,
    /// A [`Message::Body`] is on its way to the worker.
    scheduled: bool,
    /// A reader waits on [`Pipe::ready`].
    waiting: bool,
}

impl Pipe {
    fn lock(&self) -> MutexGuard<'_, PipeState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The buffer for request `id`'s streamed body, and the reader that goes to
/// the application.
pub(crate) fn start(id: RequestId, inbox: Arc<Inbox>) -> (Arc<Pipe>, BodyReader) {
    let pipe = Arc::new(Pipe {
        state: Mutex::new(PipeState {
            buf: VecDeque::new(),
            ended: false,
            gone: false,
            want: false,
            more_in_core: false,
            scheduled: false,
            waiting: false,
        }),
        ready: Condvar::new(),
        capacity: inbox.stream_buffer_bytes.max(1),
    });
    let reader = BodyReader {
        inner: Some(Inner {
            id,
            pipe: pipe.clone(),
            inbox,
            wanted: false,
        }),
    };
    (pipe, reader)
}

impl BodyReader {
    /// A reader of an empty body: for a request whose body does not stream
    /// (it has none, or streaming is off and it is in
    /// [`Request::body`](crate::Request::body)).
    pub(crate) fn empty() -> BodyReader {
        BodyReader { inner: None }
    }

    /// The request whose body this is; `None` for an empty reader.
    pub fn request_id(&self) -> Option<RequestId> {
        self.inner.as_ref().map(|inner| inner.id)
    }

    /// Reads the whole body into a `Vec`, failing with `InvalidData` if it
    /// is longer than `limit` bytes (answer 413 then). Blocks: call it from
    /// a thread of the application's, not the handler's own call.
    pub fn read_to_end(&mut self, limit: u64) -> io::Result<Vec<u8>> {
        let mut body = Vec::new();
        let read = self
            .by_ref()
            .take(limit.saturating_add(1))
            .read_to_end(&mut body)?;
        if read as u64 > limit {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "the body is longer than the limit",
            ));
        }
        Ok(body)
    }
}

impl Inner {
    /// Posts a [`Message::Body`] unless one is on its way already.
    fn schedule(&self, mut state: MutexGuard<'_, PipeState>) {
        if state.scheduled {
            return;
        }
        state.scheduled = true;
        drop(state);
        self.inbox.post(Message::Body(self.id));
    }
}

impl Read for BodyReader {
    /// Waits until bytes arrive, then takes as many as fit; `Ok(0)` at the
    /// end of the body.
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let Some(inner) = self.inner.as_mut() else {
            return Ok(0);
        };
        if out.is_empty() {
            return Ok(0);
        }
        let pipe = inner.pipe.clone();
        let mut state = pipe.lock();
        if !inner.wanted {
            inner.wanted = true;
            state.want = true;
            inner.schedule(state);
            state = pipe.lock();
        }
        loop {
            if !state.buf.is_empty() {
                break;
            }
            if state.ended {
                return Ok(0);
            }
            if state.gone {
                return Err(io::Error::new(
                    io::ErrorKind::BrokenPipe,
                    "the request's connection is closed before the end of its body",
                ));
            }
            if on_worker_thread() {
                return Err(io::Error::new(
                    io::ErrorKind::WouldBlock,
                    "waiting for a request body on a worker thread would wait forever: read from another thread",
                ));
            }
            state.waiting = true;
            state = pipe.ready.wait(state).unwrap_or_else(|e| e.into_inner());
        }
        let mut n = 0;
        while n < out.len() && !state.buf.is_empty() {
            let (front, _) = state.buf.as_slices();
            let k = front.len().min(out.len() - n);
            out[n..n + k].copy_from_slice(&front[..k]);
            state.buf.drain(..k);
            n += k;
        }
        if state.more_in_core && state.buf.len() <= pipe.capacity / 2 {
            state.more_in_core = false;
            inner.schedule(state);
        }
        Ok(n)
    }
}

impl std::fmt::Debug for BodyReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BodyReader")
            .field("id", &self.request_id())
            .finish_non_exhaustive()
    }
}

/// The worker's streamed request bodies, by connection (a connection
/// receives at most one body at a time).
#[derive(Default)]
pub(crate) struct Uploads {
    open: Vec<Option<(RequestId, Arc<Pipe>)>>,
}

impl Uploads {
    /// Request `id`'s body streams: a reader for it, fed from now on.
    pub(crate) fn start(&mut self, id: RequestId, inbox: &Arc<Inbox>) -> BodyReader {
        let (pipe, reader) = start(id, inbox.clone());
        let index = id.conn().index();
        if self.open.len() <= index {
            self.open.resize_with(index + 1, || None);
        }
        if let Some((_, old)) = self.open[index].replace((id, pipe)) {
            close_pipe(&old);
        }
        reader
    }

    /// Moves what core holds of request `id`'s body into its buffer, as far
    /// as there is room; `posted` when a [`Message::Body`] asked for it.
    pub(crate) fn feed(&mut self, server: &mut Server, id: RequestId, posted: bool, now: Time) {
        let index = id.conn().index();
        let pipe = match self.open.get(index) {
            Some(Some((open, pipe))) if *open == id => pipe.clone(),
            _ => return,
        };
        let mut state = pipe.lock();
        if posted {
            state.scheduled = false;
        }
        if state.want {
            state.want = false;
            server.handle_body_wanted(id, now);
        }
        let mut arrived = false;
        // Core may read on at once when told what was consumed: take again
        // while there is room.
        while let Some(body) = server.request_body(id) {
            let room = pipe.capacity.saturating_sub(state.buf.len());
            let n = room.min(body.data.len());
            state.buf.extend(&body.data[..n]);
            arrived |= n > 0;
            let all = n == body.data.len();
            if all && body.done {
                state.ended = true;
                arrived = true;
            }
            state.more_in_core = !all;
            if n == 0 {
                break;
            }
            server.handle_body_consumed(id, n, now);
            if !all || state.ended {
                break;
            }
        }
        if state.ended {
            self.open[index] = None;
        }
        if arrived && state.waiting {
            state.waiting = false;
            pipe.ready.notify_all();
        }
    }

    /// Request `id` is finished: its response was handed over, perhaps by
    /// core in the application's place (a body too large, too slow or
    /// malformed). A body of it that has not ended never will, and its
    /// reader hears so now, not at the close, which may linger for seconds.
    pub(crate) fn finished(&mut self, id: RequestId) {
        let Some(slot) = self.open.get_mut(id.conn().index()) else {
            return;
        };
        if let Some((_, pipe)) = slot.take_if(|(open, _)| *open == id) {
            close_pipe(&pipe);
        }
    }

    /// Connection `conn` closed: a body still streaming on it is gone.
    pub(crate) fn closed(&mut self, conn: ConnId) {
        let Some(slot) = self.open.get_mut(conn.index()) else {
            return;
        };
        if let Some((_, pipe)) = slot.take_if(|(id, _)| id.conn() == conn) {
            close_pipe(&pipe);
        }
    }
}

/// Marks the body gone, unless it ended, and wakes whoever waits on it.
fn close_pipe(pipe: &Pipe) {
    let mut state = pipe.lock();
    if !state.ended {
        state.gone = true;
        state.buf = VecDeque::new();
    }
    state.waiting = false;
    drop(state);
    pipe.ready.notify_all();
}
