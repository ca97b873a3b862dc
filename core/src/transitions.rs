//! Every connection state change, the timer each state implies, the active
//! count, every close, and the exit decision, in one file, so the rules are
//! read and tested together. Nothing else in core assigns a state, sets a
//! timer or emits [`Event::Exit`].
//!
//! The timer a connection's state implies ([`timer_for`]), first match wins:
//!
//! | state | timer | deadline |
//! |---|---|---|
//! | `Lingering` | `Linger` | half-close + `linger_timeout` (absolute) |
//! | `Head` | `Header` | first byte + `header_read_timeout` (absolute) |
//! | `Body` | `Body` | last progress + `body_read_timeout` |
//! | output unwritten | `Write` | last write progress + `write_stall_timeout` |
//! | `Dispatched`, `Streaming`, `Upgraded` | none | the application's time is its own |
//! | `Idle`, waiting on unread bytes (counting or reading them) | none | the driver answers and reads at once (the drain deadline bounds the wait) |
//! | `Idle`, never used, draining | `FirstByte` | the later of accept and drain start + `first_byte_grace`, never past the drain deadline |
//! | `Idle`, draining | `Idle` | last activity + `idle_close_after` |
//! | `Idle`, never used | `FirstByte` | accept + `new_connection_timeout` |
//! | `Idle` | `Idle` | last activity + `keep_alive_timeout` |
//!
//! Every deadline is computed from times the connection stores, never from
//! the moment it is computed, so re-deriving it ([`Server::settle`]) after
//! any change is harmless: an unchanged timer stays where it is on its list.
//!
//! *Active* connections (see [`Conn::is_active`](crate::conn::Conn)) are
//! counted in [`Server::active`]; `settle` is the only place the count moves.

use crate::ahead::Parked;
use crate::close::CloseReason;
use crate::config::{Config, Timeouts};
use crate::conn::{Buffers, Conn, State};
use crate::finished::{Finished, Outcome};
use crate::lifecycle::Lifecycle;
use crate::request::RequestId;
use crate::response::Farewell;
use crate::server::{Event, Server};
use crate::time::Time;
use crate::timers::TimerKind;

/// The times a connection's deadlines run from. Those its buffers hold are
/// read only when the row of the table that applies asks for them: read all
/// at once, whatever the row, they cost the self-check a sixth more.
#[derive(Copy, Clone, Debug)]
pub(crate) struct History<'a> {
    /// No request has begun on it yet.
    fresh: bool,
    /// When it last finished writing a response (or was accepted).
    last_active: Time,
    /// Its buffers, while it is busy.
    bufs: Option<&'a Buffers>,
    /// `max_stream_buffer_bytes`: a streamed request body this long fills
    /// its buffer.
    stream_buffer_bytes: usize,
    /// It waits on bytes in its socket ([`Conn::waits_on_unread`]).
    waits_on_unread: bool,
}

