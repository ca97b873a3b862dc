//! The sim's socket driver: the same calls the mio driver makes, and nothing
//! else. Every core input is followed by draining `poll_event` until `None`;
//! the events are queued and carried out in order, each tagged with the
//! input that produced it. Reads stop when core says `wants_read` is false
//! and start again on `ResumeRead`; writes go as far as the socket has room.

use std::collections::VecDeque;

use ebb_core::{
    Bytes, ConnId, DrainReport, Event, Phase, RequestId, RespondError, Server, StreamError, Time,
};

use crate::app::{Answer, AnswerKind, Response};
use crate::check::Checker;
use crate::env::Env;
use crate::failure::Failure;
use crate::kernel::{Dir, Kernel, Recv, ServerEnd};
use crate::trace;

/// Which core input produced an event (so closes can be attributed).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cause {
    Accept,
    Recv,
    Eof,
    Aborted,
    Sent,
    Response,
    Terminate,
    /// `handle_handoff`.
    Handoff,
    BacklogEmpty,
    Timeout,
    /// `handle_unread`.
    Unread,
}

/// An open socket, as every step's checks walk them: its connection's id
/// and number, and whether its reads are paused — kept here, not in
/// [`Sock`], so the walk needs no second lookup per socket.
#[derive(Clone, Copy, Debug)]
pub struct OpenSock {
    pub id: ConnId,
    pub k: usize,
    /// Core said `wants_read` false; reads wait for `ResumeRead`.
    pub paused: bool,
}

/// The driver's record of one accepted socket.
#[derive(Clone, Copy, Debug)]
struct Sock {
    id: ConnId,
    /// `handle_peer_eof` was called.
    eof_reported: bool,
    /// The connection left HTTP: its socket is the application's.
    upgraded: bool,
}

/// The driver: which socket is which connection, what is paused, and the
/// events core has asked it to carry out. The successor's driver is another
/// of these, driving another core.
#[derive(Default)]
pub struct DriverModel {
    successor: bool,
    /// Open sockets, sorted by id: a short list, searched by halves,
    /// walked by every step's checks.
    by_id: Vec<OpenSock>,
    /// By kernel connection number; `None` until accepted and after close.
    socks: Vec<Option<Sock>>,
    pending: VecDeque<(Event, Cause)>,
    inputs: u64,
    /// Core's `poll_timeout` and the count of inputs it was asked after.
    timeout: Option<(u64, Option<Time>)>,
    exit: Option<DrainReport>,
    read_buf: usize,
}

impl DriverModel {
    /// A driver reading at most `read_buf` bytes at a time; the
    /// successor's, if `successor`.
    pub fn new(read_buf: usize, successor: bool) -> DriverModel {
        DriverModel {
            read_buf,
            successor,
            ..DriverModel::default()
        }
    }

    /// Whether this drives the successor.
    pub fn is_successor(&self) -> bool {
        self.successor
    }

    /// Core said `Upgraded`: the socket of `k` is the application's now.
    pub fn hand_to_app(&mut self, k: usize) {
        if let Some(s) = self.sock_mut(k) {
            s.upgraded = true;
        }
    }

    /// Whether core told the driver to stop reading `k`.
    pub fn is_paused(&self, k: usize) -> bool {
        self.sock(k)
            .and_then(|s| self.open(s.id))
            .is_some_and(|o| o.paused)
    }

    /// Whether the socket of `k` is open and the application's.
    pub fn is_upgraded(&self, k: usize) -> bool {
        self.sock(k).is_some_and(|s| s.upgraded)
    }

    /// Whether connection `k` is one of this driver's open sockets.
    pub fn has(&self, k: usize) -> bool {
        self.sock(k).is_some()
    }

    /// Core inputs made so far.
    pub fn inputs(&self) -> u64 {
        self.inputs
    }

    /// Core's next deadline. Asked once after each input, as a driver's
    /// loop asks it: core's timers move only in its inputs (time is an
    /// argument of each), so between inputs the answer stands, and the
    /// world, which looks before every step, need not ask again.
    pub fn next_timeout(&mut self, core: &Server) -> Option<Time> {
        match self.timeout {
            Some((inputs, at)) if inputs == self.inputs => at,
            _ => {
                let at = core.poll_timeout();
                self.timeout = Some((self.inputs, at));
                at
            }
        }
    }

