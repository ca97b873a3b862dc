//! The writing side of a connection: responses queued in request order,
//! bytes handed to the driver, and what follows the last of them — more
//! requests, or a clean close.

use bytes::{Buf, Bytes};

use crate::ahead::{Ahead, Parked};
use crate::close::CloseReason;
use crate::conn::State;
use crate::finished::{Finished, Outcome};
use crate::lifecycle::Lifecycle;
use crate::parse::Head;
use crate::request::{ConnId, RequestId};
use crate::response::{
    status_has_body, write_head, ConnectionHeader, Framing as ResponseFraming, HeadStart,
    RespondError,
};
use crate::server::{Event, Server};
use crate::time::Time;

/// Bodies up to this size are copied behind the head, so the driver writes one
/// buffer; larger ones are kept as they are and written as a second slice.
const COPY_BODY_MAX: usize = 16 * 1024;

impl Server {
    /// Input: the application's response to request `id`.
    ///
    /// Core adds `Date`, `Content-Length` (not for 204 and 304) and, when the
    /// connection will close, `Connection: close`; the application's own
    /// `Content-Length`, `Transfer-Encoding`, `Connection`, `Date` and
    /// `Keep-Alive` headers are dropped. A response to `HEAD` announces the
    /// body's length and omits the body.
    ///
    /// An invalid response (a status outside 200–599, a header that is not a
    /// token or a value with CR, LF or NUL) is the application's fault: core
    /// answers the request with 500 in its place and returns the error, so
    /// the driver can log it.
    pub fn handle_response<H, N, V>(
        &mut self,
        id: RequestId,
        status: u16,
        headers: H,
        body: Bytes,
        now: Time,
    ) -> Result<(), RespondError>
    where
        H: IntoIterator<Item = (N, V)>,
        N: AsRef<[u8]>,
        V: AsRef<[u8]>,
    {
        let now = self.advance(now);
        let (key, turn) = self.waiting(id).ok_or(RespondError::UnknownRequest)?;
        let result = self.respond(key, turn, status, headers, body, false, now);
        if result.is_err() {
            self.respond_internal_error(key, turn, now);
        }
        self.finish_input();
        result
    }

    /// Input: the application will never answer request `id` — its handler
    /// panicked, or dropped its means of answering. Core answers 500, like
    /// any other response (so with `Connection: close` during the drain).
    pub fn handle_app_failure(&mut self, id: RequestId, now: Time) {
        let now = self.advance(now);
        if let Some((key, turn)) = self.waiting(id) {
            self.respond_internal_error(key, turn, now);
        }
        self.finish_input();
    }

    /// Whether request `id` still waits for the application's answer: not
    /// once its client has left, or core has answered in the application's
    /// place (a 408 for a body too slow, say). An answer to it then is
    /// dropped, and a failure to answer is nobody's error.
    pub fn awaits_answer(&self, id: RequestId) -> bool {
        self.waiting(id).is_some()
    }

    /// The connection of request `id`, and whose turn it is, if that
    /// request waits for its answer.
    #[inline]
    pub(crate) fn waiting(&self, id: RequestId) -> Option<(usize, Turn)> {
        let key = self.key_of(id.conn)?;
        let conn = &self.conns[key];
        match conn.state {
            State::Dispatched { seq, .. } | State::Receiving { seq, .. } if seq == id.seq => {
                Some((key, Turn::Now))
            }
            _ => {
                let index = conn.bufs.as_ref()?.ahead.waiting(id.seq)?;
                Some((key, Turn::Ahead(index)))
            }
        }
    }

    // Cold: only a faulty application comes here.
    #[cold]
    pub(crate) fn respond_internal_error(&mut self, key: usize, turn: Turn, now: Time) {
        let headers = [("Content-Type", "text/plain; charset=utf-8")];
        let body = Bytes::from_static(b"500 Internal Server Error\n");
        self.respond(key, turn, 500, headers, body, true, now)
            .expect("core's own 500 is a valid response");
    }

