//! One connection: its state, its buffers, its timer link.
//!
//! ```text
//!  Idle ──first byte──▶ Head ──head done──▶ Body ──body done──▶ Dispatched
//!   ▲                    │                   │                     │
//!   │                    └──── rejected ─────┴──▶ Closing ◀────────┤ response
//!   └──────────── response, keep-alive: next request ──────────────┘ that closes
//!                                                   │ written
//!                                                   ▼
//!                                  Lingering ──EOF/timeout──▶ closed
//! ```
//!
//! `Head` is for a head still arriving: one that arrives whole in a single
//! input goes from `Idle` straight to `Body`, `Dispatched` or `Closing`.
//!
//! The reading side never waits for the writing side: once a request is
//! answered, its response is queued and the next pipelined request is read
//! at once, so a batch of pipelined requests answered at once leaves in one
//! write. Responses queued and not yet handed to the driver are
//! [`Unwritten`], in request order. Nor need the application wait: while
//! it works on the request dispatched, the complete requests behind it are
//! handed over too, ahead of their turn (see `ahead.rs`), and their
//! answers wait, parked, for it.
//!
//! A connection is *active* from a request's first byte until its response
//! has been handed to the kernel: in `Head`, `Body`, `Dispatched` and
//! `Closing`, or with responses unwritten. Otherwise (`Idle` with nothing to
//! write, `Lingering`) it is not.

use std::cell::Cell;

use bytes::Bytes;

use crate::ahead::AheadQueue;
use crate::chunked::ChunkedDecoder;
use crate::close::CloseReason;
use crate::finished::{Finished, Outcome, RequestLog};
use crate::input::Input;
use crate::parse::{FieldSpan, Head, HeadScan};
use crate::request::{ConnId, RequestId};
use crate::time::Time;
use crate::timers::{Link, Linked};

/// How much of a body is still to come.
#[derive(Clone, Debug)]
pub(crate) enum BodyProgress {
    /// A `Content-Length` body, kept in place in the input buffer after the head.
    Length(u64),
    /// A chunked body, decoded into [`Buffers::body`] as it arrives.
    Chunked(ChunkedDecoder),
}

#[derive(Clone, Debug)]
pub(crate) enum State {
    /// No request begun: a keep-alive connection between requests, or a new one.
    Idle,
    /// Reading a request head (its deadline runs from its first byte).
    Head { scan: HeadScan },
    /// Reading the body of a request whose head is complete.
    Body { head: Head, body: BodyProgress },
    /// The application has the request `seq`; `len` input bytes belong to it.
    Dispatched { head: Head, seq: u32, len: usize },
    /// The application has the request `seq` while its body still arrives
    /// (`stream_request_bodies`): decoded body bytes wait in
    /// [`Buffers::body`] until it consumes them; `done` once the last one is
    /// there. The head stays at the start of the input.
    Receiving {
        head: Head,
        seq: u32,
        body: BodyProgress,
        done: bool,
        /// The application has asked for the body
        /// ([`Server::handle_body_wanted`](crate::Server::handle_body_wanted)),
        /// at [`Buffers::body_asked_at`]. Until then a client that sent
        /// `Expect: 100-continue` may rightly wait for a `100`: its body is
        /// not late, and is timed from the ask. (A flag here, the time
        /// there: every state change copies the state.)
        body_asked: bool,
    },
    /// The application streams the response to the request it was handed:
    /// the head is queued and body pieces follow until it ends the stream.
    Streaming(Stream),
    /// A response that ends the connection (for `reason`) is queued; nothing
    /// more is read. Once it is written the connection closes.
    Closing { reason: CloseReason },
    /// A `101 Switching Protocols` is queued; once it is written the
    /// connection leaves HTTP. Input that arrives meanwhile is kept for the
    /// new protocol.
    Switching,
    /// The connection has left HTTP: its byte stream is the application's.
    /// Core only waits for the driver to report it closed.
    Upgraded,
    /// The write side was shut at `since` for `reason`; input is read and
    /// discarded until the client's FIN or the linger deadline, so closing
    /// cannot reset unread responses.
    Lingering {
        discarded: u64,
        reason: CloseReason,
        since: Time,
    },
}

