//! The sim's socket driver: the same calls the mio driver makes. Every input
//! is followed by draining `poll_event` until `None`; the events are carried
//! out in order, each tagged with the input that produced it.

use ebb_core::{CloseReason, Event, Phase, Server, Time};

use crate::kernel::{Closing, Dir, Srv};
use crate::trace;
use crate::world::{Cause, World};

impl World {
    /// Makes one core input, then drains its events into `pending`. Inputs
    /// stop once core has exited (the driver's loop ends there).
    pub fn input(&mut self, cause: Cause, f: impl FnOnce(&mut Server, Time)) {
        if self.exited.is_some() || self.server.phase() == Phase::Exited {
            return;
        }
        f(&mut self.server, self.now);
        self.inputs += 1;
        let mut exit_seen = false;
        while let Some(ev) = self.server.poll_event() {
            if exit_seen {
                self.fail(format!("event {ev:?} after Exit"));
            }
            exit_seen |= matches!(ev, Event::Exit(_));
            self.pending.push_back((ev, cause));
        }
    }

    /// Carries out every pending event, in order.
    pub fn run_pending(&mut self) {
        while let Some((ev, cause)) = self.pending.pop_front() {
            self.cause = cause;
            self.on_event(ev);
        }
    }

    fn conn_of(&self, id: ebb_core::ConnId) -> Option<usize> {
        self.by_id.get(&id).copied()
    }

    fn on_event(&mut self, ev: Event) {
        trace!(self, "core event {ev:?} (from {:?})", self.cause);
        if self.exited.is_some() {
            self.fail(format!("event {ev:?} carried out after Exit"));
            return;
        }
        match ev {
            Event::Request(id) => self.app_request(id),
            Event::Transmit(id) => {
                if let Some(k) = self.conn_of(id) {
                    self.driver_write(k);
                }
            }
            Event::ResumeRead(id) => {
                if let Some(k) = self.conn_of(id) {
                    self.conns[k].paused = false;
                    self.driver_read(k);
                }
            }
            Event::HalfClose(id, reason) => match self.conn_of(id) {
                Some(k) => {
                    if self.conns[k].wr_shut {
                        self.fail(format!("HalfClose of k{k} twice"));
                    }
                    self.classify_close(k, reason);
                    self.srv_half_close(k);
                }
                None => self.fail(format!("HalfClose of unknown {id:?}")),
            },
            Event::Close(id, reason) => match self.by_id.remove(&id) {
                Some(k) => {
                    self.classify_close(k, reason);
                    let closing = self.closing_now(k, reason);
                    self.srv_close(k, closing);
                }
                None => self.fail(format!("Close of unknown {id:?}")),
            },
            Event::Finished(_) => {}
            // Written only if the socket takes it at once; this driver
            // models the socket as having no room for it.
            Event::Farewell(..) => {}
            Event::DrainBacklog => {
                while let Some(k) = self.backlog.pop_front() {
                    self.ledger.backlog_accepted += 1;
                    self.accept(k);
                }
                trace!(self, "core input backlog_empty");
                self.input(Cause::BacklogEmpty, |s, now| s.handle_backlog_empty(now));
            }
            Event::CloseListener => {
                self.listener_open = false;
                self.ledger.listener_closed = true;
                while let Some(k) = self.backlog.pop_front() {
                    trace!(self, "net k{k} reset in backlog");
                    self.srv_reset_queued(k);
                }
            }
            Event::Exit(report) => {
                trace!(self, "exit report: {report}");
                self.check_exit(&report);
                self.exited = Some(report);
            }
        }
    }

