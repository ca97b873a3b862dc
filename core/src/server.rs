//! The central type: [`Server`], its inputs, its outputs, and its contract.

use std::collections::VecDeque;

use slab::Slab;

use crate::close::CloseReason;
use crate::config::{Config, Timeouts};
use crate::conn::{Conn, Pool, State, UnreadAsk};
use crate::finished::Finished;
use crate::lifecycle::Lifecycle;
use crate::reject::Reject;
use crate::request::{ConnId, Request, RequestId};
use crate::response::HeadStart;
use crate::time::Time;
use crate::timers::{TimerKind, Timers};

/// Most idle connections [`Server::handle_fd_pressure`] closes at once.
const FD_PRESSURE_BATCH: usize = 32;

/// What the driver must do, pulled with [`Server::poll_event`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[must_use]
pub enum Event {
    /// A complete request is ready. Read it with [`Server::request`], answer
    /// it with [`Server::handle_response`] — now or later. Several requests
    /// of one pipelining connection may be out at once (up to
    /// `max_pipelined_requests`); answer them in any order: their responses
    /// leave in request order.
    Request(RequestId),
    /// The connection has bytes to write: call [`Server::transmit`], write
    /// them, report with [`Server::handle_sent`]. Write again when the socket
    /// becomes writable while `transmit` is not empty.
    Transmit(ConnId),
    /// A request whose body streams (`stream_request_bodies`) has body bytes
    /// to read, or its body ended: see [`Server::request_body`].
    BodyReady(RequestId),
    /// A streamed response that was given less room than offered may take
    /// more now: see [`Server::stream_room`].
    StreamWritable(RequestId),
    /// The connection has left HTTP (its `101` is written): hand its socket
    /// and [`Server::take_upgraded_input`] to the application, stop reading
    /// and writing it here, and report its end with
    /// [`Server::handle_upgraded_closed`].
    Upgraded(ConnId),
    /// The drain began: tell the application owning this upgraded
    /// connection to wind it down; the deadline closes it otherwise.
    StopUpgraded(ConnId),
    /// Say with [`Server::handle_unread`] how many bytes the connection's
    /// socket holds that core has not read (`FIONREAD`), before the next
    /// input. Asked as the drain begins (or as the connection is accepted
    /// during it), when its client sent them before the drain, so the
    /// requests in them are answered like those core had read — they may
    /// have waited unread behind a response, or for a readiness not yet
    /// seen; and before a timer closes an idle connection, which it does
    /// only once nothing waits there. (A driver that cannot tell answers 0:
    /// then only what core had read is owed, and a request that reached
    /// the socket just before a close may be lost.)
    CountUnread(ConnId),
    /// Core had asked the driver to stop reading this connection
    /// ([`Server::wants_read`] was false); read it again now.
    ResumeRead(ConnId),
    /// Shut down the write half of the connection (FIN); keep reading it.
    /// The reason says why core is ending the connection.
    HalfClose(ConnId, CloseReason),
    /// Close the connection's socket. Its id is dead from now on.
    Close(ConnId, CloseReason),
    /// Write these bytes to the connection once, if the socket takes them
    /// now, without waiting; the `Close` that follows ends it. A request
    /// still arriving when the drain deadline cut it hears `503` with
    /// `Connection: close` and `Retry-After`, so its client may retry
    /// elsewhere. (Read and discard what the socket holds before closing,
    /// or the close resets the connection and may destroy these bytes.)
    Farewell(ConnId, &'static [u8]),
    /// Accept connections until accepting would block, calling
    /// [`Server::handle_accept`] for each, then call
    /// [`Server::handle_backlog_empty`].
    DrainBacklog,
    /// Close the listening socket: new connections are refused or go to a
    /// sibling `SO_REUSEPORT` instance.
    CloseListener,
    /// A request ended: its response was completely handed over, or it never
    /// will be. One per request core began, for access logs and metrics;
    /// nothing needs doing.
    Finished(Finished),
    /// The drain is over: every connection has been closed. Stop the loop;
    /// [`Server::exit_report`] says what happened in the drain. (The report
    /// stays in the server: carried here it would make every event, several
    /// per request, as large as itself.)
    Exit,
}

/// The sans-IO HTTP/1.1 server: every protocol and lifecycle decision, with
/// no sockets, no threads and no clock.
///
/// # Contract for a driver
///
/// **Inputs** are the `handle_*` methods. Each takes `now`; time never runs
/// backwards inside core (an earlier `now` counts as the latest seen).
///
/// - A connection was accepted: [`handle_accept`](Self::handle_accept) gives
///   its [`ConnId`]. Start reading it at once.
/// - Bytes arrived: [`handle_recv`](Self::handle_recv). Read until the socket
///   is empty (it would block; with edge-triggered readiness a read that
///   filled less than its buffer says so too, unless the peer's close was
///   reported, which no later edge repeats), but check
///   [`wants_read`](Self::wants_read) before each read; when it is false,
///   stop until [`Event::ResumeRead`].
/// - The peer sent FIN: [`handle_peer_eof`](Self::handle_peer_eof). A reset,
///   or any read or write error: [`handle_aborted`](Self::handle_aborted).
/// - Bytes from [`transmit`](Self::transmit) were written:
///   [`handle_sent`](Self::handle_sent) with the count.
/// - The application answered: [`handle_response`](Self::handle_response);
///   it will never answer (it panicked, or dropped its answer):
///   [`handle_app_failure`](Self::handle_app_failure).
/// - Stop was requested: [`handle_terminate`](Self::handle_terminate).
/// - Accepting failed for want of file descriptors:
///   [`handle_fd_pressure`](Self::handle_fd_pressure).
/// - Accept would block after [`Event::DrainBacklog`]:
///   [`handle_backlog_empty`](Self::handle_backlog_empty).
/// - After [`Event::CountUnread`], the bytes the socket holds unread
///   (`FIONREAD`): [`handle_unread`](Self::handle_unread).
/// - The deadline from [`poll_timeout`](Self::poll_timeout) passed:
///   [`handle_timeout`](Self::handle_timeout) (calling it early is harmless).
///
/// **Outputs**: after every input, call [`poll_event`](Self::poll_event) until
/// it returns `None` and carry out each [`Event`] in order; then call
/// [`poll_timeout`](Self::poll_timeout) and wake no later than it says.
/// Keep a `Date` value fresh with [`set_date`](Self::set_date) (once a second).
///
/// Ids of closed connections and answered requests may still reach core from
/// a racing driver; such inputs are ignored.
pub struct Server {
    pub(crate) config: Config,
    /// `config`'s timeouts, as connection deadlines add them.
    pub(crate) timeouts: Timeouts,
    pub(crate) conns: Slab<Conn>,
    pub(crate) timers: Timers,
    pub(crate) pool: Pool,
    pub(crate) events: VecDeque<Event>,
    /// Connections with an active request; checked against a recount.
    pub(crate) active: usize,
    pub(crate) now: Time,
    pub(crate) lifecycle: Lifecycle,
    /// The `Date` field of every response, whole (`Date: …` and its CRLF),
    /// so writing a head copies it once.
    pub(crate) date_line: Vec<u8>,
    pub(crate) head_start: HeadStart,
    /// Connections whose dispatched request has pipelined input behind it.
    /// Once the driver has carried out every event and the request still
    /// waits for its answer, the complete requests behind it are handed
    /// over too (see `ahead.rs`); a request answered at once (most are)
    /// costs nothing of that.
    pub(crate) hand_ahead: Vec<ConnId>,
    next_generation: u32,
}

impl Server {
    /// A server in the `Serving` phase, with no connections.
    pub fn new(config: Config) -> Server {
        Server {
            timeouts: Timeouts::new(&config),
            config,
            conns: Slab::new(),
            timers: Timers::default(),
            pool: Pool::default(),
            events: VecDeque::new(),
            active: 0,
            now: Time::ZERO,
            lifecycle: Lifecycle::Serving,
            date_line: b"Date: Thu, 01 Jan 1970 00:00:00 GMT\r\n".to_vec(),
            head_start: HeadStart::default(),
            hand_ahead: Vec::new(),
            next_generation: 0,
        }
    }

