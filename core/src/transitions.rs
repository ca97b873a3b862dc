//! Every connection state change, the timer each state implies, the active
//! count, every close, and the exit decision, in one file, so the rules are
//! read and tested together. Nothing else in core assigns a state, sets a
//! timer or emits [`Event::Exit`].
//!
//! The timer a state implies ([`timer_for`]):
//!
//! | state | timer | deadline |
//! |---|---|---|
//! | `Idle`, never used, draining | `FirstByte` | now + `first_byte_grace`, never past the drain deadline |
//! | `Idle`, draining | `Idle` | last activity + `idle_close_after` |
//! | `Idle`, never used | `FirstByte` | accept + `new_connection_timeout` |
//! | `Idle` | `Idle` | last activity + `keep_alive_timeout` |
//! | `Head` | `Header` | first byte + `header_read_timeout` (absolute) |
//! | `Body` | `Body` | last progress + `body_read_timeout` |
//! | `Dispatched` | none | the application's time is its own |
//! | `Writing` | `Write` | last progress + `write_stall_timeout` |
//! | `Lingering` | `Linger` | half-close + `linger_timeout` (absolute) |
//!
//! *Active* states (`Head`, `Body`, `Dispatched`, `Writing`) are counted in
//! [`Server::active`]; entering and leaving them here is the only place the
//! count moves.

use crate::close::CloseReason;
use crate::config::Config;
use crate::conn::State;
use crate::finished::{Finished, Outcome, RequestLog};
use crate::lifecycle::Lifecycle;
use crate::request::RequestId;
use crate::server::{Event, Server};
use crate::time::Time;
use crate::timers::TimerKind;

/// What a connection needs to know about its past to be timed.
#[derive(Copy, Clone, Debug)]
pub(crate) struct History {
    /// No request has begun on it yet.
    pub fresh: bool,
    /// When it last finished a response (or was accepted).
    pub last_active: Time,
}

/// The timer `state` implies, entered at `now`: which list and which
/// deadline, or `None` for a state that waits on the application. `drain` is
/// the drain deadline while draining.
pub(crate) fn timer_for(
    state: &State,
    history: History,
    drain: Option<Time>,
    config: &Config,
    now: Time,
) -> Option<(TimerKind, Time)> {
    Some(match (state, drain) {
        (State::Idle, Some(deadline)) if history.fresh => (
            TimerKind::FirstByte,
            (now + config.first_byte_grace).min(deadline),
        ),
        (State::Idle, Some(_)) => (
            TimerKind::Idle,
            history.last_active + config.idle_close_after,
        ),
        (State::Idle, None) if history.fresh => {
            (TimerKind::FirstByte, now + config.new_connection_timeout)
        }
        (State::Idle, None) => (
            TimerKind::Idle,
            history.last_active + config.keep_alive_timeout,
        ),
        (State::Head { .. }, _) => (TimerKind::Header, now + config.header_read_timeout),
        (State::Body { .. }, _) => (TimerKind::Body, now + config.body_read_timeout),
        (State::Dispatched { .. }, _) => return None,
        (State::Writing { .. }, _) => (TimerKind::Write, now + config.write_stall_timeout),
        (State::Lingering { .. }, _) => (TimerKind::Linger, now + config.linger_timeout),
    })
}

impl Server {
    /// Moves connection `key` into `state` at `now`: sets the state, keeps
    /// the active count, and arms the timer the state implies.
    pub(crate) fn enter(&mut self, key: usize, state: State, now: Time) {
        let conn = &mut self.conns[key];
        let was = conn.state.is_active();
        let is = state.is_active();
        if let Some(bufs) = conn.bufs.as_mut() {
            match state {
                State::Head { .. } => {
                    bufs.log = RequestLog {
                        began_at: now,
                        began_offset: conn.received - bufs.input.len() as u64,
                        ..RequestLog::default()
                    }
                }
                State::Dispatched { .. } => bufs.log.dispatched = true,
                _ => {}
            }
        }
        conn.state = state;
        match (was, is) {
            (false, true) => self.active += 1,
            (true, false) => self.active -= 1,
            _ => {}
        }
        self.arm(key, now);
    }

    /// Restarts the timer of a state whose deadline runs from the last
    /// progress (`Body`, `Writing`); other deadlines are absolute.
    pub(crate) fn progress(&mut self, key: usize, now: Time) {
        if matches!(
            self.conns[key].state,
            State::Body { .. } | State::Writing { .. }
        ) {
            self.arm(key, now);
        }
    }

