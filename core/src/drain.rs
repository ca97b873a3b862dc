//! The graceful drain's inputs and steps.
//!
//! `terminate` → optional PreStop (still serving, `is_stopping()` true) →
//! Draining: accept the backlog, then close the listener; close quiet
//! keep-alive connections cleanly; answer every request already begun, each
//! with `Connection: close`; exit the moment nothing is left (decided in
//! [`finish_input`](Server::finish_input)), or at the deadline. A second
//! `terminate` exits at once.

use crate::close::CloseReason;
use crate::conn::{State, UnreadAsk};
use crate::lifecycle::{Drain, Lifecycle, Phase};
use crate::report::{DrainReport, Forced};
use crate::request::ConnId;
use crate::response::CUT_WHILE_RECEIVING;
use crate::server::{Event, Server};
use crate::time::Time;
use crate::timers::TimerKind;
use crate::transitions::implied_timer;

/// What becomes of the connections queued in the listen backlog when the
/// drain begins.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum Backlog {
    /// Accept them all, then close the listener (a terminate).
    Drain,
    /// Close the listener at once: they belong to the successor (a hand-off).
    LeaveToSuccessor,
}

impl Server {
    /// Input: the process was told to stop (SIGTERM, or the embedding program).
    ///
    /// The first call begins PreStop (if `pre_stop` is non-zero) or the drain;
    /// a second call closes everything and emits [`Event::Exit`] at once.
    pub fn handle_terminate(&mut self, now: Time) {
        let now = self.advance(now);
        match self.lifecycle {
            Lifecycle::Serving if self.config.pre_stop.is_zero() => {
                self.start_draining(DrainReport::new(now), Backlog::Drain, now)
            }
            Lifecycle::Serving => {
                self.lifecycle = Lifecycle::PreStop {
                    until: now + self.config.pre_stop,
                    report: DrainReport::new(now),
                }
            }
            Lifecycle::PreStop { .. } => {
                // Straight to the forced exit: a drain that never began. Its
                // upgraded connections were open when it would have, and
                // are cut now: the report counts them as both.
                let mut report = self.take_pre_stop_report();
                report.upgraded_open += self.count_upgraded();
                self.lifecycle = Lifecycle::Draining(Drain {
                    deadline: now,
                    report,
                });
                self.force_exit(now, Forced::SecondTerminate);
            }
            Lifecycle::Draining(_) => self.force_exit(now, Forced::SecondTerminate),
            Lifecycle::Exited(_) => {}
        }
        self.finish_input();
    }

    /// Input: the listening socket now belongs to a successor process that
    /// serves it (a hot upgrade, or a service manager taking it back). The
    /// drain begins at once, without PreStop and without draining the
    /// backlog: what is queued there is the successor's. Core answers with
    /// [`Event::CloseListener`] — close this process's copy, and never shut
    /// the socket down, which would stop it for the successor too — then
    /// drains its own connections as after a terminate. During a drain the
    /// listener closes now, and the rest of the backlog is left to the
    /// successor. A later terminate forces the exit as usual.
    pub fn handle_handoff(&mut self, now: Time) {
        let now = self.advance(now);
        match self.lifecycle {
            Lifecycle::Serving => {
                let mut report = DrainReport::new(now);
                report.handed_off = true;
                self.start_draining(report, Backlog::LeaveToSuccessor, now);
            }
            Lifecycle::PreStop { .. } => {
                let mut report = self.take_pre_stop_report();
                report.handed_off = true;
                self.start_draining(report, Backlog::LeaveToSuccessor, now);
            }
            Lifecycle::Draining(ref mut drain) => {
                drain.report.handed_off = true;
                self.close_listener(now);
            }
            Lifecycle::Exited(_) => {}
        }
        self.finish_input();
    }

    /// Input: accepting would block — the listen backlog is empty. Only
    /// meaningful after [`Event::DrainBacklog`]; core answers with
    /// [`Event::CloseListener`].
    pub fn handle_backlog_empty(&mut self, now: Time) {
        let now = self.advance(now);
        self.close_listener(now);
        self.finish_input();
    }

