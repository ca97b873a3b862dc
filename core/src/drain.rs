//! The graceful drain: phases, the one drain deadline, and the report.
//!
//! `terminate` → optional PreStop (still serving, `is_stopping()` true) →
//! Draining: accept the backlog, then close the listener; close quiet
//! keep-alive connections cleanly; answer every request already begun, each
//! with `Connection: close`; exit the moment nothing is left, or at the
//! deadline. A second `terminate` exits at once.

use std::fmt;
use std::time::Duration;

use crate::server::{Event, Server};
use crate::time::Time;
use crate::timers::TimerKind;

/// Where the server is in its life.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Accepting and serving.
    Serving,
    /// Told to stop, but still accepting and serving until `until`, so load
    /// balancers can notice (`is_stopping()` is true).
    PreStop {
        /// When the drain proper begins.
        until: Time,
    },
    /// Finishing what was begun; exit no later than `deadline`.
    Draining {
        /// The forced exit.
        deadline: Time,
    },
    /// Exit was emitted; the server does nothing more.
    Exited,
}

/// The state of the listening socket, as far as core has asked the driver.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) enum Listener {
    Open,
    /// The driver is accepting until the backlog is empty.
    DrainingBacklog,
    Closed,
}

/// What ended the drain early.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Forced {
    /// The drain deadline passed.
    Deadline,
    /// A second terminate arrived.
    SecondTerminate,
}

/// Everything that happened between `terminate` and exit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DrainReport {
    /// When `terminate` arrived.
    pub terminated_at: Time,
    /// When the drain proper began (after PreStop); `None` if a second
    /// terminate ended PreStop.
    pub draining_at: Option<Time>,
    /// When the driver was told to close the listener.
    pub listener_closed_at: Option<Time>,
    /// When exit was emitted.
    pub exited_at: Time,
    /// Why exit came before the work was done, if it did.
    pub forced: Option<Forced>,
    /// Connections accepted from the backlog once the drain began.
    pub backlog_accepted: u64,
    /// Connections accepted during the drain that sent nothing within
    /// `first_byte_grace`.
    pub silent_closed: u64,
    /// Idle keep-alive connections closed by the drain.
    pub idle_closed: u64,
    /// Responses completely written after `terminate`.
    pub requests_completed: u64,
    /// Requests begun but not completely answered when exit was forced.
    pub requests_cut: u64,
    /// Connections closed while their client might still have been sending,
    /// so the close could have reset unread data (linger gave up, or exit was
    /// forced).
    pub reset_risk_closes: u64,
}

impl DrainReport {
    fn new(terminated_at: Time) -> DrainReport {
        DrainReport {
            terminated_at,
            draining_at: None,
            listener_closed_at: None,
            exited_at: terminated_at,
            forced: None,
            backlog_accepted: 0,
            silent_closed: 0,
            idle_closed: 0,
            requests_completed: 0,
            requests_cut: 0,
            reset_risk_closes: 0,
        }
    }

    /// From `terminate` to exit.
    pub fn total(&self) -> Duration {
        self.exited_at - self.terminated_at
    }
}

impl fmt::Display for DrainReport {
    /// One line, for a log.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = |t: Option<Time>| match t {
            Some(t) => format!("{}ms", (t - self.terminated_at).as_millis()),
            None => "-".to_owned(),
        };
        write!(
            f,
            "drain {} in {}ms: draining at {}, listener closed at {}, backlog accepted {}, \
             silent closed {}, idle closed {}, completed {}, cut {}, reset-risk closes {}",
            match self.forced {
                None => "complete",
                Some(Forced::Deadline) => "forced by deadline",
                Some(Forced::SecondTerminate) => "forced by second terminate",
            },
            self.total().as_millis(),
            ms(self.draining_at),
            ms(self.listener_closed_at),
            self.backlog_accepted,
            self.silent_closed,
            self.idle_closed,
            self.requests_completed,
            self.requests_cut,
            self.reset_risk_closes,
        )
    }
}

impl Server {
    /// Input: the process was told to stop (SIGTERM, or the embedding program).
    ///
    /// The first call begins PreStop (if `pre_stop` is non-zero) or the drain;
    /// a second call closes everything and emits [`Event::Exit`] at once.
    pub fn handle_terminate(&mut self, now: Time) {
        let now = self.advance(now);
        match self.phase {
            Phase::Serving => {
                self.report = Some(DrainReport::new(now));
                if self.config.pre_stop.is_zero() {
                    self.start_draining(now);
                } else {
                    self.phase = Phase::PreStop {
                        until: now + self.config.pre_stop,
                    };
                }
            }
            Phase::PreStop { .. } | Phase::Draining { .. } => {
                self.force_exit(now, Forced::SecondTerminate)
            }
            Phase::Exited => {}
        }
        self.after_input();
    }

    /// Input: accepting would block — the listen backlog is empty. Only
    /// meaningful after [`Event::DrainBacklog`]; core answers with
    /// [`Event::CloseListener`].
    pub fn handle_backlog_empty(&mut self, now: Time) {
        let now = self.advance(now);
        if self.listener == Listener::DrainingBacklog {
            self.listener = Listener::Closed;
            if let Some(report) = &mut self.report {
                report.listener_closed_at = Some(now);
            }
            self.events.push_back(Event::CloseListener);
            self.maybe_exit(now);
        }
        self.after_input();
    }