/// A response whose body the application streams.
#[derive(Clone, Debug)]
pub(crate) struct Stream {
    /// The request it answers.
    pub seq: u32,
    pub status: u16,
    pub framing: StreamFraming,
    /// Body bytes taken from the application so far.
    pub sent: u64,
    /// When the request began, and when the stream started.
    pub began_at: Time,
    pub started_at: Time,
    /// Why the connection closes once the stream ends, if it does.
    pub close: Option<CloseReason>,
    /// The application was given less room than it offered: tell it when
    /// there is room again.
    pub blocked: bool,
}

impl Stream {
    /// How its request ended, on connection `conn`, at `now`: the one
    /// record of a streamed response, whether it ended, broke or was cut.
    pub fn finished(&self, conn: ConnId, outcome: Outcome, now: Time) -> Finished {
        Finished {
            conn,
            request: Some(RequestId {
                conn,
                seq: self.seq,
            }),
            status: Some(self.status),
            body_bytes: match self.framing {
                StreamFraming::Bodiless => 0,
                _ => self.sent,
            },
            outcome,
            began_at: self.began_at,
            responded_at: Some(self.started_at),
            finished_at: now,
            keeps_connection: outcome == Outcome::Complete && self.close.is_none(),
        }
    }
}

/// How a streamed body is delimited on the wire.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) enum StreamFraming {
    /// `Content-Length`: exactly this many bytes.
    Length(u64),
    /// `Transfer-Encoding: chunked` (HTTP/1.1, length unknown).
    Chunked,
    /// The body ends when the connection closes (HTTP/1.0, length unknown).
    CloseDelimited,
    /// No body on the wire (`HEAD`, 204, 304): the pieces are counted, not sent.
    Bodiless,
}

/// A response queued and not yet completely handed to the driver.
#[derive(Clone, Debug)]
pub(crate) struct Unwritten {
    /// Where it ends in the connection's output stream (see [`Buffers::handed`]).
    pub end: u64,
    /// What its request becomes once the last byte is handed over
    /// (`finished_at` is filled in then).
    pub finished: Finished,
}

/// Responses queued and not yet completely handed over, in order: a vector
/// read from `first` on, and emptied when its last entry is taken. Almost
/// always it holds one response at a time, and a `VecDeque`'s wrap-around
/// arithmetic on every push and pop costs more than the whole of this. It
/// grows no more than the output it describes, which is emptied only when
/// all of it is written too.
#[derive(Debug, Default)]
pub(crate) struct UnwrittenQueue {
    items: Vec<Unwritten>,
    first: usize,
}

// Inlined: each response is pushed and popped once, and the calls cost
// as much as the work.
impl UnwrittenQueue {
    #[inline]
    pub fn push(&mut self, unwritten: Unwritten) {
        self.items.push(unwritten);
    }

    #[inline]
    pub fn is_empty(&self) -> bool {
        self.first == self.items.len()
    }

    /// Takes the first response if its last byte is among the `handed`
    /// bytes of output.
    #[inline]
    pub fn pop_written(&mut self, handed: u64) -> Option<Finished> {
        let first = self.items.get(self.first).filter(|u| u.end <= handed)?;
        let finished = first.finished.clone();
        self.first += 1;
        if self.first == self.items.len() {
            self.clear();
        }
        Some(finished)
    }

    /// Takes every response left, in order.
    pub fn drain(&mut self) -> std::vec::Drain<'_, Unwritten> {
        let first = std::mem::take(&mut self.first);
        self.items.drain(..first);
        self.items.drain(..)
    }

    pub fn clear(&mut self) {
        self.items.clear();
        self.first = 0;
    }
}

