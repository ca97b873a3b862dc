//! Requests handed to the application ahead of their turn, and answers
//! given before theirs.
//!
//! A connection's responses leave in request order, but the application
//! need not answer in that order. While the request whose answer is next
//! waits for it, the complete requests its client pipelined behind it are
//! handed over too — up to `max_pipelined_requests` at once, each whole in
//! the input, which `max_pipelined_bytes` bounds — so the application may
//! work on them together. An answer given before its turn is *parked*,
//! serialised, until the answers before it are queued; then it joins the
//! output, and the next request's turn comes at once. (Answers given in
//! order park nothing; a parked answer's buffer goes back to the server's
//! pool once it is queued, so in steady state parking allocates nothing
//! either.)
//!
//! What an answer says about the connection — whether it closes — is
//! decided when it is given, as for any answer, from what core holds then.
//! A request is handed ahead only where the one before it keeps the
//! connection open however and whenever it is answered: it asked to keep
//! it, keep-alive is on, and the drain (if one runs) owes what follows it.
//! So nothing handed ahead is ever stranded behind a close, and nothing
//! after a close is handed over, as with requests handed one at a time.
//!
//! Which requests go ahead: bodiless ones, and ones with a `Content-Length`
//! body already whole in the input (unless request bodies stream). A
//! chunked body (decoded into the connection's one body buffer), an
//! upgrade, or a head core would refuse waits for its turn, and so does
//! everything behind it.

use std::collections::VecDeque;
use std::ops::Range;

use bytes::Bytes;

use crate::close::CloseReason;
use crate::config::Config;
use crate::conn::{State, Stream};
use crate::finished::{Finished, RequestLog};
use crate::parse::{parse_head, FieldSpan, Framing, Head, HeadScan};
use crate::request::RequestId;
use crate::server::{Event, Server};
use crate::time::Time;

/// A request handed to the application before its turn.
#[derive(Debug)]
pub(crate) struct Ahead {
    pub seq: u32,
    pub head: Head,
    /// Where it starts in the input (past the empty lines before it),
    /// counted from the start of the current request.
    pub start: usize,
    /// Its bytes, head and body.
    pub len: usize,
    /// Its field spans, in [`AheadQueue::fields`].
    fields: Range<usize>,
    pub log: RequestLog,
    /// Its answer, if the application gave it before its turn.
    pub answer: Option<Parked>,
}

impl Ahead {
    /// Where it ends in the input, counted like `start`.
    pub fn end(&self) -> usize {
        self.start + self.len
    }
}

/// An answer given before its turn, serialised and waiting for it.
#[derive(Debug)]
pub(crate) enum Parked {
    /// A whole response: its head and (copied) body, a large body kept as
    /// it is, what its request becomes once it is written, and why the
    /// connection closes after it, if it does.
    Whole {
        bytes: Vec<u8>,
        tail: Bytes,
        finished: Finished,
        close: Option<CloseReason>,
    },
    /// A streamed response not yet ended: its head, and the stream, which
    /// takes no body bytes before its turn.
    Stream { head: Vec<u8>, stream: Stream },
}

impl Parked {
    /// Why the connection closes after it, if that is known: a stream's
    /// close is decided at its start too.
    fn close(&self) -> Option<CloseReason> {
        match self {
            Parked::Whole { close, .. } => *close,
            Parked::Stream { stream, .. } => stream.close,
        }
    }
}

/// The requests of a connection handed ahead of their turn, oldest first,
/// and the search for the next one.
#[derive(Debug, Default)]
pub(crate) struct AheadQueue {
    items: VecDeque<Ahead>,
    /// The field spans of the requests in `items`, back to back.
    fields: Vec<FieldSpan>,
    /// The head after the last request (handed now or ahead), as far as
    /// it was read: input arrives while the application works, and each
    /// byte is looked at once however it is split.
    next: Lookahead,
}

/// The search for the next request to hand ahead.
#[derive(Debug, Default)]
struct Lookahead {
    /// Where the request looked for starts (empty lines included), as
    /// `Ahead::start` counts. The search is stale if that moved.
    from: usize,
    /// The first byte not yet known to be an empty line.
    at: usize,
    scan: HeadScan,
    /// Its head, once complete, while its body arrives; its fields are
    /// then in `fields`.
    head: Option<Head>,
    fields: Vec<FieldSpan>,
    /// It cannot go ahead: it waits for its turn.
    stopped: bool,
}

impl Lookahead {
    /// Makes the search stale: the next look starts afresh. (One store:
    /// it is done for every request.)
    #[inline]
    fn forget(&mut self) {
        self.from = usize::MAX;
    }

