//! A structured sequence of driver inputs across several connections, in the
//! simulator's vocabulary: accept, bytes, EOF, reset, written n, respond,
//! terminate, hand-off, backlog empty, advance time.
//!
//! The driver model does what a driver does: after every input it carries out
//! each event until `poll_event` returns `None`; it reads only while core
//! wants input (keeping the rest in a model of the kernel's receive buffer);
//! it writes only what `transmit` offers; it accepts only while the listener
//! is open; and it stops at `Exit`.
//!
//! The oracle is the set of safety [properties](crate::properties) as far as
//! a driver can observe them (with no clients modelled, S7 and S8 come down
//! to S2 and S5):
//! - S1: invariants hold and the count equals the recount after every input;
//! - S4: responses on a connection come in request order, each with the
//!   framing core promises; nothing is written after a `Connection: close`
//!   response; and (S3) no request is handed over on a connection after it;
//!   a request that asked to close gets `Connection: close` (RFC 9112 §9.6);
//!   core's own responses are 4xx/5xx rejections that close;
//! - S2: a request handed to the application is answered completely unless
//!   the client reset the connection, the write stalled past its deadline, or
//!   the drain was forced — and a forced exit reports as cut at least every
//!   handed request it dropped, and exactly as many as the `Finished` events
//!   it labelled `cut`;
//! - S5: core never closes a connection while the driver still holds unread
//!   input for it, unless a reset, a deadline or a forced exit did it;
//! - S8: core closes a connection whose client may still be sending (no
//!   FIN seen) only after half-closing it, but for the reasons
//!   [`may_close_without_linger`](props::may_close_without_linger) allows;
//!   a close loses a response or a request only for the reasons
//!   [`close_may_lose`](props::close_may_lose) allows (S2);
//! - S7: a response to a request begun in the drain, or answered in
//!   PreStop, carries `Connection: close`; and a response the drain closes
//!   with never leaves behind a request the driver had passed to core whole
//!   before the drain began (known exactly on connections that were sent
//!   only whole canned requests);
//! - S6: `Exit` comes at most once, only after a stop, last among the
//!   events, with no connection left and the listener closed; nothing happens
//!   after it; while draining, once the listener is closed and no
//!   connection is left, `Exit` has been emitted (never late); the report's
//!   times are in order and the exit no later than the drain deadline (or
//!   the first input after it: this driver may wake late);
//! - S9: `DrainBacklog` comes only in the drain and once; `CloseListener`
//!   only after the backlog was drained, or on a hand-off, or in a forced
//!   exit; a terminate while stopping exits in the same step; while
//!   draining, an idle keep-alive connection is half-closed by
//!   [`idle_close_due`](props::idle_close_due) and a silent one closed by
//!   [`silent_close_due`](props::silent_close_due) (judged whenever the
//!   connections known to be active account for the whole active count,
//!   so the rest are known idle);
//! - and the driver's contract: every deadline `poll_timeout` reports is
//!   later than the driver's clock (deadlines already due were handled), and
//!   inputs on closed connections or answered requests change nothing.

use std::time::Duration;

use arbitrary::{Arbitrary, Unstructured};

use ebb_core::{CloseReason, Config, ConnId, DrainReport, Event, Forced, Phase, RequestId};
use ebb_core::{Server, Time};

use super::wire::{asks_to_close, Answer, Answered, AppLog, BadAnswer, Wire};
use crate::properties::{self as props, assert_invariants};

/// The whole input: one knob, then the inputs.
#[derive(Arbitrary, Debug)]
pub(super) struct Scenario {
    /// `pre_stop` in units of 100 ms; 0 for none.
    pub(super) pre_stop: u8,
    pub(super) ops: Vec<Op>,
}

#[derive(Arbitrary, Debug)]
pub(super) enum Op {
    Accept,
    Bytes {
        conn: u8,
        piece: Piece,
    },
    Eof {
        conn: u8,
    },
    Reset {
        conn: u8,
    },
    Written {
        conn: u8,
        n: u16,
    },
    Respond {
        nth: u8,
        answer: AnswerChoice,
    },
    Terminate,
    BacklogEmpty,
    AdvanceTime {
        ms: u16,
    },
    /// Jump to the next deadline `poll_timeout` reported.
    Wake,
    /// The listener is handed to a successor (`handle_handoff`).
    Handoff,
}

/// Bytes a client sends: a canned request, part of one, or anything.
#[derive(Arbitrary, Debug)]
pub(super) enum Piece {
    Canned(u8),
    Slice { which: u8, start: u8, len: u8 },
    Raw(Vec<u8>),
}

