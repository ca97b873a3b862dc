//! The checker: it watches what core writes and how it closes, keeps its own
//! ledger of what the world saw, and judges — safety after every step, the
//! drain report at exit, liveness at the end. The properties are cited by
//! number (`S1`…`S9`, listed in the crate docs).

use std::collections::{BTreeMap, VecDeque};

use ebb_core::{CloseReason, Config, DrainReport, Forced, Phase, RequestId, Server, Time};

use crate::app::Got;
use crate::client::{Clients, Fate};
use crate::driver::{Cause, DriverModel};
use crate::env::Env;
use crate::failure::Failure;
use crate::http::{Resp, RespParser};
use crate::kernel::{Dir, Kernel};

/// How core's socket of a connection was closed, for judging lost responses.
#[derive(Clone, Copy, Debug)]
pub struct Closing {
    /// The core input whose `Close` event closed it (`None`: core never had
    /// it — reset in the backlog, or accepted after exit).
    pub cause: Option<Cause>,
    /// Whether losing a response to this close is allowed: a deadline
    /// (timer) or a forced exit, or linger giving up on too many bytes.
    pub loss_allowed: bool,
    /// Closed after the first terminate (so the drain report covers it).
    pub in_drain: bool,
    /// The world step it was closed in.
    pub step: u64,
}

/// How far core has gone in ending a connection.
#[derive(Clone, Copy, Debug)]
enum Ending {
    Open,
    /// `HalfClose` came (the reason was judged then); lingering.
    HalfClosed,
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

/// What the checker knows of one connection.
#[derive(Debug)]
struct Watch {
    /// What core wrote, parsed as it was handed to the kernel.
    parser: RespParser,
    owed: VecDeque<Owed>,
    /// Request bytes of every request handed on this connection.
    handed_bytes: usize,
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
    ending: Ending,
    /// A lost response on this connection was judged already.
    loss_judged: bool,
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
}

/// A request the application received.
#[derive(Clone, Debug)]
struct Handed {
    k: usize,
    client: usize,
    no: usize,
    attempt: u32,
    /// Its response was completely handed to the kernel.
    sent_fully: bool,
}

/// Counts the drain report is held against.
#[derive(Debug, Default)]
struct Ledger {
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
}

/// How the listener was closed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ListenerSeen {
    Open,
    /// After `DrainBacklog` and `backlog_empty`.
    AfterBacklog,
    /// By some other input (only a forced exit may do that).
    Early(Cause),
}

/// The judge of one run.
pub struct Checker {
    watches: Vec<Watch>,
    handed: BTreeMap<RequestId, Handed>,
    ledger: Ledger,
    terminates: u32,
    drain_began_at: Option<Time>,
    listener: ListenerSeen,
    allowed_losses: u64,
    /// Core's active count when the step began.
    step_active: usize,
    /// The step's input was a terminate.
    step_terminate: bool,
    config: Config,
}

impl Checker {
    /// A checker for a server configured with `config`.
    pub fn new(config: Config) -> Checker {
        Checker {
            watches: Vec::new(),
            handed: BTreeMap::new(),
            ledger: Ledger::default(),
            terminates: 0,
            drain_began_at: None,
            listener: ListenerSeen::Open,
            allowed_losses: 0,
            step_active: 0,
            step_terminate: false,
            config,
        }
    }

    /// Responses lost for reasons the properties allow (deadline, timeouts).
    pub fn allowed_losses(&self) -> u64 {
        self.allowed_losses
    }

    // Observations.

    /// A step begins.
    pub fn begin_step(&mut self, core: &Server) {
        self.step_active = core.active_requests();
        self.step_terminate = false;
    }

    /// A client connected: connection `k` (numbered in order) exists.
    pub fn on_connect(&mut self, k: usize) {
        debug_assert_eq!(k, self.watches.len());
        self.watches.push(Watch {
            parser: RespParser::default(),
            owed: VecDeque::new(),
            handed_bytes: 0,
            responses: 0,
            closed_resp: false,
            received: 0,
            received_at_drain: self.drain_began_at.map(|_| 0),
            accepted_at: None,
            idle_since: None,
            ending: Ending::Open,
            loss_judged: false,
        });
    }

    /// SIGTERM arrived; returns how many have.
    pub fn on_terminate(&mut self) -> u32 {
        self.terminates += 1;
        self.step_terminate = true;
        self.terminates
    }