    /// Queues the response to a request connection `key` has handed over,
    /// or parks it if its `turn` has not come; `app_fault` for core's 500
    /// in place of a faulty application's answer. A queued request's bytes
    /// are let go at once, so the next pipelined request is read while this
    /// response waits to be written.
    #[allow(clippy::too_many_arguments)]
    fn respond<H, N, V>(
        &mut self,
        key: usize,
        turn: Turn,
        status: u16,
        headers: H,
        body: Bytes,
        app_fault: bool,
        now: Time,
    ) -> Result<(), RespondError>
    where
        H: IntoIterator<Item = (N, V)>,
        N: AsRef<[u8]>,
        V: AsRef<[u8]>,
    {
        let (head, seq, len, end) = self.answering(key, turn);
        let close = self.close_after(key, &head, end);
        let id = self.id_of(key);
        let whole = Whole {
            status,
            body,
            head: &head,
            connection: connection_header(close, head.minor_version),
            date_line: &self.date_line,
        };
        let conn = &mut self.conns[key];
        let bufs = conn
            .bufs
            .as_mut()
            .expect("a dispatched request has buffers");
        let finished = |body_bytes, began_at| Finished {
            conn: id,
            request: Some(RequestId { conn: id, seq }),
            status: Some(status),
            body_bytes,
            outcome: if app_fault {
                Outcome::AppFault
            } else {
                Outcome::Complete
            },
            began_at,
            responded_at: Some(now),
            finished_at: now,
            keeps_connection: close.is_none(),
        };
        if let Turn::Ahead(index) = turn {
            let ahead = bufs.ahead.get_mut(index);
            let answer = self.pool.take_answer();
            return park_whole(
                ahead,
                answer,
                whole,
                headers,
                &mut self.head_start,
                close,
                finished,
            );
        }
        let was_idle = bufs.pending_out() == 0;
        let body_bytes = whole.write(
            &mut bufs.out,
            &mut bufs.out_tail,
            headers,
            &mut self.head_start,
        )?;
        let finished = finished(body_bytes, bufs.log.began_at);
        self.note_queued(key, finished, len, was_idle, now);
        match close {
            Some(reason) => self.enter(key, State::Closing { reason }, now),
            // The next pipelined request, if one is buffered. Without
            // input there is nothing to read, and the response just
            // queued keeps the buffers.
            None if self.conns[key].buffered_input() > 0 => self.enter_idle_and_read(key, now),
            None => self.enter(key, State::Idle, now),
        }
        if self.conns.contains(key) {
            self.queue_transmit(key);
            // A closing connection discards input, and the next request may
            // have room now: a paused connection may read again.
            self.resume_reading_if_paused(key);
        }
        Ok(())
    }

    /// Notes a response just put in connection `key`'s output for the
    /// request whose `len` bytes start the input, which becomes `finished`
    /// once it is written; `was_idle` if nothing waited to be written before.
    /// The request's bytes are let go.
    #[inline]
    pub(crate) fn note_queued(
        &mut self,
        key: usize,
        finished: Finished,
        len: usize,
        was_idle: bool,
        now: Time,
    ) {
        let conn = &mut self.conns[key];
        let bufs = conn.bufs.as_mut().expect("a response was queued");
        bufs.response_queued(finished);
        bufs.let_go_of_request(len);
        if was_idle {
            bufs.write_progress_at = now;
        }
        conn.sent_any = true;
    }

    /// A request connection `key` has handed to the application, at `turn`:
    /// its head, its number, how many input bytes belong to it (its head
    /// alone while its body streams: the body is consumed as it comes), and
    /// where they end in the input.
    #[inline]
    pub(crate) fn answering(&self, key: usize, turn: Turn) -> (Head, u32, usize, usize) {
        let conn = &self.conns[key];
        if let Turn::Ahead(index) = turn {
            let bufs = conn.bufs.as_ref().expect("a request ahead has buffers");
            let ahead = bufs.ahead.get(index);
            return (ahead.head, ahead.seq, ahead.len, ahead.end());
        }
        match conn.state {
            State::Dispatched { head, seq, len } => (head, seq, len, len),
            State::Receiving { head, seq, .. } => (head, seq, head.len, head.len),
            _ => unreachable!("only a request handed to the application is answered"),
        }
    }

    /// Why the connection of the request `key` has dispatched closes after
    /// its response, if it does: the client asked, its FIN came and nothing
    /// follows, keep-alive is off, or the server is stopping. In PreStop a
    /// response closes unless core has bytes of a later request, so clients
    /// leave before the drain and no close races a request; what a client
    /// pipelined before it could see the close is answered, as in the
    /// drain, rather than dropped for it to send again.
    /// `head` and `len` (where the request ends in the input) are what
    /// [`answering`](Self::answering) says.
    #[inline]
    pub(crate) fn close_after(&self, key: usize, head: &Head, len: usize) -> Option<CloseReason> {
        let conn = &self.conns[key];
        let unread = match &conn.state {
            State::Receiving { done, .. } => {
                !done || conn.bufs.as_ref().is_some_and(|b| !b.body.is_empty())
            }
            _ => false,
        };
        let nothing_follows = conn.buffered_input() <= len;
        let draining = self.lifecycle.drain().is_some();
        // A body still arriving comes first: its close must linger, or the
        // client still sending it would be reset, even if it asked to close.
        if unread {
            Some(CloseReason::BodyUnread)
        } else if !head.keep_alive {
            Some(CloseReason::ClientAsked)
        } else if conn.peer_eof && nothing_follows {
            Some(CloseReason::ClientClosed)
        } else if self.config.keep_alive_timeout.is_zero() {
            Some(CloseReason::KeepAliveOff)
        } else if (matches!(self.lifecycle, Lifecycle::PreStop { .. })
            && !conn.holds_request_after(len))
            || !conn.drain_keeps_open(draining, len)
        {
            Some(CloseReason::Stopping)
        } else {
            None
        }
    }