const CANNED: [&[u8]; 12] = [
    b"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
    b"GET /x?y=1 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    b"POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello",
    b"POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    b"HEAD / HTTP/1.1\r\nHost: a\r\n\r\n",
    b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
    b"GET / HTTP/1.0\r\n\r\n",
    b"PUT /u HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n",
    b"abc",
    b"GET / HTTP/1.1\r\n\r\n",
    b"\r\n",
    b"GET /slow HTTP/1.1\r\nHost: a\r\n",
];

/// Which of [`CANNED`] are whole requests core hands to the application:
/// on a connection sent nothing else, where each request ends is known.
const WHOLE: usize = 7;

impl Piece {
    fn bytes(&self) -> Vec<u8> {
        match self {
            Piece::Canned(which) => CANNED[*which as usize % CANNED.len()].to_vec(),
            Piece::Slice { which, start, len } => {
                let req = CANNED[*which as usize % CANNED.len()];
                let start = (*start as usize).min(req.len());
                let end = (start + *len as usize).min(req.len());
                req[start..end].to_vec()
            }
            Piece::Raw(bytes) => bytes.clone(),
        }
    }
}

#[derive(Arbitrary, Debug)]
pub(super) struct AnswerChoice {
    /// An application fault (an invalid answer, or none) instead of an answer.
    pub(super) bad: Option<u8>,
    pub(super) status: u16,
    pub(super) extras: u8,
    pub(super) body_len: u8,
    pub(super) big_body: bool,
}

/// Small limits and the default timeouts.
fn config(pre_stop: u8) -> Config {
    Config {
        max_head_bytes: 512,
        max_headers: 16,
        max_target_bytes: 128,
        max_body_bytes: 256,
        max_chunk_line_bytes: 32,
        max_trailer_bytes: 64,
        max_pipelined_bytes: 64,
        max_linger_bytes: 256,
        pre_stop: Duration::from_millis(u64::from(pre_stop) * 100),
        ..Config::default()
    }
}

/// Open connections at most; further accepts are skipped.
const MAX_OPEN: usize = 8;

/// Decodes `data` into a scenario and drives core through it.
pub fn server_ops(data: &[u8]) {
    let Ok(scenario) = Scenario::arbitrary_take_rest(Unstructured::new(data)) else {
        return;
    };
    let config = config(scenario.pre_stop);
    let mut world = World {
        server: Server::new(config.clone()),
        config,
        now: Time::ZERO,
        conns: Vec::new(),
        pending: Vec::new(),
        answered: Vec::new(),
        listener: Listener::Open,
        terminates: 0,
        handed_off: false,
        drain: None,
        cut: 0,
        exited: false,
    };
    // `EBB_FUZZ_TRACE=1` prints each op, to read a failing input's story.
    let trace = std::env::var_os("EBB_FUZZ_TRACE").is_some();
    for op in &scenario.ops {
        if trace {
            eprintln!("op {op:?}");
        }
        world.apply(op);
    }
}

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum Listener {
    Open,
    DrainingBacklog,
    Closed,
}

/// The driver's view of one connection.
struct ConnModel {
    id: ConnId,
    open: bool,
    /// We sent FIN.
    eof: bool,
    /// Core half-closed it.
    write_shut: bool,
    /// Bytes in the kernel's receive buffer the driver has not read.
    unread: Vec<u8>,
    /// Every byte written, read back as responses.
    wire: Wire,
    /// By request seq: whether it was `HEAD`.
    is_head: Vec<bool>,
    /// By request seq: whether the client asked to close after it.
    asks_to_close: Vec<bool>,
    /// Request seqs the application answered, in order.
    answered: Vec<u32>,
    /// Request seqs the application failed, so core answered 500.
    faulted: Vec<u32>,
    /// How many of `answered` are completely on the wire.
    completed: usize,
    last_seq_on_wire: Option<u32>,
    /// A response with `Connection: close` is queued or written.
    close_queued: bool,
    /// A response with `Connection: close` is completely written.
    close_written: bool,
    /// Core asked the driver to read again.
    resume: bool,
    accepted_at: Time,
    /// Bytes passed to `handle_recv`.
    received: u64,
    /// `received` when the drain began.
    received_at_drain: Option<u64>,
    /// Bytes the client sent (into `unread`) in all.
    fed: u64,
    /// Where each request the client sent ends in its byte stream, while it
    /// sent only whole canned requests.
    ends: Option<Vec<u64>>,
    /// When its last response was completely handed over (or it was
    /// accepted): an idle connection's deadline runs from here.
    last_done: Time,
    /// Bytes were passed to core since its last response was completely
    /// handed over: a request is in progress.
    received_since_done: bool,
    /// Requests with this seq or later began in the drain.
    begun_in_drain_from: Option<u32>,
    /// By request seq: the phase the application answered in (0 serving,
    /// 1 PreStop, 2 draining).
    answered_in: Vec<u8>,
    /// Responses (by seq) whose close rules were judged.
    judged: u32,
}