    /// Input: the answer to [`Event::CountUnread`]: the connection's socket
    /// holds `unread` bytes core has not read. Core reads on until it has
    /// them, and an idle connection waits for them untimed. Asked as the
    /// drain began, every request in them counts as sent before it: the
    /// answers before theirs keep the connection.
    pub fn handle_unread(&mut self, conn: ConnId, unread: usize, now: Time) {
        let now = self.advance(now);
        if let Some(key) = self.key_of(conn) {
            let conn = &mut self.conns[key];
            let until = conn.received + unread as u64;
            conn.unread_until = conn.unread_until.max(until);
            if conn.unread_asked.take() == Some(UnreadAsk::Drain) {
                if let Some(before) = &mut conn.received_before_drain {
                    *before = (*before).max(until);
                }
            }
            self.settle_counted(key, now);
        }
        self.finish_input();
    }

    /// Settles connection `key` once the driver has counted what its socket
    /// holds. An idle one whose timer passed while core waited for the
    /// count, with nothing unread, closes at once, as that timer does:
    /// settled first, it would walk back through its list to a place at
    /// the front, only to leave it at the next timeout.
    fn settle_counted(&mut self, key: usize, now: Time) {
        let conn = &self.conns[key];
        let timer = implied_timer(conn, self.drain_times(), &self.config, &self.timeouts);
        match timer {
            Some((kind @ (TimerKind::Idle | TimerKind::FirstByte), due)) if due <= now => {
                self.close_for_timer(key, kind, now)
            }
            _ => self.settle(key, now),
        }
    }

    /// Whether the server has been told to stop (PreStop or later). A readiness
    /// route should answer 503 once this is true.
    pub fn is_stopping(&self) -> bool {
        !matches!(self.lifecycle, Lifecycle::Serving)
    }

    /// The current phase.
    pub fn phase(&self) -> Phase {
        self.lifecycle.phase()
    }

    /// What happened in the drain, once [`Event::Exit`](crate::Event::Exit)
    /// has been emitted; `None` before.
    pub fn exit_report(&self) -> Option<&DrainReport> {
        match &self.lifecycle {
            Lifecycle::Exited(report) => Some(report),
            _ => None,
        }
    }

    /// Begins the drain proper, with what `report` has recorded so far.
    fn start_draining(&mut self, mut report: DrainReport, backlog: Backlog, now: Time) {
        report.draining_at = Some(now);
        self.lifecycle = Lifecycle::Draining(Drain {
            deadline: now + self.config.drain_timeout,
            report,
        });
        match backlog {
            Backlog::Drain => self.events.push_back(Event::DrainBacklog),
            Backlog::LeaveToSuccessor => self.close_listener(now),
        }
        let upgraded = self.count_upgraded();
        for (key, conn) in self.conns.iter_mut() {
            conn.received_before_drain = Some(conn.received);
            let id = ConnId {
                index: key as u32,
                generation: conn.generation,
            };
            match conn.state {
                State::Upgraded => self.events.push_back(Event::StopUpgraded(id)),
                // First in the queue: a response queued before the count
                // would close on what core had read alone.
                // Idle ones are asked in the order of their timers, below.
                _ if conn.link.kind().is_some_and(TimerKind::is_idle) => {}
                _ if conn.may_hold_unread() => {
                    conn.unread_asked = Some(UnreadAsk::Drain);
                    self.events.push_front(Event::CountUnread(id));
                }
                _ => {}
            }
        }
        if let Some(drain) = self.lifecycle.drain_mut() {
            drain.report.upgraded_open += upgraded;
        }
        self.retime_idle_connections(now);
    }

