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

use std::collections::{BTreeMap, VecDeque};

use ebb_core::{CloseReason, Config, DrainReport, Finished, Forced, Outcome, Phase, RequestId};
use ebb_core::{Server, Time};
use ebb_testkit::properties as props;
use ebb_testkit::response::{Framing, Response, ResponseParser};

use crate::app::Got;
use crate::client::{Clients, Fate};
use crate::driver::{Cause, DriverModel};
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
}

/// A request a client wrote on a connection, as the ledger (S7) knows it.
#[derive(Clone, Copy, Debug)]
struct Sent {
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
    /// Requests handed on this connection.
    handed_count: u32,
    /// Final responses completely written.
    responses: u32,
    /// A final response with `Connection: close` was completely written.
    closed_resp: bool,
    /// Bytes passed to `handle_recv`.
    received: usize,
    /// `received` when the drain began.
    received_at_drain: Option<usize>,
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
    /// The requests its client wrote, in order (S7).
    sent: Vec<Sent>,
    /// How many of `sent` have arrived whole at the server's socket.
    arrived: usize,
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
}

impl Watch {
    fn closing(&self) -> Option<Closing> {
        match self.ending {
            Ending::Closed(c) => Some(c),
            _ => None,
        }
    }

    fn silent(&self) -> bool {
        self.received == 0 && self.responses == 0
    }

    fn idle(&self) -> bool {
        self.received == self.handed_bytes
            && self.owed.is_empty()
            && self.responses > 0
            && !self.closed_resp
    }

    /// Core is reading a request on it: bytes past the requests handed
    /// over, none waiting for an answer, no close response written.
    fn receiving(&self) -> bool {
        self.received > self.handed_bytes && self.owed.is_empty() && !self.closed_resp
    }
}

/// A request the application received.
#[derive(Clone, Debug)]
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
    /// Responses the application gave in PreStop (each closes).
    pub pre_stop_responses: u64,
    /// Known gap: requests that arrived whole before the drain, pipelined
    /// behind a response core closed with before the drain (in PreStop,
    /// every response closes), so never answered; their clients retry them.
    pub closed_before_drain_dropped: u64,
    /// Known gap: requests that arrived whole at the socket before the
    /// drain but that core had not read when it began (queued in the
    /// backlog, or behind paused reads), pipelined behind a response the
    /// drain closed with; never answered, their clients retry them.
    pub unread_at_drain_dropped: u64,
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
}

/// The judge of one run.
pub struct Checker {
    watches: Vec<Watch>,
    handed: BTreeMap<(usize, RequestId), Handed>,
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
    /// The step's input was a terminate while the server was already
    /// stopping.
    step_forcing_terminate: bool,
    tick: Tick,
    cover: Cover,
    config: Config,
}