struct World {
    server: Server,
    config: Config,
    now: Time,
    conns: Vec<ConnModel>,
    /// Requests handed to the application and not answered, in order.
    pending: Vec<RequestId>,
    /// Requests answered or dropped: core must refuse answers to them.
    answered: Vec<RequestId>,
    listener: Listener,
    terminates: u32,
    handed_off: bool,
    /// The drain's start and deadline, once it began.
    drain: Option<(Time, Time)>,
    /// `Finished` events labelled `cut`.
    cut: u64,
    exited: bool,
}

/// What happened during one input, for the checks after it.
struct Step {
    reset: Option<usize>,
    timeout: bool,
    terminate: bool,
    /// The input was `handle_backlog_empty`, made while draining the backlog.
    backlog_empty: bool,
    /// The input was `handle_handoff`.
    handoff: bool,
    /// The server was stopping (PreStop or draining) before the input.
    was_stopping: bool,
    /// The clock before the input.
    prev_now: Time,
    /// `CloseListener` came in this step.
    listener_closed: bool,
    /// Requests dropped by a close: connection, whether it was answered,
    /// and the close's reason.
    lost: Vec<(usize, bool, CloseReason)>,
    /// Connections closed while the driver held unread input for them.
    closed_with_unread: Vec<usize>,
    exit: Option<DrainReport>,
}

impl World {
    fn apply(&mut self, op: &Op) {
        if self.exited {
            self.apply_after_exit(op);
            return;
        }
        let mut step = Step {
            reset: None,
            timeout: false,
            terminate: false,
            backlog_empty: false,
            handoff: false,
            was_stopping: self.server.is_stopping(),
            prev_now: self.now,
            listener_closed: false,
            lost: Vec::new(),
            closed_with_unread: Vec::new(),
            exit: None,
        };
        match op {
            Op::Accept => {
                let open = self.conns.iter().filter(|c| c.open).count();
                if self.listener == Listener::Closed || open >= MAX_OPEN {
                    return;
                }
                let id = self.server.handle_accept(self.now);
                assert!(
                    self.conns.iter().all(|c| c.id != id),
                    "connection id {id:?} reused"
                );
                let mut c = ConnModel::new(id, self.now);
                if self.drain.is_some() {
                    c.received_at_drain = Some(0);
                    c.begun_in_drain_from = Some(0);
                }
                self.conns.push(c);
            }
            Op::Bytes { conn, piece } => {
                let Some(i) = self.pick(*conn) else { return };
                let bytes = piece.bytes();
                if !self.conns[i].open {
                    self.server.handle_recv(self.conns[i].id, &bytes, self.now);
                    return self.expect_quiet("bytes on a closed connection");
                }
                if self.conns[i].eof || bytes.is_empty() {
                    return;
                }
                let c = &mut self.conns[i];
                c.unread.extend_from_slice(&bytes);
                c.fed += bytes.len() as u64;
                match piece {
                    Piece::Canned(which) if usize::from(*which) % CANNED.len() < WHOLE => {
                        let fed = c.fed;
                        if let Some(ends) = &mut c.ends {
                            ends.push(fed);
                        }
                    }
                    _ => c.ends = None,
                }
                self.read(i);
            }
            Op::Eof { conn } => {
                let Some(i) = self.pick(*conn) else { return };
                let c = &mut self.conns[i];
                if !c.open {
                    self.server.handle_peer_eof(c.id, self.now);
                    return self.expect_quiet("EOF on a closed connection");
                }
                // The driver sees FIN only after reading what came before it.
                if c.eof || !c.unread.is_empty() {
                    return;
                }
                c.eof = true;
                self.server.handle_peer_eof(c.id, self.now);
            }
            Op::Reset { conn } => {
                let Some(i) = self.pick(*conn) else { return };
                let c = &mut self.conns[i];
                if !c.open {
                    self.server.handle_aborted(c.id, self.now);
                    return self.expect_quiet("reset of a closed connection");
                }
                c.unread.clear();
                step.reset = Some(i);
                self.server.handle_aborted(c.id, self.now);
            }
            Op::Written { conn, n } => {
                let Some(i) = self.pick(*conn) else { return };
                if !self.conns[i].open {
                    self.server
                        .handle_sent(self.conns[i].id, usize::from(*n), self.now);
                    return self.expect_quiet("write reported on a closed connection");
                }
                self.write(i, usize::from(*n));
            }
            Op::Respond { nth, answer } => {
                if !self.respond(*nth, answer) {
                    return;
                }
            }
            Op::Terminate => {
                step.terminate = true;
                self.terminates += 1;
                self.server.handle_terminate(self.now);
            }
            Op::Handoff => {
                step.handoff = true;
                self.handed_off = true;
                self.server.handle_handoff(self.now);
            }
            Op::BacklogEmpty => {
                if self.listener != Listener::DrainingBacklog {
                    return;
                }
                step.backlog_empty = true;
                self.server.handle_backlog_empty(self.now);
            }
            Op::AdvanceTime { ms } => {
                self.now = self.now + Duration::from_millis(u64::from(*ms));
                if self.server.poll_timeout().is_some_and(|t| t <= self.now) {
                    step.timeout = true;
                    self.server.handle_timeout(self.now);
                }
            }
            Op::Wake => {
                let Some(t) = self.server.poll_timeout() else {
                    return;
                };
                self.now = self.now.max(t);
                step.timeout = true;
                self.server.handle_timeout(self.now);
            }
        }
        self.drain(&mut step);
        self.after_step(&step);
    }