/// The heap a busy connection uses. An idle connection gives its buffers back
/// to the server's pool, so 10,000 idle keep-alive connections cost only their
/// table entries, and a busy one reuses capacity without allocating.
#[derive(Debug, Default)]
pub(crate) struct Buffers {
    /// Received bytes not yet consumed; the current request starts at 0.
    pub input: Input,
    /// Header spans of the current request.
    pub fields: Vec<FieldSpan>,
    /// The decoded body of a chunked request.
    pub body: Vec<u8>,
    /// Bytes queued for the driver to write, from `out_pos` on.
    pub out: Vec<u8>,
    pub out_pos: usize,
    /// A large response body, written after `out` without being copied.
    /// Once empty it holds no storage (it is replaced as soon as its last
    /// byte is written), so an empty tail need not be dropped: dropping
    /// even an empty `Bytes` is a call through its vtable.
    pub out_tail: Bytes,
    /// What the current request has been through, for its
    /// [`Finished`](crate::Finished). Kept here, not in [`Conn`], because
    /// only a busy connection has a request: idle ones stay small.
    pub log: RequestLog,
    /// Responses queued and not yet completely handed over, in order.
    pub unwritten: UnwrittenQueue,
    /// Requests handed to the application ahead of their turn.
    pub ahead: AheadQueue,
    /// Output bytes handed to the driver over the connection's life.
    pub handed: u64,
    /// When the driver last reported write progress (or output became
    /// pending): the write-stall deadline runs from here.
    pub write_progress_at: Time,
    /// When the body being read last made progress.
    pub body_progress_at: Time,
    /// When the application first asked for the streamed body being read,
    /// if `State::Receiving` says it has.
    pub body_asked_at: Time,
}

impl Buffers {
    pub fn pending_out(&self) -> usize {
        self.out.len() - self.out_pos + self.out_tail.len()
    }

    /// Notes that a response ends where the output queued so far ends: once
    /// its last byte is handed over, its request becomes `finished`.
    #[inline]
    pub fn response_queued(&mut self, finished: Finished) {
        let end = self.handed + self.pending_out() as u64;
        self.unwritten.push(Unwritten { end, finished });
    }

    /// Drops the `len` bytes of the request just answered, and what was
    /// parsed of it: the next pipelined request starts the input.
    #[inline]
    pub fn let_go_of_request(&mut self, len: usize) {
        self.input.consume(len);
        self.fields.clear();
        self.body.clear();
        self.ahead.consumed(len);
    }

    /// Empties the buffers, keeping capacity for reuse.
    pub fn reset(&mut self) {
        self.input.clear();
        self.fields.clear();
        self.body.clear();
        self.out.clear();
        self.out_pos = 0;
        if !self.out_tail.is_empty() {
            self.out_tail = Bytes::new();
        }
        self.log = RequestLog::default();
        self.unwritten.clear();
        self.ahead.clear();
        self.handed = 0;
    }
}

/// Why core asks the driver how much waits unread in a connection's socket.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) enum UnreadAsk {
    /// The drain began, or the connection was accepted during it: what
    /// waits was sent before the drain (or from the backlog), and the
    /// requests in it are owed like those core had read.
    Drain,
    /// A timer would close the idle connection: a request that reached its
    /// socket first would be lost by the close.
    Close,
}

#[derive(Debug)]
pub(crate) struct Conn {
    /// Distinguishes this connection from earlier ones in the same slot.
    pub generation: u32,
    pub state: State,
    pub bufs: Option<Box<Buffers>>,
    pub link: Link,
    /// Sequence number of the next request, for [`RequestId`](crate::RequestId).
    pub next_seq: u32,
    /// Bytes received on the connection so far.
    pub received: u64,
    /// What [`received`](Self::received) was when the drain began, with
    /// what waited unread in its socket then ([`Server::handle_unread`](crate::Server::handle_unread));
    /// 0 for a connection accepted during it; `None` while serving. A request
    /// followed by bytes received before the drain was not the last one its
    /// client sent before the drain, so its answer keeps the connection.
    pub received_before_drain: Option<u64>,
    /// Why core asked the driver how much waits unread in the socket
    /// ([`Event::CountUnread`](crate::Event::CountUnread)), while it waits
    /// for the answer.
    pub unread_asked: Option<UnreadAsk>,
    /// [`received`](Self::received) plus what the driver last said waited
    /// unread in the socket: the bytes it will read.
    pub unread_until: u64,
    /// When the connection last finished a response (or was accepted).
    pub last_active: Time,
    pub peer_eof: bool,
    /// Whether any response bytes were queued on this connection.
    pub sent_any: bool,
    /// Whether the connection is counted in the server's active count.
    pub counted: bool,
    /// Whether core told the driver to stop reading.
    pub read_paused: Cell<bool>,
    /// Whether an [`Event::Transmit`](crate::Event::Transmit) is queued.
    pub transmit_queued: bool,
    /// Whether it is among the server's connections to hand requests
    /// over ahead of their turn.
    pub ahead_queued: bool,
}