    fn restart(&mut self, from: usize) {
        self.from = from;
        self.at = from;
        self.scan = HeadScan::default();
        self.head = None;
        self.stopped = false;
    }
}

impl AheadQueue {
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// The request numbered `seq`, if it was handed ahead.
    fn index_of(&self, seq: u32) -> Option<usize> {
        let first = self.items.front()?.seq;
        let index = seq.checked_sub(first)? as usize;
        (index < self.items.len()).then_some(index)
    }

    /// The request numbered `seq`, if it was handed ahead and is not yet
    /// answered.
    pub fn waiting(&self, seq: u32) -> Option<usize> {
        self.index_of(seq)
            .filter(|&index| self.items[index].answer.is_none())
    }

    /// The request numbered `seq`, if its streamed answer is parked.
    pub fn parked_stream(&self, seq: u32) -> Option<usize> {
        self.index_of(seq)
            .filter(|&index| matches!(self.items[index].answer, Some(Parked::Stream { .. })))
    }

    pub fn get(&self, index: usize) -> &Ahead {
        &self.items[index]
    }

    pub fn get_mut(&mut self, index: usize) -> &mut Ahead {
        &mut self.items[index]
    }

    /// The field spans of request `ahead`.
    pub fn fields_of(&self, ahead: &Ahead) -> &[FieldSpan] {
        &self.fields[ahead.fields.clone()]
    }

    /// The `n` bytes at the start of the input were let go: offsets move
    /// down. With nothing handed ahead, the request after the one let go
    /// is read as the current one, afresh.
    // Inlined: called for every request, and with nothing ahead it is a
    // test and a reset.
    #[inline]
    pub fn consumed(&mut self, n: usize) {
        if self.items.is_empty() {
            self.next.forget();
            return;
        }
        for ahead in &mut self.items {
            ahead.start -= n;
        }
        self.next.from -= n;
        self.next.at -= n;
    }

    /// Takes the oldest request handed ahead: its turn has come. Its field
    /// spans are moved to `fields`.
    pub fn pop_into(&mut self, fields: &mut Vec<FieldSpan>) -> Option<Ahead> {
        let ahead = self.items.pop_front()?;
        fields.clear();
        fields.extend_from_slice(&self.fields[ahead.fields.clone()]);
        if self.items.is_empty() {
            self.fields.clear();
        }
        Some(ahead)
    }

    /// Takes every request handed ahead, in order.
    pub fn drain(&mut self) -> std::collections::vec_deque::Drain<'_, Ahead> {
        self.fields.clear();
        self.next.forget();
        self.items.drain(..)
    }

    pub fn clear(&mut self) {
        self.items.clear();
        self.fields.clear();
        self.next.forget();
        self.next.fields.clear();
    }

    /// Gives back memory a pool should not keep.
    pub fn shrink(&mut self) {
        if self.fields.capacity() > 1024 || self.next.fields.capacity() > 256 {
            *self = AheadQueue::default();
        }
    }
}

impl AheadQueue {
    /// Looks for a request to hand ahead, starting `from` bytes into
    /// `input`, past the request before it; on success it is taken, and
    /// the search moves past it. Each byte is looked at once, however the
    /// input arrives: a head is scanned as far as it came, and a complete
    /// head waits for its body without being read again.
    fn look(&mut self, input: &[u8], from: usize, config: &Config) -> Option<Found> {
        let next = &mut self.next;
        if next.from != from {
            next.restart(from);
        }
        if next.stopped {
            return None;
        }
        let head = match next.head {
            Some(head) => head,
            None => {
                // Empty lines before a request line are ignored (RFC 9112
                // §2.2); too many of them are refused at its turn.
                let blank = input[next.at..]
                    .iter()
                    .take_while(|&&b| b == b'\r' || b == b'\n')
                    .count();
                next.at += blank;
                if next.at - next.from > config.max_head_bytes {
                    next.stopped = true;
                    return None;
                }
                if next.at == input.len() {
                    return None;
                }
                match parse_head(&input[next.at..], &mut next.scan, config, &mut next.fields) {
                    Ok(None) => return None,
                    Ok(Some(head)) if goes_ahead(&head, config) => {
                        next.head = Some(head);
                        head
                    }
                    // Refused, or not one to hand ahead: at its turn.
                    Ok(Some(_)) | Err(_) => {
                        next.stopped = true;
                        return None;
                    }
                }
            }
        };
        let body = match head.framing {
            Framing::Length(n) => n as usize,
            _ => 0,
        };
        let start = next.at;
        if input.len() - start < head.len + body {
            return None;
        }
        let first = self.fields.len();
        self.fields.extend_from_slice(&next.fields);
        let found = Found {
            head,
            start,
            len: head.len + body,
            fields: first..self.fields.len(),
        };
        next.restart(found.start + found.len);
        Some(found)
    }
}

