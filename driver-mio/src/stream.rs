//! Streamed response bodies: the application's [`BodyWriter`], usable from
//! any thread, and the worker's side, which feeds core from one bounded queue
//! per stream.
//!
//! The queue is the only thing the two sides share. The writer copies bytes
//! into it, at most `max_stream_buffer_bytes` at a time, and posts one
//! [`Message::Stream`] to the worker while none is on its way. The worker
//! hands the queued bytes to core as far as core has room, and hands more
//! when core emits [`Event::StreamWritable`](ebb_core::Event); each time it
//! frees room it wakes a writer waiting for it. So a stream holds at most
//! `max_stream_buffer_bytes` in the driver and as much again in core, however
//! fast the application writes and however slowly the client reads — and the
//! worker never waits for the application: it only ever `try`s.

use std::collections::VecDeque;
use std::io::{self, Write};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use ebb_core::{BodyLength, ConnId, RequestId, RespondError, Server, StreamError, Time};

use crate::handler::{on_worker_thread, Inbox, Message, Response};

/// The body of a streamed response: bytes written here go to the client, in
/// order, with back-pressure. Get one from
/// [`Responder::stream`](crate::Responder::stream).
///
/// It is `Send`: write from any thread, never from the handler's own call
/// in a way that waits (the worker would wait for itself — a blocking write
/// on a worker thread fails with `WouldBlock` instead).
///
/// - [`io::Write`]: `write` waits until there is room and takes as much as
///   fits; `write_all` and `write!` wait until all is taken; `flush` waits
///   until every byte is handed to core. They fail with `BrokenPipe` once the
///   stream is gone: the client left, a write stalled, or the drain deadline
///   cut it.
/// - [`try_write`](Self::try_write) never waits, and
///   [`notify_when_writable`](Self::notify_when_writable) says when to try
///   again: for an event loop or an async runtime.
/// - [`finish`](Self::finish) (or
///   [`finish_with_trailers`](Self::finish_with_trailers)) ends the body.
///
/// **Dropped without finishing** (the producer stopped, or panicked), the
/// stream is treated as broken, never as complete: once the bytes already
/// written are handed to core, the connection is closed. A chunked body then
/// lacks its last chunk and a `Content-Length` body is short, so the client
/// can tell. (Only a body of known length that was already complete ends
/// normally. An HTTP/1.0 client, whose body is ended by the close, cannot
/// tell.)
///
/// The drain waits for a stream; its deadline cuts one that has not ended.
/// An endless stream (server-sent events) should check
/// [`is_stopping`](Self::is_stopping) and finish once the server stops.
pub struct BodyWriter {
    id: RequestId,
    pipe: Arc<Pipe>,
    inbox: Arc<Inbox>,
    /// The declared length, for a body of known length.
    declared: Option<u64>,
    /// Bytes taken so far.
    written: u64,
    /// Finished (or abandoned): the end is posted.
    ended: bool,
}

/// The queue between one writer and its worker.
pub(crate) struct Pipe {
    state: Mutex<PipeState>,
    /// Signalled when room is freed or the stream is gone.
    room: Condvar,
    capacity: usize,
}

struct PipeState {
    queue: VecDeque<u8>,
    end: Option<End>,
    /// A [`Message::Stream`] is on its way to the worker.
    scheduled: bool,
    /// A writer waits on [`Pipe::room`].
    waiting: bool,
    /// The stream is over on the worker's side, and why.
    gone: Option<Gone>,
    /// Called once, on the worker thread, when room is freed or the stream
    /// is gone.
    notify: Option<Box<dyn FnOnce() + Send>>,
}

/// How the application ended its stream.
enum End {
    /// [`BodyWriter::finish`], with these trailers.
    Finish(Vec<(String, Vec<u8>)>),
    /// The writer was dropped unfinished. With a declared length, core can
    /// tell whether the body is whole (and closes the connection if it is
    /// short); without one, nothing can, so the connection closes.
    Abandoned { length_declared: bool },
}

/// Why a stream is over on the worker's side.
#[derive(Copy, Clone, Debug)]
enum Gone {
    /// Its end was handed to core.
    Ended,
    /// Its connection closed: the client left, a write stalled, the drain
    /// deadline cut it, or the application abandoned it.
    Closed,
    /// Core refused the head (an invalid status or header) and answered 500.
    Refused,
    /// More or fewer bytes than declared: core ends the connection once
    /// what was queued before is written.
    Mismatch,
}