impl Conn {
    pub fn new(generation: u32, now: Time) -> Conn {
        Conn {
            generation,
            state: State::Idle,
            bufs: None,
            link: Link::default(),
            next_seq: 0,
            received: 0,
            received_before_drain: None,
            unread_asked: None,
            unread_until: 0,
            last_active: now,
            peer_eof: false,
            sent_any: false,
            counted: false,
            read_paused: Cell::new(false),
            transmit_queued: false,
            ahead_queued: false,
        }
    }

    pub fn pending_out(&self) -> usize {
        self.bufs.as_ref().map_or(0, |b| b.pending_out())
    }

    pub fn buffered_input(&self) -> usize {
        self.bufs.as_ref().map_or(0, |b| b.input.len())
    }

    /// Whether core holds bytes of another request after the first `len`
    /// bytes of its input: a client pipelined it. Empty lines, which some
    /// clients send after a body, are none.
    pub fn holds_request_after(&self, len: usize) -> bool {
        self.bufs
            .as_ref()
            .and_then(|b| b.input.get(len..))
            .is_some_and(|rest| rest.iter().any(|&b| b != b'\r' && b != b'\n'))
    }

    /// Whether a request is in progress: begun and its response not yet
    /// completely handed to the driver.
    pub fn is_active(&self) -> bool {
        match self.state {
            State::Head { .. }
            | State::Body { .. }
            | State::Dispatched { .. }
            | State::Receiving { .. }
            | State::Streaming(_)
            | State::Closing { .. }
            | State::Switching => true,
            State::Idle => self
                .bufs
                .as_ref()
                .is_some_and(|b| !b.unwritten.is_empty() || !b.ahead.is_empty()),
            State::Lingering { .. } | State::Upgraded => false,
        }
    }

    /// Whether bytes its client sent may wait unread in its socket that core
    /// would still read and answer: not once it is closing, lingering (what
    /// comes then is discarded) or has left HTTP, nor after its client's
    /// FIN (everything before it was read).
    pub fn may_hold_unread(&self) -> bool {
        !self.peer_eof
            && !matches!(
                self.state,
                State::Closing { .. }
                    | State::Lingering { .. }
                    | State::Switching
                    | State::Upgraded
            )
    }

    /// Whether an idle connection waits on bytes in its socket rather than
    /// on a timer: core asked how many there are and has no answer yet, or
    /// was told of more than it has read. A request may be among them, and
    /// a close would lose it. The driver answers and reads at once; in the
    /// drain, its deadline bounds the wait.
    pub fn waits_on_unread(&self) -> bool {
        self.unread_asked.is_some() || self.unread_until > self.received
    }

    /// Whether a request whose `len` bytes start the input buffer may be
    /// answered without closing the connection, as far as the drain goes:
    /// while serving always; during the drain only if bytes after it had
    /// been received before the drain began (its client pipelined another
    /// request before it could know).
    // Inlined: asked of every response, and while serving it is one test.
    #[inline]
    pub fn drain_keeps_open(&self, draining: bool, len: usize) -> bool {
        match self.received_before_drain {
            None => !draining,
            Some(before) => {
                let request_end = self.received - (self.buffered_input() - len) as u64;
                before > request_end
            }
        }
    }
}

impl Linked for Conn {
    fn link(&self) -> &Link {
        &self.link
    }

    fn link_mut(&mut self) -> &mut Link {
        &mut self.link
    }
}

/// Buffers of idle connections, and of answers given before their turn
/// (see `ahead.rs`) and since queued, kept for reuse. Bounded in count and
/// in the capacity each may keep, so a burst of large requests does not
/// pin memory.
#[derive(Debug, Default)]
pub(crate) struct Pool {
    // Boxed because a connection holds its buffers as `Option<Box<Buffers>>`
    // (8 bytes while idle), and moving the box moves a pointer, not the struct.
    #[allow(clippy::vec_box)]
    free: Vec<Box<Buffers>>,
    /// Empty buffers for answers to park: an application that answers
    /// pipelined requests out of order parks one per request.
    answers: Vec<Vec<u8>>,
}