    /// The configuration this server was made with.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Sets the value of the `Date` header of every response from now on (an
    /// IMF-fixdate such as `Sun, 06 Nov 1994 08:49:37 GMT`).
    pub fn set_date(&mut self, date: &str) {
        self.date_line.clear();
        self.date_line.extend_from_slice(b"Date: ");
        self.date_line.extend_from_slice(date.as_bytes());
        self.date_line.extend_from_slice(b"\r\n");
        self.head_start.forget();
    }

    /// Input: a connection was accepted. Returns the id core will use for it.
    pub fn handle_accept(&mut self, now: Time) -> ConnId {
        let now = self.advance(now);
        let generation = self.next_generation;
        self.next_generation = self.next_generation.wrapping_add(1);
        let key = self.conns.insert(Conn::new(generation, now));
        let id = self.id_of(key);
        match &mut self.lifecycle {
            Lifecycle::Exited(_) => self.close_now(key, CloseReason::AfterExit),
            Lifecycle::Draining(drain) => {
                if !drain.listener_closed() {
                    drain.report.backlog_accepted += 1;
                }
                let conn = &mut self.conns[key];
                conn.received_before_drain = Some(0);
                conn.unread_asked = Some(UnreadAsk::Drain);
                // What its client sent from the backlog is owed too.
                self.events.push_back(Event::CountUnread(id));
                self.settle(key, now);
            }
            Lifecycle::Serving | Lifecycle::PreStop { .. } => self.settle(key, now),
        }
        self.finish_input();
        id
    }

