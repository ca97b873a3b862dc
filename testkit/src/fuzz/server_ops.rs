//! A structured sequence of driver inputs across several connections, in the
//! simulator's vocabulary: accept, bytes, EOF, reset, written n, respond,
//! terminate, hand-off, backlog empty, advance time — and the application's
//! inputs beyond a whole answer: start a streamed response (a declared
//! length or none, to HTTP/1.0 and 1.1 requests, with or without a body),
//! offer a piece, end it (short of, or after overshooting, its declared
//! length; with a valid or invalid trailer), or stop producing; with
//! `stream_request_bodies` on (a knob of the scenario), ask for a body
//! (100 Continue) and consume pieces of it, or answer without reading it;
//! switch protocols (`101`), then own the connection's bytes both ways and
//! close it, or see it reset, or be told to stop by the drain.
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
//!   with never leaves behind a request the client had sent whole before
//!   the drain began, whether the driver had passed it to core or still
//!   held it unread then (known exactly on connections that were sent only
//!   whole canned requests);
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
//! - streams and upgrades: core counts every connection with a waiting
//!   request or a stream under way and never an upgraded or half-closed one
//!   (S1); a stream the application has not ended ends only for the
//!   reasons [`stream_may_be_cut`](props::stream_may_be_cut) allows (a
//!   reset, a stalled write, the application's length mismatch, a forced
//!   exit), so it holds the drain until it ends or the deadline (S6); a
//!   streamed body of unknown length is complete on the wire only once the
//!   application ended it (a cut chunked one lacks its last chunk), and
//!   then exactly as long as what core took; nothing is chunked to
//!   HTTP/1.0; core takes no more of a piece than `stream_room`, never more
//!   than `max_stream_buffer_bytes`, holds no more of a streamed request
//!   body than that, refuses bytes beyond a declared length or an end
//!   short of it by closing, owes `StreamWritable` only to a stream it held
//!   back, and refuses pieces of a stream that is over; a 100 Continue to a
//!   streamed body goes out only after the application asked for the body;
//!   a `101` answers only an HTTP/1.1 request that asked to upgrade (else
//!   500), nothing follows it, `Upgraded` comes once it is written, and
//!   core then neither reads nor writes the connection; every upgraded
//!   connection open in the drain hears `StopUpgraded` once, closes only
//!   by the application or a forced exit, and the report's `upgraded_open`
//!   and `upgraded_cut` equal the fuzzer's count; a request whose streamed
//!   body core refused mid-way is taken back (core answers it);
//! - and the driver's contract: every deadline `poll_timeout` reports is
//!   later than the driver's clock (deadlines already due were handled), and
//!   inputs on closed connections or answered requests change nothing.

use std::time::Duration;

use arbitrary::{Arbitrary, Unstructured};

use ebb_core::{
    BodyLength, CloseReason, Config, ConnId, DrainReport, Event, Forced, Outcome, Phase,
};
use ebb_core::{RequestId, RespondError, Server, StreamError, Time};

use super::wire::{asks_to_close, asks_to_upgrade, body, Answer, Answered, AppLog, BadAnswer};
use super::wire::{Wire, SEQ_HEADER};
use crate::properties::{self as props, assert_invariants};

/// The whole input: one knob, then the inputs.
#[derive(Arbitrary, Debug)]
pub(super) struct Scenario {
    /// `pre_stop` in units of 100 ms; 0 for none.
    pub(super) pre_stop: u8,
    /// `stream_request_bodies`: bodies reach the application in pieces.
    pub(super) stream_bodies: bool,
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
    /// The application answers the `nth` waiting request with a streamed
    /// response: a declared length (`Some`) or not, a status from
    /// [`STREAM_STATUSES`].
    StreamStart {
        nth: u8,
        length: Option<u8>,
        status: u8,
    },
    /// The application offers `len` more bytes to the `nth` stream it ever
    /// started (ended and cut ones too, which core must refuse).
    StreamData {
        nth: u8,
        len: u8,
    },
    /// The application ends the `nth` stream: with no trailer, a valid one,
    /// or an invalid one (`trailer` % 3).
    StreamEnd {
        nth: u8,
        trailer: u8,
    },
    /// The application begins to read the body of the `nth` waiting request
    /// (`handle_body_wanted`: a 100 Continue may go out now).
    BodyWanted {
        nth: u8,
    },
    /// The application uses `n` bytes of the `nth` waiting request's
    /// streamed body.
    BodyConsumed {
        nth: u8,
        n: u16,
    },
    /// The application switches the `nth` waiting request's connection to
    /// another protocol (`handle_upgrade`).
    Upgrade {
        nth: u8,
    },
    /// The application closes an upgraded connection.
    UpgradedClose {
        conn: u8,
    },
}

/// Bytes a client sends: a canned request, part of one, or anything.
#[derive(Arbitrary, Debug)]
pub(super) enum Piece {
    Canned(u8),
    Slice { which: u8, start: u8, len: u8 },
    Raw(Vec<u8>),
}

const CANNED: [&[u8]; 15] = [
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
    b"GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n",
    b"GET /ws HTTP/1.0\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n",
    b"POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: 300\r\n\r\n",
];

/// Whether [`CANNED`]`[k]` is a whole request core hands to the
/// application: on a connection sent nothing else, where each request ends
/// is known.
fn whole(k: usize) -> bool {
    k < 7 || k == 12 || k == 13
}