    /// Puts connection `key` on the timer its state implies, from `now`.
    /// The only caller of `timers.set`.
    pub(crate) fn arm(&mut self, key: usize, now: Time) {
        let conn = &self.conns[key];
        let history = History {
            fresh: conn.next_seq == 0,
            last_active: conn.last_active,
        };
        let drain = self.lifecycle.drain().map(|d| d.deadline);
        match timer_for(&conn.state, history, drain, &self.config, now) {
            Some((kind, deadline)) => self.timers.set(&mut self.conns, key, kind, deadline),
            None => self.timers.clear(&mut self.conns, key),
        }
    }

    /// Closes connection `key` at once and forgets it. The report counts the
    /// decision (unless a half-close already did) and what the close cut.
    pub(crate) fn close_now(&mut self, key: usize, reason: CloseReason) {
        self.timers.clear(&mut self.conns, key);
        let active = self.conns[key].state.is_active();
        if active
            && !self.conns[key]
                .bufs
                .as_ref()
                .is_some_and(|b| b.log.finished)
        {
            self.finish_request(key, Outcome::Unfinished(reason), false);
        }
        let id = self.id_of(key);
        let conn = self.conns.remove(key);
        if active {
            self.active -= 1;
        }
        // A client that may still be sending (a response went out, or its
        // request was still arriving) can be reset by a close.
        let receiving = matches!(conn.state, State::Head { .. } | State::Body { .. });
        let reset_risk = match reason {
            CloseReason::LingerTimeout | CloseReason::LingerOverflow => true,
            CloseReason::WriteStall => !conn.peer_eof,
            forced if forced.is_forced() => (conn.sent_any || receiving) && !conn.peer_eof,
            _ => false,
        };
        if let Some(report) = self.lifecycle.report_mut() {
            if !matches!(conn.state, State::Lingering { .. }) {
                report.record_decision(reason);
            }
            report.record_close(active && reason.is_forced(), reset_risk);
        }
        if let Some(bufs) = conn.bufs {
            self.pool.give(bufs);
        }
        self.events.push_back(Event::Close(id, reason));
    }

    /// Emits the [`Finished`] of connection `key`'s current request.
    pub(crate) fn finish_request(&mut self, key: usize, outcome: Outcome, keeps_connection: bool) {
        let id = self.id_of(key);
        let conn = &mut self.conns[key];
        let bufs = conn
            .bufs
            .as_mut()
            .expect("a request in progress has buffers");
        bufs.log.finished = true;
        let log = bufs.log;
        let response = log.response;
        self.events.push_back(Event::Finished(Finished {
            conn: id,
            request: log.dispatched.then(|| RequestId {
                conn: id,
                seq: conn.next_seq - 1,
            }),
            status: response.map(|r| r.status),
            body_bytes: response.map_or(0, |r| r.body_bytes),
            outcome,
            began_at: log.began_at,
            responded_at: response.map(|r| r.at),
            finished_at: self.now,
            keeps_connection,
        }));
    }

    /// Closes connection `key` without risking a reset: shut the write half,
    /// then read and discard until the client's FIN or the linger deadline.
    /// A client that already sent FIN is closed at once.
    pub(crate) fn close_cleanly(&mut self, key: usize, reason: CloseReason, now: Time) {
        let conn = &mut self.conns[key];
        if conn.peer_eof {
            return self.close_now(key, reason);
        }
        debug_assert_eq!(conn.pending_out(), 0, "half-close with output queued");
        if let Some(bufs) = conn.bufs.take() {
            self.pool.give(bufs);
        }
        if let Some(report) = self.lifecycle.report_mut() {
            report.record_decision(reason);
        }
        self.enter(
            key,
            State::Lingering {
                discarded: 0,
                reason,
            },
            now,
        );
        let id = self.id_of(key);
        self.events.push_back(Event::HalfClose(id, reason));
        // Lingering reads until the client's FIN: a paused connection must
        // read again, or the FIN and any unread input would never be seen.
        self.resume_reading_if_paused(key);
    }

    /// Whether the drain has nothing left to wait for: the listener is
    /// closed and no connection is open.
    pub(crate) fn drain_done(&self) -> bool {
        self.lifecycle
            .drain()
            .is_some_and(|drain| drain.listener_closed() && self.conns.is_empty())
    }

