//! The reading side of a connection: bytes in, through head and body, to a
//! request handed to the application — or a rejection.

use std::collections::VecDeque;

use crate::chunked::ChunkedLimits;
use crate::close::CloseReason;
use crate::config::Config;
use crate::conn::{BodyProgress, Buffers, State};
use crate::finished::{Finished, Outcome, RequestLog};
use crate::parse::{parse_head, Framing, Head, HeadScan};
use crate::reject::{Malformed, Reject};
use crate::request::RequestId;
use crate::response::{write_rejection, CONTINUE};
use crate::server::{Event, Server};
use crate::time::Time;

impl Server {
    /// Takes bytes received on connection `key`.
    pub(crate) fn receive(&mut self, key: usize, bytes: &[u8], now: Time) {
        let conn = &mut self.conns[key];
        conn.received += bytes.len() as u64;
        match &mut conn.state {
            State::Lingering { discarded, .. } => {
                *discarded += bytes.len() as u64;
                if *discarded > self.config.max_linger_bytes {
                    self.close_now(key, CloseReason::LingerOverflow);
                }
                return;
            }
            // Input after a closing response is never read, and an upgraded
            // connection's input is the application's.
            State::Closing { .. } | State::Upgraded => return,
            State::Body { .. } | State::Receiving { done: false, .. } => {
                let log = conn.bufs.as_ref().map(|b| b.log).unwrap_or_default();
                let bytes = conn.received - log.began_offset;
                // A body held back for a `100 Continue` is timed from when
                // the application asked for it.
                let since = match (&conn.state, &conn.bufs) {
                    (
                        State::Receiving {
                            head,
                            body_asked: true,
                            ..
                        },
                        Some(bufs),
                    ) if head.expect_continue => bufs.body_asked_at,
                    _ => log.began_at,
                };
                if self.too_slow(since, bytes, now) {
                    return self.reject(key, Reject::BodyTooSlow, now);
                }
                self.progress(key, now);
            }
            _ => {}
        }
        let conn = &mut self.conns[key];
        let bufs = conn.bufs.get_or_insert_with(|| self.pool.take());
        bufs.input.extend(bytes);
        self.process_input(key, now);
        // Bytes can come after core paused reading (the driver read them
        // first): if they begin a head, its timer runs, so the pause that
        // held back pipelined requests behind unread responses is over.
        self.resume_reading_if_paused(key);
    }

    /// Advances connection `key` through the input it has buffered, as far as
    /// it can go without the application.
    pub(crate) fn process_input(&mut self, key: usize, now: Time) {
        loop {
            let conn = &mut self.conns[key];
            match &mut conn.state {
                State::Idle => {
                    let Some(bufs) = conn.bufs.as_mut() else {
                        break;
                    };
                    if bufs.input.is_empty() {
                        if bufs.pending_out() == 0 {
                            let bufs = conn.bufs.take().expect("checked above");
                            self.pool.give(bufs);
                        }
                        break;
                    }
                    // The next pipelined request waits while a large body is
                    // being written (it goes out as its own slice, after which
                    // nothing can be queued) or while the client leaves too
                    // many responses unread.
                    if !bufs.out_tail.is_empty()
                        || bufs.pending_out() > self.config.max_pipelined_bytes
                    {
                        break;
                    }
                    // A request handed ahead of its turn: the turn came.
                    if !bufs.ahead.is_empty() {
                        self.take_turn(key, now);
                        continue;
                    }
                    // A request begins with its first byte, even an empty
                    // line before its request line: the header timeout bounds
                    // a client that sends nothing but empty lines. A head
                    // that arrived whole is parsed at once and never waits
                    // in `Head`.
                    let began_offset = conn.received - bufs.input.len() as u64;
                    bufs.log = RequestLog::begun(now, began_offset);
                    let mut scan = HeadScan::default();
                    match next_head(bufs, &mut scan, &self.config) {
                        Ok(Some(head)) => self.head_complete(key, head, now),
                        Ok(None) => {
                            self.enter(key, State::Head { scan }, now);
                            break;
                        }
                        Err(reject) => {
                            self.reject(key, reject, now);
                            break;
                        }
                    }
                }
                State::Head { scan } => {
                    let bufs = conn
                        .bufs
                        .as_mut()
                        .expect("a request being read has buffers");
                    match next_head(bufs, scan, &self.config) {
                        Ok(None) => break,
                        Ok(Some(head)) => self.head_complete(key, head, now),
                        Err(reject) => {
                            self.reject(key, reject, now);
                            break;
                        }
                    }
                }
                State::Body { .. } => {
                    if !self.read_body(key, now) {
                        break;
                    }
                }
                State::Receiving { done: false, .. } => {
                    self.read_streamed_body(key, now);
                    break;
                }
                State::Dispatched { len, .. } => {
                    let len = *len;
                    if conn.buffered_input() > len {
                        self.note_input_behind(key);
                    }
                    break;
                }
                State::Receiving { .. }
                | State::Streaming(_)
                | State::Closing { .. }
                | State::Lingering { .. }
                | State::Switching
                | State::Upgraded => break,
            }
        }
        // An unfinished request will never be finished after the peer's FIN;
        // the responses already queued are written first. A streamed body
        // held back by a full buffer may yet be whole: the application reads
        // on, and the rest of the input moves up as it does.
        let conn = &self.conns[key];
        let never_finished = || match conn.state {
            State::Idle => conn.bufs.as_ref().map_or(true, |b| b.ahead.is_empty()),
            State::Head { .. } | State::Body { .. } => true,
            State::Receiving { done: false, .. } => {
                conn.bufs.as_deref().map_or(0, |b| b.body.len())
                    < self.config.max_stream_buffer_bytes
            }
            _ => false,
        };
        if conn.peer_eof && conn.pending_out() == 0 && never_finished() {
            self.close_now(key, CloseReason::ClientClosed);
        }
    }