    /// Input: bytes arrived on `conn`. Core keeps what it needs; the slice can
    /// be reused at once.
    pub fn handle_recv(&mut self, conn: ConnId, bytes: &[u8], now: Time) {
        let now = self.advance(now);
        if let Some(key) = self.key_of(conn) {
            if !bytes.is_empty() && !self.conns[key].peer_eof {
                self.receive(key, bytes, now);
            }
        }
        self.finish_input();
    }

    /// Input: the peer shut down its write half (a read returned 0).
    pub fn handle_peer_eof(&mut self, conn: ConnId, now: Time) {
        self.advance(now);
        if let Some(key) = self.key_of(conn) {
            let c = &mut self.conns[key];
            c.peer_eof = true;
            match c.state {
                // The FIN the linger waited for.
                State::Lingering { reason, .. } => self.close_now(key, reason),
                // Nothing more can arrive: an unfinished request (a streamed
                // body too) never will be, once what is queued is written.
                State::Idle
                | State::Head { .. }
                | State::Body { .. }
                | State::Receiving { done: false, .. } => self.process_input(key, self.now),
                // Answer what was received; the close follows the response.
                // An upgraded connection's end is the application's to see.
                State::Receiving { .. }
                | State::Dispatched { .. }
                | State::Streaming(_)
                | State::Closing { .. }
                | State::Switching
                | State::Upgraded => {}
            }
        }
        self.finish_input();
    }

    /// Input: the connection failed — reset by the peer, or a read or write
    /// error. Whatever it was doing is abandoned.
    pub fn handle_aborted(&mut self, conn: ConnId, now: Time) {
        self.advance(now);
        if let Some(key) = self.key_of(conn) {
            self.close_now(key, CloseReason::Aborted);
        }
        self.finish_input();
    }