    /// After `Exit` the driver has stopped; if inputs still came, nothing
    /// may happen.
    fn apply_after_exit(&mut self, op: &Op) {
        match op {
            // The listener is closed: there is nothing to accept.
            Op::Accept => {}
            Op::Bytes { conn, piece } => {
                if let Some(i) = self.pick(*conn) {
                    self.server
                        .handle_recv(self.conns[i].id, &piece.bytes(), self.now);
                }
            }
            Op::Eof { conn } => {
                if let Some(i) = self.pick(*conn) {
                    self.server.handle_peer_eof(self.conns[i].id, self.now);
                }
            }
            Op::Reset { conn } => {
                if let Some(i) = self.pick(*conn) {
                    self.server.handle_aborted(self.conns[i].id, self.now);
                }
            }
            Op::Written { conn, n } => {
                if let Some(i) = self.pick(*conn) {
                    self.server
                        .handle_sent(self.conns[i].id, usize::from(*n), self.now);
                }
            }
            Op::Respond { nth, answer } => {
                self.respond(*nth, answer);
            }
            Op::Terminate => self.server.handle_terminate(self.now),
            Op::Handoff => self.server.handle_handoff(self.now),
            Op::BacklogEmpty => self.server.handle_backlog_empty(self.now),
            Op::AdvanceTime { ms } => {
                self.now = self.now + Duration::from_millis(u64::from(*ms));
                self.server.handle_timeout(self.now);
            }
            Op::Wake => self.server.handle_timeout(self.now),
        }
        self.expect_quiet("input after Exit");
        assert_eq!(self.server.connections(), 0, "a connection after Exit");
        assert_eq!(self.server.poll_timeout(), None, "a deadline after Exit");
    }

    fn pick(&self, k: u8) -> Option<usize> {
        (!self.conns.is_empty()).then(|| usize::from(k) % self.conns.len())
    }

    fn index_of(&self, id: ConnId) -> usize {
        let i = self
            .conns
            .iter()
            .position(|c| c.id == id)
            .unwrap_or_else(|| panic!("event for unknown connection {id:?}"));
        assert!(self.conns[i].open, "event for closed connection {id:?}");
        i
    }

    /// Inputs that must change nothing: no event, invariants intact.
    fn expect_quiet(&mut self, what: &str) {
        if let Some(event) = self.server.poll_event() {
            panic!("{what} caused {event:?}");
        }
        self.check_invariants();
    }

    fn check_invariants(&self) {
        assert_invariants(&self.server); // S1
    }

    /// Reads what the kernel holds for connection `i`, if core wants it.
    fn read(&mut self, i: usize) {
        let c = &mut self.conns[i];
        if c.open && !c.eof && !c.unread.is_empty() && self.server.wants_read(c.id) {
            let bytes = std::mem::take(&mut c.unread);
            c.received += bytes.len() as u64;
            c.received_since_done = true;
            self.server.handle_recv(c.id, &bytes, self.now);
        }
    }