impl Gone {
    fn error(self) -> io::Error {
        match self {
            Gone::Ended => io::Error::other("the stream has ended"),
            Gone::Closed => io::Error::new(
                io::ErrorKind::BrokenPipe,
                "the stream's connection is closed (the client left, a write stalled, or the drain deadline cut it)",
            ),
            Gone::Refused => io::Error::new(
                io::ErrorKind::InvalidInput,
                "invalid status or header: the request was answered with 500",
            ),
            Gone::Mismatch => io::Error::new(
                io::ErrorKind::InvalidData,
                "the body did not match its declared length: the connection closes",
            ),
        }
    }

    fn of(error: StreamError) -> Gone {
        match error {
            StreamError::LengthMismatch => Gone::Mismatch,
            StreamError::UnknownStream | StreamError::InvalidTrailer => Gone::Closed,
        }
    }
}

/// What the worker needs to start a stream: the head and the queue.
pub(crate) struct StreamStart {
    head: Response,
    length: BodyLength,
    pipe: Arc<Pipe>,
}

/// A stream for request `id` answered with `head`: what goes to the worker,
/// and the writer that goes to the application. The head's body is queued
/// as the stream's first bytes.
pub(crate) fn start(
    id: RequestId,
    inbox: Arc<Inbox>,
    mut head: Response,
    length: BodyLength,
) -> (StreamStart, BodyWriter) {
    let first = std::mem::take(&mut head.body);
    let pipe = Arc::new(Pipe {
        state: Mutex::new(PipeState {
            queue: VecDeque::from(first.to_vec()),
            end: None,
            scheduled: false,
            waiting: false,
            gone: None,
            notify: None,
        }),
        room: Condvar::new(),
        capacity: inbox.stream_buffer_bytes.max(1),
    });
    let writer = BodyWriter {
        id,
        pipe: pipe.clone(),
        inbox,
        declared: match length {
            BodyLength::Known(n) => Some(n),
            BodyLength::Unknown => None,
        },
        written: first.len() as u64,
        ended: false,
    };
    (StreamStart { head, length, pipe }, writer)
}

impl Pipe {
    fn lock(&self) -> MutexGuard<'_, PipeState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl BodyWriter {
    /// Writes as much of `data` as there is room for, without waiting; how
    /// much it took. Fails with `WouldBlock` when there is no room (then
    /// [`notify_when_writable`](Self::notify_when_writable) says when to
    /// try again), and as `write` does once the stream is gone.
    pub fn try_write(&mut self, data: &[u8]) -> io::Result<usize> {
        let data = self.within_declared(data)?;
        let pipe = self.pipe.clone();
        let state = pipe.lock();
        if let Some(gone) = state.gone {
            return Err(gone.error());
        }
        if state.queue.len() >= pipe.capacity && !data.is_empty() {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        Ok(self.put(&pipe, state, data))
    }

    /// Calls `notify` once, when a write may take bytes again or the stream
    /// is gone — at once if that is so now. It runs on the worker's thread,
    /// so it must be quick and must not write to this stream: wake a task,
    /// signal a thread. A later call replaces an earlier one not yet called.
    pub fn notify_when_writable(&self, notify: impl FnOnce() + Send + 'static) {
        let mut state = self.pipe.lock();
        if state.gone.is_some() || state.queue.len() < self.pipe.capacity {
            drop(state);
            notify();
        } else {
            state.notify = Some(Box::new(notify));
        }
    }

    /// Whether the server is stopping (pre-stop or draining). The drain
    /// waits for a stream until its deadline: an endless stream should end
    /// now, and one that can resume elsewhere (server-sent events with
    /// `Last-Event-ID`) should end soon.
    pub fn is_stopping(&self) -> bool {
        self.inbox.stops.requests() > 0
    }

    /// The request this stream answers.
    pub fn request_id(&self) -> RequestId {
        self.id
    }

    /// Ends the body. Returns at once: the end follows the bytes still
    /// queued. Fails if the stream is already gone, or (the connection then
    /// closing) if a declared length was not reached.
    pub fn finish(self) -> io::Result<()> {
        self.finish_with_trailers(std::iter::empty::<(&str, &[u8])>())
    }

    /// Ends the body with trailer fields, sent after a chunked body (and
    /// dropped for other framings). An invalid trailer is left out and
    /// logged.
    pub fn finish_with_trailers<I, N, V>(mut self, trailers: I) -> io::Result<()>
    where
        I: IntoIterator<Item = (N, V)>,
        N: AsRef<str>,
        V: AsRef<[u8]>,
    {
        let trailers = trailers
            .into_iter()
            .map(|(name, value)| (name.as_ref().to_owned(), value.as_ref().to_vec()))
            .collect();
        self.ended = true;
        let short = self.declared.is_some_and(|n| self.written < n);
        let mut state = self.pipe.lock();
        if let Some(gone) = state.gone {
            return Err(gone.error());
        }
        state.end = Some(End::Finish(trailers));
        self.schedule(state);
        if short {
            return Err(Gone::Mismatch.error());
        }
        Ok(())
    }

    /// The part of `data` a declared length still has room for. A write
    /// once the length is reached fails with `InvalidInput` and takes
    /// nothing: the bytes within it stay a whole response, and the
    /// application learns of its mistake where it made it (`write_all`
    /// fails) instead of from a broken response.
    fn within_declared<'d>(&self, data: &'d [u8]) -> io::Result<&'d [u8]> {
        let Some(declared) = self.declared else {
            return Ok(data);
        };
        let left = declared.saturating_sub(self.written);
        if left == 0 && !data.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "the body is already as long as its declared length: the bytes are refused",
            ));
        }
        Ok(&data[..usize::try_from(left).map_or(data.len(), |left| left.min(data.len()))])
    }

    /// Copies as much of `data` as fits into the queue, which the caller
    /// checked is open, and tells the worker. How much it took.
    fn put(&mut self, pipe: &Pipe, mut state: MutexGuard<'_, PipeState>, data: &[u8]) -> usize {
        let room = pipe.capacity.saturating_sub(state.queue.len());
        let n = room.min(data.len());
        if n == 0 {
            return 0;
        }
        state.queue.extend(&data[..n]);
        self.written += n as u64;
        self.schedule(state);
        n
    }

    /// Posts a [`Message::Stream`] unless one is on its way already.
    fn schedule(&self, mut state: MutexGuard<'_, PipeState>) {
        if state.scheduled {
            return;
        }
        state.scheduled = true;
        drop(state);
        self.inbox.post(Message::Stream(self.id));
    }
}