impl<'a> History<'a> {
    /// `conn`'s history.
    // Inlined: all of it is a handful of loads.
    #[inline]
    fn of(conn: &'a Conn, config: &Config) -> History<'a> {
        History {
            fresh: conn.next_seq == 0,
            last_active: conn.last_active,
            bufs: conn.bufs.as_deref(),
            stream_buffer_bytes: config.max_stream_buffer_bytes,
            waits_on_unread: conn.waits_on_unread(),
        }
    }

    /// When the request being read began.
    #[inline(always)]
    fn began_at(self) -> Time {
        self.bufs.map_or(Time::ZERO, |bufs| bufs.log.began_at)
    }

    /// When the body being read last made progress.
    #[inline(always)]
    fn body_progress_at(self) -> Time {
        self.bufs.map_or(Time::ZERO, |bufs| bufs.body_progress_at)
    }

    /// Whether response bytes wait to be written, and since when the driver
    /// last made progress writing them.
    #[inline(always)]
    fn output(self) -> Option<Time> {
        let bufs = self.bufs?;
        (bufs.pending_out() > 0).then_some(bufs.write_progress_at)
    }

    /// A streamed request body fills its buffer: the application is behind.
    #[inline(always)]
    fn body_full(self) -> bool {
        self.bufs
            .is_some_and(|bufs| bufs.body.len() >= self.stream_buffer_bytes)
    }
}

/// The drain, as far as timers care.
#[derive(Copy, Clone, Debug)]
pub(crate) struct DrainTimes {
    pub started_at: Time,
    pub deadline: Time,
}

/// The timer `state` implies: which list and which deadline, or `None` for
/// a connection that waits on the application.
// Inlined, like `History::of`, `enter` and `settle`: they run several times per
// request, and where a caller names the state, the table folds to its row.
// Always: left to itself the compiler keeps one out-of-line copy, which
// costs each request about 30 instructions.
#[inline(always)]
pub(crate) fn timer_for(
    state: &State,
    history: History,
    drain: Option<DrainTimes>,
    timeouts: &Timeouts,
) -> Option<(TimerKind, Time)> {
    // Each row names its list, the time its wait runs from and the wait;
    // the one addition comes after the match, so that only the row that
    // applies is added up.
    let (kind, from, wait) = match state {
        State::Lingering { since, .. } => (TimerKind::Linger, *since, timeouts.linger),
        State::Head { .. } => (TimerKind::Header, history.began_at(), timeouts.header_read),
        State::Body { .. } => (
            TimerKind::Body,
            history.body_progress_at(),
            timeouts.body_read,
        ),
        // A streamed body waits on its client, unless the application has
        // not read what came, or has not yet asked for a body its client
        // may hold back until a `100 Continue` (then the client waits on
        // it).
        State::Receiving {
            done: false,
            head,
            body_asked,
            ..
        } if !history.body_full() && (*body_asked || !head.expect_continue) => (
            TimerKind::Body,
            history.body_progress_at(),
            timeouts.body_read,
        ),
        // Unwritten output is asked about only past the rows above.
        _ => match (state, history.output(), drain) {
            (_, Some(progress), _) => (TimerKind::Write, progress, timeouts.write_stall),
            (
                State::Dispatched { .. }
                | State::Receiving { .. }
                | State::Streaming(_)
                | State::Closing { .. }
                | State::Switching
                | State::Upgraded,
                None,
                _,
            ) => return None,
            (State::Idle, None, _) if history.waits_on_unread => return None,
            (State::Idle, None, Some(drain)) if history.fresh => {
                let from = history.last_active.max(drain.started_at);
                let deadline = from + timeouts.first_byte_grace;
                return Some((TimerKind::FirstByte, deadline.min(drain.deadline)));
            }
            (State::Idle, None, Some(_)) => (
                TimerKind::Idle,
                history.last_active,
                timeouts.idle_close_after,
            ),
            (State::Idle, None, None) if history.fresh => (
                TimerKind::FirstByte,
                history.last_active,
                timeouts.new_connection,
            ),
            (State::Idle, None, None) => {
                (TimerKind::Idle, history.last_active, timeouts.keep_alive)
            }
            (State::Lingering { .. } | State::Head { .. } | State::Body { .. }, None, _) => {
                unreachable!("their rows come first")
            }
        },
    };
    Some((kind, from + wait))
}

/// The timer `conn` should be on, for the invariant check.
// Inlined: the check asks it of every connection after every step of the
// simulator, and out of line it costs the check a fifth more.
#[inline]
pub(crate) fn implied_timer(
    conn: &Conn,
    drain: Option<DrainTimes>,
    config: &Config,
    timeouts: &Timeouts,
) -> Option<(TimerKind, Time)> {
    timer_for(&conn.state, History::of(conn, config), drain, timeouts)
}

impl Server {
    /// Moves connection `key` into `state` at `now`, then [`settle`](Self::settle)s it.
    // Always, so that where the caller names the state the table folds to
    // its row; left to itself the compiler keeps `respond`'s call, which
    // costs each request about 30 instructions.
    #[inline(always)]
    pub(crate) fn enter(&mut self, key: usize, state: State, now: Time) {
        let conn = &mut self.conns[key];
        if let Some(bufs) = conn.bufs.as_mut() {
            match state {
                State::Body { .. } => bufs.body_progress_at = now,
                State::Dispatched { .. } => bufs.log.dispatched = true,
                State::Receiving { .. } => {
                    bufs.log.dispatched = true;
                    bufs.body_progress_at = now;
                }
                _ => {}
            }
        }
        conn.state = state;
        self.settle(key, now);
    }