    /// Reads the body of the request connection `key` is in `Body` for, and
    /// hands the request over once the body is whole. True if it was: the
    /// next pipelined request may follow.
    // Out of line, like `read_streamed_body`: inlined, the body paths make
    // `process_input` dearer for every request, bodiless ones included
    // (about 15 instructions per request).
    #[inline(never)]
    fn read_body(&mut self, key: usize, now: Time) -> bool {
        let conn = &mut self.conns[key];
        let State::Body { head, body } = &mut conn.state else {
            return false;
        };
        let head = *head;
        let bufs = conn
            .bufs
            .as_mut()
            .expect("a request being read has buffers");
        match body {
            BodyProgress::Length(n) => {
                let len = head.len + *n as usize;
                if bufs.input.len() < len {
                    return false;
                }
                self.dispatch(key, head, len, now);
            }
            BodyProgress::Chunked(decoder) => {
                let limits = ChunkedLimits {
                    max_body_bytes: self.config.max_body_bytes,
                    max_line_bytes: self.config.max_chunk_line_bytes,
                    max_trailer_bytes: self.config.max_trailer_bytes,
                };
                let decoded = decoder.decode(&bufs.input[head.len..], &mut bufs.body, &limits);
                let done = decoder.is_done();
                match decoded {
                    Ok(used) => {
                        // The raw chunked bytes are not needed once decoded.
                        bufs.input.remove(head.len..head.len + used);
                        if !done {
                            return false;
                        }
                        self.dispatch(key, head, head.len, now);
                    }
                    Err(e) => {
                        self.reject(key, chunked_reject(e), now);
                        return false;
                    }
                }
            }
        }
        true
    }

    /// Moves the arrived body bytes of the request connection `key` is in
    /// `Receiving` for into the stream buffer, as far as it has room, and
    /// tells the application.
    #[inline(never)]
    fn read_streamed_body(&mut self, key: usize, now: Time) {
        let conn = &mut self.conns[key];
        let State::Receiving {
            head,
            seq,
            body,
            done: false,
            ..
        } = &mut conn.state
        else {
            return;
        };
        let (head, seq) = (*head, *seq);
        let bufs = conn
            .bufs
            .as_mut()
            .expect("a request being read has buffers");
        // At most the stream buffer waits for the application;
        // the rest stays unread (back-pressure).
        let room = self
            .config
            .max_stream_buffer_bytes
            .saturating_sub(bufs.body.len());
        let arrived = (bufs.input.len() - head.len).min(room);
        let before = bufs.body.len();
        let finished = match body {
            BodyProgress::Length(remaining) => {
                let n = arrived.min(usize::try_from(*remaining).unwrap_or(usize::MAX));
                bufs.body
                    .extend_from_slice(&bufs.input[head.len..head.len + n]);
                bufs.input.remove(head.len..head.len + n);
                *remaining -= n as u64;
                *remaining == 0
            }
            BodyProgress::Chunked(decoder) => {
                let limits = ChunkedLimits {
                    max_body_bytes: self.config.body_limit(),
                    max_line_bytes: self.config.max_chunk_line_bytes,
                    max_trailer_bytes: self.config.max_trailer_bytes,
                };
                let slice = &bufs.input[head.len..head.len + arrived];
                match decoder.decode(slice, &mut bufs.body, &limits) {
                    Ok(used) => {
                        bufs.input.remove(head.len..head.len + used);
                        decoder.is_done()
                    }
                    Err(e) => {
                        self.reject(key, chunked_reject(e), now);
                        return;
                    }
                }
            }
        };
        let grew = bufs.body.len() > before;
        // Told once the body has bytes to read, and at its end.
        if (grew && before == 0) || finished {
            let id = RequestId {
                conn: self.id_of(key),
                seq,
            };
            self.events.push_back(Event::BodyReady(id));
        }
        if finished {
            if let State::Receiving { done, .. } = &mut self.conns[key].state {
                *done = true;
            }
        }
        if grew || finished {
            // A full buffer stops the body clock; an end ends it.
            self.settle(key, now);
        }
    }