    /// The report of core's `Exit`, once carried out (the loop ends there).
    pub fn exit(&self) -> Option<&DrainReport> {
        self.exit.as_ref()
    }

    /// Core's `Exit` was carried out.
    pub fn exited(&mut self, report: DrainReport) {
        self.exit = Some(report);
    }

    /// The connection of `id`, while its socket is open.
    pub fn conn_of(&self, id: ConnId) -> Option<usize> {
        self.open(id).map(|o| o.k)
    }

    /// Where `id` is in `by_id`, while its socket is open.
    fn open_at(&self, id: ConnId) -> Option<usize> {
        self.by_id.binary_search_by_key(&id, |o| o.id).ok()
    }

    /// The open socket of `id`, if it is open.
    fn open(&self, id: ConnId) -> Option<&OpenSock> {
        self.open_at(id).map(|at| &self.by_id[at])
    }

    fn open_mut(&mut self, id: ConnId) -> Option<&mut OpenSock> {
        self.open_at(id).map(|at| &mut self.by_id[at])
    }

    /// `id`'s socket closes: its connection, if it was open.
    fn forget(&mut self, id: ConnId) -> Option<usize> {
        let at = self.open_at(id)?;
        Some(self.by_id.remove(at).k)
    }

    /// Every open socket, in the order of their ids.
    pub fn socks(&self) -> impl Iterator<Item = OpenSock> + '_ {
        self.by_id.iter().copied()
    }

    fn sock(&self, k: usize) -> Option<&Sock> {
        self.socks.get(k).and_then(Option::as_ref)
    }

    fn sock_mut(&mut self, k: usize) -> Option<&mut Sock> {
        self.socks.get_mut(k).and_then(Option::as_mut)
    }

    /// The next event to carry out.
    pub fn pop_event(&mut self) -> Option<(Event, Cause)> {
        self.pending.pop_front()
    }

    /// Makes one core input, then drains its events into the queue. Inputs
    /// stop once core has exited (the driver's loop ends there). Tells the
    /// checker when the input began the drain. Returns whether the input was
    /// made.
    pub fn input(
        &mut self,
        core: &mut Server,
        checker: &mut Checker,
        env: &mut Env,
        cause: Cause,
        f: impl FnOnce(&mut Server, Time),
    ) -> bool {
        let before = core.phase();
        if self.exit.is_some() || before == Phase::Exited {
            return false;
        }
        f(core, env.now);
        self.inputs += 1;
        let mut exit_seen = false;
        while let Some(ev) = core.poll_event() {
            if exit_seen {
                env.fail(Failure::Safety(format!("S6: event {ev:?} after Exit")));
            }
            exit_seen |= matches!(ev, Event::Exit);
            self.pending.push_back((ev, cause));
        }
        let draining = |p: Phase| matches!(p, Phase::Draining { .. });
        let after = core.phase();
        if !draining(before) && draining(after) {
            checker.drain_began(env);
        }
        if matches!(before, Phase::PreStop { .. }) && after == Phase::Exited {
            checker.pre_stop_forced();
        }
        true
    }

    /// Carries out one of core's socket events (not `Request` or `Exit`,
    /// which belong to the application and the world).
    pub fn carry_out(
        &mut self,
        ev: Event,
        cause: Cause,
        core: &mut Server,
        kernel: &mut Kernel,
        checker: &mut Checker,
        env: &mut Env,
    ) {
        match ev {
            Event::Request(_)
            | Event::Exit
            | Event::BodyReady(_)
            | Event::StreamWritable(_)
            | Event::Upgraded(_)
            | Event::StopUpgraded(_) => unreachable!("the world carries these out"),
            Event::Transmit(id) => {
                if let Some(k) = self.conn_of(id) {
                    self.write(k, core, kernel, checker, env);
                }
            }
            Event::ResumeRead(id) => {
                if let Some(o) = self.open_mut(id) {
                    o.paused = false;
                    let k = o.k;
                    self.read(k, core, kernel, checker, env);
                }
            }
            Event::HalfClose(id, reason) => match self.conn_of(id) {
                Some(k) => {
                    if kernel.server_end(k) == ServerEnd::WriteShut {
                        env.fail(Failure::Safety(format!(
                            "driver contract: HalfClose of k{k} twice"
                        )));
                    }
                    checker.on_half_close(k, reason, cause, core.phase(), kernel, env);
                    kernel.server_half_close(k, env);
                }
                None => env.fail(Failure::Safety(format!(
                    "driver contract: HalfClose of unknown {id:?}"
                ))),
            },
            Event::Close(id, reason) => match self.forget(id) {
                Some(k) => {
                    let eof = self.sock(k).is_some_and(|s| s.eof_reported);
                    self.socks[k] = None;
                    checker.on_close(k, reason, cause, core.phase(), eof, kernel, env);
                    // As the mio driver does: a forced close first reads
                    // what is unread, so it sends FIN, not a reset that
                    // could destroy a farewell.
                    if reason.is_forced() {
                        kernel.server_discard(k);
                    }
                    kernel.server_close(k, env);
                }
                None => env.fail(Failure::Safety(format!(
                    "driver contract: Close of unknown {id:?}"
                ))),
            },
            Event::Finished(f) => match self.conn_of(f.conn) {
                Some(k) => checker.on_finished(k, &f, self.successor, env),
                None => env.fail(Failure::Safety(format!(
                    "driver contract: Finished on unknown {:?}",
                    f.conn
                ))),
            },
            // As the mio driver does with FIONREAD.
            Event::CountUnread(id) => match self.conn_of(id) {
                Some(k) => {
                    let unread = kernel.server_unread(k);
                    checker.on_unread(k, unread);
                    trace!(env, "core input unread k{k} {unread}");
                    self.input(core, checker, env, Cause::Unread, |s, now| {
                        s.handle_unread(id, unread, now)
                    });
                }
                None => env.fail(Failure::Safety(format!(
                    "driver contract: CountUnread of unknown {id:?}"
                ))),
            },
            // Written once, if the socket takes all of it now; the close
            // follows.
            Event::Farewell(id, bytes) => match self.conn_of(id) {
                Some(k) => {
                    let room = kernel.server_end(k) == ServerEnd::Open
                        && kernel.room(k, Dir::S2c, bytes.len()) >= bytes.len();
                    trace!(
                        env,
                        "driver farewell k{k} ({} bytes, written {room})",
                        bytes.len()
                    );
                    checker.on_farewell(k, bytes, room, env);
                    if room {
                        kernel.send(k, Dir::S2c, &[bytes], env);
                    }
                }
                None => env.fail(Failure::Safety(format!(
                    "driver contract: Farewell on unknown {id:?}"
                ))),
            },
            Event::DrainBacklog => {
                if !matches!(core.phase(), Phase::Draining { .. } | Phase::Exited) {
                    env.fail(Failure::Safety(format!(
                        "S9: DrainBacklog in {:?}",
                        core.phase()
                    )));
                }
                while let Some(k) = kernel.accept() {
                    checker.on_backlog_accept();
                    self.accept(k, core, kernel, checker, env);
                }
                trace!(env, "core input backlog_empty");
                self.input(core, checker, env, Cause::BacklogEmpty, |s, now| {
                    s.handle_backlog_empty(now)
                });
            }
            Event::CloseListener => {
                let reset = if cause == Cause::Handoff {
                    // The socket stays open: the successor accepts from it.
                    kernel.hand_off_listener(env);
                    Vec::new()
                } else {
                    kernel.close_listener(env)
                };
                checker.on_listener_closed(cause, &reset, env);
            }
        }
    }

    /// The listener is readable: accept everything queued.
    pub fn accept_all(
        &mut self,
        core: &mut Server,
        kernel: &mut Kernel,
        checker: &mut Checker,
        env: &mut Env,
    ) {
        while let Some(k) = kernel.accept() {
            self.accept(k, core, kernel, checker, env);
        }
    }

    fn accept(
        &mut self,
        k: usize,
        core: &mut Server,
        kernel: &mut Kernel,
        checker: &mut Checker,
        env: &mut Env,
    ) {
        let mut accepted = None;
        trace!(env, "core input accept k{k}");
        self.input(core, checker, env, Cause::Accept, |s, now| {
            accepted = Some(s.handle_accept(now))
        });
        let Some(id) = accepted else {
            // Core has exited: the process is gone, and so is the socket.
            kernel.reset_accepted(k, env);
            checker.on_reset_unaccepted(k, true, env);
            return;
        };
        if self.successor {
            kernel.successor_accepted();
        }
        checker.on_accepted(k, self.successor, env);
        if self.socks.len() <= k {
            self.socks.resize(k + 1, None);
        }
        self.socks[k] = Some(Sock {
            id,
            eof_reported: false,
            upgraded: false,
        });
        let at = self.by_id.partition_point(|o| o.id < id);
        let paused = false;
        self.by_id.insert(at, OpenSock { id, k, paused });
        self.read(k, core, kernel, checker, env);
    }

    /// Reads until the socket is empty, asking `wants_read` before each read.
    /// The socket's record is read once: while reading, the driver only
    /// queues core's events, so nothing closes, pauses or upgrades the
    /// socket under it, and the FIN it notes ends the reading.
    pub fn read(
        &mut self,
        k: usize,
        core: &mut Server,
        kernel: &mut Kernel,
        checker: &mut Checker,
        env: &mut Env,
    ) {
        let Some(&Sock {
            id,
            eof_reported,
            upgraded,
        }) = self.sock(k)
        else {
            return;
        };
        if upgraded || self.open(id).is_some_and(|o| o.paused) {
            return;
        }
        loop {
            if !core.wants_read(id) {
                if let Some(o) = self.open_mut(id) {
                    o.paused = true;
                }
                return;
            }
            match kernel.server_recv(k, self.read_buf) {
                Recv::WouldBlock => return,
                Recv::Reset => return self.aborted(k, core, checker, env),
                Recv::Eof => {
                    if !eof_reported {
                        if let Some(s) = self.sock_mut(k) {
                            s.eof_reported = true;
                        }
                        trace!(env, "core input peer_eof k{k}");
                        self.input(core, checker, env, Cause::Eof, |s, now| {
                            s.handle_peer_eof(id, now)
                        });
                    }
                    return;
                }
                Recv::Data(bytes) => {
                    checker.on_received(k, bytes.len(), env);
                    trace!(env, "core input recv k{k} {}", bytes.len());
                    self.input(core, checker, env, Cause::Recv, |s, now| {
                        s.handle_recv(id, bytes, now)
                    });
                }
            }
        }
    }

    /// Writes what `transmit` gives while the socket has room.
    pub fn write(
        &mut self,
        k: usize,
        core: &mut Server,
        kernel: &mut Kernel,
        checker: &mut Checker,
        env: &mut Env,
    ) {
        loop {
            let Some(&Sock { id, .. }) = self.sock(k) else {
                return;
            };
            let [a, b] = core.transmit(id);
            let total = a.len() + b.len();
            if total == 0 {
                return;
            }
            checker.on_offered(k);
            if kernel.server_end(k) == ServerEnd::WriteShut {
                env.fail(Failure::Safety(format!(
                    "S4: k{k}: core has {total} bytes to write after HalfClose"
                )));
                return;
            }
            let n = total.min(kernel.room(k, Dir::S2c, total));
            if n == 0 {
                kernel.wait_for_room(k, Dir::S2c);
                return;
            }
            let a = &a[..a.len().min(n)];
            let parts = [a, &b[..n - a.len()]];
            kernel.send(k, Dir::S2c, &parts, env);
            checker.on_written(k, &parts, env);
            trace!(env, "core input sent k{k} {n} of {total}");
            self.input(core, checker, env, Cause::Sent, |s, now| {
                s.handle_sent(id, n, now)
            });
        }
    }

    /// A read or write failed with a reset.
    pub fn aborted(&mut self, k: usize, core: &mut Server, checker: &mut Checker, env: &mut Env) {
        if let Some(&Sock { id, .. }) = self.sock(k) {
            trace!(env, "core input aborted k{k}");
            self.input(core, checker, env, Cause::Aborted, |s, now| {
                s.handle_aborted(id, now)
            });
        }
    }

    /// Hands the application's answer to core. `None` when core has exited
    /// (no input was made); else what `handle_response` returned.
    pub fn respond(
        &mut self,
        id: RequestId,
        answer: &Answer,
        core: &mut Server,
        checker: &mut Checker,
        env: &mut Env,
    ) -> Option<Result<(), RespondError>> {
        let mut result = None;
        let token = &answer.token;
        match &answer.kind {
            AnswerKind::Stream {
                status,
                headers,
                length,
                total,
            } => {
                trace!(
                    env,
                    "core input stream_start {token} ({status}, {length:?})"
                );
                let total = total.to_string();
                self.input(core, checker, env, Cause::Response, |s, now| {
                    let headers = answer.headers(headers, &total);
                    result = Some(s.handle_stream_start(id, *status, headers, *length, now));
                });
            }
            AnswerKind::Upgrade { headers } => {
                trace!(env, "core input upgrade {token}");
                self.input(core, checker, env, Cause::Response, |s, now| {
                    result = Some(s.handle_upgrade(id, answer.headers(headers, ""), now));
                });
            }
            AnswerKind::Whole(Some(Response {
                status,
                headers,
                body,
            })) => {
                trace!(
                    env,
                    "core input respond {token} ({status}, {} bytes)",
                    body.len()
                );
                let body = Bytes::clone(body);
                self.input(core, checker, env, Cause::Response, |s, now| {
                    let headers = answer.headers(headers, "");
                    result = Some(s.handle_response(id, *status, headers, body, now));
                });
            }
            AnswerKind::Whole(None) => {
                trace!(env, "core input app_failure {token}");
                self.input(core, checker, env, Cause::Response, |s, now| {
                    s.handle_app_failure(id, now);
                    result = Some(Ok(()));
                });
            }
        }
        result
    }

    /// A piece of the streamed body of `id`. `None` when core has exited.
    pub fn stream_data(
        &mut self,
        id: RequestId,
        data: &[u8],
        core: &mut Server,
        checker: &mut Checker,
        env: &mut Env,
    ) -> Option<Result<usize, StreamError>> {
        let mut result = None;
        trace!(env, "core input stream_data {id:?} {}", data.len());
        self.input(core, checker, env, Cause::Response, |s, now| {
            result = Some(s.handle_stream_data(id, data, now));
        });
        result
    }

    /// The end of the streamed body of `id`. `None` when core has exited.
    pub fn stream_end(
        &mut self,
        id: RequestId,
        core: &mut Server,
        checker: &mut Checker,
        env: &mut Env,
    ) -> Option<Result<(), StreamError>> {
        let mut result = None;
        trace!(env, "core input stream_end {id:?}");
        self.input(core, checker, env, Cause::Response, |s, now| {
            result = Some(s.handle_stream_end(id, [("x-end", "1")], now));
        });
        result
    }

    /// The application begins to read the streamed body of `id`.
    pub fn body_wanted(
        &mut self,
        id: RequestId,
        core: &mut Server,
        checker: &mut Checker,
        env: &mut Env,
    ) {
        trace!(env, "core input body_wanted {id:?}");
        self.input(core, checker, env, Cause::Response, |s, now| {
            s.handle_body_wanted(id, now)
        });
    }

    /// The application used `n` bytes of the streamed body of `id`.
    pub fn body_consumed(
        &mut self,
        id: RequestId,
        n: usize,
        core: &mut Server,
        checker: &mut Checker,
        env: &mut Env,
    ) {
        trace!(env, "core input body_consumed {id:?} {n}");
        self.input(core, checker, env, Cause::Response, |s, now| {
            s.handle_body_consumed(id, n, now)
        });
    }

    /// The application closed upgraded connection `k`.
    pub fn upgraded_closed(
        &mut self,
        k: usize,
        core: &mut Server,
        checker: &mut Checker,
        env: &mut Env,
    ) {
        if let Some(&Sock { id, .. }) = self.sock(k) {
            trace!(env, "core input upgraded_closed k{k}");
            self.input(core, checker, env, Cause::Response, |s, now| {
                s.handle_upgraded_closed(id, now)
            });
        }
    }
}
