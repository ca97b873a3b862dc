//! The properties: safety after every step, the drain report against what
//! the world saw, and liveness at the end.

use std::collections::{BTreeMap, VecDeque};

use ebb_core::{CloseReason, DrainReport, Forced, Phase, RequestId};

use crate::client::Fate;
use crate::http::{Resp, RespParser};
use crate::world::{Cause, World};

/// What core wrote on one connection, parsed as it was handed to the kernel.
#[derive(Debug, Default)]
pub struct Observer {
    parser: RespParser,
    /// Requests handed to the application on this connection and not yet
    /// completely answered, oldest first: id, token, and the offset of their
    /// first byte in what core received on the connection.
    pub handed: VecDeque<(RequestId, String, usize)>,
    /// Request bytes of every request handed on this connection.
    pub handed_bytes: usize,
    /// Final responses completely written.
    pub responses: u32,
    /// A final response with `Connection: close` was completely written.
    pub closed_resp: bool,
}

/// A request the application received.
#[derive(Clone, Debug)]
pub struct Handed {
    pub k: usize,
    pub client: usize,
    pub no: usize,
    pub attempt: u32,
    /// The application fails it: core answers 500 without a token.
    pub fault: Option<crate::app::Fault>,
    /// Its response was completely handed to the kernel.
    pub sent_fully: bool,
}

/// What the world observed, to hold core's report against.
#[derive(Debug, Default)]
pub struct Ledger {
    pub handed: BTreeMap<RequestId, Handed>,
    /// Connections accepted while carrying out `DrainBacklog`.
    pub backlog_accepted: u64,
    /// Final responses from the application completely written after the
    /// first terminate.
    pub completed_after_terminate: u64,
    /// Core's own error responses completely written after the first terminate.
    pub rejected_after_terminate: u64,
    /// Connections core closed for their first-byte grace, each checked
    /// against what the world saw of it.
    pub silent: u64,
    /// Idle keep-alive connections core closed in the drain, each checked.
    pub idle: u64,
    /// Connections whose client lost owed response bytes, closed in the drain.
    pub drain_losses: u64,
    pub listener_closed: bool,
    /// The drain has begun: connections accepted from now on begin every
    /// request in the drain.
    pub drain_started: bool,
}

impl World {
    /// Parses bytes core wrote on `k`: responses in request order, nothing
    /// after a closing response.
    pub fn observe_sent(&mut self, k: usize, bytes: &[u8]) {
        if self.conns[k].obs.closed_resp {
            self.fail(format!(
                "k{k}: {} bytes written after the Connection: close response",
                bytes.len()
            ));
            return;
        }
        let mut out: Vec<Resp> = Vec::new();
        if let Err(e) = self.conns[k].obs.parser.feed(bytes, &mut out) {
            self.fail(format!("k{k}: core wrote a malformed response: {e}"));
            return;
        }
        for resp in out.into_iter().filter(|r| r.status >= 200) {
            let obs = &mut self.conns[k].obs;
            obs.responses += 1;
            obs.closed_resp |= resp.close;
            // The answer to a request the application failed is core's 500,
            // without a token, in that request's place.
            let front_faulted = obs.handed.front().is_some_and(|(id, ..)| {
                self.ledger
                    .handed
                    .get(id)
                    .is_some_and(|h| h.fault.is_some())
            });
            let from_app = resp.token.is_some() || front_faulted;
            let token = match (resp.token, front_faulted) {
                (Some(t), _) => Some(t),
                (None, true) if resp.status == 500 => obs.handed.front().map(|h| h.1.clone()),
                (None, true) => {
                    let first = obs.handed[0].1.clone();
                    self.fail(format!(
                        "k{k}: the application failed {first}, but core answered {} instead of 500",
                        resp.status
                    ));
                    return;
                }
                (None, false) => None,
            };
            match token {
                Some(t) => match obs.handed.pop_front() {
                    Some((id, want, start)) if want == t => {
                        if let Some(h) = self.ledger.handed.get_mut(&id) {
                            h.sent_fully = true;
                        }
                        // A request begun after the drain began is answered
                        // with `Connection: close`.
                        let begun_in_drain =
                            self.conns[k].recv_at_drain.is_some_and(|r| start >= r);
                        if begun_in_drain && !resp.close {
                            self.fail(format!(
                                "k{k}: {t} began after the drain began, but its response keeps the connection"
                            ));
                        }
                    }
                    other => self.fail(format!(
                        "k{k}: response for {t} but the oldest unanswered request is {other:?}"
                    )),
                },
                None if !obs.handed.is_empty() => {
                    let first = obs.handed[0].1.clone();
                    self.fail(format!(
                        "k{k}: rejection {} written before the answer to {first}",
                        resp.status
                    ));
                }
                None => {}
            }
            if self.terminates > 0 {
                match from_app {
                    true => self.ledger.completed_after_terminate += 1,
                    false => self.ledger.rejected_after_terminate += 1,
                }
            }
        }
    }