    /// Moves connection `key` into `Idle` at `now` and reads the next
    /// request from its buffered input at once. The state that reading
    /// enters settles the connection, so that a pipelined request costs
    /// one [`settle`](Self::settle) here, not two (about 90 instructions,
    /// a twentieth of core's work for a short request); if it enters none
    /// (reading waits: see `process_input`), it is settled in `Idle`.
    pub(crate) fn enter_idle_and_read(&mut self, key: usize, now: Time) {
        self.conns[key].state = State::Idle;
        self.process_input(key, now);
        if self
            .conns
            .get(key)
            .is_some_and(|conn| matches!(conn.state, State::Idle))
        {
            self.settle(key, now);
        }
    }

    /// Records progress of the body being read or the output being written
    /// at `now`, then settles the connection.
    pub(crate) fn progress(&mut self, key: usize, now: Time) {
        let conn = &mut self.conns[key];
        if let Some(bufs) = conn.bufs.as_mut() {
            match conn.state {
                State::Body { .. } | State::Receiving { .. } => bufs.body_progress_at = now,
                _ => bufs.write_progress_at = now,
            }
        }
        self.settle(key, now);
    }

    /// Re-derives connection `key`'s timer and its place in the active
    /// count from its state; call after anything that may change either.
    /// The only caller of `timers.set`, and the only place the count moves.
    #[inline]
    pub(crate) fn settle(&mut self, key: usize, now: Time) {
        let drain = self.drain_times();
        let config = &self.config;
        let timeouts = &self.timeouts;
        let conn = &mut self.conns[key];
        let mut timer = timer_for(&conn.state, History::of(conn, config), drain, timeouts);
        if let Some((kind @ (TimerKind::Body | TimerKind::Write), _)) = timer {
            // A wait measured from the last progress starts now when the
            // connection begins to wait on it, so each list stays ordered.
            // (A response just queued has noted its progress already.)
            if conn.link.kind() != Some(kind) {
                if let Some(bufs) = conn.bufs.as_mut() {
                    let (progress, wait) = match kind {
                        TimerKind::Body => (&mut bufs.body_progress_at, timeouts.body_read),
                        _ => (&mut bufs.write_progress_at, timeouts.write_stall),
                    };
                    if *progress != now {
                        // What `timer_for` gives with this progress at `now`:
                        // the row is the same, only its start moved.
                        *progress = now;
                        timer = Some((kind, now + wait));
                    }
                }
            }
        }
        let active = conn.is_active();
        if active != conn.counted {
            conn.counted = active;
            if active {
                self.active += 1;
            } else {
                self.active -= 1;
            }
        }
        let link = conn.link;
        match timer {
            Some((kind, deadline)) if link.kind() != Some(kind) || link.deadline() != deadline => {
                self.timers.set(&mut self.conns, key, kind, deadline)
            }
            Some(_) => {}
            None if link.kind().is_some() => self.timers.clear(&mut self.conns, key),
            None => {}
        }
    }

    pub(crate) fn drain_times(&self) -> Option<DrainTimes> {
        self.lifecycle.drain().map(|d| DrainTimes {
            started_at: d.report.draining_at.unwrap_or(d.deadline),
            deadline: d.deadline,
        })
    }

    /// Closes connection `key` at once and forgets it. Every request on it
    /// that had not finished finishes now, unfinished; the report counts the
    /// decision (unless a half-close already did) and what the close cut.
    pub(crate) fn close_now(&mut self, key: usize, reason: CloseReason) {
        self.close_now_with(key, reason, None);
    }

    /// [`close_now`](Self::close_now), when `farewell` was queued for the
    /// request still arriving (the drain's 503 as its deadline or a second
    /// stop cuts it): its [`Finished`] says so, as its access-log line then
    /// does, though the request was cut all the same.
    pub(crate) fn close_now_with(
        &mut self,
        key: usize,
        reason: CloseReason,
        farewell: Option<&Farewell>,
    ) {
        let cut = self.finish_unfinished(key, reason, farewell);
        self.timers.clear(&mut self.conns, key);
        let id = self.id_of(key);
        let conn = self.conns.remove(key);
        if conn.counted {
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
            let cut = if reason.is_forced() { cut } else { 0 };
            report.record_close(cut, reset_risk);
            if reason.is_forced() && matches!(conn.state, State::Upgraded) {
                report.upgraded_cut += 1;
            }
        }
        if let Some(bufs) = conn.bufs {
            self.pool.give(bufs);
        }
        self.events.push_back(Event::Close(id, reason));
    }