    /// Input: time has reached `now`; act on every deadline at or before it.
    pub fn handle_timeout(&mut self, now: Time) {
        let now = self.advance(now);
        // A request still arriving when the drain deadline cuts it hears the
        // farewell 503, written at once. A 408 its own timer queued in the
        // same pass would be cut unwritten with the rest: the client would
        // hear nothing. So when the deadline falls due now, the timers that
        // answer a request leave it to the deadline.
        let cut_now = matches!(self.lifecycle, Lifecycle::Draining(_))
            && self
                .lifecycle
                .deadline()
                .is_some_and(|deadline| deadline <= now);
        for kind in [
            TimerKind::Header,
            TimerKind::Body,
            TimerKind::Idle,
            TimerKind::FirstByte,
            TimerKind::Write,
            TimerKind::Linger,
        ] {
            if cut_now && matches!(kind, TimerKind::Header | TimerKind::Body) {
                continue;
            }
            while let Some(key) = self.timers.expired(&self.conns, kind, now) {
                self.on_timer(key, kind, now);
                // Each timer handled is moved or gone. One still first and
                // due is a bug in core: debug builds stop at it; a release
                // build leaves it due rather than spin here for ever, so
                // the driver keeps serving (and the simulator, which fails
                // a deadline still due after a hundred calls, reports it).
                if self.timers.expired(&self.conns, kind, now) == Some(key) {
                    debug_assert!(false, "a {kind:?} timer still due after it was handled");
                    break;
                }
            }
        }
        self.handle_phase_timeout(now);
        self.finish_input();
    }

    /// Input: the driver is short of file descriptors (accept failed with
    /// `EMFILE`/`ENFILE`). Core closes, cleanly, up to 32 of the keep-alive
    /// connections that have been idle longest (as nginx does), and returns
    /// how many it began to close. Each frees its descriptor once its client
    /// answers the half-close.
    pub fn handle_fd_pressure(&mut self, now: Time) -> usize {
        let now = self.advance(now);
        let mut closed = 0;
        while closed < FD_PRESSURE_BATCH {
            let Some(key) = self.timers.first(TimerKind::Idle) else {
                break;
            };
            self.close_cleanly(key, CloseReason::FdPressure, now);
            closed += 1;
        }
        self.finish_input();
        closed
    }

    /// Output: the next thing the driver must do.
    // Inlined: the driver calls it several times per request, and inlined
    // into its loop the event is matched where it is popped, not copied out
    // through a return slot first.
    #[must_use]
    #[inline]
    pub fn poll_event(&mut self) -> Option<Event> {
        // Every event carried out: requests still waiting hand over those
        // pipelined behind them (see `ahead.rs`). Almost always nothing
        // waits so, and that is tested first: one test per event.
        if !self.hand_ahead.is_empty() && self.events.is_empty() {
            self.hand_over_ahead();
        }
        // Returned as popped, so the event is copied once.
        let event = self.events.pop_front();
        if let Some(Event::Transmit(id)) = event {
            if let Some(key) = self.key_of(id) {
                self.conns[key].transmit_queued = false;
            }
        }
        event
    }

    /// Output: when to call [`handle_timeout`](Self::handle_timeout) next.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Time> {
        let conns = self.timers.earliest(&self.conns);
        match (conns, self.lifecycle.deadline()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The request `id`, while it waits for its response.
    pub fn request(&self, id: RequestId) -> Option<Request<'_>> {
        let conn = &self.conns[self.key_of(id.conn)?];
        let bufs = conn.bufs.as_deref()?;
        let (head, body) = match &conn.state {
            State::Dispatched { head, seq, len } if *seq == id.seq => match head.framing {
                crate::parse::Framing::Chunked => (head, &bufs.body[..]),
                _ => (head, &bufs.input[head.len..*len]),
            },
            // The body comes in pieces: see `request_body`.
            State::Receiving { head, seq, .. } if *seq == id.seq => (head, &[][..]),
            _ => {
                let index = bufs.ahead.waiting(id.seq)?;
                let ahead = bufs.ahead.get(index);
                let raw = &bufs.input[ahead.start..ahead.end()];
                return Some(Request {
                    raw,
                    head: &ahead.head,
                    fields: bufs.ahead.fields_of(ahead),
                    body: &raw[ahead.head.len..],
                });
            }
        };
        Some(Request {
            raw: &bufs.input,
            head,
            fields: &bufs.fields,
            body,
        })
    }