/// Waits until the queue satisfies `ready` or the stream is gone.
fn wait_until(
    pipe: &Pipe,
    ready: impl Fn(&PipeState) -> bool,
) -> io::Result<MutexGuard<'_, PipeState>> {
    let mut state = pipe.lock();
    loop {
        if let Some(gone) = state.gone {
            return Err(gone.error());
        }
        if ready(&state) {
            return Ok(state);
        }
        if on_worker_thread() {
            return Err(io::Error::new(
                io::ErrorKind::WouldBlock,
                "waiting for a stream on a worker thread would wait forever: write from another thread",
            ));
        }
        state.waiting = true;
        state = pipe.room.wait(state).unwrap_or_else(|e| e.into_inner());
    }
}

impl Write for BodyWriter {
    /// Waits until there is room, then takes as much of `buf` as fits.
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let buf = self.within_declared(buf)?;
        if buf.is_empty() {
            return Ok(0);
        }
        let pipe = self.pipe.clone();
        let state = wait_until(&pipe, |s| s.queue.len() < pipe.capacity)?;
        Ok(self.put(&pipe, state, buf))
    }

    /// Waits until every byte written is handed to core.
    fn flush(&mut self) -> io::Result<()> {
        wait_until(&self.pipe, |s| s.queue.is_empty()).map(drop)
    }
}

impl Drop for BodyWriter {
    fn drop(&mut self) {
        if self.ended {
            return;
        }
        let length_declared = self.declared.is_some();
        let mut state = self.pipe.lock();
        if state.gone.is_none() {
            state.end = Some(End::Abandoned { length_declared });
            self.schedule(state);
        }
    }
}

impl std::fmt::Debug for BodyWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BodyWriter")
            .field("id", &self.id)
            .field("declared", &self.declared)
            .field("written", &self.written)
            .finish_non_exhaustive()
    }
}

/// The worker's open streams, by connection. A connection writes one
/// streamed response at a time, but the application may start streams for
/// pipelined requests handed over ahead of their turn: those wait, open,
/// until core says they may write. (Each slot's vector keeps its capacity.)
#[derive(Default)]
pub(crate) struct Streams {
    open: Vec<Vec<(RequestId, Arc<Pipe>)>>,
}

