//! Bodies that stream — request bodies handed to the application as they
//! arrive, responses whose body the application streams, both with
//! back-pressure — and connections that leave HTTP with a `101 Switching
//! Protocols`.
//!
//! A streamed response is *active* until its end is written: the drain
//! waits for it, and the deadline cuts it — a cut chunked body ends without
//! its last chunk, so the client can tell it is incomplete. While it
//! streams, the next pipelined request waits.
//!
//! An upgraded connection is no request: it is counted apart, told when the
//! drain begins ([`Event::StopUpgraded`]), and closed at the deadline.

use bytes::Bytes;

use crate::ahead::Parked;
use crate::close::CloseReason;
use crate::conn::{State, Stream, StreamFraming};
use crate::finished::{Finished, Outcome};
use crate::request::{ConnId, RequestId};
use crate::response::{
    chunk_overhead, status_has_body, write_chunk, write_head, write_last_chunk, ConnectionHeader,
    Framing, RespondError, CONTINUE,
};
use crate::server::{Event, Server};
use crate::time::Time;
use crate::write::{connection_header, Turn};

/// The length of a streamed body, as the application declares it.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum BodyLength {
    /// Exactly this many bytes: sent with `Content-Length`, and enforced.
    Known(u64),
    /// Unknown: chunked for HTTP/1.1, ended by the close for HTTP/1.0.
    Unknown,
}

/// Why core refused a piece, or the end, of a streamed body.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum StreamError {
    /// No such stream: it was never started, it ended, or its connection
    /// closed (the client left, or the drain deadline cut it). Stop sending.
    UnknownStream,
    /// More bytes than the declared length, or an end before it: the
    /// response is broken, so core counts the request as failed and closes
    /// the connection once what was queued before is written (the response
    /// ends where it broke), rather than corrupt what follows.
    LengthMismatch,
    /// A trailer field is not a token or its value contains CR, LF or NUL.
    /// The stream is still open; end it again without the bad trailer.
    InvalidTrailer,
}

impl std::fmt::Display for StreamError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            StreamError::UnknownStream => "the stream is gone",
            StreamError::LengthMismatch => "the body did not match its declared length",
            StreamError::InvalidTrailer => "invalid trailer name or value",
        })
    }
}

impl std::error::Error for StreamError {}

/// What has arrived of a request body that streams: the bytes waiting for
/// the application, and whether the body has ended.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct RequestBody<'a> {
    /// Body bytes (decoded, if chunked) not yet consumed.
    pub data: &'a [u8],
    /// The last byte of the body is among them (or was consumed).
    pub done: bool,
}