    /// Whether the driver should read `conn` now. False while enough pipelined
    /// input is buffered behind the request being answered, while the client
    /// leaves too many responses unread, after its FIN, and for closed ids.
    /// After a false, core emits [`Event::ResumeRead`] once reading may go on.
    #[must_use]
    pub fn wants_read(&self, conn: ConnId) -> bool {
        let Some(key) = self.key_of(conn) else {
            return false;
        };
        let wants = self.wants_read_key(key);
        // Once the driver is told no, core owes it a ResumeRead.
        if !wants {
            self.conns[key].read_paused.set(true);
        }
        wants
    }

    /// Requests begun and not yet completely handed to the driver.
    pub fn active_requests(&self) -> usize {
        self.active
    }

    /// Counts active requests from the connection table (O(connections)). Must
    /// always equal [`active_requests`](Self::active_requests).
    pub fn recount_active_requests(&self) -> usize {
        self.conns.iter().filter(|(_, c)| c.is_active()).count()
    }

    /// Open connections.
    pub fn connections(&self) -> usize {
        self.conns.len()
    }

    /// Moves core's clock to `now`, never backwards.
    // Inlined: every input begins with it, and it is two instructions.
    #[inline]
    pub(crate) fn advance(&mut self, now: Time) -> Time {
        self.now = self.now.max(now);
        self.now
    }

    // Inlined, like `key_of`: called several times per request, and the
    // call costs more than the lookup.
    #[inline]
    pub(crate) fn id_of(&self, key: usize) -> ConnId {
        ConnId {
            index: key as u32,
            generation: self.conns[key].generation,
        }
    }

    #[inline]
    pub(crate) fn key_of(&self, id: ConnId) -> Option<usize> {
        let key = id.index as usize;
        self.conns
            .get(key)
            .is_some_and(|c| c.generation == id.generation)
            .then_some(key)
    }

    /// The `kind` timer of connection `key` fell due at `now`. Core closes
    /// an idle connection only once the driver has said that its socket
    /// holds nothing unread: a request there, sent before the close, would
    /// be lost (with a driver that reads sockets in its own time, not only
    /// in a race of microseconds). At the drain deadline there is nothing
    /// to ask: it ends every connection.
    fn on_timer(&mut self, key: usize, kind: TimerKind, now: Time) {
        let deadline_due = self.lifecycle.drain().is_some_and(|d| d.deadline <= now);
        if kind.is_idle() && !deadline_due && self.conns[key].may_hold_unread() {
            let conn = &mut self.conns[key];
            conn.unread_asked = Some(UnreadAsk::Close);
            self.events.push_back(Event::CountUnread(self.id_of(key)));
            return self.settle(key, now);
        }
        self.close_for_timer(key, kind, now);
    }