    /// The input just made began the drain: note, for every connection, how
    /// much core had received (later bytes begin requests in the drain).
    pub fn drain_began(&mut self, env: &Env) {
        self.drain_began_at = Some(env.now);
        for w in &mut self.watches {
            w.received_at_drain = Some(w.received);
        }
    }

    /// The driver accepted connection `k`.
    pub fn on_accepted(&mut self, k: usize, env: &Env) {
        self.watches[k].accepted_at = Some(env.now);
    }

    /// The driver accepted a connection while carrying out `DrainBacklog`.
    pub fn on_backlog_accept(&mut self) {
        self.ledger.backlog_accepted += 1;
    }

    /// The driver passed `n` bytes of `k` to `handle_recv`.
    pub fn on_received(&mut self, k: usize, n: usize, _env: &Env) {
        let w = &mut self.watches[k];
        w.received += n;
        w.idle_since = None;
    }

    /// Core's socket of `k` died without core knowing it: reset in the
    /// backlog, or accepted after exit. `forced`: by a forced exit.
    pub fn on_reset_unaccepted(&mut self, k: usize, forced: bool, env: &Env) {
        self.watches[k].ending = Ending::Closed(Closing {
            cause: None,
            loss_allowed: forced,
            in_drain: self.terminates > 0,
            step: env.step,
        });
    }