    /// The kernel takes up to `n` of the bytes `transmit` offers.
    fn write(&mut self, i: usize, n: usize) {
        let c = &mut self.conns[i];
        let [a, b] = self.server.transmit(c.id);
        let n = n.min(a.len() + b.len());
        if n == 0 {
            return;
        }
        assert!(!c.write_shut, "bytes to write after the half-close");
        let from_a = n.min(a.len());
        let mut written = a[..from_a].to_vec();
        written.extend_from_slice(&b[..n - from_a]);
        self.server.handle_sent(c.id, n, self.now);
        self.parse_written(i, &written);
    }

    /// The application answers the `nth` waiting request (or, with none
    /// waiting, one answered before, which core must refuse). Returns whether
    /// core was given an input that needs its events carried out.
    fn respond(&mut self, nth: u8, choice: &AnswerChoice) -> bool {
        if self.pending.is_empty() || self.exited {
            if self.answered.is_empty() {
                return false;
            }
            let id = self.answered[usize::from(nth) % self.answered.len()];
            let result =
                self.server
                    .handle_response(id, 200, [("A", "b")], bytes::Bytes::new(), self.now);
            assert_eq!(result, Err(ebb_core::RespondError::UnknownRequest));
            self.expect_quiet("an answer to an answered request");
            return false;
        }
        let k = usize::from(nth) % self.pending.len();
        let id = self.pending[k];
        let i = self.index_of(id.conn());
        let phase = match self.server.phase() {
            Phase::PreStop { .. } => 1,
            Phase::Draining { .. } | Phase::Exited => 2,
            Phase::Serving => 0,
        };
        let answered_in = &mut self.conns[i].answered_in;
        let seq = id.seq() as usize;
        if answered_in.len() <= seq {
            answered_in.resize(seq + 1, 0);
        }
        answered_in[seq] = phase;
        if let Some(bad) = choice.bad {
            BadAnswer::pick(usize::from(bad)).attempt(&mut self.server, id, self.now);
            self.conns[i].faulted.push(id.seq());
        } else {
            self.answer_validly(id, choice);
        }
        self.pending.remove(k);
        self.answered.push(id);
        self.conns[i].answered.push(id.seq());
        self.note_queued_close(i);
        true
    }

    fn answer_validly(&mut self, id: RequestId, choice: &AnswerChoice) {
        let body_len = if choice.big_body {
            20_000
        } else {
            usize::from(choice.body_len)
        };
        let answer = Answer::new(id.seq(), 200 + choice.status % 400, choice.extras, body_len);
        let result = self.server.handle_response(
            id,
            answer.status,
            answer.headers.iter().map(|(n, v)| (*n, v.as_str())),
            answer.body,
            self.now,
        );
        assert_eq!(result, Ok(()), "a valid answer to a waiting request");
    }

    /// Carries out every event, as a driver does after each input; then
    /// reads again where core asked for it.
    fn drain(&mut self, step: &mut Step) {
        loop {
            while let Some(event) = self.server.poll_event() {
                assert!(step.exit.is_none(), "{event:?} after Exit");
                self.on_event(event, step);
            }
            let resumed: Vec<usize> = (0..self.conns.len())
                .filter(|&i| std::mem::take(&mut self.conns[i].resume))
                .collect();
            if resumed.is_empty() || step.exit.is_some() {
                break;
            }
            for i in resumed {
                self.read(i);
            }
        }
    }