impl Streams {
    /// Starts the stream answering `id` in core, then feeds it what is queued.
    pub(crate) fn start(
        &mut self,
        server: &mut Server,
        id: RequestId,
        start: StreamStart,
        now: Time,
    ) -> Result<(), RespondError> {
        let headers = start
            .head
            .headers
            .iter()
            .map(|(name, value)| (name.as_bytes(), &value[..]));
        if let Err(e) =
            server.handle_stream_start(id, start.head.status, headers, start.length, now)
        {
            let gone = match e {
                RespondError::UnknownRequest => Gone::Closed,
                _ => Gone::Refused,
            };
            close_pipe(&start.pipe, gone);
            return Err(e);
        }
        let index = id.conn().index();
        if self.open.len() <= index {
            self.open.resize_with(index + 1, Vec::new);
        }
        // Streams of a connection this slot held before are gone with it.
        let slot = &mut self.open[index];
        slot.retain(|(open, _)| open.conn() == id.conn());
        slot.push((id, start.pipe));
        self.feed(server, id, false, now);
        Ok(())
    }

    /// Hands core what the stream answering `id` has queued, as far as core
    /// has room, then its end if the application ended it. `posted` when a
    /// [`Message::Stream`] asked for it.
    pub(crate) fn feed(&mut self, server: &mut Server, id: RequestId, posted: bool, now: Time) {
        let Some(pipe) = self.pipe(id) else {
            return;
        };
        let mut state = pipe.lock();
        if posted {
            state.scheduled = false;
        }
        let before = state.queue.len();
        let mut gone = None;
        while !state.queue.is_empty() {
            let (front, _) = state.queue.as_slices();
            let offered = front.len();
            match server.handle_stream_data(id, front, now) {
                Ok(taken) => {
                    state.queue.drain(..taken);
                    if taken < offered {
                        break; // core emits StreamWritable when it has room
                    }
                }
                Err(e) => {
                    gone = Some(Gone::of(e));
                    break;
                }
            }
        }
        if gone.is_none() && state.queue.is_empty() {
            gone = match state.end.take() {
                None => None,
                Some(End::Finish(trailers)) => Some(end(server, id, &trailers, now)),
                Some(End::Abandoned { length_declared }) => {
                    let gone = if length_declared {
                        end(server, id, &[], now)
                    } else {
                        // A chunked body must not end as if whole.
                        server.handle_aborted(id.conn(), now);
                        Gone::Closed
                    };
                    if !matches!(gone, Gone::Ended) {
                        log::warn!(
                            "stream of {id:?} dropped unfinished by the application: closing its connection"
                        );
                    }
                    Some(gone)
                }
            };
        }
        let freed = state.queue.len() < before;
        let notify = if let Some(gone) = gone {
            state.gone = Some(gone);
            state.queue = VecDeque::new();
            self.open[id.conn().index()].retain(|(open, _)| *open != id);
            state.notify.take()
        } else if freed {
            state.notify.take()
        } else {
            None
        };
        if (freed || gone.is_some()) && state.waiting {
            state.waiting = false;
            pipe.room.notify_all();
        }
        drop(state);
        if let Some(notify) = notify {
            notify();
        }
    }

    /// Connection `conn` closed: the streams still open on it are gone.
    pub(crate) fn closed(&mut self, conn: ConnId) {
        let Some(slot) = self.open.get_mut(conn.index()) else {
            return;
        };
        for (id, pipe) in slot.drain(..) {
            if id.conn() == conn {
                close_pipe(&pipe, Gone::Closed);
            }
        }
    }

    fn pipe(&self, id: RequestId) -> Option<Arc<Pipe>> {
        let slot = self.open.get(id.conn().index())?;
        let (_, pipe) = slot.iter().find(|(open, _)| *open == id)?;
        Some(pipe.clone())
    }
}

/// Ends the stream answering `id` in core; an invalid trailer is logged and
/// left out.
fn end(server: &mut Server, id: RequestId, trailers: &[(String, Vec<u8>)], now: Time) -> Gone {
    let fields = trailers.iter().map(|(n, v)| (n.as_bytes(), &v[..]));
    match server.handle_stream_end(id, fields, now) {
        Ok(()) => Gone::Ended,
        Err(StreamError::InvalidTrailer) => {
            log::error!("invalid trailer in the stream of {id:?}: ended without trailers");
            let none = std::iter::empty::<(&[u8], &[u8])>();
            match server.handle_stream_end(id, none, now) {
                Ok(()) => Gone::Ended,
                Err(e) => Gone::of(e),
            }
        }
        Err(e) => Gone::of(e),
    }
}

/// Marks the stream gone and wakes whoever waits on it.
fn close_pipe(pipe: &Pipe, gone: Gone) {
    let mut state = pipe.lock();
    state.gone = Some(gone);
    state.queue = VecDeque::new();
    state.waiting = false;
    let notify = state.notify.take();
    drop(state);
    pipe.room.notify_all();
    if let Some(notify) = notify {
        notify();
    }
}
