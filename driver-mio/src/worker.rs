//! One worker: a thread with its own mio `Poll`, its own core [`Server`] and
//! its own listener. It maps readiness, messages and the clock onto core's
//! inputs and core's events onto syscalls; every decision is core's. Core's
//! [`Finished`] events become access-log lines and observations, named with
//! what the worker remembers of each request ([`InFlight`]).
//!
//! Stop requests reach a worker as a shared count (see
//! [`crate::shutdown`]), not as messages: it applies the new ones before its
//! first poll and on every wake-up, before the connections that became ready
//! in the same wake-up.

use std::fmt;
use std::io::{self, IoSlice, Read, Write};
use std::mem::discriminant;
use std::net::{Shutdown, SocketAddr};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc::{self, Receiver};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ebb_core::{
    CloseReason, Config, ConnId, DrainReport, Event, Finished, Phase, RequestId, RespondError,
    Server, Time,
};
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token, Waker};

use crate::access_log::{AccessLog, ACCESS_LOG_TARGET};
use crate::balance::{Balance, Wait};
use crate::handler::{
    answered_surely_valid, begin_dispatch, end_dispatch, Answer, Handler, Inbox, Message,
    Responder, Response,
};
use crate::inflight::InFlight;
use crate::nodelay::NoDelay;
use crate::observer::{Observation, Observing, RequestEnd};
use crate::shutdown::{Applied, ShutdownHandle, StopInput};
use crate::stream::Streams;
use crate::sys;
use crate::upgraded::Upgrades;
use crate::upload::Uploads;

const LISTENER: Token = Token(usize::MAX - 1);
const WAKER: Token = Token(usize::MAX);
/// One read buffer per worker, reused for every read.
const READ_BUFFER_BYTES: usize = 64 * 1024;
/// Reads of unread input before a forced close (64 KiB each).
const FORCED_CLOSE_READS: usize = 4;
/// How long accepting pauses after EMFILE/ENFILE, unless a close comes first.
const ACCEPT_PAUSE: Duration = Duration::from_millis(100);
/// Most [`InFlight`] buffers of closed connections kept for new ones.
const SPARE_INFLIGHT: usize = 256;
/// Messages the mailbox gives per pass of the loop. Producers can refill it
/// as fast as it is read — a thousand streams to clients that read
/// nothing, each writing again as soon as its bytes reach the socket — and
/// a mailbox read to the end would hold the loop until every socket's send
/// buffer filled (seconds, with no new connection, request, timer or stop
/// looked at). A pass of this many is short, and few enough passes empty
/// a mailbox in the ordinary case.
const MESSAGES_PER_PASS: usize = 64;
/// Access-log lines are flushed at most this often, and no later than this
/// after they are logged: a busy worker hands the logger many lines per
/// flush (as nginx's `access_log … flush=` does).
const ACCESS_LOG_FLUSH_INTERVAL: Duration = Duration::from_millis(50);

/// An open connection: core's id for it and its socket.
struct Conn {
    id: ConnId,
    stream: TcpStream,
    /// Its client's address, as accept gave it: for the application
    /// ([`Responder::peer_addr`]) and to name a request in an error line.
    peer: SocketAddr,
    /// Its client's address as text and its requests dispatched and not
    /// yet finished, while the access log or an observer wants them. Boxed, so
    /// without them a connection's slot stays as small as it was.
    inflight: Option<Box<InFlight>>,
    /// The requests handed to the application and not yet answered (more
    /// than one when it pipelines), each as `METHOD target`, to name it in
    /// the log if the drain cuts it.
    deferred: Vec<(RequestId, Box<str>)>,
    /// Its last write fell short or would have blocked. Only then is a
    /// writable readiness news: epoll reports one with every change of the
    /// socket, every arriving request included.
    write_blocked: bool,
    /// Readiness said its peer's side closed or failed. That edge is spent
    /// once reported, so reads go on until they see the end; otherwise a
    /// short read means the socket is empty (see [`Worker::read`]).
    read_ended: bool,
}

