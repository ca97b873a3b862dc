//! The writing side of a connection: responses queued, bytes handed to the
//! driver, and what follows a complete response — the next request, or a
//! clean close.

use bytes::{Buf, Bytes};

use crate::conn::State;
use crate::request::{ConnId, RequestId};
use crate::response::{
    status_has_body, write_head, ConnectionHeader, Framing as ResponseFraming, RespondError,
};
use crate::server::{Event, Server};
use crate::time::Time;
use crate::timers::TimerKind;

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
        let key = self.key_of(id.conn).ok_or(RespondError::UnknownRequest)?;
        let conn = &self.conns[key];
        let State::Dispatched { head, seq, len } = conn.state else {
            return Err(RespondError::UnknownRequest);
        };
        if seq != id.seq {
            return Err(RespondError::UnknownRequest);
        }
        // The connection closes after this response if the client asked, if
        // its FIN came and nothing follows, or if the drain says so.
        let nothing_follows = conn.buffered_input() <= len;
        let close = !head.keep_alive
            || (conn.peer_eof && nothing_follows)
            || !self.request_keeps_connection(conn.pre_drain_input, len);
        // Whether the client will send nothing more, so closing cannot reset
        // anything and needs no linger. (A client that sends more after asking
        // to close breaks RFC 9112 §9.6; lingering still protects its response.)
        let client_done = (!head.keep_alive || conn.peer_eof) && nothing_follows;
        let connection = match (close, head.minor_version) {
            (true, _) => ConnectionHeader::Close,
            (false, 0) => ConnectionHeader::KeepAlive,
            (false, _) => ConnectionHeader::None,
        };
        let has_body = status_has_body(status);
        let framing = ResponseFraming {
            date: &self.date,
            content_length: has_body.then_some(body.len() as u64),
            connection,
        };
        let conn = &mut self.conns[key];
        let bufs = conn
            .bufs
            .as_mut()
            .expect("a dispatched request has buffers");
        write_head(&mut bufs.out, status, headers, &framing)?;
        if has_body && !head.is_head_method {
            if body.len() <= COPY_BODY_MAX {
                bufs.out.extend_from_slice(&body);
            } else {
                bufs.out_tail = body;
            }
        }
        conn.sent_any = true;
        self.set_state(
            key,
            State::Writing {
                close,
                client_done,
                len,
            },
        );
        let deadline = now + self.config.write_stall_timeout;
        self.timers
            .set(&mut self.conns, key, TimerKind::Write, deadline);
        self.queue_transmit(key);
        // A closing connection discards input, so a paused one may read again.
        self.resume_reading_if_paused(key);
        self.after_input();
        Ok(())
    }

    /// Output: the bytes queued for `conn`, as up to two slices for one
    /// vectored write. Both are empty when nothing is queued.
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
    pub fn handle_sent(&mut self, conn: ConnId, n: usize, now: Time) {
        let now = self.advance(now);
        if let Some(key) = self.key_of(conn) {
            self.sent(key, n, now);
        }
        self.after_input();
    }

    fn sent(&mut self, key: usize, n: usize, now: Time) {
        let conn = &mut self.conns[key];
        let Some(bufs) = conn.bufs.as_mut() else {
            return;
        };
        if n == 0 {
            return;
        }
        let from_out = n.min(bufs.out.len() - bufs.out_pos);
        bufs.out_pos += from_out;
        let from_tail = (n - from_out).min(bufs.out_tail.len());
        bufs.out_tail.advance(from_tail);
        if bufs.pending_out() > 0 {
            if matches!(conn.state, State::Writing { .. }) {
                let deadline = now + self.config.write_stall_timeout;
                self.timers
                    .set(&mut self.conns, key, TimerKind::Write, deadline);
            }
            return;
        }
        bufs.out.clear();
        bufs.out_pos = 0;
        bufs.out_tail = Bytes::new();
        if let State::Writing {
            close,
            client_done,
            len,
        } = conn.state
        {
            self.response_written(key, close, client_done, len, now);
        }
    }

    /// A final response is completely in the driver's hands.
    fn response_written(
        &mut self,
        key: usize,
        close: bool,
        client_done: bool,
        len: usize,
        now: Time,
    ) {
        self.count(|r| r.requests_completed += 1);
        let conn = &mut self.conns[key];
        conn.last_active = now;
        if close {
            if client_done || conn.peer_eof {
                // The client will send nothing more, so a plain close sends FIN
                // and cannot reset anything.
                self.close_now(key);
                self.maybe_exit(now);
            } else {
                self.close_cleanly(key, now);
            }
            return;
        }
        let bufs = conn.bufs.as_mut().expect("a written response had buffers");
        bufs.input.drain(..len);
        bufs.fields.clear();
        bufs.body.clear();
        if let Some(pre) = &mut conn.pre_drain_input {
            *pre = pre.saturating_sub(len);
        }
        self.set_state(key, State::Idle);
        let deadline = self.idle_deadline(now);
        self.timers
            .set(&mut self.conns, key, TimerKind::Idle, deadline);
        self.process_input(key, now);
        self.resume_reading_if_paused(key);
    }

    /// Closes a connection without risking a reset: shut the write half, then
    /// read and discard until the client's FIN or the linger deadline.
    pub(crate) fn close_cleanly(&mut self, key: usize, now: Time) {
        let conn = &mut self.conns[key];
        if conn.peer_eof {
            self.close_now(key);
            self.maybe_exit(now);
            return;
        }
        debug_assert_eq!(conn.pending_out(), 0, "half-close with output queued");
        if let Some(bufs) = conn.bufs.take() {
            self.pool.give(bufs);
        }
        self.set_state(key, State::Lingering { discarded: 0 });
        let deadline = now + self.config.linger_timeout;
        self.timers
            .set(&mut self.conns, key, TimerKind::Linger, deadline);
        let id = self.id_of(key);
        self.events.push_back(Event::HalfClose(id));
        // Lingering reads until the client's FIN: a paused connection must
        // read again, or the FIN and any unread input would never be seen.
        self.resume_reading_if_paused(key);
    }

    pub(crate) fn queue_transmit(&mut self, key: usize) {
        let conn = &mut self.conns[key];
        if !conn.transmit_queued {
            conn.transmit_queued = true;
            let id = self.id_of(key);
            self.events.push_back(Event::Transmit(id));
        }
    }
}