    /// Whether the server has been told to stop (PreStop or later). A readiness
    /// route should answer 503 once this is true.
    pub fn is_stopping(&self) -> bool {
        self.phase != Phase::Serving
    }

    /// The current phase.
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// Whether the drain is under way: responses close their connections.
    pub(crate) fn is_draining(&self) -> bool {
        matches!(self.phase, Phase::Draining { .. })
    }

    pub(crate) fn start_draining(&mut self, now: Time) {
        self.phase = Phase::Draining {
            deadline: now + self.config.drain_timeout,
        };
        if let Some(report) = &mut self.report {
            report.draining_at = Some(now);
        }
        if self.listener == Listener::Open {
            self.listener = Listener::DrainingBacklog;
            self.events.push_back(Event::DrainBacklog);
        }
        for (_, conn) in self.conns.iter_mut() {
            conn.pre_drain_input = Some(conn.buffered_input());
        }
        // New connections leave the idle list first, so retiming what stays
        // on it keeps it ordered.
        self.give_new_connections_first_byte_grace(now);
        self.close_quiet_idle_connections(now);
        self.maybe_exit(now);
    }

    /// Idle keep-alive connections quiet for `idle_close_after` are closed now;
    /// the rest get the remainder of that window. The idle list is ordered by
    /// `last_active`, so retiming every entry by the same rule keeps it ordered.
    fn close_quiet_idle_connections(&mut self, now: Time) {
        let window = self.config.idle_close_after;
        let mut at = self.timers.first(TimerKind::Idle);
        while let Some(key) = at {
            at = self.timers.after(&self.conns, key);
            let conn = &self.conns[key];
            let quiet_until = conn.last_active + window;
            if quiet_until <= now {
                self.count(|r| r.idle_closed += 1);
                self.close_cleanly(key, now);
            } else {
                self.timers
                    .retime_in_place(&mut self.conns, key, quiet_until);
            }
        }
    }

    /// Connections accepted before the drain that have not sent a byte are
    /// treated like backlog connections: `first_byte_grace` from now.
    fn give_new_connections_first_byte_grace(&mut self, now: Time) {
        let mut at = self.timers.first(TimerKind::Idle);
        while let Some(key) = at {
            at = self.timers.after(&self.conns, key);
            if self.conns[key].next_seq == 0 {
                let deadline = self.first_byte_deadline(now);
                self.timers
                    .set(&mut self.conns, key, TimerKind::FirstByte, deadline);
            }
        }
    }

    pub(crate) fn first_byte_deadline(&self, now: Time) -> Time {
        let grace = now + self.config.first_byte_grace;
        match self.phase {
            Phase::Draining { deadline } => grace.min(deadline),
            _ => grace,
        }
    }

    /// The drain deadline passed, or a second terminate came: close what is
    /// left, count what was cut, and exit.
    pub(crate) fn force_exit(&mut self, now: Time, why: Forced) {
        let keys: Vec<usize> = self.conns.iter().map(|(key, _)| key).collect();
        for key in keys {
            let conn = &self.conns[key];
            let cut = conn.state.is_active();
            let risk = conn.sent_any && !conn.peer_eof;
            self.count(|r| {
                r.requests_cut += u64::from(cut);
                r.reset_risk_closes += u64::from(risk);
            });
            self.close_now(key);
        }
        if self.listener != Listener::Closed {
            self.listener = Listener::Closed;
            if let Some(report) = &mut self.report {
                report.listener_closed_at = Some(now);
            }
            self.events.push_back(Event::CloseListener);
        }
        if let Some(report) = &mut self.report {
            report.forced = Some(why);
        }
        self.exit(now);
    }

    /// Emits exit if the drain has nothing left to wait for. Called from every
    /// input that can end the last connection, so exit is never late.
    pub(crate) fn maybe_exit(&mut self, now: Time) {
        if self.is_draining() && self.listener == Listener::Closed && self.conns.is_empty() {
            self.exit(now);
        }
    }

    fn exit(&mut self, now: Time) {
        self.phase = Phase::Exited;
        let mut report = self.report.take().unwrap_or_else(|| DrainReport::new(now));
        report.exited_at = now;
        self.events.push_back(Event::Exit(report));
    }

    /// Applies `f` to the drain report, if a drain is under way.
    pub(crate) fn count(&mut self, f: impl FnOnce(&mut DrainReport)) {
        if let Some(report) = &mut self.report {
            f(report);
        }
    }

    /// Handles the phase deadlines (end of PreStop, drain deadline).
    pub(crate) fn handle_phase_timeout(&mut self, now: Time) {
        match self.phase {
            Phase::PreStop { until } if until <= now => self.start_draining(now),
            Phase::Draining { deadline } if deadline <= now => {
                self.force_exit(now, Forced::Deadline)
            }
            _ => {}
        }
    }

    /// The next phase deadline.
    pub(crate) fn phase_deadline(&self) -> Option<Time> {
        match self.phase {
            Phase::PreStop { until } => Some(until),
            Phase::Draining { deadline } => Some(deadline),
            Phase::Serving | Phase::Exited => None,
        }
    }

    /// Whether a request on this connection may still be handed to the
    /// application without its answer having to close the connection.
    pub(crate) fn request_keeps_connection(
        &self,
        pre_drain_input: Option<usize>,
        len: usize,
    ) -> bool {
        match pre_drain_input {
            None => !self.is_draining(),
            Some(pre_drain) => pre_drain > len,
        }
    }
}