/// A request found whole behind the last one handed over.
struct Found {
    head: Head,
    start: usize,
    len: usize,
    fields: Range<usize>,
}

/// Whether a request with `head` may be handed ahead once it is whole:
/// bodiless, or a `Content-Length` body read whole (within its limit) when
/// bodies do not stream; no upgrade.
fn goes_ahead(head: &Head, config: &Config) -> bool {
    let body_ok = match head.framing {
        Framing::Empty => true,
        // Its limit was checked with the head.
        Framing::Length(_) => !config.stream_request_bodies,
        Framing::Chunked => false,
    };
    body_ok && !head.upgrade
}

/// Whether every answer the application may give to a request with `head`
/// keeps the connection open, as far as the request goes: its client asked
/// to keep it and speaks HTTP/1.1 (to HTTP/1.0 a body of unknown length is
/// ended by the close), and it asked for no upgrade (which takes the
/// connection out of HTTP).
fn keeps_whatever_the_answer(head: &Head) -> bool {
    head.keep_alive && head.minor_version >= 1 && !head.upgrade
}

impl Server {
    /// Notes that connection `key`, which has dispatched a request, holds
    /// input behind it: if the request still waits once the driver has
    /// carried out every event, what follows is handed over ahead of its
    /// turn ([`hand_over_ahead`](Self::hand_over_ahead)).
    #[inline]
    pub(crate) fn note_input_behind(&mut self, key: usize) {
        let conn = &mut self.conns[key];
        if !conn.ahead_queued && self.config.max_pipelined_requests > 1 {
            conn.ahead_queued = true;
            let id = self.id_of(key);
            self.hand_ahead.push(id);
        }
    }

    /// The driver has carried out every event: the connections noted by
    /// [`note_input_behind`](Self::note_input_behind) whose request still
    /// waits hand over what follows it.
    // Out of line: a request answered at once never comes here.
    #[inline(never)]
    pub(crate) fn hand_over_ahead(&mut self) {
        let now = self.now;
        while let Some(id) = self.hand_ahead.pop() {
            if let Some(key) = self.key_of(id) {
                self.conns[key].ahead_queued = false;
                self.dispatch_ahead(key, now);
            }
        }
    }

    /// Hands the application the complete requests pipelined behind the
    /// one connection `key` has dispatched, as far as the rules above let
    /// it: each may be answered in any order.
    fn dispatch_ahead(&mut self, key: usize, now: Time) {
        let conn = &self.conns[key];
        let State::Dispatched { head, len, .. } = conn.state else {
            return;
        };
        // The usual case: nothing behind the request.
        if conn.buffered_input() <= len || self.config.keep_alive_timeout.is_zero() {
            return;
        }
        let draining = self.lifecycle.drain().is_some();
        let id = self.id_of(key);
        loop {
            let conn = &mut self.conns[key];
            let Some(bufs) = conn.bufs.as_deref_mut() else {
                return;
            };
            let queue = &bufs.ahead;
            // The request before the next one keeps the connection open
            // whatever its answer: see the module's documentation.
            let (before, keeps) = match queue.items.back() {
                Some(last) => (
                    last.end(),
                    keeps_whatever_the_answer(&last.head)
                        && last.answer.as_ref().map_or(true, |a| a.close().is_none()),
                ),
                None => (len, keeps_whatever_the_answer(&head)),
            };
            if !keeps
                || queue.len() + 1 >= self.config.max_pipelined_requests
                || !conn.drain_keeps_open(draining, before)
            {
                return;
            }
            let bufs = conn.bufs.as_deref_mut().expect("checked above");
            let Some(found) = bufs.ahead.look(&bufs.input, before, &self.config) else {
                return;
            };
            let seq = conn.next_seq;
            conn.next_seq += 1;
            let began_offset = conn.received - (bufs.input.len() - found.start) as u64;
            bufs.ahead.items.push_back(Ahead {
                seq,
                head: found.head,
                start: found.start,
                len: found.len,
                fields: found.fields,
                log: RequestLog {
                    dispatched: true,
                    ..RequestLog::begun(now, began_offset)
                },
                answer: None,
            });
            self.events
                .push_back(Event::Request(RequestId { conn: id, seq }));
        }
    }