    /// Output: the bytes queued for `conn`, as up to two slices for one
    /// vectored write. Both are empty when nothing is queued.
    // Inlined, like `handle_sent` and `poll_event`: the driver calls each
    // once or more per request, and the call costs about as much as the work.
    #[must_use]
    #[inline]
    pub fn transmit(&self, conn: ConnId) -> [&[u8]; 2] {
        let bufs = self
            .key_of(conn)
            .and_then(|key| self.conns[key].bufs.as_deref());
        match bufs {
            Some(b) => [&b.out[b.out_pos..], &b.out_tail[..]],
            None => [&[], &[]],
        }
    }

    /// Input: the driver wrote the first `n` bytes of [`transmit`](Self::transmit).
    #[inline]
    pub fn handle_sent(&mut self, conn: ConnId, n: usize, now: Time) {
        let now = self.advance(now);
        if let Some(key) = self.key_of(conn) {
            self.sent(key, n, now);
        }
        self.finish_input();
    }

    fn sent(&mut self, key: usize, n: usize, now: Time) {
        let Some(bufs) = self.conns[key].bufs.as_mut() else {
            return;
        };
        let n = n.min(bufs.pending_out());
        if n == 0 {
            return;
        }
        let from_out = n.min(bufs.out.len() - bufs.out_pos);
        bufs.out_pos += from_out;
        // What was written is let go of once it is at least half of what
        // `out` holds. Else a stream to a client that never quite catches up
        // (so `out` never empties) would keep every byte it was ever sent.
        // Each byte moves at most once on average; a write of everything
        // (the usual case) moves nothing, as `out` is cleared below.
        if bufs.out_pos > 0 && bufs.out_pos * 2 >= bufs.out.len() {
            bufs.out.drain(..bufs.out_pos);
            bufs.out_pos = 0;
        }
        if n > from_out {
            bufs.out_tail.advance(n - from_out);
            if bufs.out_tail.is_empty() {
                // Its storage goes as soon as it is written: an empty tail
                // holds nothing (see `Buffers::out_tail`).
                bufs.out_tail = Bytes::new();
            }
        }
        bufs.handed += n as u64;
        bufs.write_progress_at = now;
        self.output_progress(key, now);
    }

    /// After output was handed over (or a stream ended): every response whose
    /// last byte is handed over is done; with nothing left to write, what
    /// follows — the next request, the close, the new protocol.
    pub(crate) fn output_progress(&mut self, key: usize, now: Time) {
        let id = self.id_of(key);
        let conn = &mut self.conns[key];
        let bufs = conn.bufs.as_mut().expect("output was queued in buffers");
        while let Some(finished) = bufs.unwritten.pop_written(bufs.handed) {
            if let Some(report) = self.lifecycle.report_mut() {
                report.record_written(finished.outcome);
            }
            self.events.push_back(Event::Finished(Finished {
                finished_at: now,
                ..finished
            }));
        }
        if let State::Streaming(stream) = &mut conn.state {
            // The application was held back: tell it once there is room for
            // half the buffer again (or all of it: everything was written).
            let low = self.config.max_stream_buffer_bytes / 2;
            if stream.blocked && bufs.pending_out() <= low {
                stream.blocked = false;
                let seq = stream.seq;
                self.events
                    .push_back(Event::StreamWritable(RequestId { conn: id, seq }));
            }
        }
        if bufs.pending_out() > 0 {
            self.settle(key, now);
            self.process_input(key, now);
            // A request begun from buffered input may wait on its client (a
            // head or a body to read): its timer runs, so reading must too.
            // Not a closing connection's: its close decides by the pause.
            let reads_request = self.conns.get(key).is_some_and(|c| {
                matches!(
                    c.state,
                    State::Head { .. } | State::Body { .. } | State::Receiving { .. }
                )
            });
            if reads_request {
                self.resume_reading_if_paused(key);
            }
            return;
        }
        // The tail is empty, so it holds nothing already.
        bufs.out.clear();
        bufs.out_pos = 0;
        conn.last_active = now;
        match conn.state {
            State::Closing { reason } => {
                // A client that asked to close and sent nothing more (RFC
                // 9112 §9.6), or that sent FIN, will send nothing more: a
                // plain close sends FIN and cannot reset anything. Otherwise,
                // linger. "Nothing more" is known only if core kept reading:
                // while reading was paused, what the client sent after its
                // request may wait unread in the kernel, and a close would
                // reset it.
                let sent_nothing_more = reason == CloseReason::ClientAsked
                    && conn.buffered_input() == 0
                    && !conn.read_paused.get();
                let client_done = conn.peer_eof || sent_nothing_more;
                if client_done {
                    self.close_now(key, reason);
                } else {
                    self.close_cleanly(key, reason, now);
                }
            }
            State::Switching => self.upgraded(key, now),
            _ => {
                self.settle(key, now);
                self.process_input(key, now);
                self.resume_reading_if_paused(key);
            }
        }
    }