    /// Closes connection `key`, whose `kind` timer fell due at `now`, as
    /// that timer closes.
    pub(crate) fn close_for_timer(&mut self, key: usize, kind: TimerKind, now: Time) {
        match kind {
            TimerKind::Header => self.reject(key, Reject::HeadTimeout, now),
            TimerKind::Body => self.reject(key, Reject::BodyTimeout, now),
            TimerKind::Idle => {
                let reason = if self.lifecycle.drain().is_some() {
                    CloseReason::IdleInDrain
                } else {
                    CloseReason::KeepAliveTimeout
                };
                self.close_cleanly(key, reason, now);
            }
            // Nothing was sent on it, so a plain close cannot destroy a response.
            TimerKind::FirstByte => {
                let reason = if self.lifecycle.drain().is_some() {
                    CloseReason::FirstByteGrace
                } else {
                    CloseReason::NewConnectionTimeout
                };
                self.close_now(key, reason);
            }
            TimerKind::Write => self.close_now(key, CloseReason::WriteStall),
            TimerKind::Linger => self.close_now(key, CloseReason::LingerTimeout),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conn::Buffers;
    use crate::lifecycle::Phase;
    use crate::report::DrainReport;
    use bytes::Bytes;

    /// Runs the driver's side until core has nothing to say: answers every
    /// request 200 and reports every transmit as written whole.
    fn pump(server: &mut Server) {
        while let Some(event) = server.poll_event() {
            match event {
                Event::Request(id) => server
                    .handle_response(
                        id,
                        200,
                        [("Content-Type", "text/plain")],
                        Bytes::from_static(b"ok"),
                        Time::ZERO,
                    )
                    .unwrap(),
                Event::Transmit(conn) => {
                    let n = server.transmit(conn).iter().map(|s| s.len()).sum();
                    server.handle_sent(conn, n, Time::ZERO);
                }
                _ => {}
            }
        }
    }

    /// A server with one idle keep-alive connection (key 0), after one
    /// answered request, and one lingering after a 400 (key 1).
    fn idle_and_lingering() -> Server {
        let mut server = Server::new(Config::default());
        let idle = server.handle_accept(Time::ZERO);
        server.handle_recv(idle, b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", Time::ZERO);
        let lingering = server.handle_accept(Time::ZERO);
        server.handle_recv(lingering, b"NOT HTTP\r\n\r\nmore", Time::ZERO);
        pump(&mut server);
        assert!(matches!(server.conns[0].state, State::Idle));
        assert!(matches!(server.conns[1].state, State::Lingering { .. }));
        server
    }

    #[test]
    fn a_consistent_server_passes_its_self_check() {
        assert_eq!(idle_and_lingering().check_invariants(), Ok(()));
    }

    #[test]
    fn the_self_check_notices_a_wrong_active_count() {
        let mut server = idle_and_lingering();
        server.active += 1;
        let err = server.check_invariants().unwrap_err();
        assert!(err.contains("active count 1 but recount 0"), "{err}");
    }

    #[test]
    fn the_self_check_reports_the_first_connection_s_first_fault() {
        let mut server = idle_and_lingering();
        server.conns[1].counted = true;
        assert_eq!(
            server.check_invariants(),
            Err("connection 1 is miscounted".to_owned())
        );
        // A fault of an earlier connection comes first, and of one
        // connection's faults its timer comes first.
        server.timers.clear(&mut server.conns, 0);
        server.conns[0].counted = true;
        assert_eq!(
            server.check_invariants(),
            Err("connection 0 in Idle has timer None, not Some((Idle, t+60.000000s))".to_owned())
        );
    }

    #[test]
    fn the_self_check_notices_buffers_held_while_idle_or_lingering() {
        for key in [0, 1] {
            let mut server = idle_and_lingering();
            server.conns[key].bufs = Some(Box::<Buffers>::default());
            let err = server.check_invariants().unwrap_err();
            assert!(
                err.contains(&format!("connection {key} holds buffers")),
                "{err}"
            );
        }
    }

    #[test]
    fn the_self_check_passes_an_exit_and_notices_connections_left_behind() {
        let mut server = Server::new(Config::default());
        server.handle_terminate(Time::ZERO);
        server.handle_backlog_empty(Time::ZERO);
        assert_eq!(server.phase(), Phase::Exited);
        assert_eq!(server.check_invariants(), Ok(()));

        let mut server = idle_and_lingering();
        server.lifecycle = Lifecycle::Exited(DrainReport::new(Time::ZERO));
        let err = server.check_invariants().unwrap_err();
        assert!(err.contains("exited with connections open"), "{err}");
    }
}
