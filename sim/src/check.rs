//! The checker: it watches what core writes and how it closes, keeps its own
//! ledger of what the world saw, and judges — safety after every step, the
//! drain report at exit, the request ledger and liveness at the end. The
//! properties are cited by number (`S1`…`S9`, listed in the crate docs);
//! the rules shared with the `server_ops` fuzzer come from
//! [`ebb_testkit::properties`].
//!
//! Order within one instant matters (a request's last byte arriving just
//! before or just after the half-close that races it), so observations are
//! stamped with a [`Tick`]: one counter over the whole run.

use std::collections::VecDeque;
use std::time::Duration;

use ebb_core::{CloseReason, Config, DrainReport, Finished, Forced, Outcome, Phase, RequestId};
use ebb_core::{Server, Time};
use ebb_testkit::properties as props;
use ebb_testkit::response::{Framing, Response, ResponseParser};

use crate::app::Got;
use crate::client::{Clients, Fate};
use crate::driver::{Cause, DriverModel, OpenSock};
use crate::env::Env;
use crate::failure::Failure;
use crate::kernel::{Dir, Kernel};
use crate::request::{is_farewell, token_of};

/// A point in the order of observations.
pub type Tick = u64;

/// About the length of core's farewell 503 (room for it on a socket).
const FAREWELL_BYTES: usize = 200;

/// How core's socket of a connection was closed, for judging lost responses.
#[derive(Clone, Copy, Debug)]
pub struct Closing {
    /// The core input whose `Close` event closed it (`None`: core never had
    /// it — reset in the backlog, or accepted after exit).
    pub cause: Option<Cause>,
    /// Whether losing a response to this close is allowed: a deadline
    /// (timer) or a forced exit, or linger giving up on too many bytes.
    pub loss_allowed: bool,
    /// Whether it was a forced exit's close (the deadline, a second
    /// terminate, or the listener closed under a forced exit): what it cut
    /// is counted as cut.
    pub forced: bool,
    /// Closed after the first stop request (so the drain report covers it).
    pub in_drain: bool,
    /// The world step it was closed in.
    pub step: u64,
    /// The application broke its response (the drain report does not count
    /// what such a close loses).
    pub app_broke: bool,
}

/// How far core has gone in ending a connection.
#[derive(Clone, Copy, Debug)]
enum Ending {
    Open,
    /// `HalfClose` came (the reason was judged then) at this time; lingering.
    HalfClosed(Time),
    Closed(Closing),
}

/// A request handed to the application on a connection, not yet completely
/// answered.
#[derive(Clone, Debug)]
struct Owed {
    id: RequestId,
    token: String,
    /// Offset of its first byte in what core received on the connection.
    start: usize,
    /// The application fails it: core's token-less 500 is its answer.
    faulted: bool,
    /// HTTP/1.0: never answered chunked.
    http10: bool,
    /// It asked to close: the connection ends with its answer.
    asks_close: bool,
    /// Its body streams: core may still refuse it (408, 413, 400) after
    /// handing it over, in its place.
    streams_body: bool,
}

/// Closes the application causes, beyond the rules shared with the fuzzer:
/// a streamed body that broke its declared length ends its connection once
/// what was queued is written, its own response cut where it broke (the
/// application's fault, not the client's).
fn app_broke_response(reason: CloseReason) -> bool {
    reason == CloseReason::StreamMismatch
}

/// A request a client wrote on a connection, as the ledger (S7) knows it.
#[derive(Clone, Copy, Debug)]
struct Sent {
    /// Which request of its client's script, and which attempt.
    no: usize,
    attempt: u32,
    /// Where its last byte is in the connection's byte stream (`u64::MAX`
    /// for one that never ends: empty lines only).
    end: u64,
    /// When its last byte reached the server's socket (or the socket queued
    /// in the backlog).
    arrived: Option<Tick>,
}

/// A response with `Connection: close` on a connection: the client sends
/// nothing after the request it answered, except what it had pipelined.
#[derive(Clone, Copy, Debug)]
struct CloseResponse {
    /// Which final response on the connection it was (0 for the first).
    nth: usize,
    /// The application answered in the drain (so core chose to close, and
    /// must not have while more had arrived before the drain: S7).
    answered_in_drain: bool,
    /// The application answered in PreStop (so core chose to close): what
    /// core had received then. A request of which core held a byte is
    /// owed its answer (S7).
    pre_stop_received: Option<usize>,
    /// Its request asked to close: nothing behind it is owed, whatever the
    /// phase (RFC 9112 §9.6).
    client_asked: bool,
}

/// What the checker knows of one connection.
#[derive(Debug)]
struct Watch {
    /// The successor accepted it (it is not the server under test's).
    successor: bool,
    /// What core wrote, parsed as it was handed to the kernel.
    parser: ResponseParser,
    owed: VecDeque<Owed>,
    /// Request bytes of every request handed on this connection.
    handed_bytes: usize,
    /// The requests handed to the application on this connection, in
    /// order: a request's `seq` is its index.
    handed: Vec<(RequestId, Handed)>,
    /// Its client sent a request behind one that asked to close (RFC 9112
    /// §9.6 forbids it): core's plain close after that answer may reset
    /// it, and what it had not read yet is its own loss (S5, S8).
    sent_past_close: bool,
    /// Final responses completely written.
    responses: u32,
    /// A final response with `Connection: close` was completely written.
    closed_resp: bool,
    /// Bytes passed to `handle_recv`.
    received: usize,
    /// When bytes were last passed to `handle_recv`.
    received_last: Time,
    /// `received` when the drain began.
    received_at_drain: Option<usize>,
    /// The driver told core what waited unread as the drain began (or at
    /// the accept in it); a later count, before the drain closes the
    /// connection, owes nothing more.
    counted_at_drain: bool,
    accepted_at: Option<Time>,
    /// When its last response was written, if nothing arrived since (idle).
    idle_since: Option<Time>,
    /// When the request being read began, at the latest (the first byte
    /// received since the connection last had nothing outstanding).
    head_since: Option<Time>,
    ending: Ending,
    /// When core's socket was half-closed or closed (or reset in the
    /// backlog): requests that arrive later are not owed an answer.
    ended: Option<Tick>,
    /// A lost response on this connection was judged already.
    loss_judged: bool,
    /// Why core half-closed it, once it did.
    half_closed_for: Option<CloseReason>,
    /// The requests its client wrote, in order (S7).
    sent: Vec<Sent>,
    /// How many of `sent` have arrived whole at the server's socket.
    arrived: usize,
    /// When the bytes not yet passed to `handle_recv` reached the server's
    /// socket: the stream's length after each arrival, and its time. The
    /// driver reads them up to `read_lag` later; until then they are the
    /// driver's, not core's.
    unread_arrivals: VecDeque<(u64, Time)>,
    /// Final responses the client read (each answers the next of `sent`).
    client_finals: usize,
    /// Which of them was core's farewell 503, if one was.
    farewell_read: Option<usize>,
    /// The first final response that carried `Connection: close`.
    close_response: Option<CloseResponse>,
    /// Responses that `Finished` says were completely handed over.
    finished_responses: usize,
    /// Core's `Farewell` for it: whether the driver wrote it.
    farewell: Option<bool>,
    /// Core offered response bytes on it (`transmit` was not empty).
    offered: bool,
    /// It left HTTP (`Upgraded`): its bytes are the application's.
    upgraded: bool,
    /// The head of the response still arriving was judged.
    pending_judged: bool,
    /// The streamed responses begun: core has not said they ended
    /// (`Finished`), whatever their framing let the parser see. (Those
    /// answering requests handed ahead wait for their turn.)
    streams_open: Vec<RequestId>,
}

impl Watch {
    /// Request `id`, if it was handed on this connection.
    fn handed(&self, id: RequestId) -> Option<&Handed> {
        let (handed_id, h) = self.handed.get(id.seq() as usize)?;
        (*handed_id == id).then_some(h)
    }

    fn handed_mut(&mut self, id: RequestId) -> Option<&mut Handed> {
        let (handed_id, h) = self.handed.get_mut(id.seq() as usize)?;
        (*handed_id == id).then_some(h)
    }

    fn closing(&self) -> Option<Closing> {
        match self.ending {
            Ending::Closed(c) => Some(c),
            _ => None,
        }
    }

    /// When the oldest byte still unread in the server's socket arrived.
    fn oldest_unread(&self) -> Option<Time> {
        self.unread_arrivals.front().map(|&(_, at)| at)
    }

    fn silent(&self) -> bool {
        self.received == 0 && self.responses == 0
    }

    fn idle(&self) -> bool {
        self.received == self.handed_bytes
            && self.owed.is_empty()
            && self.responses > 0
            && !self.closed_resp
            && !self.upgraded
            && self.streams_open.is_empty()
    }

    /// Core is reading a request on it: bytes past the requests handed
    /// over, none waiting for an answer, no close response written.
    fn receiving(&self) -> bool {
        self.received > self.handed_bytes
            && self.owed.is_empty()
            && !self.closed_resp
            && !self.upgraded
            && self.streams_open.is_empty()
    }
}