    /// Checks the reason core gave for ending connection `k` (at its
    /// half-close, or its close when none came first) against what the world
    /// saw of it, and counts the ones the drain report counts.
    pub fn classify_close(&mut self, k: usize, reason: CloseReason) {
        let c = &mut self.conns[k];
        if std::mem::replace(&mut c.classified, true) {
            return;
        }
        let obs = &c.obs;
        let silent = c.recv_bytes == 0 && obs.responses == 0;
        let idle = c.recv_bytes == obs.handed_bytes
            && obs.handed.is_empty()
            && obs.responses > 0
            && !obs.closed_resp;
        let draining = matches!(self.server.phase(), Phase::Draining { .. } | Phase::Exited);
        let wrong = match reason {
            CloseReason::FirstByteGrace => {
                self.ledger.silent += 1;
                !(silent && draining && self.cause == Cause::Timeout)
            }
            CloseReason::IdleInDrain => {
                self.ledger.idle += 1;
                !(idle && draining && matches!(self.cause, Cause::Timeout | Cause::Terminate))
            }
            CloseReason::KeepAliveTimeout => {
                !((idle || silent) && !draining && self.cause == Cause::Timeout)
            }
            CloseReason::DeadlineCut => self.cause != Cause::Timeout || !draining,
            CloseReason::ForcedExit => self.cause != Cause::Terminate,
            CloseReason::Aborted => !matches!(self.cause, Cause::Aborted),
            CloseReason::ClientClosed => !c.c2s.fin,
            _ => false,
        };
        if wrong {
            let seen = format!(
                "received {}, handed {}, {} responses, client FIN {}",
                c.recv_bytes, obs.handed_bytes, obs.responses, c.c2s.fin
            );
            self.fail(format!(
                "k{k}: core closed it for {reason:?} on {:?}, but the world saw: {seen}",
                self.cause
            ));
        }
    }

    /// A client lost response bytes it was owed on `k` (a reset destroyed
    /// them, or the connection ended mid-response). Allowed only when core
    /// closed it at a deadline or a forced exit; never for a close core made
    /// in the ordinary course.
    pub fn loss(&mut self, k: usize, what: &str) {
        let c = &mut self.conns[k];
        if c.cli_aborted || std::mem::replace(&mut c.loss_judged, true) {
            return;
        }
        match c.closing {
            Some(cl) if cl.loss_allowed => {
                self.stats.allowed_losses += 1;
                if cl.in_drain {
                    self.ledger.drain_losses += 1;
                }
            }
            Some(cl) => self.fail(format!(
                "k{k}: {what}: core closed the connection on {:?} (not a deadline or forced exit) — a response lost to a reset core caused",
                cl.cause
            )),
            None => self.fail(format!(
                "k{k}: {what} while core's socket is still open (half-closed mid-response?)"
            )),
        }
    }

    /// Notes, for every connection, how much core had received when the
    /// drain began (called right after the input that may have begun it).
    pub fn note_drain_start(&mut self, before: Phase) {
        if matches!(before, Phase::Draining { .. })
            || !matches!(self.server.phase(), Phase::Draining { .. })
        {
            return;
        }
        self.ledger.drain_started = true;
        for c in &mut self.conns {
            if matches!(c.srv, crate::kernel::Srv::Accepted(_)) {
                c.recv_at_drain = Some(c.recv_bytes);
            }
        }
    }

    /// Safety, after every step.
    pub fn check_step(&mut self) {
        if let Err(e) = self.server.check_invariants() {
            self.fail(format!("core invariant: {e}"));
        }
        let (active, recount) = (
            self.server.active_requests(),
            self.server.recount_active_requests(),
        );
        if active != recount {
            self.fail(format!("active count {active} != recount {recount}"));
        }
        if self.exited.is_none()
            && matches!(self.server.phase(), Phase::Draining { .. })
            && self.ledger.listener_closed
            && self.server.connections() == 0
        {
            self.fail(
                "draining, listener closed, no connection left, but no Exit in this step".into(),
            );
        }
        self.check_no_stall();
    }

    /// Between steps the driver has done everything core asked; so core must
    /// not hold bytes for a socket with room without having said `Transmit`,
    /// nor, with nothing to write, want to read a connection it told the
    /// driver to pause without having said `ResumeRead`. Either would stall
    /// until a deadline, where the cut would look legitimate.
    fn check_no_stall(&mut self) {
        let mut stalled = None;
        for (&id, &k) in &self.by_id {
            let [a, b] = self.server.transmit(id);
            let queued = a.len() + b.len();
            if queued > 0
                && !self.conns[k].wr_shut
                && self.room(k, crate::kernel::Dir::S2c, queued) > 0
            {
                stalled = Some(format!(
                    "core holds {queued} bytes for k{k}, whose socket has room, without a Transmit"
                ));
                break;
            }
            // With output queued, the write's completion moves things on;
            // with none, core waits on input the driver will never read.
            if queued == 0 && self.conns[k].paused && self.server.wants_read(id) {
                stalled = Some(format!(
                    "core wants to read k{k} again but never said ResumeRead"
                ));
                break;
            }
        }
        if let Some(why) = stalled {
            self.fail(why);
        }
    }