/// Most buffer sets kept for reuse.
const POOL_MAX: usize = 64;
/// Most capacity a pooled vector keeps.
const POOL_KEEP_BYTES: usize = 64 * 1024;

impl Pool {
    // Inlined: a keep-alive connection takes its buffers once per request.
    #[inline]
    pub fn take(&mut self) -> Box<Buffers> {
        self.free.pop().unwrap_or_default()
    }

    pub fn give(&mut self, mut bufs: Box<Buffers>) {
        if self.free.len() >= POOL_MAX {
            return;
        }
        bufs.reset();
        if bufs.input.capacity() > POOL_KEEP_BYTES {
            bufs.input.shrink_away();
        }
        for v in [&mut bufs.body, &mut bufs.out] {
            if v.capacity() > POOL_KEEP_BYTES {
                *v = Vec::new();
            }
        }
        if bufs.fields.capacity() > 256 {
            bufs.fields = Vec::new();
        }
        bufs.ahead.shrink();
        self.free.push(bufs);
    }

    /// An empty buffer to park an answer in.
    pub fn take_answer(&mut self) -> Vec<u8> {
        self.answers.pop().unwrap_or_default()
    }

    /// Takes back the buffer of a parked answer once it is queued.
    pub fn give_answer(&mut self, mut answer: Vec<u8>) {
        if self.answers.len() < POOL_MAX && answer.capacity() <= POOL_KEEP_BYTES {
            answer.clear();
            self.answers.push(answer);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pool_keeps_modest_buffers_and_drops_outsized_ones() {
        let mut pool = Pool::default();
        let mut bufs = pool.take();
        // From empty, a vector grows to exactly what the first extend needs.
        bufs.input.extend(&[b'x'; POOL_KEEP_BYTES]);
        bufs.body.reserve_exact(POOL_KEEP_BYTES + 1);
        bufs.out.reserve_exact(4 * POOL_KEEP_BYTES);
        bufs.fields.reserve_exact(257);
        pool.give(bufs);
        let again = pool.take();
        assert!(again.input.is_empty(), "given back empty");
        assert!(
            again.input.capacity() >= POOL_KEEP_BYTES,
            "kept at the bound"
        );
        assert_eq!(again.body.capacity(), 0, "dropped above the bound");
        assert_eq!(again.out.capacity(), 0, "dropped above the bound");
        assert_eq!(again.fields.capacity(), 0, "dropped above its bound");
        let mut bufs = again;
        bufs.input.clear();
        bufs.input.shrink_away();
        bufs.input.extend(&[b'x'; POOL_KEEP_BYTES + 1]);
        pool.give(bufs);
        assert_eq!(pool.take().input.capacity(), 0, "input above the bound");
    }

    #[test]
    fn the_pool_keeps_fields_up_to_its_bound() {
        let mut pool = Pool::default();
        let mut bufs = pool.take();
        bufs.fields.reserve_exact(256);
        let kept = bufs.fields.capacity();
        pool.give(bufs);
        assert_eq!(pool.take().fields.capacity(), kept);
    }

    #[test]
    fn the_pool_holds_at_most_its_bound() {
        let mut pool = Pool::default();
        for _ in 0..POOL_MAX + 3 {
            pool.give(Box::default());
        }
        assert_eq!(pool.free.len(), POOL_MAX);
    }

    #[test]
    fn answer_buffers_come_back_empty_and_only_up_to_the_bounds() {
        let mut pool = Pool::default();
        let mut answer = pool.take_answer();
        answer.extend_from_slice(b"HTTP/1.1 200 OK\r\n");
        let kept = answer.capacity();
        pool.give_answer(answer);
        let again = pool.take_answer();
        assert!(again.is_empty(), "given back empty");
        assert_eq!(again.capacity(), kept, "its capacity kept");
        pool.give_answer(Vec::with_capacity(POOL_KEEP_BYTES + 1));
        assert_eq!(pool.take_answer().capacity(), 0, "dropped above the bound");
        for _ in 0..POOL_MAX + 3 {
            pool.give_answer(Vec::with_capacity(1));
        }
        assert_eq!(pool.answers.len(), POOL_MAX);
    }
}