    #[inline]
    pub(crate) fn queue_transmit(&mut self, key: usize) {
        let conn = &mut self.conns[key];
        if conn.pending_out() > 0 && !conn.transmit_queued {
            conn.transmit_queued = true;
            let id = self.id_of(key);
            self.events.push_back(Event::Transmit(id));
        }
    }
}

/// Whose turn it is to be answered, of the requests a connection has
/// handed over.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) enum Turn {
    /// The request dispatched: its answer is queued at once.
    Now,
    /// The request at this index among those handed ahead: its answer is
    /// parked until its turn.
    Ahead(usize),
}

/// Parks `whole`, the answer to request `ahead` handed over ahead of its
/// turn, in `bytes` (empty, from the pool) until that turn comes;
/// `finished` gives its [`Finished`] from the body bytes sent and when the
/// request began.
// Out of line: most answers are queued at once, and a second copy of the
// writer inlined in `respond` slows every one of them.
#[inline(never)]
fn park_whole<H, N, V>(
    ahead: &mut Ahead,
    mut bytes: Vec<u8>,
    whole: Whole<'_>,
    headers: H,
    head_start: &mut HeadStart,
    close: Option<CloseReason>,
    finished: impl FnOnce(u64, Time) -> Finished,
) -> Result<(), RespondError>
where
    H: IntoIterator<Item = (N, V)>,
    N: AsRef<[u8]>,
    V: AsRef<[u8]>,
{
    let mut tail = Bytes::new();
    let body_bytes = whole.write(&mut bytes, &mut tail, headers, head_start)?;
    ahead.answer = Some(Parked::Whole {
        bytes,
        tail,
        finished: finished(body_bytes, ahead.log.began_at),
        close,
    });
    Ok(())
}

/// A whole response, as the application gave it, to the request with
/// `head`, on a connection whose `Connection` header is decided.
struct Whole<'a> {
    status: u16,
    body: Bytes,
    head: &'a Head,
    connection: ConnectionHeader,
    date_line: &'a [u8],
}

impl Whole<'_> {
    /// Writes it to `out`, a large body into `tail` as it is; returns how
    /// many body bytes it sends. On an invalid header `out` is left as it
    /// was.
    // Always: out of line, with its second caller (an answer parked until
    // its turn), it costs every response some 40 instructions.
    #[inline(always)]
    fn write<H, N, V>(
        self,
        out: &mut Vec<u8>,
        tail: &mut Bytes,
        headers: H,
        head_start: &mut HeadStart,
    ) -> Result<u64, RespondError>
    where
        H: IntoIterator<Item = (N, V)>,
        N: AsRef<[u8]>,
        V: AsRef<[u8]>,
    {
        let has_body = status_has_body(self.status);
        let framing = ResponseFraming {
            date_line: self.date_line,
            content_length: has_body.then_some(self.body.len() as u64),
            chunked: false,
            connection: self.connection,
        };
        write_head(out, self.status, headers, &framing, head_start)?;
        if !has_body || self.head.is_head_method {
            return Ok(0);
        }
        let len = self.body.len() as u64;
        if self.body.len() <= COPY_BODY_MAX {
            out.extend_from_slice(&self.body);
        } else {
            *tail = self.body;
        }
        Ok(len)
    }
}

/// The `Connection` header of a response that closes its connection for
/// `close`, or keeps it, to a client speaking HTTP/1.`minor_version`.
pub(crate) fn connection_header(close: Option<CloseReason>, minor_version: u8) -> ConnectionHeader {
    match (close, minor_version) {
        (Some(_), _) => ConnectionHeader::Close,
        (None, 0) => ConnectionHeader::KeepAlive,
        (None, _) => ConnectionHeader::None,
    }
}