/// Everything one worker thread owns.
pub(crate) struct Worker<H> {
    number: usize,
    poll: Poll,
    server: Server,
    listener: Option<TcpListener>,
    /// Whether accepted connections still need `TCP_NODELAY` set.
    nodelay: NoDelay,
    /// Where the stop requests are counted.
    stops: ShutdownHandle,
    /// The stop requests and hand-off applied so far.
    stops_applied: Applied,
    handler: Arc<H>,
    inbox: Arc<Inbox>,
    rx: Receiver<Message>,
    /// The mailbox may hold messages not yet read: the waker said so, or a
    /// pass read its share ([`MESSAGES_PER_PASS`]) and stopped.
    mail: bool,
    /// The epoch of core's clock, shared by all workers so their reports combine.
    start: Instant,
    /// When the loop last woke up: the clock is read once per wake-up, and
    /// every input of that pass takes this time (see [`Worker::wake_up`]).
    awake_at: Instant,
    /// `awake_at` on core's clock.
    now: Time,
    conns: Vec<Option<Conn>>,
    buf: Box<[u8]>,
    /// Connections to read again after [`Event::ResumeRead`].
    resume: Vec<ConnId>,
    /// Connections with bytes to write once the events run out.
    to_write: Vec<ConnId>,
    /// Set by [`Event::DrainBacklog`] until accept would block.
    draining_backlog: bool,
    /// Accepting is paused (EMFILE/ENFILE) until then, or until a close.
    accept_paused_until: Option<Instant>,
    /// Every worker's load and progress: to spread new connections over the
    /// workers sharing this worker's listener (see [`crate::balance`]), and
    /// for the coordinator to see a worker stuck in a handler.
    balance: Arc<Balance>,
    /// This worker has left the backlog to a less-loaded one.
    deferral: Option<Wait>,
    /// Accept failed and the backlog has not been emptied since: the failure
    /// is logged once, not on every retry.
    accept_failing: bool,
    /// When the wall clock's second next changes, as far as the monotonic
    /// clock can tell: the `Date` is looked at again then.
    next_date_at: Instant,
    /// See [`spare_fd`].
    spare_fd: Option<std::fs::File>,
    /// The buffer of `METHOD target`, the name of a request being
    /// dispatched that a log line may name (see [`Worker::dispatch`]).
    name: String,
    /// Responses whose body the application streams.
    streams: Streams,
    /// Connections switching, or switched, to another protocol.
    upgrades: Upgrades,
    /// Request bodies the application reads as they arrive.
    uploads: Uploads,
    /// `stream_request_bodies` is on.
    stream_bodies: bool,
    /// The access log and the observer, if wanted.
    observing: Observing,
    /// The access log's line buffer.
    access_log: AccessLog,
    /// Access-log lines went to the logger since it was last flushed.
    access_logged: bool,
    /// When the logger was last flushed for the access log.
    access_flushed_at: Instant,
    /// [`InFlight`] buffers of closed connections, for new ones. Kept boxed:
    /// a new connection takes the box as it is, allocating nothing.
    #[allow(clippy::vec_box)]
    spare_inflight: Vec<Box<InFlight>>,
    /// The phase the observer last heard of.
    phase: Phase,
    exit: Option<DrainReport>,
}

/// What every worker shares with the others and with the coordinator.
#[derive(Clone)]
pub(crate) struct Common {
    /// The stop requests, counted.
    pub(crate) stops: ShutdownHandle,
    /// The epoch of core's clock, the same for all, so their reports combine.
    pub(crate) start: Instant,
    /// Every worker's load and progress.
    pub(crate) balance: Arc<Balance>,
}

impl<H: Handler> Worker<H> {
    /// A worker ready to [`run`](Self::run), with its listener registered,
    /// and the inbox through which other threads reach it.
    pub(crate) fn new(
        number: usize,
        listener: std::net::TcpListener,
        config: Config,
        handler: Arc<H>,
        observing: Observing,
        common: Common,
    ) -> io::Result<(Worker<H>, Arc<Inbox>)> {
        let Common {
            stops,
            start,
            balance,
        } = common;
        let stream_bodies = config.stream_request_bodies;
        let poll = Poll::new()?;
        let (tx, rx) = mpsc::channel();
        let inbox = Arc::new(Inbox {
            tx,
            waker: Waker::new(poll.registry(), WAKER)?,
            stream_buffer_bytes: config.max_stream_buffer_bytes,
            stops: stops.clone(),
        });
        let nodelay = NoDelay::on_listener(&listener);
        let mut listener = TcpListener::from_std(listener);
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        let worker = Worker {
            number,
            poll,
            server: Server::new(config),
            listener: Some(listener),
            nodelay,
            stops,
            stops_applied: Applied::default(),
            handler,
            inbox: inbox.clone(),
            rx,
            mail: false,
            start,
            awake_at: start,
            now: Time::ZERO,
            conns: Vec::new(),
            buf: vec![0; READ_BUFFER_BYTES].into_boxed_slice(),
            resume: Vec::new(),
            to_write: Vec::new(),
            draining_backlog: false,
            accept_paused_until: None,
            balance,
            deferral: None,
            accept_failing: false,
            next_date_at: start,
            spare_fd: spare_fd(),
            name: String::new(),
            streams: Streams::default(),
            upgrades: Upgrades::default(),
            uploads: Uploads::default(),
            stream_bodies,
            observing,
            access_log: AccessLog::new(start),
            access_logged: false,
            access_flushed_at: start,
            spare_inflight: Vec::new(),
            phase: Phase::Serving,
            exit: None,
        };
        Ok((worker, inbox))
    }