    fn head_complete(&mut self, key: usize, head: Head, now: Time) {
        let body = match head.framing {
            Framing::Empty => return self.dispatch(key, head, head.len, now),
            Framing::Length(n) => BodyProgress::Length(n),
            Framing::Chunked => BodyProgress::Chunked(Default::default()),
        };
        // After the client's FIN, the body there will ever be is buffered
        // already: it is read whole, and a request whose body is cut short is
        // never handed over (streamed, it would be handed over and closed in
        // the same breath, unreadable by the time the driver asked for it).
        if self.config.stream_request_bodies && !self.conns[key].peer_eof {
            // The application gets the request now and its body in pieces;
            // 100 Continue waits until it asks for the body.
            if let Some(bufs) = self.conns[key].bufs.as_mut() {
                bufs.body.clear();
            }
            let seq = self.conns[key].next_seq;
            let receiving = State::Receiving {
                head,
                seq,
                body,
                done: false,
                body_asked: false,
            };
            return self.hand_over(key, receiving, now);
        }
        let conn = &mut self.conns[key];
        let bufs = conn
            .bufs
            .as_mut()
            .expect("a request being read has buffers");
        bufs.body.clear();
        // 100 Continue only when the body is still to come (none comes after
        // the client's FIN) and will be read.
        if head.expect_continue && bufs.input.len() == head.len && !conn.peer_eof {
            bufs.out.extend_from_slice(CONTINUE);
            conn.sent_any = true;
            self.queue_transmit(key);
        }
        self.enter(key, State::Body { head, body }, now);
    }

    /// Whether a request begun at `since`, `bytes` long so far, arrives
    /// slower than `min_body_rate_bytes_per_sec` once its `body_rate_grace`
    /// has passed. Measured over the whole request, whose head is small.
    fn too_slow(&self, since: Time, bytes: u64, now: Time) -> bool {
        let rate = u128::from(self.config.min_body_rate_bytes_per_sec);
        let measured = (now - since).saturating_sub(self.config.body_rate_grace);
        rate > 0 && u128::from(bytes) < measured.as_millis() * rate / 1000
    }

    /// Hands a complete request, `len` input bytes long, to the application.
    #[inline]
    fn dispatch(&mut self, key: usize, head: Head, len: usize, now: Time) {
        let seq = self.conns[key].next_seq;
        self.hand_over(key, State::Dispatched { head, seq, len }, now);
    }

    /// Hands the request numbered `next_seq` to the application, entering
    /// `state` (`Dispatched`, or `Receiving` for a streamed body).
    #[inline]
    fn hand_over(&mut self, key: usize, state: State, now: Time) {
        let conn = &mut self.conns[key];
        let seq = conn.next_seq;
        conn.next_seq += 1;
        self.enter(key, state, now);
        let id = RequestId {
            conn: self.id_of(key),
            seq,
        };
        self.events.push_back(Event::Request(id));
    }