/// A request the application received.
#[derive(Clone, Copy, Debug)]
struct Handed {
    client: usize,
    no: usize,
    attempt: u32,
    /// Its response was completely handed to the kernel.
    sent_fully: bool,
    /// When the application answered (or failed) it.
    answered: Option<Tick>,
    /// The server was in PreStop then.
    answered_in_pre_stop: bool,
    /// Where its bytes end in the connection's byte stream.
    end: usize,
    /// `received` when the application answered: past `end`, core held a
    /// request pipelined behind it, which PreStop answers before closing.
    received_when_answered: usize,
    /// The application answered before reading its streamed body to the
    /// end (so core closes the connection: the application's choice, not
    /// the drain's).
    body_unread: bool,
    /// The application streams its response body.
    streamed: bool,
    /// How its response's body was framed, once its head was written.
    framing: Option<Framing>,
    /// Core refused it (its streamed body was bad or slow): the refusal is
    /// its answer.
    refused: bool,
    /// Its application broke the declared length of its streamed body: it
    /// ended, failed, with its response as far as it went.
    broke: bool,
    /// Core said it ended (`Finished`).
    ended: bool,
}

/// Counts the drain report is held against.
#[derive(Debug, Default)]
struct ReportCounts {
    /// Connections accepted while carrying out `DrainBacklog`.
    backlog_accepted: u64,
    /// Final responses to handed requests (the application's, or core's 500
    /// for an application fault) completely written after the first terminate.
    completed_after_terminate: u64,
    /// Core's own error responses completely written after the first terminate.
    rejected_after_terminate: u64,
    /// Connections core closed for their first-byte grace.
    silent: u64,
    /// Idle keep-alive connections core closed in the drain.
    idle: u64,
    /// Connections whose client lost owed response bytes, closed in the drain.
    drain_losses: u64,
    /// Closes after the first stop that could reset what a client was still
    /// sending: a linger that gave up, a stalled write or a forced close of
    /// a client that had not sent FIN, and had been sent a response or was
    /// still sending a request.
    reset_risk: u64,
    /// `Finished` events of the server under test labelled `cut`.
    cut: u64,
    /// Upgraded connections open when the drain began, or upgraded during
    /// it (each owed a `StopUpgraded`).
    upgraded_open: u64,
    /// Upgraded connections a forced exit closed.
    upgraded_cut: u64,
}

/// How the listener was closed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ListenerSeen {
    Open,
    /// After `DrainBacklog` and `backlog_empty`.
    AfterBacklog,
    /// Handed to the successor.
    HandedOff,
    /// By some other input (only a forced exit may do that).
    Early(Cause),
}

/// Situations the run met, summed over seeds by the runner, which fails a
/// large batch in which one stayed at zero although its knob was on.
#[derive(Clone, Copy, Debug, Default)]
pub struct Cover {
    /// Responses in the drain that kept their connection open, for a
    /// request its client had pipelined before the drain.
    pub kept_open_in_drain: u64,
    /// Responses the application gave in PreStop (each closes, unless a
    /// request follows it).
    pub pre_stop_responses: u64,
    /// Responses in PreStop that kept their connection open, for a request
    /// its client had pipelined behind.
    pub kept_open_in_pre_stop: u64,
    /// Requests handed over while one before them on their connection
    /// still waited for its answer (pipelined, handed ahead).
    pub handed_ahead: u64,
    /// Answers the application gave while a request before theirs on the
    /// connection still waited for one.
    pub answered_out_of_order: u64,
    /// Known gap: requests that arrived whole before the drain, pipelined
    /// behind a response core closed with before the drain (in PreStop)
    /// while they waited unread in the socket, so never answered; their
    /// clients retry them.
    pub closed_before_drain_dropped: u64,
    /// Farewell 503s a client read.
    pub farewells_read: u64,
    /// Final responses the successor wrote.
    pub successor_responses: u64,
    /// Closes that lingered first (half-close, then close).
    pub lingered: u64,
    /// Connections closed because the client left the response unread.
    pub write_stalls: u64,
    /// Owed requests cut by a forced exit (S7's allowance).
    pub owed_cut: u64,
    /// Owed requests whose answers a timer's close destroyed (a linger
    /// that gave up, a stalled write: S5's allowance).
    pub owed_lost_to_timers: u64,
    /// Streamed responses a forced exit cut (`Finished` says `cut`).
    pub streams_cut: u64,
    /// Producers that stopped without ending their stream.
    pub producers_stopped: u64,
    /// Reads of a streamed request body while core had stopped reading
    /// its connection (the application was behind).
    pub uploads_backpressured: u64,
    /// Upgraded connections a forced exit closed.
    pub upgrades_cut: u64,
}

/// The judge of one run.
pub struct Checker {
    watches: Vec<Watch>,
    /// By connection: still in HTTP, and not ended (lingering or closed):
    /// whether it may hold an active request (S1). Kept beside `watches`,
    /// a flag a connection, for the count every step makes; true from the
    /// connect until [`end`](Self::end) or [`on_upgraded`](Self::on_upgraded).
    in_http: Vec<bool>,
    counts: ReportCounts,
    /// Terminates and hand-offs so far.
    stops: u32,
    terminates: u32,
    handed_off: bool,
    drain_began_at: Option<Time>,
    drain_began: Option<Tick>,
    listener: ListenerSeen,
    allowed_losses: u64,
    /// Core's active count when the step began.
    step_active: usize,
    /// Upgraded connections owed a `StopUpgraded` by the end of the step.
    stop_owed: Vec<usize>,
    /// The step's input was a terminate while the server was already
    /// stopping.
    step_forcing_terminate: bool,
    tick: Tick,
    cover: Cover,
    config: Config,
    /// The longest a readable socket waits for the driver to read it.
    read_lag: Duration,
}

impl Checker {
    /// Keep-alive is off: every response closes its connection, whatever
    /// the phase, so such a close is no choice of the drain's or PreStop's.
    fn every_response_closes(&self) -> bool {
        self.config.keep_alive_timeout.is_zero()
    }

    /// A checker for a server configured with `config`, whose driver reads
    /// a readable socket up to `read_lag` late.
    pub fn new(config: Config, read_lag: Duration) -> Checker {
        Checker {
            watches: Vec::new(),
            in_http: Vec::new(),
            counts: ReportCounts::default(),
            stops: 0,
            terminates: 0,
            handed_off: false,
            drain_began_at: None,
            drain_began: None,
            listener: ListenerSeen::Open,
            allowed_losses: 0,
            step_active: 0,
            stop_owed: Vec::new(),
            step_forcing_terminate: false,
            tick: 0,
            cover: Cover::default(),
            config,
            read_lag,
        }
    }

    /// Responses lost for reasons the properties allow (deadline, timeouts).
    pub fn allowed_losses(&self) -> u64 {
        self.allowed_losses
    }

    /// What the run met, for the runner's coverage counters.
    pub fn cover(&self) -> Cover {
        self.cover
    }