    /// Runs the loop until core emits [`Event::Exit`].
    pub(crate) fn run(mut self) -> io::Result<DrainReport> {
        // Empty until the first poll: the first pass only applies the stop
        // requests made before this worker existed.
        let mut events = Events::with_capacity(1024);
        // Whether this pass handles the events of the look taken before
        // applying a stop (see below).
        let mut looked_before_stop = false;
        loop {
            self.wake_up();
            for event in events.iter() {
                match event.token() {
                    LISTENER => {
                        self.accept();
                        self.pump();
                    }
                    WAKER => self.mail = true,
                    token => self.ready(token.0, event),
                }
                self.settle();
            }
            if self.mail {
                self.messages();
                self.settle();
            }
            if self.stops.has_input(&self.stops_applied) {
                // What reached this worker's sockets before the stop is
                // read before it: a request in the kernel's buffer was sent
                // before the stop, so it is answered, not discarded by the
                // close of an idle connection or left behind a pipelined
                // one's `Connection: close`. One more look, without
                // waiting, takes in what came while this pass ran; the
                // next pass handles it, then applies the stop.
                if !looked_before_stop {
                    looked_before_stop = true;
                    match self.poll.poll(&mut events, Some(Duration::ZERO)) {
                        Ok(()) => {}
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => events.clear(),
                        Err(e) => return Err(e),
                    }
                    continue;
                }
                looked_before_stop = false;
                self.apply_stops();
            }
            if let Some(until) = self.accept_paused_until {
                if self.awake_at >= until {
                    self.resume_accepting();
                    self.pump();
                }
            }
            if self
                .deferral
                .is_some_and(|d| self.awake_at >= d.next_look())
            {
                self.look_again_at_deferral();
            }
            let mut deadline = self.server.poll_timeout();
            if deadline.is_some_and(|at| at <= self.now) {
                self.server.handle_timeout(self.now);
                self.pump();
                self.settle();
                deadline = self.server.poll_timeout();
            }
            if let Some(report) = self.exit.take() {
                self.flush_access_log(true);
                return Ok(report);
            }
            let flush_in = self.flush_access_log(false);
            let timeout = match (self.poll_timeout(deadline), flush_in) {
                // Messages left for the next pass: it comes at once.
                _ if self.mail => Some(Duration::ZERO),
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            self.balance.sleeps(self.number);
            match self.poll.poll(&mut events, timeout) {
                Ok(()) => {}
                // The next pass only looks at the stop requests and the clock.
                Err(e) if e.kind() == io::ErrorKind::Interrupted => events.clear(),
                Err(e) => return Err(e),
            }
        }
    }

    /// Reads the clock for this pass of the loop, and sets core's `Date` if
    /// its second may have changed.
    ///
    /// One read per wake-up, not per input: a pass takes microseconds plus
    /// the handlers it calls, so the deadlines core derives from it are
    /// early by as much at most, which no timeout notices. Where request
    /// times are recorded, the clock is read again after each handler (see
    /// [`Worker::dispatch`]).
    fn wake_up(&mut self) {
        (self.awake_at, self.now) = read_clock(self.start);
        self.balance.step(self.number);
        if self.awake_at >= self.next_date_at {
            self.refresh_date();
        }
    }

    /// How long mio may sleep: until core's next `deadline` (its
    /// `poll_timeout`, asked once per wake-up by the caller), the end of an
    /// accept pause, or the next look at a wait for another worker to accept.
    fn poll_timeout(&self, deadline: Option<Time>) -> Option<Duration> {
        let now = self.now;
        let core = deadline.map(|at| at.saturating_since(now));
        let accept_at = self
            .accept_paused_until
            .or(self.deferral.map(|d| d.next_look()));
        let accept = accept_at.map(|at| at.saturating_duration_since(self.awake_at));
        match (core, accept) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Sets core's `Date` from the wall clock, and when to look again: at
    /// its next second. A step of the wall clock shows by then.
    fn refresh_date(&mut self) {
        let wall = SystemTime::now();
        self.server.set_date(&httpdate::fmt_http_date(wall));
        let into_second = wall
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .subsec_nanos();
        let to_next_second = Duration::from_secs(1) - Duration::from_nanos(into_second.into());
        self.next_date_at = self.awake_at + to_next_second;
    }

    /// Carries out core's events until there are none.
    ///
    /// Writes wait until the events run out, so the responses to every
    /// pipelined request answered meanwhile leave in one vectored write.
    fn pump(&mut self) {
        loop {
            self.carry_out_events();
            if self.to_write.is_empty() {
                break;
            }
            while let Some(conn) = self.to_write.pop() {
                self.write(conn);
            }
        }
        if self.observing.observer.is_some() {
            self.observe_phase();
        }
    }

    fn carry_out_events(&mut self) {
        while let Some(event) = self.server.poll_event() {
            match event {
                Event::Request(id) => self.dispatch(id),
                // Core announces a connection's output again once its
                // announcement is taken, so pipelined responses, written
                // together, announce it over and over: once is enough.
                Event::Transmit(conn) => {
                    if self.to_write.last() != Some(&conn) {
                        self.to_write.push(conn);
                    }
                }
                Event::ResumeRead(conn) => self.resume.push(conn),
                Event::Finished(finished) => {
                    if let (true, Some(id)) = (self.stream_bodies, finished.request) {
                        self.uploads.finished(id);
                    }
                    if self.observing.tracks_requests() {
                        self.finished(&finished);
                    }
                }
                Event::BodyReady(id) => self.feed_upload(id, false),
                Event::StreamWritable(id) => self.feed_stream(id, false),
                Event::Upgraded(conn) => self.hand_over(conn),
                Event::StopUpgraded(conn) => self.upgrades.stop(conn),
                Event::CountUnread(conn) => self.count_unread(conn),
                Event::Farewell(conn, bytes) => {
                    if let Some(c) = self.conn(conn) {
                        // Once, without waiting: the close follows at once.
                        let _ = c.stream.write(bytes);
                    }
                }
                Event::HalfClose(conn, _) => {
                    if let Some(c) = self.conn(conn) {
                        if let Err(e) = c.stream.shutdown(Shutdown::Write) {
                            log::debug!("half-close of {conn:?}: {e}");
                            self.server.handle_aborted(conn, self.now);
                        }
                    }
                }
                Event::Close(conn, reason) => {
                    self.streams.closed(conn);
                    self.uploads.closed(conn);
                    self.upgrades.closed(conn, reason);
                    self.close(conn, reason);
                }
                Event::DrainBacklog => {
                    self.draining_backlog = true;
                    self.accept();
                }
                Event::CloseListener => {
                    if let Some(mut listener) = self.listener.take() {
                        if let Err(e) = self.poll.registry().deregister(&mut listener) {
                            log::debug!("deregistering the listener: {e}");
                        }
                    }
                    self.draining_backlog = false;
                    self.accept_paused_until = None;
                    self.deferral = None;
                }
                Event::Exit => {
                    let report = self.server.exit_report().cloned();
                    if let Some(report) = &report {
                        log::debug!("worker {} exits: {report}", self.number);
                    }
                    self.exit = report;
                }
            }
        }
    }

    /// Reads the connections core asked to resume, until none is left.
    fn settle(&mut self) {
        while let Some(conn) = self.resume.pop() {
            self.read(conn);
        }
    }

    fn conn(&mut self, id: ConnId) -> Option<&mut Conn> {
        lookup(&mut self.conns, id)
    }

    fn ready(&mut self, index: usize, event: &mio::event::Event) {
        let Some(conn) = self.conns.get_mut(index).and_then(Option::as_mut) else {
            return;
        };
        let id = conn.id;
        let ended = event.is_read_closed() || event.is_error();
        conn.read_ended |= ended;
        if event.is_writable() && conn.write_blocked {
            self.write(id);
            self.pump();
        }
        if event.is_readable() || ended {
            self.read(id);
        }
    }

    /// Reads until the socket is empty, core stops wanting input, or the
    /// connection ends; every read is one core input.
    ///
    /// A read shorter than the buffer emptied the socket, and readiness is
    /// edge-triggered: bytes arriving later are reported anew, so one read
    /// usually does, with no second one just to hear `WouldBlock`. Only an
    /// end already reported ([`Conn::read_ended`]) is read until seen.
    fn read(&mut self, id: ConnId) {
        loop {
            if !self.server.wants_read(id) {
                return;
            }
            let Some(conn) = lookup(&mut self.conns, id) else {
                return;
            };
            match sys::read(&conn.stream, &mut self.buf) {
                Ok(0) => {
                    self.server.handle_peer_eof(id, self.now);
                    self.pump();
                    return;
                }
                Ok(n) => {
                    let emptied = n < self.buf.len() && !conn.read_ended;
                    self.server.handle_recv(id, &self.buf[..n], self.now);
                    self.pump();
                    if emptied {
                        return;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    log::debug!("read from {id:?}: {e}");
                    self.server.handle_aborted(id, self.now);
                    self.pump();
                    return;
                }
            }
        }
    }

    /// Writes what core has queued for `id` in one vectored write. If the
    /// socket takes it all, core announces what it queues next with another
    /// [`Event::Transmit`]; if not, the socket is full, and its writable
    /// readiness says when to go on ([`Conn::write_blocked`]).
    // Always inlined (into `pump` and `ready`): its call and frame cost
    // some 20 instructions per keep-alive response.
    #[inline(always)]
    fn write(&mut self, id: ConnId) {
        loop {
            let Some(conn) = lookup(&mut self.conns, id) else {
                return;
            };
            let [head, tail] = self.server.transmit(id);
            let slices = [IoSlice::new(head), IoSlice::new(tail)];
            let slices = match (head.is_empty(), tail.is_empty()) {
                (true, true) => {
                    conn.write_blocked = false;
                    return;
                }
                (false, true) => &slices[..1],
                (true, false) => &slices[1..],
                (false, false) => &slices[..],
            };
            match sys::write_vectored(&conn.stream, slices) {
                Ok(0) => self.server.handle_aborted(id, self.now),
                Ok(n) => {
                    conn.write_blocked = n < head.len() + tail.len();
                    self.server.handle_sent(id, n, self.now);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => conn.write_blocked = true,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    log::debug!("write to {id:?}: {e}");
                    self.server.handle_aborted(id, self.now);
                }
            }
            return;
        }
    }

    fn close(&mut self, id: ConnId, reason: CloseReason) {
        let Some(slot) = self.conns.get_mut(id.index()) else {
            return;
        };
        let Some(mut conn) = slot.take_if(|c| c.id == id) else {
            return;
        };
        // On Linux, closing the socket (the drop below) takes it out of the
        // epoll set: no descriptor of ebb's shares it. Elsewhere mio asks
        // for a deregistration first.
        #[cfg(not(target_os = "linux"))]
        if let Err(e) = self.poll.registry().deregister(&mut conn.stream) {
            log::debug!("deregistering {id:?}: {e}");
        }
        if reason == CloseReason::WriteStall {
            // The client stopped reading; what is queued for it would stay
            // in the kernel after the close (up to the send buffer, in
            // FIN-WAIT-1, for as long as the client answers the window
            // probes). The response is lost either way: reset, and free it.
            if let Err(e) = socket2::SockRef::from(&conn.stream).set_linger(Some(Duration::ZERO)) {
                log::debug!("resetting {id:?}: {e}");
            }
        }
        if reason.is_forced() {
            // Closing with unread input resets the connection, which can
            // destroy a farewell 503 before its client reads it: read what is
            // there first (a bounded amount; the exit does not wait).
            for _ in 0..FORCED_CLOSE_READS {
                match conn.stream.read(&mut self.buf) {
                    Ok(n) if n > 0 => {}
                    _ => break,
                }
            }
        }
        for (_, request) in &conn.deferred {
            let from = FromPeer(Some(conn.peer));
            if reason.is_forced() {
                log::warn!("request cut, unanswered ({reason}): {request}{from}");
            } else {
                log::debug!("request unanswered ({reason}): {request}{from}");
            }
        }
        if let Some(inflight) = conn.inflight.take().filter(|i| i.worth_keeping()) {
            if self.spare_inflight.len() < SPARE_INFLIGHT {
                self.spare_inflight.push(inflight);
            }
        }
        // A closed socket frees a descriptor: keep it spare, and try
        // accepting again.
        drop(conn);
        self.record_open();
        if self.spare_fd.is_none() {
            self.spare_fd = spare_fd();
        }
        if self.accept_paused_until.is_some() {
            self.resume_accepting();
        }
    }

    fn resume_accepting(&mut self) {
        self.accept_paused_until = None;
        self.accept();
    }

    /// Accepts until accepting would block; reports the empty backlog to core
    /// if it asked to drain it. The caller pumps the events.
    fn accept(&mut self) {
        if self.accept_paused_until.is_some() {
            return;
        }
        while self.listener.is_some() && !self.defers_accepting() {
            let Some(listener) = &self.listener else {
                break;
            };
            match listener.accept() {
                Ok((stream, peer)) => self.accepted(stream, peer),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.deferral = None;
                    self.balance.emptied();
                    if self.accept_failing {
                        self.accept_failing = false;
                        log::info!("accepting again: the backlog is empty");
                    }
                    break;
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::Interrupted | io::ErrorKind::ConnectionAborted
                    ) => {}
                Err(e) if is_out_of_fds(&e) && self.spare_fd.is_some() => {
                    // Linux says EMFILE even when nobody waits. The spare
                    // descriptor tells: with it freed, accept again.
                    self.spare_fd = None;
                    match listener.accept() {
                        Ok((stream, peer)) => {
                            // Somebody waits, and there is no room for the
                            // next one: core closes the longest-idle
                            // keep-alive connections (the caller pumps).
                            let freeing = self.server.handle_fd_pressure(self.now);
                            log::warn!("out of descriptors: closing {freeing} idle connections to make room");
                            self.accepted(stream, peer);
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                            self.spare_fd = spare_fd();
                            break;
                        }
                        Err(e) => return self.pause_accepting(e),
                    }
                }
                Err(e) => return self.pause_accepting(e),
            }
        }
        if self.draining_backlog {
            self.draining_backlog = false;
            self.server.handle_backlog_empty(self.now);
        }
    }

    /// A wait for another worker to accept is due for a look: it is over
    /// if that worker (or any) emptied the backlog since it began — a new
    /// connection wakes this worker anyway — and otherwise accepting goes
    /// on if the other worker is no longer worth waiting for.
    fn look_again_at_deferral(&mut self) {
        let Some(deferral) = self.deferral else {
            return;
        };
        if deferral.is_over(&self.balance) {
            self.deferral = None;
            return;
        }
        self.accept();
        self.pump();
    }

    /// Whether to leave the shared backlog to a less-loaded worker for now
    /// (see [`crate::balance`]), nudging it: only while serving — a drain
    /// empties the backlog whoever holds what — and while that worker is
    /// worth waiting for.
    fn defers_accepting(&mut self) -> bool {
        let balance = &self.balance;
        if self.draining_backlog || self.server.is_stopping() {
            return false;
        }
        let Some(least) = balance.ahead_of(self.number) else {
            return false;
        };
        let mut wait = match self.deferral {
            Some(wait) if wait.is_for(least, balance) => wait,
            _ => balance.wait_for(least, self.awake_at),
        };
        let goes_on = wait.goes_on(balance, self.awake_at);
        self.deferral = Some(wait);
        if goes_on {
            balance.nudge(least);
        }
        goes_on
    }

    /// This worker's open connections, for the other workers' balance.
    fn record_open(&self) {
        self.balance.record(self.number, self.server.connections());
    }

    /// Accept failed (EMFILE/ENFILE with no spare descriptor left, or
    /// worse): the connection stays queued, and retrying now would spin, so
    /// accepting pauses until a connection closes or `ACCEPT_PAUSE` passes.
    fn pause_accepting(&mut self, e: io::Error) {
        if !self.accept_failing {
            self.accept_failing = true;
            if is_out_of_fds(&e) {
                log::warn!("accept paused until a connection closes: {e}");
            } else {
                log::error!("accept failed, pausing: {e}");
            }
        }
        self.accept_paused_until = Some(self.awake_at + ACCEPT_PAUSE);
    }

    fn accepted(&mut self, mut stream: TcpStream, peer: SocketAddr) {
        self.nodelay.accepted(&stream);
        let id = self.server.handle_accept(self.now);
        self.record_open();
        let index = id.index();
        if let Err(e) = self.poll.registry().register(
            &mut stream,
            Token(index),
            Interest::READABLE | Interest::WRITABLE,
        ) {
            log::error!("registering a connection: {e}");
            self.server.handle_aborted(id, self.now);
            return;
        }
        if self.conns.len() <= index {
            self.conns.resize_with(index + 1, || None);
        }
        let inflight = self.observing.tracks_requests().then(|| {
            let mut inflight = self.spare_inflight.pop().unwrap_or_default();
            inflight.reset(peer);
            inflight
        });
        self.conns[index] = Some(Conn {
            id,
            stream,
            peer,
            inflight,
            deferred: Vec::new(),
            write_blocked: false,
            read_ended: false,
        });
    }

    /// Hands request `id` to the application; answers it at once if the
    /// handler did.
    fn dispatch(&mut self, id: RequestId) {
        let Some(request) = self.server.request(id) else {
            return;
        };
        let peer = lookup(&mut self.conns, id.conn()).map(|conn| conn.peer);
        debug_assert!(peer.is_some(), "a request on a connection the worker lacks");
        let Some(peer) = peer else {
            return;
        };
        // Only when bodies stream: otherwise dispatch costs nothing more.
        let streams_body = self.stream_bodies && self.server.request_body(id).is_some();
        let body = streams_body.then(|| self.uploads.start(id, &self.inbox));
        let responder = Responder::new(
            id,
            peer,
            self.inbox.clone(),
            self.server.is_stopping(),
            body,
        );
        begin_dispatch(&self.inbox, id);
        let handler = &self.handler;
        self.balance.handles(self.number);
        let result = catch_unwind(AssertUnwindSafe(|| handler.call(&request, responder)));
        self.balance.step(self.number);
        if self.observing.tracks_requests() {
            // The access log and the observer time each request: its
            // response is handed over after the handler, not when the
            // loop woke up.
            (self.awake_at, self.now) = read_clock(self.start);
            let conn = lookup(&mut self.conns, id.conn());
            if let Some(inflight) = conn.and_then(|c| c.inflight.as_deref_mut()) {
                // A streamed body is the application's to read: not counted.
                let body_bytes = (!self.stream_bodies).then(|| request.body().len() as u64);
                inflight.push(id.seq(), request.method(), request.target(), body_bytes);
            }
        }
        // The request's name, for the log, read while core holds the
        // request, into a reused buffer. Not for the common answer, a
        // response core surely takes: only a panic, a response core may
        // refuse (by then core has let the request go), and an answer that
        // is not a response given at once can make a line that names it.
        let named = result.is_err() || !answered_surely_valid();
        let name = if named {
            let mut name = std::mem::take(&mut self.name);
            name.clear();
            name.push_str(request.method());
            name.push(' ');
            name.push_str(request.target());
            name
        } else {
            String::new()
        };
        if result.is_err() {
            let from = self.peer_of(id.conn());
            log::error!("handler panicked on {name}{from}; answered 500");
        }
        end_dispatch(|answer| match answer {
            // Borrowed, not moved: a response is some 300 bytes.
            Some(Answer::Response(response)) => self.respond(id, response, &name),
            other => match other.take() {
                // The panic dropped the responder: logged once, above.
                Some(Answer::Failed) if result.is_err() => {
                    self.server.handle_app_failure(id, self.now)
                }
                Some(answer) => self.answer(id, answer, &name),
                None => {
                    if let Some(conn) = self.conn(id.conn()) {
                        conn.deferred.push((id, name.as_str().into()));
                    }
                }
            },
        });
        if named {
            self.name = name;
        }
        if streams_body {
            // What came with the head: its `BodyReady` may be past.
            self.feed_upload(id, false);
        }
        // Only a handler call can hold a worker past the exit's deadline:
        // looked at as it returns, before its answer is written.
        self.exit_if_given_up();
    }

    /// Gives core the application's answer to request `id`, named `name`
    /// in the log.
    fn answer(&mut self, id: RequestId, mut answer: Answer, name: &str) {
        match answer {
            Answer::Response(ref mut response) => self.respond(id, response, name),
            Answer::Stream(start) => self.start_stream(id, *start, name),
            Answer::Upgrade(start) => self.start_upgrade(id, *start, name),
            // A request core no longer waits on (its client left, or core
            // answered in the application's place, say a 408 for a body
            // too slow) is one the application could not answer: not an
            // error, or every hostile client would write an error line.
            Answer::Failed if !self.server.awaits_answer(id) => {
                log::debug!("responder for {name} dropped after its request ended");
            }
            Answer::Failed => {
                let from = self.peer_of(id.conn());
                log::error!("handler dropped its responder for {name}{from}; answered 500");
                self.server.handle_app_failure(id, self.now);
            }
        }
    }

    /// Gives core `response` to request `id`, named `name` in the log. Its
    /// body is taken; the rest is left to drop.
    fn respond(&mut self, id: RequestId, response: &mut Response, name: &str) {
        let now = self.now;
        let body = std::mem::take(&mut response.body);
        let headers = response
            .headers
            .iter()
            .map(|(name, value)| (name.as_bytes(), &value[..]));
        match self
            .server
            .handle_response(id, response.status, headers, body, now)
        {
            Ok(()) => {}
            Err(RespondError::UnknownRequest) => {
                log::debug!("answer to {name} dropped: its connection is gone");
            }
            Err(e) => {
                debug_assert!(!name.is_empty(), "a response surely valid was refused: {e}");
                let from = self.peer_of(id.conn());
                log::error!("handler gave an invalid response to {name}{from} ({e}); answered 500");
            }
        }
    }

    /// Tells core how much the socket of `id` holds unread (`FIONREAD`): as
    /// the drain begins, the requests in it were sent before the drain and
    /// are owed; before the drain closes an idle connection, a request there
    /// keeps it open.
    fn count_unread(&mut self, id: ConnId) {
        let Some(conn) = self.conn(id) else {
            return;
        };
        // Core waits for the answer before it closes an idle connection, so
        // one that cannot be counted is answered as holding nothing.
        let unread = sys::unread(&conn.stream).unwrap_or_else(|e| {
            log::debug!("unread bytes of {id:?}: {e}");
            0
        });
        self.server.handle_unread(id, unread, self.now);
    }

    /// A deferred answer to request `id`.
    fn answer_deferred(&mut self, id: RequestId, answer: Answer) {
        let name = self
            .conn(id.conn())
            .and_then(|conn| {
                let at = conn.deferred.iter().position(|(r, _)| *r == id)?;
                Some(conn.deferred.swap_remove(at))
            })
            .map_or_else(|| format!("{id:?}").into_boxed_str(), |(_, name)| name);
        self.answer(id, answer, &name);
    }

    /// ` from ADDR`, the peer of connection `id` if it is open, to name a
    /// request in an error line. Looked up only when there is one to log.
    fn peer_of(&mut self, id: ConnId) -> FromPeer {
        FromPeer(self.conn(id).map(|conn| conn.peer))
    }

    /// Logs and reports a finished request: the access log's line and the
    /// observer's [`Observation::Request`].
    fn finished(&mut self, finished: &Finished) {
        let Some(conn) = lookup(&mut self.conns, finished.conn) else {
            return;
        };
        let addr = conn.peer;
        let Some(inflight) = conn.inflight.as_deref_mut() else {
            return;
        };
        let (peer, name) = match finished.request {
            Some(id) => inflight.finish(id.seq()),
            None => (inflight.peer(), None),
        };
        if self.observing.access_log
            && log::log_enabled!(target: ACCESS_LOG_TARGET, log::Level::Info)
        {
            let method_target = name.map(|(method, target, _)| (method, target));
            let line = self.access_log.line(peer, method_target, finished);
            log::info!(target: ACCESS_LOG_TARGET, "{line}");
            self.access_logged = true;
        }
        if let Some(observer) = &self.observing.observer {
            let end = RequestEnd::new(self.number, addr, name, finished);
            tell(observer, &Observation::Request(end));
        }
    }

    /// Tells the observer of a change of phase since it last heard.
    ///
    /// Core can pass through `Draining` within one input (a drain with
    /// nothing to wait for ends in the input that starts it), so a drain the
    /// exit report records is told first if it was not yet.
    fn observe_phase(&mut self) {
        let phase = self.server.phase();
        if discriminant(&phase) == discriminant(&self.phase) {
            return;
        }
        let Some(observer) = &self.observing.observer else {
            return;
        };
        let worker = self.number;
        let was_draining = matches!(self.phase, Phase::Draining { .. });
        if let (Phase::Exited, false, Some(report)) = (phase, was_draining, &self.exit) {
            if let Some(draining_at) = report.draining_at {
                let deadline = draining_at + self.server.config().drain_timeout;
                let phase = Phase::Draining { deadline };
                tell(observer, &Observation::Phase { worker, phase });
            }
        }
        tell(observer, &Observation::Phase { worker, phase });
        self.phase = phase;
    }

    /// Flushes the logger if access-log lines were logged since it was last
    /// flushed and [`ACCESS_LOG_FLUSH_INTERVAL`] has passed since then (or
    /// `now` is set); otherwise returns how soon to come back and flush. A
    /// logger may hold lines until it is flushed (the `ebb` binary's holds the
    /// access log's), so a busy worker writes many lines at once.
    fn flush_access_log(&mut self, now: bool) -> Option<Duration> {
        if !self.access_logged {
            return None;
        }
        let since = self
            .awake_at
            .saturating_duration_since(self.access_flushed_at);
        if !now && since < ACCESS_LOG_FLUSH_INTERVAL {
            return Some(ACCESS_LOG_FLUSH_INTERVAL - since);
        }
        log::logger().flush();
        self.access_logged = false;
        self.access_flushed_at = self.awake_at;
        None
    }

    /// Applies a hand-off and each stop request made since the last look
    /// (one terminate each: the first drains, the next forces the exit).
    fn apply_stops(&mut self) {
        while let Some(input) = self.stops.next_input(&mut self.stops_applied) {
            match input {
                StopInput::HandOff => self.server.handle_handoff(self.now),
                StopInput::Terminate => self.server.handle_terminate(self.now),
            }
            self.pump();
        }
    }

    /// Exits now if the coordinator gave up on this worker: a handler held
    /// it past the exit's deadline, and `serve` returned without it (see
    /// [`crate::exit_deadline`]). It serves nothing more, not even the
    /// answer of that handler: core closes everything, as a second stop
    /// would make it.
    fn exit_if_given_up(&mut self) {
        if !self.balance.given_up() {
            return;
        }
        // At most three stops: serving, pre-stop or draining, exited.
        for _ in 0..3 {
            if matches!(self.server.phase(), Phase::Exited) {
                break;
            }
            self.server.handle_terminate(self.now);
        }
    }

    /// Reads the mailbox — deferred answers, stream data, closed upgrades —
    /// up to this pass's share ([`MESSAGES_PER_PASS`]); [`Worker::mail`]
    /// says whether messages may be left.
    fn messages(&mut self) {
        for _ in 0..MESSAGES_PER_PASS {
            let Ok(message) = self.rx.try_recv() else {
                self.mail = false;
                return;
            };
            match message {
                Message::Answer(id, answer) => self.answer_deferred(id, *answer),
                Message::Stream(id) => self.feed_stream(id, true),
                Message::Body(id) => self.feed_upload(id, true),
                Message::UpgradedClosed(conn) => {
                    self.server.handle_upgraded_closed(conn, self.now);
                }
                Message::Accept => self.accept(),
            }
            self.pump();
        }
    }

    /// Starts the streamed response to request `id`, named `name` in the log.
    fn start_stream(&mut self, id: RequestId, start: crate::stream::StreamStart, name: &str) {
        match self.streams.start(&mut self.server, id, start, self.now) {
            Ok(()) | Err(RespondError::UnknownRequest) => {}
            Err(e) => {
                log::error!("handler gave an invalid stream head to {name} ({e}); answered 500")
            }
        }
    }

    /// Hands core what the application has written to the stream answering
    /// `id`; `posted` when the application asked for it.
    fn feed_stream(&mut self, id: RequestId, posted: bool) {
        self.streams.feed(&mut self.server, id, posted, self.now);
    }

    /// Moves what core holds of request `id`'s streamed body to its reader;
    /// `posted` when the reader asked for it.
    fn feed_upload(&mut self, id: RequestId, posted: bool) {
        self.uploads.feed(&mut self.server, id, posted, self.now);
    }

    /// Queues the `101` switching request `id`, named `name` in the log.
    fn start_upgrade(&mut self, id: RequestId, start: crate::upgraded::UpgradeStart, name: &str) {
        match self.upgrades.start(&mut self.server, id, start, self.now) {
            Ok(()) | Err(RespondError::UnknownRequest) => {}
            Err(e) => log::error!("handler could not upgrade {name} ({e}); answered 500"),
        }
    }

    /// The `101` on `conn` is written: its socket leaves this worker's poll
    /// for the application.
    fn hand_over(&mut self, conn: ConnId) {
        let now = self.now;
        let taken = self
            .conns
            .get_mut(conn.index())
            .and_then(|slot| slot.take_if(|c| c.id == conn));
        let Some(mut taken) = taken else {
            return self.server.handle_upgraded_closed(conn, now);
        };
        if let Err(e) = self.poll.registry().deregister(&mut taken.stream) {
            log::debug!("deregistering upgraded {conn:?}: {e}");
        }
        self.upgrades
            .handed_over(&mut self.server, conn, taken.stream, &self.inbox, now);
    }
}

/// Whether accepting failed for want of file descriptors.
fn is_out_of_fds(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE))
}