    /// Emits a [`Finished`] for every request on connection `key` that will
    /// now never be completely answered: responses queued and unwritten, and
    /// the request being read or waiting for the application, for which
    /// `farewell` was queued if it is given. Returns how many there were.
    fn finish_unfinished(
        &mut self,
        key: usize,
        reason: CloseReason,
        farewell: Option<&Farewell>,
    ) -> u64 {
        let now = self.now;
        let outcome = Outcome::Unfinished(reason);
        let id = self.id_of(key);
        let conn = &mut self.conns[key];
        let Some(bufs) = conn.bufs.as_mut() else {
            return 0;
        };
        let mut count = 0;
        for unwritten in bufs.unwritten.drain() {
            count += 1;
            self.events.push_back(Event::Finished(Finished {
                outcome,
                finished_at: now,
                keeps_connection: false,
                ..unwritten.finished
            }));
        }
        if let State::Streaming(stream) = &conn.state {
            count += 1;
            self.events
                .push_back(Event::Finished(stream.finished(id, outcome, now)));
        } else if matches!(
            conn.state,
            State::Head { .. }
                | State::Body { .. }
                | State::Dispatched { .. }
                | State::Receiving { .. }
        ) {
            count += 1;
            let log = bufs.log;
            // Requests handed ahead come after it.
            let seq = match conn.state {
                State::Dispatched { seq, .. } | State::Receiving { seq, .. } => seq,
                _ => conn.next_seq.wrapping_sub(1),
            };
            self.events.push_back(Event::Finished(Finished {
                conn: id,
                request: log.dispatched.then_some(RequestId { conn: id, seq }),
                status: farewell.map(|f| f.status),
                body_bytes: farewell.map_or(0, |f| f.body_bytes),
                outcome,
                began_at: log.began_at,
                responded_at: farewell.map(|_| now),
                finished_at: now,
                keeps_connection: false,
            }));
        }
        count + self.finish_ahead(key, reason)
    }

    /// Emits a [`Finished`] for every request connection `key` handed
    /// ahead of its turn, which now never comes, as the connection ends for
    /// `reason`; forgets them. Returns how many there were.
    pub(crate) fn finish_ahead(&mut self, key: usize, reason: CloseReason) -> u64 {
        let now = self.now;
        let outcome = Outcome::Unfinished(reason);
        let id = self.id_of(key);
        let Some(bufs) = self.conns[key].bufs.as_mut() else {
            return 0;
        };
        let mut count = 0;
        for ahead in bufs.ahead.drain() {
            count += 1;
            let finished = match ahead.answer {
                Some(Parked::Whole { finished, .. }) => finished,
                Some(Parked::Stream { stream, .. }) => stream.finished(id, outcome, now),
                None => Finished {
                    conn: id,
                    request: Some(RequestId {
                        conn: id,
                        seq: ahead.seq,
                    }),
                    status: None,
                    body_bytes: 0,
                    outcome,
                    began_at: ahead.log.began_at,
                    responded_at: None,
                    finished_at: now,
                    keeps_connection: false,
                },
            };
            self.events.push_back(Event::Finished(Finished {
                outcome,
                finished_at: now,
                keeps_connection: false,
                ..finished
            }));
        }
        count
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
        // Only an application that broke a stream closes a connection with
        // requests handed ahead (see `ahead`): they end with it, after the
        // responses before them.
        self.finish_ahead(key, reason);
        let conn = &mut self.conns[key];
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
                since: now,
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
            // `Serving` holds the place for the one line until `Exited`.
            let Lifecycle::Draining(drain) =
                std::mem::replace(&mut self.lifecycle, Lifecycle::Serving)
            else {
                unreachable!("checked above that the server is draining");
            };
            let mut report = drain.report;
            report.exited_at = self.now;
            self.lifecycle = Lifecycle::Exited(report);
            self.events.push_back(Event::Exit);
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

    use super::*;
    use std::time::Duration;

    fn timeouts() -> Timeouts {
        Timeouts::new(&Config {
            keep_alive_timeout: Duration::from_secs(60),
            new_connection_timeout: Duration::from_secs(10),
            idle_close_after: Duration::from_millis(250),
            first_byte_grace: Duration::from_secs(1),
            header_read_timeout: Duration::from_secs(5),
            body_read_timeout: Duration::from_secs(10),
            write_stall_timeout: Duration::from_secs(30),
            linger_timeout: Duration::from_secs(2),
            ..Config::default()
        })
    }

    fn at(ms: u64) -> Time {
        Time::from_millis(ms)
    }

    /// The buffers of a connection reading a request that began at 9.95 s,
    /// whose body last made progress at 9.96 s.
    fn reading() -> Buffers {
        let mut bufs = Buffers::default();
        bufs.log.began_at = at(9_950);
        bufs.body_progress_at = at(9_960);
        bufs
    }

    /// A connection that served one request, whose last response finished
    /// at 9.9 s, now busy with `bufs`.
    fn used(bufs: &Buffers) -> History<'_> {
        History {
            fresh: false,
            last_active: at(9_900),
            bufs: Some(bufs),
            stream_buffer_bytes: Config::default().max_stream_buffer_bytes,
            waits_on_unread: false,
        }
    }