    /// `CloseListener` was carried out; `reset` are the connections it
    /// reset in the backlog.
    pub fn on_listener_closed(&mut self, cause: Cause, reset: &[usize], env: &mut Env) {
        let after_backlog = cause == Cause::BacklogEmpty;
        for &k in reset {
            self.on_reset_unaccepted(k, !after_backlog, env);
        }
        if after_backlog {
            self.listener = ListenerSeen::AfterBacklog;
            if !reset.is_empty() {
                env.fail(Failure::Safety(format!(
                    "S8: the listener closed after the backlog was drained, yet it reset {} queued connections",
                    reset.len()
                )));
            }
        } else {
            self.listener = ListenerSeen::Early(cause);
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
        w.owed.push_back(Owed {
            id,
            token: got.token.clone(),
            start: w.handed_bytes,
            faulted: got.fault.is_some(),
        });
        w.handed_bytes += got.raw_len;
        self.handed.insert(
            id,
            Handed {
                k,
                client: got.client,
                no: got.no,
                attempt: got.attempt,
                sent_fully: false,
            },
        );
        true
    }

    /// Core wrote `bytes` on `k`. S4: they parse as HTTP/1.1, responses come
    /// in request order, nothing follows a `Connection: close` response. S2:
    /// a request the application failed is answered by core's 500 in its
    /// place.
    pub fn on_written(&mut self, k: usize, bytes: &[u8], env: &mut Env) {
        let w = &mut self.watches[k];
        if w.closed_resp {
            return env.fail(Failure::Safety(format!(
                "S4: k{k}: {} bytes written after the Connection: close response",
                bytes.len()
            )));
        }
        let mut out: Vec<Resp> = Vec::new();
        if let Err(e) = w.parser.feed(bytes, &mut out) {
            return env.fail(Failure::Safety(format!(
                "S4: k{k}: core wrote a malformed response: {e}"
            )));
        }
        for resp in out.into_iter().filter(|r| r.status >= 200) {
            let w = &mut self.watches[k];
            w.responses += 1;
            w.closed_resp |= resp.close;
            let front_faulted = w.owed.front().is_some_and(|o| o.faulted);
            // The answer to a handed request: its token, or core's 500 for
            // one the application failed.
            let answers_front = match (&resp.token, front_faulted) {
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
            if answers_front {
                let Some(owed) = w.owed.pop_front() else {
                    return env.fail(Failure::Safety(format!(
                        "S4: k{k}: response for {:?} but no request is unanswered",
                        resp.token
                    )));
                };
                if resp.token.as_ref().is_some_and(|t| *t != owed.token) {
                    return env.fail(Failure::Safety(format!(
                        "S4: k{k}: response for {:?} but the oldest unanswered request is {}",
                        resp.token, owed.token
                    )));
                }
                if let Some(h) = self.handed.get_mut(&owed.id) {
                    h.sent_fully = true;
                }
                // DESIGN, drain phase 3: a request begun after the drain
                // began is answered with `Connection: close`, so its client
                // sends nothing more that the drain could lose (S7).
                let begun_in_drain = w.received_at_drain.is_some_and(|r| owed.start >= r);
                if begun_in_drain && !resp.close {
                    return env.fail(Failure::Safety(format!(
                        "S7: k{k}: {} began after the drain began, but its response keeps the connection",
                        owed.token
                    )));
                }
            } else if let Some(first) = w.owed.front() {
                return env.fail(Failure::Safety(format!(
                    "S4: k{k}: rejection {} written before the answer to {}",
                    resp.status, first.token
                )));
            }
            if w.idle() {
                w.idle_since = Some(env.now);
            }
            if self.terminates > 0 {
                match answers_front {
                    true => self.ledger.completed_after_terminate += 1,
                    false => self.ledger.rejected_after_terminate += 1,
                }
            }
        }
    }

    /// `HalfClose` of `k`: the decision to end it, judged now.
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
        self.watches[k].ending = Ending::HalfClosed;
    }

    /// `Close` of `k`: judged as a decision unless a half-close came first,
    /// and remembered for judging what its client loses.
    ///
    /// Losing a response to a close is allowed when the exit was forced, when
    /// linger gave up on too many bytes, and when a timer closed it — except
    /// a linger timer closing a socket with unread input: lingering reads
    /// everything, so unread input there means core stopped the reads.
    pub fn on_close(
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
        let loss_allowed = match reason {
            CloseReason::DeadlineCut | CloseReason::ForcedExit | CloseReason::AfterExit => true,
            CloseReason::LingerOverflow => true,
            CloseReason::LingerTimeout => kernel.server_unread(k) == 0,
            CloseReason::WriteStall | CloseReason::FirstByteGrace => true,
            CloseReason::Rejected(
                ebb_core::Reject::HeadTimeout | ebb_core::Reject::BodyTimeout,
            ) => true,
            _ => false,
        };
        self.watches[k].ending = Ending::Closed(Closing {
            cause: Some(cause),
            loss_allowed,
            in_drain: self.terminates > 0,
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
        if let Some(d) = self.drain_began_at {
            let late = match (w.idle_since, w.accepted_at) {
                (Some(t), _) if idle => Some(("idle", (t + self.config.idle_close_after).max(d))),
                (_, Some(a)) if silent => Some(("silent", a.max(d) + self.config.first_byte_grace)),
                _ => None,
            }
            .filter(|&(_, by)| env.now > by);
            if let Some((what, by)) = late {
                env.fail(Failure::Safety(format!(
                    "S9: k{k}: a {what} connection due to close by {by:?} was ended only now, for {reason:?}"
                )));
            }
        }
        let wrong = match reason {
            CloseReason::FirstByteGrace => {
                self.ledger.silent += 1;
                !(silent && draining && cause == Cause::Timeout)
            }
            CloseReason::IdleInDrain => {
                self.ledger.idle += 1;
                !(idle && draining && matches!(cause, Cause::Timeout | Cause::Terminate))
            }
            // Closing a connection that is not idle could lose a request (S7).
            CloseReason::KeepAliveTimeout => {
                !((idle || silent) && !draining && cause == Cause::Timeout)
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
        if kernel.client_aborted(k) || std::mem::replace(&mut w.loss_judged, true) {
            return;
        }
        match w.closing() {
            Some(cl) if cl.loss_allowed => {
                self.allowed_losses += 1;
                if cl.in_drain {
                    self.ledger.drain_losses += 1;
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

    /// Safety, after every step that made a core input.
    pub fn check_step(
        &mut self,
        core: &Server,
        driver: &DriverModel,
        kernel: &Kernel,
        env: &mut Env,
    ) {
        if let Err(e) = core.check_invariants() {
            env.fail(Failure::Safety(format!("S1: core's self-check: {e}")));
        }
        let (active, recount) = (core.active_requests(), core.recount_active_requests());
        if active != recount {
            env.fail(Failure::Safety(format!(
                "S1: active count {active} != recount {recount}"
            )));
        }
        let exited = driver.exit().is_some();
        if !exited
            && matches!(core.phase(), Phase::Draining { .. })
            && self.listener != ListenerSeen::Open
            && core.connections() == 0
        {
            env.fail(Failure::Safety(
                "S6: draining, listener closed, no connection left, but no Exit in this step"
                    .into(),
            ));
        }
        if self.step_terminate && self.terminates >= 2 && !exited {
            env.fail(Failure::Safety(
                "S9: a second terminate, but no Exit in the same step".into(),
            ));
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
        if r.exited_at != env.now {
            env.fail(Failure::Safety(format!(
                "S6: Exit says {:?} but it is {:?}",
                r.exited_at, env.now
            )));
        }
        if r.exited_at > r.terminated_at + c.pre_stop + c.drain_timeout {
            env.fail(Failure::Safety(format!(
                "S6: exit at {:?}, after terminate + pre_stop + drain_timeout",
                r.exited_at
            )));
        }
        if let Some(d) = r.draining_at {
            if r.exited_at > d + c.drain_timeout {
                env.fail(Failure::Safety(format!(
                    "S6: exit at {:?}, past the drain deadline",
                    r.exited_at
                )));
            }
        }
        if core.active_requests() != 0 {
            env.fail(Failure::Safety(format!(
                "S1: exit with an active count of {}",
                core.active_requests()
            )));
        }
        if let ListenerSeen::Early(cause) = self.listener {
            if r.forced.is_none() {
                env.fail(Failure::Safety(format!(
                    "S9: CloseListener on {cause:?} before the backlog was drained, and the exit was not forced"
                )));
            }
        }
        if r.backlog_accepted != self.ledger.backlog_accepted {
            env.fail(Failure::Report(format!(
                "report backlog_accepted {} but the driver accepted {} from the backlog",
                r.backlog_accepted, self.ledger.backlog_accepted
            )));
        }
        if r.requests_completed != self.ledger.completed_after_terminate
            || r.requests_rejected != self.ledger.rejected_after_terminate
        {
            env.fail(Failure::Report(format!(
                "report requests_completed {} and rejected {}, but {} answers and {} rejections were completely written after terminate",
                r.requests_completed,
                r.requests_rejected,
                self.ledger.completed_after_terminate,
                self.ledger.rejected_after_terminate
            )));
        }
        match r.forced {
            None => {
                if r.requests_cut != 0 {
                    env.fail(Failure::Report(format!(
                        "drain completed but requests_cut {}",
                        r.requests_cut
                    )));
                }
            }
            Some(Forced::SecondTerminate) if self.terminates < 2 => env.fail(Failure::Report(
                "forced by a second terminate that never came".into(),
            )),
            Some(Forced::Deadline)
                if r.draining_at.map(|d| d + c.drain_timeout) != Some(r.exited_at) =>
            {
                env.fail(Failure::Report(
                    "forced by the deadline, but not at the deadline".into(),
                ))
            }
            Some(_) => {
                // S2: every handed request still unanswered on a connection
                // the forced exit closed was cut; at most every active one was.
                let lower = self
                    .handed
                    .values()
                    .filter(|h| {
                        !h.sent_fully
                            && self.watches[h.k].closing().is_some_and(|cl| {
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

    /// Liveness, at the end: core exited; every handed request was answered
    /// completely, or its loss is allowed and counted (S2, S7); every client
    /// finished. Then the report's close counts.
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
        for (id, h) in &self.handed {
            let req = clients
                .req(h.client, h.no)
                .expect("handed requests are in a script");
            let complete = req.fate == Fate::Complete && req.attempt == h.attempt;
            let closing = self.watches[h.k].closing();
            let allowed = kernel.client_aborted(h.k) || closing.is_some_and(|cl| cl.loss_allowed);
            if !complete && !allowed {
                return env.fail(Failure::Liveness(format!(
                    "S2: request {}.{}.{} ({id:?}) handed to the application on k{} but never answered completely (client fate {:?}, core close {closing:?})",
                    h.client, h.no, h.attempt, h.k, req.fate
                )));
            }
        }
        if let Some(c) = clients.iter().find(|c| !c.is_done()) {
            return env.fail(Failure::Liveness(format!("client never finished: {c}")));
        }
        if (r.silent_closed, r.idle_closed) != (self.ledger.silent, self.ledger.idle) {
            return env.fail(Failure::Report(format!(
                "report silent_closed {} and idle_closed {}, but core closed {} silent and {} idle connections",
                r.silent_closed, r.idle_closed, self.ledger.silent, self.ledger.idle
            )));
        }
        if self.ledger.drain_losses > r.reset_risk_closes + r.requests_cut {
            env.fail(Failure::Report(format!(
                "{} connections lost responses in the drain, but the report counts {} reset-risk closes and {} cuts",
                self.ledger.drain_losses, r.reset_risk_closes, r.requests_cut
            )));
        }
    }
}