    /// Idle connections take their drain timers: a never-used one gets
    /// `first_byte_grace` from now, a keep-alive one the rest of
    /// `idle_close_after` since its last response — and closes now if it has
    /// been quiet that long already. Each whose socket may hold a request
    /// sent before the drain is asked first what waits unread, and waits
    /// untimed for the answer ([`Self::handle_unread`]): a close before it
    /// would lose such a request. The idle list is ordered by last
    /// activity, so re-arming it front to back keeps every list ordered (the
    /// never-used ones all get the same deadline); the counts are asked in
    /// that order too, so that the answers re-arm the lists at their tails.
    fn retime_idle_connections(&mut self, now: Time) {
        let mut idle = Vec::new();
        for kind in [TimerKind::Idle, TimerKind::FirstByte] {
            let mut at = self.timers.first(kind);
            while let Some(key) = at {
                idle.push(key);
                at = self.timers.after(&self.conns, key);
            }
        }
        // Off the list first, so each is appended to an emptied list in order.
        for &key in &idle {
            self.timers.clear(&mut self.conns, key);
        }
        // Pushed to the front from the last, so the first is asked first.
        for &key in idle.iter().rev() {
            let conn = &mut self.conns[key];
            if conn.may_hold_unread() {
                conn.unread_asked = Some(UnreadAsk::Drain);
                let id = self.id_of(key);
                self.events.push_front(Event::CountUnread(id));
            }
        }
        for key in idle {
            self.settle(key, now);
        }
        while let Some(key) = self.timers.expired(&self.conns, TimerKind::Idle, now) {
            self.close_cleanly(key, CloseReason::IdleInDrain, now);
        }
    }

    /// The connections that left HTTP and are still open.
    fn count_upgraded(&self) -> u64 {
        self.conns
            .iter()
            .filter(|(_, conn)| matches!(conn.state, State::Upgraded))
            .count() as u64
    }

    /// Ends PreStop, keeping what its report recorded.
    fn take_pre_stop_report(&mut self) -> DrainReport {
        match std::mem::replace(&mut self.lifecycle, Lifecycle::Serving) {
            Lifecycle::PreStop { report, .. } => report,
            _ => unreachable!("called only in PreStop"),
        }
    }

    /// Tells the driver to close the listener, once.
    fn close_listener(&mut self, now: Time) {
        if let Some(drain) = self.lifecycle.drain_mut() {
            if !drain.listener_closed() {
                drain.report.listener_closed_at = Some(now);
                self.events.push_back(Event::CloseListener);
            }
        }
    }

    /// The drain deadline passed, or a second terminate came: close what is
    /// left and the listener; exit follows at the end of the input.
    fn force_exit(&mut self, now: Time, why: Forced) {
        let reason = match why {
            Forced::Deadline => CloseReason::DeadlineCut,
            Forced::SecondTerminate => CloseReason::ForcedExit,
        };
        let keys: Vec<usize> = self.conns.iter().map(|(key, _)| key).collect();
        for key in keys {
            let conn = &self.conns[key];
            let receiving = matches!(conn.state, State::Head { .. } | State::Body { .. });
            let farewell = receiving && conn.pending_out() == 0;
            if farewell {
                let id = self.id_of(key);
                self.events
                    .push_back(Event::Farewell(id, CUT_WHILE_RECEIVING.bytes));
            }
            self.close_now_with(key, reason, farewell.then_some(&CUT_WHILE_RECEIVING));
        }
        self.close_listener(now);
        if let Some(drain) = self.lifecycle.drain_mut() {
            drain.report.forced = Some(why);
        }
    }

    /// Handles the phase deadlines (end of PreStop, drain deadline).
    pub(crate) fn handle_phase_timeout(&mut self, now: Time) {
        match self.lifecycle {
            Lifecycle::PreStop { until, .. } if until <= now => {
                let report = self.take_pre_stop_report();
                self.start_draining(report, Backlog::Drain, now);
            }
            // Work that ended at the deadline's very instant was not cut.
            Lifecycle::Draining(Drain { deadline, .. })
                if deadline <= now && !self.drain_done() =>
            {
                self.force_exit(now, Forced::Deadline)
            }
            _ => {}
        }
    }
}