    /// A connection accepted at 10 s, which has not begun a request.
    fn fresh() -> History<'static> {
        History {
            fresh: true,
            last_active: at(10_000),
            bufs: None,
            stream_buffer_bytes: Config::default().max_stream_buffer_bytes,
            waits_on_unread: false,
        }
    }

    const DRAIN: DrainTimes = DrainTimes {
        started_at: Time::from_millis(10_100),
        deadline: Time::from_millis(40_100),
    };

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
            State::Closing {
                reason: CloseReason::ClientAsked,
            },
            State::Lingering {
                discarded: 0,
                reason: CloseReason::IdleInDrain,
                since: at(9_000),
            },
        ]
    }

    fn table(history: History, drain: Option<DrainTimes>) -> Vec<Option<(TimerKind, Time)>> {
        let c = timeouts();
        states()
            .iter()
            .map(|state| timer_for(state, history, drain, &c))
            .collect()
    }

    #[test]
    fn each_state_implies_its_timer_while_serving() {
        assert_eq!(
            table(used(&reading()), None),
            [
                Some((TimerKind::Idle, at(9_900 + 60_000))),
                Some((TimerKind::Header, at(9_950 + 5_000))),
                Some((TimerKind::Body, at(9_960 + 10_000))),
                None,
                None,
                Some((TimerKind::Linger, at(9_000 + 2_000))),
            ]
        );
    }

    #[test]
    fn draining_shortens_only_the_idle_wait() {
        assert_eq!(
            table(used(&reading()), Some(DRAIN)),
            [
                Some((TimerKind::Idle, at(9_900 + 250))),
                Some((TimerKind::Header, at(9_950 + 5_000))),
                Some((TimerKind::Body, at(9_960 + 10_000))),
                None,
                None,
                Some((TimerKind::Linger, at(9_000 + 2_000))),
            ]
        );
    }

    #[test]
    fn unwritten_output_waits_on_the_write_stall_unless_a_request_is_being_read() {
        let mut writing = reading();
        writing.out = b"HTTP/1.1 200 OK\r\n".to_vec();
        writing.write_progress_at = at(9_990);
        let write = Some((TimerKind::Write, at(9_990 + 30_000)));
        assert_eq!(
            table(used(&writing), None),
            [
                write,
                Some((TimerKind::Header, at(9_950 + 5_000))),
                Some((TimerKind::Body, at(9_960 + 10_000))),
                write,
                write,
                Some((TimerKind::Linger, at(9_000 + 2_000))),
            ]
        );
    }

    #[test]
    fn a_fresh_connection_waits_for_its_first_request_while_serving_and_grace_while_draining() {
        let c = timeouts();
        assert_eq!(
            timer_for(&State::Idle, fresh(), None, &c),
            Some((TimerKind::FirstByte, at(10_000 + 10_000)))
        );
        assert_eq!(
            timer_for(&State::Idle, fresh(), Some(DRAIN), &c),
            Some((TimerKind::FirstByte, at(10_100 + 1_000))),
            "accepted before the drain: the grace runs from its start"
        );
        let later = History {
            last_active: at(12_000),
            ..fresh()
        };
        assert_eq!(
            timer_for(&State::Idle, later, Some(DRAIN), &c),
            Some((TimerKind::FirstByte, at(12_000 + 1_000))),
            "accepted during the drain: from its accept"
        );
    }

    #[test]
    fn first_byte_grace_never_runs_past_the_drain_deadline() {
        let c = timeouts();
        let drain = DrainTimes {
            deadline: at(10_400),
            ..DRAIN
        };
        assert_eq!(
            timer_for(&State::Idle, fresh(), Some(drain), &c),
            Some((TimerKind::FirstByte, at(10_400)))
        );
    }
}