    /// Answers a bad request with its status and `Connection: close`, and
    /// stops reading requests on the connection.
    pub(crate) fn reject(&mut self, key: usize, reject: Reject, now: Time) {
        let id = self.id_of(key);
        let conn = &mut self.conns[key];
        let bufs = conn.bufs.get_or_insert_with(|| self.pool.take());
        bufs.input.clear();
        if bufs.pending_out() == 0 {
            bufs.write_progress_at = now;
        }
        let body_bytes = write_rejection(&mut bufs.out, &reject, &self.date_line);
        // A streamed body's request is the application's already, unless
        // it was handed over in this same input and the driver has not
        // taken its `Request` yet (its body, buffered behind the head, was
        // refused at once): then it is taken back whole, so the application
        // never meets a request it could not read or answer.
        let handed_over = bufs.log.dispatched.then(|| RequestId {
            conn: id,
            seq: conn.next_seq - 1,
        });
        let request = handed_over.filter(|&id| !retract_request(&mut self.events, id));
        bufs.response_queued(Finished {
            conn: id,
            request,
            status: Some(reject.status()),
            body_bytes,
            outcome: Outcome::Rejected(reject),
            began_at: bufs.log.began_at,
            responded_at: Some(now),
            finished_at: now,
            keeps_connection: false,
        });
        conn.sent_any = true;
        self.enter(
            key,
            State::Closing {
                reason: CloseReason::Rejected(reject),
            },
            now,
        );
        self.queue_transmit(key);
        self.resume_reading_if_paused(key);
    }

    pub(crate) fn wants_read_key(&self, key: usize) -> bool {
        let conn = &self.conns[key];
        if conn.peer_eof {
            return false;
        }
        let room = self.config.max_pipelined_bytes;
        match conn.state {
            // Pipelined input waits behind the request being answered (all
            // it buffers, the request included, is held to the room), or
            // behind unread responses; the head and body being read are
            // bounded by their own limits.
            State::Dispatched { .. } | State::Streaming(_) if conn.buffered_input() >= room => {
                false
            }
            // A streamed body is read while the application keeps up.
            State::Receiving { head, .. } => {
                let waiting = conn.bufs.as_deref().map_or(0, |b| b.body.len());
                waiting < self.config.max_stream_buffer_bytes
                    && conn.buffered_input() - head.len < room
            }
            State::Idle => conn.buffered_input() < room && conn.pending_out() <= room,
            // Input for the new protocol waits for the application.
            State::Switching => conn.buffered_input() < room,
            State::Upgraded => false,
            _ => true,
        }
    }

    /// Tells the driver to read again if core had paused it and now has room.
    #[inline]
    pub(crate) fn resume_reading_if_paused(&mut self, key: usize) {
        if self.conns.get(key).is_some_and(|c| c.read_paused.get()) && self.wants_read_key(key) {
            self.conns[key].read_paused.set(false);
            let id = self.id_of(key);
            self.events.push_back(Event::ResumeRead(id));
        }
    }
}

/// Removes the events that hand request `id` to the driver (its `Request`,
/// and any `BodyReady`) if it has not taken the `Request` yet; says
/// whether it had not. Rare (see [`Server::reject`]), so a scan.
fn retract_request(events: &mut VecDeque<Event>, id: RequestId) -> bool {
    let untaken = events.contains(&Event::Request(id));
    if untaken {
        events.retain(|e| !matches!(e, Event::Request(r) | Event::BodyReady(r) if *r == id));
    }
    untaken
}

/// Drops the empty lines before a request line (RFC 9112 §2.2: they are
/// ignored), then parses the head at the start of the input. Only a head's
/// first bytes can be blank, so the scan has not begun when any are dropped.
/// More than `max_head_bytes` of them are a head too large: a client sending
/// nothing else would otherwise keep a core reading until the header timeout.
fn next_head(
    bufs: &mut Buffers,
    scan: &mut HeadScan,
    config: &Config,
) -> Result<Option<Head>, Reject> {
    let blank = bufs
        .input
        .iter()
        .take_while(|&&b| b == b'\r' || b == b'\n')
        .count();
    bufs.input.consume(blank);
    scan.blank += blank;
    if scan.blank > config.max_head_bytes {
        return Err(Reject::HeadTooLarge);
    }
    if bufs.input.is_empty() {
        return Ok(None);
    }
    parse_head(&bufs.input, scan, config, &mut bufs.fields)
}

fn chunked_reject(e: crate::chunked::ChunkedError) -> Reject {
    use crate::chunked::ChunkedError;
    match e {
        ChunkedError::Malformed => Reject::Malformed(Malformed::ChunkedBody),
        ChunkedError::LineTooLong => Reject::Malformed(Malformed::ChunkLineTooLong),
        ChunkedError::BodyTooLarge => Reject::BodyTooLarge,
        ChunkedError::TrailersTooLarge => Reject::TrailersTooLarge,
    }
}