impl Server {
    /// Output: what has arrived of the body of request `id`, when its body
    /// streams (`stream_request_bodies`). Read `data`, then report how much
    /// was used with [`handle_body_consumed`](Self::handle_body_consumed);
    /// [`Event::BodyReady`] says when more has come.
    #[must_use]
    pub fn request_body(&self, id: RequestId) -> Option<RequestBody<'_>> {
        let key = self.receiving(id)?;
        let conn = &self.conns[key];
        let State::Receiving { done, .. } = conn.state else {
            return None;
        };
        let bufs = conn.bufs.as_deref()?;
        Some(RequestBody {
            data: &bufs.body,
            done,
        })
    }

    /// Input: the application used the first `n` bytes of
    /// [`request_body`](Self::request_body). Core reads on.
    pub fn handle_body_consumed(&mut self, id: RequestId, n: usize, now: Time) {
        let now = self.advance(now);
        if let Some(key) = self.receiving(id) {
            if let Some(bufs) = self.conns[key].bufs.as_mut() {
                let n = n.min(bufs.body.len());
                bufs.body.drain(..n);
            }
            self.process_input(key, now);
            // After its client's FIN, a body found short ends the connection.
            if self.conns.contains(key) {
                self.settle(key, now);
                self.resume_reading_if_paused(key);
            }
        }
        self.finish_input();
    }

    /// Input: the application begins to read the body of request `id`. A
    /// client waiting on `Expect: 100-continue` is told to send it now, not
    /// before (so a request answered without its body costs no upload).
    pub fn handle_body_wanted(&mut self, id: RequestId, now: Time) {
        let now = self.advance(now);
        if let Some(key) = self.receiving(id) {
            let conn = &mut self.conns[key];
            if let State::Receiving {
                head,
                body_asked,
                done: false,
                ..
            } = &mut conn.state
            {
                let bufs = conn
                    .bufs
                    .as_mut()
                    .expect("a request being read has buffers");
                let nothing_arrived = conn.received - bufs.log.began_offset == head.len as u64;
                let first_ask = !std::mem::replace(body_asked, true);
                if first_ask {
                    bufs.body_asked_at = now;
                }
                if head.expect_continue && first_ask {
                    // Its body is due from now: the timer starts.
                    bufs.body_progress_at = now;
                    if nothing_arrived {
                        if bufs.pending_out() == 0 {
                            bufs.write_progress_at = now;
                        }
                        bufs.out.extend_from_slice(CONTINUE);
                        conn.sent_any = true;
                        self.queue_transmit(key);
                    }
                    self.settle(key, now);
                }
            }
        }
        self.finish_input();
    }

    /// The connection of request `id`, if its body streams.
    fn receiving(&self, id: RequestId) -> Option<usize> {
        let key = self.key_of(id.conn)?;
        match self.conns[key].state {
            State::Receiving { seq, .. } if seq == id.seq => Some(key),
            _ => None,
        }
    }

    /// Input: the application answers request `id` with `status` and
    /// `headers`, and will stream the body with
    /// [`handle_stream_data`](Self::handle_stream_data) and end it with
    /// [`handle_stream_end`](Self::handle_stream_end).
    ///
    /// Framing is core's: `Content-Length` for a [`BodyLength::Known`] body,
    /// otherwise `Transfer-Encoding: chunked` to an HTTP/1.1 client and a
    /// body ended by the close to an HTTP/1.0 one (never chunked). `HEAD`,
    /// 204 and 304 send no body. An invalid status or header is answered with
    /// 500, as in [`handle_response`](Self::handle_response).
    pub fn handle_stream_start<H, N, V>(
        &mut self,
        id: RequestId,
        status: u16,
        headers: H,
        length: BodyLength,
        now: Time,
    ) -> Result<(), RespondError>
    where
        H: IntoIterator<Item = (N, V)>,
        N: AsRef<[u8]>,
        V: AsRef<[u8]>,
    {
        let now = self.advance(now);
        let (key, turn) = self.waiting(id).ok_or(RespondError::UnknownRequest)?;
        let result = self.start_stream(key, turn, status, headers, length, now);
        if result.is_err() {
            self.respond_internal_error(key, turn, now);
        }
        self.finish_input();
        result
    }

    /// Starts the stream answering a request connection `key` has handed
    /// over; one whose `turn` has not come is parked, and takes body bytes
    /// from its turn on ([`Event::StreamWritable`] says when).
    fn start_stream<H, N, V>(
        &mut self,
        key: usize,
        turn: Turn,
        status: u16,
        headers: H,
        length: BodyLength,
        now: Time,
    ) -> Result<(), RespondError>
    where
        H: IntoIterator<Item = (N, V)>,
        N: AsRef<[u8]>,
        V: AsRef<[u8]>,
    {
        let (head, seq, len, end) = self.answering(key, turn);
        let mut close = self.close_after(key, &head, end);
        let has_body = status_has_body(status);
        let framing = match length {
            _ if !has_body || head.is_head_method => StreamFraming::Bodiless,
            BodyLength::Known(n) => StreamFraming::Length(n),
            BodyLength::Unknown if head.minor_version == 1 => StreamFraming::Chunked,
            BodyLength::Unknown => {
                close = close.or(Some(CloseReason::CloseDelimited));
                StreamFraming::CloseDelimited
            }
        };
        let head_framing = Framing {
            date_line: &self.date_line,
            content_length: match length {
                BodyLength::Known(n) if has_body => Some(n),
                _ => None,
            },
            chunked: has_body && length == BodyLength::Unknown && head.minor_version == 1,
            connection: connection_header(close, head.minor_version),
        };
        let conn = &mut self.conns[key];
        let bufs = conn
            .bufs
            .as_mut()
            .expect("a dispatched request has buffers");
        let stream = |began_at| Stream {
            seq,
            status,
            framing,
            sent: 0,
            began_at,
            started_at: now,
            close,
            blocked: false,
        };
        if let Turn::Ahead(index) = turn {
            let mut bytes = self.pool.take_answer();
            write_head(
                &mut bytes,
                status,
                headers,
                &head_framing,
                &mut self.head_start,
            )?;
            let ahead = bufs.ahead.get_mut(index);
            ahead.answer = Some(Parked::Stream {
                head: bytes,
                stream: stream(ahead.log.began_at),
            });
            return Ok(());
        }
        let was_idle = bufs.pending_out() == 0;
        write_head(
            &mut bufs.out,
            status,
            headers,
            &head_framing,
            &mut self.head_start,
        )?;
        let stream = stream(bufs.log.began_at);
        bufs.let_go_of_request(len);
        if was_idle {
            bufs.write_progress_at = now;
        }
        conn.sent_any = true;
        self.enter(key, State::Streaming(stream), now);
        self.queue_transmit(key);
        Ok(())
    }

    /// Output: how many body bytes the stream of request `id` may take now
    /// (0 for no such stream). Back-pressure: at most
    /// `max_stream_buffer_bytes` wait to be written per connection.
    #[must_use]
    pub fn stream_room(&self, id: RequestId) -> usize {
        self.streaming(id).map_or(0, |key| self.room(key))
    }

    fn room(&self, key: usize) -> usize {
        self.config
            .max_stream_buffer_bytes
            .saturating_sub(self.conns[key].pending_out())
    }

    /// The connection of request `id`, if its response is streaming.
    fn streaming(&self, id: RequestId) -> Option<usize> {
        let key = self.key_of(id.conn)?;
        match &self.conns[key].state {
            State::Streaming(stream) if stream.seq == id.seq => Some(key),
            _ => None,
        }
    }

    /// Input: a piece of the streamed body of request `id`. Core takes as
    /// much as [`stream_room`](Self::stream_room) allows and returns how
    /// many bytes it took; when that is fewer than offered, it emits
    /// [`Event::StreamWritable`] once there is room again.
    pub fn handle_stream_data(
        &mut self,
        id: RequestId,
        data: &[u8],
        now: Time,
    ) -> Result<usize, StreamError> {
        let now = self.advance(now);
        let result = match (self.streaming(id), self.parked_stream(id)) {
            (Some(key), _) => self.stream_data(key, data, now),
            (None, Some((key, index))) => self.parked_stream_data(key, index, data.len(), now),
            (None, None) => Err(StreamError::UnknownStream),
        };
        self.finish_input();
        result
    }

    /// The id of connection `key`, and the answer parked for the request
    /// at `index` among those it handed ahead.
    fn parked_answer(&mut self, key: usize, index: usize) -> (ConnId, &mut Option<Parked>) {
        let id = self.id_of(key);
        let bufs = self.conns[key]
            .bufs
            .as_mut()
            .expect("a request ahead has buffers");
        (id, &mut bufs.ahead.get_mut(index).answer)
    }

    /// A piece of a stream parked until its turn, `len` bytes long: taken
    /// as by a stream with no room — none of it (the application hears of
    /// room at its turn), unless there is no body to send (then all), or it
    /// breaks a declared length.
    fn parked_stream_data(
        &mut self,
        key: usize,
        index: usize,
        len: usize,
        now: Time,
    ) -> Result<usize, StreamError> {
        let (id, answer) = self.parked_answer(key, index);
        let Some(Parked::Stream { head, stream }) = answer else {
            unreachable!("checked by the caller");
        };
        match stream.framing {
            StreamFraming::Bodiless => {
                stream.sent += len as u64;
                Ok(len)
            }
            StreamFraming::Length(declared) if stream.sent + len as u64 > declared => {
                *answer = Some(broken(id, head, stream, now));
                Err(StreamError::LengthMismatch)
            }
            _ => {
                // Told at its turn ([`Event::StreamWritable`]).
                stream.blocked |= len > 0;
                Ok(0)
            }
        }
    }

    fn stream_data(&mut self, key: usize, data: &[u8], now: Time) -> Result<usize, StreamError> {
        let room = self.room(key);
        let conn = &mut self.conns[key];
        let State::Streaming(stream) = &mut conn.state else {
            unreachable!("checked by the caller");
        };
        let bufs = conn
            .bufs
            .as_mut()
            .expect("a streaming response has buffers");
        let was_idle = bufs.pending_out() == 0;
        let taken = match stream.framing {
            StreamFraming::Bodiless => data.len(),
            StreamFraming::Length(declared) => {
                if stream.sent + data.len() as u64 > declared {
                    self.fail_stream(key, now);
                    return Err(StreamError::LengthMismatch);
                }
                let n = data.len().min(room);
                bufs.out.extend_from_slice(&data[..n]);
                n
            }
            StreamFraming::CloseDelimited => {
                let n = data.len().min(room);
                bufs.out.extend_from_slice(&data[..n]);
                n
            }
            StreamFraming::Chunked => {
                let n = data.len().min(room.saturating_sub(chunk_overhead(room)));
                if n > 0 {
                    write_chunk(&mut bufs.out, &data[..n]);
                }
                n
            }
        };
        stream.sent += taken as u64;
        stream.blocked |= taken < data.len();
        if was_idle && bufs.pending_out() > 0 {
            bufs.write_progress_at = now;
        }
        self.settle(key, now);
        self.queue_transmit(key);
        Ok(taken)
    }

    /// Input: the streamed body of request `id` is complete; `trailers`
    /// follow a chunked body (and are dropped otherwise). A body shorter than
    /// its declared length closes the connection.
    pub fn handle_stream_end<H, N, V>(
        &mut self,
        id: RequestId,
        trailers: H,
        now: Time,
    ) -> Result<(), StreamError>
    where
        H: IntoIterator<Item = (N, V)>,
        N: AsRef<[u8]>,
        V: AsRef<[u8]>,
    {
        let now = self.advance(now);
        let result = match (self.streaming(id), self.parked_stream(id)) {
            (Some(key), _) => self.end_stream(key, trailers, now),
            (None, Some((key, index))) => self.end_parked_stream(key, index, trailers, now),
            (None, None) => Err(StreamError::UnknownStream),
        };
        self.finish_input();
        result
    }

    /// The connection of request `id`, and its index among the requests
    /// handed ahead, if its streamed answer is parked until its turn.
    fn parked_stream(&self, id: RequestId) -> Option<(usize, usize)> {
        let key = self.key_of(id.conn)?;
        let index = self.conns[key].bufs.as_ref()?.ahead.parked_stream(id.seq)?;
        Some((key, index))
    }

    /// Ends a stream parked until its turn, which took no body bytes: it
    /// becomes a whole response, parked like one. An end short of a
    /// declared length breaks it, as a stream's would at its turn.
    fn end_parked_stream<H, N, V>(
        &mut self,
        key: usize,
        index: usize,
        trailers: H,
        now: Time,
    ) -> Result<(), StreamError>
    where
        H: IntoIterator<Item = (N, V)>,
        N: AsRef<[u8]>,
        V: AsRef<[u8]>,
    {
        let (id, answer) = self.parked_answer(key, index);
        let Some(Parked::Stream { head, stream }) = answer else {
            unreachable!("checked by the caller");
        };
        match stream.framing {
            StreamFraming::Length(declared) if stream.sent < declared => {
                *answer = Some(broken(id, head, stream, now));
                return Err(StreamError::LengthMismatch);
            }
            StreamFraming::Chunked => {
                write_last_chunk(head, trailers).map_err(|_| StreamError::InvalidTrailer)?;
            }
            _ => {}
        }
        *answer = Some(Parked::Whole {
            bytes: std::mem::take(head),
            tail: Bytes::new(),
            finished: stream.finished(id, Outcome::Complete, now),
            close: stream.close,
        });
        Ok(())
    }

    fn end_stream<H, N, V>(&mut self, key: usize, trailers: H, now: Time) -> Result<(), StreamError>
    where
        H: IntoIterator<Item = (N, V)>,
        N: AsRef<[u8]>,
        V: AsRef<[u8]>,
    {
        let id = self.id_of(key);
        let conn = &mut self.conns[key];
        let State::Streaming(stream) = &conn.state else {
            unreachable!("checked by the caller");
        };
        let stream = stream.clone();
        let bufs = conn
            .bufs
            .as_mut()
            .expect("a streaming response has buffers");
        match stream.framing {
            StreamFraming::Length(declared) if stream.sent < declared => {
                self.fail_stream(key, now);
                return Err(StreamError::LengthMismatch);
            }
            StreamFraming::Chunked => {
                if bufs.pending_out() == 0 {
                    bufs.write_progress_at = now;
                }
                write_last_chunk(&mut bufs.out, trailers)
                    .map_err(|_| StreamError::InvalidTrailer)?;
            }
            _ => {}
        }
        bufs.response_queued(stream.finished(id, Outcome::Complete, now));
        // Written already: the connection was busy until now, so its next
        // wait starts now (and joins its timer list in order).
        if bufs.pending_out() == 0 {
            conn.last_active = now;
        }
        let next = match stream.close {
            Some(reason) => State::Closing { reason },
            None => State::Idle,
        };
        self.enter(key, next, now);
        self.queue_transmit(key);
        // Everything may be written already: finish the response now.
        self.output_progress(key, now);
        Ok(())
    }

    /// The application broke the declared length of connection `key`'s
    /// stream (too many bytes, or an end short of it). The request fails,
    /// and the connection closes once what was queued is written: the
    /// responses before this one still reach the client whole, this one as
    /// far as it went (cut short of its `Content-Length`, so the client can
    /// tell), and nothing follows it.
    fn fail_stream(&mut self, key: usize, now: Time) {
        let id = self.id_of(key);
        let conn = &mut self.conns[key];
        let State::Streaming(stream) = &conn.state else {
            unreachable!("checked by the caller");
        };
        let bufs = conn
            .bufs
            .as_mut()
            .expect("a streaming response has buffers");
        let reason = CloseReason::StreamMismatch;
        bufs.response_queued(stream.finished(id, Outcome::Unfinished(reason), now));
        self.enter(key, State::Closing { reason }, now);
        self.queue_transmit(key);
        // Everything may be written already: close now.
        self.output_progress(key, now);
    }

    /// Input: the application accepts the upgrade request `id` asked for
    /// (`Connection: upgrade` with an `Upgrade` field): core queues `101
    /// Switching Protocols` with `Connection: Upgrade` and `headers` (which
    /// should name the protocol in `Upgrade`), and once it is written emits
    /// [`Event::Upgraded`]: the connection has left HTTP. A request that did
    /// not ask to upgrade, or an invalid header, is answered with 500.
    pub fn handle_upgrade<H, N, V>(
        &mut self,
        id: RequestId,
        headers: H,
        now: Time,
    ) -> Result<(), RespondError>
    where
        H: IntoIterator<Item = (N, V)>,
        N: AsRef<[u8]>,
        V: AsRef<[u8]>,
    {
        let now = self.advance(now);
        let (key, turn) = self.waiting(id).ok_or(RespondError::UnknownRequest)?;
        // No upgrade is handed ahead of its turn.
        let result = match turn {
            Turn::Now => self.switch(key, headers, now),
            Turn::Ahead(_) => Err(RespondError::NotAnUpgrade),
        };
        if result.is_err() {
            self.respond_internal_error(key, turn, now);
        }
        self.finish_input();
        result
    }

    fn switch<H, N, V>(&mut self, key: usize, headers: H, now: Time) -> Result<(), RespondError>
    where
        H: IntoIterator<Item = (N, V)>,
        N: AsRef<[u8]>,
        V: AsRef<[u8]>,
    {
        let id = self.id_of(key);
        let State::Dispatched { head, seq, len } = self.conns[key].state else {
            // A request whose body still streams cannot switch protocols.
            return Err(RespondError::NotAnUpgrade);
        };
        if !head.upgrade {
            return Err(RespondError::NotAnUpgrade);
        }
        let conn = &mut self.conns[key];
        let framing = Framing {
            date_line: &self.date_line,
            content_length: None,
            chunked: false,
            connection: ConnectionHeader::Upgrade,
        };
        let bufs = conn
            .bufs
            .as_mut()
            .expect("a dispatched request has buffers");
        if bufs.pending_out() == 0 {
            bufs.write_progress_at = now;
        }
        write_head(&mut bufs.out, 101, headers, &framing, &mut self.head_start)?;
        bufs.response_queued(Finished {
            conn: id,
            request: Some(RequestId { conn: id, seq }),
            status: Some(101),
            body_bytes: 0,
            outcome: Outcome::Complete,
            began_at: bufs.log.began_at,
            responded_at: Some(now),
            finished_at: now,
            keeps_connection: false,
        });
        // What follows the request is the new protocol's: it stays.
        bufs.let_go_of_request(len);
        conn.sent_any = true;
        self.enter(key, State::Switching, now);
        self.queue_transmit(key);
        Ok(())
    }

    /// The `101` is written: the connection leaves HTTP.
    pub(crate) fn upgraded(&mut self, key: usize, now: Time) {
        self.enter(key, State::Upgraded, now);
        let id = self.id_of(key);
        self.events.push_back(Event::Upgraded(id));
        if let Some(drain) = self.lifecycle.drain_mut() {
            drain.report.upgraded_open += 1;
            self.events.push_back(Event::StopUpgraded(id));
        }
    }

    /// Output: the bytes that arrived after the upgrade request, which
    /// belong to the new protocol; empty after the first call and for
    /// connections that did not upgrade.
    pub fn take_upgraded_input(&mut self, conn: ConnId) -> Vec<u8> {
        let Some(key) = self.key_of(conn) else {
            return Vec::new();
        };
        let conn = &mut self.conns[key];
        if !matches!(conn.state, State::Upgraded) {
            return Vec::new();
        }
        let Some(mut bufs) = conn.bufs.take() else {
            return Vec::new();
        };
        let input = bufs.input.take();
        self.pool.give(bufs);
        input
    }

    /// Input: the application closed upgraded connection `conn` (or it
    /// failed). Core forgets it, and the drain no longer waits for it.
    pub fn handle_upgraded_closed(&mut self, conn: ConnId, now: Time) {
        self.advance(now);
        if let Some(key) = self.key_of(conn) {
            if matches!(self.conns[key].state, State::Upgraded) {
                self.close_now(key, CloseReason::UpgradedClosed);
            }
        }
        self.finish_input();
    }
}

/// A stream parked until its turn (on connection `id`, with `head`) that
/// broke its declared length: at its turn its head goes out, cut short of
/// the length so the client can tell, and the connection closes, as a
/// stream broken at its turn would.
fn broken(id: ConnId, head: &mut Vec<u8>, stream: &Stream, now: Time) -> Parked {
    let reason = CloseReason::StreamMismatch;
    Parked::Whole {
        bytes: std::mem::take(head),
        tail: Bytes::new(),
        finished: stream.finished(id, Outcome::Unfinished(reason), now),
        close: Some(reason),
    }
}