    /// How a close made now by core is judged, from its reason.
    ///
    /// Losing a response to a close is allowed when the exit was forced, when
    /// linger gave up on too many bytes, and when a timer closed it — except
    /// a linger timer closing a socket with unread input: lingering reads
    /// everything, so unread input there means core stopped the reads.
    fn closing_now(&self, k: usize, reason: CloseReason) -> Closing {
        let c = &self.conns[k];
        let loss_allowed = match reason {
            CloseReason::DeadlineCut | CloseReason::ForcedExit | CloseReason::AfterExit => true,
            CloseReason::LingerOverflow => true,
            CloseReason::LingerTimeout => c.c2s.rx.is_empty(),
            CloseReason::WriteStall | CloseReason::FirstByteGrace => true,
            CloseReason::Rejected(
                ebb_core::Reject::HeadTimeout | ebb_core::Reject::BodyTimeout,
            ) => true,
            _ => false,
        };
        Closing {
            cause: Some(self.cause),
            loss_allowed,
            in_drain: self.terminates > 0,
            step: self.step,
        }
    }

    /// The listener is readable: accept everything queued.
    pub fn accept_ready(&mut self) {
        self.accept_scheduled = false;
        if !self.listener_open {
            return;
        }
        while let Some(k) = self.backlog.pop_front() {
            self.accept(k);
        }
    }

    fn accept(&mut self, k: usize) {
        let mut accepted = None;
        trace!(self, "core input accept k{k}");
        self.input(Cause::Accept, |s, now| {
            accepted = Some(s.handle_accept(now))
        });
        let Some(id) = accepted else {
            // Core has exited: the process is gone, and so is the socket.
            self.srv_reset_queued(k);
            return;
        };
        self.conns[k].srv = Srv::Accepted(id);
        if self.ledger.drain_started {
            self.conns[k].recv_at_drain = Some(0);
        }
        self.by_id.insert(id, k);
        self.driver_read(k);
    }

    /// Reads until the socket is empty, asking `wants_read` before each read.
    pub fn driver_read(&mut self, k: usize) {
        loop {
            let Srv::Accepted(id) = self.conns[k].srv else {
                return;
            };
            if self.conns[k].c2s.rst {
                self.driver_aborted(k);
                return;
            }
            if !self.server.wants_read(id) {
                self.conns[k].paused = true;
                return;
            }
            let c = &mut self.conns[k];
            if c.c2s.rx.is_empty() {
                if c.c2s.fin && !c.eof_reported {
                    c.eof_reported = true;
                    trace!(self, "core input peer_eof k{k}");
                    self.input(Cause::Eof, |s, now| s.handle_peer_eof(id, now));
                }
                return;
            }
            let n = c.c2s.rx.len().min(self.knobs.read_buf);
            let bytes = crate::kernel::take_front(&mut c.c2s.rx, n);
            c.recv_bytes += n;
            trace!(self, "core input recv k{k} {n}");
            self.input(Cause::Recv, |s, now| s.handle_recv(id, &bytes, now));
            self.client_writable(k);
        }
    }

    /// Writes what `transmit` gives while the socket has room.
    pub fn driver_write(&mut self, k: usize) {
        loop {
            let Srv::Accepted(id) = self.conns[k].srv else {
                return;
            };
            let [a, b] = self.server.transmit(id);
            let total = a.len() + b.len();
            if total == 0 {
                return;
            }
            if self.conns[k].wr_shut {
                self.fail(format!(
                    "k{k}: core has {total} bytes to write after HalfClose"
                ));
                return;
            }
            let n = total.min(self.room(k, Dir::S2c, total));
            if n == 0 {
                return;
            }
            let mut bytes = Vec::with_capacity(n);
            bytes.extend_from_slice(&a[..a.len().min(n)]);
            bytes.extend_from_slice(&b[..n - bytes.len()]);
            self.send_bytes(k, Dir::S2c, &bytes);
            self.observe_sent(k, &bytes);
            trace!(self, "core input sent k{k} {n} of {total}");
            self.input(Cause::Sent, |s, now| s.handle_sent(id, n, now));
        }
    }

    /// The socket can take more bytes (the client read some).
    pub fn server_writable(&mut self, k: usize) {
        if matches!(self.conns[k].srv, Srv::Accepted(_)) {
            self.driver_write(k);
        }
    }

    /// A read or write failed with a reset.
    pub fn driver_aborted(&mut self, k: usize) {
        if let Srv::Accepted(id) = self.conns[k].srv {
            trace!(self, "core input aborted k{k}");
            self.input(Cause::Aborted, |s, now| s.handle_aborted(id, now));
        }
    }
}