/// A descriptor held in reserve, so that when accept fails with EMFILE,
/// freeing it shows whether a client is really waiting (as nginx and libuv
/// do). `None` when even this one cannot be had.
fn spare_fd() -> Option<std::fs::File> {
    std::fs::File::open("/dev/null").ok()
}

/// The clock now, and the same instant on core's clock, whose epoch is
/// `start`.
fn read_clock(start: Instant) -> (Instant, Time) {
    let now = Instant::now();
    (now, on_core_clock(start, now))
}

/// Instant `at` on core's clock, whose epoch is `start`: the same for every
/// worker and the coordinator, so their reports combine.
pub(crate) fn on_core_clock(start: Instant, at: Instant) -> Time {
    Time::from_duration(at.saturating_duration_since(start))
}

/// The open connection `id`, if it is still the one in its slot. A free
/// function, so a caller can hold it while borrowing the worker's other fields.
fn lookup(conns: &mut [Option<Conn>], id: ConnId) -> Option<&mut Conn> {
    conns
        .get_mut(id.index())
        .and_then(Option::as_mut)
        .filter(|c| c.id == id)
}

/// Calls the observer; a panic in it is logged, and the worker carries on.
fn tell(observer: &crate::observer::Observer, observation: &Observation<'_>) {
    if catch_unwind(AssertUnwindSafe(|| observer(observation))).is_err() {
        log::error!("the observer panicked on {observation:?}");
    }
}

/// ` from ADDR` when the peer is known, to name a request in the log.
struct FromPeer(Option<SocketAddr>);

impl fmt::Display for FromPeer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(peer) => write!(f, " from {peer}"),
            None => Ok(()),
        }
    }
}