    /// The turn of the oldest request connection `key` handed ahead has
    /// come (the answers before it are queued, and the output has room):
    /// it becomes the request dispatched, or its parked answer is queued.
    pub(crate) fn take_turn(&mut self, key: usize, now: Time) {
        let id = self.id_of(key);
        let conn = &mut self.conns[key];
        let bufs = conn
            .bufs
            .as_deref_mut()
            .expect("a request ahead has buffers");
        let Some(ahead) = bufs.ahead.pop_into(&mut bufs.fields) else {
            return;
        };
        // The empty lines before it.
        bufs.input.consume(ahead.start);
        bufs.ahead.consumed(ahead.start);
        bufs.log = ahead.log;
        let Ahead { head, seq, len, .. } = ahead;
        match ahead.answer {
            None => self.enter(key, State::Dispatched { head, seq, len }, now),
            Some(Parked::Whole {
                bytes,
                tail,
                finished,
                close,
            }) => {
                let was_idle = bufs.pending_out() == 0;
                bufs.out.extend_from_slice(&bytes);
                self.pool.give_answer(bytes);
                if !tail.is_empty() {
                    bufs.out_tail = tail;
                }
                self.note_queued(key, finished, len, was_idle, now);
                let next = match close {
                    Some(reason) => State::Closing { reason },
                    None => State::Idle,
                };
                self.enter(key, next, now);
                self.queue_transmit(key);
            }
            Some(Parked::Stream {
                head: bytes,
                mut stream,
            }) => {
                let was_idle = bufs.pending_out() == 0;
                bufs.out.extend_from_slice(&bytes);
                self.pool.give_answer(bytes);
                bufs.let_go_of_request(len);
                if was_idle {
                    bufs.write_progress_at = now;
                }
                conn.sent_any = true;
                // It took nothing before its turn: if it was offered some,
                // it may take it now.
                let blocked = std::mem::take(&mut stream.blocked);
                self.enter(key, State::Streaming(stream), now);
                self.queue_transmit(key);
                if blocked {
                    self.events
                        .push_back(Event::StreamWritable(RequestId { conn: id, seq }));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GET: &[u8] = b"GET /a HTTP/1.1\r\nHost: h\r\n\r\n";

    /// A queue holding the `count` requests at the start of `input` as
    /// handed ahead, numbered from `first`, as `dispatch_ahead` holds them.
    fn queue_of(input: &[u8], first: u32, count: u32) -> AheadQueue {
        let config = Config::default();
        let mut queue = AheadQueue::default();
        let mut from = 0;
        for seq in first..first + count {
            let found = queue.look(input, from, &config).expect("a whole request");
            from = found.start + found.len;
            queue.items.push_back(Ahead {
                seq,
                head: found.head,
                start: found.start,
                len: found.len,
                fields: found.fields,
                log: RequestLog::default(),
                answer: None,
            });
        }
        queue
    }

    #[test]
    fn only_the_requests_handed_ahead_are_found_by_number() {
        let queue = queue_of(&GET.repeat(2), 5, 2);
        assert_eq!(
            [4, 5, 6, 7].map(|seq| queue.waiting(seq)),
            [None, Some(0), Some(1), None]
        );
    }

    #[test]
    fn clear_forgets_the_requests_their_fields_and_the_search() {
        // The third request's head is whole, its body not: the search
        // holds its head and fields.
        let input = [
            GET,
            GET,
            b"POST /p HTTP/1.1\r\nHost: h\r\nContent-Length: 9\r\n\r\nabc",
        ]
        .concat();
        let mut queue = queue_of(&input, 0, 2);
        let from = queue.items[1].end();
        assert!(queue.look(&input, from, &Config::default()).is_none());
        assert!(!queue.next.fields.is_empty());
        queue.clear();
        assert!(queue.is_empty());
        assert!(queue.fields.is_empty());
        assert!(queue.next.fields.is_empty());
        assert_eq!(queue.next.from, usize::MAX, "the search starts afresh");
    }

    #[test]
    fn shrink_gives_back_only_outsized_field_buffers() {
        let with = |fields: usize, next: usize| {
            let mut queue = AheadQueue {
                fields: Vec::with_capacity(fields),
                ..AheadQueue::default()
            };
            queue.next.fields = Vec::with_capacity(next);
            queue.shrink();
            (queue.fields.capacity(), queue.next.fields.capacity())
        };
        assert_eq!(with(1024, 256), (1024, 256), "kept up to the bounds");
        assert_eq!(with(1025, 0), (0, 0));
        assert_eq!(with(2000, 8), (0, 0));
        assert_eq!(with(8, 257), (0, 0));
        assert_eq!(with(8, 300), (0, 0));
    }
}