    fn on_event(&mut self, event: Event, step: &mut Step) {
        match event {
            Event::Request(id) => {
                let i = self.index_of(id.conn());
                let c = &mut self.conns[i];
                assert!(
                    !c.close_queued,
                    "S3: request handed over after a Connection: close response"
                );
                assert_eq!(id.seq() as usize, c.is_head.len(), "request seq skipped");
                let req = self
                    .server
                    .request(id)
                    .expect("a dispatched request can be read");
                c.is_head.push(req.method() == "HEAD");
                c.asks_to_close.push(asks_to_close(&req));
                self.pending.push(id);
            }
            Event::Transmit(id) => {
                self.index_of(id);
            }
            Event::ResumeRead(id) => {
                let i = self.index_of(id);
                self.conns[i].resume = true;
            }
            Event::Finished(f) => {
                let i = self.index_of(f.conn);
                if f.outcome.label() == "cut" {
                    self.cut += 1;
                }
                if f.keeps_connection {
                    let c = &mut self.conns[i];
                    c.last_done = self.now;
                    c.received_since_done = false;
                }
            }
            e @ (Event::BodyReady(_)
            | Event::StreamWritable(_)
            | Event::Upgraded(_)
            | Event::StopUpgraded(_)) => {
                panic!("{e:?}, but this application neither streams nor upgrades")
            }
            Event::Farewell(id, bytes) => {
                self.index_of(id);
                assert!(
                    self.terminates > 0 || self.handed_off,
                    "a farewell without a stop"
                );
                assert!(bytes.starts_with(b"HTTP/1.1 503 "), "a farewell is a 503");
            }
            Event::HalfClose(id, _) => {
                let i = self.index_of(id);
                assert!(!self.conns[i].write_shut, "half-closed twice");
                assert_eq!(
                    self.server.transmit(id),
                    [&[][..], &[]],
                    "half-close with output queued"
                );
                self.conns[i].write_shut = true;
            }
            Event::Close(id, reason) => {
                let i = self.index_of(id);
                let c = &mut self.conns[i];
                // S5, S8: a client that may still be sending is closed only
                // after lingering, but for the reasons that allow it.
                assert!(
                    c.write_shut || c.eof || props::may_close_without_linger(reason),
                    "S8: closed for {reason:?} without lingering, while the client may still be sending"
                );
                c.open = false;
                if !c.unread.is_empty() {
                    step.closed_with_unread.push(i);
                }
                let unwritten = c.answered.len() - c.completed;
                step.lost.extend((0..unwritten).map(|_| (i, true, reason)));
                let answered = &mut self.answered;
                self.pending.retain(|r| {
                    let dropped = r.conn() == id;
                    if dropped {
                        step.lost.push((i, false, reason));
                        answered.push(*r);
                    }
                    !dropped
                });
            }
            Event::DrainBacklog => {
                assert!(
                    matches!(self.server.phase(), Phase::Draining { .. } | Phase::Exited),
                    "S9: DrainBacklog outside the drain"
                );
                assert_eq!(self.listener, Listener::Open, "S9: DrainBacklog twice");
                self.listener = Listener::DrainingBacklog;
            }
            Event::CloseListener => {
                assert_ne!(self.listener, Listener::Closed, "listener closed twice");
                step.listener_closed = true;
                self.listener = Listener::Closed;
            }
            Event::Exit(report) => {
                self.exited = true;
                step.exit = Some(report);
            }
        }
    }

    fn after_step(&mut self, step: &Step) {
        self.check_invariants();
        let forced = step.exit.as_ref().is_some_and(|r| r.forced.is_some());
        for &(i, answered, reason) in &step.lost {
            let excused = forced
                || step.reset == Some(i)
                || reason == CloseReason::Aborted
                || props::close_may_lose(reason);
            assert!(
                excused,
                "S2: a request handed to the application was dropped by a close for {reason:?} (answered: {answered})"
            );
        }
        // S9: the listener closes before the backlog was drained only when
        // handed off or in a forced exit.
        if step.listener_closed {
            let after_backlog = step.backlog_empty;
            assert!(
                after_backlog || props::early_listener_close_ok(step.handoff, forced),
                "S9: CloseListener before the backlog was drained, neither handed off nor forced"
            );
        }
        // S9: a terminate while stopping exits in the same step.
        assert!(
            !(step.terminate && step.was_stopping) || step.exit.is_some(),
            "S9: a second terminate, but no Exit in the same step"
        );
        if self.drain.is_none() && !self.exited {
            if let Phase::Draining { deadline } = self.server.phase() {
                self.drain_began(deadline);
            }
        }
        for &i in &step.closed_with_unread {
            assert!(
                forced || step.reset == Some(i) || step.timeout,
                "S5: core closed a connection whose input the driver had not read"
            );
        }
        if let Some(i) = step.reset {
            assert!(!self.conns[i].open, "a reset connection was not closed");
        }
        let open = self.conns.iter().filter(|c| c.open).count();
        assert_eq!(
            open,
            self.server.connections(),
            "driver and core disagree on open connections"
        );
        for i in 0..self.conns.len() {
            if self.conns[i].open {
                self.note_queued_close(i);
            }
        }
        if step.exit.is_none() {
            self.check_drain_timing();
        }
        match &step.exit {
            Some(report) => self.check_exit(report, step),
            None => {
                assert!(
                    !(matches!(self.server.phase(), Phase::Draining { .. })
                        && self.listener == Listener::Closed
                        && open == 0),
                    "S6: draining with nothing left, but no Exit"
                );
                if let Some(t) = self.server.poll_timeout() {
                    assert!(t > self.now, "deadline {t:?} already due at {:?}", self.now);
                }
            }
        }
    }