/// The statuses of streamed responses: with a body, and without.
const STREAM_STATUSES: [u16; 5] = [200, 206, 404, 204, 304];

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
fn config(pre_stop: u8, stream_bodies: bool) -> Config {
    Config {
        stream_request_bodies: stream_bodies,
        max_streamed_body_bytes: 4096,
        max_stream_buffer_bytes: 256,
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

/// No header fields.
const NO_FIELDS: [(&str, &str); 0] = [];

/// What an application input came to.
enum Fed {
    /// Core was given nothing that needs events carried out.
    Nothing,
    /// Core was given an input.
    Input,
    /// The application broke the stream on this connection (a length
    /// mismatch): core closes it once what was queued is written — or, for
    /// a stream answering a request handed ahead of its turn (`true`),
    /// once its turn has come and what was queued then is written.
    Broke(usize, bool),
}

const AFTER_CLOSE: &str = "S4: bytes written after a Connection: close response";

/// Open connections at most; further accepts are skipped.
const MAX_OPEN: usize = 8;

/// Decodes `data` into a scenario and drives core through it.
pub fn server_ops(data: &[u8]) {
    let Ok(scenario) = Scenario::arbitrary_take_rest(Unstructured::new(data)) else {
        return;
    };
    let config = config(scenario.pre_stop, scenario.stream_bodies);
    let mut world = World {
        server: Server::new(config.clone()),
        config,
        now: Time::ZERO,
        conns: Vec::new(),
        pending: Vec::new(),
        answered: Vec::new(),
        finished: Default::default(),
        listener: Listener::Open,
        terminates: 0,
        handed_off: false,
        drain: None,
        cut: 0,
        exited: false,
        streams: Vec::new(),
        upgraded_open: 0,
        upgraded_cut: 0,
        trace: std::env::var_os("EBB_FUZZ_TRACE").is_some(),
        revoked: Vec::new(),
    };
    for op in &scenario.ops {
        if world.trace {
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
    /// The application broke the declared length of a stream on it: core
    /// closes it once what was queued is written.
    broke: bool,
    /// Bytes in the kernel's receive buffer the driver has not read.
    unread: Vec<u8>,
    /// Every byte written, read back as responses.
    wire: Wire,
    /// By request seq: whether it was `HEAD`.
    is_head: Vec<bool>,
    /// By request seq: whether the client asked to close after it.
    asks_to_close: Vec<bool>,
    /// Request seqs the application answered, in request order.
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
    /// Core asked what waited unread at the drain's start (or at the
    /// accept in it), and had its answer: a later count, before the drain
    /// closes the connection, owes nothing more.
    counted_at_drain: bool,
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
    /// By request seq: `received` when the application answered.
    received_when_answered: Vec<u64>,
    /// Responses (by seq) whose close rules were judged.
    judged: u32,
    /// By request seq: whether it was HTTP/1.0.
    http10: Vec<bool>,
    /// By request seq: whether it asked to switch protocols.
    asks_upgrade: Vec<bool>,
    /// Request seqs answered with a streamed response.
    streamed: Vec<u32>,
    /// The request whose `101` is queued or written.
    switching: Option<u32>,
    /// Core emitted `Upgraded`: the connection is the application's.
    upgraded: bool,
    /// The application closed it after the upgrade.
    app_closed: bool,
    /// Core emitted `StopUpgraded` for it.
    told_to_stop: bool,
    /// Counted among the upgraded connections open during the drain.
    upgraded_in_drain: bool,
    /// `handle_body_wanted` calls while a request with a body waited, and
    /// `100 Continue` responses written: with streamed bodies, one may go
    /// out only after the application asked for the body.
    bodies_wanted: u32,
    continues: u32,
}

/// The application's view of one streamed response.
struct StreamModel {
    id: RequestId,
    /// Index of its connection.
    conn: usize,
    /// Its body's framing: `None` for no body (`HEAD`, 204, 304), else the
    /// declared length if any.
    body: Option<Option<u64>>,
    /// Body bytes core took.
    sent: u64,
    /// The application ended it.
    ended: bool,
    /// Core refused a piece or the end (`LengthMismatch`).
    broken: bool,
    /// Core took fewer bytes than offered: `StreamWritable` is owed.
    blocked: bool,
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
    /// Requests core said ended (`Finished`).
    finished: std::collections::HashSet<RequestId>,
    listener: Listener,
    terminates: u32,
    handed_off: bool,
    /// The drain's start and deadline, once it began.
    drain: Option<(Time, Time)>,
    /// `Finished` events labelled `cut`.
    cut: u64,
    exited: bool,
    /// Every stream the application started, in order.
    streams: Vec<StreamModel>,
    /// Upgraded connections open during the drain (or when a second
    /// terminate ended PreStop), and those a forced close ended: what the
    /// report's `upgraded_open` and `upgraded_cut` must say.
    upgraded_open: u64,
    upgraded_cut: u64,
    /// `EBB_FUZZ_TRACE=1` prints each op and event, to read a failing
    /// input's story.
    trace: bool,
    /// Requests core took back from the application (see
    /// [`World::note_revoked`]).
    revoked: Vec<RequestId>,
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
    /// The connection whose stream the application broke (a length
    /// mismatch): core closes it once what was queued is written.
    broken: Option<(usize, bool)>,
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
            broken: None,
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
                // An upgraded connection's bytes are the application's.
                if self.conns[i].eof || self.conns[i].upgraded || bytes.is_empty() {
                    return;
                }
                let c = &mut self.conns[i];
                c.unread.extend_from_slice(&bytes);
                c.fed += bytes.len() as u64;
                match piece {
                    Piece::Canned(which) if whole(usize::from(*which) % CANNED.len()) => {
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
                // The driver sees FIN only after reading what came before it;
                // an upgraded connection's FIN is the application's to see.
                if c.eof || c.upgraded || !c.unread.is_empty() {
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
                if c.upgraded {
                    // The application owns the socket: it sees the reset
                    // and reports the end.
                    c.app_closed = true;
                    self.server.handle_upgraded_closed(c.id, self.now);
                } else {
                    step.reset = Some(i);
                    self.server.handle_aborted(c.id, self.now);
                }
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
                if matches!(self.server.phase(), Phase::PreStop { .. }) {
                    // Ends PreStop with a forced exit: a drain that never
                    // began, whose upgraded connections count as open in it.
                    for c in self.conns.iter_mut().filter(|c| c.open && c.upgraded) {
                        c.upgraded_in_drain = true;
                        self.upgraded_open += 1;
                    }
                }
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
            Op::StreamStart {
                nth,
                length,
                status,
            } => {
                if !self.start_stream(*nth, *length, *status) {
                    return;
                }
            }
            Op::StreamData { nth, len } => match self.stream_data(*nth, *len) {
                Fed::Nothing => return,
                Fed::Input => {}
                Fed::Broke(i, ahead) => step.broken = Some((i, ahead)),
            },
            Op::StreamEnd { nth, trailer } => match self.end_stream(*nth, *trailer) {
                Fed::Nothing => return,
                Fed::Input => {}
                Fed::Broke(i, ahead) => step.broken = Some((i, ahead)),
            },
            Op::BodyWanted { nth } => {
                let Some((_, id, i)) = self.nth_waiting(*nth) else {
                    return;
                };
                if self.server.request_body(id).is_some() {
                    self.conns[i].bodies_wanted += 1;
                }
                self.server.handle_body_wanted(id, self.now);
            }
            Op::BodyConsumed { nth, n } => {
                let Some((_, id, _)) = self.nth_waiting(*nth) else {
                    return;
                };
                self.server
                    .handle_body_consumed(id, usize::from(*n), self.now);
            }
            Op::Upgrade { nth } => {
                if !self.upgrade(*nth) {
                    return;
                }
            }
            Op::UpgradedClose { conn } => {
                let Some(i) = self.pick(*conn) else { return };
                let c = &mut self.conns[i];
                if !c.open || !c.upgraded {
                    self.server.handle_upgraded_closed(c.id, self.now);
                    return self.expect_quiet("closing a connection that is not upgraded");
                }
                c.app_closed = true;
                self.server.handle_upgraded_closed(c.id, self.now);
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
            Op::StreamStart {
                nth,
                length,
                status,
            } => {
                self.start_stream(*nth, *length, *status);
            }
            Op::StreamData { nth, len } => {
                self.stream_data(*nth, *len);
            }
            Op::StreamEnd { nth, trailer } => {
                self.end_stream(*nth, *trailer);
            }
            // No request waits after Exit.
            Op::BodyWanted { .. } | Op::BodyConsumed { .. } => {}
            Op::Upgrade { nth } => {
                self.upgrade(*nth);
            }
            Op::UpgradedClose { conn } => {
                if let Some(i) = self.pick(*conn) {
                    self.server
                        .handle_upgraded_closed(self.conns[i].id, self.now);
                }
            }
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
        let Some((k, id, i)) = self.nth_waiting(nth) else {
            self.answer_answered(nth, |server, id, now| {
                server.handle_response(id, 200, [("A", "b")], bytes::Bytes::new(), now)
            });
            return false;
        };
        self.answering(k, id, i);
        if let Some(bad) = choice.bad {
            BadAnswer::pick(usize::from(bad)).attempt(&mut self.server, id, self.now);
            self.conns[i].faulted.push(id.seq());
        } else {
            self.answer_validly(id, choice);
        }
        self.note_queued_close(i);
        true
    }

    /// The `nth` waiting request: its place in `pending`, its id, and its
    /// connection.
    fn nth_waiting(&self, nth: u8) -> Option<(usize, RequestId, usize)> {
        if self.pending.is_empty() || self.exited {
            return None;
        }
        let k = usize::from(nth) % self.pending.len();
        let id = self.pending[k];
        Some((k, id, self.index_of(id.conn())))
    }

    /// With no request waiting, the application answers (with `answer`)
    /// one answered before, which core must refuse, changing nothing.
    fn answer_answered(
        &mut self,
        nth: u8,
        answer: impl FnOnce(&mut Server, RequestId, Time) -> Result<(), RespondError>,
    ) {
        if self.answered.is_empty() {
            return;
        }
        let id = self.answered[usize::from(nth) % self.answered.len()];
        let result = answer(&mut self.server, id, self.now);
        assert_eq!(result, Err(RespondError::UnknownRequest));
        self.expect_quiet("an answer to an answered request");
    }

    /// The application is about to answer `id`, the `k`th waiting request,
    /// on connection `i`: notes the phase it answers in, and that it is
    /// answered.
    fn answering(&mut self, k: usize, id: RequestId, i: usize) {
        let phase = match self.server.phase() {
            Phase::PreStop { .. } => 1,
            Phase::Draining { .. } | Phase::Exited => 2,
            Phase::Serving => 0,
        };
        let c = &mut self.conns[i];
        let seq = id.seq() as usize;
        if c.answered_in.len() <= seq {
            c.answered_in.resize(seq + 1, 0);
            c.received_when_answered.resize(seq + 1, 0);
        }
        c.answered_in[seq] = phase;
        c.received_when_answered[seq] = c.received;
        // A streamed body not read to its end is discarded with the
        // connection (`BodyUnread`), whatever the drain: where the next
        // request ends no longer tells whether the drain closed it.
        if let Some(body) = self.server.request_body(id) {
            if !body.done || !body.data.is_empty() {
                c.ends = None;
            }
        }
        self.pending.remove(k);
        self.answered.push(id);
        // In request order, as responses leave: an answer may come before
        // those of requests handed over ahead of it, never after one of
        // theirs is written.
        let at = c.answered.partition_point(|&seq| seq < id.seq());
        debug_assert!(at >= c.completed, "an answer behind a written response");
        c.answered.insert(at, id.seq());
    }

    /// The application streams its answer to the `nth` waiting request.
    /// Returns whether core was given an input.
    fn start_stream(&mut self, nth: u8, length: Option<u8>, status: u8) -> bool {
        let status = STREAM_STATUSES[usize::from(status) % STREAM_STATUSES.len()];
        let length = length.map_or(BodyLength::Unknown, |n| BodyLength::Known(u64::from(n)));
        let Some((k, id, i)) = self.nth_waiting(nth) else {
            self.answer_answered(nth, |server, id, now| {
                server.handle_stream_start(id, status, NO_FIELDS, length, now)
            });
            return false;
        };
        self.answering(k, id, i);
        let seq = id.seq();
        let result = self.server.handle_stream_start(
            id,
            status,
            [(SEQ_HEADER, seq.to_string())],
            length,
            self.now,
        );
        assert_eq!(result, Ok(()), "a valid streamed head to a waiting request");
        let c = &mut self.conns[i];
        c.streamed.push(seq);
        let bodiless = c.is_head[seq as usize] || status == 204 || status == 304;
        self.streams.push(StreamModel {
            id,
            conn: i,
            body: (!bodiless).then_some(match length {
                BodyLength::Known(n) => Some(n),
                BodyLength::Unknown => None,
            }),
            sent: 0,
            ended: false,
            broken: false,
            blocked: false,
        });
        self.note_queued_close(i);
        true
    }

    /// The `nth` stream the application started, if it is still its to
    /// feed (not over, its connection open); for one that is not, checks
    /// that core refuses `attempt` and changes nothing.
    fn live_stream<T: PartialEq + std::fmt::Debug>(
        &mut self,
        nth: u8,
        attempt: impl FnOnce(&mut Server, RequestId, Time) -> Result<T, StreamError>,
    ) -> Option<usize> {
        if self.streams.is_empty() {
            return None;
        }
        let s = usize::from(nth) % self.streams.len();
        let st = &self.streams[s];
        if st.ended || st.broken || !self.conns[st.conn].open {
            let result = attempt(&mut self.server, st.id, self.now);
            assert_eq!(
                result,
                Err(StreamError::UnknownStream),
                "a stream that is over"
            );
            self.expect_quiet("a stream that is over");
            return None;
        }
        Some(s)
    }

    /// The application offers `len` bytes to the `nth` stream: core takes
    /// what fits the stream buffer, and refuses bytes beyond a declared
    /// length by closing the connection.
    /// Whether the `s`th stream answers a request handed ahead of its
    /// turn: one before it on its connection still waits for its answer,
    /// or for the end of its stream.
    fn waits_for_turn(&self, s: usize) -> bool {
        let id = self.streams[s].id;
        let earlier = |other: RequestId| other.conn() == id.conn() && other.seq() < id.seq();
        self.pending.iter().any(|&p| earlier(p))
            || self
                .streams
                .iter()
                .any(|o| earlier(o.id) && !o.ended && !o.broken)
    }

    fn stream_data(&mut self, nth: u8, len: u8) -> Fed {
        let data = body(usize::from(len));
        let Some(s) = self.live_stream(nth, |server, id, now| {
            server.handle_stream_data(id, &data, now)
        }) else {
            return Fed::Nothing;
        };
        let id = self.streams[s].id;
        let room = self.server.stream_room(id);
        assert!(
            room <= self.config.max_stream_buffer_bytes,
            "stream room {room} beyond max_stream_buffer_bytes"
        );
        let ahead = self.waits_for_turn(s);
        let result = self.server.handle_stream_data(id, &data, self.now);
        let st = &mut self.streams[s];
        match st.body {
            Some(Some(declared)) if st.sent + u64::from(len) > declared => {
                assert_eq!(
                    result,
                    Err(StreamError::LengthMismatch),
                    "bytes beyond the declared length"
                );
                st.broken = true;
                return Fed::Broke(st.conn, ahead);
            }
            // No body: whatever is offered is taken and dropped.
            None => assert_eq!(result, Ok(data.len()), "a bodiless stream"),
            Some(_) => {
                let taken = result.expect("a piece of a live stream");
                assert!(
                    taken <= room && taken <= data.len(),
                    "core took {taken} of {len} bytes with room for {room}"
                );
                st.sent += taken as u64;
                st.blocked |= taken < data.len();
            }
        }
        Fed::Input
    }

    /// The application ends the `nth` stream, with `trailer` % 3 choosing
    /// no trailer, a valid one, or an invalid one.
    fn end_stream(&mut self, nth: u8, trailer: u8) -> Fed {
        let trailers: &[(&str, &str)] = match trailer % 3 {
            0 => &[],
            1 => &[("X-Checksum", "900150983cd24fb0")],
            _ => &[("Bad Name", "v")],
        };
        let Some(s) = self.live_stream(nth, |server, id, now| {
            server.handle_stream_end(id, trailers.iter().copied(), now)
        }) else {
            return Fed::Nothing;
        };
        let id = self.streams[s].id;
        let http10 = self.conns[self.streams[s].conn].http10[id.seq() as usize];
        let ahead = self.waits_for_turn(s);
        let result = self
            .server
            .handle_stream_end(id, trailers.iter().copied(), self.now);
        let st = &mut self.streams[s];
        match st.body {
            Some(Some(declared)) if st.sent < declared => {
                assert_eq!(
                    result,
                    Err(StreamError::LengthMismatch),
                    "an end short of the declared length"
                );
                st.broken = true;
                return Fed::Broke(st.conn, ahead);
            }
            // Trailers follow a chunked body only; elsewhere they are dropped.
            Some(None) if !http10 && trailer % 3 == 2 => {
                assert_eq!(result, Err(StreamError::InvalidTrailer), "a bad trailer");
            }
            _ => {
                assert_eq!(result, Ok(()), "the end of a live stream");
                st.ended = true;
            }
        }
        Fed::Input
    }

    /// The application switches protocols on the `nth` waiting request's
    /// connection: core queues a `101` if the request asked to upgrade (and
    /// its body is not streaming), and answers 500 otherwise. Returns
    /// whether core was given an input.
    fn upgrade(&mut self, nth: u8) -> bool {
        let Some((k, id, i)) = self.nth_waiting(nth) else {
            self.answer_answered(nth, |server, id, now| {
                server.handle_upgrade(id, NO_FIELDS, now)
            });
            return false;
        };
        let seq = id.seq();
        let switches =
            self.conns[i].asks_upgrade[seq as usize] && self.server.request_body(id).is_none();
        self.answering(k, id, i);
        let result = self.server.handle_upgrade(
            id,
            [
                ("Upgrade", "echo".to_owned()),
                (SEQ_HEADER, seq.to_string()),
            ],
            self.now,
        );
        let c = &mut self.conns[i];
        if switches {
            assert_eq!(result, Ok(()), "an upgrade the request asked for");
            c.switching = Some(seq);
        } else {
            assert_eq!(result, Err(RespondError::NotAnUpgrade));
            c.faulted.push(seq);
        }
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
        if self.trace {
            eprintln!("  {event:?}");
        }
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
                c.http10.push(req.version() == ebb_core::Version::Http10);
                c.asks_upgrade.push(asks_to_upgrade(&req));
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
                if let Some(id) = f.request.filter(|id| self.revoked.contains(id)) {
                    assert!(
                        matches!(f.outcome, Outcome::Rejected(_) | Outcome::Unfinished(_)),
                        "{id:?} was taken back from the application, but finished {:?}",
                        f.outcome
                    );
                }
                if f.outcome.label() == "cut" {
                    self.cut += 1;
                }
                if let Some(id) = f.request {
                    assert!(self.finished.insert(id), "{id:?} finished twice");
                }
                if f.keeps_connection {
                    let c = &mut self.conns[i];
                    c.last_done = self.now;
                    c.received_since_done = false;
                }
            }
            Event::BodyReady(id) => {
                assert!(
                    self.config.stream_request_bodies && self.pending.contains(&id),
                    "BodyReady for {id:?}, which is not a waiting request with a streamed body"
                );
            }
            Event::StreamWritable(id) => {
                let st = self
                    .streams
                    .iter_mut()
                    .find(|s| s.id == id && !s.ended && !s.broken)
                    .unwrap_or_else(|| panic!("StreamWritable for {id:?}, no live stream"));
                assert!(st.blocked, "StreamWritable for a stream never held back");
                st.blocked = false;
            }
            Event::Upgraded(id) => {
                let i = self.index_of(id);
                let draining = matches!(self.server.phase(), Phase::Draining { .. });
                let c = &mut self.conns[i];
                assert!(
                    c.switching.is_some() && c.last_seq_on_wire == c.switching,
                    "Upgraded before its 101 was written"
                );
                assert!(!c.upgraded, "Upgraded twice");
                c.upgraded = true;
                // The application reads the socket from now on: what core
                // had read beyond the request, then what the kernel holds.
                let _ = self.server.take_upgraded_input(id);
                c.unread.clear();
                assert!(
                    self.server.take_upgraded_input(id).is_empty(),
                    "the upgraded input handed over twice"
                );
                assert!(
                    !self.server.wants_read(id),
                    "core reads an upgraded connection"
                );
                if draining {
                    c.upgraded_in_drain = true;
                    self.upgraded_open += 1;
                }
            }
            Event::StopUpgraded(id) => {
                let i = self.index_of(id);
                let c = &mut self.conns[i];
                assert!(
                    c.upgraded,
                    "StopUpgraded for a connection that did not upgrade"
                );
                assert!(
                    matches!(self.server.phase(), Phase::Draining { .. }),
                    "StopUpgraded outside the drain"
                );
                assert!(!c.told_to_stop, "StopUpgraded twice");
                c.told_to_stop = true;
            }
            Event::CountUnread(id) => {
                // Asked first in the drain as it begins (or at the accept in
                // it): what the driver holds unread then was sent before the
                // drain, and S7 owes the requests in it as those core had
                // received. Asked before an idle close (in the drain or
                // not), it owes nothing more.
                let draining = matches!(self.server.phase(), Phase::Draining { .. });
                let i = self.index_of(id);
                let c = &mut self.conns[i];
                let unread = c.unread.len();
                if draining && !c.counted_at_drain {
                    c.counted_at_drain = true;
                    let before = c.received + unread as u64;
                    c.received_at_drain =
                        Some(c.received_at_drain.map_or(before, |b| b.max(before)));
                }
                self.server.handle_unread(id, unread, self.now);
            }
            Event::Farewell(id, bytes) => {
                self.index_of(id);
                assert!(
                    self.terminates > 0 || self.handed_off,
                    "a farewell without a stop"
                );
                assert!(bytes.starts_with(b"HTTP/1.1 503 "), "a farewell is a 503");
            }
            Event::HalfClose(id, reason) => {
                let i = self.index_of(id);
                assert!(!self.conns[i].write_shut, "half-closed twice");
                // Core half-closes once everything is written: a body that
                // runs until the close ends here, any other is complete —
                // but for one whose application broke its declared length,
                // which ends where it broke.
                if reason != CloseReason::StreamMismatch {
                    self.finish_wire(i);
                }
                assert_eq!(
                    self.server.transmit(id),
                    [&[][..], &[]],
                    "half-close with output queued"
                );
                self.conns[i].write_shut = true;
                // Requests handed ahead of a stream the application broke
                // end with their connection, and so do streams begun for
                // them: core said so (`Finished`) as it half-closed.
                if reason == CloseReason::StreamMismatch {
                    self.lose_what_is_left(i, reason, step);
                    for s in self.streams.iter_mut().filter(|s| s.conn == i) {
                        s.ended |= !s.broken;
                    }
                }
            }
            Event::Close(id, reason) => {
                let i = self.index_of(id);
                // A close that cuts nothing comes after everything was
                // written, as a half-close does.
                if !self.conns[i].write_shut && !props::stream_may_be_cut(reason) {
                    self.finish_wire(i);
                }
                self.check_stream_close(i, reason, step);
                let c = &mut self.conns[i];
                // S5, S8: a client that may still be sending is closed only
                // after lingering, but for the reasons that allow it — or
                // when the application owns the socket (an upgrade).
                assert!(
                    c.write_shut
                        || c.eof
                        || c.upgraded
                        || props::may_close_without_linger(reason),
                    "S8: closed for {reason:?} without lingering, while the client may still be sending"
                );
                if c.upgraded {
                    assert!(
                        props::upgraded_close_ok(reason, c.app_closed),
                        "an upgraded connection closed for {reason:?}"
                    );
                    self.upgraded_cut += u64::from(reason.is_forced());
                }
                c.open = false;
                if !c.unread.is_empty() {
                    step.closed_with_unread.push(i);
                }
                self.lose_what_is_left(i, reason, step);
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
            Event::Exit => {
                self.exited = true;
                step.exit = self.server.exit_report().cloned();
            }
        }
    }

    fn after_step(&mut self, step: &Step) {
        self.check_invariants();
        let forced = step.exit.as_ref().is_some_and(|r| r.forced.is_some());
        for &(i, answered, reason) in &step.lost {
            // The application broke a stream: the connection ends with
            // whatever it had queued. The client left in the middle of a
            // streamed body: its request can never be answered.
            let excused = forced
                || step.reset == Some(i)
                || reason == CloseReason::Aborted
                || props::close_may_lose(reason)
                || reason == CloseReason::StreamMismatch
                || (reason == CloseReason::ClientClosed
                    && !answered
                    && self.config.stream_request_bodies);
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
                forced
                    || step.reset == Some(i)
                    || step.broken.map(|b| b.0) == Some(i)
                    || step.timeout,
                "S5: core closed a connection whose input the driver had not read"
            );
        }
        if let Some(i) = step.reset {
            assert!(!self.conns[i].open, "a reset connection was not closed");
        }
        if let Some((i, ahead)) = step.broken {
            let c = &mut self.conns[i];
            c.broke = true;
            let queued = self.server.transmit(c.id) != [&[][..], &[]];
            assert!(
                !c.open || c.write_shut || queued || ahead,
                "a stream broke, but its connection goes on"
            );
        }
        self.note_revoked();
        self.check_streams_and_upgrades();
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
            if c.open && c.upgraded && !c.upgraded_in_drain {
                c.upgraded_in_drain = true;
                self.upgraded_open += 1;
            }
            if c.open {
                // Core asks for the unread count (`CountUnread`) as the
                // drain begins, before this is seen: what that added stays.
                c.received_at_drain = Some(c.received_at_drain.unwrap_or(0).max(c.received));
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
            || self.live_stream_on(i)
    }

    /// Whether a stream the application has not ended is under way on
    /// connection `i`.
    fn live_stream_on(&self, i: usize) -> bool {
        self.streams
            .iter()
            .any(|s| s.conn == i && !s.ended && !s.broken)
    }

    /// A request handed over with its body still to come (streamed
    /// bodies) is taken back when core refuses the rest of the body (a
    /// timeout, a body too large or malformed): core answers it with its
    /// own 4xx, and refuses the application's answer from now on.
    fn note_revoked(&mut self) {
        let server = &self.server;
        let conns = &self.conns;
        let mut revoked = Vec::new();
        self.pending.retain(|&id| {
            let open = conns.iter().any(|c| c.id == id.conn() && c.open);
            let gone = open && server.request(id).is_none();
            if gone {
                revoked.push(id);
            }
            !gone
        });
        for id in revoked {
            assert!(
                self.config.stream_request_bodies,
                "a request whose body was whole was taken back from the application"
            );
            self.answered.push(id);
            self.revoked.push(id);
        }
    }

    /// S1 with streams and upgrades: core counts every connection with a
    /// waiting request or a stream under way, and never an upgraded or
    /// half-closed one. No more than `max_stream_buffer_bytes` of a
    /// streamed request body waits for the application. Every upgraded
    /// connection open in the drain was told to stop, and core writes
    /// nothing on one.
    fn check_streams_and_upgrades(&self) {
        let open = || (0..self.conns.len()).filter(|&i| self.conns[i].open);
        let busy = open()
            .filter(|&i| {
                self.live_stream_on(i) || self.pending.iter().any(|r| r.conn() == self.conns[i].id)
            })
            .count();
        let countable = open()
            .filter(|&i| !self.conns[i].upgraded && !self.conns[i].write_shut)
            .count();
        let active = self.server.active_requests();
        assert!(
            busy <= active && active <= countable,
            "S1: {active} active, but {busy} connections wait for the application and {countable} are neither upgraded nor half-closed"
        );
        for &id in &self.pending {
            if let Some(body) = self.server.request_body(id) {
                assert!(
                    body.data.len() <= self.config.max_stream_buffer_bytes,
                    "{} bytes of streamed body buffered, over max_stream_buffer_bytes",
                    body.data.len()
                );
            }
        }
        let draining = matches!(self.server.phase(), Phase::Draining { .. });
        for i in open().filter(|&i| self.conns[i].upgraded) {
            let c = &self.conns[i];
            assert!(
                !draining || c.told_to_stop,
                "an upgraded connection open in the drain was not told to stop"
            );
            assert_eq!(
                self.server.transmit(c.id),
                [&[][..], &[]],
                "core writes on an upgraded connection"
            );
        }
    }

    /// A stream the application has not ended ends with its connection
    /// only for the reasons that may cut one — so it keeps the drain from
    /// exiting until it ends or the deadline; a length mismatch closes the
    /// connection whose stream broke, in the step that broke it.
    ///
    /// The mismatch close comes at once, without lingering, even with
    /// input in flight: the response under way is broken, so there is no
    /// well-formed one left to protect from a reset — though responses
    /// queued before it on the same connection go too.
    /// What the `i`th connection still owed is lost, as it ends for
    /// `reason`: answers not completely written, and requests handed over
    /// and unanswered.
    fn lose_what_is_left(&mut self, i: usize, reason: CloseReason, step: &mut Step) {
        let c = &mut self.conns[i];
        // A broken stream's request ended already, failed (its `Finished`
        // came with the break, or once what was queued before it was
        // written).
        let unwritten = (c.answered.len() - c.completed).saturating_sub(usize::from(c.broke));
        step.lost.extend((0..unwritten).map(|_| (i, true, reason)));
        c.completed += unwritten;
        let id = c.id;
        let (answered, finished) = (&mut self.answered, &self.finished);
        self.pending.retain(|r| {
            let dropped = r.conn() == id;
            if dropped {
                // S2: every request core drops ends, and says so first.
                assert!(finished.contains(r), "{r:?} dropped without a Finished");
                step.lost.push((i, false, reason));
                answered.push(*r);
            }
            !dropped
        });
    }

    fn check_stream_close(&self, i: usize, reason: CloseReason, step: &Step) {
        if reason == CloseReason::StreamMismatch {
            assert!(
                step.broken.map(|b| b.0) == Some(i) || self.conns[i].broke,
                "closed for StreamMismatch, but no stream broke on it"
            );
        }
        assert!(
            !self.live_stream_on(i) || props::stream_may_be_cut(reason),
            "a stream under way was cut by a close for {reason:?}"
        );
    }

    /// The open, not half-closed connections known to be idle (or never
    /// used): when those known to be active account for core's whole
    /// active count, the rest have nothing under way.
    fn known_idle(&self) -> Option<Vec<usize>> {
        let open: Vec<usize> = (0..self.conns.len())
            .filter(|&i| {
                let c = &self.conns[i];
                c.open && !c.write_shut && !c.upgraded
            })
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
        assert_eq!(
            (report.upgraded_open, report.upgraded_cut),
            (self.upgraded_open, self.upgraded_cut),
            "report upgraded_open and upgraded_cut"
        );
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
        assert!(!c.close_written, "{AFTER_CLOSE}");
        let app = AppLog {
            is_head: &c.is_head,
            answered: &c.answered,
            faulted: &c.faulted,
            streamed: &c.streamed,
            http10: &c.http10,
        };
        let done = c.wire.feed(bytes, &app);
        self.on_responses(i, done);
        let c = &self.conns[i];
        assert!(!(c.close_written && c.wire.mid_response()), "{AFTER_CLOSE}");
    }

    /// Core ended its side of connection `i` after a body that runs until
    /// the close: that response is complete.
    fn finish_wire(&mut self, i: usize) {
        let c = &mut self.conns[i];
        let app = AppLog {
            is_head: &c.is_head,
            answered: &c.answered,
            faulted: &c.faulted,
            streamed: &c.streamed,
            http10: &c.http10,
        };
        let done = c.wire.finish(&app);
        self.on_responses(i, done);
    }

    /// Responses completely written on connection `i`: in request order,
    /// rejections that close, nothing after a close; a streamed one whole
    /// only if the application ended it (a cut one must not look
    /// complete); a 100 Continue to a streamed body only once the
    /// application asked for it.
    fn on_responses(&mut self, i: usize, done: Vec<Answered>) {
        let streaming = self.config.stream_request_bodies;
        let c = &mut self.conns[i];
        for Answered { response: r, seq } in done {
            assert!(!c.close_written, "{AFTER_CLOSE}");
            if r.status == 100 {
                c.continues += 1;
                assert!(
                    !streaming || c.continues <= c.bodies_wanted,
                    "100 Continue before the application asked for the body"
                );
            } else {
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
                        // A 101 leaves HTTP: there is no next request.
                        assert!(
                            r.close || r.status == 101 || !c.asks_to_close[seq as usize],
                            "the client asked to close, the response does not say so"
                        );
                        c.last_seq_on_wire = Some(seq);
                        c.completed += 1;
                        if let Some(st) = self
                            .streams
                            .iter()
                            .find(|s| s.conn == i && s.id.seq() == seq)
                        {
                            if st.body == Some(None) {
                                assert!(
                                    st.ended,
                                    "a streamed body of unknown length complete on the wire, though the application never ended it"
                                );
                                assert_eq!(r.body_len as u64, st.sent, "streamed body length");
                            }
                        }
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
    }

    /// Notes whether the output queued or written on connection `i` holds a
    /// `Connection: close` response.
    fn note_queued_close(&mut self, i: usize) {
        if self.conns[i].close_queued {
            return;
        }
        // Streamed bodies of unknown length to HTTP/1.0: the close ends
        // them, whatever the drain.
        let delimited: Vec<u32> = self
            .streams
            .iter()
            .filter(|s| s.conn == i && s.body == Some(None))
            .map(|s| s.id.seq())
            .filter(|&seq| self.conns[i].http10[seq as usize])
            .collect();
        let c = &mut self.conns[i];
        let [a, b] = self.server.transmit(c.id);
        let mut all = a.to_vec();
        all.extend_from_slice(b);
        // What is queued continues where the reader of what was written
        // stopped; a copy of it reads the queue.
        let app = AppLog {
            is_head: &c.is_head,
            answered: &c.answered,
            faulted: &c.faulted,
            streamed: &c.streamed,
            http10: &c.http10,
        };
        let mut wire = c.wire.clone();
        let queued = wire.feed(&all, &app);
        // A response whose head is queued and whose body is still to come
        // (a stream under way) is judged by its head. A 101 ends HTTP on
        // the connection as a close does, and for its own sake, as a body
        // ended by the close does.
        let heads = queued
            .iter()
            .map(|a| (a.seq, a.response.close, a.response.status == 101))
            .chain(wire.pending_head().map(|(seq, close)| (seq, close, false)));
        for (seq, close, switch) in heads {
            let close = close || switch;
            if let Some(seq) = seq.filter(|&seq| seq >= c.judged) {
                c.judged = seq + 1;
                judge_close(c, seq, close, switch || delimited.contains(&seq));
            }
            c.close_queued |= close;
        }
        c.close_queued |= c.close_written;
    }
}

/// S7: the response to request `seq` on `c`, queued with `Connection:
/// close` if `close`. It must close if the application answered it in
/// PreStop with nothing after it received, or if the request began in the
/// drain. Unless the client asked to close, or the response closes for its
/// own sake (`inherent`: a `101`, or a body the close ends), PreStop must
/// not close after it if core had received bytes after it, and the drain
/// must not if the client had sent the next request whole before the drain
/// began, received by core or held unread. Where a request ends is known
/// only while the client sent whole canned requests: the PreStop rules
/// wait for that.
fn judge_close(c: &ConnModel, seq: u32, close: bool, inherent: bool) {
    let n = seq as usize;
    let answered_in = c.answered_in.get(n).copied().unwrap_or(0);
    let begun_in_drain = c.begun_in_drain_from.is_some_and(|from| seq >= from);
    let end = c.ends.as_ref().and_then(|ends| ends.get(n).copied());
    let read_past_it = end.map(|end| c.received_when_answered.get(n).is_some_and(|&r| r > end));
    let pre_stop_alone = answered_in == 1 && read_past_it == Some(false);
    assert!(
        close || !props::response_must_close(pre_stop_alone, begun_in_drain),
        "S7: the response to request {seq} keeps the connection, though {}",
        if pre_stop_alone {
            "it was answered in PreStop with nothing after it"
        } else {
            "the request began in the drain"
        }
    );
    let asked_to_close = c.asks_to_close.get(n).copied().unwrap_or(true);
    assert!(
        !props::pre_stop_dropped_pipelined(
            answered_in == 1,
            read_past_it == Some(true),
            close,
            inherent || asked_to_close
        ),
        "S7: the response to request {seq} in PreStop closes, though core had received bytes after it"
    );
    if !close || inherent || answered_in != 2 || asked_to_close {
        return;
    }
    let next_end = c.ends.as_ref().and_then(|ends| ends.get(n + 1).copied());
    if let (Some(end), Some(before)) = (next_end, c.received_at_drain) {
        assert!(
            end > before,
            "S7: the drain closed the connection after request {seq}, though request {} had come whole before the drain began",
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
            broke: false,
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
            counted_at_drain: false,
            fed: 0,
            ends: Some(Vec::new()),
            last_done: now,
            received_since_done: false,
            begun_in_drain_from: None,
            answered_in: Vec::new(),
            received_when_answered: Vec::new(),
            judged: 0,
            http10: Vec::new(),
            asks_upgrade: Vec::new(),
            streamed: Vec::new(),
            switching: None,
            upgraded: false,
            app_closed: false,
            told_to_stop: false,
            upgraded_in_drain: false,
            bodies_wanted: 0,
            continues: 0,
        }
    }
}