    /// The drain report, when Exit arrives.
    pub fn check_exit(&mut self, r: &DrainReport) {
        let c = self.knobs.config.clone();
        if r.exited_at != self.now {
            self.fail(format!(
                "Exit says {:?} but it is {:?}",
                r.exited_at, self.now
            ));
        }
        if r.exited_at > r.terminated_at + c.pre_stop + c.drain_timeout {
            self.fail(format!(
                "exit at {:?}, after terminate + pre_stop + drain_timeout",
                r.exited_at
            ));
        }
        if let Some(d) = r.draining_at {
            if r.exited_at > d + c.drain_timeout {
                self.fail(format!(
                    "exit at {:?}, past the drain deadline",
                    r.exited_at
                ));
            }
        }
        if r.backlog_accepted != self.ledger.backlog_accepted {
            self.fail(format!(
                "report backlog_accepted {} but the driver accepted {} from the backlog",
                r.backlog_accepted, self.ledger.backlog_accepted
            ));
        }
        if r.requests_completed != self.ledger.completed_after_terminate
            || r.requests_rejected != self.ledger.rejected_after_terminate
        {
            self.fail(format!(
                "report requests_completed {} and rejected {}, but {} answers and {} rejections were completely written after terminate",
                r.requests_completed,
                r.requests_rejected,
                self.ledger.completed_after_terminate,
                self.ledger.rejected_after_terminate
            ));
        }
        match r.forced {
            None => {
                if r.requests_cut != 0 {
                    self.fail(format!(
                        "drain completed but requests_cut {}",
                        r.requests_cut
                    ));
                }
            }
            Some(Forced::SecondTerminate) if self.terminates < 2 => {
                self.fail("forced by a second terminate that never came".into())
            }
            Some(Forced::Deadline)
                if r.draining_at.map(|d| d + c.drain_timeout) != Some(r.exited_at) =>
            {
                self.fail("forced by the deadline, but not at the deadline".into())
            }
            Some(_) => {
                // Every handed request still unanswered on a connection the
                // forced exit closed was cut; at most every active one was.
                let step = self.step;
                let lower = self
                    .ledger
                    .handed
                    .values()
                    .filter(|h| {
                        !h.sent_fully
                            && self.conns[h.k].closing.is_some_and(|cl| {
                                cl.step == step
                                    && matches!(cl.cause, Some(Cause::Timeout | Cause::Terminate))
                            })
                    })
                    .count() as u64;
                let upper = self.step_start.active as u64;
                if r.requests_cut < lower || r.requests_cut > upper {
                    self.fail(format!(
                        "report requests_cut {} outside [{lower}, {upper}] (unanswered handed requests cut, active before)",
                        r.requests_cut
                    ));
                }
            }
        }
    }

    /// Liveness, at the end: core exited, every handed request was answered
    /// (or its loss is allowed and counted), every client finished.
    pub fn check_end(&mut self) {
        if self.failure.is_some() {
            return;
        }
        let Some(r) = self.exited.clone() else {
            self.fail(format!(
                "no Exit by the liveness bound (phase {:?}, {} connections, {} active)",
                self.server.phase(),
                self.server.connections(),
                self.server.active_requests()
            ));
            return;
        };
        let handed: Vec<(RequestId, Handed)> = self
            .ledger
            .handed
            .iter()
            .map(|(id, h)| (*id, h.clone()))
            .collect();
        for (id, h) in handed {
            let req = &self.clients[h.client].reqs[h.no];
            let complete = req.fate == Fate::Complete && req.attempt == h.attempt;
            let c = &self.conns[h.k];
            let allowed = c.cli_aborted || c.closing.is_some_and(|cl| cl.loss_allowed);
            if !complete && !allowed {
                self.fail(format!(
                    "request {}.{}.{} ({id:?}) handed to the application on k{} but never answered completely (client fate {:?}, core close {:?})",
                    h.client, h.no, h.attempt, h.k, req.fate, c.closing
                ));
                return;
            }
        }
        if (r.silent_closed, r.idle_closed) != (self.ledger.silent, self.ledger.idle) {
            self.fail(format!(
                "report silent_closed {} and idle_closed {}, but core closed {} silent and {} idle connections",
                r.silent_closed, r.idle_closed, self.ledger.silent, self.ledger.idle
            ));
        }
        if self.ledger.drain_losses > r.reset_risk_closes + r.requests_cut {
            self.fail(format!(
                "{} connections lost responses in the drain, but the report counts {} reset-risk closes and {} cuts",
                self.ledger.drain_losses, r.reset_risk_closes, r.requests_cut
            ));
        }
        for (ci, c) in self.clients.iter().enumerate() {
            if !c.done {
                let fates: Vec<Fate> = c.reqs.iter().map(|r| r.fate).collect();
                let open = c.sock.map(|k| self.conns[k].srv);
                self.fail(format!(
                    "client {ci} ({:?}) never finished: fates {fates:?}, server side {open:?}",
                    c.kind
                ));
                return;
            }
        }
    }
}