    /// Every request handed to the application, connection by connection
    /// and in order on each.
    fn all_handed(&self) -> impl Iterator<Item = (usize, RequestId, &Handed)> + '_ {
        self.watches
            .iter()
            .enumerate()
            .flat_map(|(k, w)| w.handed.iter().map(move |(id, h)| (k, *id, h)))
    }

    fn next_tick(&mut self) -> Tick {
        self.tick += 1;
        self.tick
    }

    // Observations.

    /// A step begins.
    pub fn begin_step(&mut self, core: &Server) {
        self.step_active = core.active_requests();
        self.step_forcing_terminate = false;
    }

    /// A client connected: connection `k` (numbered in order) exists.
    pub fn on_connect(&mut self, k: usize) {
        debug_assert_eq!(k, self.watches.len());
        self.in_http.push(true);
        self.watches.push(Watch {
            successor: false,
            parser: ResponseParser::without_bodies(),
            owed: VecDeque::new(),
            handed_bytes: 0,
            handed: Vec::new(),
            sent_past_close: false,
            responses: 0,
            closed_resp: false,
            received: 0,
            received_last: Time::ZERO,
            received_at_drain: self.drain_began_at.map(|_| 0),
            counted_at_drain: false,
            accepted_at: None,
            idle_since: None,
            head_since: None,
            ending: Ending::Open,
            ended: None,
            loss_judged: false,
            half_closed_for: None,
            sent: Vec::new(),
            arrived: 0,
            unread_arrivals: VecDeque::new(),
            client_finals: 0,
            farewell_read: None,
            close_response: None,
            finished_responses: 0,
            farewell: None,
            offered: false,
            upgraded: false,
            pending_judged: false,
            streams_open: Vec::new(),
        });
    }

    /// The client of `k` sent a request behind one that asked to close.
    pub fn on_sent_past_close(&mut self, k: usize) {
        self.watches[k].sent_past_close = true;
    }

    /// The client of `k` wrote a request whose last byte is at `end` in the
    /// connection's byte stream.
    pub fn on_sent(&mut self, k: usize, no: usize, attempt: u32, end: u64) {
        self.watches[k].sent.push(Sent {
            no,
            attempt,
            end,
            arrived: None,
        });
    }

    /// The server's socket of `k` has received `total` bytes in all: the
    /// requests that ended within them have arrived (S7's "completely sent").
    pub fn on_delivered(&mut self, k: usize, total: u64, env: &Env) {
        let tick = self.next_tick();
        let w = &mut self.watches[k];
        w.unread_arrivals.push_back((total, env.now));
        while let Some(s) = w.sent.get_mut(w.arrived) {
            if s.end > total {
                break;
            }
            s.arrived = Some(tick);
            w.arrived += 1;
        }
    }

    /// The client of `k` read a final response (it answers the next request
    /// of the ledger).
    pub fn on_client_response(&mut self, k: usize, resp: &Response) {
        let w = &mut self.watches[k];
        if is_farewell(resp) {
            w.farewell_read = Some(w.client_finals);
            self.cover.farewells_read += 1;
        }
        w.client_finals += 1;
    }

    /// Whether core closed `k` in a way that may cut what it owed (a forced
    /// exit, a stalled write, ...): a body ended by the close may be short.
    pub fn closed_with_loss(&self, k: usize) -> bool {
        self.watches[k].closing().is_some_and(|cl| cl.loss_allowed)
    }

    /// Whether core still holds open on `k` a stream its client may have
    /// read whole (its producer met the length and never ended it): core
    /// reads no further request there until it ends.
    /// Whether core said request `id` on `k` ended (`Finished`): a stream
    /// answering it is gone, though its connection may still be open.
    pub fn request_ended(&self, k: usize, id: RequestId) -> bool {
        self.watches[k].handed(id).is_some_and(|h| h.ended)
    }

    pub fn stream_open(&self, k: usize) -> bool {
        !self.watches[k].streams_open.is_empty()
    }

    /// The request of `k`'s client that core hands over next: (request
    /// number, attempt), if its client sent one. Core hands requests in the
    /// order they came, and refuses for good the first it cannot read.
    pub fn next_to_hand(&self, k: usize) -> Option<(usize, u32)> {
        let w = &self.watches[k];
        w.sent.get(w.handed.len()).map(|s| (s.no, s.attempt))
    }

    /// A stop request arrived: a terminate, or (`handoff`) the listener was
    /// handed to a successor. Returns how many terminates have come.
    pub fn on_stop(&mut self, handoff: bool, core: &Server) -> u32 {
        // A terminate while stopping forces the exit (S9); a hand-off does
        // not.
        if !handoff && core.is_stopping() {
            self.step_forcing_terminate = true;
        }
        self.stops += 1;
        if handoff {
            self.handed_off = true;
        } else {
            self.terminates += 1;
        }
        self.terminates
    }

    /// The input just made began the drain: note, for every connection, how
    /// much core had received (later bytes begin requests in the drain).
    pub fn drain_began(&mut self, env: &Env) {
        self.drain_began_at = Some(env.now);
        self.drain_began = Some(self.next_tick());
        for (k, w) in self.watches.iter_mut().enumerate() {
            if w.successor {
                continue;
            }
            w.received_at_drain = Some(w.received);
            // DESIGN, "Bodies that stream": every upgraded connection is
            // told when the drain begins.
            if w.upgraded && matches!(w.ending, Ending::Open) {
                self.stop_owed.push(k);
                self.counts.upgraded_open += 1;
            }
        }
    }

    /// The driver told core that connection `k` held `unread` bytes in its
    /// socket. The first time in the drain (at its start, or at the accept
    /// in it) they count as received before the drain, as core counts
    /// them; a count before an idle close changes nothing here.
    pub fn on_unread(&mut self, k: usize, unread: usize) {
        if self.drain_began.is_none() {
            return;
        }
        let w = &mut self.watches[k];
        if w.successor || std::mem::replace(&mut w.counted_at_drain, true) {
            return;
        }
        let before = w.received + unread;
        w.received_at_drain = Some(w.received_at_drain.map_or(before, |b| b.max(before)));
    }

    /// A second terminate ended PreStop: the drain never began, and the
    /// upgraded connections open then count as open in it (and as cut).
    pub fn pre_stop_forced(&mut self) {
        let open = self
            .watches
            .iter()
            .filter(|w| !w.successor && w.upgraded && matches!(w.ending, Ending::Open));
        self.counts.upgraded_open += open.count() as u64;
    }

    /// A driver accepted connection `k` (the successor's, if `successor`).
    pub fn on_accepted(&mut self, k: usize, successor: bool, env: &Env) {
        let w = &mut self.watches[k];
        w.accepted_at = Some(env.now);
        w.successor = successor;
        if successor {
            w.received_at_drain = None;
        }
    }

    /// The driver accepted a connection while carrying out `DrainBacklog`.
    pub fn on_backlog_accept(&mut self) {
        self.counts.backlog_accepted += 1;
    }

    /// Core offered bytes to write on `k`.
    pub fn on_offered(&mut self, k: usize) {
        self.watches[k].offered = true;
    }

    /// The driver passed `n` bytes of `k` to `handle_recv`.
    pub fn on_received(&mut self, k: usize, n: usize, env: &Env) {
        let w = &mut self.watches[k];
        if w.received == w.handed_bytes && w.owed.is_empty() {
            w.head_since = Some(env.now);
        }
        w.received += n;
        let received = w.received as u64;
        while w
            .unread_arrivals
            .front()
            .is_some_and(|&(end, _)| end <= received)
        {
            w.unread_arrivals.pop_front();
        }
        w.received_last = env.now;
        w.idle_since = None;
    }

    /// Core's socket of `k` died without core knowing it: reset in the
    /// backlog, or accepted after exit. `forced`: by a forced exit.
    pub fn on_reset_unaccepted(&mut self, k: usize, forced: bool, env: &Env) {
        let closing = Closing {
            cause: None,
            loss_allowed: forced,
            forced,
            in_drain: self.stops > 0,
            step: env.step,
            app_broke: false,
        };
        self.end(k, Ending::Closed(closing));
    }

    /// Whether connection `k` may hold an active request (S1): it is still
    /// in HTTP, and core has not ended it (lingering or closed).
    fn may_hold_active(&self, k: usize) -> bool {
        debug_assert_eq!(self.in_http[k], {
            let w = &self.watches[k];
            !w.upgraded && matches!(w.ending, Ending::Open)
        });
        self.in_http[k]
    }

    /// Core's socket of `k` is half-closed or closed, or died (`ending` is
    /// not `Open`): noted now, in the order of observations.
    fn end(&mut self, k: usize, ending: Ending) {
        let tick = self.next_tick();
        let w = &mut self.watches[k];
        w.ended.get_or_insert(tick);
        w.ending = ending;
        self.in_http[k] = false;
    }

    /// `CloseListener` was carried out; `reset` are the connections it
    /// reset in the backlog. S8, S9: only after the backlog was drained,
    /// unless handed off or forced; and then it resets nothing.
    pub fn on_listener_closed(&mut self, cause: Cause, reset: &[usize], env: &mut Env) {
        let after_backlog = cause == Cause::BacklogEmpty;
        let deadline = self.drain_began_at.map(|d| d + self.config.drain_timeout);
        let forcing = match cause {
            Cause::Terminate => self.step_forcing_terminate,
            Cause::Timeout => deadline.is_some_and(|d| env.now >= d),
            _ => false,
        };
        for &k in reset {
            self.on_reset_unaccepted(k, forcing, env);
        }
        self.listener = match cause {
            Cause::BacklogEmpty => ListenerSeen::AfterBacklog,
            Cause::Handoff => ListenerSeen::HandedOff,
            other => ListenerSeen::Early(other),
        };
        if !after_backlog && !props::early_listener_close_ok(cause == Cause::Handoff, forcing) {
            env.fail(Failure::Safety(format!(
                "S9: CloseListener on {cause:?} before the backlog was drained, neither handed off nor forced"
            )));
        }
        if (after_backlog || cause == Cause::Handoff) && !reset.is_empty() {
            env.fail(Failure::Safety(format!(
                "S8: the listener closed after the backlog was drained (or handed off), yet it reset {} queued connections",
                reset.len()
            )));
        }
    }

    /// Core handed request `got` to the application on `k`. S3: never after
    /// the connection's close response, nor once core half-closed it.
    /// Returns whether the request may be answered.
    pub fn on_handed(&mut self, k: usize, id: RequestId, got: &Got, env: &mut Env) -> bool {
        let w = &mut self.watches[k];
        if w.closed_resp || !matches!(w.ending, Ending::Open) {
            env.fail(Failure::Safety(format!(
                "S3: k{k}: request {} handed to the application after the connection's close response",
                got.token
            )));
            return false;
        }
        // RFC 9112 §9.6: nothing behind a request that asked to close is
        // processed, even handed ahead of its turn.
        if let Some(closer) = w.owed.iter().find(|o| o.asks_close) {
            env.fail(Failure::Safety(format!(
                "S3: k{k}: request {} handed to the application behind {}, which asked to close",
                got.token, closer.token
            )));
            return false;
        }
        // Requests on a connection are numbered in order.
        if id.seq() as usize != w.handed.len() {
            env.fail(Failure::Safety(format!(
                "S4: k{k}: request {} handed as seq {}, but {} were handed before it",
                got.token,
                id.seq(),
                w.handed.len()
            )));
            return false;
        }
        if w.handed.iter().any(|(_, h)| h.answered.is_none()) {
            self.cover.handed_ahead += 1;
        }
        w.owed.push_back(Owed {
            id,
            token: got.token.clone(),
            start: w.handed_bytes,
            faulted: got.fault.is_some(),
            http10: got.http10,
            asks_close: got.asks_close,
            streams_body: got.streams_body,
        });
        w.handed_bytes += got.raw_len;
        let end = w.handed_bytes;
        w.handed.push((
            id,
            Handed {
                client: got.client,
                no: got.no,
                attempt: got.attempt,
                sent_fully: false,
                answered: None,
                answered_in_pre_stop: false,
                end,
                received_when_answered: 0,
                body_unread: false,
                streamed: false,
                framing: None,
                refused: false,
                broke: false,
                ended: false,
            },
        ));
        true
    }

    /// The application answered (or failed) request `id` on `k`, in
    /// `phase`; `body_unread` if its streamed body was not read to the end.
    pub fn on_app_answered(&mut self, k: usize, id: RequestId, phase: Phase, body_unread: bool) {
        let tick = self.next_tick();
        let w = &self.watches[k];
        let received = w.received;
        let before = &w.handed[..(id.seq() as usize).min(w.handed.len())];
        if before.iter().any(|(_, h)| h.answered.is_none()) {
            self.cover.answered_out_of_order += 1;
        }
        if let Some(h) = self.watches[k].handed_mut(id) {
            h.answered = Some(tick);
            h.answered_in_pre_stop = matches!(phase, Phase::PreStop { .. });
            h.received_when_answered = received;
            h.body_unread = body_unread;
        }
    }

    /// Core accepted the head of a streamed response to `id` on `k`.
    pub fn on_stream_started(&mut self, k: usize, id: RequestId) {
        let w = &mut self.watches[k];
        if let Some(h) = w.handed_mut(id) {
            h.streamed = true;
            w.streams_open.push(id);
        }
    }

    /// A producer stopped without ending the stream of `id`.
    pub fn on_producer_stopped(&mut self, _id: RequestId) {
        self.cover.producers_stopped += 1;
    }

    /// The application read a piece of a streamed request body; `paused`
    /// when core had stopped reading its connection meanwhile.
    pub fn on_body_read(&mut self, paused: bool) {
        self.cover.uploads_backpressured += u64::from(paused);
    }

    /// Core's `Upgraded` for `k`: it left HTTP. One upgraded while the
    /// server drains is owed a `StopUpgraded` at once.
    pub fn on_upgraded(&mut self, k: usize, successor: bool, env: &mut Env) {
        let w = &mut self.watches[k];
        if !w.owed.is_empty() || w.upgraded {
            return env.fail(Failure::Safety(format!(
                "Upgraded: k{k} left HTTP with {} requests unanswered (or twice)",
                w.owed.len()
            )));
        }
        w.upgraded = true;
        self.in_http[k] = false;
        if self.drain_began.is_some() && !successor {
            self.stop_owed.push(k);
            self.counts.upgraded_open += 1;
        }
    }

    /// Core's `StopUpgraded` for `k`: only for an upgraded connection of the
    /// server under test that is owed one.
    pub fn on_stop_upgraded(&mut self, k: usize, successor: bool, env: &mut Env) {
        match self.stop_owed.iter().position(|&o| o == k) {
            Some(i) if !successor => {
                self.stop_owed.swap_remove(i);
            }
            _ => env.fail(Failure::Safety(format!(
                "StopUpgraded for k{k}, which was not owed one (upgraded {}, successor {successor})",
                self.watches[k].upgraded
            ))),
        }
    }

    /// Core wrote on `k` the bytes of `parts`, one after another. S4: they
    /// parse as HTTP/1.1, responses come in request order, nothing follows
    /// a `Connection: close` response. S2: a request the application failed
    /// is answered by core's 500 in its place. S7: responses that must close
    /// do — a streamed one from its head on.
    pub fn on_written(&mut self, k: usize, parts: &[&[u8]], env: &mut Env) {
        let w = &mut self.watches[k];
        if w.closed_resp {
            let len: usize = parts.iter().map(|p| p.len()).sum();
            return env.fail(Failure::Safety(format!(
                "S4: k{k}: {len} bytes written after the Connection: close response"
            )));
        }
        let mut out: Vec<Response> = Vec::new();
        if let Err(e) = parts.iter().try_for_each(|p| w.parser.feed(p, &mut out)) {
            return env.fail(Failure::Safety(format!(
                "S4: k{k}: core wrote a malformed response: {e}"
            )));
        }
        self.judge_responses(k, out, env);
        let w = &self.watches[k];
        if let (Some(pending), false) = (w.parser.pending(), w.pending_judged) {
            if let Err(e) = self.judge_head(k, pending, token_of(pending)) {
                return env.fail(Failure::Safety(e));
            }
            let framing = pending.framing;
            self.note_framing(k, framing);
            self.watches[k].pending_judged = true;
        }
    }

    /// The head of a response core wrote on `k` (complete, or with its
    /// body still arriving): its framing (S4: a length, chunked only to
    /// HTTP/1.1, ended by the close only for HTTP/1.0 and with `Connection:
    /// close`); and whether it closes when it must (S7). `token` is the
    /// response's (its caller has it at hand).
    fn judge_head(&self, k: usize, resp: &Response, token: Option<&str>) -> Result<(), String> {
        let w = &self.watches[k];
        let front = w.owed.front().filter(|o| token == Some(o.token.as_str()));
        let handed = front.and_then(|o| w.handed(o.id));
        let streamed = handed.is_some_and(|h| h.streamed);
        let http10 = front.is_some_and(|o| o.http10);
        let framing_ok = match resp.framing {
            Framing::Length(_) | Framing::Bodiless => true,
            Framing::Chunked => streamed && !http10,
            Framing::UntilClose => streamed && http10 && resp.close,
        };
        if !framing_ok {
            return Err(format!(
                "S4: k{k}: a {} response framed {:?} (streamed {streamed}, HTTP/1.0 {http10}, close {})",
                resp.status, resp.framing, resp.close
            ));
        }
        if let Some(owed) = front {
            let pre_stop = handed.is_some_and(|h| h.answered_in_pre_stop);
            let read_past_it = handed.is_some_and(|h| h.received_when_answered > h.end);
            let begun_in_drain = w.received_at_drain.is_some_and(|r| owed.start >= r);
            if props::response_must_close(pre_stop && !read_past_it, begun_in_drain)
                && !resp.close
                && resp.status != 101
            {
                return Err(format!(
                    "S7: k{k}: {} {}, but its response keeps the connection",
                    owed.token,
                    if pre_stop {
                        "was answered in PreStop with nothing after it"
                    } else {
                        "began after the drain began"
                    }
                ));
            }
            // The close is the response's own for a 101, a body the close
            // ends, a streamed body the application left unread, a request
            // that asked for it, or keep-alive off.
            let inherent = resp.status == 101
                || resp.framing == Framing::UntilClose
                || handed.is_some_and(|h| h.body_unread)
                || owed.asks_close
                || self.every_response_closes();
            if props::pre_stop_dropped_pipelined(pre_stop, read_past_it, resp.close, inherent) {
                return Err(format!(
                    "S7: k{k}: {} was answered in PreStop with `Connection: close`, though core had received a request after it",
                    owed.token
                ));
            }
        }
        Ok(())
    }

    /// The response to the oldest request owed on `k` is framed `framing`.
    fn note_framing(&mut self, k: usize, framing: Framing) {
        let w = &mut self.watches[k];
        if let Some(id) = w.owed.front().map(|o| o.id) {
            if let Some(h) = w.handed_mut(id) {
                h.framing = Some(framing);
            }
        }
    }

    /// Final responses core wrote on `k`, complete: each answers the oldest
    /// request owed, or is core's own refusal.
    fn judge_responses(&mut self, k: usize, out: Vec<Response>, env: &mut Env) {
        // A 101 is final: it answers its request, and HTTP ends there.
        for resp in out
            .into_iter()
            .filter(|r| r.status >= 200 || r.status == 101)
        {
            let token = token_of(&resp);
            let w = &mut self.watches[k];
            let judged = std::mem::replace(&mut w.pending_judged, false);
            if !judged {
                if let Err(e) = self.judge_head(k, &resp, token) {
                    return env.fail(Failure::Safety(e));
                }
                if token.is_some() {
                    self.note_framing(k, resp.framing);
                }
            }
            let every_response_closes = self.every_response_closes();
            let w = &mut self.watches[k];
            let nth = w.responses as usize;
            w.responses += 1;
            w.closed_resp |= resp.close;
            // Core's own refusal of a request whose body streams comes in
            // its place: the application had it already.
            let front_refused = w.owed.front().is_some_and(|o| o.streams_body)
                && token.is_none()
                && (400..500).contains(&resp.status)
                && resp.close;
            let front_faulted = w.owed.front().is_some_and(|o| o.faulted) && !front_refused;
            // The answer to a handed request: its token, or core's 500 for
            // one the application failed, or core's refusal of a streamed
            // body.
            let answers_front = match (token, front_faulted) {
                (Some(_), _) => true,
                (None, true) if resp.status == 500 => true,
                (None, true) => {
                    let first = &w.owed[0].token;
                    return env.fail(Failure::Safety(format!(
                        "S2: k{k}: the application failed {first}, but core answered {} instead of 500",
                        resp.status
                    )));
                }
                (None, false) => front_refused,
            };
            let mut streamed = false;
            let mut answered_in_drain = false;
            let mut pre_stop_received = None;
            let mut client_asked = false;
            if answers_front {
                let Some(owed) = w.owed.pop_front() else {
                    return env.fail(Failure::Safety(format!(
                        "S4: k{k}: response for {token:?} but no request is unanswered"
                    )));
                };
                if token.is_some_and(|t| t != owed.token) {
                    return env.fail(Failure::Safety(format!(
                        "S4: k{k}: response for {token:?} but the oldest unanswered request is {}",
                        owed.token
                    )));
                }
                client_asked = owed.asks_close;
                let mut pre_stop = false;
                if let Some(h) = w.handed_mut(owed.id) {
                    h.sent_fully = true;
                    h.refused = front_refused;
                    streamed = h.streamed;
                    pre_stop = h.answered_in_pre_stop;
                    // A close the application chose (its body unread) is
                    // not the drain's.
                    // Nor is the close a body without a length needs, or
                    // the one keep-alive off puts on every response.
                    let chosen = !h.body_unread
                        && resp.framing != Framing::UntilClose
                        && !every_response_closes;
                    answered_in_drain = match (h.answered, self.drain_began) {
                        (Some(a), Some(d)) => a > d && chosen,
                        _ => false,
                    };
                    pre_stop_received = (pre_stop && chosen).then_some(h.received_when_answered);
                }
                if w.successor {
                    self.cover.successor_responses += 1;
                }
                self.cover.pre_stop_responses += u64::from(pre_stop && token.is_some());
                self.cover.kept_open_in_pre_stop +=
                    u64::from(pre_stop && token.is_some() && !resp.close && resp.status != 101);
                if answered_in_drain && !resp.close && !w.successor {
                    self.cover.kept_open_in_drain += 1;
                }
            } else if let Some(first) = w.owed.front() {
                return env.fail(Failure::Safety(format!(
                    "S4: k{k}: rejection {} written before the answer to {}",
                    resp.status, first.token
                )));
            }
            let w = &mut self.watches[k];
            if resp.close && w.close_response.is_none() {
                w.close_response = Some(CloseResponse {
                    nth,
                    answered_in_drain,
                    pre_stop_received,
                    client_asked,
                });
            }
            // A stream is over when core says so (`Finished`), whatever
            // its framing let the parser see.
            if streamed {
                continue;
            }
            if w.idle() {
                w.idle_since = Some(env.now);
            }
            if self.stops > 0 && !w.successor {
                match answers_front && !front_refused {
                    true => self.counts.completed_after_terminate += 1,
                    false => self.counts.rejected_after_terminate += 1,
                }
            }
        }
    }

    /// Core's `Farewell` for `k`: `written` when the driver wrote it (the
    /// socket had room for all of it). Only for a request core was still
    /// receiving, and only in a forced exit, whose close follows.
    pub fn on_farewell(&mut self, k: usize, bytes: &[u8], written: bool, env: &mut Env) {
        let w = &mut self.watches[k];
        if !w.receiving() || !matches!(w.ending, Ending::Open) {
            return env.fail(Failure::Safety(format!(
                "S7: k{k}: a farewell, but core was not receiving a request on it (received {}, handed {}, {} owed)",
                w.received,
                w.handed_bytes,
                w.owed.len()
            )));
        }
        let mut out = Vec::new();
        let mut parser = ResponseParser::new();
        if parser.feed(bytes, &mut out).is_err()
            || parser.mid_response()
            || out.len() != 1
            || !is_farewell(&out[0])
        {
            return env.fail(Failure::Safety(format!(
                "S7: k{k}: the farewell is not one 503 with Retry-After and Connection: close"
            )));
        }
        w.farewell = Some(written);
    }

    /// Core's `Finished` for a request on `k`: `cut` ones (of the server
    /// under test, before its exit) are summed for the report, complete
    /// ones matched with what the client read at the end.
    pub fn on_finished(&mut self, k: usize, f: &Finished, successor: bool, env: &mut Env) {
        // What it says: when (now), about which request (one handed on this
        // connection, if any), and that an unfinished one ends it.
        let named = f
            .request
            .map_or(true, |id| self.watches[k].handed(id).is_some());
        let answered = matches!(f.outcome, Outcome::Complete | Outcome::AppFault);
        let wrong = if f.finished_at != env.now {
            Some("its time is not now")
        } else if !named {
            Some("it names a request never handed on the connection")
        } else if answered && f.request.is_none() {
            Some("an answered request without its id")
        } else if matches!(f.outcome, Outcome::Unfinished(_)) && f.keeps_connection {
            Some("an unfinished request keeps the connection")
        } else {
            None
        };
        if let Some(what) = wrong {
            return env.fail(Failure::Safety(format!("Finished on k{k}: {what}: {f:?}")));
        }
        // A body ended by the close is complete when core says so: the
        // stream's end is written, the close follows.
        let w = &mut self.watches[k];
        let until_close = w
            .parser
            .pending()
            .is_some_and(|r| r.framing == Framing::UntilClose)
            && f.request.is_some()
            && f.request == w.owed.front().map(|o| o.id);
        if f.outcome == Outcome::Complete && until_close {
            let mut out = Vec::new();
            if let Err(e) = w.parser.finish(&mut out) {
                return env.fail(Failure::Safety(format!(
                    "S4: k{k}: a body ended by the close: {e}"
                )));
            }
            self.judge_responses(k, out, env);
        }
        if let (Outcome::Unfinished(CloseReason::StreamMismatch), Some(h)) = (
            f.outcome,
            f.request.and_then(|id| self.watches[k].handed_mut(id)),
        ) {
            h.broke = true;
        }
        let handed = f.request.and_then(|id| self.watches[k].handed(id).copied());
        if let (Outcome::Unfinished(reason), Some(h)) = (f.outcome, handed) {
            // S2: a chunked response cut short was not completely written:
            // it lacks its last chunk. (One with a length may be whole on
            // the wire and still unfinished: its producer never ended it.)
            if h.sent_fully && h.framing == Some(Framing::Chunked) {
                return env.fail(Failure::Safety(format!(
                    "S2: k{k}: Finished says {:?} ended {reason:?}, but its whole response was written",
                    f.request
                )));
            }
            if h.streamed && reason.is_forced() && !successor {
                self.cover.streams_cut += 1;
            }
        }
        // (Unfinished, it ends with its connection, whose close follows.)
        if f.outcome == Outcome::Complete {
            self.watches[k]
                .streams_open
                .retain(|&id| Some(id) != f.request);
        }
        if let Some(h) = f.request.and_then(|id| self.watches[k].handed_mut(id)) {
            h.ended = true;
        }
        // A stream's end: its response complete on the wire (S2), and done.
        if let (Outcome::Complete, Some(h)) = (f.outcome, handed) {
            if h.streamed {
                if !h.sent_fully {
                    return env.fail(Failure::Safety(format!(
                        "S2: k{k}: Finished says the stream of {:?} is complete, but its response is not (framed {:?})",
                        f.request, h.framing
                    )));
                }
                let w = &mut self.watches[k];
                if w.idle() {
                    w.idle_since = Some(env.now);
                }
                if self.stops > 0 && !w.successor {
                    self.counts.completed_after_terminate += 1;
                }
            }
        }
        let w = &mut self.watches[k];
        match f.outcome {
            Outcome::Complete | Outcome::AppFault | Outcome::Rejected(_) => {
                w.finished_responses += 1;
                // Finished comes once the response's last byte is handed
                // over, never before.
                if w.finished_responses > w.responses as usize {
                    env.fail(Failure::Safety(format!(
                        "S2: k{k}: Finished {:?} for response #{}, but only {} were completely written",
                        f.outcome, w.finished_responses, w.responses
                    )));
                }
            }
            // A streamed response can go out whole and its request still
            // end unfinished: the application wrote past its declared
            // length, or never ended the stream before the deadline.
            Outcome::Unfinished(_) if w.finished_responses < w.responses as usize => {
                w.finished_responses += 1;
            }
            Outcome::Unfinished(_) => {}
        }
        if f.outcome.label() == "cut" && !successor {
            self.counts.cut += 1;
        }
    }

    /// `HalfClose` of `k`: the decision to end it, judged now.
    #[allow(clippy::too_many_arguments)]
    pub fn on_half_close(
        &mut self,
        k: usize,
        reason: CloseReason,
        cause: Cause,
        phase: Phase,
        kernel: &Kernel,
        env: &mut Env,
    ) {
        if matches!(self.watches[k].ending, Ending::Open) {
            self.judge_decision(k, reason, cause, phase, kernel, env);
        }
        self.all_finished(k, env);
        self.end(k, Ending::HalfClosed(env.now));
        self.watches[k].half_closed_for = Some(reason);
    }

    /// S2: when core ends a connection, every response completely written
    /// on it has had its `Finished`.
    fn all_finished(&self, k: usize, env: &mut Env) {
        let w = &self.watches[k];
        if w.finished_responses != w.responses as usize {
            env.fail(Failure::Safety(format!(
                "S2: k{k}: ended with {} responses completely written, but {} Finished for them",
                w.responses, w.finished_responses
            )));
        }
    }

    /// S2: when core closes a connection, every request it handed over on
    /// it has ended with its `Finished` — answered, or unfinished with the
    /// close — including requests handed ahead of their turn.
    fn every_handed_ended(&self, k: usize, env: &mut Env) {
        let w = &self.watches[k];
        if let Some((id, h)) = w.handed.iter().find(|(_, h)| !h.ended) {
            env.fail(Failure::Safety(format!(
                "S2: k{k}: closed, but request {id:?} (script {}.{}.{}) handed over on it never had its Finished",
                h.client, h.no, h.attempt
            )));
        }
    }

    /// `Close` of `k`: judged as a decision unless a half-close came first,
    /// and remembered for judging what its client loses. `eof`: the driver
    /// had told core of the client's FIN.
    ///
    /// Losing a response to a close is allowed when the exit was forced, when
    /// linger gave up on too many bytes, and when a timer closed it — except
    /// a linger timer closing a socket with unread input: lingering reads
    /// everything, so unread input there means core stopped the reads.
    #[allow(clippy::too_many_arguments)]
    pub fn on_close(
        &mut self,
        k: usize,
        reason: CloseReason,
        cause: Cause,
        phase: Phase,
        eof: bool,
        kernel: &Kernel,
        env: &mut Env,
    ) {
        let ending = self.watches[k].ending;
        self.all_finished(k, env);
        self.every_handed_ended(k, env);
        match ending {
            Ending::Open => {
                self.judge_decision(k, reason, cause, phase, kernel, env);
                // S5, S8: a client that may still be sending is closed only
                // after lingering, but for the reasons that allow it — or
                // the application broke its response, or closed its
                // upgraded connection after the client's FIN.
                let app_closed_upgraded = reason == CloseReason::UpgradedClosed
                    && self.watches[k].upgraded
                    && (kernel.server_got_fin(k) || kernel.client_aborted(k));
                if reason == CloseReason::UpgradedClosed && !app_closed_upgraded {
                    env.fail(Failure::Safety(format!(
                        "k{k}: core closed it for UpgradedClosed, but the application never closed an upgraded connection there"
                    )));
                }
                if !eof
                    && !props::may_close_without_linger(reason)
                    && !app_broke_response(reason)
                    && !app_closed_upgraded
                {
                    env.fail(Failure::Safety(format!(
                        "S8: k{k}: core closed it for {reason:?} on {cause:?} without lingering, while its client may still be sending (a request in flight is reset)"
                    )));
                }
            }
            Ending::HalfClosed(since) => {
                self.cover.lingered += 1;
                let due = props::linger_close_due(since, &self.config);
                if env.now > due && !reason.is_forced() {
                    env.fail(Failure::Safety(format!(
                        "S9: k{k}: half-closed at {since:?}, closed only at {:?}, past the linger timeout",
                        env.now
                    )));
                }
            }
            Ending::Closed(_) => {}
        }
        let loss_allowed = match reason {
            // What arrived within the driver's lag is not yet core's to read.
            CloseReason::LingerTimeout => {
                kernel.server_unread(k) == 0 || self.read_by_lag(k).is_some_and(|by| env.now <= by)
            }
            other => props::close_may_lose(other) || app_broke_response(other),
        };
        if self.watches[k].upgraded && reason.is_forced() && !self.watches[k].successor {
            self.counts.upgraded_cut += 1;
            self.cover.upgrades_cut += 1;
        }
        let w = &self.watches[k];
        let reset_risk = match reason {
            CloseReason::LingerTimeout | CloseReason::LingerOverflow => true,
            CloseReason::WriteStall => !eof,
            r if r.is_forced() => {
                let receiving = matches!(ending, Ending::Open) && w.receiving();
                (w.offered || receiving) && !eof
            }
            _ => false,
        };
        if reset_risk && self.stops > 0 && !w.successor {
            self.counts.reset_risk += 1;
        }
        self.cover.write_stalls += u64::from(reason == CloseReason::WriteStall);
        // S7: a farewell is owed to a request the forced exit cut while it
        // was arriving, when the socket could take it.
        let w = &self.watches[k];
        if reason.is_forced()
            && matches!(ending, Ending::Open)
            && w.receiving()
            && w.farewell.is_none()
            && !w.successor
        {
            let room = kernel.room(k, Dir::S2c, FAREWELL_BYTES) >= FAREWELL_BYTES;
            if room && !kernel.client_closed(k) {
                env.fail(Failure::Safety(format!(
                    "S7: k{k}: the forced exit cut a request being received, with room on the socket, but core sent no farewell"
                )));
            }
        }
        let closing = Closing {
            cause: Some(cause),
            loss_allowed,
            forced: reason.is_forced(),
            in_drain: self.stops > 0,
            step: env.step,
            app_broke: app_broke_response(reason),
        };
        self.end(k, Ending::Closed(closing));
    }

    /// When the driver reads, at the latest, the oldest byte unread in
    /// `k`'s socket (`None` if it has none, or reads without lag).
    fn read_by_lag(&self, k: usize) -> Option<Time> {
        let at = self.watches[k].oldest_unread()?;
        (!self.read_lag.is_zero()).then(|| at + self.read_lag)
    }

    /// Checks the reason core gave for ending `k` against what the world
    /// saw of it, and whether the drain ended it in time (S9); counts the
    /// closes the drain report counts.
    fn judge_decision(
        &mut self,
        k: usize,
        reason: CloseReason,
        cause: Cause,
        phase: Phase,
        kernel: &Kernel,
        env: &mut Env,
    ) {
        let w = &self.watches[k];
        let (silent, idle) = (w.silent(), w.idle());
        let draining = matches!(phase, Phase::Draining { .. } | Phase::Exited);
        // S9: an idle connection closes within `idle_close_after` of its last
        // response (at once if that passed before the drain), a silent one
        // within `first_byte_grace` of its accept or of the drain's start.
        if let (Some(d), false) = (self.drain_began_at, w.successor) {
            let deadline = d + self.config.drain_timeout;
            let late = match (w.idle_since, w.accepted_at) {
                (Some(t), _) if idle => Some(("idle", props::idle_close_due(t, d, &self.config))),
                (_, Some(a)) if silent => Some((
                    "silent",
                    props::silent_close_due(a, d, deadline, &self.config),
                )),
                _ => None,
            }
            // Bytes that reached the socket by then, unread as the driver
            // lags, were counted by the close's ask: core waits for them.
            .filter(|&(_, by)| env.now > by && !w.oldest_unread().is_some_and(|at| at <= by));
            if let Some((what, by)) = late {
                return env.fail(Failure::Safety(format!(
                    "S9: k{k}: a {what} connection due to close by {by:?} was ended only now, for {reason:?}"
                )));
            }
        }
        // S9, the other side: no timer closes a connection before its time.
        let early = match (reason, w.idle_since, w.accepted_at) {
            (CloseReason::IdleInDrain, Some(t), _) => self
                .drain_began_at
                .map(|d| props::idle_close_due(t, d, &self.config)),
            (CloseReason::KeepAliveTimeout, Some(t), _) if idle => {
                Some(t + self.config.keep_alive_timeout)
            }
            (CloseReason::KeepAliveTimeout | CloseReason::NewConnectionTimeout, _, Some(a))
                if silent =>
            {
                Some(a + self.config.new_connection_timeout)
            }
            (CloseReason::FirstByteGrace, _, Some(a)) => self.drain_began_at.map(|d| {
                props::silent_close_due(a, d, d + self.config.drain_timeout, &self.config)
            }),
            _ => None,
        }
        .filter(|&due| env.now < due);
        if let Some(due) = early {
            return env.fail(Failure::Safety(format!(
                "S9: k{k}: closed for {reason:?} at {:?}, before its time {due:?}",
                env.now
            )));
        }
        // The header timeout runs from the head's first byte: never sooner.
        if let (CloseReason::Rejected(ebb_core::Reject::HeadTimeout), Some(since)) =
            (reason, w.head_since)
        {
            if env.now < since + self.config.header_read_timeout {
                return env.fail(Failure::Safety(format!(
                    "header timeout: k{k}: 408 at {:?}, but the head began no sooner than {since:?}",
                    env.now
                )));
            }
        }
        // The body timeout runs from the body's last progress, no sooner
        // than its last byte.
        if reason == CloseReason::Rejected(ebb_core::Reject::BodyTimeout)
            && env.now < w.received_last + self.config.body_read_timeout
        {
            return env.fail(Failure::Safety(format!(
                "body timeout: k{k}: 408 at {:?}, but its last byte came at {:?}",
                env.now, w.received_last
            )));
        }
        let wrong = match reason {
            CloseReason::FirstByteGrace => {
                self.counts.silent += 1;
                !(silent && draining && matches!(cause, Cause::Timeout | Cause::Unread))
            }
            CloseReason::IdleInDrain => {
                self.counts.idle += 1;
                !(idle
                    && draining
                    && matches!(
                        cause,
                        Cause::Timeout | Cause::Terminate | Cause::Handoff | Cause::Unread
                    ))
            }
            // Closing a connection that is not idle could lose a request (S7).
            CloseReason::KeepAliveTimeout => {
                !((idle || silent) && !draining && matches!(cause, Cause::Timeout | Cause::Unread))
            }
            CloseReason::NewConnectionTimeout => {
                !(silent && !draining && matches!(cause, Cause::Timeout | Cause::Unread))
            }
            CloseReason::DeadlineCut => cause != Cause::Timeout || !draining,
            CloseReason::ForcedExit => cause != Cause::Terminate,
            CloseReason::Aborted => cause != Cause::Aborted,
            CloseReason::ClientClosed => !kernel.server_got_fin(k),
            _ => false,
        };
        if wrong {
            let seen = format!(
                "received {}, handed {}, {} responses, client FIN {}",
                w.received,
                w.handed_bytes,
                w.responses,
                kernel.server_got_fin(k)
            );
            env.fail(Failure::Safety(format!(
                "close reason: k{k}: core closed it for {reason:?} on {cause:?}, but the world saw: {seen}"
            )));
        }
    }

    /// A client lost response bytes it was owed on `k` (a reset destroyed
    /// them, or the connection ended mid-response). S5, S8: allowed only
    /// when core closed it at a deadline or a forced exit; never for a close
    /// core made in the ordinary course.
    pub fn lost(&mut self, k: usize, what: &str, kernel: &Kernel, env: &mut Env) {
        let w = &mut self.watches[k];
        if kernel.client_aborted(k)
            || w.sent_past_close
            || std::mem::replace(&mut w.loss_judged, true)
        {
            return;
        }
        match w.closing() {
            Some(cl) if cl.loss_allowed => {
                self.allowed_losses += 1;
                if cl.in_drain && !w.successor && !cl.app_broke {
                    self.counts.drain_losses += 1;
                }
            }
            Some(cl) => env.fail(Failure::Safety(format!(
                "S5: k{k}: {what}: core closed the connection on {:?} (not a deadline or forced exit) — a response lost to a reset core caused",
                cl.cause
            ))),
            // The application broke its declared length: the response ends
            // where it went wrong, then the connection (what came before it
            // was written whole).
            None if w.half_closed_for.is_some_and(app_broke_response) => {
                self.allowed_losses += 1;
            }
            None => env.fail(Failure::Safety(format!(
                "S4: k{k}: {what} while core's socket is still open (half-closed mid-response?)"
            ))),
        }
    }

    /// A reset reached the client of `k`. S8: only a close at a deadline, a
    /// timer or a forced exit may reset a client that did nothing wrong.
    pub fn reset_reached(&mut self, k: usize, kernel: &Kernel, env: &mut Env) {
        if kernel.client_aborted(k) || self.watches[k].sent_past_close {
            return;
        }
        match self.watches[k].closing() {
            Some(cl) if cl.loss_allowed => {}
            other => env.fail(Failure::Safety(format!(
                "S8: k{k}: a reset reached a client that did nothing wrong (core's close: {other:?})"
            ))),
        }
    }

    // Judgements.

    /// Safety, after every step that made an input to `core` (the server
    /// under test, or the successor, through `driver`).
    pub fn check_step(
        &mut self,
        core: &Server,
        driver: &DriverModel,
        kernel: &Kernel,
        env: &mut Env,
    ) {
        if let Err(e) = props::invariants(core) {
            env.fail(Failure::Safety(e));
        }
        if driver.is_successor() {
            return self.check_no_stall(core, driver, kernel, env);
        }
        // S1, from outside: only a connection still in HTTP and not
        // lingering can hold an active request — an upgraded one never does.
        // The count stops once it reaches the active requests (more cannot
        // break S1), and is taken in full only to report a breach.
        let active = core.active_requests();
        let may_be_active = |limit: usize| {
            driver
                .socks()
                .filter(|s| self.may_hold_active(s.k))
                .take(limit)
                .count()
        };
        if active > 0 && may_be_active(active) < active {
            let may_be_active = may_be_active(usize::MAX);
            return env.fail(Failure::Safety(format!(
                "S1: {active} active requests, but only {may_be_active} connections are open, in HTTP and not lingering"
            )));
        }
        if let Some(&k) = self.stop_owed.first() {
            return env.fail(Failure::Safety(format!(
                "StopUpgraded: k{k} was upgraded when the drain began (or upgraded in it), but was never told to stop"
            )));
        }
        let exited = driver.exit().is_some();
        let draining = matches!(core.phase(), Phase::Draining { .. });
        let listener_closed = self.listener != ListenerSeen::Open;
        if !exited
            && props::must_exit_at_once(
                self.step_forcing_terminate,
                draining,
                listener_closed,
                core.connections(),
            )
        {
            let why = if self.step_forcing_terminate {
                "S9: a second terminate, but no Exit in the same step"
            } else {
                "S6: draining, listener closed, no connection left, but no Exit in this step"
            };
            env.fail(Failure::Safety(why.into()));
        }
        // DESIGN, drain phase 2: PreStop tells the application the server is
        // stopping, and still accepts.
        if let Phase::PreStop { .. } = core.phase() {
            if !core.is_stopping() {
                env.fail(Failure::Safety(
                    "PreStop: is_stopping() is false, so readiness would not report it".into(),
                ));
            }
            if self.listener != ListenerSeen::Open {
                env.fail(Failure::Safety(
                    "PreStop: the listener was closed while the server still accepts".into(),
                ));
            }
        }
        self.check_no_stall(core, driver, kernel, env);
    }

    /// Between steps the driver has done everything core asked; so core must
    /// not hold bytes for a socket with room without having said `Transmit`,
    /// nor, with nothing to write, want to read a connection it told the
    /// driver to pause without having said `ResumeRead`. Either would stall
    /// until a deadline, where the cut would look legitimate (and hide a
    /// breach of S2 or S7).
    fn check_no_stall(&self, core: &Server, driver: &DriverModel, kernel: &Kernel, env: &mut Env) {
        for OpenSock { id, k, paused } in driver.socks() {
            let [a, b] = core.transmit(id);
            let queued = a.len() + b.len();
            if queued > 0
                && kernel.server_end(k) == crate::kernel::ServerEnd::Open
                && kernel.room(k, Dir::S2c, queued) > 0
            {
                return env.fail(Failure::Safety(format!(
                    "S2/S7 (stall): core holds {queued} bytes for k{k}, whose socket has room, without a Transmit"
                )));
            }
            // With output queued, the write's completion moves things on;
            // with none, core waits on input the driver will never read.
            if queued == 0 && paused && core.wants_read(id) {
                return env.fail(Failure::Safety(format!(
                    "S2/S7 (stall): core wants to read k{k} again but never said ResumeRead"
                )));
            }
        }
    }

    /// The drain report, when Exit arrives: timing (S6, S9, S1) and the
    /// counts (report).
    pub fn check_exit(&mut self, r: &DrainReport, core: &Server, env: &mut Env) {
        let c = &self.config;
        if let Err(e) = props::exit_report(r, c, env.now, self.counts.cut, None) {
            let kind = if e.starts_with("S6") {
                Failure::Safety(e)
            } else {
                Failure::Report(e)
            };
            env.fail(kind);
        }
        if core.active_requests() != 0 {
            env.fail(Failure::Safety(format!(
                "S1: exit with an active count of {}",
                core.active_requests()
            )));
        }
        if (r.upgraded_open, r.upgraded_cut)
            != (self.counts.upgraded_open, self.counts.upgraded_cut)
        {
            env.fail(Failure::Report(format!(
                "report upgraded {} (cut {}), but {} upgraded connections were open in the drain and {} were cut",
                r.upgraded_open, r.upgraded_cut, self.counts.upgraded_open, self.counts.upgraded_cut
            )));
        }
        // S6: the drain waits for every request handed over — a stream in
        // progress among them — unless the exit was forced; a connection
        // ended otherwise was ended by its client or its application.
        if r.forced.is_none() {
            let waiting = self.all_handed().find(|&(k, _, h)| {
                let w = &self.watches[k];
                !h.sent_fully && !h.broke && !w.successor && !kernel_free_end(w.closing())
            });
            if let Some((k, id, _)) = waiting {
                env.fail(Failure::Safety(format!(
                    "S6: exit not forced, but {id:?} on k{k} was still unanswered (core's close: {:?})",
                    self.watches[k].closing()
                )));
            }
        }
        if r.handed_off != self.handed_off {
            env.fail(Failure::Report(format!(
                "report handed_off {} but the listener was{} handed off",
                r.handed_off,
                if self.handed_off { "" } else { " not" }
            )));
        }
        if r.backlog_accepted != self.counts.backlog_accepted {
            env.fail(Failure::Report(format!(
                "report backlog_accepted {} but the driver accepted {} from the backlog",
                r.backlog_accepted, self.counts.backlog_accepted
            )));
        }
        if r.requests_completed != self.counts.completed_after_terminate
            || r.requests_rejected != self.counts.rejected_after_terminate
        {
            env.fail(Failure::Report(format!(
                "report requests_completed {} and rejected {}, but {} answers and {} rejections were completely written after terminate",
                r.requests_completed,
                r.requests_rejected,
                self.counts.completed_after_terminate,
                self.counts.rejected_after_terminate
            )));
        }
        match r.forced {
            None => {}
            Some(Forced::SecondTerminate) if self.terminates < 1 || self.stops < 2 => env.fail(
                Failure::Report("forced by a second terminate that never came".into()),
            ),
            Some(_) => {
                // S2: every handed request still unanswered on a connection
                // the forced exit closed was cut; at most every active one was.
                let lower = self
                    .all_handed()
                    .filter(|&(k, _, h)| {
                        !h.sent_fully
                            && !h.broke
                            && self.watches[k].closing().is_some_and(|cl| {
                                cl.step == env.step
                                    && matches!(cl.cause, Some(Cause::Timeout | Cause::Terminate))
                            })
                    })
                    .count() as u64;
                // At most those, plus one request being received on each
                // connection active before (invisible from outside).
                let upper = lower + self.step_active as u64;
                if r.requests_cut < lower || r.requests_cut > upper {
                    env.fail(Failure::Report(format!(
                        "report requests_cut {} outside [{lower}, {upper}] (unanswered handed requests cut, + active before)",
                        r.requests_cut
                    )));
                }
            }
        }
    }

    /// At the end: liveness — core exited; every handed request was
    /// answered completely, or its loss is allowed and counted (S2); every
    /// client finished. Then the request ledger (S7), what `Finished` said
    /// against what the clients read, and the report's close counts.
    pub fn check_end(
        &mut self,
        core: &Server,
        driver: &DriverModel,
        clients: &Clients,
        kernel: &Kernel,
        env: &mut Env,
    ) {
        if env.failed() {
            return;
        }
        let Some(r) = driver.exit() else {
            return env.fail(Failure::Liveness(format!(
                "S6: no Exit by the liveness bound (phase {:?}, {} connections, {} active)",
                core.phase(),
                core.connections(),
                core.active_requests()
            )));
        };
        for (k, id, h) in self.all_handed() {
            let req = clients
                .req(h.client, h.no)
                .expect("handed requests are in a script");
            let complete = (req.fate == Fate::Complete || h.refused) && req.attempt == h.attempt;
            let closing = self.watches[k].closing();
            let allowed = kernel.client_aborted(k)
                || closing.is_some_and(|cl| cl.loss_allowed)
                || self.watches[k].sent_past_close;
            if !complete && !allowed {
                return env.fail(Failure::Liveness(format!(
                    "S2: request {}.{}.{} ({id:?}) handed to the application on k{k} but never answered completely (client fate {:?}, core close {closing:?})",
                    h.client, h.no, h.attempt, req.fate
                )));
            }
        }
        if let Some(c) = clients.iter().find(|c| !c.is_done()) {
            return env.fail(Failure::Liveness(format!("client never finished: {c}")));
        }
        self.check_ledger(kernel, env);
        if env.failed() {
            return;
        }
        if (r.silent_closed, r.idle_closed) != (self.counts.silent, self.counts.idle) {
            return env.fail(Failure::Report(format!(
                "report silent_closed {} and idle_closed {}, but core closed {} silent and {} idle connections",
                r.silent_closed, r.idle_closed, self.counts.silent, self.counts.idle
            )));
        }
        if r.reset_risk_closes != self.counts.reset_risk {
            return env.fail(Failure::Report(format!(
                "report reset_risk_closes {}, but {} closes could have reset a client still sending",
                r.reset_risk_closes, self.counts.reset_risk
            )));
        }
        if self.counts.drain_losses > r.reset_risk_closes + r.requests_cut {
            env.fail(Failure::Report(format!(
                "{} connections lost responses in the drain, but the report counts {} reset-risk closes and {} cuts",
                self.counts.drain_losses, r.reset_risk_closes, r.requests_cut
            )));
        }
    }

    /// S7, end to end: every request whose last byte reached the server's
    /// socket before core half-closed or closed it got a complete response
    /// that its client read — unless its client aborted, a forced exit cut
    /// it, or it followed a request answered with `Connection: close`
    /// (its client had pipelined it before reading that), except where the
    /// drain chose that close for a request although this one had arrived
    /// before the drain began, or PreStop chose it although core held a
    /// byte of this one. (A request behind one that itself asked to close
    /// is never owed: its client broke RFC 9112 §9.6.) S2/S8 cross-check:
    /// every response `Finished` says was handed over, the client read.
    fn check_ledger(&mut self, kernel: &Kernel, env: &mut Env) {
        let drain = self.drain_began.unwrap_or(Tick::MAX);
        for (k, w) in self.watches.iter().enumerate() {
            if kernel.client_aborted(k) {
                continue;
            }
            let closing = w.closing();
            let cut = closing.is_some_and(|cl| cl.forced);
            // A timer's close that may lose responses (a linger that gave
            // up while the client still sent, a stalled write): S5 allows
            // what it destroyed.
            let timer_loss = closing.is_some_and(|cl| cl.loss_allowed && !cl.forced);
            for (i, s) in w.sent.iter().enumerate() {
                let Some(arrived) = s.arrived else { continue };
                if w.ended.is_some_and(|e| arrived > e) {
                    continue;
                }
                if let Some(cr) = w.close_response.filter(|cr| i > cr.nth) {
                    let before_drain = arrived < drain;
                    // Where it begins: where the request before it ends.
                    let start = i.checked_sub(1).map_or(0, |p| w.sent[p].end);
                    let read_in_pre_stop = cr.pre_stop_received.is_some_and(|r| start < r as u64);
                    let owed = !cr.client_asked
                        && ((cr.answered_in_drain && before_drain) || read_in_pre_stop);
                    if !owed {
                        if before_drain && !w.successor && i >= w.client_finals {
                            self.cover.closed_before_drain_dropped += 1;
                        }
                        continue;
                    }
                    // The drain closed after an answer although this request
                    // had arrived before it, read by core or waiting unread
                    // in the socket (the driver told core how much), or
                    // PreStop closed although core held part of it: owed.
                }
                let answered = i < w.client_finals;
                // Core refuses only a request it has not read whole: one
                // still in the socket when the deadline cut (a driver that
                // reads in its own time) was never begun, and may be retried.
                if answered && w.farewell_read == Some(i) && w.received as u64 >= s.end {
                    return env.fail(Failure::Safety(format!(
                        "S7: k{k}: request #{i} arrived whole and was read, yet core refused it with its farewell"
                    )));
                }
                if answered {
                    continue;
                }
                if cut {
                    self.cover.owed_cut += 1;
                    continue;
                }
                if timer_loss {
                    self.cover.owed_lost_to_timers += 1;
                    continue;
                }
                // Reset by the close its client asked for, with more sent
                // behind it: the client's own loss.
                if w.sent_past_close {
                    continue;
                }
                let whose = if w.successor { "the successor" } else { "core" };
                return env.fail(Failure::Safety(format!(
                    "S7: k{k}: request #{i} arrived whole before {whose} ended the connection{}, but its client never read a response (core's close: {closing:?})",
                    if arrived < drain { " and before the drain" } else { "" }
                )));
            }
            let parsed = w.client_finals - usize::from(w.farewell_read.is_some());
            let excused = closing.is_some_and(|cl| cl.loss_allowed) || w.sent_past_close;
            if w.finished_responses != parsed && !excused {
                return env.fail(Failure::Safety(format!(
                    "S2/S8: k{k}: Finished says {} responses were handed over, but the client read {parsed}",
                    w.finished_responses
                )));
            }
        }
    }
}

/// Whether a close ended a connection for a reason that excuses what it
/// owed before an unforced exit: the client left (FIN, reset), a timer
/// fired, the application broke its response.
fn kernel_free_end(closing: Option<Closing>) -> bool {
    closing.is_some_and(|cl| {
        cl.loss_allowed
            || cl
                .cause
                .is_some_and(|c| matches!(c, Cause::Aborted | Cause::Eof))
    })
}