    /// Ends every input: exit the moment the drain has nothing left to wait
    /// for — the listener closed and no connection open — and, in debug
    /// builds, check the active count against a recount. The one place that
    /// decides exit, so it is never late and never early.
    pub(crate) fn finish_input(&mut self) {
        if self.drain_done() {
            let Lifecycle::Draining(drain) =
                std::mem::replace(&mut self.lifecycle, Lifecycle::Exited)
            else {
                unreachable!("checked above that the server is draining");
            };
            let mut report = drain.report;
            report.exited_at = self.now;
            self.events.push_back(Event::Exit(report));
        }
        debug_assert_eq!(
            self.active,
            self.recount_active_requests(),
            "active count diverged from the recount"
        );
    }
}

#[cfg(test)]
mod tests {
    //! The state → timer table, driven directly (as h11's `test_state.py`
    //! drives its `ConnectionState`).

    use std::time::Duration;

    use super::*;
    use crate::close::CloseReason;

    fn config() -> Config {
        Config {
            keep_alive_timeout: Duration::from_secs(60),
            new_connection_timeout: Duration::from_secs(10),
            idle_close_after: Duration::from_millis(250),
            first_byte_grace: Duration::from_secs(1),
            header_read_timeout: Duration::from_secs(5),
            body_read_timeout: Duration::from_secs(10),
            write_stall_timeout: Duration::from_secs(30),
            linger_timeout: Duration::from_secs(2),
            ..Config::default()
        }
    }

    const NOW: Time = Time::from_millis(10_000);
    const USED: History = History {
        fresh: false,
        last_active: Time::from_millis(9_900),
    };
    const FRESH: History = History {
        fresh: true,
        last_active: NOW,
    };

    fn at(ms: u64) -> Time {
        Time::from_millis(ms)
    }

    fn states() -> Vec<State> {
        let head = crate::parse::parse_head(
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\n",
            &mut Default::default(),
            &Config::default(),
            &mut Vec::new(),
        )
        .expect("a valid head")
        .expect("a complete head");
        vec![
            State::Idle,
            State::Head {
                scan: Default::default(),
            },
            State::Body {
                head,
                body: crate::conn::BodyProgress::Length(3),
            },
            State::Dispatched {
                head,
                seq: 0,
                len: 0,
            },
            State::Writing {
                len: 0,
                close: None,
            },
            State::Lingering {
                discarded: 0,
                reason: CloseReason::IdleInDrain,
            },
        ]
    }

    #[test]
    fn each_state_implies_its_timer_while_serving() {
        let c = config();
        let expect = [
            Some((TimerKind::Idle, at(9_900 + 60_000))),
            Some((TimerKind::Header, at(15_000))),
            Some((TimerKind::Body, at(20_000))),
            None,
            Some((TimerKind::Write, at(40_000))),
            Some((TimerKind::Linger, at(12_000))),
        ];
        for (state, expect) in states().iter().zip(expect) {
            assert_eq!(timer_for(state, USED, None, &c, NOW), expect, "{state:?}");
        }
    }

    #[test]
    fn draining_shortens_only_the_idle_wait() {
        let c = config();
        let drain = Some(at(40_000));
        let expect = [
            Some((TimerKind::Idle, at(9_900 + 250))),
            Some((TimerKind::Header, at(15_000))),
            Some((TimerKind::Body, at(20_000))),
            None,
            Some((TimerKind::Write, at(40_000))),
            Some((TimerKind::Linger, at(12_000))),
        ];
        for (state, expect) in states().iter().zip(expect) {
            assert_eq!(timer_for(state, USED, drain, &c, NOW), expect, "{state:?}");
        }
    }

    #[test]
    fn a_fresh_connection_waits_for_its_first_request_while_serving_and_grace_while_draining() {
        let c = config();
        assert_eq!(
            timer_for(&State::Idle, FRESH, None, &c, NOW),
            Some((TimerKind::FirstByte, at(20_000)))
        );
        assert_eq!(
            timer_for(&State::Idle, FRESH, Some(at(40_000)), &c, NOW),
            Some((TimerKind::FirstByte, at(11_000)))
        );
    }

    #[test]
    fn first_byte_grace_never_runs_past_the_drain_deadline() {
        let c = config();
        assert_eq!(
            timer_for(&State::Idle, FRESH, Some(at(10_400)), &c, NOW),
            Some((TimerKind::FirstByte, at(10_400)))
        );
    }
}