    /// The drain began (now, with `deadline`): what each connection had
    /// received, and which are known to be idle (their next request begins
    /// in the drain).
    fn drain_began(&mut self, deadline: Time) {
        let start = Time::from_duration(deadline.since_epoch() - self.config.drain_timeout);
        self.drain = Some((start, deadline));
        let idle = self.known_idle();
        for (i, c) in self.conns.iter_mut().enumerate() {
            if c.open {
                c.received_at_drain = Some(c.received);
                if idle.as_ref().is_some_and(|idle| idle.contains(&i)) {
                    c.begun_in_drain_from = Some(c.is_head.len() as u32);
                }
            }
        }
    }

    /// Whether a request is known to be under way on connection `i`: one
    /// waits for the application, output waits to be written, or bytes
    /// arrived since its last response was handed over.
    fn known_active(&self, i: usize) -> bool {
        let c = &self.conns[i];
        let [a, b] = self.server.transmit(c.id);
        c.received_since_done
            || !a.is_empty()
            || !b.is_empty()
            || self.pending.iter().any(|r| r.conn() == c.id)
    }

    /// The open, not half-closed connections known to be idle (or never
    /// used): when those known to be active account for core's whole
    /// active count, the rest have nothing under way.
    fn known_idle(&self) -> Option<Vec<usize>> {
        let open: Vec<usize> = (0..self.conns.len())
            .filter(|&i| self.conns[i].open && !self.conns[i].write_shut)
            .collect();
        let active = open.iter().filter(|&&i| self.known_active(i)).count();
        (active == self.server.active_requests()).then(|| {
            open.into_iter()
                .filter(|&i| !self.known_active(i))
                .collect()
        })
    }

    /// S9: while draining, an idle connection is half-closed by its due
    /// time, a silent one closed by its own.
    fn check_drain_timing(&self) {
        let Some((start, deadline)) = self.drain else {
            return;
        };
        let Some(idle) = self.known_idle() else {
            return;
        };
        for i in idle {
            let c = &self.conns[i];
            let (what, due) = if c.received == 0 {
                let due = props::silent_close_due(c.accepted_at, start, deadline, &self.config);
                ("silent", due)
            } else {
                (
                    "idle",
                    props::idle_close_due(c.last_done, start, &self.config),
                )
            };
            assert!(
                self.now < due,
                "S9: a {what} connection due to close by {due:?} is still open at {:?}",
                self.now
            );
        }
    }

    fn check_exit(&self, report: &DrainReport, step: &Step) {
        assert!(
            self.terminates > 0 || self.handed_off,
            "S6: Exit without a stop"
        );
        if let Err(e) = props::exit_report(
            report,
            &self.config,
            self.now,
            self.cut,
            Some(step.prev_now),
        ) {
            panic!("{e}");
        }
        assert_eq!(report.handed_off, self.handed_off, "report handed_off");
        assert_eq!(self.server.phase(), Phase::Exited);
        assert_eq!(
            self.server.connections(),
            0,
            "S6: Exit with connections open"
        );
        assert_eq!(
            self.listener,
            Listener::Closed,
            "S6: Exit with the listener open"
        );
        assert_eq!(self.server.poll_timeout(), None, "a deadline after Exit");
        assert_eq!(report.exited_at, self.now, "Exit stamped with another time");
        assert!(report.terminated_at <= report.exited_at);
        for t in [report.draining_at, report.listener_closed_at]
            .into_iter()
            .flatten()
        {
            assert!(
                report.terminated_at <= t && t <= report.exited_at,
                "{report:?}"
            );
        }
        let cut = report.requests_cut;
        // S2: every handed request the forced exit dropped, answered or
        // not, is cut (the report's count equals the `Finished` events
        // labelled `cut`: checked above).
        let dropped = step
            .lost
            .iter()
            .filter(|(_, _, reason)| reason.is_forced())
            .count() as u64;
        match report.forced {
            None => {
                assert_eq!(cut, 0, "S2: requests cut without a forced exit");
                assert!(report.draining_at.is_some(), "{report:?}");
            }
            Some(Forced::SecondTerminate) => {
                // S9: a second stop request exits in the same step.
                assert!(step.terminate && step.was_stopping, "{report:?}");
            }
            Some(Forced::Deadline) => {
                assert!(step.timeout, "deadline exit without a timeout");
            }
        }
        assert!(
            dropped <= cut,
            "S2: the forced exit dropped {dropped} handed requests, but the report cut {cut}"
        );
    }