impl Checker {
    /// A checker for a server configured with `config`.
    pub fn new(config: Config) -> Checker {
        Checker {
            watches: Vec::new(),
            handed: BTreeMap::new(),
            counts: ReportCounts::default(),
            stops: 0,
            terminates: 0,
            handed_off: false,
            drain_began_at: None,
            drain_began: None,
            listener: ListenerSeen::Open,
            allowed_losses: 0,
            step_active: 0,
            step_forcing_terminate: false,
            tick: 0,
            cover: Cover::default(),
            config,
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
        self.watches.push(Watch {
            successor: false,
            parser: ResponseParser::without_bodies(),
            owed: VecDeque::new(),
            handed_bytes: 0,
            handed_count: 0,
            responses: 0,
            closed_resp: false,
            received: 0,
            received_at_drain: self.drain_began_at.map(|_| 0),
            accepted_at: None,
            idle_since: None,
            head_since: None,
            ending: Ending::Open,
            ended: None,
            loss_judged: false,
            sent: Vec::new(),
            arrived: 0,
            client_finals: 0,
            farewell_read: None,
            close_response: None,
            finished_responses: 0,
            farewell: None,
            offered: false,
        });
    }

    /// The client of `k` wrote a request whose last byte is at `end` in the
    /// connection's byte stream.
    pub fn on_sent(&mut self, k: usize, end: u64) {
        self.watches[k].sent.push(Sent { end, arrived: None });
    }

    /// The server's socket of `k` has received `total` bytes in all: the
    /// requests that ended within them have arrived (S7's "completely sent").
    pub fn on_delivered(&mut self, k: usize, total: u64) {
        let tick = self.next_tick();
        let w = &mut self.watches[k];
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
        for w in self.watches.iter_mut().filter(|w| !w.successor) {
            w.received_at_drain = Some(w.received);
        }
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
        w.idle_since = None;
    }

    /// Core's socket of `k` died without core knowing it: reset in the
    /// backlog, or accepted after exit. `forced`: by a forced exit.
    pub fn on_reset_unaccepted(&mut self, k: usize, forced: bool, env: &Env) {
        let tick = self.next_tick();
        let w = &mut self.watches[k];
        w.ended.get_or_insert(tick);
        w.ending = Ending::Closed(Closing {
            cause: None,
            loss_allowed: forced,
            forced,
            in_drain: self.stops > 0,
            step: env.step,
        });
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
        // Requests on a connection are numbered in order.
        if id.seq() != w.handed_count {
            env.fail(Failure::Safety(format!(
                "S4: k{k}: request {} handed as seq {}, but {} were handed before it",
                got.token,
                id.seq(),
                w.handed_count
            )));
            return false;
        }
        w.handed_count += 1;
        w.owed.push_back(Owed {
            id,
            token: got.token.clone(),
            start: w.handed_bytes,
            faulted: got.fault.is_some(),
        });
        w.handed_bytes += got.raw_len;
        self.handed.insert(
            (k, id),
            Handed {
                client: got.client,
                no: got.no,
                attempt: got.attempt,
                sent_fully: false,
                answered: None,
                answered_in_pre_stop: false,
            },
        );
        true
    }

    /// The application answered (or failed) request `id` on `k`, in `phase`.
    pub fn on_app_answered(&mut self, k: usize, id: RequestId, phase: Phase) {
        let tick = self.next_tick();
        if let Some(h) = self.handed.get_mut(&(k, id)) {
            h.answered = Some(tick);
            h.answered_in_pre_stop = matches!(phase, Phase::PreStop { .. });
        }
    }

    /// Core wrote `bytes` on `k`. S4: they parse as HTTP/1.1, responses come
    /// in request order, nothing follows a `Connection: close` response. S2:
    /// a request the application failed is answered by core's 500 in its
    /// place. S7: responses that must close do.
    pub fn on_written(&mut self, k: usize, bytes: &[u8], env: &mut Env) {
        let w = &mut self.watches[k];
        if w.closed_resp {
            return env.fail(Failure::Safety(format!(
                "S4: k{k}: {} bytes written after the Connection: close response",
                bytes.len()
            )));
        }
        let mut out: Vec<Response> = Vec::new();
        if let Err(e) = w.parser.feed(bytes, &mut out) {
            return env.fail(Failure::Safety(format!(
                "S4: k{k}: core wrote a malformed response: {e}"
            )));
        }
        for resp in out.into_iter().filter(|r| r.status >= 200) {
            // Every response the world asks for has a length core knows.
            if !matches!(resp.framing, Framing::Length(_) | Framing::Bodiless) {
                return env.fail(Failure::Safety(format!(
                    "S4: k{k}: a {} response framed {:?}, not by Content-Length",
                    resp.status, resp.framing
                )));
            }
            let w = &mut self.watches[k];
            let nth = w.responses as usize;
            w.responses += 1;
            w.closed_resp |= resp.close;
            let front_faulted = w.owed.front().is_some_and(|o| o.faulted);
            // The answer to a handed request: its token, or core's 500 for
            // one the application failed.
            let token = token_of(&resp);
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
                (None, false) => false,
            };
            let mut answered_in_drain = false;
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
                let mut pre_stop = false;
                if let Some(h) = self.handed.get_mut(&(k, owed.id)) {
                    h.sent_fully = true;
                    pre_stop = h.answered_in_pre_stop;
                    answered_in_drain = match (h.answered, self.drain_began) {
                        (Some(a), Some(d)) => a > d,
                        _ => false,
                    };
                }
                if w.successor {
                    self.cover.successor_responses += 1;
                }
                // DESIGN, drain phase 3: a request begun after the drain
                // began is answered with `Connection: close`, so its client
                // sends nothing more that the drain could lose (S7); and
                // every response given in PreStop closes (phase 2).
                let begun_in_drain = w.received_at_drain.is_some_and(|r| owed.start >= r);
                if props::response_must_close(pre_stop, begun_in_drain) && !resp.close {
                    let when = if pre_stop {
                        "was answered in PreStop"
                    } else {
                        "began after the drain began"
                    };
                    return env.fail(Failure::Safety(format!(
                        "S7: k{k}: {} {when}, but its response keeps the connection",
                        owed.token
                    )));
                }
                self.cover.pre_stop_responses += u64::from(pre_stop);
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
                });
            }
            if w.idle() {
                w.idle_since = Some(env.now);
            }
            if self.stops > 0 && !w.successor {
                match answers_front {
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
            .map_or(true, |id| self.handed.contains_key(&(k, id)));
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
        let tick = self.next_tick();
        let w = &mut self.watches[k];
        w.ended.get_or_insert(tick);
        w.ending = Ending::HalfClosed(env.now);
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
        match ending {
            Ending::Open => {
                self.judge_decision(k, reason, cause, phase, kernel, env);
                // S5, S8: a client that may still be sending is closed only
                // after lingering, but for the reasons that allow it.
                if !eof && !props::may_close_without_linger(reason) {
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
            CloseReason::LingerTimeout => kernel.server_unread(k) == 0,
            other => props::close_may_lose(other),
        };
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
        let tick = self.next_tick();
        let w = &mut self.watches[k];
        w.ended.get_or_insert(tick);
        w.ending = Ending::Closed(Closing {
            cause: Some(cause),
            loss_allowed,
            forced: reason.is_forced(),
            in_drain: self.stops > 0,
            step: env.step,
        });
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
            .filter(|&(_, by)| env.now > by);
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
        let wrong = match reason {
            CloseReason::FirstByteGrace => {
                self.counts.silent += 1;
                !(silent && draining && cause == Cause::Timeout)
            }
            CloseReason::IdleInDrain => {
                self.counts.idle += 1;
                !(idle
                    && draining
                    && matches!(cause, Cause::Timeout | Cause::Terminate | Cause::Handoff))
            }
            // Closing a connection that is not idle could lose a request (S7).
            CloseReason::KeepAliveTimeout => {
                !((idle || silent) && !draining && cause == Cause::Timeout)
            }
            CloseReason::NewConnectionTimeout => !(silent && !draining && cause == Cause::Timeout),
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
        if kernel.client_aborted(k) || std::mem::replace(&mut w.loss_judged, true) {
            return;
        }
        match w.closing() {
            Some(cl) if cl.loss_allowed => {
                self.allowed_losses += 1;
                if cl.in_drain && !w.successor {
                    self.counts.drain_losses += 1;
                }
            }
            Some(cl) => env.fail(Failure::Safety(format!(
                "S5: k{k}: {what}: core closed the connection on {:?} (not a deadline or forced exit) — a response lost to a reset core caused",
                cl.cause
            ))),
            None => env.fail(Failure::Safety(format!(
                "S4: k{k}: {what} while core's socket is still open (half-closed mid-response?)"
            ))),
        }
    }

    /// A reset reached the client of `k`. S8: only a close at a deadline, a
    /// timer or a forced exit may reset a client that did nothing wrong.
    pub fn reset_reached(&mut self, k: usize, kernel: &Kernel, env: &mut Env) {
        if kernel.client_aborted(k) {
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
        for (id, k, paused) in driver.socks() {
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
                    .handed
                    .iter()
                    .filter(|((k, _), h)| {
                        !h.sent_fully
                            && self.watches[*k].closing().is_some_and(|cl| {
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
        for ((k, id), h) in &self.handed {
            let req = clients
                .req(h.client, h.no)
                .expect("handed requests are in a script");
            let complete = req.fate == Fate::Complete && req.attempt == h.attempt;
            let closing = self.watches[*k].closing();
            let allowed = kernel.client_aborted(*k) || closing.is_some_and(|cl| cl.loss_allowed);
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
    /// before the drain began. S2/S8 cross-check: every response `Finished`
    /// says was handed over, the client read.
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
                    if !(cr.answered_in_drain && before_drain) {
                        if before_drain && !w.successor && i >= w.client_finals {
                            self.cover.closed_before_drain_dropped += 1;
                        }
                        continue;
                    }
                    // The drain closed after an answer although this request
                    // had arrived before it: core keeps the connection for
                    // what it had *read* before the drain, and cannot know
                    // what waited unread in the socket.
                    let read_before = w.received_at_drain.is_some_and(|r| s.end <= r as u64);
                    if !read_before {
                        if i >= w.client_finals {
                            self.cover.unread_at_drain_dropped += 1;
                        }
                        continue;
                    }
                }
                let answered = i < w.client_finals;
                if answered && w.farewell_read == Some(i) {
                    return env.fail(Failure::Safety(format!(
                        "S7: k{k}: request #{i} arrived whole, yet core refused it with its farewell"
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
                let whose = if w.successor { "the successor" } else { "core" };
                return env.fail(Failure::Safety(format!(
                    "S7: k{k}: request #{i} arrived whole before {whose} ended the connection{}, but its client never read a response (core's close: {closing:?})",
                    if arrived < drain { " and before the drain" } else { "" }
                )));
            }
            let parsed = w.client_finals - usize::from(w.farewell_read.is_some());
            let excused = closing.is_some_and(|cl| cl.loss_allowed);
            if w.finished_responses != parsed && !excused {
                return env.fail(Failure::Safety(format!(
                    "S2/S8: k{k}: Finished says {} responses were handed over, but the client read {parsed}",
                    w.finished_responses
                )));
            }
        }
    }
}