    /// Parses `bytes`, just written on connection `i`: responses in request
    /// order, rejections that close, nothing after a close.
    fn parse_written(&mut self, i: usize, bytes: &[u8]) {
        let c = &mut self.conns[i];
        let after_close = "S4: bytes written after a Connection: close response";
        assert!(!c.close_written, "{after_close}");
        let app = AppLog {
            is_head: &c.is_head,
            answered: &c.answered,
            faulted: &c.faulted,
        };
        for Answered { response: r, seq } in c.wire.feed(bytes, &app) {
            assert!(!c.close_written, "{after_close}");
            if r.status != 100 {
                match seq {
                    Some(seq) => {
                        assert!(
                            c.last_seq_on_wire.map_or(true, |last| seq > last),
                            "S4: responses out of request order"
                        );
                        assert_eq!(
                            Some(&seq),
                            c.answered.get(c.completed),
                            "a response nobody sent"
                        );
                        assert!(
                            r.close || !c.asks_to_close[seq as usize],
                            "the client asked to close, the response does not say so"
                        );
                        c.last_seq_on_wire = Some(seq);
                        c.completed += 1;
                    }
                    None => {
                        assert!(
                            (400..=599).contains(&r.status) && r.close,
                            "core's own response {} is not an error that closes",
                            r.status
                        );
                    }
                }
                c.close_written |= r.close;
            }
        }
        assert!(!(c.close_written && c.wire.mid_response()), "{after_close}");
    }

    /// Notes whether the output queued or written on connection `i` holds a
    /// `Connection: close` response.
    fn note_queued_close(&mut self, i: usize) {
        let c = &mut self.conns[i];
        if c.close_queued {
            return;
        }
        let [a, b] = self.server.transmit(c.id);
        let mut all = a.to_vec();
        all.extend_from_slice(b);
        // What is queued continues where the reader of what was written
        // stopped; a copy of it reads the queue.
        let app = AppLog {
            is_head: &c.is_head,
            answered: &c.answered,
            faulted: &c.faulted,
        };
        let queued = c.wire.clone().feed(&all, &app);
        for a in &queued {
            if let Some(seq) = a.seq.filter(|&seq| seq >= c.judged) {
                c.judged = seq + 1;
                judge_close(c, seq, a.response.close);
            }
        }
        c.close_queued |= queued.iter().any(|a| a.response.close);
        c.close_queued |= c.close_written;
    }
}

/// S7: the response to request `seq` on `c`, queued with `Connection:
/// close` if `close`. It must close if the application answered it in
/// PreStop, or if the request began in the drain; and the drain must not
/// close after it if the client had sent the next request whole, and core
/// had received it, before the drain began (unless the client asked to
/// close).
fn judge_close(c: &ConnModel, seq: u32, close: bool) {
    let n = seq as usize;
    let answered_in = c.answered_in.get(n).copied().unwrap_or(0);
    let begun_in_drain = c.begun_in_drain_from.is_some_and(|from| seq >= from);
    assert!(
        close || !props::response_must_close(answered_in == 1, begun_in_drain),
        "S7: the response to request {seq} keeps the connection, though {}",
        if answered_in == 1 {
            "it was answered in PreStop"
        } else {
            "the request began in the drain"
        }
    );
    if !close || answered_in != 2 || c.asks_to_close.get(n).copied().unwrap_or(true) {
        return;
    }
    let next_end = c.ends.as_ref().and_then(|ends| ends.get(n + 1).copied());
    if let (Some(end), Some(before)) = (next_end, c.received_at_drain) {
        assert!(
            end > before,
            "S7: the drain closed the connection after request {seq}, though core had received request {} whole before the drain began",
            seq + 1
        );
    }
}

impl ConnModel {
    fn new(id: ConnId, now: Time) -> ConnModel {
        ConnModel {
            id,
            open: true,
            eof: false,
            write_shut: false,
            unread: Vec::new(),
            wire: Wire::new(),
            is_head: Vec::new(),
            asks_to_close: Vec::new(),
            answered: Vec::new(),
            faulted: Vec::new(),
            completed: 0,
            last_seq_on_wire: None,
            close_queued: false,
            close_written: false,
            resume: false,
            accepted_at: now,
            received: 0,
            received_at_drain: None,
            fed: 0,
            ends: Some(Vec::new()),
            last_done: now,
            received_since_done: false,
            begun_in_drain_from: None,
            answered_in: Vec::new(),
            judged: 0,
        }
    }
}
